//! Dataset adapters: read public benchmark files and Crucible's own problem format into
//! `crucible_core::Problem`s, and model samples into `Submission`s.
//!
//! | kind | file | loader |
//! |---|---|---|
//! | `humaneval` | `HumanEval.jsonl.gz` / `.jsonl` | [`load_humaneval`] |
//! | `mbpp` | `mbpp.jsonl` | [`load_mbpp`] |
//! | `mbpp-sanitized` | `sanitized-mbpp.json` | [`load_mbpp_sanitized`] |
//! | `crucible` | `*.jsonl` of `Problem` JSON | [`load_crucible`] |
//! | `apps` | APPS / TACO rows | [`load_apps`] |
//! | `codecontests` | CodeContests rows | [`load_codecontests`] |
//! | `livecodebench` | LiveCodeBench code-generation rows | [`load_livecodebench`] |
//!
//! Every file may be gzip-compressed (detected by its magic bytes or a `.gz` name). Files
//! are JSONL, blank lines allowed; the two MBPP loaders also take one JSON array of
//! records (sanitized MBPP's native form). Problems keep file order.
//!
//! Errors name the place: `mbpp.jsonl:17: field "test_list": expected an array of
//! strings, found a string` (see [`DatasetError`]). A bad record in a problem file fails
//! the whole load, while a bad line of a samples file is reported and skipped; see
//! [`load_samples`] for why.

#![warn(missing_docs)]

mod apps;
mod codecontests;
mod contest;
mod dataset;
mod error;
mod fields;
mod humaneval;
mod livecodebench;
mod mbpp;
mod native;
mod pyliteral;
mod read;
mod samples;

pub use apps::{load_apps, APPS_STDIO_COMPARATOR};
pub use codecontests::{load_codecontests, load_codecontests_solutions, TEST_GROUPS};
pub use contest::ProblemsLoad;
pub use dataset::{load, load_lenient, DatasetKind};
pub use error::{DatasetError, UnknownDatasetKind};
pub use humaneval::load_humaneval;
pub use livecodebench::load_livecodebench;
pub use mbpp::{load_mbpp, load_mbpp_sanitized};
pub use native::load_crucible;
pub use samples::{canonical_submissions, load_samples, load_samples_checked, SamplesLoad};

#[cfg(test)]
pub(crate) mod testutil {
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;
    use std::path::PathBuf;

    /// Writes `bytes` to a file called `name` in a fresh temp dir (kept alive by the
    /// returned guard).
    pub fn write(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    /// `bytes`, gzip-compressed.
    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }
}

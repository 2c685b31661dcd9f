//! The dataset kinds, the loader entry point, and what every problem loader shares.

use crate::contest::ProblemsLoad;
use crate::error::{DatasetError, Pos, UnknownDatasetKind};
use crate::fields::Fields;
use crate::read::records;
use crucible_core::Problem;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use tracing::info;

/// The problem-file formats this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    /// OpenAI HumanEval (`HumanEval.jsonl.gz`); also reads HumanEval+ files, whose extra
    /// fields are ignored (only the base `test` is used).
    HumanEval,
    /// Full MBPP (`mbpp.jsonl`), without the challenge tests.
    Mbpp,
    /// Sanitized MBPP (`sanitized-mbpp.json`, one JSON array).
    MbppSanitized,
    /// Crucible's own format: one `crucible_core::Problem` per line as its serde JSON.
    Crucible,
    /// APPS / TACO rows (`input_output` JSON string with `inputs`, `outputs`, `fn_name`).
    Apps,
    /// DeepMind CodeContests rows (public, private and generated tests).
    CodeContests,
    /// LiveCodeBench code-generation rows (stdin and functional test cases).
    LiveCodeBench,
}

impl DatasetKind {
    /// Every kind, in the order they are listed in help texts.
    pub const ALL: [DatasetKind; 7] = [
        DatasetKind::HumanEval,
        DatasetKind::Mbpp,
        DatasetKind::MbppSanitized,
        DatasetKind::Crucible,
        DatasetKind::Apps,
        DatasetKind::CodeContests,
        DatasetKind::LiveCodeBench,
    ];

    /// The kind's name as accepted by `FromStr`: `humaneval`, `mbpp`, `mbpp-sanitized`,
    /// `crucible`, `apps`, `codecontests` or `livecodebench`.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::HumanEval => "humaneval",
            DatasetKind::Mbpp => "mbpp",
            DatasetKind::MbppSanitized => "mbpp-sanitized",
            DatasetKind::Crucible => "crucible",
            DatasetKind::Apps => "apps",
            DatasetKind::CodeContests => "codecontests",
            DatasetKind::LiveCodeBench => "livecodebench",
        }
    }

    /// True for the contest adapters, which report a bad record as that problem's
    /// error and load the rest (see [`load_lenient`]).
    pub fn is_lenient(self) -> bool {
        matches!(
            self,
            DatasetKind::Apps | DatasetKind::CodeContests | DatasetKind::LiveCodeBench
        )
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetKind {
    type Err = UnknownDatasetKind;

    /// Parses a kind name (see [`DatasetKind::name`]), ignoring case and surrounding
    /// whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        DatasetKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownDatasetKind(s.to_string()))
    }
}

/// Loads the problems of a `kind` file at `path`, in file order.
///
/// Returns the problems, or the first error found: any bad record fails the whole file,
/// because judging part of a broken dataset would report scores over a different problem
/// set than the one asked for. For MBPP this leaves the challenge tests out; use
/// [`crate::load_mbpp`] to include them.
/// The contest kinds are read the same way here: their first bad record fails the load
/// (use [`load_lenient`] to keep the rest).
pub fn load(kind: DatasetKind, path: &Path) -> Result<Vec<Problem>, DatasetError> {
    match kind {
        DatasetKind::HumanEval => crate::load_humaneval(path),
        DatasetKind::Mbpp => crate::load_mbpp(path, false),
        DatasetKind::MbppSanitized => crate::load_mbpp_sanitized(path),
        DatasetKind::Crucible => crate::load_crucible(path),
        DatasetKind::Apps | DatasetKind::CodeContests | DatasetKind::LiveCodeBench => {
            let mut load = load_lenient(kind, path)?;
            match load.errors.is_empty() {
                true => Ok(load.problems),
                false => Err(load.errors.swap_remove(0)),
            }
        }
    }
}

/// Loads a `kind` file keeping what can be judged: for the contest adapters (APPS,
/// CodeContests, LiveCodeBench) each bad record is returned as an error and the other
/// problems load, since scraped contest data has a few malformed rows among thousands
/// of good ones. The benchmark kinds keep [`load`]'s all-or-nothing rule (a broken
/// benchmark file is not the benchmark), so their errors come back as `Err`.
pub fn load_lenient(kind: DatasetKind, path: &Path) -> Result<ProblemsLoad, DatasetError> {
    match kind {
        DatasetKind::Apps => crate::load_apps(path),
        DatasetKind::CodeContests => crate::load_codecontests(path),
        DatasetKind::LiveCodeBench => crate::load_livecodebench(path),
        strict => Ok(ProblemsLoad {
            problems: load(strict, path)?,
            errors: Vec::new(),
        }),
    }
}

/// Reads every record of `path` (also as a JSON array when `allow_array`) with `decode`, failing on the first bad record, on a
/// duplicate id (reported at `id_field` of the second occurrence, naming the first), and
/// on a file with no problems at all (almost surely the wrong file).
pub(crate) fn load_problems(
    path: &Path,
    format: &str,
    id_field: &str,
    allow_array: bool,
    decode: impl Fn(&Fields) -> Result<Problem, DatasetError>,
) -> Result<Vec<Problem>, DatasetError> {
    let records = records(path, allow_array)?;
    let mut problems = Vec::with_capacity(records.len());
    let mut seen: HashMap<String, Pos> = HashMap::with_capacity(records.len());
    for record in records {
        let (pos, value) = record?;
        let fields = Fields::new(path, pos, &value)?;
        let problem = decode(&fields)?;
        if let Some(first) = seen.get(&problem.id) {
            return Err(fields.err(
                id_field,
                format!("duplicate problem id {:?} (first at {first})", problem.id),
            ));
        }
        seen.insert(problem.id.clone(), pos);
        problems.push(problem);
    }
    if problems.is_empty() {
        return Err(DatasetError::file(path, "no problems found"));
    }
    info!(path = %path.display(), format, problems = problems.len(), "loaded dataset");
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for k in DatasetKind::ALL {
            assert_eq!(k.name().parse::<DatasetKind>().unwrap(), k);
            assert_eq!(k.to_string(), k.name());
        }
        assert_eq!(
            " HumanEval ".parse::<DatasetKind>().unwrap(),
            DatasetKind::HumanEval
        );
        let e = "apps2".parse::<DatasetKind>().unwrap_err();
        assert!(e.to_string().contains("mbpp-sanitized"), "{e}");
    }
}

//! The dataset kinds, the loader entry point, and what every problem loader shares.

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
}

impl DatasetKind {
    /// Every kind, in the order they are listed in help texts.
    pub const ALL: [DatasetKind; 4] = [
        DatasetKind::HumanEval,
        DatasetKind::Mbpp,
        DatasetKind::MbppSanitized,
        DatasetKind::Crucible,
    ];

    /// The kind's name as accepted by `FromStr`: `humaneval`, `mbpp`, `mbpp-sanitized`
    /// or `crucible`.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::HumanEval => "humaneval",
            DatasetKind::Mbpp => "mbpp",
            DatasetKind::MbppSanitized => "mbpp-sanitized",
            DatasetKind::Crucible => "crucible",
        }
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
pub fn load(kind: DatasetKind, path: &Path) -> Result<Vec<Problem>, DatasetError> {
    match kind {
        DatasetKind::HumanEval => crate::load_humaneval(path),
        DatasetKind::Mbpp => crate::load_mbpp(path, false),
        DatasetKind::MbppSanitized => crate::load_mbpp_sanitized(path),
        DatasetKind::Crucible => crate::load_crucible(path),
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
        let e = "apps".parse::<DatasetKind>().unwrap_err();
        assert!(e.to_string().contains("mbpp-sanitized"), "{e}");
    }
}

use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Where in a file a record sits: a 1-based line of a JSONL file, or a 0-based element
/// index of a file holding one JSON array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pos {
    Line(usize),
    Index(usize),
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pos::Line(n) => write!(f, "line {n}"),
            Pos::Index(i) => write!(f, "index {i}"),
        }
    }
}

/// A problem with a dataset or samples file, naming the place it was found.
///
/// Displays as `PATH[:LINE|[INDEX]]: [field "FIELD": ]MESSAGE`, for example
/// `mbpp.jsonl:17: field "test_list": expected an array of strings, found a string`,
/// `sanitized-mbpp.json[16]: field "code": is empty or only whitespace`, or
/// `x.jsonl: cannot open: No such file or directory (os error 2)`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct DatasetError {
    /// The file, as it was given to the loader.
    pub path: PathBuf,
    /// 1-based line number in a JSONL file (or of a JSON syntax error), when known.
    pub line: Option<usize>,
    /// 0-based element index, for files holding one JSON array (sanitized MBPP).
    pub index: Option<usize>,
    /// The JSON field at fault (`"task_id"`, `"tests[2]"`), when one is.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl DatasetError {
    /// An error about the file as a whole (cannot open, no problems, ...).
    pub(crate) fn file(path: &Path, message: impl Into<String>) -> DatasetError {
        DatasetError {
            path: path.to_path_buf(),
            line: None,
            index: None,
            field: None,
            message: message.into(),
        }
    }

    /// An error about one record, optionally about one of its fields.
    pub(crate) fn at(
        path: &Path,
        pos: Pos,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> DatasetError {
        let (line, index) = match pos {
            Pos::Line(n) => (Some(n), None),
            Pos::Index(i) => (None, Some(i)),
        };
        DatasetError {
            path: path.to_path_buf(),
            line,
            index,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }
}

impl fmt::Display for DatasetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(index) = self.index {
            write!(f, "[{index}]")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "field {field:?}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A dataset kind name that [`crate::DatasetKind`]'s `FromStr` does not know.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown dataset kind {0:?} (expected one of: humaneval, mbpp, mbpp-sanitized, crucible, apps, codecontests, livecodebench)")]
pub struct UnknownDatasetKind(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_forms() {
        let p = Path::new("mbpp.jsonl");
        let e = DatasetError::at(
            p,
            Pos::Line(17),
            Some("test_list"),
            "expected an array of strings",
        );
        assert_eq!(
            e.to_string(),
            r#"mbpp.jsonl:17: field "test_list": expected an array of strings"#
        );
        let e = DatasetError::at(Path::new("s.json"), Pos::Index(3), None, "boom");
        assert_eq!(e.to_string(), "s.json[3]: boom");
        let e = DatasetError::file(Path::new("x.jsonl"), "no problems found");
        assert_eq!(e.to_string(), "x.jsonl: no problems found");
    }
}

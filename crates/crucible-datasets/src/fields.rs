//! Typed access to the fields of one JSON record, with errors that name the field.

use crate::error::{DatasetError, Pos};
use crate::read::describe;
use serde_json::{Map, Value};
use std::path::Path;

/// One JSON object from a file, with where it came from.
pub(crate) struct Fields<'a> {
    pub path: &'a Path,
    pub pos: Pos,
    pub value: &'a Value,
    obj: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// Wraps `value`, which must be a JSON object.
    pub fn new(path: &'a Path, pos: Pos, value: &'a Value) -> Result<Self, DatasetError> {
        match value {
            Value::Object(obj) => Ok(Fields {
                path,
                pos,
                value,
                obj,
            }),
            other => Err(DatasetError::at(
                path,
                pos,
                None,
                format!("expected a JSON object, found {}", describe(other)),
            )),
        }
    }

    /// An error at this record about `field`.
    pub fn err(&self, field: &str, message: impl Into<String>) -> DatasetError {
        DatasetError::at(self.path, self.pos, Some(field), message)
    }

    /// The field's value; absent and `null` both count as missing, since the public
    /// schemas never use `null` to mean anything.
    pub fn opt(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    /// The field's value as written, `null` included.
    pub fn raw(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field)
    }

    /// The first key of the object that is not in `known`, if any.
    pub fn unknown_key(&self, known: &[&str]) -> Option<&'a str> {
        self.obj
            .keys()
            .map(String::as_str)
            .find(|k| !known.contains(k))
    }

    fn required(&self, field: &str) -> Result<&'a Value, DatasetError> {
        self.opt(field).ok_or_else(|| self.err(field, "missing"))
    }

    fn as_str(&self, field: &str, v: &'a Value) -> Result<&'a str, DatasetError> {
        v.as_str()
            .ok_or_else(|| self.err(field, format!("expected a string, found {}", describe(v))))
    }

    /// A required string, possibly empty.
    pub fn string(&self, field: &str) -> Result<&'a str, DatasetError> {
        self.as_str(field, self.required(field)?)
    }

    /// An optional string; `None` when absent or null.
    pub fn opt_string(&self, field: &str) -> Result<Option<&'a str>, DatasetError> {
        self.opt(field).map(|v| self.as_str(field, v)).transpose()
    }

    /// A required string that is not empty or only whitespace (code, ids, names): an empty
    /// one would be judged as if it meant something.
    pub fn nonblank(&self, field: &str) -> Result<&'a str, DatasetError> {
        let s = self.string(field)?;
        if s.trim().is_empty() {
            return Err(self.err(field, "is empty or only whitespace"));
        }
        Ok(s)
    }

    /// A required non-empty array of non-blank strings (test lines).
    pub fn code_list(&self, field: &str) -> Result<Vec<String>, DatasetError> {
        let list = self.string_list(field, self.required(field)?)?;
        if list.is_empty() {
            return Err(self.err(field, "is an empty array"));
        }
        if let Some(i) = list.iter().position(|s| s.trim().is_empty()) {
            return Err(self.err(field, format!("element {i} is empty or only whitespace")));
        }
        Ok(list)
    }

    /// An optional array of strings; empty when absent or null.
    pub fn opt_string_list(&self, field: &str) -> Result<Vec<String>, DatasetError> {
        match self.opt(field) {
            Some(v) => self.string_list(field, v),
            None => Ok(Vec::new()),
        }
    }

    fn string_list(&self, field: &str, v: &Value) -> Result<Vec<String>, DatasetError> {
        let Value::Array(items) = v else {
            return Err(self.err(
                field,
                format!("expected an array of strings, found {}", describe(v)),
            ));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().map(str::to_string).ok_or_else(|| {
                    self.err(
                        field,
                        format!(
                            "expected an array of strings, but element {i} is {}",
                            describe(item)
                        ),
                    )
                })
            })
            .collect()
    }

    /// A required non-negative integer id (MBPP), as its decimal string.
    pub fn int_id(&self, field: &str) -> Result<String, DatasetError> {
        let v = self.required(field)?;
        v.as_u64().map(|n| n.to_string()).ok_or_else(|| {
            self.err(
                field,
                format!("expected a non-negative integer, found {}", show(v)),
            )
        })
    }

    /// A required id given either as a non-blank string or as a non-negative integer (the
    /// MBPP form, turned into its decimal string).
    pub fn string_or_int_id(&self, field: &str) -> Result<String, DatasetError> {
        match self.required(field)? {
            Value::String(_) => self.nonblank(field).map(str::to_string),
            Value::Number(_) => self.int_id(field),
            other => Err(self.err(
                field,
                format!(
                    "expected a string or a non-negative integer, found {}",
                    describe(other)
                ),
            )),
        }
    }
}

/// A short rendering of a wrong value: small numbers and strings literally (they are
/// usually an id written the wrong way), anything else by its type.
fn show(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.len() <= 40 => format!("{s:?}"),
        other => describe(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check<T: std::fmt::Debug>(
        v: Value,
        f: impl Fn(&Fields) -> Result<T, DatasetError>,
    ) -> Result<T, String> {
        let path = Path::new("t.jsonl");
        let fields = Fields::new(path, Pos::Line(4), &v).map_err(|e| e.to_string())?;
        f(&fields).map_err(|e| e.to_string())
    }

    #[test]
    fn not_an_object() {
        let e = check(json!([1]), |f| f.string("a").map(str::to_string)).unwrap_err();
        assert_eq!(e, "t.jsonl:4: expected a JSON object, found an array");
    }

    #[test]
    fn strings() {
        assert_eq!(
            check(json!({"a": "x"}), |f| f.string("a").map(str::to_string)).unwrap(),
            "x"
        );
        assert_eq!(
            check(json!({}), |f| f.string("a").map(str::to_string)).unwrap_err(),
            r#"t.jsonl:4: field "a": missing"#
        );
        assert_eq!(
            check(json!({"a": null}), |f| f.string("a").map(str::to_string)).unwrap_err(),
            r#"t.jsonl:4: field "a": missing"#
        );
        assert_eq!(
            check(json!({"a": 3}), |f| f.string("a").map(str::to_string)).unwrap_err(),
            r#"t.jsonl:4: field "a": expected a string, found a number"#
        );
        assert_eq!(
            check(json!({"a": " \n"}), |f| f.nonblank("a").map(str::to_string)).unwrap_err(),
            r#"t.jsonl:4: field "a": is empty or only whitespace"#
        );
        assert_eq!(
            check(json!({}), |f| f
                .opt_string("a")
                .map(|o| o.map(str::to_string)))
            .unwrap(),
            None
        );
    }

    #[test]
    fn lists() {
        assert_eq!(
            check(json!({"t": "assert x"}), |f| f.code_list("t")).unwrap_err(),
            r#"t.jsonl:4: field "t": expected an array of strings, found a string"#
        );
        assert_eq!(
            check(json!({"t": ["a", 1]}), |f| f.code_list("t")).unwrap_err(),
            r#"t.jsonl:4: field "t": expected an array of strings, but element 1 is a number"#
        );
        assert_eq!(
            check(json!({"t": []}), |f| f.code_list("t")).unwrap_err(),
            r#"t.jsonl:4: field "t": is an empty array"#
        );
        assert_eq!(
            check(json!({"t": ["a", ""]}), |f| f.code_list("t")).unwrap_err(),
            r#"t.jsonl:4: field "t": element 1 is empty or only whitespace"#
        );
        assert!(check(json!({}), |f| f.opt_string_list("t"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn ids() {
        assert_eq!(check(json!({"i": 11}), |f| f.int_id("i")).unwrap(), "11");
        assert_eq!(
            check(json!({"i": "11"}), |f| f.int_id("i")).unwrap_err(),
            r#"t.jsonl:4: field "i": expected a non-negative integer, found "11""#
        );
        assert_eq!(
            check(json!({"i": -1}), |f| f.int_id("i")).unwrap_err(),
            r#"t.jsonl:4: field "i": expected a non-negative integer, found -1"#
        );
        assert_eq!(
            check(json!({"i": 11}), |f| f.string_or_int_id("i")).unwrap(),
            "11"
        );
        assert_eq!(
            check(json!({"i": "HumanEval/1"}), |f| f.string_or_int_id("i")).unwrap(),
            "HumanEval/1"
        );
        assert!(check(json!({"i": 1.5}), |f| f.string_or_int_id("i")).is_err());
        assert!(check(json!({"i": [1]}), |f| f.string_or_int_id("i")).is_err());
    }
}

//! Reading records from JSONL or JSON-array files, gzip-compressed or not.

use crate::error::{DatasetError, Pos};
use flate2::read::MultiGzDecoder;
use serde_json::Value;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use tracing::debug;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const UTF8_BOM: [u8; 3] = [0xef, 0xbb, 0xbf];

/// One record: its position and parsed JSON, or why that one record could not be parsed.
pub(crate) type Record = Result<(Pos, Value), DatasetError>;

/// Reads every record of `path`: JSONL, or also one JSON array of records when
/// `allow_array` is set (a file whose first significant byte is `[`). Formats that are
/// JSONL by definition do not allow arrays, so that a JSONL line holding an array is
/// reported as that line's error rather than read as the whole file.
///
/// The outer error is fatal for the whole file (cannot open or decompress it, or a JSON
/// array that does not parse, since then no element can be trusted). The inner errors
/// concern single JSONL lines (invalid UTF-8 or JSON); callers decide whether one bad
/// line spoils the file.
pub(crate) fn records(path: &Path, allow_array: bool) -> Result<Vec<Record>, DatasetError> {
    let (mut reader, gzip) = open(path)?;
    let (first, skipped_lines) = skip_leading_space(&mut reader, path, gzip)?;
    debug!(path = %path.display(), gzip, "reading records");
    match first {
        None => Ok(Vec::new()),
        Some(b'[') if allow_array => read_array(reader, path, gzip, skipped_lines),
        Some(_) => read_jsonl(reader, path, gzip, skipped_lines),
    }
}

/// Opens `path`, decompressing when it has gzip's magic bytes or a `.gz` extension (the
/// extension alone suffices so that a corrupt `.gz` is reported as such, not as JSON).
fn open(path: &Path) -> Result<(Box<dyn BufRead>, bool), DatasetError> {
    let file =
        File::open(path).map_err(|e| DatasetError::file(path, format!("cannot open: {e}")))?;
    let mut raw = BufReader::new(file);
    let head = raw
        .fill_buf()
        .map_err(|e| DatasetError::file(path, format!("cannot read: {e}")))?;
    let gzip = head.starts_with(&GZIP_MAGIC) || path.extension().is_some_and(|ext| ext == "gz");
    if gzip {
        Ok((Box::new(BufReader::new(MultiGzDecoder::new(raw))), true))
    } else {
        Ok((Box::new(raw), false))
    }
}

fn read_error(path: &Path, line: Option<usize>, gzip: bool, e: std::io::Error) -> DatasetError {
    let what = if gzip {
        "cannot decompress gzip data"
    } else {
        "cannot read"
    };
    let mut err = DatasetError::file(path, format!("{what}: {e}"));
    err.line = line;
    err
}

/// Consumes a BOM and leading whitespace, returning the first significant byte (without
/// consuming it) and how many newlines were skipped, so line numbers stay right.
fn skip_leading_space(
    reader: &mut Box<dyn BufRead>,
    path: &Path,
    gzip: bool,
) -> Result<(Option<u8>, usize), DatasetError> {
    let mut newlines = 0;
    let mut at_start = true;
    loop {
        let buf = reader
            .fill_buf()
            .map_err(|e| read_error(path, Some(newlines + 1), gzip, e))?;
        if buf.is_empty() {
            return Ok((None, newlines));
        }
        if at_start && buf.starts_with(&UTF8_BOM) {
            reader.consume(UTF8_BOM.len());
            at_start = false;
            continue;
        }
        at_start = false;
        let mut used = 0;
        for &b in buf {
            if !b.is_ascii_whitespace() {
                reader.consume(used);
                return Ok((Some(b), newlines));
            }
            if b == b'\n' {
                newlines += 1;
            }
            used += 1;
        }
        reader.consume(used);
    }
}

fn read_array(
    reader: Box<dyn BufRead>,
    path: &Path,
    gzip: bool,
    skipped_lines: usize,
) -> Result<Vec<Record>, DatasetError> {
    let value: Value = serde_json::from_reader(reader).map_err(|e| {
        if e.is_io() {
            read_error(path, None, gzip, std::io::Error::other(e.to_string()))
        } else {
            let mut err = DatasetError::file(path, format!("invalid JSON: {}", json_message(&e)));
            err.line = Some(e.line() + skipped_lines);
            err
        }
    })?;
    match value {
        Value::Array(items) => Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, v)| Ok((Pos::Index(i), v)))
            .collect()),
        // Unreachable in practice: the first byte was '['.
        other => Err(DatasetError::file(
            path,
            format!("expected a JSON array, found {}", describe(&other)),
        )),
    }
}

fn read_jsonl(
    mut reader: Box<dyn BufRead>,
    path: &Path,
    gzip: bool,
    skipped_lines: usize,
) -> Result<Vec<Record>, DatasetError> {
    let mut out = Vec::new();
    let mut line = skipped_lines;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| read_error(path, Some(line + 1), gzip, e))?;
        if n == 0 {
            break;
        }
        line += 1;
        let pos = Pos::Line(line);
        let text = match std::str::from_utf8(&buf) {
            Ok(t) => t,
            Err(e) => {
                out.push(Err(DatasetError::at(
                    path,
                    pos,
                    None,
                    format!("invalid UTF-8: {e}"),
                )));
                continue;
            }
        };
        // Without its line end, so serde's EOF errors point into the line.
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str::<Value>(text)
                .map(|v| (pos, v))
                .map_err(|e| {
                    DatasetError::at(
                        path,
                        pos,
                        None,
                        format!("invalid JSON: {}", json_message(&e)),
                    )
                }),
        );
    }
    Ok(out)
}

/// serde_json's message with its "at line L column C" suffix turned into "(column C)":
/// within a JSONL line, serde's line number is always 1 and would mislead.
fn json_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match full.strip_suffix(&suffix) {
        Some(message) => format!("{message} (column {})", e.column()),
        None => full,
    }
}

/// "a string", "an array", ... for messages about a value of the wrong type.
pub(crate) fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::gzip;

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn positions(records: &[Record]) -> Vec<Pos> {
        records
            .iter()
            .map(|r| r.as_ref().unwrap().0)
            .collect::<Vec<_>>()
    }

    #[test]
    fn jsonl_lines_are_numbered_from_one_skipping_blanks() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "a.jsonl", b"\n  \n{\"a\":1}\r\n\n{\"a\":2}");
        let r = records(&p, false).unwrap();
        assert_eq!(positions(&r), vec![Pos::Line(3), Pos::Line(5)]);
    }

    #[test]
    fn bom_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "a.jsonl", b"\xef\xbb\xbf{\"a\":1}\n");
        assert_eq!(positions(&records(&p, false).unwrap()), vec![Pos::Line(1)]);
    }

    #[test]
    fn array_elements_are_indexed_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "a.json", b"\n [{\"a\":1}, {\"a\":2}]\n");
        let r = records(&p, true).unwrap();
        assert_eq!(positions(&r), vec![Pos::Index(0), Pos::Index(1)]);
    }

    #[test]
    fn bad_jsonl_line_is_a_record_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "x.jsonl", b"{\"a\":1}\n{\"a\":\n{\"a\":3}\n");
        let r = records(&p, false).unwrap();
        assert_eq!(r.len(), 3);
        let e = r[1].as_ref().unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(
            e.message,
            "invalid JSON: EOF while parsing a value (column 5)"
        );
    }

    #[test]
    fn invalid_utf8_is_a_record_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "x.jsonl", b"{\"a\":\"\xff\"}\n");
        let r = records(&p, false).unwrap();
        let e = r[0].as_ref().unwrap_err();
        assert!(e.message.starts_with("invalid UTF-8"), "{e}");
    }

    #[test]
    fn array_line_is_a_record_when_arrays_are_not_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "x.jsonl", b"[1]\n");
        let r = records(&p, false).unwrap();
        assert_eq!(positions(&r), vec![Pos::Line(1)]);
        assert!(r[0].as_ref().unwrap().1.is_array());
    }

    #[test]
    fn bad_array_is_a_file_error_with_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "x.json", b"\n[{\"a\":1},\n{\"a\" 2}]");
        let e = records(&p, true).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.starts_with("invalid JSON: "), "{e}");
    }

    #[test]
    fn gzip_is_detected_by_magic_and_extension() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"{\"a\":1}\n{\"a\":2}\n";
        for name in ["a.jsonl.gz", "no-extension"] {
            let p = write(&dir, name, &gzip(body));
            assert_eq!(records(&p, false).unwrap().len(), 2, "{name}");
        }
    }

    #[test]
    fn gz_extension_without_gzip_data_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "a.jsonl.gz", b"{\"a\":1}\n");
        let e = records(&p, false).unwrap_err();
        assert!(e.message.starts_with("cannot decompress gzip data"), "{e}");
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let body: String = (0..2000).map(|i| format!("{{\"a\":{i}}}\n")).collect();
        let gz = gzip(body.as_bytes());
        let p = write(&dir, "a.jsonl.gz", &gz[..gz.len() / 2]);
        let e = records(&p, false).unwrap_err();
        assert!(e.message.starts_with("cannot decompress gzip data"), "{e}");
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn corrupt_gzip_checksum_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut gz = gzip(b"{\"a\":1}\n");
        let n = gz.len();
        gz[n - 8] ^= 0xff; // the CRC32 of the trailer
        let p = write(&dir, "a.jsonl.gz", &gz);
        let e = records(&p, false).unwrap_err();
        assert!(e.message.starts_with("cannot decompress gzip data"), "{e}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = records(Path::new("/nonexistent/x.jsonl"), false).unwrap_err();
        assert_eq!(e.line, None);
        assert!(e.message.starts_with("cannot open: "), "{e}");
    }

    #[test]
    fn empty_file_has_no_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "a.jsonl", b" \n\n");
        assert!(records(&p, false).unwrap().is_empty());
    }
}

//! safetensors files, read one tensor at a time and written streaming.
//!
//! Format: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor
//! name to `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets into the data that
//! follows the header; an optional `__metadata__` object of strings), then the data.
//! Reading tensor by tensor keeps a model load at one copy of the weights plus the
//! largest tensor, rather than a whole extra copy of the file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};
use thiserror::Error;

/// What can go wrong with a safetensors file.
#[derive(Debug, Error)]
pub enum SafetensorsError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The header is not what the format requires.
    #[error("{path}: bad safetensors header: {message}")]
    Header {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor's dtype is not one this crate handles.
    #[error("{path}: tensor {name}: unsupported dtype {dtype}")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// libtorch refused to build or convert a tensor.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// One tensor's entry in the header.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub kind: Kind,
    /// Shape.
    pub shape: Vec<i64>,
    /// Byte range within the data section.
    pub begin: u64,
    /// End of that range.
    pub end: u64,
}

fn dtype_kind(dtype: &str) -> Option<Kind> {
    Some(match dtype {
        "F32" => Kind::Float,
        "F16" => Kind::Half,
        "BF16" => Kind::BFloat16,
        "F64" => Kind::Double,
        "I64" => Kind::Int64,
        "I32" => Kind::Int,
        "U8" => Kind::Uint8,
        "BOOL" => Kind::Bool,
        _ => return None,
    })
}

fn kind_dtype(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Float => "F32",
        Kind::Half => "F16",
        Kind::BFloat16 => "BF16",
        Kind::Double => "F64",
        Kind::Int64 => "I64",
        Kind::Int => "I32",
        Kind::Uint8 => "U8",
        Kind::Bool => "BOOL",
        _ => return None,
    })
}

/// An open safetensors file whose header has been read.
pub struct SafetensorsFile {
    path: PathBuf,
    file: File,
    data_start: u64,
    entries: BTreeMap<String, Entry>,
}

impl SafetensorsFile {
    /// Opens `path` and parses its header.
    pub fn open(path: &Path) -> Result<SafetensorsFile, SafetensorsError> {
        let io = |source| SafetensorsError::Io {
            path: path.to_owned(),
            source,
        };
        let header = |message: String| SafetensorsError::Header {
            path: path.to_owned(),
            message,
        };
        let mut file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut len = [0u8; 8];
        file.read_exact(&mut len).map_err(io)?;
        let n = u64::from_le_bytes(len);
        if n > 100 << 20 || 8 + n > file_len {
            return Err(header(format!(
                "header length {n} for a {file_len}-byte file"
            )));
        }
        let mut json = vec![0u8; n as usize];
        file.read_exact(&mut json).map_err(io)?;
        let value: serde_json::Value =
            serde_json::from_slice(&json).map_err(|e| header(e.to_string()))?;
        let obj = value
            .as_object()
            .ok_or_else(|| header("not a JSON object".into()))?;
        let data_start = 8 + n;
        let data_len = file_len - data_start;
        let mut entries = BTreeMap::new();
        for (name, v) in obj {
            if name == "__metadata__" {
                continue;
            }
            let bad = |m: &str| header(format!("tensor {name}: {m}"));
            let dtype = v["dtype"].as_str().ok_or_else(|| bad("no dtype"))?;
            let kind = dtype_kind(dtype).ok_or_else(|| SafetensorsError::Dtype {
                path: path.to_owned(),
                name: name.clone(),
                dtype: dtype.to_owned(),
            })?;
            let shape = v["shape"]
                .as_array()
                .ok_or_else(|| bad("no shape"))?
                .iter()
                .map(|d| d.as_i64().filter(|d| *d >= 0))
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| bad("bad shape"))?;
            let offs = v["data_offsets"]
                .as_array()
                .filter(|a| a.len() == 2)
                .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
                .ok_or_else(|| bad("bad data_offsets"))?;
            let (begin, end) = offs;
            let numel = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
            let want = numel.and_then(|n| n.checked_mul(kind.elt_size_in_bytes() as u64));
            if begin > end || end > data_len || want != Some(end - begin) {
                return Err(bad(&format!(
                    "data_offsets [{begin}, {end}] do not fit shape {shape:?} in {data_len} data bytes"
                )));
            }
            entries.insert(
                name.clone(),
                Entry {
                    name: name.clone(),
                    kind,
                    shape,
                    begin,
                    end,
                },
            );
        }
        Ok(SafetensorsFile {
            path: path.to_owned(),
            file,
            data_start,
            entries,
        })
    }

    /// The header entry for `name`, if present.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// Every entry, by name.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Reads one tensor into a new CPU tensor.
    pub fn read(&mut self, entry: &Entry) -> Result<Tensor, SafetensorsError> {
        let io = |source| SafetensorsError::Io {
            path: self.path.clone(),
            source,
        };
        let mut buf = vec![0u8; (entry.end - entry.begin) as usize];
        self.file
            .seek(SeekFrom::Start(self.data_start + entry.begin))
            .map_err(io)?;
        self.file.read_exact(&mut buf).map_err(io)?;
        Ok(Tensor::f_from_data_size(&buf, &entry.shape, entry.kind)?)
    }
}

/// Writes `tensors` (any device; contiguous copies are made on the CPU one at a time) to
/// `path`, in the given order.
pub fn write(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), SafetensorsError> {
    let io = |source| SafetensorsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (name, t) in tensors {
        let dtype = kind_dtype(t.kind()).ok_or_else(|| SafetensorsError::Dtype {
            path: path.to_owned(),
            name: name.clone(),
            dtype: format!("{:?}", t.kind()),
        })?;
        let n = (t.numel() * t.kind().elt_size_in_bytes()) as u64;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": t.size(), "data_offsets": [offset, offset + n]}),
        );
        offset += n;
    }
    header.insert(
        "__metadata__".into(),
        serde_json::json!({"format": "pt", "writer": "crucible-train"}),
    );
    let mut json = serde_json::to_vec(&header).map_err(|e| SafetensorsError::Header {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    // Pad with spaces so the data starts 8-byte aligned, as other writers do.
    while (json.len() + 8) % 8 != 0 {
        json.push(b' ');
    }
    let mut w = BufWriter::new(File::create(path).map_err(io)?);
    w.write_all(&(json.len() as u64).to_le_bytes())
        .map_err(io)?;
    w.write_all(&json).map_err(io)?;
    for (_, t) in tensors {
        let c = t.to_device(tch::Device::Cpu).contiguous();
        let mut buf = vec![0u8; c.numel() * c.kind().elt_size_in_bytes()];
        c.f_copy_data_u8(&mut buf, c.numel())?;
        w.write_all(&buf).map_err(io)?;
    }
    w.flush().map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_named_tensors_of_several_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        let a = Tensor::from_slice(&[1.5f32, -2.0, 3.25, 4.0, 5.0, 6.0]).view([2, 3]);
        let b = Tensor::from_slice(&[7i64, 8]);
        let c = a.to_kind(Kind::BFloat16);
        write(
            &p,
            &[
                ("a".into(), a.shallow_clone()),
                ("b".into(), b.shallow_clone()),
                ("c".into(), c.shallow_clone()),
            ],
        )
        .unwrap();
        let mut f = SafetensorsFile::open(&p).unwrap();
        let names: Vec<_> = f.entries().map(|e| e.name.clone()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let ea = f.entry("a").unwrap().clone();
        assert_eq!(ea.shape, [2, 3]);
        assert!(f.read(&ea).unwrap().equal(&a));
        let eb = f.entry("b").unwrap().clone();
        assert!(f.read(&eb).unwrap().equal(&b));
        let ec = f.entry("c").unwrap().clone();
        assert_eq!(ec.kind, Kind::BFloat16);
        assert!(f.read(&ec).unwrap().equal(&c));
        // tch's own reader (the safetensors crate) agrees with the layout we wrote.
        let theirs = Tensor::read_safetensors(&p).unwrap();
        assert_eq!(theirs.len(), 3);
    }

    #[test]
    fn rejects_inconsistent_headers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.safetensors");
        let json = br#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#;
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend(json);
        bytes.extend([0u8; 8]);
        std::fs::write(&p, &bytes).unwrap();
        let err = SafetensorsFile::open(&p).err().unwrap();
        assert!(err.to_string().contains("do not fit"), "{err}");
        std::fs::write(&p, [255u8; 16]).unwrap();
        assert!(SafetensorsFile::open(&p).is_err());
    }
}

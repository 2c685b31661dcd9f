//! A reader for GGUF files (the llama.cpp model format, version 2 and 3) and the
//! dequantizers for the tensor types Crucible needs: F32, F16, BF16, Q8_0, Q4_0 and Q4_1.
//!
//! Layout, all little-endian: magic `GGUF`, version (u32), tensor count (u64), metadata
//! count (u64); the metadata key/value pairs; one info record per tensor (name, dims,
//! type, offset); padding to `general.alignment` (default 32); then the tensor data, each
//! tensor at its offset from the start of that data section. Dimensions are listed
//! fastest-varying first, so a GGUF `[576, 49152]` is a row-major `[49152, 576]` matrix.

use half::{bf16, f16};
use std::collections::BTreeMap;
use thiserror::Error;

/// What can go wrong reading a GGUF file.
#[derive(Debug, Error)]
pub enum GgufError {
    /// The bytes end before a field does.
    #[error("GGUF truncated: needed {needed} bytes at offset {offset}, file has {len}")]
    Truncated {
        /// Where the read started.
        offset: usize,
        /// How many bytes it needed.
        needed: usize,
        /// The file's length.
        len: usize,
    },
    /// The file does not start with `GGUF`.
    #[error("not a GGUF file (magic {0:02x?})")]
    BadMagic([u8; 4]),
    /// A version this reader does not know.
    #[error("unsupported GGUF version {0} (2 and 3 are supported)")]
    Version(u32),
    /// A metadata value type outside the spec.
    #[error("unknown GGUF metadata value type {0}")]
    ValueType(u32),
    /// A string that is not UTF-8.
    #[error("GGUF string at offset {0} is not UTF-8")]
    Utf8(usize),
    /// A tensor type this crate cannot dequantize.
    #[error("tensor {name:?}: unsupported GGML type {ggml_type}")]
    TensorType {
        /// The tensor.
        name: String,
        /// Its numeric GGML type.
        ggml_type: u32,
    },
    /// Sizes in the header that do not add up.
    #[error("tensor {name:?}: {message}")]
    Layout {
        /// The tensor.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A metadata key the caller needs is absent or of the wrong type.
    #[error("GGUF metadata {key:?}: {message}")]
    Metadata {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor the caller asked for is absent.
    #[error("GGUF has no tensor {0:?}")]
    MissingTensor(String),
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any unsigned integer type, widened.
    U64(u64),
    /// Any signed integer type, widened.
    I64(i64),
    /// FLOAT32 or FLOAT64, widened.
    F64(f64),
    /// BOOL.
    Bool(bool),
    /// STRING.
    Str(String),
    /// ARRAY (of any one type).
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => None,
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The GGML tensor types this reader can turn into f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// Blocks of 32: f16 scale `d`, 16 bytes of 4-bit values; x = (q - 8) * d.
    Q4_0,
    /// Blocks of 32: f16 scale `d`, f16 minimum `m`, 16 bytes of 4-bit values; x = q * d + m.
    Q4_1,
    /// Blocks of 32: f16 scale `d`, 32 signed bytes; x = q * d.
    Q8_0,
}

impl GgmlType {
    fn from_id(id: u32) -> Option<GgmlType> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            30 => GgmlType::Bf16,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block).
    fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::Bf16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q8_0 => (32, 34),
        }
    }

    /// The type's name as llama.cpp prints it.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Bf16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q8_0 => "Q8_0",
        }
    }
}

/// Where one tensor is and what it holds.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// GGUF tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, fastest-varying first (GGUF order).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Byte range of the data within the file.
    pub range: std::ops::Range<usize>,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }

    /// The shape in row-major (PyTorch) order: the GGUF dims reversed.
    pub fn shape(&self) -> Vec<i64> {
        self.dims.iter().rev().map(|&d| d as i64).collect()
    }
}

/// A parsed GGUF file over its bytes.
pub struct Gguf<'a> {
    bytes: &'a [u8],
    /// Format version.
    pub version: u32,
    /// Metadata, by key.
    pub metadata: BTreeMap<String, Value>,
    /// Tensors, in file order.
    pub tensors: Vec<TensorInfo>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GgufError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(GgufError::Truncated {
                offset: self.pos,
                needed: n,
                len: self.bytes.len(),
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A length that must fit in the remaining bytes (each element takes at least
    /// `min_elem` bytes), so a corrupt count cannot make us allocate wildly.
    fn len(&mut self, min_elem: usize) -> Result<usize, GgufError> {
        let at = self.pos;
        let n = self.u64()?;
        let remaining = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_elem.max(1) as u64) > remaining {
            return Err(GgufError::Truncated {
                offset: at,
                needed: n as usize,
                len: self.bytes.len(),
            });
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let n = self.len(1)?;
        let at = self.pos;
        let raw = self.take(n)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| GgufError::Utf8(at))
    }

    fn value(&mut self, ty: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::U64(self.array::<1>()?[0] as u64),
            1 => Value::I64(self.array::<1>()?[0] as i8 as i64),
            2 => Value::U64(u16::from_le_bytes(self.array()?) as u64),
            3 => Value::I64(i16::from_le_bytes(self.array()?) as i64),
            4 => Value::U64(self.u32()? as u64),
            5 => Value::I64(i32::from_le_bytes(self.array()?) as i64),
            6 => Value::F64(f32::from_le_bytes(self.array()?) as f64),
            7 => Value::Bool(self.array::<1>()?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                let elem = self.u32()?;
                let n = self.len(1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(GgufError::ValueType(other)),
        })
    }
}

impl<'a> Gguf<'a> {
    /// Parses the header, metadata and tensor table of `bytes` (the whole file). Tensor
    /// data is read later, on demand, by [`Gguf::dequantize`].
    pub fn parse(bytes: &'a [u8]) -> Result<Gguf<'a>, GgufError> {
        let mut c = Cursor { bytes, pos: 0 };
        let magic: [u8; 4] = c.array()?;
        if &magic != b"GGUF" {
            return Err(GgufError::BadMagic(magic));
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version(version));
        }
        // Every tensor record and key/value pair is at least 8 bytes long.
        let n_tensors = c.len(8)?;
        let n_kv = c.len(8)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            let value = c.value(ty)?;
            metadata.insert(key, value);
        }
        let mut raw = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string()?;
            let n_dims = c.u32()? as usize;
            if n_dims > 8 {
                return Err(GgufError::Layout {
                    name,
                    message: format!("{n_dims} dimensions"),
                });
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                dims.push(c.u64()?);
            }
            let ty = c.u32()?;
            let offset = c.u64()?;
            raw.push((name, dims, ty, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => v.as_u64().filter(|a| *a > 0).ok_or(GgufError::Metadata {
                key: "general.alignment".into(),
                message: "not a positive integer".into(),
            })? as usize,
        };
        let data_start = c.pos.div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, ty, offset) in raw {
            let ggml_type = GgmlType::from_id(ty).ok_or_else(|| GgufError::TensorType {
                name: name.clone(),
                ggml_type: ty,
            })?;
            let numel = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| layout(&name, "element count overflows"))?;
            let (block_elems, block_bytes) = ggml_type.block();
            // Blocks never straddle rows: llama.cpp quantizes each row separately.
            let row = dims.first().copied().unwrap_or(1);
            if row % block_elems as u64 != 0 {
                return Err(layout(
                    &name,
                    &format!(
                        "row length {row} is not a multiple of the {} block size {block_elems}",
                        ggml_type.name()
                    ),
                ));
            }
            let n_bytes = (numel / block_elems as u64) * block_bytes as u64;
            let start = (data_start as u64)
                .checked_add(offset)
                .ok_or_else(|| layout(&name, "offset overflows"))?;
            let end = start
                .checked_add(n_bytes)
                .filter(|&e| e <= bytes.len() as u64)
                .ok_or_else(|| {
                    layout(
                        &name,
                        &format!(
                            "data {start}+{n_bytes} runs past the file end {}",
                            bytes.len()
                        ),
                    )
                })?;
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                range: start as usize..end as usize,
            });
        }
        Ok(Gguf {
            bytes,
            version,
            metadata,
            tensors,
        })
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| GgufError::MissingTensor(name.to_owned()))
    }

    /// The raw data bytes of a tensor.
    pub fn data(&self, info: &TensorInfo) -> &'a [u8] {
        &self.bytes[info.range.clone()]
    }

    /// The tensor's values as f32, row-major in [`TensorInfo::shape`].
    pub fn dequantize(&self, info: &TensorInfo) -> Vec<f32> {
        dequantize(info.ggml_type, self.data(info), info.numel())
    }

    /// A required metadata value.
    pub fn get(&self, key: &str) -> Result<&Value, GgufError> {
        self.metadata.get(key).ok_or_else(|| GgufError::Metadata {
            key: key.to_owned(),
            message: "missing".into(),
        })
    }

    /// A required unsigned integer.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get(key)?.as_u64().ok_or_else(|| GgufError::Metadata {
            key: key.to_owned(),
            message: "not an unsigned integer".into(),
        })
    }

    /// A required number.
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        self.get(key)?.as_f64().ok_or_else(|| GgufError::Metadata {
            key: key.to_owned(),
            message: "not a number".into(),
        })
    }

    /// A required string.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.get(key)?.as_str().ok_or_else(|| GgufError::Metadata {
            key: key.to_owned(),
            message: "not a string".into(),
        })
    }

    /// A required array of strings.
    pub fn get_strings(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let bad = || GgufError::Metadata {
            key: key.to_owned(),
            message: "not an array of strings".into(),
        };
        match self.get(key)? {
            Value::Array(items) => items.iter().map(|v| v.as_str().ok_or_else(bad)).collect(),
            _ => Err(bad()),
        }
    }
}

fn layout(name: &str, message: &str) -> GgufError {
    GgufError::Layout {
        name: name.to_owned(),
        message: message.to_owned(),
    }
}

fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Decodes `numel` values of type `ty` from `data` (which must hold exactly that many:
/// [`Gguf::parse`] checks the sizes).
pub fn dequantize(ty: GgmlType, data: &[u8], numel: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(numel);
    match ty {
        GgmlType::F32 => out.extend(
            data.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        GgmlType::F16 => out.extend(
            data.chunks_exact(2)
                .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
        ),
        GgmlType::Bf16 => out.extend(
            data.chunks_exact(2)
                .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
        ),
        GgmlType::Q8_0 => {
            for block in data.chunks_exact(34) {
                let d = half_at(block, 0);
                out.extend(block[2..].iter().map(|&q| q as i8 as f32 * d));
            }
        }
        GgmlType::Q4_0 => {
            for block in data.chunks_exact(18) {
                let d = half_at(block, 0);
                let qs = &block[2..];
                // The low nibbles are elements 0..16, the high nibbles 16..32.
                out.extend(qs.iter().map(|&q| ((q & 0x0f) as i32 - 8) as f32 * d));
                out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
            }
        }
        GgmlType::Q4_1 => {
            for block in data.chunks_exact(20) {
                let d = half_at(block, 0);
                let m = half_at(block, 2);
                let qs = &block[4..];
                out.extend(qs.iter().map(|&q| (q & 0x0f) as f32 * d + m));
                out.extend(qs.iter().map(|&q| (q >> 4) as f32 * d + m));
            }
        }
    }
    debug_assert_eq!(out.len(), numel);
    out
}

/// Undoes the row permutation llama.cpp's converter applies to the query and key
/// projections of llama models.
///
/// Hugging Face's rotary embedding rotates element `i` of a head with element
/// `i + head_dim/2`; GGML's rotates adjacent pairs `(2i, 2i+1)`. So the converter reorders
/// each head's output rows from `[first half, second half]` to interleaved pairs. `w` is
/// row-major `[rows, cols]` with `rows = n_heads * head_dim`; the result is in HF order.
pub fn unpermute_rows(w: &[f32], rows: usize, cols: usize, n_heads: usize) -> Vec<f32> {
    let head_dim = rows / n_heads;
    let half = head_dim / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                // GGUF row (h, i, j) holds HF row (h, j, i).
                let src = h * head_dim + 2 * i + j;
                let dst = h * head_dim + j * half + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// Builds GGUF bytes (version 3) from metadata and f32 / pre-encoded tensors. Used by the
/// tests of this crate to make small files with known contents.
#[doc(hidden)]
pub mod write {
    use super::Value;

    /// One tensor to write: name, GGUF dims (fastest first), GGML type id, raw data.
    pub struct RawTensor {
        /// Tensor name.
        pub name: String,
        /// Dims, fastest first.
        pub dims: Vec<u64>,
        /// GGML type id.
        pub ggml_type: u32,
        /// Encoded data.
        pub data: Vec<u8>,
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    fn value(out: &mut Vec<u8>, v: &Value, with_type: bool) {
        let (ty, body): (u32, Vec<u8>) = match v {
            Value::U64(x) => (10, x.to_le_bytes().to_vec()),
            Value::I64(x) => (11, x.to_le_bytes().to_vec()),
            Value::F64(x) => (6, (*x as f32).to_le_bytes().to_vec()),
            Value::Bool(b) => (7, vec![*b as u8]),
            Value::Str(s) => {
                let mut b = Vec::new();
                string(&mut b, s);
                (8, b)
            }
            Value::Array(items) => {
                let mut b = Vec::new();
                let elem_ty = match items.first() {
                    Some(Value::U64(_)) => 10u32,
                    Some(Value::I64(_)) => 11,
                    Some(Value::F64(_)) => 6,
                    Some(Value::Bool(_)) => 7,
                    Some(Value::Array(_)) => 9,
                    Some(Value::Str(_)) | None => 8,
                };
                b.extend(elem_ty.to_le_bytes());
                b.extend((items.len() as u64).to_le_bytes());
                for item in items {
                    value(&mut b, item, false);
                }
                (9, b)
            }
        };
        if with_type {
            out.extend(ty.to_le_bytes());
        }
        out.extend(body);
    }

    /// The file's bytes, with 32-byte alignment.
    pub fn gguf(metadata: &[(&str, Value)], tensors: &[RawTensor]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(3u32.to_le_bytes());
        out.extend((tensors.len() as u64).to_le_bytes());
        out.extend((metadata.len() as u64).to_le_bytes());
        for (k, v) in metadata {
            string(&mut out, k);
            value(&mut out, v, true);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for t in tensors {
            string(&mut out, &t.name);
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.ggml_type.to_le_bytes());
            out.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset += (t.data.len() as u64).div_ceil(32) * 32;
        }
        while out.len() % 32 != 0 {
            out.push(0);
        }
        let base = out.len();
        for (t, off) in tensors.iter().zip(offsets) {
            out.resize(base + off as usize, 0);
            out.extend(&t.data);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::write::{gguf, RawTensor};
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_bits().to_le_bytes()
    }

    #[test]
    fn q4_1_block_decodes_low_then_high_nibbles() {
        let mut block = Vec::new();
        block.extend(h(0.5)); // d
        block.extend(h(-1.0)); // m
        for j in 0..16u8 {
            block.push(j | ((15 - j) << 4));
        }
        let v = dequantize(GgmlType::Q4_1, &block, 32);
        assert_eq!(v[0], -1.0); // 0 * 0.5 - 1
        assert_eq!(v[3], 0.5); // 3 * 0.5 - 1
        assert_eq!(v[16], 6.5); // 15 * 0.5 - 1
        assert_eq!(v[31], -1.0); // 0 * 0.5 - 1
    }

    #[test]
    fn q8_0_and_q4_0_blocks() {
        let mut block = Vec::new();
        block.extend(h(0.25));
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let v = dequantize(GgmlType::Q8_0, &block, 32);
        assert_eq!(v[0], -4.0);
        assert_eq!(v[31], 3.75);

        let mut block = Vec::new();
        block.extend(h(2.0));
        block.extend([0x8fu8; 16]); // low nibble 15, high nibble 8
        let v = dequantize(GgmlType::Q4_0, &block, 32);
        assert_eq!(v[0], 14.0);
        assert_eq!(v[16], 0.0);
    }

    #[test]
    fn parses_metadata_and_tensors() {
        let f32s: Vec<u8> = [1.0f32, -2.0, 3.5, 0.0, 8.0, 9.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let f16s: Vec<u8> = [0.5f32, 1.5].iter().flat_map(|&x| h(x)).collect();
        let bytes = gguf(
            &[
                ("general.architecture", Value::Str("llama".into())),
                ("llama.block_count", Value::U64(2)),
                ("llama.rope.freq_base", Value::F64(10000.0)),
                (
                    "tokenizer.ggml.tokens",
                    Value::Array(vec![Value::Str("a".into()), Value::Str("b".into())]),
                ),
            ],
            &[
                RawTensor {
                    name: "m".into(),
                    dims: vec![3, 2],
                    ggml_type: 0,
                    data: f32s,
                },
                RawTensor {
                    name: "v".into(),
                    dims: vec![2],
                    ggml_type: 1,
                    data: f16s,
                },
            ],
        );
        let g = Gguf::parse(&bytes).unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
        assert_eq!(g.get_u64("llama.block_count").unwrap(), 2);
        assert_eq!(g.get_f64("llama.rope.freq_base").unwrap(), 10000.0);
        assert_eq!(g.get_strings("tokenizer.ggml.tokens").unwrap(), ["a", "b"]);
        let m = g.tensor("m").unwrap();
        assert_eq!(m.shape(), [2, 3]);
        assert_eq!(g.dequantize(m), [1.0, -2.0, 3.5, 0.0, 8.0, 9.0]);
        assert_eq!(g.dequantize(g.tensor("v").unwrap()), [0.5, 1.5]);
        assert!(matches!(g.tensor("x"), Err(GgufError::MissingTensor(_))));
        assert!(g.get_u64("general.architecture").is_err());
    }

    #[test]
    fn rejects_bad_files() {
        assert!(matches!(
            Gguf::parse(b"GGML\x03\0\0\0"),
            Err(GgufError::BadMagic(_))
        ));
        assert!(matches!(
            Gguf::parse(b"GGUF\x09\0\0\0"),
            Err(GgufError::Version(9))
        ));
        let good = gguf(&[("k", Value::U64(1))], &[]);
        for cut in [5, 12, 20, 44] {
            assert!(
                matches!(Gguf::parse(&good[..cut]), Err(GgufError::Truncated { .. })),
                "cut at {cut}"
            );
        }
        // A tensor whose data would run past the end of the file.
        let mut bad = gguf(
            &[],
            &[RawTensor {
                name: "t".into(),
                dims: vec![4],
                ggml_type: 0,
                data: vec![0; 16],
            }],
        );
        bad.truncate(bad.len() - 4);
        assert!(matches!(Gguf::parse(&bad), Err(GgufError::Layout { .. })));
        // An unsupported quantization type (Q6_K = 14).
        let q6 = gguf(
            &[],
            &[RawTensor {
                name: "t".into(),
                dims: vec![256],
                ggml_type: 14,
                data: vec![0; 210],
            }],
        );
        assert!(matches!(
            Gguf::parse(&q6),
            Err(GgufError::TensorType { ggml_type: 14, .. })
        ));
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // Two heads of dim 4, two columns; rows tagged by their HF index.
        let rows = 8;
        let cols = 2;
        let hf: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        // llama.cpp's permutation: per head, row (j, i) -> position (i, j).
        let mut gguf_order = vec![0f32; hf.len()];
        for h in 0..2 {
            for j in 0..2 {
                for i in 0..2 {
                    let src = h * 4 + j * 2 + i;
                    let dst = h * 4 + i * 2 + j;
                    gguf_order[dst * cols..(dst + 1) * cols]
                        .copy_from_slice(&hf[src * cols..(src + 1) * cols]);
                }
            }
        }
        assert_ne!(gguf_order, hf);
        assert_eq!(unpermute_rows(&gguf_order, rows, cols, 2), hf);
    }
}

//! Reads one member out of a zip archive (a Python wheel) into memory: the central
//! directory names every member with its sizes, method and CRC, so this needs no more
//! than the end-of-central-directory record, one directory entry and one local header.
//! Stored and deflated members are supported; zip64 archives (members over 4 GiB) are not.

use flate2::read::DeflateDecoder;
use std::io::Read;
use thiserror::Error;

/// What can go wrong reading a zip archive.
#[derive(Debug, Error)]
pub enum ZipError {
    /// Not a zip, or its directory is damaged.
    #[error("not a readable zip archive: {0}")]
    Format(String),
    /// No member matched.
    #[error("the archive has no member {0}")]
    NotFound(String),
    /// A compression method other than stored (0) or deflate (8).
    #[error("member {name}: unsupported compression method {method}")]
    Method {
        /// Member name.
        name: String,
        /// Zip method id.
        method: u16,
    },
    /// The inflated bytes do not match the recorded size or CRC.
    #[error("member {0}: corrupt data (size or CRC mismatch)")]
    Corrupt(String),
    /// The deflate stream itself is broken.
    #[error("member {name}: {source}")]
    Inflate {
        /// Member name.
        name: String,
        /// The decoder's error.
        source: std::io::Error,
    },
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// One member of the central directory.
#[derive(Debug, Clone)]
pub struct Member {
    /// Path inside the archive.
    pub name: String,
    method: u16,
    crc: u32,
    compressed: usize,
    size: usize,
    local_header: usize,
}

/// Lists the members of the zip archive `bytes`.
pub fn members(bytes: &[u8]) -> Result<Vec<Member>, ZipError> {
    let fmt = |m: &str| ZipError::Format(m.to_owned());
    // The end record is 22 bytes plus a comment of at most 65535.
    let lo = bytes.len().saturating_sub(22 + 65535);
    let eocd = (lo..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(bytes, i) == Some(0x0605_4b50))
        .ok_or_else(|| fmt("no end-of-central-directory record"))?;
    let count = u16_at(bytes, eocd + 10).ok_or_else(|| fmt("short end record"))? as usize;
    let mut pos = u32_at(bytes, eocd + 16).ok_or_else(|| fmt("short end record"))? as usize;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let field = |off: usize| u32_at(bytes, pos + off).ok_or_else(|| fmt("short entry"));
        let half = |off: usize| u16_at(bytes, pos + off).ok_or_else(|| fmt("short entry"));
        if field(0)? != 0x0201_4b50 {
            return Err(fmt("bad central directory entry"));
        }
        let name_len = half(28)? as usize;
        let extra_len = half(30)? as usize;
        let comment_len = half(32)? as usize;
        let name_bytes = bytes
            .get(pos + 46..pos + 46 + name_len)
            .ok_or_else(|| fmt("short entry name"))?;
        let (compressed, size) = (field(20)?, field(24)?);
        if compressed == u32::MAX || size == u32::MAX {
            return Err(fmt("zip64 members are not supported"));
        }
        out.push(Member {
            name: String::from_utf8_lossy(name_bytes).into_owned(),
            method: half(10)?,
            crc: field(16)?,
            compressed: compressed as usize,
            size: size as usize,
            local_header: field(42)? as usize,
        });
        pos += 46 + name_len + extra_len + comment_len;
    }
    Ok(out)
}

/// The uncompressed bytes of `member`, checked against its size and CRC.
pub fn read(bytes: &[u8], member: &Member) -> Result<Vec<u8>, ZipError> {
    let fmt = |m: &str| ZipError::Format(format!("{}: {m}", member.name));
    let h = member.local_header;
    if u32_at(bytes, h) != Some(0x0403_4b50) {
        return Err(fmt("bad local header"));
    }
    // The local header's own name and extra lengths can differ from the directory's.
    let name_len = u16_at(bytes, h + 26).ok_or_else(|| fmt("short local header"))? as usize;
    let extra_len = u16_at(bytes, h + 28).ok_or_else(|| fmt("short local header"))? as usize;
    let start = h + 30 + name_len + extra_len;
    let raw = bytes
        .get(start..start + member.compressed)
        .ok_or_else(|| fmt("data runs past the end"))?;
    let data = match member.method {
        0 => raw.to_vec(),
        8 => {
            let mut out = Vec::with_capacity(member.size);
            DeflateDecoder::new(raw)
                .read_to_end(&mut out)
                .map_err(|source| ZipError::Inflate {
                    name: member.name.clone(),
                    source,
                })?;
            out
        }
        method => {
            return Err(ZipError::Method {
                name: member.name.clone(),
                method,
            })
        }
    };
    let mut crc = flate2::Crc::new();
    crc.update(&data);
    if data.len() != member.size || crc.sum() != member.crc {
        return Err(ZipError::Corrupt(member.name.clone()));
    }
    Ok(data)
}

/// The bytes of the first member whose name satisfies `pick`.
pub fn extract(
    bytes: &[u8],
    what: &str,
    pick: impl Fn(&str) -> bool,
) -> Result<(String, Vec<u8>), ZipError> {
    let member = members(bytes)?
        .into_iter()
        .find(|m| pick(&m.name))
        .ok_or_else(|| ZipError::NotFound(what.to_owned()))?;
    let data = read(bytes, &member)?;
    Ok((member.name, data))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::write::DeflateEncoder;
    use flate2::Compression;
    use std::io::Write;

    /// A zip archive of `(name, data, deflate?)` members, as a wheel would be.
    pub fn zip(entries: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut dir = Vec::new();
        for (name, data, deflate) in entries {
            let body = if *deflate {
                let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            } else {
                data.to_vec()
            };
            let mut crc = flate2::Crc::new();
            crc.update(data);
            let method: u16 = if *deflate { 8 } else { 0 };
            let offset = out.len() as u32;
            out.extend(0x0403_4b50u32.to_le_bytes());
            out.extend([20, 0, 0, 0]);
            out.extend(method.to_le_bytes());
            out.extend([0; 4]);
            out.extend(crc.sum().to_le_bytes());
            out.extend((body.len() as u32).to_le_bytes());
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend(0u16.to_le_bytes());
            out.extend(name.as_bytes());
            out.extend(&body);
            dir.extend(0x0201_4b50u32.to_le_bytes());
            dir.extend([20, 0, 20, 0, 0, 0]);
            dir.extend(method.to_le_bytes());
            dir.extend([0; 4]);
            dir.extend(crc.sum().to_le_bytes());
            dir.extend((body.len() as u32).to_le_bytes());
            dir.extend((data.len() as u32).to_le_bytes());
            dir.extend((name.len() as u16).to_le_bytes());
            dir.extend([0; 12]);
            dir.extend(offset.to_le_bytes());
            dir.extend(name.as_bytes());
        }
        let dir_offset = out.len() as u32;
        out.extend(&dir);
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend([0; 4]);
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((dir.len() as u32).to_le_bytes());
        out.extend(dir_offset.to_le_bytes());
        out.extend([0; 2]);
        out
    }

    #[test]
    fn extracts_stored_and_deflated_members() {
        let big = b"abcabcabc".repeat(1000);
        let z = zip(&[
            ("pkg/__init__.py", b"print(1)\n", false),
            ("pkg/model.gguf", &big, true),
        ]);
        let names: Vec<_> = members(&z).unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["pkg/__init__.py", "pkg/model.gguf"]);
        let (name, data) = extract(&z, "*.gguf", |n| n.ends_with(".gguf")).unwrap();
        assert_eq!(name, "pkg/model.gguf");
        assert_eq!(data, big);
        let (_, data) = extract(&z, "init", |n| n.ends_with("__init__.py")).unwrap();
        assert_eq!(data, b"print(1)\n");
        assert!(matches!(
            extract(&z, "*.bin", |n| n.ends_with(".bin")),
            Err(ZipError::NotFound(_))
        ));
    }

    #[test]
    fn detects_corruption() {
        let mut z = zip(&[("a.txt", b"hello world", false)]);
        // Flip a byte of the stored data (after the 30-byte header and 5-byte name).
        z[36] ^= 0xff;
        assert!(matches!(
            extract(&z, "a", |_| true),
            Err(ZipError::Corrupt(_))
        ));
        assert!(matches!(members(b"not a zip"), Err(ZipError::Format(_))));
    }
}

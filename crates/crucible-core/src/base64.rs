//! Base64 decoding, for the places where bytes arrive as text: compiled artifacts sent
//! back out of the sandbox, and dataset fields (LiveCodeBench's private tests).

/// Decodes base64 in the standard or the URL-safe alphabet; padding is optional and
/// whitespace is ignored. Returns the bytes, or a message naming the first byte that is
/// not base64 and its position.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (i, c) in text.bytes().enumerate() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' | b'\n' | b'\r' | b' ' => continue,
            _ => return Err(format!("not base64 (byte {c:#04x} at {i})")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn decodes_both_alphabets_with_or_without_padding() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVs\nbG8=\n").unwrap(), b"hello");
        assert_eq!(base64_decode("f0VMRgIB").unwrap(), b"\x7fELF\x02\x01");
        assert_eq!(
            base64_decode("-_8=").unwrap(),
            base64_decode("+/8=").unwrap()
        );
        assert_eq!(base64_decode("").unwrap(), b"");
        let err = base64_decode("a*b").unwrap_err();
        assert!(err.contains("0x2a at 1"), "{err}");
    }
}

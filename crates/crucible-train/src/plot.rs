//! PNG curves of a run's `metrics.jsonl`: one panel per metric in a grid, drawn into
//! an RGB raster and written by a minimal PNG encoder (zlib through flate2), with a
//! small built-in 3x5 font for titles and axis values.

use flate2::write::ZlibEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::Path;

/// An RGB raster.
pub struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    /// A white canvas.
    pub fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    /// A line from (x0, y0) to (x1, y1) (Bresenham).
    pub fn line(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text in the 3x5 font, scaled by `s`, top-left at (x, y). Unknown characters are
    /// drawn as blanks.
    pub fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let g = glyph(ch.to_ascii_lowercase());
            for (row, bits) in g.iter().enumerate() {
                for col in 0..3 {
                    if bits & (4 >> col) != 0 {
                        for dy in 0..scale {
                            for dx in 0..scale {
                                self.set(
                                    x + (k as i64 * 4 + col) * scale + dx,
                                    y + row as i64 * scale + dy,
                                    c,
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Encodes the canvas as a PNG file.
    pub fn png(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity((self.w * 3 + 1) * self.h);
        for row in self.px.chunks(self.w * 3) {
            raw.push(0); // filter: none
            raw.extend_from_slice(row);
        }
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        // Writing to a Vec cannot fail.
        let _ = z.write_all(&raw);
        let idat = z.finish().unwrap_or_default();
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&(self.w as u32).to_be_bytes());
        ihdr.extend_from_slice(&(self.h as u32).to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"IDAT", &idat);
        chunk(&mut out, b"IEND", &[]);
        out
    }
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32(kind, 0xffff_ffff);
    crc = crc32(data, crc);
    out.extend_from_slice(&(!crc).to_be_bytes());
}

fn crc32(bytes: &[u8], mut c: u32) -> u32 {
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    c
}

/// 3x5 glyphs, one row per entry, bit 2 the left column.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 3, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 2, 2, 2],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        'a' => [2, 5, 7, 5, 5],
        'b' => [6, 5, 6, 5, 6],
        'c' => [3, 4, 4, 4, 3],
        'd' => [6, 5, 5, 5, 6],
        'e' => [7, 4, 6, 4, 7],
        'f' => [7, 4, 6, 4, 4],
        'g' => [3, 4, 5, 5, 3],
        'h' => [5, 5, 7, 5, 5],
        'i' => [7, 2, 2, 2, 7],
        'j' => [1, 1, 1, 5, 2],
        'k' => [5, 5, 6, 5, 5],
        'l' => [4, 4, 4, 4, 7],
        'm' => [5, 7, 7, 5, 5],
        'n' => [6, 5, 5, 5, 5],
        'o' => [2, 5, 5, 5, 2],
        'p' => [6, 5, 6, 4, 4],
        'q' => [2, 5, 5, 6, 3],
        'r' => [6, 5, 6, 5, 5],
        's' => [3, 4, 2, 1, 6],
        't' => [7, 2, 2, 2, 2],
        'u' => [5, 5, 5, 5, 7],
        'v' => [5, 5, 5, 5, 2],
        'w' => [5, 5, 7, 7, 5],
        'x' => [5, 5, 2, 5, 5],
        'y' => [5, 5, 2, 2, 2],
        'z' => [7, 1, 2, 4, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        '_' => [0, 0, 0, 0, 7],
        '+' => [0, 2, 7, 2, 0],
        ':' => [0, 2, 0, 2, 0],
        '/' => [1, 1, 2, 4, 4],
        '%' => [5, 1, 2, 4, 5],
        '@' => [7, 5, 7, 4, 7],
        _ => [0; 5],
    }
}

fn fmt(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 || v.abs() < 0.01 {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

/// Draws one series per title into a grid of panels (x = index of the point's step).
pub fn panels(series: &[(String, Vec<(f64, f64)>)], cols: usize) -> Canvas {
    let (pw, ph) = (360usize, 220usize);
    let rows = series.len().div_ceil(cols.max(1));
    let mut c = Canvas::new(pw * cols.max(1), ph * rows.max(1));
    for (k, (title, pts)) in series.iter().enumerate() {
        let (ox, oy) = (((k % cols) * pw) as i64, ((k / cols) * ph) as i64);
        let (l, r, t, b) = (ox + 50, ox + pw as i64 - 12, oy + 24, oy + ph as i64 - 22);
        let grey = [120, 120, 120];
        c.line(l, b, r, b, grey);
        c.line(l, t, l, b, grey);
        c.text(ox + 50, oy + 6, title, 2, [0, 0, 0]);
        let finite: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.1.is_finite()).collect();
        if finite.is_empty() {
            continue;
        }
        let (mut y0, mut y1) = finite
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        if y1 - y0 < 1e-12 {
            y0 -= 0.5;
            y1 += 0.5;
        }
        let (x0, x1) = (
            finite[0].0,
            finite[finite.len() - 1].0.max(finite[0].0 + 1.0),
        );
        c.text(ox + 2, t, &fmt(y1), 1, grey);
        c.text(ox + 2, b - 5, &fmt(y0), 1, grey);
        c.text(l, b + 6, &fmt(x0), 1, grey);
        c.text(r - 24, b + 6, &fmt(x1), 1, grey);
        let map = |p: (f64, f64)| {
            (
                l + ((p.0 - x0) / (x1 - x0) * (r - l) as f64) as i64,
                b - ((p.1 - y0) / (y1 - y0) * (b - t) as f64) as i64,
            )
        };
        let blue = [31, 90, 180];
        for w in finite.windows(2) {
            let (a, bb) = (map(w[0]), map(w[1]));
            c.line(a.0, a.1, bb.0, bb.1, blue);
        }
        if finite.len() == 1 {
            let a = map(finite[0]);
            c.line(a.0 - 2, a.1, a.0 + 2, a.1, blue);
        }
    }
    c
}

/// The metrics drawn by [`plot_run`].
pub const METRICS: &[&str] = &[
    "reward_mean",
    "pass_rate",
    "kl",
    "entropy",
    "clipfrac",
    "approx_kl",
    "vf_loss",
    "explained_variance",
    "tokens_per_s",
    "judge_share",
    "pg_loss",
    "grad_norm",
];

/// Reads `run_dir/metrics.jsonl` (and `eval.jsonl`, `sft.jsonl` when present) and
/// writes `curves.png` (all metrics) and `heldout.png` / `sft.png`. Returns the files
/// written.
pub fn plot_run(run_dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let read = |name: &str| -> std::io::Result<Vec<serde_json::Value>> {
        let p = run_dir.join(name);
        if !p.exists() {
            return Ok(Vec::new());
        }
        Ok(std::fs::read_to_string(p)?
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    };
    let mut written = Vec::new();
    let metrics = read("metrics.jsonl")?;
    let series =
        |rows: &[serde_json::Value], key: &str, val: &dyn Fn(&serde_json::Value) -> Option<f64>| {
            (
                key.to_owned(),
                rows.iter()
                    .filter_map(|r| Some((r["step"].as_f64()?, val(r)?)))
                    .collect::<Vec<_>>(),
            )
        };
    if !metrics.is_empty() {
        let s: Vec<_> = METRICS
            .iter()
            .map(|k| series(&metrics, k, &|r: &serde_json::Value| r[*k].as_f64()))
            .collect();
        let p = run_dir.join("curves.png");
        std::fs::write(&p, panels(&s, 3).png())?;
        written.push(p);
    }
    let eval = read("eval.jsonl")?;
    let sft = read("sft.jsonl")?;
    let mut extra = Vec::new();
    if !eval.is_empty() {
        extra.push(series(&eval, "heldout pass@1", &|r: &serde_json::Value| {
            r["eval"]["pass_at_1"].as_f64()
        }));
    }
    if !sft.is_empty() {
        extra.push(series(&sft, "sft loss", &|r: &serde_json::Value| {
            r["loss"].as_f64()
        }));
    }
    if !extra.is_empty() {
        let p = run_dir.join("heldout.png");
        std::fs::write(&p, panels(&extra, extra.len()).png())?;
        written.push(p);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_has_valid_structure_and_crc() {
        let mut c = Canvas::new(4, 3);
        c.line(0, 0, 3, 2, [0, 0, 0]);
        let png = c.png();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        // The CRC of IEND is the well-known constant AE 42 60 82.
        assert_eq!(&png[png.len() - 4..], &[0xae, 0x42, 0x60, 0x82]);
        // The pixel data inflates back to the raster with filter bytes.
        let idat_len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut d = flate2::read::ZlibDecoder::new(&png[41..41 + idat_len]);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut raw).unwrap();
        assert_eq!(raw.len(), 3 * (1 + 4 * 3));
        assert_eq!(&raw[1..4], &[0, 0, 0]);
    }
}

//! Pre-initialised modules, wizer-style but for command modules: a guest runs its start-up
//! once, then stops in `proc_exit`; we keep its memory and globals and write a new module
//! whose data segments and global initialisers *are* that state. Instantiating the new
//! module maps the memory image copy-on-write, so every run begins where start-up ended
//! without paying for it.
//!
//! The guest's stack is not kept (a trap unwinds it), so a run cannot resume where
//! start-up stopped. The guest says instead, in a small JSON file, which function a run
//! calls: the address of a word in memory holding a function-table index, and the i32
//! arguments. The host reads the word after start-up and calls that table entry.
//!
//! Only the section-level rewriting needed for this is done here; wasmtime validates the
//! result when it compiles it.

use super::WasmError;
use std::ops::Range;
use wasmtime::wasmparser::{self, Parser, Payload, TypeRef, ValType};

/// Prefix of the exports added so the host can read every defined global after start-up.
pub(crate) const GLOBAL_EXPORT_PREFIX: &str = "__crucible_global_";
/// Export added for the module's first table, so a run can call into it.
pub(crate) const TABLE_EXPORT: &str = "__crucible_table";

// Section ids of the core module format.
const SEC_MEMORY: u8 = 5;
const SEC_GLOBAL: u8 = 6;
const SEC_EXPORT: u8 = 7;
const SEC_START: u8 = 8;
const SEC_DATA: u8 = 11;
const SEC_DATACOUNT: u8 = 12;
const PAGE: usize = 65536;
/// Zero runs shorter than this stay inside a data segment: fewer, larger segments keep
/// the module small and well under wasmparser's segment-count limit.
const ZERO_GAP: usize = 4096;
const MAX_SEGMENTS: usize = 50_000;

fn bad(msg: impl Into<String>) -> WasmError {
    WasmError::Snapshot(msg.into())
}

fn parse_err(e: wasmparser::BinaryReaderError) -> WasmError {
    WasmError::Snapshot(format!("cannot parse module: {e}"))
}

/// What the rewriting needs to know about a module.
pub(crate) struct Layout {
    imported_globals: u32,
    defined_globals: Vec<(ValType, bool)>,
    has_table: bool,
}

impl Layout {
    /// Indices (in the global index space) of the globals the module defines.
    pub(crate) fn defined_global_indices(&self) -> Range<u32> {
        self.imported_globals..self.imported_globals + self.defined_globals.len() as u32
    }
}

fn layout(wasm: &[u8]) -> Result<Layout, WasmError> {
    let mut l = Layout {
        imported_globals: 0,
        defined_globals: Vec::new(),
        has_table: false,
    };
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(parse_err)? {
            Payload::ImportSection(r) => {
                for imp in r.into_imports() {
                    match imp.map_err(parse_err)?.ty {
                        TypeRef::Global(_) => l.imported_globals += 1,
                        TypeRef::Table(_) => l.has_table = true,
                        _ => {}
                    }
                }
            }
            Payload::TableSection(r) => l.has_table |= r.count() > 0,
            Payload::GlobalSection(r) => {
                for g in r {
                    let ty = g.map_err(parse_err)?.ty;
                    l.defined_globals.push((ty.content_type, ty.mutable));
                }
            }
            Payload::DataSection(r) => {
                for d in r {
                    if matches!(d.map_err(parse_err)?.kind, wasmparser::DataKind::Passive) {
                        return Err(bad("passive data segments are not supported"));
                    }
                }
            }
            Payload::MemorySection(r) if r.count() > 1 => {
                return Err(bad("more than one memory is not supported"));
            }
            _ => {}
        }
    }
    Ok(l)
}

fn leb_u32(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn leb_i64(out: &mut Vec<u8>, mut v: i64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0);
        out.push(if done { byte } else { byte | 0x80 });
        if done {
            return;
        }
    }
}

fn read_leb_u32(bytes: &[u8]) -> Option<(u32, usize)> {
    let mut v: u32 = 0;
    for (i, b) in bytes.iter().take(5).enumerate() {
        v |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn name(out: &mut Vec<u8>, s: &str) {
    leb_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

fn section(out: &mut Vec<u8>, id: u8, content: &[u8]) {
    out.push(id);
    leb_u32(out, content.len() as u32);
    out.extend_from_slice(content);
}

/// Walks the module's sections, calling `edit` with each id and content; `edit` returns
/// the replacement content, or None to drop the section. `extra_exports` are appended to
/// the export section (which is created when the module has none).
fn rewrite(
    wasm: &[u8],
    extra_exports: &[(String, u8, u32)],
    mut edit: impl FnMut(u8, &[u8]) -> Result<Option<Vec<u8>>, WasmError>,
) -> Result<Vec<u8>, WasmError> {
    let mut out = wasm[..8].to_vec();
    let mut exports_done = extra_exports.is_empty();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(parse_err)?;
        let Some((id, range)) = payload.as_section() else {
            continue;
        };
        let content = &wasm[range];
        // Sections come in a fixed order: an export section that is missing must be
        // created just before the first section that follows it.
        if !exports_done && id != 0 && id > SEC_EXPORT {
            let mut c = Vec::new();
            leb_u32(&mut c, extra_exports.len() as u32);
            for (n, kind, index) in extra_exports {
                name(&mut c, n);
                c.push(*kind);
                leb_u32(&mut c, *index);
            }
            section(&mut out, SEC_EXPORT, &c);
            exports_done = true;
        }
        if id == SEC_EXPORT && !exports_done {
            let (count, used) = read_leb_u32(content).ok_or_else(|| bad("bad export count"))?;
            let mut c = Vec::new();
            leb_u32(&mut c, count + extra_exports.len() as u32);
            c.extend_from_slice(&content[used..]);
            for (n, kind, index) in extra_exports {
                name(&mut c, n);
                c.push(*kind);
                leb_u32(&mut c, *index);
            }
            let c = edit(id, &c)?;
            if let Some(c) = c {
                section(&mut out, id, &c);
            }
            exports_done = true;
            continue;
        }
        if let Some(c) = edit(id, content)? {
            section(&mut out, id, &c);
        }
    }
    if !exports_done {
        return Err(bad("module ended before its export section could be added"));
    }
    Ok(out)
}

/// The module with exports added for every defined global and for its first table, so
/// that after start-up the host can read the globals and call through the table.
pub(crate) fn instrument(wasm: &[u8]) -> Result<(Vec<u8>, Layout), WasmError> {
    let l = layout(wasm)?;
    if !l.has_table {
        return Err(bad(
            "module has no function table to call a run's entry through",
        ));
    }
    let mut extra: Vec<(String, u8, u32)> = l
        .defined_global_indices()
        .map(|i| (format!("{GLOBAL_EXPORT_PREFIX}{i}"), 3u8, i))
        .collect();
    extra.push((TABLE_EXPORT.to_string(), 1, 0));
    let out = rewrite(wasm, &extra, |_, c| Ok(Some(c.to_vec())))?;
    Ok((out, l))
}

/// A global's value after start-up, as written back into the module.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GlobalValue {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
}

/// The instrumented module rewritten so that instantiating it yields the captured state:
/// memory sized and filled from `memory`, each defined global initialised to `globals`
/// (in order), and no start function.
pub(crate) fn build(
    instrumented: &[u8],
    layout: &Layout,
    globals: &[GlobalValue],
    memory: &[u8],
) -> Result<Vec<u8>, WasmError> {
    if globals.len() != layout.defined_globals.len() {
        return Err(bad("global count changed"));
    }
    if !memory.len().is_multiple_of(PAGE) {
        return Err(bad("memory is not a whole number of pages"));
    }
    let pages = (memory.len() / PAGE) as u32;
    let segments = data_segments(memory)?;
    rewrite(instrumented, &[], |id, content| match id {
        SEC_MEMORY => memory_section(content, pages).map(Some),
        SEC_GLOBAL => Ok(Some(global_section(layout, globals)?)),
        SEC_DATA => Ok(Some(segments.clone())),
        SEC_DATACOUNT => Err(bad("a data count section is not supported")),
        SEC_START => Ok(None),
        _ => Ok(Some(content.to_vec())),
    })
}

fn memory_section(content: &[u8], pages: u32) -> Result<Vec<u8>, WasmError> {
    let (count, mut at) = read_leb_u32(content).ok_or_else(|| bad("bad memory section"))?;
    if count != 1 {
        return Err(bad("expected exactly one memory"));
    }
    let flags = *content.get(at).ok_or_else(|| bad("bad memory section"))?;
    at += 1;
    if flags & !1 != 0 {
        return Err(bad("only plain 32-bit, unshared memories are supported"));
    }
    let (_min, used) = read_leb_u32(&content[at..]).ok_or_else(|| bad("bad memory min"))?;
    at += used;
    let mut c = Vec::new();
    leb_u32(&mut c, 1);
    c.push(flags);
    leb_u32(&mut c, pages);
    if flags & 1 != 0 {
        let (max, _) = read_leb_u32(&content[at..]).ok_or_else(|| bad("bad memory max"))?;
        if max < pages {
            return Err(bad("memory grew past its declared maximum"));
        }
        leb_u32(&mut c, max);
    }
    Ok(c)
}

fn global_section(layout: &Layout, values: &[GlobalValue]) -> Result<Vec<u8>, WasmError> {
    let mut c = Vec::new();
    leb_u32(&mut c, values.len() as u32);
    for (ty, v) in layout.defined_globals.iter().zip(values) {
        // Mutability is kept as declared: an immutable global was captured with the
        // value it always had, and constant expressions may refer to it.
        let (ty, mutable) = (ty.0, u8::from(ty.1));
        match (ty, v) {
            (ValType::I32, GlobalValue::I32(x)) => {
                c.extend_from_slice(&[0x7f, mutable, 0x41]);
                leb_i64(&mut c, i64::from(*x));
            }
            (ValType::I64, GlobalValue::I64(x)) => {
                c.extend_from_slice(&[0x7e, mutable, 0x42]);
                leb_i64(&mut c, *x);
            }
            (ValType::F32, GlobalValue::F32(x)) => {
                c.extend_from_slice(&[0x7d, mutable, 0x43]);
                c.extend_from_slice(&x.to_le_bytes());
            }
            (ValType::F64, GlobalValue::F64(x)) => {
                c.extend_from_slice(&[0x7c, mutable, 0x44]);
                c.extend_from_slice(&x.to_le_bytes());
            }
            _ => return Err(bad(format!("global of type {ty} cannot be captured"))),
        }
        c.push(0x0b);
    }
    Ok(c)
}

/// Active data segments for the non-zero parts of `memory`.
fn data_segments(memory: &[u8]) -> Result<Vec<u8>, WasmError> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    let mut i = 0;
    while i < memory.len() {
        if memory[i] == 0 {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i;
        let mut zeros = 0;
        while i < memory.len() && zeros < ZERO_GAP {
            if memory[i] == 0 {
                zeros += 1;
            } else {
                zeros = 0;
                end = i + 1;
            }
            i += 1;
        }
        runs.push(start..end);
    }
    if runs.len() > MAX_SEGMENTS {
        return Err(bad(format!("{} data segments is too many", runs.len())));
    }
    let mut c = Vec::with_capacity(memory.len() / 2);
    leb_u32(&mut c, runs.len() as u32);
    for r in runs {
        // Active segment for memory 0 at an i32.const offset.
        c.push(0);
        c.push(0x41);
        leb_i64(&mut c, i64::from(r.start as u32 as i32));
        c.push(0x0b);
        leb_u32(&mut c, r.len() as u32);
        c.extend_from_slice(&memory[r]);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb_round_trips() {
        for v in [0u32, 1, 127, 128, 300, 65535, u32::MAX] {
            let mut b = Vec::new();
            leb_u32(&mut b, v);
            assert_eq!(read_leb_u32(&b), Some((v, b.len())));
        }
        let mut b = Vec::new();
        leb_i64(&mut b, -1);
        assert_eq!(b, [0x7f]);
        b.clear();
        leb_i64(&mut b, 64);
        assert_eq!(b, [0xc0, 0x00]);
    }

    #[test]
    fn segments_skip_long_zero_runs() {
        let mut m = vec![0u8; PAGE];
        m[10] = 1;
        m[20] = 2;
        m[40_000] = 3;
        let c = data_segments(&m).unwrap();
        assert_eq!(c[0], 2, "two segments");
    }
}

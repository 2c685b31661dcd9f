//! The on-disk module cache: each module is compiled once to a `.cwasm` file named by a
//! hash of the wasmtime version, the engine's configuration and the module's bytes, and
//! later mapped back with `Module::deserialize_file`.

use super::{io_err, Entry, WasmError};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module};

/// The wasmtime release line this crate is built against (part of every key, on top of
/// wasmtime's own compatibility hash).
const WASMTIME_LINE: &str = "wasmtime-48";

/// Where compiled modules go by default: `$CRUCIBLE_WASM_CACHE`, else
/// `wasm/modules` in [`crate::crucible_cache_root`].
pub fn default_cache_dir() -> PathBuf {
    match std::env::var_os("CRUCIBLE_WASM_CACHE") {
        Some(d) => PathBuf::from(d),
        None => crate::crucible_cache_root().join("wasm/modules"),
    }
}

/// Hex SHA-256 over the parts, each prefixed with its length so that parts cannot run
/// into each other.
pub(crate) fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds wasmtime's engine compatibility hash into SHA-256 (std's hashers are not stable
/// across processes, and the key must be).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

pub(crate) struct ModuleCache {
    dir: PathBuf,
    engine_key: String,
}

impl ModuleCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Result<ModuleCache, WasmError> {
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut h = ShaHasher(Sha256::new());
        WASMTIME_LINE.hash(&mut h);
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = h.0.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(ModuleCache { dir, engine_key })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, stem: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{stem}.{ext}"))
    }

    /// Maps a cached file, or None when it is missing or unusable (then it is rebuilt).
    fn deserialize(&self, engine: &Engine, path: &Path) -> Option<Module> {
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `write_atomically` from `Module::serialize` on
        // an engine with the same compatibility hash (it is in the name), in a directory
        // only this cache writes; wasmtime checks the header and the engine settings.
        match unsafe { Module::deserialize_file(engine, path) } {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unusable cached module; recompiling");
                None
            }
        }
    }

    fn compile(&self, engine: &Engine, name: &str, bytes: &[u8]) -> Result<Module, WasmError> {
        let started = std::time::Instant::now();
        let m = Module::new(engine, bytes).map_err(|e| WasmError::Module {
            name: name.to_string(),
            message: format!("{e:#}"),
        })?;
        tracing::debug!(
            module = name,
            ms = started.elapsed().as_millis() as u64,
            "compiled"
        );
        Ok(m)
    }

    /// Writes through a temporary file and a rename, so a reader never maps a half file.
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), WasmError> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io_err(&self.dir))?;
        tmp.write_all(bytes).map_err(io_err(path))?;
        tmp.persist(path).map_err(|e| WasmError::Io {
            path: path.to_path_buf(),
            source: e.error,
        })?;
        Ok(())
    }

    fn serialize_to(&self, name: &str, module: &Module, path: &Path) -> Result<(), WasmError> {
        let bytes = module.serialize().map_err(|e| WasmError::Module {
            name: name.to_string(),
            message: format!("serialize: {e:#}"),
        })?;
        self.write_atomically(path, &bytes)
    }

    /// The module for `bytes`: from the cache when compiled before, else compiled now
    /// (and, with `persist`, written to the cache and mapped back from it, so memory
    /// images come from the file).
    pub(crate) fn load(
        &self,
        engine: &Engine,
        name: &str,
        bytes: &[u8],
        persist: bool,
    ) -> Result<Module, WasmError> {
        let stem = digest(&[self.engine_key.as_bytes(), bytes]);
        let path = self.path(&stem, "cwasm");
        if let Some(m) = self.deserialize(engine, &path) {
            return Ok(m);
        }
        let module = self.compile(engine, name, bytes)?;
        if !persist {
            return Ok(module);
        }
        if let Err(e) = self.serialize_to(name, &module, &path) {
            // A read-only or full cache only costs speed.
            tracing::warn!(error = %e, "cannot write the module cache");
            return Ok(module);
        }
        Ok(self.deserialize(engine, &path).unwrap_or(module))
    }

    fn snapshot_stem(&self, key: &str) -> String {
        format!(
            "snapshot-{}",
            digest(&[self.engine_key.as_bytes(), key.as_bytes()])
        )
    }

    /// A snapshot made before: its compiled module and entry.
    pub(crate) fn load_snapshot(
        &self,
        engine: &Engine,
        _name: &str,
        key: &str,
    ) -> Result<Option<(Module, Entry)>, WasmError> {
        let stem = self.snapshot_stem(key);
        let entry_path = self.path(&stem, "json");
        let Ok(text) = std::fs::read_to_string(&entry_path) else {
            return Ok(None);
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            return Ok(None);
        };
        let (Some(index), Some(args), Some(clock)) = (
            v["index"].as_u64(),
            v["args"].as_array(),
            v["clock_offset_ns"].as_u64(),
        ) else {
            return Ok(None);
        };
        let Some(module) = self.deserialize(engine, &self.path(&stem, "cwasm")) else {
            return Ok(None);
        };
        let entry = Entry::Table {
            index: index as u32,
            args: args
                .iter()
                .filter_map(|a| a.as_i64())
                .map(|a| a as i32)
                .collect(),
            clock_offset_ns: clock,
        };
        Ok(Some((module, entry)))
    }

    /// Compiles a fresh snapshot and records it with its entry.
    pub(crate) fn store_snapshot(
        &self,
        engine: &Engine,
        name: &str,
        key: &str,
        bytes: &[u8],
        entry: &Entry,
    ) -> Result<Module, WasmError> {
        let module = self.compile(engine, name, bytes)?;
        let Entry::Table {
            index,
            args,
            clock_offset_ns,
        } = entry
        else {
            return Ok(module);
        };
        let stem = self.snapshot_stem(key);
        let cwasm = self.path(&stem, "cwasm");
        let written = self.serialize_to(name, &module, &cwasm).and_then(|()| {
            let json = serde_json::json!({
                "index": index, "args": args, "clock_offset_ns": clock_offset_ns,
            });
            self.write_atomically(&self.path(&stem, "json"), json.to_string().as_bytes())
        });
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot write the snapshot to the cache");
            return Ok(module);
        }
        Ok(self.deserialize(engine, &cwasm).unwrap_or(module))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_separates_parts() {
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
        assert_eq!(digest(&[b"x"]).len(), 64);
    }
}

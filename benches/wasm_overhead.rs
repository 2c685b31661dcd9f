//! Per-run cost of the wasm backend.
//!
//! - `c_module`: a C program (`int main(void) { return 0; }`, compiled to wasm32-wasi by
//!   clang-16 inside the process sandbox) run in [`WasmSandbox`]: the backend's own
//!   overhead per run (work dir, WASI context, store, instantiation from the pooling
//!   allocator, the call, the report).
//! - `python_snapshot` / `python_plain`: a trivial Python program (`pass`) judged through
//!   the python-wasm profile (boot script plus the Python harness in stdio mode), starting
//!   from the pre-initialised snapshot, and from a plain interpreter start.
//!
//! Needs the guests from scripts/fetch-wasm-guests.sh (skips with a message without them).

use criterion::{criterion_group, criterion_main, Criterion};
use crucible_core::{Limits, RunStatus};
use crucible_judge::{Judge, JudgeOptions, Profiles};
use crucible_sandbox::{
    ProcessSandbox, RunSpec, SandboxConfig, WasmConfig, WasmRunSpec, WasmSandbox,
};
use std::time::Duration;

/// `int main(void) { return 0; }` compiled to wasm32-wasi inside the process sandbox.
fn compile_trivial_c() -> Option<Vec<u8>> {
    if !std::path::Path::new("/usr/bin/clang-16").exists() {
        eprintln!("skipped c_module: clang-16 is missing (run scripts/fetch-wasm-guests.sh)");
        return None;
    }
    let sandbox = ProcessSandbox::new(SandboxConfig::default()).expect("process sandbox");
    let spec = RunSpec {
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            "/usr/bin/clang-16 --target=wasm32-wasi -O2 -o /work/m.wasm /work/m.c >&2 && /usr/bin/base64 -w0 /work/m.wasm".into(),
        ],
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("TMPDIR".into(), "/work".into()),
        ],
        files: vec![("m.c".into(), b"int main(void) { return 0; }\n".to_vec())],
        stdin: vec![],
        limits: Limits {
            memory_bytes: 1 << 30,
            output_bytes: 32 << 20,
            ..Limits::default()
        },
        mounts: ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache"]
            .map(Into::into)
            .to_vec(),
    };
    let r = sandbox.run(&spec);
    assert_eq!(r.status, RunStatus::Ok, "compile failed: {r:?}");
    crucible_core::base64_decode(&r.stdout).ok()
}

fn wasm_overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("wasm_per_run");
    g.warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));

    if let Some(bytes) = compile_trivial_c() {
        let sandbox = WasmSandbox::new(WasmConfig::default()).expect("wasm sandbox");
        let module = sandbox
            .load_bytes("trivial.wasm", &bytes, false)
            .expect("module");
        let spec = WasmRunSpec {
            module: &module,
            argv: vec!["main.wasm".into()],
            env: vec![],
            files: vec![],
            stdin: vec![],
            limits: Limits::default(),
            fuel: 1_000_000_000,
            fuel_per_ms: 10_000_000,
        };
        g.sample_size(100);
        g.bench_function("c_module", |b| {
            b.iter(|| {
                let r = sandbox.run(&spec);
                assert_eq!(r.status, RunStatus::Ok, "{r:?}");
            })
        });
    }

    let profiles = Profiles::load(None).expect("profiles");
    if let Err(e) = profiles.get("python-wasm") {
        eprintln!("skipped python: {e}");
        g.finish();
        return;
    }
    // The same profile without the snapshot, for the plain start-up.
    let dir = tempfile::tempdir().expect("profiles dir");
    let text = include_str!("../sandboxes/python-wasm.toml")
        .replace("name = \"python-wasm\"", "name = \"python-wasm-plain\"")
        .replace("snapshot = true", "snapshot = false");
    std::fs::write(dir.path().join("python-wasm-plain.toml"), text).expect("write profile");
    let judge = Judge::new(
        ProcessSandbox::new(SandboxConfig::default()).expect("process sandbox"),
        Profiles::load(Some(dir.path())).expect("profiles"),
        JudgeOptions::default(),
    );
    for (name, lang, samples) in [
        ("python_snapshot", "python-wasm", 100),
        ("python_plain", "python-wasm-plain", 20),
    ] {
        // The first run makes (or loads) the snapshot; keep it out of the samples.
        let r = judge.run_source(lang, "pass\n", b"", None).expect("run");
        assert_eq!(r.status, RunStatus::Ok, "{r:?}");
        g.sample_size(samples);
        g.bench_function(name, |b| {
            b.iter(|| {
                let r = judge.run_source(lang, "pass\n", b"", None).expect("run");
                assert_eq!(r.status, RunStatus::Ok, "{r:?}");
            })
        });
    }
    g.finish();
}

criterion_group!(benches, wasm_overhead);
criterion_main!(benches);

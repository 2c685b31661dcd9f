//! Runs a WASI command module in the wasm sandbox and prints the report as JSON.
//!
//! Usage: `wasm_run MODULE.wasm [ARGS...]` (stdin is passed through; files named by
//! `WASM_FILES=name=hostpath,...` are put in /work; `FUEL` sets the budget; with
//! `SNAPSHOT=arg1,arg2,...` the module is first pre-initialised with that argv, and
//! `REPEAT=n` runs it n times and prints the median wall time.

use crucible_sandbox::{SnapshotSpec, WasmConfig, WasmRunSpec, WasmSandbox};
use std::io::Read;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(module_path) = args.first() else {
        eprintln!("usage: wasm_run MODULE.wasm [ARGS...]");
        std::process::exit(2);
    };
    let mut files = Vec::new();
    if let Ok(spec) = std::env::var("WASM_FILES") {
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            let Some((name, host)) = item.split_once('=') else {
                eprintln!("WASM_FILES: expected name=path, got {item:?}");
                std::process::exit(2);
            };
            match std::fs::read(host) {
                Ok(b) => files.push((name.to_string(), b)),
                Err(e) => {
                    eprintln!("{host}: {e}");
                    std::process::exit(2);
                }
            }
        }
    }
    let mut stdin = Vec::new();
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let _ = std::io::stdin().read_to_end(&mut stdin);
    }
    let sandbox = match WasmSandbox::new(WasmConfig::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let fuel_per_ms = 5_000_000;
    let t = std::time::Instant::now();
    let module = match std::env::var("SNAPSHOT") {
        Ok(argv) => sandbox.snapshot(
            std::path::Path::new(module_path),
            &SnapshotSpec {
                argv: argv.split(',').map(str::to_string).collect(),
                env: vec![("PYTHONHASHSEED".into(), "0".into())],
                files: files.clone(),
                fuel_per_ms,
            },
        ),
        Err(_) => sandbox.load_file(std::path::Path::new(module_path)),
    };
    let module = match module {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    eprintln!("loaded in {} ms", t.elapsed().as_millis());
    let fuel = std::env::var("FUEL")
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or(50_000_000_000u64);
    let spec = WasmRunSpec {
        module: &module,
        argv: args[1..].to_vec(),
        env: vec![("PYTHONHASHSEED".into(), "0".into())],
        files,
        stdin,
        limits: crucible_core::Limits::default(),
        fuel,
        fuel_per_ms,
    };
    let repeat: usize = std::env::var("REPEAT")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let mut times = Vec::new();
    let mut report = None;
    for _ in 0..repeat.max(1) {
        let t = std::time::Instant::now();
        report = Some(sandbox.run(&spec));
        times.push(t.elapsed());
    }
    times.sort();
    if let Some(r) = report {
        match serde_json::to_string_pretty(&r) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("{e}"),
        }
    }
    eprintln!(
        "median run {:?} over {}",
        times[times.len() / 2],
        times.len()
    );
}

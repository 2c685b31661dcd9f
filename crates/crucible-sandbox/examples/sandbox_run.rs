//! Runs one command in the process sandbox and prints the report as JSON.
//!
//! Usage: `sandbox_run [--mount PATH]... -- /abs/program args...`
//! (default mounts: /usr /lib /lib64 /bin /etc/ld.so.cache; stdin is passed through).

use crucible_sandbox::{ProcessSandbox, RunSpec, SandboxConfig};
use std::io::Read;

/// Default limits, with CPU_MS / WALL_MS / MEM_MB from the environment when set.
fn limits_from_env() -> crucible_core::Limits {
    let get = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let mut l = crucible_core::Limits::default();
    if let Some(v) = get("CPU_MS") {
        l.cpu_time_ms = v;
    }
    if let Some(v) = get("WALL_MS") {
        l.wall_time_ms = v;
    }
    if let Some(v) = get("MEM_MB") {
        l.memory_bytes = v << 20;
    }
    l
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let mut mounts = Vec::new();
    let mut it = args[..split].iter();
    while let Some(a) = it.next() {
        if a == "--mount" {
            if let Some(p) = it.next() {
                mounts.push(p.into());
            }
        }
    }
    if mounts.is_empty() {
        mounts = ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache"]
            .map(Into::into)
            .to_vec();
    }
    let argv: Vec<String> = args.get(split + 1..).unwrap_or_default().to_vec();
    if argv.is_empty() {
        eprintln!("usage: sandbox_run [--mount PATH]... -- /abs/program args...");
        std::process::exit(2);
    }
    let mut stdin = Vec::new();
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let _ = std::io::stdin().read_to_end(&mut stdin);
    }
    let sandbox = match ProcessSandbox::new(SandboxConfig::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let report = sandbox.run(&RunSpec {
        argv,
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("TMPDIR".into(), "/work".into()),
        ],
        files: vec![],
        stdin,
        limits: limits_from_env(),
        mounts,
    });
    println!("{report:#?}");
    eprintln!("cgroup mode: {:?}", sandbox.cgroup_mode());
}

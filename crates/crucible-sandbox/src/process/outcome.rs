//! Turning what the parent observed about a run into a status.

use crucible_core::{Limits, RunStatus};

/// Why the parent killed the run's process tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KillReason {
    /// The wall-clock deadline passed.
    Wall,
    /// The cgroup's CPU time passed the limit.
    Cpu,
    /// stdout (true) or stderr (false) went over the output cap.
    Output { stdout: bool },
}

/// What the parent knows when the init has been reaped.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    pub kill: Option<KillReason>,
    /// The program's raw wait status, as reported by the init.
    pub program_status: Option<i32>,
    /// The init's raw wait status.
    pub init_status: i32,
    pub cpu_ms: u64,
    pub limits: Limits,
    /// Whether a memory cgroup enforced the limit.
    pub cgroup: bool,
    pub oom_kills: u64,
    pub peak_bytes: Option<u64>,
}

/// The classification of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub status: RunStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub message: Option<String>,
}

/// Slack under the memory limit within which a SIGKILLed program counts as having hit
/// it: usage is charged in pages and batches, so the peak may stop just short.
const PEAK_SLACK_BYTES: u64 = 512 << 10;

/// Decides the status. Precedence: a kill for output beats everything (we stopped the
/// program ourselves), then memory (the OOM killer or a SIGKILL at the limit), then time
/// (wall deadline, CPU watchdog, RLIMIT_CPU's SIGXCPU/SIGKILL, or CPU over the limit),
/// then the exit status.
pub(crate) fn classify(f: &Facts) -> Outcome {
    let (exit_code, signal) = match f.program_status {
        Some(st) if libc::WIFEXITED(st) => (Some(libc::WEXITSTATUS(st)), None),
        Some(st) if libc::WIFSIGNALED(st) => (None, Some(libc::WTERMSIG(st))),
        Some(st) => {
            return Outcome {
                status: RunStatus::SandboxError,
                exit_code: None,
                signal: None,
                message: Some(format!("unexpected program wait status {st:#x}")),
            }
        }
        None => {
            let init_killed =
                libc::WIFSIGNALED(f.init_status) && libc::WTERMSIG(f.init_status) == libc::SIGKILL;
            if f.kill.is_some() || (f.oom_kills > 0 && init_killed) {
                // We (or the OOM killer) ended the namespace; its processes got SIGKILL.
                (None, Some(libc::SIGKILL))
            } else {
                return Outcome {
                    status: RunStatus::SandboxError,
                    exit_code: None,
                    signal: None,
                    message: Some(format!(
                        "sandbox init ended (wait status {:#x}) without reporting the program's status",
                        f.init_status
                    )),
                };
            }
        }
    };
    let out = |status, message: Option<String>| Outcome {
        status,
        exit_code,
        signal,
        message,
    };
    let l = &f.limits;
    if let Some(KillReason::Output { stdout }) = f.kill {
        let which = if stdout { "stdout" } else { "stderr" };
        return out(
            RunStatus::OutputLimitExceeded,
            Some(format!(
                "output limit of {} bytes exceeded on {which}",
                l.output_bytes
            )),
        );
    }
    let at_limit = f
        .peak_bytes
        .is_some_and(|p| p.saturating_add(PEAK_SLACK_BYTES) >= l.memory_bytes);
    if f.oom_kills > 0
        || (f.cgroup && f.kill.is_none() && signal == Some(libc::SIGKILL) && at_limit)
    {
        return out(
            RunStatus::MemoryLimitExceeded,
            Some(format!("memory limit of {} bytes exceeded", l.memory_bytes)),
        );
    }
    if f.kill == Some(KillReason::Wall) {
        return out(
            RunStatus::TimeLimitExceeded,
            Some(format!(
                "wall-clock limit of {} ms exceeded",
                l.wall_time_ms
            )),
        );
    }
    if f.kill == Some(KillReason::Cpu) || signal == Some(libc::SIGXCPU) || f.cpu_ms > l.cpu_time_ms
    {
        return out(
            RunStatus::TimeLimitExceeded,
            Some(format!("cpu time limit of {} ms exceeded", l.cpu_time_ms)),
        );
    }
    match (exit_code, signal) {
        (Some(0), _) => out(RunStatus::Ok, None),
        (Some(c), _) => out(
            RunStatus::RuntimeError,
            Some(format!("exited with code {c}")),
        ),
        (_, Some(s)) => out(
            RunStatus::RuntimeError,
            Some(format!("killed by signal {s}")),
        ),
        (None, None) => out(RunStatus::RuntimeError, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> i32 {
        (code & 0xff) << 8
    }

    fn signaled(sig: i32) -> i32 {
        sig & 0x7f
    }

    fn facts() -> Facts {
        Facts {
            kill: None,
            program_status: Some(exited(0)),
            init_status: exited(0),
            cpu_ms: 10,
            limits: Limits::default().with_time_ms(1000).with_memory_mb(256),
            cgroup: true,
            oom_kills: 0,
            peak_bytes: Some(10 << 20),
        }
    }

    #[test]
    fn clean_exit_is_ok() {
        let o = classify(&facts());
        assert_eq!(o.status, RunStatus::Ok);
        assert_eq!(o.exit_code, Some(0));
        assert_eq!(o.signal, None);
    }

    #[test]
    fn nonzero_exit_and_signals_are_runtime_errors() {
        let mut f = facts();
        f.program_status = Some(exited(3));
        assert_eq!(classify(&f).status, RunStatus::RuntimeError);
        assert_eq!(classify(&f).exit_code, Some(3));
        f.program_status = Some(signaled(libc::SIGSEGV));
        let o = classify(&f);
        assert_eq!(
            (o.status, o.signal),
            (RunStatus::RuntimeError, Some(libc::SIGSEGV))
        );
    }

    #[test]
    fn oom_kill_is_mle_even_if_the_program_survived() {
        let mut f = facts();
        f.oom_kills = 1;
        assert_eq!(classify(&f).status, RunStatus::MemoryLimitExceeded);
        f.program_status = Some(signaled(libc::SIGKILL));
        assert_eq!(classify(&f).status, RunStatus::MemoryLimitExceeded);
    }

    #[test]
    fn sigkill_at_the_peak_is_mle_but_not_below_it() {
        let mut f = facts();
        f.program_status = Some(signaled(libc::SIGKILL));
        f.peak_bytes = Some(256 << 20);
        assert_eq!(classify(&f).status, RunStatus::MemoryLimitExceeded);
        f.peak_bytes = Some(100 << 20);
        assert_eq!(classify(&f).status, RunStatus::RuntimeError);
    }

    #[test]
    fn time_limits() {
        let mut f = facts();
        f.kill = Some(KillReason::Wall);
        f.program_status = None;
        f.init_status = signaled(libc::SIGKILL);
        let o = classify(&f);
        assert_eq!(
            (o.status, o.signal),
            (RunStatus::TimeLimitExceeded, Some(libc::SIGKILL))
        );

        let mut f = facts();
        f.program_status = Some(signaled(libc::SIGXCPU));
        assert_eq!(classify(&f).status, RunStatus::TimeLimitExceeded);

        let mut f = facts();
        f.program_status = Some(signaled(libc::SIGKILL));
        f.cpu_ms = 2100;
        assert_eq!(classify(&f).status, RunStatus::TimeLimitExceeded);

        let mut f = facts();
        f.cpu_ms = 1001;
        assert_eq!(classify(&f).status, RunStatus::TimeLimitExceeded);

        let mut f = facts();
        f.kill = Some(KillReason::Cpu);
        f.program_status = None;
        assert_eq!(classify(&f).status, RunStatus::TimeLimitExceeded);
    }

    #[test]
    fn output_kill_beats_everything() {
        let mut f = facts();
        f.kill = Some(KillReason::Output { stdout: true });
        f.program_status = None;
        f.oom_kills = 2;
        f.cpu_ms = 5000;
        let o = classify(&f);
        assert_eq!(o.status, RunStatus::OutputLimitExceeded);
        assert!(o.message.unwrap().contains("stdout"));
    }

    #[test]
    fn our_own_kill_at_high_memory_is_not_mle() {
        let mut f = facts();
        f.kill = Some(KillReason::Wall);
        f.program_status = None;
        f.peak_bytes = Some(256 << 20);
        assert_eq!(classify(&f).status, RunStatus::TimeLimitExceeded);
    }

    #[test]
    fn missing_status_without_a_cause_is_a_sandbox_error() {
        let mut f = facts();
        f.program_status = None;
        f.init_status = exited(0);
        assert_eq!(classify(&f).status, RunStatus::SandboxError);
    }
}

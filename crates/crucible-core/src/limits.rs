use serde::{Deserialize, Serialize};

/// Resource limits for one sandboxed run. Every field has a default, so JSON may give
/// only the fields it wants to change.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// CPU time, user + system, in milliseconds.
    pub cpu_time_ms: u64,
    /// Wall-clock time in milliseconds; catches programs that sleep or block.
    pub wall_time_ms: u64,
    /// Memory in bytes (cgroup limit where one can be made; address space otherwise).
    pub memory_bytes: u64,
    /// Bytes kept of stdout and of stderr each; more ends the run as output_limit_exceeded.
    pub output_bytes: u64,
    /// Largest file the program may write, in bytes.
    pub file_size_bytes: u64,
    /// Processes and threads the program may have at once.
    pub processes: u32,
    /// Open file descriptors.
    pub open_files: u32,
    /// Size of the private tmpfs work directory, in bytes.
    pub work_dir_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_time_ms: 10_000,
            wall_time_ms: 20_000,
            memory_bytes: 512 << 20,
            output_bytes: 8 << 20,
            file_size_bytes: 16 << 20,
            processes: 64,
            open_files: 64,
            work_dir_bytes: 64 << 20,
        }
    }
}

impl Limits {
    /// Limits with the CPU time set and the wall clock at twice that plus one second,
    /// which leaves room for a loaded machine while still catching sleepers.
    pub fn with_time_ms(mut self, cpu_time_ms: u64) -> Self {
        self.cpu_time_ms = cpu_time_ms;
        self.wall_time_ms = cpu_time_ms.saturating_mul(2).saturating_add(1_000);
        self
    }

    /// Limits with memory set in mebibytes.
    pub fn with_memory_mb(mut self, mb: u64) -> Self {
        self.memory_bytes = mb << 20;
        self
    }

    /// Each limit clamped to at most the matching one in `max` (used by servers to cap
    /// what a request may ask for).
    pub fn clamped_to(self, max: &Limits) -> Limits {
        Limits {
            cpu_time_ms: self.cpu_time_ms.min(max.cpu_time_ms),
            wall_time_ms: self.wall_time_ms.min(max.wall_time_ms),
            memory_bytes: self.memory_bytes.min(max.memory_bytes),
            output_bytes: self.output_bytes.min(max.output_bytes),
            file_size_bytes: self.file_size_bytes.min(max.file_size_bytes),
            processes: self.processes.min(max.processes),
            open_files: self.open_files.min(max.open_files),
            work_dir_bytes: self.work_dir_bytes.min(max.work_dir_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_json_keeps_defaults() {
        let l: Limits = serde_json::from_str(r#"{"cpu_time_ms": 500}"#).unwrap();
        assert_eq!(l.cpu_time_ms, 500);
        assert_eq!(l.memory_bytes, Limits::default().memory_bytes);
    }

    #[test]
    fn unknown_field_is_rejected() {
        assert!(serde_json::from_str::<Limits>(r#"{"cpu_ms": 500}"#).is_err());
    }

    #[test]
    fn clamp_takes_the_smaller() {
        let big = Limits::default().with_time_ms(60_000);
        let max = Limits::default().with_time_ms(5_000);
        let c = big.clamped_to(&max);
        assert_eq!(c.cpu_time_ms, 5_000);
        assert_eq!(c.wall_time_ms, 11_000);
    }
}

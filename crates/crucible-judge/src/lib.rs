//! Turns submissions into verdicts and rewards.
//!
//! A [`Judge`] resolves a language profile (sandboxes/*.toml), runs the program's tests in
//! the [`crucible_sandbox::ProcessSandbox`], compares outputs, and builds a
//! [`crucible_core::Report`] whose reward comes from a [`crucible_core::RewardSpec`].
//! [`Scheduler`] runs many submissions at once with bounded concurrency.

mod checker;
mod compare;
mod compile;
mod compiled;
mod error;
mod host_check;
mod judge;
mod presets;
mod profile;
mod scheduler;
mod wasm;

pub use compare::{compare_stdout, json_matches};
pub use compile::{CompileCache, Toolchain};
pub use error::JudgeError;
pub use judge::{Job, Judge, JudgeOptions};
pub use presets::{parse_comparator, ParityPreset, UnknownPreset};
pub use profile::{LanguageProfile, Profiles};
pub use scheduler::Scheduler;
pub use wasm::{guests_dir, Backend, Boot, WasmProfile};

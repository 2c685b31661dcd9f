//! Turns submissions into verdicts and rewards.
//!
//! A [`Judge`] resolves a language profile (sandboxes/*.toml), runs the program's tests in
//! the [`crucible_sandbox::ProcessSandbox`], compares outputs, and builds a
//! [`crucible_core::Report`] whose reward comes from a [`crucible_core::RewardSpec`].
//! [`Scheduler`] runs many submissions at once with bounded concurrency.

mod compare;
mod error;
mod judge;
mod profile;
mod scheduler;

pub use compare::{compare_stdout, json_matches};
pub use error::JudgeError;
pub use judge::{Job, Judge, JudgeOptions};
pub use profile::{LanguageProfile, Profiles};
pub use scheduler::Scheduler;

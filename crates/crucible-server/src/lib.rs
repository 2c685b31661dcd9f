//! Crucible's HTTP reward service and its client.
//!
//! The server ([`router`], [`serve`]) judges submissions with a [`crucible_judge::Judge`]
//! (or any [`Backend`]) behind a bounded queue, and speaks two APIs:
//!
//! | endpoint | body | answer |
//! |---|---|---|
//! | `POST /v1/judge` | [`JudgeRequest`] | a [`crucible_core::Report`] |
//! | `POST /v1/judge/batch` | [`BatchRequest`] | NDJSON of [`BatchLine`], in completion order |
//! | `GET /v1/languages` | | [`LanguagesResponse`] |
//! | `GET /v1/health` | | [`Health`] (503 while draining) |
//! | `GET /metrics` | | Prometheus text |
//! | `POST /run_code` | SandboxFusion's RunCodeRequest | SandboxFusion's RunCodeResponse |
//! | `POST /submit` | SandboxFusion's SubmitRequest | SandboxFusion's EvalResult |
//!
//! Every rejected request gets a 4xx (or 429/503) with an [`ErrorBody`] that names the
//! field at fault. A sandbox failure is never a reward of 0: the native API answers the
//! report with verdict `sandbox_error` and `reward: null`.
//!
//! The client ([`RewardClient`]) spreads requests over several servers and retries on
//! connection failures, 429, 5xx and `sandbox_error`; when every attempt fails the reward
//! is absent (`None`) and counted in [`ClientStats`], never 0.

#![warn(missing_docs)]

mod app;
mod backend;
mod client;
mod compat;
mod error;
mod limits;
pub mod load;
mod metrics;
mod state;
mod wire;

pub use app::{router, serve, shutdown_signal};
pub use backend::{Backend, LanguageInfo};
pub use client::{ClientConfig, ClientError, ClientStats, RewardClient, Scored};
pub use error::{ApiError, ServerError};
pub use limits::{LimitsPatch, MAX_LIMIT_VALUE};
pub use metrics::Metrics;
pub use state::{AppState, Datasets, ServerConfig};
pub use wire::{
    BatchLine, BatchRequest, ErrorBody, ErrorInfo, Health, JudgeRequest, LanguagesResponse,
};

//! crucible-train: the learner's policy.
//!
//! A Llama-family decoder in libtorch (through tch) with Hugging Face tensor names
//! ([`model`]), a converter from llama.cpp's GGUF files ([`gguf`], [`convert`]), the
//! tokenizer ([`tokenizer`]), ChatML prompting and code extraction ([`chat`],
//! [`prompting`]) and a batched sampler with a KV cache ([`generate`]). It is the only
//! crate of the workspace that links libtorch (`scripts/setup-libtorch.sh`).
//!
//! The learner: PPO arithmetic ([`ppo`]), the value head, scoring and update
//! ([`learner`]), AdamW with exportable state ([`optim`]), in-process rewards from
//! crucible-judge ([`reward`]), a per-problem curriculum ([`curriculum`]), the training
//! run with SFT warm start, evaluation, metrics and checkpoints ([`run`]), PNG curves
//! ([`plot`]) and a synthetic task family ([`synthetic`]).

#![warn(missing_docs)]

pub mod chat;
pub mod config;
pub mod convert;
pub mod curriculum;
pub mod generate;
pub mod gguf;
pub mod learner;
pub mod model;
pub mod optim;
pub mod plot;
pub mod policy;
pub mod ppo;
pub mod prompting;
pub mod reward;
pub mod run;
pub mod safetensors;
pub mod synthetic;
pub mod tokenizer;
pub mod wheel;

pub use config::LlamaConfig;
pub use generate::{Completion, FinishReason, GenerateStats, Generator, SamplingParams};
pub use model::{KvCache, Llama};
pub use policy::Policy;
pub use tokenizer::Tokenizer;

/// Loads libtorch's CUDA backend when the libtorch in use has one.
///
/// The backend registers itself from its library's initialisers, but the linker drops a
/// library no symbol is taken from (`--as-needed`), so a binary linked against a CUDA
/// libtorch can start without it and see no GPU. Opening it by name (found through the
/// binary's rpath or LD_LIBRARY_PATH) makes sure it is in. With the CPU-only libtorch of
/// `scripts/setup-libtorch.sh` the file is absent and this does nothing. Returns whether
/// the library is loaded.
pub fn load_cuda_backend() -> bool {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADED.get_or_init(|| {
        // SAFETY: dlopen with a constant NUL-terminated name; the handle is kept for the
        // life of the process (never closed), as libtorch's registrations require.
        let handle = unsafe {
            libc::dlopen(
                c"libtorch_cuda.so".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_GLOBAL,
            )
        };
        if handle.is_null() {
            // SAFETY: dlerror returns null or a NUL-terminated string owned by libc,
            // read before any other dl call can replace it.
            let why = unsafe {
                let e = libc::dlerror();
                if e.is_null() {
                    String::new()
                } else {
                    std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
                }
            };
            tracing::debug!(%why, "no CUDA backend loaded");
        } else {
            tracing::debug!("CUDA backend libtorch_cuda.so loaded");
        }
        !handle.is_null()
    })
}

/// Parses a device name: `auto` (CUDA when libtorch sees a GPU, else CPU), `cpu`,
/// `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<tch::Device, String> {
    load_cuda_backend();
    match s {
        "auto" => Ok(tch::Device::cuda_if_available()),
        "cpu" => Ok(tch::Device::Cpu),
        "cuda" => Ok(tch::Device::Cuda(0)),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(tch::Device::Cuda)
            .ok_or_else(|| format!("unknown device {s:?} (auto, cpu, cuda, cuda:N)")),
    }
}

/// Parses a dtype name: `f32`, `bf16` or `f16`.
pub fn parse_kind(s: &str) -> Result<tch::Kind, String> {
    match s {
        "f32" | "float32" => Ok(tch::Kind::Float),
        "bf16" | "bfloat16" => Ok(tch::Kind::BFloat16),
        "f16" | "float16" => Ok(tch::Kind::Half),
        _ => Err(format!("unknown dtype {s:?} (f32, bf16, f16)")),
    }
}

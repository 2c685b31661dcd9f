//! A model folder loaded whole: weights, tokenizer, chat template and end tokens.

use crate::chat::{ChatTemplate, Message, TemplateError};
use crate::convert::TOKENIZER_CONFIG_FILE;
use crate::generate::Generator;
use crate::model::{Llama, ModelError};
use crate::tokenizer::{Tokenizer, TokenizerError, TOKENIZER_FILE};
use std::path::Path;
use tch::{Device, Kind};
use thiserror::Error;

/// What can go wrong loading a model folder.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// The weights or config.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The tokenizer.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// tokenizer_config.json is unreadable.
    #[error("{path}: {message}")]
    TokenizerConfig {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer does not fit the model.
    #[error("tokenizer has {tokenizer} tokens but the model only {model}")]
    VocabMismatch {
        /// Tokenizer vocabulary, added tokens included.
        tokenizer: usize,
        /// Model vocabulary.
        model: usize,
    },
    /// The chat template is not one this crate renders.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A chat prompt was asked of a model without a template.
    #[error("the model folder has no chat template")]
    NoTemplate,
}

/// A model with everything needed to prompt it and read its output.
pub struct Policy {
    /// The network.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its chat template, when the folder has one.
    pub chat: Option<ChatTemplate>,
    /// Tokens that end a completion: the config's EOS and the ChatML / end-of-text
    /// markers the tokenizer has.
    pub eos_ids: Vec<u32>,
    /// The id used for padding.
    pub pad_id: u32,
}

impl Policy {
    /// Loads `dir` (config.json, model.safetensors, tokenizer.json, and
    /// tokenizer_config.json when present).
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Policy, PolicyError> {
        let model = Llama::load(dir, device, kind)?;
        let tokenizer = Tokenizer::load(&dir.join(TOKENIZER_FILE))?;
        if tokenizer.vocab_size() > model.config().vocab_size {
            return Err(PolicyError::VocabMismatch {
                tokenizer: tokenizer.vocab_size(),
                model: model.config().vocab_size,
            });
        }
        let tc_path = dir.join(TOKENIZER_CONFIG_FILE);
        let tc: serde_json::Value = match std::fs::read(&tc_path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| PolicyError::TokenizerConfig {
                    path: tc_path.display().to_string(),
                    message: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Value::Null,
            Err(e) => {
                return Err(PolicyError::TokenizerConfig {
                    path: tc_path.display().to_string(),
                    message: e.to_string(),
                })
            }
        };
        let chat = match tc["chat_template"].as_str() {
            Some(src) => Some(ChatTemplate::from_jinja(src)?),
            None => None,
        };
        let cfg = model.config();
        let mut eos_ids: Vec<u32> = cfg.eos_token_id.map(|i| i as u32).into_iter().collect();
        let named = [
            tc["eos_token"].as_str(),
            Some("<|im_end|>"),
            Some("<|endoftext|>"),
        ];
        for id in named
            .into_iter()
            .flatten()
            .filter_map(|t| tokenizer.token_id(t))
        {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        let pad_id = cfg
            .pad_token_id
            .or(cfg.eos_token_id)
            .map(|i| i as u32)
            .unwrap_or(0);
        Ok(Policy {
            model,
            tokenizer,
            chat,
            eos_ids,
            pad_id,
        })
    }

    /// A generator over this policy.
    pub fn generator(&self) -> Generator<'_> {
        Generator::new(
            &self.model,
            &self.tokenizer,
            self.eos_ids.clone(),
            self.pad_id,
        )
    }

    /// Token ids of the chat prompt for `messages`, ready for the assistant's answer.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<Vec<u32>, PolicyError> {
        let chat = self.chat.as_ref().ok_or(PolicyError::NoTemplate)?;
        Ok(self.tokenizer.encode(&chat.render(messages, true))?)
    }
}

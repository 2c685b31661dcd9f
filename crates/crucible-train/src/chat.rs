//! The instruct model's chat template, and code extraction from its answers.
//!
//! Models ship their template as Jinja. Rather than embed a Jinja engine, this module
//! recognises the ChatML family of templates (`<|im_start|>{role}\n{content}<|im_end|>\n`,
//! which SmolLM2-Instruct uses) and reads the one thing that varies between them, the
//! default system prompt inserted when the conversation has none. Any other template is
//! refused with an error rather than rendered wrongly.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A template this crate cannot render.
#[derive(Debug, Error)]
#[error("unsupported chat template (only ChatML-style <|im_start|> templates): {0}")]
pub struct TemplateError(pub String);

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Message {
        Message {
            role: "user".into(),
            content: content.into(),
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Message {
        Message {
            role: "system".into(),
            content: content.into(),
        }
    }
}

/// A ChatML chat template.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTemplate {
    /// The system prompt the template adds when the first message is not a system one.
    pub default_system: Option<String>,
    /// The Jinja source it was read from.
    pub source: String,
}

const START: &str = "<|im_start|>";
const END: &str = "<|im_end|>";

impl ChatTemplate {
    /// Recognises a ChatML template and reads its default system prompt.
    pub fn from_jinja(source: &str) -> Result<ChatTemplate, TemplateError> {
        let has_turns = source.contains("'<|im_start|>' + message['role']")
            || source.contains("'<|im_start|>' + message.role")
            || source.contains("<|im_start|>{{ message['role'] }}")
            || source.contains("<|im_start|>{{ message.role }}");
        if !has_turns || !source.contains(END) {
            let head: String = source.chars().take(80).collect();
            return Err(TemplateError(head));
        }
        let marker = "<|im_start|>system\n";
        let default_system = source.find(marker).and_then(|i| {
            let rest = &source[i + marker.len()..];
            rest.find(END).map(|j| rest[..j].to_owned())
        });
        Ok(ChatTemplate {
            default_system,
            source: source.to_owned(),
        })
    }

    /// The prompt text for `messages`, ending with the assistant's turn opener when
    /// `add_generation_prompt` is set (the model then writes the answer).
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> String {
        let mut out = String::new();
        if let Some(system) = &self.default_system {
            if messages.first().is_some_and(|m| m.role != "system") {
                out.push_str(&format!("{START}system\n{system}{END}\n"));
            }
        }
        for m in messages {
            out.push_str(&format!("{START}{}\n{}{END}\n", m.role, m.content));
        }
        if add_generation_prompt {
            out.push_str(START);
            out.push_str("assistant\n");
        }
        out
    }
}

/// The code in a model's answer: the fenced code blocks (```` ``` ```` or
/// ```` ```python ````), preferring Python-tagged or untagged ones, joined by a blank line
/// when there are several; an unterminated last fence runs to the end of the text. With
/// no fence at all, the whole answer is taken as code.
pub fn extract_code(answer: &str) -> String {
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut rest = answer;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let (info, body) = match after.find('\n') {
            Some(nl) => (after[..nl].trim().to_lowercase(), &after[nl + 1..]),
            None => break,
        };
        match body.find("```") {
            Some(close) => {
                blocks.push((info, body[..close].to_owned()));
                rest = &body[close + 3..];
            }
            None => {
                blocks.push((info, body.to_owned()));
                rest = "";
            }
        }
    }
    if blocks.is_empty() {
        return answer.to_owned();
    }
    let python = |i: &str| matches!(i, "" | "python" | "py" | "python3");
    let chosen: Vec<&str> = if blocks.iter().any(|(i, _)| python(i)) {
        blocks
            .iter()
            .filter(|(i, _)| python(i))
            .map(|(_, b)| b.as_str())
            .collect()
    } else {
        blocks.iter().map(|(_, b)| b.as_str()).collect()
    };
    let mut code = chosen
        .iter()
        .map(|b| b.trim_end_matches('\n'))
        .collect::<Vec<_>>()
        .join("\n\n");
    code.push('\n');
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_smollm2_instruct_template() {
        let t = ChatTemplate::from_jinja(SMOLLM2).unwrap();
        assert_eq!(
            t.default_system.as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
        assert_eq!(
            t.render(&[Message::user("Hi")], true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render(&[Message::system("Be terse."), Message::user("Hi")], false),
            "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn refuses_other_templates() {
        let llama3 = "{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>{% endfor %}";
        assert!(ChatTemplate::from_jinja(llama3).is_err());
    }

    #[test]
    fn extracts_fenced_python_else_raw_text() {
        let a = "Here you go:\n```python\ndef f(x):\n    return x\n```\nIt returns x.";
        assert_eq!(extract_code(a), "def f(x):\n    return x\n");
        let two = "```py\nimport os\n```\ntext\n```\nprint(1)\n```";
        assert_eq!(extract_code(two), "import os\n\nprint(1)\n");
        let mixed = "```bash\npip install x\n```\n```python\nx = 1\n```";
        assert_eq!(extract_code(mixed), "x = 1\n");
        let unterminated = "```python\ndef g():\n    pass";
        assert_eq!(extract_code(unterminated), "def g():\n    pass\n");
        let raw = "    return sorted(xs)\n";
        assert_eq!(extract_code(raw), raw);
    }
}

//! How a code problem becomes a prompt, and how the model's answer becomes the
//! completion that `crucible judge` appends to the problem's `completion_prefix`.

use crate::chat::{extract_code, Message};
use serde::Serialize;
use std::str::FromStr;

/// The two ways to ask for a HumanEval-style completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptStyle {
    /// The instruct model's chat template: the function stub is shown in a user turn, and
    /// the code is extracted from the answer (fenced blocks, else the raw text). The
    /// extracted code usually restates the whole function; appended after the stub it
    /// redefines it, which Python allows.
    Chat,
    /// Plain continuation of the stub, cut at the classic Codex stop sequences (a new
    /// top-level statement ends the function body).
    Completion,
}

impl FromStr for PromptStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "chat" => Ok(PromptStyle::Chat),
            "completion" => Ok(PromptStyle::Completion),
            other => Err(format!(
                "unknown prompt style {other:?} (chat or completion)"
            )),
        }
    }
}

/// Stop sequences for [`PromptStyle::Completion`]: any new top-level statement.
pub const COMPLETION_STOPS: [&str; 6] = [
    "\ndef ",
    "\nclass ",
    "\nif __name__",
    "\nprint(",
    "\n#",
    "\nassert",
];

/// The user message for [`PromptStyle::Chat`].
pub fn chat_messages(stub: &str) -> Vec<Message> {
    vec![Message::user(format!(
        "Complete the following Python function. Answer with the complete function in a \
         single ```python code block.\n\n```python\n{}\n```",
        stub.trim_end()
    ))]
}

/// The completion to judge for `answer` (the generated text).
///
/// A blank completion is replaced by `    pass`: the program is then the stub alone,
/// which fails its tests, rather than a line `crucible judge` rejects, which would drop
/// the sample from the pass rate's denominator.
pub fn completion_from_answer(style: PromptStyle, answer: &str) -> String {
    let code = match style {
        PromptStyle::Chat => extract_code(answer),
        PromptStyle::Completion => answer.to_owned(),
    };
    if code.trim().is_empty() {
        "    pass\n".to_owned()
    } else {
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_answers_are_extracted_and_blank_ones_fail_safely() {
        let a = "Sure!\n```python\ndef add(a, b):\n    return a + b\n```";
        assert_eq!(
            completion_from_answer(PromptStyle::Chat, a),
            "def add(a, b):\n    return a + b\n"
        );
        assert_eq!(
            completion_from_answer(PromptStyle::Chat, "  \n"),
            "    pass\n"
        );
        assert_eq!(
            completion_from_answer(PromptStyle::Completion, "    return 1\n"),
            "    return 1\n"
        );
        let m = chat_messages("def f():\n    \"\"\"doc\"\"\"\n");
        assert!(m[0].content.ends_with("    \"\"\"doc\"\"\"\n```"));
        assert_eq!("chat".parse::<PromptStyle>().unwrap(), PromptStyle::Chat);
        assert!("x".parse::<PromptStyle>().is_err());
    }
}

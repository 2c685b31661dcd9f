//! A synthetic family of small Python function problems, and a character-level tokenizer
//! and tiny model shape sized for them, so that a learner can be exercised end to end on
//! a CPU in minutes.
//!
//! Each problem asks for a function of one argument (`f(x)` on an int, `f(s)` on a
//! string, `f(xs)` on a list of ints) that applies one to three operations named in a
//! comment, e.g.
//!
//! ```text
//! # add 3, then square
//! def f(x):
//! ```
//!
//! whose reference body has one line per operation (`    x = x + 3`, `    x = x * x`,
//! `    return x`). The number of operations is the difficulty (1 to 3). Unit tests are
//! `call` tests whose expected values this module computes with Python's semantics
//! (floor division, non-negative `%`). Train and held-out splits share no prompt.

use crate::generate::Rng;
use crucible_core::{Problem, TestCase};
use serde_json::{json, Value};
use std::collections::HashSet;

/// The argument type of a problem's function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `f(x)` on an int.
    Int,
    /// `f(s)` on a lower-case string.
    Str,
    /// `f(xs)` on a list of ints.
    List,
}

/// One operation of a problem.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Op {
    Add(i64),
    Sub(i64),
    Mul(i64),
    Square,
    Negate,
    Halve,
    Reverse,
    Upper,
    Repeat(i64),
    DropFirst(i64),
    KeepFirst(i64),
    Append(char),
    Sort,
    AddEach(i64),
    MulEach(i64),
    KeepEvens,
}

/// How a list problem ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Tail {
    Value,
    Sum,
    Len,
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    I(i64),
    S(String),
    L(Vec<i64>),
}

impl Val {
    fn json(&self) -> Value {
        match self {
            Val::I(i) => json!(i),
            Val::S(s) => json!(s),
            Val::L(l) => json!(l),
        }
    }
}

fn apply(op: &Op, v: Val) -> Val {
    match (op, v) {
        (Op::Add(k), Val::I(x)) => Val::I(x + k),
        (Op::Sub(k), Val::I(x)) => Val::I(x - k),
        (Op::Mul(k), Val::I(x)) => Val::I(x * k),
        (Op::Square, Val::I(x)) => Val::I(x * x),
        (Op::Negate, Val::I(x)) => Val::I(-x),
        // Python's // floors.
        (Op::Halve, Val::I(x)) => Val::I(x.div_euclid(2)),
        (Op::Reverse, Val::S(s)) => Val::S(s.chars().rev().collect()),
        (Op::Upper, Val::S(s)) => Val::S(s.to_uppercase()),
        (Op::Repeat(k), Val::S(s)) => Val::S(s.repeat(*k as usize)),
        (Op::DropFirst(k), Val::S(s)) => Val::S(s.chars().skip(*k as usize).collect()),
        (Op::KeepFirst(k), Val::S(s)) => Val::S(s.chars().take(*k as usize).collect()),
        (Op::Append(c), Val::S(s)) => Val::S(format!("{s}{c}")),
        (Op::Reverse, Val::L(l)) => Val::L(l.into_iter().rev().collect()),
        (Op::Sort, Val::L(mut l)) => {
            l.sort();
            Val::L(l)
        }
        (Op::AddEach(k), Val::L(l)) => Val::L(l.into_iter().map(|v| v + k).collect()),
        (Op::MulEach(k), Val::L(l)) => Val::L(l.into_iter().map(|v| v * k).collect()),
        (Op::KeepEvens, Val::L(l)) => {
            Val::L(l.into_iter().filter(|v| v.rem_euclid(2) == 0).collect())
        }
        (Op::DropFirst(k), Val::L(l)) => Val::L(l.into_iter().skip(*k as usize).collect()),
        (op, v) => unreachable!("operation {op:?} is never drawn for {v:?}"),
    }
}

fn words(op: &Op) -> String {
    match op {
        Op::Add(k) => format!("add {k}"),
        Op::Sub(k) => format!("subtract {k}"),
        Op::Mul(k) => format!("multiply by {k}"),
        Op::Square => "square".into(),
        Op::Negate => "negate".into(),
        Op::Halve => "halve".into(),
        Op::Reverse => "reverse".into(),
        Op::Upper => "uppercase".into(),
        Op::Repeat(k) => format!("repeat {k} times"),
        Op::DropFirst(k) => format!("drop first {k}"),
        Op::KeepFirst(k) => format!("keep first {k}"),
        Op::Append(c) => format!("append {c}"),
        Op::Sort => "sort".into(),
        Op::AddEach(k) => format!("add {k} to each"),
        Op::MulEach(k) => format!("multiply each by {k}"),
        Op::KeepEvens => "keep evens".into(),
    }
}

fn code(op: &Op) -> String {
    match op {
        Op::Add(k) => format!("x = x + {k}"),
        Op::Sub(k) => format!("x = x - {k}"),
        Op::Mul(k) => format!("x = x * {k}"),
        Op::Square => "x = x * x".into(),
        Op::Negate => "x = -x".into(),
        Op::Halve => "x = x // 2".into(),
        Op::Reverse => "s = s[::-1]".into(),
        Op::Upper => "s = s.upper()".into(),
        Op::Repeat(k) => format!("s = s * {k}"),
        Op::DropFirst(k) => format!("s = s[{k}:]"),
        Op::KeepFirst(k) => format!("s = s[:{k}]"),
        Op::Append(c) => format!("s = s + \"{c}\""),
        Op::Sort => "xs = sorted(xs)".into(),
        Op::AddEach(k) => format!("xs = [v + {k} for v in xs]"),
        Op::MulEach(k) => format!("xs = [v * {k} for v in xs]"),
        Op::KeepEvens => "xs = [v for v in xs if v % 2 == 0]".into(),
    }
}

fn list_code(op: &Op) -> String {
    match op {
        Op::Reverse => "xs = xs[::-1]".into(),
        Op::DropFirst(k) => format!("xs = xs[{k}:]"),
        _ => code(op),
    }
}

fn draw_op(family: Family, rng: &mut Rng) -> Op {
    let k = |rng: &mut Rng, lo: i64, hi: i64| lo + (rng.next_u64() % (hi - lo + 1) as u64) as i64;
    let pick = rng.next_u64() % 6;
    match family {
        Family::Int => match pick {
            0 => Op::Add(k(rng, 1, 9)),
            1 => Op::Sub(k(rng, 1, 9)),
            2 => Op::Mul(k(rng, 2, 9)),
            3 => Op::Square,
            4 => Op::Negate,
            _ => Op::Halve,
        },
        Family::Str => match pick {
            0 => Op::Reverse,
            1 => Op::Upper,
            2 => Op::Repeat(k(rng, 2, 3)),
            3 => Op::DropFirst(k(rng, 1, 3)),
            4 => Op::KeepFirst(k(rng, 1, 4)),
            _ => Op::Append(b"abcdexyz"[(rng.next_u64() % 8) as usize] as char),
        },
        Family::List => match pick {
            0 => Op::Sort,
            1 => Op::Reverse,
            2 => Op::AddEach(k(rng, 1, 9)),
            3 => Op::MulEach(k(rng, 2, 5)),
            4 => Op::KeepEvens,
            _ => Op::DropFirst(k(rng, 1, 2)),
        },
    }
}

fn draw_input(family: Family, rng: &mut Rng) -> Val {
    let int = |rng: &mut Rng| (rng.next_u64() % 19) as i64 - 9;
    match family {
        Family::Int => Val::I(int(rng)),
        Family::Str => {
            let n = 3 + rng.next_u64() % 4;
            Val::S(
                (0..n)
                    .map(|_| (b'a' + (rng.next_u64() % 26) as u8) as char)
                    .collect(),
            )
        }
        Family::List => {
            let n = 3 + rng.next_u64() % 3;
            Val::L((0..n).map(|_| int(rng)).collect())
        }
    }
}

/// One generated problem with its difficulty.
#[derive(Debug, Clone)]
pub struct SynthProblem {
    /// The problem in Crucible's schema.
    pub problem: Problem,
    /// Number of operations, 1 to 3.
    pub difficulty: usize,
}

fn build(
    family: Family,
    ops: &[Op],
    tail: Tail,
    index: usize,
    split: &str,
    rng: &mut Rng,
) -> SynthProblem {
    let (arg, fam) = match family {
        Family::Int => ("x", "int"),
        Family::Str => ("s", "str"),
        Family::List => ("xs", "list"),
    };
    let mut said: Vec<String> = ops.iter().map(words).collect();
    match tail {
        Tail::Sum => said.push("return the sum".into()),
        Tail::Len => said.push("return the length".into()),
        Tail::Value => {}
    }
    let header = format!("def f({arg}):\n");
    let prompt = format!("# {}\n{header}", said.join(", then "));
    let mut body = String::new();
    for op in ops {
        let line = if family == Family::List {
            list_code(op)
        } else {
            code(op)
        };
        body.push_str(&format!("    {line}\n"));
    }
    body.push_str(&match tail {
        Tail::Value => format!("    return {arg}\n"),
        Tail::Sum => "    return sum(xs)\n".into(),
        Tail::Len => "    return len(xs)\n".into(),
    });
    let mut tests = Vec::new();
    let mut seen = HashSet::new();
    while tests.len() < 4 {
        let input = draw_input(family, rng);
        let key = format!("{input:?}");
        if !seen.insert(key) {
            continue;
        }
        let mut v = input.clone();
        for op in ops {
            v = apply(op, v);
        }
        let expected = match (tail, &v) {
            (Tail::Sum, Val::L(l)) => json!(l.iter().sum::<i64>()),
            (Tail::Len, Val::L(l)) => json!(l.len()),
            _ => v.json(),
        };
        tests.push(TestCase::Call {
            function: "f".into(),
            args: vec![input.json()],
            expected,
            atol: None,
        });
    }
    SynthProblem {
        problem: Problem {
            id: format!("synth/{split}/{fam}-d{}-{index:05}", ops.len()),
            prompt: Some(prompt),
            completion_prefix: header,
            test_setup: String::new(),
            tests,
            reference: Some(body),
            language: "python".into(),
            limits: None,
        },
        difficulty: ops.len(),
    }
}

/// Generates `train + heldout` distinct problems with `seed`: difficulty 1, 2 and 3 in
/// proportion 1 : 2 : 2, the three families equally often. Held-out prompts never occur
/// in the train split.
pub fn generate(train: usize, heldout: usize, seed: u64) -> (Vec<SynthProblem>, Vec<SynthProblem>) {
    let mut rng = Rng::new(seed);
    let mut seen = HashSet::new();
    let mut all: Vec<(Family, Vec<Op>, Tail)> = Vec::new();
    let total = train + heldout;
    let mut tries = 0;
    while all.len() < total && tries < total * 100 {
        tries += 1;
        let family = [Family::Int, Family::Str, Family::List][(rng.next_u64() % 3) as usize];
        let d = [1, 2, 2, 3, 3][(rng.next_u64() % 5) as usize];
        let ops: Vec<Op> = (0..d).map(|_| draw_op(family, &mut rng)).collect();
        let tail = if family == Family::List {
            [Tail::Value, Tail::Sum, Tail::Len][(rng.next_u64() % 3) as usize]
        } else {
            Tail::Value
        };
        if seen.insert((format!("{family:?}"), ops.clone(), tail)) {
            all.push((family, ops, tail));
        }
    }
    let mut out_train = Vec::new();
    let mut out_held = Vec::new();
    for (i, (family, ops, tail)) in all.into_iter().enumerate() {
        if i < heldout {
            out_held.push(build(family, &ops, tail, i, "heldout", &mut rng));
        } else {
            out_train.push(build(family, &ops, tail, i - heldout, "train", &mut rng));
        }
    }
    (out_train, out_held)
}

/// Pad token id of [`char_tokenizer_json`].
pub const PAD_ID: u32 = 0;
/// End token id of [`char_tokenizer_json`].
pub const EOS_ID: u32 = 1;

/// The characters the tiny tokenizer knows: printable ASCII and newline.
fn charset() -> Vec<char> {
    let mut c: Vec<char> = (32u8..127).map(|b| b as char).collect();
    c.push('\n');
    c
}

/// A Hugging Face `tokenizer.json` for a character-level vocabulary: `<pad>` 0, `<eos>`
/// 1, `<unk>` 2, then printable ASCII and newline, one token per character.
pub fn char_tokenizer_json() -> Value {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<pad>", "<eos>", "<unk>"].iter().enumerate() {
        vocab.insert((*t).into(), json!(i));
    }
    for (i, c) in charset().into_iter().enumerate() {
        vocab.insert(c.to_string(), json!(i + 3));
    }
    let special = |id: u32, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "<pad>"), special(1, "<eos>"), special(2, "<unk>")],
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": []}
    })
}

/// Vocabulary size of [`char_tokenizer_json`].
pub fn char_vocab_size() -> usize {
    3 + charset().len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::Tokenizer;

    #[test]
    fn problems_are_distinct_graded_and_split() {
        let (train, held) = generate(300, 60, 1);
        assert_eq!((train.len(), held.len()), (300, 60));
        let prompts: HashSet<_> = train.iter().map(|p| p.problem.prompt.clone()).collect();
        assert_eq!(prompts.len(), 300);
        assert!(held.iter().all(|p| !prompts.contains(&p.problem.prompt)));
        for d in 1..=3 {
            assert!(train.iter().any(|p| p.difficulty == d));
        }
        let p = &train[0].problem;
        assert!(p.prompt.as_ref().unwrap().ends_with(&p.completion_prefix));
        assert_eq!(p.tests.len(), 4);
    }

    #[test]
    fn python_semantics_by_hand() {
        assert_eq!(apply(&Op::Halve, Val::I(-3)), Val::I(-2));
        assert_eq!(
            apply(&Op::KeepEvens, Val::L(vec![-3, -2, 1, 4])),
            Val::L(vec![-2, 4])
        );
        assert_eq!(
            apply(&Op::KeepFirst(4), Val::S("ab".into())),
            Val::S("ab".into())
        );
        assert_eq!(code(&Op::Append('c')), "s = s + \"c\"");
    }

    #[test]
    fn char_tokenizer_round_trips() {
        let tok = Tokenizer::from_bytes(char_tokenizer_json().to_string().as_bytes()).unwrap();
        assert_eq!(tok.vocab_size(), char_vocab_size());
        let text = "# add 3, then square\ndef f(x):\n    x = x * x\n";
        let ids = tok.encode(text).unwrap();
        assert_eq!(ids.len(), text.len());
        assert_eq!(tok.decode(&ids, true).unwrap(), text);
        let mut with_eos = ids.clone();
        with_eos.push(EOS_ID);
        assert_eq!(tok.decode(&with_eos, true).unwrap(), text);
    }
}

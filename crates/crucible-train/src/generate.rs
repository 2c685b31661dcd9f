//! Batched sampling with a KV cache.
//!
//! Prompts of different lengths are left-padded to a common length, so every row's next
//! token sits in the same column and one forward step serves the whole batch. The cache
//! is preallocated for prompt + `max_new_tokens` positions. Rows stop on an end token, on
//! a stop sequence, or at the token limit; the batch stops when every row has.

use crate::model::{positions_from_valid, Llama};
use crate::tokenizer::{Tokenizer, TokenizerError};
use serde::Serialize;
use tch::{Kind, Tensor};
use thiserror::Error;

/// What can go wrong generating.
#[derive(Debug, Error)]
pub enum GenerateError {
    /// Bad parameters or prompts.
    #[error("{0}")]
    Invalid(String),
    /// Decoding the generated tokens failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// libtorch refused an operation.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// How to pick tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches
    /// `top_p` (1 keeps all).
    pub top_p: f64,
    /// Keep only the `top_k` most likely tokens (0 keeps all).
    pub top_k: usize,
    /// Most tokens to generate per row.
    pub max_new_tokens: usize,
    /// A row stops when its text contains one of these; the text is cut before it.
    pub stop: Vec<String>,
    /// Seed of the sampler's random generator ([`Rng`]).
    pub seed: u64,
    /// Keep generating past end tokens (for throughput measurements with a fixed
    /// number of tokens).
    pub ignore_eos: bool,
    /// Stop a row once its text holds a complete fenced code block (the text keeps the
    /// closing fence), for chat answers whose code is all that will be used.
    pub stop_after_code_block: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 256,
            stop: Vec::new(),
            seed: 0,
            ignore_eos: false,
            stop_after_code_block: false,
        }
    }
}

/// Why a row stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// It produced an end token.
    Eos,
    /// Its text reached a stop sequence.
    Stop,
    /// It reached `max_new_tokens`.
    Length,
}

/// One row's result.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    /// Generated token ids, the end token included when there was one.
    pub tokens: Vec<u32>,
    /// Log-probability of each generated token under the temperature-scaled model
    /// distribution (before top-k/top-p truncation): what PPO's ratio is taken against.
    /// For greedy decoding, under the unscaled distribution.
    pub logprobs: Vec<f32>,
    /// The text of the generated tokens (special tokens dropped), cut before a stop
    /// sequence.
    pub text: String,
    /// Why it stopped.
    pub finish: FinishReason,
}

/// Generates with `model` and `tokenizer`, stopping rows at any of `eos_ids`.
pub struct Generator<'a> {
    model: &'a Llama,
    tokenizer: &'a Tokenizer,
    eos_ids: Vec<u32>,
    pad_id: u32,
}

/// Throughput of one [`Generator::generate`] call.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct GenerateStats {
    /// Rows in the batch.
    pub batch: usize,
    /// Prompt tokens (without padding) processed by the prefill.
    pub prompt_tokens: usize,
    /// Tokens generated, summed over rows.
    pub new_tokens: usize,
    /// Decoding steps run (the longest row's token count).
    pub steps: usize,
    /// Seconds in the prefill (the prompt forward pass).
    pub prefill_s: f64,
    /// Seconds in the decoding steps.
    pub decode_s: f64,
}

impl GenerateStats {
    /// Generated tokens per second of decoding.
    pub fn decode_tokens_per_s(&self) -> f64 {
        self.new_tokens as f64 / self.decode_s.max(1e-9)
    }

    /// Generated tokens per second, prefill included.
    pub fn tokens_per_s(&self) -> f64 {
        self.new_tokens as f64 / (self.prefill_s + self.decode_s).max(1e-9)
    }
}

impl<'a> Generator<'a> {
    /// A generator; `pad_id` fills the left padding (any id works: padding is masked).
    pub fn new(model: &'a Llama, tokenizer: &'a Tokenizer, eos_ids: Vec<u32>, pad_id: u32) -> Self {
        Generator {
            model,
            tokenizer,
            eos_ids,
            pad_id,
        }
    }

    /// Continues each prompt (token ids, no padding) and returns one completion per
    /// prompt, in order, with timing.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        params: &SamplingParams,
    ) -> Result<(Vec<Completion>, GenerateStats), GenerateError> {
        tch::no_grad(|| self.generate_inner(prompts, params))
    }

    fn generate_inner(
        &self,
        prompts: &[Vec<u32>],
        params: &SamplingParams,
    ) -> Result<(Vec<Completion>, GenerateStats), GenerateError> {
        let invalid = |m: String| Err(GenerateError::Invalid(m));
        if prompts.is_empty() {
            return Ok((Vec::new(), GenerateStats::default()));
        }
        if prompts.iter().any(Vec::is_empty) {
            return invalid("empty prompt".into());
        }
        if !(params.temperature >= 0.0 && params.top_p > 0.0 && params.top_p <= 1.0) {
            return invalid(format!(
                "temperature {} must be >= 0 and top_p {} in (0, 1]",
                params.temperature, params.top_p
            ));
        }
        let cfg = self.model.config();
        let vocab = cfg.vocab_size as u32;
        if let Some(bad) = prompts.iter().flatten().find(|&&t| t >= vocab) {
            return invalid(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            ));
        }
        let b = prompts.len();
        let p = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let total = p + params.max_new_tokens;
        if total > cfg.max_position_embeddings {
            return invalid(format!(
                "prompt of {p} tokens + {} new exceeds the model's {} positions",
                params.max_new_tokens, cfg.max_position_embeddings
            ));
        }
        let device = self.model.device();
        let mut rng = Rng::new(params.seed);

        let mut flat = Vec::with_capacity(b * p);
        let mut valid_host = vec![false; b * total];
        for (r, prompt) in prompts.iter().enumerate() {
            let pad = p - prompt.len();
            flat.extend(std::iter::repeat_n(self.pad_id as i64, pad));
            flat.extend(prompt.iter().map(|&t| t as i64));
            valid_host[r * total + pad..r * total + p].fill(true);
        }
        let (bi, pi, ti) = (b as i64, p as i64, total as i64);
        let ids = Tensor::f_from_slice(&flat)?
            .f_view([bi, pi])?
            .to_device(device);
        let valid = Tensor::f_from_slice(&valid_host)?
            .f_view([bi, ti])?
            .to_device(device);
        let positions = positions_from_valid(&valid.narrow(1, 0, pi));
        let mut next_pos = positions.select(1, pi - 1) + 1;

        let started = std::time::Instant::now();
        let mut cache = self.model.new_cache(bi, ti);
        let hidden =
            self.model
                .forward(&ids, &positions, &valid.narrow(1, 0, pi), Some(&mut cache));
        let mut logits = self.model.logits(&hidden.select(1, pi - 1));
        // Reading the logits back forces the prefill to finish (CUDA runs ahead).
        let _ = logits.f_double_value(&[0, 0])?;
        let prefill_s = started.elapsed().as_secs_f64();

        let mut out: Vec<Completion> = (0..b)
            .map(|_| Completion {
                tokens: Vec::new(),
                logprobs: Vec::new(),
                text: String::new(),
                finish: FinishReason::Length,
            })
            .collect();
        // Batch rows still generating, as indices into `out`. Finished rows are dropped
        // from the batch (and the cache) so that they cost nothing while others go on.
        let mut active: Vec<usize> = (0..b).collect();
        let mut valid = valid;
        let mut steps = 0;
        let decode_start = std::time::Instant::now();
        for step in 0..params.max_new_tokens {
            let (tok_host, lp_host) = sample(&logits, params, &mut rng)?;
            steps = step + 1;
            let mut keep = Vec::with_capacity(active.len());
            for (k, &r) in active.iter().enumerate() {
                let t = tok_host[k] as u32;
                let row = &mut out[r];
                row.tokens.push(t);
                row.logprobs.push(lp_host[k]);
                if !params.ignore_eos && self.eos_ids.contains(&t) {
                    row.finish = FinishReason::Eos;
                    continue;
                }
                if !params.stop.is_empty() || params.stop_after_code_block {
                    let text = self.tokenizer.decode(&row.tokens, true)?;
                    if let Some(cut) = first_stop(&text, &params.stop) {
                        row.text = text[..cut].to_owned();
                        row.finish = FinishReason::Stop;
                        continue;
                    }
                    if params.stop_after_code_block {
                        if let Some(end) = closed_code_block_end(&text) {
                            row.text = text[..end].to_owned();
                            row.finish = FinishReason::Stop;
                            continue;
                        }
                    }
                }
                keep.push(k);
            }
            if keep.is_empty() || step + 1 == params.max_new_tokens {
                break;
            }
            let tokens: Vec<i64> = keep.iter().map(|&k| tok_host[k]).collect();
            if keep.len() < active.len() {
                let idx =
                    Tensor::f_from_slice(&keep.iter().map(|&k| k as i64).collect::<Vec<_>>())?
                        .to_device(device);
                cache.select_rows(&idx);
                valid = valid.index_select(0, &idx);
                next_pos = next_pos.index_select(0, &idx);
                active = keep.iter().map(|&k| active[k]).collect();
            }
            let rows = active.len() as i64;
            let col = pi + step as i64;
            let _ = valid.narrow(1, col, 1).fill_(1);
            let input = Tensor::f_from_slice(&tokens)?
                .f_view([rows, 1])?
                .to_device(device);
            let hidden = self.model.forward(
                &input,
                &next_pos.view([rows, 1]),
                &valid.narrow(1, 0, col + 1),
                Some(&mut cache),
            );
            next_pos += 1;
            logits = self.model.logits(&hidden.select(1, 0));
        }
        let decode_s = decode_start.elapsed().as_secs_f64();
        for row in out.iter_mut() {
            if row.finish != FinishReason::Stop {
                let keep = match row.finish {
                    FinishReason::Eos => row.tokens.len() - 1,
                    _ => row.tokens.len(),
                };
                row.text = self.tokenizer.decode(&row.tokens[..keep], true)?;
            }
        }
        let stats = GenerateStats {
            batch: b,
            prompt_tokens: prompts.iter().map(Vec::len).sum(),
            new_tokens: out.iter().map(|c| c.tokens.len()).sum(),
            steps,
            prefill_s,
            decode_s,
        };
        Ok((out, stats))
    }
}

/// Where the first fenced code block of `text` closes (just after its closing ```), once
/// it has: the answer's code is complete and the explanation that usually follows is not
/// needed.
fn closed_code_block_end(text: &str) -> Option<usize> {
    let open = text.find("```")?;
    let body = open + 3 + text[open + 3..].find('\n')? + 1;
    let close = body + text[body..].find("```")?;
    Some(close + 3)
}

/// Byte offset of the earliest stop sequence in `text`.
fn first_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

/// A small seeded random generator (SplitMix64), owned by one generation call, so that
/// a seed reproduces a run whatever else uses libtorch's global generator meanwhile.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform draw in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws one token per row from `logits` (`[B, vocab]`, f32). Returns the tokens and
/// their log-probabilities (see [`Completion::logprobs`]).
///
/// Temperature, top-k and top-p are applied on the device; the final draw is made on the
/// host from the row's probabilities with `rng` (one uniform number per row, in row order).
pub fn sample(
    logits: &Tensor,
    params: &SamplingParams,
    rng: &mut Rng,
) -> Result<(Vec<i64>, Vec<f32>), GenerateError> {
    if params.temperature <= 0.0 {
        let tok = logits.f_argmax(-1, false)?;
        let lp = logits
            .f_log_softmax(-1, Kind::Float)?
            .f_gather(-1, &tok.unsqueeze(-1), false)?
            .squeeze_dim(-1);
        return Ok((Vec::<i64>::try_from(&tok)?, Vec::<f32>::try_from(&lp)?));
    }
    let scaled = logits / params.temperature;
    let full_lp = scaled.f_log_softmax(-1, Kind::Float)?;
    let mut kept = scaled.shallow_clone();
    let vocab = logits.size()[logits.dim() - 1];
    if params.top_k > 0 && (params.top_k as i64) < vocab {
        let k = params.top_k as i64;
        let (top, _) = kept.f_topk(k, -1, true, true)?;
        let kth = top.narrow(-1, k - 1, 1);
        kept = kept.f_masked_fill(&kept.f_lt_tensor(&kth)?, f64::NEG_INFINITY)?;
    }
    if params.top_p < 1.0 {
        let (sorted, idx) = kept.f_sort(-1, true)?;
        let probs = sorted.f_softmax(-1, Kind::Float)?;
        // Drop a token when the tokens strictly more likely already reach top_p; the
        // most likely token always stays.
        let before = probs.f_cumsum(-1, Kind::Float)? - &probs;
        let drop = before.f_gt(params.top_p)?;
        let sorted = sorted.f_masked_fill(&drop, f64::NEG_INFINITY)?;
        kept = kept
            .f_full_like(f64::NEG_INFINITY)?
            .f_scatter(-1, &idx, &sorted)?;
    }
    let probs = kept
        .f_softmax(-1, Kind::Float)?
        .f_to_device(tch::Device::Cpu)?
        .f_contiguous()?;
    let probs = Vec::<f32>::try_from(probs.flatten(0, -1))?;
    let mut tokens = Vec::new();
    for row in probs.chunks(vocab as usize) {
        // Inverse CDF; the total is recomputed so rounding in softmax cannot leave the
        // draw past the last kept token.
        let total: f64 = row.iter().map(|&p| p as f64).sum();
        let u = rng.next_f64() * total;
        let mut acc = 0.0;
        let mut pick = None;
        for (i, &p) in row.iter().enumerate() {
            if p > 0.0 {
                acc += p as f64;
                pick = Some(i);
                if acc > u {
                    break;
                }
            }
        }
        tokens.push(pick.unwrap_or(0) as i64);
    }
    let tok = Tensor::f_from_slice(&tokens)?.to_device(logits.device());
    let lp = full_lp
        .f_gather(-1, &tok.unsqueeze(-1), false)?
        .squeeze_dim(-1);
    Ok((tokens, Vec::<f32>::try_from(&lp)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LlamaConfig;
    use crate::gguf::Gguf;
    use crate::tokenizer::tests::tiny_gguf;
    use crate::tokenizer::tokenizer_json_from_gguf;
    use tch::Device;

    fn setup() -> (Llama, Tokenizer) {
        let g = tiny_gguf();
        let g = Gguf::parse(&g).unwrap();
        let j = tokenizer_json_from_gguf(&g).unwrap();
        let tok = Tokenizer::from_bytes(&serde_json::to_vec(&j).unwrap()).unwrap();
        tch::manual_seed(11);
        let model = Llama::new(&LlamaConfig::tiny(27), Device::Cpu).unwrap();
        // Sharpen the random model so that sampling is far from uniform.
        tch::no_grad(|| {
            for (_, mut v) in model.var_store().variables() {
                if v.dim() == 2 {
                    let _ = v.g_mul_scalar_(20.0);
                }
            }
        });
        (model, tok)
    }

    fn greedy_next(model: &Llama, prompt: &[u32]) -> Vec<u32> {
        // Reference: repeated full forward passes without a cache.
        let mut seq: Vec<i64> = prompt.iter().map(|&t| t as i64).collect();
        let mut out = Vec::new();
        for _ in 0..6 {
            let x = Tensor::from_slice(&seq).view([1, -1]);
            let valid = x.ones_like().to_kind(Kind::Bool);
            let lp = model.logits(&model.forward(&x, &positions_from_valid(&valid), &valid, None));
            let next = lp
                .get(0)
                .get(seq.len() as i64 - 1)
                .argmax(-1, false)
                .int64_value(&[]);
            out.push(next as u32);
            seq.push(next);
        }
        out
    }

    #[test]
    fn greedy_batched_left_padded_decoding_matches_full_recomputation() {
        let (model, tok) = setup();
        let gen = Generator::new(&model, &tok, vec![], 0);
        let prompts = vec![vec![3, 4, 5, 9], vec![13], vec![20, 8, 8]];
        let params = SamplingParams {
            max_new_tokens: 6,
            ..Default::default()
        };
        let (outs, stats) = gen.generate(&prompts, &params).unwrap();
        for (p, o) in prompts.iter().zip(&outs) {
            assert_eq!(o.tokens, greedy_next(&model, p), "prompt {p:?}");
            assert_eq!(o.finish, FinishReason::Length);
            assert!(o.logprobs.iter().all(|&l| l <= 0.0 && l.is_finite()));
        }
        assert_eq!(stats.new_tokens, 18);
        assert_eq!(stats.prompt_tokens, 8);
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_seed_dependent() {
        let (model, tok) = setup();
        let gen = Generator::new(&model, &tok, vec![], 0);
        let prompts = vec![vec![3, 4], vec![3, 4], vec![9]];
        let params = SamplingParams {
            temperature: 1.5,
            max_new_tokens: 12,
            seed: 5,
            ..Default::default()
        };
        let a = gen.generate(&prompts, &params).unwrap().0;
        let b = gen.generate(&prompts, &params).unwrap().0;
        let toks = |v: &[Completion]| v.iter().map(|c| c.tokens.clone()).collect::<Vec<_>>();
        assert_eq!(toks(&a), toks(&b));
        // Two rows with the same prompt draw independently.
        assert_ne!(a[0].tokens, a[1].tokens);
        let c = gen
            .generate(
                &prompts,
                &SamplingParams {
                    seed: 6,
                    ..params.clone()
                },
            )
            .unwrap()
            .0;
        assert_ne!(toks(&a), toks(&c));
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_keeps_the_nucleus() {
        let logits = Tensor::from_slice(&[2.0f32, 1.0, 0.5, -1.0, 3.0]).view([1, 5]);
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 1,
            ..Default::default()
        };
        for seed in 0..5 {
            let (t, lp) = sample(&logits, &params, &mut Rng::new(seed)).unwrap();
            assert_eq!(t, [4]);
            let want = logits.log_softmax(-1, Kind::Float).double_value(&[0, 4]);
            assert!((lp[0] as f64 - want).abs() < 1e-6);
        }
        // Probabilities ~ [0.24, 0.09, 0.05, 0.01, 0.61]: top_p 0.8 keeps tokens 4 and 0.
        let params = SamplingParams {
            temperature: 1.0,
            top_p: 0.8,
            ..Default::default()
        };
        let big = logits.repeat([2000, 1]);
        let (drawn, _) = sample(&big, &params, &mut Rng::new(1)).unwrap();
        assert!(drawn.iter().all(|&x| x == 4 || x == 0));
        let zeros = drawn.iter().filter(|&&x| x == 0).count() as f64 / 2000.0;
        // Renormalised: 0.24 / (0.24 + 0.61) = 0.28.
        assert!((zeros - 0.28).abs() < 0.05, "{zeros}");
    }

    #[test]
    fn stops_on_eos_and_on_stop_sequences() {
        let (model, tok) = setup();
        let prompts = vec![vec![3, 4, 5]];
        let free = Generator::new(&model, &tok, vec![], 0)
            .generate(
                &prompts,
                &SamplingParams {
                    max_new_tokens: 6,
                    ..Default::default()
                },
            )
            .unwrap()
            .0;
        let first = free[0].tokens[0];
        // The first later token with visible text (ids 0..3 are control tokens).
        let (at, &third) = free[0]
            .tokens
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, &t)| t >= 3)
            .expect("a visible token");
        // Treat the first greedy token as an end token.
        let eos = Generator::new(&model, &tok, vec![first], 0)
            .generate(
                &prompts,
                &SamplingParams {
                    max_new_tokens: 6,
                    ..Default::default()
                },
            )
            .unwrap()
            .0;
        assert_eq!(eos[0].tokens, [first]);
        assert_eq!(eos[0].finish, FinishReason::Eos);
        assert_eq!(eos[0].text, "");
        // A stop string equal to the third token's text cuts before it.
        let stop_text = tok.decode(&[third], true).unwrap();
        let upto = tok.decode(&free[0].tokens[..=at], true).unwrap();
        let cut = upto.find(&stop_text).unwrap();
        let stopped = Generator::new(&model, &tok, vec![], 0)
            .generate(
                &prompts,
                &SamplingParams {
                    max_new_tokens: 6,
                    stop: vec![stop_text.clone()],
                    ..Default::default()
                },
            )
            .unwrap()
            .0;
        assert_eq!(stopped[0].finish, FinishReason::Stop);
        assert_eq!(stopped[0].text, upto[..cut]);
        assert!(stopped[0].tokens.len() <= at + 1);
    }

    #[test]
    fn rows_that_finish_early_leave_the_others_unchanged() {
        // Make the first row stop at once (its first greedy token is an end token):
        // the batch then shrinks, and the other rows must decode exactly as before.
        let (model, tok) = setup();
        let prompts = vec![vec![3, 4, 5, 9], vec![13], vec![20, 8, 8]];
        let params = SamplingParams {
            max_new_tokens: 6,
            ..Default::default()
        };
        let free = Generator::new(&model, &tok, vec![], 0)
            .generate(&prompts, &params)
            .unwrap()
            .0;
        let end = free[0].tokens[0];
        let ended = Generator::new(&model, &tok, vec![end], 0)
            .generate(&prompts, &params)
            .unwrap()
            .0;
        assert_eq!(ended[0].tokens, [end]);
        for r in 1..3 {
            let cut = free[r].tokens.iter().position(|&t| t == end);
            let want = match cut {
                Some(i) => &free[r].tokens[..=i],
                None => &free[r].tokens[..],
            };
            assert_eq!(ended[r].tokens, want, "row {r}");
        }
    }

    #[test]
    fn code_block_end_is_found_after_the_closing_fence() {
        assert_eq!(closed_code_block_end("text ```python\nx = 1\n"), None);
        assert_eq!(closed_code_block_end("```python"), None);
        let t = "Here:\n```python\nx = 1\n```\nThis sets x.";
        assert_eq!(
            &t[..closed_code_block_end(t).unwrap()],
            "Here:\n```python\nx = 1\n```"
        );
    }

    #[test]
    fn rng_is_uniform_and_seeded() {
        let mut a = Rng::new(42);
        let xs: Vec<f64> = (0..10_000).map(|_| a.next_f64()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert_eq!(Rng::new(42).next_u64(), Rng::new(42).next_u64());
        assert_ne!(Rng::new(42).next_u64(), Rng::new(43).next_u64());
    }

    #[test]
    fn rejects_bad_input() {
        let (model, tok) = setup();
        let gen = Generator::new(&model, &tok, vec![], 0);
        let p = SamplingParams::default();
        assert!(gen.generate(&[vec![]], &p).is_err());
        assert!(gen.generate(&[vec![99]], &p).is_err());
        let long = SamplingParams {
            max_new_tokens: 300,
            ..Default::default()
        };
        assert!(gen.generate(&[vec![3]], &long).is_err());
    }
}

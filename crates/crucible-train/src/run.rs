//! A training run: load problems and a policy, optionally warm-start it with SFT on
//! reference solutions, measure held-out pass@1 with the real judge, run PPO with
//! rewards judged on a background thread (batch k judged while batch k+1 is generated),
//! measure again. Writes `metrics.jsonl` (one line per step), `eval.jsonl`,
//! `summary.json` and checkpoints under the run directory.

use crate::curriculum::Curriculum;
use crate::generate::{FinishReason, Rng, SamplingParams};
use crate::learner::{self, Learner, Sample, ScoreBatch, UpdateConfig};
use crate::model::{Llama, ModelError};
use crate::optim::{AdamW, OptimError};
use crate::policy::{Policy, PolicyError};
use crate::prompting::{chat_messages, completion_from_answer, PromptStyle};
use crate::reward::{Grader, JudgeGrader, RewardError, RewardJob, RewardService};
use crate::safetensors::SafetensorsError;
use crate::synthetic;
use crate::tokenizer::{Tokenizer, TokenizerError, TOKENIZER_FILE};
use crate::{generate::GenerateError, LlamaConfig};
use crucible_core::{Problem, RewardSpec};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use thiserror::Error;

/// What can go wrong in a run.
#[derive(Debug, Error)]
pub enum RunError {
    /// A bad setting or input.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Loading the policy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The tokenizer.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// Sampling.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// The judge.
    #[error(transparent)]
    Reward(#[from] RewardError),
    /// Optimiser state.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// A checkpoint file.
    #[error(transparent)]
    Safetensors(#[from] SafetensorsError),
    /// libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Every setting of a run (TOML keys of the same names; see `configs/*.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// `tiny` (a random character-level model of the shape below) or a model folder.
    pub model: String,
    /// Tiny model width.
    pub tiny_hidden: usize,
    /// Tiny model layers.
    pub tiny_layers: usize,
    /// Tiny model heads.
    pub tiny_heads: usize,
    /// Tiny model feed-forward width.
    pub tiny_intermediate: usize,
    /// Training problems (native crucible JSONL).
    pub train: PathBuf,
    /// Held-out problems.
    pub heldout: PathBuf,
    /// Use at most this many held-out problems (0 = all).
    pub heldout_limit: usize,
    /// Use at most this many training problems (0 = all).
    pub train_limit: usize,
    /// `completion` (the prompt text is continued) or `chat` (chat template, code
    /// extracted from the answer).
    pub prompt_style: String,
    /// CPU threads for libtorch (0 = libtorch's choice).
    pub threads: i32,
    /// Seed of everything random.
    pub seed: u64,
    /// SFT steps on reference solutions before PPO (0 = none).
    pub sft_steps: usize,
    /// SFT batch size.
    pub sft_batch: usize,
    /// SFT learning rate.
    pub sft_lr: f64,
    /// Share of SFT demonstrations drawn with a bug in their last line (`return E`
    /// becomes `return E + E`), standing for imperfect demonstrations: imitation copies
    /// the bug at this rate, and only the judge's rewards can teach the policy to stop.
    /// Each draw is corrupted independently, so no problem is always shown wrong.
    pub sft_corrupt: f64,
    /// PPO steps.
    pub steps: usize,
    /// Prompts per step (each sampled `group_size` times).
    pub prompts_per_step: usize,
    /// PPO learning rate.
    pub lr: f64,
    /// PPO steps over which the learning rate rises linearly to `lr`: Adam's first
    /// updates move every weight by about the full rate whatever the gradient's size,
    /// and noisy early policy gradients then knock a small model off its SFT start.
    pub warmup_steps: usize,
    /// Nucleus sampling during rollouts.
    pub top_p: f64,
    /// Reward spec: binary, fraction, weighted, shaped (CodeRL) or JSON (RLTF etc.).
    pub reward: String,
    /// Judge batch k while generating batch k+1.
    pub overlap: bool,
    /// Judgements at once.
    pub judge_workers: usize,
    /// Drop problems always or never solved in their last `curriculum_window` samples.
    pub curriculum: bool,
    /// See `curriculum`.
    pub curriculum_window: usize,
    /// Samples per held-out problem for pass@1 (0 = greedy, one sample).
    pub eval_samples: usize,
    /// Temperature of evaluation samples.
    pub eval_temperature: f64,
    /// Evaluate every this many steps as well (0 = only before and after).
    pub eval_every: usize,
    /// Write a checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: usize,
    /// Rows generated at once in evaluation.
    pub eval_batch: usize,
    /// PPO update settings.
    #[serde(flatten)]
    pub update: UpdateConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            model: "tiny".into(),
            tiny_hidden: 64,
            tiny_layers: 2,
            tiny_heads: 4,
            tiny_intermediate: 192,
            train: "datasets/synthetic/train.jsonl".into(),
            heldout: "datasets/synthetic/heldout.jsonl".into(),
            heldout_limit: 0,
            train_limit: 0,
            prompt_style: "completion".into(),
            threads: 0,
            seed: 0,
            sft_steps: 0,
            sft_batch: 32,
            sft_lr: 3e-3,
            sft_corrupt: 0.0,
            steps: 100,
            prompts_per_step: 16,
            lr: 1e-4,
            warmup_steps: 20,
            top_p: 1.0,
            reward: "binary".into(),
            overlap: true,
            judge_workers: 2,
            curriculum: true,
            curriculum_window: 8,
            eval_samples: 4,
            eval_temperature: 1.0,
            eval_every: 0,
            checkpoint_every: 0,
            eval_batch: 128,
            update: UpdateConfig::default(),
        }
    }
}

impl RunConfig {
    /// Reads a TOML file, then applies `KEY=VALUE` overrides (values in TOML syntax;
    /// bare words are taken as strings).
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<RunConfig, RunError> {
        let mut table: toml::Table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(io(p))?;
                text.parse()
                    .map_err(|e| RunError::Invalid(format!("{}: {e}", p.display())))?
            }
            None => toml::Table::new(),
        };
        for o in overrides {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| RunError::Invalid(format!("--set {o:?}: expected KEY=VALUE")))?;
            let value = format!("v = {v}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(v.to_owned()));
            table.insert(k.trim().to_owned(), value);
        }
        let cfg: RunConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e| RunError::Invalid(format!("config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), RunError> {
        let bad = |m: &str| Err(RunError::Invalid(m.to_owned()));
        if self.update.group_size == 0 || self.prompts_per_step == 0 {
            return bad("group_size and prompts_per_step must be positive");
        }
        if self.update.advantage.is_group() && self.update.group_size < 2 {
            return bad("group advantages need group_size >= 2");
        }
        if self.update.temperature.is_nan() || self.update.temperature <= 0.0 {
            return bad("temperature must be positive for PPO sampling");
        }
        self.reward_spec()?;
        self.style()?;
        Ok(())
    }

    /// The reward spec.
    pub fn reward_spec(&self) -> Result<RewardSpec, RunError> {
        self.reward
            .parse()
            .map_err(|e| RunError::Invalid(format!("reward {:?}: {e}", self.reward)))
    }

    fn style(&self) -> Result<PromptStyle, RunError> {
        self.prompt_style.parse().map_err(RunError::Invalid)
    }
}

/// Reads a native crucible JSONL problem file, or `KIND=PATH` for any dataset kind
/// crucible-datasets reads (`mbpp=.../mbpp.jsonl`, `humaneval=...`).
pub fn load_problems(path: &Path, limit: usize) -> Result<Vec<Arc<Problem>>, RunError> {
    if let Some((kind, file)) = path.to_str().and_then(|s| s.split_once('=')) {
        let kind: crucible_datasets::DatasetKind = kind
            .parse()
            .map_err(|e| RunError::Invalid(format!("{}: {e}", path.display())))?;
        let mut all = crucible_datasets::load(kind, Path::new(file))
            .map_err(|e| RunError::Invalid(format!("{file}: {e}")))?;
        if limit > 0 {
            all.truncate(limit);
        }
        return Ok(all.into_iter().map(Arc::new).collect());
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let p: Problem = serde_json::from_str(line)
            .map_err(|e| RunError::Invalid(format!("{}:{}: {e}", path.display(), n + 1)))?;
        out.push(Arc::new(p));
        if limit > 0 && out.len() >= limit {
            break;
        }
    }
    if out.is_empty() {
        return Err(RunError::Invalid(format!(
            "{}: no problems",
            path.display()
        )));
    }
    Ok(out)
}

/// A random character-level model for the synthetic tasks.
pub fn tiny_policy(cfg: &RunConfig, device: Device) -> Result<Policy, RunError> {
    let mut c = LlamaConfig::tiny(synthetic::char_vocab_size());
    c.hidden_size = cfg.tiny_hidden;
    c.num_hidden_layers = cfg.tiny_layers;
    c.num_attention_heads = cfg.tiny_heads;
    c.num_key_value_heads = cfg.tiny_heads;
    c.intermediate_size = cfg.tiny_intermediate;
    c.eos_token_id = Some(synthetic::EOS_ID as i64);
    c.pad_token_id = Some(synthetic::PAD_ID as i64);
    c.bos_token_id = None;
    c.max_position_embeddings = 512;
    let model = Llama::new(&c, device)?;
    let tokenizer = Tokenizer::from_bytes(synthetic::char_tokenizer_json().to_string().as_bytes())?;
    Ok(Policy {
        model,
        tokenizer,
        chat: None,
        eos_ids: vec![synthetic::EOS_ID],
        pad_id: synthetic::PAD_ID,
    })
}

/// The text a problem shows the model.
fn stub(p: &Problem) -> &str {
    p.prompt.as_deref().unwrap_or(&p.completion_prefix)
}

/// Prompt token ids for each problem.
pub fn encode_prompts(
    policy: &Policy,
    problems: &[Arc<Problem>],
    style: PromptStyle,
) -> Result<Vec<Vec<u32>>, RunError> {
    problems
        .iter()
        .map(|p| match style {
            PromptStyle::Completion => Ok(policy.tokenizer.encode(stub(p))?),
            PromptStyle::Chat if p.completion_prefix.is_empty() => {
                Ok(policy.chat_prompt(&[mbpp_message(p)])?)
            }
            PromptStyle::Chat => Ok(policy.chat_prompt(&chat_messages(stub(p)))?),
        })
        .collect()
}

/// The MBPP-style user message for a problem without a stub: its text and its first
/// test, which names the function to write.
fn mbpp_message(p: &Problem) -> crate::chat::Message {
    let first = p.tests.iter().find_map(|t| match t {
        crucible_core::TestCase::Assert { code, .. } => Some(code.as_str()),
        _ => None,
    });
    let mut text = p.prompt.clone().unwrap_or_default();
    if let Some(t) = first {
        text.push_str("\nYour code should pass this test:\n");
        text.push_str(t);
    }
    text.push_str("\nAnswer with the function in a single ```python code block.");
    crate::chat::Message::user(text)
}

fn sampling(cfg: &RunConfig, temperature: f64, seed: u64, style: PromptStyle) -> SamplingParams {
    SamplingParams {
        temperature,
        top_p: if temperature > 0.0 { cfg.top_p } else { 1.0 },
        top_k: 0,
        max_new_tokens: cfg.update.max_new_tokens,
        stop: Vec::new(),
        seed,
        ignore_eos: false,
        stop_after_code_block: style == PromptStyle::Chat,
    }
}

/// A seeded generator for one purpose at one step, so that a resumed run draws what an
/// uninterrupted one would (the state to save is just the seed and the step).
fn stream(seed: u64, purpose: u64, step: u64) -> Rng {
    let mut r = Rng::new(seed ^ purpose.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    for _ in 0..(step % 7) {
        r.next_u64();
    }
    Rng::new(r.next_u64() ^ step.wrapping_mul(0xd1b5_4a32_d192_ed03))
}

/// Generates `group` samples for each listed problem (consecutive per problem).
fn rollout(
    policy: &Policy,
    prompts: &[Vec<u32>],
    picks: &[usize],
    group: usize,
    params: &SamplingParams,
    style: PromptStyle,
) -> Result<(Vec<Sample>, usize, f64), RunError> {
    let rows: Vec<Vec<u32>> = picks
        .iter()
        .flat_map(|&i| std::iter::repeat_n(prompts[i].clone(), group))
        .collect();
    let started = Instant::now();
    let (comps, stats) = policy.generator().generate(&rows, params)?;
    let secs = started.elapsed().as_secs_f64();
    let samples = comps
        .into_iter()
        .zip(picks.iter().flat_map(|&i| std::iter::repeat_n(i, group)))
        .zip(rows)
        .map(|((c, problem), prompt)| Sample {
            problem,
            prompt,
            finished: c.finish != FinishReason::Length,
            completion: completion_from_answer(style, &c.text),
            response: c.tokens,
        })
        .collect();
    Ok((samples, stats.new_tokens, secs))
}

/// Held-out pass@1: `n` samples per problem at `temperature` (greedy when `n` is 0),
/// each judged by the real judge; pass@1 = mean over problems of passed / n.
pub fn evaluate(
    policy: &Policy,
    problems: &[Arc<Problem>],
    prompts: &[Vec<u32>],
    cfg: &RunConfig,
    judge: &RewardService,
    seed: u64,
) -> Result<EvalResult, RunError> {
    let style = cfg.style()?;
    let (n, t) = if cfg.eval_samples == 0 {
        (1, 0.0)
    } else {
        (cfg.eval_samples, cfg.eval_temperature)
    };
    let started = Instant::now();
    let per_batch = (cfg.eval_batch / n).max(1);
    let mut passed = vec![0usize; problems.len()];
    let mut absent = 0;
    let idx: Vec<usize> = (0..problems.len()).collect();
    for (c, chunk) in idx.chunks(per_batch).enumerate() {
        let params = sampling(cfg, t, seed.wrapping_add(c as u64), style);
        let (samples, _, _) = rollout(policy, prompts, chunk, n, &params, style)?;
        let jobs = samples
            .iter()
            .map(|s| RewardJob {
                problem: problems[s.problem].clone(),
                completion: s.completion.clone(),
            })
            .collect();
        let judged = judge.judge_now(jobs)?;
        for (s, j) in samples.iter().zip(&judged.results) {
            if j.reward.is_none() {
                absent += 1;
            }
            if j.passed {
                passed[s.problem] += 1;
            }
        }
    }
    let pass_at_1 =
        passed.iter().map(|&c| c as f64 / n as f64).sum::<f64>() / problems.len() as f64;
    Ok(EvalResult {
        pass_at_1,
        problems: problems.len(),
        samples_per_problem: n,
        temperature: t,
        absent,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A held-out measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalResult {
    /// Mean over problems of the share of passing samples.
    pub pass_at_1: f64,
    /// Problems measured.
    pub problems: usize,
    /// Samples per problem.
    pub samples_per_problem: usize,
    /// Their temperature (0 = greedy).
    pub temperature: f64,
    /// Samples without a reward (sandbox failures). They count as not passing in
    /// `pass_at_1`, so they are reported here: a measurement with any is suspect.
    pub absent: usize,
    /// Wall time.
    pub seconds: f64,
}

/// Supervised warm start: teacher-forced cross-entropy on each training problem's
/// reference completion (plus the end token), averaged over completion tokens.
pub fn sft(
    policy: &mut Policy,
    problems: &[Arc<Problem>],
    prompts: &[Vec<u32>],
    cfg: &RunConfig,
    log: &mut dyn FnMut(usize, f64),
) -> Result<(), RunError> {
    let eos = policy.eos_ids.first().copied().unwrap_or(0);
    let mut examples = Vec::new();
    for (p, prompt) in problems.iter().zip(prompts) {
        if let Some(r) = &p.reference {
            let mut t = policy.tokenizer.encode(r)?;
            t.push(eos);
            let mut bad = policy.tokenizer.encode(&corrupt_return(r))?;
            bad.push(eos);
            examples.push((prompt.clone(), t, bad));
        }
    }
    if examples.is_empty() {
        return Err(RunError::Invalid("SFT: no problem has a reference".into()));
    }
    let mut params: Vec<(String, Tensor)> =
        policy.model.var_store().variables().into_iter().collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = AdamW::new(params, cfg.sft_lr, 0.0);
    let mut rng = stream(cfg.seed, 11, 0);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut pos = order.len();
    let device = policy.model.device();
    for step in 0..cfg.sft_steps {
        let mut rows = Vec::with_capacity(cfg.sft_batch);
        for _ in 0..cfg.sft_batch {
            if pos == order.len() {
                learner::shuffle(&mut order, &mut rng);
                pos = 0;
            }
            rows.push(order[pos]);
            pos += 1;
        }
        let pairs: Vec<(&[u32], &[u32])> = rows
            .iter()
            .map(|&i| {
                let e = &examples[i];
                let bad = cfg.sft_corrupt > 0.0 && rng.next_f64() < cfg.sft_corrupt;
                (
                    e.0.as_slice(),
                    if bad { e.2.as_slice() } else { e.1.as_slice() },
                )
            })
            .collect();
        let b = ScoreBatch::new(&pairs, policy.pad_id, device);
        // Linear warm-up over the first 5% of steps, then cosine decay to 10%.
        let warm = (cfg.sft_steps / 20).max(1);
        let frac = step as f64 / cfg.sft_steps.max(1) as f64;
        opt.lr = cfg.sft_lr
            * if step < warm {
                (step + 1) as f64 / warm as f64
            } else {
                0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos())
            };
        let s = learner::score(&policy.model, None, &b, 1.0, true);
        let loss = -(s.logp.sum(Kind::Float) / b.mask.sum(Kind::Float));
        opt.zero_grad();
        loss.backward();
        opt.clip_grad_norm(1.0);
        opt.step();
        log(step, loss.double_value(&[]));
    }
    Ok(())
}

/// `return E` on the last line becomes `return E + E` (wrong unless E is 0 or empty).
pub fn corrupt_return(reference: &str) -> String {
    let body = reference.trim_end_matches('\n');
    match body.rfind("return ") {
        Some(k) => {
            let e = &body[k + "return ".len()..];
            format!("{body} + {e}\n")
        }
        None => reference.to_owned(),
    }
}

/// What a run reports at its end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Held-out pass@1 before PPO (after SFT).
    pub before: EvalResult,
    /// Held-out pass@1 after PPO.
    pub after: EvalResult,
    /// PPO steps run in this process.
    pub steps: usize,
    /// Seconds in SFT.
    pub sft_s: f64,
    /// Seconds in PPO steps.
    pub ppo_s: f64,
    /// Seconds in the whole run.
    pub total_s: f64,
}

/// Checkpoint state besides tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    step: usize,
    seed: u64,
    kl_beta: f64,
    curriculum: Curriculum,
    before: Option<EvalResult>,
}

const CKPT: &str = "checkpoint";

fn save_checkpoint(
    dir: &Path,
    l: &Learner,
    tokenizer_json: &str,
    state: &State,
) -> Result<(), RunError> {
    let tmp = dir.join(format!("{CKPT}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    l.policy.model.save(&tmp)?;
    std::fs::write(tmp.join(TOKENIZER_FILE), tokenizer_json).map_err(io(&tmp))?;
    l.head.save(&tmp.join("value_head.safetensors"))?;
    l.reference
        .save_weights(&tmp.join("reference.safetensors"))?;
    l.opt.save(&tmp.join("optimizer.safetensors"))?;
    let s = serde_json::to_string_pretty(state).map_err(|e| RunError::Invalid(e.to_string()))?;
    std::fs::write(tmp.join("state.json"), s).map_err(io(&tmp))?;
    // Replace the previous checkpoint only once the new one is whole.
    let dst = dir.join(CKPT);
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
    Ok(())
}

fn load_checkpoint(dir: &Path, l: &mut Learner) -> Result<State, RunError> {
    let c = dir.join(CKPT);
    l.policy
        .model
        .load_weights(&c.join(crate::model::WEIGHTS_FILE))?;
    l.reference.load_weights(&c.join("reference.safetensors"))?;
    l.head.load(&c.join("value_head.safetensors"))?;
    l.opt.load(&c.join("optimizer.safetensors"))?;
    let p = c.join("state.json");
    let text = std::fs::read_to_string(&p).map_err(io(&p))?;
    let s: State = serde_json::from_str(&text)
        .map_err(|e| RunError::Invalid(format!("{}: {e}", p.display())))?;
    l.kl.beta = s.kl_beta;
    Ok(s)
}

fn append_json(path: &Path, v: &serde_json::Value) -> Result<(), RunError> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))?;
    writeln!(f, "{v}").map_err(io(path))
}

/// Runs SFT (when asked) and PPO as `cfg` says, in `run_dir`. With `resume`, continues
/// from `run_dir/checkpoint`. `grader` overrides the in-process judge (tests).
pub fn train(
    cfg: &RunConfig,
    run_dir: &Path,
    resume: bool,
    grader: Option<Arc<dyn Grader>>,
) -> Result<Summary, RunError> {
    let t0 = Instant::now();
    std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
    if cfg.threads > 0 {
        tch::set_num_threads(cfg.threads);
    }
    let style = cfg.style()?;
    let device = Device::Cpu;
    let cfg_text = toml::to_string(cfg).map_err(|e| RunError::Invalid(e.to_string()))?;
    std::fs::write(run_dir.join("config.toml"), cfg_text).map_err(io(run_dir))?;
    let train = load_problems(&cfg.train, cfg.train_limit)?;
    let heldout = load_problems(&cfg.heldout, cfg.heldout_limit)?;
    tch::manual_seed(cfg.seed as i64);
    let (mut policy, tok_json) = if cfg.model == "tiny" {
        (
            tiny_policy(cfg, device)?,
            synthetic::char_tokenizer_json().to_string(),
        )
    } else {
        let dir = Path::new(&cfg.model);
        let p = Policy::load(dir, device, Kind::Float)?;
        let tj = std::fs::read_to_string(dir.join(TOKENIZER_FILE)).map_err(io(dir))?;
        (p, tj)
    };
    let train_prompts = encode_prompts(&policy, &train, style)?;
    let held_prompts = encode_prompts(&policy, &heldout, style)?;
    let grader = match grader {
        Some(g) => g,
        None => Arc::new(JudgeGrader::new(cfg.reward_spec()?, cfg.judge_workers)?),
    };
    let judge = RewardService::start(grader, cfg.judge_workers);
    let metrics_path = run_dir.join("metrics.jsonl");
    let eval_path = run_dir.join("eval.jsonl");
    let ckpt_exists = run_dir.join(CKPT).join("state.json").exists();
    let mut sft_s = 0.0;
    if !(resume && ckpt_exists) && cfg.sft_steps > 0 {
        let t = Instant::now();
        let sft_path = run_dir.join("sft.jsonl");
        let _ = std::fs::remove_file(&sft_path);
        let mut last = 0.0;
        let mut log = |step: usize, loss: f64| {
            last = loss;
            if step.is_multiple_of(20) || step + 1 == cfg.sft_steps {
                tracing::info!(step, loss, "sft");
                let _ = append_json(&sft_path, &serde_json::json!({"step": step, "loss": loss}));
            }
        };
        sft(&mut policy, &train, &train_prompts, cfg, &mut log)?;
        sft_s = t.elapsed().as_secs_f64();
        tracing::info!(seconds = sft_s, loss = last, "sft done");
        // The warm start is a model folder of its own (`model = "RUN_DIR/sft"` reuses it).
        let d = run_dir.join("sft");
        std::fs::create_dir_all(&d).map_err(io(&d))?;
        policy.model.save(&d)?;
        std::fs::write(d.join(TOKENIZER_FILE), &tok_json).map_err(io(&d))?;
    }
    let mut l = Learner::new(policy, cfg.lr, &cfg.update)?;
    let mut state = State {
        step: 0,
        seed: cfg.seed,
        kl_beta: cfg.update.kl_coef,
        curriculum: Curriculum::new(train.len(), cfg.curriculum_window, cfg.curriculum),
        before: None,
    };
    if resume && ckpt_exists {
        state = load_checkpoint(run_dir, &mut l)?;
        tracing::info!(step = state.step, "resumed");
    } else {
        let _ = std::fs::remove_file(&metrics_path);
        let _ = std::fs::remove_file(&eval_path);
    }
    let before = match &state.before {
        Some(b) => b.clone(),
        None => {
            let b = evaluate(
                &l.policy,
                &heldout,
                &held_prompts,
                cfg,
                &judge,
                cfg.seed ^ 0xe7a1,
            )?;
            tracing::info!(
                pass_at_1 = b.pass_at_1,
                seconds = b.seconds,
                "held-out before PPO"
            );
            append_json(
                &eval_path,
                &serde_json::json!({"step": state.step, "eval": b}),
            )?;
            state.before = Some(b.clone());
            b
        }
    };
    let group = cfg.update.group_size;
    let t_ppo = Instant::now();
    let start = state.step;
    let make = |l: &Learner,
                cur: &mut Curriculum,
                step: usize|
     -> Result<(Vec<Sample>, usize, f64), RunError> {
        let mut rng = stream(cfg.seed, 1, step as u64);
        let picks = cur.draw(cfg.prompts_per_step, &mut rng);
        let params = sampling(cfg, cfg.update.temperature, rng.next_u64(), style);
        rollout(&l.policy, &train_prompts, &picks, group, &params, style)
    };
    let submit = |id: usize, s: &[Sample]| {
        let jobs = s
            .iter()
            .map(|s| RewardJob {
                problem: train[s.problem].clone(),
                completion: s.completion.clone(),
            })
            .collect();
        judge.submit(id as u64, jobs)
    };
    let mut pending: Option<(Vec<Sample>, usize, f64)> = None;
    for step in start..cfg.steps {
        let t_step = Instant::now();
        // Generation done in this iteration (this batch, the next one, or both).
        let (mut gen_tokens, mut gen_s) = (0usize, 0.0f64);
        let cur = match pending.take() {
            Some(p) => p.0,
            None => {
                let p = make(&l, &mut state.curriculum, step)?;
                submit(step, &p.0)?;
                gen_tokens += p.1;
                gen_s += p.2;
                p.0
            }
        };
        // Overlap: the next batch is generated (with the weights before this update)
        // while the judge works on this one.
        if cfg.overlap && step + 1 < cfg.steps {
            let next = make(&l, &mut state.curriculum, step + 1)?;
            submit(step + 1, &next.0)?;
            gen_tokens += next.1;
            gen_s += next.2;
            pending = Some(next);
        }
        let t_wait = Instant::now();
        let judged = judge.wait_for(step as u64)?;
        let wait_s = t_wait.elapsed().as_secs_f64();
        let scores: Vec<Option<f64>> = judged.results.iter().map(|j| j.reward).collect();
        for (s, j) in cur.iter().zip(&judged.results) {
            if j.reward.is_some() {
                state.curriculum.record(s.problem, j.passed);
            }
        }
        let mut rng = stream(cfg.seed, 2, step as u64);
        l.opt.lr = cfg.lr * ((step + 1) as f64 / cfg.warmup_steps.max(1) as f64).min(1.0);
        let t_upd = Instant::now();
        let st = l.update(&cur, &scores, &cfg.update, &mut rng);
        let upd_s = t_upd.elapsed().as_secs_f64();
        state.step = step + 1;
        state.kl_beta = l.kl.beta;
        let step_s = t_step.elapsed().as_secs_f64();
        let present: Vec<f64> = scores.iter().flatten().copied().collect();
        let pass = judged.results.iter().filter(|j| j.passed).count() as f64 / cur.len() as f64;
        let (active, solved, never) = state.curriculum.counts();
        let line = serde_json::json!({
            "step": step + 1,
            "reward_mean": present.iter().sum::<f64>() / present.len().max(1) as f64,
            "pass_rate": pass,
            "kl": st.kl,
            "kl_coef": st.kl_coef,
            "entropy": st.entropy,
            "clipfrac": st.clipfrac,
            "approx_kl": st.approx_kl,
            "ratio_mean": st.ratio_mean,
            "first_ratio_dev": st.first_ratio_dev,
            "pg_loss": st.pg_loss,
            "vf_loss": st.vf_loss,
            "vf_clipfrac": st.vf_clipfrac,
            "explained_variance": if st.explained_variance.is_finite() { Some(st.explained_variance) } else { None },
            "grad_norm": st.grad_norm,
            "samples": st.samples,
            "samples_used": st.samples_used,
            "tokens_used": st.tokens_used,
            "absent": st.absent,
            "truncated": st.truncated,
            "filtered_groups": st.filtered_groups,
            "judged": judged.judged,
            "deduped": cur.len() - judged.judged,
            "tokens_per_s": if gen_s > 0.0 { Some(gen_tokens as f64 / gen_s) } else { None },
            "gen_s": gen_s,
            "update_s": upd_s,
            "judge_wait_s": wait_s,
            "judge_busy_s": judged.busy_s,
            "judge_share": wait_s / step_s.max(1e-9),
            "step_s": step_s,
            "curriculum_active": active,
            "curriculum_solved": solved,
            "curriculum_never": never,
        });
        append_json(&metrics_path, &line)?;
        tracing::info!(
            step = step + 1,
            pass = format!("{pass:.3}"),
            kl = format!("{:.3}", st.kl),
            ent = format!("{:.3}", st.entropy),
            clip = format!("{:.3}", st.clipfrac),
            step_s = format!("{step_s:.2}"),
            "ppo"
        );
        if cfg.eval_every > 0 && (step + 1) % cfg.eval_every == 0 && step + 1 < cfg.steps {
            let e = evaluate(
                &l.policy,
                &heldout,
                &held_prompts,
                cfg,
                &judge,
                cfg.seed ^ 0xe7a1,
            )?;
            tracing::info!(step = step + 1, pass_at_1 = e.pass_at_1, "held-out");
            append_json(
                &eval_path,
                &serde_json::json!({"step": step + 1, "eval": e}),
            )?;
        }
        if cfg.checkpoint_every > 0 && (step + 1) % cfg.checkpoint_every == 0 {
            save_checkpoint(run_dir, &l, &tok_json, &state)?;
        }
    }
    // Drain a batch generated past the last step (none when overlap is off).
    drop(pending);
    let ppo_s = t_ppo.elapsed().as_secs_f64();
    save_checkpoint(run_dir, &l, &tok_json, &state)?;
    let after = evaluate(
        &l.policy,
        &heldout,
        &held_prompts,
        cfg,
        &judge,
        cfg.seed ^ 0xe7a1,
    )?;
    append_json(
        &eval_path,
        &serde_json::json!({"step": state.step, "eval": after}),
    )?;
    let summary = Summary {
        before,
        after,
        steps: cfg.steps.saturating_sub(start),
        sft_s,
        ppo_s,
        total_s: t0.elapsed().as_secs_f64(),
    };
    let s = serde_json::to_string_pretty(&summary).map_err(|e| RunError::Invalid(e.to_string()))?;
    std::fs::write(run_dir.join("summary.json"), s).map_err(io(run_dir))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupted_demonstrations_break_the_return_line_only() {
        assert_eq!(
            corrupt_return("    x = x + 3\n    return x\n"),
            "    x = x + 3\n    return x + x\n"
        );
        assert_eq!(
            corrupt_return("    return len(xs)\n"),
            "    return len(xs) + len(xs)\n"
        );
    }

    #[test]
    fn config_overrides_parse_as_toml_or_strings() {
        let c = RunConfig::load(
            None,
            &[
                "advantage=\"rloo\"".into(),
                "lr=2e-4".into(),
                "reward=fraction".into(),
                "loss_agg=\"seq-mean-token-mean\"".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.update.advantage, crate::ppo::AdvantageKind::Rloo);
        assert_eq!(c.lr, 2e-4);
        assert_eq!(c.reward_spec().unwrap(), RewardSpec::Fraction);
        assert!(RunConfig::load(None, &["nonsense=1".into()]).is_err());
        assert!(
            RunConfig::load(None, &["advantage=\"grpo\"".into(), "group_size=1".into()]).is_err()
        );
    }
}

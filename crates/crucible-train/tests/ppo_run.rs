//! The learner end to end at a tiny scale: rewards from the real in-process judge, and a
//! short run with SFT, PPO, checkpoint and resume.

use crucible_core::{Problem, Report, Verdict};
use crucible_train::reward::{Grader, JudgeGrader, RewardJob, RewardService};
use crucible_train::run::{train, RunConfig};
use crucible_train::synthetic;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

fn write_split(dir: &Path) {
    let (tr, he) = synthetic::generate(40, 8, 5);
    for (name, set) in [("train.jsonl", tr), ("heldout.jsonl", he)] {
        let mut f = std::fs::File::create(dir.join(name)).unwrap();
        for p in set {
            writeln!(f, "{}", serde_json::to_string(&p.problem).unwrap()).unwrap();
        }
    }
}

#[test]
fn rewards_come_from_the_real_judge() {
    let grader = match JudgeGrader::new("shaped".parse().unwrap(), 2) {
        Ok(g) => g,
        Err(e) => {
            // Without user namespaces there is no sandbox to judge in.
            eprintln!("skipped: {e}");
            return;
        }
    };
    let svc = RewardService::start(Arc::new(grader), 2);
    let (_, held) = synthetic::generate(0, 1, 9);
    let p = Arc::new(held[0].problem.clone());
    let job = |c: &str| RewardJob {
        problem: p.clone(),
        completion: c.to_owned(),
    };
    let good = p.reference.clone().unwrap();
    let r = svc
        .judge_now(vec![
            job(&good),
            job(&good),
            job("    return None\n"),
            job("    return (\n"),
        ])
        .unwrap();
    if r.results.iter().any(|j| j.verdict == Verdict::SandboxError) {
        eprintln!("skipped: the sandbox is not usable here");
        return;
    }
    // CodeRL shaping: accepted 1, wrong answer -0.3, compile error -1; the duplicate
    // reference was judged once.
    let rewards: Vec<_> = r.results.iter().map(|j| j.reward).collect();
    assert_eq!(rewards, vec![Some(1.0), Some(1.0), Some(-0.3), Some(-1.0)]);
    assert_eq!(r.judged, 3);
    assert!(r.results[1].reused);
}

/// Rewards a completion by whether it has a `return` line: learnable, and no sandbox.
struct HasReturn;

impl Grader for HasReturn {
    fn grade(&self, p: &Problem, c: &str, sample: usize) -> Report {
        let mut r = Report::sandbox_error(p.id.clone(), sample, "python", "");
        let ok = c.contains("return");
        r.verdict = if ok {
            Verdict::Accepted
        } else {
            Verdict::WrongAnswer
        };
        r.reward = Some(if ok { 1.0 } else { 0.0 });
        r
    }
}

#[test]
fn a_short_run_checkpoints_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path());
    let run = dir.path().join("run");
    let sets = |steps: usize, adv: &str| {
        vec![
            format!(
                "train={:?}",
                dir.path().join("train.jsonl").display().to_string()
            ),
            format!(
                "heldout={:?}",
                dir.path().join("heldout.jsonl").display().to_string()
            ),
            "sft_steps=5".into(),
            "sft_batch=4".into(),
            format!("steps={steps}"),
            "prompts_per_step=2".into(),
            "group_size=2".into(),
            "minibatch_size=2".into(),
            "max_new_tokens=12".into(),
            "eval_samples=1".into(),
            "tiny_hidden=16".into(),
            "tiny_intermediate=32".into(),
            "checkpoint_every=1".into(),
            format!("advantage={adv:?}"),
        ]
    };
    let cfg = RunConfig::load(None, &sets(2, "ppo")).unwrap();
    let s = train(&cfg, &run, false, Some(Arc::new(HasReturn))).unwrap();
    assert_eq!(s.steps, 2);
    let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
    assert_eq!(lines(&run.join("metrics.jsonl")), 2);
    let state = std::fs::read_to_string(run.join("checkpoint/state.json")).unwrap();
    assert!(state.contains("\"step\": 2"), "{state}");
    let before = std::fs::read(run.join("checkpoint/model.safetensors")).unwrap();
    // Resume for one more step: SFT and the first evaluation are not repeated.
    let cfg = RunConfig::load(None, &sets(3, "ppo")).unwrap();
    let s2 = train(&cfg, &run, true, Some(Arc::new(HasReturn))).unwrap();
    assert_eq!(s2.steps, 1);
    assert_eq!(s2.sft_s, 0.0);
    assert_eq!(s2.before.pass_at_1, s.before.pass_at_1);
    assert_eq!(lines(&run.join("metrics.jsonl")), 3);
    let m: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(m["step"], 3);
    for key in [
        "reward_mean",
        "pass_rate",
        "kl",
        "entropy",
        "clipfrac",
        "approx_kl",
        "vf_loss",
        "tokens_per_s",
        "judge_share",
    ] {
        assert!(m[key].is_number(), "{key}: {m}");
    }
    assert_eq!(m["first_ratio_dev"], 0.0);
    assert_ne!(
        std::fs::read(run.join("checkpoint/model.safetensors")).unwrap(),
        before
    );
    let files = crucible_train::plot::plot_run(&run).unwrap();
    assert!(files.iter().any(|f| f.ends_with("curves.png")));
    // The group kinds run through the same loop.
    for adv in ["grpo", "rloo", "reinforce++"] {
        let cfg = RunConfig::load(None, &sets(1, adv)).unwrap();
        let r = dir.path().join(adv);
        train(&cfg, &r, false, Some(Arc::new(HasReturn))).unwrap();
        assert_eq!(lines(&r.join("metrics.jsonl")), 1);
    }
}

/// Rewards the share of characters of a completion that are `a`: dense, learnable.
struct LikesA;

impl Grader for LikesA {
    fn grade(&self, p: &Problem, c: &str, sample: usize) -> Report {
        let mut r = Report::sandbox_error(p.id.clone(), sample, "python", "");
        let n = c.chars().count().max(1);
        let share = c.chars().filter(|&ch| ch == 'a').count() as f64 / n as f64;
        r.verdict = if share > 0.5 {
            Verdict::Accepted
        } else {
            Verdict::WrongAnswer
        };
        r.reward = Some(share);
        r
    }
}

#[test]
fn the_learner_raises_a_simple_reward() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path());
    for adv in ["grpo", "ppo"] {
        let run = dir.path().join(adv);
        let sets = vec![
            format!(
                "train={:?}",
                dir.path().join("train.jsonl").display().to_string()
            ),
            format!(
                "heldout={:?}",
                dir.path().join("heldout.jsonl").display().to_string()
            ),
            "steps=30".to_owned(),
            "prompts_per_step=8".into(),
            "group_size=4".into(),
            "minibatch_size=16".into(),
            "max_new_tokens=6".into(),
            "eval_samples=1".into(),
            "tiny_hidden=32".into(),
            "tiny_intermediate=64".into(),
            "lr=3e-3".into(),
            "warmup_steps=1".into(),
            "kl_coef=0.0".into(),
            "curriculum=false".into(),
            format!("advantage={adv:?}"),
        ];
        let cfg = RunConfig::load(None, &sets).unwrap();
        train(&cfg, &run, false, Some(Arc::new(LikesA))).unwrap();
        let rewards: Vec<f64> = std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["reward_mean"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        let first: f64 = rewards[..5].iter().sum::<f64>() / 5.0;
        let last: f64 = rewards[rewards.len() - 5..].iter().sum::<f64>() / 5.0;
        assert!(
            last > first + 0.2,
            "{adv}: reward {first:.3} -> {last:.3}: {rewards:?}"
        );
    }
}

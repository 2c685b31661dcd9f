//! The PPO learner over a [`Policy`]: value head, frozen reference, scoring of sampled
//! responses, and one update (advantages, then epochs of minibatch steps).
//!
//! Prompts and responses are right-padded into one `[B, L]` batch for scoring; the
//! hidden state that predicts each response token is gathered into `[B, R]`, so logits
//! (and their softmax over the vocabulary) are computed for response tokens only.

use crate::generate::Rng;
use crate::model::{positions_from_valid, Llama, ModelError};
use crate::optim::AdamW;
use crate::policy::Policy;
use crate::ppo::{self, AdaptiveKl, AdvantageKind, KlEstimator, LossAgg};
use crate::safetensors::{self as st, SafetensorsError};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// A linear value head on the policy's final hidden states (shared trunk): one scalar
/// per position, the value of the state before the token that position predicts.
pub struct ValueHead {
    /// `[hidden]`.
    pub weight: Tensor,
    /// `[1]`.
    pub bias: Tensor,
}

impl ValueHead {
    /// A zero-initialised head (values start at 0, so early advantages are the returns).
    pub fn new(hidden: i64, device: Device) -> ValueHead {
        ValueHead {
            weight: Tensor::zeros([hidden], (Kind::Float, device)).set_requires_grad(true),
            bias: Tensor::zeros([1], (Kind::Float, device)).set_requires_grad(true),
        }
    }

    /// Values `[..]` from hidden states `[.., hidden]`.
    pub fn forward(&self, hidden: &Tensor) -> Tensor {
        hidden.to_kind(Kind::Float).matmul(&self.weight) + &self.bias
    }

    /// Named parameters.
    pub fn params(&self) -> Vec<(String, Tensor)> {
        vec![
            ("v_head.weight".into(), self.weight.shallow_clone()),
            ("v_head.bias".into(), self.bias.shallow_clone()),
        ]
    }

    /// Writes the head to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<(), SafetensorsError> {
        st::write(path, &self.params())
    }

    /// Reads a head written by [`ValueHead::save`].
    pub fn load(&self, path: &Path) -> Result<(), SafetensorsError> {
        let mut f = st::SafetensorsFile::open(path)?;
        for (name, p) in self.params() {
            let Some(e) = f.entry(&name).cloned() else {
                return Err(SafetensorsError::Header {
                    path: path.to_owned(),
                    message: format!("missing {name}"),
                });
            };
            let t = f.read(&e)?;
            tch::no_grad(|| p.shallow_clone().f_copy_(&t))?;
        }
        Ok(())
    }
}

/// Prompts and responses laid out for scoring.
pub struct ScoreBatch {
    input: Tensor,
    valid: Tensor,
    gather: Tensor,
    targets: Tensor,
    /// `[B, R]` float: 1 on response tokens.
    pub mask: Tensor,
    /// R, the longest response.
    pub width: usize,
}

impl ScoreBatch {
    /// Builds the batch for `(prompt, response)` rows; `pad` fills the padding.
    pub fn new(rows: &[(&[u32], &[u32])], pad: u32, device: Device) -> ScoreBatch {
        let b = rows.len();
        let l = rows
            .iter()
            .map(|(p, r)| p.len() + r.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let w = rows.iter().map(|(_, r)| r.len()).max().unwrap_or(1).max(1);
        let mut input = vec![pad as i64; b * l];
        let mut valid = vec![false; b * l];
        let mut gather = vec![0i64; b * w];
        let mut targets = vec![pad as i64; b * w];
        let mut mask = vec![0f32; b * w];
        for (i, (p, r)) in rows.iter().enumerate() {
            for (k, &t) in p.iter().chain(r.iter()).enumerate() {
                input[i * l + k] = t as i64;
                valid[i * l + k] = true;
            }
            for j in 0..w {
                // The hidden state at position p + j - 1 predicts response token j.
                gather[i * w + j] = (p.len() + j.min(r.len().saturating_sub(1))) as i64 - 1;
                if j < r.len() {
                    targets[i * w + j] = r[j] as i64;
                    mask[i * w + j] = 1.0;
                }
            }
        }
        let (bi, li, wi) = (b as i64, l as i64, w as i64);
        ScoreBatch {
            input: Tensor::from_slice(&input).view([bi, li]).to_device(device),
            valid: Tensor::from_slice(&valid).view([bi, li]).to_device(device),
            gather: Tensor::from_slice(&gather).view([bi, wi]).to_device(device),
            targets: Tensor::from_slice(&targets)
                .view([bi, wi])
                .to_device(device),
            mask: Tensor::from_slice(&mask).view([bi, wi]).to_device(device),
            width: w,
        }
    }
}

/// Per-token outputs of scoring.
pub struct Scored {
    /// `[B, R]` log-probabilities of the response tokens at the temperature.
    pub logp: Tensor,
    /// `[B, R]` entropy of the temperature-scaled next-token distribution.
    pub entropy: Tensor,
    /// `[B, R]` values, when a head is given.
    pub values: Option<Tensor>,
}

/// Scores a batch: the logits are divided by `temperature` (the sampling temperature)
/// so that log-probabilities are those of the distribution the tokens were drawn from.
///
/// With `detach_value`, the value head reads the hidden states without sending its
/// gradient into the shared trunk (the policy is moved by the policy loss only).
pub fn score(
    model: &Llama,
    head: Option<&ValueHead>,
    b: &ScoreBatch,
    temperature: f64,
    detach_value: bool,
) -> Scored {
    let positions = positions_from_valid(&b.valid);
    let hidden = model.forward(&b.input, &positions, &b.valid, None);
    let (bs, w) = (b.gather.size()[0], b.gather.size()[1]);
    let h = hidden.size()[2];
    let idx = b.gather.unsqueeze(-1).expand([bs, w, h], false);
    let hr = hidden.gather(1, &idx, false);
    let t = if temperature > 0.0 { temperature } else { 1.0 };
    let lsm = (model.logits(&hr) / t).log_softmax(-1, Kind::Float);
    let logp = lsm
        .gather(-1, &b.targets.unsqueeze(-1), false)
        .squeeze_dim(-1)
        * &b.mask;
    let entropy = -(lsm.exp() * &lsm).sum_dim_intlist(-1, false, Kind::Float) * &b.mask;
    let values = head.map(|v| {
        let h = if detach_value {
            hr.detach()
        } else {
            hr.shallow_clone()
        };
        v.forward(&h) * &b.mask
    });
    Scored {
        logp,
        entropy,
        values,
    }
}

/// What to do with a response that hit the token limit without an end token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Truncation {
    /// Subtract `truncation_penalty` from its score.
    #[default]
    Penalty,
    /// Leave it out of the loss.
    Mask,
}

/// The knobs of one update.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateConfig {
    /// Where advantages come from.
    pub advantage: AdvantageKind,
    /// GAE discount.
    pub gamma: f64,
    /// GAE lambda.
    pub lam: f64,
    /// Lower ratio clip (1 - clip_low).
    pub clip_low: f64,
    /// Upper ratio clip (1 + clip_high); above clip_low is "clip-higher".
    pub clip_high: f64,
    /// Value clip around the old value.
    pub vf_clip: f64,
    /// Weight of the value loss.
    pub vf_coef: f64,
    /// Keep the value loss's gradient out of the shared trunk. On by default: on a small
    /// model, a value head learning from scratch through the trunk disturbs the policy.
    pub value_detach: bool,
    /// Weight of the entropy bonus.
    pub ent_coef: f64,
    /// Initial KL coefficient (in the reward for ppo and reinforce++, in the loss for
    /// grpo and rloo).
    pub kl_coef: f64,
    /// KL estimator in the reward (ppo, reinforce++).
    pub kl_estimator: KlEstimator,
    /// KL estimator in the loss (grpo, rloo). k3 by default: the gradient of k1 in a
    /// loss only pushes sampled tokens down, which is not the gradient of the KL.
    pub kl_loss_estimator: KlEstimator,
    /// Adapt the KL coefficient towards `kl_target`.
    pub adaptive_kl: bool,
    /// Target KL per sequence for the adaptive controller.
    pub kl_target: f64,
    /// Controller horizon in samples.
    pub kl_horizon: f64,
    /// Passes over the batch.
    pub epochs: usize,
    /// Samples per minibatch (one optimiser step each).
    pub minibatch_size: usize,
    /// Clip the gradient's global norm (0 = off).
    pub max_grad_norm: f64,
    /// Loss aggregation.
    pub loss_agg: LossAgg,
    /// Whiten PPO advantages over valid tokens.
    pub whiten_advantages: bool,
    /// Divide GRPO advantages by the group's standard deviation.
    pub scale_std: bool,
    /// Drop groups whose present rewards are all equal.
    pub filter_equal_groups: bool,
    /// Responses without an end token.
    pub truncation: Truncation,
    /// Subtracted from a truncated response's score under [`Truncation::Penalty`].
    pub truncation_penalty: f64,
    /// Samples per prompt (the group for group advantages).
    pub group_size: usize,
    /// Sampling temperature (logprobs are recomputed at it).
    pub temperature: f64,
    /// Longest response (also the normaliser of seq-mean-token-sum-norm).
    pub max_new_tokens: usize,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            advantage: AdvantageKind::Ppo,
            gamma: 1.0,
            lam: 0.95,
            clip_low: 0.2,
            clip_high: 0.2,
            vf_clip: 0.2,
            vf_coef: 0.1,
            value_detach: true,
            ent_coef: 0.0,
            kl_coef: 0.05,
            kl_estimator: KlEstimator::K1,
            kl_loss_estimator: KlEstimator::K3,
            adaptive_kl: false,
            kl_target: 6.0,
            kl_horizon: 10000.0,
            epochs: 2,
            minibatch_size: 32,
            max_grad_norm: 1.0,
            loss_agg: LossAgg::TokenMean,
            whiten_advantages: true,
            scale_std: true,
            filter_equal_groups: true,
            truncation: Truncation::Penalty,
            truncation_penalty: 1.0,
            group_size: 4,
            temperature: 1.0,
            max_new_tokens: 64,
        }
    }
}

/// One sampled response.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Index of its problem.
    pub problem: usize,
    /// Prompt tokens.
    pub prompt: Vec<u32>,
    /// Response tokens, its end token included when it has one, nothing after it.
    pub response: Vec<u32>,
    /// Whether it ended (end token or stop sequence) rather than hitting the limit.
    pub finished: bool,
    /// The completion to judge.
    pub completion: String,
}

/// Figures of one update.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpdateStats {
    /// Samples in the batch.
    pub samples: usize,
    /// Samples that took part in the loss.
    pub samples_used: usize,
    /// Response tokens that took part.
    pub tokens_used: usize,
    /// Samples without a reward (sandbox_error), masked.
    pub absent: usize,
    /// Samples that hit the token limit.
    pub truncated: usize,
    /// Groups dropped because their rewards were all equal.
    pub filtered_groups: usize,
    /// Mean policy loss.
    pub pg_loss: f64,
    /// Mean value loss.
    pub vf_loss: f64,
    /// Mean token entropy.
    pub entropy: f64,
    /// Share of tokens whose ratio was clipped.
    pub clipfrac: f64,
    /// Share of tokens whose value was clipped.
    pub vf_clipfrac: f64,
    /// Mean of (ratio - 1) - log ratio: how far the policy moved within the step.
    pub approx_kl: f64,
    /// Mean ratio.
    pub ratio_mean: f64,
    /// Largest |ratio - 1| over the first minibatch of the step (0 when scoring is
    /// consistent: the policy has not moved yet).
    pub first_ratio_dev: f64,
    /// Mean KL to the reference per sequence (k1, summed over tokens).
    pub kl: f64,
    /// KL coefficient used.
    pub kl_coef: f64,
    /// Explained variance of the value head (ppo only).
    pub explained_variance: f64,
    /// Mean gradient norm before clipping.
    pub grad_norm: f64,
    /// Mean advantage magnitude before whitening (sequence level for group kinds).
    pub adv_abs: f64,
}

/// The policy under training with its value head, frozen reference and optimiser.
pub struct Learner {
    /// The policy.
    pub policy: Policy,
    /// A frozen copy of the starting policy.
    pub reference: Llama,
    /// The value head (always present, trained only under ppo).
    pub head: ValueHead,
    /// The optimiser over the policy and the head.
    pub opt: AdamW,
    /// The KL coefficient and its controller.
    pub kl: AdaptiveKl,
}

impl Learner {
    /// A learner whose reference is a frozen copy of `policy` as it is now.
    pub fn new(policy: Policy, lr: f64, cfg: &UpdateConfig) -> Result<Learner, ModelError> {
        let device = policy.model.device();
        let mut reference = Llama::new(policy.model.config(), device)?;
        reference.var_store_mut().copy(policy.model.var_store())?;
        reference.var_store_mut().freeze();
        let head = ValueHead::new(policy.model.config().hidden_size as i64, device);
        let opt = AdamW::new(trainable(&policy.model, &head), lr, 0.0);
        Ok(Learner {
            policy,
            reference,
            head,
            opt,
            kl: AdaptiveKl {
                beta: cfg.kl_coef,
                target: cfg.kl_target,
                horizon: cfg.kl_horizon,
            },
        })
    }

    /// One PPO update on `samples` (consecutive groups of `group_size` per prompt) with
    /// their `scores` (None: no reward, masked). `rng` shuffles minibatches.
    pub fn update(
        &mut self,
        samples: &[Sample],
        scores: &[Option<f64>],
        cfg: &UpdateConfig,
        rng: &mut Rng,
    ) -> UpdateStats {
        let mut st = UpdateStats {
            samples: samples.len(),
            absent: scores.iter().filter(|s| s.is_none()).count(),
            truncated: samples.iter().filter(|s| !s.finished).count(),
            kl_coef: self.kl.beta,
            ..Default::default()
        };
        // Effective scores: truncation applied; excluded samples become None.
        let eff: Vec<Option<f64>> = samples
            .iter()
            .zip(scores)
            .map(|(s, r)| match (r, s.finished, cfg.truncation) {
                (None, _, _) => None,
                (Some(r), true, _) => Some(*r),
                (Some(r), false, Truncation::Penalty) => Some(r - cfg.truncation_penalty),
                (Some(_), false, Truncation::Mask) => None,
            })
            .collect();
        let (seq_adv, keep) = if cfg.advantage.is_group() {
            let (a, k) = ppo::group_advantages(
                cfg.advantage,
                &eff,
                cfg.group_size.max(1),
                cfg.scale_std,
                cfg.filter_equal_groups,
            );
            st.filtered_groups = eff
                .chunks(cfg.group_size.max(1))
                .zip(k.chunks(cfg.group_size.max(1)))
                .filter(|(e, k)| e.iter().any(Option::is_some) && k.iter().all(|x| !x))
                .count();
            (a, k)
        } else {
            (
                vec![0.0; eff.len()],
                eff.iter().map(Option::is_some).collect(),
            )
        };
        let mut kept: Vec<usize> = (0..samples.len()).filter(|&i| keep[i]).collect();
        st.samples_used = kept.len();
        if kept.is_empty() {
            return st;
        }
        shuffle(&mut kept, rng);
        let mbs: Vec<Vec<usize>> = kept
            .chunks(cfg.minibatch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect();
        let device = self.policy.model.device();
        let pad = self.policy.pad_id;
        let batches: Vec<ScoreBatch> = mbs
            .iter()
            .map(|mb| {
                let rows: Vec<(&[u32], &[u32])> = mb
                    .iter()
                    .map(|&i| (samples[i].prompt.as_slice(), samples[i].response.as_slice()))
                    .collect();
                ScoreBatch::new(&rows, pad, device)
            })
            .collect();
        // Old log-probabilities and values: the same batches, the same computation as
        // the first minibatch step below, so that its ratio is exactly 1.
        let critic = cfg.advantage.uses_critic();
        let (old, refs): (Vec<Scored>, Vec<Tensor>) = tch::no_grad(|| {
            batches
                .iter()
                .map(|b| {
                    let s = score(
                        &self.policy.model,
                        Some(&self.head),
                        b,
                        cfg.temperature,
                        cfg.value_detach,
                    );
                    let r = score(&self.reference, None, b, cfg.temperature, true).logp;
                    (s, r)
                })
                .unzip()
        });
        // Host arrays over all kept samples, width W.
        let w = batches.iter().map(|b| b.width).max().unwrap_or(1);
        let n = kept.len();
        let mut old_lp = vec![0.0; n * w];
        let mut ref_lp = vec![0.0; n * w];
        let mut vals = vec![0.0; n * w];
        let mut row_of = Vec::with_capacity(n);
        let mut r = 0;
        for (mb, (o, rf)) in mbs.iter().zip(old.iter().zip(&refs)) {
            let bw = o.logp.size()[1] as usize;
            let lp = to_vec(&o.logp);
            let rl = to_vec(rf);
            let vv = o.values.as_ref().map(to_vec).unwrap_or_default();
            for (k, &i) in mb.iter().enumerate() {
                for j in 0..samples[i].response.len().min(bw) {
                    old_lp[r * w + j] = lp[k * bw + j];
                    ref_lp[r * w + j] = rl[k * bw + j];
                    if critic {
                        vals[r * w + j] = vv[k * bw + j];
                    }
                }
                row_of.push(i);
                r += 1;
            }
        }
        let lens: Vec<usize> = row_of
            .iter()
            .map(|&i| samples[i].response.len().min(w))
            .collect();
        let mut mask = vec![0.0; n * w];
        for (k, &len) in lens.iter().enumerate() {
            mask[k * w..k * w + len].fill(1.0);
        }
        let kl_tok: Vec<f64> = old_lp
            .iter()
            .zip(&ref_lp)
            .zip(&mask)
            .map(|((a, b), m)| m * ppo::kl_scalar(cfg.kl_estimator, *a, *b))
            .collect();
        let k1_tok: Vec<f64> = old_lp
            .iter()
            .zip(&ref_lp)
            .zip(&mask)
            .map(|((a, b), m)| m * (a - b))
            .collect();
        st.kl = k1_tok.iter().sum::<f64>() / n as f64;
        let beta = self.kl.beta;
        let (adv, ret) = match cfg.advantage {
            AdvantageKind::Ppo => {
                let sc: Vec<Option<f64>> = row_of.iter().map(|&i| eff[i]).collect();
                st.adv_abs = sc.iter().flatten().map(|v| v.abs()).sum::<f64>() / n as f64;
                let rewards = ppo::token_rewards(&sc, &kl_tok, &mask, &lens, w, beta);
                let (a, ret) = ppo::gae(&rewards, &vals, &mask, w, cfg.gamma, cfg.lam);
                st.explained_variance = ppo::explained_variance(&vals, &ret, &mask);
                let a = if cfg.whiten_advantages {
                    ppo::whiten(&a, &mask, true)
                } else {
                    a
                };
                (a, ret)
            }
            AdvantageKind::ReinforcePlusPlus => {
                let sa: Vec<f64> = row_of.iter().map(|&i| seq_adv[i]).collect();
                st.adv_abs = sa.iter().map(|v| v.abs()).sum::<f64>() / n as f64;
                let klr: Vec<f64> = kl_tok.iter().map(|k| -beta * k).collect();
                (
                    ppo::reinforce_pp_advantages(&klr, &sa, &mask, w),
                    vec![0.0; n * w],
                )
            }
            AdvantageKind::Grpo | AdvantageKind::Rloo => {
                let mut a = vec![0.0; n * w];
                let mut abs = 0.0;
                for (k, &i) in row_of.iter().enumerate() {
                    abs += seq_adv[i].abs();
                    for j in 0..lens[k] {
                        a[k * w + j] = seq_adv[i];
                    }
                }
                st.adv_abs = abs / n as f64;
                (a, vec![0.0; n * w])
            }
        };
        // Per-minibatch advantage and return tensors (rows in minibatch order).
        let mut adv_t = Vec::new();
        let mut ret_t = Vec::new();
        let mut r = 0;
        for (mb, b) in mbs.iter().zip(&batches) {
            let bw = b.width;
            let mut a = vec![0f32; mb.len() * bw];
            let mut rt = vec![0f32; mb.len() * bw];
            for k in 0..mb.len() {
                for j in 0..bw.min(w) {
                    a[k * bw + j] = adv[r * w + j] as f32;
                    rt[k * bw + j] = ret[r * w + j] as f32;
                }
                r += 1;
            }
            let shape = [mb.len() as i64, bw as i64];
            adv_t.push(Tensor::from_slice(&a).view(shape).to_device(device));
            ret_t.push(Tensor::from_slice(&rt).view(shape).to_device(device));
        }
        let kl_in_loss = matches!(cfg.advantage, AdvantageKind::Grpo | AdvantageKind::Rloo);
        let mut acc = Acc::default();
        let mut order: Vec<usize> = (0..mbs.len()).collect();
        for epoch in 0..cfg.epochs.max(1) {
            if epoch > 0 {
                shuffle(&mut order, rng);
            }
            for &m in &order {
                let b = &batches[m];
                let s = score(
                    &self.policy.model,
                    Some(&self.head),
                    b,
                    cfg.temperature,
                    cfg.value_detach,
                );
                let (pg, clipped, ratio) = ppo::policy_loss(
                    &s.logp,
                    &old[m].logp,
                    &adv_t[m],
                    cfg.clip_low,
                    cfg.clip_high,
                );
                let agg = |x: &Tensor| {
                    ppo::aggregate(x, &b.mask, cfg.loss_agg, cfg.max_new_tokens as f64)
                };
                let mean = |x: &Tensor| ppo::aggregate(x, &b.mask, LossAgg::TokenMean, 0.0);
                let pg_l = agg(&pg);
                let mut loss = pg_l.shallow_clone();
                if critic {
                    if let (Some(v), Some(ov)) = (&s.values, &old[m].values) {
                        let (vl, vc) = ppo::value_loss(v, ov, &ret_t[m], cfg.vf_clip);
                        let vl = agg(&vl);
                        acc.vf += vl.double_value(&[]);
                        acc.vf_clip += mean(&vc).double_value(&[]);
                        loss += vl * cfg.vf_coef;
                    }
                }
                if kl_in_loss && beta > 0.0 {
                    let k = ppo::kl_tensor(cfg.kl_loss_estimator, &s.logp, &refs[m]);
                    loss += agg(&k) * beta;
                }
                let ent = mean(&s.entropy);
                if cfg.ent_coef != 0.0 {
                    loss -= &ent * cfg.ent_coef;
                }
                self.opt.zero_grad();
                loss.backward();
                acc.grad_norm += self.opt.clip_grad_norm(cfg.max_grad_norm);
                self.opt.step();
                tch::no_grad(|| {
                    let lr = ratio.log();
                    let dev = ((&ratio - 1.0).abs() * &b.mask).max().double_value(&[]);
                    if acc.n == 0 {
                        st.first_ratio_dev = dev;
                    }
                    acc.pg += pg_l.double_value(&[]);
                    acc.ent += ent.double_value(&[]);
                    acc.clip += mean(&clipped).double_value(&[]);
                    acc.akl += mean(&((&ratio - 1.0) - &lr)).double_value(&[]);
                    acc.ratio += mean(&ratio).double_value(&[]);
                });
                acc.n += 1;
            }
        }
        let k = acc.n.max(1) as f64;
        st.pg_loss = acc.pg / k;
        st.vf_loss = acc.vf / k;
        st.vf_clipfrac = acc.vf_clip / k;
        st.entropy = acc.ent / k;
        st.clipfrac = acc.clip / k;
        st.approx_kl = acc.akl / k;
        st.ratio_mean = acc.ratio / k;
        st.grad_norm = acc.grad_norm / k;
        st.tokens_used = lens.iter().sum();
        if cfg.adaptive_kl {
            self.kl.update(st.kl, n);
        }
        st
    }
}

#[derive(Default)]
struct Acc {
    n: usize,
    pg: f64,
    vf: f64,
    vf_clip: f64,
    ent: f64,
    clip: f64,
    akl: f64,
    ratio: f64,
    grad_norm: f64,
}

/// The optimiser's parameters: the policy's (sorted by name) and the value head's.
pub fn trainable(model: &Llama, head: &ValueHead) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = model.var_store().variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.extend(head.params());
    named
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(
        t.to_kind(Kind::Double)
            .to_device(Device::Cpu)
            .flatten(0, -1),
    )
    .unwrap_or_default()
}

/// Fisher-Yates with the learner's generator.
pub fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LlamaConfig;
    use crate::synthetic;
    use crate::tokenizer::Tokenizer;

    fn tiny_policy() -> Policy {
        tch::manual_seed(3);
        let cfg = LlamaConfig::tiny(synthetic::char_vocab_size());
        Policy {
            model: Llama::new(&cfg, Device::Cpu).unwrap(),
            tokenizer: Tokenizer::from_bytes(
                synthetic::char_tokenizer_json().to_string().as_bytes(),
            )
            .unwrap(),
            chat: None,
            eos_ids: vec![synthetic::EOS_ID],
            pad_id: synthetic::PAD_ID,
        }
    }

    fn samples() -> (Vec<Sample>, Vec<Option<f64>>) {
        let mk = |p: usize, prompt: &[u32], resp: &[u32], finished| Sample {
            problem: p,
            prompt: prompt.to_vec(),
            response: resp.to_vec(),
            finished,
            completion: String::new(),
        };
        let s = vec![
            mk(0, &[5, 6, 7], &[8, 9, 1], true),
            mk(0, &[5, 6, 7], &[10, 1], true),
            mk(1, &[11, 12], &[13, 14, 15, 16], false),
            mk(1, &[11, 12], &[17, 1], true),
        ];
        (s, vec![Some(1.0), Some(0.0), Some(0.0), None])
    }

    #[test]
    fn scoring_matches_the_model_and_ignores_padding() {
        let p = tiny_policy();
        let rows: Vec<(&[u32], &[u32])> = vec![(&[5, 6, 7], &[8, 9]), (&[5], &[8, 9, 10, 11])];
        let b = ScoreBatch::new(&rows, 0, Device::Cpu);
        let s = tch::no_grad(|| score(&p.model, None, &b, 0.7, true));
        // Row 0 alone, through the model's own scorer at the same temperature.
        let ids = Tensor::from_slice(&[5i64, 6, 7, 8, 9]).view([1, 5]);
        let valid = ids.ones_like().to_kind(Kind::Bool);
        let want = tch::no_grad(|| p.model.token_logprobs(&ids, &valid, 0.7));
        for j in 0..2 {
            let a = s.logp.double_value(&[0, j]);
            let w = want.double_value(&[0, 2 + j]);
            assert!((a - w).abs() < 1e-5, "{a} vs {w}");
        }
        assert_eq!(s.logp.double_value(&[0, 3]), 0.0);
        assert_eq!(
            Vec::<f32>::try_from(b.mask.flatten(0, -1)).unwrap(),
            vec![1., 1., 0., 0., 1., 1., 1., 1.]
        );
    }

    #[test]
    fn ratio_is_exactly_one_at_the_first_minibatch() {
        let cfg = UpdateConfig {
            group_size: 2,
            minibatch_size: 2,
            epochs: 2,
            temperature: 0.8,
            ..Default::default()
        };
        for kind in [
            AdvantageKind::Ppo,
            AdvantageKind::Grpo,
            AdvantageKind::Rloo,
            AdvantageKind::ReinforcePlusPlus,
        ] {
            let mut l = Learner::new(tiny_policy(), 1e-2, &cfg).unwrap();
            let (s, sc) = samples();
            let cfg = UpdateConfig {
                advantage: kind,
                filter_equal_groups: false,
                ..cfg.clone()
            };
            let st = l.update(&s, &sc, &cfg, &mut Rng::new(1));
            assert_eq!(st.first_ratio_dev, 0.0, "{kind:?}");
            assert_eq!(st.absent, 1);
            assert_eq!(st.truncated, 1);
            // The absent sample is masked; the truncated one is penalised, not dropped.
            assert_eq!(st.samples_used, 3, "{kind:?}");
            // The policy starts as the reference: no KL before the first step.
            assert!(st.kl.abs() < 1e-6);
            // Later minibatches saw an updated policy.
            assert!(st.ratio_mean != 1.0);
        }
    }

    #[test]
    fn truncation_mask_and_group_filter_drop_samples() {
        let (s, sc) = samples();
        let cfg = UpdateConfig {
            group_size: 2,
            minibatch_size: 4,
            epochs: 1,
            truncation: Truncation::Mask,
            advantage: AdvantageKind::Grpo,
            ..Default::default()
        };
        let mut l = Learner::new(tiny_policy(), 1e-3, &cfg).unwrap();
        let st = l.update(&s, &sc, &cfg, &mut Rng::new(1));
        // Group 1 has no present score left (one truncated-masked, one absent).
        assert_eq!(st.samples_used, 2);
        assert_eq!(st.filtered_groups, 0);
        let sc2 = vec![Some(1.0), Some(1.0), Some(0.0), Some(0.0)];
        let cfg2 = UpdateConfig {
            truncation: Truncation::Penalty,
            ..cfg
        };
        let st = l.update(&s, &sc2, &cfg2, &mut Rng::new(1));
        // Group 0 all 1: filtered; group 1 scores -1 (truncated, penalised) and 0: kept.
        assert_eq!(st.filtered_groups, 1);
        assert_eq!(st.samples_used, 2);
    }
}

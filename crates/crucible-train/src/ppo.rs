//! The arithmetic of PPO for language models, kept free of models and I/O so that every
//! piece can be checked against hand-computed values.
//!
//! Layout: a batch of `B` responses is `[B, R]` (R = longest response), right-padded;
//! `mask` is 1 on a response's real tokens (its end token included) and 0 past it.
//! Host-side functions take row-major `&[f64]` of `B * R`; loss functions take tensors.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// How a per-token quantity becomes one loss number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LossAgg {
    /// Mean over every valid token of the minibatch: each token weighs the same, so long
    /// responses are not down-weighted (no length bias). The default.
    #[default]
    TokenMean,
    /// Mean over sequences of each sequence's token mean (the original GRPO's choice).
    SeqMeanTokenMean,
    /// Sum over each sequence's tokens divided by a constant (the longest response
    /// allowed), then mean over sequences (Dr. GRPO).
    SeqMeanTokenSumNorm,
}

impl std::str::FromStr for LossAgg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "token-mean" => Ok(LossAgg::TokenMean),
            "seq-mean-token-mean" => Ok(LossAgg::SeqMeanTokenMean),
            "seq-mean-token-sum-norm" => Ok(LossAgg::SeqMeanTokenSumNorm),
            _ => Err(format!(
                "unknown loss aggregation {s:?} (token-mean, seq-mean-token-mean, seq-mean-token-sum-norm)"
            )),
        }
    }
}

/// Where advantages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AdvantageKind {
    /// GAE over a learned value (the value head), then whitened over valid tokens.
    #[default]
    Ppo,
    /// Group-relative: (r - group mean) / group std, the same for every token.
    Grpo,
    /// Leave-one-out: r minus the mean of the group's other rewards.
    Rloo,
    /// Token returns (score plus the per-token KL penalty, summed to the end) minus the
    /// group mean score, whitened over the batch's valid tokens.
    #[serde(rename = "reinforce++")]
    ReinforcePlusPlus,
}

impl std::str::FromStr for AdvantageKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ppo" | "gae" => Ok(AdvantageKind::Ppo),
            "grpo" => Ok(AdvantageKind::Grpo),
            "rloo" => Ok(AdvantageKind::Rloo),
            "reinforce++" | "reinforce-plus-plus" => Ok(AdvantageKind::ReinforcePlusPlus),
            _ => Err(format!(
                "unknown advantage {s:?} (ppo, grpo, rloo, reinforce++)"
            )),
        }
    }
}

impl AdvantageKind {
    /// Whether this kind needs a value head.
    pub fn uses_critic(self) -> bool {
        self == AdvantageKind::Ppo
    }

    /// Whether samples are drawn in groups per prompt and compared within them.
    pub fn is_group(self) -> bool {
        self != AdvantageKind::Ppo
    }
}

/// Per-token estimators of KL(policy || reference) from log-probabilities of the sampled
/// tokens (Schulman, "Approximating KL divergence").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    /// `logp - ref_logp`: unbiased, may be negative per token.
    #[default]
    K1,
    /// `exp(ref - logp) - (ref - logp) - 1`: unbiased, never negative, lower variance.
    K3,
}

impl std::str::FromStr for KlEstimator {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "k1" => Ok(KlEstimator::K1),
            "k3" => Ok(KlEstimator::K3),
            _ => Err(format!("unknown KL estimator {s:?} (k1, k3)")),
        }
    }
}

/// One token's KL estimate from the policy's and the reference's log-probabilities.
pub fn kl_scalar(est: KlEstimator, logp: f64, ref_logp: f64) -> f64 {
    match est {
        KlEstimator::K1 => logp - ref_logp,
        KlEstimator::K3 => {
            let d = ref_logp - logp;
            d.exp() - d - 1.0
        }
    }
}

/// [`kl_scalar`] on tensors, element-wise.
pub fn kl_tensor(est: KlEstimator, logp: &Tensor, ref_logp: &Tensor) -> Tensor {
    match est {
        KlEstimator::K1 => logp - ref_logp,
        KlEstimator::K3 => {
            let d = ref_logp - logp;
            d.exp() - &d - 1.0
        }
    }
}

/// The adaptive KL coefficient of Ziegler et al. (2019): beta grows when the measured
/// KL is above target and shrinks when below, by at most 20% of `n_steps / horizon` per
/// update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveKl {
    /// The current coefficient.
    pub beta: f64,
    /// The KL (per sequence, summed over tokens) to hold.
    pub target: f64,
    /// Samples over which the coefficient may change by the full factor.
    pub horizon: f64,
}

impl AdaptiveKl {
    /// Moves `beta` after an update that measured `kl` over `n_steps` samples.
    pub fn update(&mut self, kl: f64, n_steps: usize) {
        if !kl.is_finite() || self.target <= 0.0 {
            return;
        }
        let err = (kl / self.target - 1.0).clamp(-0.2, 0.2);
        self.beta *= 1.0 + err * n_steps as f64 / self.horizon;
    }
}

/// Response lengths and the `[B, R]` mask for raw generated rows, where each row holds
/// its tokens up to and including its first end token, then anything (padding, or more
/// tokens a batched sampler emitted after the row ended). Tokens past the first end
/// token are never part of the response.
pub fn response_mask(rows: &[Vec<u32>], eos_ids: &[u32], width: usize) -> (Vec<usize>, Vec<f64>) {
    let mut lens = Vec::with_capacity(rows.len());
    let mut mask = vec![0.0; rows.len() * width];
    for (i, row) in rows.iter().enumerate() {
        let len = row
            .iter()
            .position(|t| eos_ids.contains(t))
            .map_or(row.len(), |p| p + 1)
            .min(width);
        mask[i * width..i * width + len].fill(1.0);
        lens.push(len);
    }
    (lens, mask)
}

/// Per-token rewards: `-beta * kl` on every valid token, plus the sequence's score on its
/// last valid token. Rows whose score is absent get no score (they are masked anyway).
pub fn token_rewards(
    scores: &[Option<f64>],
    kl: &[f64],
    mask: &[f64],
    lens: &[usize],
    width: usize,
    beta: f64,
) -> Vec<f64> {
    let mut r: Vec<f64> = kl.iter().zip(mask).map(|(k, m)| -beta * k * m).collect();
    for (i, s) in scores.iter().enumerate() {
        if let (Some(s), true) = (s, lens[i] > 0) {
            r[i * width + lens[i] - 1] += s;
        }
    }
    r
}

/// Generalised advantage estimation, right to left over each row's valid tokens:
/// `delta_t = r_t + gamma * V_{t+1} - V_t` (V past the last valid token is 0) and
/// `A_t = delta_t + gamma * lambda * A_{t+1}`. Returns `(advantages, returns = A + V)`,
/// 0 on invalid tokens.
pub fn gae(
    rewards: &[f64],
    values: &[f64],
    mask: &[f64],
    width: usize,
    gamma: f64,
    lambda: f64,
) -> (Vec<f64>, Vec<f64>) {
    let n = rewards.len();
    let mut adv = vec![0.0; n];
    let mut ret = vec![0.0; n];
    for row in 0..n / width.max(1) {
        let base = row * width;
        let mut next_v = 0.0;
        let mut next_a = 0.0;
        for t in (0..width).rev() {
            let i = base + t;
            if mask[i] == 0.0 {
                // Padding: what follows a response is the end of the episode.
                next_v = 0.0;
                next_a = 0.0;
                continue;
            }
            let delta = rewards[i] + gamma * next_v - values[i];
            let a = delta + gamma * lambda * next_a;
            adv[i] = a;
            ret[i] = a + values[i];
            next_v = values[i];
            next_a = a;
        }
    }
    (adv, ret)
}

/// Whitens `x` over the tokens where `mask` is 1: subtract the mean, divide by the
/// standard deviation (population, plus 1e-8). With `shift_mean` false the mean is
/// added back (scale only). Invalid tokens become 0.
pub fn whiten(x: &[f64], mask: &[f64], shift_mean: bool) -> Vec<f64> {
    let n: f64 = mask.iter().sum();
    if n == 0.0 {
        return vec![0.0; x.len()];
    }
    let mean = x.iter().zip(mask).map(|(v, m)| v * m).sum::<f64>() / n;
    let var = x
        .iter()
        .zip(mask)
        .map(|(v, m)| m * (v - mean).powi(2))
        .sum::<f64>()
        / n;
    let inv = 1.0 / (var.sqrt() + 1e-8);
    x.iter()
        .zip(mask)
        .map(|(v, m)| {
            if *m == 0.0 {
                0.0
            } else if shift_mean {
                (v - mean) * inv
            } else {
                (v - mean) * inv + mean
            }
        })
        .collect()
}

/// Sequence-level advantages for one batch laid out as consecutive groups of `group`
/// samples of the same prompt. Absent scores (None) take no part: a group's statistics
/// use its present scores only, and an absent sample's advantage is 0.
///
/// Returns the advantages and, per sample, whether it is kept: with `filter_equal`, every
/// sample of a group whose present scores are all equal (no signal to compare) is
/// dropped, as is every sample of a group with fewer than two present scores.
pub fn group_advantages(
    kind: AdvantageKind,
    scores: &[Option<f64>],
    group: usize,
    scale_std: bool,
    filter_equal: bool,
) -> (Vec<f64>, Vec<bool>) {
    let mut adv = vec![0.0; scores.len()];
    let mut keep: Vec<bool> = scores.iter().map(Option::is_some).collect();
    for (g, chunk) in scores.chunks(group.max(1)).enumerate() {
        let base = g * group;
        let present: Vec<f64> = chunk.iter().flatten().copied().collect();
        let n = present.len();
        let all_equal = present.windows(2).all(|w| w[0] == w[1]);
        if filter_equal && (n < 2 || all_equal) {
            keep[base..base + chunk.len()].fill(false);
            continue;
        }
        if n == 0 {
            continue;
        }
        let mean = present.iter().sum::<f64>() / n as f64;
        // Sample standard deviation (n - 1), as GRPO's reference code computes it.
        let std = if n > 1 {
            (present.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        for (j, s) in chunk.iter().enumerate() {
            let Some(s) = s else { continue };
            adv[base + j] = match kind {
                AdvantageKind::Grpo if scale_std => (s - mean) / (std + 1e-6),
                AdvantageKind::Grpo | AdvantageKind::ReinforcePlusPlus => s - mean,
                AdvantageKind::Rloo if n > 1 => {
                    (s * n as f64 - present.iter().sum::<f64>()) / (n - 1) as f64
                }
                AdvantageKind::Rloo => 0.0,
                AdvantageKind::Ppo => *s,
            };
        }
    }
    (adv, keep)
}

/// REINFORCE++ token advantages: for each valid token, the sum of the per-token rewards
/// (KL penalty) from it to the end, plus the sequence's baseline-subtracted score
/// `seq_adv`; then whitened over valid tokens.
pub fn reinforce_pp_advantages(
    kl_rewards: &[f64],
    seq_adv: &[f64],
    mask: &[f64],
    width: usize,
) -> Vec<f64> {
    let mut out = vec![0.0; kl_rewards.len()];
    for (row, a) in seq_adv.iter().enumerate() {
        let mut acc = *a;
        for t in (0..width).rev() {
            let i = row * width + t;
            if mask[i] == 0.0 {
                continue;
            }
            acc += kl_rewards[i];
            out[i] = acc;
        }
    }
    whiten(&out, mask, true)
}

/// Aggregates a `[B, R]` per-token loss under `mask` into a scalar.
pub fn aggregate(loss: &Tensor, mask: &Tensor, agg: LossAgg, norm_len: f64) -> Tensor {
    let masked = loss * mask;
    match agg {
        LossAgg::TokenMean => masked.sum(Kind::Float) / mask.sum(Kind::Float).clamp_min(1.0),
        LossAgg::SeqMeanTokenMean => {
            let per = masked.sum_dim_intlist(1, false, Kind::Float)
                / mask.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0);
            let rows = mask
                .sum_dim_intlist(1, false, Kind::Float)
                .gt(0.0)
                .to_kind(Kind::Float);
            (per * &rows).sum(Kind::Float) / rows.sum(Kind::Float).clamp_min(1.0)
        }
        LossAgg::SeqMeanTokenSumNorm => {
            let rows = mask
                .sum_dim_intlist(1, false, Kind::Float)
                .gt(0.0)
                .to_kind(Kind::Float);
            masked.sum(Kind::Float) / norm_len.max(1.0) / rows.sum(Kind::Float).clamp_min(1.0)
        }
    }
}

/// Per-token clipped policy loss and whether each token was clipped:
/// `max(-A * ratio, -A * clip(ratio, 1 - eps_low, 1 + eps_high))` with
/// `ratio = exp(logp - old_logp)`. `eps_high > eps_low` is "clip-higher" (DAPO), which
/// leaves low-probability tokens more room to grow.
pub fn policy_loss(
    logp: &Tensor,
    old_logp: &Tensor,
    adv: &Tensor,
    eps_low: f64,
    eps_high: f64,
) -> (Tensor, Tensor, Tensor) {
    let ratio = (logp - old_logp).exp();
    let l1 = -adv * &ratio;
    let l2 = -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high);
    let clipped = l2.gt_tensor(&l1).to_kind(Kind::Float);
    (l1.maximum(&l2), clipped, ratio)
}

/// Per-token clipped value loss: `0.5 * max((v - R)^2, (v_old + clip(v - v_old, -c, c) - R)^2)`.
/// Returns the loss and whether the clipped term was the larger.
pub fn value_loss(v: &Tensor, old_v: &Tensor, returns: &Tensor, clip: f64) -> (Tensor, Tensor) {
    let vc = old_v + (v - old_v).clamp(-clip, clip);
    let l1 = (v - returns).square();
    let l2 = (vc - returns).square();
    let clipped = l2.gt_tensor(&l1).to_kind(Kind::Float);
    (l1.maximum(&l2) * 0.5, clipped)
}

/// `1 - Var(returns - values) / Var(returns)` over valid tokens: how much of the returns
/// the value head explains (1 perfect, 0 no better than a constant, negative worse).
pub fn explained_variance(values: &[f64], returns: &[f64], mask: &[f64]) -> f64 {
    let n: f64 = mask.iter().sum();
    if n < 2.0 {
        return f64::NAN;
    }
    let var = |xs: &dyn Fn(usize) -> f64| {
        let mean = (0..mask.len()).map(|i| mask[i] * xs(i)).sum::<f64>() / n;
        (0..mask.len())
            .map(|i| mask[i] * (xs(i) - mean).powi(2))
            .sum::<f64>()
            / n
    };
    let vr = var(&|i| returns[i]);
    if vr == 0.0 {
        return f64::NAN;
    }
    1.0 - var(&|i| returns[i] - values[i]) / vr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    fn t(v: &[f64], w: i64) -> Tensor {
        Tensor::from_slice(v).view([-1, w]).to_kind(Kind::Float)
    }

    fn f(x: &Tensor) -> f64 {
        x.double_value(&[])
    }

    #[test]
    fn gae_matches_hand_computation() {
        // One row of 3 valid tokens and one padding slot; gamma 0.9, lambda 0.5.
        // r = [0, 0, 1], V = [0.5, 0.6, 0.7].
        // delta2 = 1 - 0.7 = 0.3;  A2 = 0.3
        // delta1 = 0 + 0.9*0.7 - 0.6 = 0.03;  A1 = 0.03 + 0.45*0.3 = 0.165
        // delta0 = 0 + 0.9*0.6 - 0.5 = 0.04;  A0 = 0.04 + 0.45*0.165 = 0.11425
        let (a, r) = gae(
            &[0.0, 0.0, 1.0, 9.0],
            &[0.5, 0.6, 0.7, 9.0],
            &[1.0, 1.0, 1.0, 0.0],
            4,
            0.9,
            0.5,
        );
        close(a[2], 0.3);
        close(a[1], 0.165);
        close(a[0], 0.11425);
        close(a[3], 0.0);
        close(r[0], 0.61425);
        close(r[2], 1.0);
        // gamma 1, lambda 1: A_t = sum of future rewards - V_t (Monte Carlo).
        let (a, _) = gae(&[0.1, -0.2, 1.0], &[0.3, 0.2, 0.1], &[1.0; 3], 3, 1.0, 1.0);
        close(a[0], 0.9 - 0.3);
        close(a[1], 0.8 - 0.2);
        close(a[2], 1.0 - 0.1);
    }

    #[test]
    fn kl_estimators_and_controller() {
        // logp = ln 0.5, ref = ln 0.25: k1 = ln 2; k3 = 0.5 - ln 0.5 - 1 = ln 2 - 0.5.
        let (lp, rp) = (0.5f64.ln(), 0.25f64.ln());
        close(kl_scalar(KlEstimator::K1, lp, rp), 2f64.ln());
        close(kl_scalar(KlEstimator::K3, lp, rp), 2f64.ln() - 0.5);
        // k3 is never negative, k1 can be.
        assert!(kl_scalar(KlEstimator::K1, rp, lp) < 0.0);
        close(kl_scalar(KlEstimator::K3, rp, lp), 2.0 - 2f64.ln() - 1.0);
        let k = kl_tensor(KlEstimator::K3, &t(&[lp], 1), &t(&[rp], 1));
        assert!((f(&k.sum(Kind::Float)) - (2f64.ln() - 0.5)).abs() < 1e-6);
        // Controller: KL 2x target -> error clipped to +0.2; 100 of 1000 -> x1.02.
        let mut c = AdaptiveKl {
            beta: 0.1,
            target: 6.0,
            horizon: 1000.0,
        };
        c.update(12.0, 100);
        close(c.beta, 0.102);
        // KL 4.5 of 6 -> error -0.25 -> clipped -0.2 -> x0.98.
        c.update(4.5, 100);
        close(c.beta, 0.102 * 0.98);
        // Within the clip: KL 6.6 -> error 0.1 -> x1.01.
        c.update(6.6, 100);
        close(c.beta, 0.102 * 0.98 * 1.01);
    }

    #[test]
    fn nothing_past_eos_counts() {
        // eos = 2; row 0 ends at index 1, row 1 never ends (truncated), row 2 ends first.
        let rows = vec![vec![5, 2, 7, 7], vec![5, 6, 7, 8], vec![2, 9, 9, 9]];
        let (lens, mask) = response_mask(&rows, &[2], 4);
        assert_eq!(lens, vec![2, 4, 1]);
        assert_eq!(mask, vec![1., 1., 0., 0., 1., 1., 1., 1., 1., 0., 0., 0.]);
        // The score lands on the end token, KL only on valid tokens, none past EOS.
        let kl = vec![1.0; 12];
        let r = token_rewards(&[Some(1.0), None, Some(0.5)], &kl, &mask, &lens, 4, 0.1);
        assert_eq!(&r[0..4], &[-0.1, 0.9, 0.0, 0.0]);
        assert_eq!(&r[4..8], &[-0.1, -0.1, -0.1, -0.1]);
        assert_eq!(&r[8..12], &[0.4, 0.0, 0.0, 0.0]);
        // GAE gives nothing past the end, and what lies there does not leak back.
        let (a, _) = gae(&r, &[0.0; 12], &mask, 4, 1.0, 1.0);
        assert_eq!(&a[2..4], &[0.0, 0.0]);
        close(a[0], 0.8);
        let mut r2 = r.clone();
        r2[3] = 100.0;
        assert_eq!(gae(&r2, &[0.0; 12], &mask, 4, 1.0, 1.0).0, a);
    }

    #[test]
    fn whitening_uses_valid_tokens_only() {
        // Valid values 1, 2, 3: mean 2, population std sqrt(2/3).
        let w = whiten(&[1.0, 2.0, 3.0, 100.0], &[1.0, 1.0, 1.0, 0.0], true);
        let s = (2.0f64 / 3.0).sqrt() + 1e-8;
        close(w[0], -1.0 / s);
        close(w[1], 0.0);
        close(w[2], 1.0 / s);
        close(w[3], 0.0);
        let w = whiten(&[1.0, 2.0, 3.0, 100.0], &[1.0, 1.0, 1.0, 0.0], false);
        close(w[1], 2.0);
    }

    #[test]
    fn loss_aggregations() {
        // Row 0: losses 1, 2, 3 (3 valid); row 1: loss 6 (1 valid).
        let loss = t(&[1.0, 2.0, 3.0, 6.0, 0.0, 0.0], 3);
        let mask = t(&[1.0, 1.0, 1.0, 1.0, 0.0, 0.0], 3);
        // token-mean: (1+2+3+6)/4 = 3.
        close(f(&aggregate(&loss, &mask, LossAgg::TokenMean, 0.0)), 3.0);
        // seq-mean-token-mean: (2 + 6)/2 = 4.
        close(
            f(&aggregate(&loss, &mask, LossAgg::SeqMeanTokenMean, 0.0)),
            4.0,
        );
        // seq-mean-token-sum-norm with L = 4: (6/4 + 6/4)/2 = 1.5.
        close(
            f(&aggregate(&loss, &mask, LossAgg::SeqMeanTokenSumNorm, 4.0)),
            1.5,
        );
        // A fully masked row does not count as a sequence.
        let mask2 = t(&[1.0, 1.0, 1.0, 0.0, 0.0, 0.0], 3);
        close(
            f(&aggregate(&loss, &mask2, LossAgg::SeqMeanTokenMean, 0.0)),
            2.0,
        );
    }

    #[test]
    fn clipped_policy_loss() {
        // ratios 1.5, 0.5, 1.1, 0.5 against advantages +1, +1, -1, -1; eps 0.2.
        let old = t(&[0.0; 4], 4);
        let lp = t(&[1.5f64.ln(), 0.5f64.ln(), 1.1f64.ln(), 0.5f64.ln()], 4);
        let adv = t(&[1.0, 1.0, -1.0, -1.0], 4);
        let (l, c, r) = policy_loss(&lp, &old, &adv, 0.2, 0.2);
        let l = Vec::<f64>::try_from(l.to_kind(Kind::Double).flatten(0, -1)).unwrap();
        let c = Vec::<f64>::try_from(c.to_kind(Kind::Double).flatten(0, -1)).unwrap();
        // A>0, ratio 1.5: max(-1.5, -1.2) = -1.2 (clipped).
        assert!((l[0] + 1.2).abs() < 1e-6);
        // A>0, ratio 0.5: max(-0.5, -0.8) = -0.5 (not clipped: pessimistic bound).
        assert!((l[1] + 0.5).abs() < 1e-6);
        // A<0, ratio 1.1: max(1.1, 1.1) = 1.1.
        assert!((l[2] - 1.1).abs() < 1e-6);
        // A<0, ratio 0.5: max(0.5, 0.8) = 0.8 (clipped).
        assert!((l[3] - 0.8).abs() < 1e-6);
        assert_eq!(c, vec![1.0, 0.0, 0.0, 1.0]);
        assert!((f(&r.sum(Kind::Float)) - 3.6).abs() < 1e-6);
        // Clip-higher: eps_high 0.28 lets ratio 1.5 count up to 1.28.
        let (l, _, _) = policy_loss(&lp, &old, &adv, 0.2, 0.28);
        assert!((l.double_value(&[0, 0]) + 1.28).abs() < 1e-6);
    }

    #[test]
    fn clipped_value_loss() {
        // old 0, new 1, return 0.5, clip 0.2: unclipped (0.5)^2, clipped (0.2-0.5)^2.
        let (l, c) = value_loss(&t(&[1.0], 1), &t(&[0.0], 1), &t(&[0.5], 1), 0.2);
        assert!((f(&l.sum(Kind::Float)) - 0.125).abs() < 1e-6);
        assert_eq!(f(&c.sum(Kind::Float)), 0.0);
        // old 0, new 1, return 2: unclipped 1, clipped (0.2-2)^2 = 3.24 -> 1.62.
        let (l, c) = value_loss(&t(&[1.0], 1), &t(&[0.0], 1), &t(&[2.0], 1), 0.2);
        assert!((f(&l.sum(Kind::Float)) - 1.62).abs() < 1e-6);
        assert_eq!(f(&c.sum(Kind::Float)), 1.0);
    }

    #[test]
    fn group_advantages_by_hand() {
        let s = [
            Some(1.0),
            Some(0.0),
            Some(0.0),
            Some(1.0), // group 0: mean 0.5
            Some(1.0),
            Some(1.0),
            Some(1.0),
            Some(1.0), // group 1: all equal
            Some(1.0),
            None,
            Some(0.0),
            Some(0.0),
        ]; // group 2: one absent
           // GRPO with std: group 0 sample std = sqrt(4 * 0.25 / 3) = sqrt(1/3).
        let (a, keep) = group_advantages(AdvantageKind::Grpo, &s, 4, true, true);
        let sd = (1.0f64 / 3.0).sqrt() + 1e-6;
        close(a[0], 0.5 / sd);
        close(a[1], -0.5 / sd);
        assert_eq!(&keep[4..8], &[false; 4]);
        assert_eq!(&keep[8..12], &[true, false, true, true]);
        // group 2: present 1, 0, 0: mean 1/3, std sqrt(((2/3)^2 + 2 (1/3)^2) / 2) = sqrt(1/3).
        close(a[8], (2.0 / 3.0) / sd);
        close(a[9], 0.0);
        // Without filtering, the all-equal group is kept with zero advantage.
        let (a2, keep2) = group_advantages(AdvantageKind::Grpo, &s, 4, false, false);
        assert_eq!(&keep2[4..8], &[true; 4]);
        assert_eq!(&a2[4..8], &[0.0; 4]);
        close(a2[0], 0.5);
        // RLOO: r_i - mean(others): 1 - 1/3 = 2/3, 0 - 2/3 = -2/3.
        let (a, _) = group_advantages(AdvantageKind::Rloo, &s, 4, false, true);
        close(a[0], 2.0 / 3.0);
        close(a[1], -2.0 / 3.0);
        // group 2 (two others present): 1 - 0 = 1, 0 - 0.5 = -0.5.
        close(a[8], 1.0);
        close(a[10], -0.5);
        // REINFORCE++: baseline-subtracted score plus KL-penalty returns, whitened.
        let (a, _) = group_advantages(AdvantageKind::ReinforcePlusPlus, &s[..4], 4, false, true);
        assert_eq!(a, vec![0.5, -0.5, -0.5, 0.5]);
        // Two rows of width 2: row 0 adv 0.5 with KL rewards -0.1, -0.1; row 1 adv -0.5, 1 token.
        let tok =
            reinforce_pp_advantages(&[-0.1, -0.1, -0.1, 0.0], &[0.5, -0.5], &[1., 1., 1., 0.], 2);
        // raw: [0.3, 0.4, -0.6]: mean 1/30; whitened by population std.
        let raw = [0.3, 0.4, -0.6];
        let m = raw.iter().sum::<f64>() / 3.0;
        let sd = (raw.iter().map(|v| (v - m).powi(2)).sum::<f64>() / 3.0).sqrt() + 1e-8;
        close(tok[0], (0.3 - m) / sd);
        close(tok[2], (-0.6 - m) / sd);
        close(tok[3], 0.0);
    }

    #[test]
    fn explained_variance_by_hand() {
        // returns 1, 2, 3 (var 2/3); values 1, 2, 2 (residual 0, 0, 1: var 2/9).
        let ev = explained_variance(
            &[1.0, 2.0, 2.0, 5.0],
            &[1.0, 2.0, 3.0, 0.0],
            &[1., 1., 1., 0.],
        );
        close(ev, 1.0 - (2.0 / 9.0) / (2.0 / 3.0));
    }
}

//! A Llama-family decoder in libtorch: token embedding, `num_hidden_layers` blocks of
//! (RMSNorm, grouped-query attention with rotary position embedding, RMSNorm, SwiGLU),
//! a final RMSNorm, and an output projection that may reuse the embedding.
//!
//! Parameters carry Hugging Face's names (`model.layers.3.self_attn.q_proj.weight`, ...)
//! and layouts (`[out, in]` projections, rotate-half RoPE), so a Hugging Face
//! `model.safetensors` loads as it is. There is no dropout anywhere: the policy, a frozen
//! reference and a value model must compute the same function in training and sampling.

use crate::config::{ConfigError, LlamaConfig};
use crate::safetensors::{self as st, SafetensorsError};
use std::path::Path;
use tch::nn::{self, Init};
use tch::{Device, Kind, Tensor};
use thiserror::Error;

/// What can go wrong building or loading a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// config.json is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The weights file is unusable.
    #[error(transparent)]
    Safetensors(#[from] SafetensorsError),
    /// A tensor is missing or has the wrong shape.
    #[error("{path}: {message}")]
    Weights {
        /// The weights file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// libtorch refused an operation.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The file names a model folder holds.
pub const CONFIG_FILE: &str = "config.json";
/// The weights, in safetensors format.
pub const WEIGHTS_FILE: &str = "model.safetensors";

struct Block {
    input_layernorm: Tensor,
    q_proj: Tensor,
    k_proj: Tensor,
    v_proj: Tensor,
    o_proj: Tensor,
    post_attention_layernorm: Tensor,
    gate_proj: Tensor,
    up_proj: Tensor,
    down_proj: Tensor,
}

/// A Llama-family causal language model.
pub struct Llama {
    cfg: LlamaConfig,
    vs: nn::VarStore,
    embed_tokens: Tensor,
    layers: Vec<Block>,
    norm: Tensor,
    lm_head: Tensor,
    cos: Tensor,
    sin: Tensor,
}

/// Per-layer keys and values of the positions already processed, so that each decoding
/// step runs the model on the new token only. Slots are preallocated for `capacity`
/// positions; [`Llama::forward`] writes the new ones at `len` and advances it.
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    len: i64,
    capacity: i64,
}

impl KvCache {
    /// Positions filled so far.
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Whether nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    /// Keeps only the batch rows listed in `rows` (int64 indices, in the new order).
    pub fn select_rows(&mut self, rows: &Tensor) {
        for t in self.k.iter_mut().chain(self.v.iter_mut()) {
            *t = t.index_select(0, rows);
        }
    }
}

fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Tensor {
    // Normalise in f32 whatever the model's dtype, as Hugging Face does: bf16 squares
    // lose too much.
    let kind = x.kind();
    let xf = x.to_kind(Kind::Float);
    let var = xf.square().mean_dim(-1, true, Kind::Float);
    (xf * (var + eps).rsqrt()).to_kind(kind) * weight
}

fn rotate_half(x: &Tensor) -> Tensor {
    let half = x.size()[x.dim() - 1] / 2;
    let x1 = x.narrow(-1, 0, half);
    let x2 = x.narrow(-1, half, half);
    Tensor::cat(&[x2.neg(), x1], -1)
}

/// The boolean attention mask `[B, 1, T, L]` for `T` new queries after `past` cached
/// positions, where `key_valid` (`[B, L]`, `L = past + T`) marks real tokens (false for
/// left padding). A query sees every real key up to and including its own slot, and
/// always itself, so that a padding row still has one key and softmax stays finite.
pub fn attention_mask(key_valid: &Tensor, past: i64, t: i64) -> Tensor {
    let l = key_valid.size()[1];
    let device = key_valid.device();
    let q_pos = Tensor::arange_start(past, past + t, (Kind::Int64, device)).view([t, 1]);
    let k_pos = Tensor::arange(l, (Kind::Int64, device)).view([1, l]);
    let causal = k_pos.le_tensor(&q_pos); // [T, L]
    let own = k_pos.eq_tensor(&q_pos);
    let valid = key_valid.to_kind(Kind::Bool).view([-1, 1, 1, l]);
    causal.logical_and(&valid).logical_or(&own)
}

/// Position ids for left-padded rows: 0 at each row's first real token, counting real
/// tokens only (padding gets 0 too; its outputs are never used).
pub fn positions_from_valid(valid: &Tensor) -> Tensor {
    let v = valid.to_kind(Kind::Int64);
    (v.cumsum(1, Kind::Int64) - 1).clamp_min(0)
}

impl Llama {
    /// A model with random weights (normal, std 0.02; norms at 1) on `device`, in f32.
    pub fn new(cfg: &LlamaConfig, device: Device) -> Result<Llama, ModelError> {
        cfg.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let m = &root / "model";
        let init = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let (h, i) = (cfg.hidden_size as i64, cfg.intermediate_size as i64);
        let hd = cfg.head_dim() as i64;
        let q_out = cfg.num_attention_heads as i64 * hd;
        let kv_out = cfg.num_key_value_heads as i64 * hd;
        let embed_tokens = (&m / "embed_tokens").var("weight", &[cfg.vocab_size as i64, h], init);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for n in 0..cfg.num_hidden_layers {
            let l = &m / "layers" / n;
            let attn = &l / "self_attn";
            let mlp = &l / "mlp";
            layers.push(Block {
                input_layernorm: (&l / "input_layernorm").var("weight", &[h], Init::Const(1.0)),
                q_proj: (&attn / "q_proj").var("weight", &[q_out, h], init),
                k_proj: (&attn / "k_proj").var("weight", &[kv_out, h], init),
                v_proj: (&attn / "v_proj").var("weight", &[kv_out, h], init),
                o_proj: (&attn / "o_proj").var("weight", &[h, q_out], init),
                post_attention_layernorm: (&l / "post_attention_layernorm").var(
                    "weight",
                    &[h],
                    Init::Const(1.0),
                ),
                gate_proj: (&mlp / "gate_proj").var("weight", &[i, h], init),
                up_proj: (&mlp / "up_proj").var("weight", &[i, h], init),
                down_proj: (&mlp / "down_proj").var("weight", &[h, i], init),
            });
        }
        let norm = (&m / "norm").var("weight", &[h], Init::Const(1.0));
        let lm_head = if cfg.tie_word_embeddings {
            embed_tokens.shallow_clone()
        } else {
            (&root / "lm_head").var("weight", &[cfg.vocab_size as i64, h], init)
        };
        let (cos, sin) = rope_tables(cfg, device);
        Ok(Llama {
            cfg: cfg.clone(),
            vs,
            embed_tokens,
            layers,
            norm,
            lm_head,
            cos,
            sin,
        })
    }

    /// Loads `dir/config.json` and `dir/model.safetensors` onto `device`, converting the
    /// weights to `kind` (f32 for exact scoring; bf16 or f16 on a GPU for speed).
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Llama, ModelError> {
        let cfg = LlamaConfig::load(&dir.join(CONFIG_FILE))?;
        let mut model = Llama::new(&cfg, device)?;
        model.load_weights(&dir.join(WEIGHTS_FILE))?;
        if kind != Kind::Float {
            model.vs.set_kind(kind);
        }
        Ok(model)
    }

    /// Overwrites every parameter from a safetensors file, which must hold each of them
    /// with its exact shape (extra tensors, such as `lm_head.weight` of a tied model, are
    /// ignored). Tensors are read one at a time, so the file is never in memory whole.
    pub fn load_weights(&mut self, path: &Path) -> Result<(), ModelError> {
        let mut file = st::SafetensorsFile::open(path)?;
        let vars = self.vs.variables();
        let mut names: Vec<_> = vars.keys().cloned().collect();
        names.sort();
        for name in names {
            let var = &vars[&name];
            let Some(entry) = file.entry(&name).cloned() else {
                return Err(ModelError::Weights {
                    path: path.display().to_string(),
                    message: format!("missing tensor {name}"),
                });
            };
            if entry.shape != var.size() {
                return Err(ModelError::Weights {
                    path: path.display().to_string(),
                    message: format!(
                        "tensor {name} has shape {:?}, the config needs {:?}",
                        entry.shape,
                        var.size()
                    ),
                });
            }
            let t = file.read(&entry)?;
            tch::no_grad(|| var.shallow_clone().f_copy_(&t))?;
        }
        Ok(())
    }

    /// Writes the parameters to a safetensors file (in the model's current dtype).
    pub fn save_weights(&self, path: &Path) -> Result<(), ModelError> {
        let mut named: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        st::write(path, &named)?;
        Ok(())
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (which must exist).
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        self.cfg.save(&dir.join(CONFIG_FILE))?;
        self.save_weights(&dir.join(WEIGHTS_FILE))
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The parameter store (for optimisers and checkpoints).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// The parameter store, mutably (to freeze a reference copy, change dtype, ...).
    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// The device the weights are on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The dtype of the weights.
    pub fn kind(&self) -> Kind {
        self.embed_tokens.kind()
    }

    /// An empty cache for `batch` rows of up to `capacity` positions.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> KvCache {
        let shape = [
            batch,
            self.cfg.num_key_value_heads as i64,
            capacity,
            self.cfg.head_dim() as i64,
        ];
        let opts = (self.kind(), self.device());
        let n = self.layers.len();
        KvCache {
            k: (0..n).map(|_| Tensor::zeros(shape, opts)).collect(),
            v: (0..n).map(|_| Tensor::zeros(shape, opts)).collect(),
            len: 0,
            capacity,
        }
    }

    /// Runs the decoder over `input_ids` (`[B, T]`, int64) and returns the final hidden
    /// states (`[B, T, hidden]`, after the last norm; a value head reads these).
    ///
    /// `positions` (`[B, T]`) are the rotary positions of the new tokens; `key_valid`
    /// (`[B, past + T]`) marks which keys are real, where `past` is what `cache` already
    /// holds (0 without a cache). With a cache, the new keys and values are stored in it.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        key_valid: &Tensor,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor {
        let (b, t) = input_ids.size2().expect("input_ids must be [batch, time]");
        let past = cache.as_ref().map_or(0, |c| c.len);
        if let Some(c) = cache.as_ref() {
            assert!(
                past + t <= c.capacity,
                "KV cache overflow: {past} + {t} > {}",
                c.capacity
            );
        }
        let mask = attention_mask(key_valid, past, t);
        let kind = self.kind();
        let pos = positions.flatten(0, -1);
        let hd = self.cfg.head_dim() as i64;
        let cos = self
            .cos
            .index_select(0, &pos)
            .view([b, 1, t, hd])
            .to_kind(kind);
        let sin = self
            .sin
            .index_select(0, &pos)
            .view([b, 1, t, hd])
            .to_kind(kind);
        let (nh, nkv) = (
            self.cfg.num_attention_heads as i64,
            self.cfg.num_key_value_heads as i64,
        );
        let eps = self.cfg.rms_norm_eps;
        let mut x = self
            .embed_tokens
            .index_select(0, &input_ids.flatten(0, -1))
            .view([b, t, -1]);
        for (i, layer) in self.layers.iter().enumerate() {
            let h = rms_norm(&x, &layer.input_layernorm, eps);
            let q = h
                .linear::<Tensor>(&layer.q_proj, None)
                .view([b, t, nh, hd])
                .transpose(1, 2);
            let k = h
                .linear::<Tensor>(&layer.k_proj, None)
                .view([b, t, nkv, hd])
                .transpose(1, 2);
            let v = h
                .linear::<Tensor>(&layer.v_proj, None)
                .view([b, t, nkv, hd])
                .transpose(1, 2);
            let q = &q * &cos + rotate_half(&q) * &sin;
            let k = &k * &cos + rotate_half(&k) * &sin;
            let (k, v) = match cache.as_deref_mut() {
                Some(c) => {
                    c.k[i].narrow(2, past, t).copy_(&k);
                    c.v[i].narrow(2, past, t).copy_(&v);
                    (c.k[i].narrow(2, 0, past + t), c.v[i].narrow(2, 0, past + t))
                }
                None => (k, v),
            };
            let y = Tensor::scaled_dot_product_attention(
                &q,
                &k,
                &v,
                Some(&mask),
                0.0,
                false,
                None,
                nkv != nh,
            );
            let y = y.transpose(1, 2).contiguous().view([b, t, nh * hd]);
            // Residual adds make new tensors: an in-place add would overwrite the input
            // autograd saved for the norm's backward pass.
            x = &x + y.linear::<Tensor>(&layer.o_proj, None);
            let h = rms_norm(&x, &layer.post_attention_layernorm, eps);
            let gate = h.linear::<Tensor>(&layer.gate_proj, None).silu();
            let up = h.linear::<Tensor>(&layer.up_proj, None);
            x = &x + (gate * up).linear::<Tensor>(&layer.down_proj, None);
        }
        if let Some(c) = cache {
            c.len += t;
        }
        rms_norm(&x, &self.norm, eps)
    }

    /// Next-token logits (`[..., vocab]`, f32) from hidden states.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        hidden
            .linear::<Tensor>(&self.lm_head, None)
            .to_kind(Kind::Float)
    }

    /// Log-probabilities (`[B, T-1]`, f32) of tokens `1..T` of each row given the tokens
    /// before them, with logits divided by `temperature` first (PPO must score a sample
    /// at the temperature it was drawn at). `valid` (`[B, T]`) marks real tokens; rows may
    /// be left- or right-padded. Entries whose target is padding are 0.
    pub fn token_logprobs(&self, input_ids: &Tensor, valid: &Tensor, temperature: f64) -> Tensor {
        let positions = positions_from_valid(valid);
        let hidden = self.forward(input_ids, &positions, valid, None);
        let t = input_ids.size()[1];
        let logits = self.logits(&hidden.narrow(1, 0, t - 1)) / temperature;
        let targets = input_ids.narrow(1, 1, t - 1).unsqueeze(-1);
        let lp = logits
            .log_softmax(-1, Kind::Float)
            .gather(-1, &targets, false)
            .squeeze_dim(-1);
        lp * valid.narrow(1, 1, t - 1).to_kind(Kind::Float)
    }
}

fn rope_tables(cfg: &LlamaConfig, device: Device) -> (Tensor, Tensor) {
    let hd = cfg.head_dim();
    let half = hd / 2;
    let n = cfg.max_position_embeddings;
    let mut cos = Vec::with_capacity(n * hd);
    let mut sin = Vec::with_capacity(n * hd);
    // In f64, then rounded once: the f32 product position * frequency drifts at large
    // positions.
    let inv_freq: Vec<f64> = (0..half)
        .map(|i| cfg.rope_theta.powf(-(2.0 * i as f64) / hd as f64))
        .collect();
    for p in 0..n {
        for _ in 0..2 {
            for f in &inv_freq {
                let a = p as f64 * f;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
    }
    let shape = [n as i64, hd as i64];
    (
        Tensor::from_slice(&cos).view(shape).to_device(device),
        Tensor::from_slice(&sin).view(shape).to_device(device),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Llama {
        tch::manual_seed(7);
        Llama::new(&LlamaConfig::tiny(50), Device::Cpu).unwrap()
    }

    fn ids(rows: &[&[i64]]) -> Tensor {
        Tensor::from_slice2(rows)
    }

    fn full_logits(m: &Llama, x: &Tensor) -> Tensor {
        let valid = x.ones_like().to_kind(Kind::Bool);
        let pos = positions_from_valid(&valid);
        m.logits(&m.forward(x, &pos, &valid, None))
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn forward_has_the_right_shape_and_is_finite() {
        let m = tiny();
        let logits = full_logits(&m, &ids(&[&[1, 5, 9, 3], &[1, 7, 7, 7]]));
        assert_eq!(logits.size(), [2, 4, 50]);
        assert!(bool::try_from(logits.isfinite().all()).unwrap());
        // Random weights with std 0.02 give near-uniform predictions.
        let lp = logits.log_softmax(-1, Kind::Float);
        let mean_nll = -lp.mean(Kind::Float).double_value(&[]);
        assert!((mean_nll - 50f64.ln()).abs() < 0.5, "{mean_nll}");
    }

    #[test]
    fn later_tokens_do_not_change_earlier_logits() {
        let m = tiny();
        let a = full_logits(&m, &ids(&[&[1, 5, 9, 3, 4]]));
        let b = full_logits(&m, &ids(&[&[1, 5, 9, 30, 40]]));
        assert!(max_diff(&a.narrow(1, 0, 3), &b.narrow(1, 0, 3)) < 1e-6);
        assert!(max_diff(&a.narrow(1, 3, 2), &b.narrow(1, 3, 2)) > 1e-4);
    }

    #[test]
    fn cached_decoding_matches_the_full_forward() {
        let m = tiny();
        let seq = [1i64, 5, 9, 3, 4, 11, 2];
        let full = full_logits(&m, &ids(&[&seq]));
        let mut cache = m.new_cache(1, 16);
        let all_valid = Tensor::ones([1, 16], (Kind::Bool, Device::Cpu));
        // Prefill three tokens, then one at a time.
        let h = m.forward(
            &ids(&[&seq[..3]]),
            &ids(&[&[0, 1, 2]]),
            &all_valid.narrow(1, 0, 3),
            Some(&mut cache),
        );
        assert!(max_diff(&m.logits(&h), &full.narrow(1, 0, 3)) < 1e-5);
        for (p, &tok) in seq.iter().enumerate().skip(3) {
            let h = m.forward(
                &ids(&[&[tok]]),
                &ids(&[&[p as i64]]),
                &all_valid.narrow(1, 0, p as i64 + 1),
                Some(&mut cache),
            );
            let d = max_diff(&m.logits(&h), &full.narrow(1, p as i64, 1));
            assert!(d < 1e-5, "position {p}: {d}");
        }
        assert_eq!(cache.len(), 7);
    }

    #[test]
    fn left_padding_does_not_change_a_row() {
        let m = tiny();
        let alone = full_logits(&m, &ids(&[&[1, 5, 9]]));
        let batch = ids(&[&[0, 0, 1, 5, 9], &[1, 2, 3, 4, 5]]);
        let valid = Tensor::from_slice2(&[[false, false, true, true, true], [true; 5]]);
        let pos = positions_from_valid(&valid);
        assert_eq!(Vec::<i64>::try_from(pos.get(0)).unwrap(), [0, 0, 0, 1, 2]);
        let logits = m.logits(&m.forward(&batch, &pos, &valid, None));
        assert!(bool::try_from(logits.isfinite().all()).unwrap());
        let d = max_diff(&logits.get(0).narrow(0, 2, 3), &alone.get(0));
        assert!(d < 1e-5, "{d}");
    }

    #[test]
    fn token_logprobs_match_log_softmax_and_scale_with_temperature() {
        let m = tiny();
        let x = ids(&[&[1, 5, 9, 3]]);
        let valid = x.ones_like().to_kind(Kind::Bool);
        let lp = m.token_logprobs(&x, &valid, 1.0);
        let logits = full_logits(&m, &x).log_softmax(-1, Kind::Float);
        let want = logits.get(0).get(1).get(9).double_value(&[]);
        assert!((lp.get(0).get(1).double_value(&[]) - want).abs() < 1e-5);
        let hot = m.token_logprobs(&x, &valid, 2.0);
        assert!(max_diff(&lp, &hot) > 1e-6);
    }

    #[test]
    fn gradients_reach_every_parameter() {
        // The PPO learner backpropagates through token_logprobs.
        let m = tiny();
        let x = ids(&[&[0, 1, 5, 9, 3], &[1, 2, 3, 4, 5]]);
        let valid = Tensor::from_slice2(&[[false, true, true, true, true], [true; 5]]);
        let loss = -m.token_logprobs(&x, &valid, 0.7).sum(Kind::Float);
        loss.backward();
        for (name, v) in m.vs.variables() {
            let g = v.grad();
            assert!(g.defined(), "{name}: no gradient");
            let norm = g.norm().double_value(&[]);
            assert!(
                norm.is_finite() && norm > 0.0,
                "{name}: gradient norm {norm}"
            );
        }
    }

    #[test]
    fn grouped_query_attention_matches_explicit_head_repetition() {
        // Compute layer 0's attention by hand with each key/value head repeated for its
        // query group, and compare with SDPA's GQA path through the hidden states.
        let m = tiny();
        let x = ids(&[&[1, 5, 9, 3]]);
        let valid = x.ones_like().to_kind(Kind::Bool);
        let pos = positions_from_valid(&valid);
        // The same weights as `m`, copied rather than drawn again: tests run in parallel
        // and share libtorch's global generator, so a second seeded draw may differ.
        let mut one_layer = tiny();
        one_layer.var_store_mut().copy(m.var_store()).unwrap();
        one_layer.layers.truncate(1);
        let got = one_layer.forward(&x, &pos, &valid, None);

        let l = &m.layers[0];
        let (b, t, nh, nkv, hd) = (1, 4, 4, 2, 8);
        let e = m
            .embed_tokens
            .index_select(0, &x.flatten(0, -1))
            .view([b, t, -1]);
        let h = rms_norm(&e, &l.input_layernorm, 1e-5);
        let cos = m.cos.narrow(0, 0, t).view([1, 1, t, hd]);
        let sin = m.sin.narrow(0, 0, t).view([1, 1, t, hd]);
        let q = h
            .linear::<Tensor>(&l.q_proj, None)
            .view([b, t, nh, hd])
            .transpose(1, 2);
        let k = h
            .linear::<Tensor>(&l.k_proj, None)
            .view([b, t, nkv, hd])
            .transpose(1, 2);
        let v = h
            .linear::<Tensor>(&l.v_proj, None)
            .view([b, t, nkv, hd])
            .transpose(1, 2);
        let q = &q * &cos + rotate_half(&q) * &sin;
        let k = (&k * &cos + rotate_half(&k) * &sin).repeat_interleave_self_int(2, 1, None);
        let v = v.repeat_interleave_self_int(2, 1, None);
        let scores = q.matmul(&k.transpose(-1, -2)) / (hd as f64).sqrt();
        let causal = Tensor::ones([t, t], (Kind::Bool, Device::Cpu)).tril(0);
        let att = scores
            .masked_fill(&causal.logical_not(), f64::NEG_INFINITY)
            .softmax(-1, Kind::Float);
        let y = att
            .matmul(&v)
            .transpose(1, 2)
            .contiguous()
            .view([b, t, nh * hd]);
        let mut xr = e + y.linear::<Tensor>(&l.o_proj, None);
        let h2 = rms_norm(&xr, &l.post_attention_layernorm, 1e-5);
        xr = &xr
            + (h2.linear::<Tensor>(&l.gate_proj, None).silu()
                * h2.linear::<Tensor>(&l.up_proj, None))
            .linear::<Tensor>(&l.down_proj, None);
        let want = rms_norm(&xr, &m.norm, 1e-5);
        assert!(max_diff(&got, &want) < 1e-5);
    }

    #[test]
    fn save_and_load_round_trip() {
        let m = tiny();
        let dir = tempfile::tempdir().unwrap();
        m.save(dir.path()).unwrap();
        let back = Llama::load(dir.path(), Device::Cpu, Kind::Float).unwrap();
        let x = ids(&[&[1, 5, 9, 3]]);
        assert_eq!(max_diff(&full_logits(&m, &x), &full_logits(&back, &x)), 0.0);

        // A config whose shapes differ from the weights is refused by name.
        let mut cfg = LlamaConfig::tiny(50);
        cfg.intermediate_size = 48;
        cfg.save(&dir.path().join(CONFIG_FILE)).unwrap();
        let err = Llama::load(dir.path(), Device::Cpu, Kind::Float)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("the config needs [32, 48]"),
            "{err}"
        );
    }

    #[test]
    fn tied_embeddings_share_one_tensor() {
        let mut cfg = LlamaConfig::tiny(50);
        cfg.tie_word_embeddings = true;
        let m = Llama::new(&cfg, Device::Cpu).unwrap();
        assert!(m.vs.variables().keys().all(|k| !k.starts_with("lm_head")));
        assert_eq!(m.lm_head.data_ptr(), m.embed_tokens.data_ptr());
        let untied = tiny();
        assert!(untied.vs.variables().contains_key("lm_head.weight"));
    }
}

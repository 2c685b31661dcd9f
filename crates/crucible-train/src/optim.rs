//! AdamW over a named list of parameters, with global-norm gradient clipping and a state
//! that can be written to and read from safetensors (tch's own optimiser cannot export
//! its moments, and a resumed run must continue with them).

use crate::safetensors::{self as st, SafetensorsError};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};
use thiserror::Error;

/// What can go wrong saving or loading optimiser state.
#[derive(Debug, Error)]
pub enum OptimError {
    /// The file could not be written or read.
    #[error(transparent)]
    Safetensors(#[from] SafetensorsError),
    /// The file does not match the parameters.
    #[error("optimizer state: {0}")]
    Mismatch(String),
}

/// Adam with decoupled weight decay.
pub struct AdamW {
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Updates taken so far (for bias correction).
    pub step: u64,
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay (applied to matrices only, not norms or biases).
    pub weight_decay: f64,
}

impl AdamW {
    /// An optimiser over `params` (tensors that require gradients).
    pub fn new(params: Vec<(String, Tensor)>, lr: f64, weight_decay: f64) -> AdamW {
        let m = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let v = params.iter().map(|(_, p)| p.zeros_like()).collect();
        AdamW {
            params,
            m,
            v,
            step: 0,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// Scales gradients so that their global L2 norm is at most `max_norm` (when
    /// positive); returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let total = tch::no_grad(|| {
            let mut sq = 0.0;
            for (_, p) in &self.params {
                let g = p.grad();
                if g.defined() {
                    sq += g.square().sum(Kind::Double).double_value(&[]);
                }
            }
            sq.sqrt()
        });
        if max_norm > 0.0 && total > max_norm {
            let scale = max_norm / (total + 1e-6);
            tch::no_grad(|| {
                for (_, p) in &self.params {
                    let mut g = p.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(scale);
                    }
                }
            });
        }
        total
    }

    /// One update from the current gradients.
    pub fn step(&mut self) {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let m = &mut self.m[i];
                let v = &mut self.v[i];
                let _ = m.g_mul_scalar_(self.beta1);
                let _ = m.g_add_(&(&g * (1.0 - self.beta1)));
                let _ = v.g_mul_scalar_(self.beta2);
                let _ = v.g_add_(&(g.square() * (1.0 - self.beta2)));
                let mut p = p.shallow_clone();
                if self.weight_decay > 0.0 && p.dim() >= 2 {
                    let _ = p.g_mul_scalar_(1.0 - self.lr * self.weight_decay);
                }
                let denom = (&*v / bc2).sqrt() + self.eps;
                let upd = (&*m / bc1) / denom * self.lr;
                let _ = p.g_sub_(&upd);
            }
        });
    }

    /// Writes the moments and step count to `path`.
    pub fn save(&self, path: &Path) -> Result<(), OptimError> {
        let mut named = Vec::with_capacity(2 * self.params.len() + 1);
        for (i, (name, _)) in self.params.iter().enumerate() {
            named.push((format!("m.{name}"), self.m[i].shallow_clone()));
            named.push((format!("v.{name}"), self.v[i].shallow_clone()));
        }
        named.push(("step".to_owned(), Tensor::from_slice(&[self.step as i64])));
        st::write(path, &named)?;
        Ok(())
    }

    /// Reads moments and step count written by [`AdamW::save`] for the same parameters.
    pub fn load(&mut self, path: &Path) -> Result<(), OptimError> {
        let mut file = st::SafetensorsFile::open(path)?;
        let mut read: BTreeMap<String, Tensor> = BTreeMap::new();
        let entries: Vec<_> = file.entries().cloned().collect();
        for e in entries {
            let t = file.read(&e)?;
            read.insert(e.name.clone(), t);
        }
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (prefix, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("{prefix}.{name}");
                let t = read
                    .get(&key)
                    .ok_or_else(|| OptimError::Mismatch(format!("missing {key}")))?;
                if t.size() != p.size() {
                    return Err(OptimError::Mismatch(format!(
                        "{key} has shape {:?}, parameter {:?}",
                        t.size(),
                        p.size()
                    )));
                }
                *slot = t.to_kind(p.kind()).to_device(p.device());
            }
        }
        let step = read
            .get("step")
            .ok_or_else(|| OptimError::Mismatch("missing step".into()))?;
        self.step = step.int64_value(&[0]).max(0) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adamw_first_step_moves_by_lr_and_state_round_trips() {
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("p".into(), p.shallow_clone())], 0.1, 0.0);
        let loss = (&p * Tensor::from_slice(&[3.0f32, -0.5])).sum(Kind::Float);
        loss.backward();
        // Gradient (3, -0.5), norm sqrt(9.25); clipping to 1 scales it.
        let n = opt.clip_grad_norm(1.0);
        assert!((n - 9.25f64.sqrt()).abs() < 1e-5);
        opt.step();
        // Adam's first step is lr * sign(g) whatever the scale.
        let v = Vec::<f32>::try_from(&p.detach()).unwrap();
        assert!(
            (v[0] - 0.9).abs() < 1e-5 && (v[1] + 1.9).abs() < 1e-5,
            "{v:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.safetensors");
        opt.save(&path).unwrap();
        let q = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        let mut o2 = AdamW::new(vec![("p".into(), q)], 0.1, 0.0);
        o2.load(&path).unwrap();
        assert_eq!(o2.step, 1);
        assert_eq!(
            Vec::<f32>::try_from(&o2.m[0]).unwrap(),
            Vec::<f32>::try_from(&opt.m[0]).unwrap()
        );
    }
}

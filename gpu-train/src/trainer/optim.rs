//! AdamW (Loshchilov & Hutter; `torch.optim.AdamW`'s update) over the
//! trainable `VarStore` only, with global gradient-norm clipping. Written out
//! rather than taken from `tch::nn::Optimizer` because libtorch's optimizer
//! state cannot be read back through tch, and an exact `--resume` needs the
//! moments: here they are plain tensors saved with every checkpoint.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use tch::{Kind, Tensor};

/// AdamW hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    /// beta1.
    pub beta1: f64,
    /// beta2.
    pub beta2: f64,
    /// epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

/// AdamW state: first and second moments per variable, and the step count.
pub struct AdamW {
    cfg: AdamWConfig,
    params: BTreeMap<String, Tensor>,
    exp_avg: BTreeMap<String, Tensor>,
    exp_avg_sq: BTreeMap<String, Tensor>,
    step: u64,
}

impl AdamW {
    /// An optimiser over `params` (name -> trainable tensor), moments at zero.
    pub fn new(params: BTreeMap<String, Tensor>, cfg: AdamWConfig) -> Self {
        let zeros = |p: &Tensor| tch::no_grad(|| p.zeros_like().to_kind(Kind::Float));
        let exp_avg = params.iter().map(|(k, p)| (k.clone(), zeros(p))).collect();
        let exp_avg_sq = params.iter().map(|(k, p)| (k.clone(), zeros(p))).collect();
        AdamW {
            cfg,
            params,
            exp_avg,
            exp_avg_sq,
            step: 0,
        }
    }

    /// Optimiser steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Zeroes every gradient.
    pub fn zero_grad(&mut self) {
        for p in self.params.values_mut() {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// Scales gradients so their global L2 norm is at most `max_norm`; returns the norm before.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        tch::no_grad(|| {
            let sq: f64 = self
                .params
                .values()
                .map(|p| p.grad())
                .filter(Tensor::defined)
                .map(|g| {
                    g.to_kind(Kind::Double)
                        .square()
                        .sum(Kind::Double)
                        .double_value(&[])
                })
                .sum();
            let norm = sq.sqrt();
            if norm > max_norm {
                let scale = max_norm / (norm + 1e-6);
                for p in self.params.values() {
                    let mut g = p.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(scale);
                    }
                }
            }
            norm
        })
    }

    /// One AdamW step at learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(self.step as i32);
        let bc2 = 1.0 - b2.powi(self.step as i32);
        tch::no_grad(|| {
            for (name, p) in self.params.iter_mut() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = g.to_kind(Kind::Float);
                let (Some(m), Some(v)) =
                    (self.exp_avg.get_mut(name), self.exp_avg_sq.get_mut(name))
                else {
                    continue;
                };
                let _ = m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                let _ = v.g_mul_scalar_(b2).g_add_(&(g.square() * (1.0 - b2)));
                let denom = (&*v / bc2).sqrt() + self.cfg.eps;
                let update = (&*m / bc1) / denom * lr;
                let decayed = p.to_kind(Kind::Float) * (1.0 - lr * self.cfg.weight_decay) - update;
                p.copy_(&decayed.to_kind(p.kind()));
            }
        });
    }

    /// Moments and step count as named tensors (for a checkpoint).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("step".to_string(), Tensor::from_slice(&[self.step as f32]))];
        for (k, t) in &self.exp_avg {
            out.push((format!("exp_avg.{k}"), t.shallow_clone()));
        }
        for (k, t) in &self.exp_avg_sq {
            out.push((format!("exp_avg_sq.{k}"), t.shallow_clone()));
        }
        out
    }

    /// Restores [`AdamW::state`]; every moment must be present with the right shape.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        let by_name: BTreeMap<&str, &Tensor> =
            tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
        let step = by_name
            .get("step")
            .context("optimizer state has no `step`")?;
        self.step = step.double_value(&[0]) as u64;
        for (prefix, map) in [
            ("exp_avg", &mut self.exp_avg),
            ("exp_avg_sq", &mut self.exp_avg_sq),
        ] {
            for (name, t) in map.iter_mut() {
                let key = format!("{prefix}.{name}");
                let saved = by_name
                    .get(key.as_str())
                    .with_context(|| format!("optimizer state has no {key}"))?;
                if saved.size() != t.size() {
                    bail!(
                        "{key}: expected shape {:?}, found {:?}",
                        t.size(),
                        saved.size()
                    );
                }
                tch::no_grad(|| t.copy_(&saved.to_device(t.device()).to_kind(t.kind())));
            }
        }
        Ok(())
    }
}

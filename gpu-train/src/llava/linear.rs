//! `nn.Linear` with HF weight names (`weight` [out, in], optional `bias`),
//! built from a checkpoint by [`WeightBuilder`].

use anyhow::Result;
use tch::Tensor;

use super::weights::{InitHint, WeightBuilder};

/// A dense layer `y = x W^T + b`.
#[derive(Debug)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`, when the layer has one.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Loads `{prefix}.weight` (and `{prefix}.bias` when `bias`).
    pub fn new(vb: &WeightBuilder, in_dim: i64, out_dim: i64, bias: bool) -> Result<Self> {
        let weight = vb.get("weight", &[out_dim, in_dim], InitHint::Normal)?;
        let bias = if bias {
            Some(vb.get("bias", &[out_dim], InitHint::Zeros)?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// Applies the layer to the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

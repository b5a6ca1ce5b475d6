//! Scalar value head for PPO (as TRL's `ValueHead`: one linear layer on the
//! final hidden states), kept in f32 in the trainable `VarStore`.

use anyhow::Result;
use tch::nn::{Init, Path as VsPath};
use tch::{Kind, Tensor};

/// `v_head.summary`: hidden -> 1.
pub struct ValueHead {
    weight: Tensor,
    bias: Tensor,
}

impl ValueHead {
    /// Creates the head under `path` (`value_head.summary.{weight,bias}`).
    pub fn new(path: &VsPath, hidden: i64) -> Result<Self> {
        let p = path / "value_head" / "summary";
        let std = 1.0 / (hidden as f64).sqrt();
        Ok(ValueHead {
            weight: p.f_var(
                "weight",
                &[1, hidden],
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.1 * std,
                },
            )?,
            bias: p.f_var("bias", &[1], Init::Const(0.0))?,
        })
    }

    /// Values `[b, s]` of hidden states `[b, s, hidden]`.
    pub fn forward(&self, hidden: &Tensor) -> Tensor {
        hidden
            .to_kind(Kind::Float)
            .linear(&self.weight, Some(&self.bias))
            .squeeze_dim(-1)
    }
}

//! `LlavaMultiModalProjector` (`transformers/models/llava/modeling_llava.py`):
//! `linear_2(gelu(linear_1(features)))`, vision width to text width.

use anyhow::Result;
use tch::Tensor;

use super::linear::Linear;
use super::weights::WeightBuilder;

/// The two-layer GELU projector.
pub struct MultiModalProjector {
    linear_1: Linear,
    linear_2: Linear,
}

impl MultiModalProjector {
    /// Loads `linear_1` and `linear_2` below `vb` (`multi_modal_projector`).
    pub fn new(vb: &WeightBuilder, vision_dim: i64, text_dim: i64, bias: bool) -> Result<Self> {
        Ok(MultiModalProjector {
            linear_1: Linear::new(&vb.pp("linear_1"), vision_dim, text_dim, bias)?,
            linear_2: Linear::new(&vb.pp("linear_2"), text_dim, text_dim, bias)?,
        })
    }

    /// Projects `[n, patches, vision_dim]` to `[n, patches, text_dim]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        // ACT2FN["gelu"] is the exact (erf) GELU.
        self.linear_2
            .forward(&self.linear_1.forward(x).gelu("none"))
    }
}

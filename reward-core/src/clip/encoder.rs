//! The pre-norm transformer encoder shared by both CLIP towers.
//!
//! Mirrors `CLIPEncoderLayer`, `CLIPMLP` and `CLIPEncoder` in
//! `transformers/models/clip/modeling_clip.py`:
//! `x = x + self_attn(layer_norm1(x)); x = x + mlp(layer_norm2(x))`,
//! `mlp = fc2(act(fc1(x)))`. Residual adds are fused into the GEMMs, the
//! `fc1` bias and activation into one pass, and the activation buffers are
//! reused across layers.

use alloc::vec::Vec;
use core::ops::Range;

use super::attention::Attention;
use super::config::Activation;
use super::error::ClipError;
use super::ops::{LayerNorm, Linear};
use super::weights::VarBuilder;

/// The shape of one tower's encoder.
pub(crate) struct EncoderShape {
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub act: Activation,
    pub eps: f64,
}

/// `mlp` of one encoder layer.
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl Mlp {
    fn new(vb: &VarBuilder<'_, '_>, shape: &EncoderShape) -> Result<Self, ClipError> {
        Ok(Self {
            fc1: Linear::new(&vb.pp("fc1"), shape.hidden, shape.intermediate, true)?,
            fc2: Linear::new(&vb.pp("fc2"), shape.intermediate, shape.hidden, true)?,
            act: shape.act,
        })
    }

    /// `residual += fc2(act(fc1(x)))`, with `h` the reused `fc1` output buffer.
    fn forward_add(&self, x: &[f32], rows: usize, residual: &mut [f32], h: &mut Vec<f32>) {
        self.fc1.forward_into(x, rows, h, Some(self.act));
        self.fc2.forward_add(h, rows, residual);
    }
}

/// The activation buffers of one forward pass, reused by every layer: the
/// big intermediates are allocated (and page-faulted) once per call rather
/// than once per layer and op.
#[derive(Default)]
struct Scratch {
    normed: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    mlp: Vec<f32>,
}

/// `encoder.layers.{i}`.
struct EncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: Attention,
    layer_norm2: LayerNorm,
    mlp: Mlp,
}

impl EncoderLayer {
    fn new(vb: &VarBuilder<'_, '_>, shape: &EncoderShape) -> Result<Self, ClipError> {
        Ok(Self {
            layer_norm1: LayerNorm::new(&vb.pp("layer_norm1"), shape.hidden, shape.eps)?,
            self_attn: Attention::new(&vb.pp("self_attn"), shape.hidden, shape.heads)?,
            layer_norm2: LayerNorm::new(&vb.pp("layer_norm2"), shape.hidden, shape.eps)?,
            mlp: Mlp::new(&vb.pp("mlp"), shape)?,
        })
    }

    fn forward(&self, x: &mut [f32], seqs: &[Range<usize>], causal: bool, buf: &mut Scratch) {
        let rows = seqs.last().map_or(0, |s| s.end);
        self.layer_norm1.forward_into(x, &mut buf.normed);
        let (qkv, ctx) = (&mut buf.qkv, &mut buf.ctx);
        self.self_attn
            .forward_add(&buf.normed, seqs, causal, x, qkv, ctx);
        self.layer_norm2.forward_into(x, &mut buf.normed);
        self.mlp.forward_add(&buf.normed, rows, x, &mut buf.mlp);
    }
}

/// `encoder`: the stack of layers.
pub(crate) struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    /// Loads `layers.0 ..` under `vb` (`..._model.encoder`).
    pub(crate) fn new(vb: &VarBuilder<'_, '_>, shape: &EncoderShape) -> Result<Self, ClipError> {
        let vb = vb.pp("layers");
        let layers = (0..shape.layers)
            .map(|i| EncoderLayer::new(&vb.pp(i), shape))
            .collect::<Result<_, _>>()?;
        Ok(Self { layers })
    }

    /// Runs every layer in place on `x` (`[rows, hidden]`), where `seqs`
    /// are the consecutive row ranges of independent sequences.
    pub(crate) fn forward(&self, x: &mut [f32], seqs: &[Range<usize>], causal: bool) {
        let mut buf = Scratch::default();
        for layer in &self.layers {
            layer.forward(x, seqs, causal, &mut buf);
        }
    }
}

//! CLIP's image tower up to the pooled output (before `visual_projection`).
//!
//! Mirrors `CLIPVisionEmbeddings` and `CLIPVisionTransformer` in
//! `transformers/models/clip/modeling_clip.py`: a bias-free patch
//! convolution (stride = kernel = `patch_size`, done as im2col + GEMM),
//! the class token, position embeddings, `pre_layrnorm` (HF's spelling),
//! the encoder, and `post_layernorm` of the class token.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use super::config::VisionConfig;
use super::encoder::{Encoder, EncoderShape};
use super::error::ClipError;
use super::ops::{LayerNorm, Linear};
use super::weights::VarBuilder;

/// `vision_model`.
pub(crate) struct VisionTransformer {
    class_embedding: Vec<f32>,
    /// The convolution `[hidden, channels, p, p]` seen as a bias-free linear layer.
    patch_embedding: Linear,
    position_embedding: Vec<f32>,
    pre_layrnorm: LayerNorm,
    encoder: Encoder,
    post_layernorm: LayerNorm,
    cfg: VisionConfig,
}

impl VisionTransformer {
    /// Loads `vision_model.*` under `vb`.
    pub(crate) fn new(vb: &VarBuilder<'_, '_>, cfg: &VisionConfig) -> Result<Self, ClipError> {
        let emb = vb.pp("embeddings");
        let (hidden, p, c) = (cfg.hidden_size, cfg.patch_size, cfg.num_channels);
        let conv = emb
            .pp("patch_embedding")
            .get("weight", &[hidden, c, p, p])?;
        let shape = EncoderShape {
            hidden,
            intermediate: cfg.intermediate_size,
            layers: cfg.num_hidden_layers,
            heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
            eps: cfg.layer_norm_eps,
        };
        Ok(Self {
            class_embedding: emb.get("class_embedding", &[hidden])?,
            patch_embedding: Linear::from_parts(conv, None, c * p * p, hidden),
            position_embedding: emb
                .pp("position_embedding")
                .get("weight", &[cfg.num_positions(), hidden])?,
            pre_layrnorm: LayerNorm::new(&vb.pp("pre_layrnorm"), hidden, cfg.layer_norm_eps)?,
            encoder: Encoder::new(&vb.pp("encoder"), &shape)?,
            post_layernorm: LayerNorm::new(&vb.pp("post_layernorm"), hidden, cfg.layer_norm_eps)?,
            cfg: cfg.clone(),
        })
    }

    /// Pooled outputs `[n, hidden]` for `n` images `[channels, size, size]`
    /// stacked in `pixels` (length checked by the caller).
    pub(crate) fn forward(&self, pixels: &[f32], n: usize) -> Vec<f32> {
        let (hidden, tokens) = (self.cfg.hidden_size, self.cfg.num_positions());
        let mut x = self.embed(pixels, n);
        x = self.pre_layrnorm.forward(&x);
        let seqs: Vec<Range<usize>> = (0..n).map(|i| i * tokens..(i + 1) * tokens).collect();
        self.encoder.forward(&mut x, &seqs, false);
        let mut pooled = vec![0.0; n * hidden];
        for (i, out) in pooled.chunks_exact_mut(hidden).enumerate() {
            out.copy_from_slice(&x[i * tokens * hidden..][..hidden]);
            self.post_layernorm.norm_row(out);
        }
        pooled
    }

    /// Class token + patch embeddings, plus position embeddings: `[n * tokens, hidden]`.
    fn embed(&self, pixels: &[f32], n: usize) -> Vec<f32> {
        let (hidden, tokens) = (self.cfg.hidden_size, self.cfg.num_positions());
        let patches = self.im2col(pixels, n);
        let projected = self.patch_embedding.forward(&patches, n * (tokens - 1));
        let mut x = vec![0.0; n * tokens * hidden];
        for (i, image) in x.chunks_exact_mut(tokens * hidden).enumerate() {
            image[..hidden].copy_from_slice(&self.class_embedding);
            image[hidden..]
                .copy_from_slice(&projected[i * (tokens - 1) * hidden..][..(tokens - 1) * hidden]);
            image
                .iter_mut()
                .zip(&self.position_embedding)
                .for_each(|(v, p)| *v += p);
        }
        x
    }

    /// Patches as rows `[n * grid * grid, channels * p * p]` in the
    /// (channel, row, column) order of the convolution weight; the row-major
    /// patch order is `flatten(2)` of the conv output.
    fn im2col(&self, pixels: &[f32], n: usize) -> Vec<f32> {
        let (c, p, size) = (
            self.cfg.num_channels,
            self.cfg.patch_size,
            self.cfg.image_size,
        );
        let grid = self.cfg.patches_per_side();
        let mut out = Vec::with_capacity(n * grid * grid * c * p * p);
        for image in pixels.chunks_exact(c * size * size).take(n) {
            for (gy, gx) in (0..grid).flat_map(|gy| (0..grid).map(move |gx| (gy, gx))) {
                for ch in 0..c {
                    for ky in 0..p {
                        let start = ch * size * size + (gy * p + ky) * size + gx * p;
                        out.extend_from_slice(&image[start..start + p]);
                    }
                }
            }
        }
        out
    }
}

//! Multi-head self-attention of the CLIP encoders.
//!
//! Mirrors `CLIPAttention` in `transformers/models/clip/modeling_clip.py`:
//! `q_proj`, `k_proj`, `v_proj`, `out_proj` (all with bias), scores
//! `q @ k^T * head_dim^-0.5`, a causal mask in the text tower, softmax,
//! `@ v`, heads concatenated, `out_proj`. The three input projections run as
//! one GEMM; each (sequence, head) pair is an independent task.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use super::error::ClipError;
use super::ops::{Linear, MatRef, matmul, softmax_row};
use super::weights::VarBuilder;

/// `self_attn` of one encoder layer.
pub(crate) struct Attention {
    /// `q_proj`, `k_proj`, `v_proj` stacked: output `[q | k | v]`.
    qkv: Linear,
    out_proj: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// Loads the four projections of width `hidden` under `vb` (`...self_attn`).
    pub(crate) fn new(
        vb: &VarBuilder<'_, '_>,
        hidden: usize,
        num_heads: usize,
    ) -> Result<Self, ClipError> {
        let q = Linear::new(&vb.pp("q_proj"), hidden, hidden, true)?;
        let k = Linear::new(&vb.pp("k_proj"), hidden, hidden, true)?;
        let v = Linear::new(&vb.pp("v_proj"), hidden, hidden, true)?;
        let out_proj = Linear::new(&vb.pp("out_proj"), hidden, hidden, true)?;
        Ok(Self {
            qkv: Linear::concat(vec![q, k, v]),
            out_proj,
            num_heads,
            head_dim: hidden / num_heads,
        })
    }

    /// `residual += attention(x)` for the sequences `seqs` (row ranges of `x`).
    pub(crate) fn forward_add(
        &self,
        x: &[f32],
        seqs: &[Range<usize>],
        causal: bool,
        residual: &mut [f32],
    ) {
        let rows = seqs.last().map_or(0, |s| s.end);
        let qkv = self.qkv.forward(x, rows);
        let ctx = self.context(&qkv, seqs, causal);
        self.out_proj.forward_add(&ctx, rows, residual);
    }

    /// The per-head attention outputs, concatenated: `[rows, hidden]`.
    fn context(&self, qkv: &[f32], seqs: &[Range<usize>], causal: bool) -> Vec<f32> {
        let hidden = self.num_heads * self.head_dim;
        let rows = seqs.last().map_or(0, |s| s.end);
        let tasks: Vec<(usize, usize)> = (0..seqs.len())
            .flat_map(|s| (0..self.num_heads).map(move |h| (s, h)))
            .collect();
        let run = |&(s, h): &(usize, usize)| self.head(qkv, seqs[s].clone(), h, causal);
        #[cfg(feature = "parallel")]
        let outputs: Vec<Vec<f32>> = {
            use rayon::prelude::*;
            tasks.par_iter().map(run).collect()
        };
        #[cfg(not(feature = "parallel"))]
        let outputs: Vec<Vec<f32>> = tasks.iter().map(run).collect();
        let mut ctx = vec![0.0; rows * hidden];
        for (&(s, h), out) in tasks.iter().zip(&outputs) {
            let cols = h * self.head_dim..(h + 1) * self.head_dim;
            for (i, src) in out.chunks_exact(self.head_dim).enumerate() {
                let row = seqs[s].start + i;
                ctx[row * hidden..][cols.clone()].copy_from_slice(src);
            }
        }
        ctx
    }

    /// One head of one sequence: `softmax(q k^T / sqrt(d) + mask) v`, `[len, head_dim]`.
    fn head(&self, qkv: &[f32], seq: Range<usize>, h: usize, causal: bool) -> Vec<f32> {
        let (hidden, d) = (self.num_heads * self.head_dim, self.head_dim);
        let len = seq.len();
        let stride = 3 * hidden;
        let view = |part: usize| MatRef {
            data: &qkv[seq.start * stride + part * hidden + h * d..],
            rows: len,
            cols: d,
            rs: stride,
            cs: 1,
        };
        let scale = (d as f32).powf(-0.5);
        let mut scores = vec![0.0; len * len];
        matmul(&mut scores, len, false, view(0), view(1).t(), scale, false);
        for (i, row) in scores.chunks_exact_mut(len).enumerate() {
            softmax_row(row, if causal { i + 1 } else { len });
        }
        let mut out = vec![0.0; len * d];
        matmul(
            &mut out,
            d,
            false,
            MatRef::dense(&scores, len, len),
            view(2),
            1.0,
            false,
        );
        out
    }
}

//! Multi-head self-attention of the CLIP encoders.
//!
//! Mirrors `CLIPAttention` in `transformers/models/clip/modeling_clip.py`:
//! `q_proj`, `k_proj`, `v_proj`, `out_proj` (all with bias), scores
//! `q @ k^T * head_dim^-0.5`, a causal mask in the text tower, softmax,
//! `@ v`, heads concatenated, `out_proj`. The three input projections run as
//! one GEMM; each (sequence, head) pair is an independent task that writes
//! its output straight into the shared context buffer.

use alloc::vec::Vec;
use core::ops::Range;

use super::error::ClipError;
use super::ops::{Linear, MatRef, matmul, matmul_raw, softmax_row};
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
        let qkv = [vb.pp("q_proj"), vb.pp("k_proj"), vb.pp("v_proj")];
        let out_proj = Linear::new(&vb.pp("out_proj"), hidden, hidden, true)?;
        Ok(Self {
            qkv: Linear::stacked(&qkv, hidden, hidden, true)?,
            out_proj,
            num_heads,
            head_dim: hidden / num_heads,
        })
    }

    /// `residual += attention(x)` for the sequences `seqs` (row ranges of
    /// `x`); `qkv` and `ctx` are buffers reused across layers.
    pub(crate) fn forward_add(
        &self,
        x: &[f32],
        seqs: &[Range<usize>],
        causal: bool,
        residual: &mut [f32],
        qkv: &mut Vec<f32>,
        ctx: &mut Vec<f32>,
    ) {
        let rows = seqs.last().map_or(0, |s| s.end);
        self.qkv.forward_into(x, rows, qkv, None);
        ctx.resize(rows * self.num_heads * self.head_dim, 0.0);
        self.context(qkv, seqs, causal, ctx);
        self.out_proj.forward_add(ctx, rows, residual);
    }

    /// Writes the per-head attention outputs, concatenated, into `ctx`
    /// (`[rows, hidden]`, every element overwritten). Each (sequence, head)
    /// task writes its own column block of its sequence's rows directly,
    /// and each worker reuses one scores buffer across its tasks.
    fn context(&self, qkv: &[f32], seqs: &[Range<usize>], causal: bool, ctx: &mut [f32]) {
        let rows = seqs.last().map_or(0, |s| s.end);
        let hidden = self.num_heads * self.head_dim;
        // Internal invariants: violated only by a bug in the encoder.
        assert!(ctx.len() >= rows * hidden && qkv.len() >= rows * 3 * hidden);
        assert!(seqs.windows(2).all(|w| w[0].end <= w[1].start));
        let out = CtxPtr(ctx.as_mut_ptr());
        let tasks: Vec<(usize, usize)> = (0..seqs.len())
            .flat_map(|s| (0..self.num_heads).map(move |h| (s, h)))
            .collect();
        let run = |scores: &mut Vec<f32>, &(s, h): &(usize, usize)| {
            // SAFETY: the block (rows seqs[s], columns of head h) lies inside
            // `ctx` (asserted above), and distinct (sequence, head) pairs
            // write disjoint blocks because the sequences do not overlap.
            unsafe { self.head(qkv, seqs[s].clone(), h, causal, scores, out) }
        };
        #[cfg(feature = "parallel")]
        if super::ops::pool_threaded() {
            use rayon::prelude::*;
            tasks.par_iter().for_each_init(Vec::new, run);
            return;
        }
        let mut scores = Vec::new();
        tasks.iter().for_each(|t| run(&mut scores, t));
    }

    /// One head of one sequence: `softmax(q k^T / sqrt(d) + mask) v`
    /// (`[len, head_dim]`) written into its block of `ctx`.
    ///
    /// # Safety
    /// Rows `seq` x columns `h * head_dim ..` of the `[rows, hidden]`
    /// buffer at `ctx` must be valid and touched by no other thread.
    unsafe fn head(
        &self,
        qkv: &[f32],
        seq: Range<usize>,
        h: usize,
        causal: bool,
        scores: &mut Vec<f32>,
        ctx: CtxPtr,
    ) {
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
        scores.resize(len * len, 0.0);
        matmul(scores, len, false, view(0), view(1).t(), scale, false);
        for (i, row) in scores.chunks_exact_mut(len).enumerate() {
            softmax_row(row, if causal { i + 1 } else { len });
        }
        let probs = MatRef::dense(&scores[..len * len], len, len);
        // SAFETY: the caller's contract; the block starts at (seq.start, h * d).
        unsafe {
            let dst = ctx.0.add(seq.start * hidden + h * d);
            matmul_raw(dst, hidden, false, probs, view(2), 1.0, false);
        }
    }
}

/// The context buffer shared by the head tasks (each writes its own block).
#[derive(Clone, Copy)]
struct CtxPtr(*mut f32);
// SAFETY: tasks write disjoint blocks (see `Attention::context`).
unsafe impl Send for CtxPtr {}
// SAFETY: as above.
unsafe impl Sync for CtxPtr {}

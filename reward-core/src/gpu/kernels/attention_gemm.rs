//! Attention over equal-length, non-causal sequences (the image tower's
//! tokens) as two batched GEMMs around a row softmax, so that on a device
//! with cooperative matrices both products run on tensor cores:
//!
//! 1. GEMM `scores [b, len, lp] = scale * q @ k^T` (b = sequence x head,
//!    k = d, lp = len rounded up to 32), q and k read in place from the qkv
//!    rows (strided operands, no copies);
//! 2. `softmax_rows` in place (the padded columns become 0);
//! 3. GEMM `out = scores @ v` (k = lp), written straight into the token
//!    rows, heads side by side. On the cooperative GEMM v is read in place
//!    too, k-major (`Gemm::w_by_k`: the padded k rows read as zeros);
//!    on the tiled kernel `v_transpose` first copies it to `v^T [b, d, lp]`
//!    (zero padded).
//!
//! Same contract as the fused [`super::attention`] kernel (which mirrors
//! `Attention::context` in `clip/attention.rs`); the fused kernel stays the
//! path for causal or ragged batches (the text tower) and for devices
//! without cooperative matrices unless forced (see
//! [`crate::gpu::AttentionKernel`]). The scores of a chunk of sequences
//! must fit one storage binding; longer batches run chunk by chunk.

use alloc::format;
use alloc::vec::Vec;

use super::super::context::{Dispatch, GpuContext};
use super::super::error::GpuError;
use super::attention::Heads;
use super::matmul::{Gemm, Operand, Strided, matmul};
use super::{MAX_GROUPS, WORKGROUP, grid, u32_of};

/// The padded key length is a multiple of this: the k step of the
/// tensor-core tile the attention products run on.
const PAD: usize = super::matmul_coop::BATCHED_TILE.kt as usize;
/// Rows per `softmax_rows` workgroup (32 invocations each).
const SOFTMAX_ROWS: u32 = 8;

/// `len` rounded up to the GEMM k step.
pub(crate) fn padded(len: usize) -> usize {
    len.div_ceil(PAD) * PAD
}

/// Rows of one head moved per `v_transpose` workgroup: the most (at most
/// 64, a power of two) whose f32 transpose tile fits WebGPU's default
/// 16 KiB of workgroup memory.
fn transpose_rows(d: u32) -> u32 {
    let mut tr = 64;
    while tr > 1 && d * (tr + 1) * 4 > 16_000 {
        tr /= 2;
    }
    tr
}

/// The shape of one call: `count` sequences of `len` tokens, packed back
/// to back from row 0.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batch {
    pub heads: Heads,
    pub len: usize,
    pub count: usize,
}

impl Batch {
    /// The head dim (0 for a shape [`Batch::chunk`] refuses).
    fn d(&self) -> usize {
        self.heads.hidden / self.heads.heads.max(1)
    }

    /// Device elements of each intermediate per sequence: the larger of
    /// the scores (`heads x len x lp`) and v^T (`heads x d x lp`).
    fn elems_per_seq(&self) -> usize {
        let lp = padded(self.len);
        self.heads.heads * lp * self.len.max(self.d())
    }

    /// Sequences per chunk: as many as keep every intermediate within one
    /// storage binding and the batched grids within 65,535; `None` when a
    /// single sequence is already too large (the fused kernel must run).
    pub(crate) fn chunk(&self, ctx: &GpuContext) -> Option<usize> {
        if self.heads.heads == 0 || self.heads.hidden % self.heads.heads != 0 {
            return None;
        }
        let per_seq = self.elems_per_seq() as u64 * ctx.precision().size();
        let limits = ctx.limits();
        let limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let by_memory = usize::try_from(limit / per_seq.max(1)).unwrap_or(usize::MAX);
        let by_grid = MAX_GROUPS as usize / self.heads.heads.max(1);
        let n = by_memory.min(by_grid).min(self.count);
        (n > 0).then_some(n)
    }

    /// Elements to allocate for each of the two intermediates (v^T,
    /// scores) for chunks of `chunk` sequences.
    pub(crate) fn scratch_elems(&self, chunk: usize) -> usize {
        chunk * self.elems_per_seq()
    }
}

/// The intermediates (each at least [`Batch::scratch_elems`] elements).
pub(crate) struct Scratch<'a> {
    pub vt: &'a wgpu::Buffer,
    pub scores: &'a wgpu::Buffer,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct TransposeParams {
    hidden: u32,
    heads: u32,
    len: u32,
    lp: u32,
    seq0: u32,
    pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SoftmaxParams {
    rows: u32,
    len: u32,
    stride: u32,
    groups_x: u32,
}

/// Records `out[rows, hidden]` = per-head attention of `qkv[rows, 3 *
/// hidden]` for `batch`, `chunk` sequences at a time (from
/// [`Batch::chunk`]), into `dispatches`.
pub(crate) async fn attention_gemm(
    ctx: &GpuContext,
    batch: Batch,
    chunk: usize,
    qkv: &wgpu::Buffer,
    scratch: &Scratch<'_>,
    out: &wgpu::Buffer,
    dispatches: &mut Vec<Dispatch>,
) -> Result<(), GpuError> {
    if batch
        .chunk(ctx)
        .is_none_or(|most| chunk == 0 || chunk > most)
    {
        return Err(GpuError::Input(format!(
            "attention of {} sequences of {} tokens ({} heads, hidden {}) cannot run \
             {chunk} sequences at a time on the GEMM path",
            batch.count, batch.len, batch.heads.heads, batch.heads.hidden
        )));
    }
    let mut seq0 = 0;
    while seq0 < batch.count {
        let n = chunk.min(batch.count - seq0);
        record_chunk(ctx, batch, seq0, n, qkv, scratch, out, dispatches).await?;
        seq0 += n;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn record_chunk(
    ctx: &GpuContext,
    batch: Batch,
    seq0: usize,
    n: usize,
    qkv: &wgpu::Buffer,
    s: &Scratch<'_>,
    out: &wgpu::Buffer,
    dispatches: &mut Vec<Dispatch>,
) -> Result<(), GpuError> {
    let (len, heads, d, hidden) = (batch.len, batch.heads.heads, batch.d(), batch.heads.hidden);
    let lp = padded(len);
    // Batch z = sequence * heads + head; row r of sequence seq0 + s is row
    // (seq0 + s) * len + r of qkv (q at column 0, k at hidden, v at 2 hidden).
    let first = seq0 * len * 3 * hidden;
    let in_qkv = |part: usize| Operand {
        base: first + part * hidden,
        ld: 3 * hidden,
        outer: len * 3 * hidden,
        step: d,
    };
    let scores_layout = Operand {
        base: 0,
        ld: lp,
        outer: heads * len * lp,
        step: len * lp,
    };
    let mut scores = Gemm::new(len, len, d);
    scores.batch = n * heads;
    scores.alpha = (d as f32).powf(-0.5);
    scores.strided = Some(Strided {
        inner: heads,
        a: in_qkv(0),
        w: in_qkv(1),
        o: scores_layout,
    });
    dispatches.push(matmul(ctx, &scores, qkv, qkv, None, s.scores).await?);
    dispatches.push(softmax(ctx, n * heads * len, len, lp, s.scores).await?);
    let mut context = Gemm::new(len, d, lp);
    context.batch = n * heads;
    let into_tokens = Operand {
        base: seq0 * len * hidden,
        ld: hidden,
        outer: len * hidden,
        step: d,
    };
    // The values read in place, k-major (token rows of qkv), where the
    // cooperative GEMM takes them: its padded k rows past `len` read as
    // zeros. Elsewhere they are first copied to `v^T`.
    let mut in_place = context;
    in_place.w_by_k = Some(len);
    in_place.strided = Some(Strided {
        inner: heads,
        a: scores_layout,
        w: in_qkv(2),
        o: into_tokens,
    });
    if ctx.values_in_place() && super::matmul_coop::covers(ctx, &in_place) {
        dispatches.push(matmul(ctx, &in_place, s.scores, qkv, None, out).await?);
        return Ok(());
    }
    dispatches.push(transpose_v(ctx, batch, seq0, n, qkv, s.vt).await?);
    context.strided = Some(Strided {
        inner: heads,
        a: scores_layout,
        w: Operand {
            base: 0,
            ld: lp,
            outer: heads * d * lp,
            step: d * lp,
        },
        o: into_tokens,
    });
    dispatches.push(matmul(ctx, &context, s.scores, s.vt, None, out).await?);
    Ok(())
}

fn head_dim(batch: &Batch) -> Result<u32, GpuError> {
    u32_of(batch.d(), "head dim")
}

async fn transpose_v(
    ctx: &GpuContext,
    batch: Batch,
    seq0: usize,
    n: usize,
    qkv: &wgpu::Buffer,
    vt: &wgpu::Buffer,
) -> Result<Dispatch, GpuError> {
    let d = head_dim(&batch)?;
    let tr = transpose_rows(d);
    let consts = [("WG", WORKGROUP), ("D", d), ("TR", tr)];
    let pipeline = ctx
        .pipeline("v_transpose", include_str!("v_transpose.wgsl"), &consts)
        .await?;
    let lp = u32_of(padded(batch.len), "padded sequence length")?;
    let params = TransposeParams {
        hidden: u32_of(batch.heads.hidden, "hidden size")?,
        heads: u32_of(batch.heads.heads, "heads")?,
        len: u32_of(batch.len, "sequence length")?,
        lp,
        seq0: u32_of(seq0, "first sequence")?,
        pad: [0; 3],
    };
    let groups = [lp.div_ceil(tr), params.heads, u32_of(n, "sequences")?];
    Ok(Dispatch::new(pipeline, &[qkv, vt], &params, groups))
}

async fn softmax(
    ctx: &GpuContext,
    rows: usize,
    len: usize,
    stride: usize,
    scores: &wgpu::Buffer,
) -> Result<Dispatch, GpuError> {
    if stride % 4 != 0 || len > stride {
        return Err(GpuError::Input(format!(
            "softmax_rows: padded length {stride} must be a multiple of 4 and at least {len}"
        )));
    }
    let consts = [("WG", SOFTMAX_ROWS * 32), ("RPW", SOFTMAX_ROWS)];
    let pipeline = ctx
        .pipeline("softmax_rows", include_str!("softmax_rows.wgsl"), &consts)
        .await?;
    let rows = u32_of(rows, "score rows")?;
    let groups = grid(rows, SOFTMAX_ROWS);
    let params = SoftmaxParams {
        rows,
        len: u32_of(len, "sequence length")?,
        stride: u32_of(stride, "padded sequence length")?,
        groups_x: groups[0],
    };
    Ok(Dispatch::new(pipeline, &[scores], &params, groups))
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::super::attention::tests::reference;
    use super::super::testing::{assert_close, data, precisions, run, tolerance, upload};
    use super::*;

    /// Runs `count` sequences of `len` on the GEMM path, `chunk` at a time
    /// (None: the largest the device allows), against the CPU reference.
    fn check(count: usize, len: usize, hidden: usize, heads: usize, chunk: Option<usize>) {
        for (ctx, precision) in precisions() {
            check_on(ctx, precision, (count, len, hidden, heads), chunk);
        }
    }

    /// [`check`] on one context.
    fn check_on(
        ctx: &GpuContext,
        precision: crate::gpu::Precision,
        (count, len, hidden, heads): (usize, usize, usize, usize),
        chunk: Option<usize>,
    ) {
        let rows = count * len;
        let seqs: Vec<_> = (0..count).map(|i| i * len..(i + 1) * len).collect();
        {
            let qkv: Vec<f32> = data(rows * 3 * hidden, 31)
                .iter()
                .map(|v| v * 2.0)
                .collect();
            let want = reference(&qkv, &seqs, hidden, heads, false);
            let batch = Batch {
                heads: Heads { hidden, heads },
                len,
                count,
            };
            let chunk = chunk.unwrap_or_else(|| batch.chunk(ctx).expect("fits"));
            let elems = batch.scratch_elems(chunk);
            // Stale values in the scratch: the padding must not read them.
            let junk = vec![f32::NAN; elems];
            let bufs: Vec<wgpu::Buffer> = (0..2).map(|_| upload(ctx, &junk)).collect();
            let scratch = Scratch {
                vt: &bufs[0],
                scores: &bufs[1],
            };
            let qb = upload(ctx, &qkv);
            let out = upload(ctx, &vec![f32::NAN; rows * hidden]);
            let mut ds = Vec::new();
            pollster::block_on(attention_gemm(
                ctx, batch, chunk, &qb, &scratch, &out, &mut ds,
            ))
            .expect("record");
            // The cooperative GEMM reads v in place; the tiled one needs v^T.
            let in_place = ctx.coop().is_some() && ctx.values_in_place();
            let per_chunk = if in_place { 3 } else { 4 };
            assert_eq!(
                ds.len(),
                per_chunk * count.div_ceil(chunk),
                "kernels per chunk"
            );
            let got = run(ctx, ds, &out, rows * hidden);
            let what = alloc::format!(
                "gemm attention {count} x {len}, {hidden}/{heads}, chunk {chunk} {precision:?}"
            );
            assert_close(&got, &want, tolerance(precision), &what);
        }
    }

    #[test]
    fn shorter_than_the_padding() {
        check(1, 1, 8, 2, None);
        check(2, 5, 12, 3, None);
    }

    #[test]
    fn vit_like_lengths_in_chunks() {
        // 50 tokens (ViT-B/32 at 224): padded to 64; three sequences, two
        // at a time, so the second chunk starts mid-batch.
        check(3, 50, 128, 2, Some(2));
        check(2, 33, 64, 1, None);
    }

    #[test]
    fn long_sequence_head_dim_64() {
        // 577 tokens: ViT-L/14-336's sequence.
        check(1, 577, 128, 2, None);
    }

    /// The cooperative path on emulated cooperative matrices, values read
    /// in place (k-major) and copied to `v^T`: padding shorter than a
    /// tile, chunks starting mid-batch, NaN in the scratch.
    #[test]
    fn values_in_place_on_the_emulated_cooperative_gemm() {
        let Some((_, options)) = super::super::testing::emulation("emulated attention GEMMs")
        else {
            return;
        };
        let f16 = crate::gpu::Precision::F16;
        for values_in_place in [true, false] {
            let options = crate::gpu::GpuOptions {
                values_in_place,
                ..options.clone()
            };
            let ctx = GpuContext::new(&options).expect("emulated context");
            check_on(&ctx, f16, (2, 5, 12, 3), None);
            check_on(&ctx, f16, (3, 50, 128, 2), Some(2));
        }
    }

    #[test]
    fn chunks_respect_the_binding_limit() {
        let Some((ctx, _)) = precisions().into_iter().next() else {
            return;
        };
        let batch = Batch {
            heads: Heads {
                hidden: 1024,
                heads: 16,
            },
            len: 577,
            count: 64,
        };
        let chunk = batch.chunk(ctx).expect("one image fits");
        for heads in [0, 3] {
            let bad = Batch {
                heads: Heads { hidden: 10, heads },
                len: 5,
                count: 1,
            };
            assert!(bad.chunk(ctx).is_none(), "{heads} heads over hidden 10");
        }
        let bytes = batch.scratch_elems(chunk) as u64 * ctx.precision().size();
        assert!(bytes <= ctx.limits().max_storage_buffer_binding_size);
        let more = batch.scratch_elems(chunk + 1) as u64 * ctx.precision().size();
        assert!(chunk == 64 || more > ctx.limits().max_storage_buffer_binding_size);
        let mut ds = Vec::new();
        let b = upload(ctx, &[0.0; 4]);
        let scratch = Scratch { vt: &b, scores: &b };
        let r = pollster::block_on(attention_gemm(
            ctx,
            batch,
            chunk + 1,
            &b,
            &scratch,
            &b,
            &mut ds,
        ));
        assert!(matches!(r, Err(GpuError::Input(m)) if m.contains("at a time")));
        assert!(ds.is_empty());
    }

    #[test]
    fn transpose_tile_fits_workgroup_memory() {
        for d in [1, 8, 64, 100, 256] {
            let tr = transpose_rows(d);
            assert!(d * (tr + 1) * 4 <= 16_000 || tr == 1, "d = {d}: tr = {tr}");
        }
        assert_eq!(transpose_rows(64), 32);
    }
}

//! Tiled GEMM with fused bias, residual add and scale:
//! `out = (accumulate ? out : 0) + alpha * a @ w^T + bias`, batched.
//!
//! Mirrors `Linear::forward` / `forward_add` and `matmul` in
//! `clip/ops.rs` (weights `[out, in]` as in `torch.nn.Linear`).

use super::super::context::{Dispatch, GpuContext};
use super::super::error::GpuError;
use super::u32_of;

/// Invocations per workgroup side (SIDE x SIDE = 256 invocations); fixed
/// in `matmul.wgsl`, which holds 4 x 4 outputs per invocation in vec4s.
const SIDE: u32 = 16;
/// Outputs per invocation per side: a workgroup computes a 64 x 64 tile.
const PER: u32 = 4;
/// The k step held in workgroup memory (2 x 16 x 65 f32: 8.3 KiB).
const KT: u32 = 16;

/// The uniform both GEMM kernels read (`matmul.wgsl`, `matmul_coop.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    pub m: u32,
    pub n: u32,
    k: u32,
    flags: u32,
    alpha: f32,
    a_batch: u32,
    w_batch: u32,
    o_batch: u32,
}

/// The shape and options of one (batched) GEMM.
#[derive(Debug, Clone, Copy)]
pub struct Gemm {
    /// Rows of `a` and `out`.
    pub m: usize,
    /// Rows of `w` (columns of `out`).
    pub n: usize,
    /// The shared inner width.
    pub k: usize,
    /// Independent products; operand strides are `m*k`, `n*k`, `m*n` (a
    /// batch of 1 with `w_shared` reuses one `w` for every batch).
    pub batch: usize,
    /// Whether every batch multiplies by the same `w`.
    pub w_shared: bool,
    /// Factor on `a @ w^T` (not on the bias or the residual).
    pub alpha: f32,
    /// Add `out`'s previous contents (the residual).
    pub accumulate: bool,
}

impl Gemm {
    /// `[m, k] @ [n, k]^T`, one batch, no scaling, overwriting `out`.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Self {
            m,
            n,
            k,
            batch: 1,
            w_shared: true,
            alpha: 1.0,
            accumulate: false,
        }
    }
}

/// Records the GEMM; `bias` (`[n]`) is optional. Runs on tensor cores
/// (`matmul_coop`) where the device and the shape allow, else on the
/// portable tiled kernel.
pub(crate) async fn matmul(
    ctx: &GpuContext,
    g: &Gemm,
    a: &wgpu::Buffer,
    w: &wgpu::Buffer,
    bias: Option<&wgpu::Buffer>,
    out: &wgpu::Buffer,
) -> Result<Dispatch, GpuError> {
    let params = params(g, bias.is_some())?;
    if super::matmul_coop::covers(ctx, g) {
        // `None`: the cooperative pipeline did not compile; the context
        // has recorded why and the tiled kernel runs from now on.
        if let Some(d) = super::matmul_coop::matmul_coop(ctx, g, &params, a, w, bias, out).await? {
            return Ok(d);
        }
    }
    let consts = [("KT", KT)];
    let pipeline = ctx
        .pipeline("matmul", include_str!("matmul.wgsl"), &consts)
        .await?;
    let tile = SIDE * PER;
    let groups = [
        params.n.div_ceil(tile).max(1),
        params.m.div_ceil(tile).max(1),
        u32_of(g.batch.max(1), "gemm batch")?,
    ];
    check_groups(g, groups)?;
    // An unused bias binding still needs a buffer; `w` is never written here.
    let bias = bias.unwrap_or(w);
    let mut d = Dispatch::new(pipeline, &[a, w, bias, out], &params, groups);
    d.detail = Some(alloc::format!("{}x{}x{}", g.m, g.n, g.k));
    Ok(d)
}

/// The kernels' uniform for `g`, sizes checked to fit u32.
fn params(g: &Gemm, has_bias: bool) -> Result<Params, GpuError> {
    Ok(Params {
        m: u32_of(g.m, "gemm m")?,
        n: u32_of(g.n, "gemm n")?,
        k: u32_of(g.k, "gemm k")?,
        flags: u32::from(has_bias) | (u32::from(g.accumulate) << 1),
        alpha: g.alpha,
        a_batch: u32_of(g.m * g.k, "gemm a stride")?,
        w_batch: if g.w_shared {
            0
        } else {
            u32_of(g.n * g.k, "gemm w stride")?
        },
        o_batch: u32_of(g.m * g.n, "gemm out stride")?,
    })
}

/// An input error when a grid exceeds the per-dimension workgroup limit.
pub(super) fn check_groups(g: &Gemm, groups: [u32; 3]) -> Result<(), GpuError> {
    if groups.iter().any(|&c| c > super::MAX_GROUPS) {
        return Err(GpuError::Input(alloc::format!(
            "gemm {}x{}x{} (batch {}) needs {groups:?} workgroups, above 65535 per dimension",
            g.m,
            g.n,
            g.k,
            g.batch
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::testing::{assert_close, data, precisions, run, tolerance, upload};
    use super::*;
    use crate::clip::ops::{MatRef, matmul as cpu_matmul};
    use alloc::vec::Vec;

    /// CPU reference of one batch: alpha * a @ w^T + bias (+ residual).
    fn reference(g: &Gemm, a: &[f32], w: &[f32], bias: Option<&[f32]>, init: &[f32]) -> Vec<f32> {
        let mut out = init.to_vec();
        for b in 0..g.batch {
            let o = &mut out[b * g.m * g.n..][..g.m * g.n];
            if !g.accumulate {
                o.fill(0.0);
            }
            if let Some(bias) = bias {
                o.chunks_exact_mut(g.n)
                    .for_each(|r| r.iter_mut().zip(bias).for_each(|(v, b)| *v += b));
            }
            let wb = if g.w_shared { 0 } else { b * g.n * g.k };
            let lhs = MatRef::dense(&a[b * g.m * g.k..], g.m, g.k);
            let rhs = MatRef::dense(&w[wb..], g.n, g.k).t();
            cpu_matmul(o, g.n, true, lhs, rhs, g.alpha, false);
        }
        out
    }

    /// Runs `g` at every precision the adapter has and compares with
    /// the CPU reference (also used by `matmul_coop`'s parity test).
    pub(crate) fn check(g: Gemm, with_bias: bool) {
        for (ctx, precision) in precisions() {
            check_on(ctx, precision, g, with_bias);
        }
    }

    /// [`check`] on one context.
    pub(crate) fn check_on(
        ctx: &GpuContext,
        precision: crate::gpu::Precision,
        g: Gemm,
        with_bias: bool,
    ) {
        {
            let wn = if g.w_shared { 1 } else { g.batch };
            let a = data(g.batch * g.m * g.k, 1);
            let w = data(wn * g.n * g.k, 2);
            let bias = data(g.n, 3);
            let init = data(g.batch * g.m * g.n, 4);
            let (ab, wb, bb) = (upload(ctx, &a), upload(ctx, &w), upload(ctx, &bias));
            let out = upload(ctx, &init);
            let bias_buf = with_bias.then_some(&bb);
            let d = pollster::block_on(matmul(ctx, &g, &ab, &wb, bias_buf, &out)).expect("record");
            let got = run(ctx, alloc::vec![d], &out, init.len());
            let want = reference(&g, &a, &w, with_bias.then_some(&bias[..]), &init);
            assert_close(
                &got,
                &want,
                tolerance(precision),
                &alloc::format!("matmul {g:?} {precision:?}"),
            );
        }
    }

    #[test]
    fn smaller_than_a_workgroup() {
        check(Gemm::new(1, 1, 1), false);
        check(Gemm::new(3, 5, 7), true);
    }

    #[test]
    fn not_multiples_of_the_tile() {
        check(Gemm::new(65, 67, 33), true);
        check(Gemm::new(130, 17, 64), false);
    }

    #[test]
    fn large_k_with_alpha_and_residual() {
        let mut g = Gemm::new(4, 3, 3000);
        g.alpha = 0.125;
        g.accumulate = true;
        check(g, true);
    }

    /// One context shared by threads that run different shapes at once, as
    /// parallel callers (and the test harness) do: each result must be its
    /// own. Params written by one thread between another's params write and
    /// submit used to land in the other's submission.
    #[test]
    fn threads_sharing_a_context_get_their_own_results() {
        let shapes = [(5, 9, 70), (33, 17, 8), (70, 3, 64), (1, 65, 130)];
        std::thread::scope(|scope| {
            for (t, &(m, n, k)) in shapes.iter().enumerate() {
                scope.spawn(move || {
                    for round in 0..12 {
                        let mut g = Gemm::new(m, n, k);
                        g.alpha = 1.0 + (t + round) as f32 * 0.25;
                        check(g, round % 2 == 0);
                    }
                });
            }
        });
    }

    #[test]
    fn batches_with_separate_weights() {
        let mut g = Gemm::new(9, 70, 20);
        g.batch = 3;
        g.w_shared = false;
        check(g, false);
        g.w_shared = true;
        g.accumulate = true;
        check(g, true);
    }
}

//! Tiled GEMM with fused bias, residual add and scale:
//! `out = (accumulate ? out : 0) + alpha * a @ w^T + bias`, batched.
//!
//! Mirrors `Linear::forward` / `forward_add` and `matmul` in
//! `clip/ops.rs` (weights `[out, in]` as in `torch.nn.Linear`).

use super::super::context::{Dispatch, GpuContext};
use super::super::error::GpuError;
use super::matmul_coop::GemmProbe;
use super::u32_of;
use crate::clip::Activation;

/// Invocations per workgroup side (SIDE x SIDE = 256 invocations); fixed
/// in `matmul.wgsl`, which holds 4 x 4 outputs per invocation in vec4s.
const SIDE: u32 = 16;
/// Outputs per invocation per side: a workgroup computes a 64 x 64 tile.
const PER: u32 = 4;
/// The k step held in workgroup memory (2 x 16 x 65 f32: 8.3 KiB).
const KT: u32 = 16;

/// The tiled kernel with the shared activation functions and epilogue.
const MATMUL_SOURCE: &str = concat!(
    include_str!("activation.wgsl"),
    include_str!("gemm_params.wgsl"),
    include_str!("gemm_store.wgsl"),
    include_str!("matmul.wgsl")
);

/// The kernels' code of an activation (`activation.wgsl`).
pub(super) fn act_code(act: Activation) -> u32 {
    match act {
        Activation::QuickGelu => 0,
        Activation::Gelu => 1,
        Activation::GeluTanh => 2,
    }
}

/// The uniform both GEMM kernels read (`matmul.wgsl`, `matmul_coop.rs`);
/// `a`, `w`, `o` are each operand's `[base, row stride, outer step, inner
/// step]` (see [`Operand`]).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    pub m: u32,
    pub n: u32,
    k: u32,
    flags: u32,
    alpha: f32,
    inner: u32,
    /// `wk` (valid k rows of a k-major `w`), then padding.
    pad: [u32; 2],
    pub a: [u32; 4],
    pub w: [u32; 4],
    o: [u32; 4],
}

/// Where one operand of batch `z` lives, in elements: it starts at
/// `base + (z / inner) * outer + (z % inner) * step` (`inner` from
/// [`Strided`]) and its rows are `ld` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operand {
    /// Offset of batch 0.
    pub base: usize,
    /// Row stride (at least the row length).
    pub ld: usize,
    /// Step per outer batch index.
    pub outer: usize,
    /// Step per inner batch index.
    pub step: usize,
}

/// Explicit operand layouts with a two-level batch index `z = outer *
/// inner + i`: how the attention GEMMs read q and k straight out of the
/// fused qkv rows (outer = sequence, inner = head) and write the context
/// straight into token rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strided {
    /// Inner batch count (heads).
    pub inner: usize,
    /// `a [m, k]` of each batch.
    pub a: Operand,
    /// `w [n, k]` of each batch.
    pub w: Operand,
    /// `out [m, n]` of each batch.
    pub o: Operand,
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
    /// Activation applied to `alpha * a @ w^T + bias`, before the residual
    /// (fc1's GELU fused into its GEMM).
    pub act: Option<Activation>,
    /// Explicit operand layouts (`None`: dense, as described at `batch`).
    pub strided: Option<Strided>,
    /// A diagnostic kernel with parts left out (`gpu::probe_gemm`); the
    /// forward pass always runs [`GemmProbe::Full`].
    pub probe: GemmProbe,
    /// `Some(rows)`: `w` is stored k-major (`[k, n]`, its layout's row
    /// stride between k rows) and only its first `rows` k rows hold data,
    /// the rest read as zeros: the values of an attention head read in
    /// place as `P @ V`. Only the cooperative GEMM takes it (see
    /// `matmul_coop::covers`).
    pub w_by_k: Option<usize>,
}

impl Gemm {
    /// The operand layouts: [`Gemm::strided`] or the dense ones.
    pub(crate) fn layout(&self) -> Strided {
        self.strided.unwrap_or(Strided {
            inner: 1,
            a: Operand {
                base: 0,
                ld: self.k,
                outer: self.m * self.k,
                step: 0,
            },
            w: Operand {
                base: 0,
                ld: self.k,
                outer: if self.w_shared { 0 } else { self.n * self.k },
                step: 0,
            },
            o: Operand {
                base: 0,
                ld: self.n,
                outer: self.m * self.n,
                step: 0,
            },
        })
    }

    /// Whether each batch has its own `w` (the attention products).
    pub(crate) fn batched_w(&self) -> bool {
        let w = self.layout().w;
        self.batch > 1 && (w.outer != 0 || w.step != 0)
    }

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
            act: None,
            strided: None,
            probe: GemmProbe::Full,
            w_by_k: None,
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
    let coop = super::matmul_coop::covers(ctx, g);
    if g.w_by_k.is_some() && !coop {
        return Err(GpuError::Input(alloc::format!(
            "gemm {}x{}x{} with a k-major w needs the cooperative GEMM ({})",
            g.m,
            g.n,
            g.k,
            ctx.gemm_kernel()
        )));
    }
    if coop {
        // `None`: the cooperative pipeline did not compile; the context
        // has recorded why and the tiled kernel runs from now on.
        if let Some(d) = super::matmul_coop::matmul_coop(ctx, g, &params, a, w, bias, out).await? {
            return Ok(d);
        }
        if g.w_by_k.is_some() {
            return Err(GpuError::Device(alloc::format!(
                "the cooperative GEMM failed to compile and a k-major w has no fallback: {}",
                ctx.gemm_kernel()
            )));
        }
    }
    let consts = [("KT", KT)];
    let pipeline = ctx.pipeline("matmul", MATMUL_SOURCE, &consts).await?;
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
    let l = g.layout();
    let w_row = if g.w_by_k.is_some() { g.n } else { g.k };
    let rows = [("a", l.a, g.k), ("w", l.w, w_row), ("out", l.o, g.n)];
    if let Some((name, op, len)) = rows.iter().find(|(_, op, len)| op.ld < *len) {
        return Err(GpuError::Input(alloc::format!(
            "gemm {name} rows of {len} values with a row stride of {}",
            op.ld
        )));
    }
    let op = |o: Operand, name: &str| -> Result<[u32; 4], GpuError> {
        Ok([
            u32_of(o.base, name)?,
            u32_of(o.ld, name)?,
            u32_of(o.outer, name)?,
            u32_of(o.step, name)?,
        ])
    };
    Ok(Params {
        m: u32_of(g.m, "gemm m")?,
        n: u32_of(g.n, "gemm n")?,
        k: u32_of(g.k, "gemm k")?,
        flags: u32::from(has_bias)
            | (u32::from(g.accumulate) << 1)
            | (g.act.map_or(0, |a| act_code(a) + 1) << 2),
        alpha: g.alpha,
        inner: u32_of(l.inner.max(1), "gemm inner batch")?,
        pad: [u32_of(g.w_by_k.unwrap_or(0), "gemm w rows")?, 0],
        a: op(l.a, "gemm a layout")?,
        w: op(l.w, "gemm w layout")?,
        o: op(l.o, "gemm out layout")?,
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
    pub(crate) fn reference(
        g: &Gemm,
        a: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        init: &[f32],
    ) -> Vec<f32> {
        let mut out = init.to_vec();
        for b in 0..g.batch {
            let mut y = alloc::vec![0.0; g.m * g.n];
            if let Some(bias) = bias {
                y.chunks_exact_mut(g.n)
                    .for_each(|r| r.iter_mut().zip(bias).for_each(|(v, b)| *v += b));
            }
            let wb = if g.w_shared { 0 } else { b * g.n * g.k };
            let lhs = MatRef::dense(&a[b * g.m * g.k..], g.m, g.k);
            let rhs = MatRef::dense(&w[wb..], g.n, g.k).t();
            cpu_matmul(&mut y, g.n, true, lhs, rhs, g.alpha, false);
            if let Some(act) = g.act {
                crate::clip::ops::activate(&mut y, g.n, act);
            }
            let o = &mut out[b * g.m * g.n..][..g.m * g.n];
            for (o, y) in o.iter_mut().zip(&y) {
                *o = if g.accumulate { *o + y } else { *y };
            }
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

    /// Strided operands with a two-level batch (3 inner x 2 outer), the
    /// way the attention GEMMs read qkv rows and write token rows; every
    /// offset a multiple of 4 and k = 32 so the tensor-core kernel takes it.
    /// Output values outside the batches' blocks must stay untouched.
    pub(crate) fn check_strided_on(ctx: &GpuContext, precision: crate::gpu::Precision) {
        let (m, n, k, inner, outer) = (5, 7, 32, 3, 2);
        let layout = Strided {
            inner,
            a: Operand {
                base: 8,
                ld: 3 * k + 4,
                outer: m * (3 * k + 4),
                step: k,
            },
            w: Operand {
                base: 4,
                ld: 36,
                outer: 0,
                step: n * 36,
            },
            o: Operand {
                base: 4,
                ld: 24,
                outer: m * 24,
                step: 8,
            },
        };
        let mut g = Gemm::new(m, n, k);
        g.batch = inner * outer;
        g.alpha = 0.5;
        g.accumulate = true;
        g.strided = Some(layout);
        let a = data(8 + outer * layout.a.outer + 4, 41);
        let w = data(4 + inner * layout.w.step + 4, 42);
        let bias = data(n, 43);
        let init = data(4 + outer * layout.o.outer + 4, 44);
        let mut want = init.clone();
        for z in 0..g.batch {
            let at = |o: Operand| o.base + (z / inner) * o.outer + (z % inner) * o.step;
            let (oa, ow, oo) = (at(layout.a), at(layout.w), at(layout.o));
            for r in 0..m {
                for c in 0..n {
                    let dot: f32 = (0..k)
                        .map(|i| a[oa + r * layout.a.ld + i] * w[ow + c * layout.w.ld + i])
                        .sum();
                    want[oo + r * layout.o.ld + c] += g.alpha * dot + bias[c];
                }
            }
        }
        let (ab, wb, bb) = (upload(ctx, &a), upload(ctx, &w), upload(ctx, &bias));
        let out = upload(ctx, &init);
        let d = pollster::block_on(matmul(ctx, &g, &ab, &wb, Some(&bb), &out)).expect("record");
        let got = run(ctx, alloc::vec![d], &out, init.len());
        let what = alloc::format!("strided gemm {precision:?} ({})", ctx.gemm_kernel());
        assert_close(&got, &want, tolerance(precision), &what);
    }

    #[test]
    fn strided_operands_with_two_level_batches() {
        for (ctx, precision) in precisions() {
            check_strided_on(ctx, precision);
        }
    }

    #[test]
    fn overlapping_rows_are_an_input_error() {
        let Some((ctx, _)) = precisions().into_iter().next() else {
            return;
        };
        let mut g = Gemm::new(4, 4, 8);
        let dense = g.layout();
        g.strided = Some(Strided {
            o: Operand { ld: 3, ..dense.o },
            ..dense
        });
        let b = upload(ctx, &[0.0; 64]);
        let e = pollster::block_on(matmul(ctx, &g, &b, &b, None, &b));
        assert!(
            matches!(&e, Err(GpuError::Input(m)) if m.contains("out rows of 4 values with a row stride of 3")),
            "{:?}",
            e.err()
        );
    }

    /// fc1's activation in the epilogue, each kind, with and without a
    /// residual (applied after the activation).
    #[test]
    fn activation_in_the_epilogue() {
        for act in [
            Activation::QuickGelu,
            Activation::Gelu,
            Activation::GeluTanh,
        ] {
            let mut g = Gemm::new(70, 65, 64);
            g.act = Some(act);
            g.alpha = 3.0; // pre-activations over both saturating tails
            check(g, true);
            g.accumulate = true;
            check(g, false);
        }
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

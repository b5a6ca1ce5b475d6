//! The numeric kernels of the CLIP towers on row-major f32 buffers: GEMM
//! (the `gemm` crate), linear layers with fused bias / activation /
//! residual, LayerNorm, softmax and the GELU family.
//!
//! Mirrors `torch.nn.Linear`, `torch.nn.LayerNorm` and the activations of
//! `transformers/activations.py` (`QuickGELUActivation`, `GELUActivation`,
//! `NewGELUActivation`). Threads (rayon) only with the `parallel` feature.

use alloc::vec::Vec;

use super::config::Activation;
use super::error::ClipError;
use super::weights::VarBuilder;

/// The GEMM threading for one call: all rayon threads with `parallel`.
pub(crate) fn parallelism(threaded: bool) -> gemm::Parallelism {
    #[cfg(feature = "parallel")]
    if threaded {
        return gemm::Parallelism::Rayon(0);
    }
    let _ = threaded;
    gemm::Parallelism::None
}

/// A strided read-only matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major matrix.
    pub(crate) fn dense(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transposed view (no copy).
    pub(crate) fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Whether every element index lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst[m x n] (row stride dst_rs) = acc * dst + scale * lhs @ rhs`.
///
/// With `accumulate` false, `dst` is overwritten (its contents are not read).
pub(crate) fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    scale: f32,
    threaded: bool,
) {
    let (m, n) = (lhs.rows, rhs.cols);
    // Internal invariant: violated only by a bug in this module's callers.
    assert!(
        m == 0 || n == 0 || (m - 1) * dst_rs + n <= dst.len(),
        "matmul: dst too small"
    );
    // SAFETY: `dst` is valid for the checked extent and, borrowed mutably,
    // aliases neither operand.
    unsafe {
        matmul_raw(
            dst.as_mut_ptr(),
            dst_rs,
            accumulate,
            lhs,
            rhs,
            scale,
            threaded,
        )
    }
}

/// [`matmul`] into a raw destination, for tasks that each write their own
/// block of one shared buffer (attention heads into the context rows).
///
/// # Safety
/// `dst` must be valid for reads and writes of the `m x n` block (row
/// stride `dst_rs`), alias neither operand, and no other thread may access
/// that block during the call.
pub(crate) unsafe fn matmul_raw(
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    scale: f32,
    threaded: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    // Internal invariants: violated only by a bug in this module's callers.
    assert_eq!(k, rhs.rows, "matmul: inner dimensions differ");
    assert!(
        lhs.in_bounds() && rhs.in_bounds(),
        "matmul: operand view out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts keep every operand index inside its slice; the
    // destination block is the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism(threaded),
        );
    }
}

/// `torch.nn.Linear`: weight `[out, in]`, optional bias `[out]`.
pub(crate) struct Linear {
    weight: Weight,
    bias: Option<Vec<f32>>,
    in_dim: usize,
    out_dim: usize,
}

/// A linear layer's weight in the layout its GEMM reads.
enum Weight {
    /// `[out, in]` row-major, multiplied through `gemm::gemm` (which packs
    /// it on every call).
    Rows(Vec<f32>),
    /// Packed once at load for the AVX2 + FMA micro-kernel (`packed.rs`).
    #[cfg(target_arch = "x86_64")]
    Panels(super::packed::Panels),
}

impl Weight {
    /// Packs the row-major `[out, in]` weight when this CPU runs the packed path.
    fn new(weight: Vec<f32>, in_dim: usize, out_dim: usize) -> Self {
        #[cfg(target_arch = "x86_64")]
        if super::packed::available() {
            return Weight::Panels(super::packed::Panels::pack(&weight, out_dim, in_dim));
        }
        let _ = (in_dim, out_dim);
        Weight::Rows(weight)
    }
}

impl Linear {
    /// Loads `weight` (and `bias` when `with_bias`) under `vb`.
    pub(crate) fn new(
        vb: &VarBuilder<'_, '_>,
        in_dim: usize,
        out_dim: usize,
        with_bias: bool,
    ) -> Result<Self, ClipError> {
        Self::stacked(core::slice::from_ref(vb), in_dim, out_dim, with_bias)
    }

    /// Loads the layers under `vbs` (all `[out_dim, in_dim]`) stacked into
    /// one `[vbs.len() * out_dim, in_dim]` layer (e.g. q, k, v -> qkv), so a
    /// single GEMM computes all of them.
    pub(crate) fn stacked(
        vbs: &[VarBuilder<'_, '_>],
        in_dim: usize,
        out_dim: usize,
        with_bias: bool,
    ) -> Result<Self, ClipError> {
        let total = vbs.len() * out_dim;
        let mut weight = Vec::with_capacity(total * in_dim);
        let mut bias = Vec::with_capacity(if with_bias { total } else { 0 });
        for vb in vbs {
            weight.extend(vb.get("weight", &[out_dim, in_dim])?);
            if with_bias {
                bias.extend(vb.get("bias", &[out_dim])?);
            }
        }
        Ok(Self::from_parts(
            weight,
            with_bias.then_some(bias),
            in_dim,
            total,
        ))
    }

    /// A layer from loaded parts: `weight` is `[out_dim, in_dim]` row-major.
    pub(crate) fn from_parts(
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        in_dim: usize,
        out_dim: usize,
    ) -> Self {
        debug_assert_eq!(weight.len(), in_dim * out_dim);
        Self {
            weight: Weight::new(weight, in_dim, out_dim),
            bias,
            in_dim,
            out_dim,
        }
    }

    /// `x[rows, in] @ W^T + b`.
    pub(crate) fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut out = Vec::new();
        self.forward_into(x, rows, &mut out, None);
        out
    }

    /// `out = act(x @ W^T + b)`, reusing `out`'s allocation (resized to
    /// `[rows, out]`). The GEMM overwrites `out`; bias and activation follow
    /// on each finished piece of a row (packed path) or in one threaded pass
    /// over the rows, never as serial zero- or bias-fills.
    pub(crate) fn forward_into(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut Vec<f32>,
        act: Option<Activation>,
    ) {
        out.resize(rows * self.out_dim, 0.0);
        let bias = self.bias.as_deref();
        let epilogue = |seg: &mut [f32], col: usize| {
            if let Some(bias) = bias {
                seg.iter_mut().zip(&bias[col..]).for_each(|(v, b)| *v += b);
            }
            if let Some(act) = act {
                activate_row(seg, act);
            }
        };
        match &self.weight {
            #[cfg(target_arch = "x86_64")]
            Weight::Panels(p) if bias.is_some() || act.is_some() => {
                p.gemm(x, rows, out, false, true, epilogue)
            }
            #[cfg(target_arch = "x86_64")]
            Weight::Panels(p) => p.gemm(x, rows, out, false, true, |_, _| {}),
            Weight::Rows(w) => {
                self.rows_gemm(w, out, x, rows, false);
                if bias.is_some() || act.is_some() {
                    for_each_row(out, self.out_dim, |row| epilogue(row, 0));
                }
            }
        }
    }

    /// `residual += x @ W^T + b`: the residual add fused into the GEMM.
    pub(crate) fn forward_add(&self, x: &[f32], rows: usize, residual: &mut [f32]) {
        let bias = self.bias.as_deref();
        let add_bias = |seg: &mut [f32], col: usize| {
            if let Some(bias) = bias {
                seg.iter_mut().zip(&bias[col..]).for_each(|(r, b)| *r += b);
            }
        };
        match &self.weight {
            #[cfg(target_arch = "x86_64")]
            Weight::Panels(p) => p.gemm(x, rows, residual, true, true, add_bias),
            Weight::Rows(w) => {
                if bias.is_some() {
                    for_each_row(residual, self.out_dim, |row| add_bias(row, 0));
                }
                self.rows_gemm(w, residual, x, rows, true);
            }
        }
    }

    /// `gemm::gemm` against the row-major weight `w`.
    fn rows_gemm(&self, w: &[f32], out: &mut [f32], x: &[f32], rows: usize, accumulate: bool) {
        let lhs = MatRef::dense(x, rows, self.in_dim);
        let rhs = MatRef::dense(w, self.out_dim, self.in_dim).t();
        matmul(out, self.out_dim, accumulate, lhs, rhs, 1.0, true);
    }
}

/// `torch.nn.LayerNorm` over the last dimension.
pub(crate) struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    /// Loads `weight` and `bias` of width `dim` under `vb`.
    pub(crate) fn new(vb: &VarBuilder<'_, '_>, dim: usize, eps: f64) -> Result<Self, ClipError> {
        let weight = vb.get("weight", &[dim])?;
        let bias = vb.get("bias", &[dim])?;
        Ok(Self {
            weight,
            bias,
            eps: eps as f32,
        })
    }

    /// Normalises each row of `x` into a new buffer.
    pub(crate) fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut out = Vec::new();
        self.forward_into(x, &mut out);
        out
    }

    /// Normalises each row of `x` into `out` (resized to `x.len()`): one
    /// read of `x` and one write of `out`, threaded over row chunks.
    pub(crate) fn forward_into(&self, x: &[f32], out: &mut Vec<f32>) {
        out.resize(x.len(), 0.0);
        let width = self.weight.len();
        for_each_row_pair(x, out, width, |src, dst| self.norm_row_into(src, dst));
    }

    /// Normalises one row in place.
    pub(crate) fn norm_row(&self, row: &mut [f32]) {
        let (mean, inv) = self.stats(row);
        for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
            *v = ((*v as f64 - mean) * inv) as f32 * w + b;
        }
    }

    /// Normalises `src` into `dst` (same width).
    fn norm_row_into(&self, src: &[f32], dst: &mut [f32]) {
        let (mean, inv) = self.stats(src);
        let params = self.weight.iter().zip(&self.bias);
        for ((d, &v), (w, b)) in dst.iter_mut().zip(src).zip(params) {
            *d = ((v as f64 - mean) * inv) as f32 * w + b;
        }
    }

    /// Mean and `1 / sqrt(var + eps)` of a row. Statistics in f64 are cheap
    /// here and keep the parity with PyTorch's (f32, Welford) well inside
    /// 1e-6; the sums run in eight lanes so they vectorise.
    fn stats(&self, row: &[f32]) -> (f64, f64) {
        let n = row.len() as f64;
        let mean = lane_sum(row, |v| v as f64) / n;
        let var = lane_sum(row, |v| (v as f64 - mean) * (v as f64 - mean)) / n;
        (mean, 1.0 / (var + self.eps as f64).sqrt())
    }
}

/// `sum(f(v))` over `row` in f64, accumulated in eight independent lanes
/// (no serial add chain, so the compiler vectorises it).
#[inline(always)]
fn lane_sum(row: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f(v);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    lanes.iter().sum::<f64>() + tail
}

/// Softmax of each row of `x` over its first `valid` entries; the rest
/// (masked keys) become 0, as `-inf` logits do in PyTorch.
pub(crate) fn softmax_row(row: &mut [f32], valid: usize) {
    let (live, masked) = row.split_at_mut(valid.min(row.len()));
    masked.fill(0.0);
    simd::dispatch(live, softmax_kernel);
}

/// The softmax body, written so the compiler vectorises it: lane-wise
/// max and sum accumulators instead of one serial chain.
#[inline(always)]
fn softmax_kernel(live: &mut [f32]) {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = live.chunks_exact(8);
    for c in &mut chunks {
        for (m, v) in lanes.iter_mut().zip(c) {
            *m = m.max(*v);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let mut sums = [0.0f32; 8];
    let mut chunks = live.chunks_exact_mut(8);
    for c in &mut chunks {
        for (s, v) in sums.iter_mut().zip(c) {
            *v = exp_f32(*v - max);
            *s += *v;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp_f32(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    live.iter_mut().for_each(|v| *v *= inv);
}

/// Applies `act` to every element in place (the reference the GPU kernel
/// tests compare with; the encoder fuses it into `Linear::forward_into`).
#[cfg(all(test, feature = "gpu"))]
pub(crate) fn activate(x: &mut [f32], width: usize, act: Activation) {
    for_each_row(x, width, |row| activate_row(row, act));
}

/// Applies `act` to one row in place.
fn activate_row(row: &mut [f32], act: Activation) {
    match act {
        Activation::QuickGelu => simd::dispatch(row, quick_gelu_kernel),
        Activation::Gelu => {
            let f = |v: f32| 0.5 * v * (1.0 + erf(v / core::f32::consts::SQRT_2));
            row.iter_mut().for_each(|v| *v = f(*v));
        }
        Activation::GeluTanh => {
            let f = |v: f32| {
                let inner = 0.797_884_6 * (v + 0.044_715 * v * v * v);
                0.5 * v * (1.0 + inner.tanh())
            };
            row.iter_mut().for_each(|v| *v = f(*v));
        }
    }
}

/// `x * sigmoid(1.702 x)`, vectorisable.
#[inline(always)]
fn quick_gelu_kernel(row: &mut [f32]) {
    row.iter_mut()
        .for_each(|v| *v /= 1.0 + exp_f32(-1.702 * *v));
}

/// `exp(x)` in f32 to within 1e-7 relative (Cephes' `expf`: x = n ln2 + r,
/// a degree-5 polynomial in r, 2^n through the exponent bits) in branch-free
/// code that vectorises, unlike a libm call. Clamped to [-87.3, 88.7]:
/// below, the result is ~1e-38 instead of a denormal; above, +inf.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer in any SIMD width.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.7);
    let t = x * core::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    // Cephes' 5.0000001e-1, which is 0.5 exactly in f32.
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n from the bits of `t`: its low mantissa bits hold n + 2^22 (the
    // ulp of t is 1), so integer ops give the exponent field. Unlike
    // `n as i32` (a saturating float-to-int cast, scalar code) this keeps
    // the whole function in SIMD registers.
    let biased = t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127);
    y * f32::from_bits(biased << 23)
}

/// Runtime CPU dispatch for the element-wise kernels: the same code compiled
/// once for the baseline target and once with AVX2 + FMA (x86-64 only).
/// Kernels are `#[inline(always)]` function items, so they are compiled into
/// each instantiation (a function pointer would not inherit the features).
mod simd {
    /// Runs `kernel` on `x`, with AVX2 + FMA code generation when the CPU has them.
    #[inline(always)]
    pub(super) fn dispatch<F: Fn(&mut [f32])>(x: &mut [f32], kernel: F) {
        #[cfg(all(target_arch = "x86_64", feature = "std"))]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features `avx2` enables.
            unsafe { avx2(x, kernel) };
            return;
        }
        kernel(x)
    }

    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2<F: Fn(&mut [f32])>(x: &mut [f32], kernel: F) {
        kernel(x)
    }
}

/// The error function for the exact GELU (std's `erf` is not stable).
///
/// `erfc` by the Chebyshev fit of Numerical Recipes (`erfcc`, fractional
/// error below 1.2e-7 everywhere), evaluated in f64: good to f32 precision.
fn erf(x: f32) -> f32 {
    let x = x as f64;
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    (if x >= 0.0 { 1.0 - erfc } else { erfc - 1.0 }) as f32
}

/// Whether rayon's pool has more than one thread (`parallel` only). With a
/// single thread the row passes, heads and GEMM tasks run inline on the
/// caller: handing them to the pool's one worker only adds a wake-up and a
/// blocked caller per op (milliseconds on a loaded machine).
#[cfg(feature = "parallel")]
pub(crate) fn pool_threaded() -> bool {
    rayon::current_num_threads() > 1
}

/// Runs `f` on each `width`-wide row of `x`, over rayon with `parallel`.
pub(crate) fn for_each_row<F>(x: &mut [f32], width: usize, f: F)
where
    F: Fn(&mut [f32]) + Sync + Send,
{
    #[cfg(feature = "parallel")]
    if pool_threaded() {
        use rayon::prelude::*;
        // Chunks of rows keep the per-task overhead small against cheap rows.
        let rows_per_task = (16384 / width.max(1)).max(1);
        x.par_chunks_mut(width * rows_per_task)
            .for_each(|chunk| chunk.chunks_exact_mut(width).for_each(&f));
        return;
    }
    x.chunks_exact_mut(width).for_each(f);
}

/// Runs `f(src_row, dst_row)` on each `width`-wide row pair of `src` and
/// `dst` (same length), over rayon with `parallel`.
pub(crate) fn for_each_row_pair<F>(src: &[f32], dst: &mut [f32], width: usize, f: F)
where
    F: Fn(&[f32], &mut [f32]) + Sync + Send,
{
    debug_assert_eq!(src.len(), dst.len());
    #[cfg(feature = "parallel")]
    if pool_threaded() {
        use rayon::prelude::*;
        let chunk = width * (16384 / width.max(1)).max(1);
        dst.par_chunks_mut(chunk)
            .zip(src.par_chunks(chunk))
            .for_each(|(d, s)| {
                d.chunks_exact_mut(width)
                    .zip(s.chunks_exact(width))
                    .for_each(|(d, s)| f(s, d))
            });
        return;
    }
    dst.chunks_exact_mut(width)
        .zip(src.chunks_exact(width))
        .for_each(|(d, s)| f(s, d));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SIMD-friendly `exp` stays within its documented 1e-7 relative
    /// error (plus half an f32 ulp of rounding) over the whole unclamped
    /// range, and saturates at the clamp edges.
    #[test]
    fn exp_f32_matches_f64_exp() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let (got, want) = (exp_f32(x) as f64, (x as f64).exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 1.6e-7, "worst relative error {worst:e}");
        assert!(exp_f32(-1000.0) > 0.0 && exp_f32(-1000.0) < 1e-37);
        assert_eq!(exp_f32(1000.0), f32::INFINITY);
    }

    /// Softmax rows sum to one, masked tails are zero.
    #[test]
    fn softmax_row_masks_and_normalises() {
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 9.0).collect();
        softmax_row(&mut row, 30);
        let sum: f32 = row[..30].iter().sum();
        assert!((sum - 1.0).abs() < 1e-6, "sum {sum}");
        assert!(row[30..].iter().all(|&v| v == 0.0));
    }
}

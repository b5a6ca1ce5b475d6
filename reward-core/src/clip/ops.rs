//! The numeric kernels of the CLIP towers on row-major f32 buffers: GEMM
//! (the `gemm` crate), linear layers with fused bias / activation /
//! residual, LayerNorm, softmax and the GELU family.
//!
//! Mirrors `torch.nn.Linear`, `torch.nn.LayerNorm` and the activations of
//! `transformers/activations.py` (`QuickGELUActivation`, `GELUActivation`,
//! `NewGELUActivation`). Threads (rayon) only with the `parallel` feature.

use alloc::vec;
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
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    // Internal invariants: violated only by a bug in this module's callers.
    assert_eq!(k, rhs.rows, "matmul: inner dimensions differ");
    assert!(
        lhs.in_bounds() && rhs.in_bounds(),
        "matmul: operand view out of bounds"
    );
    assert!(
        m == 0 || n == 0 || (m - 1) * dst_rs + n <= dst.len(),
        "matmul: dst too small"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every index of the three views inside
    // their slices; `dst` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
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
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    in_dim: usize,
    out_dim: usize,
}

impl Linear {
    /// Loads `weight` (and `bias` when `with_bias`) under `vb`.
    pub(crate) fn new(
        vb: &VarBuilder<'_, '_>,
        in_dim: usize,
        out_dim: usize,
        with_bias: bool,
    ) -> Result<Self, ClipError> {
        let weight = vb.get("weight", &[out_dim, in_dim])?;
        let bias = if with_bias {
            Some(vb.get("bias", &[out_dim])?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            in_dim,
            out_dim,
        })
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
            weight,
            bias,
            in_dim,
            out_dim,
        }
    }

    /// Stacks layers with one input width into one (e.g. q, k, v -> qkv),
    /// so a single GEMM computes all of them.
    pub(crate) fn concat(parts: Vec<Linear>) -> Self {
        let in_dim = parts.first().map_or(0, |p| p.in_dim);
        let out_dim = parts.iter().map(|p| p.out_dim).sum();
        let mut weight = Vec::with_capacity(in_dim * out_dim);
        let mut bias = Vec::with_capacity(out_dim);
        let with_bias = parts.iter().all(|p| p.bias.is_some());
        for p in parts {
            debug_assert_eq!(p.in_dim, in_dim);
            weight.extend_from_slice(&p.weight);
            bias.extend(p.bias.unwrap_or_else(|| vec![0.0; p.out_dim]));
        }
        Self {
            weight,
            bias: with_bias.then_some(bias),
            in_dim,
            out_dim,
        }
    }

    /// Output width.
    pub(crate) fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// `x[rows, in] @ W^T + b`.
    pub(crate) fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut out = vec![0.0; rows * self.out_dim];
        let accumulate = self.fill_bias(&mut out);
        self.gemm_into(&mut out, x, rows, accumulate);
        out
    }

    /// `residual += x @ W^T + b`: the residual add fused into the GEMM.
    pub(crate) fn forward_add(&self, x: &[f32], rows: usize, residual: &mut [f32]) {
        if let Some(bias) = &self.bias {
            for row in residual.chunks_exact_mut(self.out_dim) {
                row.iter_mut().zip(bias).for_each(|(r, b)| *r += b);
            }
        }
        self.gemm_into(residual, x, rows, true);
    }

    /// Writes the bias into every row of `out`; false when there is none.
    fn fill_bias(&self, out: &mut [f32]) -> bool {
        let Some(bias) = &self.bias else { return false };
        for row in out.chunks_exact_mut(self.out_dim) {
            row.copy_from_slice(bias);
        }
        true
    }

    fn gemm_into(&self, out: &mut [f32], x: &[f32], rows: usize, accumulate: bool) {
        let lhs = MatRef::dense(x, rows, self.in_dim);
        let rhs = MatRef::dense(&self.weight, self.out_dim, self.in_dim).t();
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
        let mut out = x.to_vec();
        for_each_row(&mut out, self.weight.len(), |row| self.norm_row(row));
        out
    }

    /// Normalises one row in place; statistics in f64 are cheap here and
    /// keep the parity with PyTorch's (f32, Welford) well inside 1e-6.
    pub(crate) fn norm_row(&self, row: &mut [f32]) {
        let n = row.len() as f64;
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let inv = 1.0 / (var + self.eps as f64).sqrt();
        for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
            *v = ((*v as f64 - mean) * inv) as f32 * w + b;
        }
    }
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

/// Applies `act` to every element in place.
pub(crate) fn activate(x: &mut [f32], width: usize, act: Activation) {
    match act {
        Activation::QuickGelu => {
            for_each_row(x, width, |row| simd::dispatch(row, quick_gelu_kernel))
        }
        Activation::Gelu => {
            let f = |v: f32| 0.5 * v * (1.0 + erf(v / core::f32::consts::SQRT_2));
            for_each_row(x, width, |row| row.iter_mut().for_each(|v| *v = f(*v)));
        }
        Activation::GeluTanh => {
            let f = |v: f32| {
                let inner = 0.797_884_6 * (v + 0.044_715 * v * v * v);
                0.5 * v * (1.0 + inner.tanh())
            };
            for_each_row(x, width, |row| row.iter_mut().for_each(|v| *v = f(*v)));
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
    let n = (x * core::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5.000_000_1e-1;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
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

/// Runs `f` on each `width`-wide row of `x`, over rayon with `parallel`.
pub(crate) fn for_each_row<F>(x: &mut [f32], width: usize, f: F)
where
    F: Fn(&mut [f32]) + Sync + Send,
{
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        // Chunks of rows keep the per-task overhead small against cheap rows.
        let rows_per_task = (16384 / width.max(1)).max(1);
        x.par_chunks_mut(width * rows_per_task)
            .for_each(|chunk| chunk.chunks_exact_mut(width).for_each(&f));
    }
    #[cfg(not(feature = "parallel"))]
    x.chunks_exact_mut(width).for_each(f);
}

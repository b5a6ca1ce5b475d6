//! Linear-layer weights packed once at load into the panel layout of the
//! `gemm` crate's AVX2 + FMA micro-kernel, and the small GEMM driver that
//! feeds that kernel (x86-64 only; elsewhere `ops::Linear` keeps its weight
//! row-major and calls `gemm::gemm`).
//!
//! Mirrors what `gemm::gemm` does for `dst = x @ W^T` with a row-major `dst`
//! (gemm-common 0.19, `gemm_basic_generic`): it computes `dst^T = W x^T`,
//! packs `W` into 16-row panels (`[k][16]`, one strided gather per call) and
//! hands 16 x 6 tiles to `gemm_f32::microkernel::fma::f32::x2x6`. Here the
//! panels are built once at load, `x` is read in place (6 rows, unit
//! stride along k, as `gemm` itself does when it does not pack the rhs), and
//! the bias (+ activation) is applied to each finished tile row while it is
//! still in L1, so a linear layer is one pass over its output instead of
//! three (pack, GEMM, bias/activation).

use alloc::vec;
use alloc::vec::Vec;

/// Output rows per panel: the micro-kernel's `MR` (two AVX vectors of f32).
const MR: usize = 16;
/// Rows of `x` per micro-kernel call: the micro-kernel's `NR`.
const NR: usize = 6;
/// Output columns per task block (8 panels, as `gemm`'s `mc` on AVX2): the
/// block of `W` a task sweeps `x` against (`MC x KC` floats) stays in L2.
const MC: usize = 8 * MR;
/// Largest depth block: 16 x 768 floats of `W` (48 KiB) per panel and
/// 6 x 768 of `x` (18 KiB) per call. Measured against 384 (gemm's choice
/// here) on the ViT-B/32 shapes: 2-6% faster with one depth block at k = 768,
/// equal at k = 3072 (docs/perf.md).
const MAX_KC: usize = 768;
/// Below this many multiply-adds a GEMM runs on the calling thread (as
/// `gemm`'s own threading threshold, 48 * 48 * 256).
#[cfg(feature = "parallel")]
const THREADING_THRESHOLD: usize = 48 * 48 * 256;

/// Whether this CPU runs the packed path (AVX2 and FMA, checked once).
pub(crate) fn available() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// A `[out, in]` weight as `ceil(out / 16)` panels of `[in][16]` (output
/// index fastest), the last panel zero-padded.
pub(crate) struct Panels {
    data: Vec<f32>,
    out_dim: usize,
    in_dim: usize,
}

impl Panels {
    /// Packs the row-major `[out_dim, in_dim]` weight `w`.
    pub(crate) fn pack(w: &[f32], out_dim: usize, in_dim: usize) -> Self {
        debug_assert_eq!(w.len(), out_dim * in_dim);
        let panels = out_dim.div_ceil(MR);
        let mut data = vec![0.0; panels * in_dim * MR];
        // `max(1)`: with in_dim 0 there is nothing to copy (chunks of 0 panic).
        for (p, panel) in data.chunks_exact_mut(in_dim.max(1) * MR).enumerate() {
            let rows = MR.min(out_dim - p * MR);
            for (r, row) in w[p * MR * in_dim..]
                .chunks_exact(in_dim)
                .take(rows)
                .enumerate()
            {
                // Writes with stride MR stay inside one 48 KiB panel (L2).
                for (dst, &v) in panel[r..].iter_mut().step_by(MR).zip(row) {
                    *dst = v;
                }
            }
        }
        Self {
            data,
            out_dim,
            in_dim,
        }
    }

    /// `dst[rows, out] = x[rows, in] @ W^T (+ dst when accumulate)`, then
    /// `epilogue(segment, first_column)` on each finished piece of a
    /// destination row (at most `MC` wide), while it is hot in cache.
    pub(crate) fn gemm<F>(
        &self,
        x: &[f32],
        rows: usize,
        dst: &mut [f32],
        accumulate: bool,
        threaded: bool,
        epilogue: F,
    ) where
        F: Fn(&mut [f32], usize) + Sync,
    {
        let (n, k) = (self.out_dim, self.in_dim);
        // Internal invariants: violated only by a bug in `ops::Linear`.
        assert!(
            x.len() >= rows * k && dst.len() >= rows * n,
            "packed gemm: buffers too small"
        );
        assert!(available(), "packed gemm: no AVX2/FMA");
        if rows == 0 || n == 0 {
            return;
        }
        if k == 0 {
            // An empty product: no depth block would run (and 0 / 0 blocks).
            let dst = &mut dst[..rows * n];
            if !accumulate {
                dst.fill(0.0);
            }
            dst.chunks_exact_mut(n).for_each(|row| epilogue(row, 0));
            return;
        }
        let blocks = n.div_ceil(MC);
        let parallel = threaded && use_threads(rows * n * k);
        let row_step = row_step(rows, blocks, parallel);
        let tasks = blocks * rows.div_ceil(row_step);
        let out = DstPtr(dst.as_mut_ptr());
        let run = |t: usize| {
            let (block, chunk) = (t % blocks, t / blocks);
            let cols = block * MC..(block * MC + MC).min(n);
            let r = chunk * row_step..(chunk * row_step + row_step).min(rows);
            // SAFETY: the CPU check and the size asserts above; tasks write
            // disjoint (row range x column block) pieces of `dst`.
            unsafe { self.task(x, out, r, cols, accumulate, &epilogue) };
        };
        #[cfg(feature = "parallel")]
        if parallel && tasks > 1 {
            use rayon::prelude::*;
            (0..tasks).into_par_iter().for_each(run);
            return;
        }
        (0..tasks).for_each(run);
    }

    /// One block: rows `r` x output columns `cols`, every depth block, then
    /// the epilogue row by row.
    ///
    /// # Safety
    /// AVX2 + FMA present; `x` holds `r.end` rows of `in_dim`; `dst` is a
    /// `[r.end, out_dim]` buffer whose block no other thread touches.
    unsafe fn task<F>(
        &self,
        x: &[f32],
        dst: DstPtr,
        r: core::ops::Range<usize>,
        cols: core::ops::Range<usize>,
        accumulate: bool,
        epilogue: &F,
    ) where
        F: Fn(&mut [f32], usize),
    {
        use gemm_f32::microkernel::fma::f32::UKR;
        let (n, k) = (self.out_dim, self.in_dim);
        let kc = k.div_ceil(k.div_ceil(MAX_KC));
        let mut depth = 0;
        while depth < k {
            let kb = kc.min(k - depth);
            // 0: overwrite dst, 1: dst += (the kernel's `alpha_status`).
            let status = u8::from(accumulate || depth > 0);
            let last = depth + kb == k;
            for row in r.clone().step_by(NR) {
                let nr = NR.min(r.end - row);
                let x_ptr = x[row * k + depth..].as_ptr();
                for col in cols.clone().step_by(MR) {
                    let mr = MR.min(n - col);
                    let panel = self.data[(col / MR) * k * MR + depth * MR..].as_ptr();
                    // SAFETY: the panel has kb x 16 floats from `panel`, x has
                    // nr rows of kb floats (row stride k), and dst's tile
                    // (nr rows, mr columns, row stride n) lies in this task's block.
                    unsafe {
                        UKR[mr.div_ceil(8) - 1][nr - 1](
                            mr,
                            nr,
                            kb,
                            dst.0.add(row * n + col),
                            panel,
                            x_ptr,
                            n as isize,
                            1,
                            MR as isize,
                            1,
                            k as isize,
                            1.0,
                            1.0,
                            status,
                            false,
                            false,
                            false,
                            core::ptr::null(),
                        )
                    };
                }
                if last {
                    for i in row..row + nr {
                        // SAFETY: this task's own block of row i.
                        let seg = unsafe {
                            core::slice::from_raw_parts_mut(
                                dst.0.add(i * n + cols.start),
                                cols.len(),
                            )
                        };
                        epilogue(seg, cols.start);
                    }
                }
            }
            depth += kb;
        }
    }
}

/// Rows per task: all of them on one thread; with threads, enough row
/// chunks (multiples of NR) for about four tasks per thread.
fn row_step(rows: usize, blocks: usize, threaded: bool) -> usize {
    #[cfg(feature = "parallel")]
    if threaded {
        let chunks = (4 * rayon::current_num_threads()).div_ceil(blocks).max(1);
        return rows.div_ceil(chunks).div_ceil(NR) * NR;
    }
    let _ = (blocks, threaded);
    rows
}

/// Whether a GEMM of `work` multiply-adds goes to the thread pool: only
/// when it is big enough and the pool has a second thread (see
/// `ops::pool_threaded`).
fn use_threads(work: usize) -> bool {
    #[cfg(feature = "parallel")]
    return work >= THREADING_THRESHOLD && super::ops::pool_threaded();
    #[cfg(not(feature = "parallel"))]
    {
        let _ = work;
        false
    }
}

/// The destination shared by the tasks (each writes its own block).
#[derive(Clone, Copy)]
struct DstPtr(*mut f32);
// SAFETY: tasks write disjoint blocks (see `Panels::gemm`).
unsafe impl Send for DstPtr {}
// SAFETY: as above.
unsafe impl Sync for DstPtr {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed path equals a naive f64 reference on edge shapes: output
    /// width not a multiple of 16 or 128, rows not a multiple of 6, depth
    /// above one block (several depth blocks), accumulate, epilogue columns.
    #[test]
    fn packed_gemm_matches_naive() {
        if !available() {
            return;
        }
        for &(rows, k, n) in &[
            (3, 0, 5),
            (1, 3, 1),
            (7, 33, 21),
            (50, 1700, 150),
            (13, 768, 272),
        ] {
            let x: Vec<f32> = (0..rows * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 9.0)
                .collect();
            let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
            let packed = Panels::pack(&w, n, k);
            for accumulate in [false, true] {
                let mut dst: Vec<f32> = (0..rows * n).map(|i| (i % 3) as f32).collect();
                let before = dst.clone();
                packed.gemm(&x, rows, &mut dst, accumulate, true, |seg, c0| {
                    seg.iter_mut().zip(&bias[c0..]).for_each(|(v, b)| *v += b)
                });
                for i in 0..rows {
                    for j in 0..n {
                        let dot: f64 = (0..k)
                            .map(|t| x[i * k + t] as f64 * w[j * k + t] as f64)
                            .sum();
                        let base = if accumulate {
                            before[i * n + j] as f64
                        } else {
                            0.0
                        };
                        let want = base + dot + bias[j] as f64;
                        let got = dst[i * n + j] as f64;
                        assert!(
                            (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "{rows}x{k}x{n} ({i},{j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

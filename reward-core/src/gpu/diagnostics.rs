//! Speed diagnostics for a lent GPU: one GEMM shape timed on the context's
//! GEMM kernel, whole and with parts of the cooperative kernel's main loop
//! left out ([`GemmProbe`]), so a short device session can tell whether
//! global reads, staging and barriers, or the tensor-core multiply-adds
//! bound the linear layers (`gpu_device_bench --probe`, docs/perf.md).
//! Native only (wall-clock timing).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::context::{GpuContext, Precision};
use super::error::GpuError;
use super::kernels::matmul::{Gemm, matmul};
use super::kernels::matmul_coop::{GemmProbe, covers};
use super::kernels::pattern;

/// One probe's time.
#[derive(Debug, Clone, PartialEq)]
pub struct GemmTiming {
    /// What ran.
    pub probe: GemmProbe,
    /// The GEMM kernel ([`GpuContext::gemm_kernel`]).
    pub kernel: String,
    /// Wall seconds per launch (the mean over one submission of
    /// `launches`, after a warm-up).
    pub seconds: f64,
    /// `2 m n k / seconds`, in TFLOP/s (for the partial probes: the rate
    /// the full product would have at that time).
    pub tflops: f64,
}

/// Times each of `probes` on an `m x n x k` GEMM (`out = a @ w^T`, operands
/// of a fixed pseudo-random pattern): one warm-up launch, then `launches`
/// launches in one submission. Probes other than [`GemmProbe::Full`] need
/// the cooperative GEMM (real or emulated) to cover the shape (k a
/// multiple of the tile's k step, f16).
pub fn probe_gemm(
    ctx: &GpuContext,
    (m, n, k): (usize, usize, usize),
    probes: &[GemmProbe],
    launches: usize,
) -> Result<Vec<GemmTiming>, GpuError> {
    if m == 0 || n == 0 || k == 0 || launches == 0 {
        return Err(GpuError::Input(format!(
            "probe_gemm: {m} x {n} x {k} with {launches} launches: every count must be positive"
        )));
    }
    let a = pollster::block_on(ctx.upload("probe a", &pattern(m * k, 1)))?;
    let w = pollster::block_on(ctx.upload("probe w", &pattern(n * k, 2)))?;
    let out = pollster::block_on(ctx.storage("probe out", bytes(ctx, m * n)))?;
    let mut timings = Vec::with_capacity(probes.len());
    for &probe in probes {
        let mut g = Gemm::new(m, n, k);
        g.probe = probe;
        if probe != GemmProbe::Full && !covers(ctx, &g) {
            return Err(GpuError::Input(format!(
                "probe {} needs the cooperative GEMM for {m} x {n} x {k}; this context runs {}",
                probe.name(),
                ctx.gemm_kernel()
            )));
        }
        let record = |count: usize| -> Result<Vec<_>, GpuError> {
            (0..count)
                .map(|_| pollster::block_on(matmul(ctx, &g, &a, &w, None, &out)))
                .collect()
        };
        pollster::block_on(ctx.run(&record(1)?, &out, 1))?;
        let work = record(launches)?;
        let start = std::time::Instant::now();
        pollster::block_on(ctx.run(&work, &out, 1))?;
        let seconds = start.elapsed().as_secs_f64() / launches as f64;
        timings.push(GemmTiming {
            probe,
            kernel: ctx.gemm_kernel(),
            seconds,
            tflops: 2.0 * (m * n * k) as f64 / seconds / 1e12,
        });
    }
    Ok(timings)
}

/// Device bytes of `count` elements at the context's precision.
fn bytes(ctx: &GpuContext, count: usize) -> u64 {
    let size = match ctx.precision() {
        Precision::F16 => 2,
        Precision::F32 => 4,
    };
    (count * size) as u64
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;

    use super::super::GpuOptions;
    use super::super::kernels::testing::context;
    use super::*;

    /// Every probe compiles and runs on the emulated cooperative GEMM
    /// (lavapipe) and reports a positive time; on the tiled kernel only
    /// the full GEMM can be probed and the others are errors naming it.
    #[test]
    fn every_probe_runs_where_the_cooperative_gemm_does() {
        let Some(plain) = context(Precision::F16) else {
            return;
        };
        let options = GpuOptions {
            precision: Some(Precision::F16),
            coop_tile: Some(crate::gpu::CoopTile::named("64x64/32x32-db-e2").unwrap()),
            emulate_cooperative_matrix: true,
            ..GpuOptions::default()
        };
        let ctx = GpuContext::new(&options).expect("emulated context");
        let timings = probe_gemm(&ctx, (70, 64, 64), &GemmProbe::ALL, 2).expect("probes");
        assert_eq!(timings.len(), 4);
        for t in &timings {
            assert!(t.seconds > 0.0 && t.tflops.is_finite(), "{t:?}");
            assert!(t.kernel.starts_with("coop"), "{t:?}");
        }
        let full = probe_gemm(plain, (33, 17, 40), &[GemmProbe::Full], 1).expect("tiled");
        assert!(full[0].kernel.starts_with("tiled") || plain.coop().is_some());
        if plain.coop().is_none() {
            let e = probe_gemm(plain, (33, 17, 64), &[GemmProbe::MmaOnly], 1).unwrap_err();
            assert!(
                e.to_string().contains("mma-only") && e.to_string().contains("tiled"),
                "{e}"
            );
        }
        let e = probe_gemm(plain, (0, 17, 64), &[GemmProbe::Full], 1).unwrap_err();
        assert!(e.to_string().contains("0 x 17 x 64"), "{e}");
    }
}

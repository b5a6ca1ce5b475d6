//! The WGSL compute kernels, one `<op>.wgsl` beside each `<op>.rs`.
//!
//! Every kernel binds its read-only inputs first, then its output, then a
//! `#[repr(C)]` params uniform. Workgroup sizes and tile shapes are defined
//! here, once, and prepended to the WGSL as `const`s; the element type `T`
//! (f32 or f16) is prepended the same way (see `context.rs`).

pub mod attention;
pub mod attention_flash;
pub mod attention_gemm;
pub(crate) mod coop_dialect;
// In-place activation kernel: the context tests' one-binding kernel (runs,
// faults, caches) and the activation snippet's wide-range check. The tower
// applies the activation in fc1's GEMM epilogue instead.
#[cfg(test)]
pub mod gelu;
pub mod layernorm;
pub mod matmul;
pub mod matmul_coop;
mod matmul_coop_source;
pub mod patch_embed;
pub mod scoring;
pub mod token_embed;

/// Invocations per workgroup of the one-dimensional kernels (the WebGPU
/// default `max_compute_invocations_per_workgroup`).
pub const WORKGROUP: u32 = 256;

/// Workgroups along x for `count` items of `per_group` each, spilling into y
/// past the 65,535-per-dimension limit; the kernels rebuild the flat index.
pub(crate) fn grid(count: u32, per_group: u32) -> [u32; 3] {
    let groups = count.div_ceil(per_group).max(1);
    let x = groups.min(MAX_GROUPS);
    [x, groups.div_ceil(x), 1]
}

/// WebGPU's default `max_compute_workgroups_per_dimension`.
pub(crate) const MAX_GROUPS: u32 = 65_535;

/// A `u32` from a size, or an input error naming what overflowed.
pub(crate) fn u32_of(value: usize, what: &str) -> Result<u32, super::GpuError> {
    u32::try_from(value)
        .map_err(|_| super::GpuError::Input(alloc::format!("{what} = {value} exceeds u32")))
}

/// Shared helpers of the kernel tests: one context per precision for the
/// whole test binary, deterministic data, and the tolerance check.
/// `len` values in [-1, 1) from a fixed linear congruential sequence: test
/// data and the operands of `gpu::probe_gemm`.
#[cfg(any(test, not(target_arch = "wasm32")))]
pub(crate) fn pattern(len: usize, seed: u64) -> alloc::vec::Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod testing {
    use alloc::vec::Vec;
    use std::sync::OnceLock;

    use super::super::context::{Dispatch, GpuContext, GpuOptions, Precision};

    static F32: OnceLock<Option<GpuContext>> = OnceLock::new();
    static F16: OnceLock<Option<GpuContext>> = OnceLock::new();

    /// The context for `precision`; `None` (test skipped with a note) only
    /// when `FISAO_SKIP_GPU_TESTS` is set and no adapter exists, or for f16
    /// on an adapter without `shader-f16`.
    pub(crate) fn context(precision: Precision) -> Option<&'static GpuContext> {
        let cell = match precision {
            Precision::F32 => &F32,
            Precision::F16 => &F16,
        };
        cell.get_or_init(|| {
            let options = GpuOptions {
                precision: Some(precision),
                ..GpuOptions::default()
            };
            // Every GPU test waits here for the shared context: a device
            // that never opens must fail them, not hang them.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                tx.send(GpuContext::new(&options).map(alloc::boxed::Box::new))
            });
            let opened = rx
                .recv_timeout(std::time::Duration::from_secs(90))
                .unwrap_or_else(|e| panic!("opening the {precision:?} test context: {e} (90 s)"));
            match opened {
                Ok(ctx) => Some(*ctx),
                Err(e) if precision == Precision::F16 => {
                    std::eprintln!("skipping f16 GPU tests: {e}");
                    None
                }
                Err(e) if std::env::var_os("FISAO_SKIP_GPU_TESTS").is_some() => {
                    std::eprintln!("skipping GPU tests: {e}");
                    None
                }
                Err(e) => {
                    panic!("{e} (install mesa-vulkan-drivers, or set FISAO_SKIP_GPU_TESTS=1)")
                }
            }
        })
        .as_ref()
    }

    /// Runs `dispatches` and reads `count` values of `out`.
    pub(crate) fn run(
        ctx: &GpuContext,
        dispatches: Vec<Dispatch>,
        out: &wgpu::Buffer,
        count: usize,
    ) -> Vec<f32> {
        pollster::block_on(ctx.run(&dispatches, out, count)).expect("kernel run")
    }

    /// Uploads values (blocking).
    pub(crate) fn upload(ctx: &GpuContext, values: &[f32]) -> wgpu::Buffer {
        pollster::block_on(ctx.upload("test input", values)).expect("upload")
    }

    /// `len` values in [-1, 1) from a fixed LCG.
    pub(crate) fn data(len: usize, seed: u64) -> Vec<f32> {
        super::pattern(len, seed)
    }

    /// The base options of an emulated cooperative-matrix context (f16),
    /// with the shared f16 test context: `None` (the test skips, saying
    /// why as `what`) where there is no f16 adapter or the adapter has
    /// real cooperative matrices (the hardware tests cover it there).
    pub(crate) fn emulation(what: &str) -> Option<(&'static GpuContext, GpuOptions)> {
        let Some(plain) = context(Precision::F16) else {
            std::eprintln!("{what} SKIPPED: no f16 adapter");
            return None;
        };
        if plain.coop().is_some() {
            std::eprintln!("{what} SKIPPED: the adapter has cooperative matrices");
            return None;
        }
        let options = GpuOptions {
            precision: Some(Precision::F16),
            emulate_cooperative_matrix: true,
            ..GpuOptions::default()
        };
        Some((plain, options))
    }

    /// The tolerance of a precision: 1e-4 (f32) or 1e-2 (f16), relative to
    /// the largest reference magnitude.
    pub(crate) fn tolerance(precision: Precision) -> f32 {
        match precision {
            Precision::F32 => 1e-4,
            Precision::F16 => 1e-2,
        }
    }

    /// Asserts `max |got - want| <= tol * max |want|` (and equal lengths).
    pub(crate) fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
        let (i, err) = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs())
            .enumerate()
            .fold((0, 0.0f32), |best, (i, e)| {
                if e > best.1 || e.is_nan() {
                    (i, e)
                } else {
                    best
                }
            });
        assert!(
            err <= tol * scale,
            "{what}: max error {err} at {i} (got {}, want {}) > {tol} x {scale}",
            got[i],
            want[i]
        );
    }

    /// A cooperative-matrix kernel compiled offline (naga, no adapter), as
    /// the device would receive it.
    pub(crate) struct CoopCompiled {
        /// Bytes of workgroup memory the WGSL declares.
        pub shared: u32,
        /// The SPIR-V words.
        pub words: Vec<u32>,
        /// Whether validation refuses it without the cooperative-matrix
        /// capability (the check with it is then not vacuous).
        pub needs_coop: bool,
    }

    /// Parses `src`, validates it with the capabilities the device opens
    /// with (f16, cooperative matrices, subgroups) and lowers it to SPIR-V;
    /// panics naming `what` on any failure.
    pub(crate) fn compile_coop(src: &str, what: &str) -> CoopCompiled {
        use wgpu::naga::valid::{Capabilities, ValidationFlags, Validator};
        let module = wgpu::naga::front::wgsl::parse_str(src)
            .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(src)));
        // Test-only: the large error is printed and panics, never passed on.
        #[allow(clippy::result_large_err)]
        let validate = |caps| Validator::new(ValidationFlags::all(), caps).validate(&module);
        let base =
            Capabilities::SHADER_FLOAT16 | Capabilities::SUBGROUP | Capabilities::SUBGROUP_BARRIER;
        let info = validate(base | Capabilities::COOPERATIVE_MATRIX)
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let shared = module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == wgpu::naga::AddressSpace::WorkGroup)
            .map(|(_, v)| module.types[v.ty].inner.size(module.to_ctx()))
            .sum();
        let options = wgpu::naga::back::spv::Options {
            lang_version: (1, 3),
            ..Default::default()
        };
        let words = wgpu::naga::back::spv::write_vec(&module, &info, &options, None)
            .unwrap_or_else(|e| panic!("{what}: SPIR-V output: {e:?}"));
        assert_eq!(words[0], 0x0723_0203, "{what}: SPIR-V magic");
        CoopCompiled {
            shared,
            words,
            needs_coop: validate(base).is_err(),
        }
    }

    /// Both precisions that this adapter supports.
    pub(crate) fn precisions() -> Vec<(&'static GpuContext, Precision)> {
        [Precision::F32, Precision::F16]
            .into_iter()
            .filter_map(|p| context(p).map(|c| (c, p)))
            .collect()
    }
}

//! The tensor-core GEMM: the contract of [`super::matmul`]
//! (`out = (accumulate ? out : 0) + alpha * a @ w^T + bias`, batched) on
//! 16 x 16 x 16 cooperative matrices (`wgpu_cooperative_matrix`, Vulkan
//! `VK_KHR_cooperative_matrix`), f16 operands, f32 accumulation.
//!
//! Mirrors the same `Linear::forward` / `matmul` in `clip/ops.rs` as
//! `matmul.rs`; [`super::matmul::matmul`] routes here only when
//! [`covers`] says so, and the portable kernel stays the fallback.

use super::super::context::{Dispatch, GpuContext, Precision};
use super::super::error::GpuError;
use super::matmul::{Gemm, Params, check_groups};
use super::u32_of;
use alloc::string::ToString;

/// Rows of `out` per workgroup (4 subgroups x 32 rows).
const BM: u32 = 128;
/// Columns of `out` per workgroup (2 subgroups x 64 columns).
const BN: u32 = 128;
/// The k step staged in workgroup memory; k must be a multiple of it.
const KT: u32 = 32;
/// Workgroup memory the kernel declares: the two staged operand tiles
/// (f16, rows padded to KT + 8) and eight 16 x 16 f32 epilogue tiles.
pub(crate) const SHARED_BYTES: u32 = (BM + BN) * (KT + 8) * 2 + 8 * 256 * 4;

/// Whether `g` runs on the cooperative kernel on `ctx`: the device opened
/// with a cooperative-matrix configuration (f16 only) and k is a positive
/// multiple of [`KT`] (every CLIP GEMM: k is 768, 1024, 3072 or 4096).
pub(crate) fn covers(ctx: &GpuContext, g: &Gemm) -> bool {
    ctx.coop().is_some() && ctx.precision() == Precision::F16 && g.k > 0 && g.k % KT as usize == 0
}

/// Records the GEMM on the cooperative kernel (call only where [`covers`]);
/// `None` when its pipeline fails to compile: wgpu's cooperative matrices
/// are experimental, so a driver or naga that rejects the kernel turns the
/// path off for this context (named by `GpuContext::gemm_kernel`) rather
/// than failing every forward pass.
pub(super) async fn matmul_coop(
    ctx: &GpuContext,
    g: &Gemm,
    params: &Params,
    a: &wgpu::Buffer,
    w: &wgpu::Buffer,
    bias: Option<&wgpu::Buffer>,
    out: &wgpu::Buffer,
) -> Result<Option<Dispatch>, GpuError> {
    let consts = [("BM", BM), ("BN", BN), ("KT", KT)];
    let source = include_str!("matmul_coop.wgsl");
    let pipeline = match ctx.pipeline("matmul_coop", source, &consts).await {
        Ok(p) => p,
        Err(e @ GpuError::DeviceLost(_)) => return Err(e),
        Err(e) => {
            ctx.coop_failed(e.to_string());
            return Ok(None);
        }
    };
    let groups = [
        params.n.div_ceil(BN).max(1),
        params.m.div_ceil(BM).max(1),
        u32_of(g.batch.max(1), "gemm batch")?,
    ];
    check_groups(g, groups)?;
    // An unused bias binding still needs a buffer; `w` is never written here.
    let bias = bias.unwrap_or(w);
    let mut d = Dispatch::new(pipeline, &[a, w, bias, out], params, groups);
    d.detail = Some(alloc::format!("{}x{}x{}", g.m, g.n, g.k));
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use super::super::super::context::shader_source;
    use super::super::matmul::tests::check;
    use super::super::testing::context;
    use super::*;

    /// The kernel's source exactly as the device would compile it.
    fn source() -> alloc::string::String {
        let consts = [("BM", BM), ("BN", BN), ("KT", KT)];
        shader_source(include_str!("matmul_coop.wgsl"), Precision::F16, &consts)
    }

    fn validate(
        module: &wgpu::naga::Module,
        caps: wgpu::naga::valid::Capabilities,
    ) -> Result<wgpu::naga::valid::ModuleInfo, alloc::string::String> {
        use wgpu::naga::valid::{ValidationFlags, Validator};
        Validator::new(ValidationFlags::all(), caps)
            .validate(module)
            .map_err(|e| alloc::format!("{e:?}"))
    }

    /// Runs everywhere (no adapter needed): the WGSL parses, validates with
    /// the capabilities the device is opened with, fits the workgroup
    /// memory it asks for, and lowers to SPIR-V with the cooperative
    /// multiply-add (what the Vulkan driver receives).
    #[test]
    fn the_kernel_validates_and_lowers_to_spirv() {
        use wgpu::naga::valid::Capabilities;
        let module = wgpu::naga::front::wgsl::parse_str(&source())
            .unwrap_or_else(|e| panic!("{}", e.emit_to_string(&source())));
        let caps = Capabilities::SHADER_FLOAT16
            | Capabilities::COOPERATIVE_MATRIX
            | Capabilities::SUBGROUP;
        let info = validate(&module, caps).expect("validates with the device's capabilities");
        // Without the capability the kernel must be refused: the check
        // above is not vacuous.
        assert!(
            validate(
                &module,
                Capabilities::SHADER_FLOAT16 | Capabilities::SUBGROUP
            )
            .is_err()
        );

        let shared: u32 = module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == wgpu::naga::AddressSpace::WorkGroup)
            .map(|(_, v)| module.types[v.ty].inner.size(module.to_ctx()))
            .sum();
        assert_eq!(shared, SHARED_BYTES, "SHARED_BYTES must match the WGSL");

        let options = wgpu::naga::back::spv::Options {
            lang_version: (1, 3),
            ..Default::default()
        };
        let words = wgpu::naga::back::spv::write_vec(&module, &info, &options, None)
            .expect("SPIR-V output");
        assert_eq!(words[0], 0x0723_0203, "SPIR-V magic");
        // Walk the instruction stream (word count in the high half of
        // each first word) and count the cooperative opcodes.
        let (mut at, mut muladd, mut loads) = (5, 0, 0);
        while at < words.len() {
            let (count, op) = ((words[at] >> 16) as usize, words[at] & 0xffff);
            assert!(count > 0, "malformed SPIR-V at word {at}");
            match op {
                4459 => muladd += 1, // OpCooperativeMatrixMulAddKHR
                4457 => loads += 1,  // OpCooperativeMatrixLoadKHR
                _ => {}
            }
            at += count;
        }
        assert_eq!(muladd, 8, "eight accumulators per k step");
        assert_eq!(loads, 6, "two A and four B tiles per k step");
    }

    #[test]
    fn shapes_it_does_not_cover_fall_back() {
        let Some(ctx) = context(Precision::F16).or_else(|| context(Precision::F32)) else {
            return;
        };
        let has = ctx.coop().is_some();
        assert_eq!(ctx.gemm_kernel().starts_with("coop"), has);
        assert_eq!(covers(ctx, &Gemm::new(9232, 1024, 4096)), has);
        assert!(
            !covers(ctx, &Gemm::new(64, 64, 48)),
            "k not a multiple of 32"
        );
        assert!(!covers(ctx, &Gemm::new(64, 64, 0)));
    }

    /// The tensor-core path against the CPU reference on edge shapes
    /// (m and n off the 128 tile and the 16 coop tile, bias, alpha,
    /// residual, batches). Runs where the adapter offers cooperative
    /// matrices (NVIDIA Vulkan); elsewhere it says it skipped.
    #[test]
    fn coop_gemm_matches_the_cpu_reference() {
        let Some(ctx) = context(Precision::F16) else {
            std::eprintln!("coop gemm parity SKIPPED: no f16 adapter");
            return;
        };
        if ctx.coop().is_none() {
            std::eprintln!(
                "coop gemm parity SKIPPED: {} has no 16x16x16 f16/f32 cooperative matrices",
                ctx.adapter_info().name
            );
            return;
        }
        for (m, n, k) in [(1, 1, 32), (17, 33, 64), (130, 70, 96), (577, 128, 1024)] {
            check(Gemm::new(m, n, k), true);
            // A kernel that failed to compile would have handed the GEMM to
            // the tiled kernel and passed: that must fail here.
            assert!(ctx.coop().is_some(), "{}", ctx.gemm_kernel());
        }
        let mut g = Gemm::new(200, 150, 4096);
        g.alpha = 0.125;
        g.accumulate = true;
        check(g, true);
        let mut g = Gemm::new(77, 64, 64);
        g.batch = 3;
        g.w_shared = false;
        check(g, false);
        g.w_shared = true;
        g.accumulate = true;
        check(g, true);
        assert!(ctx.coop().is_some(), "{}", ctx.gemm_kernel());
        std::eprintln!("coop gemm parity PASSED on {}", ctx.adapter_info().name);
    }
}

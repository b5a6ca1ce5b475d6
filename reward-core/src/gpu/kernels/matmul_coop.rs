//! The tensor-core GEMM: the contract of [`super::matmul`]
//! (`out = (accumulate ? out : 0) + alpha * a @ w^T + bias`, batched) on
//! 16 x 16 x 16 cooperative matrices (`wgpu_cooperative_matrix`, Vulkan
//! `VK_KHR_cooperative_matrix`), f16 operands, f32 accumulation.
//!
//! Mirrors the same `Linear::forward` / `matmul` in `clip/ops.rs` as
//! `matmul.rs`; [`super::matmul::matmul`] routes here only when
//! [`covers`] says so, and the portable kernel stays the fallback.
//!
//! The WGSL is generated per block shape ([`CoopTile`]): WGSL has no
//! arrays of cooperative matrices, so each subgroup's accumulators,
//! operand tiles and register-staged loads are written out one by one.
//! A workgroup of `32 x subgroups` invocations computes a `bm x bn` block
//! of `out`; k advances `kt` (16, 32 or 64) at a time: every invocation
//! reads its share of both operands' k block from global memory into
//! registers (vec4 of f16), stores it to workgroup memory (`[row][k]`, rows
//! padded to `kt + 8` halves so every 16 x 16 load stays 16-byte aligned),
//! and each subgroup multiplies its `16 tm x 16 tn` sub-block out of it
//! while the next k block is read (one staging buffer and two barriers per
//! k block, or two buffers and one barrier: `CoopTile::stages`). Rows past
//! m and columns past n are read as zeros and never stored; k must be a
//! multiple of `kt`. The epilogue goes through 16 x 16 f32 staging tiles
//! per subgroup (`CoopTile::epilogue` per barrier pair), so alpha, the
//! bias, the activation and the residual are applied in f32 and each value
//! is rounded to f16 once, one column or four at a time
//! (`CoopTile::store4`).
//!
//! The source is written by `matmul_coop_source.rs` around the fixed
//! snippets `matmul_coop_*.wgsl`. The matrix operations are spelled through
//! `coop_dialect.rs`: real
//! cooperative matrices, or the same kernel with them emulated in plain
//! WGSL (tests on any adapter). [`GemmProbe`] generates diagnostic forms
//! with parts of the main loop left out.

use alloc::format;
use alloc::string::{String, ToString};

use super::super::context::{Dispatch, GpuContext, Precision};
use super::super::error::GpuError;
use super::coop_dialect::CoopDialect;
use super::matmul::{Gemm, Params, check_groups};
use super::u32_of;

/// One block shape (and pipeline variant) of the cooperative GEMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoopTile {
    /// Name for [`crate::gpu::GpuOptions::coop_tile`] and `gemm_kernel`.
    pub name: &'static str,
    /// Rows of `out` per workgroup.
    pub bm: u32,
    /// Columns of `out` per workgroup.
    pub bn: u32,
    /// 16-row tiles per subgroup.
    pub tm: u32,
    /// 16-column tiles per subgroup.
    pub tn: u32,
    /// The k step staged in workgroup memory; k must be a multiple of it.
    pub kt: u32,
    /// Workgroup staging buffers: 1 (the next k block waits in registers;
    /// two barriers per k block) or 2 (double-buffered: the next block is
    /// staged while this one is multiplied; one barrier per k block).
    pub stages: u32,
    /// Accumulators written out per epilogue round (1 or 2; each round
    /// costs two workgroup barriers and 1 KiB of workgroup memory per
    /// subgroup and accumulator).
    pub epilogue: u32,
    /// Write the output four columns at a time (8-byte loads and stores)
    /// where the GEMM's output layout allows, else one at a time.
    pub store4: bool,
    /// Synchronise the epilogue rounds with subgroup barriers instead of
    /// workgroup ones: each subgroup's staging tiles are its own, so only
    /// its 32 lanes need to meet (needs the adapter's
    /// `SUBGROUP_BARRIER`; the emulated dialect keeps workgroup barriers,
    /// since its "subgroups" of 32 may span several real ones).
    pub subgroup_epilogue: bool,
    /// Stage the operands in `vec4<f16>` workgroup arrays (one 8-byte
    /// store per element group instead of four 2-byte ones, each with its
    /// own bounds clamp) and load the cooperative matrices from them with
    /// offsets and strides in vec4s, as SPIR-V allows for vector pointers.
    pub packed: bool,
}

impl CoopTile {
    /// A single-staged block shape with one accumulator per epilogue round;
    /// `name` is the whole variant's (the modifiers below set its flags).
    const fn new(name: &'static str, bm: u32, bn: u32, tm: u32, tn: u32, kt: u32) -> Self {
        Self {
            name,
            bm,
            bn,
            tm,
            tn,
            kt,
            stages: 1,
            epilogue: 1,
            store4: false,
            subgroup_epilogue: false,
            packed: false,
        }
    }

    /// With `stages` staging buffers and `epilogue` accumulators per
    /// epilogue round.
    const fn variant(self, stages: u32, epilogue: u32) -> Self {
        Self {
            stages,
            epilogue,
            ..self
        }
    }

    /// Writing four columns at a time.
    const fn wide(self) -> Self {
        Self {
            store4: true,
            ..self
        }
    }

    /// Staging its operands in `vec4` arrays.
    const fn packed_staging(self) -> Self {
        Self {
            packed: true,
            ..self
        }
    }

    /// With subgroup barriers around its epilogue rounds.
    const fn subgroup_synced(self) -> Self {
        Self {
            subgroup_epilogue: true,
            ..self
        }
    }
}

/// The block shapes, the default first. On a lent H200 (docs/perf.md,
/// 2026-11-27 session 5) `128x128/64x64` ran the tower's linear layers
/// fastest (fc1 ~96 TFLOP/s) and `64x64/32x32` the attention products
/// (`n` = 64 or k = 64); the others are kept for A/B runs
/// (`FISAO_GPU_COOP_TILE` in `gpu_device_bench`). The `-db` (double
/// buffered), `-e2` (two accumulators per epilogue round), `-v4` (output
/// written four columns at a time) and `-k16` variants were added in
/// session 6 without a GPU: correct on the emulated path (lavapipe), not
/// yet timed. The `-sb` variants (session 7, also untimed) meet at
/// subgroup barriers in the epilogue: 2 workgroup barriers per
/// accumulator otherwise, as many as the main loop of a k = 512 GEMM, and
/// the bulk of the attention products' (k = 64). The `-p4` variants
/// (session 7, untimed) stage the operands as `vec4`s. `GpuOptions::coop_batched_tile`
/// picks the attention products' shape among those with a k step of 16 or 32.
pub const COOP_TILES: [CoopTile; 24] = [
    CoopTile::new("128x128/64x64", 128, 128, 4, 4, 32),
    CoopTile::new("128x128/32x64", 128, 128, 2, 4, 32),
    CoopTile::new("128x256/64x64", 128, 256, 4, 4, 32),
    CoopTile::new("256x128/64x64", 256, 128, 4, 4, 32),
    CoopTile::new("64x64/32x32", 64, 64, 2, 2, 32),
    CoopTile::new("128x128/64x64-k64", 128, 128, 4, 4, 64),
    CoopTile::new("128x128/32x64-k64", 128, 128, 2, 4, 64),
    CoopTile::new("128x128/64x64-db", 128, 128, 4, 4, 32).variant(2, 1),
    CoopTile::new("128x128/64x64-e2", 128, 128, 4, 4, 32).variant(1, 2),
    CoopTile::new("128x128/64x64-k16-db", 128, 128, 4, 4, 16).variant(2, 1),
    CoopTile::new("128x128/32x64-db", 128, 128, 2, 4, 32).variant(2, 1),
    CoopTile::new("64x64/32x32-db-e2", 64, 64, 2, 2, 32).variant(2, 2),
    CoopTile::new("128x128/64x64-v4", 128, 128, 4, 4, 32).wide(),
    CoopTile::new("64x64/32x32-v4", 64, 64, 2, 2, 32).wide(),
    CoopTile::new("64x64/32x32-e2-v4", 64, 64, 2, 2, 32)
        .variant(1, 2)
        .wide(),
    CoopTile::new("128x128/64x64-sb", 128, 128, 4, 4, 32).subgroup_synced(),
    CoopTile::new("64x64/32x32-v4-sb", 64, 64, 2, 2, 32)
        .wide()
        .subgroup_synced(),
    CoopTile::new("128x128/64x64-db-v4-sb", 128, 128, 4, 4, 32)
        .variant(2, 1)
        .wide()
        .subgroup_synced(),
    CoopTile::new("128x128/64x64-p4", 128, 128, 4, 4, 32).packed_staging(),
    CoopTile::new("128x128/64x64-db-p4", 128, 128, 4, 4, 32)
        .variant(2, 1)
        .packed_staging(),
    CoopTile::new("64x64/32x32-p4", 64, 64, 2, 2, 32).packed_staging(),
    CoopTile::new("64x64/32x32-v4-p4", 64, 64, 2, 2, 32)
        .wide()
        .packed_staging(),
    // Combinations, so that one device call can time the likely winners.
    CoopTile::new("128x128/64x64-v4-p4", 128, 128, 4, 4, 32)
        .wide()
        .packed_staging(),
    CoopTile::new("64x64/32x32-v4-p4-sb", 64, 64, 2, 2, 32)
        .wide()
        .packed_staging()
        .subgroup_synced(),
];

/// The block shape of batched GEMMs with a weight per batch (the attention
/// products: `577 x 608 x 64` and `577 x 64 x 608` per head on ViT-L/14-336).
pub const BATCHED_TILE: CoopTile = COOP_TILES[4];

/// A diagnostic form of the cooperative GEMM with parts of its main loop
/// left out, to see which part bounds its speed (`gpu::probe_gemm`,
/// `gpu_device_bench --probe`). Only [`GemmProbe::Full`] computes the
/// product; the others write garbage of the right shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GemmProbe {
    /// The kernel the forward pass runs.
    #[default]
    Full,
    /// No global reads after the first k block: staging, barriers, tile
    /// loads and multiply-adds only.
    NoGlobalLoads,
    /// Operand tiles loaded once; the loop is the multiply-adds alone (the
    /// tensor-core ceiling through this API at this accumulator count).
    MmaOnly,
    /// Global reads, staging and barriers, no tile loads or multiply-adds.
    MemoryOnly,
}

impl GemmProbe {
    /// Every probe, [`GemmProbe::Full`] first.
    pub const ALL: [GemmProbe; 4] = [
        GemmProbe::Full,
        GemmProbe::NoGlobalLoads,
        GemmProbe::MmaOnly,
        GemmProbe::MemoryOnly,
    ];

    /// Short name (`full`, `no-global-loads`, `mma-only`, `memory-only`).
    pub fn name(self) -> &'static str {
        match self {
            GemmProbe::Full => "full",
            GemmProbe::NoGlobalLoads => "no-global-loads",
            GemmProbe::MmaOnly => "mma-only",
            GemmProbe::MemoryOnly => "memory-only",
        }
    }
}

impl CoopTile {
    /// The tile named `name` (an input error listing the names otherwise).
    pub fn named(name: &str) -> Result<Self, GpuError> {
        COOP_TILES
            .iter()
            .find(|t| t.name == name)
            .copied()
            .ok_or_else(|| {
                let names: alloc::vec::Vec<&str> = COOP_TILES.iter().map(|t| t.name).collect();
                GpuError::Input(format!(
                    "unknown cooperative GEMM tile {name:?}: one of {names:?}"
                ))
            })
    }

    /// Subgroups (of 32) per workgroup.
    pub(super) fn subgroups(&self) -> u32 {
        (self.bm / (16 * self.tm)) * (self.bn / (16 * self.tn))
    }

    /// Invocations per workgroup.
    pub(crate) fn invocations(&self) -> u32 {
        32 * self.subgroups()
    }

    /// Workgroup memory the kernel declares: the staged operand tiles (f16,
    /// rows padded to KT + 8, `stages` of them) and `epilogue` 16 x 16 f32
    /// tiles per subgroup.
    pub(crate) fn shared_bytes(&self) -> u32 {
        self.stages * (self.bm + self.bn) * (self.kt + 8) * 2
            + self.epilogue * self.subgroups() * 256 * 4
    }

    /// vec4 loads per invocation and k block: (a, w).
    pub(super) fn loads(&self) -> (u32, u32) {
        let per = |rows: u32| rows * self.kt / 4 / self.invocations();
        (per(self.bm), per(self.bn))
    }

    /// The constants prepended to [`Self::source`] (also the pipeline's
    /// cache key, so every tile is its own pipeline).
    pub(crate) fn consts(&self) -> [(&'static str, u32); 10] {
        [
            ("BM", self.bm),
            ("BN", self.bn),
            ("KT", self.kt),
            ("WG", self.invocations()),
            ("TM", self.tm),
            ("TN", self.tn),
            ("STAGES", self.stages),
            ("EPI", self.epilogue),
            ("SB", u32::from(self.subgroup_epilogue)),
            ("PACKED", u32::from(self.packed)),
        ]
    }

    /// The kernel's WGSL body in `form` (the constants are prepended by
    /// the context).
    pub(crate) fn source(&self, form: Form) -> String {
        super::matmul_coop_source::kernel_source(self, form)
    }
}

/// How one tile's kernel is generated besides its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Form {
    /// Hardware or emulated cooperative matrices.
    pub dialect: CoopDialect,
    /// The whole kernel or a diagnostic part of it.
    pub probe: GemmProbe,
    /// The four-column epilogue ([`CoopTile::store4`] and an output
    /// layout that allows it).
    pub store4: bool,
    /// `w` stored k-major ([`Gemm::w_by_k`]).
    pub w_by_k: bool,
}

/// Whether `g`'s output can be written four columns at a time: n, the
/// row stride, the base and the batch steps are multiples of 4.
fn output_in_quads(g: &Gemm) -> bool {
    let o = g.layout().o;
    (g.n | o.base | o.ld | o.outer | o.step) % 4 == 0
}

/// The block shape `g` runs on: the attention products (a `w` per batch)
/// on the context's batched tile ([`BATCHED_TILE`] by default), everything
/// else on its linear-layer tile.
fn tile_for(ctx: &GpuContext, g: &Gemm) -> CoopTile {
    match g.batched_w() {
        false => ctx.coop_tile(),
        true => ctx.batched_tile(),
    }
}

/// Whether `g` runs on the cooperative kernel on `ctx`: the device opened
/// with a cooperative-matrix configuration (f16 only), k is a positive
/// multiple of its tile's k step (every CLIP GEMM: k is 768, 1024, 3072 or
/// 4096; the attention products pad to their tile's) and every operand offset
/// and row stride is a multiple of 4 (the kernel reads vec4s).
pub(crate) fn covers(ctx: &GpuContext, g: &Gemm) -> bool {
    let l = g.layout();
    let aligned = [l.a, l.w]
        .iter()
        .all(|o| (o.base | o.ld | o.outer | o.step) % 4 == 0);
    ctx.coop().is_some()
        && ctx.precision() == Precision::F16
        && g.k > 0
        && g.k % tile_for(ctx, g).kt as usize == 0
        && aligned
        && (g.w_by_k.is_none() || g.n % 4 == 0)
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
    let tile = tile_for(ctx, g);
    let form = Form {
        dialect: ctx.coop_dialect(),
        probe: g.probe,
        store4: tile.store4 && output_in_quads(g),
        w_by_k: g.w_by_k.is_some(),
    };
    // The form is part of the pipeline's cache key.
    let mut consts = alloc::vec::Vec::from(tile.consts());
    consts.push(("PROBE", g.probe as u32));
    consts.push(("STORE4", u32::from(form.store4)));
    consts.push(("W_BY_K", u32::from(form.w_by_k)));
    let name = match form.dialect {
        CoopDialect::Hardware => "matmul_coop",
        CoopDialect::Emulated => "matmul_coop_emulated",
    };
    let generated = ctx.pipeline_generated(name, &consts, || tile.source(form));
    let pipeline = match generated.await {
        Ok(p) => p,
        Err(e @ GpuError::DeviceLost(_)) => return Err(e),
        Err(e) => {
            ctx.coop_failed(e.to_string());
            return Ok(None);
        }
    };
    let groups = [
        params.n.div_ceil(tile.bn).max(1),
        params.m.div_ceil(tile.bm).max(1),
        u32_of(g.batch.max(1), "gemm batch")?,
    ];
    check_groups(g, groups)?;
    // An unused bias binding still needs a buffer; `w` is never written here.
    let bias = bias.unwrap_or(w);
    let mut d = Dispatch::new(pipeline, &[a, w, bias, out], params, groups);
    d.detail = Some(format!("{}x{}x{}", g.m, g.n, g.k));
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use super::super::super::context::shader_source;
    use super::super::matmul::matmul;
    use super::super::matmul::tests::{check, check_on, check_strided_on};
    use super::super::testing::{compile_coop, context, emulation};
    use super::*;

    /// A tile's kernel exactly as the device would compile it.
    fn source(tile: &CoopTile, dialect: CoopDialect, probe: GemmProbe) -> alloc::string::String {
        let form = Form {
            dialect,
            probe,
            store4: tile.store4,
            w_by_k: false,
        };
        shader_source(&tile.source(form), Precision::F16, &tile.consts())
    }

    /// Runs everywhere: every tile's diagnostic probes validate and lower
    /// to SPIR-V, and the emulated form of every tile and probe validates
    /// without the cooperative-matrix capability (it needs none), including
    /// the tiles too big to run emulated on lavapipe.
    #[test]
    fn every_probe_and_emulated_kernel_validates() {
        for tile in COOP_TILES {
            for probe in GemmProbe::ALL {
                let what = alloc::format!("{} {}", tile.name, probe.name());
                let hw_source = source(&tile, CoopDialect::Hardware, probe);
                // Only the `-sb` tiles' hardware form meets at subgroup
                // barriers (the emulated one cannot: its subgroups are by index).
                assert_eq!(
                    hw_source.contains("subgroupBarrier"),
                    tile.subgroup_epilogue,
                    "{what}"
                );
                let emulated_source = source(&tile, CoopDialect::Emulated, probe);
                assert!(!emulated_source.contains("subgroupBarrier"), "{what}");
                let hw = compile_coop(&hw_source, &what);
                assert!(
                    hw.needs_coop,
                    "{what}: hardware form without the capability"
                );
                assert_eq!(hw.shared, tile.shared_bytes(), "{what}");
                let emu = compile_coop(&emulated_source, &what);
                assert!(
                    !emu.needs_coop,
                    "{what}: emulated form needs the capability"
                );
                assert_eq!(emu.shared, tile.shared_bytes(), "{what}");
            }
        }
    }

    /// Runs everywhere (no adapter needed), for every tile: the WGSL
    /// parses, validates with the capabilities the device is opened with,
    /// fits the workgroup memory it asks for, and lowers to SPIR-V with one
    /// cooperative multiply-add per accumulator (what the driver receives).
    #[test]
    fn every_tile_validates_and_lowers_to_spirv() {
        for tile in COOP_TILES {
            let (la, lw) = tile.loads();
            assert!(la > 0 && lw > 0, "{}: loads", tile.name);
            assert_eq!(
                la * tile.invocations() * 4,
                tile.bm * tile.kt,
                "{}: a loads",
                tile.name
            );
            assert_eq!(
                lw * tile.invocations() * 4,
                tile.bn * tile.kt,
                "{}: w loads",
                tile.name
            );
            assert!(tile.shared_bytes() <= 48 * 1024, "{}: shared", tile.name);
            let compiled = compile_coop(
                &source(&tile, CoopDialect::Hardware, GemmProbe::Full),
                tile.name,
            );
            assert!(
                compiled.needs_coop,
                "{}: validates without the capability",
                tile.name
            );
            assert_eq!(
                compiled.shared,
                tile.shared_bytes(),
                "{}: shared_bytes must match the WGSL",
                tile.name
            );
            let words = compiled.words;
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
            assert_eq!(
                muladd,
                tile.tm * tile.tn,
                "{}: one multiply-add per accumulator",
                tile.name
            );
            assert_eq!(
                loads,
                tile.tm + tile.tn,
                "{}: A and B tiles per k step",
                tile.name
            );
        }
    }

    #[test]
    fn a_batched_tile_with_a_k_step_of_64_is_refused() {
        if context(Precision::F32).is_none() {
            return;
        }
        let options = crate::gpu::GpuOptions {
            coop_batched_tile: Some(CoopTile::named("128x128/64x64-k64").unwrap()),
            ..crate::gpu::GpuOptions::default()
        };
        let e = crate::gpu::GpuContext::new(&options)
            .err()
            .expect("refused");
        let msg = e.to_string();
        assert!(
            msg.contains("128x128/64x64-k64") && msg.contains("16 or 32"),
            "{msg}"
        );
    }

    #[test]
    fn tiles_are_named_and_unknown_names_are_errors() {
        assert_eq!(CoopTile::named("128x256/64x64").unwrap().bn, 256);
        let e = CoopTile::named("huge").unwrap_err().to_string();
        assert!(e.contains("huge") && e.contains("128x128/32x64"), "{e}");
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

    /// The shapes every tile is checked on: off its tile in m, n and k,
    /// with bias, alpha, residual, activation, batches and strides; the
    /// residual GEMM runs `deep_k` deep (many k blocks).
    fn check_tile_on(ctx: &crate::gpu::GpuContext, tile: &CoopTile, deep_k: usize) {
        let mut batched = Gemm::new(77, 64, 64);
        batched.batch = 3;
        batched.w_shared = false;
        let mut residual = Gemm::new(300, 270, deep_k);
        residual.alpha = 0.125;
        residual.accumulate = true;
        let mut fc1 = Gemm::new(150, 140, 64);
        fc1.act = Some(crate::clip::Activation::QuickGelu);
        // n a multiple of 4: the four-column epilogue of `-v4` tiles, with
        // every part of it at once.
        let mut quads = Gemm::new(96, 132, 64);
        quads.alpha = 0.5;
        quads.accumulate = true;
        quads.act = Some(crate::clip::Activation::Gelu);
        for (g, bias) in [
            (fc1, true),
            (quads, true),
            (Gemm::new(1, 1, 32), true),
            (Gemm::new(130, 70, 96), false),
            (Gemm::new(257, 300, 128), true),
            (residual, true),
            (batched, false),
        ] {
            check_on(ctx, Precision::F16, g, bias);
        }
        check_strided_on(ctx, Precision::F16);
        check_w_by_k_on(ctx);
        // A kernel that failed to compile hands its GEMMs to the tiled
        // kernel, which would pass the checks above.
        assert!(ctx.coop().is_some(), "{}: {}", tile.name, ctx.gemm_kernel());
    }

    /// A k-major `w` read in place as the attention's `P @ V` does: two
    /// heads side by side in each k row, k rows past the valid ones filled
    /// with NaN (they must read as zeros), against the CPU reference on the
    /// `[n, k]` weights with those columns zeroed.
    fn check_w_by_k_on(ctx: &crate::gpu::GpuContext) {
        use super::super::matmul::tests::reference;
        use super::super::matmul::{Operand, Strided};
        use super::super::testing::{assert_close, data, run, tolerance, upload};
        let (m, n, k, valid, heads) = (70, 64, 128, 83, 2);
        let a = data(heads * m * k, 7);
        let stored = data(k * heads * n, 8);
        // Stored [k][heads * n]; the reference wants, per head, [n][k].
        let mut by_n = alloc::vec![0.0f32; heads * n * k];
        let mut buffer = stored.clone();
        for r in 0..k {
            for c in 0..heads * n {
                let (h, j) = (c / n, c % n);
                match r < valid {
                    true => by_n[h * n * k + j * k + r] = stored[r * heads * n + c],
                    false => buffer[r * heads * n + c] = f32::NAN,
                }
            }
        }
        let mut g = Gemm::new(m, n, k);
        g.batch = heads;
        g.w_by_k = Some(valid);
        let dense = |rows: usize, cols: usize| Operand {
            base: 0,
            ld: cols,
            outer: 0,
            step: rows * cols,
        };
        g.strided = Some(Strided {
            inner: heads,
            a: dense(m, k),
            w: Operand {
                base: 0,
                ld: heads * n,
                outer: 0,
                step: n,
            },
            o: dense(m, n),
        });
        let mut want_g = Gemm::new(m, n, k);
        want_g.batch = heads;
        want_g.w_shared = false;
        let init = alloc::vec![0.0f32; heads * m * n];
        let want = reference(&want_g, &a, &by_n, None, &init);
        let (ab, wb, out) = (upload(ctx, &a), upload(ctx, &buffer), upload(ctx, &init));
        let d = pollster::block_on(matmul(ctx, &g, &ab, &wb, None, &out)).expect("record");
        let got = run(ctx, alloc::vec![d], &out, init.len());
        assert_close(
            &got,
            &want,
            tolerance(Precision::F16),
            "gemm with a k-major w",
        );
    }

    /// On the tiled kernel a k-major `w` is an error naming the need, not
    /// a wrong product.
    #[test]
    fn a_k_major_w_without_the_cooperative_gemm_is_an_error() {
        let Some(ctx) = context(Precision::F32) else {
            return;
        };
        let b = super::super::testing::upload(ctx, &[0.0; 64]);
        let mut g = Gemm::new(4, 4, 4);
        g.w_by_k = Some(4);
        let e = pollster::block_on(matmul(ctx, &g, &b, &b, None, &b))
            .err()
            .expect("refused");
        assert!(
            e.to_string()
                .contains("k-major w needs the cooperative GEMM"),
            "{e}"
        );
    }

    /// Every block shape, its matrix operations emulated in plain WGSL,
    /// against the CPU reference: the generated tiling, staging (single
    /// and double buffered) and epilogue rounds run on any f16 adapter
    /// (lavapipe in CI). Tiles needing more workgroup memory than the
    /// adapter has are skipped (by name); on adapters with real
    /// cooperative matrices the test above covers every tile instead.
    #[test]
    fn every_tile_matches_the_cpu_reference_when_emulated() {
        use crate::gpu::{GpuContext, GpuOptions};
        let Some((plain, base)) = emulation("emulated coop parity") else {
            return;
        };
        let mut ran = alloc::vec::Vec::new();
        let mut seen = alloc::vec::Vec::new();
        for tile in COOP_TILES {
            // Variants whose emulated kernel is the same text (`-sb`: the
            // emulation keeps workgroup barriers) run once.
            let form = Form {
                dialect: CoopDialect::Emulated,
                probe: GemmProbe::Full,
                store4: tile.store4,
                w_by_k: false,
            };
            let text = (tile.source(form), tile.bm, tile.bn, tile.kt, tile.stages);
            if seen.contains(&text) {
                std::eprintln!(
                    "emulated coop tile {} SKIPPED: same kernel as one run",
                    tile.name
                );
                continue;
            }
            seen.push(text);
            let options = GpuOptions {
                coop_tile: Some(tile),
                coop_batched_tile: (32 % tile.kt == 0).then_some(tile),
                ..base.clone()
            };
            let ctx = match GpuContext::new(&options) {
                Ok(ctx) => ctx,
                Err(GpuError::RequestDevice(why)) if why.contains("workgroup memory") => {
                    std::eprintln!("emulated coop tile {} SKIPPED: {why}", tile.name);
                    continue;
                }
                Err(e) => panic!("{}: {e}", tile.name),
            };
            assert!(
                ctx.gemm_kernel().starts_with("coop-emulated"),
                "{}",
                ctx.gemm_kernel()
            );
            // 256 deep: 8 to 16 k blocks, a fifth of the hardware test's
            // time on lavapipe's scalar emulation.
            check_tile_on(&ctx, &tile, 256);
            ran.push(tile.name);
        }
        // Lavapipe (32 KiB of workgroup memory, CI's adapter) fits these;
        // together they cover both staging schemes, epilogue widths and
        // packed staging.
        if plain.adapter_info().device_type == wgpu::DeviceType::Cpu {
            for name in [
                "128x128/64x64",
                "64x64/32x32",
                "128x128/64x64-k16-db",
                "64x64/32x32-db-e2",
                "128x128/64x64-p4",
                "64x64/32x32-v4-p4",
            ] {
                assert!(ran.contains(&name), "{name} did not run: {ran:?}");
            }
        }
        std::eprintln!("emulated coop parity PASSED for {ran:?}");
    }

    /// Every block shape against the CPU reference on shapes off its tile
    /// (one context per tile); skipped where no adapter offers cooperative
    /// matrices.
    #[test]
    fn every_tile_matches_the_cpu_reference() {
        use crate::gpu::GpuOptions;
        if context(Precision::F16).is_none_or(|c| c.coop().is_none()) {
            std::eprintln!("coop tile parity SKIPPED: no cooperative matrices");
            return;
        }
        // Every shape runs even after one fails, so that one device run
        // reports all of them (the untimed variants are checked here first).
        let mut failed = alloc::vec::Vec::new();
        for tile in COOP_TILES {
            let options = GpuOptions {
                precision: Some(Precision::F16),
                coop_tile: Some(tile),
                coop_batched_tile: (32 % tile.kt == 0).then_some(tile),
                ..GpuOptions::default()
            };
            let run = std::panic::catch_unwind(|| {
                let ctx = crate::gpu::GpuContext::new(&options).expect("context");
                assert!(ctx.coop().is_some(), "{}: {}", tile.name, ctx.gemm_kernel());
                check_tile_on(&ctx, &tile, 1024);
                ctx.adapter_info().name.clone()
            });
            match run {
                Ok(adapter) => std::eprintln!("coop tile {} parity PASSED on {adapter}", tile.name),
                Err(_) => {
                    std::eprintln!("coop tile {} parity FAILED", tile.name);
                    failed.push(tile.name);
                }
            }
        }
        assert!(failed.is_empty(), "coop tiles that failed: {failed:?}");
    }
}

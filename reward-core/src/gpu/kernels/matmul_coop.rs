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
//! of `out`; k advances `kt` (32 or 64) at a time: every invocation reads its share
//! of both operands' k block from global memory into registers (vec4 of
//! f16), stores it to workgroup memory (`[row][k]`, rows padded to
//! `kt + 8` halves so every 16 x 16 load stays 16-byte aligned), and each
//! subgroup multiplies its `16 tm x 16 tn` sub-block out of it while the
//! next k block is read. Rows past m and columns past n are read as zeros
//! and never stored; k must be a multiple of `kt`. The epilogue goes
//! through a 16 x 16 f32 staging tile per subgroup, so alpha, the bias and
//! the residual are applied in f32 and each value is rounded to f16 once.

use alloc::format;
use alloc::string::{String, ToString};

use super::super::context::{Dispatch, GpuContext, Precision};
use super::super::error::GpuError;
use super::matmul::{Gemm, Params, check_groups};
use super::u32_of;

/// One block shape of the cooperative GEMM.
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
}

/// The block shapes, the default first. On a lent H200 (docs/perf.md,
/// 2026-11-27 session 5) `128x128/64x64` ran the tower's linear layers
/// fastest (fc1 ~96 TFLOP/s) and `64x64/32x32` the attention products
/// (`n` = 64 or k = 64); the others are kept for A/B runs
/// (`FISAO_GPU_COOP_TILE` in `gpu_device_bench`).
pub const COOP_TILES: [CoopTile; 7] = [
    CoopTile {
        name: "128x128/64x64",
        bm: 128,
        bn: 128,
        tm: 4,
        tn: 4,
        kt: 32,
    },
    CoopTile {
        name: "128x128/32x64",
        bm: 128,
        bn: 128,
        tm: 2,
        tn: 4,
        kt: 32,
    },
    CoopTile {
        name: "128x256/64x64",
        bm: 128,
        bn: 256,
        tm: 4,
        tn: 4,
        kt: 32,
    },
    CoopTile {
        name: "256x128/64x64",
        bm: 256,
        bn: 128,
        tm: 4,
        tn: 4,
        kt: 32,
    },
    CoopTile {
        name: "64x64/32x32",
        bm: 64,
        bn: 64,
        tm: 2,
        tn: 2,
        kt: 32,
    },
    CoopTile {
        name: "128x128/64x64-k64",
        bm: 128,
        bn: 128,
        tm: 4,
        tn: 4,
        kt: 64,
    },
    CoopTile {
        name: "128x128/32x64-k64",
        bm: 128,
        bn: 128,
        tm: 2,
        tn: 4,
        kt: 64,
    },
];

/// The block shape of batched GEMMs with a weight per batch (the attention
/// products: `577 x 608 x 64` and `577 x 64 x 608` per head on ViT-L/14-336).
pub const BATCHED_TILE: CoopTile = COOP_TILES[4];

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
    fn subgroups(&self) -> u32 {
        (self.bm / (16 * self.tm)) * (self.bn / (16 * self.tn))
    }

    /// Invocations per workgroup.
    pub(crate) fn invocations(&self) -> u32 {
        32 * self.subgroups()
    }

    /// Workgroup memory the kernel declares: both staged operand tiles (f16,
    /// rows padded to KT + 8) and one 16 x 16 f32 epilogue tile per subgroup.
    pub(crate) fn shared_bytes(&self) -> u32 {
        (self.bm + self.bn) * (self.kt + 8) * 2 + self.subgroups() * 256 * 4
    }

    /// vec4 loads per invocation and k block: (a, w).
    fn loads(&self) -> (u32, u32) {
        let per = |rows: u32| rows * self.kt / 4 / self.invocations();
        (per(self.bm), per(self.bn))
    }

    /// The constants prepended to [`Self::source`] (also the pipeline's
    /// cache key, so every tile is its own pipeline).
    pub(crate) fn consts(&self) -> [(&'static str, u32); 6] {
        [
            ("BM", self.bm),
            ("BN", self.bn),
            ("KT", self.kt),
            ("WG", self.invocations()),
            ("TM", self.tm),
            ("TN", self.tn),
        ]
    }

    /// The kernel's WGSL body (the constants are prepended by the context).
    pub(crate) fn source(&self) -> String {
        kernel_source(self)
    }
}

/// The block shape `g` runs on: the attention products (a `w` per batch)
/// on [`BATCHED_TILE`], everything else on the context's tile.
fn tile_for(ctx: &GpuContext, g: &Gemm) -> CoopTile {
    match g.batched_w() {
        false => ctx.coop_tile(),
        true => BATCHED_TILE,
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
    let consts = tile.consts();
    let generated = ctx.pipeline_generated("matmul_coop", &consts, || tile.source());
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

/// The fixed part of the kernel: bindings, workgroup tiles and helpers.
const PRELUDE: &str = r#"// Params, start() and store(): gemm_epilogue.wgsl.
@group(0) @binding(0) var<storage, read> a: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> bias: array<T>;
@group(0) @binding(3) var<storage, read_write> out: array<T>;
@group(0) @binding(4) var<uniform> p: Params;

// Padded row stride of the staged tiles, in halves.
const LDS: u32 = KT + 8u;
var<workgroup> sa: array<f16, BM * LDS>; // [row][k]
var<workgroup> sb: array<f16, BN * LDS>; // [col][k]: column-major B = w^T
var<workgroup> sc: array<f32, WG / 32u * 256u>; // one 16 x 16 tile per subgroup

// Element group i of one operand's k block: row i / (KT / 4), k quad
// i % (KT / 4); zeros past the operand's rows. `base` is the batch start;
// offsets and row strides are multiples of 4 (checked on the host).
fn read_a(i: u32, row0: u32, k0: u32, base: u32) -> vec4<f16> {
    let r = row0 + i / (KT / 4u);
    if (r < p.m) {
        return a[(base + r * p.la.y + k0) / 4u + i % (KT / 4u)];
    }
    return vec4<f16>(0.0);
}

fn read_w(i: u32, col0: u32, k0: u32, base: u32) -> vec4<f16> {
    let c = col0 + i / (KT / 4u);
    if (c < p.n) {
        return w[(base + c * p.lw.y + k0) / 4u + i % (KT / 4u)];
    }
    return vec4<f16>(0.0);
}

fn stage_a(i: u32, v: vec4<f16>) {
    let at = (i / (KT / 4u)) * LDS + (i % (KT / 4u)) * 4u;
    sa[at] = v.x;
    sa[at + 1u] = v.y;
    sa[at + 2u] = v.z;
    sa[at + 3u] = v.w;
}

fn stage_b(i: u32, v: vec4<f16>) {
    let at = (i / (KT / 4u)) * LDS + (i % (KT / 4u)) * 4u;
    sb[at] = v.x;
    sb[at + 1u] = v.y;
    sb[at + 2u] = v.z;
    sb[at + 3u] = v.w;
}

// Writes one 16 x 16 accumulator at (r0, c0) through the subgroup's
// staging tile. Called by every subgroup at the same point (uniform
// control flow for the barriers).
fn emit(acc: coop_mat16x16<f32, C>, sg: u32, lane: u32, r0: u32, c0: u32, obase: u32) {
    coopStoreT(acc, &sc[sg * 256u], 16u);
    workgroupBarrier();
    for (var e = lane; e < 256u; e += 32u) {
        store(r0 + e / 16u, c0 + e % 16u, sc[sg * 256u + e], obase);
    }
    workgroupBarrier();
}
"#;

/// The entry point of the generated cooperative kernels (here and
/// `attention_flash.rs`): invocation, workgroup, subgroup and lane ids.
pub(super) const COOP_MAIN: &str = "\n@compute @workgroup_size(WG, 1, 1)\nfn main(\n    \
    @builtin(local_invocation_index) t: u32,\n    \
    @builtin(workgroup_id) wid: vec3<u32>,\n    \
    @builtin(subgroup_id) sg: u32,\n    \
    @builtin(subgroup_invocation_id) lane: u32,\n) {\n";

/// The whole kernel for `t`: [`PRELUDE`] plus a main function with the
/// tile's accumulators and loads written out.
fn kernel_source(t: &CoopTile) -> String {
    let (la, lw) = t.loads();
    let mut s = String::from("enable wgpu_cooperative_matrix;\n");
    s.push_str(include_str!("activation.wgsl"));
    s.push_str(include_str!("gemm_epilogue.wgsl"));
    s.push_str(PRELUDE);
    s.push_str(COOP_MAIN);
    let sub_m = t.bm / (16 * t.tm);
    s.push_str("    let row0 = wid.y * BM;\n    let col0 = wid.x * BN;\n");
    s.push_str("    let abase = start(p.la, wid.z);\n    let wbase = start(p.lw, wid.z);\n");
    s.push_str(&format!(
        "    // Subgroup sg owns rows sm .. sm + {} and columns sn .. sn + {} of the block.\n",
        16 * t.tm,
        16 * t.tn
    ));
    s.push_str(&format!("    let sm = (sg % {sub_m}u) * {}u;\n", 16 * t.tm));
    s.push_str(&format!("    let sn = (sg / {sub_m}u) * {}u;\n", 16 * t.tn));
    for i in 0..t.tm {
        for j in 0..t.tn {
            s.push_str(&format!("    var c{i}_{j} = coop_mat16x16<f32, C>();\n"));
        }
    }
    let reads = |k0: &str, assign: bool| {
        let mut r = String::new();
        let decl = if assign { "" } else { "var " };
        for q in 0..la {
            r.push_str(&format!(
                "        {decl}a{q} = read_a(t + {}u, row0, {k0}, abase);\n",
                q * t.invocations()
            ));
        }
        for q in 0..lw {
            r.push_str(&format!(
                "        {decl}w{q} = read_w(t + {}u, col0, {k0}, wbase);\n",
                q * t.invocations()
            ));
        }
        r
    };
    s.push_str(&reads("0u", false).replace("        ", "    "));
    s.push_str("    for (var k0 = 0u; k0 < p.k; k0 += KT) {\n        workgroupBarrier();\n");
    for q in 0..la {
        s.push_str(&format!(
            "        stage_a(t + {}u, a{q});\n",
            q * t.invocations()
        ));
    }
    for q in 0..lw {
        s.push_str(&format!(
            "        stage_b(t + {}u, w{q});\n",
            q * t.invocations()
        ));
    }
    s.push_str(
        "        workgroupBarrier();\n        let next = k0 + KT;\n        if (next < p.k) {\n",
    );
    s.push_str(&reads("next", true).replace("        ", "            "));
    s.push_str("        }\n        for (var kk = 0u; kk < KT; kk += 16u) {\n");
    for i in 0..t.tm {
        s.push_str(&format!(
            "            let x{i} = coopLoadT<coop_mat16x16<f16, A>>(&sa[(sm + {}u) * LDS + kk], LDS);\n",
            16 * i
        ));
    }
    for j in 0..t.tn {
        s.push_str(&format!(
            "            let y{j} = coopLoad<coop_mat16x16<f16, B>>(&sb[(sn + {}u) * LDS + kk], LDS);\n",
            16 * j
        ));
    }
    for i in 0..t.tm {
        for j in 0..t.tn {
            s.push_str(&format!(
                "            c{i}_{j} = coopMultiplyAdd(x{i}, y{j}, c{i}_{j});\n"
            ));
        }
    }
    s.push_str("        }\n    }\n    let obase = start(p.lo, wid.z);\n");
    for i in 0..t.tm {
        for j in 0..t.tn {
            s.push_str(&format!(
                "    emit(c{i}_{j}, sg, lane, row0 + sm + {}u, col0 + sn + {}u, obase);\n",
                16 * i,
                16 * j
            ));
        }
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::super::super::context::shader_source;
    use super::super::matmul::tests::{check, check_on, check_strided_on};
    use super::super::testing::{compile_coop, context};
    use super::*;

    /// A tile's kernel exactly as the device would compile it.
    fn source(tile: &CoopTile) -> alloc::string::String {
        shader_source(&tile.source(), Precision::F16, &tile.consts())
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
            let compiled = compile_coop(&source(&tile), tile.name);
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
        for tile in COOP_TILES {
            let options = GpuOptions {
                precision: Some(Precision::F16),
                coop_tile: Some(tile),
                ..GpuOptions::default()
            };
            let ctx = crate::gpu::GpuContext::new(&options).expect("context");
            assert!(ctx.coop().is_some(), "{}: {}", tile.name, ctx.gemm_kernel());
            let mut batched = Gemm::new(77, 64, 64);
            batched.batch = 3;
            batched.w_shared = false;
            let mut residual = Gemm::new(300, 270, 1024);
            residual.alpha = 0.125;
            residual.accumulate = true;
            let mut fc1 = Gemm::new(150, 140, 64);
            fc1.act = Some(crate::clip::Activation::QuickGelu);
            for (g, bias) in [
                (fc1, true),
                (Gemm::new(1, 1, 32), true),
                (Gemm::new(130, 70, 96), false),
                (Gemm::new(257, 300, 128), true),
                (residual, true),
                (batched, false),
            ] {
                check_on(&ctx, Precision::F16, g, bias);
            }
            check_strided_on(&ctx, Precision::F16);
            assert!(ctx.coop().is_some(), "{}: {}", tile.name, ctx.gemm_kernel());
            std::eprintln!(
                "coop tile {} parity PASSED on {}",
                tile.name,
                ctx.adapter_info().name
            );
        }
    }
}

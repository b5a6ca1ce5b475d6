//! Flash attention on cooperative matrices (tensor cores) for equal-length,
//! non-causal sequences (the image tower): one kernel per layer, scores and
//! probabilities never leave workgroup memory.
//!
//! Same contract as the fused [`super::attention`] kernel (which mirrors
//! `Attention::context` in `clip/attention.rs`) and as
//! [`super::attention_gemm`]. A workgroup of 4 subgroups takes [`BQ`] = 64
//! queries of one (sequence, head), each subgroup 16 of them, and streams
//! the keys in blocks of [`BK`] = 64:
//!
//! 1. the key block is staged in workgroup memory (four halves per load,
//!    zeros past the end);
//! 2. each subgroup computes its 16 x 64 scores `Q K^T` on 16 x 16 x 16
//!    f16 tiles with f32 accumulation (Q was loaded into registers once)
//!    and stores them as f32;
//! 3. two lanes per query row take 32 scaled scores each into registers;
//!    the value block replaces the keys meanwhile;
//! 4. the lanes write the probabilities as f16 where Q was staged and sum
//!    them. The row maximum they are taken against may trail the true one
//!    by up to a slack of 8 (probabilities up to e^8, well inside f16), so
//!    the context is rescaled only when some row's maximum rises by more:
//!    always in the first block, rarely later (a flag every invocation
//!    reads with `workgroupUniformLoad`, whose barrier also publishes the
//!    probabilities). Rescaling goes through workgroup memory (a
//!    cooperative matrix cannot be scaled per row) and writes the block's
//!    probabilities again against the new maximum;
//! 5. `P V` is added on tensor cores.
//!
//! At the end each row is divided by its sum and written into the token
//! rows, heads side by side. Only for head dims that are multiples of 16
//! up to 64 (CLIP's is 64) on devices with cooperative matrices; the
//! source is generated because WGSL has no arrays of cooperative matrices.
//!
//! The session-5 form of this kernel (one lane per row running a two-pass
//! softmax over workgroup memory, the context rescaled through it after
//! every block) passed parity on the H200 but ran at 105 images/s against
//! 158 for the GEMM attention. This form is untimed (docs/perf.md).

use alloc::format;
use alloc::string::String;

use super::super::context::{Dispatch, GpuContext, Precision};
use super::super::error::GpuError;
use super::attention::Heads;
use super::coop_dialect::{CoopDialect, Role};
use super::{MAX_GROUPS, u32_of};

/// Queries per workgroup (4 subgroups x 16 rows), where the device has the
/// workgroup memory; else [`BQ_SMALL`].
pub(crate) const BQ: u32 = 64;
/// Queries per workgroup on devices with less workgroup memory (2
/// subgroups; lavapipe's 32 KiB, where the kernel runs emulated in tests).
const BQ_SMALL: u32 = 32;
/// Keys per block.
pub(crate) const BK: u32 = 64;
/// The queries per workgroup `ctx` has room for (`None`: not even
/// [`BQ_SMALL`]).
fn rows_per_group(ctx: &GpuContext) -> Option<u32> {
    [BQ, BQ_SMALL]
        .into_iter()
        .find(|&bq| shared_bytes(BK, bq) <= ctx.shared_limit())
}

/// The kernel's constants for head dim `d` and `bq` queries per workgroup
/// (one subgroup of 32 per 16 queries).
fn consts(d: u32, bq: u32) -> [(&'static str, u32); 4] {
    [("D", d), ("WG", 2 * bq), ("BQ", bq), ("BK", BK)]
}

/// Whether the flash kernel can run `heads` on `ctx`.
pub(crate) fn supports(ctx: &GpuContext, heads: Heads) -> bool {
    let ok_split = heads.heads > 0 && heads.hidden % heads.heads == 0;
    let d = heads.hidden / heads.heads.max(1);
    ctx.coop().is_some()
        && ctx.precision() == Precision::F16
        && rows_per_group(ctx).is_some()
        && ok_split
        && d % 16 == 0
        && (16..=BK as usize).contains(&d)
}

/// Workgroup memory of the kernel for head dim `d` and `bq` queries per
/// workgroup: Q / P tile, K / V tile (f16, rows padded by 8), the
/// per-subgroup f32 scores / context tile (rows padded by 4), two f32 per
/// half row (maxima, sums) and the two rescale flags.
pub(crate) fn shared_bytes(d: u32, bq: u32) -> u32 {
    let ls = d.max(BK) + 8;
    bq * ls * 2 + BK * ls * 2 + bq * (BK + 4) * 4 + 4 * bq * 4 + 8
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    hidden: u32,
    heads: u32,
    len: u32,
    scale: f32,
}

/// Records `out[rows, hidden]` = per-head attention of `qkv[rows, 3 *
/// hidden]` for `count` sequences of `len` tokens packed from row 0.
pub(crate) async fn attention_flash(
    ctx: &GpuContext,
    heads: Heads,
    len: usize,
    count: usize,
    qkv: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Dispatch, GpuError> {
    if !supports(ctx, heads) {
        return Err(GpuError::Input(format!(
            "flash attention needs cooperative matrices and a head dim of 16..64 in steps \
             of 16 (hidden {}, {} heads)",
            heads.hidden, heads.heads
        )));
    }
    let d = u32_of(heads.hidden / heads.heads, "head dim")?;
    // `supports` checked that some row count fits.
    let bq = rows_per_group(ctx).unwrap_or(BQ_SMALL);
    let consts = consts(d, bq);
    let dialect = ctx.coop_dialect();
    let name = match dialect {
        CoopDialect::Hardware => "attention_flash",
        CoopDialect::Emulated => "attention_flash_emulated",
    };
    let pipeline = ctx
        .pipeline_generated(name, &consts, || kernel_source(d / 16, dialect))
        .await?;
    let params = Params {
        hidden: u32_of(heads.hidden, "hidden size")?,
        heads: u32_of(heads.heads, "heads")?,
        len: u32_of(len, "sequence length")?,
        scale: (d as f32).powf(-0.5),
    };
    let groups = [
        params.len.div_ceil(bq).max(1),
        params.heads,
        u32_of(count, "sequences")?.max(1),
    ];
    if groups.iter().any(|&g| g > MAX_GROUPS) {
        return Err(GpuError::Input(format!(
            "flash attention over {count} sequences needs {groups:?} workgroups, above 65535"
        )));
    }
    Ok(Dispatch::new(pipeline, &[qkv, out], &params, groups))
}

/// The fixed part: bindings, workgroup tiles.
const PRELUDE: &str = r#"struct Params {
    hidden: u32,
    heads: u32,
    len: u32,
    scale: f32,
}

// qkv read four halves at a time (the head dim and the hidden size are
// multiples of 16).
@group(0) @binding(0) var<storage, read> qkv: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read_write> out: array<f16>;
@group(0) @binding(2) var<uniform> p: Params;

// Row stride (halves) of the f16 tiles and (floats) of the f32 tile.
const LS: u32 = max(D, BK) + 8u;
const LF: u32 = BK + 4u;
const MASKED: f32 = -3.0e38;
// A row's probabilities are taken against a running maximum that may
// trail the true one by up to this much (so they stay below e^8 ~ 2981,
// well inside f16); only a larger rise rescales the context.
const SLACK: f32 = 8.0;
var<workgroup> sq: array<f16, BQ * LS>; // Q, then P
var<workgroup> skv: array<f16, BK * LS>; // K block, then V block
var<workgroup> ss: array<f32, BQ * LF>; // scores, the context when rescaled (16 rows per subgroup)
var<workgroup> half_max: array<f32, 2u * BQ>; // each half row's block maximum, when rescaling
// (the factors go to half_sum: a lane still reading its partner's maximum
// must not see it overwritten)
var<workgroup> half_sum: array<f32, 2u * BQ>; // each row's rescale factor (twice) when rescaling; each half row's sum at the end
var<workgroup> rescale: array<u32, 2>; // set by a row that needs it; two slots, alternating
"#;

/// Staging of Q and of the key / value blocks, four halves per load.
const STAGING: &str = r#"
// Vec4 index of half `c` (a multiple of 4) of part `part` (0 q, 1 k, 2 v)
// of head h, token row `row`.
fn qkv_at(row: u32, part: u32, h: u32, c: u32) -> u32 {
    return (row * 3u * p.hidden + part * p.hidden + h * D + c) / 4u;
}

// Queries q0.. of head h of the sequence starting at row `first` into
// `sq` ([row][d]); zeros past the end.
fn stage_q(t: u32, first: u32, q0: u32, h: u32) {
    for (var i = t; i < BQ * D / 4u; i += WG) {
        let r = i / (D / 4u);
        let c = (i % (D / 4u)) * 4u;
        var v = vec4<f16>();
        if (q0 + r < p.len) {
            v = qkv[qkv_at(first + q0 + r, 0u, h, c)];
        }
        let o = r * LS + c;
        sq[o] = v.x;
        sq[o + 1u] = v.y;
        sq[o + 2u] = v.z;
        sq[o + 3u] = v.w;
    }
}

// Keys (part 1) or values (part 2) k0.. into `skv`; zeros past the end.
fn stage_kv(t: u32, first: u32, k0: u32, part: u32, h: u32) {
    for (var i = t; i < BK * D / 4u; i += WG) {
        let r = i / (D / 4u);
        let c = (i % (D / 4u)) * 4u;
        var v = vec4<f16>();
        if (k0 + r < p.len) {
            v = qkv[qkv_at(first + k0 + r, part, h, c)];
        }
        let o = r * LS + c;
        skv[o] = v.x;
        skv[o + 1u] = v.y;
        skv[o + 2u] = v.z;
        skv[o + 3u] = v.w;
    }
}
"#;

/// The whole kernel for `dt = d / 16` column tiles of the head.
fn kernel_source(dt: u32, dl: CoopDialect) -> String {
    let kt = BK / 16;
    let mut s = String::from(dl.header());
    s.push_str(PRELUDE);
    s.push_str(STAGING);
    s.push_str(&dl.helpers(&["sq", "skv"], false, &["ss"]));
    s.push_str(dl.main());
    s.push_str(
        "    let q0 = wid.x * BQ;\n    let h = wid.y;\n    let first = wid.z * p.len;\n    \
         if (q0 >= p.len) {\n        return;\n    }\n    \
         stage_q(t, first, q0, h);\n    if (t < 2u) {\n        rescale[t] = 0u;\n    }\n    \
         workgroupBarrier();\n    let qr = sg * 16u;\n    let sf = qr * LF;\n    \
         // Two lanes per query row, 32 of each key block's columns each.\n    \
         let row = qr + lane / 2u;\n    let half = lane % 2u;\n    \
         let sr = sf + (lane / 2u) * LF + half * 32u;\n    \
         var m_used = MASKED;\n    var l_part = 0.0;\n    var block_sum = 0.0;\n",
    );
    for i in 0..dt {
        let at = format!("qr * LS + {}u", 16 * i);
        let load = dl.load(Role::A, true, "sq", &at, "LS");
        s.push_str(&format!("    let qa{i} = {load};\n"));
    }
    for j in 0..dt {
        s.push_str(&format!("    var o{j} = {};\n", dl.zero()));
    }
    s.push_str(
        "    for (var k0 = 0u; k0 < p.len; k0 += BK) {\n        workgroupBarrier();\n        \
         stage_kv(t, first, k0, 1u, h);\n        workgroupBarrier();\n",
    );
    // Scores: kt key tiles x dt k-steps.
    for j in 0..kt {
        s.push_str(&format!("        var s{j} = {};\n", dl.zero()));
    }
    for i in 0..dt {
        for j in 0..kt {
            let at = format!("{}u * LS + {}u", 16 * j, 16 * i);
            let k = dl.load(Role::B, false, "skv", &at, "LS");
            let mma = dl.mma(&format!("qa{i}"), &k, &format!("s{j}"));
            s.push_str(&format!("        s{j} = {mma};\n"));
        }
    }
    store_row_tiles(&mut s, dl, "s", kt, "        ");
    // Each lane takes its half row of scaled scores into registers (keys
    // past the end masked) and flags a rise of the row maximum beyond the
    // slack; the keys are no longer needed, so the values replace them.
    s.push_str(
        "        workgroupBarrier();\n        let slot = (k0 / BK) % 2u;\n        var sv: array<f32, 32>;\n        \
         var hm = MASKED;\n        for (var c = 0u; c < 32u; c++) {\n            \
         var v = MASKED;\n            if (k0 + half * 32u + c < p.len) {\n                \
         v = ss[sr + c] * p.scale;\n            }\n            sv[c] = v;\n            \
         hm = max(hm, v);\n        }\n        if (hm > m_used + SLACK) {\n            \
         rescale[slot] = 1u;\n        }\n        stage_kv(t, first, k0, 2u, h);\n",
    );
    // The probabilities against the current maximum, as f16 where Q was
    // staged, before the flag is read: the barrier of that read also makes
    // them visible, so a block without a rise needs no barrier of its own.
    // (Where a row rises past the slack they may overflow; the rescale
    // below writes them again.)
    probabilities(&mut s, "        ");
    s.push_str(
        "        let raise = workgroupUniformLoad(&rescale[slot]);\n        if (t == 0u) {\n            \
         rescale[1u - slot] = 0u;\n        }\n        \
         if (raise != 0u) {\n            half_max[2u * row + half] = hm;\n            \
         workgroupBarrier();\n            \
         let m_new = max(m_used, max(half_max[2u * row], half_max[2u * row + 1u]));\n            \
         let a = exp(m_used - m_new);\n            l_part *= a;\n            m_used = m_new;\n            \
         half_sum[2u * row + half] = a;\n",
    );
    // The context is scaled through workgroup memory (a cooperative matrix
    // cannot be scaled per row in place), which the slack makes rare: the
    // first block, then only a rise of some row's maximum beyond it. (The
    // first block's context is zero, but skipping it would branch on the
    // loop counter, which naga does not count as uniform.)
    store_row_tiles(&mut s, dl, "o", dt, "            ");
    s.push_str(
        "            workgroupBarrier();\n            \
         for (var e = lane; e < 16u * D; e += 32u) {\n                \
         let r = e / D;\n                ss[sf + r * LF + e % D] *= half_sum[2u * (qr + r)];\n            \
         }\n            workgroupBarrier();\n",
    );
    for j in 0..dt {
        let at = format!("sf + {}u", 16 * j);
        let load = dl.load(Role::C, true, "ss", &at, "LF");
        s.push_str(&format!("            o{j} = {load};\n"));
    }
    probabilities(&mut s, "            ");
    s.push_str("            workgroupBarrier();\n        }\n        l_part += block_sum;\n");
    // O += P V: kt k-steps x dt output tiles.
    for k in 0..kt {
        let at = format!("qr * LS + {}u", 16 * k);
        let load = dl.load(Role::A, true, "sq", &at, "LS");
        s.push_str(&format!("        let pa{k} = {load};\n"));
        for j in 0..dt {
            let at = format!("{}u * LS + {}u", 16 * k, 16 * j);
            let v = dl.load(Role::B, true, "skv", &at, "LS");
            let mma = dl.mma(&format!("pa{k}"), &v, &format!("o{j}"));
            s.push_str(&format!("        o{j} = {mma};\n"));
        }
    }
    s.push_str("    }\n    half_sum[2u * row + half] = l_part;\n    workgroupBarrier();\n");
    store_row_tiles(&mut s, dl, "o", dt, "    ");
    s.push_str(
        "    workgroupBarrier();\n    for (var e = lane; e < 16u * D; e += 32u) {\n        \
         let r = e / D;\n        let q = q0 + qr + r;\n        if (q < p.len) {\n            \
         let l = half_sum[2u * (qr + r)] + half_sum[2u * (qr + r) + 1u];\n            \
         out[(first + q) * p.hidden + h * D + e % D] = f16(ss[sf + r * LF + e % D] / l);\n        \
         }\n    }\n}\n",
    );
    s
}

/// The lane's 32 probabilities `exp(score - m_used)` into its half row of
/// `sq` (f16) and their sum into `block_sum`, indented by `pad`.
fn probabilities(s: &mut String, pad: &str) {
    s.push_str(&format!(
        "{pad}block_sum = 0.0;\n{pad}for (var c = 0u; c < 32u; c++) {{\n{pad}    \
         let e = exp(sv[c] - m_used);\n{pad}    block_sum += e;\n{pad}    \
         sq[row * LS + half * 32u + c] = f16(e);\n{pad}}}\n"
    ));
}

/// Stores accumulators `{name}0 .. {name}{count - 1}` side by side into
/// the subgroup's f32 rows of `ss` (16 columns each), indented by `pad`.
fn store_row_tiles(s: &mut String, dl: CoopDialect, name: &str, count: u32, pad: &str) {
    for j in 0..count {
        let at = format!("sf + {}u", 16 * j);
        let store = dl.store(&format!("{name}{j}"), "ss", &at, "LF");
        s.push_str(&format!("{pad}{store}\n"));
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;
    use alloc::vec::Vec;

    use super::super::super::context::shader_source;
    use super::super::attention::tests::reference;
    use super::super::testing::{
        assert_close, compile_coop, context, data, emulation, run, tolerance, upload,
    };
    use super::*;

    /// Runs everywhere: for every supported head dim the WGSL parses,
    /// validates with the cooperative-matrix capabilities, declares the
    /// workgroup memory [`shared_bytes`] says, and lowers to SPIR-V.
    #[test]
    fn the_kernel_validates_for_every_head_dim() {
        for bq in [BQ, BQ_SMALL] {
            for d in [16u32, 32, 48, 64] {
                let what = alloc::format!("d = {d}, {bq} rows");
                let consts = consts(d, bq);
                let form = |dialect| kernel_source(d / 16, dialect);
                let src = shader_source(&form(CoopDialect::Hardware), Precision::F16, &consts);
                let compiled = compile_coop(&src, &what);
                assert!(
                    compiled.needs_coop,
                    "{what}: validates without the capability"
                );
                let src = shader_source(&form(CoopDialect::Emulated), Precision::F16, &consts);
                let emu = compile_coop(&src, &alloc::format!("emulated {what}"));
                assert!(
                    !emu.needs_coop,
                    "{what}: emulated form needs the capability"
                );
                assert_eq!(emu.shared, compiled.shared, "{what}");
                assert_eq!(compiled.shared, shared_bytes(d, bq), "{what}");
                assert!(
                    compiled.shared <= 48 * 1024,
                    "{what}: {} bytes",
                    compiled.shared
                );
            }
        }
        // Lavapipe's 32 KiB fits the small form (the emulated parity test).
        assert!(shared_bytes(BK, BQ_SMALL) <= 32 * 1024);
    }

    /// Against the CPU reference where the adapter has cooperative
    /// matrices (NVIDIA Vulkan); elsewhere it says it skipped.
    #[test]
    fn flash_attention_matches_the_cpu_reference() {
        let Some(ctx) = context(Precision::F16).filter(|c| c.coop().is_some()) else {
            std::eprintln!("flash attention parity SKIPPED: no cooperative matrices");
            return;
        };
        // One token, lengths off the 64-key and the query blocks, ViT-L's
        // 577, head dims 32 to 64, several sequences.
        let shapes = [
            (1, 1, 64, 1),
            (2, 5, 64, 2),
            (3, 50, 128, 2),
            (1, 577, 128, 2),
            (2, 65, 96, 3),
            (1, 130, 64, 2),
        ];
        check_parity(ctx, &shapes);
        check_parity_ramped(ctx, &[(2, 200, 64, 2), (1, 577, 128, 2)], 0.05);
    }

    /// The same on the emulated cooperative matrices (any f16 adapter:
    /// lavapipe in CI, where 32 queries per workgroup fit).
    #[test]
    fn flash_attention_matches_the_cpu_reference_when_emulated() {
        let Some((_, options)) = emulation("emulated flash parity") else {
            return;
        };
        let ctx = crate::gpu::GpuContext::new(&options).expect("emulated context");
        assert!(
            rows_per_group(&ctx).is_some(),
            "no room: {}",
            ctx.shared_limit()
        );
        // Head dim 32 only: lavapipe's compiler takes ~50 s for the
        // emulated d = 64 kernel (twice the unrolled tile operations), and
        // d only sets how many column tiles the generator writes out. Still
        // one token, several key and query blocks, masking, three heads.
        check_parity(
            &ctx,
            &[
                (1, 1, 32, 1),
                (2, 5, 64, 2),
                (2, 65, 96, 3),
                (1, 130, 64, 2),
            ],
        );
        check_parity_ramped(&ctx, &[(2, 200, 64, 2)], 0.05);
    }

    /// `(sequences, length, hidden, heads)` against the CPU reference.
    fn check_parity(ctx: &crate::gpu::GpuContext, shapes: &[(usize, usize, usize, usize)]) {
        check_parity_ramped(ctx, shapes, 0.0);
    }

    /// The same with the keys of position `i` scaled by `1 + ramp * i`: a
    /// positive ramp makes later key blocks raise the row maxima by more
    /// than the kernel's slack, so that the context is rescaled in the
    /// middle of a row as well as after the first block.
    fn check_parity_ramped(
        ctx: &crate::gpu::GpuContext,
        shapes: &[(usize, usize, usize, usize)],
        ramp: f32,
    ) {
        for &(count, len, hidden, heads) in shapes {
            let rows = count * len;
            let seqs: Vec<_> = (0..count).map(|i| i * len..(i + 1) * len).collect();
            let mut qkv: Vec<f32> = data(rows * 3 * hidden, 51)
                .iter()
                .map(|v| v * 2.0)
                .collect();
            for (row, values) in qkv.chunks_exact_mut(3 * hidden).enumerate() {
                let gain = 1.0 + ramp * (row % len) as f32;
                values[hidden..2 * hidden]
                    .iter_mut()
                    .for_each(|v| *v *= gain);
            }
            let want = reference(&qkv, &seqs, hidden, heads, false);
            let qb = upload(ctx, &qkv);
            let out = upload(ctx, &vec![f32::NAN; rows * hidden]);
            let shape = Heads { hidden, heads };
            let d = pollster::block_on(attention_flash(ctx, shape, len, count, &qb, &out))
                .expect("record");
            let got = run(ctx, vec![d], &out, rows * hidden);
            let what = alloc::format!("flash attention {count} x {len}, {hidden}/{heads}");
            assert_close(&got, &want, tolerance(Precision::F16), &what);
        }
        std::eprintln!(
            "flash attention parity PASSED on {} ({})",
            ctx.adapter_info().name,
            ctx.gemm_kernel()
        );
    }

    #[test]
    fn unsupported_shapes_are_input_errors() {
        let Some(ctx) = context(Precision::F32) else {
            return;
        };
        let b = upload(ctx, &[0.0; 4]);
        let shape = Heads {
            hidden: 10,
            heads: 1,
        };
        let e = pollster::block_on(attention_flash(ctx, shape, 1, 1, &b, &b));
        assert!(matches!(e, Err(GpuError::Input(m)) if m.contains("head dim")));
    }
}

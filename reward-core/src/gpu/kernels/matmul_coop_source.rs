//! The WGSL source of the cooperative GEMM ([`super::matmul_coop`]) for one
//! block shape and [`Form`]: the fixed snippets (`matmul_coop_*.wgsl`) and
//! a main function with the tile's accumulators, loads and epilogue
//! rounds written out (WGSL has no arrays of cooperative matrices).

use alloc::format;
use alloc::string::String;

use super::coop_dialect::{CoopDialect, Role};
use super::matmul_coop::{CoopTile, Form, GemmProbe};

/// The fixed part of the kernel: bindings, workgroup tiles and helpers.
const PRELUDE: &str = include_str!("matmul_coop_prelude.wgsl");

/// The weight operand stored `[n][k]` (the linear layers' `w`, the keys):
/// staged column-major, `[col][k]`, i.e. `w^T` without a transpose.
const B_BY_N: &str = include_str!("matmul_coop_b_by_n.wgsl");

/// The weight operand stored `[k][n]` (`Gemm::w_by_k`: the values of a
/// head read in place): element group i is k row i / (BN / 4), column quad
/// i % (BN / 4); staged row-major, `[k][col]`; k rows past `p.wk` and
/// columns past n (a multiple of 4) read as zeros.
const B_BY_K: &str = include_str!("matmul_coop_b_by_k.wgsl");

/// The output and epilogue, one element per store (gemm_store.wgsl's
/// `store`, shared with the tiled kernel).
const SCALAR_STORE: &str = include_str!("matmul_coop_store.wgsl");

/// The output and epilogue four columns at a time (`CoopTile::store4`):
/// one 8-byte load and store per quad instead of four 2-byte ones. Only
/// where n, the output's row stride, offsets and batch steps are
/// multiples of 4 (checked on the host), so that a quad is all inside
/// `n` or all outside.
const STORE4: &str = include_str!("matmul_coop_store4.wgsl");

/// The whole kernel for `t` in `dialect`: [`PRELUDE`] plus a main
/// function with the tile's accumulators and loads written out.
pub(super) fn kernel_source(t: &CoopTile, form: Form) -> String {
    let (d, probe) = (form.dialect, form.probe);
    let mut s = String::from(d.header());
    s.push_str(include_str!("activation.wgsl"));
    s.push_str(include_str!("gemm_params.wgsl"));
    s.push_str(PRELUDE);
    s.push_str(if form.w_by_k { B_BY_K } else { B_BY_N });
    s.push_str(&staging(t, form.w_by_k));
    match form.store4 {
        true => s.push_str(STORE4),
        false => {
            s.push_str(include_str!("gemm_store.wgsl"));
            s.push_str(SCALAR_STORE);
        }
    }
    s.push_str(&d.helpers(&["sa", "sb"], t.packed, &["sc"]));
    s.push_str(d.main());
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
            s.push_str(&format!("    var c{i}_{j} = {};\n", d.zero()));
        }
    }
    let global = probe != GemmProbe::NoGlobalLoads;
    match (probe, t.stages) {
        (GemmProbe::MmaOnly, _) => mma_only_loop(&mut s, t, form),
        (_, 1) => main_loop_single(&mut s, t, global),
        _ => main_loop_double(&mut s, t, global),
    }
    if probe != GemmProbe::MmaOnly {
        multiply_block(&mut s, t, form, probe != GemmProbe::MemoryOnly);
    }
    s.push_str("    }\n");
    epilogue_rounds(&mut s, t, d);
    s.push_str("}\n");
    s
}

/// The staged operand tiles `sa` (`[stage][row][k]`) and `sb` (`[stage][col][k]`,
/// or `[stage][k][col]` when `w_by_k`) and the functions that store element
/// group `i` of a k block into buffer `stage`: f16 arrays written four
/// halves at a time, or, on packed tiles ([`CoopTile::packed`]), `vec4<f16>`
/// arrays written with one 8-byte store (every group starts at a multiple
/// of 4 halves: rows are padded to a multiple of 8).
fn staging(t: &CoopTile, w_by_k: bool) -> String {
    let b_rows = if w_by_k { "KT * LDB" } else { "BN * LDS" };
    let b_at = match w_by_k {
        false => "stage * BN * LDS + (i / (KT / 4u)) * LDS + (i % (KT / 4u)) * 4u",
        true => "stage * KT * LDB + (i / (BN / 4u)) * LDB + (i % (BN / 4u)) * 4u",
    };
    let a_at = "stage * BM * LDS + (i / (KT / 4u)) * LDS + (i % (KT / 4u)) * 4u";
    let mut s = String::new();
    for (array, name, len, at) in [
        ("sa", "stage_a", "BM * LDS", a_at),
        ("sb", "stage_b", b_rows, b_at),
    ] {
        let (decl, store) = match t.packed {
            false => (
                format!("var<workgroup> {array}: array<f16, STAGES * {len}>;\n"),
                format!(
                    "    {array}[at] = v.x;\n    {array}[at + 1u] = v.y;\n    \
                     {array}[at + 2u] = v.z;\n    {array}[at + 3u] = v.w;\n"
                ),
            ),
            true => (
                format!("var<workgroup> {array}: array<vec4<f16>, STAGES * {len} / 4u>;\n"),
                format!("    {array}[at / 4u] = v;\n"),
            ),
        };
        s.push_str(&decl);
        s.push_str(&format!(
            "fn {name}(i: u32, v: vec4<f16>, stage: u32) {{\n    let at = {at};\n{store}}}\n"
        ));
    }
    s
}

/// Global reads of one k block into registers `a*` / `w*` (declared with
/// `var` the first time), indented by `pad`.
fn reads(t: &CoopTile, k0: &str, declare: bool, pad: &str) -> String {
    let (la, lw) = t.loads();
    let decl = if declare { "var " } else { "" };
    let mut r = String::new();
    for q in 0..la {
        let i = q * t.invocations();
        r.push_str(&format!(
            "{pad}{decl}a{q} = read_a(t + {i}u, row0, {k0}, abase);\n"
        ));
    }
    for q in 0..lw {
        let i = q * t.invocations();
        r.push_str(&format!(
            "{pad}{decl}w{q} = read_w(t + {i}u, col0, {k0}, wbase);\n"
        ));
    }
    r
}

/// The registers `a*` / `w*` into staging buffer `stage`.
fn stores(t: &CoopTile, stage: &str, pad: &str) -> String {
    let (la, lw) = t.loads();
    let mut r = String::new();
    for q in 0..la {
        let i = q * t.invocations();
        r.push_str(&format!("{pad}stage_a(t + {i}u, a{q}, {stage});\n"));
    }
    for q in 0..lw {
        let i = q * t.invocations();
        r.push_str(&format!("{pad}stage_b(t + {i}u, w{q}, {stage});\n"));
    }
    r
}

/// One staging buffer: barrier, stage the registers, barrier, read the
/// next block into registers, multiply (left open for
/// [`multiply_block`]). `cur` names the buffer multiplied.
fn main_loop_single(s: &mut String, t: &CoopTile, global: bool) {
    s.push_str(&reads(t, "0u", true, "    "));
    s.push_str("    for (var k0 = 0u; k0 < p.k; k0 += KT) {\n        workgroupBarrier();\n");
    s.push_str(&stores(t, "0u", "        "));
    s.push_str("        workgroupBarrier();\n        let cur = 0u;\n        let next = k0 + KT;\n");
    if global {
        prefetch(s, t);
    }
}

/// Two staging buffers: block 0 is staged before the loop; each iteration
/// reads the next block into registers, multiplies the current buffer
/// ([`multiply_block`]) and then stages the registers into the other
/// buffer, with one barrier at the end. A buffer is written only after
/// the barrier that ends the iteration which last read it.
fn main_loop_double(s: &mut String, t: &CoopTile, global: bool) {
    stage_first_block(s, t);
    s.push_str("    for (var k0 = 0u; k0 < p.k; k0 += KT) {\n");
    s.push_str("        let cur = (k0 / KT) % 2u;\n        let next = k0 + KT;\n");
    if global {
        prefetch(s, t);
    }
}

/// Inside the loop: the next k block's global reads into the registers
/// (issued before the multiply that hides their latency).
fn prefetch(s: &mut String, t: &CoopTile) {
    s.push_str("        if (next < p.k) {\n");
    s.push_str(&reads(t, "next", false, "            "));
    s.push_str("        }\n");
}

/// Before the loop: block 0 read and staged into buffer 0.
fn stage_first_block(s: &mut String, t: &CoopTile) {
    s.push_str(&reads(t, "0u", true, "    "));
    s.push_str(&stores(t, "0u", "    "));
    s.push_str("    workgroupBarrier();\n");
}

/// [`GemmProbe::MmaOnly`]: stage block 0, load its first operand tiles
/// once, then only multiply-add, as many times as the full kernel does
/// (k / 16 steps).
fn mma_only_loop(s: &mut String, t: &CoopTile, form: Form) {
    stage_first_block(s, t);
    s.push_str("    let cur = 0u;\n    let kk = 0u;\n");
    operand_loads(s, t, form, "    ");
    s.push_str("    for (var k0 = 0u; k0 < p.k; k0 += 16u) {\n");
    multiply_adds(s, t, form.dialect, "        ");
}

/// The `tm` A and `tn` B tile loads of k step `kk` of buffer `cur`.
/// Offsets and strides are in halves, or in `vec4`s on packed tiles (a
/// cooperative load from a vector array counts in its elements; every
/// tile starts at a multiple of 4 halves).
fn operand_loads(s: &mut String, t: &CoopTile, form: Form, pad: &str) {
    let d = form.dialect;
    let unit = |at: String, stride: &str| match t.packed {
        false => (at, String::from(stride)),
        true => (format!("({at}) / 4u"), format!("{stride} / 4u")),
    };
    for i in 0..t.tm {
        let (at, ld) = unit(
            format!("cur * BM * LDS + (sm + {}u) * LDS + kk", 16 * i),
            "LDS",
        );
        let load = d.load(Role::A, true, "sa", &at, &ld);
        s.push_str(&format!("{pad}let x{i} = {load};\n"));
    }
    for j in 0..t.tn {
        // B = w^T: column-major out of `[col][k]`, row-major out of `[k][col]`.
        let load = match form.w_by_k {
            false => {
                let (at, ld) = unit(
                    format!("cur * BN * LDS + (sn + {}u) * LDS + kk", 16 * j),
                    "LDS",
                );
                d.load(Role::B, false, "sb", &at, &ld)
            }
            true => {
                let (at, ld) = unit(
                    format!("cur * KT * LDB + kk * LDB + sn + {}u", 16 * j),
                    "LDB",
                );
                d.load(Role::B, true, "sb", &at, &ld)
            }
        };
        s.push_str(&format!("{pad}let y{j} = {load};\n"));
    }
}

/// The `tm x tn` multiply-adds of one k step.
fn multiply_adds(s: &mut String, t: &CoopTile, d: CoopDialect, pad: &str) {
    for i in 0..t.tm {
        for j in 0..t.tn {
            let c = format!("c{i}_{j}");
            let mma = d.mma(&format!("x{i}"), &format!("y{j}"), &c);
            s.push_str(&format!("{pad}{c} = {mma};\n"));
        }
    }
}

/// The multiply of staging buffer `cur` (`multiply` false: the k steps
/// without tile loads or multiply-adds, [`GemmProbe::MemoryOnly`]); closes
/// the double-buffered iteration with its stores and barrier.
fn multiply_block(s: &mut String, t: &CoopTile, form: Form, multiply: bool) {
    if multiply {
        s.push_str("        for (var kk = 0u; kk < KT; kk += 16u) {\n");
        operand_loads(s, t, form, "            ");
        multiply_adds(s, t, form.dialect, "            ");
        s.push_str("        }\n");
    }
    if t.stages > 1 {
        s.push_str("        if (next < p.k) {\n");
        s.push_str(&stores(t, "1u - cur", "            "));
        s.push_str("        }\n        workgroupBarrier();\n");
    }
}

/// Writes the accumulators `t.epilogue` at a time: each subgroup stores
/// them into its f32 tiles, then its lanes apply the epilogue; every
/// subgroup calls the barriers at the same points (uniform control flow).
fn epilogue_rounds(s: &mut String, t: &CoopTile, d: CoopDialect) {
    s.push_str("    let obase = start(p.lo, wid.z);\n");
    let tiles: alloc::vec::Vec<(u32, u32)> = (0..t.tm)
        .flat_map(|i| (0..t.tn).map(move |j| (i, j)))
        .collect();
    for round in tiles.chunks(t.epilogue as usize) {
        let mut r0 = alloc::vec::Vec::new();
        let mut c0 = alloc::vec::Vec::new();
        for (slot, &(i, j)) in round.iter().enumerate() {
            let at = format!("(sg * EPI + {slot}u) * 256u");
            s.push_str(&format!(
                "    {}\n",
                d.store(&format!("c{i}_{j}"), "sc", &at, "16u")
            ));
            r0.push(format!("row0 + sm + {}u", 16 * i));
            c0.push(format!("col0 + sn + {}u", 16 * j));
        }
        // A short last round repeats its first tile in the unused slots
        // (they are not written: `count` stops before them).
        while r0.len() < t.epilogue as usize {
            r0.push(r0[0].clone());
            c0.push(c0[0].clone());
        }
        let barrier = d.epilogue_barrier(t.subgroup_epilogue);
        s.push_str(&format!("    {barrier}\n"));
        s.push_str(&format!(
            "    epilogue(sg, lane, {}u, array<u32, EPI>({}), array<u32, EPI>({}), obase);\n",
            round.len(),
            r0.join(", "),
            c0.join(", ")
        ));
        s.push_str(&format!("    {barrier}\n"));
    }
}

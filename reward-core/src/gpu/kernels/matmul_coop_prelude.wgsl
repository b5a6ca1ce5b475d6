// The fixed part of the kernel: bindings, workgroup tiles and helpers.
// Prepended with gemm_params.wgsl (Params, start()); `out` and epilogue()
// come from matmul_coop_store.wgsl or matmul_coop_store4.wgsl, sb, read_w
// and stage_b from matmul_coop_b_by_n.wgsl or matmul_coop_b_by_k.wgsl.
@group(0) @binding(0) var<storage, read> a: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<uniform> p: Params;

// Padded row stride of the staged tiles, in halves.
const LDS: u32 = KT + 8u;
var<workgroup> sa: array<f16, STAGES * BM * LDS>; // [stage][row][k]
var<workgroup> sc: array<f32, EPI * WG / 32u * 256u>; // EPI 16 x 16 tiles per subgroup

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

// Stores element group i into staging buffer `stage`.
fn stage_a(i: u32, v: vec4<f16>, stage: u32) {
    let at = stage * BM * LDS + (i / (KT / 4u)) * LDS + (i % (KT / 4u)) * 4u;
    sa[at] = v.x;
    sa[at + 1u] = v.y;
    sa[at + 2u] = v.z;
    sa[at + 3u] = v.w;
}


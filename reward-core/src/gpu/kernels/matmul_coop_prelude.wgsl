// The fixed part of the kernel: bindings, workgroup tiles and helpers.
// Prepended with gemm_params.wgsl (Params, start()); `out` and epilogue()
// come from matmul_coop_store.wgsl or matmul_coop_store4.wgsl, read_w from
// matmul_coop_b_by_n.wgsl or matmul_coop_b_by_k.wgsl, and the staged tiles
// `sa`, `sb` with stage_a() and stage_b() from matmul_coop_source.rs (f16
// arrays, or vec4 arrays on the packed tiles).
@group(0) @binding(0) var<storage, read> a: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<uniform> p: Params;

// Padded row stride of the staged tiles, in halves.
const LDS: u32 = KT + 8u;
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



// The weight operand stored `[n][k]` (the linear layers' `w`, the keys):
// staged column-major, `[col][k]`, i.e. `w^T` without a transpose.
var<workgroup> sb: array<f16, STAGES * BN * LDS>; // [stage][col][k]

fn read_w(i: u32, col0: u32, k0: u32, base: u32) -> vec4<f16> {
    let c = col0 + i / (KT / 4u);
    if (c < p.n) {
        return w[(base + c * p.lw.y + k0) / 4u + i % (KT / 4u)];
    }
    return vec4<f16>(0.0);
}

fn stage_b(i: u32, v: vec4<f16>, stage: u32) {
    let at = stage * BN * LDS + (i / (KT / 4u)) * LDS + (i % (KT / 4u)) * 4u;
    sb[at] = v.x;
    sb[at + 1u] = v.y;
    sb[at + 2u] = v.z;
    sb[at + 3u] = v.w;
}

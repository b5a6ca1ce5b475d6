// The weight operand stored `[k][n]` (`Gemm::w_by_k`: the values of a
// head read in place): element group i is k row i / (BN / 4), column quad
// i % (BN / 4); staged row-major, `[k][col]`; k rows past `p.wk` and
// columns past n (a multiple of 4) read as zeros.
const LDB: u32 = BN + 8u;
var<workgroup> sb: array<f16, STAGES * KT * LDB>; // [stage][k][col]

fn read_w(i: u32, col0: u32, k0: u32, base: u32) -> vec4<f16> {
    let r = k0 + i / (BN / 4u);
    let c = col0 + (i % (BN / 4u)) * 4u;
    if (r < p.wk && c < p.n) {
        return w[(base + r * p.lw.y + c) / 4u];
    }
    return vec4<f16>(0.0);
}

fn stage_b(i: u32, v: vec4<f16>, stage: u32) {
    let at = stage * KT * LDB + (i / (BN / 4u)) * LDB + (i % (BN / 4u)) * 4u;
    sb[at] = v.x;
    sb[at + 1u] = v.y;
    sb[at + 2u] = v.z;
    sb[at + 3u] = v.w;
}

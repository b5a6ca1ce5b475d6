// The weight operand stored `[k][n]` (`Gemm::w_by_k`: the values of a
// head read in place): element group i is k row i / (BN / 4), column quad
// i % (BN / 4); staged row-major, `[stage][k][col]`; k rows past `p.wk`
// and columns past n (a multiple of 4) read as zeros.
const LDB: u32 = BN + 8u;

fn read_w(i: u32, col0: u32, k0: u32, base: u32) -> vec4<f16> {
    let r = k0 + i / (BN / 4u);
    let c = col0 + (i % (BN / 4u)) * 4u;
    if (r < p.wk && c < p.n) {
        return w[(base + r * p.lw.y + c) / 4u];
    }
    return vec4<f16>(0.0);
}

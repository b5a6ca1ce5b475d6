// The weight operand stored `[n][k]` (the linear layers' `w`, the keys):
// staged column-major, `[stage][col][k]`, i.e. `w^T` without a transpose.

fn read_w(i: u32, col0: u32, k0: u32, base: u32) -> vec4<f16> {
    let c = col0 + i / (KT / 4u);
    if (c < p.n) {
        return w[(base + c * p.lw.y + k0) / 4u + i % (KT / 4u)];
    }
    return vec4<f16>(0.0);
}

// What both GEMM kernels share (matmul.wgsl, matmul_coop.rs), prepended
// with activation.wgsl: the params uniform, where a batch's operand
// starts, and the epilogue store. Each kernel declares its own bindings,
// among them `bias`, `out` and `p` used here.
struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    alpha: f32,
    inner: u32,
    _p0: u32,
    _p1: u32,
    // Per operand: base, row stride, outer step, inner step (elements);
    // batch z starts at base + (z / inner) * outer + (z % inner) * inner step.
    la: vec4<u32>,
    lw: vec4<u32>,
    lo: vec4<u32>,
}

fn start(l: vec4<u32>, z: u32) -> u32 {
    return l.x + (z / p.inner) * l.z + (z % p.inner) * l.w;
}

// out[r, c] (+)= act(alpha * v + bias[c]) in f32, rounded to T once; rows
// and columns past m and n are never written.
fn store(r: u32, c: u32, v: f32, obase: u32) {
    if (r < p.m && c < p.n) {
        var x = p.alpha * v;
        if ((p.flags & 1u) != 0u) {
            x += f32(bias[c]);
        }
        // Bits 2-3: activation code + 1 (activation.wgsl), before the residual.
        let act = (p.flags >> 2u) & 3u;
        if (act != 0u) {
            x = activate(x, act - 1u);
        }
        let o = obase + r * p.lo.y + c;
        if ((p.flags & 2u) != 0u) {
            x += f32(out[o]);
        }
        out[o] = T(x);
    }
}

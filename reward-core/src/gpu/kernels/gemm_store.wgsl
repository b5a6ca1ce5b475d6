// The GEMM epilogue both kernels share (prepended with activation.wgsl and
// gemm_params.wgsl), for an `out: array<T>` binding; the cooperative
// kernel's 4-wide variant has its own (matmul_coop.rs, `STORE4`).
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

// What both GEMM kernels share (matmul.wgsl, matmul_coop.rs): the params
// uniform and where a batch's operand starts. Each kernel declares its own
// bindings, among them `p`.
struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    alpha: f32,
    inner: u32,
    // Rows of w stored k-major ([k][n], cooperative kernel only) that hold
    // data; rows past it read as zeros.
    wk: u32,
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

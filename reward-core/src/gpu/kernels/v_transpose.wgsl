// The values of `count` equal-length sequences, transposed per (sequence,
// head) for the P @ V GEMM (which multiplies by w^T, so V must arrive as
// w = V^T):  vt[b, D, lp] = v[rows of sequence s, columns of head h]^T,
// b = s * heads + h, columns len .. lp zero. lp is len rounded up to the
// GEMM's k step; the zeros keep the padded products exactly 0 (never
// 0 * NaN from stale memory). A workgroup moves TR rows of one (sequence,
// head) through workgroup memory so that the reads (rows of qkv) and the
// transposed writes are both coalesced. q and k need no copy: the scores
// GEMM reads them in place with strided operands.
struct Params {
    hidden: u32,
    heads: u32,
    len: u32,
    lp: u32,
    seq0: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<storage, read> qkv: array<T>;
@group(0) @binding(1) var<storage, read_write> vt: array<T>;
@group(0) @binding(2) var<uniform> p: Params;

// Padded stride (TR + 1) so that a column read by neighbours hits
// different banks.
var<workgroup> tile: array<f32, D * (TR + 1u)>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = lid.x;
    let r0 = wid.x * TR;
    let h = wid.y;
    let s = wid.z;
    let b = s * p.heads + h;
    let first = (p.seq0 + s) * p.len;
    for (var i = t; i < TR * D; i += WG) {
        let r = r0 + i / D;
        let c = i % D;
        var v = 0.0;
        if (r < p.len) {
            v = f32(qkv[(first + r) * 3u * p.hidden + 2u * p.hidden + h * D + c]);
        }
        tile[c * (TR + 1u) + i / D] = v;
    }
    workgroupBarrier();
    for (var i = t; i < TR * D; i += WG) {
        let c = i / TR;
        let r = r0 + i % TR;
        if (r < p.lp) {
            vt[(b * D + c) * p.lp + r] = T(tile[c * (TR + 1u) + i % TR]);
        }
    }
}

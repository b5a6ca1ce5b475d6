// Splits the fused qkv rows of `count` equal-length sequences into the
// per-(sequence, head) operands of the attention GEMMs:
//   q  [b, len, D]          (b = sequence * heads + head)
//   k  [b, lp, D]           rows len .. lp zero
//   vt [b, D, lp]           v transposed, columns len .. lp zero
// lp is len rounded up so that the P @ V GEMM's k is a tile multiple; the
// zero padding keeps padded scores and products exactly 0 (never 0 * NaN
// from stale memory). A workgroup moves TR rows of one (sequence, head)
// through workgroup memory so that both the row-major writes (q, k) and
// the transposed write (vt) are coalesced.
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
@group(0) @binding(1) var<storage, read_write> q: array<T>;
@group(0) @binding(2) var<storage, read_write> k: array<T>;
@group(0) @binding(3) var<storage, read_write> vt: array<T>;
@group(0) @binding(4) var<uniform> p: Params;

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
    let stride = 3u * p.hidden;
    let first = (p.seq0 + s) * p.len;
    for (var i = t; i < TR * D; i += WG) {
        let r = r0 + i / D;
        let c = i % D;
        var qv = T(0.0);
        var kv = T(0.0);
        var vv = T(0.0);
        if (r < p.len) {
            let at = (first + r) * stride + h * D + c;
            qv = qkv[at];
            kv = qkv[at + p.hidden];
            vv = qkv[at + 2u * p.hidden];
            q[(b * p.len + r) * D + c] = qv;
        }
        if (r < p.lp) {
            k[(b * p.lp + r) * D + c] = kv;
        }
        tile[c * (TR + 1u) + i / D] = f32(vv);
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

// Row softmax in place over the attention scores [rows, stride]: columns
// 0 .. len are scores, columns len .. stride (the GEMM padding) become 0.
// RPW rows per workgroup, 32 invocations per row; each invocation keeps a
// running max and sum over its strided columns (online softmax), the 32
// partial pairs are merged in workgroup memory. f32 throughout; the
// probabilities are rounded to T once.
struct Params {
    rows: u32,
    len: u32,
    stride: u32,
    groups_x: u32,
}

@group(0) @binding(0) var<storage, read_write> s: array<T>;
@group(0) @binding(1) var<uniform> p: Params;

// WG = RPW * LANES (set on the host).
const LANES: u32 = 32u;
var<workgroup> red_m: array<f32, RPW * LANES>;
var<workgroup> red_l: array<f32, RPW * LANES>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = lid.x;
    let lane = t % LANES;
    let slot = t - lane;
    let row = (wid.x + wid.y * p.groups_x) * RPW + t / LANES;
    // Rows past the end still take part in the barriers, reading nothing.
    let live = row < p.rows;
    let base = row * p.stride;
    var m = -3.0e38;
    var l = 0.0;
    if (live) {
        for (var c = lane; c < p.len; c += LANES) {
            let v = f32(s[base + c]);
            let m2 = max(m, v);
            l = l * exp(m - m2) + exp(v - m2);
            m = m2;
        }
    }
    red_m[t] = m;
    red_l[t] = l;
    workgroupBarrier();
    for (var off = LANES / 2u; off > 0u; off = off / 2u) {
        if (lane < off) {
            let ma = red_m[t];
            let mb = red_m[t + off];
            let m2 = max(ma, mb);
            red_l[t] = red_l[t] * exp(ma - m2) + red_l[t + off] * exp(mb - m2);
            red_m[t] = m2;
        }
        workgroupBarrier();
    }
    let mx = red_m[slot];
    let inv = 1.0 / red_l[slot];
    if (live) {
        for (var c = lane; c < p.stride; c += LANES) {
            var v = 0.0;
            if (c < p.len) {
                v = exp(f32(s[base + c]) - mx) * inv;
            }
            s[base + c] = T(v);
        }
    }
}

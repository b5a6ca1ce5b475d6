// Row softmax in place over the attention scores [rows, stride]: columns
// 0 .. len are scores, columns len .. stride (the GEMM padding) become 0.
// The stride is a multiple of 4 (the padded key length, checked on the
// host), so a row moves as vec4s. RPW rows per workgroup, 32 invocations
// per row; each invocation keeps a running max and sum over its strided
// quads (online softmax: one rescale per quad), the 32 partial pairs are
// merged in workgroup memory. f32 throughout; the probabilities are
// rounded to T once.
struct Params {
    rows: u32,
    len: u32,
    stride: u32,
    groups_x: u32,
}

@group(0) @binding(0) var<storage, read_write> s: array<vec4<T>>;
@group(0) @binding(1) var<uniform> p: Params;

// WG = RPW * LANES (set on the host).
const LANES: u32 = 32u;
const NEG: f32 = -3.0e38;
var<workgroup> red_m: array<f32, RPW * LANES>;
var<workgroup> red_l: array<f32, RPW * LANES>;

// Which of quad q's four columns are scores (the rest is padding).
fn valid(q: u32) -> vec4<bool> {
    let c = vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u);
    return c < vec4<u32>(p.len);
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = lid.x;
    let lane = t % LANES;
    let slot = t - lane;
    let row = (wid.x + wid.y * p.groups_x) * RPW + t / LANES;
    // Rows past the end still take part in the barriers, reading nothing.
    let live = row < p.rows;
    let quads = p.stride / 4u;
    let base = row * quads;
    var m = NEG;
    var l = 0.0;
    if (live) {
        for (var q = lane; q < quads; q += LANES) {
            let ok = valid(q);
            let v = select(vec4<f32>(NEG), vec4<f32>(s[base + q]), ok);
            let m2 = max(m, max(max(v.x, v.y), max(v.z, v.w)));
            let e = select(vec4<f32>(0.0), exp(v - vec4<f32>(m2)), ok);
            l = l * exp(m - m2) + e.x + e.y + e.z + e.w;
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
        for (var q = lane; q < quads; q += LANES) {
            let ok = valid(q);
            let e = exp(vec4<f32>(s[base + q]) - vec4<f32>(mx)) * inv;
            s[base + q] = vec4<T>(select(vec4<f32>(0.0), e, ok));
        }
    }
}

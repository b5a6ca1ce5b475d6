// out[r] = (x[src(r)] - mean) / sqrt(var + eps) * gamma + beta, one
// workgroup per output row; src(r) = r, or rows[r] when gathering (pooling).
// Statistics are f32 at both precisions, mean first, then the centred
// variance (two passes, like the CPU reference).
struct Params {
    rows: u32,
    dim: u32,
    gather: u32,
    groups_x: u32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read> gamma: array<T>;
@group(0) @binding(2) var<storage, read> beta: array<T>;
@group(0) @binding(3) var<storage, read> src_rows: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<T>;
@group(0) @binding(5) var<uniform> p: Params;

var<workgroup> partial: array<f32, WG>;

fn reduce_sum(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.x + wid.y * p.groups_x;
    if (row >= p.rows) {
        return;
    }
    let lid = lid3.x;
    var src = row;
    if (p.gather != 0u) {
        src = src_rows[row];
    }
    let base = src * p.dim;
    var s = 0.0;
    for (var i = lid; i < p.dim; i += WG) {
        s += f32(x[base + i]);
    }
    let mean = reduce_sum(lid, s) / f32(p.dim);
    var q = 0.0;
    for (var i = lid; i < p.dim; i += WG) {
        let d = f32(x[base + i]) - mean;
        q += d * d;
    }
    let inv = inverseSqrt(reduce_sum(lid, q) / f32(p.dim) + p.eps);
    for (var i = lid; i < p.dim; i += WG) {
        let v = (f32(x[base + i]) - mean) * inv * f32(gamma[i]) + f32(beta[i]);
        out[row * p.dim + i] = T(v);
    }
}

// L2-normalises each row (zero rows stay zero), one workgroup per row;
// the cosine matrix is then a GEMM of the normalised rows (matmul.wgsl)
// with alpha = logit_scale. Sums of squares are f32 at both precisions.
struct Params {
    rows: u32,
    dim: u32,
    groups_x: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read_write> out: array<T>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.x + wid.y * p.groups_x;
    if (row >= p.rows) {
        return;
    }
    let lid = lid3.x;
    let base = row * p.dim;
    var s = 0.0;
    for (var i = lid; i < p.dim; i += WG) {
        let v = f32(x[base + i]);
        s += v * v;
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k = k / 2u) {
        if (lid < k) {
            partial[lid] += partial[lid + k];
        }
        workgroupBarrier();
    }
    let norm = sqrt(partial[0]);
    var inv = 0.0;
    if (norm > 0.0) {
        inv = 1.0 / norm;
    }
    for (var i = lid; i < p.dim; i += WG) {
        out[base + i] = T(f32(x[base + i]) * inv);
    }
}

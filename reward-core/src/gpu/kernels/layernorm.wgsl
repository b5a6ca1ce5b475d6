// out[r] = (x[src(r)] - mean) / sqrt(var + eps) * gamma + beta over rows of
// `dim`; src(r) = r, or rows[r] when gathering (pooling). Statistics are
// f32 at both precisions, mean first, then the centred variance (two passes,
// like the CPU reference).
//
// LANES invocations share a row and a workgroup of WG takes RPW = WG / LANES
// rows, so the barriers of the two reductions are paid once for RPW rows.
// Elements move VEC at a time (`V` is `vec4<T>` where dim is a multiple of 4,
// else `T`; `VF` its f32 form and `hsum` the sum of its components are
// prepended by layernorm.rs). A row is read three times; the second and
// third reads hit the cache.
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

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> gamma: array<V>;
@group(0) @binding(2) var<storage, read> beta: array<V>;
@group(0) @binding(3) var<storage, read> src_rows: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<V>;
@group(0) @binding(5) var<uniform> p: Params;

const RPW: u32 = WG / LANES;
var<workgroup> partial: array<f32, WG>;

// The sum of `v` over the LANES invocations of row slot `slot`. Called by
// every invocation of the workgroup (uniform control flow).
fn reduce_sum(slot: u32, lane: u32, v: f32) -> f32 {
    let at = slot * LANES + lane;
    partial[at] = v;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s = s / 2u) {
        if (lane < s) {
            partial[at] += partial[at + s];
        }
        workgroupBarrier();
    }
    let total = partial[slot * LANES];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let slot = lid3.x / LANES;
    let lane = lid3.x % LANES;
    let row = (wid.x + wid.y * p.groups_x) * RPW + slot;
    // Rows past the end still take part in the barriers, reading nothing.
    let live = row < p.rows;
    let n = p.dim / VEC;
    var src = row;
    if (live && p.gather != 0u) {
        src = src_rows[row];
    }
    let base = src * n;
    var s = 0.0;
    if (live) {
        for (var i = lane; i < n; i += LANES) {
            s += hsum(VF(x[base + i]));
        }
    }
    let mean = reduce_sum(slot, lane, s) / f32(p.dim);
    var q = 0.0;
    if (live) {
        for (var i = lane; i < n; i += LANES) {
            let d = VF(x[base + i]) - VF(mean);
            q += hsum(d * d);
        }
    }
    let inv = inverseSqrt(reduce_sum(slot, lane, q) / f32(p.dim) + p.eps);
    if (live) {
        for (var i = lane; i < n; i += LANES) {
            let v = (VF(x[base + i]) - VF(mean)) * inv * VF(gamma[i]) + VF(beta[i]);
            out[row * n + i] = V(v);
        }
    }
}

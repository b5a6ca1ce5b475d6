// The attention GEMMs' per-(sequence, head) context o [b, len, D] back into
// token rows: out[(seq0 + s) * len + r, h * D + c] = o[(s * heads + h), r, c]
// for `count` sequences, heads concatenated as in `CLIPAttention`.
struct Params {
    hidden: u32,
    heads: u32,
    len: u32,
    seq0: u32,
    count: u32,
    groups_x: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<storage, read> o: array<T>;
@group(0) @binding(1) var<storage, read_write> out: array<T>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p.groups_x * WG;
    if (i >= p.count) {
        return;
    }
    let row = i / p.hidden;
    let col = i % p.hidden;
    let s = row / p.len;
    let r = row % p.len;
    let h = col / D;
    let c = col % D;
    out[(p.seq0 * p.len + row) * p.hidden + col] = o[((s * p.heads + h) * p.len + r) * D + c];
}

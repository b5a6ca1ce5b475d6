// The text tower's input: x[row] = token_table[id] + pos_emb[position] for
// each (id, position) of `rows`. The token table may span several buffers
// (a browser's binding limit is below CLIP's f32 table); this launch holds
// the ids in [first, end) and writes only their rows, so one launch per
// part writes every row once.
struct Params {
    count: u32,
    hidden: u32,
    first: u32,
    end: u32,
    groups_x: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> rows: array<vec2<u32>>;
@group(0) @binding(1) var<storage, read> table: array<T>;
@group(0) @binding(2) var<storage, read> pos_emb: array<T>;
@group(0) @binding(3) var<storage, read_write> x: array<T>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p.groups_x * WG;
    if (i >= p.count) {
        return;
    }
    let row = rows[i / p.hidden];
    if (row.x < p.first || row.x >= p.end) {
        return;
    }
    let c = i % p.hidden;
    // Summed in f32, as the CPU tower does, then stored once.
    let v = f32(table[(row.x - p.first) * p.hidden + c]) + f32(pos_emb[row.y * p.hidden + c]);
    x[i] = T(v);
}

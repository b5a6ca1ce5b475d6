// The vision tower's input sequence: for each image, the class embedding
// then its patch projections, plus the position embeddings.
// x[n * tokens, hidden]; projected[n * (tokens - 1), hidden].
struct Params {
    count: u32,
    hidden: u32,
    tokens: u32,
    groups_x: u32,
}

@group(0) @binding(0) var<storage, read> projected: array<T>;
@group(0) @binding(1) var<storage, read> class_emb: array<T>;
@group(0) @binding(2) var<storage, read> pos_emb: array<T>;
@group(0) @binding(3) var<storage, read_write> x: array<T>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p.groups_x * WG;
    if (i >= p.count) {
        return;
    }
    let row = i / p.hidden;
    let c = i % p.hidden;
    let image = row / p.tokens;
    let t = row % p.tokens;
    var v = f32(pos_emb[t * p.hidden + c]);
    if (t == 0u) {
        v += f32(class_emb[c]);
    } else {
        v += f32(projected[(image * (p.tokens - 1u) + t - 1u) * p.hidden + c]);
    }
    x[i] = T(v);
}

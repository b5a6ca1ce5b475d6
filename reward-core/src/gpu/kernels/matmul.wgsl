// out[b, m, n] = (ACC ? out : 0) + alpha * a[b, m, k] @ w[b, n, k]^T + bias[n]
// Tiled: a workgroup computes a TILE x TILE block; each of its
// SIDE x SIDE invocations owns PER x PER outputs strided by SIDE (so shared
// memory reads are conflict-free); k advances KT at a time through
// workgroup memory. Accumulation is f32 at both precisions.
struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    alpha: f32,
    a_batch: u32,
    w_batch: u32,
    o_batch: u32,
}

@group(0) @binding(0) var<storage, read> a: array<T>;
@group(0) @binding(1) var<storage, read> w: array<T>;
@group(0) @binding(2) var<storage, read> bias: array<T>;
@group(0) @binding(3) var<storage, read_write> out: array<T>;
@group(0) @binding(4) var<uniform> p: Params;

const TILE: u32 = SIDE * PER;
var<workgroup> ta: array<T, KT * TILE>; // [kk][row]
var<workgroup> tw: array<T, KT * TILE>; // [kk][col]

@compute @workgroup_size(SIDE, SIDE, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let abase = wid.z * p.a_batch;
    let wbase = wid.z * p.w_batch;
    let t = lid.y * SIDE + lid.x;
    var acc: array<f32, PER * PER>;
    for (var k0 = 0u; k0 < p.k; k0 += KT) {
        for (var i = t; i < KT * TILE; i += SIDE * SIDE) {
            let r = i / KT;
            let kk = i % KT;
            let gk = k0 + kk;
            var va = T(0.0);
            if (row0 + r < p.m && gk < p.k) {
                va = a[abase + (row0 + r) * p.k + gk];
            }
            ta[kk * TILE + r] = va;
            var vw = T(0.0);
            if (col0 + r < p.n && gk < p.k) {
                vw = w[wbase + (col0 + r) * p.k + gk];
            }
            tw[kk * TILE + r] = vw;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KT; kk++) {
            var av: array<f32, PER>;
            var wv: array<f32, PER>;
            for (var i = 0u; i < PER; i++) {
                av[i] = f32(ta[kk * TILE + lid.y + i * SIDE]);
                wv[i] = f32(tw[kk * TILE + lid.x + i * SIDE]);
            }
            for (var i = 0u; i < PER; i++) {
                for (var j = 0u; j < PER; j++) {
                    acc[i * PER + j] = fma(av[i], wv[j], acc[i * PER + j]);
                }
            }
        }
        workgroupBarrier();
    }
    let obase = wid.z * p.o_batch;
    for (var i = 0u; i < PER; i++) {
        let r = row0 + lid.y + i * SIDE;
        for (var j = 0u; j < PER; j++) {
            let c = col0 + lid.x + j * SIDE;
            if (r < p.m && c < p.n) {
                var v = p.alpha * acc[i * PER + j];
                if ((p.flags & 1u) != 0u) {
                    v += f32(bias[c]);
                }
                let o = obase + r * p.n + c;
                if ((p.flags & 2u) != 0u) {
                    v += f32(out[o]);
                }
                out[o] = T(v);
            }
        }
    }
}

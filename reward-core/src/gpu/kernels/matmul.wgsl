// out[b, m, n] = (ACC ? out : 0) + act(alpha * a[b, m, k] @ w[b, n, k]^T + bias[n])
// Tiled: a workgroup computes a 64 x 64 block; each of its 16 x 16
// invocations owns 4 x 4 outputs strided by 16 (rows lid.y + 16 i, columns
// lid.x + 16 j), held in four vec4 registers. k advances KT at a time
// through workgroup memory, stored as f32 at both precisions (converted
// once on load) with a padded row stride so the transposing stores do not
// collide in one bank. No private arrays and no loops over them: a
// dynamically indexed private array ends up in slow per-thread memory on
// GPUs (and in gathers on llvmpipe), which made the first version of this
// kernel ~100x slower than its arithmetic.
// Params and start(): gemm_params.wgsl; store(): gemm_store.wgsl.
@group(0) @binding(0) var<storage, read> a: array<T>;
@group(0) @binding(1) var<storage, read> w: array<T>;
@group(0) @binding(2) var<storage, read> bias: array<T>;
@group(0) @binding(3) var<storage, read_write> out: array<T>;
@group(0) @binding(4) var<uniform> p: Params;

const SIDE: u32 = 16u;
const TILE: u32 = 64u;
// Row stride of the k-major tiles: one more than the tile so that the 16
// invocations storing one row's KT values hit 16 different banks.
const TS: u32 = TILE + 1u;
var<workgroup> ta: array<f32, KT * TS>; // [kk][row]
var<workgroup> tw: array<f32, KT * TS>; // [kk][col]

fn store_row(r: u32, c0: u32, v: vec4<f32>, obase: u32) {
    store(r, c0, v.x, obase);
    store(r, c0 + SIDE, v.y, obase);
    store(r, c0 + 2u * SIDE, v.z, obase);
    store(r, c0 + 3u * SIDE, v.w, obase);
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let abase = start(p.la, wid.z);
    let wbase = start(p.lw, wid.z);
    let t = lid.y * SIDE + lid.x;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += KT) {
        // KT x 64 values of each operand, 256 invocations: consecutive
        // invocations read consecutive k of one row (coalesced).
        for (var i = t; i < KT * TILE; i += SIDE * SIDE) {
            let r = i / KT;
            let kk = i % KT;
            let gk = k0 + kk;
            var va = 0.0;
            if (row0 + r < p.m && gk < p.k) {
                va = f32(a[abase + (row0 + r) * p.la.y + gk]);
            }
            ta[kk * TS + r] = va;
            var vw = 0.0;
            if (col0 + r < p.n && gk < p.k) {
                vw = f32(w[wbase + (col0 + r) * p.lw.y + gk]);
            }
            tw[kk * TS + r] = vw;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KT; kk++) {
            let ab = kk * TS + lid.y;
            let wb = kk * TS + lid.x;
            let av = vec4<f32>(ta[ab], ta[ab + SIDE], ta[ab + 2u * SIDE], ta[ab + 3u * SIDE]);
            let wv = vec4<f32>(tw[wb], tw[wb + SIDE], tw[wb + 2u * SIDE], tw[wb + 3u * SIDE]);
            c0 = fma(vec4<f32>(av.x), wv, c0);
            c1 = fma(vec4<f32>(av.y), wv, c1);
            c2 = fma(vec4<f32>(av.z), wv, c2);
            c3 = fma(vec4<f32>(av.w), wv, c3);
        }
        workgroupBarrier();
    }
    let obase = start(p.lo, wid.z);
    let r = row0 + lid.y;
    let c = col0 + lid.x;
    store_row(r, c, c0, obase);
    store_row(r + SIDE, c, c1, obase);
    store_row(r + 2u * SIDE, c, c2, obase);
    store_row(r + 3u * SIDE, c, c3, obase);
}

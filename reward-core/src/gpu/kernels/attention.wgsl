// Multi-head self-attention over packed sequences, flash-attention style:
// qkv rows are [q | k | v] (3 * hidden wide), sequence s occupies rows
// seqs[s].x .. seqs[s].x + seqs[s].y. A workgroup of WG invocations takes
// BQ queries of one (sequence, head) and streams the keys in tiles of BK:
// all invocations cooperate on the BQ x BK scores (one dot product of
// length D each), then on the BQ x D outputs (one BK-long sum each), with
// an online softmax (running max and sum per query, rescaled once per
// tile). Tiles live in workgroup memory as f32 with a padded row stride
// (DS = D + 1) so that rows read in parallel fall in different banks.
// The earlier version gave each invocation one query and D-long private
// arrays, which GPUs keep in slow per-thread memory.
struct Params {
    hidden: u32,
    causal: u32,
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> qkv: array<T>;
@group(0) @binding(1) var<storage, read> seqs: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;
@group(0) @binding(3) var<uniform> p: Params;

const DS: u32 = D + 1u;
// A score that is masked out (causal, past the sequence end).
const MASKED: f32 = -3.0e38;

var<workgroup> qs: array<f32, BQ * DS>;
var<workgroup> kv: array<f32, BK * DS>; // the key tile, then the value tile
var<workgroup> sc: array<f32, BQ * BK>; // scores, then probabilities
var<workgroup> row_m: array<f32, BQ>; // running max
var<workgroup> row_l: array<f32, BQ>; // running sum
var<workgroup> row_c: array<f32, BQ>; // this tile's rescale factor
var<workgroup> seq_info: vec2<u32>;

// Loads rows k0.. of the key (part = 1) or value (part = 2) columns of
// head `col` into `kv`; rows past `len` are zero.
fn load_tile(t: u32, start: u32, len: u32, k0: u32, part: u32, col: u32) {
    let stride = 3u * p.hidden;
    for (var i = t; i < BK * D; i += WG) {
        let r = i / D;
        let c = i % D;
        var v = 0.0;
        if (k0 + r < len) {
            v = f32(qkv[(start + k0 + r) * stride + part * p.hidden + col + c]);
        }
        kv[r * DS + c] = v;
    }
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = lid3.x;
    if (t == 0u) {
        seq_info = seqs[wid.z];
    }
    // Uniform for the whole workgroup, so the loops below may hold barriers.
    let info = workgroupUniformLoad(&seq_info);
    let start = info.x;
    let len = info.y;
    let q0 = wid.x * BQ;
    if (q0 >= len) {
        return;
    }
    let col = wid.y * D;
    let stride = 3u * p.hidden;
    for (var i = t; i < BQ * D; i += WG) {
        let r = i / D;
        let c = i % D;
        var v = 0.0;
        if (q0 + r < len) {
            v = f32(qkv[(start + q0 + r) * stride + col + c]) * p.scale;
        }
        qs[r * DS + c] = v;
    }
    if (t < BQ) {
        row_m[t] = MASKED;
        row_l[t] = 0.0;
    }
    // This invocation's outputs: o = t + a * WG, query o / D, column o % D.
    var acc: array<f32, DPT>;
    for (var a = 0u; a < DPT; a++) {
        acc[a] = 0.0;
    }
    var kend = len;
    if (p.causal != 0u) {
        kend = min(len, q0 + BQ);
    }
    for (var k0 = 0u; k0 < kend; k0 += BK) {
        load_tile(t, start, len, k0, 1u, col);
        workgroupBarrier();
        for (var i = t; i < BQ * BK; i += WG) {
            let r = i / BK;
            let j = i % BK;
            let qi = q0 + r;
            let key = k0 + j;
            var s = MASKED;
            if (qi < len && key < len && (p.causal == 0u || key <= qi)) {
                var d = 0.0;
                for (var c = 0u; c < D; c++) {
                    d = fma(qs[r * DS + c], kv[j * DS + c], d);
                }
                s = d;
            }
            sc[i] = s;
        }
        workgroupBarrier();
        if (t < BQ) {
            var mx = row_m[t];
            for (var j = 0u; j < BK; j++) {
                mx = max(mx, sc[t * BK + j]);
            }
            row_c[t] = exp(row_m[t] - mx);
            row_m[t] = mx;
        }
        workgroupBarrier();
        for (var i = t; i < BQ * BK; i += WG) {
            let s = sc[i];
            var e = 0.0;
            if (s > MASKED) {
                e = exp(s - row_m[i / BK]);
            }
            sc[i] = e;
        }
        load_tile(t, start, len, k0, 2u, col);
        workgroupBarrier();
        if (t < BQ) {
            var sum = 0.0;
            for (var j = 0u; j < BK; j++) {
                sum += sc[t * BK + j];
            }
            row_l[t] = row_l[t] * row_c[t] + sum;
        }
        for (var a = 0u; a < DPT; a++) {
            let o = t + a * WG;
            if (o < BQ * D) {
                let r = o / D;
                let c = o % D;
                var v = acc[a] * row_c[r];
                for (var j = 0u; j < BK; j++) {
                    v = fma(sc[r * BK + j], kv[j * DS + c], v);
                }
                acc[a] = v;
            }
        }
        workgroupBarrier();
    }
    for (var a = 0u; a < DPT; a++) {
        let o = t + a * WG;
        if (o < BQ * D) {
            let r = o / D;
            let c = o % D;
            if (q0 + r < len) {
                out[(start + q0 + r) * p.hidden + col + c] = T(acc[a] / row_l[r]);
            }
        }
    }
}

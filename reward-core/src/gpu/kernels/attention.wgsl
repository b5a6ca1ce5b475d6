// Multi-head self-attention over packed sequences: qkv rows are
// [q | k | v] (3 * hidden wide), sequence s occupies rows
// seqs[s].x .. seqs[s].x + seqs[s].y. A workgroup takes QB queries of one
// (sequence, head); each invocation owns one query and streams the keys
// in tiles of KT through workgroup memory with an online softmax (running
// max and sum, rescaled once per tile). f32 arithmetic at both precisions.
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

var<workgroup> kt: array<T, KT * D>;
var<workgroup> vt: array<T, KT * D>;
var<workgroup> seq_info: vec2<u32>;

@compute @workgroup_size(QB, 1, 1)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let lid = lid3.x;
    if (lid == 0u) {
        seq_info = seqs[wid.z];
    }
    // Uniform for the whole workgroup, so the loops below may hold barriers.
    let info = workgroupUniformLoad(&seq_info);
    let start = info.x;
    let len = info.y;
    let q0 = wid.x * QB;
    if (q0 >= len) {
        return;
    }
    let h = wid.y;
    let stride = 3u * p.hidden;
    let qi = q0 + lid;
    let live = qi < len;
    var q: array<f32, D>;
    var acc: array<f32, D>;
    if (live) {
        let qbase = (start + qi) * stride + h * D;
        for (var c = 0u; c < D; c++) {
            q[c] = f32(qkv[qbase + c]) * p.scale;
        }
    }
    var m = -3.0e38;
    var l = 0.0;
    var kend = len;
    if (p.causal != 0u) {
        kend = min(len, q0 + QB);
    }
    for (var k0 = 0u; k0 < kend; k0 += KT) {
        for (var i = lid; i < KT * D; i += QB) {
            let key = k0 + i / D;
            var kv = T(0.0);
            var vv = T(0.0);
            if (key < len) {
                let kbase = (start + key) * stride + h * D + i % D;
                kv = qkv[kbase + p.hidden];
                vv = qkv[kbase + 2u * p.hidden];
            }
            kt[i] = kv;
            vt[i] = vv;
        }
        workgroupBarrier();
        if (live) {
            var sc: array<f32, KT>;
            var tmax = -3.0e38;
            var seen = false;
            for (var j = 0u; j < KT; j++) {
                let key = k0 + j;
                if (key < len && (p.causal == 0u || key <= qi)) {
                    var s = 0.0;
                    for (var c = 0u; c < D; c++) {
                        s = fma(q[c], f32(kt[j * D + c]), s);
                    }
                    sc[j] = s;
                    tmax = max(tmax, s);
                    seen = true;
                }
            }
            if (seen) {
                let m_new = max(m, tmax);
                let corr = exp(m - m_new);
                l *= corr;
                for (var c = 0u; c < D; c++) {
                    acc[c] *= corr;
                }
                for (var j = 0u; j < KT; j++) {
                    let key = k0 + j;
                    if (key < len && (p.causal == 0u || key <= qi)) {
                        let e = exp(sc[j] - m_new);
                        l += e;
                        for (var c = 0u; c < D; c++) {
                            acc[c] = fma(e, f32(vt[j * D + c]), acc[c]);
                        }
                    }
                }
                m = m_new;
            }
        }
        workgroupBarrier();
    }
    if (live) {
        let obase = (start + qi) * p.hidden + h * D;
        let inv = 1.0 / l;
        for (var c = 0u; c < D; c++) {
            out[obase + c] = T(acc[c] * inv);
        }
    }
}

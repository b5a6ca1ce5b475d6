enable wgpu_cooperative_matrix;
// out[b, m, n] = (ACC ? out : 0) + alpha * a[b, m, k] @ w[b, n, k]^T + bias[n]
// on tensor cores: the same contract as matmul.wgsl, f16 operands, f32
// accumulation in 16 x 16 x 16 cooperative matrices.
//
// A workgroup of 256 invocations (8 subgroups of 32, checked on the host)
// computes a BM x BN = 128 x 128 block. k advances KT = 32 at a time: every
// invocation reads 4 vec4<f16> of each operand from global memory into
// registers, they are stored to workgroup memory ([row][k], padded rows of
// LDS halves: 80-byte rows keep every coopLoad 16-byte aligned), and each
// subgroup multiplies its 32 x 64 sub-block out of it: 2 A tiles x 4 B tiles
// = 8 accumulators per 16-wide k step. The next k block is read from global
// memory while the current one is multiplied. Rows past m and columns past
// n are read as zeros and never stored; k must be a multiple of KT (the
// host falls back to matmul.wgsl otherwise). The epilogue goes through a
// 16 x 16 f32 staging tile per subgroup so that alpha, the bias and the
// residual are applied in f32 and each value is rounded to f16 once.
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

@group(0) @binding(0) var<storage, read> a: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> bias: array<T>;
@group(0) @binding(3) var<storage, read_write> out: array<T>;
@group(0) @binding(4) var<uniform> p: Params;

// Padded row stride of the staged tiles, in halves.
const LDS: u32 = KT + 8u;
var<workgroup> sa: array<f16, BM * LDS>; // [row][k]
var<workgroup> sb: array<f16, BN * LDS>; // [col][k]: column-major B = w^T
var<workgroup> sc: array<f32, 2048>; // 8 subgroups x 16 x 16, row-major

// Reads element group i (of 4 per invocation) of one operand's k block:
// row i / (KT / 4), k quad i % (KT / 4); zeros past `rows`.
fn read_a(i: u32, row0: u32, k0: u32, base: u32) -> vec4<f16> {
    let r = row0 + i / (KT / 4u);
    if (r < p.m) {
        return a[base + (r * p.k + k0) / 4u + i % (KT / 4u)];
    }
    return vec4<f16>(0.0);
}

fn read_w(i: u32, col0: u32, k0: u32, base: u32) -> vec4<f16> {
    let c = col0 + i / (KT / 4u);
    if (c < p.n) {
        return w[base + (c * p.k + k0) / 4u + i % (KT / 4u)];
    }
    return vec4<f16>(0.0);
}

fn stage(i: u32, va: vec4<f16>, vw: vec4<f16>) {
    let at = (i / (KT / 4u)) * LDS + (i % (KT / 4u)) * 4u;
    sa[at] = va.x;
    sa[at + 1u] = va.y;
    sa[at + 2u] = va.z;
    sa[at + 3u] = va.w;
    sb[at] = vw.x;
    sb[at + 1u] = vw.y;
    sb[at + 2u] = vw.z;
    sb[at + 3u] = vw.w;
}

fn store(r: u32, c: u32, v: f32, obase: u32) {
    if (r < p.m && c < p.n) {
        var x = p.alpha * v;
        if ((p.flags & 1u) != 0u) {
            x += f32(bias[c]);
        }
        let o = obase + r * p.n + c;
        if ((p.flags & 2u) != 0u) {
            x += f32(out[o]);
        }
        out[o] = T(x);
    }
}

// Writes one 16 x 16 accumulator at (r0, c0) through the subgroup's
// staging tile. Called by every subgroup at the same point (uniform
// control flow for the barriers).
fn emit(acc: coop_mat16x16<f32, C>, sg: u32, lane: u32, r0: u32, c0: u32, obase: u32) {
    coopStoreT(acc, &sc[sg * 256u], 16u);
    workgroupBarrier();
    for (var e = lane; e < 256u; e += 32u) {
        store(r0 + e / 16u, c0 + e % 16u, sc[sg * 256u + e], obase);
    }
    workgroupBarrier();
}

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let abase = wid.z * (p.a_batch / 4u);
    let wbase = wid.z * (p.w_batch / 4u);
    // Subgroup sg owns rows sm .. sm + 32 and columns sn .. sn + 64 of the block.
    let sm = (sg % 4u) * 32u;
    let sn = (sg / 4u) * 64u;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c02 = coop_mat16x16<f32, C>();
    var c03 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var c12 = coop_mat16x16<f32, C>();
    var c13 = coop_mat16x16<f32, C>();
    // BM * KT / 4 = 1024 vec4s per operand and block: 4 per invocation.
    var a0 = read_a(t, row0, 0u, abase);
    var a1 = read_a(t + 256u, row0, 0u, abase);
    var a2 = read_a(t + 512u, row0, 0u, abase);
    var a3 = read_a(t + 768u, row0, 0u, abase);
    var w0 = read_w(t, col0, 0u, wbase);
    var w1 = read_w(t + 256u, col0, 0u, wbase);
    var w2 = read_w(t + 512u, col0, 0u, wbase);
    var w3 = read_w(t + 768u, col0, 0u, wbase);
    for (var k0 = 0u; k0 < p.k; k0 += KT) {
        workgroupBarrier();
        stage(t, a0, w0);
        stage(t + 256u, a1, w1);
        stage(t + 512u, a2, w2);
        stage(t + 768u, a3, w3);
        workgroupBarrier();
        let next = k0 + KT;
        if (next < p.k) {
            a0 = read_a(t, row0, next, abase);
            a1 = read_a(t + 256u, row0, next, abase);
            a2 = read_a(t + 512u, row0, next, abase);
            a3 = read_a(t + 768u, row0, next, abase);
            w0 = read_w(t, col0, next, wbase);
            w1 = read_w(t + 256u, col0, next, wbase);
            w2 = read_w(t + 512u, col0, next, wbase);
            w3 = read_w(t + 768u, col0, next, wbase);
        }
        for (var kk = 0u; kk < KT; kk += 16u) {
            let x0 = coopLoadT<coop_mat16x16<f16, A>>(&sa[sm * LDS + kk], LDS);
            let x1 = coopLoadT<coop_mat16x16<f16, A>>(&sa[(sm + 16u) * LDS + kk], LDS);
            let y0 = coopLoad<coop_mat16x16<f16, B>>(&sb[sn * LDS + kk], LDS);
            let y1 = coopLoad<coop_mat16x16<f16, B>>(&sb[(sn + 16u) * LDS + kk], LDS);
            let y2 = coopLoad<coop_mat16x16<f16, B>>(&sb[(sn + 32u) * LDS + kk], LDS);
            let y3 = coopLoad<coop_mat16x16<f16, B>>(&sb[(sn + 48u) * LDS + kk], LDS);
            c00 = coopMultiplyAdd(x0, y0, c00);
            c01 = coopMultiplyAdd(x0, y1, c01);
            c02 = coopMultiplyAdd(x0, y2, c02);
            c03 = coopMultiplyAdd(x0, y3, c03);
            c10 = coopMultiplyAdd(x1, y0, c10);
            c11 = coopMultiplyAdd(x1, y1, c11);
            c12 = coopMultiplyAdd(x1, y2, c12);
            c13 = coopMultiplyAdd(x1, y3, c13);
        }
    }
    let obase = wid.z * p.o_batch;
    let r0 = row0 + sm;
    let r1 = r0 + 16u;
    let c = col0 + sn;
    emit(c00, sg, lane, r0, c, obase);
    emit(c01, sg, lane, r0, c + 16u, obase);
    emit(c02, sg, lane, r0, c + 32u, obase);
    emit(c03, sg, lane, r0, c + 48u, obase);
    emit(c10, sg, lane, r1, c, obase);
    emit(c11, sg, lane, r1, c + 16u, obase);
    emit(c12, sg, lane, r1, c + 32u, obase);
    emit(c13, sg, lane, r1, c + 48u, obase);
}

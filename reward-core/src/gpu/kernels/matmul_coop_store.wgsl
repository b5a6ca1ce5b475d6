// The output and epilogue, one element per store (gemm_store.wgsl's
// `store`, shared with the tiled kernel).
@group(0) @binding(3) var<storage, read_write> out: array<T>;

// The epilogue of the accumulators just stored in the subgroup's tiles
// (`count` of them, at (r0[i], c0[i])): alpha, bias, activation and
// residual in f32 (store()), each value rounded to T once.
fn epilogue(sg: u32, lane: u32, count: u32, r0: array<u32, EPI>, c0: array<u32, EPI>, obase: u32) {
    var rs = r0;
    var cs = c0;
    for (var e = lane; e < count * 256u; e += 32u) {
        let i = e / 256u;
        store(rs[i] + (e % 256u) / 16u, cs[i] + e % 16u, sc[(sg * EPI + i) * 256u + e % 256u], obase);
    }
}

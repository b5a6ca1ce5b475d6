// The output and epilogue four columns at a time (`CoopTile::store4`):
// one 8-byte load and store per quad instead of four 2-byte ones. Only
// where n, the output's row stride, offsets and batch steps are
// multiples of 4 (checked on the host), so that a quad is all inside
// `n` or all outside.
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f16>>;

// out[r, c .. c + 4] (+)= act(alpha * v + bias[c ..]) in f32, rounded to
// f16 once, as gemm_store.wgsl's store() does for one element.
fn store4(r: u32, c: u32, v: vec4<f32>, obase: u32) {
    if (r < p.m && c < p.n) {
        var x = p.alpha * v;
        if ((p.flags & 1u) != 0u) {
            x += vec4<f32>(f32(bias[c]), f32(bias[c + 1u]), f32(bias[c + 2u]), f32(bias[c + 3u]));
        }
        let act = (p.flags >> 2u) & 3u;
        if (act != 0u) {
            let k = act - 1u;
            x = vec4<f32>(activate(x.x, k), activate(x.y, k), activate(x.z, k), activate(x.w, k));
        }
        let o = (obase + r * p.lo.y + c) / 4u;
        if ((p.flags & 2u) != 0u) {
            x += vec4<f32>(out[o]);
        }
        out[o] = vec4<f16>(x);
    }
}

// As SCALAR_STORE's epilogue, a quad of one row per lane and step.
fn epilogue(sg: u32, lane: u32, count: u32, r0: array<u32, EPI>, c0: array<u32, EPI>, obase: u32) {
    var rs = r0;
    var cs = c0;
    for (var q = lane; q < count * 64u; q += 32u) {
        let i = q / 64u;
        let e = (q % 64u) * 4u;
        let at = (sg * EPI + i) * 256u + e;
        let v = vec4<f32>(sc[at], sc[at + 1u], sc[at + 2u], sc[at + 3u]);
        store4(rs[i] + e / 16u, cs[i] + e % 16u, v, obase);
    }
}

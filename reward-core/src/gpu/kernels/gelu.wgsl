// In place: x = act(x) (activation.wgsl, prepended on the host), evaluated
// in f32 at both precisions. The GEMMs apply the same in their epilogue
// (fc1); this kernel stays for other callers and the GEMM-less tests.
struct Params {
    count: u32,
    act: u32,
    groups_x: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<T>;
@group(0) @binding(1) var<uniform> p: Params;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p.groups_x * WG;
    if (i < p.count) {
        x[i] = T(activate(f32(x[i]), p.act));
    }
}

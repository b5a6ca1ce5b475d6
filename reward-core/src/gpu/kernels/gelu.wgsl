// In place: x = act(x) for quick_gelu (x * sigmoid(1.702 x)), exact gelu
// (erf, by the Numerical Recipes erfc fit as in the CPU reference) and the
// tanh approximation. Evaluated in f32 at both precisions.
struct Params {
    count: u32,
    act: u32,
    groups_x: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<T>;
@group(0) @binding(1) var<uniform> p: Params;

fn erf_approx(v: f32) -> f32 {
    let z = abs(v);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    let erfc = t * exp(poly);
    return select(erfc - 1.0, 1.0 - erfc, v >= 0.0);
}

fn activate(v: f32) -> f32 {
    if (p.act == 0u) {
        return v / (1.0 + exp(-1.702 * v));
    }
    if (p.act == 1u) {
        return 0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752));
    }
    // Clamped: some drivers compute tanh through exp, which overflows.
    let inner = clamp(0.7978846 * (v + 0.044715 * v * v * v), -15.0, 15.0);
    return 0.5 * v * (1.0 + tanh(inner));
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p.groups_x * WG;
    if (i < p.count) {
        x[i] = T(activate(f32(x[i])));
    }
}

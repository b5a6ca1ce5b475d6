// The MLP activations in f32, shared by gelu.wgsl and both GEMM epilogues:
// act 0 = quick_gelu (x * sigmoid(1.702 x)), 1 = exact gelu (erf, by the
// Numerical Recipes erfc fit as in the CPU reference), 2 = the tanh
// approximation. Mirrors `activate` in clip/ops.rs.

fn erf_approx(v: f32) -> f32 {
    let z = abs(v);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    let erfc = t * exp(poly);
    return select(erfc - 1.0, 1.0 - erfc, v >= 0.0);
}

fn activate(v: f32, act: u32) -> f32 {
    if (act == 0u) {
        return v / (1.0 + exp(-1.702 * v));
    }
    if (act == 1u) {
        return 0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752));
    }
    // Clamped: some drivers compute tanh through exp, which overflows.
    let inner = clamp(0.7978846 * (v + 0.044715 * v * v * v), -15.0, 15.0);
    return 0.5 * v * (1.0 + tanh(inner));
}

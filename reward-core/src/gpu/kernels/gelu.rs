//! The MLP activations, in place: quick-GELU, exact GELU, tanh GELU.
//! Test-only (see `kernels/mod.rs`): the towers fuse the activation into
//! fc1's GEMM (`Gemm::act`), which runs the same `activation.wgsl`.
//!
//! Mirrors `activate` in `clip/ops.rs` (`QuickGELUActivation`,
//! `GELUActivation`, `NewGELUActivation` of transformers).

use super::super::context::{Dispatch, GpuContext};
use super::super::error::GpuError;
use super::{WORKGROUP, grid, u32_of};
use crate::clip::Activation;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    count: u32,
    act: u32,
    groups_x: u32,
    pad: u32,
}

/// The kernel with the shared activation functions.
const GELU_SOURCE: &str = concat!(include_str!("activation.wgsl"), include_str!("gelu.wgsl"));

/// Applies `act` to the first `count` elements of `x`.
pub(crate) async fn gelu(
    ctx: &GpuContext,
    act: Activation,
    x: &wgpu::Buffer,
    count: usize,
) -> Result<Dispatch, GpuError> {
    let pipeline = ctx
        .pipeline("gelu", GELU_SOURCE, &[("WG", WORKGROUP)])
        .await?;
    let count = u32_of(count, "activation length")?;
    let groups = grid(count, WORKGROUP);
    let params = Params {
        count,
        act: super::matmul::act_code(act),
        groups_x: groups[0],
        pad: 0,
    };
    Ok(Dispatch::new(pipeline, &[x], &params, groups))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_close, data, precisions, run, tolerance, upload};
    use super::*;

    #[test]
    fn every_activation_against_the_cpu() {
        for act in [
            Activation::QuickGelu,
            Activation::Gelu,
            Activation::GeluTanh,
        ] {
            for len in [1, 255, 1000] {
                for (ctx, precision) in precisions() {
                    // Wide range: saturating tails on both sides.
                    let x: alloc::vec::Vec<f32> = data(len, 11).iter().map(|v| v * 12.0).collect();
                    let buf = upload(ctx, &x);
                    let d = pollster::block_on(gelu(ctx, act, &buf, len)).expect("record");
                    let got = run(ctx, alloc::vec![d], &buf, len);
                    let mut want = x.clone();
                    crate::clip::ops::activate(&mut want, len, act);
                    let what = alloc::format!("{act:?} x{len} {precision:?}");
                    assert_close(&got, &want, tolerance(precision), &what);
                }
            }
        }
    }
}

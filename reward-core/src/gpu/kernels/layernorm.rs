//! LayerNorm over the last dimension, optionally of gathered rows (the
//! pooled class / end-of-text token).
//!
//! Mirrors `LayerNorm::forward` / `norm_row` in `clip/ops.rs`
//! (`torch.nn.LayerNorm`).
//!
//! `GpuOptions::layernorm_lanes` invocations share a row (32 by default:
//! 8 rows per workgroup of 256, so each reduction's barriers serve 8 rows;
//! 256 is one row per workgroup, the kernel before session 7), and rows
//! whose width is a multiple of 4 move as `vec4`s.

use super::super::context::{Dispatch, GpuContext};
use super::super::error::GpuError;
use super::{WORKGROUP, grid, u32_of};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    dim: u32,
    gather: u32,
    groups_x: u32,
    eps: f32,
    pad: [u32; 3],
}

/// A LayerNorm's parameters on the device.
pub(crate) struct Norm<'a> {
    pub gamma: &'a wgpu::Buffer,
    pub beta: &'a wgpu::Buffer,
    pub dim: usize,
    pub eps: f32,
}

/// Normalises `rows` rows into `out`; with `src_rows`, output row `r` is
/// input row `src_rows[r]` (a `u32` buffer), else row `r`.
pub(crate) async fn layernorm(
    ctx: &GpuContext,
    norm: &Norm<'_>,
    x: &wgpu::Buffer,
    rows: usize,
    src_rows: Option<&wgpu::Buffer>,
    out: &wgpu::Buffer,
) -> Result<Dispatch, GpuError> {
    let lanes = ctx.layernorm_lanes();
    let vec = if norm.dim % 4 == 0 { 4 } else { 1 };
    let consts = [("WG", WORKGROUP), ("LANES", lanes), ("VEC", vec)];
    let pipeline = ctx
        .pipeline_generated("layernorm", &consts, || {
            alloc::format!("{}{}", vector_aliases(vec), include_str!("layernorm.wgsl"))
        })
        .await?;
    let rows = u32_of(rows, "layernorm rows")?;
    let groups = grid(rows, WORKGROUP / lanes);
    let params = Params {
        rows,
        dim: u32_of(norm.dim, "layernorm width")?,
        gather: u32::from(src_rows.is_some()),
        groups_x: groups[0],
        eps: norm.eps,
        pad: [0; 3],
    };
    // Without gathering the index binding is unused; any buffer will do.
    let src = src_rows.unwrap_or(norm.gamma);
    Ok(Dispatch::new(
        pipeline,
        &[x, norm.gamma, norm.beta, src, out],
        &params,
        groups,
    ))
}

/// The element group the kernel moves (`V`), its f32 form (`VF`) and the
/// sum of its components (`hsum`), for `vec` = 4 or 1.
fn vector_aliases(vec: u32) -> &'static str {
    match vec {
        4 => {
            "alias V = vec4<T>;\nalias VF = vec4<f32>;\n\
              fn hsum(v: VF) -> f32 {\n    return v.x + v.y + v.z + v.w;\n}\n"
        }
        _ => "alias V = T;\nalias VF = f32;\nfn hsum(v: VF) -> f32 {\n    return v;\n}\n",
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::super::testing::{assert_close, data, precisions, run, tolerance, upload};
    use super::*;

    /// `LayerNorm::norm_row` of `clip/ops.rs` (f64 statistics).
    fn reference(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f32> {
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let inv = 1.0 / (var + eps as f64).sqrt();
        x.iter()
            .zip(gamma)
            .zip(beta)
            .map(|((&v, g), b)| ((v as f64 - mean) * inv) as f32 * g + b)
            .collect()
    }

    fn check(rows: usize, dim: usize, gather: Option<&[u32]>) {
        for (ctx, precision) in precisions() {
            check_on(ctx, precision, rows, dim, gather);
        }
    }

    /// [`check`] on one context.
    fn check_on(
        ctx: &GpuContext,
        precision: crate::gpu::Precision,
        rows: usize,
        dim: usize,
        gather: Option<&[u32]>,
    ) {
        let mut x = data(rows * dim, 7);
        // An offset mean: the centred two-pass variance must not cancel.
        x.iter_mut().for_each(|v| *v = *v * 3.0 + 5.0);
        let (gamma, beta) = (data(dim, 8), data(dim, 9));
        let (xb, gb, bb) = (upload(ctx, &x), upload(ctx, &gamma), upload(ctx, &beta));
        let out_rows = gather.map_or(rows, <[u32]>::len);
        let out = upload(ctx, &alloc::vec![0.0; out_rows * dim]);
        let idx = gather.map(|g| pollster::block_on(ctx.upload_u32("rows", g)).expect("upload"));
        let norm = Norm {
            gamma: &gb,
            beta: &bb,
            dim,
            eps: 1e-5,
        };
        let d = pollster::block_on(layernorm(ctx, &norm, &xb, out_rows, idx.as_ref(), &out));
        let got = run(ctx, alloc::vec![d.expect("record")], &out, out_rows * dim);
        let want: Vec<f32> = (0..out_rows)
            .flat_map(|r| {
                let src = gather.map_or(r, |g| g[r] as usize);
                reference(&x[src * dim..][..dim], &gamma, &beta, 1e-5)
            })
            .collect();
        let what = alloc::format!("layernorm {rows}x{dim} {precision:?}");
        assert_close(&got, &want, tolerance(precision), &what);
    }

    #[test]
    fn edge_shapes() {
        check(1, 1, None);
        check(3, 5, None);
        check(7, 300, None);
        check(2, 1030, None);
        // Rows that fill one workgroup and spill into a second (8 per
        // workgroup), with and without vec4 rows.
        check(13, 64, None);
        check(9, 1026, None);
    }

    /// Every lane count the option allows, on shapes around each one's
    /// rows per workgroup and lanes per row.
    #[test]
    fn every_lane_count() {
        use crate::gpu::{GpuOptions, Precision};
        for lanes in [1, 4, 32, 256] {
            let options = GpuOptions {
                precision: Some(Precision::F32),
                force_fallback_adapter: true,
                layernorm_lanes: lanes,
                ..GpuOptions::default()
            };
            let Ok(ctx) = GpuContext::new(&options) else {
                std::eprintln!("layernorm lanes SKIPPED: no adapter");
                return;
            };
            for (rows, dim) in [(1, 3), (5, 64), (300, 12), (3, 1030)] {
                check_on(&ctx, Precision::F32, rows, dim, None);
            }
            check_on(&ctx, Precision::F32, 4, 40, Some(&[3, 0, 2]));
        }
        let bad = GpuOptions {
            layernorm_lanes: 48,
            ..GpuOptions::default()
        };
        let err = GpuContext::new(&bad).err().expect("48 lanes");
        assert!(alloc::format!("{err}").contains("layernorm_lanes"), "{err}");
    }

    #[test]
    fn gathered_rows() {
        check(6, 40, Some(&[5, 0, 3]));
    }
}

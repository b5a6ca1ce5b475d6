//! Batched CLIP scoring: `logit_scale * cos(image_i, text_j)` for many
//! images x many texts, as row normalisation plus one GEMM.
//!
//! Mirrors `ClipModel::logits_per_image` in `clip/model.rs`
//! (`logits_per_image` of `CLIPModel`).

use super::super::context::{Dispatch, GpuContext};
use super::super::error::GpuError;
use super::matmul::{Gemm, matmul};
use super::{WORKGROUP, grid, u32_of};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    dim: u32,
    groups_x: u32,
    pad: u32,
}

/// Rows of `x[rows, dim]` scaled to unit L2 norm into `out`.
pub(crate) async fn normalize_rows(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    rows: usize,
    dim: usize,
    out: &wgpu::Buffer,
) -> Result<Dispatch, GpuError> {
    let pipeline = ctx
        .pipeline(
            "normalize_rows",
            include_str!("scoring.wgsl"),
            &[("WG", WORKGROUP)],
        )
        .await?;
    let rows = u32_of(rows, "rows")?;
    let groups = grid(rows, 1);
    let params = Params {
        rows,
        dim: u32_of(dim, "embedding width")?,
        groups_x: groups[0],
        pad: 0,
    };
    Ok(Dispatch::new(pipeline, &[x, out], &params, groups))
}

/// The buffers of one scoring call: raw and normalised images and texts,
/// and the `[images, texts]` logits.
pub(crate) struct ScoreBuffers<'a> {
    pub images: &'a wgpu::Buffer,
    pub texts: &'a wgpu::Buffer,
    pub images_unit: &'a wgpu::Buffer,
    pub texts_unit: &'a wgpu::Buffer,
    pub logits: &'a wgpu::Buffer,
}

/// Records `logits = scale * normalize(images) @ normalize(texts)^T`.
pub(crate) async fn logits(
    ctx: &GpuContext,
    b: &ScoreBuffers<'_>,
    (n_images, n_texts, dim): (usize, usize, usize),
    scale: f32,
) -> Result<[Dispatch; 3], GpuError> {
    let mut g = Gemm::new(n_images, n_texts, dim);
    g.alpha = scale;
    Ok([
        normalize_rows(ctx, b.images, n_images, dim, b.images_unit).await?,
        normalize_rows(ctx, b.texts, n_texts, dim, b.texts_unit).await?,
        matmul(ctx, &g, b.images_unit, b.texts_unit, None, b.logits).await?,
    ])
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::super::testing::{assert_close, data, precisions, run, tolerance, upload};
    use super::*;
    use crate::clip::Embeddings;

    #[test]
    fn logits_match_the_cpu_for_many_images_and_texts() {
        for (m, n, d) in [(1, 1, 3), (5, 70, 24), (67, 3, 300)] {
            for (ctx, precision) in precisions() {
                let mut a = data(m * d, 51);
                // A zero row stays zero (no NaN), as in `Embeddings::normalized`.
                a[..d].fill(0.0);
                let b = data(n * d, 52);
                let (ea, eb) = (
                    Embeddings::new(a.clone(), m, d).unwrap(),
                    Embeddings::new(b.clone(), n, d).unwrap(),
                );
                let (na, nb) = (ea.normalized(), eb.normalized());
                let want: Vec<f32> = na
                    .iter()
                    .flat_map(|r| {
                        nb.iter()
                            .map(move |t| 100.0 * r.iter().zip(t).map(|(x, y)| x * y).sum::<f32>())
                    })
                    .collect();
                let (ab, bb) = (upload(ctx, &a), upload(ctx, &b));
                let (au, bu) = (upload(ctx, &a), upload(ctx, &b));
                let out = upload(ctx, &alloc::vec![0.0; m * n]);
                let bufs = ScoreBuffers {
                    images: &ab,
                    texts: &bb,
                    images_unit: &au,
                    texts_unit: &bu,
                    logits: &out,
                };
                let ds = pollster::block_on(logits(ctx, &bufs, (m, n, d), 100.0)).expect("record");
                let got = run(ctx, ds.into_iter().collect(), &out, m * n);
                assert_close(
                    &got,
                    &want,
                    tolerance(precision),
                    &alloc::format!("logits {m}x{n}x{d} {precision:?}"),
                );
                assert!(
                    got[..n].iter().all(|&v| v == 0.0),
                    "zero image row scores 0"
                );
            }
        }
    }
}

//! Patch embedding of the vision tower: im2col, then (through the GEMM
//! kernel) the bias-free convolution, then class token + positions.
//!
//! Mirrors `VisionTransformer::im2col` and `embed` in `clip/vision.rs`
//! (`CLIPVisionEmbeddings` in transformers).

use alloc::vec::Vec;

use super::super::context::{Dispatch, GpuContext};
use super::super::error::GpuError;
use super::{WORKGROUP, grid, u32_of};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Im2colParams {
    count: u32,
    channels: u32,
    size: u32,
    patch: u32,
    grid: u32,
    groups_x: u32,
    width: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct TokenParams {
    count: u32,
    hidden: u32,
    tokens: u32,
    groups_x: u32,
}

/// The image geometry: `channels x size x size`, square patches of `patch`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PatchShape {
    pub channels: usize,
    pub size: usize,
    pub patch: usize,
    /// Whether patch rows are zero padded for the cooperative GEMM
    /// ([`PatchShape::row_width`]); only where that kernel runs.
    pub padded: bool,
}

impl PatchShape {
    /// Patches per side.
    pub(crate) fn grid(&self) -> usize {
        self.size / self.patch
    }

    /// Values per patch: `channels x patch x patch`.
    pub(crate) fn values(&self) -> usize {
        self.channels * self.patch * self.patch
    }

    /// The patch rows' width as im2col writes them: [`Self::values`], and
    /// when `padded` zeros up to a multiple of the deepest k block of the
    /// cooperative GEMM tiles, so that the patch GEMM runs on tensor cores
    /// whatever the patch size (ViT-L/14's 3 x 14 x 14 = 588 is no
    /// multiple of 32; 640 is). The zero columns meet zero weight columns
    /// and change no sum; the portable GEMM would only do more work.
    pub(crate) fn row_width(&self) -> usize {
        match self.padded {
            true => self.values().next_multiple_of(K_MULTIPLE),
            false => self.values(),
        }
    }
}

/// The deepest k block of [`super::matmul_coop::COOP_TILES`].
const K_MULTIPLE: usize = {
    let mut max = 1;
    let mut i = 0;
    while i < super::matmul_coop::COOP_TILES.len() {
        let kt = super::matmul_coop::COOP_TILES[i].kt as usize;
        if kt > max {
            max = kt;
        }
        i += 1;
    }
    max
};

/// The conv weight `[out, channels, patch, patch]` as GEMM rows of
/// [`PatchShape::row_width`], zero padded.
pub(crate) fn padded_weight(weight: &[f32], shape: PatchShape) -> Vec<f32> {
    let (values, width) = (shape.values(), shape.row_width());
    let mut out = Vec::with_capacity(weight.len() / values.max(1) * width);
    for row in weight.chunks_exact(values) {
        out.extend_from_slice(row);
        out.resize(out.len() + width - values, 0.0);
    }
    out
}

/// `patches[n * grid^2, row_width]` from `pixels[n, c, size, size]` (the
/// `channels * patch^2` values of each patch, then zeros).
/// The pixels are f32 at any precision (converted here, on the GPU: on the
/// host, f16 conversion of a batch cost more than this kernel).
pub(crate) async fn im2col(
    ctx: &GpuContext,
    shape: PatchShape,
    n: usize,
    pixels: &wgpu::Buffer,
    patches: &wgpu::Buffer,
) -> Result<Dispatch, GpuError> {
    let pipeline = ctx
        .pipeline(
            "im2col",
            include_str!("patch_embed.wgsl"),
            &[("WG", WORKGROUP)],
        )
        .await?;
    let g = shape.grid();
    let count = u32_of(n * g * g * shape.row_width(), "patch values")?;
    let groups = grid(count, WORKGROUP);
    let params = Im2colParams {
        count,
        channels: u32_of(shape.channels, "channels")?,
        size: u32_of(shape.size, "image size")?,
        patch: u32_of(shape.patch, "patch size")?,
        grid: u32_of(g, "grid")?,
        groups_x: groups[0],
        width: u32_of(shape.row_width(), "patch row width")?,
        pad: 0,
    };
    Ok(Dispatch::new(pipeline, &[pixels, patches], &params, groups))
}

/// `x[n * tokens, hidden]`: class token then projected patches, plus positions.
pub(crate) async fn patch_tokens(
    ctx: &GpuContext,
    n: usize,
    tokens: usize,
    hidden: usize,
    inputs: [&wgpu::Buffer; 3],
    x: &wgpu::Buffer,
) -> Result<Dispatch, GpuError> {
    let pipeline = ctx
        .pipeline(
            "patch_tokens",
            include_str!("patch_tokens.wgsl"),
            &[("WG", WORKGROUP)],
        )
        .await?;
    let count = u32_of(n * tokens * hidden, "token values")?;
    let groups = grid(count, WORKGROUP);
    let params = TokenParams {
        count,
        hidden: u32_of(hidden, "hidden size")?,
        tokens: u32_of(tokens, "tokens")?,
        groups_x: groups[0],
    };
    let [projected, class, pos] = inputs;
    Ok(Dispatch::new(
        pipeline,
        &[projected, class, pos, x],
        &params,
        groups,
    ))
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::super::testing::{assert_close, data, precisions, run, tolerance, upload};
    use super::*;

    /// `values` as f32 whatever the context's precision, as the towers upload pixels.
    fn upload_f32(ctx: &GpuContext, values: &[f32]) -> wgpu::Buffer {
        pollster::block_on(ctx.upload_bytes("pixels", bytemuck::cast_slice(values)))
            .expect("upload")
    }

    /// `VisionTransformer::im2col` of `clip/vision.rs`.
    fn reference(pixels: &[f32], s: PatchShape, n: usize) -> Vec<f32> {
        let (c, p, size, g) = (s.channels, s.patch, s.size, s.grid());
        let mut out = Vec::new();
        for image in pixels.chunks_exact(c * size * size).take(n) {
            for (gy, gx) in (0..g).flat_map(|gy| (0..g).map(move |gx| (gy, gx))) {
                for ch in 0..c {
                    for ky in 0..p {
                        let start = ch * size * size + (gy * p + ky) * size + gx * p;
                        out.extend_from_slice(&image[start..start + p]);
                    }
                }
                out.resize(out.len() + s.row_width() - s.values(), 0.0);
            }
        }
        out
    }

    #[test]
    fn patch_rows_are_padded_to_the_deepest_k_block() {
        let vit_l = PatchShape {
            channels: 3,
            size: 336,
            patch: 14,
            padded: true,
        };
        assert_eq!((vit_l.values(), vit_l.row_width()), (588, 640));
        let plain = PatchShape {
            padded: false,
            ..vit_l
        };
        assert_eq!(plain.row_width(), 588);
        let vit_b = PatchShape { patch: 32, ..vit_l };
        assert_eq!(vit_b.row_width(), 3072);
        let tiles = super::super::matmul_coop::COOP_TILES;
        assert!(tiles.iter().all(|t| 640 % t.kt as usize == 0));
        // Two output rows of 2 x 1 x 1 values: each gains 62 zeros.
        let s = PatchShape {
            channels: 2,
            size: 1,
            patch: 1,
            padded: true,
        };
        let w = padded_weight(&[1.0, 2.0, 3.0, 4.0], s);
        assert_eq!(w.len(), 128);
        assert_eq!((&w[..2], &w[64..66]), (&[1.0, 2.0][..], &[3.0, 4.0][..]));
        assert!(w[2..64].iter().chain(&w[66..]).all(|&v| v == 0.0));
    }

    #[test]
    fn im2col_matches_the_cpu_including_a_floored_grid() {
        // size 7 with patch 3: the last row and column are dropped, as Conv2d does.
        let shapes = [(3, 8, 4, 2), (3, 7, 3, 3), (1, 2, 2, 1)];
        let padded_or_not = shapes.iter().flat_map(|&(channels, size, patch, n)| {
            [false, true].map(|padded| {
                let shape = PatchShape {
                    channels,
                    size,
                    patch,
                    padded,
                };
                (shape, n)
            })
        });
        for (shape, n) in padded_or_not {
            for (ctx, precision) in precisions() {
                let pixels = data(n * shape.channels * shape.size * shape.size, 31);
                let want = reference(&pixels, shape, n);
                let pb = upload_f32(ctx, &pixels);
                let out = upload(ctx, &alloc::vec![0.0; want.len()]);
                let d = pollster::block_on(im2col(ctx, shape, n, &pb, &out)).expect("record");
                let got = run(ctx, alloc::vec![d], &out, want.len());
                assert_close(
                    &got,
                    &want,
                    tolerance(precision),
                    &alloc::format!("{shape:?} {precision:?}"),
                );
            }
        }
    }

    #[test]
    fn class_token_and_positions() {
        let (n, tokens, hidden) = (3, 5, 6);
        for (ctx, precision) in precisions() {
            let projected = data(n * (tokens - 1) * hidden, 41);
            let (class, pos) = (data(hidden, 42), data(tokens * hidden, 43));
            let mut want = Vec::new();
            for i in 0..n {
                for t in 0..tokens {
                    for c in 0..hidden {
                        let base = if t == 0 {
                            class[c]
                        } else {
                            projected[(i * (tokens - 1) + t - 1) * hidden + c]
                        };
                        want.push(base + pos[t * hidden + c]);
                    }
                }
            }
            let bufs = [
                upload(ctx, &projected),
                upload(ctx, &class),
                upload(ctx, &pos),
            ];
            let out = upload(ctx, &alloc::vec![0.0; want.len()]);
            let inputs = [&bufs[0], &bufs[1], &bufs[2]];
            let d = pollster::block_on(patch_tokens(ctx, n, tokens, hidden, inputs, &out))
                .expect("record");
            let got = run(ctx, alloc::vec![d], &out, want.len());
            assert_close(
                &got,
                &want,
                tolerance(precision),
                &alloc::format!("tokens {precision:?}"),
            );
        }
    }
}

//! Fused multi-head self-attention (scores, mask, softmax, `@ v`) over
//! packed, unpadded sequences, from the fused `qkv` projection.
//!
//! Mirrors `Attention::context` / `head` in `clip/attention.rs`
//! (`CLIPAttention` in transformers): `softmax(q k^T / sqrt(d) + mask) v`,
//! heads concatenated.

use alloc::format;
use alloc::vec::Vec;
use core::ops::Range;

use super::super::context::{Dispatch, GpuContext};
use super::super::error::GpuError;
use super::{MAX_GROUPS, u32_of};

/// Invocations per workgroup.
const WG: u32 = 256;
/// Workgroup memory the tiles may use: WebGPU's default 16,384 bytes less
/// a little for the sequence entry.
const TILE_BYTES: u32 = 16_000;

/// Queries and keys per tile for head dim `d`: the largest (16 x 32 for
/// CLIP's d = 64) whose f32 tiles (queries and keys with a padded stride,
/// scores, three per-query rows) fit [`TILE_BYTES`].
fn tile_shape(d: u32) -> (u32, u32) {
    let bytes = |bq: u32, bk: u32| 4 * ((bq + bk) * (d + 1) + bq * bk + 3 * bq);
    let (mut bq, mut bk) = (16, 32);
    while bytes(bq, bk) > TILE_BYTES && bk > 8 {
        bk /= 2;
    }
    while bytes(bq, bk) > TILE_BYTES && bq > 1 {
        bq /= 2;
    }
    (bq, bk)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    hidden: u32,
    causal: u32,
    scale: f32,
    pad: u32,
}

/// The attention shape of one encoder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub hidden: usize,
    pub heads: usize,
}

/// The packed `(start, len)` table of `seqs` for [`attention`].
pub(crate) fn seq_table(seqs: &[Range<usize>]) -> Result<Vec<u32>, GpuError> {
    let mut t = Vec::with_capacity(seqs.len() * 2);
    for s in seqs {
        t.push(u32_of(s.start, "sequence start")?);
        t.push(u32_of(s.len(), "sequence length")?);
    }
    Ok(t)
}

/// `out[rows, hidden]` = per-head attention of `qkv[rows, 3 * hidden]`;
/// `seqs` is the buffer from [`seq_table`] with `num_seqs` entries, the
/// longest `max_len` rows.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn attention(
    ctx: &GpuContext,
    shape: Heads,
    causal: bool,
    qkv: &wgpu::Buffer,
    seqs: &wgpu::Buffer,
    num_seqs: usize,
    max_len: usize,
    out: &wgpu::Buffer,
) -> Result<Dispatch, GpuError> {
    if shape.heads == 0 || shape.hidden % shape.heads != 0 {
        return Err(GpuError::Input(format!(
            "hidden size {} is not a multiple of {} heads",
            shape.hidden, shape.heads
        )));
    }
    let d = u32_of(shape.hidden / shape.heads, "head dim")?;
    if d > 256 {
        return Err(GpuError::Input(format!(
            "head dim {d} is above the supported 256"
        )));
    }
    let (bq, bk) = tile_shape(d);
    let dpt = (bq * d).div_ceil(WG);
    let consts = [("WG", WG), ("BQ", bq), ("BK", bk), ("D", d), ("DPT", dpt)];
    let pipeline = ctx
        .pipeline("attention", include_str!("attention.wgsl"), &consts)
        .await?;
    let params = Params {
        hidden: u32_of(shape.hidden, "hidden size")?,
        causal: u32::from(causal),
        scale: (d as f32).powf(-0.5),
        pad: 0,
    };
    let groups = [
        u32_of(max_len, "sequence length")?.div_ceil(bq).max(1),
        u32_of(shape.heads, "heads")?,
        u32_of(num_seqs, "sequences")?.max(1),
    ];
    if groups.iter().any(|&g| g > MAX_GROUPS) {
        return Err(GpuError::Input(format!(
            "attention over {num_seqs} sequences needs {groups:?} workgroups, above 65535"
        )));
    }
    Ok(Dispatch::new(pipeline, &[qkv, seqs, out], &params, groups))
}

#[cfg(test)]
pub(crate) mod tests {
    use alloc::vec;

    use super::super::testing::{assert_close, data, precisions, run, tolerance, upload};
    use super::*;
    use crate::clip::ops::softmax_row;

    /// `Attention::head` of `clip/attention.rs` for every (sequence, head).
    pub(crate) fn reference(
        qkv: &[f32],
        seqs: &[Range<usize>],
        hidden: usize,
        heads: usize,
        causal: bool,
    ) -> Vec<f32> {
        let d = hidden / heads;
        let rows = seqs.last().map_or(0, |s| s.end);
        let mut out = vec![0.0; rows * hidden];
        let at = |row: usize, part: usize, h: usize, c: usize| {
            qkv[row * 3 * hidden + part * hidden + h * d + c]
        };
        for s in seqs {
            for h in 0..heads {
                for i in 0..s.len() {
                    let mut scores: Vec<f32> = (0..s.len())
                        .map(|j| {
                            (0..d)
                                .map(|c| at(s.start + i, 0, h, c) * at(s.start + j, 1, h, c))
                                .sum::<f32>()
                        })
                        .map(|v| v * (d as f32).powf(-0.5))
                        .collect();
                    softmax_row(&mut scores, if causal { i + 1 } else { s.len() });
                    for c in 0..d {
                        out[(s.start + i) * hidden + h * d + c] = (0..s.len())
                            .map(|j| scores[j] * at(s.start + j, 2, h, c))
                            .sum();
                    }
                }
            }
        }
        out
    }

    fn check(lens: &[usize], hidden: usize, heads: usize, causal: bool) {
        let mut seqs = Vec::new();
        let mut start = 0;
        for &l in lens {
            seqs.push(start..start + l);
            start += l;
        }
        for (ctx, precision) in precisions() {
            let qkv: Vec<f32> = data(start * 3 * hidden, 21)
                .iter()
                .map(|v| v * 2.0)
                .collect();
            let qb = upload(ctx, &qkv);
            let table =
                pollster::block_on(ctx.upload_u32("seqs", &seq_table(&seqs).unwrap())).unwrap();
            let out = upload(ctx, &vec![0.0; start * hidden]);
            let max_len = lens.iter().copied().max().unwrap_or(0);
            let shape = Heads { hidden, heads };
            let want = reference(&qkv, &seqs, hidden, heads, causal);
            let n = lens.len();
            let d = attention(ctx, shape, causal, &qb, &table, n, max_len, &out);
            let got = run(
                ctx,
                vec![pollster::block_on(d).expect("record")],
                &out,
                start * hidden,
            );
            let what =
                alloc::format!("attention {lens:?} {hidden}/{heads} causal={causal} {precision:?}");
            assert_close(&got, &want, tolerance(precision), &what);
        }
    }

    #[test]
    fn shorter_than_a_workgroup() {
        check(&[1], 8, 2, false);
        check(&[5], 12, 3, true);
    }

    #[test]
    fn several_sequences_of_different_lengths() {
        check(&[3, 70, 17], 16, 2, true);
        check(&[65, 65], 16, 4, false);
    }

    #[test]
    fn head_dim_64_over_key_tiles() {
        check(&[40], 128, 2, false);
    }

    #[test]
    fn long_sequence_and_large_head_dims() {
        // 577 tokens: ViT-L/14-336's sequence, over many query and key tiles.
        check(&[577], 64, 1, false);
        check(&[33, 9], 2 * 256, 2, true);
        check(&[20], 3 * 100, 3, false);
    }

    #[test]
    fn tiles_fit_workgroup_memory() {
        for d in [1, 3, 64, 65, 100, 128, 256] {
            let (bq, bk) = tile_shape(d);
            let bytes = 4 * ((bq + bk) * (d + 1) + bq * bk + 3 * bq);
            assert!(
                bytes <= TILE_BYTES,
                "d = {d}: {bq} x {bk} needs {bytes} bytes"
            );
        }
        assert_eq!(tile_shape(64), (16, 32));
    }

    #[test]
    fn bad_head_split_is_an_error() {
        let Some((ctx, _)) = precisions().into_iter().next() else {
            return;
        };
        let b = upload(ctx, &[0.0; 4]);
        let r = pollster::block_on(attention(
            ctx,
            Heads {
                hidden: 10,
                heads: 3,
            },
            false,
            &b,
            &b,
            1,
            1,
            &b,
        ));
        assert!(matches!(r, Err(GpuError::Input(m)) if m.contains("not a multiple")));
    }
}

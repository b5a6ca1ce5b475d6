//! The text tower's input rows, gathered on the device: token embedding
//! plus position embedding for each token of the packed sequences.
//!
//! Mirrors `embed` in `clip/text.rs` (`CLIPTextEmbeddings` in transformers).
//! The token table goes up once, at load. A call then uploads 8 bytes per
//! token (its id and position) instead of a hidden-wide row of values
//! gathered, summed and converted on the host, and the host keeps no copy
//! of the table (CLIP's is 49,408 x 768: 152 MB in f32).

use alloc::vec::Vec;

use super::super::context::{Dispatch, GpuContext, Precision};
use super::super::error::GpuError;
use super::{WORKGROUP, grid, u32_of};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    count: u32,
    hidden: u32,
    first: u32,
    end: u32,
    groups_x: u32,
    pad: [u32; 3],
}

/// A token table as the checkpoint gives it.
pub(crate) enum TableValues<'a> {
    /// Decoded values, uploaded in the device's precision.
    F32(&'a [f32]),
    /// f16 as stored, for an f16 device (uploaded as it is).
    F16(&'a [u8]),
}

/// One part of the table: the ids `first..end`, in one buffer.
struct Part {
    first: u32,
    end: u32,
    buffer: wgpu::Buffer,
}

/// The token table (in parts that each fit one storage binding) and the
/// position table, on the device.
pub(crate) struct TokenTable {
    parts: Vec<Part>,
    positions: wgpu::Buffer,
    hidden: usize,
}

impl TokenTable {
    /// Rows of `hidden` values per part: as many as one storage binding
    /// holds. A browser grants 128 MiB, less than CLIP's f32 table.
    pub(crate) fn part_rows(ctx: &GpuContext, hidden: usize) -> usize {
        let limits = ctx.limits();
        let limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        // Buffers are rounded up to 16 bytes: stay within the rounded-down limit.
        let row_bytes = hidden as u64 * ctx.precision().size();
        ((limit & !15) / row_bytes.max(1)).max(1) as usize
    }

    /// Uploads `table [vocab, hidden]` in parts of `part_rows` rows, and
    /// `positions [max_positions, hidden]`.
    pub(crate) async fn upload(
        ctx: &GpuContext,
        table: TableValues<'_>,
        positions: &[f32],
        hidden: usize,
        part_rows: usize,
    ) -> Result<Self, GpuError> {
        let (len, stored_f16) = match table {
            TableValues::F32(v) => (v.len(), false),
            TableValues::F16(b) => (b.len() / 2, true),
        };
        if hidden == 0 || len % hidden != 0 || positions.len() % hidden != 0 {
            return Err(GpuError::Input(alloc::format!(
                "token tables of {len} and {} values are not rows of {hidden}",
                positions.len()
            )));
        }
        if stored_f16 && ctx.precision() != Precision::F16 {
            return Err(GpuError::Input(
                "an f16 token table needs an f16 device".into(),
            ));
        }
        let vocab = len / hidden;
        let mut parts = Vec::new();
        for first in (0..vocab).step_by(part_rows.max(1)) {
            let end = (first + part_rows.max(1)).min(vocab);
            let span = first * hidden..end * hidden;
            let buffer = match table {
                TableValues::F32(v) => ctx.upload("token embedding", &v[span]).await?,
                TableValues::F16(b) => {
                    ctx.upload_bytes("token embedding", &b[span.start * 2..span.end * 2])
                        .await?
                }
            };
            parts.push(Part {
                first: u32_of(first, "token id")?,
                end: u32_of(end, "token id")?,
                buffer,
            });
        }
        Ok(Self {
            parts,
            positions: ctx.upload("text position embedding", positions).await?,
            hidden,
        })
    }

    /// The number of buffers the token table spans.
    #[cfg(test)]
    pub(crate) fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Records `x[rows, hidden]` from `rows` (one `(id, position)` pair of
    /// u32 per row; checked against the tables by the caller): one launch
    /// per part of the table.
    pub(crate) async fn record(
        &self,
        ctx: &GpuContext,
        rows: &wgpu::Buffer,
        count: usize,
        x: &wgpu::Buffer,
    ) -> Result<Vec<Dispatch>, GpuError> {
        let pipeline = ctx
            .pipeline(
                "token_embed",
                include_str!("token_embed.wgsl"),
                &[("WG", WORKGROUP)],
            )
            .await?;
        let values = u32_of(count * self.hidden, "text token values")?;
        let groups = grid(values, WORKGROUP);
        let mut out = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let params = Params {
                count: values,
                hidden: u32_of(self.hidden, "hidden size")?,
                first: part.first,
                end: part.end,
                groups_x: groups[0],
                pad: [0; 3],
            };
            out.push(Dispatch::new(
                pipeline.clone(),
                &[rows, &part.buffer, &self.positions, x],
                &params,
                groups,
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;
    use alloc::vec::Vec;

    use super::super::testing::{assert_close, context, data, precisions, run, tolerance};
    use super::*;

    /// `embed` of `clip/text.rs` over the `(id, position)` rows.
    fn reference(table: &[f32], positions: &[f32], rows: &[[u32; 2]], h: usize) -> Vec<f32> {
        rows.iter()
            .flat_map(|&[id, p]| {
                let tok = &table[id as usize * h..][..h];
                let pos = &positions[p as usize * h..][..h];
                tok.iter().zip(pos).map(|(t, q)| t + q)
            })
            .collect()
    }

    fn gather(ctx: &GpuContext, table: &TokenTable, rows: &[[u32; 2]], h: usize) -> Vec<f32> {
        let bytes: &[u8] = bytemuck::cast_slice(rows);
        let rows_buf = pollster::block_on(ctx.upload_bytes("rows", bytes)).expect("upload");
        let x = pollster::block_on(ctx.storage("x", (rows.len() * h * 4) as u64)).expect("x");
        let d = pollster::block_on(table.record(ctx, &rows_buf, rows.len(), &x)).expect("record");
        run(ctx, d, &x, rows.len() * h)
    }

    #[test]
    fn rows_match_the_cpu_with_the_table_in_one_part_or_many() {
        // 11 ids of width 5 (not a multiple of anything), 4 positions; the
        // rows visit every id, the first and last of each part, repeats.
        let (vocab, h, npos) = (11, 5, 4);
        let table = data(vocab * h, 71);
        let positions = data(npos * h, 72);
        let rows: Vec<[u32; 2]> = (0..vocab as u32)
            .rev()
            .chain([0, 10, 3, 3])
            .zip((0..npos as u32).cycle())
            .map(|(id, p)| [id, p])
            .collect();
        let want = reference(&table, &positions, &rows, h);
        for (ctx, precision) in precisions() {
            for (part_rows, parts) in [(vocab, 1), (4, 3), (1, vocab), (100, 1)] {
                let t = TableValues::F32(&table);
                let up = pollster::block_on(TokenTable::upload(ctx, t, &positions, h, part_rows))
                    .expect("upload");
                assert_eq!(up.parts(), parts, "parts of {part_rows} rows");
                let got = gather(ctx, &up, &rows, h);
                let what = alloc::format!("{precision:?}, parts of {part_rows}");
                assert_close(&got, &want, tolerance(precision), &what);
            }
        }
    }

    #[test]
    fn an_f16_table_goes_up_as_stored_and_gives_the_same_rows() {
        let Some(ctx) = context(Precision::F16) else {
            return;
        };
        let (vocab, h) = (9, 6);
        // Values exact in f16, so both uploads hold the same numbers.
        let table: Vec<f32> = data(vocab * h, 73)
            .iter()
            .map(|&v| half::f16::from_f32(v).to_f32())
            .collect();
        let raw: Vec<u8> = table
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let positions = data(2 * h, 74);
        let rows: Vec<[u32; 2]> = (0..vocab as u32).map(|id| [id, id % 2]).collect();
        let decoded = pollster::block_on(TokenTable::upload(
            ctx,
            TableValues::F32(&table),
            &positions,
            h,
            4,
        ))
        .expect("upload");
        let stored = pollster::block_on(TokenTable::upload(
            ctx,
            TableValues::F16(&raw),
            &positions,
            h,
            4,
        ))
        .expect("upload");
        let want = gather(ctx, &decoded, &rows, h);
        assert_eq!(gather(ctx, &stored, &rows, h), want);
        assert_close(
            &want,
            &reference(&table, &positions, &rows, h),
            tolerance(Precision::F16),
            "f16 rows",
        );
    }

    #[test]
    fn a_table_that_is_not_whole_rows_is_an_error() {
        let Some(ctx) = context(Precision::F32) else {
            return;
        };
        let t = TableValues::F32(&[0.0; 7]);
        let err = pollster::block_on(TokenTable::upload(ctx, t, &[0.0; 3], 3, 10))
            .err()
            .expect("7 values are not rows of 3");
        assert!(err.to_string().contains("rows of 3"), "{err}");
        let t = TableValues::F16(&[0; 6]);
        let err = pollster::block_on(TokenTable::upload(ctx, t, &[0.0; 3], 3, 10))
            .err()
            .expect("f16 bytes on an f32 device");
        assert!(err.to_string().contains("f16 device"), "{err}");
    }
}

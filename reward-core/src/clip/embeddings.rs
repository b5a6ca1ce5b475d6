//! Embedding matrices returned by the CLIP towers.

use alloc::vec::Vec;

/// A row-major `rows x dim` f32 matrix: one embedding per row.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    data: Vec<f32>,
    rows: usize,
    dim: usize,
}

impl Embeddings {
    /// Wraps `data` of `rows * dim` values; `None` when the length differs.
    pub fn new(data: Vec<f32>, rows: usize, dim: usize) -> Option<Self> {
        (rows.checked_mul(dim)? == data.len()).then_some(Self { data, rows, dim })
    }

    /// Number of embeddings.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Width of each embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Embedding `i`; panics when `i >= rows()`, like slice indexing.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[f32]> + '_ {
        // `max(1)`: chunks_exact(0) panics; with dim 0 there are no values anyway.
        self.data.chunks_exact(self.dim.max(1)).take(self.rows)
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The values, row-major, by value.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// The rows as separate vectors.
    pub fn to_rows(&self) -> Vec<Vec<f32>> {
        self.iter().map(<[f32]>::to_vec).collect()
    }

    /// A copy with every row scaled to unit L2 norm (zero rows stay zero),
    /// as `x / x.norm(p=2, dim=-1, keepdim=True)` in CLIPModel.
    pub fn normalized(&self) -> Self {
        let mut out = self.clone();
        for row in out.data.chunks_exact_mut(self.dim.max(1)) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
        out
    }
}

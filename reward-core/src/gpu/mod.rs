//! The CLIP verifier on the GPU (feature `gpu`): WGSL compute kernels run
//! through wgpu (Vulkan, Metal, DX12 natively; WebGPU in the browser).
//!
//! Mirrors the CPU path in [`crate::clip`] kernel by kernel (GEMM,
//! LayerNorm, attention with softmax, the GELU family, patch embedding,
//! scoring) and keeps its API: [`GpuClipModel`] loads the same checkpoints
//! and returns the same [`crate::clip::Embeddings`]. Weights are uploaded
//! once; activations stay on the device; each call reads back only its
//! result. f16 storage where the adapter has `shader-f16`, f32 otherwise.
//!
//! ```no_run
//! # fn main() -> Result<(), reward_core::gpu::GpuError> {
//! use reward_core::gpu::{GpuClipModel, GpuContext, GpuOptions};
//! let ctx = GpuContext::new(&GpuOptions::default())?;
//! let model = GpuClipModel::load(&ctx, std::path::Path::new("clip-vit-large-patch14-336"))?;
//! let texts = model.embed_texts(&ctx, &["a photo of a cat"])?;
//! # Ok(()) }
//! ```
//!
//! See `docs/gpu.md` for limits, precision and measured speed.

#[cfg(not(target_arch = "wasm32"))]
mod backend;
mod context;
#[cfg(not(target_arch = "wasm32"))]
mod diagnostics;
mod error;
mod kernels;
mod model;
mod tower;

#[cfg(not(target_arch = "wasm32"))]
pub use backend::{Backend, Verifier};
pub use context::{AttentionKernel, GpuContext, GpuOptions, GpuStats, KernelTime, Precision};
#[cfg(not(target_arch = "wasm32"))]
pub use diagnostics::{GemmTiming, probe_gemm};
pub use error::GpuError;
pub use kernels::matmul_coop::{BATCHED_TILE, COOP_TILES, CoopTile, GemmProbe};
pub use model::GpuClipModel;

use crate::clip::TextPooling;

/// The pooled text position, exactly as `clip/text.rs` (and transformers)
/// picks it: ties and absence resolve to the first index.
fn pool_position(ids: &[u32], pooling: TextPooling) -> usize {
    match pooling {
        TextPooling::ArgMaxId => {
            let max = ids.iter().copied().max().unwrap_or(0);
            ids.iter().position(|&id| id == max).unwrap_or(0)
        }
        TextPooling::FirstId(eos) => ids.iter().position(|&id| id == eos).unwrap_or(0),
    }
}

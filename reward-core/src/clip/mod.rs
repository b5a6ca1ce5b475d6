//! The CLIP verifier on the CPU (feature `clip`).
//!
//! Loads an HF `CLIPModel` checkpoint (`config.json`, `model.safetensors`
//! or shards with `model.safetensors.index.json`, `tokenizer.json`) with
//! weights in f32, f16 or bf16, and computes in f32: text and image
//! embeddings, and `logits_per_image`, matching transformers (see
//! `docs/clip.md` for the measured parity).
//!
//! ```no_run
//! # fn main() -> Result<(), reward_core::clip::ClipError> {
//! use reward_core::clip::ClipModel;
//! let model = ClipModel::load(std::path::Path::new("clip-vit-large-patch14-336"))?;
//! let texts = model.embed_texts(&["a photo of a cat", "a photo of a dog"])?;
//! assert_eq!(texts.embeddings.dim(), model.config().projection_dim());
//! # Ok(()) }
//! ```
//!
//! Natively the weights are memory-mapped; on wasm32 use
//! [`ClipModel::from_bytes`]. With the `parallel` feature GEMMs, attention
//! heads and row-wise ops run on rayon's thread pool.

mod attention;
pub mod cache;
mod config;
mod embeddings;
mod encoder;
mod error;
pub(crate) mod halves;
pub mod image;
mod model;
pub(crate) mod ops;
#[cfg(target_arch = "x86_64")]
mod packed;
pub mod score;
mod text;
pub(crate) mod tokenizer;
mod vision;
pub(crate) mod weights;

pub use config::{Activation, ClipConfig, TextConfig, TextPooling, VisionConfig};
pub use embeddings::Embeddings;
pub use error::ClipError;
pub use model::{ClipModel, TextEmbeddings};
// The checkpoint-loading pieces the GPU model shares with ClipModel.
#[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
pub(crate) use model::Checkpoint;
#[cfg(feature = "gpu")]
pub(crate) use model::{byte_shards, model_hash};
pub use tokenizer::TokenizedText;

//! LLaVA-1.5 (Liu et al. 2023, "Improved Baselines with Visual Instruction Tuning")
//! on libtorch, mirroring `LlavaForConditionalGeneration` of transformers 5.23:
//! CLIP vision tower, 2-layer GELU projector, Llama decoder, with LoRA adapters
//! (PEFT-compatible), a value head, teacher-forced log-probs and batched sampling.
//! See docs/llava.md.
//!
//! ```no_run
//! use gpu_train::llava::{LlavaModel, LoadOptions, LoraConfig, generate, SamplingConfig};
//! # fn main() -> anyhow::Result<()> {
//! let mut opts = LoadOptions::for_device(tch::Device::cuda_if_available());
//! opts.lora = Some(LoraConfig::default());
//! opts.value_head = true;
//! let model = LlavaModel::load(std::path::Path::new("llava-1.5-7b-hf"), &opts)?;
//! let ids = vec![vec![1i64, 3148, 1001, 29901]];
//! let out = generate(&model, &ids, None, &SamplingConfig::greedy(&model, 32))?;
//! # Ok(()) }
//! ```

mod attention;
mod chat_template;
mod clip_vision;
mod config;
mod generate;
mod linear;
mod llama;
mod lora;
mod model;
mod peft;
mod projector;
mod rope;
mod save;
mod value_head;
mod weights;

pub use attention::KvCache;
pub use chat_template::{IMAGE_TOKEN, LlavaTokenizer, Message, Role, render as render_chat};
pub use config::{LlavaConfig, RopeScaling, TextConfig, VisionConfig};
pub use generate::{
    PaddingSide, SamplerRng, SamplingConfig, choose_tokens, generate, generate_padded, pad_batch,
    unpad,
};
pub use lora::{DEFAULT_TARGET, LoraConfig, LoraTarget};
pub use model::{Batch, LlavaModel, LoadOptions, PolicyOutput, attention_bias};
pub use peft::{
    load_adapter_weights, load_value_head, load_with_adapter, read_adapter_config, save_adapter,
    write_safetensors,
};
pub use rope::inverse_frequencies;
pub use save::{hf_config, save_pretrained};
pub use weights::{Checkpoint, canonical_name};

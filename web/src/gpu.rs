//! The CLIP towers on WebGPU (feature `gpu`): reward-core's wgpu backend
//! (reward-core/src/gpu) behind the same interface as [`crate::cpu`]. The
//! context picks f16 when the adapter has `shader-f16`, else f32. Every
//! call is async: a browser cannot block on the GPU.

use reward_core::clip::TextEmbeddings;
use reward_core::clip::image::Preprocess;
use reward_core::gpu::{GpuClipModel, GpuContext, GpuOptions, Precision};

use crate::cpu::{CheckpointBytes, image_pixels};

/// The device, the model on it, and the image preprocessing.
pub struct GpuTowers {
    ctx: GpuContext,
    /// The model's buffers on the device.
    pub model: GpuClipModel,
    preprocess: Preprocess,
}

impl GpuTowers {
    /// Opens the adapter's device and uploads the checkpoint.
    pub async fn load(files: &CheckpointBytes<'_>) -> Result<Self, String> {
        let ctx = GpuContext::new_async(&GpuOptions::default())
            .await
            .map_err(|e| format!("opening the WebGPU device: {e}"))?;
        let model =
            GpuClipModel::from_bytes_async(&ctx, files.config, &files.weights, files.tokenizer)
                .await
                .map_err(|e| format!("loading the CLIP model onto the GPU: {e}"))?;
        let size = model.config().image_size() as u32;
        let preprocess = crate::cpu::preprocess_checked(size, files.preprocessor)?;
        Ok(Self {
            ctx,
            model,
            preprocess,
        })
    }

    /// `webgpu-f16` or `webgpu-f32`.
    pub fn backend(&self) -> &'static str {
        match self.ctx.precision() {
            Precision::F16 => "webgpu-f16",
            Precision::F32 => "webgpu-f32",
        }
    }

    /// The adapter's name, for the status line.
    pub fn adapter(&self) -> String {
        self.ctx.adapter_info().name.clone()
    }

    /// Decodes, preprocesses (on the CPU) and embeds one image on the GPU.
    pub async fn embed_image(&self, bytes: &[u8], name: &str) -> Result<Vec<f32>, String> {
        let pixels = image_pixels(bytes, name, &self.preprocess)?;
        let emb = self
            .model
            .embed_images_async(&self.ctx, &pixels, 1)
            .await
            .map_err(|e| e.to_string())?;
        Ok(emb.row(0).to_vec())
    }

    /// Embeds texts with the text tower on the GPU.
    pub async fn embed_texts(&self, texts: &[String]) -> Result<TextEmbeddings, String> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        self.model
            .embed_texts_async(&self.ctx, &refs)
            .await
            .map_err(|e| e.to_string())
    }
}

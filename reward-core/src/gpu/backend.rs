//! One verifier behind either backend, for callers that offer
//! `--backend cpu|gpu|auto` (the `fisao` CLI): the same calls reach
//! [`ClipModel`] on the CPU or [`GpuClipModel`] on wgpu.

use alloc::format;
use alloc::string::String;
use core::str::FromStr;

use super::{GpuClipModel, GpuContext, GpuError, GpuOptions};
use crate::clip::{ClipConfig, ClipModel, Embeddings, TextEmbeddings, TokenizedText};

/// Which backend to run CLIP on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The CPU path (`reward_core::clip`).
    Cpu,
    /// wgpu; no adapter is an error.
    Gpu,
    /// wgpu when a hardware adapter opens, else the CPU. A software
    /// adapter (lavapipe, SwiftShader) counts as none: the CPU path is
    /// faster than emulating a GPU on the same cores.
    Auto,
}

impl FromStr for Backend {
    type Err = GpuError;
    fn from_str(s: &str) -> Result<Self, GpuError> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            "auto" => Ok(Self::Auto),
            other => Err(GpuError::Input(format!(
                "backend {other:?}: expected cpu, gpu or auto"
            ))),
        }
    }
}

/// A loaded CLIP verifier on one backend.
// One per process, moved rarely: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Verifier {
    /// On the CPU.
    Cpu(ClipModel),
    /// On a GPU: the context and the model loaded onto it.
    Gpu(GpuContext, GpuClipModel),
}

impl Verifier {
    /// Loads `dir` on `backend`. With [`Backend::Auto`] a missing, refused
    /// or software adapter falls back to the CPU; other GPU errors (a
    /// checkpoint that does not fit, a lost device) are returned.
    pub fn load(dir: &std::path::Path, backend: Backend) -> Result<Self, GpuError> {
        let gpu = |ctx: GpuContext| -> Result<Self, GpuError> {
            let model = GpuClipModel::load(&ctx, dir)?;
            Ok(Self::Gpu(ctx, model))
        };
        let cpu = || Ok(Self::Cpu(ClipModel::load(dir)?));
        match backend {
            Backend::Cpu => cpu(),
            Backend::Gpu => gpu(GpuContext::new(&GpuOptions::default())?),
            Backend::Auto => match GpuContext::new(&GpuOptions::default()) {
                Ok(ctx) if ctx.adapter_info().device_type != wgpu::DeviceType::Cpu => gpu(ctx),
                Ok(_) | Err(GpuError::NoAdapter(_) | GpuError::RequestDevice(_)) => cpu(),
                Err(e) => Err(e),
            },
        }
    }

    /// `cpu` or `gpu`: which backend runs.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Cpu(_) => "cpu",
            Self::Gpu(..) => "gpu",
        }
    }

    /// The GPU adapter's name, precision and backend, e.g.
    /// `NVIDIA H200 (Vulkan, F16)`; `None` on the CPU.
    pub fn adapter(&self) -> Option<String> {
        match self {
            Self::Cpu(_) => None,
            Self::Gpu(ctx, _) => {
                let info = ctx.adapter_info();
                Some(format!(
                    "{} ({:?}, {:?})",
                    info.name,
                    info.backend,
                    ctx.precision()
                ))
            }
        }
    }

    /// The checkpoint hash as 64 hex digits (the same on both backends).
    pub fn model_hash_hex(&self) -> String {
        match self {
            Self::Cpu(m) => m.model_hash_hex(),
            Self::Gpu(_, m) => m.model_hash_hex(),
        }
    }

    /// `cpu`, or `gpu (<adapter>, <precision>)`.
    pub fn describe(&self) -> String {
        match self {
            Self::Cpu(_) => "cpu".into(),
            Self::Gpu(ctx, _) => {
                format!("gpu ({}, {:?})", ctx.adapter_info().name, ctx.precision())
            }
        }
    }

    /// The checked config.
    pub fn config(&self) -> &ClipConfig {
        match self {
            Self::Cpu(m) => m.config(),
            Self::Gpu(_, m) => m.config(),
        }
    }

    /// `exp(logit_scale)`.
    pub fn logit_scale(&self) -> f32 {
        match self {
            Self::Cpu(m) => m.logit_scale(),
            Self::Gpu(_, m) => m.logit_scale(),
        }
    }

    /// Tokenizes one text as the model will see it.
    pub fn tokenize(&self, text: &str) -> Result<TokenizedText, GpuError> {
        match self {
            Self::Cpu(m) => Ok(m.tokenize(text)?),
            Self::Gpu(_, m) => m.tokenize(text),
        }
    }

    /// Projected text embeddings.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<TextEmbeddings, GpuError> {
        match self {
            Self::Cpu(m) => Ok(m.embed_texts(texts)?),
            Self::Gpu(ctx, m) => m.embed_texts(ctx, texts),
        }
    }

    /// Projected text embeddings of tokenized texts.
    pub fn embed_tokens(&self, tokens: &[TokenizedText]) -> Result<Embeddings, GpuError> {
        match self {
            Self::Cpu(m) => Ok(m.embed_tokens(tokens)?),
            Self::Gpu(ctx, m) => m.embed_tokens(ctx, tokens),
        }
    }

    /// Projected image embeddings of `n` preprocessed images.
    pub fn embed_images(&self, pixels: &[f32], n: usize) -> Result<Embeddings, GpuError> {
        match self {
            Self::Cpu(m) => Ok(m.embed_images(pixels, n)?),
            Self::Gpu(ctx, m) => m.embed_images(ctx, pixels, n),
        }
    }

    /// `logit_scale * cos(image_i, text_j)`, `[images, texts]`.
    pub fn logits_per_image(
        &self,
        images: &Embeddings,
        texts: &Embeddings,
    ) -> Result<Embeddings, GpuError> {
        match self {
            Self::Cpu(m) => Ok(m.logits_per_image(images, texts)?),
            Self::Gpu(ctx, m) => m.logits_per_image(ctx, images, texts),
        }
    }
}

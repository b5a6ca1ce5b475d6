//! The CLIP model: both towers, their projections and the logit scale.
//!
//! Mirrors `CLIPModel` in `transformers/models/clip/modeling_clip.py`
//! (`get_text_features`, `get_image_features`, `forward`'s
//! `logits_per_image`). Weights are read as f32 from f32, f16 or bf16
//! safetensors; all compute is f32.

use alloc::format;
use alloc::string::String;
#[cfg(not(target_arch = "wasm32"))]
use alloc::string::ToString;
use alloc::vec::Vec;
use sha2::{Digest, Sha256};

use super::config::ClipConfig;
use super::embeddings::Embeddings;
use super::error::ClipError;
use super::ops::{Linear, MatRef, matmul};
use super::text::TextTransformer;
use super::tokenizer::{ClipTokenizer, TokenizedText};
use super::vision::VisionTransformer;
use super::weights::{VarBuilder, WeightFiles};

/// Images per forward pass: bounds activation memory (ViT-L/14-336 needs
/// about 10 MB per image per layer) while keeping GEMMs large.
const IMAGE_CHUNK: usize = 8;
/// Texts per forward pass.
const TEXT_CHUNK: usize = 64;

/// A loaded CLIP model (an HF `CLIPModel` checkpoint plus its tokenizer).
pub struct ClipModel {
    config: ClipConfig,
    tokenizer: ClipTokenizer,
    text_model: TextTransformer,
    vision_model: VisionTransformer,
    text_projection: Linear,
    visual_projection: Linear,
    /// The raw parameter; `logit_scale()` returns its exp.
    logit_scale: f32,
    hash: [u8; 32],
}

/// Projected text embeddings and how each text was tokenized.
#[derive(Debug, Clone, PartialEq)]
pub struct TextEmbeddings {
    /// One row per text, `projection_dim` wide, not normalised
    /// (`CLIPModel.get_text_features`).
    pub embeddings: Embeddings,
    /// Tokens fed to the model per text, `<|startoftext|>` and
    /// `<|endoftext|>` included (at most the 77-token window).
    pub token_counts: Vec<usize>,
    /// Per text: whether it was cut to fit the window.
    pub truncated: Vec<bool>,
    /// Per text: its token count before truncation.
    pub full_token_counts: Vec<usize>,
}

impl ClipModel {
    /// Loads a checkpoint directory: `config.json`, `tokenizer.json`, and
    /// `model.safetensors` or the shards of `model.safetensors.index.json`
    /// (memory-mapped).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(dir: &std::path::Path) -> Result<Self, ClipError> {
        let ckpt = Checkpoint::read(dir)?;
        let build = || {
            Self::build(
                ckpt.config.clone(),
                &ckpt.shards(),
                &ckpt.tokenizer_json,
                false,
            )
        };
        let (mut model, hash) = ckpt.hashed_beside(build)?;
        model.hash = hash;
        Ok(model)
    }

    /// Loads from in-memory bytes (the browser has no file system):
    /// `config.json`, one or more safetensors shards, `tokenizer.json`.
    pub fn from_bytes(
        config_json: &[u8],
        weights: &[&[u8]],
        tokenizer_json: &[u8],
    ) -> Result<Self, ClipError> {
        let config = ClipConfig::from_json(config_json, "config.json")?;
        Self::build(config, &byte_shards(weights), tokenizer_json, true)
    }

    /// The model from parsed shards; with `hash`, its model hash too (else
    /// zeros, for a caller that computes it beside: `Checkpoint::hashed_beside`).
    fn build(
        config: ClipConfig,
        shards: &[(String, &[u8])],
        tokenizer_json: &[u8],
        hash: bool,
    ) -> Result<Self, ClipError> {
        if shards.is_empty() {
            return Err(ClipError::input("no safetensors weights given"));
        }
        let files = WeightFiles::parse(shards)?;
        let vb = VarBuilder::new(&files);
        let (text, vision) = (&config.text_config, &config.vision_config);
        let proj = config.projection_dim;
        let model = Self {
            tokenizer: ClipTokenizer::from_bytes(tokenizer_json, text.max_position_embeddings)?,
            text_model: TextTransformer::new(&vb.pp("text_model"), text)?,
            vision_model: VisionTransformer::new(&vb.pp("vision_model"), vision)?,
            text_projection: Linear::new(&vb.pp("text_projection"), text.hidden_size, proj, false)?,
            visual_projection: Linear::new(
                &vb.pp("visual_projection"),
                vision.hidden_size,
                proj,
                false,
            )?,
            logit_scale: vb.get("logit_scale", &[])?[0],
            hash: match hash {
                true => model_hash(&config, &files, tokenizer_json),
                false => [0; 32],
            },
            config,
        };
        Ok(model)
    }

    /// The checked config.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// SHA-256 of the config (canonical form), every tensor (name, dtype,
    /// shape and bytes, in name order, so sharding does not matter) and the
    /// tokenizer.json bytes. Caches use it to refuse another model's embeddings.
    pub fn model_hash(&self) -> [u8; 32] {
        self.hash
    }

    /// [`ClipModel::model_hash`] as 64 lowercase hex digits.
    pub fn model_hash_hex(&self) -> String {
        self.hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `exp(logit_scale)`: the factor on cosine similarities in
    /// `logits_per_image` (100.0 for the OpenAI checkpoints).
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale.exp()
    }

    /// Tokenizes one text as the model will see it.
    pub fn tokenize(&self, text: &str) -> Result<TokenizedText, ClipError> {
        self.tokenizer.encode(text)
    }

    /// Projected, unnormalised text embeddings (`get_text_features`).
    /// Texts longer than the 77-token window are truncated; the result says which.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<TextEmbeddings, ClipError> {
        let tokens = texts
            .iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<Vec<_>, _>>()?;
        let embeddings = self.embed_tokens(&tokens)?;
        Ok(TextEmbeddings {
            embeddings,
            token_counts: tokens.iter().map(|t| t.ids.len()).collect(),
            truncated: tokens.iter().map(|t| t.truncated).collect(),
            full_token_counts: tokens.iter().map(|t| t.full_len).collect(),
        })
    }

    /// Projected text embeddings of already tokenized texts.
    pub fn embed_tokens(&self, tokens: &[TokenizedText]) -> Result<Embeddings, ClipError> {
        let ids: Vec<&[u32]> = tokens.iter().map(|t| t.ids.as_slice()).collect();
        for (i, seq) in ids.iter().enumerate() {
            self.check_ids(i, seq)?;
        }
        let proj = self.config.projection_dim;
        let mut out = Vec::with_capacity(ids.len() * proj);
        for chunk in ids.chunks(TEXT_CHUNK) {
            let pooled = self.text_model.forward(chunk);
            out.extend(self.text_projection.forward(&pooled, chunk.len()));
        }
        Ok(Embeddings::new(out, ids.len(), proj).expect("rows * projection_dim values"))
    }

    fn check_ids(&self, i: usize, ids: &[u32]) -> Result<(), ClipError> {
        let cfg = &self.config.text_config;
        if ids.is_empty() || ids.len() > cfg.max_position_embeddings {
            let msg = format!(
                "text {i}: {} tokens, expected 1..={}",
                ids.len(),
                cfg.max_position_embeddings
            );
            return Err(ClipError::input(msg));
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            let msg = format!(
                "text {i}: token id {bad} is outside the vocabulary of {}",
                cfg.vocab_size
            );
            return Err(ClipError::input(msg));
        }
        Ok(())
    }

    /// Projected, unnormalised image embeddings (`get_image_features`) of `n`
    /// preprocessed images stacked as `n x channels x size x size` f32.
    pub fn embed_images(&self, pixel_values: &[f32], n: usize) -> Result<Embeddings, ClipError> {
        let v = &self.config.vision_config;
        let per_image = v.num_channels * v.image_size * v.image_size;
        if pixel_values.len() != n * per_image {
            let msg = format!(
                "pixel_values has {} values, expected {n} x {} x {} x {} = {}",
                pixel_values.len(),
                v.num_channels,
                v.image_size,
                v.image_size,
                n * per_image
            );
            return Err(ClipError::input(msg));
        }
        let proj = self.config.projection_dim;
        let mut out = Vec::with_capacity(n * proj);
        for chunk in pixel_values.chunks(IMAGE_CHUNK * per_image) {
            let count = chunk.len() / per_image;
            let pooled = self.vision_model.forward(chunk, count);
            out.extend(self.visual_projection.forward(&pooled, count));
        }
        Ok(Embeddings::new(out, n, proj).expect("rows * projection_dim values"))
    }

    /// `logits_per_image` of CLIPModel: `logit_scale * cos(image_i, text_j)`,
    /// `[images.rows(), texts.rows()]`.
    pub fn logits_per_image(
        &self,
        images: &Embeddings,
        texts: &Embeddings,
    ) -> Result<Embeddings, ClipError> {
        if images.dim() != texts.dim() {
            let msg = format!(
                "image width {} differs from text width {}",
                images.dim(),
                texts.dim()
            );
            return Err(ClipError::input(msg));
        }
        let (a, b) = (images.normalized(), texts.normalized());
        let (m, n) = (a.rows(), b.rows());
        let mut out = alloc::vec![0.0; m * n];
        let lhs = MatRef::dense(a.as_slice(), m, a.dim());
        let rhs = MatRef::dense(b.as_slice(), n, b.dim()).t();
        matmul(&mut out, n, false, lhs, rhs, self.logit_scale(), false);
        Ok(Embeddings::new(out, m, n).expect("m * n logits"))
    }
}

/// The checkpoint hash behind [`ClipModel::model_hash`] (the GPU model
/// computes the same value from the same files).
pub(crate) fn model_hash(
    config: &ClipConfig,
    files: &WeightFiles<'_>,
    tokenizer_json: &[u8],
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"fisao-rs clip model v1\0");
    hasher.update(config.canonical().as_bytes());
    files.hash_into(&mut hasher);
    hasher.update((tokenizer_json.len() as u64).to_le_bytes());
    hasher.update(tokenizer_json);
    hasher.finalize().into()
}

/// A checkpoint directory read from disk: the parsed config, the
/// tokenizer.json bytes and the memory-mapped safetensors shards. Shared by
/// [`ClipModel::load`] and the GPU model's loader.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) struct Checkpoint {
    /// The checked `config.json`.
    pub config: ClipConfig,
    /// `tokenizer.json` as read.
    pub tokenizer_json: Vec<u8>,
    paths: Vec<String>,
    maps: Vec<memmap2::Mmap>,
}

#[cfg(not(target_arch = "wasm32"))]
impl Checkpoint {
    /// Reads `config.json`, `tokenizer.json` and maps the weight shards.
    pub(crate) fn read(dir: &std::path::Path) -> Result<Self, ClipError> {
        use super::weights::disk;
        let config_path = dir.join("config.json");
        let config_json = disk::read(&config_path)?;
        let config = ClipConfig::from_json(&config_json, &config_path.display().to_string())?;
        let tokenizer_json = disk::read(&dir.join("tokenizer.json"))?;
        let paths = disk::shard_paths(dir)?;
        let maps = paths
            .iter()
            .map(|p| disk::map(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            config,
            tokenizer_json,
            paths: paths.iter().map(|p| p.display().to_string()).collect(),
            maps,
        })
    }

    /// The shards as (name for errors, bytes) pairs.
    pub(crate) fn shards(&self) -> Vec<(String, &[u8])> {
        self.paths
            .iter()
            .zip(&self.maps)
            .map(|(p, m)| (p.clone(), &m[..]))
            .collect()
    }

    /// Runs `load` on this thread while [`model_hash`] reads every weight
    /// byte on a second one, and returns both. Hashing is serial SHA-256: a
    /// ViT-L checkpoint takes ~0.5 s of it, a third of an f16 GPU load,
    /// which needs no other pass over most of its bytes.
    pub(crate) fn hashed_beside<T, E: From<ClipError>>(
        &self,
        load: impl FnOnce() -> Result<T, E>,
    ) -> Result<(T, [u8; 32]), E> {
        let shards = self.shards();
        std::thread::scope(|scope| {
            let hashing = scope.spawn(|| {
                let files = WeightFiles::parse(&shards)?;
                Ok::<_, ClipError>(model_hash(&self.config, &files, &self.tokenizer_json))
            });
            let value = load()?;
            let hash = hashing
                .join()
                .map_err(|_| ClipError::input("the model-hash thread panicked"))??;
            Ok((value, hash))
        })
    }
}

/// In-memory shards named for errors by their position.
pub(crate) fn byte_shards<'a>(weights: &[&'a [u8]]) -> Vec<(String, &'a [u8])> {
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| (format!("safetensors shard {i}"), *w))
        .collect()
}

//! The CLIP verifier on the GPU: the same loading and embedding API as
//! [`crate::clip::ClipModel`], with the towers and the scoring on wgpu.
//!
//! Mirrors `clip/model.rs` (`CLIPModel.get_text_features`,
//! `get_image_features`, `logits_per_image`). Each public call records its
//! kernels into one submission per chunk and reads back only its result.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::context::{Dispatch, GpuContext, InFlight, Stopwatch};
use super::error::GpuError;
use super::kernels::scoring::{ScoreBuffers, logits};
use super::tower::{GpuText, GpuVision, Workspace, WorkspaceSlot};
use crate::clip::tokenizer::ClipTokenizer;
use crate::clip::weights::{VarBuilder, WeightFiles};
use crate::clip::{ClipConfig, Embeddings, TextEmbeddings, TokenizedText, byte_shards, model_hash};

/// Most images per submission (fewer when the activations would not fit
/// one storage binding).
const IMAGE_CHUNK: usize = 32;
/// Most texts per submission.
const TEXT_CHUNK: usize = 256;

/// A CLIP checkpoint loaded onto one [`GpuContext`]'s device.
pub struct GpuClipModel {
    config: ClipConfig,
    tokenizer: ClipTokenizer,
    text: GpuText,
    vision: GpuVision,
    logit_scale: f32,
    hash: [u8; 32],
    text_ws: WorkspaceSlot,
    vision_ws: WorkspaceSlot,
    score_ws: WorkspaceSlot,
}

impl GpuClipModel {
    /// Loads a checkpoint directory (as [`crate::clip::ClipModel::load`])
    /// onto `ctx`'s device.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(ctx: &GpuContext, dir: &std::path::Path) -> Result<Self, GpuError> {
        let ckpt = crate::clip::Checkpoint::read(dir)?;
        let shards = ckpt.shards();
        let build = || {
            let config = ckpt.config.clone();
            pollster::block_on(Self::build(
                ctx,
                config,
                &shards,
                &ckpt.tokenizer_json,
                false,
            ))
        };
        let (mut model, hash) = ckpt.hashed_beside(build)?;
        model.hash = hash;
        Ok(model)
    }

    /// Loads from in-memory bytes (the browser): `config.json`, safetensors
    /// shards, `tokenizer.json`.
    pub async fn from_bytes_async(
        ctx: &GpuContext,
        config_json: &[u8],
        weights: &[&[u8]],
        tokenizer_json: &[u8],
    ) -> Result<Self, GpuError> {
        let config = ClipConfig::from_json(config_json, "config.json")?;
        Self::build(ctx, config, &byte_shards(weights), tokenizer_json, true).await
    }

    /// The model from parsed shards; with `hash`, its model hash too (else
    /// zeros, for a caller that computes it beside: `Checkpoint::hashed_beside`).
    async fn build(
        ctx: &GpuContext,
        config: ClipConfig,
        shards: &[(String, &[u8])],
        tokenizer_json: &[u8],
        hash: bool,
    ) -> Result<Self, GpuError> {
        if shards.is_empty() {
            return Err(GpuError::Input("no safetensors weights given".into()));
        }
        let files = WeightFiles::parse(shards)?;
        let vb = VarBuilder::new(&files);
        let (t, v, proj) = (
            &config.text_config,
            &config.vision_config,
            config.projection_dim,
        );
        let (text_vb, text_proj) = (vb.pp("text_model"), vb.pp("text_projection"));
        let text = GpuText::load(ctx, &text_vb, t, &text_proj, proj).await?;
        let (vision_vb, vision_proj) = (vb.pp("vision_model"), vb.pp("visual_projection"));
        let vision = GpuVision::load(ctx, &vision_vb, v, &vision_proj, proj).await?;
        ctx.check_fault()?;
        Ok(Self {
            tokenizer: ClipTokenizer::from_bytes(tokenizer_json, t.max_position_embeddings)?,
            logit_scale: vb.get("logit_scale", &[])?[0],
            hash: match hash {
                true => model_hash(&config, &files, tokenizer_json),
                false => [0; 32],
            },
            text,
            vision,
            config,
            text_ws: WorkspaceSlot::default(),
            vision_ws: WorkspaceSlot::default(),
            score_ws: WorkspaceSlot::default(),
        })
    }

    /// The checked config.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The checkpoint hash, equal to [`crate::clip::ClipModel::model_hash`]
    /// for the same files (caches and baselines check it).
    pub fn model_hash(&self) -> [u8; 32] {
        self.hash
    }

    /// [`GpuClipModel::model_hash`] as 64 lowercase hex digits.
    pub fn model_hash_hex(&self) -> String {
        self.hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `exp(logit_scale)`, as [`crate::clip::ClipModel::logit_scale`].
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale.exp()
    }

    /// Tokenizes one text as the model will see it.
    pub fn tokenize(&self, text: &str) -> Result<TokenizedText, GpuError> {
        Ok(self.tokenizer.encode(text)?)
    }

    /// Uploads one chunk of pixels and records the image tower over it; the
    /// projected embeddings land in the returned buffer.
    async fn record_images(
        &self,
        ctx: &GpuContext,
        ws: &mut Workspace,
        pixels: &[f32],
        count: usize,
        dispatches: &mut Vec<Dispatch>,
    ) -> Result<wgpu::Buffer, GpuError> {
        let input = ws.holding(ctx, "pixels", pixels).await?;
        self.vision.record(ctx, ws, &input, count, dispatches).await
    }

    /// Projected image embeddings of `n` preprocessed images
    /// (`n x channels x size x size` f32), as
    /// [`crate::clip::ClipModel::embed_images`].
    pub async fn embed_images_async(
        &self,
        ctx: &GpuContext,
        pixel_values: &[f32],
        n: usize,
    ) -> Result<Embeddings, GpuError> {
        let per_image = self.check_pixels(pixel_values, n)?;
        let proj = self.config.projection_dim;
        let chunk = self.vision.chunk(ctx, IMAGE_CHUNK);
        let mut ws = self.vision_ws.take();
        let mut out = OneBehind::new(n * proj);
        for pixels in pixel_values.chunks(chunk * per_image) {
            let count = pixels.len() / per_image;
            let mut dispatches = Vec::new();
            let host = Stopwatch::start();
            let emb = self
                .record_images(ctx, &mut ws, pixels, count, &mut dispatches)
                .await?;
            ctx.charge_host(&host);
            let pass = ctx.submit(&dispatches, &emb, count * proj).await?;
            out.push(ctx, pass).await?;
        }
        embeddings(out.finish(ctx).await?, n, proj)
    }

    fn check_pixels(&self, pixel_values: &[f32], n: usize) -> Result<usize, GpuError> {
        let per_image = self.vision.pixels_per_image();
        if pixel_values.len() != n * per_image {
            let v = &self.config.vision_config;
            return Err(GpuError::Input(format!(
                "pixel_values has {} values, expected {n} x {} x {} x {} = {}",
                pixel_values.len(),
                v.num_channels,
                v.image_size,
                v.image_size,
                n * per_image
            )));
        }
        Ok(per_image)
    }

    /// Projected text embeddings, as [`crate::clip::ClipModel::embed_texts`].
    pub async fn embed_texts_async(
        &self,
        ctx: &GpuContext,
        texts: &[&str],
    ) -> Result<TextEmbeddings, GpuError> {
        let tokens = texts
            .iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<Vec<_>, _>>()?;
        let embeddings = self.embed_tokens_async(ctx, &tokens).await?;
        Ok(TextEmbeddings {
            embeddings,
            token_counts: tokens.iter().map(|t| t.ids.len()).collect(),
            truncated: tokens.iter().map(|t| t.truncated).collect(),
            full_token_counts: tokens.iter().map(|t| t.full_len).collect(),
        })
    }

    /// Projected text embeddings of tokenized texts, as
    /// [`crate::clip::ClipModel::embed_tokens`].
    pub async fn embed_tokens_async(
        &self,
        ctx: &GpuContext,
        tokens: &[TokenizedText],
    ) -> Result<Embeddings, GpuError> {
        let ids: Vec<&[u32]> = tokens.iter().map(|t| t.ids.as_slice()).collect();
        for (i, seq) in ids.iter().enumerate() {
            self.check_ids(i, seq)?;
        }
        let proj = self.config.projection_dim;
        let mut ws = self.text_ws.take();
        let mut out = OneBehind::new(ids.len() * proj);
        let mut rest = &ids[..];
        while !rest.is_empty() {
            let take = self.text_chunk(ctx, rest);
            let (chunk, tail) = rest.split_at(take);
            let mut dispatches = Vec::new();
            let host = Stopwatch::start();
            let emb = self
                .text
                .record(ctx, &mut ws, chunk, &mut dispatches)
                .await?;
            ctx.charge_host(&host);
            let pass = ctx.submit(&dispatches, &emb, chunk.len() * proj).await?;
            out.push(ctx, pass).await?;
            rest = tail;
        }
        embeddings(out.finish(ctx).await?, ids.len(), proj)
    }

    /// How many of `texts` go into the next submission.
    fn text_chunk(&self, ctx: &GpuContext, texts: &[&[u32]]) -> usize {
        let mut rows = 0;
        for (i, t) in texts.iter().enumerate().take(TEXT_CHUNK) {
            if i > 0 && !self.text.fits(ctx, rows + t.len()) {
                return i;
            }
            rows += t.len();
        }
        texts.len().min(TEXT_CHUNK)
    }

    fn check_ids(&self, i: usize, ids: &[u32]) -> Result<(), GpuError> {
        let cfg = &self.config.text_config;
        if ids.is_empty() || ids.len() > cfg.max_position_embeddings {
            return Err(GpuError::Input(format!(
                "text {i}: {} tokens, expected 1..={}",
                ids.len(),
                cfg.max_position_embeddings
            )));
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            return Err(GpuError::Input(format!(
                "text {i}: token id {bad} is outside the vocabulary of {}",
                cfg.vocab_size
            )));
        }
        Ok(())
    }

    /// `logits_per_image`: `logit_scale * cos(image_i, text_j)` for all
    /// pairs, `[images.rows(), texts.rows()]`, as
    /// [`crate::clip::ClipModel::logits_per_image`].
    pub async fn logits_per_image_async(
        &self,
        ctx: &GpuContext,
        images: &Embeddings,
        texts: &Embeddings,
    ) -> Result<Embeddings, GpuError> {
        check_widths(images.dim(), texts.dim())?;
        let (m, n, d) = (images.rows(), texts.rows(), images.dim());
        if m == 0 || n == 0 {
            return embeddings(Vec::new(), m, n);
        }
        let mut ws = self.score_ws.take();
        let img = ws.get(ctx, "score images", m * d).await?;
        let txt = ws.get(ctx, "score texts", n * d).await?;
        ctx.write(&img, images.as_slice());
        ctx.write(&txt, texts.as_slice());
        let buffers = ScoreBuffers {
            images: &img,
            texts: &txt,
            images_unit: &ws.get(ctx, "unit images", m * d).await?,
            texts_unit: &ws.get(ctx, "unit texts", n * d).await?,
            logits: &ws.get(ctx, "logits", m * n).await?,
        };
        let dispatches = logits(ctx, &buffers, (m, n, d), self.logit_scale()).await?;
        let out = ctx.run(&dispatches, buffers.logits, m * n).await?;
        embeddings(out, m, n)
    }

    /// Embeds `n` images and scores them against `texts` (projected text
    /// embeddings) without reading the image embeddings back: the
    /// `[n, texts.rows()]` logits are the only readback per chunk.
    pub async fn score_images_async(
        &self,
        ctx: &GpuContext,
        pixel_values: &[f32],
        n: usize,
        texts: &Embeddings,
    ) -> Result<Embeddings, GpuError> {
        let per_image = self.check_pixels(pixel_values, n)?;
        let (proj, t) = (self.config.projection_dim, texts.rows());
        check_widths(proj, texts.dim())?;
        if n == 0 || t == 0 {
            return embeddings(Vec::new(), n, t);
        }
        let chunk = self.vision.chunk(ctx, IMAGE_CHUNK);
        let mut ws = self.vision_ws.take();
        let txt = ws.get(ctx, "score texts", t * proj).await?;
        ctx.write(&txt, texts.as_slice());
        let mut out = OneBehind::new(n * t);
        for pixels in pixel_values.chunks(chunk * per_image) {
            let count = pixels.len() / per_image;
            let mut dispatches = Vec::new();
            let host = Stopwatch::start();
            let emb = self
                .record_images(ctx, &mut ws, pixels, count, &mut dispatches)
                .await?;
            let buffers = ScoreBuffers {
                images: &emb,
                texts: &txt,
                images_unit: &ws.get(ctx, "unit images", count * proj).await?,
                texts_unit: &ws.get(ctx, "unit texts", t * proj).await?,
                logits: &ws.get(ctx, "logits", count * t).await?,
            };
            let scale = self.logit_scale();
            dispatches.extend(logits(ctx, &buffers, (count, t, proj), scale).await?);
            ctx.charge_host(&host);
            let pass = ctx.submit(&dispatches, buffers.logits, count * t).await?;
            out.push(ctx, pass).await?;
        }
        embeddings(out.finish(ctx).await?, n, t)
    }
}

/// Blocking wrappers (native only; the browser uses the `_async` methods).
#[cfg(not(target_arch = "wasm32"))]
impl GpuClipModel {
    /// Blocking [`GpuClipModel::embed_images_async`].
    pub fn embed_images(
        &self,
        ctx: &GpuContext,
        pixels: &[f32],
        n: usize,
    ) -> Result<Embeddings, GpuError> {
        pollster::block_on(self.embed_images_async(ctx, pixels, n))
    }

    /// Blocking [`GpuClipModel::embed_texts_async`].
    pub fn embed_texts(
        &self,
        ctx: &GpuContext,
        texts: &[&str],
    ) -> Result<TextEmbeddings, GpuError> {
        pollster::block_on(self.embed_texts_async(ctx, texts))
    }

    /// Blocking [`GpuClipModel::embed_tokens_async`].
    pub fn embed_tokens(
        &self,
        ctx: &GpuContext,
        tokens: &[TokenizedText],
    ) -> Result<Embeddings, GpuError> {
        pollster::block_on(self.embed_tokens_async(ctx, tokens))
    }

    /// Blocking [`GpuClipModel::logits_per_image_async`].
    pub fn logits_per_image(
        &self,
        ctx: &GpuContext,
        images: &Embeddings,
        texts: &Embeddings,
    ) -> Result<Embeddings, GpuError> {
        pollster::block_on(self.logits_per_image_async(ctx, images, texts))
    }

    /// Blocking [`GpuClipModel::score_images_async`].
    pub fn score_images(
        &self,
        ctx: &GpuContext,
        pixels: &[f32],
        n: usize,
        texts: &Embeddings,
    ) -> Result<Embeddings, GpuError> {
        pollster::block_on(self.score_images_async(ctx, pixels, n, texts))
    }
}

fn check_widths(image: usize, text: usize) -> Result<(), GpuError> {
    if image != text {
        return Err(GpuError::Input(format!(
            "image width {image} differs from text width {text}"
        )));
    }
    Ok(())
}

fn embeddings(data: Vec<f32>, rows: usize, dim: usize) -> Result<Embeddings, GpuError> {
    let len = data.len();
    Embeddings::new(data, rows, dim)
        .ok_or_else(|| GpuError::Device(format!("read back {len} values, expected {rows} x {dim}")))
}

/// The results of a call's passes, read back one pass behind: pass i + 1
/// is recorded and submitted before pass i's result is awaited, so the
/// host's work on it (uploads, recording, encoding) overlaps pass i's
/// kernels instead of leaving the GPU idle between chunks.
struct OneBehind {
    pending: Option<InFlight>,
    out: Vec<f32>,
}

impl OneBehind {
    fn new(capacity: usize) -> Self {
        Self {
            pending: None,
            out: Vec::with_capacity(capacity),
        }
    }

    /// Takes `pass` in flight and reads back the one before it.
    async fn push(&mut self, ctx: &GpuContext, pass: InFlight) -> Result<(), GpuError> {
        if let Some(previous) = self.pending.replace(pass) {
            self.out.extend(ctx.finish(previous).await?);
        }
        Ok(())
    }

    /// Reads back the last pass; all results, in submission order.
    async fn finish(mut self, ctx: &GpuContext) -> Result<Vec<f32>, GpuError> {
        if let Some(last) = self.pending.take() {
            self.out.extend(ctx.finish(last).await?);
        }
        Ok(self.out)
    }
}

//! The FiSAO training task: LLaVA-Instruct prompts with their COCO images,
//! scored by the CPU CLIP verifier through its embedding caches (reward-core
//! `clip::cache`, method.md section 4): a mention's score is
//! `s(form, image)` of the cached text embedding of its normalised surface
//! form and the cached embedding of the image file (keyed by its sha256).
//! The sentence-level ablation needs the CLIP text tower on the whole
//! response, so `verifier.clip_model` must be set for `--reward sentence`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use reward_core::ScoreKind;
use reward_core::baseline::VerifierInfo;
use reward_core::clip::ClipModel;
use reward_core::clip::cache::{CacheKind, EmbeddingCache, sha256_digest};
use reward_core::clip::image::{ImageLimits, Preprocess, preprocess_bytes};
use reward_core::clip::score::{Scorer, sentence_score};
use reward_core::vocab::normalise;
use reward_core::{EntityId, Matcher, Vocabulary};
use tch::Tensor;

use super::data::Dataset;
use super::rollout::{Prompt, ResponseText, Scored, Task, score_mentions};
use crate::llava::{LlavaTokenizer, Message};

/// Cached verifier embeddings and the score function.
pub struct CacheVerifier {
    text: EmbeddingCache,
    images: EmbeddingCache,
    scorer: Scorer,
    clip: Option<ClipModel>,
}

impl CacheVerifier {
    /// Loads both caches; they must come from the same CLIP model.
    pub fn load(
        text: &Path,
        images: &Path,
        score: &str,
        clip_model: Option<&Path>,
    ) -> Result<Self> {
        let text = EmbeddingCache::load(text).map_err(|e| anyhow!("{e}"))?;
        let images = EmbeddingCache::load(images).map_err(|e| anyhow!("{e}"))?;
        text.check_kind(CacheKind::Vocab)
            .map_err(|e| anyhow!("{e}"))?;
        images
            .check_kind(CacheKind::Images)
            .map_err(|e| anyhow!("{e}"))?;
        images
            .check_model(&text.meta().model_hash)
            .map_err(|e| anyhow!("{e}"))?;
        let kind: ScoreKind = score.parse().map_err(|e| anyhow!("verifier.score: {e}"))?;
        let scorer = Scorer {
            kind,
            logit_scale: text.meta().logit_scale,
        };
        let clip = clip_model
            .map(|p| ClipModel::load(p).map_err(|e| anyhow!("{e}")))
            .transpose()?;
        Ok(CacheVerifier {
            text,
            images,
            scorer,
            clip,
        })
    }

    /// The cached embedding of an image file, by content digest.
    pub fn image_embedding(&self, bytes: &[u8], name: &str) -> Result<&[f32]> {
        self.images.image(&sha256_digest(bytes)).with_context(|| {
            format!("image {name} is not in the image cache (run `fisao embed images`)")
        })
    }

    /// The verifier as baseline.json records it.
    pub fn info(&self, model_name: &str) -> VerifierInfo {
        let meta = self.text.meta();
        VerifierInfo {
            model: model_name.to_string(),
            model_hash: meta.model_hash.clone(),
            score: self.scorer.kind,
            template: meta.template.clone().unwrap_or_else(|| "{}".into()),
        }
    }

    /// `s(form, image)`.
    pub fn object_score(&self, form: &str, image: &[f32]) -> Result<f64> {
        let key = normalise(form);
        let t = self
            .text
            .form(&key)
            .with_context(|| format!("surface form {key:?} is not in the vocabulary cache"))?;
        Ok(f64::from(
            self.scorer.score(t, image).map_err(|e| anyhow!("{e}"))?,
        ))
    }

    /// The whole response's score (needs the CLIP model).
    pub fn sentence_score(&self, text: &str, image: &[f32]) -> Result<f64> {
        let clip = self
            .clip
            .as_ref()
            .context("sentence scores need the CLIP model: set verifier.clip_model")?;
        Ok(f64::from(
            sentence_score(clip, &self.scorer, text, image)
                .map_err(|e| anyhow!("{e}"))?
                .score,
        ))
    }
}

/// LLaVA-Instruct prompts on COCO images, scored by the cached verifier.
pub struct CocoTask {
    /// Samples and ground truth.
    pub data: Dataset,
    tokenizer: LlavaTokenizer,
    preprocess: Preprocess,
    matcher: Matcher,
    verifier: CacheVerifier,
    sentence: bool,
    image_bytes: std::sync::Mutex<BTreeMap<usize, std::sync::Arc<Vec<u8>>>>,
}

impl CocoTask {
    /// Binds the parts; `image_size` is the vision tower's input size.
    pub fn new(
        data: Dataset,
        tokenizer: LlavaTokenizer,
        image_size: u32,
        vocab: &Vocabulary,
        verifier: CacheVerifier,
        sentence: bool,
    ) -> Self {
        CocoTask {
            data,
            tokenizer,
            preprocess: Preprocess::for_image_size(image_size),
            matcher: Matcher::new(vocab),
            verifier,
            sentence,
            image_bytes: Default::default(),
        }
    }

    fn bytes(&self, index: usize) -> Result<std::sync::Arc<Vec<u8>>> {
        let mut cache = self
            .image_bytes
            .lock()
            .map_err(|_| anyhow!("image cache lock poisoned"))?;
        if let Some(b) = cache.get(&index) {
            return Ok(b.clone());
        }
        let s = &self.data.samples[index];
        let b = std::sync::Arc::new(
            std::fs::read(&s.image)
                .with_context(|| format!("reading image {}", s.image.display()))?,
        );
        // Only the current batch is kept.
        if cache.len() > 64 {
            cache.clear();
        }
        cache.insert(index, b.clone());
        Ok(b)
    }

    /// Mentions of a response text, scored, split by ground truth.
    pub fn score_text(&self, index: usize, text: &str) -> Result<Vec<(EntityId, f64, bool)>> {
        let s = &self.data.samples[index];
        let bytes = self.bytes(index)?;
        let image = self
            .verifier
            .image_embedding(&bytes, &s.image.display().to_string())?;
        let gt = self.data.ground_truth.get(&s.image_id);
        self.matcher
            .find(text)
            .into_iter()
            .map(|m| {
                let form = m.text(text).context("mention outside the text")?;
                let correct = gt.is_some_and(|g| g.contains(&m.entity));
                Ok((m.entity, self.verifier.object_score(form, image)?, correct))
            })
            .collect()
    }

    /// The sentence-level score of a response (baseline and sentence mode).
    pub fn sentence_score(&self, index: usize, text: &str) -> Result<f64> {
        let s = &self.data.samples[index];
        let bytes = self.bytes(index)?;
        let image = self
            .verifier
            .image_embedding(&bytes, &s.image.display().to_string())?;
        self.verifier.sentence_score(text, image)
    }

    /// Whether the verifier can compute sentence scores.
    pub fn has_sentence_scores(&self) -> bool {
        self.verifier.clip.is_some()
    }

    /// The verifier.
    pub fn verifier(&self) -> &CacheVerifier {
        &self.verifier
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &LlavaTokenizer {
        &self.tokenizer
    }
}

impl Task for CocoTask {
    fn len(&self) -> usize {
        self.data.samples.len()
    }

    fn prompt(&self, index: usize) -> Result<Prompt> {
        let s = self
            .data
            .samples
            .get(index)
            .with_context(|| format!("no sample {index}"))?;
        let ids = self
            .tokenizer
            .encode_chat(&[Message::user(&s.prompt, 1)], true)?;
        let bytes = self.bytes(index)?;
        let name = s.image.display().to_string();
        let pixels = preprocess_bytes(&bytes, &name, &self.preprocess, &ImageLimits::default())
            .map_err(|e| anyhow!("{e}"))?;
        let (h, w) = (
            i64::from(self.preprocess.crop_height),
            i64::from(self.preprocess.crop_width),
        );
        Ok(Prompt {
            ids,
            pixel_values: Some(Tensor::from_slice(&pixels).view([1, 3, h, w])),
        })
    }

    fn score(&self, index: usize, response: &ResponseText) -> Result<Scored> {
        let s = &self.data.samples[index];
        let bytes = self.bytes(index)?;
        let image = self
            .verifier
            .image_embedding(&bytes, &s.image.display().to_string())?;
        let mentions = self.matcher.find(response.text);
        let gt = self.data.ground_truth.get(&s.image_id);
        let hallucinated = mentions
            .iter()
            .filter(|m| !gt.is_some_and(|g| g.contains(&m.entity)))
            .count();
        let scored = score_mentions(response, &mentions, |form| {
            self.verifier.object_score(form, image)
        })?;
        let sentence_score = if self.sentence {
            if response.text.trim().is_empty() {
                bail!("sample {}: empty response text", s.id);
            }
            Some(self.verifier.sentence_score(response.text, image)?)
        } else {
            None
        };
        Ok(Scored {
            mentions: scored,
            sentence_score,
            hallucinated,
        })
    }
}

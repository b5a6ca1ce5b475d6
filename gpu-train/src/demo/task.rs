//! The demo's training and evaluation task: synthetic-world images with the
//! one user instruction, scored by the demo's own verifier through
//! reward-core's CPU CLIP (method.md section 4), ground truth straight from
//! the world. The trainer's [`Task`] for PPO; the same scoring serves the
//! baselines and the evaluation, so every number in the report comes from
//! one score function.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow, bail};
use reward_core::clip::ClipModel;
use reward_core::clip::image::{Preprocess, RgbImage, preprocess};
use reward_core::clip::score::{Scorer, sentence_score};
use reward_core::vocab::Expansion;
use reward_core::vocab::normalise;
use reward_core::{EntityId, Matcher, Mention, ScoreKind, Vocabulary};
use tch::Tensor;

use crate::llava::{LlavaTokenizer, Message};
use crate::trainer::rollout::{Prompt, ResponseText, Scored, Task, score_mentions};
use crate::world::{Sample, World};

/// Images embedded per reward-core call (bounds the activation memory).
const EMBED_CHUNK: usize = 64;

/// The demo verifier as the reward sees it: reward-core's CLIP on the saved
/// HF checkpoint, a memo of text embeddings, and the score function.
pub struct WorldVerifier {
    model: ClipModel,
    scorer: Scorer,
    preprocess: Preprocess,
    texts: Mutex<HashMap<String, Vec<f32>>>,
}

impl WorldVerifier {
    /// Loads the verifier directory written by `demo::verifier`.
    pub fn load(dir: &Path, kind: ScoreKind) -> Result<Self> {
        let model = ClipModel::load(dir).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
        let pre = dir.join("preprocessor_config.json");
        let preprocess = match std::fs::read_to_string(&pre) {
            Ok(json) => Preprocess::from_preprocessor_config(&json)
                .map_err(|e| anyhow!("{}: {e}", pre.display()))?,
            Err(_) => Preprocess::for_image_size(model.config().vision_config.image_size as u32),
        };
        let scorer = Scorer::for_model(kind, &model);
        Ok(WorldVerifier {
            model,
            scorer,
            preprocess,
            texts: Mutex::new(HashMap::new()),
        })
    }

    /// The CLIP model.
    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// CLIP pixels of a world image, exactly as the reward side preprocesses it.
    pub fn pixels(&self, sample: &Sample) -> Result<Vec<f32>> {
        let img = &sample.image;
        let rgb = RgbImage::new(img.width, img.height, img.rgb.clone())
            .map_err(|e| anyhow!("image {}: {e}", sample.annotation.index))?;
        preprocess(&rgb, &self.preprocess)
            .map_err(|e| anyhow!("image {}: {e}", sample.annotation.index))
    }

    /// Side of the square the vision tower takes.
    pub fn image_size(&self) -> i64 {
        i64::from(self.preprocess.crop_height)
    }

    /// Image embeddings of `samples`, in order.
    pub fn embed_images(&self, samples: &[Sample]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(samples.len());
        for chunk in samples.chunks(EMBED_CHUNK) {
            let mut px = Vec::new();
            for s in chunk {
                px.extend(self.pixels(s)?);
            }
            let emb = self
                .model
                .embed_images(&px, chunk.len())
                .map_err(|e| anyhow!("embedding images: {e}"))?;
            out.extend((0..chunk.len()).map(|i| emb.row(i).to_vec()));
        }
        Ok(out)
    }

    /// `s(form, image)` of a mention's surface form (template "{}").
    pub fn object_score(&self, form: &str, image: &[f32]) -> Result<f64> {
        let key = normalise(form);
        let mut memo = self
            .texts
            .lock()
            .map_err(|_| anyhow!("text memo lock poisoned"))?;
        if !memo.contains_key(&key) {
            let emb = self
                .model
                .embed_texts(&[key.as_str()])
                .map_err(|e| anyhow!("embedding {key:?}: {e}"))?;
            memo.insert(key.clone(), emb.embeddings.row(0).to_vec());
        }
        let t = &memo[&key];
        Ok(f64::from(
            self.scorer.score(t, image).map_err(|e| anyhow!("{e}"))?,
        ))
    }

    /// The whole text's score (the sentence-level ablation).
    pub fn sentence_score(&self, text: &str, image: &[f32]) -> Result<f64> {
        let s = sentence_score(&self.model, &self.scorer, text, image)
            .map_err(|e| anyhow!("sentence score: {e}"))?;
        Ok(f64::from(s.score))
    }
}

/// One mention of a caption, judged.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    /// Where it is in the caption.
    pub mention: Mention,
    /// Verifier score.
    pub score: f64,
    /// Whether the entity is in the image.
    pub correct: bool,
}

/// World samples as a FiSAO task.
pub struct WorldTask<'a> {
    samples: Vec<Sample>,
    truth: Vec<BTreeSet<EntityId>>,
    partners: Vec<(EntityId, EntityId)>,
    embeddings: Vec<Vec<f32>>,
    verifier: &'a WorldVerifier,
    tokenizer: &'a LlavaTokenizer,
    prompt_ids: Vec<i64>,
    matcher: Matcher,
    sentence: bool,
}

impl<'a> WorldTask<'a> {
    /// Binds samples to the verifier; embeds every image once.
    pub fn new(
        world: &World,
        samples: Vec<Sample>,
        verifier: &'a WorldVerifier,
        tokenizer: &'a LlavaTokenizer,
        prompt: &str,
        sentence: bool,
    ) -> Result<Self> {
        let embeddings = verifier.embed_images(&samples)?;
        let truth = samples.iter().map(|s| truth(world, s)).collect();
        let prompt_ids = tokenizer.encode_chat(&[Message::user(prompt, 1)], true)?;
        Ok(WorldTask {
            samples,
            truth,
            partners: partners(world),
            embeddings,
            verifier,
            tokenizer,
            prompt_ids,
            matcher: Matcher::new(&Vocabulary::builtin(Expansion::Fisao)),
            sentence,
        })
    }

    /// The samples.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Ground-truth entities of sample `index`.
    pub fn truth(&self, index: usize) -> &BTreeSet<EntityId> {
        &self.truth[index]
    }

    /// `(class, its pair partner)` for every paired class, both directions.
    pub fn partners(&self) -> &[(EntityId, EntityId)] {
        &self.partners
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &LlavaTokenizer {
        self.tokenizer
    }

    /// The prompt ids (same for every sample).
    pub fn prompt_ids(&self) -> &[i64] {
        &self.prompt_ids
    }

    /// Mentions of `text` about sample `index`, scored and checked against the truth.
    pub fn judge(&self, index: usize, text: &str) -> Result<Vec<Judged>> {
        let image = self.embedding(index)?;
        self.matcher
            .find(text)
            .into_iter()
            .map(|m| {
                let form = m.text(text).context("mention outside the text")?;
                Ok(Judged {
                    score: self.verifier.object_score(form, image)?,
                    correct: self.truth[index].contains(&m.entity),
                    mention: m,
                })
            })
            .collect()
    }

    /// The sentence-level score of `text` about sample `index`.
    pub fn sentence_score(&self, index: usize, text: &str) -> Result<f64> {
        self.verifier.sentence_score(text, self.embedding(index)?)
    }

    fn embedding(&self, index: usize) -> Result<&[f32]> {
        self.embeddings
            .get(index)
            .map(Vec::as_slice)
            .with_context(|| format!("no sample {index} in a task of {}", self.samples.len()))
    }

    /// `[n, 3, H, W]` CLIP pixels of samples `indices`.
    pub fn pixel_batch(&self, indices: &[usize]) -> Result<Tensor> {
        let size = self.verifier.image_size();
        let mut px = Vec::new();
        for &i in indices {
            let s = self
                .samples
                .get(i)
                .with_context(|| format!("no sample {i}"))?;
            px.extend(self.verifier.pixels(s)?);
        }
        Ok(Tensor::from_slice(&px).view([indices.len() as i64, 3, size, size]))
    }
}

/// Entities of the classes present in a sample.
pub fn truth(world: &World, sample: &Sample) -> BTreeSet<EntityId> {
    sample
        .objects()
        .iter()
        .filter_map(|o| world.classes().get(o.class.0 as usize))
        .map(|c| c.entity)
        .collect()
}

/// `(class, its pair partner)` entities of every paired class of the world
/// (each pair appears in both directions): the planted bias names the
/// first when only the second is drawn.
pub fn partners(world: &World) -> Vec<(EntityId, EntityId)> {
    let classes = world.classes();
    classes
        .iter()
        .filter_map(|c| {
            let (p, _) = c.partner?;
            Some((c.entity, classes.get(p.0 as usize)?.entity))
        })
        .collect()
}

impl Task for WorldTask<'_> {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn prompt(&self, index: usize) -> Result<Prompt> {
        if index >= self.samples.len() {
            bail!("no sample {index} in a task of {}", self.samples.len());
        }
        Ok(Prompt {
            ids: self.prompt_ids.clone(),
            pixel_values: Some(self.pixel_batch(&[index])?),
        })
    }

    fn score(&self, index: usize, response: &ResponseText) -> Result<Scored> {
        let image = self.embedding(index)?;
        let mentions = self.matcher.find(response.text);
        let hallucinated = mentions
            .iter()
            .filter(|m| !self.truth[index].contains(&m.entity))
            .count();
        let scored = score_mentions(response, &mentions, |form| {
            self.verifier.object_score(form, image)
        })?;
        let sentence_score = if self.sentence {
            // An empty response still gets a score: CLIP embeds "" as BOS + EOS.
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

//! The demo's verifier: a tiny CLIP trained from scratch on the TRUE
//! image-object pairs of the world's training split, saved in HuggingFace
//! CLIP format (`config.json`, `model.safetensors`, `tokenizer.json`,
//! `preprocessor_config.json`) for reward-core's `ClipModel`, the browser
//! page and transformers' `CLIPModel`.
//!
//! Mirrors what FiSAO needs of its CLIP (`/design/method.md` sections 1 and
//! 4): the score of a mention is CLIP's logit of the bare object word
//! (template `"{}"`) against the image. So the texts trained on are exactly
//! those surface forms, the singular and plural class names (captions say
//! "a knife" or "two knives"; the reward scores the lower-cased mention,
//! `reward_core::vocab::normalise`). The objective is a multi-label sigmoid
//! loss over the image x class-word similarity matrix (label = the class is
//! in the image; SigLIP's form, with a training-only bias), so every word
//! is calibrated against every image, not only against the other words of
//! its batch. Next to the words it learns whole captions, as a CLIP does:
//! each image with a truthful caption of itself (a fresh wording every
//! epoch), scored against every caption of the batch with the same sigmoid
//! loss, a caption counting as right for an image when everything it names
//! is in that image. Without this the text tower, trained longer, scores
//! whole responses at chance and the sentence-level ablation (one CLIP score
//! of the whole response, method.md section 4) has nothing to work with.
//! Pixels are normalised exactly as reward-core's
//! `CLIPImageProcessor` mirror does (same-size bicubic resize and crop are
//! identities), so the model sees in use what it saw in training.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use reward_core::clip::ClipModel;
use reward_core::clip::image::{
    OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, Preprocess, RgbImage, normalize,
};
use serde::Serialize;
use tch::{Device, Kind, Tensor, nn, nn::OptimizerConfig};

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use super::clip_tch::{
    ClipShape, ClipTch, MAX_LOGIT_SCALE, TowerSize, init_weights, pad_tokens, save_weights,
};
use super::clip_tokenizer::{ClipTokenizerJson, world_tokenizer};
use crate::world::{ObjectCount, Sample, Split, World};

/// CLIP's text window; whole responses are truncated to it (sentence-level score).
const TEXT_WINDOW: i64 = 77;
/// Name prefix of variables used only in training (not saved).
const TRAIN_ONLY: &str = "train_only";
/// Mixed into the seed for the data-order stream.
const ORDER_STREAM: u64 = 0x6f72_6465_7273;
/// Gradient-norm clip.
const CLIP_NORM: f64 = 1.0;

/// Sizes and schedule of the verifier.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VerifierSpec {
    /// Patch side of the image tower in pixels.
    pub patch_size: i64,
    /// The image tower.
    pub vision: TowerSize,
    /// The text tower.
    pub text: TowerSize,
    /// Width of the shared embedding space.
    pub projection_dim: i64,
    /// Passes over the training split.
    pub epochs: u64,
    /// Images per step.
    pub batch_size: usize,
    /// Peak AdamW learning rate (linear warm-up, cosine decay to 0).
    pub learning_rate: f64,
    /// Warm-up steps.
    pub warmup_steps: u64,
    /// Initial `logit_scale` (log of the cosine multiplier).
    pub logit_scale_init: f64,
    /// Initial training-only bias of the sigmoid loss.
    pub logit_bias_init: f64,
    /// Weight of the caption loss next to the word loss (0 = words only).
    pub caption_weight: f64,
    /// Seed of initialisation and data order (own ChaCha streams, not
    /// tch's global generator, so concurrent trainings do not interfere).
    pub seed: u64,
}

impl VerifierSpec {
    /// Sizes for `world`: patches of 1/8 of the image side, 64-wide towers
    /// (3 image layers, 2 text layers), 8 epochs of 32-image batches
    /// (default world: 1504 steps), object words and whole captions.
    ///
    /// 8 epochs rather than 3 separate a present object from an absent pair
    /// partner much better (validation AUROC 0.806 / 0.893 -> 0.932 / 0.982
    /// on seeds 0 / 1, words only; docs/demo.md, "Why the effect is small").
    /// Trained on words only, the longer schedule made whole-caption scores
    /// chance (the eq. 7 sentence baselines came out s_c < s_h); with the
    /// caption loss they separate (seed 0: validation caption AUROC 0.999,
    /// sentence baselines s_c 4.39 vs s_h -1.05).
    pub fn for_world(world: &World) -> Self {
        let size = world.config().image_size as i64;
        Self {
            patch_size: (size / 8).max(1),
            vision: TowerSize {
                hidden: 64,
                layers: 3,
                heads: 4,
                mlp: 128,
            },
            text: TowerSize {
                hidden: 64,
                layers: 2,
                heads: 4,
                mlp: 128,
            },
            projection_dim: 64,
            epochs: 8,
            batch_size: 32,
            learning_rate: 2e-3,
            warmup_steps: 30,
            logit_scale_init: 10f64.ln(),
            logit_bias_init: -1.0,
            caption_weight: 1.0,
            seed: 0,
        }
    }

    /// For tests: trains in seconds on the tiny world, debug build.
    pub fn tiny() -> Self {
        Self {
            patch_size: 8,
            vision: TowerSize {
                hidden: 32,
                layers: 2,
                heads: 2,
                mlp: 64,
            },
            text: TowerSize {
                hidden: 32,
                layers: 1,
                heads: 2,
                mlp: 64,
            },
            projection_dim: 32,
            epochs: 15,
            batch_size: 16,
            learning_rate: 3e-3,
            warmup_steps: 5,
            logit_scale_init: 10f64.ln(),
            logit_bias_init: -1.0,
            caption_weight: 1.0,
            seed: 0,
        }
    }

    /// Training steps on `world`.
    pub fn total_steps(&self, world: &World) -> u64 {
        let n = world.len(Split::Train) as u64;
        self.epochs * n.div_ceil(self.batch_size.max(1) as u64)
    }

    fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 {
            bail!("verifier spec: epochs and batch_size must be positive");
        }
        if !(self.caption_weight >= 0.0 && self.caption_weight.is_finite()) {
            bail!(
                "verifier spec: caption_weight must be finite and >= 0, found {}",
                self.caption_weight
            );
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            bail!(
                "verifier spec: learning_rate must be positive, found {}",
                self.learning_rate
            );
        }
        Ok(())
    }

    fn shape(&self, world: &World, tok: &ClipTokenizerJson) -> ClipShape {
        ClipShape {
            image_size: world.config().image_size as i64,
            patch_size: self.patch_size,
            vision: self.vision,
            text: self.text,
            vocab_size: tok.vocab_size as i64,
            max_positions: TEXT_WINDOW,
            bos_token_id: i64::from(tok.bos_id),
            eos_token_id: i64::from(tok.eos_id),
            projection_dim: self.projection_dim,
            logit_scale_init: self.logit_scale_init,
        }
    }
}

/// What training did and how well the saved verifier separates objects.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VerifierReport {
    /// Optimiser steps taken.
    pub steps: u64,
    /// Mean training loss over the last epoch.
    pub final_loss: f64,
    /// Wall-clock seconds of the whole call (data, training, saving, validation).
    pub seconds: f64,
    /// Validation AUROC of the bare object word's score (reward-core's
    /// `logits_per_image` of the saved model), present vs absent classes,
    /// pooled over all (image, class) pairs.
    pub auroc_present: f64,
    /// The same, with negatives restricted to absent classes whose pair
    /// partner is present (positives: all present pairs).
    pub auroc_partner: f64,
    /// Validation AUROC of whole captions: each image against its own
    /// truthful caption (positive) and against the next image's caption
    /// where that names something the image lacks (negative).
    pub auroc_caption: f64,
}

/// Trains the verifier for `world` and writes it to `out_dir` (replaced
/// atomically: written to a sibling temp directory, checked, renamed).
/// `progress(done, total)` is called after every step.
pub fn train_verifier(
    world: &World,
    spec: &VerifierSpec,
    out_dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifierReport> {
    let start = Instant::now();
    spec.validate()?;
    let tmp = temp_dir_for(out_dir)?;
    let result = train_into(world, spec, &tmp, progress).and_then(|(steps, final_loss)| {
        let (auroc_present, auroc_partner, auroc_caption) = validation_auroc(world, &tmp)?;
        Ok(VerifierReport {
            steps,
            final_loss,
            seconds: 0.0,
            auroc_present,
            auroc_partner,
            auroc_caption,
        })
    });
    // On any failure the half-written temp directory goes; out_dir is untouched.
    let mut report = match result.and_then(|r| replace_dir(&tmp, out_dir).map(|()| r)) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// A fresh sibling of `out_dir` to write into; errors name the path.
fn temp_dir_for(out_dir: &Path) -> Result<PathBuf> {
    let name = out_dir.file_name().with_context(|| {
        format!(
            "verifier output {} has no directory name",
            out_dir.display()
        )
    })?;
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("creating verifier output parent {}", parent.display()))?;
    if out_dir.exists() && !out_dir.is_dir() {
        bail!(
            "verifier output {} exists and is not a directory",
            out_dir.display()
        );
    }
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("removing stale {}", tmp.display()))?;
    }
    std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    Ok(tmp)
}

/// Moves `tmp` to `out_dir`, replacing an existing directory there.
fn replace_dir(tmp: &Path, out_dir: &Path) -> Result<()> {
    let old = tmp.with_extension("old");
    if out_dir.exists() {
        std::fs::rename(out_dir, &old)
            .with_context(|| format!("moving the old {} aside", out_dir.display()))?;
    }
    if let Err(e) = std::fs::rename(tmp, out_dir) {
        if old.exists() {
            // Put the previous verifier back.
            let _ = std::fs::rename(&old, out_dir);
        }
        let msg = format!("renaming {} to {}", tmp.display(), out_dir.display());
        return Err(anyhow::Error::new(e).context(msg));
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}

/// The class-word texts: per class its name and, when different, its plural.
/// Returns the texts and the class index of each.
pub fn class_texts(world: &World) -> (Vec<String>, Vec<usize>) {
    let mut texts = Vec::new();
    let mut class_of = Vec::new();
    for (i, c) in world.classes().iter().enumerate() {
        texts.push(reward_core::vocab::normalise(&c.name));
        class_of.push(i);
        if c.plural != c.name {
            texts.push(reward_core::vocab::normalise(&c.plural));
            class_of.push(i);
        }
    }
    (texts, class_of)
}

/// The `preprocessor_config.json` of a `CLIPImageProcessor` whose resize and
/// crop are identities for `image_size`-pixel images.
pub fn preprocessor_config(image_size: u32) -> serde_json::Value {
    serde_json::json!({
        "image_processor_type": "CLIPImageProcessor",
        "processor_class": "CLIPProcessor",
        "do_resize": true,
        "size": {"shortest_edge": image_size},
        "resample": 3,
        "do_center_crop": true,
        "crop_size": {"height": image_size, "width": image_size},
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": OPENAI_CLIP_MEAN.map(f64::from),
        "image_std": OPENAI_CLIP_STD.map(f64::from),
        "do_convert_rgb": true,
    })
}

/// Per channel, the normalised value of each byte, computed by reward-core's
/// own `normalize` (so training and scoring agree to the bit): `[3 * 256]`.
pub fn pixel_lut(image_size: u32) -> Result<Tensor> {
    let ramp: Vec<u8> = (0..=255u8).flat_map(|v| [v, v, v]).collect();
    let img = RgbImage::new(256, 1, ramp)?;
    let lut = normalize(&img, &Preprocess::for_image_size(image_size));
    Ok(Tensor::from_slice(&lut))
}

/// The samples' RGB bytes as a `[n, 3, S, S]` u8 tensor (CHW).
pub fn pixel_bytes(samples: &[Sample]) -> Tensor {
    let Some(first) = samples.first() else {
        return Tensor::zeros([0, 3, 0, 0], (Kind::Uint8, Device::Cpu));
    };
    let (w, h) = (first.image.width as i64, first.image.height as i64);
    let mut bytes = Vec::with_capacity(samples.len() * first.image.rgb.len());
    for s in samples {
        bytes.extend_from_slice(&s.image.rgb);
    }
    Tensor::from_slice(&bytes)
        .view([samples.len() as i64, h, w, 3])
        .permute([0, 3, 1, 2])
        .contiguous()
}

/// Normalised f32 pixels `[n, 3, S, S]` from u8 `[n, 3, S, S]` through `lut`.
pub fn normalise_pixels(bytes: &Tensor, lut: &Tensor) -> Tensor {
    let offset = Tensor::from_slice(&[0i64, 256, 512]).view([1, 3, 1, 1]);
    let idx = bytes.to_kind(Kind::Int64) + offset;
    lut.index_select(0, &idx.flatten(0, -1)).view_as(bytes)
}

/// Presence labels `[n, classes]` (1 where the class is in the image).
fn labels(samples: &[Sample], classes: usize) -> Tensor {
    let mut v = vec![0f32; samples.len() * classes];
    for (row, s) in v.chunks_exact_mut(classes).zip(samples) {
        for o in s.objects() {
            if let Some(x) = row.get_mut(o.class.0 as usize) {
                *x = 1.0;
            }
        }
    }
    Tensor::from_slice(&v).view([samples.len() as i64, classes as i64])
}

/// Token ids of `texts` through the saved tokenizer, as reward-core gets
/// them, cut to CLIP's window (the last kept token becomes the end token,
/// whose position the text tower pools).
fn tokenize(tok: &ClipTokenizerJson, texts: &[String]) -> Result<Vec<Vec<u32>>> {
    let t = tok.tokenizer()?;
    texts
        .iter()
        .map(|s| {
            let mut ids = t
                .encode(s.as_str(), true)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| anyhow::anyhow!("tokenizing {s:?}: {e}"))?;
            if ids.len() > TEXT_WINDOW as usize {
                ids.truncate(TEXT_WINDOW as usize);
                if let Some(last) = ids.last_mut() {
                    *last = tok.eos_id;
                }
            }
            Ok(ids)
        })
        .collect()
}

/// What the caption loss needs of one training image.
struct CaptionKey {
    index: u64,
    objects: Vec<ObjectCount>,
}

impl CaptionKey {
    /// True when every class of `other` is in this image.
    fn covers(&self, other: &CaptionKey) -> bool {
        other
            .objects
            .iter()
            .all(|o| self.objects.iter().any(|p| p.class == o.class))
    }
}

/// Truthful captions of the training images for one epoch (wording variant
/// `epoch`), tokenised and padded: `(ids [n, len], eos [n])`.
fn epoch_captions(
    world: &World,
    tok: &ClipTokenizerJson,
    keys: &[CaptionKey],
    epoch: u64,
) -> Result<(Tensor, Tensor)> {
    let texts: Vec<String> = keys
        .iter()
        .map(|k| world.truthful_caption(Split::Train, k.index, epoch, &k.objects))
        .collect();
    pad_tokens(&tokenize(tok, &texts)?, tok.eos_id)
}

/// Labels `[b, b]` of a batch: 1 where caption `j` names only objects of image `i`.
fn caption_labels(keys: &[&CaptionKey]) -> Tensor {
    let b = keys.len();
    let v: Vec<f32> = keys
        .iter()
        .flat_map(|img| {
            keys.iter()
                .map(move |cap| f32::from(u8::from(img.covers(cap))))
        })
        .collect();
    Tensor::from_slice(&v).view([b as i64, b as i64])
}

/// Peak `lr` with linear warm-up and cosine decay to 0.
fn learning_rate(spec: &VerifierSpec, step: u64, total: u64) -> f64 {
    if step < spec.warmup_steps {
        return spec.learning_rate * (step + 1) as f64 / spec.warmup_steps as f64;
    }
    let span = total.saturating_sub(spec.warmup_steps).max(1) as f64;
    let t = (step - spec.warmup_steps) as f64 / span;
    spec.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
}

/// `0..n` in a random order (Fisher-Yates).
fn shuffled(n: i64, rng: &mut ChaCha8Rng) -> Tensor {
    let mut v: Vec<i64> = (0..n).collect();
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    Tensor::from_slice(&v)
}

/// Trains and writes the four files into `dir`; returns (steps, final loss).
// `loss = loss + ...`, not `+=`: `+=` would add in place into a tensor
// autograd still needs.
#[allow(clippy::assign_op_pattern)]
fn train_into(
    world: &World,
    spec: &VerifierSpec,
    dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(u64, f64)> {
    let tok = world_tokenizer(world)?;
    let shape = spec.shape(world, &tok);
    let (texts, class_of) = class_texts(world);
    let (ids, eos) = pad_tokens(&tokenize(&tok, &texts)?, tok.eos_id)?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let samples = world.generate(Split::Train, 0..world.len(Split::Train) as u64, threads);
    let pixels = pixel_bytes(&samples);
    let classes = world.classes().len();
    // Per text: the presence label of its class.
    let class_index = Tensor::from_slice(&class_of.iter().map(|&c| c as i64).collect::<Vec<_>>());
    let targets = labels(&samples, classes).index_select(1, &class_index);
    let keys: Vec<CaptionKey> = samples
        .iter()
        .map(|s| CaptionKey {
            index: s.annotation.index,
            objects: s.objects().to_vec(),
        })
        .collect();
    drop(samples);
    let lut = pixel_lut(world.config().image_size)?;

    let vs = nn::VarStore::new(Device::Cpu);
    let model = ClipTch::new(&vs.root(), &shape)?;
    let bias =
        (vs.root() / TRAIN_ONLY).var("logit_bias", &[], nn::Init::Const(spec.logit_bias_init));
    // Captions get their own bias: far fewer of their pairs are positive.
    let caption_bias =
        (vs.root() / TRAIN_ONLY).var("caption_bias", &[], nn::Init::Const(spec.logit_bias_init));
    init_weights(&vs, spec.seed);
    let mut order_rng = ChaCha8Rng::seed_from_u64(spec.seed ^ ORDER_STREAM);
    let adam = nn::AdamW {
        wd: 0.0,
        ..Default::default()
    };
    let mut opt = adam.build(&vs, spec.learning_rate)?;

    let n = pixels.size()[0];
    let total = spec.total_steps(world);
    let (mut step, mut epoch_loss, mut epoch_steps) = (0u64, 0f64, 0u64);
    for epoch in 0..spec.epochs {
        let order = shuffled(n, &mut order_rng);
        let captions = if spec.caption_weight > 0.0 {
            Some(epoch_captions(world, &tok, &keys, epoch)?)
        } else {
            None
        };
        (epoch_loss, epoch_steps) = (0.0, 0);
        for start in (0..n).step_by(spec.batch_size) {
            let len = (n - start).min(spec.batch_size as i64);
            let idx = order.narrow(0, start, len);
            let x = normalise_pixels(&pixels.index_select(0, &idx), &lut);
            let y = targets.index_select(0, &idx);
            let images = model.image_features(&x);
            let words = model.text_features(&ids, &eos);
            let logits = model.logits_per_image(&images, &words) + &bias;
            let mut loss = logits.binary_cross_entropy_with_logits::<Tensor>(
                &y,
                None,
                None,
                tch::Reduction::Mean,
            );
            if let Some((cap_ids, cap_eos)) = &captions {
                let rows: Vec<i64> = Vec::<i64>::try_from(&idx)?;
                let batch_keys: Vec<&CaptionKey> =
                    rows.iter().filter_map(|&r| keys.get(r as usize)).collect();
                let texts = model.text_features(
                    &cap_ids.index_select(0, &idx),
                    &cap_eos.index_select(0, &idx),
                );
                let cap_logits = model.logits_per_image(&images, &texts) + &caption_bias;
                let cap_loss = cap_logits.binary_cross_entropy_with_logits::<Tensor>(
                    &caption_labels(&batch_keys),
                    None,
                    None,
                    tch::Reduction::Mean,
                );
                loss = loss + cap_loss * spec.caption_weight;
            }
            opt.set_lr(learning_rate(spec, step, total));
            opt.backward_step_clip_norm(&loss, CLIP_NORM);
            tch::no_grad(|| {
                let _ = model
                    .logit_scale()
                    .shallow_clone()
                    .clamp_(0.0, MAX_LOGIT_SCALE);
            });
            epoch_loss += loss.double_value(&[]);
            epoch_steps += 1;
            step += 1;
            progress(step, total);
        }
    }
    write_files(dir, &vs, &shape, &tok, world.config().image_size)?;
    Ok((step, epoch_loss / epoch_steps.max(1) as f64))
}

fn write_files(
    dir: &Path,
    vs: &nn::VarStore,
    shape: &ClipShape,
    tok: &ClipTokenizerJson,
    image_size: u32,
) -> Result<()> {
    let write = |name: &str, text: String| -> Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write(
        "config.json",
        serde_json::to_string_pretty(&shape.config_json())? + "\n",
    )?;
    write(
        "preprocessor_config.json",
        serde_json::to_string_pretty(&preprocessor_config(image_size))? + "\n",
    )?;
    write("tokenizer.json", tok.json.clone())?;
    save_weights(vs, &[TRAIN_ONLY], &dir.join("model.safetensors"))
}

/// (present AUROC, partner AUROC, caption AUROC) of the saved model on the
/// validation split.
fn validation_auroc(world: &World, dir: &Path) -> Result<(f64, f64, f64)> {
    let model = ClipModel::load(dir).with_context(|| format!("loading {}", dir.display()))?;
    let names: Vec<String> = world
        .classes()
        .iter()
        .map(|c| reward_core::vocab::normalise(&c.name))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let words = model.embed_texts(&refs)?.embeddings;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let samples = world.generate(
        Split::Validation,
        0..world.len(Split::Validation) as u64,
        threads,
    );
    let pre = Preprocess::for_image_size(world.config().image_size);
    let mut pixels = Vec::with_capacity(samples.len() * pre.output_len());
    for s in &samples {
        let img = RgbImage::new(s.image.width, s.image.height, s.image.rgb.clone())?;
        pixels.extend(reward_core::clip::image::preprocess(&img, &pre)?);
    }
    let images = model.embed_images(&pixels, samples.len())?;
    let logits = model.logits_per_image(&images, &words)?;
    let (mut pos, mut neg, mut neg_partner) = (Vec::new(), Vec::new(), Vec::new());
    for (i, s) in samples.iter().enumerate() {
        let present = |c: usize| s.objects().iter().any(|o| o.class.0 as usize == c);
        for (c, &score) in logits.row(i).iter().enumerate() {
            let score = f64::from(score);
            if present(c) {
                pos.push(score);
                continue;
            }
            neg.push(score);
            let partner = world.partner(crate::world::ClassId(c as u16));
            if partner.is_some_and(|(p, _)| present(p.0 as usize)) {
                neg_partner.push(score);
            }
        }
    }
    let caption = caption_auroc(&model, &samples, &images)?;
    Ok((auroc(&pos, &neg), auroc(&pos, &neg_partner), caption))
}

/// Caption AUROC over `samples` (validation captions are truthful): image
/// `i` with its own caption vs with caption `i + 1` where that names an
/// object image `i` lacks.
fn caption_auroc(
    model: &ClipModel,
    samples: &[Sample],
    images: &reward_core::clip::Embeddings,
) -> Result<f64> {
    let texts: Vec<&str> = samples.iter().map(Sample::caption).collect();
    let captions = model.embed_texts(&texts)?.embeddings;
    let logits = model.logits_per_image(images, &captions)?;
    let n = samples.len();
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for (i, s) in samples.iter().enumerate() {
        let row = logits.row(i);
        pos.push(f64::from(row[i]));
        let j = (i + 1) % n;
        let extra = samples[j]
            .objects()
            .iter()
            .any(|o| !s.annotation.contains(o.class));
        if extra {
            neg.push(f64::from(row[j]));
        }
    }
    Ok(auroc(&pos, &neg))
}

/// Area under the ROC curve (reward-core's Mann-Whitney statistic, ties
/// counting one half); NaN when either side is empty, so a report can show
/// that a class was missing instead of failing the whole stage.
pub fn auroc(positives: &[f64], negatives: &[f64]) -> f64 {
    reward_core::metrics::auroc::auroc(positives, negatives).unwrap_or(f64::NAN)
}

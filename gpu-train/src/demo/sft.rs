//! Supervised fine-tuning of the synthetic world's LLaVA (the "SFT model" of
//! FiSAO, `/design/synthetic-world.md`): LLaVA-1.5's architecture at toy
//! size, trained from scratch on the biased training captions.
//!
//! - Vision tower: the verifier's CLIP image tower, frozen; LLaVA-1.5's
//!   penultimate-layer patch features without CLS (`vision_feature_layer`
//!   -2, strategy `default`), pixels normalised with the verifier's CLIP
//!   mean and std. Because it is frozen, its features are computed once per
//!   training image and cached; only the projector and the Llama train.
//! - Tokenizer: a Llama-style BPE trained on the captions
//!   ([`super::lm_tokenizer`]), small enough that some object words span
//!   several tokens.
//! - Data: `USER: <image>\n{PROMPT} ASSISTANT: {caption}</s>` (LLaVA-1.5's
//!   chat template), loss on the caption tokens and EOS only (teacher
//!   forcing). Epoch `e` uses caption variant `e` of every image (fresh
//!   wording and fresh bias draws, like [`World::epoch`]).
//! - Optimiser: AdamW, linear warmup then cosine decay, global gradient
//!   clipping.
//!
//! Everything random (initialisation, data order) is drawn from the spec's
//! seed through ChaCha8, not from libtorch's global generator, so the same
//! seed and thread count give the same weights.
//!
//! The result is a HuggingFace LLaVA directory ([`crate::llava::save_pretrained`])
//! with `tokenizer.json`, `tokenizer_config.json` and `preprocessor_config.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde_json::{Value, json};
use tch::{Device, Kind, Reduction, Tensor};

use super::lm_tokenizer::{self, TokenizerReport};
use crate::llava::{
    Checkpoint, LlavaConfig, LlavaModel, LlavaTokenizer, LoadOptions, Message, SamplingConfig,
    generate, render_chat, save_pretrained,
};
use crate::trainer::optim::{AdamW, AdamWConfig};
use crate::world::{Sample, Split, World};

/// The one user instruction of every SFT example and every rollout.
pub const PROMPT: &str = "Describe the image.";

/// OpenAI CLIP's normalisation, used when the verifier ships no `preprocessor_config.json`.
const CLIP_MEAN: [f64; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const CLIP_STD: [f64; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Sizes and schedule of the SFT run.
#[derive(Debug, Clone, PartialEq)]
pub struct SftSpec {
    /// Llama width.
    pub hidden_size: i64,
    /// Llama layers.
    pub num_layers: i64,
    /// Query heads.
    pub num_heads: i64,
    /// Key/value heads (a divisor of `num_heads`).
    pub num_kv_heads: i64,
    /// SwiGLU width.
    pub intermediate_size: i64,
    /// Longest sequence (image tokens + prompt + caption + generation room).
    pub max_position_embeddings: i64,
    /// RoPE base.
    pub rope_theta: f64,
    /// Tokenizer vocabulary, all ids included (see [`lm_tokenizer::train_tokenizer`]).
    pub vocab_size: usize,
    /// Passes over the training split.
    pub epochs: usize,
    /// Captions per optimiser step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Linear warmup steps.
    pub warmup_steps: u64,
    /// The cosine decays to this share of the peak.
    pub final_lr_ratio: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub grad_clip: f64,
    /// Seed of initialisation and data order.
    pub seed: u64,
}

impl SftSpec {
    /// The demo's settings for `world`: about 380 optimiser steps of 32
    /// captions whatever the split size (2 to 8 epochs; 2 on the default
    /// world's 6000 captions). Sized for the demo's CPU budget: a step of the
    /// default world costs about 0.2 GFLOP per example (89 tokens, 64 of them
    /// image tokens).
    pub fn for_world(world: &World) -> Self {
        let n = world.len(Split::Train).max(1);
        let batch_size = 32;
        let epochs = (380 * batch_size / n).clamp(2, 8);
        SftSpec {
            hidden_size: 96,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 4,
            intermediate_size: 192,
            max_position_embeddings: 1024,
            rope_theta: 10000.0,
            vocab_size: 380,
            epochs,
            batch_size,
            learning_rate: 2e-3,
            warmup_steps: 20,
            final_lr_ratio: 0.05,
            weight_decay: 0.01,
            grad_clip: 1.0,
            seed: 0,
        }
    }

    /// A model that trains in seconds on [`World::tiny_world`] in a debug build.
    pub fn tiny() -> Self {
        SftSpec {
            hidden_size: 32,
            num_layers: 2,
            num_heads: 2,
            num_kv_heads: 1,
            intermediate_size: 64,
            max_position_embeddings: 256,
            rope_theta: 10000.0,
            vocab_size: 335,
            epochs: 6,
            batch_size: 8,
            learning_rate: 1e-2,
            warmup_steps: 5,
            final_lr_ratio: 0.1,
            weight_decay: 0.0,
            grad_clip: 1.0,
            seed: 0,
        }
    }

    fn check(&self) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 {
            bail!("SftSpec: epochs and batch_size must be positive");
        }
        let not_positive = |x: f64| x.is_nan() || x <= 0.0;
        if not_positive(self.learning_rate) || not_positive(self.grad_clip) {
            bail!("SftSpec: learning_rate and grad_clip must be positive");
        }
        if self.num_heads <= 0 || self.num_kv_heads <= 0 || self.num_heads % self.num_kv_heads != 0
        {
            bail!(
                "SftSpec: num_heads {} is not a multiple of num_kv_heads {}",
                self.num_heads,
                self.num_kv_heads
            );
        }
        if self.hidden_size % self.num_heads != 0 {
            bail!(
                "SftSpec: hidden_size {} is not divisible by num_heads {}",
                self.hidden_size,
                self.num_heads
            );
        }
        Ok(())
    }
}

/// What [`train_sft`] did.
#[derive(Debug, Clone)]
pub struct SftReport {
    /// Optimiser steps.
    pub steps: u64,
    /// Mean loss (nats per caption token) over the last epoch.
    pub final_loss: f64,
    /// Wall time, feature caching and saving included.
    pub seconds: f64,
    /// Class names spanning more than one token inside a caption.
    pub split_words: Vec<String>,
    /// Mean loss of every epoch, in order.
    pub losses: Vec<f64>,
}

/// Per-channel pixel normalisation of the vision tower.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelNorm {
    /// Channel means.
    pub mean: [f64; 3],
    /// Channel standard deviations.
    pub std: [f64; 3],
}

impl Default for PixelNorm {
    fn default() -> Self {
        PixelNorm {
            mean: CLIP_MEAN,
            std: CLIP_STD,
        }
    }
}

impl PixelNorm {
    /// `image_mean` / `image_std` of `dir/preprocessor_config.json`, or CLIP's when absent.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("preprocessor_config.json");
        if !path.exists() {
            return Ok(Self::default());
        }
        let v = read_json(&path)?;
        let three = |key: &str| -> Result<[f64; 3]> {
            let a = v
                .get(key)
                .and_then(Value::as_array)
                .with_context(|| format!("{}: no {key} list", path.display()))?;
            let xs: Vec<f64> = a.iter().filter_map(Value::as_f64).collect();
            <[f64; 3]>::try_from(xs.as_slice()).map_err(|_| {
                anyhow!(
                    "{}: {key} must hold 3 numbers, found {}",
                    path.display(),
                    a.len()
                )
            })
        };
        let norm = PixelNorm {
            mean: three("image_mean")?,
            std: three("image_std")?,
        };
        if norm.std.iter().any(|&s| s.is_nan() || s <= 0.0) {
            bail!("{}: image_std must be positive", path.display());
        }
        Ok(norm)
    }

    /// `pixel_values` `[n, 3, s, s]` of world samples (all of one size).
    pub fn pixel_values(&self, samples: &[&Sample]) -> Result<Tensor> {
        let Some(first) = samples.first() else {
            bail!("pixel_values of no images");
        };
        let (w, h) = (first.image.width as usize, first.image.height as usize);
        let per = 3 * w * h;
        let mut buf = vec![0f32; per * samples.len()];
        for (s, chunk) in samples.iter().zip(buf.chunks_exact_mut(per)) {
            if (s.image.width as usize, s.image.height as usize) != (w, h) {
                bail!(
                    "images of different sizes in one batch: {w}x{h} and {}x{}",
                    s.image.width,
                    s.image.height
                );
            }
            s.image.write_chw_f32(chunk);
        }
        let x = Tensor::from_slice(&buf).view([samples.len() as i64, 3, h as i64, w as i64]);
        let mean = Tensor::from_slice(&self.mean.map(|m| m as f32)).view([1, 3, 1, 1]);
        let std = Tensor::from_slice(&self.std.map(|s| s as f32)).view([1, 3, 1, 1]);
        Ok((x - mean) / std)
    }
}

/// Trains the SFT model on `world`'s training split with the vision tower of
/// the CLIP checkpoint in `verifier_dir`, and writes the HF LLaVA directory
/// `out_dir` (replaced as a whole at the end). `progress(step, total)` is called
/// after every optimiser step.
pub fn train_sft(
    world: &World,
    verifier_dir: &Path,
    spec: &SftSpec,
    out_dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SftReport> {
    let start = Instant::now();
    spec.check()?;
    let stage = staging_dir(out_dir)?;
    let mut run = || -> Result<SftReport> {
        let n_train = world.len(Split::Train);
        let captions: Vec<String> = (0..n_train as u64)
            .map(|i| world.annotate(Split::Train, i, 0).caption)
            .collect();
        let tok_report =
            train_caption_tokenizer(&captions, spec.vocab_size, &stage.join("tokenizer.json"))?;
        let config = llava_config(world, verifier_dir, spec, &tok_report)?;
        let per_image = config.image_tokens_per_image();
        let tok = LlavaTokenizer::from_file(
            &stage.join("tokenizer.json"),
            tok_report.image_id,
            per_image as usize,
        )?;
        let names: Vec<&str> = world.classes().iter().map(|c| c.name.as_str()).collect();
        let split_words = lm_tokenizer::split_words(tok.inner(), &names)?;
        let model = build_model(config, verifier_dir, spec.seed)?;
        let norm = PixelNorm::from_dir(verifier_dir)?;
        let features = cache_features(world, &model, &norm)?;
        let (steps, losses) = train_loop(world, &model, &tok, &features, spec, progress)?;
        save_pretrained(&model, Some(verifier_dir), &stage)?;
        write_side_files(&stage, &model.config, verifier_dir, &norm)?;
        Ok(SftReport {
            steps,
            final_loss: losses.last().copied().unwrap_or(f64::NAN),
            seconds: 0.0,
            split_words,
            losses,
        })
    };
    let mut report = match run() {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&stage);
            return Err(e);
        }
    };
    replace_dir(&stage, out_dir)?;
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// The tokenizer corpus: every training example as the chat template renders
/// it, cut at the `<image>` placeholder (an added token, never seen by BPE), so
/// the prompt's words are merged like the captions' and the text pieces
/// pre-tokenize as they do in the encoded prompt.
pub fn train_caption_tokenizer(
    captions: &[String],
    vocab_size: usize,
    out: &Path,
) -> Result<TokenizerReport> {
    let mut corpus: Vec<String> = Vec::with_capacity(2 * captions.len());
    for c in captions {
        let text = render_chat(&[Message::user(PROMPT, 1), Message::assistant(c)], false);
        corpus.extend(
            text.split(crate::llava::IMAGE_TOKEN)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    let refs: Vec<&str> = corpus.iter().map(String::as_str).collect();
    lm_tokenizer::train_tokenizer(&refs, vocab_size, out)
}

/// The vision config of a CLIP checkpoint's `config.json` (a `CLIPConfig`'s
/// `vision_config`, or a bare `CLIPVisionConfig`).
fn vision_config_of(dir: &Path) -> Result<Value> {
    let path = dir.join("config.json");
    let v = read_json(&path)?;
    let mut vision = match v.get("vision_config") {
        Some(vc) if vc.is_object() => vc.clone(),
        _ if v.get("model_type").and_then(Value::as_str) == Some("clip_vision_model") => v,
        _ => bail!(
            "{}: neither a CLIP config with vision_config nor a clip_vision_model config",
            path.display()
        ),
    };
    vision["model_type"] = json!("clip_vision_model");
    Ok(vision)
}

/// The LLaVA config: the spec's Llama, the verifier's vision tower, the tokenizer's ids.
fn llava_config(
    world: &World,
    verifier_dir: &Path,
    spec: &SftSpec,
    tok: &TokenizerReport,
) -> Result<LlavaConfig> {
    let vision = vision_config_of(verifier_dir)?;
    let text = json!({
        "model_type": "llama",
        "vocab_size": tok.vocab_size,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "max_position_embeddings": spec.max_position_embeddings,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": spec.rope_theta},
        "tie_word_embeddings": false,
        "bos_token_id": tok.bos_id,
        "eos_token_id": tok.eos_id,
        "pad_token_id": tok.pad_id,
        "initializer_range": 0.02,
    });
    let cfg = json!({
        "model_type": "llava",
        "text_config": text,
        "vision_config": vision,
        "image_token_index": tok.image_id,
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "projector_hidden_act": "gelu",
    });
    let cfg = LlavaConfig::from_json(&cfg.to_string())
        .with_context(|| format!("LLaVA config from {}", verifier_dir.display()))?;
    let size = world.config().image_size as i64;
    if cfg.vision.image_size != size {
        bail!(
            "{}: the vision tower takes {}x{} images, the world draws {size}x{size}",
            verifier_dir.display(),
            cfg.vision.image_size,
            cfg.vision.image_size
        );
    }
    Ok(cfg)
}

/// A fresh model: Llama and projector drawn from `seed`, the vision tower
/// copied from the verifier and frozen.
fn build_model(config: LlavaConfig, verifier_dir: &Path, seed: u64) -> Result<LlavaModel> {
    let opts = LoadOptions {
        device: Device::Cpu,
        kind: Kind::Float,
        lora: None,
        value_head: false,
    };
    let std = config.text.initializer_range;
    let model = LlavaModel::from_config(config, &opts)?;
    let ck = Checkpoint::open(verifier_dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut vars: Vec<(String, Tensor)> = model.base_vs().variables().into_iter().collect();
    // Sorted, so every variable gets the same random numbers on every run.
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| -> Result<()> {
        for (name, mut t) in vars {
            if let Some(rest) = name.strip_prefix("vision_tower.") {
                let src = ck
                    .tensor(
                        &format!("vision_model.{rest}"),
                        &t.size(),
                        Kind::Float,
                        Device::Cpu,
                    )
                    .with_context(|| {
                        format!("copying the vision tower from {}", verifier_dir.display())
                    })?;
                t.copy_(&src);
                let _ = t.set_requires_grad(false);
            } else if !(name.ends_with("norm.weight") || name.ends_with(".bias")) {
                // Norm scales stay 1 and biases 0 (HF's init); the rest is N(0, std).
                t.copy_(&normal_like(&t, std, &mut rng));
            }
        }
        Ok(())
    })?;
    Ok(model)
}

/// N(0, std) numbers of `t`'s shape from `rng` (Box-Muller).
fn normal_like(t: &Tensor, std: f64, rng: &mut ChaCha8Rng) -> Tensor {
    let n = t.numel();
    let mut out = Vec::with_capacity(n + 1);
    let uniform =
        |rng: &mut ChaCha8Rng| ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    while out.len() < n {
        let (u, v) = (uniform(rng), uniform(rng));
        let r = (-2.0 * u.ln()).sqrt() * std;
        let a = 2.0 * std::f64::consts::PI * v;
        out.push((r * a.cos()) as f32);
        out.push((r * a.sin()) as f32);
    }
    out.truncate(n);
    Tensor::from_slice(&out).view(t.size().as_slice())
}

/// Vision-tower features `[n_train, patches, vision_hidden]` of every training
/// image: the tower is frozen, so one pass serves every epoch.
fn cache_features(world: &World, model: &LlavaModel, norm: &PixelNorm) -> Result<Tensor> {
    let n = world.len(Split::Train) as u64;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let chunk = 256u64;
    let mut parts = Vec::new();
    let mut at = 0u64;
    while at < n {
        let end = (at + chunk).min(n);
        let samples = world.generate(Split::Train, at..end, threads);
        let refs: Vec<&Sample> = samples.iter().collect();
        let pixels = norm.pixel_values(&refs)?;
        parts.push(tch::no_grad(|| model.vision_features(&pixels))?);
        at = end;
    }
    Ok(Tensor::cat(&parts, 0))
}

/// One training example: ids of prompt + caption + EOS.
fn example_ids(
    tok: &LlavaTokenizer,
    prompt: &[i64],
    prompt_text: &str,
    caption: &str,
    eos: i64,
) -> Result<Vec<i64>> {
    let mut ids = tok.encode(&format!("{prompt_text} {caption}"))?;
    if !ids.starts_with(prompt) {
        bail!("the prompt does not tokenize the same with the caption {caption:?} after it");
    }
    ids.push(eos);
    Ok(ids)
}

/// The optimiser loop; returns (steps, mean loss of every epoch).
fn train_loop(
    world: &World,
    model: &LlavaModel,
    tok: &LlavaTokenizer,
    features: &Tensor,
    spec: &SftSpec,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(u64, Vec<f64>)> {
    let t = &model.config.text;
    let eos = *t
        .eos_token_ids
        .first()
        .context("the config has no EOS id")?;
    let pad = t.pad_token_id.unwrap_or(eos);
    let prompt_text = render_chat(&[Message::user(PROMPT, 1)], true);
    let prompt = tok.encode(&prompt_text)?;
    let p_len = prompt.len() as i64;
    let n = features.size()[0] as usize;
    let steps_per_epoch = n.div_ceil(spec.batch_size) as u64;
    let total = steps_per_epoch * spec.epochs as u64;
    let params: BTreeMap<String, Tensor> = model
        .base_vs()
        .variables()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("vision_tower."))
        .collect();
    let mut opt = AdamW::new(
        params,
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: spec.weight_decay,
        },
    );
    let mut step = 0u64;
    let mut losses = Vec::with_capacity(spec.epochs);
    for epoch in 0..spec.epochs as u64 {
        let examples: Vec<Vec<i64>> = (0..n as u64)
            .map(|i| {
                let caption = world.annotate(Split::Train, i, epoch).caption;
                example_ids(tok, &prompt, &prompt_text, &caption, eos)
            })
            .collect::<Result<_>>()?;
        let longest = examples.iter().map(Vec::len).max().unwrap_or(0) as i64;
        if longest > t.max_position_embeddings {
            bail!(
                "a training example has {longest} tokens, more than max_position_embeddings {}",
                t.max_position_embeddings
            );
        }
        let order = shuffled(n, spec.seed, epoch);
        let (mut sum, mut count) = (0.0, 0usize);
        for batch in order.chunks(spec.batch_size) {
            let lr = learning_rate(spec, step, total);
            let (loss, tokens) = train_step(
                model,
                &mut opt,
                &examples,
                features,
                batch,
                p_len,
                pad,
                lr,
                spec.grad_clip,
            )?;
            if !loss.is_finite() {
                bail!("SFT loss is {loss} at step {step} (learning rate {lr})");
            }
            sum += loss * tokens as f64;
            count += tokens;
            step += 1;
            progress(step, total);
        }
        losses.push(sum / count.max(1) as f64);
    }
    Ok((step, losses))
}

/// One teacher-forced step on `batch` (indices into `examples`); returns the
/// mean loss and the number of target tokens it averages over.
#[allow(clippy::too_many_arguments)]
fn train_step(
    model: &LlavaModel,
    opt: &mut AdamW,
    examples: &[Vec<i64>],
    features: &Tensor,
    batch: &[usize],
    p_len: i64,
    pad: i64,
    lr: f64,
    clip: f64,
) -> Result<(f64, usize)> {
    let width = batch.iter().map(|&i| examples[i].len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(batch.len() * width);
    let mut targets = Vec::with_capacity(batch.len() * width);
    for &i in batch {
        let e = &examples[i];
        ids.extend(
            e.iter()
                .copied()
                .chain(std::iter::repeat_n(pad, width - e.len())),
        );
        // Targets of positions p_len.. : the caption and EOS; padding is ignored (-100).
        targets.extend(
            e[p_len as usize..]
                .iter()
                .copied()
                .chain(std::iter::repeat_n(-100, width - e.len())),
        );
    }
    let (b, w) = (batch.len() as i64, width as i64);
    let ids = Tensor::from_slice(&ids).view([b, w]);
    let targets = Tensor::from_slice(&targets).view([b * (w - p_len)]);
    let index = Tensor::from_slice(&batch.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let feats = features.index_select(0, &index);
    opt.zero_grad();
    let embeds = model.input_embeds_from_features(&ids, &feats)?;
    // Right padding under a causal mask never reaches a real token, so no mask is needed.
    let hidden = model.decoder_hidden(&embeds, None, None, true)?;
    // Position p predicts token p + 1: the caption starts at p_len.
    let logits = model.logits(&hidden.narrow(1, p_len - 1, w - p_len));
    let vocab = logits.size()[2];
    let loss = logits
        .reshape([-1, vocab])
        .to_kind(Kind::Float)
        .cross_entropy_loss::<Tensor>(&targets, None, Reduction::Mean, -100, 0.0);
    loss.backward();
    opt.clip_grad_norm(clip);
    opt.step(lr);
    let tokens = batch
        .iter()
        .map(|&i| examples[i].len() - p_len as usize)
        .sum();
    Ok((loss.double_value(&[]), tokens))
}

/// Linear warmup to the peak, then a cosine down to `final_lr_ratio` of it.
fn learning_rate(spec: &SftSpec, step: u64, total: u64) -> f64 {
    let peak = spec.learning_rate;
    if step < spec.warmup_steps {
        return peak * (step + 1) as f64 / spec.warmup_steps as f64;
    }
    let span = total.saturating_sub(spec.warmup_steps).max(1) as f64;
    let t = ((step - spec.warmup_steps) as f64 / span).min(1.0);
    let cos = 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
    peak * (spec.final_lr_ratio + (1.0 - spec.final_lr_ratio) * cos)
}

/// `0..n` in a seeded order, different per epoch (Fisher-Yates on ChaCha8).
fn shuffled(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(
        seed ^ 0x5f7_0000_0000 ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// `tokenizer_config.json` and `preprocessor_config.json` beside the weights,
/// so transformers' `AutoTokenizer` and `CLIPImageProcessor` load the directory.
fn write_side_files(
    dir: &Path,
    cfg: &LlavaConfig,
    verifier_dir: &Path,
    norm: &PixelNorm,
) -> Result<()> {
    let tok_cfg = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": lm_tokenizer::BOS,
        "eos_token": lm_tokenizer::EOS,
        "unk_token": lm_tokenizer::UNK,
        "pad_token": lm_tokenizer::PAD,
        "extra_special_tokens": {"image_token": lm_tokenizer::IMAGE},
        "add_bos_token": true,
        "model_max_length": cfg.text.max_position_embeddings,
        "padding_side": "left",
    });
    write_json(&dir.join("tokenizer_config.json"), &tok_cfg)?;
    let src = verifier_dir.join("preprocessor_config.json");
    let pre = if src.exists() {
        read_json(&src)?
    } else {
        let s = cfg.vision.image_size;
        json!({
            "image_processor_type": "CLIPImageProcessor",
            "do_resize": true, "size": {"shortest_edge": s}, "resample": 3,
            "do_center_crop": true, "crop_size": {"height": s, "width": s},
            "do_rescale": true, "rescale_factor": 1.0 / 255.0,
            "do_normalize": true, "image_mean": norm.mean, "image_std": norm.std,
            "do_convert_rgb": true,
        })
    };
    write_json(&dir.join("preprocessor_config.json"), &pre)
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    lm_tokenizer::write_atomic(path, serde_json::to_string_pretty(v)?.as_bytes())
}

/// A fresh, empty staging directory beside `out`.
fn staging_dir(out: &Path) -> Result<PathBuf> {
    let name = out
        .file_name()
        .with_context(|| format!("{} has no directory name", out.display()))?;
    let stage = out.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    if stage.exists() {
        std::fs::remove_dir_all(&stage)
            .with_context(|| format!("removing the stale {}", stage.display()))?;
    }
    std::fs::create_dir_all(&stage).with_context(|| format!("creating {}", stage.display()))?;
    Ok(stage)
}

/// Moves `stage` to `out`, replacing an older `out` only once the new one is complete.
fn replace_dir(stage: &Path, out: &Path) -> Result<()> {
    let old = stage.with_extension("old");
    if out.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        }
        std::fs::rename(out, &old).with_context(|| format!("moving {} aside", out.display()))?;
    }
    std::fs::rename(stage, out)
        .with_context(|| format!("moving {} to {}", stage.display(), out.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}

/// Greedy captions of some images and how they compare with the ground truth.
#[derive(Debug, Clone)]
pub struct GreedyCheck {
    /// Images captioned.
    pub images: usize,
    /// Share of present classes the captions name.
    pub recall: f64,
    /// Share of named classes that are absent (CHAIR_i over classes).
    pub chair_i: f64,
    /// Share of captions naming an absent class (CHAIR_s).
    pub chair_s: f64,
    /// Distinct classes named per caption.
    pub objects_per_caption: f64,
    /// Absent classes named while their pair partner is present (the caption bias).
    pub partner_hallucinations: usize,
    /// All absent classes named.
    pub hallucinations: usize,
    /// Some (caption, true objects) pairs.
    pub examples: Vec<(String, String)>,
}

/// Captions images `0..n` of `split` greedily with the model in `model_dir` and
/// scores the class names they contain against the world's object sets (plain
/// word matching of names and plurals; the demo's evaluation uses reward-core).
pub fn greedy_check(
    world: &World,
    model_dir: &Path,
    split: Split,
    n: usize,
) -> Result<GreedyCheck> {
    let opts = LoadOptions {
        device: Device::Cpu,
        kind: Kind::Float,
        lora: None,
        value_head: false,
    };
    let model = LlavaModel::load(model_dir, &opts)?;
    let tok = LlavaTokenizer::from_file(
        &model_dir.join("tokenizer.json"),
        model.config.image_token_id,
        model.config.image_tokens_per_image() as usize,
    )?;
    let norm = PixelNorm::from_dir(model_dir)?;
    let prompt = tok.encode_chat(&[Message::user(PROMPT, 1)], true)?;
    let mut cfg = SamplingConfig::greedy(&model, 48);
    cfg.seed = Some(0);
    let samples = world.generate(split, 0..n as u64, 2);
    let mut check = GreedyCheck {
        images: samples.len(),
        recall: 0.0,
        chair_i: 0.0,
        chair_s: 0.0,
        objects_per_caption: 0.0,
        partner_hallucinations: 0,
        hallucinations: 0,
        examples: Vec::new(),
    };
    let (mut present, mut found, mut named, mut bad_caps) = (0usize, 0usize, 0usize, 0usize);
    for chunk in samples.chunks(32) {
        let refs: Vec<&Sample> = chunk.iter().collect();
        let pixels = norm.pixel_values(&refs)?;
        let prompts = vec![prompt.clone(); chunk.len()];
        let outs = generate(&model, &prompts, Some(&pixels), &cfg)?;
        for (s, out) in chunk.iter().zip(outs) {
            let text = tok.decode(&out)?;
            let words = format!(
                " {} ",
                text.split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let mut any_bad = false;
            for (k, c) in world.classes().iter().enumerate() {
                let said = words.contains(&format!(" {} ", c.name))
                    || words.contains(&format!(" {} ", c.plural));
                let id = crate::world::ClassId(k as u16);
                let here = s.annotation.contains(id);
                present += here as usize;
                found += (here && said) as usize;
                named += said as usize;
                if said && !here {
                    any_bad = true;
                    check.hallucinations += 1;
                    if world
                        .partner(id)
                        .is_some_and(|(p, _)| s.annotation.contains(p))
                    {
                        check.partner_hallucinations += 1;
                    }
                }
            }
            bad_caps += any_bad as usize;
            if check.examples.len() < 8 {
                let truth: Vec<String> = s
                    .objects()
                    .iter()
                    .map(|o| format!("{}x{}", o.count, world.class_name(o.class)))
                    .collect();
                check.examples.push((text, truth.join(", ")));
            }
        }
    }
    let n = check.images.max(1) as f64;
    check.recall = found as f64 / present.max(1) as f64;
    check.chair_i = check.hallucinations as f64 / named.max(1) as f64;
    check.chair_s = bad_caps as f64 / n;
    check.objects_per_caption = named as f64 / n;
    Ok(check)
}

//! The trainer's TOML configuration. Defaults are the paper's as method.md
//! sections 6-7 fix them (LoRA r 128 / alpha 256 on every linear layer of the
//! language model, lr 5e-7, beta 0.2, margin 10, gamma 1, lambda 0.95, clip 0.2,
//! value coefficient 0.1, 4 PPO epochs, first 8k LLaVA-Instruct samples).
//! Unknown keys are errors; [`TrainConfig::validate`] names the bad field.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use reward_core::{PpoConfig, RewardConfig};
use serde::{Deserialize, Serialize};

/// The whole configuration; every table is optional in the file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The policy model.
    pub model: ModelConfig,
    /// Training prompts and ground truth.
    pub data: DataConfig,
    /// Verifier embedding caches.
    pub verifier: VerifierConfig,
    /// Token reward (reward-core, method.md section 6).
    pub reward: RewardConfig,
    /// PPO math (reward-core, method.md section 7).
    pub ppo: PpoConfig,
    /// Optimiser, batches, sampling, checkpoints.
    pub train: OptimConfig,
}

/// The LLaVA checkpoint and the adapters added to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Directory with config.json, safetensors and tokenizer.json.
    pub path: PathBuf,
    /// tokenizer.json; default `<path>/tokenizer.json`.
    pub tokenizer: Option<PathBuf>,
    /// LoRA rank; default 128.
    pub lora_r: i64,
    /// LoRA alpha; default 256.
    pub lora_alpha: f64,
    /// LoRA dropout; default 0: off, as TRL v2 turns dropout off for PPO so the
    /// first minibatch sees ratios of exactly 1.
    pub lora_dropout: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: PathBuf::new(),
            tokenizer: None,
            lora_r: 128,
            lora_alpha: 256.0,
            lora_dropout: 0.0,
        }
    }
}

/// LLaVA-Instruct-style prompts and COCO annotations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// LLaVA-Instruct JSON (an array) or JSON lines.
    pub instruct: PathBuf,
    /// Directory the samples' `image` paths are relative to.
    pub image_root: PathBuf,
    /// COCO `instances_*.json`.
    pub instances: PathBuf,
    /// COCO `captions_*.json`.
    pub captions: PathBuf,
    /// First N samples; default 8000 (the paper).
    pub max_samples: usize,
    /// Skip and count bad samples instead of failing; default false.
    pub skip_bad_samples: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            instruct: PathBuf::new(),
            image_root: PathBuf::new(),
            instances: PathBuf::new(),
            captions: PathBuf::new(),
            max_samples: 8000,
            skip_bad_samples: false,
        }
    }
}

/// The CPU verifier's embedding caches (`fisao embed vocab|images`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifierConfig {
    /// Vocabulary (surface form) embedding cache.
    pub text_cache: PathBuf,
    /// Image embedding cache.
    pub image_cache: PathBuf,
    /// Score function: cosine100 (default), dot or clipscore.
    pub score: String,
    /// Object-level baseline.json (eq. 7) from `fisao-train baseline`.
    pub baseline: PathBuf,
    /// Sentence-level baseline (the `sentence` ablation).
    pub sentence_baseline: PathBuf,
    /// CLIP checkpoint directory; only the sentence-level scores need it.
    pub clip_model: Option<PathBuf>,
    /// Verifier name recorded in baseline.json; default openai/clip-vit-large-patch14-336.
    pub model_name: String,
}

// By hand, not derived: a `[verifier]` table that sets only the caches
// must keep the default score and name (serde fills missing fields from
// this impl), not empty strings.
impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            text_cache: PathBuf::new(),
            image_cache: PathBuf::new(),
            score: "cosine100".into(),
            baseline: PathBuf::new(),
            sentence_baseline: PathBuf::new(),
            clip_model: None,
            model_name: "openai/clip-vit-large-patch14-336".into(),
        }
    }
}

/// Optimiser, batching, sampling and bookkeeping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate; default 5e-7 (LLaVA-1.5 7B).
    pub learning_rate: f64,
    /// AdamW decoupled weight decay; default 0.
    pub weight_decay: f64,
    /// Adam beta1; default 0.9.
    pub adam_beta1: f64,
    /// Adam beta2; default 0.999.
    pub adam_beta2: f64,
    /// Adam epsilon; default 1e-8.
    pub adam_eps: f64,
    /// Global gradient-norm clip; default 1.0.
    pub max_grad_norm: f64,
    /// Linear warmup, in optimiser steps; default 10.
    pub warmup_steps: u64,
    /// After warmup: `linear` or `cosine` decay to 0 over the run, or `constant`.
    pub decay: String,
    /// Prompts per rollout batch; default 8.
    pub batch_size: usize,
    /// Sequences per PPO minibatch; default 4.
    pub minibatch_size: usize,
    /// New tokens per response; default 256.
    pub max_new_tokens: i64,
    /// Sampling temperature; default 1.0.
    pub temperature: f64,
    /// Nucleus mass; default 1.0 (off).
    pub top_p: f64,
    /// Most likely tokens kept when sampling; default 0 (off).
    pub top_k: i64,
    /// Seed of libtorch and the sampler; default 0.
    pub seed: u64,
    /// Passes over the data; default 1 (the paper).
    pub passes: u64,
    /// Checkpoint every N rollout batches; default 50.
    pub checkpoint_every: u64,
    /// Output directory (checkpoints, metrics.jsonl).
    pub out_dir: PathBuf,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            learning_rate: 5e-7,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            max_grad_norm: 1.0,
            warmup_steps: 10,
            decay: "linear".into(),
            batch_size: 8,
            minibatch_size: 4,
            max_new_tokens: 256,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            passes: 1,
            checkpoint_every: 50,
            out_dir: PathBuf::from("runs/fisao"),
        }
    }
}

impl TrainConfig {
    /// Reads and validates a TOML file; errors name the file and the field.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("config {}", path.display()))
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: TrainConfig = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The resolved configuration as TOML (printed at start, stored in checkpoints).
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Rejects out-of-range values; the error names the field.
    pub fn validate(&self) -> Result<()> {
        self.reward
            .validate()
            .map_err(|e| anyhow::anyhow!("reward: {e}"))?;
        self.ppo
            .validate()
            .map_err(|e| anyhow::anyhow!("ppo: {e}"))?;
        let (m, t) = (&self.model, &self.train);
        positive("model.lora_r", m.lora_r as f64)?;
        positive("model.lora_alpha", m.lora_alpha)?;
        in_range("model.lora_dropout", m.lora_dropout, 0.0, 0.999_999)?;
        positive("train.learning_rate", t.learning_rate)?;
        in_range("train.weight_decay", t.weight_decay, 0.0, 1.0)?;
        in_range("train.adam_beta1", t.adam_beta1, 0.0, 0.999_999)?;
        in_range("train.adam_beta2", t.adam_beta2, 0.0, 0.999_999_999)?;
        positive("train.adam_eps", t.adam_eps)?;
        positive("train.max_grad_norm", t.max_grad_norm)?;
        positive("train.batch_size", t.batch_size as f64)?;
        positive("train.minibatch_size", t.minibatch_size as f64)?;
        if t.batch_size % t.minibatch_size != 0 {
            bail!(
                "train.minibatch_size = {} must divide train.batch_size = {}",
                t.minibatch_size,
                t.batch_size
            );
        }
        positive("train.max_new_tokens", t.max_new_tokens as f64)?;
        positive("train.temperature", t.temperature)?;
        in_range("train.top_p", t.top_p, f64::MIN_POSITIVE, 1.0)?;
        if t.top_k < 0 {
            bail!(
                "train.top_k = {} is out of range: expected 0 (off) or more",
                t.top_k
            );
        }
        positive("train.passes", t.passes as f64)?;
        positive("train.checkpoint_every", t.checkpoint_every as f64)?;
        positive("data.max_samples", self.data.max_samples as f64)?;
        if !["linear", "cosine", "constant"].contains(&t.decay.as_str()) {
            bail!(
                "train.decay = {:?}: expected linear, cosine or constant",
                t.decay
            );
        }
        if !["cosine100", "dot", "clipscore"].contains(&self.verifier.score.as_str()) {
            bail!(
                "verifier.score = {:?}: expected cosine100, dot or clipscore",
                self.verifier.score
            );
        }
        Ok(())
    }

    /// Learning rate at optimiser step `step` of `total`: linear warmup, then the decay.
    pub fn learning_rate(&self, step: u64, total: u64) -> f64 {
        let t = &self.train;
        if step < t.warmup_steps {
            return t.learning_rate * (step + 1) as f64 / t.warmup_steps as f64;
        }
        let span = total.saturating_sub(t.warmup_steps).max(1) as f64;
        let done = ((step - t.warmup_steps) as f64 / span).min(1.0);
        match t.decay.as_str() {
            "linear" => t.learning_rate * (1.0 - done),
            "cosine" => t.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * done).cos()),
            _ => t.learning_rate,
        }
    }
}

fn positive(field: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        bail!("{field} = {v} is out of range: expected a finite number > 0");
    }
    Ok(())
}

fn in_range(field: &str, v: f64, lo: f64, hi: f64) -> Result<()> {
    if !(v.is_finite() && v >= lo && v <= hi) {
        bail!("{field} = {v} is out of range: expected a number in [{lo}, {hi}]");
    }
    Ok(())
}

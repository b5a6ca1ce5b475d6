//! One PPO variant of the demo (`none`, `sentence` or `token` reward, method.md
//! section 6) trained with the real trainer (`trainer::ppo::Trainer`) on the
//! SFT model with fresh LoRA adapters, with checkpoint selection on the
//! validation split: every `eval_every` rollout batches the adapters are
//! evaluated by greedy captioning of the validation images and the best
//! object-level F1 is kept (never the test images; F1 punishes both
//! hallucinating and naming nothing). Every variant gets the same number of
//! rollout batches, so the same compute budget.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use reward_core::reward::{Repeats, RewardMode};
use reward_core::{Baselines, RewardConfig, TokenRewarder};
use serde::Serialize;
use tch::Tensor;

use super::eval::{Metrics, caption_all, measure};
use super::task::WorldTask;
use crate::llava::{
    DEFAULT_TARGET, LlavaModel, LoadOptions, LoraConfig, LoraTarget, SamplingConfig,
};
use crate::trainer::config::TrainConfig;
use crate::trainer::ppo::Trainer;

/// PPO settings shared by all variants.
#[derive(Clone, Debug, Serialize)]
pub struct PpoSpec {
    /// Rollout batches per variant (the compute budget): one pass over
    /// `batches * batch_size` training images, each prompted once.
    pub batches: u64,
    /// Prompts per rollout batch.
    pub batch_size: usize,
    /// Sequences per PPO minibatch.
    pub minibatch_size: usize,
    /// Validation evaluations happen every this many batches.
    pub eval_every: u64,
    /// Peak learning rate of the adapters.
    pub learning_rate: f64,
    /// LoRA rank (alpha = 2 r, as the paper's 128 / 256).
    pub lora_r: i64,
    /// KL coefficient beta.
    pub beta: f64,
    /// The neutral band width as a fraction of `s_c - s_h` (the demo's
    /// reading of the margin; absolute units depend on the verifier's
    /// learned temperature).
    pub margin_fraction: f64,
    /// Sampling temperature of rollouts.
    pub temperature: f64,
    /// Tokens per response.
    pub max_new_tokens: i64,
    /// Seed of the trainer.
    pub seed: u64,
    /// The repeated-mentions rule of the token reward (method.md section 6).
    pub repeats: Repeats,
    /// eq. 8's `s_min` / `s_max` at this many standard deviations beyond the
    /// hallucinated / correct class means of the variant's baselines instead
    /// of the observed extremes (`None`: the extremes, method.md's default).
    pub score_range_sd: Option<f64>,
}

/// What a variant's training did.
#[derive(Clone, Debug, Serialize)]
pub struct VariantReport {
    /// `ppo-none`, `ppo-sentence` or `fisao-token`.
    pub name: String,
    /// Rollout batches run.
    pub batches: u64,
    /// The batch whose adapters were kept.
    pub selected_batch: u64,
    /// Validation metrics at each evaluation: (batch, metrics).
    pub validation: Vec<(u64, Metrics)>,
    /// Mean reward of the last rollout batch.
    pub last_reward: f64,
    /// Mean KL of the last rollout batch.
    pub last_kl: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The variant name of a reward mode.
pub fn variant_name(mode: RewardMode) -> &'static str {
    match mode {
        RewardMode::KlOnly => "ppo-none",
        RewardMode::Sentence => "ppo-sentence",
        RewardMode::Token => "fisao-token",
    }
}

/// The SFT model with fresh adapters and a value head.
pub fn load_policy(sft_dir: &Path, spec: &PpoSpec) -> Result<LlavaModel> {
    let mut opts = LoadOptions::for_device(crate::device::default_device());
    opts.lora = Some(LoraConfig {
        r: spec.lora_r,
        alpha: 2.0 * spec.lora_r as f64,
        dropout: 0.0,
        target: LoraTarget::Regex(DEFAULT_TARGET.into()),
        use_rslora: false,
    });
    opts.value_head = true;
    LlavaModel::load(sft_dir, &opts)
}

/// The reward configuration of a variant, bands from the baselines.
pub fn reward_config(
    mode: RewardMode,
    spec: &PpoSpec,
    object: &Baselines,
    sentence: &Baselines,
) -> Result<RewardConfig> {
    let gap = |b: &Baselines| -> Result<f64> {
        let m = b.class_means().map_err(|e| anyhow!("{e}"))?;
        Ok((m.correct - m.hallucinated) * spec.margin_fraction)
    };
    let (score_min, score_max) = match (spec.score_range_sd, mode) {
        (Some(k), RewardMode::Token) => class_range(object, k)?,
        (Some(k), RewardMode::Sentence) => class_range(sentence, k)?,
        _ => (None, None),
    };
    Ok(RewardConfig {
        mode,
        margin: gap(object)?,
        sentence_margin: gap(sentence)?,
        beta: spec.beta,
        repeats: spec.repeats,
        score_min,
        score_max,
        ..RewardConfig::default()
    })
}

/// `(s_h - k sd_h, s_c + k sd_c)` of one level's baselines: a score range
/// that one outlier does not stretch.
fn class_range(b: &Baselines, k: f64) -> Result<(Option<f64>, Option<f64>)> {
    let stats = |s: &reward_core::baseline::ScoreStats, what: &str| -> Result<(f64, f64)> {
        let mean = s
            .mean()
            .with_context(|| format!("no {what} baseline scores"))?;
        let sd = s
            .std_dev()
            .with_context(|| format!("no {what} baseline spread"))?;
        Ok((mean, sd))
    };
    let (mh, sh) = stats(&b.hallucinated, "hallucinated")?;
    let (mc, sc) = stats(&b.correct, "correct")?;
    Ok((Some(mh - k * sh), Some(mc + k * sc)))
}

fn train_config(spec: &PpoSpec, reward: RewardConfig, run_dir: &Path) -> TrainConfig {
    let mut cfg = TrainConfig::default();
    cfg.reward = reward;
    let t = &mut cfg.train;
    t.learning_rate = spec.learning_rate;
    t.batch_size = spec.batch_size;
    t.minibatch_size = spec.minibatch_size;
    t.max_new_tokens = spec.max_new_tokens;
    t.temperature = spec.temperature;
    t.seed = spec.seed;
    t.passes = 1;
    t.warmup_steps = 2;
    t.checkpoint_every = spec.batches.max(1);
    t.out_dir = run_dir.to_path_buf();
    cfg
}

fn snapshot(model: &LlavaModel) -> BTreeMap<String, Tensor> {
    model
        .trainable_vs()
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.detach().copy()))
        .collect()
}

fn restore(model: &LlavaModel, saved: &BTreeMap<String, Tensor>) -> Result<()> {
    let mut vars = model.trainable_vs().variables();
    tch::no_grad(|| {
        for (name, value) in saved {
            let v = vars
                .get_mut(name)
                .with_context(|| format!("trainable tensor {name} vanished"))?;
            v.copy_(value);
        }
        Ok(())
    })
}

/// Greedy validation metrics of the policy as it stands.
pub fn validate(
    model: &LlavaModel,
    val: &WorldTask,
    spec: &PpoSpec,
    batch: usize,
) -> Result<Metrics> {
    let greedy = SamplingConfig::greedy(model, spec.max_new_tokens).without_image_token(model);
    let caps = caption_all(model, val, &greedy, batch, &mut |_, _| {})?;
    Ok(measure(val, &caps, &|_| true))
}

/// Trains one variant and leaves the model holding the selected adapters.
#[allow(clippy::too_many_arguments)]
pub fn train_variant(
    model: &LlavaModel,
    mode: RewardMode,
    spec: &PpoSpec,
    baselines: (&Baselines, &Baselines),
    train: &WorldTask,
    val: &WorldTask,
    run_dir: &Path,
    progress: &mut dyn FnMut(u64, u64, &str),
) -> Result<VariantReport> {
    let start = std::time::Instant::now();
    let reward = reward_config(mode, spec, baselines.0, baselines.1)?;
    let level = match mode {
        RewardMode::Token => Some(baselines.0),
        RewardMode::Sentence => Some(baselines.1),
        RewardMode::KlOnly => None,
    };
    let rewarder = TokenRewarder::from_baselines(reward.clone(), level)
        .map_err(|e| anyhow!("{}: reward: {e}", variant_name(mode)))?;
    let needed = spec.batches as usize * spec.batch_size;
    if train.samples().len() != needed {
        bail!(
            "{}: {} PPO prompts, expected batches x batch_size = {needed}",
            variant_name(mode),
            train.samples().len()
        );
    }
    let cfg = train_config(spec, reward, run_dir);
    let tok = train.tokenizer().inner().clone();
    let mut trainer = Trainer::new(cfg, model, &tok, train, rewarder, run_dir)?;
    let eval_batch = spec.batch_size.max(32);
    let mut best: Option<(f64, u64, BTreeMap<String, Tensor>)> = None;
    let mut validation = Vec::new();
    let (mut last_reward, mut last_kl) = (0.0, 0.0);
    while trainer.state.batches_done < spec.batches {
        let step = spec
            .eval_every
            .min(spec.batches - trainer.state.batches_done);
        trainer.run(Some(step), |m| {
            last_reward = m.reward;
            last_kl = m.kl;
            let msg = format!("reward {:.3} kl {:.4}", m.reward, m.kl);
            progress(m.batch + 1, spec.batches, &msg);
        })?;
        let done = trainer.state.batches_done;
        let m = validate(model, val, spec, eval_batch)?;
        if best.as_ref().is_none_or(|(f1, _, _)| m.f1 > *f1) {
            best = Some((m.f1, done, snapshot(model)));
        }
        validation.push((done, m));
    }
    let (_, selected_batch, saved) = best.context("no PPO batch ran (batches = 0)")?;
    restore(model, &saved)?;
    Ok(VariantReport {
        name: variant_name(mode).into(),
        batches: trainer.state.batches_done,
        selected_batch,
        validation,
        last_reward,
        last_kl,
        seconds: start.elapsed().as_secs_f64(),
    })
}

//! One PPO variant of the demo (`none`, `sentence` or `token` reward, method.md
//! section 6) trained with the real trainer (`trainer::ppo::Trainer`) on the
//! SFT model with fresh LoRA adapters, with checkpoint selection on the
//! validation split: every `eval_every` rollout batches the adapters are
//! evaluated by greedy captioning of the validation images and the best
//! object-level F1 is kept (never the test images; F1 punishes both
//! hallucinating and naming nothing). Every variant gets the same number of
//! rollout batches, so the same compute budget.
//!
//! A variant killed part-way resumes where it stopped: the trainer
//! checkpoints at every validation point, and `progress.json` (validation
//! history, best F1) and `best-adapter.safetensors` (the kept adapters) are
//! replaced atomically after each validation. A run directory written under
//! other settings (another PPO fingerprint) is cleared and started afresh.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use reward_core::reward::{Repeats, RewardMode};
use reward_core::{Baselines, RewardConfig, TokenRewarder};
use serde::{Deserialize, Serialize};
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
    // Each level's band needs only its own baselines: a token run must not
    // fail because the sentence-level scores do not separate.
    let sentence_margin = match mode {
        RewardMode::Sentence => gap(sentence)?,
        _ => RewardConfig::default().sentence_margin,
    };
    Ok(RewardConfig {
        mode,
        margin: gap(object)?,
        sentence_margin,
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
    let mut cfg = TrainConfig {
        reward,
        ..TrainConfig::default()
    };
    let t = &mut cfg.train;
    t.learning_rate = spec.learning_rate;
    t.batch_size = spec.batch_size;
    t.minibatch_size = spec.minibatch_size;
    t.max_new_tokens = spec.max_new_tokens;
    t.temperature = spec.temperature;
    t.seed = spec.seed;
    t.passes = 1;
    t.warmup_steps = 2;
    // Checkpoints at the validation points, where `progress.json` is written.
    t.checkpoint_every = spec.eval_every.max(1);
    t.out_dir = run_dir.to_path_buf();
    cfg
}

/// Validation history of a variant's run directory, for resuming it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    /// The PPO fingerprint of the settings the run was started with.
    fingerprint: String,
    /// (batch, validation metrics) at each validation point so far.
    validation: Vec<(u64, Metrics)>,
    /// (F1, batch) of the adapters in `best-adapter.safetensors`.
    best: Option<(f64, u64)>,
    /// Mean reward and KL of the last rollout batch run.
    last: (f64, f64),
}

const PROGRESS: &str = "progress.json";
const BEST: &str = "best-adapter.safetensors";

/// The run directory's progress when it was written under `fingerprint`
/// and has a checkpoint to resume from; otherwise the directory's training
/// state is removed and a fresh progress returned.
fn open_run(run_dir: &Path, fingerprint: &str) -> Result<(Progress, bool)> {
    let path = run_dir.join(PROGRESS);
    let stored = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Progress>(&t).ok())
        .filter(|p| p.fingerprint == fingerprint);
    let has_checkpoint = crate::trainer::checkpoint::latest(run_dir)
        .ok()
        .flatten()
        .is_some();
    if let (Some(p), true) = (stored, has_checkpoint) {
        return Ok((p, true));
    }
    for stale in ["checkpoints", "selected-adapter"] {
        let d = run_dir.join(stale);
        if d.exists() {
            std::fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
        }
    }
    for stale in [PROGRESS, BEST, "metrics.jsonl"] {
        let f = run_dir.join(stale);
        if f.exists() {
            std::fs::remove_file(&f).with_context(|| format!("removing {}", f.display()))?;
        }
    }
    let fresh = Progress {
        fingerprint: fingerprint.to_string(),
        ..Progress::default()
    };
    Ok((fresh, false))
}

/// Writes `tensors` to `path` through a temporary file and a rename.
fn write_best(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let tmp: PathBuf = path.with_extension("safetensors.tmp");
    let list: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.shallow_clone()))
        .collect();
    crate::llava::write_safetensors(&list, &tmp)?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

fn read_best(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let list =
        Tensor::read_safetensors(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(list.into_iter().collect())
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
/// `fingerprint` names the settings: a run directory holding a run of the
/// same fingerprint is resumed from its last validation point.
#[allow(clippy::too_many_arguments)]
pub fn train_variant(
    model: &LlavaModel,
    mode: RewardMode,
    spec: &PpoSpec,
    baselines: (&Baselines, &Baselines),
    train: &WorldTask,
    val: &WorldTask,
    run_dir: &Path,
    fingerprint: &str,
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
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let (mut state, resumable) = open_run(run_dir, fingerprint)?;
    let mut trainer = Trainer::new(cfg, model, &tok, train, rewarder, run_dir)?;
    let mut best = None;
    if resumable && trainer.resume()? {
        if state.best.is_some() {
            best = Some(read_best(&run_dir.join(BEST))?);
        }
        eprintln!(
            "{:>14} resumed at batch {} of {} from {}",
            variant_name(mode),
            trainer.state.batches_done,
            spec.batches,
            run_dir.display()
        );
    }
    let eval_batch = spec.batch_size.max(32);
    loop {
        let done = trainer.state.batches_done;
        let validated = state.validation.last().map_or(0, |(b, _)| *b);
        if done > validated {
            let m = validate(model, val, spec, eval_batch)?;
            if state.best.is_none_or(|(f1, _)| m.f1 > f1) {
                let snap = snapshot(model);
                write_best(&run_dir.join(BEST), &snap)?;
                best = Some(snap);
                state.best = Some((m.f1, done));
            }
            state.validation.push((done, m));
            super::report::write_atomic(
                &run_dir.join(PROGRESS),
                &serde_json::to_string_pretty(&state)?,
            )?;
        }
        if done >= spec.batches {
            break;
        }
        let step = spec.eval_every.min(spec.batches - done);
        trainer.run(Some(step), |m| {
            state.last = (m.reward, m.kl);
            let msg = format!("reward {:.3} kl {:.4}", m.reward, m.kl);
            progress(m.batch + 1, spec.batches, &msg);
        })?;
    }
    let (Some(saved), Some((_, selected_batch))) = (best, state.best) else {
        bail!("no PPO batch ran (batches = 0)");
    };
    restore(model, &saved)?;
    Ok(VariantReport {
        name: variant_name(mode).into(),
        batches: trainer.state.batches_done,
        selected_batch,
        validation: state.validation,
        last_reward: state.last.0,
        last_kl: state.last.1,
        seconds: start.elapsed().as_secs_f64(),
    })
}

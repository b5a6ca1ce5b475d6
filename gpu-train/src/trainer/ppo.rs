//! The PPO loop (FiSAO eq. 9-10, method.md section 7; TRL `PPOTrainer.step`):
//! per rollout batch, collect (rollout.rs), GAE with whitened advantages
//! (losses.rs, mirroring reward-core), then `epochs` passes of shuffled
//! minibatches with the clipped policy loss + `vf_coef` * clipped value loss,
//! AdamW over the trainable `VarStore` only, global gradient clipping and a
//! warmup + decay schedule.
//!
//! Determinism and resume: batch `i`'s generators (libtorch's global one, the
//! sampler's and the minibatch shuffle's) are all seeded from `(seed, i)`, so
//! the whole RNG state at a batch boundary is the seed and the batch index,
//! both stored in every checkpoint. A run resumed from batch `i` therefore
//! computes exactly what the uninterrupted run computes from batch `i` on.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use reward_core::reward::TokenRewarder;
use tch::{Kind, Tensor};
use tokenizers::Tokenizer;

use super::checkpoint::{self, CheckpointParts, TrainState};
use super::config::TrainConfig;
use super::losses;
use super::metrics::{BatchMetrics, MetricsWriter, Timings};
use super::optim::{AdamW, AdamWConfig};
use super::rollout::{self, Rollout, Task};
use crate::llava::{Batch, LlavaModel, SamplerRng, SamplingConfig};

/// SplitMix64 finaliser: batch `i`'s seed from the run seed.
pub fn batch_seed(seed: u64, batch: u64) -> u64 {
    let mut z = seed
        ^ batch
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(0x6A09_E667_F3BC_C909);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A training run over one policy and one task.
pub struct Trainer<'a> {
    cfg: TrainConfig,
    model: &'a LlavaModel,
    tokenizer: &'a Tokenizer,
    task: &'a dyn Task,
    rewarder: TokenRewarder,
    opt: AdamW,
    /// Where the run stands.
    pub state: TrainState,
    run_dir: PathBuf,
    metrics: Option<MetricsWriter>,
    /// Never stop a response at EOS (fixed-length rollouts for benchmarks).
    pub suppress_eos: bool,
}

impl<'a> Trainer<'a> {
    /// A fresh run; `run_dir` receives metrics.jsonl and checkpoints.
    pub fn new(
        cfg: TrainConfig,
        model: &'a LlavaModel,
        tokenizer: &'a Tokenizer,
        task: &'a dyn Task,
        rewarder: TokenRewarder,
        run_dir: &Path,
    ) -> Result<Self> {
        cfg.validate()?;
        if task.len() < cfg.train.batch_size {
            bail!(
                "{} usable samples are fewer than train.batch_size = {}",
                task.len(),
                cfg.train.batch_size
            );
        }
        let unused = task.len() % cfg.train.batch_size;
        if unused > 0 {
            // Each pass runs whole batches only (as TRL's PPO dataloader does).
            tracing::warn!(
                "{} samples in batches of {}: the last {unused} of each pass are not used",
                task.len(),
                cfg.train.batch_size
            );
        }
        let params = model.trainable_vs().variables().into_iter().collect();
        let t = &cfg.train;
        let opt = AdamW::new(
            params,
            AdamWConfig {
                beta1: t.adam_beta1,
                beta2: t.adam_beta2,
                eps: t.adam_eps,
                weight_decay: t.weight_decay,
            },
        );
        std::fs::create_dir_all(run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
        let state = TrainState {
            seed: t.seed,
            ..Default::default()
        };
        Ok(Trainer {
            cfg,
            model,
            tokenizer,
            task,
            rewarder,
            opt,
            state,
            run_dir: run_dir.to_path_buf(),
            metrics: None,
            suppress_eos: false,
        })
    }

    /// Continues from the run's latest checkpoint, if any; returns whether it did.
    pub fn resume(&mut self) -> Result<bool> {
        let Some(dir) = checkpoint::latest(&self.run_dir)? else {
            return Ok(false);
        };
        let (state, opt_state, config) = checkpoint::load(&dir, self.model)?;
        let stored: TrainConfig =
            toml::from_str(&config).with_context(|| format!("{}/config.toml", dir.display()))?;
        if stored != self.cfg {
            tracing::warn!(
                "the configuration differs from the checkpoint's; continuing with the new one"
            );
        }
        self.opt.load_state(&opt_state)?;
        // Batches logged after this checkpoint will run again.
        super::metrics::truncate_metrics(&self.run_dir.join("metrics.jsonl"), state.batches_done)?;
        self.state = state;
        tracing::info!(
            "resumed from {} at batch {}",
            dir.display(),
            self.state.batches_done
        );
        Ok(true)
    }

    /// Rollout batches in the whole run.
    pub fn total_batches(&self) -> u64 {
        (self.task.len() / self.cfg.train.batch_size) as u64 * self.cfg.train.passes
    }

    /// Optimiser steps in the whole run (for the schedule).
    pub fn total_steps(&self) -> u64 {
        let t = &self.cfg.train;
        self.total_batches()
            * u64::from(self.cfg.ppo.epochs)
            * (t.batch_size / t.minibatch_size) as u64
    }

    /// Samples `[start, start + batch)` of the current pass.
    fn batch_indices(&self, batch: u64) -> Vec<usize> {
        let b = self.cfg.train.batch_size;
        let per_pass = (self.task.len() / b) as u64;
        let start = (batch % per_pass) as usize * b;
        (start..start + b).collect()
    }

    /// Runs batches until the run is done or `stop_after` more batches ran.
    pub fn run(
        &mut self,
        stop_after: Option<u64>,
        mut on_batch: impl FnMut(&BatchMetrics),
    ) -> Result<()> {
        if self.metrics.is_none() {
            self.metrics = Some(MetricsWriter::append(&self.run_dir.join("metrics.jsonl"))?);
        }
        let total = self.total_batches();
        let mut ran = 0;
        while self.state.batches_done < total && stop_after.is_none_or(|n| ran < n) {
            let m = self.step()?;
            if let Some(w) = self.metrics.as_mut() {
                w.write(&m)?;
            }
            on_batch(&m);
            ran += 1;
            let done = self.state.batches_done;
            if done % self.cfg.train.checkpoint_every == 0 || done == total {
                self.save()?;
            }
        }
        Ok(())
    }

    /// Writes a checkpoint of the current state.
    pub fn save(&self) -> Result<PathBuf> {
        let config_toml = self.cfg.to_toml()?;
        let parts = CheckpointParts {
            state: &self.state,
            config_toml: &config_toml,
            optimizer: self.opt.state(),
        };
        let dir = checkpoint::save(&self.run_dir, self.model, parts)?;
        tracing::info!("checkpoint {}", dir.display());
        Ok(dir)
    }

    /// One PPO iteration: rollout, advantages, epochs of minibatch updates.
    pub fn step(&mut self) -> Result<BatchMetrics> {
        let batch = self.state.batches_done;
        let seed = batch_seed(self.state.seed, batch);
        tch::manual_seed(seed as i64);
        let mut timings = Timings::default();
        let indices = self.batch_indices(batch);
        let sampling = self.sampling(seed);
        let ro = rollout::collect(
            self.model,
            self.tokenizer,
            self.task,
            &indices,
            &sampling,
            &self.rewarder,
            &mut timings,
        )?;
        let t = Instant::now();
        let p = &self.cfg.ppo;
        let (adv, returns) = losses::batch_advantages(
            &ro.values,
            &ro.rewards,
            &ro.mask,
            p.gamma,
            p.lam,
            p.whiten_eps,
        )?;
        let upd = self.update(&ro, &adv, &returns, seed)?;
        timings.update += t.elapsed().as_secs_f64();
        self.state.batches_done += 1;
        Ok(self.batch_metrics(batch, &ro, upd, timings))
    }

    fn sampling(&self, seed: u64) -> SamplingConfig {
        let mut s = SamplingConfig::greedy(self.model, self.cfg.train.max_new_tokens)
            .without_image_token(self.model);
        s.temperature = self.cfg.train.temperature;
        s.top_p = self.cfg.train.top_p;
        s.top_k = self.cfg.train.top_k;
        s.seed = Some(seed);
        if self.suppress_eos {
            s.eos_token_ids.clear();
        }
        s
    }

    fn update(
        &mut self,
        ro: &Rollout,
        adv: &Tensor,
        returns: &Tensor,
        seed: u64,
    ) -> Result<UpdateStats> {
        let (b, mb) = (self.cfg.train.batch_size, self.cfg.train.minibatch_size);
        let mut shuffle = SamplerRng::new(seed ^ 0x005E_ED0F_5E1F);
        let mut acc = UpdateStats::default();
        let total_steps = self.total_steps();
        for _epoch in 0..self.cfg.ppo.epochs {
            let order = permutation(b, &mut shuffle);
            for chunk in order.chunks(mb) {
                let idx = Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>())
                    .to(ro.input_ids.device());
                let lr = self.cfg.learning_rate(self.opt.steps(), total_steps);
                let s = self.minibatch(ro, adv, returns, &idx)?;
                let loss = &s.0 + &s.1 * self.cfg.ppo.vf_coef;
                self.opt.zero_grad();
                loss.backward();
                acc.grad_norm = self.opt.clip_grad_norm(self.cfg.train.max_grad_norm);
                self.opt.step(lr);
                acc.lr = lr;
                acc.add(&s.2);
            }
        }
        self.state.optimizer_steps = self.opt.steps();
        Ok(acc.finish())
    }

    /// Losses of one minibatch: (policy loss, value loss, diagnostics).
    fn minibatch(
        &self,
        ro: &Rollout,
        adv: &Tensor,
        returns: &Tensor,
        idx: &Tensor,
    ) -> Result<(Tensor, Tensor, StepStats)> {
        let sel = |t: &Tensor| t.index_select(0, idx);
        let ids = sel(&ro.input_ids);
        let mask2d = sel(&ro.attention_mask);
        let pixels = ro.pixel_values.as_ref().map(sel);
        let batch = Batch {
            input_ids: &ids,
            attention_mask: Some(&mask2d),
            pixel_values: pixels.as_ref(),
        };
        let train = self.cfg.model.lora_dropout > 0.0;
        let out = self.model.forward(&batch, train)?;
        let (p0, r) = (ro.prompt_width - 1, ro.mask.size()[1]);
        let logits = out.logits.narrow(1, p0, r);
        let target = ids.narrow(1, p0 + 1, r).unsqueeze(-1);
        let new_lp = logits
            .log_softmax(-1, Kind::Float)
            .gather(-1, &target, false)
            .squeeze_dim(-1);
        let values = out
            .values
            .context("the policy has no value head")?
            .narrow(1, p0, r)
            .to_kind(Kind::Float);
        let mask = sel(&ro.mask);
        let pl = losses::policy_loss(
            &new_lp,
            &sel(&ro.logprobs),
            &sel(adv),
            &mask,
            self.cfg.ppo.cliprange,
        )?;
        let vl = losses::value_loss(
            &values,
            &sel(&ro.values),
            &sel(returns),
            &mask,
            self.cfg.ppo.cliprange_value,
        )?;
        let entropy = losses::masked_entropy(&logits.detach(), &mask)?;
        let stats = StepStats {
            policy_loss: pl.loss.double_value(&[]),
            value_loss: vl.loss.double_value(&[]),
            clip_frac: pl.clip_frac,
            approx_kl: pl.approx_kl,
            value_clip_frac: vl.clip_frac,
            entropy,
        };
        Ok((pl.loss, vl.loss, stats))
    }

    fn batch_metrics(
        &self,
        batch: u64,
        ro: &Rollout,
        u: UpdateStats,
        seconds: Timings,
    ) -> BatchMetrics {
        let n = ro.summaries.len().max(1) as f64;
        let sum = |f: fn(&reward_core::reward::RewardSummary) -> f64| {
            ro.summaries.iter().map(f).sum::<f64>() / n
        };
        let mentions: usize = ro.summaries.iter().map(|s| s.mentions).sum();
        let negative: usize = ro.summaries.iter().map(|s| s.negative).sum();
        let repeats: usize = ro.summaries.iter().map(|s| s.repeats).sum();
        let rejected: usize = ro.summaries.iter().map(|s| s.rejected_first).sum();
        BatchMetrics {
            batch,
            optimizer_steps: self.state.optimizer_steps,
            learning_rate: u.lr,
            reward: sum(|s| s.total),
            object_reward: sum(|s| s.object_total),
            kl: sum(|s| s.kl_total),
            clip_frac: u.mean.clip_frac,
            approx_kl: u.mean.approx_kl,
            policy_loss: u.mean.policy_loss,
            value_loss: u.mean.value_loss,
            value_clip_frac: u.mean.value_clip_frac,
            entropy: u.mean.entropy,
            mentions: mentions as u64,
            repeats: repeats as u64,
            rejected_first_rate: if mentions > repeats {
                rejected as f64 / (mentions - repeats) as f64
            } else {
                0.0
            },
            hallucination_rate: if mentions == 0 {
                0.0
            } else {
                negative as f64 / mentions as f64
            },
            response_tokens: ro.lengths.iter().sum::<usize>() as f64 / n,
            grad_norm: u.grad_norm,
            skipped_samples: self.state.skipped_samples,
            seconds,
        }
    }
}

/// Diagnostics of one optimiser step.
#[derive(Clone, Copy, Debug, Default)]
struct StepStats {
    policy_loss: f64,
    value_loss: f64,
    clip_frac: f64,
    approx_kl: f64,
    value_clip_frac: f64,
    entropy: f64,
}

#[derive(Default)]
struct UpdateStats {
    mean: StepStats,
    steps: u64,
    grad_norm: f64,
    lr: f64,
}

impl UpdateStats {
    fn add(&mut self, s: &StepStats) {
        let m = &mut self.mean;
        m.policy_loss += s.policy_loss;
        m.value_loss += s.value_loss;
        m.clip_frac += s.clip_frac;
        m.approx_kl += s.approx_kl;
        m.value_clip_frac += s.value_clip_frac;
        m.entropy += s.entropy;
        self.steps += 1;
    }

    fn finish(mut self) -> Self {
        let n = self.steps.max(1) as f64;
        let m = &mut self.mean;
        for v in [
            &mut m.policy_loss,
            &mut m.value_loss,
            &mut m.clip_frac,
            &mut m.approx_kl,
            &mut m.value_clip_frac,
            &mut m.entropy,
        ] {
            *v /= n;
        }
        self
    }
}

/// A Fisher-Yates permutation of `0..n` from the given generator.
fn permutation(n: usize, rng: &mut SamplerRng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let u = rng.uniforms(n);
    for i in (1..n).rev() {
        let j = ((u[i] * (i + 1) as f64) as usize).min(i);
        order.swap(i, j);
    }
    order
}

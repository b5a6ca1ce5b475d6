//! Per-batch training metrics as JSON lines (one object per rollout batch):
//! reward, KL, clip fraction, approximate KL, value loss, entropy, mentions and
//! the estimated hallucination rate (share of mentions the verifier puts below
//! the neutral band), plus the learning rate and timings.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One rollout batch's numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchMetrics {
    /// Rollout batch index (0-based, over the whole run).
    pub batch: u64,
    /// Optimiser steps taken so far.
    pub optimizer_steps: u64,
    /// Learning rate of the batch's last step.
    pub learning_rate: f64,
    /// Mean total reward per response (object part minus beta * KL).
    pub reward: f64,
    /// Mean object reward per response.
    pub object_reward: f64,
    /// Mean summed per-token KL estimate per response (policy vs reference).
    pub kl: f64,
    /// PPO clip fraction, averaged over minibatches and epochs.
    pub clip_frac: f64,
    /// Approximate KL between the rollout and the updated policy.
    pub approx_kl: f64,
    /// Policy loss.
    pub policy_loss: f64,
    /// Value loss (before vf_coef).
    pub value_loss: f64,
    /// Value clip fraction.
    pub value_clip_frac: f64,
    /// Mean token entropy of the policy.
    pub entropy: f64,
    /// Object mentions in the batch.
    pub mentions: u64,
    /// Repeated mentions in the batch.
    pub repeats: u64,
    /// Share of mentions with a negative reward (estimated hallucinations
    /// AND, under `repeats = penalise`, every repeat).
    pub hallucination_rate: f64,
    /// Share of first mentions of an entity with a negative reward: the
    /// verifier's hallucinations alone (absent from files written before
    /// it existed, read as 0).
    #[serde(default)]
    pub rejected_first_rate: f64,
    /// Mean response length in tokens.
    pub response_tokens: f64,
    /// Gradient norm before clipping, last step.
    pub grad_norm: f64,
    /// Samples skipped as bad so far.
    pub skipped_samples: u64,
    /// Seconds spent generating, scoring, on the reference pass and in the update.
    pub seconds: Timings,
}

/// Wall time split of one PPO iteration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Sampling responses.
    pub generation: f64,
    /// Mentions, verifier scores and token rewards.
    pub scoring: f64,
    /// Teacher-forced log-probs of the policy and the adapters-off reference, and values.
    pub reference: f64,
    /// PPO epochs.
    pub update: f64,
}

/// Appends JSON lines to `metrics.jsonl`, flushing each line so a killed run keeps them.
pub struct MetricsWriter {
    out: BufWriter<File>,
}

impl MetricsWriter {
    /// Opens `path` for appending (a resumed run continues the same file).
    pub fn append(path: &Path) -> Result<Self> {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(MetricsWriter {
            out: BufWriter::new(f),
        })
    }

    /// Writes one line.
    pub fn write(&mut self, m: &BatchMetrics) -> Result<()> {
        serde_json::to_writer(&mut self.out, m)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok(())
    }
}

/// Drops the lines of batches at or after `batches_done` from a metrics file
/// (replaced atomically), so a run resumed from an earlier checkpoint does
/// not list the batches it runs again twice. A missing file is left missing.
pub fn truncate_metrics(path: &Path, batches_done: u64) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let kept: Vec<BatchMetrics> = read_metrics(path)?
        .into_iter()
        .filter(|m| m.batch < batches_done)
        .collect();
    let mut text = String::new();
    for m in &kept {
        text += &serde_json::to_string(m)?;
        text.push('\n');
    }
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Reads a metrics file back (tests, reports); the error names the line.
pub fn read_metrics(path: &Path) -> Result<Vec<BatchMetrics>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: bad metrics line", path.display(), i + 1))
        })
        .collect()
}

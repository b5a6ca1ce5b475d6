//! Checkpoints written atomically: everything goes into a temporary folder
//! beside the target, each file is fsynced, the folder is renamed into place
//! and the parent fsynced, then `latest` (a one-line pointer, itself replaced
//! by rename) names it. A run killed at any instant leaves either the old
//! checkpoint or the new one, never half of one.
//!
//! Contents: `adapter/` (PEFT LoRA adapter + value head), `trainable.safetensors`
//! (every trainable variable, for exact resume), `optimizer.safetensors`
//! (AdamW moments), `state.json` (RNG seed, data cursor, counters) and
//! `config.toml` (the resolved configuration).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::llava::{LlavaModel, save_adapter, write_safetensors};

/// Where a run stands: enough to continue it exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainState {
    /// Rollout batches completed (also the next batch's index).
    pub batches_done: u64,
    /// Optimiser steps taken.
    pub optimizer_steps: u64,
    /// The run's seed: every batch's generators are derived from it and the batch index.
    pub seed: u64,
    /// Samples skipped as bad so far.
    pub skipped_samples: u64,
}

/// What a checkpoint holds besides the model.
pub struct CheckpointParts<'a> {
    /// The run state.
    pub state: &'a TrainState,
    /// The resolved configuration, as TOML.
    pub config_toml: &'a str,
    /// Optimiser tensors.
    pub optimizer: Vec<(String, Tensor)>,
}

/// Writes `<run>/checkpoints/batch-<n>` atomically and points `latest` at it.
pub fn save(run_dir: &Path, model: &LlavaModel, parts: CheckpointParts) -> Result<PathBuf> {
    let root = run_dir.join("checkpoints");
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let name = format!("batch-{:08}", parts.state.batches_done);
    let tmp = root.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp)?;
    if model.lora_config().is_some() {
        save_adapter(model, &tmp.join("adapter"))?;
    }
    let vars: Vec<(String, Tensor)> = model.trainable_vs().variables().into_iter().collect();
    write_safetensors(&vars, &tmp.join("trainable.safetensors"))?;
    write_safetensors(&parts.optimizer, &tmp.join("optimizer.safetensors"))?;
    fs::write(
        tmp.join("state.json"),
        serde_json::to_string_pretty(parts.state)? + "\n",
    )?;
    fs::write(tmp.join("config.toml"), parts.config_toml)?;
    sync_tree(&tmp)?;
    let dest = root.join(&name);
    if dest.exists() {
        fs::remove_dir_all(&dest)?;
    }
    fs::rename(&tmp, &dest)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    sync_dir(&root)?;
    let pointer = root.join(".latest.tmp");
    fs::write(&pointer, format!("{name}\n"))?;
    File::open(&pointer)?.sync_all()?;
    fs::rename(&pointer, root.join("latest"))?;
    sync_dir(&root)?;
    Ok(dest)
}

/// The checkpoint `latest` names, if the run has one.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>> {
    let root = run_dir.join("checkpoints");
    let pointer = root.join("latest");
    if !pointer.exists() {
        return Ok(None);
    }
    let name =
        fs::read_to_string(&pointer).with_context(|| format!("reading {}", pointer.display()))?;
    let dir = root.join(name.trim());
    if !dir.join("state.json").exists() {
        bail!(
            "{} names {}, which has no state.json",
            pointer.display(),
            dir.display()
        );
    }
    Ok(Some(dir))
}

/// What [`load`] returns: the state, the optimiser tensors by name and the
/// stored config text.
pub type Loaded = (TrainState, Vec<(String, Tensor)>, String);

/// Loads a checkpoint into `model` (trainable variables) and returns the state,
/// the optimiser tensors and the stored config text.
pub fn load(dir: &Path, model: &LlavaModel) -> Result<Loaded> {
    let state: TrainState = serde_json::from_str(&fs::read_to_string(dir.join("state.json"))?)
        .with_context(|| format!("{}/state.json", dir.display()))?;
    let path = dir.join("trainable.safetensors");
    let saved =
        Tensor::read_safetensors(&path).with_context(|| format!("reading {}", path.display()))?;
    let vars = model.trainable_vs().variables();
    if saved.len() != vars.len() {
        bail!(
            "{}: {} tensors, the model has {} trainable ones",
            path.display(),
            saved.len(),
            vars.len()
        );
    }
    for (name, t) in &saved {
        let mut var = vars
            .get(name)
            .with_context(|| format!("{name} in {}: no such trainable variable", path.display()))?
            .shallow_clone();
        if var.size() != t.size() {
            bail!(
                "{name}: expected shape {:?}, found {:?}",
                var.size(),
                t.size()
            );
        }
        tch::no_grad(|| var.copy_(&t.to_device(var.device()).to_kind(var.kind())));
    }
    let opt_path = dir.join("optimizer.safetensors");
    let optimizer = Tensor::read_safetensors(&opt_path)
        .with_context(|| format!("reading {}", opt_path.display()))?;
    let config = fs::read_to_string(dir.join("config.toml"))?;
    Ok((state, optimizer, config))
}

fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            sync_tree(&p)?;
        } else {
            File::open(&p)?
                .sync_all()
                .with_context(|| format!("fsync {}", p.display()))?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Directory fsync makes the rename itself durable (POSIX); a no-op elsewhere.
    #[cfg(unix)]
    File::open(dir)?
        .sync_all()
        .with_context(|| format!("fsync {}", dir.display()))?;
    Ok(())
}

//! The PPO loop on the tiny LLaVA fixture (tests/fixtures/llava/tiny-new, CPU):
//! - crash test: a worker process is killed with SIGKILL in the middle of a run,
//!   the run is resumed, and every following batch's losses equal those of an
//!   uninterrupted run exactly;
//! - learning sanity: with a synthetic token reward on one token, that token's
//!   probability rises within a few PPO iterations; with `--reward none` it does not.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use gpu_train::llava::{Batch, LlavaModel, LoadOptions, LoraConfig};
use gpu_train::trainer::config::TrainConfig;
use gpu_train::trainer::metrics::{BatchMetrics, read_metrics};
use gpu_train::trainer::ppo::Trainer;
use gpu_train::trainer::rollout::{Prompt, ResponseText, Scored, Task};
use reward_core::baseline::{Baselines, ScoreClass, ScoreLevel, VerifierInfo};
use reward_core::reward::{RewardMode, ScoredMention, TokenRewarder};
use reward_core::{EntityId, ScoreKind};
use tch::{Device, Kind, Tensor};
use tokenizers::Tokenizer;

/// libtorch's generator and thread count are global: the tests here take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/llava/tiny-new")
}

/// Prompts of plain tokens; every occurrence of `target` in a response is an
/// object mention with the best score (reward +1), nothing else is scored.
struct Synthetic {
    prompts: Vec<Vec<i64>>,
    target: i64,
}

impl Task for Synthetic {
    fn len(&self) -> usize {
        self.prompts.len()
    }
    fn prompt(&self, index: usize) -> Result<Prompt> {
        Ok(Prompt {
            ids: self.prompts[index].clone(),
            pixel_values: None,
        })
    }
    fn score(&self, _: usize, r: &ResponseText) -> Result<Scored> {
        let mentions = r
            .tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == self.target)
            .map(|(k, _)| ScoredMention::at(k, 32.0, EntityId(0)))
            .collect();
        Ok(Scored {
            mentions,
            sentence_score: None,
            hallucinated: 0,
        })
    }
}

fn model() -> LlavaModel {
    tch::set_num_threads(1);
    tch::manual_seed(7);
    let mut opts = LoadOptions::for_device(Device::Cpu);
    opts.lora = Some(LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        ..Default::default()
    });
    opts.value_head = true;
    LlavaModel::load(&fixture(), &opts).expect("tiny LLaVA fixture")
}

fn prompts() -> Vec<Vec<i64>> {
    (0..8).map(|i| vec![1, 30 + i, 41, 52 + i, 63]).collect()
}

fn config(mode: RewardMode, out: &Path) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.reward.mode = mode;
    c.reward.repeats = reward_core::reward::Repeats::All;
    c.reward.beta = 0.05;
    let t = &mut c.train;
    (t.batch_size, t.minibatch_size, t.max_new_tokens, t.top_k) = (4, 2, 6, 8);
    (t.learning_rate, t.warmup_steps, t.decay) = (2e-2, 0, "constant".into());
    (t.passes, t.checkpoint_every, t.seed) = (2, 1, 11);
    t.out_dir = out.to_path_buf();
    c
}

fn rewarder(mode: RewardMode, cfg: &TrainConfig) -> TokenRewarder {
    let info = VerifierInfo {
        model: "synthetic".into(),
        model_hash: "sha256:0".into(),
        score: ScoreKind::Cosine100,
        template: "{}".into(),
    };
    let mut b = Baselines::new(ScoreLevel::Object, info);
    for s in [30.0, 32.0] {
        b.push(ScoreClass::Correct, s).unwrap();
    }
    for s in [10.0, 12.0] {
        b.push(ScoreClass::Hallucinated, s).unwrap();
    }
    let baselines = (mode != RewardMode::KlOnly).then_some(&b);
    TokenRewarder::from_baselines(cfg.reward.clone(), baselines).unwrap()
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_file(fixture().join("tokenizer.json")).unwrap()
}

/// Mean probability of `token` as the first response token over the prompts.
fn first_token_prob(model: &LlavaModel, prompts: &[Vec<i64>], token: i64) -> f64 {
    tch::no_grad(|| {
        let ids = Tensor::from_slice2(prompts);
        let out = model
            .forward(
                &Batch {
                    input_ids: &ids,
                    attention_mask: None,
                    pixel_values: None,
                },
                false,
            )
            .unwrap();
        let last = out
            .logits
            .select(1, ids.size()[1] - 1)
            .softmax(-1, Kind::Double);
        last.select(1, token).mean(Kind::Double).double_value(&[])
    })
}

fn run(
    dir: &Path,
    mode: RewardMode,
    resume: bool,
    prompts: Vec<Vec<i64>>,
    tweak: fn(&mut TrainConfig),
) -> LlavaModel {
    let m = model();
    let tok = tokenizer();
    let mut cfg = config(mode, dir);
    tweak(&mut cfg);
    let target = target_token(&m, &prompts);
    let task = Synthetic { prompts, target };
    let mut t = Trainer::new(cfg.clone(), &m, &tok, &task, rewarder(mode, &cfg), dir).unwrap();
    if resume {
        assert!(
            t.resume().unwrap(),
            "no checkpoint to resume from in {}",
            dir.display()
        );
    }
    t.run(None, |_| {}).unwrap();
    drop(t);
    m
}

/// The most likely first response token of the untrained policy: likely enough
/// to be sampled under top-k 8, so the synthetic reward is seen.
fn target_token(m: &LlavaModel, prompts: &[Vec<i64>]) -> i64 {
    tch::no_grad(|| {
        let ids = Tensor::from_slice2(prompts);
        let out = m
            .forward(
                &Batch {
                    input_ids: &ids,
                    attention_mask: None,
                    pixel_values: None,
                },
                false,
            )
            .unwrap();
        out.logits
            .select(1, ids.size()[1] - 1)
            .softmax(-1, Kind::Double)
            .mean_dim(0, false, Kind::Double)
            .argmax(0, false)
            .int64_value(&[])
    })
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fisao-trainer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The last record of each batch (a killed run may have logged a batch it never checkpointed).
fn by_batch(ms: Vec<BatchMetrics>) -> std::collections::BTreeMap<u64, BatchMetrics> {
    ms.into_iter().map(|m| (m.batch, m)).collect()
}

/// Not a test on its own: the worker the crash test starts and kills.
#[test]
fn trainer_crash_worker() {
    let Ok(dir) = std::env::var("FISAO_CRASH_WORKER_DIR") else {
        return;
    };
    let _serial = serial();
    let m = model();
    let tok = tokenizer();
    let dir = PathBuf::from(dir);
    let cfg = config(RewardMode::Token, &dir);
    let task = Synthetic {
        prompts: prompts(),
        target: target_token(&m, &prompts()),
    };
    let mut t = Trainer::new(
        cfg.clone(),
        &m,
        &tok,
        &task,
        rewarder(RewardMode::Token, &cfg),
        &dir,
    )
    .unwrap();
    // Slow the worker down between batches so the parent can kill it mid-run.
    t.run(None, |_| std::thread::sleep(Duration::from_millis(300)))
        .unwrap();
}

#[test]
fn trainer_killed_run_resumes_with_identical_losses() {
    let _serial = serial();
    let full = tmp("full");
    run(&full, RewardMode::Token, false, prompts(), |_| {});
    let reference = by_batch(read_metrics(&full.join("metrics.jsonl")).unwrap());
    assert_eq!(
        reference.len(),
        4,
        "4 batches: 8 prompts / 4 per batch x 2 passes"
    );

    let crashed = tmp("crashed");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "trainer_crash_worker",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FISAO_CRASH_WORKER_DIR", &crashed)
        .spawn()
        .unwrap();
    let metrics = crashed.join("metrics.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    // Kill once two batches are logged: in the middle of batch 3 or of its checkpoint.
    while read_metrics(&metrics).map_or(0, |m| m.len()) < 2 {
        assert!(
            Instant::now() < deadline,
            "the worker did not log two batches in time"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the worker ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let before = read_metrics(&metrics).unwrap().len();
    assert!(before < 4, "the worker finished before the kill");

    run(&crashed, RewardMode::Token, true, prompts(), |_| {});
    let resumed = by_batch(read_metrics(&metrics).unwrap());
    assert_eq!(
        resumed.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>()
    );
    for (batch, r) in &reference {
        let c = &resumed[batch];
        for (what, a, b) in [
            ("policy_loss", c.policy_loss, r.policy_loss),
            ("value_loss", c.value_loss, r.value_loss),
            ("reward", c.reward, r.reward),
            ("kl", c.kl, r.kl),
            ("approx_kl", c.approx_kl, r.approx_kl),
            ("clip_frac", c.clip_frac, r.clip_frac),
            ("entropy", c.entropy, r.entropy),
        ] {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "batch {batch} {what}: resumed {a} vs uninterrupted {b}"
            );
        }
        assert_eq!(c.optimizer_steps, r.optimizer_steps);
    }
    // A checkpoint holds the adapter, the value head, the optimiser, the RNG/cursor state and the config.
    let ckpt = gpu_train::trainer::checkpoint::latest(&crashed)
        .unwrap()
        .unwrap();
    for f in [
        "adapter/adapter_model.safetensors",
        "adapter/value_head.safetensors",
        "optimizer.safetensors",
        "trainable.safetensors",
        "state.json",
        "config.toml",
    ] {
        assert!(ckpt.join(f).is_file(), "checkpoint lacks {f}");
    }
    let _ = std::fs::remove_dir_all(&full);
    let _ = std::fs::remove_dir_all(&crashed);
}

/// Sanity-run settings: 8 rows per batch sampled among the 4 likeliest tokens,
/// a learning rate small enough that the policy does not wander off on noise.
fn learning(c: &mut TrainConfig) {
    let t = &mut c.train;
    (
        t.batch_size,
        t.minibatch_size,
        t.top_k,
        t.learning_rate,
        t.passes,
    ) = (8, 4, 4, 3e-3, 4);
}

#[test]
fn trainer_rewarded_token_rises_and_not_without_reward() {
    let _serial = serial();
    // One prompt, sampled among its 4 likeliest tokens: the target is seen often.
    let same = vec![vec![1, 100, 200, 300, 400]; 8];
    let base = model();
    let target = target_token(&base, &same);
    let p0 = first_token_prob(&base, &same, target);
    let dir = tmp("learn-token");
    let trained = run(&dir, RewardMode::Token, false, same.clone(), learning);
    let p_token = first_token_prob(&trained, &same, target);
    let dir2 = tmp("learn-none");
    let untrained = run(&dir2, RewardMode::KlOnly, false, same.clone(), learning);
    let p_none = first_token_prob(&untrained, &same, target);
    let ms = read_metrics(&dir.join("metrics.jsonl")).unwrap();
    let mentions: Vec<u64> = ms.iter().map(|m| m.mentions).collect();
    assert!(
        mentions.iter().sum::<u64>() > 0,
        "the target was never sampled: {ms:?}"
    );
    // Rejected first mentions are a subset of the negatively rewarded ones.
    for m in &ms {
        let first = (m.mentions - m.repeats) as f64;
        assert!((0.0..=1.0).contains(&m.rejected_first_rate), "{m:?}");
        assert!(
            m.rejected_first_rate * first <= m.hallucination_rate * m.mentions as f64 + 1e-9,
            "{m:?}"
        );
    }
    eprintln!(
        "p(target) before {p0:.4}, after token reward {p_token:.4}, after none {p_none:.4}; mentions per batch {mentions:?}"
    );
    assert!(
        p_token > 1.5 * p0,
        "token reward: p(target) {p0} -> {p_token}"
    );
    assert!(p_none < 1.1 * p0, "no reward: p(target) {p0} -> {p_none}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

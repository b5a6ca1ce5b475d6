//! The demo pipeline, stage by stage (synthetic-world.md): verifier -> SFT ->
//! baselines from SFT rollouts -> the three PPO variants -> greedy
//! evaluation of every model on the held-out test split -> report.
//!
//! Each finished training stage leaves a `stage.json` next to its output,
//! stamped with a fingerprint of the world and the settings; a rerun with the
//! same fingerprint reuses it, so a killed demo continues at the stage it was
//! in (a PPO variant that was cut short restarts from its beginning).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use reward_core::baseline::{ScoreLevel, VerifierInfo};
use reward_core::clip::cache::sha256_digest;
use reward_core::reward::{Repeats, RewardMode};
use reward_core::{Baselines, ScoreKind};
use serde::Serialize;
use serde_json::{Value, json};

use super::eval::{Caption, DetectionScores, Metrics, caption_all, measure};
use super::ppo_variant::{PpoSpec, VariantReport, load_policy, train_variant, variant_name};
use super::report;
use super::sft::{PROMPT, SftSpec, train_sft};
use super::task::{WorldTask, WorldVerifier};
use super::verifier::{VerifierSpec, train_verifier};
use crate::llava::{LlavaModel, LlavaTokenizer, LoadOptions, SamplingConfig};
use crate::trainer::baseline::{BaselineScores, baselines};
use crate::world::{Split, World};

/// Every setting of a demo run.
#[derive(Clone, Debug)]
pub struct DemoSpec {
    /// The verifier's sizes and training.
    pub verifier: VerifierSpec,
    /// The VLLM's sizes and SFT.
    pub sft: SftSpec,
    /// PPO, shared by the variants.
    pub ppo: PpoSpec,
    /// Training images whose sampled SFT captions give the baselines.
    pub baseline_images: usize,
    /// Held-out images evaluated (at most the split's size).
    pub test_images: usize,
    /// Validation images used for checkpoint selection.
    pub validation_images: usize,
    /// Prompts per generation batch in evaluation.
    pub eval_batch: usize,
    /// Threads for libtorch and the world generator.
    pub threads: usize,
    /// The PPO variants to run, in this order (all three by default; a
    /// subset only for studies, the report's claims need all three).
    pub variants: Vec<RewardMode>,
}

/// The three PPO variants in report order.
pub const ALL_VARIANTS: [RewardMode; 3] =
    [RewardMode::KlOnly, RewardMode::Sentence, RewardMode::Token];

impl DemoSpec {
    /// The settings for a world file (its counts bound the image numbers).
    pub fn for_world(world: &World, seed: u64, threads: usize) -> Self {
        let ppo = PpoSpec {
            batches: 40,
            batch_size: 64,
            minibatch_size: 16,
            eval_every: 10,
            learning_rate: 2e-4,
            lora_r: 16,
            beta: 0.05,
            margin_fraction: 0.5,
            temperature: 1.0,
            max_new_tokens: 24,
            seed,
            repeats: Repeats::Penalise,
            score_range_sd: None,
        };
        Self::bounded(
            world,
            DemoSpec {
                verifier: with_seed_v(VerifierSpec::for_world(world), seed),
                sft: with_seed_s(SftSpec::for_world(world), seed),
                ppo,
                baseline_images: 1000,
                test_images: 1000,
                validation_images: 500,
                eval_batch: 100,
                threads,
                variants: ALL_VARIANTS.to_vec(),
            },
        )
    }

    /// Seconds-scale settings for tests (the tiny world, tiny models).
    pub fn tiny(world: &World, seed: u64) -> Self {
        let ppo = PpoSpec {
            batches: 2,
            batch_size: 8,
            minibatch_size: 4,
            eval_every: 1,
            learning_rate: 1e-3,
            lora_r: 4,
            beta: 0.05,
            margin_fraction: 0.5,
            temperature: 1.0,
            max_new_tokens: 12,
            seed,
            repeats: Repeats::Penalise,
            score_range_sd: None,
        };
        Self::bounded(
            world,
            DemoSpec {
                verifier: with_seed_v(VerifierSpec::tiny(), seed),
                sft: with_seed_s(SftSpec::tiny(), seed),
                ppo,
                baseline_images: 32,
                test_images: 16,
                validation_images: 16,
                eval_batch: 16,
                threads: 1,
                variants: ALL_VARIANTS.to_vec(),
            },
        )
    }

    /// The largest rollout-batch count the training split allows (every
    /// PPO prompt is a distinct training image).
    pub fn max_ppo_batches(world: &World, batch_size: usize) -> u64 {
        (world.len(Split::Train) / batch_size.max(1)).max(1) as u64
    }

    fn bounded(world: &World, mut s: DemoSpec) -> Self {
        s.test_images = s.test_images.min(world.len(Split::Test));
        s.validation_images = s.validation_images.min(world.len(Split::Validation));
        let train = world.len(Split::Train);
        s.baseline_images = s.baseline_images.min(train);
        s.ppo.batches = s
            .ppo
            .batches
            .min(Self::max_ppo_batches(world, s.ppo.batch_size));
        s
    }
}

fn with_seed_v(mut v: VerifierSpec, seed: u64) -> VerifierSpec {
    v.seed = seed;
    v
}

fn with_seed_s(mut s: SftSpec, seed: u64) -> SftSpec {
    s.seed = seed;
    s
}

/// One model's evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct ModelResult {
    /// Report name (`sft`, `ppo-none`, ...).
    pub name: String,
    /// Test-split metrics.
    pub metrics: Metrics,
    /// Test captions (kept for the report's examples and the score figure).
    #[serde(skip)]
    pub captions: Vec<Caption>,
}

/// Everything the report shows.
pub struct DemoResults {
    /// The output directory.
    pub out: PathBuf,
    /// World name and split sizes.
    pub world: Value,
    /// Stage reports as JSON (verifier, sft, baselines, variants).
    pub stages: Value,
    /// SFT, PPO-none, PPO-sentence, FiSAO-token, in that order.
    pub models: Vec<ModelResult>,
    /// SFT captions with mentions below the band's lower edge removed.
    pub filtered: Metrics,
    /// Variants asked for but not run: (name, why).
    pub skipped: Vec<(String, String)>,
    /// AUROC of token-level and sentence-level scores on SFT test mentions.
    pub auroc: Option<(f64, f64)>,
    /// Detection scores behind it (Figure 1 on the test split).
    pub detection: DetectionScores,
    /// Seconds per stage.
    pub timings: Vec<(String, f64)>,
}

/// A stage's progress bar (hidden when stderr is not a terminal).
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template(&format!(
        "{what:>14} {{bar:36}} {{pos}}/{{len}} [{{elapsed_precise}} < {{eta_precise}}] {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb
}

/// Fingerprints of the stages: each covers the world and the settings that
/// stage (and the stages it builds on) depends on, so a PPO-only change
/// reuses the verifier and the SFT model.
struct Fingerprints {
    verifier: String,
    sft: String,
    ppo: String,
}

impl Fingerprints {
    fn of(world: &World, spec: &DemoSpec) -> Self {
        let world = format!("{:?}", world.config());
        let v = format!("{world}|{:?}|threads {}", spec.verifier, spec.threads);
        let s = format!("{v}|{:?}", spec.sft);
        let p = format!(
            "{s}|{:?}|baselines {}|validation {}|test {}|{:?}",
            spec.ppo, spec.baseline_images, spec.validation_images, spec.test_images, spec.variants
        );
        Fingerprints {
            verifier: sha256_digest(v.as_bytes()),
            sft: sha256_digest(s.as_bytes()),
            ppo: sha256_digest(p.as_bytes()),
        }
    }
}

fn stage_done(dir: &Path, fingerprint: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join("stage.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    (v.get("fingerprint")?.as_str()? == fingerprint).then_some(v)
}

fn mark_done(dir: &Path, fingerprint: &str, report: Value) -> Result<Value> {
    let v = json!({ "fingerprint": fingerprint, "report": report });
    report::write_atomic(&dir.join("stage.json"), &serde_json::to_string_pretty(&v)?)?;
    Ok(v)
}

/// A stage's training: called with a (done, total) progress callback,
/// returns the stage's report.
type StageTrainer<'a> = dyn FnMut(&mut dyn FnMut(u64, u64)) -> Result<Value> + 'a;

/// A training stage that is skipped when `dir` holds its finished output for
/// this fingerprint; `train` gets a (done, total) progress callback and
/// returns the stage's report.
fn cached_stage(
    dir: &Path,
    fingerprint: &str,
    what: &str,
    train: &mut StageTrainer<'_>,
) -> Result<Value> {
    if let Some(v) = stage_done(dir, fingerprint) {
        eprintln!("{what:>14} reused from {}", dir.display());
        return Ok(v);
    }
    eprintln!(
        "{what:>14} training (no finished stage with fingerprint {fingerprint} in {})",
        dir.display()
    );
    let pb = bar(0, what);
    let report = train(&mut |d, n| {
        pb.set_length(n);
        pb.set_position(d);
    })?;
    pb.finish();
    mark_done(dir, fingerprint, report)
}

/// Runs the whole demo into `out`.
pub fn run(world: &World, spec: &DemoSpec, out: &Path) -> Result<DemoResults> {
    tch::set_num_threads(spec.threads.max(1) as i32);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let fingerprints = Fingerprints::of(world, spec);
    let mut timings = Vec::new();
    let mut stages = serde_json::Map::new();

    let t = Instant::now();
    let vdir = out.join("verifier");
    let v = cached_stage(&vdir, &fingerprints.verifier, "verifier", &mut |progress| {
        let r = train_verifier(world, &spec.verifier, &vdir, progress)?;
        Ok(json!({
            "steps": r.steps, "final_loss": r.final_loss, "seconds": r.seconds,
            "auroc_present": r.auroc_present, "auroc_partner": r.auroc_partner,
            "auroc_caption": r.auroc_caption,
        }))
    })?;
    stages.insert("verifier".into(), v["report"].clone());
    timings.push(("verifier".into(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let sdir = out.join("sft");
    let s = cached_stage(&sdir, &fingerprints.sft, "sft", &mut |progress| {
        let r = train_sft(world, &vdir, &spec.sft, &sdir, progress)?;
        Ok(json!({
            "steps": r.steps, "final_loss": r.final_loss, "seconds": r.seconds,
            "split_words": r.split_words,
        }))
    })?;
    stages.insert("sft".into(), s["report"].clone());
    timings.push(("sft".into(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let verifier = WorldVerifier::load(&vdir, ScoreKind::Cosine100)?;
    let sft_opts = LoadOptions::for_device(crate::device::default_device());
    let sft = LlavaModel::load(&sdir, &sft_opts)?;
    let tokenizer = LlavaTokenizer::from_file(
        &sdir.join("tokenizer.json"),
        sft.config.image_token_id,
        sft.config.image_tokens_per_image() as usize,
    )?;
    let task = |split: Split, range: std::ops::Range<u64>, sentence: bool| {
        let samples = world.generate(split, range, spec.threads);
        WorldTask::new(world, samples, &verifier, &tokenizer, PROMPT, sentence)
    };
    let n_ppo = spec.ppo.batches * spec.ppo.batch_size as u64;
    let ppo_train = task(Split::Train, 0..n_ppo, true)?;
    let base_train = task(Split::Train, 0..spec.baseline_images as u64, false)?;
    let val = task(Split::Validation, 0..spec.validation_images as u64, false)?;
    let test = task(Split::Test, 0..spec.test_images as u64, false)?;
    timings.push(("embeddings".into(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let info = VerifierInfo {
        model: "fisao-demo-verifier".into(),
        model_hash: format!("sha256:{}", verifier.model().model_hash_hex()),
        score: ScoreKind::Cosine100,
        template: "{}".into(),
    };
    let (object, sentence, fig1) = baseline_stage(&sft, &base_train, spec, &info)?;
    let bdir = out.join("baselines");
    std::fs::create_dir_all(&bdir)?;
    report::write_atomic(
        &bdir.join("baseline.json"),
        &serde_json::to_string_pretty(&object)?,
    )?;
    report::write_atomic(
        &bdir.join("baseline-sentence.json"),
        &serde_json::to_string_pretty(&sentence)?,
    )?;
    report::write_atomic(&out.join("figure1.svg"), &fig1)?;
    stages.insert(
        "baselines".into(),
        baseline_summary(&object, &sentence, spec)?,
    );
    // Unusable sentence-level baselines stop only the ablation that needs them.
    let sentence_problem = sentence.class_means().err().map(|e| {
        format!("its eq. 7 baselines are unusable ({e}), so eq. 8 has no band at sentence level")
    });
    timings.push(("baselines".into(), t.elapsed().as_secs_f64()));

    let greedy =
        |m: &LlavaModel| SamplingConfig::greedy(m, spec.ppo.max_new_tokens).without_image_token(m);
    let t = Instant::now();
    let pb = bar(test.samples().len() as u64, "eval sft");
    let sft_caps = caption_all(&sft, &test, &greedy(&sft), spec.eval_batch, &mut |d, _| {
        pb.set_position(d)
    })?;
    pb.finish();
    let lo = reward_core::RewardBounds::from_baselines(
        &object,
        &super::ppo_variant::reward_config(RewardMode::Token, &spec.ppo, &object, &sentence)?,
    )
    .map_err(|e| anyhow!("band of the verifier filter: {e}"))?
    .lo();
    let filtered = measure(&test, &sft_caps, &|j| j.score >= lo);
    let detection = DetectionScores::from_captions(&sft_caps);
    let mut models = vec![ModelResult {
        name: "sft".into(),
        metrics: measure(&test, &sft_caps, &|_| true),
        captions: sft_caps,
    }];
    timings.push(("eval sft".into(), t.elapsed().as_secs_f64()));
    drop(sft);

    let mut variants = Vec::new();
    let mut skipped = Vec::new();
    for &mode in &spec.variants {
        let name = variant_name(mode);
        if let (RewardMode::Sentence, Some(why)) = (mode, &sentence_problem) {
            eprintln!("{name:>14} skipped: {why}");
            skipped.push((name.to_string(), why.clone()));
            continue;
        }
        let t = Instant::now();
        // LoRA A matrices come from libtorch's global generator: seed it so every
        // variant starts from the same adapters, whatever ran before it.
        tch::manual_seed((spec.ppo.seed ^ 0x10BA) as i64);
        let policy = load_policy(&sdir, &spec.ppo)?;
        let pb = bar(spec.ppo.batches, name);
        let run_dir = out.join("runs").join(name);
        let report: VariantReport = train_variant(
            &policy,
            mode,
            &spec.ppo,
            (&object, &sentence),
            &ppo_train,
            &val,
            &run_dir,
            &fingerprints.ppo,
            &mut |d, n, msg| {
                pb.set_length(n);
                pb.set_position(d);
                pb.set_message(msg.to_string());
            },
        )?;
        pb.finish();
        crate::llava::save_adapter(&policy, &run_dir.join("selected-adapter"))?;
        let pb = bar(test.samples().len() as u64, "eval");
        let caps = caption_all(
            &policy,
            &test,
            &greedy(&policy),
            spec.eval_batch,
            &mut |d, _| pb.set_position(d),
        )?;
        pb.finish();
        models.push(ModelResult {
            name: name.into(),
            metrics: measure(&test, &caps, &|_| true),
            captions: caps,
        });
        variants.push(serde_json::to_value(&report)?);
        timings.push((name.into(), t.elapsed().as_secs_f64()));
    }
    stages.insert("ppo".into(), Value::Array(variants));
    stages.insert("ppo_spec".into(), serde_json::to_value(&spec.ppo)?);
    stages.insert("ppo_fingerprint".into(), json!(fingerprints.ppo));

    let results = DemoResults {
        out: out.to_path_buf(),
        world: world_summary(world, spec),
        stages: Value::Object(stages),
        models,
        filtered,
        skipped,
        auroc: detection.auroc(),
        detection,
        timings,
    };
    report::write_all(&results, &test)?;
    Ok(results)
}

/// Sampled SFT captions of training images -> eq. 7 baselines at both levels
/// and Figure 1.
fn baseline_stage(
    sft: &LlavaModel,
    task: &WorldTask,
    spec: &DemoSpec,
    info: &VerifierInfo,
) -> Result<(Baselines, Baselines, String)> {
    let mut sampling =
        SamplingConfig::greedy(sft, spec.ppo.max_new_tokens).without_image_token(sft);
    sampling.temperature = spec.ppo.temperature;
    sampling.seed = Some(spec.ppo.seed ^ 0xBA5E);
    let pb = bar(task.samples().len() as u64, "baselines");
    let caps = caption_all(sft, task, &sampling, spec.eval_batch, &mut |d, _| {
        pb.set_position(d)
    })?;
    pb.finish();
    let mut scores = BaselineScores::default();
    for c in &caps {
        let mut any_h = false;
        for j in &c.mentions {
            any_h |= !j.correct;
            if j.correct {
                scores.token_correct.push(j.score);
            } else {
                scores.token_hallucinated.push(j.score);
            }
        }
        if any_h {
            scores.sentence_hallucinated.push(c.sentence_score);
        } else {
            scores.sentence_correct.push(c.sentence_score);
        }
    }
    let object = baselines(
        ScoreLevel::Object,
        info,
        &scores.token_correct,
        &scores.token_hallucinated,
    )?;
    let sentence = crate::trainer::baseline::collect_baselines(
        ScoreLevel::Sentence,
        info,
        &scores.sentence_correct,
        &scores.sentence_hallucinated,
    )?;
    Ok((object, sentence, crate::trainer::baseline::figure(&scores)))
}

fn baseline_summary(object: &Baselines, sentence: &Baselines, spec: &DemoSpec) -> Result<Value> {
    let one = |b: &Baselines, mode: RewardMode| -> Result<Value> {
        let m = b.class_means().map_err(|e| anyhow!("{e}"))?;
        let cfg = super::ppo_variant::reward_config(mode, &spec.ppo, object, sentence)?;
        let bounds =
            reward_core::RewardBounds::from_baselines(b, &cfg).map_err(|e| anyhow!("{e}"))?;
        Ok(json!({
            "s_c": m.correct, "s_h": m.hallucinated,
            "n_correct": b.correct.count(), "n_hallucinated": b.hallucinated.count(),
            "margin": bounds.margin(), "lo": bounds.lo(), "hi": bounds.hi(),
            "s_min": bounds.s_min(), "s_max": bounds.s_max(),
        }))
    };
    let sentence = match one(sentence, RewardMode::Sentence) {
        Ok(v) => v,
        Err(e) => {
            let (c, h) = (&sentence.correct, &sentence.hallucinated);
            json!({
                "error": e.to_string(),
                "s_c": c.mean(), "s_h": h.mean(),
                "n_correct": c.count(), "n_hallucinated": h.count(),
            })
        }
    };
    Ok(json!({
        "token": one(object, RewardMode::Token)?,
        "sentence": sentence,
    }))
}

fn world_summary(world: &World, spec: &DemoSpec) -> Value {
    let train = world.stats(Split::Train, world.len(Split::Train).min(2000));
    json!({
        "name": world.config().name,
        "classes": world.classes().iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        "image_size": world.config().image_size,
        "train_images": world.len(Split::Train),
        "validation_images_used": spec.validation_images,
        "test_images_used": spec.test_images,
        "train_caption_bias": train.bias_rate(),
        "train_caption_chair_i": train.caption_chair_i(),
        "train_caption_chair_s": train.caption_chair_s(),
    })
}

//! The `fisao-train` binary end to end on COCO-style files and the tiny
//! LLaVA fixture (CPU): `config`, `baseline`, `ppo --reward token` stopped after one
//! batch and resumed, `ppo --reward sentence` with the CPU CLIP text tower
//! (`verifier.clip_model`), and the errors a user meets first (sentence mode
//! without a CLIP model, a baseline from another verifier). `trainer_task.rs`
//! tests the same glue through the library; this goes through the command
//! line, config file and run directory as a user does; and `bench --tiny`,
//! the self-test of the trainer's device check.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gpu_train::trainer::task::CacheVerifier;
use reward_core::baseline::{Baselines, ScoreClass, ScoreLevel};

mod common;
use common::{png, write_caches, write_coco};

/// The tiny CLIP fixture's projection width: the caches must match it for
/// sentence scores (its text tower embeds the response).
const DIM: usize = 16;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(path)
}

/// A baseline.json at `level` for the caches' verifier (as `fisao-train
/// baseline` writes it; a random tiny policy names too few objects to
/// compute one), or for another CLIP model (`model_hash`).
fn write_baseline(d: &Path, file: &str, level: ScoreLevel, model_hash: Option<&str>) {
    let verifier = CacheVerifier::load(
        &d.join("text.safetensors"),
        &d.join("images.safetensors"),
        "cosine100",
        None,
    )
    .unwrap();
    let mut info = verifier.info("tiny");
    if let Some(h) = model_hash {
        info.model_hash = h.to_string();
    }
    let mut b = Baselines::new(level, info);
    for (class, xs) in [
        (ScoreClass::Correct, [25.0, 28.0, 31.0, 27.0]),
        (ScoreClass::Hallucinated, [18.0, 20.0, 22.0, 16.0]),
    ] {
        for x in xs {
            b.push(class, x).unwrap();
        }
    }
    std::fs::write(d.join(file), serde_json::to_string_pretty(&b).unwrap()).unwrap();
}

/// The run's config file: tiny shapes, `out` as the run directory.
fn write_config(d: &Path, name: &str, out: &str, clip_model: bool) -> PathBuf {
    let p = |f: &str| d.join(f).display().to_string();
    let clip = match clip_model {
        true => format!(
            "clip_model = {:?}\n",
            fixture("clip/tiny-quickgelu").display().to_string()
        ),
        false => String::new(),
    };
    let toml = format!(
        r#"[model]
path = {model:?}
lora_r = 4
lora_alpha = 8.0

[data]
instruct = {instruct:?}
image_root = {images:?}
instances = {inst:?}
captions = {caps:?}

[verifier]
text_cache = {text:?}
image_cache = {image_cache:?}
baseline = {baseline:?}
sentence_baseline = {sentence:?}
model_name = "tiny"
{clip}
[train]
batch_size = 2
minibatch_size = 1
max_new_tokens = 6
learning_rate = 1e-4
warmup_steps = 0
checkpoint_every = 1
seed = 7
out_dir = {out:?}

[ppo]
epochs = 1
"#,
        model = fixture("llava/tiny-new").display().to_string(),
        instruct = p("instruct.jsonl"),
        images = p("images"),
        inst = p("inst.json"),
        caps = p("caps.json"),
        text = p("text.safetensors"),
        image_cache = p("images.safetensors"),
        baseline = p("baseline.json"),
        sentence = p("sentence_baseline.json"),
        out = p(out),
    );
    let path = d.join(name);
    std::fs::write(&path, toml).unwrap();
    path
}

fn fisao_train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fisao-train"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running fisao-train")
}

/// `fisao-train ppo --config CONFIG --reward REWARD` plus `more`.
fn ppo(config: &str, reward: &str, more: &[&str]) -> Output {
    let args = ["ppo", "--config", config, "--reward", reward];
    fisao_train(&[&args[..], more].concat())
}

fn ok(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: {}\n{stderr}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Batch numbers of a run's metrics.jsonl, in order.
fn batches(run: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["batch"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn fisao_train_runs_token_and_sentence_ppo_and_resumes() {
    let d = std::env::temp_dir().join(format!("fisao-train-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let image = png(40, 30);
    // Four samples: two batches of two.
    let questions = [
        "Describe the image.",
        "What is here?",
        "What do you see?",
        "Describe this photo.",
    ];
    write_coco(&d, &image, &questions);
    write_caches(&d, &image, DIM, "a photo of {}");
    write_baseline(&d, "baseline.json", ScoreLevel::Object, None);
    write_baseline(&d, "sentence_baseline.json", ScoreLevel::Sentence, None);
    let token = write_config(&d, "token.toml", "run-token", false);
    let token = token.to_str().unwrap();

    let resolved = ok(fisao_train(&["config", "--config", token]), "config");
    assert!(resolved.contains("lora_r = 4"), "{resolved}");

    // `baseline` samples the SFT policy over every prompt and scores its
    // mentions; the random tiny policy names no ground-truth object, so the
    // run ends with an error saying why (or, should it name both kinds,
    // with baseline.json).
    let base = d.join("base");
    let out = fisao_train(&[
        "baseline",
        "--config",
        token,
        "--out",
        base.to_str().unwrap(),
    ]);
    if out.status.success() {
        assert!(base.join("baseline.json").is_file());
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("score more responses"), "{err}");
    }
    // One batch, then a resumed run that does the second (and last).
    ok(ppo(token, "token", &["--max-batches", "1"]), "ppo 1");
    let run = d.join("run-token");
    assert_eq!(batches(&run), vec![0]);
    assert!(run.join("checkpoints/latest").is_file());
    ok(ppo(token, "token", &["--resume"]), "ppo resumed");
    assert_eq!(batches(&run), vec![0, 1]);

    // Fewer samples than one batch: an error naming both numbers, not a
    // run that trains nothing.
    let err = failed(
        fisao_train(&[
            "ppo",
            "--config",
            token,
            "--max-samples",
            "1",
            "--max-batches",
            "1",
        ]),
        "one sample",
    );
    assert!(
        err.contains("1 usable samples") && err.contains("batch_size = 2"),
        "{err}"
    );

    // Sentence-level scores need the CLIP model; without it the run stops
    // before training, naming the setting.
    let err = failed(
        ppo(token, "sentence", &["--max-batches", "1"]),
        "sentence without clip_model",
    );
    assert!(err.contains("verifier.clip_model"), "{err}");

    let sentence = write_config(&d, "sentence.toml", "run-sentence", true);
    let sentence = sentence.to_str().unwrap();
    ok(
        ppo(sentence, "sentence", &["--max-batches", "1"]),
        "sentence ppo",
    );
    assert_eq!(batches(&d.join("run-sentence")), vec![0]);
    let metrics = std::fs::read_to_string(d.join("run-sentence/metrics.jsonl")).unwrap();
    let m: serde_json::Value = serde_json::from_str(metrics.trim()).unwrap();
    let reward = m["reward"].as_f64().unwrap();
    assert!((-1.0..=1.0).contains(&reward), "sentence reward {reward}");

    // A baseline computed with another CLIP model is refused, naming it.
    let other = format!("sha256:{}", "2".repeat(64));
    write_baseline(&d, "baseline.json", ScoreLevel::Object, Some(&other));
    let err = failed(
        ppo(token, "token", &["--max-batches", "1"]),
        "baseline of another verifier",
    );
    assert!(
        err.contains("baseline vs caches") && err.contains(&other),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// `fisao-train bench --tiny`, the self-test of the trainer's device check
/// (benches/ppo_device.sh): one PPO iteration on the CPU, reported as a
/// JSON line with its phase timings.
#[test]
fn fisao_train_bench_tiny_reports_one_ppo_iteration() {
    let args = [
        "bench",
        "--tiny",
        "--batch",
        "2",
        "--new-tokens",
        "4",
        "--lora-r",
        "4",
    ];
    let stdout = ok(fisao_train(&args), "bench --tiny");
    let line = stdout.lines().last().expect("a JSON line");
    let v: serde_json::Value = serde_json::from_str(line).expect(line);
    assert_eq!(v["what"], "ppo_iteration", "{line}");
    assert_eq!(v["tiny"], true, "{line}");
    assert_eq!(v["batch"], 2, "{line}");
    // EOS is suppressed, so every response runs to --new-tokens.
    assert_eq!(v["mean_response_tokens"].as_f64(), Some(4.0), "{line}");
    for key in ["generation_s", "reference_s", "update_s", "total_s"] {
        let t = v[key].as_f64().expect(key);
        assert!(t > 0.0 && t.is_finite(), "{key} = {t}");
    }
    for key in ["policy_loss", "value_loss"] {
        assert!(v[key].as_f64().is_some_and(f64::is_finite), "{key}: {line}");
    }
}

//! The demo end to end on the shrunken world (worlds/tiny.toml) with
//! seconds-scale models: every stage runs, every output is there and well
//! formed, the saved models load, and a rerun with the same seed gives the
//! same numbers.

use std::path::{Path, PathBuf};

use gpu_train::demo::pipeline::{DemoSpec, run};
use gpu_train::llava::{LlavaModel, LoadOptions};
use gpu_train::world::World;
use reward_core::clip::ClipModel;
use serde_json::Value;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fisao-demo-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn check_model_metrics(name: &str, m: &Value) {
    for key in ["chair_s", "chair_i", "recall"] {
        let v = m[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}.{key} missing"));
        assert!((0.0..=1.0).contains(&v), "{name}.{key} = {v}");
    }
    let opc = m["objects_per_caption"].as_f64().unwrap();
    assert!(opc >= 0.0, "{name}: objects per caption {opc}");
    assert!(m["mean_score"].as_f64().unwrap().is_finite());
    assert!(m["se"]["chair_i"].as_f64().unwrap() >= 0.0);
    // The planted bias, measured directly: rates in [0, 1] with standard
    // errors, counted over the cases the tiny world's pair provides.
    let pb = &m["pair_bias"];
    for key in [
        "partner_hallucination",
        "partner_recall",
        "uncued_hallucination",
    ] {
        let v = pb[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}.pair_bias.{key} missing"));
        assert!((0.0..=1.0).contains(&v), "{name}.pair_bias.{key} = {v}");
        assert!(pb["se"][key].as_f64().unwrap() >= 0.0);
    }
    let cases: u64 = pb["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    let images = m["images"].as_u64().unwrap();
    assert!(
        cases > 0,
        "{name}: no paired-class cases in {images} images"
    );
}

#[test]
fn tiny_world_end_to_end() {
    let world = World::tiny_world().unwrap();
    let spec = DemoSpec::tiny(&world, 7);
    let out = scratch("a");
    let results = run(&world, &spec, &out).unwrap();

    // Outputs.
    let json = read_json(&out.join("results.json"));
    for name in ["sft", "ppo-none", "ppo-sentence", "fisao-token"] {
        check_model_metrics(name, &json["models"][name]);
    }
    check_model_metrics("filter", &json["reference_rows"]["sft+verifier-filter"]);
    for key in ["auroc_token", "auroc_sentence"] {
        let v = &json[key];
        assert!(
            v.is_null() || (0.0..=1.0).contains(&v.as_f64().unwrap()),
            "{key} = {v}"
        );
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("| model | CHAIR_s | CHAIR_i | recall |"));
    for name in [
        "sft",
        "ppo-none",
        "ppo-sentence",
        "fisao-token",
        "verifier filter",
    ] {
        assert!(report.contains(name), "report lacks {name}");
    }
    for fig in ["figure1.svg", "figure4.svg"] {
        let svg = std::fs::read_to_string(out.join(fig)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{fig}"
        );
    }
    for name in ["sft", "fisao-token"] {
        let lines =
            std::fs::read_to_string(out.join("captions").join(format!("{name}.jsonl"))).unwrap();
        assert_eq!(lines.lines().count(), spec.test_images, "{name} captions");
    }
    assert_eq!(results.models.len(), 4);
    let variants = json["stages"]["ppo"].as_array().unwrap();
    assert_eq!(variants.len(), 3);
    for v in variants {
        assert_eq!(v["batches"].as_u64().unwrap(), spec.ppo.batches);
        assert!(!v["validation"].as_array().unwrap().is_empty());
    }

    // The saved models load with the project's own loaders.
    let clip = ClipModel::load(&out.join("verifier")).unwrap();
    assert!(clip.logit_scale() > 0.0);
    LlavaModel::load(&out.join("sft"), &LoadOptions::for_device(tch::Device::Cpu)).unwrap();

    // Same seed and threads -> same numbers, training stages included.
    let again = scratch("b");
    run(&world, &spec, &again).unwrap();
    let json2 = read_json(&again.join("results.json"));
    assert_eq!(json["models"], json2["models"]);
    assert_eq!(json["auroc_token"], json2["auroc_token"]);

    // A rerun into the same directory reuses the finished training stages.
    let stamp = std::fs::metadata(out.join("verifier/model.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    run(&world, &spec, &out).unwrap();
    let stamp2 = std::fs::metadata(out.join("verifier/model.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(stamp, stamp2, "the verifier stage was redone");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&again);
}

/// Sentence-level baselines whose classes do not separate (s_c < s_h, as the
/// 8-epoch words-only verifier produced) stop only the sentence ablation:
/// they are collected, the token variant's reward still builds, and the
/// sentence variant's reward refuses with the reason.
#[test]
fn unusable_sentence_baselines_stop_only_the_sentence_ablation() {
    use gpu_train::demo::ppo_variant::reward_config;
    use gpu_train::trainer::baseline::{baselines, collect_baselines};
    use reward_core::reward::RewardMode;
    use reward_core::{ScoreKind, ScoreLevel, VerifierInfo};

    let world = World::tiny_world().unwrap();
    let spec = DemoSpec::tiny(&world, 7);
    let info = VerifierInfo {
        model: "test".into(),
        model_hash: format!("sha256:{}", "0".repeat(64)),
        score: ScoreKind::Cosine100,
        template: "{}".into(),
    };
    let object = baselines(ScoreLevel::Object, &info, &[4.0, 5.0], &[-1.0, 0.0]).unwrap();
    let (correct, hallucinated) = ([-2.3, -2.2], [-2.2, -2.1]);
    let err = baselines(ScoreLevel::Sentence, &info, &correct, &hallucinated).unwrap_err();
    assert!(err.to_string().contains("does not separate"), "{err}");
    let sentence = collect_baselines(ScoreLevel::Sentence, &info, &correct, &hallucinated).unwrap();
    assert_eq!(sentence.correct.count(), 2);

    let token = reward_config(RewardMode::Token, &spec.ppo, &object, &sentence).unwrap();
    // s_c - s_h = 4.5 - (-0.5).
    assert!((token.margin - 5.0 * spec.ppo.margin_fraction).abs() < 1e-12);
    reward_config(RewardMode::KlOnly, &spec.ppo, &object, &sentence).unwrap();
    let err = reward_config(RewardMode::Sentence, &spec.ppo, &object, &sentence).unwrap_err();
    assert!(err.to_string().contains("not above"), "{err}");
}

/// A demo killed (SIGKILL) during PPO resumes where it stopped: the rerun
/// into the same directory reuses the training stages, continues the
/// interrupted variant from its last validation point, and ends with the
/// numbers of a run that was never interrupted.
#[test]
fn a_killed_demo_resumes_its_ppo_variant() {
    let bin = env!("CARGO_BIN_EXE_fisao-demo");
    let world = Path::new(env!("CARGO_MANIFEST_DIR")).join("../worlds/tiny.toml");
    let demo = |out: &Path| {
        let mut c = std::process::Command::new(bin);
        c.args(["--quick", "--seed", "3", "--threads", "1", "--world"])
            .arg(&world)
            .arg("--out")
            .arg(out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        c
    };
    let whole = scratch("whole");
    let status = demo(&whole).status().unwrap();
    assert!(status.success(), "uninterrupted run failed");

    // Kill the second run once its first PPO variant has passed a validation point.
    let cut = scratch("cut");
    let mut child = demo(&cut).spawn().unwrap();
    let progress = cut.join("runs/ppo-none/progress.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while !progress.exists() {
        assert!(child.try_wait().unwrap().is_none(), "run ended before PPO");
        assert!(std::time::Instant::now() < deadline, "no PPO progress");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!cut.join("results.json").exists(), "killed too late");

    let out = demo(&cut).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "resumed run failed:\n{log}");
    assert!(log.contains("verifier reused"), "{log}");
    assert!(log.contains("resumed at batch"), "{log}");
    let (a, b) = (
        read_json(&whole.join("results.json")),
        read_json(&cut.join("results.json")),
    );
    assert_eq!(a["models"], b["models"]);
    assert_eq!(
        a["stages"]["ppo"][0]["validation"],
        b["stages"]["ppo"][0]["validation"]
    );
    // metrics.jsonl lists each batch once, however often it ran.
    let lines = std::fs::read_to_string(cut.join("runs/ppo-none/metrics.jsonl")).unwrap();
    let batches: Vec<u64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["batch"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(batches, (0..batches.len() as u64).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&whole);
    let _ = std::fs::remove_dir_all(&cut);
}

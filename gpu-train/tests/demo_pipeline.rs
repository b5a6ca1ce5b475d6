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

//! Bad input for the trainer: a broken JSON line (with its line number), a
//! missing image, an image without annotations, config values out of range and
//! unknown keys; with `skip_bad_samples` bad samples are counted instead.
//! Also the CHAIR-style ground truth and the atomic checkpoint pointer.

use std::path::{Path, PathBuf};

use gpu_train::trainer::config::{DataConfig, TrainConfig};
use gpu_train::trainer::data;
use reward_core::Matcher;
use reward_core::vocab::{Expansion, Vocabulary};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fisao-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("images")).unwrap();
    d
}

fn sample(image: &str, q: &str) -> String {
    format!(
        r#"{{"id": "{image}", "image": "{image}.jpg", "conversations": [{{"from": "human", "value": "<image>\n{q}"}}, {{"from": "gpt", "value": "ok"}}]}}"#
    )
}

/// Two images (1 and 2) with annotations; image 3 has a file but no annotations.
fn setup(d: &Path, lines: &[String]) -> DataConfig {
    std::fs::write(d.join("instruct.jsonl"), lines.join("\n") + "\n").unwrap();
    for id in ["000000000001", "000000000002", "000000000003"] {
        std::fs::write(
            d.join("images").join(format!("{id}.jpg")),
            b"not decoded here",
        )
        .unwrap();
    }
    std::fs::write(
        d.join("instances.json"),
        r#"{"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 18, "name": "dog"}, {"id": 62, "name": "chair"}],
            "annotations": [{"image_id": 1, "category_id": 18}, {"image_id": 2, "category_id": 62}]}"#,
    )
    .unwrap();
    std::fs::write(
        d.join("captions.json"),
        r#"{"images": [{"id": 1}, {"id": 2}], "annotations": [{"image_id": 1, "caption": "A dog next to a bicycle."}]}"#,
    )
    .unwrap();
    DataConfig {
        instruct: d.join("instruct.jsonl"),
        image_root: d.join("images"),
        instances: d.join("instances.json"),
        captions: d.join("captions.json"),
        max_samples: 100,
        skip_bad_samples: false,
    }
}

fn vocab() -> (Vocabulary, Matcher) {
    let v = Vocabulary::builtin(Expansion::Fisao);
    let m = Matcher::new(&v);
    (v, m)
}

#[test]
fn trainer_good_data_and_chair_style_ground_truth() {
    let d = dir("good");
    let cfg = setup(
        &d,
        &[
            sample("000000000001", "What is here?"),
            sample("000000000002", "Describe."),
        ],
    );
    let (v, m) = vocab();
    let ds = data::load(&cfg, &v, &m).unwrap();
    assert_eq!(ds.samples.len(), 2);
    assert_eq!(ds.samples[0].prompt, "What is here?");
    assert_eq!(ds.samples[0].image_id, 1);
    let gt1: Vec<&str> = ds.ground_truth[&1]
        .iter()
        .map(|e| v.entity_name(*e).unwrap())
        .collect();
    // The instance category plus the caption's objects.
    assert!(gt1.contains(&"dog") && gt1.contains(&"bicycle"), "{gt1:?}");
    assert!(!gt1.contains(&"chair"));
    assert_eq!(ds.skipped.total(), 0);
}

#[test]
fn trainer_broken_line_names_its_number_or_is_skipped() {
    let d = dir("broken");
    let lines = [
        sample("000000000001", "a"),
        "{\"id\": 2, \"image\": ".to_string(),
        sample("000000000002", "b"),
    ];
    let mut cfg = setup(&d, &lines);
    let (v, m) = vocab();
    let e = format!("{:#}", data::load(&cfg, &v, &m).err().unwrap());
    assert!(e.contains("line 2") && e.contains("instruct.jsonl"), "{e}");
    cfg.skip_bad_samples = true;
    let ds = data::load(&cfg, &v, &m).unwrap();
    assert_eq!((ds.samples.len(), ds.skipped.broken), (2, 1));
}

#[test]
fn trainer_json_array_errors_name_line_and_column() {
    let d = dir("array");
    let mut cfg = setup(&d, &[]);
    std::fs::write(
        d.join("array.json"),
        format!("[\n{},\n{{oops}}\n]", sample("000000000001", "a")),
    )
    .unwrap();
    cfg.instruct = d.join("array.json");
    let (v, m) = vocab();
    let e = format!("{:#}", data::load(&cfg, &v, &m).err().unwrap());
    assert!(e.contains("array.json:3:"), "{e}");
}

#[test]
fn trainer_missing_image_and_unannotated_image() {
    let d = dir("missing");
    let lines = [
        sample("000000000001", "a"),
        sample("000000000009", "b"),
        sample("000000000003", "c"),
    ];
    let mut cfg = setup(&d, &lines);
    let (v, m) = vocab();
    let e = format!("{:#}", data::load(&cfg, &v, &m).err().unwrap());
    assert!(
        e.contains("000000000009.jpg") && e.contains("not found") && e.contains("line 2"),
        "{e}"
    );
    std::fs::write(d.join("images/000000000009.jpg"), b"x").unwrap();
    let e = format!("{:#}", data::load(&cfg, &v, &m).err().unwrap());
    assert!(
        e.contains("image id 9") && e.contains("no COCO annotations"),
        "{e}"
    );
    std::fs::remove_file(d.join("images/000000000009.jpg")).unwrap();
    cfg.skip_bad_samples = true;
    let ds = data::load(&cfg, &v, &m).unwrap();
    assert_eq!(ds.samples.len(), 1);
    assert_eq!(
        (ds.skipped.missing_image, ds.skipped.no_annotations),
        (1, 1)
    );
}

#[test]
fn trainer_config_defaults_ranges_and_unknown_keys() {
    let c = TrainConfig::default();
    assert_eq!(
        (c.model.lora_r, c.model.lora_alpha, c.train.learning_rate),
        (128, 256.0, 5e-7)
    );
    assert_eq!(
        (c.reward.beta, c.reward.margin, c.ppo.gamma, c.ppo.lam),
        (0.2, 10.0, 1.0, 0.95)
    );
    assert_eq!(
        (
            c.ppo.cliprange,
            c.ppo.vf_coef,
            c.ppo.epochs,
            c.data.max_samples
        ),
        (0.2, 0.1, 4, 8000)
    );
    // The printed config parses back to itself.
    assert_eq!(TrainConfig::from_toml(&c.to_toml().unwrap()).unwrap(), c);
    // A table that sets one key keeps every other key's default (a derived
    // Default once gave `[verifier]` tables an empty score and name).
    let partial = "[model]\nlora_r = 8\n[data]\nmax_samples = 5\n[verifier]\ntext_cache = \"t\"\n\
                   [reward]\nbeta = 0.1\n[ppo]\nepochs = 2\n[train]\nseed = 3\n";
    let mut want = TrainConfig::default();
    want.model.lora_r = 8;
    want.data.max_samples = 5;
    want.verifier.text_cache = "t".into();
    want.reward.beta = 0.1;
    want.ppo.epochs = 2;
    want.train.seed = 3;
    assert_eq!(TrainConfig::from_toml(partial).unwrap(), want);
    assert_eq!(want.verifier.score, "cosine100");
    let e = format!(
        "{:#}",
        TrainConfig::from_toml("[train]\nlearning_rate = -1.0\n").unwrap_err()
    );
    assert!(e.contains("train.learning_rate"), "{e}");
    let e = format!(
        "{:#}",
        TrainConfig::from_toml("[train]\nbatch_size = 8\nminibatch_size = 3\n").unwrap_err()
    );
    assert!(e.contains("minibatch_size"), "{e}");
    let e = format!(
        "{:#}",
        TrainConfig::from_toml("[ppo]\ncliprange = 1.5\n").unwrap_err()
    );
    assert!(e.contains("cliprange"), "{e}");
    let e = format!(
        "{:#}",
        TrainConfig::from_toml("[train]\nlearnin_rate = 1e-5\n").unwrap_err()
    );
    assert!(e.contains("learnin_rate"), "{e}");
    let e = format!(
        "{:#}",
        TrainConfig::from_toml("[reward]\nmode = \"tokens\"\n").unwrap_err()
    );
    assert!(e.contains("tokens"), "{e}");
}

#[test]
fn trainer_schedule_warms_up_then_decays() {
    let mut c = TrainConfig::default();
    c.train.warmup_steps = 4;
    let lr: Vec<f64> = (0..14).map(|s| c.learning_rate(s, 14)).collect();
    assert!((lr[0] - 5e-7 / 4.0).abs() < 1e-20 && (lr[3] - 5e-7).abs() < 1e-20);
    assert!((lr[4] - 5e-7).abs() < 1e-20 && lr[13] < lr[8] && lr[13] > 0.0);
}

#[test]
fn trainer_baseline_files_and_refusals() {
    use gpu_train::trainer::baseline::{BaselineScores, write};
    use reward_core::ScoreKind;
    use reward_core::baseline::{Baselines, VerifierInfo};
    let d = dir("baseline");
    let info = VerifierInfo {
        model: "m".into(),
        model_hash: "sha256:0".into(),
        score: ScoreKind::Cosine100,
        template: "{}".into(),
    };
    let scores = BaselineScores {
        token_correct: vec![30.0, 28.0, 26.0],
        token_hallucinated: vec![18.0, 20.0],
        sentence_correct: vec![31.0, 29.0],
        sentence_hallucinated: vec![27.0],
    };
    let written = write(&d, &info, &scores).unwrap();
    assert_eq!(written.len(), 3);
    let b: Baselines =
        serde_json::from_str(&std::fs::read_to_string(d.join("baseline.json")).unwrap()).unwrap();
    let means = b.class_means().unwrap();
    assert!(
        (means.correct - 28.0).abs() < 1e-12 && (means.hallucinated - 19.0).abs() < 1e-12,
        "{means:?}"
    );
    let svg = std::fs::read_to_string(d.join("figure1.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("token level") && svg.contains("sentence level")
    );
    // s_c <= s_h and an empty class are refused, not written as NaN rewards.
    let flipped = BaselineScores {
        token_correct: vec![10.0],
        token_hallucinated: vec![20.0],
        ..Default::default()
    };
    assert!(write(&d, &info, &flipped).is_err());
    let empty = BaselineScores {
        token_correct: vec![10.0],
        ..Default::default()
    };
    assert!(write(&d, &info, &empty).is_err());
}

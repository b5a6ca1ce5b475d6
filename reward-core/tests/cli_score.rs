//! The `fisao` binary end to end, on clip-core's tiny random CLIP fixture
//! (`tests/fixtures/clip/tiny-quickgelu`, 56-pixel images, 16-wide
//! embeddings, the real CLIP tokenizer): JSON shape and values against the
//! library, caches (scores from caches equal scores from the towers, a cache
//! from another model or template is refused), batch mode, colours, errors.
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reward_core::clip::ClipModel;
use reward_core::clip::cache::EmbeddingCache;
use reward_core::clip::image::{ImageLimits, Preprocess, load_image, preprocess};
use reward_core::clip::score::{ScoreKind, Scorer};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn model_dir(name: &str) -> PathBuf {
    fixtures().join("clip").join(name)
}

fn photo(name: &str) -> PathBuf {
    fixtures().join("images").join(name)
}

/// A fresh scratch folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fisao-cli-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fisao(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fisao"))
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run fisao")
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "fisao failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const TEXT: &str = "A cat sits by a dog. The cat’s bowl is empty.";

#[test]
fn json_report_matches_the_library() {
    let model = model_dir("tiny-quickgelu");
    let out = fisao(&[
        "score",
        "--model",
        s(&model),
        "--image",
        s(&photo("chelsea.png")),
        "--text",
        TEXT,
        "--json",
    ]);
    let v = ok_json(&out);
    let mentions = v["mentions"].as_array().unwrap();
    let texts: Vec<&str> = mentions
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["cat", "dog", "cat", "bowl"]);
    // Character offsets (the ’ is one character, three bytes).
    let spans: Vec<(u64, u64)> = mentions
        .iter()
        .map(|m| (m["start"].as_u64().unwrap(), m["end"].as_u64().unwrap()))
        .collect();
    assert_eq!(spans, [(2, 5), (16, 19), (25, 28), (31, 35)]);
    assert_eq!(mentions[2]["repeat"], true);
    assert_eq!(
        mentions[2]["reward"].as_f64().unwrap(),
        -1.0,
        "repeats are penalised by default"
    );
    for m in mentions {
        assert!(
            ["grounded", "uncertain", "likely hallucinated"]
                .contains(&m["label"].as_str().unwrap())
        );
        let r = m["reward"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&r));
    }
    assert_eq!(v["backend"], "cpu");
    assert_eq!(v["baseline"], "default, uncalibrated");
    assert_eq!(v["score_kind"], "cosine100");
    assert_eq!(v["sentence_truncated"], false);

    // The same numbers from the library.
    let clip = ClipModel::load(&model).unwrap();
    let img = load_image(&photo("chelsea.png"), &ImageLimits::default()).unwrap();
    let pixels = preprocess(
        &img,
        &Preprocess::for_image_size(clip.config().image_size() as u32),
    )
    .unwrap();
    let image = clip.embed_images(&pixels, 1).unwrap();
    let scorer = Scorer {
        kind: ScoreKind::Cosine100,
        logit_scale: clip.logit_scale(),
    };
    let words = clip.embed_texts(&["cat", "dog", "bowl"]).unwrap();
    for (m, row) in mentions.iter().zip([0, 1, 0, 2]) {
        let want = scorer
            .score(words.embeddings.row(row), image.row(0))
            .unwrap();
        let got = m["score"].as_f64().unwrap() as f32;
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1.0),
            "{}: {got} vs {want}",
            m["text"]
        );
    }
    let sentence = clip.embed_texts(&[TEXT]).unwrap();
    let want = scorer
        .score(sentence.embeddings.row(0), image.row(0))
        .unwrap();
    assert!((v["sentence_score"].as_f64().unwrap() as f32 - want).abs() < 1e-5);
}

#[test]
fn caches_replace_the_towers_and_refuse_other_models() {
    let dir = scratch("caches");
    let model = model_dir("tiny-quickgelu");
    let vocab = dir.join("vocab.safetensors");
    let images = dir.join("images.safetensors");
    let out = fisao(&["embed", "vocab", "--model", s(&model), "--out", s(&vocab)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("surface-form embeddings"));
    let out = fisao(&[
        "embed",
        "images",
        "--model",
        s(&model),
        s(&fixtures().join("images")),
        "--out",
        s(&images),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("wrote 4 image embeddings"),
        "{}",
        stderr(&out)
    );

    let coffee = photo("coffee.png");
    let base = [
        "score",
        "--image",
        s(&coffee),
        "--text",
        "A cup and a spoon on a table.",
        "--json",
    ];
    let from_model = ok_json(&fisao(&[&base[..], &["--model", s(&model)]].concat()));
    // No model at all: every score must come from the caches.
    let from_caches = ok_json(&fisao(
        &[
            &base[..],
            &["--vocab-cache", s(&vocab), "--image-cache", s(&images)],
        ]
        .concat(),
    ));
    assert_eq!(from_caches["sentence_score"], Value::Null);
    let (a, b) = (
        from_model["mentions"].as_array().unwrap(),
        from_caches["mentions"].as_array().unwrap(),
    );
    assert!(a.len() >= 2 && a.len() == b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x["score"].as_f64().unwrap(), y["score"].as_f64().unwrap());
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }

    // Another model's cache is refused, naming the file and both hashes.
    let other = model_dir("tiny-eos-a");
    let out = fisao(
        &[
            &base[..],
            &["--model", s(&other), "--vocab-cache", s(&vocab)],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(
        msg.contains("vocab.safetensors") && msg.contains("was computed with model sha256:"),
        "{msg}"
    );
    // So is a cache made with another template.
    let out = fisao(
        &[
            &base[..],
            &[
                "--model",
                s(&model),
                "--vocab-cache",
                s(&vocab),
                "--template",
                "a photo of a {}.",
            ],
        ]
        .concat(),
    );
    assert!(
        stderr(&out).contains("was computed with template \"{}\""),
        "{}",
        stderr(&out)
    );
    // An image missing from the cache, with no model to embed it.
    let out = fisao(&[
        "score",
        "--image",
        s(&fixtures().join("clip/pixels_inputs/gray.png")),
        "--text",
        "a cat",
        "--vocab-cache",
        s(&vocab),
        "--image-cache",
        s(&images),
    ]);
    assert!(
        stderr(&out).contains("gray.png is not in the image cache"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn embed_images_keeps_list_order_across_batches_and_stops_at_a_bad_file() {
    let dir = scratch("embed-order");
    let model = model_dir("tiny-quickgelu");
    // Not sorted, one image twice, batches of two: the rows must follow
    // the list although the next batch is decoded while one is embedded.
    let names = [
        "rocket.jpg",
        "coffee.png",
        "chelsea.png",
        "coffee.png",
        "astronaut.png",
    ];
    let list = dir.join("list.txt");
    let lines: Vec<String> = names.iter().map(|n| s(&photo(n)).to_string()).collect();
    std::fs::write(&list, lines.join("\n")).unwrap();
    let out_file = dir.join("images.safetensors");
    let args = [
        "embed",
        "images",
        "--model",
        s(&model),
        "--batch-size",
        "2",
        "--out",
    ];
    let out = fisao(&[&args[..], &[s(&out_file), s(&list)]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let cache = EmbeddingCache::load(&out_file).unwrap();
    assert_eq!(cache.meta().keys, lines);
    let clip = ClipModel::load(&model).unwrap();
    let pre = Preprocess::for_image_size(clip.config().image_size() as u32);
    for (row, name) in names.iter().enumerate() {
        let img = load_image(&photo(name), &ImageLimits::default()).unwrap();
        let want = clip
            .embed_images(&preprocess(&img, &pre).unwrap(), 1)
            .unwrap();
        let got = cache.embeddings().row(row);
        for (a, b) in got.iter().zip(want.row(0)) {
            assert!((a - b).abs() < 1e-5, "{name} (row {row}): {a} vs {b}");
        }
    }

    // A missing file in a later batch: an error naming it, and no output.
    let missing = dir.join("missing.png");
    std::fs::write(&list, format!("{}\n{}\n", lines[0], s(&missing))).unwrap();
    let out_file = dir.join("none.safetensors");
    let out = fisao(&[&args[..], &[s(&out_file), s(&list)]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing.png"), "{}", stderr(&out));
    assert!(!out_file.exists());
}

#[test]
fn batch_mode_reads_and_writes_json_lines() {
    let dir = scratch("batch");
    for f in ["chelsea.png", "rocket.jpg"] {
        std::fs::copy(photo(f), dir.join(f)).unwrap();
    }
    let lines = [
        r#"{"id": 1, "image": "chelsea.png", "text": "A cat."}"#,
        r#"{"id": "b", "image": "rocket.jpg", "text": "There is a bus and a truck."}"#,
        r#"{"id": 3, "image": "missing.png", "text": "A dog."}"#,
        r#"not json"#,
    ];
    let file = dir.join("in.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = fisao(&[
        "score",
        "--model",
        s(&model_dir("tiny-quickgelu")),
        "--batch",
        s(&file),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "two bad lines make the run fail"
    );
    let rows: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["id"], 1);
    assert_eq!(rows[0]["mentions"][0]["entity"], "cat");
    assert_eq!(rows[1]["id"], "b");
    let entities: Vec<&str> = rows[1]["mentions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["entity"].as_str().unwrap())
        .collect();
    assert_eq!(entities, ["bus", "truck"]);
    assert_eq!(rows[2]["id"], 3);
    assert!(
        rows[2]["error"].as_str().unwrap().contains("missing.png"),
        "{}",
        rows[2]
    );
    assert_eq!(rows[3]["line"], 4);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn terminal_report_colours_only_when_asked() {
    let model = model_dir("tiny-quickgelu");
    let chelsea = photo("chelsea.png");
    let args = [
        "score",
        "--model",
        s(&model),
        "--image",
        s(&chelsea),
        "--text",
        "A cat.",
    ];
    let plain = fisao(&args);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let text = String::from_utf8(plain.stdout).unwrap();
    assert!(
        !text.contains('\x1b'),
        "stdout is not a terminal: no colour"
    );
    assert!(
        text.contains("cat") && text.contains("default, uncalibrated"),
        "{text}"
    );
    let coloured = fisao(&[&args[..], &["--color", "always"]].concat());
    assert!(
        String::from_utf8(coloured.stdout)
            .unwrap()
            .contains("\x1b[")
    );
}

#[test]
fn bad_input_gives_clear_errors() {
    let model = model_dir("tiny-quickgelu");
    let missing = photo("nope.png");
    let out = fisao(&[
        "score",
        "--model",
        s(&model),
        "--image",
        s(&missing),
        "--text",
        "a cat",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope.png"), "{}", stderr(&out));
    let not_image = fixtures().join("clip/pixels_inputs/not_an_image.png");
    let out = fisao(&[
        "score",
        "--model",
        s(&model),
        "--image",
        s(&not_image),
        "--text",
        "a cat",
    ]);
    assert!(
        stderr(&out).contains("not a PNG, JPEG or WebP"),
        "{}",
        stderr(&out)
    );
    let out = fisao(&["score", "--model", s(&model), "--text", "a cat"]);
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    let out = fisao(&[
        "score",
        "--model",
        s(&model),
        "--image",
        s(&photo("chelsea.png")),
        "--text",
        "a cat",
        "--score",
        "cos",
    ]);
    assert!(
        stderr(&out).contains("unknown score kind"),
        "{}",
        stderr(&out)
    );
    let out = fisao(&[
        "score",
        "--model",
        s(&model),
        "--image",
        s(&photo("chelsea.png")),
        "--text",
        "a cat",
        "--score",
        "dot",
    ]);
    assert!(stderr(&out).contains("pass --baseline"), "{}", stderr(&out));
    let out = fisao(&[
        "score",
        "--image",
        s(&photo("chelsea.png")),
        "--text",
        "a cat",
    ]);
    assert!(
        stderr(&out).contains("--model is required"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn baseline_file_sets_labels_and_is_checked() {
    use reward_core::baseline::{Baselines, ScoreClass, ScoreLevel, VerifierInfo};
    let dir = scratch("baseline");
    let model = model_dir("tiny-quickgelu");
    let hash = format!(
        "sha256:{}",
        ClipModel::load(&model).unwrap().model_hash_hex()
    );
    let verifier = VerifierInfo {
        model: "tiny".into(),
        model_hash: hash,
        score: ScoreKind::Cosine100,
        template: "{}".into(),
    };
    // Baselines that put every plausible tiny-model score far above `hi`.
    let mut b = Baselines::new(ScoreLevel::Object, verifier.clone());
    for v in [-30.0, -29.0, -28.0] {
        b.push(ScoreClass::Correct, v).unwrap();
    }
    for v in [-40.0, -39.0] {
        b.push(ScoreClass::Hallucinated, v).unwrap();
    }
    b.push(ScoreClass::Correct, 40.0).unwrap(); // s_max
    let file = dir.join("baseline.json");
    std::fs::write(&file, serde_json::to_string(&b).unwrap()).unwrap();
    let chelsea = photo("chelsea.png");
    let args = [
        "score",
        "--model",
        s(&model),
        "--image",
        s(&chelsea),
        "--text",
        "A cat.",
        "--json",
        "--baseline",
        s(&file),
    ];
    let v = ok_json(&fisao(&args));
    assert_eq!(v["mentions"][0]["label"], "grounded");
    assert!(v["mentions"][0]["reward"].as_f64().unwrap() > 0.0);
    assert_eq!(v["baseline"], s(&file));
    // Made with another score kind: refused.
    let mut other = b.clone();
    other.verifier.score = ScoreKind::ClipScore;
    std::fs::write(&file, serde_json::to_string(&other).unwrap()).unwrap();
    let out = fisao(&args);
    assert!(
        stderr(&out).contains("computed with score clipscore"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! The highlighter's Rust core on the native target, with the tiny committed
//! CLIP checkpoint: the same scores as reward-core's own pipeline, the
//! embedding memo, the vocabulary cache, and readable errors. The browser
//! tests (web/tests/browser/run.mjs) check the same core in Chromium against
//! `fisao score --json`.

use std::path::{Path, PathBuf};

use fisao_web::cpu::{CheckpointBytes, CpuTowers};
use fisao_web::session::{Session, Settings};
use reward_core::clip::ClipModel;
use reward_core::clip::cache::{CacheKind, CacheMeta, EmbeddingCache};
use reward_core::clip::image::{ImageLimits, Preprocess, load_image, preprocess};
use reward_core::clip::score::{ScoreKind, Scorer};

const CAPTION: &str =
    "A cat on a sofa next to a laptop, a cup and a teddy bear; the cat sees a dog.";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model_dir() -> PathBuf {
    root().join("tests/fixtures/clip/tiny-quickgelu")
}

fn image_path() -> PathBuf {
    root().join("tests/fixtures/images/chelsea.png")
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

struct Files {
    config: Vec<u8>,
    weights: Vec<u8>,
    tokenizer: Vec<u8>,
}

fn files() -> Files {
    let d = model_dir();
    Files {
        config: read(&d.join("config.json")),
        weights: read(&d.join("model.safetensors")),
        tokenizer: read(&d.join("tokenizer.json")),
    }
}

fn load(f: &Files) -> Result<CpuTowers, String> {
    CpuTowers::load(&CheckpointBytes {
        config: &f.config,
        weights: vec![&f.weights],
        tokenizer: &f.tokenizer,
        preprocessor: None,
    })
}

/// Session + towers, image set, ready to score.
fn ready() -> (CpuTowers, Session) {
    let towers = load(&files()).expect("tiny model loads");
    let mut session = Session::new(
        towers.model.logit_scale(),
        towers.model.config().projection_dim(),
        Some(towers.model_hash()),
    );
    let emb = towers
        .embed_image(&read(&image_path()), "chelsea.png")
        .unwrap();
    session.set_image_embedding(emb).unwrap();
    (towers, session)
}

fn score(
    towers: &CpuTowers,
    session: &mut Session,
    text: &str,
    s: &Settings,
) -> fisao_web::session::Report {
    let plan = session.plan(text, s).unwrap();
    if !plan.texts.is_empty() {
        let emb = towers.embed_texts(&plan.texts).unwrap();
        session
            .remember(s, &plan, emb.embeddings.to_rows())
            .unwrap();
    }
    session.report(text, s, None).unwrap()
}

#[test]
fn scores_match_reward_core_pipeline() {
    let (towers, mut session) = ready();
    let settings = Settings::default();
    let report = score(&towers, &mut session, CAPTION, &settings);
    let entities: Vec<&str> = report.mentions.iter().map(|m| m.entity.as_str()).collect();
    assert_eq!(
        entities,
        ["cat", "couch", "laptop", "cup", "teddy bear", "cat", "dog"]
    );
    assert!(report.mentions[5].repeat && !report.mentions[0].repeat);

    // The same numbers from reward-core directly: mmap'd model, file image.
    let model = ClipModel::load(&model_dir()).unwrap();
    let p = Preprocess::for_image_size(model.config().image_size() as u32);
    let img = load_image(&image_path(), &ImageLimits::default()).unwrap();
    let image = model
        .embed_images(&preprocess(&img, &p).unwrap(), 1)
        .unwrap();
    let scorer = Scorer::for_model(ScoreKind::Cosine100, &model);
    for m in &report.mentions {
        let t = model.embed_texts(&[m.form.as_str()]).unwrap();
        let want = scorer.score(t.embeddings.row(0), image.row(0)).unwrap();
        // One text at a time here, a batch in the session: GEMM blocking
        // may differ in the last bits.
        assert!(
            (m.score - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{}: {} vs {want}",
            m.text,
            m.score
        );
        let (lo, hi) = (report.bounds.lo, report.bounds.hi);
        let s = f64::from(m.score);
        let label = if s >= hi {
            "grounded"
        } else if s <= lo {
            "likely hallucinated"
        } else {
            "uncertain"
        };
        assert_eq!(m.label, label);
    }
    // UTF-16 and character offsets agree on this ASCII caption.
    assert!(
        report
            .mentions
            .iter()
            .all(|m| m.start == m.js_start && m.end == m.js_end)
    );
}

#[test]
fn the_memo_skips_known_forms_and_the_template_matters() {
    let (towers, mut session) = ready();
    let s = Settings::default();
    let first = score(&towers, &mut session, CAPTION, &s);
    assert!(session.plan(CAPTION, &s).unwrap().texts.is_empty());
    let photo = Settings {
        template: "a photo of a {}.".into(),
        ..Settings::default()
    };
    let plan = session.plan(CAPTION, &photo).unwrap();
    // Six distinct forms (cat twice), through the template.
    assert_eq!(plan.texts.len(), 6);
    assert_eq!(plan.texts[0], "a photo of a cat.");
    let other = score(&towers, &mut session, CAPTION, &photo);
    assert_ne!(first.mentions[0].score, other.mentions[0].score);
    // A different margin reuses the embeddings: same scores, wider band.
    let wide = Settings {
        margin: Some(first.margin * 1.5),
        ..Settings::default()
    };
    let r = session.report(CAPTION, &wide, None).unwrap();
    assert_eq!(r.mentions[0].score, first.mentions[0].score);
    assert!(r.bounds.hi - r.bounds.lo > first.bounds.hi - first.bounds.lo);
}

#[test]
fn a_vocabulary_cache_supplies_embeddings() {
    let (towers, mut session) = ready();
    let forms = ["cat", "dog"];
    let emb = towers
        .embed_texts(&forms.iter().map(|f| f.to_string()).collect::<Vec<_>>())
        .unwrap();
    let meta = |hash: String| CacheMeta {
        kind: CacheKind::Vocab,
        model_hash: hash,
        logit_scale: towers.model.logit_scale(),
        template: Some("{}".into()),
        preprocess: None,
        keys: forms.iter().map(|f| f.to_string()).collect(),
        digests: vec![],
    };
    let bytes = EmbeddingCache::new(meta(towers.model_hash()), emb.embeddings.clone())
        .unwrap()
        .to_bytes()
        .unwrap();
    let info = session
        .set_vocab_cache(&bytes, "vocab.safetensors")
        .unwrap();
    assert!(info.starts_with("2 forms"), "{info}");
    let plan = session
        .plan("a cat and a dog and a cup", &Settings::default())
        .unwrap();
    assert_eq!(plan.forms, ["cup"]);
    let r = score(
        &towers,
        &mut session,
        "a cat and a dog and a cup",
        &Settings::default(),
    );
    assert_eq!(
        r.mentions.iter().map(|m| m.cached).collect::<Vec<_>>(),
        [true, true, false]
    );

    // A cache of another model is refused and names both hashes.
    let other = EmbeddingCache::new(meta("sha256:00".into()), emb.embeddings)
        .unwrap()
        .to_bytes()
        .unwrap();
    let err = session
        .set_vocab_cache(&other, "other.safetensors")
        .unwrap_err();
    assert!(err.contains("sha256:00"), "{err}");
    assert!(
        session
            .set_vocab_cache(b"garbage", "junk.safetensors")
            .is_err()
    );
}

#[test]
fn bad_inputs_give_readable_errors() {
    let f = files();
    let truncated = Files {
        weights: f.weights[..f.weights.len() / 2].to_vec(),
        ..files()
    };
    let err = load(&truncated).err().expect("truncated weights fail");
    assert!(err.contains("safetensors"), "{err}");
    let bad_config = Files {
        config: b"{\"text_config\": 3}".to_vec(),
        ..files()
    };
    let err = load(&bad_config).err().expect("bad config fails");
    assert!(err.contains("config.json"), "{err}");

    let towers = load(&f).unwrap();
    let mut session = Session::new(towers.model.logit_scale(), 16, Some(towers.model_hash()));
    let err = session
        .report(CAPTION, &Settings::default(), None)
        .unwrap_err();
    assert!(err.contains("no image"), "{err}");
    let err = towers.embed_image(b"not an image", "x.png").unwrap_err();
    assert!(err.contains("not a PNG, JPEG or WebP"), "{err}");
    assert!(
        towers
            .embed_image(b"", "empty.png")
            .unwrap_err()
            .contains("empty")
    );
    assert!(
        session
            .set_image_embedding(vec![0.0; 3])
            .unwrap_err()
            .contains("projects to 16")
    );
    let bad_template = Settings {
        template: "no slot".into(),
        ..Settings::default()
    };
    assert!(
        session
            .plan(CAPTION, &bad_template)
            .unwrap_err()
            .contains("{}")
    );
    assert!(
        Settings::from_json("{\"margni\": 1}")
            .unwrap_err()
            .contains("margni")
    );
}

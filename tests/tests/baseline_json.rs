//! `baseline.json` (docs/baseline-json.md): serde round trip, the documented
//! example, and the refusals a reader must make.

use reward_core::baseline::{BaselineError, ScoreClass};
use reward_core::{Baselines, RewardConfig, ScoreKind, ScoreLevel, VerifierInfo};

fn verifier() -> VerifierInfo {
    VerifierInfo {
        model: "openai/clip-vit-large-patch14-336".into(),
        model_hash: "sha256:abc123".into(),
        score: ScoreKind::Cosine100,
        template: "{}".into(),
    }
}

/// correct {26, 27, 28, 29}: mean 27.5, M2 2.25 + 0.25 + 0.25 + 2.25 = 5;
/// hallucinated {15, 19, 23}: mean 19, M2 16 + 0 + 16 = 32. Every
/// intermediate Welford value is a short binary fraction, so JSON round
/// trips are exact.
fn example() -> Baselines {
    let mut b = Baselines::new(ScoreLevel::Object, verifier());
    for s in [26.0, 27.0, 28.0, 29.0] {
        b.push(ScoreClass::Correct, s).unwrap();
    }
    for s in [15.0, 19.0, 23.0] {
        b.push(ScoreClass::Hallucinated, s).unwrap();
    }
    b
}

/// The ```json block of docs/baseline-json.md.
fn doc_example() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/baseline-json.md");
    let doc = std::fs::read_to_string(path).expect("docs/baseline-json.md");
    let start = doc.find("```json\n").expect("a ```json block") + "```json\n".len();
    let len = doc[start..].find("```").expect("closing fence");
    doc[start..start + len].to_string()
}

#[test]
fn round_trip_is_exact() {
    let b = example();
    let json = serde_json::to_string_pretty(&b).unwrap();
    assert!(json.contains("\"version\": 1"), "{json}");
    assert!(json.contains("\"score\": \"cosine100\""), "{json}");
    assert!(json.contains("\"level\": \"object\""), "{json}");
    let back: Baselines = serde_json::from_str(&json).unwrap();
    assert_eq!(back, b);
    assert_eq!(back.correct.mean(), Some(27.5));
    assert_eq!(back.hallucinated.m2(), 32.0);
}

#[test]
fn empty_class_round_trips_with_null_extremes() {
    let mut b = Baselines::new(ScoreLevel::Sentence, verifier());
    b.push(ScoreClass::Correct, 61.5).unwrap();
    let json = serde_json::to_string(&b).unwrap();
    assert!(
        json.contains(r#""hallucinated":{"count":0,"mean":0.0,"m2":0.0,"min":null,"max":null}"#),
        "{json}"
    );
    let back: Baselines = serde_json::from_str(&json).unwrap();
    assert_eq!(back, b);
    assert!(back.hallucinated.is_empty());
    // Loading works; using it does not.
    let e = back.class_means().unwrap_err();
    assert!(e.to_string().contains("no hallucinated scores"), "{e}");
}

#[test]
fn documented_example_parses_and_gives_the_documented_bounds() {
    let b: Baselines = serde_json::from_str(&doc_example()).unwrap();
    assert_eq!(b.level, ScoreLevel::Object);
    assert_eq!(b.verifier.template, "{}");
    assert_eq!(b.correct, example().correct);
    assert_eq!(b.hallucinated, example().hallucinated);
    let bounds = b.to_reward_bounds(&RewardConfig::default()).unwrap();
    assert_eq!(
        (bounds.tau(), bounds.hi(), bounds.lo()),
        (23.25, 28.25, 18.25)
    );
    assert_eq!((bounds.s_min(), bounds.s_max()), (15.0, 29.0));
    let r = |s: f64| bounds.object_reward(s).unwrap();
    assert_eq!(r(29.0), 1.0);
    assert_eq!(r(28.625), 0.5);
    assert_eq!(r(20.0), 0.0);
    assert!((r(16.25) + 2.0 / 3.25).abs() < 1e-12);
    assert_eq!(r(40.0), 1.0);
}

fn load_err(json: &str) -> String {
    serde_json::from_str::<Baselines>(json)
        .unwrap_err()
        .to_string()
}

#[test]
fn reader_refusals() {
    let good = doc_example();
    let e = load_err(&good.replace("\"version\": 1", "\"version\": 2"));
    assert!(e.contains("version 2 is not supported"), "{e}");
    let e = load_err(&good.replace("\"m2\": 5.0", "\"m2\": -5.0"));
    assert!(e.contains("`m2` is negative"), "{e}");
    let e = load_err(&good.replace("\"min\": 26.0", "\"min\": 30.0"));
    assert!(e.contains("`min` is above `max`"), "{e}");
    let e = load_err(&good.replace("\"min\": 26.0", "\"min\": null"));
    assert!(e.contains("must be numbers"), "{e}");
    let e = load_err(&good.replace("\"cosine100\"", "\"cosine\""));
    assert!(e.contains("cosine"), "{e}");
    let e = load_err(&good.replace("\"level\"", "\"levle\""));
    assert!(e.contains("levle"), "{e}");
    let e = load_err(&good.replace("\"template\": \"{}\"", "\"template\": \"{}\", \"extra\": 1"));
    assert!(e.contains("extra"), "{e}");
    let e = load_err(&good.replace("\"version\": 1,", ""));
    assert!(e.contains("version"), "{e}");
}

#[test]
fn baseline_from_another_verifier_is_refused() {
    let b: Baselines = serde_json::from_str(&doc_example()).unwrap();
    let mut other = b.verifier.clone();
    other.model_hash = "sha256:different".into();
    match b.check_compatible(ScoreLevel::Object, &other) {
        Err(BaselineError::VerifierMismatch { field, .. }) => assert_eq!(field, "model_hash"),
        r => panic!("{r:?}"),
    }
    other = b.verifier.clone();
    other.score = ScoreKind::ClipScore;
    let e = b.check_compatible(ScoreLevel::Object, &other).unwrap_err();
    assert!(e.to_string().contains("\"clipscore\""), "{e}");
    assert!(
        b.check_compatible(ScoreLevel::Sentence, &b.verifier)
            .is_err()
    );
    b.check_compatible(ScoreLevel::Object, &b.verifier).unwrap();
}

#[test]
fn worker_files_merge_to_the_whole() {
    // Two workers each write a file; merging the loaded files equals one
    // accumulator over all scores.
    let scores: Vec<(ScoreClass, f64)> = (0..40)
        .map(|i| {
            let class = if i % 3 == 0 {
                ScoreClass::Hallucinated
            } else {
                ScoreClass::Correct
            };
            (class, 18.0 + ((i * 7) % 13) as f64 * 0.8)
        })
        .collect();
    let mut whole = Baselines::new(ScoreLevel::Object, verifier());
    let mut parts = [whole.clone(), whole.clone()];
    for (i, &(class, s)) in scores.iter().enumerate() {
        whole.push(class, s).unwrap();
        parts[i % 2].push(class, s).unwrap();
    }
    let files: Vec<String> = parts
        .iter()
        .map(|p| serde_json::to_string(p).unwrap())
        .collect();
    let mut merged: Baselines = serde_json::from_str(&files[0]).unwrap();
    merged
        .merge(&serde_json::from_str(&files[1]).unwrap())
        .unwrap();
    for (m, w) in [
        (&merged.correct, &whole.correct),
        (&merged.hallucinated, &whole.hallucinated),
    ] {
        assert_eq!(m.count(), w.count());
        assert_eq!((m.min(), m.max()), (w.min(), w.max()));
        assert!((m.mean().unwrap() - w.mean().unwrap()).abs() < 1e-12);
        assert!((m.m2() - w.m2()).abs() < 1e-9);
    }
}

//! Caption metrics against pycocoevalcap 1.2 goldens
//! (tests/fixtures/eval/caption_fixture.json, made by
//! tests/fixtures/gen_caption_metrics.py): PTB tokens exactly, BLEU-1..4,
//! ROUGE-L and CIDEr-D within 1e-6, METEOR through the jar when Java is here.

use std::path::PathBuf;

use reward_core::metrics::EvalErrorKind;
use reward_core::metrics::caption::meteor::MeteorConfig;
use reward_core::metrics::caption::tokenize::ptb_tokenize;
use reward_core::metrics::caption::{
    CaptionItem, Meteor, evaluate, evaluate_with_meteor, pair_with_references,
};
use reward_core::metrics::chair::Caption;
use reward_core::metrics::coco::CocoAnnotations;
use serde_json::Value;

const TOL: f64 = 1e-6;

fn fixture() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/eval/caption_fixture.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn items(fx: &Value) -> Vec<CaptionItem> {
    fx["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|im| CaptionItem {
            image_id: im["image_id"].as_u64().unwrap(),
            candidate: im["candidate"].as_str().unwrap().to_string(),
            references: im["references"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect(),
        })
        .collect()
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= TOL,
        "{what}: rust {a} vs pycocoevalcap {b}"
    );
}

#[test]
fn ptb_tokens_equal_corenlp() {
    let fx = fixture();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for im in fx["images"].as_array().unwrap() {
        pairs.push((
            im["candidate"].as_str().unwrap().into(),
            im["candidate_tokens"].as_str().unwrap().into(),
        ));
        for (raw, tok) in im["references"]
            .as_array()
            .unwrap()
            .iter()
            .zip(im["reference_tokens"].as_array().unwrap())
        {
            pairs.push((raw.as_str().unwrap().into(), tok.as_str().unwrap().into()));
        }
    }
    for p in fx["probes"].as_array().unwrap() {
        pairs.push((
            p["text"].as_str().unwrap().into(),
            p["tokens"].as_str().unwrap().into(),
        ));
    }
    assert_eq!(pairs.len(), 120 + fx["probes"].as_array().unwrap().len());
    let bad: Vec<String> = pairs
        .iter()
        .filter(|(raw, want)| ptb_tokenize(raw) != *want)
        .map(|(raw, want)| format!("{raw:?}\n  rust: {}\n  java: {want}", ptb_tokenize(raw)))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} differ:\n{}",
        bad.len(),
        pairs.len(),
        bad.join("\n")
    );
}

#[test]
fn scores_equal_pycocoevalcap() {
    let fx = fixture();
    let report = evaluate(&items(&fx)).unwrap();
    let corpus = &fx["corpus"];
    for k in 0..4 {
        close(
            report.bleu[k],
            corpus["bleu"][k].as_f64().unwrap(),
            &format!("corpus BLEU-{}", k + 1),
        );
    }
    close(
        report.rouge_l,
        corpus["rouge_l"].as_f64().unwrap(),
        "corpus ROUGE-L",
    );
    close(
        report.cider_d,
        corpus["cider_d"].as_f64().unwrap(),
        "corpus CIDEr-D",
    );
    for (got, want) in report.images.iter().zip(fx["images"].as_array().unwrap()) {
        let id = got.image_id;
        for k in 0..4 {
            close(
                got.bleu[k],
                want["bleu"][k].as_f64().unwrap(),
                &format!("image {id} BLEU-{}", k + 1),
            );
        }
        close(
            got.rouge_l,
            want["rouge_l"].as_f64().unwrap(),
            &format!("image {id} ROUGE-L"),
        );
        close(
            got.cider_d,
            want["cider_d"].as_f64().unwrap(),
            &format!("image {id} CIDEr-D"),
        );
    }
    assert!(matches!(report.meteor, Meteor::Unavailable(_)));
}

#[test]
fn meteor_through_the_jar_or_unavailable() {
    let fx = fixture();
    let config = MeteorConfig::discover();
    let java_ok = std::process::Command::new("java")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = MeteorConfig {
        java: "java".into(),
        jar: "/nonexistent/meteor-1.5.jar".into(),
    };
    let report = evaluate_with_meteor(&items(&fx)[..2], Some(&missing)).unwrap();
    assert!(matches!(&report.meteor, Meteor::Unavailable(why) if why.contains("does not exist")));
    let (Some(config), true, Some(want)) = (config, java_ok, fx["corpus"]["meteor"].as_f64())
    else {
        eprintln!("METEOR check skipped: no Java or no meteor-1.5.jar here");
        return;
    };
    let report = evaluate_with_meteor(&items(&fx), Some(&config)).unwrap();
    let Meteor::Score { corpus, per_item } = report.meteor else {
        panic!(
            "METEOR unavailable although Java and the jar are present: {:?}",
            report.meteor
        );
    };
    close(corpus, want, "corpus METEOR");
    for (got, im) in per_item.iter().zip(fx["images"].as_array().unwrap()) {
        close(*got, im["meteor"].as_f64().unwrap(), "image METEOR");
    }
}

#[test]
fn hand_computed_bleu_rouge() {
    // Candidate equal to its only reference: every score is 1 (BLEU up to smoothing).
    let it = [CaptionItem {
        image_id: 1,
        candidate: "a b c d".into(),
        references: vec!["a b c d".into()],
    }];
    let r = evaluate(&it).unwrap();
    for b in r.bleu {
        assert!((b - 1.0).abs() < 1e-8, "{b}");
    }
    assert!((r.rouge_l - 1.0).abs() < 1e-12);
    // "a b" vs "a c b": LCS 2, P = 1, R = 2/3, F = (1 + 1.44) * 2/3 / (2/3 + 1.44).
    let it = [CaptionItem {
        image_id: 1,
        candidate: "a b".into(),
        references: vec!["a c b".into()],
    }];
    let f = 2.44 * (2.0 / 3.0) / (2.0 / 3.0 + 1.44);
    assert!((evaluate(&it).unwrap().rouge_l - f).abs() < 1e-12);
    // BLEU-1 with brevity penalty: 2 of 2 unigrams match, c = 2, r = 3: exp(1 - 3/2).
    let b1 = evaluate(&it).unwrap().bleu[0];
    assert!((b1 - (1.0f64 - 1.5).exp()).abs() < 1e-8, "{b1}");
}

#[test]
fn bad_inputs_are_named() {
    let err = evaluate(&[]).unwrap_err();
    assert_eq!(err.kind(), EvalErrorKind::Empty);
    let it = [CaptionItem {
        image_id: 7,
        candidate: " ".into(),
        references: vec!["x".into()],
    }];
    assert!(
        evaluate(&it)
            .unwrap_err()
            .to_string()
            .contains("image id 7")
    );
    let mut ann = CocoAnnotations::default();
    ann.add_caption(1, "a dog");
    let mut c = Caption::new(2, "a cat");
    c.line = 4;
    let err = pair_with_references(&[c], &ann).unwrap_err();
    assert!(
        err.to_string().contains("line 4") && err.to_string().contains("image id 2"),
        "{err}"
    );
    let err =
        pair_with_references(&[Caption::new(1, "x"), Caption::new(1, "y")], &ann).unwrap_err();
    assert!(
        err.to_string().contains("second caption for image id 1"),
        "{err}"
    );
}

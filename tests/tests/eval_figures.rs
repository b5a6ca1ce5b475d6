//! Analysis figures: AUROC / Pearson r in the reports, and SVG documents that
//! are well-formed and carry the expected series, titles and labels.

use reward_core::metrics::analysis::{figure1, figure2, figure4, parse_scored_jsonl};

const SCORED: &str = r#"{"image_id": 1, "sentence_score": 20.0, "bleu": 0.10, "rouge_l": 0.30, "mentions": [{"entity": "dog", "score": 30.0, "hallucinated": false, "reward": 0.5}, {"entity": "cat", "score": 18.0, "hallucinated": true, "reward": -0.4}]}
{"image_id": 2, "sentence_score": 24.0, "bleu": 0.30, "rouge_l": 0.35, "mentions": [{"entity": "bus", "score": 28.0, "hallucinated": false, "reward": 0.3}]}
{"image_id": 3, "sentence_score": 22.0, "bleu": 0.20, "rouge_l": 0.50, "mentions": [{"entity": "cup", "score": 20.0, "hallucinated": true, "reward": -0.1}, {"entity": "car", "score": 26.0, "hallucinated": false, "reward": 0.2}]}
"#;

/// Minimal well-formedness: balanced tags, one root `<svg>`, no raw `&`.
fn check_svg(svg: &str) {
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find('<') {
        let j = rest[i..].find('>').expect("unclosed tag") + i;
        let tag = &rest[i + 1..j];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            stack.push(tag.split_whitespace().next().unwrap().to_string());
        }
        rest = &rest[j + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    for (k, _) in svg.match_indices('&') {
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;"]
                .iter()
                .any(|e| svg[k..].starts_with(e))
        );
    }
}

#[test]
fn figure1_token_vs_sentence() {
    let outs = parse_scored_jsonl("s.jsonl", SCORED).unwrap();
    let f = figure1(&outs).unwrap();
    // token: correct {30, 28, 26} vs hallucinated {18, 20}: all correct higher -> 1.
    assert_eq!(f.auroc_token, 1.0);
    // sentence: correct {20, 24, 22} vs hallucinated {20, 22}:
    // pairs: 20v20 .5, 20v22 0, 24v20 1, 24v22 1, 22v20 1, 22v22 .5 -> 4/6.
    assert!((f.auroc_sentence - 4.0 / 6.0).abs() < 1e-15);
    assert_eq!((f.n_correct, f.n_hallucinated), (3, 2));
    check_svg(&f.svg);
    assert_eq!(
        f.svg
            .matches("class=\"series\" data-name=\"correct\"")
            .count(),
        2
    );
    assert_eq!(
        f.svg
            .matches("class=\"series\" data-name=\"hallucinated\"")
            .count(),
        2
    );
    assert!(f.svg.contains("token level (AUROC 1.000)"));
    assert!(f.svg.contains("sentence level (AUROC 0.667)"));
    assert!(f.svg.contains("verifier score") && f.svg.contains("correct (n=3)"));
}

#[test]
fn figure2_pearson() {
    let outs = parse_scored_jsonl("s.jsonl", SCORED).unwrap();
    let f = figure2(&outs).unwrap();
    // x = 20, 24, 22; bleu = .1, .3, .2: exactly linear -> r = 1.
    assert!((f.r_bleu - 1.0).abs() < 1e-12);
    // rouge = .30, .35, .50: mx = 22, my = .3833; sxy = (-2)(-.0833) + 2(-.0333) + 0 = .1;
    // sxx = 8; syy = .00694 + .00111 + .01361 = .021667; r = .1 / sqrt(8 * .021667) = .2402
    assert!(
        (f.r_rouge_l - 0.1 / (8.0f64 * 0.065 / 3.0).sqrt()).abs() < 1e-12,
        "{}",
        f.r_rouge_l
    );
    check_svg(&f.svg);
    assert_eq!(f.svg.matches("<circle").count(), 6);
    assert!(f.svg.contains("Pearson r = 1.000"));
}

#[test]
fn figure4_before_after() {
    let outs = parse_scored_jsonl("s.jsonl", SCORED).unwrap();
    let after = parse_scored_jsonl("a.jsonl", "{\"image_id\": 1, \"mentions\": [{\"score\": 1, \"hallucinated\": false, \"reward\": 0.9}]}").unwrap();
    let f = figure4(&outs, &after).unwrap();
    assert!((f.mean_before - 0.1).abs() < 1e-12);
    assert_eq!(f.mean_after, 0.9);
    check_svg(&f.svg);
    assert!(f.svg.contains("data-name=\"before\"") && f.svg.contains("data-name=\"after\""));
}

#[test]
fn missing_fields_name_the_line() {
    let outs = parse_scored_jsonl("s.jsonl", "{\"image_id\": 4, \"mentions\": []}\n").unwrap();
    let err = figure2(&outs).unwrap_err();
    assert!(
        err.to_string()
            .contains("line 1: image id 4: field \"sentence_score\""),
        "{err}"
    );
    let err = parse_scored_jsonl(
        "s.jsonl",
        "{\"image_id\": 4, \"mentions\": [{\"score\": 1}]}",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("line 1: mentions[0]: missing boolean \"hallucinated\""),
        "{err}"
    );
    let only_correct = parse_scored_jsonl("s.jsonl", "{\"image_id\": 1, \"sentence_score\": 1, \"mentions\": [{\"score\": 1, \"hallucinated\": false}]}").unwrap();
    assert!(
        figure1(&only_correct)
            .unwrap_err()
            .to_string()
            .contains("needs both classes")
    );
}

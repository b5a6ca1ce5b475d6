//! POPE: robust and lmms-eval-strict answer parsing, metrics by hand, and
//! errors naming the line.

use reward_core::metrics::pope::{AnswerParsing, evaluate, parse_answers_jsonl};

const ANSWERS: &str = r#"{"question_id": 1, "answer": "Yes", "label": "yes"}
{"question_id": 2, "answer": "Yes, there is a dog in the image.", "label": "yes"}
{"question_id": 3, "answer": "no", "label": "yes"}
{"question_id": 4, "text": "There is no cat in the image.", "label": "no"}
{"question_id": 5, "answer": " yes ", "label": "no"}

{"question_id": 6, "answer": "It is unclear from the picture.", "ground_truth": "no"}
{"question_id": 7, "answer": "No", "label": "NO"}
{"question_id": "q8", "answer": "There is a bench.", "label": "yes"}
"#;

#[test]
fn robust_metrics_by_hand() {
    let items = parse_answers_jsonl("a.jsonl", ANSWERS).unwrap();
    assert_eq!(items.len(), 8);
    assert_eq!(items[7].question_id, "q8");
    // robust: 1 yes, 2 yes, 3 no, 4 no, 5 yes, 6 unparsed, 7 no, 8 yes.
    // TP = {1, 2, 8} = 3, FP = {5} = 1, FN = {3} = 1, TN = {4, 7} = 2.
    let r = evaluate(&items, AnswerParsing::Robust).unwrap();
    assert_eq!(r.n_unparsed, 1);
    assert_eq!(r.accuracy, 5.0 / 8.0);
    assert_eq!(r.precision, 0.75);
    assert_eq!(r.recall, 0.75);
    assert!((r.f1 - 0.75).abs() < 1e-15);
    assert_eq!(r.yes_ratio, 4.0 / 8.0);
    assert_eq!(r.label_yes_ratio, 4.0 / 8.0);
}

#[test]
fn strict_is_lmms_eval() {
    let items = parse_answers_jsonl("a.jsonl", ANSWERS).unwrap();
    // strict: only 1 yes, 3 no, 5 yes, 7 no parse. TP = {1}, FP = {5}, FN = {3}; correct = {1, 7}.
    let r = evaluate(&items, AnswerParsing::Strict).unwrap();
    assert_eq!(r.n_unparsed, 4);
    assert_eq!(r.accuracy, 2.0 / 8.0);
    assert_eq!(r.precision, 0.5);
    assert_eq!(r.recall, 0.5);
    assert_eq!(r.f1, 0.5);
    assert_eq!(r.yes_ratio, 2.0 / 8.0);
}

#[test]
fn bad_answers_name_the_line() {
    let err =
        parse_answers_jsonl("a.jsonl", "{\"answer\": \"yes\", \"label\": \"maybe\"}").unwrap_err();
    assert!(
        err.to_string().contains("a.jsonl: line 1: label \"maybe\""),
        "{err}"
    );
    let err = parse_answers_jsonl("a.jsonl", "\n{\"label\": \"yes\"}").unwrap_err();
    assert!(
        err.to_string().contains("line 2: missing field \"answer\""),
        "{err}"
    );
    let err = parse_answers_jsonl("a.jsonl", "{\"answer\": 1, \"label\": \"yes\"}").unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
    assert!(evaluate(&[], AnswerParsing::Robust).is_err());
}

//! CHAIR: Pattern singularize vectors, the NLTK tokenizer port, parity of the
//! reference mode with the Python re-implementation of chair.py
//! (benches/chair_reference.py) on the synthetic COCO fixture, the fixed
//! mode's repairs, and errors on bad input.

use std::path::PathBuf;

use reward_core::metrics::EvalErrorKind;
use reward_core::metrics::chair::{Caption, ChairEvaluator, ChairMode, evaluate};
use reward_core::metrics::coco::{CocoAnnotations, parse_captions_jsonl};
use reward_core::metrics::nltk::{sentences, tokenize_sentence, word_tokenize};
use reward_core::metrics::singularize::singularize;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/eval").join(name)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn singularize_matches_every_pattern26_vector() {
    let text =
        std::fs::read_to_string(root().join("data/chair/chair_singularize_vectors.tsv")).unwrap();
    let mut total = 0;
    let mut bad = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        total += 1;
        if singularize(cols[0]) != cols[1] {
            bad.push(format!(
                "{} -> {} (want {})",
                cols[0],
                singularize(cols[0]),
                cols[1]
            ));
        }
    }
    assert_eq!(total, 938);
    assert!(bad.is_empty(), "{} of {total} disagree: {bad:?}", bad.len());
}

#[test]
fn nltk_port_matches_nltk_3_10_4() {
    let text = std::fs::read_to_string(fixture("nltk_tokens.jsonl")).unwrap();
    let mut n = 0;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let s = v["text"].as_str().unwrap();
        assert_eq!(
            tokenize_sentence(s),
            strings(&v["sentence"]),
            "treebank: {s:?}"
        );
        let sents: Vec<String> = sentences(s).into_iter().map(String::from).collect();
        assert_eq!(sents, strings(&v["sentences"]), "sentences: {s:?}");
        assert_eq!(word_tokenize(s), strings(&v["tokens"]), "tokens: {s:?}");
        n += 1;
    }
    assert!(n >= 40);
}

fn fixture_annotations() -> CocoAnnotations {
    CocoAnnotations::load_dir(&fixture("chair")).unwrap()
}

fn fixture_captions() -> Vec<Caption> {
    let path = fixture("chair/generated.jsonl");
    parse_captions_jsonl("generated.jsonl", &std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn reference_mode_equals_python_reimplementation() {
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("chair/expected_reference.json")).unwrap(),
    )
    .unwrap();
    let report = evaluate(
        &fixture_captions(),
        &fixture_annotations(),
        ChairMode::Reference,
    )
    .unwrap();
    let close = |a: f64, key: &str| {
        let b = expected[key].as_f64().unwrap();
        assert!((a - b).abs() < 1e-12, "{key}: {a} vs {b}");
    };
    close(report.chair_s, "chair_s");
    close(report.chair_i, "chair_i");
    close(report.recall, "recall");
    assert_eq!(
        report.n_mentions as u64,
        expected["n_mentions"].as_u64().unwrap()
    );
    assert_eq!(
        report.n_hallucinated as u64,
        expected["n_hallucinated"].as_u64().unwrap()
    );
    let per = expected["captions"].as_array().unwrap();
    assert_eq!(per.len(), report.captions.len());
    for (got, want) in report.captions.iter().zip(per) {
        let words: Vec<String> = got
            .mentions
            .iter()
            .map(|m| m.mention.word.clone())
            .collect();
        assert_eq!(words, strings(&want["words"]), "image {}", got.image_id);
        let objects: Vec<String> = got
            .mentions
            .iter()
            .map(|m| m.mention.object.to_string())
            .collect();
        assert_eq!(objects, strings(&want["objects"]), "image {}", got.image_id);
        let mut hal: Vec<String> = got
            .hallucinated_objects
            .iter()
            .map(|s| s.to_string())
            .collect();
        hal.sort();
        assert_eq!(
            hal,
            strings(&want["hallucinated"]),
            "image {}",
            got.image_id
        );
        let gt: Vec<String> = got.ground_truth.iter().map(|s| s.to_string()).collect();
        assert_eq!(gt, strings(&want["ground_truth"]), "image {}", got.image_id);
    }
}

#[test]
fn reference_mode_keeps_chair_py_quirks() {
    let chair = ChairEvaluator::new(ChairMode::Reference).unwrap();
    let objects =
        |s: &str| -> Vec<&'static str> { chair.mentions(s).iter().map(|m| m.object).collect() };
    assert_eq!(objects("a bus on the road."), Vec::<&str>::new()); // bus -> "bu"
    assert_eq!(objects("two buses on the road."), ["bus"]);
    assert_eq!(objects("a man on a motor bike."), ["person"]); // " motor bike" never matches
    assert_eq!(
        objects("a boy with a tennis racket."),
        ["person", "tennis racket"]
    ); // via "racket"
    assert_eq!(objects("an orange suit."), ["orange"]);
    assert_eq!(objects("a seat. the toilet is white."), ["toilet"]); // seat dropped anywhere
    assert_eq!(objects("a baby elephant."), ["elephant"]);
    assert_eq!(objects("a cheesecake and an iphone."), Vec::<&str>::new());
}

#[test]
fn fixed_mode_repairs_the_quirks() {
    let chair = ChairEvaluator::new(ChairMode::Fixed).unwrap();
    let objects =
        |s: &str| -> Vec<&'static str> { chair.mentions(s).iter().map(|m| m.object).collect() };
    assert_eq!(objects("A bus on the road."), ["bus"]);
    assert_eq!(objects("A man on a motor bike."), ["person", "motorcycle"]);
    assert_eq!(
        objects("An astronaut in an orange suit."),
        Vec::<&str>::new()
    );
    assert_eq!(objects("An orange and a banana."), ["orange", "banana"]);
    assert_eq!(objects("An orange and white cat."), ["cat"]);
    assert_eq!(objects("A baby elephant."), ["elephant"]);
    assert_eq!(objects("A baby in a crib."), ["person"]);
    assert_eq!(
        objects("A toilet seat. A seat by the window."),
        ["toilet", "chair"]
    );
    assert_eq!(
        objects("A cheesecake and an iPhone."),
        ["cake", "cell phone"]
    );
    assert_eq!(objects("A passenger train."), ["train"]);
}

#[test]
fn fixed_mode_runs_on_the_fixture() {
    let report = evaluate(
        &fixture_captions(),
        &fixture_annotations(),
        ChairMode::Fixed,
    )
    .unwrap();
    assert_eq!(report.n_captions, 16);
    assert!(
        report.chair_i > 0.0 && report.chair_i < 1.0,
        "{}",
        report.chair_i
    );
    // Image 103's "A bus driving down the street" now counts the bus.
    assert!(
        report.captions[2]
            .mentions
            .iter()
            .any(|m| m.mention.object == "bus")
    );
}

#[test]
fn hand_computed_metrics() {
    let mut ann = CocoAnnotations::default();
    ann.add_instance(1, "dog");
    ann.add_instance(1, "couch");
    ann.add_caption(2, "A cat on a bed.");
    let caps = [
        Caption::new(1, "A dog and a cat on a couch with a dog."), // cat hallucinated; dog repeated
        Caption::new(2, "A cat and a bed."),                       // cat correct, bed correct
    ];
    let r = evaluate(&caps, &ann, ChairMode::Reference).unwrap();
    assert_eq!(r.n_mentions, 6);
    assert_eq!(r.n_hallucinated, 1);
    assert_eq!(r.chair_s, 0.5);
    assert!((r.chair_i - 1.0 / 6.0).abs() < 1e-15);
    // recall: image 1 {dog, couch} both mentioned; image 2 {cat, bed} both mentioned.
    assert_eq!(r.recall, 1.0);
    assert_eq!(r.repeats_per_caption, 0.5);
}

#[test]
fn bad_inputs_name_the_line_or_id() {
    let ann = fixture_annotations();
    let caps = parse_captions_jsonl(
        "c.jsonl",
        "{\"image_id\": 101, \"caption\": \"a man\"}\n{\"image_id\": 999, \"caption\": \"x\"}\n",
    )
    .unwrap();
    let err = evaluate(&caps, &ann, ChairMode::Reference).unwrap_err();
    assert_eq!(err.kind(), EvalErrorKind::UnknownImage);
    assert!(
        err.to_string().contains("line 2") && err.to_string().contains("999"),
        "{err}"
    );

    let caps = parse_captions_jsonl(
        "c.jsonl",
        "\n{\"image_id\": \"101\", \"caption\": \"  \"}\n",
    )
    .unwrap();
    let err = evaluate(&caps, &ann, ChairMode::Reference).unwrap_err();
    assert_eq!(err.kind(), EvalErrorKind::Empty);
    assert!(
        err.to_string().contains("line 2") && err.to_string().contains("101"),
        "{err}"
    );

    let err = parse_captions_jsonl(
        "c.jsonl",
        "{\"image_id\": 1, \"caption\": \"a\"}\n{\"image_id\": 1,",
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("c.jsonl: line 2: invalid JSON"),
        "{err}"
    );
    let err = parse_captions_jsonl("c.jsonl", "{\"image\": 1, \"caption\": \"a\"}").unwrap_err();
    assert!(
        err.to_string()
            .contains("line 1: missing field \"image_id\""),
        "{err}"
    );

    let mut ann = CocoAnnotations::default();
    let err = ann.add_instances_json("instances_x.json", "{\"images\": [], \"annotations\": [{\"image_id\": 1, \"category_id\": 5}], \"categories\": []}").unwrap_err();
    assert!(
        err.to_string()
            .contains("instances_x.json: annotations[0]: category_id 5"),
        "{err}"
    );
    let err = ann
        .add_captions_json("captions_x.json", "[1, 2]")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("captions_x.json: not a COCO annotation file"),
        "{err}"
    );
    let err = ann
        .add_captions_json("captions_x.json", "{\"annotations\": [{\"image_id\": 3}]}")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("annotations[0]: missing field \"caption\""),
        "{err}"
    );
    let err = CocoAnnotations::load_dir(&fixture("")).unwrap_err();
    assert_eq!(err.kind(), EvalErrorKind::Io);
    assert!(evaluate(&[], &CocoAnnotations::default(), ChairMode::Fixed).is_err());
}

/// Every example of the reference-vs-fixed table in docs/evaluation.md.
#[test]
fn documented_differences_hold() {
    let reference = ChairEvaluator::new(ChairMode::Reference).unwrap();
    let fixed = ChairEvaluator::new(ChairMode::Fixed).unwrap();
    let objects = |c: &ChairEvaluator, s: &str| -> Vec<&'static str> {
        let mut v: Vec<&'static str> = c.mentions(s).iter().map(|m| m.object).collect();
        v.sort();
        v
    };
    let cases: [(&str, &[&str], &[&str]); 11] = [
        ("A bus on the road.", &[], &["bus"]),
        (
            "A man on a motor bike.",
            &["person"],
            &["motorcycle", "person"],
        ),
        ("A cheesecake and an iPhone.", &[], &["cake", "cell phone"]),
        (
            "A boy with a tennis racket.",
            &["person", "tennis racket"],
            &["person", "tennis racket"],
        ),
        ("Two ties.", &[], &["tie"]),
        ("A stove top oven.", &["oven", "oven"], &["oven"]),
        ("An astronaut in an orange suit.", &["orange"], &[]),
        ("A baby giraffe.", &["giraffe"], &["giraffe"]),
        ("A passenger bus.", &["person"], &["bus"]),
        (
            "A seat by the window next to the toilet.",
            &["toilet"],
            &["chair", "toilet"],
        ),
        ("A hot-dog stand.", &[], &["hot dog"]),
    ];
    for (text, want_ref, want_fixed) in cases {
        assert_eq!(objects(&reference, text), want_ref, "reference: {text}");
        assert_eq!(objects(&fixed, text), want_fixed, "fixed: {text}");
    }
}

/// Fixed mode knows all 80 COCO categories (through the vocabulary's COCO ids)
/// and names each by itself.
#[test]
fn fixed_mode_covers_every_coco_category() {
    let fixed = ChairEvaluator::new(ChairMode::Fixed).unwrap();
    assert_eq!(fixed.categories().len(), 80);
    let missing: Vec<&str> = fixed
        .categories()
        .iter()
        .copied()
        .filter(|name| {
            !fixed
                .mentions(&format!("There is a {name} here."))
                .iter()
                .any(|m| m.object == *name)
        })
        .collect();
    assert!(missing.is_empty(), "not found by name: {missing:?}");
}

/// The report serialises (what `fisao eval chair --json` prints).
#[test]
fn report_serialises_to_json() {
    let report = evaluate(
        &fixture_captions(),
        &fixture_annotations(),
        ChairMode::Fixed,
    )
    .unwrap();
    let v: Value = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    assert_eq!(v["mode"], "fixed");
    assert_eq!(v["n_captions"], 16);
    let first = &v["captions"][0]["mentions"][0];
    assert!(
        first["word"].is_string()
            && first["object"].is_string()
            && first["hallucinated"].is_boolean()
    );
}

/// Library code never panics on odd text: random strings over a nasty
/// alphabet through both CHAIR modes, the NLTK and PTB tokenizers and POPE.
#[test]
fn no_panics_on_arbitrary_text() {
    use reward_core::metrics::caption::tokenize::ptb_tokenize;
    use reward_core::metrics::pope::{AnswerParsing, parse_answer};
    let alphabet: Vec<char> = "ab zDOG.,;:!?'\"`()[]{}<>-–—…’“”«»$%#&*/\\\n\t0123456789 İßé🐕_~^@"
        .chars()
        .collect();
    let reference = ChairEvaluator::new(ChairMode::Reference).unwrap();
    let fixed = ChairEvaluator::new(ChairMode::Fixed).unwrap();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..500 {
        let len = (state >> 59) as usize + 1;
        let text: String = (0..len * 2)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                alphabet[(state % alphabet.len() as u64) as usize]
            })
            .collect();
        let _ = reference.mentions(&text);
        let _ = fixed.mentions(&text);
        let _ = word_tokenize(&text);
        let _ = ptb_tokenize(&text);
        let _ = singularize(&text);
        let _ = parse_answer(&text, AnswerParsing::Robust);
    }
}

//! `fisao eval` end to end: the binary's `--json` output equals the library's
//! report on the same input (CHAIR on the synthetic COCO fixture
//! `tests/fixtures/eval/chair/`, POPE, caption metrics, figures), the table
//! prints the same numbers, and bad input exits non-zero naming the line,
//! image id or file.
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reward_core::metrics::caption;
use reward_core::metrics::chair::{self, ChairMode};
use reward_core::metrics::coco::{self, CocoAnnotations};
use reward_core::metrics::{analysis, pope};
use serde_json::Value;

fn chair_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/eval/chair")
}

fn generated() -> PathBuf {
    chair_dir().join("generated.jsonl")
}

/// A fresh scratch folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fisao-cli-eval-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn fisao(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fisao"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn ok_stdout(args: &[&str]) -> String {
    let out = fisao(args);
    assert!(
        out.status.success(),
        "fisao {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command expected to fail; its stderr.
fn err(args: &[&str]) -> String {
    let out = fisao(args);
    assert!(!out.status.success(), "fisao {args:?} should have failed");
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8(out.stderr).unwrap()
}

/// The library report exactly as `--json` must print it. Compared as text:
/// serde_json's default float parsing is not correctly rounded, so parsing
/// the output back could differ from the report by one ulp.
fn pretty<T: serde::Serialize>(report: &T) -> String {
    serde_json::to_string_pretty(report).unwrap() + "\n"
}

/// The number after `"key": ` in JSON text, parsed with Rust's correctly
/// rounded `f64` parser.
fn number(text: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\": ");
    let at = text
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        + pat.len();
    let rest = &text[at..];
    let end = rest.find([',', '\n', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The table row `name` holds exactly `value`.
fn row(table: &str, name: &str, value: &str) {
    let found = table
        .lines()
        .find(|l| l.trim_start().starts_with(name) && l.trim_end().ends_with(value));
    assert!(found.is_some(), "no row {name:?} = {value}:\n{table}");
}

fn library_chair(mode: ChairMode) -> chair::ChairReport {
    let caps = coco::parse_captions_jsonl(
        &generated().display().to_string(),
        &std::fs::read_to_string(generated()).unwrap(),
    )
    .unwrap();
    let ann = CocoAnnotations::load_dir(&chair_dir()).unwrap();
    chair::evaluate(&caps, &ann, mode).unwrap()
}

#[test]
fn chair_json_and_table_equal_the_library() {
    let (c, a) = (s(&generated()).to_owned(), s(&chair_dir()).to_owned());
    for (mode, name) in [
        (ChairMode::Reference, "reference"),
        (ChairMode::Fixed, "fixed"),
    ] {
        let lib = library_chair(mode);
        let got = ok_stdout(&[
            "eval",
            "chair",
            "--captions",
            &c,
            "--annotations",
            &a,
            "--mode",
            name,
            "--json",
        ]);
        assert_eq!(got, pretty(&lib), "mode {name}");
        let table = ok_stdout(&[
            "eval",
            "chair",
            "--captions",
            &c,
            "--annotations",
            &a,
            "--mode",
            name,
        ]);
        assert!(table.starts_with(&format!("CHAIR ({name})")), "{table}");
        row(&table, "CHAIR_s", &format!("{:.4}", lib.chair_s));
        row(&table, "CHAIR_i", &format!("{:.4}", lib.chair_i));
        row(&table, "recall", &format!("{:.4}", lib.recall));
        row(&table, "mentions", &lib.n_mentions.to_string());
    }
    // The reference mode also equals the Python re-implementation's goldens.
    let table = ok_stdout(&["eval", "chair", "--captions", &c, "--annotations", &a]);
    row(&table, "CHAIR_s", "0.7500");
    row(&table, "CHAIR_i", "0.3333");
    row(&table, "recall", "0.7568");
    row(&table, "hallucinated", "18");
}

#[test]
fn chair_bad_input_names_line_id_or_file() {
    let dir = scratch("chair-bad");
    let a = s(&chair_dir()).to_owned();
    // Each bad captions file fails naming the line, the image id or the file.
    let chair_err = |name: &str, captions: &str| {
        let f = write(&dir, name, captions);
        err(&["eval", "chair", "--captions", s(&f), "--annotations", &a])
    };
    let e = chair_err(
        "unknown.jsonl",
        "{\"image_id\": 101, \"caption\": \"A dog.\"}\n{\"image_id\": 999, \"caption\": \"A cat.\"}\n",
    );
    assert!(e.contains("line 2") && e.contains("999"), "{e}");
    let e = chair_err("empty.jsonl", "{\"image_id\": 101, \"caption\": \"  \"}\n");
    assert!(e.contains("line 1") && e.contains("empty"), "{e}");
    let e = chair_err(
        "broken.jsonl",
        "{\"image_id\": 101, \"caption\": \"A dog.\"}\n\n{\"image_id\": 102, \"caption\": \n",
    );
    assert!(e.contains("line 3") && e.contains("broken.jsonl"), "{e}");

    // A malformed annotation file is named.
    let ann = dir.join("ann");
    std::fs::create_dir_all(&ann).unwrap();
    std::fs::copy(
        chair_dir().join("captions_synth2014.json"),
        ann.join("captions_synth2014.json"),
    )
    .unwrap();
    write(
        &ann,
        "instances_synth2014.json",
        "{\"images\": [], \"annotations\": [",
    );
    let e = err(&[
        "eval",
        "chair",
        "--captions",
        s(&generated()),
        "--annotations",
        s(&ann),
    ]);
    assert!(e.contains("instances_synth2014.json"), "{e}");
}

const ANSWERS: &str = r#"{"question_id": 1, "answer": "Yes, there is a dog.", "label": "yes"}
{"question_id": 2, "answer": "No.", "label": "no"}
{"question_id": 3, "answer": "yes", "label": "no"}
{"question_id": 4, "text": "There is no cat in the image.", "label": "yes"}
{"question_id": 5, "answer": "no", "label": "no"}
{"question_id": 6, "answer": "It is unclear.", "label": "yes"}
"#;

#[test]
fn pope_json_and_table_equal_the_library() {
    let dir = scratch("pope");
    let f = write(&dir, "answers.jsonl", ANSWERS);
    let items = pope::parse_answers_jsonl("answers.jsonl", ANSWERS).unwrap();
    for (parsing, flag) in [
        (pope::AnswerParsing::Robust, None),
        (pope::AnswerParsing::Strict, Some("--strict")),
    ] {
        let lib = pope::evaluate(&items, parsing).unwrap();
        let mut args = vec!["eval", "pope", "--answers", s(&f)];
        args.extend(flag);
        let table = ok_stdout(&args);
        args.push("--json");
        assert_eq!(ok_stdout(&args), pretty(&lib));
        for (name, v) in [
            ("accuracy", lib.accuracy),
            ("precision", lib.precision),
            ("recall", lib.recall),
            ("F1", lib.f1),
            ("yes-ratio", lib.yes_ratio),
        ] {
            row(&table, name, &format!("{v:.4}"));
        }
        row(&table, "questions", "6");
    }
    // Strict reading: only q3 ("yes", wrong) and q5 ("no", right) parse;
    // q2's "No." does not, so accuracy is 1/6.
    let table = ok_stdout(&["eval", "pope", "--answers", s(&f), "--strict"]);
    row(&table, "accuracy", &format!("{:.4}", 1.0 / 6.0));
}

#[test]
fn pope_bad_label_names_the_line() {
    let dir = scratch("pope-bad");
    let f = write(
        &dir,
        "answers.jsonl",
        "{\"question_id\": 1, \"answer\": \"yes\", \"label\": \"yes\"}\n{\"question_id\": 2, \"answer\": \"no\", \"label\": \"maybe\"}\n",
    );
    let e = err(&["eval", "pope", "--answers", s(&f)]);
    assert!(e.contains("line 2") && e.contains("maybe"), "{e}");
}

/// The first generated caption of each image (pycocoevalcap scores one per image).
fn one_caption_per_image(dir: &Path) -> PathBuf {
    let mut seen = std::collections::BTreeSet::new();
    let mut text = String::new();
    for line in std::fs::read_to_string(generated()).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if seen.insert(v["image_id"].as_u64().unwrap()) {
            text.push_str(line);
            text.push('\n');
        }
    }
    write(dir, "captions.jsonl", &text)
}

#[test]
fn caption_json_and_table_equal_the_library() {
    let dir = scratch("caption");
    let c = one_caption_per_image(&dir);
    let caps = coco::parse_captions_jsonl("c", &std::fs::read_to_string(&c).unwrap()).unwrap();
    let ann = CocoAnnotations::load_dir(&chair_dir()).unwrap();
    let lib = caption::evaluate(&caption::pair_with_references(&caps, &ann).unwrap()).unwrap();
    assert_eq!(lib.n_images, 12);
    let a = s(&chair_dir()).to_owned();
    let args = [
        "eval",
        "caption",
        "--captions",
        s(&c),
        "--annotations",
        &a,
        "--no-meteor",
    ];
    let mut with_json = args.to_vec();
    with_json.push("--json");
    assert_eq!(ok_stdout(&with_json), pretty(&lib));
    let table = ok_stdout(&args);
    for (k, name) in ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"].iter().enumerate() {
        row(&table, name, &format!("{:.4}", lib.bleu[k]));
    }
    row(&table, "ROUGE-L", &format!("{:.4}", lib.rouge_l));
    row(&table, "CIDEr-D", &format!("{:.4}", lib.cider_d));
    row(&table, "METEOR", "unavailable (not requested)");

    // A missing jar: METEOR is reported unavailable, the rest still printed.
    let text = ok_stdout(&[
        "eval",
        "caption",
        "--captions",
        s(&c),
        "--annotations",
        &a,
        "--meteor-jar",
        "/nonexistent/meteor-1.5.jar",
        "--json",
    ]);
    let v: Value = serde_json::from_str(&text).unwrap();
    let why = v["meteor"]["unavailable"].as_str().unwrap_or_default();
    assert!(why.contains("/nonexistent/meteor-1.5.jar"), "{v}");
    assert_eq!(number(&text, "cider_d"), lib.cider_d);
}

#[test]
fn caption_bad_input_names_line_and_id() {
    let dir = scratch("caption-bad");
    let a = s(&chair_dir()).to_owned();
    // generated.jsonl has two captions for some images.
    let e = err(&[
        "eval",
        "caption",
        "--captions",
        s(&generated()),
        "--annotations",
        &a,
        "--no-meteor",
    ]);
    assert!(
        e.contains("line ") && e.contains("second caption for image id"),
        "{e}"
    );
    let unknown = write(
        &dir,
        "u.jsonl",
        "{\"image_id\": 101, \"caption\": \"a man\"}\n{\"image_id\": 4242, \"caption\": \"a cat\"}\n",
    );
    let e = err(&[
        "eval",
        "caption",
        "--captions",
        s(&unknown),
        "--annotations",
        &a,
        "--no-meteor",
    ]);
    assert!(e.contains("line 2") && e.contains("4242"), "{e}");
    let e = err(&[
        "eval",
        "caption",
        "--captions",
        s(&unknown),
        "--annotations",
        s(&dir),
        "--no-meteor",
    ]);
    assert!(e.contains("captions_*.json"), "{e}");
}

fn scored(shift: f64) -> String {
    let mut t = String::new();
    for i in 0..8u32 {
        let x = f64::from(i);
        t.push_str(&format!(
            "{{\"image_id\": {}, \"sentence_score\": {}, \"bleu\": {}, \"rouge_l\": {}, \"mentions\": [\
             {{\"entity\": \"dog\", \"score\": {}, \"hallucinated\": false, \"reward\": {}}}, \
             {{\"entity\": \"cat\", \"score\": {}, \"hallucinated\": {}, \"reward\": {}}}]}}\n",
            100 + i,
            20.0 + x * 0.7,
            0.1 + 0.03 * x + 0.01 * (x * 1.7).sin(),
            0.3 + 0.02 * x,
            25.0 + (x * 0.9).cos(),
            0.2 * x - 0.5 + shift,
            18.0 + x * 0.8,
            i % 3 != 0,
            -0.3 + 0.1 * x + shift,
        ));
    }
    t
}

#[test]
fn figures_write_the_library_svgs_and_numbers() {
    let dir = scratch("figures");
    let before = write(&dir, "before.jsonl", &scored(0.0));
    let after = write(&dir, "after.jsonl", &scored(0.4));
    let out = dir.join("out");
    let text = ok_stdout(&[
        "eval",
        "figures",
        "--scored",
        s(&before),
        "--after",
        s(&after),
        "--out",
        s(&out),
        "--json",
    ]);
    let b = analysis::parse_scored_jsonl("b", &scored(0.0)).unwrap();
    let a = analysis::parse_scored_jsonl("a", &scored(0.4)).unwrap();
    let (f1, f2, f4) = (
        analysis::figure1(&b).unwrap(),
        analysis::figure2(&b).unwrap(),
        analysis::figure4(&b, &a).unwrap(),
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(number(&text, "auroc_token"), f1.auroc_token);
    assert_eq!(number(&text, "auroc_sentence"), f1.auroc_sentence);
    assert_eq!(v["figure1"]["n_hallucinated"], f1.n_hallucinated);
    assert_eq!(number(&text, "r_bleu"), f2.r_bleu);
    assert_eq!(number(&text, "r_rouge_l"), f2.r_rouge_l);
    assert_eq!(number(&text, "mean_before"), f4.mean_before);
    assert_eq!(number(&text, "mean_after"), f4.mean_after);
    for (name, svg) in [
        ("figure1.svg", &f1.svg),
        ("figure2.svg", &f2.svg),
        ("figure4.svg", &f4.svg),
    ] {
        assert_eq!(
            &std::fs::read_to_string(out.join(name)).unwrap(),
            svg,
            "{name}"
        );
    }
    // Without --after: Figures 1 and 2 only; the table shows their numbers.
    let out2 = dir.join("out2");
    let table = ok_stdout(&["eval", "figures", "--scored", s(&before), "--out", s(&out2)]);
    row(
        &table,
        "Figure 1 AUROC token",
        &format!("{:.4}", f1.auroc_token),
    );
    row(
        &table,
        "Figure 2 r(sentence, BLEU)",
        &format!("{:.4}", f2.r_bleu),
    );
    assert!(out2.join("figure2.svg").is_file() && !out2.join("figure4.svg").exists());
}

#[test]
fn figures_bad_input_names_the_line() {
    let dir = scratch("figures-bad");
    let text = scored(0.0).replacen("\"sentence_score\": 20.7, ", "", 1);
    let f = write(&dir, "s.jsonl", &text);
    let out = dir.join("out");
    let e = err(&[
        "eval",
        "figures",
        "--scored",
        s(&f),
        "--out",
        s(&out),
        "--figure",
        "2",
    ]);
    assert!(e.contains("line 2") && e.contains("sentence_score"), "{e}");
    assert!(!out.exists(), "nothing is written on error");
    let e = err(&[
        "eval",
        "figures",
        "--scored",
        s(&f),
        "--out",
        s(&out),
        "--figure",
        "4",
    ]);
    assert!(e.contains("--after"), "{e}");
}

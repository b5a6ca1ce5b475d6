//! CHAIR speed: reward-core's reference mode vs the Python re-implementation
//! of chair.py's logic (benches/chair_reference.py, NLTK tokenizer + Pattern
//! 2.6 rules), on the same 500 captions, timed in one run.
//!
//! `cargo bench -p fisao-benches --bench chair`. The Python peer runs with
//! `$FISAO_PYTHON`, else `~/.cache/fisao-rs/venv-fixtures/bin/python`, and
//! needs nltk. Both sides time `evaluate` with the ground truth already
//! built (annotation loading is excluded from both), best of several runs.
//! Results go to stdout; docs/perf.md ("CHAIR") records them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use reward_core::metrics::chair::{Caption, ChairEvaluator, ChairMode};
use reward_core::metrics::coco::CocoAnnotations;

const N: usize = 500;

/// 500 detailed, LLaVA-style multi-sentence captions over the fixture's images.
fn captions(images: &[u64]) -> Vec<Caption> {
    let subjects = [
        "A man",
        "Two women",
        "A young boy",
        "A dog",
        "Three zebras",
        "A cat",
        "An elephant",
        "A group of people",
    ];
    let actions = [
        "is standing next to",
        "is sitting on",
        "is looking at",
        "walks past",
        "is playing with",
        "rests near",
    ];
    let objects = [
        "a red bus",
        "two buses",
        "a wooden bench",
        "a surfboard",
        "a frisbee",
        "a toilet seat",
        "wine glasses",
        "a tennis racket",
        "an orange",
        "a dining table",
        "a laptop computer",
        "a cell phone",
        "a baby elephant",
        "a hot dog",
        "a teddy bear",
        "a motor bike",
        "some chairs",
        "a couch",
    ];
    let extras = [
        "The sky is blue and clear.",
        "In the background, there are several cars parked along the street.",
        "A bottle and a cup sit on the table nearby.",
        "The scene appears calm, with trees and a traffic light in the distance.",
        "There is also a backpack and an umbrella on the ground.",
    ];
    (0..N)
        .map(|i| {
            let mut text = String::new();
            for s in 0..3 {
                let k = i * 7 + s * 13;
                let _ = write!(
                    text,
                    "{} {} {} and {}. ",
                    subjects[k % subjects.len()],
                    actions[(k / 3) % actions.len()],
                    objects[k % objects.len()],
                    objects[(k / 5 + 3) % objects.len()]
                );
            }
            text.push_str(extras[i % extras.len()]);
            Caption {
                image_id: images[i % images.len()],
                caption: text,
                line: i + 1,
            }
        })
        .collect()
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("FISAO_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    Path::new(&home).join(".cache/fisao-rs/venv-fixtures/bin/python")
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let ann_dir = root.join("tests/fixtures/eval/chair");
    let ann = CocoAnnotations::load_dir(&ann_dir).expect("fixture annotations");
    let images: Vec<u64> = ann.image_ids().iter().copied().collect();
    let caps = captions(&images);

    let t = Instant::now();
    let chair = ChairEvaluator::new(ChairMode::Reference).expect("tables");
    let build = t.elapsed().as_secs_f64();
    let gt = chair.ground_truth(&ann).expect("ground truth");
    let mut best = f64::INFINITY;
    let mut report = None;
    for _ in 0..10 {
        let t = Instant::now();
        let r = chair.evaluate_with(&caps, &gt).expect("evaluate");
        best = best.min(t.elapsed().as_secs_f64());
        report = Some(r);
    }
    let report = report.expect("ran");
    println!(
        "rust  : {N} captions in {:.2} ms (best of 10; tables parsed once in {:.2} ms), CHAIR_i {:.6}",
        best * 1e3,
        build * 1e3,
        report.chair_i
    );

    let dir = std::env::temp_dir().join(format!("fisao-chair-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let jsonl = dir.join("captions.jsonl");
    let mut body = String::new();
    for c in &caps {
        let _ = writeln!(
            body,
            "{{\"image_id\": {}, \"caption\": \"{}\"}}",
            c.image_id, c.caption
        );
    }
    std::fs::write(&jsonl, body).expect("write captions");
    let out = Command::new(python())
        .arg(root.join("benches/chair_reference.py"))
        .args([
            "bench",
            jsonl.to_str().unwrap_or(""),
            ann_dir.to_str().unwrap_or(""),
            "3",
        ])
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let field = |k: &str| -> Option<f64> {
                let at = text.find(&format!("\"{k}\": "))? + k.len() + 4;
                text[at..].split([',', '}']).next()?.trim().parse().ok()
            };
            let (Some(py), Some(py_chair_i)) = (field("seconds_per_run"), field("chair_i")) else {
                println!("python: unexpected output {text}");
                return;
            };
            println!(
                "python: {N} captions in {:.2} ms (mean of 3), CHAIR_i {py_chair_i:.6}",
                py * 1e3
            );
            println!(
                "ratio : Rust is {:.1}x faster; CHAIR_i agrees: {}",
                py / best,
                (py_chair_i - report.chair_i).abs() < 1e-12
            );
        }
        Ok(o) => println!("python peer failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => println!("python peer not run ({}): {e}", python().display()),
    }
}

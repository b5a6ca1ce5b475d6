//! The demo's outputs: `results.json` (the schema of issue 8 plus standard
//! errors and the stage reports), `report.md` with the results table, the
//! paper's claims checked against the measurements, example captions, and
//! the figures (`figure1.svg`: correct vs hallucinated scores of SFT
//! mentions, token vs sentence level; `figure4.svg`: verifier scores of the
//! mentions each model generates on the test images). Every file is written
//! atomically (temporary file + rename).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use reward_core::metrics::plots::{Panel, Series, render};
use serde_json::{Value, json};

use super::eval::{Estimate, Metrics};
use super::pipeline::DemoResults;
use super::task::WorldTask;

/// Writes `text` to `path` through a temporary file in the same directory.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

fn model_json(m: &Metrics) -> Value {
    json!({
        "chair_s": m.chair_s.value,
        "chair_i": m.chair_i.value,
        "recall": m.recall.value,
        "objects_per_caption": m.objects_per_caption.value,
        "mean_score": m.mean_score.value,
        "duplicates_per_caption": m.duplicates_per_caption.value,
        "f1": m.f1,
        "images": m.images,
        "pair_bias": {
            "partner_hallucination": m.pairs.partner_hallucination.value,
            "partner_recall": m.pairs.partner_recall.value,
            "uncued_hallucination": m.pairs.uncued_hallucination.value,
            "cases": m.pairs.cases,
            "se": {
                "partner_hallucination": m.pairs.partner_hallucination.se,
                "partner_recall": m.pairs.partner_recall.se,
                "uncued_hallucination": m.pairs.uncued_hallucination.se,
            },
        },
        "se": {
            "chair_s": m.chair_s.se,
            "chair_i": m.chair_i.se,
            "recall": m.recall.se,
            "objects_per_caption": m.objects_per_caption.se,
            "mean_score": m.mean_score.se,
            "duplicates_per_caption": m.duplicates_per_caption.se,
        },
    })
}

/// `results.json`.
pub fn results_json(r: &DemoResults) -> Value {
    let models: serde_json::Map<String, Value> = r
        .models
        .iter()
        .map(|m| (m.name.clone(), model_json(&m.metrics)))
        .collect();
    json!({
        "models": models,
        "auroc_token": r.auroc.map(|a| a.0),
        "auroc_sentence": r.auroc.map(|a| a.1),
        "reference_rows": { "sft+verifier-filter": model_json(&r.filtered) },
        "skipped": r.skipped.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "world": r.world,
        "stages": r.stages,
        "seconds": r.timings.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
    })
}

fn cell(e: Estimate, digits: usize) -> String {
    format!("{:.digits$} ± {:.digits$}", e.value, e.se)
}

fn row(name: &str, m: &Metrics) -> String {
    format!(
        "| {name} | {} | {} | {} | {} | {} | {} |",
        cell(m.chair_s, 3),
        cell(m.chair_i, 3),
        cell(m.recall, 3),
        cell(m.objects_per_caption, 2),
        cell(m.duplicates_per_caption, 3),
        cell(m.mean_score, 2),
    )
}

/// The results table (Markdown), standard errors over images.
pub fn table(r: &DemoResults) -> String {
    let mut t = String::from(
        "| model | CHAIR_s | CHAIR_i | recall | objects / caption | repeats / caption | verifier score of mentions |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for m in &r.models {
        t += &row(&m.name, &m.metrics);
        t.push('\n');
    }
    t += &row("sft + verifier filter (reference)", &r.filtered);
    t.push('\n');
    t
}

/// The planted bias per model (Markdown): how often a paired class is named
/// when only its partner is drawn, when both are, and when neither is.
pub fn pair_table(r: &DemoResults) -> String {
    let mut t = String::from(
        "| model | partner named, partner absent (the bias) | partner named, both present | paired class named, neither present |\n\
         |---|---|---|---|\n",
    );
    let mut one = |name: &str, m: &Metrics| {
        let p = &m.pairs;
        let _ = writeln!(
            t,
            "| {name} | {} | {} | {} |",
            cell(p.partner_hallucination, 3),
            cell(p.partner_recall, 3),
            cell(p.uncued_hallucination, 3)
        );
    };
    for m in &r.models {
        one(&m.name, &m.metrics);
    }
    one("sft + verifier filter (reference)", &r.filtered);
    t
}

/// Why `name` has no row: the recorded reason, or that it was not asked for.
fn skip_reason<'a>(r: &'a DemoResults, name: &str) -> &'a str {
    r.skipped
        .iter()
        .find(|(n, _)| n == name)
        .map_or("not in --variants", |(_, why)| why.as_str())
}

fn metrics_of<'a>(r: &'a DemoResults, name: &str) -> Option<&'a Metrics> {
    r.models.iter().find(|m| m.name == name).map(|m| &m.metrics)
}

/// How a claim came out: `Some(holds)`, or `None` when a model it needs
/// was not run (a `--variants` subset, or a variant skipped with a reason).
pub type Verdict = Option<bool>;

/// The verdict's word for the report and the console.
pub fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Some(true) => "holds",
        Some(false) => "does NOT hold",
        None => "not measured",
    }
}

/// The paper's claims, each with what was measured and whether it holds.
pub fn claims(r: &DemoResults) -> Vec<(String, Verdict)> {
    let mut out = Vec::new();
    let (Some(sft), Some(tok)) = (metrics_of(r, "sft"), metrics_of(r, "fisao-token")) else {
        return out;
    };
    let rel = if sft.chair_i.value > 0.0 {
        1.0 - tok.chair_i.value / sft.chair_i.value
    } else {
        0.0
    };
    out.push((
        format!(
            "FiSAO-token lowers CHAIR_i by at least 30% relative to SFT: {:.3} -> {:.3} ({:+.1}%)",
            sft.chair_i.value,
            tok.chair_i.value,
            -100.0 * rel
        ),
        Some(rel >= 0.30),
    ));
    let drec = tok.recall.value - sft.recall.value;
    out.push((
        format!(
            "with recall within 5 points of SFT: {:.3} -> {:.3} ({:+.1} points)",
            sft.recall.value,
            tok.recall.value,
            100.0 * drec
        ),
        Some(drec.abs() <= 0.05),
    ));
    for (other, name) in [
        ("PPO-sentence", "ppo-sentence"),
        ("PPO-none (KL only)", "ppo-none"),
    ] {
        out.push(match metrics_of(r, name) {
            Some(m) => (
                format!(
                    "FiSAO-token has a lower CHAIR_i than {other}: {} vs {}",
                    cell(tok.chair_i, 3),
                    cell(m.chair_i, 3)
                ),
                Some(tok.chair_i.value < m.chair_i.value),
            ),
            None => (
                format!(
                    "FiSAO-token has a lower CHAIR_i than {other}: {other} was not run ({})",
                    skip_reason(r, name)
                ),
                None,
            ),
        });
    }
    if let Some((t, s)) = r.auroc {
        out.push((
            format!(
                "token-level scores detect hallucinated mentions better than sentence-level: AUROC {t:.3} vs {s:.3}"
            ),
            Some(t > s),
        ));
    }
    out
}

fn figure4(r: &DemoResults) -> String {
    let series = r
        .models
        .iter()
        .map(|m| Series {
            name: m.name.clone(),
            values: m
                .captions
                .iter()
                .flat_map(|c| c.mentions.iter().map(|j| j.score))
                .collect(),
        })
        .collect();
    render(
        "Verifier scores of generated object mentions, held-out images (FiSAO Figure 4)",
        &[Panel::Histogram {
            title: "all mentions, greedy captions".into(),
            x_label: "verifier score (100 x cosine)".into(),
            series,
            bins: 30,
        }],
    )
}

fn examples(r: &DemoResults, test: &WorldTask, n: usize) -> String {
    let mut s = String::new();
    let class = |id: u16| {
        r.world["classes"][id as usize]
            .as_str()
            .unwrap_or("?")
            .to_string()
    };
    let world_truth = |i: usize| {
        let names: Vec<String> = test.samples()[i]
            .objects()
            .iter()
            .map(|o| format!("{} x{}", class(o.class.0), o.count))
            .collect();
        names.join(", ")
    };
    for i in 0..n.min(test.samples().len()) {
        let _ = writeln!(
            s,
            "- test image {i} (present: {}), reference: \"{}\"",
            world_truth(i),
            test.samples()[i].caption()
        );
        for m in &r.models {
            if let Some(c) = m.captions.iter().find(|c| c.index == i) {
                let marks: Vec<String> = c
                    .mentions
                    .iter()
                    .map(|j| {
                        let word = j.mention.text(&c.text).unwrap_or("?");
                        let tag = if j.correct { "ok" } else { "HALLUCINATED" };
                        format!("{word} {:.1} {tag}", j.score)
                    })
                    .collect();
                let _ = writeln!(s, "  - {}: \"{}\" [{}]", m.name, c.text, marks.join("; "));
            }
        }
    }
    s
}

/// `report.md`.
pub fn markdown(r: &DemoResults, test: &WorldTask) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# FiSAO on the synthetic world `{}`\n",
        r.world["name"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        s,
        "Greedy captions of {} held-out test images; ± is one standard error over images. \
         Checkpoints were selected on the validation split (object-level F1), never on test images.\n",
        r.models.first().map_or(0, |m| m.metrics.images)
    );
    s += &table(r);
    for (name, why) in &r.skipped {
        let _ = writeln!(s, "\n**{name} was not run:** {why}");
    }
    s += "\n## The planted bias\n\n\
          Training captions name the missing partner of a pair in `bias_rate` of the images that hold \
          only one partner. Each image counts once per paired class; ± is one standard error over images.\n\n";
    s += &pair_table(r);
    s += "\n## The paper's claims, as measured here\n\n";
    for (text, verdict) in claims(r) {
        let _ = writeln!(s, "- [{}] {text}", verdict_word(verdict));
    }
    s += "\n## Figures\n\n![Figure 1](figure1.svg)\n\n![Figure 4](figure4.svg)\n\n";
    s += "Figure 1 is drawn from sampled SFT captions of training images (the baseline stage).\n\n";
    if let Some((t, sen)) = r.auroc {
        let _ = writeln!(
            s,
            "AUROC for telling correct from hallucinated mentions in SFT test captions: token level {t:.3}, sentence level {sen:.3} \
             (each mention carries its own score at the token level and its caption's score at the sentence level).\n"
        );
    }
    s += "## Stages\n\n```json\n";
    s += &serde_json::to_string_pretty(&json!({"world": r.world, "stages": r.stages}))
        .unwrap_or_default();
    s += "\n```\n\n## Time per stage (seconds)\n\n";
    for (k, v) in &r.timings {
        let _ = writeln!(s, "- {k}: {v:.1}");
    }
    s += "\n## Example captions\n\n";
    s += &examples(r, test, 6);
    s
}

/// Writes results.json, report.md, figure4.svg and one captions file per model.
pub fn write_all(r: &DemoResults, test: &WorldTask) -> Result<()> {
    write_atomic(
        &r.out.join("results.json"),
        &(serde_json::to_string_pretty(&results_json(r))? + "\n"),
    )?;
    write_atomic(&r.out.join("figure4.svg"), &figure4(r))?;
    for m in &r.models {
        let mut lines = String::new();
        for c in &m.captions {
            let mentions: Vec<Value> = c
                .mentions
                .iter()
                .map(|j| {
                    json!({"text": j.mention.text(&c.text), "start": j.mention.start, "end": j.mention.end,
                           "score": j.score, "correct": j.correct})
                })
                .collect();
            lines +=
                &json!({"image": c.index, "caption": c.text, "sentence_score": c.sentence_score,
                             "mentions": mentions})
                .to_string();
            lines.push('\n');
        }
        write_atomic(
            &r.out.join("captions").join(format!("{}.jsonl", m.name)),
            &lines,
        )?;
    }
    write_atomic(&r.out.join("report.md"), &markdown(r, test))
}

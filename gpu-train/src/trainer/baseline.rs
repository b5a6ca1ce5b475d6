//! `fisao-train baseline`: eq. 7 baselines (method.md section 5) from SFT
//! rollouts. The SFT policy (adapters off) answers the training prompts; every
//! object mention is scored by the verifier and filed as correct or
//! hallucinated by the image's ground truth; `s_c` and `s_h` are the class
//! means (reward-core `Baselines`). The sentence-level baseline (for the
//! `sentence` ablation) files each response's whole-text score by whether the
//! response has a hallucinated mention. Also draws paper Figure 1: histograms
//! of correct vs hallucinated scores, token level next to sentence level.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use reward_core::baseline::{Baselines, ScoreClass, ScoreLevel, VerifierInfo};
use reward_core::metrics::plots::{Panel, Series, render};

use super::rollout::{Task, decode_with_offsets};
use super::task::CocoTask;
use crate::llava::{LlavaModel, SamplingConfig, generate};

/// Scores collected for the baselines and the figure.
#[derive(Default)]
pub struct BaselineScores {
    /// Object-level (token-level) scores of correct mentions.
    pub token_correct: Vec<f64>,
    /// Object-level scores of hallucinated mentions.
    pub token_hallucinated: Vec<f64>,
    /// Sentence-level scores of responses without a hallucinated mention.
    pub sentence_correct: Vec<f64>,
    /// Sentence-level scores of responses with one.
    pub sentence_hallucinated: Vec<f64>,
}

/// Generates SFT responses for every sample and scores them.
pub fn collect(
    model: &LlavaModel,
    task: &CocoTask,
    batch_size: usize,
    sampling: &SamplingConfig,
    mut progress: impl FnMut(usize),
) -> Result<BaselineScores> {
    let mut out = BaselineScores::default();
    let indices: Vec<usize> = (0..task.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let prompts = chunk
            .iter()
            .map(|&i| task.prompt(i))
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<Vec<i64>> = prompts.iter().map(|p| p.ids.clone()).collect();
        let pixels: Vec<&tch::Tensor> = prompts
            .iter()
            .filter_map(|p| p.pixel_values.as_ref())
            .collect();
        let pixels = (!pixels.is_empty()).then(|| tch::Tensor::cat(&pixels, 0));
        let responses =
            model.with_adapters_disabled(|m| generate(m, &ids, pixels.as_ref(), sampling))?;
        for (&index, resp) in chunk.iter().zip(&responses) {
            let (text, _) = decode_with_offsets(task.tokenizer().inner(), resp)?;
            let mut any_hallucinated = false;
            for (_, score, correct) in task.score_text(index, &text)? {
                any_hallucinated |= !correct;
                let class = if correct {
                    &mut out.token_correct
                } else {
                    &mut out.token_hallucinated
                };
                class.push(score);
            }
            if task.has_sentence_scores() && !text.trim().is_empty() {
                let s = task.sentence_score(index, &text)?;
                let class = if any_hallucinated {
                    &mut out.sentence_hallucinated
                } else {
                    &mut out.sentence_correct
                };
                class.push(s);
            }
        }
        progress(chunk.len());
    }
    Ok(out)
}

/// Builds the baselines of one level.
pub fn baselines(
    level: ScoreLevel,
    verifier: &VerifierInfo,
    correct: &[f64],
    hallucinated: &[f64],
) -> Result<Baselines> {
    let b = collect_baselines(level, verifier, correct, hallucinated)?;
    // Refuse baselines eq. 8 cannot use (an empty class, s_c <= s_h), as method.md asks.
    b.class_means()
        .map_err(|e| anyhow!("{level:?}-level baselines: {e}"))?;
    Ok(b)
}

/// The accumulated scores without the check that eq. 8 can use them, for a
/// caller that reports unusable baselines instead of stopping (the demo
/// skips the sentence-level ablation when its classes do not separate).
pub fn collect_baselines(
    level: ScoreLevel,
    verifier: &VerifierInfo,
    correct: &[f64],
    hallucinated: &[f64],
) -> Result<Baselines> {
    let mut b = Baselines::new(level, verifier.clone());
    for (class, xs) in [
        (ScoreClass::Correct, correct),
        (ScoreClass::Hallucinated, hallucinated),
    ] {
        for &x in xs {
            b.push(class, x).map_err(|e| anyhow!("{e}"))?;
        }
    }
    Ok(b)
}

/// Paper Figure 1 as SVG: correct vs hallucinated, token level and sentence level.
pub fn figure(scores: &BaselineScores) -> String {
    let panel = |title: &str, c: &[f64], h: &[f64]| Panel::Histogram {
        title: title.into(),
        x_label: "verifier score".into(),
        series: vec![
            Series {
                name: format!("correct (n={})", c.len()),
                values: c.to_vec(),
            },
            Series {
                name: format!("hallucinated (n={})", h.len()),
                values: h.to_vec(),
            },
        ],
        bins: 30,
    };
    let mut panels = vec![panel(
        "token level (object mentions)",
        &scores.token_correct,
        &scores.token_hallucinated,
    )];
    if !scores.sentence_correct.is_empty() || !scores.sentence_hallucinated.is_empty() {
        panels.push(panel(
            "sentence level (responses)",
            &scores.sentence_correct,
            &scores.sentence_hallucinated,
        ));
    }
    render(
        "Verifier scores of correct vs hallucinated objects (FiSAO Figure 1)",
        &panels,
    )
}

/// Writes baseline.json (object level), baseline-sentence.json when sentence
/// scores exist, and figure1.svg into `out`; returns the written paths.
pub fn write(out: &Path, verifier: &VerifierInfo, scores: &BaselineScores) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    let object = baselines(
        ScoreLevel::Object,
        verifier,
        &scores.token_correct,
        &scores.token_hallucinated,
    )?;
    let path = out.join("baseline.json");
    std::fs::write(&path, serde_json::to_string_pretty(&object)? + "\n")?;
    written.push(path);
    if !scores.sentence_correct.is_empty() || !scores.sentence_hallucinated.is_empty() {
        let s = baselines(
            ScoreLevel::Sentence,
            verifier,
            &scores.sentence_correct,
            &scores.sentence_hallucinated,
        )?;
        let path = out.join("baseline-sentence.json");
        std::fs::write(&path, serde_json::to_string_pretty(&s)? + "\n")?;
        written.push(path);
    }
    let path = out.join("figure1.svg");
    std::fs::write(&path, figure(scores))?;
    written.push(path);
    Ok(written)
}

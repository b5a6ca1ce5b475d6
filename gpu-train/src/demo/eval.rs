//! Captioning a split and measuring it (synthetic-world.md, "The report"):
//! CHAIR_s / CHAIR_i against the world's ground truth, recall, objects and
//! repeated mentions per caption, the mean verifier score of mentions, each
//! with a standard error over images.
//!
//! Counting follows CHAIR: an object is a canonical entity, counted once per
//! caption however often it is named; a caption is hallucinated when it
//! names at least one absent object. Repeats are reported separately, so a
//! model that farms reward by repeating a grounded object shows up.

use anyhow::Result;
use serde::Serialize;
use tch::Tensor;

use super::task::{Judged, WorldTask};
use crate::llava::{LlavaModel, SamplingConfig, generate};
use crate::trainer::rollout::decode_with_offsets;

/// One generated caption, judged.
#[derive(Clone, Debug)]
pub struct Caption {
    /// Sample index in the task.
    pub index: usize,
    /// Decoded text.
    pub text: String,
    /// Its mentions with scores and correctness.
    pub mentions: Vec<Judged>,
    /// Sentence-level score of the whole caption.
    pub sentence_score: f64,
}

/// Generates a caption for every sample of `task` with `sampling` (greedy for
/// evaluation) in batches, judging each one.
pub fn caption_all(
    model: &LlavaModel,
    task: &WorldTask,
    sampling: &SamplingConfig,
    batch_size: usize,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<Caption>> {
    let n = task.samples().len();
    let indices: Vec<usize> = (0..n).collect();
    let mut out = Vec::with_capacity(n);
    for chunk in indices.chunks(batch_size.max(1)) {
        let prompts = vec![task.prompt_ids().to_vec(); chunk.len()];
        let pixels: Tensor = task.pixel_batch(chunk)?.to(model.device());
        let responses = generate(model, &prompts, Some(&pixels), sampling)?;
        for (&index, ids) in chunk.iter().zip(&responses) {
            let (text, _) = decode_with_offsets(task.tokenizer().inner(), ids)?;
            out.push(Caption {
                index,
                mentions: task.judge(index, &text)?,
                sentence_score: task.sentence_score(index, &text)?,
                text,
            });
        }
        progress(out.len() as u64, n as u64);
    }
    Ok(out)
}

/// A value with its standard error over images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Estimate {
    /// The value.
    pub value: f64,
    /// Its standard error.
    pub se: f64,
}

/// The report's metrics of one model on one split.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Images captioned.
    pub images: usize,
    /// Share of captions naming at least one absent object.
    pub chair_s: Estimate,
    /// Share of named objects that are absent.
    pub chair_i: Estimate,
    /// Share of present objects that are named.
    pub recall: Estimate,
    /// Distinct objects named per caption.
    pub objects_per_caption: Estimate,
    /// Mentions of an already named object per caption.
    pub duplicates_per_caption: Estimate,
    /// Mean verifier score of the kept mentions.
    pub mean_score: Estimate,
    /// Object-level F1 of precision (1 - CHAIR_i) and recall: the
    /// checkpoint-selection criterion, which punishes both hallucinating and
    /// naming nothing.
    pub f1: f64,
}

/// Per-caption counts behind [`Metrics`].
struct Counts {
    named: f64,
    hallucinated: f64,
    present: f64,
    found: f64,
    duplicates: f64,
}

/// Measures `captions`, keeping only the mentions `keep` accepts (all of them
/// for a model; those at or above the band's lower edge for the verifier filter).
pub fn measure(task: &WorldTask, captions: &[Caption], keep: &dyn Fn(&Judged) -> bool) -> Metrics {
    let mut counts = Vec::with_capacity(captions.len());
    let mut scores = Vec::new();
    for c in captions {
        let mut seen = std::collections::BTreeSet::new();
        let mut k = Counts {
            named: 0.0,
            hallucinated: 0.0,
            present: task.truth(c.index).len() as f64,
            found: 0.0,
            duplicates: 0.0,
        };
        for j in c.mentions.iter().filter(|j| keep(j)) {
            scores.push(j.score);
            if !seen.insert(j.mention.entity) {
                k.duplicates += 1.0;
                continue;
            }
            k.named += 1.0;
            if j.correct {
                k.found += 1.0;
            } else {
                k.hallucinated += 1.0;
            }
        }
        counts.push(k);
    }
    let any_h: Vec<f64> = counts
        .iter()
        .map(|k| f64::from(u8::from(k.hallucinated > 0.0)))
        .collect();
    let chair_i = ratio(&counts, |k| (k.hallucinated, k.named));
    let recall = ratio(&counts, |k| (k.found, k.present));
    let precision = 1.0 - chair_i.value;
    let f1 = if precision + recall.value > 0.0 {
        2.0 * precision * recall.value / (precision + recall.value)
    } else {
        0.0
    };
    Metrics {
        images: captions.len(),
        chair_s: mean(&any_h),
        chair_i,
        recall,
        objects_per_caption: mean(&counts.iter().map(|k| k.named).collect::<Vec<_>>()),
        duplicates_per_caption: mean(&counts.iter().map(|k| k.duplicates).collect::<Vec<_>>()),
        mean_score: mean(&scores),
        f1,
    }
}

/// Mean and its standard error (sample standard deviation / sqrt n).
pub fn mean(xs: &[f64]) -> Estimate {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return Estimate::default();
    }
    let m = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return Estimate { value: m, se: 0.0 };
    }
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    Estimate {
        value: m,
        se: (var / n).sqrt(),
    }
}

/// A ratio of sums over images, sum(a) / sum(b), with its delta-method
/// standard error (images are the independent units, not objects).
fn ratio(counts: &[Counts], f: impl Fn(&Counts) -> (f64, f64)) -> Estimate {
    let pairs: Vec<(f64, f64)> = counts.iter().map(f).collect();
    let (sa, sb) = pairs
        .iter()
        .fold((0.0, 0.0), |(x, y), (a, b)| (x + a, y + b));
    if sb == 0.0 {
        return Estimate::default();
    }
    let r = sa / sb;
    let n = pairs.len() as f64;
    if pairs.len() < 2 {
        return Estimate { value: r, se: 0.0 };
    }
    let mean_b = sb / n;
    let resid = pairs.iter().map(|(a, b)| (a - r * b).powi(2)).sum::<f64>() / (n - 1.0);
    Estimate {
        value: r,
        se: (resid / n).sqrt() / mean_b,
    }
}

/// Token-level and sentence-level scores of SFT mentions, split by
/// correctness: every mention carries its own score (token level) and its
/// caption's whole-text score (sentence level), so both detectors are judged
/// on the same mentions.
#[derive(Clone, Debug, Default)]
pub struct DetectionScores {
    /// Own scores of correct mentions.
    pub token_correct: Vec<f64>,
    /// Own scores of hallucinated mentions.
    pub token_hallucinated: Vec<f64>,
    /// Caption scores of correct mentions.
    pub sentence_correct: Vec<f64>,
    /// Caption scores of hallucinated mentions.
    pub sentence_hallucinated: Vec<f64>,
}

impl DetectionScores {
    /// Collects from judged captions.
    pub fn from_captions(captions: &[Caption]) -> Self {
        let mut d = DetectionScores::default();
        for c in captions {
            for j in &c.mentions {
                let (tok, sen) = if j.correct {
                    (&mut d.token_correct, &mut d.sentence_correct)
                } else {
                    (&mut d.token_hallucinated, &mut d.sentence_hallucinated)
                };
                tok.push(j.score);
                sen.push(c.sentence_score);
            }
        }
        d
    }

    /// AUROC of (token, sentence) scores for telling correct from hallucinated
    /// mentions; `None` when a class is empty.
    pub fn auroc(&self) -> Option<(f64, f64)> {
        use reward_core::metrics::auroc::auroc;
        let t = auroc(&self.token_correct, &self.token_hallucinated).ok()?;
        let s = auroc(&self.sentence_correct, &self.sentence_hallucinated).ok()?;
        Some((t, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_standard_error() {
        let e = mean(&[1.0, 2.0, 3.0, 4.0]);
        assert!((e.value - 2.5).abs() < 1e-12);
        // sample variance 5/3, se = sqrt(5/3 / 4)
        assert!((e.se - (5.0f64 / 12.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean(&[]), Estimate::default());
    }

    #[test]
    fn ratio_of_sums_with_delta_se() {
        let c = |a, b| Counts {
            named: b,
            hallucinated: a,
            present: 0.0,
            found: 0.0,
            duplicates: 0.0,
        };
        let counts = [c(1.0, 2.0), c(0.0, 2.0), c(1.0, 4.0)];
        let e = ratio(&counts, |k| (k.hallucinated, k.named));
        assert!((e.value - 0.25).abs() < 1e-12);
        // residuals a - r b: 0.5, -0.5, 0 -> var 0.25, mean b 8/3
        let want = (0.25f64 / 3.0).sqrt() / (8.0 / 3.0);
        assert!((e.se - want).abs() < 1e-12, "{} vs {want}", e.se);
    }
}

//! Captioning a split and measuring it (synthetic-world.md, "The report"):
//! CHAIR_s / CHAIR_i against the world's ground truth, recall, objects and
//! repeated mentions per caption, the mean verifier score of mentions, each
//! with a standard error over images.
//!
//! The planted bias is also measured directly ([`PairRates`]): how often a
//! caption names a paired class whose partner is drawn but which is not
//! itself in the image, next to the same rate when it is present and when
//! neither is.
//!
//! Counting follows CHAIR: an object is a canonical entity, counted once per
//! caption however often it is named; a caption is hallucinated when it
//! names at least one absent object. Repeats are reported separately, so a
//! model that farms reward by repeating a grounded object shows up.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use reward_core::vocab::Expansion;
use reward_core::{EntityId, Matcher, Vocabulary};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::task::{Judged, WorldTask};
use crate::llava::{LlavaModel, SamplingConfig, generate};
use crate::trainer::rollout::decode_with_offsets;
use crate::world::{Split, World};

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The value.
    #[serde(deserialize_with = "nan_if_null")]
    pub value: f64,
    /// Its standard error.
    #[serde(deserialize_with = "nan_if_null")]
    pub se: f64,
}

/// JSON writes NaN (a rate with no cases) as `null`; read it back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The report's metrics of one model on one split.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
    /// The planted pair bias, measured directly.
    pub pairs: PairRates,
    /// Object-level F1 of precision (1 - CHAIR_i) and recall: the
    /// checkpoint-selection criterion, which punishes both hallucinating and
    /// naming nothing.
    #[serde(deserialize_with = "nan_if_null")]
    pub f1: f64,
}

/// How often a paired class B is named, by what the image holds (every
/// image contributes one case per paired class; ratios of sums over images,
/// standard errors by the delta method).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PairRates {
    /// P(names B | B's partner A is drawn, B is not): the planted bias
    /// (training captions do this in `bias_rate` of such cases).
    pub partner_hallucination: Estimate,
    /// P(names B | A and B are both drawn): how often a present partner is named.
    pub partner_recall: Estimate,
    /// P(names B | neither A nor B is drawn): hallucinating a paired class
    /// without its cue, the rate the bias adds to.
    pub uncued_hallucination: Estimate,
    /// Cases behind each rate (partner absent, both present, neither).
    pub cases: [usize; 3],
}

/// Per-caption counts behind [`Metrics`].
struct Counts {
    named: f64,
    hallucinated: f64,
    present: f64,
    found: f64,
    duplicates: f64,
}

/// One caption reduced to what the metrics need: its ground truth and the
/// entities it names, in order (repeats included).
struct Row<'a> {
    truth: &'a BTreeSet<EntityId>,
    named: BTreeSet<EntityId>,
    counts: Counts,
}

impl<'a> Row<'a> {
    fn new(truth: &'a BTreeSet<EntityId>, mentions: impl Iterator<Item = EntityId>) -> Self {
        let mut named = BTreeSet::new();
        let mut k = Counts {
            named: 0.0,
            hallucinated: 0.0,
            present: truth.len() as f64,
            found: 0.0,
            duplicates: 0.0,
        };
        for e in mentions {
            if !named.insert(e) {
                k.duplicates += 1.0;
                continue;
            }
            k.named += 1.0;
            if truth.contains(&e) {
                k.found += 1.0;
            } else {
                k.hallucinated += 1.0;
            }
        }
        Row {
            truth,
            named,
            counts: k,
        }
    }
}

/// Measures `captions`, keeping only the mentions `keep` accepts (all of them
/// for a model; those at or above the band's lower edge for the verifier filter).
pub fn measure(task: &WorldTask, captions: &[Caption], keep: &dyn Fn(&Judged) -> bool) -> Metrics {
    let mut rows = Vec::with_capacity(captions.len());
    let mut scores = Vec::new();
    for c in captions {
        let kept: Vec<&Judged> = c.mentions.iter().filter(|j| keep(j)).collect();
        scores.extend(kept.iter().map(|j| j.score));
        rows.push(Row::new(
            task.truth(c.index),
            kept.iter().map(|j| j.mention.entity),
        ));
    }
    summarise(&rows, &scores, task.partners())
}

fn summarise(rows: &[Row], scores: &[f64], partners: &[(EntityId, EntityId)]) -> Metrics {
    let counts: Vec<&Counts> = rows.iter().map(|r| &r.counts).collect();
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
        images: rows.len(),
        chair_s: mean(&any_h),
        chair_i,
        recall,
        objects_per_caption: mean(&counts.iter().map(|k| k.named).collect::<Vec<_>>()),
        duplicates_per_caption: mean(&counts.iter().map(|k| k.duplicates).collect::<Vec<_>>()),
        mean_score: mean(scores),
        pairs: pair_rates(rows, partners),
        f1,
    }
}

/// [`PairRates`] of captions; `partners` lists `(B, A)` for every paired class B.
fn pair_rates(rows: &[Row], partners: &[(EntityId, EntityId)]) -> PairRates {
    // Per image: (named, cases) for partner absent, both present, neither.
    let mut per_image = [const { Vec::new() }; 3];
    for r in rows {
        let mut acc = [(0.0, 0.0); 3];
        for &(b, a) in partners {
            let case = match (r.truth.contains(&a), r.truth.contains(&b)) {
                (true, false) => 0,
                (true, true) => 1,
                (false, false) => 2,
                (false, true) => continue,
            };
            acc[case].0 += f64::from(u8::from(r.named.contains(&b)));
            acc[case].1 += 1.0;
        }
        for (list, x) in per_image.iter_mut().zip(acc) {
            list.push(x);
        }
    }
    let cases = |i: usize| per_image[i].iter().map(|x: &(f64, f64)| x.1).sum::<f64>() as usize;
    PairRates {
        partner_hallucination: ratio_of(&per_image[0]),
        partner_recall: ratio_of(&per_image[1]),
        uncued_hallucination: ratio_of(&per_image[2]),
        cases: [cases(0), cases(1), cases(2)],
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
fn ratio(counts: &[&Counts], f: impl Fn(&Counts) -> (f64, f64)) -> Estimate {
    let pairs: Vec<(f64, f64)> = counts.iter().map(|k| f(k)).collect();
    ratio_of(&pairs)
}

/// [`ratio`] of per-image `(a, b)` pairs.
fn ratio_of(pairs: &[(f64, f64)]) -> Estimate {
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

/// One line of a `captions/*.jsonl` file as the report writes it.
#[derive(serde::Deserialize)]
struct CaptionLine {
    image: usize,
    caption: String,
}

/// Re-measures the caption files of an earlier run (`dir/captions/*.jsonl`,
/// greedy captions of the test split) against the world's ground truth with
/// the reward's matcher: a Markdown table of CHAIR_i, recall and the pair
/// rates per file. No model is needed; mention scores are not recomputed.
pub fn remeasure_dir(world: &World, dir: &Path, threads: usize) -> Result<String> {
    let cdir = dir.join("captions");
    let mut files: Vec<_> = std::fs::read_dir(&cdir)
        .with_context(|| format!("reading {}", cdir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut parsed = Vec::new();
    let mut n_images = 0;
    for f in &files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let mut lines = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let l: CaptionLine = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a caption line", f.display(), i + 1))?;
            n_images = n_images.max(l.image + 1);
            lines.push(l);
        }
        parsed.push((f, lines));
    }
    if n_images > world.len(Split::Test) {
        anyhow::bail!(
            "{}: captions of {n_images} images, the world's test split has {}",
            cdir.display(),
            world.len(Split::Test)
        );
    }
    let samples = world.generate(Split::Test, 0..n_images as u64, threads);
    let truth: Vec<_> = samples
        .iter()
        .map(|s| super::task::truth(world, s))
        .collect();
    let partners = super::task::partners(world);
    let matcher = Matcher::new(&Vocabulary::builtin(Expansion::Fisao));
    let mut out = String::from(
        "| captions | images | CHAIR_i | recall | repeats / caption | partner named, partner absent | partner named, both present | paired class named, neither present |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for (f, lines) in parsed {
        let rows: Vec<Row> = lines
            .iter()
            .map(|l| {
                Row::new(
                    &truth[l.image],
                    matcher.find(&l.caption).into_iter().map(|m| m.entity),
                )
            })
            .collect();
        let m = summarise(&rows, &[], &partners);
        let p = &m.pairs;
        let name = f
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} ({}) | {} ({}) | {} ({}) |",
            m.images,
            cell(m.chair_i),
            cell(m.recall),
            cell(m.duplicates_per_caption),
            cell(p.partner_hallucination),
            p.cases[0],
            cell(p.partner_recall),
            p.cases[1],
            cell(p.uncued_hallucination),
            p.cases[2],
        );
    }
    Ok(out)
}

fn cell(e: Estimate) -> String {
    format!("{:.3} ± {:.3}", e.value, e.se)
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
    fn pair_rates_count_each_case_once_per_image() {
        let (fork, knife, cup) = (EntityId(1), EntityId(2), EntityId(3));
        let partners = [(fork, knife), (knife, fork)];
        let only_knife: BTreeSet<_> = [knife].into();
        let both: BTreeSet<_> = [fork, knife].into();
        let none: BTreeSet<_> = [cup].into();
        let rows = [
            // knife drawn, fork named: the planted bias.
            Row::new(&only_knife, [knife, fork, fork].into_iter()),
            // knife drawn, fork not named.
            Row::new(&only_knife, [knife].into_iter()),
            // both drawn, only fork named.
            Row::new(&both, [fork].into_iter()),
            // neither drawn, knife named.
            Row::new(&none, [cup, knife].into_iter()),
        ];
        let p = pair_rates(&rows, &partners);
        assert_eq!(p.cases, [2, 2, 2]);
        assert!((p.partner_hallucination.value - 0.5).abs() < 1e-12);
        assert!((p.partner_recall.value - 0.5).abs() < 1e-12);
        assert!((p.uncued_hallucination.value - 0.5).abs() < 1e-12);
        assert!(p.partner_hallucination.se > 0.0);
        // The repeated fork counts once for the rates and once as a duplicate.
        assert_eq!(rows[0].counts.duplicates, 1.0);
        assert_eq!(rows[0].counts.hallucinated, 1.0);
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
        let refs: Vec<&Counts> = counts.iter().collect();
        let e = ratio(&refs, |k| (k.hallucinated, k.named));
        assert!((e.value - 0.25).abs() < 1e-12);
        // residuals a - r b: 0.5, -0.5, 0 -> var 0.25, mean b 8/3
        let want = (0.25f64 / 3.0).sqrt() / (8.0 / 3.0);
        assert!((e.se - want).abs() < 1e-12, "{} vs {want}", e.se);
    }
}

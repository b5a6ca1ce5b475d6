//! The paper's analysis figures from scored outputs (method.md section 8):
//! - Figure 1: verifier scores of correct vs hallucinated object mentions,
//!   token level (each mention's own score) vs sentence level (the score of
//!   the whole response, given to every mention in it), with the AUROC of
//!   each for telling correct from hallucinated;
//! - Figure 2: sentence-level score vs BLEU and vs ROUGE-L per caption, with
//!   Pearson r;
//! - Figure 4: object reward distribution before vs after training.
//!
//! Input, one JSON object per line (fields a figure does not use may be absent):
//! `{"image_id": 1, "sentence_score": 21.5, "bleu": 0.31, "rouge_l": 0.52,
//!   "mentions": [{"entity": "dog", "score": 27.1, "hallucinated": false, "reward": 0.4}]}`.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::auroc::{auroc, pearson};
use super::error::{EvalError, EvalErrorKind};
use super::plots::{Panel, Series, render};

/// One scored object mention.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoredMention {
    /// Canonical entity.
    pub entity: String,
    /// Token-level verifier score of the mention.
    pub score: f64,
    /// Not in the image's ground truth.
    pub hallucinated: bool,
    /// The token reward it received (eq. 8), if recorded.
    pub reward: Option<f64>,
}

/// One scored response.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoredOutput {
    /// Image id.
    pub image_id: u64,
    /// Input line (0 when not from a file).
    pub line: usize,
    /// Verifier score of the whole response.
    pub sentence_score: Option<f64>,
    /// Per-caption BLEU (pycocoevalcap's per-image BLEU-4 is the default the CLI fills in).
    pub bleu: Option<f64>,
    /// Per-caption ROUGE-L.
    pub rouge_l: Option<f64>,
    /// Object mentions with scores.
    pub mentions: Vec<ScoredMention>,
}

/// Figure 1 and its numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure1 {
    /// The SVG document.
    pub svg: String,
    /// AUROC of token-level scores (correct = positive class).
    pub auroc_token: f64,
    /// AUROC of sentence-level scores.
    pub auroc_sentence: f64,
    /// Correct mentions.
    pub n_correct: usize,
    /// Hallucinated mentions.
    pub n_hallucinated: usize,
}

/// Figure 2 and its numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure2 {
    /// The SVG document.
    pub svg: String,
    /// Pearson r of sentence score vs BLEU.
    pub r_bleu: f64,
    /// Pearson r of sentence score vs ROUGE-L.
    pub r_rouge_l: f64,
    /// Captions plotted.
    pub n: usize,
}

/// Figure 4 and its numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure4 {
    /// The SVG document.
    pub svg: String,
    /// Mean reward before training.
    pub mean_before: f64,
    /// Mean reward after training.
    pub mean_after: f64,
}

fn missing(o: &ScoredOutput, field: &str) -> EvalError {
    let at = if o.line == 0 {
        String::new()
    } else {
        format!("line {}: ", o.line)
    };
    EvalError::new(
        EvalErrorKind::Invalid,
        format!(
            "{at}image id {}: field {field:?} is needed for this figure",
            o.image_id
        ),
    )
}

/// Figure 1: token vs sentence score distributions of correct vs
/// hallucinated mentions.
pub fn figure1(outputs: &[ScoredOutput]) -> Result<Figure1, EvalError> {
    let (mut tok_c, mut tok_h, mut sen_c, mut sen_h) = (vec![], vec![], vec![], vec![]);
    for o in outputs {
        let sentence = o
            .sentence_score
            .ok_or_else(|| missing(o, "sentence_score"))?;
        for m in &o.mentions {
            let (t, s) = if m.hallucinated {
                (&mut tok_h, &mut sen_h)
            } else {
                (&mut tok_c, &mut sen_c)
            };
            t.push(m.score);
            s.push(sentence);
        }
    }
    let auroc_token = auroc(&tok_c, &tok_h)?;
    let auroc_sentence = auroc(&sen_c, &sen_h)?;
    let panel = |title: String, c: &[f64], h: &[f64]| Panel::Histogram {
        title,
        x_label: String::from("verifier score"),
        series: vec![
            Series {
                name: String::from("correct"),
                values: c.to_vec(),
            },
            Series {
                name: String::from("hallucinated"),
                values: h.to_vec(),
            },
        ],
        bins: 20,
    };
    let svg = render(
        "Figure 1: correct vs hallucinated object mentions",
        &[
            panel(
                format!("token level (AUROC {auroc_token:.3})"),
                &tok_c,
                &tok_h,
            ),
            panel(
                format!("sentence level (AUROC {auroc_sentence:.3})"),
                &sen_c,
                &sen_h,
            ),
        ],
    );
    Ok(Figure1 {
        svg,
        auroc_token,
        auroc_sentence,
        n_correct: tok_c.len(),
        n_hallucinated: tok_h.len(),
    })
}

/// Figure 2: sentence-level score vs BLEU and vs ROUGE-L, one point per caption.
pub fn figure2(outputs: &[ScoredOutput]) -> Result<Figure2, EvalError> {
    let (mut s, mut b, mut r) = (vec![], vec![], vec![]);
    for o in outputs {
        s.push(
            o.sentence_score
                .ok_or_else(|| missing(o, "sentence_score"))?,
        );
        b.push(o.bleu.ok_or_else(|| missing(o, "bleu"))?);
        r.push(o.rouge_l.ok_or_else(|| missing(o, "rouge_l"))?);
    }
    let r_bleu = pearson(&s, &b)?;
    let r_rouge_l = pearson(&s, &r)?;
    let pts = |y: &[f64]| s.iter().copied().zip(y.iter().copied()).collect();
    let svg = render(
        "Figure 2: sentence-level verifier score vs caption metrics",
        &[
            Panel::Scatter {
                title: format!("BLEU (Pearson r = {r_bleu:.3})"),
                x_label: String::from("sentence-level score"),
                y_label: String::from("BLEU"),
                points: pts(&b),
            },
            Panel::Scatter {
                title: format!("ROUGE-L (Pearson r = {r_rouge_l:.3})"),
                x_label: String::from("sentence-level score"),
                y_label: String::from("ROUGE-L"),
                points: pts(&r),
            },
        ],
    );
    Ok(Figure2 {
        svg,
        r_bleu,
        r_rouge_l,
        n: s.len(),
    })
}

/// Figure 4: distribution of object rewards before vs after training.
pub fn figure4(before: &[ScoredOutput], after: &[ScoredOutput]) -> Result<Figure4, EvalError> {
    let rewards = |outs: &[ScoredOutput], stage: &str| -> Result<Vec<f64>, EvalError> {
        let mut v = Vec::new();
        for o in outs {
            for m in &o.mentions {
                v.push(m.reward.ok_or_else(|| missing(o, "mentions[].reward"))?);
            }
        }
        if v.is_empty() {
            return Err(EvalError::new(
                EvalErrorKind::Empty,
                format!("no object mentions {stage} training"),
            ));
        }
        Ok(v)
    };
    let (b, a) = (rewards(before, "before")?, rewards(after, "after")?);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mean_before, mean_after) = (mean(&b), mean(&a));
    let svg = render(
        "Figure 4: object rewards before vs after training",
        &[Panel::Histogram {
            title: format!("mean {mean_before:.3} -> {mean_after:.3}"),
            x_label: String::from("object reward"),
            series: vec![
                Series {
                    name: String::from("before"),
                    values: b,
                },
                Series {
                    name: String::from("after"),
                    values: a,
                },
            ],
            bins: 20,
        }],
    );
    Ok(Figure4 {
        svg,
        mean_before,
        mean_after,
    })
}

/// Parses scored outputs (format in the module docs). Errors name the line.
#[cfg(feature = "serde")]
pub fn parse_scored_jsonl(file: &str, text: &str) -> Result<Vec<ScoredOutput>, EvalError> {
    use super::coco::{image_id, parse_error};
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let what = format!("line {}", i + 1);
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| parse_error(file, &what, &format!("invalid JSON: {e}")))?;
        let num = |key: &str| -> Result<Option<f64>, EvalError> {
            match v.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(x) => x.as_f64().map(Some).ok_or_else(|| {
                    parse_error(
                        file,
                        &what,
                        &format!("field {key:?} must be a number, found {x}"),
                    )
                }),
            }
        };
        let mut mentions = Vec::new();
        if let Some(ms) = v.get("mentions") {
            let ms = ms
                .as_array()
                .ok_or_else(|| parse_error(file, &what, "\"mentions\" must be an array"))?;
            for (k, m) in ms.iter().enumerate() {
                let at = format!("{what}: mentions[{k}]");
                let score = m
                    .get("score")
                    .and_then(|x| x.as_f64())
                    .ok_or_else(|| parse_error(file, &at, "missing number \"score\""))?;
                let hallucinated = m
                    .get("hallucinated")
                    .and_then(|x| x.as_bool())
                    .ok_or_else(|| parse_error(file, &at, "missing boolean \"hallucinated\""))?;
                mentions.push(ScoredMention {
                    entity: String::from(m.get("entity").and_then(|x| x.as_str()).unwrap_or("")),
                    score,
                    hallucinated,
                    reward: m.get("reward").and_then(|x| x.as_f64()),
                });
            }
        }
        out.push(ScoredOutput {
            image_id: image_id(file, &what, &v)?,
            line: i + 1,
            sentence_score: num("sentence_score")?,
            bleu: num("bleu")?,
            rouge_l: num("rouge_l")?,
            mentions,
        });
    }
    Ok(out)
}

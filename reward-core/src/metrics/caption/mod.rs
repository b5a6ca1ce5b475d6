//! COCO caption metrics as pycocoevalcap 1.2 reports them: BLEU-1..4,
//! ROUGE-L, CIDEr-D (pure Rust, equal to pycocoevalcap within 1e-6 on
//! `tests/fixtures/eval/caption_fixture.json`) and METEOR through the
//! reference jar when Java is present ([`meteor`], `std` only).
//!
//! Captions and references are tokenised first with [`tokenize::ptb_tokenize`],
//! pycocoevalcap's PTB tokenisation and punctuation removal.
//!
//! ```
//! use reward_core::metrics::caption::{evaluate, CaptionItem};
//! let items = [CaptionItem {
//!     image_id: 1,
//!     candidate: "A dog runs on the grass.".into(),
//!     references: vec!["A dog running on grass.".into(), "A brown dog on the lawn.".into()],
//! }];
//! let report = evaluate(&items).unwrap();
//! assert!(report.bleu[0] > 0.5 && report.rouge_l > 0.5);
//! ```

pub mod bleu;
pub mod cider;
#[cfg(feature = "std")]
pub mod meteor;
pub mod rouge;
pub mod tokenize;

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::chair::Caption;
use super::coco::CocoAnnotations;
use super::error::{EvalError, EvalErrorKind};

/// One image: the candidate caption and its human references (raw text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptionItem {
    /// Image id (for reports and errors).
    pub image_id: u64,
    /// The generated caption.
    pub candidate: String,
    /// Human reference captions (at least one).
    pub references: Vec<String>,
}

/// METEOR's outcome: scores, or why it was not computed.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Meteor {
    /// Scores from meteor-1.5.jar.
    Score {
        /// Corpus METEOR.
        corpus: f64,
        /// Per image, in input order.
        per_item: Vec<f64>,
    },
    /// Not computed: the reason (no Java, no jar, not requested, no `std`).
    Unavailable(String),
}

/// Scores of one image.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ImageScores {
    /// Image id.
    pub image_id: u64,
    /// Sentence BLEU-1..4 (pycocoevalcap's per-image values).
    pub bleu: [f64; 4],
    /// ROUGE-L.
    pub rouge_l: f64,
    /// CIDEr-D.
    pub cider_d: f64,
    /// The PTB-tokenised candidate.
    pub candidate_tokens: String,
}

/// Corpus scores and per-image details.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CaptionReport {
    /// Images evaluated.
    pub n_images: usize,
    /// Corpus BLEU-1..4 (from summed n-gram statistics).
    pub bleu: [f64; 4],
    /// Mean ROUGE-L over images.
    pub rouge_l: f64,
    /// Mean CIDEr-D over images.
    pub cider_d: f64,
    /// METEOR, or why it is unavailable.
    pub meteor: Meteor,
    /// Per image, in input order.
    pub images: Vec<ImageScores>,
}

/// Counts of every n-gram of order 1..=`n` (as pycocoevalcap's `precook`).
pub(crate) fn ngrams<'a>(words: &'a [&'a str], n: usize) -> BTreeMap<&'a [&'a str], usize> {
    let mut out = BTreeMap::new();
    for k in 1..=n {
        for g in words.windows(k) {
            *out.entry(g).or_insert(0) += 1;
        }
    }
    out
}

/// BLEU, ROUGE-L and CIDEr-D of `items`; METEOR is reported unavailable
/// (use [`evaluate_with_meteor`] for it). Errors on an empty list, an item
/// without references, or an empty candidate or reference (naming the image).
pub fn evaluate(items: &[CaptionItem]) -> Result<CaptionReport, EvalError> {
    check(items)?;
    let cand: Vec<String> = items
        .iter()
        .map(|i| tokenize::ptb_tokenize(&i.candidate))
        .collect();
    let refs: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            i.references
                .iter()
                .map(|r| tokenize::ptb_tokenize(r))
                .collect()
        })
        .collect();
    Ok(score_tokenized(items, &cand, &refs))
}

fn split(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// Scores already PTB-tokenised strings (space-separated tokens).
fn score_tokenized(items: &[CaptionItem], cand: &[String], refs: &[Vec<String>]) -> CaptionReport {
    let mut stats = Vec::with_capacity(items.len());
    let mut cider_items = Vec::with_capacity(items.len());
    for (c, rs) in cand.iter().zip(refs) {
        let r: Vec<Vec<&str>> = rs.iter().map(|r| split(r)).collect();
        stats.push(bleu::stats(&split(c), &r));
        cider_items.push((split(c), r));
    }
    let cider = cider::cider_d(&cider_items);
    let mut images = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        let r: Vec<&str> = refs[k].iter().map(String::as_str).collect();
        images.push(ImageScores {
            image_id: item.image_id,
            bleu: bleu::sentence_bleu(&stats[k]),
            rouge_l: rouge::rouge_l(&cand[k], &r),
            cider_d: cider[k],
            candidate_tokens: cand[k].clone(),
        });
    }
    let n = items.len() as f64;
    CaptionReport {
        n_images: items.len(),
        bleu: bleu::corpus_bleu(&stats),
        rouge_l: images.iter().map(|i| i.rouge_l).sum::<f64>() / n,
        cider_d: cider.iter().sum::<f64>() / n,
        meteor: Meteor::Unavailable(String::from("not requested")),
        images,
    }
}

/// [`evaluate`] plus METEOR through the reference jar (`None`: unavailable).
#[cfg(feature = "std")]
pub fn evaluate_with_meteor(
    items: &[CaptionItem],
    config: Option<&meteor::MeteorConfig>,
) -> Result<CaptionReport, EvalError> {
    let mut report = evaluate(items)?;
    let tokenized: Vec<(String, Vec<String>)> = items
        .iter()
        .zip(&report.images)
        .map(|(i, s)| {
            let refs = i
                .references
                .iter()
                .map(|r| tokenize::ptb_tokenize(r))
                .collect();
            (s.candidate_tokens.clone(), refs)
        })
        .collect();
    report.meteor = meteor::meteor(config, &tokenized);
    Ok(report)
}

fn check(items: &[CaptionItem]) -> Result<(), EvalError> {
    if items.is_empty() {
        return Err(EvalError::new(
            EvalErrorKind::Empty,
            "no captions to evaluate",
        ));
    }
    for i in items {
        if i.candidate.trim().is_empty() {
            return Err(EvalError::new(
                EvalErrorKind::Empty,
                format!("image id {}: empty candidate caption", i.image_id),
            ));
        }
        if i.references.is_empty() || i.references.iter().any(|r| r.trim().is_empty()) {
            return Err(EvalError::new(
                EvalErrorKind::Empty,
                format!(
                    "image id {}: no references, or an empty reference",
                    i.image_id
                ),
            ));
        }
    }
    Ok(())
}

/// Pairs generated captions with the human captions of `ann` as references.
/// Errors name the line of an unknown image id, an image without human
/// captions, or a second caption for the same image (pycocoevalcap scores
/// exactly one candidate per image).
pub fn pair_with_references(
    captions: &[Caption],
    ann: &CocoAnnotations,
) -> Result<Vec<CaptionItem>, EvalError> {
    let mut refs: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (id, text) in ann.captions() {
        refs.entry(*id).or_default().push(text.clone());
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(captions.len());
    for c in captions {
        let at = if c.line == 0 {
            String::new()
        } else {
            format!("line {}: ", c.line)
        };
        if !seen.insert(c.image_id) {
            return Err(EvalError::new(
                EvalErrorKind::Invalid,
                format!(
                    "{at}second caption for image id {} (one per image)",
                    c.image_id
                ),
            ));
        }
        let Some(r) = refs.get(&c.image_id) else {
            return Err(EvalError::new(
                EvalErrorKind::UnknownImage,
                format!(
                    "{at}image id {} has no reference captions in the annotations",
                    c.image_id
                ),
            ));
        };
        out.push(CaptionItem {
            image_id: c.image_id,
            candidate: c.caption.clone(),
            references: r.clone(),
        });
    }
    Ok(out)
}

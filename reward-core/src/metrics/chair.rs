//! CHAIR (Rohrbach et al., "Object Hallucination in Image Captioning",
//! EMNLP 2018): CHAIR_s, CHAIR_i and object recall of generated captions
//! against COCO ground truth, in two modes.
//!
//! - [`ChairMode::Reference`] reproduces the original `utils/chair.py`
//!   (LisaAnne/Hallucination @6e4d33c) rule for rule, quirks included
//!   (`metrics/chair_reference.rs`).
//! - [`ChairMode::Fixed`] finds objects with the project's mention matcher and
//!   repairs the quirks (`metrics/chair_fixed.rs`). docs/evaluation.md lists
//!   every difference with an example.
//!
//! The ground truth of an image is the union of its COCO instance categories
//! and the objects the same mode finds in its human captions (as chair.py does).
//! The tables (`data/chair/`) are compiled in and parsed once per
//! [`ChairEvaluator`].
//!
//! ```
//! use reward_core::metrics::chair::{Caption, ChairEvaluator, ChairMode};
//! use reward_core::metrics::coco::CocoAnnotations;
//!
//! let mut ann = CocoAnnotations::default();
//! ann.add_instance(1, "dog");
//! ann.add_caption(1, "A dog lying on a couch.");
//! let chair = ChairEvaluator::new(ChairMode::Reference).unwrap();
//! let caps = [Caption::new(1, "A dog and a cat on a couch.")];
//! let report = chair.evaluate(&caps, &ann).unwrap();
//! assert_eq!(report.chair_s, 1.0); // the cat is hallucinated
//! assert!((report.chair_i - 1.0 / 3.0).abs() < 1e-12);
//! ```

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::chair_fixed::FixedExtractor;
use super::chair_reference::ReferenceExtractor;
use super::coco::CocoAnnotations;
use super::error::{EvalError, EvalErrorKind};

const SYNONYMS_TSV: &str = include_str!("../../../data/chair/chair_synonyms.tsv");
const DOUBLE_WORDS_TSV: &str = include_str!("../../../data/chair/chair_double_words.tsv");
const COCO_TSV: &str = include_str!("../../../data/chair/coco_categories.tsv");

/// Which CHAIR implementation to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum ChairMode {
    /// The original chair.py, quirks included.
    #[default]
    Reference,
    /// The project's matcher with the quirks repaired.
    Fixed,
}

impl ChairMode {
    /// Parses `"reference"` or `"fixed"`.
    pub fn parse(s: &str) -> Result<Self, EvalError> {
        match s {
            "reference" => Ok(Self::Reference),
            "fixed" => Ok(Self::Fixed),
            other => Err(EvalError::new(
                EvalErrorKind::Invalid,
                format!("unknown CHAIR mode {other:?}: expected \"reference\" or \"fixed\""),
            )),
        }
    }
}

/// One generated caption to evaluate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caption {
    /// COCO image id.
    pub image_id: u64,
    /// The generated text.
    pub caption: String,
    /// 1-based line of the input file (0 when not read from a file).
    pub line: usize,
}

impl Caption {
    /// A caption not read from a file.
    pub fn new(image_id: u64, caption: &str) -> Self {
        Self {
            image_id,
            caption: String::from(caption),
            line: 0,
        }
    }
}

/// One COCO object mention found in a caption.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ObjectMention {
    /// The word(s) that named the object (after the mode's normalisation).
    pub word: String,
    /// The COCO category (CHAIR's "node word").
    pub object: &'static str,
    /// Reference mode: index of the merged token; fixed mode: byte offset.
    pub position: usize,
}

/// A mention with its verdict against the ground truth.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct JudgedMention {
    /// The mention.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub mention: ObjectMention,
    /// Its object is not in the image's ground truth.
    pub hallucinated: bool,
}

/// Per-caption CHAIR result.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CaptionScore {
    /// COCO image id.
    pub image_id: u64,
    /// Input line (0 when not from a file).
    pub line: usize,
    /// Every object mention, repeats included.
    pub mentions: Vec<JudgedMention>,
    /// Distinct hallucinated objects.
    pub hallucinated_objects: Vec<&'static str>,
    /// The image's ground-truth objects.
    pub ground_truth: Vec<&'static str>,
    /// 1 if any mention is hallucinated.
    pub chair_s: f64,
    /// Hallucinated mentions / mentions (0 without mentions).
    pub chair_i: f64,
    /// Distinct correct objects / ground-truth objects (`None` if the image has none).
    pub recall: Option<f64>,
    /// Mentions of an object already mentioned earlier in the caption.
    pub repeats: usize,
}

/// Corpus-level CHAIR.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ChairReport {
    /// The mode that produced it.
    pub mode: ChairMode,
    /// Captions evaluated.
    pub n_captions: usize,
    /// Object mentions, repeats included.
    pub n_mentions: usize,
    /// Hallucinated mentions.
    pub n_hallucinated: usize,
    /// Captions with at least one hallucination / captions.
    pub chair_s: f64,
    /// Hallucinated mentions / mentions (micro average, as chair.py).
    pub chair_i: f64,
    /// Pooled recall: sum of distinct correct objects / sum of ground-truth
    /// objects over captions (not in the original chair.py).
    pub recall: f64,
    /// Mentions per caption.
    pub mentions_per_caption: f64,
    /// Repeated mentions per caption (method.md section 6).
    pub repeats_per_caption: f64,
    /// Per-caption details, in input order.
    pub captions: Vec<CaptionScore>,
}

/// The compiled-in CHAIR tables of chair.py.
#[derive(Clone, Debug)]
pub(crate) struct ChairTables {
    /// The 80 COCO categories (node words) in COCO id order.
    pub coco: Vec<&'static str>,
    /// Their COCO ids (1..90 with gaps), same order.
    pub coco_ids: Vec<u16>,
    /// Surface word exactly as chair.py keys it (stray spaces kept) -> category index.
    pub synonyms: BTreeMap<&'static str, u8>,
    /// Bigram -> replacement.
    pub double_words: BTreeMap<&'static str, &'static str>,
}

impl ChairTables {
    /// Parses `data/chair/chair_synonyms.tsv` and `chair_double_words.tsv`.
    pub fn builtin() -> Result<Self, EvalError> {
        let mut coco = Vec::with_capacity(80);
        let mut synonyms = BTreeMap::new();
        for (n, line) in SYNONYMS_TSV.lines().enumerate().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            let [_, node, _, words] = cols[..] else {
                return Err(table_error("chair_synonyms.tsv", n + 1));
            };
            let index =
                u8::try_from(coco.len()).map_err(|_| table_error("chair_synonyms.tsv", n + 1))?;
            coco.push(node);
            for w in words.split('|') {
                // chair.py assigns in file order; no word is on two lines.
                synonyms.insert(w, index);
            }
        }
        let mut double_words = BTreeMap::new();
        for (n, line) in DOUBLE_WORDS_TSV.lines().enumerate().skip(1) {
            let mut cols = line.split('\t');
            let (Some(bigram), Some(replacement)) = (cols.next(), cols.next()) else {
                return Err(table_error("chair_double_words.tsv", n + 1));
            };
            double_words.insert(bigram, replacement);
        }
        let mut coco_ids = Vec::with_capacity(80);
        for (n, line) in COCO_TSV.lines().enumerate().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            let (Some(id), Some(name)) = (cols.get(1), cols.get(2)) else {
                return Err(table_error("coco_categories.tsv", n + 1));
            };
            let id: u16 = id
                .parse()
                .map_err(|_| table_error("coco_categories.tsv", n + 1))?;
            // Same order as chair.py's synonyms.txt (COCO id order).
            if coco.get(coco_ids.len()) != Some(name) {
                return Err(table_error("coco_categories.tsv", n + 1));
            }
            coco_ids.push(id);
        }
        if coco_ids.len() != coco.len() {
            return Err(table_error("coco_categories.tsv", coco_ids.len() + 2));
        }
        Ok(Self {
            coco,
            coco_ids,
            synonyms,
            double_words,
        })
    }

    /// The COCO category index of a category name.
    pub fn category(&self, name: &str) -> Option<u8> {
        self.coco.iter().position(|c| *c == name).map(|i| i as u8)
    }
}

fn table_error(file: &str, line: usize) -> EvalError {
    EvalError::new(
        EvalErrorKind::Parse,
        format!("data/chair/{file} line {line}: malformed row in the compiled-in table"),
    )
}

enum Extractor {
    Reference(ReferenceExtractor),
    Fixed(FixedExtractor),
}

/// A CHAIR evaluator: tables parsed (and, in fixed mode, the matcher built) once.
pub struct ChairEvaluator {
    mode: ChairMode,
    tables: ChairTables,
    extractor: Extractor,
}

impl ChairEvaluator {
    /// Builds the evaluator for `mode` from the compiled-in tables (and, for
    /// [`ChairMode::Fixed`], the built-in vocabulary).
    pub fn new(mode: ChairMode) -> Result<Self, EvalError> {
        let tables = ChairTables::builtin()?;
        let extractor = match mode {
            ChairMode::Reference => Extractor::Reference(ReferenceExtractor::new()),
            ChairMode::Fixed => Extractor::Fixed(FixedExtractor::new(&tables)?),
        };
        Ok(Self {
            mode,
            tables,
            extractor,
        })
    }

    /// The mode.
    pub fn mode(&self) -> ChairMode {
        self.mode
    }

    /// The 80 COCO category names in COCO id order.
    pub fn categories(&self) -> &[&'static str] {
        &self.tables.coco
    }

    /// The COCO object mentions of one caption, in order, repeats included.
    pub fn mentions(&self, caption: &str) -> Vec<ObjectMention> {
        match &self.extractor {
            Extractor::Reference(r) => r.mentions(&self.tables, caption),
            Extractor::Fixed(f) => f.mentions(&self.tables, caption),
        }
    }

    /// Ground-truth object sets per image: instance categories plus the
    /// objects this mode finds in the human captions. Instance categories
    /// that are not COCO's 80 are an error naming the image.
    pub fn ground_truth(
        &self,
        ann: &CocoAnnotations,
    ) -> Result<BTreeMap<u64, BTreeSet<&'static str>>, EvalError> {
        let mut gt: BTreeMap<u64, BTreeSet<&'static str>> = BTreeMap::new();
        for &id in ann.image_ids() {
            gt.insert(id, BTreeSet::new());
        }
        for (id, name) in ann.instances() {
            let cat = self.tables.category(name).ok_or_else(|| {
                EvalError::new(
                    EvalErrorKind::Invalid,
                    format!(
                        "image {id}: instance category {name:?} is not one of COCO's 80 categories"
                    ),
                )
            })?;
            gt.entry(*id)
                .or_default()
                .insert(self.tables.coco[cat as usize]);
        }
        for (id, text) in ann.captions() {
            let set = gt.entry(*id).or_default();
            set.extend(self.mentions(text).into_iter().map(|m| m.object));
        }
        Ok(gt)
    }

    /// CHAIR of `captions` against the annotations. Errors on an empty
    /// caption list, an empty caption, or an image id the annotations do
    /// not contain (each naming the line and id).
    pub fn evaluate(
        &self,
        captions: &[Caption],
        ann: &CocoAnnotations,
    ) -> Result<ChairReport, EvalError> {
        let gt = self.ground_truth(ann)?;
        self.evaluate_with(captions, &gt)
    }

    /// Like [`ChairEvaluator::evaluate`] with precomputed ground truth.
    pub fn evaluate_with(
        &self,
        captions: &[Caption],
        gt: &BTreeMap<u64, BTreeSet<&'static str>>,
    ) -> Result<ChairReport, EvalError> {
        if captions.is_empty() {
            return Err(EvalError::new(
                EvalErrorKind::Empty,
                "no captions to evaluate",
            ));
        }
        let mut scores = Vec::with_capacity(captions.len());
        for cap in captions {
            let truth = gt.get(&cap.image_id).ok_or_else(|| {
                EvalError::new(
                    EvalErrorKind::UnknownImage,
                    format!(
                        "{}image id {} is not in the annotation files",
                        line_prefix(cap.line),
                        cap.image_id
                    ),
                )
            })?;
            if cap.caption.trim().is_empty() {
                return Err(EvalError::new(
                    EvalErrorKind::Empty,
                    format!(
                        "{}empty caption for image id {}",
                        line_prefix(cap.line),
                        cap.image_id
                    ),
                ));
            }
            scores.push(score_caption(cap, self.mentions(&cap.caption), truth));
        }
        Ok(aggregate(self.mode, scores))
    }
}

/// One call: CHAIR of `captions` against `ann` in `mode`.
pub fn evaluate(
    captions: &[Caption],
    ann: &CocoAnnotations,
    mode: ChairMode,
) -> Result<ChairReport, EvalError> {
    ChairEvaluator::new(mode)?.evaluate(captions, ann)
}

fn line_prefix(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("line {line}: ")
    }
}

/// Judges one caption's mentions against its image's ground truth.
fn score_caption(
    cap: &Caption,
    mentions: Vec<ObjectMention>,
    truth: &BTreeSet<&'static str>,
) -> CaptionScore {
    let mut seen = BTreeSet::new();
    let mut repeats = 0;
    let mut hallucinated_objects = Vec::new();
    let mut judged = Vec::with_capacity(mentions.len());
    for m in mentions {
        let hallucinated = !truth.contains(m.object);
        if !seen.insert(m.object) {
            repeats += 1;
        } else if hallucinated {
            hallucinated_objects.push(m.object);
        }
        judged.push(JudgedMention {
            mention: m,
            hallucinated,
        });
    }
    let n_hal = judged.iter().filter(|m| m.hallucinated).count();
    let correct = seen.iter().filter(|o| truth.contains(*o)).count();
    CaptionScore {
        image_id: cap.image_id,
        line: cap.line,
        chair_s: if n_hal > 0 { 1.0 } else { 0.0 },
        chair_i: if judged.is_empty() {
            0.0
        } else {
            n_hal as f64 / judged.len() as f64
        },
        recall: (!truth.is_empty()).then(|| correct as f64 / truth.len() as f64),
        mentions: judged,
        hallucinated_objects,
        ground_truth: truth.iter().copied().collect(),
        repeats,
    }
}

/// Corpus-level numbers from per-caption results.
fn aggregate(mode: ChairMode, captions: Vec<CaptionScore>) -> ChairReport {
    let n = captions.len();
    let n_mentions: usize = captions.iter().map(|c| c.mentions.len()).sum();
    let n_hallucinated: usize = captions
        .iter()
        .map(|c| c.mentions.iter().filter(|m| m.hallucinated).count())
        .sum();
    let with_hal = captions.iter().filter(|c| c.chair_s > 0.0).count();
    let (mut correct, mut truth) = (0usize, 0usize);
    for c in &captions {
        let distinct: BTreeSet<&str> = c.mentions.iter().map(|m| m.mention.object).collect();
        correct += distinct
            .iter()
            .filter(|o| c.ground_truth.contains(o))
            .count();
        truth += c.ground_truth.len();
    }
    let repeats: usize = captions.iter().map(|c| c.repeats).sum();
    ChairReport {
        mode,
        n_captions: n,
        n_mentions,
        n_hallucinated,
        chair_s: with_hal as f64 / n as f64,
        chair_i: if n_mentions == 0 {
            0.0
        } else {
            n_hallucinated as f64 / n_mentions as f64
        },
        recall: if truth == 0 {
            0.0
        } else {
            correct as f64 / truth as f64
        },
        mentions_per_caption: n_mentions as f64 / n as f64,
        repeats_per_caption: repeats as f64 / n as f64,
        captions,
    }
}

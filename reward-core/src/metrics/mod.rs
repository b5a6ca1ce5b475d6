//! Evaluation metrics of the paper's section 8 (method.md): CHAIR, POPE,
//! COCO caption metrics (BLEU-1..4, ROUGE-L, CIDEr-D, METEOR through the
//! reference jar), AUROC and Pearson r, and the SVG figures.
//!
//! Everything here is `no_std` + `alloc`; parsing JSON inputs needs the
//! `serde` feature, reading files and running Java need `std`. The library
//! entry points the `fisao eval` command wires up:
//!
//! | command | entry point |
//! |---|---|
//! | `eval chair` | [`coco::parse_captions_jsonl`], [`coco::CocoAnnotations::load_dir`], [`chair::evaluate`] -> [`chair::ChairReport`] |
//! | `eval pope` | [`pope::parse_answers_jsonl`], [`pope::evaluate`] -> [`pope::PopeReport`] |
//! | `eval caption` | [`coco::parse_captions_jsonl`], [`caption::pair_with_references`], [`caption::evaluate_with_meteor`] -> [`caption::CaptionReport`] |
//! | `eval figures` | [`analysis::parse_scored_jsonl`], [`analysis::figure1`], [`analysis::figure2`], [`analysis::figure4`] |
//!
//! docs/evaluation.md describes the inputs, the outputs and how each metric
//! matches its reference implementation.

pub mod analysis;
pub mod auroc;
pub mod caption;
pub mod chair;
mod chair_fixed;
mod chair_reference;
pub mod coco;
mod error;
pub mod nltk;
pub mod plots;
pub mod pope;
pub mod singularize;

pub use error::{EvalError, EvalErrorKind};

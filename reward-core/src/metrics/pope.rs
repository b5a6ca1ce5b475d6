//! POPE (Li et al., EMNLP 2023, "Evaluating Object Hallucination in Large
//! Vision-Language Models"): accuracy, precision, recall, F1 and yes-ratio of
//! yes/no answers to "Is there a `<object>` in the image?".
//!
//! Two answer parsers:
//! - [`AnswerParsing::Robust`]: the first sentence decides; a leading
//!   yes-word or no-word wins, then any negation ("no", "not", "n't",
//!   "none", "nothing", "neither", "nor", "cannot", "without") means no, a
//!   hedge ("unclear", "not sure", "cannot determine", "unable to") means
//!   unparsed, an empty answer is unparsed, and any other statement is yes
//!   (as LLaVA's POPE script reads "There is a dog." as yes).
//! - [`AnswerParsing::Strict`]: lmms-eval's `pope` task: the answer,
//!   lower-cased and trimmed, must be exactly "yes" or "no"; anything else
//!   is wrong for accuracy and neither positive nor negative for precision
//!   and recall.
//!
//! Yes-ratio is the fraction of answers parsed as yes (the POPE paper's
//! definition). lmms-eval prints, under the same name, the fraction of
//! *ground-truth* yes labels; [`PopeReport::label_yes_ratio`] reports that.

#[cfg(feature = "serde")]
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::error::{EvalError, EvalErrorKind};

/// How answers are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum AnswerParsing {
    /// Tolerant yes/no reading of free-form answers.
    #[default]
    Robust,
    /// lmms-eval: exactly "yes" or "no" after lower-casing and trimming.
    Strict,
}

/// One question: the model's answer and the ground-truth label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PopeItem {
    /// Question id (for reports and errors).
    pub question_id: String,
    /// The model's answer text.
    pub answer: String,
    /// Ground truth: the object is present.
    pub label: bool,
}

/// POPE metrics. Positive class = "yes".
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PopeReport {
    /// The parser used.
    pub parsing: AnswerParsing,
    /// Questions.
    pub n: usize,
    /// Answers that were neither yes nor no.
    pub n_unparsed: usize,
    /// Correct answers / questions (unparsed answers are wrong).
    pub accuracy: f64,
    /// TP / (TP + FP), 0 when nothing was answered yes.
    pub precision: f64,
    /// TP / (TP + FN), 0 when no yes-labelled question got a yes/no answer.
    pub recall: f64,
    /// 2PR / (P + R), 0 when P + R = 0.
    pub f1: f64,
    /// Answers parsed as yes / questions.
    pub yes_ratio: f64,
    /// Ground-truth yes labels / questions (what lmms-eval calls yes-ratio).
    pub label_yes_ratio: f64,
}

/// Reads one answer: `Some(true)` yes, `Some(false)` no, `None` unparsed.
pub fn parse_answer(answer: &str, parsing: AnswerParsing) -> Option<bool> {
    match parsing {
        AnswerParsing::Strict => match answer.trim().to_lowercase().as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        },
        AnswerParsing::Robust => robust(answer),
    }
}

const YES: &[&str] = &[
    "yes",
    "yeah",
    "yep",
    "yup",
    "correct",
    "true",
    "certainly",
    "absolutely",
    "indeed",
];
const NO: &[&str] = &[
    "no",
    "nope",
    "not",
    "false",
    "incorrect",
    "none",
    "nothing",
    "neither",
];
const NEGATIONS: &[&str] = &[
    "no", "not", "none", "nothing", "neither", "nor", "cannot", "without", "never",
];
const HEDGES: &[&str] = &[
    "unclear",
    "not sure",
    "cannot determine",
    "can't determine",
    "cannot tell",
    "can't tell",
    "unable to",
    "uncertain",
    "impossible to",
];

fn robust(answer: &str) -> Option<bool> {
    let lower = answer.trim().to_lowercase().replace('’', "'");
    let first = lower
        .split(['.', '!', '?', '\n'])
        .find(|s| !s.trim().is_empty())?;
    let words: Vec<&str> = first
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .collect();
    let lead = *words.first()?;
    if YES.contains(&lead) {
        return Some(true);
    }
    if NO.contains(&lead) {
        return Some(false);
    }
    if HEDGES.iter().any(|h| first.contains(h)) {
        return None;
    }
    let negated = words
        .iter()
        .any(|w| NEGATIONS.contains(w) || w.ends_with("n't"));
    Some(!negated)
}

/// POPE metrics of `items` under `parsing`. Errors on an empty list.
pub fn evaluate(items: &[PopeItem], parsing: AnswerParsing) -> Result<PopeReport, EvalError> {
    if items.is_empty() {
        return Err(EvalError::new(
            EvalErrorKind::Empty,
            "no POPE answers to evaluate",
        ));
    }
    let (mut tp, mut fp, mut fn_, mut correct, mut yes, mut unparsed) = (0usize, 0, 0, 0, 0, 0);
    for it in items {
        match parse_answer(&it.answer, parsing) {
            None => unparsed += 1,
            Some(pred) => {
                correct += usize::from(pred == it.label);
                yes += usize::from(pred);
                match (pred, it.label) {
                    (true, true) => tp += 1,
                    (true, false) => fp += 1,
                    (false, true) => fn_ += 1,
                    (false, false) => {}
                }
            }
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    let n = items.len();
    Ok(PopeReport {
        parsing,
        n,
        n_unparsed: unparsed,
        accuracy: ratio(correct, n),
        precision,
        recall,
        f1: if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        },
        yes_ratio: ratio(yes, n),
        label_yes_ratio: ratio(items.iter().filter(|i| i.label).count(), n),
    })
}

/// Parses answers, one JSON object per line: `{"question_id": ..., "answer":
/// "...", "label": "yes"|"no"}`. `text` is accepted for `answer` (LLaVA's
/// answer files) and `ground_truth` for `label`. Errors name the line.
#[cfg(feature = "serde")]
pub fn parse_answers_jsonl(file: &str, text: &str) -> Result<Vec<PopeItem>, EvalError> {
    use super::coco::parse_error;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let what = format!("line {}", i + 1);
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| parse_error(file, &what, &format!("invalid JSON: {e}")))?;
        let field = |names: &[&str]| names.iter().find_map(|n| v.get(*n));
        let answer = field(&["answer", "text"])
            .ok_or_else(|| parse_error(file, &what, "missing field \"answer\" (or \"text\")"))?
            .as_str()
            .ok_or_else(|| parse_error(file, &what, "\"answer\" must be a string"))?;
        let label = field(&["label", "ground_truth"])
            .and_then(|l| l.as_str())
            .ok_or_else(|| {
                parse_error(
                    file,
                    &what,
                    "missing string field \"label\" (or \"ground_truth\")",
                )
            })?;
        let label = match label.trim().to_lowercase().as_str() {
            "yes" => true,
            "no" => false,
            other => {
                return Err(parse_error(
                    file,
                    &what,
                    &format!("label {other:?} is not \"yes\" or \"no\""),
                ));
            }
        };
        let question_id = match v.get("question_id") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(x) => format!("{x}"),
            None => format!("{}", i + 1),
        };
        out.push(PopeItem {
            question_id,
            answer: String::from(answer),
            label,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_reading() {
        let r = |s| parse_answer(s, AnswerParsing::Robust);
        assert_eq!(r("Yes, there is a dog."), Some(true));
        assert_eq!(r("  No."), Some(false));
        assert_eq!(r("There is a dog in the image."), Some(true));
        assert_eq!(r("There isn't a dog in the image."), Some(false));
        assert_eq!(r("The image does not contain a dog. Yes."), Some(false));
        assert_eq!(r("It is unclear from the picture."), None);
        assert_eq!(r(""), None);
        let s = |x| parse_answer(x, AnswerParsing::Strict);
        assert_eq!(s(" Yes "), Some(true));
        assert_eq!(s("Yes, there is."), None);
    }
}

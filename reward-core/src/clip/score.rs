//! Verifier scores of method.md section 4.
//!
//! `s(o, v)` compares the CLIP text embedding of an object word (through a
//! text template, default `"{}"`) with the CLIP image embedding:
//!
//! - `cosine100` (default): `exp(logit_scale) * cos(t, i)`, CLIP's own logit,
//!   what transformers' `CLIPModel(...).logits_per_image` returns (100 * cos
//!   for the OpenAI checkpoints, whose `exp(logit_scale)` is 100);
//! - `dot`: the raw dot product of the unnormalised projected embeddings;
//! - `clipscore`: `2.5 * max(cos, 0) * 100` (CLIPScore, Hessel et al. 2021).
//!
//! The sentence-level score (the `sentence` ablation) is the same function on
//! the embedding of the whole response, which CLIP's 77-token window
//! truncates; [`SentenceScore::truncated`] says when that happened.
//!
//! Embeddings are f32; dot products and norms accumulate in f64 so that a
//! 768-wide dot product loses nothing before the final f32 rounding.
//! Everything here is pure computation (no I/O): it runs on wasm32 too.

use alloc::format;
use alloc::string::{String, ToString};
use core::str::FromStr;

pub use crate::baseline::ScoreKind;

use super::error::ClipError;
use super::model::ClipModel;

/// The default text template: the bare word.
pub const DEFAULT_TEMPLATE: &str = "{}";

impl FromStr for ScoreKind {
    type Err = ClipError;

    /// Parses `cosine100`, `dot` or `clipscore`.
    fn from_str(s: &str) -> Result<Self, ClipError> {
        match s {
            "cosine100" => Ok(ScoreKind::Cosine100),
            "dot" => Ok(ScoreKind::Dot),
            "clipscore" => Ok(ScoreKind::ClipScore),
            other => Err(ClipError::input(format!(
                "unknown score kind {other:?}; expected cosine100, dot or clipscore"
            ))),
        }
    }
}

/// A score function with the model constant it needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scorer {
    /// Which score.
    pub kind: ScoreKind,
    /// `exp(logit_scale)` of the model ([`ClipModel::logit_scale`]), the
    /// factor of `cosine100`.
    pub logit_scale: f32,
}

impl Scorer {
    /// The scorer of `kind` for `model`.
    pub fn for_model(kind: ScoreKind, model: &ClipModel) -> Self {
        Self {
            kind,
            logit_scale: model.logit_scale(),
        }
    }

    /// Scores one text embedding against one image embedding (both
    /// projected, unnormalised). A zero-length embedding has cosine 0.
    pub fn score(&self, text: &[f32], image: &[f32]) -> Result<f32, ClipError> {
        if text.len() != image.len() {
            return Err(ClipError::input(format!(
                "text embedding has {} values, image embedding {}",
                text.len(),
                image.len()
            )));
        }
        let (mut dot, mut tt, mut ii) = (0f64, 0f64, 0f64);
        for (&t, &i) in text.iter().zip(image) {
            let (t, i) = (f64::from(t), f64::from(i));
            dot += t * i;
            tt += t * t;
            ii += i * i;
        }
        let norm = (tt * ii).sqrt();
        let cos = if norm > 0.0 { dot / norm } else { 0.0 };
        let s = match self.kind {
            ScoreKind::Cosine100 => f64::from(self.logit_scale) * cos,
            ScoreKind::Dot => dot,
            ScoreKind::ClipScore => 2.5 * cos.max(0.0) * 100.0,
        };
        Ok(s as f32)
    }
}

/// A text template with exactly one `{}` where the object word goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    /// Checks that `template` has exactly one `{}`.
    pub fn new(template: &str) -> Result<Self, ClipError> {
        if template.matches("{}").count() != 1 {
            return Err(ClipError::input(format!(
                "text template {template:?} must contain exactly one {{}} (e.g. \"a photo of a {{}}.\")"
            )));
        }
        Ok(Self(template.to_string()))
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text fed to CLIP for `word`.
    pub fn apply(&self, word: &str) -> String {
        self.0.replacen("{}", word, 1)
    }
}

impl Default for Template {
    fn default() -> Self {
        Self(DEFAULT_TEMPLATE.to_string())
    }
}

/// The sentence-level score of a whole response.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SentenceScore {
    /// The score of the (possibly truncated) response text.
    pub score: f32,
    /// Whether the response was longer than CLIP's window and was cut.
    pub truncated: bool,
    /// Tokens CLIP saw, special tokens included.
    pub tokens: usize,
    /// Tokens of the full response, special tokens included.
    pub full_tokens: usize,
}

/// Scores the whole `response` (no template) against `image_embedding`.
pub fn sentence_score(
    model: &ClipModel,
    scorer: &Scorer,
    response: &str,
    image_embedding: &[f32],
) -> Result<SentenceScore, ClipError> {
    let emb = model.embed_texts(&[response])?;
    Ok(SentenceScore {
        score: scorer.score(emb.embeddings.row(0), image_embedding)?,
        truncated: emb.truncated[0],
        tokens: emb.token_counts[0],
        full_tokens: emb.full_token_counts[0],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn scorer(kind: ScoreKind) -> Scorer {
        Scorer {
            kind,
            logit_scale: 100.0,
        }
    }

    #[test]
    fn kinds_on_known_vectors() {
        // cos = (3*1 + 4*0) / (5 * 1) = 0.6; dot = 3.
        let (t, i) = (vec![3.0, 4.0], vec![1.0, 0.0]);
        assert!((scorer(ScoreKind::Cosine100).score(&t, &i).unwrap() - 60.0).abs() < 1e-5);
        assert!((scorer(ScoreKind::Dot).score(&t, &i).unwrap() - 3.0).abs() < 1e-6);
        assert!((scorer(ScoreKind::ClipScore).score(&t, &i).unwrap() - 150.0).abs() < 1e-4);
        let s = Scorer {
            kind: ScoreKind::Cosine100,
            logit_scale: 14.285_714,
        };
        assert!((s.score(&t, &i).unwrap() - 8.571_428).abs() < 1e-4);
    }

    #[test]
    fn clipscore_clamps_negative_cosine() {
        let (t, i) = (vec![-1.0, 0.0], vec![1.0, 0.0]);
        assert_eq!(scorer(ScoreKind::ClipScore).score(&t, &i).unwrap(), 0.0);
        assert!((scorer(ScoreKind::Cosine100).score(&t, &i).unwrap() + 100.0).abs() < 1e-5);
    }

    #[test]
    fn scale_invariance_and_errors() {
        let (t, i) = (vec![0.3, -0.2, 0.9], vec![0.1, 0.5, 0.4]);
        let t10: alloc::vec::Vec<f32> = t.iter().map(|x| x * 10.0).collect();
        let c = scorer(ScoreKind::Cosine100);
        assert!((c.score(&t, &i).unwrap() - c.score(&t10, &i).unwrap()).abs() < 1e-4);
        let d = scorer(ScoreKind::Dot);
        assert!((d.score(&t10, &i).unwrap() - 10.0 * d.score(&t, &i).unwrap()).abs() < 1e-4);
        assert!(c.score(&t, &i[..2]).is_err());
        assert_eq!(c.score(&[0.0; 3], &i).unwrap(), 0.0);
    }

    #[test]
    fn parse_and_template() {
        for k in [ScoreKind::Cosine100, ScoreKind::Dot, ScoreKind::ClipScore] {
            assert_eq!(k.to_string().parse::<ScoreKind>().unwrap(), k);
        }
        assert!(
            "cosine"
                .parse::<ScoreKind>()
                .unwrap_err()
                .to_string()
                .contains("cosine100")
        );
        let t = Template::new("a photo of a {}.").unwrap();
        assert_eq!(t.apply("cat"), "a photo of a cat.");
        assert_eq!(Template::default().apply("teddy bear"), "teddy bear");
        assert!(Template::new("no slot").is_err());
        assert!(Template::new("{} and {}").is_err());
    }
}

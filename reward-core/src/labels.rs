//! The labelling rules that `fisao score` and the browser page share: the
//! surface form embedded for a matched mention, the uncalibrated default
//! baselines, the checks a `baseline.json` must pass before its eq. 8 bounds
//! are used, and the label names. One copy, so the page and the CLI cannot
//! drift apart (the browser tests also compare the two outputs).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::baseline::{Baselines, ScoreLevel};
use crate::clip::score::{ScoreKind, Scorer, Template};
use crate::mentions::Mention;
use crate::reward::{
    Grounding, Response, RewardBounds, RewardConfig, RewardError, ScoredMention, TokenRewarder,
};

/// Uncalibrated default baselines in cosine units, multiplied by the score
/// kind's factor ([`cosine_factor`]): `(s_c, s_h, s_min, s_max, margin)`.
/// Documented in docs/cli.md.
pub const DEFAULT_COSINE_BASELINE: (f64, f64, f64, f64, f64) = (0.24, 0.17, 0.05, 0.35, 0.10);

/// What outputs call the baselines when none were given.
pub const DEFAULT_BASELINE_NAME: &str = "default, uncalibrated";

/// Why baselines cannot label mentions.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelError {
    /// The `dot` score's scale depends on the model: no defaults exist.
    NoDefaultBaselines,
    /// The margin does not fit the default baselines.
    Margin {
        /// The margin asked for, in score units.
        margin: f64,
        /// What the bounds check found.
        source: RewardError,
    },
    /// The baselines are not object-level.
    Level(ScoreLevel),
    /// The baselines were made with another score, template or model.
    Mismatch {
        /// `score`, `template` or `model`.
        what: &'static str,
        /// The baselines' value.
        file: String,
        /// This run's value.
        run: String,
    },
    /// The baselines give no valid eq. 8 bounds.
    Bounds(RewardError),
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDefaultBaselines => f.write_str(
                "the dot score has no default baselines (its scale depends on the model)",
            ),
            Self::Margin { margin, source } => write!(f, "margin {margin}: {source}"),
            Self::Level(level) => write!(
                f,
                "baselines are {level}-level; mentions are labelled against object-level baselines"
            ),
            Self::Mismatch { what, file, run } => write!(
                f,
                "baselines were computed with {what} {file}, but this run uses {run}"
            ),
            Self::Bounds(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for LabelError {}

/// The surface form to embed for a matched span: lower case, hyphens and
/// curly apostrophes as spaces, runs of whitespace as one space (how
/// vocabulary forms are written, so a vocabulary cache finds them).
pub fn mention_form(span: &str) -> String {
    let lower = span.to_lowercase().replace(['-', '’'], " ");
    lower.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The label shown for a grounding.
pub fn label(g: Grounding) -> &'static str {
    match g {
        Grounding::Grounded => "grounded",
        Grounding::Uncertain => "uncertain",
        Grounding::Hallucinated => "likely hallucinated",
    }
}

/// The factor that turns cosine units into `scorer`'s units:
/// `exp(logit_scale)` for cosine100, 250 for clipscore (CLIPScore's 2.5 x 100).
pub fn cosine_factor(scorer: &Scorer) -> Result<f64, LabelError> {
    match scorer.kind {
        ScoreKind::Cosine100 => Ok(f64::from(scorer.logit_scale)),
        ScoreKind::ClipScore => Ok(250.0),
        ScoreKind::Dot => Err(LabelError::NoDefaultBaselines),
    }
}

/// Eq. 8 bounds from the default baselines scaled to the score kind;
/// `margin` in score units (`None`: the default 0.10 cosine units).
pub fn default_bounds(scorer: &Scorer, margin: Option<f64>) -> Result<RewardBounds, LabelError> {
    let factor = cosine_factor(scorer)?;
    let (c, h, lo, hi, m) = DEFAULT_COSINE_BASELINE;
    let margin = margin.unwrap_or(m * factor);
    RewardBounds::new(
        ScoreLevel::Object,
        c * factor,
        h * factor,
        margin,
        lo * factor,
        hi * factor,
    )
    .map_err(|source| LabelError::Margin { margin, source })
}

/// Eq. 8 bounds from loaded baselines under `config`, refused when they are
/// not object-level or were made with another score kind, template or model
/// (`model_hash`: this run's, when known).
pub fn baseline_bounds(
    b: &Baselines,
    scorer: &Scorer,
    template: &Template,
    model_hash: Option<&str>,
    config: &RewardConfig,
) -> Result<RewardBounds, LabelError> {
    if b.level != ScoreLevel::Object {
        return Err(LabelError::Level(b.level));
    }
    let mismatch = |what, file: String, run: String| LabelError::Mismatch { what, file, run };
    if b.verifier.score != scorer.kind {
        return Err(mismatch(
            "score",
            b.verifier.score.to_string(),
            scorer.kind.to_string(),
        ));
    }
    if b.verifier.template != template.as_str() {
        return Err(mismatch(
            "template",
            format!("{:?}", b.verifier.template),
            format!("{:?}", template.as_str()),
        ));
    }
    if let Some(h) = model_hash.filter(|h| *h != b.verifier.model_hash) {
        return Err(mismatch(
            "model",
            b.verifier.model_hash.clone(),
            h.to_string(),
        ));
    }
    b.to_reward_bounds(config).map_err(LabelError::Bounds)
}

/// Eq. 8 object rewards of `mentions` with their `scores`, through the
/// rewarder (its repeats rule included): each mention is one "token" with
/// zero KL, as a caption is scored outside training.
pub fn mention_rewards(
    rewarder: &TokenRewarder,
    mentions: &[Mention],
    scores: &[f32],
) -> Result<Vec<f64>, RewardError> {
    let scored: Vec<ScoredMention> = mentions
        .iter()
        .zip(scores)
        .enumerate()
        .map(|(i, (m, s))| ScoredMention::at(i, f64::from(*s), m.entity))
        .collect();
    let zeros = alloc::vec![0.0; mentions.len()];
    let response = Response {
        len: mentions.len(),
        mentions: &scored,
        sentence_score: None,
        policy_logprobs: &zeros,
        ref_logprobs: &zeros,
    };
    Ok(rewarder.rewards(&response)?.object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::ScoreClass;

    fn scorer(kind: ScoreKind) -> Scorer {
        Scorer {
            kind,
            logit_scale: 100.0,
        }
    }

    #[test]
    fn forms_are_normalised_like_the_vocabulary() {
        assert_eq!(mention_form("Teddy-Bear"), "teddy bear");
        assert_eq!(mention_form("  Hot\n dog "), "hot dog");
        assert_eq!(mention_form("dog’s"), "dog s");
    }

    #[test]
    fn default_bounds_scale_with_the_kind_and_margin() {
        let b = default_bounds(&scorer(ScoreKind::Cosine100), None).unwrap();
        assert!((b.s_c() - 24.0).abs() < 1e-9 && (b.s_h() - 17.0).abs() < 1e-9);
        assert!((b.margin() - 10.0).abs() < 1e-9);
        let b = default_bounds(&scorer(ScoreKind::ClipScore), Some(4.0)).unwrap();
        assert!((b.s_c() - 60.0).abs() < 1e-9 && (b.margin() - 4.0).abs() < 1e-9);
        // A margin that pushes hi past s_max is refused with a message.
        let err = default_bounds(&scorer(ScoreKind::Cosine100), Some(500.0)).unwrap_err();
        assert!(err.to_string().starts_with("margin 500:"), "{err}");
        let err = default_bounds(&scorer(ScoreKind::Dot), None).unwrap_err();
        assert_eq!(err, LabelError::NoDefaultBaselines);
    }

    fn baselines(level: ScoreLevel) -> Baselines {
        let verifier = crate::baseline::VerifierInfo {
            model: "m".to_string(),
            model_hash: "sha256:aa".to_string(),
            score: ScoreKind::Cosine100,
            template: "{}".to_string(),
        };
        let mut b = Baselines::new(level, verifier);
        for (class, s) in [(0, 30.0), (0, 26.0), (1, 14.0), (1, 12.0)] {
            let class = [ScoreClass::Correct, ScoreClass::Hallucinated][class];
            b.push(class, s).unwrap();
        }
        b
    }

    #[test]
    fn baselines_of_another_level_score_template_or_model_are_refused() {
        let (s, t, c) = (
            scorer(ScoreKind::Cosine100),
            Template::default(),
            RewardConfig::default(),
        );
        let b = baselines(ScoreLevel::Object);
        let bounds = baseline_bounds(&b, &s, &t, Some("sha256:aa"), &c).unwrap();
        assert!((bounds.s_c() - 28.0).abs() < 1e-9 && (bounds.s_h() - 13.0).abs() < 1e-9);
        let level = baseline_bounds(&baselines(ScoreLevel::Sentence), &s, &t, None, &c);
        assert_eq!(level.unwrap_err(), LabelError::Level(ScoreLevel::Sentence));
        let err = baseline_bounds(&b, &scorer(ScoreKind::Dot), &t, None, &c).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("baselines were computed with score cosine100"),
            "{err}"
        );
        let other = Template::new("a photo of a {}").unwrap();
        let err = baseline_bounds(&b, &s, &other, None, &c).unwrap_err();
        assert!(err.to_string().contains("with template \"{}\""), "{err}");
        let err = baseline_bounds(&b, &s, &t, Some("sha256:bb"), &c).unwrap_err();
        assert_eq!(
            err.to_string(),
            "baselines were computed with model sha256:aa, but this run uses sha256:bb"
        );
    }

    #[test]
    fn labels_name_each_grounding() {
        assert_eq!(label(Grounding::Grounded), "grounded");
        assert_eq!(label(Grounding::Uncertain), "uncertain");
        assert_eq!(label(Grounding::Hallucinated), "likely hallucinated");
    }
}

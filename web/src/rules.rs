//! The labelling rules of `fisao score` (reward-core/src/cli/score.rs),
//! repeated here because the CLI lives in reward-core's binary, not its
//! library: the surface form embedded for a mention, the uncalibrated default
//! baselines, the checks on a `baseline.json`, the eq. 8 bounds and the
//! label names. The browser tests compare
//! the page with `fisao score --json`, so a drift between the two copies
//! fails a test.

use reward_core::baseline::{Baselines, ScoreLevel};
use reward_core::clip::score::{ScoreKind, Scorer, Template};
use reward_core::reward::{Grounding, RewardBounds, RewardConfig};

/// Uncalibrated default baselines in cosine units, as in `fisao score`:
/// `(s_c, s_h, s_min, s_max, margin)` (docs/cli.md).
pub const DEFAULT_COSINE_BASELINE: (f64, f64, f64, f64, f64) = (0.24, 0.17, 0.05, 0.35, 0.10);

/// What the page calls the baselines.
pub const DEFAULT_BASELINE_NAME: &str = "default, uncalibrated";

/// The surface form to embed for a matched span: lower case, hyphens and
/// curly apostrophes as spaces, runs of whitespace as one space (how
/// vocabulary forms are written, so the vocabulary cache finds them).
pub fn mention_form(span: &str) -> String {
    let lower = span.to_lowercase().replace(['-', '’'], " ");
    lower.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The factor that turns cosine units into `kind`'s units.
pub fn cosine_factor(scorer: &Scorer) -> Result<f64, String> {
    match scorer.kind {
        ScoreKind::Cosine100 => Ok(f64::from(scorer.logit_scale)),
        ScoreKind::ClipScore => Ok(250.0),
        ScoreKind::Dot => Err(
            "the dot score has no default baselines (its scale depends on the model)".to_string(),
        ),
    }
}

/// Eq. 8 bounds from the default baselines scaled to the score kind, with
/// `margin` in score units (`None`: `fisao score`'s 0.10 cosine units).
pub fn default_bounds(scorer: &Scorer, margin: Option<f64>) -> Result<RewardBounds, String> {
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
    .map_err(|e| format!("margin {margin}: {e}"))
}

/// Eq. 8 bounds from a `baseline.json` (`name` in messages), refused as
/// `fisao score --baseline` refuses it: other level, score kind, template
/// or model. `margin` in score units (`None`: `RewardConfig`'s default, as
/// the CLI). Returns the bounds and the config the rewarder must use.
pub fn baseline_bounds(
    b: &Baselines,
    name: &str,
    scorer: &Scorer,
    template: &Template,
    model_hash: Option<&str>,
    margin: Option<f64>,
) -> Result<(RewardBounds, RewardConfig), String> {
    let mismatch = |what: &str, file: &str, run: &str| {
        format!("{name}: baselines were computed with {what} {file}, but this run uses {run}")
    };
    if b.level != ScoreLevel::Object {
        return Err(format!(
            "{name}: baselines are {}-level; the page labels object mentions and needs object-level baselines",
            b.level
        ));
    }
    if b.verifier.score != scorer.kind {
        return Err(mismatch(
            "score",
            &b.verifier.score.to_string(),
            &scorer.kind.to_string(),
        ));
    }
    if b.verifier.template != template.as_str() {
        return Err(mismatch(
            "template",
            &format!("{:?}", b.verifier.template),
            &format!("{:?}", template.as_str()),
        ));
    }
    if let Some(h) = model_hash.filter(|h| *h != b.verifier.model_hash) {
        return Err(mismatch("model", &b.verifier.model_hash, h));
    }
    let mut config = RewardConfig::default();
    if let Some(m) = margin {
        config.margin = m;
    }
    let bounds = b
        .to_reward_bounds(&config)
        .map_err(|e| format!("{name}: {e}"))?;
    Ok((bounds, config))
}

/// The label `fisao score` prints for a grounding.
pub fn label(g: Grounding) -> &'static str {
    match g {
        Grounding::Grounded => "grounded",
        Grounding::Uncertain => "uncertain",
        Grounding::Hallucinated => "likely hallucinated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_normalised_like_the_vocabulary() {
        assert_eq!(mention_form("Teddy-Bear"), "teddy bear");
        assert_eq!(mention_form("  Hot\n dog "), "hot dog");
        assert_eq!(mention_form("dog’s"), "dog s");
    }

    #[test]
    fn default_bounds_scale_with_the_kind_and_margin() {
        let scorer = Scorer {
            kind: ScoreKind::Cosine100,
            logit_scale: 100.0,
        };
        let b = default_bounds(&scorer, None).unwrap();
        assert!((b.s_c() - 24.0).abs() < 1e-9 && (b.s_h() - 17.0).abs() < 1e-9);
        assert!((b.margin() - 10.0).abs() < 1e-9);
        let b = default_bounds(&scorer, Some(4.0)).unwrap();
        assert!((b.margin() - 4.0).abs() < 1e-9);
        // A margin that pushes hi past s_max is refused with a message.
        let err = default_bounds(&scorer, Some(500.0)).unwrap_err();
        assert!(err.starts_with("margin 500:"), "{err}");
        let dot = Scorer {
            kind: ScoreKind::Dot,
            logit_scale: 100.0,
        };
        assert!(default_bounds(&dot, None).is_err());
    }
}

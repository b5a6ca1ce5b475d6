//! Baseline score statistics: FiSAO eq. 7 as method.md section 5 fixes it.
//!
//! The SFT model answers the training prompts; every object mention is
//! scored by the verifier and filed as *correct* (its entity is in the
//! image's ground truth) or *hallucinated*. `s_c` and `s_h` are the two class
//! means. We also keep count, variance (Welford's M2), minimum and maximum:
//! the extremes are the default `s_min` / `s_max` of eq. 8, the rest is for
//! reports. Accumulators from parallel workers merge exactly (Chan et al.'s
//! pairwise update) and serialise to `baseline.json`, whose format is
//! documented in `docs/baseline-json.md`.
//!
//! A baseline records which verifier produced it (model, weights hash, score
//! kind, text template) and at which level (object words or whole
//! sentences), so a baseline from another verifier can be refused instead of
//! silently producing meaningless rewards.

use alloc::string::String;
use core::fmt;

#[cfg(feature = "serde")]
use alloc::format;

use crate::reward::{RewardBounds, RewardConfig, RewardError};

/// The `version` written to and required in `baseline.json`.
pub const BASELINE_FORMAT_VERSION: u32 = 1;

/// Which of the two classes of eq. 7 a score belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScoreClass {
    /// The mention's entity is in the image's ground truth.
    Correct,
    /// The mention's entity is not in the image's ground truth.
    Hallucinated,
}

impl fmt::Display for ScoreClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScoreClass::Correct => "correct",
            ScoreClass::Hallucinated => "hallucinated",
        })
    }
}

/// What was scored: single object words or whole responses.
///
/// Sentence-level scores live on another scale than word scores (CLIP's
/// 77-token window over the whole response), so they get their own
/// baseline: a response is *correct* when none of its mentions is
/// hallucinated (CHAIR_s = 0 for it) and *hallucinated* otherwise, the split
/// the paper's sentence-level figures use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum ScoreLevel {
    /// One score per object mention (the `token` reward mode).
    #[default]
    Object,
    /// One score per response (the `sentence` ablation mode).
    Sentence,
}

impl fmt::Display for ScoreLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScoreLevel::Object => "object",
            ScoreLevel::Sentence => "sentence",
        })
    }
}

/// The verifier score function of method.md section 4.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum ScoreKind {
    /// `100 * cosine` of the projected embeddings (CLIP's own logit).
    #[default]
    Cosine100,
    /// Raw dot product of the unnormalised projected embeddings.
    Dot,
    /// `2.5 * max(cosine, 0) * 100` (CLIPScore, Hessel et al.).
    ClipScore,
}

impl fmt::Display for ScoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScoreKind::Cosine100 => "cosine100",
            ScoreKind::Dot => "dot",
            ScoreKind::ClipScore => "clipscore",
        })
    }
}

/// Which verifier produced a set of scores. Two baselines (or a baseline
/// and a running verifier) are compatible only when all fields agree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct VerifierInfo {
    /// Model name, e.g. `openai/clip-vit-large-patch14-336`.
    pub model: String,
    /// Hash of the weights, `sha256:` followed by 64 hex digits of the
    /// weights file; compared as an opaque string.
    pub model_hash: String,
    /// The score function.
    pub score: ScoreKind,
    /// The text template, `{}` standing for the object word.
    pub template: String,
}

impl VerifierInfo {
    /// Checks that `other` describes the same verifier; the error names the
    /// first field that differs.
    pub fn check_same(&self, other: &VerifierInfo) -> Result<(), BaselineError> {
        let pairs = [
            ("model", &self.model, &other.model),
            ("model_hash", &self.model_hash, &other.model_hash),
            ("template", &self.template, &other.template),
        ];
        for (field, expected, found) in pairs {
            if expected != found {
                return Err(BaselineError::VerifierMismatch {
                    field,
                    expected: expected.clone(),
                    found: found.clone(),
                });
            }
        }
        if self.score != other.score {
            return Err(BaselineError::VerifierMismatch {
                field: "score",
                expected: alloc::string::ToString::to_string(&self.score),
                found: alloc::string::ToString::to_string(&other.score),
            });
        }
        Ok(())
    }
}

/// Why a baseline could not be built, merged, loaded or used.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum BaselineError {
    /// A score was NaN or infinite.
    NonFiniteScore {
        /// The offending value.
        value: f64,
    },
    /// A class has no scores, so its mean is undefined.
    EmptyClass {
        /// The empty class.
        class: ScoreClass,
    },
    /// `s_c <= s_h`: the verifier does not separate the classes, and eq. 8
    /// would reward hallucinations.
    NotSeparated {
        /// Mean score of correct mentions.
        correct_mean: f64,
        /// Mean score of hallucinated mentions.
        hallucinated_mean: f64,
    },
    /// Stored statistics are inconsistent (from a hand-edited or corrupt file).
    InvalidStats {
        /// The field at fault (`count`, `mean`, `m2`, `min`, `max`).
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `baseline.json` has a version this build does not read.
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
    },
    /// Two baselines of different levels were combined.
    LevelMismatch {
        /// The level required.
        expected: ScoreLevel,
        /// The level found.
        found: ScoreLevel,
    },
    /// Two baselines (or a baseline and a verifier) come from different verifiers.
    VerifierMismatch {
        /// The first field that differs.
        field: &'static str,
        /// Its value on the left-hand side (the baseline).
        expected: String,
        /// Its value on the right-hand side.
        found: String,
    },
}

impl fmt::Display for BaselineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaselineError::NonFiniteScore { value } => {
                write!(f, "baseline score {value} is not a finite number")
            }
            BaselineError::EmptyClass { class } => write!(
                f,
                "the baseline has no {class} scores, so s_{} is undefined; \
                 score more responses",
                if *class == ScoreClass::Correct {
                    'c'
                } else {
                    'h'
                }
            ),
            BaselineError::NotSeparated {
                correct_mean,
                hallucinated_mean,
            } => write!(
                f,
                "baseline mean of correct scores s_c = {correct_mean} is not above \
                 the mean of hallucinated scores s_h = {hallucinated_mean}; \
                 the verifier does not separate the classes"
            ),
            BaselineError::InvalidStats { field, reason } => {
                write!(f, "invalid score statistics: field `{field}` {reason}")
            }
            BaselineError::UnsupportedVersion { found } => write!(
                f,
                "baseline format version {found} is not supported \
                 (this build reads version {BASELINE_FORMAT_VERSION})"
            ),
            BaselineError::LevelMismatch { expected, found } => write!(
                f,
                "baseline level mismatch: expected {expected} scores, found {found} scores"
            ),
            BaselineError::VerifierMismatch {
                field,
                expected,
                found,
            } => write!(
                f,
                "baseline comes from another verifier: `{field}` is {expected:?} \
                 in the baseline but {found:?} here"
            ),
        }
    }
}

impl core::error::Error for BaselineError {}

/// Running count, mean, M2 (sum of squared deviations), minimum and maximum
/// of a stream of scores. Welford's update for single values; Chan et al.'s
/// pairwise formula to merge two accumulators, so workers can score shards
/// independently and the result does not depend on how the data was split
/// (up to rounding).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "ScoreStatsRepr", into = "ScoreStatsRepr")
)]
pub struct ScoreStats {
    count: u64,
    mean: f64,
    m2: f64,
    // +inf / -inf while empty; the public getters return None then.
    min: f64,
    max: f64,
}

impl Default for ScoreStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ScoreStats {
    /// An empty accumulator.
    pub const fn new() -> Self {
        ScoreStats {
            count: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Rebuilds an accumulator from stored fields, checking they are
    /// consistent: an empty one has mean and M2 zero and no extremes; a
    /// non-empty one has finite values, `M2 >= 0` and `min <= max`.
    pub fn from_parts(
        count: u64,
        mean: f64,
        m2: f64,
        min: Option<f64>,
        max: Option<f64>,
    ) -> Result<Self, BaselineError> {
        let bad = |field, reason| Err(BaselineError::InvalidStats { field, reason });
        if count == 0 {
            if mean != 0.0 {
                return bad("mean", "must be 0 when count is 0");
            }
            if m2 != 0.0 {
                return bad("m2", "must be 0 when count is 0");
            }
            if min.is_some() || max.is_some() {
                return bad("min", "and `max` must be null when count is 0");
            }
            return Ok(Self::new());
        }
        let (Some(min), Some(max)) = (min, max) else {
            return bad("min", "and `max` must be numbers when count is above 0");
        };
        for (field, v) in [("mean", mean), ("m2", m2), ("min", min), ("max", max)] {
            if !v.is_finite() {
                return bad(field, "is not a finite number");
            }
        }
        if m2 < 0.0 {
            return bad("m2", "is negative");
        }
        if min > max {
            return bad("min", "is above `max`");
        }
        if count == 1 && m2 != 0.0 {
            return bad("m2", "must be 0 when count is 1");
        }
        Ok(ScoreStats {
            count,
            mean,
            m2,
            min,
            max,
        })
    }

    /// Adds one score. NaN or infinite scores are refused and leave the
    /// accumulator unchanged.
    pub fn push(&mut self, score: f64) -> Result<(), BaselineError> {
        if !score.is_finite() {
            return Err(BaselineError::NonFiniteScore { value: score });
        }
        // Welford: the deviation is taken from the old and the new mean,
        // which keeps M2 accurate when the mean is far from zero.
        self.count += 1;
        let delta = score - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (score - self.mean);
        self.min = self.min.min(score);
        self.max = self.max.max(score);
        Ok(())
    }

    /// Adds every score; stops at the first non-finite one (the scores
    /// before it stay counted).
    pub fn extend<I: IntoIterator<Item = f64>>(&mut self, scores: I) -> Result<(), BaselineError> {
        scores.into_iter().try_for_each(|s| self.push(s))
    }

    /// Folds another accumulator into this one (Chan, Golub and LeVeque's
    /// pairwise update): `mean = mean_a + d * n_b / n`,
    /// `M2 = M2_a + M2_b + d^2 * n_a * n_b / n` with `d = mean_b - mean_a`.
    pub fn merge(&mut self, other: &ScoreStats) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * (nb / n);
        self.m2 += other.m2 + delta * delta * (na * nb / n);
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Number of scores.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether no score was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Mean score, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
    }

    /// Sum of squared deviations from the mean (Welford's M2).
    pub fn m2(&self) -> f64 {
        self.m2
    }

    /// Population variance `M2 / n`, `None` when empty.
    pub fn variance(&self) -> Option<f64> {
        (self.count > 0).then(|| self.m2 / self.count as f64)
    }

    /// Sample variance `M2 / (n - 1)`, `None` with fewer than two scores.
    pub fn sample_variance(&self) -> Option<f64> {
        (self.count > 1).then(|| self.m2 / (self.count - 1) as f64)
    }

    /// Population standard deviation, `None` when empty.
    pub fn std_dev(&self) -> Option<f64> {
        self.variance().map(libm::sqrt)
    }

    /// Smallest score, `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest score, `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }
}

/// `s_c` and `s_h` of eq. 7, checked: both classes non-empty, `s_c > s_h`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassMeans {
    /// Mean score of correct mentions.
    pub correct: f64,
    /// Mean score of hallucinated mentions.
    pub hallucinated: f64,
}

/// Eq. 7 baselines: score statistics of correct and hallucinated mentions
/// (or responses, at the sentence level), tagged with the verifier that
/// produced them. Serialises as `baseline.json` (docs/baseline-json.md).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "BaselinesRepr", into = "BaselinesRepr")
)]
pub struct Baselines {
    /// What was scored.
    pub level: ScoreLevel,
    /// Which verifier scored it.
    pub verifier: VerifierInfo,
    /// Scores of correct mentions (responses without hallucination).
    pub correct: ScoreStats,
    /// Scores of hallucinated mentions (responses with a hallucination).
    pub hallucinated: ScoreStats,
}

impl Baselines {
    /// Empty baselines for the given level and verifier.
    pub fn new(level: ScoreLevel, verifier: VerifierInfo) -> Self {
        Baselines {
            level,
            verifier,
            correct: ScoreStats::new(),
            hallucinated: ScoreStats::new(),
        }
    }

    /// Files one score under its class.
    pub fn push(&mut self, class: ScoreClass, score: f64) -> Result<(), BaselineError> {
        match class {
            ScoreClass::Correct => self.correct.push(score),
            ScoreClass::Hallucinated => self.hallucinated.push(score),
        }
    }

    /// Merges another worker's baselines; refused when the level or the
    /// verifier differ.
    pub fn merge(&mut self, other: &Baselines) -> Result<(), BaselineError> {
        self.check_compatible(other.level, &other.verifier)?;
        self.correct.merge(&other.correct);
        self.hallucinated.merge(&other.hallucinated);
        Ok(())
    }

    /// Checks that these baselines fit scores of `level` from `verifier`.
    pub fn check_compatible(
        &self,
        level: ScoreLevel,
        verifier: &VerifierInfo,
    ) -> Result<(), BaselineError> {
        if self.level != level {
            return Err(BaselineError::LevelMismatch {
                expected: self.level,
                found: level,
            });
        }
        self.verifier.check_same(verifier)
    }

    /// `s_c` and `s_h`, or the error a user must see instead of a NaN reward:
    /// an empty class or `s_c <= s_h`.
    pub fn class_means(&self) -> Result<ClassMeans, BaselineError> {
        let mean = |stats: &ScoreStats, class| {
            let m = stats.mean().ok_or(BaselineError::EmptyClass { class })?;
            // Only reachable through arithmetic overflow of huge scores.
            if !m.is_finite() {
                return Err(BaselineError::NonFiniteScore { value: m });
            }
            Ok(m)
        };
        let correct = mean(&self.correct, ScoreClass::Correct)?;
        let hallucinated = mean(&self.hallucinated, ScoreClass::Hallucinated)?;
        if correct <= hallucinated {
            return Err(BaselineError::NotSeparated {
                correct_mean: correct,
                hallucinated_mean: hallucinated,
            });
        }
        Ok(ClassMeans {
            correct,
            hallucinated,
        })
    }

    /// Smallest and largest score seen over both classes (the default
    /// `s_min`, `s_max` of eq. 8); `None` when both classes are empty.
    pub fn observed_range(&self) -> Option<(f64, f64)> {
        let mut all = self.correct;
        all.merge(&self.hallucinated);
        Some((all.min()?, all.max()?))
    }

    /// The eq. 8 boundaries for these baselines under `config` (margin by
    /// level, `s_min`/`s_max` from the config or the observed range); see
    /// [`RewardBounds::from_baselines`].
    pub fn to_reward_bounds(&self, config: &RewardConfig) -> Result<RewardBounds, RewardError> {
        RewardBounds::from_baselines(self, config)
    }
}

/// On-disk shape of [`ScoreStats`]: extremes are `null` while empty, since
/// JSON has no infinities.
#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreStatsRepr {
    count: u64,
    mean: f64,
    m2: f64,
    min: Option<f64>,
    max: Option<f64>,
}

#[cfg(feature = "serde")]
impl From<ScoreStats> for ScoreStatsRepr {
    fn from(s: ScoreStats) -> Self {
        ScoreStatsRepr {
            count: s.count,
            mean: s.mean,
            m2: s.m2,
            min: s.min(),
            max: s.max(),
        }
    }
}

#[cfg(feature = "serde")]
impl TryFrom<ScoreStatsRepr> for ScoreStats {
    type Error = String;
    fn try_from(r: ScoreStatsRepr) -> Result<Self, String> {
        ScoreStats::from_parts(r.count, r.mean, r.m2, r.min, r.max).map_err(|e| format!("{e}"))
    }
}

/// On-disk shape of [`Baselines`]: adds the format version.
#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BaselinesRepr {
    version: u32,
    level: ScoreLevel,
    verifier: VerifierInfo,
    correct: ScoreStats,
    hallucinated: ScoreStats,
}

#[cfg(feature = "serde")]
impl From<Baselines> for BaselinesRepr {
    fn from(b: Baselines) -> Self {
        BaselinesRepr {
            version: BASELINE_FORMAT_VERSION,
            level: b.level,
            verifier: b.verifier,
            correct: b.correct,
            hallucinated: b.hallucinated,
        }
    }
}

#[cfg(feature = "serde")]
impl TryFrom<BaselinesRepr> for Baselines {
    type Error = String;
    fn try_from(r: BaselinesRepr) -> Result<Self, String> {
        if r.version != BASELINE_FORMAT_VERSION {
            return Err(format!(
                "{}",
                BaselineError::UnsupportedVersion { found: r.version }
            ));
        }
        Ok(Baselines {
            level: r.level,
            verifier: r.verifier,
            correct: r.correct,
            hallucinated: r.hallucinated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    fn stats(xs: &[f64]) -> ScoreStats {
        let mut s = ScoreStats::new();
        s.extend(xs.iter().copied()).unwrap();
        s
    }

    fn close(a: f64, b: f64) -> bool {
        libm::fabs(a - b) <= 1e-12 * (1.0 + libm::fabs(a).max(libm::fabs(b)))
    }

    fn verifier() -> VerifierInfo {
        VerifierInfo {
            model: "openai/clip-vit-large-patch14-336".to_string(),
            model_hash: "sha256:00ff".to_string(),
            score: ScoreKind::Cosine100,
            template: "{}".to_string(),
        }
    }

    #[test]
    fn welford_by_hand() {
        // 2, 4, 4, 4, 5, 5, 7, 9: sum 40, n 8, mean 5;
        // squared deviations 9+1+1+1+0+0+4+16 = 32 = M2;
        // population variance 32/8 = 4 (std 2), sample variance 32/7.
        let s = stats(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(s.count(), 8);
        assert_eq!(s.mean(), Some(5.0));
        assert!(close(s.m2(), 32.0));
        assert!(close(s.variance().unwrap(), 4.0));
        assert!(close(s.std_dev().unwrap(), 2.0));
        assert!(close(s.sample_variance().unwrap(), 32.0 / 7.0));
        assert_eq!((s.min(), s.max()), (Some(2.0), Some(9.0)));
    }

    #[test]
    fn empty_and_single() {
        let e = ScoreStats::new();
        assert!(e.is_empty());
        assert_eq!(
            (e.mean(), e.variance(), e.min(), e.max()),
            (None, None, None, None)
        );
        let one = stats(&[3.5]);
        assert_eq!(one.mean(), Some(3.5));
        assert_eq!(one.variance(), Some(0.0));
        assert_eq!(one.sample_variance(), None);
    }

    #[test]
    fn merge_by_hand() {
        // a = {1, 2, 3}: n 3, mean 2, M2 2.  b = {10, 20}: n 2, mean 15, M2 50.
        // d = 13; mean = 2 + 13 * 2/5 = 7.2; M2 = 2 + 50 + 169 * 3*2/5 = 254.8.
        // Direct: mean of {1,2,3,10,20} = 36/5 = 7.2; squared deviations
        // 38.44 + 27.04 + 17.64 + 7.84 + 163.84 = 254.8.
        let mut a = stats(&[1.0, 2.0, 3.0]);
        a.merge(&stats(&[10.0, 20.0]));
        assert_eq!(a.count(), 5);
        assert!(close(a.mean().unwrap(), 7.2));
        assert!(close(a.m2(), 254.8));
        assert_eq!((a.min(), a.max()), (Some(1.0), Some(20.0)));
    }

    #[test]
    fn merge_with_empty_either_side() {
        let full = stats(&[1.0, 5.0]);
        let mut left = ScoreStats::new();
        left.merge(&full);
        assert_eq!(left, full);
        let mut right = full;
        right.merge(&ScoreStats::new());
        assert_eq!(right, full);
    }

    #[test]
    fn merge_matches_sequential_for_any_split() {
        let xs: Vec<f64> = (0..50)
            .map(|i| 20.0 + ((i * 37) % 23) as f64 * 0.37)
            .collect();
        let whole = stats(&xs);
        for cut in [0, 1, 7, 25, 49, 50] {
            let mut a = stats(&xs[..cut]);
            a.merge(&stats(&xs[cut..]));
            assert_eq!(a.count(), whole.count());
            assert!(close(a.mean().unwrap(), whole.mean().unwrap()), "cut {cut}");
            assert!(libm::fabs(a.m2() - whole.m2()) < 1e-9, "cut {cut}");
        }
    }

    #[test]
    fn non_finite_scores_refused() {
        let mut s = stats(&[1.0]);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = s.push(bad).unwrap_err();
            assert!(matches!(err, BaselineError::NonFiniteScore { .. }));
        }
        assert_eq!(
            s,
            stats(&[1.0]),
            "a refused score must not change the stats"
        );
        assert!(s.push(f64::NAN).unwrap_err().to_string().contains("NaN"));
    }

    #[test]
    fn from_parts_checks_consistency() {
        assert!(
            ScoreStats::from_parts(0, 0.0, 0.0, None, None)
                .unwrap()
                .is_empty()
        );
        let cases = [
            (0, 1.0, 0.0, None, None, "mean"),
            (0, 0.0, 0.0, Some(1.0), None, "min"),
            (2, 1.0, -1.0, Some(0.0), Some(2.0), "m2"),
            (2, 1.0, 1.0, Some(3.0), Some(2.0), "min"),
            (2, f64::NAN, 1.0, Some(0.0), Some(2.0), "mean"),
            (2, 1.0, 1.0, None, Some(2.0), "min"),
            (1, 1.0, 0.5, Some(1.0), Some(1.0), "m2"),
        ];
        for (n, mean, m2, min, max, field) in cases {
            match ScoreStats::from_parts(n, mean, m2, min, max) {
                Err(BaselineError::InvalidStats { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected InvalidStats({field}), got {other:?}"),
            }
        }
    }

    #[test]
    fn class_means_and_errors() {
        let mut b = Baselines::new(ScoreLevel::Object, verifier());
        assert_eq!(b.observed_range(), None);
        assert_eq!(
            b.class_means(),
            Err(BaselineError::EmptyClass {
                class: ScoreClass::Correct
            })
        );
        b.push(ScoreClass::Correct, 26.0).unwrap();
        b.push(ScoreClass::Correct, 28.0).unwrap();
        let err = b.class_means().unwrap_err();
        assert!(err.to_string().contains("no hallucinated scores"), "{err}");
        b.push(ScoreClass::Hallucinated, 21.0).unwrap();
        b.push(ScoreClass::Hallucinated, 19.0).unwrap();
        assert_eq!(
            b.class_means().unwrap(),
            ClassMeans {
                correct: 27.0,
                hallucinated: 20.0
            }
        );
        assert_eq!(b.observed_range(), Some((19.0, 28.0)));

        // Equal means are not separated either (s_c <= s_h).
        let mut eq = Baselines::new(ScoreLevel::Object, verifier());
        eq.push(ScoreClass::Correct, 20.0).unwrap();
        eq.push(ScoreClass::Hallucinated, 20.0).unwrap();
        let err = eq.class_means().unwrap_err();
        assert!(matches!(err, BaselineError::NotSeparated { .. }));
        assert!(err.to_string().contains("s_c = 20"), "{err}");
    }

    #[test]
    fn merge_refuses_other_verifier_or_level() {
        let mut a = Baselines::new(ScoreLevel::Object, verifier());
        a.push(ScoreClass::Correct, 1.0).unwrap();
        let mut b = a.clone();
        b.verifier.template = "a photo of a {}.".to_string();
        match a.merge(&b).unwrap_err() {
            BaselineError::VerifierMismatch { field, .. } => assert_eq!(field, "template"),
            e => panic!("{e}"),
        }
        let mut c = a.clone();
        c.verifier.score = ScoreKind::Dot;
        let err = a.merge(&c).unwrap_err();
        assert!(
            err.to_string().contains("`score` is \"cosine100\""),
            "{err}"
        );
        let mut d = a.clone();
        d.level = ScoreLevel::Sentence;
        assert!(matches!(
            a.merge(&d),
            Err(BaselineError::LevelMismatch { .. })
        ));
        assert_eq!(a.correct.count(), 1, "refused merges change nothing");
        let same = a.clone();
        a.merge(&same).unwrap();
        assert_eq!(a.correct.count(), 2);
    }
}

//! Token rewards: FiSAO eq. 8 as method.md section 6 reconstructs it.
//!
//! ```text
//! tau = (s_c + s_h) / 2,   hi = tau + m/2,   lo = tau - m/2
//! object token with score s (clamped to [s_min, s_max]):
//!   s >= hi :  r_obj = +(s - hi) / (s_max - hi)      in [0, 1]
//!   s <= lo :  r_obj = -(lo - s) / (lo - s_min)      in [-1, 0)
//!   else    :  r_obj = 0
//! every token t:  r_t = r_obj(t) - beta * KL_t
//! ```
//!
//! `KL_t` is the per-token estimator `k1 = log pi_theta - log pi_ref`
//! (default) or `k3 = (r - 1) - log r` with `r = pi_ref / pi_theta`, the two
//! estimators TRL's PPO trainer offers (`kl_estimator`), with the same
//! ratio direction. Only the first mention of an entity is scored; later
//! repeats get `repeat_reward` (-1) under `repeats = penalise`. Every
//! constant is a field of [`RewardConfig`] with the documented default.
//!
//! In `sentence` mode (the Table 4 ablation) the response gets one reward,
//! on its last token: eq. 8 applied to the verifier's score of the whole
//! response, with boundaries from a *sentence-level* baseline (its own
//! `s_c` / `s_h`: mean scores of SFT responses without and with a
//! hallucinated object, see [`ScoreLevel::Sentence`]) and its own margin
//! `sentence_margin`. Word and sentence scores are on different scales, so
//! normalising a sentence score against object baselines would be
//! meaningless; [`TokenRewarder::new`] refuses that combination.
//!
//! Degenerate boundaries are errors, decided once when the bounds are built:
//! `s_max <= hi` (no score could earn a positive reward, and `s = hi = s_max`
//! would divide 0 by 0) and `lo <= s_min` (the same on the negative side).
//! The remedy is a smaller margin or an explicit `score_min` / `score_max`.

use alloc::collections::BTreeSet;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::baseline::{BaselineError, Baselines, ScoreLevel};
use crate::vocab::EntityId;

/// Which reward the policy sees (the Table 4 ablation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum RewardMode {
    /// `token`: eq. 8 on every object mention (the default).
    #[default]
    #[cfg_attr(feature = "serde", serde(rename = "token"))]
    Token,
    /// `sentence`: one reward at the last token, eq. 8 applied to the
    /// sentence-level score against the sentence-level baseline.
    #[cfg_attr(feature = "serde", serde(rename = "sentence"))]
    Sentence,
    /// `none`: the KL penalty only.
    #[cfg_attr(feature = "serde", serde(rename = "none"))]
    KlOnly,
}

impl fmt::Display for RewardMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RewardMode::Token => "token",
            RewardMode::Sentence => "sentence",
            RewardMode::KlOnly => "none",
        })
    }
}

/// The per-token KL estimator (Schulman, "Approximating KL divergence").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum KlEstimator {
    /// `log pi_theta(y_t) - log pi_ref(y_t)`; can be negative per token.
    #[default]
    K1,
    /// `(r - 1) - log r` with `r = pi_ref(y_t) / pi_theta(y_t)`; never negative.
    K3,
}

impl KlEstimator {
    /// The estimate for one token from the two log-probabilities of the
    /// sampled token. Inputs are not checked here; the result is infinite
    /// only when `k3` overflows (`log r` above ~709).
    pub fn estimate(self, policy_logprob: f64, ref_logprob: f64) -> f64 {
        let log_ratio = policy_logprob - ref_logprob;
        match self {
            KlEstimator::K1 => log_ratio,
            // log r = ref - policy = -log_ratio; expm1 keeps precision when
            // the two policies agree closely (the usual case).
            KlEstimator::K3 => libm::expm1(-log_ratio) + log_ratio,
        }
    }
}

/// What a repeated mention of an already named entity earns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Repeats {
    /// `repeat_reward` (default -1, the minimum of eq. 8).
    #[default]
    Penalise,
    /// Zero: only the first mention counts.
    First,
    /// No rule: every mention is scored by eq. 8.
    All,
    /// `-|eq. 8|` of the repeat's own score: on eq. 8's scale rather than
    /// its minimum, and never positive, so a grounded object named again
    /// gives back what naming it earned (nothing to farm) and a
    /// hallucinated one named again costs again. Not in the paper: a
    /// reconstruction option studied in docs/demo.md.
    Negative,
}

/// Where a mention's reward goes among the tokens of its span.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Placement {
    /// All of it on the last token (the action that completes the word).
    #[default]
    Last,
    /// Split equally over the span's tokens (the sum is unchanged).
    Spread,
}

/// Reward configuration; `Default` gives the documented defaults.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct RewardConfig {
    /// Reward mode; default `token`.
    pub mode: RewardMode,
    /// Neutral band width `m` around `tau` for object scores; default 10.
    pub margin: f64,
    /// Neutral band width for sentence-level scores (`sentence` mode);
    /// default 10, the same units (the same score function) as `margin`.
    pub sentence_margin: f64,
    /// KL coefficient `beta`; default 0.2.
    pub beta: f64,
    /// KL estimator; default `k1`.
    pub kl_estimator: KlEstimator,
    /// Repeated-mentions rule; default `penalise`.
    pub repeats: Repeats,
    /// Reward of a repeat under `repeats = penalise`; default -1, in [-1, 0].
    pub repeat_reward: f64,
    /// Reward placement over a mention's tokens; default `last`.
    pub placement: Placement,
    /// `s_min` of eq. 8; default `None`: the smallest score in the
    /// baselines in use (object- or sentence-level, by mode).
    pub score_min: Option<f64>,
    /// `s_max` of eq. 8; default `None`: the largest score in the
    /// baselines in use.
    pub score_max: Option<f64>,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            mode: RewardMode::Token,
            margin: 10.0,
            sentence_margin: 10.0,
            beta: 0.2,
            kl_estimator: KlEstimator::K1,
            repeats: Repeats::Penalise,
            repeat_reward: -1.0,
            placement: Placement::Last,
            score_min: None,
            score_max: None,
        }
    }
}

impl RewardConfig {
    /// Rejects out-of-range values; the error names the field.
    pub fn validate(&self) -> Result<(), RewardError> {
        let bad = |field, value, expected| {
            Err(RewardError::InvalidConfig {
                field,
                value,
                expected,
            })
        };
        for (field, v) in [
            ("margin", self.margin),
            ("sentence_margin", self.sentence_margin),
            ("beta", self.beta),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, v, "a finite number >= 0");
            }
        }
        if !(-1.0..=0.0).contains(&self.repeat_reward) {
            return bad("repeat_reward", self.repeat_reward, "a number in [-1, 0]");
        }
        for (field, v) in [("score_min", self.score_min), ("score_max", self.score_max)] {
            if let Some(v) = v.filter(|v| !v.is_finite()) {
                return bad(field, v, "a finite number");
            }
        }
        if let (Some(min), Some(max)) = (self.score_min, self.score_max) {
            if min >= max {
                return bad("score_min", min, "a number below score_max");
            }
        }
        Ok(())
    }

    /// The margin used for baselines of `level`.
    pub fn margin_for(&self, level: ScoreLevel) -> f64 {
        match level {
            ScoreLevel::Object => self.margin,
            ScoreLevel::Sentence => self.sentence_margin,
        }
    }
}

/// Which side of the neutral band a degenerate boundary is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `hi` against `s_max`.
    Upper,
    /// `lo` against `s_min`.
    Lower,
}

/// Why a reward could not be computed.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RewardError {
    /// A configuration value is out of range.
    InvalidConfig {
        /// The field name as in the config file.
        field: &'static str,
        /// The value given.
        value: f64,
        /// What is accepted.
        expected: &'static str,
    },
    /// The baselines cannot give boundaries (empty class, `s_c <= s_h`, ...).
    Baseline(BaselineError),
    /// A bound is not finite.
    NonFiniteBound {
        /// `s_c`, `s_h`, `s_min` or `s_max`.
        name: &'static str,
        /// The value.
        value: f64,
    },
    /// The neutral band reaches the score range's end: `hi >= s_max` or
    /// `lo <= s_min`, so one side of eq. 8 divides by zero or is unreachable.
    DegenerateBounds {
        /// Which side.
        side: Side,
        /// `hi` or `lo`.
        boundary: f64,
        /// `s_max` or `s_min`.
        extreme: f64,
        /// The margin that produced the boundary.
        margin: f64,
    },
    /// The rewarder's bounds are missing or of the wrong level for its mode.
    BoundsMismatch {
        /// The configured mode.
        mode: RewardMode,
        /// The level of the bounds given, `None` when none were given.
        found: Option<ScoreLevel>,
    },
    /// A mention score (or, with `mention: None`, the sentence score) is NaN or infinite.
    NonFiniteScore {
        /// Index of the mention in the input, `None` for the sentence score.
        mention: Option<usize>,
        /// The value.
        value: f64,
    },
    /// `sentence` mode needs a sentence score and none was given.
    MissingSentenceScore,
    /// `sentence` mode needs at least one token to put the reward on.
    EmptyResponse,
    /// A per-token input does not have the response's length.
    LengthMismatch {
        /// The input at fault.
        what: &'static str,
        /// The response length.
        expected: usize,
        /// Its length.
        found: usize,
    },
    /// A mention's token span is reversed or runs past the response.
    BadSpan {
        /// Index of the mention in the input.
        mention: usize,
        /// First token of its span.
        first: usize,
        /// Last token of its span.
        last: usize,
        /// The response length.
        len: usize,
    },
    /// A log-probability is NaN or infinite.
    NonFiniteLogprob {
        /// `policy_logprobs` or `ref_logprobs`.
        what: &'static str,
        /// The token index.
        token: usize,
        /// The value.
        value: f64,
    },
    /// The KL estimate overflowed (k3 with a huge log-ratio).
    NonFiniteKl {
        /// The token index.
        token: usize,
        /// `log pi_theta - log pi_ref` at that token.
        log_ratio: f64,
    },
}

impl fmt::Display for RewardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RewardError as E;
        match self {
            E::InvalidConfig {
                field,
                value,
                expected,
            } => write!(f, "reward config `{field}` = {value}: expected {expected}"),
            E::Baseline(e) => write!(f, "{e}"),
            E::NonFiniteBound { name, value } => {
                write!(f, "reward bound {name} = {value} is not a finite number")
            }
            E::DegenerateBounds {
                side: Side::Upper,
                boundary,
                extreme,
                margin,
            } => write!(
                f,
                "upper reward boundary hi = tau + m/2 = {boundary} (m = {margin}) is not below \
                 s_max = {extreme}: no score could earn a positive reward; \
                 use a smaller margin or set score_max"
            ),
            E::DegenerateBounds {
                side: Side::Lower,
                boundary,
                extreme,
                margin,
            } => write!(
                f,
                "lower reward boundary lo = tau - m/2 = {boundary} (m = {margin}) is not above \
                 s_min = {extreme}: no score could earn a negative reward; \
                 use a smaller margin or set score_min"
            ),
            E::BoundsMismatch { mode, found } => write!(
                f,
                "reward mode `{mode}` needs {} baselines, found {}",
                match mode {
                    RewardMode::Sentence => "sentence-level",
                    _ => "object-level",
                },
                match found {
                    Some(ScoreLevel::Object) => "object-level ones",
                    Some(ScoreLevel::Sentence) => "sentence-level ones",
                    None => "none",
                }
            ),
            E::NonFiniteScore {
                mention: Some(i),
                value,
            } => write!(f, "score of mention {i} is {value}, not a finite number"),
            E::NonFiniteScore {
                mention: None,
                value,
            } => write!(f, "sentence score is {value}, not a finite number"),
            E::MissingSentenceScore => {
                f.write_str("reward mode `sentence` needs a sentence score for every response")
            }
            E::EmptyResponse => {
                f.write_str("reward mode `sentence` needs a response of at least one token")
            }
            E::LengthMismatch {
                what,
                expected,
                found,
            } => write!(
                f,
                "{what} has {found} entries but the response has {expected} tokens"
            ),
            E::BadSpan {
                mention,
                first,
                last,
                len,
            } => write!(
                f,
                "mention {mention} spans tokens {first}..={last}, \
                 not a valid span of a {len}-token response"
            ),
            E::NonFiniteLogprob { what, token, value } => {
                write!(
                    f,
                    "{what}[{token}] = {value} is not a finite log-probability"
                )
            }
            E::NonFiniteKl { token, log_ratio } => write!(
                f,
                "KL estimate at token {token} overflows (log-ratio {log_ratio})"
            ),
        }
    }
}

impl core::error::Error for RewardError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            RewardError::Baseline(e) => Some(e),
            _ => None,
        }
    }
}

impl From<BaselineError> for RewardError {
    fn from(e: BaselineError) -> Self {
        RewardError::Baseline(e)
    }
}

/// The verifier's verdict on one score, relative to the neutral band.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grounding {
    /// `s >= hi`: rewarded.
    Grounded,
    /// `lo < s < hi`: neutral.
    Uncertain,
    /// `s <= lo`: penalised.
    Hallucinated,
}

/// The checked boundaries of eq. 8 for one score level.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RewardBounds {
    level: ScoreLevel,
    s_c: f64,
    s_h: f64,
    margin: f64,
    s_min: f64,
    s_max: f64,
}

impl RewardBounds {
    /// Builds the boundaries from `s_c`, `s_h`, the margin and the score
    /// range. Errors (never NaN rewards later): a non-finite input, a
    /// negative margin, `s_c <= s_h`, `s_min >= s_max`, `hi >= s_max` or
    /// `lo <= s_min` (see the module docs).
    pub fn new(
        level: ScoreLevel,
        s_c: f64,
        s_h: f64,
        margin: f64,
        s_min: f64,
        s_max: f64,
    ) -> Result<Self, RewardError> {
        for (name, value) in [
            ("s_c", s_c),
            ("s_h", s_h),
            ("s_min", s_min),
            ("s_max", s_max),
        ] {
            if !value.is_finite() {
                return Err(RewardError::NonFiniteBound { name, value });
            }
        }
        if !(margin.is_finite() && margin >= 0.0) {
            return Err(RewardError::InvalidConfig {
                field: "margin",
                value: margin,
                expected: "a finite number >= 0",
            });
        }
        if s_c <= s_h {
            return Err(BaselineError::NotSeparated {
                correct_mean: s_c,
                hallucinated_mean: s_h,
            }
            .into());
        }
        if s_min >= s_max {
            return Err(RewardError::InvalidConfig {
                field: "score_min",
                value: s_min,
                expected: "a number below score_max",
            });
        }
        let bounds = RewardBounds {
            level,
            s_c,
            s_h,
            margin,
            s_min,
            s_max,
        };
        let degenerate = |side, boundary, extreme| RewardError::DegenerateBounds {
            side,
            boundary,
            extreme,
            margin,
        };
        if bounds.hi() >= s_max {
            return Err(degenerate(Side::Upper, bounds.hi(), s_max));
        }
        if bounds.lo() <= s_min {
            return Err(degenerate(Side::Lower, bounds.lo(), s_min));
        }
        Ok(bounds)
    }

    /// Bounds from eq. 7 baselines: `s_c`, `s_h` from the class means, the
    /// margin of the baselines' level, and `s_min` / `s_max` from the config
    /// when set, else the extremes observed in the baselines.
    pub fn from_baselines(
        baselines: &Baselines,
        config: &RewardConfig,
    ) -> Result<Self, RewardError> {
        config.validate()?;
        let means = baselines.class_means()?;
        // class_means succeeded, so both classes are non-empty.
        let (obs_min, obs_max) = baselines.observed_range().unwrap_or((0.0, 0.0));
        RewardBounds::new(
            baselines.level,
            means.correct,
            means.hallucinated,
            config.margin_for(baselines.level),
            config.score_min.unwrap_or(obs_min),
            config.score_max.unwrap_or(obs_max),
        )
    }

    /// The score level these bounds apply to.
    pub fn level(&self) -> ScoreLevel {
        self.level
    }
    /// `s_c`, mean score of correct mentions.
    pub fn s_c(&self) -> f64 {
        self.s_c
    }
    /// `s_h`, mean score of hallucinated mentions.
    pub fn s_h(&self) -> f64 {
        self.s_h
    }
    /// The margin `m`.
    pub fn margin(&self) -> f64 {
        self.margin
    }
    /// `tau = (s_c + s_h) / 2`.
    pub fn tau(&self) -> f64 {
        0.5 * (self.s_c + self.s_h)
    }
    /// `hi = tau + m/2`.
    pub fn hi(&self) -> f64 {
        self.tau() + 0.5 * self.margin
    }
    /// `lo = tau - m/2`.
    pub fn lo(&self) -> f64 {
        self.tau() - 0.5 * self.margin
    }
    /// `s_min`, scores below are clamped.
    pub fn s_min(&self) -> f64 {
        self.s_min
    }
    /// `s_max`, scores above are clamped.
    pub fn s_max(&self) -> f64 {
        self.s_max
    }

    /// Eq. 8's object term for a score: in [-1, 1], 0 inside the band.
    pub fn object_reward(&self, score: f64) -> Result<f64, RewardError> {
        if !score.is_finite() {
            return Err(RewardError::NonFiniteScore {
                mention: None,
                value: score,
            });
        }
        Ok(self.eq8(score))
    }

    /// Which side of the band a score falls on (for labels and reports).
    pub fn grounding(&self, score: f64) -> Grounding {
        if score >= self.hi() {
            Grounding::Grounded
        } else if score <= self.lo() {
            Grounding::Hallucinated
        } else {
            Grounding::Uncertain
        }
    }

    // `score` is finite; `new` guaranteed both denominators are positive.
    fn eq8(&self, score: f64) -> f64 {
        let s = score.clamp(self.s_min, self.s_max);
        let (hi, lo) = (self.hi(), self.lo());
        if s >= hi {
            (s - hi) / (self.s_max - hi)
        } else if s <= lo {
            -(lo - s) / (lo - self.s_min)
        } else {
            0.0
        }
    }
}

/// One object mention of a response, scored by the verifier.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredMention {
    /// First model token of the mention (from the alignment).
    pub first_token: usize,
    /// Last model token of the mention; the reward goes here under `last`.
    pub last_token: usize,
    /// Verifier score `s(o, v)`.
    pub score: f64,
    /// Canonical entity, for the repeated-mentions rule.
    pub entity: EntityId,
}

impl ScoredMention {
    /// A mention covering the single token `token`.
    pub fn at(token: usize, score: f64, entity: EntityId) -> Self {
        ScoredMention {
            first_token: token,
            last_token: token,
            score,
            entity,
        }
    }
}

/// Everything the reward of one response depends on.
#[derive(Clone, Copy, Debug)]
pub struct Response<'a> {
    /// Number of generated tokens.
    pub len: usize,
    /// Scored object mentions (any order; the earliest mention of an
    /// entity, by token position, is its first).
    pub mentions: &'a [ScoredMention],
    /// Verifier score of the whole response (`sentence` mode only).
    pub sentence_score: Option<f64>,
    /// `log pi_theta(y_t | ...)` of each generated token.
    pub policy_logprobs: &'a [f64],
    /// `log pi_ref(y_t | ...)` of each generated token (adapters off).
    pub ref_logprobs: &'a [f64],
}

/// Totals for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RewardSummary {
    /// Object mentions in the response.
    pub mentions: usize,
    /// Mentions of an entity already named earlier in the response.
    pub repeats: usize,
    /// Mentions whose final reward is above 0.
    pub positive: usize,
    /// Mentions whose final reward is below 0.
    pub negative: usize,
    /// First mentions of an entity with a reward below 0: the verifier's
    /// hallucinations, without the repeats that `negative` also counts.
    pub rejected_first: usize,
    /// Sum of the object part (eq. 8 terms, repeat penalties, or the sentence reward).
    pub object_total: f64,
    /// Sum of the raw per-token KL estimates (before `beta`).
    pub kl_total: f64,
    /// Sum of the rewards: `object_total - beta * kl_total`.
    pub total: f64,
}

/// Per-token rewards of one response and their breakdown.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRewards {
    /// `r_t = object[t] - beta * kl[t]`.
    pub rewards: Vec<f64>,
    /// The object part of each token's reward.
    pub object: Vec<f64>,
    /// The raw KL estimate of each token (before `beta`).
    pub kl: Vec<f64>,
    /// Totals.
    pub summary: RewardSummary,
}

/// Builds per-token rewards from a checked config and matching bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRewarder {
    config: RewardConfig,
    bounds: Option<RewardBounds>,
}

impl TokenRewarder {
    /// Checks the config and that the bounds fit the mode: `token` needs
    /// object-level bounds, `sentence` sentence-level ones, `none` ignores them.
    pub fn new(config: RewardConfig, bounds: Option<RewardBounds>) -> Result<Self, RewardError> {
        config.validate()?;
        let needed = match config.mode {
            RewardMode::Token => Some(ScoreLevel::Object),
            RewardMode::Sentence => Some(ScoreLevel::Sentence),
            RewardMode::KlOnly => None,
        };
        if let Some(level) = needed {
            if bounds.map(|b| b.level()) != Some(level) {
                return Err(RewardError::BoundsMismatch {
                    mode: config.mode,
                    found: bounds.map(|b| b.level()),
                });
            }
        }
        Ok(TokenRewarder { config, bounds })
    }

    /// [`TokenRewarder::new`] with bounds built from `baselines`.
    pub fn from_baselines(
        config: RewardConfig,
        baselines: Option<&Baselines>,
    ) -> Result<Self, RewardError> {
        let bounds = match (config.mode, baselines) {
            (RewardMode::KlOnly, _) | (_, None) => None,
            (_, Some(b)) => Some(RewardBounds::from_baselines(b, &config)?),
        };
        TokenRewarder::new(config, bounds)
    }

    /// The configuration.
    pub fn config(&self) -> &RewardConfig {
        &self.config
    }

    /// The bounds, when the mode uses them.
    pub fn bounds(&self) -> Option<&RewardBounds> {
        self.bounds.as_ref()
    }

    /// Per-token rewards `r_t = r_obj(t) - beta * KL_t` for one response.
    pub fn rewards(&self, response: &Response<'_>) -> Result<TokenRewards, RewardError> {
        let kl = self.kl_terms(response)?;
        let mut object = vec![0.0; response.len];
        let mut summary = RewardSummary::default();
        match (self.config.mode, &self.bounds) {
            (RewardMode::Token, Some(bounds)) => {
                self.mention_rewards(bounds, response, &mut object, &mut summary)?
            }
            (RewardMode::Sentence, Some(bounds)) => {
                let score = response
                    .sentence_score
                    .ok_or(RewardError::MissingSentenceScore)?;
                let last = object.last_mut().ok_or(RewardError::EmptyResponse)?;
                *last = bounds.object_reward(score)?;
            }
            // `new` ensured token/sentence modes have bounds.
            _ => {}
        }
        let beta = self.config.beta;
        let rewards: Vec<f64> = object.iter().zip(&kl).map(|(o, k)| o - beta * k).collect();
        summary.object_total = object.iter().sum();
        summary.kl_total = kl.iter().sum();
        summary.total = rewards.iter().sum();
        Ok(TokenRewards {
            rewards,
            object,
            kl,
            summary,
        })
    }

    fn kl_terms(&self, response: &Response<'_>) -> Result<Vec<f64>, RewardError> {
        let len = response.len;
        for (what, xs) in [
            ("policy_logprobs", response.policy_logprobs),
            ("ref_logprobs", response.ref_logprobs),
        ] {
            if xs.len() != len {
                return Err(RewardError::LengthMismatch {
                    what,
                    expected: len,
                    found: xs.len(),
                });
            }
            if let Some((token, &value)) = xs.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(RewardError::NonFiniteLogprob { what, token, value });
            }
        }
        let pairs = response.policy_logprobs.iter().zip(response.ref_logprobs);
        pairs
            .enumerate()
            .map(|(token, (&p, &r))| {
                let k = self.config.kl_estimator.estimate(p, r);
                k.is_finite().then_some(k).ok_or(RewardError::NonFiniteKl {
                    token,
                    log_ratio: p - r,
                })
            })
            .collect()
    }

    fn mention_rewards(
        &self,
        bounds: &RewardBounds,
        response: &Response<'_>,
        object: &mut [f64],
        summary: &mut RewardSummary,
    ) -> Result<(), RewardError> {
        let mentions = response.mentions;
        check_mentions(mentions, response.len)?;
        // Text order decides which mention of an entity is the first.
        let mut order: Vec<usize> = (0..mentions.len()).collect();
        order.sort_by_key(|&i| (mentions[i].first_token, mentions[i].last_token));
        let mut seen = BTreeSet::new();
        for i in order {
            let m = &mentions[i];
            let repeat = !seen.insert(m.entity);
            let value = match (repeat, self.config.repeats) {
                (false, _) | (true, Repeats::All) => bounds.eq8(m.score),
                (true, Repeats::Penalise) => self.config.repeat_reward,
                (true, Repeats::First) => 0.0,
                (true, Repeats::Negative) => -bounds.eq8(m.score).abs(),
            };
            summary.mentions += 1;
            summary.repeats += usize::from(repeat);
            summary.positive += usize::from(value > 0.0);
            summary.negative += usize::from(value < 0.0);
            summary.rejected_first += usize::from(!repeat && value < 0.0);
            self.place(m, value, object);
        }
        Ok(())
    }

    fn place(&self, m: &ScoredMention, value: f64, object: &mut [f64]) {
        match self.config.placement {
            Placement::Last => object[m.last_token] += value,
            Placement::Spread => {
                let span = &mut object[m.first_token..=m.last_token];
                let share = value / span.len() as f64;
                span.iter_mut().for_each(|r| *r += share);
            }
        }
    }
}

fn check_mentions(mentions: &[ScoredMention], len: usize) -> Result<(), RewardError> {
    for (i, m) in mentions.iter().enumerate() {
        if m.first_token > m.last_token || m.last_token >= len {
            return Err(RewardError::BadSpan {
                mention: i,
                first: m.first_token,
                last: m.last_token,
                len,
            });
        }
        if !m.score.is_finite() {
            return Err(RewardError::NonFiniteScore {
                mention: Some(i),
                value: m.score,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::{ScoreClass, VerifierInfo};
    use alloc::string::ToString;

    fn close(a: f64, b: f64) -> bool {
        libm::fabs(a - b) <= 1e-12
    }

    fn all_close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| close(*x, *y))
    }

    /// s_c 27, s_h 19 -> tau 23; m 4 -> hi 25, lo 21; s_min 15, s_max 35.
    fn bounds() -> RewardBounds {
        RewardBounds::new(ScoreLevel::Object, 27.0, 19.0, 4.0, 15.0, 35.0).unwrap()
    }

    fn config() -> RewardConfig {
        RewardConfig {
            margin: 4.0,
            ..RewardConfig::default()
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = RewardConfig::default();
        assert_eq!(c.mode, RewardMode::Token);
        assert_eq!((c.margin, c.sentence_margin, c.beta), (10.0, 10.0, 0.2));
        assert_eq!(c.kl_estimator, KlEstimator::K1);
        assert_eq!(c.repeats, Repeats::Penalise);
        assert_eq!(c.repeat_reward, -1.0);
        assert_eq!(c.placement, Placement::Last);
        assert_eq!((c.score_min, c.score_max), (None, None));
        c.validate().unwrap();
    }

    #[test]
    fn eq8_by_hand() {
        let b = bounds();
        assert_eq!((b.tau(), b.hi(), b.lo()), (23.0, 25.0, 21.0));
        let cases = [
            (30.0, 0.5),  // (30 - 25) / (35 - 25)
            (35.0, 1.0),  // s_max
            (40.0, 1.0),  // clamped to 35
            (25.0, 0.0),  // exactly hi: (25 - 25) / 10
            (23.0, 0.0),  // inside the band
            (22.9, 0.0),  // inside the band
            (18.0, -0.5), // -(21 - 18) / (21 - 15)
            (15.0, -1.0), // s_min
            (-5.0, -1.0), // clamped to 15
            (21.0, 0.0),  // exactly lo: -(21 - 21) / 6 = -0
        ];
        for (s, want) in cases {
            assert!(close(b.object_reward(s).unwrap(), want), "s = {s}");
        }
        assert_eq!(b.grounding(25.0), Grounding::Grounded);
        assert_eq!(b.grounding(23.0), Grounding::Uncertain);
        assert_eq!(b.grounding(21.0), Grounding::Hallucinated);
    }

    #[test]
    fn eq8_default_margin_and_zero_margin() {
        // m 10: tau 23, hi 28, lo 18; s_max 38: (33 - 28) / (38 - 28) = 0.5.
        let b = RewardBounds::new(ScoreLevel::Object, 27.0, 19.0, 10.0, 10.0, 38.0).unwrap();
        assert!(close(b.object_reward(33.0).unwrap(), 0.5));
        // m 0: hi = lo = tau = 23; 23 earns 0, 24 earns 1 / (33 - 23) = 0.1,
        // 22 earns -1 / (23 - 13) = -0.1.
        let z = RewardBounds::new(ScoreLevel::Object, 27.0, 19.0, 0.0, 13.0, 33.0).unwrap();
        assert_eq!(z.object_reward(23.0).unwrap(), 0.0);
        assert!(close(z.object_reward(24.0).unwrap(), 0.1));
        assert!(close(z.object_reward(22.0).unwrap(), -0.1));
    }

    #[test]
    fn degenerate_and_invalid_bounds_are_errors() {
        let new = |s_c, s_h, m, lo, hi| RewardBounds::new(ScoreLevel::Object, s_c, s_h, m, lo, hi);
        // hi = 23 + 5 = 28 = s_max: 0/0 at s = 28, so refused.
        let e = new(27.0, 19.0, 10.0, 10.0, 28.0).unwrap_err();
        assert!(matches!(
            e,
            RewardError::DegenerateBounds {
                side: Side::Upper,
                ..
            }
        ));
        assert!(e.to_string().contains("hi = tau + m/2 = 28"), "{e}");
        // hi beyond s_max: positive rewards unreachable, refused too.
        assert!(new(27.0, 19.0, 10.0, 10.0, 27.0).is_err());
        // lo = 18 = s_min.
        let e = new(27.0, 19.0, 10.0, 18.0, 40.0).unwrap_err();
        assert!(matches!(
            e,
            RewardError::DegenerateBounds {
                side: Side::Lower,
                ..
            }
        ));
        // s_c <= s_h.
        let e = new(19.0, 19.0, 0.0, 0.0, 40.0).unwrap_err();
        assert!(matches!(
            e,
            RewardError::Baseline(BaselineError::NotSeparated { .. })
        ));
        // Negative or NaN margin, non-finite inputs, empty range.
        let e = new(27.0, 19.0, -1.0, 0.0, 40.0).unwrap_err();
        assert!(e.to_string().contains("`margin` = -1"), "{e}");
        assert!(new(27.0, 19.0, f64::NAN, 0.0, 40.0).is_err());
        let e = new(f64::NAN, 19.0, 1.0, 0.0, 40.0).unwrap_err();
        assert!(
            matches!(e, RewardError::NonFiniteBound { name: "s_c", .. }),
            "{e}"
        );
        assert!(new(27.0, 19.0, 1.0, 0.0, f64::INFINITY).is_err());
        assert!(new(27.0, 19.0, 1.0, 40.0, 40.0).is_err());
        // NaN scores are errors, never NaN rewards.
        assert!(matches!(
            bounds().object_reward(f64::NAN),
            Err(RewardError::NonFiniteScore { mention: None, .. })
        ));
    }

    #[test]
    fn config_validation_names_the_field() {
        let cases: [(RewardConfig, &str); 7] = [
            (
                RewardConfig {
                    margin: -1.0,
                    ..config()
                },
                "margin",
            ),
            (
                RewardConfig {
                    sentence_margin: f64::NAN,
                    ..config()
                },
                "sentence_margin",
            ),
            (
                RewardConfig {
                    beta: -0.1,
                    ..config()
                },
                "beta",
            ),
            (
                RewardConfig {
                    beta: f64::INFINITY,
                    ..config()
                },
                "beta",
            ),
            (
                RewardConfig {
                    repeat_reward: 0.5,
                    ..config()
                },
                "repeat_reward",
            ),
            (
                RewardConfig {
                    score_max: Some(f64::NAN),
                    ..config()
                },
                "score_max",
            ),
            (
                RewardConfig {
                    score_min: Some(5.0),
                    score_max: Some(5.0),
                    ..config()
                },
                "score_min",
            ),
        ];
        for (c, field) in cases {
            match c.validate() {
                Err(RewardError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    fn rewarder(c: RewardConfig) -> TokenRewarder {
        TokenRewarder::new(c, Some(bounds())).unwrap()
    }

    // Six tokens; beta 0.2, k1.
    // policy  -1.0 -0.5 -2.0 -0.1 -0.3 -1.2
    // ref     -1.5 -0.5 -1.0 -0.1 -0.8 -1.2
    // k1       0.5  0   -1.0  0    0.5  0
    const POLICY: [f64; 6] = [-1.0, -0.5, -2.0, -0.1, -0.3, -1.2];
    const REF: [f64; 6] = [-1.5, -0.5, -1.0, -0.1, -0.8, -1.2];

    // entity 7 at token 1 (score 30 -> +0.5), entity 3 on tokens 2..=3
    // (score 18 -> -0.5), entity 7 again at token 5 (score 33: eq. 8 would
    // give (33 - 25) / 10 = 0.8). Given out of text order on purpose.
    fn mentions() -> [ScoredMention; 3] {
        [
            ScoredMention::at(5, 33.0, EntityId(7)),
            ScoredMention {
                first_token: 2,
                last_token: 3,
                score: 18.0,
                entity: EntityId(3),
            },
            ScoredMention::at(1, 30.0, EntityId(7)),
        ]
    }

    fn response<'a>(mentions: &'a [ScoredMention]) -> Response<'a> {
        Response {
            len: 6,
            mentions,
            sentence_score: None,
            policy_logprobs: &POLICY,
            ref_logprobs: &REF,
        }
    }

    #[test]
    fn token_rewards_by_hand_penalise() {
        let m = mentions();
        let out = rewarder(config()).rewards(&response(&m)).unwrap();
        // object  0  0.5  0  -0.5  0  -1 (the repeat)
        // r = object - 0.2 * k1:
        //        -0.1 0.5 0.2 -0.5 -0.1 -1.0, sum -1.0
        assert!(all_close(&out.kl, &[0.5, 0.0, -1.0, 0.0, 0.5, 0.0]));
        assert!(all_close(&out.object, &[0.0, 0.5, 0.0, -0.5, 0.0, -1.0]));
        assert!(all_close(&out.rewards, &[-0.1, 0.5, 0.2, -0.5, -0.1, -1.0]));
        let s = out.summary;
        assert_eq!(
            (s.mentions, s.repeats, s.positive, s.negative),
            (3, 1, 1, 2)
        );
        assert!(close(s.object_total, -1.0) && close(s.kl_total, 0.0) && close(s.total, -1.0));
    }

    #[test]
    fn repeat_rules_first_and_all() {
        let m = mentions();
        let first = rewarder(RewardConfig {
            repeats: Repeats::First,
            ..config()
        });
        let out = first.rewards(&response(&m)).unwrap();
        assert!(all_close(&out.object, &[0.0, 0.5, 0.0, -0.5, 0.0, 0.0]));
        assert_eq!(out.summary.repeats, 1);
        let all = rewarder(RewardConfig {
            repeats: Repeats::All,
            ..config()
        });
        let out = all.rewards(&response(&m)).unwrap();
        assert!(all_close(&out.object, &[0.0, 0.5, 0.0, -0.5, 0.0, 0.8]));
        assert_eq!(out.summary.positive, 2);
        let soft = rewarder(RewardConfig {
            repeat_reward: -0.25,
            ..config()
        });
        let out = soft.rewards(&response(&m)).unwrap();
        assert!(close(out.object[5], -0.25));
        // The repeat (eq. 8 = +0.8 under `all`) gives it back under `negative`.
        let negative = rewarder(RewardConfig {
            repeats: Repeats::Negative,
            ..config()
        });
        let out = negative.rewards(&response(&m)).unwrap();
        assert!(all_close(&out.object, &[0.0, 0.5, 0.0, -0.5, 0.0, -0.8]));
        assert_eq!(out.summary.negative, 2);
        assert_eq!(out.summary.rejected_first, 1);
    }

    #[test]
    fn spread_placement_splits_the_reward() {
        let m = mentions();
        let c = RewardConfig {
            placement: Placement::Spread,
            ..config()
        };
        let out = rewarder(c).rewards(&response(&m)).unwrap();
        // -0.5 over tokens 2 and 3: -0.25 each.
        assert!(all_close(&out.object, &[0.0, 0.5, -0.25, -0.25, 0.0, -1.0]));
    }

    #[test]
    fn k3_by_hand() {
        // k3 = (r - 1) - log r, log r = ref - policy = -d with d = policy - ref:
        // d = 0.5: e^-0.5 - 1 + 0.5 = 0.10653065971263342
        // d = -1 : e^1 - 1 - 1      = 0.7182818284590451
        // d = 0  : 0
        let k = KlEstimator::K3;
        assert!(close(k.estimate(-1.0, -1.5), 0.10653065971263342));
        assert!(close(k.estimate(-2.0, -1.0), 0.7182818284590451));
        assert_eq!(k.estimate(-0.1, -0.1), 0.0);
        assert!(k.estimate(-3.0, -0.2) > 0.0 && k.estimate(-0.2, -3.0) > 0.0);
        let c = RewardConfig {
            mode: RewardMode::KlOnly,
            kl_estimator: k,
            ..config()
        };
        let out = TokenRewarder::new(c, None)
            .unwrap()
            .rewards(&response(&[]))
            .unwrap();
        let kl = [
            0.10653065971263342,
            0.0,
            0.7182818284590451,
            0.0,
            0.10653065971263342,
            0.0,
        ];
        assert!(all_close(&out.kl, &kl));
        assert!(out.object.iter().all(|&o| o == 0.0));
        assert!(close(out.rewards[2], -0.2 * 0.7182818284590451));
        // A huge log-ratio overflows k3: an error naming the token, not inf.
        let p = [0.0, -900.0];
        let r = [0.0, -0.1];
        let resp = Response {
            len: 2,
            mentions: &[],
            sentence_score: None,
            policy_logprobs: &p,
            ref_logprobs: &r,
        };
        let c = RewardConfig {
            mode: RewardMode::KlOnly,
            kl_estimator: k,
            ..config()
        };
        let e = TokenRewarder::new(c, None)
            .unwrap()
            .rewards(&resp)
            .unwrap_err();
        assert!(
            matches!(e, RewardError::NonFiniteKl { token: 1, .. }),
            "{e}"
        );
    }

    #[test]
    fn none_mode_ignores_mentions() {
        let m = mentions();
        let c = RewardConfig {
            mode: RewardMode::KlOnly,
            ..config()
        };
        let out = TokenRewarder::new(c, Some(bounds()))
            .unwrap()
            .rewards(&response(&m))
            .unwrap();
        assert!(all_close(&out.rewards, &[-0.1, 0.0, 0.2, 0.0, -0.1, 0.0]));
        assert_eq!(out.summary.mentions, 0);
    }

    #[test]
    fn sentence_mode_by_hand() {
        // Sentence bounds: s_c 30, s_h 26 -> tau 28; m 2 -> hi 29, lo 27;
        // s_min 20, s_max 40. Score 34: (34 - 29) / (40 - 29) = 5/11 on the
        // last token; score 24: -(27 - 24) / (27 - 20) = -3/7.
        let sb = RewardBounds::new(ScoreLevel::Sentence, 30.0, 26.0, 2.0, 20.0, 40.0).unwrap();
        let c = RewardConfig {
            mode: RewardMode::Sentence,
            ..config()
        };
        let r = TokenRewarder::new(c.clone(), Some(sb)).unwrap();
        let m = mentions();
        let mut resp = response(&m);
        resp.sentence_score = Some(34.0);
        let out = r.rewards(&resp).unwrap();
        assert!(all_close(
            &out.object,
            &[0.0, 0.0, 0.0, 0.0, 0.0, 5.0 / 11.0]
        ));
        assert!(close(out.rewards[5], 5.0 / 11.0));
        assert!(close(out.rewards[0], -0.1));
        resp.sentence_score = Some(24.0);
        assert!(close(r.rewards(&resp).unwrap().object[5], -3.0 / 7.0));
        resp.sentence_score = None;
        assert_eq!(r.rewards(&resp), Err(RewardError::MissingSentenceScore));
        resp.sentence_score = Some(f64::INFINITY);
        assert!(matches!(
            r.rewards(&resp),
            Err(RewardError::NonFiniteScore { mention: None, .. })
        ));
        let empty = Response {
            len: 0,
            mentions: &[],
            sentence_score: Some(30.0),
            policy_logprobs: &[],
            ref_logprobs: &[],
        };
        assert_eq!(r.rewards(&empty), Err(RewardError::EmptyResponse));
        // Sentence mode refuses object-level bounds and vice versa.
        let e = TokenRewarder::new(c, Some(bounds())).unwrap_err();
        assert!(
            e.to_string().contains("`sentence` needs sentence-level"),
            "{e}"
        );
        assert!(TokenRewarder::new(config(), Some(sb)).is_err());
        assert!(TokenRewarder::new(config(), None).is_err());
    }

    #[test]
    fn length_one_and_empty_responses() {
        let r = rewarder(config());
        let one = [ScoredMention::at(0, 30.0, EntityId(1))];
        let resp = Response {
            len: 1,
            mentions: &one,
            sentence_score: None,
            policy_logprobs: &[-0.2],
            ref_logprobs: &[-0.7],
        };
        // 0.5 - 0.2 * 0.5 = 0.4
        let out = r.rewards(&resp).unwrap();
        assert!(all_close(&out.rewards, &[0.4]));
        let empty = Response {
            len: 0,
            mentions: &[],
            sentence_score: None,
            policy_logprobs: &[],
            ref_logprobs: &[],
        };
        assert!(r.rewards(&empty).unwrap().rewards.is_empty());
    }

    #[test]
    fn bad_inputs_are_errors_naming_the_culprit() {
        let r = rewarder(config());
        let m = mentions();
        let mut resp = response(&m);
        resp.ref_logprobs = &REF[..5];
        let e = r.rewards(&resp).unwrap_err();
        assert_eq!(
            e,
            RewardError::LengthMismatch {
                what: "ref_logprobs",
                expected: 6,
                found: 5
            }
        );
        assert!(e.to_string().contains("ref_logprobs has 5 entries"), "{e}");

        let mut p = POLICY;
        p[4] = f64::NAN;
        let mut resp = response(&m);
        resp.policy_logprobs = &p;
        let e = r.rewards(&resp).unwrap_err();
        assert!(matches!(
            e,
            RewardError::NonFiniteLogprob {
                what: "policy_logprobs",
                token: 4,
                ..
            }
        ));

        let mut bad = mentions();
        bad[1].score = f64::NAN;
        let e = r.rewards(&response(&bad)).unwrap_err();
        assert!(
            matches!(
                e,
                RewardError::NonFiniteScore {
                    mention: Some(1),
                    ..
                }
            ),
            "{e}"
        );

        let mut bad = mentions();
        bad[0].last_token = 6;
        bad[0].first_token = 6;
        let e = r.rewards(&response(&bad)).unwrap_err();
        assert!(
            e.to_string().contains("mention 0 spans tokens 6..=6"),
            "{e}"
        );
        let mut bad = mentions();
        bad[1].first_token = 4;
        assert!(matches!(
            r.rewards(&response(&bad)),
            Err(RewardError::BadSpan { mention: 1, .. })
        ));
    }

    fn baselines() -> Baselines {
        // correct {26, 27, 28}: s_c 27; hallucinated {15, 19, 23}: s_h 19;
        // observed range [15, 28].
        let mut b = Baselines::new(ScoreLevel::Object, VerifierInfo::default());
        for s in [26.0, 27.0, 28.0] {
            b.push(ScoreClass::Correct, s).unwrap();
        }
        for s in [15.0, 19.0, 23.0] {
            b.push(ScoreClass::Hallucinated, s).unwrap();
        }
        b
    }

    #[test]
    fn bounds_from_baselines() {
        let b = baselines();
        // m 4: hi 25, lo 21, s_min 15, s_max 28: 27 -> (27 - 25) / 3.
        let bd = b.to_reward_bounds(&config()).unwrap();
        assert_eq!((bd.s_min(), bd.s_max()), (15.0, 28.0));
        assert!(close(bd.object_reward(27.0).unwrap(), 2.0 / 3.0));
        // Config overrides the observed extremes: (30 - 25) / (35 - 25).
        let c = RewardConfig {
            score_max: Some(35.0),
            ..config()
        };
        assert!(close(
            b.to_reward_bounds(&c).unwrap().object_reward(30.0).unwrap(),
            0.5
        ));
        // Default m 10: hi = 28 = observed s_max -> a clear error.
        let e = b.to_reward_bounds(&RewardConfig::default()).unwrap_err();
        assert!(
            matches!(
                e,
                RewardError::DegenerateBounds {
                    side: Side::Upper,
                    ..
                }
            ),
            "{e}"
        );
        // Empty class -> the baseline error, wrapped.
        let empty = Baselines::new(ScoreLevel::Object, VerifierInfo::default());
        let e = empty.to_reward_bounds(&config()).unwrap_err();
        assert!(e.to_string().contains("no correct scores"), "{e}");
        assert!(core::error::Error::source(&e).is_some());
        // Sentence baselines use sentence_margin.
        let mut s = baselines();
        s.level = ScoreLevel::Sentence;
        let c = RewardConfig {
            mode: RewardMode::Sentence,
            sentence_margin: 2.0,
            ..config()
        };
        let r = TokenRewarder::from_baselines(c, Some(&s)).unwrap();
        assert_eq!(r.bounds().unwrap().hi(), 24.0);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn config_serde() {
        let c: RewardConfig =
            serde_json::from_str(r#"{"mode": "none", "kl_estimator": "k3", "repeats": "first"}"#)
                .unwrap();
        assert_eq!(c.mode, RewardMode::KlOnly);
        assert_eq!(c.kl_estimator, KlEstimator::K3);
        assert_eq!(c.repeats, Repeats::First);
        assert_eq!(c.margin, 10.0);
        let back: RewardConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let e = serde_json::from_str::<RewardConfig>(r#"{"margn": 3}"#).unwrap_err();
        assert!(e.to_string().contains("margn"), "{e}");
    }
}

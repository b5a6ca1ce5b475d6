//! PPO reference math: FiSAO eq. 9-10 as method.md section 7 fixes it.
//!
//! Plain functions over slices, in f64, that the tch trainer is tested
//! against: GAE, masked whitening, the clipped policy loss, the clipped
//! value loss, and entropy / log-prob from logits. Where method.md is silent
//! they follow Hugging Face TRL's PPO trainers (the classic `PPOTrainer` and
//! its successor, `PPOv2Trainer` / `PPOTrainer`); each such choice is marked
//! "TRL:" below. One deliberate difference: wherever TRL would produce a NaN
//! or an infinity (an all-masked batch, a single value to whiten, an
//! overflowing ratio) these functions return an error naming the culprit.
//!
//! Masks are `true` for positions that count (response tokens) and `false`
//! for padding. Values at masked-out positions are never read, so padding
//! may hold anything (TRL fills padded log-probs with 1.0), and every
//! per-position output is 0 there.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// PPO configuration; `Default` gives the documented defaults.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct PpoConfig {
    /// Discount `gamma`; default 1 (the paper's MDP is undiscounted).
    pub gamma: f64,
    /// GAE `lambda`; default 0.95.
    pub lam: f64,
    /// Ratio clip `epsilon`; default 0.2.
    pub cliprange: f64,
    /// Value clip around the rollout values; default 0.2 (TRL's default).
    pub cliprange_value: f64,
    /// Value loss coefficient; default 0.1.
    pub vf_coef: f64,
    /// Added to the variance before whitening; default 1e-8 (TRL).
    pub whiten_eps: f64,
    /// Optimisation epochs per rollout batch; default 4 (read by the trainer).
    pub epochs: u32,
}

impl Default for PpoConfig {
    fn default() -> Self {
        PpoConfig {
            gamma: 1.0,
            lam: 0.95,
            cliprange: 0.2,
            cliprange_value: 0.2,
            vf_coef: 0.1,
            whiten_eps: 1e-8,
            epochs: 4,
        }
    }
}

impl PpoConfig {
    /// Rejects out-of-range values; the error names the field.
    pub fn validate(&self) -> Result<(), PpoError> {
        check_unit("gamma", self.gamma)?;
        check_unit("lam", self.lam)?;
        let positive = [
            ("cliprange", self.cliprange),
            ("cliprange_value", self.cliprange_value),
            ("whiten_eps", self.whiten_eps),
        ];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(field, v, "a finite number > 0"));
            }
        }
        if self.cliprange >= 1.0 {
            return Err(invalid("cliprange", self.cliprange, "a number in (0, 1)"));
        }
        if !(self.vf_coef.is_finite() && self.vf_coef >= 0.0) {
            return Err(invalid("vf_coef", self.vf_coef, "a finite number >= 0"));
        }
        if self.epochs == 0 {
            return Err(invalid("epochs", 0.0, "an integer >= 1"));
        }
        Ok(())
    }
}

fn invalid(field: &'static str, value: f64, expected: &'static str) -> PpoError {
    PpoError::InvalidConfig {
        field,
        value,
        expected,
    }
}

fn check_unit(field: &'static str, v: f64) -> Result<(), PpoError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid(field, v, "a number in [0, 1]"))
    }
}

/// Why a PPO quantity could not be computed.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum PpoError {
    /// A configuration value is out of range.
    InvalidConfig {
        /// The field name as in the config file.
        field: &'static str,
        /// The value given.
        value: f64,
        /// What is accepted.
        expected: &'static str,
    },
    /// An input slice does not have the mask's length.
    LengthMismatch {
        /// The input at fault.
        what: &'static str,
        /// The mask's length.
        expected: usize,
        /// Its length.
        found: usize,
    },
    /// An input is NaN or infinite at a position the mask keeps.
    NonFinite {
        /// The input at fault.
        what: &'static str,
        /// The position.
        index: usize,
        /// The value.
        value: f64,
    },
    /// The mask keeps no position, so a masked mean is undefined.
    EmptyMask,
    /// The unbiased variance needs at least two kept positions.
    TooFewForVariance {
        /// Kept positions.
        count: usize,
    },
    /// Variance plus epsilon is zero: whitening would divide by zero.
    ZeroVariance,
    /// A flat batch's length is not a multiple of the row width.
    BadWidth {
        /// Length of the flat batch.
        len: usize,
        /// The row width given.
        width: usize,
    },
    /// `exp(new - old)` overflows at a kept position.
    RatioOverflow {
        /// The position.
        index: usize,
        /// `new_logprob - old_logprob` there.
        log_ratio: f64,
    },
    /// Logits are unusable (empty, NaN, +inf, or all -inf).
    BadLogits {
        /// What is wrong.
        reason: &'static str,
    },
    /// A token id is outside the logits' vocabulary.
    TokenOutOfRange {
        /// The token id.
        token: usize,
        /// The vocabulary size.
        vocab: usize,
    },
}

impl fmt::Display for PpoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PpoError as E;
        match self {
            E::InvalidConfig {
                field,
                value,
                expected,
            } => write!(f, "PPO config `{field}` = {value}: expected {expected}"),
            E::LengthMismatch {
                what,
                expected,
                found,
            } => write!(f, "{what} has {found} entries but the mask has {expected}"),
            E::NonFinite { what, index, value } => {
                write!(f, "{what}[{index}] = {value} is not a finite number")
            }
            E::EmptyMask => f.write_str("the mask keeps no position: nothing to average"),
            E::TooFewForVariance { count } => write!(
                f,
                "unbiased variance needs at least 2 unmasked values, found {count}; \
                 use a larger batch"
            ),
            E::ZeroVariance => f.write_str("variance + eps is 0: cannot whiten"),
            E::BadWidth { len, width } => write!(
                f,
                "a flat batch of {len} values is not a whole number of rows of width {width}"
            ),
            E::RatioOverflow { index, log_ratio } => write!(
                f,
                "probability ratio overflows at position {index} (log-ratio {log_ratio})"
            ),
            E::BadLogits { reason } => write!(f, "bad logits: {reason}"),
            E::TokenOutOfRange { token, vocab } => {
                write!(f, "token id {token} is outside a vocabulary of {vocab}")
            }
        }
    }
}

impl core::error::Error for PpoError {}

/// Checks that every input has the mask's length and is finite where the
/// mask keeps it; returns the number of kept positions.
fn check(mask: &[bool], inputs: &[(&'static str, &[f64])]) -> Result<usize, PpoError> {
    for &(what, xs) in inputs {
        if xs.len() != mask.len() {
            return Err(PpoError::LengthMismatch {
                what,
                expected: mask.len(),
                found: xs.len(),
            });
        }
        let bad = xs.iter().zip(mask).position(|(x, &m)| m && !x.is_finite());
        if let Some(index) = bad {
            return Err(PpoError::NonFinite {
                what,
                index,
                value: xs[index],
            });
        }
    }
    Ok(mask.iter().filter(|&&m| m).count())
}

/// Mean over kept positions, checked inputs.
fn mean_kept(values: &[f64], mask: &[bool], count: usize) -> f64 {
    let sum: f64 = kept(values, mask).sum();
    sum / count as f64
}

fn kept<'a>(values: &'a [f64], mask: &'a [bool]) -> impl Iterator<Item = f64> + 'a {
    values
        .iter()
        .zip(mask)
        .filter(|(_, m)| **m)
        .map(|(v, _)| *v)
}

/// Mean of `values` over the positions `mask` keeps (TRL: `masked_mean`).
pub fn masked_mean(values: &[f64], mask: &[bool]) -> Result<f64, PpoError> {
    match check(mask, &[("values", values)])? {
        0 => Err(PpoError::EmptyMask),
        n => Ok(mean_kept(values, mask, n)),
    }
}

/// Variance over kept positions (TRL: `masked_var`): the mean squared
/// deviation, times `n / (n - 1)` when `unbiased` (Bessel's correction,
/// TRL's default). Unbiased needs two kept positions, biased one.
pub fn masked_var(values: &[f64], mask: &[bool], unbiased: bool) -> Result<f64, PpoError> {
    let n = check(mask, &[("values", values)])?;
    if n == 0 {
        return Err(PpoError::EmptyMask);
    }
    if unbiased && n < 2 {
        return Err(PpoError::TooFewForVariance { count: n });
    }
    let mean = mean_kept(values, mask, n);
    let sq: f64 = kept(values, mask).map(|v| (v - mean) * (v - mean)).sum();
    let divisor = if unbiased { n - 1 } else { n };
    Ok(sq / divisor as f64)
}

/// Whitens the kept positions: `(x - mean) / sqrt(var + eps)`, adding the
/// mean back when `shift_mean` is false (TRL: `masked_whiten`, used with
/// `shift_mean = false` for rewards). The variance is the unbiased one, as
/// TRL computes it, so at least two positions must be kept. Masked-out
/// positions come out 0 (TRL v2 zero-fills them for advantages).
pub fn masked_whiten(
    values: &[f64],
    mask: &[bool],
    shift_mean: bool,
    eps: f64,
) -> Result<Vec<f64>, PpoError> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(invalid("whiten_eps", eps, "a finite number >= 0"));
    }
    let var = masked_var(values, mask, true)?;
    let n = mask.iter().filter(|&&m| m).count();
    let mean = mean_kept(values, mask, n);
    let denom = libm::sqrt(var + eps);
    if denom == 0.0 {
        return Err(PpoError::ZeroVariance);
    }
    let back = if shift_mean { 0.0 } else { mean };
    let out = values.iter().zip(mask);
    Ok(out
        .map(|(&v, &m)| if m { (v - mean) / denom + back } else { 0.0 })
        .collect())
}

/// GAE advantages and returns (`returns = advantages + values`).
#[derive(Clone, Debug, PartialEq)]
pub struct Gae {
    /// Advantage of each position, 0 where masked out.
    pub advantages: Vec<f64>,
    /// Value target of each position, 0 where masked out.
    pub returns: Vec<f64>,
}

/// Generalised advantage estimation over one sequence:
/// `delta_t = r_t + gamma * V_{t+1} - V_t`,
/// `A_t = delta_t + gamma * lambda * A_{t+1}`, `returns_t = A_t + V_t`.
///
/// TRL (classic `compute_advantages`): values and rewards are zeroed where
/// masked out and the recursion runs over every position, with `V = 0`
/// past the end. With trailing padding this makes the last response token
/// terminal (no bootstrap: the response ended), which is what an
/// undiscounted episodic MDP needs; leading padding (a prompt) does not
/// touch the response's advantages. A hole inside the mask acts as a step
/// with zero reward and zero value, exactly as in TRL.
pub fn gae(
    values: &[f64],
    rewards: &[f64],
    mask: &[bool],
    gamma: f64,
    lam: f64,
) -> Result<Gae, PpoError> {
    check_unit("gamma", gamma)?;
    check_unit("lam", lam)?;
    check(mask, &[("values", values), ("rewards", rewards)])?;
    let n = mask.len();
    let at = |xs: &[f64], t: usize| if mask[t] { xs[t] } else { 0.0 };
    let mut advantages = vec![0.0; n];
    let mut last = 0.0;
    for t in (0..n).rev() {
        let next = if t + 1 < n { at(values, t + 1) } else { 0.0 };
        let delta = at(rewards, t) + gamma * next - at(values, t);
        last = delta + gamma * lam * last;
        advantages[t] = last;
    }
    let returns = (0..n)
        .map(|t| {
            if mask[t] {
                advantages[t] + values[t]
            } else {
                0.0
            }
        })
        .collect();
    for (a, &m) in advantages.iter_mut().zip(mask) {
        if !m {
            *a = 0.0;
        }
    }
    Ok(Gae {
        advantages,
        returns,
    })
}

/// The trainer's advantage step for a row-major batch of `width`-token
/// rows: GAE per row with `config.gamma` / `config.lam`, then advantages
/// whitened across the whole batch (method.md: "whitened per batch");
/// returns are not whitened (TRL).
pub fn batch_advantages(
    config: &PpoConfig,
    values: &[f64],
    rewards: &[f64],
    mask: &[bool],
    width: usize,
) -> Result<Gae, PpoError> {
    config.validate()?;
    check(mask, &[("values", values), ("rewards", rewards)])?;
    if width == 0 || mask.len() % width != 0 {
        return Err(PpoError::BadWidth {
            len: mask.len(),
            width,
        });
    }
    let mut raw = Vec::with_capacity(mask.len());
    let mut returns = Vec::with_capacity(mask.len());
    for start in (0..mask.len()).step_by(width) {
        let row = start..start + width;
        let g = gae(
            &values[row.clone()],
            &rewards[row.clone()],
            &mask[row],
            config.gamma,
            config.lam,
        )?;
        raw.extend(g.advantages);
        returns.extend(g.returns);
    }
    let advantages = masked_whiten(&raw, mask, true, config.whiten_eps)?;
    Ok(Gae {
        advantages,
        returns,
    })
}

/// Clipped surrogate policy loss and its diagnostics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PolicyLoss {
    /// `mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))`.
    pub loss: f64,
    /// Share of positions where the clipped term is the larger (TRL: `pg_clipfrac`).
    pub clip_frac: f64,
    /// `0.5 * mean((new - old)^2)` (TRL: `approxkl`).
    pub approx_kl: f64,
    /// Mean probability ratio.
    pub ratio_mean: f64,
}

/// The clipped PPO policy loss (eq. 9), masked means over kept positions.
/// `ratio = exp(new_logprob - old_logprob)`. TRL: the clip fraction counts
/// positions where the clipped loss is strictly larger; `approx_kl` is the
/// masked mean as in the classic trainer (TRL v2 averages it unmasked).
pub fn policy_loss(
    new_logprobs: &[f64],
    old_logprobs: &[f64],
    advantages: &[f64],
    mask: &[bool],
    cliprange: f64,
) -> Result<PolicyLoss, PpoError> {
    if !(cliprange.is_finite() && cliprange > 0.0 && cliprange < 1.0) {
        return Err(invalid("cliprange", cliprange, "a number in (0, 1)"));
    }
    let inputs = [
        ("new_logprobs", new_logprobs),
        ("old_logprobs", old_logprobs),
        ("advantages", advantages),
    ];
    let n = match check(mask, &inputs)? {
        0 => return Err(PpoError::EmptyMask),
        n => n as f64,
    };
    let (mut loss, mut clipped, mut kl, mut ratios) = (0.0, 0.0, 0.0, 0.0);
    for i in (0..mask.len()).filter(|&i| mask[i]) {
        let log_ratio = new_logprobs[i] - old_logprobs[i];
        let ratio = libm::exp(log_ratio);
        if !ratio.is_finite() {
            return Err(PpoError::RatioOverflow {
                index: i,
                log_ratio,
            });
        }
        let a = advantages[i];
        let unclipped = -a * ratio;
        let clip = -a * ratio.clamp(1.0 - cliprange, 1.0 + cliprange);
        loss += unclipped.max(clip);
        clipped += f64::from(u8::from(clip > unclipped));
        kl += log_ratio * log_ratio;
        ratios += ratio;
    }
    Ok(PolicyLoss {
        loss: loss / n,
        clip_frac: clipped / n,
        approx_kl: 0.5 * kl / n,
        ratio_mean: ratios / n,
    })
}

/// Clipped value loss and its diagnostics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValueLoss {
    /// `0.5 * mean(max((v - R)^2, (clip(v, v_old - c, v_old + c) - R)^2))`.
    pub loss: f64,
    /// Share of positions where the clipped error is the larger (TRL: `vf_clipfrac`).
    pub clip_frac: f64,
}

/// The clipped value loss (TRL: `vf_loss`, with its factor 0.5), a masked
/// mean over kept positions. Scale it by `vf_coef` in [`total_loss`].
pub fn value_loss(
    predicted: &[f64],
    old_values: &[f64],
    returns: &[f64],
    mask: &[bool],
    cliprange_value: f64,
) -> Result<ValueLoss, PpoError> {
    if !(cliprange_value.is_finite() && cliprange_value > 0.0) {
        return Err(invalid(
            "cliprange_value",
            cliprange_value,
            "a finite number > 0",
        ));
    }
    let inputs = [
        ("predicted", predicted),
        ("old_values", old_values),
        ("returns", returns),
    ];
    let n = match check(mask, &inputs)? {
        0 => return Err(PpoError::EmptyMask),
        n => n as f64,
    };
    let (mut loss, mut clipped) = (0.0, 0.0);
    for i in (0..mask.len()).filter(|&i| mask[i]) {
        let (v, old, ret) = (predicted[i], old_values[i], returns[i]);
        let v_clip = v.clamp(old - cliprange_value, old + cliprange_value);
        let (e1, e2) = ((v - ret) * (v - ret), (v_clip - ret) * (v_clip - ret));
        loss += e1.max(e2);
        clipped += f64::from(u8::from(e2 > e1));
    }
    Ok(ValueLoss {
        loss: 0.5 * loss / n,
        clip_frac: clipped / n,
    })
}

/// `policy.loss + vf_coef * value.loss` (TRL: `loss = pg_loss + vf_coef * vf_loss`).
pub fn total_loss(policy: &PolicyLoss, value: &ValueLoss, vf_coef: f64) -> f64 {
    policy.loss + vf_coef * value.loss
}

/// `logsumexp` of a logit row; `-inf` logits (masked vocabulary) are allowed.
fn logsumexp(logits: &[f64]) -> Result<f64, PpoError> {
    if logits.is_empty() {
        return Err(PpoError::BadLogits {
            reason: "empty row",
        });
    }
    if logits.iter().any(|l| l.is_nan() || *l == f64::INFINITY) {
        return Err(PpoError::BadLogits {
            reason: "NaN or +inf logit",
        });
    }
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return Err(PpoError::BadLogits {
            reason: "every logit is -inf",
        });
    }
    // Shift by the maximum so exp never overflows.
    let sum: f64 = logits.iter().map(|&l| libm::exp(l - max)).sum();
    Ok(max + libm::log(sum))
}

/// Entropy of the softmax of one logit row, `logsumexp(l) - sum(p * l)`
/// (TRL: `entropy_from_logits`); `-inf` logits contribute 0.
pub fn entropy_from_logits(logits: &[f64]) -> Result<f64, PpoError> {
    let lse = logsumexp(logits)?;
    let expect: f64 = logits
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| libm::exp(l - lse) * l)
        .sum();
    Ok(lse - expect)
}

/// `log softmax(logits)[token]`: the log-probability the trainer gathers
/// for a sampled token (TRL: `logprobs_from_logits`; temperature scaling,
/// if any, is the caller's, applied to the logits first).
pub fn logprob_from_logits(logits: &[f64], token: usize) -> Result<f64, PpoError> {
    let lse = logsumexp(logits)?;
    let l = logits.get(token).ok_or(PpoError::TokenOutOfRange {
        token,
        vocab: logits.len(),
    })?;
    Ok(l - lse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const ALL3: [bool; 3] = [true; 3];

    fn close(a: f64, b: f64) -> bool {
        libm::fabs(a - b) <= 1e-12
    }

    fn all_close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| close(*x, *y))
    }

    #[test]
    fn defaults_and_validation() {
        let c = PpoConfig::default();
        assert_eq!((c.gamma, c.lam, c.cliprange), (1.0, 0.95, 0.2));
        assert_eq!(
            (c.cliprange_value, c.vf_coef, c.whiten_eps, c.epochs),
            (0.2, 0.1, 1e-8, 4)
        );
        c.validate().unwrap();
        let cases = [
            (
                PpoConfig {
                    gamma: 1.5,
                    ..c.clone()
                },
                "gamma",
            ),
            (
                PpoConfig {
                    lam: f64::NAN,
                    ..c.clone()
                },
                "lam",
            ),
            (
                PpoConfig {
                    cliprange: 0.0,
                    ..c.clone()
                },
                "cliprange",
            ),
            (
                PpoConfig {
                    cliprange: 1.0,
                    ..c.clone()
                },
                "cliprange",
            ),
            (
                PpoConfig {
                    cliprange_value: -0.2,
                    ..c.clone()
                },
                "cliprange_value",
            ),
            (
                PpoConfig {
                    vf_coef: -0.1,
                    ..c.clone()
                },
                "vf_coef",
            ),
            (
                PpoConfig {
                    whiten_eps: 0.0,
                    ..c.clone()
                },
                "whiten_eps",
            ),
            (
                PpoConfig {
                    epochs: 0,
                    ..c.clone()
                },
                "epochs",
            ),
        ];
        for (cfg, field) in cases {
            match cfg.validate() {
                Err(PpoError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn masked_mean_and_var_by_hand() {
        // Kept 1, 2, 3 (100 is padding): mean 2; squared deviations 1 + 0 + 1 = 2;
        // biased 2/3, unbiased 2/2 = 1.
        let v = [1.0, 2.0, 3.0, 100.0];
        let m = [true, true, true, false];
        assert_eq!(masked_mean(&v, &m).unwrap(), 2.0);
        assert!(close(masked_var(&v, &m, false).unwrap(), 2.0 / 3.0));
        assert_eq!(masked_var(&v, &m, true).unwrap(), 1.0);
        // Padding may hold NaN: it is never read.
        let v = [1.0, 2.0, 3.0, f64::NAN];
        assert_eq!(masked_mean(&v, &m).unwrap(), 2.0);
        // Edge cases: all masked, one kept, NaN kept, length mismatch.
        assert_eq!(masked_mean(&v, &[false; 4]), Err(PpoError::EmptyMask));
        let one = [false, true, false, false];
        assert_eq!(masked_mean(&v, &one).unwrap(), 2.0);
        assert_eq!(masked_var(&v, &one, false).unwrap(), 0.0);
        assert_eq!(
            masked_var(&v, &one, true),
            Err(PpoError::TooFewForVariance { count: 1 })
        );
        let e = masked_mean(&v, &[true; 4]).unwrap_err();
        assert!(
            matches!(
                e,
                PpoError::NonFinite {
                    what: "values",
                    index: 3,
                    ..
                }
            ),
            "{e}"
        );
        let e = masked_mean(&v, &[true; 3]).unwrap_err();
        assert_eq!(
            e,
            PpoError::LengthMismatch {
                what: "values",
                expected: 3,
                found: 4
            }
        );
    }

    #[test]
    fn whiten_by_hand() {
        // Kept 1, 2, 3: mean 2, unbiased var 1 -> with eps 0: -1, 0, 1;
        // padding -> 0. Without shift_mean the mean comes back: 1, 2, 3.
        let v = [1.0, 2.0, 3.0, 100.0];
        let m = [true, true, true, false];
        assert_eq!(
            masked_whiten(&v, &m, true, 0.0).unwrap(),
            [-1.0, 0.0, 1.0, 0.0]
        );
        assert_eq!(
            masked_whiten(&v, &m, false, 0.0).unwrap(),
            [1.0, 2.0, 3.0, 0.0]
        );
        // eps 1e-8: 1 / sqrt(1 + 1e-8) = 0.999999995.
        let w = masked_whiten(&v, &m, true, 1e-8).unwrap();
        assert!(close(w[2], 0.999999995) && close(w[0], -0.999999995));
        // Constant input: var 0, eps 1e-8 keeps it finite (all zeros); eps 0 is an error.
        let c = [5.0, 5.0];
        assert_eq!(
            masked_whiten(&c, &[true, true], true, 1e-8).unwrap(),
            [0.0, 0.0]
        );
        assert_eq!(
            masked_whiten(&c, &[true, true], true, 0.0),
            Err(PpoError::ZeroVariance)
        );
        assert_eq!(
            masked_whiten(&c, &[false, false], true, 1e-8),
            Err(PpoError::EmptyMask)
        );
        assert!(masked_whiten(&c, &[true, false], true, 1e-8).is_err());
        assert!(masked_whiten(&c, &[true, true], true, f64::NAN).is_err());
        let e = masked_whiten(&c, &[true; 3], true, 1e-8).unwrap_err();
        assert!(matches!(
            e,
            PpoError::LengthMismatch {
                what: "values",
                expected: 3,
                found: 2
            }
        ));
        let e = masked_whiten(&[1.0, f64::NAN], &[true, true], true, 1e-8).unwrap_err();
        assert!(matches!(
            e,
            PpoError::NonFinite {
                what: "values",
                index: 1,
                ..
            }
        ));
        // masked_var: all masked, NaN kept.
        assert_eq!(
            masked_var(&c, &[false, false], false),
            Err(PpoError::EmptyMask)
        );
        assert!(masked_var(&[f64::NAN, 1.0], &[true, true], true).is_err());
    }

    // values 1, 2, 0.5; rewards 0, 1, 2.
    const V: [f64; 3] = [1.0, 2.0, 0.5];
    const R: [f64; 3] = [0.0, 1.0, 2.0];

    #[test]
    fn gae_by_hand() {
        // gamma 1, lambda 0.5:
        // t=2: delta = 2 + 0 - 0.5 = 1.5;            A = 1.5
        // t=1: delta = 1 + 0.5 - 2 = -0.5;           A = -0.5 + 0.5 * 1.5 = 0.25
        // t=0: delta = 0 + 2 - 1 = 1;                A = 1 + 0.5 * 0.25 = 1.125
        // returns = A + V = 2.125, 2.25, 2.0
        let g = gae(&V, &R, &ALL3, 1.0, 0.5).unwrap();
        assert!(all_close(&g.advantages, &[1.125, 0.25, 1.5]));
        assert!(all_close(&g.returns, &[2.125, 2.25, 2.0]));
        // lambda 1: returns are the rewards-to-go 3, 3, 2; lambda 0: A = delta.
        assert!(all_close(
            &gae(&V, &R, &ALL3, 1.0, 1.0).unwrap().returns,
            &[3.0, 3.0, 2.0]
        ));
        assert!(all_close(
            &gae(&V, &R, &ALL3, 1.0, 0.0).unwrap().advantages,
            &[1.0, -0.5, 1.5]
        ));
        // gamma 0.9, lambda 0.95 (gamma * lambda = 0.855):
        // t=2: delta = 1.5;                          A = 1.5
        // t=1: delta = 1 + 0.9 * 0.5 - 2 = -0.55;    A = -0.55 + 0.855 * 1.5 = 0.7325
        // t=0: delta = 0 + 0.9 * 2 - 1 = 0.8;        A = 0.8 + 0.855 * 0.7325 = 1.4262875
        let g = gae(&V, &R, &ALL3, 0.9, 0.95).unwrap();
        assert!(all_close(&g.advantages, &[1.4262875, 0.7325, 1.5]));
        assert!(all_close(&g.returns, &[2.4262875, 2.7325, 2.0]));
    }

    #[test]
    fn gae_masking() {
        // Trailing padding (with garbage) changes nothing; outputs there are 0.
        let v = [1.0, 2.0, 0.5, 9.0, f64::NAN];
        let r = [0.0, 1.0, 2.0, 5.0, 5.0];
        let m = [true, true, true, false, false];
        let g = gae(&v, &r, &m, 1.0, 0.5).unwrap();
        assert!(all_close(&g.advantages, &[1.125, 0.25, 1.5, 0.0, 0.0]));
        assert!(all_close(&g.returns, &[2.125, 2.25, 2.0, 0.0, 0.0]));
        // Leading padding (a prompt) does not touch the response either.
        let v = [7.0, 1.0, 2.0, 0.5];
        let r = [3.0, 0.0, 1.0, 2.0];
        let g = gae(&v, &r, &[false, true, true, true], 1.0, 0.5).unwrap();
        assert!(all_close(&g.advantages, &[0.0, 1.125, 0.25, 1.5]));
        // A hole acts as a zero-reward, zero-value step (TRL): mask F at t=1
        // of V/R: t=2: A = 1.5; t=1: delta = 0 + 0.5 - 0 = 0.5, A = 0.5 + 0.75 = 1.25;
        // t=0: delta = 0 + 0 - 1 = -1, A = -1 + 0.625 = -0.375.
        let g = gae(&V, &R, &[true, false, true], 1.0, 0.5).unwrap();
        assert!(all_close(&g.advantages, &[-0.375, 0.0, 1.5]));
        // All masked: zeros, no error (nothing to average here).
        let g = gae(&V, &R, &[false; 3], 1.0, 0.95).unwrap();
        assert_eq!(g.advantages, [0.0; 3]);
        // Length 1: A = r - V.
        let g = gae(&[0.25], &[1.0], &[true], 1.0, 0.95).unwrap();
        assert_eq!((g.advantages[0], g.returns[0]), (0.75, 1.0));
        // Empty sequence.
        assert!(gae(&[], &[], &[], 1.0, 0.95).unwrap().advantages.is_empty());
    }

    #[test]
    fn gae_errors() {
        let e = gae(&V, &R[..2], &ALL3, 1.0, 0.95).unwrap_err();
        assert!(
            e.to_string()
                .contains("rewards has 2 entries but the mask has 3"),
            "{e}"
        );
        let mut r = R;
        r[1] = f64::INFINITY;
        let e = gae(&V, &r, &ALL3, 1.0, 0.95).unwrap_err();
        assert!(matches!(
            e,
            PpoError::NonFinite {
                what: "rewards",
                index: 1,
                ..
            }
        ));
        assert!(matches!(
            gae(&V, &R, &ALL3, 1.1, 0.95),
            Err(PpoError::InvalidConfig { field: "gamma", .. })
        ));
        assert!(matches!(
            gae(&V, &R, &ALL3, 1.0, -0.5),
            Err(PpoError::InvalidConfig { field: "lam", .. })
        ));
    }

    #[test]
    fn batch_advantages_whitens_across_rows() {
        // Two rows of width 3, gamma 1, lambda 0.5 -> raw advantages
        // row 0: 1.125, 0.25, 1.5 (as above); row 1: one token kept, r 1, V 0.25:
        // A = 0.75. Kept: 1.125, 0.25, 1.5, 0.75: mean 0.90625;
        // deviations 0.21875, -0.65625, 0.59375, -0.15625;
        // squares 0.0478515625 + 0.4306640625 + 0.3525390625 + 0.0244140625 = 0.85546875;
        // unbiased var 0.28515625.
        let cfg = PpoConfig {
            lam: 0.5,
            ..PpoConfig::default()
        };
        let values = [1.0, 2.0, 0.5, 0.25, 0.0, 0.0];
        let rewards = [0.0, 1.0, 2.0, 1.0, 0.0, 0.0];
        let mask = [true, true, true, true, false, false];
        let g = batch_advantages(&cfg, &values, &rewards, &mask, 3).unwrap();
        let sd = libm::sqrt(0.28515625 + 1e-8);
        let want = [
            0.21875 / sd,
            -0.65625 / sd,
            0.59375 / sd,
            -0.15625 / sd,
            0.0,
            0.0,
        ];
        assert!(all_close(&g.advantages, &want));
        assert!(all_close(&g.returns, &[2.125, 2.25, 2.0, 1.0, 0.0, 0.0]));
        let e = batch_advantages(&cfg, &values, &rewards, &mask, 4).unwrap_err();
        assert_eq!(e, PpoError::BadWidth { len: 6, width: 4 });
        assert!(batch_advantages(&cfg, &values, &rewards, &mask, 0).is_err());
        let e = batch_advantages(&cfg, &values, &rewards[..5], &mask, 3).unwrap_err();
        assert!(matches!(
            e,
            PpoError::LengthMismatch {
                what: "rewards",
                ..
            }
        ));
        let mut bad = values;
        bad[2] = f64::NAN;
        let e = batch_advantages(&cfg, &bad, &rewards, &mask, 3).unwrap_err();
        assert!(matches!(
            e,
            PpoError::NonFinite {
                what: "values",
                index: 2,
                ..
            }
        ));
        let bad_cfg = PpoConfig {
            gamma: 2.0,
            ..cfg.clone()
        };
        assert!(batch_advantages(&bad_cfg, &values, &rewards, &mask, 3).is_err());
        // A single kept token in the whole batch cannot be whitened.
        let one = [true, false, false, false, false, false];
        assert_eq!(
            batch_advantages(&cfg, &values, &rewards, &one, 3),
            Err(PpoError::TooFewForVariance { count: 1 })
        );
    }

    #[test]
    fn policy_loss_by_hand() {
        // new -1, -0.5, -2; old -1, -1, -1 -> log-ratio 0, 0.5, -1;
        // ratio 1, e^0.5 = 1.6487212707001282, e^-1 = 0.36787944117144233.
        // A = 1, 2, -1; eps 0.2:
        // t0: -1 * 1 = -1 and -1 * 1 = -1           -> -1, not clipped
        // t1: -2 * 1.6487 = -3.2974 vs -2 * 1.2 = -2.4 -> -2.4, clipped
        // t2: 1 * 0.3679 = 0.3679 vs 1 * 0.8 = 0.8     -> 0.8, clipped
        // loss = (-1 - 2.4 + 0.8) / 3 = -2.6 / 3; clip_frac 2/3;
        // approx_kl = 0.5 * (0 + 0.25 + 1) / 3 = 0.625 / 3.
        let p = policy_loss(
            &[-1.0, -0.5, -2.0],
            &[-1.0; 3],
            &[1.0, 2.0, -1.0],
            &ALL3,
            0.2,
        )
        .unwrap();
        assert!(close(p.loss, -2.6 / 3.0));
        assert!(close(p.clip_frac, 2.0 / 3.0));
        assert!(close(p.approx_kl, 0.625 / 3.0));
        assert!(close(
            p.ratio_mean,
            (1.0 + 1.6487212707001282 + 0.36787944117144233) / 3.0
        ));
        // Identical policies: loss = -mean(A), nothing clipped, KL 0.
        let p = policy_loss(&[-0.3; 3], &[-0.3; 3], &[1.0, 2.0, -1.0], &ALL3, 0.2).unwrap();
        assert!(close(p.loss, -2.0 / 3.0));
        assert_eq!((p.clip_frac, p.approx_kl, p.ratio_mean), (0.0, 0.0, 1.0));
    }

    #[test]
    fn policy_loss_edges() {
        // Masked positions (TRL pads log-probs with 1.0) are ignored; length 1.
        let p = policy_loss(
            &[-1.0, 1.0],
            &[-1.0, 1.0],
            &[0.5, 99.0],
            &[true, false],
            0.2,
        )
        .unwrap();
        assert_eq!((p.loss, p.clip_frac), (-0.5, 0.0));
        let e = policy_loss(&[0.0; 2], &[0.0; 2], &[1.0; 2], &[false; 2], 0.2).unwrap_err();
        assert_eq!(e, PpoError::EmptyMask);
        let e = policy_loss(&[0.0; 3], &[0.0; 2], &[1.0; 3], &ALL3, 0.2).unwrap_err();
        assert!(matches!(
            e,
            PpoError::LengthMismatch {
                what: "old_logprobs",
                ..
            }
        ));
        let e = policy_loss(&[0.0, f64::NAN, 0.0], &[0.0; 3], &[1.0; 3], &ALL3, 0.2).unwrap_err();
        assert!(matches!(
            e,
            PpoError::NonFinite {
                what: "new_logprobs",
                index: 1,
                ..
            }
        ));
        let e = policy_loss(&[0.0, 800.0, 0.0], &[0.0; 3], &[1.0; 3], &ALL3, 0.2).unwrap_err();
        assert!(matches!(e, PpoError::RatioOverflow { index: 1, .. }), "{e}");
        assert!(policy_loss(&[0.0; 3], &[0.0; 3], &[1.0; 3], &ALL3, 0.0).is_err());
    }

    #[test]
    fn value_loss_by_hand() {
        // v 1, 2, 0; old 0.5, 1, 0; R 1, 1, 1; c 0.2:
        // t0: clip(1, 0.3, 0.7) = 0.7: (1-1)^2 = 0 vs (0.7-1)^2 = 0.09 -> 0.09, clipped
        // t1: clip(2, 0.8, 1.2) = 1.2: 1 vs 0.04                      -> 1
        // t2: clip(0, -0.2, 0.2) = 0:  1 vs 1                         -> 1
        // loss = 0.5 * 2.09 / 3; clip_frac 1/3.
        let v = value_loss(&[1.0, 2.0, 0.0], &[0.5, 1.0, 0.0], &[1.0; 3], &ALL3, 0.2).unwrap();
        assert!(close(v.loss, 0.5 * 2.09 / 3.0));
        assert!(close(v.clip_frac, 1.0 / 3.0));
        let p = PolicyLoss {
            loss: -1.0,
            clip_frac: 0.0,
            approx_kl: 0.0,
            ratio_mean: 1.0,
        };
        // total = -1 + 0.1 * 0.348333...
        assert!(close(
            total_loss(&p, &v, 0.1),
            -1.0 + 0.1 * 0.5 * 2.09 / 3.0
        ));
        // Length 1, masked garbage, errors.
        let v = value_loss(
            &[2.0, f64::NAN],
            &[2.0, 0.0],
            &[1.0, 0.0],
            &[true, false],
            0.2,
        )
        .unwrap();
        assert_eq!((v.loss, v.clip_frac), (0.5, 0.0));
        assert_eq!(
            value_loss(&[1.0], &[1.0], &[1.0], &[false], 0.2),
            Err(PpoError::EmptyMask)
        );
        let e = value_loss(&[1.0], &[1.0], &[], &[true], 0.2).unwrap_err();
        assert!(matches!(
            e,
            PpoError::LengthMismatch {
                what: "returns",
                ..
            }
        ));
        assert!(value_loss(&[1.0], &[1.0], &[1.0], &[true], f64::NAN).is_err());
        let e = value_loss(&[1.0], &[f64::INFINITY], &[1.0], &[true], 0.2).unwrap_err();
        assert!(
            matches!(
                e,
                PpoError::NonFinite {
                    what: "old_values",
                    index: 0,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn entropy_and_logprob_by_hand() {
        // logits 0, ln 2, 0 -> p = 1/4, 1/2, 1/4;
        // H = -(2 * 0.25 * ln 0.25 + 0.5 * ln 0.5) = ln 2 + 0.5 ln 2 = 1.5 ln 2.
        let ln2 = core::f64::consts::LN_2;
        let l = [0.0, ln2, 0.0];
        assert!(close(entropy_from_logits(&l).unwrap(), 1.5 * ln2));
        assert!(close(logprob_from_logits(&l, 1).unwrap(), -ln2));
        assert!(close(logprob_from_logits(&l, 0).unwrap(), -2.0 * ln2));
        // Shift invariance and large logits (no overflow): 1000 + the same row.
        let big = [1000.0, 1000.0 + ln2, 1000.0];
        assert!(libm::fabs(entropy_from_logits(&big).unwrap() - 1.5 * ln2) < 1e-9);
        // A -inf logit is a zero-probability token: two equal left -> ln 2.
        let masked = [3.0, f64::NEG_INFINITY, 3.0];
        assert!(close(entropy_from_logits(&masked).unwrap(), ln2));
        assert_eq!(logprob_from_logits(&masked, 1).unwrap(), f64::NEG_INFINITY);
        // One token: entropy 0, log-prob 0.
        assert_eq!(entropy_from_logits(&[4.2]).unwrap(), 0.0);
        assert_eq!(logprob_from_logits(&[4.2], 0).unwrap(), 0.0);
        // Errors.
        assert!(matches!(
            entropy_from_logits(&[]),
            Err(PpoError::BadLogits { .. })
        ));
        assert!(entropy_from_logits(&[0.0, f64::NAN]).is_err());
        assert!(entropy_from_logits(&[f64::NEG_INFINITY; 2]).is_err());
        assert_eq!(
            logprob_from_logits(&l, 3),
            Err(PpoError::TokenOutOfRange { token: 3, vocab: 3 })
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn config_serde() {
        let c: PpoConfig = serde_json::from_str(r#"{"lam": 0.9}"#).unwrap();
        assert_eq!(
            c,
            PpoConfig {
                lam: 0.9,
                ..PpoConfig::default()
            }
        );
        assert!(serde_json::from_str::<PpoConfig>(r#"{"lambda": 0.9}"#).is_err());
    }
}

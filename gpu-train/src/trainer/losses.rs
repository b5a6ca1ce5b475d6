//! PPO losses on batched tensors: the tch mirror of `reward_core::ppo`
//! (FiSAO eq. 9-10, method.md section 7). GAE, masked whitening, the clipped
//! policy loss and the clipped value loss over `[batch, tokens]` tensors with a
//! boolean mask (`true` = a response token that counts). The reference
//! functions work on one sequence of f64s; a test checks these agree with them
//! to 1e-9 on random f64 inputs (tests/trainer_losses.rs).
//!
//! As in the reference, values at masked-out positions are never read (they
//! may hold garbage, even NaN: `where_self` selects, it does not multiply), and
//! every per-position output is 0 there. Errors name the culprit instead of
//! producing NaN (empty mask, a single value to whiten, an overflowing ratio).

use anyhow::{Result, bail, ensure};
use tch::{Kind, Tensor};

/// `x` where `mask` holds, 0 elsewhere (NaN-safe, unlike `x * mask`).
fn keep(x: &Tensor, mask: &Tensor) -> Tensor {
    x.where_self(mask, &x.zeros_like())
}

/// Number of kept positions.
fn count(mask: &Tensor) -> i64 {
    mask.sum(Kind::Int64).int64_value(&[])
}

fn check_pair(name: &str, x: &Tensor, mask: &Tensor) -> Result<()> {
    ensure!(
        mask.kind() == Kind::Bool,
        "mask must be bool, found {:?}",
        mask.kind()
    );
    ensure!(
        x.size() == mask.size(),
        "{name} has shape {:?} but the mask has {:?}",
        x.size(),
        mask.size()
    );
    Ok(())
}

/// Mean over kept positions (reference: `masked_mean`); differentiable.
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    check_pair("values", x, mask)?;
    let n = count(mask);
    ensure!(n > 0, "masked mean over an empty mask");
    Ok(keep(x, mask).sum(x.kind()) / n as f64)
}

/// Variance over kept positions, Bessel-corrected when `unbiased` (reference: `masked_var`).
pub fn masked_var(x: &Tensor, mask: &Tensor, unbiased: bool) -> Result<Tensor> {
    let n = count(mask);
    ensure!(n > 0, "masked variance over an empty mask");
    if unbiased && n < 2 {
        bail!("an unbiased variance needs at least 2 kept positions, found {n}");
    }
    let mean = masked_mean(x, mask)?;
    let dev = keep(&(x - &mean), mask);
    let divisor = if unbiased { n - 1 } else { n };
    Ok((&dev * &dev).sum(x.kind()) / divisor as f64)
}

/// `(x - mean) / sqrt(var + eps)` over kept positions, mean added back unless
/// `shift_mean`; 0 at masked-out positions (reference: `masked_whiten`).
pub fn masked_whiten(x: &Tensor, mask: &Tensor, shift_mean: bool, eps: f64) -> Result<Tensor> {
    ensure!(
        eps.is_finite() && eps >= 0.0,
        "whiten_eps must be a finite number >= 0, found {eps}"
    );
    let var = masked_var(x, mask, true)?;
    let mean = masked_mean(x, mask)?;
    let denom = (var + eps).sqrt();
    ensure!(
        denom.double_value(&[]) > 0.0,
        "cannot whiten: zero variance and eps 0"
    );
    let mut out = (x - &mean) / denom;
    if !shift_mean {
        out += &mean;
    }
    Ok(keep(&out, mask))
}

/// GAE over each row of `[b, t]` tensors: `delta_t = r_t + gamma V_{t+1} - V_t`,
/// `A_t = delta_t + gamma lambda A_{t+1}`, with values and rewards zeroed where
/// masked out and `V = 0` past the end (reference: `gae`). Returns
/// `(advantages, returns)`, both 0 where masked out. No graph is recorded.
pub fn gae(
    values: &Tensor,
    rewards: &Tensor,
    mask: &Tensor,
    gamma: f64,
    lam: f64,
) -> Result<(Tensor, Tensor)> {
    for (name, v) in [("gamma", gamma), ("lam", lam)] {
        ensure!(
            (0.0..=1.0).contains(&v),
            "{name} must be in [0, 1], found {v}"
        );
    }
    check_pair("values", values, mask)?;
    check_pair("rewards", rewards, mask)?;
    ensure!(
        values.dim() == 2,
        "GAE needs [batch, tokens] tensors, found {:?}",
        values.size()
    );
    tch::no_grad(|| {
        let (v, r) = (keep(values, mask), keep(rewards, mask));
        let t_len = v.size()[1];
        let mut last = v.select(1, 0).zeros_like();
        let mut cols = Vec::with_capacity(t_len as usize);
        // The recursion runs backwards; columns are collected reversed.
        for t in (0..t_len).rev() {
            let next = if t + 1 < t_len {
                v.select(1, t + 1)
            } else {
                last.zeros_like()
            };
            let delta = r.select(1, t) + next * gamma - v.select(1, t);
            last = delta + &last * (gamma * lam);
            cols.push(last.shallow_clone());
        }
        cols.reverse();
        let adv = Tensor::stack(&cols, 1);
        let returns = keep(&(&adv + values), mask);
        Ok((keep(&adv, mask), returns))
    })
}

/// The trainer's advantage step (reference: `batch_advantages`): GAE per row,
/// advantages whitened over the whole batch, returns left as they are.
pub fn batch_advantages(
    values: &Tensor,
    rewards: &Tensor,
    mask: &Tensor,
    gamma: f64,
    lam: f64,
    whiten_eps: f64,
) -> Result<(Tensor, Tensor)> {
    let (adv, returns) = gae(values, rewards, mask, gamma, lam)?;
    let adv = tch::no_grad(|| masked_whiten(&adv, mask, true, whiten_eps))?;
    Ok((adv, returns))
}

/// The clipped policy loss and its diagnostics.
#[derive(Debug)]
pub struct PolicyLoss {
    /// Scalar loss with a graph back to `new_logprobs`.
    pub loss: Tensor,
    /// Share of kept positions where the clipped term is strictly larger.
    pub clip_frac: f64,
    /// `0.5 * mean((new - old)^2)`.
    pub approx_kl: f64,
    /// Mean probability ratio.
    pub ratio_mean: f64,
}

/// Clipped surrogate `mean(max(-A r, -A clip(r, 1 - eps, 1 + eps)))` over kept
/// positions, `r = exp(new - old)` (reference: `policy_loss`).
pub fn policy_loss(
    new_logprobs: &Tensor,
    old_logprobs: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    cliprange: f64,
) -> Result<PolicyLoss> {
    ensure!(
        cliprange > 0.0 && cliprange < 1.0,
        "cliprange must be in (0, 1), found {cliprange}"
    );
    for (name, x) in [
        ("new_logprobs", new_logprobs),
        ("old_logprobs", old_logprobs),
        ("advantages", advantages),
    ] {
        check_pair(name, x, mask)?;
    }
    let log_ratio = keep(&(new_logprobs - old_logprobs), mask);
    let ratio = log_ratio.exp();
    let finite = keep(&ratio.isfinite().logical_not(), mask)
        .any()
        .int64_value(&[])
        == 0;
    ensure!(
        finite,
        "the probability ratio overflowed (log-ratio too large)"
    );
    let adv = keep(advantages, mask);
    let unclipped = -&adv * &ratio;
    let clipped = -&adv * ratio.clamp(1.0 - cliprange, 1.0 + cliprange);
    let per_token = unclipped.maximum(&clipped);
    let loss = masked_mean(&per_token, mask)?;
    let (clip_frac, approx_kl, ratio_mean) = tch::no_grad(|| -> Result<(f64, f64, f64)> {
        let frac = masked_mean(&clipped.gt_tensor(&unclipped).to_kind(Kind::Double), mask)?;
        let kl = masked_mean(&log_ratio.square().to_kind(Kind::Double), mask)?;
        let rm = masked_mean(&ratio.to_kind(Kind::Double), mask)?;
        Ok((
            frac.double_value(&[]),
            0.5 * kl.double_value(&[]),
            rm.double_value(&[]),
        ))
    })?;
    Ok(PolicyLoss {
        loss,
        clip_frac,
        approx_kl,
        ratio_mean,
    })
}

/// The clipped value loss and its diagnostics.
#[derive(Debug)]
pub struct ValueLoss {
    /// `0.5 * mean(max((v - R)^2, (clip(v, v_old -+ c) - R)^2))`, with a graph to `predicted`.
    pub loss: Tensor,
    /// Share of kept positions where the clipped error is strictly larger.
    pub clip_frac: f64,
}

/// The clipped value loss (reference: `value_loss`).
pub fn value_loss(
    predicted: &Tensor,
    old_values: &Tensor,
    returns: &Tensor,
    mask: &Tensor,
    cliprange_value: f64,
) -> Result<ValueLoss> {
    ensure!(
        cliprange_value.is_finite() && cliprange_value > 0.0,
        "cliprange_value must be a finite number > 0, found {cliprange_value}"
    );
    for (name, x) in [
        ("predicted", predicted),
        ("old_values", old_values),
        ("returns", returns),
    ] {
        check_pair(name, x, mask)?;
    }
    let (old, ret) = (keep(old_values, mask), keep(returns, mask));
    let v = keep(predicted, mask);
    let v_clip = v.clamp_tensor(
        Some(&(&old - cliprange_value)),
        Some(&(&old + cliprange_value)),
    );
    let e1 = (&v - &ret).square();
    let e2 = (&v_clip - &ret).square();
    let loss = masked_mean(&e1.maximum(&e2), mask)? * 0.5;
    let clip_frac = tch::no_grad(|| masked_mean(&e2.gt_tensor(&e1).to_kind(Kind::Double), mask))?
        .double_value(&[]);
    Ok(ValueLoss { loss, clip_frac })
}

/// Mean entropy of the softmax of `logits` `[b, t, vocab]` over kept positions
/// (reference: `entropy_from_logits`), as an f64 diagnostic.
pub fn masked_entropy(logits: &Tensor, mask: &Tensor) -> Result<f64> {
    tch::no_grad(|| {
        let logp = logits.log_softmax(-1, Kind::Float);
        let ent = -(logp.exp() * &logp).sum_dim_intlist(-1, false, Kind::Float);
        Ok(masked_mean(&ent, mask)?.double_value(&[]))
    })
}

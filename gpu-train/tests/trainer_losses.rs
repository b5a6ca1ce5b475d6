//! The tch PPO losses (gpu-train trainer::losses) against reward-core's
//! reference functions (reward_core::ppo) on random f64 inputs, to 1e-9.

use gpu_train::trainer::losses;
use reward_core::ppo;
use tch::{Kind, Tensor};

const TOL: f64 = 1e-9;

/// Random `[b, t]` inputs and a mask of response tokens with leading prompt
/// padding and trailing padding, different per row (and one hole).
fn inputs(seed: i64, b: i64, t: i64) -> (Tensor, Tensor, Tensor, Tensor, Tensor) {
    tch::manual_seed(seed);
    let opts = (Kind::Double, tch::Device::Cpu);
    let values = Tensor::randn([b, t], opts);
    let rewards = Tensor::randn([b, t], opts);
    let old = Tensor::randn([b, t], opts) * 0.5 - 2.0;
    let new = &old + Tensor::randn([b, t], opts) * 0.3;
    let mut mask = vec![false; (b * t) as usize];
    for r in 0..b {
        let start = (r % 3) as usize;
        let end = t as usize - (r % 4) as usize;
        for c in start..end {
            mask[(r * t) as usize + c] = true;
        }
    }
    mask[(t + 3) as usize] = false;
    let mask = Tensor::from_slice(&mask).view([b, t]);
    // Garbage at masked positions must not leak into any result.
    let nan = Tensor::full([b, t], f64::NAN, opts);
    let values = values.where_self(&mask, &nan);
    (values, rewards, old, new, mask)
}

fn flat(x: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(x.reshape([-1]).to_kind(Kind::Double)).unwrap()
}

fn bools(m: &Tensor) -> Vec<bool> {
    Vec::<bool>::try_from(m.reshape([-1])).unwrap()
}

fn close(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= TOL,
            "{what}[{i}]: tch {x} vs reference {y}"
        );
    }
}

#[test]
fn trainer_gae_and_whitening_match_reference() {
    for seed in 0..5 {
        let (b, t) = (4, 9);
        let (values, rewards, _, _, mask) = inputs(seed, b, t);
        let (adv, ret) = losses::gae(&values, &rewards, &mask, 1.0, 0.95).unwrap();
        let (v, r, m) = (flat(&values), flat(&rewards), bools(&mask));
        for row in 0..b as usize {
            let s = row * t as usize..(row + 1) * t as usize;
            let g = ppo::gae(&v[s.clone()], &r[s.clone()], &m[s.clone()], 1.0, 0.95).unwrap();
            close(&flat(&adv)[s.clone()], &g.advantages, "advantages");
            close(&flat(&ret)[s.clone()], &g.returns, "returns");
        }
        let cfg = ppo::PpoConfig {
            gamma: 0.9,
            lam: 0.7,
            ..Default::default()
        };
        let (wadv, wret) =
            losses::batch_advantages(&values, &rewards, &mask, 0.9, 0.7, cfg.whiten_eps).unwrap();
        let reference = ppo::batch_advantages(&cfg, &v, &r, &m, t as usize).unwrap();
        close(&flat(&wadv), &reference.advantages, "whitened advantages");
        close(&flat(&wret), &reference.returns, "batch returns");
        for shift in [true, false] {
            let w = losses::masked_whiten(&rewards, &mask, shift, 1e-8).unwrap();
            close(
                &flat(&w),
                &ppo::masked_whiten(&r, &m, shift, 1e-8).unwrap(),
                "masked_whiten",
            );
        }
    }
}

#[test]
fn trainer_policy_and_value_losses_match_reference() {
    for seed in 10..15 {
        let (values, rewards, old, new, mask) = inputs(seed, 3, 11);
        let (m, adv) = (bools(&mask), flat(&rewards));
        let new = new.set_requires_grad(true);
        let p = losses::policy_loss(&new, &old, &rewards, &mask, 0.2).unwrap();
        let r = ppo::policy_loss(&flat(&new), &flat(&old), &adv, &m, 0.2).unwrap();
        assert!(
            (p.loss.double_value(&[]) - r.loss).abs() <= TOL,
            "policy loss"
        );
        assert!((p.clip_frac - r.clip_frac).abs() <= TOL, "clip fraction");
        assert!((p.approx_kl - r.approx_kl).abs() <= TOL, "approx kl");
        assert!((p.ratio_mean - r.ratio_mean).abs() <= TOL, "ratio mean");
        assert!(
            r.clip_frac > 0.0 && r.clip_frac < 1.0,
            "inputs should exercise both branches"
        );
        // The loss has a graph back to the new log-probs, none at padding.
        p.loss.backward();
        let g = new.grad();
        assert_eq!(
            g.where_self(&mask.logical_not(), &g.zeros_like())
                .abs()
                .sum(Kind::Double)
                .double_value(&[]),
            0.0
        );
        assert!(g.abs().sum(Kind::Double).double_value(&[]) > 0.0);

        let pred = (&values.nan_to_num(0.0, None, None) + Tensor::randn_like(&values) * 0.4)
            .set_requires_grad(true);
        let vl = losses::value_loss(&pred, &values, &rewards, &mask, 0.2).unwrap();
        let rv = ppo::value_loss(&flat(&pred), &flat(&values), &adv, &m, 0.2).unwrap();
        assert!(
            (vl.loss.double_value(&[]) - rv.loss).abs() <= TOL,
            "value loss"
        );
        assert!(
            (vl.clip_frac - rv.clip_frac).abs() <= TOL,
            "value clip fraction"
        );
        assert!(rv.clip_frac > 0.0, "inputs should exercise the value clip");
    }
}

#[test]
fn trainer_errors_name_the_problem() {
    let x = Tensor::zeros([2, 3], (Kind::Double, tch::Device::Cpu));
    let empty = Tensor::zeros([2, 3], (Kind::Bool, tch::Device::Cpu));
    let e = losses::masked_mean(&x, &empty).unwrap_err().to_string();
    assert!(e.contains("empty mask"), "{e}");
    let bad = Tensor::zeros([2, 4], (Kind::Bool, tch::Device::Cpu));
    let e = losses::policy_loss(&x, &x, &x, &bad, 0.2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("new_logprobs") && e.contains("[2, 3]"), "{e}");
    let one = Tensor::from_slice(&[true, false, false, false, false, false]).view([2, 3]);
    let e = losses::masked_whiten(&x, &one, true, 1e-8)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 2"), "{e}");
    let huge = Tensor::full([2, 3], 1000.0, (Kind::Double, tch::Device::Cpu));
    let all = Tensor::ones([2, 3], (Kind::Bool, tch::Device::Cpu));
    let e = losses::policy_loss(&huge, &x, &x, &all, 0.2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("overflow"), "{e}");
}

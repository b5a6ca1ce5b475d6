//! AUROC (the Mann-Whitney U statistic, ties counted one half) and Pearson's
//! r, for the analysis figures (paper Figures 1 and 2).

use alloc::format;
use alloc::vec::Vec;

use super::error::{EvalError, EvalErrorKind};

/// Area under the ROC curve for scores of a positive and a negative class:
/// P(pos > neg) + 1/2 P(pos = neg), from mid-ranks (Mann-Whitney U).
/// Errors on an empty class or a non-finite score.
pub fn auroc(positives: &[f64], negatives: &[f64]) -> Result<f64, EvalError> {
    if positives.is_empty() || negatives.is_empty() {
        return Err(EvalError::new(
            EvalErrorKind::Empty,
            format!(
                "AUROC needs both classes: {} positives, {} negatives",
                positives.len(),
                negatives.len()
            ),
        ));
    }
    finite(positives, "positive")?;
    finite(negatives, "negative")?;
    let mut all: Vec<(f64, bool)> = positives
        .iter()
        .map(|&s| (s, true))
        .chain(negatives.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the positives' ranks, tied groups sharing their mean rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let j = i + all[i..].iter().take_while(|x| x.0 == all[i].0).count();
        let mid_rank = (i + 1 + j) as f64 / 2.0; // mean of ranks i+1..=j
        rank_sum += mid_rank * all[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let (np, nn) = (positives.len() as f64, negatives.len() as f64);
    let u = rank_sum - np * (np + 1.0) / 2.0;
    Ok(u / (np * nn))
}

/// Pearson's correlation coefficient of paired samples. Errors on
/// different lengths, fewer than two pairs, a constant series or NaN.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64, EvalError> {
    if x.len() != y.len() {
        return Err(EvalError::new(
            EvalErrorKind::Invalid,
            format!(
                "Pearson r needs paired samples: {} x values, {} y values",
                x.len(),
                y.len()
            ),
        ));
    }
    if x.len() < 2 {
        return Err(EvalError::new(
            EvalErrorKind::Empty,
            "Pearson r needs at least two pairs",
        ));
    }
    finite(x, "x")?;
    finite(y, "y")?;
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return Err(EvalError::new(
            EvalErrorKind::Invalid,
            "Pearson r is undefined for a constant series",
        ));
    }
    Ok(sxy / libm::sqrt(sxx * syy))
}

fn finite(v: &[f64], what: &str) -> Result<(), EvalError> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(EvalError::new(
            EvalErrorKind::Invalid,
            format!("{what} value {i} is not finite ({})", v[i]),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_by_hand() {
        // Perfect separation, reversed, and all tied.
        assert_eq!(auroc(&[3.0, 4.0], &[1.0, 2.0]).unwrap(), 1.0);
        assert_eq!(auroc(&[1.0, 2.0], &[3.0, 4.0]).unwrap(), 0.0);
        assert_eq!(auroc(&[1.0, 1.0], &[1.0]).unwrap(), 0.5);
        // pos {1, 3}, neg {2, 3}: pairs (1,2) 0, (1,3) 0, (3,2) 1, (3,3) 1/2 -> 1.5/4.
        assert_eq!(auroc(&[1.0, 3.0], &[2.0, 3.0]).unwrap(), 0.375);
        assert!(auroc(&[], &[1.0]).is_err());
        assert!(auroc(&[f64::NAN], &[1.0]).is_err());
    }

    #[test]
    fn pearson_by_hand() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap() - 1.0).abs() < 1e-15);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-15);
        // x = 1,2,3,4; y = 1,3,2,4: sxy = 4, sxx = syy = 5 -> 0.8.
        assert!(
            (pearson(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]).unwrap() - 0.8).abs() < 1e-15
        );
        assert!(pearson(&[1.0, 1.0], &[1.0, 2.0]).is_err());
        assert!(pearson(&[1.0], &[1.0]).is_err());
        assert!(pearson(&[1.0, 2.0], &[1.0]).is_err());
    }
}

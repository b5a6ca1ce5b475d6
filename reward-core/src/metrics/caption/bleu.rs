//! BLEU-1..4 as pycocoevalcap 1.2 computes it (`bleu/bleu_scorer.py`, after
//! Papineni et al. 2002): clipped n-gram counts against the maximum count over
//! references, the reference length closest to the candidate's (ties to the
//! shorter), the `tiny = 1e-15` / `small = 1e-9` smoothing constants, and a
//! corpus score from summed counts (not a mean of sentence scores).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::ngrams;

/// Sufficient statistics of one candidate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BleuStats {
    /// Candidate length in tokens.
    pub test_len: usize,
    /// The chosen ("closest") reference length.
    pub ref_len: usize,
    /// Candidate n-grams, n = 1..4.
    pub guess: [usize; 4],
    /// Clipped matches, n = 1..4.
    pub correct: [usize; 4],
}

/// Statistics of one tokenised candidate against its tokenised references.
pub fn stats(candidate: &[&str], references: &[Vec<&str>]) -> BleuStats {
    let mut max_ref: BTreeMap<&[&str], usize> = BTreeMap::new();
    for r in references {
        for (g, c) in ngrams(r, 4) {
            let e = max_ref.entry(g).or_insert(0);
            *e = (*e).max(c);
        }
    }
    let test_len = candidate.len();
    // min over (|l - test_len|, l): the closest length, ties to the shorter.
    let ref_len = references
        .iter()
        .map(|r| r.len())
        .min_by_key(|&l| (l.abs_diff(test_len), l))
        .unwrap_or(0);
    let mut s = BleuStats {
        test_len,
        ref_len,
        ..BleuStats::default()
    };
    for k in 0..4 {
        s.guess[k] = (test_len + 1).saturating_sub(k + 1);
    }
    for (g, c) in ngrams(candidate, 4) {
        s.correct[g.len() - 1] += c.min(max_ref.get(g).copied().unwrap_or(0));
    }
    s
}

/// BLEU-1..4 from (possibly summed) statistics.
fn bleu_from(test_len: f64, ref_len: f64, guess: &[f64; 4], correct: &[f64; 4]) -> [f64; 4] {
    const SMALL: f64 = 1e-9;
    const TINY: f64 = 1e-15;
    let mut out = [0.0; 4];
    let mut prod = 1.0;
    for k in 0..4 {
        prod *= (correct[k] + TINY) / (guess[k] + SMALL);
        out[k] = libm::pow(prod, 1.0 / (k as f64 + 1.0));
    }
    let ratio = (test_len + TINY) / (ref_len + SMALL);
    if ratio < 1.0 {
        let bp = libm::exp(1.0 - 1.0 / ratio);
        for v in &mut out {
            *v *= bp;
        }
    }
    out
}

/// Sentence-level BLEU-1..4 of one candidate (pycocoevalcap's per-image list).
pub fn sentence_bleu(s: &BleuStats) -> [f64; 4] {
    let f = |a: [usize; 4]| a.map(|x| x as f64);
    bleu_from(
        s.test_len as f64,
        s.ref_len as f64,
        &f(s.guess),
        &f(s.correct),
    )
}

/// Corpus-level BLEU-1..4 from all candidates' statistics.
pub fn corpus_bleu(all: &[BleuStats]) -> [f64; 4] {
    let (mut tl, mut rl) = (0usize, 0usize);
    let (mut guess, mut correct) = ([0.0f64; 4], [0.0f64; 4]);
    for s in all {
        tl += s.test_len;
        rl += s.ref_len;
        for k in 0..4 {
            guess[k] += s.guess[k] as f64;
            correct[k] += s.correct[k] as f64;
        }
    }
    bleu_from(tl as f64, rl as f64, &guess, &correct)
}

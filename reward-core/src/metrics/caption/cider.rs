//! CIDEr-D as pycocoevalcap 1.2's `Cider` computes it (`cider/cider_scorer.py`,
//! Vedantam et al. 2015): TF-IDF n-gram vectors (n = 1..4) with document
//! frequencies from the reference sets of the evaluated corpus, the
//! candidate's weights clipped at the reference's (`min(vec_hyp, vec_ref) *
//! vec_ref`), a Gaussian length penalty with sigma = 6, the mean over n and
//! references, times 10.
//!
//! Quirk kept: the "length" in the penalty is the number of *bigrams*
//! (`if n == 1: length += term_freq` with n = len(ngram) - 1).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::ngrams;

/// pycocoevalcap's sigma.
pub const SIGMA: f64 = 6.0;

type Counts<'a> = BTreeMap<&'a [&'a str], usize>;

/// One n-gram TF-IDF vector per order, their norms, and the bigram count.
struct Vector<'a> {
    weights: [BTreeMap<&'a [&'a str], f64>; 4],
    norms: [f64; 4],
    length: f64,
}

/// CIDEr-D scores, one per `(candidate, references)` item, tokens given.
pub fn cider_d<'a>(items: &'a [(Vec<&'a str>, Vec<Vec<&'a str>>)]) -> Vec<f64> {
    let cand: Vec<Counts<'a>> = items.iter().map(|(c, _)| ngrams(c, 4)).collect();
    let refs: Vec<Vec<Counts<'a>>> = items
        .iter()
        .map(|(_, rs)| rs.iter().map(|r| ngrams(r, 4)).collect())
        .collect();
    let mut df: BTreeMap<&[&str], f64> = BTreeMap::new();
    for set in &refs {
        let mut seen: Vec<&[&str]> = set.iter().flat_map(|c| c.keys().copied()).collect();
        seen.sort_unstable();
        seen.dedup();
        for g in seen {
            *df.entry(g).or_insert(0.0) += 1.0;
        }
    }
    let ref_len = libm::log(items.len() as f64);
    let vector = |counts: &Counts<'a>| -> Vector<'a> {
        let mut v = Vector {
            weights: Default::default(),
            norms: [0.0; 4],
            length: 0.0,
        };
        for (&g, &tf) in counts {
            let n = g.len() - 1;
            let d = libm::log(df.get(g).copied().unwrap_or(0.0).max(1.0));
            let w = tf as f64 * (ref_len - d);
            v.weights[n].insert(g, w);
            v.norms[n] += w * w;
            if n == 1 {
                v.length += tf as f64;
            }
        }
        v.norms = v.norms.map(libm::sqrt);
        v
    };
    cand.iter()
        .zip(&refs)
        .map(|(c, rs)| {
            let hyp = vector(c);
            let mut total = [0.0f64; 4];
            for r in rs {
                let sim = similarity(&hyp, &vector(r));
                for n in 0..4 {
                    total[n] += sim[n];
                }
            }
            let mean = total.iter().sum::<f64>() / 4.0;
            mean / rs.len() as f64 * 10.0
        })
        .collect()
}

/// Clipped cosine per order times the Gaussian length penalty.
fn similarity(hyp: &Vector<'_>, re: &Vector<'_>) -> [f64; 4] {
    let delta = hyp.length - re.length;
    let penalty = libm::exp(-(delta * delta) / (2.0 * SIGMA * SIGMA));
    let mut val = [0.0f64; 4];
    for (n, v) in val.iter_mut().enumerate() {
        for (g, &w) in &hyp.weights[n] {
            let r = re.weights[n].get(g).copied().unwrap_or(0.0);
            *v += w.min(r) * r;
        }
        if hyp.norms[n] != 0.0 && re.norms[n] != 0.0 {
            *v /= hyp.norms[n] * re.norms[n];
        }
        *v *= penalty;
    }
    val
}

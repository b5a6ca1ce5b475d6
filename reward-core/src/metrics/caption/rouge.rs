//! ROUGE-L as pycocoevalcap 1.2 computes it (`rouge/rouge.py`, after Lin 2004):
//! per reference the LCS length over tokens; precision and recall are each
//! maximised over references *separately*, then combined as an F-measure with
//! beta = 1.2. Tokens come from `split(" ")`, so an empty candidate is one
//! empty token.

use alloc::vec;
use alloc::vec::Vec;

/// pycocoevalcap's beta.
pub const BETA: f64 = 1.2;

/// Length of the longest common subsequence of two token lists.
pub fn lcs(a: &[&str], b: &[&str]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        core::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L of one candidate against its references (tokenised strings).
pub fn rouge_l(candidate: &str, references: &[&str]) -> f64 {
    let c: Vec<&str> = candidate.split(' ').collect();
    let (mut p_max, mut r_max) = (0.0f64, 0.0f64);
    for r in references {
        let r: Vec<&str> = r.split(' ').collect();
        let l = lcs(&r, &c) as f64;
        p_max = p_max.max(l / c.len() as f64);
        r_max = r_max.max(l / r.len() as f64);
    }
    if p_max != 0.0 && r_max != 0.0 {
        let b2 = BETA * BETA;
        (1.0 + b2) * p_max * r_max / (r_max + b2 * p_max)
    } else {
        0.0
    }
}

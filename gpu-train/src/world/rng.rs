//! Seeded, portable randomness for the synthetic world. Every sample draws
//! from its own ChaCha8 stream keyed by (split seed, split, index, purpose,
//! variant), so a sample's bytes do not depend on which other samples were
//! generated, in what order, or on how many threads. The helpers below use
//! only exact IEEE operations (no `sin`, `exp`, or platform libm), so the same
//! seed gives the same bytes on every platform.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// What a stream is used for; part of the stream key so that drawing and
/// captioning never share random numbers.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Purpose {
    Scene = 1,
    Draw = 2,
    Caption = 3,
    Order = 4,
}

/// A seeded random stream with the few distributions the world needs.
pub(crate) struct Stream(ChaCha8Rng);

/// SplitMix64 finaliser: a bijective mix that spreads nearby keys apart.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Stream {
    /// The stream of one (seed, split, index, purpose, variant) key.
    pub(crate) fn new(seed: u64, split: u64, index: u64, purpose: Purpose, variant: u64) -> Self {
        let parts = [seed, split, index, purpose as u64, variant];
        let mut key = [0u8; 32];
        let mut h = 0x5EED_F15A_0000_0000u64;
        for (i, chunk) in key.chunks_exact_mut(8).enumerate() {
            for p in parts {
                h = mix(h ^ p);
            }
            h = mix(h ^ i as u64);
            chunk.copy_from_slice(&h.to_le_bytes());
        }
        Self(ChaCha8Rng::from_seed(key))
    }

    /// 32 raw random bits.
    pub(crate) fn bits(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// Uniform in [0, 1) with 24 bits of resolution.
    pub(crate) fn unit(&mut self) -> f32 {
        (self.0.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
    }

    /// Uniform in [lo, hi).
    pub(crate) fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// True with probability `p` (53-bit resolution).
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        let u = (self.0.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0);
        u < p
    }

    /// Uniform integer in [0, n); `n` must be positive. Lemire's method with
    /// rejection, so there is no modulo bias.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0 && n <= u32::MAX as usize);
        let n = n as u64;
        let threshold = (u32::MAX as u64 + 1 - n) % n;
        loop {
            let m = self.0.next_u32() as u64 * n;
            if (m & 0xFFFF_FFFF) >= threshold {
                return (m >> 32) as usize;
            }
        }
    }

    /// Uniform integer in [lo, hi], inclusive.
    pub(crate) fn between(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below((hi - lo + 1) as usize) as u32
    }

    /// Fisher-Yates shuffle.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let draw = |seed, index, purpose| {
            let mut s = Stream::new(seed, 0, index, purpose, 0);
            (0..8).map(|_| s.bits()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, 3, Purpose::Scene), draw(7, 3, Purpose::Scene));
        assert_ne!(draw(7, 3, Purpose::Scene), draw(7, 4, Purpose::Scene));
        assert_ne!(draw(7, 3, Purpose::Scene), draw(8, 3, Purpose::Scene));
        assert_ne!(draw(7, 3, Purpose::Scene), draw(7, 3, Purpose::Draw));
    }

    #[test]
    fn below_is_uniform_and_in_range() {
        let mut s = Stream::new(1, 2, 3, Purpose::Caption, 0);
        let mut hist = [0usize; 7];
        for _ in 0..70_000 {
            hist[s.below(7)] += 1;
        }
        // Expected 10000 each, binomial sd ~93: allow 5 sd.
        for h in hist {
            assert!((h as i64 - 10_000).abs() < 470, "{hist:?}");
        }
    }
}

//! Rotary position embeddings as in `transformers/models/llama/modeling_llama.py`
//! (`LlamaRotaryEmbedding`, `rotate_half`, `apply_rotary_pos_emb`) with the
//! inverse frequencies of `modeling_rope_utils.py` (default, linear, llama3).

use std::f64::consts::PI;

use tch::{Device, Kind, Tensor};

use super::config::{RopeScaling, TextConfig};

/// Inverse frequencies, one per pair of head dimensions.
pub struct Rope {
    inv_freq: Tensor,
}

/// `inv_freq[i] = theta^(-2i/d)`, then scaled.
pub fn inverse_frequencies(theta: f64, head_dim: i64, scaling: &RopeScaling) -> Vec<f32> {
    let d = head_dim as f64;
    (0..head_dim / 2)
        .map(|i| {
            // HF computes the base frequencies in f32; round the same way.
            let f = (1.0 / theta.powf((2 * i) as f32 as f64 / d)) as f32 as f64;
            scale(f, scaling) as f32
        })
        .collect()
}

fn scale(f: f64, scaling: &RopeScaling) -> f64 {
    match *scaling {
        RopeScaling::None => f,
        RopeScaling::Linear { factor } => f / factor,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old,
        } => {
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            let wavelen = 2.0 * PI / f;
            if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / factor
            } else {
                let smooth =
                    (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                (1.0 - smooth) * f / factor + smooth * f
            }
        }
    }
}

impl Rope {
    /// Frequencies for the config, on `device`.
    pub fn new(cfg: &TextConfig, device: Device) -> Self {
        let f = inverse_frequencies(cfg.rope_theta, cfg.head_dim, &cfg.rope_scaling);
        Rope {
            inv_freq: Tensor::from_slice(&f).to_device(device),
        }
    }

    /// `(cos, sin)` of shape `[b, s, head_dim]` for position ids `[b, s]`, in `kind`.
    pub fn cos_sin(&self, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        // Angles in f32 like HF (autocast disabled there), then cast.
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * self.inv_freq.view([1, 1, -1]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
    }
}

fn rotate_half(x: &Tensor) -> Tensor {
    let half = x.size()[x.dim() - 1] / 2;
    let x1 = x.narrow(-1, 0, half);
    let x2 = x.narrow(-1, half, half);
    Tensor::cat(&[&x2.neg(), &x1], -1)
}

/// Rotates `x` of shape `[b, heads, s, head_dim]` with `cos`/`sin` of `[b, s, head_dim]`.
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let cos = cos.unsqueeze(1);
    let sin = sin.unsqueeze(1);
    x * &cos + rotate_half(x) * &sin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let s = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 32.0,
        };
        let plain = inverse_frequencies(50000.0, 16, &RopeScaling::None);
        let scaled = inverse_frequencies(50000.0, 16, &s);
        assert_eq!(plain[0], scaled[0]); // wavelength 2*pi < 8: untouched
        let last = plain.len() - 1;
        assert!((plain[last] / 8.0 - scaled[last]).abs() < 1e-12); // long wavelength: divided
        let lin = inverse_frequencies(10000.0, 8, &RopeScaling::Linear { factor: 2.0 });
        assert!((lin[1] - 10000f32.powf(-0.25) / 2.0).abs() < 1e-7);
    }
}

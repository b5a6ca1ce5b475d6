//! The Llama decoder of LLaVA-1.5 (`LlamaModel` in
//! `transformers/models/llama/modeling_llama.py`): RMSNorm, RoPE, grouped-query
//! attention, SwiGLU; field names follow the HF keys.

use anyhow::Result;
use tch::{Kind, Tensor};

use super::attention::{Attention, AttnInputs, KvCache};
use super::config::TextConfig;
use super::lora::{LoraBuilder, LoraLinear};
use super::rope::Rope;
use super::weights::{InitHint, WeightBuilder};

/// `LlamaRMSNorm`: normalise in f32, scale in the model dtype.
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// Loads `{prefix}.weight`.
    pub fn new(vb: &WeightBuilder, dim: i64, eps: f64) -> Result<Self> {
        Ok(RmsNorm {
            weight: vb.get("weight", &[dim], InitHint::Ones)?,
            eps,
        })
    }

    /// `weight * x / sqrt(mean(x^2) + eps)`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let h = x.to_kind(Kind::Float);
        let var = h.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let h = h * (var + self.eps).rsqrt();
        &self.weight * h.to_kind(kind)
    }
}

/// `LlamaMLP`: `down(silu(gate(x)) * up(x))`.
pub struct Mlp {
    gate_proj: LoraLinear,
    up_proj: LoraLinear,
    down_proj: LoraLinear,
}

impl Mlp {
    fn new(vb: &WeightBuilder, cfg: &TextConfig, lora: Option<&LoraBuilder>) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Mlp {
            gate_proj: LoraLinear::new(&vb.pp("gate_proj"), h, i, lora)?,
            up_proj: LoraLinear::new(&vb.pp("up_proj"), h, i, lora)?,
            down_proj: LoraLinear::new(&vb.pp("down_proj"), i, h, lora)?,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let g = self.gate_proj.forward(x, train).silu();
        self.down_proj
            .forward(&(g * self.up_proj.forward(x, train)), train)
    }
}

/// `LlamaDecoderLayer`: pre-norm attention and MLP with residuals.
pub struct DecoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    fn new(vb: &WeightBuilder, cfg: &TextConfig, lora: Option<&LoraBuilder>) -> Result<Self> {
        Ok(DecoderLayer {
            self_attn: Attention::new(&vb.pp("self_attn"), cfg, lora)?,
            mlp: Mlp::new(&vb.pp("mlp"), cfg, lora)?,
            input_layernorm: RmsNorm::new(
                &vb.pp("input_layernorm"),
                cfg.hidden_size,
                cfg.rms_norm_eps,
            )?,
            post_attention_layernorm: RmsNorm::new(
                &vb.pp("post_attention_layernorm"),
                cfg.hidden_size,
                cfg.rms_norm_eps,
            )?,
        })
    }
}

/// `LlamaModel`: embeddings, layers, final norm.
pub struct LlamaModel {
    /// `[vocab, hidden]`.
    pub embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    rope: Rope,
}

impl LlamaModel {
    /// Loads everything below `vb` (`language_model`).
    pub fn new(vb: &WeightBuilder, cfg: &TextConfig, lora: Option<&LoraBuilder>) -> Result<Self> {
        let embed_tokens = vb.pp("embed_tokens").get(
            "weight",
            &[cfg.vocab_size, cfg.hidden_size],
            InitHint::Normal,
        )?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(&vb.pp("layers").pp(i), cfg, lora))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(&vb.pp("norm"), cfg.hidden_size, cfg.rms_norm_eps)?;
        Ok(LlamaModel {
            rope: Rope::new(cfg, embed_tokens.device()),
            embed_tokens,
            layers,
            norm,
        })
    }

    /// Token embeddings of `ids` `[b, s]`.
    pub fn embed(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.embed_tokens, ids, -1, false, false)
    }

    /// Final hidden states (after `norm`) of `embeds` `[b, s, hidden]` at `positions` `[b, s]`.
    // `h = h + a`, not `h += a`: `+=` adds in place, into `embeds`' storage
    // (`h` starts as its shallow clone) and under autograd.
    #[allow(clippy::assign_op_pattern)]
    pub fn forward(
        &self,
        embeds: &Tensor,
        positions: &Tensor,
        mask: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        train: bool,
    ) -> Tensor {
        let (cos, sin) = self.rope.cos_sin(positions, embeds.kind());
        let inp = AttnInputs {
            cos: &cos,
            sin: &sin,
            mask,
            train,
        };
        let mut h = embeds.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let c = cache.as_deref_mut().map(|c| c.layer(i));
            let a = layer
                .self_attn
                .forward(&layer.input_layernorm.forward(&h), &inp, c);
            h = h + a;
            h = &h
                + layer
                    .mlp
                    .forward(&layer.post_attention_layernorm.forward(&h), train);
        }
        if let Some(c) = cache {
            c.advance(embeds.size()[1]);
        }
        self.norm.forward(&h)
    }
}

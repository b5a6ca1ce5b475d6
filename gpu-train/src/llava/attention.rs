//! Llama self-attention with grouped-query heads and a preallocated KV cache
//! (`LlamaAttention` in `transformers/models/llama/modeling_llama.py`), computed
//! by libtorch's `scaled_dot_product_attention`.

use anyhow::Result;
use tch::{Device, Kind, Tensor};

use super::config::TextConfig;
use super::lora::{LoraBuilder, LoraLinear};
use super::rope;
use super::weights::WeightBuilder;

/// Keys and values of one layer for every position so far, preallocated to the
/// longest sequence so decoding writes in place instead of concatenating.
pub struct LayerCache {
    k: Tensor,
    v: Tensor,
}

/// The KV cache of all layers; `len` positions are filled.
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: i64,
    capacity: i64,
}

impl KvCache {
    /// An empty cache for `batch` rows of up to `capacity` positions.
    pub fn new(cfg: &TextConfig, batch: i64, capacity: i64, kind: Kind, device: Device) -> Self {
        let shape = [batch, cfg.num_key_value_heads, capacity, cfg.head_dim];
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| LayerCache {
                k: Tensor::zeros(shape, (kind, device)),
                v: Tensor::zeros(shape, (kind, device)),
            })
            .collect();
        KvCache {
            layers,
            len: 0,
            capacity,
        }
    }

    /// Positions already cached.
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left.
    pub fn remaining(&self) -> i64 {
        self.capacity - self.len
    }

    /// Marks `n` more positions as filled (after every layer wrote them).
    pub(crate) fn advance(&mut self, n: i64) {
        self.len += n;
    }

    pub(crate) fn layer(&mut self, i: usize) -> (&mut LayerCache, i64) {
        (&mut self.layers[i], self.len)
    }
}

/// `q_proj`, `k_proj`, `v_proj`, `o_proj` of one decoder layer.
pub struct Attention {
    q_proj: LoraLinear,
    k_proj: LoraLinear,
    v_proj: LoraLinear,
    o_proj: LoraLinear,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

/// What attention needs besides the hidden states.
pub struct AttnInputs<'a> {
    /// RoPE cosines `[b, s, head_dim]`.
    pub cos: &'a Tensor,
    /// RoPE sines `[b, s, head_dim]`.
    pub sin: &'a Tensor,
    /// Additive mask `[b, 1, s, kv_len]`; `None` means plain causal over all positions.
    pub mask: Option<&'a Tensor>,
    /// Training mode (adapter dropout).
    pub train: bool,
}

impl Attention {
    /// Loads the four projections below `vb` (`...self_attn`).
    pub fn new(vb: &WeightBuilder, cfg: &TextConfig, lora: Option<&LoraBuilder>) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        Ok(Attention {
            q_proj: LoraLinear::new(&vb.pp("q_proj"), h, nh * hd, lora)?,
            k_proj: LoraLinear::new(&vb.pp("k_proj"), h, nkv * hd, lora)?,
            v_proj: LoraLinear::new(&vb.pp("v_proj"), h, nkv * hd, lora)?,
            o_proj: LoraLinear::new(&vb.pp("o_proj"), nh * hd, h, lora)?,
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
        })
    }

    fn heads_first(&self, x: &Tensor, n: i64) -> Tensor {
        let (b, s) = (x.size()[0], x.size()[1]);
        x.view([b, s, n, self.head_dim]).transpose(1, 2)
    }

    /// Attention over `x` `[b, s, hidden]`, appending to `cache` when given.
    pub fn forward(
        &self,
        x: &Tensor,
        inp: &AttnInputs,
        cache: Option<(&mut LayerCache, i64)>,
    ) -> Tensor {
        let (b, s) = (x.size()[0], x.size()[1]);
        let q = rope::apply(
            &self.heads_first(&self.q_proj.forward(x, inp.train), self.heads),
            inp.cos,
            inp.sin,
        );
        let k = rope::apply(
            &self.heads_first(&self.k_proj.forward(x, inp.train), self.kv_heads),
            inp.cos,
            inp.sin,
        );
        let v = self.heads_first(&self.v_proj.forward(x, inp.train), self.kv_heads);
        let (k, v) = match cache {
            Some((c, past)) => {
                c.k.narrow(2, past, s).copy_(&k);
                c.v.narrow(2, past, s).copy_(&v);
                (c.k.narrow(2, 0, past + s), c.v.narrow(2, 0, past + s))
            }
            None => (k, v),
        };
        let causal = inp.mask.is_none() && s > 1;
        let out = match inp.mask {
            // Flash/cuDNN kernels take grouped heads directly when there is no explicit mask.
            None => Tensor::scaled_dot_product_attention::<Tensor>(
                &q, &k, &v, None, 0.0, causal, None, true,
            ),
            Some(m) => {
                let rep = self.heads / self.kv_heads;
                let (k, v) = (repeat_kv(&k, rep), repeat_kv(&v, rep));
                Tensor::scaled_dot_product_attention(&q, &k, &v, Some(m), 0.0, false, None, false)
            }
        };
        let out = out
            .transpose(1, 2)
            .reshape([b, s, self.heads * self.head_dim]);
        self.o_proj.forward(&out, inp.train)
    }
}

/// `[b, kv, t, d]` -> `[b, kv * rep, t, d]`, each key head repeated `rep` times (HF `repeat_kv`).
fn repeat_kv(x: &Tensor, rep: i64) -> Tensor {
    if rep == 1 {
        return x.shallow_clone();
    }
    let s = x.size();
    x.unsqueeze(2)
        .expand([s[0], s[1], rep, s[2], s[3]], false)
        .reshape([s[0], s[1] * rep, s[2], s[3]])
}

//! The CLIP ViT vision tower (`CLIPVisionTransformer` in
//! `transformers/models/clip/modeling_clip.py`), run only as far as LLaVA's
//! `vision_feature_layer` needs (layer -2 for LLaVA-1.5; `post_layernorm` is unused).

use anyhow::{Result, bail};
use tch::{Kind, Tensor};

use super::config::VisionConfig;
use super::linear::Linear;
use super::weights::{InitHint, WeightBuilder};

/// `nn.LayerNorm` with `weight` and `bias`.
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Loads `{prefix}.weight` and `{prefix}.bias`.
    pub fn new(vb: &WeightBuilder, dim: i64, eps: f64) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get("weight", &[dim], InitHint::Ones)?,
            bias: vb.get("bias", &[dim], InitHint::Zeros)?,
            eps,
        })
    }

    /// Normalises the last dimension.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let d = x.size()[x.dim() - 1];
        x.layer_norm([d], Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}

/// `CLIPVisionEmbeddings`: patch conv, class token, learned positions.
pub struct Embeddings {
    class_embedding: Tensor,
    patch_embedding: Tensor,
    position_embedding: Tensor,
    patch: i64,
}

impl Embeddings {
    fn new(vb: &WeightBuilder, c: &VisionConfig) -> Result<Self> {
        let n_pos = c.patches_per_side().pow(2) + 1;
        Ok(Embeddings {
            class_embedding: vb.get("class_embedding", &[c.hidden_size], InitHint::Normal)?,
            patch_embedding: vb.pp("patch_embedding").get(
                "weight",
                &[c.hidden_size, c.num_channels, c.patch_size, c.patch_size],
                InitHint::Normal,
            )?,
            position_embedding: vb.pp("position_embedding").get(
                "weight",
                &[n_pos, c.hidden_size],
                InitHint::Normal,
            )?,
            patch: c.patch_size,
        })
    }

    fn forward(&self, pixels: &Tensor) -> Tensor {
        let p = pixels.conv2d::<Tensor>(
            &self.patch_embedding,
            None,
            [self.patch, self.patch],
            [0, 0],
            [1, 1],
            1,
        );
        let p = p.flatten(2, -1).transpose(1, 2);
        let b = p.size()[0];
        let d = self.class_embedding.size()[0];
        let cls = self
            .class_embedding
            .view([1, 1, d])
            .expand([b, 1, d], false);
        Tensor::cat(&[&cls, &p], 1) + self.position_embedding.unsqueeze(0)
    }
}

/// `CLIPEncoderLayer`: pre-norm attention and MLP.
pub struct EncoderLayer {
    layer_norm1: LayerNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: i64,
    quick_gelu: bool,
}

impl EncoderLayer {
    fn new(vb: &WeightBuilder, c: &VisionConfig) -> Result<Self> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let at = vb.pp("self_attn");
        Ok(EncoderLayer {
            layer_norm1: LayerNorm::new(&vb.pp("layer_norm1"), h, c.layer_norm_eps)?,
            q_proj: Linear::new(&at.pp("q_proj"), h, h, true)?,
            k_proj: Linear::new(&at.pp("k_proj"), h, h, true)?,
            v_proj: Linear::new(&at.pp("v_proj"), h, h, true)?,
            out_proj: Linear::new(&at.pp("out_proj"), h, h, true)?,
            layer_norm2: LayerNorm::new(&vb.pp("layer_norm2"), h, c.layer_norm_eps)?,
            fc1: Linear::new(&vb.pp("mlp").pp("fc1"), h, i, true)?,
            fc2: Linear::new(&vb.pp("mlp").pp("fc2"), i, h, true)?,
            heads: c.num_attention_heads,
            quick_gelu: c.quick_gelu,
        })
    }

    fn attention(&self, x: &Tensor) -> Tensor {
        let s = x.size();
        let split = |t: Tensor| t.view([s[0], s[1], self.heads, -1]).transpose(1, 2);
        let q = split(self.q_proj.forward(x));
        let k = split(self.k_proj.forward(x));
        let v = split(self.v_proj.forward(x));
        let o = Tensor::scaled_dot_product_attention::<Tensor>(
            &q, &k, &v, None, 0.0, false, None, false,
        );
        self.out_proj
            .forward(&o.transpose(1, 2).reshape([s[0], s[1], s[2]]))
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let x = x + self.attention(&self.layer_norm1.forward(x));
        let h = self.fc1.forward(&self.layer_norm2.forward(&x));
        // quick_gelu = x * sigmoid(1.702 x) (ACT2FN["quick_gelu"]).
        let h = if self.quick_gelu {
            &h * (&h * 1.702).sigmoid()
        } else {
            h.gelu("none")
        };
        x + self.fc2.forward(&h)
    }
}

/// The tower up to the feature layer.
pub struct ClipVisionTower {
    embeddings: Embeddings,
    pre_layrnorm: LayerNorm,
    layers: Vec<EncoderLayer>,
    drop_cls: bool,
    image_size: i64,
    channels: i64,
}

impl ClipVisionTower {
    /// Loads `embeddings`, `pre_layrnorm` and the first `layers_used` encoder layers below `vb`.
    pub fn new(
        vb: &WeightBuilder,
        c: &VisionConfig,
        layers_used: i64,
        drop_cls: bool,
    ) -> Result<Self> {
        let layers = (0..layers_used)
            .map(|i| EncoderLayer::new(&vb.pp("encoder").pp("layers").pp(i), c))
            .collect::<Result<Vec<_>>>()?;
        Ok(ClipVisionTower {
            embeddings: Embeddings::new(&vb.pp("embeddings"), c)?,
            pre_layrnorm: LayerNorm::new(&vb.pp("pre_layrnorm"), c.hidden_size, c.layer_norm_eps)?,
            layers,
            drop_cls,
            image_size: c.image_size,
            channels: c.num_channels,
        })
    }

    /// Selected features `[n, patches, hidden]` of `pixels` `[n, 3, H, W]`.
    pub fn forward(&self, pixels: &Tensor, kind: Kind) -> Result<Tensor> {
        let s = pixels.size();
        if s.len() != 4
            || s[1] != self.channels
            || s[2] != self.image_size
            || s[3] != self.image_size
        {
            bail!(
                "pixel_values must be [n, {}, {}, {}], found {s:?}",
                self.channels,
                self.image_size,
                self.image_size
            );
        }
        let mut h = self
            .pre_layrnorm
            .forward(&self.embeddings.forward(&pixels.to_kind(kind)));
        for l in &self.layers {
            h = l.forward(&h);
        }
        Ok(if self.drop_cls {
            h.narrow(1, 1, h.size()[1] - 1)
        } else {
            h
        })
    }
}

//! LLaVA-1.5 configuration: a serde mirror of HF `config.json`
//! (`transformers/models/llava/configuration_llava.py`, `LlamaConfig`,
//! `CLIPVisionConfig`, with their class defaults, because the llava-hf hub
//! files only list the values that differ), checked into a runtime config.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

/// RoPE frequency scaling, as `transformers/modeling_rope_utils.py` computes it.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Position interpolation: every inverse frequency divided by `factor`.
    Linear {
        /// Divisor of the inverse frequencies.
        factor: f64,
    },
    /// Llama 3.1's wavelength-dependent scaling (`_compute_llama3_parameters`).
    Llama3 {
        /// Divisor for long wavelengths.
        factor: f64,
        /// Long-wavelength boundary factor.
        low_freq_factor: f64,
        /// Short-wavelength boundary factor.
        high_freq_factor: f64,
        /// Context length of pre-training.
        original_max_position_embeddings: f64,
    },
}

/// Checked configuration of the Llama decoder.
#[derive(Debug, Clone)]
pub struct TextConfig {
    /// Vocabulary size (rows of `embed_tokens` and `lm_head`).
    pub vocab_size: i64,
    /// Model width.
    pub hidden_size: i64,
    /// SwiGLU width.
    pub intermediate_size: i64,
    /// Decoder layers.
    pub num_hidden_layers: i64,
    /// Query heads.
    pub num_attention_heads: i64,
    /// Key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: i64,
    /// Width of one head.
    pub head_dim: i64,
    /// Longest sequence the model accepts.
    pub max_position_embeddings: i64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE scaling.
    pub rope_scaling: RopeScaling,
    /// `lm_head` shares `embed_tokens`.
    pub tie_word_embeddings: bool,
    /// End-of-sequence ids.
    pub eos_token_ids: Vec<i64>,
    /// Padding id, if the checkpoint names one.
    pub pad_token_id: Option<i64>,
    /// Begin-of-sequence id.
    pub bos_token_id: Option<i64>,
    /// Std of the normal init used when training from scratch.
    pub initializer_range: f64,
}

/// Checked configuration of the CLIP vision tower.
#[derive(Debug, Clone)]
pub struct VisionConfig {
    /// Width of the tower.
    pub hidden_size: i64,
    /// MLP width.
    pub intermediate_size: i64,
    /// Layers in the checkpoint.
    pub num_hidden_layers: i64,
    /// Attention heads.
    pub num_attention_heads: i64,
    /// Input resolution in pixels (square).
    pub image_size: i64,
    /// Patch size in pixels.
    pub patch_size: i64,
    /// Input channels.
    pub num_channels: i64,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// `true` for `quick_gelu`, `false` for exact `gelu`.
    pub quick_gelu: bool,
}

impl VisionConfig {
    /// Patches per image side.
    pub fn patches_per_side(&self) -> i64 {
        self.image_size / self.patch_size
    }
}

/// Checked LLaVA configuration.
#[derive(Debug, Clone)]
pub struct LlavaConfig {
    /// The language model.
    pub text: TextConfig,
    /// The vision tower.
    pub vision: VisionConfig,
    /// Id of the `<image>` placeholder token.
    pub image_token_id: i64,
    /// How many encoder layers run before features are taken
    /// (`vision_feature_layer = -2` takes the output of the second-to-last layer).
    pub vision_layers_used: i64,
    /// `vision_feature_select_strategy == "default"`: drop the CLS position.
    pub drop_cls: bool,
    /// Projector linear layers carry biases.
    pub projector_bias: bool,
}

impl LlavaConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses and checks the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let raw: HfLlavaConfig = serde_json::from_str(text).context("parsing LLaVA config.json")?;
        raw.check()
    }

    /// Image tokens one image expands to.
    pub fn image_tokens_per_image(&self) -> i64 {
        let n = self.vision.patches_per_side().pow(2);
        if self.drop_cls { n } else { n + 1 }
    }
}

fn d_vocab() -> i64 {
    32000
}
fn d_hidden() -> i64 {
    4096
}
fn d_inter() -> i64 {
    11008
}
fn d_layers() -> i64 {
    32
}
fn d_heads() -> i64 {
    32
}
fn d_silu() -> String {
    "silu".into()
}
fn d_max_pos() -> i64 {
    2048
}
fn d_eps() -> f64 {
    1e-6
}
fn d_init() -> f64 {
    0.02
}
fn d_bos() -> Option<i64> {
    Some(1)
}
fn d_eos() -> Value {
    Value::from(2)
}

/// `LlamaConfig` fields with their class defaults.
#[derive(Deserialize)]
struct HfTextConfig {
    #[serde(default = "d_vocab")]
    vocab_size: i64,
    #[serde(default = "d_hidden")]
    hidden_size: i64,
    #[serde(default = "d_inter")]
    intermediate_size: i64,
    #[serde(default = "d_layers")]
    num_hidden_layers: i64,
    #[serde(default = "d_heads")]
    num_attention_heads: i64,
    num_key_value_heads: Option<i64>,
    head_dim: Option<i64>,
    #[serde(default = "d_silu")]
    hidden_act: String,
    #[serde(default = "d_max_pos")]
    max_position_embeddings: i64,
    #[serde(default = "d_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default = "d_bos")]
    bos_token_id: Option<i64>,
    #[serde(default = "d_eos")]
    eos_token_id: Value,
    pad_token_id: Option<i64>,
    #[serde(default = "d_init")]
    initializer_range: f64,
    model_type: Option<String>,
}

fn v_hidden() -> i64 {
    768
}
fn v_inter() -> i64 {
    3072
}
fn v_layers() -> i64 {
    12
}
fn v_heads() -> i64 {
    12
}
fn v_image() -> i64 {
    224
}
fn v_patch() -> i64 {
    32
}
fn v_channels() -> i64 {
    3
}
fn v_eps() -> f64 {
    1e-5
}
fn v_act() -> String {
    "quick_gelu".into()
}

/// `CLIPVisionConfig` fields with their class defaults.
#[derive(Deserialize)]
struct HfVisionConfig {
    #[serde(default = "v_hidden")]
    hidden_size: i64,
    #[serde(default = "v_inter")]
    intermediate_size: i64,
    #[serde(default = "v_layers")]
    num_hidden_layers: i64,
    #[serde(default = "v_heads")]
    num_attention_heads: i64,
    #[serde(default = "v_image")]
    image_size: i64,
    #[serde(default = "v_patch")]
    patch_size: i64,
    #[serde(default = "v_channels")]
    num_channels: i64,
    #[serde(default = "v_eps")]
    layer_norm_eps: f64,
    #[serde(default = "v_act")]
    hidden_act: String,
    model_type: Option<String>,
}

fn l_layer() -> Value {
    Value::from(-2)
}
fn l_strategy() -> String {
    "default".into()
}
fn l_gelu() -> String {
    "gelu".into()
}
fn l_true() -> bool {
    true
}

/// `LlavaConfig` fields with their class defaults.
#[derive(Deserialize)]
struct HfLlavaConfig {
    text_config: HfTextConfig,
    vision_config: HfVisionConfig,
    image_token_index: Option<i64>,
    image_token_id: Option<i64>,
    #[serde(default = "l_layer")]
    vision_feature_layer: Value,
    #[serde(default = "l_strategy")]
    vision_feature_select_strategy: String,
    #[serde(default = "l_gelu")]
    projector_hidden_act: String,
    #[serde(default = "l_true")]
    multimodal_projector_bias: bool,
}

impl HfLlavaConfig {
    fn check(self) -> Result<LlavaConfig> {
        let text = self.text_config.check()?;
        let vision = self.vision_config.check()?;
        let image_token_id = self
            .image_token_id
            .or(self.image_token_index)
            .unwrap_or(32000);
        if image_token_id < 0 || image_token_id >= text.vocab_size {
            bail!(
                "image_token_index {image_token_id} is outside the vocabulary (0..{})",
                text.vocab_size
            );
        }
        let layer = self.vision_feature_layer.as_i64().with_context(|| {
            format!(
                "unsupported vision_feature_layer {}: only a single integer layer is supported",
                self.vision_feature_layer
            )
        })?;
        let n = vision.num_hidden_layers;
        // hidden_states[i] is the input of layer i (hidden_states[0] = embeddings), so
        // index i means i layers have run; negative indices count from n + 1 states.
        let used = if layer < 0 { n + 1 + layer } else { layer };
        if !(0..=n).contains(&used) {
            bail!("vision_feature_layer {layer} is out of range for {n} vision layers");
        }
        let drop_cls = match self.vision_feature_select_strategy.as_str() {
            "default" => true,
            "full" => false,
            other => bail!(
                "unsupported vision_feature_select_strategy {other:?} (supported: default, full)"
            ),
        };
        if self.projector_hidden_act != "gelu" {
            bail!(
                "unsupported projector_hidden_act {:?} (supported: gelu)",
                self.projector_hidden_act
            );
        }
        Ok(LlavaConfig {
            text,
            vision,
            image_token_id,
            vision_layers_used: used,
            drop_cls,
            projector_bias: self.multimodal_projector_bias,
        })
    }
}

impl HfTextConfig {
    fn check(self) -> Result<TextConfig> {
        if let Some(t) = &self.model_type
            && t != "llama"
        {
            bail!("unsupported text_config.model_type {t:?} (supported: llama)");
        }
        if self.hidden_act != "silu" {
            bail!(
                "unsupported text_config.hidden_act {:?} (supported: silu)",
                self.hidden_act
            );
        }
        if self.attention_bias || self.mlp_bias {
            bail!(
                "unsupported text_config: attention_bias/mlp_bias = true (Llama-2 style checkpoints have none)"
            );
        }
        let heads = self.num_attention_heads;
        let kv = self.num_key_value_heads.unwrap_or(heads);
        if heads <= 0 || kv <= 0 || heads % kv != 0 {
            bail!(
                "num_attention_heads {heads} is not a positive multiple of num_key_value_heads {kv}"
            );
        }
        let head_dim = self.head_dim.unwrap_or(self.hidden_size / heads);
        if head_dim <= 0 || head_dim % 2 != 0 {
            bail!("head_dim {head_dim} must be positive and even for RoPE");
        }
        let (rope_theta, rope_scaling) = rope_from(&self)?;
        let eos_token_ids = match &self.eos_token_id {
            Value::Null => vec![],
            Value::Number(n) => vec![n.as_i64().context("eos_token_id is not an integer")?],
            Value::Array(a) => a
                .iter()
                .map(|v| v.as_i64().context("eos_token_id list holds a non-integer"))
                .collect::<Result<_>>()?,
            other => bail!("unsupported eos_token_id {other}"),
        };
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v <= 0 {
                bail!("text_config.{name} must be positive, found {v}");
            }
        }
        Ok(TextConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim,
            max_position_embeddings: self.max_position_embeddings,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta,
            rope_scaling,
            tie_word_embeddings: self.tie_word_embeddings,
            eos_token_ids,
            pad_token_id: self.pad_token_id,
            bos_token_id: self.bos_token_id,
            initializer_range: self.initializer_range,
        })
    }
}

/// RoPE settings from either `rope_parameters` (transformers 5) or
/// `rope_theta` + `rope_scaling` (transformers 4 and the llava-hf hub files).
fn rope_from(c: &HfTextConfig) -> Result<(f64, RopeScaling)> {
    let (params, where_) = match (&c.rope_parameters, &c.rope_scaling) {
        (Some(p), _) if !p.is_null() => (p.clone(), "rope_parameters"),
        (_, Some(s)) if !s.is_null() => (s.clone(), "rope_scaling"),
        _ => (Value::Null, ""),
    };
    let theta = params
        .get("rope_theta")
        .and_then(Value::as_f64)
        .or(c.rope_theta)
        .unwrap_or(10000.0);
    if params.is_null() {
        return Ok((theta, RopeScaling::None));
    }
    let kind = params
        .get("rope_type")
        .or_else(|| params.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |key: &str| -> Result<f64> {
        params
            .get(key)
            .and_then(Value::as_f64)
            .with_context(|| format!("text_config.{where_}: {kind} RoPE needs a numeric {key:?}"))
    };
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: num("factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")?,
        },
        other => bail!(
            "unsupported RoPE type {other:?} in text_config.{where_} (supported: default, linear, llama3)"
        ),
    };
    Ok((theta, scaling))
}

impl HfVisionConfig {
    fn check(self) -> Result<VisionConfig> {
        if let Some(t) = &self.model_type
            && t != "clip_vision_model"
        {
            bail!("unsupported vision_config.model_type {t:?} (supported: clip_vision_model)");
        }
        let quick_gelu = match self.hidden_act.as_str() {
            "quick_gelu" => true,
            "gelu" => false,
            other => bail!(
                "unsupported vision_config.hidden_act {other:?} (supported: quick_gelu, gelu)"
            ),
        };
        if self.patch_size <= 0 || self.image_size % self.patch_size != 0 {
            bail!(
                "vision image_size {} is not a multiple of patch_size {}",
                self.image_size,
                self.patch_size
            );
        }
        if self.num_attention_heads <= 0 || self.hidden_size % self.num_attention_heads != 0 {
            bail!(
                "vision hidden_size {} not divisible by {} heads",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        Ok(VisionConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            image_size: self.image_size,
            patch_size: self.patch_size,
            num_channels: self.num_channels,
            layer_norm_eps: self.layer_norm_eps,
            quick_gelu,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of llava-hf/llava-1.5-7b-hf's config.json: sparse, relying on class defaults.
    const HUB_7B: &str = r#"{"architectures":["LlavaForConditionalGeneration"],"ignore_index":-100,
      "image_token_index":32000,"model_type":"llava","pad_token_id":32001,"projector_hidden_act":"gelu",
      "text_config":{"_name_or_path":"lmsys/vicuna-7b-v1.5","architectures":["LlamaForCausalLM"],
        "max_position_embeddings":4096,"model_type":"llama","pad_token_id":32001,"rms_norm_eps":1e-05,
        "torch_dtype":"float16","vocab_size":32064},
      "tie_word_embeddings":false,"torch_dtype":"float16","transformers_version":"4.36.0.dev0",
      "vision_config":{"hidden_size":1024,"image_size":336,"intermediate_size":4096,
        "model_type":"clip_vision_model","num_attention_heads":16,"num_hidden_layers":24,
        "patch_size":14,"projection_dim":768,"vocab_size":32000},
      "vision_feature_layer":-2,"vision_feature_select_strategy":"default","vocab_size":32064}"#;

    #[test]
    fn hub_7b_config_fills_class_defaults() {
        let c = LlavaConfig::from_json(HUB_7B).unwrap();
        assert_eq!(c.text.hidden_size, 4096);
        assert_eq!(c.text.num_key_value_heads, 32);
        assert_eq!(c.text.head_dim, 128);
        assert_eq!(c.text.rope_theta, 10000.0);
        assert_eq!(c.text.rope_scaling, RopeScaling::None);
        assert_eq!(c.vision_layers_used, 23);
        assert_eq!(c.image_tokens_per_image(), 576);
        assert!(c.vision.quick_gelu);
        assert_eq!(c.text.eos_token_ids, vec![2]);
    }

    #[test]
    fn unsupported_values_are_named() {
        let bad = HUB_7B.replace(
            r#""rms_norm_eps":1e-05"#,
            r#""rms_norm_eps":1e-05,"rope_scaling":{"type":"yarn","factor":2.0}"#,
        );
        let err = LlavaConfig::from_json(&bad).unwrap_err().to_string();
        assert!(
            err.contains("yarn") && err.contains("rope_scaling"),
            "{err}"
        );
        let bad = HUB_7B.replace(
            r#""vision_feature_select_strategy":"default""#,
            r#""vision_feature_select_strategy":"pool""#,
        );
        let err = format!("{:#}", LlavaConfig::from_json(&bad).unwrap_err());
        assert!(err.contains("pool"), "{err}");
        let bad = HUB_7B.replace(
            r#""vision_feature_layer":-2"#,
            r#""vision_feature_layer":[-2,-5]"#,
        );
        let err = format!("{:#}", LlavaConfig::from_json(&bad).unwrap_err());
        assert!(err.contains("vision_feature_layer"), "{err}");
    }
}

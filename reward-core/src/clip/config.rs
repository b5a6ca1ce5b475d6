//! CLIP configuration: a serde mirror of HF `config.json` and the checked
//! runtime config built from it.
//!
//! Mirrors `transformers/models/clip/configuration_clip.py` (CLIPConfig,
//! CLIPTextConfig, CLIPVisionConfig): same key names, same defaults. The
//! serde structs accept any HF CLIP config; [`ClipConfig::from_json`] then
//! refuses what this crate cannot run, naming the key.

use alloc::format;
use alloc::string::{String, ToString};
use serde::Deserialize;

use super::error::ClipError;

/// The activation of the MLP blocks (`hidden_act` in HF configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `quick_gelu`: `x * sigmoid(1.702 x)` (OpenAI CLIP).
    QuickGelu,
    /// `gelu`: the exact erf form.
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
}

impl Activation {
    /// Parses an HF `hidden_act` string; `key` names the config key for the error.
    fn parse(name: &str, key: &str) -> Result<Self, ClipError> {
        match name {
            "quick_gelu" => Ok(Self::QuickGelu),
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Self::GeluTanh),
            other => Err(ClipError::config(
                key,
                format!(
                    "hidden_act {other:?} is not supported (quick_gelu, gelu, gelu_new, gelu_pytorch_tanh are)"
                ),
            )),
        }
    }
}

/// How the text tower picks the pooled token; mirrors
/// `CLIPTextTransformer.forward` in transformers 5.x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextPooling {
    /// Legacy configs (`eos_token_id == 2`): the position of the largest
    /// token id, which is `<|endoftext|>` in CLIP's vocabulary.
    ArgMaxId,
    /// The first position holding this id, or position 0 when absent
    /// (`(input_ids == eos_token_id).int().argmax(-1)`).
    FirstId(u32),
}

/// The checked text tower config (`text_config`), fields named as HF keys.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    /// Token vocabulary size.
    pub vocab_size: usize,
    /// Width of the transformer.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads.
    pub num_attention_heads: usize,
    /// The context window (77 for CLIP).
    pub max_position_embeddings: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// `eos_token_id`, which decides [`TextConfig::pooling`].
    pub eos_token_id: i64,
}

impl TextConfig {
    /// The pooling rule transformers applies for this `eos_token_id`.
    pub fn pooling(&self) -> TextPooling {
        // transformers: `if self.eos_token_id == 2:` -> argmax of input ids (legacy configs).
        if self.eos_token_id == 2 {
            TextPooling::ArgMaxId
        } else {
            // An id outside u32 can never occur in the input, so it pools at position 0,
            // as `(input_ids == eos).argmax()` does on an all-false row.
            TextPooling::FirstId(u32::try_from(self.eos_token_id).unwrap_or(u32::MAX))
        }
    }
}

/// The checked vision tower config (`vision_config`), fields named as HF keys.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    /// Width of the transformer.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads.
    pub num_attention_heads: usize,
    /// Number of input channels (3).
    pub num_channels: usize,
    /// Input side length in pixels (224 or 336).
    pub image_size: usize,
    /// Patch side length in pixels.
    pub patch_size: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
}

impl VisionConfig {
    /// Patches per side: the patch convolution floors like PyTorch's `Conv2d`.
    pub fn patches_per_side(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Tokens per image: the class token plus one per patch.
    pub fn num_positions(&self) -> usize {
        self.patches_per_side() * self.patches_per_side() + 1
    }
}

/// The checked CLIP config.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    /// The text tower.
    pub text_config: TextConfig,
    /// The image tower.
    pub vision_config: VisionConfig,
    /// Width of the shared embedding space.
    pub projection_dim: usize,
    /// `logit_scale_init_value` (informative: the weight `logit_scale` is what is used).
    pub logit_scale_init_value: f64,
}

impl ClipConfig {
    /// Parses and checks an HF CLIP `config.json`; `file` names it in errors.
    pub fn from_json(bytes: &[u8], file: &str) -> Result<Self, ClipError> {
        let json_err = |e: serde_json::Error| ClipError::Json {
            file: file.to_string(),
            message: e.to_string(),
        };
        let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(json_err)?;
        if !value.is_object() {
            let message = "expected a JSON object at the top level".to_string();
            return Err(ClipError::Json {
                file: file.to_string(),
                message,
            });
        }
        merge_legacy_dicts(&mut value);
        let raw: HfClipConfig = serde_json::from_value(value).map_err(json_err)?;
        raw.check()
    }

    /// Input side length of the image tower.
    pub fn image_size(&self) -> usize {
        self.vision_config.image_size
    }

    /// Width of the shared embedding space.
    pub fn projection_dim(&self) -> usize {
        self.projection_dim
    }

    /// A canonical text form of every field, fed to the model hash.
    pub(crate) fn canonical(&self) -> String {
        format!("{self:?}")
    }

    /// `openai/clip-vit-large-patch14-336` (the FiSAO paper's verifier):
    /// mirrors that checkpoint's `config.json`.
    pub fn clip_vit_large_patch14_336() -> Self {
        Self {
            text_config: text_preset(768, 12),
            vision_config: vision_preset(1024, 24, 16, 336, 14),
            projection_dim: 768,
            logit_scale_init_value: 2.6592,
        }
    }

    /// `openai/clip-vit-base-patch32`: mirrors that checkpoint's `config.json`.
    pub fn clip_vit_base_patch32() -> Self {
        Self {
            text_config: text_preset(512, 8),
            vision_config: vision_preset(768, 12, 12, 224, 32),
            projection_dim: 512,
            logit_scale_init_value: 2.6592,
        }
    }
}

/// The text tower of the OpenAI checkpoints (12 layers, 77 tokens).
fn text_preset(hidden_size: usize, heads: usize) -> TextConfig {
    TextConfig {
        vocab_size: 49408,
        hidden_size,
        intermediate_size: 4 * hidden_size,
        num_hidden_layers: 12,
        num_attention_heads: heads,
        max_position_embeddings: 77,
        hidden_act: Activation::QuickGelu,
        layer_norm_eps: 1e-5,
        eos_token_id: 49407,
    }
}

/// The vision tower of the OpenAI checkpoints.
fn vision_preset(
    hidden: usize,
    layers: usize,
    heads: usize,
    image: usize,
    patch: usize,
) -> VisionConfig {
    VisionConfig {
        hidden_size: hidden,
        intermediate_size: 4 * hidden,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_channels: 3,
        image_size: image,
        patch_size: patch,
        hidden_act: Activation::QuickGelu,
        layer_norm_eps: 1e-5,
    }
}

/// Old OpenAI configs carry `text_config_dict` / `vision_config_dict` beside
/// `text_config` / `vision_config`. transformers builds a full tower config
/// from the `_dict` (defaults for absent keys) and lets every one of its
/// values win (`configuration_clip.py`, `CLIPConfig.__post_init__`), so the
/// `_dict` replaces the tower config outright.
fn merge_legacy_dicts(value: &mut serde_json::Value) {
    let Some(obj) = value.as_object_mut() else {
        return;
    };
    for tower in ["text_config", "vision_config"] {
        if let Some(legacy @ serde_json::Value::Object(_)) = obj.remove(&format!("{tower}_dict")) {
            obj.insert(tower.to_string(), legacy);
        }
    }
}

/// `config.json` of a `CLIPModel`, as HF writes it. Unknown keys are ignored.
#[derive(Deserialize)]
struct HfClipConfig {
    #[serde(default)]
    text_config: HfTextConfig,
    #[serde(default)]
    vision_config: HfVisionConfig,
    #[serde(default = "default_projection_dim")]
    projection_dim: usize,
    #[serde(default = "default_logit_scale")]
    logit_scale_init_value: f64,
}

/// `text_config`, with CLIPTextConfig's defaults.
#[derive(Deserialize)]
#[serde(default)]
struct HfTextConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    hidden_act: String,
    layer_norm_eps: f64,
    /// An int in practice; transformers 5 also types it `list[int] | None`.
    eos_token_id: serde_json::Value,
}

impl Default for HfTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".to_string(),
            layer_norm_eps: 1e-5,
            eos_token_id: serde_json::Value::from(49407),
        }
    }
}

/// `vision_config`, with CLIPVisionConfig's defaults.
#[derive(Deserialize)]
#[serde(default)]
struct HfVisionConfig {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_channels: usize,
    image_size: usize,
    patch_size: usize,
    hidden_act: String,
    layer_norm_eps: f64,
}

impl Default for HfVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: "quick_gelu".to_string(),
            layer_norm_eps: 1e-5,
        }
    }
}

fn default_projection_dim() -> usize {
    512
}

fn default_logit_scale() -> f64 {
    2.6592
}

impl HfClipConfig {
    fn check(self) -> Result<ClipConfig, ClipError> {
        positive("projection_dim", self.projection_dim)?;
        Ok(ClipConfig {
            text_config: self.text_config.check()?,
            vision_config: self.vision_config.check()?,
            projection_dim: self.projection_dim,
            logit_scale_init_value: self.logit_scale_init_value,
        })
    }
}

impl HfTextConfig {
    fn check(self) -> Result<TextConfig, ClipError> {
        let key = |k: &str| format!("text_config.{k}");
        positive(&key("vocab_size"), self.vocab_size)?;
        positive(&key("intermediate_size"), self.intermediate_size)?;
        positive(
            &key("max_position_embeddings"),
            self.max_position_embeddings,
        )?;
        heads(
            &key("num_attention_heads"),
            self.hidden_size,
            self.num_attention_heads,
        )?;
        eps(&key("layer_norm_eps"), self.layer_norm_eps)?;
        if self.max_position_embeddings < 2 {
            // The tokenizer always adds <|startoftext|> and <|endoftext|>.
            return Err(ClipError::config(
                key("max_position_embeddings"),
                "must be at least 2",
            ));
        }
        let eos_token_id = self.eos_token_id.as_i64().ok_or_else(|| {
            let msg = format!(
                "eos_token_id must be one integer, found {}",
                self.eos_token_id
            );
            ClipError::config(key("eos_token_id"), msg)
        })?;
        Ok(TextConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            max_position_embeddings: self.max_position_embeddings,
            hidden_act: Activation::parse(&self.hidden_act, &key("hidden_act"))?,
            layer_norm_eps: self.layer_norm_eps,
            eos_token_id,
        })
    }
}

impl HfVisionConfig {
    fn check(self) -> Result<VisionConfig, ClipError> {
        let key = |k: &str| format!("vision_config.{k}");
        positive(&key("intermediate_size"), self.intermediate_size)?;
        positive(&key("num_channels"), self.num_channels)?;
        positive(&key("patch_size"), self.patch_size)?;
        heads(
            &key("num_attention_heads"),
            self.hidden_size,
            self.num_attention_heads,
        )?;
        eps(&key("layer_norm_eps"), self.layer_norm_eps)?;
        if self.image_size < self.patch_size {
            let msg = format!(
                "image_size {} is smaller than patch_size {}",
                self.image_size, self.patch_size
            );
            return Err(ClipError::config(key("image_size"), msg));
        }
        Ok(VisionConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_channels: self.num_channels,
            image_size: self.image_size,
            patch_size: self.patch_size,
            hidden_act: Activation::parse(&self.hidden_act, &key("hidden_act"))?,
            layer_norm_eps: self.layer_norm_eps,
        })
    }
}

fn positive(key: &str, value: usize) -> Result<(), ClipError> {
    if value == 0 {
        return Err(ClipError::config(key, "must be positive"));
    }
    Ok(())
}

fn heads(key: &str, hidden: usize, heads: usize) -> Result<(), ClipError> {
    positive(key, heads)?;
    if hidden == 0 || hidden % heads != 0 {
        let msg = format!("hidden_size {hidden} is not a positive multiple of {heads} heads");
        return Err(ClipError::config(key, msg));
    }
    Ok(())
}

fn eps(key: &str, value: f64) -> Result<(), ClipError> {
    if !(value > 0.0 && value.is_finite()) {
        return Err(ClipError::config(
            key,
            format!("must be a positive number, found {value}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_clip_vit_base_patch32() {
        let cfg = ClipConfig::from_json(b"{}", "config.json").unwrap();
        assert_eq!(cfg, ClipConfig::clip_vit_base_patch32());
        assert_eq!(cfg.vision_config.num_positions(), 50);
    }

    #[test]
    fn legacy_dicts_replace_the_tower_configs() {
        // As transformers does: the `_dict` (with defaults) wins over `text_config`,
        // including keys it does not name (eos_token_id goes back to 49407).
        let json = br#"{
            "projection_dim": 768,
            "text_config": {"hidden_size": 1, "eos_token_id": 2, "num_attention_heads": 1},
            "text_config_dict": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12},
            "vision_config_dict": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                                    "num_hidden_layers": 24, "image_size": 336, "patch_size": 14}
        }"#;
        let cfg = ClipConfig::from_json(json, "config.json").unwrap();
        assert_eq!(cfg, ClipConfig::clip_vit_large_patch14_336());
        assert_eq!(cfg.text_config.pooling(), TextPooling::FirstId(49407));
        assert_eq!(cfg.vision_config.num_positions(), 577);
    }

    #[test]
    fn legacy_eos_pools_at_argmax() {
        let cfg = ClipConfig::from_json(br#"{"text_config": {"eos_token_id": 2}}"#, "c").unwrap();
        assert_eq!(cfg.text_config.pooling(), TextPooling::ArgMaxId);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: [(&[u8], &str); 5] = [
            (
                br#"{"vision_config": {"hidden_act": "relu"}}"#,
                "vision_config.hidden_act",
            ),
            (
                br#"{"text_config": {"num_attention_heads": 7}}"#,
                "text_config.num_attention_heads",
            ),
            (
                br#"{"vision_config": {"image_size": 8, "patch_size": 14}}"#,
                "vision_config.image_size",
            ),
            (
                br#"{"text_config": {"layer_norm_eps": 0.0}}"#,
                "text_config.layer_norm_eps",
            ),
            (
                br#"{"text_config": {"eos_token_id": null}}"#,
                "text_config.eos_token_id",
            ),
        ];
        for (json, key) in cases {
            let err = ClipConfig::from_json(json, "config.json").unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
        let err =
            ClipConfig::from_json(br#"{"projection_dim": "big"}"#, "my/config.json").unwrap_err();
        assert!(err.to_string().contains("my/config.json"), "{err}");
    }
}

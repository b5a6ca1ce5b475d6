//! Writing a [`LlavaModel`] as a HuggingFace checkpoint, mirroring what
//! transformers 5's `LlavaForConditionalGeneration.save_pretrained` writes:
//! `config.json` (`LlavaConfig` with a `llama` text config and a
//! `clip_vision_model` vision config), `generation_config.json` and one
//! `model.safetensors` with the transformers-5 keys (`model.language_model.*`,
//! `model.vision_tower.vision_model.*`, `model.multi_modal_projector.*`,
//! `lm_head.weight`).
//!
//! The model only holds the vision layers its `vision_feature_layer` needs
//! (no last layer, no `post_layernorm` for LLaVA-1.5's layer -2), but
//! transformers builds the whole `CLIPVisionModel` and reports missing keys,
//! so the rest of the tower is copied from the CLIP checkpoint the tower came
//! from (`vision_source`, keys `vision_model.*` or LLaVA's own), after checking
//! that the layers the model has are that checkpoint's.
//! Every file is written to a temporary name and renamed into place.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};

use super::config::{LlavaConfig, RopeScaling};
use super::model::LlavaModel;
use super::peft::write_safetensors;
use super::weights::Checkpoint;

/// Writes `model` (its base weights; LoRA adapters and the value head are saved
/// by [`super::save_adapter`]) to `dir` as a transformers-loadable LLaVA checkpoint.
///
/// `vision_source` is the CLIP checkpoint the vision tower was copied from; it
/// supplies the vision layers the model does not run and `post_layernorm`. With
/// `None`, those unused parts are written as identity layers (zero output
/// projections, unit `post_layernorm`): LLaVA's outputs do not depend on them,
/// but the saved tower's own last layer is then not the original one.
pub fn save_pretrained(model: &LlavaModel, vision_source: Option<&Path>, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    for (name, t) in model.base_vs().variables() {
        tensors.insert(hf_key(&name)?, t.detach().to_device(Device::Cpu));
    }
    complete_vision_tower(&model.config, &mut tensors, vision_source)?;
    let list: Vec<(String, Tensor)> = tensors.into_iter().collect();
    let weights = dir.join("model.safetensors");
    let tmp = dir.join(format!(".model.safetensors.tmp{}", std::process::id()));
    write_safetensors(&list, &tmp)?;
    std::fs::rename(&tmp, &weights)
        .with_context(|| format!("renaming {} to {}", tmp.display(), weights.display()))?;
    let generation = generation_config(&model.config);
    write_json(&dir.join("generation_config.json"), &generation)?;
    // config.json last: a directory with a new config always has its weights.
    write_json(&dir.join("config.json"), &hf_config(&model.config))
}

/// The transformers-5 key of a canonical weight name.
fn hf_key(canonical: &str) -> Result<String> {
    let key = if let Some(rest) = canonical.strip_prefix("vision_tower.") {
        format!("model.vision_tower.vision_model.{rest}")
    } else if canonical.starts_with("language_model.")
        || canonical.starts_with("multi_modal_projector.")
    {
        format!("model.{canonical}")
    } else if canonical == "lm_head.weight" {
        canonical.to_string()
    } else {
        bail!("no HF LLaVA key for weight {canonical}");
    };
    Ok(key)
}

/// Adds the vision layers from `layers_used` on and `post_layernorm`.
fn complete_vision_tower(
    cfg: &LlavaConfig,
    tensors: &mut BTreeMap<String, Tensor>,
    source: Option<&Path>,
) -> Result<()> {
    let v = &cfg.vision;
    let (h, i) = (v.hidden_size, v.intermediate_size);
    let prefix = "model.vision_tower.vision_model.";
    let mut wanted: Vec<(String, Vec<i64>)> = Vec::new();
    for l in cfg.vision_layers_used..v.num_hidden_layers {
        let p = format!("encoder.layers.{l}.");
        for (name, shape) in [
            ("layer_norm1.weight", vec![h]),
            ("layer_norm1.bias", vec![h]),
            ("layer_norm2.weight", vec![h]),
            ("layer_norm2.bias", vec![h]),
            ("self_attn.q_proj.weight", vec![h, h]),
            ("self_attn.q_proj.bias", vec![h]),
            ("self_attn.k_proj.weight", vec![h, h]),
            ("self_attn.k_proj.bias", vec![h]),
            ("self_attn.v_proj.weight", vec![h, h]),
            ("self_attn.v_proj.bias", vec![h]),
            ("self_attn.out_proj.weight", vec![h, h]),
            ("self_attn.out_proj.bias", vec![h]),
            ("mlp.fc1.weight", vec![i, h]),
            ("mlp.fc1.bias", vec![i]),
            ("mlp.fc2.weight", vec![h, i]),
            ("mlp.fc2.bias", vec![h]),
        ] {
            wanted.push((format!("{p}{name}"), shape));
        }
    }
    wanted.push(("post_layernorm.weight".into(), vec![h]));
    wanted.push(("post_layernorm.bias".into(), vec![h]));
    match source {
        Some(src) => {
            let ck = Checkpoint::open(src)?;
            check_same_tower(&ck, tensors, src)?;
            for (name, shape) in wanted {
                let t = ck.tensor(
                    &source_key(&ck, &name, src)?,
                    &shape,
                    Kind::Float,
                    Device::Cpu,
                )?;
                tensors.insert(format!("{prefix}{name}"), t);
            }
        }
        None => {
            for (name, shape) in wanted {
                // LayerNorm scales 1, everything else 0: each residual layer is the identity.
                let one = name.ends_with("norm1.weight")
                    || name.ends_with("norm2.weight")
                    || name == "post_layernorm.weight";
                let t = if one {
                    Tensor::ones(shape.as_slice(), (Kind::Float, Device::Cpu))
                } else {
                    Tensor::zeros(shape.as_slice(), (Kind::Float, Device::Cpu))
                };
                tensors.insert(format!("{prefix}{name}"), t);
            }
        }
    }
    Ok(())
}

/// The source's name of vision weight `name`: a CLIP checkpoint (`vision_model.X`)
/// or a LLaVA one (canonical `vision_tower.X`).
fn source_key(ck: &Checkpoint, name: &str, src: &Path) -> Result<String> {
    for key in [
        format!("vision_model.{name}"),
        format!("vision_tower.{name}"),
    ] {
        if ck.contains(&key) {
            return Ok(key);
        }
    }
    bail!(
        "vision source {} has no vision_model.{name} (nor vision_tower.{name})",
        src.display()
    )
}

/// The vision weights the model has must be the source's: otherwise the saved
/// tower would mix two different models.
fn check_same_tower(ck: &Checkpoint, tensors: &BTreeMap<String, Tensor>, src: &Path) -> Result<()> {
    for (key, t) in tensors {
        let Some(name) = key.strip_prefix("model.vision_tower.vision_model.") else {
            continue;
        };
        let theirs = ck.tensor(
            &source_key(ck, name, src)?,
            &t.size(),
            Kind::Float,
            Device::Cpu,
        )?;
        let diff = (t.to_kind(Kind::Float) - &theirs)
            .abs()
            .max()
            .double_value(&[]);
        // The model may hold the tower in a lower precision than the source.
        let tol = if t.kind() == Kind::Float { 0.0 } else { 1e-2 };
        if diff > tol {
            bail!(
                "vision source {} does not hold this model's vision tower: {name} differs by {diff}",
                src.display()
            );
        }
    }
    Ok(())
}

/// `config.json` of transformers' `LlavaConfig`.
pub fn hf_config(c: &LlavaConfig) -> Value {
    let (t, v) = (&c.text, &c.vision);
    let mut rope = json!({"rope_type": "default", "rope_theta": t.rope_theta});
    match &t.rope_scaling {
        RopeScaling::None => {}
        RopeScaling::Linear { factor } => {
            rope = json!({"rope_type": "linear", "rope_theta": t.rope_theta, "factor": factor});
        }
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            rope = json!({"rope_type": "llama3", "rope_theta": t.rope_theta, "factor": factor,
                "low_freq_factor": low_freq_factor, "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings});
        }
    }
    let eos: Value = match t.eos_token_ids.as_slice() {
        [] => Value::Null,
        [one] => json!(one),
        many => json!(many),
    };
    // hidden_states[k] is the output of k layers; LLaVA counts negative indices from n + 1.
    let feature_layer = c.vision_layers_used - (v.num_hidden_layers + 1);
    json!({
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "image_token_index": c.image_token_id,
        "image_seq_length": c.image_tokens_per_image(),
        "projector_hidden_act": "gelu",
        "multimodal_projector_bias": c.projector_bias,
        "vision_feature_layer": feature_layer,
        "vision_feature_select_strategy": if c.drop_cls { "default" } else { "full" },
        "tie_word_embeddings": t.tie_word_embeddings,
        "text_config": {
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "vocab_size": t.vocab_size,
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads,
            "num_key_value_heads": t.num_key_value_heads,
            "head_dim": t.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": t.max_position_embeddings,
            "rms_norm_eps": t.rms_norm_eps,
            "rope_parameters": rope,
            "attention_bias": false,
            "attention_dropout": 0.0,
            "mlp_bias": false,
            "tie_word_embeddings": t.tie_word_embeddings,
            "bos_token_id": t.bos_token_id,
            "eos_token_id": eos,
            "pad_token_id": t.pad_token_id,
            "initializer_range": t.initializer_range,
        },
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": v.hidden_size,
            "intermediate_size": v.intermediate_size,
            "num_hidden_layers": v.num_hidden_layers,
            "num_attention_heads": v.num_attention_heads,
            "image_size": v.image_size,
            "patch_size": v.patch_size,
            "num_channels": v.num_channels,
            "layer_norm_eps": v.layer_norm_eps,
            "hidden_act": if v.quick_gelu { "quick_gelu" } else { "gelu" },
            "attention_dropout": 0.0,
        },
    })
}

fn generation_config(c: &LlavaConfig) -> Value {
    let t = &c.text;
    let eos: Value = match t.eos_token_ids.as_slice() {
        [one] => json!(one),
        many => json!(many),
    };
    json!({"bos_token_id": t.bos_token_id, "eos_token_id": eos, "pad_token_id": t.pad_token_id})
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        std::process::id()
    ));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

//! LoRA adapters in PEFT's on-disk format (`peft/utils/save_and_load.py`):
//! `adapter_config.json` and `adapter_model.safetensors` with keys like
//! `base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight`
//! (the module names of transformers 5's `LlavaForConditionalGeneration`; the hub
//! layout's `base_model.model.language_model.model.layers...` is read too).
//! The value head is not part of PEFT; it goes to `value_head.safetensors` beside.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result, bail};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};

use super::lora::{LoraConfig, LoraTarget};
use super::model::{LlavaModel, LoadOptions};
use super::weights::canonical_name;

const PEFT_PREFIX: &str = "base_model.model.";

/// Reads an `adapter_config.json` into a [`LoraConfig`], refusing what this port does not do.
pub fn read_adapter_config(dir: &Path) -> Result<LoraConfig> {
    let path = dir.join("adapter_config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let get = |k: &str| v.get(k).filter(|x| !x.is_null());
    let here = || format!("in {}", path.display());
    if get("peft_type").and_then(Value::as_str) != Some("LORA") {
        bail!("peft_type must be \"LORA\" {}", here());
    }
    for flag in ["use_dora", "fan_in_fan_out", "lora_bias"] {
        if get(flag).and_then(Value::as_bool) == Some(true) {
            bail!("unsupported {flag} = true {}", here());
        }
    }
    for pat in ["rank_pattern", "alpha_pattern"] {
        if get(pat)
            .and_then(Value::as_object)
            .is_some_and(|o| !o.is_empty())
        {
            bail!("unsupported non-empty {pat} {}", here());
        }
    }
    if get("bias")
        .and_then(Value::as_str)
        .is_some_and(|b| b != "none")
    {
        bail!(
            "unsupported bias {:?} (only \"none\") {}",
            get("bias"),
            here()
        );
    }
    if get("modules_to_save")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        bail!("unsupported modules_to_save {}", here());
    }
    let r = get("r")
        .and_then(Value::as_i64)
        .with_context(|| format!("no integer r {}", here()))?;
    let alpha = get("lora_alpha")
        .and_then(Value::as_f64)
        .with_context(|| format!("no lora_alpha {}", here()))?;
    let target = match get("target_modules") {
        Some(Value::String(s)) => LoraTarget::Regex(s.clone()),
        Some(Value::Array(a)) => LoraTarget::Names(
            a.iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .context("target_modules holds a non-string")
                })
                .collect::<Result<_>>()?,
        ),
        other => bail!("unsupported target_modules {other:?} {}", here()),
    };
    Ok(LoraConfig {
        r,
        alpha,
        dropout: get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0),
        target,
        use_rslora: get("use_rslora").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// Loads a base checkpoint and a PEFT adapter onto it.
pub fn load_with_adapter(
    base_dir: &Path,
    adapter_dir: &Path,
    opts: &LoadOptions,
) -> Result<LlavaModel> {
    let mut opts = opts.clone();
    opts.lora = Some(read_adapter_config(adapter_dir)?);
    let model = LlavaModel::load(base_dir, &opts)?;
    load_adapter_weights(&model, adapter_dir)?;
    Ok(model)
}

/// Copies `adapter_model.safetensors` into the model's LoRA variables; every file
/// tensor must match one variable and every variable must be covered.
pub fn load_adapter_weights(model: &LlavaModel, dir: &Path) -> Result<()> {
    let path = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let st =
        SafeTensors::deserialize(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    let mut vars: HashMap<String, Tensor> = model
        .trainable_vs()
        .variables()
        .into_iter()
        .filter(|(k, _)| k.contains(".lora_"))
        .collect();
    for (key, view) in st.tensors() {
        let rest = key
            .strip_prefix(PEFT_PREFIX)
            .with_context(|| format!("{key}: not a PEFT key ({})", path.display()))?;
        let name = canonical_name(&rest.replace(".default.", "."));
        let Some(mut var) = vars.remove(&name) else {
            bail!(
                "{key} in {}: this model has no LoRA weight {name} (only language-model linear layers take adapters)",
                path.display()
            );
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        if shape != var.size() {
            bail!(
                "{key}: expected shape {:?}, found {shape:?} (in {})",
                var.size(),
                path.display()
            );
        }
        let kind = match view.dtype() {
            Dtype::F32 => Kind::Float,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::F16 => Kind::Half,
            d => bail!("{key}: unsupported dtype {d:?}"),
        };
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        tch::no_grad(|| var.copy_(&t.to_device(var.device()).to_kind(var.kind())));
    }
    if let Some(missing) = vars.keys().min() {
        bail!(
            "{} has no weight for {missing} ({} missing)",
            path.display(),
            vars.len()
        );
    }
    Ok(())
}

/// Writes the model's adapters in PEFT format (and its value head, if any) into `dir`.
pub fn save_adapter(model: &LlavaModel, dir: &Path) -> Result<()> {
    let cfg = model
        .lora_config()
        .context("the model has no LoRA adapters to save")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let vars: BTreeMap<String, Tensor> = model.trainable_vs().variables().into_iter().collect();
    let lora: Vec<(String, Tensor)> = vars
        .iter()
        .filter(|(k, _)| k.contains(".lora_"))
        .map(|(k, t)| (format!("{PEFT_PREFIX}model.{k}"), t.shallow_clone()))
        .collect();
    write_safetensors(&lora, &dir.join("adapter_model.safetensors"))?;
    let head: Vec<(String, Tensor)> = vars
        .iter()
        .filter(|(k, _)| k.starts_with("value_head."))
        .map(|(k, t)| (k.clone(), t.shallow_clone()))
        .collect();
    if !head.is_empty() {
        write_safetensors(&head, &dir.join("value_head.safetensors"))?;
    }
    let target = match &cfg.target {
        LoraTarget::Regex(s) => json!(s),
        LoraTarget::Names(n) => json!(n),
    };
    let doc = json!({
        "peft_type": "LORA", "task_type": null, "base_model_name_or_path": null, "inference_mode": true,
        "r": cfg.r, "lora_alpha": cfg.alpha, "lora_dropout": cfg.dropout, "target_modules": target,
        "use_rslora": cfg.use_rslora, "use_dora": false, "bias": "none", "fan_in_fan_out": false,
        "init_lora_weights": true, "modules_to_save": null, "rank_pattern": {}, "alpha_pattern": {},
        "layers_to_transform": null, "layers_pattern": null,
    });
    let path = dir.join("adapter_config.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// Loads `value_head.safetensors` from an adapter folder into the model's value head.
pub fn load_value_head(model: &LlavaModel, dir: &Path) -> Result<()> {
    let path = dir.join("value_head.safetensors");
    let vars = model.trainable_vs().variables();
    for (name, t) in
        Tensor::read_safetensors(&path).with_context(|| format!("reading {}", path.display()))?
    {
        let mut var = vars
            .get(&name)
            .with_context(|| {
                format!(
                    "{name} in {}: the model has no such value-head weight",
                    path.display()
                )
            })?
            .shallow_clone();
        if var.size() != t.size() {
            bail!(
                "{name}: expected shape {:?}, found {:?}",
                var.size(),
                t.size()
            );
        }
        tch::no_grad(|| var.copy_(&t.to_device(var.device()).to_kind(var.kind())));
    }
    Ok(())
}

/// f32 safetensors of named tensors (copied to the CPU).
pub fn write_safetensors(tensors: &[(String, Tensor)], path: &Path) -> Result<()> {
    let host: Vec<(String, Vec<i64>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, t)| {
            let t = t
                .detach()
                .to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .contiguous();
            let n = t.numel();
            let mut buf = vec![0u8; n * 4];
            t.copy_data_u8(&mut buf, n);
            (k.clone(), t.size(), buf)
        })
        .collect();
    let views = host
        .iter()
        .map(|(k, s, b)| {
            let shape: Vec<usize> = s.iter().map(|&d| d as usize).collect();
            Ok((k.as_str(), TensorView::new(Dtype::F32, shape, b)?))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, path)
        .with_context(|| format!("writing {}", path.display()))
}

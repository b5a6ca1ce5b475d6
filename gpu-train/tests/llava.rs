//! LLaVA parity with transformers 5.23 / PEFT 0.21.2 on the tiny random
//! checkpoints of tests/fixtures/gen_llava.py (f32, CPU), and bad-input errors.

use std::path::{Path, PathBuf};

use gpu_train::llava::{
    self, Batch, LlavaModel, LlavaTokenizer, LoadOptions, LoraConfig, LoraTarget, Message,
    PaddingSide, Role, SamplingConfig,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/llava")
}

fn cpu() -> LoadOptions {
    LoadOptions::for_device(Device::Cpu)
}

struct Golden {
    json: Value,
    tensors: Vec<(String, Tensor)>,
}

impl Golden {
    fn read(variant: &str) -> Golden {
        let dir = fixtures().join(variant);
        let json = serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap())
            .unwrap();
        let tensors = Tensor::read_safetensors(dir.join("golden.safetensors")).unwrap();
        Golden { json, tensors }
    }
    fn tensor(&self, name: &str) -> Tensor {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .1
            .shallow_clone()
    }
    fn ids(&self, i: usize) -> Vec<i64> {
        ids_of(&self.json["prompts"][i]["input_ids"])
    }
    fn n_prompts(&self) -> usize {
        self.json["prompts"].as_array().unwrap().len()
    }
    fn pixels(&self, i: usize) -> Tensor {
        self.tensor("pixel_values").narrow(0, i as i64, 1)
    }
}

fn ids_of(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Float) - b.to_kind(Kind::Float))
        .abs()
        .max()
        .double_value(&[])
}

fn logits_of(model: &LlavaModel, ids: &[i64], pixels: &Tensor) -> Tensor {
    let ids = Tensor::from_slice(ids).unsqueeze(0);
    let batch = Batch {
        input_ids: &ids,
        attention_mask: None,
        pixel_values: Some(pixels),
    };
    model.forward(&batch, false).unwrap().logits.squeeze_dim(0)
}

fn check_logits(variant: &str) {
    let model = LlavaModel::load(&fixtures().join(variant), &cpu()).unwrap();
    let g = Golden::read(variant);
    for i in 0..g.n_prompts() {
        let d = max_diff(
            &logits_of(&model, &g.ids(i), &g.pixels(i)),
            &g.tensor(&format!("logits_{i}")),
        );
        assert!(d < 1e-4, "{variant} prompt {i}: max |logit diff| {d}");
    }
}

#[test]
fn logits_match_transformers_new_layout() {
    check_logits("tiny-new");
}

#[test]
fn logits_match_transformers_hub_layout_sharded() {
    check_logits("tiny-old");
}

#[test]
fn chat_template_and_image_expansion_match_the_processor() {
    let g = Golden::read("tiny-new");
    let cfg = llava::LlavaConfig::from_file(&fixtures().join("tiny-new/config.json")).unwrap();
    let tok = LlavaTokenizer::from_file(
        &fixtures().join("tokenizer.json"),
        cfg.image_token_id,
        cfg.image_tokens_per_image() as usize,
    )
    .unwrap();
    for i in 0..g.n_prompts() {
        let p = &g.json["prompts"][i];
        let msgs: Vec<Message> = p["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let role = if m["role"] == "user" {
                    Role::User
                } else {
                    Role::Assistant
                };
                let content = m["content"].as_array().unwrap();
                let images = content.iter().filter(|c| c["type"] == "image").count();
                let text = content
                    .iter()
                    .filter_map(|c| c["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("");
                Message { role, images, text }
            })
            .collect();
        assert_eq!(llava::render_chat(&msgs, true), p["text"].as_str().unwrap());
        assert_eq!(
            tok.encode_chat(&msgs, true).unwrap(),
            g.ids(i),
            "prompt {i}"
        );
        assert_eq!(
            tok.decode(&g.ids(i)).unwrap(),
            p["decoded"].as_str().unwrap()
        );
        let greedy = ids_of(&g.json["greedy_single"][i]);
        assert_eq!(
            tok.decode(&greedy).unwrap(),
            p["greedy_decoded"].as_str().unwrap()
        );
    }
}

fn check_greedy(variant: &str) {
    let model = LlavaModel::load(&fixtures().join(variant), &cpu()).unwrap();
    let g = Golden::read(variant);
    let cfg = SamplingConfig::greedy(&model, 16);
    for i in 0..g.n_prompts() {
        let out = llava::generate(&model, &[g.ids(i)], Some(&g.pixels(i)), &cfg).unwrap();
        assert_eq!(
            out[0],
            ids_of(&g.json["greedy_single"][i]),
            "{variant} prompt {i}"
        );
    }
    let prompts: Vec<Vec<i64>> = (0..g.n_prompts()).map(|i| g.ids(i)).collect();
    let out = llava::generate(&model, &prompts, Some(&g.tensor("pixel_values")), &cfg).unwrap();
    for (i, row) in out.iter().enumerate() {
        assert_eq!(
            row,
            &ids_of(&g.json["greedy_left_padded_batch"][i]),
            "{variant} batch row {i}"
        );
    }
}

#[test]
fn greedy_generation_matches_transformers() {
    check_greedy("tiny-new");
    check_greedy("tiny-old");
}

#[test]
fn response_logprobs_match_transformers() {
    let model = LlavaModel::load(&fixtures().join("tiny-old"), &cpu()).unwrap();
    let g = Golden::read("tiny-old");
    for i in 0..g.n_prompts() {
        let (p, r) = (g.ids(i), ids_of(&g.json["greedy_single"][i]));
        let ids = Tensor::from_slice(&[p.clone(), r.clone()].concat()).unsqueeze(0);
        let batch = Batch {
            input_ids: &ids,
            attention_mask: None,
            pixel_values: Some(&g.pixels(i)),
        };
        let (lp, values) = model.token_logprobs(&batch, false).unwrap();
        assert!(values.is_none());
        let ours = lp
            .squeeze_dim(0)
            .narrow(0, p.len() as i64 - 1, r.len() as i64);
        let d = max_diff(&ours, &g.tensor(&format!("response_logprobs_{i}")));
        assert!(d < 1e-4, "prompt {i}: {d}");
    }
}

#[test]
fn left_and_right_padding_give_unpadded_logits() {
    let model = LlavaModel::load(&fixtures().join("tiny-new"), &cpu()).unwrap();
    let g = Golden::read("tiny-new");
    let prompts: Vec<Vec<i64>> = (0..g.n_prompts()).map(|i| g.ids(i)).collect();
    let width = prompts.iter().map(Vec::len).max().unwrap() as i64;
    for side in [PaddingSide::Left, PaddingSide::Right] {
        let (ids, mask) = llava::pad_batch(&prompts, 627, side, Device::Cpu);
        let px = g.tensor("pixel_values");
        let batch = Batch {
            input_ids: &ids,
            attention_mask: Some(&mask),
            pixel_values: Some(&px),
        };
        let logits = model.forward(&batch, false).unwrap().logits;
        for (i, p) in prompts.iter().enumerate() {
            let n = p.len() as i64;
            let start = if side == PaddingSide::Left {
                width - n
            } else {
                0
            };
            let row = logits.get(i as i64).narrow(0, start, n);
            let d = max_diff(&row, &g.tensor(&format!("logits_{i}")));
            assert!(d < 1e-4, "{side:?} row {i}: {d}");
        }
    }
}

#[test]
fn lora_logits_match_peft_and_disable_gives_base() {
    let dir = fixtures().join("tiny-new");
    let model = llava::load_with_adapter(&dir, &dir.join("lora-adapter"), &cpu()).unwrap();
    let g = Golden::read("tiny-new");
    let n_lora = model
        .trainable_vs()
        .variables()
        .keys()
        .filter(|k| k.contains("lora_A"))
        .count();
    assert_eq!(n_lora as i64, g.json["lora_modules"].as_i64().unwrap());
    for i in 0..g.n_prompts() {
        let lora = logits_of(&model, &g.ids(i), &g.pixels(i));
        let d = max_diff(&lora, &g.tensor(&format!("lora_logits_{i}")));
        assert!(d < 1e-4, "LoRA prompt {i}: {d}");
        let base = model.with_adapters_disabled(|m| logits_of(m, &g.ids(i), &g.pixels(i)));
        let d = max_diff(&base, &g.tensor(&format!("logits_{i}")));
        assert!(d < 1e-4, "adapters off, prompt {i}: {d}");
        assert!(
            max_diff(&lora, &base) > 1e-2,
            "the adapter must change the logits"
        );
    }
    assert!(model.adapters_enabled());
}

const RUST_ADAPTER_TARGET: &str = r".*language_model.*\.(q_proj|v_proj|down_proj)";

/// Step 1 of the PEFT round trip (docs/llava.md): writes tests/fixtures/llava/rust-adapter/.
#[test]
#[ignore]
fn write_rust_adapter() {
    let lora = LoraConfig {
        r: 2,
        alpha: 6.0,
        dropout: 0.0,
        target: LoraTarget::Regex(RUST_ADAPTER_TARGET.into()),
        use_rslora: false,
    };
    let opts = LoadOptions {
        lora: Some(lora),
        value_head: true,
        ..cpu()
    };
    let model = LlavaModel::load(&fixtures().join("tiny-new"), &opts).unwrap();
    tch::manual_seed(7);
    tch::no_grad(|| {
        for (name, mut v) in model.trainable_vs().variables() {
            if name.contains("lora_") {
                v.copy_(&(Tensor::randn(v.size(), (Kind::Float, Device::Cpu)) * 0.3));
            }
        }
    });
    let out = fixtures().join("rust-adapter");
    llava::save_adapter(&model, &out).unwrap();
    let g = Golden::read("tiny-new");
    let logits = logits_of(&model, &g.ids(1), &g.pixels(1));
    let ids = Tensor::from_slice(&g.ids(1)).to_kind(Kind::Float);
    let named = [
        ("input_ids".to_string(), ids),
        ("pixel_values".to_string(), g.pixels(1)),
        ("logits".to_string(), logits),
    ];
    llava::write_safetensors(&named, &out.join("rust_logits.safetensors")).unwrap();
}

/// Step 2 result: PEFT reproduced the Rust logits with the Rust-written adapter, and
/// that adapter loads back in Rust with the same logits.
#[test]
fn rust_written_adapter_loads_in_peft() {
    let check: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("rust_adapter_check.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(check["ok"], true, "{check}");
    assert!(check["max_abs_diff"].as_f64().unwrap() < 1e-4);
    assert!(check["adapter_effect"].as_f64().unwrap() > 1e-3);
    let dir = fixtures().join("rust-adapter");
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let sha: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        check["adapter_sha"].as_str().unwrap(),
        sha,
        "the PEFT check is for another adapter: rerun step 2"
    );
    let cfg = llava::read_adapter_config(&dir).unwrap();
    assert_eq!((cfg.r, cfg.alpha), (2, 6.0));
    let mut opts = cpu();
    opts.value_head = true;
    let model = llava::load_with_adapter(&fixtures().join("tiny-new"), &dir, &opts).unwrap();
    llava::load_value_head(&model, &dir).unwrap();
    let saved = Tensor::read_safetensors(dir.join("rust_logits.safetensors")).unwrap();
    let get = |n: &str| {
        saved
            .iter()
            .find(|(k, _)| k == n)
            .unwrap()
            .1
            .shallow_clone()
    };
    let ids: Vec<i64> = Vec::<f32>::try_from(get("input_ids"))
        .unwrap()
        .iter()
        .map(|&x| x as i64)
        .collect();
    let d = max_diff(
        &logits_of(&model, &ids, &get("pixel_values")),
        &get("logits"),
    );
    assert!(d < 1e-5, "{d}");
    let n = model
        .trainable_vs()
        .variables()
        .keys()
        .filter(|k| k.contains("lora_A"))
        .count();
    assert_eq!(n as i64, check["lora_modules_in_file"].as_i64().unwrap());
    assert_eq!(n, 2 * 3, "2 layers x (q_proj, v_proj, down_proj)");
}

#[test]
fn trainable_store_holds_only_adapters_and_value_head() {
    let opts = LoadOptions {
        lora: Some(LoraConfig::default()),
        value_head: true,
        ..cpu()
    };
    let model = LlavaModel::load(&fixtures().join("tiny-new"), &opts).unwrap();
    let train = model.trainable_vs().variables();
    assert_eq!(
        train.len(),
        2 * 7 * 2 + 2,
        "{:?}",
        train.keys().collect::<Vec<_>>()
    );
    assert!(
        train
            .keys()
            .all(|k| k.starts_with("language_model.layers.") || k.starts_with("value_head."))
    );
    assert!(model.base_vs().trainable_variables().is_empty());
    let g = Golden::read("tiny-new");
    let ids = Tensor::from_slice(&g.ids(0)).unsqueeze(0);
    let px = g.pixels(0);
    let batch = Batch {
        input_ids: &ids,
        attention_mask: None,
        pixel_values: Some(&px),
    };
    // B starts at zero: the fresh adapter is the identity, so policy = reference.
    let base = model.with_adapters_disabled(|m| m.forward(&batch, false).unwrap().logits);
    let out = model.forward(&batch, true).unwrap();
    assert!(max_diff(&out.logits, &base) < 1e-6);
    assert_eq!(out.values.as_ref().unwrap().size(), ids.size());
    let (lp, values) = model.token_logprobs(&batch, true).unwrap();
    (lp.sum(Kind::Float) + values.unwrap().sum(Kind::Float)).backward();
    let grads: Vec<f64> = model
        .trainable_vs()
        .trainable_variables()
        .iter()
        .map(|v| v.grad().abs().sum(Kind::Float).double_value(&[]))
        .collect();
    assert!(grads.iter().all(|&g| g.is_finite()) && grads.iter().any(|&g| g > 0.0));
}

#[test]
fn sampling_options_behave() {
    let model = LlavaModel::load(&fixtures().join("tiny-new"), &cpu()).unwrap();
    let g = Golden::read("tiny-new");
    let px = g.tensor("pixel_values");
    let prompts = vec![g.ids(0), g.ids(1)];
    let greedy = llava::generate(
        &model,
        &prompts,
        Some(&px),
        &SamplingConfig::greedy(&model, 8),
    )
    .unwrap();
    let top1 = SamplingConfig {
        temperature: 1.0,
        top_k: 1,
        seed: Some(3),
        ..SamplingConfig::greedy(&model, 8)
    };
    assert_eq!(
        llava::generate(&model, &prompts, Some(&px), &top1).unwrap(),
        greedy
    );
    let nucleus = SamplingConfig {
        temperature: 0.7,
        top_p: 1e-6,
        seed: Some(3),
        ..SamplingConfig::greedy(&model, 8)
    };
    assert_eq!(
        llava::generate(&model, &prompts, Some(&px), &nucleus).unwrap(),
        greedy
    );
    let hot = SamplingConfig {
        temperature: 5.0,
        seed: Some(11),
        ..SamplingConfig::greedy(&model, 8)
    };
    let a = llava::generate(&model, &prompts, Some(&px), &hot).unwrap();
    let b = llava::generate(&model, &prompts, Some(&px), &hot).unwrap();
    assert_eq!(a, b, "a seed makes sampling reproducible");
    assert_ne!(a, greedy, "temperature 5 should leave the greedy path");
    // Stop at EOS: declare the first greedy token of row 0 an EOS id.
    let stop = SamplingConfig {
        eos_token_ids: vec![greedy[0][0]],
        ..SamplingConfig::greedy(&model, 8)
    };
    let out = llava::generate(&model, &prompts, Some(&px), &stop).unwrap();
    assert_eq!(out[0], vec![greedy[0][0]]);
    // A suppressed token is never chosen, greedy or sampled.
    let banned = greedy[0][0];
    for base in [SamplingConfig::greedy(&model, 8), hot.clone()] {
        let cfg = SamplingConfig {
            suppress_token_ids: vec![banned],
            ..base
        };
        let out = llava::generate(&model, &prompts, Some(&px), &cfg).unwrap();
        assert!(out.iter().flatten().all(|&t| t != banned), "{out:?}");
        assert_ne!(out[0][0], banned);
    }
    // A right-padded batch generates like the unpadded prompts.
    let (ids, mask) = llava::pad_batch(&prompts, 627, PaddingSide::Right, Device::Cpu);
    let cfg = SamplingConfig::greedy(&model, 8);
    assert_eq!(
        llava::generate_padded(&model, &ids, &mask, Some(&px), &cfg).unwrap(),
        greedy
    );
}

fn temp_copy(variant: &str, tag: &str) -> PathBuf {
    let dst = std::env::temp_dir().join(format!("llava-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(fixtures().join(variant)).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
    dst
}

fn load_err(dir: &Path) -> String {
    match LlavaModel::load(dir, &cpu()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn missing_shard_is_named() {
    let dir = temp_copy("tiny-old", "shard");
    std::fs::remove_file(dir.join("model-00002-of-00003.safetensors")).unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("model-00002-of-00003.safetensors") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn mismatched_shape_names_the_tensor() {
    let dir = temp_copy("tiny-new", "shape");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"intermediate_size\": 96", "\"intermediate_size\": 80"),
    )
    .unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("language_model.layers.0.mlp.gate_proj.weight"),
        "{err}"
    );
    assert!(
        err.contains("[80, 64]") && err.contains("[96, 64]"),
        "{err}"
    );
}

#[test]
fn unsupported_config_value_is_named() {
    let dir = temp_copy("tiny-new", "rope");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"rope_type\": \"linear\"", "\"rope_type\": \"yarn\""),
    )
    .unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("yarn") && err.contains("rope_parameters"),
        "{err}"
    );
}

#[test]
fn too_long_prompts_and_bad_image_counts_are_errors() {
    let model = LlavaModel::load(&fixtures().join("tiny-new"), &cpu()).unwrap();
    let g = Golden::read("tiny-new");
    let long: Vec<i64> = std::iter::repeat_n(300, 120).collect();
    let err = llava::generate(&model, &[long], None, &SamplingConfig::greedy(&model, 16))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("120 tokens") && err.contains("context of 128"),
        "{err}"
    );
    let ids = Tensor::from_slice(&vec![300i64; 130]).unsqueeze(0);
    let err = model.forward(
        &Batch {
            input_ids: &ids,
            attention_mask: None,
            pixel_values: None,
        },
        false,
    );
    let err = err
        .err()
        .expect("130 tokens exceed the context")
        .to_string();
    assert!(err.contains("130 tokens") && err.contains("128"), "{err}");
    // Two images' pixels for a prompt with one <image> run.
    let ids = Tensor::from_slice(&g.ids(0)).unsqueeze(0);
    let px = g.tensor("pixel_values");
    let err = model.forward(
        &Batch {
            input_ids: &ids,
            attention_mask: None,
            pixel_values: Some(&px),
        },
        false,
    );
    let err = err.err().expect("image count mismatch").to_string();
    assert!(
        err.contains("9 <image> tokens") && err.contains("18 features"),
        "{err}"
    );
    let bad = Tensor::from_slice(&[1i64, 5000]).unsqueeze(0);
    let err = model.forward(
        &Batch {
            input_ids: &bad,
            attention_mask: None,
            pixel_values: None,
        },
        false,
    );
    assert!(err.err().unwrap().to_string().contains("0..628"));
}

/// The device check's binary names the problem when a checkpoint's
/// vocabulary is too small for its prompts (ids from 1000, as the Python
/// side's), instead of failing later on out-of-range token ids.
#[test]
fn llava_bench_refuses_a_vocabulary_its_prompts_do_not_fit() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/llava/tiny-new");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llava_bench"))
        .arg("--model")
        .arg(&dir)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("running llava_bench");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vocabulary of 628 tokens"), "{err}");
}

//! The demo's VLLM stage (gpu_train::demo::{lm_tokenizer, sft}, llava::save_pretrained):
//! the caption tokenizer, saving in the HF LLaVA layout, SFT on the tiny world,
//! determinism, and logits parity of a saved SFT model with transformers
//! (golden logits from tests/fixtures/check_demo_llava.py).

use std::path::{Path, PathBuf};

use gpu_train::demo::lm_tokenizer::{self, split_words, train_tokenizer, word_pieces};
use gpu_train::demo::sft::{self, PROMPT, PixelNorm, SftSpec, train_sft};
use gpu_train::llava::{
    self, Batch, Checkpoint, LlavaConfig, LlavaModel, LlavaTokenizer, LoadOptions, Message,
};
use gpu_train::trainer::rollout::decode_with_offsets;
use gpu_train::world::{Sample, Split, World};
use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};
use tokenizers::Tokenizer;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fisao-demo-sft-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cpu() -> LoadOptions {
    LoadOptions {
        device: Device::Cpu,
        kind: Kind::Float,
        lora: None,
        value_head: false,
    }
}

/// A random CLIP checkpoint as the verifier writes one: `config.json` with a
/// `vision_config`, `vision_model.*` (every layer and `post_layernorm`) and
/// text-side keys the LLaVA tower must ignore.
fn write_clip(dir: &Path, image_size: i64, seed: i64) {
    let (h, i, layers, patch) = (32i64, 64i64, 3i64, 8i64);
    let cfg = json!({
        "model_type": "clip",
        "projection_dim": 16,
        "vision_config": {"model_type": "clip_vision_model", "hidden_size": h, "intermediate_size": i,
            "num_hidden_layers": layers, "num_attention_heads": 2, "image_size": image_size,
            "patch_size": patch, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "num_channels": 3},
        "text_config": {"model_type": "clip_text_model", "hidden_size": 16, "vocab_size": 50}
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    tch::manual_seed(seed);
    let mut t: Vec<(String, Tensor)> = Vec::new();
    let mut add = |name: &str, shape: &[i64]| {
        let x = Tensor::randn(shape, (Kind::Float, Device::Cpu));
        let x = if name.contains("norm") && name.ends_with("weight") {
            x * 0.1 + 1.0
        } else {
            x * 0.1
        };
        t.push((format!("vision_model.{name}"), x));
    };
    let n_pos = (image_size / patch).pow(2) + 1;
    add("embeddings.class_embedding", &[h]);
    add("embeddings.patch_embedding.weight", &[h, 3, patch, patch]);
    add("embeddings.position_embedding.weight", &[n_pos, h]);
    add("pre_layrnorm.weight", &[h]);
    add("pre_layrnorm.bias", &[h]);
    for l in 0..layers {
        for n in ["layer_norm1", "layer_norm2"] {
            add(&format!("encoder.layers.{l}.{n}.weight"), &[h]);
            add(&format!("encoder.layers.{l}.{n}.bias"), &[h]);
        }
        for p in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            add(&format!("encoder.layers.{l}.self_attn.{p}.weight"), &[h, h]);
            add(&format!("encoder.layers.{l}.self_attn.{p}.bias"), &[h]);
        }
        add(&format!("encoder.layers.{l}.mlp.fc1.weight"), &[i, h]);
        add(&format!("encoder.layers.{l}.mlp.fc1.bias"), &[i]);
        add(&format!("encoder.layers.{l}.mlp.fc2.weight"), &[h, i]);
        add(&format!("encoder.layers.{l}.mlp.fc2.bias"), &[h]);
    }
    add("post_layernorm.weight", &[h]);
    add("post_layernorm.bias", &[h]);
    t.push((
        "visual_projection.weight".into(),
        Tensor::zeros([16, h], (Kind::Float, Device::Cpu)),
    ));
    t.push((
        "text_model.embeddings.token_embedding.weight".into(),
        Tensor::zeros([50, 16], (Kind::Float, Device::Cpu)),
    ));
    llava::write_safetensors(&t, &dir.join("model.safetensors")).unwrap();
}

#[test]
fn tokenizer_round_trips_captions_and_splits_some_object_words() {
    let world = World::tiny_world().unwrap();
    let dir = scratch("tok");
    let captions: Vec<String> = (0..world.len(Split::Train) as u64)
        .map(|i| world.annotate(Split::Train, i, 0).caption)
        .collect();
    let path = dir.join("tokenizer.json");
    let report = sft::train_caption_tokenizer(&captions, 335, &path).unwrap();
    assert_eq!(report.vocab_size, 335);
    assert_eq!((report.unk_id, report.bos_id, report.eos_id), (0, 1, 2));
    assert_eq!((report.image_id, report.pad_id), (333, 334));
    let tok = Tokenizer::from_file(&path).unwrap();
    assert_eq!(tok.id_to_token(3).as_deref(), Some("<0x00>"));
    // Some object words span several tokens, others are one token.
    let split = split_words(&tok, &["fork", "knife", "cup", "dog"]).unwrap();
    assert!(!split.is_empty() && split.len() < 4, "{split:?}");
    let pieces = word_pieces(&tok, &split[0]).unwrap();
    assert!(pieces.len() > 1 && pieces[0].starts_with('▁'), "{pieces:?}");
    // A character the corpus never saw falls back to bytes and decodes back.
    let enc = tok.encode("a zebra, a cup", false).unwrap();
    assert!(
        enc.get_tokens().iter().any(|t| t == "<0x7A>"),
        "{:?}",
        enc.get_tokens()
    );
    let ids: Vec<u32> = enc.get_ids().to_vec();
    assert_eq!(tok.decode(&ids, true).unwrap(), "a zebra, a cup");

    // The chat prompt: BOS first, <image> expanded, the caption after it decodes exactly
    // and growing prefixes map every mention to the tokens spelling it.
    let lt = LlavaTokenizer::from_file(&path, report.image_id, 16).unwrap();
    let prompt_text = llava::render_chat(&[Message::user(PROMPT, 1)], true);
    let prompt = lt.encode(&prompt_text).unwrap();
    assert_eq!(prompt[0], 1);
    // The prompt's words are whole tokens (they are in every training example).
    let words: Vec<String> = ["\n", "Describe", "▁the", "▁image", "▁ASSISTANT"]
        .iter()
        .map(|w| w.to_string())
        .collect();
    let toks: Vec<String> = prompt
        .iter()
        .map(|&i| tok.id_to_token(i as u32).unwrap())
        .collect();
    assert!(words.iter().all(|w| toks.contains(w)), "{toks:?}");
    assert_eq!(prompt.iter().filter(|&&i| i == report.image_id).count(), 16);
    for i in 0..16 {
        let s = world.annotate(Split::Train, i, 0);
        let full = lt.encode(&format!("{prompt_text} {}", s.caption)).unwrap();
        assert!(full.starts_with(&prompt), "{}", s.caption);
        let mut resp = full[prompt.len()..].to_vec();
        resp.push(report.eos_id);
        let (text, offsets) = decode_with_offsets(lt.inner(), &resp).unwrap();
        assert_eq!(text, s.caption);
        assert_eq!(lt.decode(&resp).unwrap(), s.caption);
        for m in &s.mentions {
            let covering: String = resp
                .iter()
                .zip(&offsets)
                .filter(|(_, (a, b))| a < b && *a < m.span.1 && *b > m.span.0)
                .map(|(&id, _)| tok.id_to_token(id as u32).unwrap())
                .collect();
            let word = &s.caption[m.span.0..m.span.1];
            assert_eq!(covering.trim_start_matches('▁'), word.replace(' ', "▁"));
        }
    }
    // Too small a vocabulary is an error that says why.
    let err = train_tokenizer(&["a fork."], 265, &dir.join("small.json")).unwrap_err();
    assert!(format!("{err:#}").contains("vocab_size is 265"), "{err:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A random tiny LLaVA over the CLIP in `clip`, with the tower copied in.
fn random_llava(clip: &Path, vocab: i64, layer: i64) -> LlavaModel {
    let cfg_clip: Value =
        serde_json::from_str(&std::fs::read_to_string(clip.join("config.json")).unwrap()).unwrap();
    let cfg = json!({
        "model_type": "llava",
        "text_config": {"model_type": "llama", "vocab_size": vocab, "hidden_size": 32,
            "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 128, "bos_token_id": 1,
            "eos_token_id": 2, "pad_token_id": vocab - 1},
        "vision_config": cfg_clip["vision_config"],
        "image_token_index": vocab - 2,
        "vision_feature_layer": layer,
    });
    let cfg = LlavaConfig::from_json(&cfg.to_string()).unwrap();
    tch::manual_seed(7);
    let model = LlavaModel::from_config(cfg, &cpu()).unwrap();
    let ck = Checkpoint::open(clip).unwrap();
    tch::no_grad(|| {
        for (name, mut t) in model.base_vs().variables() {
            if let Some(rest) = name.strip_prefix("vision_tower.") {
                let src = ck
                    .tensor(
                        &format!("vision_model.{rest}"),
                        &t.size(),
                        Kind::Float,
                        Device::Cpu,
                    )
                    .unwrap();
                t.copy_(&src);
            } else if name.ends_with(".bias") || name.ends_with("norm.weight") {
                // Non-trivial values, so a swapped bias or norm would show in the logits.
                t.copy_(&(t.randn_like() * 0.1 + t.detach()));
            }
        }
    });
    model
}

fn logits(model: &LlavaModel, ids: &[i64], pixels: &Tensor) -> Tensor {
    let ids = Tensor::from_slice(ids).unsqueeze(0);
    let batch = Batch {
        input_ids: &ids,
        attention_mask: None,
        pixel_values: Some(pixels),
    };
    model.forward(&batch, false).unwrap().logits.squeeze_dim(0)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn save_pretrained_round_trips_and_completes_the_vision_tower() {
    let dir = scratch("save");
    let clip = dir.join("clip");
    std::fs::create_dir_all(&clip).unwrap();
    write_clip(&clip, 32, 3);
    let model = random_llava(&clip, 40, -2);
    let out = dir.join("llava");
    llava::save_pretrained(&model, Some(&clip), &out).unwrap();
    let back = LlavaModel::load(&out, &cpu()).unwrap();
    let mut ids = vec![1i64, 5, 6];
    ids.extend(std::iter::repeat_n(38, 16));
    ids.extend([7, 8, 9, 10]);
    let pixels = Tensor::rand([1, 3, 32, 32], (Kind::Float, Device::Cpu));
    assert_eq!(
        max_diff(
            &logits(&model, &ids, &pixels),
            &logits(&back, &ids, &pixels)
        ),
        0.0
    );
    // The layer the model never runs and post_layernorm come from the CLIP checkpoint.
    let saved = Tensor::read_safetensors(out.join("model.safetensors")).unwrap();
    let names: Vec<&str> = saved.iter().map(|(n, _)| n.as_str()).collect();
    let src = Tensor::read_safetensors(clip.join("model.safetensors")).unwrap();
    for key in [
        "encoder.layers.2.mlp.fc2.weight",
        "post_layernorm.bias",
        "embeddings.patch_embedding.weight",
    ] {
        let mine = &saved
            .iter()
            .find(|(n, _)| *n == format!("model.vision_tower.vision_model.{key}"))
            .unwrap_or_else(|| panic!("{key} not saved: {names:?}"))
            .1;
        let theirs = &src
            .iter()
            .find(|(n, _)| *n == format!("vision_model.{key}"))
            .unwrap()
            .1;
        assert_eq!(max_diff(mine, theirs), 0.0, "{key}");
    }
    assert!(names.contains(&"lm_head.weight"));
    assert!(names.contains(&"model.language_model.embed_tokens.weight"));
    assert!(names.contains(&"model.multi_modal_projector.linear_2.bias"));
    assert!(
        !names
            .iter()
            .any(|n| n.contains("text_model") || n.contains("visual_projection"))
    );
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["vision_feature_layer"], json!(-2));
    assert_eq!(cfg["vision_config"]["num_hidden_layers"], json!(3));
    assert_eq!(cfg["image_token_index"], json!(38));
    assert_eq!(cfg["image_seq_length"], json!(16));
    assert!(
        !std::fs::read_dir(&out)
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().contains(".tmp") })
    );

    // Without a source the unused layer is an identity layer; the logits are the same.
    let bare = dir.join("bare");
    llava::save_pretrained(&model, None, &bare).unwrap();
    let back = LlavaModel::load(&bare, &cpu()).unwrap();
    assert_eq!(
        max_diff(
            &logits(&model, &ids, &pixels),
            &logits(&back, &ids, &pixels)
        ),
        0.0
    );

    // A source that is not this model's tower is refused, naming a tensor.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    write_clip(&other, 32, 4);
    let err = llava::save_pretrained(&model, Some(&other), &dir.join("x")).unwrap_err();
    assert!(format!("{err:#}").contains("differs"), "{err:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tiny_setup(tag: &str) -> (World, PathBuf, PathBuf) {
    let world = World::tiny_world().unwrap();
    let dir = scratch(tag);
    let clip = dir.join("verifier");
    std::fs::create_dir_all(&clip).unwrap();
    write_clip(&clip, world.config().image_size as i64, 11);
    (world, dir, clip)
}

#[test]
fn tiny_sft_learns_and_saves_a_loadable_model() {
    let (world, dir, clip) = tiny_setup("train");
    let spec = SftSpec::tiny();
    let out = dir.join("sft");
    let mut calls = Vec::new();
    let t0 = std::time::Instant::now();
    let report = train_sft(&world, &clip, &spec, &out, &mut |s, t| {
        calls.push((s, t));
        if s == 1 || s == t {
            eprintln!("step {s} {:?}", t0.elapsed());
        }
    })
    .unwrap();
    eprintln!("{report:?}");
    let per_epoch = world.len(Split::Train).div_ceil(spec.batch_size) as u64;
    assert_eq!(report.steps, per_epoch * spec.epochs as u64);
    assert_eq!(calls.last(), Some(&(report.steps, report.steps)));
    assert_eq!(report.losses.len(), spec.epochs);
    let uniform = (335f64).ln();
    assert!(report.losses[0] < uniform, "{:?}", report.losses);
    assert!(
        report.final_loss < 0.5 * report.losses[0] && report.final_loss < 1.5,
        "{:?}",
        report.losses
    );
    assert!(!report.split_words.is_empty(), "{report:?}");
    // The directory loads with the LLaVA port and its tokenizer; the tower is the verifier's.
    let model = LlavaModel::load(&out, &cpu()).unwrap();
    let tok = LlavaTokenizer::from_file(
        &out.join("tokenizer.json"),
        model.config.image_token_id,
        model.config.image_tokens_per_image() as usize,
    )
    .unwrap();
    assert_eq!(model.config.vision_layers_used, 2);
    let ck = Checkpoint::open(&out).unwrap();
    let src = Checkpoint::open(&clip).unwrap();
    for name in [
        "encoder.layers.0.mlp.fc1.weight",
        "encoder.layers.2.self_attn.q_proj.bias",
    ] {
        let shape = if name.ends_with("weight") {
            vec![64, 32]
        } else {
            vec![32]
        };
        let a = ck
            .tensor(
                &format!("vision_tower.{name}"),
                &shape,
                Kind::Float,
                Device::Cpu,
            )
            .unwrap();
        let b = src
            .tensor(
                &format!("vision_model.{name}"),
                &shape,
                Kind::Float,
                Device::Cpu,
            )
            .unwrap();
        assert_eq!(max_diff(&a, &b), 0.0, "{name}");
    }
    for f in [
        "tokenizer_config.json",
        "preprocessor_config.json",
        "generation_config.json",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    // Greedy captions on training images: ends with EOS and names the world's words.
    let samples = world.generate(Split::Train, 0..4, 1);
    let refs: Vec<&Sample> = samples.iter().collect();
    let pixels = PixelNorm::from_dir(&out)
        .unwrap()
        .pixel_values(&refs)
        .unwrap();
    let prompt = tok.encode_chat(&[Message::user(PROMPT, 1)], true).unwrap();
    let mut cfg = llava::SamplingConfig::greedy(&model, 40);
    cfg.seed = Some(0);
    let outs = llava::generate(&model, &vec![prompt; 4], Some(&pixels), &cfg).unwrap();
    let n_eos = outs.iter().filter(|o| o.last() == Some(&2)).count();
    assert!(n_eos >= 3, "{outs:?}");
    let text = tok.decode(&outs[0]).unwrap();
    assert!(text.ends_with('.'), "{text:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sft_is_deterministic_for_a_seed() {
    let (world, dir, clip) = tiny_setup("det");
    let mut spec = SftSpec::tiny();
    spec.epochs = 1;
    let bytes = |tag: &str, spec: &SftSpec| {
        let out = dir.join(tag);
        train_sft(&world, &clip, spec, &out, &mut |_, _| {}).unwrap();
        std::fs::read(out.join("model.safetensors")).unwrap()
    };
    let a = bytes("a", &spec);
    let b = bytes("b", &spec);
    assert!(a == b, "two runs with seed 0 differ");
    spec.seed = 1;
    let c = bytes("c", &spec);
    assert!(a != c, "seed 1 gave seed 0's weights");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_verifier_dirs_are_named() {
    let (world, dir, clip) = tiny_setup("bad");
    let mut spec = SftSpec::tiny();
    spec.epochs = 1;
    let err = train_sft(
        &world,
        &dir.join("nowhere"),
        &spec,
        &dir.join("o"),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("nowhere"), "{err:#}");
    // A tower for another image size.
    write_clip(&clip, 64, 1);
    let err = train_sft(&world, &clip, &spec, &dir.join("o"), &mut |_, _| {}).unwrap_err();
    assert!(format!("{err:#}").contains("64x64"), "{err:#}");
    assert!(!dir.join("o").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/demo/llava")
}

/// Writes tests/fixtures/demo/llava/ (a tiny SFT model and its inputs); then run
/// `HF_HUB_OFFLINE=1 ~/.cache/fisao-rs/venv-fixtures/bin/python tests/fixtures/check_demo_llava.py`.
#[test]
#[ignore]
fn write_demo_fixture() {
    let (world, dir, clip) = tiny_setup("fixture");
    let fx = fixture_dir();
    let model_dir = fx.join("model");
    let spec = SftSpec::tiny();
    train_sft(&world, &clip, &spec, &model_dir, &mut |_, _| {}).unwrap();
    let model = LlavaModel::load(&model_dir, &cpu()).unwrap();
    let tok = LlavaTokenizer::from_file(
        &model_dir.join("tokenizer.json"),
        model.config.image_token_id,
        model.config.image_tokens_per_image() as usize,
    )
    .unwrap();
    let samples = world.generate(Split::Validation, 0..2, 1);
    let refs: Vec<&Sample> = samples.iter().collect();
    let pixels = PixelNorm::from_dir(&model_dir)
        .unwrap()
        .pixel_values(&refs)
        .unwrap();
    let captions: Vec<&str> = samples.iter().map(|s| s.caption()).collect();
    let texts: Vec<String> = captions
        .iter()
        .map(|c| llava::render_chat(&[Message::user(PROMPT, 1)], true) + " " + c)
        .collect();
    let ids: Vec<Vec<i64>> = texts.iter().map(|t| tok.encode(t).unwrap()).collect();
    let prompt = tok.encode_chat(&[Message::user(PROMPT, 1)], true).unwrap();
    let v = json!({"texts": texts, "captions": captions, "input_ids": ids,
                   "prompt_ids": prompt, "max_new_tokens": 24});
    std::fs::write(
        fx.join("inputs.json"),
        serde_json::to_string_pretty(&v).unwrap(),
    )
    .unwrap();
    let s = world.config().image_size as i64;
    let raw: Vec<f32> = samples
        .iter()
        .flat_map(|x| x.image.rgb.iter().map(|&b| f32::from(b)))
        .collect();
    let images = Tensor::from_slice(&raw).view([samples.len() as i64, s, s, 3]);
    llava::write_safetensors(
        &[("pixel_values".into(), pixels), ("images".into(), images)],
        &fx.join("inputs.safetensors"),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn ids_of(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[test]
fn saved_sft_model_matches_transformers() {
    let fx = fixture_dir();
    let model = LlavaModel::load(&fx.join("model"), &cpu()).unwrap();
    let read = |f: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(fx.join(f)).unwrap()).unwrap()
    };
    let (inputs, check) = (read("inputs.json"), read("check.json"));
    let tensors = Tensor::read_safetensors(fx.join("inputs.safetensors")).unwrap();
    let pixels = &tensors.iter().find(|(n, _)| n == "pixel_values").unwrap().1;
    let golden = Tensor::read_safetensors(fx.join("golden.safetensors")).unwrap();
    // transformers loaded every key and expected no other.
    assert_eq!(check["missing_keys"], json!([]), "{check}");
    assert_eq!(check["unexpected_keys"], json!([]), "{check}");
    assert_eq!(check["mismatched_keys"], json!([]), "{check}");
    // AutoTokenizer on the saved directory gives Rust's ids and decodes the captions back.
    assert_eq!(check["tokenizer_ids_match"], json!(true), "{check}");
    assert_eq!(check["tokenizer_decode_match"], json!(true), "{check}");
    // CLIPImageProcessor with the saved preprocessor_config.json gives the pixels Rust used.
    assert!(
        check["pixel_values_max_diff"].as_f64().unwrap() < 1e-5,
        "{check}"
    );
    let rows = inputs["input_ids"].as_array().unwrap();
    for (i, row) in rows.iter().enumerate() {
        let mine = logits(&model, &ids_of(row), &pixels.narrow(0, i as i64, 1));
        let from = check["logits_from"][i].as_i64().unwrap();
        let mine = mine.narrow(0, from, mine.size()[0] - from);
        let theirs = &golden
            .iter()
            .find(|(n, _)| *n == format!("logits_{i}"))
            .unwrap()
            .1;
        let d = max_diff(&mine, theirs);
        assert!(d < 1e-4, "row {i}: max |rust - transformers| = {d}");
    }
    // Greedy decoding of the generation prompt agrees token for token.
    let prompt = ids_of(&inputs["prompt_ids"]);
    let mut cfg = llava::SamplingConfig::greedy(&model, inputs["max_new_tokens"].as_i64().unwrap());
    cfg.seed = Some(0);
    for i in 0..rows.len() {
        let px = pixels.narrow(0, i as i64, 1);
        let out = llava::generate(&model, std::slice::from_ref(&prompt), Some(&px), &cfg).unwrap();
        assert_eq!(json!(out[0]), check["greedy"][i], "greedy row {i}");
    }
}

/// The demo's SFT on the default world (release build; minutes): prints the
/// report and a greedy check on validation images. Needs a verifier directory
/// in FISAO_VERIFIER (else a random CLIP tower, which cannot see objects).
#[test]
#[ignore]
fn default_world_sft() {
    let world = World::default_world().unwrap();
    let dir = scratch("default");
    let clip = match std::env::var("FISAO_VERIFIER") {
        Ok(p) => PathBuf::from(p),
        Err(_) => {
            let c = dir.join("verifier");
            std::fs::create_dir_all(&c).unwrap();
            write_clip(&c, 64, 5);
            c
        }
    };
    let mut spec = SftSpec::for_world(&world);
    // Overrides for timing runs.
    let var = |k: &str| std::env::var(k).ok().map(|v| v.parse::<i64>().unwrap());
    if let Some(e) = var("SFT_EPOCHS") {
        spec.epochs = e as usize;
    }
    if let Some(h) = var("SFT_HIDDEN") {
        spec.hidden_size = h;
    }
    if let Some(i) = var("SFT_INTER") {
        spec.intermediate_size = i;
    }
    let out = std::env::var("SFT_OUT").map_or_else(|_| dir.join("sft"), PathBuf::from);
    let t0 = std::time::Instant::now();
    let report = train_sft(&world, &clip, &spec, &out, &mut |s, t| {
        if s == 1 || s % 50 == 0 || s == t {
            let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds());
            eprintln!("step {s}/{t} wall {wall:.1}s cpu {cpu:.1}s");
        }
    })
    .unwrap();
    println!(
        "{spec:?}\n{report:?}\nprocess CPU seconds: {:.1}",
        cpu_seconds()
    );
    let check = sft::greedy_check(&world, &out, Split::Validation, 200).unwrap();
    println!("{check:#?}");
    let _ = lm_tokenizer::BOS;
}

/// User + system CPU time of this process (Linux /proc), to read timings on a shared machine.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5); index 11 and 12 after the ")".
    (ticks(11) + ticks(12)) / 100.0
}

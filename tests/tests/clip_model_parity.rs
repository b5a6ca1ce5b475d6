//! CLIP model parity with transformers 5.23 (`CLIPModel`, PyTorch 2.11 CPU):
//! goldens made by `tests/fixtures/gen_clip.py` from tiny random checkpoints
//! that use CLIP's real tokenizer.
//!
//! Token ids must match exactly; text and image embeddings and
//! `logits_per_image` within 1e-4 absolute. The f16 / bf16 checkpoints hold
//! the f32 model's weights rounded to that dtype, and their goldens were
//! computed in f32 on those rounded weights, so the same bound applies.

use std::path::PathBuf;
use std::sync::OnceLock;

use fisao_tests::fixtures_dir;
use reward_core::clip::{ClipModel, Embeddings};
use serde_json::Value;

const TOL: f32 = 1e-4;
const MODELS: [&str; 5] = [
    "tiny-quickgelu",
    "tiny-quickgelu-f16",
    "tiny-quickgelu-bf16",
    "tiny-gelu-legacy-sharded",
    "tiny-eos-a",
];

fn model_dir(name: &str) -> PathBuf {
    fixtures_dir().join("clip").join(name)
}

/// Each fixture model, loaded once per test binary (loading hashes every weight).
fn model(name: &str) -> &'static ClipModel {
    static LOADED: [OnceLock<ClipModel>; 5] = [const { OnceLock::new() }; 5];
    let i = MODELS
        .iter()
        .position(|m| *m == name)
        .expect("a fixture model");
    LOADED[i]
        .get_or_init(|| ClipModel::load(&model_dir(name)).unwrap_or_else(|e| panic!("{name}: {e}")))
}

/// golden.json and the tensors of golden.safetensors as (shape, values).
struct Golden {
    meta: Value,
    bytes: Vec<u8>,
}

impl Golden {
    fn load(name: &str) -> Self {
        let dir = model_dir(name);
        let meta = std::fs::read_to_string(dir.join("golden.json")).expect("golden.json");
        let bytes = std::fs::read(dir.join("golden.safetensors")).expect("golden.safetensors");
        Self {
            meta: serde_json::from_str(&meta).expect("golden.json is JSON"),
            bytes,
        }
    }

    fn tensor(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st =
            safetensors::SafeTensors::deserialize(&self.bytes).expect("golden.safetensors parses");
        let t = st.tensor(name).expect("golden tensor");
        assert_eq!(t.dtype(), safetensors::Dtype::F32);
        let values = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (t.shape().to_vec(), values)
    }

    fn texts(&self) -> Vec<String> {
        self.meta["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    }
}

/// Largest |a - b|, after checking the shapes agree.
fn max_abs_diff(name: &str, got: &Embeddings, want: &(Vec<usize>, Vec<f32>)) -> f32 {
    assert_eq!(vec![got.rows(), got.dim()], want.0, "{name}: shape");
    got.as_slice()
        .iter()
        .zip(&want.1)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

#[test]
fn token_ids_match_transformers_exactly() {
    for name in MODELS {
        let golden = Golden::load(name);
        let model = model(name);
        let ids = golden.meta["input_ids"].as_array().unwrap();
        for (i, text) in golden.texts().iter().enumerate() {
            let tok = model.tokenize(text).unwrap();
            let want: Vec<u32> = ids[i]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(tok.ids, want, "{name}: text {i} {text:?}");
            assert_eq!(
                tok.truncated,
                golden.meta["truncated"][i].as_bool().unwrap(),
                "{name}: text {i}"
            );
            assert_eq!(
                tok.full_len as u64,
                golden.meta["full_token_counts"][i].as_u64().unwrap()
            );
        }
    }
}

#[test]
fn a_photo_of_a_cat_has_the_openai_ids() {
    let model = model("tiny-quickgelu");
    let tok = model.tokenize("a photo of a cat").unwrap();
    assert_eq!(tok.ids, [49406, 320, 1125, 539, 320, 2368, 49407]);
    assert!(!tok.truncated);
}

#[test]
fn embeddings_and_logits_match_transformers() {
    for name in MODELS {
        let golden = Golden::load(name);
        let model = model(name);
        let texts = golden.texts();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let text = model.embed_texts(&refs).unwrap();
        let (pshape, pixels) = golden.tensor("pixel_values");
        let images = model.embed_images(&pixels, pshape[0]).unwrap();
        let logits = model.logits_per_image(&images, &text.embeddings).unwrap();

        let dt = max_abs_diff(name, &text.embeddings, &golden.tensor("text_embeds"));
        let di = max_abs_diff(name, &images, &golden.tensor("image_embeds"));
        let dl = max_abs_diff(name, &logits, &golden.tensor("logits_per_image"));
        println!("{name}: max |diff| text {dt:.2e}, image {di:.2e}, logits {dl:.2e}");
        assert!(
            dt <= TOL && di <= TOL && dl <= TOL,
            "{name}: text {dt}, image {di}, logits {dl}"
        );

        let scale = golden.meta["logit_scale_exp"].as_f64().unwrap() as f32;
        assert!(
            (model.logit_scale() - scale).abs() < 1e-5 * scale,
            "{name}: logit scale"
        );
        assert_eq!(
            text.truncated.iter().filter(|&&t| t).count(),
            1,
            "{name}: the long text is cut"
        );
        assert!(text.token_counts.iter().all(|&n| n <= 77));
    }
}

#[test]
fn sharded_and_single_file_loads_agree_with_from_bytes() {
    // from_bytes on the two shards must give the model that load() gives.
    let dir = model_dir("tiny-gelu-legacy-sharded");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let (a, b) = (
        read("model-00001-of-00002.safetensors"),
        read("model-00002-of-00002.safetensors"),
    );
    let from_bytes =
        ClipModel::from_bytes(&read("config.json"), &[&a, &b], &read("tokenizer.json")).unwrap();
    let loaded = model("tiny-gelu-legacy-sharded");
    assert_eq!(from_bytes.model_hash(), loaded.model_hash());
    let t1 = from_bytes.embed_texts(&["a photo of a cat"]).unwrap();
    let t2 = loaded.embed_texts(&["a photo of a cat"]).unwrap();
    assert_eq!(t1, t2);
}

#[test]
fn model_hash_tells_models_apart() {
    let hashes: Vec<String> = MODELS
        .iter()
        .map(|name| model(name).model_hash_hex())
        .collect();
    for (i, h) in hashes.iter().enumerate() {
        assert_eq!(h.len(), 64);
        assert!(
            hashes[i + 1..].iter().all(|o| o != h),
            "{} shares a hash",
            MODELS[i]
        );
    }
    // Stable across loads.
    assert_eq!(
        ClipModel::load(&model_dir(MODELS[0]))
            .unwrap()
            .model_hash_hex(),
        hashes[0]
    );
}

#[test]
fn config_fields_follow_config_json() {
    let cfg = model("tiny-gelu-legacy-sharded").config();
    assert_eq!(cfg.image_size(), 30);
    assert_eq!(cfg.projection_dim(), 24);
    assert_eq!(
        cfg.vision_config.patches_per_side(),
        4,
        "30 / 7 floors like Conv2d"
    );
    assert_eq!(
        cfg.text_config.pooling(),
        reward_core::clip::TextPooling::ArgMaxId
    );
    assert_eq!(
        model("tiny-eos-a").config().text_config.pooling(),
        reward_core::clip::TextPooling::FirstId(320)
    );
}

#[test]
fn batching_does_not_change_embeddings() {
    let model = model("tiny-quickgelu");
    let golden = Golden::load("tiny-quickgelu");
    let texts = golden.texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let all = model.embed_texts(&refs).unwrap().embeddings;
    for (i, text) in refs.iter().enumerate() {
        let one = model.embed_texts(&[text]).unwrap().embeddings;
        let d = one
            .row(0)
            .iter()
            .zip(all.row(i))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-5, "text {i}: {d}");
    }
    let (shape, pixels) = golden.tensor("pixel_values");
    let per = pixels.len() / shape[0];
    let batch = model.embed_images(&pixels, shape[0]).unwrap();
    let last = model
        .embed_images(&pixels[per * (shape[0] - 1)..], 1)
        .unwrap();
    let d = last
        .row(0)
        .iter()
        .zip(batch.row(shape[0] - 1))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(d < 1e-5, "{d}");
    assert_eq!(model.embed_texts(&[]).unwrap().embeddings.rows(), 0);
    assert_eq!(model.embed_images(&[], 0).unwrap().rows(), 0);
}

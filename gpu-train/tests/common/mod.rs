//! Files the COCO-task tests write (`trainer_task.rs` through the library,
//! `trainer_cli.rs` through the binary): a PNG image, LLaVA-Instruct lines
//! with COCO instances and captions for it, and verifier embedding caches.
#![allow(dead_code, reason = "each test file uses its own subset")]

use std::path::Path;

use reward_core::clip::Embeddings;
use reward_core::clip::cache::{CacheKind, CacheMeta, EmbeddingCache, sha256_digest};
use reward_core::clip::image::Preprocess;
use reward_core::vocab::{Expansion, Vocabulary};

/// The one image's file name (COCO id 1).
pub const IMAGE: &str = "000000000001.png";

/// The model hash the caches record.
pub const CACHE_MODEL_HASH: &str =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// A `w x h` RGB PNG with a fixed pattern.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    let mut wr = enc.write_header().unwrap();
    let px: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
    wr.write_image_data(&px).unwrap();
    drop(wr);
    out
}

/// `images/IMAGE`, `instruct.jsonl` (one sample per question, all on the
/// image), and `inst.json` / `caps.json` whose ground truth is a dog.
pub fn write_coco(d: &Path, image: &[u8], questions: &[&str]) {
    std::fs::create_dir_all(d.join("images")).unwrap();
    std::fs::write(d.join("images").join(IMAGE), image).unwrap();
    let lines: Vec<String> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            format!(
                r#"{{"id": "{i}", "image": "{IMAGE}", "conversations": [{{"from": "human", "value": "<image>\n{q}"}}]}}"#
            )
        })
        .collect();
    std::fs::write(d.join("instruct.jsonl"), lines.join("\n") + "\n").unwrap();
    std::fs::write(
        d.join("inst.json"),
        r#"{"images": [{"id": 1}], "categories": [{"id": 18, "name": "dog"}], "annotations": [{"image_id": 1, "category_id": 18}]}"#,
    )
    .unwrap();
    std::fs::write(
        d.join("caps.json"),
        r#"{"annotations": [{"image_id": 1, "caption": "A dog on a sofa."}]}"#,
    )
    .unwrap();
}

/// `text.safetensors` (every surface form of the built-in vocabulary, text
/// `template`) and `images.safetensors` (the image, by digest), `dim` wide,
/// fixed pseudo-random values, model [`CACHE_MODEL_HASH`].
pub fn write_caches(d: &Path, image: &[u8], dim: usize, template: &str) {
    let vocab = Vocabulary::builtin(Expansion::Fisao);
    let keys: Vec<String> = vocab.forms().map(|(f, _)| f.to_string()).collect();
    let meta = |kind, keys: Vec<String>, digests| CacheMeta {
        kind,
        model_hash: CACHE_MODEL_HASH.to_string(),
        logit_scale: 100.0,
        template: (kind == CacheKind::Vocab).then(|| template.to_string()),
        preprocess: (kind == CacheKind::Images).then(|| Preprocess::for_image_size(224)),
        keys,
        digests,
    };
    let values = |rows: usize, seed: usize| -> Vec<f32> {
        (0..rows * dim)
            .map(|i| (((i + seed) * 7919) % 17) as f32 / 8.0 - 1.0)
            .collect()
    };
    let n = keys.len();
    let text = EmbeddingCache::new(
        meta(CacheKind::Vocab, keys, vec![]),
        Embeddings::new(values(n, 0), n, dim).unwrap(),
    )
    .unwrap();
    let images = EmbeddingCache::new(
        meta(
            CacheKind::Images,
            vec![IMAGE.into()],
            vec![sha256_digest(image)],
        ),
        Embeddings::new(values(1, 3), 1, dim).unwrap(),
    )
    .unwrap();
    text.save(&d.join("text.safetensors")).unwrap();
    images.save(&d.join("images.safetensors")).unwrap();
}

//! The demo verifier (`gpu_train::demo::verifier`): trained on the tiny
//! world, saved in HF CLIP format, loaded back by reward-core's `ClipModel`
//! with the same embeddings as the tch model; deterministic; the exact
//! pixels reward-core feeds; AUROC arithmetic; output-directory errors; and
//! parity of reward-core with transformers on a committed trained verifier
//! (goldens from `tests/fixtures/check_demo_verifier.py`).

use std::path::{Path, PathBuf};

use gpu_train::demo::clip_tch::{load_clip, pad_tokens};
use gpu_train::demo::verifier::{
    VerifierSpec, auroc, class_texts, normalise_pixels, pixel_bytes, pixel_lut, train_verifier,
};
use gpu_train::world::{Split, World};
use reward_core::clip::ClipModel;
use reward_core::clip::image::{Preprocess, RgbImage, preprocess};
use tch::Tensor;

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fisao-demo-verifier-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn train_tiny(out: &Path) -> gpu_train::demo::verifier::VerifierReport {
    let world = World::tiny_world().unwrap();
    let spec = VerifierSpec::tiny();
    let total = spec.total_steps(&world);
    let mut calls = Vec::new();
    let report = train_verifier(&world, &spec, out, &mut |d, t| calls.push((d, t))).unwrap();
    assert_eq!(report.steps, total);
    assert_eq!(calls.last(), Some(&(total, total)));
    assert_eq!(calls.len() as u64, total);
    report
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    let t = t.contiguous().view([-1]);
    Vec::<f32>::try_from(&t).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn tiny_verifier_loads_in_reward_core_with_the_tch_embeddings() {
    let root = scratch("parity");
    let out = root.join("verifier");
    let report = train_tiny(&out);
    eprintln!("tiny verifier: {report:?}");
    assert!(report.final_loss.is_finite() && report.final_loss > 0.0);
    assert!((0.0..=1.0).contains(&report.auroc_present), "{report:?}");
    for f in ["config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // Nothing but the output directory is left beside it.
    let names: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("verifier")]);

    let world = World::tiny_world().unwrap();
    let rc = ClipModel::load(&out).unwrap();
    let (_vs, tch_model) = load_clip(&out).unwrap();
    let (mut texts, _) = class_texts(&world);
    texts.push("a fork and two knives next to a dog.".into());
    texts.push("Zebra & café!".into());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let rc_text = rc.embed_texts(&refs).unwrap();
    let tokens: Vec<Vec<u32>> = refs.iter().map(|t| rc.tokenize(t).unwrap().ids).collect();
    let eos = rc.config().text_config.eos_token_id as u32;
    let (ids, pos) = pad_tokens(&tokens, eos).unwrap();
    let tch_text = tch::no_grad(|| tch_model.text_features(&ids, &pos));
    let d = max_diff(rc_text.embeddings.as_slice(), &to_vec(&tch_text));
    assert!(d < 1e-4, "text embeddings differ by {d}");

    let samples = world.generate(Split::Validation, 0..8, 1);
    let lut = pixel_lut(32).unwrap();
    let pixels = normalise_pixels(&pixel_bytes(&samples), &lut);
    let rc_img = rc.embed_images(&to_vec(&pixels), samples.len()).unwrap();
    let tch_img = tch::no_grad(|| tch_model.image_features(&pixels));
    let d = max_diff(rc_img.as_slice(), &to_vec(&tch_img));
    assert!(d < 1e-4, "image embeddings differ by {d}");

    let rc_logits = rc.logits_per_image(&rc_img, &rc_text.embeddings).unwrap();
    let tch_logits = tch::no_grad(|| tch_model.logits_per_image(&tch_img, &tch_text));
    let d = max_diff(rc_logits.as_slice(), &to_vec(&tch_logits));
    assert!(d < 1e-3, "logits differ by {d}");
    std::fs::remove_dir_all(&root).unwrap();
}

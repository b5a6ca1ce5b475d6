//! The demo verifier (`gpu_train::demo::verifier`): trained on the tiny
//! world, saved in HF CLIP format, loaded back by reward-core's `ClipModel`
//! with the same embeddings as the tch model; deterministic; fed exactly the
//! pixels reward-core computes; AUROC arithmetic; output-directory errors;
//! the tokenizer's CLIP behaviour; and parity of reward-core with
//! transformers on a committed trained verifier (goldens written by
//! `tests/fixtures/check_demo_verifier.py`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gpu_train::demo::clip_tch::{load_clip, pad_tokens};
use gpu_train::demo::clip_tokenizer::world_tokenizer;
use gpu_train::demo::verifier::{
    VerifierReport, VerifierSpec, auroc, class_texts, normalise_pixels, pixel_bytes, pixel_lut,
    train_verifier,
};
use gpu_train::world::{Split, World, write_png};
use reward_core::clip::ClipModel;
use reward_core::clip::image::{ImageLimits, Preprocess, RgbImage, load_image, preprocess};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tch::Tensor;

/// The committed trained verifier and its transformers goldens.
fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/demo/verifier")
}

/// A fresh scratch directory for one test, under cargo's target tmp dir
/// (a fixed name, so runs do not pile up).
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("demo-verifier")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One thread: tests run beside each other and beside other builds.
fn one_thread() {
    tch::set_num_threads(1);
}

fn train_tiny(out: &Path) -> VerifierReport {
    one_thread();
    let world = World::tiny_world().unwrap();
    let spec = VerifierSpec::tiny();
    let total = spec.total_steps(&world);
    let mut calls = Vec::new();
    let report = train_verifier(&world, &spec, out, &mut |d, t| calls.push((d, t))).unwrap();
    assert_eq!(report.steps, total);
    assert_eq!(calls.len() as u64, total);
    assert_eq!(calls.last(), Some(&(total, total)));
    report
}

/// The tiny verifier, trained once per test binary.
fn trained_tiny() -> &'static (PathBuf, VerifierReport) {
    static TRAINED: OnceLock<(PathBuf, VerifierReport)> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let out = scratch("shared").join("verifier");
        let report = train_tiny(&out);
        eprintln!("tiny verifier: {report:?}");
        (out, report)
    })
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    let t = t.contiguous().view([-1]);
    Vec::<f32>::try_from(&t).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn tiny_verifier_loads_in_reward_core_with_the_tch_embeddings() {
    let (out, report) = trained_tiny();
    assert!(report.final_loss.is_finite() && report.final_loss > 0.0);
    // 64 training images only, but clearly better than chance.
    assert!(report.auroc_present > 0.7, "{report:?}");
    assert!((0.0..=1.0).contains(&report.auroc_partner), "{report:?}");
    // Whole captions are learnt too (own caption vs one naming something absent).
    assert!(report.auroc_caption > 0.6, "{report:?}");
    let mut names: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let want = [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer.json",
    ];
    assert_eq!(names, want);
    // The temp directory was renamed, not left beside the output.
    let siblings = std::fs::read_dir(out.parent().unwrap()).unwrap().count();
    assert_eq!(siblings, 1);

    let world = World::tiny_world().unwrap();
    let rc = ClipModel::load(out).unwrap();
    let (_vs, tch_model) = load_clip(out).unwrap();
    let (mut texts, _) = class_texts(&world);
    texts.push("a fork and two knives next to a dog.".into());
    texts.push("Zebra & café! 🙂".into());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let rc_text = rc.embed_texts(&refs).unwrap();
    let tokens: Vec<Vec<u32>> = refs.iter().map(|t| rc.tokenize(t).unwrap().ids).collect();
    let eos = rc.config().text_config.eos_token_id as u32;
    let (ids, pos) = pad_tokens(&tokens, eos).unwrap();
    let tch_text = tch::no_grad(|| tch_model.text_features(&ids, &pos));
    let d = max_diff(rc_text.embeddings.as_slice(), &to_vec(&tch_text));
    assert!(d < 1e-4, "text embeddings differ by {d}");

    let samples = world.generate(Split::Validation, 0..8, 1);
    let pixels = normalise_pixels(&pixel_bytes(&samples), &pixel_lut(32).unwrap());
    let rc_img = rc.embed_images(&to_vec(&pixels), samples.len()).unwrap();
    let tch_img = tch::no_grad(|| tch_model.image_features(&pixels));
    let d = max_diff(rc_img.as_slice(), &to_vec(&tch_img));
    assert!(d < 1e-4, "image embeddings differ by {d}");

    let rc_logits = rc.logits_per_image(&rc_img, &rc_text.embeddings).unwrap();
    let tch_logits = tch::no_grad(|| tch_model.logits_per_image(&tch_img, &tch_text));
    let scale = rc.logit_scale();
    let d = max_diff(rc_logits.as_slice(), &to_vec(&tch_logits));
    assert!(d < 1e-4 * scale, "logits differ by {d} (scale {scale})");
}

#[test]
fn training_is_deterministic() {
    let (first, _) = trained_tiny();
    let out = scratch("again").join("verifier");
    // An existing output directory is replaced as a whole.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("stale.txt"), b"old").unwrap();
    train_tiny(&out);
    assert!(!out.join("stale.txt").exists());
    for f in ["model.safetensors", "tokenizer.json", "config.json"] {
        let a = std::fs::read(first.join(f)).unwrap();
        let b = std::fs::read(out.join(f)).unwrap();
        assert!(a == b, "{f} differs between two runs with the same seed");
    }
    std::fs::remove_dir_all(out.parent().unwrap()).unwrap();
}

#[test]
fn training_pixels_are_reward_cores_preprocessing() {
    let (out, _) = trained_tiny();
    let json = std::fs::read_to_string(out.join("preprocessor_config.json")).unwrap();
    let pre = Preprocess::from_preprocessor_config(&json).unwrap();
    let world = World::tiny_world().unwrap();
    let samples = world.generate(Split::Train, 0..6, 1);
    let ours = to_vec(&normalise_pixels(
        &pixel_bytes(&samples),
        &pixel_lut(32).unwrap(),
    ));
    let per = 3 * 32 * 32;
    for (i, s) in samples.iter().enumerate() {
        let img = RgbImage::new(s.image.width, s.image.height, s.image.rgb.clone()).unwrap();
        let theirs = preprocess(&img, &pre).unwrap();
        let mine = &ours[i * per..(i + 1) * per];
        // Bit for bit: same-size bicubic resize and crop are identities.
        assert!(
            mine.iter()
                .zip(&theirs)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "image {i}"
        );
    }
}

#[test]
fn auroc_of_a_hand_case() {
    // Pairs (pos, neg): 3 > 1, 3 > 2, 2 = 2 (half), 2 > 1, 0 < 1, 0 < 2 -> 3.5 / 6.
    assert!((auroc(&[3.0, 2.0, 0.0], &[1.0, 2.0]) - 3.5 / 6.0).abs() < 1e-12);
    assert_eq!(auroc(&[5.0, 4.0], &[1.0, 2.0, 3.0]), 1.0);
    assert_eq!(auroc(&[1.0], &[2.0, 3.0]), 0.0);
    assert_eq!(auroc(&[1.0, 1.0], &[1.0]), 0.5);
    assert!(auroc(&[], &[1.0]).is_nan());
}

#[test]
fn bad_output_dirs_are_errors() {
    let root = scratch("bad");
    let file = root.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let world = World::tiny_world().unwrap();
    let spec = VerifierSpec::tiny();
    for out in [file.join("verifier"), file.clone()] {
        let err = train_verifier(&world, &spec, &out, &mut |_, _| {}).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("a-file"), "{msg}");
    }
    let zero = VerifierSpec {
        epochs: 0,
        ..VerifierSpec::tiny()
    };
    let err = train_verifier(&world, &zero, &root.join("v"), &mut |_, _| {}).unwrap_err();
    assert!(format!("{err}").contains("epochs"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn tokenizer_behaves_like_clips() {
    let world = World::default_world().unwrap();
    let tok = world_tokenizer(&world).unwrap();
    let t = tok.tokenizer().unwrap();
    // CLIP's layout: 256 byte symbols, the same with </w>, merges, then the specials.
    assert_eq!(
        (tok.bos_id, tok.eos_id),
        (tok.vocab_size as u32 - 2, tok.vocab_size as u32 - 1)
    );
    let ids = |s: &str| t.encode(s, true).unwrap().get_ids().to_vec();
    for c in world.classes() {
        for word in [&c.name, &c.plural] {
            // Every class word is one token between the specials: its embedding is the word's own.
            assert_eq!(ids(word).len(), 3, "{word}: {:?}", ids(word));
            assert_eq!(ids(word), ids(&word.to_uppercase()), "lower-casing");
        }
    }
    assert_eq!(ids("fork"), ids("  fork "));
    assert_ne!(ids("fork"), ids("knife"));
    // Unseen text: byte symbols, never the unknown token (= <|endoftext|>) inside.
    let odd = ids("Zebra! café 🙂 x9");
    assert!(odd.len() > 6);
    assert_eq!(odd.iter().filter(|&&i| i == tok.eos_id).count(), 1);
    assert_eq!(*odd.last().unwrap(), tok.eos_id);
    // Same corpus, same bytes.
    assert_eq!(world_tokenizer(&world).unwrap().json, tok.json);
}

/// Reads `name` of golden.json as a flat f32 vector.
fn golden_f32(golden: &Value, name: &str) -> Vec<f32> {
    golden[name]
        .as_array()
        .unwrap_or_else(|| panic!("golden.json: {name} missing"))
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter())
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn reward_core_matches_transformers_on_the_committed_verifier() {
    check_against_golden(&fixture_dir());
}

/// Any saved verifier whose golden.json the Python script wrote (see its header).
#[test]
#[ignore]
fn saved_verifier_matches_transformers() {
    let dir = std::env::var("FISAO_VERIFIER_DIR").expect("set FISAO_VERIFIER_DIR");
    check_against_golden(Path::new(&dir));
}

/// reward-core's ClipModel on `dir` against the transformers outputs in
/// `dir/golden.json`.
fn check_against_golden(dir: &Path) {
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    let rc = ClipModel::load(dir).unwrap();
    let texts: Vec<String> = golden["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for (text, want) in texts.iter().zip(golden["input_ids"].as_array().unwrap()) {
        let want: Vec<u32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(rc.tokenize(text).unwrap().ids, want, "{text:?}");
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let text = rc.embed_texts(&refs).unwrap().embeddings;
    let d = max_diff(text.as_slice(), &golden_f32(&golden, "text_embeds"));
    eprintln!(
        "{}: text embeddings within {d:e} of transformers",
        dir.display()
    );
    assert!(d < 1e-4, "text embeddings differ from transformers by {d}");

    let pre_json = std::fs::read_to_string(dir.join("preprocessor_config.json")).unwrap();
    let pre = Preprocess::from_preprocessor_config(&pre_json).unwrap();
    let mut pixels = Vec::new();
    let images = golden["images"].as_array().unwrap();
    for (name, sha) in images
        .iter()
        .zip(golden["pixel_sha256"].as_array().unwrap())
    {
        let img = load_image(&dir.join(name.as_str().unwrap()), &ImageLimits::default()).unwrap();
        let p = preprocess(&img, &pre).unwrap();
        let bytes: Vec<u8> = p.iter().flat_map(|v| v.to_le_bytes()).collect();
        let hex: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, sha.as_str().unwrap(), "pixel_values of {name}");
        pixels.extend(p);
    }
    let image = rc.embed_images(&pixels, images.len()).unwrap();
    let d = max_diff(image.as_slice(), &golden_f32(&golden, "image_embeds"));
    eprintln!("image embeddings within {d:e}");
    assert!(d < 1e-4, "image embeddings differ from transformers by {d}");
    let logits = rc.logits_per_image(&image, &text).unwrap();
    let d = max_diff(logits.as_slice(), &golden_f32(&golden, "logits_per_image"));
    let scale = rc.logit_scale();
    eprintln!("logits within {d:e} (logit scale {scale})");
    assert!(
        d < 1e-4 * scale,
        "logits differ from transformers by {d} (scale {scale})"
    );
}

/// Rewrites the committed fixture: a tiny verifier and four validation
/// images; then run `tests/fixtures/check_demo_verifier.py` for the goldens.
#[test]
#[ignore]
fn regenerate_fixture() {
    let dir = fixture_dir();
    train_tiny(&dir);
    let world = World::tiny_world().unwrap();
    for (i, s) in world
        .generate(Split::Validation, 0..4, 1)
        .iter()
        .enumerate()
    {
        write_png(&dir.join(format!("val_{i}.png")), &s.image).unwrap();
    }
}
/// The measurement behind the numbers in the report: the default world,
/// `VerifierSpec::for_world`, written to `FISAO_VERIFIER_DIR` (default: a
/// temp dir) with four validation images for the Python check. Run in a
/// release build; `FISAO_TORCH_THREADS` sets libtorch's thread count.
#[test]
#[ignore]
fn default_world_verifier() {
    if let Ok(t) = std::env::var("FISAO_TORCH_THREADS") {
        tch::set_num_threads(t.parse().expect("FISAO_TORCH_THREADS: a number"));
    }
    let world = World::default_world().unwrap();
    let spec = VerifierSpec::for_world(&world);
    let out = std::env::var("FISAO_VERIFIER_DIR")
        .map_or_else(|_| scratch("default").join("verifier"), PathBuf::from);
    let start = std::time::Instant::now();
    let report = train_verifier(&world, &spec, &out, &mut |done, total| {
        if done % 50 == 0 || done == total {
            eprintln!(
                "step {done}/{total} at {:.1} s",
                start.elapsed().as_secs_f64()
            );
        }
    })
    .unwrap();
    for (i, s) in world
        .generate(Split::Validation, 0..4, 1)
        .iter()
        .enumerate()
    {
        write_png(&out.join(format!("val_{i}.png")), &s.image).unwrap();
    }
    eprintln!(
        "threads {}\n{spec:?}\n{report:?}\nsaved to {}",
        tch::get_num_threads(),
        out.display()
    );
    assert!(report.auroc_present >= 0.9, "{report:?}");
}

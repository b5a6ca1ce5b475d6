//! Bad checkpoints and inputs for the CLIP model: each gives an error that
//! names the problem. The broken checkpoints are made at test time in a
//! temporary directory from the good `tiny-quickgelu` /
//! `tiny-gelu-legacy-sharded` fixtures.

use std::path::{Path, PathBuf};

use fisao_tests::fixtures_dir;
use reward_core::clip::{ClipError, ClipModel};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// A fresh copy of a fixture model in its own temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn copy_of(model: &str, tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("fisao-clip-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let src = fixtures_dir().join("clip").join(model);
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            // fs::copy follows the tokenizer.json symlink.
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
        Self(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    fn load(&self) -> Result<ClipModel, ClipError> {
        ClipModel::load(&self.0)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load_err(s: &Scratch) -> (ClipError, String) {
    match s.load() {
        Ok(_) => panic!("a broken checkpoint loaded"),
        Err(e) => {
            let text = e.to_string();
            (e, text)
        }
    }
}

/// Rewrites `file` with `edit` applied to its (name, dtype, shape, bytes) list.
fn rewrite_safetensors(
    file: &Path,
    edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>),
) {
    let bytes = std::fs::read(file).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(file, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn missing_config_names_the_file() {
    let s = Scratch::copy_of("tiny-quickgelu", "noconfig");
    std::fs::remove_file(s.path("config.json")).unwrap();
    let (e, msg) = load_err(&s);
    assert!(matches!(e, ClipError::Io { .. }), "{e:?}");
    assert!(msg.contains("config.json"), "{msg}");
}

#[test]
fn corrupt_config_names_the_file_and_line() {
    let s = Scratch::copy_of("tiny-quickgelu", "badjson");
    std::fs::write(
        s.path("config.json"),
        "{\n  \"projection_dim\": 16,\n  oops\n}",
    )
    .unwrap();
    let (e, msg) = load_err(&s);
    assert!(matches!(e, ClipError::Json { .. }), "{e:?}");
    assert!(
        msg.contains("config.json") && msg.contains("line 3"),
        "{msg}"
    );
}

#[test]
fn missing_or_corrupt_tokenizer_is_reported() {
    let s = Scratch::copy_of("tiny-quickgelu", "notok");
    std::fs::remove_file(s.path("tokenizer.json")).unwrap();
    let (_, msg) = load_err(&s);
    assert!(msg.contains("tokenizer.json"), "{msg}");
    std::fs::write(s.path("tokenizer.json"), "{\"model\": 3}").unwrap();
    let (e, msg) = load_err(&s);
    assert!(matches!(e, ClipError::Tokenizer { .. }), "{e:?}: {msg}");
}

#[test]
fn truncated_safetensors_is_reported() {
    let s = Scratch::copy_of("tiny-quickgelu", "trunc");
    let bytes = std::fs::read(s.path("model.safetensors")).unwrap();
    std::fs::write(s.path("model.safetensors"), &bytes[..bytes.len() - 1000]).unwrap();
    let (e, msg) = load_err(&s);
    assert!(matches!(e, ClipError::Safetensors { .. }), "{e:?}");
    assert!(msg.contains("model.safetensors"), "{msg}");
    // A file cut inside its header fails the same way.
    std::fs::write(s.path("model.safetensors"), &bytes[..5]).unwrap();
    assert!(matches!(load_err(&s).0, ClipError::Safetensors { .. }));
}

#[test]
fn missing_tensor_is_named() {
    let s = Scratch::copy_of("tiny-quickgelu", "notensor");
    let gone = "text_model.encoder.layers.1.self_attn.v_proj.bias";
    rewrite_safetensors(&s.path("model.safetensors"), |t| {
        t.retain(|(n, ..)| n != gone)
    });
    let (e, msg) = load_err(&s);
    assert!(matches!(e, ClipError::MissingTensor { .. }), "{e:?}");
    assert!(msg.contains(gone), "{msg}");
}

#[test]
fn wrong_shape_names_tensor_expected_and_found() {
    let s = Scratch::copy_of("tiny-quickgelu", "shape");
    let name = "vision_model.encoder.layers.1.mlp.fc1.weight";
    rewrite_safetensors(&s.path("model.safetensors"), |t| {
        let entry = t.iter_mut().find(|(n, ..)| n == name).unwrap();
        entry.2.reverse();
    });
    let (e, msg) = load_err(&s);
    assert!(matches!(e, ClipError::Shape { .. }), "{e:?}");
    assert!(
        msg.contains(name) && msg.contains("[96, 48]") && msg.contains("[48, 96]"),
        "{msg}"
    );
}

#[test]
fn unsupported_dtype_is_named() {
    let s = Scratch::copy_of("tiny-quickgelu", "dtype");
    rewrite_safetensors(&s.path("model.safetensors"), |t| {
        let entry = t.iter_mut().find(|(n, ..)| n == "logit_scale").unwrap();
        entry.1 = Dtype::I32;
    });
    let (e, msg) = load_err(&s);
    assert!(matches!(e, ClipError::Dtype { .. }), "{e:?}");
    assert!(msg.contains("logit_scale") && msg.contains("I32"), "{msg}");
}

#[test]
fn unsupported_config_names_the_key() {
    let s = Scratch::copy_of("tiny-quickgelu", "act");
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(s.path("config.json")).unwrap()).unwrap();
        f(&mut cfg);
        std::fs::write(s.path("config.json"), cfg.to_string()).unwrap();
    };
    edit(&|c| c["text_config"]["hidden_act"] = "swish".into());
    let (e, msg) = load_err(&s);
    assert!(matches!(e, ClipError::UnsupportedConfig { .. }), "{e:?}");
    assert!(
        msg.contains("text_config.hidden_act") && msg.contains("swish"),
        "{msg}"
    );

    edit(&|c| {
        c["text_config"]["hidden_act"] = "quick_gelu".into();
        c["vision_config"]["num_attention_heads"] = 5.into();
    });
    let (_, msg) = load_err(&s);
    assert!(msg.contains("vision_config.num_attention_heads"), "{msg}");

    edit(&|c| {
        c["vision_config"]["num_attention_heads"] = 4.into();
        c["text_config"]["eos_token_id"] = serde_json::json!([49407, 2]);
    });
    let (_, msg) = load_err(&s);
    assert!(msg.contains("text_config.eos_token_id"), "{msg}");
}

#[test]
fn missing_shard_is_named() {
    let s = Scratch::copy_of("tiny-gelu-legacy-sharded", "shard");
    std::fs::remove_file(s.path("model-00002-of-00002.safetensors")).unwrap();
    let (e, msg) = load_err(&s);
    assert!(matches!(e, ClipError::Io { .. }), "{e:?}");
    assert!(msg.contains("model-00002-of-00002.safetensors"), "{msg}");
}

#[test]
fn corrupt_shard_index_is_named() {
    let s = Scratch::copy_of("tiny-gelu-legacy-sharded", "index");
    std::fs::write(
        s.path("model.safetensors.index.json"),
        "{\"weight_map\": [1, 2]}",
    )
    .unwrap();
    let (e, msg) = load_err(&s);
    assert!(matches!(e, ClipError::Json { .. }), "{e:?}");
    assert!(msg.contains("model.safetensors.index.json"), "{msg}");
}

#[test]
fn bad_inputs_are_refused_and_long_text_is_flagged() {
    let model = ClipModel::load(&fixtures_dir().join("clip/tiny-quickgelu")).unwrap();
    let err = model.embed_images(&[0.0; 10], 1).unwrap_err();
    assert!(matches!(err, ClipError::Input { .. }), "{err:?}");
    assert!(err.to_string().contains("1 x 3 x 48 x 48"), "{err}");

    let long = "a photo of a cat ".repeat(40);
    let out = model.embed_texts(&["", &long]).unwrap();
    assert_eq!(out.token_counts, [2, 77]);
    assert_eq!(out.truncated, [false, true]);
    assert_eq!(out.full_token_counts[1], 2 + 5 * 40);
    let tok = model.tokenize(&long).unwrap();
    assert_eq!(
        (tok.ids[0], tok.ids[76]),
        (49406, 49407),
        "the cut keeps both special tokens"
    );
}

#[test]
fn from_bytes_reports_bad_bytes() {
    let dir = fixtures_dir().join("clip/tiny-quickgelu");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let (cfg, w, tok) = (
        read("config.json"),
        read("model.safetensors"),
        read("tokenizer.json"),
    );
    assert!(ClipModel::from_bytes(&cfg, &[&w], &tok).is_ok());
    let e = ClipModel::from_bytes(b"[]", &[&w], &tok).err().unwrap();
    assert!(matches!(e, ClipError::Json { .. }), "{e:?}");
    let e = ClipModel::from_bytes(&cfg, &[], &tok).err().unwrap();
    assert!(e.to_string().contains("no safetensors"), "{e}");
    let e = ClipModel::from_bytes(&cfg, &[&w[..100]], &tok)
        .err()
        .unwrap();
    assert!(e.to_string().contains("safetensors shard 0"), "{e}");
    let e = ClipModel::from_bytes(&cfg, &[&w, &w], &tok).err().unwrap();
    assert!(e.to_string().contains("also in"), "{e}");
}

//! `fisao --backend cpu|gpu|auto` end to end (feature `cli`, which brings
//! `gpu`): on lavapipe the `gpu` backend reports itself and agrees with the
//! CPU; with no Vulkan driver at all `gpu` fails with the `--backend cpu`
//! hint and `auto` falls back to the CPU.
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const TEXT: &str = "A cat sits next to a dog and a bowl.";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// `fisao score --json` on the tiny fixture with `--backend backend`;
/// `no_driver` hides every Vulkan driver (and the GL backend) from wgpu.
fn score(backend: &str, no_driver: bool) -> Output {
    let model = fixtures().join("clip/tiny-quickgelu");
    let image = fixtures().join("images/chelsea.png");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fisao"));
    cmd.args(["score", "--json", "--backend", backend, "--model"])
        .arg(&model)
        .arg("--image")
        .arg(&image)
        .args(["--text", TEXT]);
    if no_driver {
        // The Vulkan loader reads only these manifests (both names: older
        // and newer loaders); WGPU_BACKEND keeps wgpu off EGL/GL, where
        // Mesa's llvmpipe would otherwise show up as an adapter.
        let none = std::env::temp_dir().join("fisao-no-such-icd.json");
        cmd.env("VK_ICD_FILENAMES", &none)
            .env("VK_DRIVER_FILES", &none)
            .env("WGPU_BACKEND", "vulkan");
    }
    cmd.output().expect("run fisao")
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "fisao failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

fn skip_gpu() -> bool {
    std::env::var_os("FISAO_SKIP_GPU_TESTS").is_some()
}

#[test]
fn gpu_backend_reports_itself_and_agrees_with_the_cpu() {
    if skip_gpu() {
        return;
    }
    let cpu = json(&score("cpu", false));
    let gpu = json(&score("gpu", false));
    assert_eq!(cpu["backend"], "cpu");
    assert!(cpu.get("adapter").is_none());
    assert_eq!(gpu["backend"], "gpu");
    let adapter = gpu["adapter"].as_str().expect("adapter named");
    assert!(adapter.contains("Vulkan"), "{adapter}");
    let mentions = |v: &Value| -> Vec<(String, f64)> {
        v["mentions"]
            .as_array()
            .expect("mentions")
            .iter()
            .map(|m| {
                let text = m["text"].as_str().expect("text").to_string();
                (text, m["score"].as_f64().expect("score"))
            })
            .collect()
    };
    let (c, g) = (mentions(&cpu), mentions(&gpu));
    assert_eq!(c.len(), 3, "{c:?}");
    assert_eq!(
        c.iter().map(|m| &m.0).collect::<Vec<_>>(),
        g.iter().map(|m| &m.0).collect::<Vec<_>>()
    );
    // cosine100 scores: f16 on lavapipe, so within 1e-2 of 100.
    for ((_, a), (_, b)) in c.iter().zip(&g) {
        assert!((a - b).abs() <= 1.0, "cpu {a} vs gpu {b}");
    }
    let (a, b) = (
        cpu["sentence_score"].as_f64().expect("sentence"),
        gpu["sentence_score"].as_f64().expect("sentence"),
    );
    assert!((a - b).abs() <= 1.0, "sentence: cpu {a} vs gpu {b}");
}

#[test]
fn no_adapter_is_an_error_that_suggests_the_cpu_backend() {
    let out = score("gpu", true);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no GPU adapter found"), "{err}");
    assert!(err.contains("--backend cpu"), "{err}");
    assert!(out.stdout.is_empty());
    // `auto` takes the CPU path instead.
    let auto = json(&score("auto", true));
    assert_eq!(auto["backend"], "cpu");
}

#[test]
fn unknown_backend_is_a_usage_error() {
    let out = score("tpu", false);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cpu") && err.contains("gpu") && err.contains("auto"),
        "{err}"
    );
}

//! `cargo xtask test`: every test of every crate and feature set, plus the
//! portability builds. `.ci/run` calls exactly this.

use crate::{cmd, setup};
use anyhow::{Result, bail};

/// Runs the whole suite. `--skip-torch` leaves out gpu-train (no libtorch).
pub fn run(args: &[String]) -> Result<()> {
    let mut skip_torch = false;
    for arg in args {
        match arg.as_str() {
            "--skip-torch" => skip_torch = true,
            other => bail!("cargo xtask test: unknown option {other:?}"),
        }
    }
    let installed = setup::setup_all()?;
    let root = setup::workspace_root();
    let step = |name: &str| eprintln!("\nxtask: === {name} ===");

    step("vocabulary tables are what `cargo xtask vocab` generates");
    if crate::vocab::wordnet_installed() {
        crate::vocab::run(&["--check".to_string()])?;
    } else {
        eprintln!(
            "xtask: skipped: WordNet 3.0 is not at {}",
            crate::vocab::WORDNET_DIR
        );
    }

    step("workspace tests (default members, default features)");
    cmd::run(cmd::cargo(&root).args(["test", "--workspace", "--exclude", "gpu-train"]))?;

    step("benches compile (criterion benches are run by `cargo bench`, not here)");
    cmd::run(cmd::cargo(&root).args(["check", "-p", "fisao-benches", "--benches"]))?;

    step("reward-core without default features (no_std + alloc)");
    cmd::run(cmd::cargo(&root).args(["test", "-p", "reward-core", "--no-default-features"]))?;
    // The `gpu` tests run on lavapipe; a private XDG_RUNTIME_DIR silences its warning.
    let xdg = std::env::temp_dir().join(format!("fisao-xdg-{}", std::process::id()));
    std::fs::create_dir_all(&xdg)?;
    cmd::run(cmd::cargo(&root).env("XDG_RUNTIME_DIR", &xdg).args([
        "test",
        "-p",
        "reward-core",
        "--all-features",
    ]))?;

    for target in setup::RUST_TARGETS {
        step(&format!("reward-core builds for {target}"));
        cmd::run(cmd::cargo(&root).args([
            "build",
            "-p",
            "reward-core",
            "--no-default-features",
            "--target",
            target,
        ]))?;
    }
    // The web page's feature set: the CLIP verifier on WebGPU (no threads).
    step("reward-core gpu (WebGPU) builds for wasm32-unknown-unknown");
    cmd::run(cmd::cargo(&root).args([
        "build",
        "-p",
        "reward-core",
        "--no-default-features",
        "--features",
        "gpu",
        "--target",
        "wasm32-unknown-unknown",
    ]))?;

    step("the highlighter page in headless Chromium (WASM; WebGPU on SwiftShader)");
    crate::web_tests::run(None)?;

    if skip_torch {
        eprintln!("\nxtask: gpu-train skipped (--skip-torch)");
    } else {
        step("gpu-train on libtorch (PyTorch 2.11.0 venv)");
        let mut cargo = cmd::cargo(&root);
        setup::torch_env(&mut cargo, &installed.torch_venv);
        cmd::run(cargo.args(["test", "-p", "gpu-train"]))?;
    }
    eprintln!("\nxtask: all tests passed");
    Ok(())
}

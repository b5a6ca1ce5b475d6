//! `cargo xtask setup`: installs what the tests need, pinned and idempotent.
//! Large things (the PyTorch venv) live in a cache outside the clone
//! (`$FISAO_CACHE`, default `~/.cache/fisao-rs`) so warm runs are fast.

use crate::cmd;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Rust targets `reward-core` must build for (no_std portability checks).
pub const RUST_TARGETS: &[&str] = &["wasm32-unknown-unknown", "thumbv7em-none-eabihf"];

/// Debian packages: WordNet 3.0 for the vocabulary check; Mesa's software
/// Vulkan (lavapipe) and the loader for the `gpu` tests.
const APT_PACKAGES: &[&str] = &["wordnet-base", "mesa-vulkan-drivers", "libvulkan1"];

const TORCH_VENV: &str = "venv-torch-2.11.0";

/// Paths that later steps need.
pub struct Installed {
    /// The venv whose `torch` package provides libtorch for tch.
    pub torch_venv: PathBuf,
}

/// The workspace root (the folder holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    // `cargo run` sets CARGO_MANIFEST_DIR for the process; prefer it to the
    // compile-time value, which goes stale when a cached target dir built in
    // another checkout is reused (cargo's fingerprints survive relocation).
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Where large installs are cached, outside the clone.
pub fn cache_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("FISAO_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var("HOME").context("neither FISAO_CACHE nor HOME is set")?;
    Ok(Path::new(&home).join(".cache/fisao-rs"))
}

/// Installs everything; each step is skipped when already done.
pub fn setup_all() -> Result<Installed> {
    rust_targets()?;
    apt_packages(APT_PACKAGES)?;
    crate::web_setup::setup()?;
    let torch_venv = torch_venv()?;
    Ok(Installed { torch_venv })
}

fn rust_targets() -> Result<()> {
    let installed = cmd::output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    let missing: Vec<&str> = RUST_TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    cmd::run(
        Command::new("rustup")
            .args(["target", "add"])
            .args(&missing),
    )
}

/// Installs the Debian packages that are not installed yet.
pub fn apt_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    cmd::run(Command::new("apt-get").arg("update").arg("-q"))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Creates the PyTorch venv when its stamp does not match the pinned
/// requirements, and returns its path.
pub fn torch_venv() -> Result<PathBuf> {
    let root = workspace_root();
    let requirements = root.join("xtask/requirements-torch.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let venv = cache_dir()?.join(TORCH_VENV);
    let stamp = venv.join("fisao-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(venv);
    }
    std::fs::create_dir_all(venv.parent().unwrap())?;
    eprintln!(
        "xtask: installing PyTorch into {} (about 5 GB, a few minutes)",
        venv.display()
    );
    if !venv.join("bin/python").exists() {
        cmd::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    let pip = venv.join("bin/pip");
    cmd::run(
        Command::new(&pip)
            .args(["install", "-q", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
    )?;
    if !venv.join("bin/python").exists() {
        bail!(
            "the venv at {} has no python after pip install",
            venv.display()
        );
    }
    std::fs::write(&stamp, wanted)?;
    Ok(venv)
}

/// Sets the variables tch's build script and test binaries need to find
/// libtorch in the venv. Keep them identical for build and test, or
/// torch-sys rebuilds.
pub fn torch_env(cmd: &mut Command, venv: &Path) {
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("{}:{path}", venv.join("bin").display()));
    cmd.env("LIBTORCH_USE_PYTORCH", "1");
    cmd.env("VIRTUAL_ENV", venv);
}

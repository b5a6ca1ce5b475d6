//! What the highlighter page and its browser tests need, installed by
//! `cargo xtask setup` (pinned, idempotent): wasm-bindgen-cli at the exact
//! version of the `wasm-bindgen` crate in Cargo.lock (cached outside the
//! clone), Debian's Chromium and Node.js, and the pinned npm packages of
//! `web/tests/browser` (playwright-core, which drives the system Chromium;
//! it never downloads a browser).

use crate::{cmd, setup};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

/// Debian packages: the browser the tests drive, and Node.js + npm to drive
/// it, each with the command that makes it unnecessary (a Node.js from
/// elsewhere, e.g. NodeSource's, bundles npm and conflicts with Debian's).
pub const APT_PACKAGES: &[(&str, &str)] = &[
    ("chromium", "/usr/bin/chromium"),
    ("nodejs", "node"),
    ("npm", "npm"),
];

/// The Chromium binary the tests launch.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Installs everything the page and its tests need.
pub fn setup() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(_, command)| {
            !cmd::succeeds(Command::new("sh").args(["-c", &format!("command -v {command}")]))
        })
        .map(|(package, _)| *package)
        .collect();
    setup::apt_packages(&missing)?;
    wasm_bindgen()?;
    npm_packages()?;
    Ok(())
}

/// The `wasm-bindgen` crate version pinned in Cargo.lock.
fn locked_wasm_bindgen_version() -> Result<String> {
    let lock = setup::workspace_root().join("Cargo.lock");
    let text =
        std::fs::read_to_string(&lock).with_context(|| format!("reading {}", lock.display()))?;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\"" {
            if let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
            {
                return Ok(v.trim_matches('"').to_string());
            }
        }
    }
    bail!("{} has no wasm-bindgen package", lock.display())
}

/// The wasm-bindgen binary matching Cargo.lock; `cargo install`s it into
/// `$FISAO_CACHE/wasm-bindgen-<version>` when missing (about 5 minutes).
pub fn wasm_bindgen() -> Result<PathBuf> {
    let version = locked_wasm_bindgen_version()?;
    let root = setup::cache_dir()?.join(format!("wasm-bindgen-{version}"));
    let bin = root.join("bin/wasm-bindgen");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!(
        "xtask: installing wasm-bindgen-cli {version} into {} (a few minutes)",
        root.display()
    );
    // Not --locked: its lock file pins a crate newer than the registry index has.
    let mut install = cmd::cargo(&setup::workspace_root());
    install
        .args(["install", "wasm-bindgen-cli", "--version"])
        .arg(format!("={version}"))
        .arg("--root")
        .arg(&root)
        // Its own target dir, so the workspace's build settings do not apply.
        .env("CARGO_TARGET_DIR", root.join("build"));
    cmd::run(&mut install)?;
    let _ = std::fs::remove_dir_all(root.join("build"));
    if !bin.exists() {
        bail!("cargo install wasm-bindgen-cli left no {}", bin.display());
    }
    Ok(bin)
}

/// The folder of the browser tests' Node package.
pub fn browser_tests_dir() -> PathBuf {
    setup::workspace_root().join("web/tests/browser")
}

/// `npm ci` when node_modules does not match package-lock.json.
fn npm_packages() -> Result<()> {
    let dir = browser_tests_dir();
    let lock = std::fs::read_to_string(dir.join("package-lock.json"))
        .with_context(|| format!("reading {}/package-lock.json", dir.display()))?;
    let stamp = dir.join("node_modules/.fisao-lock");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(lock.as_str()) {
        return Ok(());
    }
    cmd::run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&dir),
    )?;
    std::fs::write(&stamp, lock)?;
    Ok(())
}

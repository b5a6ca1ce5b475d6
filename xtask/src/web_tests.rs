//! The browser tests of the highlighter page (a step of `cargo xtask test`):
//! builds the page and the native `fisao` CLI, serves the page and the test
//! fixtures on 127.0.0.1, and runs `web/tests/browser/run.mjs` in headless
//! Chromium on the WASM and WebGPU (SwiftShader) backends. The script
//! compares the page's reports with `fisao score --json`.

use crate::{cmd, setup, web, web_setup};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// Runs the browser tests; `screenshot` saves the scored page there.
pub fn run(screenshot: Option<PathBuf>) -> Result<()> {
    let root = setup::workspace_root();
    web_setup::setup()?;
    let dist = web::build(web::GPU_DEFAULT)?;
    let fisao = native_cli(&root)?;
    let addr = web::serve_in_background(vec![
        ("/".to_string(), dist),
        ("/fixtures/".to_string(), root.join("tests/fixtures")),
    ])?;
    let mut node = Command::new("node");
    node.arg(web_setup::browser_tests_dir().join("run.mjs"))
        .current_dir(web_setup::browser_tests_dir())
        .env("BASE_URL", format!("http://{addr}/"))
        .env("ROOT", &root)
        .env("FISAO_BIN", &fisao)
        .env("CHROMIUM", web_setup::CHROMIUM);
    if !web::GPU_DEFAULT {
        node.env("BACKENDS", "wasm");
    }
    if let Some(s) = screenshot {
        node.env("SCREENSHOT", s);
    }
    cmd::run(&mut node).context("the browser tests failed")
}

/// The native `fisao` the page is compared with: `$FISAO_BIN` when set (a
/// binary built elsewhere), else built here with `--all-features`, the
/// binary `cargo test -p reward-core --all-features` (an earlier step of
/// `cargo xtask test`) already built, so nothing is rebuilt.
fn native_cli(root: &std::path::Path) -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("FISAO_BIN") {
        return Ok(PathBuf::from(bin));
    }
    cmd::run(cmd::cargo(root).args([
        "build",
        "-p",
        "reward-core",
        "--all-features",
        "--bin",
        "fisao",
    ]))?;
    Ok(web::target_dir().join("debug/fisao"))
}

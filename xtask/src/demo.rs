//! `cargo xtask demo [--world FILE] [--out DIR] [--seed N] [--threads N] [--quick]`:
//! installs the PyTorch venv if it is missing (the only thing the demo needs
//! beyond Rust), builds `fisao-demo` in release mode and runs it; every
//! option is passed through. See docs/demo.md.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{cmd, setup};

/// `fisao-demo`'s options that take a value (the study overrides included;
/// docs/demo.md lists them).
const OPTIONS: &[&str] = &[
    "--world",
    "--out",
    "--seed",
    "--threads",
    "--ppo-batches",
    "--ppo-lr",
    "--rollout-temperature",
    "--beta",
    "--eval-every",
    "--variants",
    "--repeats",
    "--score-range-sd",
    "--verifier-epochs",
    "--verifier-caption-weight",
    "--sft-epochs",
    "--remeasure",
];

/// Checks the options so a typo fails before a long build.
fn check(args: &[String]) -> Result<()> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--quick" || a == "-h" || a == "--help" {
            i += 1;
        } else if OPTIONS.contains(&a) {
            if i + 1 >= args.len() {
                bail!("{a} needs a value");
            }
            i += 2;
        } else {
            bail!(
                "unknown demo option {a:?}; options: {} --quick",
                OPTIONS.join(" ")
            );
        }
    }
    Ok(())
}

/// Runs the demo.
pub fn run(args: &[String]) -> Result<()> {
    check(args)?;
    let venv = setup::torch_venv()?;
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(setup::workspace_root())
        .args([
            "run",
            "--release",
            "--locked",
            "-p",
            "gpu-train",
            "--bin",
            "fisao-demo",
            "--",
        ])
        .args(args);
    setup::torch_env(&mut cargo, &venv);
    cmd::run(&mut cargo)
}

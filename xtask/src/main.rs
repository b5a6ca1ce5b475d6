//! `cargo xtask <command>`: the only entry points of fisao-rs.
//!
//! - `setup`: install what is missing (pinned, idempotent).
//! - `test`: `setup`, then every test of every crate and feature set.
//! - `vocab`: regenerate the entity vocabulary tables from WordNet 3.0.
//! - `web`: build the in-browser highlighter and serve it on 127.0.0.1.
//! - `demo`: FiSAO end to end on the synthetic world (docs/demo.md).

mod cmd;
mod demo;
mod setup;
mod test;
mod vocab;
mod web;
mod web_setup;
mod web_tests;

use anyhow::{Result, bail};

const USAGE: &str = "usage: cargo xtask <setup|test|vocab|web|demo> [options]

  setup   install what is missing: rust targets, Debian packages, the PyTorch 2.11.0 venv
  test    setup, then run every test of every crate and feature set
          (--skip-torch: leave out gpu-train)
  vocab   regenerate reward-core's entity vocabulary from WordNet 3.0 (--check: compare only)
  web     build the in-browser highlighter page and serve it on 127.0.0.1
          (--port N, default 8787; --models DIR: also serve DIR under /models/;
          --test [--screenshot PNG]: run only the browser tests)
  demo    FiSAO end to end on the synthetic world, on the CPU: verifier, SFT, baselines,
          PPO (none / sentence / token), evaluation, report
          (--world FILE --out DIR --seed N --threads N --quick)";

fn main() {
    if let Err(err) = run() {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        println!("{USAGE}");
        return Ok(());
    };
    let rest = &args[1..];
    match command.as_str() {
        "setup" => setup::setup_all().map(|_| ()),
        "test" => test::run(rest),
        "vocab" => vocab::run(rest),
        "web" => web::run(rest),
        "demo" => demo::run(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

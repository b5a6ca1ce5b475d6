//! `fisao`: FiSAO's command-line tool (feature `cli`).
//!
//! - `fisao embed vocab --model DIR`: text embeddings of every surface form of
//!   the entity vocabulary, cached as safetensors;
//! - `fisao embed images --model DIR <folder|list>`: image embeddings, cached;
//! - `fisao score --model DIR --image PATH --text "..."`: each object mention
//!   with its verifier score, eq. 8 reward and label, plus the sentence-level
//!   score; `--json` for machines, `--batch FILE.jsonl` for many;
//! - `fisao eval chair|pope|caption|figures`: the evaluation metrics.
//!
//! The command modules live in `src/cli/`; usage is in `docs/cli.md`.

#[path = "../cli/mod.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

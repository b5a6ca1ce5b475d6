//! Argument parsing and dispatch of the `fisao` binary (clap derive).
//!
//! Errors are `anyhow` chains printed as `error: ...` with their causes;
//! the exit status is 1 for any error, 2 for bad arguments (clap's own).

mod embed;
mod eval;
mod output;
mod score;
mod setup;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use reward_core::gpu::Backend;

/// FiSAO: token-level, CLIP-verified hallucination rewards.
#[derive(Parser, Debug)]
#[command(name = "fisao", version, about, long_about = None)]
struct Cli {
    /// When to colour terminal output (NO_COLOR is respected under `auto`).
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    color: ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compute and cache CLIP embeddings.
    #[command(subcommand)]
    Embed(EmbedCommand),
    /// Score the object mentions of a response against an image.
    Score(ScoreArgs),
    /// Evaluation metrics: CHAIR, POPE, caption metrics, figures.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
}

#[derive(Subcommand, Debug)]
enum EmbedCommand {
    /// Text embeddings of every surface form of the entity vocabulary.
    Vocab(EmbedVocabArgs),
    /// Image embeddings of a folder of images or a list file.
    Images(EmbedImagesArgs),
}

/// Where CLIP runs (`--backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The CPU path (the default: f32, the same numbers everywhere).
    Cpu,
    /// wgpu on a GPU (f16 where the adapter has shader-f16); no adapter is an error.
    Gpu,
    /// A hardware GPU when one opens, else the CPU.
    Auto,
}

impl From<BackendChoice> for Backend {
    fn from(b: BackendChoice) -> Self {
        match b {
            BackendChoice::Cpu => Self::Cpu,
            BackendChoice::Gpu => Self::Gpu,
            BackendChoice::Auto => Self::Auto,
        }
    }
}

/// Colour policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

#[derive(Args, Debug)]
struct EmbedVocabArgs {
    /// HF CLIP checkpoint folder (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// Text template, `{}` standing for the surface form.
    #[arg(long, default_value = "{}")]
    template: String,
    /// Output file.
    #[arg(long, short, default_value = "vocab_embeddings.safetensors")]
    out: PathBuf,
    /// Texts per text-tower call.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Where CLIP runs: cpu, gpu (wgpu) or auto.
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    backend: BackendChoice,
}

#[derive(Args, Debug)]
struct EmbedImagesArgs {
    /// HF CLIP checkpoint folder.
    #[arg(long)]
    model: PathBuf,
    /// A folder (its .png/.jpg/.jpeg/.webp files, sorted) or a text file
    /// with one image path per line (relative to the list's folder).
    input: PathBuf,
    /// Output file.
    #[arg(long, short, default_value = "image_embeddings.safetensors")]
    out: PathBuf,
    /// Images per image-tower call.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Where CLIP runs: cpu, gpu (wgpu) or auto.
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    backend: BackendChoice,
}

/// Arguments of `fisao score`.
#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// HF CLIP checkpoint folder. May be left out when both caches are
    /// given; then nothing runs a tower and there is no sentence score.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The image (single mode).
    #[arg(long, required_unless_present = "batch", conflicts_with = "batch")]
    pub image: Option<PathBuf>,
    /// The response text (single mode).
    #[arg(long, required_unless_present = "batch", conflicts_with = "batch")]
    pub text: Option<String>,
    /// JSON lines in: `{"image": PATH, "text": "..."}` per line (an `id`
    /// field is copied through); JSON lines out, one per input line.
    #[arg(long)]
    pub batch: Option<PathBuf>,
    /// Print JSON instead of the coloured report (batch mode always does).
    #[arg(long)]
    pub json: bool,
    /// Eq. 7 baselines (`baseline.json`) for rewards and labels; without
    /// it the documented uncalibrated defaults are used.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Score function: cosine100, dot or clipscore.
    #[arg(long, default_value = "cosine100")]
    pub score: String,
    /// Text template for object words.
    #[arg(long, default_value = "{}")]
    pub template: String,
    /// Vocabulary embedding cache from `fisao embed vocab`.
    #[arg(long)]
    pub vocab_cache: Option<PathBuf>,
    /// Image embedding cache from `fisao embed images`.
    #[arg(long)]
    pub image_cache: Option<PathBuf>,
    /// Skip the sentence-level score (it always runs the text tower).
    #[arg(long)]
    pub no_sentence_score: bool,
    /// Where CLIP runs: cpu, gpu (wgpu) or auto; `--json` reports which ran.
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    pub backend: BackendChoice,
}

/// Parses the command line, runs it, prints errors; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = output::Palette::new(cli.color);
    let result = match cli.command {
        Command::Embed(EmbedCommand::Vocab(a)) => embed::vocab(
            &a.model,
            &a.template,
            &a.out,
            a.batch_size,
            a.backend.into(),
        ),
        Command::Embed(EmbedCommand::Images(a)) => {
            embed::images(&a.model, &a.input, &a.out, a.batch_size, a.backend.into())
        }
        Command::Score(a) => score::run(&a, &color),
        Command::Eval(c) => eval::run(&c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

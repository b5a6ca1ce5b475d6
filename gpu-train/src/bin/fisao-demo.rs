//! `fisao-demo`: FiSAO end to end on a synthetic world (what `cargo xtask
//! demo` runs): trains the verifier, the SFT model, the baselines and the
//! three PPO variants, evaluates them on held-out images and writes the
//! report. See docs/demo.md.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use clap::Parser;
use gpu_train::demo::pipeline::{ALL_VARIANTS, DemoSpec, run};
use gpu_train::demo::report;
use gpu_train::world::World;
use reward_core::reward::{Repeats, RewardMode};

/// FiSAO end to end on the synthetic world.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// World file (TOML, docs/synthetic-world.md); default: the shipped worlds/default.toml.
    #[arg(long)]
    world: Option<PathBuf>,
    /// Output directory (report.md, results.json, figures, models).
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Seed of every model's initialisation, data order and sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// CPU threads (libtorch and the world generator); default: all cores.
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds-scale models and counts (a smoke run; numbers mean nothing).
    #[arg(long)]
    quick: bool,
    /// Rollout batches per PPO variant (default: the world's setting in
    /// `DemoSpec::for_world`; at most train images / batch size).
    #[arg(long)]
    ppo_batches: Option<u64>,
    /// Peak learning rate of the PPO adapters.
    #[arg(long, value_parser = positive)]
    ppo_lr: Option<f64>,
    /// Sampling temperature of the PPO rollouts of every variant (evaluation
    /// stays greedy).
    #[arg(long, value_name = "T", value_parser = positive)]
    rollout_temperature: Option<f64>,
    /// KL coefficient beta of every variant.
    #[arg(long, value_parser = non_negative)]
    beta: Option<f64>,
    /// Validation (checkpoint-selection) evaluation every this many batches.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    eval_every: Option<u64>,
    /// PPO variants to run, comma-separated from none, sentence, token
    /// (default: all three; the report's claims need all three).
    #[arg(long, value_delimiter = ',')]
    variants: Option<Vec<String>>,
    /// Repeated-mentions rule of the token reward: penalise, first or all
    /// (method.md section 6), or negative (-|eq. 8|, a study option).
    #[arg(long)]
    repeats: Option<String>,
    /// eq. 8's s_min / s_max at K standard deviations beyond the class means
    /// of the baselines instead of the observed extremes.
    #[arg(long, value_name = "K", value_parser = positive)]
    score_range_sd: Option<f64>,
    /// Passes of verifier training over the training split (enters the
    /// verifier's fingerprint, so the verifier and everything after it is retrained).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    verifier_epochs: Option<u64>,
    /// Weight of the verifier's caption loss next to its word loss (0 =
    /// object words only, the verifier before 2026-11-27 session 4).
    #[arg(long, value_name = "W", value_parser = non_negative)]
    verifier_caption_weight: Option<f64>,
    /// Passes of SFT over the training split.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    sft_epochs: Option<u64>,
    /// Re-measure the caption files `DIR/captions/*.jsonl` of an earlier run
    /// of this world against its ground truth (pair-partner rates included)
    /// and exit; no model is loaded.
    #[arg(long, value_name = "DIR")]
    remeasure: Option<PathBuf>,
}

/// A finite number above 0 (clap value parser: the error names the flag).
fn positive(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    (v.is_finite() && v > 0.0)
        .then_some(v)
        .ok_or_else(|| "expected a finite number above 0".into())
}

/// A finite number at or above 0 (clap value parser).
fn non_negative(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    (v.is_finite() && v >= 0.0)
        .then_some(v)
        .ok_or_else(|| "expected a finite number >= 0".into())
}

/// Applies the command line's overrides (clap has checked their ranges);
/// they enter the stage fingerprints (a stage and every stage after it) and
/// the report's settings through the spec.
fn apply_overrides(spec: &mut DemoSpec, args: &Args, world: &World) -> Result<()> {
    if let Some(n) = args.ppo_batches {
        let max = DemoSpec::max_ppo_batches(world, spec.ppo.batch_size);
        if n == 0 || n > max {
            bail!(
                "--ppo-batches {n}: expected 1..={max} (the training split holds {max} batches of {} distinct images)",
                spec.ppo.batch_size
            );
        }
        spec.ppo.batches = n;
    }
    if let Some(lr) = args.ppo_lr {
        spec.ppo.learning_rate = lr;
    }
    if let Some(t) = args.rollout_temperature {
        spec.ppo.temperature = t;
    }
    if let Some(b) = args.beta {
        spec.ppo.beta = b;
    }
    if let Some(e) = args.eval_every {
        spec.ppo.eval_every = e;
    }
    if let Some(r) = &args.repeats {
        spec.ppo.repeats = match r.as_str() {
            "penalise" => Repeats::Penalise,
            "first" => Repeats::First,
            "all" => Repeats::All,
            "negative" => Repeats::Negative,
            other => bail!("--repeats {other:?}: expected penalise, first, all or negative"),
        };
    }
    if let Some(k) = args.score_range_sd {
        spec.ppo.score_range_sd = Some(k);
    }
    if let Some(e) = args.verifier_epochs {
        spec.verifier.epochs = e;
    }
    if let Some(w) = args.verifier_caption_weight {
        spec.verifier.caption_weight = w;
    }
    if let Some(e) = args.sft_epochs {
        spec.sft.epochs = usize::try_from(e)?;
    }
    if let Some(names) = &args.variants {
        spec.variants = names
            .iter()
            .map(|n| match n.trim() {
                "none" => Ok(RewardMode::KlOnly),
                "sentence" => Ok(RewardMode::Sentence),
                "token" => Ok(RewardMode::Token),
                other => Err(anyhow!(
                    "--variants: unknown variant {other:?} (expected none, sentence or token)"
                )),
            })
            .collect::<Result<_>>()?;
        // Report order, each once, whatever order the command line used.
        spec.variants = ALL_VARIANTS
            .into_iter()
            .filter(|m| spec.variants.contains(m))
            .collect();
    }
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let world = match &args.world {
        Some(p) => World::from_file(p)?,
        None => World::default_world()?,
    };
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if let Some(dir) = &args.remeasure {
        println!(
            "{}",
            gpu_train::demo::eval::remeasure_dir(&world, dir, threads)?
        );
        return Ok(());
    }
    let mut spec = if args.quick {
        DemoSpec::tiny(&world, args.seed)
    } else {
        DemoSpec::for_world(&world, args.seed, threads)
    };
    apply_overrides(&mut spec, &args, &world)?;
    eprintln!(
        "world `{}` ({} classes), seed {}, {} threads -> {}",
        world.config().name,
        world.classes().len(),
        args.seed,
        spec.threads,
        args.out.display()
    );
    let results = run(&world, &spec, &args.out)?;
    println!("{}", report::table(&results));
    println!("{}", report::pair_table(&results));
    for (name, why) in &results.skipped {
        println!("{name} was not run: {why}");
    }
    for (claim, verdict) in report::claims(&results) {
        println!("[{}] {claim}", report::verdict_word(verdict));
    }
    if let Some((t, s)) = results.auroc {
        println!("AUROC hallucinated-mention detection: token {t:.3}, sentence {s:.3}");
    }
    println!("\nreport: {}", args.out.join("report.md").display());
    println!("results: {}", args.out.join("results.json").display());
    Ok(())
}

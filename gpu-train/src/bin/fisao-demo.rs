//! `fisao-demo`: FiSAO end to end on a synthetic world (what `cargo xtask
//! demo` runs): trains the verifier, the SFT model, the baselines and the
//! three PPO variants, evaluates them on held-out images and writes the
//! report. See docs/demo.md.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use gpu_train::demo::pipeline::{DemoSpec, run};
use gpu_train::demo::report;
use gpu_train::world::World;

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
    let spec = if args.quick {
        DemoSpec::tiny(&world, args.seed)
    } else {
        DemoSpec::for_world(&world, args.seed, threads)
    };
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
    for (claim, holds) in report::claims(&results) {
        println!(
            "[{}] {claim}",
            if holds { "holds" } else { "does NOT hold" }
        );
    }
    if let Some((t, s)) = results.auroc {
        println!("AUROC hallucinated-mention detection: token {t:.3}, sentence {s:.3}");
    }
    println!("\nreport: {}", args.out.join("report.md").display());
    println!("results: {}", args.out.join("results.json").display());
    Ok(())
}

//! `fisao-train`: FiSAO training on LLaVA-1.5 (docs/trainer.md).
//!
//! ```text
//! fisao-train baseline --config run.toml [--out DIR]      # eq. 7 + Figure 1
//! fisao-train ppo --config run.toml [--reward token|sentence|none] [--resume]
//! fisao-train config [--config run.toml]                  # the resolved config
//! ```

mod bench;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand, ValueEnum};
use gpu_train::llava::{
    DEFAULT_TARGET, LlavaModel, LlavaTokenizer, LoadOptions, LoraConfig, LoraTarget, SamplingConfig,
};
use gpu_train::trainer::config::TrainConfig;
use gpu_train::trainer::ppo::Trainer;
use gpu_train::trainer::task::{CacheVerifier, CocoTask};
use gpu_train::trainer::{baseline, data};
use indicatif::{ProgressBar, ProgressStyle};
use reward_core::baseline::Baselines;
use reward_core::reward::{RewardMode, TokenRewarder};
use reward_core::vocab::{Expansion, Vocabulary};

#[derive(Parser)]
#[command(
    name = "fisao-train",
    about = "FiSAO: token-level, CLIP-verified PPO for LLaVA"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Reward {
    Token,
    Sentence,
    None,
}

#[derive(clap::Args)]
struct Common {
    /// TOML configuration (defaults are the paper's).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Skip and count bad samples instead of failing.
    #[arg(long)]
    skip_bad_samples: bool,
    /// Use only the first N samples.
    #[arg(long)]
    max_samples: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Eq. 7 baselines from SFT rollouts, and the Figure 1 histogram.
    Baseline {
        #[command(flatten)]
        common: Common,
        /// Output folder (default: <train.out_dir>/baseline).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// PPO training.
    Ppo {
        #[command(flatten)]
        common: Common,
        /// Reward ablation (paper Table 4).
        #[arg(long, value_enum)]
        reward: Option<Reward>,
        /// Continue from the run's latest checkpoint.
        #[arg(long)]
        resume: bool,
        /// Stop after this many rollout batches (the run can be resumed).
        #[arg(long)]
        max_batches: Option<u64>,
    },
    /// Device check: one PPO iteration of a random-weight LLaVA, timed by phase.
    Bench {
        /// Tiny shapes on the CPU (self-test) instead of 7B-shaped bf16 on the GPU.
        #[arg(long)]
        tiny: bool,
        /// Rollout batch size.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// New tokens per response (generation runs to this length: EOS is suppressed).
        #[arg(long, default_value_t = 256)]
        new_tokens: i64,
        /// LoRA rank (alpha = 2 r).
        #[arg(long, default_value_t = 128)]
        lora_r: i64,
    },
    /// Print the resolved configuration.
    Config {
        #[command(flatten)]
        common: Common,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn resolve(common: &Common, reward: Option<Reward>) -> Result<TrainConfig> {
    let mut cfg = match &common.config {
        Some(p) => TrainConfig::from_file(p)?,
        None => TrainConfig::default(),
    };
    cfg.data.skip_bad_samples |= common.skip_bad_samples;
    if let Some(n) = common.max_samples {
        cfg.data.max_samples = n;
    }
    if let Some(r) = reward {
        cfg.reward.mode = match r {
            Reward::Token => RewardMode::Token,
            Reward::Sentence => RewardMode::Sentence,
            Reward::None => RewardMode::KlOnly,
        };
    }
    cfg.validate()?;
    println!("# resolved configuration\n{}", cfg.to_toml()?);
    Ok(cfg)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Bench {
            tiny,
            batch,
            new_tokens,
            lora_r,
        } => bench::run(tiny, batch, new_tokens, lora_r),
        Command::Config { common } => resolve(&common, None).map(|_| ()),
        Command::Baseline { common, out } => {
            let cfg = resolve(&common, None)?;
            let out = out.unwrap_or_else(|| cfg.train.out_dir.join("baseline"));
            run_baseline(&cfg, &out)
        }
        Command::Ppo {
            common,
            reward,
            resume,
            max_batches,
        } => {
            let cfg = resolve(&common, reward)?;
            run_ppo(cfg, resume, max_batches)
        }
    }
}

fn load_task(cfg: &TrainConfig, model: &LlavaModel, sentence: bool) -> Result<CocoTask> {
    let vocab = Vocabulary::builtin(Expansion::Fisao);
    let matcher = reward_core::Matcher::new(&vocab);
    let dataset = data::load(&cfg.data, &vocab, &matcher)?;
    if dataset.skipped.total() > 0 {
        tracing::warn!("skipped samples: {:?}", dataset.skipped);
    }
    tracing::info!(
        "{} samples, {} images with ground truth",
        dataset.samples.len(),
        dataset.ground_truth.len()
    );
    let v = &cfg.verifier;
    let verifier = CacheVerifier::load(
        &v.text_cache,
        &v.image_cache,
        &v.score,
        v.clip_model.as_deref(),
    )?;
    let tok_path = cfg
        .model
        .tokenizer
        .clone()
        .unwrap_or_else(|| cfg.model.path.join("tokenizer.json"));
    let mc = &model.config;
    let tokenizer = LlavaTokenizer::from_file(
        &tok_path,
        mc.image_token_id,
        mc.image_tokens_per_image() as usize,
    )?;
    let size = u32::try_from(mc.vision.image_size).context("vision image_size")?;
    Ok(CocoTask::new(
        dataset, tokenizer, size, &vocab, verifier, sentence,
    ))
}

fn load_model(cfg: &TrainConfig, lora: bool) -> Result<LlavaModel> {
    let mut opts = LoadOptions::for_device(gpu_train::device::default_device());
    if lora {
        opts.lora = Some(LoraConfig {
            r: cfg.model.lora_r,
            alpha: cfg.model.lora_alpha,
            dropout: cfg.model.lora_dropout,
            target: LoraTarget::Regex(DEFAULT_TARGET.into()),
            use_rslora: false,
        });
        opts.value_head = true;
    }
    tracing::info!("loading {} on {:?}", cfg.model.path.display(), opts.device);
    LlavaModel::load(&cfg.model.path, &opts)
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template(&format!(
        "{what} {{bar:40}} {{pos}}/{{len}} [{{elapsed_precise}} < {{eta_precise}}] {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb
}

fn run_baseline(cfg: &TrainConfig, out: &Path) -> Result<()> {
    let model = load_model(cfg, false)?;
    let task = load_task(cfg, &model, false)?;
    let mut sampling =
        SamplingConfig::greedy(&model, cfg.train.max_new_tokens).without_image_token(&model);
    sampling.temperature = cfg.train.temperature;
    sampling.top_p = cfg.train.top_p;
    sampling.seed = Some(cfg.train.seed);
    tch::manual_seed(cfg.train.seed as i64);
    let pb = bar(
        gpu_train::trainer::rollout::Task::len(&task) as u64,
        "baseline",
    );
    let scores = baseline::collect(&model, &task, cfg.train.batch_size, &sampling, |n| {
        pb.inc(n as u64)
    })?;
    pb.finish();
    let info = task.verifier().info(&cfg.verifier.model_name);
    for p in baseline::write(out, &info, &scores)? {
        println!("wrote {}", p.display());
    }
    Ok(())
}

fn read_baseline(path: &Path) -> Result<Baselines> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a valid baseline.json", path.display()))
}

fn run_ppo(cfg: TrainConfig, resume: bool, max_batches: Option<u64>) -> Result<()> {
    let model = load_model(&cfg, true)?;
    let sentence = cfg.reward.mode == RewardMode::Sentence;
    let task = load_task(&cfg, &model, sentence)?;
    let baselines = match cfg.reward.mode {
        RewardMode::Token => Some(read_baseline(&cfg.verifier.baseline)?),
        RewardMode::Sentence => Some(read_baseline(&cfg.verifier.sentence_baseline)?),
        RewardMode::KlOnly => None,
    };
    if let Some(b) = &baselines {
        b.verifier
            .check_same(&task.verifier().info(&b.verifier.model))
            .map_err(|e| anyhow!("baseline vs caches: {e}"))?;
    }
    let rewarder = TokenRewarder::from_baselines(cfg.reward.clone(), baselines.as_ref())
        .map_err(|e| anyhow!("reward: {e}"))?;
    let out = cfg.train.out_dir.clone();
    let tok = task.tokenizer().inner().clone();
    let skipped = task.data.skipped.total();
    let mut trainer = Trainer::new(cfg, &model, &tok, &task, rewarder, &out)?;
    trainer.state.skipped_samples = skipped;
    if resume && !trainer.resume()? {
        tracing::warn!(
            "--resume: no checkpoint in {}, starting fresh",
            out.display()
        );
    }
    let pb = bar(trainer.total_batches(), "ppo");
    pb.set_position(trainer.state.batches_done);
    trainer.run(max_batches, |m| {
        pb.inc(1);
        pb.set_message(format!(
            "reward {:.3} kl {:.3} halluc {:.2}",
            m.reward, m.kl, m.hallucination_rate
        ));
        tracing::info!(
            batch = m.batch,
            reward = m.reward,
            kl = m.kl,
            clip_frac = m.clip_frac,
            "batch done"
        );
    })?;
    pb.finish();
    Ok(())
}

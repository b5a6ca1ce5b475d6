//! `fisao eval chair|pope|caption|figures`: thin wrappers over
//! `reward_core::metrics` (docs/evaluation.md). Each command reads its
//! files, calls the library entry point and prints either a table (default)
//! or the library's report as JSON (`--json`). Errors are the library's
//! `EvalError` messages, which name the file, line, image id or field.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use reward_core::metrics::analysis::{self, ScoredOutput};
use reward_core::metrics::caption::meteor::MeteorConfig;
use reward_core::metrics::caption::{self, CaptionReport, Meteor};
use reward_core::metrics::chair::{self, ChairMode, ChairReport};
use reward_core::metrics::coco::{self, CocoAnnotations};
use reward_core::metrics::pope::{self, AnswerParsing, PopeReport};
use serde_json::json;

/// The `fisao eval` subcommands.
#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// CHAIR_s, CHAIR_i and recall of generated captions (COCO annotations).
    Chair(ChairArgs),
    /// POPE accuracy, precision, recall, F1 and yes-ratio of yes/no answers.
    Pope(PopeArgs),
    /// BLEU-1..4, ROUGE-L, CIDEr-D and METEOR (when Java and the jar exist).
    Caption(CaptionArgs),
    /// Figures 1, 2 and 4 of the paper as SVG files, with their numbers.
    Figures(FiguresArgs),
}

/// CHAIR implementation (see docs/evaluation.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// chair.py, quirks included.
    Reference,
    /// The project's matcher, quirks repaired.
    Fixed,
}

/// Arguments of `fisao eval chair`.
#[derive(Args, Debug)]
pub struct ChairArgs {
    /// Generated captions: JSON lines `{"image_id": 42, "caption": "..."}`.
    #[arg(long)]
    pub captions: PathBuf,
    /// Folder with COCO `instances_*.json` and `captions_*.json`.
    #[arg(long)]
    pub annotations: PathBuf,
    /// Which CHAIR implementation to run.
    #[arg(long, value_enum, default_value_t = ModeArg::Reference)]
    pub mode: ModeArg,
    /// Print the full report (per caption too) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `fisao eval pope`.
#[derive(Args, Debug)]
pub struct PopeArgs {
    /// Answers: JSON lines `{"question_id": .., "answer": "...", "label": "yes"|"no"}`.
    #[arg(long)]
    pub answers: PathBuf,
    /// lmms-eval's reading: the answer must be exactly "yes" or "no".
    #[arg(long)]
    pub strict: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `fisao eval caption`.
#[derive(Args, Debug)]
pub struct CaptionArgs {
    /// Generated captions: JSON lines, one per image.
    #[arg(long)]
    pub captions: PathBuf,
    /// Folder whose `captions_*.json` files hold the human references.
    #[arg(long)]
    pub annotations: PathBuf,
    /// meteor-1.5.jar (default: $FISAO_METEOR_JAR, then pycocoevalcap's copy).
    #[arg(long, conflicts_with = "no_meteor")]
    pub meteor_jar: Option<PathBuf>,
    /// Do not run METEOR (it needs Java and takes seconds to start).
    #[arg(long)]
    pub no_meteor: bool,
    /// Print the full report (per image too) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `fisao eval figures`.
#[derive(Args, Debug)]
pub struct FiguresArgs {
    /// Scored outputs (JSON lines; see docs/evaluation.md), before training.
    #[arg(long)]
    pub scored: PathBuf,
    /// Scored outputs after training (needed for Figure 4).
    #[arg(long)]
    pub after: Option<PathBuf>,
    /// Folder for figure1.svg, figure2.svg, figure4.svg (created if missing).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Figures to draw (1, 2, 4; repeatable). Default: 1 and 2, plus 4 when
    /// `--after` is given.
    #[arg(long = "figure", value_parser = ["1", "2", "4"])]
    pub figures: Vec<String>,
    /// Print the numbers as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs one `fisao eval` subcommand.
pub fn run(cmd: &EvalCommand) -> Result<()> {
    match cmd {
        EvalCommand::Chair(a) => run_chair(a),
        EvalCommand::Pope(a) => run_pope(a),
        EvalCommand::Caption(a) => run_caption(a),
        EvalCommand::Figures(a) => run_figures(a),
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn label(path: &Path) -> String {
    path.display().to_string()
}

fn run_chair(a: &ChairArgs) -> Result<()> {
    let captions = coco::parse_captions_jsonl(&label(&a.captions), &read(&a.captions)?)?;
    let ann = CocoAnnotations::load_dir(&a.annotations)?;
    let mode = match a.mode {
        ModeArg::Reference => ChairMode::Reference,
        ModeArg::Fixed => ChairMode::Fixed,
    };
    let report = chair::evaluate(&captions, &ann, mode)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", chair_table(&report));
    }
    Ok(())
}

/// Fixed-width two-column table of `(name, value)` rows.
fn table(title: &str, rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut s = format!("{title}\n");
    for (k, v) in rows {
        let _ = writeln!(s, "  {k:<width$}  {v:>10}");
    }
    s
}

/// Metrics are printed with 4 decimals in tables; `--json` gives full precision.
fn f(x: f64) -> String {
    format!("{x:.4}")
}

fn chair_table(r: &ChairReport) -> String {
    let mode = match r.mode {
        ChairMode::Reference => "reference",
        ChairMode::Fixed => "fixed",
    };
    table(
        &format!("CHAIR ({mode})"),
        &[
            ("captions", r.n_captions.to_string()),
            ("mentions", r.n_mentions.to_string()),
            ("hallucinated", r.n_hallucinated.to_string()),
            ("CHAIR_s", f(r.chair_s)),
            ("CHAIR_i", f(r.chair_i)),
            ("recall", f(r.recall)),
            ("mentions/caption", f(r.mentions_per_caption)),
            ("repeats/caption", f(r.repeats_per_caption)),
        ],
    )
}

fn run_pope(a: &PopeArgs) -> Result<()> {
    let items = pope::parse_answers_jsonl(&label(&a.answers), &read(&a.answers)?)?;
    let parsing = if a.strict {
        AnswerParsing::Strict
    } else {
        AnswerParsing::Robust
    };
    let report = pope::evaluate(&items, parsing)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", pope_table(&report));
    }
    Ok(())
}

fn pope_table(r: &PopeReport) -> String {
    let parsing = match r.parsing {
        AnswerParsing::Robust => "robust",
        AnswerParsing::Strict => "strict",
    };
    table(
        &format!("POPE ({parsing} answer parsing)"),
        &[
            ("questions", r.n.to_string()),
            ("unparsed", r.n_unparsed.to_string()),
            ("accuracy", f(r.accuracy)),
            ("precision", f(r.precision)),
            ("recall", f(r.recall)),
            ("F1", f(r.f1)),
            ("yes-ratio", f(r.yes_ratio)),
            ("label yes-ratio", f(r.label_yes_ratio)),
        ],
    )
}

/// Reference captions only: `eval caption` needs no instance files, so it
/// reads the `captions_*.json` files itself instead of `load_dir`.
fn load_references(dir: &Path) -> Result<CocoAnnotations> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read folder {}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut ann = CocoAnnotations::default();
    let mut n = 0;
    for path in paths {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("captions_") && name.ends_with(".json") {
            ann.add_captions_json(&label(&path), &read(&path)?)?;
            n += 1;
        }
    }
    anyhow::ensure!(
        n > 0,
        "{}: no captions_*.json file with reference captions",
        dir.display()
    );
    Ok(ann)
}

fn run_caption(a: &CaptionArgs) -> Result<()> {
    let captions = coco::parse_captions_jsonl(&label(&a.captions), &read(&a.captions)?)?;
    let ann = load_references(&a.annotations)?;
    let items = caption::pair_with_references(&captions, &ann)?;
    let report = if a.no_meteor {
        caption::evaluate(&items)?
    } else {
        let config = match &a.meteor_jar {
            Some(jar) => MeteorConfig::discover()
                .map(|c| MeteorConfig {
                    jar: jar.clone(),
                    ..c
                })
                .or_else(|| {
                    Some(MeteorConfig {
                        java: std::env::var_os("JAVA")
                            .map_or_else(|| PathBuf::from("java"), PathBuf::from),
                        jar: jar.clone(),
                    })
                }),
            None => MeteorConfig::discover(),
        };
        caption::evaluate_with_meteor(&items, config.as_ref())?
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", caption_table(&report));
    }
    Ok(())
}

fn caption_table(r: &CaptionReport) -> String {
    let meteor = match &r.meteor {
        Meteor::Score { corpus, .. } => f(*corpus),
        Meteor::Unavailable(why) => format!("unavailable ({why})"),
    };
    table(
        "Caption metrics (pycocoevalcap 1.2)",
        &[
            ("images", r.n_images.to_string()),
            ("BLEU-1", f(r.bleu[0])),
            ("BLEU-2", f(r.bleu[1])),
            ("BLEU-3", f(r.bleu[2])),
            ("BLEU-4", f(r.bleu[3])),
            ("ROUGE-L", f(r.rouge_l)),
            ("CIDEr-D", f(r.cider_d)),
            ("METEOR", meteor),
        ],
    )
}

fn load_scored(path: &Path) -> Result<Vec<ScoredOutput>> {
    Ok(analysis::parse_scored_jsonl(&label(path), &read(path)?)?)
}

fn write_svg(dir: &Path, name: &str, svg: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn run_figures(a: &FiguresArgs) -> Result<()> {
    let wanted = |n: &str| {
        if a.figures.is_empty() {
            n != "4" || a.after.is_some()
        } else {
            a.figures.iter().any(|x| x == n)
        }
    };
    let before = load_scored(&a.scored)?;
    // Parse every input before writing anything, so a bad file leaves no
    // half-written output folder behind.
    let after = match &a.after {
        Some(p) => Some(load_scored(p)?),
        None if wanted("4") => anyhow::bail!("Figure 4 needs --after FILE.jsonl"),
        None => None,
    };
    let fig1 = wanted("1")
        .then(|| analysis::figure1(&before))
        .transpose()?;
    let fig2 = wanted("2")
        .then(|| analysis::figure2(&before))
        .transpose()?;
    let fig4 = match (&after, wanted("4")) {
        (Some(after), true) => Some(analysis::figure4(&before, after)?),
        _ => None,
    };
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut out = serde_json::Map::new();
    let mut rows = Vec::new();
    if let Some(f1) = &fig1 {
        let p = write_svg(&a.out, "figure1.svg", &f1.svg)?;
        out.insert(
            "figure1".into(),
            json!({"svg": p, "auroc_token": f1.auroc_token, "auroc_sentence": f1.auroc_sentence,
                   "n_correct": f1.n_correct, "n_hallucinated": f1.n_hallucinated}),
        );
        rows.push(("Figure 1 AUROC token", f(f1.auroc_token)));
        rows.push(("Figure 1 AUROC sentence", f(f1.auroc_sentence)));
        rows.push(("Figure 1 correct", f1.n_correct.to_string()));
        rows.push(("Figure 1 hallucinated", f1.n_hallucinated.to_string()));
    }
    if let Some(f2) = &fig2 {
        let p = write_svg(&a.out, "figure2.svg", &f2.svg)?;
        out.insert(
            "figure2".into(),
            json!({"svg": p, "r_bleu": f2.r_bleu, "r_rouge_l": f2.r_rouge_l, "n": f2.n}),
        );
        rows.push(("Figure 2 r(sentence, BLEU)", f(f2.r_bleu)));
        rows.push(("Figure 2 r(sentence, ROUGE-L)", f(f2.r_rouge_l)));
        rows.push(("Figure 2 captions", f2.n.to_string()));
    }
    if let Some(f4) = &fig4 {
        let p = write_svg(&a.out, "figure4.svg", &f4.svg)?;
        out.insert(
            "figure4".into(),
            json!({"svg": p, "mean_before": f4.mean_before, "mean_after": f4.mean_after}),
        );
        rows.push(("Figure 4 mean reward before", f(f4.mean_before)));
        rows.push(("Figure 4 mean reward after", f(f4.mean_after)));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!(
            "{}",
            table(&format!("Figures in {}", a.out.display()), &rows)
        );
    }
    Ok(())
}

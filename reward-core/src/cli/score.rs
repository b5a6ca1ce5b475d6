//! `fisao score`: object mentions of a response, each with its verifier
//! score (method.md section 4), eq. 8 reward and label, plus the
//! sentence-level score. Embeddings come from the caches when given (no
//! tower runs for a cached item) and from the model otherwise.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use reward_core::baseline::Baselines;
use reward_core::clip::cache::{CacheKind, EmbeddingCache, sha256_digest};
use reward_core::clip::image::{ImageLimits, decode_image, preprocess};
use reward_core::clip::score::{ScoreKind, Scorer, Template};
use reward_core::labels::{self, DEFAULT_BASELINE_NAME};
use reward_core::mentions::{Matcher, Mention};
use reward_core::reward::{RewardBounds, RewardConfig, TokenRewarder};
use reward_core::vocab::{Expansion, Vocabulary};
use serde::Serialize;

use super::ScoreArgs;
use super::output::{Palette, Tone};
use super::setup::{Loaded, load_cache, load_model};

/// One scored mention in the output.
#[derive(Serialize, Debug)]
struct MentionOut {
    text: String,
    /// Character offsets (Unicode scalar values, Python `str` indices).
    start: usize,
    end: usize,
    entity: String,
    score: f32,
    reward: f64,
    label: &'static str,
    /// A later mention of an entity already named (eq. 8 repeats rule).
    repeat: bool,
}

/// The `--json` object (one line per input in batch mode).
#[derive(Serialize, Debug)]
struct ReportOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    mentions: Vec<MentionOut>,
    sentence_score: Option<f32>,
    sentence_truncated: Option<bool>,
    /// `cpu` or `gpu`: where the CLIP towers ran (`cpu` when only caches
    /// were used).
    backend: &'static str,
    /// The GPU adapter, precision and graphics API when `backend` is `gpu`.
    #[serde(skip_serializing_if = "Option::is_none")]
    adapter: Option<String>,
    score_kind: String,
    template: String,
    baseline: String,
}

/// Everything a scoring run shares across inputs.
struct Ctx {
    loaded: Option<Loaded>,
    vocab_cache: Option<EmbeddingCache>,
    image_cache: Option<EmbeddingCache>,
    scorer: Scorer,
    template: Template,
    vocab: Vocabulary,
    matcher: Matcher,
    rewarder: TokenRewarder,
    bounds: RewardBounds,
    baseline_name: String,
    sentence: bool,
    limits: ImageLimits,
}

/// Entry point of `fisao score`.
pub fn run(a: &ScoreArgs, pal: &Palette) -> Result<()> {
    let ctx = Ctx::new(a)?;
    match &a.batch {
        Some(file) => batch(&ctx, file),
        None => {
            let (image, text) = (
                a.image.as_deref().unwrap_or(Path::new("")),
                a.text.as_deref().unwrap_or(""),
            );
            let report = ctx.score(image, text)?;
            if a.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print_report(&report, text, pal);
            }
            Ok(())
        }
    }
}

impl Ctx {
    fn new(a: &ScoreArgs) -> Result<Self> {
        let kind: ScoreKind = a.score.parse()?;
        let template = Template::new(&a.template)?;
        let backend = a.backend.into();
        let loaded = a
            .model
            .as_deref()
            .map(|dir| load_model(dir, backend))
            .transpose()?;
        let hash = loaded.as_ref().map(|l| l.hash.clone());
        let vocab_cache = a
            .vocab_cache
            .as_deref()
            .map(|p| load_cache(p, CacheKind::Vocab, hash.as_deref()))
            .transpose()?;
        let image_cache = a
            .image_cache
            .as_deref()
            .map(|p| load_cache(p, CacheKind::Images, hash.as_deref()))
            .transpose()?;
        if let Some(c) = &vocab_cache {
            c.check_template(&template)?;
        }
        if let (Some(c), Some(l)) = (&image_cache, &loaded) {
            c.check_preprocess(&l.preprocess)?;
        }
        let logit_scale = match (&loaded, &vocab_cache, &image_cache) {
            (Some(l), _, _) => l.model.logit_scale(),
            (None, Some(v), Some(i)) => {
                // No model to compare with: the two caches must agree with each other.
                if v.meta().model_hash != i.meta().model_hash {
                    bail!(
                        "the vocab cache ({}) and the image cache ({}) come from different models",
                        v.meta().model_hash,
                        i.meta().model_hash
                    );
                }
                v.meta().logit_scale
            }
            _ => bail!("--model is required unless both --vocab-cache and --image-cache are given"),
        };
        let model_hash = hash.or_else(|| vocab_cache.as_ref().map(|c| c.meta().model_hash.clone()));
        let scorer = Scorer { kind, logit_scale };
        let config = RewardConfig::default();
        let (bounds, baseline_name) = match &a.baseline {
            Some(p) => (
                baseline_bounds(p, &scorer, &template, model_hash.as_deref(), &config)?,
                p.display().to_string(),
            ),
            None => (
                labels::default_bounds(&scorer, None)
                    .map_err(|e| anyhow!("{e}; pass --baseline"))?,
                DEFAULT_BASELINE_NAME.to_string(),
            ),
        };
        let vocab = Vocabulary::builtin(Expansion::Fisao);
        let matcher = Matcher::new(&vocab);
        Ok(Self {
            sentence: loaded.is_some() && !a.no_sentence_score,
            loaded,
            vocab_cache,
            image_cache,
            scorer,
            template,
            vocab,
            matcher,
            rewarder: TokenRewarder::new(config, Some(bounds))?,
            bounds,
            baseline_name,
            limits: ImageLimits::default(),
        })
    }

    /// Scores one (image, response) pair.
    fn score(&self, image: &Path, text: &str) -> Result<ReportOut> {
        let image_emb = self.image_embedding(image)?;
        let mentions = self.matcher.find(text);
        let words: Vec<String> = mentions
            .iter()
            .map(|m| labels::mention_form(&text[m.start..m.end]))
            .collect();
        let text_embs = self.word_embeddings(&words, &mentions)?;
        let mut scores = Vec::with_capacity(mentions.len());
        for emb in &text_embs {
            scores.push(self.scorer.score(emb, &image_emb)?);
        }
        let out = self.mentions_out(text, &mentions, &scores)?;
        let model = self.loaded.as_ref().map(|l| &l.model);
        // The whole response (no template) against the image, as
        // `clip::score::sentence_score` does on the CPU path.
        let sentence = match model.filter(|_| self.sentence) {
            Some(m) => {
                let emb = m.embed_texts(&[text])?;
                let score = self.scorer.score(emb.embeddings.row(0), &image_emb)?;
                Some((score, emb.truncated.first().copied().unwrap_or(false)))
            }
            None => None,
        };
        Ok(ReportOut {
            id: None,
            image: None,
            mentions: out,
            sentence_score: sentence.map(|s| s.0),
            sentence_truncated: sentence.map(|s| s.1),
            backend: model.map_or("cpu", |m| m.backend_name()),
            adapter: model.and_then(|m| m.adapter()),
            score_kind: self.scorer.kind.to_string(),
            template: self.template.as_str().to_string(),
            baseline: self.baseline_name.clone(),
        })
    }

    /// From the image cache (by content digest) or the image tower.
    fn image_embedding(&self, path: &Path) -> Result<Vec<f32>> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading image {}", path.display()))?;
        if let Some(e) = self
            .image_cache
            .as_ref()
            .and_then(|c| c.image(&sha256_digest(&bytes)))
        {
            return Ok(e.to_vec());
        }
        let Some(l) = &self.loaded else {
            bail!(
                "{} is not in the image cache and no --model was given to embed it",
                path.display()
            );
        };
        let img = decode_image(&bytes, &path.display().to_string(), &self.limits)?;
        let pixels = preprocess(&img, &l.preprocess)?;
        Ok(l.model.embed_images(&pixels, 1)?.row(0).to_vec())
    }

    /// One text embedding per mention: cached form, else the text tower on
    /// the templated word.
    fn word_embeddings(&self, words: &[String], mentions: &[Mention]) -> Result<Vec<Vec<f32>>> {
        let mut out: Vec<Option<Vec<f32>>> = words
            .iter()
            .map(|w| {
                self.vocab_cache
                    .as_ref()
                    .and_then(|c| c.form(w))
                    .map(<[f32]>::to_vec)
            })
            .collect();
        let missing: Vec<usize> = (0..words.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let Some(l) = &self.loaded else {
                let m = &mentions[missing[0]];
                bail!(
                    "surface form {:?} (entity {}) is not in the vocab cache and no --model was given",
                    words[missing[0]],
                    self.entity_name(m)
                );
            };
            let texts: Vec<String> = missing
                .iter()
                .map(|&i| self.template.apply(&words[i]))
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let emb = l.model.embed_texts(&refs)?;
            for (row, &i) in missing.iter().enumerate() {
                out[i] = Some(emb.embeddings.row(row).to_vec());
            }
        }
        Ok(out.into_iter().map(|e| e.expect("filled above")).collect())
    }

    fn entity_name(&self, m: &Mention) -> String {
        self.vocab.entity_name(m.entity).unwrap_or("?").to_string()
    }

    /// Rewards through reward-core's eq. 8 rewarder (repeats rule included):
    /// each mention is one "token", with zero KL.
    fn mentions_out(
        &self,
        text: &str,
        mentions: &[Mention],
        scores: &[f32],
    ) -> Result<Vec<MentionOut>> {
        let rewards = labels::mention_rewards(&self.rewarder, mentions, scores)?;
        let mut seen = std::collections::BTreeSet::new();
        Ok(mentions
            .iter()
            .zip(scores)
            .enumerate()
            .map(|(i, (m, &score))| {
                let (start, end) = m.char_span(text).unwrap_or((m.start, m.end));
                MentionOut {
                    text: text[m.start..m.end].to_string(),
                    start,
                    end,
                    entity: self.entity_name(m),
                    score,
                    reward: rewards[i],
                    label: labels::label(self.bounds.grounding(f64::from(score))),
                    repeat: !seen.insert(m.entity),
                }
            })
            .collect())
    }
}

/// Eq. 8 bounds from a `baseline.json` (read here; checked by
/// reward-core's labelling rules, the same as the browser page's).
fn baseline_bounds(
    path: &Path,
    scorer: &Scorer,
    template: &Template,
    model_hash: Option<&str>,
    config: &RewardConfig,
) -> Result<RewardBounds> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading baselines {}", path.display()))?;
    let b: Baselines = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a valid baseline.json", path.display()))?;
    labels::baseline_bounds(&b, scorer, template, model_hash, config)
        .map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Input line of `--batch`.
#[derive(serde::Deserialize)]
struct BatchLine {
    image: PathBuf,
    text: String,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

/// Batch mode: one JSON object per input line; a line that fails gets
/// `{"line", "id", "error"}` and the run goes on (exit status 1 at the end).
fn batch(ctx: &Ctx, file: &Path) -> Result<()> {
    let f = std::fs::File::open(file)
        .with_context(|| format!("opening batch file {}", file.display()))?;
    let base = file.parent().unwrap_or(Path::new(""));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = 0usize;
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let result = serde_json::from_str::<BatchLine>(&line)
            .map_err(|e| anyhow!("{}:{}: {e}", file.display(), n + 1))
            .and_then(|b| {
                let mut r = ctx.score(&base.join(&b.image), &b.text)?;
                r.id = b.id;
                r.image = Some(b.image.display().to_string());
                Ok(r)
            });
        match result {
            Ok(r) => writeln!(out, "{}", serde_json::to_string(&r)?)?,
            Err(e) => {
                failed += 1;
                let id = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v.get("id").cloned());
                let err = serde_json::json!({"line": n + 1, "id": id, "error": format!("{e:#}")});
                writeln!(out, "{err}")?;
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} line(s) of {} failed (see their \"error\" fields)",
            file.display()
        );
    }
    Ok(())
}

/// The human-readable report.
fn print_report(r: &ReportOut, text: &str, pal: &Palette) {
    let tone = |label: &str| match label {
        "grounded" => Tone::Good,
        "uncertain" => Tone::Neutral,
        _ => Tone::Bad,
    };
    // The response with each mention in its label's colour.
    let mut shown = String::new();
    let mut at = 0;
    let chars: Vec<char> = text.chars().collect();
    for m in &r.mentions {
        shown.extend(&chars[at..m.start]);
        shown.push_str(&pal.paint(
            &chars[m.start..m.end].iter().collect::<String>(),
            tone(m.label),
        ));
        at = m.end;
    }
    shown.extend(&chars[at..]);
    println!("{shown}");
    println!();
    let width = r
        .mentions
        .iter()
        .map(|m| m.text.chars().count())
        .max()
        .unwrap_or(0);
    for m in &r.mentions {
        let repeat = if m.repeat {
            pal.paint(" (repeat)", Tone::Dim)
        } else {
            String::new()
        };
        println!(
            "  {:<width$}  {:>9}  score {:>8.3}  reward {:>+6.3}  {}{repeat}",
            m.text,
            format!("{}..{}", m.start, m.end),
            m.score,
            m.reward,
            pal.paint(m.label, tone(m.label)),
        );
    }
    if r.mentions.is_empty() {
        println!("  {}", pal.paint("no object mentions found", Tone::Dim));
    }
    if let Some(s) = r.sentence_score {
        let cut = if r.sentence_truncated == Some(true) {
            " (text truncated to CLIP's 77-token window)"
        } else {
            ""
        };
        println!("\nsentence score {s:.3}{cut}");
    }
    println!(
        "{}",
        pal.paint(
            &format!(
                "score {}, template {:?}, baselines: {}, backend {}",
                r.score_kind, r.template, r.baseline, r.backend
            ),
            Tone::Dim
        )
    );
}

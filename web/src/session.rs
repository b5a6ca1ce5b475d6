//! The highlighter's state, independent of which towers compute the
//! embeddings (CPU in WASM, or WebGPU): the current image embedding, the
//! text embeddings already computed (per template and surface form), an
//! optional precomputed vocabulary cache, and the report for a caption.
//!
//! Mirrors `Ctx::score` of `fisao score` (reward-core/src/cli/score.rs):
//! the same mentions, surface forms, score function, eq. 8 rewarder and
//! label rule; a caller first asks [`Session::plan`] which texts still need
//! the text tower, runs them (synchronously or not), hands them back with
//! [`Session::remember`], then builds the [`Report`].

use std::collections::HashMap;

use reward_core::clip::cache::{CacheKind, EmbeddingCache};
use reward_core::clip::score::{ScoreKind, Scorer, Template};
use reward_core::mentions::Matcher;
use reward_core::reward::{RewardConfig, TokenRewarder};
use reward_core::vocab::{Expansion, Vocabulary};
use serde::{Deserialize, Serialize};

use reward_core::baseline::Baselines;
use reward_core::reward::RewardBounds;

use reward_core::labels::{self, DEFAULT_BASELINE_NAME};

/// The page's controls.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Text template with one `{}` (default `"{}"`, as `fisao score`).
    pub template: String,
    /// Eq. 8 margin in score units; `None`: `fisao score`'s default (0.10
    /// cosine units with the default baselines, `RewardConfig`'s with a
    /// `baseline.json`).
    pub margin: Option<f64>,
    /// `cosine100` or `clipscore`.
    pub score: String,
    /// Also score the whole caption (one more text-tower run).
    pub sentence: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            template: "{}".into(),
            margin: None,
            score: "cosine100".into(),
            sentence: true,
        }
    }
}

impl Settings {
    /// Parses the page's settings JSON (missing keys take the defaults).
    pub fn from_json(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| format!("settings: {e}"))
    }
}

/// One mention in the report: `fisao score --json`'s fields plus UTF-16
/// offsets for the page and whether the vocabulary cache supplied it.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct MentionOut {
    /// The mention as written.
    pub text: String,
    /// Character offsets (Unicode scalar values), as `fisao score`.
    pub start: usize,
    /// End, exclusive.
    pub end: usize,
    /// UTF-16 offsets: JavaScript string indices.
    pub js_start: usize,
    /// End, exclusive.
    pub js_end: usize,
    /// The canonical entity.
    pub entity: String,
    /// The surface form that was embedded (through the template).
    pub form: String,
    /// Verifier score.
    pub score: f32,
    /// Eq. 8 object reward.
    pub reward: f64,
    /// `grounded`, `uncertain` or `likely hallucinated`.
    pub label: &'static str,
    /// A later mention of an entity already named.
    pub repeat: bool,
    /// The embedding came from the precomputed vocabulary cache.
    pub cached: bool,
}

/// Eq. 8 boundaries in score units, for the legend.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct BoundsOut {
    /// At or above: grounded.
    pub hi: f64,
    /// At or below: likely hallucinated.
    pub lo: f64,
    /// Scores are clamped to `[s_min, s_max]` for the reward.
    pub s_min: f64,
    /// Upper clamp.
    pub s_max: f64,
}

/// The report for one caption.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Report {
    /// Every mention, in order.
    pub mentions: Vec<MentionOut>,
    /// The whole caption's score, when asked for.
    pub sentence_score: Option<f32>,
    /// Whether CLIP's 77-token window cut the caption.
    pub sentence_truncated: Option<bool>,
    /// Which towers ran (`wasm-cpu`, `webgpu-f32`, ...).
    pub backend: String,
    /// The score function.
    pub score_kind: String,
    /// The template.
    pub template: String,
    /// The margin used, in score units.
    pub margin: f64,
    /// Where the baselines come from.
    pub baseline: String,
    /// The eq. 8 boundaries.
    pub bounds: BoundsOut,
}

/// What the towers must compute before [`Session::report`] can run.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Surface forms with no embedding yet for the template.
    pub forms: Vec<String>,
    /// The same forms through the template: the text-tower inputs.
    pub texts: Vec<String>,
}

/// A sentence-level score computed by the caller's towers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sentence {
    /// The score of the (possibly truncated) caption.
    pub score: f32,
    /// Whether the caption was cut to CLIP's window.
    pub truncated: bool,
}

/// The state of one loaded model.
pub struct Session {
    vocab: Vocabulary,
    matcher: Matcher,
    logit_scale: f32,
    dim: usize,
    model_hash: Option<String>,
    image: Option<Vec<f32>>,
    /// (template, form) -> text embedding, so a new margin or a repeated
    /// word does not run the text tower again.
    memo: HashMap<(String, String), Vec<f32>>,
    vocab_cache: Option<EmbeddingCache>,
    /// A `baseline.json` and its file name.
    baselines: Option<(Baselines, String)>,
}

impl Session {
    /// A session for a model with `exp(logit_scale)`, projection width
    /// `dim` and hash `sha256:...` (`None` when the towers cannot say; then
    /// no vocabulary cache can be checked, so none is accepted).
    pub fn new(logit_scale: f32, dim: usize, model_hash: Option<String>) -> Self {
        let vocab = Vocabulary::builtin(Expansion::Fisao);
        let matcher = Matcher::new(&vocab);
        Self {
            vocab,
            matcher,
            logit_scale,
            dim,
            model_hash,
            image: None,
            memo: HashMap::new(),
            vocab_cache: None,
            baselines: None,
        }
    }

    /// The model hash, `sha256:` + hex.
    pub fn model_hash(&self) -> Option<&str> {
        self.model_hash.as_deref()
    }

    /// Sets the current image's embedding.
    pub fn set_image_embedding(&mut self, embedding: Vec<f32>) -> Result<(), String> {
        if embedding.len() != self.dim {
            return Err(format!(
                "image embedding has {} values, the model projects to {}",
                embedding.len(),
                self.dim
            ));
        }
        self.image = Some(embedding);
        Ok(())
    }

    /// Forgets the image (a failed upload must not leave the old one scored).
    pub fn clear_image(&mut self) {
        self.image = None;
    }

    /// The current image embedding, if any.
    pub fn image_embedding(&self) -> Option<&[f32]> {
        self.image.as_deref()
    }

    /// Reads a vocabulary cache from `fisao embed vocab` and keeps it when it
    /// was made with this model. Returns a one-line description.
    pub fn set_vocab_cache(&mut self, bytes: &[u8], name: &str) -> Result<String, String> {
        let hash = self.model_hash.as_deref().ok_or_else(|| {
            format!(
                "{name}: this backend cannot hash the model, so it cannot check that the \
                 vocabulary cache belongs to it; use the WASM backend"
            )
        })?;
        let cache = EmbeddingCache::from_bytes(bytes, name).map_err(|e| e.to_string())?;
        cache
            .check_kind(CacheKind::Vocab)
            .map_err(|e| e.to_string())?;
        cache.check_model(hash).map_err(|e| e.to_string())?;
        let meta = cache.meta();
        let info = format!(
            "{} forms, template {:?}",
            meta.keys.len(),
            meta.template.as_deref().unwrap_or("{}")
        );
        self.vocab_cache = Some(cache);
        Ok(info)
    }

    /// Reads a `baseline.json` (docs/baseline-json.md) for rewards and
    /// labels; refused now when it is not object-level or names another
    /// model, and at scoring time when its score kind or template differ
    /// from the settings (as `fisao score --baseline`).
    pub fn set_baselines(&mut self, json: &str, name: &str) -> Result<String, String> {
        let b: Baselines = serde_json::from_str(json)
            .map_err(|e| format!("{name}: not a valid baseline.json: {e}"))?;
        let kind: ScoreKind = b.verifier.score;
        let scorer = Scorer {
            kind,
            logit_scale: self.logit_scale,
        };
        let template = Template::new(&b.verifier.template).map_err(|e| format!("{name}: {e}"))?;
        let config = RewardConfig::default();
        labels::baseline_bounds(&b, &scorer, &template, self.model_hash(), &config)
            .map_err(|e| format!("{name}: {e}"))?;
        let mean = |m: Option<f64>| m.map_or("none".to_string(), |m| format!("{m:.4}"));
        let info = format!(
            "{name}: {}, template {:?}, s_c {}, s_h {}",
            b.verifier.score,
            b.verifier.template,
            mean(b.correct.mean()),
            mean(b.hallucinated.mean())
        );
        self.baselines = Some((b, name.to_string()));
        Ok(info)
    }

    /// Back to the default, uncalibrated baselines.
    pub fn clear_baselines(&mut self) {
        self.baselines = None;
    }

    /// The eq. 8 bounds, rewarder config and baseline name for `settings`.
    fn bounds(
        &self,
        scorer: &Scorer,
        template: &Template,
        settings: &Settings,
    ) -> Result<(RewardBounds, RewardConfig, String), String> {
        match &self.baselines {
            None => Ok((
                labels::default_bounds(scorer, settings.margin).map_err(|e| e.to_string())?,
                RewardConfig::default(),
                DEFAULT_BASELINE_NAME.to_string(),
            )),
            Some((b, name)) => {
                // As `fisao score`: RewardConfig's defaults, the page's margin if set.
                let mut config = RewardConfig::default();
                if let Some(m) = settings.margin {
                    config.margin = m;
                }
                let bounds =
                    labels::baseline_bounds(b, scorer, template, self.model_hash(), &config)
                        .map_err(|e| format!("{name}: {e}"))?;
                Ok((bounds, config, name.clone()))
            }
        }
    }

    /// The image embedding and the scorer `settings` ask for.
    fn image_and_scorer(&self, settings: &Settings) -> Result<(&[f32], Scorer), String> {
        let image = self
            .image
            .as_deref()
            .ok_or("no image: choose an image before scoring")?;
        let kind: ScoreKind = settings
            .score
            .parse()
            .map_err(|e: reward_core::clip::ClipError| e.to_string())?;
        let scorer = Scorer {
            kind,
            logit_scale: self.logit_scale,
        };
        Ok((image, scorer))
    }

    /// Drops the vocabulary cache.
    pub fn clear_vocab_cache(&mut self) {
        self.vocab_cache = None;
    }

    /// Which texts the text tower must embed before [`Session::report`].
    pub fn plan(&self, text: &str, settings: &Settings) -> Result<Plan, String> {
        let template = Template::new(&settings.template).map_err(|e| e.to_string())?;
        let mut plan = Plan::default();
        for m in self.matcher.find_iter(text) {
            let form = labels::mention_form(&text[m.start..m.end]);
            let known = self.cached(&template, &form).is_some()
                || self
                    .memo
                    .contains_key(&(template.as_str().to_string(), form.clone()));
            if !known && !plan.forms.contains(&form) {
                plan.texts.push(template.apply(&form));
                plan.forms.push(form);
            }
        }
        Ok(plan)
    }

    /// Stores the tower's embeddings of `plan.texts`, row by row.
    pub fn remember(
        &mut self,
        settings: &Settings,
        plan: &Plan,
        rows: Vec<Vec<f32>>,
    ) -> Result<(), String> {
        if rows.len() != plan.forms.len() {
            return Err(format!(
                "text tower returned {} embeddings for {} texts",
                rows.len(),
                plan.forms.len()
            ));
        }
        for (form, row) in plan.forms.iter().zip(rows) {
            self.memo
                .insert((settings.template.clone(), form.clone()), row);
        }
        Ok(())
    }

    /// The vocabulary cache's embedding of `form`, when the cache was made
    /// with `template`.
    fn cached(&self, template: &Template, form: &str) -> Option<&[f32]> {
        let cache = self.vocab_cache.as_ref()?;
        cache.check_template(template).ok()?;
        cache.form(form)
    }

    /// Scores, rewards and labels every mention of `text`; every text
    /// embedding must be known (see [`Session::plan`]).
    pub fn report(
        &self,
        text: &str,
        settings: &Settings,
        sentence: Option<Sentence>,
    ) -> Result<Report, String> {
        let (image, scorer) = self.image_and_scorer(settings)?;
        let template = Template::new(&settings.template).map_err(|e| e.to_string())?;
        let (bounds, config, baseline) = self.bounds(&scorer, &template, settings)?;
        let mentions = self.matcher.find(text);
        let mut scores = Vec::with_capacity(mentions.len());
        let mut cached = Vec::with_capacity(mentions.len());
        for m in &mentions {
            let form = labels::mention_form(&text[m.start..m.end]);
            let (emb, from_cache) = match self.cached(&template, &form) {
                Some(e) => (e, true),
                None => (
                    self.memo
                        .get(&(template.as_str().to_string(), form.clone()))
                        .ok_or_else(|| format!("no text embedding for {form:?}: plan first"))?
                        .as_slice(),
                    false,
                ),
            };
            scores.push(scorer.score(emb, image).map_err(|e| e.to_string())?);
            cached.push(from_cache);
        }
        let rewarder = TokenRewarder::new(config, Some(bounds)).map_err(|e| e.to_string())?;
        let rewards =
            labels::mention_rewards(&rewarder, &mentions, &scores).map_err(|e| e.to_string())?;
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::with_capacity(mentions.len());
        for (i, m) in mentions.iter().enumerate() {
            let (start, end) = m
                .char_span(text)
                .ok_or("mention off a character boundary")?;
            let (js_start, js_end) = m
                .utf16_span(text)
                .ok_or("mention off a character boundary")?;
            out.push(MentionOut {
                text: text[m.start..m.end].to_string(),
                start,
                end,
                js_start,
                js_end,
                entity: self.vocab.entity_name(m.entity).unwrap_or("?").to_string(),
                form: labels::mention_form(&text[m.start..m.end]),
                score: scores[i],
                reward: rewards[i],
                label: labels::label(bounds.grounding(f64::from(scores[i]))),
                repeat: !seen.insert(m.entity),
                cached: cached[i],
            });
        }
        Ok(Report {
            mentions: out,
            sentence_score: sentence.map(|s| s.score),
            sentence_truncated: sentence.map(|s| s.truncated),
            backend: String::new(),
            score_kind: scorer.kind.to_string(),
            template: template.as_str().to_string(),
            margin: bounds.margin(),
            baseline,
            bounds: BoundsOut {
                hi: bounds.hi(),
                lo: bounds.lo(),
                s_min: bounds.s_min(),
                s_max: bounds.s_max(),
            },
        })
    }

    /// The whole caption's score from its text embedding.
    pub fn sentence_score(
        &self,
        settings: &Settings,
        embedding: &[f32],
        truncated: bool,
    ) -> Result<Sentence, String> {
        let (image, scorer) = self.image_and_scorer(settings)?;
        let score = scorer.score(embedding, image).map_err(|e| e.to_string())?;
        Ok(Sentence { score, truncated })
    }
}

//! Training data: LLaVA-Instruct-150k style samples (`llava_instruct_150k.json`:
//! a JSON array of `{"id", "image", "conversations": [{"from": "human",
//! "value": "<image>\n..."}, ...]}`; JSON lines are accepted too) and the COCO
//! `instances_*.json` + `captions_*.json` ground truth, CHAIR-style (method.md
//! section 3): an image's object set is its instance categories plus the
//! objects the mention matcher finds in its human captions, as entities of the
//! FiSAO vocabulary.
//!
//! Every error names the file and, for JSON lines, the line number. With
//! `skip_bad_samples` a bad sample (broken line, missing image, image without
//! annotations) is counted in [`Skipped`] instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use reward_core::metrics::coco::CocoAnnotations;
use reward_core::{EntityId, Matcher, Vocabulary};
use serde::Deserialize;

/// One training prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's `id`.
    pub id: String,
    /// The image file (image root joined).
    pub image: PathBuf,
    /// COCO image id (the digits of the file name).
    pub image_id: u64,
    /// The first human turn, `<image>` marker removed.
    pub prompt: String,
    /// 1-based position in the file (array index or line number), for messages.
    pub line: usize,
}

/// Why samples were skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Unparseable JSON lines / entries.
    pub broken: u64,
    /// Image file not found.
    pub missing_image: u64,
    /// Image id absent from the COCO annotations.
    pub no_annotations: u64,
}

impl Skipped {
    /// All skipped samples.
    pub fn total(&self) -> u64 {
        self.broken + self.missing_image + self.no_annotations
    }
}

#[derive(Deserialize)]
struct RawTurn {
    from: String,
    value: String,
}

#[derive(Deserialize)]
struct RawSample {
    #[serde(default)]
    id: serde_json::Value,
    image: String,
    conversations: Vec<RawTurn>,
}

/// The samples, the ground truth per image id and what was skipped.
pub struct Dataset {
    /// Usable samples, in file order.
    pub samples: Vec<Sample>,
    /// Ground-truth entities per COCO image id.
    pub ground_truth: BTreeMap<u64, BTreeSet<EntityId>>,
    /// Skip counts (always zero without `skip_bad_samples`).
    pub skipped: Skipped,
}

/// Reads the first `max` samples of `path` (JSON array or JSON lines).
/// `skip_bad` counts broken entries instead of failing.
pub fn read_instruct(
    path: &Path,
    image_root: &Path,
    max: usize,
    skip_bad: bool,
) -> Result<(Vec<Sample>, u64)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let entries: Vec<(usize, Result<RawSample, String>)> = if text.trim_start().starts_with('[') {
        let values: Vec<serde_json::Value> = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}:{}: broken JSON: {e}",
                path.display(),
                e.line(),
                e.column()
            )
        })?;
        values
            .into_iter()
            .take(max)
            .enumerate()
            .map(|(i, v)| (i + 1, serde_json::from_value(v).map_err(|e| e.to_string())))
            .collect()
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .take(max)
            .map(|(i, l)| (i + 1, serde_json::from_str(l).map_err(|e| e.to_string())))
            .collect()
    };
    let mut out = Vec::new();
    let mut broken = 0;
    for (line, raw) in entries {
        let parsed = raw
            .map_err(|e| format!("{}: line {line}: broken sample: {e}", path.display()))
            .and_then(|r| {
                to_sample(r, image_root, line)
                    .map_err(|e| format!("{}: line {line}: {e}", path.display()))
            });
        match parsed {
            Ok(s) => out.push(s),
            Err(e) if skip_bad => {
                tracing::warn!("skipping: {e}");
                broken += 1;
            }
            Err(e) => bail!("{e} (use --skip-bad-samples to skip bad samples)"),
        }
    }
    Ok((out, broken))
}

fn to_sample(r: RawSample, image_root: &Path, line: usize) -> Result<Sample, String> {
    let human = r
        .conversations
        .iter()
        .find(|t| t.from == "human")
        .ok_or("no human turn in `conversations`")?;
    let prompt = human.value.replace("<image>", "").trim().to_string();
    if prompt.is_empty() {
        return Err("the first human turn is empty".into());
    }
    let image_id = coco_image_id(&r.image)
        .ok_or_else(|| format!("image {:?} has no COCO image id (digits)", r.image))?;
    let id = match r.id {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => format!("{image_id}"),
        other => other.to_string(),
    };
    Ok(Sample {
        id,
        image: image_root.join(&r.image),
        image_id,
        prompt,
        line,
    })
}

/// The last run of digits in a file name: `COCO_train2014_000000033471.jpg` -> 33471.
pub fn coco_image_id(name: &str) -> Option<u64> {
    let stem = Path::new(name).file_stem()?.to_str()?;
    let digits: String = stem
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

/// Ground-truth entity sets from COCO instances and captions (CHAIR-style).
/// An instance category the vocabulary does not know is an error naming it.
pub fn ground_truth(
    instances: &Path,
    captions: &Path,
    vocab: &Vocabulary,
    matcher: &Matcher,
) -> Result<BTreeMap<u64, BTreeSet<EntityId>>> {
    let mut ann = CocoAnnotations::default();
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    ann.add_instances_json(&instances.display().to_string(), &read(instances)?)?;
    ann.add_captions_json(&captions.display().to_string(), &read(captions)?)?;
    let mut gt: BTreeMap<u64, BTreeSet<EntityId>> = ann
        .image_ids()
        .iter()
        .map(|&id| (id, BTreeSet::new()))
        .collect();
    for (id, name) in ann.instances() {
        let e = vocab
            .entity(name)
            .or_else(|| vocab.lookup(name))
            .with_context(|| {
                format!(
                    "{}: category {name:?} (image {id}) is not in the vocabulary",
                    instances.display()
                )
            })?;
        gt.entry(*id).or_default().insert(e);
    }
    for (id, text) in ann.captions() {
        gt.entry(*id)
            .or_default()
            .extend(matcher.find(text).into_iter().map(|m| m.entity));
    }
    Ok(gt)
}

/// Samples whose image exists and has annotations; the others fail or, with
/// `skip_bad`, are counted.
pub fn check_samples(
    samples: Vec<Sample>,
    gt: &BTreeMap<u64, BTreeSet<EntityId>>,
    skip_bad: bool,
    skipped: &mut Skipped,
) -> Result<Vec<Sample>> {
    let mut out = Vec::with_capacity(samples.len());
    for s in samples {
        let problem = if !s.image.is_file() {
            skipped.missing_image += u64::from(skip_bad);
            Some(format!("image {} not found", s.image.display()))
        } else if !gt.contains_key(&s.image_id) {
            skipped.no_annotations += u64::from(skip_bad);
            Some(format!(
                "image id {} ({}) has no COCO annotations",
                s.image_id,
                s.image.display()
            ))
        } else {
            None
        };
        match problem {
            None => out.push(s),
            Some(p) if skip_bad => {
                tracing::warn!("skipping sample {} (line {}): {p}", s.id, s.line)
            }
            Some(p) => bail!(
                "sample {} (line {}): {p} (use --skip-bad-samples to skip bad samples)",
                s.id,
                s.line
            ),
        }
    }
    Ok(out)
}

/// Loads the whole dataset as the config describes it.
pub fn load(
    cfg: &super::config::DataConfig,
    vocab: &Vocabulary,
    matcher: &Matcher,
) -> Result<Dataset> {
    let (samples, broken) = read_instruct(
        &cfg.instruct,
        &cfg.image_root,
        cfg.max_samples,
        cfg.skip_bad_samples,
    )?;
    let ground_truth = ground_truth(&cfg.instances, &cfg.captions, vocab, matcher)?;
    let mut skipped = Skipped {
        broken,
        ..Default::default()
    };
    let samples = check_samples(samples, &ground_truth, cfg.skip_bad_samples, &mut skipped)?;
    if samples.is_empty() {
        bail!("{}: no usable samples", cfg.instruct.display());
    }
    Ok(Dataset {
        samples,
        ground_truth,
        skipped,
    })
}

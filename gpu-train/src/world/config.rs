//! The world file: a TOML description of a synthetic world (classes, pairs
//! and their co-occurrence, annotator bias, image size, split sizes, seeds),
//! as specified in `/design/synthetic-world.md` and documented field by field
//! in `docs/synthetic-world.md`. Parsing is serde; `validate` checks ranges
//! and cross-references and names the offending field.

use std::collections::HashSet;
use std::path::Path;

use reward_core::vocab::{EntityId, Vocabulary};
use serde::{Deserialize, Serialize};

use super::appearance::{Pattern, Shape, parse_hex_colour};
use super::error::WorldError;

/// The shipped default world (`worlds/default.toml`), compiled in so the demo
/// needs no file on disk.
pub const DEFAULT_WORLD_TOML: &str = include_str!("../../../worlds/default.toml");
/// The shrunken world used by tests (`worlds/tiny.toml`).
pub const TINY_WORLD_TOML: &str = include_str!("../../../worlds/tiny.toml");

/// A whole world file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorldConfig {
    /// A short name for reports.
    pub name: String,
    /// Width and height of the square images, in pixels.
    #[serde(default = "default_image_size")]
    pub image_size: u32,
    /// Number of images in each split.
    pub counts: Counts,
    /// Seeds of the three splits.
    #[serde(default)]
    pub seeds: Seeds,
    /// How many objects an image holds and how they are placed.
    #[serde(default)]
    pub objects: ObjectsConfig,
    /// Noise and colour jitter of the drawing.
    #[serde(default)]
    pub render: RenderConfig,
    /// Caption settings, above all the annotator bias.
    pub captions: CaptionConfig,
    /// The object classes, each a COCO-style entity of reward-core's vocabulary.
    pub classes: Vec<ClassConfig>,
    /// Classes that usually appear together.
    #[serde(default)]
    pub pairs: Vec<PairConfig>,
}

/// Images per split.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Training images (SFT, verifier training, PPO prompts).
    pub train: usize,
    /// Validation images (checkpoint selection).
    pub validation: usize,
    /// Held-out test images (the reported CHAIR numbers).
    pub test: usize,
}

/// One seed per split, so that e.g. the test set stays fixed while the
/// training set is re-drawn.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Seeds {
    /// Seed of the training split.
    #[serde(default)]
    pub train: u64,
    /// Seed of the validation split.
    #[serde(default = "one")]
    pub validation: u64,
    /// Seed of the test split.
    #[serde(default = "two")]
    pub test: u64,
}

impl Default for Seeds {
    fn default() -> Self {
        Self {
            train: 0,
            validation: 1,
            test: 2,
        }
    }
}

/// Object counts and placement.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectsConfig {
    /// Fewest object instances in an image (a target: a world whose classes
    /// run out under `max_per_class` and the pair rules may fall short).
    pub min: u32,
    /// Most object instances in an image.
    pub max: u32,
    /// Most instances of one class in an image ("two dogs").
    pub max_per_class: u32,
    /// Probability that a new instance repeats a class already in the image.
    pub repeat_rate: f64,
    /// Object radius as a fraction of the image size: `[smallest, largest]`.
    pub scale: [f32; 2],
    /// Largest overlap of two objects, as a fraction of the smaller one's
    /// diameter (0 = never touch, 1 = may cover completely).
    pub max_overlap: f32,
    /// Largest rotation of an object, in degrees either way.
    pub max_rotation_deg: f32,
}

impl Default for ObjectsConfig {
    fn default() -> Self {
        Self {
            min: 1,
            max: 4,
            max_per_class: 2,
            repeat_rate: 0.15,
            scale: [0.11, 0.19],
            max_overlap: 0.25,
            max_rotation_deg: 20.0,
        }
    }
}

/// Noise levels of the drawing, in units of full intensity.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderConfig {
    /// Amplitude of the per-pixel background noise.
    pub background_noise: f32,
    /// Amplitude of the per-pixel noise on objects.
    pub texture_noise: f32,
    /// Amplitude of the per-object colour jitter.
    pub colour_jitter: f32,
}

impl Default for RenderConfig {
    fn default() -> Self {
        Self {
            background_noise: 0.08,
            texture_noise: 0.05,
            colour_jitter: 0.08,
        }
    }
}

/// Caption settings.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaptionConfig {
    /// Annotator bias: in this fraction of the cases where a training image
    /// holds one partner of a pair and not the other, the caption mentions
    /// the missing partner anyway. Validation and test captions are truthful.
    pub bias_rate: f64,
}

/// One object class.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    /// Canonical entity name in reward-core's vocabulary ("fork", "teddy bear").
    pub name: String,
    /// Plural for captions; derived from English rules when absent.
    #[serde(default)]
    pub plural: Option<String>,
    /// Outline; assigned from the class's position when absent.
    #[serde(default)]
    pub shape: Option<Shape>,
    /// Fill pattern; assigned from the class's position when absent.
    #[serde(default)]
    pub pattern: Option<Pattern>,
    /// Main colour as `#rrggbb`; assigned from the class's position when absent.
    #[serde(default)]
    pub colour: Option<String>,
    /// Pattern colour as `#rrggbb`; derived from the main colour when absent.
    #[serde(default)]
    pub accent: Option<String>,
}

/// Two classes that usually appear together.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PairConfig {
    /// The two class names.
    pub objects: [String; 2],
    /// Probability that an image holding one of them holds the other too.
    pub cooccurrence: f64,
}

fn default_image_size() -> u32 {
    64
}
fn one() -> u64 {
    1
}
fn two() -> u64 {
    2
}

impl WorldConfig {
    /// Parses a world file's text; `origin` (usually the path) prefixes errors.
    /// Only the syntax and schema are checked here; see [`WorldConfig::validate`].
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, WorldError> {
        toml::from_str(text).map_err(|e| WorldError::toml(e).in_origin(origin))
    }

    /// Reads and parses a world file.
    pub fn from_file(path: &Path) -> Result<Self, WorldError> {
        let text = std::fs::read_to_string(path).map_err(|e| WorldError::io(path, e))?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// The shipped default world.
    pub fn default_world() -> Result<Self, WorldError> {
        Self::from_toml_str(DEFAULT_WORLD_TOML, "worlds/default.toml")
    }

    /// The shrunken test world.
    pub fn tiny_world() -> Result<Self, WorldError> {
        Self::from_toml_str(TINY_WORLD_TOML, "worlds/tiny.toml")
    }

    /// Checks every range and cross-reference; returns each class's entity in
    /// `vocab`. Errors name the field (`classes[2].name`) but not the file:
    /// [`super::World::new`] adds that.
    pub fn validate(&self, vocab: &Vocabulary) -> Result<Vec<EntityId>, WorldError> {
        if self.name.trim().is_empty() {
            return Err(WorldError::invalid("name", "must not be empty"));
        }
        if !(16..=1024).contains(&self.image_size) {
            return Err(WorldError::invalid(
                "image_size",
                format!("{} is out of range 16..=1024", self.image_size),
            ));
        }
        self.validate_counts()?;
        self.validate_objects()?;
        self.validate_render()?;
        check_probability("captions.bias_rate", self.captions.bias_rate)?;
        let entities = self.validate_classes(vocab)?;
        self.validate_pairs()?;
        Ok(entities)
    }

    fn validate_counts(&self) -> Result<(), WorldError> {
        let c = &self.counts;
        for (field, n) in [
            ("counts.train", c.train),
            ("counts.validation", c.validation),
            ("counts.test", c.test),
        ] {
            if n == 0 || n > u32::MAX as usize {
                return Err(WorldError::invalid(
                    field,
                    format!("{n} images; must be between 1 and {}", u32::MAX),
                ));
            }
        }
        Ok(())
    }

    fn validate_objects(&self) -> Result<(), WorldError> {
        let o = &self.objects;
        if o.min == 0 || o.min > o.max || o.max > 16 {
            return Err(WorldError::invalid(
                "objects.min/objects.max",
                format!(
                    "need 1 <= min <= max <= 16, found min = {}, max = {}",
                    o.min, o.max
                ),
            ));
        }
        if !(1..=10).contains(&o.max_per_class) {
            return Err(WorldError::invalid(
                "objects.max_per_class",
                format!(
                    "{} is out of range 1..=10 (counts are spelled out)",
                    o.max_per_class
                ),
            ));
        }
        check_probability("objects.repeat_rate", o.repeat_rate)?;
        let [lo, hi] = o.scale;
        if !(lo > 0.0 && lo <= hi && hi <= 0.5) {
            return Err(WorldError::invalid(
                "objects.scale",
                format!("need 0 < smallest <= largest <= 0.5, found [{lo}, {hi}]"),
            ));
        }
        if !(0.0..=1.0).contains(&o.max_overlap) {
            return Err(WorldError::invalid(
                "objects.max_overlap",
                format!("{} is not in [0, 1]", o.max_overlap),
            ));
        }
        if !(0.0..=45.0).contains(&o.max_rotation_deg) {
            return Err(WorldError::invalid(
                "objects.max_rotation_deg",
                format!("{} is not in [0, 45]", o.max_rotation_deg),
            ));
        }
        Ok(())
    }

    fn validate_render(&self) -> Result<(), WorldError> {
        let r = &self.render;
        for (field, v) in [
            ("render.background_noise", r.background_noise),
            ("render.texture_noise", r.texture_noise),
            ("render.colour_jitter", r.colour_jitter),
        ] {
            if !(0.0..=0.5).contains(&v) {
                return Err(WorldError::invalid(
                    field,
                    format!("{v} is not in [0, 0.5]"),
                ));
            }
        }
        Ok(())
    }

    fn validate_classes(&self, vocab: &Vocabulary) -> Result<Vec<EntityId>, WorldError> {
        if self.classes.is_empty() || self.classes.len() > 256 {
            return Err(WorldError::invalid(
                "classes",
                format!("{} classes; need 1 to 256", self.classes.len()),
            ));
        }
        let mut seen = HashSet::new();
        let mut entities = Vec::with_capacity(self.classes.len());
        for (i, class) in self.classes.iter().enumerate() {
            let field = format!("classes[{i}]");
            entities.push(check_class_name(&field, &class.name, vocab)?);
            if !seen.insert(class.name.as_str()) {
                return Err(WorldError::invalid(
                    format!("{field}.name"),
                    format!("{:?} is declared twice", class.name),
                ));
            }
            let bad_plural = class
                .plural
                .as_deref()
                .filter(|p| p.trim().is_empty() || p.trim() != *p);
            if let Some(p) = bad_plural {
                return Err(WorldError::invalid(
                    format!("{field}.plural"),
                    format!("{p:?} must be non-empty and without surrounding spaces"),
                ));
            }
            for (key, value) in [("colour", &class.colour), ("accent", &class.accent)] {
                if let Some(hex) = value {
                    parse_hex_colour(hex).map_err(|m| {
                        WorldError::invalid(format!("{field}.{key}"), format!("{hex:?}: {m}"))
                    })?;
                }
            }
        }
        Ok(entities)
    }

    fn validate_pairs(&self) -> Result<(), WorldError> {
        let mut paired: HashSet<&str> = HashSet::new();
        for (i, pair) in self.pairs.iter().enumerate() {
            let field = format!("pairs[{i}]");
            for name in &pair.objects {
                if !self.classes.iter().any(|c| &c.name == name) {
                    return Err(WorldError::invalid(
                        format!("{field}.objects"),
                        format!("{name:?} is not one of the world's classes"),
                    ));
                }
                // One partner per class keeps "the missing partner" well defined.
                if !paired.insert(name.as_str()) {
                    return Err(WorldError::invalid(
                        format!("{field}.objects"),
                        format!(
                            "{name:?} is already in another pair; a class may have one partner"
                        ),
                    ));
                }
            }
            if pair.objects[0] == pair.objects[1] {
                return Err(WorldError::invalid(
                    format!("{field}.objects"),
                    "a class cannot pair with itself",
                ));
            }
            check_probability(&format!("{field}.cooccurrence"), pair.cooccurrence)?;
        }
        Ok(())
    }
}

/// A class name must be the canonical name of a vocabulary entity, so that
/// captions, the matcher and CHAIR all agree on what was mentioned.
fn check_class_name(field: &str, name: &str, vocab: &Vocabulary) -> Result<EntityId, WorldError> {
    let field = format!("{field}.name");
    let Some(id) = vocab.lookup(name) else {
        return Err(WorldError::invalid(
            field,
            format!("{name:?} is not an object in reward-core's vocabulary"),
        ));
    };
    let canonical = vocab.entity_name(id).unwrap_or_default();
    if canonical != name {
        return Err(WorldError::invalid(
            field,
            format!("{name:?} is a surface form of {canonical:?}; use the canonical name"),
        ));
    }
    Ok(id)
}

fn check_probability(field: &str, p: f64) -> Result<(), WorldError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(WorldError::invalid(
            field,
            format!("{p} is not a probability in [0, 1]"),
        ))
    }
}

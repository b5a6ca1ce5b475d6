//! The synthetic world of `/design/synthetic-world.md`: small procedural
//! RGB images of COCO-named objects, pairs of classes that co-occur, and
//! templated captions whose training split carries annotator bias (the
//! missing partner of a pair is sometimes mentioned anyway), so that a model
//! trained on them hallucinates the way real VLLMs do. Validation and test
//! images come with truthful object sets (CHAIR ground truth) and unbiased
//! reference captions.
//!
//! Everything is set by a TOML world file ([`WorldConfig`]); every sample is
//! a pure function of (world file, split, index, caption variant), drawn from
//! its own random stream, so generation is reproducible byte for byte and
//! independent of order and thread count. The module is torch-free: images
//! come out as RGB bytes ([`Image`]) or CHW f32 ([`Batch::images_nchw_f32`]).
//!
//! ```no_run
//! use gpu_train::world::{Split, World};
//! let world = World::default_world()?;
//! for batch in world.epoch(Split::Train, 0, 32) {
//!     let pixels = batch.images_nchw_f32(); // [32, 3, 64, 64]
//!     let captions: Vec<&str> = batch.samples.iter().map(|s| s.caption()).collect();
//!     # let _ = (pixels, captions);
//! }
//! # Ok::<(), gpu_train::world::WorldError>(())
//! ```

mod appearance;
mod caption;
mod config;
mod error;
mod export;
mod font;
mod render;
mod rng;
mod scene;
mod stats;

use std::ops::Range;
use std::path::Path;

use reward_core::vocab::{EntityId, Expansion, Vocabulary};
use serde::Serialize;

pub use appearance::{Appearance, PATTERNS, Pattern, SHAPES, Shape};
pub use caption::{Mention, article, pluralise};
pub use config::{
    CaptionConfig, ClassConfig, Counts, DEFAULT_WORLD_TOML, ObjectsConfig, PairConfig,
    RenderConfig, Seeds, TINY_WORLD_TOML, WorldConfig,
};
pub use error::WorldError;
pub use export::{contact_sheet, write_png};
pub use render::Image;
pub use scene::{ClassId, Instance};
pub use stats::{PairStats, SplitStats};

use caption::Item;
use rng::{Purpose, Stream};

/// The three splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Biased captions; for SFT, verifier training and PPO prompts.
    Train,
    /// Truthful; for checkpoint selection.
    Validation,
    /// Truthful; the held-out images every reported number is measured on.
    Test,
}

impl Split {
    /// All splits.
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }

    fn tag(self) -> u64 {
        self as u64
    }
}

/// A class as the world uses it.
#[derive(Clone, Debug, Serialize)]
pub struct ClassInfo {
    /// Canonical entity name ("knife").
    pub name: String,
    /// Plural used in captions ("knives").
    pub plural: String,
    /// The entity in reward-core's vocabulary.
    #[serde(skip)]
    pub entity: EntityId,
    /// How it is drawn.
    pub appearance: Appearance,
    /// Its pair partner and the pair's co-occurrence probability.
    #[serde(skip)]
    pub partner: Option<(ClassId, f64)>,
}

/// How many instances of one class an image holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectCount {
    /// The class.
    pub class: ClassId,
    /// Number of instances (at least 1).
    pub count: u32,
}

/// Everything known about one image except its pixels: the ground truth.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Annotation {
    /// Which split.
    pub split: Split,
    /// Index within the split.
    pub index: u64,
    /// Caption variant (0 = the sample's own caption; training epochs may
    /// ask for others: same image, new wording and new bias draws).
    pub variant: u64,
    /// The drawn objects, bottom to top.
    pub instances: Vec<Instance>,
    /// Ground-truth object set with counts, sorted by class.
    pub objects: Vec<ObjectCount>,
    /// The caption (biased on the training split, truthful elsewhere).
    pub caption: String,
    /// The objects the caption names, in caption order; hallucinated ones flagged.
    pub mentions: Vec<Mention>,
}

/// One image with its ground truth and caption.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Objects, caption and mentions.
    pub annotation: Annotation,
    /// The pixels.
    pub image: Image,
    /// Per pixel: 0 = background, k = instance k-1 is on top there.
    pub mask: Vec<u8>,
}

impl Sample {
    /// The caption.
    pub fn caption(&self) -> &str {
        &self.annotation.caption
    }

    /// The ground-truth object set.
    pub fn objects(&self) -> &[ObjectCount] {
        &self.annotation.objects
    }

    /// The caption's mentions.
    pub fn mentions(&self) -> &[Mention] {
        &self.annotation.mentions
    }
}

impl Annotation {
    /// Whether the image holds at least one instance of `class`.
    pub fn contains(&self, class: ClassId) -> bool {
        self.objects.iter().any(|o| o.class == class)
    }
}

/// A batch of consecutive or shuffled samples.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The samples, in batch order.
    pub samples: Vec<Sample>,
}

impl Batch {
    /// All images as one f32 buffer in [0, 1], shape [batch, 3, size, size].
    pub fn images_nchw_f32(&self) -> Vec<f32> {
        let Some(first) = self.samples.first() else {
            return Vec::new();
        };
        let per = 3 * first.image.width as usize * first.image.height as usize;
        let mut out = vec![0.0f32; per * self.samples.len()];
        for (s, chunk) in self.samples.iter().zip(out.chunks_exact_mut(per)) {
            s.image.write_chw_f32(chunk);
        }
        out
    }
}

/// A loaded, validated world.
#[derive(Clone, Debug)]
pub struct World {
    config: WorldConfig,
    classes: Vec<ClassInfo>,
}

impl World {
    /// Validates `config` against `vocab`; `origin` (the file name) prefixes errors.
    pub fn new(config: WorldConfig, vocab: &Vocabulary, origin: &str) -> Result<Self, WorldError> {
        let entities = config.validate(vocab).map_err(|e| e.in_origin(origin))?;
        let all_paired = config.classes.len() == 2 * config.pairs.len();
        if all_paired && config.objects.max < 2 {
            return Err(WorldError::invalid(
                "objects.max",
                "must be at least 2 when every class is in a pair",
            )
            .in_origin(origin));
        }
        let mut classes: Vec<ClassInfo> = config
            .classes
            .iter()
            .zip(entities)
            .enumerate()
            .map(|(i, (c, entity))| ClassInfo {
                name: c.name.clone(),
                plural: c.plural.clone().unwrap_or_else(|| pluralise(&c.name)),
                entity,
                appearance: Appearance::for_class(i, c),
                partner: None,
            })
            .collect();
        let index = |name: &str| config.classes.iter().position(|c| c.name == name);
        for pair in &config.pairs {
            // validate() checked that both names are classes.
            if let (Some(a), Some(b)) = (index(&pair.objects[0]), index(&pair.objects[1])) {
                classes[a].partner = Some((ClassId(b as u16), pair.cooccurrence));
                classes[b].partner = Some((ClassId(a as u16), pair.cooccurrence));
            }
        }
        Ok(Self { config, classes })
    }

    /// Loads a world file, checking class names against the built-in vocabulary.
    pub fn from_file(path: &Path) -> Result<Self, WorldError> {
        let config = WorldConfig::from_file(path)?;
        Self::new(
            config,
            &Vocabulary::builtin(Expansion::Fisao),
            &path.display().to_string(),
        )
    }

    /// The shipped default world (`worlds/default.toml`).
    pub fn default_world() -> Result<Self, WorldError> {
        let cfg = WorldConfig::default_world()?;
        Self::new(
            cfg,
            &Vocabulary::builtin(Expansion::Fisao),
            "worlds/default.toml",
        )
    }

    /// The shrunken test world (`worlds/tiny.toml`).
    pub fn tiny_world() -> Result<Self, WorldError> {
        let cfg = WorldConfig::tiny_world()?;
        Self::new(
            cfg,
            &Vocabulary::builtin(Expansion::Fisao),
            "worlds/tiny.toml",
        )
    }

    /// The world file it was built from.
    pub fn config(&self) -> &WorldConfig {
        &self.config
    }

    /// The classes, indexed by [`ClassId`].
    pub fn classes(&self) -> &[ClassInfo] {
        &self.classes
    }

    /// A class by canonical name.
    pub fn class_id(&self, name: &str) -> Option<ClassId> {
        self.classes
            .iter()
            .position(|c| c.name == name)
            .map(|i| ClassId(i as u16))
    }

    /// A class's name ("?" for an id out of range).
    pub fn class_name(&self, id: ClassId) -> &str {
        self.classes
            .get(id.0 as usize)
            .map_or("?", |c| c.name.as_str())
    }

    /// A class's pair partner and the pair's co-occurrence probability.
    pub fn partner(&self, id: ClassId) -> Option<(ClassId, f64)> {
        self.classes.get(id.0 as usize).and_then(|c| c.partner)
    }

    /// Number of images in a split.
    pub fn len(&self, split: Split) -> usize {
        let c = &self.config.counts;
        match split {
            Split::Train => c.train,
            Split::Validation => c.validation,
            Split::Test => c.test,
        }
    }

    fn seed(&self, split: Split) -> u64 {
        let s = &self.config.seeds;
        match split {
            Split::Train => s.train,
            Split::Validation => s.validation,
            Split::Test => s.test,
        }
    }

    fn stream(&self, split: Split, index: u64, purpose: Purpose, variant: u64) -> Stream {
        Stream::new(self.seed(split), split.tag(), index, purpose, variant)
    }

    /// Image `index` of `split` with its own caption (variant 0). Any index is
    /// valid; the split's count only bounds [`World::iter`] and [`World::epoch`].
    pub fn sample(&self, split: Split, index: u64) -> Sample {
        self.sample_variant(split, index, 0)
    }

    /// Image `index` of `split` with caption variant `variant`: the same
    /// pixels and objects for every variant, a fresh wording (and, on the
    /// training split, fresh bias draws) for each.
    pub fn sample_variant(&self, split: Split, index: u64, variant: u64) -> Sample {
        let mut annotation = self.annotate(split, index, variant);
        let mut rng = self.stream(split, index, Purpose::Draw, 0);
        let (image, mask) = render::render(self, &mut annotation.instances, &mut rng);
        Sample {
            annotation,
            image,
            mask,
        }
    }

    /// The ground truth and caption of an image without drawing it (fast;
    /// `visible_fraction` stays 1). Statistics use this.
    pub fn annotate(&self, split: Split, index: u64, variant: u64) -> Annotation {
        let mut rng = self.stream(split, index, Purpose::Scene, 0);
        let classes = scene::sample_classes(self, &mut rng);
        let instances = scene::place(self, &classes, &mut rng);
        let mut objects: Vec<ObjectCount> = Vec::new();
        let mut sorted = classes.clone();
        sorted.sort();
        for class in sorted {
            match objects.last_mut() {
                Some(o) if o.class == class => o.count += 1,
                _ => objects.push(ObjectCount { class, count: 1 }),
            }
        }
        let (caption, mentions) = self.caption(split, index, variant, &objects);
        Annotation {
            split,
            index,
            variant,
            instances,
            objects,
            caption,
            mentions,
        }
    }

    /// The caption: the true objects, plus on the training split the missing
    /// partner of each half-present pair with probability `bias_rate`.
    fn caption(
        &self,
        split: Split,
        index: u64,
        variant: u64,
        objects: &[ObjectCount],
    ) -> (String, Vec<Mention>) {
        self.write_caption(split, index, variant, objects, split == Split::Train)
    }

    /// A caption of image `index` that names exactly `objects` (its ground
    /// truth): no annotator bias on any split. The verifier learns captions
    /// from these (a CLIP is trained on true image-text pairs); the wording
    /// is drawn from the same stream as the sample's own caption, so on the
    /// validation and test splits it is that caption.
    pub fn truthful_caption(
        &self,
        split: Split,
        index: u64,
        variant: u64,
        objects: &[ObjectCount],
    ) -> String {
        self.write_caption(split, index, variant, objects, false).0
    }

    fn write_caption(
        &self,
        split: Split,
        index: u64,
        variant: u64,
        objects: &[ObjectCount],
        biased: bool,
    ) -> (String, Vec<Mention>) {
        let mut rng = self.stream(split, index, Purpose::Caption, variant);
        let mut items: Vec<Item> = objects
            .iter()
            .map(|o| Item {
                class: o.class,
                count: o.count,
                hallucinated: false,
            })
            .collect();
        if biased {
            for o in objects {
                let Some((partner, _)) = self.partner(o.class) else {
                    continue;
                };
                let present = objects.iter().any(|p| p.class == partner);
                if !present && rng.chance(self.config.captions.bias_rate) {
                    items.push(Item {
                        class: partner,
                        count: 1,
                        hallucinated: true,
                    });
                }
            }
        }
        if items.is_empty() {
            return (String::new(), Vec::new());
        }
        rng.shuffle(&mut items);
        caption::write_caption(self, &items, &mut rng)
    }

    /// All samples of a split in index order (caption variant 0).
    pub fn iter(&self, split: Split) -> impl ExactSizeIterator<Item = Sample> + '_ {
        (0..self.len(split)).map(move |i| self.sample(split, i as u64))
    }

    /// One training epoch: the split's indices in a seeded random order
    /// (different per epoch), cut into batches of `batch_size` (the last one
    /// may be smaller), each image captioned with variant `epoch`.
    pub fn epoch(
        &self,
        split: Split,
        epoch: u64,
        batch_size: usize,
    ) -> impl Iterator<Item = Batch> + '_ {
        let mut order: Vec<u64> = (0..self.len(split) as u64).collect();
        let mut rng = self.stream(split, epoch, Purpose::Order, 0);
        rng.shuffle(&mut order);
        let batch_size = batch_size.max(1);
        let chunks: Vec<Vec<u64>> = order.chunks(batch_size).map(<[u64]>::to_vec).collect();
        chunks.into_iter().map(move |idx| Batch {
            samples: idx
                .iter()
                .map(|&i| self.sample_variant(split, i, epoch))
                .collect(),
        })
    }

    /// Samples `range` of a split (variant 0) on `threads` threads. The
    /// result is identical for every thread count.
    pub fn generate(&self, split: Split, range: Range<u64>, threads: usize) -> Vec<Sample> {
        let indices: Vec<u64> = range.collect();
        let threads = threads.clamp(1, indices.len().max(1));
        let chunk = indices.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = indices
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|&i| self.sample(split, i))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                // A worker only panics if sampling itself has a bug; re-raise it.
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }
}

//! Realised statistics of a split: how often each pair co-occurs, how often
//! a lone partner's missing twin is mentioned (the realised annotator bias),
//! class frequencies and hallucination counts. These are the world-level
//! ground truth a report quotes next to its results, and what the tests
//! compare with the world file's settings.

use serde::Serialize;

use super::{Annotation, ClassId, Split, World};

/// Counts for one pair over a split.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PairStats {
    /// First class of the pair.
    pub a: String,
    /// Second class of the pair.
    pub b: String,
    /// The co-occurrence probability the world file asks for.
    pub configured: f64,
    /// Images holding at least one of the two.
    pub either: usize,
    /// Images holding both.
    pub both: usize,
    /// Images holding exactly one of the two.
    pub lone: usize,
    /// Of those, captions that mention the missing one anyway.
    pub lone_mentioned: usize,
}

impl PairStats {
    /// Realised P(both | either).
    pub fn cooccurrence(&self) -> f64 {
        ratio(self.both, self.either)
    }

    /// Realised P(missing partner mentioned | exactly one present).
    pub fn bias(&self) -> f64 {
        ratio(self.lone_mentioned, self.lone)
    }
}

/// Counts over the first `images` images of a split.
#[derive(Clone, Debug, Serialize)]
pub struct SplitStats {
    /// The split.
    pub split: Split,
    /// Images counted.
    pub images: usize,
    /// Object instances drawn.
    pub instances: usize,
    /// Per class: images holding it.
    pub class_images: Vec<usize>,
    /// Images in which some class appears more than once.
    pub images_with_repeats: usize,
    /// Per pair, in world-file order.
    pub pairs: Vec<PairStats>,
    /// Object mentions in captions.
    pub mentions: usize,
    /// Mentions of absent objects.
    pub hallucinated_mentions: usize,
    /// Captions with at least one hallucinated mention.
    pub hallucinated_captions: usize,
}

impl SplitStats {
    /// Realised bias pooled over all pairs.
    pub fn bias_rate(&self) -> f64 {
        let lone = self.pairs.iter().map(|p| p.lone).sum();
        ratio(self.pairs.iter().map(|p| p.lone_mentioned).sum(), lone)
    }

    /// Share of captions with a hallucinated mention (CHAIR_s of the captions).
    pub fn caption_chair_s(&self) -> f64 {
        ratio(self.hallucinated_captions, self.images)
    }

    /// Share of mentions that are hallucinated (CHAIR_i of the captions).
    pub fn caption_chair_i(&self) -> f64 {
        ratio(self.hallucinated_mentions, self.mentions)
    }

    fn add(&mut self, world: &World, a: &Annotation) {
        self.images += 1;
        self.instances += a.instances.len();
        for o in &a.objects {
            self.class_images[o.class.0 as usize] += 1;
        }
        self.images_with_repeats += usize::from(a.objects.iter().any(|o| o.count > 1));
        let hallucinated = a.mentions.iter().filter(|m| m.hallucinated).count();
        self.mentions += a.mentions.len();
        self.hallucinated_mentions += hallucinated;
        self.hallucinated_captions += usize::from(hallucinated > 0);
        for p in &mut self.pairs {
            let (Some(ia), Some(ib)) = (world.class_id(&p.a), world.class_id(&p.b)) else {
                continue;
            };
            count_pair(p, a, ia, ib);
        }
    }
}

fn count_pair(p: &mut PairStats, a: &Annotation, ia: ClassId, ib: ClassId) {
    let (has_a, has_b) = (a.contains(ia), a.contains(ib));
    p.either += usize::from(has_a || has_b);
    p.both += usize::from(has_a && has_b);
    if has_a != has_b {
        p.lone += 1;
        let missing = if has_a { ib } else { ia };
        p.lone_mentioned += usize::from(a.mentions.iter().any(|m| m.class == missing));
    }
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

impl World {
    /// Statistics of the first `images` images of a split (caption variant
    /// 0), computed without drawing.
    pub fn stats(&self, split: Split, images: usize) -> SplitStats {
        let mut s = SplitStats {
            split,
            images: 0,
            instances: 0,
            class_images: vec![0; self.classes().len()],
            images_with_repeats: 0,
            pairs: self
                .config()
                .pairs
                .iter()
                .map(|p| PairStats {
                    a: p.objects[0].clone(),
                    b: p.objects[1].clone(),
                    configured: p.cooccurrence,
                    ..PairStats::default()
                })
                .collect(),
            mentions: 0,
            hallucinated_mentions: 0,
            hallucinated_captions: 0,
        };
        for i in 0..images as u64 {
            let a = self.annotate(split, i, 0);
            s.add(self, &a);
        }
        s
    }
}

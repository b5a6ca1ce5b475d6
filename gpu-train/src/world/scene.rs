//! What is in an image and where: the object set with pair co-occurrence,
//! repeats ("two dogs"), and the placement of each instance (position,
//! radius, rotation, jittered colours) with limited overlap.
//!
//! Co-occurrence is exact by construction: a pair is decided the moment one
//! of its members is first drawn. A coin with the pair's probability then
//! either adds the partner or bans it from the image, and no later draw can
//! add it, so P(both present | at least one present) equals the configured
//! rate (tested in `tests/world_stats.rs`).

use serde::Serialize;

use super::World;
use super::appearance::tan_half_degrees;
use super::rng::Stream;

/// Index of a class in the world's class list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ClassId(pub u16);

/// One drawn object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Instance {
    /// Its class.
    pub class: ClassId,
    /// Centre, in pixels from the top-left corner.
    pub center: [f32; 2],
    /// Radius of the circle the shape fits in, in pixels.
    pub radius: f32,
    /// Rotation as (cos, sin).
    pub rotation: [f32; 2],
    /// Jittered main colour, RGB in [0, 1].
    pub colour: [f32; 3],
    /// Jittered accent colour, RGB in [0, 1].
    pub accent: [f32; 3],
    /// Share of the instance's own pixels that remain visible on top
    /// (filled in by the renderer).
    pub visible_fraction: f32,
}

/// Draws the classes of one image's instances, in drawing order.
pub(crate) fn sample_classes(world: &World, rng: &mut Stream) -> Vec<ClassId> {
    let cfg = &world.config().objects;
    let n_classes = world.classes().len();
    let mut n = rng.between(cfg.min, cfg.max) as usize;
    let mut counts = vec![0u32; n_classes];
    let mut banned = vec![false; n_classes];
    let mut list: Vec<ClassId> = Vec::with_capacity(n + 1);
    while list.len() < n {
        let repeatable: Vec<usize> = (0..n_classes)
            .filter(|&c| counts[c] > 0 && counts[c] < cfg.max_per_class)
            .collect();
        if !repeatable.is_empty() && rng.chance(cfg.repeat_rate) {
            let c = repeatable[rng.below(repeatable.len())];
            counts[c] += 1;
            list.push(ClassId(c as u16));
            continue;
        }
        let slots = n - list.len();
        // A paired class needs room for its partner: two slots, or one slot
        // while the image may still grow by one. This rule does not look at
        // the coin, so it does not bias the co-occurrence rate.
        let room_for_pair = slots >= 2 || n < cfg.max as usize;
        let fresh: Vec<usize> = (0..n_classes)
            .filter(|&c| counts[c] == 0 && !banned[c])
            .filter(|&c| room_for_pair || world.partner(ClassId(c as u16)).is_none())
            .collect();
        let pool = if fresh.is_empty() { repeatable } else { fresh };
        if pool.is_empty() {
            break; // Degenerate world: nothing left that may be added.
        }
        let c = pool[rng.below(pool.len())];
        counts[c] += 1;
        list.push(ClassId(c as u16));
        if counts[c] > 1 {
            continue;
        }
        if let Some((partner, rate)) = world.partner(ClassId(c as u16)) {
            if rng.chance(rate) {
                counts[partner.0 as usize] += 1;
                list.push(partner);
                n = n.max(list.len());
            } else {
                banned[partner.0 as usize] = true;
            }
        }
    }
    list
}

/// How much two discs overlap, as a share of the smaller one's diameter.
fn overlap(a: ([f32; 2], f32), b: ([f32; 2], f32)) -> f32 {
    let dx = a.0[0] - b.0[0];
    let dy = a.0[1] - b.0[1];
    let dist = (dx * dx + dy * dy).sqrt();
    ((a.1 + b.1 - dist) / (2.0 * a.1.min(b.1))).max(0.0)
}

/// Places the instances: radius, then up to 32 candidate centres, taking the
/// first whose overlap with every earlier instance is within the limit (or
/// the least overlapping one if none is).
pub(crate) fn place(world: &World, classes: &[ClassId], rng: &mut Stream) -> Vec<Instance> {
    let cfg = world.config();
    let size = cfg.image_size as f32;
    let tan_max = tan_half_degrees(cfg.objects.max_rotation_deg);
    let jitter = cfg.render.colour_jitter;
    let mut placed: Vec<Instance> = Vec::with_capacity(classes.len());
    for &class in classes {
        let radius = rng.range(cfg.objects.scale[0], cfg.objects.scale[1]) * size;
        let margin = radius * 0.75;
        let mut best = ([size / 2.0, size / 2.0], f32::INFINITY);
        for _ in 0..32 {
            let c = [
                rng.range(margin, size - margin),
                rng.range(margin, size - margin),
            ];
            let worst = placed
                .iter()
                .map(|p| overlap((c, radius), (p.center, p.radius)))
                .fold(0.0f32, f32::max);
            if worst < best.1 {
                best = (c, worst);
            }
            if worst <= cfg.objects.max_overlap {
                break;
            }
        }
        // Rational parameterisation of the angle: exact arithmetic only.
        let t = rng.range(-tan_max, tan_max);
        let rotation = [(1.0 - t * t) / (1.0 + t * t), 2.0 * t / (1.0 + t * t)];
        let look = &world.classes()[class.0 as usize].appearance;
        let shift = [(); 3].map(|_| rng.range(-jitter, jitter));
        let jit = |c: [f32; 3]| [0, 1, 2].map(|k| (c[k] + shift[k]).clamp(0.0, 1.0));
        placed.push(Instance {
            class,
            center: best.0,
            radius,
            rotation,
            colour: jit(look.colour),
            accent: jit(look.accent),
            visible_fraction: 1.0,
        });
    }
    placed
}

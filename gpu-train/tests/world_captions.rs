//! Captions and their statistics: reward-core's matcher finds exactly the
//! objects each caption claims to mention (so filler words never look like
//! objects and plurals resolve); held-out captions are truthful; pairs
//! co-occur and the annotator bias is realised at the configured rates.

use std::collections::HashSet;

use gpu_train::world::{ClassId, Split, World, pluralise};
use reward_core::mentions::Matcher;
use reward_core::vocab::{Expansion, Vocabulary};

/// |realised - configured| must stay within 4 binomial standard errors.
fn assert_rate(what: &str, realised: f64, configured: f64, n: usize) {
    assert!(n > 500, "{what}: only {n} events, too few for a rate check");
    let se = (configured * (1.0 - configured) / n as f64).sqrt();
    assert!(
        (realised - configured).abs() <= 4.0 * se,
        "{what}: realised {realised:.4} vs configured {configured} (n = {n}, 4 se = {:.4})",
        4.0 * se
    );
}

#[test]
fn matcher_finds_exactly_the_recorded_mentions() {
    let vocab = Vocabulary::builtin(Expansion::Fisao);
    let matcher = Matcher::new(&vocab);
    for world in [
        World::default_world().unwrap(),
        World::tiny_world().unwrap(),
    ] {
        for split in Split::ALL {
            for i in 0..400 {
                let a = world.annotate(split, i, i % 3);
                let found: Vec<_> = matcher
                    .find(&a.caption)
                    .iter()
                    .map(|m| ((m.start, m.end), m.entity))
                    .collect();
                let want: Vec<_> = a
                    .mentions
                    .iter()
                    .map(|m| (m.span, world.classes()[m.class.0 as usize].entity))
                    .collect();
                assert_eq!(found, want, "caption {:?}", a.caption);
            }
        }
    }
}

#[test]
fn captions_read_as_english() {
    let world = World::default_world().unwrap();
    let mut saw_count = false;
    for i in 0..300 {
        let a = world.annotate(Split::Test, i, 0);
        let c = &a.caption;
        assert!(
            c.ends_with('.') && !c.contains("  ") && !c.starts_with(' '),
            "{c:?}"
        );
        for m in &a.mentions {
            let class = &world.classes()[m.class.0 as usize];
            let text = &c[m.span.0..m.span.1];
            let before = &c[..m.span.0];
            if m.count == 1 {
                assert_eq!(text, class.name, "{c:?}");
                let article = if class.name == "umbrella" {
                    "an "
                } else {
                    "a "
                };
                assert!(before.ends_with(article), "{c:?}: article before {text:?}");
            } else {
                saw_count = true;
                assert_eq!(text, class.plural, "{c:?}");
                assert!(
                    before.ends_with("two ") || before.ends_with("three "),
                    "{c:?}"
                );
            }
        }
    }
    assert!(saw_count, "no caption with a repeated object in 300 images");
    let plural = |n: &str| {
        world.classes()[world.class_id(n).unwrap().0 as usize]
            .plural
            .clone()
    };
    assert_eq!(plural("knife"), "knives");
    assert_eq!(plural("person"), "people");
    assert_eq!(plural("mouse"), "mice");
    assert_eq!(plural("bus"), "buses");
}

#[test]
fn held_out_captions_are_truthful_and_complete() {
    let world = World::default_world().unwrap();
    for split in [Split::Validation, Split::Test] {
        for i in 0..500 {
            let a = world.annotate(split, i, 0);
            assert!(
                a.mentions.iter().all(|m| !m.hallucinated),
                "{:?}",
                a.caption
            );
            let mentioned: Vec<(ClassId, u32)> = {
                let mut v: Vec<_> = a.mentions.iter().map(|m| (m.class, m.count)).collect();
                v.sort();
                v
            };
            let truth: Vec<(ClassId, u32)> = a.objects.iter().map(|o| (o.class, o.count)).collect();
            assert_eq!(mentioned, truth, "{:?}", a.caption);
        }
    }
}

/// The verifier's captions name exactly the image's objects on every split
/// (no annotator bias), and on the held-out splits are the sample's caption.
#[test]
fn truthful_captions_name_exactly_the_objects() {
    let world = World::default_world().unwrap();
    let vocab = Vocabulary::builtin(Expansion::Fisao);
    let matcher = Matcher::new(&vocab);
    let mut differs = 0;
    for split in Split::ALL {
        for i in 0..300 {
            let a = world.annotate(split, i, i % 2);
            let text = world.truthful_caption(split, i, i % 2, &a.objects);
            let mut found: Vec<_> = matcher.find(&text).iter().map(|m| m.entity).collect();
            found.sort();
            found.dedup();
            let mut want: Vec<_> = a
                .objects
                .iter()
                .map(|o| world.classes()[o.class.0 as usize].entity)
                .collect();
            want.sort();
            assert_eq!(found, want, "{split:?} {i}: {text:?}");
            if split == Split::Train {
                differs += usize::from(text != a.caption);
            } else {
                assert_eq!(text, a.caption);
            }
        }
    }
    // Biased training captions exist, so some truthful ones differ.
    assert!(differs > 0);
}

#[test]
fn object_counts_respect_the_world_file() {
    let world = World::default_world().unwrap();
    let o = world.config().objects;
    let mut sizes = HashSet::new();
    for i in 0..2000 {
        let a = world.annotate(Split::Train, i, 0);
        let n = a.instances.len() as u32;
        assert!((o.min..=o.max).contains(&n), "image {i} has {n} objects");
        assert!(a.objects.iter().all(|c| c.count <= o.max_per_class));
        sizes.insert(n);
        // Hallucinated mentions are exactly the absent partners of present classes.
        for m in a.mentions.iter().filter(|m| m.hallucinated) {
            assert!(!a.contains(m.class));
            let (partner, _) = world
                .partner(m.class)
                .expect("only pair members are hallucinated");
            assert!(a.contains(partner));
        }
    }
    assert_eq!(
        sizes.len() as u32,
        o.max - o.min + 1,
        "every object count occurs"
    );
}

#[test]
fn pairs_cooccur_and_bias_is_realised_at_the_configured_rates() {
    let world = World::default_world().unwrap();
    let stats = world.stats(Split::Train, 20_000);
    for p in &stats.pairs {
        assert_rate(
            &format!("{}-{} co-occurrence", p.a, p.b),
            p.cooccurrence(),
            p.configured,
            p.either,
        );
        assert_rate(&format!("{}-{} bias", p.a, p.b), p.bias(), 0.3, p.lone);
    }
    let lone: usize = stats.pairs.iter().map(|p| p.lone).sum();
    assert_rate(
        "pooled bias",
        stats.bias_rate(),
        world.config().captions.bias_rate,
        lone,
    );
    // Unpaired classes are never hallucinated, and held-out splits carry no bias.
    assert!(stats.hallucinated_mentions > 0);
    let test = world.stats(Split::Test, 3000);
    assert_eq!(test.hallucinated_mentions, 0);
    assert_rate(
        "test co-occurrence",
        test.pairs[0].cooccurrence(),
        0.75,
        test.pairs[0].either,
    );
    // Every class shows up in a fair share of images.
    for (c, &n) in stats.class_images.iter().enumerate() {
        assert!(
            n > 20_000 / 30,
            "class {} appears in only {n} images",
            world.classes()[c].name
        );
    }
}

#[test]
fn a_different_bias_rate_is_realised_too() {
    let mut cfg = gpu_train::world::WorldConfig::default_world().unwrap();
    cfg.captions.bias_rate = 0.8;
    cfg.pairs[0].cooccurrence = 0.4;
    let world = World::new(cfg, &Vocabulary::builtin(Expansion::Fisao), "test").unwrap();
    let stats = world.stats(Split::Train, 10_000);
    let lone: usize = stats.pairs.iter().map(|p| p.lone).sum();
    assert_rate("bias 0.8", stats.bias_rate(), 0.8, lone);
    let p = &stats.pairs[0];
    assert_rate("co-occurrence 0.4", p.cooccurrence(), 0.4, p.either);
}

#[test]
fn ground_truth_file_lists_names_counts_and_spans() {
    let world = World::tiny_world().unwrap();
    let dir = std::env::temp_dir().join(format!("fisao-world-gt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("train.jsonl");
    world.write_ground_truth(Split::Train, &path, None).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), world.len(Split::Train));
    let mut hallucinated = 0;
    for (i, line) in lines.iter().enumerate() {
        let a = world.annotate(Split::Train, i as u64, 0);
        assert_eq!(line["caption"], a.caption.as_str());
        assert_eq!(line["index"], i as u64);
        assert_eq!(
            line["instances"].as_array().unwrap().len(),
            a.instances.len()
        );
        let objects = line["objects"].as_array().unwrap();
        for (o, truth) in objects.iter().zip(&a.objects) {
            assert_eq!(o[0], world.class_name(truth.class));
            assert_eq!(o[1], truth.count);
        }
        for m in line["mentions"].as_array().unwrap() {
            let text = m["text"].as_str().unwrap();
            let class = m["class"].as_str().unwrap();
            assert!(
                text == class || text == pluralise(class),
                "{text} for {class}"
            );
            hallucinated += usize::from(m["hallucinated"] == true);
        }
    }
    assert!(
        hallucinated > 0,
        "tiny world has bias 0.5: some mention must be hallucinated"
    );
}

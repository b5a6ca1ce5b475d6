//! Mention matching throughput (issue 2, section 5): reward-core's
//! `Matcher` against a plain aho-corasick leftmost-longest scan over the
//! same captions and the same surface forms.
//!
//! The aho-corasick scan is the ceiling, not a competitor: it looks for the
//! forms as raw ASCII-case-insensitive substrings, with no word boundaries
//! ("cat" inside "location" counts), no Unicode case folding, no hyphen or
//! possessive rules, so it does strictly less work per byte. The goal is
//! for the matcher to reach at least half its captions per second.
//!
//! Captions are generated from templates (20 to 40 words, LLaVA-style
//! detail descriptions) with surface forms drawn from the built-in
//! vocabulary, so the hit rate resembles real responses.
//!
//! Run: `cargo bench -p fisao-benches --bench matcher`.

use std::hint::black_box;

use aho_corasick::{AhoCorasick, MatchKind};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reward_core::mentions::Matcher;
use reward_core::vocab::{Expansion, Vocabulary};

/// Sentence templates; `{}` is replaced by a surface form.
const TEMPLATES: &[&str] = &[
    "The image shows a {} sitting on top of a wooden table next to a {}.",
    "In the background, there is a {} and several people walking along the street.",
    "A {} is placed near the window, while a small {} rests on the floor beside it.",
    "The scene appears to be taken outdoors on a sunny day with a clear blue sky.",
    "On the left side of the picture, a {} can be seen partially hidden behind a {}.",
    "There are also a few {} scattered around, adding to the lively atmosphere.",
    "Overall, the image captures a busy moment with a {}, a {} and a {} in view.",
    "The colors are bright and the lighting suggests it is late in the afternoon.",
    "A woman holds a {} in her hand as she looks toward the camera with a smile.",
];

/// Deterministic generator (SplitMix64): the same captions every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// `count` captions of 2 to 3 template sentences each.
fn captions(forms: &[&str], count: usize) -> Vec<String> {
    let mut rng = Rng(2025);
    (0..count)
        .map(|_| {
            let sentences = 2 + rng.below(2);
            let mut caption = String::new();
            for _ in 0..sentences {
                let template = TEMPLATES[rng.below(TEMPLATES.len())];
                for (i, part) in template.split("{}").enumerate() {
                    if i > 0 {
                        let form = forms[rng.below(forms.len())];
                        // Some capitalised forms exercise case folding.
                        if rng.below(4) == 0 {
                            let mut c = form.chars();
                            let head: String =
                                c.next().into_iter().flat_map(char::to_uppercase).collect();
                            caption.push_str(&head);
                            caption.push_str(c.as_str());
                        } else {
                            caption.push_str(form);
                        }
                    }
                    caption.push_str(part);
                }
                caption.push(' ');
            }
            caption.pop();
            caption
        })
        .collect()
}

fn bench_matching(c: &mut Criterion) {
    let vocab = Vocabulary::builtin(Expansion::Fisao);
    let forms: Vec<&str> = vocab.forms().map(|(f, _)| f).collect();
    let texts = captions(&forms, 400);
    let words: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    let bytes: usize = texts.iter().map(String::len).sum();

    let matcher = Matcher::new(&vocab);
    let ac = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .ascii_case_insensitive(true)
        .build(&forms)
        .expect("aho-corasick builds from the vocabulary forms");

    let ours: usize = texts.iter().map(|t| matcher.find_iter(t).count()).sum();
    let peer: usize = texts.iter().map(|t| ac.find_iter(t.as_str()).count()).sum();
    eprintln!(
        "matcher bench: {} forms, {} captions, {:.1} words and {:.0} bytes per caption; \
         mentions found: matcher {ours}, aho-corasick {peer}",
        forms.len(),
        texts.len(),
        words as f64 / texts.len() as f64,
        bytes as f64 / texts.len() as f64,
    );

    paired_ratio(&texts, &matcher, &ac);

    let mut group = c.benchmark_group("mentions");
    group.throughput(Throughput::Elements(texts.len() as u64));
    group.bench_function("fisao_matcher", |b| {
        b.iter(|| {
            texts
                .iter()
                .map(|t| matcher.find_iter(black_box(t)).count())
                .sum::<usize>()
        })
    });
    group.bench_function("aho_corasick_leftmost_longest", |b| {
        b.iter(|| {
            texts
                .iter()
                .map(|t| ac.find_iter(black_box(t.as_str())).count())
                .sum::<usize>()
        })
    });
    group.finish();

    let mut build = c.benchmark_group("build");
    build.bench_function("fisao_matcher", |b| {
        b.iter(|| Matcher::new(black_box(&vocab)))
    });
    build.bench_function("aho_corasick_leftmost_longest", |b| {
        b.iter(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .ascii_case_insensitive(true)
                .build(black_box(&forms))
        })
    });
    build.finish();
}

/// On-CPU time of this thread in seconds, so time spent waiting for a core
/// on a shared machine is not counted.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // every Unix this bench runs on supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Speed of the matcher relative to aho-corasick measured in alternating
/// passes, one of each per round, timed by on-CPU time: on a shared
/// machine the load drifts between criterion's two sequential wall-clock
/// measurements, while each round sees nearly the same conditions on both
/// sides. Prints the median and quartiles of
/// `time(aho-corasick) / time(matcher)` over the rounds.
fn paired_ratio(texts: &[String], matcher: &Matcher, ac: &AhoCorasick) {
    const ROUNDS: usize = 200;
    let time = |f: &dyn Fn() -> usize| {
        let t = cpu_seconds();
        black_box(f());
        cpu_seconds() - t
    };
    let ours = || {
        texts
            .iter()
            .map(|t| matcher.find_iter(black_box(t)).count())
            .sum()
    };
    let peer = || {
        texts
            .iter()
            .map(|t| ac.find_iter(black_box(t.as_str())).count())
            .sum()
    };
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|round| {
            // Alternate which side runs first, so neither always gets the
            // warmer cache.
            let (a, b) = if round % 2 == 0 {
                (time(&ours), time(&peer))
            } else {
                let b = time(&peer);
                (time(&ours), b)
            };
            b / a
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let q = |f: f64| ratios[((ROUNDS - 1) as f64 * f) as usize];
    eprintln!(
        "paired rounds (on-CPU time): matcher speed / aho-corasick speed = {:.2} \
         (quartiles {:.2}..{:.2}, {ROUNDS} rounds)",
        q(0.5),
        q(0.25),
        q(0.75)
    );
}

criterion_group!(benches, bench_matching);
criterion_main!(benches);

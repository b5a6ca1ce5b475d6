//! Property tests of the mention matcher and token alignment against the
//! naive reference in `fuzz/check.rs`, and the fuzz seed corpus run as a
//! plain test, so CI exercises the fuzz target's invariants without
//! cargo-fuzz.

#[path = "../fuzz/check.rs"]
mod check;

use proptest::prelude::*;
use std::path::PathBuf;

/// Pieces the random texts are built from: vocabulary words and their
/// parts, separators the rules treat specially, and non-ASCII characters
/// whose case mapping changes their byte length.
const PIECES: &[&str] = &[
    "dog",
    "dogs",
    "teddy",
    "bear",
    "bears",
    "hot",
    "t",
    "shirt",
    "tee",
    "doll",
    "house",
    "kite",
    "café",
    "cafe",
    "οδος",
    "ΟΔΟΣ",
    "i̇stanbul",
    "İstanbul",
    "\u{212A}ite",
    "o'clock",
    "cat",
    "o",
    "nine",
    "tails",
    "st",
    "bernard",
    "saint",
    "東京",
    "man",
    "bench",
    "person",
    "a",
    "s",
    " ",
    " ",
    " ",
    "  ",
    "\n",
    "-",
    "-",
    "'",
    "’",
    "'s",
    "’s",
    ".",
    ",",
    "\u{301}",
    "\u{2010}",
    "😀",
    "x",
    "\u{a0}",
];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(PIECES), any::<bool>()), 0..24).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(p, upper)| {
                if upper {
                    p.to_uppercase()
                } else {
                    p.to_string()
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matcher_equals_reference_small_vocab(t in text()) {
        check::check_text(check::small(), &t);
    }

    #[test]
    fn matcher_equals_reference_builtin_vocab(t in text()) {
        check::check_text(check::builtin(), &t);
    }

    #[test]
    fn alignment_invariants(t in text(), seed in any::<u64>()) {
        let fx = check::small();
        let mentions = check::check_text(fx, &t);
        let mut rng = check::Stream::new(&seed.to_le_bytes());
        let (offsets, reach) = check::fake_offsets(&t, &mut rng);
        check::check_alignment(&mentions, &offsets, reach);
    }

    #[test]
    fn arbitrary_bytes_never_break_invariants(data in prop::collection::vec(any::<u8>(), 0..96)) {
        check::check_input(&data);
    }
}

#[test]
fn reference_tokenizer_follows_the_documented_rules() {
    let keys = |t: &str| -> Vec<(String, bool, bool)> {
        check::ref_tokens(t)
            .into_iter()
            .map(|x| (x.key, x.joined_prev, x.joined_next))
            .collect()
    };
    let k = |s: &str, p: bool, n: bool| (s.to_string(), p, n);
    assert_eq!(
        keys("Hot-Dog’s o'clock -x"),
        [
            k("hot", false, true),
            k("dog", true, false),
            k("'s", false, false),
            k("o'clock", false, false),
            k("-", false, false),
            k("x", false, false),
        ]
    );
}

#[test]
fn seed_corpus_passes_the_fuzz_checks() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/matcher");
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        })
        .collect();
    seeds.sort();
    assert!(
        seeds.len() >= 15,
        "seed corpus in {} looks incomplete",
        dir.display()
    );
    let mut mentions = 0;
    for path in &seeds {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        check::check_input(&data);
        if let Some((&pick, rest)) = data.split_first() {
            let fx = if pick % 2 == 0 {
                check::small()
            } else {
                check::builtin()
            };
            mentions += fx.matcher.find(&String::from_utf8_lossy(rest)).len();
        }
    }
    // The seeds are meant to exercise matches, not only misses.
    assert!(
        mentions >= 40,
        "only {mentions} mentions across the seed corpus"
    );
}

//! Invariants of the mention matcher and the token alignment, plus a naive
//! reference matcher to compare with. One file, two users: the cargo-fuzz
//! target `fuzz_targets/matcher.rs` and the seed-corpus / property tests in
//! `reward-core/tests/mentions_props.rs` (both `#[path]`-include it), so CI
//! runs the exact checks the fuzzer runs.
//!
//! The reference re-implements the tokenization rules of
//! `reward-core/src/mentions.rs` in the most literal way (classify every
//! character, then group), and matches by trying every form at every token:
//! quadratic, allocation-heavy, and easy to read.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use reward_core::align::{Coverage, align_mentions};
use reward_core::mentions::{Matcher, Mention};
use reward_core::vocab::{EntityId, Expansion, Vocabulary};

/// A token of the reference tokenizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefToken {
    pub start: usize,
    pub end: usize,
    pub key: String,
    pub joined_prev: bool,
    pub joined_next: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Word,
    Space,
    Clitic,
    Join,
    Other,
}

fn is_mark(c: char) -> bool {
    let ranges: [(u32, u32); 13] = [
        (0x0300, 0x036F),
        (0x0483, 0x0489),
        (0x0591, 0x05BD),
        (0x0610, 0x061A),
        (0x064B, 0x065F),
        (0x0900, 0x0903),
        (0x093A, 0x094F),
        (0x1AB0, 0x1AFF),
        (0x1DC0, 0x1DFF),
        (0x200D, 0x200D),
        (0x20D0, 0x20FF),
        (0xFE00, 0xFE0F),
        (0xFE20, 0xFE2F),
    ];
    ranges.iter().any(|&(a, b)| (a..=b).contains(&(c as u32)))
}

fn wordish(c: char) -> bool {
    c.is_alphanumeric() || is_mark(c)
}

/// Classifies every character, left to right, applying the rules in the
/// order they are documented.
fn classify(chars: &[char]) -> Vec<Class> {
    let mut class: Vec<Class> = Vec::with_capacity(chars.len());
    for (i, &c) in chars.iter().enumerate() {
        let prev_word = i > 0 && class[i - 1] == Class::Word;
        let next = chars.get(i + 1).copied();
        let next_word = next.is_some_and(wordish);
        let k = if class.get(i).is_some() {
            continue;
        } else if wordish(c) {
            Class::Word
        } else if c.is_whitespace() {
            Class::Space
        } else if (c == '\'' || c == '\u{2019}') && prev_word && next_word {
            let after = chars.get(i + 2).copied();
            if matches!(next, Some('s' | 'S')) && !after.is_some_and(wordish) {
                class.push(Class::Clitic);
                class.push(Class::Clitic);
                continue;
            }
            Class::Word
        } else if matches!(c, '-' | '\u{2010}' | '\u{2011}') && prev_word && next_word {
            Class::Join
        } else {
            Class::Other
        };
        class.push(k);
    }
    class
}

fn fold(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\u{2019}' => out.push('\''),
            '\u{2010}' | '\u{2011}' => out.push('-'),
            _ => {
                for l in c.to_lowercase() {
                    out.push(if l == 'ς' { 'σ' } else { l });
                }
            }
        }
    }
    out
}

/// Tokens of `text` by the documented rules.
pub fn ref_tokens(text: &str) -> Vec<RefToken> {
    let idx: Vec<(usize, char)> = text.char_indices().collect();
    let chars: Vec<char> = idx.iter().map(|p| p.1).collect();
    let class = classify(&chars);
    let byte = |i: usize| idx.get(i).map_or(text.len(), |p| p.0);
    let mut out: Vec<RefToken> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let j = match class[i] {
            Class::Space | Class::Join => i + 1,
            Class::Word => (i..chars.len())
                .find(|&j| class[j] != Class::Word)
                .unwrap_or(chars.len()),
            Class::Clitic => i + 2,
            Class::Other => i + 1,
        };
        if !matches!(class[i], Class::Space | Class::Join) {
            let joined_prev = i > 0 && class[i - 1] == Class::Join;
            let joined_next = class.get(j) == Some(&Class::Join);
            let (start, end) = (byte(i), byte(j));
            out.push(RefToken {
                start,
                end,
                key: fold(&text[start..end]),
                joined_prev,
                joined_next,
            });
        }
        i = j;
    }
    out
}

/// Forms as key sequences, grouped by first key; the first form of a key
/// sequence wins.
pub type RefForms = HashMap<String, Vec<(Vec<String>, EntityId)>>;

/// Every form of `vocab` as reference keys.
pub fn ref_forms(vocab: &Vocabulary) -> RefForms {
    let mut seen: HashSet<Vec<String>> = HashSet::new();
    let mut forms = RefForms::new();
    for (form, entity) in vocab.forms() {
        let keys: Vec<String> = ref_tokens(form).into_iter().map(|t| t.key).collect();
        if !keys.is_empty() && seen.insert(keys.clone()) {
            forms
                .entry(keys[0].clone())
                .or_default()
                .push((keys, entity));
        }
    }
    forms
}

/// Whether `keys` are the keys of some form naming `entity`.
pub fn is_form_of(forms: &RefForms, keys: &[String], entity: EntityId) -> bool {
    let Some(first) = keys.first() else {
        return false;
    };
    forms
        .get(first)
        .is_some_and(|list| list.iter().any(|(k, e)| k == keys && *e == entity))
}

/// The naive matcher: at every token, try every form that starts with that
/// token's key; keep the longest.
pub fn ref_find(forms: &RefForms, text: &str) -> Vec<Mention> {
    let toks = ref_tokens(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let mut best: Option<(usize, EntityId)> = None;
        let candidates = forms.get(&toks[i].key).map(Vec::as_slice).unwrap_or(&[]);
        if !toks[i].joined_prev {
            for (keys, entity) in candidates {
                let n = keys.len();
                let fits = i + n <= toks.len()
                    && toks[i..i + n].iter().zip(keys).all(|(t, k)| t.key == *k)
                    && !toks[i + n - 1].joined_next;
                if fits && best.is_none_or(|(m, _)| n > m) {
                    best = Some((n, *entity));
                }
            }
        }
        match best {
            Some((n, entity)) => {
                out.push(Mention {
                    start: toks[i].start,
                    end: toks[i + n - 1].end,
                    entity,
                });
                i += n;
            }
            None => i += 1,
        }
    }
    out
}

/// A small vocabulary with every tricky shape the rules name.
pub fn small_vocab() -> Vocabulary {
    let entities = [
        "dog",
        "teddy bear",
        "hot dog",
        "bear",
        "t-shirt",
        "doll's house",
        "café",
        "οδος",
        "i̇stanbul",
        "kite",
        "o'clock",
        "cat-o'-nine-tails",
        "st. bernard",
        "東京",
    ];
    let forms = [
        ("dogs", 0u16),
        ("teddy bears", 1),
        ("hot dogs", 2),
        ("bears", 3),
        ("tee shirt", 4),
        ("doll house", 5),
        ("kites", 9),
        ("saint bernard", 12),
    ];
    Vocabulary::from_parts(entities, forms.iter().map(|(f, e)| (f.to_string(), *e)))
        .expect("the small vocabulary is valid")
}

/// Matchers and reference forms, built once per process.
pub struct Fixture {
    pub vocab: Vocabulary,
    pub matcher: Matcher,
    pub forms: RefForms,
}

impl Fixture {
    fn new(vocab: Vocabulary) -> Self {
        Self {
            matcher: Matcher::new(&vocab),
            forms: ref_forms(&vocab),
            vocab,
        }
    }
}

pub fn small() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture::new(small_vocab()))
}

pub fn builtin() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture::new(Vocabulary::builtin(Expansion::Fisao)))
}

/// Checks the matcher on one text; returns the mentions.
pub fn check_text(fx: &Fixture, text: &str) -> Vec<Mention> {
    let got = fx.matcher.find(text);
    let lazy: Vec<Mention> = fx.matcher.find_iter(text).collect();
    assert_eq!(got, lazy, "find and find_iter differ on {text:?}");
    for m in &got {
        assert!(
            m.start < m.end && m.end <= text.len(),
            "{m:?} outside {text:?}"
        );
        assert!(
            text.is_char_boundary(m.start) && text.is_char_boundary(m.end),
            "{m:?} not on char boundaries of {text:?}"
        );
        let keys: Vec<String> = ref_tokens(&text[m.start..m.end])
            .into_iter()
            .map(|t| t.key)
            .collect();
        assert!(
            is_form_of(&fx.forms, &keys, m.entity),
            "{m:?} = {:?} is no form of its entity",
            &text[m.start..m.end]
        );
        let (cs, ce) = m.char_span(text).expect("char span");
        assert_eq!(ce - cs, text[m.start..m.end].chars().count());
        let (us, ue) = m.utf16_span(text).expect("utf16 span");
        assert_eq!(us, text[..m.start].encode_utf16().count());
        assert_eq!(ue - us, text[m.start..m.end].encode_utf16().count());
    }
    for w in got.windows(2) {
        assert!(
            w[0].end <= w[1].start,
            "overlap or disorder: {w:?} in {text:?}"
        );
    }
    let want = ref_find(&fx.forms, text);
    assert_eq!(got, want, "matcher and reference differ on {text:?}");
    got
}

/// Deterministic pseudo-random stream (xorshift64*) from fuzz bytes.
pub struct Stream(u64);

impl Stream {
    pub fn new(data: &[u8]) -> Self {
        let mut h = 0x9E37_79B9_7F4A_7C15u64;
        for &b in data {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self(h | 1)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Tokenizer-like offsets for `text`: pieces that tile the text at random
/// char boundaries, some with the leading space trimmed off the span
/// (SentencePiece vs byte-level conventions), `(0, 0)` specials sprinkled
/// in, and maybe cut short. Returns the offsets and the byte where the
/// kept pieces end.
pub fn fake_offsets(text: &str, rng: &mut Stream) -> (Vec<(usize, usize)>, usize) {
    let mut cuts: Vec<usize> = text
        .char_indices()
        .map(|p| p.0)
        .filter(|&b| b > 0 && rng.below(3) == 0)
        .collect();
    cuts.push(text.len());
    let mut offsets = vec![(0, 0)];
    let mut at = 0;
    for end in cuts {
        let piece = &text[at..end];
        let lead = piece.len() - piece.trim_start().len();
        let start = if lead < piece.len() && rng.below(2) == 0 {
            at + lead
        } else {
            at
        };
        offsets.push((start, end));
        if rng.below(8) == 0 {
            offsets.push((0, 0));
        }
        at = end;
    }
    let mut reach = text.len();
    if rng.below(4) == 0 {
        let keep = rng.below(offsets.len() as u64 + 1) as usize;
        offsets.truncate(keep);
        reach = offsets.iter().map(|o| o.1).max().unwrap_or(0);
    }
    (offsets, reach)
}

/// Checks the alignment of `mentions` against `offsets` that tile the text
/// up to byte `reach`.
pub fn check_alignment(mentions: &[Mention], offsets: &[(usize, usize)], reach: usize) {
    let aligned = align_mentions(mentions, offsets).expect("valid offsets align");
    assert_eq!(aligned.len(), mentions.len());
    for (a, m) in aligned.iter().zip(mentions) {
        assert_eq!(a.mention, *m);
        let want: Vec<usize> = (0..offsets.len())
            .filter(|&i| offsets[i].0 < m.end && offsets[i].1 > m.start)
            .collect();
        assert_eq!(a.tokens, want, "overlapping tokens of {m:?}");
        assert!(a.tokens.iter().all(|&t| t < offsets.len()));
        let expect = if m.end <= reach {
            Coverage::Full
        } else if m.start >= reach {
            Coverage::Missing
        } else {
            Coverage::Partial
        };
        assert_eq!(
            a.coverage, expect,
            "coverage of {m:?} with tokens up to byte {reach}"
        );
        if let Some(r) = a.token_range() {
            assert!(r.start < r.end && r.end <= offsets.len());
            assert_eq!(a.last_token(), Some(r.end - 1));
        }
    }
}

/// One fuzz input: byte 0 picks the vocabulary, the rest is the text
/// (lossy UTF-8); offsets derive from all bytes.
pub fn check_input(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let fx = if pick % 2 == 0 { small() } else { builtin() };
    let text = String::from_utf8_lossy(rest);
    let mentions = check_text(fx, &text);
    let mut rng = Stream::new(data);
    let (offsets, reach) = fake_offsets(&text, &mut rng);
    check_alignment(&mentions, &offsets, reach);
}

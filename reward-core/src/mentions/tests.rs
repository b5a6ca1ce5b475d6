//! Hand-made cases for the matcher rules documented in `mentions.rs`.
//! Property tests against a naive reference and the fuzz seed corpus live
//! in `reward-core/tests/mentions_props.rs`.

use super::*;
use crate::vocab::Expansion;
use alloc::string::String;
use alloc::vec;

fn vocab(entities: &[&str], forms: &[(&str, u16)]) -> Vocabulary {
    Vocabulary::from_parts(
        entities.iter().copied(),
        forms.iter().map(|(f, e)| (String::from(*f), *e)),
    )
    .expect("test vocabulary is valid")
}

/// A small vocabulary with the tricky shapes: nested multi-word forms,
/// plurals, a hyphenated form, a possessive form, non-ASCII forms.
fn small() -> Vocabulary {
    vocab(
        &[
            "dog",
            "teddy bear",
            "hot dog",
            "bear",
            "t-shirt",
            "doll's house",
            "café",
            "οδος",
            "i̇stanbul",
        ],
        &[
            ("dogs", 0),
            ("teddy bears", 1),
            ("hot dogs", 2),
            ("bears", 3),
            ("tee shirt", 4),
            ("doll house", 5),
        ],
    )
}

/// `(matched text, entity name)` pairs.
fn found<'t>(v: &Vocabulary, text: &'t str) -> Vec<(&'t str, String)> {
    let m = Matcher::new(v);
    m.find(text)
        .iter()
        .map(|x| {
            let name = v.entity_name(x.entity).unwrap_or("?");
            (x.text(text).unwrap_or("<bad span>"), String::from(name))
        })
        .collect()
}

fn pairs<'a>(list: &[(&'a str, &str)]) -> Vec<(&'a str, String)> {
    list.iter().map(|(a, b)| (*a, String::from(*b))).collect()
}

#[test]
fn longest_match_wins() {
    let v = small();
    assert_eq!(
        found(&v, "a teddy bear, a bear, hot dogs and a dog"),
        pairs(&[
            ("teddy bear", "teddy bear"),
            ("bear", "bear"),
            ("hot dogs", "hot dog"),
            ("dog", "dog"),
        ])
    );
}

#[test]
fn prefix_of_a_longer_form_falls_back() {
    let v = small();
    // "teddy" alone is no form; "hot" then "bear" is no form.
    assert_eq!(found(&v, "teddy dog"), pairs(&[("dog", "dog")]));
    assert_eq!(found(&v, "hot bear"), pairs(&[("bear", "bear")]));
    assert_eq!(found(&v, "teddy"), pairs(&[]));
}

#[test]
fn case_insensitive_and_whitespace_tolerant() {
    let v = small();
    assert_eq!(
        found(&v, "TEDDY\n\t Bear HoT   DoGs"),
        pairs(&[("TEDDY\n\t Bear", "teddy bear"), ("HoT   DoGs", "hot dog")])
    );
}

#[test]
fn word_boundaries_are_respected() {
    let v = small();
    assert_eq!(
        found(&v, "hotdogs bulldog dogma underdogs bearing"),
        pairs(&[])
    );
    assert_eq!(found(&v, "dog2 2dog dog_"), pairs(&[("dog", "dog")]));
}

#[test]
fn punctuation_breaks_multi_word_forms() {
    let v = small();
    assert_eq!(found(&v, "hot. Dog!"), pairs(&[("Dog", "dog")]));
    assert_eq!(found(&v, "(teddy) bear"), pairs(&[("bear", "bear")]));
    assert_eq!(
        found(&v, "\"dog\", [bears]"),
        pairs(&[("dog", "dog"), ("bears", "bear")])
    );
}

#[test]
fn hyphen_joins_inside_a_match_but_compounds_are_atomic() {
    let v = small();
    assert_eq!(
        found(&v, "a hot-dog, a Teddy-Bear, a T-Shirt and a t shirt"),
        pairs(&[
            ("hot-dog", "hot dog"),
            ("Teddy-Bear", "teddy bear"),
            ("T-Shirt", "t-shirt"),
            ("t shirt", "t-shirt"),
        ])
    );
    // No match starts or ends inside a compound.
    assert_eq!(
        found(&v, "dog-friendly police-dog hot-dog-stand"),
        pairs(&[])
    );
    // A dash or a spaced hyphen is punctuation, not a join.
    assert_eq!(found(&v, "hot - dog"), pairs(&[("dog", "dog")]));
}

#[test]
fn possessives_cover_the_noun() {
    let v = small();
    assert_eq!(
        found(
            &v,
            "the dog's bowl, the dogs' bowls, the DOG’S tail, a bear's"
        ),
        pairs(&[
            ("dog", "dog"),
            ("dogs", "dog"),
            ("DOG", "dog"),
            ("bear", "bear")
        ])
    );
    assert_eq!(
        found(&v, "a doll's house, a Doll’s House, a doll house"),
        pairs(&[
            ("doll's house", "doll's house"),
            ("Doll’s House", "doll's house"),
            ("doll house", "doll's house"),
        ])
    );
}

#[test]
fn non_ascii_text_keeps_original_byte_offsets() {
    let v = small();
    let text = "🐕 東京の dog, CAFÉ, cafe\u{301}? ΟΔΟΣ";
    let m = Matcher::new(&v).find(text);
    let spans: Vec<&str> = m.iter().map(|x| &text[x.start..x.end]).collect();
    assert_eq!(spans, ["dog", "CAFÉ", "ΟΔΟΣ"]);
    assert_eq!(m[0].start, "🐕 東京の ".len());
    // The decomposed "cafe\u{301}" is another string than "café": no match,
    // but the combining mark keeps it one word (no "cafe" + junk).
}

#[test]
fn case_mapping_that_changes_length_keeps_offsets() {
    // 'İ' (2 bytes) lower-cases to "i\u{307}" (3 bytes); the Kelvin sign
    // (3 bytes) to 'k' (1 byte). Offsets must still index the original.
    let v = vocab(&["kite", "dog", "i̇stanbul"], &[]);
    let text = "İSTANBUL \u{212A}ITE İİ dog";
    let m = Matcher::new(&v).find(text);
    let spans: Vec<(usize, usize, &str)> = m
        .iter()
        .map(|x| (x.start, x.end, &text[x.start..x.end]))
        .collect();
    assert_eq!(
        spans,
        [(0, 9, "İSTANBUL"), (10, 16, "\u{212A}ITE"), (22, 25, "dog"),]
    );
}

#[test]
fn char_and_utf16_spans() {
    let v = small();
    let text = "😀é dog";
    let m = Matcher::new(&v).find(text);
    assert_eq!(m.len(), 1);
    assert_eq!((m[0].start, m[0].end), (7, 10));
    assert_eq!(m[0].char_span(text), Some((3, 6)));
    assert_eq!(m[0].utf16_span(text), Some((4, 7)));
    let off = Mention {
        start: 1,
        end: 3,
        entity: EntityId(0),
    };
    assert_eq!(off.char_span(text), None, "inside the emoji");
    assert_eq!(off.text(text), None);
}

#[test]
fn same_tokens_different_entities_are_reported() {
    let v = vocab(&["hot dog", "sausage"], &[("hot-dog", 1)]);
    let m = Matcher::new(&v);
    let shadowed: Vec<(&str, EntityId)> = m.shadowed_forms().collect();
    // "hot dog" sorts before "hot-dog", so it wins.
    assert_eq!(shadowed, [("hot-dog", EntityId(1))]);
    assert_eq!(found(&v, "hot-dog"), pairs(&[("hot-dog", "hot dog")]));
}

#[test]
fn find_iter_agrees_with_find_and_resumes_after_a_match() {
    let v = small();
    let text = "teddy bears teddy bear bear dogs";
    let m = Matcher::new(&v);
    let a: Vec<Mention> = m.find_iter(text).collect();
    assert_eq!(a, m.find(text));
    assert_eq!(a.len(), 4);
    assert!(a.windows(2).all(|w| w[0].end <= w[1].start));
}

#[test]
fn empty_and_odd_inputs() {
    let v = small();
    let m = Matcher::new(&v);
    for text in ["", " ", "'", "-", "'s", "-dog-", "dog'", "\u{0}\u{301}"] {
        let got = m.find(text);
        for x in &got {
            assert!(text.is_char_boundary(x.start) && text.is_char_boundary(x.end));
        }
    }
    assert_eq!(found(&v, "-dog-"), pairs(&[("dog", "dog")]));
    assert_eq!(found(&v, "dog'"), pairs(&[("dog", "dog")]));
}

#[test]
fn builtin_vocabulary() {
    let v = Vocabulary::builtin(Expansion::Fisao);
    let m = Matcher::new(&v);
    assert_eq!(m.shadowed_forms().len(), 0);
    let text = "A Teddy Bear sits on a bench near a hot dog stand; the dog's frisbee.";
    let names: Vec<&str> = m
        .find(text)
        .iter()
        .map(|x| v.entity_name(x.entity).unwrap_or("?"))
        .collect();
    assert_eq!(names, ["teddy bear", "bench", "hot dog", "dog", "frisbee"]);
    let empty = vocab(&[], &[]);
    assert!(Matcher::new(&empty).find(text).is_empty());
    let _ = vec![0u8]; // keep `vec` import used under no_std
}

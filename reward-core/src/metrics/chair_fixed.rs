//! CHAIR's `fixed` mode: object mentions from the project's [`Matcher`]
//! (method.md section 3: longest match on word boundaries, plurals and
//! synonyms from the vocabulary) instead of chair.py's NLTK + Pattern
//! pipeline, restricted to COCO's 80 categories, with chair.py's quirks
//! repaired. docs/evaluation.md lists each difference with an example.
//!
//! The vocabulary is the built-in one plus chair.py's synonym words
//! (trimmed and lower-cased, so " motor bike", " cheesecake" and "iPhone"
//! count) and their plurals, wherever the built-in vocabulary does not
//! already give the word a meaning of its own (its sense wins: a word it
//! maps to a non-COCO entity is not counted).
//!
//! Context rules that replace chair.py's bigram lists:
//! - a modifier word ("baby", "adult", "passenger", the colour "orange")
//!   directly followed by another object noun names no object of its own
//!   ("baby elephant", "passenger train", "orange suit");
//! - "orange" directly followed by a colour word or a common non-object noun
//!   ("orange and white cat", "orange shirt") is the colour;
//! - "seat" right after "toilet" is part of the toilet (chair.py instead
//!   drops every "seat" of a caption that mentions a toilet anywhere).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::chair::{ChairTables, ObjectMention};
use super::error::{EvalError, EvalErrorKind};
use crate::mentions::{Matcher, Mention};
use crate::vocab::{EntityId, Expansion, Vocabulary};

/// Words that describe the next noun when one follows directly.
const MODIFIERS: &[&str] = &["baby", "babies", "adult", "adults", "passenger", "orange"];

/// Colour words: "orange" before one of them (or before "and"/"or" + one
/// of them) is a colour itself ("orange and white cat").
const COLOURS: &[&str] = &[
    "white", "black", "red", "yellow", "blue", "green", "brown", "pink", "purple", "grey", "gray",
    "colored", "coloured", "color", "colour", "tan", "gold", "silver",
];

/// Frequent non-object nouns of captions after which "orange" is a colour
/// even where the vocabulary does not list the noun.
const COLOURED_NOUNS: &[&str] = &[
    "shirt",
    "shirts",
    "jacket",
    "vest",
    "suit",
    "hat",
    "cap",
    "helmet",
    "jersey",
    "uniform",
    "dress",
    "coat",
    "outfit",
    "pants",
    "shorts",
    "wall",
    "walls",
    "sky",
    "sunset",
    "light",
    "lights",
    "paint",
    "stripe",
    "stripes",
    "fur",
    "flowers",
    "flower",
    "building",
    "door",
    "roof",
    "sign",
    "cone",
    "cones",
    "tabby",
    "lettering",
];

/// The fixed-mode extractor: a matcher over the augmented vocabulary and,
/// per entity, its COCO category (if any).
#[derive(Clone, Debug)]
pub(crate) struct FixedExtractor {
    matcher: Matcher,
    coco_of: Vec<Option<u8>>,
}

impl FixedExtractor {
    pub fn new(tables: &ChairTables) -> Result<Self, EvalError> {
        let base = Vocabulary::builtin(Expansion::Fisao);
        let coco_of = coco_categories(tables, &base);
        let mut added: BTreeMap<String, u16> = BTreeMap::new();
        for (word, &cat) in &tables.synonyms {
            let Some(entity) = coco_of.iter().position(|c| *c == Some(cat)) else {
                continue;
            };
            let word = word.trim().to_lowercase();
            for form in [plural(&word), word] {
                if base.lookup(&form).is_none() {
                    added.entry(form).or_insert(entity as u16);
                }
            }
        }
        let forms = base
            .forms()
            .map(|(f, id)| (String::from(f), id.0))
            .chain(added)
            .collect::<Vec<_>>();
        let vocab = Vocabulary::from_parts(base.entities(), forms).map_err(|e| {
            EvalError::new(
                EvalErrorKind::Invalid,
                format!("CHAIR fixed-mode vocabulary: {e}"),
            )
        })?;
        Ok(Self {
            matcher: Matcher::new(&vocab),
            coco_of,
        })
    }

    /// COCO mentions of `caption` after the context rules.
    pub fn mentions(&self, tables: &ChairTables, caption: &str) -> Vec<ObjectMention> {
        let all = self.matcher.find(caption);
        let mut out = Vec::new();
        for (i, m) in all.iter().enumerate() {
            let Some(cat) = self.category(m.entity) else {
                continue;
            };
            let word = m.text(caption).unwrap_or("").to_lowercase();
            let next = all.get(i + 1).filter(|n| adjacent(caption, m, n));
            let prev = i
                .checked_sub(1)
                .map(|p| &all[p])
                .filter(|p| adjacent(caption, p, m));
            if is_modifier(caption, &word, m, next.is_some())
                || is_toilet_seat(tables, &word, prev.and_then(|p| self.category(p.entity)))
            {
                continue;
            }
            out.push(ObjectMention {
                word,
                object: tables.coco[cat as usize],
                position: m.start,
            });
        }
        out
    }

    fn category(&self, id: EntityId) -> Option<u8> {
        self.coco_of.get(id.0 as usize).copied().flatten()
    }
}

/// For each entity of `vocab`, its COCO category: from the vocabulary's COCO
/// id, else by canonical name (for a vocabulary built without ids).
fn coco_categories(tables: &ChairTables, vocab: &Vocabulary) -> Vec<Option<u8>> {
    (0..vocab.num_entities())
        .map(|i| {
            let id = EntityId(i as u16);
            let by_id = vocab
                .coco_id(id)
                .and_then(|c| tables.coco_ids.iter().position(|&k| k == c));
            by_id
                .map(|p| p as u8)
                .or_else(|| vocab.entity_name(id).and_then(|n| tables.category(n)))
        })
        .collect()
}

/// Only white space (or a hyphen) between two mentions.
fn adjacent(text: &str, a: &Mention, b: &Mention) -> bool {
    text.get(a.end..b.start)
        .is_some_and(|gap| gap.chars().all(|c| c.is_whitespace() || c == '-'))
}

/// A modifier word directly followed by an object noun, or "orange" in colour context.
fn is_modifier(text: &str, word: &str, m: &Mention, followed_by_object: bool) -> bool {
    if !MODIFIERS.contains(&word) {
        return false;
    }
    if followed_by_object {
        return true;
    }
    if word != "orange" {
        return false;
    }
    let (w1, after) = next_word(text, m.end);
    if COLOURS.contains(&w1.as_str()) || COLOURED_NOUNS.contains(&w1.as_str()) {
        return true;
    }
    (w1 == "and" || w1 == "or") && COLOURS.contains(&next_word(text, after).0.as_str())
}

/// "seat" directly after a toilet mention.
fn is_toilet_seat(tables: &ChairTables, word: &str, prev: Option<u8>) -> bool {
    (word == "seat" || word == "seats") && prev.is_some_and(|c| tables.coco[c as usize] == "toilet")
}

/// The lower-cased word that starts after `pos` (skipping white space and
/// hyphens), and the byte offset where it ends.
fn next_word(text: &str, pos: usize) -> (String, usize) {
    let rest = text.get(pos..).unwrap_or("");
    let trimmed = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '-');
    let start = pos + (rest.len() - trimmed.len());
    let len = trimmed
        .find(|c: char| !c.is_alphanumeric())
        .unwrap_or(trimmed.len());
    (trimmed[..len].to_lowercase(), start + len)
}

/// English plural of a (possibly multi-word) noun: the last word inflects.
fn plural(noun: &str) -> String {
    let (head, last) = match noun.rsplit_once(' ') {
        Some((h, l)) => (Some(h), l),
        None => (None, noun),
    };
    let p = plural_word(last);
    match head {
        Some(h) => format!("{h} {p}"),
        None => p,
    }
}

fn plural_word(w: &str) -> String {
    const IRREGULAR: &[(&str, &str)] = &[
        ("person", "people"),
        ("child", "children"),
        ("mouse", "mice"),
        ("knife", "knives"),
        ("sheep", "sheep"),
        ("deer", "deer"),
        ("fish", "fish"),
        ("foot", "feet"),
    ];
    for (s, p) in IRREGULAR {
        if let Some(stem) = w.strip_suffix(s) {
            return format!("{stem}{p}");
        }
    }
    if let Some(stem) = w.strip_suffix("man") {
        return format!("{stem}men");
    }
    if ["s", "x", "z", "ch", "sh"].iter().any(|s| w.ends_with(s)) {
        return format!("{w}es");
    }
    if let Some(stem) = w
        .strip_suffix('y')
        .filter(|s| !s.ends_with(['a', 'e', 'i', 'o', 'u']))
    {
        return format!("{stem}ies");
    }
    format!("{w}s")
}

#[cfg(test)]
mod tests {
    use super::plural;

    #[test]
    fn plurals() {
        for (s, p) in [
            ("dog", "dogs"),
            ("bus", "buses"),
            ("wine glass", "wine glasses"),
            ("policeman", "policemen"),
            ("grandchild", "grandchildren"),
            ("lady", "ladies"),
            ("toy", "toys"),
            ("knife", "knives"),
            ("person", "people"),
        ] {
            assert_eq!(plural(s), p);
        }
    }
}

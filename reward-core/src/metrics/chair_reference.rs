//! CHAIR's reference object extraction, `caption_to_words` of `utils/chair.py`
//! (LisaAnne/Hallucination @6e4d33c), as restated in shared/data/chair_rules.md:
//!
//! 1. lower-case, `nltk.word_tokenize` ([`super::nltk`]);
//! 2. Pattern 2.6 `singularize` on every token ([`super::singularize`]);
//! 3. left-to-right bigram merge with the double-word table;
//! 4. the toilet rule: if "toilet" and "seat" are both present, drop every "seat";
//! 5. keep the tokens that are keys of the synonym map (verbatim keys, so
//!    `" motor bike"`, `" cheesecake"` and `iPhone` can never match).

use alloc::string::String;
use alloc::vec::Vec;

use super::chair::{ChairTables, ObjectMention};
use super::nltk::word_tokenize;
use super::singularize::singularize;

/// The reference (chair.py) extractor. Stateless: the tables live in the evaluator.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReferenceExtractor;

impl ReferenceExtractor {
    pub fn new() -> Self {
        Self
    }

    /// `caption_to_words`: the object mentions, with merged-token positions.
    pub fn mentions(&self, tables: &ChairTables, caption: &str) -> Vec<ObjectMention> {
        let merged = merged_tokens(tables, caption);
        let mut out = Vec::new();
        for (position, word) in merged.into_iter().enumerate() {
            if let Some(&cat) = tables.synonyms.get(word.as_str()) {
                out.push(ObjectMention {
                    word,
                    object: tables.coco[cat as usize],
                    position,
                });
            }
        }
        out
    }
}

/// Steps 1-4: tokens after singularisation, bigram merging and the toilet rule.
pub(crate) fn merged_tokens(tables: &ChairTables, caption: &str) -> Vec<String> {
    let words: Vec<String> = word_tokenize(&caption.to_lowercase())
        .iter()
        .map(|w| singularize(w))
        .collect();
    let mut merged = Vec::with_capacity(words.len());
    let mut joined = String::new();
    let mut i = 0;
    while i < words.len() {
        if let Some(next) = words.get(i + 1) {
            joined.clear();
            joined.push_str(&words[i]);
            joined.push(' ');
            joined.push_str(next);
            if let Some(rep) = tables.double_words.get(joined.as_str()) {
                merged.push(String::from(*rep));
                i += 2;
                continue;
            }
        }
        merged.push(words[i].clone());
        i += 1;
    }
    if merged.iter().any(|w| w == "toilet") && merged.iter().any(|w| w == "seat") {
        merged.retain(|w| w != "seat");
    }
    merged
}

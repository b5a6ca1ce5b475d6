//! Object mentions in a response text (method.md section 3): maximal,
//! case-insensitive matches of the vocabulary's surface forms on word
//! boundaries, each mapped to its canonical entity.
//!
//! # Rules
//! - **Words.** Text is cut into words (letters and digits of any script,
//!   combining marks, word-internal apostrophes), possessive clitics and
//!   single punctuation characters; whitespace only separates. Forms are
//!   cut the same way, so a form matches a run of text tokens with the same
//!   case-folded text. Multi-word forms match across any whitespace but
//!   never across punctuation ("hot. Dog" names no hot dog).
//! - **Longest match, leftmost first.** At each token the longest form
//!   starting there wins ("teddy bear" over "bear", "hot dog" over "dog"),
//!   and scanning resumes after it; mentions never overlap.
//! - **Case.** Unicode lower case per character, final sigma as sigma,
//!   typographic apostrophe `’` as `'`.
//! - **Hyphens.** A hyphen between two word characters joins a compound.
//!   Inside a match it counts as a space (`hot-dog` and `Hot-Dog` match the
//!   form "hot dog"; a form written "t-shirt" matches "t shirt"), but a
//!   match must cover whole compounds: `dog-friendly`, `cat-shaped` and
//!   `police-dog` name no dog and no cat. A compound modifier does not
//!   claim the object is present, and a missed mention (no reward) costs
//!   PPO less than a false one.
//! - **Possessives.** `dog's`, `dog’s` and `dogs'` are mentions of the dog
//!   whose span covers the noun only (`dog`, `dogs`), so the `last` token
//!   of the span is the token that completes the noun, not the clitic.
//!   Forms that contain a clitic ("doll's house") match it as written.
//! - **Plurals and synonyms** come from the vocabulary, which lists them as
//!   forms; nothing here knows English.
//!
//! # Offsets
//! [`Mention::start`] and [`Mention::end`] are byte offsets into the
//! original UTF-8 text (what Rust slicing and the `tokenizers` crate use),
//! always on character boundaries, even where lower-casing changes the
//! byte length ('İ', the Kelvin sign). [`Mention::char_span`] and
//! [`Mention::utf16_span`] convert for Python-style and JavaScript users.

mod scan;
mod table;

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::vocab::{EntityId, Vocabulary};
use scan::Scanner;
use table::{Builder, Lexicon};

/// One object mention: a byte range of the text and the entity it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Mention {
    /// Byte offset of the first byte of the mention.
    pub start: usize,
    /// Byte offset one past the last byte (exclusive).
    pub end: usize,
    /// The canonical entity the matched form names.
    pub entity: EntityId,
}

impl Mention {
    /// The mentioned text, or `None` when the span does not fit `text`.
    pub fn text<'t>(&self, text: &'t str) -> Option<&'t str> {
        text.get(self.start..self.end)
    }

    /// The span in Unicode scalar values (Python `str` indices), or `None`
    /// when the span is not on character boundaries of `text`.
    pub fn char_span(&self, text: &str) -> Option<(usize, usize)> {
        self.span_in(text, |s| s.chars().count())
    }

    /// The span in UTF-16 code units (JavaScript string indices), or `None`
    /// when the span is not on character boundaries of `text`.
    pub fn utf16_span(&self, text: &str) -> Option<(usize, usize)> {
        self.span_in(text, |s| s.chars().map(char::len_utf16).sum())
    }

    fn span_in(&self, text: &str, units: impl Fn(&str) -> usize) -> Option<(usize, usize)> {
        let head = text.get(..self.start)?;
        let body = text.get(self.start..self.end)?;
        let start = units(head);
        Some((start, start + units(body)))
    }
}

/// A compiled vocabulary that finds [`Mention`]s in text.
///
/// ```
/// use reward_core::mentions::Matcher;
/// use reward_core::vocab::{Expansion, Vocabulary};
///
/// let vocab = Vocabulary::builtin(Expansion::Fisao);
/// let matcher = Matcher::new(&vocab);
/// let text = "A Teddy Bear next to a hot-dog and the dog's bowl.";
/// let found: Vec<&str> = matcher
///     .find(text)
///     .iter()
///     .map(|m| vocab.entity_name(m.entity).unwrap())
///     .collect();
/// assert_eq!(found, ["teddy bear", "hot dog", "dog", "bowl"]);
/// ```
#[derive(Clone, Debug)]
pub struct Matcher {
    lex: Lexicon,
    shadowed: Vec<(Box<str>, EntityId)>,
}

impl Matcher {
    /// Compiles every surface form of `vocab`. Linear in the size of the
    /// vocabulary (a few milliseconds for thousands of forms).
    ///
    /// Two forms that differ only in separators or typography ("hot-dog" and
    /// "hot dog") are the same token sequence; if they name different
    /// entities the one that sorts first wins and the other is listed by
    /// [`Matcher::shadowed_forms`].
    pub fn new(vocab: &Vocabulary) -> Self {
        let mut builder = Builder::with_capacity(vocab.num_forms());
        let mut shadowed = Vec::new();
        let mut tokens = Vec::new();
        for (form, entity) in vocab.forms() {
            tokens.clear();
            tokens.extend(Scanner::new(form));
            if tokens.is_empty() {
                continue;
            }
            if let Some(kept) = builder.insert(form, &tokens, entity)
                && kept != entity
            {
                shadowed.push((Box::from(form), entity));
            }
        }
        Self {
            lex: builder.finish(),
            shadowed,
        }
    }

    /// Forms that could never match because an earlier form with the same
    /// tokens names a different entity: `(form, its entity)`.
    pub fn shadowed_forms(&self) -> impl ExactSizeIterator<Item = (&str, EntityId)> {
        self.shadowed.iter().map(|(f, e)| (&**f, *e))
    }

    /// Number of distinct case-folded tokens across all forms.
    pub fn num_tokens(&self) -> usize {
        self.lex.num_tokens()
    }

    /// All mentions in `text`, in order, non-overlapping.
    pub fn find(&self, text: &str) -> Vec<Mention> {
        self.find_iter(text).collect()
    }

    /// The mentions of `text` one at a time, without allocating.
    pub fn find_iter<'m, 't>(&'m self, text: &'t str) -> Mentions<'m, 't> {
        Mentions {
            lex: &self.lex,
            text,
            scan: Scanner::new(text),
        }
    }
}

/// Iterator over the mentions of one text; see [`Matcher::find_iter`].
#[derive(Clone, Debug)]
pub struct Mentions<'m, 't> {
    lex: &'m Lexicon,
    text: &'t str,
    scan: Scanner<'t>,
}

impl<'t> Mentions<'_, 't> {
    /// The longest form starting at token `first`, whose trie node is
    /// `node`: its end, entity and the scanner positioned after it.
    fn longest(
        &self,
        first: &scan::Token,
        mut node: u32,
    ) -> Option<(usize, EntityId, Scanner<'t>)> {
        let lex = self.lex;
        let mut best = None;
        if let Some(e) = lex.entity(node).filter(|_| !first.joined_next) {
            best = Some((first.end, e, self.scan));
        }
        let mut ahead = self.scan;
        while lex.has_children(node) {
            let Some(tok) = ahead.next() else { break };
            let Some(child) = lex
                .lookup(self.text, &tok)
                .and_then(|id| lex.child(node, id))
            else {
                break;
            };
            node = child;
            // A match may not end inside a hyphenated compound.
            if let Some(e) = lex.entity(node).filter(|_| !tok.joined_next) {
                best = Some((tok.end, e, ahead));
            }
        }
        best
    }
}

impl Iterator for Mentions<'_, '_> {
    type Item = Mention;

    fn next(&mut self) -> Option<Mention> {
        while let Some(tok) = self.scan.next() {
            // A match may not start inside a hyphenated compound.
            if tok.joined_prev {
                continue;
            }
            let Some(node) = self
                .lex
                .lookup(self.text, &tok)
                .and_then(|id| self.lex.first(id))
            else {
                continue;
            };
            if let Some((end, entity, after)) = self.longest(&tok, node) {
                self.scan = after;
                return Some(Mention {
                    start: tok.start,
                    end,
                    entity,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;

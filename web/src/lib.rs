//! # fisao-web
//!
//! The in-browser hallucination highlighter: reward-core's CLIP verifier,
//! mention matcher and eq. 8 rewards behind a wasm-bindgen API, and the
//! static page that uses it (`web/www/`, built and served by
//! `cargo xtask web`; see docs/web.md).
//!
//! - [`session`]: the state and report, whichever towers run;
//! - [`cpu`]: the CPU towers (single-threaded in WASM);
//! - `gpu` (feature `gpu`): the WebGPU towers (reward-core's wgpu backend);
//! - `bindings` (wasm32 only): the `Highlighter` class the page's worker uses.

pub mod cpu;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod session;

#[cfg(target_arch = "wasm32")]
mod bindings;
#[cfg(target_arch = "wasm32")]
pub use bindings::Highlighter;

use std::sync::OnceLock;

use reward_core::mentions::Matcher;
use reward_core::vocab::{Expansion, Vocabulary};
use serde::Serialize;
use wasm_bindgen::prelude::wasm_bindgen;

/// The built-in vocabulary and its matcher, compiled on first use.
fn builtin() -> &'static (Vocabulary, Matcher) {
    static BUILTIN: OnceLock<(Vocabulary, Matcher)> = OnceLock::new();
    BUILTIN.get_or_init(|| {
        let vocab = Vocabulary::builtin(Expansion::Fisao);
        let matcher = Matcher::new(&vocab);
        (vocab, matcher)
    })
}

/// The canonical entity a word or phrase names in the built-in vocabulary,
/// or `undefined` when it names none.
#[wasm_bindgen]
pub fn canonical_entity(word: &str) -> Option<String> {
    let (vocab, _) = builtin();
    let id = vocab.lookup(word)?;
    vocab.entity_name(id).map(String::from)
}

/// One mention as the page sees it.
#[derive(Serialize, Debug, PartialEq)]
struct MentionJs<'a> {
    /// Span in UTF-16 code units: JavaScript `String.prototype.slice` indices.
    start: usize,
    end: usize,
    /// Span in bytes of the UTF-8 text (what Rust and `tokenizers` use).
    byte_start: usize,
    byte_end: usize,
    /// The mentioned text as written.
    text: &'a str,
    /// The canonical entity it names.
    entity: &'a str,
}

/// The object mentions of `text` as a JSON array of
/// `{start, end, byte_start, byte_end, text, entity}`, where `start`/`end`
/// are JavaScript string indices (UTF-16) and `byte_*` UTF-8 offsets.
#[wasm_bindgen]
pub fn find_mentions(text: &str) -> String {
    let (vocab, matcher) = builtin();
    let mut utf16 = Utf16Cursor::default();
    let list: Vec<MentionJs<'_>> = matcher
        .find_iter(text)
        .filter_map(|m| {
            Some(MentionJs {
                start: utf16.advance(text, m.start)?,
                end: utf16.advance(text, m.end)?,
                byte_start: m.start,
                byte_end: m.end,
                text: m.text(text)?,
                entity: vocab.entity_name(m.entity)?,
            })
        })
        .collect();
    // Serialising plain strings and integers cannot fail.
    serde_json::to_string(&list).unwrap_or_else(|_| String::from("[]"))
}

/// Byte -> UTF-16 offset conversion in one pass over mentions in order.
#[derive(Default)]
struct Utf16Cursor {
    byte: usize,
    unit: usize,
}

impl Utf16Cursor {
    /// The UTF-16 offset of byte `to` (not before the previous call's byte).
    fn advance(&mut self, text: &str, to: usize) -> Option<usize> {
        let step = text.get(self.byte..to)?;
        self.unit += step.encode_utf16().count();
        self.byte = to;
        Some(self.unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn maps_a_form_to_its_entity() {
        assert_eq!(
            canonical_entity("Teddy Bear").as_deref(),
            Some("teddy bear")
        );
        assert_eq!(canonical_entity("moderate"), None);
    }

    #[test]
    fn find_mentions_returns_js_and_byte_offsets() {
        let text = "😀 A Teddy Bear, très joli, and the dog's bowl";
        let json: Value = serde_json::from_str(&find_mentions(text)).unwrap();
        let list = json.as_array().unwrap();
        let entities: Vec<&str> = list.iter().map(|m| m["entity"].as_str().unwrap()).collect();
        assert_eq!(entities, ["teddy bear", "dog", "bowl"]);
        let utf16: Vec<u16> = text.encode_utf16().collect();
        for m in list {
            let (s, e) = (
                m["start"].as_u64().unwrap() as usize,
                m["end"].as_u64().unwrap() as usize,
            );
            let (bs, be) = (
                m["byte_start"].as_u64().unwrap() as usize,
                m["byte_end"].as_u64().unwrap() as usize,
            );
            // The JS indices and the byte indices select the same text.
            let js = String::from_utf16(&utf16[s..e]).unwrap();
            assert_eq!(js, m["text"].as_str().unwrap());
            assert_eq!(&text[bs..be], js);
        }
        // The emoji is two UTF-16 units and four bytes: "Teddy" is at 5 and 7.
        assert_eq!(list[0]["start"], 5);
        assert_eq!(list[0]["byte_start"], 7);
    }

    #[test]
    fn find_mentions_of_empty_and_plain_text() {
        assert_eq!(find_mentions(""), "[]");
        assert_eq!(find_mentions("nothing to see here"), "[]");
    }
}

//! # fisao-web
//!
//! WebAssembly bindings over reward-core for the in-browser highlighter.
//! Today this exposes the entity vocabulary; the page itself is not built yet
//! (see the workspace README's status table).

use reward_core::vocab::{Expansion, Vocabulary};
use wasm_bindgen::prelude::wasm_bindgen;

/// The canonical entity a word or phrase names in the built-in vocabulary,
/// or `undefined` when it names none.
#[wasm_bindgen]
pub fn canonical_entity(word: &str) -> Option<String> {
    let vocab = Vocabulary::builtin(Expansion::Fisao);
    let id = vocab.lookup(word)?;
    vocab.entity_name(id).map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_form_to_its_entity() {
        assert_eq!(
            canonical_entity("Teddy Bear").as_deref(),
            Some("teddy bear")
        );
        assert_eq!(canonical_entity("moderate"), None);
    }
}

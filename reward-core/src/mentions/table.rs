//! The matcher's compiled vocabulary: a hash table from case-folded token
//! text to a token id, and a trie over token ids whose paths are the
//! surface forms. Looking a text token up folds and hashes it on the fly,
//! so matching never allocates.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::scan::{Token, fold};
use crate::vocab::EntityId;

/// Marks "no node" / "no entity".
pub(crate) const NONE: u32 = u32::MAX;

/// One distinct token of the forms.
#[derive(Clone, Debug)]
struct Entry {
    hash: u64,
    key_start: u32,
    key_len: u32,
    /// The trie node reached from the root by this token, or [`NONE`].
    first: u32,
}

/// A trie node: the entity a form ending here names, and its edges.
#[derive(Clone, Debug)]
struct Node {
    entity: u32,
    edges_start: u32,
    edges_len: u32,
}

/// Token hash table plus form trie.
#[derive(Clone, Debug)]
pub(crate) struct Lexicon {
    /// Open addressing: entry index + 1, 0 for an empty slot.
    slots: Vec<u32>,
    entries: Vec<Entry>,
    keys: String,
    /// Longest folded key in bytes; longer tokens are rejected unhashed.
    max_key: usize,
    nodes: Vec<Node>,
    /// `(token id, child node)`, sorted by token id within each node.
    edges: Vec<(u32, u32)>,
}

/// Builds a [`Lexicon`]: tokens are interned, forms inserted one by one.
pub(crate) struct Builder {
    lex: Lexicon,
    /// Trie edges while building: `(parent, token) -> child`.
    children: BTreeMap<(u32, u32), u32>,
    /// Entity per node while building.
    node_entity: Vec<u32>,
}

/// Multiply-rotate hash over 8-byte little-endian words (FxHash's mixing
/// step): one multiply per 8 bytes, no dependency. Every byte is OR-ed with
/// 0x20 first, which lower-cases ASCII letters and leaves digits and `'`
/// alone, so ASCII words hash a whole word at a time without a fold; other
/// bytes may collide, which the key comparison sorts out.
#[derive(Clone, Copy)]
struct Hasher {
    h: u64,
    buf: u64,
    n: u32,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[inline]
fn mix(h: u64, w: u64) -> u64 {
    (h.rotate_left(5) ^ w).wrapping_mul(SEED)
}

impl Hasher {
    const fn new() -> Self {
        Self { h: 0, buf: 0, n: 0 }
    }
    #[inline]
    fn byte(&mut self, b: u8) {
        self.buf |= u64::from(b | 0x20) << (8 * self.n);
        self.n += 1;
        if self.n == 8 {
            self.h = mix(self.h, self.buf);
            self.buf = 0;
            self.n = 0;
        }
    }
    fn char(&mut self, c: char) {
        let mut tmp = [0u8; 4];
        for &b in c.encode_utf8(&mut tmp).as_bytes() {
            self.byte(b);
        }
    }
    #[inline]
    fn finish(self, len: usize) -> u64 {
        let h = if self.n > 0 {
            mix(self.h, self.buf)
        } else {
            self.h
        };
        mix(h, len as u64)
    }
}

/// The hash of an all-ASCII token, equal to feeding its bytes one by one.
#[inline]
fn hash_ascii(raw: &[u8]) -> u64 {
    let mut h = 0;
    let mut chunks = raw.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mix(h, u64::from_le_bytes(w) | 0x2020_2020_2020_2020);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut w = [0u8; 8];
        w[..tail.len()].copy_from_slice(tail);
        let pad = 0x2020_2020_2020_2020u64 >> (8 * (8 - tail.len()));
        h = mix(h, u64::from_le_bytes(w) | pad);
    }
    mix(h, raw.len() as u64)
}

/// Hash and folded byte length of `raw`, or `None` once the folded text
/// grows past `limit` bytes.
#[inline]
fn hash_folded(raw: &str, ascii: bool, limit: usize) -> Option<(u64, usize)> {
    if ascii {
        return (raw.len() <= limit).then(|| (hash_ascii(raw.as_bytes()), raw.len()));
    }
    let mut h = Hasher::new();
    let mut len = 0;
    for c in raw.chars().flat_map(fold) {
        len += c.len_utf8();
        if len > limit {
            return None;
        }
        h.char(c);
    }
    Some((h.finish(len), len))
}

/// The home slot of `hash` in a table of `len` (a power of two) slots:
/// the high bits, which the multiply mixes best.
#[inline]
fn slot_of(hash: u64, len: usize) -> usize {
    (hash >> (64 - len.trailing_zeros())) as usize
}

/// Whether `raw` folds to exactly `key`.
fn folds_to(raw: &str, ascii: bool, key: &str) -> bool {
    if ascii {
        return raw.len() == key.len()
            && raw
                .bytes()
                .zip(key.bytes())
                .all(|(a, b)| a.to_ascii_lowercase() == b);
    }
    raw.chars().flat_map(fold).eq(key.chars())
}

impl Lexicon {
    /// The id of the token `raw` (a slice of the scanned text), if any form
    /// contains it.
    #[inline]
    pub fn token_id(&self, raw: &str, ascii: bool) -> Option<u32> {
        let (hash, len) = hash_folded(raw, ascii, self.max_key)?;
        let mask = self.slots.len() - 1;
        let mut slot = slot_of(hash, self.slots.len());
        loop {
            let idx = *self.slots.get(slot)?;
            if idx == 0 {
                return None;
            }
            let e = self.entries.get(idx as usize - 1)?;
            if e.hash == hash && e.key_len as usize == len {
                let key = self.key(e);
                if folds_to(raw, ascii, key) {
                    return Some(idx - 1);
                }
            }
            slot = (slot + 1) & mask;
        }
    }

    /// The id of a text token.
    #[inline]
    pub fn lookup(&self, text: &str, tok: &Token) -> Option<u32> {
        let raw = text.get(tok.start..tok.end)?;
        self.token_id(raw, tok.ascii)
    }

    fn key(&self, e: &Entry) -> &str {
        let s = e.key_start as usize;
        self.keys.get(s..s + e.key_len as usize).unwrap_or("")
    }

    /// The trie node a token leads to from the root, if a form starts with it.
    #[inline]
    pub fn first(&self, id: u32) -> Option<u32> {
        let n = self.entries.get(id as usize)?.first;
        (n != NONE).then_some(n)
    }

    /// The child of `node` along token `id`.
    #[inline]
    pub fn child(&self, node: u32, id: u32) -> Option<u32> {
        let n = self.nodes.get(node as usize)?;
        let s = n.edges_start as usize;
        let edges = self.edges.get(s..s + n.edges_len as usize)?;
        // Nodes below the root have a handful of children: a scan beats
        // a binary search here.
        edges.iter().find(|(t, _)| *t == id).map(|(_, c)| *c)
    }

    /// Whether any form continues past `node`.
    #[inline]
    pub fn has_children(&self, node: u32) -> bool {
        self.nodes
            .get(node as usize)
            .is_some_and(|n| n.edges_len > 0)
    }

    /// The entity a form ending at `node` names.
    #[inline]
    pub fn entity(&self, node: u32) -> Option<EntityId> {
        let e = self.nodes.get(node as usize)?.entity;
        (e != NONE).then_some(EntityId(e as u16))
    }

    /// Number of distinct tokens.
    pub fn num_tokens(&self) -> usize {
        self.entries.len()
    }
}

impl Builder {
    /// An empty builder sized for about `forms` forms.
    pub fn with_capacity(forms: usize) -> Self {
        let slots = (forms * 4).next_power_of_two().max(16);
        Self {
            lex: Lexicon {
                slots: alloc::vec![0; slots],
                entries: Vec::with_capacity(forms * 2),
                keys: String::new(),
                max_key: 0,
                nodes: Vec::new(),
                edges: Vec::new(),
            },
            children: BTreeMap::new(),
            node_entity: alloc::vec![NONE],
        }
    }

    /// Interns a token of a form (`raw` as written in the form).
    fn intern(&mut self, raw: &str) -> u32 {
        if let Some(id) = self.lex.token_id(raw, false) {
            return id;
        }
        if (self.lex.entries.len() + 1) * 2 > self.lex.slots.len() {
            self.grow();
        }
        let key_start = self.lex.keys.len();
        self.lex.keys.extend(raw.chars().flat_map(fold));
        let key_len = self.lex.keys.len() - key_start;
        let (hash, _) = hash_folded(raw, false, usize::MAX).unwrap_or((0, 0));
        self.lex.max_key = self.lex.max_key.max(key_len);
        self.lex.entries.push(Entry {
            hash,
            key_start: key_start as u32,
            key_len: key_len as u32,
            first: NONE,
        });
        let id = self.lex.entries.len() as u32 - 1;
        self.place(id);
        id
    }

    fn place(&mut self, id: u32) {
        let mask = self.lex.slots.len() - 1;
        let mut slot = slot_of(self.lex.entries[id as usize].hash, self.lex.slots.len());
        while self.lex.slots[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        self.lex.slots[slot] = id + 1;
    }

    fn grow(&mut self) {
        let n = self.lex.slots.len() * 2;
        self.lex.slots = alloc::vec![0; n];
        for id in 0..self.lex.entries.len() as u32 {
            self.place(id);
        }
    }

    /// Inserts a form given as its tokens (slices of `form`). Returns the
    /// entity already stored for the same token sequence, if one is (the
    /// earlier form wins).
    pub fn insert(&mut self, form: &str, tokens: &[Token], entity: EntityId) -> Option<EntityId> {
        let mut node = 0u32;
        for tok in tokens {
            let id = self.intern(form.get(tok.start..tok.end).unwrap_or(""));
            node = match self.children.get(&(node, id)) {
                Some(&c) => c,
                None => {
                    let c = self.node_entity.len() as u32;
                    self.node_entity.push(NONE);
                    self.children.insert((node, id), c);
                    c
                }
            };
        }
        let slot = &mut self.node_entity[node as usize];
        if *slot != NONE {
            return Some(EntityId(*slot as u16));
        }
        *slot = u32::from(entity.0);
        None
    }

    /// Freezes the trie into flat edge arrays.
    pub fn finish(mut self) -> Lexicon {
        let mut nodes: Vec<Node> = self
            .node_entity
            .iter()
            .map(|&entity| Node {
                entity,
                edges_start: 0,
                edges_len: 0,
            })
            .collect();
        // BTreeMap order groups edges by parent, token ids ascending.
        for (&(parent, token), &child) in &self.children {
            let n = &mut nodes[parent as usize];
            if n.edges_len == 0 {
                n.edges_start = self.lex.edges.len() as u32;
            }
            n.edges_len += 1;
            self.lex.edges.push((token, child));
            if parent == 0 {
                self.lex.entries[token as usize].first = child;
            }
        }
        self.lex.nodes = nodes;
        self.lex
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_at_a_time_hash_equals_the_streaming_hash() {
        for raw in [
            "",
            "a",
            "dog",
            "o'clock",
            "12345678",
            "teddybear",
            "abcdefghijklmnopq",
            "ABC9'x",
        ] {
            let mut h = Hasher::new();
            raw.bytes().for_each(|b| h.byte(b.to_ascii_lowercase()));
            assert_eq!(hash_ascii(raw.as_bytes()), h.finish(raw.len()), "{raw:?}");
            assert_eq!(
                hash_folded(raw, true, 64),
                hash_folded(raw, false, 64),
                "{raw:?}"
            );
        }
        // Folding that changes the length: Kelvin sign to 'k'.
        assert_eq!(
            hash_folded("\u{212A}ite", false, 64),
            hash_folded("kite", true, 64)
        );
        assert_eq!(hash_folded("teddybear", true, 8), None);
    }
}

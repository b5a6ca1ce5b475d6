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

/// FNV-1a over bytes: short keys, one multiply per byte, no dependency.
#[derive(Clone, Copy)]
struct Hasher(u64);

impl Hasher {
    const fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    #[inline]
    fn byte(&mut self, b: u8) {
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    fn char(&mut self, c: char) {
        let mut buf = [0u8; 4];
        for &b in c.encode_utf8(&mut buf).as_bytes() {
            self.byte(b);
        }
    }
}

/// Hash and folded byte length of `raw`, or `None` once the folded text
/// grows past `limit` bytes.
#[inline]
fn hash_folded(raw: &str, ascii: bool, limit: usize) -> Option<(u64, usize)> {
    let mut h = Hasher::new();
    if ascii {
        if raw.len() > limit {
            return None;
        }
        for &b in raw.as_bytes() {
            h.byte(b.to_ascii_lowercase());
        }
        return Some((h.0, raw.len()));
    }
    let mut len = 0;
    for c in raw.chars().flat_map(fold) {
        len += c.len_utf8();
        if len > limit {
            return None;
        }
        h.char(c);
    }
    Some((h.0, len))
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
        let mut slot = (hash as usize) & mask;
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
        let mut slot = (self.lex.entries[id as usize].hash as usize) & mask;
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

//! A CLIP-style BPE tokenizer for the synthetic world's verifier, trained
//! with the `tokenizers` crate's `BpeTrainer` on the world's words.
//!
//! Mirrors the `tokenizer.json` that `openai/clip-vit-*` checkpoints ship
//! (transformers' `CLIPTokenizerFast`): NFC + whitespace collapsing +
//! lowercasing, CLIP's split regex then byte-level mapping, a BPE model with
//! the `</w>` end-of-word suffix and `<|endoftext|>` as unknown token, and a
//! post-processor that wraps every text as `<|startoftext|> ... <|endoftext|>`.
//! The vocabulary is laid out as CLIP's: the 256 byte symbols, the same 256
//! with `</w>`, one token per merge in merge order, then the two special
//! tokens, so `<|endoftext|>` has the largest id. Every byte has a token in
//! both forms, so any text tokenizes without the unknown token.
//!
//! reward-core's CLIP text tower pools at the first `<|endoftext|>` (the
//! config's `eos_token_id`, see `reward_core::clip::TextConfig::pooling`)
//! and never pads, which is exactly what this tokenizer produces.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::{
    NormalizedString, Normalizer, NormalizerWrapper, OffsetReferential, OffsetType,
    PreTokenizedString, PreTokenizer, PreTokenizerWrapper, Tokenizer, Trainer,
};

use crate::world::{Split, World};

/// The begin-of-text token.
pub const BOS: &str = "<|startoftext|>";
/// The end-of-text token: pooled position, unknown token.
pub const EOS: &str = "<|endoftext|>";
/// CLIP's end-of-word suffix on the last symbol of every word.
pub const WORD_SUFFIX: &str = "</w>";
/// CLIP's pre-tokenization regex (`CLIPTokenizerFast`'s `Split` pattern).
const SPLIT_REGEX: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
/// Training captions read from the world: enough to see every wording.
const CORPUS_CAPTIONS: u64 = 2000;

/// A trained tokenizer: its `tokenizer.json` text and the ids of the specials.
#[derive(Clone, Debug)]
pub struct ClipTokenizerJson {
    /// The `tokenizer.json` contents (pretty-printed, deterministic).
    pub json: String,
    /// Total vocabulary size, specials included (`text_config.vocab_size`).
    pub vocab_size: usize,
    /// Id of `<|startoftext|>` (`bos_token_id`).
    pub bos_id: u32,
    /// Id of `<|endoftext|>` (`eos_token_id`, the pooled token).
    pub eos_id: u32,
}

impl ClipTokenizerJson {
    /// Loads the JSON with the `tokenizers` crate.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        Tokenizer::from_bytes(self.json.as_bytes())
            .map_err(|e| anyhow!("verifier tokenizer.json does not load: {e}"))
    }
}

/// The world's text: captions of the first training images (every wording,
/// number word and plural that occurs) plus each class name and plural
/// once more, so rare classes are whole tokens too.
pub fn world_corpus(world: &World) -> Vec<String> {
    let n = CORPUS_CAPTIONS.min(world.len(Split::Train) as u64);
    let mut corpus: Vec<String> = (0..n)
        .map(|i| world.annotate(Split::Train, i, 0).caption)
        .collect();
    for class in world.classes() {
        corpus.push(class.name.clone());
        corpus.push(class.plural.clone());
    }
    corpus
}

/// Trains the tokenizer on `corpus` (merges until every word is one token).
pub fn train_clip_tokenizer(corpus: &[String]) -> Result<ClipTokenizerJson> {
    let merges = learn_merges(corpus)?;
    let (vocab, bos_id, eos_id) = clip_vocab(&merges)?;
    let vocab_size = vocab.len();
    let model = json!({
        "type": "BPE",
        "dropout": null,
        "unk_token": EOS,
        "continuing_subword_prefix": "",
        "end_of_word_suffix": WORD_SUFFIX,
        "fuse_unk": false,
        "byte_fallback": false,
        "ignore_merges": false,
        "vocab": vocab,
        "merges": merges.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
    });
    let mut doc = pipeline(model);
    doc["added_tokens"] = json!([special(bos_id, BOS), special(eos_id, EOS)]);
    doc["post_processor"] = json!({
        "type": "RobertaProcessing",
        "sep": [EOS, eos_id],
        "cls": [BOS, bos_id],
        "trim_offsets": false,
        "add_prefix_space": false,
    });
    let json = serde_json::to_string_pretty(&doc)?;
    let out = ClipTokenizerJson {
        json,
        vocab_size,
        bos_id,
        eos_id,
    };
    check_round_trip(&out, corpus)?;
    Ok(out)
}

/// Tokenizer for `world`: [`train_clip_tokenizer`] on [`world_corpus`].
pub fn world_tokenizer(world: &World) -> Result<ClipTokenizerJson> {
    train_clip_tokenizer(&world_corpus(world))
}

/// The parts of `tokenizer.json` shared by training and the final file.
fn pipeline(model: Value) -> Value {
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "},
            {"type": "Lowercase"},
        ]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT_REGEX}, "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        ]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": model,
    })
}

fn special(id: u32, content: &str) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false,
           "rstrip": false, "normalized": false, "special": true})
}

/// Runs `BpeTrainer` over the corpus, normalised and pre-tokenized as
/// CLIP does, and returns its merges in rank order.
///
/// The trainer's own `end_of_word_suffix` numbers the `x</w>` symbols in
/// hash-map order, which changes how ties between equally frequent pairs
/// break from run to run. So the last symbol of every word is instead
/// replaced by a private-use stand-in that is part of the (sorted) initial
/// alphabet, and mapped back to `x</w>` afterwards: the same BPE, numbered
/// deterministically.
fn learn_merges(corpus: &[String]) -> Result<Vec<(String, String)>> {
    let doc = pipeline(Value::Null);
    let norm: NormalizerWrapper = serde_json::from_value(doc["normalizer"].clone())?;
    let pre: PreTokenizerWrapper = serde_json::from_value(doc["pre_tokenizer"].clone())?;
    let symbols = byte_symbols();
    let mut words = Vec::new();
    for text in corpus {
        let mut n = NormalizedString::from(text.as_str());
        norm.normalize(&mut n)
            .map_err(|e| anyhow!("normalising {text:?}: {e}"))?;
        let mut p = PreTokenizedString::from(n);
        pre.pre_tokenize(&mut p)
            .map_err(|e| anyhow!("pre-tokenizing {text:?}: {e}"))?;
        for (word, _, _) in p.get_splits(OffsetReferential::Original, OffsetType::Byte) {
            words.push(mark_word_end(word, &symbols)?);
        }
    }
    let alphabet = symbols
        .iter()
        .copied()
        .chain((0..symbols.len()).filter_map(stand_in))
        .collect();
    let mut trainer = BpeTrainer::builder()
        .show_progress(false)
        .min_frequency(0)
        // Large enough that merging stops only when every word is one token.
        .vocab_size(1 << 20)
        .initial_alphabet(alphabet)
        .build();
    trainer
        .feed(words.iter(), |w| Ok(vec![w.to_string()]))
        .map_err(|e| anyhow!("BPE training failed: {e}"))?;
    let mut model = BPE::default();
    trainer
        .train(&mut model)
        .map_err(|e| anyhow!("BPE training failed: {e}"))?;
    let trained = serde_json::to_value(&model)?;
    let merges = trained["merges"]
        .as_array()
        .context("trained BPE has no merges array")?;
    merges
        .iter()
        .map(|m| {
            let (a, b) = parse_merge(m)?;
            Ok((unmark(&a, &symbols), unmark(&b, &symbols)))
        })
        .collect()
}

/// First private-use code point of the word-end stand-ins.
const STAND_IN_BASE: u32 = 0xE000;

/// The word-end stand-in of byte symbol number `i`.
fn stand_in(i: usize) -> Option<char> {
    char::from_u32(STAND_IN_BASE + i as u32)
}

/// `word` with its last symbol replaced by that symbol's stand-in.
fn mark_word_end(word: &str, symbols: &[char]) -> Result<String> {
    let mut chars: Vec<char> = word.chars().collect();
    let last = chars
        .pop()
        .context("pre-tokenizer produced an empty word")?;
    let i = symbols
        .iter()
        .position(|&c| c == last)
        .with_context(|| format!("{last:?} is not a byte-level symbol (in {word:?})"))?;
    chars.extend(stand_in(i));
    Ok(chars.into_iter().collect())
}

/// A trained token with a trailing stand-in written CLIP's way (`x</w>`).
fn unmark(token: &str, symbols: &[char]) -> String {
    let mut out = String::with_capacity(token.len() + WORD_SUFFIX.len());
    for c in token.chars() {
        let i = (c as u32).wrapping_sub(STAND_IN_BASE) as usize;
        match symbols.get(i) {
            Some(&sym) if (c as u32) >= STAND_IN_BASE => {
                out.push(sym);
                out.push_str(WORD_SUFFIX);
            }
            _ => out.push(c),
        }
    }
    out
}

/// A merge as `["a", "b"]` (tokenizers >= 0.20) or `"a b"` (older files).
fn parse_merge(v: &Value) -> Result<(String, String)> {
    match v {
        Value::Array(pair) if pair.len() == 2 => match (pair[0].as_str(), pair[1].as_str()) {
            (Some(a), Some(b)) => Ok((a.to_string(), b.to_string())),
            _ => bail!("merge {v} is not a pair of strings"),
        },
        Value::String(s) => s
            .split_once(' ')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .with_context(|| format!("merge {s:?} has no space")),
        _ => bail!("merge {v} is neither a pair nor a string"),
    }
}

/// CLIP's vocabulary layout for `merges`; returns it with the BOS and EOS ids.
fn clip_vocab(merges: &[(String, String)]) -> Result<(BTreeMap<String, u32>, u32, u32)> {
    let mut order: Vec<String> = byte_symbols().into_iter().map(String::from).collect();
    order.extend(
        byte_symbols()
            .into_iter()
            .map(|c| format!("{c}{WORD_SUFFIX}")),
    );
    let mut seen: BTreeSet<String> = order.iter().cloned().collect();
    for (a, b) in merges {
        if !seen.contains(a) || !seen.contains(b) {
            bail!("merge ({a:?}, {b:?}) uses a token that no earlier merge made");
        }
        let merged = format!("{a}{b}");
        if seen.insert(merged.clone()) {
            order.push(merged);
        }
    }
    order.push(BOS.to_string());
    order.push(EOS.to_string());
    let n = u32::try_from(order.len()).context("vocabulary too large")?;
    let vocab = order.into_iter().zip(0..n).collect();
    Ok((vocab, n - 2, n - 1))
}

/// The 256 byte-level symbols in GPT-2/CLIP order (`bytes_to_unicode`):
/// printable Latin-1 bytes map to themselves, the rest to U+0100 onwards.
pub fn byte_symbols() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut bytes: Vec<u32> = (0..256).filter(|&b| printable(b)).collect();
    let mut chars: Vec<u32> = bytes.clone();
    let mut extra = 0;
    for b in 0..256 {
        if !printable(b) {
            bytes.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    // Every value is below 0x200, so always a valid scalar value.
    chars.into_iter().filter_map(char::from_u32).collect()
}

/// Every corpus text must come out as `<|startoftext|> ... <|endoftext|>`
/// with no `<|endoftext|>` (the unknown token) inside.
fn check_round_trip(tok: &ClipTokenizerJson, corpus: &[String]) -> Result<()> {
    let t = tok.tokenizer()?;
    for text in corpus {
        let enc = t
            .encode(text.as_str(), true)
            .map_err(|e| anyhow!("tokenizing {text:?}: {e}"))?;
        let ids = enc.get_ids();
        let inner = ids.get(1..ids.len().saturating_sub(1)).unwrap_or(&[]);
        if ids.first() != Some(&tok.bos_id)
            || ids.last() != Some(&tok.eos_id)
            || inner.contains(&tok.eos_id)
        {
            bail!("tokenizer check: {text:?} gave ids {ids:?}");
        }
    }
    Ok(())
}

//! The synthetic world's language-model tokenizer: a Llama-style BPE
//! `tokenizer.json` (sentencepiece conventions as transformers' Llama
//! `tokenizer.json` spells them: `▁` for spaces, 256 `<0xNN>` byte-fallback
//! pieces, `<s>` prepended by the post-processor, the decoder
//! `Replace(▁, " ") + ByteFallback + Fuse + Strip(1 leading space)`), trained
//! with the `tokenizers` crate's `BpeTrainer` on the caption corpus.
//!
//! The vocabulary is kept small on purpose, so that some object words span
//! several tokens, as rare words do in real LLaVA (FiSAO's token rewards then
//! have to cover every token of a mention). Ids follow Llama's layout:
//! `<unk>` 0, `<s>` 1, `</s>` 2, the byte pieces, the learned pieces, then
//! `<image>` and `<pad>` appended last like llava-hf's tokenizer.
//!
//! Words never merge across a space or with punctuation (sentencepiece's
//! whitespace and script splitting; here a `Metaspace` + `Punctuation`
//! pre-tokenizer), so a caption decodes back byte for byte and growing
//! prefixes decode to prefixes of it (what `trainer::rollout::decode_with_offsets`
//! relies on to map mention spans to tokens).

use std::path::Path;

use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::punctuation::Punctuation;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::Split;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// Unknown piece (id 0).
pub const UNK: &str = "<unk>";
/// Begin of sequence (id 1), prepended by the post-processor.
pub const BOS: &str = "<s>";
/// End of sequence (id 2).
pub const EOS: &str = "</s>";
/// Padding (last id).
pub const PAD: &str = "<pad>";
/// The image placeholder (second to last id), expanded by `LlavaTokenizer`.
pub const IMAGE: &str = crate::llava::IMAGE_TOKEN;

/// Byte-fallback pieces `<0x00>`..`<0xFF>`.
const BYTE_PIECES: usize = 256;

/// What [`train_tokenizer`] built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerReport {
    /// Total vocabulary (all ids, specials included).
    pub vocab_size: usize,
    /// Single characters seen in the corpus.
    pub alphabet: usize,
    /// BPE merges learned.
    pub merges: usize,
    /// Id of `<unk>`.
    pub unk_id: i64,
    /// Id of `<s>`.
    pub bos_id: i64,
    /// Id of `</s>`.
    pub eos_id: i64,
    /// Id of `<pad>`.
    pub pad_id: i64,
    /// Id of `<image>`.
    pub image_id: i64,
}

/// Trains a Llama-style BPE tokenizer on `corpus` and writes `out` (a
/// `tokenizer.json`). `vocab_size` counts every id: 3 specials, 256 byte
/// pieces, the alphabet, the merges, `<image>` and `<pad>`.
pub fn train_tokenizer(corpus: &[&str], vocab_size: usize, out: &Path) -> Result<TokenizerReport> {
    if corpus.is_empty() {
        bail!("cannot train a tokenizer on an empty corpus");
    }
    let learned_budget = vocab_size
        .checked_sub(BYTE_PIECES + 2)
        .filter(|&n| n > 3)
        .with_context(|| {
            format!(
                "vocab_size {vocab_size} is too small: {} ids go to byte pieces and specials",
                BYTE_PIECES + 5
            )
        })?;
    let trained = train_bpe(corpus, learned_budget)?;
    let (spec, report) = llama_layout(&trained, vocab_size)?;
    let text = serde_json::to_string_pretty(&spec)?;
    // Loading it back checks the document before anything is written.
    let tok = Tokenizer::from_str(&text).map_err(|e| anyhow!("building the tokenizer: {e}"))?;
    check_specials(&tok, &report)?;
    write_atomic(out, text.as_bytes())?;
    Ok(report)
}

/// Sentencepiece-like word splitting: `▁` marks spaces (one prepended to the
/// text), pieces start at a `▁`, punctuation and line breaks stand alone.
fn pre_tokenizer() -> Result<PreTokenizerWrapper> {
    let newline = Split::new("\n", SplitDelimiterBehavior::Isolated, false)
        .map_err(|e| anyhow!("building the line-break splitter: {e}"))?;
    Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
        PreTokenizerWrapper::Metaspace(Metaspace::new('▁', PrependScheme::First, true)),
        PreTokenizerWrapper::Punctuation(Punctuation::new(SplitDelimiterBehavior::Isolated)),
        PreTokenizerWrapper::Split(newline),
    ])))
}

/// Runs the BPE trainer; returns the trained tokenizer as JSON.
fn train_bpe(corpus: &[&str], learned_budget: usize) -> Result<Value> {
    let model = BPE::builder()
        .unk_token(UNK.into())
        .byte_fallback(true)
        .fuse_unk(true)
        .build()
        .map_err(|e| anyhow!("building the BPE model: {e}"))?;
    let mut tok = Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(pre_tokenizer()?));
    let specials = [UNK, BOS, EOS]
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(learned_budget)
        .min_frequency(0)
        .show_progress(false)
        .special_tokens(specials)
        .build()
        .into();
    tok.train(&mut trainer, corpus.iter())
        .map_err(|e| anyhow!("training the BPE tokenizer: {e}"))?;
    let text = tok
        .to_string(false)
        .map_err(|e| anyhow!("serialising the trained tokenizer: {e}"))?;
    Ok(serde_json::from_str(&text)?)
}

/// Re-numbers the trained vocabulary into Llama's id order, adds the byte
/// pieces, `<image>` and `<pad>`, and sets the post-processor and decoder.
fn llama_layout(trained: &Value, requested: usize) -> Result<(Value, TokenizerReport)> {
    let vocab = trained
        .pointer("/model/vocab")
        .and_then(Value::as_object)
        .context("trained tokenizer has no model.vocab")?;
    let merges = trained
        .pointer("/model/merges")
        .and_then(Value::as_array)
        .context("trained tokenizer has no model.merges")?;
    let mut learned: Vec<(&str, u64)> = vocab
        .iter()
        .map(|(k, v)| Ok((k.as_str(), v.as_u64().context("non-integer vocab id")?)))
        .collect::<Result<_>>()?;
    learned.sort_by_key(|&(_, id)| id);
    let mut pieces: Vec<String> = vec![UNK.into(), BOS.into(), EOS.into()];
    pieces.extend((0..BYTE_PIECES).map(|b| format!("<0x{b:02X}>")));
    let alphabet = learned
        .iter()
        .filter(|(p, _)| p.chars().count() == 1)
        .count();
    for (piece, _) in &learned {
        if !pieces.iter().any(|p| p == piece) {
            pieces.push((*piece).to_string());
        }
    }
    let image_id = pieces.len();
    pieces.push(IMAGE.into());
    let pad_id = pieces.len();
    pieces.push(PAD.into());
    if pieces.len() > requested {
        bail!(
            "the corpus needs {} ids (specials, byte pieces and its {alphabet} characters) but vocab_size is {requested}",
            pieces.len()
        );
    }
    let mut model = trained
        .get("model")
        .cloned()
        .context("trained tokenizer has no model")?;
    // The BPE model's vocabulary holds every piece but the two appended specials,
    // which exist only as added tokens (as in llava-hf's tokenizer.json).
    model["vocab"] = Value::Object(
        pieces[..image_id]
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), json!(i)))
            .collect(),
    );
    let added = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [added(0, UNK), added(1, BOS), added(2, EOS),
                         added(image_id, IMAGE), added(pad_id, PAD)],
        "normalizer": null,
        "pre_tokenizer": trained.get("pre_tokenizer").cloned().unwrap_or(Value::Null),
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": BOS, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {BOS: {"id": BOS, "ids": [1], "tokens": [BOS]}}
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}
            ]
        },
        "model": model,
    });
    let report = TokenizerReport {
        vocab_size: pieces.len(),
        alphabet,
        merges: merges.len(),
        unk_id: 0,
        bos_id: 1,
        eos_id: 2,
        pad_id: pad_id as i64,
        image_id: image_id as i64,
    };
    Ok((spec, report))
}

fn check_specials(tok: &Tokenizer, r: &TokenizerReport) -> Result<()> {
    for (name, id) in [
        (UNK, r.unk_id),
        (BOS, r.bos_id),
        (EOS, r.eos_id),
        (IMAGE, r.image_id),
        (PAD, r.pad_id),
    ] {
        let got = tok.token_to_id(name).map(i64::from);
        if got != Some(id) {
            bail!("tokenizer layout: {name} should have id {id}, has {got:?}");
        }
    }
    let n = tok.get_vocab_size(true);
    if n != r.vocab_size {
        bail!("tokenizer layout: {} ids expected, {n} found", r.vocab_size);
    }
    Ok(())
}

/// The pieces `word` is split into where it stands inside a caption
/// (preceded by a space): `["▁key", "board"]`.
pub fn word_pieces(tok: &Tokenizer, word: &str) -> Result<Vec<String>> {
    let enc = tok
        .encode(format!(" {word}"), false)
        .map_err(|e| anyhow!("tokenizing {word:?}: {e}"))?;
    Ok(enc.get_tokens().to_vec())
}

/// The `words` that span more than one token inside a caption.
pub fn split_words(tok: &Tokenizer, words: &[&str]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for w in words {
        if word_pieces(tok, w)?.len() > 1 {
            out.push((*w).to_string());
        }
    }
    Ok(out)
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over
/// `path`: readers see the old file or the new one, never half of one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

//! CLIP's tokenizer through the `tokenizers` crate, with CLIP's 77-token window.
//!
//! Mirrors `CLIPTokenizer(..., truncation=True, max_length=77)` in
//! transformers: `<|startoftext|>` + BPE tokens + `<|endoftext|>`, and when
//! the text is too long the BPE tokens are cut so the sequence keeps both
//! special tokens and is exactly `max_length` long. No padding: the text
//! tower is causal, so pad tokens after the pooled position never change it.

use alloc::string::ToString;
use alloc::vec::Vec;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::error::ClipError;

/// One text as token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedText {
    /// Token ids fed to the text tower, special tokens included, at most the window.
    pub ids: Vec<u32>,
    /// Whether the text was cut to fit CLIP's window.
    pub truncated: bool,
    /// Token count before truncation, special tokens included.
    pub full_len: usize,
}

/// A `tokenizer.json` with CLIP's window applied.
pub(crate) struct ClipTokenizer {
    /// Without truncation: gives the full length.
    full: Tokenizer,
    /// With transformers' right truncation to the window.
    windowed: Tokenizer,
    /// The window (`max_position_embeddings`).
    max_len: usize,
}

impl ClipTokenizer {
    /// Loads `tokenizer.json` bytes; `max_len` is the text tower's window.
    pub(crate) fn from_bytes(json: &[u8], max_len: usize) -> Result<Self, ClipError> {
        let mut full = Tokenizer::from_bytes(json).map_err(tok_err)?;
        // A tokenizer.json may carry its own truncation or padding; the window is ours.
        full.with_truncation(None).map_err(tok_err)?;
        full.with_padding(None);
        let mut windowed = full.clone();
        windowed
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(tok_err)?;
        Ok(Self {
            full,
            windowed,
            max_len,
        })
    }

    /// Tokenizes one text, special tokens added.
    pub(crate) fn encode(&self, text: &str) -> Result<TokenizedText, ClipError> {
        let ids = self
            .full
            .encode(text, true)
            .map_err(tok_err)?
            .get_ids()
            .to_vec();
        let full_len = ids.len();
        if full_len <= self.max_len {
            return Ok(TokenizedText {
                ids,
                truncated: false,
                full_len,
            });
        }
        let cut = self
            .windowed
            .encode(text, true)
            .map_err(tok_err)?
            .get_ids()
            .to_vec();
        Ok(TokenizedText {
            ids: cut,
            truncated: true,
            full_len,
        })
    }
}

fn tok_err(e: impl core::fmt::Display) -> ClipError {
    ClipError::Tokenizer {
        message: e.to_string(),
    }
}

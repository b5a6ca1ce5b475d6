//! Token positions of object mentions (method.md section 3): which model
//! tokens cover a mention's characters, and where its reward goes.
//!
//! Input is the mentions of a response text and the tokenizer's offsets
//! for the same text: one `(start, end)` byte range per token, as the
//! `tokenizers` crate returns them. A token *overlaps* a mention when their
//! byte ranges share at least one byte. That one rule serves every
//! tokenizer family:
//! - byte-level BPE (GPT-2, Llama 3): `Ġdog` has offsets covering " dog" or
//!   "dog"; either overlaps the mention `dog`;
//! - SentencePiece (Llama 2, LLaVA-1.5's Vicuna): `▁dog` covers " dog"
//!   (leading space inside the token) or "dog", and a lone `▁` covers only
//!   the space, so it overlaps nothing;
//! - a word split across tokens (`▁gir` `aff` `e`) overlaps with all parts;
//! - special tokens carry empty `(0, 0)` offsets and overlap nothing.
//!
//! Placement ([`Placement`], shared with the reward module): `last` (the
//! default, method.md) puts the whole reward on the last overlapping token,
//! the action that completes the word; `spread` divides it equally among
//! all overlapping tokens, so the total per mention is the same in both
//! modes. Two mentions may share a token
//! (a tokenizer that merges "cat/dog" into one token): their rewards land
//! on the same position and callers add them.
//!
//! A mention no token covers (the token sequence was truncated before it)
//! is returned with [`Coverage::Missing`] rather than dropped, and one
//! whose first or last byte is not covered with [`Coverage::Partial`].

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::mentions::Mention;
use crate::reward::{Placement, ScoredMention};
use crate::vocab::EntityId;

/// How completely the tokens cover a mention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Coverage {
    /// Tokens cover the mention's first and last byte.
    Full,
    /// Some token overlaps, but the first or last byte is uncovered
    /// (typically a token sequence cut inside the mention).
    Partial,
    /// No token overlaps the mention.
    Missing,
}

/// One mention and the tokens that cover it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Alignment {
    /// The mention, as given.
    pub mention: Mention,
    /// Indices of the tokens overlapping the mention, ascending.
    pub tokens: Vec<usize>,
    /// Whether the tokens cover the whole mention.
    pub coverage: Coverage,
}

impl Alignment {
    /// The entity the mention names.
    pub fn entity(&self) -> EntityId {
        self.mention.entity
    }

    /// First to last overlapping token (exclusive end), or `None` when
    /// [`Coverage::Missing`].
    pub fn token_range(&self) -> Option<Range<usize>> {
        Some(*self.tokens.first()?..*self.tokens.last()? + 1)
    }

    /// The last overlapping token: where [`Placement::Last`] puts the reward.
    pub fn last_token(&self) -> Option<usize> {
        self.tokens.last().copied()
    }

    /// `(token index, weight)` pairs that receive this mention's reward;
    /// weights sum to 1 unless the mention is [`Coverage::Missing`], which
    /// yields nothing.
    pub fn positions(&self, placement: Placement) -> impl Iterator<Item = (usize, f64)> + '_ {
        let chosen: &[usize] = match placement {
            Placement::Last => self.tokens.last().map(core::slice::from_ref).unwrap_or(&[]),
            Placement::Spread => &self.tokens,
        };
        let weight = 1.0 / chosen.len().max(1) as f64;
        chosen.iter().map(move |&t| (t, weight))
    }

    /// The mention as the reward module takes it, with the verifier's
    /// `score`; `None` when no token covers it. The reward module spreads
    /// over `first_token..=last_token`, the same tokens as
    /// [`Alignment::positions`] whenever the overlapping tokens are
    /// contiguous (always, for a real tokenizer).
    pub fn scored(&self, score: f64) -> Option<ScoredMention> {
        Some(ScoredMention {
            first_token: *self.tokens.first()?,
            last_token: *self.tokens.last()?,
            score,
            entity: self.mention.entity,
        })
    }
}

/// Why mentions and offsets could not be aligned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlignError {
    kind: AlignErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum AlignErrorKind {
    ReversedToken {
        index: usize,
        start: usize,
        end: usize,
    },
    EmptyMention {
        index: usize,
        start: usize,
        end: usize,
    },
}

impl fmt::Display for AlignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            AlignErrorKind::ReversedToken { index, start, end } => write!(
                f,
                "token {index} has offsets ({start}, {end}): start is after end"
            ),
            AlignErrorKind::EmptyMention { index, start, end } => write!(
                f,
                "mention {index} has span ({start}, {end}): a mention must cover at least one byte"
            ),
        }
    }
}

impl core::error::Error for AlignError {}

/// Aligns each mention with the tokens overlapping it, in mention order.
///
/// `offsets[i]` is the byte range of token `i` in the same text the
/// mentions were found in. Tokens need not be sorted (special tokens with
/// `(0, 0)` may sit anywhere). Fails on a token whose start is after its
/// end and on an empty or reversed mention span.
pub fn align_mentions(
    mentions: &[Mention],
    offsets: &[(usize, usize)],
) -> Result<Vec<Alignment>, AlignError> {
    if let Some((index, &(start, end))) = offsets.iter().enumerate().find(|(_, (s, e))| s > e) {
        return Err(AlignError {
            kind: AlignErrorKind::ReversedToken { index, start, end },
        });
    }
    mentions
        .iter()
        .enumerate()
        .map(|(index, m)| {
            if m.start >= m.end {
                return Err(AlignError {
                    kind: AlignErrorKind::EmptyMention {
                        index,
                        start: m.start,
                        end: m.end,
                    },
                });
            }
            Ok(align_one(*m, offsets))
        })
        .collect()
}

/// The overlapping tokens of one mention and its coverage. Linear in the
/// number of tokens: a response has hundreds of tokens and a few mentions.
fn align_one(mention: Mention, offsets: &[(usize, usize)]) -> Alignment {
    let mut tokens = Vec::new();
    let (mut lo, mut hi) = (usize::MAX, 0);
    for (i, &(s, e)) in offsets.iter().enumerate() {
        if s < mention.end && e > mention.start {
            tokens.push(i);
            lo = lo.min(s);
            hi = hi.max(e);
        }
    }
    let coverage = if tokens.is_empty() {
        Coverage::Missing
    } else if lo <= mention.start && hi >= mention.end {
        Coverage::Full
    } else {
        Coverage::Partial
    };
    Alignment {
        mention,
        tokens,
        coverage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn mention(text: &str, word: &str) -> Mention {
        let start = text.find(word).expect("word in text");
        Mention {
            start,
            end: start + word.len(),
            entity: EntityId(0),
        }
    }

    /// Offsets of `pieces` laid end to end over the text they spell, each
    /// piece's span trimmed of a leading space when `trim` (the "dog"
    /// rather than " dog" convention).
    fn offsets(pieces: &[&str], trim: bool) -> Vec<(usize, usize)> {
        let mut at = 0;
        pieces
            .iter()
            .map(|p| {
                let lead = if trim {
                    p.len() - p.trim_start().len()
                } else {
                    0
                };
                let span = (at + lead, at + p.len());
                at += p.len();
                span
            })
            .collect()
    }

    #[test]
    fn gpt2_byte_level_bpe() {
        // GPT-2: "A teddy bear and a dog's toy" -> A Ġted dy Ġbear Ġand Ġa Ġdog 's Ġtoy
        let text = "A teddy bear and a dog's toy";
        let pieces = [
            "A", " ted", "dy", " bear", " and", " a", " dog", "'s", " toy",
        ];
        assert_eq!(pieces.concat(), text);
        for trim in [false, true] {
            let off = offsets(&pieces, trim);
            let ms = [mention(text, "teddy bear"), mention(text, "dog")];
            let a = align_mentions(&ms, &off).unwrap();
            assert_eq!(a[0].tokens, [1, 2, 3]);
            assert_eq!(a[0].last_token(), Some(3));
            assert_eq!(a[0].coverage, Coverage::Full);
            // The clitic token "'s" is not part of the mention.
            assert_eq!(a[1].tokens, [6]);
            assert_eq!(a[1].token_range(), Some(6..7));
        }
    }

    #[test]
    fn llama_sentencepiece_with_specials_and_split_word() {
        // <s> ▁A ▁gir aff e ▁near ▁a ▁hot ▁dog </s>; specials have (0, 0).
        let text = "A giraffe near a hot dog";
        let pieces = ["A", " gir", "aff", "e", " near", " a", " hot", " dog"];
        for trim in [false, true] {
            let mut off = vec![(0, 0)];
            off.extend(offsets(&pieces, trim));
            off.push((0, 0));
            let ms = [mention(text, "giraffe"), mention(text, "hot dog")];
            let a = align_mentions(&ms, &off).unwrap();
            assert_eq!(a[0].tokens, [2, 3, 4]);
            assert_eq!(a[1].tokens, [7, 8]);
            let last: Vec<_> = a[0].positions(Placement::Last).collect();
            assert_eq!(last, [(4, 1.0)]);
            let spread: Vec<_> = a[0].positions(Placement::Spread).collect();
            assert_eq!(spread.len(), 3);
            assert!(spread.iter().all(|&(_, w)| (w - 1.0 / 3.0).abs() < 1e-15));
            let total: f64 = spread.iter().map(|p| p.1).sum();
            assert!((total - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn lone_space_token_overlaps_nothing() {
        // Llama splits " 2 dogs" as ▁ 2 ▁dogs; the lone ▁ covers a space.
        let text = "a 2 dogs";
        let off = [(0, 1), (1, 2), (2, 3), (3, 8)];
        let a = align_mentions(&[mention(text, "dogs")], &off).unwrap();
        assert_eq!(a[0].tokens, [3]);
        let b = align_mentions(&[mention(text, "2")], &off).unwrap();
        assert_eq!(b[0].tokens, [2]);
    }

    #[test]
    fn non_ascii_byte_offsets() {
        // A multi-byte character split across byte-level tokens: both
        // tokens carry the character's full range.
        let text = "un café ici";
        let m = mention(text, "café");
        let off = [(0, 2), (2, 6), (6, 8), (6, 8), (8, 12)];
        let a = align_mentions(&[m], &off).unwrap();
        assert_eq!(a[0].tokens, [1, 2, 3]);
        assert_eq!(a[0].coverage, Coverage::Full);
    }

    #[test]
    fn truncated_tokens_are_reported() {
        let text = "a teddy bear and a dog";
        let off = offsets(&["a", " ted", "dy"], false);
        let ms = [mention(text, "teddy bear"), mention(text, "dog")];
        let a = align_mentions(&ms, &off).unwrap();
        assert_eq!(a[0].coverage, Coverage::Partial);
        assert_eq!(a[0].tokens, [1, 2]);
        assert_eq!(a[1].coverage, Coverage::Missing);
        assert_eq!(a[1].token_range(), None);
        assert_eq!(a[1].positions(Placement::Last).count(), 0);
        assert_eq!(a[1].positions(Placement::Spread).count(), 0);
        assert_eq!(a[1].scored(30.0), None);
        let s = a[0].scored(30.0).expect("partially covered still scores");
        assert_eq!((s.first_token, s.last_token, s.score), (1, 2, 30.0));
    }

    #[test]
    fn shared_token_goes_to_both_mentions() {
        let text = "cat/dog";
        let ms = [mention(text, "cat"), mention(text, "dog")];
        let a = align_mentions(&ms, &[(0, 7)]).unwrap();
        assert_eq!(a[0].last_token(), Some(0));
        assert_eq!(a[1].last_token(), Some(0));
    }

    #[test]
    fn bad_input_is_an_error() {
        let m = Mention {
            start: 0,
            end: 3,
            entity: EntityId(1),
        };
        let err = align_mentions(&[m], &[(0, 3), (5, 4)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token 1 has offsets (5, 4): start is after end"
        );
        let empty = Mention { start: 2, ..m };
        let empty = Mention { end: 2, ..empty };
        let err = align_mentions(&[m, empty], &[(0, 3)]).unwrap_err();
        assert!(
            err.to_string().starts_with("mention 1 has span (2, 2)"),
            "{err}"
        );
        assert_eq!(align_mentions(&[], &[]), Ok(vec![]));
    }
}

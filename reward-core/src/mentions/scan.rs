//! The word scanner under mention matching (method.md section 3: matches
//! are on word boundaries). It cuts a text into tokens without allocating,
//! and the same scanner cuts the vocabulary's surface forms, so a form and a
//! text agree on what a "word" is by construction.
//!
//! Token kinds and the rules they encode:
//! - a *word* is a run of letters and digits (`char::is_alphanumeric`, any
//!   script) plus combining marks, with word-internal apostrophes
//!   (`o'clock`, `qur'an`);
//! - a hyphen between two word characters is a *join*: it is not a token,
//!   the words on both sides are, and they are flagged as joined
//!   (`hot-dog` scans like `hot dog`, but a match may not start or end
//!   inside a joined compound: `dog-friendly` names no dog);
//! - the possessive clitic `'s` / `’s` at the end of a word is a token of
//!   its own, so `dog's` is the word `dog` followed by `'s`;
//! - whitespace separates tokens and is never part of one;
//! - every other character (punctuation, symbols, emoji, a hyphen or
//!   apostrophe not between word characters) is a one-character token, so a
//!   multi-word form never matches across a comma or a full stop.

/// One token: a byte range of the scanned text plus how it is attached to
/// its neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// A join hyphen links this token to the previous one.
    pub joined_prev: bool,
    /// A join hyphen links this token to the next one.
    pub joined_next: bool,
    /// Every byte is ASCII (lets lookups skip Unicode case mapping).
    pub ascii: bool,
}

/// An allocation-free cursor over the tokens of a text. `Copy`, so a
/// matcher can look ahead and resume from a saved position.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scanner<'t> {
    text: &'t str,
    pos: usize,
    /// The previous word ended at a join hyphen (already consumed).
    joined: bool,
    /// The previous word ended right before a possessive clitic.
    clitic: bool,
}

impl<'t> Scanner<'t> {
    /// A scanner at the start of `text`.
    pub fn new(text: &'t str) -> Self {
        Self {
            text,
            pos: 0,
            joined: false,
            clitic: false,
        }
    }

    fn char_at(&self, pos: usize) -> Option<char> {
        self.text.get(pos..).and_then(|s| s.chars().next())
    }

    /// Skips whitespace; returns false at the end of the text.
    fn skip_space(&mut self) -> bool {
        let bytes = self.text.as_bytes();
        while let Some(&b) = bytes.get(self.pos) {
            if b < 0x80 {
                if !b.is_ascii_whitespace() && b != 0x0B {
                    return true;
                }
                self.pos += 1;
            } else {
                match self.char_at(self.pos) {
                    Some(c) if c.is_whitespace() => self.pos += c.len_utf8(),
                    _ => return true,
                }
            }
        }
        false
    }

    /// Length in bytes of a possessive clitic starting at `pos` (an
    /// apostrophe, then `s`/`S`, then no word character), or 0.
    fn clitic_len(&self, pos: usize) -> usize {
        let Some(a) = self.char_at(pos).filter(|c| is_apostrophe(*c)) else {
            return 0;
        };
        let s = pos + a.len_utf8();
        if !matches!(self.text.as_bytes().get(s), Some(b's' | b'S')) {
            return 0;
        }
        match self.char_at(s + 1) {
            Some(c) if is_word_char(c) => 0,
            _ => s + 1 - pos,
        }
    }

    /// Scans a word starting at `self.pos`, which holds a word character.
    fn word(&mut self) -> Token {
        let start = self.pos;
        let joined_prev = core::mem::take(&mut self.joined);
        let mut ascii = true;
        let bytes = self.text.as_bytes();
        loop {
            // ASCII letters and digits dominate real captions: no decoding.
            while let Some(b) = bytes.get(self.pos) {
                if !b.is_ascii_alphanumeric() {
                    break;
                }
                self.pos += 1;
            }
            // Other ASCII ends the word, except the two joiners.
            match bytes.get(self.pos) {
                None => break,
                Some(&b) if b < 0x80 && b != b'\'' && b != b'-' => break,
                Some(_) => {}
            }
            let Some(c) = self.char_at(self.pos) else {
                break;
            };
            if is_word_char(c) {
                ascii = false;
                self.pos += c.len_utf8();
                continue;
            }
            let next = self.char_at(self.pos + c.len_utf8());
            let before_word = next.is_some_and(is_word_char);
            if is_apostrophe(c) && before_word {
                if self.clitic_len(self.pos) > 0 {
                    self.clitic = true;
                    break;
                }
                ascii &= c.is_ascii();
                self.pos += c.len_utf8();
                continue;
            }
            if is_hyphen(c) && before_word {
                let end = self.pos;
                self.pos += c.len_utf8();
                self.joined = true;
                return Token {
                    start,
                    end,
                    joined_prev,
                    joined_next: true,
                    ascii,
                };
            }
            break;
        }
        Token {
            start,
            end: self.pos,
            joined_prev,
            joined_next: false,
            ascii,
        }
    }

    fn single(&mut self, len: usize, ascii: bool) -> Token {
        let start = self.pos;
        self.pos += len;
        Token {
            start,
            end: self.pos,
            joined_prev: false,
            joined_next: false,
            ascii,
        }
    }
}

impl Iterator for Scanner<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        if !self.skip_space() {
            return None;
        }
        if core::mem::take(&mut self.clitic) {
            let len = self.clitic_len(self.pos);
            if len > 0 {
                return Some(self.single(len, len == 2));
            }
        }
        let b = *self.text.as_bytes().get(self.pos)?;
        if b < 0x80 {
            return Some(if b.is_ascii_alphanumeric() {
                self.word()
            } else {
                self.single(1, true)
            });
        }
        let c = self.char_at(self.pos)?;
        if is_word_char(c) {
            Some(self.word())
        } else {
            Some(self.single(c.len_utf8(), c.is_ascii()))
        }
    }
}

/// Letters and digits of any script, plus combining marks (so a decomposed
/// "café" stays one word).
pub(crate) fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || is_combining_mark(c)
}

/// The combining-mark blocks. `core` has no general-category query, so the
/// blocks that carry diacritics are listed.
fn is_combining_mark(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
        | '\u{0483}'..='\u{0489}'
        | '\u{0591}'..='\u{05BD}'
        | '\u{0610}'..='\u{061A}'
        | '\u{064B}'..='\u{065F}'
        | '\u{0900}'..='\u{0903}'
        | '\u{093A}'..='\u{094F}'
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{200D}'
        | '\u{20D0}'..='\u{20FF}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{FE20}'..='\u{FE2F}')
}

/// ASCII and typographic apostrophes.
pub(crate) fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}')
}

/// Hyphen-minus, Unicode hyphen and non-breaking hyphen (not dashes: an en
/// or em dash separates clauses, it does not build compounds).
pub(crate) fn is_hyphen(c: char) -> bool {
    matches!(c, '-' | '\u{2010}' | '\u{2011}')
}

/// Case folding of one character, as the matcher compares tokens: Unicode
/// lower case (which may change the byte length, e.g. 'İ' -> "i̇" and the
/// Kelvin sign 'K' -> "k"), final sigma folded to sigma, typographic
/// apostrophe and hyphens to their ASCII forms.
pub(crate) fn fold(c: char) -> impl Iterator<Item = char> {
    let c = match c {
        '\u{2019}' => '\'',
        '\u{2010}' | '\u{2011}' => '-',
        'ς' => 'σ',
        c => c,
    };
    c.to_lowercase().map(|l| if l == 'ς' { 'σ' } else { l })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn words(text: &str) -> Vec<(&str, bool, bool)> {
        Scanner::new(text)
            .map(|t| (&text[t.start..t.end], t.joined_prev, t.joined_next))
            .collect()
    }

    #[test]
    fn splits_words_punctuation_and_clitics() {
        assert_eq!(
            words("A dog's  bowl, o'clock!"),
            [
                ("A", false, false),
                ("dog", false, false),
                ("'s", false, false),
                ("bowl", false, false),
                (",", false, false),
                ("o'clock", false, false),
                ("!", false, false),
            ]
        );
    }

    #[test]
    fn hyphen_between_words_joins_them() {
        assert_eq!(
            words("hot-dog - x- -y"),
            [
                ("hot", false, true),
                ("dog", true, false),
                ("-", false, false),
                ("x", false, false),
                ("-", false, false),
                ("-", false, false),
                ("y", false, false),
            ]
        );
    }

    #[test]
    fn clitic_needs_a_word_boundary_after_it() {
        // "'sa" is not a clitic; "dogs'" ends in a lone apostrophe.
        assert_eq!(
            words("x'sa dogs' DOG’S"),
            [
                ("x'sa", false, false),
                ("dogs", false, false),
                ("'", false, false),
                ("DOG", false, false),
                ("’S", false, false),
            ]
        );
    }

    #[test]
    fn unicode_words_and_marks() {
        let text = "cafe\u{301} İstanbul\u{3000}東京 👍";
        assert_eq!(
            words(text),
            [
                ("cafe\u{301}", false, false),
                ("İstanbul", false, false),
                ("東京", false, false),
                ("👍", false, false),
            ]
        );
        assert!(Scanner::new("abc").all(|t| t.ascii));
        assert!(!Scanner::new("İ").next().is_some_and(|t| t.ascii));
    }

    #[test]
    fn folds_case_and_typography() {
        let f = |s: &str| s.chars().flat_map(fold).collect::<alloc::string::String>();
        assert_eq!(f("DOG’S"), "dog's");
        assert_eq!(f("\u{212A}ITE"), "kite");
        assert_eq!(f("ΟΔΟΣ οδος"), "οδοσ οδοσ");
        assert_eq!(f("İ"), "i\u{307}");
    }
}

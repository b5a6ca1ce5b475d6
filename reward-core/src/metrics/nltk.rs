//! `nltk.word_tokenize` as CHAIR's `chair.py` calls it: sentence splitting, then
//! NLTK's `NLTKWordTokenizer` (the improved Treebank tokenizer of
//! `nltk/tokenize/destructive.py`, NLTK 3.10.4) on each sentence.
//!
//! Each regular-expression stage of the NLTK tokenizer is restated as a small
//! scanner with the same matching semantics (leftmost, non-overlapping), so no
//! regex engine is needed in `no_std`. The word tokenizer is checked token for
//! token against NLTK 3.10.4 on `tests/fixtures/eval/nltk_tokens.jsonl`.
//!
//! Sentence splitting is an approximation: NLTK runs its Punkt model, whose
//! trained parameters (`punkt_tab`) are not available offline. [`sentences`]
//! splits after `.`, `?` or `!` (plus closing quotes or brackets) followed by
//! white space, except after an ellipsis, a one-letter initial or a common
//! abbreviation. What it changes for CHAIR is documented in docs/evaluation.md:
//! only whether a period stays attached to the last word of a sentence.

use alloc::string::String;
use alloc::vec::Vec;

/// Abbreviations after which a period does not end a sentence (lower case,
/// without the final period). A small subset of Punkt's English list.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "u.s", "a.m", "p.m",
    "inc", "co", "ltd", "no", "approx", "fig",
];

/// `nltk.word_tokenize(text)` on already lower-cased text (CHAIR lower-cases first).
pub fn word_tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for sentence in sentences(text) {
        out.extend(tokenize_sentence(sentence));
    }
    out
}

/// Splits text into sentences (see the module docs for the rule).
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chunks = chunk_spans(text).peekable();
    while let Some((s, e)) = chunks.next() {
        let next = chunks
            .peek()
            .map(|&(n, _)| n)
            .filter(|_| ends_sentence(&text[s..e]));
        if let Some(next) = next {
            out.push(&text[start..e]);
            start = next;
        }
    }
    if start < text.len() && !text[start..].trim().is_empty() {
        out.push(&text[start..]);
    }
    out
}

/// Byte spans of the white-space separated chunks of `text`.
fn chunk_spans(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut pos = 0;
    core::iter::from_fn(move || {
        let rest = &text[pos..];
        let lead = rest.len() - rest.trim_start().len();
        let start = pos + lead;
        if start >= text.len() {
            return None;
        }
        let len = text[start..]
            .find(char::is_whitespace)
            .unwrap_or(text.len() - start);
        pos = start + len;
        Some((start, start + len))
    })
}

/// Whether a white-space separated chunk ends a sentence.
fn ends_sentence(chunk: &str) -> bool {
    let core = chunk.trim_end_matches(['"', '\'', ')', ']', '}', '”', '’', '»']);
    let Some(last) = core.chars().next_back() else {
        return false;
    };
    match last {
        '?' | '!' => true,
        '.' => {
            let word = &core[..core.len() - 1];
            let bare = word.trim_start_matches(['"', '\'', '(', '[', '{', '“', '‘', '«']);
            !(word.ends_with('.')
                || ABBREVIATIONS.contains(&bare)
                || (bare.chars().count() == 1 && bare.chars().all(char::is_alphabetic)))
        }
        _ => false,
    }
}

/// Python's `\w` (Unicode letters, digits and underscore).
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `NLTKWordTokenizer().tokenize(sentence)`.
pub fn tokenize_sentence(sentence: &str) -> Vec<String> {
    let mut t: Vec<char> = sentence.chars().collect();
    // STARTING_QUOTES
    t = pad_opening_quotes(&t);
    if t.first() == Some(&'"') {
        t.splice(0..1, ['`', '`']);
    }
    t = replace_all(&t, &['`', '`'], &[' ', '`', '`', ' ']);
    t = quote_after_opener(&t);
    t = split_leading_apostrophe(&t);
    // PUNCTUATION
    t = final_period(&t, true);
    t = comma_colon(&t);
    t = trailing_comma_colon(&t);
    t = pad_dot_runs(&t);
    t = pad_if(&t, |c| {
        ";@#$%&".contains(c) || ('\u{2012}'..='\u{2015}').contains(&c)
    });
    t = final_period(&t, false);
    t = pad_if(&t, |c| c == '?' || c == '!');
    t = quote_before_space(&t);
    t = pad_if(&t, |c| c == '*');
    t = pad_if(&t, |c| "[](){}<>".contains(c));
    t = replace_all(&t, &['-', '-'], &[' ', '-', '-', ' ']);
    t.insert(0, ' ');
    t.push(' ');
    // ENDING_QUOTES
    t = pad_if(&t, |c| "»”’".contains(c));
    t = replace_all(&t, &['\'', '\''], &[' ', '\'', '\'', ' ']);
    t = replace_all(&t, &['"'], &[' ', '\'', '\'', ' ']);
    // `\s+` -> ` ` (the text already starts and ends with a space).
    let s: String = t.into_iter().collect();
    let words: Vec<&str> = s.split_whitespace().collect();
    let mut t: Vec<char> = Vec::with_capacity(s.len() + 2);
    t.push(' ');
    for w in words {
        t.extend(w.chars());
        t.push(' ');
    }
    t = split_clitics(&t);
    t = contractions(&t);
    let s: String = t.into_iter().collect();
    s.split_whitespace().map(String::from).collect()
}

/// `([«“‘„]|[`]+)` -> ` \1 `.
fn pad_opening_quotes(t: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    while i < t.len() {
        let c = t[i];
        if "«“‘„".contains(c) {
            out.extend([' ', c, ' ']);
            i += 1;
        } else if c == '`' {
            let run = t[i..].iter().take_while(|&&x| x == '`').count();
            out.push(' ');
            out.extend_from_slice(&t[i..i + run]);
            out.push(' ');
            i += run;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Replaces every non-overlapping occurrence of `pat`, left to right.
fn replace_all(t: &[char], pat: &[char], with: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    while i < t.len() {
        if t[i..].starts_with(pat) {
            out.extend_from_slice(with);
            i += pat.len();
        } else {
            out.push(t[i]);
            i += 1;
        }
    }
    out
}

/// Surrounds every character matching `pred` with spaces.
fn pad_if(t: &[char], pred: impl Fn(char) -> bool) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    for &c in t {
        if pred(c) {
            out.extend([' ', c, ' ']);
        } else {
            out.push(c);
        }
    }
    out
}

/// `([ \(\[{<])(\"|\'{2})` -> `\1 `` `.
fn quote_after_opener(t: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    while i < t.len() {
        let c = t[i];
        if " ([{<".contains(c) {
            let quote = match (t.get(i + 1), t.get(i + 2)) {
                (Some('"'), _) => 1,
                (Some('\''), Some('\'')) => 2,
                _ => 0,
            };
            if quote > 0 {
                out.extend([c, ' ', '`', '`', ' ']);
                i += 1 + quote;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// `(?i)(?<!\w)(\')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)` -> `' `.
fn split_leading_apostrophe(t: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    for (i, &c) in t.iter().enumerate() {
        out.push(c);
        if c != '\'' || (i > 0 && is_word(t[i - 1])) {
            continue;
        }
        if !t.get(i + 1).is_some_and(|&n| is_word(n)) {
            continue;
        }
        let clitic = ["re", "ve", "ll", "m", "t", "s", "d", "n"].iter().any(|k| {
            let k: Vec<char> = k.chars().collect();
            let end = i + 1 + k.len();
            end <= t.len()
                && t[i + 1..end]
                    .iter()
                    .zip(&k)
                    .all(|(a, b)| a.to_lowercase().eq(core::iter::once(*b)))
                && !t.get(end).is_some_and(|&n| is_word(n))
        });
        if !clitic {
            out.push(' ');
        }
    }
    out
}

/// The two "final period" rules. `first`: `([^\.])(\.)([\]\)}>"\'»”’ ]*+)\s*$`
/// -> `\1 \2 \3 `; otherwise `([^\.])(\.)([\]\)}>"\']*)\s*$` -> `\1 \2\3 `.
fn final_period(t: &[char], first: bool) -> Vec<char> {
    let closer = |c: char| "])}>\"'".contains(c) || (first && (c == ' ' || "»”’".contains(c)));
    // Only the last period can be followed by closers and white space alone.
    let Some(p) = t.iter().rposition(|&c| c == '.') else {
        return t.to_vec();
    };
    if p == 0 || t[p - 1] == '.' {
        return t.to_vec();
    }
    let run = t[p + 1..].iter().take_while(|&&c| closer(c)).count();
    if !t[p + 1 + run..].iter().all(|c| c.is_whitespace()) {
        return t.to_vec();
    }
    let mut out = t[..p].to_vec();
    out.push(' ');
    out.push('.');
    if first {
        out.push(' ');
    }
    out.extend_from_slice(&t[p + 1..p + 1 + run]);
    out.push(' ');
    out
}

/// `([:,])([^\d])` -> ` \1 \2`.
fn comma_colon(t: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    while i < t.len() {
        let c = t[i];
        let next = t.get(i + 1).copied().filter(|n| !n.is_ascii_digit());
        if let (':' | ',', Some(n)) = (c, next) {
            out.extend([' ', c, ' ', n]);
            i += 2;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// `([:,])$` -> ` \1 ` (`$` also matches before a final newline).
fn trailing_comma_colon(t: &[char]) -> Vec<char> {
    let end = if t.last() == Some(&'\n') {
        t.len() - 1
    } else {
        t.len()
    };
    match end.checked_sub(1).map(|i| t[i]) {
        Some(c @ (':' | ',')) => {
            let mut out = t[..end - 1].to_vec();
            out.extend([' ', c, ' ']);
            out.extend_from_slice(&t[end..]);
            out
        }
        _ => t.to_vec(),
    }
}

/// `\.{2,}` -> ` \g<0> `.
fn pad_dot_runs(t: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    while i < t.len() {
        let run = t[i..].iter().take_while(|&&c| c == '.').count();
        if run >= 2 {
            out.push(' ');
            out.extend_from_slice(&t[i..i + run]);
            out.push(' ');
            i += run;
        } else {
            out.push(t[i]);
            i += 1;
        }
    }
    out
}

/// `([^'])' ` -> `\1 ' `.
fn quote_before_space(t: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    while i < t.len() {
        if t[i] != '\'' && t.get(i + 1) == Some(&'\'') && t.get(i + 2) == Some(&' ') {
            out.extend([t[i], ' ', '\'', ' ']);
            i += 3;
        } else {
            out.push(t[i]);
            i += 1;
        }
    }
    out
}

/// `([^' ])('[sS]|'[mM]|'[dD]|') ` and
/// `([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ` -> `\1 \2 `, in that order.
fn split_clitics(t: &[char]) -> Vec<char> {
    let first = |rest: &[char]| -> Option<usize> {
        match rest {
            ['\'', c, ' ', ..] if "sSmMdD".contains(*c) => Some(2),
            ['\'', ' ', ..] => Some(1),
            _ => None,
        }
    };
    let second = |rest: &[char]| -> Option<usize> {
        const K: [&str; 8] = ["'ll", "'LL", "'re", "'RE", "'ve", "'VE", "n't", "N'T"];
        K.iter().find_map(|k| {
            let k: Vec<char> = k.chars().collect();
            (rest.starts_with(&k) && rest.get(3) == Some(&' ')).then_some(3)
        })
    };
    let t = split_before(t, first);
    split_before(&t, second)
}

/// Applies `([^' ])(X) ` -> `\1 X ` where `clitic` gives X's length at a position.
fn split_before(t: &[char], clitic: impl Fn(&[char]) -> Option<usize>) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    while i < t.len() {
        let c = t[i];
        let n = if c != '\'' && c != ' ' {
            clitic(&t[i + 1..])
        } else {
            None
        };
        if let Some(n) = n {
            out.extend([c, ' ']);
            out.extend_from_slice(&t[i + 1..i + 1 + n]);
            out.push(' ');
            i += n + 2;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// MacIntyre contractions (CONTRACTIONS2 and CONTRACTIONS3): "cannot" ->
/// "can not", "gonna" -> "gon na", " 'tis" -> " 't is", ...
fn contractions(t: &[char]) -> Vec<char> {
    const TWO: [(&str, &str); 8] = [
        ("can", "not"),
        ("d", "'ye"),
        ("gim", "me"),
        ("gon", "na"),
        ("got", "ta"),
        ("lem", "me"),
        ("more", "'n"),
        ("wan", "na"),
    ];
    let mut t = t.to_vec();
    for (a, b) in TWO {
        t = split_word(&t, a, b, true, b == "na" && a == "wan");
    }
    for b in ["is", "was"] {
        t = split_word(&t, "'t", b, false, false);
    }
    t
}

/// Splits `a`+`b` (case-insensitive) into ` a b `. With `word_start`, `a` must
/// start at a word boundary (`\b`); otherwise it must follow a space, which is
/// consumed and given back. `b` must end at a word boundary, or before white
/// space when `space_after`.
fn split_word(t: &[char], a: &str, b: &str, word_start: bool, space_after: bool) -> Vec<char> {
    let pat: Vec<char> = a.chars().chain(b.chars()).collect();
    let na = a.chars().count();
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    while i < t.len() {
        if let Some(len) = match_at(t, i, &pat, word_start, space_after) {
            let start = if word_start { i } else { i + 1 };
            out.push(' ');
            out.extend_from_slice(&t[start..start + na]);
            out.push(' ');
            out.extend_from_slice(&t[start + na..i + len]);
            out.push(' ');
            i += len;
            continue;
        }
        out.push(t[i]);
        i += 1;
    }
    out
}

/// Length of the match of a contraction pattern at `i`, if any.
fn match_at(
    t: &[char],
    i: usize,
    pat: &[char],
    word_start: bool,
    space_after: bool,
) -> Option<usize> {
    let (start, lead) = if word_start {
        // `\b` before a word character: previous is not a word character.
        if i > 0 && is_word(t[i - 1]) {
            return None;
        }
        (i, 0)
    } else {
        if t[i] != ' ' {
            return None;
        }
        (i + 1, 1)
    };
    let end = start + pat.len();
    if end > t.len()
        || !t[start..end]
            .iter()
            .zip(pat)
            .all(|(x, y)| eq_ignore_case(*x, *y))
    {
        return None;
    }
    let after = t.get(end).copied();
    let ok = if space_after {
        after.is_some_and(char::is_whitespace)
    } else {
        !after.is_some_and(is_word)
    };
    ok.then_some(pat.len() + lead)
}

fn eq_ignore_case(x: char, y: char) -> bool {
    x == y || x.to_lowercase().eq(y.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn toks(s: &str) -> Vec<String> {
        tokenize_sentence(s)
    }

    #[test]
    fn treebank_basics() {
        assert_eq!(
            toks("a man's dog, \"ok\" (yes) can't go... it."),
            vec![
                "a", "man", "'s", "dog", ",", "``", "ok", "''", "(", "yes", ")", "ca", "n't", "go",
                "...", "it", "."
            ]
        );
        assert_eq!(toks("i cannot go"), vec!["i", "can", "not", "go"]);
    }

    #[test]
    fn sentence_split_detaches_periods() {
        assert_eq!(
            word_tokenize("a dog. a cat on mr. smith's lap."),
            vec![
                "a", "dog", ".", "a", "cat", "on", "mr.", "smith", "'s", "lap", "."
            ]
        );
    }
}

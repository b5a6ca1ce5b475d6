//! The caption tokenisation of pycocoevalcap 1.2 (`tokenizer/ptbtokenizer.py`):
//! Stanford CoreNLP 3.4.1 `PTBTokenizer -preserveLines -lowerCase`, then the
//! removal of the tokens in pycocoevalcap's `PUNCTUATIONS` list.
//!
//! This restates the PTB rules that matter for captions, without Java:
//! - lower-case; split on white space; peel opening quotes and brackets off
//!   the front and closing punctuation off the back of each chunk;
//! - brackets become `-lrb-` `-rrb-` `-lsb-` `-rsb-` `-lcb-` `-rcb-`. They are
//!   lower case because of `-lowerCase`, so pycocoevalcap's filter (which lists
//!   `-LRB-` in upper case) keeps them, and so do we;
//! - clitics split off (`'s 're 'll 'd 've 'm n't`), `cannot`/`gonna`/`gotta`/
//!   `wanna`/`gimme`/`lemme` split, `'tis`/`'twas` -> `'t is`;
//! - `$ # % ~ ^ _ *` are tokens of their own; `&`, `/` and `@` stay inside words;
//!   commas and colons between digits stay (`1,000`, `3:30`);
//! - a final period splits off unless the word is an abbreviation with inner
//!   periods (`u.s.`, `p.m.`) or a known title (`mr.`); runs of `?`/`!` are one
//!   token.
//!
//! Checked token for token against the real PTBTokenizer on
//! `tests/fixtures/eval/caption_fixture.json`; the known residuals are listed
//! in docs/evaluation.md.

use alloc::string::String;
use alloc::vec::Vec;

/// pycocoevalcap's `PUNCTUATIONS`: tokens removed after tokenisation.
const PUNCTUATIONS: &[&str] = &[
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
    "...", ";",
];

/// Titles and abbreviations PTB keeps with their period.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "gen", "rep", "sen", "gov", "lt", "col",
    "capt", "sgt", "vs", "etc", "inc", "co", "corp", "ltd", "no", "jan", "feb", "mar", "apr",
    "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "ave", "blvd",
];

/// Tokenises one caption as pycocoevalcap does and joins the kept tokens
/// with single spaces (the string its scorers split).
pub fn ptb_tokenize(caption: &str) -> String {
    let lower = caption.replace('\n', " ").to_lowercase();
    let mut kept: Vec<String> = Vec::new();
    for chunk in lower.split_whitespace() {
        for tok in split_chunk(chunk) {
            if !PUNCTUATIONS.contains(&tok.as_str()) {
                kept.push(tok);
            }
        }
    }
    kept.join(" ")
}

/// PTB tokens of one white-space separated chunk (before filtering).
pub fn split_chunk(chunk: &str) -> Vec<String> {
    let mut head = Vec::new();
    let mut tail = Vec::new();
    let mut word = chunk;
    // Opening punctuation.
    while let Some(c) = word.chars().next() {
        let tok = match c {
            '"' => "``",
            '(' => "-lrb-",
            '[' => "-lsb-",
            '{' => "-lcb-",
            '`' => "`",
            '$' | '#' | '~' | '^' | '_' | '*' | '%' => &word[..c.len_utf8()],
            '\'' if !is_clitic_start(word) && word.len() > 1 => "`",
            '-' if word.len() > 1 && !word[1..].starts_with(|d: char| d.is_ascii_digit()) => {
                let run = word.len() - word.trim_start_matches('-').len();
                head.push(String::from(if run >= 2 { "--" } else { "-" }));
                word = &word[run..];
                continue;
            }
            _ => break,
        };
        head.push(String::from(tok));
        word = &word[c.len_utf8()..];
    }
    // Closing punctuation, collected right to left.
    while let Some(c) = word.chars().next_back() {
        let end = word.len() - c.len_utf8();
        match c {
            '"' => tail.push(String::from("''")),
            ')' => tail.push(String::from("-rrb-")),
            ']' => tail.push(String::from("-rsb-")),
            '}' => tail.push(String::from("-rcb-")),
            ',' | ';' | ':' | '%' | '$' | '#' | '~' | '^' | '_' | '*' => {
                tail.push(String::from(&word[end..]))
            }
            '\'' => tail.push(String::from("'")),
            '?' | '!' => {
                let run = word.len() - word.trim_end_matches(['?', '!']).len();
                tail.push(String::from(&word[word.len() - run..]));
                word = &word[..word.len() - run];
                continue;
            }
            '.' => {
                let run = word.len() - word.trim_end_matches('.').len();
                let stem = &word[..word.len() - run];
                // An abbreviation keeps one period; the rest are punctuation.
                let keep = usize::from(keeps_period(stem));
                push_dots(&mut tail, run - keep);
                word = &word[..stem.len() + keep];
                if keep == 1 {
                    break;
                }
                continue;
            }
            '-' if end > 0 => {
                let run = word.len() - word.trim_end_matches('-').len();
                tail.push(String::from(if run >= 2 { "--" } else { "-" }));
                word = &word[..word.len() - run];
                continue;
            }
            _ => break,
        }
        word = &word[..end];
    }
    let mut out = head;
    if !word.is_empty() {
        out.extend(split_word(word));
    }
    out.extend(tail.into_iter().rev());
    out
}

/// A run of periods: three or more are one token, fewer are one each.
fn push_dots(tail: &mut Vec<String>, run: usize) {
    if run >= 3 {
        tail.push(".".repeat(run));
    } else {
        for _ in 0..run {
            tail.push(String::from("."));
        }
    }
}

/// A chunk starting with an apostrophe that PTB keeps as a clitic token.
fn is_clitic_start(word: &str) -> bool {
    let core = word.trim_end_matches(|c: char| !c.is_alphanumeric());
    ["'s", "'re", "'ll", "'d", "'ve", "'m", "'tis", "'twas"].contains(&core)
}

/// Whether PTB keeps a final period on `stem` (`u.s.`, `p.m.`, `mr.`).
fn keeps_period(stem: &str) -> bool {
    let inner_periods = stem.contains('.')
        && stem
            .split('.')
            .all(|part| part.chars().count() <= 2 && part.chars().all(char::is_alphabetic));
    inner_periods || ABBREVIATIONS.contains(&stem)
}

/// Splits contractions and clitics off a word without outer punctuation.
fn split_word(word: &str) -> Vec<String> {
    const WHOLE: &[(&str, &str)] = &[
        ("cannot", "can"),
        ("gonna", "gon"),
        ("gotta", "got"),
        ("wanna", "wan"),
        ("gimme", "gim"),
        ("lemme", "lem"),
        ("'tis", "'t"),
        ("'twas", "'t"),
    ];
    for (w, head) in WHOLE {
        if word == *w {
            return alloc::vec![String::from(*head), String::from(&w[head.len()..])];
        }
    }
    if let Some(stem) = word.strip_suffix("n't").filter(|s| !s.is_empty()) {
        return alloc::vec![String::from(stem), String::from("n't")];
    }
    for clitic in ["'s", "'re", "'ll", "'d", "'ve", "'m", "'n"] {
        let stem = word.strip_suffix(clitic);
        if let Some(stem) =
            stem.filter(|s| s.chars().next_back().is_some_and(char::is_alphanumeric))
        {
            return alloc::vec![String::from(stem), String::from(clitic)];
        }
    }
    // A time glued to am/pm: "5:00pm" -> "5:00 pm".
    for suffix in ["am", "pm"] {
        let is_time = |t: &&str| {
            t.starts_with(|c: char| c.is_ascii_digit())
                && t.chars()
                    .all(|c| c.is_ascii_digit() || c == ':' || c == '.')
        };
        if let Some(time) = word.strip_suffix(suffix).filter(is_time) {
            return alloc::vec![String::from(time), String::from(suffix)];
        }
    }
    split_inner(word)
}

/// Commas and semicolons inside a word split it unless between digits;
/// `%` splits off a number.
fn split_inner(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let digits_around = i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit());
        if (c == ',' || c == ';' || c == '%' || (c == ':' && !digits_around))
            && !(c == ',' && digits_around)
        {
            if !cur.is_empty() {
                out.push(core::mem::take(&mut cur));
            }
            out.push(String::from(c));
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::ptb_tokenize;

    #[test]
    fn probes_from_corenlp_3_4_1() {
        // Outputs of the real PTBTokenizer, with pycocoevalcap's filter applied.
        for (text, want) in [
            (
                "A man's dog, \"ok\" (yes) can't go... it.",
                "a man 's dog ok -lrb- yes -rrb- ca n't go it",
            ),
            (
                "I cannot believe it's gonna rain.",
                "i can not believe it 's gon na rain",
            ),
            (
                "A 1,000-pound bear at 3:30 p.m. costs $5.50 & more/less * stars.",
                "a 1,000-pound bear at 3:30 p.m. costs $ 5.50 & more/less * stars",
            ),
            (
                "A T-shirt, e-mail, U.S. flag and Mr. Smith's cat.",
                "a t-shirt e-mail u.s. flag and mr. smith 's cat",
            ),
            (
                "Two dogs ... playing; one dog.. jumps.",
                "two dogs playing one dog jumps",
            ),
            (
                "She doesn't know; they're here, we'll see, I'd go.",
                "she does n't know they 're here we 'll see i 'd go",
            ),
            (
                "He said 'hi' -- wow - nice!? [left] {right}",
                "he said hi wow nice !? -lsb- left -rsb- -lcb- right -rcb-",
            ),
            (
                "50% off #1 ~tilde^ _under_",
                "50 % off # 1 ~ tilde ^ _ under _",
            ),
        ] {
            assert_eq!(ptb_tokenize(text), want, "{text}");
        }
    }
}

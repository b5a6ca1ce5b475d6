//! Pattern 2.6's English `singularize` (CLiPS Pattern, `pattern/text/en/inflect.py`,
//! tag 2.6; BSD-3-Clause; its rules come from Bermi Ferrer's Inflector, MIT-style),
//! as CHAIR's reference `chair.py` used it in 2019.
//!
//! The word lists are copied as Pattern 2.6 spells them, *including* its missing
//! commas: `"wildebeest" "carp"`, `"water" "cheese"` and `"zombie" "bogie"` are
//! each one concatenated string there, which is why 2.6 singularises `zombies`
//! to `zombie` while 3.6 leaves it alone. The regular-expression rules are
//! restated as suffix rules with an optional class for the character before the
//! suffix (every rule is anchored at the end of the word except `^(ox)en`).
//! `tests/tests/eval_chair.rs` checks every vector of
//! `data/chair/chair_singularize_vectors.tsv`.

use alloc::string::String;

/// Prepositions that mark compounds such as "mothers-in-law".
const PLURAL_PREPOSITIONS: &[&str] = &[
    "about", "before", "during", "of", "till", "above", "behind", "except", "off", "to", "across",
    "below", "for", "on", "under", "after", "beneath", "from", "onto", "until", "among", "beside",
    "in", "out", "unto", "around", "besides", "into", "over", "upon", "at", "between", "near",
    "since", "with", "athwart", "betwixt", "beyond", "but", "by",
];

/// `singular_uninflected` of Pattern 2.6 (note `"wildebeestcarp"`).
const UNINFLECTED: &[&str] = &[
    "bison",
    "debris",
    "headquarters",
    "pincers",
    "trout",
    "bream",
    "diabetes",
    "herpes",
    "pliers",
    "tuna",
    "breeches",
    "djinn",
    "high-jinks",
    "proceedings",
    "whiting",
    "britches",
    "eland",
    "homework",
    "rabies",
    "wildebeestcarp",
    "elk",
    "innings",
    "salmon",
    "chassis",
    "flounder",
    "jackanapes",
    "scissors",
    "christmas",
    "gallows",
    "mackerel",
    "series",
    "clippers",
    "georgia",
    "measles",
    "shears",
    "cod",
    "graffiti",
    "mews",
    "species",
    "contretemps",
    "mumps",
    "swine",
    "corps",
    "news",
    "swiss",
];

/// `singular_uncountable` of Pattern 2.6 (note `"watercheese"`).
const UNCOUNTABLE: &[&str] = &[
    "advice",
    "equipment",
    "happiness",
    "luggage",
    "news",
    "software",
    "bread",
    "fruit",
    "information",
    "mathematics",
    "progress",
    "understanding",
    "butter",
    "furniture",
    "ketchup",
    "mayonnaise",
    "research",
    "watercheese",
    "garbage",
    "knowledge",
    "meat",
    "rice",
    "electricity",
    "gravel",
    "love",
    "mustard",
    "sand",
];

/// `singular_ie` of Pattern 2.6. `^pie` and `^tie` are literal strings there
/// (used with `endswith`), so they never match; `"zombiebogie"` is one entry.
const IE: &[&str] = &[
    "alergie",
    "cutie",
    "hoagie",
    "newbie",
    "softie",
    "veggie",
    "auntie",
    "doggie",
    "hottie",
    "nightie",
    "sortie",
    "weenie",
    "beanie",
    "eyrie",
    "indie",
    "oldie",
    "stoolie",
    "yuppie",
    "birdie",
    "freebie",
    "junkie",
    "^pie",
    "sweetie",
    "zombiebogie",
    "goonie",
    "laddie",
    "pixie",
    "techie",
    "bombie",
    "groupie",
    "laramie",
    "quickie",
    "^tie",
    "collie",
    "hankie",
    "lingerie",
    "reverie",
    "toughie",
    "cookie",
    "hippie",
    "meanie",
    "rookie",
    "valkyrie",
];

/// `singular_irregular`: no key is a suffix of another, so order is irrelevant.
const IRREGULAR: &[(&str, &str)] = &[
    ("atlantes", "atlas"),
    ("atlases", "atlas"),
    ("axes", "axe"),
    ("beeves", "beef"),
    ("brethren", "brother"),
    ("children", "child"),
    ("corpora", "corpus"),
    ("corpuses", "corpus"),
    ("ephemerides", "ephemeris"),
    ("feet", "foot"),
    ("ganglia", "ganglion"),
    ("geese", "goose"),
    ("genera", "genus"),
    ("genii", "genie"),
    ("graffiti", "graffito"),
    ("helves", "helve"),
    ("kine", "cow"),
    ("leaves", "leaf"),
    ("loaves", "loaf"),
    ("men", "man"),
    ("mongooses", "mongoose"),
    ("monies", "money"),
    ("moves", "move"),
    ("mythoi", "mythos"),
    ("numena", "numen"),
    ("occipita", "occiput"),
    ("octopodes", "octopus"),
    ("opera", "opus"),
    ("opuses", "opus"),
    ("our", "my"),
    ("oxen", "ox"),
    ("penes", "penis"),
    ("penises", "penis"),
    ("people", "person"),
    ("sexes", "sex"),
    ("soliloquies", "soliloquy"),
    ("teeth", "tooth"),
    ("testes", "testis"),
    ("trilbys", "trilby"),
    ("turves", "turf"),
    ("zoa", "zoon"),
];

/// The character allowed right before a rule's suffix.
#[derive(Clone, Copy)]
enum Before {
    /// No condition (the suffix may start the word).
    Nothing,
    /// `(.)`: any one character must precede the suffix.
    Any,
    /// `[...]`: one of these characters.
    OneOf(&'static str),
    /// `[^...]`: a character not among these.
    NoneOf(&'static str),
}

/// One `singular_rules` entry: `suffix` (with `before`) becomes `replacement`;
/// the `before` character itself is kept.
struct Rule {
    before: Before,
    suffix: &'static str,
    replacement: &'static str,
}

const fn r(before: Before, suffix: &'static str, replacement: &'static str) -> Rule {
    Rule {
        before,
        suffix,
        replacement,
    }
}

use Before::{Any, NoneOf, Nothing, OneOf};

/// `singular_rules` in order; alternations are expanded into one rule each.
/// `^(ox)en` and `(^analy)ses$` are handled in [`apply_rules`].
const RULES: &[Rule] = &[
    r(Any, "ae", "a"),
    r(Any, "itis", "itis"),
    r(Any, "eaux", "eau"),
    r(Nothing, "quizzes", "quiz"),
    r(Nothing, "matrices", "matrix"),
    r(Nothing, "apices", "apex"),
    r(Nothing, "vertices", "vertex"),
    r(Nothing, "indices", "index"),
    // slot of `(?i)^(ox)en` (see apply_rules)
    r(Nothing, "aliases", "alias"),
    r(Nothing, "statuses", "status"),
    // `([octop|vir])i$`: a character class, not the words "octop" or "vir".
    r(OneOf("octp|vir"), "i", "us"),
    r(Nothing, "crises", "crisis"),
    r(Nothing, "axes", "axis"),
    r(Nothing, "testes", "testis"),
    r(Nothing, "shoes", "shoe"),
    r(Nothing, "oes", "o"),
    r(Nothing, "buses", "bus"),
    r(OneOf("m|l"), "ice", "ouse"),
    r(Nothing, "xes", "x"),
    r(Nothing, "ches", "ch"),
    r(Nothing, "sses", "ss"),
    r(Nothing, "shes", "sh"),
    r(Nothing, "movies", "movie"),
    r(Any, "ombies", "ombie"),
    r(Nothing, "series", "series"),
    r(NoneOf("aeiouy"), "ies", "y"),
    r(Nothing, "quies", "quy"),
    r(OneOf("aeo"), "lves", "lf"),
    r(NoneOf("d"), "eaves", "eaf"),
    r(Nothing, "arves", "arf"),
    r(Nothing, "erves", "erve"),
    r(OneOf("nlw"), "ives", "ife"),
    r(OneOf("lr"), "ves", "f"),
    r(OneOf("aeo"), "ves", "ve"),
    r(Nothing, "sives", "sive"),
    r(Nothing, "tives", "tive"),
    r(Nothing, "hives", "hive"),
    r(NoneOf("f"), "ves", "fe"),
    // slot of `(?i)(^analy)ses$` (see apply_rules)
    // `((a)naly|(b)a|...)ses$` -> '\1\2sis': only the first alternative has a
    // group 2 ("a"), so "...analyses" gains a stray "a" (a Pattern quirk).
    r(Nothing, "analyses", "analyasis"),
    r(Nothing, "bases", "basis"),
    r(Nothing, "diagnoses", "diagnosis"),
    r(Nothing, "parentheses", "parenthesis"),
    r(Nothing, "prognoses", "prognosis"),
    r(Nothing, "synopses", "synopsis"),
    r(Nothing, "theses", "thesis"),
    r(Any, "opses", "opsis"),
    r(Any, "yses", "ysis"),
    r(OneOf("hdronbp"), "oses", "ose"),
    r(Nothing, "closes", "close"),
    r(Nothing, "fructose", "fructose"),
    r(Nothing, "glucose", "glucose"),
    r(Nothing, "galactose", "galactose"),
    r(Nothing, "lactose", "lactose"),
    r(Nothing, "ketose", "ketose"),
    r(Nothing, "maltose", "maltose"),
    r(Nothing, "ribose", "ribose"),
    r(Nothing, "saccharose", "saccharose"),
    r(Nothing, "cellulose", "cellulose"),
    r(Any, "oses", "osis"),
    r(OneOf("ti"), "a", "um"),
    r(Nothing, "news", "news"),
    r(Nothing, "s", ""),
];

/// Pattern 2.6 `singularize(word)` for a lower-case word.
///
/// CHAIR lower-cases captions before singularising, so this function
/// lower-cases its input first; for lower-case input the output equals
/// Pattern's exactly.
pub fn singularize(word: &str) -> String {
    let w = word.to_lowercase();
    // Compounds whose second part is a preposition: "mothers-in-law".
    if let Some((head, rest)) = w.split_once('-') {
        let second = rest.split('-').next().unwrap_or("");
        if PLURAL_PREPOSITIONS.contains(&second) {
            let mut out = singularize(head);
            out.push('-');
            out.push_str(rest);
            return out;
        }
    }
    // dogs' => dog's
    if let Some(stem) = w.strip_suffix('\'') {
        let mut out = singularize(stem);
        out.push_str("'s");
        return out;
    }
    // A word is left alone if it is a suffix of any uninflected/uncountable word.
    if UNINFLECTED
        .iter()
        .chain(UNCOUNTABLE)
        .any(|x| x.ends_with(w.as_str()))
    {
        return w;
    }
    if IE
        .iter()
        .any(|x| w.strip_suffix('s').is_some_and(|s| s.ends_with(x)))
    {
        return w;
    }
    for (plural, singular) in IRREGULAR {
        if let Some(stem) = w.strip_suffix(plural) {
            return join(stem, singular);
        }
    }
    apply_rules(&w)
}

/// The `singular_rules` pass: the first rule that matches decides.
fn apply_rules(w: &str) -> String {
    for (i, rule) in RULES.iter().enumerate() {
        // `^(ox)en` sits after the "indices" rule; it has no end anchor.
        if let Some(rest) = w.strip_prefix("oxen").filter(|_| i == 8) {
            return join("ox", rest);
        }
        // `(^analy)ses$` sits before the `((a)naly|...)ses$` rule.
        if RULES[i].suffix == "analyses" && w == "analyses" {
            return String::from("analysis");
        }
        if let Some(stem) = w
            .strip_suffix(rule.suffix)
            .filter(|s| before_ok(rule.before, s))
        {
            return join(stem, rule.replacement);
        }
    }
    String::from(w)
}

/// Whether the character before the suffix satisfies the rule's class.
fn before_ok(before: Before, stem: &str) -> bool {
    let last = stem.chars().next_back();
    match before {
        Nothing => true,
        // `(.)` matches anything but a newline.
        Any => last.is_some_and(|c| c != '\n'),
        OneOf(set) => last.is_some_and(|c| set.contains(c)),
        NoneOf(set) => last.is_some_and(|c| !set.contains(c) && c != '\n'),
    }
}

fn join(stem: &str, tail: &str) -> String {
    let mut out = String::with_capacity(stem.len() + tail.len());
    out.push_str(stem);
    out.push_str(tail);
    out
}

#[cfg(test)]
mod tests {
    use super::singularize;

    #[test]
    fn chair_relevant_quirks() {
        for (word, want) in [
            ("bus", "bu"),
            ("buses", "bus"),
            ("glass", "glas"),
            ("tennis", "tenni"),
            ("ties", "ty"),
            ("canoes", "cano"),
            ("people", "person"),
            ("women", "woman"),
            ("mice", "mouse"),
            ("knives", "knife"),
            ("is", "is"),
            ("as", "as"),
            ("this", "thi"),
            ("collies", "collies"),
            ("zombies", "zombie"),
            ("mothers-in-law", "mother-in-law"),
            ("dogs'", "dog's"),
            ("oxenford", "oxford"),
            ("analyses", "analysis"),
            ("psychoanalyses", "psychoanalyasis"),
        ] {
            assert_eq!(singularize(word), want, "{word}");
        }
    }
}

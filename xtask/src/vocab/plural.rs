//! A small English pluraliser for object nouns, written for this
//! vocabulary instead of a port of Python `inflect` (which the paper used).
//!
//! Rules, in order (documented in docs/vocabulary.md):
//! 1. A multi-word form pluralises its head: the word before the first
//!    " of " ("pair of scissors" -> "pairs of scissors"), else the last word.
//! 2. Words that are already plural (see [`is_plural_word`]) and
//!    uninflected nouns (sheep, deer, fish, ...) stay as they are.
//! 3. An irregular table, matched on the whole word or as a suffix of a
//!    compound ("pocketknife" -> "pocketknives", "snowman" -> "snowmen").
//! 4. Regular rules: sibilant + "es", consonant + y -> "ies", a short list
//!    of "-o" nouns + "es", "-sis" -> "-ses", otherwise + "s".
//!
//! Singular forms come from WordNet's own morphology (`noun.exc` and the
//! morphy detachment rules), see `mod.rs`.

/// Nouns whose plural is the same word (zero-plural animals, collective
/// and mass nouns that name objects).
const UNINFLECTED: &[&str] = &[
    "sheep",
    "deer",
    "moose",
    "elk",
    "bison",
    "swine",
    "salmon",
    "trout",
    "tuna",
    "cod",
    "shrimp",
    "squid",
    "offspring",
    "chassis",
    "series",
    "species",
    "means",
    "cattle",
    "poultry",
    "luggage",
    "baggage",
    "equipment",
    "furniture",
    "jewelry",
    "jewellery",
    "clothing",
    "footwear",
    "headwear",
    "cutlery",
    "crockery",
    "broccoli",
    "sushi",
    "butter",
];

/// Suffixes of compounds that keep the plural of their head word unchanged
/// ("goldfish", "starfish", "aircraft", "silverware").
const UNINFLECTED_SUFFIX: &[&str] = &["fish", "sheep", "deer", "craft", "ware"];

/// Irregular plurals (singular, plural). The words in [`SUFFIX_IRREGULAR`]
/// also match as the end of a compound ("pocketknife" -> "pocketknives").
const IRREGULAR: &[(&str, &str)] = &[
    ("person", "people"),
    ("child", "children"),
    ("man", "men"),
    ("woman", "women"),
    ("mouse", "mice"),
    ("louse", "lice"),
    ("goose", "geese"),
    ("tooth", "teeth"),
    ("foot", "feet"),
    ("ox", "oxen"),
    ("die", "dice"),
    ("knife", "knives"),
    ("wife", "wives"),
    ("life", "lives"),
    ("leaf", "leaves"),
    ("loaf", "loaves"),
    ("calf", "calves"),
    ("half", "halves"),
    ("shelf", "shelves"),
    ("wolf", "wolves"),
    ("scarf", "scarves"),
    ("thief", "thieves"),
    ("sheaf", "sheaves"),
    ("elf", "elves"),
    ("hoof", "hooves"),
    ("axis", "axes"),
    ("quiz", "quizzes"),
    ("cactus", "cacti"),
    ("fungus", "fungi"),
    ("bacterium", "bacteria"),
    ("criterion", "criteria"),
    ("phenomenon", "phenomena"),
    ("index", "indices"),
    ("appendix", "appendices"),
    ("matrix", "matrices"),
];

/// Words ending in "man" that are not compounds of "man".
const MAN_REGULAR: &[&str] = &[
    "human", "ottoman", "caiman", "cayman", "shaman", "talisman", "german", "walkman", "doberman",
    "pullman", "desman", "dolman", "cyclamen",
];

/// Irregular singulars that also inflect as the head of a closed compound
/// ("dormouse", "bookshelf", "headscarf"); "life" and "louse" do not
/// ("wildlife", "blouse").
const SUFFIX_IRREGULAR: &[&str] = &[
    "knife", "scarf", "mouse", "shelf", "wolf", "leaf", "loaf", "child", "tooth", "goose", "wife",
    "foot", "calf", "half",
];

/// Compounds that look like they end in an irregular word but do not.
const SUFFIX_BLOCKED: &[&str] = &["mongoose"];

/// "-o" nouns that take "-es" (everything else ending in "o" takes "-s").
const O_ES: &[&str] = &[
    "potato", "tomato", "hero", "echo", "veto", "torpedo", "mosquito", "domino", "volcano", "mango",
];

/// Plural-only nouns (pluralia tantum): never pluralised again, and no
/// singular form is made for them ("shorts" must not yield "short",
/// "glasses" must not yield "glass"). Matched as a suffix: "sunglasses".
pub const PLURALIA_TANTUM: &[&str] = &[
    "scissors",
    "shears",
    "clippers",
    "pliers",
    "tongs",
    "tweezers",
    "pincers",
    "glasses",
    "spectacles",
    "goggles",
    "binoculars",
    "trousers",
    "pants",
    "jeans",
    "shorts",
    "tights",
    "leggings",
    "overalls",
    "pajamas",
    "pyjamas",
    "knickers",
    "briefs",
    "boxers",
    "panties",
    "suspenders",
    "braces",
    "clothes",
    "grits",
    "oats",
    "suds",
    "bellows",
    "headquarters",
    "dregs",
    "jodhpurs",
    "slacks",
    "chaps",
    "drawers",
    "underdrawers",
    "underpants",
    "sweatpants",
    "dungarees",
    "blinders",
    "blinkers",
    "earmuffs",
    "handcuffs",
    "cornflakes",
    "nachos",
];

/// Words ending in "s" that are singular nouns even though WordNet's morphy
/// rules would strip the "s" to another noun ("gas" -> "ga").
const SINGULAR_S: &[&str] = &[
    "gas",
    "lens",
    "bus",
    "atlas",
    "canvas",
    "iris",
    "lotus",
    "christmas",
];

/// True when a word is a plural form: a plurale tantum, or a word that
/// WordNet's noun morphology reduces to a different noun (`has_singular`:
/// "skis" -> "ski", "mice" -> "mouse"); words ending in "ss" or "us" and
/// the [`SINGULAR_S`] list are singular.
pub fn is_plural_word(word: &str, has_singular: &dyn Fn(&str) -> bool) -> bool {
    if PLURALIA_TANTUM.iter().any(|p| word.ends_with(p)) {
        return true;
    }
    if SINGULAR_S.contains(&word) {
        return false;
    }
    if word.ends_with('s') {
        !word.ends_with("ss") && !word.ends_with("us") && has_singular(word)
    } else {
        // Irregular plurals from noun.exc ("mice", "geese") and "-men".
        has_singular(word)
    }
}

/// True when `word` is a plurale tantum (no singular is generated).
pub fn is_plurale_tantum(word: &str) -> bool {
    PLURALIA_TANTUM.iter().any(|p| word.ends_with(p))
}

/// The plural of a (lower-case) form, following the module's rules.
/// `is_plural` says whether a single word is already plural.
pub fn plural(form: &str, is_plural: &dyn Fn(&str) -> bool) -> String {
    let (head, tail) = match form.find(" of ") {
        Some(i) => (&form[..i], &form[i..]),
        None => (form, ""),
    };
    let (prefix, last) = match head.rfind([' ', '-']) {
        Some(i) => (&head[..=i], &head[i + 1..]),
        None => ("", head),
    };
    format!("{prefix}{}{tail}", plural_word(last, is_plural))
}

/// The plural of one lower-case word.
pub fn plural_word(word: &str, is_plural: &dyn Fn(&str) -> bool) -> String {
    if word.is_empty()
        || is_plural(word)
        || UNINFLECTED.contains(&word)
        || UNINFLECTED_SUFFIX.iter().any(|u| word.ends_with(u))
    {
        return word.to_string();
    }
    if let Some(p) = irregular(word) {
        return p;
    }
    if word.ends_with("man") && !MAN_REGULAR.iter().any(|m| word.ends_with(m)) {
        return format!("{}men", &word[..word.len() - 3]);
    }
    regular(word)
}

fn irregular(word: &str) -> Option<String> {
    if SUFFIX_BLOCKED.iter().any(|b| word.ends_with(b)) {
        return None;
    }
    IRREGULAR
        .iter()
        // "man" is handled by its own rule with the MAN_REGULAR list.
        .filter(|(s, _)| *s != "man" && *s != "woman")
        .find(|(s, _)| word == *s || (SUFFIX_IRREGULAR.contains(s) && word.ends_with(s)))
        .map(|(s, p)| format!("{}{}", &word[..word.len() - s.len()], p))
}

fn regular(word: &str) -> String {
    // "-sis" first: "analysis" -> "analyses", not the sibilant rule.
    if let Some(stem) = word.strip_suffix("sis") {
        return format!("{stem}ses");
    }
    // "stomach", "monarch": a hard "ch" takes a plain "s".
    if ["s", "x", "z", "sh", "ch"]
        .iter()
        .any(|e| word.ends_with(e))
        && !word.ends_with("stomach")
        && !word.ends_with("monarch")
    {
        return format!("{word}es");
    }
    let before_last = word.chars().rev().nth(1);
    let consonant_before = !matches!(before_last, Some('a' | 'e' | 'i' | 'o' | 'u'));
    if let Some(stem) = word.strip_suffix('y').filter(|_| consonant_before) {
        return format!("{stem}ies");
    }
    if O_ES.iter().any(|o| word.ends_with(o)) {
        return format!("{word}es");
    }
    format!("{word}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: &str) -> bool {
        false
    }

    #[test]
    fn rules() {
        let cases = [
            ("dog", "dogs"),
            ("bus", "buses"),
            ("box", "boxes"),
            ("bench", "benches"),
            ("dish", "dishes"),
            ("puppy", "puppies"),
            ("toy", "toys"),
            ("knife", "knives"),
            ("pocketknife", "pocketknives"),
            ("roof", "roofs"),
            ("mouse", "mice"),
            ("person", "people"),
            ("snowman", "snowmen"),
            ("ottoman", "ottomans"),
            ("sheep", "sheep"),
            ("goldfish", "goldfish"),
            ("potato", "potatoes"),
            ("piano", "pianos"),
            ("mongoose", "mongooses"),
            ("blouse", "blouses"),
            ("analysis", "analyses"),
            ("stomach", "stomachs"),
            ("wildlife", "wildlifes"),
            ("bookshelf", "bookshelves"),
            ("teddy bear", "teddy bears"),
            ("pair of scissors", "pairs of scissors"),
            ("bow-tie", "bow-ties"),
            ("scissors", "scissors"),
            ("sunglasses", "sunglasses"),
        ];
        for (s, p) in cases {
            assert_eq!(plural(s, &|w| is_plural_word(w, &never)), p, "{s}");
        }
    }

    #[test]
    fn plural_detection_uses_wordnet_singulars() {
        let has = |w: &str| w == "skis" || w == "gas";
        assert!(is_plural_word("skis", &has));
        assert!(!is_plural_word("gas", &has), "gas is on the singular list");
        assert!(!is_plural_word("dress", &has));
        assert!(is_plural_word("tongs", &never), "plurale tantum");
    }
}

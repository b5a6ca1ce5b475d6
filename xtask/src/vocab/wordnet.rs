//! A reader for the WordNet 3.0 database files (Princeton `wndb(5WN)`
//! format, as Debian `wordnet-base` ships them in `/usr/share/wordnet`).
//!
//! Mirrors the parts of NLTK's `WordNetCorpusReader` this project needs:
//! `synset("dog.n.01")` (the N-th sense of a lemma in `index.POS`),
//! `synset.lemma_names()`, and `synsets(word)` with NLTK's `morphy`
//! (exception lists, then one round of detachment rules).

use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A WordNet part of speech, in NLTK's `POS_LIST` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pos {
    Noun,
    Verb,
    Adj,
    Adv,
}

impl Pos {
    /// Every part of speech, in the order `wordnet.synsets(word)` visits them.
    pub const ALL: [Pos; 4] = [Pos::Noun, Pos::Verb, Pos::Adj, Pos::Adv];

    fn file_suffix(self) -> &'static str {
        match self {
            Pos::Noun => "noun",
            Pos::Verb => "verb",
            Pos::Adj => "adj",
            Pos::Adv => "adv",
        }
    }

    /// NLTK's `MORPHOLOGICAL_SUBSTITUTIONS` (from WordNet's morphy(7WN)).
    fn substitutions(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Pos::Noun => &[
                ("s", ""),
                ("ses", "s"),
                ("ves", "f"),
                ("xes", "x"),
                ("zes", "z"),
                ("ches", "ch"),
                ("shes", "sh"),
                ("men", "man"),
                ("ies", "y"),
            ],
            Pos::Verb => &[
                ("s", ""),
                ("ies", "y"),
                ("es", "e"),
                ("es", ""),
                ("ed", "e"),
                ("ed", ""),
                ("ing", "e"),
                ("ing", ""),
            ],
            Pos::Adj => &[("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
            Pos::Adv => &[],
        }
    }
}

/// A synset: its part of speech and byte offset in `data.POS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SynsetId {
    pub pos: Pos,
    pub offset: u64,
}

/// One POS of the database: the lemma index and the raw data file.
struct PosFiles {
    /// lemma (lower case, `_` for spaces) -> synset offsets in sense order.
    index: HashMap<String, Vec<u64>>,
    /// `data.POS` bytes; a synset's line starts at its offset.
    data: Vec<u8>,
    /// `POS.exc`: inflected form -> base forms.
    exceptions: HashMap<String, Vec<String>>,
}

/// The whole WordNet 3.0 database, loaded from one directory.
pub struct WordNet {
    files: BTreeMap<Pos, PosFiles>,
}

/// The fields of a `data.POS` line this project uses.
#[derive(Clone, Debug)]
pub struct Synset {
    /// Lemma names as written in the file (case kept, `_` for spaces,
    /// adjective markers such as `(a)` removed), in file order.
    pub lemmas: Vec<String>,
    /// The gloss (definition and examples) after the `|`.
    pub gloss: String,
}

impl WordNet {
    /// Loads `index.*`, `data.*` and `*.exc` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut files = BTreeMap::new();
        for pos in Pos::ALL {
            let name = pos.file_suffix();
            let index_path = dir.join(format!("index.{name}"));
            let index_text = std::fs::read_to_string(&index_path)
                .with_context(|| format!("reading {}", index_path.display()))?;
            let index = parse_index(&index_text)
                .with_context(|| format!("parsing {}", index_path.display()))?;
            let data_path = dir.join(format!("data.{name}"));
            let data = std::fs::read(&data_path)
                .with_context(|| format!("reading {}", data_path.display()))?;
            let exc_path = dir.join(format!("{name}.exc"));
            let exc_text = std::fs::read_to_string(&exc_path)
                .with_context(|| format!("reading {}", exc_path.display()))?;
            let exceptions = parse_exceptions(&exc_text);
            files.insert(
                pos,
                PosFiles {
                    index,
                    data,
                    exceptions,
                },
            );
        }
        Ok(Self { files })
    }

    fn pos(&self, pos: Pos) -> &PosFiles {
        // `load` fills every POS, so the map always has the key.
        &self.files[&pos]
    }

    /// Resolves an NLTK synset name such as `"dog.n.01"`: the N-th sense of
    /// the lemma in `index.POS`, as `WordNetCorpusReader.synset` does.
    pub fn synset_by_name(&self, name: &str) -> Result<SynsetId> {
        let mut parts = name.rsplitn(3, '.');
        let (Some(num), Some(letter), Some(lemma)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("synset name {name:?} is not of the form lemma.pos.NN");
        };
        let pos = match letter {
            "n" => Pos::Noun,
            "v" => Pos::Verb,
            "a" | "s" => Pos::Adj,
            "r" => Pos::Adv,
            other => bail!("synset name {name:?}: unknown part of speech {other:?}"),
        };
        let n: usize = num
            .parse()
            .with_context(|| format!("synset name {name:?}: sense number {num:?}"))?;
        let senses = self.pos(pos).index.get(&key(lemma)).with_context(|| {
            format!(
                "synset name {name:?}: lemma {lemma:?} is not in index.{}",
                pos.file_suffix()
            )
        })?;
        let Some(offset) = n.checked_sub(1).and_then(|i| senses.get(i)) else {
            bail!(
                "synset name {name:?}: lemma {lemma:?} has {} senses, not {n}",
                senses.len()
            );
        };
        Ok(SynsetId {
            pos,
            offset: *offset,
        })
    }

    /// Reads the synset at `id` from `data.POS`.
    pub fn synset(&self, id: SynsetId) -> Result<Synset> {
        let data = &self.pos(id.pos).data;
        let start = usize::try_from(id.offset).context("synset offset overflows usize")?;
        let Some(rest) = data.get(start..) else {
            bail!(
                "synset offset {} is past the end of data.{}",
                id.offset,
                id.pos.file_suffix()
            );
        };
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = std::str::from_utf8(&rest[..end]).with_context(|| {
            format!(
                "data.{} line at {} is not UTF-8",
                id.pos.file_suffix(),
                id.offset
            )
        })?;
        parse_data_line(line, id.offset)
            .with_context(|| format!("data.{} line at offset {}", id.pos.file_suffix(), id.offset))
    }

    /// NLTK `_morphy(form, pos)`: base forms of `form` that are in the index.
    pub fn morphy(&self, form: &str, pos: Pos) -> Vec<String> {
        let files = self.pos(pos);
        let form = key(form);
        let candidates: Vec<String> = match files.exceptions.get(&form) {
            Some(bases) => std::iter::once(form.clone())
                .chain(bases.iter().cloned())
                .collect(),
            None => std::iter::once(form.clone())
                .chain(
                    pos.substitutions()
                        .iter()
                        .filter(|(old, _)| form.ends_with(old))
                        .map(|(old, new)| format!("{}{}", &form[..form.len() - old.len()], new)),
                )
                .collect(),
        };
        let mut out: Vec<String> = Vec::new();
        for c in candidates {
            if files.index.contains_key(&c) && !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// NLTK `wordnet.synsets(word)` with every POS (or only `pos`): each
    /// morphy base form's senses, in index order.
    pub fn synsets(&self, word: &str, pos: Option<Pos>) -> Vec<SynsetId> {
        let list: Vec<Pos> = match pos {
            Some(p) => vec![p],
            None => Pos::ALL.to_vec(),
        };
        let mut out = Vec::new();
        for p in list {
            for base in self.morphy(word, p) {
                if let Some(offsets) = self.pos(p).index.get(&base) {
                    out.extend(offsets.iter().map(|&offset| SynsetId { pos: p, offset }));
                }
            }
        }
        out
    }
}

/// Index key: lower case, spaces as `_` (how `index.POS` spells lemmas).
pub fn key(word: &str) -> String {
    word.trim().to_lowercase().replace(' ', "_")
}

fn parse_index(text: &str) -> Result<HashMap<String, Vec<u64>>> {
    let mut map = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with(' ') || line.is_empty() {
            continue; // licence header
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        // lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt offsets...
        let parse_count = |i: usize| -> Result<usize> {
            let f = fields
                .get(i)
                .with_context(|| format!("line {}: too few fields", n + 1))?;
            f.parse()
                .with_context(|| format!("line {}: bad count {f:?}", n + 1))
        };
        let synset_cnt = parse_count(2)?;
        let p_cnt = parse_count(3)?;
        let first = 4 + p_cnt + 2;
        let offsets = fields
            .get(first..first + synset_cnt)
            .with_context(|| format!("line {}: expected {synset_cnt} offsets", n + 1))?
            .iter()
            .map(|f| {
                f.parse::<u64>()
                    .with_context(|| format!("line {}: bad offset {f:?}", n + 1))
            })
            .collect::<Result<Vec<u64>>>()?;
        map.insert(fields[0].to_string(), offsets);
    }
    Ok(map)
}

fn parse_exceptions(text: &str) -> HashMap<String, Vec<String>> {
    let mut map = HashMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let Some(inflected) = words.next() {
            map.insert(inflected.to_string(), words.map(str::to_string).collect());
        }
    }
    map
}

fn parse_data_line(line: &str, offset: u64) -> Result<Synset> {
    let (head, gloss) = line.split_once('|').unwrap_or((line, ""));
    let fields: Vec<&str> = head.split_whitespace().collect();
    let own: u64 = fields
        .first()
        .and_then(|f| f.parse().ok())
        .context("missing synset offset")?;
    if own != offset {
        bail!("line starts with offset {own}, expected {offset}");
    }
    let w_cnt = fields
        .get(3)
        .and_then(|f| usize::from_str_radix(f, 16).ok())
        .context("missing or bad w_cnt")?;
    let mut lemmas = Vec::with_capacity(w_cnt);
    for i in 0..w_cnt {
        let word = fields.get(4 + 2 * i).context("fewer words than w_cnt")?;
        // Adjectives may carry a syntactic marker: "galore(ip)".
        let word = match word.find('(') {
            Some(p) if word.ends_with(')') => &word[..p],
            _ => word,
        };
        lemmas.push(word.to_string());
    }
    Ok(Synset {
        lemmas,
        gloss: gloss.trim().to_string(),
    })
}

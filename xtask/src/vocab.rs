//! `cargo xtask vocab`: generates the entity vocabulary E' of method.md
//! section 2 from the COCO and LVIS tables in `data/` and WordNet 3.0, and
//! writes `reward-core/src/vocab/table_{fisao,paper}.rs` plus the generated
//! section of `docs/vocabulary.md`. `--check` regenerates in memory and
//! fails when a committed file differs.

mod emit;
mod expand;
mod plural;
mod sources;
mod wordnet;

use crate::setup;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// Where Debian's `wordnet-base` puts the database.
pub const WORDNET_DIR: &str = "/usr/share/wordnet";

/// Entities whose forms the docs show as examples.
const EXAMPLES: &[&str] = &[
    "person",
    "chair",
    "cat",
    "dog",
    "hot dog",
    "teddy bear",
    "taco",
    "can",
    "glass",
    "mouse",
    "couch",
    "tv",
    "baseball bat",
    "bat (animal)",
    "pony",
];

/// Entry point of `cargo xtask vocab [--check]`.
pub fn run(args: &[String]) -> Result<()> {
    let mut check = false;
    for arg in args {
        match arg.as_str() {
            "--check" => check = true,
            other => bail!("cargo xtask vocab: unknown option {other:?} (expected --check)"),
        }
    }
    let root = setup::workspace_root();
    let outputs = generate(&root, Path::new(WORDNET_DIR))?;
    let mut stale = Vec::new();
    for (path, text) in &outputs {
        let old = std::fs::read_to_string(path).unwrap_or_default();
        if old == *text {
            continue;
        }
        if check {
            stale.push(path.display().to_string());
        } else {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("xtask: wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        bail!(
            "the committed vocabulary is stale; run `cargo xtask vocab` and commit:\n  {}",
            stale.join("\n  ")
        );
    }
    if check {
        eprintln!("xtask: vocabulary tables are up to date");
    }
    Ok(())
}

/// True when WordNet 3.0 is installed where the generator looks for it.
pub fn wordnet_installed() -> bool {
    Path::new(WORDNET_DIR).join("data.noun").is_file()
}

/// Builds every generated file in memory: (path, contents).
pub fn generate(root: &Path, wordnet_dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let data = root.join("data");
    let wn = wordnet::WordNet::load(wordnet_dir).with_context(|| {
        format!(
            "loading WordNet 3.0 from {} (apt-get install wordnet-base)",
            wordnet_dir.display()
        )
    })?;
    let exclusions = sources::exclusions(&data)?;
    let assignments = sources::assignments(&data)?;
    let reserved: Vec<&str> = assignments.iter().map(|a| a.form.as_str()).collect();
    let entities = sources::load(&data, &reserved)?;
    let fisao = expand::fisao(&entities, &wn, &exclusions, &assignments)?;
    let paper = expand::paper(&entities, &wn)?;

    let vectors_path = data.join("entity_words_expansion_vectors.tsv");
    let vectors = std::fs::read_to_string(&vectors_path)
        .with_context(|| format!("reading {}", vectors_path.display()))?;
    let plural_checks = plural_checks(&wn, &vectors)?;
    let nltk_agree = nltk_agreement(&wn, &vectors)?;
    let original_words = entities
        .iter()
        .map(|e| expand::original_words(e).len())
        .sum();
    let kept_examples = examples(&entities, &fisao, &paper);
    let section = emit::docs_section(&emit::Report {
        entities: &entities,
        fisao: &fisao,
        paper: &paper,
        original_words,
        plural_checks: &plural_checks,
        nltk_agree,
        kept_examples: &kept_examples,
    });
    let doc_path = root.join("docs/vocabulary.md");
    let doc = std::fs::read_to_string(&doc_path)
        .with_context(|| format!("reading {}", doc_path.display()))?;
    let doc = emit::splice_docs(&doc, &section).with_context(|| {
        format!(
            "{} lacks the generated-section markers {:?} ... {:?}",
            doc_path.display(),
            emit::DOC_BEGIN,
            emit::DOC_END
        )
    })?;
    let tables = root.join("reward-core/src/vocab");
    Ok(vec![
        (
            tables.join("table_entities.rs"),
            emit::entity_table(&entities),
        ),
        (
            tables.join("table_fisao.rs"),
            emit::forms_table("fisao", &fisao),
        ),
        (
            tables.join("table_paper.rs"),
            emit::forms_table("paper", &paper),
        ),
        (doc_path, doc),
    ])
}

/// Rows of the test-vector file: word, inflect plural, NLTK noun lemmas,
/// NLTK all-POS lemmas.
fn vector_rows(text: &str) -> Result<Vec<[&str; 4]>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let [word, _source, plural, noun, all] = f[..] else {
            bail!(
                "entity_words_expansion_vectors.tsv:{}: expected 5 columns, found {}",
                n + 1,
                f.len()
            );
        };
        out.push([word, plural, noun, all]);
    }
    Ok(out)
}

/// (word, inflect plural, our plural) for every name without a qualifier.
fn plural_checks(wn: &wordnet::WordNet, vectors: &str) -> Result<Vec<(String, String, String)>> {
    let is_plural = |w: &str| plural::is_plural_word(w, &|x| expand::singular_of(wn, x).is_some());
    Ok(vector_rows(vectors)?
        .into_iter()
        .filter(|r| !r[0].contains('('))
        .map(|r| {
            let word = r[0].to_lowercase();
            let ours = plural::plural(&word, &is_plural);
            (word, r[1].to_lowercase(), ours)
        })
        .collect())
}

/// NLTK-style `lemma_names()` of `wordnet.synsets(word, pos)`, '_' -> ' ',
/// first occurrences in order, joined by '|'.
fn nltk_lemmas(wn: &wordnet::WordNet, word: &str, pos: Option<wordnet::Pos>) -> Result<String> {
    let mut names: Vec<String> = Vec::new();
    for id in wn.synsets(word, pos) {
        for lemma in wn.synset(id)?.lemmas {
            let l = lemma.replace('_', " ");
            if !names.contains(&l) {
                names.push(l);
            }
        }
    }
    Ok(names.join("|"))
}

/// How many words' lemma lists equal NLTK's: (noun, all POS, total).
fn nltk_agreement(wn: &wordnet::WordNet, vectors: &str) -> Result<(usize, usize, usize)> {
    let rows = vector_rows(vectors)?;
    let mut noun = 0;
    let mut all = 0;
    for r in &rows {
        noun += usize::from(nltk_lemmas(wn, r[0], Some(wordnet::Pos::Noun))? == r[2]);
        all += usize::from(nltk_lemmas(wn, r[0], None)? == r[3]);
    }
    Ok((noun, all, rows.len()))
}

/// For each example entity: its fisao forms and the paper-mode forms
/// fisao does not give it.
fn examples(
    entities: &[sources::Entity],
    fisao: &expand::Expanded,
    paper: &expand::Expanded,
) -> Vec<(String, Vec<String>, Vec<String>)> {
    let forms_of = |x: &expand::Expanded, i: usize| -> Vec<String> {
        x.forms
            .iter()
            .filter(|(_, e)| **e == i)
            .map(|(f, _)| f.clone())
            .collect()
    };
    EXAMPLES
        .iter()
        .filter_map(|name| entities.iter().position(|e| e.name == *name))
        .map(|i| {
            let kept = forms_of(fisao, i);
            let paper_only = forms_of(paper, i)
                .into_iter()
                .filter(|f| !kept.contains(f))
                .collect();
            (entities[i].name.clone(), kept, paper_only)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WordNet loaded once for all tests (it takes seconds in debug).
    fn wordnet() -> Option<&'static wordnet::WordNet> {
        static WN: std::sync::OnceLock<Option<wordnet::WordNet>> = std::sync::OnceLock::new();
        let wn = WN.get_or_init(|| {
            wordnet_installed()
                .then(|| wordnet::WordNet::load(Path::new(WORDNET_DIR)).expect("WordNet loads"))
        });
        if wn.is_none() {
            eprintln!("WordNet 3.0 not installed at {WORDNET_DIR}: skipped");
        }
        wn.as_ref()
    }

    #[test]
    fn synset_names_resolve_like_nltk() {
        let Some(wn) = wordnet() else { return };
        let dog = wn.synset_by_name("dog.n.01").unwrap();
        assert_eq!(dog.offset, 2084071);
        let lemmas = wn
            .synset(wn.synset_by_name("frank.n.02").unwrap())
            .unwrap()
            .lemmas;
        assert!(lemmas.contains(&"hotdog".to_string()), "{lemmas:?}");
        assert!(wn.synset_by_name("dog.n.99").is_err());
        assert!(wn.synset_by_name("nonexistentword.n.01").is_err());
    }

    #[test]
    fn reader_reproduces_nltk_lemma_lists() {
        let Some(wn) = wordnet() else { return };
        let root = setup::workspace_root();
        let text =
            std::fs::read_to_string(root.join("data/entity_words_expansion_vectors.tsv")).unwrap();
        let mut bad = Vec::new();
        for r in vector_rows(&text).unwrap() {
            if nltk_lemmas(wn, r[0], Some(wordnet::Pos::Noun)).unwrap() != r[2] {
                bad.push(format!("{} (noun)", r[0]));
            }
            if nltk_lemmas(wn, r[0], None).unwrap() != r[3] {
                bad.push(format!("{} (all)", r[0]));
            }
        }
        assert!(bad.is_empty(), "differ from NLTK: {bad:?}");
    }
}

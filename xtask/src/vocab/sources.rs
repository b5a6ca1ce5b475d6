//! The original entity set E (method.md section 2): COCO's 80 thing
//! categories and the 1203 LVIS v1 categories, merged into canonical
//! entities. Reads the TSV tables committed under `data/` (see
//! data/README.md for their sources and licences).
//!
//! Merge rule: a COCO category and an LVIS category are one entity when
//! LVIS's synset equals the COCO category's synset in the official
//! COCO -> synset map (`data/coco_synsets.tsv`, from lvis-api's
//! `coco_to_synset.json`). 79 of 80 COCO categories merge; "hot dog"
//! (`frank.n.02`) has no LVIS category, so E has 1203 + 1 = 1204 entities.

use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One canonical entity before expansion.
#[derive(Clone, Debug)]
pub struct Entity {
    /// Canonical name (see [`canonical_names`]).
    pub name: String,
    /// COCO category id (1..=90), if the entity is a COCO category.
    pub coco_id: Option<u16>,
    /// LVIS v1 category id (1..=1203), if the entity is an LVIS category.
    pub lvis_id: Option<u16>,
    /// The entity's WordNet synset, NLTK-style ("dog.n.01").
    pub synset: String,
    /// Names from the tables ('_' -> ' ', "(...)" qualifiers dropped):
    /// the COCO name, the LVIS name and LVIS's synonyms, deduplicated.
    pub table_names: Vec<String>,
    /// The LVIS name with its qualifier dropped, if the entity is in LVIS.
    pub lvis_name: Option<String>,
    /// LVIS train images with the category (0 for COCO-only): breaks ties.
    pub lvis_images: u32,
}

/// One data row, with the file and line for messages.
struct Row<'a> {
    file: &'a str,
    line: usize,
    fields: Vec<&'a str>,
}

impl<'a> Row<'a> {
    fn get(&self, i: usize, what: &str) -> Result<&'a str> {
        self.fields.get(i).copied().with_context(|| {
            format!(
                "{}:{}: missing column {} ({what})",
                self.file,
                self.line,
                i + 1
            )
        })
    }

    fn number<T: std::str::FromStr>(&self, i: usize, what: &str) -> Result<T> {
        let s = self.get(i, what)?;
        s.parse()
            .ok()
            .with_context(|| format!("{}:{}: {what} {s:?} is not a number", self.file, self.line))
    }
}

/// Rows of a TSV file with a header line, checking the header.
fn rows<'a>(file: &'a str, text: &'a str, header: &[&str]) -> Result<Vec<Row<'a>>> {
    let mut lines = text.lines();
    let found: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    if found.get(..header.len()) != Some(header) {
        bail!("{file}: header is {found:?}, expected it to start with {header:?}");
    }
    Ok(lines
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| Row {
            file,
            line: i + 2,
            fields: l.split('\t').collect(),
        })
        .collect())
}

/// A table name as a surface form: '_' -> ' ', "(...)" removed, spaces
/// collapsed, lower case ("car_(automobile)" -> "car").
pub fn strip_qualifier(name: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in name.replace('_', " ").chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// An LVIS name with '_' -> ' ' but the qualifier kept ("bow (weapon)").
fn qualified(name: &str) -> String {
    name.replace('_', " ").to_lowercase()
}

/// Reads the tables in `data_dir` and builds the merged entity list, in
/// order: COCO categories by COCO id, then LVIS-only categories by LVIS id.
/// `reserved` are forms that data/vocab_assignments.tsv gives to a named
/// entity: no other entity may take them as its canonical name.
pub fn load(data_dir: &Path, reserved: &[&str]) -> Result<Vec<Entity>> {
    let read = |name: &str| {
        let path = data_dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let coco_text = read("coco_categories.tsv")?;
    let synset_text = read("coco_synsets.tsv")?;
    let lvis_text = read("lvis_v1_categories.tsv")?;

    let coco_synsets: HashMap<u16, String> = rows(
        "coco_synsets.tsv",
        &synset_text,
        &["coco_id", "name", "synset"],
    )?
    .iter()
    .map(|r| Ok((r.number(0, "coco_id")?, r.get(2, "synset")?.to_string())))
    .collect::<Result<_>>()?;

    let mut entities: Vec<Entity> = Vec::new();
    let mut by_synset: HashMap<String, usize> = HashMap::new();
    for r in rows(
        "coco_categories.tsv",
        &coco_text,
        &["index", "id", "name", "supercategory"],
    )? {
        let id: u16 = r.number(1, "id")?;
        let name = r.get(2, "name")?.to_string();
        let synset = coco_synsets
            .get(&id)
            .with_context(|| format!("coco_synsets.tsv has no row for COCO id {id} ({name})"))?
            .clone();
        by_synset.insert(synset.clone(), entities.len());
        entities.push(Entity {
            table_names: vec![name.clone()],
            name,
            coco_id: Some(id),
            lvis_id: None,
            synset,
            lvis_name: None,
            lvis_images: 0,
        });
    }

    let header = [
        "id",
        "name",
        "thing_class_detectron2_detic",
        "synonyms",
        "frequency",
        "synset",
        "train_image_count",
    ];
    for r in rows("lvis_v1_categories.tsv", &lvis_text, &header)? {
        let id: u16 = r.number(0, "id")?;
        let synset = r.get(5, "synset")?.to_string();
        let images: u32 = r.number(6, "train_image_count")?;
        // LVIS v1 quirk: id 698's name is "monitor_(computer_equipment)
        // computer_monitor"; a space separates two names.
        let mut names: Vec<String> = Vec::new();
        for raw in r
            .get(1, "name")?
            .split(' ')
            .chain(r.get(3, "synonyms")?.split(['|', ' ']))
        {
            let n = strip_qualifier(raw);
            if !n.is_empty() && !names.contains(&n) {
                names.push(n);
            }
        }
        let lvis_name = r.get(1, "name")?.split(' ').next().unwrap_or("");
        match by_synset.get(&synset) {
            Some(&i) => {
                let e = &mut entities[i];
                if e.lvis_id.is_some() {
                    bail!(
                        "lvis_v1_categories.tsv:{}: synset {synset} is used twice",
                        r.line
                    );
                }
                e.lvis_id = Some(id);
                e.lvis_name = Some(strip_qualifier(lvis_name));
                e.lvis_images = images;
                for n in names {
                    if !e.table_names.contains(&n) {
                        e.table_names.push(n);
                    }
                }
            }
            None => {
                by_synset.insert(synset.clone(), entities.len());
                entities.push(Entity {
                    // Provisional; `canonical_names` settles qualifiers.
                    name: qualified(lvis_name),
                    coco_id: None,
                    lvis_id: Some(id),
                    synset,
                    lvis_name: Some(strip_qualifier(lvis_name)),
                    table_names: names,
                    lvis_images: images,
                });
            }
        }
    }
    canonical_names(&mut entities, reserved)?;
    Ok(entities)
}

/// Canonical names: a COCO category keeps its COCO name; an LVIS-only
/// category drops its "(...)" qualifier unless another entity would then
/// have the same name, in which case it keeps it ("fish (food)" next to
/// "fish"; "bow (weapon)" next to "bow (decorative ribbons)"), or unless the
/// bare name is `reserved` for another entity ("bat (animal)": "bat" is the
/// baseball bat).
fn canonical_names(entities: &mut [Entity], reserved: &[&str]) -> Result<()> {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for e in entities.iter() {
        let short = if e.coco_id.is_some() {
            e.name.clone()
        } else {
            strip_qualifier(&e.name)
        };
        *count.entry(short).or_default() += 1;
    }
    for e in entities.iter_mut().filter(|e| e.coco_id.is_none()) {
        let short = strip_qualifier(&e.name);
        if count[&short] == 1 && !reserved.contains(&short.as_str()) {
            e.name = short;
        }
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, e) in entities.iter().enumerate() {
        if let Some(j) = seen.insert(&e.name, i) {
            bail!(
                "entities {j} and {i} both have the canonical name {:?}",
                e.name
            );
        }
    }
    Ok(())
}

/// One row of `data/vocab_exclusions.tsv`.
#[derive(Clone, Debug)]
pub struct Exclusion {
    pub form: String,
    pub reason: String,
}

/// Reads the reviewed exclusion list (`form<TAB>reason`).
pub fn exclusions(data_dir: &Path) -> Result<Vec<Exclusion>> {
    let path = data_dir.join("vocab_exclusions.tsv");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out: Vec<Exclusion> = Vec::new();
    for r in rows("vocab_exclusions.tsv", &text, &["form", "reason"])? {
        let form = r.get(0, "form")?;
        if form != form.trim().to_lowercase() || form.is_empty() {
            bail!(
                "vocab_exclusions.tsv:{}: form {form:?} must be lower case and trimmed",
                r.line
            );
        }
        if out.iter().any(|e| e.form == form) {
            bail!("vocab_exclusions.tsv:{}: {form:?} is listed twice", r.line);
        }
        out.push(Exclusion {
            form: form.to_string(),
            reason: r.get(1, "reason")?.to_string(),
        });
    }
    Ok(out)
}

/// One row of `data/vocab_assignments.tsv`: a form given to a named entity
/// whatever the collision rule would say.
#[derive(Clone, Debug)]
pub struct Assignment {
    pub form: String,
    pub entity: String,
    pub reason: String,
}

/// Reads the reviewed assignments (`form<TAB>entity<TAB>reason`).
pub fn assignments(data_dir: &Path) -> Result<Vec<Assignment>> {
    let path = data_dir.join("vocab_assignments.tsv");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out: Vec<Assignment> = Vec::new();
    for r in rows(
        "vocab_assignments.tsv",
        &text,
        &["form", "entity", "reason"],
    )? {
        let form = r.get(0, "form")?;
        if form != form.trim().to_lowercase() || form.is_empty() {
            bail!(
                "vocab_assignments.tsv:{}: form {form:?} must be lower case and trimmed",
                r.line
            );
        }
        if out.iter().any(|a| a.form == form) {
            bail!("vocab_assignments.tsv:{}: {form:?} is listed twice", r.line);
        }
        out.push(Assignment {
            form: form.to_string(),
            entity: r.get(1, "entity")?.to_string(),
            reason: r.get(2, "reason")?.to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lvis(name: &str) -> Entity {
        Entity {
            name: qualified(name),
            coco_id: None,
            lvis_id: Some(1),
            synset: String::new(),
            table_names: Vec::new(),
            lvis_name: Some(strip_qualifier(name)),
            lvis_images: 0,
        }
    }

    #[test]
    fn qualifiers() {
        assert_eq!(strip_qualifier("car_(automobile)"), "car");
        assert_eq!(
            strip_qualifier("passenger_car_(part_of_a_train)"),
            "passenger car"
        );
        assert_eq!(strip_qualifier("Band_Aid"), "band aid");
        assert_eq!(qualified("bow_(weapon)"), "bow (weapon)");
    }

    #[test]
    fn canonical_names_keep_qualifiers_only_when_needed() {
        let mut e = vec![
            lvis("fish"),
            lvis("fish_(food)"),
            lvis("bow_(weapon)"),
            lvis("bow_(decorative_ribbons)"),
            lvis("cab_(taxi)"),
            lvis("bat_(animal)"),
        ];
        canonical_names(&mut e, &["bat"]).unwrap();
        let names: Vec<&str> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "fish",
                "fish (food)",
                "bow (weapon)",
                "bow (decorative ribbons)",
                "cab",
                "bat (animal)"
            ]
        );
    }

    #[test]
    fn bad_header_names_the_file() {
        let err = rows("x.tsv", "a\tb\n1\t2\n", &["form", "reason"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("x.tsv") && err.contains("form"), "{err}");
    }
}

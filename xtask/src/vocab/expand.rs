//! The expanded vocabulary E' (method.md section 2) in two modes:
//!
//! - `fisao`: the table names (COCO name, LVIS name, LVIS synonyms), the
//!   lemmas of the entity's own WordNet noun synset only, singular and
//!   plural forms of all of these, minus the reviewed exclusion list and
//!   any WordNet-only form with an offensive WordNet sense.
//! - `paper`: what the paper did (appendix A.1.1): each original word, its
//!   plural, and the lemma names of every synset of the word in every part
//!   of speech (NLTK `wordnet.synsets(word)`), with no sense check.
//!
//! Both modes then give every surface form to exactly one entity with the
//! collision rule of [`resolve`].

use super::plural;
use super::sources::{Assignment, Entity, Exclusion};
use super::wordnet::{Pos, WordNet};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;

/// How strongly a form belongs to an entity; lower wins a collision.
/// Direct names beat made-up inflections, which beat WordNet lemmas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// The entity's canonical name.
    Canonical,
    /// A name from the COCO/LVIS tables (LVIS name or curated synonym).
    Table,
    /// A singular or plural of the canonical name.
    CanonicalInflection,
    /// A singular or plural of a table name.
    TableInflection,
    /// A WordNet lemma of the entity's synset.
    WordNet,
    /// A singular or plural of a WordNet lemma.
    WordNetInflection,
}

impl Tier {
    /// The tier of an inflection made from a form of this tier.
    fn inflected(self) -> Tier {
        match self {
            Tier::Canonical | Tier::CanonicalInflection => Tier::CanonicalInflection,
            Tier::Table | Tier::TableInflection => Tier::TableInflection,
            Tier::WordNet | Tier::WordNetInflection => Tier::WordNetInflection,
        }
    }
}

/// Glosses that mark a sense as a slur or as offensive.
const OFFENSIVE_GLOSS: &[&str] = &[
    "ethnic slur",
    "offensive term",
    "offensive name",
    "offensive word",
    "disparaging",
    "derogatory",
    "obscene",
    "vulgar",
];

/// A form claimed by more than one entity, and who got it.
#[derive(Clone, Debug)]
pub struct Collision {
    pub form: String,
    pub winner: usize,
    pub losers: Vec<usize>,
    pub rule: String,
}

/// A form left out, the entities that had proposed it, and why.
#[derive(Clone, Debug)]
pub struct Dropped {
    pub form: String,
    pub entities: Vec<usize>,
    pub reason: String,
}

/// The outcome of one expansion mode.
pub struct Expanded {
    /// form -> entity index, sorted by form.
    pub forms: BTreeMap<String, usize>,
    /// Distinct forms proposed before exclusions and collisions.
    pub proposed: usize,
    pub collisions: Vec<Collision>,
    pub dropped: Vec<Dropped>,
    /// Table names kept although a WordNet sense of them is offensive
    /// (form, entity, gloss): they name the object itself.
    pub kept_offensive: Vec<(String, usize, String)>,
    /// Entities whose LVIS synset is not in WordNet 3.0 (no lemmas added).
    pub missing_synsets: Vec<usize>,
}

/// Candidate forms: form -> (entity, tier) claims.
type Claims = BTreeMap<String, Vec<(usize, Tier)>>;

fn claim(claims: &mut Claims, form: &str, entity: usize, tier: Tier) {
    let form = form.trim().to_lowercase().replace('_', " ");
    if form.is_empty() {
        return;
    }
    let list = claims.entry(form).or_default();
    match list.iter_mut().find(|(e, _)| *e == entity) {
        Some(c) => c.1 = c.1.min(tier),
        None => list.push((entity, tier)),
    }
}

/// Adds the plural and, for plural forms that are not pluralia tantum,
/// the singular of `form`.
fn claim_inflections(claims: &mut Claims, wn: &WordNet, form: &str, entity: usize, tier: Tier) {
    let is_plural = |w: &str| plural::is_plural_word(w, &|x| singular_of(wn, x).is_some());
    let (prefix, last) = match form.rfind([' ', '-']) {
        Some(i) => (&form[..=i], &form[i + 1..]),
        None => ("", form),
    };
    let tier = tier.inflected();
    claim(claims, &plural::plural(form, &is_plural), entity, tier);
    if is_plural(last) && !plural::is_plurale_tantum(last) {
        if let Some(s) = singular_of(wn, last) {
            claim(claims, &format!("{prefix}{s}"), entity, tier);
        }
    }
}

/// Inflections of every base form of entity `i`.
fn claim_all_inflections(
    claims: &mut Claims,
    wn: &WordNet,
    bases: &mut Vec<(String, Tier)>,
    i: usize,
) {
    bases.sort();
    bases.dedup();
    for (b, tier) in bases.iter() {
        claim_inflections(claims, wn, b, i, *tier);
    }
}

/// WordNet's singular of a noun: the first morphy base form that differs
/// from the word ("skis" -> "ski", "mice" -> "mouse").
pub fn singular_of(wn: &WordNet, word: &str) -> Option<String> {
    let word = super::wordnet::key(word);
    wn.morphy(&word, Pos::Noun)
        .into_iter()
        .find(|b| *b != word)
        .map(|b| b.replace('_', " "))
}

/// The `fisao` expansion.
pub fn fisao(
    entities: &[Entity],
    wn: &WordNet,
    exclusions: &[Exclusion],
    assignments: &[Assignment],
) -> Result<Expanded> {
    let mut claims = Claims::new();
    let mut missing_synsets = Vec::new();
    for (i, e) in entities.iter().enumerate() {
        if !claim_entity(&mut claims, wn, e, i)? {
            missing_synsets.push(i);
        }
    }
    let proposed = claims.len();
    let mut dropped = apply_exclusions(&mut claims, exclusions)?;
    dropped.extend(drop_offensive(&mut claims, wn));
    dropped.sort_by(|a, b| a.form.cmp(&b.form));
    let assigned = take_assigned(&mut claims, entities, exclusions, assignments)?;
    let (mut forms, mut collisions) = resolve(entities, claims);
    for c in assigned {
        forms.insert(c.form.clone(), c.winner);
        collisions.push(c);
    }
    collisions.sort_by(|a, b| a.form.cmp(&b.form));
    let kept_offensive = forms
        .iter()
        .filter_map(|(f, &e)| Some((f.clone(), e, offensive_sense(wn, f)?)))
        .collect();
    Ok(Expanded {
        forms,
        proposed,
        collisions,
        dropped,
        kept_offensive,
        missing_synsets,
    })
}

/// Claims every fisao form of entity `i`; false when its synset is not in
/// WordNet 3.0 (LVIS made up a few, e.g. "stop_sign.n.01"), in which case
/// only the table names and their inflections are claimed.
fn claim_entity(claims: &mut Claims, wn: &WordNet, e: &Entity, i: usize) -> Result<bool> {
    let mut bases: Vec<(String, Tier)> = Vec::new();
    if !e.name.contains('(') {
        bases.push((e.name.clone(), Tier::Canonical));
    }
    bases.extend(e.table_names.iter().map(|n| (n.clone(), Tier::Table)));
    let resolved = wn.synset_by_name(&e.synset).ok();
    if let Some(id) = resolved {
        let synset = wn
            .synset(id)
            .with_context(|| format!("entity {:?} ({})", e.name, e.synset))?;
        for lemma in synset.lemmas {
            let form = lemma.to_lowercase().replace('_', " ");
            if lemma.chars().any(char::is_uppercase) {
                // Proper and Linnaean names ("Canis familiaris") have no
                // plural worth matching: keep them uninflected.
                claim(claims, &form, i, Tier::WordNet);
            } else {
                bases.push((form, Tier::WordNet));
            }
        }
    }
    for (b, tier) in &bases {
        claim(claims, b, i, *tier);
    }
    claim_all_inflections(claims, wn, &mut bases, i);
    Ok(resolved.is_some())
}

/// Removes the reviewed exclusions; a row that matches nothing is stale.
fn apply_exclusions(claims: &mut Claims, exclusions: &[Exclusion]) -> Result<Vec<Dropped>> {
    let mut dropped = Vec::new();
    for ex in exclusions {
        let Some(list) = claims.remove(&ex.form) else {
            bail!(
                "vocab_exclusions.tsv: {:?} is not proposed by any entity; remove the stale row",
                ex.form
            );
        };
        dropped.push(Dropped {
            form: ex.form.clone(),
            entities: list.iter().map(|c| c.0).collect(),
            reason: ex.reason.clone(),
        });
    }
    Ok(dropped)
}

/// Removes forms that only WordNet proposes and that have an offensive
/// noun sense. Table names ("boy", "taco", "cock") name the object itself
/// and stay; the docs list them with the gloss.
fn drop_offensive(claims: &mut Claims, wn: &WordNet) -> Vec<Dropped> {
    let offensive: Vec<(String, String)> = claims
        .iter()
        .filter(|(_, list)| list.iter().all(|c| c.1 >= Tier::WordNet))
        .filter_map(|(f, _)| Some((f.clone(), offensive_sense(wn, f)?)))
        .collect();
    offensive
        .into_iter()
        .map(|(form, gloss)| {
            let list = claims.remove(&form).unwrap_or_default();
            Dropped {
                form,
                entities: list.iter().map(|c| c.0).collect(),
                reason: format!("a WordNet noun sense is glossed as offensive: \"{gloss}\""),
            }
        })
        .collect()
}

/// Takes the assigned forms out of the claims, as collisions won by the
/// named entity (listed even when nobody else claimed the form).
fn take_assigned(
    claims: &mut Claims,
    entities: &[Entity],
    exclusions: &[Exclusion],
    assignments: &[Assignment],
) -> Result<Vec<Collision>> {
    let mut assigned = Vec::new();
    for a in assignments {
        let Some(entity) = entities.iter().position(|e| e.name == a.entity) else {
            bail!(
                "vocab_assignments.tsv: {:?} is given to {:?}, which is not an entity",
                a.form,
                a.entity
            );
        };
        if exclusions.iter().any(|e| e.form == a.form) {
            bail!(
                "{:?} is both excluded (vocab_exclusions.tsv) and assigned",
                a.form
            );
        }
        let others: Vec<usize> = claims
            .remove(&a.form)
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.0)
            .filter(|&e| e != entity)
            .collect();
        assigned.push(Collision {
            form: a.form.clone(),
            winner: entity,
            losers: others,
            rule: format!("reviewed assignment: {}", a.reason),
        });
    }
    Ok(assigned)
}

/// The gloss of a noun sense of `form` that marks it as offensive.
fn offensive_sense(wn: &WordNet, form: &str) -> Option<String> {
    wn.synsets(form, Some(Pos::Noun))
        .into_iter()
        .filter_map(|id| wn.synset(id).ok())
        .map(|s| s.gloss)
        .find(|g| {
            let g = g.to_lowercase();
            OFFENSIVE_GLOSS.iter().any(|m| g.contains(m))
        })
}

/// The original words of an entity, as the paper counts them: its COCO
/// name and its LVIS name (qualifier dropped), not LVIS's synonyms.
pub fn original_words(e: &Entity) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    if e.coco_id.is_some() {
        words.push(e.name.clone());
    }
    // No let-chains: the workspace's MSRV is 1.85.
    if let Some(lvis) = e.lvis_name.as_ref().filter(|l| !words.contains(l)) {
        words.push(lvis.clone());
    }
    words
}

/// The `paper` expansion.
pub fn paper(entities: &[Entity], wn: &WordNet) -> Result<Expanded> {
    let mut claims = Claims::new();
    for (i, e) in entities.iter().enumerate() {
        for (k, w) in original_words(e).iter().enumerate() {
            let tier = if k == 0 && !e.name.contains('(') {
                Tier::Canonical
            } else {
                Tier::Table
            };
            claim(&mut claims, w, i, tier);
            claim_inflections(&mut claims, wn, w, i, tier);
            for id in wn.synsets(w, None) {
                for lemma in wn.synset(id)?.lemmas {
                    claim(&mut claims, &lemma, i, Tier::WordNet);
                }
            }
        }
    }
    let proposed = claims.len();
    let (forms, collisions) = resolve(entities, claims);
    Ok(Expanded {
        forms,
        proposed,
        collisions,
        dropped: Vec::new(),
        kept_offensive: Vec::new(),
        missing_synsets: Vec::new(),
    })
}

/// The collision rule: a form goes to the entity with the strongest
/// claim ([`Tier`]: canonical name > table name > their inflections >
/// WordNet lemma > its inflections); among
/// equal claims, to the entity with more LVIS train images (the sense
/// most often annotated in COCO-domain photos), then to the lower index.
fn resolve(entities: &[Entity], claims: Claims) -> (BTreeMap<String, usize>, Vec<Collision>) {
    let mut forms = BTreeMap::new();
    let mut collisions = Vec::new();
    for (form, mut list) in claims {
        list.sort_by(|a, b| {
            a.1.cmp(&b.1)
                .then(entities[b.0].lvis_images.cmp(&entities[a.0].lvis_images))
                .then(a.0.cmp(&b.0))
        });
        let (winner, tier) = list[0];
        if list.len() > 1 {
            let rule = match (tier, list[1].1 == tier) {
                (Tier::Canonical, _) => "canonical name",
                (_, false) => "stronger claim",
                (_, true) => "same claim, more LVIS images",
            };
            collisions.push(Collision {
                form: form.clone(),
                winner,
                losers: list[1..].iter().map(|c| c.0).collect(),
                rule: rule.to_string(),
            });
        }
        forms.insert(form, winner);
    }
    (forms, collisions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(name: &str, lvis_images: u32) -> Entity {
        Entity {
            name: name.to_string(),
            coco_id: None,
            lvis_id: Some(1),
            synset: String::new(),
            table_names: Vec::new(),
            lvis_name: None,
            lvis_images,
        }
    }

    #[test]
    fn collision_rule() {
        let entities = [
            entity("dog", 10),
            entity("hot dog", 5),
            entity("salmon (food)", 7),
            entity("salmon (fish)", 3),
        ];
        let mut claims = Claims::new();
        claim(&mut claims, "dog", 0, Tier::Canonical);
        claim(&mut claims, "dog", 1, Tier::WordNet);
        claim(&mut claims, "dogs", 1, Tier::TableInflection);
        claim(&mut claims, "dogs", 0, Tier::CanonicalInflection);
        claim(&mut claims, "salmon", 3, Tier::Table);
        claim(&mut claims, "salmon", 2, Tier::Table);
        claim(&mut claims, "hotdog", 1, Tier::WordNet);
        let (forms, collisions) = resolve(&entities, claims);
        assert_eq!(forms["dog"], 0, "a canonical name wins for itself");
        assert_eq!(forms["dogs"], 0, "the stronger tier wins");
        assert_eq!(forms["salmon"], 2, "equal tiers: more LVIS images");
        assert_eq!(forms["hotdog"], 1);
        let rules: Vec<(&str, &str)> = collisions
            .iter()
            .map(|c| (c.form.as_str(), c.rule.as_str()))
            .collect();
        assert_eq!(
            rules,
            [
                ("dog", "canonical name"),
                ("dogs", "stronger claim"),
                ("salmon", "same claim, more LVIS images")
            ]
        );
    }

    #[test]
    fn stale_exclusion_is_an_error() {
        let mut claims = Claims::new();
        claim(&mut claims, "can", 0, Tier::Canonical);
        let ok = [Exclusion {
            form: "can".into(),
            reason: "modal verb".into(),
        }];
        assert_eq!(apply_exclusions(&mut claims, &ok).unwrap().len(), 1);
        assert!(claims.is_empty());
        let stale = [Exclusion {
            form: "zzz".into(),
            reason: String::new(),
        }];
        let err = apply_exclusions(&mut claims, &stale)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"zzz\" is not proposed"), "{err}");
    }

    #[test]
    fn tiers_order_direct_names_before_inflections_before_wordnet() {
        assert!(Tier::Table < Tier::CanonicalInflection);
        assert!(Tier::TableInflection < Tier::WordNet);
        assert_eq!(Tier::WordNet.inflected(), Tier::WordNetInflection);
        assert_eq!(Tier::Canonical.inflected(), Tier::CanonicalInflection);
    }
}

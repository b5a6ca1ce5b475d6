//! The entity vocabulary E' of method.md section 2: canonical object
//! entities and every surface form (singular, plural, synonym) that names
//! one of them. The built-in tables are generated offline by
//! `cargo xtask vocab` (from COCO, LVIS v1 and WordNet 3.0; see
//! docs/vocabulary.md) and compiled in, so nothing is read at run time.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

mod table_entities;
mod table_fisao;
mod table_paper;

/// Index of a canonical entity in a [`Vocabulary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct EntityId(pub u16);

/// Which built-in expansion to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Expansion {
    /// Sense-checked expansion (the project's default, method.md section 2):
    /// table names, the lemmas of each category's own WordNet synset, their
    /// singular and plural forms, minus a reviewed exclusion list.
    #[default]
    Fisao,
    /// The paper's recipe, for comparison: every WordNet synset of every
    /// part of speech of each original word ("chair" -> "moderate").
    Paper,
}

/// Canonical entities plus the surface forms that map to them.
///
/// Invariant: every surface form is lower case, trimmed, unique, and maps
/// to exactly one entity; forms are kept sorted for binary search.
#[derive(Clone, Debug)]
pub struct Vocabulary {
    entities: Vec<Cow<'static, str>>,
    /// (COCO category id, LVIS v1 category id) of each entity.
    ids: Vec<(Option<u16>, Option<u16>)>,
    forms: Vec<(Cow<'static, str>, EntityId)>,
}

/// Why a vocabulary could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VocabError {
    kind: VocabErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum VocabErrorKind {
    TooManyEntities(usize),
    EmptyForm {
        entity: String,
    },
    UnknownEntity {
        form: String,
        id: u16,
    },
    Collision {
        form: String,
        first: String,
        second: String,
    },
}

impl fmt::Display for VocabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            VocabErrorKind::TooManyEntities(n) => {
                write!(
                    f,
                    "vocabulary has {n} entities; at most 65535 are supported"
                )
            }
            VocabErrorKind::EmptyForm { entity } => {
                write!(f, "entity {entity:?} has an empty surface form")
            }
            VocabErrorKind::UnknownEntity { form, id } => {
                write!(
                    f,
                    "surface form {form:?} refers to entity id {id}, which does not exist"
                )
            }
            VocabErrorKind::Collision {
                form,
                first,
                second,
            } => write!(
                f,
                "surface form {form:?} maps to two entities ({first:?} and {second:?}); each form must name exactly one"
            ),
        }
    }
}

impl core::error::Error for VocabError {}

impl Vocabulary {
    /// The built-in vocabulary of the given expansion mode (no copies of
    /// the strings are made).
    ///
    /// Unlike [`Vocabulary::from_parts`], a canonical name is not forced to
    /// be a form: the reviewed exclusion list may drop one that is mostly a
    /// function word in captions (the entity "can" is matched by "tin can"
    /// and "cans", not by the modal verb).
    pub fn builtin(expansion: Expansion) -> Self {
        let entities = table_entities::ENTITIES;
        let forms = match expansion {
            Expansion::Fisao => table_fisao::FORMS,
            Expansion::Paper => table_paper::FORMS,
        };
        let nonzero = |id: u16| (id != 0).then_some(id);
        Self {
            entities: entities.iter().map(|e| Cow::Borrowed(e.0)).collect(),
            ids: entities
                .iter()
                .map(|e| (nonzero(e.1), nonzero(e.2)))
                .collect(),
            forms: forms
                .iter()
                .map(|(f, id)| (Cow::Borrowed(*f), EntityId(*id)))
                .collect(),
        }
    }

    /// Builds a vocabulary from canonical entity names and `(form, entity index)`
    /// pairs. Forms are lower-cased and trimmed; a canonical name is always
    /// also a form of itself. Fails on empty forms, unknown ids, and a form
    /// that would name two different entities.
    pub fn from_parts<E, F>(entities: E, forms: F) -> Result<Self, VocabError>
    where
        E: IntoIterator,
        E::Item: AsRef<str>,
        F: IntoIterator<Item = (String, u16)>,
    {
        let entities: Vec<Cow<'static, str>> = entities
            .into_iter()
            .map(|e| Cow::Owned(String::from(e.as_ref())))
            .collect();
        if entities.len() > u16::MAX as usize {
            return Err(VocabError {
                kind: VocabErrorKind::TooManyEntities(entities.len()),
            });
        }
        let mut all: Vec<(Cow<'static, str>, EntityId)> = Vec::new();
        for (i, name) in entities.iter().enumerate() {
            all.push((Cow::Owned(normalise(name)), EntityId(i as u16)));
        }
        for (form, id) in forms {
            let Some(name) = entities.get(id as usize) else {
                return Err(VocabError {
                    kind: VocabErrorKind::UnknownEntity { form, id },
                });
            };
            let norm = normalise(&form);
            if norm.is_empty() {
                return Err(VocabError {
                    kind: VocabErrorKind::EmptyForm {
                        entity: String::from(&**name),
                    },
                });
            }
            all.push((Cow::Owned(norm), EntityId(id)));
        }
        all.sort();
        all.dedup();
        for pair in all.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(VocabError {
                    kind: VocabErrorKind::Collision {
                        form: String::from(&*pair[0].0),
                        first: String::from(&*entities[pair[0].1.0 as usize]),
                        second: String::from(&*entities[pair[1].1.0 as usize]),
                    },
                });
            }
        }
        Ok(Self {
            ids: alloc::vec![(None, None); entities.len()],
            entities,
            forms: all,
        })
    }

    /// Number of canonical entities.
    pub fn num_entities(&self) -> usize {
        self.entities.len()
    }

    /// Number of surface forms (canonical names included).
    pub fn num_forms(&self) -> usize {
        self.forms.len()
    }

    /// The canonical name of an entity, or `None` for an id out of range.
    pub fn entity_name(&self, id: EntityId) -> Option<&str> {
        self.entities.get(id.0 as usize).map(|s| &**s)
    }

    /// The entity a canonical name or surface form names (case-insensitive).
    pub fn lookup(&self, form: &str) -> Option<EntityId> {
        let norm = normalise(form);
        self.forms
            .binary_search_by(|(f, _)| (**f).cmp(norm.as_str()))
            .ok()
            .map(|i| self.forms[i].1)
    }

    /// The entity whose canonical name is exactly `name` (case-sensitive),
    /// e.g. `"bow (weapon)"`, which is not itself a surface form.
    pub fn entity(&self, name: &str) -> Option<EntityId> {
        self.entities
            .iter()
            .position(|e| e == name)
            .map(|i| EntityId(i as u16))
    }

    /// The entity's COCO category id (1..=90), if it is a COCO category.
    pub fn coco_id(&self, id: EntityId) -> Option<u16> {
        self.ids.get(id.0 as usize).and_then(|ids| ids.0)
    }

    /// The entity's LVIS v1 category id (1..=1203), if it is an LVIS category.
    pub fn lvis_id(&self, id: EntityId) -> Option<u16> {
        self.ids.get(id.0 as usize).and_then(|ids| ids.1)
    }

    /// The entity of a COCO category id (as in COCO annotations).
    pub fn entity_of_coco_id(&self, coco_id: u16) -> Option<EntityId> {
        self.ids
            .iter()
            .position(|ids| ids.0 == Some(coco_id))
            .map(|i| EntityId(i as u16))
    }

    /// All canonical entity names, indexed by [`EntityId`].
    pub fn entities(&self) -> impl ExactSizeIterator<Item = &str> {
        self.entities.iter().map(|s| &**s)
    }

    /// All `(surface form, entity)` pairs, sorted by form.
    pub fn forms(&self) -> impl ExactSizeIterator<Item = (&str, EntityId)> {
        self.forms.iter().map(|(f, id)| (&**f, *id))
    }
}

/// Lower-cases and trims a surface form the way the tables store it.
pub fn normalise(form: &str) -> String {
    form.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn builtin_has_coco_names() {
        let v = Vocabulary::builtin(Expansion::Fisao);
        for name in ["person", "dog", "teddy bear", "hot dog"] {
            let id = v.lookup(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(v.entity_name(id), Some(name));
        }
        assert_eq!(v.lookup("  Dog "), v.lookup("dog"));
    }

    /// The entity a form names, by canonical name.
    fn named<'v>(v: &'v Vocabulary, form: &str) -> Option<&'v str> {
        v.lookup(form).and_then(|id| v.entity_name(id))
    }

    #[test]
    fn plurals_synonyms_and_senses() {
        let v = Vocabulary::builtin(Expansion::Fisao);
        assert_eq!(named(&v, "dogs"), Some("dog"));
        assert_eq!(named(&v, "Teddy Bears"), Some("teddy bear"));
        assert_eq!(named(&v, "hot dogs"), Some("hot dog"));
        assert_eq!(
            named(&v, "frankfurter"),
            Some("hot dog"),
            "WordNet lemma of frank.n.02"
        );
        assert_eq!(named(&v, "people"), Some("person"));
        assert_eq!(named(&v, "mice"), Some("mouse"));
        assert_eq!(named(&v, "sofa"), Some("couch"), "COCO couch = LVIS sofa");
        assert_eq!(named(&v, "television"), Some("tv"));
        assert_eq!(
            named(&v, "ski"),
            Some("skis"),
            "singular of COCO's plural name"
        );
        // dog.n.01 has no lemma "puppy": LVIS has its own puppy category.
        assert_eq!(named(&v, "puppy"), Some("puppy"));
        assert_eq!(named(&v, "puppies"), Some("puppy"));
    }

    #[test]
    fn wrong_senses_and_excluded_forms_are_absent() {
        let v = Vocabulary::builtin(Expansion::Fisao);
        // Other senses of "chair" and "cat", and slurs for "taco".
        for form in [
            "moderate", "purge", "chuck", "lead", "greaser", "wetback", "kid",
        ] {
            assert_eq!(v.lookup(form), None, "{form}");
        }
        // Reviewed exclusions: function words and misleading senses.
        for form in ["can", "top", "picture", "color", "home", "leg"] {
            assert_eq!(v.lookup(form), None, "{form}");
        }
        // The entity stays reachable through its other forms.
        assert_eq!(named(&v, "tin can"), Some("can"));
        assert_eq!(named(&v, "cans"), Some("can"));
        assert!(v.entity("can").is_some());
        // A reviewed assignment: "bat" is the baseball bat.
        assert_eq!(named(&v, "bat"), Some("baseball bat"));
        assert!(v.entity("bat (animal)").is_some());
    }

    #[test]
    fn paper_mode_keeps_every_sense() {
        let v = Vocabulary::builtin(Expansion::Paper);
        assert_eq!(named(&v, "moderate"), Some("chair"));
        assert_eq!(named(&v, "purge"), Some("cat"));
        assert_eq!(named(&v, "dog"), Some("dog"));
        assert_eq!(
            v.num_entities(),
            Vocabulary::builtin(Expansion::Fisao).num_entities()
        );
    }

    #[test]
    fn forms_are_unique_sorted_and_normalised() {
        for mode in [Expansion::Fisao, Expansion::Paper] {
            let v = Vocabulary::builtin(mode);
            let forms: Vec<(&str, EntityId)> = v.forms().collect();
            for pair in forms.windows(2) {
                assert!(
                    pair[0].0 < pair[1].0,
                    "{:?} not before {:?}",
                    pair[0].0,
                    pair[1].0
                );
            }
            for (form, id) in forms {
                assert_eq!(normalise(form), form);
                assert!(v.entity_name(id).is_some(), "{form} -> {id:?}");
                assert_eq!(v.lookup(form), Some(id));
            }
        }
    }

    #[test]
    fn coco_and_lvis_ids() {
        let v = Vocabulary::builtin(Expansion::Fisao);
        let coco: Vec<EntityId> = (1..=90).filter_map(|c| v.entity_of_coco_id(c)).collect();
        assert_eq!(coco.len(), 80);
        let dog = v.lookup("dog").unwrap();
        assert_eq!((v.coco_id(dog), v.lvis_id(dog)), (Some(18), Some(378)));
        let hot_dog = v.lookup("hot dog").unwrap();
        assert_eq!((v.coco_id(hot_dog), v.lvis_id(hot_dog)), (Some(58), None));
        let puppy = v.lookup("puppy").unwrap();
        assert_eq!(v.coco_id(puppy), None);
        assert!(v.lvis_id(puppy).is_some());
        let lvis = (0..v.num_entities())
            .filter(|&i| v.lvis_id(EntityId(i as u16)).is_some())
            .count();
        assert_eq!(lvis, 1203);
    }

    #[test]
    fn counts_are_stable() {
        // Regenerating the tables must not change these silently: update
        // them (and docs/vocabulary.md) together with the generator.
        let fisao = Vocabulary::builtin(Expansion::Fisao);
        let paper = Vocabulary::builtin(Expansion::Paper);
        assert_eq!(fisao.num_entities(), 1204);
        assert_eq!(fisao.num_forms(), FISAO_FORMS);
        assert_eq!(paper.num_forms(), PAPER_FORMS);
    }

    const FISAO_FORMS: usize = 4453;
    const PAPER_FORMS: usize = 5873;

    #[test]
    fn collision_is_an_error() {
        let err = Vocabulary::from_parts(
            ["cat", "dog"],
            vec![(String::from("pet"), 0), (String::from("pet"), 1)],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("\"pet\" maps to two entities"),
            "{err}"
        );
    }

    #[test]
    fn unknown_id_is_an_error() {
        let err = Vocabulary::from_parts(["cat"], vec![(String::from("kitty"), 3)]).unwrap_err();
        assert!(err.to_string().contains("entity id 3"), "{err}");
    }
}

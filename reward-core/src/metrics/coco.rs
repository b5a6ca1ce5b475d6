//! COCO annotations as CHAIR needs them (`instances_*.json` and
//! `captions_*.json` of COCO 2014, <https://cocodataset.org/#format-data>),
//! and the generated-caption JSON lines `{"image_id": ..., "caption": ...}`.
//!
//! Parsing from `&str` needs the `serde` feature; reading a directory needs
//! `std` too. Errors name the file, the line or the annotation index.

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;

#[cfg(feature = "serde")]
use super::chair::Caption;
#[cfg(feature = "serde")]
use super::error::{EvalError, EvalErrorKind};
#[cfg(feature = "serde")]
use alloc::{collections::BTreeMap, format};

/// Ground-truth material per image: instance categories and human captions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CocoAnnotations {
    images: BTreeSet<u64>,
    instances: Vec<(u64, String)>,
    captions: Vec<(u64, String)>,
}

impl CocoAnnotations {
    /// Declares an image (one without annotations still has a ground truth: empty).
    pub fn add_image(&mut self, image_id: u64) {
        self.images.insert(image_id);
    }

    /// Adds an instance of category `name` (a COCO category name) to an image.
    pub fn add_instance(&mut self, image_id: u64, name: &str) {
        self.images.insert(image_id);
        self.instances.push((image_id, String::from(name)));
    }

    /// Adds a human caption of an image.
    pub fn add_caption(&mut self, image_id: u64, caption: &str) {
        self.images.insert(image_id);
        self.captions.push((image_id, String::from(caption)));
    }

    /// Every known image id.
    pub fn image_ids(&self) -> &BTreeSet<u64> {
        &self.images
    }

    /// `(image id, category name)` per instance annotation.
    pub fn instances(&self) -> &[(u64, String)] {
        &self.instances
    }

    /// `(image id, caption)` per caption annotation.
    pub fn captions(&self) -> &[(u64, String)] {
        &self.captions
    }

    /// Adds a COCO `instances_*.json` document (`images`, `annotations`
    /// with `image_id` and `category_id`, `categories` with `id` and `name`).
    /// `file` names the source in errors. Other fields (segmentations,
    /// boxes) are skipped without being kept in memory.
    #[cfg(feature = "serde")]
    pub fn add_instances_json(&mut self, file: &str, json: &str) -> Result<(), EvalError> {
        let doc = parse_doc(file, json)?;
        self.add_images(file, &doc)?;
        let mut names = BTreeMap::new();
        for (i, cat) in required(file, doc.categories, "categories")?
            .into_iter()
            .enumerate()
        {
            let what = format!("categories[{i}]");
            let id = field(file, &what, cat.id, "id")?;
            names.insert(id, field(file, &what, cat.name, "name")?);
        }
        for (i, ann) in required(file, doc.annotations, "annotations")?
            .into_iter()
            .enumerate()
        {
            let what = format!("annotations[{i}]");
            let image = field(file, &what, ann.image_id, "image_id")?;
            let cat = field(file, &what, ann.category_id, "category_id")?;
            let name = names.get(&cat).ok_or_else(|| {
                parse_error(
                    file,
                    &what,
                    &format!("category_id {cat} is not in \"categories\""),
                )
            })?;
            self.add_instance(image, name);
        }
        Ok(())
    }

    /// Adds a COCO `captions_*.json` document (`images`, `annotations` with
    /// `image_id` and `caption`).
    #[cfg(feature = "serde")]
    pub fn add_captions_json(&mut self, file: &str, json: &str) -> Result<(), EvalError> {
        let doc = parse_doc(file, json)?;
        self.add_images(file, &doc)?;
        for (i, ann) in required(file, doc.annotations, "annotations")?
            .into_iter()
            .enumerate()
        {
            let what = format!("annotations[{i}]");
            let image = field(file, &what, ann.image_id, "image_id")?;
            let text = field(file, &what, ann.caption, "caption")?;
            self.add_caption(image, &text);
        }
        Ok(())
    }

    #[cfg(feature = "serde")]
    fn add_images(&mut self, file: &str, doc: &CocoDoc) -> Result<(), EvalError> {
        // `images` is optional: annotations alone also declare their images.
        for (i, img) in doc.images.iter().flatten().enumerate() {
            self.add_image(field(file, &format!("images[{i}]"), img.id, "id")?);
        }
        Ok(())
    }

    /// Reads every `instances_*.json` and `captions_*.json` file of a
    /// directory (COCO 2014 train+val, as chair.py). Errors if there is none
    /// of either kind.
    #[cfg(all(feature = "std", feature = "serde"))]
    pub fn load_dir(dir: &std::path::Path) -> Result<Self, EvalError> {
        let mut ann = Self::default();
        let (mut n_inst, mut n_caps) = (0, 0);
        let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, &e))?;
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let is_inst = name.starts_with("instances_") && name.ends_with(".json");
            let is_caps = name.starts_with("captions_") && name.ends_with(".json");
            if !is_inst && !is_caps {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| io_error(&path, &e))?;
            let label = format!("{}", path.display());
            if is_inst {
                ann.add_instances_json(&label, &text)?;
                n_inst += 1;
            } else {
                ann.add_captions_json(&label, &text)?;
                n_caps += 1;
            }
        }
        if n_inst == 0 || n_caps == 0 {
            return Err(EvalError::new(
                EvalErrorKind::Io,
                format!(
                    "{}: expected instances_*.json and captions_*.json files (found {n_inst} and {n_caps})",
                    dir.display()
                ),
            ));
        }
        Ok(ann)
    }
}

/// Parses generated captions, one JSON object per line:
/// `{"image_id": 42, "caption": "..."}`. `image_id` may also be a string of
/// digits. Blank lines are skipped; errors name the line.
#[cfg(feature = "serde")]
pub fn parse_captions_jsonl(file: &str, text: &str) -> Result<Vec<Caption>, EvalError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let what = format!("line {}", i + 1);
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| parse_error(file, &what, &format!("invalid JSON: {e}")))?;
        let image_id = image_id(file, &what, &v)?;
        let caption = string(file, &what, &v, "caption")?;
        out.push(Caption {
            image_id,
            caption: String::from(caption),
            line: i + 1,
        });
    }
    Ok(out)
}

/// An `image_id` given as a number or a string of digits.
#[cfg(feature = "serde")]
pub(crate) fn image_id(file: &str, what: &str, v: &serde_json::Value) -> Result<u64, EvalError> {
    match v.get("image_id") {
        Some(serde_json::Value::String(s)) => s.trim().parse().map_err(|_| {
            parse_error(
                file,
                what,
                &format!("\"image_id\" {s:?} is not a non-negative integer"),
            )
        }),
        _ => uint(file, what, v, "image_id"),
    }
}

/// The parts of a COCO annotation file CHAIR and the caption metrics read.
/// Fields are optional here so that a missing one is reported with its index.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct CocoDoc {
    images: Option<Vec<CocoImage>>,
    annotations: Option<Vec<CocoAnnotation>>,
    categories: Option<Vec<CocoCategory>>,
}

#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct CocoImage {
    id: Option<u64>,
}

#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct CocoAnnotation {
    image_id: Option<u64>,
    category_id: Option<u64>,
    caption: Option<String>,
}

#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct CocoCategory {
    id: Option<u64>,
    name: Option<String>,
}

#[cfg(feature = "serde")]
fn parse_doc(file: &str, json: &str) -> Result<CocoDoc, EvalError> {
    serde_json::from_str(json).map_err(|e| {
        EvalError::new(
            EvalErrorKind::Parse,
            format!("{file}: not a COCO annotation file: {e}"),
        )
    })
}

#[cfg(feature = "serde")]
fn required<T>(file: &str, v: Option<T>, key: &str) -> Result<T, EvalError> {
    v.ok_or_else(|| parse_error(file, "top level", &format!("missing array {key:?}")))
}

#[cfg(feature = "serde")]
fn field<T>(file: &str, what: &str, v: Option<T>, key: &str) -> Result<T, EvalError> {
    v.ok_or_else(|| parse_error(file, what, &format!("missing field {key:?}")))
}

#[cfg(feature = "serde")]
pub(crate) fn uint(
    file: &str,
    what: &str,
    v: &serde_json::Value,
    key: &str,
) -> Result<u64, EvalError> {
    match v.get(key) {
        None => Err(parse_error(file, what, &format!("missing field {key:?}"))),
        Some(x) => x.as_u64().ok_or_else(|| {
            parse_error(
                file,
                what,
                &format!("field {key:?} must be a non-negative integer, found {x}"),
            )
        }),
    }
}

#[cfg(feature = "serde")]
pub(crate) fn string<'v>(
    file: &str,
    what: &str,
    v: &'v serde_json::Value,
    key: &str,
) -> Result<&'v str, EvalError> {
    match v.get(key) {
        None => Err(parse_error(file, what, &format!("missing field {key:?}"))),
        Some(x) => x.as_str().ok_or_else(|| {
            parse_error(
                file,
                what,
                &format!("field {key:?} must be a string, found {x}"),
            )
        }),
    }
}

#[cfg(feature = "serde")]
pub(crate) fn parse_error(file: &str, what: &str, msg: &str) -> EvalError {
    EvalError::new(EvalErrorKind::Parse, format!("{file}: {what}: {msg}"))
}

#[cfg(all(feature = "std", feature = "serde"))]
pub(crate) fn io_error(path: &std::path::Path, e: &std::io::Error) -> EvalError {
    EvalError::new(EvalErrorKind::Io, format!("{}: {e}", path.display()))
}

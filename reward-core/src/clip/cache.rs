//! Embedding caches: CLIP embeddings computed once and stored as safetensors.
//!
//! method.md section 1: the verifier is frozen, so the text embeddings of the
//! whole entity vocabulary and the image embeddings of the training images
//! are computed once (`fisao embed vocab`, `fisao embed images`) and scoring
//! becomes a lookup and a dot product.
//!
//! File layout: one F32 tensor `embeddings` of shape `[n, projection_dim]`
//! (projected, unnormalised: every score kind can be computed from it) and
//! string metadata in the safetensors header (`__metadata__`):
//!
//! | key | value |
//! |---|---|
//! | `format` | `fisao-embeddings-v1` |
//! | `kind` | `vocab` or `images` |
//! | `model_hash` | `sha256:` + [`ClipModel::model_hash_hex`](super::ClipModel::model_hash_hex) |
//! | `logit_scale` | `exp(logit_scale)` of the model, for `cosine100` without the model |
//! | `template` | vocab: the text template, e.g. `{}` |
//! | `preprocess` | images: the [`Preprocess`] parameters as JSON |
//! | `keys` | JSON list, one per row: surface forms, or image paths as given |
//! | `digests` | images: JSON list of `sha256:` digests of the image files |
//!
//! A cache is refused, with an error naming the file and both values, when
//! its model hash, template or preprocessing differ from the run's. Parsing
//! works on bytes (wasm32 too); [`EmbeddingCache::save`] writes atomically
//! (temporary file in the same folder, fsync, rename).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::collections::HashMap;

use super::embeddings::Embeddings;
use super::error::ClipError;
use super::image::Preprocess;
use super::score::Template;

/// The `format` value this module writes and accepts.
pub const CACHE_FORMAT: &str = "fisao-embeddings-v1";
/// Name of the tensor holding the embeddings.
pub const TENSOR_NAME: &str = "embeddings";

/// What a cache holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKind {
    /// Text embeddings of vocabulary surface forms (through a template).
    Vocab,
    /// Image embeddings.
    Images,
}

impl CacheKind {
    fn as_str(self) -> &'static str {
        match self {
            CacheKind::Vocab => "vocab",
            CacheKind::Images => "images",
        }
    }
}

/// The metadata of a cache (see the module docs for the on-disk keys).
#[derive(Clone, Debug, PartialEq)]
pub struct CacheMeta {
    /// What the rows are.
    pub kind: CacheKind,
    /// `sha256:` + hex of the model hash.
    pub model_hash: String,
    /// `exp(logit_scale)` of the model.
    pub logit_scale: f32,
    /// Vocab caches: the template the forms went through.
    pub template: Option<String>,
    /// Image caches: the preprocessing parameters.
    pub preprocess: Option<Preprocess>,
    /// One key per row: the surface form, or the image path as given.
    pub keys: Vec<String>,
    /// Image caches: `sha256:` digest of each image file's bytes.
    pub digests: Vec<String>,
}

/// Embeddings plus their metadata, indexed for lookup.
#[derive(Clone, Debug)]
pub struct EmbeddingCache {
    meta: CacheMeta,
    embeddings: Embeddings,
    /// Key (vocab: form; images: digest) -> row.
    index: HashMap<String, usize>,
    /// Where it was read from, for error messages.
    file: String,
}

/// `sha256:` + hex digest of `bytes` (the image cache key).
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    let mut s = String::from("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl EmbeddingCache {
    /// Builds a cache; checks that there is one key (and for images one
    /// digest) per row.
    pub fn new(meta: CacheMeta, embeddings: Embeddings) -> Result<Self, ClipError> {
        Self::indexed(meta, embeddings, "<new cache>".into())
    }

    fn indexed(meta: CacheMeta, embeddings: Embeddings, file: String) -> Result<Self, ClipError> {
        let bad = |message: String| ClipError::Cache {
            file: file.clone(),
            message,
        };
        if meta.keys.len() != embeddings.rows() {
            return Err(bad(format!(
                "{} keys for {} embedding rows",
                meta.keys.len(),
                embeddings.rows()
            )));
        }
        let lookup_keys = match meta.kind {
            CacheKind::Vocab => &meta.keys,
            CacheKind::Images => {
                if meta.digests.len() != embeddings.rows() {
                    return Err(bad(format!(
                        "{} image digests for {} embedding rows",
                        meta.digests.len(),
                        embeddings.rows()
                    )));
                }
                &meta.digests
            }
        };
        let index = lookup_keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        Ok(Self {
            meta,
            embeddings,
            index,
            file,
        })
    }

    /// The metadata.
    pub fn meta(&self) -> &CacheMeta {
        &self.meta
    }

    /// All rows.
    pub fn embeddings(&self) -> &Embeddings {
        &self.embeddings
    }

    /// Vocab caches: the embedding of a surface form (as stored, lower case).
    pub fn form(&self, form: &str) -> Option<&[f32]> {
        (self.meta.kind == CacheKind::Vocab)
            .then(|| self.index.get(form).map(|&i| self.embeddings.row(i)))?
    }

    /// Image caches: the embedding of the image whose file bytes have this
    /// [`sha256_digest`].
    pub fn image(&self, digest: &str) -> Option<&[f32]> {
        (self.meta.kind == CacheKind::Images)
            .then(|| self.index.get(digest).map(|&i| self.embeddings.row(i)))?
    }

    fn refuse(&self, what: &str, cached: &str, wanted: &str, remedy: &str) -> ClipError {
        ClipError::Cache {
            file: self.file.clone(),
            message: format!(
                "was computed with {what} {cached}, but this run uses {wanted}; {remedy}"
            ),
        }
    }

    /// Refuses a cache of another kind.
    pub fn check_kind(&self, kind: CacheKind) -> Result<(), ClipError> {
        if self.meta.kind != kind {
            return Err(ClipError::Cache {
                file: self.file.clone(),
                message: format!(
                    "holds {} embeddings, expected {}",
                    self.meta.kind.as_str(),
                    kind.as_str()
                ),
            });
        }
        Ok(())
    }

    /// Refuses a cache made with another model (`model_hash` as `sha256:<hex>`).
    pub fn check_model(&self, model_hash: &str) -> Result<(), ClipError> {
        if self.meta.model_hash != model_hash {
            let remedy = "recompute it with `fisao embed` and this model";
            return Err(self.refuse("model", &self.meta.model_hash, model_hash, remedy));
        }
        Ok(())
    }

    /// Refuses a vocab cache made with another text template.
    pub fn check_template(&self, template: &Template) -> Result<(), ClipError> {
        let cached = self.meta.template.as_deref().unwrap_or("(none)");
        if cached != template.as_str() {
            let remedy = "pass the same --template or recompute the cache";
            return Err(self.refuse(
                "template",
                &format!("{cached:?}"),
                &format!("{:?}", template.as_str()),
                remedy,
            ));
        }
        Ok(())
    }

    /// Refuses an image cache made with other preprocessing.
    pub fn check_preprocess(&self, p: &Preprocess) -> Result<(), ClipError> {
        if self.meta.preprocess.as_ref() != Some(p) {
            let cached = self
                .meta
                .preprocess
                .as_ref()
                .map_or("(none)".into(), |c| format!("{c:?}"));
            return Err(self.refuse(
                "preprocessing",
                &cached,
                &format!("{p:?}"),
                "recompute the cache",
            ));
        }
        Ok(())
    }

    /// Serialises to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ClipError> {
        let data: Vec<u8> = self
            .embeddings
            .as_slice()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let shape = alloc::vec![self.embeddings.rows(), self.embeddings.dim()];
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &data)
            .map_err(|e| self.st_err(e))?;
        let bytes = safetensors::serialize([(TENSOR_NAME, view)], Some(self.header()?))
            .map_err(|e| self.st_err(e))?;
        sorted_header(&bytes).map_err(|message| ClipError::Safetensors {
            file: self.file.clone(),
            message,
        })
    }

    fn st_err(&self, e: safetensors::SafeTensorError) -> ClipError {
        ClipError::Safetensors {
            file: self.file.clone(),
            message: e.to_string(),
        }
    }

    /// The metadata. A `HashMap` because safetensors takes one; its order
    /// is undone by [`sorted_header`].
    fn header(&self) -> Result<HashMap<String, String>, ClipError> {
        let m = &self.meta;
        let mut h = HashMap::new();
        h.insert("format".into(), CACHE_FORMAT.into());
        h.insert("kind".into(), m.kind.as_str().into());
        h.insert("model_hash".into(), m.model_hash.clone());
        h.insert("logit_scale".into(), format!("{}", m.logit_scale));
        h.insert("keys".into(), to_json(&m.keys));
        if let Some(t) = &m.template {
            h.insert("template".into(), t.clone());
        }
        if let Some(p) = &m.preprocess {
            h.insert("preprocess".into(), to_json(p));
        }
        if m.kind == CacheKind::Images {
            h.insert("digests".into(), to_json(&m.digests));
        }
        Ok(h)
    }

    /// Parses safetensors bytes written by [`EmbeddingCache::to_bytes`];
    /// `file` names the source in errors.
    pub fn from_bytes(bytes: &[u8], file: &str) -> Result<Self, ClipError> {
        let st_err = |e: safetensors::SafeTensorError| ClipError::Safetensors {
            file: file.into(),
            message: e.to_string(),
        };
        let bad = |message: String| ClipError::Cache {
            file: file.into(),
            message,
        };
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(st_err)?;
        let md: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let get = |k: &str| {
            md.get(k).ok_or_else(|| {
                bad(format!(
                    "metadata has no {k:?} (not a fisao embedding cache?)"
                ))
            })
        };
        if get("format")? != CACHE_FORMAT {
            return Err(bad(format!(
                "format {:?} is not {CACHE_FORMAT:?}",
                md["format"]
            )));
        }
        let kind = match get("kind")?.as_str() {
            "vocab" => CacheKind::Vocab,
            "images" => CacheKind::Images,
            other => return Err(bad(format!("unknown kind {other:?}"))),
        };
        let parse_json = |k: &str| -> Result<serde_json::Value, ClipError> {
            serde_json::from_str(get(k)?).map_err(|e| bad(format!("metadata {k:?}: {e}")))
        };
        let strings = |k: &str| -> Result<Vec<String>, ClipError> {
            serde_json::from_value(parse_json(k)?).map_err(|e| bad(format!("metadata {k:?}: {e}")))
        };
        let meta = CacheMeta {
            kind,
            model_hash: get("model_hash")?.clone(),
            logit_scale: get("logit_scale")?
                .parse()
                .map_err(|e| bad(format!("logit_scale: {e}")))?,
            template: md.get("template").cloned(),
            preprocess: match kind {
                CacheKind::Images => Some(
                    serde_json::from_value(parse_json("preprocess")?)
                        .map_err(|e| bad(format!("preprocess: {e}")))?,
                ),
                CacheKind::Vocab => None,
            },
            keys: strings("keys")?,
            digests: if kind == CacheKind::Images {
                strings("digests")?
            } else {
                Vec::new()
            },
        };
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(st_err)?;
        let t = st
            .tensor(TENSOR_NAME)
            .map_err(|_| ClipError::MissingTensor {
                name: TENSOR_NAME.into(),
            })?;
        if t.dtype() != safetensors::Dtype::F32 || t.shape().len() != 2 {
            return Err(bad(format!(
                "tensor {TENSOR_NAME} is {:?} {:?}, expected F32 [n, dim]",
                t.dtype(),
                t.shape()
            )));
        }
        let (rows, dim) = (t.shape()[0], t.shape()[1]);
        let values: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let embeddings = Embeddings::new(values, rows, dim)
            .ok_or_else(|| bad(format!("{rows} x {dim} shape mismatch")))?;
        Self::indexed(meta, embeddings, file.into())
    }

    /// Reads a cache file.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &std::path::Path) -> Result<Self, ClipError> {
        let bytes = std::fs::read(path).map_err(|e| ClipError::io(path, e))?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Writes the cache atomically: a temporary file in the same folder,
    /// fsync, then rename over `path` (readers never see a half-written cache).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save(&self, path: &std::path::Path) -> Result<(), ClipError> {
        use std::io::Write;
        let bytes = self.to_bytes()?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map_or("cache".into(), |n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            // Make the rename itself durable (best effort: not every platform opens folders).
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            ClipError::io(path, e)
        })
    }
}

/// JSON text of a metadata value (serde_json cannot fail on these types).
fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `bytes` (a safetensors file) with its JSON header re-emitted in sorted
/// key order. safetensors writes the metadata in the order a `HashMap`
/// iterates, which changes from run to run, so the same cache came out as
/// different bytes; sorted, it is reproducible (same inputs, same file).
fn sorted_header(bytes: &[u8]) -> Result<Vec<u8>, String> {
    #[derive(serde::Serialize)]
    struct Header<'a> {
        #[serde(rename = "__metadata__", skip_serializing_if = "Option::is_none")]
        metadata: Option<BTreeMap<String, String>>,
        #[serde(flatten)]
        tensors: &'a BTreeMap<String, serde_json::Value>,
    }
    let head: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or("shorter than a safetensors header")?;
    let end = usize::try_from(u64::from_le_bytes(head))
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&end| end <= bytes.len())
        .ok_or("header length past the end")?;
    let mut tensors: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..end]).map_err(|e| e.to_string())?;
    let metadata = tensors
        .remove("__metadata__")
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| e.to_string())?;
    let header = Header {
        metadata,
        tensors: &tensors,
    };
    let mut text = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    // safetensors pads the header with spaces to keep the data 8-aligned.
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - end);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[end..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn vocab_cache() -> EmbeddingCache {
        let meta = CacheMeta {
            kind: CacheKind::Vocab,
            model_hash: "sha256:aa".into(),
            logit_scale: 100.0,
            template: Some("a photo of a {}.".into()),
            preprocess: None,
            keys: vec!["cat".into(), "dog".into()],
            digests: vec![],
        };
        EmbeddingCache::new(
            meta,
            Embeddings::new(vec![1.0, 2.0, 3.0, -4.5, 0.25, 6.0], 2, 3).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn round_trip_and_lookup() {
        let c = vocab_cache();
        let back = EmbeddingCache::from_bytes(&c.to_bytes().unwrap(), "mem").unwrap();
        assert_eq!(back.meta(), c.meta());
        assert_eq!(back.form("dog"), Some(&[-4.5f32, 0.25, 6.0][..]));
        assert_eq!(back.form("cow"), None);
        assert_eq!(back.image("sha256:aa"), None);
    }

    #[test]
    fn the_same_cache_is_always_the_same_bytes() {
        // Each `to_bytes` builds its metadata in a fresh HashMap (its own
        // random order): six keys, so unsorted output would differ.
        let first = vocab_cache().to_bytes().unwrap();
        for _ in 0..20 {
            assert_eq!(vocab_cache().to_bytes().unwrap(), first);
        }
        let n = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0, "the data stays 8-aligned");
        let text = core::str::from_utf8(&first[8..8 + n]).unwrap();
        let at = |key: &str| text.find(&format!("\"{key}\"")).unwrap();
        let order = [
            "format",
            "keys",
            "kind",
            "logit_scale",
            "model_hash",
            "template",
        ];
        assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{text}");
        // Still a file safetensors (and this crate) reads.
        let back = EmbeddingCache::from_bytes(&first, "mem").unwrap();
        assert_eq!(back.meta(), vocab_cache().meta());
        assert_eq!(back.embeddings(), vocab_cache().embeddings());
    }

    #[test]
    fn refusals_name_both_values() {
        let c = EmbeddingCache::from_bytes(&vocab_cache().to_bytes().unwrap(), "v.safetensors")
            .unwrap();
        let e = c.check_model("sha256:bb").unwrap_err().to_string();
        assert!(
            e.contains("v.safetensors") && e.contains("sha256:aa") && e.contains("sha256:bb"),
            "{e}"
        );
        let e = c
            .check_template(&Template::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a photo of a {}.") && e.contains("\"{}\""),
            "{e}"
        );
        assert!(
            c.check_template(&Template::new("a photo of a {}.").unwrap())
                .is_ok()
        );
        assert!(c.check_kind(CacheKind::Images).is_err());
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert!(EmbeddingCache::from_bytes(b"not safetensors", "x").is_err());
        let mut meta = vocab_cache().meta().clone();
        meta.keys.pop();
        assert!(EmbeddingCache::new(meta, Embeddings::new(vec![0.0; 6], 2, 3).unwrap()).is_err());
    }
}

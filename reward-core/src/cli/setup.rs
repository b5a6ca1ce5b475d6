//! Loading what every command needs: the model, its preprocessing, caches.

use std::path::Path;

use anyhow::{Context, Result, bail};
use reward_core::clip::ClipConfig;
use reward_core::clip::cache::{CacheKind, EmbeddingCache};
use reward_core::clip::image::Preprocess;
use reward_core::gpu::{Backend, Verifier};

/// A loaded model with its `sha256:` hash and image preprocessing.
pub struct Loaded {
    /// The model on the backend picked by `--backend`.
    pub model: Verifier,
    pub hash: String,
    pub preprocess: Preprocess,
}

/// Loads the checkpoint folder on `backend` and its
/// `preprocessor_config.json` (or the OpenAI defaults for the vision
/// tower's size when the file is absent).
pub fn load_model(dir: &Path, backend: Backend) -> Result<Loaded> {
    let model = Verifier::load(dir, backend)
        .with_context(|| format!("loading CLIP model from {}", dir.display()))?;
    let preprocess = preprocess_for(dir, model.config())?;
    let hash = format!("sha256:{}", model.model_hash_hex());
    Ok(Loaded {
        model,
        hash,
        preprocess,
    })
}

fn preprocess_for(dir: &Path, config: &ClipConfig) -> Result<Preprocess> {
    let size = config.image_size() as u32;
    let file = dir.join("preprocessor_config.json");
    let p = if file.exists() {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        Preprocess::from_preprocessor_config(&text)
            .with_context(|| format!("in {}", file.display()))?
    } else {
        Preprocess::for_image_size(size)
    };
    if p.crop_height != size || p.crop_width != size {
        bail!(
            "{}: crop {}x{} does not match the vision tower's image_size {size}",
            file.display(),
            p.crop_width,
            p.crop_height
        );
    }
    Ok(p)
}

/// Loads a cache and checks its kind (and, with a model, its hash).
pub fn load_cache(
    path: &Path,
    kind: CacheKind,
    model_hash: Option<&str>,
) -> Result<EmbeddingCache> {
    let cache = EmbeddingCache::load(path)?;
    cache.check_kind(kind)?;
    if let Some(h) = model_hash {
        cache.check_model(h)?;
    }
    Ok(cache)
}

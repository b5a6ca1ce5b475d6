//! `fisao embed vocab` and `fisao embed images`: compute embeddings once and
//! write them as safetensors caches (reward_core::clip::cache), with a
//! progress bar on the terminal.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use reward_core::clip::Embeddings;
use reward_core::clip::cache::{CacheKind, CacheMeta, EmbeddingCache, sha256_digest};
use reward_core::clip::image::{ImageLimits, Preprocess, decode_image, preprocess};
use reward_core::clip::score::Template;
use reward_core::gpu::Backend;
use reward_core::vocab::{Expansion, Vocabulary};

use super::setup::load_model;

/// Extensions `embed images` picks up from a folder.
const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

fn progress(len: usize, what: &str) -> ProgressBar {
    // indicatif draws to stderr and stays hidden when it is not a terminal.
    let bar = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// `fisao embed vocab`: every surface form of the built-in vocabulary.
pub fn vocab(
    model_dir: &Path,
    template: &str,
    out: &Path,
    batch: usize,
    backend: Backend,
) -> Result<()> {
    let template = Template::new(template)?;
    let loaded = load_model(model_dir, backend)?;
    let vocab = Vocabulary::builtin(Expansion::Fisao);
    let forms: Vec<String> = vocab.forms().map(|(f, _)| f.to_string()).collect();
    let texts: Vec<String> = forms.iter().map(|f| template.apply(f)).collect();
    let bar = progress(texts.len(), "embedding surface forms");
    let mut values = Vec::new();
    let mut truncated = 0;
    for chunk in texts.chunks(batch.max(1)) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let emb = loaded.model.embed_texts(&refs)?;
        truncated += emb.truncated.iter().filter(|t| **t).count();
        values.extend_from_slice(emb.embeddings.as_slice());
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let dim = loaded.model.config().projection_dim();
    let meta = CacheMeta {
        kind: CacheKind::Vocab,
        model_hash: loaded.hash.clone(),
        logit_scale: loaded.model.logit_scale(),
        template: Some(template.as_str().to_string()),
        preprocess: None,
        keys: forms,
        digests: Vec::new(),
    };
    let rows = meta.keys.len();
    let embeddings =
        Embeddings::new(values, rows, dim).context("embedding rows do not match the forms")?;
    EmbeddingCache::new(meta, embeddings)?.save(out)?;
    eprintln!(
        "wrote {rows} surface-form embeddings ({dim} wide, template {:?}) to {}",
        template.as_str(),
        out.display()
    );
    if truncated > 0 {
        eprintln!(
            "warning: {truncated} templated forms were longer than CLIP's 77-token window and were truncated"
        );
    }
    Ok(())
}

/// The image files named by `input`: a folder's images, or a list file.
fn image_paths(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_dir() {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(input)
            .with_context(|| format!("listing {}", input.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())
                    })
            })
            .collect();
        paths.sort();
        if paths.is_empty() {
            bail!(
                "{}: no .png, .jpg, .jpeg or .webp files in this folder",
                input.display()
            );
        }
        return Ok(paths);
    }
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("reading image list {}", input.display()))?;
    let base = input.parent().unwrap_or(Path::new(""));
    let paths: Vec<PathBuf> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| base.join(l))
        .collect();
    if paths.is_empty() {
        bail!("{}: the image list is empty", input.display());
    }
    Ok(paths)
}

/// One batch of images, read, decoded and preprocessed.
struct Decoded {
    keys: Vec<String>,
    digests: Vec<String>,
    pixels: Vec<f32>,
}

/// Reads, decodes and preprocesses `paths` on all cores (rayon), in order;
/// the first failing file's error.
fn decode_batch(paths: &[PathBuf], pre: &Preprocess, limits: &ImageLimits) -> Result<Decoded> {
    let each: Vec<(String, String, Vec<f32>)> = paths
        .par_iter()
        .map(|path| {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading image {}", path.display()))?;
            let name = path.display().to_string();
            let img = decode_image(&bytes, &name, limits)?;
            Ok((name, sha256_digest(&bytes), preprocess(&img, pre)?))
        })
        .collect::<Result<_>>()?;
    let mut batch = Decoded {
        keys: Vec::with_capacity(each.len()),
        digests: Vec::with_capacity(each.len()),
        pixels: Vec::with_capacity(each.len() * pre.output_len()),
    };
    for (key, digest, pixels) in each {
        batch.keys.push(key);
        batch.digests.push(digest);
        batch.pixels.extend(pixels);
    }
    Ok(batch)
}

/// `fisao embed images`: decode, preprocess and embed each image. A second
/// thread decodes batch i + 1 (on all cores) while batch i is embedded:
/// decoding alone ran at ~100 images/s on one core of the dev box, below
/// what a GPU embeds.
pub fn images(
    model_dir: &Path,
    input: &Path,
    out: &Path,
    batch: usize,
    backend: Backend,
) -> Result<()> {
    let loaded = load_model(model_dir, backend)?;
    let paths = image_paths(input)?;
    let bar = progress(paths.len(), "embedding images");
    let limits = ImageLimits::default();
    let (mut keys, mut digests, mut values) = (Vec::new(), Vec::new(), Vec::new());
    let pre = &loaded.preprocess;
    std::thread::scope(|scope| -> Result<()> {
        // One batch decoded ahead: memory for two batches of pixels at most.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (paths, limits) = (&paths, &limits);
        scope.spawn(move || {
            for chunk in paths.chunks(batch.max(1)) {
                let decoded = decode_batch(chunk, pre, limits);
                let failed = decoded.is_err();
                // A closed channel: the embedding side stopped on an error.
                if tx.send(decoded).is_err() || failed {
                    break;
                }
            }
        });
        for decoded in rx {
            let d = decoded?;
            let n = d.keys.len();
            let emb = loaded.model.embed_images(&d.pixels, n)?;
            values.extend_from_slice(emb.as_slice());
            keys.extend(d.keys);
            digests.extend(d.digests);
            bar.inc(n as u64);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let dim = loaded.model.config().projection_dim();
    let rows = keys.len();
    let meta = CacheMeta {
        kind: CacheKind::Images,
        model_hash: loaded.hash.clone(),
        logit_scale: loaded.model.logit_scale(),
        template: None,
        preprocess: Some(loaded.preprocess.clone()),
        keys,
        digests,
    };
    let embeddings =
        Embeddings::new(values, rows, dim).context("embedding rows do not match the images")?;
    EmbeddingCache::new(meta, embeddings)?.save(out)?;
    eprintln!(
        "wrote {rows} image embeddings ({dim} wide) to {}",
        out.display()
    );
    Ok(())
}

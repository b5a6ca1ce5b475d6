//! The CLIP towers on the CPU (reward-core's `clip` module, single-threaded
//! in WASM): loading a checkpoint from bytes the page read, preprocessing an
//! uploaded image and embedding it, embedding texts. Mirrors
//! `load_model` / `Ctx::image_embedding` of `fisao score`
//! (reward-core/src/cli/setup.rs and score.rs).

use reward_core::clip::image::{ImageLimits, Preprocess, decode_image, preprocess};
use reward_core::clip::{ClipModel, TextEmbeddings};

/// A checkpoint as the page hands it over: the bytes of each file.
pub struct CheckpointBytes<'a> {
    /// `config.json`.
    pub config: &'a [u8],
    /// `model.safetensors`, or every shard.
    pub weights: Vec<&'a [u8]>,
    /// `tokenizer.json`.
    pub tokenizer: &'a [u8],
    /// `preprocessor_config.json`, when the checkpoint has one.
    pub preprocessor: Option<&'a str>,
}

/// The model and its image preprocessing.
pub struct CpuTowers {
    /// The CPU CLIP model.
    pub model: ClipModel,
    /// Resize, crop and normalisation for its vision tower.
    pub preprocess: Preprocess,
}

impl CpuTowers {
    /// Parses and checks a checkpoint.
    pub fn load(files: &CheckpointBytes<'_>) -> Result<Self, String> {
        let model = ClipModel::from_bytes(files.config, &files.weights, files.tokenizer)
            .map_err(|e| format!("loading the CLIP model: {e}"))?;
        let size = model.config().image_size() as u32;
        let preprocess = preprocess_checked(size, files.preprocessor)?;
        Ok(Self { model, preprocess })
    }

    /// `sha256:` + hex of the model hash (what caches are keyed by).
    pub fn model_hash(&self) -> String {
        format!("sha256:{}", self.model.model_hash_hex())
    }

    /// Decodes, preprocesses and embeds one image.
    pub fn embed_image(&self, bytes: &[u8], name: &str) -> Result<Vec<f32>, String> {
        let pixels = image_pixels(bytes, name, &self.preprocess)?;
        let emb = self
            .model
            .embed_images(&pixels, 1)
            .map_err(|e| e.to_string())?;
        Ok(emb.row(0).to_vec())
    }

    /// Embeds texts with the text tower.
    pub fn embed_texts(&self, texts: &[String]) -> Result<TextEmbeddings, String> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        self.model.embed_texts(&refs).map_err(|e| e.to_string())
    }
}

/// Decoded and preprocessed pixels (`3 x size x size`, CHW) of an image file.
pub fn image_pixels(bytes: &[u8], name: &str, p: &Preprocess) -> Result<Vec<f32>, String> {
    if bytes.is_empty() {
        return Err(format!("{name}: the image file is empty"));
    }
    let img = decode_image(bytes, name, &ImageLimits::default()).map_err(|e| e.to_string())?;
    preprocess(&img, p).map_err(|e| e.to_string())
}

/// The checkpoint's preprocessing, or CLIP's defaults for its image size
/// `size`; refused when the crop does not fit the vision tower (as `fisao
/// score`).
pub fn preprocess_checked(size: u32, json: Option<&str>) -> Result<Preprocess, String> {
    let p = match json {
        Some(text) => Preprocess::from_preprocessor_config(text)
            .map_err(|e| format!("preprocessor_config.json: {e}"))?,
        None => Preprocess::for_image_size(size),
    };
    if p.crop_height != size || p.crop_width != size {
        return Err(format!(
            "preprocessor_config.json: crop {}x{} does not match the vision tower's image_size {size}",
            p.crop_width, p.crop_height
        ));
    }
    Ok(p)
}

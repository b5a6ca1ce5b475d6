//! The JavaScript API of the highlighter (wasm32 only): the page's worker
//! (web/www/worker.js) loads a checkpoint into a [`Highlighter`] on the CPU
//! (`loadCpu`) or on WebGPU (`loadGpu`, feature `gpu`), sets an image, and
//! asks for reports as JSON. Methods that may run a tower return Promises
//! (the GPU is asynchronous in a browser; the CPU resolves at once). Errors
//! are `Error`s whose message names the problem (file, tensor, shape).

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::cpu::{CheckpointBytes, CpuTowers};
#[cfg(feature = "gpu")]
use crate::gpu::GpuTowers;
use crate::session::{Session, Settings};

#[wasm_bindgen]
extern "C" {
    /// `console.error`.
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &str);
}

/// Runs when the module is instantiated: a panic (a bug) writes its message
/// and location to the console before the module traps, where the page
/// would otherwise only see `RuntimeError: unreachable`.
#[wasm_bindgen(start)]
fn on_start() {
    std::panic::set_hook(Box::new(|info| {
        console_error(&format!("fisao-web panicked: {info}"));
    }));
}

/// Which towers compute embeddings. Shared (`Rc`) so that an async call can
/// hold them across an `await` without borrowing the session.
#[derive(Clone)]
enum Towers {
    Cpu(Rc<CpuTowers>),
    #[cfg(feature = "gpu")]
    Gpu(Rc<GpuTowers>),
}

impl Towers {
    fn backend(&self) -> String {
        match self {
            Towers::Cpu(_) => "wasm-cpu".to_string(),
            #[cfg(feature = "gpu")]
            Towers::Gpu(g) => g.backend().to_string(),
        }
    }

    async fn embed_image(&self, bytes: &[u8], name: &str) -> Result<Vec<f32>, String> {
        match self {
            Towers::Cpu(c) => c.embed_image(bytes, name),
            #[cfg(feature = "gpu")]
            Towers::Gpu(g) => g.embed_image(bytes, name).await,
        }
    }

    async fn embed_texts(
        &self,
        texts: &[String],
    ) -> Result<reward_core::clip::TextEmbeddings, String> {
        match self {
            Towers::Cpu(c) => c.embed_texts(texts),
            #[cfg(feature = "gpu")]
            Towers::Gpu(g) => g.embed_texts(texts).await,
        }
    }
}

/// A loaded model, its current image and its embedding memo.
#[wasm_bindgen]
pub struct Highlighter {
    session: Rc<RefCell<Session>>,
    towers: Towers,
    info: String,
}

fn js(e: String) -> JsError {
    JsError::new(&e)
}

fn js_value(e: String) -> JsValue {
    JsError::new(&e).into()
}

/// Copies the JS buffers into wasm memory.
fn owned(weights: &[Uint8Array]) -> Vec<Vec<u8>> {
    weights.iter().map(Uint8Array::to_vec).collect()
}

#[wasm_bindgen]
impl Highlighter {
    /// Loads a checkpoint on the CPU (WASM): `config.json`, the safetensors
    /// shards, `tokenizer.json` and, optionally, `preprocessor_config.json`.
    #[wasm_bindgen(js_name = loadCpu)]
    pub fn load_cpu(
        config: &[u8],
        weights: Vec<Uint8Array>,
        tokenizer: &[u8],
        preprocessor: Option<String>,
    ) -> Result<Highlighter, JsError> {
        let owned = owned(&weights);
        let files = CheckpointBytes {
            config,
            weights: owned.iter().map(Vec::as_slice).collect(),
            tokenizer,
            preprocessor: preprocessor.as_deref(),
        };
        let towers = CpuTowers::load(&files).map_err(js)?;
        let session = Session::new(
            towers.model.logit_scale(),
            towers.model.config().projection_dim(),
            Some(towers.model_hash()),
        );
        let info = model_info(
            towers.model.config(),
            towers.model.logit_scale(),
            session.model_hash(),
            "cpu",
        );
        Ok(Highlighter {
            session: Rc::new(RefCell::new(session)),
            towers: Towers::Cpu(Rc::new(towers)),
            info,
        })
    }

    /// Loads a checkpoint onto the browser's WebGPU adapter (f16 when it has
    /// `shader-f16`, else f32). Resolves to a `Highlighter`.
    #[cfg(feature = "gpu")]
    #[wasm_bindgen(js_name = loadGpu)]
    pub async fn load_gpu(
        config: Vec<u8>,
        weights: Vec<Uint8Array>,
        tokenizer: Vec<u8>,
        preprocessor: Option<String>,
    ) -> Result<Highlighter, JsError> {
        let owned = owned(&weights);
        let files = CheckpointBytes {
            config: &config,
            weights: owned.iter().map(Vec::as_slice).collect(),
            tokenizer: &tokenizer,
            preprocessor: preprocessor.as_deref(),
        };
        let towers = GpuTowers::load(&files).await.map_err(js)?;
        // The GPU model has no content hash yet: vocabulary caches are
        // refused on this backend (Session::set_vocab_cache says so).
        let session = Session::new(
            towers.model.logit_scale(),
            towers.model.config().projection_dim(),
            None,
        );
        let info = model_info(
            towers.model.config(),
            towers.model.logit_scale(),
            session.model_hash(),
            &towers.adapter(),
        );
        Ok(Highlighter {
            session: Rc::new(RefCell::new(session)),
            towers: Towers::Gpu(Rc::new(towers)),
            info,
        })
    }

    /// Which towers run: `wasm-cpu`, `webgpu-f16` or `webgpu-f32`.
    pub fn backend(&self) -> String {
        self.towers.backend()
    }

    /// The model's shape, hash and device as JSON, for the status line.
    #[wasm_bindgen(js_name = modelInfo)]
    pub fn model_info(&self) -> String {
        self.info.clone()
    }

    /// Decodes, preprocesses and embeds an image (PNG, JPEG or WebP); a
    /// Promise. On error the previous image is forgotten, so nothing stale
    /// is scored.
    #[wasm_bindgen(js_name = setImage)]
    pub fn set_image(&self, bytes: Vec<u8>, name: String) -> Promise {
        let (session, towers) = (self.session.clone(), self.towers.clone());
        session.borrow_mut().clear_image();
        future_to_promise(async move {
            let emb = towers.embed_image(&bytes, &name).await.map_err(js_value)?;
            session
                .borrow_mut()
                .set_image_embedding(emb)
                .map_err(js_value)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Uses a vocabulary cache from `fisao embed vocab` (same model);
    /// returns a one-line description.
    #[wasm_bindgen(js_name = setVocabCache)]
    pub fn set_vocab_cache(&self, bytes: &[u8], name: &str) -> Result<String, JsError> {
        self.session
            .borrow_mut()
            .set_vocab_cache(bytes, name)
            .map_err(js)
    }

    /// Uses a `baseline.json` (object-level, this model) for rewards and
    /// labels; returns a one-line description.
    #[wasm_bindgen(js_name = setBaselines)]
    pub fn set_baselines(&self, json: &str, name: &str) -> Result<String, JsError> {
        self.session
            .borrow_mut()
            .set_baselines(json, name)
            .map_err(js)
    }

    /// Back to the default, uncalibrated baselines.
    #[wasm_bindgen(js_name = clearBaselines)]
    pub fn clear_baselines(&self) {
        self.session.borrow_mut().clear_baselines();
    }

    /// Stops using the vocabulary cache.
    #[wasm_bindgen(js_name = clearVocabCache)]
    pub fn clear_vocab_cache(&self) {
        self.session.borrow_mut().clear_vocab_cache();
    }

    /// A Promise of the report for `text` as JSON; `settings` is a JSON
    /// object with any of `template`, `margin`, `score`, `sentence`.
    pub fn score(&self, text: String, settings: String) -> Promise {
        let (session, towers) = (self.session.clone(), self.towers.clone());
        future_to_promise(async move {
            let report = score(&session, &towers, &text, &settings)
                .await
                .map_err(js_value)?;
            Ok(JsValue::from_str(&report))
        })
    }
}

/// Runs the text tower on what the session lacks, then reports.
async fn score(
    session: &RefCell<Session>,
    towers: &Towers,
    text: &str,
    settings: &str,
) -> Result<String, String> {
    let settings = Settings::from_json(settings)?;
    if session.borrow().image_embedding().is_none() {
        return Err("no image: choose an image before scoring".into());
    }
    let plan = session.borrow().plan(text, &settings)?;
    if !plan.texts.is_empty() {
        let emb = towers.embed_texts(&plan.texts).await?;
        session
            .borrow_mut()
            .remember(&settings, &plan, emb.embeddings.to_rows())?;
    }
    let sentence = if settings.sentence {
        let emb = towers.embed_texts(&[text.to_string()]).await?;
        Some(
            session
                .borrow()
                .sentence_score(&settings, emb.embeddings.row(0), emb.truncated[0])?,
        )
    } else {
        None
    };
    let mut report = session.borrow().report(text, &settings, sentence)?;
    report.backend = towers.backend();
    serde_json::to_string(&report).map_err(|e| e.to_string())
}

fn model_info(
    c: &reward_core::clip::ClipConfig,
    logit_scale: f32,
    hash: Option<&str>,
    device: &str,
) -> String {
    serde_json::json!({
        "hash": hash,
        "image_size": c.image_size(),
        "projection_dim": c.projection_dim(),
        "vision_layers": c.vision_config.num_hidden_layers,
        "text_layers": c.text_config.num_hidden_layers,
        "logit_scale": logit_scale,
        "device": device,
    })
    .to_string()
}

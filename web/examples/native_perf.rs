//! The highlighter's work timed natively, for comparison with the page
//! (web/tests/browser/perf.mjs runs both in one go): the same crate and the
//! same steps as the page's worker, single-threaded like WASM.
//!
//! Usage: native_perf MODEL_DIR IMAGE CAPTION...
//! Prints one JSON object: `load_ms` (read the files, build the model from
//! bytes), `image_ms` (decode, preprocess, embed), `score_ms` (per caption,
//! a fresh memo each time: text tower for its forms and for the whole
//! caption, then the report).

use std::path::Path;
use std::time::Instant;

use fisao_web::cpu::{CheckpointBytes, CpuTowers};
use fisao_web::session::{Session, Settings};

fn main() {
    if let Err(e) = run() {
        eprintln!("native_perf: {e}");
        std::process::exit(1);
    }
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, image, captions @ ..] = args.as_slice() else {
        return Err("usage: native_perf MODEL_DIR IMAGE CAPTION...".into());
    };
    let dir = Path::new(dir);
    let t = Instant::now();
    let (config, weights, tokenizer) = (
        read(&dir.join("config.json"))?,
        read(&dir.join("model.safetensors"))?,
        read(&dir.join("tokenizer.json"))?,
    );
    let towers = CpuTowers::load(&CheckpointBytes {
        config: &config,
        weights: vec![&weights],
        tokenizer: &tokenizer,
        preprocessor: None,
    })?;
    drop(weights);
    let load_ms = ms(t);
    let image_bytes = read(Path::new(image))?;
    let t = Instant::now();
    let emb = towers.embed_image(&image_bytes, image)?;
    let image_ms = ms(t);
    let settings = Settings::default();
    let mut score_ms = Vec::new();
    for caption in captions {
        // A fresh session per caption: no memo, as on a fresh page.
        let mut session = Session::new(
            towers.model.logit_scale(),
            towers.model.config().projection_dim(),
            Some(towers.model_hash()),
        );
        session.set_image_embedding(emb.clone())?;
        let t = Instant::now();
        let plan = session.plan(caption, &settings)?;
        if !plan.texts.is_empty() {
            let e = towers.embed_texts(&plan.texts)?;
            session.remember(&settings, &plan, e.embeddings.to_rows())?;
        }
        let whole = towers.embed_texts(std::slice::from_ref(caption))?;
        let sentence =
            session.sentence_score(&settings, whole.embeddings.row(0), whole.truncated[0])?;
        let report = session.report(caption, &settings, Some(sentence))?;
        std::hint::black_box(report);
        score_ms.push(ms(t));
    }
    println!(
        "{}",
        serde_json::json!({ "load_ms": load_ms, "image_ms": image_ms, "score_ms": score_ms })
    );
    Ok(())
}

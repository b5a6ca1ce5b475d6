//! Throughput of the CPU CLIP path (reward-core, feature `parallel`):
//! images/s and texts/s on a checkpoint directory. The Rust half of
//! `benches/clip_cpu.sh`; `benches/clip_cpu.py` is the PyTorch half and
//! uses the same inputs (same pixel formula, same captions).
//!
//! Usage: `clip_cpu_bench <checkpoint dir> <images> <texts> <repeats>`.
//! Threads: rayon's pool, set with `RAYON_NUM_THREADS`. Prints one JSON line.

use std::path::PathBuf;
use std::time::Instant;

use reward_core::clip::ClipModel;

/// The captions both halves embed, cycled to the requested count.
const CAPTIONS: [&str; 8] = [
    "a photo of a cat",
    "a man riding a wave on top of a surfboard",
    "two dogs playing with a frisbee in a grassy park",
    "a kitchen with a stove, a sink and a refrigerator",
    "a plate of food with broccoli, rice and a piece of chicken",
    "a red double decker bus driving down a city street next to tall buildings",
    "a giraffe standing next to a tree in a zoo enclosure",
    "a laptop computer sitting on top of a wooden desk beside a cup of coffee and a notebook",
];

/// Pixel `i` of the batch: a fixed smooth pattern in [-2, 2], also written by clip_cpu.py.
fn pixel(i: usize) -> f32 {
    ((i % 9973) as f32 * 0.001).sin() * 2.0
}

fn arg(args: &[String], i: usize, name: &str) -> Result<String, String> {
    args.get(i)
        .cloned()
        .ok_or_else(|| format!("missing argument <{name}>"))
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(arg(&args, 1, "checkpoint dir")?);
    let parse = |i, n| {
        arg(&args, i, n)?
            .parse::<usize>()
            .map_err(|e| format!("{n}: {e}"))
    };
    let (n_images, n_texts, repeats) = (
        parse(2, "images")?,
        parse(3, "texts")?,
        parse(4, "repeats")?,
    );

    let t0 = Instant::now();
    let model = ClipModel::load(&dir).map_err(|e| e.to_string())?;
    let load_s = t0.elapsed().as_secs_f64();
    let size = model.config().image_size();
    let pixels: Vec<f32> = (0..n_images * 3 * size * size).map(pixel).collect();
    let texts: Vec<&str> = (0..n_texts).map(|i| CAPTIONS[i % CAPTIONS.len()]).collect();

    // One warm-up pass each (page faults, thread pool start), then the best of `repeats`.
    let mut checksum = model
        .embed_images(&pixels, n_images)
        .map_err(|e| e.to_string())?
        .as_slice()[0];
    checksum += model
        .embed_texts(&texts)
        .map_err(|e| e.to_string())?
        .embeddings
        .as_slice()[0];
    let (mut best_img, mut best_txt) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..repeats {
        let t = Instant::now();
        let img = model
            .embed_images(&pixels, n_images)
            .map_err(|e| e.to_string())?;
        best_img = best_img.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let txt = model.embed_texts(&texts).map_err(|e| e.to_string())?;
        best_txt = best_txt.min(t.elapsed().as_secs_f64());
        checksum += img.as_slice()[0] + txt.embeddings.as_slice()[0];
    }
    println!(
        "{{\"side\": \"rust\", \"dir\": {:?}, \"threads\": {}, \"images\": {n_images}, \"texts\": {n_texts}, \
         \"images_per_s\": {:.4}, \"texts_per_s\": {:.3}, \"load_s\": {load_s:.2}, \"checksum\": {checksum}}}",
        dir.display().to_string(),
        threads(),
        n_images as f64 / best_img,
        n_texts as f64 / best_txt,
    );
    Ok(())
}

/// Rayon's pool size when built with threads (always, for this binary).
fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

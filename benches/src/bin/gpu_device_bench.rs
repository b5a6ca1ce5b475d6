//! Throughput of the wgpu CLIP image tower (reward-core, feature `gpu`):
//! images/s on a checkpoint directory. The Rust half of
//! `benches/gpu_device.sh`; `benches/gpu_device.py` is the PyTorch CUDA fp16
//! half and uses the same weights and the same pixels.
//!
//! Usage: `gpu_device_bench <checkpoint dir> <batch> <repeats> [f32|f16]`.
//! Prints one JSON line; writes the embeddings of the first two images to
//! `<dir>/gpu_embeddings.f32` (little-endian f32) for the parity check.

use std::path::PathBuf;
use std::time::Instant;

use reward_core::gpu::{GpuClipModel, GpuContext, GpuOptions, Precision};

/// Pixel `i` of the batch: a fixed smooth pattern in [-2, 2], also written by gpu_device.py.
fn pixel(i: usize) -> f32 {
    ((i % 9973) as f32 * 0.001).sin() * 2.0
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let get = |i: usize, name: &str| {
        args.get(i)
            .cloned()
            .ok_or_else(|| format!("missing argument <{name}>"))
    };
    let dir = PathBuf::from(get(1, "checkpoint dir")?);
    let batch: usize = get(2, "batch")?
        .parse()
        .map_err(|e| format!("batch: {e}"))?;
    let repeats: usize = get(3, "repeats")?
        .parse()
        .map_err(|e| format!("repeats: {e}"))?;
    let precision = match args.get(4).map(String::as_str) {
        None => None,
        Some("f16") => Some(Precision::F16),
        Some("f32") => Some(Precision::F32),
        Some(other) => return Err(format!("precision {other:?}: expected f32 or f16")),
    };

    let t0 = Instant::now();
    let options = GpuOptions {
        precision,
        ..GpuOptions::default()
    };
    let ctx = GpuContext::new(&options).map_err(|e| format!("{e} (try --backend cpu)"))?;
    let model = GpuClipModel::load(&ctx, &dir).map_err(|e| e.to_string())?;
    let load_s = t0.elapsed().as_secs_f64();
    let size = model.config().image_size();
    let pixels: Vec<f32> = (0..batch * 3 * size * size).map(pixel).collect();

    // Warm-up: pipeline compilation and buffer allocation happen here, once.
    let t1 = Instant::now();
    let first = model
        .embed_images(&ctx, &pixels, batch)
        .map_err(|e| e.to_string())?;
    let warm_s = t1.elapsed().as_secs_f64();
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let t = Instant::now();
        let e = model
            .embed_images(&ctx, &pixels, batch)
            .map_err(|e| e.to_string())?;
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(e);
    }
    let keep = first.rows().min(2) * first.dim();
    let bytes: Vec<u8> = first.as_slice()[..keep]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(dir.join("gpu_embeddings.f32"), bytes).map_err(|e| e.to_string())?;
    let info = ctx.adapter_info();
    println!(
        "{{\"side\": \"wgpu\", \"adapter\": {:?}, \"backend\": \"{:?}\", \"precision\": \"{:?}\", \"batch\": {batch}, \"load_s\": {load_s:.3}, \"warmup_s\": {warm_s:.3}, \"best_s\": {best:.4}, \"images_per_s\": {:.3}}}",
        info.name,
        info.backend,
        ctx.precision(),
        batch as f64 / best
    );
    Ok(())
}

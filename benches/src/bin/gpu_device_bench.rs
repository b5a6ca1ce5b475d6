//! Throughput of the wgpu CLIP image tower (reward-core, feature `gpu`):
//! images/s on a checkpoint directory. The Rust half of
//! `benches/gpu_device.sh`; `benches/gpu_device.py` is the PyTorch CUDA fp16
//! half and uses the same weights and the same pixels.
//!
//! Usage: `gpu_device_bench <checkpoint dir> <batch> <repeats> [f32|f16]`
//! (`gpu_device_bench --tiles` lists the cooperative GEMM's block shapes;
//! `gpu_device_bench --probe [launches]` times the linear layers' GEMMs whole
//! and with parts left out, `reward_core::gpu::probe_gemm`;
//! `gpu_device_bench --texts <dir> <batch> <repeats> [f32|f16]` times the
//! text tower on full-window token sequences instead, writing the first
//! two texts' embeddings to `<dir>/gpu_text_embeddings.f32`).
//! Prints one JSON line, with the host-side operation counts of one warm
//! call (submissions, buffers, bind groups, pipelines, readbacks); writes the
//! embeddings of the first two images to `<dir>/gpu_embeddings.f32`
//! (little-endian f32) for the parity check. With `FISAO_GPU_PROFILE=1` it
//! also times every kernel on its own (one submission each, so slower
//! overall) and prints the per-kernel table to stderr. The JSON's "gemm"
//! names the GEMM kernel that ran (`coop-...`: tensor cores through wgpu
//! cooperative matrices; `tiled-f32`: the portable kernel);
//! `FISAO_GPU_COOP=0` forces the portable one for A/B runs,
//! `FISAO_GPU_COOP_TILE=<name>` picks the cooperative GEMM's block shape
//! (`reward_core::gpu::COOP_TILES`), `FISAO_GPU_BATCHED_TILE=<name>` the attention
//! products' one, `FISAO_GPU_V_IN_PLACE=0` copies the attention's values to
//! `v^T` as before session 6, `FISAO_GPU_ATTENTION=fused|gemm|flash`
//! the image tower's attention (default `auto`: GEMMs on tensor cores),
//! `FISAO_GPU_BOUNDS_CHECKS=0` compiles the kernels without naga's bounds
//! checks and `FISAO_GPU_ZERO_WORKGROUP=0` without clearing workgroup memory
//! at launch (the JSON names both), and `FISAO_GPU_LN_LANES=<n>` sets the
//! invocations per LayerNorm row (default 32; 256 is the kernel before
//! session 7), `FISAO_GPU_SUBMIT_EVERY=<n>` submits a call in command buffers
//! of n launches (default 0: whole; the JSON's per_call counts them), and
//! `FISAO_GPU_TIMEOUT_S=<s>` how long a call may run (default
//! 120; smoke runs of ViT-L on lavapipe need more). `--probe` reads the same
//! settings (`options_from_env`).

use std::path::PathBuf;
use std::time::Instant;

use reward_core::gpu::{
    AttentionKernel, CoopTile, GemmProbe, GpuClipModel, GpuContext, GpuOptions, GpuStats, Precision,
};

/// Pixel `i` of the batch: a fixed smooth pattern in [-2, 2], also written by gpu_device.py.
fn pixel(i: usize) -> f32 {
    ((i % 9973) as f32 * 0.001).sin() * 2.0
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--tiles") {
        // For benches/gpu_device.sh's SWEEP: the cooperative GEMM's block shapes.
        for t in reward_core::gpu::COOP_TILES {
            println!("{}", t.name);
        }
        return Ok(());
    }
    if args.get(1).map(String::as_str) == Some("--probe") {
        let launches = match args.get(2) {
            Some(v) => v.parse().map_err(|e| format!("launches {v:?}: {e}"))?,
            None => 20,
        };
        let rows = match args.get(3) {
            Some(v) => v.parse().map_err(|e| format!("rows {v:?}: {e}"))?,
            None => 16 * 577,
        };
        return probe(launches, rows);
    }
    if args.get(1).map(String::as_str) == Some("--texts") {
        return texts(&Run::parse(&args[1..])?);
    }
    let Run {
        dir,
        batch,
        repeats,
        precision,
    } = Run::parse(&args)?;

    let t0 = Instant::now();
    let options = GpuOptions {
        precision,
        ..options_from_env()?
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
    let before = ctx.stats();
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let t = Instant::now();
        let e = model
            .embed_images(&ctx, &pixels, batch)
            .map_err(|e| e.to_string())?;
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(e);
    }
    let per_call = per_call(before, ctx.stats(), repeats.max(1) as u64);
    if options.profile {
        print_profile(&ctx, repeats + 1);
    }
    let keep = first.rows().min(2) * first.dim();
    let bytes: Vec<u8> = first.as_slice()[..keep]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(dir.join("gpu_embeddings.f32"), bytes).map_err(|e| e.to_string())?;
    let info = ctx.adapter_info();
    println!(
        "{{\"side\": \"wgpu\", \"adapter\": {:?}, \"backend\": \"{:?}\", \"precision\": \"{:?}\", \"gemm\": {:?}, \"attention\": {:?}, \"bounds_checks\": {}, \"zero_workgroup\": {}, \"layernorm_lanes\": {}, \"batch\": {batch}, \"load_s\": {load_s:.3}, \"warmup_s\": {warm_s:.3}, \"best_s\": {best:.4}, \"images_per_s\": {:.3}, \"per_call\": {per_call}, \"profile\": {}}}",
        info.name,
        info.backend,
        ctx.precision(),
        ctx.gemm_kernel(),
        ctx.attention_kernel(),
        options.shader_bounds_checks,
        options.zero_workgroup_memory,
        options.layernorm_lanes,
        batch as f64 / best,
        options.profile
    );
    Ok(())
}

/// The arguments of a timed run: `<checkpoint dir> <batch> <repeats> [f32|f16]`.
struct Run {
    dir: PathBuf,
    batch: usize,
    repeats: usize,
    precision: Option<Precision>,
}

impl Run {
    /// From `args[1..]` (`args[0]` is the program or the mode).
    fn parse(args: &[String]) -> Result<Self, String> {
        let get = |i: usize, name: &str| {
            args.get(i)
                .cloned()
                .ok_or_else(|| format!("missing argument <{name}>"))
        };
        let number = |i: usize, name: &str| -> Result<usize, String> {
            get(i, name)?.parse().map_err(|e| format!("{name}: {e}"))
        };
        Ok(Self {
            dir: PathBuf::from(get(1, "checkpoint dir")?),
            batch: number(2, "batch")?,
            repeats: number(3, "repeats")?,
            precision: match args.get(4).map(String::as_str) {
                None => None,
                Some("f16") => Some(Precision::F16),
                Some("f32") => Some(Precision::F32),
                Some(other) => return Err(format!("precision {other:?}: expected f32 or f16")),
            },
        })
    }
}

/// `--texts <dir> <batch> <repeats> [f32|f16]`: the text tower on `batch`
/// token sequences of the full window (start, pattern ids, end), best of
/// `repeats` warm calls; one JSON line with the host-side counts.
fn texts(run: &Run) -> Result<(), String> {
    let options = GpuOptions {
        precision: run.precision,
        ..options_from_env()?
    };
    let ctx = GpuContext::new(&options).map_err(|e| format!("{e} (try --backend cpu)"))?;
    let t0 = Instant::now();
    let model = GpuClipModel::load(&ctx, &run.dir).map_err(|e| e.to_string())?;
    let load_s = t0.elapsed().as_secs_f64();
    let text = &model.config().text_config;
    let (window, vocab) = (text.max_position_embeddings, text.vocab_size as u32);
    let tokens: Vec<reward_core::clip::TokenizedText> = (0..run.batch)
        .map(|t| {
            let mut ids = vec![vocab - 2];
            ids.extend((1..window - 1).map(|i| ((t * 7919 + i * 104_729) % 49_000) as u32 % vocab));
            ids.push(vocab - 1);
            reward_core::clip::TokenizedText {
                ids,
                truncated: false,
                full_len: window,
            }
        })
        .collect();
    let call = || model.embed_tokens(&ctx, &tokens).map_err(|e| e.to_string());
    let first = call()?;
    // The first two texts' embeddings, for gpu_device.py's parity check.
    let keep = first.rows().min(2) * first.dim();
    let bytes: Vec<u8> = first.as_slice()[..keep]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(run.dir.join("gpu_text_embeddings.f32"), bytes).map_err(|e| e.to_string())?;
    let before = ctx.stats();
    let mut best = f64::INFINITY;
    for _ in 0..run.repeats {
        let t = Instant::now();
        std::hint::black_box(call()?);
        best = best.min(t.elapsed().as_secs_f64());
    }
    let per_call = per_call(before, ctx.stats(), run.repeats.max(1) as u64);
    if options.profile {
        print_profile(&ctx, run.repeats + 1);
    }
    println!(
        "{{\"side\": \"wgpu-texts\", \"adapter\": {:?}, \"precision\": \"{:?}\", \"batch\": {}, \"tokens\": {window}, \"load_s\": {load_s:.3}, \"best_s\": {best:.4}, \"texts_per_s\": {:.3}, \"per_call\": {per_call}}}",
        ctx.adapter_info().name,
        ctx.precision(),
        run.batch,
        run.batch as f64 / best,
    );
    Ok(())
}

/// `--probe [LAUNCHES] [ROWS]`: the ViT-L/14-336 linear layers' GEMMs of
/// one 16-image chunk (ROWS = 16 x 577 by default) on the context's GEMM
/// kernel, whole and with parts left out (`GemmProbe`; only whole on the
/// tiled kernel), one JSON line each; `fc1-k64` (k = 64) is mostly the
/// epilogue, the cost of writing fc1's output. `FISAO_GPU_EMULATE_COOP=1` runs the
/// cooperative kernels emulated where the adapter has none (a smoke test
/// on lavapipe; use few rows).
fn probe(launches: usize, m: usize) -> Result<(), String> {
    let options = GpuOptions {
        precision: Some(Precision::F16),
        ..options_from_env()?
    };
    let ctx = GpuContext::new(&options).map_err(|e| e.to_string())?;
    let probes: &[GemmProbe] = match ctx.gemm_kernel().starts_with("coop") {
        true => &GemmProbe::ALL,
        false => &[GemmProbe::Full],
    };
    for (layer, n, k) in [
        ("qkv", 3072, 1024),
        ("out", 1024, 1024),
        ("fc1", 4096, 1024),
        ("fc2", 1024, 4096),
        // fc1's output with one k block: what writing the output costs.
        ("fc1-k64", 4096, 64),
    ] {
        let timings = reward_core::gpu::probe_gemm(&ctx, (m, n, k), probes, launches)
            .map_err(|e| format!("{layer}: {e}"))?;
        for t in timings {
            println!(
                "{{\"probe\": {:?}, \"layer\": {layer:?}, \"m\": {m}, \"n\": {n}, \"k\": {k}, \"gemm\": {:?}, \"bounds_checks\": {}, \"zero_workgroup\": {}, \"ms\": {:.4}, \"tflops\": {:.1}}}",
                t.probe.name(),
                t.kernel,
                options.shader_bounds_checks,
                options.zero_workgroup_memory,
                t.seconds * 1e3,
                t.tflops
            );
        }
    }
    Ok(())
}

/// The defaults with every `FISAO_GPU_*` setting of the environment applied
/// (the module header lists them; `FISAO_GPU_EMULATE_COOP=1` is for probe
/// smoke runs on lavapipe).
fn options_from_env() -> Result<GpuOptions, String> {
    let var = |name: &str| std::env::var_os(name);
    let off = |name: &str| var(name).is_some_and(|v| v == "0");
    let defaults = GpuOptions::default();
    let attention = match std::env::var("FISAO_GPU_ATTENTION").as_deref() {
        Err(_) | Ok("auto") => AttentionKernel::Auto,
        Ok("fused") => AttentionKernel::Fused,
        Ok("gemm") => AttentionKernel::Gemm,
        Ok("flash") => AttentionKernel::Flash,
        Ok(other) => {
            return Err(format!(
                "FISAO_GPU_ATTENTION={other:?}: expected auto, fused, gemm or flash"
            ));
        }
    };
    let layernorm_lanes = match std::env::var("FISAO_GPU_LN_LANES") {
        Ok(v) => v
            .parse()
            .map_err(|e| format!("FISAO_GPU_LN_LANES={v:?}: {e}"))?,
        Err(_) => defaults.layernorm_lanes,
    };
    let timeout = match std::env::var("FISAO_GPU_TIMEOUT_S") {
        Ok(v) => core::time::Duration::from_secs(
            v.parse()
                .map_err(|e| format!("FISAO_GPU_TIMEOUT_S={v:?}: {e}"))?,
        ),
        Err(_) => defaults.timeout,
    };
    let dispatches_per_submission = match std::env::var("FISAO_GPU_SUBMIT_EVERY") {
        Ok(v) => v
            .parse()
            .map_err(|e| format!("FISAO_GPU_SUBMIT_EVERY={v:?}: {e}"))?,
        Err(_) => defaults.dispatches_per_submission,
    };
    Ok(GpuOptions {
        timeout,
        dispatches_per_submission,
        profile: var("FISAO_GPU_PROFILE").is_some_and(|v| v != "0"),
        cooperative_matrix: !off("FISAO_GPU_COOP"),
        attention,
        coop_tile: tile_from_env("FISAO_GPU_COOP_TILE")?,
        coop_batched_tile: tile_from_env("FISAO_GPU_BATCHED_TILE")?,
        values_in_place: !off("FISAO_GPU_V_IN_PLACE"),
        emulate_cooperative_matrix: var("FISAO_GPU_EMULATE_COOP").is_some_and(|v| v == "1"),
        shader_bounds_checks: !off("FISAO_GPU_BOUNDS_CHECKS"),
        zero_workgroup_memory: !off("FISAO_GPU_ZERO_WORKGROUP"),
        layernorm_lanes,
        ..defaults
    })
}

/// The cooperative GEMM block shape named by environment variable `var`.
fn tile_from_env(var: &str) -> Result<Option<CoopTile>, String> {
    match std::env::var(var) {
        Ok(name) if !name.is_empty() => CoopTile::named(&name)
            .map(Some)
            .map_err(|e| format!("{var}: {e}")),
        _ => Ok(None),
    }
}

/// Host-side operations of one warm call, as a JSON object: `host_ms` is
/// the CPU time before the GPU could start (inputs uploaded, kernels
/// recorded and encoded), `wait_ms` from the submission to the readback.
fn per_call(a: GpuStats, b: GpuStats, calls: u64) -> String {
    let d = |x: u64, y: u64| (y - x) as f64 / calls as f64;
    let ms = |x: u64, y: u64| d(x, y) / 1e6;
    format!(
        "{{\"host_ms\": {:.2}, \"wait_ms\": {:.2}, \"submissions\": {}, \"dispatches\": {}, \"buffers_created\": {}, \"bind_groups_created\": {}, \"pipelines_compiled\": {}, \"readbacks\": {}, \"bytes_uploaded\": {}}}",
        ms(a.host_ns, b.host_ns),
        ms(a.wait_ns, b.wait_ns),
        d(a.submissions, b.submissions),
        d(a.dispatches, b.dispatches),
        d(a.buffers_created, b.buffers_created),
        d(a.bind_groups_created, b.bind_groups_created),
        d(a.pipelines_compiled, b.pipelines_compiled),
        d(a.readbacks, b.readbacks),
        d(a.bytes_uploaded, b.bytes_uploaded),
    )
}

/// The per-kernel wall times (all calls, warm-up included), per call.
fn print_profile(ctx: &GpuContext, calls: usize) {
    let rows = ctx.profile();
    let total: f64 = rows.iter().map(|r| r.seconds).sum();
    eprintln!("kernel                              launches/call   s/call   share");
    for r in rows {
        eprintln!(
            "{:<36}{:>13.1}{:>9.4}{:>7.1}%",
            r.kernel,
            r.launches as f64 / calls as f64,
            r.seconds / calls as f64,
            100.0 * r.seconds / total
        );
    }
}

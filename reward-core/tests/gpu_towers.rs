//! The GPU towers and scoring against the CPU path on the tiny fixture
//! checkpoints (feature `gpu`): f32 within 1e-4 and f16 within 1e-2 of the
//! largest reference magnitude. Runs on Mesa's lavapipe in CI.
#![cfg(feature = "gpu")]

use std::path::PathBuf;
use std::sync::OnceLock;

use reward_core::clip::{ClipModel, Embeddings};
use reward_core::gpu::{
    AttentionKernel, GpuClipModel, GpuContext, GpuError, GpuOptions, Precision,
};

const MODELS: &[&str] = &[
    "tiny-quickgelu",
    "tiny-eos-a",
    "tiny-gelu-legacy-sharded",
    "tiny-quickgelu-f16",
];

const TEXTS: &[&str] = &[
    "a photo of a cat",
    "dog",
    "",
    "a very long caption that keeps going and going with many many words so that it is cut \
     at the seventy seven token window of the text tower, which the cpu path also does, and \
     then some more words about bicycles, umbrellas, giraffes and pizza to be sure of it",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/clip")
        .join(name)
}

/// One context per precision for the whole binary; `None` to skip.
fn context(precision: Precision) -> Option<&'static GpuContext> {
    static F32: OnceLock<Option<GpuContext>> = OnceLock::new();
    static F16: OnceLock<Option<GpuContext>> = OnceLock::new();
    let cell = if precision == Precision::F32 {
        &F32
    } else {
        &F16
    };
    cell.get_or_init(|| {
        let options = GpuOptions {
            precision: Some(precision),
            ..GpuOptions::default()
        };
        match GpuContext::new(&options) {
            Ok(c) => Some(c),
            Err(e) if precision == Precision::F16 => {
                eprintln!("skipping f16: {e}");
                None
            }
            Err(e) if std::env::var_os("FISAO_SKIP_GPU_TESTS").is_some() => {
                eprintln!("skipping GPU tests: {e}");
                None
            }
            Err(e) => panic!("{e} (install mesa-vulkan-drivers, or set FISAO_SKIP_GPU_TESTS=1)"),
        }
    })
    .as_ref()
}

fn contexts() -> Vec<(&'static GpuContext, f32)> {
    [(Precision::F32, 1e-4), (Precision::F16, 1e-2)]
        .into_iter()
        .filter_map(|(p, tol)| context(p).map(|c| (c, tol)))
        .collect()
}

fn assert_close(got: &Embeddings, want: &Embeddings, tol: f32, what: &str) {
    assert_eq!(
        (got.rows(), got.dim()),
        (want.rows(), want.dim()),
        "{what}: shape"
    );
    let scale = want
        .as_slice()
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(1e-6);
    let err = got
        .as_slice()
        .iter()
        .zip(want.as_slice())
        .map(|(g, w)| (g - w).abs())
        .fold(
            0.0f32,
            |m, e| if e.is_nan() { f32::INFINITY } else { m.max(e) },
        );
    assert!(
        err <= tol * scale,
        "{what}: max error {err} > {tol} x {scale}"
    );
}

/// Deterministic pixel values in roughly the normalised range.
fn pixels(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        })
        .collect()
}

#[test]
fn towers_and_scores_match_the_cpu_path() {
    for name in MODELS {
        let cpu = ClipModel::load(&fixture(name)).expect("cpu model");
        let v = &cpu.config().vision_config;
        let n = 3;
        let px = pixels(n * v.num_channels * v.image_size * v.image_size, 7);
        let cpu_images = cpu.embed_images(&px, n).expect("cpu images");
        let cpu_texts = cpu.embed_texts(TEXTS).expect("cpu texts");
        let cpu_logits = cpu
            .logits_per_image(&cpu_images, &cpu_texts.embeddings)
            .unwrap();
        for (ctx, tol) in contexts() {
            let what = |part: &str| format!("{name} {:?} {part}", ctx.precision());
            let gpu = GpuClipModel::load(ctx, &fixture(name)).expect("gpu model");
            assert_eq!(gpu.logit_scale(), cpu.logit_scale());
            let images = gpu.embed_images(ctx, &px, n).expect("gpu images");
            assert_close(&images, &cpu_images, tol, &what("image embeddings"));
            let texts = gpu.embed_texts(ctx, TEXTS).expect("gpu texts");
            assert_eq!(texts.truncated, cpu_texts.truncated);
            assert_eq!(texts.token_counts, cpu_texts.token_counts);
            assert_close(
                &texts.embeddings,
                &cpu_texts.embeddings,
                tol,
                &what("text embeddings"),
            );
            // Logits are scaled by 100: compare relative to their range too.
            let logits = gpu
                .logits_per_image(ctx, &cpu_images, &cpu_texts.embeddings)
                .unwrap();
            assert_close(&logits, &cpu_logits, tol, &what("logits_per_image"));
            let fused = gpu
                .score_images(ctx, &px, n, &cpu_texts.embeddings)
                .unwrap();
            assert_close(&fused, &cpu_logits, tol, &what("score_images"));
            // A second call reuses the cached pipelines and buffers.
            let again = gpu
                .embed_images(ctx, &px[..v.num_channels * v.image_size * v.image_size], 1)
                .unwrap();
            assert_close(
                &again,
                &Embeddings::new(cpu_images.row(0).to_vec(), 1, cpu_images.dim()).unwrap(),
                tol,
                &what("again"),
            );
        }
    }
}

/// The image tower with attention forced onto the GEMM path (what the
/// tensor-core devices run by default) against the CPU; the profile shows
/// that its kernels, and not the fused one, ran.
#[test]
fn image_tower_with_gemm_attention_matches_the_cpu_path() {
    for (precision, tol) in [(Precision::F32, 1e-4), (Precision::F16, 1e-2)] {
        let options = GpuOptions {
            precision: Some(precision),
            attention: AttentionKernel::Gemm,
            profile: true,
            ..GpuOptions::default()
        };
        let Ok(ctx) = GpuContext::new(&options) else {
            assert!(context(precision).is_none(), "{precision:?} opened before");
            continue;
        };
        for name in ["tiny-quickgelu", "tiny-gelu-legacy-sharded"] {
            let cpu = ClipModel::load(&fixture(name)).expect("cpu model");
            let gpu = GpuClipModel::load(&ctx, &fixture(name)).expect("gpu model");
            let v = &cpu.config().vision_config;
            let n = 5;
            let px = pixels(n * v.num_channels * v.image_size * v.image_size, 13);
            let want = cpu.embed_images(&px, n).expect("cpu images");
            let got = gpu.embed_images(&ctx, &px, n).expect("gpu images");
            assert_close(
                &got,
                &want,
                tol,
                &format!("{name} {precision:?} gemm attention"),
            );
        }
        let ran: Vec<String> = ctx.profile().into_iter().map(|k| k.kernel).collect();
        for kernel in ["v_transpose", "softmax_rows"] {
            assert!(ran.iter().any(|k| k == kernel), "{kernel} not in {ran:?}");
        }
        assert!(
            !ran.iter().any(|k| k == "attention"),
            "fused kernel ran: {ran:?}"
        );
    }
}

/// The image tower on the tensor-core kernels (cooperative GEMMs for the
/// linear layers and both attention products) against the CPU. On
/// adapters without cooperative matrices (lavapipe in CI) their matrix
/// operations are emulated in plain WGSL, so the generated kernels' tiling
/// and epilogue (bias, QuickGELU / GELU, residual) run here too; the
/// profile shows they ran. `tiny-gelu-legacy-sharded` has widths 32 and
/// 64, which the cooperative GEMM covers (k a multiple of 32).
#[test]
fn image_tower_on_tensor_core_kernels_matches_the_cpu_path() {
    let options = GpuOptions {
        precision: Some(Precision::F16),
        emulate_cooperative_matrix: true,
        profile: true,
        ..GpuOptions::default()
    };
    let Ok(ctx) = GpuContext::new(&options) else {
        assert!(context(Precision::F16).is_none(), "f16 opened before");
        return;
    };
    assert!(
        ctx.gemm_kernel().starts_with("coop"),
        "{}",
        ctx.gemm_kernel()
    );
    assert_eq!(ctx.attention_kernel(), "gemm");
    for name in ["tiny-quickgelu", "tiny-gelu-legacy-sharded"] {
        let cpu = ClipModel::load(&fixture(name)).expect("cpu model");
        let gpu = GpuClipModel::load(&ctx, &fixture(name)).expect("gpu model");
        let v = &cpu.config().vision_config;
        let n = 3;
        let px = pixels(n * v.num_channels * v.image_size * v.image_size, 17);
        let want = cpu.embed_images(&px, n).expect("cpu images");
        let got = gpu.embed_images(&ctx, &px, n).expect("gpu images");
        assert_close(&got, &want, 1e-2, &format!("{name} tensor-core kernels"));
    }
    let ran: Vec<String> = ctx.profile().into_iter().map(|k| k.kernel).collect();
    let coop: Vec<&String> = ran
        .iter()
        .filter(|k| k.starts_with("matmul_coop"))
        .collect();
    // fc1 and fc2 of the 32-wide tower (k = 32 and 64) and the attention
    // products of both models.
    assert!(coop.len() >= 3, "cooperative GEMMs that ran: {ran:?}");
    // The 7-pixel patches' GEMM (3 x 7 x 7 = 147 values, padded to 192;
    // 3 images x 16 patches, width 32) runs on the cooperative kernel too.
    assert!(
        coop.iter().any(|k| k.ends_with(" 48x32x192")),
        "the patch GEMM did not run on the cooperative kernel: {ran:?}"
    );
    // The values are read in place (k-major), not copied to v^T first.
    assert!(
        !ran.iter().any(|k| k == "v_transpose"),
        "v_transpose ran: {ran:?}"
    );
    assert!(
        ctx.gemm_kernel().starts_with("coop"),
        "{}",
        ctx.gemm_kernel()
    );
}

/// `GpuOptions::shader_bounds_checks` and `zero_workgroup_memory` off (the
/// device A/B settings) change no value: every kernel of both towers, on
/// the portable f32 path and on the emulated tensor-core path, gives the
/// same bits as with the checks and the zeroing on. A kernel that reads
/// workgroup memory before writing it, or indexes past an array (which the
/// checks clamp), would differ here or miss the CPU reference.
#[test]
fn towers_without_bounds_checks_or_zeroed_workgroup_memory_give_the_same_bits() {
    let configs = [
        (Precision::F32, false, 1e-4f32),
        (Precision::F16, true, 1e-2),
    ];
    for (precision, emulate, tol) in configs {
        let open = |trusted: bool| {
            GpuContext::new(&GpuOptions {
                precision: Some(precision),
                emulate_cooperative_matrix: emulate,
                shader_bounds_checks: !trusted,
                zero_workgroup_memory: !trusted,
                ..GpuOptions::default()
            })
        };
        let (Ok(checked), Ok(trusted)) = (open(false), open(true)) else {
            assert!(context(precision).is_none(), "{precision:?} opened before");
            continue;
        };
        for name in ["tiny-quickgelu", "tiny-gelu-legacy-sharded"] {
            let what = |part: &str| format!("{name} {precision:?} {part}");
            let cpu = ClipModel::load(&fixture(name)).expect("cpu model");
            let v = &cpu.config().vision_config;
            let n = 3;
            let px = pixels(n * v.num_channels * v.image_size * v.image_size, 23);
            let run = |ctx: &GpuContext| {
                let gpu = GpuClipModel::load(ctx, &fixture(name)).expect("gpu model");
                let images = gpu.embed_images(ctx, &px, n).expect("gpu images");
                let texts = gpu.embed_texts(ctx, TEXTS).expect("gpu texts");
                (images, texts.embeddings)
            };
            let (want_images, want_texts) = run(&checked);
            let (images, texts) = run(&trusted);
            assert_eq!(
                images.as_slice(),
                want_images.as_slice(),
                "{}",
                what("images")
            );
            assert_eq!(texts.as_slice(), want_texts.as_slice(), "{}", what("texts"));
            let cpu_images = cpu.embed_images(&px, n).expect("cpu images");
            assert_close(&images, &cpu_images, tol, &what("images vs cpu"));
        }
        assert_eq!(
            trusted.gemm_kernel().starts_with("coop"),
            emulate,
            "{}",
            trusted.gemm_kernel()
        );
    }
}

#[test]
fn a_pass_submitted_in_parts_gives_the_same_bits_and_counts_its_parts() {
    let Some(whole) = context(Precision::F32) else {
        return;
    };
    let split = GpuContext::new(&GpuOptions {
        precision: Some(Precision::F32),
        dispatches_per_submission: 3,
        ..GpuOptions::default()
    })
    .expect("a second f32 context");
    let name = "tiny-quickgelu";
    let v = ClipModel::load(&fixture(name))
        .unwrap()
        .config()
        .vision_config
        .clone();
    let n = 2;
    let px = pixels(n * v.num_channels * v.image_size * v.image_size, 31);
    let run = |ctx: &GpuContext| {
        let gpu = GpuClipModel::load(ctx, &fixture(name)).expect("gpu model");
        let images = gpu.embed_images(ctx, &px, n).expect("warm-up");
        let before = ctx.stats();
        assert_eq!(
            gpu.embed_images(ctx, &px, n).unwrap().as_slice(),
            images.as_slice()
        );
        let after = ctx.stats();
        let texts = gpu.embed_texts(ctx, TEXTS).expect("gpu texts");
        (images, texts.embeddings, before, after)
    };
    let (want_images, want_texts, ..) = run(whole);
    let (images, texts, before, after) = run(&split);
    assert_eq!(images.as_slice(), want_images.as_slice(), "images");
    assert_eq!(texts.as_slice(), want_texts.as_slice(), "texts");
    let dispatches = after.dispatches - before.dispatches;
    let submissions = after.submissions - before.submissions;
    assert!(dispatches > 3, "{dispatches} launches");
    assert_eq!(submissions, dispatches.div_ceil(3), "{dispatches} launches");
}

#[test]
fn many_images_span_several_submissions() {
    if context(Precision::F32).is_none() {
        return;
    }
    // Its own context: the stats below must not count other tests' runs.
    let own = GpuContext::new(&GpuOptions {
        precision: Some(Precision::F32),
        ..GpuOptions::default()
    })
    .expect("a second f32 context");
    let ctx = &own;
    let cpu = ClipModel::load(&fixture("tiny-quickgelu")).unwrap();
    let gpu = GpuClipModel::load(ctx, &fixture("tiny-quickgelu")).unwrap();
    let v = &cpu.config().vision_config;
    let n = 37; // more than one 32-image chunk
    let px = pixels(n * v.num_channels * v.image_size * v.image_size, 9);
    let want = cpu.embed_images(&px, n).unwrap();
    let got = gpu.embed_images(ctx, &px, n).unwrap();
    assert_close(&got, &want, 1e-4, "37 images");
    // Warm: the second chunk is submitted before the first is read back,
    // each with its own pooled readback buffer, and nothing is allocated.
    let before = ctx.stats();
    let again = gpu.embed_images(ctx, &px, n).unwrap();
    let after = ctx.stats();
    assert_eq!(again.as_slice(), got.as_slice());
    assert_eq!(after.readbacks - before.readbacks, 2);
    assert_eq!(after.submissions - before.submissions, 2);
    assert_eq!(after.buffers_created, before.buffers_created);
}

#[test]
fn an_f16_checkpoint_on_an_f16_device_gives_the_bits_of_its_f32_original() {
    // tiny-quickgelu-f16 is tiny-quickgelu's weights rounded to f16 (round
    // to nearest even, as the f16 context rounds f32 weights at upload), so
    // both must put the same weights on the device: f16 files go up as
    // their bytes, f32 ones converted. Both towers run wholly on the device
    // (the text tower's embedding tables included, since session 9), so
    // their bits must match.
    let Some(ctx) = context(Precision::F16) else {
        return;
    };
    let v = ClipModel::load(&fixture("tiny-quickgelu"))
        .unwrap()
        .config()
        .vision_config
        .clone();
    let n = 2;
    let px = pixels(n * v.num_channels * v.image_size * v.image_size, 37);
    let texts = [
        "a cat on a mat",
        "two dogs",
        "a photo of a kitchen with a red kettle",
    ];
    let run = |name: &str| {
        let gpu = GpuClipModel::load(ctx, &fixture(name)).expect("gpu model");
        let images = gpu.embed_images(ctx, &px, n).expect("images");
        let texts = gpu.embed_texts(ctx, &texts).expect("texts").embeddings;
        (images, texts)
    };
    let (images, texts) = run("tiny-quickgelu");
    let (images_f16, texts_f16) = run("tiny-quickgelu-f16");
    assert_eq!(images_f16.as_slice(), images.as_slice());
    assert_eq!(texts_f16.as_slice(), texts.as_slice());
}

#[test]
fn many_texts_span_several_submissions() {
    let Some(ctx) = context(Precision::F32) else {
        return;
    };
    let cpu = ClipModel::load(&fixture("tiny-quickgelu")).unwrap();
    let gpu = GpuClipModel::load(ctx, &fixture("tiny-quickgelu")).unwrap();
    // More than one 256-text chunk, of uneven lengths.
    let texts: Vec<String> = (0..300)
        .map(|i| format!("a photo of {} {}", i, "cat ".repeat(i % 7)))
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let want = cpu.embed_texts(&texts).unwrap().embeddings;
    let got = gpu.embed_texts(ctx, &texts).unwrap().embeddings;
    assert_close(&got, &want, 1e-4, "300 texts");
}

#[test]
fn bad_inputs_are_errors_naming_the_problem() {
    let Some(ctx) = context(Precision::F32) else {
        return;
    };
    let gpu = GpuClipModel::load(ctx, &fixture("tiny-quickgelu")).unwrap();
    let err = gpu.embed_images(ctx, &[0.0; 10], 1).unwrap_err();
    assert!(
        matches!(&err, GpuError::Input(m) if m.contains("pixel_values has 10 values")),
        "{err}"
    );
    let mut long = gpu.tokenize("cat").unwrap();
    long.ids = vec![1; 78];
    let err = gpu.embed_tokens(ctx, &[long]).unwrap_err();
    assert!(err.to_string().contains("78 tokens"), "{err}");
    let a = Embeddings::new(vec![1.0; 4], 1, 4).unwrap();
    let b = Embeddings::new(vec![1.0; 3], 1, 3).unwrap();
    assert!(
        gpu.logits_per_image(ctx, &a, &b)
            .unwrap_err()
            .to_string()
            .contains("differs")
    );
    let missing = GpuClipModel::load(ctx, &fixture("no-such-model"))
        .err()
        .expect("missing dir");
    assert!(missing.to_string().contains("no-such-model"), "{missing}");
}

#[test]
fn verifier_picks_the_backend_and_agrees() {
    use reward_core::gpu::{Backend, Verifier};
    assert!(
        "tpu"
            .parse::<Backend>()
            .unwrap_err()
            .to_string()
            .contains("cpu, gpu or auto")
    );
    let dir = fixture("tiny-quickgelu");
    let cpu = Verifier::load(&dir, "cpu".parse().unwrap()).unwrap();
    assert_eq!(cpu.describe(), "cpu");
    if context(Precision::F32).is_none() {
        return;
    }
    let gpu = Verifier::load(&dir, Backend::Gpu).unwrap();
    assert!(gpu.describe().starts_with("gpu ("), "{}", gpu.describe());
    assert_eq!(gpu.backend_name(), "gpu");
    assert!(gpu.adapter().is_some());
    // The same checkpoint hash on both backends: caches and baselines
    // written by one are accepted by the other.
    assert_eq!(gpu.model_hash_hex(), cpu.model_hash_hex());
    assert_eq!(cpu.model_hash_hex().len(), 64);
    // Auto leaves software adapters (lavapipe here) to the CPU path.
    let auto = Verifier::load(&dir, Backend::Auto).unwrap();
    let software = context(Precision::F32)
        .is_some_and(|c| c.adapter_info().device_type == wgpu::DeviceType::Cpu);
    assert_eq!(auto.backend_name(), if software { "cpu" } else { "gpu" });
    let want = cpu.embed_texts(&["a cat"]).unwrap().embeddings;
    let got = gpu.embed_texts(&["a cat"]).unwrap().embeddings;
    // The GPU backend takes the adapter's best precision (f16 on lavapipe).
    assert_close(&got, &want, 1e-2, "verifier texts");
}

/// A checkpoint read from disk is hashed on a second thread while the
/// towers load; from bytes (the browser) on the same thread. Both must give
/// the same hash, on both backends, and a real one.
#[test]
fn a_checkpoint_hashes_the_same_from_disk_or_from_bytes() {
    let dir = fixture("tiny-gelu-legacy-sharded");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let shards = [
        read("model-00002-of-00002.safetensors"),
        read("model-00001-of-00002.safetensors"),
    ];
    let shards: Vec<&[u8]> = shards.iter().map(Vec::as_slice).collect();
    let (config, tokenizer) = (read("config.json"), read("tokenizer.json"));
    let from_bytes = ClipModel::from_bytes(&config, &shards, &tokenizer).unwrap();
    let from_disk = ClipModel::load(&dir).unwrap();
    assert_eq!(from_disk.model_hash(), from_bytes.model_hash());
    assert_ne!(from_disk.model_hash(), [0; 32]);
    let Some(ctx) = context(Precision::F32) else {
        return;
    };
    let gpu_disk = GpuClipModel::load(ctx, &dir).unwrap();
    let gpu_bytes = pollster::block_on(GpuClipModel::from_bytes_async(
        ctx, &config, &shards, &tokenizer,
    ))
    .unwrap();
    assert_eq!(gpu_disk.model_hash(), from_bytes.model_hash());
    assert_eq!(gpu_bytes.model_hash(), from_bytes.model_hash());
}

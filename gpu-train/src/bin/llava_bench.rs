//! Device check for the LLaVA port (benches/llava_device.sh): prefill and decode
//! tokens/s at several batch sizes on a checkpoint written by
//! benches/llava_device.py, and the memory of one LoRA forward+backward.
//!
//! `llava_bench --model DIR [--prompt-text 40] [--new-tokens 128] [--batches 1,8]
//!  [--lora-rank 128] [--train-len 512]` prints one JSON object per measurement.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use gpu_train::llava::{self, Batch, KvCache, LlavaModel, LoadOptions, LoraConfig, SamplingConfig};
use serde_json::json;
use tch::{Device, Kind, Tensor};

struct Args {
    model: PathBuf,
    prompt_text: i64,
    new_tokens: i64,
    batches: Vec<i64>,
    lora_rank: i64,
    train_len: i64,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        model: PathBuf::new(),
        prompt_text: 40,
        new_tokens: 128,
        batches: vec![1, 8],
        lora_rank: 128,
        train_len: 512,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--model" => a.model = v.into(),
            "--prompt-text" => a.prompt_text = v.parse()?,
            "--new-tokens" => a.new_tokens = v.parse()?,
            "--batches" => a.batches = v.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--lora-rank" => a.lora_rank = v.parse()?,
            "--train-len" => a.train_len = v.parse()?,
            _ => bail!("unknown argument {k}"),
        }
    }
    if a.model.as_os_str().is_empty() {
        bail!("--model DIR is required");
    }
    Ok(a)
}

fn sync(dev: Device) {
    if let Device::Cuda(i) = dev {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The same prompt as the Python side: BOS, the image run, then text ids 1000...
fn prompt(model: &LlavaModel, text: i64) -> Vec<i64> {
    let c = &model.config;
    let mut p = vec![1];
    p.extend(std::iter::repeat_n(
        c.image_token_id,
        c.image_tokens_per_image() as usize,
    ));
    p.extend((0..text).map(|i| 1000 + (i * 7919) % (c.text.vocab_size - 1100)));
    p
}

fn pixels(model: &LlavaModel, b: i64) -> Tensor {
    let v = &model.config.vision;
    tch::manual_seed(0);
    Tensor::randn(
        [b, v.num_channels, v.image_size, v.image_size],
        (Kind::Float, model.device()),
    )
}

fn prefill_seconds(model: &LlavaModel, prompts: &[Vec<i64>], px: &Tensor) -> Result<f64> {
    let dev = model.device();
    let b = prompts.len() as i64;
    let (ids, _) = llava::pad_batch(prompts, 0, llava::PaddingSide::Left, dev);
    sync(dev);
    let t = Instant::now();
    tch::no_grad(|| -> Result<()> {
        let mut cache = KvCache::new(&model.config.text, b, ids.size()[1] + 1, model.kind(), dev);
        let e = model.input_embeds(&ids, Some(px))?;
        let h = model.decoder_hidden(&e, None, Some(&mut cache), false)?;
        let _ = model.logits(&h.select(1, -1)).argmax(-1, false);
        Ok(())
    })?;
    sync(dev);
    Ok(t.elapsed().as_secs_f64())
}

fn bench_batch(model: &LlavaModel, a: &Args, b: i64) -> Result<()> {
    let dev = model.device();
    let prompts = vec![prompt(model, a.prompt_text); b as usize];
    let px = pixels(model, b);
    let mut cfg = SamplingConfig::greedy(model, a.new_tokens);
    cfg.eos_token_ids.clear(); // always generate the full budget, like min_new_tokens on the HF side
    llava::generate(
        model,
        &prompts,
        Some(&px),
        &SamplingConfig {
            max_new_tokens: 4,
            ..cfg.clone()
        },
    )?; // warm-up
    let prefill = (0..3)
        .map(|_| prefill_seconds(model, &prompts, &px))
        .collect::<Result<Vec<_>>>()?;
    let prefill = prefill.iter().cloned().fold(f64::INFINITY, f64::min);
    sync(dev);
    let t = Instant::now();
    let out = llava::generate(model, &prompts, Some(&px), &cfg)?;
    sync(dev);
    let total = t.elapsed().as_secs_f64();
    let new = out.iter().map(|r| r.len() as i64).sum::<i64>();
    let plen = prompts[0].len() as i64;
    println!(
        "{}",
        json!({"side": "rust", "what": "generate", "batch": b, "prompt_tokens": plen, "new_tokens": a.new_tokens,
               "prefill_s": prefill, "prefill_tok_s": (b * plen) as f64 / prefill,
               "decode_s": total - prefill, "decode_tok_s": (new - b) as f64 / (total - prefill), "total_s": total})
    );
    Ok(())
}

fn bench_train(model: &LlavaModel, a: &Args) -> Result<()> {
    let dev = model.device();
    let ids: Vec<i64> = (0..a.train_len)
        .map(|i| 1000 + (i * 7919) % (model.config.text.vocab_size - 1100))
        .collect();
    let ids = Tensor::from_slice(&ids).unsqueeze(0).to(dev);
    sync(dev);
    let before = gpu_train::device::gpu_used_mib();
    let t = Instant::now();
    let batch = Batch {
        input_ids: &ids,
        attention_mask: None,
        pixel_values: None,
    };
    let (lp, values) = model.token_logprobs(&batch, true)?;
    let loss = lp.mean(Kind::Float) + values.context("value head")?.mean(Kind::Float);
    loss.backward();
    sync(dev);
    let secs = t.elapsed().as_secs_f64();
    let after = gpu_train::device::gpu_used_mib();
    let trainable: i64 = model
        .trainable_vs()
        .trainable_variables()
        .iter()
        .map(Tensor::numel)
        .map(|n| n as i64)
        .sum();
    println!(
        "{}",
        json!({"side": "rust", "what": "lora_fwd_bwd", "tokens": a.train_len, "lora_rank": a.lora_rank,
               "trainable_params": trainable, "seconds": secs,
               "gpu_used_mib_before": before, "gpu_used_mib_after": after})
    );
    Ok(())
}

fn main() -> Result<()> {
    let a = parse()?;
    let dev = Device::cuda_if_available();
    println!(
        "{}",
        json!({"side": "rust", "cuda_available": tch::Cuda::is_available(), "device": format!("{dev:?}")})
    );
    let lora = LoraConfig {
        r: a.lora_rank,
        alpha: 2.0 * a.lora_rank as f64,
        dropout: 0.05,
        ..LoraConfig::default()
    };
    let opts = LoadOptions {
        lora: Some(lora),
        value_head: true,
        ..LoadOptions::for_device(dev)
    };
    let t = Instant::now();
    let model = LlavaModel::load(&a.model, &opts)?;
    // The prompts use text ids from 1000 on, as benches/llava_device.py's do.
    let vocab = model.config.text.vocab_size;
    if vocab < 1200 {
        bail!(
            "{}: vocabulary of {vocab} tokens; the bench's prompts need at least 1200 \
             (use the checkpoint benches/llava_device.py writes)",
            a.model.display()
        );
    }
    sync(dev);
    println!(
        "{}",
        json!({"side": "rust", "what": "load", "seconds": t.elapsed().as_secs_f64(), "kind": format!("{:?}", model.kind())})
    );
    // Inference measures the base model (the reference policy): adapters off.
    model.with_adapters_disabled(|m| a.batches.iter().try_for_each(|&b| bench_batch(m, &a, b)))?;
    bench_train(&model, &a)
}

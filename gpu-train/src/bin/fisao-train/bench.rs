//! `fisao-train bench`: the trainer's device check (benches/ppo_device.sh).
//! One PPO iteration of a random-weight LLaVA shaped like llava-1.5-7b-hf
//! (CLIP ViT-L/14-336 + Vicuna-7B, bf16, LoRA on every language-model linear
//! layer) through the real trainer: sampling, decoding + token rewards,
//! teacher-forced policy/reference/value passes, 4 PPO epochs. The verifier is
//! synthetic (random weights say nothing about images): every token whose id
//! is a multiple of 97 is a "mention" with a score drawn from the baseline
//! range, so the scoring path (decode with offsets, eq. 8, KL) does its work.
//! `--tiny` runs the same on the CPU with the tiny fixture shapes.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use gpu_train::llava::{LlavaConfig, LlavaModel, LoadOptions, LoraConfig};
use gpu_train::trainer::config::TrainConfig;
use gpu_train::trainer::ppo::Trainer;
use gpu_train::trainer::rollout::{Prompt, ResponseText, Scored, Task};
use reward_core::baseline::{Baselines, ScoreClass, ScoreLevel, VerifierInfo};
use reward_core::reward::{ScoredMention, TokenRewarder};
use reward_core::{EntityId, ScoreKind};
use serde_json::json;
use tch::{Device, Kind, Tensor};
use tokenizers::Tokenizer;
use tokenizers::models::wordlevel::WordLevel;

/// llava-hf/llava-1.5-7b-hf's config.json, as far as the shapes go.
const LLAVA_7B: &str = r#"{
  "image_token_index": 32000, "projector_hidden_act": "gelu", "vision_feature_layer": -2,
  "vision_feature_select_strategy": "default", "tie_word_embeddings": false,
  "text_config": {"model_type": "llama", "vocab_size": 32064, "hidden_size": 4096, "intermediate_size": 11008,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 32001, "rope_theta": 10000.0,
    "hidden_act": "silu", "tie_word_embeddings": false},
  "vision_config": {"model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096,
    "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 336, "patch_size": 14,
    "projection_dim": 768, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
}"#;

struct RandomTask {
    prompts: Vec<Vec<i64>>,
    pixels: Tensor,
}

impl Task for RandomTask {
    fn len(&self) -> usize {
        self.prompts.len()
    }
    fn prompt(&self, i: usize) -> Result<Prompt> {
        Ok(Prompt {
            ids: self.prompts[i].clone(),
            pixel_values: Some(self.pixels.narrow(0, i as i64, 1)),
        })
    }
    fn score(&self, _: usize, r: &ResponseText) -> Result<Scored> {
        let mentions = (r.tokens.iter().enumerate())
            .filter(|(_, t)| **t % 97 == 0)
            .map(|(k, t)| {
                ScoredMention::at(k, 10.0 + (*t % 23) as f64, EntityId((*t % 500) as u16))
            })
            .collect();
        Ok(Scored {
            mentions,
            sentence_score: None,
            hallucinated: 0,
        })
    }
}

/// A word-level tokenizer over the model's ids ("t0", "t1", ...): decoding with
/// offsets does the same work as on the real tokenizer.
fn id_tokenizer(vocab: i64) -> Result<Tokenizer> {
    let map: HashMap<String, u32> = (0..vocab as u32).map(|i| (format!("t{i}"), i)).collect();
    let model = WordLevel::builder()
        .vocab(map.into_iter().collect())
        .unk_token("t0".into())
        .build()
        .map_err(|e| anyhow!("{e}"))?;
    Ok(Tokenizer::new(model))
}

pub fn run(tiny: bool, batch: usize, new_tokens: i64, lora_r: i64) -> Result<()> {
    let (config, device) = if tiny {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/llava/tiny-new/config.json"
        ))?;
        (LlavaConfig::from_json(&text)?, Device::Cpu)
    } else {
        (
            LlavaConfig::from_json(LLAVA_7B)?,
            Device::cuda_if_available(),
        )
    };
    let mut opts = LoadOptions::for_device(device);
    opts.lora = Some(LoraConfig {
        r: lora_r,
        alpha: 2.0 * lora_r as f64,
        dropout: 0.0,
        ..Default::default()
    });
    opts.value_head = true;
    tch::manual_seed(0);
    let t0 = Instant::now();
    let model = LlavaModel::from_config(config, &opts)?;
    // Random base weights stand in for a checkpoint: frozen, as when loaded.
    for t in model.base_vs().trainable_variables() {
        let _ = t.set_requires_grad(false);
    }
    let build_s = t0.elapsed().as_secs_f64();
    let mem_model = gpu_train::device::gpu_used_mib();
    let c = &model.config;
    let n_img = c.image_tokens_per_image() as usize;
    let vocab = c.text.vocab_size;
    let prompts: Vec<Vec<i64>> = (0..batch as i64)
        .map(|b| {
            let mut p = vec![1];
            p.extend(std::iter::repeat_n(c.image_token_id, n_img));
            p.extend((0..24 + b % 5).map(|i| 3 + (b * 131 + i * 7919) % (vocab.min(32000) - 3)));
            p
        })
        .collect();
    let v = &c.vision;
    let pixels = Tensor::randn(
        [batch as i64, v.num_channels, v.image_size, v.image_size],
        (Kind::Float, device),
    );
    let task = RandomTask { prompts, pixels };
    let mut cfg = TrainConfig::default();
    (
        cfg.train.batch_size,
        cfg.train.minibatch_size,
        cfg.train.max_new_tokens,
    ) = (batch, (batch / 2).max(1), new_tokens);
    cfg.train.out_dir =
        std::env::temp_dir().join(format!("fisao-ppo-bench-{}", std::process::id()));
    cfg.train.checkpoint_every = u64::MAX;
    let info = VerifierInfo {
        model: "synthetic".into(),
        model_hash: "sha256:0".into(),
        score: ScoreKind::Cosine100,
        template: "{}".into(),
    };
    let mut b = Baselines::new(ScoreLevel::Object, info);
    for (class, xs) in [
        (ScoreClass::Correct, [26.0, 32.0]),
        (ScoreClass::Hallucinated, [10.0, 16.0]),
    ] {
        for x in xs {
            b.push(class, x).map_err(|e| anyhow!("{e}"))?;
        }
    }
    let rewarder =
        TokenRewarder::from_baselines(cfg.reward.clone(), Some(&b)).map_err(|e| anyhow!("{e}"))?;
    let tok = id_tokenizer(vocab)?;
    let out_dir = cfg.train.out_dir.clone();
    let mut trainer = Trainer::new(cfg, &model, &tok, &task, rewarder, &out_dir)?;
    // EOS never ends a row early: every response is `new_tokens` long, as the issue sizes it.
    trainer.suppress_eos = true;
    let t1 = Instant::now();
    let m = trainer.step()?;
    let total = t1.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&out_dir);
    let generated = m.response_tokens * batch as f64;
    let s = m.seconds;
    let row = json!({
        "what": "ppo_iteration", "tiny": tiny, "device": format!("{device:?}"), "kind": format!("{:?}", model.kind()),
        "batch": batch, "new_tokens": new_tokens, "lora_r": lora_r, "mean_response_tokens": m.response_tokens,
        "build_s": build_s, "total_s": total,
        "generation_s": s.generation, "scoring_s": s.scoring, "reference_s": s.reference, "update_s": s.update,
        "generation_tok_per_s": generated / s.generation.max(1e-9),
        "reference_tok_per_s": generated / s.reference.max(1e-9),
        "update_tok_per_s": generated * 4.0 / s.update.max(1e-9),
        "gpu_mib_after_build": mem_model, "gpu_mib_peak_reserved": gpu_train::device::gpu_used_mib(),
        "policy_loss": m.policy_loss, "value_loss": m.value_loss, "approx_kl": m.approx_kl, "mentions": m.mentions,
    });
    println!("{row}");
    if !(m.policy_loss.is_finite() && m.value_loss.is_finite()) {
        return Err(anyhow!("non-finite losses: {row}")).context("ppo bench");
    }
    Ok(())
}

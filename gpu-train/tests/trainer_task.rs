//! The COCO task glue end to end on the tiny LLaVA fixture: LLaVA-Instruct
//! lines + COCO annotations + a PNG image + verifier embedding caches written
//! to disk -> prompts with the image run and pixels, SFT rollouts scored for
//! the baseline, and one PPO iteration (`none` reward) with images.

use std::path::{Path, PathBuf};

use gpu_train::llava::{LlavaModel, LlavaTokenizer, LoadOptions, LoraConfig, SamplingConfig};
use gpu_train::trainer::config::{DataConfig, TrainConfig};
use gpu_train::trainer::ppo::Trainer;
use gpu_train::trainer::rollout::Task;
use gpu_train::trainer::task::{CacheVerifier, CocoTask};
use gpu_train::trainer::{baseline, data};
use reward_core::Matcher;
use reward_core::reward::{RewardMode, TokenRewarder};
use reward_core::vocab::{Expansion, Vocabulary};
use tch::Device;

mod common;
use common::{png, write_caches, write_coco};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/llava/tiny-new")
}

/// The caches written by `common::write_caches` (4 wide), loaded.
fn caches(d: &Path, image: &[u8]) -> CacheVerifier {
    write_caches(d, image, 4, "{}");
    CacheVerifier::load(
        &d.join("text.safetensors"),
        &d.join("images.safetensors"),
        "cosine100",
        None,
    )
    .unwrap()
}

#[test]
fn trainer_coco_task_baseline_and_ppo_with_images() {
    tch::set_num_threads(1);
    let d = std::env::temp_dir().join(format!("fisao-task-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let image = png(50, 40);
    write_coco(&d, &image, &["Describe the image.", "What is here?"]);
    let cfg = DataConfig {
        instruct: d.join("instruct.jsonl"),
        image_root: d.join("images"),
        instances: d.join("inst.json"),
        captions: d.join("caps.json"),
        max_samples: 10,
        skip_bad_samples: false,
    };
    let vocab = Vocabulary::builtin(Expansion::Fisao);
    let ds = data::load(&cfg, &vocab, &Matcher::new(&vocab)).unwrap();
    let verifier = caches(&d, &image);

    tch::manual_seed(3);
    let mut opts = LoadOptions::for_device(Device::Cpu);
    opts.lora = Some(LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        ..Default::default()
    });
    opts.value_head = true;
    let model = LlavaModel::load(&fixture(), &opts).unwrap();
    let per_image = model.config.image_tokens_per_image() as usize;
    let tok = LlavaTokenizer::from_file(
        &fixture().join("tokenizer.json"),
        model.config.image_token_id,
        per_image,
    )
    .unwrap();
    let task = CocoTask::new(
        ds,
        tok,
        model.config.vision.image_size as u32,
        &vocab,
        verifier,
        false,
    );

    let p = task.prompt(0).unwrap();
    let size = model.config.vision.image_size;
    assert_eq!(
        p.pixel_values.as_ref().unwrap().size(),
        vec![1, 3, size, size]
    );
    assert_eq!(
        p.ids
            .iter()
            .filter(|&&t| t == model.config.image_token_id)
            .count(),
        per_image
    );
    // Mentions of the ground truth are correct, others hallucinated, each scored from the caches.
    let scored = task.score_text(0, "A dog and a giraffe.").unwrap();
    let flags: Vec<bool> = scored.iter().map(|s| s.2).collect();
    assert_eq!(flags, vec![true, false]);
    assert!(scored.iter().all(|s| s.1.is_finite()));

    let mut sampling = SamplingConfig::greedy(&model, 8);
    (sampling.temperature, sampling.seed) = (1.0, Some(5));
    let scores = baseline::collect(&model, &task, 2, &sampling, |_| {}).unwrap();
    let n = scores.token_correct.len() + scores.token_hallucinated.len();
    eprintln!("baseline mentions from the random policy: {n}");

    let mut tc = TrainConfig::default();
    tc.reward.mode = RewardMode::KlOnly;
    (
        tc.train.batch_size,
        tc.train.minibatch_size,
        tc.train.max_new_tokens,
    ) = (2, 1, 6);
    tc.train.out_dir = d.join("run");
    let rewarder = TokenRewarder::from_baselines(tc.reward.clone(), None).unwrap();
    let tokenizer = task.tokenizer().inner().clone();
    let mut trainer =
        Trainer::new(tc, &model, &tokenizer, &task, rewarder, &d.join("run")).unwrap();
    let m = trainer.step().unwrap();
    assert!(
        m.policy_loss.is_finite() && m.value_loss.is_finite() && m.response_tokens > 0.0,
        "{m:?}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

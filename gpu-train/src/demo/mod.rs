//! `cargo xtask demo`: FiSAO end to end on the synthetic world
//! (`/design/synthetic-world.md`, docs/synthetic-world.md). Stages, each in
//! its own file: the tiny CLIP verifier trained contrastively on true
//! image-object pairs and saved in HF CLIP format (`verifier`), the caption
//! BPE tokenizer (`lm_tokenizer`), the tiny LLaVA trained by SFT on the biased
//! captions and saved in HF LLaVA format (`sft`), then baselines, the PPO
//! variants, evaluation on held-out images and the report (`pipeline`).

pub mod lm_tokenizer;
pub mod sft;

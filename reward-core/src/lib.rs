//! # reward-core
//!
//! The portable heart of fisao-rs, a Rust implementation of FiSAO
//! (Fine-Grained Self-Alignment Optimization, ICLR 2025). Everything here is
//! `no_std` + `alloc` unless a feature says otherwise, so the same code runs
//! in the trainer, on the command line, in the browser (wasm32) and on bare
//! metal.
//!
//! - [`vocab`]: the expanded entity vocabulary (COCO + LVIS + WordNet), compiled in.
//! - [`mentions`]: object mentions in text (longest match on word boundaries, byte spans).
//! - [`align`]: mentions to model tokens from tokenizer offsets (`last` / `spread`).
//! - [`baseline`]: eq. 7 score statistics, mergeable, saved as `baseline.json`.
//! - [`reward`]: eq. 8 per-token rewards with the KL penalty.
//! - [`ppo`]: GAE, whitening and the clipped PPO losses (the trainer's reference).
//! - [`metrics`]: CHAIR (reference and fixed), POPE, BLEU/ROUGE-L/CIDEr-D/METEOR, AUROC, SVG figures.
//!
//! ## Features
//! - `std` (default): the standard library.
//! - `serde`: serde support for baselines, configs and results.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod align;
pub mod baseline;
pub mod mentions;
pub mod metrics;
pub mod ppo;
pub mod reward;
pub mod vocab;

#[cfg(feature = "clip")]
pub mod clip;
#[cfg(feature = "gpu")]
pub mod gpu;
#[cfg(feature = "clip")]
pub mod labels;

pub use align::{Alignment, Coverage, align_mentions};
pub use baseline::{BaselineError, Baselines, ScoreKind, ScoreLevel, ScoreStats, VerifierInfo};
pub use mentions::{Matcher, Mention};
pub use ppo::{PpoConfig, PpoError};
pub use reward::{RewardBounds, RewardConfig, RewardError, ScoredMention, TokenRewarder};
pub use vocab::{EntityId, VocabError, Vocabulary};

//! The FiSAO PPO trainer (method.md sections 5-7): configuration, data,
//! rollouts over the LLaVA policy, token rewards from reward-core, the PPO
//! update, checkpoints and metrics. See docs/trainer.md.

pub mod baseline;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod losses;
pub mod metrics;
pub mod optim;
pub mod ppo;
pub mod rollout;
pub mod task;

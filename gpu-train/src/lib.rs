//! # gpu-train
//!
//! FiSAO's training side on libtorch through `tch`: LLaVA-1.5 with LoRA, the
//! PPO trainer and the synthetic world. See the workspace README for what
//! works today.

pub mod demo;
pub mod device;
pub mod llava;
pub mod trainer;
pub mod world;

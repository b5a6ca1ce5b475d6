//! `cargo xtask vocab`: regenerates the entity vocabulary (being written).
use anyhow::{Result, bail};

/// Entry point of `cargo xtask vocab`.
pub fn run(_args: &[String]) -> Result<()> {
    bail!("cargo xtask vocab is not implemented yet")
}

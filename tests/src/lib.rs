//! Cross-crate tests and golden fixtures for fisao-rs. The tests live in
//! `tests/tests/`; `fixtures/` holds tiny reference models and outputs with
//! the scripts that made them.

use std::path::PathBuf;

/// The folder holding the committed golden fixtures.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

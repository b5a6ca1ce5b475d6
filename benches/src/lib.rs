//! Shared helpers for the benches live here; the benches are in `benches/benches/`.

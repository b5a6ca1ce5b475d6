//! Fuzz target: the mention matcher and the token alignment on arbitrary
//! bytes. Every check lives in `../check.rs`, shared with the seed-corpus
//! test `reward-core/tests/mentions_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check_input(data));

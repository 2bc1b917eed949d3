//! Fuzz target: arbitrary bytes, cut into arbitrary chunks, through
//! `socklab_protocol::Session` in `lines` (and `raw`) framing. After every chunk
//! it checks the reply against an independent model (each complete line
//! uppercased, `ERR line too long` and nothing more after an over-long line),
//! that the bytes buffered never exceed `max_line`, and that a closing session
//! stays closed. The checks live in the protocol crate's tests
//! (`crates/protocol/tests/support/lines.rs`), shared with the proptest that runs
//! them in CI.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/protocol/tests/support/lines.rs"]
mod lines_model;

fuzz_target!(|data: &[u8]| {
    lines_model::check_bytes(data);
});

//! Property tests of the `lines` framing invariants that the fuzz target
//! (`fuzz/fuzz_targets/lines.rs`) checks, run on stable in CI. The checker itself
//! is `support/lines.rs`, shared with the fuzz target.

#[path = "support/lines.rs"]
mod lines_model;

use lines_model::{check_bytes, check_chunks, model_reply};
use proptest::prelude::*;

/// Input bytes rich in what matters to the framing: newlines, a-z, other bytes.
fn stream_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => Just(b'\n'),
        3 => b'a'..=b'z',
        2 => any::<u8>(),
    ]
}

proptest! {
    /// Every feed, in any chunking, agrees with the model: replies as soon as a
    /// line completes, buffered bytes bounded by max_line, closing permanent after
    /// an over-long line, raw framing bytewise.
    #[test]
    fn every_feed_matches_the_model(
        chunks in proptest::collection::vec(proptest::collection::vec(stream_byte(), 0..40), 0..24),
        max_line in 1usize..48,
    ) {
        let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        check_chunks(max_line, &chunks);
    }

    /// The fuzz target's own decoding of raw bytes, on arbitrary bytes.
    #[test]
    fn fuzz_target_logic_holds(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check_bytes(&data);
    }
}

/// The model itself, on cases worked out by hand.
#[test]
fn model_matches_hand_worked_cases() {
    assert_eq!(model_reply(b"ab\ncd", 4), (b"AB\n".to_vec(), 1, false));
    assert_eq!(model_reply(b"abcd\n", 4), (b"ABCD\n".to_vec(), 1, false));
    let mut err = b"OK\n".to_vec();
    err.extend_from_slice(b"ERR line too long\n");
    assert_eq!(model_reply(b"ok\nabcde", 4), (err.clone(), 1, true));
    assert_eq!(model_reply(b"ok\nabcde\nmore\n", 4), (err, 1, true));
}

//! The invariants of `lines` framing, checked against an independent model.
//!
//! Shared by the property test (`tests/lines_invariants.rs`, run in CI on stable)
//! and the cargo-fuzz target (`fuzz/fuzz_targets/lines.rs`, which includes this
//! file by path), so the fuzzer and the proptest check exactly the same things.
//!
//! The model is written from the protocol's description, not from `Session`'s
//! code: the reply to a byte stream is each complete line uppercased with its
//! `\n`, in order, up to the first line (complete, or still unterminated) longer
//! than `max_line`; that one is answered with `ERR line too long` and nothing is
//! answered after it.

#![allow(dead_code)]

use socklab_protocol::{Framing, Limits, Session, LINE_TOO_LONG};

/// What the whole input so far must have produced: (reply bytes, requests
/// answered, closing).
pub fn model_reply(input: &[u8], max_line: usize) -> (Vec<u8>, usize, bool) {
    let mut out = Vec::new();
    let mut requests = 0;
    let mut rest = input;
    loop {
        match rest.iter().position(|&b| b == b'\n') {
            Some(end) => {
                if end > max_line {
                    out.extend_from_slice(LINE_TOO_LONG);
                    return (out, requests, true);
                }
                out.extend(rest[..end].iter().map(u8::to_ascii_uppercase));
                out.push(b'\n');
                requests += 1;
                rest = &rest[end + 1..];
            }
            None if rest.len() > max_line => {
                out.extend_from_slice(LINE_TOO_LONG);
                return (out, requests, true);
            }
            None => return (out, requests, false),
        }
    }
}

/// Feeds `chunks` one by one to a `lines` session and a `raw` session and checks,
/// after every feed:
///
/// - the lines reply so far equals [`model_reply`] of all input so far (replies
///   are produced as soon as a line completes, never held back or reordered);
/// - `requests` and `closing` agree with the model, and `Fed::closing` with
///   `Session::is_closing`;
/// - the bytes buffered for an unfinished line never exceed `max_line`, and are
///   exactly that unfinished tail while the session is open (none once closing);
/// - once closing, a session stays closing and answers nothing more;
/// - raw framing answers every byte uppercased, one request per non-empty chunk.
///
/// Panics with the failing invariant.
pub fn check_chunks(max_line: usize, chunks: &[&[u8]]) {
    let limits = Limits { max_line };
    let mut lines = Session::new(Framing::Lines, limits);
    let mut raw = Session::new(Framing::Raw, limits);
    let (mut lines_out, mut raw_out) = (Vec::new(), Vec::new());
    let mut fed_so_far = Vec::new();
    let (mut requests, mut raw_requests) = (0, 0);
    for chunk in chunks {
        let was_closing = lines.is_closing();
        let before = lines_out.len();
        let fed = lines.feed(chunk, &mut lines_out);
        fed_so_far.extend_from_slice(chunk);
        requests += fed.requests;

        let (expected, expected_requests, expected_closing) = model_reply(&fed_so_far, max_line);
        assert_eq!(
            lines_out, expected,
            "reply differs from the model (max_line {max_line})"
        );
        assert_eq!(requests, expected_requests, "requests counted");
        assert_eq!(lines.is_closing(), expected_closing, "closing");
        assert_eq!(
            fed.closing,
            lines.is_closing(),
            "Fed::closing vs is_closing"
        );
        assert!(
            lines.buffered() <= max_line,
            "buffered {} bytes past max_line {max_line}",
            lines.buffered()
        );
        if lines.is_closing() {
            assert_eq!(
                lines.buffered(),
                0,
                "a closing session holds no partial line"
            );
        } else {
            let tail = fed_so_far.len()
                - fed_so_far
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
            assert_eq!(lines.buffered(), tail, "buffered is the unfinished line");
        }
        if was_closing {
            assert_eq!(lines_out.len(), before, "answered after closing");
            assert_eq!(fed.requests, 0, "requests after closing");
            assert!(lines.is_closing(), "closing is permanent");
        }

        let raw_fed = raw.feed(chunk, &mut raw_out);
        raw_requests += raw_fed.requests;
        assert!(!raw_fed.closing && !raw.is_closing(), "raw never closes");
        assert_eq!(raw.buffered(), 0, "raw buffers nothing");
    }
    assert_eq!(raw_out, fed_so_far.to_ascii_uppercase(), "raw reply");
    assert_eq!(
        raw_requests,
        chunks.iter().filter(|c| !c.is_empty()).count(),
        "raw: one request per non-empty chunk"
    );
}

/// Turns arbitrary bytes (a fuzzer's input) into a limit and a chunking, then
/// [`check_chunks`]. Byte 0 picks `max_line` (1..=256); after it, each chunk is a
/// length byte (0..=63) followed by up to that many bytes of input.
pub fn check_bytes(data: &[u8]) {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let max_line = 1 + usize::from(first);
    let mut chunks = Vec::new();
    while let Some((&len, after)) = rest.split_first() {
        let take = usize::from(len % 64).min(after.len());
        chunks.push(&after[..take]);
        rest = &after[take..];
    }
    check_chunks(max_line, &chunks);
}

//! Request bytes, and what the reply to them must be.
//!
//! The protocol defines the answer for all 256 byte values: `a`–`z` become `A`–`Z`,
//! every other byte comes back unchanged. So payloads are two lowercase letters,
//! then one byte of any value, repeated: letters make uppercasing *change* the
//! bytes (an echo server that forgets to uppercase shows up as mismatches), and the
//! third bytes walk through a shuffled sequence of all 256 values (in lines framing
//! all but `\n`, which ends a request), so a server that uppercases Latin-1 or
//! UTF-8, strips a NUL or a `\r`, or treats `0xFF` specially is caught too. The pool
//! holds every value at least once.
//!
//! Bytes come from a small deterministic generator. A thread's connections share
//! one pool (so 10,000 connections of 1 MiB messages do not hold 10,000 copies) and
//! each starts at its own offset. Each request starts at a different offset into the
//! connection's pool, so a server that replays an old reply is caught too.
//!
//! The expected reply is computed with std's `to_ascii_uppercase` — never with the
//! `socklab-protocol` crate the servers use, so one bug cannot hide itself by being
//! on both sides.

use std::sync::Arc;

/// Distinct request offsets per connection before the pattern repeats.
const SLOTS: usize = 61;
/// Every `PERIOD`-th byte (the last of each period) is of any value; the others are
/// lowercase letters.
const PERIOD: usize = 3;
/// Offsets are multiples of this (a multiple of `PERIOD`, so every request starts
/// with a letter); `SLOTS × STRIDE / PERIOD` ≥ 256 any-value bytes in every pool.
const STRIDE: usize = 5 * PERIOD;

/// The bytes requests are cut from, and their uppercase: shared by connections.
#[derive(Debug)]
struct Pool {
    bytes: Vec<u8>,
    upper: Vec<u8>,
}

/// One connection's request generator.
#[derive(Debug, Clone)]
pub struct Payload {
    pool: Arc<Pool>,
    body_len: usize,
    newline: bool,
    next_slot: usize,
}

/// SplitMix64: a tiny, well-mixed generator; plenty for payload bytes.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Payload {
    /// A generator with its own pool; requests are `body_len` bytes, plus `\n` when
    /// `newline` (lines framing). `stream` picks both the pool bytes and the first
    /// offset.
    pub fn new(seed: u64, stream: u64, body_len: usize, newline: bool) -> Payload {
        let mut state = seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F);
        let any = any_value_sequence(&mut state, newline);
        let mut next_any = any.iter().cycle();
        let bytes: Vec<u8> = (0..body_len + SLOTS * STRIDE)
            .map(|i| {
                if i % PERIOD == PERIOD - 1 {
                    *next_any.next().expect("a cycle never ends")
                } else {
                    b'a' + (splitmix64(&mut state) % 26) as u8
                }
            })
            .collect();
        let upper = bytes.to_ascii_uppercase();
        Payload {
            pool: Arc::new(Pool { bytes, upper }),
            body_len,
            newline,
            next_slot: (stream % SLOTS as u64) as usize,
        }
    }

    /// A generator for connection `conn` sharing this one's pool, starting at its
    /// own offset.
    pub fn for_conn(&self, conn: u64) -> Payload {
        Payload {
            pool: Arc::clone(&self.pool),
            next_slot: (conn % SLOTS as u64) as usize,
            ..*self
        }
    }

    /// Bytes on the wire per request (and per reply).
    pub fn wire_len(&self) -> usize {
        self.body_len + usize::from(self.newline)
    }

    /// Picks the next request and returns its offset (pass it to the other methods).
    pub fn next_offset(&mut self) -> usize {
        let off = self.next_slot * STRIDE;
        self.next_slot = (self.next_slot + 1) % SLOTS;
        off
    }

    /// Appends the request at `off` to `out`.
    pub fn write_request(&self, off: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.pool.bytes[off..off + self.body_len]);
        if self.newline {
            out.push(b'\n');
        }
    }

    /// The request body at `off` (without `\n`).
    pub fn body(&self, off: usize) -> &[u8] {
        &self.pool.bytes[off..off + self.body_len]
    }

    /// The expected (uppercased) reply body at `off` (without `\n`).
    pub fn expected_body(&self, off: usize) -> &[u8] {
        &self.pool.upper[off..off + self.body_len]
    }

    /// Whether `got` equals bytes `pos..pos + got.len()` of the expected reply to the
    /// request at `off`. Bytes past the end of the expected reply never match.
    pub fn matches(&self, off: usize, pos: usize, got: &[u8]) -> bool {
        if pos + got.len() > self.wire_len() {
            return false;
        }
        let in_body = self.body_len.saturating_sub(pos).min(got.len());
        let (body, tail) = got.split_at(in_body);
        if body != &self.pool.upper[off + pos..off + pos + in_body] {
            return false;
        }
        // Whatever is left is the single '\n' of lines framing.
        tail.iter().all(|&b| b == b'\n')
    }
}

/// Every byte value once, shuffled (Fisher–Yates): without `\n` when it would
/// end a line.
fn any_value_sequence(state: &mut u64, lines: bool) -> Vec<u8> {
    let mut v: Vec<u8> = (0..=255u8).filter(|&b| !(lines && b == b'\n')).collect();
    for i in (1..v.len()).rev() {
        let j = (splitmix64(state) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// Writes `id` as [`crate::config::UDP_ID_LEN`] base-26 lowercase letters.
pub fn encode_id(mut id: u64, out: &mut [u8]) {
    for b in out.iter_mut().rev() {
        *b = b'a' + (id % 26) as u8;
        id /= 26;
    }
}

/// Reads an id written by [`encode_id`], in either case (a correct server uppercases
/// it; a broken one might not). `None` if the bytes are not letters.
pub fn decode_id(bytes: &[u8]) -> Option<u64> {
    let mut id: u64 = 0;
    for &b in bytes {
        let d = match b {
            b'a'..=b'z' => b - b'a',
            b'A'..=b'Z' => b - b'A',
            _ => return None,
        };
        id = id.checked_mul(26)?.checked_add(u64::from(d))?;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_changes_when_uppercased() {
        let mut p = Payload::new(1, 2, 1, false);
        for _ in 0..SLOTS * 2 {
            let off = p.next_offset();
            assert_ne!(p.body(off), p.expected_body(off));
        }
    }

    /// The pool holds all 256 byte values (lines framing: all but `\n`), and the
    /// expected reply changes only the letters.
    #[test]
    fn every_byte_value_is_sent_and_only_letters_change() {
        for lines in [false, true] {
            let p = Payload::new(9, 3, 64, lines);
            let mut seen = [false; 256];
            for &b in &p.pool.bytes {
                seen[b as usize] = true;
            }
            let missing: Vec<usize> = (0..256).filter(|&b| !seen[b]).collect();
            let want: Vec<usize> = if lines { vec![b'\n' as usize] } else { vec![] };
            assert_eq!(missing, want, "lines framing: {lines}");
            for (a, b) in p.pool.bytes.iter().zip(&p.pool.upper) {
                assert_eq!(a == b, !a.is_ascii_lowercase(), "{a:#04x} -> {b:#04x}");
            }
        }
    }

    #[test]
    fn matches_checks_body_and_newline() {
        let mut p = Payload::new(7, 0, 5, true);
        let off = p.next_offset();
        let mut want = p.expected_body(off).to_vec();
        want.push(b'\n');
        assert!(p.matches(off, 0, &want));
        assert!(p.matches(off, 2, &want[2..]));
        assert!(!p.matches(off, 0, p.body(off)));
        assert!(!p.matches(off, 5, b"x"));
        assert!(!p.matches(off, 5, b"\n\n"));
    }

    #[test]
    fn connections_share_a_pool_but_not_offsets() {
        let a = Payload::new(1, 0, 16, false);
        let (mut b, mut c) = (a.for_conn(1), a.for_conn(2));
        let (ob, oc) = (b.next_offset(), c.next_offset());
        assert_ne!(b.body(ob), c.body(oc));
        assert!(Arc::ptr_eq(&b.pool, &c.pool));
    }

    #[test]
    fn ids_round_trip_in_any_case() {
        let mut buf = [0u8; 8];
        encode_id(123_456_789, &mut buf);
        assert_eq!(decode_id(&buf), Some(123_456_789));
        assert_eq!(decode_id(&buf.to_ascii_uppercase()), Some(123_456_789));
        assert_eq!(decode_id(b"12345678"), None);
    }
}

//! Framing: how a byte stream is cut into requests, and what each one is answered with.
//!
//! TCP is a byte stream: one `write()` by the client can arrive as many `read()`s
//! on the server and several writes can arrive as one. The tutorial's servers treat
//! each `recv(1024)` as one message; that is only true by luck. Here the framing is
//! explicit, and the property tests check that any chunking gives the same bytes.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::limits::Limits;

/// The line sent to a client whose `lines` request exceeded [`Limits::max_line`],
/// just before the server closes the connection.
pub const LINE_TOO_LONG: &[u8] = b"ERR line too long\n";

/// The line sent to a client whose unfinished `lines` request took longer than
/// its request timeout to arrive (see [`Session::feed_at`]), just before the
/// server closes the connection.
pub const REQUEST_TIMED_OUT: &[u8] = b"ERR request timed out\n";

/// How a TCP byte stream is cut into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// Every byte read is sent back uppercased, in order, same length. Each chunk the
    /// driver reads counts as one request. Works with `nc` and any echo benchmark.
    #[default]
    Raw,
    /// Each `\n`-terminated line is one request, answered by its uppercased line.
    Lines,
}

impl FromStr for Framing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(Framing::Raw),
            "lines" => Ok(Framing::Lines),
            other => Err(format!("unknown framing {other:?}: expected raw or lines")),
        }
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Framing::Raw => "raw",
            Framing::Lines => "lines",
        })
    }
}

/// What one call to [`Session::feed`] produced besides the reply bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fed {
    /// Requests completed by this input; the driver performs `work.times(requests)`
    /// before it sends the reply bytes.
    pub requests: usize,
    /// The client sent bad input: the reply bytes end with an error line, and after
    /// sending them the driver must close the connection and ignore further input.
    pub closing: bool,
}

/// One connection's protocol state. Input in, reply bytes out; no I/O.
///
/// Time is an input like the bytes (as in quinn-proto): the driver says when the
/// bytes arrived ([`Session::feed_at`]), and the session, which reads no clock,
/// applies the request timeout itself. So every model, blocking or not, gives a
/// client that dribbles a request the same answer.
#[derive(Debug, Clone)]
pub struct Session {
    framing: Framing,
    limits: Limits,
    /// Bytes of a `lines` request whose `\n` has not arrived yet. Never longer than
    /// `limits.max_line`.
    partial_line: Vec<u8>,
    closing: bool,
    /// How long an unfinished request may take to arrive (`None`: forever).
    request_timeout: Option<Duration>,
    /// When the unfinished request's first bytes arrived.
    request_began: Option<Instant>,
}

impl Session {
    pub fn new(framing: Framing, limits: Limits) -> Self {
        Session {
            framing,
            limits,
            partial_line: Vec::new(),
            closing: false,
            request_timeout: None,
            request_began: None,
        }
    }

    /// This session with a request timeout: an unfinished request must arrive
    /// whole within `timeout` of its first byte (`None`: no limit).
    pub fn with_request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Feeds bytes the client sent, which arrived at `now`; appends the reply
    /// bytes to `out`. As [`Session::feed`], and the request timeout besides:
    ///
    /// A slowloris client is never silent — it sends one byte of a request, then
    /// another just before the idle timeout, and never finishes — so a read
    /// timeout never fires and it holds a thread, a process or a worker forever.
    /// So an *unfinished* request must complete within the request timeout,
    /// counted from its first byte. It is checked when bytes arrive, which is
    /// exactly when a dribbler shows itself (a client that goes quiet mid-request
    /// is the read timeout's). Past it the client gets what it asked for so far,
    /// [`REQUEST_TIMED_OUT`], and a close: bad input, answered like an over-long
    /// line, as an HTTP server answers `408 Request Timeout` — a client should
    /// learn why it was cut off rather than see a connection die. In raw framing
    /// every byte completes a request, so nothing is ever unfinished.
    pub fn feed_at(&mut self, input: &[u8], now: Instant, out: &mut Vec<u8>) -> Fed {
        let fed = self.feed(input, out);
        if fed.closing || self.partial_line.is_empty() {
            self.request_began = None;
            return fed;
        }
        let began = if fed.requests > 0 {
            // This input finished a request: the unfinished one began in it.
            *self.request_began.insert(now)
        } else {
            *self.request_began.get_or_insert(now)
        };
        match self.request_timeout {
            Some(limit) if now.saturating_duration_since(began) > limit => {
                self.reject(out, REQUEST_TIMED_OUT, fed.requests)
            }
            _ => fed,
        }
    }

    /// Feeds bytes the client sent; appends the reply bytes to `out`. The framing
    /// alone, with no clock: no request timeout applies (see [`Session::feed_at`]).
    ///
    /// Bytes fed after the session started closing are ignored: the driver is
    /// about to close the connection.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Fed {
        if self.closing || input.is_empty() {
            return Fed {
                requests: 0,
                closing: self.closing,
            };
        }
        match self.framing {
            Framing::Raw => {
                out.extend(input.iter().map(u8::to_ascii_uppercase));
                Fed {
                    requests: 1,
                    closing: false,
                }
            }
            Framing::Lines => self.feed_lines(input, out),
        }
    }

    /// True once bad input was seen; the connection must close after its last reply.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Bytes held for an unfinished line (what this connection costs in memory
    /// beyond its socket buffers).
    pub fn buffered(&self) -> usize {
        self.partial_line.len()
    }

    fn feed_lines(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Fed {
        let mut requests = 0;
        while let Some(newline) = input.iter().position(|&b| b == b'\n') {
            let (line, rest) = input.split_at(newline);
            if self.partial_line.len() + line.len() > self.limits.max_line {
                return self.reject(out, LINE_TOO_LONG, requests);
            }
            out.extend(self.partial_line.drain(..).map(|b| b.to_ascii_uppercase()));
            out.extend(line.iter().map(u8::to_ascii_uppercase));
            out.push(b'\n');
            requests += 1;
            input = &rest[1..];
        }
        if self.partial_line.len() + input.len() > self.limits.max_line {
            return self.reject(out, LINE_TOO_LONG, requests);
        }
        self.partial_line.extend_from_slice(input);
        Fed {
            requests,
            closing: false,
        }
    }

    /// Bad input: answer it with `error` and close.
    fn reject(&mut self, out: &mut Vec<u8>, error: &[u8], requests: usize) -> Fed {
        self.closing = true;
        self.partial_line = Vec::new();
        out.extend_from_slice(error);
        Fed {
            requests,
            closing: true,
        }
    }
}

/// Uppercases a datagram in place: UDP's reply is the same datagram, uppercased,
/// whole. One datagram in, one datagram out; an empty datagram gets an empty reply.
pub fn uppercase_datagram(datagram: &mut [u8]) {
    datagram.make_ascii_uppercase();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed_all(framing: Framing, limits: Limits, chunks: &[&[u8]]) -> (Vec<u8>, usize, bool) {
        let mut session = Session::new(framing, limits);
        let mut out = Vec::new();
        let mut requests = 0;
        for chunk in chunks {
            let fed = session.feed(chunk, &mut out);
            requests += fed.requests;
        }
        (out, requests, session.is_closing())
    }

    #[test]
    fn raw_uppercases_ascii_only() {
        let input = b"hello, World! \x00\x7f\x80\xff\xe4\xbd\xa0 z";
        let (out, requests, _) = feed_all(Framing::Raw, Limits::default(), &[input]);
        assert_eq!(out, b"HELLO, WORLD! \x00\x7f\x80\xff\xe4\xbd\xa0 Z");
        assert_eq!(requests, 1);
    }

    #[test]
    fn lines_answers_each_complete_line() {
        let (out, requests, closing) =
            feed_all(Framing::Lines, Limits::default(), &[b"ab\ncd", b"\n\nef"]);
        assert_eq!(out, b"AB\nCD\n\n");
        assert_eq!(requests, 3);
        assert!(!closing);
    }

    #[test]
    fn over_long_line_is_refused_and_closes() {
        let limits = Limits { max_line: 4 };
        let (out, requests, closing) = feed_all(Framing::Lines, limits, &[b"ok\n12345", b"x\n"]);
        assert_eq!(out, [b"OK\n".as_slice(), LINE_TOO_LONG].concat());
        assert_eq!(requests, 1);
        assert!(closing);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_accepted() {
        let limits = Limits { max_line: 4 };
        let (out, _, closing) = feed_all(Framing::Lines, limits, &[b"ab", b"cd\n"]);
        assert_eq!(out, b"ABCD\n");
        assert!(!closing);
    }

    #[test]
    fn partial_line_never_exceeds_the_limit() {
        let limits = Limits { max_line: 8 };
        let mut session = Session::new(Framing::Lines, limits);
        let mut out = Vec::new();
        for _ in 0..100 {
            session.feed(b"abc", &mut out);
            assert!(session.buffered() <= 8);
        }
        assert!(session.is_closing());
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A lines session whose requests must arrive within 100 ms.
    fn timed_lines() -> Session {
        Session::new(Framing::Lines, Limits::default()).with_request_timeout(Some(ms(100)))
    }

    #[test]
    fn a_line_dribbled_past_the_request_timeout_is_answered_and_closes() {
        let (t0, mut session, mut out) = (Instant::now(), timed_lines(), Vec::new());
        assert!(!session.feed_at(b"ok\nab", t0, &mut out).closing);
        assert!(!session.feed_at(b"c", t0 + ms(100), &mut out).closing);
        let fed = session.feed_at(b"d", t0 + ms(101), &mut out);
        assert!(fed.closing && session.is_closing());
        assert_eq!(out, [b"OK\n".as_slice(), REQUEST_TIMED_OUT].concat());
        assert_eq!(session.buffered(), 0);
    }

    #[test]
    fn the_request_timeout_counts_from_the_first_byte_of_each_request() {
        let (t0, mut session, mut out) = (Instant::now(), timed_lines(), Vec::new());
        // A fast client whose reads always end mid-line: each line is finished
        // well within the limit, though a line has been unfinished ever since t0.
        for i in 0..10 {
            let fed = session.feed_at(b"x\ny", t0 + ms(60 * i), &mut out);
            assert!(!fed.closing, "cut at read {i}");
        }
        // A finished request clears the clock: a pause between requests is the
        // idle timeout's business.
        session.feed_at(b"\n", t0 + ms(600), &mut out);
        assert!(!session.feed_at(b"z", t0 + ms(5000), &mut out).closing);
    }

    #[test]
    fn without_a_request_timeout_or_in_raw_framing_nothing_times_out() {
        let later = Instant::now() + Duration::from_secs(3600);
        let mut out = Vec::new();
        let mut lines = Session::new(Framing::Lines, Limits::default());
        lines.feed_at(b"partial", Instant::now(), &mut out);
        assert!(!lines.feed_at(b"more", later, &mut out).closing);
        let timeout = Some(Duration::from_millis(1));
        let mut raw = Session::new(Framing::Raw, Limits::default()).with_request_timeout(timeout);
        raw.feed_at(b"a", Instant::now(), &mut out);
        assert!(!raw.feed_at(b"b", later, &mut out).closing);
    }

    #[test]
    fn datagram_is_uppercased_whole() {
        let mut d = vec![b'a'; crate::MAX_UDP_PAYLOAD];
        uppercase_datagram(&mut d);
        assert!(d.iter().all(|&b| b == b'A'));
        let mut empty: [u8; 0] = [];
        uppercase_datagram(&mut empty);
    }

    /// Splits `input` at the given cut points (taken modulo its length).
    fn split<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points {
            chunks.push(&input[start..p]);
            start = p;
        }
        chunks.push(&input[start..]);
        chunks
    }

    fn framing_strategy() -> impl Strategy<Value = Framing> {
        prop_oneof![Just(Framing::Raw), Just(Framing::Lines)]
    }

    proptest! {
        /// Any chunking of the input gives the same reply bytes as the whole input at once.
        #[test]
        fn chunking_never_changes_the_reply(
            input in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b'\n')], 0..512),
            cuts in proptest::collection::vec(any::<usize>(), 0..16),
            framing in framing_strategy(),
            max_line in 1usize..64,
        ) {
            let limits = Limits { max_line };
            let whole = feed_all(framing, limits, &[&input]);
            let chunked = feed_all(framing, limits, &split(&input, &cuts));
            prop_assert_eq!(&whole.0, &chunked.0);
            prop_assert_eq!(whole.2, chunked.2);
            if framing == Framing::Lines {
                prop_assert_eq!(whole.1, chunked.1);
            }
        }

        /// Raw framing keeps the length and uppercases exactly the bytes a-z.
        #[test]
        fn raw_keeps_length_and_maps_bytewise(input in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let (out, _, _) = feed_all(Framing::Raw, Limits::default(), &[&input]);
            prop_assert_eq!(out.len(), input.len());
            for (i, o) in input.iter().zip(&out) {
                let expected = if i.is_ascii_lowercase() { i - 32 } else { *i };
                prop_assert_eq!(*o, expected);
            }
        }

        /// Lines framing answers exactly the complete lines, each uppercased, when none is too long.
        #[test]
        fn lines_answers_complete_lines(lines in proptest::collection::vec("[a-zA-Z0-9 ]{0,20}", 0..20), tail in "[a-z]{0,5}") {
            let mut input = String::new();
            for l in &lines { input.push_str(l); input.push('\n'); }
            input.push_str(&tail);
            let (out, requests, closing) = feed_all(Framing::Lines, Limits::default(), &[input.as_bytes()]);
            let expected: String = lines.iter().map(|l| format!("{}\n", l.to_ascii_uppercase())).collect();
            prop_assert_eq!(out, expected.into_bytes());
            prop_assert_eq!(requests, lines.len());
            prop_assert!(!closing);
        }
    }
}

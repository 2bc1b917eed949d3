//! One TCP connection of the load generator: its socket, the bytes it still has to
//! write, and the requests waiting for their replies.
//!
//! The connection knows nothing about modes or schedules: the worker ([`crate::tcp`])
//! tells it to queue a request, to flush, and to take readable bytes; the connection
//! checks every reply byte against the uppercased request and records the outcome.
//!
//! Writes follow the partial-write pattern of rustls' mio example (not mio's own
//! `tcp_server.rs`, which drops unwritten bytes): the unsent tail stays in `out` and
//! is retried when the socket turns writable. The socket is registered once for both
//! readable and writable; mio is edge-triggered, so a writable event costs nothing
//! while the socket stays writable.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;

use crate::config::Framing;
use crate::connect::Backoff;
use crate::payload::Payload;
use crate::shared::Window;
use crate::stats::ThreadStats;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for its turn to connect (queued, or backing off after a failure
    /// until `retry_at`).
    Waiting {
        retry_at: Instant,
    },
    /// Handshake in flight since `since`.
    Connecting {
        since: Instant,
    },
    Connected,
    /// Finished: quota sent (or churn loop over). Never used again.
    Done,
}

/// A request waiting for its reply.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Offset of the request in the connection's payload pool.
    off: usize,
    /// When it was queued for writing; the reply timeout runs from here.
    queued: Instant,
    /// Latency is measured from here: the send (closed loop) or the intended send
    /// time (open loop).
    latency_from: Instant,
    /// Reply bytes received so far.
    got: usize,
    mismatch: bool,
}

/// What reading a readable socket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Requests whose reply completed.
    pub completed: usize,
    /// The server closed its end (read returned 0).
    pub eof: bool,
    /// The clock read after the last `read` that returned bytes (the time the
    /// completed replies were stamped with; `woke` if none did), so the caller
    /// need not read the clock again.
    pub at: Instant,
}

/// One load-generator TCP connection.
#[derive(Debug)]
pub struct Conn {
    pub state: State,
    pub stream: Option<TcpStream>,
    pub backoff: Backoff,
    /// An earlier attempt or connection of this slot failed: the next attempt is a
    /// retry.
    pub failed_before: bool,
    /// Measured requests this connection may still send (closed and churn modes
    /// with a request count); `None` when bounded by time only.
    pub quota: Option<u64>,
    /// Churn: when the current connect attempt started, and whether this session
    /// is measured.
    pub session_start: Instant,
    pub session_measured: bool,
    /// Measured replies this connection received (over all its reconnects).
    pub measured_replies: u64,
    /// Replies of any kind (warm-up and ramp included): has it been served yet?
    pub replies: u64,
    /// It saw an error at some point: a failed connect, a reset or close, a
    /// timeout, a wrong reply. A client counts once however many it saw.
    pub errored: bool,
    payload: Payload,
    framing: Framing,
    out: Vec<u8>,
    out_pos: usize,
    inflight: VecDeque<Pending>,
}

impl Conn {
    pub fn new(payload: Payload, framing: Framing, quota: Option<u64>, now: Instant) -> Conn {
        Conn {
            state: State::Waiting { retry_at: now },
            stream: None,
            backoff: Backoff::default(),
            failed_before: false,
            quota,
            session_start: now,
            session_measured: false,
            measured_replies: 0,
            replies: 0,
            errored: false,
            payload,
            framing,
            out: Vec::new(),
            out_pos: 0,
            inflight: VecDeque::new(),
        }
    }

    /// Requests waiting for replies.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// When the oldest waiting request was queued.
    pub fn oldest_queued(&self) -> Option<Instant> {
        self.inflight.front().map(|p| p.queued)
    }

    /// Whether request bytes are still waiting to be written.
    pub fn has_output(&self) -> bool {
        self.out_pos < self.out.len()
    }

    /// Whether the quota allows another measured request.
    pub fn has_quota(&self) -> bool {
        self.quota != Some(0)
    }

    /// Queues the next request for writing (call [`Conn::flush`] after).
    pub fn queue(
        &mut self,
        now: Instant,
        latency_from: Instant,
        measured: bool,
        stats: &mut ThreadStats,
    ) {
        let off = self.payload.next_offset();
        self.payload.write_request(off, &mut self.out);
        self.inflight.push_back(Pending {
            off,
            queued: now,
            latency_from,
            got: 0,
            mismatch: false,
        });
        if measured {
            if let Some(q) = &mut self.quota {
                *q = q.saturating_sub(1);
            }
            stats.counts.sent += 1;
            stats.counts.bytes_sent += self.payload.wire_len() as u64;
        }
    }

    /// Writes as much pending output as the socket takes.
    pub fn flush(&mut self) -> io::Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        while self.out_pos < self.out.len() {
            match stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        Ok(())
    }

    /// Reads until the socket is drained, checking every reply byte.
    ///
    /// mio is edge-triggered, so bytes left unread bring no new event; the socket is
    /// drained when `read` says `WouldBlock`, or sooner, when a read returns less
    /// than the buffer holds: that read emptied the receive queue, and any byte that
    /// arrives later brings a new edge. Stopping there saves the `read` that would
    /// only say `EAGAIN` — one syscall per request, a third of the load generator's
    /// syscalls in a closed loop (the servers' event loops skip it too; the load
    /// generator must not pay more per request than the server it measures). The one
    /// exception is `peer_closed` (the event carried `EPOLLRDHUP`/`EPOLLHUP`): the
    /// end of stream may already sit behind the data with no edge left to announce
    /// it, so read on until `read` returns 0.
    ///
    /// Replies are timed with a clock read after each `read` returns, not the time
    /// the event loop woke: in the same wake-up the loop may have sent a request whose
    /// reply this read returns, and a stale clock would make it look faster than it
    /// was (even faster than the network).
    pub fn read_ready(
        &mut self,
        buf: &mut [u8],
        peer_closed: bool,
        woke: Instant,
        window: Option<Window>,
        stats: &mut ThreadStats,
    ) -> io::Result<ReadOutcome> {
        let mut outcome = ReadOutcome {
            completed: 0,
            eof: false,
            at: woke,
        };
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return Ok(outcome);
            };
            match stream.read(buf) {
                Ok(0) => {
                    outcome.eof = true;
                    return Ok(outcome);
                }
                Ok(n) => {
                    outcome.at = Instant::now();
                    outcome.completed += self.feed(&buf[..n], outcome.at, window, stats);
                    if n < buf.len() && !peer_closed {
                        return Ok(outcome);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(outcome),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Matches received bytes against the waiting requests, oldest first. Returns how
    /// many replies completed. A reply that completes inside the window counts,
    /// with its latency from its send (which may lie before the window).
    fn feed(
        &mut self,
        mut data: &[u8],
        now: Instant,
        window: Option<Window>,
        stats: &mut ThreadStats,
    ) -> usize {
        let wire = self.payload.wire_len();
        let mut completed = 0;
        while !data.is_empty() {
            let Some(head) = self.inflight.front_mut() else {
                stats.errors.unexpected += 1;
                stats.errors.note(format!(
                    "{} reply bytes with no request waiting",
                    data.len()
                ));
                return completed;
            };
            // Raw: the reply is exactly as long as the request. Lines: the reply
            // ends at the first '\n', whatever its length (a wrong length is a
            // mismatch, and the next reply still starts on the next line).
            let (take, done) = match self.framing {
                Framing::Raw => {
                    let take = (wire - head.got).min(data.len());
                    (take, head.got + take == wire)
                }
                Framing::Lines => match data.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (data.len(), false),
                },
            };
            if !head.mismatch && !self.payload.matches(head.off, head.got, &data[..take]) {
                head.mismatch = true;
            }
            head.got += take;
            data = &data[take..];
            if done {
                let p = *head;
                self.inflight.pop_front();
                completed += 1;
                self.replies += 1;
                if p.mismatch || p.got != wire {
                    self.errored = true;
                }
                if window.is_some_and(|w| w.measures(now)) {
                    self.measured_replies += 1;
                    stats.answered(
                        p.mismatch || p.got != wire,
                        p.got,
                        now,
                        now.saturating_duration_since(p.latency_from),
                    );
                }
            }
        }
        completed
    }

    /// The connection broke (or gave up on its requests) at `now`: its waiting
    /// requests count as failed if that happened in the window; pending output is
    /// discarded, the socket dropped.
    pub fn fail(&mut self, now: Instant, window: Option<Window>, stats: &mut ThreadStats) {
        self.errored = true;
        if window.is_some_and(|w| w.measures(now)) {
            stats.counts.failed += self.inflight.len() as u64;
        }
        self.inflight.clear();
        self.close();
    }

    /// The window closed at `deadline`: every request still waiting enters the
    /// latency record with its wait so far, and is done with. That includes one
    /// sent before the window opened: it waited through the whole window (a
    /// starved client's only request was sent during the ramp).
    pub fn window_closed(&mut self, deadline: Instant, stats: &mut ThreadStats) {
        for p in self.inflight.drain(..) {
            stats.waiting(deadline, p.latency_from);
        }
    }

    /// Drops the socket (a FIN, or a RST with `SO_LINGER` 0) and any unsent output.
    pub fn close(&mut self) {
        self.out.clear();
        self.out_pos = 0;
        self.stream = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A window open since a second ago, for another minute.
    fn open_window() -> Option<Window> {
        let now = Instant::now();
        Some(Window {
            warmup_start: now - Duration::from_secs(2),
            measure_start: now - Duration::from_secs(1),
            deadline: now + Duration::from_secs(60),
        })
    }

    fn conn(framing: Framing, body: usize) -> (Conn, ThreadStats) {
        let now = Instant::now();
        let p = Payload::new(3, 0, body, framing == Framing::Lines);
        (
            Conn::new(p, framing, None, now),
            ThreadStats::new(now, Duration::from_secs(1)),
        )
    }

    #[test]
    fn raw_replies_complete_in_any_chunking() {
        let (mut c, mut s) = conn(Framing::Raw, 10);
        let now = Instant::now();
        c.queue(now, now, true, &mut s);
        c.queue(now, now, true, &mut s);
        let want = c.out.to_ascii_uppercase();
        assert_eq!(c.feed(&want[..3], now, open_window(), &mut s), 0);
        assert_eq!(c.feed(&want[3..13], now, open_window(), &mut s), 1);
        assert_eq!(c.feed(&want[13..], now, open_window(), &mut s), 1);
        assert_eq!((s.counts.ok, s.counts.mismatched, s.counts.sent), (2, 0, 2));
        assert_eq!(s.counts.bytes_received, 20);
    }

    #[test]
    fn plain_echo_is_a_mismatch() {
        let (mut c, mut s) = conn(Framing::Raw, 10);
        let now = Instant::now();
        c.queue(now, now, true, &mut s);
        let echo = c.out.clone();
        c.feed(&echo, now, open_window(), &mut s);
        assert_eq!((s.counts.ok, s.counts.mismatched), (0, 1));
    }

    #[test]
    fn lines_resynchronize_after_a_short_line() {
        let (mut c, mut s) = conn(Framing::Lines, 5);
        let now = Instant::now();
        c.queue(now, now, true, &mut s);
        c.queue(now, now, true, &mut s);
        let second = c.out[6..].to_ascii_uppercase();
        c.feed(b"ERR\n", now, open_window(), &mut s);
        c.feed(&second, now, open_window(), &mut s);
        assert_eq!((s.counts.ok, s.counts.mismatched), (1, 1));
        c.feed(b"extra\n", now, open_window(), &mut s);
        assert_eq!(s.errors.unexpected, 1);
    }

    #[test]
    fn failing_fails_waiting_requests() {
        let (mut c, mut s) = conn(Framing::Raw, 4);
        let now = Instant::now();
        c.queue(now, now, true, &mut s);
        c.queue(now, now, false, &mut s);
        c.fail(now, open_window(), &mut s);
        assert_eq!((s.counts.failed, c.in_flight()), (2, 0));
    }

    /// A request still waiting when the window closes is in the latency record
    /// with its wait so far, not dropped — even one sent before the window opened.
    #[test]
    fn waiting_requests_enter_the_latency_record_when_the_window_closes() {
        let (mut c, mut s) = conn(Framing::Raw, 4);
        let sent = Instant::now();
        c.queue(sent, sent, false, &mut s);
        c.queue(sent, sent, true, &mut s);
        c.window_closed(sent + Duration::from_millis(300), &mut s);
        let waits: Vec<u64> = s
            .rec
            .intervals
            .iter()
            .flat_map(|h| h.iter_recorded().map(|v| v.count_at_value()))
            .collect();
        assert_eq!(waits.iter().sum::<u64>(), 2);
        let max = s.rec.intervals.iter().map(|h| h.max()).max().unwrap();
        assert!((299_000..=301_000).contains(&max), "{max}");
        assert_eq!((s.counts.sent, s.counts.unfinished), (1, 2));
        assert_eq!(c.in_flight(), 0);
    }
}

//! TCP connections as the event loop ([`crate::event_loop`]) drives them.
//!
//! # Three modes, one set of connections
//!
//! - **closed**: when a reply completes, the connection queues the next request
//!   (keeping `pipeline` outstanding);
//! - **open**: the event loop's schedule says when a request is due on which
//!   connection; replies only get checked and timed;
//! - **churn**: when the one reply completes, the connection is closed (see
//!   [`crate::connect`] on `SO_LINGER` 0) and the slot connects again at once.
//!
//! The housekeeping tick handles what no socket event announces: connect and reply
//! timeouts, retries after backoff, and pacing of new connects.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Interest, Registry, Token};

use crate::config::{Framing, Mode};
use crate::conn::{Conn, State};
use crate::connect::{self, ConnectState, During};
use crate::event_loop::{scan_period, Core, Transport};
use crate::payload::Payload;
use crate::shared::WorkerCtx;
use crate::LoadError;

/// Per-thread receive buffer.
const READ_BUF: usize = 64 * 1024;

/// One thread's TCP connections.
pub struct TcpConns {
    ctx: WorkerCtx,
    registry: Registry,
    conns: Vec<Conn>,
    /// Waiting connections whose (re)try time has come, in order.
    ready: VecDeque<usize>,
    /// Waiting connections backing off after a failure.
    backing_off: Vec<usize>,
    connecting: usize,
    connected: u64,
    /// Connections that have not yet finished their first connect attempt.
    unresolved: usize,
    /// Connections that have had at least one reply.
    served: u64,
    /// Whether the traffic has started (before it, connects are the whole job).
    started: bool,
    buf: Vec<u8>,
    next_scan: Instant,
    scan_every: Duration,
    /// Connections written to in one open-loop batch, flushed together.
    touched: Vec<usize>,
}

impl Transport for TcpConns {
    fn open(ctx: &WorkerCtx, registry: &Registry) -> Result<TcpConns, LoadError> {
        let cfg = &ctx.cfg;
        let now = Instant::now();
        let lines = cfg.framing == Framing::Lines;
        let pool = Payload::new(cfg.seed, ctx.thread as u64, cfg.body_len(), lines);
        let conns: Vec<Conn> = ctx
            .conn_ids()
            .map(|c| Conn::new(pool.for_conn(c as u64), cfg.framing, ctx.quota(c), now))
            .collect();
        let registry = registry
            .try_clone()
            .map_err(|e| LoadError::io("cloning the epoll registry", e))?;
        let shortest = cfg
            .reply_timeout()
            .map_or(cfg.connect_timeout, |t| t.min(cfg.connect_timeout));
        Ok(TcpConns {
            ctx: ctx.clone(),
            registry,
            ready: (0..conns.len()).collect(),
            backing_off: Vec::new(),
            connecting: 0,
            connected: 0,
            unresolved: conns.len(),
            served: 0,
            started: false,
            conns,
            buf: vec![0; READ_BUF],
            next_scan: now,
            scan_every: scan_period(shortest),
            touched: Vec::new(),
        })
    }

    fn count(&self) -> usize {
        self.conns.len()
    }

    fn connected(&self) -> u64 {
        self.connected
    }

    fn connect_settled(&self) -> bool {
        self.unresolved == 0
    }

    fn served_once(&self) -> u64 {
        self.served
    }

    fn start(&mut self, now: Instant, core: &mut Core) {
        self.started = true;
        match self.ctx.cfg.mode {
            Mode::Closed => {
                for i in 0..self.conns.len() {
                    self.refill(i, now, core);
                }
            }
            Mode::Open => {}
            Mode::Churn => self.start_connects(now, core),
        }
    }

    fn on_event(&mut self, i: usize, ev: &Event, now: Instant, core: &mut Core) {
        let peer_closed = ev.is_read_closed() || ev.is_error();
        match self.conns[i].state {
            State::Connecting { since } => {
                let Some(stream) = self.conns[i].stream.as_ref() else {
                    return;
                };
                match connect::connect_state(stream) {
                    ConnectState::Pending => {}
                    ConnectState::Connected => self.on_connected(i, since, now, core),
                    ConnectState::Failed(e) => self.connect_failed(i, &e, now, core),
                }
            }
            State::Connected => {
                let replies_before = self.conns[i].replies;
                let outcome = {
                    let (conn, buf) = (&mut self.conns[i], &mut self.buf);
                    conn.read_ready(buf, peer_closed, now, core.window, &mut core.stats)
                };
                let o = match outcome {
                    Err(e) => return self.conn_failed(i, Some(&e), now, core),
                    Ok(o) => o,
                };
                if replies_before == 0 && self.conns[i].replies > 0 {
                    self.served += 1;
                }
                // Replies were timed as they were read; continue with that clock.
                let now = o.at;
                // Replies followed by the end of stream: churn's session is complete
                // (it closes now anyway), but a closed loop must not send its next
                // request into a connection the server has closed.
                if o.completed > 0 && !(o.eof && self.ctx.cfg.mode == Mode::Closed) {
                    self.on_replies(i, now, core);
                }
                if o.eof && self.conns[i].state == State::Connected {
                    return self.conn_failed(i, None, now, core);
                }
                // Every event is also "writable" (the ACK of our last request freed
                // send space); only a partial write left anything to flush.
                let conn = &self.conns[i];
                if ev.is_writable() && conn.state == State::Connected && conn.has_output() {
                    self.flush(i, now, core);
                }
            }
            State::Waiting { .. } | State::Done => {}
        }
    }

    fn send_due(
        &mut self,
        i: usize,
        now: Instant,
        intended: Instant,
        measured: bool,
        core: &mut Core,
    ) {
        let c = &mut self.conns[i];
        if c.state == State::Connected {
            c.queue(now, intended, measured, &mut core.stats);
            if self.touched.last() != Some(&i) {
                self.touched.push(i);
            }
        } else {
            core.stats.errors.not_connected += 1;
            if measured {
                core.stats.counts.sent += 1;
                core.stats.counts.failed += 1;
            }
        }
    }

    fn flush_due(&mut self, now: Instant, core: &mut Core) {
        let touched = std::mem::take(&mut self.touched);
        for &i in &touched {
            self.flush(i, now, core);
        }
        self.touched = touched;
        self.touched.clear();
    }

    fn housekeeping(&mut self, now: Instant, core: &mut Core) {
        if now >= self.next_scan {
            self.scan_timeouts(now, core);
            self.next_scan = now + self.scan_every;
        }
        let conns = &self.conns;
        let ready = &mut self.ready;
        self.backing_off.retain(|&i| match conns[i].state {
            State::Waiting { retry_at } if retry_at <= now => {
                ready.push_back(i);
                false
            }
            State::Waiting { .. } => true,
            _ => false,
        });
        self.start_connects(now, core);
    }

    fn share_done(&self, _core: &Core) -> bool {
        match self.ctx.cfg.mode {
            Mode::Open => self.conns.iter().all(|c| c.in_flight() == 0),
            Mode::Closed => self
                .conns
                .iter()
                .all(|c| !c.has_quota() && c.in_flight() == 0),
            Mode::Churn => self.conns.iter().all(|c| c.state == State::Done),
        }
    }

    fn window_closed(&mut self, deadline: Instant, core: &mut Core) {
        let per_client = self.ctx.cfg.mode != Mode::Churn;
        for c in &mut self.conns {
            c.window_closed(deadline, &mut core.stats);
            if per_client {
                core.stats.client(c.measured_replies, c.errored);
            }
        }
    }

    fn close_all(&mut self) {
        for c in &mut self.conns {
            c.close();
        }
        self.connected = 0;
    }
}

impl TcpConns {
    /// Replies completed on connection `i`.
    fn on_replies(&mut self, i: usize, now: Instant, core: &mut Core) {
        match self.ctx.cfg.mode {
            Mode::Closed => self.refill(i, now, core),
            Mode::Open => {}
            Mode::Churn => self.end_session(i, now, core),
        }
    }

    /// Closed loop: queue requests until `pipeline` are outstanding, then write.
    ///
    /// In a counted run, a connection whose share is sent and answered closes, as a
    /// client that is done leaves. A server that serves one connection at a time
    /// (iterative), or N (a pool of N workers), then takes the next one from its
    /// backlog, and the count completes; held open, the finished connections would
    /// keep the others waiting until the run's cap.
    fn refill(&mut self, i: usize, now: Instant, core: &mut Core) {
        if !self.started {
            return;
        }
        let pipeline = self.ctx.cfg.pipeline;
        let c = &mut self.conns[i];
        if c.state != State::Connected {
            return;
        }
        while c.in_flight() < pipeline && core.may_send(now) {
            let measured = core.measured_now(now);
            if measured && !c.has_quota() {
                break;
            }
            c.queue(now, now, measured, &mut core.stats);
        }
        if !c.has_quota() && c.in_flight() == 0 {
            c.close();
            c.state = State::Done;
            self.connected -= 1;
            return;
        }
        self.flush(i, now, core);
    }

    fn flush(&mut self, i: usize, now: Instant, core: &mut Core) {
        if let Err(e) = self.conns[i].flush() {
            self.conn_failed(i, Some(&e), now, core);
        }
    }

    /// Starts queued connects while fewer than `max_connecting` are in flight.
    fn start_connects(&mut self, now: Instant, core: &mut Core) {
        let cfg = std::sync::Arc::clone(&self.ctx.cfg);
        let churn = cfg.mode == Mode::Churn;
        if churn && !self.started {
            return;
        }
        let linger_zero = churn && cfg.linger_zero;
        while self.connecting < cfg.max_connecting {
            let Some(i) = self.ready.pop_front() else {
                break;
            };
            let c = &mut self.conns[i];
            if churn {
                // A session started inside the window uses quota (a counted run);
                // it counts if it ends inside the window.
                c.session_measured = core.measured_now(now);
                if c.session_measured && !c.has_quota() {
                    c.state = State::Done;
                    continue;
                }
            }
            core.stats.connects.attempts += 1;
            if c.failed_before {
                core.stats.connects.retries += 1;
            }
            c.session_start = now;
            match connect::start_connect(cfg.target, cfg.bind, linger_zero) {
                Ok(mut stream) => {
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    match self.registry.register(&mut stream, Token(i), interest) {
                        Ok(()) => {
                            c.stream = Some(stream);
                            c.state = State::Connecting { since: now };
                            self.connecting += 1;
                        }
                        Err(e) => self.connect_error(i, &e, now, core),
                    }
                }
                Err(e) => self.connect_error(i, &e, now, core),
            }
        }
    }

    fn on_connected(&mut self, i: usize, since: Instant, now: Instant, core: &mut Core) {
        self.connecting -= 1;
        self.connected += 1;
        self.resolve_first_attempt(i);
        core.stats.connects.succeeded += 1;
        let c = &mut self.conns[i];
        // One getsockname per connect, never per request: where the connection
        // really came from, for a reader checking `bind`.
        if let Some(local) = c.stream.as_ref().and_then(|s| s.local_addr().ok()) {
            core.stats.source(local.ip());
        }
        c.state = State::Connected;
        c.backoff.reset();
        match self.ctx.cfg.mode {
            Mode::Closed => self.refill(i, now, core),
            Mode::Open => {}
            Mode::Churn => {
                if core.measured_now(now) {
                    core.stats.rec.connect(now.saturating_duration_since(since));
                }
                let measured = c.session_measured;
                c.queue(now, now, measured, &mut core.stats);
                self.flush(i, now, core);
            }
        }
        self.start_connects(now, core);
    }

    /// A connect attempt in flight failed.
    fn connect_failed(&mut self, i: usize, e: &io::Error, now: Instant, core: &mut Core) {
        self.connecting -= 1;
        self.conns[i].stream = None;
        self.connect_error(i, e, now, core);
        self.start_connects(now, core);
    }

    /// A connect attempt failed (before or after it was in flight): count it and
    /// retry after backoff.
    fn connect_error(&mut self, i: usize, e: &io::Error, now: Instant, core: &mut Core) {
        connect::count_error(
            &mut core.stats.errors,
            e,
            During::Connect,
            self.ctx.cfg.target,
        );
        self.resolve_first_attempt(i);
        self.conns[i].errored = true;
        self.retry_later(i, now);
    }

    /// An established connection failed (`e`), or the server closed it (`None`).
    fn conn_failed(&mut self, i: usize, e: Option<&io::Error>, now: Instant, core: &mut Core) {
        let target = self.ctx.cfg.target;
        match e {
            Some(e) => connect::count_error(&mut core.stats.errors, e, During::Io, target),
            None => {
                core.stats.errors.closed += 1;
                core.stats
                    .errors
                    .note(format!("{target} closed the connection"));
            }
        }
        self.conns[i].fail(now, core.window, &mut core.stats);
        self.connected -= 1;
        self.retry_later(i, now);
    }

    fn retry_later(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        c.stream = None;
        c.failed_before = true;
        c.state = State::Waiting {
            retry_at: now + c.backoff.next_delay(),
        };
        self.backing_off.push(i);
    }

    fn resolve_first_attempt(&mut self, i: usize) {
        if !self.started && !self.conns[i].failed_before {
            self.unresolved = self.unresolved.saturating_sub(1);
        }
    }

    /// Churn: the one reply arrived; close (RST with SO_LINGER 0) and go again.
    fn end_session(&mut self, i: usize, now: Instant, core: &mut Core) {
        let c = &mut self.conns[i];
        if core.measured_now(now) {
            core.stats.counts.sessions += 1;
            core.stats
                .rec
                .connect_to_reply(now.saturating_duration_since(c.session_start));
        }
        c.close();
        self.connected -= 1;
        c.failed_before = false;
        c.state = State::Waiting { retry_at: now };
        self.ready.push_back(i);
        self.start_connects(now, core);
    }

    /// Gives up on connects and requests that have waited too long (a reply
    /// timeout only if the run has one: see [`crate::LoadConfig::timeout`]).
    fn scan_timeouts(&mut self, now: Instant, core: &mut Core) {
        let cfg = std::sync::Arc::clone(&self.ctx.cfg);
        let (timeout, connect_timeout) = (cfg.reply_timeout(), cfg.connect_timeout);
        for i in 0..self.conns.len() {
            match self.conns[i].state {
                State::Connecting { since } if now - since >= connect_timeout => {
                    let e = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                    self.connect_failed(i, &e, now, core);
                }
                State::Connected => {
                    let Some(timeout) = timeout else { continue };
                    let overdue = self.conns[i]
                        .oldest_queued()
                        .is_some_and(|q| now - q >= timeout);
                    if overdue {
                        core.stats.errors.timeouts += self.conns[i].in_flight() as u64;
                        core.stats
                            .errors
                            .note(format!("no reply from {} within {:?}", cfg.target, timeout));
                        self.conns[i].fail(now, core.window, &mut core.stats);
                        self.connected -= 1;
                        self.retry_later(i, now);
                    }
                }
                _ => {}
            }
        }
    }
}

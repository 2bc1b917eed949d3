//! The TCP event loop: one per thread, each owning a share of the connections.
//!
//! # Why event-driven
//!
//! A load generator with a thread per connection would measure its own scheduler:
//! at 10,000 connections, 10,000 threads wake and sleep for every request and the
//! client, not the server, becomes the bottleneck. Here each thread waits in one
//! `epoll_wait` (mio's `Poll`) for whichever of its connections is ready, and does
//! the work each needs: finish a connect, check reply bytes, send the next request.
//!
//! # One loop, three modes
//!
//! - **closed**: when a reply completes, the connection queues the next request
//!   (keeping `pipeline` outstanding);
//! - **open**: a [`crate::pace::Pacer`] timer wakes the loop when the next request is
//!   due; replies only get checked and timed;
//! - **churn**: when the one reply completes, the connection is closed (see
//!   [`crate::connect`] on `SO_LINGER` 0) and the slot connects again at once.
//!
//! Every few milliseconds a housekeeping pass handles what no socket event announces:
//! connect and reply timeouts, retries after backoff, pacing of new connects, and
//! publishing progress counters.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::config::Mode;
use crate::conn::{Conn, State};
use crate::connect::{self, ConnectState, During};
use crate::pace::{Pacer, Schedule};
use crate::payload::Payload;
use crate::runner::{Timeline, WorkerCtx, WorkerResult, CONNECT_PHASE_LIMIT};
use crate::stats::ThreadStats;
use crate::LoadError;

/// Housekeeping period: retries, connect pacing, progress counters.
pub const TICK: Duration = Duration::from_millis(5);
/// Longest interval between two timeout scans.
const MAX_SCAN: Duration = Duration::from_millis(50);

/// How often to look for timed-out requests: a twentieth of the shortest timeout
/// (so a timeout is noticed within 5 % of its length), between [`TICK`] and 50 ms.
pub fn scan_period(shortest_timeout: Duration) -> Duration {
    (shortest_timeout / 20).clamp(TICK, MAX_SCAN)
}
/// Token of the open-loop pacing timer (connections use their index).
const PACER: Token = Token(usize::MAX);
/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 1024;
/// Per-thread receive buffer.
const READ_BUF: usize = 64 * 1024;

/// Runs one TCP worker thread to completion.
/// Longest a thread that finished measuring waits for the others before it closes
/// its connections.
const FINISH_WAIT: Duration = Duration::from_secs(2);

pub fn run(ctx: WorkerCtx) -> Result<WorkerResult, LoadError> {
    let mut w = match Worker::new(&ctx) {
        Ok(w) => w,
        Err(e) => {
            ctx.shared.gate.arrive();
            return Err(e);
        }
    };
    if w.mode != Mode::Churn {
        w.connect_phase();
    }
    let Some(start) = ctx.shared.gate.arrive() else {
        return Ok(w.into_result(false, 0));
    };
    let connected_at_start = w.connected;
    let tl = Timeline {
        start,
        measure_start: start + ctx.cfg.warmup,
        deadline: start + ctx.cfg.warmup + ctx.cfg.duration,
    };
    let finished = w.measure(tl);
    Ok(w.into_result(finished, connected_at_start))
}

struct Worker {
    ctx: WorkerCtx,
    mode: Mode,
    poll: Poll,
    conns: Vec<Conn>,
    /// Waiting connections whose (re)try time has come, in order.
    ready: VecDeque<usize>,
    /// Waiting connections backing off after a failure.
    backing_off: Vec<usize>,
    connecting: usize,
    connected: u64,
    /// Connections that have not yet finished their first connect attempt.
    unresolved: usize,
    stats: ThreadStats,
    buf: Vec<u8>,
    pacer: Option<Pacer>,
    schedule: Option<Schedule>,
    /// Set once measuring starts; `None` during the connect phase.
    tl: Option<Timeline>,
    next_scan: Instant,
    scan_every: Duration,
    /// Scratch list of connections written to in one open-loop batch.
    touched: Vec<usize>,
}

impl Worker {
    fn new(ctx: &WorkerCtx) -> Result<Worker, LoadError> {
        let cfg = &ctx.cfg;
        let poll = Poll::new().map_err(|e| LoadError::io("creating epoll instance", e))?;
        let now = Instant::now();
        let lines = cfg.framing == crate::config::Framing::Lines;
        let pool = Payload::new(cfg.seed, ctx.thread as u64, cfg.body_len(), lines);
        let conns: Vec<Conn> = ctx
            .conn_ids()
            .map(|c| Conn::new(pool.for_conn(c as u64), cfg.framing, ctx.quota(c), now))
            .collect();
        let pacer = match cfg.mode {
            Mode::Open => Some(
                Pacer::new(poll.registry(), PACER)
                    .map_err(|e| LoadError::io("creating the pacing timerfd", e))?,
            ),
            _ => None,
        };
        Ok(Worker {
            ctx: ctx.clone(),
            mode: cfg.mode,
            poll,
            ready: (0..conns.len()).collect(),
            backing_off: Vec::new(),
            connecting: 0,
            connected: 0,
            unresolved: conns.len(),
            conns,
            stats: ThreadStats::new(now, cfg.interval),
            buf: vec![0; READ_BUF],
            pacer,
            schedule: None,
            tl: None,
            next_scan: now,
            scan_every: scan_period(cfg.timeout.min(cfg.connect_timeout)),
            touched: Vec::new(),
        })
    }

    fn into_result(self, finished_early: bool, connected_at_start: u64) -> WorkerResult {
        WorkerResult {
            stats: self.stats,
            finished_early,
            connected_at_start,
        }
    }

    /// Opens every connection (paced) before the clock starts. Ends when each has
    /// connected or failed once, or after [`CONNECT_PHASE_LIMIT`].
    fn connect_phase(&mut self) {
        let limit = Instant::now() + CONNECT_PHASE_LIMIT;
        self.event_loop(limit, |w| w.unresolved == 0);
    }

    /// Runs the timed part; returns whether the thread finished its share before
    /// the deadline.
    fn measure(&mut self, tl: Timeline) -> bool {
        self.tl = Some(tl);
        self.stats.rec.start_measuring(tl.measure_start);
        let now = Instant::now();
        match self.mode {
            Mode::Closed => {
                for i in 0..self.conns.len() {
                    self.refill(i, now);
                }
            }
            Mode::Open => {
                let cfg = &self.ctx.cfg;
                self.schedule = Some(Schedule::new(
                    tl.start,
                    cfg.warmup,
                    cfg.rate.unwrap_or(1.0),
                    cfg.conns,
                    self.ctx.thread,
                    cfg.threads,
                    cfg.requests,
                ));
                self.send_due(now);
            }
            Mode::Churn => self.start_connects(now),
        }
        let finished = self.event_loop(tl.deadline, |w| w.share_done());
        self.ctx.shared.finish.arrive_within(FINISH_WAIT);
        for i in 0..self.conns.len() {
            if self.mode != Mode::Churn && self.conns[i].measured_replies == 0 {
                self.stats.counts.starved += 1;
            }
            self.conns[i].close(&mut self.stats, true);
        }
        self.publish();
        finished
    }

    /// Polls and dispatches until `until` or until `done` holds (checked every
    /// tick). Returns whether `done` ended it.
    fn event_loop(&mut self, until: Instant, done: fn(&Worker) -> bool) -> bool {
        let mut events = Events::with_capacity(EVENTS);
        let mut next_tick = Instant::now();
        loop {
            let now = Instant::now();
            if now >= until || self.ctx.stopped() {
                return false;
            }
            if now >= next_tick {
                self.housekeeping(now);
                if done(self) {
                    return true;
                }
                next_tick = now + TICK;
            }
            let timeout = next_tick.min(until).saturating_duration_since(now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.stats.errors.other += 1;
                    self.stats.errors.note(format!("epoll_wait: {e}"));
                    return false;
                }
                continue;
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    PACER => {
                        if let Some(p) = &self.pacer {
                            p.clear();
                        }
                        self.send_due(now);
                    }
                    Token(i) if i < self.conns.len() => {
                        let peer_closed = ev.is_read_closed() || ev.is_error();
                        self.on_event(i, ev.is_writable(), peer_closed, now);
                    }
                    Token(_) => {}
                }
            }
        }
    }

    fn on_event(&mut self, i: usize, writable: bool, peer_closed: bool, now: Instant) {
        match self.conns[i].state {
            State::Connecting { since } => {
                let Some(stream) = self.conns[i].stream.as_ref() else {
                    return;
                };
                match connect::connect_state(stream) {
                    ConnectState::Pending => {}
                    ConnectState::Connected => self.on_connected(i, since, now),
                    ConnectState::Failed(e) => self.connect_failed(i, &e, now),
                }
            }
            State::Connected => {
                let outcome = {
                    let (conn, buf, stats) = (&mut self.conns[i], &mut self.buf, &mut self.stats);
                    conn.read_ready(buf, peer_closed, now, stats)
                };
                let o = match outcome {
                    Err(e) => return self.conn_failed(i, Some(&e), now),
                    Ok(o) => o,
                };
                // Replies were timed as they were read; continue with that clock.
                let now = o.at;
                // Replies followed by the end of stream: churn's session is complete
                // (it closes now anyway), but a closed loop must not send its next
                // request into a connection the server has closed.
                if o.completed > 0 && !(o.eof && self.mode == Mode::Closed) {
                    self.on_replies(i, now);
                }
                if o.eof && self.conns[i].state == State::Connected {
                    return self.conn_failed(i, None, now);
                }
                // Every event is also "writable" (the ACK of our last request freed
                // send space); only a partial write left anything to flush.
                let conn = &self.conns[i];
                if writable && conn.state == State::Connected && conn.has_output() {
                    self.flush(i, now);
                }
            }
            State::Waiting { .. } | State::Done => {}
        }
    }

    /// Replies completed on connection `i`.
    fn on_replies(&mut self, i: usize, now: Instant) {
        match self.mode {
            Mode::Closed => self.refill(i, now),
            Mode::Open => {}
            Mode::Churn => self.end_session(i, now),
        }
    }

    /// Closed loop: queue requests until `pipeline` are outstanding, then write.
    ///
    /// In a counted run, a connection whose share is sent and answered closes, as a
    /// client that is done leaves. A server that serves one connection at a time
    /// (iterative), or N (a pool of N workers), then takes the next one from its
    /// backlog, and the count completes; held open, the finished connections would
    /// keep the others waiting until the run's cap.
    fn refill(&mut self, i: usize, now: Instant) {
        let Some(tl) = self.tl else { return };
        let pipeline = self.ctx.cfg.pipeline;
        let c = &mut self.conns[i];
        if c.state != State::Connected {
            return;
        }
        while c.in_flight() < pipeline && now < tl.deadline {
            let measured = now >= tl.measure_start;
            if measured && !c.has_quota() {
                break;
            }
            c.queue(now, now, measured, &mut self.stats);
        }
        if !c.has_quota() && c.in_flight() == 0 {
            c.close(&mut self.stats, true);
            c.state = State::Done;
            self.connected -= 1;
            return;
        }
        self.flush(i, now);
    }

    /// Open loop: send every request that has fallen due, then re-arm the timer.
    fn send_due(&mut self, now: Instant) {
        let Some(schedule) = self.schedule.as_mut() else {
            return;
        };
        let mut touched = std::mem::take(&mut self.touched);
        while let Some(due) = schedule.pop_due(now) {
            let c = &mut self.conns[due.local_conn];
            if due.measured {
                self.stats
                    .lag
                    .record(now.saturating_duration_since(due.intended));
            }
            if c.state == State::Connected {
                c.queue(now, due.intended, due.measured, &mut self.stats);
                if touched.last() != Some(&due.local_conn) {
                    touched.push(due.local_conn);
                }
            } else {
                self.stats.errors.not_connected += 1;
                if due.measured {
                    self.stats.counts.sent += 1;
                    self.stats.counts.failed += 1;
                }
            }
        }
        let next = schedule.next_due();
        for &i in &touched {
            self.flush(i, now);
        }
        touched.clear();
        self.touched = touched;
        if let (Some(p), Some(at)) = (&self.pacer, next) {
            if let Err(e) = p.arm(at) {
                self.stats.errors.other += 1;
                self.stats
                    .errors
                    .note(format!("arming the pacing timer: {e}"));
            }
        }
    }

    fn flush(&mut self, i: usize, now: Instant) {
        if let Err(e) = self.conns[i].flush() {
            self.conn_failed(i, Some(&e), now);
        }
    }

    /// Starts queued connects while fewer than `max_connecting` are in flight.
    fn start_connects(&mut self, now: Instant) {
        let (target, max_connecting) = (self.ctx.cfg.target, self.ctx.cfg.max_connecting);
        let linger_zero = self.mode == Mode::Churn && self.ctx.cfg.linger_zero;
        while self.connecting < max_connecting {
            let Some(i) = self.ready.pop_front() else {
                break;
            };
            let c = &mut self.conns[i];
            if let Some(tl) = self.tl {
                // Churn: a new session is measured if it starts after warmup; it
                // needs quota then.
                c.session_measured = now >= tl.measure_start;
                if self.mode == Mode::Churn && c.session_measured && !c.has_quota() {
                    c.state = State::Done;
                    continue;
                }
            }
            self.stats.connects.attempts += 1;
            if c.failed_before {
                self.stats.connects.retries += 1;
            }
            c.session_start = now;
            match connect::start_connect(target, linger_zero) {
                Ok(mut stream) => {
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    match self
                        .poll
                        .registry()
                        .register(&mut stream, Token(i), interest)
                    {
                        Ok(()) => {
                            c.stream = Some(stream);
                            c.state = State::Connecting { since: now };
                            self.connecting += 1;
                        }
                        Err(e) => self.connect_error(i, &e, now),
                    }
                }
                Err(e) => self.connect_error(i, &e, now),
            }
        }
    }

    fn on_connected(&mut self, i: usize, since: Instant, now: Instant) {
        self.connecting -= 1;
        self.connected += 1;
        self.resolve_first_attempt(i);
        self.stats.connects.succeeded += 1;
        let c = &mut self.conns[i];
        c.state = State::Connected;
        c.backoff.reset();
        match self.mode {
            Mode::Closed => self.refill(i, now),
            Mode::Open => {}
            Mode::Churn => {
                if c.session_measured {
                    self.stats.rec.connect(now.saturating_duration_since(since));
                }
                let measured = c.session_measured;
                c.queue(now, now, measured, &mut self.stats);
                self.flush(i, now);
            }
        }
        self.start_connects(now);
    }

    /// A connect attempt in flight failed.
    fn connect_failed(&mut self, i: usize, e: &io::Error, now: Instant) {
        self.connecting -= 1;
        self.conns[i].stream = None;
        self.connect_error(i, e, now);
        self.start_connects(now);
    }

    /// A connect attempt failed (before or after it was in flight): count it and
    /// retry after backoff.
    fn connect_error(&mut self, i: usize, e: &io::Error, now: Instant) {
        connect::count_error(
            &mut self.stats.errors,
            e,
            During::Connect,
            self.ctx.cfg.target,
        );
        self.resolve_first_attempt(i);
        self.retry_later(i, now);
    }

    /// An established connection failed (`e`), or the server closed it (`None`).
    fn conn_failed(&mut self, i: usize, e: Option<&io::Error>, now: Instant) {
        let target = self.ctx.cfg.target;
        match e {
            Some(e) => connect::count_error(&mut self.stats.errors, e, During::Io, target),
            None => {
                self.stats.errors.closed += 1;
                self.stats
                    .errors
                    .note(format!("{target} closed the connection"));
            }
        }
        self.conns[i].close(&mut self.stats, false);
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
        if self.tl.is_none() && !self.conns[i].failed_before {
            self.unresolved = self.unresolved.saturating_sub(1);
        }
    }

    /// Churn: the one reply arrived; close (RST with SO_LINGER 0) and go again.
    fn end_session(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        if c.session_measured {
            self.stats.counts.sessions += 1;
            self.stats
                .rec
                .connect_to_reply(now.saturating_duration_since(c.session_start));
        }
        c.close(&mut self.stats, false);
        self.connected -= 1;
        c.failed_before = false;
        c.state = State::Waiting { retry_at: now };
        self.ready.push_back(i);
        self.start_connects(now);
    }

    /// Timeouts, retries, connect pacing and progress: what no socket event tells.
    fn housekeeping(&mut self, now: Instant) {
        if now >= self.next_scan {
            self.scan_timeouts(now);
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
        self.start_connects(now);
        if self.mode == Mode::Open {
            self.send_due(now);
        }
        self.publish();
    }

    /// Closes connections whose connect or oldest request has waited too long. A
    /// scan touches every connection, so it runs every [`scan_period`], not every
    /// tick: 10,000 connections scanned every 5 ms would cost the generator more
    /// CPU than the timeouts are worth.
    fn scan_timeouts(&mut self, now: Instant) {
        let (timeout, connect_timeout) = (self.ctx.cfg.timeout, self.ctx.cfg.connect_timeout);
        for i in 0..self.conns.len() {
            match self.conns[i].state {
                State::Connecting { since } if now - since >= connect_timeout => {
                    let e = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                    self.connect_failed(i, &e, now);
                }
                State::Connected => {
                    let overdue = self.conns[i]
                        .oldest_queued()
                        .is_some_and(|q| now - q >= timeout);
                    if overdue {
                        self.stats.errors.timeouts += self.conns[i].in_flight() as u64;
                        self.stats.errors.note(format!(
                            "no reply from {} within {:?}",
                            self.ctx.cfg.target, timeout
                        ));
                        self.conns[i].close(&mut self.stats, false);
                        self.connected -= 1;
                        self.retry_later(i, now);
                    }
                }
                _ => {}
            }
        }
    }

    fn publish(&self) {
        self.ctx.live().publish(&self.stats, self.connected);
    }

    /// In a counted run: has this thread sent its whole share and heard back?
    fn share_done(&self) -> bool {
        let Some(tl) = self.tl else { return false };
        if self.ctx.cfg.requests.is_none() || Instant::now() < tl.measure_start {
            return false;
        }
        match self.mode {
            Mode::Open => {
                self.schedule
                    .as_ref()
                    .is_some_and(|s| s.next_due().is_none())
                    && self.conns.iter().all(|c| c.in_flight() == 0)
            }
            Mode::Closed => self
                .conns
                .iter()
                .all(|c| !c.has_quota() && c.in_flight() == 0),
            Mode::Churn => self.conns.iter().all(|c| c.state == State::Done),
        }
    }
}

//! The one event loop every load-generator thread runs, whatever the transport.
//!
//! A thread owns a share of the connections and waits in one `epoll_wait` (mio's
//! `Poll`) for whichever of them is ready. What is the same for TCP and UDP lives
//! here: the phases of a run, the open-loop schedule and its timer, the
//! housekeeping tick, and the end of the window. What differs — connecting,
//! framing, matching replies to requests — is a [`Transport`] ([`crate::tcp`],
//! [`crate::udp`]).
//!
//! # Phases
//!
//! 1. **Connect** (TCP closed and open loop): every connection is opened, paced,
//!    before any request is sent; untimed.
//! 2. **Ramp**: the traffic starts (closed loop: each connection sends as soon as it
//!    is connected; open loop: on schedule), but nothing is measured yet. It lasts
//!    until *every* connection has had a reply — a thread-per-client server must
//!    first accept and spawn a thread for each — or until the ramp limit. How long
//!    it took, and how many clients were served by then, is reported: it is a cost
//!    of the model, not noise to average into the steady state.
//! 3. **Warm-up**, then the **measured window** of `duration`.
//! 4. **Window closed**: each request still waiting enters the latency record with
//!    its wait so far (a lower bound); the threads meet, then close.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll, Registry, Token};

use crate::config::{LoadConfig, Mode};
use crate::pace::{Pacer, Schedule};
use crate::shared::{RampEnd, Window, WorkerCtx, WorkerResult, FINISH_WAIT};
use crate::stats::ThreadStats;
use crate::LoadError;

/// Housekeeping period: retries, connect pacing, timeouts, progress counters.
pub const TICK: Duration = Duration::from_millis(5);
/// Longest interval between two timeout scans.
const MAX_SCAN: Duration = Duration::from_millis(50);
/// Token of the open-loop pacing timer (connections use their index).
const PACER: Token = Token(usize::MAX);
/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 1024;
/// Longest the untimed connect phase may take before the traffic starts anyway.
/// Connections still missing then keep retrying (and are reported).
pub const CONNECT_PHASE_LIMIT: Duration = Duration::from_secs(10);

/// How often to look for timed-out requests: a twentieth of the shortest timeout
/// (so a timeout is noticed within 5 % of its length), between [`TICK`] and 50 ms.
/// A scan touches every connection, so it runs every scan period, not every tick:
/// 10,000 connections scanned every 5 ms would cost more CPU than the timeouts are
/// worth.
pub fn scan_period(shortest_timeout: Duration) -> Duration {
    (shortest_timeout / 20).clamp(TICK, MAX_SCAN)
}

/// What a transport's methods get besides their own sockets: the thread's
/// statistics and the run's clock.
#[derive(Debug)]
pub struct Core {
    pub cfg: Arc<LoadConfig>,
    pub stats: ThreadStats,
    /// The measured window, known once the ramp has ended.
    pub window: Option<Window>,
}

impl Core {
    /// Whether a request sent now (closed loop, churn session) is measured.
    pub fn measured_now(&self, now: Instant) -> bool {
        self.window.is_some_and(|w| w.measures(now))
    }

    /// Whether a closed loop may still send: until the window closes.
    pub fn may_send(&self, now: Instant) -> bool {
        self.window.is_none_or(|w| now < w.deadline)
    }
}

/// The sockets of one thread, as the event loop drives them.
pub trait Transport: Sized {
    /// Creates this thread's connections (TCP: queued to connect; UDP: bound and
    /// connected at once), registering them with `registry`.
    fn open(ctx: &WorkerCtx, registry: &Registry) -> Result<Self, LoadError>;
    /// Connections this thread owns.
    fn count(&self) -> usize;
    /// Connections open now.
    fn connected(&self) -> u64;
    /// Whether every connection has connected, or failed, at least once.
    fn connect_settled(&self) -> bool;
    /// Connections that have had at least one reply (measured or not).
    fn served_once(&self) -> u64;
    /// The traffic starts: a closed loop fills every connection; churn starts
    /// connecting. (Open loop is paced by the event loop.)
    fn start(&mut self, now: Instant, core: &mut Core);
    /// A readiness event on connection `i`.
    fn on_event(&mut self, i: usize, ev: &Event, now: Instant, core: &mut Core);
    /// Open loop: queues the request due at `intended` on connection `i`.
    fn send_due(
        &mut self,
        i: usize,
        now: Instant,
        intended: Instant,
        measured: bool,
        core: &mut Core,
    );
    /// Open loop: writes what [`Transport::send_due`] queued.
    fn flush_due(&mut self, now: Instant, core: &mut Core);
    /// Every tick: timeouts, retries, connect pacing, topping up the closed loop.
    fn housekeeping(&mut self, now: Instant, core: &mut Core);
    /// A counted run: this thread's share is sent and answered.
    fn share_done(&self, core: &Core) -> bool;
    /// The window closed at `deadline`: record every measured request still
    /// waiting, and each connection's measured replies.
    fn window_closed(&mut self, deadline: Instant, core: &mut Core);
    /// Closes every socket (after all threads have finished measuring).
    fn close_all(&mut self);
}

/// One thread's event loop over transport `T`.
struct Driver<T> {
    ctx: WorkerCtx,
    poll: Poll,
    sockets: T,
    core: Core,
    pacer: Option<Pacer>,
    schedule: Option<Schedule>,
    /// When the traffic started (the start gate opened).
    traffic_start: Option<Instant>,
    ramp_reported: bool,
    /// This thread has seen the ramp end (and counted who was served by then).
    ramp_ended: bool,
    /// Connections answered at least once, as last told to the ramp.
    ramp_served: u64,
}

/// Runs one worker thread to completion.
pub fn run<T: Transport>(ctx: WorkerCtx) -> Result<WorkerResult, LoadError> {
    match Driver::<T>::new(&ctx) {
        Ok(driver) => Ok(driver.run()),
        Err(e) => {
            // The others must not wait at a gate for this thread.
            ctx.shared.abort();
            Err(e)
        }
    }
}

impl<T: Transport> Driver<T> {
    fn new(ctx: &WorkerCtx) -> Result<Driver<T>, LoadError> {
        let poll = Poll::new().map_err(|e| LoadError::io("creating epoll instance", e))?;
        let sockets = T::open(ctx, poll.registry())?;
        let pacer = match ctx.cfg.mode {
            Mode::Open => Some(
                Pacer::new(poll.registry(), PACER)
                    .map_err(|e| LoadError::io("creating the pacing timerfd", e))?,
            ),
            _ => None,
        };
        Ok(Driver {
            ctx: ctx.clone(),
            poll,
            sockets,
            core: Core {
                cfg: Arc::clone(&ctx.cfg),
                stats: ThreadStats::new(Instant::now(), ctx.cfg.interval),
                window: None,
            },
            pacer,
            schedule: None,
            traffic_start: None,
            ramp_reported: false,
            ramp_ended: false,
            ramp_served: 0,
        })
    }

    fn run(mut self) -> WorkerResult {
        let cfg = Arc::clone(&self.ctx.cfg);
        if cfg.mode != Mode::Churn {
            let limit = Instant::now() + CONNECT_PHASE_LIMIT;
            self.spin(Some(limit), |d| d.sockets.connect_settled());
        }
        let Some(start) = self.ctx.shared.start.arrive() else {
            return self.result(false, 0);
        };
        let connected_at_start = self.sockets.connected();
        self.traffic_start = Some(start);
        self.ctx.shared.ramp.progress(start);
        if !cfg.ramps() {
            self.ctx.shared.ramp.end.set(RampEnd {
                at: start,
                complete: true,
                stalled: false,
                quiet: Duration::ZERO,
            });
        }
        if cfg.mode == Mode::Open {
            self.schedule = Some(Schedule::new(
                start,
                cfg.rate.unwrap_or(1.0),
                cfg.conns,
                self.ctx.thread,
                cfg.threads,
            ));
        }
        let now = Instant::now();
        // Without a ramp the window is known now, before the first request.
        self.check_ramp(now);
        self.sockets.start(now, &mut self.core);
        self.send_due(now);
        let finished = self.spin(None, |d| d.share_done());
        let deadline = self
            .core
            .window
            .map_or_else(Instant::now, |w| w.deadline.min(Instant::now()));
        self.sockets.window_closed(deadline, &mut self.core);
        self.publish();
        self.ctx.shared.finish.arrive_within(FINISH_WAIT);
        self.ctx
            .shared
            .close_seen
            .wait(self.ctx.shared.close_wait());
        self.sockets.close_all();
        self.result(finished, connected_at_start)
    }

    fn result(self, finished_early: bool, connected_at_start: u64) -> WorkerResult {
        WorkerResult {
            stats: self.core.stats,
            finished_early,
            connected_at_start,
        }
    }

    /// Polls and dispatches until `until`, the window's deadline, a stop, or until
    /// `done` holds (checked every tick). Returns whether `done` ended it.
    fn spin(&mut self, until: Option<Instant>, done: fn(&Self) -> bool) -> bool {
        let mut events = Events::with_capacity(EVENTS);
        let mut next_tick = Instant::now();
        loop {
            let now = Instant::now();
            let end = match (until, self.core.window) {
                (Some(u), Some(w)) => Some(u.min(w.deadline)),
                (u, w) => u.or(w.map(|w| w.deadline)),
            };
            if end.is_some_and(|e| now >= e) || self.ctx.stopped() {
                return false;
            }
            if now >= next_tick {
                self.sockets.housekeeping(now, &mut self.core);
                self.send_due(now);
                self.publish();
                if done(self) {
                    return true;
                }
                next_tick = now + TICK;
            }
            let wake = end.map_or(next_tick, |e| e.min(next_tick));
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(wake.saturating_duration_since(now)))
            {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.core.stats.errors.other += 1;
                    self.core.stats.errors.note(format!("epoll_wait: {e}"));
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
                    Token(i) if i < self.sockets.count() => {
                        self.sockets.on_event(i, ev, now, &mut self.core)
                    }
                    Token(_) => {}
                }
            }
            self.check_ramp(now);
        }
    }

    /// While the ramp goes on: reports this thread served once all its connections
    /// have had a reply, and opens the window as soon as the ramp has ended.
    fn check_ramp(&mut self, now: Instant) {
        let Some(start) = self.traffic_start else {
            return;
        };
        if self.core.window.is_some() {
            return;
        }
        let ramp = &self.ctx.shared.ramp;
        let served = self.sockets.served_once();
        if served > self.ramp_served {
            self.ramp_served = served;
            ramp.progress(now);
        }
        if !self.ramp_reported && served >= self.sockets.count() as u64 {
            self.ramp_reported = true;
            ramp.thread_served(now);
        }
        let Some(end) = ramp.check_limit(now, start + self.ctx.cfg.ramp_limit) else {
            return;
        };
        if !self.ramp_ended {
            self.ramp_ended = true;
            self.core.stats.served_at_ramp_end = self.sockets.served_once();
        }
        // A held run goes on unmeasured until its caller says go.
        let Some(window) = self.ctx.shared.window_after(end, &self.ctx.cfg) else {
            return;
        };
        self.core.window = Some(window);
        self.core.stats.rec.start_measuring(window.measure_start);
        if let Some(s) = &mut self.schedule {
            s.measure_from(window.measure_start, self.ctx.cfg.requests);
        }
    }

    /// Open loop: sends every request that has fallen due, then re-arms the timer.
    fn send_due(&mut self, now: Instant) {
        let Some(schedule) = self.schedule.as_mut() else {
            return;
        };
        let window = self.core.window;
        let mut sent = false;
        while let Some(due) = schedule.pop_due(now) {
            // Measured by its place in the schedule (so a counted run sends exactly
            // its count), and only if it fell due inside the window.
            let measured = due.measured && window.is_some_and(|w| w.measures(due.intended));
            if measured {
                self.core
                    .stats
                    .lag
                    .record(now.saturating_duration_since(due.intended));
            }
            self.sockets
                .send_due(due.local_conn, now, due.intended, measured, &mut self.core);
            sent = true;
        }
        if sent {
            self.sockets.flush_due(now, &mut self.core);
        }
        if let (Some(p), Some(at)) = (&self.pacer, schedule.next_due()) {
            if let Err(e) = p.arm(at) {
                self.core.stats.errors.other += 1;
                self.core
                    .stats
                    .errors
                    .note(format!("arming the pacing timer: {e}"));
            }
        }
    }

    /// In a counted run: has this thread sent its whole share and heard back?
    fn share_done(&self) -> bool {
        let Some(w) = self.core.window else {
            return false;
        };
        if self.core.cfg.requests.is_none() || Instant::now() < w.measure_start {
            return false;
        }
        let scheduled = self
            .schedule
            .as_ref()
            .is_none_or(|s| s.next_due().is_none());
        scheduled && self.sockets.share_done(&self.core)
    }

    fn publish(&self) {
        self.ctx.live().publish(
            &self.core.stats,
            self.sockets.connected(),
            self.sockets.served_once(),
        );
    }
}

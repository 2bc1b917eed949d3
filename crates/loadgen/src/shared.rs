//! What the event-loop threads share: where they meet, the run's clock once the
//! ramp has decided it, live counters for the progress display, and the stop flag.
//!
//! ```text
//!  connect ──▶ start gate ──▶ ramp ──▶ warm-up ──▶ measured window ──▶ finish gate
//!  (untimed)   last thread    traffic,   traffic,    every reply        threads meet,
//!              to arrive      until all  results     counted            then close
//!              starts it      served once dropped
//! ```
//!
//! The ramp ends for everyone at one instant, decided once (a [`Latch`]): when the
//! last thread has seen every one of its connections answered, or at the ramp limit.
//! From that instant every thread derives the same [`Window`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::config::LoadConfig;
use crate::stats::ThreadStats;

/// A value set once by any thread, read cheaply by all (an atomic load), and
/// waited for by whoever needs to sleep until it is set.
#[derive(Debug, Default)]
pub struct Latch<T> {
    value: OnceLock<T>,
    lock: Mutex<()>,
    cv: Condvar,
}

impl<T: Copy> Latch<T> {
    pub fn new() -> Latch<T> {
        Latch {
            value: OnceLock::new(),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }

    /// Sets the value unless it is set already; returns the value that holds.
    pub fn set(&self, v: T) -> T {
        let held = *self.value.get_or_init(|| v);
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
        held
    }

    pub fn get(&self) -> Option<T> {
        self.value.get().copied()
    }

    /// Waits up to `timeout` for the value.
    pub fn wait(&self, timeout: Duration) -> Option<T> {
        let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let _unused = self
            .cv
            .wait_timeout_while(guard, timeout, |_| self.value.get().is_none())
            .unwrap_or_else(|e| e.into_inner());
        self.get()
    }
}

/// Where all threads meet: after their connect phase (the last to arrive starts
/// the traffic) and after measuring (so that none closes its connections while
/// another still measures). An aborted gate releases everyone.
#[derive(Debug)]
pub struct Gate {
    expected: usize,
    arrived: AtomicUsize,
    opened: Latch<Option<(Instant, SystemTime)>>,
}

impl Gate {
    pub fn new(expected: usize) -> Gate {
        Gate {
            expected,
            arrived: AtomicUsize::new(0),
            opened: Latch::new(),
        }
    }

    fn arrive_and_open(&self) {
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 >= self.expected {
            self.opened.set(Some((Instant::now(), SystemTime::now())));
        }
    }

    /// Arrives and waits for the others; `None` if the run was aborted.
    pub fn arrive(&self) -> Option<Instant> {
        self.arrive_and_open();
        loop {
            if let Some(opened) = self.opened.wait(Duration::from_secs(1)) {
                return opened.map(|(i, _)| i);
            }
        }
    }

    /// Arrives and waits at most `timeout` for the others (a thread that failed
    /// early never arrives; nobody waits for it longer than that).
    pub fn arrive_within(&self, timeout: Duration) {
        self.arrive_and_open();
        self.opened.wait(timeout);
    }

    pub fn abort(&self) {
        self.opened.set(None);
    }

    /// When the gate opened, waiting up to `timeout`; `None` if not yet or aborted.
    pub fn opened(&self, timeout: Duration) -> Option<(Instant, SystemTime)> {
        self.opened.wait(timeout).flatten()
    }
}

/// How the ramp ended: when, and whether every connection had been answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RampEnd {
    pub at: Instant,
    pub complete: bool,
    /// It ended early: no new client had been answered for [`Ramp::patience`].
    pub stalled: bool,
    /// How long no new client had been answered when it ended.
    pub quiet: Duration,
}

/// Longest a thread that finished measuring waits for the others (and for the
/// watcher to see the window close) before it closes its connections.
pub const FINISH_WAIT: Duration = Duration::from_secs(2);

/// The ramp ends early once no new client has been answered for this long, or
/// for [`STALL_FACTOR`] times the longest wait between two new clients so far if
/// that is longer: the server is not getting to the others (an iterative server,
/// a pool smaller than the load), and waiting on to the limit would only lengthen
/// the run.
pub const RAMP_STALL: Duration = Duration::from_secs(1);

/// A server that is still getting to new clients, only more slowly with each one,
/// is given this many times its slowest step so far. Thread per client is one:
/// its accepting thread competes for one CPU with every busy client thread, so it
/// runs about once per scheduler period, which grows with each thread. Measured
/// here, 1,000 clients against `socklab serve thread` on one CPU: with a fixed 1 s
/// the ramp was called stalled after 6.45 s at 897 clients, though the next ones
/// were answered moments later.
pub const STALL_FACTOR: u32 = 4;

/// The measured window, the same for every thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Warm-up started here (the end of the ramp).
    pub warmup_start: Instant,
    pub measure_start: Instant,
    /// Measuring ends here, whatever else happens.
    pub deadline: Instant,
}

impl Window {
    pub fn after_ramp(ramp: RampEnd, cfg: &LoadConfig) -> Window {
        Window::warming_up_at(ramp.at, cfg)
    }

    /// The window whose warm-up starts at `warmup_start`.
    pub fn warming_up_at(warmup_start: Instant, cfg: &LoadConfig) -> Window {
        let measure_start = warmup_start + cfg.warmup;
        Window {
            warmup_start,
            measure_start,
            deadline: measure_start + cfg.duration,
        }
    }

    /// Whether a request sent (or, open loop, due) at `t` is measured.
    pub fn measures(&self, t: Instant) -> bool {
        t >= self.measure_start && t < self.deadline
    }
}

/// The ramp: threads report when all their connections have been answered once,
/// and whenever one more has been; the last report, a stall, or the limit ends it
/// for everyone.
#[derive(Debug)]
pub struct Ramp {
    threads: usize,
    served_threads: AtomicUsize,
    epoch: Instant,
    /// When a thread last saw a connection answered for the first time, as
    /// nanoseconds since `epoch`.
    last_progress_ns: AtomicU64,
    /// The longest wait so far between two such moments.
    longest_gap_ns: AtomicU64,
    pub end: Latch<RampEnd>,
}

impl Ramp {
    pub fn new(threads: usize) -> Ramp {
        Ramp {
            threads,
            served_threads: AtomicUsize::new(0),
            epoch: Instant::now(),
            last_progress_ns: AtomicU64::new(0),
            longest_gap_ns: AtomicU64::new(0),
            end: Latch::new(),
        }
    }

    fn ns(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The traffic starts (or another connection got its first reply) at `now`.
    pub fn progress(&self, now: Instant) {
        let now = self.ns(now);
        let before = self.last_progress_ns.fetch_max(now, Ordering::AcqRel);
        if before > 0 && now > before {
            self.longest_gap_ns
                .fetch_max(now - before, Ordering::AcqRel);
        }
    }

    /// How long the ramp waits for the next new client before calling it stalled:
    /// [`RAMP_STALL`], or [`STALL_FACTOR`] × the longest wait so far.
    pub fn patience(&self) -> Duration {
        let longest = Duration::from_nanos(self.longest_gap_ns.load(Ordering::Acquire));
        RAMP_STALL.max(longest * STALL_FACTOR)
    }

    /// This thread has seen a reply on every one of its connections (call once).
    pub fn thread_served(&self, now: Instant) {
        if self.served_threads.fetch_add(1, Ordering::AcqRel) + 1 >= self.threads {
            self.end.set(RampEnd {
                at: now,
                complete: true,
                stalled: false,
                quiet: Duration::ZERO,
            });
        }
    }

    /// Ends the ramp at `limit`, or now if it has made no progress for
    /// [`Ramp::patience`], unless it has ended already; returns how it ended.
    pub fn check_limit(&self, now: Instant, limit: Instant) -> Option<RampEnd> {
        if let Some(end) = self.end.get() {
            return Some(end);
        }
        let quiet = self
            .ns(now)
            .saturating_sub(self.last_progress_ns.load(Ordering::Acquire));
        if quiet >= self.patience().as_nanos() as u64 && now < limit {
            return Some(self.end.set(RampEnd {
                at: now,
                complete: false,
                stalled: true,
                quiet: Duration::from_nanos(quiet),
            }));
        }
        (now >= limit).then(|| {
            self.end.set(RampEnd {
                at: limit,
                complete: false,
                stalled: false,
                quiet: Duration::from_nanos(quiet),
            })
        })
    }
}

/// A run held between its ramp and its warm-up until its caller says go.
///
/// Several load generators that must measure one window together (processes,
/// each with its own descriptor table and source address: `socklab compare`'s
/// c100k cell) cannot each open their window when their own ramp ends: one
/// ramps in 2 s, another in 9, and the merged numbers would mix a steady state
/// with a ramp. So each ramps on its own, says so ([`crate::Hooks::ramped`]),
/// and keeps its traffic going unmeasured until [`Hold::go`] names the instant
/// its warm-up starts; given the same instant, every generator measures the same
/// window. After the window it keeps its connections open until
/// [`Hold::release`], so the caller can read the server while every client is
/// still there.
#[derive(Debug)]
pub struct Hold {
    go: Latch<Instant>,
    release: Latch<()>,
}

/// Longest a held run keeps its connections open after its window, waiting for
/// [`Hold::release`]: a caller that never says it cannot keep them forever.
pub const RELEASE_WAIT: Duration = Duration::from_secs(60);

impl Default for Hold {
    fn default() -> Self {
        Hold::new()
    }
}

impl Hold {
    pub fn new() -> Hold {
        Hold {
            go: Latch::new(),
            release: Latch::new(),
        }
    }

    /// Warm-up starts at `at` (or when the ramp ends, if that is later).
    pub fn go(&self, at: Instant) {
        self.go.set(at);
    }

    /// The connections may close once the window is over.
    pub fn release(&self) {
        self.release.set(());
    }

    /// Whether [`Hold::go`] has been said.
    pub fn gone(&self) -> bool {
        self.go.get().is_some()
    }

    /// Whether [`Hold::release`] has been said.
    pub fn released(&self) -> bool {
        self.release.get().is_some()
    }

    /// Waits up to `timeout` for [`Hold::go`].
    pub fn wait_go(&self, timeout: Duration) -> Option<Instant> {
        self.go.wait(timeout)
    }
}

/// Live counters a thread publishes for the progress display (relaxed atomics,
/// updated every few milliseconds, never on the per-request path).
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub completed: AtomicU64,
    pub errors: AtomicU64,
    pub connected: AtomicU64,
    /// Connections answered at least once (the ramp's progress).
    pub served: AtomicU64,
}

impl LiveCounters {
    pub fn publish(&self, stats: &ThreadStats, connected: u64, served: u64) {
        self.completed
            .store(stats.counts.completed(), Ordering::Relaxed);
        self.errors.store(
            stats.errors.total() + stats.counts.mismatched,
            Ordering::Relaxed,
        );
        self.connected.store(connected, Ordering::Relaxed);
        self.served.store(served, Ordering::Relaxed);
    }
}

/// What every worker thread shares.
#[derive(Debug)]
pub struct Shared {
    pub start: Gate,
    pub ramp: Ramp,
    /// Where threads meet after measuring, before they close their connections. A
    /// thread that closed early would free a server's worker while another thread
    /// still measures, and a starved connection would be served in the last
    /// milliseconds.
    pub finish: Gate,
    /// Set by the watching thread once it has seen the window close (and called
    /// the caller's hook): the threads keep their connections open until then, so
    /// a reading taken at the close still sees every client connected.
    pub close_seen: Latch<()>,
    pub live: Vec<LiveCounters>,
    /// Set to make every thread stop at its next housekeeping tick.
    pub stop: AtomicBool,
    /// The caller holds the run between ramp and warm-up (see [`Hold`]).
    pub hold: Option<Arc<Hold>>,
}

impl Shared {
    pub fn new(threads: usize, hold: Option<Arc<Hold>>) -> Shared {
        Shared {
            start: Gate::new(threads),
            ramp: Ramp::new(threads),
            finish: Gate::new(threads),
            close_seen: Latch::new(),
            live: (0..threads).map(|_| LiveCounters::default()).collect(),
            stop: AtomicBool::new(false),
            hold,
        }
    }

    /// The measured window once the ramp has ended at `end`: warm-up from the
    /// ramp's end, or, for a held run, from the instant the caller gave (`None`
    /// until it has). Every thread and the watcher derive it here, so they agree.
    pub fn window_after(&self, end: RampEnd, cfg: &LoadConfig) -> Option<Window> {
        let warmup_start = match &self.hold {
            None => end.at,
            Some(h) => h.go.get()?.max(end.at),
        };
        Some(Window::warming_up_at(warmup_start, cfg))
    }

    /// How long a thread that has finished measuring keeps its connections open
    /// for the watcher ([`Shared::close_seen`]): a held run's caller may take a
    /// while to read what it needs.
    pub fn close_wait(&self) -> Duration {
        match self.hold {
            Some(_) => RELEASE_WAIT,
            None => FINISH_WAIT,
        }
    }

    /// Stops every thread and releases every gate (a failure, or a panic).
    pub fn abort(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.start.abort();
        self.finish.abort();
        self.close_seen.set(());
    }

    /// Sum of one live counter over the threads.
    pub fn total(&self, field: fn(&LiveCounters) -> &AtomicU64) -> u64 {
        self.live
            .iter()
            .map(|l| field(l).load(Ordering::Relaxed))
            .sum()
    }
}

/// Releases the other threads if a worker panics (a bug): without it they would
/// wait at a gate for a thread that never arrives.
pub struct PanicGuard(pub Arc<Shared>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.abort();
        }
    }
}

/// What one worker thread gets.
#[derive(Debug, Clone)]
pub struct WorkerCtx {
    pub cfg: Arc<LoadConfig>,
    pub thread: usize,
    pub shared: Arc<Shared>,
}

impl WorkerCtx {
    /// Global indices of the connections this thread owns: `t, t + threads, ...`.
    pub fn conn_ids(&self) -> impl Iterator<Item = usize> {
        (self.thread..self.cfg.conns).step_by(self.cfg.threads)
    }

    /// Measured requests (churn: sessions) connection `c` must send in a counted
    /// run: the total split as evenly as possible.
    pub fn quota(&self, c: usize) -> Option<u64> {
        let conns = self.cfg.conns as u64;
        self.cfg
            .requests
            .map(|n| n / conns + u64::from((c as u64) < n % conns))
    }

    pub fn live(&self) -> &LiveCounters {
        &self.shared.live[self.thread]
    }

    pub fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }
}

/// What a worker thread hands back.
#[derive(Debug)]
pub struct WorkerResult {
    pub stats: ThreadStats,
    /// The thread sent its whole share and got every reply before the deadline.
    pub finished_early: bool,
    /// Connections established when the traffic started.
    pub connected_at_start: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramp_ends_when_the_last_thread_is_served_or_at_the_limit() {
        let ramp = Ramp::new(2);
        let t0 = Instant::now();
        let limit = t0 + RAMP_STALL / 2;
        ramp.progress(t0);
        ramp.thread_served(t0);
        assert_eq!(ramp.check_limit(t0, limit), None);
        ramp.thread_served(t0 + Duration::from_millis(5));
        let end = ramp.check_limit(limit, limit).unwrap();
        assert!(end.complete && !end.stalled);
        assert_eq!(end.at, t0 + Duration::from_millis(5));

        let starved = Ramp::new(2);
        starved.progress(t0);
        starved.thread_served(t0);
        let end = starved.check_limit(limit, limit).unwrap();
        assert_eq!((end.at, end.complete, end.stalled), (limit, false, false));
        // Decided once: a late report changes nothing.
        starved.thread_served(limit + Duration::from_secs(1));
        assert_eq!(starved.end.get(), Some(end));
    }

    /// A ramp that makes progress runs on; one that makes none for RAMP_STALL ends.
    #[test]
    fn a_ramp_without_progress_ends_before_its_limit() {
        let ramp = Ramp::new(1);
        let t0 = Instant::now();
        let limit = t0 + RAMP_STALL * 10;
        ramp.progress(t0);
        let later = t0 + Duration::from_millis(10);
        ramp.progress(later);
        assert_eq!(ramp.check_limit(later + RAMP_STALL / 2, limit), None);
        let stuck = later + RAMP_STALL;
        let end = ramp.check_limit(stuck, limit).unwrap();
        assert_eq!((end.at, end.complete, end.stalled), (stuck, false, true));
    }

    /// A server that gets to new clients ever more slowly is waited for in
    /// proportion to its slowest step, not cut off at a fixed second.
    #[test]
    fn a_slowing_ramp_is_given_time_in_proportion_to_its_slowest_step() {
        let ramp = Ramp::new(1);
        let t0 = Instant::now();
        let limit = t0 + RAMP_STALL * 30;
        ramp.progress(t0);
        ramp.progress(t0 + Duration::from_millis(100));
        // Then 900 ms between two new clients: patience 3.6 s.
        let last = t0 + Duration::from_millis(1000);
        ramp.progress(last);
        assert_eq!(ramp.patience(), Duration::from_millis(3600));
        assert_eq!(ramp.check_limit(last + RAMP_STALL * 2, limit), None);
        let end = ramp
            .check_limit(last + Duration::from_millis(3600), limit)
            .unwrap();
        assert!(end.stalled, "{end:?}");
    }

    #[test]
    fn a_gate_opens_for_the_last_arrival_and_an_abort_releases_it() {
        let gate = Arc::new(Gate::new(2));
        let other = Arc::clone(&gate);
        let waiter = thread::spawn(move || other.arrive());
        let mine = gate.arrive();
        assert!(mine.is_some());
        assert_eq!(waiter.join().unwrap(), mine);

        let aborted = Arc::new(Gate::new(2));
        let other = Arc::clone(&aborted);
        let waiter = thread::spawn(move || other.arrive());
        aborted.abort();
        assert_eq!(waiter.join().unwrap(), None);
    }
}

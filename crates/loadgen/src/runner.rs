//! Starting the event-loop threads, starting them *together*, watching them, and
//! adding up what they measured.
//!
//! ```text
//!  run() ──spawn──▶ thread 0: connect its share ─┐
//!        ──spawn──▶ thread 1: connect its share ─┤ Gate: the last to arrive
//!                                               │ sets the common start time
//!        main: progress, CPU samples ◀──────────┘
//!              start ─ warmup ─▶ measure_start ─ duration ─▶ deadline
//!        join, merge ThreadStats, build LoadReport
//! ```
//!
//! The connect phase comes first and is not timed: opening 10,000 connections says
//! nothing about the steady state (churn mode measures connection setup on purpose).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{LoadConfig, Transport};
use crate::report::{LoadReport, RunTiming};
use crate::stats::{ThreadStats, Totals};
use crate::sys::{self, CpuTimes, FdLimit};
use crate::{LoadError, Phase, Progress};

/// How often the runner reports progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Longest the untimed connect phase may take before measuring starts anyway.
/// Connections still missing then keep retrying during the run (and are reported).
pub const CONNECT_PHASE_LIMIT: Duration = Duration::from_secs(10);

/// The run's clock, common to all threads.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    pub start: Instant,
    pub measure_start: Instant,
    /// Measuring ends here, whatever else happens.
    pub deadline: Instant,
}

impl Timeline {
    fn new(start: Instant, cfg: &LoadConfig) -> Timeline {
        let measure_start = start + cfg.warmup;
        Timeline {
            start,
            measure_start,
            deadline: measure_start + cfg.duration,
        }
    }
}

/// Where all threads meet after their connect phase. The last to arrive starts the
/// clock; an aborted gate (a thread failed to start) releases everyone.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    expected: usize,
    arrived: usize,
    start: Option<(Instant, SystemTime)>,
    aborted: bool,
}

impl Gate {
    fn new(expected: usize) -> Gate {
        Gate {
            state: Mutex::new(GateState {
                expected,
                ..Default::default()
            }),
            cv: Condvar::new(),
        }
    }

    /// Arrives and waits for the others; `None` if the run was aborted.
    pub fn arrive(&self) -> Option<Instant> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.arrived += 1;
        if s.arrived >= s.expected && s.start.is_none() {
            s.start = Some((Instant::now(), SystemTime::now()));
            self.cv.notify_all();
        }
        while s.start.is_none() && !s.aborted {
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.aborted {
            None
        } else {
            s.start.map(|(i, _)| i)
        }
    }

    /// Arrives and waits at most `timeout` for the others (a thread that failed
    /// early never arrives; nobody waits for it longer than that).
    pub fn arrive_within(&self, timeout: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.arrived += 1;
        if s.arrived >= s.expected && s.start.is_none() {
            s.start = Some((Instant::now(), SystemTime::now()));
            self.cv.notify_all();
        }
        let _ = self
            .cv
            .wait_timeout_while(s, timeout, |s| s.start.is_none() && !s.aborted);
    }

    fn abort(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.aborted = true;
        self.cv.notify_all();
    }

    /// Waits up to `timeout` for the start; returns it if it has happened.
    fn wait_start(&self, timeout: Duration) -> Option<(Instant, SystemTime)> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (s, _) = self
            .cv
            .wait_timeout_while(s, timeout, |s| s.start.is_none() && !s.aborted)
            .unwrap_or_else(|e| e.into_inner());
        s.start
    }
}

/// Live counters a thread publishes for the progress display (relaxed atomics,
/// updated every few milliseconds, never on the per-request path).
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub completed: AtomicU64,
    pub errors: AtomicU64,
    pub connected: AtomicU64,
}

impl LiveCounters {
    pub fn publish(&self, stats: &ThreadStats, connected: u64) {
        self.completed
            .store(stats.counts.completed(), Ordering::Relaxed);
        self.errors.store(
            stats.errors.total() + stats.counts.mismatched,
            Ordering::Relaxed,
        );
        self.connected.store(connected, Ordering::Relaxed);
    }
}

/// What every worker thread shares.
#[derive(Debug)]
pub struct Shared {
    pub gate: Gate,
    /// Where threads meet after measuring, before they close their connections. A
    /// thread that closed early would free a server's worker while another thread
    /// still measures, and a starved connection would be served in the last
    /// milliseconds, its whole wait recorded as one request's latency.
    pub finish: Gate,
    pub live: Vec<LiveCounters>,
    /// Set to make every thread stop at its next housekeeping tick.
    pub stop: AtomicBool,
}

/// Releases the other threads if a worker panics (a bug): without it they would
/// wait at the gate for a thread that never arrives.
struct PanicGuard(Arc<Shared>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.stop.store(true, Ordering::Relaxed);
            self.0.gate.abort();
            self.0.finish.abort();
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
    /// Connections established when measuring started.
    pub connected_at_start: u64,
}

/// Runs a load test; see [`crate::run`].
pub fn run(
    config: &LoadConfig,
    progress: Option<&dyn Fn(Progress)>,
) -> Result<LoadReport, LoadError> {
    let cfg = Arc::new(config.validate()?);
    let needed = cfg.fds_needed();
    match sys::raise_fd_limit(needed).map_err(|e| LoadError::io("reading RLIMIT_NOFILE", e))? {
        FdLimit::Enough { .. } | FdLimit::Raised { .. } => {}
        FdLimit::HardLimitTooLow { soft, hard } => {
            return Err(LoadError::FdLimit {
                conns: cfg.conns,
                needed,
                soft,
                hard,
            })
        }
    }
    let shared = Arc::new(Shared {
        gate: Gate::new(cfg.threads),
        finish: Gate::new(cfg.threads),
        live: (0..cfg.threads).map(|_| LiveCounters::default()).collect(),
        stop: AtomicBool::new(false),
    });
    let mut handles = Vec::with_capacity(cfg.threads);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    for t in 0..cfg.threads {
        let ctx = WorkerCtx {
            cfg: Arc::clone(&cfg),
            thread: t,
            shared: Arc::clone(&shared),
        };
        let done = done_tx.clone();
        let spawned = thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || {
                let _guard = PanicGuard(Arc::clone(&ctx.shared));
                let r = match ctx.cfg.transport {
                    Transport::Tcp => crate::tcp::run(ctx),
                    Transport::Udp => crate::udp::run(ctx),
                };
                // Wakes the watching thread at once (the receiver may be gone).
                let _ = done.send(());
                r
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                shared.stop.store(true, Ordering::Relaxed);
                shared.gate.abort();
                for h in handles {
                    let _ = h.join();
                }
                return Err(LoadError::io("spawning a load-generator thread", e));
            }
        }
    }

    drop(done_tx);
    let window = watch(&cfg, &shared, &handles, &done_rx, progress);

    let mut results = Vec::with_capacity(handles.len());
    let mut first_err = None;
    for (t, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(LoadError::ThreadPanicked(t));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let cpu_end = CpuTimes::now();
    let end = Instant::now();
    let (start, start_wall) = window
        .start
        .ok_or_else(|| LoadError::io("starting the run", std::io::Error::other("aborted")))?;
    let tl = Timeline::new(start, &cfg);
    let (cpu_start, cpu_from) = window.cpu.unwrap_or((cpu_end, end));

    let finished_early = results.iter().all(|r| r.finished_early);
    let connected_at_start = results.iter().map(|r| r.connected_at_start).sum();
    let totals = Totals::merge(results.into_iter().map(|r| r.stats).collect());
    let measured = if cfg.requests.is_some() && finished_early {
        totals.last_completion.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(tl.measure_start)
        })
    } else {
        cfg.duration
    };
    let timing = RunTiming {
        measure_start_wall: start_wall + cfg.warmup,
        connect_phase: window.connect_phase,
        measured,
        stopped_by_requests: cfg.requests.is_some() && finished_early,
        connected_at_start,
        cpu: cpu_end.since(&cpu_start),
        cpu_wall: end.saturating_duration_since(cpu_from),
    };
    let mut report = LoadReport::build(&cfg, totals, timing);
    if window.gave_up {
        // It did not run to its duration cap: it stopped here, for this reason.
        report.warnings.retain(|w| !w.contains("duration limit"));
        report.warnings.push(format!(
            "gave up: no connection to {} and no reply for {} s",
            cfg.target,
            UNREACHABLE_LIMIT.as_secs()
        ));
    }
    Ok(report)
}

/// What the watching main thread learned about the run's clock.
struct Window {
    /// The run was stopped because the server could not be reached (see
    /// [`UNREACHABLE_LIMIT`]).
    gave_up: bool,
    start: Option<(Instant, SystemTime)>,
    connect_phase: Duration,
    /// CPU times and instant when measuring started.
    cpu: Option<(CpuTimes, Instant)>,
}

/// Waits for the threads, reporting progress and sampling CPU time when measuring
/// starts.
fn watch(
    cfg: &LoadConfig,
    shared: &Shared,
    handles: &[thread::JoinHandle<Result<WorkerResult, LoadError>>],
    done: &mpsc::Receiver<()>,
    progress: Option<&dyn Fn(Progress)>,
) -> Window {
    let began = Instant::now();
    let mut w = Window {
        gave_up: false,
        start: None,
        connect_phase: Duration::ZERO,
        cpu: None,
    };
    let mut last_progress = (0, began);
    while !handles.iter().all(|h| h.is_finished()) {
        let now = Instant::now();
        if cfg.requests.is_some() && unreachable(shared, &mut last_progress, now) {
            w.gave_up = true;
            shared.stop.store(true, Ordering::Relaxed);
            shared.gate.abort();
        }
        let sleep = match w.start {
            None => {
                w.start = shared.gate.wait_start(PROGRESS_EVERY);
                if let Some((s, _)) = w.start {
                    w.connect_phase = s.saturating_duration_since(began);
                }
                Duration::ZERO
            }
            Some((s, _)) => {
                let measure_start = s + cfg.warmup;
                if now >= measure_start && w.cpu.is_none() {
                    w.cpu = Some((CpuTimes::now(), now));
                }
                if now < measure_start {
                    (measure_start - now).min(PROGRESS_EVERY)
                } else {
                    PROGRESS_EVERY
                }
            }
        };
        if let Some(report) = progress {
            report(snapshot(cfg, shared, w.start.map(|s| s.0), began));
        }
        if !sleep.is_zero() {
            // Sleeps, but wakes as soon as a thread finishes (a counted run ends
            // when its last reply arrives, not at the next progress tick).
            let _ = done.recv_timeout(sleep);
        }
    }
    if w.start.is_none() {
        w.start = shared.gate.wait_start(Duration::ZERO);
    }
    w
}

/// A counted run (`requests`) ends when its requests are answered, capped only by
/// a long `duration`; against a server that is gone that cap would be a hang. So
/// a counted run gives up after this long with no connection open and no reply.
pub const UNREACHABLE_LIMIT: Duration = Duration::from_secs(10);

/// True once nothing is connected and no reply has come for [`UNREACHABLE_LIMIT`].
fn unreachable(shared: &Shared, last: &mut (u64, Instant), now: Instant) -> bool {
    let total = |f: fn(&LiveCounters) -> &AtomicU64| -> u64 {
        shared
            .live
            .iter()
            .map(|l| f(l).load(Ordering::Relaxed))
            .sum()
    };
    let completed = total(|l| &l.completed);
    if completed != last.0 || total(|l| &l.connected) > 0 {
        *last = (completed, now);
        return false;
    }
    now.saturating_duration_since(last.1) >= UNREACHABLE_LIMIT
}

fn snapshot(cfg: &LoadConfig, shared: &Shared, start: Option<Instant>, began: Instant) -> Progress {
    let now = Instant::now();
    let sum = |f: fn(&LiveCounters) -> &AtomicU64| -> u64 {
        shared
            .live
            .iter()
            .map(|l| f(l).load(Ordering::Relaxed))
            .sum()
    };
    let (phase, elapsed, length) = match start {
        None => (Phase::Connecting, now - began, None),
        Some(s) if now < s + cfg.warmup => (Phase::Warmup, now - s, Some(cfg.warmup)),
        Some(s) => (
            Phase::Measuring,
            (now - s - cfg.warmup).min(cfg.duration),
            Some(cfg.duration),
        ),
    };
    Progress {
        phase,
        elapsed,
        phase_length: length,
        completed: sum(|l| &l.completed),
        target_requests: cfg.requests,
        errors: sum(|l| &l.errors),
        connected: sum(|l| &l.connected),
        conns: cfg.conns,
    }
}

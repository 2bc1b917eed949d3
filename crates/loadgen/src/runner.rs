//! Starting the event-loop threads, watching them, and adding up what they
//! measured.
//!
//! ```text
//!  run() ──spawn──▶ thread 0: event_loop::run ─┐
//!        ──spawn──▶ thread 1: event_loop::run ─┤  (phases: see crate::shared)
//!        main: progress; at the window's edges the loadgen's CPU and the
//!              caller's window hook (compare reads the server's usage there)
//!        join, merge ThreadStats, build LoadReport
//! ```

use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{LoadConfig, Transport};
use crate::report::{LoadReport, Ramp, RampTiming, RunTiming};
use crate::shared::{Hold, LiveCounters, PanicGuard, Shared, Window, WorkerCtx, WorkerResult};
use crate::stats::Totals;
use crate::sys::{self, CpuTimes, FdLimit};
use crate::{LoadError, Phase, Progress};

/// How often the runner reports progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// A counted run (`requests`) ends when its requests are answered, capped only by
/// a long `duration`; against a server that is gone that cap would be a hang. So
/// a counted run gives up after this long with no connection open and no reply.
pub const UNREACHABLE_LIMIT: Duration = Duration::from_secs(10);

/// An edge of the measured window, as [`Hooks::window`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Open,
    Close,
}

/// What the caller of [`crate::run`] may watch, both called from the calling thread.
#[derive(Default, Clone, Copy)]
pub struct Hooks<'a> {
    /// About ten times a second.
    pub progress: Option<&'a dyn Fn(Progress)>,
    /// As the measured window opens and as it closes, within a few hundred µs of
    /// the instant: to read something else over exactly the window (`socklab
    /// compare` reads the server's CPU time and counters here).
    pub window: Option<&'a dyn Fn(Edge)>,
    /// Set (by a signal handler, say) to stop the run within a tenth of a second;
    /// it then returns [`LoadError::Stopped`].
    pub stop: Option<&'a std::sync::atomic::AtomicBool>,
    /// Once, as the ramp ends: how it went (an incomplete ramp's `served` is the
    /// live count, a few milliseconds old; the report has the exact one).
    pub ramped: Option<&'a dyn Fn(Ramp)>,
    /// Hold the run between ramp and warm-up until the caller's go, and keep the
    /// connections open after the window until its release (see [`Hold`]).
    pub hold: Option<&'a Arc<Hold>>,
}

/// Runs a load test; see [`crate::run`].
pub fn run(config: &LoadConfig, hooks: Hooks) -> Result<LoadReport, LoadError> {
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
    let shared = Arc::new(Shared::new(cfg.threads, hooks.hold.cloned()));
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
                    Transport::Tcp => crate::event_loop::run::<crate::tcp::TcpConns>(ctx),
                    Transport::Udp => crate::event_loop::run::<crate::udp::UdpSocks>(ctx),
                };
                // Wakes the watching thread at once (the receiver may be gone).
                let _ = done.send(());
                r
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                shared.abort();
                for h in handles {
                    let _ = h.join();
                }
                return Err(LoadError::io("spawning a load-generator thread", e));
            }
        }
    }

    drop(done_tx);
    let mut watch = Watch::new();
    watch.run(&cfg, &shared, &handles, &done_rx, hooks);

    let mut results: Vec<WorkerResult> = Vec::with_capacity(handles.len());
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
    if watch.stopped {
        return Err(LoadError::Stopped);
    }
    watch.finish(hooks);
    let (Some((start, start_wall)), Some(window)) = (watch.traffic_start, watch.window) else {
        return Err(LoadError::io(
            "starting the run",
            std::io::Error::other("aborted before measuring started"),
        ));
    };

    let finished_early = results.iter().all(|r| r.finished_early);
    let connected_at_start = results.iter().map(|r| r.connected_at_start).sum();
    let totals = Totals::merge(results.into_iter().map(|r| r.stats).collect());
    let stopped_by_requests = cfg.requests.is_some() && finished_early;
    let measured = if stopped_by_requests {
        totals.last_completion.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(window.measure_start)
        })
    } else {
        cfg.duration
    };
    let ramp = shared.ramp.end.get().filter(|_| cfg.ramps());
    let (cpu, cpu_wall) = watch.cpu();
    let timing = RunTiming {
        measure_start_wall: start_wall + window.measure_start.saturating_duration_since(start),
        connect_phase: watch.connect_phase,
        ramp: ramp.map(|end| RampTiming {
            length: end.at.saturating_duration_since(start),
            complete: end.complete,
            stalled: end.stalled,
            quiet: end.quiet,
            served: totals.served_at_ramp_end,
        }),
        measured,
        stopped_by_requests,
        connected_at_start,
        cpu,
        cpu_wall,
    };
    let mut report = LoadReport::build(&cfg, totals, timing);
    if watch.gave_up {
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

/// What the watching main thread learns about the run's clock.
struct Watch {
    began: Instant,
    /// The run was stopped because the server could not be reached (see
    /// [`UNREACHABLE_LIMIT`]).
    gave_up: bool,
    /// The caller asked to stop.
    stopped: bool,
    traffic_start: Option<(Instant, SystemTime)>,
    connect_phase: Duration,
    /// The caller has been told the ramp ended ([`Hooks::ramped`]).
    ramp_told: bool,
    window: Option<Window>,
    /// The load generator's CPU times at the window's edges.
    cpu_open: Option<(CpuTimes, Instant)>,
    cpu_close: Option<(CpuTimes, Instant)>,
    last_progress: (u64, Instant),
}

impl Watch {
    fn new() -> Watch {
        let began = Instant::now();
        Watch {
            began,
            gave_up: false,
            stopped: false,
            traffic_start: None,
            connect_phase: Duration::ZERO,
            ramp_told: false,
            window: None,
            cpu_open: None,
            cpu_close: None,
            last_progress: (0, began),
        }
    }

    /// Waits for the threads, reporting progress and calling the window hook at
    /// the window's edges.
    fn run(
        &mut self,
        cfg: &LoadConfig,
        shared: &Shared,
        handles: &[thread::JoinHandle<Result<WorkerResult, LoadError>>],
        done: &mpsc::Receiver<()>,
        hooks: Hooks,
    ) {
        while !handles.iter().all(|h| h.is_finished()) {
            let now = Instant::now();
            if cfg.requests.is_some() && self.unreachable(shared, now) {
                self.gave_up = true;
                shared.abort();
            }
            if hooks
                .stop
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
            {
                self.stopped = true;
                shared.abort();
            }
            let sleep = match (self.traffic_start, self.window) {
                (None, _) => {
                    self.traffic_start = shared.start.opened(PROGRESS_EVERY);
                    if let Some((s, _)) = self.traffic_start {
                        self.connect_phase = s.saturating_duration_since(self.began);
                    }
                    Duration::ZERO
                }
                (Some((start, _)), None) => {
                    if let Some(end) = shared.ramp.end.wait(PROGRESS_EVERY) {
                        self.ramped(start, end, cfg, shared, hooks);
                        self.window = shared.window_after(end, cfg);
                        if self.window.is_none() {
                            if let Some(h) = &shared.hold {
                                h.wait_go(PROGRESS_EVERY);
                            }
                        }
                    }
                    Duration::ZERO
                }
                (Some(_), Some(w)) => self.edges(w, now, shared, hooks),
            };
            // A held run keeps its connections until the caller releases them.
            if self.cpu_close.is_some() && shared.hold.as_ref().is_none_or(|h| h.released()) {
                shared.close_seen.set(());
            }
            if let Some(report) = hooks.progress {
                report(self.snapshot(cfg, shared));
            }
            if !sleep.is_zero() {
                // Sleeps, but wakes as soon as a thread finishes (a counted run ends
                // when its last reply arrives, not at the next progress tick).
                let _ = done.recv_timeout(sleep);
            }
        }
        if self.traffic_start.is_none() {
            self.traffic_start = shared.start.opened(Duration::ZERO);
        }
        if self.window.is_none() {
            self.window = shared
                .ramp
                .end
                .get()
                .and_then(|end| shared.window_after(end, cfg));
        }
    }

    /// Tells the caller, once, that the ramp has ended and how.
    fn ramped(
        &mut self,
        start: Instant,
        end: crate::shared::RampEnd,
        cfg: &LoadConfig,
        shared: &Shared,
        hooks: Hooks,
    ) {
        if std::mem::replace(&mut self.ramp_told, true) {
            return;
        }
        if let Some(hook) = hooks.ramped {
            hook(Ramp {
                limit_s: cfg.ramp_limit.as_secs_f64(),
                length_s: end.at.saturating_duration_since(start).as_secs_f64(),
                complete: end.complete,
                stalled: end.stalled,
                quiet_s: end.quiet.as_secs_f64(),
                // Complete means every one; otherwise the live count will do.
                served: if end.complete {
                    cfg.conns as u64
                } else {
                    shared.total(|l| &l.served)
                },
            });
        }
    }

    /// Calls the hook at an edge that has come; returns how long to sleep until
    /// the next edge (or the next progress report). The window has closed at its
    /// deadline, or when every thread has finished measuring (a counted run that
    /// is done); then the threads may close their connections.
    fn edges(&mut self, w: Window, now: Instant, shared: &Shared, hooks: Hooks) -> Duration {
        let measured = shared.finish.opened(Duration::ZERO).is_some();
        if (now >= w.measure_start || measured) && self.cpu_open.is_none() {
            self.cpu_open = Some((CpuTimes::now(), Instant::now()));
            if let Some(hook) = hooks.window {
                hook(Edge::Open);
            }
        }
        if (now >= w.deadline || measured) && self.cpu_close.is_none() {
            self.cpu_close = Some((CpuTimes::now(), Instant::now()));
            if let Some(hook) = hooks.window {
                hook(Edge::Close);
            }
        }
        let next = match (self.cpu_open, self.cpu_close) {
            (None, _) => w.measure_start,
            (Some(_), None) => w.deadline,
            // Closed: only a held run's release, or the threads' end, is left.
            (Some(_), Some(_)) => return PROGRESS_EVERY,
        };
        next.saturating_duration_since(Instant::now())
            .clamp(Duration::from_micros(1), PROGRESS_EVERY)
    }

    /// After the threads have ended: an edge not yet seen (a counted run that
    /// finished early, a stopped run) is taken now, so the hook sees both edges.
    fn finish(&mut self, hooks: Hooks) {
        let now = (CpuTimes::now(), Instant::now());
        if self.window.is_some() {
            for (slot, edge) in [
                (&mut self.cpu_open, Edge::Open),
                (&mut self.cpu_close, Edge::Close),
            ] {
                if slot.is_none() {
                    *slot = Some(now);
                    if let Some(hook) = hooks.window {
                        hook(edge);
                    }
                }
            }
        }
    }

    /// The load generator's CPU over the window, and the wall time it spans.
    fn cpu(&self) -> (CpuTimes, Duration) {
        match (self.cpu_open, self.cpu_close) {
            (Some((c0, t0)), Some((c1, t1))) => (c1.since(&c0), t1.saturating_duration_since(t0)),
            _ => (CpuTimes::default(), Duration::ZERO),
        }
    }

    /// True once nothing is connected and no reply has come for [`UNREACHABLE_LIMIT`].
    fn unreachable(&mut self, shared: &Shared, now: Instant) -> bool {
        let completed = shared.total(|l| &l.completed);
        if completed != self.last_progress.0 || shared.total(|l| &l.connected) > 0 {
            self.last_progress = (completed, now);
            return false;
        }
        now.saturating_duration_since(self.last_progress.1) >= UNREACHABLE_LIMIT
    }

    fn snapshot(&self, cfg: &LoadConfig, shared: &Shared) -> Progress {
        let now = Instant::now();
        let (phase, elapsed, length) = match (self.traffic_start, self.window) {
            (None, _) => (Phase::Connecting, now - self.began, None),
            (Some((s, _)), None) => (Phase::Ramp, now - s, Some(cfg.ramp_limit)),
            (Some(_), Some(w)) if now < w.measure_start => (
                Phase::Warmup,
                now.saturating_duration_since(w.warmup_start),
                Some(cfg.warmup),
            ),
            (Some(_), Some(w)) => (
                Phase::Measuring,
                now.saturating_duration_since(w.measure_start)
                    .min(cfg.duration),
                Some(cfg.duration),
            ),
        };
        let total = |f: fn(&LiveCounters) -> &std::sync::atomic::AtomicU64| shared.total(f);
        Progress {
            phase,
            elapsed,
            phase_length: length,
            completed: total(|l| &l.completed),
            target_requests: cfg.requests,
            errors: total(|l| &l.errors),
            connected: total(|l| &l.connected),
            served: total(|l| &l.served),
            conns: cfg.conns,
        }
    }
}

//! Running one timed cell: start the server, sample its tree, drive it, stop it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use socklab_loadgen::{Edge, Hooks, LoadConfig, LoadReport, Mode, Transport};
use socklab_report::schema::{
    Cell, Errors, LoadSummary, Percentiles, ServerUsage, STATUS_FAILED, STATUS_INTERRUPTED,
    STATUS_OK,
};

use super::matrix::{placement, Job, Plan, Scenario};
use super::server::{pin_to, Launch, Reading, RunningServer};
use super::tree::{self, Sampler, TreeSample};

/// Message size of every cell: a small request, as the design's measurements used.
pub const MESSAGE_BYTES: usize = 64;
/// How often a slow client sends its next single byte.
const SLOW_CLIENT_PERIOD: Duration = Duration::from_millis(50);
/// The bytes a chaos cell sends to crash one handler (see `Config::chaos`).
const CHAOS_TRIGGER: &[u8] = b"SOCKLAB-CHAOS-CRASH\n";

/// Where a cell runs: the CPUs this process may use, and the output directory.
pub struct Bench<'a> {
    pub plan: &'a Plan,
    pub cpus: Vec<usize>,
    pub dir: &'a Path,
}

impl Bench<'_> {
    /// Runs one cell; a failure is recorded in the cell, never returned.
    pub fn run(&self, job: &Job) -> Cell {
        let mut cell = empty_cell(job);
        let outcome = match job.scenario {
            Scenario::C100k => super::c100k::run(self, job, &mut cell),
            _ => self.try_run(job, &mut cell),
        };
        finish(&mut cell, outcome);
        cell
    }

    /// How to start the server of `job`, pinned where its placement says (and the
    /// load generator, this process, moved to its own CPUs).
    pub fn launch(&self, job: &Job) -> anyhow::Result<Launch> {
        let mut serve_args: Vec<String> = match job.scenario {
            Scenario::C100k => super::c100k::serve_args(job.model, job.conns),
            _ => super::matrix::serve_args(job.model),
        };
        serve_args.extend(["--work".into(), job.scenario.work().into()]);
        if job.scenario == Scenario::Chaos {
            serve_args.extend(["--chaos".into(), "--framing".into(), "lines".into()]);
        }
        let cpus = match placement(&self.cpus, job.server_cpus) {
            Some((server, loadgen)) => {
                pin_to(&loadgen).context("pinning the load generator")?;
                server
            }
            None => Vec::new(),
        };
        Ok(Launch {
            serve_args,
            udp: job.scenario == Scenario::Udp,
            cpus,
            wrapper: Vec::new(),
            stderr: self
                .dir
                .join("logs")
                .join(format!("{}.stderr", cell_name(job))),
        })
    }

    fn try_run(&self, job: &Job, cell: &mut Cell) -> anyhow::Result<()> {
        let mut server = self.launch(job)?.start()?;
        let measured = self.measure(job, &server, cell);
        let survived = server.alive();
        let tail = server.stderr_tail();
        if survived {
            // Its exit line is not needed: usage comes from the window's readings.
            let _ = server.stop();
        }
        let report = measured.with_context(|| format!("server said: {tail}"))?;
        if job.scenario != Scenario::Chaos && !survived {
            return Err(anyhow!("the server died during the cell: {tail}"));
        }
        if job.scenario == Scenario::Chaos {
            let lost = report.clients.map_or(0, |c| c.with_errors);
            cell.extra.insert(
                "other_clients_lost".into(),
                lost.min(job.conns as u64) as f64,
            );
            cell.extra
                .insert("server_survived".into(), if survived { 1.0 } else { 0.0 });
        }
        Ok(())
    }

    /// Drives a running server as `job` says and fills `cell` with what was
    /// measured: the load generator's report, the server's usage over the window,
    /// its tree's peak, the HDR log.
    pub fn measure(
        &self,
        job: &Job,
        server: &RunningServer,
        cell: &mut Cell,
    ) -> anyhow::Result<LoadReport> {
        let idle = tree::sample(server.pid);
        let sampler = Sampler::start(server.pid);
        let window = WindowReadings::default();
        let driven = self.drive(job, server, cell, &window);
        let peak = sampler.finish();
        let report = driven?;
        let hdr = format!("hdr/{}.hlog", cell_name(job));
        let mut file = std::fs::File::create(self.dir.join(&hdr))?;
        report.write_hdr_log(&mut file)?;
        cell.hdr_log = Some(hdr);
        cell.load = Some(summarize(&report));
        cell.server = window.usage(idle, peak);
        // In chaos the server dying is the experiment, not a failure to measure.
        let failed = window.failed.borrow();
        if let Some(e) = failed.as_ref().filter(|_| job.scenario != Scenario::Chaos) {
            cell.extra.insert("server_usage_unread".into(), 1.0);
            eprintln!(
                "socklab compare: {}: server usage not read: {e}",
                cell_name(job)
            );
        }
        Ok(report)
    }

    /// Drives the server as the scenario asks and returns the load generator's report.
    ///
    /// No reply timeout: a client still waiting when the window closes counts
    /// with its wait, where a timeout would close it, reconnect it and drop its
    /// wait from the latency. The server's usage is read as the window opens and
    /// closes.
    fn drive(
        &self,
        job: &Job,
        server: &RunningServer,
        cell: &mut Cell,
        window: &WindowReadings,
    ) -> anyhow::Result<LoadReport> {
        let mut config = LoadConfig {
            conns: job.conns,
            size: MESSAGE_BYTES,
            duration: self.plan.cell,
            warmup: self.plan.warmup,
            ramp_limit: self.plan.ramp_limit,
            timeout: None,
            ..LoadConfig::default()
        };
        let on_edge = |edge: Edge| window.read(server, edge);
        let hooks = Hooks {
            window: Some(&on_edge),
            stop: Some(super::interrupt::flag()),
            ..Default::default()
        };
        match job.scenario {
            Scenario::Udp => {
                config.transport = Transport::Udp;
                config.target = server
                    .udp
                    .ok_or_else(|| anyhow!("server has no UDP address"))?;
            }
            _ => {
                config.target = server
                    .tcp
                    .ok_or_else(|| anyhow!("server has no TCP address"))?
            }
        }
        match job.scenario {
            Scenario::Churn => config.mode = Mode::Churn,
            Scenario::Curve => {
                config.mode = Mode::Open;
                config.rate = job.offered_rps;
            }
            Scenario::Slow => {
                let slow = SlowClients::start(config.target, self.plan.slow_clients)?;
                let report = socklab_loadgen::run(&config, hooks);
                let answered = slow.stop();
                cell.extra
                    .insert("slow_clients".into(), self.plan.slow_clients as f64);
                cell.extra
                    .insert("slow_bytes_answered".into(), answered as f64);
                return Ok(report?);
            }
            Scenario::Chaos => {
                config.framing = socklab_loadgen::Framing::Lines;
                return chaos(config, self.plan.cell / 3, hooks);
            }
            _ => {}
        }
        Ok(socklab_loadgen::run(&config, hooks)?)
    }
}

/// The server's readings at the window's edges, taken from the load generator's
/// window hook.
#[derive(Default)]
pub(super) struct WindowReadings {
    open: RefCell<Option<Reading>>,
    close: RefCell<Option<Reading>>,
    pub(super) failed: RefCell<Option<String>>,
}

impl WindowReadings {
    pub(super) fn read(&self, server: &RunningServer, edge: Edge) {
        let slot = match edge {
            Edge::Open => &self.open,
            Edge::Close => &self.close,
        };
        match server.reading() {
            Ok(r) => *slot.borrow_mut() = Some(r),
            Err(e) => *self.failed.borrow_mut() = Some(format!("{e:#}")),
        }
    }

    /// The close reading, once taken.
    pub(super) fn closed(&self) -> Option<Reading> {
        *self.close.borrow()
    }

    /// Usage over the window, with what /proc showed alive; `None` when either
    /// edge could not be read (a server that died in the cell).
    pub(super) fn usage(&self, idle: TreeSample, peak: TreeSample) -> Option<ServerUsage> {
        let (open, close) = ((*self.open.borrow())?, (*self.close.borrow())?);
        let u = close.usage.since(&open.usage);
        Some(ServerUsage {
            cpu_user_s: u.user_us as f64 / 1e6,
            cpu_system_s: u.system_us as f64 / 1e6,
            voluntary_ctx: u.voluntary_ctx,
            involuntary_ctx: u.involuntary_ctx,
            window_s: close.at.saturating_duration_since(open.at).as_secs_f64(),
            requests: Some(close.requests.saturating_sub(open.requests)),
            held_conns: Some(close.active),
            processes_max: peak.processes,
            threads_max: peak.threads,
            rss_max_bytes: peak.rss_bytes,
            pss_max_bytes: peak.pss_bytes,
            rss_idle_bytes: idle.rss_bytes,
            pss_idle_bytes: idle.pss_bytes,
            steal_share: steal_share(&open, &close),
        })
    }
}

/// The share of the machine's CPU time the hypervisor took between two readings.
fn steal_share(open: &Reading, close: &Reading) -> Option<f64> {
    let ((before, cpus), (after, _)) = (open.steal?, close.steal?);
    let window = close.at.saturating_duration_since(open.at).as_secs_f64();
    (window > 0.0 && cpus > 0)
        .then(|| after.saturating_sub(before).as_secs_f64() / (window * cpus as f64))
}

/// A cell with nothing measured yet.
pub fn empty_cell(job: &Job) -> Cell {
    Cell {
        model: job.model.name.to_string(),
        scenario: job.scenario.name().to_string(),
        conns: job.conns,
        repeat: job.repeat,
        server_cpus: job.server_cpus,
        offered_rps: job.offered_rps,
        work: job.scenario.work().to_string(),
        status: STATUS_OK.into(),
        error: None,
        load: None,
        server: None,
        hdr_log: None,
        extra: BTreeMap::new(),
        limit: None,
    }
}

/// Records how a cell ended: interrupted (then nothing it measured is kept, and
/// `--resume` runs it again), failed with its reason, or ok.
pub fn finish(cell: &mut Cell, outcome: anyhow::Result<()>) {
    if super::interrupt::requested() {
        cell.status = STATUS_INTERRUPTED.into();
        cell.error = Some("interrupted (SIGINT or SIGTERM)".into());
        cell.load = None;
        cell.server = None;
    } else if let Err(e) = outcome {
        cell.status = STATUS_FAILED.into();
        cell.error = Some(format!("{e:#}"));
    }
}

/// A cell's file name stem: `thread-scaling-100-r0`; with more than one server
/// CPU `thread-cpu-10-2cpus-r0`; a curve step `thread-curve-100-20000rps-r0`.
pub fn cell_name(job: &Job) -> String {
    let mut name = format!("{}-{}-{}", job.model.name, job.scenario.name(), job.conns);
    if job.server_cpus != 1 {
        name += &format!("-{}cpus", job.server_cpus);
    }
    if let Some(rate) = job.offered_rps {
        name += &format!("-{rate:.0}rps");
    }
    name + &format!("-r{}", job.repeat)
}

/// Fault isolation: one client, already being served, sends the chaos trigger a
/// third of the way into the cell while the load generator's clients run.
fn chaos(config: LoadConfig, after: Duration, hooks: Hooks) -> anyhow::Result<LoadReport> {
    let mut victim = TcpStream::connect_timeout(&config.target, Duration::from_secs(5))?;
    victim.set_read_timeout(Some(Duration::from_secs(5)))?;
    // Be served first, so the trigger reaches a handler in every model (an
    // iterative server would otherwise never read it).
    victim.write_all(b"ping\n")?;
    let mut pong = [0u8; 5];
    victim
        .read_exact(&mut pong)
        .context("the chaos client was not served")?;
    // The load generator's window opens after its ramp; the trigger comes a third
    // of the way into the window (the ramp of 10 clients takes milliseconds).
    let trigger = std::thread::spawn(move || {
        std::thread::sleep(config.warmup + after);
        let _ = victim.write_all(CHAOS_TRIGGER);
        // Hold the connection until the handler is gone.
        let _ = victim.read(&mut [0u8; 64]);
    });
    let report = socklab_loadgen::run(&config, hooks);
    let _ = trigger.join();
    Ok(report?)
}

/// Clients that dribble one byte at a time and read it back, like a person typing.
struct SlowClients {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl SlowClients {
    fn start(target: SocketAddr, count: usize) -> anyhow::Result<SlowClients> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..count {
            let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(SLOW_CLIENT_PERIOD))?;
            let stop = Arc::clone(&stop);
            threads.push(std::thread::spawn(move || {
                let mut answered = 0;
                let mut byte = [0u8; 1];
                while !stop.load(Ordering::Relaxed) {
                    if stream.write_all(b"s").is_err() {
                        break;
                    }
                    if stream.read_exact(&mut byte).is_ok() {
                        answered += 1;
                    }
                    std::thread::sleep(SLOW_CLIENT_PERIOD);
                }
                answered
            }));
        }
        // Let them take their seats (a thread, a process, a worker) first.
        std::thread::sleep(Duration::from_millis(100));
        Ok(SlowClients { stop, threads })
    }

    /// Stops the slow clients; returns how many of their bytes were answered.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|t| t.join().unwrap_or(0))
            .sum()
    }
}

/// Latency percentiles as the results format keeps them.
pub fn percentiles(l: &socklab_loadgen::LatencySummary) -> Percentiles {
    Percentiles {
        p50: l.p50_us as f64,
        p90: l.p90_us as f64,
        p99: l.p99_us as f64,
        p999: l.p999_us as f64,
        p9999: l.p9999_us as f64,
        max: l.max_us as f64,
        mean: l.mean_us,
        stddev: l.stddev_us,
    }
}

/// The load generator's report, reduced to what the results format keeps.
pub fn summarize(r: &LoadReport) -> LoadSummary {
    let pct = percentiles;
    let e = &r.errors;
    let udp = r.config.transport == Transport::Udp;
    LoadSummary {
        requests: r.counts.ok,
        duration_s: r.measured_s,
        throughput_rps: r.throughput.requests_per_s,
        bytes_per_s: r.throughput.bytes_received_per_s,
        latency_us: pct(&r.latency),
        latency_timed_us: pct(&r.latency_timed),
        waiting: r.counts.unfinished,
        clients: r.clients,
        ramp: r.connections.ramp,
        little: r.little,
        errors: Errors {
            clients: match r.clients {
                Some(c) => c.with_errors,
                // Churn: every connection attempt is a client of its own.
                None => e.total() + r.counts.mismatched,
            },
            mismatches: r.counts.mismatched,
            resets: e.reset + e.closed,
            refused: e.refused,
            timeouts: if udp {
                0
            } else {
                e.timeouts + e.connect_timeouts
            },
            lost: if udp { e.timeouts } else { 0 },
            other: e.other + e.unexpected + e.not_connected,
            unserved_conns: r.counts.starved,
        },
        loadgen_cpu_s: r.cpu.user_s + r.cpu.sys_s,
        loadgen_cpu_util: r.cpu.utilization,
        send_lag_p99_us: r.rate.map(|rate| rate.send_lag_p99_us as f64),
        connects_per_s: r.throughput.connections_per_s,
        connect_latency_us: r.connect.as_ref().map(pct),
    }
}

//! The c100k cell: 100,000 mostly idle connections to one server, from several
//! load processes, and what each model holds of them.
//!
//! One process may hold 20,000 descriptors here (`RLIMIT_NOFILE`, hard), and one
//! source address reaches one server port with at most 28,232 connections (the
//! ephemeral ports). So the load comes from K `socklab load --hold` children
//! ([`loaders`]), each with its own descriptor table and its own loopback source
//! address (127.0.0.2, 127.0.0.3, …), each with its share of the connections and
//! of the rate: open loop, every client once every conns ÷ rate seconds (10 s).
//!
//! ```text
//!  start the server (--max-conns at the target; workers from the model's shape)
//!  start K loaders ──▶ each connects and ramps, then prints "ramped" and holds
//!  all ramped (or the ramp limit passed) ──▶ "go T" to every loader, T = now + 200 ms
//!  warm-up from T; the window from T + warm-up, a period and a tenth long:
//!      compare reads the server's usage at both edges (it knows them: it chose T)
//!      and, at the close, the kernel's socket counts and the server's /proc
//!  "release" ──▶ loaders close, write their reports, exit
//!  merge the reports (merge); stop the server; read its log: what stopped it (limit)
//! ```
//!
//! The window is 1.1 periods long so that every client has a request due in it,
//! and the requests still in flight at its close belong to clients already
//! answered in its first tenth: a perfect server leaves no client unserved.

mod kernel;
mod limit;
mod loaders;
mod merge;
mod shape;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use socklab_loadgen::{hlog, Edge, LoadReport};
use socklab_report::schema::Cell;

use super::cell::{cell_name, Bench, WindowReadings};
use super::interrupt;
use super::matrix::Job;
use super::tree::{self, Sampler};
use crate::hold::{instant_of, Command};
use kernel::Kernel;
use limit::Evidence;
use loaders::{Loader, Spec};

pub use shape::serve_args;

/// How far ahead of now the loaders' warm-up starts: time for every loader to
/// read its `go` line, however busy.
const GO_LEAD: Duration = Duration::from_millis(200);
/// Past the loaders' own connect-phase and ramp limits, how long compare waits
/// for their ramped lines before it says go anyway.
const RAMP_MARGIN: Duration = Duration::from_secs(5);
/// Longest a released loader may take to close, report and exit.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);

/// The window's length for `conns` clients at `rate`: 1.1 periods (see the
/// module docs).
pub fn window(conns: usize, rate: f64) -> Duration {
    Duration::from_secs_f64(conns as f64 / rate * 1.1)
}

/// Loader processes for `conns` connections: as asked, or as few as hold them
/// under this process's descriptor limit.
pub fn loader_count(conns: usize, asked: Option<usize>) -> anyhow::Result<usize> {
    let hard = nofile_hard();
    let per = shape::per_loader(hard);
    let k = asked.unwrap_or_else(|| conns.div_ceil(per));
    if k == 0 || k > conns {
        bail!("--c100k-loaders must be between 1 and the connections ({conns}), got {k}");
    }
    if k > shape::MAX_LOADERS {
        bail!(
            "{k} loaders: at most {} source addresses (127.0.0.2 to 127.0.0.251)",
            shape::MAX_LOADERS
        );
    }
    if conns.div_ceil(k) > per {
        bail!(
            "{conns} connections over {k} loaders is {} each, but one loader holds at most {per} \
             here (RLIMIT_NOFILE hard limit {hard}); use more loaders",
            conns.div_ceil(k)
        );
    }
    Ok(k)
}

fn nofile_hard() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(_, hard)| hard)
}

/// Runs one c100k cell into `cell`.
pub fn run(bench: &Bench, job: &Job, cell: &mut Cell) -> anyhow::Result<()> {
    let before = Kernel::read();
    let mut server = bench.launch(job)?.start()?;
    let idle = tree::sample(server.pid);
    let sampler = Sampler::start(server.pid);
    let window = WindowReadings::default();
    let driven = drive(bench, job, &server, &window, cell);
    let peak = sampler.finish();
    let survived = server.alive();
    let tail = server.stderr_tail();
    if survived {
        let _ = server.stop();
    }
    let (reports, closed) = driven.with_context(|| format!("server said: {tail}"))?;
    let log = std::fs::read_to_string(
        bench
            .dir
            .join("logs")
            .join(format!("{}.stderr", cell_name(job))),
    )
    .unwrap_or_default();
    // A server that dies on the way is an outcome here, as in chaos: how far it
    // got, and what it said before it went.
    let died = (!survived).then(|| last_words(&log, &tail));
    let held = if died.is_some() {
        peak.fds.saturating_sub(idle.fds)
    } else {
        cell.server = window.usage(idle, peak);
        if let Some(e) = &*window.failed.borrow() {
            bail!("server usage not read: {e}");
        }
        window
            .closed()
            .map(|r| r.active)
            .ok_or_else(|| anyhow!("no reading at the window's close"))?
    };
    let evidence = Evidence {
        target: job.conns as u64,
        held,
        served: cell.load.as_ref().and_then(|l| l.clients).map(|c| c.served),
        log,
        fds: closed.fds,
        maps: closed.maps.map(|n| (n, closed.max_map_count)),
        threads: peak.threads,
        processes: peak.processes,
        pid_max: closed.kernel.pid_max,
        tasks: closed.kernel.tasks,
        shape: Some(job.model.shape),
        workers: shape::workers(job.model, job.conns).map(|(n, _)| n),
        cap: Some(shape::max_conns(job.model, job.conns)).filter(|&c| c < job.conns),
        loader_errors: reports
            .iter()
            .flat_map(|r| r.errors.messages.iter().cloned())
            .collect(),
        died,
    };
    record_kernel(cell, &before, &closed);
    cell.extra
        .insert("threads_peak".into(), peak.threads as f64);
    cell.extra
        .insert("processes_peak".into(), peak.processes as f64);
    if let Some(c) = evidence.cap {
        cell.extra.insert("max_conns".into(), c as f64);
    }
    if let Some(w) = evidence.workers {
        cell.extra.insert("workers".into(), w as f64);
    }
    cell.limit = Some(limit::classify(&evidence));
    Ok(())
}

/// How a dead server ended: its `fatal` or `panicked` line, else the tail.
fn last_words(log: &str, tail: &str) -> String {
    log.lines()
        .rev()
        .find(|l| l.contains("fatal") || l.contains("panicked") || l.contains("aborting"))
        .unwrap_or(tail)
        .trim()
        .to_string()
}

/// What compare read itself as the window closed.
struct Closed {
    kernel: Kernel,
    fds: Option<(u64, Option<u64>)>,
    maps: Option<u64>,
    max_map_count: u64,
}

/// Starts the loaders, lines them up, reads the server over the window, and
/// merges what they measured into `cell`.
fn drive(
    bench: &Bench,
    job: &Job,
    server: &super::server::RunningServer,
    readings: &WindowReadings,
    cell: &mut Cell,
) -> anyhow::Result<(Vec<LoadReport>, Closed)> {
    let plan = bench.plan.c100k;
    let target = server
        .tcp
        .ok_or_else(|| anyhow!("server has no TCP address"))?;
    let count = loader_count(job.conns, plan.loaders)?;
    let period = Duration::from_secs_f64(job.conns as f64 / plan.rate);
    let length = window(job.conns, plan.rate);
    let warmup = bench.plan.warmup;
    let ramp_limit = period + bench.plan.ramp_limit;
    let name = cell_name(job);
    let file = |k: usize, ext: &str| bench.dir.join(format!("hdr/{name}-loader{k}.{ext}"));
    let mut loaders = Vec::with_capacity(count);
    for (k, (conns, rate)) in shape::split(job.conns, plan.rate, count)
        .into_iter()
        .enumerate()
    {
        loaders.push(Loader::start(Spec {
            target,
            conns,
            rate,
            source: shape::source(k),
            warmup,
            window: length,
            ramp_limit,
            json: file(k, "json"),
            hlog: file(k, "hlog"),
            stderr: bench.dir.join(format!("logs/{name}-loader{k}.stderr")),
        })?);
    }
    let started = Instant::now();
    let deadline =
        started + socklab_loadgen::event_loop::CONNECT_PHASE_LIMIT + ramp_limit + RAMP_MARGIN;
    let ramped = wait_ramped(&loaders, deadline)?;
    eprintln!(
        "c100k {}: {ramped} of {count} loaders ramped after {:.1} s",
        job.model.name,
        started.elapsed().as_secs_f64()
    );
    let go_wall = SystemTime::now() + GO_LEAD;
    for l in &mut loaders {
        l.tell(Command::Go(go_wall));
    }
    let open_at = instant_of(go_wall) + warmup;
    let close_at = open_at + length;
    sleep_until(open_at)?;
    readings.read(server, Edge::Open);
    sleep_until(close_at)?;
    readings.read(server, Edge::Close);
    let closed = Closed {
        kernel: Kernel::read(),
        fds: tree::fullest_fd_table(server.pid),
        maps: tree::most_mappings(server.pid),
        max_map_count: std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
    };
    for l in &mut loaders {
        l.tell(Command::Release);
    }
    let reports: Vec<LoadReport> = loaders
        .into_iter()
        .map(|l| l.finish(FINISH_TIMEOUT))
        .collect::<anyhow::Result<_>>()?;
    // A loader that measured nothing (its clients were never connected in the
    // window) wrote a log without histograms: nothing of it to add.
    let hlogs: Vec<_> = (0..count)
        .filter(|&k| reports[k].latency_timed.count > 0)
        .map(|k| file(k, "hlog"))
        .collect();
    let mut timed = socklab_loadgen::stats::new_histogram();
    if !hlogs.is_empty() {
        let merged =
            socklab_loadgen::merge_files(&hlogs).context("merging the loaders' interval logs")?;
        if let Some(h) = merged.by_tag.get(hlog::LATENCY_TAG) {
            timed = h.clone();
        }
    }
    let timed = &timed;
    let loadgen_cpus = super::matrix::placement(&bench.cpus, 1).map_or(1, |(_, l)| l.len());
    cell.load = Some(merge::merge(&reports, timed, loadgen_cpus)?);
    cell.hdr_log = Some(write_merged_log(
        bench.dir,
        &name,
        go_wall + warmup,
        length,
        timed,
    )?);
    record_loaders(cell, &reports, ramped, go_wall + warmup);
    cell.extra.insert("merged_count".into(), timed.len() as f64);
    cell.extra.insert(
        "loaders_count".into(),
        reports.iter().map(|r| r.latency_timed.count).sum::<u64>() as f64,
    );
    Ok((reports, closed))
}

/// Waits until every loader has said it ramped, or `deadline`; returns how many
/// did. Looks at each in turn for a few milliseconds, so Ctrl-C stops the cell
/// within a tenth of a second.
fn wait_ramped(loaders: &[Loader], deadline: Instant) -> anyhow::Result<usize> {
    const SLICE: Duration = Duration::from_millis(10);
    let mut said = vec![false; loaders.len()];
    while said.iter().any(|s| !s) && Instant::now() < deadline {
        if interrupt::requested() {
            bail!("interrupted");
        }
        let before = Instant::now();
        for (l, s) in loaders.iter().zip(&mut said) {
            *s = *s || l.ramped(Instant::now() + SLICE).is_some();
        }
        // Dead loaders answer at once: do not spin on them.
        std::thread::sleep(SLICE.saturating_sub(before.elapsed()));
    }
    Ok(said.iter().filter(|s| **s).count())
}

/// Sleeps until `at`, a tenth of a second at a time, so Ctrl-C stops the cell.
fn sleep_until(at: Instant) -> anyhow::Result<()> {
    loop {
        if interrupt::requested() {
            bail!("interrupted");
        }
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// One interval log for the cell: the loaders' window, all of their values.
fn write_merged_log(
    dir: &Path,
    name: &str,
    start: SystemTime,
    length: Duration,
    timed: &hdrhistogram::Histogram<u64>,
) -> anyhow::Result<String> {
    let rel = format!("hdr/{name}.hlog");
    let mut file = std::fs::File::create(dir.join(&rel))?;
    hlog::write_log(
        &mut file,
        start,
        &[format!(
            "[socklab compare c100k: {name}, the loaders' logs merged]"
        )],
        &[hlog::LogInterval {
            start: Duration::ZERO,
            length,
            tag: None,
            hist: timed,
        }],
    )?;
    Ok(rel)
}

/// The loaders' own figures: how many, how many ramped before the go, how
/// far apart their windows opened, the source addresses they used, and the
/// longest connect phase.
fn record_loaders(cell: &mut Cell, reports: &[LoadReport], ramped: usize, expected: SystemTime) {
    let expected = expected
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let skew = reports
        .iter()
        .map(|r| (r.started_at_unix_s - expected).abs())
        .fold(0.0, f64::max);
    let mut sources: Vec<_> = reports
        .iter()
        .flat_map(|r| r.connections.sources.clone())
        .collect();
    sources.sort_unstable();
    sources.dedup();
    let connect = reports
        .iter()
        .map(|r| r.connections.connect_phase_s)
        .fold(0.0, f64::max);
    for (k, v) in [
        ("loaders", reports.len() as f64),
        ("loaders_ramped", ramped as f64),
        ("window_skew_ms", skew * 1e3),
        ("loader_sources", sources.len() as f64),
        ("connect_s", connect),
    ] {
        cell.extra.insert(k.into(), v);
    }
}

/// What the kernel held for the sockets at the window's close, beyond what it
/// held before the cell.
fn record_kernel(cell: &mut Cell, before: &Kernel, closed: &Closed) {
    let k = &closed.kernel;
    for (name, v) in [
        (
            "kernel_tcp_sockets",
            k.tcp_inuse.saturating_sub(before.tcp_inuse) as f64,
        ),
        (
            "kernel_tcp_buffer_bytes",
            (k.tcp_mem_pages.saturating_sub(before.tcp_mem_pages) * kernel::PAGE) as f64,
        ),
        (
            "kernel_slab_bytes",
            k.slab_bytes.saturating_sub(before.slab_bytes) as f64,
        ),
        ("pid_max", k.pid_max as f64),
        ("tasks", k.tasks as f64),
    ] {
        cell.extra.insert(name.into(), v);
    }
    cell.extra
        .insert("max_map_count".into(), closed.max_map_count as f64);
    if let Some(n) = closed.maps {
        cell.extra.insert("server_maps_max".into(), n as f64);
    }
    if let Some((fds, limit)) = closed.fds {
        cell.extra.insert("server_fds_max".into(), fds as f64);
        if let Some(l) = limit {
            cell.extra.insert("server_fds_limit".into(), l as f64);
        }
    }
}

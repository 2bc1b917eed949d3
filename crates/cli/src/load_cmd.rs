//! `socklab load`: drive a server with the load generator and print what it
//! measured; `socklab load merge`: add up interval logs from several hosts.
//!
//! This file only turns flags into a [`LoadConfig`] and results into files; the
//! work is in the `socklab-loadgen` library.

use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use socklab_loadgen::{self as lg, Framing, LoadConfig, Mode, Transport};

/// Cap on a `--requests` run when no `--duration` is given: long enough for a
/// server under valgrind, short enough that a dead server cannot hang a script.
const REQUESTS_RUN_CAP: Duration = Duration::from_secs(600);

/// Drive a server: closed loop, open loop at a fixed rate, connection churn, or UDP.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LoadArgs {
    #[command(subcommand)]
    pub action: Option<LoadAction>,

    /// Server address, HOST:PORT (e.g. 127.0.0.1:7788). A udp:// prefix means --udp.
    #[arg(required = true)]
    pub addr: Option<String>,

    /// The server speaks UDP (one datagram per request).
    #[arg(long)]
    pub udp: bool,

    /// Source address of every connection, e.g. 127.0.0.2 (its port is chosen at
    /// connect time, IP_BIND_ADDRESS_NO_PORT). One source address reaches one
    /// server port with at most its ~28,000 ephemeral ports; several generators
    /// on one machine each take their own (any 127.0.0.0/8 address works on lo).
    #[arg(long, value_name = "IP")]
    pub bind: Option<std::net::IpAddr>,

    /// closed: send, wait for the reply, repeat; open: fixed --rate, latency from
    /// the intended send time; churn: connect, one request, close. Default: open
    /// if --rate is given, else closed.
    #[arg(short, long)]
    pub mode: Option<Mode>,

    /// Open mode: total requests per second over all connections.
    #[arg(short, long)]
    pub rate: Option<f64>,

    /// Concurrent connections (UDP: sockets; churn: concurrent connect loops).
    #[arg(short, long, default_value_t = 10)]
    pub conns: usize,

    /// Event-loop threads [default: CPUs this process may run on].
    #[arg(short, long)]
    pub threads: Option<usize>,

    /// Measured time, after warmup [default: 10s; with --requests, a 600s cap].
    #[arg(short, long, value_parser = crate::args::duration)]
    pub duration: Option<Duration>,

    /// Time run first and left out of the results [default: 1s; 0 with --requests,
    /// so the server sees exactly N requests].
    #[arg(short, long, value_parser = crate::args::duration)]
    pub warmup: Option<Duration>,

    /// Measure exactly N requests (churn: connections) instead of a duration.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,

    /// Bytes per request; in lines framing size-1 printable bytes and '\n'.
    #[arg(short, long, default_value_t = 64)]
    pub size: usize,

    /// TCP framing; must match the server's.
    #[arg(long, default_value = "raw")]
    pub framing: Framing,

    /// Closed mode: requests outstanding per connection.
    #[arg(short, long, default_value_t = 1)]
    pub pipeline: usize,

    /// Give up on a request with no reply after this long (UDP: it is lost; default
    /// 2s). TCP default: never. A TCP timeout closes and reopens the connection and
    /// counts the request as timed out, so its wait leaves the latency and the
    /// client starts over: it models impatient users, it does not measure the
    /// server. Without one, a request still waiting at the end counts with its wait.
    #[arg(long, value_parser = crate::args::duration)]
    pub timeout: Option<Duration>,

    /// Longest the ramp may take: after connecting, traffic runs unmeasured until
    /// every connection has had a reply, then warm-up and measuring start. A
    /// server that never serves some clients ends it at this limit; 0: no ramp.
    #[arg(long, value_parser = crate::args::duration, default_value = "5s")]
    pub ramp_limit: Duration,

    /// A connect attempt taking longer than this counts as timed out.
    #[arg(long, value_parser = crate::args::duration, default_value = "3s")]
    pub connect_timeout: Duration,

    /// Connects in flight at once per thread (paces opening many connections).
    #[arg(long, default_value_t = 64)]
    pub max_connecting: usize,

    /// Churn: close with FIN instead of RST. The client then keeps every closed
    /// connection in TIME_WAIT for 60 s; long runs can exhaust ephemeral ports.
    #[arg(long)]
    pub fin_close: bool,

    /// Interval of the histograms in --hdr-log.
    #[arg(long, value_parser = crate::args::duration, default_value = "1s")]
    pub interval: Duration,

    /// Seed for the payload bytes.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Write the full report as JSON (schema "socklab-load/2").
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write latency histograms as an HdrHistogram interval log (mergeable with
    /// `socklab load merge`).
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,

    /// Exit non-zero on any error or wrong reply (default: only when no request
    /// got a correct reply).
    #[arg(long)]
    pub strict: bool,

    /// Print no progress bar.
    #[arg(long)]
    pub no_progress: bool,

    /// Print no results table (files are still written).
    #[arg(short, long)]
    pub quiet: bool,

    /// Let another process line this run up with others (`socklab compare`'s
    /// c100k cell runs several): when the ramp ends, print `socklab load: ramped
    /// ...` and keep sending unmeasured; start the warm-up at the instant a `go
    /// UNIX_NS` line on stdin names; after the window keep the connections open
    /// until a `release` line (or end of input). End of input before `go` stops
    /// the run.
    #[arg(long)]
    pub hold: bool,
}

#[derive(Debug, Subcommand)]
pub enum LoadAction {
    /// Add up HdrHistogram interval logs (e.g. from several load hosts) and print
    /// the merged percentiles.
    #[command(after_help = "Example: socklab load merge host1.hlog host2.hlog")]
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Interval logs written by `socklab load --hdr-log`.
    #[arg(required = true, value_name = "HLOG")]
    pub files: Vec<PathBuf>,
}

/// Runs `socklab load ...`.
pub fn run(args: LoadArgs) -> Result<()> {
    if let Some(LoadAction::Merge(m)) = args.action {
        return run_merge(m);
    }
    let cfg = config(&args)?;
    let bar = if args.no_progress || args.quiet {
        None
    } else {
        lg::TerminalProgress::if_interactive()
    };
    let on_progress = |p: lg::Progress| {
        if let Some(b) = &bar {
            b.update(&p);
        }
    };
    let hold = args.hold.then(|| Arc::new(lg::Hold::new()));
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(hold) = &hold {
        listen_for_commands(Arc::clone(hold), Arc::clone(&stop));
    }
    let on_ramped = |r: lg::Ramp| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", crate::hold::ramped_line(&r));
        let _ = out.flush();
    };
    let result = lg::run(
        &cfg,
        lg::Hooks {
            progress: Some(&on_progress),
            ramped: hold.is_some().then_some(&on_ramped as &dyn Fn(lg::Ramp)),
            hold: hold.as_ref(),
            stop: Some(&stop),
            ..Default::default()
        },
    );
    if let Some(b) = &bar {
        b.finish();
    }
    let report = result.with_context(|| format!("load test against {}", cfg.target))?;

    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json() + "\n")
            .with_context(|| format!("writing JSON report {}", path.display()))?;
    }
    if let Some(path) = &args.hdr_log {
        write_hdr_log(&report, path)
            .with_context(|| format!("writing interval log {}", path.display()))?;
    }
    if !args.quiet {
        print!("{report}");
    }
    verdict(&report, args.strict)
}

/// Reads the holder's commands from stdin on a thread of its own (see
/// [`crate::hold`]): `go` and `release` go to `hold`; end of input before `go`
/// sets `stop` (the holder is gone), after it releases.
fn listen_for_commands(hold: Arc<lg::Hold>, stop: Arc<AtomicBool>) {
    use crate::hold::{instant_of, Command};
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match Command::parse(&line) {
                Ok(Command::Go(at)) => hold.go(instant_of(at)),
                Ok(Command::Release) => hold.release(),
                Err(e) => eprintln!("socklab load --hold: {e}"),
            }
        }
        if !hold.gone() {
            stop.store(true, Ordering::SeqCst);
        }
        hold.release();
    });
}

/// Runs `socklab load merge a.hlog b.hlog ...`.
pub fn run_merge(args: MergeArgs) -> Result<()> {
    let merged = lg::merge_files(&args.files).context("merging interval logs")?;
    print!("{merged}");
    Ok(())
}

fn write_hdr_log(report: &lg::LoadReport, path: &PathBuf) -> std::io::Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    report.write_hdr_log(&mut w)?;
    w.flush()
}

/// The exit status: failure when nothing worked (or, with --strict, when anything
/// failed), so scripts notice a dead or broken server.
fn verdict(r: &lg::LoadReport, strict: bool) -> Result<()> {
    let target = r.config.target;
    if r.counts.ok == 0 {
        let first = r
            .errors
            .messages
            .first()
            .map_or(String::new(), |m| format!("; first error: {m}"));
        bail!(
            "no correct reply from {target} ({} errors, {} wrong replies){first}",
            r.errors.total(),
            r.counts.mismatched
        );
    }
    // A healthy server never refuses, resets or closes on a client mid-run: a run
    // that saw any of these lost its server (or part of it), even if some replies
    // came back first. --strict also fails on timeouts and wrong replies.
    let e = &r.errors;
    let lost_server = e.refused + e.reset + e.closed + e.connect_timeouts;
    if lost_server > 0 {
        bail!(
            "the server at {target} went away during the run: {} refused, {} reset, {} closed, \
             {} connect timeouts ({} correct replies before that)",
            e.refused,
            e.reset,
            e.closed,
            e.connect_timeouts,
            r.counts.ok
        );
    }
    if strict && (r.errors.total() > 0 || r.counts.mismatched > 0) {
        bail!(
            "{} errors and {} wrong replies from {target} (--strict)",
            r.errors.total(),
            r.counts.mismatched
        );
    }
    Ok(())
}

/// Resolves `HOST:PORT` (IPv4 preferred: servers default to 127.0.0.1, and
/// `localhost` often resolves to ::1 first). Returns the address and whether a
/// `udp://` prefix was given.
fn resolve(addr: &str) -> Result<(SocketAddr, bool)> {
    let (rest, udp) = match addr.split_once("://") {
        Some(("udp", rest)) => (rest, true),
        Some(("tcp", rest)) => (rest, false),
        Some((scheme, _)) => bail!("unknown scheme {scheme:?} in {addr:?} (use tcp:// or udp://)"),
        None => (addr, false),
    };
    let addrs: Vec<SocketAddr> = rest
        .to_socket_addrs()
        .with_context(|| format!("{addr:?} is not a HOST:PORT address"))?
        .collect();
    let pick = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .with_context(|| format!("{addr:?} resolves to no address"))?;
    Ok((pick, udp))
}

fn config(a: &LoadArgs) -> Result<LoadConfig> {
    let addr = a.addr.as_deref().context("missing server address")?;
    let (target, udp_scheme) = resolve(addr)?;
    let mode = match (a.mode, a.rate) {
        (Some(m), _) => m,
        (None, Some(_)) => Mode::Open,
        (None, None) => Mode::Closed,
    };
    let defaults = LoadConfig::default();
    let counted = a.requests.is_some();
    let cfg = LoadConfig {
        target,
        bind: a.bind,
        transport: if a.udp || udp_scheme {
            Transport::Udp
        } else {
            Transport::Tcp
        },
        mode,
        framing: a.framing,
        conns: a.conns,
        threads: a.threads.unwrap_or(0),
        size: a.size,
        rate: a.rate,
        pipeline: a.pipeline,
        duration: a.duration.unwrap_or(if counted {
            REQUESTS_RUN_CAP
        } else {
            defaults.duration
        }),
        warmup: a.warmup.unwrap_or(if counted {
            Duration::ZERO
        } else {
            defaults.warmup
        }),
        requests: a.requests,
        ramp_limit: a.ramp_limit,
        timeout: a.timeout,
        connect_timeout: a.connect_timeout,
        max_connecting: a.max_connecting,
        linger_zero: !a.fin_close,
        interval: a.interval,
        seed: a.seed.unwrap_or(defaults.seed),
    };
    if a.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    // Check now, so misuse is reported before anything runs.
    cfg.validate()?;
    Ok(cfg)
}

//! `socklab soak MODEL`: one server, a long mix of clients, and whether anything it
//! holds grows.
//!
//! Every test elsewhere runs for seconds; a server that leaks one descriptor per
//! thousand connections, or a few bytes per request, passes them all. The soak runs
//! rounds of clients against one server for minutes — persistent closed-loop
//! clients, connection churn, slow clients that dribble a line a byte at a time,
//! and clients that reset their connection halfway through a request ([`mix`]) —
//! and after each round, once its clients have gone, reads the server's tree at
//! rest: processes, threads, open descriptors, resident memory. A healthy server
//! rests at the same level every time; a leak climbs. The verdict is the report
//! crate's [`socklab_report::soak`]: a line through the resting samples that rises
//! by more than three times their scatter (and more than a floor) is a leak, and
//! `socklab soak` exits 1.
//!
//! `--attach PID --tcp ADDR` soaks a server started some other way (it must speak
//! the `lines` framing); the tests use it on a server that leaks on purpose.

mod mix;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use socklab_report::soak::{Series, Soak};

use crate::compare::interrupt;
use crate::compare::matrix::MODELS;
use crate::compare::server::{Launch, RunningServer};
use crate::compare::tree::{self, Resources};

/// The smallest rise over a soak that can count as growth, per resource: a few
/// descriptors or threads (a cache that fills once), 4 MiB of memory (an allocator
/// arena).
const FLOOR_COUNT: f64 = 3.0;
const FLOOR_BYTES: f64 = 4.0 * 1024.0 * 1024.0;
/// How long after a round the server gets to close and reap before it is read.
const SETTLE: Duration = Duration::from_millis(300);
/// A round of clients, when compare runs the soak.
pub const ROUND: Duration = Duration::from_secs(3);

/// Run one server under a long mix of clients and report whether its descriptors,
/// memory, threads or processes grow.
#[derive(Args)]
pub struct SoakArgs {
    /// The model to soak (a name from `socklab compare --models`, e.g. thread,
    /// pool, prefork-passfd). Not with --attach.
    #[arg(required_unless_present = "attach", conflicts_with = "attach")]
    model: Option<String>,
    /// How long to soak (e.g. 90s, 3m).
    #[arg(long, value_parser = crate::args::duration, default_value = "3m")]
    duration: Duration,
    /// Length of one round of clients; the server is read at rest after each.
    #[arg(long, value_parser = crate::args::duration, default_value = "3s")]
    round: Duration,
    /// Soak a server already running as PID (its whole process tree is read),
    /// listening at --tcp in lines framing.
    #[arg(long, requires = "tcp", value_name = "PID")]
    attach: Option<i32>,
    /// The attached server's address.
    #[arg(long, value_parser = crate::args::address, requires = "attach")]
    tcp: Option<SocketAddr>,
    /// Write the result as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

pub fn run(args: SoakArgs) -> anyhow::Result<bool> {
    if args.round < Duration::from_millis(500) {
        bail!("--round must be at least 500ms: each round opens, uses and closes its clients");
    }
    if args.duration < args.round * 6 {
        bail!(
            "--duration must hold at least 6 rounds of --round {:?} to tell a trend from noise",
            args.round
        );
    }
    interrupt::install().context("installing the SIGINT/SIGTERM handler")?;
    let (name, target) = match (&args.model, args.attach, args.tcp) {
        (Some(model), _, _) => {
            let spec = MODELS.iter().find(|m| m.name == model).with_context(|| {
                let known: Vec<_> = MODELS.iter().map(|m| m.name).collect();
                format!("unknown model {model:?}; known: {}", known.join(", "))
            })?;
            let mut serve_args = crate::compare::matrix::serve_args(spec);
            serve_args.extend(["--framing".into(), "lines".into()]);
            (model.clone(), Target::Started(start(serve_args)?))
        }
        (None, Some(pid), Some(addr)) => (format!("pid {pid}"), Target::Attached { pid, addr }),
        _ => bail!("give a model, or --attach PID --tcp ADDR"),
    };
    let soak = soak(&name, &target, args.duration, args.round)?;
    if let Target::Started(server) = target {
        let _ = server.stop();
    }
    print(&soak);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&soak)? + "\n";
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(!soak.leaks())
}

/// The server being soaked.
pub enum Target {
    Started(RunningServer),
    Attached { pid: i32, addr: SocketAddr },
}

impl Target {
    fn pid(&self) -> i32 {
        match self {
            Target::Started(s) => s.pid,
            Target::Attached { pid, .. } => *pid,
        }
    }

    fn addr(&self) -> anyhow::Result<SocketAddr> {
        match self {
            Target::Started(s) => s.tcp.context("the server has no TCP address"),
            Target::Attached { addr, .. } => Ok(*addr),
        }
    }

    fn alive(&self) -> bool {
        std::fs::metadata(format!("/proc/{}", self.pid())).is_ok()
    }
}

/// Starts `socklab serve ARGS` for a soak, its stderr kept in a temporary file.
pub fn start(serve_args: Vec<String>) -> anyhow::Result<RunningServer> {
    let stderr = std::env::temp_dir().join(format!("socklab-soak-{}.stderr", std::process::id()));
    Launch {
        serve_args,
        udp: false,
        cpus: Vec::new(),
        wrapper: Vec::new(),
        stderr,
    }
    .start()
}

/// Rounds of clients until `duration` has passed, the server read at rest after
/// each; then the verdict.
pub fn soak(
    name: &str,
    target: &Target,
    duration: Duration,
    round: Duration,
) -> anyhow::Result<Soak> {
    let addr = target.addr()?;
    let began = Instant::now();
    let mut rest: Vec<Resources> = Vec::new();
    let mut peak = Resources::default();
    let (mut connections, mut requests) = (0, 0);
    let mut notes = Vec::new();
    while began.elapsed() + round <= duration && !interrupt::requested() {
        let during = mix::round(addr, round, || {
            let now = tree::resources(target.pid());
            peak = Resources {
                processes: peak.processes.max(now.processes),
                threads: peak.threads.max(now.threads),
                fds: peak.fds.max(now.fds),
                rss_bytes: peak.rss_bytes.max(now.rss_bytes),
            };
        });
        connections += during.connections;
        requests += during.requests;
        std::thread::sleep(SETTLE);
        if !target.alive() {
            notes.push(format!("the server died in round {}", rest.len() + 1));
            break;
        }
        rest.push(tree::resources(target.pid()));
        eprintln!(
            "soak {name}: round {:>3}  {:>6} connections  {:>8} requests  at rest: {} fds, {} threads, {} processes, {:.1} MiB",
            rest.len(),
            during.connections,
            during.requests,
            rest.last().map_or(0, |r| r.fds),
            rest.last().map_or(0, |r| r.threads),
            rest.last().map_or(0, |r| r.processes),
            rest.last().map_or(0, |r| r.rss_bytes) as f64 / (1024.0 * 1024.0)
        );
    }
    if interrupt::requested() {
        notes.push("interrupted (SIGINT or SIGTERM)".into());
    }
    let round_s = began.elapsed().as_secs_f64() / rest.len().max(1) as f64;
    let series = |name: &str, unit: &str, floor: f64, f: fn(&Resources) -> u64| {
        let values = rest.iter().map(|r| f(r) as f64).collect();
        Series::judge(name, unit, values, f(&peak) as f64, round_s, floor)
    };
    let soak = Soak {
        model: name.to_string(),
        seconds: began.elapsed().as_secs_f64(),
        rounds: rest.len(),
        connections,
        requests,
        series: vec![
            series("fds", "count", FLOOR_COUNT, |r| r.fds),
            series("rss", "bytes", FLOOR_BYTES, |r| r.rss_bytes),
            series("threads", "count", FLOOR_COUNT, |r| r.threads),
            series("processes", "count", FLOOR_COUNT, |r| r.processes),
        ],
        notes,
    };
    Ok(soak)
}

fn print(soak: &Soak) {
    println!(
        "socklab soak {}: {:.0} s, {} rounds, {} connections, {} requests",
        soak.model, soak.seconds, soak.rounds, soak.connections, soak.requests
    );
    println!(
        "{:<10}{:>14}{:>14}{:>14}{:>16}{:>14}  verdict",
        "resource", "first", "last", "peak", "slope / min", "noise"
    );
    for s in &soak.series {
        let show = |v: f64| {
            if s.unit == "bytes" {
                format!("{:.1} MiB", v / (1024.0 * 1024.0))
            } else {
                format!("{v:.0}")
            }
        };
        println!(
            "{:<10}{:>14}{:>14}{:>14}{:>16}{:>14}  {}",
            s.name,
            show(s.values.first().copied().unwrap_or(0.0)),
            show(s.values.last().copied().unwrap_or(0.0)),
            show(s.peak),
            show(s.per_minute),
            show(s.noise),
            if s.grows { "GROWS" } else { "steady" }
        );
    }
    for n in &soak.notes {
        println!("note: {n}");
    }
    if soak.leaks() {
        println!(
            "LEAK: a resource grew by more than {NOISE}× its noise over the soak",
            NOISE = socklab_report::soak::NOISE_FACTOR
        );
    }
}

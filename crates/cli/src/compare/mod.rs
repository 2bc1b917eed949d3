//! `socklab compare`: run every model through every scenario and write a report.
//!
//! # Layout
//!
//! - [`matrix`]: the models, scenarios, plan sizes, and the interleaved cell order.
//! - [`server`]: one pinned `socklab serve` child per cell, stopped cleanly.
//! - [`tree`]: the server's process tree from /proc (processes, threads, RSS, PSS).
//! - [`cell`]: one timed cell: server, sampler, load generator, scenario specifics.
//! - [`counted`] and [`strace`]: the counted pass (syscalls, context switches,
//!   instructions per request).
//! - [`floor`]: the loopback floor, measured with sockperf when it is installed.
//! - [`interrupt`]: Ctrl-C and SIGTERM stop the run and keep what it measured;
//!   `--resume DIR` finishes it.
//! - [`machine`]: the machine the numbers came from.
//!
//! The server runs pinned to one CPU and this process (the load generator) to
//! the others, so the two never compete for a core; with one CPU nothing is pinned
//! and the report says so.

mod c100k;
mod cell;
mod counted;
mod curve;
mod floor;
pub(crate) mod interrupt;
mod machine;
pub(crate) mod matrix;
pub(crate) mod server;
mod strace;
mod time;
pub(crate) mod tree;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::Args;
use socklab_report::schema::{Results, RunInfo, SCHEMA};

pub use interrupt::EXIT_INTERRUPTED;
use matrix::{Plan, Scenario};

#[derive(Args)]
pub struct CompareArgs {
    /// Everything: 10,000 connections, longer cells, five repeats, callgrind.
    #[arg(long)]
    full: bool,
    /// Only these models (comma-separated), e.g. thread,nonblocking. Variants not run by
    /// default: async-current-thread, prefork-flock, prefork-passfd, pool-accept.
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Only these scenarios (comma-separated): scaling, curve, churn, cpu, sleep, slow, chaos,
    /// udp, c100k (in --full, or when named here).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Timed repeats per cell (default: 3 quick, 5 full).
    #[arg(long)]
    repeats: Option<usize>,
    /// Seconds per timed cell, after warm-up (e.g. 500ms, 3s).
    #[arg(long, value_parser = crate::args::duration)]
    cell: Option<std::time::Duration>,
    /// Connection counts for the scaling scenario (comma-separated).
    #[arg(long, value_delimiter = ',')]
    conns: Vec<usize>,
    /// Skip the counted pass (strace, context switches, callgrind).
    #[arg(long)]
    no_counted: bool,
    /// Connection counts for the counted pass (comma-separated; default 1,100).
    #[arg(long, value_delimiter = ',')]
    counted_conns: Vec<usize>,
    /// Server CPU counts for the scenarios that span CPUs (cpu, curve), e.g.
    /// 1,2,4,8: the server is pinned to that many CPUs and the load generator to
    /// the rest (on 2 CPUs the default, 1,2, shares the second). Other scenarios
    /// always pin the server to one.
    #[arg(long, value_delimiter = ',')]
    server_cpus: Vec<usize>,
    /// Run only the counted pass, no timed cells.
    #[arg(long, conflicts_with = "no_counted")]
    counted_only: bool,
    /// Count user-space instructions per request with callgrind (on in --full).
    #[arg(long)]
    callgrind: bool,
    /// c100k: connections to open (default 100,000), from loader processes of at
    /// most 18,000 each, each from its own 127.0.0.x source address.
    #[arg(long, value_name = "N")]
    c100k_conns: Option<usize>,
    /// c100k: requests per second over all connections (default 10,000: each client
    /// sends once every conns ÷ rate seconds).
    #[arg(long, value_name = "REQ_PER_S")]
    c100k_rate: Option<f64>,
    /// c100k: loader processes (default: as few as hold the connections).
    #[arg(long, value_name = "K")]
    c100k_loaders: Option<usize>,
    /// Output directory (default: results/<date>-<host>, and results/latest points
    /// at it; an explicit --out leaves results/latest alone).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Finish an interrupted run in DIR: the same arguments again, skipping the
    /// cells it has (results.json says which).
    #[arg(long, value_name = "DIR", exclusive = true)]
    resume: Option<PathBuf>,
}

/// What `run` ended with: every cell done, or stopped by a signal.
pub enum Outcome {
    Complete,
    Interrupted,
}

pub fn run(args: CompareArgs) -> anyhow::Result<Outcome> {
    interrupt::install().context("installing the SIGINT/SIGTERM handler")?;
    let (args, mut results) = match &args.resume {
        Some(dir) => resume(dir)?,
        None => (args, None),
    };
    let plan = plan(&args)?;
    let models = select_models(&args.models)?;
    let scenarios = select_scenarios(&args.scenarios, args.full)?;
    if scenarios.contains(&Scenario::C100k) {
        // Refused now, not a minute into the run.
        c100k::loader_count(plan.c100k.conns, plan.c100k.loaders)?;
    }
    let machine = machine::describe();
    let dir = match (&args.out, &results) {
        (Some(dir), _) => dir.clone(),
        (None, _) => {
            Path::new("results").join(format!("{}-{}", time::utc_date(), machine.hostname))
        }
    };
    for sub in ["", "hdr", "logs", "charts"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let cpus = server::allowed_cpus();
    let (server_cpu, loadgen_cpus) = match matrix::placement(&cpus, 1) {
        Some((server, loadgen)) => {
            server::pin_to(&loadgen).context("pinning the load generator")?;
            (Some(server[0]), Some(loadgen))
        }
        None => {
            eprintln!(
                "socklab compare: one CPU only; server and load generator share it (not pinned)"
            );
            (None, None)
        }
    };
    if let Some(&k) = plan.server_cpus.iter().find(|&&k| k > cpus.len()) {
        bail!(
            "--server-cpus {k}: this process may use {} CPU{} ({cpus:?})",
            cpus.len(),
            if cpus.len() == 1 { "" } else { "s" }
        );
    }
    let (jobs, curves) = if args.counted_only {
        (Vec::new(), Vec::new())
    } else {
        (
            matrix::jobs(&plan, &models, &scenarios),
            curve::curves(&plan, &models, &scenarios),
        )
    };
    let results = results.get_or_insert_with(|| Results {
        schema: SCHEMA.into(),
        machine,
        run: RunInfo {
            command: std::env::var("SOCKLAB_COMMAND")
                .unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" ")),
            mode: plan.mode.into(),
            started: time::utc_now(),
            finished: String::new(),
            server_cpu,
            loadgen_cpus,
            repeats: plan.repeats,
            cell_seconds: plan.cell.as_secs_f64(),
            warmup_seconds: plan.warmup.as_secs_f64(),
            message_bytes: cell::MESSAGE_BYTES,
            planned_cells: jobs.len(),
            interrupted: false,
            args: compare_args(),
            tools: machine::tools(plan.callgrind),
        },
        cells: Vec::new(),
        counted: Vec::new(),
        floor: None,
        soak: Vec::new(),
    });
    results.run.interrupted = false;
    // Interrupted cells are run again.
    results
        .cells
        .retain(|c| c.status != socklab_report::schema::STATUS_INTERRUPTED);
    raise_fd_limit();
    if results.floor.is_none() {
        match floor::measure(server_cpu, cell::MESSAGE_BYTES) {
            Ok(Some(f)) => {
                eprintln!(
                    "floor: sockperf round trip p50 {:.1} µs, p99 {:.1} µs",
                    f.p50_round_trip_us, f.p99_round_trip_us
                );
                results.floor = Some(f);
            }
            Ok(None) => {
                eprintln!(
                    "floor: sockperf not installed (apt-get install sockperf); no loopback floor"
                )
            }
            Err(e) => eprintln!("floor: {e:#}"),
        }
    }
    let bench = cell::Bench {
        plan: &plan,
        cpus: cpus.clone(),
        dir: &dir,
    };
    let started = Instant::now();
    for (i, job) in jobs.iter().enumerate() {
        if interrupt::requested() {
            break;
        }
        if results.cells.iter().any(|c| job.is(c)) {
            continue;
        }
        let cell = bench.run(job);
        eprintln!(
            "[{:>3}/{}] {:>6.1}s  {}",
            i + 1,
            jobs.len(),
            started.elapsed().as_secs_f64(),
            describe(&cell)
        );
        results.cells.push(cell);
        // After every cell: a killed run keeps what it measured.
        socklab_report::write_results(results, &dir)?;
    }
    for c in &curves {
        let have = results.cells.clone();
        c.run(&bench, &have, |cell| {
            eprintln!(
                "[curve] {:>6.1}s  {}",
                started.elapsed().as_secs_f64(),
                describe(&cell)
            );
            results.cells.push(cell);
            if let Err(e) = socklab_report::write_results(results, &dir) {
                eprintln!("socklab compare: {e}");
            }
        });
    }
    if !jobs.is_empty() || !curves.is_empty() {
        // Cells on more CPUs moved the load generator; the rest run as at the start.
        if let Some(loadgen) = &results.run.loadgen_cpus {
            server::pin_to(loadgen).context("pinning the load generator")?;
        }
    }
    if !args.no_counted {
        let pass = counted::CountedPass {
            plan: &plan,
            server_cpu,
            dir: &dir,
        };
        'counted: for &conns in &plan.counted_conns {
            for model in &models {
                if interrupt::requested() {
                    break 'counted;
                }
                let done =
                    |c: &socklab_report::schema::Counted| c.model == model.name && c.conns == conns;
                if results.counted.iter().any(done) {
                    continue;
                }
                let counted = pass.run(model, conns);
                if interrupt::requested() {
                    break 'counted;
                }
                eprintln!(
                    "counted {:<12} {conns:>5} conns  {}",
                    model.name,
                    describe_counted(&counted)
                );
                results.counted.push(counted);
                socklab_report::write_results(results, &dir)?;
            }
        }
    }
    if !plan.soak.is_zero() && !args.counted_only {
        for model in &models {
            if interrupt::requested() {
                break;
            }
            if results.soak.iter().any(|s| s.model == model.name) {
                continue;
            }
            match soak_model(model, plan.soak) {
                Ok(soak) => {
                    eprintln!(
                        "soak {:<12} {} rounds, {} connections: {}",
                        model.name,
                        soak.rounds,
                        soak.connections,
                        if soak.leaks() { "GROWS" } else { "steady" }
                    );
                    results.soak.push(soak);
                    socklab_report::write_results(results, &dir)?;
                }
                Err(e) => eprintln!("soak {}: {e:#}", model.name),
            }
        }
    }
    let interrupted = interrupt::requested();
    results.run.interrupted = interrupted;
    results.run.finished = time::utc_now();
    socklab_report::write_results(results, &dir)?;
    socklab_report::write_all(results, &dir)?;
    if args.out.is_none() {
        // An explicit --out is a run kept apart (a benchmark, a test); `latest`
        // follows the default-named runs.
        update_latest(&dir);
    }
    println!("{}", dir.join("report.md").display());
    if interrupted {
        let done = results
            .cells
            .iter()
            .filter(|c| c.status != socklab_report::schema::STATUS_INTERRUPTED)
            .count();
        eprintln!(
            "socklab compare: interrupted after {done} of {} cells; the report covers them. \
             Finish the run with: socklab compare --resume {}",
            jobs.len(),
            dir.display()
        );
        return Ok(Outcome::Interrupted);
    }
    Ok(Outcome::Complete)
}

/// Soaks one model (`socklab soak`'s mix, 3 s rounds) for `length`.
fn soak_model(
    model: &matrix::ModelRun,
    length: std::time::Duration,
) -> anyhow::Result<socklab_report::soak::Soak> {
    let mut serve_args = matrix::serve_args(model);
    serve_args.extend(["--framing".into(), "lines".into()]);
    let target = crate::soak::Target::Started(crate::soak::start(serve_args)?);
    let soak = crate::soak::soak(model.name, &target, length, crate::soak::ROUND);
    if let crate::soak::Target::Started(server) = target {
        let _ = server.stop();
    }
    soak
}

/// The arguments after `compare` on this command line (what `--resume` repeats).
fn compare_args() -> Vec<String> {
    std::env::args()
        .skip_while(|a| a != "compare")
        .skip(1)
        .collect()
}

/// `--resume DIR`: the arguments the run was started with, and what it measured.
fn resume(dir: &Path) -> anyhow::Result<(CompareArgs, Option<Results>)> {
    let results = socklab_report::load(dir)
        .with_context(|| format!("--resume {}: not a run directory", dir.display()))?;
    #[derive(clap::Parser)]
    struct Again {
        #[command(flatten)]
        args: CompareArgs,
    }
    let argv = std::iter::once("compare".to_string()).chain(results.run.args.iter().cloned());
    let mut again = <Again as clap::Parser>::try_parse_from(argv)
        .with_context(|| {
            format!(
                "--resume {}: its recorded arguments no longer parse",
                dir.display()
            )
        })?
        .args;
    again.out = Some(dir.to_path_buf());
    eprintln!(
        "socklab compare: resuming {} ({} cells measured): compare {}",
        dir.display(),
        results.cells.len(),
        results.run.args.join(" ")
    );
    Ok((again, Some(results)))
}

fn plan(args: &CompareArgs) -> anyhow::Result<Plan> {
    let mut plan = if args.full {
        Plan::full()
    } else {
        Plan::quick()
    };
    if let Some(r) = args.repeats {
        if r == 0 {
            bail!("--repeats must be at least 1");
        }
        plan.repeats = r;
    }
    if let Some(c) = args.cell {
        plan.cell = c;
    }
    plan.callgrind |= args.callgrind;
    if !args.counted_conns.is_empty() {
        if args.counted_conns.contains(&0) {
            bail!("--counted-conns values must be at least 1");
        }
        plan.counted_conns = args.counted_conns.clone();
    }
    if !args.conns.is_empty() {
        if args.conns.contains(&0) {
            bail!("--conns values must be at least 1");
        }
        plan.scaling_conns = args.conns.clone();
    }
    if !args.server_cpus.is_empty() {
        if args.server_cpus.contains(&0) {
            bail!("--server-cpus values must be at least 1");
        }
        plan.server_cpus = args.server_cpus.clone();
    }
    if let Some(n) = args.c100k_conns {
        if n == 0 {
            bail!("--c100k-conns must be at least 1");
        }
        plan.c100k.conns = n;
    }
    if let Some(r) = args.c100k_rate {
        if !(r.is_finite() && r > 0.0) {
            bail!("--c100k-rate must be a positive number of requests per second, got {r}");
        }
        plan.c100k.rate = r;
    }
    plan.c100k.loaders = args.c100k_loaders;
    Ok(plan)
}

fn select_models(names: &[String]) -> anyhow::Result<Vec<&'static matrix::ModelRun>> {
    if names.is_empty() {
        return Ok(matrix::MODELS.iter().filter(|m| m.default).collect());
    }
    names
        .iter()
        .map(|n| {
            matrix::MODELS
                .iter()
                .find(|m| m.name == n)
                .with_context(|| {
                    let known: Vec<_> = matrix::MODELS.iter().map(|m| m.name).collect();
                    format!("unknown model {n:?}; known: {}", known.join(", "))
                })
        })
        .collect()
}

/// The scenarios named, or by default every one (the full-only ones in full mode).
fn select_scenarios(names: &[String], full: bool) -> anyhow::Result<Vec<Scenario>> {
    if names.is_empty() {
        return Ok(matrix::ALL_SCENARIOS
            .iter()
            .copied()
            .filter(|s| full || !s.full_only())
            .collect());
    }
    names
        .iter()
        .map(|n| {
            Scenario::parse(n).with_context(|| {
                let known: Vec<_> = matrix::ALL_SCENARIOS.iter().map(|s| s.name()).collect();
                format!("unknown scenario {n:?}; known: {}", known.join(", "))
            })
        })
        .collect()
}

/// 10,000 connections need 10,000 descriptors on each side: raise the soft limit
/// to the hard one (children inherit it). The load generator checks again.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn describe(cell: &socklab_report::schema::Cell) -> String {
    let mut name = format!("{} {} {} conns", cell.model, cell.scenario, cell.conns);
    if cell.server_cpus != 1 {
        name += &format!(" {} cpus", cell.server_cpus);
    }
    if let Some(rate) = cell.offered_rps {
        name += &format!(" at {rate:.0}/s");
    }
    name += &format!(" r{}", cell.repeat);
    match (&cell.load, &cell.error) {
        (_, Some(e)) if cell.status == socklab_report::schema::STATUS_INTERRUPTED => {
            format!("{name}: {e}")
        }
        (_, Some(e)) => format!("{name}: FAILED: {e}"),
        (Some(l), None) => {
            let served = l.clients.map_or(String::new(), |c| {
                format!(", served {}/{}", c.served, c.conns)
            });
            let ramp = l.ramp.map_or(String::new(), |r| {
                let how = match (r.complete, r.stalled) {
                    (true, _) => "",
                    (false, true) => " (stalled)",
                    (false, false) => " (limit)",
                };
                format!(", ramp {:.2}s{how}", r.length_s)
            });
            format!(
                "{name}: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs{served}{ramp}, errors {}",
                l.throughput_rps, l.latency_us.p50, l.latency_us.p99, l.errors.clients
            )
        }
        (None, None) => name,
    }
}

fn describe_counted(c: &socklab_report::schema::Counted) -> String {
    let per = |n: Option<u64>| {
        n.map_or("-".into(), |n| {
            format!("{:.2}", n as f64 / c.requests as f64)
        })
    };
    format!(
        "syscalls/req {} · voluntary ctx/req {} · notes: {}",
        c.syscalls_per_request()
            .map_or("-".into(), |s| format!("{s:.2}")),
        per(c.voluntary_ctx),
        if c.notes.is_empty() {
            "none".into()
        } else {
            c.notes.join("; ")
        }
    )
}

/// Points `results/latest` at this run (best effort: a report is still written).
fn update_latest(dir: &Path) {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return;
    };
    let link = parent.join("latest");
    let _ = std::fs::remove_file(&link);
    if let Err(e) = std::os::unix::fs::symlink(name, &link) {
        eprintln!("socklab compare: could not update {}: {e}", link.display());
    }
}

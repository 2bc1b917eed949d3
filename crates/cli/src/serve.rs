//! `socklab serve <model>`: bind, print the addresses, serve until a signal.
//!
//! The supervising main thread waits for SIGINT/SIGTERM while the model runs on
//! its own thread(s) — one for TCP, one for UDP. After the signal the model stops
//! accepting and gets the grace period to finish connections in flight; if it has
//! not returned by then (a blocking model stuck in `read()` on a client that never
//! leaves), the process exits anyway: the grace period is a promise.
//!
//! SIGUSR1 asks for a usage line on stdout, at once (as `dd` prints its progress
//! on SIGUSR1): `socklab: thread usage user_us=… system_us=… voluntary_ctx=…
//! involuntary_ctx=… accepted=… active=… requests=… …`, CPU time and context
//! switches of this process (every thread, live or exited) and of its reaped
//! children, and the server's counters. `socklab compare` sends it as the measured
//! window opens and closes, and adds the live children it reads from /proc, so a
//! cell's server usage covers exactly the window.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use socklab_protocol::{Framing, Limits, Work};
use socklab_server_kit::loops::{self, loop_count};
use socklab_server_kit::usage::TreeUsage;
use socklab_server_kit::{bind_tcp, bind_udp, BindOptions, Config, Context};

use crate::args;

/// The port the tutorial's TCP server listens on.
const DEFAULT_TCP: &str = "127.0.0.1:7788";

/// Extra time, past the grace period, for the model to return before we exit anyway.
const RETURN_MARGIN: Duration = Duration::from_secs(1);

#[derive(Args)]
pub struct ServeArgs {
    #[command(subcommand)]
    model: ServeModel,
}

/// The server models. `socklab serve <model> --help` shows each one's options.
#[derive(Subcommand)]
enum ServeModel {
    /// One client at a time in one thread (the natural UDP server).
    #[command(after_help = "Example: socklab serve iterative --udp 127.0.0.1:7789")]
    Iterative(Common),
    /// fork() a process per client; children reaped and capped. TCP only.
    #[command(after_help = "Example: socklab serve fork --max-conns 500")]
    Fork(Common),
    /// One OS thread per client, capped. TCP only.
    #[command(after_help = "Example: socklab serve thread --framing lines --idle-timeout 30s")]
    Thread(Common),
    /// N processes forked up front, all serving from one listener (Stevens serv02-05).
    #[command(after_help = "Example: socklab serve prefork --workers 4 --mode passfd")]
    Prefork {
        #[command(flatten)]
        common: Common,
        /// Worker processes forked at start (default: CPUs this server may run on).
        #[arg(long, default_value_t = socklab_prefork::default_workers())]
        workers: usize,
        /// nolock: every child blocks in accept(); flock: a file lock around accept();
        /// passfd: the parent accepts and passes the descriptor over SCM_RIGHTS.
        #[arg(long, default_value = "nolock", value_parser = prefork_mode)]
        mode: socklab_prefork::PreforkMode,
    },
    /// A fixed pool of worker threads (the main thread accepts, or every worker does).
    #[command(after_help = "Example: socklab serve pool --workers 8 --dispatch accept")]
    Pool {
        #[command(flatten)]
        common: Common,
        /// Worker threads created at start (default: CPUs this server may run on).
        #[arg(long, default_value_t = socklab_pool::default_workers())]
        workers: usize,
        /// queue: the main thread accepts and hands connections over a bounded channel;
        /// accept: every worker calls accept() itself.
        #[arg(long, default_value = "queue", value_parser = pool_dispatch)]
        dispatch: socklab_pool::Dispatch,
    },
    /// A single-threaded readiness loop over epoll (mio); --loops N for N loops.
    #[command(after_help = "Example: socklab serve nonblocking --loops 2")]
    Nonblocking {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        loops: Loops,
    },
    /// N processes, each running one epoll loop on the listener they inherit (nginx's design).
    #[command(after_help = "Example: socklab serve workers --workers 4")]
    Workers {
        #[command(flatten)]
        common: Common,
        /// Worker processes forked at start, one event loop each (default: CPUs this
        /// server may run on). Each serves its share of --max-conns.
        #[arg(long, default_value_t = socklab_workers::default_workers())]
        workers: usize,
    },
    /// tokio tasks, one per connection: the model most Rust programs would pick today.
    #[command(after_help = "Example: socklab serve async --runtime current-thread")]
    Async {
        #[command(flatten)]
        common: Common,
        /// multi-thread (one worker per CPU, work-stealing) or current-thread (one thread).
        #[arg(long, default_value = "multi-thread")]
        runtime: socklab_async::Runtime,
    },
    /// A completion loop over io_uring: the kernel does the I/O and reports completions.
    #[command(after_help = "Example: socklab serve uring --work sleep:2ms")]
    Uring {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        loops: Loops,
    },
}

/// `--loops`, shared by the event-loop models.
#[derive(Args, Clone, Copy)]
struct Loops {
    /// Independent event loops, one thread each, each with its own SO_REUSEPORT
    /// listener on the same port (the thread-per-core shape).
    #[arg(long, default_value_t = 1)]
    loops: usize,
}

fn prefork_mode(s: &str) -> Result<socklab_prefork::PreforkMode, String> {
    use socklab_prefork::PreforkMode::*;
    match s {
        "nolock" => Ok(NoLock),
        "flock" => Ok(Flock),
        "passfd" | "pass-fd" => Ok(PassFd),
        _ => Err(format!(
            "unknown prefork mode {s:?}: expected nolock, flock or passfd"
        )),
    }
}

fn pool_dispatch(s: &str) -> Result<socklab_pool::Dispatch, String> {
    match s {
        "queue" => Ok(socklab_pool::Dispatch::Queue),
        "accept" => Ok(socklab_pool::Dispatch::Accept),
        _ => Err(format!("unknown dispatch {s:?}: expected queue or accept")),
    }
}

/// Options every model takes.
#[derive(Args, Clone)]
struct Common {
    /// TCP address to listen on (port 0: any free port). Default 127.0.0.1:7788 unless only --udp is given.
    #[arg(long, value_parser = args::address)]
    tcp: Option<SocketAddr>,
    /// UDP address to serve datagrams on (port 0: any free port).
    #[arg(long, value_parser = args::address)]
    udp: Option<SocketAddr>,
    /// How the TCP stream is cut into requests: raw (every byte echoed) or lines.
    #[arg(long, default_value = "raw")]
    framing: Framing,
    /// Work per request: none, cpu:<dur> (burn CPU), sleep:<dur> (wait without CPU).
    #[arg(long, default_value = "none")]
    work: Work,
    /// Longest line in lines framing, in bytes; a longer one gets "ERR line too long" and a close.
    #[arg(long, default_value_t = Limits::default().max_line)]
    max_line: usize,
    /// Most clients served at once; past it the server stops accepting until one leaves.
    #[arg(long, default_value_t = socklab_server_kit::config::DEFAULT_MAX_CONNS)]
    max_conns: usize,
    /// Disconnect a client that sends nothing for this long, or takes longer than this
    /// to finish a request it has begun (e.g. 30s). Default: never.
    #[arg(long, value_parser = args::duration)]
    idle_timeout: Option<Duration>,
    /// After SIGINT/SIGTERM, how long connections in flight may take to finish.
    #[arg(long, value_parser = args::duration, default_value = "5s")]
    grace: Duration,
    /// Listen backlog (capped by net.core.somaxconn).
    #[arg(long, default_value_t = socklab_server_kit::listen::DEFAULT_BACKLOG)]
    backlog: i32,
    /// Fault injection: a request containing SOCKLAB-CHAOS-CRASH aborts its handler's process.
    #[arg(long)]
    chaos: bool,
}

impl ServeModel {
    fn name(&self) -> &'static str {
        match self {
            ServeModel::Iterative(_) => "iterative",
            ServeModel::Fork(_) => "fork",
            ServeModel::Thread(_) => "thread",
            ServeModel::Prefork { .. } => "prefork",
            ServeModel::Pool { .. } => "pool",
            ServeModel::Nonblocking { .. } => "nonblocking",
            ServeModel::Workers { .. } => "workers",
            ServeModel::Async { .. } => "async",
            ServeModel::Uring { .. } => "uring",
        }
    }

    fn common(&self) -> &Common {
        match self {
            ServeModel::Iterative(c) | ServeModel::Fork(c) | ServeModel::Thread(c) => c,
            ServeModel::Prefork { common, .. }
            | ServeModel::Pool { common, .. }
            | ServeModel::Nonblocking { common, .. }
            | ServeModel::Workers { common, .. }
            | ServeModel::Async { common, .. }
            | ServeModel::Uring { common, .. } => common,
        }
    }

    /// Several event loops need `SO_REUSEPORT` set before `bind()`, so each loop
    /// can bind its own listener to the same port.
    fn bind_options(&self) -> BindOptions {
        BindOptions {
            backlog: self.common().backlog,
            reuse_port: self.loops() > 1,
        }
    }

    /// Event loops asked for: `--loops` of the loop models, else one.
    fn loops(&self) -> usize {
        match self {
            ServeModel::Uring { loops, .. } | ServeModel::Nonblocking { loops, .. } => loops.loops,
            _ => 1,
        }
    }

    /// Every TCP socket the model will accept on, bound before the address is
    /// announced (see `socklab_server_kit::loops::tcp_listeners`).
    fn tcp_sockets(&self, first: TcpListener, cx: &Context) -> std::io::Result<Vec<TcpListener>> {
        let loops = loop_count(self.loops(), cx.config.max_conns);
        loops::tcp_listeners(first, loops)
    }

    fn udp_sockets(&self, first: UdpSocket) -> std::io::Result<Vec<UdpSocket>> {
        loops::udp_sockets(first, self.loops())
    }

    fn serve_tcp(&self, mut listeners: Vec<TcpListener>, cx: &Context) -> std::io::Result<()> {
        use ServeModel::*;
        match self {
            Nonblocking { .. } => return socklab_nonblocking::serve_on(listeners, cx),
            Uring { .. } => return socklab_uring::serve_on(listeners, cx),
            _ => {}
        }
        let listener = listeners.remove(0);
        match self {
            Iterative(_) => socklab_iterative::serve(listener, cx),
            Fork(_) => socklab_fork::serve(listener, cx),
            Thread(_) => socklab_thread::serve(listener, cx),
            Prefork { workers, mode, .. } => {
                socklab_prefork::serve(listener, cx, &prefork_options(*workers, *mode))
            }
            Pool {
                workers, dispatch, ..
            } => socklab_pool::serve(listener, cx, &pool_options(*workers, *dispatch)),
            Workers { workers, .. } => {
                socklab_workers::serve(listener, cx, &workers_options(*workers))
            }
            Async { runtime, .. } => socklab_async::serve(listener, cx, &async_options(*runtime)),
            Nonblocking { .. } | Uring { .. } => unreachable!("served above"),
        }
    }

    fn serve_udp(&self, mut sockets: Vec<UdpSocket>, cx: &Context) -> std::io::Result<()> {
        use ServeModel::*;
        match self {
            Nonblocking { .. } => return socklab_nonblocking::serve_udp_on(sockets, cx),
            Uring { .. } => return socklab_uring::serve_udp_on(sockets, cx),
            _ => {}
        }
        let socket = sockets.remove(0);
        match self {
            Iterative(_) => socklab_iterative::serve_udp(socket, cx),
            Fork(_) => socklab_fork::serve_udp(socket, cx),
            Thread(_) => socklab_thread::serve_udp(socket, cx),
            Prefork { workers, mode, .. } => {
                socklab_prefork::serve_udp(socket, cx, &prefork_options(*workers, *mode))
            }
            Pool {
                workers, dispatch, ..
            } => socklab_pool::serve_udp(socket, cx, &pool_options(*workers, *dispatch)),
            Workers { workers, .. } => {
                socklab_workers::serve_udp(socket, cx, &workers_options(*workers))
            }
            Async { runtime, .. } => socklab_async::serve_udp(socket, cx, &async_options(*runtime)),
            Nonblocking { .. } | Uring { .. } => unreachable!("served above"),
        }
    }

    /// Model options that make no sense are refused before anything is bound.
    fn check(&self) -> anyhow::Result<()> {
        match self {
            ServeModel::Prefork { workers: 0, .. }
            | ServeModel::Pool { workers: 0, .. }
            | ServeModel::Workers { workers: 0, .. } => {
                bail!("--workers must be at least 1")
            }
            ServeModel::Uring { loops, .. } | ServeModel::Nonblocking { loops, .. }
                if loops.loops == 0 =>
            {
                bail!("--loops must be at least 1")
            }
            ServeModel::Uring { .. } => {
                socklab_uring::availability().map_err(|e| anyhow::anyhow!(e))
            }
            _ => Ok(()),
        }
    }
}

fn prefork_options(workers: usize, mode: socklab_prefork::PreforkMode) -> socklab_prefork::Options {
    socklab_prefork::Options { workers, mode }
}

fn pool_options(workers: usize, dispatch: socklab_pool::Dispatch) -> socklab_pool::Options {
    socklab_pool::Options { workers, dispatch }
}

fn workers_options(workers: usize) -> socklab_workers::Options {
    socklab_workers::Options { workers }
}

fn async_options(runtime: socklab_async::Runtime) -> socklab_async::Options {
    socklab_async::Options { runtime }
}

impl Common {
    fn config(&self) -> anyhow::Result<Config> {
        if self.max_line == 0 {
            bail!("--max-line must be at least 1 byte");
        }
        if self.max_conns == 0 {
            bail!("--max-conns must be at least 1");
        }
        Ok(Config {
            framing: self.framing,
            limits: Limits {
                max_line: self.max_line,
            },
            work: self.work,
            max_conns: self.max_conns,
            idle_timeout: self.idle_timeout,
            grace: self.grace,
            chaos: self.chaos,
        })
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let model = args.model;
    let name = model.name();
    let common = model.common().clone();
    model.check()?;
    let row = socklab_models::find(name).expect("every serve subcommand has a row in MODELS");
    if common.udp.is_some() && !row.udp {
        let with_udp: Vec<&str> = socklab_models::defaults()
            .filter(|m| m.udp)
            .map(|m| m.name)
            .collect();
        bail!(
            "the {name} model cannot serve UDP: UDP has no connections, so there is no client to \
             give {} (use one of {}; `socklab models` marks them tcp+udp)",
            row.per_client,
            with_udp.join(", ")
        );
    }
    let tcp_addr = match (common.tcp, common.udp) {
        (None, Some(_)) => None,
        (tcp, _) => Some(tcp.unwrap_or_else(|| DEFAULT_TCP.parse().expect("valid default"))),
    };
    let cx = Context::new(common.config()?).context("creating the server context")?;
    cx.shutdown
        .on_signals()
        .context("installing SIGINT/SIGTERM handlers")?;

    let bind = model.bind_options();
    let listener = tcp_addr
        .map(|addr| bind_tcp(addr, bind).with_context(|| format!("binding TCP {addr}")))
        .transpose()?;
    let udp = common
        .udp
        .map(|addr| bind_udp(addr, bind).with_context(|| format!("binding UDP {addr}")))
        .transpose()?;
    // Every socket of every loop exists before clients are told where to connect.
    let listeners = listener
        .map(|l| {
            model
                .tcp_sockets(l, &cx)
                .context("binding each loop's TCP socket")
        })
        .transpose()?;
    let udp = udp
        .map(|s| {
            model
                .udp_sockets(s)
                .context("binding each loop's UDP socket")
        })
        .transpose()?;
    report_usage_on_sigusr1(name, &cx).context("installing the SIGUSR1 handler")?;
    announce(
        name,
        listeners.as_ref().map(|l| &l[0]),
        udp.as_ref().map(|s| &s[0]),
    )?;

    let (done_tx, done_rx) = mpsc::channel();
    let model = std::sync::Arc::new(model);
    let mut running = 0;
    if let Some(listener) = listeners {
        running += 1;
        let (model, cx, done) = (model.clone(), cx.clone(), done_tx.clone());
        std::thread::Builder::new()
            .name("tcp".into())
            .spawn(move || done.send(("tcp", model.serve_tcp(listener, &cx))))?;
    }
    if let Some(socket) = udp {
        running += 1;
        let (model, cx, done) = (model.clone(), cx.clone(), done_tx.clone());
        std::thread::Builder::new()
            .name("udp".into())
            .spawn(move || done.send(("udp", model.serve_udp(socket, &cx))))?;
    }
    supervise(name, &cx, &done_rx, running)
}

/// Prints the bound addresses on one line, so `--tcp 127.0.0.1:0` works from scripts:
/// `socklab: thread serving tcp=127.0.0.1:40123 udp=127.0.0.1:40124 pid=1234`
/// (the format is [`socklab_models::Announce`]'s).
fn announce(name: &str, tcp: Option<&TcpListener>, udp: Option<&UdpSocket>) -> anyhow::Result<()> {
    let line = socklab_models::Announce {
        model: name.to_string(),
        tcp: tcp.map(TcpListener::local_addr).transpose()?,
        udp: udp.map(UdpSocket::local_addr).transpose()?,
        pid: std::process::id() as i32,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// The usage line: this process's CPU time and context switches (all threads, and
/// reaped children) and the server's counters.
fn usage_line(name: &str, cx: &Context) -> String {
    format!(
        "socklab: {name} usage {} {}",
        TreeUsage::now(),
        cx.counters.snapshot()
    )
}

/// Prints [`usage_line`] on stdout each time SIGUSR1 arrives, from a thread of its
/// own that does nothing else, so the line comes within microseconds (the handler
/// itself only wakes that thread: a signal handler may not format or lock).
/// Installed before the address is announced: SIGUSR1's default action would end
/// the process.
fn report_usage_on_sigusr1(name: &'static str, cx: &Context) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR1])?;
    let cx = cx.clone();
    std::thread::Builder::new()
        .name("usage".into())
        .spawn(move || {
            for _ in signals.forever() {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", usage_line(name, &cx));
                let _ = out.flush();
            }
        })?;
    Ok(())
}

/// Waits for a signal (or for a server to fail), then for the servers to return
/// within the grace period.
fn supervise(
    name: &str,
    cx: &Context,
    done: &mpsc::Receiver<(&'static str, std::io::Result<()>)>,
    mut running: usize,
) -> anyhow::Result<()> {
    let mut deadline: Option<Instant> = None;
    while running > 0 {
        if deadline.is_none() && cx.shutdown.is_triggered() {
            deadline = Some(Instant::now() + cx.config.grace + RETURN_MARGIN);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            eprintln!(
                "socklab: {name}: grace period over with {} connection(s) still open; exiting",
                cx.counters.active()
            );
            break;
        }
        match done.recv_timeout(Duration::from_millis(50)) {
            Ok((proto, Ok(()))) => {
                running -= 1;
                if !cx.shutdown.is_triggered() {
                    bail!("the {name} {proto} server stopped on its own");
                }
            }
            Ok((proto, Err(e))) => bail!("the {name} {proto} server failed: {e}"),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    eprintln!("socklab: {name} stopped: {}", cx.counters.snapshot());
    // Read after the model returned, so its reaped children are included.
    eprintln!("{}", usage_line(name, cx));
    Ok(())
}

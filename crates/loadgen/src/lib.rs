//! socklab's load generator: drives the uppercase-echo service over TCP or UDP,
//! checks every reply, and measures throughput and latency without becoming the
//! bottleneck itself.
//!
//! Every number in socklab's report comes from here, so the generator is built to be
//! believed:
//!
//! - **Event-driven.** A few threads (one per CPU this process may use), each running
//!   one mio/epoll loop over its share of the connections — 1 or 10,000. Connects are
//!   nonblocking and paced, retries counted. See [`tcp`].
//! - **Every reply checked** against the request uppercased with std's
//!   `to_ascii_uppercase`, never with the `socklab-protocol` crate it is measuring.
//!   Mismatches, refused and reset connections, timeouts and lost datagrams are
//!   counted and reported, never hidden. A vanished server yields error counts and
//!   the run still ends at its deadline.
//! - **Every client counts.** The window opens only after every connection has been
//!   answered once (the ramp, reported as a cost); a request still waiting when it
//!   closes is in the latency with its wait; closed loops are corrected for
//!   coordinated omission, and open mode charges each request from its intended
//!   send time (see [`report`] and [`pace`]). Requests per client and Jain's
//!   fairness index show who was served.
//! - **Honest about itself.** It reports its own CPU use and warns when it may have
//!   saturated, and (open mode) when it did not reach the target rate.
//!
//! # Layout
//!
//! - [`config`]: [`LoadConfig`] and its checks; modes closed / open / churn, UDP.
//! - [`runner`]: threads, progress, the window's edges, adding results up.
//! - [`shared`]: what the threads share: gates, the ramp, the window, live counters.
//! - [`event_loop`]: the one per-thread event loop and its phases (connect, ramp,
//!   warm-up, window); TCP and UDP plug into it as a [`event_loop::Transport`].
//! - [`tcp`]: TCP connections; [`conn`]: one connection's state and reply
//!   checking; [`connect`]: nonblocking connect, `SO_LINGER` 0, error kinds.
//! - [`udp`]: UDP sockets: request ids, exact loss counting.
//! - [`pace`]: the open-loop schedule and its timerfd.
//! - [`payload`]: request bytes and expected replies.
//! - [`stats`]: counters and HdrHistograms per thread; [`report`]: [`LoadReport`],
//!   JSON and the text table; [`hlog`]: interval logs and merging them.
//! - [`progress`]: progress snapshots and a terminal bar; [`sys`]: CPUs, fd limit,
//!   `getrusage`.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use socklab_loadgen::{run, LoadConfig, Mode};
//!
//! let config = LoadConfig {
//!     target: "127.0.0.1:7788".parse().unwrap(),
//!     mode: Mode::Open,
//!     rate: Some(20_000.0),
//!     conns: 100,
//!     duration: Duration::from_secs(10),
//!     ..LoadConfig::default()
//! };
//! let report = run(&config, Default::default())?;
//! println!("{report}");
//! std::fs::write("run.json", report.to_json()).unwrap();
//! # Ok::<(), socklab_loadgen::LoadError>(())
//! ```
//!
//! # Load from several hosts, merged
//!
//! One client host may not be enough to load a server. Run the generator on each
//! host against the same server, each writing an HdrHistogram interval log, then
//! merge the logs: histograms add up exactly (percentiles never average).
//!
//! ```text
//! hostA$ socklab load 10.0.0.5:7788 --mode open --rate 50000 --duration 30s --hdr-log a.hlog
//! hostB$ socklab load 10.0.0.5:7788 --mode open --rate 50000 --duration 30s --hdr-log b.hlog
//! any$   socklab load merge a.hlog b.hlog
//! ```
//!
//! Start the hosts together (e.g. `ssh` in parallel, or `at`) so the measured
//! windows overlap; `merge` prints each file's time span so you can check. The
//! combined throughput is the sum of each host's. In code: [`hlog::merge_files`].

pub mod config;
pub mod conn;
pub mod connect;
pub mod event_loop;
pub mod hlog;
pub mod pace;
pub mod payload;
pub mod progress;
pub mod report;
pub mod runner;
pub mod shared;
pub mod stats;
pub mod sys;
pub mod tcp;
pub mod udp;

use std::io;

pub use config::{ConfigError, Framing, LoadConfig, Mode, Transport};
pub use hlog::{merge_files, Hist, HlogError, Merged};
pub use progress::{Phase, Progress, TerminalProgress};
pub use report::{Clients, Little, LoadReport, Ramp, SCHEMA};
pub use runner::{Edge, Hooks};
pub use shared::Hold;
pub use stats::{ConnectCounts, Counts, ErrorCounts, LatencySummary};

/// Why a run could not be done at all. Problems *during* a run (refused
/// connections, resets, timeouts, wrong replies) are not errors: they are counted
/// in the [`LoadReport`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error(
        "{conns} connections need {needed} file descriptors, but this process may open at most \
         {hard} (RLIMIT_NOFILE hard limit; soft {soft}); raise it (ulimit -Hn, \
         /etc/security/limits.conf, systemd LimitNOFILE=) or use fewer connections"
    )]
    FdLimit {
        conns: usize,
        needed: u64,
        soft: u64,
        hard: u64,
    },
    /// A system call the run needs failed (`cause` is shown in the message, not
    /// chained as a source, so it is printed once).
    #[error("{what}: {cause}")]
    Io { what: String, cause: io::Error },
    #[error("load-generator thread {0} panicked (a bug; please report it)")]
    ThreadPanicked(usize),
    /// The caller's stop flag ([`Hooks::stop`]) ended the run: nothing measured.
    #[error("stopped before the run finished")]
    Stopped,
}

impl LoadError {
    pub(crate) fn io(what: impl Into<String>, cause: io::Error) -> LoadError {
        LoadError::Io {
            what: what.into(),
            cause,
        }
    }
}

/// Runs one load test as `config` describes and returns what it measured.
///
/// `hooks` are called from the calling thread: progress about ten times a second,
/// the window hook as the measured window opens and closes. Returns `Err` only
/// when the run cannot be done (bad configuration, file descriptor limit, no
/// threads); everything that goes wrong on the wire is counted in the report
/// instead.
pub fn run(config: &LoadConfig, hooks: Hooks) -> Result<LoadReport, LoadError> {
    runner::run(config, hooks)
}

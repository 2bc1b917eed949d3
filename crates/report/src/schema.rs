//! The results format: everything one `socklab compare` run measured, with its
//! context (machine, command, pinning), so a report can be rebuilt from it alone.
//!
//! Every number in a report comes from a field here, measured in that run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
pub use socklab_loadgen::{Clients, Little, Ramp};

/// Written into [`Results::schema`]; bumped on any incompatible change. Version 2:
/// latency over all clients, the ramp and the per-client view, server usage over
/// exactly the measured window, errors counted once per client.
pub const SCHEMA: &str = "socklab-compare/2";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Results {
    pub schema: String,
    pub machine: Machine,
    pub run: RunInfo,
    /// Timed cells: one per model x scenario x connection count x repeat.
    pub cells: Vec<Cell>,
    /// Counted metrics (syscalls, context switches, instructions) per model, from a
    /// separate pass so tracing never distorts the timed cells.
    #[serde(default)]
    pub counted: Vec<Counted>,
    /// The loopback floor: `sockperf ping-pong` p50 round trip, if sockperf ran.
    #[serde(default)]
    pub floor: Option<Floor>,
    /// Soaks (full mode): each model under a long mix of clients, its resources
    /// sampled at rest between rounds.
    #[serde(default)]
    pub soak: Vec<crate::soak::Soak>,
}

/// The machine a run came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Machine {
    pub hostname: String,
    pub cpu_model: String,
    /// CPUs online.
    pub cpus: usize,
    pub memory_bytes: u64,
    pub kernel: String,
    pub os: String,
    pub rustc: String,
    pub socklab_version: String,
}

/// How the run was made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RunInfo {
    /// The exact command line, to repeat the run.
    pub command: String,
    /// `quick` or `full`.
    pub mode: String,
    /// RFC 3339 UTC.
    pub started: String,
    pub finished: String,
    /// CPU the server was pinned to, and the CPUs the load generator was given
    /// (None: not pinned, fewer than two CPUs).
    pub server_cpu: Option<usize>,
    pub loadgen_cpus: Option<Vec<usize>>,
    /// Timed repeats per cell (interleaved across models).
    pub repeats: usize,
    /// Measured seconds per timed cell (after warm-up).
    pub cell_seconds: f64,
    pub warmup_seconds: f64,
    /// Message size in bytes.
    pub message_bytes: usize,
    /// Timed cells the run planned: fewer in `cells` when it was interrupted.
    #[serde(default)]
    pub planned_cells: usize,
    /// Stopped by Ctrl-C or SIGTERM before every cell ran (`socklab compare
    /// --resume DIR` finishes it).
    #[serde(default)]
    pub interrupted: bool,
    /// The arguments after `socklab compare`, which `--resume` runs again.
    #[serde(default)]
    pub args: Vec<String>,
    /// The outside tools compare uses, and whether they were there.
    #[serde(default)]
    pub tools: Vec<Tool>,
}

/// An outside tool a run uses: what it measures, and its version (`None`: it was
/// missing, so that is not measured).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Tool {
    pub name: String,
    pub version: Option<String>,
    /// What it measures, for the report's "could not show" section.
    pub measures: String,
    /// Whether this run wanted it (valgrind only in full mode or with --callgrind).
    pub wanted: bool,
}

/// One timed measurement: one model, one scenario, one connection count, one repeat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cell {
    pub model: String,
    /// `scaling`, `churn`, `cpu`, `sleep`, `slow`, `chaos`, `udp`.
    pub scenario: String,
    /// Concurrent connections the load generator held (for churn: in flight).
    pub conns: usize,
    pub repeat: usize,
    /// CPUs the server was pinned to: 1, except in the scenarios run on more
    /// (`cpu`, `curve`).
    #[serde(default = "one")]
    pub server_cpus: usize,
    /// Curve: the open-loop rate offered, requests per second.
    #[serde(default)]
    pub offered_rps: Option<f64>,
    /// The server's `--work` for this cell (`none`, `cpu:50us`, `sleep:2ms`).
    pub work: String,
    /// `ok` or `failed`.
    pub status: String,
    /// Why the cell failed (the run goes on).
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub load: Option<LoadSummary>,
    #[serde(default)]
    pub server: Option<ServerUsage>,
    /// HdrHistogram interval log of this cell's latencies, relative to the run dir.
    #[serde(default)]
    pub hdr_log: Option<String>,
    /// Scenario-specific figures, named (e.g. `slow_clients`, `other_clients_lost`,
    /// `normal_p99_us`). Each is explained where the report uses it.
    #[serde(default)]
    pub extra: BTreeMap<String, f64>,
    /// c100k: how far the model got towards the connections it was offered, and
    /// what stopped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
}

/// How far a model got towards the connections offered (the c100k scenario), and
/// the limit that stopped it: read from what the server said on stderr and what
/// /proc showed as the window closed, never guessed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Limit {
    pub kind: LimitKind,
    /// Connections the server held open as the window closed (its own count).
    pub held: u64,
    /// Connections the load generators opened towards it.
    pub target: u64,
    /// The server died during the cell; `held` is then the most it held before
    /// (descriptors open at its peak, less the idle server's).
    #[serde(default)]
    pub died: bool,
    /// The evidence, in words: the server's own line, the numbers from /proc.
    pub evidence: String,
}

/// What stopped a model short of its target.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LimitKind {
    /// Nothing: it held every connection.
    None,
    /// A process's descriptor limit, `RLIMIT_NOFILE` (`accept`: `EMFILE`).
    Fds,
    /// The system's file table, `fs.file-max` (`ENFILE`).
    FileTable,
    /// Tasks: `kernel.pid_max`, `kernel.threads-max` or `RLIMIT_NPROC` (`EAGAIN`
    /// from `fork()`, `clone()`, `pthread_create`).
    Tasks,
    /// Memory (`ENOMEM`, `ENOBUFS`).
    Memory,
    /// A process's memory mappings, `vm.max_map_count` (a thread's stacks; glibc
    /// reports the failed `mmap` as `EAGAIN` from `pthread_create`).
    Mappings,
    /// The model itself: one client per worker, and this many workers.
    Workers,
    /// The model itself: one client at a time.
    OneAtATime,
    /// The cell's own cap (`--max-conns`) on a model that makes a process per
    /// client, kept below `kernel.pid_max` so the machine keeps running.
    Cap,
    /// The load generators' ephemeral ports (`EADDRNOTAVAIL` on connect).
    Ports,
    /// Nothing the server said or /proc showed explains it.
    Unknown,
}

impl LimitKind {
    /// The limit, named for a table cell.
    pub fn words(self) -> &'static str {
        match self {
            LimitKind::None => "nothing: held them all",
            LimitKind::Fds => "descriptors (RLIMIT_NOFILE)",
            LimitKind::FileTable => "the system's file table (fs.file-max)",
            LimitKind::Tasks => "tasks (kernel.pid_max, threads-max, RLIMIT_NPROC)",
            LimitKind::Memory => "memory",
            LimitKind::Mappings => "memory mappings (vm.max_map_count)",
            LimitKind::Workers => "its workers: one client each",
            LimitKind::OneAtATime => "one client at a time",
            LimitKind::Cap => "the cell's cap on processes (one per client)",
            LimitKind::Ports => "the loaders' ephemeral ports",
            LimitKind::Unknown => "not found",
        }
    }
}

/// What the load generator measured in one cell.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct LoadSummary {
    /// Requests answered and verified in the window.
    pub requests: u64,
    pub duration_s: f64,
    pub throughput_rps: f64,
    pub bytes_per_s: f64,
    /// Request latency over all clients (for open loop: from the intended send
    /// time): requests still waiting when the window closed count with their wait,
    /// closed loops are corrected for coordinated omission (`socklab load`'s
    /// report module says how).
    pub latency_us: Percentiles,
    /// Every measured request once, as timed, without the correction: its mean is
    /// what Little's law checks.
    #[serde(default)]
    pub latency_timed_us: Percentiles,
    /// Requests still waiting when the window closed: in both latencies with their
    /// wait so far, a lower bound.
    #[serde(default)]
    pub waiting: u64,
    /// How the requests spread over the clients (not for churn).
    #[serde(default)]
    pub clients: Option<Clients>,
    /// How long it took until every client had been answered once.
    #[serde(default)]
    pub ramp: Option<Ramp>,
    /// Closed loop: requests in flight ÷ throughput against the measured mean.
    #[serde(default)]
    pub little: Option<Little>,
    pub errors: Errors,
    /// The load generator's own CPU time (user + system), and that as a share of
    /// the CPUs it was given: near 1.0 means it may have been the bottleneck.
    pub loadgen_cpu_s: f64,
    pub loadgen_cpu_util: f64,
    /// Open loop: p99 of how late the load generator sent, after the intended
    /// time (µs): a large lag means it did not keep its schedule.
    #[serde(default)]
    pub send_lag_p99_us: Option<f64>,
    /// Churn: connections completed per second, and connect latency.
    #[serde(default)]
    pub connects_per_s: Option<f64>,
    #[serde(default)]
    pub connect_latency_us: Option<Percentiles>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
    pub mean: f64,
    pub stddev: f64,
}

/// Everything that went wrong. `clients` and `unserved_conns` count clients, each
/// once; the rest count events, for the details.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Errors {
    /// Clients (connections) that saw at least one error of any kind below, each
    /// counted once; in churn, where every connection is a new client, the failed
    /// connections. The report's errors column.
    #[serde(default)]
    pub clients: u64,
    /// Replies that were not the uppercase of what was sent.
    pub mismatches: u64,
    /// Connections reset or closed by the server.
    pub resets: u64,
    pub refused: u64,
    /// Requests or connects given up on (compare's cells set no reply timeout).
    pub timeouts: u64,
    /// UDP datagrams whose reply never came.
    pub lost: u64,
    pub other: u64,
    /// Connections that got no reply at all in the measured window: the server
    /// served others while they waited (iterative, a pool smaller than the load).
    /// Not an error of the client's: its own column.
    #[serde(default)]
    pub unserved_conns: u64,
}

/// The server's whole process tree during the cell: usage over the measured window,
/// and what /proc showed alive.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct ServerUsage {
    /// CPU seconds spent over exactly the measured window by every process and
    /// thread of the server: its own threads (live or exited), its live children
    /// and the children it reaped meanwhile.
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    /// Context switches of all of those over the window.
    pub voluntary_ctx: u64,
    pub involuntary_ctx: u64,
    /// Wall time between the two readings (the window, within a millisecond).
    #[serde(default)]
    pub window_s: f64,
    /// Requests the server itself counted over the window.
    #[serde(default)]
    pub requests: Option<u64>,
    /// Connections the server held open (accepted, not yet closed) as the window
    /// closed: what memory per connection is divided by.
    #[serde(default)]
    pub held_conns: Option<u64>,
    /// Most processes and threads alive at once.
    pub processes_max: u64,
    pub threads_max: u64,
    /// Largest RSS and PSS of the whole tree during the cell, and before the load
    /// generator connected (the idle server): per-connection memory is
    /// (max - idle) / held connections.
    pub rss_max_bytes: u64,
    pub pss_max_bytes: u64,
    pub rss_idle_bytes: u64,
    pub pss_idle_bytes: u64,
    /// The share of the whole machine's CPU time the hypervisor gave to others over
    /// the window (`steal` in /proc/stat): not the server's, but what makes its
    /// tails on a busy host. `None` where the kernel does not count it.
    #[serde(default)]
    pub steal_share: Option<f64>,
}

/// Counted metrics for one model over a fixed number of requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Counted {
    pub model: String,
    /// Requests in the counted pass (closed loop, fixed count).
    pub requests: u64,
    pub conns: usize,
    /// `strace -f -c`: calls per syscall name over the pass, whole process tree.
    #[serde(default)]
    pub syscalls: BTreeMap<String, u64>,
    /// Context switches of the whole tree over the pass (untraced).
    #[serde(default)]
    pub voluntary_ctx: Option<u64>,
    #[serde(default)]
    pub involuntary_ctx: Option<u64>,
    /// User-space instructions per request (callgrind, marginal over two run lengths).
    #[serde(default)]
    pub instructions_per_request: Option<f64>,
    /// Why a metric is missing (strace or valgrind not installed, model refused, ...).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Counted {
    /// All traced syscalls divided by the requests of the pass; `None` when strace
    /// did not run (no syscalls recorded) or the pass made no requests.
    pub fn syscalls_per_request(&self) -> Option<f64> {
        if self.syscalls.is_empty() || self.requests == 0 {
            return None;
        }
        Some(self.syscalls.values().sum::<u64>() as f64 / self.requests as f64)
    }

    /// Voluntary + involuntary context switches per request, when both were read.
    pub fn ctx_per_request(&self) -> Option<f64> {
        let total = self.voluntary_ctx? + self.involuntary_ctx?;
        (self.requests > 0).then(|| total as f64 / self.requests as f64)
    }

    /// The `n` most frequent syscalls with their calls per request, most first.
    pub fn top_syscalls(&self, n: usize) -> Vec<(&str, f64)> {
        if self.requests == 0 {
            return Vec::new();
        }
        let mut v: Vec<(&str, u64)> = self
            .syscalls
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.into_iter()
            .take(n)
            .map(|(k, c)| (k, c as f64 / self.requests as f64))
            .collect()
    }
}

/// The loopback floor measured by sockperf.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Floor {
    pub tool: String,
    pub p50_round_trip_us: f64,
    pub p99_round_trip_us: f64,
}

impl Results {
    /// An empty run of the current schema: what `socklab compare` starts from.
    pub fn new(machine: Machine, run: RunInfo) -> Self {
        Results {
            schema: SCHEMA.to_string(),
            machine,
            run,
            cells: Vec::new(),
            counted: Vec::new(),
            floor: None,
            soak: Vec::new(),
        }
    }
}

fn one() -> usize {
    1
}

/// The statuses [`Cell::status`] takes.
pub const STATUS_OK: &str = "ok";
pub const STATUS_FAILED: &str = "failed";
/// Stopped by Ctrl-C or SIGTERM; run again by `--resume`.
pub const STATUS_INTERRUPTED: &str = "interrupted";

impl Cell {
    /// A cell whose numbers may enter a median: it says `ok` and carries what the
    /// load generator measured. Anything else is reported as a failure.
    pub fn is_ok(&self) -> bool {
        self.status == STATUS_OK && self.load.is_some()
    }

    /// Why this cell is not usable, in words for the report; `None` when it is.
    pub fn failure_reason(&self) -> Option<String> {
        if self.is_ok() {
            return None;
        }
        Some(match (&self.error, self.status.as_str()) {
            (Some(e), _) => e.clone(),
            (None, STATUS_OK) => "no load summary recorded".to_string(),
            (None, status) => format!("status `{status}`, no reason recorded"),
        })
    }

    /// Requests the load generator completed, if it measured any.
    fn requests(&self) -> Option<u64> {
        self.load.as_ref().map(|l| l.requests).filter(|&n| n > 0)
    }

    /// Server CPU time (user + system, whole process tree) per request over the
    /// window, in µs. Per request rather than per second so that a model that
    /// serves more requests is not charged for being busier.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        let s = self.server.as_ref()?;
        let n = self.requests()?;
        Some((s.cpu_user_s + s.cpu_system_s) / n as f64 * 1e6)
    }

    /// CPUs the server kept busy over the window: its CPU time ÷ the window. It
    /// cannot exceed the CPUs it was given; the report checks that it does not.
    pub fn server_cpus_used(&self) -> Option<f64> {
        let s = self.server.as_ref()?;
        (s.window_s > 0.0).then(|| (s.cpu_user_s + s.cpu_system_s) / s.window_s)
    }

    /// Voluntary + involuntary context switches of the server tree per request.
    pub fn ctx_per_request(&self) -> Option<f64> {
        let s = self.server.as_ref()?;
        let n = self.requests()?;
        Some((s.voluntary_ctx + s.involuntary_ctx) as f64 / n as f64)
    }

    /// (PSS at peak - PSS idle) / connections the server held: what one more
    /// connection it holds costs in memory, shared pages split fairly between the
    /// processes that map them. Divided by the connections *held*, not the ones
    /// the load generator opened: a pool of 4 that holds 4 of 1,000 connections
    /// spends its memory on 4. `None` when PSS was not sampled, or the server
    /// held no connection (or did not say).
    pub fn pss_per_conn_bytes(&self) -> Option<f64> {
        let s = self.server.as_ref()?;
        per_conn(s.pss_max_bytes, s.pss_idle_bytes, s.held_conns?)
    }

    /// As [`Cell::pss_per_conn_bytes`] for RSS, which counts a shared page once in
    /// every process: for forking models it overstates the cost.
    pub fn rss_per_conn_bytes(&self) -> Option<f64> {
        let s = self.server.as_ref()?;
        per_conn(s.rss_max_bytes, s.rss_idle_bytes, s.held_conns?)
    }

    /// Clients that got no reply in the window.
    pub fn unserved(&self) -> Option<u64> {
        Some(self.load.as_ref()?.errors.unserved_conns)
    }
}

fn per_conn(max: u64, idle: u64, held: u64) -> Option<f64> {
    if max == 0 || held == 0 {
        return None;
    }
    Some(max.saturating_sub(idle) as f64 / held as f64)
}

//! The metric catalog: every figure a timed cell yields, how it is read from a cell,
//! its unit, and the words tables, charts and sentences name it with. Tables,
//! charts, the CSV and every sentence pick from this one list, so a number means
//! the same thing everywhere; a new metric is one entry here.

use std::borrow::Cow;

use crate::schema::Cell;

/// How a metric's numbers read: picks the formatter and the words in sentences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Events per second.
    Rate,
    /// Microseconds.
    Micros,
    /// Bytes (tables show KiB).
    Bytes,
    /// A plain count or ratio.
    Plain,
    /// A share of 1.0 (shown as a percentage).
    Share,
    /// Seconds.
    Seconds,
}

/// Every metric a timed cell yields. Tables, charts, CSV and sentences all pick
/// from this one list, so a number means the same thing everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    Throughput,
    P50,
    P90,
    P99,
    P999,
    P9999,
    Max,
    Errors,
    Unserved,
    Served,
    Fairness,
    Ramp,
    CpuPerRequest,
    CtxPerRequest,
    PssPerConn,
    RssPerConn,
    Processes,
    Threads,
    LoadgenUtil,
    ConnectsPerS,
    ConnectP50,
    ConnectP99,
}

/// How a metric is named: in a table header, a chart axis, and a sentence
/// ("fork used 13× more PSS per connection than thread").
#[derive(Debug, Clone)]
pub struct Words {
    pub header: Cow<'static, str>,
    pub axis: Cow<'static, str>,
    pub verb: &'static str,
    pub comparative: &'static str,
    pub noun: Cow<'static, str>,
    /// What "ranged from ... to ..." is said of; usually the noun.
    pub subject: Cow<'static, str>,
}

impl Metric {
    pub const ALL: &'static [Metric] = &[
        Metric::Throughput,
        Metric::P50,
        Metric::P90,
        Metric::P99,
        Metric::P999,
        Metric::P9999,
        Metric::Max,
        Metric::Errors,
        Metric::Unserved,
        Metric::Served,
        Metric::Fairness,
        Metric::Ramp,
        Metric::CpuPerRequest,
        Metric::CtxPerRequest,
        Metric::PssPerConn,
        Metric::RssPerConn,
        Metric::Processes,
        Metric::Threads,
        Metric::LoadgenUtil,
        Metric::ConnectsPerS,
        Metric::ConnectP50,
        Metric::ConnectP99,
    ];

    /// The latency percentiles, in order, with their labels: the spectrum.
    pub const SPECTRUM: &'static [(Metric, &'static str)] = &[
        (Metric::P50, "p50"),
        (Metric::P90, "p90"),
        (Metric::P99, "p99"),
        (Metric::P999, "p99.9"),
        (Metric::P9999, "p99.99"),
        (Metric::Max, "max"),
    ];

    /// A stable snake_case name: file names, lesson lookup.
    pub fn key(self) -> &'static str {
        match self {
            Metric::Throughput => "throughput",
            Metric::P50 => "p50",
            Metric::P90 => "p90",
            Metric::P99 => "p99",
            Metric::P999 => "p999",
            Metric::P9999 => "p9999",
            Metric::Max => "max",
            Metric::Errors => "errors",
            Metric::Unserved => "unserved",
            Metric::Served => "served",
            Metric::Fairness => "fairness",
            Metric::Ramp => "ramp",
            Metric::CpuPerRequest => "cpu_per_request",
            Metric::CtxPerRequest => "ctx_per_request",
            Metric::PssPerConn => "pss_per_conn",
            Metric::RssPerConn => "rss_per_conn",
            Metric::Processes => "processes",
            Metric::Threads => "threads",
            Metric::LoadgenUtil => "loadgen_util",
            Metric::ConnectsPerS => "connects_per_s",
            Metric::ConnectP50 => "connect_p50",
            Metric::ConnectP99 => "connect_p99",
        }
    }

    /// This metric's value in one cell; `None` when the cell did not measure it.
    pub fn sample(self, cell: &Cell) -> Option<f64> {
        let load = cell.load.as_ref()?;
        let lat = &load.latency_us;
        let server = cell.server.as_ref();
        match self {
            Metric::Throughput => Some(load.throughput_rps),
            Metric::P50 => Some(lat.p50),
            Metric::P90 => Some(lat.p90),
            Metric::P99 => Some(lat.p99),
            Metric::P999 => Some(lat.p999),
            Metric::P9999 => Some(lat.p9999),
            Metric::Max => Some(lat.max),
            Metric::Errors => Some(load.errors.clients as f64),
            Metric::Unserved => Some(load.errors.unserved_conns as f64),
            Metric::Served => load.clients.map(|c| c.served as f64),
            Metric::Fairness => load.clients.and_then(|c| c.fairness),
            Metric::Ramp => load.ramp.map(|r| r.length_s),
            Metric::CpuPerRequest => cell.cpu_us_per_request(),
            Metric::CtxPerRequest => cell.ctx_per_request(),
            Metric::PssPerConn => cell.pss_per_conn_bytes(),
            Metric::RssPerConn => cell.rss_per_conn_bytes(),
            Metric::Processes => server.map(|s| s.processes_max as f64).filter(|&n| n > 0.0),
            Metric::Threads => server.map(|s| s.threads_max as f64).filter(|&n| n > 0.0),
            Metric::LoadgenUtil => Some(load.loadgen_cpu_util),
            Metric::ConnectsPerS => load.connects_per_s,
            Metric::ConnectP50 => load.connect_latency_us.map(|p| p.p50),
            Metric::ConnectP99 => load.connect_latency_us.map(|p| p.p99),
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            Metric::Throughput | Metric::ConnectsPerS => Unit::Rate,
            Metric::P50
            | Metric::P90
            | Metric::P99
            | Metric::P999
            | Metric::P9999
            | Metric::Max
            | Metric::CpuPerRequest
            | Metric::ConnectP50
            | Metric::ConnectP99 => Unit::Micros,
            Metric::PssPerConn | Metric::RssPerConn => Unit::Bytes,
            Metric::LoadgenUtil => Unit::Share,
            Metric::Ramp => Unit::Seconds,
            Metric::Errors
            | Metric::Unserved
            | Metric::Served
            | Metric::Fairness
            | Metric::CtxPerRequest
            | Metric::Processes
            | Metric::Threads => Unit::Plain,
        }
    }

    pub fn words(self) -> Words {
        let w = |header, axis, verb, comparative, noun| Words {
            header: Cow::Borrowed(header),
            axis: Cow::Borrowed(axis),
            verb,
            comparative,
            noun: Cow::Borrowed(noun),
            subject: Cow::Borrowed(noun),
        };
        match self {
            Metric::Throughput => w(
                "throughput (req/s)",
                "requests per second",
                "served",
                "more",
                "requests per second",
            ),
            Metric::P50 => w(
                "p50 (µs)",
                "p50 latency (µs)",
                "had",
                "higher",
                "median latency",
            ),
            Metric::P90 => w(
                "p90 (µs)",
                "p90 latency (µs)",
                "had",
                "higher",
                "p90 latency",
            ),
            Metric::P99 => w(
                "p99 (µs)",
                "p99 latency (µs)",
                "had",
                "higher",
                "p99 latency",
            ),
            Metric::P999 => w(
                "p99.9 (µs)",
                "p99.9 latency (µs)",
                "had",
                "higher",
                "p99.9 latency",
            ),
            Metric::P9999 => w(
                "p99.99 (µs)",
                "p99.99 latency (µs)",
                "had",
                "higher",
                "p99.99 latency",
            ),
            Metric::Max => w(
                "max (µs)",
                "max latency (µs)",
                "had",
                "higher",
                "maximum latency",
            ),
            Metric::Errors => w(
                "clients with errors",
                "clients that saw an error",
                "saw",
                "more",
                "clients with errors",
            ),
            Metric::Unserved => w(
                "unserved",
                "clients never answered in the window",
                "left",
                "more",
                "clients left unserved",
            ),
            Metric::Served => w(
                "served",
                "clients answered in the window",
                "served",
                "more",
                "clients served",
            ),
            Metric::Fairness => w(
                "fairness",
                "Jain's fairness index of requests per client (1 = even)",
                "had",
                "higher",
                "fairness index",
            ),
            Metric::Ramp => w(
                "ramp (s)",
                "time until every client was answered once (s)",
                "took",
                "longer",
                "ramp",
            ),
            Metric::CpuPerRequest => w(
                "server CPU (µs/req)",
                "server CPU per request (µs, user + system)",
                "spent",
                "more",
                "server CPU time per request",
            ),
            Metric::CtxPerRequest => w(
                "ctx switches/req",
                "context switches per request",
                "made",
                "more",
                "context switches per request",
            ),
            Metric::PssPerConn => w(
                "PSS/conn (KiB)",
                "PSS per connection (KiB)",
                "used",
                "more",
                "PSS per connection",
            ),
            Metric::RssPerConn => w(
                "RSS/conn (KiB)",
                "RSS per connection (KiB)",
                "used",
                "more",
                "RSS per connection",
            ),
            Metric::Processes => w("processes", "processes (max)", "ran", "more", "processes"),
            Metric::Threads => w("threads", "threads (max)", "ran", "more", "threads"),
            Metric::LoadgenUtil => w(
                "loadgen CPU",
                "load generator CPU (share of its CPUs)",
                "used",
                "more",
                "load generator CPU",
            ),
            Metric::ConnectsPerS => w(
                "connections/s",
                "connections per second",
                "completed",
                "more",
                "connections per second",
            ),
            Metric::ConnectP50 => w(
                "connect p50 (µs)",
                "connect-to-first-reply p50 (µs)",
                "had",
                "higher",
                "median connect latency",
            ),
            Metric::ConnectP99 => w(
                "connect p99 (µs)",
                "connect-to-first-reply p99 (µs)",
                "had",
                "higher",
                "p99 connect latency",
            ),
        }
    }

    /// The request-latency percentiles (over all clients).
    pub fn is_latency(self) -> bool {
        Metric::SPECTRUM.iter().any(|(m, _)| *m == self)
    }

    /// Which way this metric improves: more served, less spent. `None` for figures
    /// that describe a design's shape rather than score it (a pool runs its four
    /// threads by design; the load generator's CPU says how far to trust a cell,
    /// not how good the server is). The baseline comparison says "better" or
    /// "worse" from this; nothing ranks overlapping ranges by it.
    pub fn better(self) -> Option<Better> {
        match self {
            Metric::Throughput | Metric::ConnectsPerS | Metric::Served | Metric::Fairness => {
                Some(Better::Higher)
            }
            Metric::P50
            | Metric::P90
            | Metric::P99
            | Metric::P999
            | Metric::P9999
            | Metric::Max
            | Metric::Errors
            | Metric::Unserved
            | Metric::Ramp
            | Metric::CpuPerRequest
            | Metric::CtxPerRequest
            | Metric::PssPerConn
            | Metric::RssPerConn
            | Metric::ConnectP50
            | Metric::ConnectP99 => Some(Better::Lower),
            Metric::Processes | Metric::Threads | Metric::LoadgenUtil => None,
        }
    }

    /// Whether a bigger number is the better one (throughput) rather than the worse
    /// one (latency, cost) or neither. Used to name the best model, never to rank
    /// overlapping ones.
    pub fn higher_is_better(self) -> bool {
        self.better() == Some(Better::Higher)
    }
}

/// Which way a figure improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

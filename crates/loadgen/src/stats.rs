//! Counting and timing: what each event-loop thread records, and how threads' records
//! are added up.
//!
//! Each thread owns its own [`ThreadStats`] (no locks, no shared cache lines on the
//! hot path); the runner adds them up once the threads have finished. Latencies go
//! into HdrHistograms at microsecond resolution with 3 significant digits: any value
//! is stored within 0.1 %, and adding histograms from many threads — or many hosts —
//! is exact, which averaging percentiles never is.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Significant digits kept by every histogram: values within 0.1 %.
pub const SIGFIG: u8 = 3;

/// Most distinct error messages kept as examples.
const MAX_MESSAGES: usize = 5;

/// A new, empty, auto-resizing latency histogram (values in µs).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(SIGFIG).expect("3 significant digits is a valid histogram precision")
}

/// Records `us` in `h`, growing `h` as needed.
///
/// Not `saturating_record`: that one never resizes, so in an auto-resizing histogram
/// (which starts tiny) it would clamp every value to the current maximum.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

/// Requests, replies and bytes of the measured window (ramp and warm-up excluded).
///
/// A reply counts if it arrives in the window, whenever its request was sent: so
/// the replies of a window are those a server delivered in it, and their mean
/// latency is what Little's law predicts. When the window starts with the traffic
/// (a counted run, no warm-up), `sent == ok + mismatched + failed + unfinished`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests sent in the window (open mode: requests that fell due in it, sent
    /// or not).
    pub sent: u64,
    /// Replies received in the window, whole and equal to the uppercased request.
    pub ok: u64,
    /// Replies received in the window, whole but wrong.
    pub mismatched: u64,
    /// Requests that in the window learned they will never get a reply: their
    /// connection failed, they timed out (UDP: lost), or (open mode) their
    /// connection was down when they fell due.
    pub failed: u64,
    /// Requests still waiting for their reply when the window closed (sent in the
    /// window, or before it). Each is in the latency record with its wait so far: a
    /// lower bound.
    pub unfinished: u64,
    /// Request bytes of the requests sent in the window.
    pub bytes_sent: u64,
    /// Reply bytes of the replies received in the window.
    pub bytes_received: u64,
    /// Churn: connections that connected, got their one verified reply, and closed.
    pub sessions: u64,
    /// Closed and open modes: connections that got no reply at all while measuring.
    /// A server that serves a few clients at a time (iterative, a small pool) leaves
    /// the others waiting; their requests are `unfinished` and enter the latency
    /// record with their whole wait.
    #[serde(default)]
    pub starved: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.sent += o.sent;
        self.ok += o.ok;
        self.mismatched += o.mismatched;
        self.failed += o.failed;
        self.unfinished += o.unfinished;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.sessions += o.sessions;
        self.starved += o.starved;
    }

    /// Replies received whole, right or wrong.
    pub fn completed(&self) -> u64 {
        self.ok + self.mismatched
    }
}

/// Connection attempts over the whole run (setup and warmup included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectCounts {
    /// `connect()` calls made.
    pub attempts: u64,
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Attempts made after an earlier attempt (or connection) of the same slot failed.
    pub retries: u64,
}

impl ConnectCounts {
    pub fn add(&mut self, o: &ConnectCounts) {
        self.attempts += o.attempts;
        self.succeeded += o.succeeded;
        self.retries += o.retries;
    }
}

/// Errors over the whole run (setup and warmup included: an error is never hidden
/// because it happened early). Mismatched replies are in [`Counts::mismatched`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// Connection refused: nothing listening (TCP RST to the SYN; UDP: ICMP port
    /// unreachable).
    pub refused: u64,
    /// Connection reset or aborted by the peer, or a write to a reset connection.
    pub reset: u64,
    /// The server closed the connection (end of stream) while the client still used it.
    pub closed: u64,
    /// Requests without a reply within `timeout` (UDP: lost datagrams).
    pub timeouts: u64,
    /// Connect attempts that took longer than `connect_timeout`.
    pub connect_timeouts: u64,
    /// Open mode: requests that fell due while their connection was down.
    pub not_connected: u64,
    /// Reply bytes or datagrams that belong to no outstanding request (extra bytes,
    /// unknown or duplicate UDP ids).
    pub unexpected: u64,
    /// UDP replies that arrived after their request had timed out.
    pub late: u64,
    /// Anything else (e.g. no free local port, out of descriptors).
    pub other: u64,
    /// The first few distinct error messages, for a human reading the report.
    pub messages: Vec<String>,
}

impl ErrorCounts {
    /// All errors (late UDP replies included: each one is also a timeout).
    pub fn total(&self) -> u64 {
        self.refused
            + self.reset
            + self.closed
            + self.timeouts
            + self.connect_timeouts
            + self.not_connected
            + self.unexpected
            + self.other
    }

    /// Keeps `msg` as an example if it is new and there is room.
    pub fn note(&mut self, msg: String) {
        if self.messages.len() < MAX_MESSAGES && !self.messages.contains(&msg) {
            self.messages.push(msg);
        }
    }

    pub fn add(&mut self, o: &ErrorCounts) {
        self.refused += o.refused;
        self.reset += o.reset;
        self.closed += o.closed;
        self.timeouts += o.timeouts;
        self.connect_timeouts += o.connect_timeouts;
        self.not_connected += o.not_connected;
        self.unexpected += o.unexpected;
        self.late += o.late;
        self.other += o.other;
        for m in &o.messages {
            self.note(m.clone());
        }
    }
}

/// How late the generator itself sent open-mode requests, compared with their
/// intended send times (µs). Latency is measured from the intended time either
/// way; a large lag says the generator (not only the server) fell behind, and a
/// step of a latency-vs-load curve whose p99 lag is large was not measured well.
#[derive(Debug, Clone)]
pub struct SendLag(pub Histogram<u64>);

impl Default for SendLag {
    fn default() -> Self {
        SendLag(new_histogram())
    }
}

impl SendLag {
    pub fn record(&mut self, lag: Duration) {
        record(&mut self.0, micros(lag));
    }

    pub fn add(&mut self, o: &SendLag) {
        add_hist(&mut self.0, &o.0);
    }
}

/// Latency histograms of one thread: request latency per interval (for the interval
/// log), and for churn the connect time and connect-to-reply time.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Start of interval 0; set by [`Recorder::start_measuring`].
    measure_start: Instant,
    interval: Duration,
    /// `intervals[i]` holds replies completed in `[start + i*interval, start + (i+1)*interval)`.
    pub intervals: Vec<Histogram<u64>>,
    /// The interval the last reply fell in, and its bounds: replies come in time
    /// order, so nearly every one falls in the same interval as the one before, and
    /// two comparisons find it instead of a duration division per reply.
    current: usize,
    current_start: Instant,
    current_end: Instant,
    pub connect: Histogram<u64>,
    pub connect_to_reply: Histogram<u64>,
}

/// Whole microseconds, the unit of every histogram.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Recorder {
    pub fn new(measure_start: Instant, interval: Duration) -> Recorder {
        Recorder {
            measure_start,
            interval: interval.max(Duration::from_nanos(1)),
            intervals: Vec::new(),
            current: 0,
            // An empty range: the first reply finds its interval the long way.
            current_start: measure_start,
            current_end: measure_start,
            connect: new_histogram(),
            connect_to_reply: new_histogram(),
        }
    }

    /// Sets the start of interval 0 (when measuring starts, after warmup).
    pub fn start_measuring(&mut self, at: Instant) {
        self.measure_start = at;
        (self.current_start, self.current_end) = (at, at);
    }

    /// Records one request's latency, in the interval of `now` (its completion).
    pub fn latency(&mut self, now: Instant, latency: Duration) {
        let idx = self.interval_of(now);
        record(&mut self.intervals[idx], micros(latency));
    }

    /// Records a request still waiting when the window closed at `deadline`, with
    /// its wait so far (from `latency_from`): a lower bound of its latency.
    pub fn waiting(&mut self, deadline: Instant, latency_from: Instant) {
        self.latency(deadline, deadline.saturating_duration_since(latency_from));
    }

    /// Index of the interval holding `now`, creating its histogram if needed.
    fn interval_of(&mut self, now: Instant) -> usize {
        if now < self.current_start || now >= self.current_end {
            let since = now.saturating_duration_since(self.measure_start);
            let n = u32::try_from(since.as_nanos() / self.interval.as_nanos()).unwrap_or(u32::MAX);
            self.current = n as usize;
            self.current_start = self.measure_start + self.interval * n;
            self.current_end = self.current_start + self.interval;
            while self.intervals.len() <= self.current {
                self.intervals.push(new_histogram());
            }
        }
        self.current
    }

    pub fn connect(&mut self, d: Duration) {
        record(&mut self.connect, micros(d));
    }

    pub fn connect_to_reply(&mut self, d: Duration) {
        record(&mut self.connect_to_reply, micros(d));
    }
}

/// Everything one event-loop thread counted.
#[derive(Debug, Clone)]
pub struct ThreadStats {
    pub counts: Counts,
    pub connects: ConnectCounts,
    pub errors: ErrorCounts,
    pub lag: SendLag,
    pub rec: Recorder,
    /// When the last measured reply arrived (ends a `requests`-bounded run).
    pub last_completion: Option<Instant>,
    /// Measured replies of each connection (closed and open loop, UDP), and
    /// whether it saw an error, in no particular order: the per-client view.
    pub per_client: Vec<(u64, bool)>,
    /// Connections answered at least once when the ramp ended.
    pub served_at_ramp_end: u64,
    /// Sum of the latencies (µs) of the replies received in the window.
    pub answered_us: u64,
    /// The local addresses the connections came from, each once.
    pub sources: Vec<IpAddr>,
}

impl ThreadStats {
    pub fn new(measure_start: Instant, interval: Duration) -> ThreadStats {
        ThreadStats {
            counts: Counts::default(),
            connects: ConnectCounts::default(),
            errors: ErrorCounts::default(),
            lag: SendLag::default(),
            rec: Recorder::new(measure_start, interval),
            last_completion: None,
            per_client: Vec::new(),
            served_at_ramp_end: 0,
            answered_us: 0,
            sources: Vec::new(),
        }
    }

    /// A connection (or UDP socket) was set up from local address `ip`.
    pub fn source(&mut self, ip: IpAddr) {
        if !self.sources.contains(&ip) {
            self.sources.push(ip);
        }
    }

    /// A reply that came in the window, `latency` after its request was sent (or
    /// due), `bytes` long; `wrong`: not the uppercased request.
    pub fn answered(&mut self, wrong: bool, bytes: usize, now: Instant, latency: Duration) {
        if wrong {
            self.counts.mismatched += 1;
        } else {
            self.counts.ok += 1;
        }
        self.counts.bytes_received += bytes as u64;
        self.answered_us += micros(latency);
        self.rec.latency(now, latency);
        self.last_completion = Some(now);
    }

    /// A request still waiting when the window closed at `deadline`, sent (or due)
    /// at `latency_from`: a lower bound in the latency record. One sent before the
    /// window (a starved client's) waited through all of it and counts too.
    pub fn waiting(&mut self, deadline: Instant, latency_from: Instant) {
        self.counts.unfinished += 1;
        self.rec.waiting(deadline, latency_from);
    }

    /// The window closed: one client's measured replies, and whether it saw an
    /// error.
    pub fn client(&mut self, measured_replies: u64, errored: bool) {
        self.per_client.push((measured_replies, errored));
        if measured_replies == 0 {
            self.counts.starved += 1;
        }
    }
}

/// All threads' statistics added up.
#[derive(Debug, Clone)]
pub struct Totals {
    pub counts: Counts,
    pub connects: ConnectCounts,
    pub errors: ErrorCounts,
    pub lag: SendLag,
    pub intervals: Vec<Histogram<u64>>,
    pub latency: Histogram<u64>,
    pub connect: Histogram<u64>,
    pub connect_to_reply: Histogram<u64>,
    pub last_completion: Option<Instant>,
    pub per_client: Vec<(u64, bool)>,
    pub served_at_ramp_end: u64,
    pub answered_us: u64,
    /// Every thread's [`ThreadStats::sources`], each address once, sorted.
    pub sources: Vec<IpAddr>,
}

impl Totals {
    pub fn merge(threads: Vec<ThreadStats>) -> Totals {
        let mut t = Totals {
            counts: Counts::default(),
            connects: ConnectCounts::default(),
            errors: ErrorCounts::default(),
            lag: SendLag::default(),
            intervals: Vec::new(),
            latency: new_histogram(),
            connect: new_histogram(),
            connect_to_reply: new_histogram(),
            last_completion: None,
            per_client: Vec::new(),
            served_at_ramp_end: 0,
            answered_us: 0,
            sources: Vec::new(),
        };
        for s in threads {
            t.sources.extend_from_slice(&s.sources);
            t.per_client.extend_from_slice(&s.per_client);
            t.served_at_ramp_end += s.served_at_ramp_end;
            t.answered_us += s.answered_us;
            t.counts.add(&s.counts);
            t.connects.add(&s.connects);
            t.errors.add(&s.errors);
            t.lag.add(&s.lag);
            t.last_completion = t.last_completion.max(s.last_completion);
            add_hist(&mut t.connect, &s.rec.connect);
            add_hist(&mut t.connect_to_reply, &s.rec.connect_to_reply);
            for (i, h) in s.rec.intervals.iter().enumerate() {
                if t.intervals.len() <= i {
                    t.intervals.push(new_histogram());
                }
                add_hist(&mut t.intervals[i], h);
            }
        }
        for h in &t.intervals {
            add_hist(&mut t.latency, h);
        }
        t.sources.sort_unstable();
        t.sources.dedup();
        t
    }
}

/// Adds `src` into `dst`. Both auto-resize, so this cannot fail; a failure would be
/// a bug in the histogram crate, and is ignored rather than crashing a run.
pub fn add_hist(dst: &mut Histogram<u64>, src: &Histogram<u64>) {
    dst.auto(true);
    let _ = dst.add(src);
}

/// Percentiles and moments of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    pub stddev_us: f64,
}

impl LatencySummary {
    /// Summarizes `h` (all zeros when it is empty).
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            min_us: h.min(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            p9999_us: h.value_at_quantile(0.9999),
            max_us: h.max(),
            mean_us: h.mean(),
            stddev_us: h.stdev(),
        }
    }
}

/// Header of the latency table (`socklab load`, `load merge`).
pub fn write_latency_header(f: &mut dyn std::fmt::Write) -> std::fmt::Result {
    writeln!(
        f,
        "{:<22}{:>10}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
        "latency (µs)",
        "count",
        "min",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "p99.99",
        "max",
        "mean",
        "stddev"
    )
}

/// One row of the latency table.
pub fn write_latency_row(
    f: &mut dyn std::fmt::Write,
    name: &str,
    s: &LatencySummary,
) -> std::fmt::Result {
    writeln!(
        f,
        "{:<22}{:>10}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9.1}{:>9.1}",
        name,
        s.count,
        s.min_us,
        s.p50_us,
        s.p90_us,
        s.p99_us,
        s.p999_us,
        s.p9999_us,
        s.max_us,
        s.mean_us,
        s.stddev_us
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_land_in_the_interval_of_their_completion_in_any_order() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0, Duration::from_secs(1));
        let us = Duration::from_micros(5);
        for ms in [1500, 200, 1600, 999, 1000, 3001] {
            r.latency(t0 + Duration::from_millis(ms), us);
        }
        let counts: Vec<u64> = r.intervals.iter().map(|h| h.len()).collect();
        assert_eq!(counts, [2, 3, 0, 1]);
        r.start_measuring(t0 + Duration::from_secs(3));
        r.latency(t0 + Duration::from_millis(3500), us);
        assert_eq!(r.intervals[0].len(), 3);
    }

    #[test]
    fn threads_add_up_exactly() {
        let t0 = Instant::now();
        let mut a = ThreadStats::new(t0, Duration::from_secs(1));
        let mut b = ThreadStats::new(t0, Duration::from_secs(1));
        a.rec.latency(t0, Duration::from_micros(100));
        b.rec
            .latency(t0 + Duration::from_millis(1500), Duration::from_micros(300));
        a.counts.ok = 1;
        b.counts.ok = 1;
        b.errors.note("x".into());
        let t = Totals::merge(vec![a, b]);
        assert_eq!(t.counts.ok, 2);
        assert_eq!(t.intervals.len(), 2);
        assert_eq!(t.latency.len(), 2);
        let s = LatencySummary::of(&t.latency);
        assert_eq!(s.min_us, 100);
        let mut big = new_histogram();
        record(&mut big, 5_000_000);
        assert!(big.max() >= 4_990_000);
        assert!((299..=301).contains(&s.max_us));
        assert_eq!(t.errors.messages, vec!["x".to_string()]);
    }
}

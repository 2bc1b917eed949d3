//! The result of a run: [`LoadReport`], its JSON form (`"schema": "socklab-load/2"`),
//! its human table, and its HdrHistogram interval log.
//!
//! # Latency over all clients
//!
//! A latency figure over answered requests only is a lie of omission: a server that
//! serves 4 of 1,000 clients answers those 4 fast and never reports the 996 others.
//! So every latency here counts every client, by two rules:
//!
//! 1. **A request still waiting when the window closes** enters the record with its
//!    wait so far — a lower bound of its latency ([`Counts::unfinished`] of them).
//!    A client never served has one such request, waiting since before the window.
//!    This is [`LoadReport::latency_timed`]: every measured request once. Its mean
//!    is the one Little's law predicts (requests in flight ÷ throughput).
//! 2. **A closed-loop client that waited stands for the requests it would have
//!    sent.** A closed loop sends its next request only after a reply, so a client
//!    stalled for 500 ms records one slow request where a client served at the
//!    cell's pace would have sent many (coordinated omission). HdrHistogram's
//!    closed-loop correction adds, for a value `W` above the expected interval `I`,
//!    the values `W − I`, `W − 2I`, … down to `I` — the waits of the requests not
//!    sent. The expected interval is each client's fair share of the throughput:
//!    `I = requests in flight ÷ throughput` (conns × pipeline ÷ replies per second),
//!    the mean latency of a server that served everyone alike. This is
//!    [`LoadReport::latency`], the headline. For a fair server it barely differs
//!    from the timed one; for a server that starved clients its p99 is the
//!    starved clients' wait. Open loop needs no correction (it charges each request
//!    from its intended send time), so there the two are the same.

use std::fmt;
use std::io::{self, Write};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::{LoadConfig, Mode, Transport};
use crate::hlog::{self, Hist, LogInterval};
use crate::stats::{
    write_latency_header, write_latency_row, ConnectCounts, Counts, ErrorCounts, LatencySummary,
    Totals,
};
use crate::sys::CpuTimes;

/// The `schema` field of every JSON report. Bump the number on any change a reader
/// would notice (a renamed or removed field, a changed unit).
pub const SCHEMA: &str = "socklab-load/2";

/// Above this share of its CPUs, the load generator may have been the bottleneck.
const SATURATED: f64 = 0.90;

/// Below this share of the target rate, open mode says the rate was not reached.
const RATE_REACHED: f64 = 0.95;

/// How the ramp went (see [`crate::event_loop`]).
#[derive(Debug, Clone, Copy)]
pub struct RampTiming {
    /// From the traffic's start to the moment every connection had had a reply
    /// (or to the limit).
    pub length: Duration,
    /// Every connection had been answered; false when the ramp hit its limit or
    /// stalled.
    pub complete: bool,
    /// It ended early: no new client had been answered for a while (see
    /// [`crate::shared::Ramp::patience`]).
    pub stalled: bool,
    /// How long no new client had been answered when it ended.
    pub quiet: Duration,
    /// Connections answered at least once when the ramp ended.
    pub served: u64,
}

/// What the runner measured about time (besides the histograms).
#[derive(Debug, Clone)]
pub struct RunTiming {
    pub measure_start_wall: SystemTime,
    pub connect_phase: Duration,
    pub ramp: Option<RampTiming>,
    pub measured: Duration,
    pub stopped_by_requests: bool,
    pub connected_at_start: u64,
    pub cpu: CpuTimes,
    pub cpu_wall: Duration,
}

/// Everything one run measured. Serializes to the versioned JSON schema
/// [`SCHEMA`]; histograms are included raw (base64 HdrHistogram V2) so results can
/// be merged and re-summarized later.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    pub schema: String,
    /// socklab-loadgen version that produced it.
    pub version: String,
    /// The configuration as run (`threads` resolved).
    pub config: LoadConfig,
    /// When measuring started (after warmup), Unix seconds.
    pub started_at_unix_s: f64,
    /// Length of the measured window: `duration`, or for a counted run the time to
    /// the last reply.
    pub measured_s: f64,
    /// `"duration"` or `"requests"`: what ended the run.
    pub stopped_by: String,
    pub counts: Counts,
    pub errors: ErrorCounts,
    pub connections: Connections,
    pub throughput: Throughput,
    /// Open mode only: did the generator deliver the rate it was asked for?
    pub rate: Option<RateCheck>,
    /// Request latency over all clients (µs; see the module docs): from the send
    /// (closed, churn) or the intended send time (open), requests still waiting
    /// included, closed loops corrected for coordinated omission.
    pub latency: LatencySummary,
    /// Every measured request once, as timed: the answered ones, and the ones still
    /// waiting at the end with their wait so far. No correction.
    pub latency_timed: LatencySummary,
    /// Closed loop: the expected interval (µs) of the coordinated-omission
    /// correction, requests in flight ÷ throughput. `None`: no correction.
    pub correction_interval_us: Option<f64>,
    /// Closed and open loop, UDP: how the requests spread over the clients.
    pub clients: Option<Clients>,
    /// Closed loop: the cross-check every closed-loop measurement must pass.
    pub little: Option<Little>,
    /// Churn only: connect() to established (µs).
    pub connect: Option<LatencySummary>,
    /// Churn only: connect() start to the verified reply (µs).
    pub connect_to_reply: Option<LatencySummary>,
    /// The load generator's own CPU use while measuring.
    pub cpu: CpuUsage,
    pub histograms: Histograms,
    /// Things a reader must know before trusting the numbers.
    pub warnings: Vec<String>,
}

/// Connection setup over the whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connections {
    pub requested: usize,
    /// Established when the traffic started (closed and open modes; UDP: sockets).
    pub connected_at_start: u64,
    /// Untimed time spent opening connections before the traffic started.
    pub connect_phase_s: f64,
    /// The ramp, when the run had one.
    pub ramp: Option<Ramp>,
    #[serde(flatten)]
    pub counts: ConnectCounts,
    /// The local addresses the connections (UDP: sockets) came from, as the
    /// kernel reported them (`getsockname`): the `bind` address when one was set.
    #[serde(default)]
    pub sources: Vec<IpAddr>,
}

/// The ramp: from the traffic's start until every client had been answered once.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Ramp {
    pub limit_s: f64,
    /// How long it took (the limit, when it was hit).
    pub length_s: f64,
    /// Whether every client had been answered by then.
    pub complete: bool,
    /// Whether it ended early because no new client had been answered for a
    /// while: [`crate::shared::RAMP_STALL`], or longer for a server that was still
    /// getting to new clients, ever more slowly ([`crate::shared::STALL_FACTOR`]).
    #[serde(default)]
    pub stalled: bool,
    /// How long no new client had been answered when it ended.
    #[serde(default)]
    pub quiet_s: f64,
    /// Clients answered at least once when it ended.
    pub served: u64,
}

impl Ramp {
    /// `ended at its 5.0 s limit`, or `stalled after 1.02 s (no new client answered
    /// for the last 1.0 s)`, or `was complete after 0.41 s`.
    pub fn how_it_ended(&self) -> String {
        if self.complete {
            format!("was complete after {:.2} s", self.length_s)
        } else if self.stalled {
            format!(
                "stalled after {:.2} s (no new client answered for the last {:.1} s)",
                self.length_s, self.quiet_s
            )
        } else {
            format!("ended at its {:.1} s limit", self.limit_s)
        }
    }
}

/// The per-client view: requests completed per connection in the window.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Clients {
    pub conns: usize,
    /// Clients with at least one measured reply.
    pub served: u64,
    /// Clients that saw at least one error over the run (a failed connect, a reset
    /// or close, a timeout or lost datagram, a wrong reply): each client once.
    pub with_errors: u64,
    pub requests_min: u64,
    pub requests_median: f64,
    pub requests_max: u64,
    /// Jain's fairness index of the requests per client, (Σx)² / (n·Σx²): 1 when
    /// every client got the same share, 1/n when one client got everything.
    /// `None` when no client got a reply.
    pub fairness: Option<f64>,
}

impl Clients {
    /// The view of `per_client` (measured replies of each connection, and whether
    /// it saw an error).
    pub fn of(per_client: &[(u64, bool)]) -> Option<Clients> {
        if per_client.is_empty() {
            return None;
        }
        let mut v: Vec<u64> = per_client.iter().map(|&(n, _)| n).collect();
        v.sort_unstable();
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2] as f64
        } else {
            (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
        };
        let sum: f64 = v.iter().map(|&x| x as f64).sum();
        let squares: f64 = v.iter().map(|&x| (x as f64) * (x as f64)).sum();
        Some(Clients {
            conns: n,
            served: v.iter().filter(|&&x| x > 0).count() as u64,
            with_errors: per_client.iter().filter(|&&(_, e)| e).count() as u64,
            requests_min: v[0],
            requests_median: median,
            requests_max: v[n - 1],
            fairness: (squares > 0.0).then(|| sum * sum / (n as f64 * squares)),
        })
    }
}

impl Clients {
    /// The histogram of requests per client (its clients' measured replies), as
    /// [`Histograms::requests_per_client`] keeps it.
    pub fn histogram(per_client: &[(u64, bool)]) -> hdrhistogram::Histogram<u64> {
        let mut h = crate::stats::new_histogram();
        for &(n, _) in per_client {
            crate::stats::record(&mut h, n);
        }
        h
    }

    /// The per-client view of several runs taken together: generators that each
    /// drove clients of their own against one server (processes, hosts). Their
    /// histograms of requests per client add up, and every figure comes from the
    /// sum — the median and the fairness of the whole cannot be had from the parts'
    /// medians and fairnesses — with the clients that saw errors summed. Exact up
    /// to 2,048 requests per client (HdrHistogram's 3 significant digits), within
    /// 0.1 % past that. `None` without parts or clients.
    pub fn combine<'a>(
        parts: impl IntoIterator<Item = (&'a Clients, &'a Hist)>,
    ) -> Option<Clients> {
        let mut h = crate::stats::new_histogram();
        let mut with_errors = 0;
        for (c, part) in parts {
            crate::stats::add_hist(&mut h, &part.0);
            with_errors += c.with_errors;
        }
        if h.is_empty() {
            return None;
        }
        let (mut sum, mut squares) = (0.0_f64, 0.0_f64);
        for v in h.iter_recorded() {
            let (x, k) = (v.value_iterated_to() as f64, v.count_at_value() as f64);
            sum += k * x;
            squares += k * x * x;
        }
        let n = h.len();
        Some(Clients {
            conns: n as usize,
            served: n - h.count_between(0, 0),
            with_errors,
            requests_min: h.min(),
            requests_median: h.value_at_quantile(0.5) as f64,
            requests_max: h.max(),
            fairness: (squares > 0.0).then(|| sum * sum / (n as f64 * squares)),
        })
    }
}

/// Little's law, L = λW: in a closed loop `conns × pipeline` requests are always in
/// flight, so the mean latency of the replies received in the window must be
/// about that number divided by the throughput. A gap means the clients spent
/// time not waiting (reconnecting, or a busy load generator), or the server did
/// not reach a steady state in the window.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Little {
    pub in_flight: u64,
    /// in_flight ÷ replies per second, in µs.
    pub predicted_mean_us: f64,
    /// The mean latency of the replies received in the window (the waits of
    /// requests still outstanding at its end are partial, so they are left out
    /// here).
    pub measured_mean_us: f64,
}

impl Little {
    /// measured ÷ predicted: near 1 when the law holds.
    pub fn ratio(&self) -> f64 {
        if self.predicted_mean_us > 0.0 {
            self.measured_mean_us / self.predicted_mean_us
        } else {
            f64::NAN
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Throughput {
    /// Correct replies per second.
    pub requests_per_s: f64,
    pub bytes_sent_per_s: f64,
    pub bytes_received_per_s: f64,
    /// Churn: completed connect/request/close sessions per second.
    pub connections_per_s: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RateCheck {
    pub target_per_s: f64,
    /// Replies (right or wrong) per second.
    pub achieved_per_s: f64,
    pub reached: bool,
    /// How late the generator itself sent requests, vs their intended time.
    pub send_lag_mean_us: f64,
    pub send_lag_p99_us: u64,
    pub send_lag_max_us: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CpuUsage {
    pub user_s: f64,
    pub sys_s: f64,
    /// Wall time the CPU times were taken over (measuring to the end of the run).
    pub wall_s: f64,
    /// (user + sys) / wall: 1.0 means one CPU fully busy.
    pub cpus_used: f64,
    /// `cpus_used` / threads: near 1.0 the generator could not go faster.
    pub utilization: f64,
    pub saturated: bool,
}

/// Raw histograms (µs), base64 HdrHistogram V2 each.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Histograms {
    /// Request latency over all clients ([`LoadReport::latency`]).
    pub latency: Hist,
    /// Every measured request once, as timed ([`LoadReport::latency_timed`]): the
    /// sum of the intervals.
    pub latency_timed: Hist,
    /// Request latency per interval of `interval_s`, by completion time.
    pub interval_s: f64,
    pub intervals: Vec<Hist>,
    pub connect: Option<Hist>,
    pub connect_to_reply: Option<Hist>,
    /// Closed and open loop, UDP: how many clients got how many measured replies
    /// (values are requests, not µs), so the per-client view of several runs can
    /// be put together exactly ([`Clients::combine`]).
    #[serde(default)]
    pub requests_per_client: Option<Hist>,
}

/// Replies read just after the deadline (their requests went out before it) land
/// in an interval past the measured window; they belong to the last one.
fn fold_late_intervals(
    mut intervals: Vec<hdrhistogram::Histogram<u64>>,
    measured_s: f64,
    interval: Duration,
) -> Vec<hdrhistogram::Histogram<u64>> {
    let keep = ((measured_s / interval.as_secs_f64()).ceil() as usize).max(1);
    while intervals.len() > keep {
        if let Some(late) = intervals.pop() {
            if let Some(last) = intervals.last_mut() {
                crate::stats::add_hist(last, &late);
            }
        }
    }
    intervals
}

fn per_s(n: u64, d: f64) -> f64 {
    if d > 0.0 {
        n as f64 / d
    } else {
        0.0
    }
}

impl LoadReport {
    /// Builds the report from the threads' totals.
    pub fn build(cfg: &LoadConfig, t: Totals, timing: RunTiming) -> LoadReport {
        let measured_s = timing.measured.as_secs_f64();
        let churn = cfg.mode == Mode::Churn;
        let cpu_s = (timing.cpu.user + timing.cpu.system).as_secs_f64();
        let wall_s = timing.cpu_wall.as_secs_f64();
        let cpus_used = if wall_s > 0.0 { cpu_s / wall_s } else { 0.0 };
        let utilization = cpus_used / cfg.threads.max(1) as f64;
        let cpu = CpuUsage {
            user_s: timing.cpu.user.as_secs_f64(),
            sys_s: timing.cpu.system.as_secs_f64(),
            wall_s,
            cpus_used,
            utilization,
            saturated: utilization >= SATURATED,
        };
        let completed_per_s = per_s(t.counts.completed(), measured_s);
        let closed = cfg.mode == Mode::Closed;
        let in_flight = (cfg.conns * cfg.pipeline) as u64;
        let interval_us =
            (closed && completed_per_s > 0.0).then(|| in_flight as f64 / completed_per_s * 1e6);
        let all_clients = match interval_us {
            Some(i) => t.latency.clone_correct((i.round() as u64).max(1)),
            None => t.latency.clone(),
        };
        let timed = LatencySummary::of(&t.latency);
        let answered = t.counts.completed();
        let little = interval_us.map(|i| Little {
            in_flight,
            predicted_mean_us: i,
            measured_mean_us: if answered > 0 {
                t.answered_us as f64 / answered as f64
            } else {
                0.0
            },
        });
        let rate = (cfg.mode == Mode::Open).then(|| {
            let target = cfg.rate.unwrap_or(0.0);
            let achieved = per_s(t.counts.completed(), measured_s);
            RateCheck {
                target_per_s: target,
                achieved_per_s: achieved,
                reached: achieved >= RATE_REACHED * target,
                send_lag_mean_us: t.lag.0.mean(),
                send_lag_p99_us: t.lag.0.value_at_quantile(0.99),
                send_lag_max_us: t.lag.0.max(),
            }
        });
        let mut r = LoadReport {
            schema: SCHEMA.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            config: cfg.clone(),
            started_at_unix_s: timing
                .measure_start_wall
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            measured_s,
            stopped_by: if timing.stopped_by_requests {
                "requests"
            } else {
                "duration"
            }
            .to_string(),
            counts: t.counts,
            errors: t.errors,
            connections: Connections {
                requested: cfg.conns,
                connected_at_start: timing.connected_at_start,
                connect_phase_s: timing.connect_phase.as_secs_f64(),
                ramp: timing.ramp.map(|r| Ramp {
                    limit_s: cfg.ramp_limit.as_secs_f64(),
                    length_s: r.length.as_secs_f64(),
                    complete: r.complete,
                    stalled: r.stalled,
                    quiet_s: r.quiet.as_secs_f64(),
                    served: r.served,
                }),
                counts: t.connects,
                sources: t.sources.clone(),
            },
            throughput: Throughput {
                requests_per_s: per_s(t.counts.ok, measured_s),
                bytes_sent_per_s: per_s(t.counts.bytes_sent, measured_s),
                bytes_received_per_s: per_s(t.counts.bytes_received, measured_s),
                connections_per_s: churn.then(|| per_s(t.counts.sessions, measured_s)),
            },
            rate,
            latency: LatencySummary::of(&all_clients),
            latency_timed: timed,
            correction_interval_us: interval_us,
            clients: (!churn).then(|| Clients::of(&t.per_client)).flatten(),
            little,
            connect: churn.then(|| LatencySummary::of(&t.connect)),
            connect_to_reply: churn.then(|| LatencySummary::of(&t.connect_to_reply)),
            cpu,
            histograms: Histograms {
                latency: Hist(all_clients),
                latency_timed: Hist(t.latency),
                interval_s: cfg.interval.as_secs_f64(),
                intervals: fold_late_intervals(t.intervals, measured_s, cfg.interval)
                    .into_iter()
                    .map(Hist)
                    .collect(),
                connect: churn.then_some(Hist(t.connect)),
                connect_to_reply: churn.then_some(Hist(t.connect_to_reply)),
                requests_per_client: (!churn && !t.per_client.is_empty())
                    .then(|| Hist(Clients::histogram(&t.per_client))),
            },
            warnings: Vec::new(),
        };
        r.warnings = r.find_warnings(cfg);
        r
    }

    fn find_warnings(&self, cfg: &LoadConfig) -> Vec<String> {
        let mut w = Vec::new();
        let c = &self.counts;
        if c.ok == 0 {
            w.push(format!(
                "no correct reply at all from {} ({} errors, {} mismatched)",
                cfg.target,
                self.errors.total(),
                c.mismatched
            ));
        }
        if c.mismatched > 0 {
            w.push(format!(
                "{} replies were not the uppercased request: is the server's framing {}?",
                c.mismatched, cfg.framing
            ));
        }
        if self.errors.total() > 0 {
            w.push(format!("{} errors (see errors)", self.errors.total()));
        }
        if let Some(n) = cfg.requests {
            if self.stopped_by != "requests" {
                w.push(format!(
                    "stopped at the {:.1} s duration limit before all {n} requests were answered",
                    cfg.duration.as_secs_f64()
                ));
            }
        }
        if let Some(rate) = &self.rate {
            if !rate.reached {
                w.push(format!(
                    "target rate not reached: {:.0} of {:.0} req/s",
                    rate.achieved_per_s, rate.target_per_s
                ));
            }
        }
        if self.cpu.saturated {
            w.push(format!(
                "the load generator used {:.0}% of its {} CPU(s): it may have been the bottleneck",
                self.cpu.utilization * 100.0,
                cfg.threads
            ));
        }
        if cfg.mode != Mode::Churn && (self.connections.connected_at_start as usize) < cfg.conns {
            w.push(format!(
                "only {} of {} connections were open when the traffic started",
                self.connections.connected_at_start, cfg.conns
            ));
        }
        if let Some(r) = self.connections.ramp.filter(|r| !r.complete) {
            w.push(format!(
                "the ramp {} with {} of {} clients answered once",
                r.how_it_ended(),
                grouped(r.served),
                grouped(cfg.conns as u64)
            ));
        }
        if c.starved > 0 {
            w.push(format!(
                "{} of {} clients got no reply while measuring: their waits are in the latency \
                 as lower bounds",
                grouped(c.starved),
                grouped(cfg.conns as u64)
            ));
        }
        w
    }

    /// Pretty JSON of the whole report.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Writes the HdrHistogram interval log: one line per interval of request
    /// latency, plus (churn) one tagged line each for connect and connect-to-reply.
    pub fn write_hdr_log<W: Write>(&self, w: &mut W) -> io::Result<()> {
        let start = UNIX_EPOCH + Duration::from_secs_f64(self.started_at_unix_s.max(0.0));
        let iv = Duration::from_secs_f64(self.histograms.interval_s);
        let measured = Duration::from_secs_f64(self.measured_s);
        let mut lines: Vec<LogInterval<'_>> = self
            .histograms
            .intervals
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let begin = iv * i as u32;
                LogInterval {
                    start: begin,
                    length: iv
                        .min(measured.saturating_sub(begin))
                        .max(Duration::from_millis(1)),
                    tag: None,
                    hist: &h.0,
                }
            })
            .collect();
        for (tag, h) in [
            (hlog::CONNECT_TAG, &self.histograms.connect),
            (
                hlog::CONNECT_TO_REPLY_TAG,
                &self.histograms.connect_to_reply,
            ),
        ] {
            if let Some(h) = h {
                lines.push(LogInterval {
                    start: Duration::ZERO,
                    length: measured,
                    tag: Some(tag),
                    hist: &h.0,
                });
            }
        }
        let c = &self.config;
        let comments = [format!(
            "[socklab load {} {} {} {} conns={} size={} host={}]",
            c.transport,
            c.mode,
            c.framing,
            c.target,
            c.conns,
            c.size,
            hostname()
        )];
        hlog::write_log(w, start, &comments, &lines)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// 1234567 -> "1,234,567".
fn grouped(n: u64) -> String {
    let digits = n.to_string().into_bytes();
    let mut out = Vec::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.iter().rev().enumerate() {
        if i > 0 && i % 3 == 0 {
            out.push(b',');
        }
        out.push(*d);
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// A duration given in µs, in the unit that reads best: `48.2 µs`, `21.6 ms`, `2.80 s`.
fn micros(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{us:.1} µs")
    }
}

fn mb(bytes_per_s: f64) -> String {
    format!("{:.2} MB/s", bytes_per_s / 1e6)
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let pipeline = if c.pipeline > 1 {
            format!(", pipeline {}", c.pipeline)
        } else {
            String::new()
        };
        let rate = c.rate.map_or(String::new(), |r| format!(", rate {r}/s"));
        let framing = match c.transport {
            Transport::Tcp => format!(" {}", c.framing),
            Transport::Udp => String::new(),
        };
        writeln!(
            f,
            "socklab load: {} {}{} -> {}, {} conns, {} threads, {} B{}{}",
            c.transport, c.mode, framing, c.target, c.conns, c.threads, c.size, pipeline, rate
        )?;
        writeln!(
            f,
            "measured {:.2} s after {:.2} s warmup (stopped by {})",
            self.measured_s,
            c.warmup.as_secs_f64(),
            self.stopped_by
        )?;
        writeln!(f)?;
        let n = &self.counts;
        writeln!(
            f,
            "requests     sent {}  ok {}  mismatched {}  failed {}  unfinished {}",
            grouped(n.sent),
            grouped(n.ok),
            grouped(n.mismatched),
            grouped(n.failed),
            grouped(n.unfinished)
        )?;
        if let Some(cl) = &self.clients {
            writeln!(
                f,
                "clients      {} of {} served, {} saw errors; requests per client min {} / median {} / max {}{}",
                grouped(cl.served),
                grouped(cl.conns as u64),
                grouped(cl.with_errors),
                grouped(cl.requests_min),
                cl.requests_median,
                grouped(cl.requests_max),
                cl.fairness
                    .map_or(String::new(), |j| format!("; fairness (Jain) {j:.3}"))
            )?;
        }
        let t = &self.throughput;
        write!(
            f,
            "throughput   {} req/s  {} sent  {} received",
            grouped(t.requests_per_s.round() as u64),
            mb(t.bytes_sent_per_s),
            mb(t.bytes_received_per_s)
        )?;
        if let Some(cps) = t.connections_per_s {
            write!(f, "  {} connections/s", grouped(cps.round() as u64))?;
        }
        writeln!(f)?;
        if let Some(r) = &self.rate {
            writeln!(
                f,
                "rate         target {} req/s, achieved {} req/s ({}); send lag mean {:.0} µs, p99 {} µs, max {} µs",
                grouped(r.target_per_s.round() as u64),
                grouped(r.achieved_per_s.round() as u64),
                if r.reached { "reached" } else { "NOT reached" },
                r.send_lag_mean_us,
                r.send_lag_p99_us,
                r.send_lag_max_us
            )?;
        }
        let cn = &self.connections;
        match (c.transport, c.mode) {
            (Transport::Udp, _) => writeln!(f, "sockets      {}", cn.requested)?,
            (Transport::Tcp, Mode::Churn) => writeln!(
                f,
                "connections  {} concurrent; {} connects, {} retries",
                cn.requested,
                grouped(cn.counts.succeeded),
                grouped(cn.counts.retries)
            )?,
            (Transport::Tcp, _) => writeln!(
                f,
                "connections  {} requested, {} open at start ({:.2} s to open); {} connects, {} retries",
                cn.requested,
                cn.connected_at_start,
                cn.connect_phase_s,
                grouped(cn.counts.succeeded),
                grouped(cn.counts.retries)
            )?,
        }
        if c.bind.is_some() || cn.sources.len() > 1 {
            let from: Vec<String> = cn.sources.iter().map(|ip| ip.to_string()).collect();
            writeln!(f, "source       {}", from.join(", "))?;
        }
        if let Some(r) = &cn.ramp {
            if r.complete {
                writeln!(
                    f,
                    "ramp         all {} clients answered once after {:.2} s",
                    grouped(cn.requested as u64),
                    r.length_s
                )?;
            } else {
                writeln!(
                    f,
                    "ramp         {} of {} clients answered once; the ramp {}",
                    grouped(r.served),
                    grouped(cn.requested as u64),
                    r.how_it_ended()
                )?;
            }
        }
        if let Some(l) = &self.little {
            writeln!(
                f,
                "Little's law {} in flight / {} replies/s = {} predicted mean latency; {} measured",
                grouped(l.in_flight),
                grouped(per_s(n.completed(), self.measured_s).round() as u64),
                micros(l.predicted_mean_us),
                micros(l.measured_mean_us)
            )?;
        }
        writeln!(f)?;
        write_latency_header(f)?;
        write_latency_row(f, "request, all clients", &self.latency)?;
        if self.correction_interval_us.is_some() {
            write_latency_row(f, "request, as timed", &self.latency_timed)?;
        }
        if let Some(s) = &self.connect {
            write_latency_row(f, "connect", s)?;
        }
        if let Some(s) = &self.connect_to_reply {
            write_latency_row(f, "connect->reply", s)?;
        }
        if n.unfinished > 0 {
            writeln!(
                f,
                "             {} requests were still waiting when the window closed: their waits are lower bounds",
                grouped(n.unfinished)
            )?;
        }
        if let Some(i) = self.correction_interval_us {
            writeln!(
                f,
                "             all clients: each wait W also stands for the requests not sent meanwhile (W - I, W - 2I, ...; I = {})",
                micros(i)
            )?;
        }
        writeln!(f)?;
        let e = &self.errors;
        if e.total() == 0 && e.late == 0 {
            writeln!(f, "errors       none")?;
        } else {
            writeln!(
                f,
                "errors       refused {}  reset {}  closed {}  timeouts {}  connect timeouts {}  not connected {}  unexpected {}  late {}  other {}",
                e.refused, e.reset, e.closed, e.timeouts, e.connect_timeouts, e.not_connected, e.unexpected, e.late, e.other
            )?;
            for m in &e.messages {
                writeln!(f, "             e.g. {m}")?;
            }
        }
        let cpu = &self.cpu;
        writeln!(
            f,
            "loadgen CPU  {:.2} s user + {:.2} s sys over {:.2} s = {:.2} CPUs ({:.0}% of {} thread(s))",
            cpu.user_s,
            cpu.sys_s,
            cpu.wall_s,
            cpu.cpus_used,
            cpu.utilization * 100.0,
            c.threads
        )?;
        for w in &self.warnings {
            writeln!(f, "WARNING: {w}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jain's index is 1 for an even share and 1/n when one client gets all.
    #[test]
    fn the_per_client_view_tells_fair_from_starving() {
        let fair = Clients::of(&[(5, false), (5, false), (5, true), (5, false)]).unwrap();
        assert_eq!((fair.served, fair.requests_median), (4, 5.0));
        assert_eq!(fair.with_errors, 1);
        assert!((fair.fairness.unwrap() - 1.0).abs() < 1e-9);
        let one = Clients::of(&[(0, false), (12, false), (0, false), (0, false)]).unwrap();
        assert_eq!((one.served, one.requests_min, one.requests_max), (1, 0, 12));
        assert!((one.fairness.unwrap() - 0.25).abs() < 1e-9);
        assert_eq!(
            Clients::of(&[(0, false), (0, false)]).unwrap().fairness,
            None
        );
        assert!(Clients::of(&[]).is_none());
    }

    /// Put together from the parts' histograms, the per-client view is the one
    /// the clients of all parts would have given in one run.
    #[test]
    fn the_per_client_view_of_parts_is_that_of_the_whole() {
        let a = [(0, false), (3, true), (3, false)];
        let b = [(1, false), (5, false), (9, true), (0, false)];
        let part = |p: &[(u64, bool)]| (Clients::of(p).unwrap(), Hist(Clients::histogram(p)));
        let (pa, pb) = (part(&a), part(&b));
        let all: Vec<(u64, bool)> = a.iter().chain(&b).copied().collect();
        let whole = Clients::of(&all).unwrap();
        let combined = Clients::combine([(&pa.0, &pa.1), (&pb.0, &pb.1)]).unwrap();
        assert_eq!(
            (combined.conns, combined.served, combined.with_errors),
            (whole.conns, whole.served, whole.with_errors)
        );
        assert_eq!(
            (
                combined.requests_min,
                combined.requests_median,
                combined.requests_max
            ),
            (0, 3.0, 9)
        );
        assert_eq!(whole.requests_median, 3.0);
        let (f, g) = (combined.fairness.unwrap(), whole.fairness.unwrap());
        assert!((f - g).abs() < 1e-9, "{f} vs {g}");
        assert!(Clients::combine([]).is_none());
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}

//! Several loaders' reports as one cell: what the server saw from all of them.
//!
//! Counts add up; the latency percentiles come from the loaders' interval logs
//! added up by the same code `socklab load merge` runs (`hlog::merge_files`), never
//! from averaged percentiles; the per-client view from their histograms of
//! requests per client added up (`Clients::combine`); the ramp ended when the
//! last loader's did. The merged count must equal the sum of the loaders'
//! (every request they measured, answered or still waiting, once): if it does
//! not, the merge lost or doubled something and the cell fails.

use anyhow::bail;
use hdrhistogram::Histogram;
use socklab_loadgen::stats::{add_hist, new_histogram};
use socklab_loadgen::{Clients, LatencySummary, Little, LoadReport, Ramp};
use socklab_report::schema::{Errors, LoadSummary};

use crate::compare::cell::{percentiles, summarize};

/// The loaders' reports as one, with `timed`, the histogram of their interval
/// logs merged, and `loadgen_cpus`, the CPUs they shared.
pub fn merge(
    parts: &[LoadReport],
    timed: &Histogram<u64>,
    loadgen_cpus: usize,
) -> anyhow::Result<LoadSummary> {
    if parts.is_empty() {
        bail!("no loader produced a report");
    }
    let sum: u64 = parts.iter().map(|p| p.latency_timed.count).sum();
    if timed.len() != sum {
        bail!(
            "the merged interval logs hold {} values, the loaders measured {sum}: the merge lost \
             or doubled some",
            timed.len()
        );
    }
    // Open loop needs no correction, so every client's latency is the timed one;
    // closed loops' corrected histograms add up as they are.
    let all_clients = if parts.iter().all(|p| p.correction_interval_us.is_none()) {
        timed.clone()
    } else {
        let mut h = new_histogram();
        for p in parts {
            add_hist(&mut h, &p.histograms.latency.0);
        }
        h
    };
    let each: Vec<LoadSummary> = parts.iter().map(summarize).collect();
    let total = |f: fn(&LoadSummary) -> f64| each.iter().map(f).sum::<f64>();
    let duration_s = parts.iter().map(|p| p.measured_s).fold(0.0, f64::max);
    let loadgen_cpu_s = total(|s| s.loadgen_cpu_s);
    Ok(LoadSummary {
        requests: each.iter().map(|s| s.requests).sum(),
        duration_s,
        throughput_rps: total(|s| s.throughput_rps),
        bytes_per_s: total(|s| s.bytes_per_s),
        latency_us: percentiles(&LatencySummary::of(&all_clients)),
        latency_timed_us: percentiles(&LatencySummary::of(timed)),
        waiting: each.iter().map(|s| s.waiting).sum(),
        clients: clients(parts),
        ramp: ramp(parts),
        little: little(parts),
        errors: each
            .iter()
            .fold(Errors::default(), |a, s| add(a, &s.errors)),
        loadgen_cpu_s,
        loadgen_cpu_util: if duration_s > 0.0 {
            loadgen_cpu_s / (duration_s * loadgen_cpus.max(1) as f64)
        } else {
            0.0
        },
        // The worst loader's: percentiles of the parts do not add up.
        send_lag_p99_us: each
            .iter()
            .filter_map(|s| s.send_lag_p99_us)
            .reduce(f64::max),
        connects_per_s: each.iter().map(|s| s.connects_per_s).sum(),
        connect_latency_us: None,
    })
}

/// The per-client view of every loader's clients together.
fn clients(parts: &[LoadReport]) -> Option<Clients> {
    let views: Option<Vec<_>> = parts
        .iter()
        .map(|p| {
            Some((
                p.clients.as_ref()?,
                p.histograms.requests_per_client.as_ref()?,
            ))
        })
        .collect();
    Clients::combine(views?)
}

/// The ramp of all loaders: over when the last one's was, complete if every one
/// was, stalled if one stalled and not all were complete.
fn ramp(parts: &[LoadReport]) -> Option<Ramp> {
    let ramps: Option<Vec<Ramp>> = parts.iter().map(|p| p.connections.ramp).collect();
    let ramps = ramps?;
    let complete = ramps.iter().all(|r| r.complete);
    Some(Ramp {
        limit_s: ramps.iter().map(|r| r.limit_s).fold(0.0, f64::max),
        length_s: ramps.iter().map(|r| r.length_s).fold(0.0, f64::max),
        complete,
        stalled: !complete && ramps.iter().any(|r| r.stalled),
        quiet_s: ramps.iter().map(|r| r.quiet_s).fold(0.0, f64::max),
        served: ramps.iter().map(|r| r.served).sum(),
    })
}

/// Little's law over every loader's clients (closed loops only): all requests in
/// flight against all replies per second, and the mean of every reply.
fn little(parts: &[LoadReport]) -> Option<Little> {
    let laws: Option<Vec<(Little, f64)>> = parts
        .iter()
        .map(|p| {
            let completed = p.counts.completed() as f64;
            Some((p.little?, completed))
        })
        .collect();
    let laws = laws?;
    let completed: f64 = laws.iter().map(|(_, n)| n).sum();
    let rate: f64 = laws
        .iter()
        .map(|(l, _)| l.in_flight as f64 / (l.predicted_mean_us / 1e6))
        .sum();
    let in_flight: u64 = laws.iter().map(|(l, _)| l.in_flight).sum();
    Some(Little {
        in_flight,
        predicted_mean_us: if rate > 0.0 {
            in_flight as f64 / rate * 1e6
        } else {
            0.0
        },
        measured_mean_us: if completed > 0.0 {
            laws.iter()
                .map(|(l, n)| l.measured_mean_us * n)
                .sum::<f64>()
                / completed
        } else {
            0.0
        },
    })
}

fn add(a: Errors, b: &Errors) -> Errors {
    Errors {
        clients: a.clients + b.clients,
        mismatches: a.mismatches + b.mismatches,
        resets: a.resets + b.resets,
        refused: a.refused + b.refused,
        timeouts: a.timeouts + b.timeouts,
        lost: a.lost + b.lost,
        other: a.other + b.other,
        unserved_conns: a.unserved_conns + b.unserved_conns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant, SystemTime};

    use socklab_loadgen::report::{RampTiming, RunTiming};
    use socklab_loadgen::stats::{ThreadStats, Totals};
    use socklab_loadgen::sys::CpuTimes;
    use socklab_loadgen::{LoadConfig, Mode};

    /// A loader's report: `replies` (client, µs) answered in the window, one
    /// request per starved client still waiting at its end.
    fn part(conns: usize, replies: &[(usize, u64)], starved: &[usize]) -> LoadReport {
        let start = Instant::now();
        let cfg = LoadConfig {
            mode: Mode::Open,
            rate: Some(100.0),
            conns,
            threads: 1,
            ..LoadConfig::default()
        };
        let mut s = ThreadStats::new(start, Duration::from_secs(1));
        s.rec.start_measuring(start);
        let mut per = vec![0u64; conns];
        for &(c, us) in replies {
            s.answered(
                false,
                64,
                start + Duration::from_millis(10),
                Duration::from_micros(us),
            );
            per[c] += 1;
        }
        for _ in starved {
            s.waiting(start + Duration::from_secs(1), start);
        }
        for n in per {
            s.client(n, false);
        }
        let timing = RunTiming {
            measure_start_wall: SystemTime::now(),
            connect_phase: Duration::from_millis(300),
            ramp: Some(RampTiming {
                length: Duration::from_secs(2),
                complete: starved.is_empty(),
                stalled: !starved.is_empty(),
                quiet: Duration::ZERO,
                served: (conns - starved.len()) as u64,
            }),
            measured: Duration::from_secs(1),
            stopped_by_requests: false,
            connected_at_start: conns as u64,
            cpu: CpuTimes {
                user: Duration::from_millis(100),
                system: Duration::from_millis(200),
            },
            cpu_wall: Duration::from_secs(1),
        };
        LoadReport::build(&cfg, Totals::merge(vec![s]), timing)
    }

    /// Counts add up, the per-client view is that of all clients, the ramp is
    /// the last loader's, and the percentiles come from the merged histogram.
    #[test]
    fn loaders_merge_into_one_cell() {
        let a = part(3, &[(0, 100), (1, 100), (2, 100), (0, 100)], &[]);
        let b = part(2, &[(0, 10_000)], &[1]);
        let mut timed = new_histogram();
        for p in [&a, &b] {
            add_hist(&mut timed, &p.histograms.latency_timed.0);
        }
        let m = merge(&[a.clone(), b.clone()], &timed, 1).unwrap();
        assert_eq!(m.requests, 5);
        assert_eq!(m.waiting, 1);
        assert_eq!(m.latency_timed_us.p50, 100.0);
        assert!(m.latency_us.max >= 999_000.0, "the starved wait: {m:?}");
        let c = m.clients.unwrap();
        assert_eq!((c.conns, c.served, c.requests_max), (5, 4, 2));
        assert_eq!(m.errors.unserved_conns, 1);
        let r = m.ramp.unwrap();
        assert_eq!((r.complete, r.stalled, r.served), (false, true, 4));
        assert!((m.loadgen_cpu_s - 0.6).abs() < 1e-9, "{m:?}");
        assert!((m.loadgen_cpu_util - 0.6).abs() < 1e-9, "{m:?}");
        assert!(m.little.is_none(), "open loop has no Little check");
        // A merge that lost a loader's values is refused.
        let only_a = a.histograms.latency_timed.0.clone();
        assert!(merge(&[a, b], &only_a, 1).is_err());
        assert!(merge(&[], &new_histogram(), 1).is_err());
    }
}

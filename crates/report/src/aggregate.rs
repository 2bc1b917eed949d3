//! Repeats -> one figure per metric: median with min–max.
//!
//! Timed numbers on a shared, small machine move ±20–30 % between runs (see
//! DESIGN.md, "Measuring honestly"). A single number would invite readers to rank
//! models on noise, so every timed metric is kept as a [`Range`] over the repeats
//! and compared only through [`crate::compare`]. Failed cells never enter a median:
//! they are kept aside as [`Failure`]s and listed with their reasons.

use std::collections::BTreeMap;

use crate::schema::{Cell, Results};

/// Scenarios in the order the report teaches them.
pub const KNOWN_SCENARIOS: &[&str] = &[
    "scaling", "churn", "cpu", "sleep", "slow", "chaos", "udp", "c100k",
];

/// The spread of one metric over the repeats of one group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Repeats that measured this metric.
    pub n: usize,
}

impl Range {
    /// `None` for no samples. NaN samples are dropped: they mean "not measured".
    pub fn from_samples(samples: &[f64]) -> Option<Range> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Range {
            median,
            min: v[0],
            max: v[n - 1],
            mean: v.iter().sum::<f64>() / n as f64,
            n,
        })
    }

    /// One exact value (a counted metric): min = median = max.
    pub fn exact(x: f64) -> Range {
        Range {
            median: x,
            min: x,
            max: x,
            mean: x,
            n: 1,
        }
    }
}

pub use crate::metric::{Better, Metric, Unit, Words};

/// All repeats of one model x scenario x connection count x work (x server CPUs
/// x offered rate).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub model: String,
    pub scenario: String,
    pub conns: usize,
    pub work: String,
    pub server_cpus: usize,
    pub offered_rps: Option<f64>,
    /// Repeats that measured something, and repeats that failed.
    pub ok: usize,
    pub failed: usize,
    pub metrics: BTreeMap<Metric, Range>,
    /// Scenario-specific figures (`Cell::extra`), by name.
    pub extra: BTreeMap<String, Range>,
    /// Any repeat whose load generator used more than [`LOADGEN_BUSY`] of its CPUs.
    pub loadgen_busy: bool,
    /// Any repeat whose ramp ended before every client was answered: at its
    /// limit, or because no new client was being answered (stalled).
    pub ramp_limited: bool,
    pub ramp_stalled: bool,
    /// HDR histogram logs of the repeats, relative to the run directory.
    pub hdr_logs: Vec<String>,
}

/// Above this share of its CPUs the load generator may have been the bottleneck.
pub const LOADGEN_BUSY: f64 = 0.9;
/// A window in which the hypervisor took more than this share of the machine's CPU
/// time (steal) is named in the report: on the development VM an idle machine had
/// about 1 %, and 100 connections at 2,000 requests/s, whose traffic kept waking
/// the vCPUs from idle, had 17 %, the load generator's sends up to 19 ms late
/// (results/README.md has the commands).
pub const STEAL_NOTED: f64 = 0.05;

impl Group {
    pub fn get(&self, metric: Metric) -> Option<&Range> {
        self.metrics.get(&metric)
    }

    /// Whether any repeat left a client without a reply in the window: then its
    /// latencies are the waits of clients never answered, lower bounds.
    pub fn starved(&self) -> bool {
        self.get(Metric::Unserved).is_some_and(|u| u.max > 0.0)
    }

    pub fn extra(&self, name: &str) -> Option<&Range> {
        self.extra.get(name)
    }
}

/// One cell that did not yield numbers, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub model: String,
    pub scenario: String,
    pub conns: usize,
    pub repeat: usize,
    pub work: String,
    pub reason: String,
}

/// A whole run, aggregated: what the report, the charts and the claims read.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Models (timed or counted) and scenarios present, in teaching order.
    pub models: Vec<String>,
    pub scenarios: Vec<String>,
    /// The server on one CPU, every scenario but the curve: ordered by scenario,
    /// connections, model, work.
    pub groups: Vec<Group>,
    /// The same scenarios with the server on more CPUs (`--server-cpus`).
    pub spans: Vec<Group>,
    /// The curve's steps, one group per offered rate.
    pub steps: Vec<Group>,
    pub failures: Vec<Failure>,
}

/// What cells are grouped by: model, scenario, conns, work, server CPUs, offered
/// rate (curve steps, to the request per second). Two runs' groups with the same
/// key are the same measurement made twice (`socklab report --baseline`).
pub type Key = (String, String, usize, String, usize, Option<u64>);

fn key(
    model: &str,
    scenario: &str,
    conns: usize,
    work: &str,
    server_cpus: usize,
    offered_rps: Option<f64>,
) -> Key {
    (
        model.to_string(),
        scenario.to_string(),
        conns,
        work.to_string(),
        server_cpus,
        offered_rps.map(|r| r.round() as u64),
    )
}

impl Group {
    /// The key this group's cells were grouped by.
    pub fn key(&self) -> Key {
        key(
            &self.model,
            &self.scenario,
            self.conns,
            &self.work,
            self.server_cpus,
            self.offered_rps,
        )
    }
}

impl Summary {
    pub fn from_results(results: &Results) -> Summary {
        let names = results.cells.iter().map(|c| c.model.as_str());
        let counted = results.counted.iter().map(|c| c.model.as_str());
        let models = teaching_order(names.chain(counted), &model_rank);
        let scenarios = teaching_order(results.cells.iter().map(|c| c.scenario.as_str()), &|s| {
            KNOWN_SCENARIOS.iter().position(|k| *k == s)
        });
        let mut cells: BTreeMap<Key, Vec<&Cell>> = BTreeMap::new();
        for c in &results.cells {
            let key = key(
                &c.model,
                &c.scenario,
                c.conns,
                &c.work,
                c.server_cpus,
                c.offered_rps,
            );
            cells.entry(key).or_default().push(c);
        }
        let failures = results
            .cells
            .iter()
            .filter_map(|c| {
                Some(Failure {
                    model: c.model.clone(),
                    scenario: c.scenario.clone(),
                    conns: c.conns,
                    repeat: c.repeat,
                    work: c.work.clone(),
                    reason: c.failure_reason()?,
                })
            })
            .collect();
        let mut all: Vec<Group> = cells.into_iter().map(|(k, v)| group(k, &v)).collect();
        let pos = |list: &[String], x: &str| list.iter().position(|m| m == x);
        all.sort_by_key(|g| {
            (
                pos(&scenarios, &g.scenario),
                g.conns,
                g.server_cpus,
                pos(&models, &g.model),
                g.work.clone(),
                g.offered_rps.map(|r| r as u64),
            )
        });
        let (steps, rest): (Vec<Group>, Vec<Group>) =
            all.into_iter().partition(|g| g.offered_rps.is_some());
        let (groups, spans) = rest.into_iter().partition(|g| g.server_cpus == 1);
        Summary {
            models,
            scenarios,
            groups,
            spans,
            steps,
            failures,
        }
    }

    /// The groups of one scenario, in report order.
    pub fn in_scenario<'a>(&'a self, scenario: &'a str) -> impl Iterator<Item = &'a Group> + 'a {
        self.groups.iter().filter(move |g| g.scenario == scenario)
    }

    /// Distinct connection counts measured in a scenario, ascending.
    pub fn conns_in(&self, scenario: &str) -> Vec<usize> {
        let mut v: Vec<usize> = self.in_scenario(scenario).map(|g| g.conns).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Distinct `--work` values in a scenario.
    pub fn works_in(&self, scenario: &str) -> Vec<String> {
        let mut v: Vec<String> = self.in_scenario(scenario).map(|g| g.work.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// The first group (any work) of a model at a connection count.
    pub fn group(&self, model: &str, scenario: &str, conns: usize) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.scenario == scenario && g.model == model && g.conns == conns)
    }

    /// The largest connection count of a scenario at which at least two groups
    /// measured what `has` looks for: where a comparison is possible and the design
    /// is most tested. Falls back to the largest count with any data.
    pub fn key_conns(&self, scenario: &str, has: impl Fn(&Group) -> bool) -> Option<usize> {
        let counts = self.conns_in(scenario);
        let with = |n: usize| {
            self.in_scenario(scenario)
                .filter(|g| g.conns == n && has(g))
                .count()
        };
        counts
            .iter()
            .rev()
            .find(|&&n| with(n) >= 2)
            .or_else(|| counts.iter().rev().find(|&&n| with(n) >= 1))
            .copied()
    }
}

fn group((model, scenario, conns, work, server_cpus, _): Key, cells: &[&Cell]) -> Group {
    let offered_rps = cells.first().and_then(|c| c.offered_rps);
    let ok: Vec<&Cell> = cells.iter().copied().filter(|c| c.is_ok()).collect();
    let mut metrics = BTreeMap::new();
    for &m in Metric::ALL {
        let samples: Vec<f64> = ok.iter().filter_map(|c| m.sample(c)).collect();
        if let Some(r) = Range::from_samples(&samples) {
            metrics.insert(m, r);
        }
    }
    let mut extra_samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for c in &ok {
        for (k, v) in &c.extra {
            extra_samples.entry(k.clone()).or_default().push(*v);
        }
    }
    let extra = extra_samples
        .into_iter()
        .filter_map(|(k, v)| Some((k, Range::from_samples(&v)?)))
        .collect();
    let loadgen_busy = ok
        .iter()
        .filter_map(|c| Metric::LoadgenUtil.sample(c))
        .any(|u| u > LOADGEN_BUSY);
    let ramps: Vec<_> = ok.iter().filter_map(|c| c.load.as_ref()?.ramp).collect();
    let ramp_limited = ramps.iter().any(|r| !r.complete);
    let ramp_stalled = ramps.iter().any(|r| r.stalled);
    let mut hdr_logs: Vec<(usize, String)> = cells
        .iter()
        .filter_map(|c| Some((c.repeat, c.hdr_log.clone()?)))
        .collect();
    hdr_logs.sort();
    Group {
        model,
        scenario,
        conns,
        work,
        server_cpus,
        offered_rps,
        ok: ok.len(),
        failed: cells.len() - ok.len(),
        metrics,
        extra,
        loadgen_busy,
        ramp_limited,
        ramp_stalled,
        hdr_logs: hdr_logs.into_iter().map(|(_, p)| p).collect(),
    }
}

/// A model's place in teaching order: its row in the one model table
/// (`socklab_models::MODELS`), or for a name the table does not know, its family's
/// row (a variant sorts with its family); `None` for a stranger.
fn model_rank(name: &str) -> Option<usize> {
    let rows = socklab_models::MODELS;
    let row = |n: &str| rows.iter().position(|m| m.name == n);
    row(name).or_else(|| row(socklab_models::family(name)))
}

/// Distinct names, the ones `rank` knows first in its order, then the rest in order
/// of first appearance.
fn teaching_order<'a>(
    names: impl Iterator<Item = &'a str>,
    rank: &dyn Fn(&str) -> Option<usize>,
) -> Vec<String> {
    let mut seen: Vec<&str> = Vec::new();
    for n in names {
        if !seen.contains(&n) {
            seen.push(n);
        }
    }
    let mut ordered: Vec<(usize, usize, &str)> = seen
        .iter()
        .enumerate()
        .map(|(i, n)| (rank(n).unwrap_or(usize::MAX), i, *n))
        .collect();
    ordered.sort();
    ordered.into_iter().map(|(_, _, n)| n.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An even number of samples takes the mean of the middle two.
    #[test]
    fn median_of_even_and_odd() {
        let r = Range::from_samples(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((r.median, r.min, r.max), (2.0, 1.0, 3.0));
        let r = Range::from_samples(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(r.median, 2.5);
        assert!(Range::from_samples(&[]).is_none());
    }

    /// Known models sort in teaching order, variants with their family, new
    /// models after them in order of appearance.
    #[test]
    fn models_in_teaching_order() {
        let names = ["zeta", "uring", "thread", "prefork-lock", "fork", "alpha"];
        let got = teaching_order(names.into_iter(), &model_rank);
        assert_eq!(
            got,
            ["fork", "prefork-lock", "thread", "uring", "zeta", "alpha"]
        );
    }
}

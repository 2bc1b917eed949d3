//! What a comparison runs: the models, the scenarios, and the order of cells.
//!
//! Timed cells are repeated and *interleaved*: repeat 0 of every model, then
//! repeat 1 of every model, and so on, so a slow minute on a shared machine
//! lands on every model alike instead of on whichever ran then.

use std::time::Duration;

/// One model as the comparison runs it: a row of the one model table.
pub type ModelRun = socklab_models::Model;
pub use socklab_models::MODELS;

/// The `socklab serve` arguments compare runs `model` with: its row's, then
/// compare's tuning (four workers for the pools).
pub fn serve_args(model: &ModelRun) -> Vec<String> {
    model
        .serve
        .iter()
        .chain(model.compare_args)
        .map(|s| s.to_string())
        .collect()
}

/// The scenarios the report teaches from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Closed loop at growing connection counts.
    Scaling,
    /// Open loop at stepped offered rates, at a fixed connection count: latency
    /// against load, the knee, capacity per core.
    Curve,
    /// Connect, one request, close.
    Churn,
    /// `cpu:50us` of work per request.
    Cpu,
    /// `sleep:2ms` of work per request.
    Sleep,
    /// A few clients dribbling bytes while normal clients want service.
    Slow,
    /// A handler crashes (`--chaos`): how many other clients are lost.
    Chaos,
    /// Datagrams.
    Udp,
    /// 100,000 mostly idle connections, open loop at a modest rate, from several
    /// load processes: who holds them all, and what stops the others (see
    /// `c100k`). Full mode only, unless named.
    C100k,
}

pub const ALL_SCENARIOS: &[Scenario] = &[
    Scenario::Scaling,
    Scenario::Curve,
    Scenario::Churn,
    Scenario::Cpu,
    Scenario::Sleep,
    Scenario::Slow,
    Scenario::Chaos,
    Scenario::Udp,
    Scenario::C100k,
];

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Scaling => "scaling",
            Scenario::Curve => "curve",
            Scenario::Churn => "churn",
            Scenario::Cpu => "cpu",
            Scenario::Sleep => "sleep",
            Scenario::Slow => "slow",
            Scenario::Chaos => "chaos",
            Scenario::Udp => "udp",
            Scenario::C100k => "c100k",
        }
    }

    /// Run only in full mode unless `--scenarios` names it: c100k takes a minute
    /// a model and holds a machine's worth of sockets.
    pub fn full_only(self) -> bool {
        self == Scenario::C100k
    }

    pub fn parse(name: &str) -> Option<Scenario> {
        ALL_SCENARIOS.iter().copied().find(|s| s.name() == name)
    }

    /// The server's per-request work in this scenario.
    pub fn work(self) -> &'static str {
        match self {
            Scenario::Cpu => "cpu:50us",
            Scenario::Sleep => "sleep:2ms",
            _ => "none",
        }
    }

    /// A fault-isolation cell is an event, not a rate: it is run once; so is
    /// c100k (where a model stops is a limit, not a rate, and a cell takes a
    /// minute).
    pub fn repeated(self) -> bool {
        !matches!(self, Scenario::Chaos | Scenario::C100k)
    }

    /// Whether the scenario is also run with the server on more CPUs than one
    /// (`--server-cpus`): the ones that show what another core buys.
    pub fn spans_cpus(self) -> bool {
        matches!(self, Scenario::Cpu | Scenario::Curve)
    }
}

/// How big a run is.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: &'static str,
    pub repeats: usize,
    pub cell: Duration,
    pub warmup: Duration,
    /// Longest a cell waits, before warm-up, for every client to be answered once
    /// (see `socklab load --ramp-limit`): a model that never serves some clients
    /// costs this much per cell.
    pub ramp_limit: Duration,
    pub scaling_conns: Vec<usize>,
    /// Connections in the non-scaling scenarios.
    pub scenario_conns: usize,
    /// Slow clients in the slow scenario.
    pub slow_clients: usize,
    /// Requests in the shorter counted run (the longer one has twice as many).
    pub counted_requests: u64,
    /// Connection counts of the counted pass.
    pub counted_conns: Vec<usize>,
    /// Whether to run callgrind for instructions per request (slow).
    pub callgrind: bool,
    /// Connection counts of the latency-vs-load curve, and how often it is run.
    pub curve_conns: Vec<usize>,
    pub curve_repeats: usize,
    /// CPU counts the server gets in the scenarios that span CPUs (cpu, curve);
    /// every other scenario pins it to one.
    pub server_cpus: Vec<usize>,
    /// Seconds each model is soaked for (0: no soak).
    pub soak: Duration,
    /// The c100k scenario's size.
    pub c100k: C100kPlan,
}

/// How big the c100k scenario is: connections, the total rate, and how many load
/// processes share them (`None`: as few as hold them, see `c100k::loaders`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct C100kPlan {
    pub conns: usize,
    pub rate: f64,
    pub loaders: Option<usize>,
}

impl Default for C100kPlan {
    /// 100,000 connections at 10,000 requests per second: each client sends once
    /// every 10 s, mostly idle, as the users of a chat or push service are.
    fn default() -> Self {
        C100kPlan {
            conns: 100_000,
            rate: 10_000.0,
            loaders: None,
        }
    }
}

impl Plan {
    /// About seven minutes on two cores: short cells, three repeats.
    pub fn quick() -> Plan {
        Plan {
            mode: "quick",
            repeats: 3,
            cell: Duration::from_millis(600),
            warmup: Duration::from_millis(200),
            // As long as full mode's. On the 2-CPU VM (2026-12-01) thread per client
            // answered 1,000 clients once after 1.68 s in one cell and 4.87 s in
            // another, two cells stopped at a 5 s limit with 681 and 944 served, and
            // fork took 9.27 s. Only models still getting to new clients use it; the
            // others stall out after a second.
            ramp_limit: Duration::from_secs(10),
            scaling_conns: vec![1, 100, 1000],
            scenario_conns: 10,
            slow_clients: 4,
            counted_requests: 2000,
            counted_conns: vec![1, 100],
            callgrind: false,
            curve_conns: vec![100],
            curve_repeats: 1,
            server_cpus: every_count(),
            soak: Duration::ZERO,
            c100k: C100kPlan::default(),
        }
    }

    /// Everything, including 10,000 connections and callgrind.
    pub fn full() -> Plan {
        Plan {
            mode: "full",
            repeats: 5,
            cell: Duration::from_secs(3),
            warmup: Duration::from_secs(1),
            ramp_limit: Duration::from_secs(10),
            scaling_conns: vec![1, 10, 100, 1000, 10_000],
            scenario_conns: 10,
            slow_clients: 4,
            counted_requests: 5000,
            counted_conns: vec![1, 100],
            callgrind: true,
            curve_conns: vec![100, 1000],
            curve_repeats: 3,
            server_cpus: every_count(),
            soak: Duration::from_secs(45),
            c100k: C100kPlan::default(),
        }
    }

    /// The connection counts a scenario runs at.
    pub fn conns(&self, scenario: Scenario) -> Vec<usize> {
        match scenario {
            Scenario::Scaling => self.scaling_conns.clone(),
            Scenario::Curve => self.curve_conns.clone(),
            Scenario::Sleep => vec![100],
            Scenario::C100k => vec![self.c100k.conns],
            _ => vec![self.scenario_conns],
        }
    }

    /// The server CPU counts a scenario runs with.
    pub fn cpus(&self, scenario: Scenario) -> Vec<usize> {
        if scenario.spans_cpus() {
            self.server_cpus.clone()
        } else {
            vec![1]
        }
    }
}

/// One CPU, and every CPU this process may use (the same on a one-CPU machine).
fn every_count() -> Vec<usize> {
    let all = super::server::allowed_cpus().len().max(1);
    let mut v = vec![1, all];
    v.dedup();
    v
}

/// Where a cell's processes run: the server on the first `server` CPUs this
/// process may use, the load generator on the rest — or, when none are left, on
/// the last one (sharing it: a CPU-bound server's requests cost 50 µs each, the
/// load generator's a few). `None`: one CPU only, nothing pinned.
pub fn placement(allowed: &[usize], server: usize) -> Option<(Vec<usize>, Vec<usize>)> {
    if allowed.len() < 2 {
        return None;
    }
    let server = server.clamp(1, allowed.len());
    let (mine, rest) = allowed.split_at(server);
    let loadgen = if rest.is_empty() {
        allowed[allowed.len() - 1..].to_vec()
    } else {
        rest.to_vec()
    };
    Some((mine.to_vec(), loadgen))
}

/// One cell to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub model: &'static ModelRun,
    pub scenario: Scenario,
    pub conns: usize,
    pub repeat: usize,
    /// CPUs the server is pinned to.
    pub server_cpus: usize,
    /// Curve: the open-loop rate offered.
    pub offered_rps: Option<f64>,
}

impl Job {
    /// Whether `cell` is this job's measurement (a resumed run skips it).
    pub fn is(&self, cell: &socklab_report::schema::Cell) -> bool {
        cell.model == self.model.name
            && cell.scenario == self.scenario.name()
            && cell.conns == self.conns
            && cell.repeat == self.repeat
            && cell.work == self.scenario.work()
            && cell.server_cpus == self.server_cpus
            && cell.offered_rps == self.offered_rps
    }
}

/// Every timed cell, interleaved: repeat-major, then scenario, connections, CPUs,
/// model. The curve's cells are not here: each curve finds its own steps as it
/// goes (see `curve`).
pub fn jobs(plan: &Plan, models: &[&'static ModelRun], scenarios: &[Scenario]) -> Vec<Job> {
    let mut out = Vec::new();
    for repeat in 0..plan.repeats {
        for &scenario in scenarios {
            if (repeat > 0 && !scenario.repeated()) || scenario == Scenario::Curve {
                continue;
            }
            for conns in plan.conns(scenario) {
                for server_cpus in plan.cpus(scenario) {
                    for &model in models {
                        if scenario == Scenario::Udp && !model.udp {
                            continue;
                        }
                        out.push(Job {
                            model,
                            scenario,
                            conns,
                            repeat,
                            server_cpus,
                            offered_rps: None,
                        });
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_interleaved_across_models() {
        let models: Vec<_> = MODELS.iter().take(2).collect();
        let jobs = jobs(&Plan::quick(), &models, &[Scenario::Churn]);
        let order: Vec<_> = jobs.iter().map(|j| (j.repeat, j.model.name)).collect();
        assert_eq!(
            order,
            [
                (0, "iterative"),
                (0, "fork"),
                (1, "iterative"),
                (1, "fork"),
                (2, "iterative"),
                (2, "fork")
            ]
        );
    }

    #[test]
    fn udp_skips_models_without_udp_and_chaos_runs_once() {
        let models: Vec<_> = MODELS.iter().collect();
        let jobs = jobs(&Plan::quick(), &models, &[Scenario::Udp, Scenario::Chaos]);
        assert!(jobs
            .iter()
            .all(|j| j.scenario != Scenario::Udp || j.model.udp));
        assert_eq!(
            jobs.iter()
                .filter(|j| j.scenario == Scenario::Chaos)
                .count(),
            MODELS.len()
        );
    }
}

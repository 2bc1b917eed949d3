//! The first screen: one row per model (variants included) with what each design
//! costs and when it breaks, like Stevens' table of server designs (UNP, ch. 30),
//! each figure linking to the section that holds its evidence. The lessons under it
//! ([`crate::sentences::lessons`]) are computed from the same rows.

use crate::aggregate::{Metric, Range};
use crate::curve;
use crate::page::Ctx;

/// Connections the first screen quotes latency at (the tail where every model is
/// loaded but the event loops' memory lesson does not yet dominate).
pub const P99_CONNS: usize = 100;

/// One model's row.
#[derive(Debug, Clone, Default)]
pub struct Costs {
    pub model: String,
    /// What one client costs in the design (the model table says).
    pub per_client: String,
    /// Clients answered in the scaling scenario at its largest connection count.
    pub served: Option<(f64, usize)>,
    /// p99 over all clients in the scaling scenario at [`P99_CONNS`]; `true` when
    /// some clients were never answered (a lower bound).
    pub p99: Option<(Range, bool)>,
    /// Capacity per core at the curve's knee (100 connections, one CPU); `true`
    /// when it is a lower bound (the load generator's limit).
    pub per_core: Option<(Range, bool)>,
    /// PSS per held connection in the scaling scenario at its largest count.
    pub memory: Option<Range>,
    /// Churn: connections per second, server CPU per connection.
    pub churn_rate: Option<Range>,
    pub churn_cpu: Option<Range>,
    /// Sleep work: requests per second as a share of the ideal (every connection
    /// asleep at once, back to back), and the ideal.
    pub sleep: Option<(Range, f64)>,
    /// Slow scenario: the normal clients were all served beside the slow ones.
    pub beside_slow: Option<bool>,
    /// Chaos: other clients lost when one handler crashed, of how many, and
    /// whether the server survived.
    pub crash: Option<(f64, usize, bool)>,
    /// Counted at [`P99_CONNS`] connections (or the most the pass ran):
    /// syscalls, context switches and user-space instructions per request.
    pub counted: Option<CountedCosts>,
    /// c100k: `yes`, or how many it held and what stopped it.
    pub holds: Option<String>,
}

/// One model's counted costs per request at one connection count.
#[derive(Debug, Clone, Copy)]
pub struct CountedCosts {
    pub conns: usize,
    pub syscalls: Option<f64>,
    pub ctx_switches: Option<f64>,
    pub instructions: Option<f64>,
}

/// Every model's row, in teaching order.
pub fn costs(ctx: &Ctx) -> Vec<Costs> {
    let s = ctx.summary;
    let largest = s.conns_in("scaling").last().copied();
    let knees = curve::knees(ctx.results, &s.models);
    let counted_conns = ctx
        .results
        .counted
        .iter()
        .map(|c| c.conns)
        .filter(|&c| c <= P99_CONNS)
        .max();
    s.models
        .iter()
        .map(|model| {
            let at = |scenario: &str, conns: usize| s.group(model, scenario, conns);
            let scaling_top = largest.and_then(|n| at("scaling", n));
            let first_in =
                |scenario: &'static str| s.in_scenario(scenario).find(|g| &g.model == model);
            Costs {
                model: model.clone(),
                per_client: socklab_models::find(model)
                    .map_or_else(String::new, |m| m.per_client.to_string()),
                served: scaling_top.and_then(|g| Some((g.get(Metric::Served)?.median, g.conns))),
                p99: at("scaling", P99_CONNS)
                    .and_then(|g| Some((*g.get(Metric::P99)?, g.starved()))),
                per_core: knees
                    .iter()
                    .find(|k| &k.model == model && k.server_cpus == 1 && k.conns == P99_CONNS)
                    .and_then(|k| Some((k.per_core?, k.lower_bound))),
                memory: scaling_top.and_then(|g| g.get(Metric::PssPerConn).copied()),
                churn_rate: first_in("churn").and_then(|g| g.get(Metric::ConnectsPerS).copied()),
                churn_cpu: first_in("churn").and_then(|g| g.get(Metric::CpuPerRequest).copied()),
                sleep: first_in("sleep").and_then(|g| {
                    let ideal = g.conns as f64 / sleep_seconds(&g.work)?;
                    let r = g.get(Metric::Throughput)?;
                    Some((scaled(r, 1.0 / ideal), ideal))
                }),
                beside_slow: first_in("slow")
                    .and_then(|g| Some(g.get(Metric::Unserved)?.max == 0.0)),
                crash: first_in("chaos").and_then(|g| {
                    let lost = g.extra("other_clients_lost")?.median;
                    let survived = g.extra("server_survived")?.min >= 1.0;
                    Some((lost, g.conns, survived))
                }),
                holds: crate::c100k::glance(ctx, model),
                counted: counted_conns.and_then(|n| {
                    let c = ctx
                        .results
                        .counted
                        .iter()
                        .find(|c| &c.model == model && c.conns == n)?;
                    Some(CountedCosts {
                        conns: n,
                        syscalls: c.syscalls_per_request(),
                        ctx_switches: c.ctx_per_request(),
                        instructions: c.instructions_per_request,
                    })
                }),
            }
        })
        .collect()
}

/// `sleep:2ms` -> 0.002.
fn sleep_seconds(work: &str) -> Option<f64> {
    let d = work.strip_prefix("sleep:")?;
    let (digits, unit) = d.split_at(d.find(|c: char| !c.is_ascii_digit())?);
    let n: f64 = digits.parse().ok()?;
    let scale = match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "ns" => 1e-9,
        _ => return None,
    };
    Some(n * scale)
}

fn scaled(r: &Range, k: f64) -> Range {
    Range {
        median: r.median * k,
        min: r.min * k,
        max: r.max * k,
        mean: r.mean * k,
        n: r.n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_work_parses() {
        assert_eq!(sleep_seconds("sleep:2ms"), Some(0.002));
        assert_eq!(sleep_seconds("cpu:50us"), None);
        assert_eq!(sleep_seconds("sleep:5s"), Some(5.0));
    }
}

//! The latency-vs-load curve's rules: which steps were measured well, which were
//! sustained, where the knee is, and what one core can carry.
//!
//! The curve is the way serious server benchmarks answer "how much load can it
//! take" (wrk2; Gil Tene, "How NOT to measure latency"; mutilate's `--scan`): open
//! loop at stepped offered rates, and watch where the achieved rate stops following
//! the offered one and the tail bends up. Two rules come from Lancet (USENIX ATC
//! 2019), which refuses to report a point it could not measure:
//!
//! - a step is **measured well** only if the load generator kept its schedule (p99
//!   of send time − intended time under [`LAG_BOUND_US`]) and had CPU to spare
//!   (under [`crate::aggregate::LOADGEN_BUSY`]); a step that is not never defines a
//!   knee, and a curve that ends in one gives its capacity as a lower bound;
//! - a step is **sustained** when it is measured well, every client was answered,
//!   the achieved rate is at least [`SUSTAINED_SHARE`] of the offered one, and p99
//!   over all clients is within [`P99_BOUND_US`].
//!
//! The **knee** is the highest offered rate sustained. **Capacity per core** is
//! requests per second per fully used server CPU at the knee: 10⁶ ÷ server CPU µs
//! per request, from the window-exact server usage.

use crate::aggregate::LOADGEN_BUSY;
use crate::schema::Cell;

/// A step is sustained only if it achieved this share of the offered rate.
pub const SUSTAINED_SHARE: f64 = 0.95;
/// ... and its p99 over all clients stayed within this: 200 loopback round trips,
/// far above the millisecond hiccups a shared VM adds at any load, far below the
/// tens of milliseconds a queue builds past the knee.
pub const P99_BOUND_US: f64 = 5_000.0;
/// A step whose load generator sent its p99 request later than this after the
/// intended time did not keep its schedule.
pub const LAG_BOUND_US: f64 = 1_000.0;
/// The first step's offered rate (`socklab compare` starts every curve here).
pub const FIRST_STEP_RPS: f64 = 2_000.0;

/// What one step of a curve says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub offered: f64,
    pub achieved: f64,
    pub p99_us: f64,
    pub cpu_us_per_request: Option<f64>,
    /// The load generator kept its schedule and had CPU to spare.
    pub measured_well: bool,
    /// Every client was answered, without errors.
    pub all_served: bool,
    pub sustained: bool,
}

impl Step {
    /// The step a curve cell records; `None` for a cell that measured nothing.
    pub fn of(cell: &Cell) -> Option<Step> {
        let load = cell.load.as_ref()?;
        let offered = cell.offered_rps?;
        let achieved = load.throughput_rps;
        let lag = load.send_lag_p99_us.unwrap_or(0.0);
        let measured_well = load.loadgen_cpu_util <= LOADGEN_BUSY && lag <= LAG_BOUND_US;
        let all_served = load.errors.unserved_conns == 0 && load.errors.clients == 0;
        let p99_us = load.latency_us.p99;
        Some(Step {
            offered,
            achieved,
            p99_us,
            cpu_us_per_request: cell.cpu_us_per_request(),
            measured_well,
            all_served,
            sustained: measured_well
                && all_served
                && achieved >= SUSTAINED_SHARE * offered
                && p99_us <= P99_BOUND_US,
        })
    }

    /// Whether a curve stops after this step: it was not sustained, or not
    /// measured well (a higher rate would be measured worse).
    pub fn ends_curve(&self) -> bool {
        !self.sustained
    }

    /// Why this step was not sustained (`None` if it was). Clients never answered
    /// come first: a model that leaves them waiting for a turn or a worker does so
    /// at any rate, however late the load generator sent. Then the load
    /// generator's failure: a step it could not measure says nothing else of the
    /// server.
    pub fn shortfall(&self) -> Option<NoKnee> {
        if self.sustained {
            None
        } else if !self.all_served {
            Some(NoKnee::Unserved)
        } else if !self.measured_well {
            Some(NoKnee::LoadGenerator)
        } else if self.p99_us > P99_BOUND_US {
            Some(NoKnee::Slow)
        } else {
            Some(NoKnee::Short)
        }
    }
}

/// Why a curve has no knee: what went wrong at its first step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoKnee {
    /// Clients were left unanswered: a client waits for a turn or a free worker
    /// however low the rate.
    Unserved,
    /// p99 over all clients above [`P99_BOUND_US`].
    Slow,
    /// Less than [`SUSTAINED_SHARE`] of the offered rate achieved.
    Short,
    /// The load generator could not keep even the first step's schedule: the
    /// curve measured the client, not the server.
    LoadGenerator,
}

/// Where one curve bends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Knee {
    /// The highest offered rate sustained; the step after it was not sustained
    /// although measured well: the server's limit.
    At { offered: f64, per_core: Option<f64> },
    /// Every step sustained up to one the load generator could not measure: the
    /// server's limit is at least this (the load generator's on this machine).
    AtLeast { offered: f64, per_core: Option<f64> },
    /// Not even the first step was sustained, for this reason.
    None(NoKnee),
}

impl Knee {
    /// The knee of the steps of one curve, in offered order.
    pub fn of(steps: &[Step]) -> Knee {
        let mut last: Option<&Step> = None;
        for s in steps {
            if s.sustained {
                last = Some(s);
                continue;
            }
            let Some(k) = last else {
                return Knee::None(s.shortfall().unwrap_or(NoKnee::Short));
            };
            let per_core = k.cpu_us_per_request.map(|us| 1e6 / us);
            return if s.measured_well {
                Knee::At {
                    offered: k.offered,
                    per_core,
                }
            } else {
                Knee::AtLeast {
                    offered: k.offered,
                    per_core,
                }
            };
        }
        match last {
            // Sustained to the last step run: the curve was cut short.
            Some(k) => Knee::AtLeast {
                offered: k.offered,
                per_core: k.cpu_us_per_request.map(|us| 1e6 / us),
            },
            // No step at all: nothing was measured.
            None => Knee::None(NoKnee::LoadGenerator),
        }
    }

    pub fn offered(&self) -> Option<f64> {
        match self {
            Knee::At { offered, .. } | Knee::AtLeast { offered, .. } => Some(*offered),
            Knee::None(_) => None,
        }
    }

    pub fn per_core(&self) -> Option<f64> {
        match self {
            Knee::At { per_core, .. } | Knee::AtLeast { per_core, .. } => *per_core,
            Knee::None(_) => None,
        }
    }

    /// Why there is no knee, if there is none.
    pub fn missing(&self) -> Option<NoKnee> {
        match self {
            Knee::None(why) => Some(*why),
            _ => None,
        }
    }

    /// Whether the knee is only a lower bound (the load generator's limit).
    pub fn is_lower_bound(&self) -> bool {
        matches!(self, Knee::AtLeast { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered: f64, achieved: f64, p99: f64, well: bool) -> Step {
        Step {
            offered,
            achieved,
            p99_us: p99,
            cpu_us_per_request: Some(10.0),
            measured_well: well,
            all_served: true,
            sustained: well && achieved >= SUSTAINED_SHARE * offered && p99 <= P99_BOUND_US,
        }
    }

    /// The knee is the last sustained step before a measured-well failure.
    #[test]
    fn the_knee_is_the_last_sustained_step() {
        let steps = [
            step(10_000.0, 10_000.0, 100.0, true),
            step(20_000.0, 19_900.0, 200.0, true),
            step(40_000.0, 31_000.0, 9_000.0, true),
        ];
        assert_eq!(
            Knee::of(&steps),
            Knee::At {
                offered: 20_000.0,
                per_core: Some(100_000.0)
            }
        );
    }

    /// A curve that runs into the load generator's limit gives a lower bound, never
    /// a knee: the failure is the client's.
    #[test]
    fn a_load_generator_bound_curve_gives_a_lower_bound() {
        let steps = [
            step(10_000.0, 10_000.0, 100.0, true),
            step(20_000.0, 20_000.0, 150.0, true),
            step(40_000.0, 35_000.0, 3_000.0, false),
        ];
        let knee = Knee::of(&steps);
        assert!(knee.is_lower_bound(), "{knee:?}");
        assert_eq!(knee.offered(), Some(20_000.0));
        assert_eq!(
            Knee::of(&[step(10_000.0, 500.0, 1e6, true)]),
            Knee::None(NoKnee::Slow)
        );
        assert_eq!(
            Knee::of(&[step(10_000.0, 10_000.0, 100.0, false)]),
            Knee::None(NoKnee::LoadGenerator)
        );
    }

    /// Clients never answered are the model's doing whatever the load generator's
    /// lag: iterative serves one client of 100 at 2,000/s as at any rate.
    #[test]
    fn unserved_clients_outrank_a_late_load_generator() {
        let starved = Step {
            all_served: false,
            ..step(2_000.0, 20.0, 1.8e6, false)
        };
        assert_eq!(starved.shortfall(), Some(NoKnee::Unserved));
        assert_eq!(Knee::of(&[starved]), Knee::None(NoKnee::Unserved));
    }
}

/// One curve's knee over its repeats: what the report's knee table shows.
#[derive(Debug, Clone, PartialEq)]
pub struct KneeRow {
    pub model: String,
    pub conns: usize,
    pub server_cpus: usize,
    /// Repeats whose curve sustained at least its first step.
    pub with_knee: usize,
    pub repeats: usize,
    /// The knee's offered rate and capacity per core, over the repeats with one.
    pub offered: Option<crate::aggregate::Range>,
    pub per_core: Option<crate::aggregate::Range>,
    /// p99 over all clients at the knee.
    pub p99_us: Option<crate::aggregate::Range>,
    /// Some repeat ran into the load generator's limit before the server's.
    pub lower_bound: bool,
    /// No repeat had a knee: why not (the first repeat's reason, the load
    /// generator's failure first).
    pub no_knee: Option<NoKnee>,
}

/// The knee of every curve in `results`, in teaching order.
pub fn knees(results: &crate::schema::Results, models: &[String]) -> Vec<KneeRow> {
    use crate::aggregate::Range;
    use std::collections::BTreeMap;
    /// (conns, server CPUs, place in teaching order, model).
    type CurveKey = (usize, usize, usize, String);
    /// A repeat's knee, and p99 at it.
    type RepeatKnee = (Knee, Option<f64>);
    let mut curves: BTreeMap<CurveKey, BTreeMap<usize, Vec<Step>>> = BTreeMap::new();
    for c in results.cells.iter().filter(|c| c.scenario == "curve") {
        let Some(step) = Step::of(c) else { continue };
        let pos = models
            .iter()
            .position(|m| *m == c.model)
            .unwrap_or(models.len());
        curves
            .entry((c.conns, c.server_cpus, pos, c.model.clone()))
            .or_default()
            .entry(c.repeat)
            .or_default()
            .push(step);
    }
    curves
        .into_iter()
        .map(|((conns, server_cpus, _, model), repeats)| {
            let knees: Vec<RepeatKnee> = repeats
                .into_values()
                .map(|mut steps| {
                    steps.sort_by(|a, b| a.offered.total_cmp(&b.offered));
                    let knee = Knee::of(&steps);
                    let p99 = knee
                        .offered()
                        .and_then(|o| steps.iter().find(|s| s.offered == o))
                        .map(|s| s.p99_us);
                    (knee, p99)
                })
                .collect();
            let with: Vec<&RepeatKnee> = knees
                .iter()
                .filter(|(k, _)| k.missing().is_none())
                .collect();
            let no_knee = if with.is_empty() {
                knees.iter().filter_map(|(k, _)| k.missing()).max()
            } else {
                None
            };
            let range = |f: &dyn Fn(&RepeatKnee) -> Option<f64>| {
                Range::from_samples(&with.iter().filter_map(|k| f(k)).collect::<Vec<_>>())
            };
            KneeRow {
                model,
                conns,
                server_cpus,
                with_knee: with.len(),
                repeats: knees.len(),
                offered: range(&|(k, _)| k.offered()),
                per_core: range(&|(k, _)| k.per_core()),
                p99_us: range(&|(_, p)| *p),
                lower_bound: with.iter().any(|(k, _)| k.is_lower_bound()),
                no_knee,
            }
        })
        .collect()
}

/// What a reader must know about a step: clients left unserved (hollow, `served
/// k/N`), and `†` when it was not measured well.
fn mark(g: &crate::aggregate::Group, cells: &[&Cell]) -> crate::figures::Mark {
    let mut m = crate::figures::Mark::of(g);
    m.busy = cells
        .iter()
        .filter_map(|c| Step::of(c))
        .any(|s| !s.measured_well);
    m
}

/// The curve's two charts for every connection count and server CPU count it ran
/// at: p99 against the rate achieved (the hockey stick), and server CPU per
/// request against it.
pub fn figures(ctx: &crate::page::Ctx) -> Vec<crate::figures::Figure> {
    use crate::aggregate::Metric;
    use crate::figures::{Figure, Plot, Series, XAxis};
    let steps = &ctx.summary.steps;
    let mut combos: Vec<(usize, usize)> = steps.iter().map(|g| (g.conns, g.server_cpus)).collect();
    combos.sort_unstable();
    combos.dedup();
    let knees = knees(ctx.results, &ctx.summary.models);
    let mut out = Vec::new();
    for (conns, cpus) in combos {
        let suffix = if cpus == 1 {
            format!("{conns}")
        } else {
            format!("{conns}-{cpus}cpus")
        };
        let at = match cpus {
            1 => crate::format::conns(conns),
            n => format!("{}, server on {n} CPUs", crate::format::conns(conns)),
        };
        let rows: Vec<&KneeRow> = knees
            .iter()
            .filter(|k| k.conns == conns && k.server_cpus == cpus)
            .collect();
        for metric in [Metric::P99, Metric::CpuPerRequest] {
            let series: Vec<Series> = ctx
                .summary
                .models
                .iter()
                .filter_map(|model| {
                    let mut points = Vec::new();
                    let mut marks = Vec::new();
                    for g in steps
                        .iter()
                        .filter(|g| &g.model == model && g.conns == conns && g.server_cpus == cpus)
                    {
                        let (Some(x), Some(y)) = (g.get(Metric::Throughput), g.get(metric)) else {
                            continue;
                        };
                        let cells: Vec<&Cell> = ctx
                            .results
                            .cells
                            .iter()
                            .filter(|c| {
                                c.scenario == "curve"
                                    && c.model == g.model
                                    && c.conns == conns
                                    && c.server_cpus == cpus
                                    && c.offered_rps == g.offered_rps
                            })
                            .collect();
                        points.push((x.median.max(1.0), *y));
                        marks.push(mark(g, &cells));
                    }
                    (!points.is_empty()).then(|| Series {
                        model: model.clone(),
                        points,
                        marks,
                    })
                })
                .collect();
            if series.is_empty() {
                continue;
            }
            let q = crate::compare::Quantity::of(metric);
            let (file, title, sentences) = if metric == Metric::P99 {
                (
                    format!("curve-p99-{suffix}"),
                    format!("curve: p99 latency vs requests per second, {at}"),
                    vec![crate::sentences::knee_sentence(&rows)],
                )
            } else {
                (
                    format!("curve-cpu-per-request-{suffix}"),
                    format!("curve: server CPU per request vs requests per second, {at}"),
                    crate::sentences::cost_sentence(ctx, conns, cpus),
                )
            };
            let log_y = metric == Metric::P99;
            out.push(Figure {
                file: format!("{file}.svg"),
                title,
                x_label: "requests per second achieved (log scale)".to_string(),
                y_label: crate::figures::axis_label(&q.words, log_y),
                plot: Plot::Lines {
                    series,
                    x: XAxis::Rate,
                    log_y,
                },
                sentences,
            });
        }
    }
    out
}

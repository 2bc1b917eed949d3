//! Which charts each scenario gets, and the sentences printed under them.
//!
//! A [`Figure`] is plain data: what to plot and what to say about it. Planning is
//! kept apart from drawing ([`crate::charts`]) and from page layout
//! ([`crate::markdown`]) so that every sentence can be tested without an SVG, and
//! so that a new model or scenario shows up without code changes: figures are
//! planned from whatever models and scenarios the results contain.

use crate::aggregate::{Better, Group, Metric, Range, Unit, Words};
use crate::compare::{self, Basis, Quantity};
use crate::format;
use crate::lessons;
use crate::page::{entries_at, Ctx};
use crate::sentences::{
    self, extremes_at, missing_at, pairs_at, single_core_note, tail_growth, unanswered_at,
};

/// Latency spreads wider than this (max / min) get a logarithmic axis.
const LOG_AXIS_SPREAD: f64 = 30.0;

/// One chart and what the report says under it.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File name under `charts/`.
    pub file: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub plot: Plot,
    pub sentences: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Plot {
    /// One line per model.
    Lines {
        series: Vec<Series>,
        x: XAxis,
        log_y: bool,
    },
    /// One bar per model, with a min–max error bar.
    Bars { bars: Vec<Bar>, log_y: bool },
}

#[derive(Debug, Clone)]
pub enum XAxis {
    /// Connection counts, on a log axis with a tick at each one measured.
    Conns(Vec<usize>),
    /// A rate (requests per second), on a log axis.
    Rate,
    /// Named positions 0, 1, 2, ... (the latency percentiles).
    Categories(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Series {
    pub model: String,
    pub points: Vec<(f64, Range)>,
    /// One per point.
    pub marks: Vec<Mark>,
}

#[derive(Debug, Clone)]
pub struct Bar {
    pub model: String,
    pub range: Range,
    pub mark: Mark,
}

/// How a point or bar is drawn besides its value: hollow with a label when the
/// model left clients unserved there (its latency is their wait, its throughput
/// that of a few clients), and with a dagger when the load generator was busy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mark {
    /// `served 4/1,000`: the model left clients unserved.
    pub unserved: Option<String>,
    /// The load generator used more than 90 % of its CPUs in some repeat: the
    /// value may be the client's limit.
    pub busy: bool,
}

impl Mark {
    pub fn of(g: &Group) -> Mark {
        Mark {
            unserved: g.starved().then(|| {
                let served = g.get(Metric::Served).map_or(0.0, |r| r.median);
                format!(
                    "served {}/{}",
                    format::num(served),
                    format::num(g.conns as f64)
                )
            }),
            busy: g.loadgen_busy,
        }
    }
}

impl Figure {
    /// Models drawn in this figure, in drawing order.
    pub fn models(&self) -> Vec<&str> {
        match &self.plot {
            Plot::Lines { series, .. } => series.iter().map(|s| s.model.as_str()).collect(),
            Plot::Bars { bars, .. } => bars.iter().map(|b| b.model.as_str()).collect(),
        }
    }
}

/// What a figure or a table column shows: a metric of the cells, or a
/// scenario-specific `extra` by name.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Metric(Metric),
    Extra(String),
}

impl Target {
    pub fn key(&self) -> &str {
        match self {
            Target::Metric(m) => m.key(),
            Target::Extra(name) => name,
        }
    }

    pub fn get(&self, g: &Group) -> Option<Range> {
        match self {
            Target::Metric(m) => g.get(*m).copied(),
            Target::Extra(name) => g.extra(name).copied(),
        }
    }

    pub fn quantity(&self) -> Quantity {
        match self {
            Target::Metric(m) => Quantity::of(*m),
            Target::Extra(name) => {
                let info = lessons::extra_info(name);
                Quantity {
                    words: info.words,
                    unit: info.unit,
                    // A counted outcome (clients lost, a crash survived) repeats
                    // exactly: it is compared on one repeat as well as on five.
                    basis: if info.counted {
                        Basis::Counted
                    } else {
                        Basis::Timed
                    },
                }
            }
        }
    }

    /// Which way the figure improves, from the metric catalog or the extra's info.
    pub fn better(&self) -> Option<Better> {
        match self {
            Target::Metric(m) => m.better(),
            Target::Extra(name) => lessons::extra_info(name).better,
        }
    }

    /// Whether a larger value is the better one; only picks which end of a chart a
    /// sentence starts from, never ranks.
    fn higher_is_better(&self) -> bool {
        self.better() == Some(Better::Higher)
    }
}

/// The figures of one scenario, for each `--work` it was run with.
pub fn for_scenario(ctx: &Ctx, scenario: &str) -> Vec<Figure> {
    if scenario == "curve" {
        return crate::curve::figures(ctx);
    }
    if scenario == crate::c100k::SCENARIO {
        // An outcome per model (held, and what stopped it), told by its table.
        return Vec::new();
    }
    let works = ctx.summary.works_in(scenario);
    let mut out = Vec::new();
    for work in &works {
        let suffix = if works.len() > 1 {
            format!("-{}", slug(work))
        } else {
            String::new()
        };
        let mut figs = plan_scenario(ctx, scenario, work);
        for f in &mut figs {
            f.file = format!("{}{suffix}.svg", f.file);
            if works.len() > 1 {
                f.title = format!("{} (work {work})", f.title);
            }
        }
        out.extend(figs);
    }
    out
}

fn plan_scenario(ctx: &Ctx, scenario: &str, work: &str) -> Vec<Figure> {
    let many_conns = ctx
        .groups(scenario, work)
        .map(|g| g.conns)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        > 1;
    let m = Target::Metric;
    let mut figs: Vec<Option<Figure>> = Vec::new();
    let main = |t: Target| {
        if many_conns {
            vs_conns(ctx, scenario, work, t)
        } else {
            at_key_conns(ctx, scenario, work, t)
        }
    };
    let extra_or = |name: &str, fallback: Metric| {
        if ctx.groups(scenario, work).any(|g| g.extra(name).is_some()) {
            Target::Extra(name.to_string())
        } else {
            Target::Metric(fallback)
        }
    };
    match scenario {
        "scaling" => {
            figs.push(main(m(Metric::Throughput)));
            figs.push(main(m(Metric::P99)));
            figs.push(fairness(ctx, scenario, work));
            figs.push(at_key_conns(ctx, scenario, work, m(Metric::PssPerConn)));
            figs.push(at_key_conns(ctx, scenario, work, m(Metric::CpuPerRequest)));
            figs.push(at_key_conns(ctx, scenario, work, m(Metric::CtxPerRequest)));
            figs.push(spectrum(ctx, scenario, work));
        }
        "churn" => {
            // A load generator that did not time connects still reports requests/s.
            let has = |metric| ctx.groups(scenario, work).any(|g| g.get(metric).is_some());
            let rate = if has(Metric::ConnectsPerS) {
                Metric::ConnectsPerS
            } else {
                Metric::Throughput
            };
            let latency = if has(Metric::ConnectP50) {
                Metric::ConnectP50
            } else {
                Metric::P50
            };
            figs.push(at_key_conns(ctx, scenario, work, m(rate)));
            figs.push(at_key_conns(ctx, scenario, work, m(latency)));
        }
        "slow" => {
            figs.push(at_key_conns(
                ctx,
                scenario,
                work,
                extra_or("normal_p99_us", Metric::P99),
            ));
            figs.push(at_key_conns(
                ctx,
                scenario,
                work,
                extra_or("normal_throughput_rps", Metric::Throughput),
            ));
        }
        "chaos" => {
            figs.push(at_key_conns(
                ctx,
                scenario,
                work,
                Target::Extra("other_clients_lost".into()),
            ));
            figs.push(survival(ctx, scenario, work));
        }
        _ => {
            let mut throughput = main(m(Metric::Throughput));
            let spans = ctx.summary.spans.iter().any(|g| g.scenario == scenario);
            if scenario == "cpu" && !ctx.multicore() && !spans {
                if let Some(f) = &mut throughput {
                    f.sentences.push(single_core_note(ctx));
                }
            }
            figs.push(throughput);
            figs.push(main(m(Metric::P99)));
            figs.push(speedup(ctx, scenario, work));
            // Known scenarios chart the extras they teach from (above); a scenario
            // the report does not know gets a chart for each of its extras.
            if lessons::intro(scenario).is_none() {
                for name in extras_in(ctx, scenario, work) {
                    figs.push(at_key_conns(ctx, scenario, work, Target::Extra(name)));
                }
            }
        }
    }
    figs.into_iter().flatten().collect()
}

fn extras_in(ctx: &Ctx, scenario: &str, work: &str) -> Vec<String> {
    let mut names: Vec<String> = ctx
        .groups(scenario, work)
        .flat_map(|g| g.extra.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// What more server CPUs bought each model: requests per second on N CPUs ÷ on
/// one, for the scenarios run on several (`--server-cpus`). A ratio's range is
/// the most pessimistic and optimistic pairing of the two ranges.
fn speedup(ctx: &Ctx, scenario: &str, work: &str) -> Option<Figure> {
    let spans: Vec<&Group> = ctx
        .summary
        .spans
        .iter()
        .filter(|g| g.scenario == scenario && g.work == work)
        .collect();
    let cpus = spans.iter().map(|g| g.server_cpus).max()?;
    let mut bars = Vec::new();
    for model in &ctx.summary.models {
        let Some(many) = spans
            .iter()
            .find(|g| &g.model == model && g.server_cpus == cpus)
        else {
            continue;
        };
        let Some(one) = ctx.group(model, scenario, work, many.conns) else {
            continue;
        };
        let (Some(a), Some(b)) = (one.get(Metric::Throughput), many.get(Metric::Throughput)) else {
            continue;
        };
        if a.median <= 0.0 || a.min <= 0.0 {
            continue;
        }
        bars.push(Bar {
            model: model.clone(),
            range: Range {
                median: b.median / a.median,
                min: b.min / a.max,
                max: b.max / a.min,
                mean: b.mean / a.mean,
                n: a.n.min(b.n),
            },
            mark: Mark::of(many),
        });
    }
    if bars.is_empty() {
        return None;
    }
    let sentences = sentences::speedup(&bars, cpus);
    Some(Figure {
        file: format!("{}-speedup", slug(scenario)),
        title: format!("{scenario}: requests per second on {cpus} CPUs ÷ on one"),
        x_label: "model".to_string(),
        y_label: format!("speedup on {cpus} CPUs (×)"),
        plot: Plot::Bars { bars, log_y: false },
        sentences,
    })
}

/// A line per model over connection counts (log x).
fn vs_conns(ctx: &Ctx, scenario: &str, work: &str, target: Target) -> Option<Figure> {
    let q = target.quantity();
    let series: Vec<Series> = ctx
        .summary
        .models
        .iter()
        .filter_map(|model| {
            let (points, marks): (Vec<(f64, Range)>, Vec<Mark>) = ctx
                .groups(scenario, work)
                .filter(|g| &g.model == model)
                .filter_map(|g| {
                    let point = (g.conns as f64, shown(target.get(g)?, q.unit));
                    Some((point, Mark::of(g)))
                })
                .unzip();
            (!points.is_empty()).then(|| Series {
                model: model.clone(),
                points,
                marks,
            })
        })
        .collect();
    if series.is_empty() {
        return None;
    }
    let conns = ctx.summary.conns_in(scenario);
    let key = ctx.key_conns(scenario, work, &target)?;
    let mut sentences = Vec::new();
    let smallest = conns.first().copied().filter(|&c| c != key);
    if let Some(c) = smallest.filter(|_| target.higher_is_better()) {
        sentences.extend(extremes_at(ctx, scenario, work, &target, c));
    }
    sentences.extend(extremes_at(ctx, scenario, work, &target, key));
    sentences.extend(pairs_at(ctx, scenario, work, &target, key));
    if matches!(q.unit, Unit::Micros | Unit::Rate) {
        sentences.extend(unanswered_at(ctx, scenario, work, key));
    }
    let log_y = q.unit == Unit::Micros;
    Some(Figure {
        file: format!("{}-{}", slug(scenario), slug(target.key())),
        title: format!("{scenario}: {} vs connections", q.words.noun),
        x_label: "concurrent connections (log scale)".to_string(),
        y_label: axis_label(&q.words, log_y),
        plot: Plot::Lines {
            series,
            x: XAxis::Conns(conns),
            log_y,
        },
        sentences,
    })
}

/// A bar per model at the scenario's key connection count.
fn at_key_conns(ctx: &Ctx, scenario: &str, work: &str, target: Target) -> Option<Figure> {
    let conns = ctx.key_conns(scenario, work, &target)?;
    let q = target.quantity();
    let bars: Vec<Bar> = entries_at(ctx, scenario, work, &target, conns)
        .into_iter()
        .map(|e| Bar {
            model: e.model.to_string(),
            range: shown(e.range, q.unit),
            mark: ctx
                .group(e.model, scenario, work, conns)
                .map(Mark::of)
                .unwrap_or_default(),
        })
        .collect();
    let mut sentences = Vec::new();
    sentences.extend(extremes_at(ctx, scenario, work, &target, conns));
    sentences.extend(pairs_at(ctx, scenario, work, &target, conns));
    sentences.extend(missing_at(ctx, scenario, work, &target, conns));
    if matches!(q.unit, Unit::Micros | Unit::Rate) {
        sentences.extend(unanswered_at(ctx, scenario, work, conns));
    }
    let log_y = q.unit == Unit::Micros && wide(bars.iter().map(|b| &b.range));
    Some(Figure {
        file: format!("{}-{}", slug(scenario), slug(target.key())),
        title: format!("{scenario}: {} at {}", q.words.noun, format::conns(conns)),
        x_label: "model".to_string(),
        y_label: axis_label(&q.words, log_y),
        plot: Plot::Bars { bars, log_y },
        sentences,
    })
}

/// Jain's fairness index of every model at the key connection count, and who was
/// served how evenly: the per-client view behind the per-request percentiles.
fn fairness(ctx: &Ctx, scenario: &str, work: &str) -> Option<Figure> {
    let target = Target::Metric(Metric::Fairness);
    let mut fig = at_key_conns(ctx, scenario, work, target.clone())?;
    let conns = ctx.key_conns(scenario, work, &target)?;
    fig.sentences = vec![sentences::fairness(ctx, scenario, work, conns)];
    Some(fig)
}

/// The latency percentiles of every model at the key connection count.
fn spectrum(ctx: &Ctx, scenario: &str, work: &str) -> Option<Figure> {
    let tail = Target::Metric(Metric::P9999);
    let conns = ctx.key_conns(scenario, work, &tail)?;
    let series: Vec<Series> = ctx
        .summary
        .models
        .iter()
        .filter_map(|model| {
            let g = ctx.group(model, scenario, work, conns)?;
            let points: Vec<(f64, Range)> = Metric::SPECTRUM
                .iter()
                .enumerate()
                .filter_map(|(i, (m, _))| Some((i as f64, *g.get(*m)?)))
                .collect();
            // The label once, at the last point; the rest hollow.
            let mut marks = vec![Mark::of(g); points.len()];
            for m in marks.iter_mut().rev().skip(1) {
                m.unserved = m.unserved.as_ref().map(|_| String::new());
            }
            (!points.is_empty()).then(|| Series {
                model: model.clone(),
                points,
                marks,
            })
        })
        .collect();
    if series.is_empty() {
        return None;
    }
    let mut sentences: Vec<String> = extremes_at(ctx, scenario, work, &tail, conns)
        .into_iter()
        .collect();
    sentences.extend(tail_growth(ctx, scenario, work, conns));
    sentences.extend(unanswered_at(ctx, scenario, work, conns));
    Some(Figure {
        file: format!("{}-latency-spectrum", slug(scenario)),
        title: format!(
            "{scenario}: latency percentiles at {}",
            format::conns(conns)
        ),
        x_label: "percentile".to_string(),
        y_label: "latency (µs, log scale)".to_string(),
        plot: Plot::Lines {
            series,
            x: XAxis::Categories(
                Metric::SPECTRUM
                    .iter()
                    .map(|(_, l)| l.to_string())
                    .collect(),
            ),
            log_y: true,
        },
        sentences,
    })
}

/// Which models survived the crash, from the 0/1 `server_survived` extra.
fn survival(ctx: &Ctx, scenario: &str, work: &str) -> Option<Figure> {
    let target = Target::Extra("server_survived".to_string());
    let conns = ctx.key_conns(scenario, work, &target)?;
    let entries = entries_at(ctx, scenario, work, &target, conns);
    let bars: Vec<Bar> = entries
        .iter()
        .map(|e| Bar {
            model: e.model.to_string(),
            range: Range::exact(e.range.mean),
            mark: Mark::default(),
        })
        .collect();
    let names = |keep: &dyn Fn(&Range) -> bool| -> Vec<&str> {
        entries
            .iter()
            .filter(|e| keep(&e.range))
            .map(|e| e.model)
            .collect()
    };
    let always = names(&|r| r.min >= 1.0);
    let never = names(&|r| r.max <= 0.0);
    let sometimes = names(&|r| r.min < 1.0 && r.max > 0.0);
    let mut parts = Vec::new();
    if !always.is_empty() {
        parts.push(format!("in every repeat under {}", compare::list(&always)));
    }
    if !never.is_empty() {
        parts.push(format!("in none under {}", compare::list(&never)));
    }
    if !sometimes.is_empty() {
        parts.push(format!(
            "in some repeats only under {}",
            compare::list(&sometimes)
        ));
    }
    let mut sentences = vec![format!(
        "The server survived the crash {}.",
        parts.join("; ")
    )];
    if always.contains(&"fork") && never.contains(&"thread") {
        sentences.push(format!(
            "fork survived and thread did not because {}; {}.",
            lessons::PARENT_SAFE,
            lessons::CRASH
        ));
    }
    Some(Figure {
        file: format!("{}-server-survived", slug(scenario)),
        title: format!("{scenario}: share of repeats the server survived"),
        x_label: "model".to_string(),
        y_label: "repeats survived (share, 0–1)".to_string(),
        plot: Plot::Bars { bars, log_y: false },
        sentences,
    })
}

/// Charts show bytes in KiB, as their axis label and the tables say; sentences
/// keep the bytes and pick their own unit.
pub fn shown(r: Range, unit: Unit) -> Range {
    if unit != Unit::Bytes {
        return r;
    }
    let k = 1024.0;
    Range {
        median: r.median / k,
        min: r.min / k,
        max: r.max / k,
        mean: r.mean / k,
        n: r.n,
    }
}

fn wide<'r>(ranges: impl Iterator<Item = &'r Range>) -> bool {
    let (lo, hi) = ranges.fold((f64::INFINITY, 0.0f64), |(lo, hi), r| {
        (lo.min(r.min), hi.max(r.max))
    });
    lo > 0.0 && hi / lo > LOG_AXIS_SPREAD
}

/// `p99 latency (µs)` -> `p99 latency (µs, log scale)` on a log axis.
pub fn axis_label(words: &Words, log: bool) -> String {
    match (log, words.axis.strip_suffix(')')) {
        (false, _) => words.axis.to_string(),
        (true, Some(open)) => format!("{open}, log scale)"),
        (true, None) => format!("{} (log scale)", words.axis),
    }
}

/// A file-name-safe form of a scenario, metric or work name.
pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .replace('_', "-")
}

//! Which charts each scenario gets, and the sentences printed under them.
//!
//! A [`Figure`] is plain data: what to plot and what to say about it. Planning is
//! kept apart from drawing ([`crate::charts`]) and from page layout
//! ([`crate::markdown`]) so that every sentence can be tested without an SVG, and
//! so that a new model or scenario shows up without code changes: figures are
//! planned from whatever models and scenarios the results contain.

use crate::aggregate::{Group, Metric, Range, Summary, Unit, Words};
use crate::compare::{self, Basis, Entry, Expect, Quantity};
use crate::format;
use crate::lessons;
use crate::schema::Results;

/// Most comparisons between named pairs printed under one chart: with the
/// extremes sentence that makes the "2–3 sentences" a reader will actually read.
const MAX_PAIRS: usize = 2;

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
                    basis: Basis::Timed,
                }
            }
        }
    }

    /// Whether a larger value is the better one; only picks which end of a chart a
    /// sentence starts from, never ranks.
    fn higher_is_better(&self) -> bool {
        match self {
            Target::Metric(m) => m.higher_is_better(),
            Target::Extra(name) => lessons::extra_info(name).words.verb == "served",
        }
    }
}

/// What the planner reads.
pub struct Ctx<'a> {
    pub results: &'a Results,
    pub summary: &'a Summary,
}

impl Ctx<'_> {
    /// Whether the server could use more than one CPU: not pinned, several CPUs.
    pub fn multicore(&self) -> bool {
        self.results.run.server_cpu.is_none() && self.results.machine.cpus > 1
    }

    /// Groups of one scenario and work.
    fn groups<'s>(&'s self, scenario: &'s str, work: &'s str) -> impl Iterator<Item = &'s Group> {
        self.summary
            .in_scenario(scenario)
            .filter(move |g| g.work == work)
    }

    fn group(&self, model: &str, scenario: &str, work: &str, conns: usize) -> Option<&Group> {
        self.summary.groups.iter().find(|g| {
            g.scenario == scenario && g.work == work && g.model == model && g.conns == conns
        })
    }

    /// The largest connection count where at least two models measured `target`.
    fn key_conns(&self, scenario: &str, work: &str, target: &Target) -> Option<usize> {
        self.summary
            .key_conns(scenario, |g| g.work == work && target.get(g).is_some())
    }
}

/// The figures of one scenario, for each `--work` it was run with.
pub fn for_scenario(ctx: &Ctx, scenario: &str) -> Vec<Figure> {
    if scenario == "curve" {
        return crate::curve::figures(ctx);
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
    let (mut used, mut partly, mut not) = (Vec::new(), Vec::new(), Vec::new());
    for b in &bars {
        let text = format!("{} ({})", b.model, format::ratio_x(b.range.median));
        if b.range.min >= USES_ANOTHER_CPU {
            used.push(text);
        } else if b.range.max < USES_ANOTHER_CPU {
            not.push(text);
        } else {
            partly.push(text);
        }
    }
    let list = |v: &[String]| compare::list(&v.iter().map(String::as_str).collect::<Vec<_>>());
    let mut parts = Vec::new();
    if !used.is_empty() {
        parts.push(format!("{} used the other CPUs", list(&used)));
    }
    if !not.is_empty() {
        parts.push(format!("{} did not", list(&not)));
    }
    if !partly.is_empty() {
        parts.push(format!(
            "for {} the repeats are too far apart to tell",
            list(&partly)
        ));
    }
    let mut sentences = vec![format!(
        "With the server on {cpus} CPUs instead of one, requests per second went up: {}.",
        parts.join("; ")
    )];
    if !used.is_empty() && !not.is_empty() {
        sentences.push(format!("The difference is {}.", lessons::CORES));
    }
    Some(Figure {
        file: format!("{}-speedup", slug(scenario)),
        title: format!("{scenario}: requests per second on {cpus} CPUs ÷ on one"),
        x_label: "model".to_string(),
        y_label: format!("speedup on {cpus} CPUs (×)"),
        plot: Plot::Bars { bars, log_y: false },
        sentences,
    })
}

/// A model "used" another CPU when it served at least this much more on several.
const USES_ANOTHER_CPU: f64 = 1.3;

fn single_core_note(ctx: &Ctx) -> String {
    let how = match ctx.results.run.server_cpu {
        Some(cpu) => format!("the server was pinned to CPU {cpu}"),
        None => "the machine has one CPU".to_string(),
    };
    format!(
        "In this run {how}, so no model could spread CPU-bound work over several cores: \
         differences here come from scheduling, not parallelism."
    )
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
    let entries = entries_at(ctx, scenario, work, &target, conns);
    let group = |m: &str| ctx.group(m, scenario, work, conns);
    let (mut even, mut uneven, mut starving) = (Vec::new(), Vec::new(), Vec::new());
    for e in &entries {
        let Some(g) = group(e.model) else { continue };
        let index = format::num(e.range.median);
        if g.starved() {
            let served = g.get(Metric::Served).map_or(0.0, |r| r.median);
            starving.push(format!(
                "{} ({} of {})",
                e.model,
                format::num(served),
                format::num(conns as f64)
            ));
        } else if e.range.median >= EVEN_SHARE {
            even.push(format!("{} ({index})", e.model));
        } else {
            uneven.push(format!("{} ({index})", e.model));
        }
    }
    let list = |v: &[String]| compare::list(&v.iter().map(String::as_str).collect::<Vec<_>>());
    let mut parts = Vec::new();
    if !even.is_empty() {
        parts.push(format!(
            "{} shared the requests evenly among every client",
            list(&even)
        ));
    }
    if !uneven.is_empty() {
        parts.push(format!(
            "{} served every client but unevenly: some were answered far more often than \
             others, which the latency over all clients shows as a longer tail",
            list(&uneven)
        ));
    }
    if !starving.is_empty() {
        parts.push(format!(
            "{} served only some clients, and the rest got nothing",
            list(&starving)
        ));
    }
    fig.sentences = vec![format!(
        "At {}, Jain's fairness index of requests per client (1 = even): {}.",
        format::conns(conns),
        parts.join("; ")
    )];
    Some(fig)
}

/// Above this fairness index every client got about the same share.
const EVEN_SHARE: f64 = 0.9;

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

/// "The tail grows most for X (p99.99 is N× its p50) and least for Y (M×)."
fn tail_growth(ctx: &Ctx, scenario: &str, work: &str, conns: usize) -> Option<String> {
    let growth: Vec<(&str, f64)> = ctx
        .summary
        .models
        .iter()
        .filter(|m| rankable(ctx, m, scenario, work, conns))
        .filter_map(|m| {
            let g = ctx.group(m, scenario, work, conns)?;
            let (p50, tail) = (g.get(Metric::P50)?.median, g.get(Metric::P9999)?.median);
            (p50 > 0.0).then_some((m.as_str(), tail / p50))
        })
        .collect();
    if growth.len() < 2 {
        return None;
    }
    let most = growth.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1))?;
    let least = growth.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1))?;
    Some(format!(
        "Comparing medians, the tail grows most for {} (p99.99 is {:.1}× its p50) and least \
         for {} ({:.1}×): a long tail means some requests waited behind others, for a \
         scheduler turn, a busy loop or a free worker.",
        most.0, most.1, least.0, least.1
    ))
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

/// Every model's range of `target` at `conns`, in model order.
fn entries_at<'c>(
    ctx: &'c Ctx,
    scenario: &str,
    work: &str,
    target: &Target,
    conns: usize,
) -> Vec<Entry<'c>> {
    ctx.summary
        .models
        .iter()
        .filter_map(|m| {
            let range = target.get(ctx.group(m, scenario, work, conns)?)?;
            Some(Entry {
                model: m.as_str(),
                range,
            })
        })
        .collect()
}

fn context(conns: usize) -> String {
    format!("At {}", format::conns(conns))
}

fn extremes_at(
    ctx: &Ctx,
    scenario: &str,
    work: &str,
    target: &Target,
    conns: usize,
) -> Option<String> {
    let mut entries = entries_at(ctx, scenario, work, target, conns);
    entries.retain(|e| rankable(ctx, e.model, scenario, work, conns));
    compare::extremes(&target.quantity(), &context(conns), &entries)
}

/// Whether `model` may be named best or worst, or compared, at `conns`: only if it
/// answered every client in every repeat, and no client saw an error. A model that
/// left clients unserved is fast for the few it served: ranking it would reward
/// starving the rest (4 workers serving 4 of 10,000 connections fast "serve more
/// requests per second" than a loop serving all of them); the caveat names it
/// instead. In chaos, lost clients are the point, and everyone is ranked.
pub fn rankable(ctx: &Ctx, model: &str, scenario: &str, work: &str, conns: usize) -> bool {
    let Some(g) = ctx.group(model, scenario, work, conns) else {
        return true;
    };
    scenario == "chaos" || (!g.starved() && g.get(Metric::Errors).is_none_or(|e| e.median == 0.0))
}

/// The design's predicted pairs that both ran, compared by the overlap rule, when
/// both may be compared (see [`rankable`]).
fn pairs_at(ctx: &Ctx, scenario: &str, work: &str, target: &Target, conns: usize) -> Vec<String> {
    let entries = entries_at(ctx, scenario, work, target, conns);
    let find = |m: &str| {
        entries
            .iter()
            .find(|e| e.model == m && rankable(ctx, m, scenario, work, conns))
            .copied()
    };
    let expected: Vec<Expect> = lessons::expectations(scenario, target.key(), ctx.multicore());
    expected
        .iter()
        .filter_map(|e| Some((find(e.lower)?, find(e.higher)?, e)))
        .take(MAX_PAIRS)
        .map(|(lower, higher, e)| {
            compare::pair(&target.quantity(), &context(conns), lower, higher, Some(e))
        })
        .collect()
}

/// Models that ran at `conns` but yielded no value (every repeat failed).
fn missing_at(
    ctx: &Ctx,
    scenario: &str,
    work: &str,
    target: &Target,
    conns: usize,
) -> Option<String> {
    let missing: Vec<&str> = ctx
        .groups(scenario, work)
        .filter(|g| g.conns == conns && target.get(g).is_none() && g.failed > 0)
        .map(|g| g.model.as_str())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "No data for {} at {}: every repeat failed (see Failed cells).",
            compare::list(&missing),
            format::conns(conns)
        )
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

/// Models that left clients unserved, or whose clients saw errors, at `conns`:
/// said so with how many, as the reason they are not ranked. Not said in chaos,
/// where lost clients are the point.
fn unanswered_at(ctx: &Ctx, scenario: &str, work: &str, conns: usize) -> Option<String> {
    if scenario == "chaos" {
        return None;
    }
    let counted = |metric: Metric| -> Vec<(&str, f64)> {
        ctx.summary
            .models
            .iter()
            .filter_map(|m| {
                let n = ctx.group(m, scenario, work, conns)?.get(metric)?.median;
                (n > 0.0).then_some((m.as_str(), n))
            })
            .collect()
    };
    let mut parts = Vec::new();
    let unserved = counted(Metric::Unserved);
    if !unserved.is_empty() {
        parts.push(format!(
            "{} left clients unserved ({} of {} got no reply in the window, median of the \
             repeats): {} latency is the wait of clients never answered, a lower bound, and {} \
             not ranked",
            compare::list(&names(&unserved)),
            counts(&unserved),
            format::num(conns as f64),
            if unserved.len() == 1 { "its" } else { "their" },
            if unserved.len() == 1 {
                "it is"
            } else {
                "they are"
            },
        ));
    }
    let errors = counted(Metric::Errors);
    if !errors.is_empty() {
        parts.push(format!(
            "{} had clients that saw errors ({} of {}), so {} not ranked either",
            compare::list(&names(&errors)),
            counts(&errors),
            format::num(conns as f64),
            if errors.len() == 1 {
                "it is"
            } else {
                "they are"
            },
        ));
    }
    (!parts.is_empty()).then(|| format!("At {}, {}.", format::conns(conns), parts.join("; ")))
}

fn names<'a>(counted: &[(&'a str, f64)]) -> Vec<&'a str> {
    counted.iter().map(|(m, _)| *m).collect()
}

/// `999`, or `996 and 999` (each model's median, in the order of the names).
fn counts(counted: &[(&str, f64)]) -> String {
    let all: Vec<String> = counted.iter().map(|(_, n)| format::num(*n)).collect();
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    compare::list(&refs)
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

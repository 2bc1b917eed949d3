//! `socklab report NEW --baseline OLD`: what changed between two runs of the same
//! matrix, figure by figure — criterion's and hyperfine's baseline habit, under the
//! report's one rule.
//!
//! Criterion says "performance has regressed" only when a change is beyond its
//! noise threshold. Here the threshold is the one every sentence of the report
//! obeys ([`crate::compare`]): a figure moved only when NEW's whole min–max range
//! over its repeats lies beyond OLD's. Anything less is "no measurable
//! difference", however far apart the medians are, because on a small shared
//! machine timings move ±20–30 % between runs of the same code.
//!
//! The figures compared are the ones the report's tables show (each scenario's
//! columns from the [`Metric`] catalog, its extras, and the counted metrics),
//! matched by model × scenario × connections × work × server CPUs × offered rate.
//! Three things are said rather than compared:
//!
//! - a group measured in one run only is listed, so a narrowed matrix never passes
//!   for "nothing changed";
//! - the latencies of a group that left clients unserved are the waits of clients
//!   never answered, lower bounds: two lower bounds say nothing about the code, so
//!   the verdict names the run that left clients unserved instead;
//! - runs made differently (arguments, machine, tools) are named at the top, where
//!   a reader decides how far to trust what follows.
//!
//! Like the report, the page is a pure function of the two results files.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::aggregate::{Better, Group, Key, Metric, Range, Summary, Unit};
use crate::compare::{self, Basis, Order};
use crate::counted::counted_metrics;
use crate::figures::Target;
use crate::format;
use crate::markdown;
use crate::schema::{Counted, Results, RunInfo};

/// The verdict where the two ranges overlap: the report's own phrase
/// ([`compare::NO_DIFFERENCE`]) without its "here", which a table cell does not need.
pub const NO_CHANGE: &str = "no measurable difference";

/// What became of one figure from OLD to NEW.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// NEW's whole range lies above OLD's.
    Higher,
    /// NEW's whole range lies below OLD's.
    Lower,
    /// The ranges share at least one value.
    NoDifference,
    /// A run measured it in fewer than two repeats: its spread is unknown.
    TooFewRepeats,
    /// A lower bound in OLD, NEW or both (latencies of clients never answered, a
    /// ramp that ran to its limit), so not compared.
    Unserved {
        old: bool,
        new: bool,
    },
    /// Measured in one run only.
    OnlyOld,
    OnlyNew,
}

impl Verdict {
    /// Beyond both runs' ranges.
    pub fn moved(self) -> bool {
        matches!(self, Verdict::Higher | Verdict::Lower)
    }
}

/// One figure of one group, in both runs.
#[derive(Debug, Clone)]
pub struct Change {
    /// The catalog's key (`throughput`, `other_clients_lost`, `counted-syscalls`).
    pub key: String,
    /// The table header ("p99 (µs)"), which carries the unit, and what the
    /// summary calls it ("p99 latency", "other clients lost").
    pub header: String,
    pub subject: String,
    pub unit: Unit,
    pub better: Option<Better>,
    pub old: Option<Range>,
    pub new: Option<Range>,
    /// Each side as the report's tables print it: `≥` on a lower bound, `k/N`
    /// clients served, `†` where the load generator was busy.
    pub old_text: String,
    pub new_text: String,
    pub verdict: Verdict,
}

impl Change {
    /// The same single value in every repeat of both runs (no errors before or
    /// after, one process before and after): left out of the tables.
    pub fn identical(&self) -> bool {
        match (self.old, self.new) {
            (Some(o), Some(n)) => o.min == o.max && n.min == n.max && o.median == n.median,
            _ => false,
        }
    }

    /// Whether NEW is the better side: `None` when it did not move or the figure
    /// has no better direction.
    pub fn improved(&self) -> Option<bool> {
        let up = match self.verdict {
            Verdict::Higher => true,
            Verdict::Lower => false,
            _ => return None,
        };
        Some(up == (self.better? == Better::Higher))
    }
}

/// Which cells a row stands for: the key groups are matched by.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    /// A scenario, or `counted` for the counted pass.
    pub scenario: String,
    pub model: String,
    pub conns: usize,
    pub work: String,
    pub server_cpus: usize,
    pub offered_rps: Option<f64>,
}

impl Place {
    fn of(g: &Group) -> Place {
        Place {
            scenario: g.scenario.clone(),
            model: g.model.clone(),
            conns: g.conns,
            work: g.work.clone(),
            server_cpus: g.server_cpus,
            offered_rps: g.offered_rps,
        }
    }

    /// "scaling, thread at 100 connections, work `cpu:50us`".
    pub fn label(&self) -> String {
        let mut s = format!(
            "{}, {} at {}",
            self.scenario,
            self.model,
            format::conns(self.conns)
        );
        if !self.work.is_empty() && self.work != "none" {
            let _ = write!(s, ", work `{}`", self.work);
        }
        if self.server_cpus != 1 {
            let _ = write!(s, ", {} server CPUs", self.server_cpus);
        }
        if let Some(r) = self.offered_rps {
            let _ = write!(s, ", offered {}", format::with_unit(r, Unit::Rate));
        }
        s
    }
}

/// One group (or counted pass) measured in both runs, and its figures.
#[derive(Debug, Clone)]
pub struct Row {
    pub place: Place,
    pub changes: Vec<Change>,
}

/// Everything the page says, before it is written.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// How the runs were made differently, a line each ("CPUs: OLD 2, NEW 4").
    pub differences: Vec<String>,
    /// Timed groups in both runs, in NEW's report order.
    pub rows: Vec<Row>,
    /// The counted pass per model and connection count.
    pub counted: Vec<Row>,
    /// Timed groups measured in one run only.
    pub only_old: Vec<Place>,
    pub only_new: Vec<Place>,
    /// Scenarios in teaching order, NEW's first.
    pub scenarios: Vec<String>,
}

impl Baseline {
    /// Every compared figure with where it was measured, timed then counted.
    pub fn changes(&self) -> impl Iterator<Item = (&Place, &Change)> {
        self.rows
            .iter()
            .chain(&self.counted)
            .flat_map(|r| r.changes.iter().map(move |c| (&r.place, c)))
    }

    /// The figure `key` of `model` at `conns` in `scenario` (first work, one CPU
    /// first): what tests and callers look up.
    pub fn find(&self, scenario: &str, model: &str, conns: usize, key: &str) -> Option<&Change> {
        self.changes()
            .find(|(p, c)| {
                p.scenario == scenario && p.model == model && p.conns == conns && c.key == key
            })
            .map(|(_, c)| c)
    }
}

/// Compares NEW against OLD: each NEW group with the OLD group of the same
/// [`Key`], the rest listed as measured in one run only.
pub fn compare_runs(old: &Results, new: &Results) -> Baseline {
    let (so, sn) = (Summary::from_results(old), Summary::from_results(new));
    let (olds, news) = (every_group(&so), every_group(&sn));
    let old_by_key: BTreeMap<Key, &Group> = olds.iter().map(|g| (g.key(), *g)).collect();
    let new_keys: BTreeSet<Key> = news.iter().map(|g| g.key()).collect();
    let mut rows = Vec::new();
    let mut only_new = Vec::new();
    for g in &news {
        match old_by_key.get(&g.key()) {
            Some(o) => rows.push(Row {
                place: Place::of(g),
                changes: figures(o, g),
            }),
            None => only_new.push(Place::of(g)),
        }
    }
    let only_old = olds
        .iter()
        .filter(|g| !new_keys.contains(&g.key()))
        .map(|g| Place::of(g))
        .collect();
    let mut models = sn.models.clone();
    models.extend(so.models.iter().filter(|m| !sn.models.contains(m)).cloned());
    let mut scenarios = sn.scenarios.clone();
    scenarios.extend(
        so.scenarios
            .iter()
            .filter(|s| !sn.scenarios.contains(s))
            .cloned(),
    );
    Baseline {
        differences: differences(old, new),
        rows,
        counted: counted_rows(&old.counted, &new.counted, &models),
        only_old,
        only_new,
        scenarios,
    }
}

/// Every group of a run: one CPU, several, and the curve's steps.
fn every_group(s: &Summary) -> Vec<&Group> {
    s.groups.iter().chain(&s.spans).chain(&s.steps).collect()
}

/// The figures the scenario's report table shows that either run measured.
fn figures(old: &Group, new: &Group) -> Vec<Change> {
    let mut targets: Vec<Target> = markdown::metric_columns(&new.scenario)
        .iter()
        .filter(|m| old.get(**m).is_some() || new.get(**m).is_some())
        .map(|m| Target::Metric(*m))
        .collect();
    let extras: BTreeSet<&String> = old.extra.keys().chain(new.extra.keys()).collect();
    targets.extend(extras.into_iter().map(|e| Target::Extra(e.clone())));
    targets.iter().map(|t| change(old, new, t)).collect()
}

fn change(old: &Group, new: &Group, target: &Target) -> Change {
    let q = target.quantity();
    let (o, n) = (target.get(old), target.get(new));
    let (ob, nb) = (lower_bound(old, target), lower_bound(new, target));
    let verdict = match (o, n) {
        (Some(_), Some(_)) if ob || nb => Verdict::Unserved { old: ob, new: nb },
        (Some(o), Some(n)) => by_overlap(&o, &n, q.basis),
        (None, _) => Verdict::OnlyNew,
        (_, None) => Verdict::OnlyOld,
    };
    Change {
        key: target.key().to_string(),
        header: q.words.header.into_owned(),
        subject: q.words.subject.into_owned(),
        unit: q.unit,
        better: target.better(),
        old: o,
        new: n,
        old_text: cell(old, target),
        new_text: cell(new, target),
        verdict,
    }
}

/// The overlap rule, NEW against OLD.
fn by_overlap(old: &Range, new: &Range, basis: Basis) -> Verdict {
    match compare::order(new, old, basis) {
        Order::Higher => Verdict::Higher,
        Order::Lower => Verdict::Lower,
        Order::Overlap => Verdict::NoDifference,
        Order::TooFewRepeats => Verdict::TooFewRepeats,
    }
}

/// Whether `g`'s value of `target` is a lower bound, as the report's table marks it
/// with `≥`: a latency where clients went unanswered, a ramp cut at its limit.
fn lower_bound(g: &Group, target: &Target) -> bool {
    match target {
        Target::Metric(Metric::Ramp) => g.ramp_limited || g.ramp_stalled,
        Target::Metric(m) if m.is_latency() => g.starved(),
        _ => false,
    }
}

/// One side's value as the report's table prints it.
fn cell(g: &Group, target: &Target) -> String {
    let mut v = markdown::value(g, target);
    if g.loadgen_busy && *target == Target::Metric(Metric::Throughput) && target.get(g).is_some() {
        v.push_str(" †");
    }
    v
}

/// The counted pass of each model at each connection count either run counted,
/// one exact value per metric (counts repeat exactly: any difference is a change).
fn counted_rows<'a>(old: &'a [Counted], new: &'a [Counted], models: &[String]) -> Vec<Row> {
    let conns: BTreeSet<usize> = old.iter().chain(new).map(|c| c.conns).collect();
    let find = |list: &'a [Counted], model: &str, n: usize| {
        list.iter().find(|c| c.model == model && c.conns == n)
    };
    let mut rows = Vec::new();
    for &n in &conns {
        for model in models {
            let (o, nw) = (find(old, model, n), find(new, model, n));
            if o.is_none() && nw.is_none() {
                continue;
            }
            let changes = counted_metrics()
                .iter()
                .filter_map(|cm| {
                    let a = o.and_then(cm.get).map(Range::exact);
                    let b = nw.and_then(cm.get).map(Range::exact);
                    let verdict = match (a, b) {
                        (Some(a), Some(b)) => by_overlap(&a, &b, Basis::Counted),
                        (Some(_), None) => Verdict::OnlyOld,
                        (None, Some(_)) => Verdict::OnlyNew,
                        (None, None) => return None,
                    };
                    let text = |r: Option<Range>| {
                        r.map_or("—".to_string(), |r| format::range(&r, Unit::Plain))
                    };
                    Some(Change {
                        key: cm.file.to_string(),
                        header: cm.words.header.to_string(),
                        subject: cm.words.subject.to_string(),
                        unit: Unit::Plain,
                        better: Some(cm.better),
                        old: a,
                        new: b,
                        old_text: text(a),
                        new_text: text(b),
                        verdict,
                    })
                })
                .collect();
            rows.push(Row {
                place: Place {
                    scenario: "counted".to_string(),
                    model: model.clone(),
                    conns: n,
                    work: String::new(),
                    server_cpus: 1,
                    offered_rps: None,
                },
                changes,
            });
        }
    }
    rows
}

/// How the two runs were made differently: what a reader must weigh before
/// reading any change as the code's.
fn differences(old: &Results, new: &Results) -> Vec<String> {
    let mut out = Vec::new();
    let mut diff = |what: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{what}: OLD {a}, NEW {b}"));
        }
    };
    let (ro, rn, mo, mn) = (&old.run, &new.run, &old.machine, &new.machine);
    diff("schema", code(&old.schema), code(&new.schema));
    diff("arguments", matrix_args(ro), matrix_args(rn));
    diff("mode", ro.mode.clone(), rn.mode.clone());
    diff("repeats", ro.repeats.to_string(), rn.repeats.to_string());
    diff(
        "seconds per cell",
        format::num(ro.cell_seconds),
        format::num(rn.cell_seconds),
    );
    diff(
        "warm-up seconds",
        format::num(ro.warmup_seconds),
        format::num(rn.warmup_seconds),
    );
    diff(
        "message bytes",
        ro.message_bytes.to_string(),
        rn.message_bytes.to_string(),
    );
    diff(
        "server pinned to CPU",
        pinned(&ro.server_cpu),
        pinned(&rn.server_cpu),
    );
    diff(
        "load generator CPUs",
        pinned(&ro.loadgen_cpus),
        pinned(&rn.loadgen_cpus),
    );
    diff("host", mo.hostname.clone(), mn.hostname.clone());
    diff("CPU model", mo.cpu_model.clone(), mn.cpu_model.clone());
    diff("CPUs online", mo.cpus.to_string(), mn.cpus.to_string());
    diff(
        "memory",
        format::with_unit(mo.memory_bytes as f64, Unit::Bytes),
        format::with_unit(mn.memory_bytes as f64, Unit::Bytes),
    );
    diff("kernel", mo.kernel.clone(), mn.kernel.clone());
    diff("OS", mo.os.clone(), mn.os.clone());
    diff("rustc", mo.rustc.clone(), mn.rustc.clone());
    diff(
        "socklab (and its load generator)",
        mo.socklab_version.clone(),
        mn.socklab_version.clone(),
    );
    let tools: BTreeSet<&str> = ro
        .tools
        .iter()
        .chain(&rn.tools)
        .map(|t| t.name.as_str())
        .collect();
    for name in tools {
        let version = |run: &RunInfo| match run.tools.iter().find(|t| t.name == name) {
            Some(t) => t.version.clone().unwrap_or_else(|| "missing".to_string()),
            None => "not recorded".to_string(),
        };
        diff(name, version(ro), version(rn));
    }
    for (side, run, results) in [("OLD", ro, old), ("NEW", rn, new)] {
        if run.interrupted {
            out.push(format!(
                "{side} was interrupted: {} of {} planned cells measured",
                results.cells.len(),
                run.planned_cells
            ));
        }
    }
    out
}

/// `--out DIR` names where a run was written, not what it measured: left out.
fn matrix_args(run: &RunInfo) -> String {
    if run.args.is_empty() {
        return "(not recorded)".to_string();
    }
    let mut kept = Vec::new();
    let mut args = run.args.iter();
    while let Some(a) = args.next() {
        if a == "--out" {
            args.next();
        } else if !a.starts_with("--out=") {
            kept.push(a.as_str());
        }
    }
    if kept.is_empty() {
        "(defaults)".to_string()
    } else {
        code(&kept.join(" "))
    }
}

fn pinned<T: std::fmt::Debug>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or("not pinned".to_string(), |v| format!("{v:?}"))
}

fn code(s: &str) -> String {
    format!("`{s}`")
}

/// NEW's median against OLD's, to three significant figures like every number
/// the report prints: `+4.20 %`, `-35.1 %`, `+0.0213 %` (apart ranges can be that
/// close), and from twice on a factor, `2.41×`; from zero, the difference itself
/// (`+3`), since a percentage of nothing is not a number.
pub fn change_text(old: &Range, new: &Range, unit: Unit) -> String {
    if old.median == 0.0 {
        if new.median == 0.0 {
            return "0 %".to_string();
        }
        let sign = if new.median > 0.0 { "+" } else { "" };
        return format!("{sign}{}", format::with_unit(new.median, unit));
    }
    let ratio = new.median / old.median;
    if ratio >= 2.0 {
        return format::ratio_x(ratio);
    }
    let pct = (ratio - 1.0) * 100.0;
    let sign = if pct > 0.0 { "+" } else { "" };
    format!("{sign}{} %", format::sig3(pct))
}

/// The verdict in words: `higher: better`, `lower: worse`, `no measurable difference`.
pub fn verdict_text(c: &Change) -> String {
    let dir = match c.verdict {
        Verdict::Higher => "higher",
        Verdict::Lower => "lower",
        Verdict::NoDifference => return NO_CHANGE.to_string(),
        Verdict::TooFewRepeats => return "one repeat: spread unknown".to_string(),
        Verdict::Unserved { old, new } => {
            let runs = match (old, new) {
                (true, true) => "both runs",
                (true, false) => "OLD",
                _ => "NEW",
            };
            return format!("left clients unserved in {runs}");
        }
        Verdict::OnlyOld => return "measured in OLD only".to_string(),
        Verdict::OnlyNew => return "measured in NEW only".to_string(),
    };
    match c.improved() {
        Some(true) => format!("{dir}: better"),
        Some(false) => format!("{dir}: worse"),
        None => dir.to_string(),
    }
}

/// The change column: `—` where the two values are not comparable.
fn change_cell(c: &Change) -> String {
    match (c.verdict, c.old, c.new) {
        (Verdict::Unserved { .. }, _, _) => "—".to_string(),
        (_, Some(o), Some(n)) => change_text(&o, &n, c.unit),
        _ => "—".to_string(),
    }
}

/// `baseline.md`: summary first, then a table per scenario, the counted pass, and
/// the groups only one run has.
pub fn render(old: &Results, new: &Results) -> String {
    let b = compare_runs(old, new);
    let mut md = String::new();
    let _ = writeln!(md, "# Baseline: what changed from OLD to NEW\n");
    let _ = writeln!(md, "- OLD: {}", describe(old));
    let _ = writeln!(md, "- NEW: {}\n", describe(new));
    if !b.differences.is_empty() {
        let _ = writeln!(
            md,
            "**The two runs were not made the same way**, so a change below may come from \
             that rather than from the code:\n"
        );
        for d in &b.differences {
            let _ = writeln!(md, "- {d}");
        }
        md.push('\n');
    }
    summary(&mut md, &b);
    for scenario in &b.scenarios {
        let rows: Vec<&Row> = b
            .rows
            .iter()
            .filter(|r| &r.place.scenario == scenario)
            .collect();
        if !rows.is_empty() {
            let _ = writeln!(md, "## Scenario: {scenario}\n");
            table(&mut md, &rows);
        }
    }
    if !b.counted.is_empty() {
        let _ = writeln!(
            md,
            "## Counted metrics\n\nCounted, not timed: each repeats exactly, so any \
             difference is a change.\n"
        );
        table(&mut md, &b.counted.iter().collect::<Vec<_>>());
    }
    only(&mut md, &b);
    reading(&mut md);
    md
}

fn describe(r: &Results) -> String {
    format!(
        "{} run on {}, started {} ({}), `{}`",
        r.run.mode,
        r.machine.hostname,
        r.run.started,
        plural(r.run.repeats, "repeat", "repeats"),
        r.run.command
    )
}

/// The first lines: how many figures moved, which, and what could not be compared.
fn summary(md: &mut String, b: &Baseline) {
    let all: Vec<(&Place, &Change)> = b.changes().collect();
    // The same value in every repeat of both runs is counted apart: it is "the
    // same" whatever the repeats, and left out of the tables.
    let count =
        |f: &dyn Fn(&Change) -> bool| all.iter().filter(|(_, c)| !c.identical() && f(c)).count();
    let moved = count(&|c| c.verdict.moved());
    let same = count(&|c| c.verdict == Verdict::NoDifference);
    let identical = all.iter().filter(|(_, c)| c.identical()).count();
    let unserved = count(&|c| matches!(c.verdict, Verdict::Unserved { .. }));
    let few = count(&|c| c.verdict == Verdict::TooFewRepeats);
    let one_run = count(&|c| matches!(c.verdict, Verdict::OnlyOld | Verdict::OnlyNew));
    let mut parts = vec![if moved == 0 {
        "No figure moved beyond both runs' ranges".to_string()
    } else {
        format!(
            "**{} moved beyond both runs' ranges** (below)",
            plural(moved, "figure", "figures")
        )
    }];
    parts.push(format!("{same} show {NO_CHANGE}"));
    if identical > 0 {
        parts.push(format!(
            "{identical} are the same value in every repeat of both runs (left out of the \
             tables)"
        ));
    }
    let mut s = parts.join("; ");
    let mut not = Vec::new();
    if unserved > 0 {
        not.push(format!(
            "{} of runs that left clients unserved (lower bounds)",
            plural(unserved, "latency", "latencies")
        ));
    }
    if few > 0 {
        not.push(format!(
            "{} measured in fewer than two repeats of a run (no spread to compare)",
            plural(few, "figure", "figures")
        ));
    }
    if one_run > 0 {
        not.push(format!(
            "{} measured in one run only",
            plural(one_run, "figure", "figures")
        ));
    }
    if !not.is_empty() {
        let _ = write!(
            s,
            ". Not compared: {}",
            compare::list(&not.iter().map(String::as_str).collect::<Vec<_>>())
        );
    }
    let _ = writeln!(md, "{s}.\n");
    if !b.only_old.is_empty() || !b.only_new.is_empty() {
        let _ = writeln!(
            md,
            "{} ran only in OLD and {} only in NEW (listed at the end): the two matrices \
             differ there.\n",
            plural(b.only_old.len(), "group", "groups"),
            plural(b.only_new.len(), "group", "groups")
        );
    }
    // A line per group that moved, worse first: what a change broke is what its
    // author looks for. The ranges behind each are in the tables below.
    for row in b.rows.iter().chain(&b.counted) {
        let moved: Vec<&Change> = row.changes.iter().filter(|c| c.verdict.moved()).collect();
        if moved.is_empty() {
            continue;
        }
        let part = |label: &str, want: Option<bool>| {
            let items: Vec<String> = moved
                .iter()
                .filter(|c| c.improved() == want)
                .map(|c| format!("{} {}", c.subject, change_cell(c)))
                .collect();
            (!items.is_empty()).then(|| format!("{label} {}", items.join(", ")))
        };
        let parts: Vec<String> = [
            part("**worse:**", Some(false)),
            part("**better:**", Some(true)),
            part("**moved:**", None),
        ]
        .into_iter()
        .flatten()
        .collect();
        let _ = writeln!(md, "- {}: {}", row.place.label(), parts.join("; "));
    }
    if moved > 0 {
        md.push('\n');
    }
}

/// `1 figure`, `3 figures`.
fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// One table for the rows of a scenario (or the counted pass): a line per figure
/// that is not the same in both runs, the group named on its first line.
fn table(md: &mut String, rows: &[&Row]) {
    if rows.iter().all(|r| r.changes.iter().all(Change::identical)) {
        let _ = writeln!(
            md,
            "Every figure of every model here is the same in both runs.\n"
        );
        return;
    }
    let works: BTreeSet<&str> = rows.iter().map(|r| r.place.work.as_str()).collect();
    let show_work = works.len() > 1;
    let show_cpus = rows.iter().any(|r| r.place.server_cpus != 1);
    let show_rate = rows.iter().any(|r| r.place.offered_rps.is_some());
    let mut head = vec!["model", "conns"];
    if show_work {
        head.push("work");
    }
    if show_cpus {
        head.push("server CPUs");
    }
    if show_rate {
        head.push("offered (req/s)");
    }
    let place_cols = head.len();
    head.extend(["figure", "OLD", "NEW", "change", "verdict"]);
    let _ = writeln!(md, "| {} |", head.join(" | "));
    let align: Vec<&str> = head
        .iter()
        .map(|h| match *h {
            "model" | "work" | "figure" | "verdict" => "---",
            _ => "---:",
        })
        .collect();
    let _ = writeln!(md, "|{}|", align.join("|"));
    for row in rows {
        let p = &row.place;
        let mut place = vec![p.model.clone(), format::num(p.conns as f64)];
        if show_work {
            place.push(format!("`{}`", p.work));
        }
        if show_cpus {
            place.push(p.server_cpus.to_string());
        }
        if show_rate {
            place.push(p.offered_rps.map_or("—".to_string(), format::num));
        }
        let shown: Vec<&Change> = row.changes.iter().filter(|c| !c.identical()).collect();
        if shown.is_empty() {
            let _ = writeln!(
                md,
                "| {} | every figure | the same | the same | 0 % | {NO_CHANGE} |",
                place.join(" | ")
            );
            continue;
        }
        for (i, c) in shown.iter().enumerate() {
            let lead = if i == 0 {
                place.join(" | ")
            } else {
                vec![""; place_cols].join(" | ")
            };
            let verdict = verdict_text(c);
            let verdict = if c.verdict.moved() {
                format!("**{verdict}**")
            } else {
                verdict
            };
            let _ = writeln!(
                md,
                "| {lead} | {} | {} | {} | {} | {verdict} |",
                c.header,
                c.old_text,
                c.new_text,
                change_cell(c)
            );
        }
    }
    md.push('\n');
}

/// The groups one run has and the other does not.
fn only(md: &mut String, b: &Baseline) {
    if b.only_old.is_empty() && b.only_new.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Measured in one run only\n");
    for (side, list) in [("OLD", &b.only_old), ("NEW", &b.only_new)] {
        for p in list.iter() {
            let _ = writeln!(md, "- only in {side}: {}", p.label());
        }
    }
    md.push('\n');
}

fn reading(md: &mut String) {
    let _ = writeln!(
        md,
        "## Reading this page\n\n\
         - OLD, NEW: median [min–max] over each run's repeats, in the unit the figure's \
         name gives, as in each run's report.md.\n\
         - change: NEW's median against OLD's, as a percentage, or a factor from \
         twice on.\n\
         - verdict: `higher` or `lower` only when NEW's whole range lies beyond OLD's \
         (the report's rule: ranges that overlap are not ranked), then whether that is \
         better or worse for the server; otherwise \"{NO_CHANGE}\", however far apart \
         the medians are.\n\
         - ≥: some clients were never answered in the window, so that run's latencies \
         are lower bounds and are not compared; \"left clients unserved\" names the run.\n\
         - †: the load generator used more than {} of its CPUs in at least one repeat, \
         so that throughput measures the client as much as the server.",
        format::with_unit(crate::aggregate::LOADGEN_BUSY, Unit::Share)
    );
}

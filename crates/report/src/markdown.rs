//! The report page: context first (machine, command, floor), then one section
//! per scenario with a table, charts and computed sentences, then counted
//! metrics, failures and links to the raw data.
//!
//! Tables follow Stevens' table of server designs (UNP, ch. 30): a row per
//! design, a column per cost, but every timed number is `median [min–max]` over
//! the repeats so a reader sees the noise next to the value.

use std::fmt::Write as _;

use crate::aggregate::{Group, Metric, Range, Unit, LOADGEN_BUSY};
use crate::compare::NO_DIFFERENCE;
use crate::figures::{self, Figure, Target};
use crate::format;
use crate::lessons;
use crate::page::Ctx;
use crate::schema::{Counted, STATUS_INTERRUPTED};
use crate::sentences;
use crate::{CHARTS_DIR, CSV_FILE, RESULTS_FILE};

const MISSING: &str = "—";
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// Syscalls named per model in the counted table.
const TOP_SYSCALLS: usize = 4;

/// One part of the report that carries charts: a scenario, or the counted metrics.
pub struct Section {
    /// `None` for the counted-metrics section.
    pub scenario: Option<String>,
    pub figures: Vec<Figure>,
}

/// Plans every section's figures; [`crate::write_all`] draws them and [`render`]
/// links them.
pub fn plan(ctx: &Ctx) -> Vec<Section> {
    let mut sections: Vec<Section> = ctx
        .summary
        .scenarios
        .iter()
        .map(|s| Section {
            scenario: Some(s.clone()),
            figures: figures::for_scenario(ctx, s),
        })
        .collect();
    sections.push(Section {
        scenario: None,
        figures: crate::counted::figures(ctx),
    });
    sections
}

pub fn render(ctx: &Ctx, sections: &[Section]) -> String {
    let mut md = String::new();
    header(&mut md, ctx);
    glance(&mut md, ctx);
    limits(&mut md, ctx);
    checks(&mut md, ctx);
    for section in sections {
        match &section.scenario {
            Some(s) => scenario(&mut md, ctx, s, &section.figures),
            None => counted(&mut md, ctx, &section.figures),
        }
    }
    soak(&mut md, ctx);
    failures(&mut md, ctx);
    let _ = writeln!(md, "## About this run\n");
    machine(&mut md, ctx);
    run(&mut md, ctx);
    reading(&mut md);
    floor(&mut md, ctx);
    appendix_loadgen(&mut md, ctx);
    appendix_repeats(&mut md, ctx);
    raw_data(&mut md, ctx);
    md
}

/// The first screen: one row per model, each figure linking to its evidence, and
/// the lessons computed from the rows.
fn glance(md: &mut String, ctx: &Ctx) {
    let rows = crate::glance::costs(ctx);
    if rows.is_empty() {
        return;
    }
    let largest = rows.iter().find_map(|r| r.served.map(|(_, n)| n));
    let counted_at = rows.iter().find_map(|r| r.counted.map(|c| c.conns));
    let _ = writeln!(md, "## At a glance\n");
    // The c100k column only where the run has that scenario.
    let holds = rows.iter().any(|r| r.holds.is_some());
    let offered = ctx.summary.conns_in(crate::c100k::SCENARIO).last().copied();
    let mut head = vec![
        "model".to_string(),
        "one client costs".to_string(),
        match largest {
            Some(n) => format!("served of {}", format::num(n as f64)),
            None => "served".to_string(),
        },
        format!("p99, {} conns", crate::glance::P99_CONNS),
        "req/s per core".to_string(),
        "memory / conn".to_string(),
        "churn: conn/s, CPU/conn".to_string(),
        "sleep: of ideal".to_string(),
        "beside slow clients".to_string(),
        "others lost in a crash".to_string(),
        match counted_at {
            Some(n) => format!("syscalls · switches · instr. / req ({n} conns)"),
            None => "syscalls · switches · instr. / req".to_string(),
        },
    ];
    if holds {
        head.push(format!(
            "holds {}",
            offered.map_or("c100k".to_string(), |n| format::num(n as f64))
        ));
    }
    let _ = writeln!(md, "| {} |", head.join(" | "));
    let _ = writeln!(md, "|---|---|{}", "---:|".repeat(head.len() - 2));
    let link = |text: String, anchor: &str| {
        if text == MISSING {
            text
        } else {
            format!("[{text}](#{anchor})")
        }
    };
    for r in &rows {
        let served = r
            .served
            .map_or(MISSING.to_string(), |(s, _)| format::num(s));
        let p99 = r.p99.map_or(MISSING.to_string(), |(v, lower)| {
            format!(
                "{}{}",
                if lower { "≥ " } else { "" },
                format::with_unit(v.median, Unit::Micros)
            )
        });
        let per_core = r.per_core.map_or(MISSING.to_string(), |(v, lower)| {
            format!(
                "{}{}",
                if lower { "≥ " } else { "" },
                format::num(v.median.round())
            )
        });
        let memory = r.memory.map_or(MISSING.to_string(), |m| {
            format::with_unit(m.median, Unit::Bytes)
        });
        let churn = match (r.churn_rate, r.churn_cpu) {
            (Some(rate), Some(cpu)) => format!(
                "{}, {}",
                format::num(rate.median.round()),
                format::with_unit(cpu.median, Unit::Micros)
            ),
            (Some(rate), None) => format::num(rate.median.round()),
            _ => MISSING.to_string(),
        };
        let sleep = r.sleep.map_or(MISSING.to_string(), |(share, _)| {
            format::with_unit(share.median, Unit::Share)
        });
        let slow = r.beside_slow.map_or(MISSING.to_string(), |ok| {
            if ok { "yes" } else { "no" }.to_string()
        });
        let crash = r.crash.map_or(MISSING.to_string(), |(lost, n, survived)| {
            format!(
                "{} of {}{}",
                format::num(lost),
                format::num(n as f64),
                if survived { "" } else { ", server down" }
            )
        });
        let counted = r.counted.map_or(MISSING.to_string(), |c| {
            let show = |v: Option<f64>| v.map_or(MISSING.to_string(), format::sig3);
            format!(
                "{} · {} · {}",
                show(c.syscalls),
                show(c.ctx_switches),
                show(c.instructions)
            )
        });
        let mut cells = vec![
            r.model.clone(),
            r.per_client.clone(),
            link(served, "scenario-scaling"),
            link(p99, "scenario-scaling"),
            link(per_core, "scenario-curve"),
            link(memory, "scenario-scaling"),
            link(churn, "scenario-churn"),
            link(sleep, "scenario-sleep"),
            link(slow, "scenario-slow"),
            link(crash, "scenario-chaos"),
            link(counted, "counted-metrics"),
        ];
        if holds {
            let h = r.holds.clone().unwrap_or_else(|| MISSING.to_string());
            cells.push(link(h, "scenario-c100k"));
        }
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    let _ = write!(
        md,
        "\nEach figure links to its section. p99 is over every client (a client never \
         answered counts with its wait, so `≥`); req/s per core is capacity at the knee of the \
         latency-vs-load curve (`≥`: the load generator's limit came first); memory is PSS per \
         connection the server held; sleep is requests per second against every client asleep \
         at once{}.\n\n",
        if holds {
            "; holds: whether the server held every connection of the c100k scenario, or how \
             many it held and the limit that stopped it"
        } else {
            ""
        }
    );
    for lesson in sentences::lessons(&rows) {
        let _ = writeln!(md, "- {lesson}");
    }
    md.push('\n');
}

/// What this run could not show, computed.
fn limits(md: &mut String, ctx: &Ctx) {
    let limits = sentences::limits(ctx);
    if limits.is_empty() {
        return;
    }
    let _ = writeln!(md, "## What this run could not show\n");
    for l in limits {
        let _ = writeln!(md, "- {l}");
    }
    md.push('\n');
}

fn header(md: &mut String, ctx: &Ctx) {
    let r = ctx.results;
    let _ = writeln!(md, "# socklab report: {}\n", r.machine.hostname);
    let _ = writeln!(
        md,
        "{} mode on {} ({} CPUs), `{}`; how it was run and how to read it: [About this \
         run](#about-this-run).\n",
        or_unknown(&r.run.mode),
        or_unknown(&r.machine.hostname),
        r.machine.cpus,
        r.run.command
    );
    let _ = writeln!(
        md,
        "The same uppercase-echo service under {} server models ({}), loaded identically. \
         Run started {} and finished {}. Every number below comes from `{RESULTS_FILE}` in \
         this directory; `socklab report` rebuilds this page from it.\n",
        ctx.summary.models.len(),
        ctx.summary.models.join(", "),
        or_unknown(&r.run.started),
        or_unknown(&r.run.finished),
    );
    if r.run.interrupted {
        let done = r
            .cells
            .iter()
            .filter(|c| c.status != STATUS_INTERRUPTED)
            .count();
        let _ = writeln!(
            md,
            "**Interrupted after {} of {} cells.** The numbers below are the cells that \
             finished; `socklab compare --resume DIR` runs the rest into this directory.\n",
            format::num(done as f64),
            format::num(r.run.planned_cells.max(done) as f64),
        );
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "(not recorded)"
    } else {
        s
    }
}

fn machine(md: &mut String, ctx: &Ctx) {
    let m = &ctx.results.machine;
    let _ = writeln!(md, "## The machine\n\n| | |\n|---|---|");
    let rows = [
        (
            "CPU",
            format!("{} ({} CPUs online)", or_unknown(&m.cpu_model), m.cpus),
        ),
        ("memory", format!("{:.1} GiB", m.memory_bytes as f64 / GIB)),
        ("kernel", m.kernel.clone()),
        ("OS", m.os.clone()),
        ("rustc", m.rustc.clone()),
        ("socklab", m.socklab_version.clone()),
        ("hostname", m.hostname.clone()),
    ];
    for (k, v) in rows {
        let _ = writeln!(md, "| {k} | {} |", cell_text(or_unknown(&v)));
    }
    md.push('\n');
}

fn run(md: &mut String, ctx: &Ctx) {
    let r = &ctx.results.run;
    let _ = writeln!(md, "## How it was run\n\n```sh\n{}\n```\n", r.command);
    let pinning = match (&r.server_cpu, &r.loadgen_cpus) {
        (Some(s), Some(l)) => format!(
            "server pinned to CPU {s}, load generator to CPU{} {}",
            if l.len() == 1 { "" } else { "s" },
            l.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (Some(s), None) => format!("server pinned to CPU {s}, load generator not pinned"),
        (None, Some(l)) => format!("server not pinned, load generator on CPUs {l:?}"),
        (None, None) => "not pinned (fewer than two CPUs)".to_string(),
    };
    let _ = writeln!(md, "- mode: {}", or_unknown(&r.mode));
    let _ = writeln!(md, "- pinning: {pinning}");
    let _ = writeln!(
        md,
        "- repeats: {} per cell, interleaved across models",
        r.repeats
    );
    let _ = writeln!(
        md,
        "- {} s measured per cell, after {} s of warm-up",
        format::num(r.cell_seconds),
        format::num(r.warmup_seconds)
    );
    let _ = writeln!(md, "- message size: {} bytes\n", r.message_bytes);
}

fn reading(md: &mut String) {
    let _ = writeln!(
        md,
        "## How to read the numbers\n\n\
         Timed figures are the median over the repeats with the min–max range in brackets: \
         `95,000 [90,000–99,000]`. On a small machine repeats move by 20–30 %, so two models \
         are ranked only when their ranges do not overlap; when they do, the report says \
         \"{NO_DIFFERENCE}\". Sentences under the charts are computed from the data; a reason \
         (\"because ...\") is given only when the measured direction is the one the design \
         predicts. Counted metrics (syscalls, instructions) repeat exactly and are single \
         numbers. `—` means not measured; `runs` counts repeats that produced numbers.\n"
    );
}

/// Two checks every run must pass before its numbers are believed (see
/// [`sentences::checks`]).
fn checks(md: &mut String, ctx: &Ctx) {
    let paragraphs = sentences::checks(ctx);
    if paragraphs.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Checks on the numbers\n");
    for p in paragraphs {
        let _ = writeln!(md, "{p}\n");
    }
}

/// The metric columns a scenario's table offers, before dropping empty ones; the
/// baseline comparison compares the same figures.
pub(crate) fn metric_columns(scenario: &str) -> &'static [Metric] {
    match scenario {
        // A server that crashed has no throughput or latency worth printing: the
        // outcome is who was lost (the extras) and who saw errors.
        "chaos" => &[Metric::Errors],
        "churn" => &[
            Metric::ConnectsPerS,
            Metric::ConnectP50,
            Metric::ConnectP99,
            Metric::Throughput,
            Metric::CpuPerRequest,
            Metric::CtxPerRequest,
            Metric::Processes,
            Metric::Errors,
        ],
        _ => &[
            Metric::Throughput,
            Metric::P50,
            Metric::P99,
            Metric::Served,
            Metric::Fairness,
            Metric::Ramp,
            Metric::CpuPerRequest,
            Metric::CtxPerRequest,
            Metric::PssPerConn,
            Metric::Processes,
            Metric::Threads,
            Metric::Errors,
        ],
    }
}

/// The columns of a scenario's table: its metrics that some group measured, then
/// every extra any group recorded.
pub fn columns(ctx: &Ctx, scenario: &str) -> Vec<Target> {
    let groups: Vec<&Group> = ctx.summary.in_scenario(scenario).collect();
    let mut cols: Vec<Target> = metric_columns(scenario)
        .iter()
        .filter(|m| groups.iter().any(|g| g.get(**m).is_some()))
        .map(|m| Target::Metric(*m))
        .collect();
    let mut extras: Vec<&String> = groups.iter().flat_map(|g| g.extra.keys()).collect();
    extras.sort();
    extras.dedup();
    cols.extend(extras.into_iter().map(|e| Target::Extra(e.clone())));
    cols
}

fn scenario(md: &mut String, ctx: &Ctx, scenario: &str, figs: &[Figure]) {
    let _ = writeln!(md, "## Scenario: {scenario}\n");
    if scenario == crate::c100k::SCENARIO {
        crate::c100k::section(md, ctx);
        return;
    }
    if scenario == "curve" {
        if let Some(text) = lessons::intro(scenario) {
            let _ = writeln!(md, "{text}\n");
        }
        knee_table(md, ctx);
        for fig in figs {
            figure(md, fig);
        }
        return;
    }
    match lessons::intro(scenario) {
        Some(text) => {
            let _ = writeln!(md, "{text}\n");
        }
        None => {
            let _ = writeln!(
                md,
                "A scenario this version of the report has no description for; its numbers \
                 are shown as recorded.\n"
            );
        }
    }
    let works = ctx.summary.works_in(scenario);
    let conns = ctx.summary.conns_in(scenario);
    let _ = writeln!(
        md,
        "Server work per request: {}. Connections: {}.\n",
        works
            .iter()
            .map(|w| format!("`{w}`"))
            .collect::<Vec<_>>()
            .join(", "),
        conns
            .iter()
            .map(|c| format::num(*c as f64))
            .collect::<Vec<_>>()
            .join(", ")
    );
    table(md, ctx, scenario, works.len() > 1);
    for fig in figs {
        figure(md, fig);
    }
}

/// The curve's knee per model: the highest offered rate sustained, p99 there, and
/// what one fully used server CPU carries at that load.
fn knee_table(md: &mut String, ctx: &Ctx) {
    let rows = crate::curve::knees(ctx.results, &ctx.summary.models);
    if rows.is_empty() {
        return;
    }
    md.push_str(
        "| model | conns | server CPUs | knee (req/s offered) | p99 at the knee (µs) | capacity per core (req/s per CPU) | curves with a knee |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &rows {
        let bound = if r.lower_bound { "≥ " } else { "" };
        let cell = |v: &Option<Range>, unit: Unit, prefix: &str| match v {
            Some(v) => format!("{prefix}{}", format::range(v, unit)),
            None => MISSING.to_string(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {}/{} |",
            r.model,
            format::num(r.conns as f64),
            r.server_cpus,
            cell(&r.offered, Unit::Rate, bound),
            cell(&r.p99_us, Unit::Micros, ""),
            cell(&r.per_core, Unit::Rate, bound),
            r.with_knee,
            r.repeats,
        );
    }
    let _ = writeln!(
        md,
        "\n- knee: the highest offered rate at which every client was answered, at least \
         {:.0} % of the rate was achieved, p99 over all clients stayed within {}, and the \
         load generator kept its schedule (p99 send lag within {}) with CPU to spare; `≥`: \
         the next step failed because the load generator could not keep up, so the \
         server's own limit is higher. `—`: not even the first step ({}) was sustained.\n\
         - capacity per core: 1 s ÷ server CPU per request at the knee, over exactly the \
         window: requests per second one fully busy server CPU would carry at that load.\n",
        crate::curve::SUSTAINED_SHARE * 100.0,
        format::with_unit(crate::curve::P99_BOUND_US, Unit::Micros),
        format::with_unit(crate::curve::LAG_BOUND_US, Unit::Micros),
        format::with_unit(crate::curve::FIRST_STEP_RPS, Unit::Rate),
    );
}

fn table(md: &mut String, ctx: &Ctx, scenario: &str, show_work: bool) {
    let cols = columns(ctx, scenario);
    let mut head = vec!["model".to_string(), "conns".to_string()];
    if show_work {
        head.push("work".to_string());
    }
    head.push("runs".to_string());
    head.extend(cols.iter().map(|c| c.quantity().words.header.into_owned()));
    let _ = writeln!(md, "| {} |", head.join(" | "));
    let align: Vec<&str> = head
        .iter()
        .enumerate()
        .map(|(i, _)| {
            if i == 0 || (show_work && i == 2) {
                "---"
            } else {
                "---:"
            }
        })
        .collect();
    let _ = writeln!(md, "|{}|", align.join("|"));
    let (mut busy, mut starved) = (false, false);
    for g in ctx.summary.in_scenario(scenario) {
        let mut row = vec![g.model.clone(), format::num(g.conns as f64)];
        if show_work {
            row.push(format!("`{}`", g.work));
        }
        row.push(format!("{}/{}", g.ok, g.ok + g.failed));
        for c in &cols {
            let mut v = value(g, c);
            if g.loadgen_busy && *c == Target::Metric(Metric::Throughput) && v != MISSING {
                v.push_str(" †");
                busy = true;
            }
            starved |= g.starved() && v.starts_with('≥');
            row.push(v);
        }
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    md.push('\n');
    let mut notes: Vec<String> = cols
        .iter()
        .filter_map(|c| match c {
            Target::Extra(name) => Some(format!(
                "{}: {}.",
                lessons::extra_info(name).words.header,
                lessons::extra_info(name).explain
            )),
            Target::Metric(_) => None,
        })
        .collect();
    if busy {
        notes.push(format!(
            "†: in at least one repeat the load generator used more than {} of its CPUs.",
            format::with_unit(LOADGEN_BUSY, Unit::Share)
        ));
    }
    if cols.contains(&Target::Metric(Metric::P99)) {
        notes.push(
            "p50, p99: over all clients. A request still waiting when the window closed \
             counts with its wait so far; in a closed loop a client's wait also stands for \
             the requests it would have sent meanwhile (HdrHistogram's coordinated-omission \
             correction, with each client's fair share of the throughput as the interval)."
                .to_string(),
        );
    }
    if starved {
        notes.push(
            "≥: some clients were never answered in the window, so these latencies are their \
             waits so far (lower bounds), and the ramp ran to its limit. Such a model is not \
             ranked in the sentences below."
                .to_string(),
        );
    }
    if cols.contains(&Target::Metric(Metric::Served)) {
        notes.push(
            "served: clients answered at least once in the window, of those connected. \
             fairness: Jain's index of the requests per client, 1 when every client got the \
             same share, 1/n when one client got all. ramp: seconds from the start of the \
             traffic until every client had been answered once (warm-up and the window \
             follow it); `≥`: it reached its limit first; stalled: no new client was \
             answered for a second (or for four times the longest wait between two new \
             clients so far, for a server still getting to them ever more slowly), so it \
             ended there."
                .to_string(),
        );
    }
    if cols.contains(&Target::Metric(Metric::CpuPerRequest)) {
        notes.push(
            "server CPU, ctx switches: the whole server tree (threads, children, reaped \
             children) over exactly the measured window, per request answered in it."
                .to_string(),
        );
    }
    if cols.contains(&Target::Metric(Metric::PssPerConn)) {
        notes.push(
            "PSS/conn: (PSS at peak − PSS of the idle server) / the connections the server \
             held open (its own count as the window closed), whole process tree; PSS splits \
             a shared page between the processes that map it."
                .to_string(),
        );
    }
    if cols.contains(&Target::Metric(Metric::Errors)) {
        notes.push(
            "errors: clients that saw at least one error (a reset or close, a refused \
             connect, a wrong reply, a lost datagram), each counted once; in churn, failed \
             connections."
                .to_string(),
        );
    }
    for n in notes {
        let _ = writeln!(md, "- {n}");
    }
    md.push('\n');
}

/// One table cell: a range, a flag count, or `—`. Latencies of a group that left
/// clients unserved are lower bounds (`≥`), as is a ramp that hit its limit;
/// clients served read `k/N`.
pub fn value(g: &Group, col: &Target) -> String {
    let Some(r) = col.get(g) else {
        return MISSING.to_string();
    };
    let plain = format::range(&r, col.quantity().unit);
    match col {
        Target::Extra(name) if lessons::extra_info(name).flag => flag(&r),
        Target::Metric(Metric::Served) => format!("{plain}/{}", format::num(g.conns as f64)),
        Target::Metric(Metric::Ramp) if g.ramp_stalled => "stalled".to_string(),
        Target::Metric(Metric::Ramp) if g.ramp_limited => format!("≥ {plain}"),
        Target::Metric(m) if g.starved() && m.is_latency() => format!("≥ {plain}"),
        _ => plain,
    }
}

/// `2/3`: repeats in which a 0/1 flag was 1.
fn flag(r: &Range) -> String {
    format!("{}/{}", (r.mean * r.n as f64).round() as u64, r.n)
}

fn figure(md: &mut String, fig: &Figure) {
    let _ = writeln!(md, "![{}]({CHARTS_DIR}/{})\n", fig.title, fig.file);
    if !fig.sentences.is_empty() {
        let _ = writeln!(md, "{}\n", fig.sentences.join(" "));
    }
}

fn counted(md: &mut String, ctx: &Ctx, figs: &[Figure]) {
    let _ = writeln!(md, "## Counted metrics\n\n{}\n", lessons::COUNTED_INTRO);
    let mut conns: Vec<usize> = ctx.results.counted.iter().map(|c| c.conns).collect();
    conns.sort_unstable();
    conns.dedup();
    let rows: Vec<&Counted> = conns
        .iter()
        .flat_map(|&n| {
            ctx.summary.models.iter().filter_map(move |m| {
                ctx.results
                    .counted
                    .iter()
                    .find(|c| &c.model == m && c.conns == n)
            })
        })
        .collect();
    if rows.is_empty() {
        md.push_str("No counted pass ran in this run (strace, valgrind or the counted mode were not available).\n\n");
        return;
    }
    md.push_str(
        "| model | requests | conns | syscalls/req | top syscalls (calls/req) | ctx switches/req | instructions/req |\n\
         |---|---:|---:|---:|---|---:|---:|\n",
    );
    let opt = |v: Option<f64>| v.map(format::sig3).unwrap_or_else(|| MISSING.to_string());
    for c in &rows {
        let top: Vec<String> = c
            .top_syscalls(TOP_SYSCALLS)
            .iter()
            .map(|(name, n)| format!("`{name}` {}", format::sig3(*n)))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.model,
            format::num(c.requests as f64),
            format::num(c.conns as f64),
            opt(c.syscalls_per_request()),
            if top.is_empty() {
                MISSING.to_string()
            } else {
                top.join(", ")
            },
            opt(c.ctx_per_request()),
            c.instructions_per_request
                .map(format::num)
                .unwrap_or_else(|| MISSING.to_string()),
        );
    }
    md.push('\n');
    let notes: Vec<String> = rows
        .iter()
        .flat_map(|c| {
            c.notes
                .iter()
                .map(move |n| format!("- {}: {}", c.model, cell_text(n)))
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(
            md,
            "Notes on missing or partial counts:\n\n{}\n",
            notes.join("\n")
        );
    }
    for fig in figs {
        figure(md, fig);
    }
}

fn failures(md: &mut String, ctx: &Ctx) {
    let _ = writeln!(md, "## Failed cells\n");
    if ctx.summary.failures.is_empty() {
        md.push_str("None: every cell produced numbers.\n\n");
        return;
    }
    let _ = writeln!(
        md,
        "These cells produced no numbers and are left out of every median above; the run \
         went on without them.\n\n\
         | model | scenario | conns | repeat | work | reason |\n|---|---|---:|---:|---|---|"
    );
    for f in &ctx.summary.failures {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | `{}` | {} |",
            f.model,
            f.scenario,
            format::num(f.conns as f64),
            f.repeat,
            f.work,
            cell_text(&f.reason)
        );
    }
    md.push('\n');
}

/// The soaks: each model under rounds of mixed clients, read at rest after each.
fn soak(md: &mut String, ctx: &Ctx) {
    let soaks = &ctx.results.soak;
    if soaks.is_empty() {
        return;
    }
    md.push_str(
        "## Soak\n\n\
         Each model ran alone under rounds of mixed clients — 16 persistent closed-loop \
         connections, 4 churn loops, 2 clients typing a line a byte at a time, one client \
         resetting its connection halfway through a request 50 times a second — and was \
         read at rest after every round, once the round's clients had gone. A leak climbs \
         round after round; a healthy server rests at the same level. A resource grows \
         when a line through the resting samples (the first two rounds left out) rises by \
         more than 3× their scatter and more than a few descriptors or 4 MiB.\n\n\
         | model | seconds | rounds | connections | requests | fds at rest (first → last) | RSS at rest (MiB) | threads | processes | verdict |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for s in soaks {
        let series = |name: &str| s.series.iter().find(|x| x.name == name);
        let span = |name: &str, scale: f64| match series(name) {
            Some(x) => format!(
                "{} → {}",
                format::num(x.values.first().copied().unwrap_or(0.0) / scale),
                format::num(x.values.last().copied().unwrap_or(0.0) / scale)
            ),
            None => MISSING.to_string(),
        };
        let grows: Vec<&str> = s
            .series
            .iter()
            .filter(|x| x.grows)
            .map(|x| x.name.as_str())
            .collect();
        let verdict = if grows.is_empty() {
            "steady".to_string()
        } else {
            format!("**grows: {}**", grows.join(", "))
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {verdict} |",
            s.model,
            format::num(s.seconds.round()),
            s.rounds,
            format::num(s.connections as f64),
            format::num(s.requests as f64),
            span("fds", 1.0),
            span("rss", 1024.0 * 1024.0),
            span("threads", 1.0),
            span("processes", 1.0),
        );
    }
    md.push('\n');
    let leaking: Vec<&str> = soaks
        .iter()
        .filter(|s| s.leaks())
        .map(|s| s.model.as_str())
        .collect();
    if leaking.is_empty() {
        let _ = writeln!(
            md,
            "No model's descriptors, memory, threads or processes grew beyond their noise \
             over {} connections in all.\n",
            format::num(soaks.iter().map(|s| s.connections as f64).sum())
        );
    } else {
        let _ = writeln!(
            md,
            "Grew beyond its noise: {}.\n",
            crate::compare::list(&leaking)
        );
    }
}

/// The loopback floor: what one request at a time on an idle connection costs.
fn floor(md: &mut String, ctx: &Ctx) {
    let _ = writeln!(md, "### The loopback floor\n");
    match &ctx.results.floor {
        Some(f) => {
            let _ = write!(
                md,
                "The loopback floor, measured with `{}` ping-pong on the same machine: one \
                 request at a time on one idle connection takes {} at p50 and {} at p99 — what \
                 the kernel's network stack costs a round trip before any server does any work. \
                 It is the floor of a one-connection request; with many in flight, queueing \
                 comes on top. ",
                f.tool,
                format::with_unit(f.p50_round_trip_us, Unit::Micros),
                format::with_unit(f.p99_round_trip_us, Unit::Micros)
            );
            if let Some(s) = sentences::at_floor(ctx, f.p50_round_trip_us) {
                md.push_str(&s);
            }
            md.push_str("\n\n");
        }
        None => md.push_str(
            "No loopback floor was measured (sockperf was not available), so latencies \
             below cannot be set against the bare round-trip time.\n\n",
        ),
    }
}

/// Appendix A: every cell in which the load generator may have been the limit.
fn appendix_loadgen(md: &mut String, ctx: &Ctx) {
    let _ = writeln!(md, "## Appendix A: the load generator's CPU\n");
    let busy: Vec<_> = ctx
        .results
        .cells
        .iter()
        .filter(|c| c.is_ok())
        .filter_map(|c| Some((c, c.load.as_ref()?.loadgen_cpu_util)))
        .filter(|(_, u)| *u > LOADGEN_BUSY)
        .collect();
    let max_util = ctx
        .results
        .cells
        .iter()
        .filter(|c| c.is_ok())
        .filter_map(|c| Some(c.load.as_ref()?.loadgen_cpu_util))
        .fold(None, |m: Option<f64>, u| Some(m.map_or(u, |m| m.max(u))));
    let threshold = format::with_unit(LOADGEN_BUSY, Unit::Share);
    match (busy.is_empty(), max_util) {
        (_, None) => md.push_str("The load generator reported no CPU use.\n\n"),
        (true, Some(u)) => {
            let _ = writeln!(
                md,
                "The load generator used at most {} of its CPUs in any cell, below the {threshold} \
                 mark: it was not the bottleneck.\n",
                format::with_unit(u, Unit::Share)
            );
        }
        (false, Some(_)) => {
            let _ = writeln!(
                md,
                "In {} cell{} the load generator used more than {threshold} of its CPUs, so it may \
                 have been the bottleneck there: their throughput is marked † in the tables and \
                 measures the client as much as the server.\n\n\
                 <details><summary>The cells, with the load generator's CPU</summary>\n\n\
                 | model | scenario | conns | repeat | loadgen CPU |\n|---|---|---:|---:|---:|",
                busy.len(),
                if busy.len() == 1 { "" } else { "s" }
            );
            for (c, u) in &busy {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} |",
                    c.model,
                    c.scenario,
                    c.conns,
                    c.repeat,
                    format::with_unit(*u, Unit::Share)
                );
            }
            md.push_str("\n</details>\n\n");
        }
    }
}

/// Appendix B: every repeat of every cell, the figures the tables give as medians.
fn appendix_repeats(md: &mut String, ctx: &Ctx) {
    let cells: Vec<&crate::schema::Cell> = ctx.results.cells.iter().filter(|c| c.is_ok()).collect();
    if cells.is_empty() {
        return;
    }
    md.push_str(
        "## Appendix B: every repeat\n\n<details><summary>One row per cell and repeat \
         (the tables above show their medians and ranges)</summary>\n\n\
         | scenario | model | conns | CPUs | offered | repeat | req/s | p50 (µs) | p99 (µs) | served | server CPU (µs/req) | loadgen CPU | steal |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in cells {
        let l = c.load.as_ref().expect("ok cells have a load");
        let opt = |v: Option<f64>| v.map_or(MISSING.to_string(), format::sig3);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.scenario,
            c.model,
            format::num(c.conns as f64),
            c.server_cpus,
            c.offered_rps.map_or(MISSING.to_string(), format::num),
            c.repeat,
            format::num(l.throughput_rps.round()),
            format::num(l.latency_us.p50),
            format::num(l.latency_us.p99),
            l.clients
                .map_or(MISSING.to_string(), |k| format!("{}/{}", k.served, k.conns)),
            opt(c.cpu_us_per_request()),
            format::with_unit(l.loadgen_cpu_util, Unit::Share),
            c.server
                .as_ref()
                .and_then(|s| s.steal_share)
                .map_or(MISSING.to_string(), |v| format::with_unit(v, Unit::Share)),
        );
    }
    md.push_str(
        "\nsteal: the share of the machine's CPU time the hypervisor gave to others during \
         the window (/proc/stat).\n\n</details>\n\n",
    );
}

fn raw_data(md: &mut String, ctx: &Ctx) {
    let _ = writeln!(
        md,
        "## Appendix C: raw data\n\n\
         - [`{RESULTS_FILE}`]({RESULTS_FILE}): everything measured, with the machine and command.\n\
         - [`{CSV_FILE}`]({CSV_FILE}): one row per cell and repeat, for spreadsheets.\n"
    );
    let with_logs: Vec<&Group> = ctx
        .summary
        .groups
        .iter()
        .filter(|g| !g.hdr_logs.is_empty())
        .collect();
    if with_logs.is_empty() {
        md.push_str("No HDR histogram logs were recorded.\n");
        return;
    }
    let total: usize = with_logs.iter().map(|g| g.hdr_logs.len()).sum();
    let _ = writeln!(
        md,
        "<details><summary>HDR histogram logs ({total} files): every latency of every cell, \
         for HdrHistogram's plotter or <code>hdrhistogram</code> tools</summary>\n"
    );
    for g in with_logs {
        let links: Vec<String> = g
            .hdr_logs
            .iter()
            .enumerate()
            .map(|(i, p)| format!("[{}]({p})", i + 1))
            .collect();
        let _ = writeln!(
            md,
            "- {} / {} / {}: {}",
            g.scenario,
            g.model,
            format::conns(g.conns),
            links.join(" ")
        );
    }
    md.push_str("\n</details>\n");
}

/// Text safe inside a table cell: no pipes or line breaks.
fn cell_text(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

//! The c100k section: 100,000 mostly idle connections per model, who held them,
//! and the limit that stopped the others.
//!
//! Unlike the other scenarios this one is about an outcome, not a rate: how many
//! connections the server held as the window closed, and what stopped it — read
//! by `socklab compare` from the server's own log and /proc (the cell's
//! [`Limit`]), never inferred here. Each model runs once, so timed figures are
//! shown but never ranked; a model that left clients unserved is named as such
//! and not ranked at all ([`sentences::unanswered_at`]).

use std::fmt::Write as _;

use crate::aggregate::{Group, Metric, Unit};
use crate::compare;
use crate::figures::Target;
use crate::format;
use crate::lessons;
use crate::markdown::value;
use crate::page::Ctx;
use crate::schema::{Cell, Limit, LimitKind};
use crate::sentences;

/// The scenario's name in results and anchors.
pub const SCENARIO: &str = "c100k";

const MISSING: &str = "—";

/// One model's c100k row: its group (the metrics) and its cell (the limit and
/// the loaders' and kernel's figures).
pub struct Row<'a> {
    pub model: &'a str,
    pub group: &'a Group,
    pub cell: Option<&'a Cell>,
}

impl Row<'_> {
    fn extra(&self, name: &str) -> Option<f64> {
        self.cell?.extra.get(name).copied()
    }

    pub fn limit(&self) -> Option<&Limit> {
        self.cell?.limit.as_ref()
    }
}

/// Every model's row, in teaching order.
pub fn rows<'a>(ctx: &'a Ctx) -> Vec<Row<'a>> {
    ctx.summary
        .in_scenario(SCENARIO)
        .map(|g| Row {
            model: g.model.as_str(),
            group: g,
            cell: ctx.results.cells.iter().find(|c| {
                c.scenario == SCENARIO && c.model == g.model && c.conns == g.conns && c.is_ok()
            }),
        })
        .collect()
}

/// `19,994 of 100,000 (descriptors (RLIMIT_NOFILE))` for the first screen, or
/// `yes`.
pub fn glance(ctx: &Ctx, model: &str) -> Option<String> {
    let rows = rows(ctx);
    let row = rows.iter().find(|r| r.model == model)?;
    let l = row.limit()?;
    let served = row.group.get(Metric::Served).map(|r| r.median);
    Some(if l.kind == LimitKind::None {
        "yes".to_string()
    } else {
        let held = match served {
            // A queue in front of its workers holds more than it serves.
            Some(s) if s < l.held as f64 => format!(
                "{} held, {} served",
                format::num(l.held as f64),
                format::num(s)
            ),
            _ => format::num(l.held as f64),
        };
        format!(
            "{held} ({}{})",
            short(l.kind),
            if l.died { ", then died" } else { "" }
        )
    })
}

/// For "What this run could not show": the models c100k found short of the
/// target, and the workers it would not give a one-client-per-worker model.
pub fn limits(ctx: &Ctx) -> Vec<String> {
    let rows = rows(ctx);
    let Some(conns) = rows.first().map(|r| r.group.conns) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let short_of: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let l = r.limit()?;
            (l.kind != LimitKind::None).then(|| {
                format!(
                    "{} ({}, at {})",
                    r.model,
                    short(l.kind),
                    format::num(l.held as f64)
                )
            })
        })
        .collect();
    if !short_of.is_empty() {
        out.push(format!(
            "At c100k's {} connections {} stopped short, at a limit of this machine or of \
             their design, so how they would behave holding them all is not measured; [the \
             c100k section](#scenario-c100k) quotes what each server said.",
            format::num(conns as f64),
            compare::list(&short_of.iter().map(String::as_str).collect::<Vec<_>>())
        ));
    }
    for r in rows
        .iter()
        .filter(|r| r.limit().is_some_and(|l| l.kind == LimitKind::Cap))
    {
        out.push(format!(
            "{} was capped at {} connections in c100k (`--max-conns`): a process per client \
             for all {} would have been that many processes on a machine shared with the load \
             generators{}.",
            r.model,
            format::num(r.extra("max_conns").unwrap_or(0.0)),
            format::num(conns as f64),
            past_pid_max(r, conns),
        ));
    }
    for r in rows
        .iter()
        .filter(|r| r.limit().is_some_and(|l| l.kind == LimitKind::Workers))
    {
        out.push(format!(
            "{} was given {} workers in c100k, not one per client: a worker per connection \
             would have been {} processes or threads on a machine shared with the load \
             generators{}.",
            r.model,
            format::num(r.extra("workers").unwrap_or(0.0)),
            format::num(conns as f64),
            past_pid_max(r, conns),
        ));
    }
    out
}

/// `, past its kernel.pid_max of 32,768` when `conns` tasks would not fit.
fn past_pid_max(r: &Row, conns: usize) -> String {
    match r.extra("pid_max") {
        Some(p) if p > 0.0 && p < conns as f64 => {
            format!(", past its `kernel.pid_max` of {}", format::num(p))
        }
        _ => String::new(),
    }
}

/// A limit in one word or two, for tight cells.
fn short(kind: LimitKind) -> &'static str {
    match kind {
        LimitKind::None => "all",
        LimitKind::Fds => "fds",
        LimitKind::FileTable => "file-max",
        LimitKind::Tasks => "tasks",
        LimitKind::Memory => "memory",
        LimitKind::Mappings => "mappings",
        LimitKind::Workers => "workers",
        LimitKind::OneAtATime => "one at a time",
        LimitKind::Cap => "capped",
        LimitKind::Ports => "ports",
        LimitKind::Unknown => "unknown",
    }
}

/// The section's body, after its heading.
pub fn section(md: &mut String, ctx: &Ctx) {
    if let Some(text) = lessons::intro(SCENARIO) {
        let _ = writeln!(md, "{text}\n");
    }
    let rows = rows(ctx);
    if rows.is_empty() {
        md.push_str("No c100k cell produced numbers in this run.\n\n");
        return;
    }
    setup(md, &rows);
    table(md, &rows);
    notes(md, &rows);
    for s in findings(ctx, &rows) {
        let _ = writeln!(md, "{s}\n");
    }
}

/// How the load was made: the loaders, their source addresses, their windows.
fn setup(md: &mut String, rows: &[Row]) {
    let max = |name: &str| {
        rows.iter()
            .filter_map(|r| r.extra(name))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let (Some(loaders), Some(skew)) = (max("loaders"), max("window_skew_ms")) else {
        return;
    };
    let conns = rows[0].group.conns;
    let checked = rows
        .iter()
        .filter_map(|r| Some((r.extra("merged_count")?, r.extra("loaders_count")?)))
        .collect::<Vec<_>>();
    let all_equal = checked.iter().all(|(m, p)| m == p);
    let sources = max("loader_sources").unwrap_or(0.0);
    let _ = writeln!(
        md,
        "The {} connections came from {} load processes (`socklab load --hold`), each with \
         its own descriptor table and its own source address ({} distinct addresses seen by \
         the kernel, 127.0.0.2 on), open loop, every client once per period. Each loader \
         ramped on its own; then all started their warm-up at one instant compare gave them, \
         so each window opened at the instant its loader was given (the furthest {} from \
         it, by the loaders' own reports), and the server's CPU and context switches were read \
         at exactly those edges. Their interval logs were merged as \
         `socklab load merge` merges them: {}.\n",
        format::num(conns as f64),
        format::num(loaders),
        format::num(sources),
        format::with_unit(skew * 1e3, Unit::Micros),
        if all_equal {
            format!(
                "in every cell the merged count equals the sum of the loaders' ({} values in all)",
                format::num(checked.iter().map(|(m, _)| m).sum())
            )
        } else {
            "**in some cell the merged count differs from the sum of the loaders'**".to_string()
        }
    );
    let limits: Vec<String> = [
        (
            "server_fds_limit",
            "descriptors per process (`RLIMIT_NOFILE`)",
        ),
        (
            "max_map_count",
            "memory mappings per process (`vm.max_map_count`)",
        ),
        ("pid_max", "tasks on the whole machine (`kernel.pid_max`)"),
    ]
    .iter()
    .filter_map(|(name, what)| Some(format!("{} {what}", format::num(max(name)?))))
    .collect();
    if !limits.is_empty() {
        let _ = writeln!(
            md,
            "The limits in reach on this machine, as read during the run: {}. socklab changes \
             none of them (it raises its own processes' soft descriptor limit to the hard one).\n",
            compare::list(&limits.iter().map(String::as_str).collect::<Vec<_>>())
        );
    }
}

fn table(md: &mut String, rows: &[Row]) {
    md.push_str(
        "| model | held / offered | served | connect (s) | all served once (s) | p50 (µs) | p99 (µs) | p99.9 (µs) | server CPU (µs/req) | ctx switches/req | PSS / held conn (KiB) | kernel: TCP sockets, buffers | kernel slab / socket | processes | threads | stopped by |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        let g = r.group;
        let m = |metric: Metric| value(g, &Target::Metric(metric));
        let held = r.limit().map_or(MISSING.to_string(), |l| {
            format!(
                "{}{} / {}",
                format::num(l.held as f64),
                if l.died { "+ before it died" } else { "" },
                format::num(l.target as f64)
            )
        });
        // No request measured at all (a server dead before the window): no
        // latency, rather than zeros.
        let measured = r.extra("merged_count").is_none_or(|n| n > 0.0);
        let latency = |metric: Metric| {
            if measured {
                m(metric)
            } else {
                MISSING.to_string()
            }
        };
        // Stalled or at its limit, the ramp's length still says when it ended.
        let ramp = match g.get(Metric::Ramp) {
            Some(v) if g.ramp_stalled => {
                format!("{} (stalled)", format::range(v, Unit::Seconds))
            }
            _ => m(Metric::Ramp),
        };
        // A server that died has no window reading: its peak, from /proc.
        let peak = |metric: Metric, extra: &str| match (g.get(metric), r.extra(extra)) {
            (None, Some(v)) => format::num(v),
            _ => m(metric),
        };
        let limit = socklab_loadgen::event_loop::CONNECT_PHASE_LIMIT.as_secs_f64();
        let connect = r.extra("connect_s").map_or(MISSING.to_string(), |s| {
            // At the limit, the loaders stopped waiting for the rest to connect.
            let at_limit = if s >= limit - 0.01 { "≥ " } else { "" };
            format!("{at_limit}{}", format::num(s))
        });
        // Read at the close: a server that died before it holds nothing there.
        let died = r.limit().is_some_and(|l| l.died);
        let sockets = match (
            r.extra("kernel_tcp_sockets"),
            r.extra("kernel_tcp_buffer_bytes"),
        ) {
            _ if died => MISSING.to_string(),
            (Some(n), Some(b)) => {
                format!("+{}, {}", format::num(n), format::with_unit(b, Unit::Bytes))
            }
            _ => MISSING.to_string(),
        };
        let slab = match (r.extra("kernel_slab_bytes"), r.extra("kernel_tcp_sockets")) {
            _ if died => MISSING.to_string(),
            (Some(b), Some(n)) if n > 0.0 => format::with_unit(b / n, Unit::Bytes),
            _ => MISSING.to_string(),
        };
        let stopped = r.limit().map_or(MISSING.to_string(), |l| {
            let kind = match l.kind {
                LimitKind::None => "nothing: held them all",
                k => k.words(),
            };
            if l.died {
                format!("{kind}; then the server died")
            } else {
                kind.to_string()
            }
        });
        let cells = [
            r.model.to_string(),
            held,
            m(Metric::Served),
            connect,
            ramp,
            latency(Metric::P50),
            latency(Metric::P99),
            latency(Metric::P999),
            m(Metric::CpuPerRequest),
            m(Metric::CtxPerRequest),
            m(Metric::PssPerConn),
            sockets,
            slab,
            peak(Metric::Processes, "processes_peak"),
            peak(Metric::Threads, "threads_peak"),
            stopped,
        ];
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    md.push('\n');
}

/// Under the table: what each column is, and each model's evidence for its limit.
fn notes(md: &mut String, rows: &[Row]) {
    md.push_str(
        "- held: connections the server itself counted open as the window closed, of those \
         the loaders opened. served: clients answered at least once in the window. connect: \
         the slowest loader's time to open its connections; `≥`: it stopped waiting at its \
         limit, and the connections the server never accepted kept retrying. all served \
         once: from the first request until every client had been answered once, the \
         slowest loader's (at least one period: a client's first request is due within \
         it); `≥`: the limit came first; stalled: no new client was answered for a second, \
         or for four times the longest wait between two new clients so far (a connect \
         still retrying its SYN waits 1, 3, 7 s), so the loader stopped waiting.\n\
         - p50, p99, p99.9: over every client of every loader, from the merged histograms; a \
         request still waiting at the close counts with its wait, so a model that left \
         clients waiting shows `≥`.\n\
         - server CPU, ctx switches: the whole server tree over exactly the window, per \
         request answered in it. PSS / held conn: (PSS at peak − idle PSS) ÷ held.\n\
         - kernel: TCP sockets in use (both ends on this machine: two per connection) and \
         socket-buffer memory, at the close minus before the cell (`/proc/net/sockstat`); an \
         idle socket holds no buffer. slab / socket: the machine's `Slab:` growth \
         (`/proc/meminfo`) ÷ those sockets — the socket, inode, file and epoll entries the \
         kernel keeps for each, and whatever else the cell's processes made (a thread's task \
         struct too); machine-wide, so other work moves it.\n",
    );
    for r in rows {
        // A model that held them all is said so in the findings below.
        if let Some(l) = r.limit().filter(|l| l.kind != LimitKind::None) {
            let _ = writeln!(md, "- {}, stopped by: {}.", r.model, cell_text(&l.evidence));
        }
    }
    md.push('\n');
}

/// The sentences under the table, computed from the rows.
fn findings(ctx: &Ctx, rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(conns) = rows.first().map(|r| r.group.conns) else {
        return out;
    };
    let of = |kind: LimitKind| -> Vec<&Row> {
        rows.iter()
            .filter(|r| r.limit().is_some_and(|l| l.kind == kind))
            .collect()
    };
    let all: Vec<&str> = of(LimitKind::None).iter().map(|r| r.model).collect();
    out.push(if all.is_empty() {
        format!(
            "No model held all {} connections here.",
            format::num(conns as f64)
        )
    } else {
        format!(
            "{} held all {} connections.",
            compare::list(&all),
            format::num(conns as f64)
        )
    });
    let fds = of(LimitKind::Fds);
    if !fds.is_empty() {
        let held: Vec<String> = fds
            .iter()
            .map(|r| {
                format!(
                    "{} at {}",
                    r.model,
                    format::num(r.limit().map_or(0, |l| l.held) as f64)
                )
            })
            .collect();
        let limit = fds
            .iter()
            .find_map(|r| r.extra("server_fds_limit"))
            .map_or(String::new(), |l| format!(" of {}", format::num(l)));
        out.push(format!(
            "{} stopped at {} descriptor limit{limit} (`RLIMIT_NOFILE`): one process, one \
             descriptor per connection, and `accept()` failing with `EMFILE` once the table is \
             full — the clients past it wait in the listen backlog or retry their connects. \
             Past one process's limit a server must be several processes, each with its own \
             table (as the loaders are).",
            compare::list(&held.iter().map(String::as_str).collect::<Vec<_>>()),
            if fds.len() == 1 { "its" } else { "their" },
        ));
    }
    for r in of(LimitKind::Mappings) {
        let had = r
            .extra("server_maps_max")
            .map_or(String::new(), |n| format!("; it had {}", format::num(n)));
        let mut s = format!(
            "{} stopped at {} threads, holding {} clients: each thread takes four memory \
             mappings (its stack and its signal stack, each with a guard page), and one process \
             may have at most `vm.max_map_count` ({}{had}). glibc reports a stack it could not \
             map as `EAGAIN` from `pthread_create`, which reads like a task limit, but the \
             machine's `kernel.pid_max` ({}) was far off.",
            r.model,
            format::num(threads(r)),
            r.limit().map_or(String::new(), |l| format!(
                "{}{}",
                format::num(l.held as f64),
                if l.died { " or more" } else { "" }
            )),
            format::num(r.extra("max_map_count").unwrap_or(0.0)),
            format::num(r.extra("pid_max").unwrap_or(0.0)),
        );
        if r.limit().is_some_and(|l| l.died) {
            s.push_str(
                " Then a new thread that got its stack but could not map its signal stack's \
                 guard page panicked (Rust's runtime sets that stack up in every thread it \
                 starts); the panic could not unwind, and the whole process aborted with every \
                 client it held: in a thread-per-client server one thread's failure is \
                 everyone's.",
            );
        }
        out.push(s);
    }
    for r in of(LimitKind::Tasks) {
        out.push(format!(
            "{} stopped at {} threads: a task limit (`kernel.pid_max` {} for the whole \
             machine, which had {} tasks alive at the close).",
            r.model,
            format::num(threads(r)),
            format::num(r.extra("pid_max").unwrap_or(0.0)),
            format::num(r.extra("tasks").unwrap_or(0.0)),
        ));
    }
    for r in of(LimitKind::Cap) {
        out.push(format!(
            "{} makes a process per client as clients come: the cell let it have {} \
             (`--max-conns`), and it held {}. Left alone it would fork until `kernel.pid_max` \
             ({}) for the whole machine, and every other program would find no PID to run in.",
            r.model,
            format::num(r.extra("max_conns").unwrap_or(0.0)),
            format::num(r.limit().map_or(0, |l| l.held) as f64),
            format::num(r.extra("pid_max").unwrap_or(0.0)),
        ));
    }
    for r in of(LimitKind::Workers) {
        let workers = r.extra("workers").unwrap_or(0.0);
        let pid_max = r.extra("pid_max").unwrap_or(0.0);
        out.push(format!(
            "{} holds one client per worker: given {} workers, it held {}. Holding {} would \
             take {} processes or threads{}, each with its own stack and kernel task.",
            r.model,
            format::num(workers),
            format::num(r.limit().map_or(0, |l| l.held) as f64),
            format::num(conns as f64),
            format::num(conns as f64),
            if pid_max > 0.0 && pid_max < conns as f64 {
                format!(
                    ", more than the machine's whole `kernel.pid_max` of {}",
                    format::num(pid_max)
                )
            } else {
                String::new()
            }
        ));
    }
    let work = "none";
    out.extend(sentences::unanswered_at(ctx, SCENARIO, work, conns));
    for metric in [Metric::PssPerConn, Metric::CpuPerRequest] {
        out.extend(sentences::extremes_at(
            ctx,
            SCENARIO,
            work,
            &Target::Metric(metric),
            conns,
        ));
    }
    out
}

/// The most threads the server had: from the window's group, or for a server
/// that died, from the peak /proc showed.
fn threads(r: &Row) -> f64 {
    r.group
        .get(Metric::Threads)
        .map(|t| t.median)
        .or_else(|| r.extra("threads_peak"))
        .unwrap_or(0.0)
}

/// Text safe inside a table cell or a list item: no pipes or line breaks.
fn cell_text(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

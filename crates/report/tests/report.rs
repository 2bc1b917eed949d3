//! The report built from a fixture run (tests/fixtures/results.json, made by
//! make_results.py beside it): every model, every scenario, 3 repeats, one failed
//! cell, counted metrics. Each metric's repeats there are base × 1.00, 0.95 and
//! 1.06, so a median is the base and its range [0.95 base, 1.06 base].

use std::fs;
use std::path::{Path, PathBuf};

use socklab_report::aggregate::{Metric, Range, Summary};
use socklab_report::compare::{self, Entry, Expect, Quantity, NO_DIFFERENCE};
use socklab_report::page::Ctx;
use socklab_report::schema::{Cell, Results};
use socklab_report::{load, markdown, write_all, write_results, ReportError, Written};

const MODELS: &[&str] = &[
    "iterative",
    "fork",
    "prefork",
    "thread",
    "pool",
    "nonblocking",
    "async",
    "uring",
];

fn fixture() -> Results {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    load(&dir).expect("fixture loads")
}

/// A fresh directory under cargo's per-test tmp dir (kept after the run, so the
/// report can be opened and looked at).
fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("socklab-report-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn report(name: &str, results: &Results) -> (String, Written) {
    let dir = out_dir(name);
    let written = write_all(results, &dir).expect("report written");
    (fs::read_to_string(&written.report).unwrap(), written)
}

/// The lines of one `## ` section of the report.
fn section<'a>(md: &'a str, heading: &str) -> &'a str {
    let start = md
        .find(heading)
        .unwrap_or_else(|| panic!("no section {heading}"));
    let rest = &md[start + heading.len()..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    &rest[..end]
}

/// The table row of `model` at `conns` in a section.
fn row<'a>(section: &'a str, model: &str, conns: &str) -> &'a str {
    let prefix = format!("| {model} | {conns} |");
    section
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no row {prefix}"))
}

/// Every model of the fixture appears in the report, in every scenario table.
#[test]
fn mentions_every_model() {
    let (md, _) = report("models", &fixture());
    for scenario in ["scaling", "churn", "cpu", "sleep", "slow", "chaos", "udp"] {
        let s = section(&md, &format!("## Scenario: {scenario}\n"));
        for m in MODELS {
            assert!(
                s.contains(&format!("| {m} |")),
                "{m} missing from {scenario}"
            );
        }
    }
    let counted = section(&md, "## Counted metrics");
    for m in MODELS {
        assert!(
            counted.contains(&format!("| {m} |")),
            "{m} missing from counted"
        );
    }
}

/// Table cells print the fixture's median and min–max in the right row.
#[test]
fn tables_show_the_medians() {
    let (md, _) = report("medians", &fixture());
    let scaling = section(&md, "## Scenario: scaling\n");
    // thread at 1,000 connections: throughput base 72,000 req/s.
    assert!(row(scaling, "thread", "1,000").contains("| 72,000 [68,400–76,320] |"));
    // fork at 1,000 connections: 180 KiB PSS per connection.
    assert!(row(scaling, "fork", "1,000").contains("| 180 [171–191] |"));
    // nonblocking at 100: 0.15 context switches per request.
    assert!(row(scaling, "nonblocking", "100").contains("| 0.150 [0.142–0.159] |"));
    // the failed repeat is left out: 2 of 3 runs, median of the other two.
    assert!(row(scaling, "iterative", "1,000").contains("| 2/3 |"));
    let churn = section(&md, "## Scenario: churn\n");
    assert!(row(churn, "fork", "50").starts_with("| fork | 50 | 3/3 | 4,000 [3,800–4,240] |"));
    let chaos = section(&md, "## Scenario: chaos\n");
    assert!(row(chaos, "fork", "20").contains("| 3/3 |"));
    assert!(row(chaos, "thread", "20").ends_with("| 19 | 0/3 |"));
    let slow = section(&md, "## Scenario: slow\n");
    assert!(row(slow, "nonblocking", "50").contains("| 700 [665–742] |"));
}

/// A failed cell is listed with its reason and kept out of the medians.
#[test]
fn failed_cell_is_listed_with_its_reason() {
    let results = fixture();
    let (md, _) = report("failed", &results);
    let failed = section(&md, "## Failed cells");
    let line = row(failed, "iterative", "scaling");
    assert!(line.contains("| 1,000 | 2 |"), "{line}");
    assert!(
        line.contains("998 of 1,000 connections got no reply within 10 s"),
        "{line}"
    );
    let summary = Summary::from_results(&results);
    let g = summary.group("iterative", "scaling", 1000).unwrap();
    assert_eq!((g.ok, g.failed), (2, 1));
}

/// Every chart is well-formed SVG that draws shapes and names its models.
#[test]
fn charts_are_svg_naming_their_models() {
    let results = fixture();
    let (md, written) = report("charts", &results);
    assert!(
        written.charts.len() >= 15,
        "{} charts",
        written.charts.len()
    );
    let summary = Summary::from_results(&results);
    let ctx = Ctx {
        results: &results,
        summary: &summary,
    };
    let figures: Vec<_> = markdown::plan(&ctx)
        .into_iter()
        .flat_map(|s| s.figures)
        .collect();
    assert_eq!(figures.len(), written.charts.len());
    for fig in &figures {
        let path = written
            .charts
            .iter()
            .find(|p| p.ends_with(&fig.file))
            .unwrap();
        let text = fs::read_to_string(path).unwrap();
        let doc =
            roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let shapes = doc
            .descendants()
            .filter(|n| matches!(n.tag_name().name(), "path" | "polyline" | "rect" | "line"));
        assert!(shapes.count() > 0, "{} draws nothing", fig.file);
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "text")
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        assert!(
            texts.contains(&fig.title.as_str()),
            "{}: no title",
            fig.file
        );
        for m in fig.models() {
            assert!(texts.contains(&m), "{}: {m} not named", fig.file);
        }
        assert!(
            md.contains(&format!("](charts/{})", fig.file)),
            "{} not linked",
            fig.file
        );
    }
    // The main charts carry all eight models.
    let throughput = figures
        .iter()
        .find(|f| f.file == "scaling-throughput.svg")
        .unwrap();
    assert_eq!(throughput.models(), MODELS);
}

/// Overlapping ranges read "no measurable difference"; apart ones a ratio, and
/// the design's reason only in the predicted direction.
#[test]
fn claims_follow_the_overlap_rule() {
    let (md, _) = report("claims", &fixture());
    let scaling = section(&md, "## Scenario: scaling\n");
    // At 1 connection all throughputs are within 4 %: the extremes overlap.
    assert!(scaling.contains(&format!(
        "At 1 connection, requests per second ranged from 38,000/s [36,100–40,280] for \
         iterative to 39,400/s [37,430–41,764] for uring; even these two ranges overlap, so \
         {NO_DIFFERENCE} between the extremes."
    )));
    assert!(scaling.contains(
        "fork used 9.0× more PSS per connection than thread, because each process has its own page tables"
    ));
    // async and nonblocking overlap in throughput at 1,000 connections.
    assert!(scaling.contains("overlap uring's range"), "{scaling}");

    let q = Quantity::of(Metric::Throughput);
    let r = |b: f64| Range::from_samples(&[b * 0.95, b, b * 1.06]).unwrap();
    let a = Entry {
        model: "a",
        range: r(100.0),
    };
    let b = Entry {
        model: "b",
        range: r(105.0),
    };
    let c = Entry {
        model: "c",
        range: r(150.0),
    };
    let e = Expect {
        higher: "c",
        lower: "a",
        because: "c is better",
    };
    assert!(compare::pair(&q, "Here", a, b, None).contains(NO_DIFFERENCE));
    let apart = compare::pair(&q, "Here", a, c, Some(&e));
    assert!(
        apart.contains("c served 50 % more requests per second than a, because c is better"),
        "{apart}"
    );
}

/// Counted metrics show per-request syscalls, the top syscalls and the notes, at
/// one connection and at 100, each explained as its own row says.
#[test]
fn counted_section_teaches_the_trade() {
    let (md, _) = report("counted", &fixture());
    let counted = section(&md, "## Counted metrics");
    let at_100 = |m: &str| {
        counted
            .lines()
            .find(|l| l.starts_with(&format!("| {m} | 10,000 | 100 |")))
            .unwrap_or_else(|| panic!("no {m} row at 100"))
    };
    assert!(at_100("uring").contains("| 0.150 |"));
    assert!(at_100("nonblocking").contains("`read` 2"));
    assert!(
        counted.contains("| nonblocking | 10,000 | 1 | 3.00 |"),
        "{counted}"
    );
    assert!(counted.contains("valgrind does not model io_uring"));
    // At 100 connections the trade shows and is explained; at one it is not.
    assert!(counted.contains(
        "At 100 connections, thread ran 200 user-space instructions per request to nonblocking's 600"
    ));
    assert!(counted.contains("the kernel does the thread model's scheduling"));
    assert!(
        counted.contains("so the trade shows at more connections"),
        "{counted}"
    );
    // io_uring's saving: batching at 100 connections, the missing readiness call at one.
    assert!(counted.contains("because with many connections busy, one `io_uring_enter`"));
    assert!(counted.contains("because with one connection there is nothing to batch"));
}

/// The floor is said to be the floor of one request on an idle connection, not a
/// bound no server can beat.
#[test]
fn the_floor_says_what_it_is_the_floor_of() {
    let (md, _) = report("floor", &fixture());
    assert!(md.contains("one request at a time on one idle connection takes 24.5 µs"));
    assert!(!md.contains("No server can answer faster"));
}

/// Chaos compares the counted outcome on a single repeat (a crash lost 0 or 19
/// clients: that is not noise), and prints no throughput or latency for servers
/// that crashed.
#[test]
fn chaos_compares_counted_outcomes_and_shows_no_timings() {
    let mut results = fixture();
    results
        .cells
        .retain(|c| c.scenario != "chaos" || c.repeat == 0);
    let (md, _) = report("chaos1", &results);
    let chaos = section(&md, "## Scenario: chaos\n");
    assert!(!chaos.contains("fewer than two repeats"), "{chaos}");
    assert!(
        chaos.contains("other clients lost ranged from 0 for fork to 19 for"),
        "{chaos}"
    );
    assert!(!chaos.contains("throughput (req/s)"), "{chaos}");
    assert!(!chaos.contains("p99 (µs)"), "{chaos}");
}

/// Two figures compared in one sentence are in one unit.
#[test]
fn a_comparison_uses_one_unit_for_both_figures() {
    let q = Quantity::of(Metric::P99);
    let r = |x: f64| Range::from_samples(&[x * 0.95, x, x * 1.06]).unwrap();
    let (a, b) = (
        Entry {
            model: "nonblocking",
            range: r(12_500.0),
        },
        Entry {
            model: "thread",
            range: r(9_039.0),
        },
    );
    let s = compare::pair(&q, "At 1,000 connections", a, b, None);
    assert!(s.contains("nonblocking measured 12.5 ms"), "{s}");
    assert!(s.contains("thread 9.04 ms"), "{s}");
    assert!(!s.contains("µs"), "{s}");
}

/// async's memory per connection against nonblocking's is explained by its buffer.
#[test]
fn async_memory_is_explained_by_its_read_buffer() {
    let mut results = fixture();
    for c in results
        .cells
        .iter_mut()
        .filter(|c| c.scenario == "scaling" && c.model == "async")
    {
        if let Some(s) = c.server.as_mut() {
            s.pss_max_bytes = s.pss_idle_bytes + 24 * 1024 * c.conns as u64;
        }
    }
    let (md, _) = report("async-pss", &results);
    assert!(
        md.contains("async used") && md.contains("16 KiB read buffer"),
        "{}",
        section(&md, "## Scenario: scaling\n")
    );
}

/// The first screen: one row per model with linked figures and computed lessons,
/// then what the run could not show (here: valgrind was missing).
#[test]
fn the_first_screen_is_one_table_and_its_lessons() {
    let (md, _) = report("glance", &fixture());
    let glance = section(&md, "## At a glance");
    for m in MODELS {
        assert!(glance.contains(&format!("\n| {m} |")), "{m}: {glance}");
    }
    assert!(
        glance.contains("[≥ "),
        "starving models are lower bounds: {glance}"
    );
    assert!(glance.contains("(#scenario-churn)") && glance.contains("(#counted-metrics)"));
    assert!(glance.contains("- At 1,000 connections,"), "{glance}");
    let first = md.find("## At a glance").unwrap();
    assert!(first < md.find("## Scenario:").unwrap());
    assert!(first < md.find("## About this run").unwrap());
    let limits = section(&md, "## What this run could not show");
    assert!(limits.contains("`valgrind` was not installed"), "{limits}");
    assert!(
        limits.contains("load generator used more than 90 %"),
        "{limits}"
    );
}

/// A quick run counts no instructions, and says so where the reader meets the `—`.
#[test]
fn a_run_without_callgrind_says_instructions_were_not_counted() {
    let said = "User-space instructions per request were not counted";
    let (md, _) = report("with-valgrind-wanted", &fixture());
    assert!(
        !md.contains(said),
        "valgrind was wanted (and missing): named as missing"
    );
    let mut quick = fixture();
    for t in &mut quick.run.tools {
        t.wanted &= t.name != "valgrind";
    }
    for c in &mut quick.counted {
        c.instructions_per_request = None;
    }
    let (md, _) = report("quick-without-callgrind", &quick);
    assert!(
        section(&md, "## What this run could not show").contains(said),
        "{md}"
    );
}

/// The report states the machine, the command, the floor and the busy load generator.
#[test]
fn context_is_reported() {
    let (md, _) = report("context", &fixture());
    assert!(md.contains("| CPU | AMD EPYC 7B13 (2 CPUs online) |"));
    assert!(md.contains("scripts/compare.sh --mode full --repeats 3"));
    assert!(md.contains("server pinned to CPU 0, load generator to CPU 1"));
    assert!(md.contains("24.5 µs at p50"));
    assert!(md.contains("| uring | scaling | 100 | 1 | 93 % |"));
    assert!(row(section(&md, "## Scenario: scaling\n"), "uring", "100").contains(" † |"));
    assert!(md.contains("[1](hdr/scaling-thread-1000-r0.hlog)"));
    assert!(md.contains("## Appendix A: the load generator's CPU"));
    assert!(md.contains("## Appendix B: every repeat"));
}

/// results.csv has a header and one row per cell, the failed one included.
#[test]
fn csv_has_a_row_per_cell() {
    let results = fixture();
    let (_, written) = report("csv", &results);
    let csv = fs::read_to_string(&written.csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), results.cells.len() + 1);
    assert!(lines[0].starts_with(
        "model,scenario,conns,repeat,server_cpus,offered_rps,work,status,error,requests,"
    ));
    assert!(lines[0].ends_with(",extra_normal_p99_us,extra_normal_throughput_rps,extra_other_clients_lost,extra_server_survived,extra_slow_clients"));
    let failed: Vec<&&str> = lines.iter().filter(|l| l.contains(",failed,")).collect();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].contains("\"load generator: 998 of 1,000 connections got no reply within 10 s\"")
    );
}

/// load(write_results(r)) gives r back.
#[test]
fn results_round_trip() {
    let results = fixture();
    let dir = out_dir("roundtrip");
    write_results(&results, &dir).unwrap();
    assert_eq!(load(&dir).unwrap(), results);
}

/// A results file of another schema is refused by name, not misread.
#[test]
fn other_schema_is_refused() {
    let dir = out_dir("schema");
    let mut results = fixture();
    results.schema = "socklab-compare/99".to_string();
    write_results(&results, &dir).unwrap();
    match load(&dir) {
        Err(ReportError::Schema { found, .. }) => assert_eq!(found, "socklab-compare/99"),
        other => panic!("expected a schema error, got {other:?}"),
    }
    assert!(matches!(
        load(&out_dir("missing")),
        Err(ReportError::Read { .. })
    ));
}

/// A model and a scenario the report has never heard of appear without code changes.
#[test]
fn new_model_and_scenario_appear() {
    let mut results = fixture();
    let template: Cell = results
        .cells
        .iter()
        .find(|c| c.scenario == "udp")
        .unwrap()
        .clone();
    for (model, repeat) in [
        ("thread", 0),
        ("thread", 1),
        ("thread", 2),
        ("tpc", 0),
        ("tpc", 1),
        ("tpc", 2),
    ] {
        let mut c = template.clone();
        c.model = model.to_string();
        c.scenario = "burst".to_string();
        c.repeat = repeat;
        c.extra
            .insert("bursts_per_s".to_string(), 12.0 + repeat as f64);
        results.cells.push(c);
    }
    let (md, written) = report("new", &results);
    let burst = section(&md, "## Scenario: burst\n");
    assert!(
        row(burst, "tpc", "10").contains("| 13 [12–14] |"),
        "{burst}"
    );
    assert!(written
        .charts
        .iter()
        .any(|p| p.ends_with("burst-bursts-per-s.svg")));
    assert!(md.contains("under 9 server models"));
}

/// A run with no cells still yields a report that says what is missing.
#[test]
fn empty_run_still_reports() {
    let mut results = fixture();
    results.cells.clear();
    results.counted.clear();
    results.floor = None;
    let (md, written) = report("empty", &results);
    assert!(written.charts.is_empty());
    assert!(md.contains("No loopback floor was measured"));
    assert!(md.contains("No counted pass ran"));
    assert!(md.contains("None: every cell produced numbers."));
}

/// A model that left clients unanswered is never ranked, on latency or on
/// throughput: its numbers cover only the clients it served; the caveat names it
/// instead.
#[test]
fn starving_clients_is_not_ranked() {
    let mut results = fixture();
    let largest = results
        .cells
        .iter()
        .filter(|c| c.scenario == "scaling")
        .map(|c| c.conns)
        .max()
        .unwrap();
    for cell in results
        .cells
        .iter_mut()
        .filter(|c| c.model == "iterative" && c.scenario == "scaling" && c.conns == largest)
    {
        if let Some(load) = cell.load.as_mut() {
            load.errors.unserved_conns = largest as u64 - 1;
            load.latency_us.p99 = 1.0;
            load.latency_us.p9999 = 1e9;
            load.throughput_rps = 1e9;
        }
    }
    let (md, _) = report("starving", &results);
    let scaling = section(&md, "## Scenario: scaling\n");
    // "At 1,000 connections", as the report writes it.
    let digits = largest.to_string();
    let groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|g| std::str::from_utf8(g).unwrap())
        .collect();
    let at = format!("At {} connections", groups.join(","));
    for ranked in [
        "p99 latency ranged from",
        "requests per second ranged from",
        "the tail grows most for",
    ] {
        let ranking = scaling
            .lines()
            .find(|l| l.contains(ranked) && l.contains(&at))
            .unwrap_or_else(|| panic!("no {ranked:?} sentence at {at}"));
        // The sentence that ranks at the largest count (one saying "At 1
        // connection" ranks elsewhere; the tail sentence follows its paragraph's).
        let at_largest = ranking
            .split(". ")
            .filter(|s| s.contains(ranked) && (s.contains(&at) || !s.starts_with("At ")))
            .collect::<Vec<_>>()
            .join(". ");
        assert!(!at_largest.is_empty(), "no ranking at {at}: {ranking}");
        assert!(!at_largest.contains("for iterative"), "{ranking}");
    }
    assert!(
        scaling.contains("iterative, prefork and pool left clients unserved"),
        "{scaling}"
    );
}

/// A run directory holding criterion's output gets a Criterion section linking it,
/// and keeps it when the report is rebuilt from results.json.
#[test]
fn criterion_output_is_linked() {
    let results = fixture();
    let dir = out_dir("criterion");
    std::fs::create_dir_all(dir.join("criterion/report")).unwrap();
    std::fs::write(dir.join("criterion/report/index.html"), "<html></html>").unwrap();
    socklab_report::write_all(&results, &dir).unwrap();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("](criterion/report/index.html)"), "{md}");
    let (plain, _) = report("no-criterion", &results);
    assert!(!plain.contains("## Criterion"));
}

/// The c100k section: a row per model with what it held and what stopped it, the
/// server's own words under the table, a "holds" column on the first screen and
/// a line in what the run could not show; a model that left clients unserved is
/// not named best or worst.
#[test]
fn c100k_says_who_held_them_and_what_stopped_the_rest() {
    use socklab_report::schema::{Limit, LimitKind};
    let mut results = fixture();
    let template: Cell = results
        .cells
        .iter()
        .find(|c| c.scenario == "scaling" && c.model == "nonblocking" && c.conns == 1000)
        .unwrap()
        .clone();
    let cases = [
        (
            "nonblocking",
            19_990,
            LimitKind::Fds,
            "accept: Too many open files (os error 24)",
        ),
        (
            "thread",
            16_367,
            LimitKind::Mappings,
            "cannot spawn a thread: Resource temporarily unavailable (os error 11)",
        ),
        (
            "uring",
            100_000,
            LimitKind::None,
            "held all 100000 connections",
        ),
    ];
    for (model, held, kind, evidence) in cases {
        let mut c = template.clone();
        c.model = model.to_string();
        c.scenario = "c100k".to_string();
        c.conns = 100_000;
        c.repeat = 0;
        let unserved = 100_000 - held;
        let load = c.load.as_mut().unwrap();
        load.errors.unserved_conns = unserved;
        load.errors.clients = unserved;
        load.clients = Some(socklab_report::schema::Clients {
            conns: 100_000,
            served: held,
            with_errors: unserved,
            requests_min: 0,
            requests_median: 1.0,
            requests_max: 2,
            fairness: Some(0.9),
        });
        c.server.as_mut().unwrap().held_conns = Some(held);
        c.server.as_mut().unwrap().threads_max = if model == "thread" { 16_367 } else { 3 };
        for (k, v) in [
            ("loaders", 6.0),
            ("loader_sources", 6.0),
            ("window_skew_ms", 0.2),
            ("merged_count", 110_000.0),
            ("loaders_count", 110_000.0),
            ("connect_s", 1.5),
            ("kernel_tcp_sockets", 2.0 * held as f64),
            ("kernel_tcp_buffer_bytes", 0.0),
            ("kernel_slab_bytes", 8192.0 * held as f64),
            ("server_fds_limit", 20_000.0),
            ("server_maps_max", 65_531.0),
            ("max_map_count", 65_530.0),
            ("pid_max", 32_768.0),
        ] {
            c.extra.insert(k.into(), v);
        }
        c.limit = Some(Limit {
            kind,
            held,
            target: 100_000,
            died: false,
            evidence: format!("the server said: `socklab {model}: {evidence}`"),
        });
        results.cells.push(c);
    }
    let (md, _) = report("c100k", &results);
    let s = section(&md, "## Scenario: c100k\n");
    assert!(
        row(s, "nonblocking", "19,990 / 100,000").contains("descriptors (RLIMIT_NOFILE)"),
        "{s}"
    );
    assert!(
        row(s, "thread", "16,367 / 100,000").contains("memory mappings (vm.max_map_count)"),
        "{s}"
    );
    assert!(
        row(s, "uring", "100,000 / 100,000").contains("nothing: held them all"),
        "{s}"
    );
    assert!(s.contains("- nonblocking, stopped by: the server said: `socklab nonblocking: accept: Too many open files (os error 24)`"), "{s}");
    assert!(s.contains("uring held all 100,000 connections."), "{s}");
    assert!(
        s.contains("nonblocking at 19,990 stopped at its descriptor limit of 20,000"),
        "{s}"
    );
    assert!(
        s.contains("vm.max_map_count` (65,530; it had 65,531)"),
        "{s}"
    );
    assert!(
        s.contains("merged count equals the sum of the loaders' (330,000 values in all)"),
        "{s}"
    );
    assert!(s.contains("4 KiB"), "slab per socket: {s}");
    // Only uring served everyone: the others are named as unserved, never ranked.
    assert!(s.contains("left clients unserved"), "{s}");
    assert!(!s.contains("for nonblocking to"), "{s}");
    let glance = section(&md, "## At a glance");
    assert!(glance.contains("holds 100,000"), "{glance}");
    assert!(
        glance.contains("[19,990 (fds)](#scenario-c100k)"),
        "{glance}"
    );
    assert!(glance.contains("[yes](#scenario-c100k)"), "{glance}");
    let limits = section(&md, "## What this run could not show");
    assert!(
        limits.contains(
            "thread (mappings, at 16,367) and nonblocking (fds, at 19,990) stopped short"
        ),
        "{limits}"
    );
    // A run without c100k has no such column.
    let (plain, _) = report("no-c100k", &fixture());
    assert!(!section(&plain, "## At a glance").contains("holds"));
}

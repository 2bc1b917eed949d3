//! `baseline.md` from two runs built out of the fixture (tests/fixtures/results.json):
//! OLD is the fixture, NEW the fixture with one thing changed. The fixture's repeats
//! are base × 1.00, 0.95 and 1.06, so scaling every repeat of a figure by 1.5 moves
//! its range [0.95, 1.06] × base clear of OLD's, and by 1.03 leaves them
//! overlapping.

use std::path::Path;

use socklab_report::baseline::{self, Verdict, NO_CHANGE};
use socklab_report::schema::{Cell, Results};
use socklab_report::{load, write_baseline, BASELINE_FILE};

fn fixture() -> Results {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    load(&dir).expect("fixture loads")
}

/// The fixture with `f` applied to every cell of `model` in `scenario` at `conns`.
fn with_cells(model: &str, scenario: &str, conns: usize, f: impl Fn(&mut Cell)) -> Results {
    let mut r = fixture();
    let mut hit = 0;
    for c in &mut r.cells {
        if c.model == model && c.scenario == scenario && c.conns == conns {
            f(c);
            hit += 1;
        }
    }
    assert!(hit > 0, "the fixture has no {model} {scenario} {conns}");
    r
}

fn scale_throughput(k: f64) -> impl Fn(&mut Cell) {
    move |c| {
        if let Some(l) = &mut c.load {
            l.throughput_rps *= k;
        }
    }
}

/// A throughput moved clear of OLD's range gets a verdict, its sign and its
/// percentage, in the table and in the summary's first lines.
#[test]
fn moved_figure_gets_its_verdict() {
    let old = fixture();
    let new = with_cells("thread", "scaling", 100, scale_throughput(1.5));
    let b = baseline::compare_runs(&old, &new);
    let c = b.find("scaling", "thread", 100, "throughput").unwrap();
    assert_eq!(c.verdict, Verdict::Higher);
    assert_eq!(c.improved(), Some(true));
    assert_eq!(
        baseline::change_text(&c.old.unwrap(), &c.new.unwrap(), c.unit),
        "+50.0 %"
    );
    // Nothing else changed.
    assert_eq!(b.changes().filter(|(_, c)| c.verdict.moved()).count(), 1);

    let md = baseline::render(&old, &new);
    let summary = md.split("## ").next().unwrap();
    assert!(
        summary.contains("**1 figure moved beyond both runs' ranges**"),
        "{summary}"
    );
    assert!(
        summary.contains(
            "- scaling, thread at 100 connections: **better:** requests per second +50.0 %"
        ),
        "{summary}"
    );
    let row = md
        .lines()
        .find(|l| l.starts_with("| thread | 100 | throughput"))
        .unwrap();
    assert!(row.contains("| +50.0 % | **higher: better** |"), "{row}");

    // The other way round it is a loss, said as one.
    let md = baseline::render(&new, &old);
    assert!(
        md.contains("**worse:** requests per second -33.3 %"),
        "{md}"
    );
}

/// Ranges that overlap give "no measurable difference", whatever the medians.
#[test]
fn overlap_is_no_measurable_difference() {
    let old = fixture();
    let new = with_cells("thread", "scaling", 100, scale_throughput(1.03));
    let b = baseline::compare_runs(&old, &new);
    let c = b.find("scaling", "thread", 100, "throughput").unwrap();
    assert_eq!(c.verdict, Verdict::NoDifference);
    let md = baseline::render(&old, &new);
    assert!(md.starts_with("# Baseline"), "{md}");
    assert!(
        md.contains("No figure moved beyond both runs' ranges"),
        "{md}"
    );
    let row = md
        .lines()
        .find(|l| l.starts_with("| thread | 100 | throughput"))
        .unwrap();
    assert!(row.contains(&format!("| +3.00 % | {NO_CHANGE} |")), "{row}");
}

/// A run against itself: nothing moved, nothing differs, nothing only on one side.
#[test]
fn a_run_against_itself_is_unchanged() {
    let r = fixture();
    let b = baseline::compare_runs(&r, &r);
    assert!(b.differences.is_empty(), "{:?}", b.differences);
    assert!(b.only_old.is_empty() && b.only_new.is_empty());
    assert!(b.changes().all(|(_, c)| !c.verdict.moved()));
    assert!(!b.rows.is_empty() && !b.counted.is_empty());
}

/// A group measured in one run only is listed, never silently dropped.
#[test]
fn group_in_one_run_is_listed() {
    let old = fixture();
    let mut new = fixture();
    new.cells
        .retain(|c| !(c.model == "fork" && c.scenario == "churn"));
    let b = baseline::compare_runs(&old, &new);
    assert_eq!(b.only_old.len(), 1, "{:?}", b.only_old);
    assert!(b.only_new.is_empty());
    let md = baseline::render(&old, &new);
    assert!(
        md.contains("- only in OLD: churn, fork at 50 connections"),
        "{md}"
    );
    assert!(
        md.contains("1 group ran only in OLD and 0 groups only in NEW"),
        "{md}"
    );
    let md = baseline::render(&new, &old);
    assert!(
        md.contains("- only in NEW: churn, fork at 50 connections"),
        "{md}"
    );
}

/// A group that left clients unserved gets no latency verdict, even when its
/// latencies moved far: they are lower bounds. Its throughput is still compared.
#[test]
fn starved_group_gets_no_latency_verdict() {
    let old = fixture();
    let new = with_cells("pool", "scaling", 1000, |c| {
        if let Some(l) = &mut c.load {
            l.latency_us.p50 *= 10.0;
            l.latency_us.p99 *= 10.0;
            l.throughput_rps *= 1.5;
        }
    });
    let b = baseline::compare_runs(&old, &new);
    for key in ["p50", "p99"] {
        let c = b.find("scaling", "pool", 1000, key).unwrap();
        assert_eq!(
            c.verdict,
            Verdict::Unserved {
                old: true,
                new: true
            },
            "{key}"
        );
        assert!(c.new_text.starts_with('≥'), "{}", c.new_text);
        assert_eq!(
            baseline::verdict_text(c),
            "left clients unserved in both runs"
        );
    }
    let c = b.find("scaling", "pool", 1000, "throughput").unwrap();
    assert_eq!(c.verdict, Verdict::Higher);
    let md = baseline::render(&old, &new);
    let summary = md.split("## ").next().unwrap();
    assert!(
        summary.contains(
            "- scaling, pool at 1,000 connections: **better:** requests per second +50.0 %\n"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("latencies of runs that left clients unserved (lower bounds)"),
        "{summary}"
    );
}

/// Runs made differently are named at the top: arguments (not `--out`, which
/// only says where a run went), CPUs, tool versions.
#[test]
fn differing_runs_are_said_at_the_top() {
    let mut old = fixture();
    let mut new = fixture();
    old.run.args = ["--models", "thread", "--out", "/tmp/a"]
        .map(String::from)
        .to_vec();
    new.run.args = ["--models", "thread", "--out", "/tmp/b"]
        .map(String::from)
        .to_vec();
    assert!(baseline::compare_runs(&old, &new).differences.is_empty());

    new.run.args = ["--models", "thread,fork", "--out", "/tmp/b"]
        .map(String::from)
        .to_vec();
    new.machine.cpus = 4;
    new.run.tools[1].version = None;
    let md = baseline::render(&old, &new);
    let top = &md[..md.find("## ").unwrap()];
    assert!(
        top.contains("**The two runs were not made the same way**"),
        "{top}"
    );
    assert!(
        top.contains("- arguments: OLD `--models thread`, NEW `--models thread,fork`"),
        "{top}"
    );
    assert!(top.contains("- CPUs online: OLD 2, NEW 4"), "{top}");
    assert!(
        top.contains("- strace: OLD strace 6.1, NEW missing"),
        "{top}"
    );
}

/// Counted figures repeat exactly, so any difference is a change.
#[test]
fn counted_change_is_a_change() {
    let old = fixture();
    let mut new = fixture();
    let c = new
        .counted
        .iter_mut()
        .find(|c| c.model == "uring" && c.conns == 100)
        .unwrap();
    for v in c.syscalls.values_mut() {
        *v = *v * 9 / 10;
    }
    let b = baseline::compare_runs(&old, &new);
    let c = b.find("counted", "uring", 100, "counted-syscalls").unwrap();
    assert_eq!(c.verdict, Verdict::Lower);
    assert_eq!(c.improved(), Some(true));
    let md = baseline::render(&old, &new);
    assert!(
        md.contains("- counted, uring at 100 connections: **better:** syscalls per request -10"),
        "{md}"
    );
}

/// `write_baseline` writes NEW/baseline.md and returns its path.
#[test]
fn written_into_new() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("socklab-baseline-written");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let r = fixture();
    let path = write_baseline(&r, &r, &dir).unwrap();
    assert_eq!(path, dir.join(BASELINE_FILE));
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        baseline::render(&r, &r)
    );
}

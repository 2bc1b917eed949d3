//! results.json -> report.md, results.csv and SVG charts.
//!
//! `socklab compare` measures; this crate only reads what it wrote, so a report
//! can be rebuilt, restyled or corrected from a run directory alone
//! (`socklab report DIR`) without measuring again.
//!
//! # Layout
//!
//! - [`schema`]: the versioned results format `socklab compare` writes and this
//!   crate reads, with per-cell derived figures (CPU µs per request, PSS per
//!   connection) computed in one place.
//! - [`metric`]: the metric catalog: every figure a cell yields, its unit and words.
//! - [`aggregate`]: repeats -> median with min–max per model x scenario x
//!   connections; failed cells kept aside with their reasons.
//! - [`glance`]: the first screen: one row per model, what each design costs.
//! - [`page`]: the page's context (results, summary, the lookups everyone shares).
//! - [`sentences`]: every sentence computed from the data, in one place.
//! - [`compare`]: the overlap rule and every sentence that ranks two models. A
//!   claim is printed only when the min–max ranges are apart; otherwise "no
//!   measurable difference here".
//! - [`c100k`]: the c100k section: who held 100,000 idle connections, and the
//!   limit that stopped the others.
//! - [`lessons`]: what each scenario tests and what each design predicts, in words.
//! - [`figures`]: which charts each scenario gets and the sentences under them;
//!   [`counted`]: the same for syscalls, context switches and instructions.
//! - [`charts`]: figures -> SVG (plotters, no system fonts needed).
//! - [`markdown`]: the report page; [`html`]: the same page as one
//!   self-contained report.html; [`csv`](mod@csv): one flat row per cell.
//! - [`format`](mod@format): numbers as the report prints them.
//! - [`baseline`]: `socklab report NEW --baseline OLD`: what changed between two
//!   runs, figure by figure, by the same overlap rule.
//! - [`soak`]: the long run's verdict: does anything grow beyond its noise.
//! - [`curve`]: the latency-vs-load curve's rules: measured well, sustained, the
//!   knee, capacity per core.
//!
//! # Example
//!
//! ```no_run
//! let dir = std::path::Path::new("results/2025-01-01-host");
//! let results = socklab_report::load(dir)?;
//! let written = socklab_report::write_all(&results, dir)?;
//! println!("wrote {}", written.report.display());
//! # Ok::<(), socklab_report::ReportError>(())
//! ```

pub mod aggregate;
pub mod baseline;
pub mod c100k;
pub mod charts;
pub mod compare;
pub mod counted;
pub mod csv;
pub mod curve;
pub mod figures;
pub mod format;
pub mod glance;
pub mod html;
pub mod lessons;
pub mod markdown;
pub mod metric;
pub mod page;
pub mod schema;
pub mod sentences;
pub mod soak;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use aggregate::Summary;
use page::Ctx;
use schema::{Results, SCHEMA};

/// File names inside a run directory.
pub const RESULTS_FILE: &str = "results.json";
pub const REPORT_FILE: &str = "report.md";
pub const HTML_FILE: &str = "report.html";
pub const CSV_FILE: &str = "results.csv";
pub const CHARTS_DIR: &str = "charts";
/// Written by `socklab report NEW --baseline OLD` into NEW.
pub const BASELINE_FILE: &str = "baseline.md";

/// What can go wrong turning a run directory into a report. Each names the file
/// and says its cause in its own message. The cause is a field called `cause`,
/// not `source`: thiserror would also return a `source` field from `source()`,
/// and `anyhow`'s `{:#}` would then print it a second time ("No such file or
/// directory: No such file or directory").
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read {}: {cause}", path.display())]
    Read { path: PathBuf, cause: io::Error },
    #[error("{} is not a socklab results file: {cause}", path.display())]
    Parse {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error("{} has schema {found:?}; this socklab reads {expected:?}", path.display())]
    Schema {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },
    #[error("cannot write {}: {cause}", path.display())]
    Write { path: PathBuf, cause: io::Error },
    #[error("cannot serialize results: {0}")]
    Serialize(serde_json::Error),
    #[error("cannot draw chart {}: {message}", path.display())]
    Chart { path: PathBuf, message: String },
}

/// The files [`write_all`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub report: PathBuf,
    pub html: PathBuf,
    pub csv: PathBuf,
    pub charts: Vec<PathBuf>,
}

/// Reads `dir/results.json` and checks that it is the schema this crate reads.
pub fn load(dir: &Path) -> Result<Results, ReportError> {
    let path = dir.join(RESULTS_FILE);
    let text = fs::read_to_string(&path).map_err(|cause| ReportError::Read {
        path: path.clone(),
        cause,
    })?;
    // Check the schema before the full parse: an old or foreign file should say
    // "wrong schema", not "missing field".
    #[derive(serde::Deserialize)]
    struct Header {
        schema: String,
    }
    let header: Header = serde_json::from_str(&text).map_err(|cause| ReportError::Parse {
        path: path.clone(),
        cause,
    })?;
    if header.schema != SCHEMA {
        return Err(ReportError::Schema {
            path,
            found: header.schema,
            expected: SCHEMA,
        });
    }
    serde_json::from_str(&text).map_err(|cause| ReportError::Parse { path, cause })
}

/// Writes `dir/results.json` (pretty-printed, so a diff between runs reads well).
pub fn write_results(results: &Results, dir: &Path) -> Result<PathBuf, ReportError> {
    let path = dir.join(RESULTS_FILE);
    let mut text = serde_json::to_string_pretty(results).map_err(ReportError::Serialize)?;
    text.push('\n');
    write(&path, &text)?;
    Ok(path)
}

/// Criterion's HTML report inside a run directory (`scripts/compare.sh --criterion`).
const CRITERION_INDEX: &str = "criterion/report/index.html";

/// Added to the report when the run directory holds criterion's output.
const CRITERION_SECTION: &str = "
## Criterion

Micro-benchmarks of every model from `benches/` (see benches/README.md), run after
the comparison above on the same machine with `cargo bench -p socklab-benches`
(criterion, unpinned, one server at a time): the protocol core alone (`protocol`),
one connection's 64 B round trip (`round_trip`), a whole short-lived connection
(`connect`), and round trips per second with 1, 16 and 128 connections
(`throughput`). Criterion's own report, with every estimate's confidence interval
and plots: [criterion/report/index.html](criterion/report/index.html).
";

/// Writes `dir/report.md`, `dir/report.html`, `dir/results.csv` and `dir/charts/*.svg`.
pub fn write_all(results: &Results, dir: &Path) -> Result<Written, ReportError> {
    let summary = Summary::from_results(results);
    let ctx = Ctx {
        results,
        summary: &summary,
    };
    let sections = markdown::plan(&ctx);

    let charts_dir = dir.join(CHARTS_DIR);
    fs::create_dir_all(&charts_dir).map_err(|cause| ReportError::Write {
        path: charts_dir.clone(),
        cause,
    })?;
    let palette = charts::Palette::new(&summary.models);
    let mut charts = Vec::new();
    let mut inline = html::Charts::new();
    for fig in sections.iter().flat_map(|s| &s.figures) {
        let path = charts_dir.join(&fig.file);
        let svg = charts::render(fig, &palette).map_err(|message| ReportError::Chart {
            path: path.clone(),
            message,
        })?;
        write(&path, &svg)?;
        inline.insert(format!("{CHARTS_DIR}/{}", fig.file), svg);
        charts.push(path);
    }

    let report = dir.join(REPORT_FILE);
    let mut md = markdown::render(&ctx, &sections);
    if dir.join(CRITERION_INDEX).exists() {
        md.push_str(CRITERION_SECTION);
    }
    write(&report, &md)?;
    let html = dir.join(HTML_FILE);
    let title = format!("socklab report: {}", results.machine.hostname);
    write(&html, &html::render(&title, &md, &inline))?;
    let csv = dir.join(CSV_FILE);
    write(&csv, &csv::render(results))?;
    Ok(Written {
        report,
        html,
        csv,
        charts,
    })
}

/// Writes `dir/baseline.md`: what changed in `new` (the run in `dir`) against
/// `old`. Only NEW's directory is written: OLD stays as it was measured, and
/// report.md stays a function of its own results.json.
pub fn write_baseline(old: &Results, new: &Results, dir: &Path) -> Result<PathBuf, ReportError> {
    let path = dir.join(BASELINE_FILE);
    write(&path, &baseline::render(old, new))?;
    Ok(path)
}

/// Writes `text` to `path` whole or not at all: into a temporary file beside it,
/// then `rename(2)`, so a run killed while writing never leaves half a file.
fn write(path: &Path, text: &str) -> Result<(), ReportError> {
    let err = |cause| ReportError::Write {
        path: path.to_path_buf(),
        cause,
    };
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

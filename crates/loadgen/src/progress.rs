//! Progress while a run goes on: the [`Progress`] snapshots [`crate::run`] hands to
//! its callback, and a terminal progress bar built on them.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Which part of the run is going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Opening connections (untimed).
    Connecting,
    /// Traffic runs until every connection has had a reply (untimed).
    Ramp,
    /// Running, but results are not kept yet.
    Warmup,
    Measuring,
}

/// A snapshot of a run in progress, about ten a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    /// Time spent in this phase.
    pub elapsed: Duration,
    /// Length of this phase, when known.
    pub phase_length: Option<Duration>,
    /// Measured replies so far (right or wrong).
    pub completed: u64,
    /// The request count of a counted run.
    pub target_requests: Option<u64>,
    /// Errors and mismatches so far.
    pub errors: u64,
    /// Connections open now.
    pub connected: u64,
    /// Connections answered at least once.
    pub served: u64,
    pub conns: usize,
}

/// A progress bar on stderr, shown only to a person: when stderr is a terminal and
/// `CI` is not set (CI logs fill with redraws otherwise).
pub struct TerminalProgress {
    bar: ProgressBar,
}

impl TerminalProgress {
    /// A bar if stderr is an interactive terminal outside CI, else `None`.
    pub fn if_interactive() -> Option<TerminalProgress> {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        if ci || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{prefix:>10} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        Some(TerminalProgress { bar })
    }

    /// Redraws the bar from a snapshot.
    pub fn update(&self, p: &Progress) {
        let (prefix, frac) = match (p.phase, p.target_requests) {
            (Phase::Connecting, _) => ("connecting", p.connected as f64 / p.conns.max(1) as f64),
            (Phase::Ramp, _) => ("ramp", p.served as f64 / p.conns.max(1) as f64),
            (Phase::Warmup, _) => ("warmup", fraction(p.elapsed, p.phase_length)),
            (Phase::Measuring, Some(n)) => ("measuring", p.completed as f64 / n.max(1) as f64),
            (Phase::Measuring, None) => ("measuring", fraction(p.elapsed, p.phase_length)),
        };
        self.bar.set_prefix(prefix);
        self.bar
            .set_position((frac.clamp(0.0, 1.0) * 1000.0) as u64);
        self.bar.set_message(format!(
            "{:.1}s  {} replies  {} errors  {}/{} conns  {} served",
            p.elapsed.as_secs_f64(),
            p.completed,
            p.errors,
            p.connected,
            p.conns,
            p.served
        ));
    }

    /// Removes the bar before the results are printed.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn fraction(elapsed: Duration, length: Option<Duration>) -> f64 {
    match length {
        Some(l) if !l.is_zero() => elapsed.as_secs_f64() / l.as_secs_f64(),
        _ => 0.0,
    }
}

//! The counted pass: syscalls, context switches and instructions per request.
//!
//! Timed metrics on a shared two-CPU machine vary 20–30 % between runs; counts do
//! not. Each count is *marginal*: the server runs a short and a long fixed number
//! of requests on one connection, and the difference divided by the extra
//! requests is the per-request count — start-up and shutdown cancel out. Tracing
//! slows a server down many times over, so this pass is separate from the timed
//! cells and never distorts them.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use socklab_loadgen::LoadConfig;
use socklab_report::schema::Counted;

use super::machine::command_line;
use super::matrix::{ModelRun, Plan};
use super::server::Launch;
use super::strace;

/// Longest a counted run may take (valgrind runs the server ~50x slower).
const COUNTED_RUN_LIMIT: Duration = Duration::from_secs(120);

pub struct CountedPass<'a> {
    pub plan: &'a Plan,
    pub server_cpu: Option<usize>,
    pub dir: &'a Path,
}

impl CountedPass<'_> {
    /// Counts for `model` serving `conns` connections. The shorter run has at least
    /// 20 requests per connection, so every connection is busy in both runs.
    pub fn run(&self, model: &ModelRun, conns: usize) -> Counted {
        let short = self.plan.counted_requests.max(20 * conns as u64);
        let mut counted = Counted {
            model: model.name.to_string(),
            requests: short,
            conns,
            ..Counted::default()
        };
        match (
            self.untraced(model, conns, short),
            self.untraced(model, conns, 2 * short),
        ) {
            (Ok(a), Ok(b)) => {
                counted.voluntary_ctx = Some(b.voluntary_ctx.saturating_sub(a.voluntary_ctx));
                counted.involuntary_ctx = Some(b.involuntary_ctx.saturating_sub(a.involuntary_ctx));
            }
            (Err(e), _) | (_, Err(e)) => counted.notes.push(format!("context switches: {e:#}")),
        }
        if command_line("strace", &["-V"]).is_none() {
            counted
                .notes
                .push("syscalls: strace is not installed".into());
        } else {
            match (
                self.strace(model, conns, short),
                self.strace(model, conns, 2 * short),
            ) {
                (Ok(a), Ok(b)) => match strace::marginal_checked(&a, &b, (short, 2 * short)) {
                    Ok(extra) => counted.syscalls = extra,
                    Err(note) => counted.notes.push(note),
                },
                (Err(e), _) | (_, Err(e)) => counted.notes.push(format!("syscalls: {e:#}")),
            }
        }
        if self.plan.callgrind {
            if command_line("valgrind", &["--version"]).is_none() {
                counted
                    .notes
                    .push("instructions: valgrind is not installed".into());
            } else {
                match (
                    self.callgrind(model, conns, short),
                    self.callgrind(model, conns, 2 * short),
                ) {
                    (Ok(a), Ok(b)) => {
                        counted.instructions_per_request =
                            Some(b.saturating_sub(a) as f64 / short as f64)
                    }
                    (Err(e), _) | (_, Err(e)) => counted.notes.push(format!("instructions: {e:#}")),
                }
            }
        }
        counted
    }

    /// One server run serving exactly `requests` requests over `conns` connections.
    fn serve(
        &self,
        model: &ModelRun,
        conns: usize,
        requests: u64,
        wrapper: Vec<String>,
        tag: &str,
    ) -> anyhow::Result<socklab_server_kit::usage::TreeUsage> {
        if super::interrupt::requested() {
            bail!("interrupted");
        }
        let launch = Launch {
            serve_args: super::matrix::serve_args(model),
            udp: false,
            cpus: self.server_cpu.into_iter().collect(),
            wrapper,
            stderr: self.dir.join("logs").join(format!(
                "{}-counted-{tag}-{conns}c-{requests}.stderr",
                model.name
            )),
        };
        let server = launch.start()?;
        let config = LoadConfig {
            target: server.tcp.ok_or_else(|| anyhow!("no TCP address"))?,
            conns,
            size: super::cell::MESSAGE_BYTES,
            requests: Some(requests),
            duration: COUNTED_RUN_LIMIT,
            // No reply timeout (the default): a request waiting its turn (an
            // iterative server serves one connection after another) is not lost.
            warmup: Duration::ZERO,
            ..LoadConfig::default()
        };
        let hooks = socklab_loadgen::Hooks {
            stop: Some(super::interrupt::flag()),
            ..Default::default()
        };
        let report = socklab_loadgen::run(&config, hooks)?;
        if report.counts.ok != requests {
            bail!("{} of {requests} requests answered", report.counts.ok);
        }
        server.stop()
    }

    fn untraced(
        &self,
        model: &ModelRun,
        conns: usize,
        requests: u64,
    ) -> anyhow::Result<socklab_server_kit::usage::TreeUsage> {
        self.serve(model, conns, requests, Vec::new(), "plain")
    }

    fn strace(
        &self,
        model: &ModelRun,
        conns: usize,
        requests: u64,
    ) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
        let out = self
            .dir
            .join("logs")
            .join(format!("{}-strace-{conns}c-{requests}.txt", model.name));
        let wrapper = vec![
            "strace".into(),
            "-f".into(),
            "-c".into(),
            "-o".into(),
            out.to_string_lossy().into_owned(),
        ];
        self.serve(model, conns, requests, wrapper, "strace")?;
        let text =
            std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
        Ok(strace::parse_summary(&text))
    }

    /// Total user-space instructions (callgrind's Ir) over every process of the run.
    fn callgrind(&self, model: &ModelRun, conns: usize, requests: u64) -> anyhow::Result<u64> {
        let prefix = self
            .dir
            .join("logs")
            .join(format!("{}-callgrind-{conns}c-{requests}", model.name));
        let wrapper = vec![
            "valgrind".into(),
            "--tool=callgrind".into(),
            "--trace-children=yes".into(),
            format!("--callgrind-out-file={}.%p", prefix.display()),
        ];
        self.serve(model, conns, requests, wrapper, "callgrind")?;
        let mut total = 0;
        let stem = prefix.file_name().unwrap().to_string_lossy().into_owned();
        for entry in std::fs::read_dir(prefix.parent().unwrap())?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{stem}.")) {
                let text = std::fs::read_to_string(entry.path())?;
                total += text
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("summary:")
                            .or_else(|| l.strip_prefix("totals:"))
                    })
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        if total == 0 {
            bail!("callgrind wrote no totals");
        }
        Ok(total)
    }
}

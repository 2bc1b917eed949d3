//! The load processes of a c100k cell: `socklab load --hold` children, each with
//! its own descriptor table and its own source address, lined up on one window.
//!
//! Each child runs in a process group of its own and is registered with
//! [`interrupt`](crate::compare::interrupt), so Ctrl-C reaches compare alone and a
//! second one kills them by PID; dropping a [`Loader`] that still runs kills it.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use socklab_loadgen::LoadReport;

use crate::compare::interrupt::{own_group, Registered};
use crate::hold::{self, Ramped};

/// What one loader is asked to do.
#[derive(Debug, Clone)]
pub struct Spec {
    pub target: SocketAddr,
    pub conns: usize,
    pub rate: f64,
    pub source: IpAddr,
    pub warmup: Duration,
    pub window: Duration,
    pub ramp_limit: Duration,
    /// Where its JSON report, interval log and stderr go.
    pub json: PathBuf,
    pub hlog: PathBuf,
    pub stderr: PathBuf,
}

impl Spec {
    /// The `socklab load` arguments that run it.
    pub fn args(&self) -> Vec<String> {
        let us = |d: Duration| format!("{}us", d.as_micros().max(1));
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        vec![
            "load".into(),
            self.target.to_string(),
            "--mode".into(),
            "open".into(),
            "--rate".into(),
            format!("{}", self.rate),
            "--conns".into(),
            self.conns.to_string(),
            "--bind".into(),
            self.source.to_string(),
            "--warmup".into(),
            us(self.warmup),
            "--duration".into(),
            us(self.window),
            "--ramp-limit".into(),
            us(self.ramp_limit),
            "--hold".into(),
            "--json".into(),
            path(&self.json),
            "--hdr-log".into(),
            path(&self.hlog),
            "--no-progress".into(),
            "--quiet".into(),
        ]
    }
}

/// A running loader.
pub struct Loader {
    pub spec: Spec,
    child: Child,
    stdin: Option<ChildStdin>,
    ramped: mpsc::Receiver<Ramped>,
    _registered: Registered,
}

impl Loader {
    pub fn start(spec: Spec) -> anyhow::Result<Loader> {
        let exe = std::env::current_exe().context("finding the socklab executable")?;
        let stderr = std::fs::File::create(&spec.stderr)
            .with_context(|| format!("creating {}", spec.stderr.display()))?;
        let mut command = Command::new(exe);
        command
            .args(spec.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = own_group(&mut command)
            .spawn()
            .context("starting a loader (socklab load --hold)")?;
        let registered = Registered::new(child.id() as i32);
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, ramped) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(r) = hold::parse_ramped(&line) {
                    let _ = tx.send(r);
                }
            }
        });
        Ok(Loader {
            stdin: child.stdin.take(),
            spec,
            child,
            ramped,
            _registered: registered,
        })
    }

    /// Its ramped line, waiting until `deadline`; `None` if it did not say (still
    /// ramping, or dead).
    pub fn ramped(&self, deadline: Instant) -> Option<Ramped> {
        self.ramped
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    }

    /// Sends it a command; a loader that has exited cannot hear it, which its
    /// missing report will say.
    pub fn tell(&mut self, command: hold::Command) {
        if let Some(stdin) = &mut self.stdin {
            let _ = stdin
                .write_all(command.line().as_bytes())
                .and_then(|()| stdin.flush());
        }
    }

    /// Waits up to `timeout` for it to exit (SIGKILL after that) and reads its
    /// report. Its exit status does not matter: `socklab load` fails when the
    /// server refused or dropped clients, which is what a c100k cell measures.
    pub fn finish(mut self, timeout: Duration) -> anyhow::Result<LoadReport> {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "loader {} did not finish within {timeout:?}",
                    self.spec.source
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&self.spec.json).map_err(|e| {
            let said = std::fs::read_to_string(&self.spec.stderr).unwrap_or_default();
            anyhow!(
                "loader {} wrote no report ({e}): {}",
                self.spec.source,
                said.lines().last().unwrap_or("no output")
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("reading {}", self.spec.json.display()))
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

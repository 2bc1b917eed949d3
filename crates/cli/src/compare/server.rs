//! Running one `socklab serve` child for a cell: pinned, announced, stopped cleanly.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use socklab_models::announce::field;
use socklab_models::Announce;
use socklab_server_kit::usage::TreeUsage;

use super::interrupt::{own_group, Registered};
use super::tree;

/// Longest a server may take to print its address (valgrind is slow to start).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a server may take to exit after SIGTERM: its grace period plus margin.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a server may take to answer SIGUSR1 with its usage line. Its usage
/// thread does nothing else, so it answers within a scheduler turn even with a
/// thousand busy threads beside it.
const USAGE_TIMEOUT: Duration = Duration::from_secs(2);

/// How to start one server.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Arguments after `socklab serve`, e.g. `["pool", "--workers", "4"]`.
    pub serve_args: Vec<String>,
    pub udp: bool,
    /// Pin the server (and everything it forks) to these CPUs (none: not pinned).
    pub cpus: Vec<usize>,
    /// A wrapper command placed before `socklab` (strace, valgrind), if any.
    pub wrapper: Vec<String>,
    /// Where the server's stderr goes (its usage line is read from there).
    pub stderr: PathBuf,
}

/// A running server.
pub struct RunningServer {
    child: Child,
    /// PID of `socklab serve` itself (not of a wrapper around it).
    pub pid: i32,
    pub tcp: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    stderr: PathBuf,
    /// The usage lines the server prints on stdout when sent SIGUSR1.
    usage_lines: mpsc::Receiver<String>,
    /// The server and its wrapper, for a second Ctrl-C's kill (dropped after
    /// they have been reaped).
    _registered: [Registered; 2],
}

/// What the server had used at one moment, its live children included, and what
/// its counters said.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// When the server was asked.
    pub at: Instant,
    pub usage: TreeUsage,
    /// Connections open at that moment (accepted and not yet closed).
    pub active: u64,
    /// Requests the server had answered.
    pub requests: u64,
    /// CPU time the hypervisor gave to others while this machine's CPUs wanted to
    /// run (`steal` in /proc/stat, summed over every CPU), and how many CPUs;
    /// `None` where the kernel does not count it.
    pub steal: Option<(Duration, usize)>,
}

/// The machine's steal time so far: on a virtual machine, the time its virtual
/// CPUs were ready to run but the host ran something else. A vCPU woken from idle
/// can wait milliseconds for the host, so a window with much of it has tails that
/// measure the host as much as the server.
fn machine_steal() -> Option<(Duration, usize)> {
    use procfs::CurrentSI as _;
    let stats = procfs::KernelStats::current().ok()?;
    Some((stats.total.steal_duration()?, stats.cpu_time.len()))
}

impl Launch {
    pub fn start(&self) -> anyhow::Result<RunningServer> {
        let exe = std::env::current_exe().context("finding the socklab executable")?;
        let mut argv: Vec<String> = self.wrapper.clone();
        argv.push(exe.to_string_lossy().into_owned());
        argv.push("serve".into());
        argv.extend(self.serve_args.iter().cloned());
        argv.extend([
            "--tcp".into(),
            "127.0.0.1:0".into(),
            "--grace".into(),
            "1s".into(),
        ]);
        if self.udp {
            argv.extend(["--udp".into(), "127.0.0.1:0".into()]);
        }
        let stderr = std::fs::File::create(&self.stderr)
            .with_context(|| format!("creating {}", self.stderr.display()))?;
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if !self.cpus.is_empty() {
            let cpus = self.cpus.clone();
            // SAFETY: between fork and exec only sched_setaffinity (a syscall) runs;
            // the CPU list was allocated before the fork.
            unsafe {
                command.pre_exec(move || pin_to(&cpus).map_err(std::io::Error::other));
            }
        }
        let mut child = own_group(&mut command)
            .spawn()
            .with_context(|| format!("starting {}", argv.join(" ")))?;
        let wrapper = Registered::new(child.id() as i32);
        let (line, usage_lines) = read_announce(&mut child, &self.stderr)?;
        let announced =
            Announce::parse(&line).ok_or_else(|| anyhow!("not an announce line: {line:?}"))?;
        let pid = announced.pid;
        Ok(RunningServer {
            pid,
            tcp: announced.tcp,
            udp: announced.udp,
            child,
            stderr: self.stderr.clone(),
            usage_lines,
            _registered: [wrapper, Registered::new(pid)],
        })
    }
}

/// Reads the server's announce line, and forwards every later line (the usage
/// lines) to the receiver it returns. The reading thread keeps draining stdout, so
/// the server never blocks on a full pipe.
fn read_announce(
    child: &mut Child,
    stderr: &Path,
) -> anyhow::Result<(String, mpsc::Receiver<String>)> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(line) if Announce::parse(&line).is_some() => Ok((line, rx)),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            let why = std::fs::read_to_string(stderr).unwrap_or_default();
            bail!(
                "server did not start: {}",
                why.lines().last().unwrap_or("no output")
            )
        }
    }
}

impl RunningServer {
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the server has used so far: SIGUSR1 makes it print its own usage line
    /// (every thread, live or exited, and its reaped children; see `socklab
    /// serve`), and its live children are read from /proc here.
    pub fn reading(&self) -> anyhow::Result<Reading> {
        // A line left over from an earlier request that timed out is stale.
        while self.usage_lines.try_recv().is_ok() {}
        let at = Instant::now();
        // SAFETY: kill(2) on the PID of a child we started and have not reaped.
        if unsafe { libc::kill(self.pid, libc::SIGUSR1) } != 0 {
            bail!("SIGUSR1 to the server: {}", std::io::Error::last_os_error());
        }
        let deadline = Instant::now() + USAGE_TIMEOUT;
        let line = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.usage_lines.recv_timeout(left) {
                Ok(line) if line.contains(" usage ") => break line,
                Ok(_) => continue,
                Err(_) => bail!("no usage line within {USAGE_TIMEOUT:?} of SIGUSR1"),
            }
        };
        let own: TreeUsage = line.parse().map_err(|e: String| anyhow!(e))?;
        let counter = |key: &str| -> anyhow::Result<u64> {
            field(&line, key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow!("no {key}= in {line:?}"))
        };
        Ok(Reading {
            at,
            usage: own.plus(&tree::live_children(self.pid)),
            active: counter("active")?,
            requests: counter("requests")?,
            steal: machine_steal(),
        })
    }

    /// SIGTERM, wait, and read the server's own usage line (CPU time and context
    /// switches of its whole tree). SIGKILL if it does not stop in time.
    pub fn stop(mut self) -> anyhow::Result<TreeUsage> {
        // SAFETY: kill(2) on the PID of a child we started and have not reaped.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                return match text.lines().rev().find(|l| l.contains(" usage ")) {
                    Some(line) => line.parse().map_err(|e: String| anyhow!(e)),
                    None => bail!("server exited ({status}) without its usage line"),
                };
            }
            if Instant::now() > deadline {
                kill_server(&mut self.child, self.pid);
                bail!("server did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last lines the server wrote to stderr (for a failed cell's reason).
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        text.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        kill_server(&mut self.child, self.pid);
    }
}

/// SIGKILL to the server `server_pid`, then to `child`, the process we started:
/// the server itself, or a wrapper around it. Killing only a wrapper would leave
/// the server running: when strace dies, the kernel detaches its tracee and lets
/// it go on (serving, holding its port and its CPU through the cells that follow).
/// The server's PID is still its own while the wrapper lives, since strace
/// exits only after its tracee has.
fn kill_server(child: &mut Child, server_pid: i32) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    if server_pid != child.id() as i32 {
        // SAFETY: kill(2) on a descendant of a child we have not reaped.
        unsafe { libc::kill(server_pid, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Restricts the calling thread (and what it later spawns or forks) to `cpus`.
pub fn pin_to(cpus: &[usize]) -> nix::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else {
        return vec![0];
    };
    (0..nix::sched::CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `R`unning, `S`leeping, `Z`ombie...: the state letter in /proc/PID/stat, or
    /// `None` once the process is gone.
    fn state(pid: i32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit(") ").next()?.chars().next()
    }

    #[test]
    fn killing_a_traced_server_kills_the_server_not_only_strace() {
        if Command::new("strace").arg("-V").output().is_err() {
            eprintln!("skipped: strace is not installed (apt-get install strace)");
            return;
        }
        let dir = std::env::temp_dir().join(format!("socklab-kill-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("pid");
        let mut child = Command::new("strace")
            .args([
                "-f",
                "-o",
                "/dev/null",
                "sh",
                "-c",
                "echo $$ > \"$1\"; exec sleep 30",
            ])
            .arg("sh")
            .arg(&pid_file)
            .spawn()
            .expect("starting strace");
        let deadline = Instant::now() + Duration::from_secs(10);
        let server = loop {
            let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
            if let Ok(pid) = text.trim().parse::<i32>() {
                break pid;
            }
            assert!(
                Instant::now() < deadline,
                "the traced process never started"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        kill_server(&mut child, server);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !matches!(state(server), None | Some('Z')) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = state(server);
        if !matches!(left, None | Some('Z')) {
            // SAFETY: kill(2) on the process this test started, so a failure leaks nothing.
            unsafe { libc::kill(server, libc::SIGKILL) };
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            matches!(left, None | Some('Z')),
            "pid {server} outlived its wrapper: {left:?}"
        );
    }
}

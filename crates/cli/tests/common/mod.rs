//! Test harness: runs `socklab serve` as a child process and inspects it via /proc.
//!
//! Servers are started on ephemeral ports (`127.0.0.1:0`); the address is read
//! from the one line `serve` prints. Every server is stopped by its PID when the
//! handle drops, so a failing test leaves no process behind.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Longest any single socket operation in a test may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a server may take to print its address.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One model under test: a row of the one model table (its `serve` arguments, UDP
/// or not, its shape).
pub type Spec = socklab_models::Model;

/// Runs `case` for every row of the model table, each model's panic caught, then
/// fails naming every model that failed, so that one model's failure never hides
/// another's. A new model or variant gets every suite by its row in the table.
pub fn every_model(case: impl Fn(&'static Spec)) {
    let mut failed = Vec::new();
    for model in socklab_models::MODELS {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(model)));
        if let Err(panic) = outcome {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{}: {why}", model.name));
        }
    }
    assert!(
        failed.is_empty(),
        "failed for {} of {} models:\n{}",
        failed.len(),
        socklab_models::MODELS.len(),
        failed.join("\n")
    );
}

/// A running `socklab serve` child process.
pub struct Server {
    child: Option<Child>,
    pub pid: i32,
    pub tcp: SocketAddr,
    pub udp: Option<SocketAddr>,
    stderr_path: PathBuf,
}

impl Server {
    /// Starts `socklab serve <spec.args> <extra>` on ephemeral ports with a short grace.
    pub fn start(spec: &Spec, extra: &[&str]) -> Server {
        let mut args: Vec<&str> = vec!["serve"];
        args.extend_from_slice(spec.serve);
        args.extend_from_slice(&["--tcp", "127.0.0.1:0", "--grace", "2s"]);
        if spec.udp {
            args.extend_from_slice(&["--udp", "127.0.0.1:0"]);
        }
        args.extend_from_slice(extra);
        Server::start_args(&args)
    }

    /// Starts `socklab <args>`, which must print a `tcp=` address line.
    pub fn start_args(args: &[&str]) -> Server {
        Server::try_start_args(args, None).unwrap_or_else(|why| panic!("{why}"))
    }

    /// [`Server::start`] with the server's soft `RLIMIT_NOFILE` lowered to `limit`
    /// (set in the child between `fork` and `exec`), for descriptor-exhaustion tests.
    pub fn start_with_fd_limit(spec: &Spec, extra: &[&str], limit: u64) -> Server {
        let mut args: Vec<&str> = vec!["serve"];
        args.extend_from_slice(spec.serve);
        args.extend_from_slice(&["--tcp", "127.0.0.1:0", "--grace", "2s"]);
        if spec.udp {
            args.extend_from_slice(&["--udp", "127.0.0.1:0"]);
        }
        args.extend_from_slice(extra);
        Server::try_start_args(&args, Some(limit)).unwrap_or_else(|why| panic!("{why}"))
    }

    /// Starts `socklab <args>` (with the soft descriptor limit lowered to `fd_limit`
    /// if given). `Err` says why it did not announce a `tcp=` address: it exited
    /// (its stderr is in the message) or it took longer than [`START_TIMEOUT`].
    pub fn try_start_args(args: &[&str], fd_limit: Option<u64>) -> Result<Server, String> {
        let stderr_path = std::env::temp_dir().join(format!(
            "socklab-test-{}-{}.stderr",
            std::process::id(),
            unique()
        ));
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_socklab"));
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if let Some(limit) = fd_limit {
            lower_fd_limit(&mut command, limit);
        }
        let mut child = command.spawn().expect("spawn socklab");
        let pid = child.id() as i32;
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(START_TIMEOUT);
        let announced = line
            .as_ref()
            .ok()
            .and_then(|l| socklab_models::Announce::parse(l))
            .filter(|a| a.tcp.is_some());
        let announced = match (announced, line) {
            (Some(a), _) => a,
            (None, other) => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                let _ = std::fs::remove_file(&stderr_path);
                return Err(format!(
                    "server {args:?} did not announce its address: {other:?}\nstderr: {stderr}"
                ));
            }
        };
        Ok(Server {
            pid,
            tcp: announced.tcp.expect("filtered above"),
            udp: announced.udp,
            child: Some(child),
            stderr_path,
        })
    }

    /// A client connected to the server, with I/O timeouts.
    pub fn connect(&self) -> TcpStream {
        connect(self.tcp)
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        signal(self.pid, libc::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(15));
        status.unwrap_or_else(|| panic!("server {} did not exit after SIGTERM", self.pid))
    }

    /// Waits up to `limit` for the server to exit on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Direct child processes of the server (from /proc/PID/task/*/children).
    pub fn children(&self) -> Vec<i32> {
        children_of(self.pid)
    }

    /// Child processes that have exited but were not reaped.
    pub fn zombies(&self) -> Vec<i32> {
        self.children()
            .into_iter()
            .filter(|&pid| process_state(pid) == Some('Z'))
            .collect()
    }

    /// Open descriptors of the server process (not its children).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// True while the server process exists and is not a zombie.
    pub fn alive(&self) -> bool {
        matches!(process_state(self.pid), Some(s) if s != 'Z')
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("--- server stderr ---\n{}", self.stderr());
            }
        }
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a PID this test started.
    unsafe { libc::kill(pid, sig) };
}

pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
    }
    out
}

/// The state letter from /proc/PID/stat (R, S, Z, …), or None if gone.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = stat.rsplit_once(')')?.1;
    after_comm.trim_start().chars().next()
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

pub fn udp_client(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(server).unwrap();
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    socket
}

/// What the server must answer: the input with a-z uppercased.
pub fn upper(input: &[u8]) -> Vec<u8> {
    input.to_ascii_uppercase()
}

/// Writes `msg` and reads back exactly its length.
pub fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).expect("write");
    let mut reply = vec![0u8; msg.len()];
    stream.read_exact(&mut reply).expect("read reply");
    reply
}

/// Reads until EOF (bounded by the stream's read timeout).
pub fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).expect("read to EOF");
    all
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Polls `cond` every 20 ms for up to `limit`.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes `command`'s child start with its soft `RLIMIT_NOFILE` at `limit` (the
/// hard limit is kept), set between `fork` and `exec`.
pub fn lower_fd_limit(command: &mut Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // getrlimit/setrlimit, which are async-signal-safe system calls.
    unsafe {
        command.pre_exec(move || {
            let mut rlim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            rlim.rlim_cur = limit.min(rlim.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rlim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `pid` and every process below it (children, grandchildren, …).
pub fn process_tree(pid: i32) -> Vec<i32> {
    let mut tree = vec![pid];
    let mut next = 0;
    while next < tree.len() {
        let below = children_of(tree[next]);
        tree.extend(below);
        next += 1;
    }
    tree
}

/// CPU time (user + system, all threads) used so far by `pid`'s live process tree,
/// in seconds. Processes that exit between reads drop out of the sum.
pub fn tree_cpu_seconds(pid: i32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks: u64 = process_tree(pid)
        .into_iter()
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // Fields after the command name: state is field 3, utime 14, stime 15.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    ticks as f64 / ticks_per_s
}

/// Resident memory (VmRSS) of `pid`'s live process tree, in KiB. Pages a forked
/// child still shares copy-on-write with its parent count in both.
pub fn tree_rss_kib(pid: i32) -> u64 {
    process_tree(pid)
        .into_iter()
        .filter_map(|p| {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

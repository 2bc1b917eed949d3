//! `socklab serve` as a child process, for the duration of one model's benchmarks.
//!
//! # Which binary
//!
//! A bench target cannot ask cargo for another package's binary
//! (`CARGO_BIN_EXE_socklab` exists only for the `socklab` package's own tests),
//! and running `cargo build` from inside `cargo bench` would wait forever on the
//! build lock that the outer cargo holds. So the binary is found next to this
//! bench executable: cargo puts bench executables in `<target>/release/deps/` and
//! `cargo build --release --bin socklab` puts `socklab` in `<target>/release/`. That
//! follows `CARGO_TARGET_DIR` and `--target <triple>` without reading either.
//! `SOCKLAB_BIN=/path/to/socklab` overrides it. A missing binary is a panic that
//! says how to build it; a binary older than a source file of a crate under
//! `crates/` gets a warning (it would bench old code). `scripts/compare.sh --criterion` builds it
//! first.
//!
//! # Lifetime
//!
//! The server binds `127.0.0.1:0` and announces `tcp=IP:PORT pid=N` on stdout; the
//! harness waits for that line, so nothing is timed before the server listens.
//! Dropping a [`Server`] sends SIGTERM to its PID and waits for it (the server's
//! grace period is short); a server that has not exited by then is killed with its
//! child processes. The child also gets `PR_SET_PDEATHSIG` (SIGTERM when the thread
//! that started it exits; the benches start servers on criterion's main thread), so
//! a bench process that is killed outright does not leave a server behind.

use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

use crate::Model;

/// Longest a server may take to print its address (prefork forks 128 workers first).
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// The grace period each server gets after SIGTERM.
const GRACE: &str = "1s";
/// Longest to wait for a server to exit after SIGTERM before killing it.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The environment variable that names the `socklab` binary explicitly.
pub const BIN_ENV: &str = "SOCKLAB_BIN";

/// A running `socklab serve <model>`; stopped by PID when dropped.
pub struct Server {
    child: Child,
    /// The server's process ID (the supervisor, for the process models).
    pub pid: i32,
    /// The TCP address it announced.
    pub addr: SocketAddr,
    model: &'static str,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// False until the address is announced: a failed start reports its own error.
    started: bool,
}

impl Server {
    /// Starts `socklab serve <model> --tcp 127.0.0.1:0` and waits for its address.
    pub fn start(model: &Model) -> io::Result<Server> {
        let binary = socklab_binary();
        let mut command = Command::new(&binary);
        command
            .arg("serve")
            .args(model.serve_args())
            .args(["--tcp", "127.0.0.1:0", "--grace", GRACE])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl(2) is async-signal-safe and touches only the new process.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("spawn {}: {e}", binary.display())))?;
        let stderr = drain(child.stderr.take().expect("piped stderr"));
        let announced = announcement(child.stdout.take().expect("piped stdout"));
        let pid = child.id() as i32;
        let mut server = Server {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            model: model.name,
            stderr,
            started: false,
        };
        match announced.recv_timeout(START_TIMEOUT) {
            Ok(line) => match parse_tcp_addr(&line) {
                Some(addr) => server.addr = addr,
                None => return Err(server.failed(&format!("unexpected first line {line:?}"))),
            },
            Err(_) => return Err(server.failed("no address announced")),
        }
        server.started = true;
        Ok(server)
    }

    /// The start failed: an error that carries what the server wrote on stderr.
    /// (Dropping `self` stops the process.)
    fn failed(self, what: &str) -> io::Error {
        // Give a process that is exiting a moment to finish writing its error.
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut child_exited = false;
        while Instant::now() < deadline && !child_exited {
            child_exited = process_gone(self.pid);
            std::thread::sleep(Duration::from_millis(20));
        }
        io::Error::other(format!(
            "socklab serve {}: {what}; stderr: {}",
            self.model,
            self.stderr_text().trim()
        ))
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the PID of the child this handle started and has not reaped.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    if self.started && !status.success() {
                        eprintln!(
                            "socklab serve {} (pid {}) exited with {status}; stderr:\n{}",
                            self.model,
                            self.pid,
                            self.stderr_text()
                        );
                    }
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => break,
            }
        }
        eprintln!(
            "socklab serve {} (pid {}) ignored SIGTERM for {STOP_TIMEOUT:?}: killing it and its children",
            self.model, self.pid
        );
        for child in children_of(self.pid) {
            // SAFETY: kill(2) on a direct child of our own child, read from /proc just now.
            unsafe { libc::kill(child, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `socklab` binary the servers run; see the module docs for how it is found.
///
/// # Panics
///
/// When the binary does not exist: the benches cannot run without it.
pub fn socklab_binary() -> PathBuf {
    let bench_exe = std::env::current_exe().expect("the bench executable's path");
    let binary = match std::env::var_os(BIN_ENV) {
        Some(path) => PathBuf::from(path),
        None => bench_exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("bench executables live in <target>/<profile>/deps/")
            .join("socklab"),
    };
    assert!(
        binary.is_file(),
        "{} not found: build it first with `cargo build --release --bin socklab` \
         (scripts/compare.sh --criterion does), or name it with {BIN_ENV}=/path/to/socklab",
        binary.display()
    );
    static WARN_ONCE: Once = Once::new();
    WARN_ONCE.call_once(|| warn_if_stale(&binary));
    binary
}

/// Warns when a source file of the binary (`crates/*/src/**.rs`, `crates/*/Cargo.toml`)
/// changed after `binary` was built: the benches would measure the old code.
fn warn_if_stale(binary: &Path) {
    // benches/ sits beside crates/ in the workspace this bench was built from.
    let Some(workspace) = Path::new(env!("CARGO_MANIFEST_DIR")).parent() else {
        return;
    };
    let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else {
        return;
    };
    let Ok(crates) = std::fs::read_dir(workspace.join("crates")) else {
        return;
    };
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for krate in crates.flatten().map(|entry| entry.path()) {
        newest = newer(newest, modified(krate.join("Cargo.toml")));
        newest = newer(newest, newest_rs(&krate.join("src")));
    }
    if let Some((changed, source)) = newest {
        if changed > built {
            eprintln!(
                "warning: {} changed after {} was built; rebuild it with \
                 `cargo build --release --bin socklab` to bench the current code",
                source.display(),
                binary.display()
            );
        }
    }
}

/// The most recently modified `.rs` file under `dir`.
fn newest_rs(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest = None;
    for path in std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()) {
        if path.is_dir() {
            newest = newer(newest, newest_rs(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            newest = newer(newest, modified(path));
        }
    }
    newest
}

fn modified(path: PathBuf) -> Option<(SystemTime, PathBuf)> {
    let time = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    Some((time, path))
}

fn newer(
    a: Option<(SystemTime, PathBuf)>,
    b: Option<(SystemTime, PathBuf)>,
) -> Option<(SystemTime, PathBuf)> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// The `tcp=IP:PORT` address in `serve`'s first line (its announce line).
pub fn parse_tcp_addr(line: &str) -> Option<SocketAddr> {
    socklab_models::Announce::parse(line)?.tcp
}

/// Reads the first stdout line on a thread (so the wait can time out), then keeps
/// reading to EOF so the server never blocks on a full pipe.
fn announcement(stdout: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) > 0 {
            let _ = tx.send(line);
        }
        let _ = io::copy(&mut reader, &mut io::sink());
    });
    rx
}

/// Collects stderr on a thread, for error messages.
fn drain(mut stderr: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let text = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stderr.read(&mut chunk) {
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    text
}

/// True once `pid` has exited (gone, or a zombie waiting to be reaped).
fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Direct children of `pid`, from /proc/PID/task/*/children.
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address is read from the line `socklab serve` prints, wherever it stands.
    #[test]
    fn parses_the_announced_tcp_address() {
        let line = "socklab: fork serving tcp=127.0.0.1:34823 pid=13908\n";
        assert_eq!(
            parse_tcp_addr(line),
            Some("127.0.0.1:34823".parse().unwrap())
        );
        assert_eq!(parse_tcp_addr("socklab: error: address in use"), None);
    }
}

//! Load from several client hosts: `scripts/netns-hosts.sh` run small, with the
//! `socklab` binary under test. The script puts the server and each `socklab load`
//! in network namespaces of their own (its own address, fd table and ports), merges
//! the hosts' HDR logs and checks the counts against the server's counter.
//!
//! Where namespaces cannot be made (not root, no `ip`, no netns support) the script
//! exits 77 and these tests pass, printing its reason. Either way they check that no
//! namespace named after the script's PID is left behind.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The script's "skipped" exit status (automake's convention).
const EXIT_SKIP: i32 = 77;
/// Longest a run may take: a few seconds of load, namespaces made and removed.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// After SIGTERM, how long the script gets to remove what it made.
const CLEANUP_LIMIT: Duration = Duration::from_secs(20);

/// What one run of the script printed and how it ended.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// The script as a child process. Dropping it (a test that panics, or ran past
/// [`RUN_LIMIT`]) stops it and removes any namespace it left, by name.
struct Script {
    child: Child,
    dir: PathBuf,
}

impl Script {
    fn start(name: &str, args: &[&str]) -> Script {
        let dir =
            std::env::temp_dir().join(format!("socklab-netns-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test's directory");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/netns-hosts.sh");
        let child = Command::new("bash")
            .arg(script)
            .args(["--bin", env!("CARGO_BIN_EXE_socklab")])
            .arg("--out")
            .arg(dir.join("out"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .expect("run bash scripts/netns-hosts.sh");
        Script { child, dir }
    }

    /// The prefix of every namespace this run makes: the script's PID is in it.
    fn prefix(&self) -> String {
        format!("socklab-nh-{}-", self.child.id())
    }

    /// Waits for the script to end (at most [`RUN_LIMIT`]).
    fn finish(&mut self) -> Run {
        let status = wait_until(&mut self.child, RUN_LIMIT)
            .unwrap_or_else(|| panic!("netns-hosts.sh ran past {RUN_LIMIT:?}"));
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        Run {
            status,
            stdout: read("stdout"),
            stderr: read("stderr"),
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SIGTERM first: the script's trap removes what it made.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            if wait_until(&mut self.child, CLEANUP_LIMIT).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        for name in namespaces_with_prefix(&self.prefix()) {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_until(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait for netns-hosts.sh") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Namespaces in `ip netns list` whose name starts with `prefix` (none if `ip` is missing).
fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Runs the script with `args` (`name` names its files); `None` when it skipped
/// (the reason is printed). Asserts it passed every check in `checks` (each the
/// start of a `PASS` line) and left no namespace of its own behind.
fn run_and_check(name: &str, args: &[&str], checks: &[&str]) -> Option<Run> {
    let mut script = Script::start(name, args);
    let run = script.finish();
    let left = namespaces_with_prefix(&script.prefix());
    assert!(
        left.is_empty(),
        "namespaces left behind: {left:?}\n{}",
        run.stderr
    );
    if run.status.code() == Some(EXIT_SKIP) {
        eprintln!("skipping: {}", run.stderr.trim());
        return None;
    }
    let all = format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.status.success(), "netns-hosts.sh failed\n{all}");
    assert!(run.stdout.contains("RESULT: PASS"), "{all}");
    assert!(!run.stdout.contains("FAIL"), "{all}");
    for check in checks {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("PASS  {check}"))),
            "no passing check {check:?}\n{all}"
        );
    }
    println!("{}", run.stdout);
    Some(run)
}

/// Two hosts in a counted run: the merged log, the sum of the hosts and the server's counter agree exactly.
#[test]
fn two_hosts_counted_add_up_exactly_to_the_servers_count() {
    let Some(run) = run_and_check(
        "counted",
        &[
            "--model",
            "nonblocking",
            "--hosts",
            "2",
            "--conns",
            "10",
            "--requests",
            "40000",
            "--duration",
            "30s",
        ],
        &[
            "every load exited 0",
            "windows overlap",
            "merged count",
            "server requests 80000 = sum of replies 80000 = merged 80000 = 2 x 40000",
            "server accepted 20 = 2 hosts x 10 connections",
            "server saw 2 peer addresses",
        ],
    ) else {
        return;
    };
    assert!(
        run.stdout.contains("10.77.0.2x10 10.77.0.3x10"),
        "{}",
        run.stdout
    );
}

/// Two hosts in a timed run: their windows overlap, and the server served at least what they counted.
#[test]
fn two_hosts_timed_overlap_and_the_server_served_at_least_their_sum() {
    run_and_check(
        "timed",
        &[
            "--model",
            "thread",
            "--hosts",
            "2",
            "--conns",
            "10",
            "--duration",
            "1s",
        ],
        &[
            "every load exited 0",
            "windows overlap",
            "merged count",
            "server requests",
            "server accepted 20 = 2 hosts x 10 connections",
            "server saw 2 peer addresses",
        ],
    );
}

//! Stopping `socklab compare` as a user does: Ctrl-C in a terminal (SIGINT to the
//! whole foreground process group), and finishing the run with `--resume`.
//!
//! Each test makes itself a child subreaper, so a process compare started and left
//! behind would become this test's child, where it can be seen (and is killed).

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::children_of;

/// A terminal's Ctrl-C ends a compare run within a few seconds: what finished is in
/// results.json and the report (which says it was interrupted), no process it
/// started is left, and `--resume` then runs the rest.
#[test]
fn ctrl_c_keeps_what_was_measured_and_resume_finishes_the_run() {
    become_subreaper();
    let dir = out_dir("ctrl-c");
    let mut compare = start_compare(&dir);
    wait_for_cells(&dir, 2, Duration::from_secs(60));
    let sent = Instant::now();
    ctrl_c(&compare);
    let status = wait(&mut compare, Duration::from_secs(10));
    let took = sent.elapsed();
    let left = leftovers();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(took < Duration::from_secs(5), "took {took:?} to stop");

    let results = read_results(&dir);
    let cells = results["cells"].as_array().unwrap();
    let planned = results["run"]["planned_cells"].as_u64().unwrap() as usize;
    let finished = cells.iter().filter(|c| c["status"] == "ok").count();
    assert_eq!(results["run"]["interrupted"], true);
    assert!(
        finished >= 2 && finished < planned,
        "{finished} of {planned}"
    );
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        report.contains(&format!("Interrupted after {finished} of {planned} cells")),
        "{}",
        &report[..report.len().min(2000)]
    );

    let resumed = Command::new(env!("CARGO_BIN_EXE_socklab"))
        .args(["compare", "--resume", dir.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let results = read_results(&dir);
    let cells = results["cells"].as_array().unwrap();
    assert_eq!(results["run"]["interrupted"], false);
    assert_eq!(cells.len(), planned);
    assert!(cells.iter().all(|c| c["status"] == "ok"), "{cells:?}");
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(!report.contains("Interrupted"));
    assert!(leftovers().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A second Ctrl-C quits at once, and still leaves no process behind.
#[test]
fn a_second_ctrl_c_quits_at_once() {
    become_subreaper();
    let dir = out_dir("twice");
    let mut compare = start_compare(&dir);
    wait_for_cells(&dir, 1, Duration::from_secs(60));
    ctrl_c(&compare);
    std::thread::sleep(Duration::from_millis(20));
    ctrl_c(&compare);
    let status = wait(&mut compare, Duration::from_secs(3));
    assert_eq!(status.code(), Some(130), "{status:?}");
    let left = leftovers();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    // Every cell that finished is on disk.
    let results = read_results(&dir);
    assert!(!results["cells"].as_array().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("socklab-interrupt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A small run (24 cells of 0.3 s) in a process group of its own, as a shell's
/// foreground job.
fn start_compare(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_socklab"))
        .args([
            "compare",
            "--models",
            "thread,nonblocking",
            "--scenarios",
            "scaling,churn",
            "--cell",
            "300ms",
            "--no-counted",
            "--out",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start socklab compare")
}

/// SIGINT to the whole process group, as a terminal sends Ctrl-C.
fn ctrl_c(compare: &Child) {
    // SAFETY: kill(2) on the process group of the child this test started.
    unsafe { libc::kill(-(compare.id() as i32), libc::SIGINT) };
}

fn wait(compare: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = compare.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = compare.kill();
            let _ = compare.wait();
            for pid in leftovers() {
                // SAFETY: a process this test's run left behind (our child now).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            panic!("socklab compare did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until results.json holds `n` cells: it is written as cells finish.
fn wait_for_cells(dir: &Path, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(dir.join("results.json")) {
            let v: serde_json::Value = serde_json::from_str(&text).expect("whole JSON");
            if v["cells"].as_array().is_some_and(|c| c.len() >= n) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("results.json never held {n} cells");
}

fn read_results(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap()
}

fn become_subreaper() {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
}

/// This test's children still alive (orphans of compare come here), after reaping
/// the ones that have exited.
fn leftovers() -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        // SAFETY: waitpid on our own children, non-blocking.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        let left = children_of(std::process::id() as i32);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! The `socklab` command line as a user meets it: the tutorial's Python clients,
//! `socklab client`, and misuse that must end in a clear message, never a panic.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

fn socklab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_socklab"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run socklab")
}

fn python_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs one of the tutorial's Python clients with `stdin` and returns its stdout.
fn run_tutorial_client(script: &str, addr: std::net::SocketAddr, stdin: &str) -> String {
    let path = format!("{}/tests/tutorial/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("timeout")
        .args([
            "10",
            "python3",
            &path,
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
}

/// The tutorial's own UDP `>>>` client gets uppercased replies from socklab.
#[test]
fn tutorial_udp_client_is_answered() {
    if !python_available() {
        eprintln!("skipping: python3 not found");
        return;
    }
    let server = Server::start(socklab_models::find("iterative").unwrap(), &[]);
    let out = run_tutorial_client("udp_client.py", server.udp.unwrap(), "hello\nsocket 编程\n");
    assert!(out.contains("b'HELLO'"), "{out}");
    assert!(
        out.contains("b'SOCKET \\xe7\\xbc\\x96\\xe7\\xa8\\x8b'"),
        "{out}"
    );
}

/// The tutorial's own TCP client gets `HELLO` from every TCP model it was written for.
#[test]
fn tutorial_tcp_client_is_answered() {
    if !python_available() {
        eprintln!("skipping: python3 not found");
        return;
    }
    for model in ["iterative", "fork", "thread"] {
        let server = Server::start_args(&["serve", model, "--tcp", "127.0.0.1:0"]);
        let out = run_tutorial_client("tcp_client.py", server.tcp, "");
        assert!(out.contains("b'HELLO'"), "{model}: {out}");
    }
}

/// `socklab client` with piped stdin prints one reply line per input line, no prompt.
#[test]
fn client_pipes_one_reply_per_line() {
    let server = Server::start(
        socklab_models::find("thread").unwrap(),
        &["--framing", "lines"],
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_socklab"))
        .args(["client", "--tcp", &server.tcp.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"one\ntwo three\n\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "ONE\nTWO THREE\n\n");
}

/// `socklab client --udp` answers per datagram too.
#[test]
fn client_speaks_udp() {
    let server = Server::start(socklab_models::find("iterative").unwrap(), &[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_socklab"))
        .args(["client", "--udp", &server.udp.unwrap().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"datagram\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "DATAGRAM\n");
}

/// Misuse gets a clear message and a non-zero exit, never a panic backtrace.
#[test]
fn misuse_is_a_clear_error() {
    let cases: &[(&[&str], &str)] = &[
        (&["serve", "nosuchmodel"], "unrecognized subcommand"),
        (
            &["serve", "thread", "--work", "nap:3ms"],
            "unknown work kind",
        ),
        (&["serve", "thread", "--framing", "json"], "unknown framing"),
        (
            &["serve", "thread", "--tcp", "not-an-address"],
            "not a HOST:PORT",
        ),
        (
            &["serve", "fork", "--udp", "127.0.0.1:0"],
            "cannot serve UDP",
        ),
        (
            &[
                "serve",
                "thread",
                "--max-conns",
                "0",
                "--tcp",
                "127.0.0.1:0",
            ],
            "at least 1",
        ),
        (&["client"], "required"),
        (
            &["client", "--tcp", "127.0.0.1:1"],
            "connecting to TCP 127.0.0.1:1",
        ),
    ];
    for (args, expected) in cases {
        let out = socklab(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
}

/// Binding an address already in use is an error naming the address.
#[test]
fn address_in_use_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = socklab(&["serve", "thread", "--tcp", &addr]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("binding TCP {addr}")), "{stderr}");
}

/// `socklab models` lists every model with its transports.
#[test]
fn models_lists_every_model() {
    let out = socklab(&["models"]);
    let text = String::from_utf8(out.stdout).unwrap();
    for model in ["iterative", "fork", "thread"] {
        assert!(
            text.lines().any(|l| l.starts_with(model)),
            "{model} missing:\n{text}"
        );
    }
}

/// Runs `socklab compare --models M --scenarios S --repeats 1 --cell C --conns N
/// --no-counted` (`[M, S, C, N]`) into a fresh directory; returns it and its
/// results.json.
fn compare(
    name: &str,
    [models, scenarios, cell, conns]: &[&str; 4],
) -> (std::path::PathBuf, serde_json::Value) {
    let dir = std::env::temp_dir().join(format!("socklab-compare-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = socklab(&[
        "compare",
        "--models",
        models,
        "--scenarios",
        scenarios,
        "--repeats",
        "1",
        "--cell",
        cell,
        "--conns",
        conns,
        "--no-counted",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let results =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    (dir, results)
}

/// `socklab compare` end to end on a tiny matrix: every cell measured, results.json,
/// CSV, report and charts written, and `socklab report` rebuilds the report from
/// results.json alone.
#[test]
fn compare_runs_a_tiny_matrix_end_to_end() {
    let (dir, results) = compare(
        "tiny",
        &["thread,nonblocking", "scaling,churn", "200ms", "1,4"],
    );
    let cells = results["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2 * 3, "2 models x (2 scaling + 1 churn)");
    for cell in cells {
        assert_eq!(cell["status"], "ok", "{cell}");
        assert!(cell["load"]["requests"].as_u64().unwrap() > 0, "{cell}");
        assert!(cell["server"]["cpu_user_s"].as_f64().is_some(), "{cell}");
        if cell["scenario"] == "scaling" {
            assert!(
                cell["load"]["clients"]["served"].as_u64().is_some(),
                "{cell}"
            );
        }
        let hdr = dir.join(cell["hdr_log"].as_str().unwrap());
        assert!(std::fs::metadata(hdr).unwrap().len() > 0);
    }
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("thread") && report.contains("nonblocking"));
    assert!(std::fs::read_dir(dir.join("charts")).unwrap().count() > 0);
    std::fs::remove_file(dir.join("report.md")).unwrap();
    let rebuilt = socklab(&["report", dir.to_str().unwrap()]);
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("report.md")).unwrap(),
        report
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Server usage covers exactly the measured window, children included: at one
/// connection every request costs the blocking handler one context switch (it
/// sleeps in `read()` until the next request; preempted instead, it counts as
/// involuntary), in iterative's own thread and in fork's child process alike.
/// Usage over the server's whole life (warm-up and shutdown besides the window)
/// would show 1.4 or more per request here, and the parent's usage alone almost
/// none for fork.
#[test]
fn compare_reads_server_usage_over_exactly_the_window() {
    let (dir, results) = compare("usage", &["iterative,fork", "scaling", "500ms", "1"]);
    let _ = std::fs::remove_dir_all(&dir);
    for cell in results["cells"].as_array().unwrap() {
        let server = &cell["server"];
        let window = server["window_s"].as_f64().unwrap();
        assert!((0.45..0.6).contains(&window), "window {window} s: {cell}");
        let requests = cell["load"]["requests"].as_f64().unwrap();
        let switches = (server["voluntary_ctx"].as_f64().unwrap()
            + server["involuntary_ctx"].as_f64().unwrap())
            / requests;
        assert!(
            (0.85..1.3).contains(&switches),
            "{} context switches per request: {cell}",
            cell["model"]
        );
        let cpu = server["cpu_user_s"].as_f64().unwrap() + server["cpu_system_s"].as_f64().unwrap();
        assert!(
            cpu / window <= 1.05,
            "{} CPUs used on one: {cell}",
            cpu / window
        );
        assert_eq!(server["held_conns"], 1, "{cell}");
        let served = server["requests"].as_f64().unwrap();
        assert!((served - requests).abs() <= 0.05 * requests, "{cell}");
    }
}

/// `socklab load` against a live server prints verified results; against nothing it
/// fails with a clear message.
#[test]
fn load_drives_a_server_and_fails_clearly_without_one() {
    let server = Server::start_args(&["serve", "nonblocking", "--tcp", "127.0.0.1:0"]);
    let out = socklab(&[
        "load",
        &server.tcp.to_string(),
        "--requests",
        "500",
        "--conns",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("500"), "{text}");
    drop(server);
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = socklab(&[
        "load",
        &gone.to_string(),
        "--requests",
        "10",
        "--duration",
        "2s",
    ]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

/// A fresh run directory holding the report crate's fixture results.json, with
/// `edit` applied to it.
fn fixture_run(name: &str, edit: impl Fn(&mut serde_json::Value)) -> std::path::PathBuf {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../report/tests/fixtures/results.json");
    let mut results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    edit(&mut results);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("socklab-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("results.json"), results.to_string()).unwrap();
    dir
}

/// `socklab report NEW --baseline OLD` writes NEW/baseline.md, prints its path,
/// and names the figure that moved: thread's throughput at 100 connections, 1.5×
/// in every repeat, clear of OLD's range.
#[test]
fn report_with_baseline_writes_what_changed() {
    let old = fixture_run("baseline-old", |_| {});
    let new = fixture_run("baseline-new", |r| {
        for c in r["cells"].as_array_mut().unwrap() {
            if c["model"] == "thread" && c["scenario"] == "scaling" && c["conns"] == 100 {
                let t = c["load"]["throughput_rps"].as_f64().unwrap();
                c["load"]["throughput_rps"] = (t * 1.5).into();
            }
        }
    });
    let out = report_with_baseline(&new, &old);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let path = new.join("baseline.md");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(path.to_str().unwrap()), "{stdout}");
    let md = std::fs::read_to_string(&path).unwrap();
    assert!(
        md.contains(
            "- scaling, thread at 100 connections: **better:** requests per second +50.0 %"
        ),
        "{md}"
    );
    assert!(!old.join("baseline.md").exists(), "OLD is left as measured");
}

/// `socklab report NEW --baseline OLD`.
fn report_with_baseline(new: &std::path::Path, old: &std::path::Path) -> std::process::Output {
    socklab(&[
        "report",
        new.to_str().unwrap(),
        "--baseline",
        old.to_str().unwrap(),
    ])
}

/// A missing OLD, or one of another schema, is a clear error naming the file, with
/// a non-zero exit, no backtrace, and nothing written into NEW.
#[test]
fn report_with_bad_baseline_is_a_clear_error() {
    let new = fixture_run("baseline-bad-new", |_| {});
    let missing = new.join("no-such-run");
    let foreign = fixture_run("baseline-foreign", |r| {
        r["schema"] = "socklab-compare/1".into();
    });
    for (old, expected) in [
        (&missing, "cannot read"),
        (&foreign, "has schema \"socklab-compare/1\""),
    ] {
        let out = report_with_baseline(&new, old);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{old:?} succeeded");
        let file = old.join("results.json");
        assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(stderr.contains("--baseline"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            stderr.matches("os error").count() <= 1,
            "cause said twice: {stderr}"
        );
        assert!(!new.join("baseline.md").exists());
        assert!(!new.join("report.md").exists());
    }
    let help = socklab(&["report", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--baseline <OLD>"), "{help}");
    assert!(
        help.contains("socklab report /tmp/after --baseline /tmp/before"),
        "{help}"
    );
}

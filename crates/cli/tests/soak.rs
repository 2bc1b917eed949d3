//! `socklab soak`: a server that leaks a descriptor every 50 connections fails it;
//! a healthy model passes it. 30 s each (the CI length); `scripts/compare.sh
//! --full` soaks every model longer.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// A Python server that keeps every 50th connection's descriptor is caught: the
/// descriptor count at rest climbs round after round, and soak exits 1.
#[test]
fn soak_catches_a_server_that_leaks_a_descriptor_every_50_connections() {
    if Command::new("python3").arg("-V").output().is_err() {
        eprintln!("skipped: python3 is not installed (apt-get install python3)");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/soak/leaky_server.py");
    let mut server = Command::new("python3")
        .args([script, "50"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut port = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let json = std::env::temp_dir().join(format!("socklab-soak-leak-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_socklab"))
        .args(["soak", "--duration", "30s", "--attach"])
        .arg(server.id().to_string())
        .args(["--tcp", &format!("127.0.0.1:{}", port.trim()), "--json"])
        .arg(&json)
        .output()
        .expect("socklab soak");
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("LEAK"), "{stdout}");
    let soak: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    let fds = soak["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "fds")
        .unwrap();
    assert_eq!(fds["grows"], true, "{fds}");
    assert!(fds["per_minute"].as_f64().unwrap() > 10.0, "{fds}");
}

/// The thread-per-client model under the same mix rests at the same level after
/// every round: nothing grows, and soak exits 0.
#[test]
fn soak_finds_no_leak_in_the_thread_model() {
    let out = Command::new(env!("CARGO_BIN_EXE_socklab"))
        .args(["soak", "thread", "--duration", "30s"])
        .output()
        .expect("socklab soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("steady") && !stdout.contains("GROWS"),
        "{stdout}"
    );
}

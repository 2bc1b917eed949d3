//! The c100k machinery, small: `socklab compare --scenarios c100k` with 2 loader
//! processes × 200 connections against nonblocking and thread, everything on
//! 127.0.0.0/8 and ephemeral ports, the whole run under a timeout.
//!
//! What it proves: every client is served through several loader processes; each
//! loader's connections came from its own source address (as the kernel reported
//! them); the cell's merged count is the sum of the loaders' own; the report has
//! the section; and nothing compare started is left running.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Loader processes and connections of the run.
const LOADERS: usize = 2;
const CONNS: usize = 400;

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// PIDs of the live processes whose command line names `needle`.
fn running_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

/// Two loaders × 200 connections: served, from two source addresses, merged
/// count = the loaders' sum, reported, and every child gone after.
#[test]
fn c100k_cells_merge_several_loaders_from_their_own_addresses() {
    let dir = std::env::temp_dir().join(format!("socklab-c100k-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new("timeout")
        .arg("120")
        .arg(env!("CARGO_BIN_EXE_socklab"))
        .args([
            "compare",
            "--scenarios",
            "c100k",
            "--models",
            "nonblocking,thread",
            "--c100k-conns",
            &CONNS.to_string(),
            "--c100k-rate",
            "800",
            "--c100k-loaders",
            &LOADERS.to_string(),
            "--no-counted",
            "--out",
            dir.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run socklab compare");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let results = json(&dir.join("results.json"));
    let cells = results["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2, "{stderr}");
    for cell in cells {
        let model = cell["model"].as_str().unwrap();
        assert_eq!(cell["status"], "ok", "{cell}");
        assert_eq!(cell["load"]["clients"]["served"], CONNS, "{model}: {cell}");
        assert_eq!(cell["server"]["held_conns"], CONNS, "{model}: {cell}");
        assert_eq!(cell["limit"]["kind"], "none", "{model}: {cell}");
        let extra = &cell["extra"];
        assert_eq!(extra["loaders"], LOADERS as f64, "{model}");
        assert_eq!(extra["loaders_ramped"], LOADERS as f64, "{model}");
        // Each loader's report: its own address, as the kernel gave it.
        let mut sources = Vec::new();
        let mut parts = 0;
        for k in 0..LOADERS {
            let name = format!("hdr/{model}-c100k-{CONNS}-r0-loader{k}.json");
            let report = json(&dir.join(name));
            let from = report["connections"]["sources"].as_array().unwrap().clone();
            assert_eq!(from.len(), 1, "{model} loader {k}: {from:?}");
            assert_eq!(from[0], format!("127.0.0.{}", 2 + k), "{model} loader {k}");
            sources.extend(from);
            assert_eq!(report["config"]["conns"], CONNS / LOADERS);
            parts += report["latency_timed"]["count"].as_u64().unwrap();
        }
        sources.dedup();
        assert_eq!(sources.len(), LOADERS, "{model}: {sources:?}");
        assert_eq!(extra["loader_sources"], LOADERS as f64, "{model}");
        assert!(
            parts > CONNS as u64,
            "{model}: every client once, some twice"
        );
        assert_eq!(extra["loaders_count"], parts as f64, "{model}");
        assert_eq!(extra["merged_count"], parts as f64, "{model}");
        // The merged log the cell points at holds the same values.
        let merged =
            socklab_loadgen::merge_files(&[dir.join(cell["hdr_log"].as_str().unwrap())]).unwrap();
        assert_eq!(merged.files[0].latency_count, parts, "{model}");
    }
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("## Scenario: c100k"), "{report}");
    assert!(
        report.contains("thread and nonblocking held all 400 connections."),
        "{report}"
    );
    let dir_name = dir.to_string_lossy().into_owned();
    assert!(
        running_with(&dir_name).is_empty(),
        "loaders outlived compare: {:?}",
        running_with(&dir_name)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

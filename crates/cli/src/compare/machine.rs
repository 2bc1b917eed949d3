//! The machine a run came from, recorded next to its numbers.

use std::process::Command;

use socklab_report::schema::Machine;

pub fn describe() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let uname = nix::sys::utsname::uname().ok();
    Machine {
        hostname: uname.as_ref().map_or("unknown".into(), |u| {
            u.nodename().to_string_lossy().into_owned()
        }),
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes,
        kernel: uname.map_or("unknown".into(), |u| {
            u.release().to_string_lossy().into_owned()
        }),
        os,
        rustc: command_line("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
        socklab_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// The first line a command prints, if it runs.
/// The outside tools compare uses, each with its version or `None` when missing.
pub fn tools(callgrind: bool) -> Vec<socklab_report::schema::Tool> {
    let tool = |name: &str, version_flag: &str, measures: &str, wanted: bool| {
        socklab_report::schema::Tool {
            name: name.to_string(),
            version: command_line(name, &[version_flag]),
            measures: measures.to_string(),
            wanted,
        }
    };
    vec![
        tool(
            "sockperf",
            "--version",
            "the loopback floor (an idle ping-pong's round trip)",
            true,
        ),
        tool(
            "strace",
            "-V",
            "syscalls per request (the counted pass)",
            true,
        ),
        tool(
            "valgrind",
            "--version",
            "user-space instructions per request (callgrind, in the counted pass)",
            callgrind,
        ),
    ]
}

pub fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(|l| l.trim().to_string())
}

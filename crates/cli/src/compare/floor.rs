//! The loopback floor: what one round trip costs with no socklab in it.
//!
//! `sockperf ping-pong` (a C client and server built for latency measurement) on the
//! same loopback and the same CPUs gives the round trip no server model can beat.
//! The report sets socklab's one-connection latencies against it, which is also the
//! check that the load generator adds little of its own.

use std::process::{Command, Stdio};

use super::interrupt::{own_group, Registered};
use std::time::Duration;

use anyhow::{bail, Context as _};
use socklab_report::schema::Floor;

use super::server::pin_to;

/// How long the ping-pong runs.
const PING_PONG_SECONDS: &str = "2";

/// Measures the floor with sockperf, pinned like the cells: server on `server_cpu`,
/// client on this process's CPUs. `Ok(None)` when sockperf is not installed.
pub fn measure(server_cpu: Option<usize>, message_bytes: usize) -> anyhow::Result<Option<Floor>> {
    let Some(version) = super::machine::command_line("sockperf", &["--version"]) else {
        return Ok(None);
    };
    let port = free_port()?;
    let mut server = Command::new("sockperf");
    server
        .args([
            "server",
            "--tcp",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(cpu) = server_cpu {
        use std::os::unix::process::CommandExt;
        // SAFETY: only sched_setaffinity runs between fork and exec.
        unsafe {
            server.pre_exec(move || pin_to(&[cpu]).map_err(std::io::Error::other));
        }
    }
    let mut server = own_group(&mut server)
        .spawn()
        .context("starting sockperf server")?;
    let registered = Registered::new(server.id() as i32);
    std::thread::sleep(Duration::from_millis(300));
    let mut client = Command::new("sockperf");
    let client = own_group(&mut client)
        .args([
            "ping-pong",
            "--tcp",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args([
            "-t",
            PING_PONG_SECONDS,
            "-m",
            &message_bytes.to_string(),
            "--full-rtt",
        ])
        .output();
    let _ = server.kill();
    let _ = server.wait();
    drop(registered);
    let out = client.context("running sockperf ping-pong")?;
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    let (Some(p50), Some(p99)) = (percentile(&text, "50.000"), percentile(&text, "99.000")) else {
        bail!(
            "sockperf printed no percentiles: {}",
            text.lines().last().unwrap_or("")
        );
    };
    Ok(Some(Floor {
        tool: format!(
            "{version}: ping-pong --tcp --full-rtt, {message_bytes} B, {PING_PONG_SECONDS} s"
        ),
        p50_round_trip_us: p50,
        p99_round_trip_us: p99,
    }))
}

/// Reads `---> percentile 50.000 =   25.377` from sockperf's output.
fn percentile(text: &str, which: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.split("percentile").nth(1)?.trim_start();
        let value = rest.strip_prefix(which)?.trim_start().strip_prefix('=')?;
        value.trim().parse().ok()
    })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_sockperf_percentiles() {
        let text = "sockperf: ---> percentile 99.000 = 1686.746\nsockperf: ---> percentile 50.000 =   25.377\n";
        assert_eq!(super::percentile(text, "50.000"), Some(25.377));
        assert_eq!(super::percentile(text, "99.000"), Some(1686.746));
        assert_eq!(super::percentile(text, "90.000"), None);
    }
}

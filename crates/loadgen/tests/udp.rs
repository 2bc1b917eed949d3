//! The UDP load generator against small in-test servers.

mod common;

use std::time::Duration;

use common::{config, dead_port, run_bounded, Served, UdpServer};
use socklab_loadgen::{LoadConfig, Mode, Transport};

const LIMIT: Duration = Duration::from_secs(10);

/// Against a server that drops every tenth datagram, 1,000 requests give exactly 100 lost.
#[test]
fn udp_losses_are_counted_exactly() {
    let server = UdpServer::start(10);
    let cfg = LoadConfig {
        transport: Transport::Udp,
        conns: 50,
        requests: Some(1_000),
        timeout: Some(Duration::from_millis(300)),
        ..config(server.addr)
    };
    let r = run_bounded(&cfg, LIMIT);
    assert_eq!(Served::get(&server.served.requests), 1_000);
    assert_eq!(Served::get(&server.served.dropped), 100);
    assert_eq!(r.counts.sent, 1_000, "{r}");
    assert_eq!(r.counts.ok, 900, "{r}");
    assert_eq!(r.errors.timeouts, 100, "{r}");
    assert_eq!(r.counts.failed, 100);
    assert_eq!(r.counts.mismatched + r.errors.unexpected + r.errors.late, 0);
}

/// Open-loop UDP sends its requests on schedule and counts them exactly.
#[test]
fn udp_open_loop_counts() {
    let server = UdpServer::start(0);
    let cfg = LoadConfig {
        transport: Transport::Udp,
        mode: Mode::Open,
        rate: Some(2_000.0),
        conns: 4,
        requests: Some(400),
        ..config(server.addr)
    };
    let r = run_bounded(&cfg, LIMIT);
    assert_eq!(r.counts.ok, 400, "{r}");
    assert_eq!(Served::get(&server.served.requests), 400);
}

/// UDP to a port nobody listens on never hangs: the requests time out or are refused, and are counted.
#[test]
fn udp_to_nobody_does_not_hang() {
    let cfg = LoadConfig {
        transport: Transport::Udp,
        conns: 2,
        duration: Duration::from_millis(300),
        timeout: Some(Duration::from_millis(50)),
        ..config(dead_port())
    };
    let r = run_bounded(&cfg, LIMIT);
    assert_eq!(r.counts.ok, 0);
    assert!(r.errors.refused + r.errors.timeouts > 0, "{r}");
}

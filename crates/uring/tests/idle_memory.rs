//! An idle connection holds no receive buffer: the loop's memory grows by well
//! under a kilobyte or two per connection served once and then silent, where a
//! buffer lent to each connection's armed recv cost 8.4 KiB (one 16 KiB buffer,
//! two of its pages touched). Alone in its own test binary: it reads the process's
//! resident memory, which tests running beside it would move.

use std::net::TcpStream;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use socklab_server_kit::testing::{connect, round_trip, TestServer};
use socklab_server_kit::Config;
use socklab_uring::Options;

/// Connections held idle; each costs this process two descriptors (both ends).
const CONNECTIONS: u64 = 2_000;
/// What an idle connection may cost: the `Box<Connection>` and the slab's slot
/// are a few hundred bytes; a buffer per connection would be 4 KiB and more.
const MAX_BYTES_PER_CONNECTION: u64 = 2 * 1024;
/// Requests on one connection before the baseline, so that every buffer the
/// ring starts with (256, recycled in order) has been written once and is
/// already resident: the pool is the loop's fixed cost, not the connections'.
const WARM_UP_REQUESTS: usize = 1_024;

/// 2,000 connections, each served one request and then idle, cost the server
/// less than 2 KiB of resident memory each.
#[test]
fn idle_connections_hold_no_receive_buffer() {
    if let Err(why) = socklab_uring::availability() {
        eprintln!("skipping: {why}");
        return;
    }
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let needed = 2 * CONNECTIONS + 64;
    if hard < needed {
        eprintln!(
            "skipping: RLIMIT_NOFILE hard limit {hard} is below the {needed} descriptors needed"
        );
        return;
    }
    setrlimit(Resource::RLIMIT_NOFILE, soft.max(needed), hard).unwrap();

    let server = TestServer::tcp(Config::default(), |listener, cx| {
        socklab_uring::serve(listener, cx, &Options::default())
    });
    let mut warm = connect(server.addr);
    for _ in 0..WARM_UP_REQUESTS {
        assert_eq!(round_trip(&mut warm, b"warm"), b"WARM");
    }
    let mut idle: Vec<TcpStream> = Vec::with_capacity(CONNECTIONS as usize);
    // One first connection outside the count, so the slab's first growth and the
    // like are in the baseline.
    idle.push(connect(server.addr));
    let before = resident_bytes();
    for _ in 0..CONNECTIONS {
        let mut client = connect(server.addr);
        assert_eq!(
            round_trip(&mut client, b"hello, then silence"),
            b"HELLO, THEN SILENCE"
        );
        idle.push(client);
    }
    let after = resident_bytes();
    let per_connection = after.saturating_sub(before) / CONNECTIONS;
    assert!(
        per_connection <= MAX_BYTES_PER_CONNECTION,
        "each idle connection costs {per_connection} bytes of resident memory \
         ({before} -> {after} bytes for {CONNECTIONS} connections)"
    );
    eprintln!("{per_connection} bytes of resident memory per idle connection");
    drop((warm, idle));
    server.stop();
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
}

/// This process's resident memory (`/proc/self/smaps_rollup`), in bytes.
fn resident_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
    let kib: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("Rss:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("an Rss: line in /proc/self/smaps_rollup");
    kib * 1024
}

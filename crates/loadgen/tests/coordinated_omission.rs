//! Coordinated omission: a 200 ms server stall, measured in open and closed loop.
//!
//! Its own test binary, so it does not share the CPUs with the other tests' runs.

mod common;

use std::time::Duration;

use common::{config, run_bounded, Behavior, TcpServer};
use socklab_loadgen::{Framing, LoadConfig, Mode};

const STALL: Duration = Duration::from_millis(200);

/// A one-time 200 ms stall shows in open-loop p99 (every request queued behind it
/// is charged). In a closed loop it hides from p99 as timed (the client waited with
/// the server and sent nothing) and shows in p99 over all clients (the correction
/// adds the requests the client would have sent during the stall).
#[test]
fn open_loop_sees_the_stall_closed_loop_hides_it() {
    let stall = Behavior::StallOnce {
        at: 300,
        stall: STALL,
    };

    let server = TcpServer::start(Framing::Lines, stall);
    let open = LoadConfig {
        framing: Framing::Lines,
        mode: Mode::Open,
        rate: Some(1_000.0),
        conns: 1,
        threads: 1,
        duration: Duration::from_millis(1_500),
        ..config(server.addr)
    };
    let open = run_bounded(&open, Duration::from_secs(10));
    drop(server);

    let server = TcpServer::start(Framing::Lines, stall);
    let closed = LoadConfig {
        framing: Framing::Lines,
        conns: 1,
        threads: 1,
        duration: Duration::from_millis(1_000),
        ..config(server.addr)
    };
    let closed = run_bounded(&closed, Duration::from_secs(10));
    drop(server);

    // Open loop: ~200 of ~1,500 requests were due during the stall and waited for
    // it, from 200 ms down to 0: p99 is well above 100 ms.
    assert!(
        open.latency.p99_us >= 100_000,
        "open loop hid the stall:\n{open}"
    );
    assert!(open.latency.max_us >= 150_000, "{open}");
    assert_eq!(open.errors.total(), 0, "{open}");
    // Closed loop, as timed: one request of thousands took 200 ms; p99 stays small.
    assert!(closed.counts.ok > 1_000, "{closed}");
    assert!(
        closed.latency_timed.max_us >= 150_000,
        "the stall happened:\n{closed}"
    );
    assert!(closed.latency_timed.p99_us < 50_000, "{closed}");
    // Over all clients: the 200 ms stands for every request not sent meanwhile.
    assert!(
        closed.latency.p99_us >= 100_000,
        "the correction missed the stall:\n{closed}"
    );
}

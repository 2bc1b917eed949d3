//! What is specific to the workers model: the cap holds across workers that share
//! one listener; a crash loses the crashed worker's clients and no one else's, and
//! the worker is replaced; together the workers hold more clients than one
//! process may open descriptors; shutdown leaves no child behind. (The shared
//! conformance and hardening suites cover the service itself.)
//!
//! These tests fork from the test process, so they run one at a time
//! (`forking_test`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use socklab_protocol::{Framing, Work};
use socklab_server_kit::config::CHAOS_TRIGGER;
use socklab_server_kit::testing::{
    assert_closed, assert_no_children, assert_reply_in_flight_survives_shutdown,
    assert_shutdown_closes_idle_clients_after_grace, children, connect, forking_test, ms,
    round_trip, unanswered, wait_for_children, TestServer,
};
use socklab_server_kit::Config;
use socklab_workers::{serve, serve_with_counts, Options};

/// How long a client must go unanswered to count as "waiting unserved".
const STALL: Duration = Duration::from_millis(300);

fn start(config: Config, workers: usize) -> TestServer {
    let server = TestServer::tcp(config, move |listener, cx| {
        serve(listener, cx, &Options { workers })
    });
    wait_for_children(workers);
    server
}

/// `n` clients connected one after another, each answered once and kept open.
fn served_clients(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut c = connect(addr);
            let msg = format!("client {i}");
            assert_eq!(
                round_trip(&mut c, msg.as_bytes()),
                msg.to_uppercase().as_bytes()
            );
            c
        })
        .collect()
}

/// Whether `client` still gets `msg` back: false once its server-side socket is
/// gone (EOF or a reset).
fn still_served(client: &mut TcpStream, msg: &[u8]) -> bool {
    if client.write_all(msg).is_err() {
        return false;
    }
    let mut reply = vec![0; msg.len()];
    match client.read_exact(&mut reply) {
        Ok(()) => reply == msg.to_ascii_uppercase(),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ) =>
        {
            false
        }
        Err(e) => panic!("neither served nor closed: {e}"),
    }
}

/// Two workers, each with a share of 2 of `--max-conns 4`, on one inherited
/// listener: the cap holds exactly (a worker with room takes the next client,
/// and the fifth waits). Then a crash (`--chaos`) takes the crashed worker's
/// other client with it and no one else's; the worker is replaced, and the
/// client that waited is served.
#[test]
fn a_crash_loses_only_the_crashed_workers_clients() {
    let _one = forking_test();
    // abort() would write a core file where the system allows one; not here.
    setrlimit(Resource::RLIMIT_CORE, 0, 0).unwrap();
    let config = Config {
        chaos: true,
        max_conns: 4,
        // The replacement is forked while this test holds its clients' sockets,
        // so it inherits copies: closing ours is no EOF for the other workers'
        // clients, which then wait out the grace period. Keep it short.
        grace: ms(300),
        ..Config::default()
    };
    let server = TestServer::tcp(config, |listener, cx| {
        serve_with_counts(listener, cx, &Options { workers: 2 }).map(|counts| {
            assert_eq!(counts.total(), 5, "{counts}");
        })
    });
    let before = wait_for_children(2);
    let mut clients = served_clients(server.addr, 4);
    let mut waiting = connect(server.addr);
    waiting.write_all(b"waiting").unwrap();
    assert!(
        unanswered(&mut waiting, STALL),
        "a fifth client was served under --max-conns 4"
    );

    let mut crasher = clients.remove(0);
    crasher.write_all(CHAOS_TRIGGER).unwrap();
    assert_closed(&mut crasher);
    // The crashed worker held one client besides the crasher: exactly one of the
    // other three is lost. The other worker's two never notice.
    let survivors: Vec<TcpStream> = clients
        .into_iter()
        .filter_map(|mut c| still_served(&mut c, b"still here?").then_some(c))
        .collect();
    assert_eq!(survivors.len(), 2, "clients of the other worker lost");

    let mut reply = [0u8; 7];
    waiting
        .read_exact(&mut reply)
        .expect("served by the replacement");
    assert_eq!(&reply, b"WAITING");
    let after = wait_for_children(2);
    assert_eq!(
        after.iter().filter(|pid| before.contains(pid)).count(),
        1,
        "one worker replaced: before {before:?}, after {after:?}"
    );
    drop((survivors, waiting));
    let counters = server.cx.counters;
    server.stop();
    assert_eq!(
        counters.active(),
        0,
        "the dead worker's clients still counted"
    );
    assert_no_children();
}

/// With the descriptor limit lowered to 64 before the workers are forked (they
/// inherit it), two workers hold 90 clients at once, each answered: more than
/// one process could. Each worker holds its own share.
#[test]
fn the_workers_together_hold_more_clients_than_one_process_may_open() {
    const LIMIT: u64 = 64;
    const CLIENTS: usize = 90;
    let _one = forking_test();
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, LIMIT, hard).unwrap();
    let server = start(Config::default(), 2);
    // The test itself (the clients) needs more than the workers may have.
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    let clients = served_clients(server.addr, CLIENTS);
    let fds: Vec<usize> = children()
        .iter()
        .map(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .unwrap()
                .count()
        })
        .collect();
    eprintln!("descriptors per worker: {fds:?}");
    drop(clients);
    server.stop();
    assert_no_children();
}

/// Runs one of the event loops' shared shutdown checks against two workers, then
/// checks that no worker is left.
fn shutdown_check(config: Config, check: fn(TestServer, &str)) {
    let _one = forking_test();
    let config = Config {
        grace: ms(500),
        ..config
    };
    check(start(config, 2), "workers");
    assert_no_children();
}

/// SIGTERM reaches every worker: idle clients are closed once the grace period
/// is over, `serve` returns, the listener is closed and no worker is left.
#[test]
fn shutdown_with_idle_clients_returns_within_grace() {
    shutdown_check(
        Config::default(),
        assert_shutdown_closes_idle_clients_after_grace,
    );
}

/// A reply held by a `sleep` timer in a worker when shutdown comes is still
/// delivered.
#[test]
fn shutdown_delivers_replies_in_flight() {
    let config = Config {
        framing: Framing::Raw,
        work: Work::Sleep(ms(200)),
        ..Config::default()
    };
    shutdown_check(config, assert_reply_in_flight_survives_shutdown);
}

/// `serve_with_counts` counts every connection in the slot of the worker that
/// accepted it.
#[test]
fn worker_counts_sum_to_connections_made() {
    let _one = forking_test();
    let server = TestServer::tcp(Config::default(), |listener, cx| {
        let counts = serve_with_counts(listener, cx, &Options { workers: 3 })?;
        eprintln!("{counts}");
        assert_eq!(counts.0.len(), 3, "{counts}");
        assert_eq!(counts.total(), 30, "{counts}");
        Ok(())
    });
    wait_for_children(3);
    for i in 0..30 {
        let mut c = connect(server.addr);
        assert_eq!(
            round_trip(&mut c, format!("{i}").as_bytes()),
            format!("{i}").as_bytes()
        );
    }
    server.stop();
    assert_no_children();
}

//! What is specific to prefork: each mode serves; a dead worker is replaced and
//! service goes on; per-worker counts add up; shutdown is bounded by grace and
//! leaves no child behind.
//!
//! These tests fork from the test process. They run one at a time (`forking_test`):
//! a worker inherits every descriptor the process has open, so a test running
//! beside another would hold that test's client sockets open in its workers; and
//! the "no child left" check looks at every child of the process.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use socklab_prefork::{Options, PreforkMode, WorkerCounts};
use socklab_server_kit::config::CHAOS_TRIGGER;
use socklab_server_kit::testing::{
    assert_no_children, children, connect, forking_test, round_trip, unanswered, wait_for_children,
};
use socklab_server_kit::{bind_tcp, bind_udp, BindOptions, Config, Context};

/// Every blocking read and connect in these tests gives up after this long.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a client must go unanswered to count as "waiting unserved".
const STALL: Duration = Duration::from_millis(300);
const MODES: [PreforkMode; 3] = [PreforkMode::NoLock, PreforkMode::Flock, PreforkMode::PassFd];

struct Server {
    addr: SocketAddr,
    cx: Context,
    thread: JoinHandle<std::io::Result<WorkerCounts>>,
}

impl Server {
    fn tcp(config: Config, options: Options) -> Server {
        let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), BindOptions::default()).unwrap();
        let addr = listener.local_addr().unwrap();
        let cx = Context::new(config).unwrap();
        let server_cx = cx.clone();
        let thread = std::thread::spawn(move || {
            socklab_prefork::serve_with_counts(listener, &server_cx, &options)
        });
        let server = Server { addr, cx, thread };
        wait_for_children(options.workers);
        server
    }

    /// Triggers shutdown; returns how long `serve` took and what it counted.
    fn stop(self) -> (Duration, WorkerCounts) {
        let start = Instant::now();
        self.cx.shutdown.trigger();
        let counts = self.thread.join().unwrap().unwrap();
        (start.elapsed(), counts)
    }
}

fn options(workers: usize, mode: PreforkMode) -> Options {
    Options { workers, mode }
}

/// Connects, echoes one message, closes.
fn one_round_trip(addr: SocketAddr, i: usize) {
    let mut client = connect(addr);
    let msg = format!("client {i}");
    assert_eq!(
        round_trip(&mut client, msg.as_bytes()),
        msg.to_uppercase().as_bytes()
    );
}

/// Reads until EOF or an error: the server closed the connection.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    }
}

/// Every mode echoes, to two clients at once, and its workers count them.
#[test]
fn echoes_in_each_mode() {
    let _serial = forking_test();
    for mode in MODES {
        let server = Server::tcp(Config::default(), options(2, mode));
        let mut first = connect(server.addr);
        let mut second = connect(server.addr);
        assert_eq!(round_trip(&mut first, b"hello"), b"HELLO");
        assert_eq!(round_trip(&mut second, b"world"), b"WORLD");
        drop((first, second));
        let counters = server.cx.counters;
        let (_, counts) = server.stop();
        assert_eq!(counts.total(), 2, "{mode:?}: {counts}");
        assert_eq!(counters.accepted.load(Relaxed), 2);
        assert_eq!(counters.active(), 0, "{mode:?}");
        assert_no_children();
    }
}

/// Per-worker counts sum to the connections made, in every mode.
#[test]
fn worker_counts_sum_to_connections_made() {
    let _serial = forking_test();
    const CONNECTIONS: usize = 30;
    for mode in MODES {
        let server = Server::tcp(Config::default(), options(3, mode));
        for i in 0..CONNECTIONS {
            one_round_trip(server.addr, i);
        }
        let counters = server.cx.counters;
        let (_, counts) = server.stop();
        eprintln!("{mode:?}: {counts}");
        assert_eq!(counts.0.len(), 3);
        assert_eq!(counts.total(), CONNECTIONS as u64, "{mode:?}: {counts}");
        assert_eq!(counters.accepted.load(Relaxed), CONNECTIONS as u64);
        assert_no_children();
    }
}

/// A worker killed with SIGKILL is reaped and replaced; service goes on.
#[test]
fn a_killed_worker_is_replaced_and_service_continues() {
    let _serial = forking_test();
    for mode in MODES {
        let server = Server::tcp(Config::default(), options(2, mode));
        one_round_trip(server.addr, 0);
        let before = children();
        kill(Pid::from_raw(before[0]), Signal::SIGKILL).unwrap();

        let deadline = Instant::now() + IO_TIMEOUT;
        let after = loop {
            let now = children();
            if (now.len() == 2 && !now.contains(&before[0])) || Instant::now() > deadline {
                break now;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            !after.contains(&before[0]),
            "{mode:?}: not reaped: {after:?}"
        );
        assert_eq!(after.len(), 2, "{mode:?}: not replaced: {after:?}");

        for i in 1..=6 {
            one_round_trip(server.addr, i);
        }
        let counters = server.cx.counters;
        let (_, counts) = server.stop();
        assert_eq!(counts.total(), 7, "{mode:?}: {counts}");
        assert_eq!(counters.active(), 0);
        assert_no_children();
    }
}

/// With --chaos, a crashing handler loses its own client only: the other
/// client's worker is untouched, the dead one is replaced, and the count of
/// active connections still comes back to zero.
#[test]
fn a_crashing_handler_loses_only_its_own_client() {
    let _serial = forking_test();
    // abort() would write a core file where the system allows one; not here.
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0).unwrap();
    let config = Config {
        chaos: true,
        // The replacement worker is forked while this test holds `bystander`'s
        // client socket, so it inherits a copy: closing ours is no EOF for the
        // bystander's worker, which then runs until grace ends. (A server process
        // holds no client sockets; only a test that is also the client does.)
        grace: Duration::from_millis(300),
        ..Config::default()
    };
    for mode in [PreforkMode::NoLock, PreforkMode::PassFd] {
        let server = Server::tcp(config.clone(), options(2, mode));
        let mut bystander = connect(server.addr);
        assert_eq!(round_trip(&mut bystander, b"still here?"), b"STILL HERE?");

        let mut crasher = connect(server.addr);
        crasher.write_all(CHAOS_TRIGGER).unwrap();
        assert!(closed_by_server(&mut crasher), "{mode:?}");

        assert_eq!(round_trip(&mut bystander, b"yes"), b"YES");
        wait_for_children(2); // the replacement
        one_round_trip(server.addr, 1); // served by the replacement
        drop(bystander);
        let counters = server.cx.counters;
        let (_, counts) = server.stop();
        assert_eq!(counts.total(), 3, "{mode:?}: {counts}");
        assert_eq!(counters.active(), 0, "{mode:?}");
        assert_no_children();
    }
}

/// SIGTERM means "finish your client": after shutdown a client in flight is
/// still answered, and once it leaves `serve` returns well within grace.
#[test]
fn shutdown_lets_a_client_in_flight_finish() {
    let _serial = forking_test();
    for mode in MODES {
        let server = Server::tcp(Config::default(), options(2, mode));
        let mut client = connect(server.addr);
        assert_eq!(round_trip(&mut client, b"before"), b"BEFORE");
        server.cx.shutdown.trigger();
        std::thread::sleep(Duration::from_millis(150)); // workers have their SIGTERM
        assert_eq!(round_trip(&mut client, b"after"), b"AFTER");
        drop(client);
        let (took, _) = server.stop();
        assert!(
            took < Duration::from_secs(2),
            "{mode:?}: serve took {took:?}"
        );
        assert_no_children();
    }
}

/// An idle client does not hold shutdown past grace: its worker is SIGKILLed,
/// every worker is reaped, and the client sees its connection closed.
#[test]
fn shutdown_returns_within_grace_with_no_children_left() {
    let _serial = forking_test();
    let grace = Duration::from_millis(300);
    let config = Config {
        grace,
        ..Config::default()
    };
    for mode in MODES {
        let server = Server::tcp(config.clone(), options(2, mode));
        let mut idle = connect(server.addr);
        assert_eq!(round_trip(&mut idle, b"idle"), b"IDLE");
        let counters = server.cx.counters;
        let (took, _) = server.stop();
        assert!(took >= grace, "{mode:?}: returned before grace: {took:?}");
        assert!(
            took < grace + Duration::from_secs(1),
            "{mode:?}: took {took:?}"
        );
        assert_no_children();
        assert_eq!(
            counters.active(),
            0,
            "{mode:?}: the killed worker's client is settled"
        );
        assert!(closed_by_server(&mut idle), "{mode:?}");
    }
}

/// PassFd: with the only worker busy the parent stops accepting; the next
/// client is served once the worker says it is idle again.
#[test]
fn pass_fd_waits_for_an_idle_worker() {
    let _serial = forking_test();
    let server = Server::tcp(Config::default(), options(1, PreforkMode::PassFd));
    let mut first = connect(server.addr);
    assert_eq!(round_trip(&mut first, b"one"), b"ONE");
    let mut second = connect(server.addr);
    second.write_all(b"two").unwrap();
    assert!(unanswered(&mut second, STALL));
    assert_eq!(server.cx.counters.accepted.load(Relaxed), 1);
    drop(first);
    let mut reply = [0u8; 3];
    second.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"TWO");
    drop(second);
    server.stop();
    assert_no_children();
}

/// N prefork workers share one UDP socket; every datagram is answered.
#[test]
fn udp_workers_share_one_socket() {
    let _serial = forking_test();
    let socket = bind_udp("127.0.0.1:0".parse().unwrap(), BindOptions::default()).unwrap();
    let addr = socket.local_addr().unwrap();
    let cx = Context::new(Config::default()).unwrap();
    let server_cx = cx.clone();
    let thread = std::thread::spawn(move || {
        socklab_prefork::serve_udp(socket, &server_cx, &options(2, PreforkMode::NoLock))
    });
    wait_for_children(2);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = [0u8; 64];
    for i in 0..10 {
        let msg = format!("datagram {i}");
        client.send_to(msg.as_bytes(), addr).unwrap();
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], msg.to_uppercase().as_bytes());
    }
    let start = Instant::now();
    cx.shutdown.trigger();
    thread.join().unwrap().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(cx.counters.requests.load(Relaxed), 10);
    assert_no_children();
}

/// Zero workers is a configuration error, not a server that never answers.
#[test]
fn zero_workers_is_an_error() {
    let _serial = forking_test();
    let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), BindOptions::default()).unwrap();
    let cx = Context::new(Config::default()).unwrap();
    let err = socklab_prefork::serve(listener, &cx, &options(0, PreforkMode::NoLock)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

//! What is specific to the pool: both dispatch styles serve; N busy workers make
//! client N+1 wait; the bounded queue's backpressure; shutdown bounded by grace.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use socklab_pool::{Dispatch, Options};
use socklab_server_kit::testing::{connect, round_trip, unanswered, TestServer, IO_TIMEOUT};
use socklab_server_kit::{bind_tcp, BindOptions, Config, Context};

/// How long a client must go unanswered to count as "waiting unserved".
const STALL: Duration = Duration::from_millis(300);

fn start(config: Config, options: Options) -> TestServer {
    TestServer::tcp(config, move |listener, cx| {
        socklab_pool::serve(listener, cx, &options)
    })
}

fn options(workers: usize, dispatch: Dispatch) -> Options {
    Options { workers, dispatch }
}

/// Both dispatch styles echo uppercase to several clients at once.
#[test]
fn echoes_with_each_dispatch() {
    for dispatch in [Dispatch::Queue, Dispatch::Accept] {
        let server = start(Config::default(), options(3, dispatch));
        let mut clients: Vec<TcpStream> = (0..3).map(|_| connect(server.addr)).collect();
        for (i, client) in clients.iter_mut().enumerate() {
            let msg = format!("hello {i}");
            assert_eq!(
                round_trip(client, msg.as_bytes()),
                msg.to_uppercase().as_bytes()
            );
        }
        drop(clients);
        let counters = server.cx.counters;
        server.stop();
        assert_eq!(counters.accepted.load(Relaxed), 3);
        assert_eq!(counters.active(), 0);
    }
}

/// With 2 workers held by 2 idle clients, a 3rd client is connected but unserved;
/// it is served as soon as one idle client leaves.
#[test]
fn client_n_plus_one_waits_for_a_free_worker() {
    for dispatch in [Dispatch::Queue, Dispatch::Accept] {
        let server = start(Config::default(), options(2, dispatch));
        let mut first = connect(server.addr);
        let mut second = connect(server.addr);
        // A round trip each proves both are held by a worker (not queued).
        assert_eq!(round_trip(&mut first, b"a"), b"A");
        assert_eq!(round_trip(&mut second, b"b"), b"B");

        let mut third = connect(server.addr); // the kernel completes the handshake
        third.write_all(b"third").unwrap(); // and ACKs its bytes
        assert!(
            unanswered(&mut third, STALL),
            "{dispatch:?}: client 3 was served"
        );
        // Where it waits is the difference between the two dispatch styles.
        let accepted = server.cx.counters.accepted.load(Relaxed);
        match dispatch {
            Dispatch::Queue => assert_eq!(accepted, 3, "queued: accepted by us, unserved"),
            Dispatch::Accept => assert_eq!(accepted, 2, "in the kernel's backlog"),
        }

        drop(first);
        let mut reply = [0u8; 5];
        third.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"THIRD");
        drop((second, third));
        server.stop();
    }
}

/// With one worker busy and the queue (capacity 1) full, the acceptor blocks on
/// the channel and stops accepting; shutdown still ends `serve` within grace.
#[test]
fn a_full_queue_stops_accepting_and_still_shuts_down() {
    let config = Config {
        grace: Duration::from_millis(200),
        ..Config::default()
    };
    let server = start(config, options(1, Dispatch::Queue));
    let mut busy = connect(server.addr);
    assert_eq!(round_trip(&mut busy, b"x"), b"X");
    let queued = connect(server.addr); // waits in the channel
    let held = connect(server.addr); // accepted; the acceptor blocks sending it
    let backlog = connect(server.addr); // never accepted
    let deadline = Instant::now() + IO_TIMEOUT;
    while server.cx.counters.accepted.load(Relaxed) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.cx.counters.accepted.load(Relaxed), 3);

    let took = server.stop();
    assert!(
        took < Duration::from_secs(1),
        "serve took {took:?} to return"
    );
    drop((busy, queued, held, backlog));
}

/// `max_conns` caps live clients below the pool size: past it, clients wait.
#[test]
fn max_conns_caps_clients_below_the_pool_size() {
    let config = Config {
        max_conns: 1,
        ..Config::default()
    };
    let server = start(config, options(4, Dispatch::Queue));
    let mut first = connect(server.addr);
    assert_eq!(round_trip(&mut first, b"one"), b"ONE");
    let mut second = connect(server.addr);
    second.write_all(b"two").unwrap();
    assert!(unanswered(&mut second, STALL));
    drop(first);
    let mut reply = [0u8; 3];
    second.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"TWO");
    drop(second);
    server.stop();
}

/// After shutdown, a client mid-conversation is still served until it leaves,
/// and the counters balance (every opened connection is closed).
#[test]
fn shutdown_lets_a_client_in_flight_finish() {
    for dispatch in [Dispatch::Queue, Dispatch::Accept] {
        let server = start(Config::default(), options(2, dispatch));
        let mut client = connect(server.addr);
        assert_eq!(round_trip(&mut client, b"before"), b"BEFORE");
        server.cx.shutdown.trigger();
        std::thread::sleep(Duration::from_millis(150)); // the acceptor has stopped
        assert_eq!(round_trip(&mut client, b"after"), b"AFTER");
        drop(client);
        let counters = server.cx.counters;
        let took = server.stop();
        assert!(took < Duration::from_secs(2), "serve took {took:?}");
        assert_eq!(counters.active(), 0);
        assert_eq!(counters.accepted.load(Relaxed), 1);
    }
}

/// An idle client past the grace period does not keep `serve` from returning.
#[test]
fn shutdown_returns_after_grace_despite_an_idle_client() {
    let config = Config {
        grace: Duration::from_millis(200),
        ..Config::default()
    };
    for dispatch in [Dispatch::Queue, Dispatch::Accept] {
        let server = start(config.clone(), options(2, dispatch));
        let mut idle = connect(server.addr);
        assert_eq!(round_trip(&mut idle, b"i"), b"I");
        let took = server.stop();
        assert!(
            took >= Duration::from_millis(200),
            "returned before grace: {took:?}"
        );
        assert!(took < Duration::from_secs(1), "serve took {took:?}");
        drop(idle);
    }
}

/// N workers share one UDP socket; every datagram is answered, whole.
#[test]
fn udp_workers_share_one_socket() {
    let server = TestServer::udp(Config::default(), move |socket, cx| {
        socklab_pool::serve_udp(socket, cx, &options(3, Dispatch::Queue))
    });
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = [0u8; 64];
    for i in 0..10 {
        let msg = format!("datagram {i}");
        client.send_to(msg.as_bytes(), server.addr).unwrap();
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], msg.to_uppercase().as_bytes());
    }
    let took = server.stop();
    assert!(took < Duration::from_secs(1), "serve_udp took {took:?}");
}

/// Zero workers is a configuration error, not a server that never answers.
#[test]
fn zero_workers_is_an_error() {
    let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), BindOptions::default()).unwrap();
    let cx = Context::new(Config::default()).unwrap();
    let err = socklab_pool::serve(listener, &cx, &options(0, Dispatch::Queue)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

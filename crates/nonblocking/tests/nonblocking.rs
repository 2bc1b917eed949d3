//! What is specific to the readiness loop: partial writes and backpressure,
//! timers that overlap, the connection cap, several loops, shutdown with idle
//! clients. (The shared conformance suite covers the service itself.)

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::Instant;

use socklab_nonblocking::{serve, serve_udp, Options, MAX_PENDING_OUTPUT};
use socklab_protocol::{Framing, Work};
use socklab_server_kit::testing::{
    assert_cap_holds_until_a_client_leaves, assert_idle_client_disconnected,
    assert_reply_in_flight_survives_shutdown, assert_shutdown_closes_idle_clients_after_grace,
    assert_sleep_work_overlaps, connect, ms, read_n, TestServer, IO_TIMEOUT,
};
use socklab_server_kit::{bind_tcp, BindOptions, Config};

fn start(config: Config, options: Options) -> TestServer {
    TestServer::tcp(config, move |listener, cx| serve(listener, cx, &options))
}

fn start_on(listener: TcpListener, config: Config, options: Options) -> TestServer {
    TestServer::tcp_on(listener, config, move |listener, cx| {
        serve(listener, cx, &options)
    })
}

fn config(framing: Framing, work: Work) -> Config {
    Config {
        framing,
        work,
        grace: ms(500),
        ..Config::default()
    }
}

/// A reply larger than the socket buffers is written across many partial writes,
/// whole and in order, to a client that reads slowly.
#[test]
fn partial_writes_keep_the_unsent_tail() {
    let server = start(config(Framing::Raw, Work::None), Options::default());
    let mut client = connect(server.addr);
    let sent: Vec<u8> = (0..4 * 1024 * 1024).map(|i| b"abcdefgh"[i % 8]).collect();
    let writer = {
        let mut client = client.try_clone().unwrap();
        let sent = sent.clone();
        thread::spawn(move || client.write_all(&sent).unwrap())
    };
    thread::sleep(ms(100)); // let the server's writes hit a full buffer
    let got = read_n(&mut client, sent.len());
    writer.join().unwrap();
    assert!(got == sent.to_ascii_uppercase(), "reply differs");
    drop(client);
    server.stop();
}

/// A client that sends 32 MiB and never reads stalls: the server stops reading it
/// (it holds at most about MAX_PENDING_OUTPUT), and other clients are still served.
#[test]
fn backpressure_bounds_what_a_client_that_never_reads_costs() {
    let server = start(config(Framing::Raw, Work::None), Options::default());
    let mut flooder = connect(server.addr);
    flooder.set_write_timeout(Some(ms(300))).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0usize;
    while sent < 32 * 1024 * 1024 {
        match flooder.write(&chunk) {
            Ok(n) => sent += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => panic!("flood write: {e}"),
        }
    }
    assert!(
        sent < 32 * 1024 * 1024,
        "the server read all 32 MiB: no backpressure"
    );
    let counters = server.cx.counters.snapshot();
    let held = counters.bytes_in - counters.bytes_out;
    let bound = (MAX_PENDING_OUTPUT + socklab_server_kit::READ_BUF) as u64;
    assert!(held <= bound, "server holds {held} bytes, bound {bound}");

    let mut other = connect(server.addr);
    other.write_all(b"still served").unwrap();
    assert_eq!(read_n(&mut other, 12), b"STILL SERVED");
    drop((flooder, other));
    server.stop();
}

/// `sleep` work is a timer: B's reply comes one `sleep` after B's request although
/// A's was still running when B asked — the waits overlap.
#[test]
fn sleep_work_overlaps_across_clients() {
    let sleep = ms(400);
    let server = start(
        config(Framing::Lines, Work::Sleep(sleep)),
        Options::default(),
    );
    assert_sleep_work_overlaps(server.addr, sleep, "nonblocking");
    server.stop();
}

/// Pipelined requests on one connection with `sleep` work come back in order.
#[test]
fn held_replies_stay_in_order() {
    let server = start(
        config(Framing::Lines, Work::Sleep(ms(30))),
        Options::default(),
    );
    let mut client = connect(server.addr);
    for line in [&b"one\n"[..], b"two\n", b"three\n"] {
        client.write_all(line).unwrap();
        thread::sleep(ms(5));
    }
    assert_eq!(read_n(&mut client, 14), b"ONE\nTWO\nTHREE\n");
    drop(client);
    server.stop();
}

/// Past max_conns the loop stops accepting; the waiting client is served when one leaves.
#[test]
fn max_conns_waits_for_a_client_to_leave() {
    let mut cfg = config(Framing::Raw, Work::None);
    cfg.max_conns = 1;
    let server = start(cfg, Options::default());
    assert_cap_holds_until_a_client_leaves(server.addr, "nonblocking");
    server.stop();
}

/// A client silent for the idle timeout is disconnected by the timer.
#[test]
fn idle_clients_are_disconnected() {
    let mut cfg = config(Framing::Raw, Work::None);
    cfg.idle_timeout = Some(ms(200));
    let server = start(cfg, Options::default());
    assert_idle_client_disconnected(server.addr, ms(200), "nonblocking");
    server.stop();
}

/// Two loops on SO_REUSEPORT listeners, and two loops sharing one listener, both
/// serve every client.
#[test]
fn two_loops_serve_with_and_without_reuse_port() {
    for reuse_port in [true, false] {
        let options = BindOptions {
            reuse_port,
            ..BindOptions::default()
        };
        let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), options).unwrap();
        let server = start_on(
            listener,
            config(Framing::Raw, Work::None),
            Options { loops: 2 },
        );
        let mut clients: Vec<TcpStream> = (0..16).map(|_| connect(server.addr)).collect();
        for (i, client) in clients.iter_mut().enumerate() {
            client
                .write_all(format!("client {i:02}").as_bytes())
                .unwrap();
        }
        for (i, client) in clients.iter_mut().enumerate() {
            assert_eq!(read_n(client, 9), format!("CLIENT {i:02}").as_bytes());
        }
        assert_eq!(server.cx.counters.snapshot().accepted, 16);
        drop(clients);
        server.stop();
    }
}

/// Shutdown with idle clients (two loops): accepting stops at once, serve returns
/// after the grace period, and the clients are then closed.
#[test]
fn shutdown_with_idle_clients_returns_within_grace() {
    let server = start(config(Framing::Raw, Work::None), Options { loops: 2 });
    assert_shutdown_closes_idle_clients_after_grace(server, "nonblocking");
}

/// A reply held by a `sleep` timer when shutdown comes is still delivered.
#[test]
fn shutdown_delivers_replies_in_flight() {
    let server = start(
        config(Framing::Raw, Work::Sleep(ms(200))),
        Options::default(),
    );
    assert_reply_in_flight_survives_shutdown(server, "nonblocking");
}

/// UDP: datagrams answered whole, and `sleep` work overlaps across clients there too.
#[test]
fn udp_echoes_and_overlaps_sleep_work() {
    let server = TestServer::udp(
        config(Framing::Raw, Work::Sleep(ms(200))),
        move |socket, cx| serve_udp(socket, cx, &Options::default()),
    );
    let addr = server.addr;
    let clients: Vec<UdpSocket> = (0..4)
        .map(|_| {
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            c
        })
        .collect();
    let t0 = Instant::now();
    let big = vec![b'q'; 60_000];
    for (i, c) in clients.iter().enumerate() {
        let msg = if i == 0 {
            big.clone()
        } else {
            format!("dgram {i}").into_bytes()
        };
        c.send_to(&msg, addr).unwrap();
    }
    let mut buf = vec![0u8; 65_536];
    for (i, c) in clients.iter().enumerate() {
        let (n, _) = c.recv_from(&mut buf).unwrap();
        let expected = if i == 0 {
            big.to_ascii_uppercase()
        } else {
            format!("DGRAM {i}").into_bytes()
        };
        assert!(buf[..n] == expected[..], "datagram {i} differs");
    }
    let took = t0.elapsed();
    assert!(
        took >= ms(195) && took < ms(500),
        "four 200 ms replies took {took:?}"
    );
    // Counted just after each sendto(), so possibly after the client read it.
    let counted = Instant::now() + IO_TIMEOUT;
    while server.cx.counters.requests.load(Relaxed) < 4 && Instant::now() < counted {
        thread::sleep(ms(1));
    }
    assert_eq!(server.cx.counters.requests.load(Relaxed), 4);
    server.cx.shutdown.trigger();
    server.join_within(ms(1500));
}

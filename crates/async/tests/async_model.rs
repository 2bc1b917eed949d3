//! What is specific to the tokio model, under both runtimes: timers that
//! overlap, cpu work that stalls a current-thread runtime, the connection cap,
//! idle timeout, shutdown. (The shared conformance suite covers the service itself.)

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::Instant;

use socklab_async::{serve, serve_udp, Options, Runtime};
use socklab_protocol::{Framing, Work};
use socklab_server_kit::testing::{assert_eof, connect, ms, read_n, TestServer, IO_TIMEOUT};
use socklab_server_kit::Config;

const RUNTIMES: [Runtime; 2] = [Runtime::MultiThread, Runtime::CurrentThread];

fn start(config: Config, runtime: Runtime) -> TestServer {
    TestServer::tcp(config, move |listener, cx| {
        serve(listener, cx, &Options { runtime })
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

/// `sleep` work parks the task, not the thread: B's reply comes ~400 ms after
/// B's request although A's 400 ms was still running — even on one thread.
#[test]
fn sleep_work_overlaps_across_clients() {
    for runtime in RUNTIMES {
        let server = start(config(Framing::Lines, Work::Sleep(ms(400))), runtime);
        let mut a = connect(server.addr);
        let mut b = connect(server.addr);
        let a_sent = Instant::now();
        a.write_all(b"a\n").unwrap();
        thread::sleep(ms(50));
        let b_sent = Instant::now();
        b.write_all(b"b\n").unwrap();
        assert_eq!(read_n(&mut b, 2), b"B\n");
        let b_took = b_sent.elapsed();
        assert_eq!(read_n(&mut a, 2), b"A\n");
        let a_took = a_sent.elapsed();
        assert!(
            a_took >= ms(395),
            "{runtime:?}: A answered too early: {a_took:?}"
        );
        assert!(
            b_took >= ms(395),
            "{runtime:?}: B answered too early: {b_took:?}"
        );
        assert!(b_took < ms(600), "{runtime:?}: B waited for A: {b_took:?}");
        drop((a, b));
        server.stop();
    }
}

/// `cpu` work blocks the thread it runs on: on a current-thread runtime, B's
/// request waits for A's 300 ms spin to finish before its own 300 ms begins
/// (~550 ms after B's request, not ~300).
#[test]
fn cpu_work_stalls_a_current_thread_runtime() {
    let server = start(
        config(Framing::Lines, Work::Cpu(ms(300))),
        Runtime::CurrentThread,
    );
    let mut a = connect(server.addr);
    let mut b = connect(server.addr);
    a.write_all(b"a\n").unwrap();
    thread::sleep(ms(50));
    let b_sent = Instant::now();
    b.write_all(b"b\n").unwrap();
    assert_eq!(read_n(&mut b, 2), b"B\n");
    let b_took = b_sent.elapsed();
    assert_eq!(read_n(&mut a, 2), b"A\n");
    assert!(b_took >= ms(450), "B did not wait for A's spin: {b_took:?}");
    drop((a, b));
    server.stop();
}

/// Past max_conns the accept loop waits for a free slot; the waiting client is
/// served when one leaves.
#[test]
fn max_conns_waits_for_a_client_to_leave() {
    for runtime in RUNTIMES {
        let mut cfg = config(Framing::Raw, Work::None);
        cfg.max_conns = 1;
        let server = start(cfg, runtime);
        let mut first = connect(server.addr);
        first.write_all(b"a").unwrap();
        assert_eq!(read_n(&mut first, 1), b"A");
        let mut second = connect(server.addr); // completes in the kernel's backlog
        second.write_all(b"b").unwrap();
        second.set_read_timeout(Some(ms(200))).unwrap();
        let mut byte = [0u8; 1];
        assert!(
            second.read(&mut byte).is_err(),
            "{runtime:?}: served past max_conns"
        );
        drop(first);
        second.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        assert_eq!(read_n(&mut second, 1), b"B");
        drop(second);
        server.stop();
    }
}

/// A client silent for the idle timeout is disconnected.
#[test]
fn idle_clients_are_disconnected() {
    for runtime in RUNTIMES {
        let mut cfg = config(Framing::Raw, Work::None);
        cfg.idle_timeout = Some(ms(200));
        let server = start(cfg, runtime);
        let mut client = connect(server.addr);
        client.write_all(b"x").unwrap();
        assert_eq!(read_n(&mut client, 1), b"X");
        let t0 = Instant::now();
        assert_eof(&mut client);
        let silent = t0.elapsed();
        assert!(
            silent >= ms(150) && silent < ms(1000),
            "{runtime:?}: closed after {silent:?}"
        );
        let counters = server.cx.counters;
        assert!(
            counters.wait_idle(Instant::now() + IO_TIMEOUT),
            "{runtime:?}: still counted active"
        );
        server.stop();
    }
}

/// Shutdown with idle clients: accepting stops at once, serve returns within the
/// grace period (plus a margin), and the clients are then closed.
#[test]
fn shutdown_with_idle_clients_returns_within_grace() {
    for runtime in RUNTIMES {
        let server = start(config(Framing::Raw, Work::None), runtime);
        let addr = server.addr;
        let mut idle: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
        for client in &mut idle {
            client.write_all(b"hi").unwrap();
            assert_eq!(read_n(client, 2), b"HI");
        }
        let grace = server.cx.config.grace;
        let counters = server.cx.counters;
        let took = server.stop();
        assert!(
            took >= grace - ms(50),
            "{runtime:?}: returned before the grace period: {took:?}"
        );
        assert!(
            took < grace + ms(500),
            "{runtime:?}: took {took:?}, grace {grace:?}"
        );
        for client in &mut idle {
            assert_eof(client);
        }
        assert_eq!(
            counters.active(),
            0,
            "{runtime:?}: cancelled tasks not counted closed"
        );
        assert!(
            TcpStream::connect_timeout(&addr, IO_TIMEOUT).is_err(),
            "{runtime:?}: still accepting"
        );
    }
}

/// A reply whose `sleep` is running when shutdown comes is still delivered.
#[test]
fn shutdown_delivers_replies_in_flight() {
    for runtime in RUNTIMES {
        let server = start(config(Framing::Raw, Work::Sleep(ms(200))), runtime);
        let mut client = connect(server.addr);
        client.write_all(b"late").unwrap();
        thread::sleep(ms(50));
        server.cx.shutdown.trigger();
        assert_eq!(read_n(&mut client, 4), b"LATE");
        drop(client);
        server.join_within(ms(1000));
    }
}

/// UDP on both runtimes: datagrams answered whole, and `sleep` work overlaps.
#[test]
fn udp_echoes_and_overlaps_sleep_work() {
    for runtime in RUNTIMES {
        let server = TestServer::udp(
            config(Framing::Raw, Work::Sleep(ms(200))),
            move |socket, cx| serve_udp(socket, cx, &Options { runtime }),
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
        let message = |i: usize| {
            if i == 0 {
                big.clone()
            } else {
                format!("dgram {i}").into_bytes()
            }
        };
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&message(i), addr).unwrap();
        }
        let mut buf = vec![0u8; 65_536];
        for (i, c) in clients.iter().enumerate() {
            let (n, _) = c.recv_from(&mut buf).unwrap();
            assert!(
                buf[..n] == message(i).to_ascii_uppercase(),
                "{runtime:?}: datagram {i} differs"
            );
        }
        let took = t0.elapsed();
        assert!(
            took >= ms(195) && took < ms(500),
            "{runtime:?}: four 200 ms replies took {took:?}"
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
}

//! What is specific to the tokio model, under both runtimes: timers that
//! overlap, cpu work that stalls a current-thread runtime, the connection cap,
//! idle timeout, shutdown. (The shared conformance suite covers the service itself.)

use std::net::UdpSocket;
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::Instant;

use socklab_async::{serve, serve_udp, Options, Runtime};
use socklab_protocol::{Framing, Work};
use socklab_server_kit::testing::{
    assert_cap_holds_until_a_client_leaves, assert_idle_client_disconnected,
    assert_reply_in_flight_survives_shutdown, assert_shutdown_closes_idle_clients_after_grace,
    assert_sleep_work_overlaps, ms, staggered_pair, TestServer, IO_TIMEOUT,
};
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

/// `sleep` work parks the task, not the thread: B's reply comes one `sleep` after
/// B's request although A's was still running — even on one thread.
#[test]
fn sleep_work_overlaps_across_clients() {
    let sleep = ms(400);
    for runtime in RUNTIMES {
        let server = start(config(Framing::Lines, Work::Sleep(sleep)), runtime);
        assert_sleep_work_overlaps(server.addr, sleep, &format!("{runtime:?}"));
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
    let (_, b_took) = staggered_pair(server.addr);
    assert!(b_took >= ms(450), "B did not wait for A's spin: {b_took:?}");
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
        assert_cap_holds_until_a_client_leaves(server.addr, &format!("{runtime:?}"));
        server.stop();
    }
}

/// A client silent for the idle timeout is disconnected, and no longer counted.
#[test]
fn idle_clients_are_disconnected() {
    for runtime in RUNTIMES {
        let mut cfg = config(Framing::Raw, Work::None);
        cfg.idle_timeout = Some(ms(200));
        let server = start(cfg, runtime);
        assert_idle_client_disconnected(server.addr, ms(200), &format!("{runtime:?}"));
        let counters = server.cx.counters;
        assert!(
            counters.wait_idle(Instant::now() + IO_TIMEOUT),
            "{runtime:?}: still counted active"
        );
        server.stop();
    }
}

/// Shutdown with idle clients: accepting stops at once, serve returns after the
/// grace period, and the cancelled tasks' clients are closed and counted closed.
#[test]
fn shutdown_with_idle_clients_returns_within_grace() {
    for runtime in RUNTIMES {
        let server = start(config(Framing::Raw, Work::None), runtime);
        assert_shutdown_closes_idle_clients_after_grace(server, &format!("{runtime:?}"));
    }
}

/// A reply whose `sleep` is running when shutdown comes is still delivered.
#[test]
fn shutdown_delivers_replies_in_flight() {
    for runtime in RUNTIMES {
        let server = start(config(Framing::Raw, Work::Sleep(ms(200))), runtime);
        assert_reply_in_flight_survives_shutdown(server, &format!("{runtime:?}"));
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

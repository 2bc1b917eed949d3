//! What is specific to the io_uring model: completions, partial sends,
//! backpressure, timers on the ring, multishot accept and the cap, shutdown with
//! operations in flight, `--loops`. Every test skips, saying why, where the
//! kernel refuses io_uring.

use std::io::{self, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use socklab_protocol::{Framing, Work, MAX_UDP_PAYLOAD};
use socklab_server_kit::testing::{
    assert_cap_holds_until_a_client_leaves, assert_closed, assert_idle_client_disconnected,
    assert_shutdown_closes_idle_clients_after_grace, assert_sleep_work_overlaps, connect,
    TestServer, IO_TIMEOUT,
};
use socklab_server_kit::{bind_tcp, bind_udp, BindOptions, Config};
use socklab_uring::Options;

macro_rules! require_uring {
    () => {
        if let Err(why) = socklab_uring::availability() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

/// Each of `--loops N` gets its own `SO_REUSEPORT` socket, cloned from this one.
fn bind_options(options: &Options) -> BindOptions {
    BindOptions {
        reuse_port: options.loops > 1,
        ..BindOptions::default()
    }
}

fn tcp(config: Config, options: Options) -> TestServer {
    let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), bind_options(&options)).unwrap();
    TestServer::tcp_on(listener, config, move |listener, cx| {
        socklab_uring::serve(listener, cx, &options)
    })
}

fn udp(config: Config, options: Options) -> TestServer {
    let socket = bind_udp("127.0.0.1:0".parse().unwrap(), bind_options(&options)).unwrap();
    TestServer::udp_on(socket, config, move |socket, cx| {
        socklab_uring::serve_udp(socket, cx, &options)
    })
}

fn lines_config() -> Config {
    Config {
        framing: Framing::Lines,
        ..Config::default()
    }
}

/// A client that writes and never reads stops being read: its writes stall at a
/// bounded amount, the server keeps serving others meanwhile, and shutdown
/// cancels its stuck send after the grace period.
#[test]
fn a_client_that_never_reads_is_held_back() {
    require_uring!();
    const CEILING: usize = 64 << 20;
    let grace = Duration::from_millis(200);
    let config = Config {
        grace,
        ..Config::default()
    };
    let server = tcp(config, Options::default());
    // Fixed small client buffers (no autotuning) so the stall comes quickly.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 << 10).unwrap();
    socket.set_send_buffer_size(64 << 10).unwrap();
    socket
        .connect_timeout(&server.addr.into(), IO_TIMEOUT)
        .unwrap();
    let mut hog: TcpStream = socket.into();
    hog.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let chunk = vec![b'a'; 64 << 10];
    let mut written = 0;
    let stalled = loop {
        match hog.write(&chunk) {
            Ok(n) => written += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break true
            }
            Err(e) => panic!("write failed: {e}"),
        }
        if written > CEILING {
            break false;
        }
    };
    assert!(
        stalled,
        "the server read {written} bytes from a client that never reads"
    );
    let mut other = connect(server.addr);
    other.write_all(b"still here").unwrap();
    let mut reply = [0u8; 10];
    other.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"STILL HERE");
    drop(other);
    // Shutdown with the hog's send stuck in the kernel: cancelled after the grace period.
    let took = server.stop();
    assert!(took < grace + Duration::from_millis(700), "took {took:?}");
    drop(hog);
}

/// `sleep` work runs on a timer: B's reply comes one `sleep` after B's request
/// though A's was sent 50 ms earlier.
#[test]
fn sleep_work_overlaps_across_clients() {
    require_uring!();
    let sleep = Duration::from_millis(200);
    let config = Config {
        work: Work::Sleep(sleep),
        ..lines_config()
    };
    let server = tcp(config, Options::default());
    assert_sleep_work_overlaps(server.addr, sleep, "uring");
    server.stop();
}

/// UDP: each datagram comes back uppercased and whole, 65,507 bytes and empty included.
#[test]
fn udp_echoes_whole_datagrams() {
    require_uring!();
    let server = udp(Config::default(), Options::default());
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    client.connect(server.addr).unwrap();
    let big: Vec<u8> = (0..MAX_UDP_PAYLOAD)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let mut buf = vec![0u8; MAX_UDP_PAYLOAD + 1];
    for datagram in [b"hello".as_slice(), &big, b""] {
        client.send(datagram).unwrap();
        let n = recv_retrying(&client, &mut buf);
        assert_eq!(n, datagram.len());
        assert!(buf[..n] == datagram.to_ascii_uppercase());
    }
    server.stop();
}

/// Shutdown with idle clients still connected returns after the grace period, and
/// the clients see their connections closed.
#[test]
fn shutdown_with_idle_clients_returns_after_grace() {
    require_uring!();
    let config = Config {
        grace: Duration::from_millis(300),
        ..Config::default()
    };
    assert_shutdown_closes_idle_clients_after_grace(tcp(config, Options::default()), "uring");
}

/// Two loops, each with its own SO_REUSEPORT listener (and UDP socket), serve clients.
#[test]
fn two_loops_serve_tcp_and_udp() {
    require_uring!();
    let server = tcp(Config::default(), Options { loops: 2 });
    let mut clients: Vec<TcpStream> = (0..16).map(|_| connect(server.addr)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.write_all(format!("client {i}").as_bytes()).unwrap();
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let want = format!("CLIENT {i}");
        let mut reply = vec![0u8; want.len()];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(reply, want.as_bytes());
    }
    drop(clients);
    server.stop();

    let server = udp(Config::default(), Options { loops: 2 });
    for i in 0..8 {
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        client
            .send_to(format!("d{i}").as_bytes(), server.addr)
            .unwrap();
        let mut buf = [0u8; 16];
        let n = recv_retrying(&client, &mut buf);
        assert_eq!(&buf[..n], format!("D{i}").as_bytes());
    }
    server.stop();
}

/// `recv`, again if a signal interrupted it: this test thread sees an occasional
/// EINTR beside the server's rings (as `testing::assert_closed` notes), which
/// is no answer from the server.
fn recv_retrying(socket: &UdpSocket, buf: &mut [u8]) -> usize {
    loop {
        match socket.recv(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.unwrap(),
        }
    }
}

/// Past max_conns the next client is not served until one leaves (multishot
/// accept is cancelled at the cap), then it is.
#[test]
fn max_conns_holds_the_next_client_until_one_leaves() {
    require_uring!();
    let config = Config {
        max_conns: 1,
        ..Config::default()
    };
    let server = tcp(config, Options::default());
    assert_cap_holds_until_a_client_leaves(server.addr, "uring");
    server.stop();
}

/// A client silent for the idle timeout is disconnected (a timeout linked to its recv).
#[test]
fn an_idle_client_is_disconnected() {
    require_uring!();
    let idle = Duration::from_millis(200);
    let config = Config {
        idle_timeout: Some(idle),
        ..Config::default()
    };
    let server = tcp(config, Options::default());
    assert_idle_client_disconnected(server.addr, idle, "uring");
    server.stop();
}

/// A burst of connections past max_conns: exactly max_conns are served at once
/// (those a multishot accept took past the cap wait unserved), the rest are
/// served as slots free.
#[test]
fn a_burst_past_max_conns_is_served_max_conns_at_a_time() {
    require_uring!();
    const CAP: usize = 2;
    let config = Config {
        max_conns: CAP,
        ..Config::default()
    };
    let server = tcp(config, Options::default());
    let mut clients: Vec<TcpStream> = (0..6).map(|_| connect(server.addr)).collect();
    for client in &mut clients {
        client.write_all(b"q").unwrap();
    }
    let mut waiting = clients;
    let mut rounds = 0;
    while !waiting.is_empty() {
        std::thread::sleep(Duration::from_millis(100));
        let mut served = Vec::new();
        for (i, client) in waiting.iter_mut().enumerate() {
            client
                .set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let mut reply = [0u8; 1];
            if client.read(&mut reply).is_ok() {
                assert_eq!(&reply, b"Q");
                served.push(i);
            }
        }
        assert!(
            served.len() <= CAP,
            "{} served at once past max_conns {CAP}",
            served.len()
        );
        // Leaving frees the slots for the next ones.
        for i in served.into_iter().rev() {
            waiting.remove(i);
        }
        rounds += 1;
        assert!(rounds < 20, "clients past the cap were never served");
    }
    server.stop();
}

/// Shutdown cancels a `sleep` timer still running after the grace period, and
/// returns without waiting for it.
#[test]
fn shutdown_cancels_work_timers_after_grace() {
    require_uring!();
    let grace = Duration::from_millis(200);
    let config = Config {
        grace,
        work: Work::Sleep(Duration::from_secs(30)),
        ..lines_config()
    };
    let server = tcp(config, Options::default());
    let mut client = connect(server.addr);
    client.write_all(b"slow\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let took = server.stop();
    assert!(
        took >= grace && took < grace + Duration::from_millis(700),
        "took {took:?}"
    );
    assert_closed(&mut client);
}

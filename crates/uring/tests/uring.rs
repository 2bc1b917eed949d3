//! What is specific to the io_uring model: completions, partial sends,
//! backpressure, timers on the ring, multishot accept and the cap, shutdown with
//! operations in flight, `--loops`. Every test skips, saying why, where the
//! kernel refuses io_uring.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socklab_protocol::{Framing, Work, MAX_UDP_PAYLOAD};
use socklab_server_kit::{bind_tcp, bind_udp, BindOptions, Config, Context};
use socklab_uring::Options;

/// Every blocking read, write and connect in these tests gives up after this.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

macro_rules! require_uring {
    () => {
        if let Err(why) = socklab_uring::availability() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

struct Server {
    addr: SocketAddr,
    cx: Context,
    handle: Option<JoinHandle<io::Result<()>>>,
}

impl Server {
    fn tcp(config: Config, options: Options) -> Server {
        let bind = BindOptions {
            reuse_port: options.loops > 1,
            ..BindOptions::default()
        };
        let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), bind).unwrap();
        let addr = listener.local_addr().unwrap();
        let cx = Context::new(config).unwrap();
        let server_cx = cx.clone();
        let handle =
            std::thread::spawn(move || socklab_uring::serve(listener, &server_cx, &options));
        Server {
            addr,
            cx,
            handle: Some(handle),
        }
    }

    fn udp(config: Config, options: Options) -> Server {
        let bind = BindOptions {
            reuse_port: options.loops > 1,
            ..BindOptions::default()
        };
        let socket = bind_udp("127.0.0.1:0".parse().unwrap(), bind).unwrap();
        let addr = socket.local_addr().unwrap();
        let cx = Context::new(config).unwrap();
        let server_cx = cx.clone();
        let handle =
            std::thread::spawn(move || socklab_uring::serve_udp(socket, &server_cx, &options));
        Server {
            addr,
            cx,
            handle: Some(handle),
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    }

    /// Triggers shutdown, waits for `serve` to return Ok, and says how long it took.
    fn stop(mut self) -> Duration {
        let started = Instant::now();
        self.cx.shutdown.trigger();
        self.handle.take().unwrap().join().unwrap().unwrap();
        started.elapsed()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.cx.shutdown.trigger();
            let _ = handle.join();
        }
    }
}

fn lines_config() -> Config {
    Config {
        framing: Framing::Lines,
        ..Config::default()
    }
}

/// Asserts the server closed the connection (EOF or reset), not merely went quiet.
fn assert_closed(stream: &mut TcpStream) {
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return,
            // A signal landed on this thread mid-read (nextest, or io_uring's task
            // work); not an answer from the server.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => panic!("expected the connection closed, got {other:?}"),
        }
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
    let server = Server::tcp(config, Options::default());
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
    let mut other = server.connect();
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

/// `sleep` work runs on a timer: B's reply comes ~200 ms after B's request even
/// though A's 200 ms request was sent 50 ms earlier (not ~350-400 ms).
#[test]
fn sleep_work_overlaps_across_clients() {
    require_uring!();
    let config = Config {
        work: Work::Sleep(Duration::from_millis(200)),
        ..lines_config()
    };
    let server = Server::tcp(config, Options::default());
    let (mut a, mut b) = (server.connect(), server.connect());
    let a_sent = Instant::now();
    a.write_all(b"a\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let b_sent = Instant::now();
    b.write_all(b"b\n").unwrap();
    let mut reply = [0u8; 2];
    b.read_exact(&mut reply).unwrap();
    let b_took = b_sent.elapsed();
    assert_eq!(&reply, b"B\n");
    a.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"A\n");
    assert!(a_sent.elapsed() >= Duration::from_millis(200));
    assert!(
        b_took >= Duration::from_millis(190),
        "B answered before its sleep: {b_took:?}"
    );
    assert!(
        b_took < Duration::from_millis(330),
        "B waited behind A: {b_took:?}"
    );
    drop((a, b));
    server.stop();
}

/// UDP: each datagram comes back uppercased and whole, 65,507 bytes and empty included.
#[test]
fn udp_echoes_whole_datagrams() {
    require_uring!();
    let server = Server::udp(Config::default(), Options::default());
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    client.connect(server.addr).unwrap();
    let big: Vec<u8> = (0..MAX_UDP_PAYLOAD)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let mut buf = vec![0u8; MAX_UDP_PAYLOAD + 1];
    for datagram in [b"hello".as_slice(), &big, b""] {
        client.send(datagram).unwrap();
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(n, datagram.len());
        assert!(buf[..n] == datagram.to_ascii_uppercase());
    }
    server.stop();
}

/// Shutdown with an idle client still connected returns within the grace period
/// plus a margin, and the client sees its connection closed.
#[test]
fn shutdown_with_an_idle_client_returns_after_grace() {
    require_uring!();
    let grace = Duration::from_millis(300);
    let config = Config {
        grace,
        ..Config::default()
    };
    let server = Server::tcp(config, Options::default());
    let mut client = server.connect();
    client.write_all(b"x").unwrap();
    let mut reply = [0u8; 1];
    client.read_exact(&mut reply).unwrap();
    let took = server.stop();
    assert!(took >= grace, "returned before the grace period: {took:?}");
    assert!(took < grace + Duration::from_millis(700), "took {took:?}");
    assert_closed(&mut client);
}

/// Two loops, each with its own SO_REUSEPORT listener (and UDP socket), serve clients.
#[test]
fn two_loops_serve_tcp_and_udp() {
    require_uring!();
    let server = Server::tcp(Config::default(), Options { loops: 2 });
    let mut clients: Vec<TcpStream> = (0..16).map(|_| server.connect()).collect();
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

    let server = Server::udp(Config::default(), Options { loops: 2 });
    for i in 0..8 {
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        client
            .send_to(format!("d{i}").as_bytes(), server.addr)
            .unwrap();
        let mut buf = [0u8; 16];
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("D{i}").as_bytes());
    }
    server.stop();
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
    let server = Server::tcp(config, Options::default());
    let mut first = server.connect();
    first.write_all(b"a").unwrap();
    let mut reply = [0u8; 1];
    first.read_exact(&mut reply).unwrap();
    let mut second = server.connect();
    second.write_all(b"b").unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(second.read(&mut reply).is_err(), "served past max_conns");
    drop(first);
    second.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    second.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"B");
    drop(second);
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
    let server = Server::tcp(config, Options::default());
    let mut client = server.connect();
    client.write_all(b"x").unwrap();
    let mut reply = [0u8; 1];
    client.read_exact(&mut reply).unwrap();
    let started = Instant::now();
    assert_closed(&mut client);
    let took = started.elapsed();
    assert!(
        took >= idle - Duration::from_millis(20) && took < Duration::from_secs(2),
        "{took:?}"
    );
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
    let server = Server::tcp(config, Options::default());
    let mut clients: Vec<TcpStream> = (0..6).map(|_| server.connect()).collect();
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
    let server = Server::tcp(config, Options::default());
    let mut client = server.connect();
    client.write_all(b"slow\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let took = server.stop();
    assert!(
        took >= grace && took < grace + Duration::from_millis(700),
        "took {took:?}"
    );
    assert_closed(&mut client);
}

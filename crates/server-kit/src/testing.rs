//! An in-process server for the model crates' own tests (feature `testing`).
//!
//! The shared conformance suite runs every model through the `socklab` binary;
//! what is specific to one model (its timers, its backpressure, its dispatch) is
//! tested in that crate against `serve` called in-process. This is the harness
//! those tests share: a server on `127.0.0.1:0` in a thread, stopped by its
//! [`Shutdown`](crate::Shutdown), and clients with timeouts on every call.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::{bind_tcp, bind_udp, BindOptions, Config, Context};

/// Longest any single blocking read, write or connect in a test may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A model's `serve` running on a thread of the test process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub cx: Context,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    /// Serves TCP on an ephemeral loopback port.
    pub fn tcp<F>(config: Config, serve: F) -> TestServer
    where
        F: FnOnce(TcpListener, &Context) -> io::Result<()> + Send + 'static,
    {
        let listener = bind_tcp(loopback(), BindOptions::default()).expect("bind TCP");
        TestServer::tcp_on(listener, config, serve)
    }

    /// Serves TCP on a listener the test made (e.g. with `SO_REUSEPORT`).
    pub fn tcp_on<F>(listener: TcpListener, config: Config, serve: F) -> TestServer
    where
        F: FnOnce(TcpListener, &Context) -> io::Result<()> + Send + 'static,
    {
        let addr = listener.local_addr().expect("local address");
        TestServer::spawn(addr, config, move |cx| serve(listener, cx))
    }

    /// Serves UDP on an ephemeral loopback port.
    pub fn udp<F>(config: Config, serve: F) -> TestServer
    where
        F: FnOnce(UdpSocket, &Context) -> io::Result<()> + Send + 'static,
    {
        let socket = bind_udp(loopback(), BindOptions::default()).expect("bind UDP");
        TestServer::udp_on(socket, config, serve)
    }

    /// Serves UDP on a socket the test made (e.g. with `SO_REUSEPORT`).
    pub fn udp_on<F>(socket: UdpSocket, config: Config, serve: F) -> TestServer
    where
        F: FnOnce(UdpSocket, &Context) -> io::Result<()> + Send + 'static,
    {
        let addr = socket.local_addr().expect("local address");
        TestServer::spawn(addr, config, move |cx| serve(socket, cx))
    }

    fn spawn<F>(addr: SocketAddr, config: Config, serve: F) -> TestServer
    where
        F: FnOnce(&Context) -> io::Result<()> + Send + 'static,
    {
        let cx = Context::new(config).expect("context");
        let server_cx = cx.clone();
        let thread = thread::spawn(move || serve(&server_cx));
        TestServer {
            addr,
            cx,
            thread: Some(thread),
        }
    }

    /// Triggers shutdown and waits (at most the grace period plus 3 s) for `serve`
    /// to return `Ok`; returns how long that took.
    pub fn stop(self) -> Duration {
        let t0 = Instant::now();
        self.cx.shutdown.trigger();
        let limit = self.cx.config.grace + Duration::from_secs(3);
        self.join_within(limit);
        t0.elapsed()
    }

    /// Waits at most `limit` for `serve` to return (shutdown already triggered) and
    /// asserts it returned `Ok`.
    pub fn join_within(mut self, limit: Duration) {
        let thread = self.thread.take().expect("joined once");
        let deadline = Instant::now() + limit;
        while !thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "serve did not return in {limit:?}"
            );
            thread::sleep(ms(5));
        }
        thread
            .join()
            .expect("serve panicked")
            .expect("serve failed");
    }
}

impl Drop for TestServer {
    /// A failing test still stops its server (the thread ends on its own).
    fn drop(&mut self) {
        self.cx.shutdown.trigger();
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("loopback address")
}

/// A client connected to `addr`, with [`IO_TIMEOUT`] on every call.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Reads exactly `n` bytes.
pub fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).expect("read");
    buf
}

/// Asserts the server closed the connection, by EOF or by reset (a server that
/// closes with unread input, or cancels a send, resets): closed, not merely quiet.
pub fn assert_closed(stream: &mut TcpStream) {
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

/// Writes `msg` and reads back exactly its length.
pub fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).expect("write");
    read_n(stream, msg.len())
}

/// True if nothing arrives on `stream` within `wait`: the client waits unserved.
pub fn unanswered(stream: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let silent = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        stream.set_read_timeout(Some(left.max(ms(1)))).unwrap();
        match stream.read(&mut [0u8; 1]) {
            // A signal landed on this thread mid-read (io_uring's task work, say).
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                break matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                )
            }
            Ok(_) => break false,
        }
    };
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    silent
}

// ---------------------------------------------------------------------------
// Behaviours every event-driven model shows, each checked the same way in each
// model's crate (the models differ in how, not in what). `label` names the variant
// in failure messages.

/// For a lines-framing server: client A sends `a`, client B sends `b` 50 ms later;
/// returns how long each waited for its reply (A's counted from A's request, B's
/// from B's). Whether B waits behind A is the lesson of `--work`.
pub fn staggered_pair(addr: SocketAddr) -> (Duration, Duration) {
    let (mut a, mut b) = (connect(addr), connect(addr));
    let a_sent = Instant::now();
    a.write_all(b"a\n").unwrap();
    thread::sleep(ms(50));
    let b_sent = Instant::now();
    b.write_all(b"b\n").unwrap();
    assert_eq!(read_n(&mut b, 2), b"B\n");
    let b_took = b_sent.elapsed();
    assert_eq!(read_n(&mut a, 2), b"A\n");
    (a_sent.elapsed(), b_took)
}

/// For a server with lines framing and `sleep` work of `sleep`: B's reply comes
/// one `sleep` after B's request, not after A's reply: the waits overlap (a timer,
/// not a blocked thread).
pub fn assert_sleep_work_overlaps(addr: SocketAddr, sleep: Duration, label: &str) {
    let (a_took, b_took) = staggered_pair(addr);
    let early = sleep - ms(5);
    assert!(a_took >= early, "{label}: A answered too early: {a_took:?}");
    assert!(b_took >= early, "{label}: B answered too early: {b_took:?}");
    // Behind A, B would take about 2 × sleep − 50 ms.
    assert!(
        b_took < sleep * 3 / 2 + ms(30),
        "{label}: B waited for A: {b_took:?}"
    );
}

/// For a server with `max_conns` 1: a second client is not served while the first
/// is connected, and is served once the first leaves.
pub fn assert_cap_holds_until_a_client_leaves(addr: SocketAddr, label: &str) {
    let mut first = connect(addr);
    assert_eq!(round_trip(&mut first, b"a"), b"A");
    let mut second = connect(addr); // completes in the kernel's backlog
    second.write_all(b"b").unwrap();
    assert!(
        unanswered(&mut second, ms(200)),
        "{label}: served past max_conns"
    );
    drop(first);
    assert_eq!(read_n(&mut second, 1), b"B", "{label}");
}

/// For a server with `idle_timeout` of `idle`: a client served once and then
/// silent is disconnected after about `idle`.
pub fn assert_idle_client_disconnected(addr: SocketAddr, idle: Duration, label: &str) {
    let mut client = connect(addr);
    assert_eq!(round_trip(&mut client, b"x"), b"X");
    let t0 = Instant::now();
    assert_closed(&mut client);
    let silent = t0.elapsed();
    assert!(
        silent >= idle - ms(50) && silent < idle + ms(800),
        "{label}: closed after {silent:?}, idle timeout {idle:?}"
    );
}

/// Stops `server` with three idle clients connected: `serve` returns after the
/// grace period (not before, and not much after), the clients are closed, none is
/// still counted active, and nothing is accepted any more.
pub fn assert_shutdown_closes_idle_clients_after_grace(server: TestServer, label: &str) {
    let addr = server.addr;
    let mut idle: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
    for client in &mut idle {
        assert_eq!(round_trip(client, b"hi"), b"HI");
    }
    let (grace, counters) = (server.cx.config.grace, server.cx.counters);
    let took = server.stop();
    assert!(
        took >= grace - ms(50),
        "{label}: returned before the grace period: {took:?}"
    );
    assert!(
        took < grace + ms(700),
        "{label}: took {took:?}, grace {grace:?}"
    );
    for client in &mut idle {
        assert_closed(client);
    }
    assert_eq!(
        counters.active(),
        0,
        "{label}: closed clients still counted"
    );
    assert!(
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).is_err(),
        "{label}: still accepting"
    );
}

/// For a server with raw framing and `sleep` work of 200 ms: a reply whose wait is
/// running when shutdown comes is still delivered, and `serve` then returns.
pub fn assert_reply_in_flight_survives_shutdown(server: TestServer, label: &str) {
    let mut client = connect(server.addr);
    client.write_all(b"late").unwrap();
    thread::sleep(ms(50));
    server.cx.shutdown.trigger();
    assert_eq!(read_n(&mut client, 4), b"LATE", "{label}");
    drop(client);
    server.join_within(ms(1000));
}

// ---------------------------------------------------------------------------
// The process models' tests (prefork, workers) fork from the test process: their
// workers are this process's children.

static FORKING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Held by a test that forks, so such tests run one at a time: a worker inherits
/// every descriptor the process has open, so a test running beside another would
/// hold that test's client sockets open in its workers; and the "no child left"
/// check looks at every child of the process.
pub fn forking_test() -> std::sync::MutexGuard<'static, ()> {
    FORKING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Pids whose parent is this process (any state, zombies included), from /proc.
pub fn children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
        let after = &stat[stat.rfind(')').expect("a comm in stat") + 2..];
        if after.split(' ').nth(1) == Some(me.as_str()) {
            pids.push(pid);
        }
    }
    pids
}

/// Waits (at most [`IO_TIMEOUT`]) until this process has `count` children, and
/// returns them.
pub fn wait_for_children(count: usize) -> Vec<i32> {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let pids = children();
        if pids.len() == count || Instant::now() > deadline {
            assert_eq!(pids.len(), count, "children: {pids:?}");
            return pids;
        }
        thread::sleep(ms(10));
    }
}

/// No child of this process is left, running or zombie.
pub fn assert_no_children() {
    assert_eq!(children(), Vec::<i32>::new());
    assert_eq!(
        nix::sys::wait::waitpid(
            None::<nix::unistd::Pid>,
            Some(nix::sys::wait::WaitPidFlag::WNOHANG)
        ),
        Err(nix::errno::Errno::ECHILD)
    );
}

//! An in-process server for the model crates' own tests (feature `testing`).
//!
//! The shared conformance suite runs every model through the `socklab` binary;
//! what is specific to one model (its timers, its backpressure, its dispatch) is
//! tested in that crate against `serve` called in-process. This is the harness
//! those tests share: a server on `127.0.0.1:0` in a thread, stopped by its
//! [`Shutdown`](crate::Shutdown), and clients with timeouts on every call.

use std::io::{self, Read};
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

/// Asserts the server closed the connection: the next read returns 0.
pub fn assert_eof(stream: &mut TcpStream) {
    let mut byte = [0u8; 1];
    assert_eq!(stream.read(&mut byte).expect("read"), 0, "expected EOF");
}

/// Writes `msg` and reads back exactly its length.
pub fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    use std::io::Write;
    stream.write_all(msg).expect("write");
    read_n(stream, msg.len())
}

/// True if nothing arrives on `stream` within `wait`: the client waits unserved.
pub fn unanswered(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let silent = matches!(
        stream.read(&mut [0u8; 1]),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
    );
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    silent
}

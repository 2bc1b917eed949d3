//! Small std-thread servers for the load generator's tests, written here (not taken
//! from socklab's server crates) so the tests check the generator alone. Each
//! counts what it served, binds 127.0.0.1:0, and stops when dropped.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use socklab_loadgen::{Framing, LoadConfig, LoadReport};

/// How often server threads look at their stop flag.
const POLL: Duration = Duration::from_millis(20);

/// What a test server does with each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// The real service: reply uppercased.
    Uppercase,
    /// A broken service: echo without uppercasing.
    PlainEcho,
    /// A broken service: uppercase Latin-1 too (`é` 0xE9 -> `É` 0xC9), as a
    /// server that calls a locale's `toupper` on each byte would.
    Latin1Uppercase,
    /// Uppercase, but stall once: before answering request number `at` (1-based,
    /// counted over all connections), sleep `stall`.
    StallOnce { at: u64, stall: Duration },
}

/// What a server counted.
#[derive(Debug, Default)]
pub struct Served {
    pub conns: AtomicU64,
    /// Lines answered (lines framing) or chunks read (raw framing).
    pub requests: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// UDP: datagrams dropped on purpose.
    pub dropped: AtomicU64,
}

impl Served {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::SeqCst)
    }
}

/// A thread-per-connection TCP uppercase-echo server.
pub struct TcpServer {
    pub addr: SocketAddr,
    pub served: Arc<Served>,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    handlers: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl TcpServer {
    pub fn start(framing: Framing, behavior: Behavior) -> TcpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(Served::default());
        let stop = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let handlers = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (served, stop, streams, handlers) = (
                served.clone(),
                stop.clone(),
                streams.clone(),
                handlers.clone(),
            );
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            served.conns.fetch_add(1, Ordering::SeqCst);
                            s.set_nonblocking(false).unwrap();
                            s.set_read_timeout(Some(POLL)).unwrap();
                            let _ = s.set_nodelay(true);
                            streams.lock().unwrap().push(s.try_clone().unwrap());
                            let (served, stop) = (served.clone(), stop.clone());
                            let h = thread::spawn(move || {
                                serve_conn(s, framing, behavior, &served, &stop)
                            });
                            handlers.lock().unwrap().push(h);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(1))
                        }
                        Err(_) => thread::sleep(Duration::from_millis(1)),
                    }
                }
                // The listener is dropped here: new connects are refused.
            })
        };
        TcpServer {
            addr,
            served,
            stop,
            streams,
            handlers,
            acceptor: Some(acceptor),
        }
    }

    /// Stops accepting, closes the listener and every connection, and waits for
    /// all server threads: the server vanishes.
    pub fn vanish(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        let handlers: Vec<_> = self.handlers.lock().unwrap().drain(..).collect();
        for h in handlers {
            let _ = h.join();
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.vanish();
    }
}

fn reply_bytes(behavior: Behavior, data: &[u8]) -> Vec<u8> {
    match behavior {
        Behavior::PlainEcho => data.to_vec(),
        Behavior::Latin1Uppercase => data
            .iter()
            .map(|&b| match b {
                0xE0..=0xFE if b != 0xF7 => b - 0x20,
                _ => b.to_ascii_uppercase(),
            })
            .collect(),
        _ => data.to_ascii_uppercase(),
    }
}

fn serve_conn(
    mut s: TcpStream,
    framing: Framing,
    behavior: Behavior,
    served: &Served,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut line = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let n = match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        served.bytes_in.fetch_add(n as u64, Ordering::SeqCst);
        let mut out = Vec::new();
        match framing {
            Framing::Raw => {
                served.requests.fetch_add(1, Ordering::SeqCst);
                out = reply_bytes(behavior, &buf[..n]);
            }
            Framing::Lines => {
                for &b in &buf[..n] {
                    line.push(b);
                    if b == b'\n' {
                        let k = served.requests.fetch_add(1, Ordering::SeqCst) + 1;
                        if let Behavior::StallOnce { at, stall } = behavior {
                            if k == at {
                                // Send what is ready, then stall before this line.
                                if s.write_all(&out).is_err() {
                                    return;
                                }
                                out.clear();
                                thread::sleep(stall);
                            }
                        }
                        out.extend(reply_bytes(behavior, &line));
                        line.clear();
                    }
                }
            }
        }
        if s.write_all(&out).is_err() {
            return;
        }
        served
            .bytes_out
            .fetch_add(out.len() as u64, Ordering::SeqCst);
    }
}

/// A UDP uppercase server that drops every `drop_every`-th datagram it receives
/// (0: drops none).
pub struct UdpServer {
    pub addr: SocketAddr,
    pub served: Arc<Served>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpServer {
    pub fn start(drop_every: u64) -> UdpServer {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        sock.set_read_timeout(Some(POLL)).unwrap();
        let addr = sock.local_addr().unwrap();
        let served = Arc::new(Served::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (served, stop) = (served.clone(), stop.clone());
            thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let k = served.requests.fetch_add(1, Ordering::SeqCst) + 1;
                    served.bytes_in.fetch_add(n as u64, Ordering::SeqCst);
                    if drop_every > 0 && k % drop_every == 0 {
                        served.dropped.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    let _ = sock.send_to(&buf[..n].to_ascii_uppercase(), from);
                }
            })
        };
        UdpServer {
            addr,
            served,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A test configuration: no warmup, two threads, a short connect timeout, a
/// ramp of at most 1 s.
pub fn config(target: SocketAddr) -> LoadConfig {
    LoadConfig {
        target,
        threads: 2,
        warmup: Duration::ZERO,
        ramp_limit: Duration::from_secs(1),
        duration: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
        ..LoadConfig::default()
    }
}

/// Runs the load generator, failing the test if it does not return within `limit`.
pub fn run_bounded(cfg: &LoadConfig, limit: Duration) -> LoadReport {
    let (tx, rx) = mpsc::channel();
    let cfg = cfg.clone();
    let h = thread::spawn(move || {
        let _ = tx.send(socklab_loadgen::run(&cfg, Default::default()));
    });
    let result = rx
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("load generator did not return within {limit:?}"));
    h.join().unwrap();
    result.expect("run failed")
}

/// A port on 127.0.0.1 that nothing listens on (bound, noted, released).
pub fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

//! The conformance suite: one body per behaviour, run against every server model
//! and variant of the one model table (`socklab_models::MODELS`) through the real
//! `socklab serve` binary (ripgrep's `rgtest!` habit). A new model gets every test
//! from its row in the table.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// The server's descriptor count once it has not changed for 300 ms (at most 3 s).
fn settled_fds(server: &Server) -> usize {
    let mut last = server.open_fds();
    let mut stable_since = std::time::Instant::now();
    let deadline = stable_since + Duration::from_secs(3);
    while stable_since.elapsed() < Duration::from_millis(300)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
        let now = server.open_fds();
        if now != last {
            last = now;
            stable_since = std::time::Instant::now();
        }
    }
    last
}

/// The server's descriptors and the TCP sockets among them, for a failure message.
fn debug_fds(pid: i32) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let t = std::fs::read_link(e.path()).unwrap_or_default();
        out += &format!("{} ", t.display());
    }
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    for line in tcp.lines().skip(1) {
        let w: Vec<&str> = line.split_whitespace().collect();
        if out.contains(&format!("socket:[{}]", w[9])) {
            out += &format!("\n{} {} st={} inode={}", w[1], w[2], w[3], w[9]);
        }
    }
    out
}

/// What has arrived on `stream`, without waiting for more: the bytes, and
/// whether the server closed its side after them (EOF).
fn arrived(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    stream.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(e) => panic!("reading what arrived: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    (got, closed)
}

/// A server with UDP for a model that has one. A per-client model (fork, thread)
/// has none: then this checks that `serve --udp` refuses, clearly, and returns None.
fn udp_server(spec: &Spec) -> Option<Server> {
    if spec.udp {
        return Some(Server::start(spec, &[]));
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_socklab"))
        .arg("serve")
        .args(spec.serve)
        .args(["--udp", "127.0.0.1:0"])
        .output()
        .expect("run socklab");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{:?} accepted --udp", spec.serve);
    assert!(stderr.contains("cannot serve UDP"), "{stderr}");
    None
}

/// The test bodies. Each takes the model under test.
mod cases {
    use super::*;

    /// Every byte comes back uppercased, including NUL and bytes >= 0x80.
    pub fn echo_bytes(spec: &Spec) {
        let server = Server::start(spec, &[]);
        let mut c = server.connect();
        let msg = b"hello, World! \x00 \x7f\x80\xff \xe4\xbd\xa0\xe5\xa5\xbd z\n";
        assert_eq!(round_trip(&mut c, msg), upper(msg));
        let random = pseudo_random_bytes(4096, 7);
        assert_eq!(round_trip(&mut c, &random), upper(&random));
    }

    /// 8 MiB written while reading concurrently arrive back exact: no deadlock when
    /// both directions' socket buffers fill.
    pub fn eight_mib_concurrently(spec: &Spec) {
        let server = Server::start(spec, &[]);
        let c = server.connect();
        let data = pseudo_random_bytes(8 << 20, 8);
        let expected = upper(&data);
        let mut writer = c.try_clone().unwrap();
        let sent = std::thread::spawn(move || {
            for chunk in data.chunks(64 * 1024) {
                writer.write_all(chunk).unwrap();
            }
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut reader = c;
        let got = read_to_eof(&mut reader);
        sent.join().unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "8 MiB echo differs");
    }

    /// Bytes sent one at a time each come back.
    pub fn one_byte_at_a_time(spec: &Spec) {
        let server = Server::start(spec, &[]);
        let mut c = server.connect();
        for &b in b"slow typist\n" {
            assert_eq!(round_trip(&mut c, &[b]), upper(&[b]));
        }
    }

    /// Many messages written before any reply is read all come back, in order.
    pub fn pipelined(spec: &Spec) {
        let server = Server::start(spec, &["--framing", "lines"]);
        let mut c = server.connect();
        let mut sent = Vec::new();
        for i in 0..500 {
            sent.extend_from_slice(format!("message number {i}\n").as_bytes());
        }
        c.write_all(&sent).unwrap();
        let mut got = vec![0u8; sent.len()];
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, upper(&sent));
    }

    /// 200 clients at once each get their own bytes back.
    pub fn two_hundred_clients(spec: &Spec) {
        let server = Server::start(spec, &[]);
        let addr = server.tcp;
        let clients: Vec<_> = (0..200)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut c = connect(addr);
                    let msg = format!("client {i} says hello\n").into_bytes();
                    let reply = round_trip(&mut c, &msg);
                    reply == upper(&msg)
                })
            })
            .collect();
        let ok = clients
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(ok, 200);
    }

    /// A client that shuts its write side still gets every reply, then EOF.
    pub fn half_close(spec: &Spec) {
        let server = Server::start(spec, &[]);
        let mut c = server.connect();
        let msg = pseudo_random_bytes(100_000, 3);
        c.write_all(&msg).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_eof(&mut c), upper(&msg));
    }

    /// A client that resets mid-stream (SO_LINGER 0: RST instead of FIN) does not
    /// disturb the server: the next clients are served. (The iterative model serves
    /// one client at a time, so "the others" come after the rude one.)
    pub fn reset_mid_stream(spec: &Spec) {
        let server = Server::start(spec, &[]);
        for _ in 0..3 {
            let rude = server.connect();
            socket2::SockRef::from(&rude)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            (&rude).write_all(&[b'x'; 50_000]).unwrap();
            // Dropped with SO_LINGER 0: the kernel sends RST, not FIN.
        }
        let mut next = server.connect();
        assert_eq!(round_trip(&mut next, b"after\n"), b"AFTER\n");
        assert!(server.alive());
    }

    /// In lines framing an over-long line gets `ERR line too long` and a close,
    /// after the replies to the good lines before it.
    pub fn over_long_line(spec: &Spec) {
        let server = Server::start(spec, &["--framing", "lines", "--max-line", "1024"]);
        let mut c = server.connect();
        let mut input = b"fine\n".to_vec();
        input.extend(std::iter::repeat_n(b'a', 5000));
        c.write_all(&input).unwrap();
        let got = read_to_eof(&mut c);
        assert_eq!(got, b"FINE\nERR line too long\n");
        let mut next = server.connect();
        assert_eq!(round_trip(&mut next, b"ok\n"), b"OK\n");
    }

    /// A client that starts a line and never finishes it within `--idle-timeout`
    /// (slowloris: a byte at a time, never silent long enough to time out) gets the
    /// same answer from every model, at its first byte after the timeout: the
    /// replies already due, `ERR request timed out`, and a close (EOF). A client
    /// completing its lines at the same pace is served throughout.
    pub fn dribbling_client_is_timed_out(spec: &Spec) {
        const IDLE: Duration = Duration::from_millis(300);
        const PACE: Duration = Duration::from_millis(100);
        let server = Server::start(spec, &["--framing", "lines", "--idle-timeout", "300ms"]);
        let mut dribbler = server.connect();
        assert_eq!(round_trip(&mut dribbler, b"done\n"), b"DONE\n");
        let start = Instant::now();
        let (mut got, mut closed) = (Vec::new(), false);
        // Stop writing once anything arrives: a byte sent after the server closed
        // would be answered with a reset.
        while got.is_empty() && !closed && start.elapsed() < 3 * IDLE {
            dribbler.write_all(b"x").unwrap();
            std::thread::sleep(PACE);
            (got, closed) = arrived(&mut dribbler);
        }
        let cut = start.elapsed();
        if !closed {
            got.extend(read_to_eof(&mut dribbler));
        }
        assert_eq!(
            String::from_utf8_lossy(&got),
            "ERR request timed out\n",
            "the answer to a line dribbled for {cut:?}"
        );
        // At its first byte after the timeout, noticed within a pace of ours; well
        // before three timeouts on a loaded machine.
        assert!(
            cut >= IDLE && cut < 3 * IDLE,
            "timed out after {cut:?}, with an idle timeout of {IDLE:?}"
        );
        let mut steady = server.connect();
        let served = Instant::now();
        while served.elapsed() < 3 * IDLE {
            assert_eq!(round_trip(&mut steady, b"x\n"), b"X\n");
            std::thread::sleep(PACE);
        }
    }

    /// UDP: an empty datagram gets an empty reply; a 65,507-byte one comes back whole.
    pub fn udp_extremes(spec: &Spec) {
        let Some(server) = udp_server(spec) else {
            return;
        };
        let c = udp_client(server.udp.unwrap());
        let mut buf = vec![0u8; 70_000];
        c.send(b"").unwrap();
        assert_eq!(c.recv(&mut buf).unwrap(), 0);
        let big = pseudo_random_bytes(65_507, 11);
        c.send(&big).unwrap();
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(n, big.len(), "datagram truncated");
        assert!(buf[..n] == upper(&big)[..]);
    }

    /// UDP: a burst of 1,000 datagrams (at most 64 in flight) is answered, each one right.
    pub fn udp_burst(spec: &Spec) {
        let Some(server) = udp_server(spec) else {
            return;
        };
        let c = udp_client(server.udp.unwrap());
        let mut buf = [0u8; 128];
        let (mut sent, mut answered) = (0usize, 0usize);
        while answered < 1000 {
            while sent < 1000 && sent - answered < 64 {
                c.send(format!("datagram {sent}").as_bytes()).unwrap();
                sent += 1;
            }
            let n = c.recv(&mut buf).expect("a reply within the timeout");
            let text = std::str::from_utf8(&buf[..n]).unwrap();
            assert!(text.starts_with("DATAGRAM "), "{text}");
            answered += 1;
        }
    }

    /// SIGTERM with an idle client: exit 0 within the grace period, no children left.
    pub fn sigterm_exits_cleanly(spec: &Spec) {
        let server = Server::start(spec, &[]);
        let mut idle = server.connect();
        assert_eq!(round_trip(&mut idle, b"hi\n"), b"HI\n");
        let children = server.children();
        let status = server.stop();
        assert_eq!(status.code(), Some(0), "exit status {status:?}");
        for pid in children {
            assert!(
                process_state(pid).is_none(),
                "child {pid} outlived the server"
            );
        }
    }

    /// After 1,000 connect/request/close cycles: no zombies and no leaked descriptors.
    /// The baseline is taken once both servers (TCP and UDP) have answered and the
    /// descriptor count has settled: `serve` announces its addresses as soon as the
    /// sockets are bound, while loop threads may still be creating their epoll fd.
    pub fn no_leaks_after_churn(spec: &Spec) {
        let server = Server::start(spec, &[]);
        {
            let mut warm = server.connect();
            round_trip(&mut warm, b"warm\n");
        }
        if let Some(udp) = server.udp {
            let c = udp_client(udp);
            c.send(b"warm").unwrap();
            c.recv(&mut [0u8; 16]).unwrap();
        }
        assert!(eventually(Duration::from_secs(5), || server
            .zombies()
            .is_empty()));
        let fds_before = settled_fds(&server);
        let listing_before = debug_fds(server.pid);
        for i in 0..1000 {
            let mut c = server.connect();
            let msg = format!("cycle {i}\n");
            assert_eq!(round_trip(&mut c, msg.as_bytes()), upper(msg.as_bytes()));
        }
        assert!(
            eventually(Duration::from_secs(5), || server.open_fds() <= fds_before),
            "fds grew from {fds_before} to {}: {}\nBEFORE: {listing_before}",
            server.open_fds(),
            debug_fds(server.pid)
        );
        assert!(
            eventually(Duration::from_secs(5), || server.zombies().is_empty()),
            "zombies left: {:?}",
            server.zombies()
        );
    }
}

/// One test per case, each run for every model (see `common::every_model`).
macro_rules! for_every_model {
    ($($case:ident),* $(,)?) => {$(
        #[test]
        fn $case() {
            every_model(|spec| cases::$case(spec))
        }
    )*};
}

for_every_model! {
    echo_bytes,
    eight_mib_concurrently,
    one_byte_at_a_time,
    pipelined,
    two_hundred_clients,
    half_close,
    reset_mid_stream,
    over_long_line,
    dribbling_client_is_timed_out,
    udp_extremes,
    udp_burst,
    sigterm_exits_cleanly,
    no_leaks_after_churn,
}

//! Hardening: every server model against hostile clients and hostile conditions,
//! through the real `socklab serve` binary. Like `conformance.rs`, each behaviour
//! is one body, run for every row of the one model table; the few
//! behaviours that only process models have (children, workers) and the CLI's own
//! failure modes are plain tests at the end. docs/RELIABILITY.md maps each hostile
//! behaviour to what each model does and to the test that shows it.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// One model under test, and what the hardening bodies need to know about it: its
/// `socklab serve` arguments, its shape, whether it holds a descriptor per client.
/// Every row of the model table is one; the process tests below make their own.
#[derive(Clone, Copy, Debug)]
pub struct Model {
    pub args: &'static [&'static str],
    pub shape: Shape,
    pub fd_per_client: bool,
}

impl From<&socklab_models::Model> for Model {
    fn from(m: &socklab_models::Model) -> Model {
        Model {
            args: m.serve,
            shape: m.shape,
            fd_per_client: m.fd_per_client,
        }
    }
}

use socklab_models::Shape;

/// Clients the `--max-conns` and slow-client tests allow at once.
const CAP: usize = 2;
/// How long a client waits to show that it is *not* being served.
const NOT_SERVED_WITHIN: Duration = Duration::from_millis(300);
/// `--idle-timeout` of the idle and slow-client tests.
const IDLE: Duration = Duration::from_millis(300);
/// What "at once" and "soon after the timeout" mean on a noisy 2-CPU machine.
const MARGIN: Duration = Duration::from_millis(2500);

impl Model {
    fn pooled(&self) -> bool {
        self.shape.pooled()
    }

    /// Clients served at once under `--max-conns CAP` with [`Self::cap_args`].
    fn live_under_cap(&self) -> usize {
        if self.shape == Shape::Serial {
            1
        } else {
            CAP
        }
    }

    /// `--max-conns CAP`, plus a pool size that leaves the cap, not the pool, in
    /// charge where the model checks the cap exactly.
    fn cap_args(&self) -> Vec<&'static str> {
        let mut args = vec!["--max-conns", "2"];
        match self.shape {
            Shape::PoolQueue => args.extend(["--workers", "4"]),
            Shape::PoolAccept => args.extend(["--workers", "2"]),
            Shape::Serial | Shape::Elastic | Shape::Sharded => {}
        }
        args
    }

    /// Clients it takes to fill every slot: the cap, or for loops that each hold a
    /// share of it behind a listener the kernel picks by hash, enough clients that
    /// every loop surely gets its share (missing one with 16: 2 × 2⁻¹⁶).
    fn fill_every_slot(&self) -> usize {
        if self.shape == Shape::Sharded {
            8 * CAP
        } else {
            CAP
        }
    }

    /// Starts `socklab serve <model> --tcp 127.0.0.1:0 <extra>` (with `--grace 2s`
    /// unless `extra` sets one). `None` only for a uring model the kernel refuses,
    /// after printing why: those tests are skipped, not failed.
    fn start(&self, extra: &[&str]) -> Option<Server> {
        self.start_limited(extra, None)
    }

    fn start_limited(&self, extra: &[&str], fd_limit: Option<u64>) -> Option<Server> {
        let mut args = vec!["serve"];
        args.extend_from_slice(self.args);
        args.extend_from_slice(&["--tcp", "127.0.0.1:0"]);
        if !extra.contains(&"--grace") {
            args.extend_from_slice(&["--grace", "2s"]);
        }
        args.extend_from_slice(extra);
        match Server::try_start_args(&args, fd_limit) {
            Ok(server) => Some(server),
            Err(why) if self.args[0] == "uring" => {
                eprintln!("skipping: `socklab serve uring` refused to start here: {why}");
                None
            }
            Err(why) => panic!("{why}"),
        }
    }
}

/// Reads once with a short timeout; true if nothing came (the client waits).
fn gets_no_reply_within(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    let waiting = match stream.read(&mut byte) {
        Err(e) => matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        Ok(_) => false,
    };
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    waiting
}

/// Waits for the server to close `stream` (EOF or reset); returns how long it took.
fn time_until_closed(stream: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(n) => panic!("unexpected {n} bytes from an idle connection"),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return start.elapsed()
            }
            Err(e) => panic!("not closed within {limit:?}: {e}"),
        }
    }
}

/// True while `pid` exists and is not a zombie. An orphaned worker that died with
/// its server stays a zombie until init reaps it, which is not the server's doing.
fn running(pid: i32) -> bool {
    matches!(process_state(pid), Some(s) if s != 'Z')
}

/// Writes up to `total` bytes without ever reading, until the server stops taking
/// them (a write blocks for `stall`). Returns the stream and the bytes written.
fn write_without_reading(stream: TcpStream, total: usize, stall: Duration) -> (TcpStream, usize) {
    stream.set_write_timeout(Some(stall)).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut written = 0;
    let mut s = &stream;
    while written < total {
        match s.write(&chunk) {
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // Timed out: the server stopped reading. Or it closed: also bounded.
            Err(_) => break,
        }
    }
    (stream, written)
}

mod cases {
    use super::*;

    /// Past `--max-conns` a new client waits (no reply) until a client leaves, then
    /// is served: the same defined behaviour in every model.
    pub fn max_conns_holds_past_the_cap(m: &Model) {
        let Some(server) = m.start(&m.cap_args()) else {
            return;
        };
        if m.shape == Shape::Sharded {
            return sharded_cap_holds(&server);
        }
        let mut held: Vec<TcpStream> = (0..m.live_under_cap())
            .map(|i| {
                let mut c = server.connect();
                let msg = format!("held {i}\n");
                assert_eq!(round_trip(&mut c, msg.as_bytes()), upper(msg.as_bytes()));
                c
            })
            .collect();
        let mut waiting = server.connect();
        waiting.write_all(b"past the cap\n").unwrap();
        assert!(
            gets_no_reply_within(&mut waiting, NOT_SERVED_WITHIN),
            "a client past --max-conns was served while {} others were connected",
            held.len()
        );
        drop(held.remove(0));
        let mut reply = [0u8; 13];
        waiting
            .read_exact(&mut reply)
            .expect("served once a slot freed");
        assert_eq!(&reply, b"PAST THE CAP\n");
        // The other client under the cap is still served (a serial model had one).
        if let Some(mut other) = held.pop() {
            assert_eq!(round_trip(&mut other, b"still\n"), b"STILL\n");
        }
    }

    /// Loops that each hold a share of the cap: however the kernel spreads the
    /// clients over their listeners, no more than the cap are served at once, and a
    /// waiting client is served once one in its loop leaves.
    fn sharded_cap_holds(server: &Server) {
        let mut clients: Vec<TcpStream> = (0..3 * CAP)
            .map(|i| {
                let mut c = server.connect();
                c.write_all(format!("client {i}\n").as_bytes()).unwrap();
                c
            })
            .collect();
        std::thread::sleep(NOT_SERVED_WITHIN);
        let (served, waiting): (Vec<usize>, Vec<usize>) = (0..clients.len())
            .partition(|&i| !gets_no_reply_within(&mut clients[i], Duration::from_millis(50)));
        assert!(
            (1..=CAP).contains(&served.len()),
            "{} clients served at once under --max-conns {CAP}",
            served.len()
        );
        for &i in served.iter().rev() {
            drop(clients.remove(i));
        }
        let one_served = (0..waiting.len()).any(|i| {
            clients[i].set_read_timeout(Some(MARGIN)).unwrap();
            let mut byte = [0u8; 1];
            clients[i].read_exact(&mut byte).is_ok()
        });
        assert!(one_served, "no waiting client was served once slots freed");
    }

    /// A client that sends nothing is disconnected soon after `--idle-timeout`,
    /// whether it never spoke or went quiet after a request.
    pub fn silent_client_is_disconnected(m: &Model) {
        let Some(server) = m.start(&["--idle-timeout", "300ms"]) else {
            return;
        };
        let mut spoke = server.connect();
        assert_eq!(round_trip(&mut spoke, b"once\n"), b"ONCE\n");
        let mut mute = server.connect();
        let took = time_until_closed(&mut spoke, IDLE + MARGIN);
        assert!(
            took >= IDLE - Duration::from_millis(100),
            "closed after {took:?}, before the {IDLE:?} idle timeout"
        );
        // A serial model accepts `mute` only once `spoke` is gone: two timeouts.
        time_until_closed(&mut mute, 2 * IDLE + MARGIN);
        let mut next = server.connect();
        assert_eq!(round_trip(&mut next, b"next\n"), b"NEXT\n");
    }

    /// Silent clients holding every slot (threads, workers, processes, the cap)
    /// are cut off by the idle timeout, so a waiting client is served.
    pub fn slow_clients_cannot_pin_the_server(m: &Model) {
        let mut extra = m.cap_args();
        extra.extend(["--idle-timeout", "300ms"]);
        let Some(server) = m.start(&extra) else {
            return;
        };
        let silent: Vec<TcpStream> = (0..m.fill_every_slot()).map(|_| server.connect()).collect();
        // Let the server take them in before the real client comes.
        std::thread::sleep(Duration::from_millis(50));
        let mut real = server.connect();
        let start = Instant::now();
        // Behind a loop's share of the silent clients, the real client waits one
        // idle timeout for each silent client queued before it in that loop.
        let queued_ahead = (silent.len() as u32).saturating_sub(1);
        real.set_read_timeout(Some((queued_ahead + 2) * IDLE + MARGIN))
            .unwrap();
        let reply = round_trip(&mut real, b"let me in\n");
        assert_eq!(reply, b"LET ME IN\n");
        // Sharded loops too: every loop's socket exists before the address is
        // announced, so the kernel's hash spreads the 16 silent clients over all of
        // them (a loop left without one: 2 × 2⁻¹⁶) and no loop has room.
        assert!(
            start.elapsed() >= IDLE / 2,
            "served after {:?}: the silent clients never held the slots",
            start.elapsed()
        );
        drop(silent);
    }

    /// A connection flood with the descriptor limit lowered to 64: the server does
    /// not crash, does not spin while out of descriptors (under 30 % of one CPU),
    /// and serves again once the flood leaves.
    pub fn fd_exhaustion_is_survived(m: &Model) {
        const LIMIT: u64 = 64;
        const FLOOD: usize = 120;
        let Some(server) = m.start_limited(&[], Some(LIMIT)) else {
            return;
        };
        let mut probe = server.connect();
        assert_eq!(round_trip(&mut probe, b"before\n"), b"BEFORE\n");
        drop(probe);
        let flood: Vec<TcpStream> = (0..FLOOD).map(|_| server.connect()).collect();
        if m.fd_per_client {
            assert!(
                eventually(Duration::from_secs(10), || server
                    .stderr()
                    .contains("Too many open files")),
                "the flood never reached the descriptor limit"
            );
        }
        // Let the flood settle (a forking server forks for each client first).
        std::thread::sleep(Duration::from_millis(300));
        let window = Duration::from_millis(500);
        let cpu_before = tree_cpu_seconds(server.pid);
        let start = Instant::now();
        std::thread::sleep(window);
        let busy = (tree_cpu_seconds(server.pid) - cpu_before) / start.elapsed().as_secs_f64();
        eprintln!("server CPU while flooded: {:.1} % of one CPU", busy * 100.0);
        assert!(
            busy < 0.30,
            "the server used {:.0} % of a CPU while out of descriptors",
            busy * 100.0
        );
        assert!(server.alive(), "the server died under the flood");
        drop(flood);
        let mut after = server.connect();
        assert_eq!(round_trip(&mut after, b"after\n"), b"AFTER\n");
        assert!(server.alive());
    }

    /// Four clients that write 32 MiB each and never read: the server stops
    /// reading them (backpressure) instead of buffering, its memory grows by less
    /// than 64 MiB, and a fresh client is served meanwhile (a serial model serves
    /// it once they leave: it serves one client at a time by design).
    pub fn non_readers_cannot_grow_memory(m: &Model) {
        const WRITERS: usize = 4;
        const EACH: usize = 32 << 20;
        let extra: &[&str] = if m.pooled() { &["--workers", "6"] } else { &[] };
        let Some(server) = m.start(extra) else {
            return;
        };
        let mut warm = server.connect();
        assert_eq!(round_trip(&mut warm, b"warm\n"), b"WARM\n");
        drop(warm);
        std::thread::sleep(Duration::from_millis(100));
        let before = tree_rss_kib(server.pid);
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let c = server.connect();
                std::thread::spawn(move || {
                    write_without_reading(c, EACH, Duration::from_millis(700))
                })
            })
            .collect();
        let stalled: Vec<(TcpStream, usize)> =
            writers.into_iter().map(|w| w.join().unwrap()).collect();
        let grown_kib = tree_rss_kib(server.pid).saturating_sub(before);
        let written: Vec<usize> = stalled.iter().map(|(_, n)| *n).collect();
        eprintln!("memory grew by {grown_kib} KiB; each client got {written:?} bytes in");
        assert!(
            written.iter().all(|&n| n < EACH),
            "a client wrote all of its {EACH} bytes: the server kept reading ({written:?})"
        );
        assert!(
            grown_kib < 64 * 1024,
            "memory grew by {grown_kib} KiB under {WRITERS} non-reading clients"
        );
        let stalled = if m.shape == Shape::Serial {
            drop(stalled);
            Vec::new()
        } else {
            stalled
        };
        let mut fresh = server.connect();
        assert_eq!(round_trip(&mut fresh, b"fresh\n"), b"FRESH\n");
        assert!(server.alive());
        drop(stalled);
    }

    /// SIGTERM while a reply is being worked on: the reply is delivered, then the
    /// server exits 0 within the grace period.
    pub fn reply_in_flight_survives_sigterm(m: &Model) {
        let Some(mut server) = m.start(&["--work", "sleep:300ms"]) else {
            return;
        };
        let mut c = server.connect();
        c.write_all(b"in flight\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let signalled = Instant::now();
        signal(server.pid, libc::SIGTERM);
        let mut reply = [0u8; 10];
        c.read_exact(&mut reply).expect("the reply in flight");
        assert_eq!(&reply, b"IN FLIGHT\n");
        drop(c);
        let status = server
            .wait_exit(Duration::from_secs(2) + MARGIN)
            .expect("exit within the grace period");
        assert_eq!(status.code(), Some(0), "{status:?}");
        assert!(signalled.elapsed() < Duration::from_secs(2) + MARGIN);
    }

    /// A second SIGTERM exits at once with status 1, even with a client connected
    /// and a long grace period; no child process is left behind.
    pub fn second_signal_exits_at_once(m: &Model) {
        let Some(mut server) = m.start(&["--grace", "30s"]) else {
            return;
        };
        let mut idle = server.connect();
        assert_eq!(round_trip(&mut idle, b"idle\n"), b"IDLE\n");
        let children = server.children();
        signal(server.pid, libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(100));
        let signalled = Instant::now();
        signal(server.pid, libc::SIGTERM);
        let status = server
            .wait_exit(MARGIN)
            .expect("exit at once after the second signal");
        assert_eq!(status.code(), Some(1), "{status:?}");
        assert!(signalled.elapsed() < MARGIN);
        for pid in children {
            assert!(
                eventually(Duration::from_secs(5), || !running(pid)),
                "child {pid} outlived the server"
            );
        }
    }
}

/// One test per case, each run for every row of the model table (see
/// `common::every_model`).
macro_rules! for_every_model {
    ($($case:ident),* $(,)?) => {$(
        #[test]
        fn $case() {
            every_model(|row| cases::$case(&Model::from(row)))
        }
    )*};
}

for_every_model! {
    max_conns_holds_past_the_cap,
    silent_client_is_disconnected,
    slow_clients_cannot_pin_the_server,
    fd_exhaustion_is_survived,
    non_readers_cannot_grow_memory,
    reply_in_flight_survives_sigterm,
    second_signal_exits_at_once,
}

// ---------------------------------------------------------------------------
// Process models: children and workers under storms, signals and kills.

const FORK: Model = Model {
    args: &["fork"],
    shape: Shape::Elastic,
    fd_per_client: false,
};

/// fork `--max-conns 3`: while 10 clients want service there are never more than
/// 3 children, every client is served in turn, and no zombie is left after.
#[test]
fn fork_children_never_exceed_the_cap() {
    let server = FORK.start(&["--max-conns", "3"]).unwrap();
    let addr = server.tcp;
    let clients: Vec<_> = (0..10)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = connect(addr);
                let msg = format!("storm {i}\n");
                let ok = round_trip(&mut c, msg.as_bytes()) == upper(msg.as_bytes());
                // Hold the child a while, so the clients overlap.
                std::thread::sleep(Duration::from_millis(100));
                ok
            })
        })
        .collect();
    let mut most = 0;
    while !clients.iter().all(|c| c.is_finished()) {
        most = most.max(server.children().len());
        std::thread::sleep(Duration::from_millis(2));
    }
    let served = clients
        .into_iter()
        .map(|c| c.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(served, 10);
    assert!(most <= 3, "{most} children at once under --max-conns 3");
    assert!(
        most >= 2,
        "the clients never overlapped ({most} child at most)"
    );
    assert!(
        eventually(Duration::from_secs(5), || server.children().is_empty()),
        "children left after the storm: {:?} (zombies: {:?})",
        server.children(),
        server.zombies()
    );
}

/// SIGTERM during a storm of connected clients: the fork, prefork and workers
/// servers exit 0 after the grace period and no child or worker outlives them.
#[test]
fn sigterm_during_a_storm_stops_every_child() {
    let models = [
        (FORK, &["--grace", "300ms"][..]),
        (
            Model {
                args: &["prefork", "--workers", "3"],
                shape: Shape::PoolAccept,
                fd_per_client: false,
            },
            &["--grace", "300ms"][..],
        ),
        (
            Model {
                args: &["workers", "--workers", "3"],
                shape: Shape::Elastic,
                fd_per_client: false,
            },
            &["--grace", "300ms"][..],
        ),
    ];
    for (model, extra) in models {
        let mut server = model.start(extra).unwrap();
        let mut storm: Vec<TcpStream> = Vec::new();
        for i in 0..6 {
            let mut c = server.connect();
            if i < 3 {
                // These are being served; the rest wait (prefork) or have a child.
                let msg = format!("storm {i}\n");
                assert_eq!(round_trip(&mut c, msg.as_bytes()), upper(msg.as_bytes()));
            }
            storm.push(c);
        }
        let children = server.children();
        assert!(children.len() >= 3, "{:?}: {children:?}", model.args);
        signal(server.pid, libc::SIGTERM);
        let status = server
            .wait_exit(Duration::from_millis(300) + MARGIN)
            .expect("exit after the grace period");
        assert_eq!(status.code(), Some(0), "{:?}: {status:?}", model.args);
        for pid in children {
            assert!(
                eventually(Duration::from_secs(5), || !running(pid)),
                "{:?}: child {pid} outlived the server",
                model.args
            );
        }
    }
}

/// A fork child killed by a signal is reaped and its slot freed: under
/// `--max-conns 1` the next client is served, and the death is logged.
#[test]
fn fork_child_killed_by_a_signal_is_accounted_for() {
    let server = FORK.start(&["--max-conns", "1"]).unwrap();
    let mut victim = server.connect();
    assert_eq!(round_trip(&mut victim, b"doomed\n"), b"DOOMED\n");
    let children = server.children();
    assert_eq!(children.len(), 1, "{children:?}");
    signal(children[0], libc::SIGKILL);
    time_until_closed(&mut victim, IO_TIMEOUT);
    let mut next = server.connect();
    assert_eq!(round_trip(&mut next, b"next\n"), b"NEXT\n");
    assert!(
        eventually(Duration::from_secs(5), || server
            .stderr()
            .contains("killed by SIGKILL")),
        "stderr: {}",
        server.stderr()
    );
    assert!(
        eventually(Duration::from_secs(5), || server.zombies().is_empty()),
        "zombies: {:?}",
        server.zombies()
    );
}

/// A worker killed with SIGKILL is reaped and replaced: the worker count returns
/// to N, service continues, and the death is logged (each prefork mode that hands
/// out connections differently, and the workers model's event loops).
#[test]
fn a_killed_worker_is_replaced() {
    let runs: [(&[&str], &str); 3] = [
        (&["prefork", "--workers", "3", "--mode", "nolock"], "nolock"),
        (&["prefork", "--workers", "3", "--mode", "passfd"], "passfd"),
        (&["workers", "--workers", "3"], "workers"),
    ];
    for (args, mode) in runs {
        let model = Model {
            args,
            shape: Shape::PoolAccept,
            fd_per_client: false,
        };
        let server = model.start(&[]).unwrap();
        assert!(
            eventually(Duration::from_secs(5), || server.children().len() == 3),
            "{mode}: workers {:?}",
            server.children()
        );
        let victim = server.children()[0];
        signal(victim, libc::SIGKILL);
        assert!(
            eventually(Duration::from_secs(5), || {
                let workers = server.children();
                workers.len() == 3 && !workers.contains(&victim)
            }),
            "{mode}: workers after the kill {:?}",
            server.children()
        );
        for i in 0..6 {
            let mut c = server.connect();
            let msg = format!("{mode} after {i}\n");
            assert_eq!(round_trip(&mut c, msg.as_bytes()), upper(msg.as_bytes()));
        }
        assert!(
            server.stderr().contains("was killed by SIGKILL"),
            "{mode}: stderr {}",
            server.stderr()
        );
        assert!(
            server.zombies().is_empty(),
            "{mode}: {:?}",
            server.zombies()
        );
    }
}

// ---------------------------------------------------------------------------
// The load generator and the CLI when things go wrong.

/// `socklab load` against a server SIGKILLed mid-run ends on time, says what went
/// wrong, exits non-zero with `--strict`, and never panics.
#[test]
fn load_survives_a_server_killed_mid_run() {
    let server = Server::start_args(&["serve", "nonblocking", "--tcp", "127.0.0.1:0"]);
    let mut load = std::process::Command::new(env!("CARGO_BIN_EXE_socklab"))
        .args(["load", &server.tcp.to_string(), "--duration", "2s"])
        .args(["--warmup", "0", "--conns", "4", "--no-progress", "--strict"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run socklab load");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    signal(server.pid, libc::SIGKILL);
    drop(server);
    while load.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "socklab load still running 15 s after its server died"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = load.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("went away") || stderr.contains("errors"),
        "{stderr}"
    );
    assert!(
        stdout.contains("reset") || stdout.contains("refused"),
        "the report names the errors: {stdout}"
    );
}

/// `socklab load` against an address whose SYNs go unanswered (a listener with a
/// full backlog that never accepts) ends on time with a clear message.
#[test]
fn load_against_an_unanswering_address_fails_clearly() {
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue (backlog 0 holds one); later SYNs are dropped.
    let _filler = connect(addr);
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_socklab"))
        .args([
            "load",
            &addr.to_string(),
            "--duration",
            "1s",
            "--warmup",
            "0",
        ])
        .args([
            "--connect-timeout",
            "300ms",
            "--conns",
            "2",
            "--no-progress",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run socklab load");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("no correct reply"), "{stderr}");
    assert!(stderr.contains("timed out"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Bad flags and arguments to `load`, `report`, `compare` and the model options
/// of `serve` end in a clear message and a non-zero exit, never a panic. (cli.rs
/// covers `serve`'s common flags and `client`.)
#[test]
fn misuse_of_load_report_and_model_flags_is_a_clear_error() {
    let cases: &[(&[&str], &str)] = &[
        (&["load"], "required"),
        (&["load", "127.0.0.1:9", "--conns", "0"], "at least 1"),
        (
            &["load", "127.0.0.1:9", "--duration", "banana"],
            "bad duration",
        ),
        (&["load", "127.0.0.1:9", "--size", "0"], "at least 1"),
        (&["load", "ftp://127.0.0.1:9"], "unknown scheme"),
        (&["load", "not-an-address"], "not a HOST:PORT"),
        (
            &["load", "merge", "/nonexistent/socklab.hlog"],
            "/nonexistent/socklab.hlog",
        ),
        (&["report", "/nonexistent/socklab-run"], "results.json"),
        (&["compare", "--models", "nosuch"], "unknown model"),
        (
            &["compare", "--scenarios", "c100k", "--c100k-loaders", "0"],
            "--c100k-loaders must be between 1",
        ),
        (
            &["compare", "--scenarios", "c100k", "--c100k-loaders", "2"],
            "one loader holds at most",
        ),
        (
            &["compare", "--c100k-conns", "0"],
            "--c100k-conns must be at least 1",
        ),
        (
            &["compare", "--c100k-rate", "0"],
            "--c100k-rate must be a positive",
        ),
        (
            &["serve", "pool", "--workers", "0", "--tcp", "127.0.0.1:0"],
            "at least 1",
        ),
        (
            &["serve", "uring", "--loops", "0", "--tcp", "127.0.0.1:0"],
            "at least 1",
        ),
        (
            &["serve", "prefork", "--mode", "spin", "--tcp", "127.0.0.1:0"],
            "unknown prefork mode",
        ),
        (
            &[
                "serve",
                "pool",
                "--dispatch",
                "lottery",
                "--tcp",
                "127.0.0.1:0",
            ],
            "unknown dispatch",
        ),
        (
            &[
                "serve",
                "async",
                "--runtime",
                "fast",
                "--tcp",
                "127.0.0.1:0",
            ],
            "unknown runtime",
        ),
        (
            &[
                "serve",
                "thread",
                "--idle-timeout",
                "banana",
                "--tcp",
                "127.0.0.1:0",
            ],
            "bad duration",
        ),
    ];
    for (args, expected) in cases {
        let out = std::process::Command::new("timeout")
            .arg("20")
            .arg(env!("CARGO_BIN_EXE_socklab"))
            .args(*args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run socklab");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_ne!(out.status.code(), Some(124), "{args:?} hung");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
}

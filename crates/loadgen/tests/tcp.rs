//! The TCP load generator against small in-test servers.

mod common;

use std::time::{Duration, Instant};

use common::{config, dead_port, run_bounded, Behavior, Served, TcpServer};
use socklab_loadgen::{Framing, LoadConfig, LoadError, Mode};

const LIMIT: Duration = Duration::from_secs(10);

/// A counted closed-loop run in lines framing reports exactly the requests and bytes the server served.
#[test]
fn closed_loop_counts_match_the_server() {
    let server = TcpServer::start(Framing::Lines, Behavior::Uppercase);
    let cfg = LoadConfig {
        framing: Framing::Lines,
        conns: 5,
        pipeline: 3,
        size: 32,
        requests: Some(2_003),
        ..config(server.addr)
    };
    let r = run_bounded(&cfg, LIMIT);
    assert_eq!(r.stopped_by, "requests", "{r}");
    assert_eq!(r.counts.sent, 2_003);
    assert_eq!(r.counts.ok, 2_003, "{r}");
    assert_eq!(
        r.counts.mismatched + r.counts.failed + r.counts.unfinished,
        0
    );
    assert_eq!(Served::get(&server.served.requests), 2_003);
    assert_eq!(r.counts.bytes_sent, 2_003 * 32);
    assert_eq!(Served::get(&server.served.bytes_in), r.counts.bytes_sent);
    assert_eq!(
        Served::get(&server.served.bytes_out),
        r.counts.bytes_received
    );
    assert_eq!(r.latency_timed.count, 2_003);
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.throughput.requests_per_s > 0.0);
}

/// In raw framing the bytes the generator reports sending and receiving are exactly the server's.
#[test]
fn raw_byte_counts_match_the_server() {
    let server = TcpServer::start(Framing::Raw, Behavior::Uppercase);
    let cfg = LoadConfig {
        conns: 3,
        size: 100,
        requests: Some(999),
        ..config(server.addr)
    };
    let r = run_bounded(&cfg, LIMIT);
    assert_eq!(r.counts.ok, 999, "{r}");
    assert_eq!(r.counts.bytes_sent, 99_900);
    assert_eq!(Served::get(&server.served.bytes_in), 99_900);
    assert_eq!(Served::get(&server.served.bytes_out), 99_900);
    assert_eq!(r.counts.bytes_received, 99_900);
}

/// A counted open-loop run sends exactly its requests, on schedule, and reports the rate it reached.
#[test]
fn open_loop_counts_match_the_server() {
    let server = TcpServer::start(Framing::Lines, Behavior::Uppercase);
    let cfg = LoadConfig {
        framing: Framing::Lines,
        mode: Mode::Open,
        rate: Some(2_000.0),
        conns: 4,
        requests: Some(500),
        ..config(server.addr)
    };
    let r = run_bounded(&cfg, LIMIT);
    assert_eq!(r.counts.ok, 500, "{r}");
    assert_eq!(Served::get(&server.served.requests), 500);
    let rate = r.rate.expect("open mode reports its rate");
    assert!(
        rate.achieved_per_s > 1_000.0 && rate.achieved_per_s < 3_000.0,
        "{r}"
    );
    // 500 requests at 2,000/s take about 0.25 s.
    assert!(r.measured_s > 0.2 && r.measured_s < 1.0, "{r}");
}

/// An echo server that does not uppercase is reported as mismatches, never as success.
#[test]
fn plain_echo_is_reported_as_mismatches() {
    let server = TcpServer::start(Framing::Raw, Behavior::PlainEcho);
    let cfg = LoadConfig {
        conns: 2,
        requests: Some(200),
        ..config(server.addr)
    };
    let r = run_bounded(&cfg, LIMIT);
    assert_eq!(r.counts.mismatched, 200, "{r}");
    assert_eq!(r.counts.ok, 0);
    assert_eq!(r.throughput.requests_per_s, 0.0);
    assert!(
        r.warnings.iter().any(|w| w.contains("not the uppercased")),
        "{r}"
    );
}

/// A server that uppercases Latin-1 as well as ASCII is caught: payloads carry every
/// byte value, and the expected reply changes `a`–`z` only. (With payloads of
/// letters and digits, as before, it passed with no mismatch.)
#[test]
fn a_server_that_uppercases_latin1_is_reported_as_mismatches() {
    for framing in [Framing::Raw, Framing::Lines] {
        let server = TcpServer::start(framing, Behavior::Latin1Uppercase);
        let cfg = LoadConfig {
            framing,
            conns: 2,
            requests: Some(400),
            ..config(server.addr)
        };
        let r = run_bounded(&cfg, LIMIT);
        // 21 of a 64-byte request's bytes are of any value; a request escapes only
        // if none of them is one of Latin-1's 31 lowercase letters (about 7 %).
        assert!(r.counts.mismatched >= 300, "{framing}: {r}");
        assert_eq!(r.counts.ok + r.counts.mismatched, 400, "{framing}: {r}");
    }
}

/// Churn opens and closes one connection per request, each verified, and the counts match the server's.
#[test]
fn churn_counts_connections_and_requests() {
    let server = TcpServer::start(Framing::Lines, Behavior::Uppercase);
    let cfg = LoadConfig {
        framing: Framing::Lines,
        mode: Mode::Churn,
        conns: 4,
        requests: Some(200),
        ..config(server.addr)
    };
    let r = run_bounded(&cfg, LIMIT);
    assert_eq!(r.counts.sessions, 200, "{r}");
    assert_eq!(r.counts.ok, 200);
    assert_eq!(Served::get(&server.served.conns), 200);
    assert_eq!(Served::get(&server.served.requests), 200);
    assert_eq!(r.connect.expect("churn reports connect time").count, 200);
    assert_eq!(r.connect_to_reply.unwrap().count, 200);
    assert!(r.throughput.connections_per_s.unwrap() > 0.0);
    assert_eq!(r.connections.counts.succeeded, 200);
}

/// A server that vanishes mid-run yields counted errors (closed/reset, then refused reconnects), no panic, and the run ends on time.
#[test]
fn vanishing_server_is_counted_and_the_run_ends_on_time() {
    let mut server = TcpServer::start(Framing::Raw, Behavior::Uppercase);
    let cfg = LoadConfig {
        conns: 4,
        duration: Duration::from_millis(1_200),
        ..config(server.addr)
    };
    let began = Instant::now();
    let runner = std::thread::spawn(move || run_bounded(&cfg, LIMIT));
    std::thread::sleep(Duration::from_millis(400));
    server.vanish();
    let r = runner.join().expect("no panic");
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "took {:?}",
        began.elapsed()
    );
    assert!(r.counts.ok > 0, "{r}");
    assert!(r.errors.closed + r.errors.reset > 0, "{r}");
    assert!(r.errors.refused > 0, "reconnects should be refused: {r}");
    assert!(r.connections.counts.retries > 0);
    assert!(!r.errors.messages.is_empty());
}

/// A server that answers and closes, its FIN riding on the reply's segment: the
/// generator sees the end of stream at once and sends nothing more on that
/// connection. (It stops reading after a short read only when the event did not
/// announce the end of stream; else it would miss the FIN, send the next request
/// into a dead connection and count it failed.)
#[test]
fn fin_behind_the_reply_is_counted_as_closed() {
    use std::io::{Read, Write};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                };
                s.set_nonblocking(false).expect("blocking");
                s.set_read_timeout(Some(LIMIT)).expect("timeout");
                let mut req = [0u8; 64];
                if s.read_exact(&mut req).is_err() {
                    continue;
                }
                // TCP_CORK holds the reply until close(): data and FIN leave in one
                // segment, so both are queued before the generator's first read.
                socket2::SockRef::from(&s).set_cork(true).expect("TCP_CORK");
                s.write_all(&req.to_ascii_uppercase()).expect("reply");
                drop(s);
            }
        })
    };
    let cfg = LoadConfig {
        conns: 1,
        threads: 1,
        size: 64,
        duration: Duration::from_millis(300),
        ..config(addr)
    };
    let r = run_bounded(&cfg, LIMIT);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    server.join().expect("server thread");
    assert!(r.counts.ok > 0, "{r}");
    assert!(r.errors.closed > 0, "{r}");
    // No request was sent into the closed connection: every one sent was answered.
    assert_eq!((r.counts.failed, r.counts.sent), (0, r.counts.ok), "{r}");
}

/// A counted run against a server that serves one connection at a time, to its
/// end, then the next (the iterative model): each connection closes once its share
/// is answered, so the server gets to the others and every request is counted.
#[test]
fn counted_run_completes_against_a_one_at_a_time_server() {
    use std::io::{Read, Write};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        let mut served = 0;
        while served < 5 {
            let (mut s, _) = listener.accept().expect("accept");
            s.set_read_timeout(Some(LIMIT)).expect("timeout");
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = s.read(&mut buf) {
                s.write_all(&buf[..n].to_ascii_uppercase()).expect("reply");
            }
            served += 1;
        }
    });
    let cfg = LoadConfig {
        conns: 5,
        threads: 1,
        requests: Some(100),
        ..config(addr)
    };
    let r = run_bounded(&cfg, LIMIT);
    server.join().expect("server thread");
    assert_eq!(r.stopped_by, "requests", "{r}");
    assert_eq!((r.counts.ok, r.counts.failed), (100, 0), "{r}");
}

/// Nothing listening: every connect is refused and counted; the run ends at its duration with a clear warning.
#[test]
fn unreachable_address_counts_refusals() {
    let cfg = LoadConfig {
        conns: 3,
        duration: Duration::from_millis(300),
        ..config(dead_port())
    };
    let r = run_bounded(&cfg, LIMIT);
    assert_eq!(r.counts.ok, 0);
    assert!(r.errors.refused >= 3, "{r}");
    assert_eq!(r.connections.connected_at_start, 0);
    assert!(
        r.warnings.iter().any(|w| w.contains("no correct reply")),
        "{r}"
    );
    assert!(
        r.errors.messages[0].contains("refused"),
        "{:?}",
        r.errors.messages
    );
}

/// Misuse is a clear configuration error, not a panic.
#[test]
fn misuse_is_a_clear_error() {
    let cfg = LoadConfig {
        conns: 0,
        ..config(dead_port())
    };
    match socklab_loadgen::run(&cfg, Default::default()) {
        Err(LoadError::Config(e)) => assert!(e.to_string().contains("conns")),
        other => panic!("expected a config error, got {other:?}"),
    }
}

/// The JSON report round-trips, and interval logs of two runs merge into the sum of their histograms.
#[test]
fn json_and_interval_logs_round_trip_and_merge() {
    let server = TcpServer::start(Framing::Raw, Behavior::Uppercase);
    let cfg = LoadConfig {
        conns: 2,
        requests: Some(300),
        ..config(server.addr)
    };
    let r = run_bounded(&cfg, LIMIT);
    let json = r.to_json();
    assert!(json.contains("\"schema\": \"socklab-load/2\""));
    let back: socklab_loadgen::LoadReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.counts, r.counts);
    assert_eq!(back.histograms.latency_timed.0.len(), 300);

    let dir = std::env::temp_dir().join(format!("socklab-loadgen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.hlog"), dir.join("b.hlog"));
    for p in [&a, &b] {
        let mut f = std::fs::File::create(p).unwrap();
        r.write_hdr_log(&mut f).unwrap();
    }
    let merged = socklab_loadgen::merge_files(&[&a, &b]).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(merged.by_tag["latency"].len(), 600);
    assert_eq!(merged.files.len(), 2);
    assert!(merged.to_string().contains("latency"));
}

/// Connections a server never serves (it accepts one client, the rest wait in its
/// backlog) are counted as starved, and they count in the latency: their requests
/// are in the record with their whole wait, so p99 over all clients is at least
/// half the window although the one served client was answered in microseconds.
#[test]
fn a_server_that_serves_only_its_first_client_has_the_others_wait_in_its_p99() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        // Serve the first client only, like an iterative server stuck on it.
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || stream.write_all(&buf[..n].to_ascii_uppercase()).is_err() {
                break;
            }
        }
        drop(listener);
    });
    let window = Duration::from_millis(400);
    let cfg = LoadConfig {
        conns: 4,
        duration: window,
        warmup: Duration::from_millis(100),
        ramp_limit: Duration::from_millis(300),
        ..config(addr)
    };
    let r = run_bounded(&cfg, LIMIT);
    server.join().unwrap();
    assert_eq!(r.counts.starved, 3, "{r}");
    assert!(r.counts.ok > 100, "{r}");
    let clients = r.clients.expect("closed loop has a per-client view");
    assert_eq!((clients.served, clients.requests_min), (1, 0), "{r}");
    assert!(clients.fairness.unwrap() < 0.3, "{r}");
    let ramp = r.connections.ramp.expect("closed loop has a ramp");
    assert!(!ramp.complete && ramp.served == 1, "{r}");
    // Three requests waited through the ramp, warm-up and window (and the served
    // client may have had one in flight).
    assert!((3..=4).contains(&r.counts.unfinished), "{r}");
    assert!(r.latency_timed.max_us >= 800_000, "{r}");
    let half = window.as_micros() as u64 / 2;
    assert!(
        r.latency.p99_us >= half,
        "p99 over all clients hid the starved: {r}"
    );
    assert!(
        r.latency_timed.p99_us < half,
        "as timed, one fast client dominates: {r}"
    );
}

/// A server that accepts slowly (one client every 20 ms, as a thread-per-client
/// server busy with its other clients does) is given the time to serve everyone
/// once before the window opens: the ramp says how long it took, and no client is
/// starved in the window.
#[test]
fn a_slow_accepting_server_ramps_up_before_the_window_opens() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    const CONNS: usize = 16;
    const ACCEPT_EVERY: Duration = Duration::from_millis(20);
    let server = std::thread::spawn(move || {
        let mut handlers = Vec::new();
        for _ in 0..CONNS {
            std::thread::sleep(ACCEPT_EVERY);
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(LIMIT)).unwrap();
            handlers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n].to_ascii_uppercase()).is_err() {
                        break;
                    }
                }
            }));
        }
        for h in handlers {
            let _ = h.join();
        }
    });
    let cfg = LoadConfig {
        conns: CONNS,
        duration: Duration::from_millis(300),
        ramp_limit: Duration::from_secs(5),
        ..config(addr)
    };
    let r = run_bounded(&cfg, LIMIT);
    server.join().unwrap();
    let ramp = r.connections.ramp.expect("closed loop has a ramp");
    assert!(ramp.complete, "{r}");
    assert_eq!(ramp.served, CONNS as u64, "{r}");
    let accepting = ACCEPT_EVERY * CONNS as u32;
    assert!(
        ramp.length_s >= accepting.as_secs_f64() * 0.8,
        "the ramp ({:.3} s) cannot be shorter than accepting everyone ({accepting:?}): {r}",
        ramp.length_s
    );
    assert_eq!(r.counts.starved, 0, "{r}");
    assert_eq!(r.clients.unwrap().served, CONNS as u64, "{r}");
}

/// In a closed loop the mean latency over every measured request is what Little's
/// law predicts from the throughput (requests in flight / replies per second).
#[test]
fn littles_law_holds_in_a_closed_loop() {
    let server = TcpServer::start(Framing::Raw, Behavior::Uppercase);
    let cfg = LoadConfig {
        conns: 8,
        duration: Duration::from_millis(600),
        warmup: Duration::from_millis(100),
        ..config(server.addr)
    };
    let r = run_bounded(&cfg, LIMIT);
    let little = r.little.expect("closed loop checks Little's law");
    assert_eq!(little.in_flight, 8);
    assert!(
        (0.75..=1.25).contains(&little.ratio()),
        "measured mean {:.1} µs vs predicted {:.1} µs: {r}",
        little.measured_mean_us,
        little.predicted_mean_us
    );
}

/// A counted run against an address nobody answers gives up after
/// UNREACHABLE_LIMIT instead of waiting for its long duration cap.
#[test]
fn counted_run_gives_up_on_an_unreachable_server() {
    let cfg = LoadConfig {
        requests: Some(10),
        duration: Duration::from_secs(600),
        ..config(dead_port())
    };
    let started = Instant::now();
    let r = run_bounded(&cfg, Duration::from_secs(30));
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "took {:?}",
        started.elapsed()
    );
    assert!(r.warnings.iter().any(|w| w.contains("gave up")), "{r}");
    assert_eq!(r.counts.ok, 0);
}

/// With several load-generator threads, none closes its connections before all
/// have finished measuring: a server with two workers facing three connections
/// shows one starved connection, whose one request is still waiting at the end
/// (not served in the last milliseconds once another thread let go of a worker).
#[test]
fn threads_finish_together_so_a_starved_connection_stays_starved() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Two workers, each serving one connection until it closes (a pool of two).
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let listener = listener.try_clone().unwrap();
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok((mut stream, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n].to_ascii_uppercase()).is_err() {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    let cfg = LoadConfig {
        conns: 3,
        threads: 2,
        duration: Duration::from_millis(600),
        warmup: Duration::ZERO,
        ..config(addr)
    };
    let r = run_bounded(&cfg, LIMIT);
    assert_eq!(r.counts.starved, 1, "{r}");
    // Its one request is in the latency, waiting since before the window.
    assert!(r.latency_timed.max_us >= 600_000, "{r}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
}

/// With `bind`, every connection comes from that address (as the kernel reports
/// it), and without it from the kernel's choice: 127.0.0.1 towards 127.0.0.1.
#[test]
fn bound_connections_come_from_their_address() {
    let server = TcpServer::start(Framing::Raw, Behavior::Uppercase);
    let source: std::net::IpAddr = "127.0.0.9".parse().unwrap();
    let cfg = LoadConfig {
        conns: 4,
        requests: Some(40),
        bind: Some(source),
        ..config(server.addr)
    };
    let r = run_bounded(&cfg, LIMIT);
    assert_eq!(r.counts.ok, 40, "{r}");
    assert_eq!(r.connections.sources, [source], "{r}");
    assert!(r.to_string().contains("source       127.0.0.9"), "{r}");
    let unbound = run_bounded(&LoadConfig { bind: None, ..cfg }, LIMIT);
    assert_eq!(
        unbound.connections.sources,
        ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
}

/// A held run ramps, says so, and sends unmeasured until its go; its window then
/// opens one warm-up after the go's instant (so generators given one instant
/// measure one window), and it keeps its connections until released.
#[test]
fn a_held_run_measures_from_its_go_and_closes_on_release() {
    use socklab_loadgen::{Hold, Hooks, Ramp};
    use std::sync::{Arc, Mutex};
    use std::time::{SystemTime, UNIX_EPOCH};

    let server = TcpServer::start(Framing::Raw, Behavior::Uppercase);
    let cfg = LoadConfig {
        mode: Mode::Open,
        rate: Some(400.0),
        conns: 4,
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(300),
        ..config(server.addr)
    };
    let hold = Arc::new(Hold::new());
    let ramped: Arc<Mutex<Option<Ramp>>> = Arc::default();
    let run = {
        let (hold, ramped) = (Arc::clone(&hold), Arc::clone(&ramped));
        std::thread::spawn(move || {
            let on_ramped = |r: Ramp| *ramped.lock().unwrap() = Some(r);
            let hooks = Hooks {
                hold: Some(&hold),
                ramped: Some(&on_ramped),
                ..Default::default()
            };
            socklab_loadgen::run(&cfg, hooks)
        })
    };
    let deadline = Instant::now() + LIMIT;
    let ramp = loop {
        if let Some(r) = *ramped.lock().unwrap() {
            break r;
        }
        assert!(Instant::now() < deadline, "never ramped");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(ramp.complete && ramp.served == 4, "{ramp:?}");
    // Held: the traffic goes on unmeasured, for as long as the caller waits.
    std::thread::sleep(Duration::from_millis(400));
    let before = Served::get(&server.served.requests);
    assert!(before > 100, "no traffic while held: {before}");
    let go_wall = SystemTime::now() + Duration::from_millis(50);
    hold.go(Instant::now() + Duration::from_millis(50));
    // Past the window's end, and past the wait of an unheld run's threads for
    // the watcher, it still holds its connections.
    std::thread::sleep(
        Duration::from_millis(50 + 100 + 300 + 300) + socklab_loadgen::shared::FINISH_WAIT,
    );
    assert!(!run.is_finished(), "closed before its release");
    hold.release();
    let r = run.join().unwrap().expect("held run");
    let expected = go_wall.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() + 0.1;
    assert!(
        (r.started_at_unix_s - expected).abs() < 0.02,
        "window opened at {} instead of {expected}",
        r.started_at_unix_s
    );
    // 300 ms at 400/s: 120 requests due in the window, every one answered.
    assert!((115..=125).contains(&r.counts.ok), "{r}");
    assert_eq!(r.clients.unwrap().served, 4, "{r}");
}

//! accept failing with EMFILE on the ring. Alone in its own test binary: it lowers
//! the process's descriptor limit, which would break tests running beside it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use socklab_server_kit::{bind_tcp, BindOptions, Config, Context};
use socklab_uring::{serve, Options};

fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let t = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
    };
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn nofile() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit
}

fn set_nofile(limit: libc::rlimit) {
    // SAFETY: setrlimit only reads the struct we pass.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

/// Out of descriptors, the loop waits RESOURCE_BACKOFF on a timeout op between
/// accept attempts instead of spinning, and serves the waiting client once
/// descriptors are back.
///
/// io_uring reads RLIMIT_NOFILE when an accept is *submitted* (a multishot
/// accept keeps the limit it was armed with), so the limit is lowered before the
/// server starts: it leaves room for exactly one more descriptor, the ring's.
#[test]
fn emfile_backs_off_instead_of_spinning_and_recovers() {
    if let Err(why) = socklab_uring::availability() {
        eprintln!("skipping: {why}");
        return;
    }
    let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), BindOptions::default()).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let cx = Context::new(Config {
        grace: Duration::from_millis(200),
        ..Config::default()
    })
    .unwrap();
    // The client's socket exists before the limit drops; connect() needs no new fd.
    let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let saved = nofile();
    let lowest_free = std::fs::File::open("/dev/null").unwrap().as_raw_fd() as libc::rlim_t;
    set_nofile(libc::rlimit {
        rlim_cur: lowest_free + 1,
        rlim_max: saved.rlim_max,
    });
    let server_cx = cx.clone();
    let server = thread::spawn(move || serve(listener, &server_cx, &Options::default()));
    client
        .connect_timeout(&addr.into(), Duration::from_secs(3))
        .unwrap();
    let mut client: TcpStream = client.into();
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    client.write_all(b"wait").unwrap();

    let (cpu0, t0) = (cpu_time(), Instant::now());
    thread::sleep(Duration::from_millis(400));
    let (cpu, wall) = (cpu_time() - cpu0, t0.elapsed());
    let accepted = cx.counters.snapshot().accepted;
    set_nofile(saved);
    assert!(
        !server.is_finished(),
        "serve returned while out of descriptors"
    );
    assert_eq!(accepted, 0, "accepted past the descriptor limit");
    assert!(
        cpu < wall / 4,
        "the loop spun on EMFILE: {cpu:?} of CPU in {wall:?}"
    );

    let mut reply = [0u8; 4];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"WAIT");
    drop(client);
    cx.shutdown.trigger();
    server.join().unwrap().unwrap();
}

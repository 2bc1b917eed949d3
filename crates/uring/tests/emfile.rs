//! accept failing with EMFILE on the ring. Alone in its own test binary: it lowers
//! the process's descriptor limit, which would break tests running beside it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use socklab_server_kit::usage::TreeUsage;
use socklab_server_kit::{bind_tcp, BindOptions, Config, Context};
use socklab_uring::{serve, Options};

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
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let lowest_free = std::fs::File::open("/dev/null").unwrap().as_raw_fd() as u64;
    setrlimit(Resource::RLIMIT_NOFILE, lowest_free + 1, hard).unwrap();
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

    let (cpu0, t0) = (TreeUsage::now().cpu(), Instant::now());
    thread::sleep(Duration::from_millis(400));
    let (cpu, wall) = (TreeUsage::now().cpu() - cpu0, t0.elapsed());
    let accepted = cx.counters.snapshot().accepted;
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
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

//! accept() failing with EMFILE. Alone in its own test binary: it lowers the
//! process's descriptor limit, which would break tests running beside it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use socklab_nonblocking::{serve, Options};
use socklab_server_kit::usage::TreeUsage;
use socklab_server_kit::{bind_tcp, BindOptions, Config, Context};

/// Out of descriptors, the loop pauses accept instead of spinning on a listener
/// that stays readable, and serves the waiting client once descriptors are back.
#[test]
fn emfile_backs_off_instead_of_spinning_and_recovers() {
    let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), BindOptions::default()).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let cx = Context::new(Config {
        grace: Duration::from_millis(200),
        ..Config::default()
    })
    .unwrap();
    let server_cx = cx.clone();
    let server = thread::spawn(move || serve(listener, &server_cx, &Options::default()));

    // One round trip first: the loop is up (its epoll descriptor exists).
    let mut warm = TcpStream::connect(addr).unwrap();
    warm.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    warm.write_all(b"up").unwrap();
    let mut up = [0u8; 2];
    warm.read_exact(&mut up).unwrap();
    drop(warm);
    // ...and has closed its side, so no descriptor is freed while the limit is low.
    assert!(cx
        .counters
        .wait_idle(Instant::now() + Duration::from_secs(3)));

    // The client's socket exists before the limit drops; connect() needs no new fd.
    let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    // The lowest free descriptor number: with the soft limit there, the next fd
    // anyone allocates (the server's accept) fails with EMFILE.
    let lowest_free = {
        let probe = std::fs::File::open("/dev/null").unwrap();
        probe.as_raw_fd() as u64
    };
    setrlimit(Resource::RLIMIT_NOFILE, lowest_free, hard).unwrap();
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
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    assert!(
        cpu < wall / 4,
        "the loop spun on EMFILE: {cpu:?} of CPU in {wall:?}"
    );
    assert_eq!(
        cx.counters.snapshot().accepted,
        1,
        "accepted past the limit"
    );

    let mut reply = [0u8; 4];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"WAIT");
    drop(client);
    cx.shutdown.trigger();
    server.join().unwrap().unwrap();
}

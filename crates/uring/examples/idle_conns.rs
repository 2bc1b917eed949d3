//! Memory per idle connection of a running `socklab serve` process: opens N
//! connections, has each send one request and read its reply, then holds them
//! all idle and compares the server's RSS and PSS (`/proc/PID/smaps_rollup`)
//! with what it was before the first connect.
//!
//! ```text
//! taskset -c 0 socklab serve uring --tcp 127.0.0.1:0     # prints its address and pid
//! taskset -c 1 cargo run --release -p socklab-uring --example idle_conns -- ADDR PID 5000
//! ```
//!
//! Raw framing (the server's default): each connection sends 64 bytes and reads
//! the 64 uppercased bytes back, so every connection has been served once —
//! the state a mostly-idle client of a real server is in. Needs 5,000 free
//! descriptors here (one per connection).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Bytes each connection sends before going idle.
const REQUEST: usize = 64;
/// How long to let the server settle before reading its memory again.
const SETTLE: Duration = Duration::from_secs(1);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, pid, count] = args.as_slice() else {
        eprintln!("usage: idle_conns ADDR PID N");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr.parse().expect("ADDR: host:port");
    let count: usize = count.parse().expect("N: a number of connections");
    let before = Memory::of(pid);
    let request = [b'a'; REQUEST];
    let mut reply = [0u8; REQUEST];
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        let mut stream = TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("connect {addr} (connection {i}): {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(&request).unwrap();
        stream
            .read_exact(&mut reply)
            .unwrap_or_else(|e| panic!("reply on connection {i}: {e}"));
        assert_eq!(reply, [b'A'; REQUEST]);
        held.push(stream);
    }
    std::thread::sleep(SETTLE);
    let after = Memory::of(pid);
    let per = |b: u64, a: u64| (a as f64 - b as f64) / count as f64;
    println!(
        "{count} idle connections: RSS {} -> {} KiB ({:.2} KiB per connection), \
         PSS {} -> {} KiB ({:.2} KiB per connection)",
        before.rss_kib,
        after.rss_kib,
        per(before.rss_kib, after.rss_kib),
        before.pss_kib,
        after.pss_kib,
        per(before.pss_kib, after.pss_kib),
    );
    drop(held);
}

/// What `/proc/PID/smaps_rollup` says, in KiB.
struct Memory {
    rss_kib: u64,
    pss_kib: u64,
}

impl Memory {
    fn of(pid: &str) -> Memory {
        let path = format!("/proc/{pid}/smaps_rollup");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let field = |name: &str| -> u64 {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or_else(|| panic!("{path}: no {name}"))
        };
        Memory {
            rss_kib: field("Rss:"),
            pss_kib: field("Pss:"),
        }
    }
}

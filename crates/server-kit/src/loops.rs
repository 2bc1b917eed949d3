//! Running N independent event loops: the thread-per-core shape shared by the
//! readiness (`nonblocking`) and completion (`uring`) models.
//!
//! Each loop owns its own socket and serves its own share of `--max-conns`; the
//! loops share nothing, so there is no lock between them. With `SO_REUSEPORT` set
//! on the first socket, every other loop binds its own socket to the same address
//! and the kernel spreads connections (or datagrams) between them by a hash of the
//! addresses. Without it, the loops share `dup()`s of one socket, and every loop's
//! readiness wait wakes for each new connection (epoll's thundering herd).

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;

use crate::{bind_tcp, bind_udp, BindOptions, Shutdown};

/// At least one loop, and no more loops than connections allowed, so each loop's
/// share of `max_conns` is at least one.
pub fn loop_count(requested: usize, max_conns: usize) -> usize {
    requested.clamp(1, max_conns.max(1))
}

/// One socket per loop, `first` included. If `first` has `SO_REUSEPORT`, the
/// others are new sockets bound to its address with `bind`; otherwise they are
/// `dup()`s of `first` made with `share`.
pub fn per_loop<S: AsFd>(
    first: S,
    loops: usize,
    addr: SocketAddr,
    bind: fn(SocketAddr, BindOptions) -> io::Result<S>,
    share: fn(&S) -> io::Result<S>,
) -> io::Result<Vec<S>> {
    let reuse_port = socket2::SockRef::from(&first).reuse_port()?;
    let mut sockets = Vec::with_capacity(loops);
    for _ in 1..loops {
        sockets.push(if reuse_port {
            let options = BindOptions {
                reuse_port: true,
                ..BindOptions::default()
            };
            bind(addr, options)?
        } else {
            share(&first)?
        });
    }
    sockets.insert(0, first);
    Ok(sockets)
}

/// One listening socket per loop on `first`'s address ([`per_loop`]). Bind them
/// before telling clients the address: with `SO_REUSEPORT` the kernel hashes each
/// new connection to one of the sockets that exist *when it arrives*, and there it
/// stays. Connections that come while only the first socket exists all queue on
/// the first loop, however many loops start a moment later (`socklab serve` once
/// announced first: of 16 clients connecting at once, often every one went to
/// loop 1 of 2, while loop 2 stood idle).
pub fn tcp_listeners(first: TcpListener, loops: usize) -> io::Result<Vec<TcpListener>> {
    let addr = first.local_addr()?;
    per_loop(first, loops, addr, bind_tcp, TcpListener::try_clone)
}

/// [`tcp_listeners`] for datagrams: one socket per loop on `first`'s address.
pub fn udp_sockets(first: UdpSocket, loops: usize) -> io::Result<Vec<UdpSocket>> {
    let addr = first.local_addr()?;
    per_loop(first, loops, addr, bind_udp, UdpSocket::try_clone)
}

/// Splits `total` into `n` shares that differ by at most one: each loop's part of
/// `max_conns`.
pub fn shares(total: usize, n: usize) -> Vec<usize> {
    (0..n)
        .map(|i| total / n + usize::from(i < total % n))
        .collect()
}

/// Runs one loop per item: the first on the calling thread, the rest on threads
/// of their own. A loop that fails triggers shutdown so the others stop too.
/// Returns when every loop has returned; the first error wins.
pub fn run_loops<T: Send>(
    items: impl IntoIterator<Item = T>,
    shutdown: &Shutdown,
    run: impl Fn(T) -> io::Result<()> + Sync,
) -> io::Result<()> {
    let mut items = items.into_iter();
    let first = items.next().expect("at least one loop");
    let run_one = |item| {
        let result = run(item);
        if result.is_err() {
            shutdown.trigger();
        }
        result
    };
    std::thread::scope(|scope| {
        let mut threads = Vec::new();
        for (i, item) in items.enumerate() {
            let run_one = &run_one;
            let spawned = std::thread::Builder::new()
                .name(format!("loop-{}", i + 1))
                .spawn_scoped(scope, move || run_one(item));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    shutdown.trigger();
                    return Err(e);
                }
            }
        }
        let mut result = run_one(first);
        for thread in threads {
            let joined = thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("an event loop thread panicked")));
            result = result.and(joined);
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        assert_eq!(shares(10, 3), [4, 3, 3]);
        assert_eq!(shares(2, 2), [1, 1]);
        assert_eq!(shares(10_000, 1), [10_000]);
        for (total, n) in [(7, 4), (100, 7), (5, 5)] {
            let s = shares(total, n);
            assert_eq!(s.iter().sum::<usize>(), total);
            assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
        }
    }

    #[test]
    fn loop_count_stays_within_one_and_max_conns() {
        assert_eq!(loop_count(0, 100), 1);
        assert_eq!(loop_count(4, 2), 2);
        assert_eq!(loop_count(3, 100), 3);
    }

    #[test]
    fn a_failing_loop_stops_the_others() {
        let shutdown = Shutdown::new().unwrap();
        let result = run_loops(0..3, &shutdown, |i| {
            if i == 1 {
                return Err(io::Error::other("loop 1 failed"));
            }
            while !shutdown.is_triggered() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Ok(())
        });
        assert!(result.is_err());
    }
}

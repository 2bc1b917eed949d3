//! The blocking datagram loop: one `recvfrom()`, one `sendto()` per request.
//!
//! UDP has no connections, so a per-*client* model (fork, thread per client) has
//! nothing to hand to a child: there is only one socket and a stream of datagrams
//! from anyone. The models that serve UDP run this loop on one thread (iterative),
//! on N threads sharing the socket (pool), or in N processes (prefork).

use std::io;
use std::net::UdpSocket;

use socklab_protocol::{uppercase_datagram, MAX_UDP_PAYLOAD};

use crate::{accept::SHUTDOWN_POLL, work, Context};

/// Answers datagrams on `socket` until shutdown. Safe to run on several threads or
/// processes over one socket: each `recvfrom()` takes one whole datagram.
pub fn serve_datagrams(socket: &UdpSocket, cx: &Context) -> io::Result<()> {
    let (config, counters) = (&cx.config, cx.counters);
    // Like accept() in the blocking models: wake every SHUTDOWN_POLL to check the flag.
    socket.set_read_timeout(Some(SHUTDOWN_POLL))?;
    // A buffer as large as the largest datagram: recvfrom() silently drops what
    // does not fit, which is the tutorial's recvfrom(1024) bug.
    let mut buf = vec![0u8; MAX_UDP_PAYLOAD];
    while !cx.shutdown.is_triggered() {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            // An ICMP port-unreachable from an earlier reply surfaces here as
            // ECONNREFUSED on Linux; it concerns a client that left, not us.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        };
        let datagram = &mut buf[..n];
        config.maybe_crash(datagram);
        uppercase_datagram(datagram);
        work::perform(config.work);
        if let Err(e) = socket.send_to(datagram, peer) {
            counters
                .client_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            crate::log_client_error("udp", &e);
            continue;
        }
        counters.served(1, n, n);
    }
    Ok(())
}

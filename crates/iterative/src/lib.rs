//! Iterative server: one client at a time, start to finish.
//!
//! # Model
//!
//! One thread loops: `accept()` a client, serve it until it closes, `accept()` the
//! next. This is the tutorial's first TCP server and Stevens' baseline (UNP
//! ch. 30, "iterative server"). For UDP it is the natural design: one loop of
//! `recvfrom()` / `sendto()` serves every client, because a datagram *is* a
//! complete request (see [`serve_udp`]).
//!
//! # What it costs
//!
//! Nothing beyond the work itself: no process or thread is created, no lock is
//! taken. Per request it makes exactly the two syscalls of the shared driver
//! (`read`, `write`), which makes it the floor the other models are measured against.
//!
//! Measured in the committed full run (`scripts/compare.sh --full --out
//! results/2026-12-01-vm-full`, 2-CPU VM; medians of 5 repeats, [min–max]; the
//! tables are in that directory's `report.md`):
//!
//! - counted, one connection: 2.00 syscalls per request (`recvfrom`, `sendto`),
//!   377 user-space instructions per request, 1.00 context switch; the same at
//!   100 connections, since it serves them one at a time.
//! - scaling, one connection: 41,452 requests/s [36,935–41,872], 9.96 µs
//!   [9.78–10.54] of server CPU per request, p50 22 µs [21–23] — the loopback
//!   floor (19.1 µs at p50, measured with sockperf) every model sits at with one
//!   client.
//! - churn: 30,842 connections/s [27,054–31,842] at 18.9 µs [15.8–20.8] of CPU
//!   each: a connection costs an `accept()` and nothing more.
//! - udp: 206,296 datagrams/s [197,260–265,149], the highest median; only
//!   async's 144,549 [133,175–149,338] is measurably lower, the other models'
//!   ranges overlap it.
//!
//! # When it breaks
//!
//! As soon as two clients want service at once. While one client is connected —
//! even an idle one that types slowly — every other client's `connect()` completes
//! (the kernel finishes the handshake and queues the connection in the listen
//! backlog) but nobody reads its bytes. A single slow client stalls everyone.
//! Measured (same run): scaling stays at 41,452 requests/s [36,935–41,872] with
//! 1 connection and 42,182 [38,730–48,845] with 10,000, but past one connection
//! it serves 1 client (1 of 10, … 1 of 10,000; at 10,000, 256 also saw errors);
//! sleep (2 ms per request, 100 connections) serves 458 requests/s [454–462],
//! 0.917 % of the ideal 50,000/s, one sleep at a time; slow (4 clients dribbling
//! a request) leaves the normal clients 0 requests (0 of 10 served); chaos (one
//! handler crashes) ends the server and all 10 other clients.
//!
//! # Compare with
//!
//! - `socklab-fork`: the same loop, but each accepted client is handed to a new process.
//! - `socklab-thread`: the same loop, each client handed to a new thread.

use std::io;
use std::net::{TcpListener, UdpSocket};

use socklab_server_kit::{Clients, Context};

/// Serves TCP clients one after another until shutdown.
pub fn serve(listener: TcpListener, cx: &Context) -> io::Result<()> {
    socklab_server_kit::set_accept_timeout(&listener)?;
    for client in Clients::new(&listener, cx) {
        // The whole model is this line: serve the client *here*, in the
        // accepting thread, so nobody accepts until it is done.
        client.serve(cx, "iterative");
    }
    Ok(())
}

/// Serves UDP with one `recvfrom()`/`sendto()` loop: the iterative UDP server is
/// the only UDP server most programs need.
pub fn serve_udp(socket: UdpSocket, cx: &Context) -> io::Result<()> {
    socklab_server_kit::serve_datagrams(&socket, cx)
}

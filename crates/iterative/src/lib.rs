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
//! results/2026-11-25-vm-full`, 2-CPU VM; medians of 5 repeats, [min–max]; the
//! tables are in that directory's `report.md`):
//!
//! - counted pass, one connection: 2.00 syscalls per request (`recvfrom`,
//!   `sendto`), 361 user-space instructions per request, 1.00 context switch.
//! - scaling, one connection: 17,848 requests/s [15,825–19,058], 28.6 µs of
//!   server CPU per request — the loopback floor every model sits at.
//! - churn: 21,824 connections/s [20,781–23,198] at 26.1 µs of CPU each: a
//!   connection costs an `accept()` and nothing more.
//! - udp: 221,581 datagrams/s [207,867–227,803], the most of any model.
//!
//! # When it breaks
//!
//! As soon as two clients want service at once. While one client is connected —
//! even an idle one that types slowly — every other client's `connect()` completes
//! (the kernel finishes the handshake and queues the connection in the listen
//! backlog) but nobody reads its bytes. A single slow client stalls everyone.
//! Measured (same run): scaling stays at about 17,000–18,000 requests/s from 1
//! to 10,000 connections, with every client but one unserved; sleep (2 ms per
//! request, 100 connections) serves 460 requests/s [450–462], one sleep at a time;
//! slow (4 clients dribbling a request) leaves the normal clients 0 requests; chaos
//! (one handler crashes) ends the server.
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

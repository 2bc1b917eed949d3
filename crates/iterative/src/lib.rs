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
//! # When it breaks
//!
//! As soon as two clients want service at once. While one client is connected —
//! even an idle one that types slowly — every other client's `connect()` completes
//! (the kernel finishes the handshake and queues the connection in the listen
//! backlog) but nobody reads its bytes. A single slow client stalls everyone.
//!
//! # Compare with
//!
//! - `socklab-fork`: the same loop, but each accepted client is handed to a new process.
//! - `socklab-thread`: the same loop, each client handed to a new thread.

use std::io;
use std::net::{TcpListener, UdpSocket};

use socklab_server_kit::{serve_client, Client, Clients, Context};

/// Serves TCP clients one after another until shutdown.
pub fn serve(listener: TcpListener, cx: &Context) -> io::Result<()> {
    socklab_server_kit::set_accept_timeout(&listener)?;
    for Client {
        stream,
        open: _open,
    } in Clients::new(&listener, cx)
    {
        // The whole model is this line: serve the client *here*, in the
        // accepting thread, so nobody accepts until it is done.
        serve_client(stream, cx, "iterative");
    }
    Ok(())
}

/// Serves UDP with one `recvfrom()`/`sendto()` loop: the iterative UDP server is
/// the only UDP server most programs need.
pub fn serve_udp(socket: UdpSocket, cx: &Context) -> io::Result<()> {
    socklab_server_kit::serve_datagrams(&socket, cx)
}

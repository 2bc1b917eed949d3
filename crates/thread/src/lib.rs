//! Thread per client: the tutorial's multi-thread server.
//!
//! # Model
//!
//! The main thread loops on `accept()`; each accepted client gets a new OS thread
//! (`clone()` with `CLONE_VM | CLONE_FILES | …`: same address space, same
//! descriptor table) that runs the shared blocking driver until the client leaves.
//! The thread *is* the client's state: its stack holds where the conversation is.
//!
//! # What it costs
//!
//! - One `clone()` per connection (tens of µs: a stack is mapped, the kernel
//!   creates a task) and one `exit` + `munmap` when it ends: the connection-churn
//!   scenario shows this next to `fork()`'s much larger cost.
//! - Per connection: a task in the kernel and a stack — 2 MiB of address space
//!   (std's default), of which only the touched pages (tens of KiB) are resident.
//! - Per request: the kernel schedules. A thread blocked in `read()` is woken when
//!   data arrives: a context switch per request, counted in the report. The
//!   user-space work is the least of any model; the scheduler does the rest.
//!
//! # When it breaks
//!
//! - At many connections, memory and scheduler work grow with every idle client
//!   (10,000 idle clients are 10,000 threads).
//! - A crash in one handler (a segfault, an `abort()`) kills the whole process:
//!   threads share one address space. The fault-isolation scenario shows every
//!   client lost, where `socklab-fork` loses one.
//! - Without a cap a connection flood exhausts threads or memory: past
//!   `--max-conns` this server stops accepting until a client leaves.
//!
//! # Compare with
//!
//! - `socklab-fork`: the same loop with `fork()` instead of a thread.
//! - `socklab-pool`: a fixed set of threads created up front and fed connections.
//! - `socklab-iterative`: the same loop that serves the client itself.

use std::io;
use std::net::{TcpListener, UdpSocket};

use socklab_server_kit::{serve_client, Client, Clients, Context};

/// Serves TCP with one thread per client until shutdown, then lets connections in
/// flight finish for the grace period.
pub fn serve(listener: TcpListener, cx: &Context) -> io::Result<()> {
    socklab_server_kit::set_accept_timeout(&listener)?;
    for client in Clients::new(&listener, cx) {
        spawn_handler(client, cx);
    }
    cx.drain();
    Ok(())
}

/// Starts the thread that owns one client.
fn spawn_handler(Client { stream, open }: Client, cx: &Context) {
    let handler_cx = cx.clone();
    let spawned = std::thread::Builder::new()
        .name("client".into())
        .spawn(move || {
            let _open = open;
            serve_client(stream, &handler_cx, "thread");
        });
    if let Err(e) = spawned {
        // Out of threads or memory: this client is dropped (its stream and guard
        // were moved into the closure that never ran, and are dropped with it:
        // the connection closes and is counted closed); the server lives.
        eprintln!("socklab thread: cannot spawn a thread: {e}");
    }
}

/// UDP has no connections, so there is no "client" to give a thread: one socket
/// receives every datagram from everyone. Use `iterative` or `pool` for UDP.
pub fn serve_udp(_socket: UdpSocket, _cx: &Context) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the thread-per-client model cannot serve UDP: UDP has no connections, so there is no client to give a thread; use iterative, pool, prefork, nonblocking or async",
    ))
}

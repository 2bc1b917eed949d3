//! Fork per client: the tutorial's multi-process server, done carefully.
//!
//! # Model
//!
//! The parent loops on `accept()`. For each client it calls `fork()`: the child
//! gets a copy of the parent's memory and descriptor table, closes the listening
//! socket (it will never accept), serves its one client with the shared blocking
//! driver and exits. The parent closes *its* copy of the connection at once — if
//! it did not, the client would never see EOF, since a socket closes only when
//! its last descriptor does — and goes back to `accept()`.
//!
//! # What it costs
//!
//! - One `fork()` per connection: the kernel copies the page tables and descriptor
//!   table (memory pages are shared copy-on-write until written). Hundreds of µs
//!   on this workload, the dearest connection setup of all the models; the churn
//!   scenario shows it.
//! - Per connection: a whole process — its own page tables, kernel task, and
//!   every page it writes (its stack, buffers, allocator state) duplicated. RSS
//!   counts shared pages in every process; the report's PSS shares them out.
//! - Per request: like a thread, a context switch when `read()` wakes it.
//! - Reaping: every child that exits stays a *zombie* (its exit status kept by the
//!   kernel) until the parent calls `waitpid()`. The tutorial's server never does,
//!   so zombies pile up. Here the parent reaps with `waitpid(-1, WNOHANG)` each
//!   time round its accept loop, which wakes at least every
//!   [`socklab_server_kit::SHUTDOWN_POLL`].
//!
//! # When it breaks
//!
//! - Connection churn: process creation dominates when clients send one request.
//! - Many connections: memory per process, and `--max-conns` caps live children
//!   (past it the parent stops accepting until one exits).
//! - What it does *well*: a crashing handler (the `--chaos` flag) kills one child;
//!   every other client keeps its own process and is not disturbed.
//!
//! # Compare with
//!
//! - `socklab-thread`: the same loop with a thread instead of a process.
//! - `socklab-prefork`: processes forked once, up front, instead of per client.
//! - `socklab-iterative`: the same loop serving the client in the accepting process.

use std::io;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::AsRawFd;

use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use socklab_server_kit::process::Children;
use socklab_server_kit::{serve_client, Client, Clients, Context, OpenConnection};

/// The name this model logs under.
const MODEL: &str = "fork";

/// Serves TCP with one process per client until shutdown; then stops the
/// children (SIGTERM, the grace period, SIGKILL) and reaps them all.
pub fn serve(listener: TcpListener, cx: &Context) -> io::Result<()> {
    socklab_server_kit::set_accept_timeout(&listener)?;
    // Each child's connection stays counted open here, in the parent, until the
    // child is reaped: a child killed mid-client is counted closed all the same.
    let mut children: Children<OpenConnection> = Children::default();
    let mut clients = Clients::new(&listener, cx);
    // Only reaping frees a slot under the cap: the parent reaps each time round.
    while let Some(Client { stream, open }) = clients.next_tending(|| children.reap(reaped)) {
        // The whole model: a new process for this one client.
        let forked = children.spawn(cx, open, |cx| {
            // The child never accepts: close its copy of the listening socket, so
            // the listener really closes when the parent closes it.
            let _ = nix::unistd::close(listener.as_raw_fd());
            serve_client(stream, cx, MODEL);
            Ok(())
        });
        // In the parent the closure is dropped unrun, and with it the parent's
        // copy of the connection: it closes there, and stays open in the child.
        if let Err(e) = forked {
            eprintln!("socklab {MODEL}: fork() failed, client dropped: {e}");
        }
    }
    drop(clients);
    drop(listener);
    children.stop(cx, |_, _, _| {});
    Ok(())
}

/// A child was reaped: its connection is counted closed (the guard is dropped),
/// and a crash is said out loud.
fn reaped(pid: Pid, _open: OpenConnection, status: Option<WaitStatus>) {
    if let Some(WaitStatus::Signaled(_, signal, _)) = status {
        eprintln!(
            "socklab {MODEL}: child {pid} killed by {signal}: its one client is lost, the others are not"
        );
    }
}

/// UDP has no connections, so there is no client to give a process: one socket
/// receives every datagram from everyone. Use `iterative`, `prefork` or `pool`.
pub fn serve_udp(_socket: UdpSocket, _cx: &Context) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the fork-per-client model cannot serve UDP: UDP has no connections, so there is no client to give a process; use iterative, pool, prefork, nonblocking or async",
    ))
}

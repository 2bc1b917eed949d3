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
//! Measured in the committed full run (`scripts/compare.sh --full --out
//! results/2026-12-01-vm-full`, 2-CPU VM; medians of 5 repeats, [min–max]; the
//! tables are in that directory's `report.md`):
//!
//! - One `fork()` per connection: the kernel copies the page tables and descriptor
//!   table (memory pages are shared copy-on-write until written, and then copied
//!   on the fault). churn: 300 µs [257–402] of server CPU per connection and
//!   3,244 connections/s [2,420–3,780] — the dearest connection setup of all the
//!   models: thread-per-client's `clone()` costs 45.8 µs [40.0–49.6], a server
//!   that creates nothing (iterative) 18.9 µs [15.8–20.8].
//! - Per connection: a whole process — its own page tables, kernel task, and
//!   every page it writes (its stack, buffers, allocator state) duplicated. RSS
//!   counts shared pages in every process; the report's PSS shares them out.
//!   scaling: 136 KiB [133–142] of PSS per connection at 10 connections, 93.8
//!   KiB [93.7–94.3] at 1,000, where a thread costs 22.5 KiB [22.5–22.7].
//! - Per request: like a thread, a context switch when `read()` wakes it
//!   (counted at 100 connections: 0.992 switches, 2.00 syscalls and 390
//!   user-space instructions per request; at one, 0.997, 2.00 and 377: once a
//!   client has its process, serving it is the blocking driver's cost).
//! - Reaping: every child that exits stays a *zombie* (its exit status kept by the
//!   kernel) until the parent collects it. The tutorial's server never does, so
//!   zombies pile up. Here the parent reaps each time round its accept loop
//!   (which wakes at least every [`socklab_server_kit::SHUTDOWN_POLL`], and every
//!   [`socklab_server_kit::accept::SLOT_POLL`] while the cap is full), by the rule
//!   every process model shares: only its own children, by pid, after a
//!   `WNOWAIT` peek (`socklab_server_kit::process`). Its connection stays counted
//!   open in the parent until then, so zombies count against `--max-conns`.
//! - Signals follow the shared stop protocol too: SIGINT and SIGTERM are blocked
//!   across `fork()`, a child ignores SIGINT and takes SIGTERM as "finish your
//!   client", and at shutdown the parent sends SIGTERM, waits `--grace`, then
//!   SIGKILLs and reaps what is left. (After this change, two churn runs each of
//!   `taskset -c 1 socklab load ADDR --mode churn --conns 10 --duration 3s`
//!   against `taskset -c 0 socklab serve fork` served 11,551 and 11,969
//!   connections where the code before it served 9,513 and 10,380: the few
//!   syscalls the protocol adds per child do not show.)
//!
//! # When it breaks
//!
//! - Connection churn: process creation dominates when clients send one request
//!   (see above: 300 µs of CPU per connection, against 18.9 µs for a server that
//!   creates nothing).
//! - Many connections: memory per process, and `--max-conns` caps live children
//!   (past it the parent stops accepting until one exits). scaling at 1,000
//!   connections: 47,281 requests/s [42,154–65,492] from 1,001 processes, and
//!   ≥ 5.87 s [2.54–10.00] before every client had been answered once; p99
//!   42,751 µs [41,791–11,780,095], the top of the range a repeat whose ramp
//!   reached its 10 s limit. At 10,000 it served 6,516 [6,438–8,148] of 10,000
//!   clients, with 6,516 processes alive; the other 3,484 got no reply in the
//!   window.
//! - What it does *well*: a crashing handler (the `--chaos` flag) kills one child;
//!   every other client keeps its own process and is not disturbed. chaos: the
//!   server survived, 0 other clients lost, where every single-process model
//!   (iterative, thread, pool, nonblocking, async, uring) lost all 10 and
//!   workers, an event loop in each of 2 processes, lost 2.
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
            socklab_server_kit::exhaustion::say_once(
                MODEL,
                "fork() failed",
                &e,
                "this client is dropped",
            );
        }
    }
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

//! A fixed pool of worker threads, created once, fed connections.
//!
//! # Model
//!
//! `serve` starts [`Options::workers`] OS threads up front and never more. Each
//! one runs the shared blocking driver for one client at a time. Who hands them
//! clients is the [`Dispatch`] choice:
//!
//! - [`Dispatch::Queue`] (Stevens' serv08, the Rust Book's `ThreadPool`): the main
//!   thread loops on `accept()` and sends each connection down a *bounded*
//!   crossbeam channel; idle workers wait in `recv()`. The channel holds at most
//!   [`QUEUE_PER_WORKER`] × workers connections. When it is full the acceptor
//!   blocks in `send` and stops accepting, so new clients wait in the kernel's
//!   listen backlog, not in an unbounded queue in our memory. (It sends with a
//!   timeout of [`SHUTDOWN_POLL`] so that, even blocked, it notices shutdown.)
//! - [`Dispatch::Accept`] (Stevens' serv07/serv09): no channel at all. Every worker
//!   calls `accept()` itself on its own `try_clone()` of the listener (a `dup()`:
//!   one socket, several descriptors). The kernel queues the blocked accepters and
//!   wakes exactly *one* per new connection (an "exclusive" wait, in Linux since
//!   the 2.4 kernels): no "thundering herd" for a blocking `accept()`. The herd is
//!   back if several threads `poll()`/`epoll` the listener before accepting.
//!
//! The teaching diff with the Rust Book's `ThreadPool` (ch. 21): the Book shares
//! one `std::sync::mpsc::Receiver` as `Arc<Mutex<Receiver<Job>>>`, because an mpsc
//! receiver cannot be cloned. A crossbeam `Receiver` *is* cloneable (the channel is
//! multi-producer multi-consumer), so each worker simply owns a clone and the mutex
//! goes away. Shutdown is the Book's: drop the sender, and every worker's `recv()`
//! fails once the queue is empty, so it returns and can be joined.
//!
//! # What it costs
//!
//! Measured in the committed full run (`scripts/compare.sh --full --out
//! results/2026-12-01-vm-full`, 2-CPU VM, `pool --workers 4`; medians of 5
//! repeats, [min–max]; the tables are in that directory's `report.md`):
//!
//! - Thread creation (`clone()`, a stack `mmap`) happens `workers` times at start,
//!   never per connection: connection setup costs an `accept()` and, in queue
//!   mode, a channel hand-off (a futex wake of the idle worker, a context switch).
//!   churn: 26.1 µs [23.5–28.6] of server CPU per connection and 2.04 context
//!   switches [1.92–2.07], against thread-per-client's 45.8 µs [40.0–49.6] for a
//!   `clone()` per client and iterative's 18.9 µs [15.8–20.8] for none. The
//!   hand-off shows as a switch iterative does not make (it makes 0.996).
//! - Memory is fixed: `workers` stacks, however many clients come. It held 9
//!   connections at every count from 10 to 10,000 (4 being served, the other 5
//!   accepted and waiting for a worker); scaling: 8.89 KiB [8.89–12.44] of PSS
//!   per held connection at 10, 12.4 KiB [8.9–26.7] at 10,000.
//! - Per request: the same `read()`/`write()` as every blocking model, and a
//!   context switch when a worker's `read()` wakes (counted at 100 connections:
//!   2.01 syscalls, `sched_yield` 0.0104 among them, 1.000 switch and 383
//!   user-space instructions per request; at one, 2.00, 1.00 and 377).
//!
//! # When it breaks
//!
//! - **N busy workers serve no one else.** A worker is held by its client for the
//!   client's whole life, idle or not. With N workers on N idle (or slow) clients,
//!   client N+1 is accepted by the kernel — its `connect()` returns, its bytes
//!   are ACKed into a socket buffer — and then waits unserved until one of the N
//!   leaves. In queue mode it waits in our channel (we did `accept()` it); in
//!   accept mode it waits in the kernel's backlog (nobody called `accept()`). The
//!   slow scenario (4 clients dribbling a request, 4 workers) leaves the normal
//!   clients 0 requests (0 of 10 served); the test
//!   `client_n_plus_one_waits_for_a_free_worker` shows it too. The cure is not a
//!   bigger pool but not holding a thread per idle client: see
//!   `socklab-nonblocking`.
//! - Sized too small for blocking work (`--work sleep:…`), throughput is capped
//!   at `workers / work`: sleep (2 ms, 100 connections) 1,816 requests/s
//!   [1,510–1,838] for 4 workers, 4 of the 100 clients served, where
//!   thread-per-client served 44,108/s; sized too large, it is thread-per-client's
//!   memory without its elasticity.
//! - A crash in one handler kills the whole process, as with any threads (chaos:
//!   the server did not survive).
//! - Live connections are bounded by the pool (`workers` being served, plus at
//!   most the queue in queue mode); `Config::max_conns` is honoured as well, by
//!   the accept loop every blocking model shares (`socklab_server_kit::Clients`).
//!   In accept mode N workers check the cap independently, so it can be
//!   overshot by up to `workers - 1`.
//!
//! Shutdown: the acceptor stops (the workers themselves, in accept mode), the
//! sender is dropped, workers finish their current client — in queue mode also the
//! clients already queued: those were accepted, and may have sent their request —
//! then return. `serve` joins them by the drain rule every model follows
//! (`Context::drain_until`): it waits no longer than `Config::grace`, and a worker
//! still held by a client after that is left behind (the process is about to exit
//! and takes it along).
//!
//! # Compare with
//!
//! - `socklab-thread`: the same driver with one new thread per client instead of a
//!   fixed set — elastic, but a `clone()` per connection and no upper bound.
//! - `socklab-prefork`: the same pool made of processes instead of threads, with
//!   the same two dispatch styles (children accepting; the parent passing fds).
//! - `socklab-nonblocking`: one thread serving every client, because no client
//!   holds a thread while it is idle.
//!
//! UDP ([`serve_udp`]): `workers` threads share one socket (`try_clone()`), each
//! running the shared `recvfrom()`/`sendto()` loop. Every `recvfrom()` takes one
//! whole datagram, so they need no coordination.
//!
//! # Layout
//!
//! - this file: the pool fed by a queue (the base model), and UDP.
//! - `accept`: the variant where every worker accepts for itself.
//! - `workers`: starting the threads, and joining them within the grace period.

mod accept;
mod workers;

use std::io;
use std::net::{TcpListener, UdpSocket};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender};
use socklab_server_kit::config::check_workers;
pub use socklab_server_kit::config::default_workers;
use socklab_server_kit::{serve_datagrams, Client, Clients, Context, SHUTDOWN_POLL};

use workers::Workers;

/// The name this model logs under.
const MODEL: &str = "pool";

/// Queue capacity per worker in [`Dispatch::Queue`]: a channel of `workers`
/// connections. One each is enough to keep every worker fed at once when a burst
/// arrives; more would only move clients from the kernel's backlog (where they
/// cost us nothing) into our queue (where they are accepted but unserved).
pub const QUEUE_PER_WORKER: usize = 1;

/// How connections reach the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// The main thread accepts and sends connections down a bounded channel.
    #[default]
    Queue,
    /// Every worker calls `accept()` itself on the shared listener.
    Accept,
}

/// How the pool is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Worker threads, created at start (default: [`default_workers`]). At least 1.
    pub workers: usize,
    /// Who accepts (default: [`Dispatch::Queue`]).
    pub dispatch: Dispatch,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: default_workers(),
            dispatch: Dispatch::default(),
        }
    }
}

/// Serves TCP with a fixed pool of threads until shutdown, then lets the workers
/// finish their clients for the grace period.
pub fn serve(listener: TcpListener, cx: &Context, options: &Options) -> io::Result<()> {
    check_workers(options.workers, MODEL)?;
    socklab_server_kit::set_accept_timeout(&listener)?;
    match options.dispatch {
        Dispatch::Queue => serve_queue(listener, cx, options.workers),
        Dispatch::Accept => accept::serve(listener, cx, options.workers),
    }
}

/// Serves UDP with `workers` threads sharing one socket until shutdown.
pub fn serve_udp(socket: UdpSocket, cx: &Context, options: &Options) -> io::Result<()> {
    check_workers(options.workers, MODEL)?;
    let pool = Workers::start(options.workers, cx, |_| {
        let socket = socket.try_clone()?;
        let cx = cx.clone();
        Ok(move || serve_datagrams(&socket, &cx))
    })?;
    pool.wait_for_shutdown(cx);
    pool.finish(cx)
}

/// Queue dispatch: this thread accepts, the workers receive.
fn serve_queue(listener: TcpListener, cx: &Context, workers: usize) -> io::Result<()> {
    let (sender, receiver) = crossbeam_channel::bounded(workers * QUEUE_PER_WORKER);
    let pool = Workers::start(workers, cx, |_| {
        // Each worker owns a clone of the receiver: no `Arc<Mutex<Receiver>>`.
        let receiver: Receiver<Client> = receiver.clone();
        let cx = cx.clone();
        Ok(move || {
            // Ends when the sender is dropped *and* the queue is empty.
            for client in receiver.iter() {
                client.serve(&cx, MODEL);
            }
            Ok(())
        })
    })?;
    drop(receiver);
    let result = accept_into(&listener, &sender, cx);
    // Stop accepting at once; dropping the sender lets each worker's `recv()` fail
    // once the queue is empty.
    drop(listener);
    drop(sender);
    pool.finish(cx)?;
    result
}

/// The acceptor's loop: accept under the cap, hand over; until shutdown.
fn accept_into(listener: &TcpListener, sender: &Sender<Client>, cx: &Context) -> io::Result<()> {
    for client in Clients::new(listener, cx) {
        if !hand_over(sender, client, cx)? {
            break;
        }
    }
    Ok(())
}

/// Sends one client to the workers, blocking while the queue is full (the
/// acceptor stops accepting: backpressure into the listen backlog). Returns false
/// if shutdown came first; the client is then dropped unserved (closed, and
/// counted closed).
fn hand_over(sender: &Sender<Client>, client: Client, cx: &Context) -> io::Result<bool> {
    let mut client = client;
    loop {
        match sender.send_timeout(client, SHUTDOWN_POLL) {
            Ok(()) => return Ok(true),
            Err(SendTimeoutError::Timeout(back)) if !cx.shutdown.is_triggered() => client = back,
            Err(SendTimeoutError::Timeout(_unserved)) => return Ok(false),
            Err(SendTimeoutError::Disconnected(_unserved)) => {
                return Err(io::Error::other("socklab pool: every worker has exited"))
            }
        }
    }
}

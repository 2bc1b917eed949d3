//! Nonblocking: one thread, one readiness loop over epoll, every client at once.
//!
//! # Model
//!
//! Every socket is nonblocking and registered with one epoll instance (through
//! mio's `Poll`): `epoll_create1()` once, `epoll_ctl(ADD/MOD/DEL)` when the set of
//! sockets or what we wait for on one changes, and `epoll_wait()` — the only place
//! the thread ever waits — to learn which sockets are *ready*: readable (bytes or
//! a connection queued) or writable (room in the send buffer). For each ready
//! socket the loop does what the socket allows *now* — `accept()` until
//! `WouldBlock`, `read()`, feed the protocol, `write()` as much as fits — and
//! never waits on any one client. What a blocking model keeps in a thread's stack
//! (where this client's conversation stands) is kept here in a per-connection
//! struct: the protocol [`Session`](socklab_protocol::Session), the unsent reply
//! bytes, a reply held for a timer. That state machine is written by hand.
//!
//! The loop's details, each one a classic pitfall:
//!
//! - **Partial writes.** `write()` on a nonblocking socket may take part of the
//!   reply: the unsent tail is kept (`output.drain(..n)`) and the loop asks for
//!   WRITABLE only while output is pending (rustls' `tlsserver-mio`; mio's own
//!   `tcp_server` example gets this wrong).
//! - **Backpressure.** A client that sends and never reads would make the server
//!   buffer its replies forever. Past [`MAX_PENDING_OUTPUT`] unsent bytes the loop
//!   stops reading that client; its bytes wait in kernel buffers, and TCP's flow
//!   control stops the sender.
//! - **Timers.** `sleep` work must not sleep: the reply is held and a deadline
//!   goes into a min-heap; `epoll_wait`'s timeout is the time to the earliest one.
//!   While its reply waits, nothing more is read from that client (replies stay in
//!   order; memory stays bounded). The idle timeout is a timer too (re-armed
//!   lazily, one per connection).
//! - **`cpu` work runs inline**: the loop spins, and every other client waits.
//!   That stall is the lesson, not a bug to fix here (a real server would hand
//!   such work to a thread pool and get the result back through the loop).
//! - **Accept errors.** `accept()` failing with EMFILE leaves the connection
//!   queued and the listener readable: retrying at once spins at 100 % CPU. The
//!   loop deregisters the listener for `RESOURCE_BACKOFF` instead. (The classic
//!   alternative is the reserve descriptor: keep one spare fd open; on EMFILE close
//!   it, accept the client, close it at once, reopen the spare — the client learns
//!   at once instead of waiting in the backlog.) Past `max_conns` the listener is
//!   deregistered until a client leaves.
//! - **Edge-triggered.** mio registers with `EPOLLET`: an event says "something
//!   changed", once. So the loop reads and accepts until `WouldBlock`, or until a
//!   short read shows the socket drained (saving the one `read()` that would only
//!   say `EAGAIN`: a syscall per request), and resumes a paused client by reading
//!   on its own, since no new edge will announce bytes already there.
//!
//! `--loops N` runs N such loops, one thread each, sharing nothing — the
//! thread-per-core shape of nginx workers and seastar. Each loop gets its own
//! listening socket when the given one has `SO_REUSEPORT` (the kernel then
//! spreads new connections between the N sockets by a hash of the addresses);
//! otherwise all loops register one shared listener, and each new connection
//! wakes every loop though only one wins the `accept()` — the thundering herd
//! that `EPOLLEXCLUSIVE` (not exposed by mio) or `SO_REUSEPORT` avoid. Each loop
//! serves its share of `max_conns`.
//!
//! # What it costs
//!
//! - Per connection: a descriptor, a map entry of about 150 bytes (a slab in
//!   production: tokio uses one), and only the bytes it really has pending — the
//!   loop reads into one shared 16 KiB buffer. No stack, no kernel task: 10,000
//!   idle clients cost a few MiB, where thread-per-client pays 10,000 stacks and
//!   tasks. Idle clients cost no CPU either: `epoll_wait` returns only ready ones.
//! - Per request: `epoll_wait` (shared by every socket ready at once), `read`,
//!   `write`, and an `epoll_ctl` when a write is partial. No context switch while
//!   the loop has work: scheduling happens in user space, in this code, which is
//!   why it does more user-space instructions per request than a blocking thread.
//! - Per connection setup: `accept4` and one `epoll_ctl(ADD)`: the cheapest of
//!   the models that serve clients concurrently.
//!
//! # When it breaks
//!
//! - One loop is one CPU. Past it, throughput stops growing: run `--loops N`.
//! - Anything that blocks stalls every client of the loop: `cpu` work, a slow
//!   disk read, a DNS lookup, a `std::thread::sleep`. The cpu-work scenario shows
//!   every client's latency growing with one client's work.
//! - The code: every wait is a state to save and resume by hand. The `async`
//!   model gets the same loop with the state machine written by the compiler.
//! - A crash in one handler takes down every client, as with threads.
//!
//! # Compare with
//!
//! - `socklab-thread`: the kernel schedules, one blocked thread per client.
//! - `socklab-async`: tokio runs this very loop (mio, epoll) underneath; each
//!   client's state machine is an `async fn`.
//! - `socklab-uring`: completion instead of readiness. epoll says "you may read
//!   now" and the program calls `read()`; io_uring is handed the `read` up front
//!   and reports when it is done — no readiness step, and batches of syscalls.
//! - `socklab-prefork` / `socklab-pool`: N workers on one listener, like
//!   `--loops N`, but each worker blocks on one client at a time.

use std::io;
use std::net::{TcpListener, UdpSocket};

use mio::Token;
use socklab_server_kit::loops::{loop_count, per_loop, run_loops, shares};
use socklab_server_kit::{bind_tcp, bind_udp, Context};

mod tcp;
mod timers;
mod udp;

pub use socklab_server_kit::MAX_PENDING_OUTPUT;
pub use udp::MAX_QUEUED_BYTES;

/// The name this model logs under.
const MODEL: &str = "nonblocking";

/// The shutdown descriptor's token, in every loop.
const SHUTDOWN: Token = Token(1);

/// The alarm's token (the timerfd that wakes a loop for its timers), in every loop.
const ALARM: Token = Token(2);

/// Readiness events taken from the kernel per `epoll_wait()`. More events wait
/// for the next call; nothing is lost.
const EVENTS_PER_WAIT: usize = 1024;

/// Options of the nonblocking model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Independent event loops, one thread each (default 1). With more than one,
    /// give `serve` a listener bound with `SO_REUSEPORT` so each loop gets its own.
    pub loops: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { loops: 1 }
    }
}

/// Serves TCP from `options.loops` readiness loops until shutdown, then lets
/// connections in flight finish for the grace period.
pub fn serve(listener: TcpListener, cx: &Context, options: &Options) -> io::Result<()> {
    let loops = loop_count(options.loops, cx.config.max_conns);
    let addr = listener.local_addr()?;
    let listeners = per_loop(listener, loops, addr, bind_tcp, TcpListener::try_clone)?;
    let caps = shares(cx.config.max_conns, listeners.len());
    run_loops(
        listeners.into_iter().zip(caps),
        &cx.shutdown,
        |(listener, cap)| tcp::run(listener, cx, cap),
    )
}

/// Serves UDP from `options.loops` readiness loops until shutdown; replies held by
/// `sleep` work get the grace period.
pub fn serve_udp(socket: UdpSocket, cx: &Context, options: &Options) -> io::Result<()> {
    let loops = loop_count(options.loops, cx.config.max_conns);
    let addr = socket.local_addr()?;
    let sockets = per_loop(socket, loops, addr, bind_udp, UdpSocket::try_clone)?;
    run_loops(sockets, &cx.shutdown, |socket| udp::run(socket, cx))
}

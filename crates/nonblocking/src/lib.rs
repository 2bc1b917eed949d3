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
//!   goes into a min-heap. The loop is woken for the earliest one by a `timerfd`
//!   in its poll set (the alarm), not by `epoll_wait`'s timeout, which is in whole
//!   milliseconds and which mio rounds up: see `timers.rs`. While its reply
//!   waits, nothing more is read from that client (replies stay in order; memory
//!   stays bounded). The idle timeout is a timer too (re-armed lazily, one per
//!   connection).
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
//! Measured in the committed full run (`scripts/compare.sh --full --out
//! results/2026-12-01-vm-full`, 2-CPU VM; medians of 5 repeats, [min–max]; the
//! tables are in that directory's `report.md`), except where another command is
//! named:
//!
//! - Per connection: a descriptor, a slab entry of under 200 bytes (the
//!   connection table is `socklab_server_kit::slab`, as tokio keeps its own), and
//!   only the bytes it really has pending — the loop reads into one shared 16 KiB
//!   buffer. No stack, no kernel task. scaling at 10,000 connections: 0.239 KiB
//!   [0.236–0.254] of PSS per connection; workers' 0.250 [0.233–0.251] overlaps
//!   it, no measurable difference; async 9.34 KiB, thread 22.0 KiB per
//!   connection it held.
//!   Idle clients cost no CPU either: `epoll_wait` returns only ready ones.
//! - Per request: `epoll_wait` (shared by every socket ready at once), `read`,
//!   `write`, and an `epoll_ctl` when a write is partial. Counted, one
//!   connection: 3.00 syscalls per request (`epoll_wait`, `recvfrom`, `sendto`);
//!   at 100 connections one `epoll_wait` serves about a hundred requests (0.0100
//!   per request): 2.01. No context switch while the loop has work (counted at
//!   100 connections: 0.0108 per request, thread 1.01): scheduling happens in
//!   user space, in this code, which is why it does more user-space instructions
//!   per request than a blocking thread (545 at 100 connections, thread 376; 682
//!   and 377 at one). Measured with `socklab compare --counted-only --models
//!   nonblocking --callgrind --counted-conns 10 --out /tmp/cg-nb` (callgrind,
//!   marginal over 2,000 and 4,000 requests): 556 instructions per request, under
//!   a plain C epoll loop's 604. Before the slab replaced a `HashMap<Token, _>`
//!   (SipHash: 242 instructions per request for the two lookups per event) and the
//!   loop read the clock once per wake-up instead of twice per request (62), the
//!   same command counted 836.
//! - Per connection setup: `accept4` and one `epoll_ctl(ADD)`. churn: 22.2 µs
//!   [19.3–25.9] of CPU per connection, 28,082 connections/s [25,451–30,410].
//! - Timers to the microsecond: `sleep:2ms` at 10 connections, server and load
//!   pinned apart (`taskset -c 0 socklab serve nonblocking --work sleep:2ms --tcp
//!   127.0.0.1:0`, then `taskset -c 1 socklab load ADDR --conns 10 --duration
//!   5s`, 3 runs interleaved with thread's): min 2,022 µs [2,017–2,026], p50 2,111
//!   [2,071–2,117]; thread min 2,041, p50 2,155 (its extra is `nanosleep`'s
//!   timer slack: see `socklab-thread`). With `epoll_wait`'s millisecond
//!   timeout instead of the alarm the same runs measured min 2,100 [2,070–2,124],
//!   p50 2,205 [2,199–2,225], and at 100 connections p50 2,783 [2,745–2,841]
//!   against 2,075 [2,069–2,103] with it (thread: 2,139). The alarm costs two
//!   syscalls per wake-up by timer (`timerfd_settime`, `read`), none without
//!   timers. (The full run's sleep scenario, 100 connections, with the alarm:
//!   p50 2,099 µs [2,085–2,623], 46,080 requests/s [32,911–46,454], 92.2 % of the
//!   ideal 50,000/s.)
//!
//! # When it breaks
//!
//! - One loop is one CPU. Past it, throughput stops growing: run `--loops N`.
//!   cpu with the server on 2 CPUs instead of one: 1.00× the requests per
//!   second, where thread's grew 1.83×.
//! - Anything that blocks stalls every client of the loop: `cpu` work, a slow
//!   disk read, a DNS lookup, a `std::thread::sleep`. cpu (50 µs per request, 10
//!   connections, server on one CPU): p50 579 µs [556–581], every client waiting
//!   behind the other nine's work, where the whole loop still serves 17,020
//!   requests/s [16,727–17,570].
//! - The code: every wait is a state to save and resume by hand. The `async`
//!   model gets the same loop with the state machine written by the compiler.
//! - A crash in one handler takes down every client, as with threads (chaos: the
//!   server did not survive).
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
//! - `socklab-workers`: this loop in each of N processes on one inherited
//!   listener (nginx's design): `--loops N` with processes instead of threads, so
//!   a crash takes one worker's clients, not all.

use std::io;
use std::net::{TcpListener, UdpSocket};

use mio::Token;
use socklab_server_kit::loops::{loop_count, run_loops, shares, tcp_listeners, udp_sockets};
use socklab_server_kit::Context;

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
    serve_on(tcp_listeners(listener, loops)?, cx)
}

/// [`serve`] on listeners already bound, one per loop
/// ([`tcp_listeners`]): how `socklab serve` binds every socket before it
/// announces the address.
pub fn serve_on(listeners: Vec<TcpListener>, cx: &Context) -> io::Result<()> {
    let caps = shares(cx.config.max_conns, listeners.len());
    run_loops(
        listeners.into_iter().zip(caps),
        &cx.shutdown,
        |(listener, cap)| tcp_loop(listener, cx, cap),
    )
}

/// Serves UDP from `options.loops` readiness loops until shutdown; replies held by
/// `sleep` work get the grace period.
pub fn serve_udp(socket: UdpSocket, cx: &Context, options: &Options) -> io::Result<()> {
    serve_udp_on(udp_sockets(socket, options.loops.max(1))?, cx)
}

/// [`serve_udp`] on sockets already bound, one per loop ([`udp_sockets`]).
pub fn serve_udp_on(sockets: Vec<UdpSocket>, cx: &Context) -> io::Result<()> {
    run_loops(sockets, &cx.shutdown, |socket| udp_loop(socket, cx))
}

/// One TCP readiness loop on the calling thread, serving at most `cap` clients
/// from `listener` until shutdown and the grace period are over: the building
/// block of [`serve`], and of `socklab-workers`, which runs one in each of its
/// processes. `listener` may be shared with other loops (a `dup()`, or a copy
/// inherited across `fork()`): each takes whatever connection it wins.
pub fn tcp_loop(listener: TcpListener, cx: &Context, cap: usize) -> io::Result<()> {
    tcp::run(listener, cx, cap)
}

/// One UDP readiness loop on the calling thread, until shutdown: the building
/// block of [`serve_udp`] and of `socklab-workers`.
pub fn udp_loop(socket: UdpSocket, cx: &Context) -> io::Result<()> {
    udp::run(socket, cx)
}

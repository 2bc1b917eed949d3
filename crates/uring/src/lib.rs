//! Completion-based event loop over io_uring: the kernel does the I/O and tells
//! us when it is done.
//!
//! # Model
//!
//! One thread, one ring. Where `socklab-nonblocking` asks the kernel "which
//! sockets are *ready*?" (`epoll_wait`) and then does each `read`/`write` itself,
//! this loop hands the kernel the operations themselves — *accept on this
//! listener*, *recv into this buffer*, *send these bytes*, *wake me in 2 ms* —
//! as submission queue entries (SQEs) in memory shared with the kernel, and later
//! finds their results as completion queue entries (CQEs): bytes moved, a new fd,
//! or `-errno`. That is readiness vs completion:
//!
//! ```text
//!   readiness (epoll)                       completion (io_uring)
//!   epoll_wait() -> "fd 7 readable"         io_uring_enter(submit: recv fd 7 into buf,
//!   read(7, buf)  -> 120 bytes                             send fd 9 ...; wait: 1)
//!   write(7, out) -> 120 bytes                -> CQE "recv fd 7: 120 bytes are in buf"
//! ```
//!
//! Each loop iteration makes one `io_uring_enter`: it submits every SQE queued
//! since the last one and sleeps until at least one CQE is ready; then the loop
//! handles every ready CQE, queueing the next operations (the reply's `send`,
//! the next `recv`), which go in at the next enter. Per connection:
//!
//! - **accept**: one multishot `AcceptMulti` (Linux 5.19+: one SQE, a CQE per new
//!   connection) — or single-shot `Accept`, re-armed after each connection, on
//!   older kernels. `io_uring::Probe` lists opcodes, not flags, so the `socket`
//!   opcode of the same release stands in for multishot, and an `EINVAL` falls
//!   back to single-shot. It is re-armed whenever a CQE comes without
//!   `IORING_CQE_F_MORE` (the kernel ended the multishot).
//! - **recv** into the connection's buffer; the bytes go through the same
//!   `socklab_protocol::Session` as every model; the replies are queued.
//! - **send** of the queued replies. A send that moved fewer bytes than asked
//!   (the socket buffer filled) is resubmitted with the rest.
//! - **work**: `cpu` is spun inline (`spin_for`) — the whole loop, every client,
//!   waits: that is the lesson. `sleep` is a `Timeout` operation; the replies are
//!   held until it completes, and the loop serves everyone else meanwhile.
//!
//! **Who owns the buffer while the kernel works.** With `epoll` the buffer is
//! ours at every instant: `read()` fills it while we wait in the syscall. Here a
//! `recv` is *submitted* and the syscall returns; the kernel writes into the
//! buffer later, whenever data arrives. Until that completion is reaped, the
//! buffer belongs to the kernel: it must stay alive and must not move — so it
//! cannot live in a stack frame or a `Vec` that might reallocate. Each
//! connection's state is therefore boxed in a slab under the index its
//! operations carry in `user_data`, and a connection is freed only when its last
//! operation has completed (a cancelled one completes too, with `-ECANCELED`).
//! Replies produced while a send is in flight go to a second buffer (`pending`),
//! never appended to the one the kernel is reading. This is why io_uring's
//! submission calls are `unsafe` in Rust: the compiler cannot see the kernel's
//! borrow. Each `unsafe` block here says why its memory outlives its operation.
//!
//! **Buffers: one per connection, owned.** Each connection owns a 16 KiB input
//! buffer (`READ_BUF`, as the blocking driver uses) lent to the kernel for every
//! recv. The alternative is a *provided-buffer ring* (`IORING_REGISTER_PBUF_RING`,
//! `buf_group` on `Recv`): the loop lends the kernel a pool of buffers, and a
//! recv picks one only when data arrives. That is the memory lesson of this model:
//! an armed recv pins its buffer, so with owned buffers **every idle connection
//! holds 16 KiB** of address space (10,000 clients: 160 MiB; resident only as far
//! as reads have touched it: `socklab compare --scenarios scaling --conns 10000
//! --repeats 1 --cell 1s` on the project's VM measured 8.4 KiB of PSS per
//! connection, against 0.3 KiB for the readiness loop), where
//! the readiness loop holds none (it reads only when data is there). Provided buffers give that back — idle
//! connections hold no buffer, the pool is sized by data in flight rather than by
//! clients — and *registered* (fixed) buffers further save the kernel mapping and
//! pinning the pages on every operation. The price is recycling buffers by id,
//! copying or holding a buffer while its reply waits, and handling "pool empty"
//! (`ENOBUFS`). socklab keeps owned buffers because the ownership rule is the thing
//! to read here; the scaling scenario's memory per connection shows what it costs.
//!
//! **Backpressure.** A connection whose queued output passes
//! [`MAX_PENDING_OUTPUT`] gets no recv until it drains: a client that sends but
//! never reads fills its socket buffers and then blocks in its own `write()`; the
//! server's memory for it stays bounded.
//!
//! **Idle timeout: a linked timeout per operation.** Each recv (and send) is
//! submitted with `IOSQE_IO_LINK` followed by a `LinkTimeout` of
//! `--idle-timeout`: if the recv has not completed by then, the kernel cancels it
//! (it completes with `-ECANCELED`) and the loop closes the client; if it
//! completes first, the kernel disarms the timer. No timer wheel, no periodic
//! sweep over every connection; the price is a second SQE and CQE per operation.
//! Linking the send too gives a client that stopped reading the same deadline a
//! blocking model's `SO_SNDTIMEO` gives it.
//!
//! **Shutdown.** A `PollAdd(POLLIN)` on the shutdown wake fd completes when the
//! server is told to stop: the accept is cancelled (`AsyncCancel`), connections
//! in flight get `--grace` (a `Timeout`), then every remaining operation is
//! cancelled. `serve` returns only when the last CQE has arrived, so no
//! operation can still point at a freed buffer; every socket is closed before
//! the ring is dropped.
//!
//! **Connection cap.** Past `--max-conns` no accept is armed, and a multishot
//! accept is cancelled. A multishot accept cannot be told "N more": when it
//! fires, the kernel accepts everything queued on the listener. Connections it
//! took past the cap wait, unserved and uncounted, in a queue of ours until a
//! slot frees — as they would have waited in the backlog, and at most one
//! backlog's worth: each was already a complete kernel socket there, so parking
//! it costs a descriptor, not memory. `EMFILE`/`ENFILE` on accept arm a
//! `Timeout` of `RESOURCE_BACKOFF` before the accept is re-armed: no busy loop.
//! (A detail that surprises: io_uring reads `RLIMIT_NOFILE` when the accept is
//! *submitted*, so an armed multishot accept keeps the limit it started with.)
//!
//! **`loops`** (the `--loops` option): N rings, one thread each, sharing
//! nothing, each serving its share of `--max-conns`. If the listener given to
//! [`serve`] has `SO_REUSEPORT` set, each extra loop binds its own listener on
//! the same address and the kernel spreads new connections between them by a
//! hash of the addresses; otherwise the loops share `dup`'d descriptors of the
//! one listener and every loop's accept competes for each connection. **The CLI
//! should bind with `BindOptions { reuse_port: true, .. }` when `loops > 1`**
//! (the same for UDP sockets), as for `socklab-nonblocking`.
//!
//! # What it costs
//!
//! - **Syscalls per request.** nonblocking: `epoll_wait` + `read` + `write`
//!   (and `EAGAIN`s); uring: a share of one `io_uring_enter` — the submissions of
//!   a whole loop iteration (many clients' recvs and sends) go in one call, and
//!   with many busy clients one enter serves many requests. This is something the
//!   project measures, not something to take on faith:
//!   `strace -f -c -e trace=io_uring_enter,epoll_wait,read,write,recvfrom,sendto
//!   socklab serve uring …` under a fixed number of requests from `socklab load`.
//!   Measured on the project's 2-CPU VM (kernel 6.18), marginal over a fixed
//!   number of requests, with
//!   `socklab compare --models nonblocking,uring --counted-only --counted-conns 1,100,1000`:
//!
//!   | connections | nonblocking syscalls/request | uring syscalls/request |
//!   |---:|---|---|
//!   | 1 | 3.00 (`epoll_wait`, `recvfrom`, `sendto`) | 2.0–2.1 (`io_uring_enter`) |
//!   | 100 | 2.01 (`epoll_wait` 0.01) | 0.04–0.06 |
//!   | 1,000 | 2.00 | under 0.1 (two runs: 0.09, and 0.00 where the longer run made no more enters than the shorter) |
//!
//!   With one client each request still costs two enters (one submits the send
//!   and waits; the next reaps the recv). With many, one enter carries dozens of
//!   completions. strace slows every syscall, which lets more completions queue
//!   per enter than in an untraced run: read the batched rows as the direction,
//!   not the exact untraced count.
//! - **Why batching changes the cost.** A syscall's fixed price (the mode switch,
//!   and the speculative-execution mitigations on entry and exit) is paid per
//!   call, not per byte. epoll pays it for a `read` and a `write` per request
//!   (its `epoll_wait` is shared by every socket ready at once); io_uring pays it
//!   once per loop iteration, so the busier the server the less each request
//!   pays. At one connection there is nothing to batch and the two meet.
//! - **io-wq workers.** Socket operations normally complete inline or by a poll
//!   the kernel arms for us (`IORING_FEAT_FAST_POLL`); an operation that would
//!   block and cannot be polled is handed to an *io-wq* worker — a kernel thread
//!   (`iou-wrk-<pid>`) that does the blocking call for us. They are kernel
//!   threads of the server's process, so their CPU and context switches count as
//!   the server's in the report; `ps -eLf` shows them while they live.
//! - **Memory per connection:** the 16 KiB input buffer (pinned by the armed
//!   recv, see above), reply buffers up to the backpressure cap, the `Session`
//!   and a few hundred bytes of state. The ring itself: 1,024 SQEs and 2,048
//!   CQEs per loop, about 100 KiB shared with the kernel.
//! - **CPU:** user-space scheduling as in every event loop — and `cpu` work stalls
//!   every client of the loop for its whole duration.
//! - **Timers are the kernel's**: `sleep` work is a `Timeout` operation, an
//!   hrtimer in the kernel, so it is as precise as the readiness loop's timerfd.
//!   `sleep:2ms` at 10 connections, server and load pinned apart (`taskset -c 0
//!   socklab serve uring --work sleep:2ms --tcp 127.0.0.1:0`, then `taskset -c 1
//!   socklab load ADDR --conns 10 --duration 5s`, 3 runs interleaved with the
//!   other models'): min 2,035 µs [2,033–2,040], p50 2,125 [2,107–2,141]; thread
//!   2,041 / 2,155, nonblocking 2,022 / 2,111, async (tokio's 1 ms wheel) 2,112 /
//!   3,237.
//!
//! From the committed full run (`scripts/compare.sh --full --out
//! results/2026-11-25-vm-full`; medians of 5 repeats, [min–max]; the tables are
//! in that directory's `report.md`): scaling at 10,000 connections, 94,903
//! requests/s [87,299–101,307] with the shortest tail of all the models (p99 121
//! ms, nonblocking 137 ms) and 8.41 KiB of PSS per connection (nonblocking 0.30
//! KiB: the pinned buffers); churn, 28.7 µs [28.0–29.7] of CPU per connection;
//! cpu (50 µs per request, 10 connections), 17,388 requests/s, the most of any
//! model, the batched syscalls leaving more of the one CPU for the work.
//!
//! # When it breaks
//!
//! - **`cpu` work** blocks the loop: one client's expensive request is everyone's
//!   latency (as in `socklab-nonblocking`); `--loops N` only spreads it over N.
//! - **Where io_uring is refused** — kernels before 5.6, containers whose seccomp
//!   profile blocks `io_uring_setup` (Docker's default does), and hosts with
//!   `kernel.io_uring_disabled` = 2 (or 1 and the user not in
//!   `kernel.io_uring_group`), because io_uring has been a rich source of kernel
//!   bugs — [`serve`] returns `ErrorKind::Unsupported` with one line saying why,
//!   and [`availability`] lets callers skip the model.
//! - **Many idle connections** cost a pinned buffer each (see above), where
//!   epoll costs none.
//! - **A mistake with buffer lifetimes is a kernel writing into freed memory**,
//!   not a compile error: the discipline above is the price of the API.
//!
//! # Compare with
//!
//! - `socklab-nonblocking`: the same single-threaded loop over readiness
//!   (`epoll_wait` then `read`/`write`): same backpressure, timers and `--loops`.
//! - `socklab-async`: tokio tasks over epoll — readiness hidden behind `.await`.
//! - `socklab-thread`: the kernel schedules one blocked thread per client instead.

mod ring;
mod tcp;
mod udp;

use std::io;
use std::net::{TcpListener, UdpSocket};

use socklab_server_kit::loops::{loop_count, per_loop, run_loops, shares};
use socklab_server_kit::{bind_tcp, bind_udp, Context};

/// The backpressure bound, shared with `socklab-nonblocking`.
pub use socklab_server_kit::MAX_PENDING_OUTPUT;

/// How the io_uring server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Independent event loops, each a ring on its own thread (default 1). With
    /// more than one, give `serve` a listener bound with `SO_REUSEPORT` so each
    /// loop gets its own. Taken as at least 1 and at most `max_conns`.
    pub loops: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { loops: 1 }
    }
}

/// `Ok` if this kernel lets us run the io_uring model; otherwise one line saying
/// why not, for tests and the CLI to print when they skip it.
pub fn availability() -> Result<(), String> {
    ring::kernel_features()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Serves TCP on `options.loops` io_uring loops until shutdown, then lets
/// connections in flight finish for the grace period. Returns an
/// `ErrorKind::Unsupported` error, before serving anyone, where the kernel
/// refuses io_uring.
pub fn serve(listener: TcpListener, cx: &Context, options: &Options) -> io::Result<()> {
    let features = ring::kernel_features()?;
    let loops = loop_count(options.loops, cx.config.max_conns);
    let addr = listener.local_addr()?;
    let listeners = per_loop(listener, loops, addr, bind_tcp, TcpListener::try_clone)?;
    let caps = shares(cx.config.max_conns, loops);
    let work = with_rings(listeners.into_iter().zip(caps).collect())?;
    run_loops(work, &cx.shutdown, |(ring, (listener, cap))| {
        tcp::TcpLoop::new(ring, listener, cx, features, cap).run()
    })
}

/// Serves UDP on `options.loops` io_uring loops: each keeps
/// 16 datagrams in flight with `RecvMsg`/`SendMsg`, and
/// answers each datagram whole.
pub fn serve_udp(socket: UdpSocket, cx: &Context, options: &Options) -> io::Result<()> {
    ring::kernel_features()?;
    let addr = socket.local_addr()?;
    let sockets = per_loop(
        socket,
        options.loops.max(1),
        addr,
        bind_udp,
        UdpSocket::try_clone,
    )?;
    let work = with_rings(sockets)?;
    run_loops(work, &cx.shutdown, |(ring, socket)| {
        udp::UdpLoop::new(ring, socket, cx).run()
    })
}

/// Pairs each loop's socket with its ring. Every ring is created before any loop
/// starts, so a refusal is reported before anyone is served.
fn with_rings<S>(sockets: Vec<S>) -> io::Result<Vec<(ring::Ring, S)>> {
    sockets
        .into_iter()
        .map(|s| Ok((ring::Ring::new()?, s)))
        .collect()
}

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
//! handles every ready CQE, queueing the next operations (the reply's `send`, a
//! timer), which go in at the next enter. Per connection:
//!
//! - **accept**: one multishot `AcceptMulti` (Linux 5.19+: one SQE, a CQE per new
//!   connection) — or single-shot `Accept`, re-armed after each connection, on
//!   older kernels. `io_uring::Probe` lists opcodes, not flags, so the `socket`
//!   opcode of the same release stands in for multishot, and an `EINVAL` falls
//!   back to single-shot. It is re-armed whenever a CQE comes without
//!   `IORING_CQE_F_MORE` (the kernel ended the multishot).
//! - **recv**: one *multishot* `RecvMulti` with buffer selection (Linux 6.0): one
//!   SQE, then a CQE each time data arrives, each naming the buffer of the loop's
//!   shared pool the kernel put the bytes in (below). The bytes go through the
//!   same `socklab_protocol::Session` as every model; the replies are queued.
//!   It is re-armed whenever a CQE comes without `IORING_CQE_F_MORE`: the client
//!   closed (0), the pool ran dry (`ENOBUFS`), or we cancelled it.
//! - **send** of the queued replies. A send that moved fewer bytes than asked
//!   (the socket buffer filled) is resubmitted with the rest.
//! - **work**: `cpu` is spun inline (`spin_for`) — the whole loop, every client,
//!   waits: that is the lesson. `sleep` is a `Timeout` operation; the replies are
//!   held until it completes, and the loop serves everyone else meanwhile.
//!
//! **Who owns the buffer while the kernel works.** With `epoll` the buffer is
//! ours at every instant: `read()` fills it while we wait in the syscall. Here a
//! `send` (or a `recv` into a buffer of ours) is *submitted* and the syscall
//! returns; the kernel reads or writes the buffer later, whenever the socket is
//! ready. Until that completion is reaped, the buffer belongs to the kernel: it
//! must stay alive and must not move — so it cannot live in a stack frame or a
//! `Vec` that might reallocate. Each connection's state is therefore boxed in a
//! slab under the index its operations carry in `user_data`, and a connection is
//! freed only when its last operation has completed (a cancelled one completes
//! too, with `-ECANCELED`). Replies produced while a send is in flight go to a
//! second buffer (`pending`), never appended to the one the kernel is reading.
//! This is why io_uring's submission calls are `unsafe` in Rust: the compiler
//! cannot see the kernel's borrow. Each `unsafe` block here says why its memory
//! outlives its operation.
//!
//! **Receive buffers: one pool per loop, lent to the kernel up front.** A
//! readiness loop holds no buffer for a waiting client: `epoll_wait` says "fd 7
//! is readable" and only then does the loop `read()` into its one buffer, so
//! `socklab-nonblocking` needs one buffer per *loop*. A completion loop must say
//! where the bytes go *when it submits the recv*, before any have arrived; a recv
//! into a buffer of the connection's own pins that buffer for as long as the
//! client is silent — which, for an idle client, is forever. socklab's uring did
//! exactly that until issue 16: a 16 KiB buffer per connection, 8.4 KiB of it
//! resident once used (two pages: the allocator's and the first read's), 843 MB
//! at 100,000 idle clients where the readiness loop needs 24 MB.
//!
//! A **provided-buffer ring** (`IORING_REGISTER_PBUF_RING`, Linux 5.19) turns that
//! around: the loop lends the kernel a pool of buffers — a ring of (address,
//! length, id) entries in memory shared with it, registered once with
//! `io_uring_register` — and a recv names a buffer *group* instead of a buffer
//! (`IOSQE_BUFFER_SELECT`). The kernel takes a buffer from the ring only when
//! bytes are there to go in it and names it in the CQE (`IORING_CQE_F_BUFFER`).
//! The loop feeds the bytes to the protocol (or copies them aside, if the
//! connection may not take input yet) and puts the buffer straight back at the
//! ring's tail: a store to shared memory, no syscall. So an idle connection holds
//! no buffer, and the pool is sized by the data that arrives in one batch, not by
//! the number of clients: 256 buffers of 4 KiB to start (`bufring.rs`).
//!
//! **Multishot recv** is what makes that cheap: with a buffer picked per
//! arrival, one recv SQE can serve every arrival on the socket until something
//! ends it, so the steady state submits almost no recv at all — one SQE per
//! connection per 256 KiB of input (its byte budget, below), against one per
//! request before. Its CQEs carry `IORING_CQE_F_MORE` while it stays armed.
//!
//! **When the pool runs dry.** More arrivals in one batch than free buffers: the
//! recv that finds the ring empty ends with `-ENOBUFS`, and its bytes wait in the
//! socket. The loop doubles the pool (up to 2,048 buffers, 8 MiB, whose address
//! space is reserved at the start and costs nothing until written), and re-arms
//! that recv; every other completion of the batch has handed its buffer back
//! before the next `io_uring_enter`. No byte is lost and no other client waits.
//!
//! **The fallback.** Where the kernel refuses buffer rings (before 5.19) or
//! multishot recv (before 6.0, found by the probe or by an `EINVAL`), the loop
//! says so on stderr, once, and goes back to a 16 KiB buffer per connection and a
//! single-shot `Recv`, re-armed after each completion — to the rest of the loop,
//! a multishot recv that always ends after one CQE.
//!
//! **Backpressure.** A connection whose queued output passes
//! [`MAX_PENDING_OUTPUT`] gets no recv until it drains: a client that sends but
//! never reads fills its socket buffers and then blocks in its own `write()`; the
//! server's memory for it stays bounded. A multishot recv makes that harder than
//! it sounds: it is greedy. In one `io_uring_enter` the kernel may deliver all
//! the socket holds, a completion per free buffer, before the loop has seen the
//! first of them and could cancel the recv — measured here, 2 MiB past the cap
//! per non-reading client, and 69 MB of growth under the hardening suite's four
//! (`non_readers_cannot_grow_memory`, whose bound is 64 MiB). So each multishot
//! recv carries a **byte budget**: the cap less what the connection already has
//! queued, in `sqe->optlen` (Linux 6.17, added because the kernel "might produce
//! a lot of completions before the user has a chance to cancel"); it ends,
//! without F_MORE, once the budget is spent, and is re-armed only while there is
//! budget. The four non-readers then grow the server by 3 MB. On 6.0 to 6.16
//! (which answer the budget with `EINVAL`) the loop cancels the recv at the cap
//! instead (`AsyncCancel`). Bytes that arrive while the protocol may not take
//! them (past the cap, or while a `sleep` reply is held) are copied to the
//! connection's `unread` and fed first when allowed.
//!
//! **Idle timeout: one lazy timer per connection.** Each connection has a
//! `Timeout` operation of `--idle-timeout`. When it fires, the loop looks at when
//! bytes last moved either way: silent (or not reading our replies) for the whole
//! timeout, the client is closed; otherwise the timer is re-armed for the rest.
//! A busy client costs one timer SQE per idle period, not one per request, and
//! an idle one a timer the kernel holds. (Until issue 16 a `LinkTimeout` was
//! linked to each recv and send; a timeout linked to a multishot recv would time
//! the whole multishot, which is not done until it ends, not each silence.)
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
//!   not the exact untraced count. (Measured before the multishot recv.
//!   Re-measured for it, `socklab compare --counted-only --models uring
//!   --counted-conns 1,100`, 4 runs each, interleaved: 1 connection, 1.79–2.13
//!   before and 1.49–2.01 after; 100 connections, 0.01–0.07 and 0.00–0.08, one
//!   run after giving no figure at all because its longer run made no more
//!   enters than its shorter. No difference the spread can show.)
//! - **Operations per request.** What multishot recv changes is not the enters
//!   but what goes through them: one SQE per request (the reply's send) where
//!   there were two (a recv and a send), and four with `--idle-timeout` (each
//!   with its `LinkTimeout`); two CQEs, where there were four with the timeout.
//!   Counted with the kernel's tracepoints, `perf stat -e
//!   io_uring:io_uring_submit_req,io_uring:io_uring_complete -p PID` over a 3 s
//!   `socklab load ADDR --conns N`, divided by the server's request count:
//!
//!   | | before (owned buffers) | after (buffer ring, multishot) |
//!   |---|---|---|
//!   | 1 connection | 2.000 SQEs, 2.000 CQEs | 1.000 SQEs, 2.000 CQEs |
//!   | 100 connections | 2.000 / 2.000 | 1.000 / 2.000 |
//!   | 100, `--idle-timeout 30s` | 4.000 / 4.001 | 1.001 / 2.001 |
//!   | 1,000 connections | 2.004 / 2.008 | 1.007 / 2.010 |
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
//! - **Memory per connection:** 272 bytes of state (the boxed `Connection` with
//!   its `Session`), plus reply buffers up to the backpressure cap while replies
//!   wait; no receive buffer. Per loop: the buffer pool (1 MiB to start,
//!   resident once recycled through), and the ring itself, 1,024 SQEs and 2,048
//!   CQEs, about 100 KiB shared with the kernel. In the kernel (not in RSS or
//!   PSS) each idle connection holds its armed multishot recv and, with
//!   `--idle-timeout`, its timer. Measured the issue's way — 5,000 connections,
//!   each served one 64-byte request and then idle, the server's RSS and PSS
//!   from `/proc/PID/smaps_rollup` before and after, divided by 5,000
//!   (`taskset -c 0 socklab serve uring --tcp 127.0.0.1:0`, then `taskset -c 1
//!   cargo run --release -p socklab-uring --example idle_conns -- ADDR PID
//!   5000`; 3 runs each, interleaved, identical to 0.01 KiB): **0.65 KiB** of RSS
//!   and of PSS per idle connection, 0.2 KiB of it the pool's 1 MiB spread over
//!   5,000; 8.43 KiB with a buffer per connection; nonblocking 0.24 KiB. At
//!   100,000 connections, about 65 MB where it was 843 MB.
//! - **Throughput did not move measurably.** Server on CPU 0, load on CPU 1
//!   (`taskset -c 1 socklab load ADDR --conns N --duration 5s`), 5 runs each,
//!   before and after interleaved, medians [min–max], on a VM other work was
//!   sharing (load average 2.1–3.8): 100 connections, 136,473 [101,896–168,972]
//!   requests/s before, 156,634 [88,623–164,933] after, server CPU per request
//!   (the usage line it prints on exit) 5.95 µs [5.57–7.15] and 5.74
//!   [5.52–6.36]; 1,000 connections, 66,933 [39,654–123,122] and 67,290
//!   [44,718–140,686], 7.42 µs [6.44–8.54] and 6.72 [5.56–6.93] (the pool grew
//!   to 2,048 buffers in each run at 1,000). The ranges overlap: the SQEs saved
//!   are real, but on loopback the socket work inside the enter dominates.
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
//! results/2026-12-01-vm-full`, 2-CPU VM; medians of 5 repeats, [min–max]; the
//! tables are in that directory's `report.md`), with the buffer ring:
//!
//! - scaling at 10,000 connections: 91,009 requests/s [80,647–100,694], the
//!   lowest median, but the ranges of every model that served all 10,000
//!   overlap it: no measurable difference. 1.35 KiB [1.35–1.37] of PSS per
//!   connection (nonblocking 0.239 KiB, async 9.34 KiB). Its tail is not the
//!   shortest: p99 334,079 µs [305,407–495,103], longer than nonblocking's
//!   146,943 [116,671–183,679] and workers' 178,815 [157,951–194,559], and no
//!   measurable difference from async's.
//! - churn: 19.8 µs [18.5–21.6] of CPU per connection, 28,937 connections/s
//!   [27,835–35,039].
//! - cpu (50 µs per request, 10 connections, server on one CPU): 17,316
//!   requests/s [16,866–18,008], the highest median, but nonblocking's, workers'
//!   and async's ranges overlap it: no measurable difference.
//! - counted: 1.98 syscalls per request at one connection (`io_uring_enter`
//!   1.98), 1.00 context switch; at 100 connections, 0.140 (`io_uring_enter`
//!   only) and 0.000200 context switches per request (nonblocking 2.01 and
//!   0.0108). How many requests one `io_uring_enter` carries depends on timing,
//!   so the 100-connection figure moves between runs (0.0195 in the quick run);
//!   docs/BENCHMARKS.md tells how this one was re-measured. User-space instructions
//!   were not counted: under callgrind the server did not stop within 10 s of
//!   SIGTERM and was killed, at both connection counts.
//!
//! # When it breaks
//!
//! - **`cpu` work** blocks the loop: one client's expensive request is everyone's
//!   latency (as in `socklab-nonblocking`); `--loops N` only spreads it over N.
//!   Given 2 CPUs instead of one, the cpu scenario's one loop served 1.01× the
//!   requests per second.
//! - **Where io_uring is refused** — kernels before 5.6, containers whose seccomp
//!   profile blocks `io_uring_setup` (Docker's default does), and hosts with
//!   `kernel.io_uring_disabled` = 2 (or 1 and the user not in
//!   `kernel.io_uring_group`), because io_uring has been a rich source of kernel
//!   bugs — [`serve`] returns `ErrorKind::Unsupported` with one line saying why,
//!   and [`availability`] lets callers skip the model.
//! - **A kernel without buffer rings or multishot recv** (before 5.19 / 6.0)
//!   gets the fallback, and with it a buffer per idle connection again.
//! - **A mistake with buffer lifetimes is a kernel writing into freed memory**,
//!   not a compile error: the discipline above is the price of the API.
//!
//! # Compare with
//!
//! - `socklab-nonblocking`: the same single-threaded loop over readiness
//!   (`epoll_wait` then `read`/`write`): same backpressure, timers and `--loops`.
//! - `socklab-async`: tokio tasks over epoll — readiness hidden behind `.await`.
//! - `socklab-thread`: the kernel schedules one blocked thread per client instead.

mod bufring;
mod ring;
mod tcp;
mod udp;

use std::io;
use std::net::{TcpListener, UdpSocket};

use socklab_server_kit::loops::{loop_count, run_loops, shares, tcp_listeners, udp_sockets};
use socklab_server_kit::Context;

use crate::tcp::RecvBuffers;

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
    let loops = loop_count(options.loops, cx.config.max_conns);
    serve_on(tcp_listeners(listener, loops)?, cx)
}

/// [`serve`] on listeners already bound, one per loop ([`tcp_listeners`]): how
/// `socklab serve` binds every socket before it announces the address.
pub fn serve_on(listeners: Vec<TcpListener>, cx: &Context) -> io::Result<()> {
    serve_tcp(listeners, cx, RecvBuffers::Provided(bufring::POOL))
}

/// [`serve_on`], with the receive buffers chosen (the tests choose the fallback,
/// or a pool small enough to run dry).
fn serve_tcp(
    listeners: Vec<TcpListener>,
    cx: &Context,
    recv_buffers: RecvBuffers,
) -> io::Result<()> {
    let features = ring::kernel_features()?;
    let caps = shares(cx.config.max_conns, listeners.len());
    let work = with_rings(listeners.into_iter().zip(caps).collect())?;
    run_loops(work, &cx.shutdown, |(ring, (listener, cap))| {
        tcp::TcpLoop::new(ring, listener, cx, features, cap, recv_buffers).run()
    })
}

/// Serves UDP on `options.loops` io_uring loops: each keeps
/// 16 datagrams in flight with `RecvMsg`/`SendMsg`, and
/// answers each datagram whole.
pub fn serve_udp(socket: UdpSocket, cx: &Context, options: &Options) -> io::Result<()> {
    serve_udp_on(udp_sockets(socket, options.loops.max(1))?, cx)
}

/// [`serve_udp`] on sockets already bound, one per loop ([`udp_sockets`]).
pub fn serve_udp_on(sockets: Vec<UdpSocket>, cx: &Context) -> io::Result<()> {
    ring::kernel_features()?;
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

#[cfg(test)]
mod tests {
    //! The receive paths the default configuration rarely or never takes here:
    //! the fallback to a buffer per connection, and a buffer ring that runs dry.

    use std::io::{Read, Write};
    use std::thread;
    use std::time::Duration;

    use socklab_server_kit::testing::{
        assert_idle_client_disconnected, connect, round_trip, TestServer,
    };
    use socklab_server_kit::Config;

    use super::*;
    use crate::bufring::PoolSize;

    fn server(config: Config, recv_buffers: RecvBuffers) -> Option<TestServer> {
        if let Err(why) = availability() {
            eprintln!("skipping: {why}");
            return None;
        }
        Some(TestServer::tcp(config, move |listener, cx| {
            serve_tcp(vec![listener], cx, recv_buffers)
        }))
    }

    /// Bytes `0..len` of a pattern each client tells apart from the others'.
    fn message(client: usize, len: usize) -> Vec<u8> {
        (0..len).map(|i| b'a' + ((i + client) % 26) as u8).collect()
    }

    /// Clients that each send `len` bytes at once and read them back uppercased,
    /// all at the same time; every byte comes back, in order.
    fn concurrent_round_trips(server: &TestServer, clients: usize, len: usize) {
        let addr = server.addr;
        let workers: Vec<_> = (0..clients)
            .map(|client| {
                thread::spawn(move || {
                    let mut stream = connect(addr);
                    let sent = message(client, len);
                    let writer = {
                        let mut stream = stream.try_clone().unwrap();
                        let sent = sent.clone();
                        thread::spawn(move || stream.write_all(&sent).unwrap())
                    };
                    let mut got = vec![0u8; len];
                    stream.read_exact(&mut got).unwrap();
                    writer.join().unwrap();
                    assert!(
                        got == sent.to_ascii_uppercase(),
                        "client {client}: bytes differ"
                    );
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
    }

    /// The fallback (a `READ_BUF` buffer per connection, single-shot recv) serves
    /// small and large requests, several clients at once.
    #[test]
    fn the_fallback_serves_with_a_buffer_per_connection() {
        let Some(server) = server(Config::default(), RecvBuffers::Owned) else {
            return;
        };
        let mut client = connect(server.addr);
        assert_eq!(round_trip(&mut client, b"owned"), b"OWNED");
        drop(client);
        concurrent_round_trips(&server, 4, 1 << 20);
        server.stop();
    }

    /// The fallback's idle timer disconnects a silent client as the default's does.
    #[test]
    fn the_fallback_disconnects_an_idle_client() {
        let idle = Duration::from_millis(200);
        let config = Config {
            idle_timeout: Some(idle),
            ..Config::default()
        };
        let Some(server) = server(config, RecvBuffers::Owned) else {
            return;
        };
        assert_idle_client_disconnected(server.addr, idle, "uring, owned buffers");
        server.stop();
    }

    /// A ring of one buffer runs dry whenever two connections have data in the
    /// same batch: each recv that finds it empty ends with ENOBUFS and is
    /// re-armed, and every client still gets every byte back.
    #[test]
    fn a_dry_buffer_ring_loses_nothing_and_stalls_no_one() {
        let one = PoolSize { initial: 1, max: 1 };
        let Some(server) = server(Config::default(), RecvBuffers::Provided(one)) else {
            return;
        };
        concurrent_round_trips(&server, 8, 256 << 10);
        server.stop();
    }

    /// Without the byte limit on multishot recv (Linux 6.0 to 6.16) a client that
    /// never reads is still held back: its recv is cancelled at the cap, and only
    /// what the kernel delivered before the cancel landed waits in `unread`.
    #[test]
    fn without_the_byte_limit_a_non_reader_is_still_held_back() {
        let Some(server) = server(Config::default(), RecvBuffers::Unlimited(bufring::POOL)) else {
            return;
        };
        let mut client = connect(server.addr);
        assert_eq!(round_trip(&mut client, b"unlimited"), b"UNLIMITED");
        concurrent_round_trips(&server, 4, 1 << 20);
        let mut hog = connect(server.addr);
        hog.set_write_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let chunk = vec![b'h'; 64 << 10];
        let mut written = 0usize;
        while hog.write(&chunk).is_ok() {
            written += chunk.len();
            assert!(
                written < 256 << 20,
                "the server read {written} bytes from a non-reader"
            );
        }
        // Everyone else is still served.
        assert_eq!(round_trip(&mut client, b"still"), b"STILL");
        eprintln!("the non-reader wrote {written} bytes before it stalled");
        drop((hog, client));
        server.stop();
    }

    /// A ring that starts with one buffer grows (doubling) as it runs dry, and
    /// serves the same load.
    #[test]
    fn a_buffer_ring_grows_when_it_runs_dry() {
        let small = PoolSize {
            initial: 1,
            max: 64,
        };
        let Some(server) = server(Config::default(), RecvBuffers::Provided(small)) else {
            return;
        };
        concurrent_round_trips(&server, 8, 256 << 10);
        server.stop();
    }
}

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
//! Measured in the committed full run (`scripts/compare.sh --full --out
//! results/2026-12-01-vm-full`, 2-CPU VM; medians of 5 repeats, [min–max]; the
//! tables are in that directory's `report.md`):
//!
//! - One `clone()` per connection (a stack is mapped, the kernel creates a task)
//!   and one `exit` + `munmap` when it ends. churn: 45.8 µs [40.0–49.6] of server
//!   CPU per connection, 19,990 connections/s [18,489–22,390] — against fork's
//!   300 µs and 3,244/s, and 18.9 µs for a server that creates nothing.
//! - Per connection: a task in the kernel and a stack — 2 MiB of address space
//!   (std's default), of which only the touched pages are resident. scaling at
//!   1,000 connections: 22.5 KiB [22.5–22.7] of PSS per connection; at 10,000,
//!   22.0 KiB per connection held, with 7,400 threads alive.
//! - Per request: the kernel schedules. A thread blocked in `read()` is woken when
//!   data arrives: a context switch per request (counted at 100 connections:
//!   1.01, with 376 user-space instructions per request, about what every
//!   blocking model runs (375 to 390) and fewer than the readiness loop's 545 —
//!   the scheduler does the rest; at one connection 1.00 and 377).
//! - sleep work blocks only its own thread: `sleep:2ms` at 100 connections, 44,108
//!   requests/s [36,879–45,099], 88.2 % of the ideal 50,000/s; fork, nonblocking,
//!   workers and uring overlap it, so no measurable difference from them; async
//!   serves fewer, 25,690 [23,779–27,876]. `std::thread::sleep` is a
//!   `nanosleep`, whose wake-up the kernel may defer by the thread's timer slack
//!   (50 µs by default): at 10 connections a 2 ms request takes min 2,041 µs, p50
//!   2,155 µs (`taskset -c 0 socklab serve thread --work sleep:2ms --tcp
//!   127.0.0.1:0`, then `taskset -c 1 socklab load ADDR --conns 10 --duration 5s`,
//!   3 runs: min 2,039–2,048, p50 2,119–2,175; with the slack cut to 1 µs by
//!   `prctl(PR_SET_TIMERSLACK)`, min 2,024 and p50 2,127).
//!
//! # When it breaks
//!
//! - At many connections, memory and scheduler work grow with every idle client
//!   (10,000 idle clients are 10,000 threads). scaling at 1,000 connections:
//!   62,871 requests/s [53,197–75,922] with 0.995 context switches [0.987–1.008]
//!   and 15.7 µs [12.9–18.5] of CPU per request, against the readiness loop's
//!   135,526/s [119,413–152,653] at 0.0519 switches and 6.68 µs; and ≥ 6.28 s
//!   [1.68–10.00] before every client had been answered once (two repeats of five
//!   reached the 10 s limit). At 10,000 it served 6,629 [6,320–7,339] of the
//!   10,000 clients in the window, where the readiness loop served them all.
//! - A crash in one handler (a segfault, an `abort()`) kills the whole process:
//!   threads share one address space. The chaos scenario loses every client (the
//!   server did not survive), where `socklab-fork` loses one.
//! - Without a cap a connection flood exhausts threads or memory: past
//!   `--max-conns` this server stops accepting until a client leaves. c100k
//!   (100,000 mostly idle clients): it lowered `--max-conns 100000` to 16,114,
//!   what `vm.max_map_count` (65,530) allows at four mappings a thread, and held
//!   and served 16,114 of the 100,000.
//!
//! # Compare with
//!
//! - `socklab-fork`: the same loop with `fork()` instead of a thread.
//! - `socklab-pool`: a fixed set of threads created up front and fed connections.
//! - `socklab-iterative`: the same loop that serves the client itself.

use std::io;
use std::net::{TcpListener, UdpSocket};

use socklab_server_kit::{Client, Clients, Context};

/// Serves TCP with one thread per client until shutdown, then lets connections in
/// flight finish for the grace period.
pub fn serve(listener: TcpListener, cx: &Context) -> io::Result<()> {
    socklab_server_kit::set_accept_timeout(&listener)?;
    let cx = &within_mappings(cx);
    for client in Clients::new(&listener, cx) {
        spawn_handler(client, cx);
    }
    cx.drain();
    Ok(())
}

/// `cx` with `--max-conns` lowered, if need be, to the threads this process's
/// memory mappings allow (`vm.max_map_count`, four mappings a thread). A thread
/// that cannot map its signal stack aborts the whole process, so past that line
/// the only safe answer is to stop accepting, as at the cap. Measured here with
/// `--max-conns 100000` before this check: at 16,367 threads the server died in 4
/// runs of 5, losing all 16,367 clients.
fn within_mappings(cx: &Context) -> Context {
    let mut cx = cx.clone();
    if let Some((left, max)) = socklab_server_kit::exhaustion::threads_within_mappings() {
        if left < cx.config.max_conns {
            eprintln!(
                "socklab thread: --max-conns {} lowered to {left}: a thread takes {} memory \
                 mappings and vm.max_map_count is {max}; past it a new thread cannot map its \
                 signal stack and the whole process aborts",
                cx.config.max_conns,
                socklab_server_kit::exhaustion::MAPPINGS_PER_THREAD
            );
            let mut config = (*cx.config).clone();
            config.max_conns = left;
            cx.config = std::sync::Arc::new(config);
        }
    }
    cx
}

/// Starts the thread that owns one client.
fn spawn_handler(client: Client, cx: &Context) {
    let handler_cx = cx.clone();
    let spawned = std::thread::Builder::new()
        .name("client".into())
        .spawn(move || client.serve(&handler_cx, "thread"));
    if let Err(e) = spawned {
        // Out of threads or memory: this client is dropped (its stream and guard
        // were moved into the closure that never ran, and are dropped with it:
        // the connection closes and is counted closed); the server lives.
        socklab_server_kit::exhaustion::say_once(
            "thread",
            "cannot spawn a thread",
            &e,
            "this client is dropped",
        );
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

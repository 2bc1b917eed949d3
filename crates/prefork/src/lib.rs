//! Prefork: N worker processes forked once, up front, and kept alive.
//!
//! # Model
//!
//! `serve` forks [`Options::workers`] processes before the first client arrives
//! (Stevens' serv02–serv05, Apache's prefork MPM) and from then on only
//! supervises them. Each worker serves one client at a time with the shared
//! blocking driver. How a connection reaches a worker is the [`PreforkMode`]:
//!
//! - [`PreforkMode::NoLock`] (serv02): every worker blocks in `accept()` on the
//!   listening socket it inherited across `fork()`. The kernel queues the blocked
//!   accepters and wakes *one* per connection (an "exclusive" wait, in Linux
//!   since the 2.4 kernels), so a blocking `accept()` has no "thundering herd".
//!   The herd Stevens measured is back if workers `select()`/`poll()`/`epoll`
//!   the listener before accepting.
//! - [`PreforkMode::Flock`] (serv03): a worker takes an exclusive `flock()` on a
//!   lock file around `accept()`, so only one at a time waits in `accept()`.
//!   Stevens needed it where `accept()` was a library function that several
//!   processes could not share (SVR4), or with `select()`. On Linux it buys
//!   nothing and costs two syscalls per connection: measure it. (Why `flock`, and
//!   why each worker reopens the file: see the `lock` module.)
//! - [`PreforkMode::PassFd`] (serv05): only the parent accepts. It passes each
//!   connection to an idle worker over a Unix socketpair (`sendmsg()` with
//!   `SCM_RIGHTS`); the worker writes a byte back when it is idle again. With no
//!   worker idle, the parent stops accepting until one is.
//!
//! **Supervision.** The parent reaps every
//! [`REAP_INTERVAL`](socklab_server_kit::process::REAP_INTERVAL) (or at once when
//! shutdown's wake descriptor fires), by the rule every process model shares
//! (`socklab_server_kit::process`: only its own children, by pid). A worker
//! that died — killed by a signal, or `abort()` by the `--chaos` flag — is logged
//! and replaced in the same slot; if it held a client, that one connection is
//! counted closed (its socket died with it) and is the only one lost.
//!
//! **Stopping**, by the stop protocol every process model shares (SIGINT and
//! SIGTERM blocked across `fork()`; details in `socklab_server_kit::process`).
//! Workers ignore SIGINT (Ctrl-C reaches the whole process group; only the parent
//! decides) and treat SIGTERM as "finish your client, then exit". On shutdown the
//! parent stops accepting, sends each worker SIGTERM, waits up to `Config::grace`
//! for them to exit, SIGKILLs the rest and reaps every one: no zombies. Every
//! worker also has `PR_SET_PDEATHSIG(SIGKILL)`, so if the parent dies the kernel
//! kills them: no orphans.
//!
//! **Counting.** Workers count into `cx.counters`, which lives in a `MAP_SHARED`
//! page, so the parent sees their numbers. Besides, each worker slot counts the
//! connections it accepted in a shared-memory board (the supervisor's, in
//! `socklab_server_kit::supervisor`, shared with `socklab-workers`); [`serve`]
//! prints the distribution to stderr when it returns (`worker 0: 52
//! connections, worker 1: 48 connections`) and [`serve_with_counts`] returns it. How evenly connections
//! spread over the workers is a lesson of its own. One run of this crate's test
//! (30 one-request clients in a row, 3 workers, 2 CPUs): NoLock 6/15/9 — whoever
//! the kernel's accept queue wakes; Flock 11/10/9 — whoever won the lock; PassFd
//! 29/1/0 — the parent hands each client to the *first* idle worker in slot
//! order, so under light load worker 0 takes nearly everything (Stevens' serv05
//! picks the same way). The parent could pick the least-used idle worker instead:
//! that it *can* choose is PassFd's one advantage.
//!
//! # What it costs
//!
//! Measured in the committed full run (`scripts/compare.sh --full --out
//! results/2026-12-01-vm-full`, 2-CPU VM, `prefork --workers 4`, NoLock; medians
//! of 5 repeats, [min–max]; the tables are in that directory's `report.md`):
//!
//! - `fork()` `workers` times at start (and once per crash), never per
//!   connection: connection setup is one `accept()`, as in the pool. churn: 19.4
//!   µs [18.3–20.7] of server CPU per connection, 29,422 connections/s
//!   [28,654–37,827] — where `socklab-fork`'s `fork()` per client costs 300 µs
//!   and manages 3,244/s: 9.1× fewer.
//! - Per connection, by mode: NoLock nothing more; Flock two `flock()` calls;
//!   PassFd a `poll()` and `accept()` in the parent, `sendmsg()`/`recvmsg()` to hand
//!   over, a byte written and read back to say "idle", and a context switch from
//!   parent to worker.
//! - Memory: `workers` processes, each with its own page tables and private copies
//!   of every page it writes (buffers, stack, allocator state); pages never
//!   written stay shared copy-on-write. The report's PSS shares them out, and
//!   divides the growth by the connections the server held: 4, one per worker,
//!   however many clients came. scaling: 107 KiB [57–263] per held connection at
//!   10 connections, 197 KiB [57–205] at 10,000; the clients waiting in the
//!   backlog add nothing to it.
//! - Per request: the shared driver's `read()`/`write()` and a context switch
//!   (counted at 100 connections: 2.00 syscalls, 1.03 switches, 375 user-space
//!   instructions; at one, 2.00, 1.00 and 378 — the parent's `waitid` every
//!   `REAP_INTERVAL` does not show at two decimals).
//!
//! # When it breaks
//!
//! - Like the thread pool: N workers held by N idle or slow clients serve no one
//!   else; client N+1 waits in the listen backlog (in every mode: in PassFd the
//!   parent stops accepting when nobody is idle). slow (4 clients dribbling a
//!   request, 4 workers): the normal clients get 0 requests (0 of 10 served).
//! - Sized too small for blocking work, throughput is capped at `workers / work`:
//!   sleep (2 ms, 100 connections) 1,812 requests/s [1,779–1,839] for 4 workers,
//!   3.62 % of the ideal 50,000/s, with 4 of the 100 clients served.
//! - What it does *well*: a crashing handler kills one worker and one client; the
//!   parent replaces the worker and the others never notice (chaos: the server
//!   survived, 0 other clients lost). The same crash kills every client of a
//!   thread pool (chaos: pool lost all 10, and the server).
//!
//! # Compare with
//!
//! - `socklab-fork`: a process per client, forked on demand; prefork moves the
//!   `fork()` out of the connection's path.
//! - `socklab-pool`: the same fixed pool made of threads (its accept mode is
//!   NoLock's twin, its queue mode PassFd's).
//! - `socklab-nonblocking`: one process serving every client, because no client
//!   holds a process while it is idle.
//! - `socklab-workers`: the same supervisor, with an event loop in each worker
//!   instead of one client at a time (nginx's design).
//!
//! UDP ([`serve_udp`]): `workers` processes block in `recvfrom()` on the one
//! inherited socket, each running the shared datagram loop, under the same
//! supervision. The mode does not apply: there is no `accept()` to lock or
//! connection to pass.
//!
//! # Layout
//!
//! - this file: the model, and its base mode (NoLock): workers accepting for
//!   themselves.
//! - `lock`: the Flock mode's lock file.
//! - `passfd`: the PassFd mode's parent loop and `SCM_RIGHTS` passing.
//! - `socklab_server_kit::supervisor` (shared with `socklab-workers`): fork into
//!   slots, reap, replace, stop, and the per-slot counts in shared memory (after
//!   the rules every process model shares, in `socklab_server_kit::process`).

mod lock;
mod passfd;

use std::io;
use std::net::{TcpListener, UdpSocket};

use socklab_server_kit::config::check_workers;
pub use socklab_server_kit::config::default_workers;
use socklab_server_kit::supervisor::Supervisor;
pub use socklab_server_kit::supervisor::WorkerCounts;
use socklab_server_kit::{serve_client, serve_datagrams, Client, Clients, Context};

/// The name this model logs under.
const MODEL: &str = "prefork";

/// How connections reach the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PreforkMode {
    /// Every worker blocks in `accept()` on the shared listener (Stevens serv02).
    #[default]
    NoLock,
    /// A file lock (`flock`) around each worker's `accept()` (serv03).
    Flock,
    /// The parent accepts and passes descriptors to idle workers (serv05).
    PassFd,
}

/// How the prefork server is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Worker processes, forked at start (default: [`default_workers`]). At least 1.
    pub workers: usize,
    /// How connections reach workers (default: [`PreforkMode::NoLock`]).
    pub mode: PreforkMode,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: default_workers(),
            mode: PreforkMode::default(),
        }
    }
}

/// Serves TCP with `workers` preforked processes until shutdown, then stops them
/// (grace period, SIGKILL, reap) and prints the connections each one served.
pub fn serve(listener: TcpListener, cx: &Context, options: &Options) -> io::Result<()> {
    let counts = serve_with_counts(listener, cx, options)?;
    eprintln!("socklab prefork: {counts}");
    Ok(())
}

/// [`serve`], returning the per-worker distribution instead of printing it.
pub fn serve_with_counts(
    listener: TcpListener,
    cx: &Context,
    options: &Options,
) -> io::Result<WorkerCounts> {
    check_workers(options.workers, MODEL)?;
    let mut workers = Supervisor::new(cx, MODEL, options.workers)?;
    let result = match options.mode {
        PreforkMode::NoLock => {
            socklab_server_kit::set_accept_timeout(&listener)?;
            workers.keep_filled(|workers, slot| {
                workers.start(slot, |cx| serve_clients(Clients::new(&listener, cx), cx))
            });
            Ok(())
        }
        PreforkMode::Flock => lock::serve(&listener, &mut workers),
        PreforkMode::PassFd => passfd::serve(&listener, &mut workers),
    };
    // Stop accepting at once: the parent's descriptor closes now, the workers'
    // as they exit.
    drop(listener);
    workers.stop();
    result.map(|()| workers.counts())
}

/// Serves UDP with `workers` preforked processes sharing one socket.
pub fn serve_udp(socket: UdpSocket, cx: &Context, options: &Options) -> io::Result<()> {
    check_workers(options.workers, MODEL)?;
    let mut workers = Supervisor::new(cx, MODEL, options.workers)?;
    workers.keep_filled(|workers, slot| workers.start(slot, |cx| serve_datagrams(&socket, cx)));
    workers.stop();
    Ok(())
}

/// A worker that accepts for itself: the iterative server, one client at a time.
fn serve_clients(clients: impl Iterator<Item = Client>, cx: &Context) -> io::Result<()> {
    for client in clients {
        serve_one(client, cx);
    }
    Ok(())
}

/// Serves one client with the shared driver, counted open meanwhile (in the
/// server's counters and in this worker's slot).
fn serve_one(Client { stream, open }: Client, cx: &Context) {
    let _open = open;
    serve_client(stream, cx, MODEL);
}

//! Workers: N processes forked up front, each running one event loop on the
//! listener they all inherit — nginx's and HAProxy's design.
//!
//! # Model
//!
//! The parent forks [`Options::workers`] processes before the first client
//! (`fork()`, once per worker) and from then on only supervises them, as
//! prefork's parent does, with the same code (`socklab_server_kit::supervisor`):
//! SIGINT and SIGTERM blocked across `fork()`, a reap every `REAP_INTERVAL`, a
//! dead worker logged and replaced in its slot, SIGTERM then SIGKILL at shutdown,
//! `PR_SET_PDEATHSIG` so no worker outlives a killed parent. Each worker runs
//! nonblocking's loop, unchanged (`socklab_nonblocking::tcp_loop`): its own epoll
//! instance, `epoll_wait` as its only wait, `accept4` until `EAGAIN`, nonblocking
//! reads and writes, partial writes kept, timers on a `timerfd`. So this crate is
//! two ideas joined and hardly any code: prefork with each worker's blocking
//! accept loop replaced by an event loop, or `nonblocking --loops N` with its
//! threads replaced by processes.
//!
//! **One listener, inherited — not `SO_REUSEPORT`.** Every worker registers the
//! listening socket it inherited across `fork()` in its own epoll set. The other
//! way, nginx's `reuseport`, gives each worker its own listener bound to the same
//! port, and the kernel picks one by a hash of the client's address. This crate
//! inherits, for three reasons a reader can check:
//!
//! - **The cap holds exactly.** Each worker serves its share of `--max-conns`
//!   (shares that differ by at most one, as `--loops` splits it). A worker at its
//!   share deregisters the listener; the others, still registered, take the next
//!   client. So a client waits only when every worker is full, that is when
//!   `--max-conns` clients are held: the cap of one loop (`Shape::Elastic` in
//!   `socklab-models`). Behind `SO_REUSEPORT` the hash does not know who has room:
//!   a client can wait in a full worker's queue while another worker idles
//!   (`nonblocking-2loops` is `Shape::Sharded` for that).
//! - **Out of descriptors, the same.** A worker whose `accept4` fails with
//!   `EMFILE` backs off, and the others take what is queued. With the soft
//!   descriptor limit at 1,024 (`ulimit -n 1024`), `socklab serve workers
//!   --workers 2` held 1,500 of 1,500 clients (`socklab load ADDR --conns 1500
//!   --duration 3s --ramp-limit 5s`; worker 1 reached its limit at 1,008 and
//!   worker 0 took the other 492), where `socklab serve nonblocking` stopped at
//!   1,010 of 1,500.
//! - **A crash loses only the crashed worker's clients.** A worker's own
//!   `SO_REUSEPORT` listener would close with it, and the connections waiting in
//!   its accept queue — clients it never held — would be reset (unless
//!   `net.ipv4.tcp_migrate_req`, Linux 5.14, moves them). The inherited listener
//!   stays open in the parent and the other workers; the replacement inherits it
//!   again.
//!
//! The price is the **thundering herd**: a new connection makes the listener
//! readable in every worker's epoll set, every idle worker wakes, one wins
//! `accept4` and the others get `EAGAIN` (counted below). `EPOLLEXCLUSIVE`
//! (Linux 4.5; nginx uses it since 1.11.3) wakes only one. mio does not expose
//! it, and with edge-triggered epoll and a per-worker cap it can strand a
//! connection: the one worker woken fills its share and stops accepting, and
//! the rest stay queued with no new edge to wake another worker. And **nobody
//! balances**: whoever wakes first takes everything queued. At 1,000 connections
//! with the server on one CPU the two workers took 565 and 435; at 100 on two
//! CPUs, once 0 and 100 (below). That is Cloudflare's "why does one NGINX worker
//! take all the load?", and the argument for `SO_REUSEPORT` where balance matters
//! more than the three points above.
//!
//! **UDP** ([`serve_udp`]): each worker runs nonblocking's UDP loop on the one
//! socket it inherited; a datagram goes to whichever worker's `recvfrom` takes it
//! first (the same herd). There is no connection, so there is no share.
//!
//! **Counting.** Workers count into the server's `MAP_SHARED` counters, and each
//! also in its slot's tally (`socklab_server_kit::supervisor`): how connections
//! spread over the workers ([`serve`] prints it as it returns: `worker 0: 565
//! connections, worker 1: 435 connections`; [`serve_with_counts`] returns it), and
//! how many a dead worker held, which the parent counts closed after reaping it.
//!
//! # What it costs
//!
//! Measured on the 2-CPU VM of the committed runs (Linux 6.18), with the command
//! beside each figure:
//!
//! - Per connection: a slot in one worker's loop — a descriptor and a slab entry
//!   in that worker, as in `socklab-nonblocking`. `socklab compare --models
//!   workers,nonblocking,prefork --scenarios scaling --conns 1000 --repeats 1
//!   --no-counted --out /tmp/w1000` (server on one CPU, `--workers 2`), from
//!   `results.json`: PSS 2,823,168 B at peak against 2,462,720 idle for 1,000
//!   held connections, 0.352 KiB per connection; nonblocking 2,290,688 against
//!   2,024,448, 0.260 KiB; prefork 174 KiB (its 4 workers held 4 clients; the
//!   other 996 waited in the backlog).
//! - Per worker: a process — its own page tables, epoll instance, timerfd,
//!   read buffer, and private copies of the pages it writes. The idle tree above
//!   (parent and 2 workers) is 2,462,720 B of PSS against nonblocking's one
//!   process at 2,024,448: about 214 KiB per worker.
//! - Per connection set up: nonblocking's `accept4` and `epoll_ctl(ADD)`, plus
//!   the herd. `strace -f -c -S calls socklab serve workers --workers 2`, then
//!   `socklab load 127.0.0.1:7788 --mode churn --requests 500 --conns 1`: 1,505
//!   `epoll_wait` and 1,255 `accept4` (755 of them `EAGAIN`) for 500
//!   connections, where `socklab serve nonblocking` made 1,034 and 1,000 (500):
//!   about one more wake-up and half a failed `accept4` per connection, for two
//!   workers. (Under strace the two took 250 each.)
//! - Per request: nonblocking's (`epoll_wait`, `recvfrom`, `sendto`). Two loops
//!   on one CPU take turns, and that is a context switch: 0.301 per request in
//!   the scaling cell above, nonblocking 0.0033.
//! - On two CPUs, 100 connections: `socklab serve workers --workers 2 --tcp
//!   127.0.0.1:0` unpinned, `socklab load ADDR --conns 100 --duration 5s`, server
//!   CPU from the usage line it prints as it exits, three runs interleaved with
//!   `nonblocking --loops 2` and `nonblocking`: 134,822 requests/s
//!   [108,555–151,976], 5.57 µs of server CPU per request [5.26–6.31];
//!   nonblocking-2loops 129,936 [107,922–135,608], 4.87 µs [4.05–5.00];
//!   nonblocking 122,524 [106,902–127,568], 5.79 µs [3.75–5.89]. The ranges
//!   overlap: the load generator shares those two CPUs and is the limit. The
//!   workers took 0/100, 41/59 and 32/68 of the clients.
//!
//! Measured in the committed full run (`scripts/compare.sh --full --out
//! results/2026-12-01-vm-full`, 2-CPU VM, `workers --workers 2`; medians of 5
//! repeats, [min–max]; the tables are in that directory's `report.md`):
//!
//! - Per connection: scaling at 10,000 connections, 0.250 KiB [0.233–0.251] of
//!   PSS per connection, no measurable difference from nonblocking's 0.239
//!   [0.236–0.254]: a worker's own pages are paid once, not per client.
//! - Per connection set up: churn, 25.7 µs [21.8–28.6] of CPU per connection and
//!   26,947 connections/s [24,296–35,371], no measurable difference from
//!   nonblocking's 22.2 µs and 28,082/s; but 2.25 context switches per
//!   connection [2.00–2.41] against nonblocking's 1.11 [0.94–1.23]: the other
//!   worker's wake-up (the herd, above).
//! - Per request: counted at 100 connections, 2.02 syscalls (`epoll_wait` 0.0198:
//!   a wake-up per fifty requests, where nonblocking's one loop has one per
//!   hundred, 0.0100), 0.207 context switches — the two loops taking turns —
//!   against nonblocking's 0.0108, and 546 user-space instructions against 545;
//!   at one connection, 3.00 syscalls and 682 instructions, as nonblocking. In
//!   the timed scaling cells the turns did not show: at 1,000 connections 0.0261
//!   context switches per request [0.0119–0.1764], nonblocking 0.0519
//!   [0.0009–0.0924], ranges that overlap.
//! - Throughput and tail: scaling at 10,000 connections, every client served,
//!   98,032 requests/s [87,363–117,334] and p99 178,815 µs [157,951–194,559];
//!   nonblocking's 133,722 [93,832–141,259] and 146,943 [116,671–183,679]
//!   overlap both: no measurable difference.
//! - Two CPUs: the cpu scenario (50 µs per request, 10 connections) given 2 CPUs
//!   instead of one served 1.02× the requests per second, with repeats too far
//!   apart to tell whether the second worker used the second CPU.
//!
//! # When it breaks
//!
//! - A crashing handler takes down its worker and **every client of that
//!   worker**, and no other. `socklab compare --models workers,prefork,nonblocking
//!   --scenarios chaos --out /tmp/chaos-w`: workers `server_survived` 1,
//!   `other_clients_lost` 0 (worker 0 had accepted all ten load clients; the
//!   victim was alone on worker 1); prefork 1 and 0; nonblocking 0 and 10. Three
//!   more runs of workers (`--models workers --scenarios chaos --no-counted`):
//!   lost 1, 1 and 2, each time the crashed worker's other clients and no more
//!   (the supervisor's line: `worker 1 (pid …) was killed by SIGABRT; … (2
//!   connection(s) it held lost, …)`). Prefork loses one client because a worker
//!   holds one; here a worker holds its share of all of them. The full run's
//!   chaos: the server survived, 2 of the 10 other clients lost, where fork and
//!   prefork lost 0 and every single-process model all 10.
//! - Blocking or `cpu` work stalls every client of its worker, as in one loop;
//!   the other workers go on.
//! - The descriptor limit is per process, so each worker holds at most
//!   `RLIMIT_NOFILE` clients, and N workers N times that: past the hard limit one
//!   process cannot raise (20,000 here), more workers are the way on. The full
//!   run's c100k (100,000 mostly idle clients, 7 workers): it held and served all
//!   100,000, the only model that did, its fullest process at 14,302
//!   descriptors, with 0.244 KiB of PSS per held connection, p50 47 µs and p99
//!   819,711 µs; nonblocking, async and uring stopped at their one process's
//!   20,000 descriptors, holding 19,986, 19,981 and 19,987.
//! - The balance is the kernel's and the scheduler's, not the server's (above):
//!   a worker that takes most clients is the one whose crash loses most.
//! - State that every worker must see (a cache, a rate limit, a session table)
//!   needs shared memory or messages between processes: nginx's shared zones.
//!   Here only the counters are shared (`MAP_SHARED`).
//!
//! # Compare with
//!
//! - `socklab-prefork`: the same supervisor and slots; each worker serves one
//!   client at a time, so a crash loses one client, and N workers serve N clients.
//! - `socklab-nonblocking`: the same loop. `--loops N` runs N of them as threads
//!   of one process, each with its own `SO_REUSEPORT` listener: no `fork()`, no
//!   herd, but a crash takes every loop, and all of them share one descriptor
//!   table.
//! - `socklab-uring`: the completion loop, which `--loops` also shards by
//!   `SO_REUSEPORT`.

use std::io;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd};

use socklab_nonblocking::{tcp_loop, udp_loop};
use socklab_server_kit::config::check_workers;
pub use socklab_server_kit::config::default_workers;
use socklab_server_kit::loops::{loop_count, shares};
use socklab_server_kit::supervisor::Supervisor;
pub use socklab_server_kit::supervisor::WorkerCounts;
use socklab_server_kit::Context;

/// The name this model logs under.
const MODEL: &str = "workers";

/// How the workers server is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Worker processes, forked at start, one event loop each (default:
    /// [`default_workers`], one per CPU this server may use). At least 1; no more
    /// than `--max-conns`, so each worker's share of the cap is at least one.
    pub workers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: default_workers(),
        }
    }
}

/// Serves TCP with `workers` processes, one readiness loop each, until shutdown;
/// then stops them (grace period, SIGKILL, reap) and prints the connections each
/// one accepted.
pub fn serve(listener: TcpListener, cx: &Context, options: &Options) -> io::Result<()> {
    let counts = serve_with_counts(listener, cx, options)?;
    eprintln!("socklab {MODEL}: {counts}");
    Ok(())
}

/// [`serve`], returning the per-worker distribution instead of printing it.
pub fn serve_with_counts(
    listener: TcpListener,
    cx: &Context,
    options: &Options,
) -> io::Result<WorkerCounts> {
    check_workers(options.workers, MODEL)?;
    let workers = loop_count(options.workers, cx.config.max_conns);
    let caps = shares(cx.config.max_conns, workers);
    let mut supervisor = Supervisor::new(cx, MODEL, workers)?;
    supervisor.keep_filled(|supervisor, slot| {
        supervisor.start(slot, |cx| tcp_loop(inherited(&listener), cx, caps[slot]))
    });
    // Stop accepting at once: the parent's descriptor closes now, each worker's
    // as it begins its shutdown.
    drop(listener);
    supervisor.stop();
    Ok(supervisor.counts())
}

/// Serves UDP with `workers` processes, one readiness loop each, all receiving
/// from the one socket they inherit.
pub fn serve_udp(socket: UdpSocket, cx: &Context, options: &Options) -> io::Result<()> {
    check_workers(options.workers, MODEL)?;
    let mut supervisor = Supervisor::new(cx, MODEL, options.workers)?;
    supervisor.keep_filled(|supervisor, slot| {
        supervisor.start(slot, |cx| udp_loop(inherited(&socket), cx))
    });
    drop(socket);
    supervisor.stop();
    Ok(())
}

/// In a worker: its own handle on the socket it inherited across `fork()`, the
/// same descriptor, so that when its loop closes the socket at shutdown this
/// process holds no copy of it any more.
fn inherited<S: AsRawFd + FromRawFd>(shared: &S) -> S {
    // SAFETY: the descriptor is open (inherited with the parent's handle,
    // `shared`, in this child's copy of its memory). That handle is never used or
    // dropped in this process again: a worker `_exit`s when its body returns and
    // never returns into the code that owns it (`process::Children::spawn`). So
    // the descriptor has one owner here.
    unsafe { S::from_raw_fd(shared.as_raw_fd()) }
}

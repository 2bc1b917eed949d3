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

use std::collections::HashSet;
use std::io;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use socklab_server_kit::{accept_next, log_client_error, serve_connection, Context, Next};

/// How often the parent checks on its children while it waits for a free slot or
/// for the grace period to end.
const REAP_INTERVAL: Duration = Duration::from_millis(5);

/// Serves TCP with one process per client until shutdown; then waits for the
/// children for the grace period, kills those still running, and reaps them all.
pub fn serve(listener: TcpListener, cx: &Context) -> io::Result<()> {
    socklab_server_kit::set_accept_timeout(&listener)?;
    let mut children = Children::default();
    loop {
        children.reap(cx);
        if children.live.len() >= cx.config.max_conns {
            if cx.shutdown.is_triggered() {
                break;
            }
            std::thread::sleep(REAP_INTERVAL);
            continue;
        }
        match accept_next(&listener, &cx.shutdown) {
            Next::Connection(stream, _peer) => children.spawn(stream, &listener, cx),
            Next::Retry => continue,
            Next::Shutdown => break,
        }
    }
    drop(listener);
    children.finish(cx);
    Ok(())
}

/// The parent's record of its live children.
#[derive(Default)]
struct Children {
    live: HashSet<Pid>,
}

impl Children {
    fn spawn(&mut self, stream: TcpStream, listener: &TcpListener, cx: &Context) {
        // SAFETY: the child only runs `child_main`, which never returns. socklab's
        // processes may have other threads (the supervisor waiting for signals); the
        // child has only this one, so it must not wait on a lock another thread
        // held at the moment of fork. The driver takes no locks; glibc's malloc is
        // made fork-safe by its own atfork handlers.
        let parent = nix::unistd::getpid();
        match unsafe { fork() } {
            Ok(ForkResult::Child) => child_main(stream, listener, parent, cx),
            Ok(ForkResult::Parent { child }) => {
                cx.counters.connection_opened();
                self.live.insert(child);
                // `stream` is dropped here: the parent's copy of the connection
                // closes, the child's stays open.
            }
            Err(e) => eprintln!("socklab fork: fork() failed, client dropped: {e}"),
        }
    }

    /// Collects every child that has exited, without blocking.
    fn reap(&mut self, cx: &Context) {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        if self.live.remove(&pid) {
                            cx.counters.connection_closed();
                        }
                    }
                    if let WaitStatus::Signaled(pid, sig, _) = status {
                        eprintln!("socklab fork: child {pid} killed by {sig}: its one client is lost, the others are not");
                    }
                }
            }
        }
    }

    /// After shutdown: let children finish for the grace period, then kill the
    /// rest. Returns with no child left, not even a zombie.
    fn finish(&mut self, cx: &Context) {
        let deadline = Instant::now() + cx.config.grace;
        while !self.live.is_empty() && Instant::now() < deadline {
            self.reap(cx);
            std::thread::sleep(REAP_INTERVAL);
        }
        for pid in &self.live {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        for pid in self.live.drain() {
            let _ = waitpid(pid, None);
            cx.counters.connection_closed();
        }
    }
}

/// The child: serve one client, then `_exit`.
fn child_main(stream: TcpStream, listener: &TcpListener, parent: Pid, cx: &Context) -> ! {
    // The child never accepts: close its copy of the listening socket, so the
    // listener really closes when the parent closes it.
    let _ = nix::unistd::close(listener.as_raw_fd());
    ignore_stop_signals(parent);
    if let Err(e) = serve_connection(stream, &cx.config, cx.counters) {
        log_client_error("fork", &e);
    }
    // `_exit`, not `exit`: the child must not run the parent's exit handlers or
    // flush stdio buffers it inherited (that would print them twice).
    unsafe { libc::_exit(0) }
}

/// The parent decides when a child stops: Ctrl-C (SIGINT to the whole process
/// group) must not cut a reply in half. And if the parent dies, even by SIGKILL,
/// the kernel kills the child (`PR_SET_PDEATHSIG`), so no orphan serves on.
fn ignore_stop_signals(parent: Pid) {
    // SAFETY: setting a signal disposition to SIG_IGN has no handler to be unsafe in.
    unsafe {
        let _ = signal(Signal::SIGINT, SigHandler::SigIgn);
        let _ = signal(Signal::SIGTERM, SigHandler::SigIgn);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    if nix::unistd::getppid() != parent {
        // The parent died before prctl() took effect.
        unsafe { libc::_exit(0) }
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

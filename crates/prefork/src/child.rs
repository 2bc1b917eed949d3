//! Life inside a worker process: how it learns to stop, and what it serves.
//!
//! The stop protocol. Ctrl-C sends SIGINT to the whole foreground process group,
//! children included, and only the parent should decide when they stop; so a
//! worker ignores SIGINT. The parent stops a worker with SIGTERM, whose handler
//! triggers the worker's own [`Shutdown`] — a fresh one, since the parent's flag
//! lives in memory the child only has a copy of. The handler is installed
//! *without* `SA_RESTART`, so a worker blocked in `accept()`, `flock()`,
//! `recvmsg()` or `recvfrom()` gets `EINTR` and sees the flag at once; the
//! connection driver retries `EINTR`, so a worker in the middle of a client
//! finishes that client first. After the grace period the parent sends SIGKILL.
//!
//! The classic race: a SIGTERM that lands after the flag check but before the
//! blocking call starts interrupts nothing. It is bounded anyway: `accept()` and
//! `recvfrom()` time out every `SHUTDOWN_POLL` (SO_RCVTIMEO) and look again, a
//! worker waiting in `flock()` gets the lock within one such timeout of its
//! holder, and in PassFd mode the parent also closes the channel (EOF).

use std::io;
use std::net::{TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use nix::errno::Errno;
use nix::sys::signal::{
    pthread_sigmask, sigaction, signal, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};
use nix::unistd::{getpid, getppid, Pid};
use socklab_server_kit::{
    accept_next, log_client_error, serve_connection, Context, Next, Shutdown,
};

use crate::board::Slot;
use crate::lock::ChildLock;

/// This worker's shutdown handle, for the SIGTERM handler. Set once per child
/// process; never set in the parent, so every child starts with it empty.
static STOP: OnceLock<Shutdown> = OnceLock::new();

/// The signals blocked across `fork()`: the child must not die of a SIGTERM (or
/// act on a SIGINT) that arrives before it has set their dispositions.
pub(crate) fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}

/// Runs `body` as a worker process and exits with its outcome. Never returns:
/// unwinding out of here would run the parent's code in the child.
pub(crate) fn run(
    parent: Pid,
    parent_mask: SigSet,
    cx: &Context,
    body: impl FnOnce(&Context) -> io::Result<()>,
) -> ! {
    let code = match catch_unwind(AssertUnwindSafe(|| {
        let worker_cx = become_worker(parent, parent_mask, cx)?;
        body(&worker_cx)
    })) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("socklab prefork: worker (pid {}) failed: {e}", getpid());
            1
        }
        Err(_panic) => 101,
    };
    // `_exit`, not `exit`: no atexit handlers or stdio flushes inherited from the
    // parent run twice.
    unsafe { libc::_exit(code) }
}

/// Sets up signals and returns the worker's own context.
fn become_worker(parent: Pid, parent_mask: SigSet, cx: &Context) -> io::Result<Context> {
    let _ = STOP.set(Shutdown::new()?);
    let shutdown = STOP.get().expect("just set").clone();
    let on_term = SigAction::new(
        SigHandler::Handler(on_sigterm),
        SaFlags::empty(), // no SA_RESTART: blocked calls return EINTR
        SigSet::empty(),
    );
    // SAFETY: `on_sigterm` only does async-signal-safe things (see there).
    unsafe {
        signal(Signal::SIGINT, SigHandler::SigIgn)?;
        sigaction(Signal::SIGTERM, &on_term)?;
        // If the parent dies, even by SIGKILL, the kernel kills this worker: no
        // orphan keeps serving. (The "parent" here is the thread that forked.)
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    if getppid() != parent {
        return Err(io::Error::other(
            "the parent died before the worker started",
        ));
    }
    // Unblock: a SIGTERM that came during start-up is delivered to the handler now.
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&parent_mask), None)?;
    Ok(Context {
        config: Arc::clone(&cx.config),
        shutdown,
        counters: cx.counters,
    })
}

/// SIGTERM: trigger this worker's shutdown. `Shutdown::trigger` is an atomic
/// store and one `write()`, both async-signal-safe; errno is saved around them
/// so the interrupted code sees its own.
extern "C" fn on_sigterm(_signal: libc::c_int) {
    let errno = Errno::last_raw();
    if let Some(stop) = STOP.get() {
        stop.trigger();
    }
    Errno::set_raw(errno);
}

/// A worker that accepts for itself (no lock, or `lock` held around `accept()`).
pub(crate) fn accept_loop(
    listener: &TcpListener,
    lock: Option<&ChildLock>,
    slot: &Slot,
    cx: &Context,
) -> io::Result<()> {
    loop {
        if !cx.counters.wait_for_slot(cx.config.max_conns, &cx.shutdown) {
            return Ok(());
        }
        let next = match lock {
            None => accept_next(listener, &cx.shutdown),
            Some(lock) => lock.accept(listener, &cx.shutdown)?,
        };
        match next {
            Next::Connection(stream, _peer) => serve_one(stream, slot, cx),
            Next::Retry => continue,
            Next::Shutdown => return Ok(()),
        }
    }
}

/// Serves one client with the shared driver, counting it on the board.
pub(crate) fn serve_one(stream: TcpStream, slot: &Slot, cx: &Context) {
    slot.begin(cx.counters);
    if let Err(e) = serve_connection(stream, &cx.config, cx.counters) {
        log_client_error("prefork", &e);
    }
    slot.finish(cx.counters);
}

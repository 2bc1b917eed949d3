//! One step of a blocking accept loop, shared by the blocking models.
//!
//! A thread blocked in `accept()` cannot also wait for a shutdown signal. Two
//! classic answers: `poll()` the listener and a wake-up descriptor before each
//! `accept()` (one more syscall per connection), or give `accept()` a timeout and
//! check a flag when it expires. socklab takes the second: `SO_RCVTIMEO` on the
//! listening socket makes Linux's `accept()` return `EAGAIN` after
//! [`SHUTDOWN_POLL`], so an idle blocking server wakes ten times a second and a
//! busy one pays nothing extra.
//!
//! [`Clients`] is the whole accept loop of a blocking model, the same for each:
//! wait while `max_conns` connections are open, accept, count the client open
//! (an [`OpenConnection`] guard), until shutdown. What a model does with each
//! client it yields is the model.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::counters::OpenConnection;
use crate::{Context, Shutdown};

/// How often a blocking `accept()` wakes to check for shutdown.
pub const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// Pause after `accept()` fails for lack of descriptors (EMFILE/ENFILE) or memory,
/// so the loop does not spin at 100 % CPU while the pending connection waits in
/// the backlog for a descriptor to be freed.
pub const RESOURCE_BACKOFF: Duration = Duration::from_millis(50);

/// How often an accept loop at the connection cap looks again for a free slot.
/// Meanwhile new clients wait in the kernel's listen backlog.
pub const SLOT_POLL: Duration = Duration::from_millis(1);

/// What [`accept_next`] found.
#[derive(Debug)]
pub enum Next {
    Connection(TcpStream, SocketAddr),
    /// The accept timed out, was interrupted, or hit a transient error; check your
    /// own state (reap children, say) and call again.
    Retry,
    /// Shutdown was triggered: stop accepting.
    Shutdown,
}

/// Sets the accept timeout on a listener that [`accept_next`] will use.
pub fn set_accept_timeout(listener: &TcpListener) -> io::Result<()> {
    socket2::SockRef::from(listener).set_read_timeout(Some(SHUTDOWN_POLL))
}

/// Accepts one connection, or reports why not. Never returns an error for the
/// per-connection failures accept() can report (a client that reset before we
/// accepted it, descriptor exhaustion); those are `Retry`.
pub fn accept_next(listener: &TcpListener, shutdown: &Shutdown) -> Next {
    if shutdown.is_triggered() {
        return Next::Shutdown;
    }
    match listener.accept() {
        Ok((stream, peer)) => Next::Connection(stream, peer),
        Err(err) => {
            if is_resource_exhaustion(&err) {
                crate::exhaustion::say_once(
                    "",
                    "accept",
                    &err,
                    &format!("backing off {RESOURCE_BACKOFF:?} and retrying"),
                );
                std::thread::sleep(RESOURCE_BACKOFF);
            }
            if shutdown.is_triggered() {
                Next::Shutdown
            } else {
                Next::Retry
            }
        }
    }
}

/// EMFILE, ENFILE, ENOBUFS, ENOMEM: the server, not the client, is out of something.
pub fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// One accepted client, counted open for as long as `open` lives: a model moves
/// both to whoever serves the client (a thread, a worker, a queue), or keeps the
/// guard where the client's end is learnt (a forking parent, which reaps).
#[derive(Debug)]
pub struct Client {
    pub stream: TcpStream,
    pub open: OpenConnection,
}

impl Client {
    /// Serves this client to the end with the blocking driver
    /// ([`serve_client`](crate::serve_client)), here, on the calling thread; then
    /// its guard drops and it is counted closed.
    pub fn serve(self, cx: &Context, model: &str) {
        crate::serve_client(self.stream, cx, model);
    }
}

/// A blocking model's accept loop as an iterator: each item is a client accepted
/// below `max_conns` and already counted open; the iterator ends at shutdown.
///
/// Past the cap nobody calls `accept()`: the loop looks again every
/// [`SLOT_POLL`], and new clients wait in the listen backlog, where they cost the
/// server nothing. The cap is read from the shared counters, so N workers (or
/// processes) each running a `Clients` over one listener can overshoot it by up
/// to N − 1: each sees room, then blocks in its own `accept()`.
pub struct Clients<'a, A = fn(&TcpListener, &Shutdown) -> Next> {
    listener: &'a TcpListener,
    cx: &'a Context,
    accept: A,
}

impl<'a> Clients<'a> {
    /// Accepts with [`accept_next`].
    pub fn new(listener: &'a TcpListener, cx: &'a Context) -> Self {
        Clients::with_accept(listener, cx, accept_next)
    }
}

impl<'a, A: FnMut(&TcpListener, &Shutdown) -> Next> Clients<'a, A> {
    /// Accepts with `accept` instead of [`accept_next`] (a lock around it, say).
    pub fn with_accept(listener: &'a TcpListener, cx: &'a Context, accept: A) -> Self {
        Clients {
            listener,
            cx,
            accept,
        }
    }

    /// The next client, calling `tend` at the start of every round: before each
    /// look at the cap and each `accept()`, so at least every [`SHUTDOWN_POLL`]
    /// and every [`SLOT_POLL`] while at the cap. A forking parent reaps there:
    /// its children hold the slots, and only reaping frees one.
    pub fn next_tending(&mut self, mut tend: impl FnMut()) -> Option<Client> {
        let (counters, shutdown) = (self.cx.counters, &self.cx.shutdown);
        loop {
            tend();
            if shutdown.is_triggered() {
                return None;
            }
            if counters.active() >= self.cx.config.max_conns as u64 {
                std::thread::sleep(SLOT_POLL);
                continue;
            }
            match (self.accept)(self.listener, shutdown) {
                Next::Connection(stream, _peer) => {
                    let open = counters.open();
                    return Some(Client { stream, open });
                }
                Next::Retry => continue,
                Next::Shutdown => return None,
            }
        }
    }
}

impl<A: FnMut(&TcpListener, &Shutdown) -> Next> Iterator for Clients<'_, A> {
    type Item = Client;

    fn next(&mut self) -> Option<Client> {
        self.next_tending(|| {})
    }
}

//! One step of a blocking accept loop, shared by the blocking models.
//!
//! A thread blocked in `accept()` cannot also wait for a shutdown signal. Two
//! classic answers: `poll()` the listener and a wake-up descriptor before each
//! `accept()` (one more syscall per connection), or give `accept()` a timeout and
//! check a flag when it expires. socklab takes the second: `SO_RCVTIMEO` on the
//! listening socket makes Linux's `accept()` return `EAGAIN` after
//! [`SHUTDOWN_POLL`], so an idle blocking server wakes ten times a second and a
//! busy one pays nothing extra.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::Shutdown;

/// How often a blocking `accept()` wakes to check for shutdown.
pub const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// Pause after `accept()` fails for lack of descriptors (EMFILE/ENFILE) or memory,
/// so the loop does not spin at 100 % CPU while the pending connection waits in
/// the backlog for a descriptor to be freed.
pub const RESOURCE_BACKOFF: Duration = Duration::from_millis(50);

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
                eprintln!("socklab: accept: {err}; backing off {RESOURCE_BACKOFF:?}");
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

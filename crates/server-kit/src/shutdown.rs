//! Stopping a server: the [`Shutdown`] handle and its signal protocol.
//!
//! The protocol, the same for every model:
//!
//! 1. SIGINT or SIGTERM (or [`Shutdown::trigger`] from a test) sets a flag and
//!    makes [`Shutdown::wake_fd`] readable.
//! 2. The server stops accepting. A blocking model sees the flag within
//!    [`crate::SHUTDOWN_POLL`] (its `accept()` has a timeout); an event loop has the
//!    wake fd registered beside its sockets and sees it at once.
//! 3. Connections in flight may finish for [`crate::Config::grace`]; then the server
//!    returns and the process exits 0.
//! 4. A second SIGINT/SIGTERM exits at once, with status 1.
//!
//! Why a flag *and* a file descriptor: a signal handler may do almost nothing — set
//! an atomic, `write()` a byte. Blocking code checks the flag; readiness loops
//! (`epoll`, tokio, io_uring) wait on descriptors, so they get a descriptor.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};

/// Exit status when a second signal cuts the grace period short.
pub const SECOND_SIGNAL_EXIT: i32 = 1;

/// A cloneable "stop now" flag with a descriptor that becomes readable when set.
#[derive(Clone, Debug)]
pub struct Shutdown {
    triggered: Arc<AtomicBool>,
    wake: Arc<WakePipe>,
}

#[derive(Debug)]
struct WakePipe {
    read: UnixStream,
    write: UnixStream,
}

impl Shutdown {
    /// A fresh, untriggered handle. Not tied to any signal until [`Self::on_signals`].
    pub fn new() -> io::Result<Shutdown> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        Ok(Shutdown {
            triggered: Arc::new(AtomicBool::new(false)),
            wake: Arc::new(WakePipe { read, write }),
        })
    }

    /// Connects SIGINT and SIGTERM to this handle: the first one triggers it, a
    /// second one exits the process at once with [`SECOND_SIGNAL_EXIT`].
    pub fn on_signals(&self) -> io::Result<()> {
        for signal in [SIGINT, SIGTERM] {
            // Registered first, so it runs before the flag is set: on the first
            // signal the flag is still false and it does nothing.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                SECOND_SIGNAL_EXIT,
                Arc::clone(&self.triggered),
            )?;
            signal_hook::flag::register(signal, Arc::clone(&self.triggered))?;
            signal_hook::low_level::pipe::register(signal, self.wake.write.try_clone()?)?;
        }
        Ok(())
    }

    /// Asks the server to stop, as a signal would.
    pub fn trigger(&self) {
        self.triggered.store(true, Ordering::SeqCst);
        // The pipe only needs to be readable; a full pipe already is.
        let _ = (&self.wake.write).write(&[1]);
    }

    pub fn is_triggered(&self) -> bool {
        self.triggered.load(Ordering::SeqCst)
    }

    /// Readable once the handle is triggered, and it stays readable (nobody drains
    /// it), so any number of event loops can register it level-triggered.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.read.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_sets_the_flag_and_wakes_the_fd() {
        let shutdown = Shutdown::new().unwrap();
        let clone = shutdown.clone();
        assert!(!clone.is_triggered());
        shutdown.trigger();
        assert!(clone.is_triggered());
        let mut pfd = [nix::poll::PollFd::new(
            clone.wake_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ready = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO).unwrap();
        assert_eq!(ready, 1);
    }
}

//! The accept lock of [`crate::PreforkMode::Flock`] (Stevens' serv03).
//!
//! Why each child opens the file itself: an `flock()` lock belongs to the *open
//! file description* (what `open()` creates), not to the process or the
//! descriptor. A descriptor inherited across `fork()` shares its parent's open
//! file description, so if every child locked the inherited descriptor, they
//! would all "hold" one lock together and nothing would be excluded. So after
//! `fork()` each child opens the file anew, getting its own description.
//!
//! (The alternative is `fcntl(F_SETLKW)` record locks, which belong to the
//! *process*, so an inherited descriptor works — Stevens' choice. They have a
//! notorious trap: closing *any* descriptor for the file drops all of the
//! process's locks on it. `flock` keeps the lesson in one sentence.)
//!
//! The file is unlinked as soon as it is created, so nothing is left on disk even
//! if the server is killed; children reopen it through `/proc/self/fd/N`, which
//! opens the inode itself, deleted or not.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use socklab_server_kit::accept::RESOURCE_BACKOFF;
use socklab_server_kit::{accept_next, Clients, Next, Shutdown};

use socklab_server_kit::supervisor::Supervisor;

use crate::serve_clients;

/// The parent's loop for this mode: as NoLock's, but each worker opens the lock
/// file anew and takes the lock around every `accept()`.
pub(crate) fn serve(listener: &TcpListener, workers: &mut Supervisor) -> io::Result<()> {
    socklab_server_kit::set_accept_timeout(listener)?;
    let lock = AcceptLock::create()?;
    workers.keep_filled(|workers, slot| {
        workers.start(slot, |cx| {
            let mine = lock.reopen()?;
            let accept =
                |listener: &TcpListener, shutdown: &Shutdown| mine.accept(listener, shutdown);
            serve_clients(Clients::with_accept(listener, cx, accept), cx)
        })
    });
    Ok(())
}

/// Tells lock files apart when one process runs several servers (tests do).
static SEQUENCE: AtomicUsize = AtomicUsize::new(0);

/// The parent's handle on the (already unlinked) lock file.
pub(crate) struct AcceptLock {
    file: File,
}

/// One child's own open file description for the lock file.
pub(crate) struct ChildLock {
    file: File,
}

impl AcceptLock {
    pub fn create() -> io::Result<AcceptLock> {
        let path = std::env::temp_dir().join(format!(
            "socklab-prefork-{}-{}.lock",
            std::process::id(),
            SEQUENCE.fetch_add(1, Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(AcceptLock { file })
    }

    /// In a child, after `fork()`: a new open file description for the same file.
    pub fn reopen(&self) -> io::Result<ChildLock> {
        let file = File::open(format!("/proc/self/fd/{}", self.file.as_raw_fd()))?;
        Ok(ChildLock { file })
    }
}

impl ChildLock {
    /// `flock(LOCK_EX)`, `accept()`, `flock(LOCK_UN)`: one child at a time waits
    /// in `accept()`; the others wait for the lock. Two more syscalls per
    /// connection than no lock at all.
    ///
    /// `flock()` itself fails only for want of kernel memory for locks (ENOLCK):
    /// like an `accept()` out of descriptors, that backs off and tries again.
    pub fn accept(&self, listener: &TcpListener, shutdown: &Shutdown) -> Next {
        let fd = self.file.as_raw_fd();
        // SAFETY: `fd` is open for as long as `self`.
        while unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
            let err = io::Error::last_os_error();
            if shutdown.is_triggered() {
                return Next::Shutdown;
            }
            if err.kind() != io::ErrorKind::Interrupted {
                eprintln!("socklab prefork: flock: {err}; backing off {RESOURCE_BACKOFF:?}");
                std::thread::sleep(RESOURCE_BACKOFF);
                return Next::Retry;
            }
        }
        let next = accept_next(listener, shutdown);
        // SAFETY: as above. Unlocking a lock we hold cannot fail.
        unsafe { libc::flock(fd, libc::LOCK_UN) };
        next
    }
}

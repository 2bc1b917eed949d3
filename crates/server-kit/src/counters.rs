//! Server-side counters, kept in memory that a forked child shares with its parent.
//!
//! After `fork()` a child's memory is a copy: an ordinary `AtomicU64` incremented in
//! the child is never seen by the parent. So the counters live in one anonymous
//! `MAP_SHARED` page, which parent and children map at the same address. Thread
//! models get the same page and never notice the difference.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};

/// Accepted, active, requests and bytes, for the whole server (all its processes).
#[derive(Debug, Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub active: AtomicU64,
    pub requests: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Clients that ended with an error other than the ordinary reset/EOF.
    pub client_errors: AtomicU64,
}

/// A plain copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub accepted: u64,
    pub active: u64,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub client_errors: u64,
}

impl Counters {
    /// Counters in a `MAP_SHARED | MAP_ANONYMOUS` page, alive for the rest of the
    /// process (and of every child forked after this call).
    pub fn shared() -> &'static Counters {
        let len = std::num::NonZeroUsize::new(std::mem::size_of::<Counters>()).unwrap();
        // SAFETY: a fresh anonymous mapping is zero-filled, and all-zero bytes are a
        // valid `Counters` (atomics of 0). It is never unmapped, so `'static` holds.
        unsafe {
            let page = mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
            .expect("mmap of one shared page for counters");
            &*(page.as_ptr() as *const Counters)
        }
    }

    /// Counts a new connection open (`accepted` and `active` go up, and this
    /// process's [`Tally`] if it keeps one) and returns the guard that counts it
    /// closed when dropped.
    ///
    /// Order matters if a kill lands between two stores: the server's count goes
    /// up first and the tally's second (and the reverse when the guard drops), so
    /// the worst case is one connection left counted active — never a count
    /// closed twice and wrapped below zero.
    pub fn open(&'static self) -> OpenConnection {
        self.accepted.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
        if let Some(tally) = THIS_PROCESS.get() {
            tally.accepted.fetch_add(1, Relaxed);
            tally.held.fetch_add(1, Relaxed);
        }
        OpenConnection { counters: self }
    }

    /// Counts closed `n` connections whose guards died with their process: a
    /// worker killed while it held clients. The parent calls it after reaping,
    /// with what the worker's [`Tally`] says it held.
    pub fn close_orphans(&self, n: u64) {
        self.active.fetch_sub(n, Relaxed);
    }

    pub fn served(&self, requests: usize, bytes_in: usize, bytes_out: usize) {
        self.requests.fetch_add(requests as u64, Relaxed);
        self.bytes_in.fetch_add(bytes_in as u64, Relaxed);
        self.bytes_out.fetch_add(bytes_out as u64, Relaxed);
    }

    pub fn active(&self) -> u64 {
        self.active.load(Relaxed)
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            accepted: self.accepted.load(Relaxed),
            active: self.active.load(Relaxed),
            requests: self.requests.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            client_errors: self.client_errors.load(Relaxed),
        }
    }

    /// Waits until no connection is active or `deadline` passes; true if idle.
    /// Used after shutdown to let connections in flight finish.
    pub fn wait_idle(&self, deadline: std::time::Instant) -> bool {
        while self.active() > 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        true
    }
}

/// One open connection, counted: made by [`Counters::open`], it counts the
/// connection closed when it is dropped — however the connection ends: the
/// driver returns, a thread panics, a task is cancelled at an `.await`, an event
/// loop removes the connection from its table, a forking parent reaps the child
/// that served it. Guards, not paired calls: nobody has to remember "closed".
#[derive(Debug)]
#[must_use = "the connection counts as open only while its guard lives"]
pub struct OpenConnection {
    counters: &'static Counters,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        // The tally first, the server's count second: see `Counters::open`.
        if let Some(tally) = THIS_PROCESS.get() {
            tally.held.fetch_sub(1, Relaxed);
        }
        self.counters.active.fetch_sub(1, Relaxed);
    }
}

/// One worker process's own counts, beside the server's: the connections it
/// accepted and those it holds now. A supervisor keeps one per worker slot in
/// shared memory (`supervisor::Board`), so the parent can read how the
/// connections spread over its workers, and close the counts of the ones a dead
/// worker held: its guards died with it, never dropped.
#[derive(Debug, Default)]
#[repr(C)]
pub struct Tally {
    /// Connections opened in this slot, by every worker that has filled it.
    pub accepted: AtomicU64,
    /// Connections open in this slot's worker now.
    pub held: AtomicU64,
}

/// The tally this process counts its connections in too, if it is a supervised
/// worker. Set once, in the child, after `fork()`; never in the parent, so every
/// worker starts with it empty (the same way as `process`'s `STOP`).
static THIS_PROCESS: OnceLock<&'static Tally> = OnceLock::new();

/// From now on every connection this process opens ([`Counters::open`]) is also
/// counted in `tally`. For a worker, after `fork()`; a second call is ignored.
pub fn tally_this_process_in(tally: &'static Tally) {
    let _ = THIS_PROCESS.set(tally);
}

impl std::fmt::Display for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "accepted={} active={} requests={} bytes_in={} bytes_out={} client_errors={}",
            self.accepted,
            self.active,
            self.requests,
            self.bytes_in,
            self.bytes_out,
            self.client_errors
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_counts_its_connection_until_dropped() {
        let counters = Counters::shared();
        let first = counters.open();
        let second = counters.open();
        assert_eq!((counters.snapshot().accepted, counters.active()), (2, 2));
        drop(first);
        assert_eq!(counters.active(), 1);
        // However it ends: a thread that panics still drops its guard.
        let _ = std::thread::spawn(move || {
            let _held = second;
            panic!("a handler crashed");
        })
        .join();
        assert_eq!((counters.snapshot().accepted, counters.active()), (2, 0));
    }

    #[test]
    fn a_forked_child_counts_into_the_parents_page() {
        let counters = Counters::shared();
        counters.served(3, 10, 10);
        // SAFETY: the child only touches atomics and calls _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                counters.served(2, 5, 5);
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).unwrap();
            }
        }
        assert_eq!(counters.snapshot().requests, 5);
        assert_eq!(counters.snapshot().bytes_in, 15);
    }
}

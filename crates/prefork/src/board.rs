//! The board: one shared-memory slot per worker, written by the children and read
//! by the parent.
//!
//! The same trick as `Counters::shared` in server-kit: after `fork()` a child's
//! memory is a private copy, so what a child must tell its parent lives in one
//! anonymous `MAP_SHARED` mapping made *before* the children are forked. A worker
//! replaced after a crash inherits its slot (and its count goes on from there).

use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
use socklab_server_kit::{Counters, OpenConnection};

/// What one worker slot reports.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct Slot {
    /// Connections this slot's workers have accepted, since `serve` began.
    pub connections: AtomicU64,
    /// 1 while the worker holds a client it counted as opened. If the worker dies
    /// (a kill, a chaos `abort()`), the parent closes that connection's count.
    busy: AtomicU64,
}

impl Slot {
    /// The worker took a client, already counted open by `open`: count it for
    /// this slot too, and mark the slot busy for as long as the returned guard
    /// lives.
    ///
    /// Order matters if a kill lands between two stores: the server's count goes
    /// up first and the flag second (and the reverse when the guard drops), so
    /// the worst case is one connection left counted active — never a count
    /// closed twice and wrapped below zero.
    pub fn hold(&self, open: OpenConnection) -> Busy<'_> {
        self.busy.store(1, Relaxed);
        self.connections.fetch_add(1, Relaxed);
        Busy {
            slot: self,
            _open: open,
        }
    }

    /// Called by the parent after reaping this slot's worker: if it died holding a
    /// client, that connection is closed now (the kernel closed its socket).
    pub fn settle(&self, counters: &Counters) {
        if self.busy.swap(0, Relaxed) == 1 {
            counters.close_orphan();
        }
    }
}

/// A slot busy with one client; dropping it frees the slot, then counts the
/// client closed.
pub(crate) struct Busy<'a> {
    slot: &'a Slot,
    /// Held for its `Drop`: the server's count of the connection.
    _open: OpenConnection,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        // The flag first; `_open` drops after this body, closing the server's count.
        self.slot.busy.store(0, Relaxed);
    }
}

/// `workers` slots in one `MAP_SHARED | MAP_ANONYMOUS` mapping.
pub(crate) struct Board {
    slots: NonNull<Slot>,
    len: usize,
    bytes: NonZeroUsize,
}

impl Board {
    pub fn new(workers: usize) -> io::Result<Board> {
        let bytes = NonZeroUsize::new(workers.max(1) * std::mem::size_of::<Slot>())
            .expect("a slot has a size");
        // SAFETY: a fresh anonymous mapping, zero-filled; all-zero bytes are valid
        // `Slot`s (atomics of 0). It is unmapped only in `drop`, after every child
        // that could touch it has been reaped.
        let page = unsafe {
            mmap_anonymous(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )?
        };
        Ok(Board {
            slots: page.cast(),
            len: workers,
            bytes,
        })
    }

    pub fn slot(&self, index: usize) -> &Slot {
        &self.slots()[index]
    }

    /// Connections per slot, in slot order.
    pub fn counts(&self) -> Vec<u64> {
        self.slots()
            .iter()
            .map(|slot| slot.connections.load(Relaxed))
            .collect()
    }

    fn slots(&self) -> &[Slot] {
        // SAFETY: `len` initialised slots live at `slots` for as long as `self`.
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr(), self.len) }
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `new` with this length and nothing
        // borrowed from it outlives `self`.
        let _ = unsafe { munmap(self.slots.cast(), self.bytes.get()) };
    }
}

//! A fixed set of worker processes kept alive: the parent's side of the models
//! that fork their workers up front (prefork, workers). Fork into slots, reap and
//! replace the ones that die, and at the end stop them all — no zombies, no
//! orphans. Forking, reaping and stopping follow the rules every process model
//! shares ([`crate::process`]); what is added here is the slots, and what each
//! slot's worker tells its parent through shared memory (the [`Board`]).
//!
//! **Counting.** Each slot has a [`Tally`] in one `MAP_SHARED` mapping made
//! before any worker is forked, the same trick as `Counters::shared`: after
//! `fork()` a child's memory is a private copy, so what a child must tell its
//! parent lives in a page they share. A worker counts in its slot's tally every
//! connection it opens ([`crate::counters::tally_this_process_in`], set as it
//! starts), so the parent knows how connections spread over the workers
//! ([`WorkerCounts`]) and, when a worker dies (a kill, a chaos `abort()`), how
//! many connections died with it: their guards were never dropped, so the parent
//! closes their counts. A worker replaced after a crash inherits its slot, and
//! its count goes on from there.

use std::fmt;
use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering::Relaxed;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::counters::{tally_this_process_in, Tally};
use crate::process::{Children, REAP_INTERVAL};
use crate::Context;

/// Connections accepted per worker slot, in slot order. A replacement worker
/// counts on in the slot of the one it replaced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkerCounts(pub Vec<u64>);

impl WorkerCounts {
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl fmt::Display for WorkerCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (slot, count) in self.0.iter().enumerate() {
            let sep = if slot == 0 { "" } else { ", " };
            write!(f, "{sep}worker {slot}: {count} connections")?;
        }
        Ok(())
    }
}

/// One [`Tally`] per worker slot, in one `MAP_SHARED | MAP_ANONYMOUS` mapping.
#[derive(Debug)]
pub struct Board {
    slots: &'static [Tally],
}

impl Board {
    /// A zeroed board of `workers` slots, mapped for the rest of the process (and
    /// of every child forked after this call), like `Counters::shared`: a worker
    /// keeps a `'static` reference to its slot until it exits. One mapping per
    /// `serve`, a page for a few hundred workers.
    pub fn new(workers: usize) -> io::Result<Board> {
        let len = workers.max(1);
        let bytes =
            NonZeroUsize::new(len * std::mem::size_of::<Tally>()).expect("a tally has a size");
        // SAFETY: a fresh anonymous mapping, zero-filled; all-zero bytes are valid
        // `Tally`s (atomics of 0). It is never unmapped, so `'static` holds.
        let slots = unsafe {
            let page = mmap_anonymous(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )?;
            std::slice::from_raw_parts(page.as_ptr() as *const Tally, len)
        };
        Ok(Board { slots })
    }

    pub fn slot(&self, index: usize) -> &'static Tally {
        &self.slots[index]
    }

    /// Connections accepted per slot, in slot order.
    pub fn counts(&self) -> WorkerCounts {
        WorkerCounts(
            self.slots
                .iter()
                .map(|slot| slot.accepted.load(Relaxed))
                .collect(),
        )
    }
}

/// The parent's hold on its workers: which slot each live one fills.
pub struct Supervisor<'a> {
    cx: &'a Context,
    /// The model's name, for the log lines.
    model: &'static str,
    board: Board,
    /// Each live worker with its slot.
    children: Children<usize>,
    filled: Vec<bool>,
}

impl<'a> Supervisor<'a> {
    /// A supervisor of `workers` empty slots (none forked yet).
    pub fn new(cx: &'a Context, model: &'static str, workers: usize) -> io::Result<Self> {
        Ok(Supervisor {
            cx,
            model,
            board: Board::new(workers)?,
            children: Children::default(),
            filled: vec![false; workers],
        })
    }

    /// The context the workers are forked with.
    pub fn cx(&self) -> &'a Context {
        self.cx
    }

    /// Connections accepted per slot so far.
    pub fn counts(&self) -> WorkerCounts {
        self.board.counts()
    }

    /// Slots with no worker (not started yet, or their worker was reaped).
    pub fn empty_slots(&self) -> Vec<usize> {
        (0..self.filled.len())
            .filter(|&slot| !self.filled[slot])
            .collect()
    }

    /// Forks a worker into `slot`; the child counts its connections in the slot's
    /// tally, runs `body` and exits.
    pub fn start(
        &mut self,
        slot: usize,
        body: impl FnOnce(&Context) -> io::Result<()>,
    ) -> io::Result<()> {
        debug_assert!(!self.filled[slot]);
        let tally = self.board.slot(slot);
        self.children.spawn(self.cx, slot, |cx| {
            tally_this_process_in(tally);
            body(cx)
        })?;
        self.filled[slot] = true;
        Ok(())
    }

    /// The parent's loop when the workers serve by themselves: keep every slot
    /// filled until shutdown, reaping every [`REAP_INTERVAL`] or at once when
    /// shutdown's wake descriptor fires. `start` forks the worker for one slot
    /// (with [`Supervisor::start`]).
    pub fn keep_filled(&mut self, mut start: impl FnMut(&mut Self, usize) -> io::Result<()>) {
        while !self.cx.shutdown.is_triggered() {
            self.reap();
            for slot in self.empty_slots() {
                if let Err(e) = start(self, slot) {
                    let model = self.model;
                    eprintln!("socklab {model}: cannot start worker {slot}: {e}; retrying");
                }
            }
            let mut wake = [PollFd::new(self.cx.shutdown.wake_fd(), PollFlags::POLLIN)];
            let _ = poll(
                &mut wake,
                PollTimeout::from(REAP_INTERVAL.as_millis() as u16),
            );
        }
    }

    /// Collects every worker that has exited, without blocking, and says why it
    /// went and how many connections went with it. Its slot becomes empty, ready
    /// for a replacement.
    pub fn reap(&mut self) {
        let (cx, model, board, filled) = (self.cx, self.model, &self.board, &mut self.filled);
        self.children.reap(|pid, slot, status| {
            filled[slot] = false;
            let lost = settle(board.slot(slot), cx);
            let how = match status {
                Some(WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
                Some(WaitStatus::Signaled(_, signal, _)) => format!("was killed by {signal}"),
                _ => "is gone".to_string(),
            };
            eprintln!(
                "socklab {model}: worker {slot} (pid {pid}) {how}; starting a replacement \
                 ({lost} connection(s) it held lost, the other workers' are not)"
            );
        });
    }

    /// Stops every worker: SIGTERM (each finishes its clients), up to the grace
    /// period to exit, then SIGKILL for the rest. Returns with every worker reaped.
    pub fn stop(&mut self) {
        let (cx, board, filled) = (self.cx, &self.board, &mut self.filled);
        self.children.stop(cx, |_pid: Pid, slot, _status| {
            filled[slot] = false;
            settle(board.slot(slot), cx);
        });
    }
}

/// After reaping a slot's worker: whatever connections it still held died with
/// it (the kernel closed their sockets); close their counts now. Returns how many.
fn settle(tally: &Tally, cx: &Context) -> u64 {
    let lost = tally.held.swap(0, Relaxed);
    cx.counters.close_orphans(lost);
    lost
}

impl Drop for Supervisor<'_> {
    /// However `serve` ends — an error, a panic — no worker outlives it.
    fn drop(&mut self) {
        if !self.children.is_empty() {
            self.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    /// A worker that dies holding connections leaves their guards undropped: its
    /// slot's tally says how many, and reaping closes exactly those. The parent's
    /// own connections are never tallied.
    #[test]
    fn a_dead_workers_connections_are_counted_closed() {
        let cx = Context::new(Config::default()).unwrap();
        let mut workers = Supervisor::new(&cx, "test", 2).unwrap();
        let parents = cx.counters.open();
        workers
            .start(0, |cx| {
                let kept = [cx.counters.open(), cx.counters.open()];
                drop(cx.counters.open());
                std::mem::forget(kept);
                // Exit without dropping them, as a crash would.
                unsafe { libc::_exit(3) }
            })
            .unwrap();
        workers.start(1, |_| Ok(())).unwrap();
        cx.drain_until(|| {
            workers.reap();
            workers.empty_slots().len() == 2
        });
        assert_eq!(workers.counts(), WorkerCounts(vec![3, 0]));
        assert_eq!(workers.board.slot(0).held.load(Relaxed), 0);
        assert_eq!(cx.counters.active(), 1, "only the parent's own connection");
        drop(parents);
        assert_eq!(cx.counters.active(), 0);
    }
}

//! The parent's side: fork workers into slots, reap and replace the ones that
//! die, and at the end stop them all — no zombies, no orphans. Forking, reaping
//! and stopping follow the rules every process model shares
//! (`socklab_server_kit::process`); what is prefork's own is the slots.

use std::io;

use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use socklab_server_kit::process::Children;
use socklab_server_kit::Context;

use crate::board::Board;

pub(crate) struct Supervisor<'a> {
    cx: &'a Context,
    board: &'a Board,
    /// Each live worker with its slot.
    children: Children<usize>,
    filled: Vec<bool>,
}

impl<'a> Supervisor<'a> {
    pub fn new(cx: &'a Context, board: &'a Board, workers: usize) -> Self {
        Supervisor {
            cx,
            board,
            children: Children::default(),
            filled: vec![false; workers],
        }
    }

    /// The context the workers are forked with.
    pub fn cx(&self) -> &'a Context {
        self.cx
    }

    /// The board the workers count on.
    pub fn board(&self) -> &'a Board {
        self.board
    }

    /// Slots with no worker (not started yet, or their worker was reaped).
    pub fn empty_slots(&self) -> Vec<usize> {
        (0..self.filled.len())
            .filter(|&slot| !self.filled[slot])
            .collect()
    }

    /// Forks a worker into `slot`; the child runs `body` and exits.
    pub fn start(
        &mut self,
        slot: usize,
        body: impl FnOnce(&Context) -> io::Result<()>,
    ) -> io::Result<()> {
        debug_assert!(!self.filled[slot]);
        self.children.spawn(self.cx, slot, body)?;
        self.filled[slot] = true;
        Ok(())
    }

    /// Collects every worker that has exited, without blocking, and says why it
    /// went. Its slot becomes empty, ready for a replacement.
    pub fn reap(&mut self) {
        let (cx, board, filled) = (self.cx, self.board, &mut self.filled);
        self.children.reap(|pid, slot, status| {
            filled[slot] = false;
            board.slot(slot).settle(cx.counters);
            let how = match status {
                Some(WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
                Some(WaitStatus::Signaled(_, signal, _)) => format!("was killed by {signal}"),
                _ => "is gone".to_string(),
            };
            eprintln!(
                "socklab prefork: worker {slot} (pid {pid}) {how}; starting a replacement \
                 (a client it held is lost, the others are not)"
            );
        });
    }

    /// Stops every worker: SIGTERM (each finishes its current client), up to the
    /// grace period to exit, then SIGKILL for the rest. Returns with every worker
    /// reaped.
    pub fn stop(&mut self) {
        let (cx, board, filled) = (self.cx, self.board, &mut self.filled);
        self.children.stop(cx, |_pid: Pid, slot, _status| {
            filled[slot] = false;
            board.slot(slot).settle(cx.counters);
        });
    }
}

impl Drop for Supervisor<'_> {
    /// However `serve` ends — an error, a panic — no worker outlives it.
    fn drop(&mut self) {
        if !self.children.is_empty() {
            self.stop();
        }
    }
}

//! The parent's side: fork workers into slots, reap and replace the ones that
//! die, and at the end stop them all — no zombies, no orphans.
//!
//! Reaping is by pid (`waitpid(pid, WNOHANG)` for each live worker), never
//! `waitpid(-1)`: the parent must not collect a child that is not its worker
//! (another server in the same process, a test harness's child).

use std::io;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getpid, ForkResult, Pid};
use socklab_server_kit::Context;

use crate::board::Board;
use crate::child;

/// How often the parent checks on its workers while it waits for the grace
/// period to end.
const STOP_POLL: Duration = Duration::from_millis(5);

pub(crate) struct Supervisor<'a> {
    cx: &'a Context,
    board: &'a Board,
    pids: Vec<Option<Pid>>,
    stopping: bool,
}

impl<'a> Supervisor<'a> {
    pub fn new(cx: &'a Context, board: &'a Board, workers: usize) -> Self {
        Supervisor {
            cx,
            board,
            pids: vec![None; workers],
            stopping: false,
        }
    }

    /// Slots with no worker (not started yet, or their worker was reaped).
    pub fn empty_slots(&self) -> Vec<usize> {
        (0..self.pids.len())
            .filter(|&slot| self.pids[slot].is_none())
            .collect()
    }

    /// Forks a worker into `slot`; the child runs `body` and exits.
    pub fn start(
        &mut self,
        slot: usize,
        body: impl FnOnce(&Context) -> io::Result<()>,
    ) -> io::Result<()> {
        debug_assert!(self.pids[slot].is_none());
        let parent = getpid();
        let mut parent_mask = SigSet::empty();
        pthread_sigmask(
            SigmaskHow::SIG_BLOCK,
            Some(&child::stop_signals()),
            Some(&mut parent_mask),
        )?;
        // SAFETY: the child only runs `child::run`, which never returns. The
        // parent process may have other threads; the child has only this one, so
        // it must not wait on a lock another thread held at the moment of fork.
        // The worker's code takes no such lock (glibc's malloc is made fork-safe by
        // its own atfork handlers); only a stderr message could, and workers print
        // just on errors.
        let forked = unsafe { fork() };
        if let Ok(ForkResult::Child) = forked {
            child::run(parent, parent_mask, self.cx, body);
        }
        let unmasked = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&parent_mask), None);
        if let ForkResult::Parent { child } = forked? {
            self.pids[slot] = Some(child);
        }
        Ok(unmasked?)
    }

    /// Collects every worker that has exited, without blocking, and says why it
    /// went. Its slot becomes empty, ready for a replacement.
    pub fn reap(&mut self) {
        for slot in 0..self.pids.len() {
            let Some(pid) = self.pids[slot] else { continue };
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => self.gone(slot, pid, Some(status)),
                // ECHILD: someone else reaped it; it is gone all the same.
                Err(_) => self.gone(slot, pid, None),
            }
        }
    }

    fn gone(&mut self, slot: usize, pid: Pid, status: Option<WaitStatus>) {
        self.pids[slot] = None;
        self.board.slot(slot).settle(self.cx.counters);
        if self.stopping {
            return;
        }
        let how = match status {
            Some(WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
            Some(WaitStatus::Signaled(_, signal, _)) => format!("was killed by {signal}"),
            _ => "is gone".to_string(),
        };
        eprintln!(
            "socklab prefork: worker {slot} (pid {pid}) {how}; starting a replacement \
             (a client it held is lost, the others are not)"
        );
    }

    /// Stops every worker: SIGTERM (each finishes its current client), up to the
    /// grace period to exit, then SIGKILL for the rest. Returns with every worker
    /// reaped.
    pub fn stop(&mut self) {
        self.stopping = true;
        for pid in self.pids.iter().flatten() {
            let _ = kill(*pid, Signal::SIGTERM);
        }
        let deadline = Instant::now() + self.cx.config.grace;
        loop {
            self.reap();
            if self.pids.iter().all(Option::is_none) || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(STOP_POLL);
        }
        for slot in 0..self.pids.len() {
            if let Some(pid) = self.pids[slot] {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                self.gone(slot, pid, None);
            }
        }
    }
}

impl Drop for Supervisor<'_> {
    /// However `serve` ends — an error, a panic — no worker outlives it.
    fn drop(&mut self) {
        if self.pids.iter().any(Option::is_some) {
            self.stop();
        }
    }
}

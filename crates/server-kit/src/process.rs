//! Child processes, for the two process models (fork, prefork): one way to fork a
//! child, one signal protocol across `fork()`, one reaping rule, one way to stop.
//!
//! **Forking** ([`Children::spawn`]). SIGINT and SIGTERM are blocked across
//! `fork()`, so the child cannot die of a SIGTERM (or act on a SIGINT) that lands
//! before it has set their dispositions; it unblocks them once it has. The child
//! then runs its body with a [`Context`] of its own and `_exit`s: it never returns
//! into the parent's code.
//!
//! **The stop protocol.** Ctrl-C sends SIGINT to the whole foreground process
//! group, children included, and only the parent should decide when they stop; so
//! a child ignores SIGINT. The parent stops a child with SIGTERM, whose handler
//! triggers the child's own [`Shutdown`] — a fresh one, since the parent's flag
//! lives in memory the child only has a copy of. The handler is installed
//! *without* `SA_RESTART`, so a child blocked in `accept()`, `flock()`,
//! `recvmsg()` or `recvfrom()` gets `EINTR` and sees the flag at once; the
//! connection driver retries `EINTR`, so a child in the middle of a client
//! finishes that client first. After the grace period the parent sends SIGKILL.
//! And if the parent dies, even by SIGKILL, the kernel kills every child
//! (`PR_SET_PDEATHSIG`): no orphan serves on.
//!
//! The classic race: a SIGTERM that lands after the flag check but before the
//! blocking call starts interrupts nothing. It is bounded anyway: `accept()` and
//! `recvfrom()` time out every `SHUTDOWN_POLL` (`SO_RCVTIMEO`) and look again.
//!
//! **Reaping** ([`Children::reap`]). Every child that exits stays a zombie (its
//! exit status kept by the kernel) until its parent collects it. The rule: collect
//! only our own children, by pid, never with a bare `waitpid(-1)`, which would also
//! collect a child that is not ours (another server in the same process, a test
//! harness's child) and lose its status for its owner. Asking every child by pid
//! costs one `waitpid()` per live child each time, which at thousands of children
//! is thousands of syscalls per look; so the parent first *peeks* with
//! `waitid(P_ALL, WNOHANG | WNOWAIT)`, which names an exited child without
//! collecting it, and collects it by pid only if it is ours: one syscall per look,
//! plus one per child that really exited. Only when the child named is a stranger
//! does it fall back to asking each of its own by pid.
//!
//! **Stopping** ([`Children::stop`]): SIGTERM to every child, the one drain rule
//! ([`Context::drain_until`]: up to the grace period, reaping meanwhile), then
//! SIGKILL for the rest, and every one reaped: no zombies.

use std::collections::HashMap;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{
    kill, pthread_sigmask, sigaction, signal, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow,
    Signal,
};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getpid, getppid, ForkResult, Pid};

use crate::{Context, Shutdown};

/// How often a supervising parent with nothing else to wait for reaps its
/// children (and starts replacements). Also the fastest a child that keeps dying
/// is restarted: 20 times a second.
pub const REAP_INTERVAL: Duration = Duration::from_millis(50);

/// This child's shutdown handle, for the SIGTERM handler. Set once per child
/// process; never set in the parent, so every child starts with it empty.
static STOP: OnceLock<Shutdown> = OnceLock::new();

/// The children this server forked, each with what the parent keeps for it
/// until it is reaped (`T`: the connection it serves, the slot it fills).
#[derive(Debug)]
pub struct Children<T> {
    live: HashMap<Pid, T>,
}

impl<T> Default for Children<T> {
    fn default() -> Self {
        Children {
            live: HashMap::new(),
        }
    }
}

impl<T> Children<T> {
    /// Live (or not yet reaped) children.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Forks a child that runs `body` and exits with its outcome (0 for `Ok`, 1
    /// for an error, 101 for a panic); `held` stays with the parent until the
    /// child is reaped. See the module's notes for the signals.
    pub fn spawn(
        &mut self,
        cx: &Context,
        held: T,
        body: impl FnOnce(&Context) -> io::Result<()>,
    ) -> io::Result<Pid> {
        let parent = getpid();
        let mut parent_mask = SigSet::empty();
        pthread_sigmask(
            SigmaskHow::SIG_BLOCK,
            Some(&stop_signals()),
            Some(&mut parent_mask),
        )?;
        // SAFETY: the child only runs `run_child`, which never returns. The parent
        // process may have other threads; the child has only this one, so it must
        // not wait on a lock another thread held at the moment of fork. The
        // drivers take no such lock (glibc's malloc is made fork-safe by its own
        // atfork handlers); only a stderr message could, and children print just
        // on errors.
        let forked = unsafe { fork() };
        if let Ok(ForkResult::Child) = forked {
            run_child(parent, parent_mask, cx, body);
        }
        let unmasked = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&parent_mask), None);
        let ForkResult::Parent { child } = forked? else {
            unreachable!("the child never returns from run_child")
        };
        self.live.insert(child, held);
        unmasked?;
        Ok(child)
    }

    /// Collects every child of ours that has exited, without blocking, and hands
    /// each to `gone` with its exit status (`None`: someone else collected it).
    pub fn reap(&mut self, mut gone: impl FnMut(Pid, T, Option<WaitStatus>)) {
        while !self.live.is_empty() {
            // Peek: WNOWAIT names an exited child and leaves it a zombie.
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
            let Some(pid) = waitid(Id::All, flags).ok().and_then(|s| s.pid()) else {
                return; // nothing has exited (or we have no children at all)
            };
            let Some(held) = self.live.remove(&pid) else {
                // A stranger's child is first in line: never collect it; ask each
                // of ours by pid instead.
                return self.reap_each(gone);
            };
            gone(pid, held, waitpid(pid, Some(WaitPidFlag::WNOHANG)).ok());
        }
    }

    /// `waitpid(pid, WNOHANG)` for each live child.
    fn reap_each(&mut self, mut gone: impl FnMut(Pid, T, Option<WaitStatus>)) {
        let pids: Vec<Pid> = self.live.keys().copied().collect();
        for pid in pids {
            let status = match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => continue,
                Ok(status) => Some(status),
                // ECHILD: someone else collected it; it is gone all the same.
                Err(_) => None,
            };
            if let Some(held) = self.live.remove(&pid) {
                gone(pid, held, status);
            }
        }
    }

    /// Stops every child: SIGTERM (each finishes its current client), up to the
    /// grace period to exit ([`Context::drain_until`]), then SIGKILL for the rest.
    /// Returns with every child reaped and handed to `gone`.
    pub fn stop(&mut self, cx: &Context, mut gone: impl FnMut(Pid, T, Option<WaitStatus>)) {
        for pid in self.live.keys() {
            let _ = kill(*pid, Signal::SIGTERM);
        }
        cx.drain_until(|| {
            self.reap(&mut gone);
            self.live.is_empty()
        });
        self.kill_all(gone);
    }

    /// SIGKILL for every child left, each reaped (blocking) and handed to `gone`.
    fn kill_all(&mut self, mut gone: impl FnMut(Pid, T, Option<WaitStatus>)) {
        for (pid, held) in self.live.drain() {
            let _ = kill(pid, Signal::SIGKILL);
            gone(pid, held, waitpid(pid, None).ok());
        }
    }
}

impl<T> Drop for Children<T> {
    /// However the parent's `serve` ends — an error, a panic — no child outlives it.
    fn drop(&mut self) {
        self.kill_all(|_, _, _| {});
    }
}

/// The signals blocked across `fork()`.
fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}

/// The child's side of [`Children::spawn`]: runs `body` and exits with its
/// outcome. Never returns: unwinding out of here would run the parent's code in
/// the child.
fn run_child(
    parent: Pid,
    parent_mask: SigSet,
    cx: &Context,
    body: impl FnOnce(&Context) -> io::Result<()>,
) -> ! {
    let code = match catch_unwind(AssertUnwindSafe(|| {
        let child_cx = become_child(parent, parent_mask, cx)?;
        body(&child_cx)
    })) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("socklab: child process (pid {}) failed: {e}", getpid());
            1
        }
        Err(_panic) => 101,
    };
    // `_exit`, not `exit`: no atexit handlers or stdio flushes inherited from the
    // parent run twice.
    unsafe { libc::_exit(code) }
}

/// Sets up the stop protocol's signals and returns the child's own context.
fn become_child(parent: Pid, parent_mask: SigSet, cx: &Context) -> io::Result<Context> {
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
        // If the parent dies, even by SIGKILL, the kernel kills this child. (The
        // "parent" here is the thread that forked.)
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    if getppid() != parent {
        return Err(io::Error::other("the parent died before the child started"));
    }
    // Unblock: a SIGTERM that came during start-up is delivered to the handler now.
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&parent_mask), None)?;
    Ok(Context {
        config: Arc::clone(&cx.config),
        shutdown,
        counters: cx.counters,
    })
}

/// SIGTERM: trigger this child's shutdown. `Shutdown::trigger` is an atomic store
/// and one `write()`, both async-signal-safe; errno is saved around them so the
/// interrupted code sees its own.
extern "C" fn on_sigterm(_signal: libc::c_int) {
    let errno = Errno::last_raw();
    if let Some(stop) = STOP.get() {
        stop.trigger();
    }
    Errno::set_raw(errno);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    /// A child that exits is reaped with its status; a stranger's child (forked
    /// here without `Children`) is never collected, and ours are still found.
    #[test]
    fn reaps_its_own_children_and_never_a_strangers() {
        let cx = Context::new(Config::default()).unwrap();
        // SAFETY: the stranger only calls _exit.
        let stranger = match unsafe { fork() }.unwrap() {
            ForkResult::Child => unsafe { libc::_exit(7) },
            ForkResult::Parent { child } => child,
        };
        // Wait (without collecting) until the stranger has exited, so it is the
        // first exited child the kernel names: the fallback is exercised.
        let exited = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
        waitid(Id::Pid(stranger), exited).unwrap();
        let mut children = Children::default();
        let quick = children.spawn(&cx, "quick", |_| Ok(())).unwrap();
        let failing = children
            .spawn(&cx, "failing", |_| Err(io::Error::other("boom")))
            .unwrap();
        let mut gone = Vec::new();
        cx.drain_until(|| {
            children.reap(|pid, held, status| gone.push((pid, held, status)));
            children.is_empty()
        });
        gone.sort_by_key(|(_, held, _)| *held);
        assert_eq!(
            gone,
            [
                (failing, "failing", Some(WaitStatus::Exited(failing, 1))),
                (quick, "quick", Some(WaitStatus::Exited(quick, 0))),
            ]
        );
        // The stranger is still a zombie, its status kept for its owner.
        assert_eq!(
            waitpid(stranger, Some(WaitPidFlag::WNOHANG)).unwrap(),
            WaitStatus::Exited(stranger, 7)
        );
    }

    /// `stop` sends SIGTERM: a child waiting on its own shutdown sees it and
    /// exits 0; one that ignores it is killed after the grace period.
    #[test]
    fn stop_asks_with_sigterm_then_kills_after_the_grace_period() {
        let config = Config {
            grace: Duration::from_millis(300),
            ..Config::default()
        };
        let cx = Context::new(config).unwrap();
        let mut children = Children::default();
        children
            .spawn(&cx, "polite", |cx| {
                while !cx.shutdown.is_triggered() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            })
            .unwrap();
        children
            .spawn(&cx, "stubborn", |_| loop {
                std::thread::sleep(Duration::from_millis(1));
            })
            .unwrap();
        let mut gone = Vec::new();
        let t0 = std::time::Instant::now();
        children.stop(&cx, |_, held, status| gone.push((held, status)));
        assert!(t0.elapsed() >= Duration::from_millis(300));
        gone.sort_by_key(|(held, _)| *held);
        assert!(matches!(
            gone[0],
            ("polite", Some(WaitStatus::Exited(_, 0)))
        ));
        assert!(matches!(
            gone[1],
            (
                "stubborn",
                Some(WaitStatus::Signaled(_, Signal::SIGKILL, _))
            )
        ));
        assert!(children.is_empty());
    }
}

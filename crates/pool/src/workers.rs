//! The pool's threads: started once, joined within the grace period.

use std::io;
use std::thread::JoinHandle;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use socklab_server_kit::{Context, SHUTDOWN_POLL};

type Worker = JoinHandle<io::Result<()>>;

/// The started workers.
pub(crate) struct Workers {
    handles: Vec<Worker>,
}

impl Workers {
    /// Starts `count` named threads, building each one's body with `make(index)`.
    /// If one cannot be started the server cannot run as configured: shutdown is
    /// triggered and the error returned.
    pub fn start<F, B>(count: usize, cx: &Context, mut make: B) -> io::Result<Workers>
    where
        B: FnMut(usize) -> io::Result<F>,
        F: FnOnce() -> io::Result<()> + Send + 'static,
    {
        let mut handles = Vec::with_capacity(count);
        for index in 0..count {
            let started = make(index).and_then(|body| {
                std::thread::Builder::new()
                    .name(format!("pool-worker-{index}"))
                    .spawn(body)
            });
            match started {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    // The ones started stop on the trigger (or, in queue mode, when
                    // the caller drops the sender); they are not waited for.
                    eprintln!("socklab pool: cannot start worker {index}: {e}");
                    cx.shutdown.trigger();
                    return Err(e);
                }
            }
        }
        Ok(Workers { handles })
    }

    fn all_finished(&self) -> bool {
        self.handles.iter().all(JoinHandle::is_finished)
    }

    /// Blocks until shutdown is triggered, or until every worker has ended on its
    /// own (which only an error or a panic can cause).
    pub fn wait_for_shutdown(&self, cx: &Context) {
        while !cx.shutdown.is_triggered() && !self.all_finished() {
            let mut wake = [PollFd::new(cx.shutdown.wake_fd(), PollFlags::POLLIN)];
            let _ = poll(
                &mut wake,
                PollTimeout::from(SHUTDOWN_POLL.as_millis() as u16),
            );
        }
    }

    /// The drain rule ([`Context::drain_until`]): waits at most the grace period
    /// for the workers to finish their clients, then joins those that did.
    /// Workers still busy after that are left to the process's exit. Returns the
    /// first error a worker ended with.
    pub fn finish(self, cx: &Context) -> io::Result<()> {
        cx.drain_until(|| self.all_finished());
        let mut result = Ok(());
        let mut busy = 0;
        for worker in self.handles {
            if !worker.is_finished() {
                busy += 1;
                continue; // dropping a JoinHandle detaches the thread
            }
            match worker.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = result.and(Err(e)),
                Err(_panic) => result = result.and(Err(io::Error::other("a pool worker panicked"))),
            }
        }
        if busy > 0 {
            eprintln!(
                "socklab pool: {busy} worker(s) still serving after the grace period; leaving them"
            );
        }
        result
    }
}

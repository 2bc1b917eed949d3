//! The [`Context`] every model's `serve` receives.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Config, Counters, Shutdown};

/// How often a draining server looks again whether it is done.
pub const DRAIN_POLL: Duration = Duration::from_millis(5);

/// What a server needs besides its socket: what to do ([`Config`]), when to stop
/// ([`Shutdown`]) and where to count ([`Counters`]). Cheap to clone into a thread.
#[derive(Clone, Debug)]
pub struct Context {
    pub config: Arc<Config>,
    pub shutdown: Shutdown,
    pub counters: &'static Counters,
}

impl Context {
    /// A context with fresh counters in shared memory and an untriggered shutdown.
    pub fn new(config: Config) -> std::io::Result<Context> {
        Ok(Context {
            config: Arc::new(config),
            shutdown: Shutdown::new()?,
            counters: Counters::shared(),
        })
    }

    /// The one drain rule, which every model that blocks follows after it stops
    /// accepting: the connections in flight get the grace period to finish.
    /// Waits until no connection is open, or the grace period is over; true if
    /// every connection ended. Whatever is left is then ended by the model's own
    /// means (a thread is left to the process's exit, a process is killed).
    pub fn drain(&self) -> bool {
        self.drain_until(|| self.counters.active() == 0)
    }

    /// [`Context::drain`] for a model that must do something to learn it is done
    /// (join its workers, reap its children): polls `done` every [`DRAIN_POLL`]
    /// until it says true or the grace period, counted from now, is over.
    pub fn drain_until(&self, mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + self.config.grace;
        loop {
            if done() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(DRAIN_POLL);
        }
    }
}

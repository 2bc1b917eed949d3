//! The [`Context`] every model's `serve` receives.

use std::sync::Arc;

use crate::{Config, Counters, Shutdown};

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

    /// Waits up to the grace period for active connections to finish; true if they
    /// all did. Every model calls this after it stops accepting.
    pub fn drain(&self) -> bool {
        self.counters
            .wait_idle(std::time::Instant::now() + self.config.grace)
    }
}

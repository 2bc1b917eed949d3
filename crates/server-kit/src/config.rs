//! Server configuration every model honours the same way.

use std::io;
use std::num::NonZeroUsize;
use std::time::Duration;

use socklab_protocol::{Framing, Limits, Session, Work};

/// How long a stopping server lets connections in flight finish, by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// Live connections a server serves at once, by default. Past the cap every model
/// stops accepting until a client leaves; new clients wait in the kernel's listen
/// backlog (and past that, their SYNs are retried by the client's kernel).
pub const DEFAULT_MAX_CONNS: usize = 10_000;

/// What a server does, apart from how it is concurrent.
#[derive(Debug, Clone)]
pub struct Config {
    pub framing: Framing,
    pub limits: Limits,
    /// Work done per request before its reply is sent.
    pub work: Work,
    /// Most clients served at once (threads, processes or registered sockets).
    pub max_conns: usize,
    /// Disconnect a client that sends nothing for this long, and answer one whose
    /// unfinished request is older than this with `ERR request timed out` and a
    /// close (a slowloris client: the protocol's request timeout,
    /// [`Session::feed_at`]) (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// After SIGTERM, how long connections in flight may take to finish.
    pub grace: Duration,
    /// Opt-in fault injection: a request containing [`CHAOS_TRIGGER`] crashes the
    /// handler with `abort()`, as a memory-safety bug would. A process model loses
    /// one client; a thread model loses the whole server. Never on by default.
    pub chaos: bool,
}

/// The bytes that crash a handler when [`Config::chaos`] is on. Upper case so the
/// server's own reply to a normal echo of it cannot be mistaken for the trigger
/// being missed.
pub const CHAOS_TRIGGER: &[u8] = b"SOCKLAB-CHAOS-CRASH";

impl Default for Config {
    fn default() -> Self {
        Config {
            framing: Framing::Raw,
            limits: Limits::default(),
            work: Work::None,
            max_conns: DEFAULT_MAX_CONNS,
            idle_timeout: None,
            grace: DEFAULT_GRACE,
            chaos: false,
        }
    }
}

impl Config {
    /// A new connection's protocol session: this framing, these limits, and the
    /// idle timeout as its request timeout. Every driver makes its sessions here.
    pub fn session(&self) -> Session {
        Session::new(self.framing, self.limits).with_request_timeout(self.idle_timeout)
    }

    /// Crashes the process if chaos is on and `input` holds the trigger.
    /// Called by every driver on every chunk it reads, so every model crashes on the
    /// same input and the report can count who else was lost.
    pub fn maybe_crash(&self, input: &[u8]) {
        if self.chaos
            && input
                .windows(CHAOS_TRIGGER.len())
                .any(|w| w.eq_ignore_ascii_case(CHAOS_TRIGGER))
        {
            eprintln!("socklab: chaos trigger received: aborting this handler's process");
            std::process::abort();
        }
    }
}

/// The default size of a pool of workers (threads or processes): one per CPU the
/// process may run on (`available_parallelism`), or 1.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// A pool needs at least one worker; `model` names it in the error.
pub fn check_workers(workers: usize, model: &str) -> io::Result<()> {
    if workers == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socklab {model}: workers must be at least 1"),
        ));
    }
    Ok(())
}

//! What every socklab server shares, so that a model crate holds only its
//! concurrency model.
//!
//! # Layout
//!
//! - [`config`]: the knobs every model honours the same way (framing, work, limits,
//!   connection cap, idle timeout, grace period, chaos).
//! - [`context`]: the [`Context`] every `serve` receives, and the one drain rule
//!   ([`Context::drain`]): connections in flight get the grace period.
//! - [`listen`]: socket creation with socket2 — `SO_REUSEADDR`, a large backlog,
//!   IPv4 and IPv6, close-on-exec.
//! - [`shutdown`]: the [`Shutdown`] handle: SIGINT/SIGTERM stop accepting; a second
//!   signal exits at once.
//! - [`accept`]: the blocking accept loop ([`Clients`]: wait for a slot under the
//!   cap, accept, count the client open), shared by the blocking models.
//! - [`exhaustion`]: what a server says, once, when it runs out of descriptors,
//!   tasks or memory, with the limit it hit.
//! - [`driver`]: the blocking per-connection driver (read, feed the protocol, do the
//!   work, write) that every blocking model runs for each client.
//! - [`buffers`]: the read buffer and backpressure sizes the blocking driver and
//!   both event loops share.
//! - [`work`]: performing per-request work on a blocking thread.
//! - [`counters`]: accepted/active/requests/bytes, in memory that survives `fork()`,
//!   and the [`OpenConnection`] guard that counts a connection closed when dropped.
//! - [`udp`]: the blocking datagram loop (one `recvfrom`, one `sendto`).
//! - [`process`]: child processes for fork and prefork: the signal mask across
//!   `fork()`, the stop protocol, reaping by pid, stopping after the grace period.
//! - [`supervisor`]: a fixed set of worker processes kept alive (prefork,
//!   workers): slots filled, dead workers reaped and replaced, their connections
//!   counted closed, per-worker counts in shared memory.
//! - [`slab`]: the event loops' connection table (small reused indices, no hash).
//! - [`loops`]: N independent event loops, one socket each (`--loops`).
//! - `testing` (feature `testing`): the in-process harness the model crates' own
//!   tests share.

pub mod accept;
pub mod buffers;
pub mod config;
pub mod context;
pub mod counters;
pub mod driver;
pub mod exhaustion;
pub mod listen;
pub mod loops;
pub mod process;
pub mod shutdown;
pub mod slab;
pub mod supervisor;
#[cfg(feature = "testing")]
pub mod testing;
pub mod udp;
pub mod usage;
pub mod work;

pub use accept::{accept_next, set_accept_timeout, Client, Clients, Next, SHUTDOWN_POLL};
pub use buffers::{MAX_PENDING_OUTPUT, READ_BUF};
pub use config::Config;
pub use context::Context;
pub use counters::{Counters, OpenConnection};
pub use driver::{prepare_stream, serve_client, serve_connection};
pub use listen::{bind_tcp, bind_udp, BindOptions};
pub use shutdown::Shutdown;
pub use udp::serve_datagrams;

/// Logs one client's failure. Resets, broken pipes and idle timeouts are the
/// normal ways clients leave (a load generator closes with `SO_LINGER 0`, i.e. a
/// reset), so only surprising errors are printed. A client's error never stops the
/// server.
pub fn log_client_error(model: &str, err: &std::io::Error) {
    use std::io::ErrorKind::*;
    if !matches!(
        err.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | TimedOut | WouldBlock | UnexpectedEof
    ) {
        eprintln!("socklab {model}: client error: {err}");
    }
}

//! The service every socklab server runs, with no I/O in it.
//!
//! This crate is *sans-I/O* (after quinn-proto and rustls): it owns no sockets,
//! spawns no threads and reads no clock. A server model feeds it the bytes it
//! read, and when they arrived, and gets back the bytes to write, plus how many
//! requests those bytes completed. Its rules are the same for every model because
//! they live here: the line limit, and the request timeout (an unfinished request
//! must arrive whole within it: [`Session::feed_at`]). Who waits, and where, is the server model's business — which is
//! exactly the thing socklab compares.
//!
//! ```text
//!   socket ──read()──▶ bytes, now ──▶ Session::feed_at ──▶ reply bytes ──write()──▶ socket
//!                                          │
//!                                          └─▶ Fed { requests, closing }  (driver performs the Work)
//! ```
//!
//! # Layout
//!
//! - [`framing`]: `raw` (every byte echoed uppercased) and `lines` (`\n`-terminated
//!   requests, bounded length) over TCP, and [`framing::uppercase_datagram`] for UDP.
//! - [`work`]: the per-request work a server is told to do (`none`, `cpu:50us`,
//!   `sleep:2ms`). The core says *that* work is due; the driver decides how to wait
//!   (a blocking `sleep`, a timer in an event loop, `tokio::time::sleep`).
//! - [`limits`]: the bounds that keep a hostile client from growing server memory.

pub mod framing;
pub mod limits;
pub mod work;

pub use framing::{uppercase_datagram, Fed, Framing, Session, LINE_TOO_LONG, REQUEST_TIMED_OUT};
pub use limits::{Limits, MAX_UDP_PAYLOAD};
pub use work::{parse_duration, Work, WorkParseError};

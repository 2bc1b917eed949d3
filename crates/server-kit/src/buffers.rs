//! Buffer sizes every driver shares: the blocking driver, the readiness loop and
//! the completion loop all take them from here, so none reaches into another's
//! module for them.

/// Bytes read per `read()` (or `recv` operation). 16 KiB is what one connection
/// holds while its request is processed; larger reads cut syscalls for bulk
/// transfers but cost memory per connection in the models that keep one buffer per
/// client.
pub const READ_BUF: usize = 16 * 1024;

/// Reply bytes an event-loop connection may have waiting to be written before the
/// loop stops reading from it (backpressure). A client that sends and never reads
/// stalls at this point: its requests wait in the kernel's socket buffers (bounded
/// by `net.ipv4.tcp_rmem`), not in the server. Without this bound one such client
/// grows the server without limit. (A blocking driver needs no such bound: its
/// `write()` blocks, so it stops reading by itself.)
pub const MAX_PENDING_OUTPUT: usize = 256 * 1024;

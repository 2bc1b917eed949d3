//! Bounds on what one client can make a server hold.

/// Largest payload a UDP datagram can carry over IPv4: 65,535 minus the 8-byte UDP
/// header and the 20-byte IP header. Servers receive into a buffer this large so no
/// datagram is ever silently truncated (the tutorial's `recvfrom(1024)` truncates).
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Default longest line accepted in `lines` framing: 64 KiB.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// Per-connection limits a [`crate::Session`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest `lines` request in bytes, newline excluded. A longer line is bad input:
    /// the client is told `ERR line too long` and the connection closes. Without this
    /// bound a client that never sends `\n` would grow the server's buffer forever.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: DEFAULT_MAX_LINE,
        }
    }
}

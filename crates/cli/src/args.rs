//! Argument types shared by the subcommands.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Parses `2ms`, `5s`, `500us`, `2m` with the one duration syntax of every socklab flag.
pub fn duration(s: &str) -> Result<Duration, String> {
    socklab_protocol::parse_duration(s).map_err(|e| e.to_string())
}

/// Parses `HOST:PORT` (`127.0.0.1:7788`, `[::1]:0`, `localhost:7788`).
pub fn address(s: &str) -> Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("{s:?} is not a HOST:PORT address: {e}"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

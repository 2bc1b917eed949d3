//! The line `socklab serve` prints on stdout when it is ready, and its parser: one
//! format, written by the server and read by `socklab compare`, the benches, the
//! test suites and the guide's checks.
//!
//! ```text
//! socklab: thread serving tcp=127.0.0.1:40123 udp=127.0.0.1:40124 pid=1234
//! ```
//!
//! `--tcp 127.0.0.1:0` asks for any free port; this line says which one it got.

use std::fmt;
use std::net::SocketAddr;

/// What a server announces: its model, the addresses it bound, its PID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    pub model: String,
    pub tcp: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    pub pid: i32,
}

impl fmt::Display for Announce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "socklab: {} serving", self.model)?;
        if let Some(a) = self.tcp {
            write!(f, " tcp={a}")?;
        }
        if let Some(a) = self.udp {
            write!(f, " udp={a}")?;
        }
        write!(f, " pid={}", self.pid)
    }
}

/// The value of `key=` among a line's words (`key` given without the `=`).
pub fn field<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

impl Announce {
    /// Reads an announce line; `None` for any other line (a usage line, a log line).
    pub fn parse(line: &str) -> Option<Announce> {
        let rest = line.trim().strip_prefix("socklab: ")?;
        let (model, _) = rest.split_once(" serving")?;
        let addr = |key| field(line, key).map(|a| a.parse()).transpose();
        Some(Announce {
            model: model.to_string(),
            tcp: addr("tcp").ok()?,
            udp: addr("udp").ok()?,
            pid: field(line, "pid")?.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announce_line_parses_back() {
        let a = Announce {
            model: "thread".into(),
            tcp: Some("127.0.0.1:40123".parse().unwrap()),
            udp: None,
            pid: 1234,
        };
        let line = a.to_string();
        assert_eq!(line, "socklab: thread serving tcp=127.0.0.1:40123 pid=1234");
        assert_eq!(Announce::parse(&format!("{line}\n")), Some(a));
        assert_eq!(Announce::parse("socklab: thread usage user_us=1"), None);
        assert_eq!(
            Announce::parse("socklab: x serving tcp=nonsense pid=1"),
            None
        );
    }
}

//! What to run: [`LoadConfig`], its modes, and the checks that turn misuse into a
//! clear [`ConfigError`] before any socket is opened.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest UDP payload over IPv4 (65,535 − 8-byte UDP header − 20-byte IP header).
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Bytes at the start of every UDP request that carry its id (base-26 lowercase
/// letters, so the server uppercases them too). TCP needs no id: replies come back in
/// order on the stream; UDP replies can be lost, duplicated or arrive late.
pub const UDP_ID_LEN: usize = 8;

/// Largest message size accepted over TCP (1 MiB); a sanity bound, not a protocol one.
pub const MAX_TCP_MESSAGE: usize = 1 << 20;

/// How long a UDP request waits for its reply before it counts as lost, unless
/// `timeout` says otherwise: datagrams can vanish, so UDP always needs one.
pub const UDP_LOSS_TIMEOUT: Duration = Duration::from_secs(2);

/// Which transport the target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Udp,
}

/// How TCP bytes are grouped into requests. Must match the server's `--framing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// A request is `size` bytes; its reply is the next `size` bytes of the stream.
    #[default]
    Raw,
    /// A request is `size - 1` printable bytes and `\n`; its reply is one line.
    Lines,
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each connection sends, waits for the whole reply, sends again (`pipeline`
    /// requests outstanding). Measures what the server does when pushed as hard as
    /// the clients can go; latency is from the real send.
    #[default]
    Closed,
    /// A fixed total `rate`, spread evenly over the connections, sent on schedule
    /// whether or not replies have come back. Latency is from each request's
    /// *intended* send time, so a stalled server is charged for every request it
    /// delayed (no coordinated omission, as in wrk2).
    Open,
    /// Connect, one request, close (the client closes first), repeat: measures
    /// connection setup. `conns` is the number of concurrent connect/request/close
    /// loops.
    Churn,
}

macro_rules! from_str_lowercase {
    ($ty:ty, $what:literal, $($name:literal => $val:expr),+) => {
        impl FromStr for $ty {
            type Err = ConfigError;
            fn from_str(s: &str) -> Result<Self, ConfigError> {
                match s.to_ascii_lowercase().as_str() {
                    $($name => Ok($val),)+
                    _ => Err(ConfigError(format!(
                        concat!("unknown ", $what, " {:?} (expected one of: {})"),
                        s,
                        [$($name),+].join(", ")
                    ))),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let name = match self { $(v if *v == $val => $name,)+ _ => unreachable!() };
                f.write_str(name)
            }
        }
    };
}

from_str_lowercase!(Transport, "transport", "tcp" => Transport::Tcp, "udp" => Transport::Udp);
from_str_lowercase!(Framing, "framing", "raw" => Framing::Raw, "lines" => Framing::Lines);
from_str_lowercase!(Mode, "mode", "closed" => Mode::Closed, "open" => Mode::Open, "churn" => Mode::Churn);

/// A misuse of the configuration, with a message meant for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Everything one load run needs. Start from [`LoadConfig::default`] and change what
/// matters; [`LoadConfig::validate`] (called by [`crate::run`]) rejects misuse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadConfig {
    /// Server address.
    pub target: SocketAddr,
    /// Source address of every connection (TCP) or socket (UDP); the port is the
    /// kernel's choice, made at connect time (see [`crate::connect`]). `None`: the
    /// kernel picks the address too. Several generators on one machine, each with
    /// its own loopback address (127.0.0.2, 127.0.0.3, ...), each get their own
    /// ephemeral ports towards one server.
    #[serde(default)]
    pub bind: Option<IpAddr>,
    pub transport: Transport,
    pub mode: Mode,
    /// TCP only; must match the server's framing.
    pub framing: Framing,
    /// Concurrent connections (UDP: sockets; churn: concurrent connect loops).
    pub conns: usize,
    /// Event-loop threads; 0 means one per CPU this process may run on
    /// ([`crate::sys::allowed_cpus`]). Never more than `conns`.
    pub threads: usize,
    /// Bytes per request (and per reply). Lines framing: `size - 1` printable bytes
    /// and `\n`. UDP: at least [`UDP_ID_LEN`].
    pub size: usize,
    /// Open mode: total requests per second over all connections.
    pub rate: Option<f64>,
    /// Closed mode: requests outstanding per connection (1 = strict ping-pong).
    pub pipeline: usize,
    /// Measured time, after `warmup`. With `requests` set, the most the run may take
    /// after warmup (a cap, so a dead server cannot make it hang).
    #[serde(with = "secs")]
    pub duration: Duration,
    /// Time run before measuring starts (after the ramp); its requests are sent and
    /// checked but left out of every result.
    #[serde(with = "secs")]
    pub warmup: Duration,
    /// Longest the ramp may take. After connecting, the traffic runs unmeasured until
    /// every connection has had a reply, then warm-up and the window start. A server
    /// that serves only some clients (iterative, a pool smaller than the load) never
    /// answers the rest: the ramp ends at this limit and the report says how many
    /// clients had been served by then. Zero: no ramp. Churn and counted runs have
    /// none (a session is one request; a count is not a steady state).
    #[serde(with = "secs", default = "default_ramp_limit")]
    pub ramp_limit: Duration,
    /// Measure exactly this many requests (churn: connections) instead of running
    /// for `duration`. Warmup requests are extra. Used for counted metrics (strace,
    /// callgrind) where the server must see a known number of requests.
    pub requests: Option<u64>,
    /// How long a request may wait for its reply before the client gives up on it.
    ///
    /// TCP: `None` (the default) never gives up, and a request still waiting when
    /// the window closes enters the latency record with its wait so far. With a
    /// timeout the connection is closed and reopened and the request counted as
    /// timed out — the wait then leaves the latency and the client starts over
    /// behind every other client: use it to model impatient users, not to measure
    /// a server. UDP: a datagram without a reply after this long is lost (default
    /// [`UDP_LOSS_TIMEOUT`]).
    #[serde(with = "opt_secs", default)]
    pub timeout: Option<Duration>,
    /// How long one connect attempt may take before it counts as timed out.
    #[serde(with = "secs")]
    pub connect_timeout: Duration,
    /// Connects in flight at once per thread. Opening 10,000 connections at once
    /// overflows the server's accept backlog and turns into SYN retransmits (1 s,
    /// 3 s...); pacing keeps the handshake queue short.
    pub max_connecting: usize,
    /// Churn: close with `SO_LINGER` 0 (RST, no TIME_WAIT on the client); see
    /// [`crate::connect`].
    pub linger_zero: bool,
    /// Length of each interval histogram in the HdrHistogram interval log.
    #[serde(with = "secs")]
    pub interval: Duration,
    /// Seed for the payload bytes (each connection derives its own from it).
    pub seed: u64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            target: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7788),
            bind: None,
            transport: Transport::Tcp,
            mode: Mode::Closed,
            framing: Framing::Raw,
            conns: 10,
            threads: 0,
            size: 64,
            rate: None,
            pipeline: 1,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            ramp_limit: default_ramp_limit(),
            requests: None,
            timeout: None,
            connect_timeout: Duration::from_secs(3),
            max_connecting: 64,
            linger_zero: true,
            interval: Duration::from_secs(1),
            seed: 0x50c4_1ab0,
        }
    }
}

impl LoadConfig {
    /// Checks the configuration and returns it with `threads` resolved.
    pub fn validate(&self) -> Result<LoadConfig, ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        let mut c = self.clone();
        if c.conns == 0 {
            return err("conns must be at least 1".into());
        }
        if c.size == 0 {
            return err("size must be at least 1 byte".into());
        }
        if c.pipeline == 0 {
            return err("pipeline must be at least 1".into());
        }
        if c.max_connecting == 0 {
            return err("max_connecting must be at least 1".into());
        }
        if c.requests == Some(0) {
            return err("requests must be at least 1".into());
        }
        if c.duration.is_zero() {
            return err("duration must be more than 0".into());
        }
        if c.timeout.is_some_and(|t| t.is_zero()) || c.connect_timeout.is_zero() {
            return err("timeouts must be more than 0".into());
        }
        if c.interval < Duration::from_millis(10) {
            return err("interval must be at least 10ms".into());
        }
        if c.target.port() == 0 {
            return err(format!("target {} has port 0", c.target));
        }
        if c.target.ip().is_unspecified() {
            return err(format!(
                "target {} is the unspecified address; name a host to connect to",
                c.target
            ));
        }
        if let Some(ip) = c.bind {
            if ip.is_ipv4() != c.target.is_ipv4() {
                return err(format!(
                    "bind address {ip} and target {} are of different families (IPv4 and IPv6)",
                    c.target
                ));
            }
            if ip.is_unspecified() || ip.is_multicast() {
                return err(format!(
                    "bind address {ip} is not a unicast address of this host; name one (e.g. 127.0.0.2)"
                ));
            }
        }
        match (c.mode, c.rate) {
            (Mode::Open, None) => return err("open mode needs a rate (requests/s)".into()),
            (Mode::Open, Some(r)) if !(r.is_finite() && r > 0.0) => {
                return err(format!("rate must be a positive number, got {r}"))
            }
            (Mode::Closed, Some(_)) => {
                return err("rate applies to open mode only (closed mode goes as fast as replies come back); use --mode open".into())
            }
            (Mode::Churn, Some(_)) => {
                return err("rate applies to open mode only; churn runs `conns` connect loops as fast as they go".into())
            }
            _ => {}
        }
        if c.pipeline > 1 && c.mode != Mode::Closed {
            return err(format!(
                "pipeline applies to closed mode only (open mode sends on schedule; churn sends one request per connection), got mode {}",
                c.mode
            ));
        }
        match c.transport {
            Transport::Udp => {
                if c.mode == Mode::Churn {
                    return err(
                        "churn mode needs TCP: UDP has no connections to open and close".into(),
                    );
                }
                if c.framing == Framing::Lines {
                    return err(
                        "lines framing applies to TCP only: a UDP request is one datagram".into(),
                    );
                }
                if c.size < UDP_ID_LEN || c.size > MAX_UDP_PAYLOAD {
                    return err(format!(
                        "UDP size must be {UDP_ID_LEN}..={MAX_UDP_PAYLOAD} bytes (each datagram carries an {UDP_ID_LEN}-byte request id), got {}",
                        c.size
                    ));
                }
            }
            Transport::Tcp => {
                if c.size > MAX_TCP_MESSAGE {
                    return err(format!(
                        "size {} is above the {MAX_TCP_MESSAGE}-byte limit",
                        c.size
                    ));
                }
            }
        }
        if c.threads == 0 {
            c.threads = crate::sys::allowed_cpus();
        }
        c.threads = c.threads.min(c.conns);
        Ok(c)
    }

    /// Whether the run has a ramp (see [`LoadConfig::ramp_limit`]).
    pub fn ramps(&self) -> bool {
        !self.ramp_limit.is_zero() && self.mode != Mode::Churn && self.requests.is_none()
    }

    /// The reply timeout in force: UDP always has one.
    pub fn reply_timeout(&self) -> Option<Duration> {
        match self.transport {
            Transport::Udp => Some(self.timeout.unwrap_or(UDP_LOSS_TIMEOUT)),
            Transport::Tcp => self.timeout,
        }
    }

    /// Payload bytes per request before the `\n` of lines framing.
    pub(crate) fn body_len(&self) -> usize {
        match (self.transport, self.framing) {
            (Transport::Tcp, Framing::Lines) => self.size - 1,
            _ => self.size,
        }
    }

    /// File descriptors the run needs: one per connection plus each thread's epoll
    /// and timer descriptors, plus headroom for stdio, files and the test harness.
    pub fn fds_needed(&self) -> u64 {
        const HEADROOM: u64 = 64;
        const PER_THREAD: u64 = 4;
        self.conns as u64 + PER_THREAD * self.threads.max(1) as u64 + HEADROOM
    }
}

/// The default [`LoadConfig::ramp_limit`]: long enough for a thread-per-client
/// server to accept and answer thousands of clients once.
fn default_ramp_limit() -> Duration {
    Duration::from_secs(5)
}

/// Serde helper: an optional [`Duration`] as fractional seconds or `null`.
pub mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|v| Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Serde helper: a [`Duration`] as fractional seconds, which is what a reader of the
/// JSON expects.
pub mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misuse_is_rejected() {
        let ok = LoadConfig::default();
        assert!(ok.validate().is_ok());
        let bad = [
            LoadConfig {
                conns: 0,
                ..ok.clone()
            },
            LoadConfig {
                rate: Some(10.0),
                ..ok.clone()
            },
            LoadConfig {
                mode: Mode::Open,
                ..ok.clone()
            },
            LoadConfig {
                mode: Mode::Open,
                rate: Some(-1.0),
                ..ok.clone()
            },
            LoadConfig {
                transport: Transport::Udp,
                size: 4,
                ..ok.clone()
            },
            LoadConfig {
                transport: Transport::Udp,
                mode: Mode::Churn,
                ..ok.clone()
            },
            LoadConfig {
                pipeline: 4,
                mode: Mode::Churn,
                ..ok.clone()
            },
            LoadConfig {
                target: "0.0.0.0:80".parse().unwrap(),
                ..ok.clone()
            },
            LoadConfig {
                bind: Some("::1".parse().unwrap()),
                ..ok.clone()
            },
            LoadConfig {
                bind: Some("0.0.0.0".parse().unwrap()),
                ..ok.clone()
            },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?} should be rejected");
        }
    }

    #[test]
    fn threads_never_exceed_conns() {
        let c = LoadConfig {
            conns: 1,
            threads: 8,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap().threads, 1);
    }

    #[test]
    fn names_round_trip() {
        for m in [Mode::Closed, Mode::Open, Mode::Churn] {
            assert_eq!(m.to_string().parse::<Mode>().unwrap(), m);
        }
        assert!("bogus".parse::<Framing>().is_err());
    }
}

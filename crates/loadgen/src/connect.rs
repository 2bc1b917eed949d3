//! Opening TCP connections without blocking, and naming what went wrong.
//!
//! # Nonblocking connect
//!
//! `connect(2)` on a nonblocking socket returns `EINPROGRESS` at once; the kernel
//! sends the SYN and the socket turns *writable* when the handshake finishes. Then
//! `SO_ERROR` (mio's `take_error`) says whether it worked (e.g. `ECONNREFUSED` when
//! the server answered the SYN with a RST) and `getpeername` confirms the connection.
//! One thread can so have dozens of handshakes in flight; the worker caps them
//! (`max_connecting`) so 10,000 connections open as a steady stream instead of a
//! burst that overflows the server's accept backlog.
//!
//! # SO_LINGER 0 in churn mode
//!
//! The side that closes a TCP connection first keeps it in TIME_WAIT for 60 s on
//! Linux, holding its local port. A churn run closes thousands of connections a
//! second from one client address, and the ephemeral port range (~28,000 ports) runs
//! out after a few such runs. With `SO_LINGER` set to `{on, 0}`, `close()` sends a
//! RST instead of a FIN and the socket is freed at once: the client holds no
//! TIME_WAIT. The request has been answered and checked before the close, so nothing
//! is lost; the server simply sees its peer reset rather than an orderly end. Turn it
//! off (`linger_zero: false`) to measure the orderly FIN close, and mind the ports.
//!
//! Closed- and open-mode connections live for the whole run and close with a normal
//! FIN at its end, so servers never count a reset for a healthy client: one
//! TIME_WAIT per connection per run, which Linux reuses for new loopback connects
//! (`net.ipv4.tcp_tw_reuse = 2`, the default).
//!
//! # A source address of one's own (`bind`)
//!
//! One client address reaches one server address and port with at most as many
//! connections as it has ephemeral ports (`net.ipv4.ip_local_port_range`, 28,232
//! here). Several load generators on one machine can each take another loopback
//! address as their source (any of 127.0.0.0/8 works on `lo` without
//! configuration) and so each get a port range of their own: `bind(IP:0)` before
//! `connect()`. A plain `bind(IP:0)` would pick the port at once, and a bound port
//! is reserved against *every* destination, so 28,232 bound sockets would exhaust
//! the range even towards different servers. `IP_BIND_ADDRESS_NO_PORT` (Linux 4.2)
//! tells the kernel to fix the address now and choose the port at `connect()`,
//! where it need only be unique for the whole four-tuple, as an unbound
//! socket's is.
//!
//! All connections also set `TCP_NODELAY`: a load generator's small writes must leave
//! now, not wait for Nagle's algorithm to batch them behind an unacknowledged
//! segment.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};

use crate::stats::ErrorCounts;

/// First wait before retrying a failed connection.
pub const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// Longest wait between retries: a dead server is retried about once a second.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Starts a nonblocking connect to `addr`, from source address `bind` if given
/// (its port chosen at connect time: see the module docs); the returned stream is
/// not yet connected.
pub fn start_connect(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    linger_zero: bool,
) -> io::Result<TcpStream> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    sock.set_nodelay(true)?;
    if linger_zero {
        sock.set_linger(Some(Duration::ZERO))?;
    }
    if let Some(ip) = bind {
        bind_address_no_port(&sock)?;
        sock.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(sock.into()))
}

/// Sets `IP_BIND_ADDRESS_NO_PORT`: a later `bind(IP:0)` fixes the address only.
fn bind_address_no_port(sock: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a descriptor we own, with a c_int option of its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Where a nonblocking connect stands after a readiness event.
#[derive(Debug)]
pub enum ConnectState {
    Connected,
    Pending,
    Failed(io::Error),
}

/// Checks a connecting stream: `SO_ERROR` first, then the peer address.
pub fn connect_state(s: &TcpStream) -> ConnectState {
    match s.take_error() {
        Ok(Some(e)) | Err(e) => return ConnectState::Failed(e),
        Ok(None) => {}
    }
    match s.peer_addr() {
        Ok(_) => ConnectState::Connected,
        Err(e)
            if e.kind() == io::ErrorKind::NotConnected
                || e.raw_os_error() == Some(libc::EINPROGRESS) =>
        {
            ConnectState::Pending
        }
        Err(e) => ConnectState::Failed(e),
    }
}

/// What an I/O error was doing when it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum During {
    Connect,
    Io,
}

/// Counts `e` in the right bucket of `errors` and keeps its message as an example.
pub fn count_error(errors: &mut ErrorCounts, e: &io::Error, during: During, target: SocketAddr) {
    use io::ErrorKind as K;
    match (e.kind(), during) {
        (K::ConnectionRefused, _) => errors.refused += 1,
        (K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe, _) => errors.reset += 1,
        (K::TimedOut, During::Connect) => errors.connect_timeouts += 1,
        (K::TimedOut, During::Io) => errors.timeouts += 1,
        _ => errors.other += 1,
    }
    let what = match during {
        During::Connect => "connect to",
        During::Io => "i/o with",
    };
    errors.note(format!("{what} {target}: {e}"));
}

/// Exponential backoff between retries, from [`MIN_BACKOFF`] to [`MAX_BACKOFF`].
#[derive(Debug, Clone, Copy)]
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(MIN_BACKOFF)
    }
}

impl Backoff {
    /// The wait before the next retry; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        d
    }

    pub fn reset(&mut self) {
        self.0 = MIN_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bind` makes the connection come from that address, and the port is chosen
    /// at connect time, not at bind time (no port reserved per socket).
    #[test]
    fn a_bound_connect_comes_from_its_address_with_a_port_chosen_late() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let source: IpAddr = "127.0.0.3".parse().unwrap();
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        bind_address_no_port(&sock).unwrap();
        sock.bind(&SocketAddr::new(source, 0).into()).unwrap();
        let bound = sock.local_addr().unwrap().as_socket().unwrap();
        assert_eq!((bound.ip(), bound.port()), (source, 0), "bind took a port");
        drop(sock);
        let stream = start_connect(target, Some(source), false).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), source);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !matches!(connect_state(&stream), ConnectState::Connected) {
            assert!(std::time::Instant::now() < deadline, "never connected");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(stream.local_addr().unwrap().ip(), source);
        assert_ne!(stream.local_addr().unwrap().port(), 0);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Backoff::default();
        assert_eq!(b.next_delay(), MIN_BACKOFF);
        assert_eq!(b.next_delay(), MIN_BACKOFF * 2);
        for _ in 0..20 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), MAX_BACKOFF);
        b.reset();
        assert_eq!(b.next_delay(), MIN_BACKOFF);
    }

    #[test]
    fn errors_land_in_their_buckets() {
        let t: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut e = ErrorCounts::default();
        count_error(
            &mut e,
            &io::ErrorKind::ConnectionRefused.into(),
            During::Connect,
            t,
        );
        count_error(
            &mut e,
            &io::ErrorKind::ConnectionReset.into(),
            During::Io,
            t,
        );
        count_error(&mut e, &io::ErrorKind::BrokenPipe.into(), During::Io, t);
        count_error(&mut e, &io::ErrorKind::TimedOut.into(), During::Connect, t);
        assert_eq!((e.refused, e.reset, e.connect_timeouts), (1, 2, 1));
        assert_eq!(e.messages.len(), 4);
    }
}

//! The client side of the socket groups: what is inside the timed region.
//!
//! Every request is [`REQUEST_LEN`] bytes of lower-case text and every reply must
//! be the same bytes upper-cased (the servers run the default `raw` framing). The
//! benches check a reply outside the timed region; inside it they only wait for
//! the right number of bytes.
//!
//! Client sockets set `TCP_NODELAY` (a 64 B write must leave now, not wait for
//! Nagle's algorithm) and a timeout on every blocking call, so a server that stops
//! answering fails the benchmark instead of hanging it.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use socket2::SockRef;

/// Bytes in one request and in its reply.
pub const REQUEST_LEN: usize = 64;
/// Longest any one socket operation (or a wait for any progress) may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The request every socket benchmark sends: 64 bytes of lower-case text.
pub fn request() -> [u8; REQUEST_LEN] {
    std::array::from_fn(|i| b'a' + (i % 26) as u8)
}

/// The reply the server must send to [`request`].
pub fn expected_reply() -> [u8; REQUEST_LEN] {
    request().map(|b| b.to_ascii_uppercase())
}

/// A blocking client connection with `TCP_NODELAY` and I/O timeouts.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Writes `request` and reads exactly as many bytes back into `reply`.
pub fn round_trip(stream: &mut TcpStream, request: &[u8], reply: &mut [u8]) -> io::Result<()> {
    stream.write_all(request)?;
    stream.read_exact(&mut reply[..request.len()])
}

/// One whole short-lived client: connect, one request, read the reply, close.
///
/// The client closes first, with `SO_LINGER {on, 0}`: `close()` sends a RST and
/// frees the socket at once instead of leaving it in TIME_WAIT for 60 s. Without
/// it, tens of thousands of iterations against one server address would hold as
/// many local ports (about 28,000 exist). The reply has been read by then, so
/// nothing is lost; the server sees a reset peer, which no model logs. The same
/// socket calls are made for every model.
pub fn connect_request_close(addr: SocketAddr, request: &[u8], reply: &mut [u8]) -> io::Result<()> {
    let mut stream = connect(addr)?;
    SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
    round_trip(&mut stream, request, reply)
}

/// N client connections to one server, driven by one thread over epoll (mio).
///
/// One event loop rather than N client threads, as socklab's load generator does:
/// with 128 blocking client threads the client would pay 128 threads' context
/// switches and blur the server's own cost. Each connection runs requests one at
/// a time (closed loop): write 64 B, wait for 64 B back, repeat.
pub struct Clients {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    request: [u8; REQUEST_LEN],
}

struct Conn {
    stream: mio::net::TcpStream,
    /// Requests this connection still has to complete in the current run.
    left: u64,
    /// Bytes of the current request written so far.
    written: usize,
    /// Bytes of the current reply read so far.
    read: usize,
    reply: [u8; REQUEST_LEN],
}

impl Clients {
    /// Opens `n` connections and checks one round trip on each, so every connection
    /// is accepted and served (a forked child or thread started) before any timing.
    pub fn open(addr: SocketAddr, n: usize) -> io::Result<Clients> {
        assert!(n > 0, "Clients::open needs at least one connection");
        let poll = Poll::new()?;
        let request = request();
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            let mut stream = connect(addr)?;
            let mut reply = [0u8; REQUEST_LEN];
            round_trip(&mut stream, &request, &mut reply)?;
            check_reply(&reply)?;
            stream.set_nonblocking(true)?;
            let mut stream = mio::net::TcpStream::from_std(stream);
            poll.registry().register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            conns.push(Conn {
                stream,
                left: 0,
                written: 0,
                read: 0,
                reply,
            });
        }
        Ok(Clients {
            poll,
            events: Events::with_capacity(n.max(1)),
            conns,
            request,
        })
    }

    /// Completes `requests` round trips spread evenly over the connections, all of
    /// them in flight at once, and returns the wall time from the first write to
    /// the last reply. The last reply of each connection is checked afterwards.
    pub fn run(&mut self, requests: u64) -> io::Result<Duration> {
        let n = self.conns.len() as u64;
        for (i, conn) in self.conns.iter_mut().enumerate() {
            conn.left = requests / n + u64::from((i as u64) < requests % n);
            conn.written = 0;
            conn.read = 0;
        }
        let Clients {
            poll,
            events,
            conns,
            request,
        } = self;
        let start = Instant::now();
        let mut busy = 0;
        for conn in conns.iter_mut().filter(|c| c.left > 0) {
            if !conn.advance(request)? {
                busy += 1;
            }
        }
        while busy > 0 {
            poll.poll(events, Some(IO_TIMEOUT))?;
            if events.is_empty() {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    format!("{busy} connections got no reply for {IO_TIMEOUT:?}"),
                ));
            }
            for event in events.iter() {
                let conn = &mut conns[event.token().0];
                if conn.left > 0 && conn.advance(request)? {
                    busy -= 1;
                }
            }
        }
        let elapsed = start.elapsed();
        for conn in conns.iter() {
            check_reply(&conn.reply)?;
        }
        Ok(elapsed)
    }
}

impl Conn {
    /// Writes and reads until the socket would block (mio is edge-triggered, so
    /// every readiness event must be used up) or this connection's requests are
    /// done. Returns true when they are done.
    fn advance(&mut self, request: &[u8]) -> io::Result<bool> {
        loop {
            if self.written < request.len() {
                match self.stream.write(&request[self.written..]) {
                    Ok(0) => return Err(ErrorKind::WriteZero.into()),
                    Ok(n) => self.written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            match self.stream.read(&mut self.reply[self.read..]) {
                Ok(0) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "server closed")),
                Ok(n) => self.read += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if self.read == REQUEST_LEN {
                self.left -= 1;
                if self.left == 0 {
                    return Ok(true);
                }
                self.written = 0;
                self.read = 0;
            }
        }
    }
}

/// An error unless `reply` is the upper-cased request.
pub fn check_reply(reply: &[u8]) -> io::Result<()> {
    if reply == expected_reply() {
        Ok(())
    } else {
        Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("wrong reply {:?}", String::from_utf8_lossy(reply)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request has lower-case letters to change and the reply is all upper case.
    #[test]
    fn request_and_reply_differ_only_in_case() {
        let (request, reply) = (request(), expected_reply());
        assert_ne!(request, reply);
        assert!(request.eq_ignore_ascii_case(&reply));
        assert!(check_reply(&reply).is_ok());
        assert!(check_reply(&request).is_err());
    }
}

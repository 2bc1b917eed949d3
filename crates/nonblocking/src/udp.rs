//! The same readiness loop serving UDP: `recvfrom()` until `WouldBlock`, one
//! `sendto()` per datagram, timers for `sleep` work.
//!
//! There are no connections, so there is no per-client state: only replies that
//! cannot go out yet — held by a `sleep` timer, or refused by a full socket send
//! buffer (`sendto()` said `EAGAIN`). Both wait in memory bounded by
//! [`MAX_QUEUED_BYTES`]; past it the loop stops receiving, and new datagrams wait
//! in the kernel's receive buffer, which drops what does not fit (visible as
//! `RcvbufErrors` in `/proc/net/snmp`). Dropping is what UDP promises: a client
//! that needs every reply retransmits.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use socklab_protocol::{uppercase_datagram, Work, MAX_UDP_PAYLOAD};
use socklab_server_kit::{log_client_error, work, Context};

use crate::timers::{Alarm, Timers};
use crate::{ALARM, EVENTS_PER_WAIT, MODEL, SHUTDOWN};

/// The UDP socket's token.
const SOCKET: Token = Token(0);

/// Reply bytes a loop may hold (delayed by `sleep` work or waiting for send-buffer
/// room) before it stops receiving. 4 MiB: 64 replies of the largest datagram, or
/// tens of thousands of small ones.
pub const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// A reply that could not be sent yet.
#[derive(Debug)]
struct Reply {
    bytes: Vec<u8>,
    peer: SocketAddr,
}

/// What became of one `sendto()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Yes,
    /// The socket's send buffer is full (`EAGAIN`): try again when writable.
    Full,
    /// An error that concerns this one client; the reply is dropped.
    Lost,
}

pub(crate) fn run(socket: std::net::UdpSocket, cx: &Context) -> io::Result<()> {
    socket.set_nonblocking(true)?;
    let poll = Poll::new()?;
    let alarm = Alarm::new(poll.registry(), ALARM)?;
    let mut udp_loop = UdpLoop {
        cx,
        poll,
        alarm,
        socket: UdpSocket::from_std(socket),
        held: Timers::new(),
        unsent: VecDeque::new(),
        queued_bytes: 0,
        interest: Interest::READABLE,
        buf: vec![0; MAX_UDP_PAYLOAD],
        stop_by: None,
    };
    let wake = cx.shutdown.wake_fd().as_raw_fd();
    let registry = udp_loop.poll.registry();
    registry.register(&mut SourceFd(&wake), SHUTDOWN, Interest::READABLE)?;
    registry.register(&mut udp_loop.socket, SOCKET, udp_loop.interest)?;
    if cx.shutdown.is_triggered() {
        udp_loop.begin_shutdown();
    }
    udp_loop.run()
}

struct UdpLoop<'a> {
    cx: &'a Context,
    poll: Poll,
    /// Wakes `epoll_wait` when the earliest held reply is due.
    alarm: Alarm,
    socket: UdpSocket,
    /// Replies held by `sleep` work, by deadline.
    held: Timers<Reply>,
    /// Replies refused by a full send buffer, in order.
    unsent: VecDeque<Reply>,
    /// Bytes in `held` and `unsent` together.
    queued_bytes: usize,
    interest: Interest,
    /// As large as the largest datagram: `recvfrom()` silently drops what does not fit.
    buf: Vec<u8>,
    stop_by: Option<Instant>,
}

impl UdpLoop<'_> {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        loop {
            let now = Instant::now();
            if let Some(stop_by) = self.stop_by {
                let idle = self.held.is_empty() && self.unsent.is_empty();
                if idle || now >= stop_by {
                    return Ok(());
                }
            }
            let timeout = self
                .alarm
                .wait_until(now, [self.held.next_deadline(), self.stop_by])?;
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    SHUTDOWN => self.begin_shutdown(),
                    ALARM => self.alarm.rang(),
                    _ => {}
                }
            }
            // Whatever woke us (the socket readable or writable, a timer), the same
            // steps follow: send what is due, then receive while there is room.
            let now = Instant::now();
            while let Some(reply) = self.held.pop_due(now) {
                self.queued_bytes -= reply.bytes.len();
                self.send(reply);
            }
            self.send_unsent();
            self.receive_all()?;
            self.update_interest()?;
        }
    }

    /// `recvfrom()` until `WouldBlock` (edge-triggered: the event that woke us may
    /// stand for many datagrams), or until the queue is full.
    fn receive_all(&mut self) -> io::Result<()> {
        while self.stop_by.is_none() && self.queued_bytes < MAX_QUEUED_BYTES {
            let (n, peer) = match self.socket.recv_from(&mut self.buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP port-unreachable from an earlier reply (a client that left).
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            let datagram = &mut self.buf[..n];
            self.cx.config.maybe_crash(datagram);
            uppercase_datagram(datagram);
            match self.cx.config.work {
                // Never sleep here: hold the reply and let a timer release it.
                Work::Sleep(d) if !d.is_zero() => {
                    let reply = Reply {
                        bytes: datagram.to_vec(),
                        peer,
                    };
                    self.queued_bytes += n;
                    self.held.push(Instant::now() + d, reply);
                }
                // Inline: the whole loop waits, as for TCP.
                Work::Cpu(d) => {
                    work::spin_for(d);
                    self.send_from_buf(n, peer);
                }
                _ => self.send_from_buf(n, peer),
            }
        }
        Ok(())
    }

    /// Sends the reply in the receive buffer without copying it, unless earlier
    /// replies are waiting (order) or the send buffer is full (then it is copied).
    fn send_from_buf(&mut self, n: usize, peer: SocketAddr) {
        let bytes = &self.buf[..n];
        if !self.unsent.is_empty() || self.try_send(bytes, peer) == Sent::Full {
            self.queue(Reply {
                bytes: bytes.to_vec(),
                peer,
            });
        }
    }

    /// Sends a reply whose timer fired, or queues it behind earlier ones.
    fn send(&mut self, reply: Reply) {
        if !self.unsent.is_empty() || self.try_send(&reply.bytes, reply.peer) == Sent::Full {
            self.queue(reply);
        }
    }

    fn queue(&mut self, reply: Reply) {
        self.queued_bytes += reply.bytes.len();
        self.unsent.push_back(reply);
    }

    fn send_unsent(&mut self) {
        while let Some(reply) = self.unsent.front() {
            if self.try_send(&reply.bytes, reply.peer) == Sent::Full {
                return;
            }
            let reply = self.unsent.pop_front().expect("front exists");
            self.queued_bytes -= reply.bytes.len();
        }
    }

    /// One `sendto()`.
    fn try_send(&self, bytes: &[u8], peer: SocketAddr) -> Sent {
        loop {
            match self.socket.send_to(bytes, peer) {
                Ok(_) => {
                    self.cx.counters.served(1, bytes.len(), bytes.len());
                    return Sent::Yes;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Sent::Full,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.cx.counters.client_errors.fetch_add(1, Relaxed);
                    log_client_error(MODEL, &e);
                    return Sent::Lost;
                }
            }
        }
    }

    /// WRITABLE only while replies wait for send-buffer room.
    fn update_interest(&mut self) -> io::Result<()> {
        let wanted = if self.unsent.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if wanted != self.interest {
            self.poll
                .registry()
                .reregister(&mut self.socket, SOCKET, wanted)?;
            self.interest = wanted;
        }
        Ok(())
    }

    /// Stops receiving; replies already delayed or queued get the grace period.
    fn begin_shutdown(&mut self) {
        if self.stop_by.is_none() {
            self.stop_by = Some(Instant::now() + self.cx.config.grace);
            let wake = self.cx.shutdown.wake_fd().as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&wake));
        }
    }
}

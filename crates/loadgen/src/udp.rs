//! UDP sockets as the event loop drives them: each "connection" is a UDP socket `connect()`ed to the server.
//!
//! `connect` on a UDP socket sends nothing; it fixes the peer, so `send`/`recv` need
//! no address, datagrams from anyone else are dropped by the kernel, and an ICMP
//! "port unreachable" comes back as `ECONNREFUSED` on the next call — that is how a
//! UDP client learns nobody is listening.
//!
//! UDP may lose, duplicate or reorder datagrams, so every request carries an id in
//! its first [`crate::config::UDP_ID_LEN`] bytes (lowercase letters, uppercased by a
//! correct server). A reply is matched to its request by id, checked, and timed; a
//! request with no reply after `timeout` is counted lost, exactly once; a reply that
//! comes after that is counted late and changes nothing. No wait is unbounded, so a
//! run against a silent server ends on time.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use crate::config::{Mode, UDP_ID_LEN};
use crate::event_loop::{scan_period, Core, Transport};
use crate::payload::{decode_id, encode_id, Payload};
use crate::shared::WorkerCtx;
use crate::LoadError;

/// Receive buffer: room for the largest datagram, so none is truncated.
const RECV_BUF: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Pending {
    id: u64,
    off: usize,
    sent: Instant,
    latency_from: Instant,
}

struct Sock {
    sock: UdpSocket,
    payload: Payload,
    next_id: u64,
    outstanding: VecDeque<Pending>,
    quota: Option<u64>,
    /// Measured replies, and replies of any kind (has it been served yet?).
    measured_replies: u64,
    replies: u64,
    /// It lost a datagram, got a wrong reply, or an error from the kernel.
    errored: bool,
}

/// One thread's UDP sockets.
pub struct UdpSocks {
    ctx: WorkerCtx,
    socks: Vec<Sock>,
    served: u64,
    started: bool,
    buf: Vec<u8>,
    out: Vec<u8>,
    timeout: Duration,
    next_scan: Instant,
}

/// Where a socket binds: the configured source address, or the unspecified one of
/// the target's family; port 0 either way (the kernel picks one).
fn local_for(target: SocketAddr, bind: Option<IpAddr>) -> SocketAddr {
    let ip = bind.unwrap_or(match target {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    SocketAddr::new(ip, 0)
}

impl Transport for UdpSocks {
    fn open(ctx: &WorkerCtx, registry: &Registry) -> Result<UdpSocks, LoadError> {
        let cfg = &ctx.cfg;
        let mut socks = Vec::new();
        let pool = Payload::new(cfg.seed, ctx.thread as u64, cfg.size - UDP_ID_LEN, false);
        for (i, c) in ctx.conn_ids().enumerate() {
            let what = || format!("opening a UDP socket to {}", cfg.target);
            let mut sock = UdpSocket::bind(local_for(cfg.target, cfg.bind))
                .map_err(|e| LoadError::io(what(), e))?;
            sock.connect(cfg.target)
                .map_err(|e| LoadError::io(what(), e))?;
            registry
                .register(&mut sock, Token(i), Interest::READABLE)
                .map_err(|e| LoadError::io(what(), e))?;
            socks.push(Sock {
                sock,
                payload: pool.for_conn(c as u64),
                next_id: 0,
                outstanding: VecDeque::new(),
                quota: ctx.quota(c),
                measured_replies: 0,
                replies: 0,
                errored: false,
            });
        }
        Ok(UdpSocks {
            ctx: ctx.clone(),
            socks,
            served: 0,
            started: false,
            buf: vec![0; RECV_BUF],
            out: Vec::with_capacity(cfg.size),
            timeout: cfg
                .reply_timeout()
                .unwrap_or(crate::config::UDP_LOSS_TIMEOUT),
            next_scan: Instant::now(),
        })
    }

    fn count(&self) -> usize {
        self.socks.len()
    }

    /// A UDP socket is "connected" from the start: `connect` sent nothing.
    fn connected(&self) -> u64 {
        self.socks.len() as u64
    }

    fn connect_settled(&self) -> bool {
        true
    }

    fn served_once(&self) -> u64 {
        self.served
    }

    fn start(&mut self, now: Instant, core: &mut Core) {
        self.started = true;
        for s in &self.socks {
            if let Ok(local) = s.sock.local_addr() {
                core.stats.source(local.ip());
            }
        }
        if self.ctx.cfg.mode == Mode::Closed {
            for i in 0..self.socks.len() {
                self.refill(i, now, core);
            }
        }
    }

    fn on_event(&mut self, i: usize, _ev: &Event, _now: Instant, core: &mut Core) {
        self.receive(i, core);
        if self.ctx.cfg.mode == Mode::Closed {
            self.refill(i, Instant::now(), core);
        }
    }

    fn send_due(
        &mut self,
        i: usize,
        now: Instant,
        intended: Instant,
        measured: bool,
        core: &mut Core,
    ) {
        self.send(i, now, intended, measured, core);
    }

    /// Datagrams leave as they are sent: nothing is queued.
    fn flush_due(&mut self, _now: Instant, _core: &mut Core) {}

    /// Times out overdue requests (every [`scan_period`]), then tops up the closed
    /// loop.
    fn housekeeping(&mut self, now: Instant, core: &mut Core) {
        if now >= self.next_scan {
            self.scan_timeouts(now, core);
            self.next_scan = now + scan_period(self.timeout);
        }
        if self.ctx.cfg.mode == Mode::Closed {
            for i in 0..self.socks.len() {
                self.refill(i, now, core);
            }
        }
    }

    fn share_done(&self, _core: &Core) -> bool {
        let idle = self.socks.iter().all(|s| s.outstanding.is_empty());
        match self.ctx.cfg.mode {
            Mode::Open => idle,
            _ => idle && self.socks.iter().all(|s| s.quota == Some(0)),
        }
    }

    fn window_closed(&mut self, deadline: Instant, core: &mut Core) {
        for s in &mut self.socks {
            for p in s.outstanding.drain(..) {
                core.stats.waiting(deadline, p.latency_from);
            }
            core.stats.client(s.measured_replies, s.errored);
        }
    }

    fn close_all(&mut self) {}
}

impl UdpSocks {
    /// Sends one request on socket `i`.
    fn send(
        &mut self,
        i: usize,
        now: Instant,
        latency_from: Instant,
        measured: bool,
        core: &mut Core,
    ) {
        let stats = &mut core.stats;
        let s = &mut self.socks[i];
        let id = s.next_id;
        s.next_id += 1;
        let off = s.payload.next_offset();
        self.out.clear();
        self.out.resize(UDP_ID_LEN, 0);
        encode_id(id, &mut self.out[..UDP_ID_LEN]);
        self.out.extend_from_slice(s.payload.body(off));
        if measured {
            if let Some(q) = &mut s.quota {
                *q = q.saturating_sub(1);
            }
            stats.counts.sent += 1;
            stats.counts.bytes_sent += self.out.len() as u64;
        }
        let err = loop {
            match s.sock.send(&self.out) {
                Ok(_) => {
                    s.outstanding.push_back(Pending {
                        id,
                        off,
                        sent: now,
                        latency_from,
                    });
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break e,
            }
        };
        // The request never left: count it failed, and why.
        s.errored = true;
        if measured {
            stats.counts.failed += 1;
        }
        let target = self.ctx.cfg.target;
        match err.kind() {
            io::ErrorKind::ConnectionRefused => stats.errors.refused += 1,
            _ => stats.errors.other += 1,
        }
        stats.errors.note(format!("send to {target}: {err}"));
    }

    /// Reads every waiting datagram on socket `i` and matches it to its request.
    fn receive(&mut self, i: usize, core: &mut Core) {
        let target = self.ctx.cfg.target;
        loop {
            let n = match self.socks[i].sock.recv(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // An ICMP error from an earlier send (e.g. port unreachable).
                    self.socks[i].errored = true;
                    match e.kind() {
                        io::ErrorKind::ConnectionRefused => core.stats.errors.refused += 1,
                        _ => core.stats.errors.other += 1,
                    }
                    core.stats
                        .errors
                        .note(format!("receive from {target}: {e}"));
                    continue;
                }
            };
            // Timed as read, not when the loop woke (see `Conn::read_ready`).
            self.match_reply(i, n, Instant::now(), core);
        }
    }

    fn match_reply(&mut self, i: usize, n: usize, now: Instant, core: &mut Core) {
        let stats = &mut core.stats;
        let s = &mut self.socks[i];
        let reply = &self.buf[..n];
        let id = if n >= UDP_ID_LEN {
            decode_id(&reply[..UDP_ID_LEN])
        } else {
            None
        };
        let pos = id.and_then(|id| s.outstanding.iter().position(|p| p.id == id));
        let Some(pos) = pos else {
            match id {
                Some(id) if id < s.next_id => stats.errors.late += 1,
                _ => {
                    stats.errors.unexpected += 1;
                    stats
                        .errors
                        .note(format!("a {n}-byte datagram matching no request"));
                }
            }
            return;
        };
        let p = s.outstanding.remove(pos).expect("position is in range");
        if s.replies == 0 {
            self.served += 1;
        }
        s.replies += 1;
        let mut want_id = [0u8; UDP_ID_LEN];
        encode_id(p.id, &mut want_id);
        let ok = n == UDP_ID_LEN + s.payload.body(p.off).len()
            && reply[..UDP_ID_LEN] == want_id.to_ascii_uppercase()
            && reply[UDP_ID_LEN..] == *s.payload.expected_body(p.off);
        s.errored |= !ok;
        // A reply counts if it arrives in the window (see `Counts`).
        if core.window.is_some_and(|w| w.measures(now)) {
            s.measured_replies += 1;
            stats.answered(!ok, n, now, now.saturating_duration_since(p.latency_from));
        }
    }

    /// Closed loop: keep `pipeline` requests outstanding on socket `i`.
    fn refill(&mut self, i: usize, now: Instant, core: &mut Core) {
        if !self.started {
            return;
        }
        let pipeline = self.ctx.cfg.pipeline;
        while self.socks[i].outstanding.len() < pipeline && core.may_send(now) {
            let measured = core.measured_now(now);
            if measured && self.socks[i].quota == Some(0) {
                break;
            }
            self.send(i, now, now, measured, core);
        }
    }

    /// Requests whose reply is overdue are lost, each counted exactly once.
    fn scan_timeouts(&mut self, now: Instant, core: &mut Core) {
        let mut lost_any = false;
        for s in &mut self.socks {
            while let Some(p) = s.outstanding.front() {
                if now.saturating_duration_since(p.sent) < self.timeout {
                    break;
                }
                core.stats.errors.timeouts += 1;
                s.errored = true;
                if core.window.is_some_and(|w| w.measures(now)) {
                    core.stats.counts.failed += 1;
                }
                s.outstanding.pop_front();
                lost_any = true;
            }
        }
        if lost_any {
            core.stats.errors.note(format!(
                "no reply from {} within {:?} (datagram lost)",
                self.ctx.cfg.target, self.timeout
            ));
        }
    }
}

//! The UDP event loop: each "connection" is a UDP socket `connect()`ed to the server.
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
use std::time::Instant;

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use crate::config::{Mode, UDP_ID_LEN};
use crate::pace::{Pacer, Schedule};
use crate::payload::{decode_id, encode_id, Payload};
use crate::runner::{Timeline, WorkerCtx, WorkerResult};
use crate::stats::ThreadStats;
use crate::tcp::{scan_period, TICK};
use crate::LoadError;

const PACER: Token = Token(usize::MAX);
const EVENTS: usize = 1024;
/// Receive buffer: room for the largest datagram, so none is truncated.
const RECV_BUF: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Pending {
    id: u64,
    off: usize,
    sent: Instant,
    latency_from: Instant,
    measured: bool,
}

struct Sock {
    sock: UdpSocket,
    payload: Payload,
    next_id: u64,
    outstanding: VecDeque<Pending>,
    quota: Option<u64>,
}

/// Runs one UDP worker thread to completion.
pub fn run(ctx: WorkerCtx) -> Result<WorkerResult, LoadError> {
    let mut w = match Worker::new(&ctx) {
        Ok(w) => w,
        Err(e) => {
            ctx.shared.gate.arrive();
            return Err(e);
        }
    };
    let Some(start) = ctx.shared.gate.arrive() else {
        return Ok(WorkerResult {
            stats: w.stats,
            finished_early: false,
            connected_at_start: 0,
        });
    };
    let tl = Timeline {
        start,
        measure_start: start + ctx.cfg.warmup,
        deadline: start + ctx.cfg.warmup + ctx.cfg.duration,
    };
    let finished = w.measure(tl);
    Ok(WorkerResult {
        connected_at_start: w.socks.len() as u64,
        stats: w.stats,
        finished_early: finished,
    })
}

struct Worker {
    ctx: WorkerCtx,
    poll: Poll,
    socks: Vec<Sock>,
    stats: ThreadStats,
    buf: Vec<u8>,
    out: Vec<u8>,
    pacer: Option<Pacer>,
    schedule: Option<Schedule>,
    tl: Option<Timeline>,
    next_scan: Instant,
}

fn unspecified_for(target: SocketAddr) -> SocketAddr {
    let ip = match target {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

impl Worker {
    fn new(ctx: &WorkerCtx) -> Result<Worker, LoadError> {
        let cfg = &ctx.cfg;
        let poll = Poll::new().map_err(|e| LoadError::io("creating epoll instance", e))?;
        let mut socks = Vec::new();
        let pool = Payload::new(cfg.seed, ctx.thread as u64, cfg.size - UDP_ID_LEN, false);
        for (i, c) in ctx.conn_ids().enumerate() {
            let what = || format!("opening a UDP socket to {}", cfg.target);
            let mut sock = UdpSocket::bind(unspecified_for(cfg.target))
                .map_err(|e| LoadError::io(what(), e))?;
            sock.connect(cfg.target)
                .map_err(|e| LoadError::io(what(), e))?;
            poll.registry()
                .register(&mut sock, Token(i), Interest::READABLE)
                .map_err(|e| LoadError::io(what(), e))?;
            socks.push(Sock {
                sock,
                payload: pool.for_conn(c as u64),
                next_id: 0,
                outstanding: VecDeque::new(),
                quota: ctx.quota(c),
            });
        }
        let pacer = match cfg.mode {
            Mode::Open => Some(
                Pacer::new(poll.registry(), PACER)
                    .map_err(|e| LoadError::io("creating the pacing timerfd", e))?,
            ),
            _ => None,
        };
        Ok(Worker {
            ctx: ctx.clone(),
            poll,
            socks,
            stats: ThreadStats::new(Instant::now(), cfg.interval),
            buf: vec![0; RECV_BUF],
            out: Vec::with_capacity(cfg.size),
            pacer,
            schedule: None,
            tl: None,
            next_scan: Instant::now(),
        })
    }

    fn measure(&mut self, tl: Timeline) -> bool {
        self.tl = Some(tl);
        self.stats.rec.start_measuring(tl.measure_start);
        let cfg = self.ctx.cfg.clone();
        let now = Instant::now();
        if cfg.mode == Mode::Open {
            self.schedule = Some(Schedule::new(
                tl.start,
                cfg.warmup,
                cfg.rate.unwrap_or(1.0),
                cfg.conns,
                self.ctx.thread,
                cfg.threads,
                cfg.requests,
            ));
        }
        self.housekeeping(now);
        let mut events = Events::with_capacity(EVENTS);
        let mut next_tick = now + TICK;
        let finished = loop {
            let now = Instant::now();
            if now >= tl.deadline || self.ctx.stopped() {
                break false;
            }
            if now >= next_tick {
                self.housekeeping(now);
                if self.share_done(now) {
                    break true;
                }
                next_tick = now + TICK;
            }
            let timeout = next_tick.min(tl.deadline).saturating_duration_since(now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.stats.errors.other += 1;
                    self.stats.errors.note(format!("epoll_wait: {e}"));
                    break false;
                }
                continue;
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    PACER => {
                        if let Some(p) = &self.pacer {
                            p.clear();
                        }
                        self.send_due(now);
                    }
                    Token(i) if i < self.socks.len() => {
                        self.receive(i);
                        if cfg.mode == Mode::Closed {
                            self.refill(i, Instant::now());
                        }
                    }
                    Token(_) => {}
                }
            }
        };
        for s in &self.socks {
            let n = s.outstanding.iter().filter(|p| p.measured).count() as u64;
            self.stats.counts.unfinished += n;
        }
        self.ctx
            .live()
            .publish(&self.stats, self.socks.len() as u64);
        finished
    }

    /// Sends one request on socket `i`.
    fn send(&mut self, i: usize, now: Instant, latency_from: Instant, measured: bool) {
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
            self.stats.counts.sent += 1;
            self.stats.counts.bytes_sent += self.out.len() as u64;
        }
        let err = loop {
            match s.sock.send(&self.out) {
                Ok(_) => {
                    s.outstanding.push_back(Pending {
                        id,
                        off,
                        sent: now,
                        latency_from,
                        measured,
                    });
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break e,
            }
        };
        // The request never left: count it failed, and why.
        if measured {
            self.stats.counts.failed += 1;
        }
        let target = self.ctx.cfg.target;
        match err.kind() {
            io::ErrorKind::ConnectionRefused => self.stats.errors.refused += 1,
            _ => self.stats.errors.other += 1,
        }
        self.stats.errors.note(format!("send to {target}: {err}"));
    }

    /// Reads every waiting datagram on socket `i` and matches it to its request.
    fn receive(&mut self, i: usize) {
        let target = self.ctx.cfg.target;
        loop {
            let n = match self.socks[i].sock.recv(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // An ICMP error from an earlier send (e.g. port unreachable).
                    match e.kind() {
                        io::ErrorKind::ConnectionRefused => self.stats.errors.refused += 1,
                        _ => self.stats.errors.other += 1,
                    }
                    self.stats
                        .errors
                        .note(format!("receive from {target}: {e}"));
                    continue;
                }
            };
            // Timed as read, not when the loop woke (see `Conn::read_ready`).
            self.match_reply(i, n, Instant::now());
        }
    }

    fn match_reply(&mut self, i: usize, n: usize, now: Instant) {
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
                Some(id) if id < s.next_id => self.stats.errors.late += 1,
                _ => {
                    self.stats.errors.unexpected += 1;
                    self.stats
                        .errors
                        .note(format!("a {n}-byte datagram matching no request"));
                }
            }
            return;
        };
        let p = s.outstanding.remove(pos).expect("position is in range");
        if !p.measured {
            return;
        }
        let mut want_id = [0u8; UDP_ID_LEN];
        encode_id(p.id, &mut want_id);
        let ok = n == UDP_ID_LEN + s.payload.body(p.off).len()
            && reply[..UDP_ID_LEN] == want_id.to_ascii_uppercase()
            && reply[UDP_ID_LEN..] == *s.payload.expected_body(p.off);
        if ok {
            self.stats.counts.ok += 1;
        } else {
            self.stats.counts.mismatched += 1;
        }
        self.stats.counts.bytes_received += n as u64;
        self.stats
            .rec
            .latency(now, now.saturating_duration_since(p.latency_from));
        self.stats.last_completion = Some(now);
    }

    /// Closed loop: keep `pipeline` requests outstanding on socket `i`.
    fn refill(&mut self, i: usize, now: Instant) {
        let Some(tl) = self.tl else { return };
        let pipeline = self.ctx.cfg.pipeline;
        while self.socks[i].outstanding.len() < pipeline && now < tl.deadline {
            let measured = now >= tl.measure_start;
            if measured && self.socks[i].quota == Some(0) {
                break;
            }
            self.send(i, now, now, measured);
        }
    }

    fn send_due(&mut self, now: Instant) {
        let Some(mut schedule) = self.schedule.take() else {
            return;
        };
        while let Some(due) = schedule.pop_due(now) {
            if due.measured {
                self.stats
                    .lag
                    .record(now.saturating_duration_since(due.intended));
            }
            self.send(due.local_conn, now, due.intended, due.measured);
        }
        if let (Some(p), Some(at)) = (&self.pacer, schedule.next_due()) {
            if let Err(e) = p.arm(at) {
                self.stats.errors.other += 1;
                self.stats
                    .errors
                    .note(format!("arming the pacing timer: {e}"));
            }
        }
        self.schedule = Some(schedule);
    }

    /// Times out overdue requests (every [`scan_period`]), then tops up the closed
    /// loop and the open-loop schedule.
    fn housekeeping(&mut self, now: Instant) {
        if now >= self.next_scan {
            self.scan_timeouts(now);
            self.next_scan = now + scan_period(self.ctx.cfg.timeout);
        }
        match self.ctx.cfg.mode {
            Mode::Closed => {
                for i in 0..self.socks.len() {
                    self.refill(i, now);
                }
            }
            Mode::Open => self.send_due(now),
            Mode::Churn => {}
        }
        self.ctx
            .live()
            .publish(&self.stats, self.socks.len() as u64);
    }

    /// Requests whose reply is overdue are lost, each counted exactly once.
    fn scan_timeouts(&mut self, now: Instant) {
        let timeout = self.ctx.cfg.timeout;
        let mut lost_any = false;
        for s in &mut self.socks {
            while let Some(p) = s.outstanding.front() {
                if now.saturating_duration_since(p.sent) < timeout {
                    break;
                }
                self.stats.errors.timeouts += 1;
                if p.measured {
                    self.stats.counts.failed += 1;
                }
                s.outstanding.pop_front();
                lost_any = true;
            }
        }
        if lost_any {
            self.stats.errors.note(format!(
                "no reply from {} within {:?} (datagram lost)",
                self.ctx.cfg.target, timeout
            ));
        }
    }

    fn share_done(&self, now: Instant) -> bool {
        let Some(tl) = self.tl else { return false };
        if self.ctx.cfg.requests.is_none() || now < tl.measure_start {
            return false;
        }
        let idle = self.socks.iter().all(|s| s.outstanding.is_empty());
        match self.ctx.cfg.mode {
            Mode::Open => {
                idle && self
                    .schedule
                    .as_ref()
                    .is_some_and(|s| s.next_due().is_none())
            }
            _ => idle && self.socks.iter().all(|s| s.quota == Some(0)),
        }
    }
}

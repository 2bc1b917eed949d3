//! The TCP loop: one ring, one listener, every connection in a slab.
//!
//! Each connection is a [`Connection`] in a `Box` in the slab (the readiness
//! loop's table too: `socklab_server_kit::slab`), and the slab index is in the
//! `user_data` of every operation submitted for it. The `Box` keeps its address
//! put however the slab grows, and its buffers are owned by the `Connection`, so
//! they stay alive and unmoved while the kernel works on them. A `Connection` is
//! freed only when none of its operations is in flight any more
//! (`Connection::in_flight == 0`): a completion can never arrive for freed memory,
//! and a recycled slab index never receives a stale completion.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Instant;

use io_uring::{opcode, squeue, types};
use socklab_protocol::{Session, Work};
use socklab_server_kit::accept::{is_resource_exhaustion, RESOURCE_BACKOFF};
use socklab_server_kit::slab::Slab;
use socklab_server_kit::work::spin_for;
use socklab_server_kit::READ_BUF;
use socklab_server_kit::{log_client_error, Config, Context, Counters, OpenConnection};

use crate::ring::{token, Completion, Features, Op, Ring};
use crate::MAX_PENDING_OUTPUT;

/// Where the listener's accept operation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Accept {
    /// Nothing armed: armed again after this batch if there is room.
    Idle,
    /// An accept is in flight (multishot: until a completion without F_MORE).
    Armed,
    /// We asked the kernel to cancel it; its last completion is still due.
    Cancelling,
}

pub(crate) struct TcpLoop<'a> {
    listener: TcpListener,
    cx: &'a Context,
    connections: Slab<Box<Connection>>,
    /// Connections a multishot accept took past the cap: the kernel accepts on
    /// our behalf until the cancel lands. They wait here, unserved and uncounted,
    /// exactly as they would have waited in the listen backlog.
    parked: VecDeque<TcpStream>,
    accept: Accept,
    multishot: bool,
    backing_off: bool,
    /// This loop's share of `max_conns`.
    cap: usize,
    grace_armed: bool,
    /// Shutdown was seen: no more accepts, connections finish on their own.
    stopping: bool,
    /// The loop-wide timers were cancelled after the last connection left.
    winding_down: bool,
    /// Durations the kernel reads when a timer is submitted. Boxed so their
    /// addresses stay put for as long as the loop runs, whatever moves the loop.
    idle: Option<Box<types::Timespec>>,
    grace: Box<types::Timespec>,
    backoff: Box<types::Timespec>,
    /// Dropped last, after every socket above is closed (and with nothing in flight).
    ring: Ring,
}

impl<'a> TcpLoop<'a> {
    pub(crate) fn new(
        ring: Ring,
        listener: TcpListener,
        cx: &'a Context,
        features: Features,
        cap: usize,
    ) -> Self {
        TcpLoop {
            ring,
            listener,
            cx,
            connections: Slab::default(),
            parked: VecDeque::new(),
            accept: Accept::Idle,
            multishot: features.multishot_accept,
            backing_off: false,
            cap,
            grace_armed: false,
            stopping: false,
            winding_down: false,
            idle: cx.config.idle_timeout.map(|d| Box::new(d.into())),
            grace: Box::new(cx.config.grace.into()),
            backoff: Box::new(RESOURCE_BACKOFF.into()),
        }
    }

    /// Serves until shutdown and the grace period are over, then returns with no
    /// operation in flight and every connection closed.
    pub(crate) fn run(mut self) -> io::Result<()> {
        self.ring
            .poll_shutdown(self.cx.shutdown.wake_fd().as_raw_fd());
        self.tend_accept();
        let mut completions = Vec::new();
        while !(self.stopping && self.connections.is_empty() && self.ring.in_flight() == 0) {
            if let Err(e) = self.ring.enter() {
                // The ring itself failed: we cannot learn when the kernel lets go
                // of our buffers, so they are leaked rather than freed under it.
                std::mem::forget(std::mem::take(&mut self.connections));
                return Err(e);
            }
            self.ring.reap(&mut completions);
            for completion in completions.drain(..) {
                self.complete(completion);
            }
            self.tend_accept();
        }
        Ok(())
    }

    fn complete(&mut self, c: Completion) {
        match c.op {
            Op::ShutdownPoll => self.begin_shutdown(),
            Op::Grace => {
                self.grace_armed = false;
                if c.result != -libc::ECANCELED {
                    self.close_all();
                }
            }
            Op::Cancel => {}
            Op::Accept => self.on_accept(c.result, c.more),
            Op::AcceptBackoff => self.backing_off = false,
            Op::Recv | Op::RecvTimeout | Op::Send | Op::SendTimeout | Op::Sleep => {
                self.on_conn_op(c)
            }
            Op::DatagramRecv | Op::DatagramSleep | Op::DatagramSend => {
                unreachable!("the TCP loop submits no datagram operations")
            }
        }
    }

    fn begin_shutdown(&mut self) {
        self.stopping = true;
        // Never served: close them, as closing the listener would.
        self.parked.clear();
        // SAFETY: the grace Timespec is boxed in the loop and lives until `run` returns,
        // which is after every operation has completed.
        unsafe { self.ring.timer(Op::Grace, 0, &*self.grace) };
        self.grace_armed = true;
    }

    /// The grace period is over: cancel every connection's operations; each
    /// connection is freed when its last completion arrives.
    fn close_all(&mut self) {
        for (index, connection) in self.connections.iter_mut() {
            connection.kill(&mut self.ring, index);
        }
    }

    /// Called after every batch of completions: arms, cancels or leaves the
    /// accept operation so that it is armed exactly when there is room.
    fn tend_accept(&mut self) {
        if self.stopping {
            if let Accept::Armed = self.accept {
                self.ring.cancel(token(Op::Accept, 0));
                self.accept = Accept::Cancelling;
            }
            if self.connections.is_empty() && !self.winding_down {
                self.wind_down();
            }
            return;
        }
        while self.below_cap() {
            let Some(stream) = self.parked.pop_front() else {
                break;
            };
            self.open(stream);
        }
        let room = self.below_cap() && self.parked.is_empty() && !self.backing_off;
        match self.accept {
            Accept::Idle if room => self.arm_accept(),
            Accept::Armed if !room => {
                // A multishot accept keeps accepting until cancelled; that is how
                // "stop accepting at the cap" is said to io_uring.
                self.ring.cancel(token(Op::Accept, 0));
                self.accept = Accept::Cancelling;
            }
            _ => {}
        }
    }

    /// The last connection left after shutdown: cancel the loop's own timers so
    /// that nothing is in flight when `run` returns.
    fn wind_down(&mut self) {
        self.winding_down = true;
        for (armed, op) in [
            (self.grace_armed, Op::Grace),
            (self.backing_off, Op::AcceptBackoff),
        ] {
            if armed {
                self.ring.cancel(token(op, 0));
            }
        }
    }

    /// Connections still holding a slot include those closing, until freed.
    fn below_cap(&self) -> bool {
        self.connections.len() < self.cap
    }

    fn arm_accept(&mut self) {
        let fd = types::Fd(self.listener.as_raw_fd());
        let entry = if self.multishot {
            opcode::AcceptMulti::new(fd)
                .flags(libc::SOCK_CLOEXEC)
                .build()
        } else {
            // No peer address wanted: null pointers, nothing for the kernel to write.
            opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build()
        };
        // SAFETY: accept writes to no memory of ours (null address pointers); the
        // listener is owned by the loop and outlives every operation on it.
        unsafe { self.ring.push(&[entry.user_data(token(Op::Accept, 0))]) };
        self.accept = Accept::Armed;
    }

    fn on_accept(&mut self, result: i32, more: bool) {
        if !more {
            self.accept = Accept::Idle;
        }
        if result >= 0 {
            // SAFETY: a non-negative accept result is a new descriptor that the
            // kernel just created for us and nobody else owns.
            let stream = unsafe { TcpStream::from_raw_fd(result) };
            if self.stopping {
                drop(stream);
            } else if self.below_cap() && self.parked.is_empty() {
                self.open(stream);
            } else {
                self.parked.push_back(stream);
            }
            return;
        }
        let errno = -result;
        let err = io::Error::from_raw_os_error(errno);
        match errno {
            libc::ECANCELED => {}
            libc::EINVAL if self.multishot => {
                // The probe said multishot; this kernel disagrees. Single-shot from now on.
                self.multishot = false;
            }
            // accept(2): a connection that died in the queue, or network errors
            // Linux passes through; retry at once (after this batch).
            libc::ECONNABORTED
            | libc::EINTR
            | libc::EAGAIN
            | libc::EPROTO
            | libc::EPERM
            | libc::ENETDOWN
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH => {}
            _ => {
                // EMFILE and friends (and anything unexpected): the pending
                // connection stays in the backlog; wait before trying again
                // instead of spinning on the same error.
                if is_resource_exhaustion(&err) {
                    eprintln!("socklab uring: accept: {err}; backing off {RESOURCE_BACKOFF:?}");
                } else {
                    eprintln!(
                        "socklab uring: accept failed: {err}; retrying in {RESOURCE_BACKOFF:?}"
                    );
                }
                if more {
                    self.ring.cancel(token(Op::Accept, 0));
                    self.accept = Accept::Cancelling;
                }
                // SAFETY: the boxed Timespec lives until `run` returns, after every completion.
                unsafe { self.ring.timer(Op::AcceptBackoff, 0, &*self.backoff) };
                self.backing_off = true;
            }
        }
    }

    /// Starts serving an accepted connection.
    fn open(&mut self, stream: TcpStream) {
        // The event loops set only TCP_NODELAY of `prepare_stream`'s options. Its
        // SO_RCVTIMEO and SO_SNDTIMEO time out a *blocked* call, and the kernel
        // never blocks a thread of ours on this socket: the ring polls it. The
        // linked timeouts on each recv and send do their job.
        if let Err(e) = stream.set_nodelay(true) {
            log_client_error("uring", &e);
            return;
        }
        let index = self
            .connections
            .insert(Box::new(Connection::new(stream, self.cx)));
        let connection = self.connections.get_mut(index).expect("just inserted");
        connection.advance(&mut self.ring, index, self.idle.as_deref());
        self.release_if_done(index);
    }

    fn on_conn_op(&mut self, c: Completion) {
        let (config, counters) = (&*self.cx.config, self.cx.counters);
        let connection = self
            .connections
            .get_mut(c.index)
            .expect("a connection is freed only after its last completion");
        connection.in_flight -= 1;
        match c.op {
            Op::Recv => connection.on_recv(c.result, &mut self.ring, c.index, config, counters),
            Op::Send => connection.on_send(c.result, &mut self.ring, c.index),
            Op::Sleep => connection.on_sleep(),
            // The timer linked to a recv or send: if it fired, that operation
            // completes with -ECANCELED and is handled there.
            _ => {}
        }
        connection.advance(&mut self.ring, c.index, self.idle.as_deref());
        self.release_if_done(c.index);
    }

    /// Frees a finished connection once the kernel holds none of its memory.
    fn release_if_done(&mut self, index: usize) {
        let done = self
            .connections
            .get_mut(index)
            .is_some_and(|connection| connection.dead && connection.in_flight == 0);
        if done {
            // Dropping the Connection closes the socket, frees its buffers, and its
            // guard counts it closed.
            self.connections.remove(index);
        }
    }
}

/// One client's state. While an operation is in flight the kernel owns the
/// memory it points at, and this code does not touch it:
/// `input` during a recv, `sending[sent..]` during a send, `sleep` (until the
/// timer is submitted; we keep it until completion).
struct Connection {
    stream: TcpStream,
    session: Session,
    input: Vec<u8>,
    sending: Vec<u8>,
    sent: usize,
    /// Replies produced while a send was in flight; they go out next.
    pending: Vec<u8>,
    /// Replies held back by `sleep` work until its timer fires.
    held: Vec<u8>,
    sleep: types::Timespec,
    /// Operations of this connection the kernel still holds (linked timers included).
    in_flight: u32,
    receiving: bool,
    send_armed: bool,
    sleeping: bool,
    /// The client shut its write side (recv returned 0).
    eof: bool,
    /// Bad input: send what is queued (ending in the error line), then close.
    closing: bool,
    /// Finished or failed: no new operations; freed when `in_flight` reaches 0.
    dead: bool,
    /// Counts the connection open until this struct is dropped.
    _open: OpenConnection,
}

impl Connection {
    fn new(stream: TcpStream, cx: &Context) -> Connection {
        let config = &cx.config;
        Connection {
            stream,
            session: config.session(),
            input: vec![0; READ_BUF],
            sending: Vec::new(),
            sent: 0,
            pending: Vec::new(),
            held: Vec::new(),
            sleep: types::Timespec::new(),
            in_flight: 0,
            receiving: false,
            send_armed: false,
            sleeping: false,
            eof: false,
            closing: false,
            dead: false,
            _open: cx.counters.open(),
        }
    }

    /// Reply bytes not yet handed to the kernel for good: what backpressure bounds.
    fn unsent(&self) -> usize {
        self.sending.len() - self.sent + self.pending.len() + self.held.len()
    }

    fn on_recv(
        &mut self,
        result: i32,
        ring: &mut Ring,
        index: usize,
        config: &Config,
        counters: &Counters,
    ) {
        self.receiving = false;
        if self.dead {
            return;
        }
        match result {
            // EOF: the client shut its write side. Replies still queued go out,
            // then we close: the client reads every reply, then EOF (half-close).
            0 => self.eof = true,
            n if n > 0 => self.on_input(n as usize, ring, index, config, counters),
            // Cancelled: its linked idle timer fired, or the grace period ended.
            e if e == -libc::ECANCELED => self.kill(ring, index),
            e => {
                log_client_error("uring", &io::Error::from_raw_os_error(-e));
                self.kill(ring, index);
            }
        }
    }

    /// Feeds `n` bytes just received to the protocol and routes the replies by
    /// the work they need.
    fn on_input(
        &mut self,
        n: usize,
        ring: &mut Ring,
        index: usize,
        config: &Config,
        counters: &Counters,
    ) {
        let input = &self.input[..n];
        config.maybe_crash(input);
        // `held` is empty here: no recv is armed while a sleep is pending.
        let fed = self.session.feed_at(input, Instant::now(), &mut self.held);
        counters.served(fed.requests, n, self.held.len());
        // Bad input (a line too long, a request dribbled past its timeout): send
        // what is queued, ending in the error line, then close.
        self.closing |= fed.closing;
        match config.work.times(fed.requests) {
            Work::Sleep(d) if !d.is_zero() => {
                self.sleep = d.into();
                let entry = opcode::Timeout::new(&self.sleep)
                    .build()
                    .user_data(token(Op::Sleep, index));
                // SAFETY: `sleep` lives in this boxed Connection, which is freed only
                // after its last completion (this timer's included).
                unsafe { ring.push(&[entry]) };
                self.in_flight += 1;
                self.sleeping = true;
            }
            Work::Cpu(d) => {
                // The whole loop stops here, every client with it: that is the lesson.
                spin_for(d);
                self.pending.append(&mut self.held);
            }
            _ => self.pending.append(&mut self.held),
        }
    }

    fn on_send(&mut self, result: i32, ring: &mut Ring, index: usize) {
        self.send_armed = false;
        if self.dead {
            return;
        }
        match result {
            // A partial send is normal: the rest goes out in the next send.
            n if n > 0 => self.sent += n as usize,
            // Cancelled: its linked timer fired (the client stopped reading for
            // the idle timeout), or the grace period ended.
            e if e == -libc::ECANCELED => self.kill(ring, index),
            e => {
                let err = if e == 0 {
                    io::Error::new(io::ErrorKind::WriteZero, "send accepted no bytes")
                } else {
                    io::Error::from_raw_os_error(-e)
                };
                log_client_error("uring", &err);
                self.kill(ring, index);
            }
        }
    }

    fn on_sleep(&mut self) {
        self.sleeping = false;
        if !self.dead {
            self.pending.append(&mut self.held);
        }
    }

    /// Submits whatever this connection can do next: a send of queued replies,
    /// a recv if its output is below the cap, or its close when it is done.
    fn advance(&mut self, ring: &mut Ring, index: usize, idle: Option<&types::Timespec>) {
        if self.dead {
            return;
        }
        if !self.send_armed {
            if self.sent == self.sending.len() {
                // The kernel is done with `sending`: swap in the replies queued since.
                self.sending.clear();
                self.sent = 0;
                std::mem::swap(&mut self.sending, &mut self.pending);
            }
            if self.sent < self.sending.len() {
                self.submit_send(ring, index, idle);
            }
        }
        // Backpressure: a client whose replies pile up (it does not read) gets no
        // recv until they drain, so it cannot grow our memory; the kernel's socket
        // buffers fill and its own writes block.
        let may_read = !(self.receiving || self.sleeping || self.eof || self.closing);
        if may_read && self.unsent() < MAX_PENDING_OUTPUT {
            self.submit_recv(ring, index, idle);
        }
        let quiet = !(self.receiving || self.send_armed || self.sleeping);
        if (self.eof || self.closing) && quiet && self.unsent() == 0 {
            if self.closing {
                // As the blocking driver does: FIN after the error line, then close.
                let _ = self.stream.shutdown(Shutdown::Write);
            }
            self.dead = true;
        }
    }

    fn submit_recv(&mut self, ring: &mut Ring, index: usize, idle: Option<&types::Timespec>) {
        let recv = opcode::Recv::new(
            types::Fd(self.stream.as_raw_fd()),
            self.input.as_mut_ptr(),
            self.input.len() as u32,
        )
        .build()
        .user_data(token(Op::Recv, index));
        // SAFETY: `input` is owned by this boxed Connection, which is freed only after
        // its last completion; nothing reads, resizes or replaces `input` while
        // `receiving` is set.
        self.in_flight += unsafe { push_linked(ring, recv, idle, token(Op::RecvTimeout, index)) };
        self.receiving = true;
    }

    fn submit_send(&mut self, ring: &mut Ring, index: usize, idle: Option<&types::Timespec>) {
        let rest = &self.sending[self.sent..];
        let send = opcode::Send::new(
            types::Fd(self.stream.as_raw_fd()),
            rest.as_ptr(),
            rest.len() as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(token(Op::Send, index));
        // SAFETY: `sending` is owned by this boxed Connection, which is freed only after
        // its last completion; while `send_armed` is set new replies go to
        // `pending`, and `sending` is neither written, swapped nor reallocated.
        self.in_flight += unsafe { push_linked(ring, send, idle, token(Op::SendTimeout, index)) };
        self.send_armed = true;
    }

    /// Ends the connection now: cancels its operations; it is freed when their
    /// completions have all arrived.
    fn kill(&mut self, ring: &mut Ring, index: usize) {
        if self.dead {
            return;
        }
        self.dead = true;
        for (armed, op) in [
            (self.receiving, Op::Recv),
            (self.send_armed, Op::Send),
            (self.sleeping, Op::Sleep),
        ] {
            if armed {
                // Cancelling a recv or send also cancels the timer linked to it.
                ring.cancel(token(op, index));
            }
        }
    }
}

/// Pushes `entry`, followed by a linked timeout when `idle` is set; returns the
/// number of operations submitted.
///
/// The linked timeout (`IOSQE_IO_LINK` + `LinkTimeout`) is how this loop does the
/// idle timeout: the kernel cancels the recv (or send) if it has not completed
/// within the timeout, and the timer is disarmed when it does. No timer wheel, no
/// sweep over all connections: the cost is one more SQE and CQE per operation.
///
/// # Safety
///
/// As for [`Ring::push`]: the memory `entry` points at must outlive its
/// completion. `idle` is the Timespec boxed in the `TcpLoop`, which outlives
/// every operation.
unsafe fn push_linked(
    ring: &mut Ring,
    entry: squeue::Entry,
    idle: Option<&types::Timespec>,
    timer: u64,
) -> u32 {
    match idle {
        None => {
            // SAFETY: forwarded to the caller.
            unsafe { ring.push(&[entry]) };
            1
        }
        Some(timespec) => {
            let link = opcode::LinkTimeout::new(timespec).build().user_data(timer);
            // SAFETY: forwarded to the caller.
            unsafe { ring.push(&[entry.flags(squeue::Flags::IO_LINK), link]) };
            2
        }
    }
}

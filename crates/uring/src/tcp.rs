//! The TCP loop: one ring, one listener, one pool of receive buffers, every
//! connection in a slab.
//!
//! Each connection is a [`Connection`] in a `Box` in the slab (the readiness
//! loop's table too: `socklab_server_kit::slab`), and the slab index is in the
//! `user_data` of every operation submitted for it. The `Box` keeps its address
//! put however the slab grows, and its reply buffers are owned by the
//! `Connection`, so they stay alive and unmoved while the kernel works on them. A
//! `Connection` is freed only when none of its operations is in flight any more
//! (`Connection::in_flight == 0`): a completion can never arrive for freed memory,
//! and a recycled slab index never receives a stale completion.
//!
//! What a connection does *not* own is a receive buffer. Its multishot recv
//! names the loop's buffer group; each completion says which buffer of the
//! [`BufRing`] the kernel filled, the bytes go to the protocol (or, if it may not
//! take them yet, are copied to the connection's `unread`), and the buffer goes
//! straight back to the ring. Each multishot recv is armed with a byte budget
//! (what the connection may still take before the backpressure cap) and ends
//! when it is spent: the loop decides how much input a connection gets, not how
//! fast the kernel can fill buffers. Where the kernel refuses buffer rings or
//! multishot recv, each connection gets its own `READ_BUF` buffer and a
//! single-shot recv into it, re-armed after every completion: to the rest of the
//! loop that is a multishot recv that ends after each completion.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Once;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types};
use socklab_protocol::{Session, Work};
use socklab_server_kit::accept::{is_resource_exhaustion, RESOURCE_BACKOFF};
use socklab_server_kit::slab::Slab;
use socklab_server_kit::work::spin_for;
use socklab_server_kit::READ_BUF;
use socklab_server_kit::{log_client_error, Config, Context, Counters, OpenConnection};

use crate::bufring::{BufRing, PoolSize, BUFFER_GROUP, BUF_SIZE};
use crate::ring::{token, Completion, Features, Op, Ring};
use crate::MAX_PENDING_OUTPUT;

/// Where a loop's connections receive into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecvBuffers {
    /// A provided-buffer ring of this size shared by the loop's connections, and
    /// one multishot recv per connection (where the kernel allows it).
    Provided(PoolSize),
    /// As `Provided`, with multishot recvs that carry no byte limit, as on Linux
    /// 6.0 to 6.16: chosen only by the tests, to keep that path working here.
    #[cfg_attr(not(test), allow(dead_code))]
    Unlimited(PoolSize),
    /// One `READ_BUF` buffer per connection and a single-shot recv: the fallback
    /// where the kernel refuses the above. Chosen up front only by the tests, to
    /// keep the fallback working on kernels that never need it.
    #[cfg_attr(not(test), allow(dead_code))]
    Owned,
}

/// Which recv a connection arms; the loop picks the best the kernel allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecvOp {
    /// Multishot from the buffer ring, ending after a byte budget (Linux 6.17).
    Limited,
    /// Multishot from the buffer ring, until cancelled (Linux 6.0).
    Multishot,
    /// Single-shot into the connection's own buffer: the fallback.
    Owned,
}

/// Where a connection's recv stands (its accept's counterpart: [`Accept`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recv {
    /// Nothing armed: armed again by `advance` if the connection wants input.
    Idle,
    /// A recv is in flight (multishot: until a completion without F_MORE).
    Armed,
    /// We asked the kernel to cancel it (backpressure, or bad input being
    /// answered); its last completion is still due.
    Cancelling,
}

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
    /// `--idle-timeout`: each connection's idle timer checks against it.
    idle: Option<Duration>,
    /// Durations the kernel reads when a timer is submitted. Boxed so their
    /// addresses stay put for as long as the loop runs, whatever moves the loop.
    grace: Box<types::Timespec>,
    backoff: Box<types::Timespec>,
    /// The recv connections arm: downgraded, once, when the kernel refuses one.
    recv_op: RecvOp,
    /// Dropped after every socket above is closed (and with nothing in flight).
    ring: Ring,
    /// The receive buffers lent to the kernel; `None` in the fallback. Dropped
    /// after the ring, which unregisters them.
    buffers: Option<BufRing>,
}

impl<'a> TcpLoop<'a> {
    pub(crate) fn new(
        ring: Ring,
        listener: TcpListener,
        cx: &'a Context,
        features: Features,
        cap: usize,
        recv_buffers: RecvBuffers,
    ) -> Self {
        let buffers = match recv_buffers {
            RecvBuffers::Provided(_) | RecvBuffers::Unlimited(_) if !features.multishot_recv => {
                fall_back("this kernel has no multishot recv (Linux 6.0)");
                None
            }
            RecvBuffers::Provided(size) | RecvBuffers::Unlimited(size) => {
                BufRing::register(&ring, size)
                    .map_err(|e| {
                        fall_back(&format!(
                            "IORING_REGISTER_PBUF_RING failed: {e} (Linux 5.19 or later is needed)"
                        ))
                    })
                    .ok()
            }
            RecvBuffers::Owned => None,
        };
        TcpLoop {
            ring,
            recv_op: match (&buffers, recv_buffers) {
                (None, _) => RecvOp::Owned,
                (Some(_), RecvBuffers::Unlimited(_)) => RecvOp::Multishot,
                (Some(_), _) => RecvOp::Limited,
            },
            buffers,
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
            idle: cx.config.idle_timeout,
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
                std::mem::forget(self.buffers.take());
                return Err(e);
            }
            self.ring.reap(&mut completions);
            // One clock read per batch, for every completion in it.
            let now = Instant::now();
            for completion in completions.drain(..) {
                self.complete(completion, now);
            }
            self.tend_accept();
        }
        Ok(())
    }

    fn complete(&mut self, c: Completion, now: Instant) {
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
            Op::Recv | Op::Send | Op::Idle | Op::Sleep => self.on_conn_op(c, now),
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
            self.open(stream, Instant::now());
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
                self.open(stream, Instant::now());
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
                    socklab_server_kit::exhaustion::say_once(
                        "uring",
                        "accept",
                        &err,
                        &format!("backing off {RESOURCE_BACKOFF:?} and retrying"),
                    );
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
    fn open(&mut self, stream: TcpStream, now: Instant) {
        // The event loops set only TCP_NODELAY of `prepare_stream`'s options. Its
        // SO_RCVTIMEO and SO_SNDTIMEO time out a *blocked* call, and the kernel
        // never blocks a thread of ours on this socket: the ring polls it. The
        // idle timer does their job.
        if let Err(e) = stream.set_nodelay(true) {
            log_client_error("uring", &e);
            return;
        }
        let index = self
            .connections
            .insert(Box::new(Connection::new(stream, self.cx, now)));
        let connection = self.connections.get_mut(index).expect("just inserted");
        if let Some(idle) = self.idle {
            connection.arm_idle(&mut self.ring, index, idle);
        }
        self.advance(index, now);
    }

    fn on_conn_op(&mut self, c: Completion, now: Instant) {
        let connection = self
            .connections
            .get_mut(c.index)
            .expect("a connection is freed only after its last completion");
        if !c.more {
            connection.in_flight -= 1;
        }
        let mut io = Io {
            ring: &mut self.ring,
            index: c.index,
            config: &self.cx.config,
            counters: self.cx.counters,
            now,
        };
        match c.op {
            Op::Recv => {
                // The bytes are in the ring buffer the kernel picked and named in
                // the completion, or (the fallback) in the connection's own.
                let ring_bytes = match (c.buffer, &self.buffers) {
                    (Some(id), Some(pool)) => Some(pool.get(id, c.result.max(0) as usize)),
                    _ => None,
                };
                let armed_as = connection.recv_op;
                connection.on_recv(c.result, c.more, ring_bytes, &mut io);
                if let (Some(id), Some(pool)) = (c.buffer, &mut self.buffers) {
                    // Fed to the protocol or copied aside: the buffer goes back now,
                    // so no connection holds one past its completion.
                    pool.recycle(id);
                }
                match -c.result {
                    libc::ENOBUFS => self.ran_dry(),
                    libc::EINVAL => self.refused(armed_as),
                    _ => {}
                }
            }
            Op::Send => connection.on_send(c.result, &mut io),
            Op::Sleep => connection.on_sleep(),
            Op::Idle => {
                let idle = self
                    .idle
                    .expect("idle timers run only with an idle timeout");
                connection.on_idle_timer(idle, &mut io);
            }
            other => unreachable!("{other:?} is not a connection's operation"),
        }
        self.advance(c.index, now);
    }

    /// A recv found the buffer ring empty (`-ENOBUFS`): its bytes wait in the
    /// socket and its multishot has ended. Lend the kernel more buffers, up to the
    /// ring's size; `advance` re-arms the recv, and the buffers of this batch's
    /// other completions are back in the ring before the next `io_uring_enter`.
    fn ran_dry(&mut self) {
        if let Some(count) = self.buffers.as_mut().and_then(BufRing::grow) {
            eprintln!(
                "socklab uring: the buffer ring ran dry: {count} buffers of {} KiB now",
                BUF_SIZE / 1024
            );
        }
    }

    /// The kernel answered `EINVAL` to a recv armed as `op`: it lacks what `op`
    /// needs (the probe cannot tell flags apart). Every later recv is armed the
    /// next way down, and the one refused is re-armed so by `advance`.
    fn refused(&mut self, op: RecvOp) {
        match (op, self.recv_op) {
            (RecvOp::Limited, RecvOp::Limited) => {
                eprintln!(
                    "socklab uring: this kernel has no byte limit on multishot recv (Linux 6.17); \
                     a client that does not read may leave one batch of input beyond the \
                     backpressure cap"
                );
                self.recv_op = RecvOp::Multishot;
            }
            (RecvOp::Multishot, RecvOp::Multishot) => {
                fall_back("the kernel refused a multishot recv (EINVAL)");
                self.recv_op = RecvOp::Owned;
            }
            // Already downgraded by a sibling's completion of the same batch.
            _ => {}
        }
    }

    /// Submits whatever connection `index` can do next, then frees it if it is
    /// finished.
    fn advance(&mut self, index: usize, now: Instant) {
        let Some(connection) = self.connections.get_mut(index) else {
            return;
        };
        let mut io = Io {
            ring: &mut self.ring,
            index,
            config: &self.cx.config,
            counters: self.cx.counters,
            now,
        };
        connection.advance(self.recv_op, &mut io);
        self.release_if_done(index);
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

/// Says once per process that the loop receives into a buffer per connection,
/// and why.
fn fall_back(why: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        eprintln!(
            "socklab uring: no provided-buffer ring: {why}; each connection gets its own \
             {} KiB receive buffer and a single-shot recv instead",
            READ_BUF / 1024
        )
    });
}

/// What a connection's handlers need from its loop: the ring to submit on, the
/// connection's index (for `user_data`), the configuration and counters, and
/// the time of the batch being handled.
struct Io<'l> {
    ring: &'l mut Ring,
    index: usize,
    config: &'l Config,
    counters: &'l Counters,
    now: Instant,
}

/// One client's state. While an operation is in flight the kernel owns the
/// memory it points at, and this code does not touch it: `sending[sent..]`
/// during a send, `sleep` and `idle_timer` while their timers run, and, in the
/// fallback only, `input` during a recv.
struct Connection {
    stream: TcpStream,
    session: Session,
    /// The fallback's own receive buffer; empty (no allocation) with a buffer ring.
    input: Vec<u8>,
    /// Bytes received that the protocol may not take yet (a `sleep` reply is
    /// held, or the replies are past the backpressure cap), copied out of their
    /// ring buffer so that it goes back at once. Fed first when allowed.
    unread: Vec<u8>,
    sending: Vec<u8>,
    sent: usize,
    /// Replies produced while a send was in flight; they go out next.
    pending: Vec<u8>,
    /// Replies held back by `sleep` work until its timer fires.
    held: Vec<u8>,
    sleep: types::Timespec,
    idle_timer: types::Timespec,
    /// Last time bytes moved either way, for the idle timeout.
    last_active: Instant,
    /// Operations of this connection the kernel still holds (a multishot recv
    /// counts once, until its last completion).
    in_flight: u32,
    recv: Recv,
    /// How the recv in flight (or the last one) was armed.
    recv_op: RecvOp,
    send_armed: bool,
    sleeping: bool,
    idle_armed: bool,
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
    fn new(stream: TcpStream, cx: &Context, now: Instant) -> Connection {
        Connection {
            stream,
            session: cx.config.session(),
            input: Vec::new(),
            unread: Vec::new(),
            sending: Vec::new(),
            sent: 0,
            pending: Vec::new(),
            held: Vec::new(),
            sleep: types::Timespec::new(),
            idle_timer: types::Timespec::new(),
            last_active: now,
            in_flight: 0,
            recv: Recv::Idle,
            recv_op: RecvOp::Owned,
            send_armed: false,
            sleeping: false,
            idle_armed: false,
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

    /// Whether the protocol may take input now: not while a `sleep` reply is
    /// held (replies stay in order), nor past the backpressure cap, nor once bad
    /// input is being answered.
    fn may_feed(&self) -> bool {
        !(self.sleeping || self.closing) && self.unsent() < MAX_PENDING_OUTPUT
    }

    /// Bytes this connection may still take in before it passes the backpressure
    /// cap: replies queued and input waiting both count.
    fn budget(&self) -> usize {
        MAX_PENDING_OUTPUT.saturating_sub(self.unsent() + self.unread.len())
    }

    /// Whether a recv should be armed: there is budget, and the client may still
    /// send.
    fn wants_input(&self) -> bool {
        !(self.eof || self.closing) && self.budget() > 0
    }

    /// A recv completion: `ring_bytes` are the bytes in the ring buffer it names
    /// (`None` in the fallback, where they are in `input`).
    fn on_recv(&mut self, result: i32, more: bool, ring_bytes: Option<&[u8]>, io: &mut Io) {
        if !more {
            // The multishot ended (or, in the fallback, the single recv did):
            // `advance` re-arms it if this connection still wants input.
            self.recv = Recv::Idle;
        }
        if self.dead {
            return;
        }
        match result {
            n if n > 0 => {
                self.last_active = io.now;
                match ring_bytes {
                    Some(bytes) => self.take_input(bytes, io),
                    None => {
                        let input = std::mem::take(&mut self.input);
                        self.take_input(&input[..n as usize], io);
                        self.input = input;
                    }
                }
            }
            // EOF: the client shut its write side. Replies still queued go out,
            // then we close: the client reads every reply, then EOF (half-close).
            0 => self.eof = true,
            // Our own cancel (backpressure), the ring out of buffers (the loop
            // grows it), or a multishot the kernel refused (the loop arms the next
            // kind): the bytes are still in the socket, and `advance` re-arms when
            // it should.
            e if -e == libc::ECANCELED || -e == libc::ENOBUFS => {}
            e if -e == libc::EINVAL && self.recv_op != RecvOp::Owned => {}
            e => {
                log_client_error("uring", &io::Error::from_raw_os_error(-e));
                self.kill(io.ring, io.index);
            }
        }
    }

    /// Received bytes go to the protocol now if it may take them and nothing
    /// older waits; otherwise after what waits.
    fn take_input(&mut self, bytes: &[u8], io: &mut Io) {
        if self.closing {
            // Answered and closing: further input is ignored, as the session would.
        } else if self.unread.is_empty() && self.may_feed() {
            self.feed(bytes, io);
        } else {
            self.unread.extend_from_slice(bytes);
        }
    }

    /// Feeds `input` to the protocol and routes the replies by the work they need.
    fn feed(&mut self, input: &[u8], io: &mut Io) {
        io.config.maybe_crash(input);
        // `held` is empty here: nothing is fed while a sleep is pending.
        let fed = self.session.feed_at(input, io.now, &mut self.held);
        io.counters
            .served(fed.requests, input.len(), self.held.len());
        // Bad input (a line too long, a request dribbled past its timeout): send
        // what is queued, ending in the error line, then close.
        if fed.closing {
            self.closing = true;
            self.unread.clear();
        }
        match io.config.work.times(fed.requests) {
            Work::Sleep(d) if !d.is_zero() => {
                self.sleep = d.into();
                let entry = opcode::Timeout::new(&self.sleep)
                    .build()
                    .user_data(token(Op::Sleep, io.index));
                // SAFETY: `sleep` lives in this boxed Connection, which is freed only
                // after its last completion (this timer's included).
                unsafe { io.ring.push(&[entry]) };
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

    fn on_send(&mut self, result: i32, io: &mut Io) {
        self.send_armed = false;
        if self.dead {
            return;
        }
        match result {
            // A partial send is normal: the rest goes out in the next send.
            n if n > 0 => {
                self.sent += n as usize;
                self.last_active = io.now;
            }
            // Cancelled: the idle timer found the client not reading, or the grace
            // period ended.
            e if e == -libc::ECANCELED => self.kill(io.ring, io.index),
            e => {
                let err = if e == 0 {
                    io::Error::new(io::ErrorKind::WriteZero, "send accepted no bytes")
                } else {
                    io::Error::from_raw_os_error(-e)
                };
                log_client_error("uring", &err);
                self.kill(io.ring, io.index);
            }
        }
    }

    fn on_sleep(&mut self) {
        self.sleeping = false;
        if !self.dead {
            self.pending.append(&mut self.held);
        }
    }

    /// Arms this connection's idle timer to fire after `after`.
    fn arm_idle(&mut self, ring: &mut Ring, index: usize, after: Duration) {
        self.idle_timer = after.into();
        // SAFETY: `idle_timer` lives in this boxed Connection, which is freed only
        // after its last completion (this timer's included), and is rewritten only
        // when no idle timer is armed.
        unsafe { ring.timer(Op::Idle, index, &self.idle_timer) };
        self.in_flight += 1;
        self.idle_armed = true;
    }

    /// The idle timer fired (or was cancelled). One timer per connection,
    /// re-armed lazily as the readiness loop's is: rather than move the timer on
    /// every recv (an SQE per request), check when it fires and set a new one for
    /// `last_active + idle` if bytes moved meanwhile.
    fn on_idle_timer(&mut self, idle: Duration, io: &mut Io) {
        self.idle_armed = false;
        if self.dead {
            return;
        }
        let quiet_until = self.last_active + idle;
        if self.sleeping {
            // The client is not idle: it is waiting for us (sleep work).
            self.arm_idle(io.ring, io.index, idle);
        } else if io.now >= quiet_until {
            // Silent, or not reading our replies, for the whole idle timeout.
            self.kill(io.ring, io.index);
        } else {
            self.arm_idle(io.ring, io.index, quiet_until - io.now);
        }
    }

    /// Submits whatever this connection can do next: input that waited to the
    /// protocol, a send of queued replies, a recv if it wants input (or the
    /// recv's cancel if it no longer does), or its close when it is done.
    /// `op` is the recv the loop arms now.
    fn advance(&mut self, op: RecvOp, io: &mut Io) {
        if self.dead {
            return;
        }
        if !self.unread.is_empty() && self.may_feed() {
            let unread = std::mem::take(&mut self.unread);
            self.feed(&unread, io);
        }
        if !self.send_armed {
            if self.sent == self.sending.len() {
                // The kernel is done with `sending`: swap in the replies queued since.
                self.sending.clear();
                self.sent = 0;
                std::mem::swap(&mut self.sending, &mut self.pending);
            }
            if self.sent < self.sending.len() {
                self.submit_send(io.ring, io.index);
            }
        }
        // Backpressure: a client whose replies pile up (it does not read) gets its
        // recv cancelled until they drain, so it cannot grow our memory; the
        // kernel's socket buffers fill and its own writes block.
        match self.recv {
            Recv::Idle if self.wants_input() => self.submit_recv(op, io.ring, io.index),
            Recv::Armed if !self.wants_input() => {
                io.ring.cancel(token(Op::Recv, io.index));
                self.recv = Recv::Cancelling;
            }
            _ => {}
        }
        let quiet = !(self.send_armed || self.sleeping);
        if (self.eof || self.closing) && quiet && self.unsent() == 0 && self.unread.is_empty() {
            if self.closing {
                // As the blocking driver does: FIN after the error line, then close.
                let _ = self.stream.shutdown(Shutdown::Write);
            }
            // Cancels what is still armed (the recv, the idle timer).
            self.kill(io.ring, io.index);
        }
    }

    fn submit_recv(&mut self, op: RecvOp, ring: &mut Ring, index: usize) {
        let fd = types::Fd(self.stream.as_raw_fd());
        // One SQE for every arrival of data until it ends: each completion takes a
        // buffer from group BUFFER_GROUP (IOSQE_BUFFER_SELECT) only when bytes are
        // there to go in it.
        let multishot = || opcode::RecvMulti::new(fd, BUFFER_GROUP).build();
        let recv = match op {
            // Ends (without F_MORE) once it has delivered this connection's budget:
            // the kernel can deliver a whole batch before our cancel of a multishot
            // lands, so the budget, not the cancel, is what holds the cap.
            RecvOp::Limited => {
                debug_assert!(self.budget() > 0, "a budget of 0 would mean no limit");
                with_total_limit(multishot(), self.budget() as u32)
            }
            RecvOp::Multishot => multishot(),
            RecvOp::Owned => {
                if self.input.is_empty() {
                    self.input = vec![0; READ_BUF];
                }
                opcode::Recv::new(fd, self.input.as_mut_ptr(), self.input.len() as u32).build()
            }
        };
        // SAFETY: a multishot recv writes only into ring buffers, which the loop
        // keeps until the ring is gone. In the fallback, `input` is owned by this
        // boxed Connection, which is freed only after its last completion, and
        // nothing reads, resizes or replaces it while the recv is armed.
        unsafe { ring.push(&[recv.user_data(token(Op::Recv, index))]) };
        self.in_flight += 1;
        self.recv = Recv::Armed;
        self.recv_op = op;
    }

    fn submit_send(&mut self, ring: &mut Ring, index: usize) {
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
        unsafe { ring.push(&[send]) };
        self.in_flight += 1;
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
            (self.recv == Recv::Armed, Op::Recv),
            (self.send_armed, Op::Send),
            (self.sleeping, Op::Sleep),
            (self.idle_armed, Op::Idle),
        ] {
            if armed {
                ring.cancel(token(op, index));
            }
        }
    }
}

/// `entry` (a multishot recv) with `sqe->optlen` set to `limit`: the bytes it may
/// deliver in all before it ends without `IORING_CQE_F_MORE` (Linux 6.17, added
/// because, in its author's words, the kernel "might produce a lot of completions
/// before the user has a chance to cancel" a multishot recv). Earlier kernels
/// read the same four bytes as `file_index` and answer `EINVAL`. io-uring 0.7 has
/// no setter for it, so the field is written in place.
fn with_total_limit(entry: squeue::Entry, limit: u32) -> squeue::Entry {
    /// Offset of the `optlen` / `file_index` / `splice_fd_in` union in the SQE.
    const OPTLEN: usize = 44;
    // SAFETY: `squeue::Entry` is `repr(C)` around the kernel's 64-byte
    // `io_uring_sqe` (the crate asserts its size), plain data of which every bit
    // pattern is valid; only the u32 at `OPTLEN` changes.
    unsafe {
        let mut sqe: [u8; 64] = std::mem::transmute(entry);
        sqe[OPTLEN..OPTLEN + 4].copy_from_slice(&limit.to_ne_bytes());
        std::mem::transmute::<[u8; 64], squeue::Entry>(sqe)
    }
}

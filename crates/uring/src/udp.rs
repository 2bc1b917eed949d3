//! The UDP loop: a fixed set of datagram slots, each cycling through
//! recvmsg → (sleep) → sendmsg → recvmsg.
//!
//! A slot owns everything its operations point at: the payload buffer, the
//! `iovec` that describes it, the `msghdr` that points at both, and the
//! `sockaddr_storage` the kernel fills with the sender's address and sendmsg
//! reads back as the destination. Slots are boxed, so these self-referential
//! pointers stay valid, and a slot is reused only after its completion arrived.

use std::io;
use std::mem;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use io_uring::{opcode, types};
use socklab_protocol::{uppercase_datagram, Work, MAX_UDP_PAYLOAD};
use socklab_server_kit::work::spin_for;
use socklab_server_kit::{log_client_error, Context};

use crate::ring::{token, Completion, Op, Ring};

/// Datagrams a loop holds at once (receiving, sleeping or sending). Each slot
/// owns a MAX_UDP_PAYLOAD buffer, so 16 slots are 1 MiB per loop. One slot would
/// serve `--work none` as well; more let `sleep` work of several datagrams
/// overlap, and let one `io_uring_enter` carry several receives and sends.
pub(crate) const UDP_SLOTS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Receiving,
    Sleeping,
    Sending,
}

struct Slot {
    buf: Vec<u8>,
    iov: libc::iovec,
    peer: libc::sockaddr_storage,
    msg: libc::msghdr,
    sleep: types::Timespec,
    /// Bytes of the datagram being answered.
    len: usize,
    state: State,
}

impl Slot {
    fn new() -> Box<Slot> {
        // SAFETY: iovec, sockaddr_storage and msghdr are plain C structs for which
        // all-zero bytes (null pointers, zero lengths) are valid values.
        let (iov, peer, msg) = unsafe { (mem::zeroed(), mem::zeroed(), mem::zeroed()) };
        let mut slot = Box::new(Slot {
            buf: vec![0; MAX_UDP_PAYLOAD],
            iov,
            peer,
            msg,
            sleep: types::Timespec::new(),
            len: 0,
            state: State::Idle,
        });
        // Point the msghdr at its neighbours: valid because the Slot is boxed
        // and never moves out of its Box.
        let s = &mut *slot;
        s.iov.iov_base = s.buf.as_mut_ptr().cast();
        s.msg.msg_iov = &mut s.iov;
        s.msg.msg_iovlen = 1;
        s.msg.msg_name = (&mut s.peer as *mut libc::sockaddr_storage).cast();
        slot
    }
}

pub(crate) struct UdpLoop<'a> {
    socket: UdpSocket,
    cx: &'a Context,
    // Boxed, although a Vec is already on the heap: each Slot's msghdr points
    // into the Slot itself, so a Slot must never move, whatever the Vec does.
    #[allow(clippy::vec_box)]
    slots: Vec<Box<Slot>>,
    grace: Box<types::Timespec>,
    grace_armed: bool,
    shutdown_armed: bool,
    stopping: bool,
    winding_down: bool,
    fatal: Option<io::Error>,
    /// Dropped last, after the socket is closed (and with nothing in flight).
    ring: Ring,
}

impl<'a> UdpLoop<'a> {
    pub(crate) fn new(ring: Ring, socket: UdpSocket, cx: &'a Context) -> Self {
        UdpLoop {
            ring,
            socket,
            cx,
            slots: (0..UDP_SLOTS).map(|_| Slot::new()).collect(),
            grace: Box::new(cx.config.grace.into()),
            grace_armed: false,
            shutdown_armed: true,
            stopping: false,
            winding_down: false,
            fatal: None,
        }
    }

    /// Serves datagrams until shutdown, then returns with no operation in flight.
    pub(crate) fn run(mut self) -> io::Result<()> {
        self.ring
            .poll_shutdown(self.cx.shutdown.wake_fd().as_raw_fd());
        for index in 0..self.slots.len() {
            self.arm_recv(index);
        }
        let mut completions = Vec::new();
        while !(self.stopping && self.ring.in_flight() == 0) {
            if let Err(e) = self.ring.enter() {
                // See TcpLoop::run: leak the buffers the kernel may still hold.
                mem::forget(mem::take(&mut self.slots));
                return Err(e);
            }
            self.ring.reap(&mut completions);
            for completion in completions.drain(..) {
                self.complete(completion);
            }
            if self.stopping && !self.winding_down && self.all_idle() {
                self.winding_down = true;
                for (armed, op) in [
                    (self.grace_armed, Op::Grace),
                    (self.shutdown_armed, Op::ShutdownPoll),
                ] {
                    if armed {
                        self.ring.cancel(token(op, 0));
                    }
                }
            }
        }
        self.fatal.take().map_or(Ok(()), Err)
    }

    fn complete(&mut self, c: Completion) {
        match c.op {
            Op::ShutdownPoll => {
                self.shutdown_armed = false;
                self.stop(None)
            }
            Op::Grace => {
                self.grace_armed = false;
                if c.result != -libc::ECANCELED {
                    self.cancel_slots(|_| true);
                }
            }
            Op::Cancel => {}
            Op::DatagramRecv => self.on_recv(c.index, c.result),
            // -ETIME: the sleep is over, the reply is due. -ECANCELED: the grace
            // period ended first; the reply is dropped.
            Op::DatagramSleep if c.result == -libc::ECANCELED => {
                self.slots[c.index].state = State::Idle
            }
            Op::DatagramSleep => self.send(c.index),
            Op::DatagramSend => self.on_send(c.index, c.result),
            other => unreachable!("the UDP loop submits no {other:?} operations"),
        }
    }

    /// Stops receiving; datagrams being answered get the grace period to finish.
    fn stop(&mut self, fatal: Option<io::Error>) {
        if fatal.is_some() && self.fatal.is_none() {
            self.fatal = fatal;
        }
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.cancel_slots(|state| state == State::Receiving);
        // SAFETY: the boxed grace Timespec lives until `run` returns, after every completion.
        unsafe { self.ring.timer(Op::Grace, 0, &*self.grace) };
        self.grace_armed = true;
    }

    fn cancel_slots(&mut self, which: impl Fn(State) -> bool) {
        for (index, slot) in self.slots.iter().enumerate() {
            let op = match slot.state {
                State::Idle => continue,
                State::Receiving => Op::DatagramRecv,
                State::Sleeping => Op::DatagramSleep,
                State::Sending => Op::DatagramSend,
            };
            if which(slot.state) {
                self.ring.cancel(token(op, index));
            }
        }
    }

    fn all_idle(&self) -> bool {
        self.slots.iter().all(|s| s.state == State::Idle)
    }

    fn arm_recv(&mut self, index: usize) {
        let slot = &mut *self.slots[index];
        // recvmsg writes back the sender's address length and flags: reset them.
        slot.iov.iov_len = slot.buf.len();
        slot.msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        slot.msg.msg_flags = 0;
        let entry = opcode::RecvMsg::new(types::Fd(self.socket.as_raw_fd()), &mut slot.msg)
            .build()
            .user_data(token(Op::DatagramRecv, index));
        // SAFETY: msg, iov, buf and peer live in this boxed slot, which is neither
        // touched nor reused nor freed until this operation's completion.
        unsafe { self.ring.push(&[entry]) };
        slot.state = State::Receiving;
    }

    fn on_recv(&mut self, index: usize, result: i32) {
        self.slots[index].state = State::Idle;
        let n = match result {
            n if n >= 0 => n as usize,
            e if e == -libc::ECANCELED => return,
            // An ICMP port-unreachable from an earlier reply: it concerns a
            // client that left, not us (as in the blocking UDP loop).
            e if matches!(-e, libc::ECONNREFUSED | libc::EINTR | libc::EAGAIN) => {
                if !self.stopping {
                    self.arm_recv(index);
                }
                return;
            }
            e => return self.stop(Some(io::Error::from_raw_os_error(-e))),
        };
        let config = &self.cx.config;
        let slot = &mut *self.slots[index];
        slot.len = n;
        let datagram = &mut slot.buf[..n];
        config.maybe_crash(datagram);
        uppercase_datagram(datagram);
        match config.work {
            Work::Sleep(d) if !d.is_zero() => {
                slot.sleep = d.into();
                // SAFETY: `sleep` lives in this boxed slot until the timer completes.
                unsafe { self.ring.timer(Op::DatagramSleep, index, &slot.sleep) };
                slot.state = State::Sleeping;
            }
            Work::Cpu(d) => {
                spin_for(d);
                self.send(index);
            }
            _ => self.send(index),
        }
    }

    /// Sends the slot's datagram back, whole, to the address it came from.
    fn send(&mut self, index: usize) {
        let slot = &mut *self.slots[index];
        slot.iov.iov_len = slot.len;
        slot.msg.msg_flags = 0;
        let entry = opcode::SendMsg::new(types::Fd(self.socket.as_raw_fd()), &slot.msg)
            .build()
            .user_data(token(Op::DatagramSend, index));
        // SAFETY: as in `arm_recv`: everything sendmsg reads lives in this boxed slot.
        unsafe { self.ring.push(&[entry]) };
        slot.state = State::Sending;
    }

    fn on_send(&mut self, index: usize, result: i32) {
        let n = self.slots[index].len;
        self.slots[index].state = State::Idle;
        if result >= 0 {
            self.cx.counters.served(1, n, n);
        } else if result != -libc::ECANCELED {
            let counters = self.cx.counters;
            counters
                .client_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            log_client_error("uring udp", &io::Error::from_raw_os_error(-result));
        }
        if !self.stopping {
            self.arm_recv(index);
        }
    }
}

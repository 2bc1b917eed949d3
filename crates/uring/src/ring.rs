//! The io_uring plumbing both loops share: creating a ring (or saying clearly why
//! the kernel refuses one), naming operations in `user_data`, queueing
//! submissions, and counting the operations the kernel still holds.
//!
//! The one rule this module exists to keep: **an operation in flight borrows
//! memory from us** (a buffer, a `msghdr`, a `Timespec`). Every submission goes
//! through [`Ring::push`], which is `unsafe` for that reason, and every final
//! completion is counted back, so a loop knows when nothing in the kernel points
//! at its memory any more ([`Ring::in_flight`] is zero).

use std::collections::VecDeque;
use std::io;
use std::sync::OnceLock;

use io_uring::{cqueue, opcode, squeue, IoUring, Probe};

/// Submission queue slots per ring (the completion queue gets twice as many).
/// A full submission queue is not an error: [`Ring::push`] submits what is queued
/// and carries on, so this only sets how many operations one `io_uring_enter`
/// can carry. 1,024 SQEs of 64 bytes plus 2,048 CQEs of 16 bytes: about 100 KiB per ring.
pub(crate) const RING_ENTRIES: u32 = 1024;

/// What an operation is, stored in the low byte of its `user_data`; the rest
/// holds the index of the connection or datagram slot it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Op {
    /// `PollAdd(POLLIN)` on the shutdown wake fd.
    ShutdownPoll,
    /// The grace period after shutdown.
    Grace,
    /// An `AsyncCancel`; its own completion only says whether it found its target.
    Cancel,
    /// `AcceptMulti` or `Accept` on the listener.
    Accept,
    /// The pause after `accept` failed for lack of descriptors or memory.
    AcceptBackoff,
    /// A connection's recv: multishot, drawing on the buffer ring (or single-shot
    /// into the connection's own buffer, the fallback).
    Recv,
    Send,
    /// A connection's idle timer: when it fires, the connection is closed if it
    /// has been silent for the idle timeout, and the timer re-armed otherwise.
    Idle,
    /// A connection's `sleep` work.
    Sleep,
    DatagramRecv,
    DatagramSleep,
    DatagramSend,
}

const OPS: [Op; 12] = [
    Op::ShutdownPoll,
    Op::Grace,
    Op::Cancel,
    Op::Accept,
    Op::AcceptBackoff,
    Op::Recv,
    Op::Send,
    Op::Idle,
    Op::Sleep,
    Op::DatagramRecv,
    Op::DatagramSleep,
    Op::DatagramSend,
];

const OP_BITS: u32 = 8;

/// The `user_data` naming operation `op` of connection or slot `index`.
pub(crate) fn token(op: Op, index: usize) -> u64 {
    ((index as u64) << OP_BITS) | op as u64
}

/// The inverse of [`token`].
pub(crate) fn untoken(token: u64) -> (Op, usize) {
    let op = OPS[(token & ((1 << OP_BITS) - 1)) as usize];
    (op, (token >> OP_BITS) as usize)
}

/// One completion, copied out of the completion queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Completion {
    pub op: Op,
    pub index: usize,
    /// The syscall's return value: bytes, a new fd, or `-errno`.
    pub result: i32,
    /// `IORING_CQE_F_MORE`: a multishot operation is still armed and will
    /// complete again.
    pub more: bool,
    /// `IORING_CQE_F_BUFFER`: the id of the provided buffer the kernel picked
    /// and wrote the bytes into; ours again, to read and then recycle.
    pub buffer: Option<u16>,
}

/// What the running kernel's io_uring can do, found once per process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Features {
    /// Multishot accept (Linux 5.19): one SQE, one CQE per new connection.
    pub multishot_accept: bool,
    /// Multishot recv with buffer selection (Linux 6.0): one SQE, one CQE per
    /// arrival of data, each in a buffer taken from the provided-buffer ring.
    pub multishot_recv: bool,
}

/// An io_uring instance plus the bookkeeping that keeps it memory-safe to use.
pub(crate) struct Ring {
    uring: IoUring,
    /// Groups of SQEs that did not fit in the submission queue; they go in at
    /// the next [`Ring::enter`]. A group (SQEs joined by `IOSQE_IO_LINK`) is
    /// never split: a link only holds between SQEs submitted together.
    backlog: VecDeque<Vec<squeue::Entry>>,
    in_flight: usize,
}

impl Ring {
    /// A ring with [`RING_ENTRIES`] slots, or an `Unsupported` error naming why
    /// the kernel refused it.
    ///
    /// `IORING_SETUP_COOP_TASKRUN` (Linux 5.19): when a socket becomes ready, the
    /// kernel finishes our recv or send as *task work* that must run in this
    /// thread's context. By default it interrupts the thread for that (an IPI and a
    /// forced trip through the kernel, even mid-computation); with this flag it
    /// waits until the thread next enters the kernel, which an event loop does
    /// anyway in `io_uring_enter`. Measured here at 100 connections it took the
    /// server from about 10 to about 7 µs of CPU per request, level with the
    /// epoll loop (docs/BENCHMARKS.md). Older kernels refuse the flag; the ring is
    /// then built without it.
    pub(crate) fn new() -> io::Result<Ring> {
        let builder = || {
            let mut b = IoUring::builder();
            b.setup_cqsize(RING_ENTRIES * 2);
            b
        };
        let uring = builder()
            .setup_coop_taskrun()
            .build(RING_ENTRIES)
            .or_else(|_| builder().build(RING_ENTRIES))
            .map_err(setup_error)?;
        Ok(Ring {
            uring,
            backlog: VecDeque::new(),
            in_flight: 0,
        })
    }

    /// Operations submitted whose final completion has not arrived yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Queues `entries` (one SQE, or a linked group) for the next `io_uring_enter`.
    ///
    /// # Safety
    ///
    /// Every buffer, `msghdr`, `Timespec` and fd the entries point at must stay
    /// valid, and must not move or be touched by us, until each entry's final
    /// completion has been reaped by [`Ring::reap`].
    pub(crate) unsafe fn push(&mut self, entries: &[squeue::Entry]) {
        self.in_flight += entries.len();
        if self.backlog.is_empty() {
            if self.try_push(entries) {
                return;
            }
            // The submission queue is full: hand what is queued to the kernel now
            // (one extra io_uring_enter) and try again.
            if self.uring.submit().is_ok() && self.try_push(entries) {
                return;
            }
        }
        // Still no room (or older groups wait): keep it, in order, for the next enter.
        self.backlog.push_back(entries.to_vec());
    }

    fn try_push(&mut self, entries: &[squeue::Entry]) -> bool {
        // SAFETY: the caller of `push` promised the memory stays valid until completion.
        unsafe { self.uring.submission().push_multiple(entries) }.is_ok()
    }

    /// One `io_uring_enter`: submits everything queued since the last one and
    /// sleeps until at least one completion is ready. This is the loop's only
    /// blocking call, and the batching lesson: a loop iteration that started a
    /// hundred recvs and sends still makes one syscall.
    pub(crate) fn enter(&mut self) -> io::Result<()> {
        while let Some(group) = self.backlog.pop_front() {
            if self.try_push(&group) {
                continue;
            }
            self.backlog.push_front(group);
            // The queue is full: hand it to the kernel and go on filling it, unless
            // the kernel took nothing (then the wait below lets us reap first).
            if self.submit_retrying(0)? == 0 {
                break;
            }
        }
        self.submit_retrying(1).map(drop)
    }

    /// Submits, waiting for `want` completions; the number of SQEs submitted.
    fn submit_retrying(&mut self, want: usize) -> io::Result<usize> {
        match self.uring.submit_and_wait(want) {
            Ok(submitted) => Ok(submitted),
            // EINTR: a signal arrived (the shutdown handler's); EBUSY/EAGAIN: the
            // completion queue is full or the kernel is short of memory. In every
            // case: go and reap completions, then come back.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Moves every ready completion into `out`, counting final ones as no longer
    /// in flight.
    pub(crate) fn reap(&mut self, out: &mut Vec<Completion>) {
        for cqe in self.uring.completion() {
            let (op, index) = untoken(cqe.user_data());
            let more = cqueue::more(cqe.flags());
            if !more {
                self.in_flight -= 1;
            }
            out.push(Completion {
                op,
                index,
                result: cqe.result(),
                more,
                buffer: cqueue::buffer_select(cqe.flags()),
            });
        }
    }

    /// Asks the kernel to cancel the operation named `target`. The cancelled
    /// operation completes with `-ECANCELED` (or with its own result, if it
    /// finished first); the cancel request completes separately, as [`Op::Cancel`].
    pub(crate) fn cancel(&mut self, target: u64) {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(token(Op::Cancel, 0));
        // SAFETY: AsyncCancel points at no memory; it names its target by user_data.
        unsafe { self.push(&[entry]) };
    }

    /// Arms a one-shot timer that completes as `op` after `*timespec`.
    ///
    /// # Safety
    ///
    /// `timespec` must stay valid and unmoved until the timer's completion.
    pub(crate) unsafe fn timer(
        &mut self,
        op: Op,
        index: usize,
        timespec: *const io_uring::types::Timespec,
    ) {
        let entry = opcode::Timeout::new(timespec)
            .build()
            .user_data(token(op, index));
        // SAFETY: forwarded to the caller.
        unsafe { self.push(&[entry]) };
    }

    /// Registers `entries` ring entries at `ring_addr` as provided-buffer group
    /// `group` (`IORING_REGISTER_PBUF_RING`, Linux 5.19): one `io_uring_register`
    /// call, once per loop. Older kernels answer `EINVAL`.
    ///
    /// # Safety
    ///
    /// The ring memory, and every buffer its entries will point at, must stay
    /// valid until this ring is dropped (which unregisters the group).
    pub(crate) unsafe fn register_buf_ring(
        &self,
        ring_addr: u64,
        entries: u16,
        group: u16,
    ) -> io::Result<()> {
        // SAFETY: forwarded to the caller.
        unsafe {
            self.uring
                .submitter()
                .register_buf_ring_with_flags(ring_addr, entries, group, 0)
        }
    }

    /// Waits for the shutdown wake fd to become readable, as an operation
    /// completing as [`Op::ShutdownPoll`].
    pub(crate) fn poll_shutdown(&mut self, wake_fd: std::os::fd::RawFd) {
        let entry = opcode::PollAdd::new(io_uring::types::Fd(wake_fd), libc::POLLIN as u32)
            .build()
            .user_data(token(Op::ShutdownPoll, 0));
        // SAFETY: PollAdd points at no memory. The fd belongs to the Context's
        // Shutdown, which the caller borrows for as long as the loop runs; the
        // kernel holds its own reference to the file while the poll is armed.
        unsafe { self.push(&[entry]) };
    }
}

/// What the running kernel offers, or why it cannot run this model; found once.
pub(crate) fn kernel_features() -> io::Result<Features> {
    static FOUND: OnceLock<Result<Features, (io::ErrorKind, String)>> = OnceLock::new();
    FOUND
        .get_or_init(|| probe().map_err(|e| (e.kind(), e.to_string())))
        .clone()
        .map_err(|(kind, message)| io::Error::new(kind, message))
}

/// Operations both loops need, with the kernel that added the last of them.
const REQUIRED: [(u8, &str); 8] = [
    (opcode::Accept::CODE, "accept"),
    (opcode::Recv::CODE, "recv"),
    (opcode::Send::CODE, "send"),
    (opcode::RecvMsg::CODE, "recvmsg"),
    (opcode::SendMsg::CODE, "sendmsg"),
    (opcode::Timeout::CODE, "timeout"),
    (opcode::PollAdd::CODE, "poll_add"),
    (opcode::AsyncCancel::CODE, "async_cancel"),
];

fn probe() -> io::Result<Features> {
    let uring: IoUring = IoUring::new(2).map_err(setup_error)?;
    let mut probe = Probe::new();
    uring.submitter().register_probe(&mut probe).map_err(|e| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!("io_uring is too old here: IORING_REGISTER_PROBE failed: {e} (Linux 5.6 or later is needed)"),
        )
    })?;
    let missing: Vec<&str> = REQUIRED
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "io_uring is too old here: the kernel lacks {} (Linux 5.6 or later is needed)",
                missing.join(", ")
            ),
        ));
    }
    Ok(Features {
        // The probe lists opcodes, not flags; IORING_OP_SOCKET arrived in the same
        // release as multishot accept (5.19), so it stands in for it. The accept
        // path still falls back to single-shot if the kernel answers EINVAL.
        multishot_accept: probe.is_supported(opcode::Socket::CODE),
        // Likewise IORING_OP_SEND_ZC arrived with multishot recv (6.0). Where the
        // kernel still refuses it (EINVAL), or refuses the buffer ring, the TCP
        // loop falls back to a buffer per connection.
        multishot_recv: probe.is_supported(opcode::SendZc::CODE),
    })
}

/// Turns an `io_uring_setup` failure into the error `serve` returns: a refusal
/// (no such syscall, not permitted) becomes `Unsupported` with one clear line.
pub(crate) fn setup_error(err: io::Error) -> io::Error {
    match err.raw_os_error() {
        Some(libc::ENOSYS | libc::EPERM | libc::EACCES) => io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "io_uring is not available here: io_uring_setup failed: {err} (kernel.io_uring_disabled={})",
                io_uring_disabled()
            ),
        ),
        Some(libc::ENOMEM) => io::Error::new(
            err.kind(),
            format!("io_uring_setup failed: {err} (before Linux 5.12 rings count against RLIMIT_MEMLOCK)"),
        ),
        _ => io::Error::new(err.kind(), format!("io_uring_setup failed: {err}")),
    }
}

/// The `kernel.io_uring_disabled` sysctl (Linux 6.6+): 0 allowed, 1 only for the
/// `kernel.io_uring_group`, 2 off for everyone.
fn io_uring_disabled() -> String {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "absent".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for (i, op) in OPS.iter().enumerate() {
            assert_eq!(*op as usize, i, "OPS lists Op in declaration order");
            assert_eq!(untoken(token(*op, 123_456)), (*op, 123_456));
        }
    }

    #[test]
    fn a_refused_setup_is_unsupported_with_one_clear_line() {
        let err = setup_error(io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        let text = err.to_string();
        assert!(
            text.starts_with("io_uring is not available here: io_uring_setup failed: "),
            "{text}"
        );
        assert!(text.contains("kernel.io_uring_disabled="), "{text}");
        assert!(!text.contains('\n'));
    }
}

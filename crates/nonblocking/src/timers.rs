//! The loop's timer queue: what it must do next, and when.
//!
//! An event loop has exactly one place to wait: `epoll_wait()`. So every timer —
//! a reply held back by `sleep` work, an idle client to check, a paused listener to
//! resume — becomes a deadline in one min-heap. Push and pop are O(log n); nothing
//! is ever cancelled: a timer whose connection has gone simply finds nothing to do
//! when it fires (the "lazy deletion" that tokio's and libuv's timers avoid with
//! more elaborate wheels).
//!
//! **How the loop wakes for the earliest deadline: an [`Alarm`].** The obvious
//! way is `epoll_wait`'s timeout, but it is in whole milliseconds, and mio rounds a
//! timeout *up* to the next one (so that a timer never fires early): a 2 ms sleep
//! waited 2–3 ms, its p50 about 2.8 ms at 10 connections, a timer's resolution
//! ranking the model. So the loop keeps a `timerfd` in the poll set beside its
//! sockets, armed (`timerfd_settime`, nanoseconds, no timer slack) to the earliest
//! deadline; it becomes readable when that deadline passes, and `epoll_wait`
//! returns for it like for any socket. It is re-armed only when the earliest
//! deadline changes: two syscalls (arm, and read once it rang) per wake-up by
//! timer, none when no timer is set.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

/// A min-heap of `(deadline, what)`, first-in first-out among equal deadlines.
#[derive(Debug)]
pub(crate) struct Timers<T> {
    heap: BinaryHeap<Entry<T>>,
    /// Tie-breaker that keeps timers with the same deadline in push order.
    pushed: u64,
}

#[derive(Debug)]
struct Entry<T> {
    deadline: Instant,
    seq: u64,
    what: T,
}

impl<T> Timers<T> {
    pub(crate) fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            pushed: 0,
        }
    }

    pub(crate) fn push(&mut self, deadline: Instant, what: T) {
        self.pushed += 1;
        self.heap.push(Entry {
            deadline,
            seq: self.pushed,
            what,
        });
    }

    /// The earliest deadline, if any timer is set.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.deadline)
    }

    /// Takes the earliest timer if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.next_deadline()? <= now {
            self.heap.pop().map(|e| e.what)
        } else {
            None
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// A `timerfd` registered in the loop's poll set, armed to the loop's earliest
/// deadline (see the module's notes).
#[derive(Debug)]
pub(crate) struct Alarm {
    fd: TimerFd,
    /// The deadline it is armed for, until it rings.
    armed: Option<Instant>,
}

impl Alarm {
    /// A `CLOCK_MONOTONIC` timerfd (the clock `Instant` reads), registered under
    /// `token`.
    pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<Alarm> {
        let flags = TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC;
        let fd = TimerFd::new(ClockId::CLOCK_MONOTONIC, flags)?;
        let raw = fd.as_fd().as_raw_fd();
        registry.register(&mut SourceFd(&raw), token, Interest::READABLE)?;
        Ok(Alarm { fd, armed: None })
    }

    /// Sets the alarm for the earliest of `deadlines` and returns `epoll_wait`'s
    /// timeout: none (the alarm wakes the loop), or zero if a deadline has
    /// already passed. An alarm left armed for a deadline no longer wanted only
    /// costs a wake-up that finds nothing due.
    pub(crate) fn wait_until(
        &mut self,
        now: Instant,
        deadlines: impl IntoIterator<Item = Option<Instant>>,
    ) -> io::Result<Option<Duration>> {
        let Some(next) = deadlines.into_iter().flatten().min() else {
            return Ok(None);
        };
        if next <= now {
            return Ok(Some(Duration::ZERO));
        }
        if self.armed != Some(next) {
            // Relative to now: the same clock, so no conversion from `Instant`.
            let after = TimeSpec::from_duration(next - now);
            self.fd
                .set(Expiration::OneShot(after), TimerSetTimeFlags::empty())?;
            self.armed = Some(next);
        }
        Ok(None)
    }

    /// The alarm's token was among the events: read its count, so that it is
    /// quiet until it is armed and rings again.
    pub(crate) fn rang(&mut self) {
        self.armed = None;
        let _ = nix::unistd::read(self.fd.as_fd().as_raw_fd(), &mut [0u8; 8]);
    }
}

// BinaryHeap is a max-heap: order entries so the *earliest* deadline is greatest.
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}

impl<T> Eq for Entry<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_then_push_order() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut timers = Timers::new();
        timers.push(t0 + ms(30), "c");
        timers.push(t0 + ms(10), "a");
        timers.push(t0 + ms(10), "b");
        assert_eq!(timers.pop_due(t0), None);
        assert_eq!(timers.next_deadline(), Some(t0 + ms(10)));
        let due: Vec<_> = std::iter::from_fn(|| timers.pop_due(t0 + ms(30))).collect();
        assert_eq!(due, ["a", "b", "c"]);
        assert!(timers.is_empty());
    }

    /// The alarm wakes `epoll_wait` at the earliest deadline, well within a
    /// millisecond: epoll's own timeout, rounded up to whole milliseconds, would
    /// wake a 1.5 ms wait at 2 ms. (The best of three tries, so that one unlucky
    /// preemption of the test on a busy machine does not fail it.)
    #[test]
    fn the_alarm_rings_at_the_earliest_deadline_well_within_a_millisecond() {
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(4);
        let mut alarm = Alarm::new(poll.registry(), Token(7)).unwrap();
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let t0 = Instant::now();
            let wanted = t0 + Duration::from_micros(1500);
            let later = Some(t0 + Duration::from_secs(60));
            let timeout = alarm.wait_until(t0, [later, Some(wanted), None]).unwrap();
            assert_eq!(timeout, None);
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .unwrap();
            let woke = Instant::now();
            let tokens: Vec<Token> = events.iter().map(|e| e.token()).collect();
            assert_eq!(tokens, [Token(7)]);
            alarm.rang();
            assert!(woke >= wanted, "rang {:?} early", wanted - woke);
            best = best.min(woke - wanted);
            // A deadline already past: no alarm, a zero timeout; none: no timeout.
            let past = alarm.wait_until(woke, [Some(wanted)]).unwrap();
            assert_eq!(past, Some(Duration::ZERO));
            assert_eq!(alarm.wait_until(woke, [None]).unwrap(), None);
        }
        assert!(best < Duration::from_micros(400), "rang {best:?} late");
    }
}

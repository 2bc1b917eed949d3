//! The loop's timer queue: what it must do next, and when.
//!
//! An event loop has exactly one place to wait: `epoll_wait()`. So every timer —
//! a reply held back by `sleep` work, an idle client to check, a paused listener to
//! resume — becomes a deadline in one min-heap, and the loop passes "time until the
//! earliest deadline" as `epoll_wait`'s timeout. Push and pop are O(log n); nothing
//! is ever cancelled: a timer whose connection has gone simply finds nothing to do
//! when it fires (the "lazy deletion" that tokio's and libuv's timers avoid with
//! more elaborate wheels).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

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

/// `epoll_wait`'s timeout: until the earliest of `deadlines`, or forever (`None`)
/// when there is none. (mio rounds it up to whole milliseconds, epoll's unit, so a
/// timer never fires early and the loop never spins on a 0 ms timeout.)
pub(crate) fn wait_until(
    now: Instant,
    deadlines: impl IntoIterator<Item = Option<Instant>>,
) -> Option<Duration> {
    deadlines
        .into_iter()
        .flatten()
        .min()
        .map(|d| d.saturating_duration_since(now))
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

    #[test]
    fn wait_until_takes_the_earliest_deadline() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(wait_until(t0, [None, None]), None);
        assert_eq!(
            wait_until(t0, [Some(t0 + ms(20)), None, Some(t0 + ms(5))]),
            Some(ms(5))
        );
        assert_eq!(wait_until(t0 + ms(9), [Some(t0)]), Some(Duration::ZERO));
    }
}

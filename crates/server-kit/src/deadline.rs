//! The second half of `--idle-timeout`: a request must arrive within it.
//!
//! Silence is caught by a read timeout (or a timer). A slowloris client is never
//! silent: it sends one byte of a request, then another just before the timeout,
//! and never finishes — holding a thread, a process or a worker forever. So every
//! model also gives each *unfinished* request the idle timeout to complete, counted
//! from its first byte. It is checked when bytes arrive, which is exactly when a
//! dribbler shows itself; a client that goes quiet mid-request is caught by the
//! silence rule instead. In raw framing every byte completes a request, so only
//! `lines` framing has unfinished requests to time.

use std::time::{Duration, Instant};

use socklab_protocol::Session;

/// When the connection's unfinished request began.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestDeadline {
    since: Option<Instant>,
}

impl RequestDeadline {
    /// Call after each [`Session::feed`]. True when an unfinished request has been
    /// arriving for longer than `limit`: the client dribbles; close the connection
    /// once the replies already due are sent.
    pub fn expired(&mut self, session: &Session, limit: Option<Duration>, now: Instant) -> bool {
        if session.buffered() == 0 {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(now);
        limit.is_some_and(|limit| now.saturating_duration_since(since) > limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socklab_protocol::{Framing, Limits};

    #[test]
    fn a_line_dribbled_past_the_limit_expires_and_a_finished_one_resets() {
        let limit = Some(Duration::from_millis(100));
        let mut session = Session::new(Framing::Lines, Limits::default());
        let mut deadline = RequestDeadline::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        session.feed(b"ab", &mut out);
        assert!(!deadline.expired(&session, limit, t0));
        session.feed(b"c\n", &mut out);
        assert!(!deadline.expired(&session, limit, t0 + Duration::from_millis(90)));
        session.feed(b"d", &mut out);
        assert!(!deadline.expired(&session, limit, t0 + Duration::from_millis(150)));
        session.feed(b"e", &mut out);
        assert!(deadline.expired(&session, limit, t0 + Duration::from_millis(260)));
    }

    #[test]
    fn no_limit_never_expires() {
        let mut session = Session::new(Framing::Lines, Limits::default());
        let mut deadline = RequestDeadline::default();
        session.feed(b"partial", &mut Vec::new());
        let later = Instant::now() + Duration::from_secs(3600);
        assert!(!deadline.expired(&session, None, Instant::now()));
        assert!(!deadline.expired(&session, None, later));
    }
}

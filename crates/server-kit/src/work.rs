//! Performing per-request work on a blocking thread.
//!
//! An event loop must not call these: `sleep` would stall every client of the loop
//! (it uses a timer instead). For `cpu` work, blocking the loop *is* the lesson.

use std::time::{Duration, Instant};

use socklab_protocol::Work;

/// Does `work` on the calling thread: spins for `cpu`, sleeps for `sleep`.
pub fn perform(work: Work) {
    match work {
        Work::None => {}
        Work::Cpu(d) => spin_for(d),
        Work::Sleep(d) => std::thread::sleep(d),
    }
}

/// Burns CPU for `duration` of wall time (not CPU time: a descheduled spinner
/// still counts the time it was preempted, as a real handler's latency would).
pub fn spin_for(duration: Duration) {
    let start = Instant::now();
    while start.elapsed() < duration {
        std::hint::spin_loop();
    }
}

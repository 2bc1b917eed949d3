//! Stopping a comparison with Ctrl-C or SIGTERM, and keeping what it measured.
//!
//! A terminal sends Ctrl-C's SIGINT to the whole foreground process group. So every
//! process compare starts (servers, their strace or valgrind, sockperf) runs in a
//! process group of its own ([`own_group`]): the signal reaches compare alone, and
//! compare decides what happens to its children, by PID.
//!
//! - **First SIGINT or SIGTERM**: [`requested`] turns true. The running cell stops
//!   within a tenth of a second (the load generator's stop hook), its server is
//!   stopped, the cell is recorded as interrupted, and compare writes results.json,
//!   report.md and the charts for the cells that finished, then exits with 130.
//! - **Second signal**: every child still registered here is killed (SIGKILL) and
//!   compare exits at once with 130. results.json is rewritten after every cell, so
//!   even then it holds every cell that finished.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Exit status after an interrupt, as a shell reports a process ended by SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// PIDs of the processes compare started and has not yet reaped.
static CHILDREN: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Handles SIGINT and SIGTERM from now on, on a thread of their own.
pub fn install() -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if REQUESTED.swap(true, Ordering::SeqCst) {
                    kill_children();
                    std::process::exit(i32::from(EXIT_INTERRUPTED));
                }
                let name = if signal == SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                eprintln!(
                    "socklab compare: {name}: stopping after writing what was measured \
                     (again to quit at once)"
                );
            }
        })?;
    Ok(())
}

/// Whether the run should stop now.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// The flag itself, for the load generator's stop hook.
pub fn flag() -> &'static AtomicBool {
    &REQUESTED
}

/// Makes `command`'s process the leader of a new process group, so a terminal's
/// Ctrl-C does not reach it (compare stops it instead).
pub fn own_group(command: &mut Command) -> &mut Command {
    command.process_group(0)
}

/// A started child, registered for the second signal's kill; unregistered when
/// dropped (after the child has been reaped).
pub struct Registered(i32);

impl Registered {
    pub fn new(pid: i32) -> Registered {
        children().push(pid);
        Registered(pid)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        children().retain(|&p| p != self.0);
    }
}

fn children() -> std::sync::MutexGuard<'static, Vec<i32>> {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

fn kill_children() {
    for &pid in children().iter() {
        // SAFETY: kill(2) on a PID we started and have not reaped (registered
        // until reaped), so it cannot name another process.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

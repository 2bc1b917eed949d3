//! One round of the soak's clients: every kind of client a server meets, for a
//! few seconds, then all of them gone.
//!
//! - **persistent**: 16 closed-loop connections (the load generator) for half
//!   the round;
//! - **churn**: 4 connect-request-close loops (the load generator) for a quarter;
//! - **slow**: 2 clients the whole round, each typing a short line a byte every
//!   20 ms, reading the reply, leaving, and coming back;
//! - **resetting**: 1 client the whole round that sends half a line and resets the
//!   connection (`SO_LINGER` 0), 50 times a second.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socklab_loadgen::{Framing, Hooks, LoadConfig, Mode};

use crate::compare::interrupt;

const PERSISTENT: usize = 16;
const CHURN: usize = 4;
const SLOW: usize = 2;
/// Bytes a slow client types per line (and the newline).
const SLOW_LINE: &[u8] = b"slowpoke\n";
const SLOW_BYTE_EVERY: Duration = Duration::from_millis(20);
const RESET_EVERY: Duration = Duration::from_millis(20);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What one round's clients did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Round {
    pub connections: u64,
    pub requests: u64,
}

/// Runs one round of `length` against `addr`; `tick` is called about ten times a
/// second meanwhile (to sample the server while it is busy).
pub fn round(addr: SocketAddr, length: Duration, tick: impl FnMut()) -> Round {
    let stop = Arc::new(AtomicBool::new(false));
    let mut side: Vec<JoinHandle<Round>> = (0..SLOW)
        .map(|_| spawn(Arc::clone(&stop), move |stop| slow(addr, stop)))
        .collect();
    side.push(spawn(Arc::clone(&stop), move |stop| resetting(addr, stop)));
    let tick = RefCell::new(tick);
    let on_progress = |_| (tick.borrow_mut())();
    let hooks = Hooks {
        progress: Some(&on_progress),
        stop: Some(interrupt::flag()),
        ..Default::default()
    };
    let base = LoadConfig {
        target: addr,
        framing: Framing::Lines,
        size: 32,
        warmup: Duration::ZERO,
        ..LoadConfig::default()
    };
    let mut total = Round::default();
    let runs = [
        LoadConfig {
            conns: PERSISTENT,
            duration: length / 2,
            ramp_limit: length / 4,
            ..base.clone()
        },
        LoadConfig {
            mode: Mode::Churn,
            conns: CHURN,
            duration: length / 4,
            ..base
        },
    ];
    for config in runs {
        if let Ok(r) = socklab_loadgen::run(&config, hooks) {
            total.connections += r.connections.counts.attempts;
            total.requests += r.counts.ok;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for handle in side {
        let r = handle.join().unwrap_or_default();
        total.connections += r.connections;
        total.requests += r.requests;
    }
    total
}

fn spawn(
    stop: Arc<AtomicBool>,
    body: impl FnOnce(&AtomicBool) -> Round + Send + 'static,
) -> JoinHandle<Round> {
    std::thread::spawn(move || body(&stop))
}

fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).ok()?;
    s.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    s.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
    Some(s)
}

/// Types a line a byte at a time, reads the reply, leaves; again until stopped.
fn slow(addr: SocketAddr, stop: &AtomicBool) -> Round {
    let mut done = Round::default();
    while !stop.load(Ordering::Relaxed) {
        let Some(mut s) = connect(addr) else {
            std::thread::sleep(SLOW_BYTE_EVERY);
            continue;
        };
        done.connections += 1;
        let mut typed = true;
        for b in SLOW_LINE {
            if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                typed = false;
                break;
            }
            std::thread::sleep(SLOW_BYTE_EVERY);
        }
        let mut reply = [0u8; SLOW_LINE.len()];
        if typed && s.read_exact(&mut reply).is_ok() {
            done.requests += 1;
        }
    }
    done
}

/// Sends half a line and resets the connection; again until stopped.
fn resetting(addr: SocketAddr, stop: &AtomicBool) -> Round {
    let mut done = Round::default();
    while !stop.load(Ordering::Relaxed) {
        if let Some(mut s) = connect(addr) {
            done.connections += 1;
            let _ = s.write_all(b"half a requ");
            // SO_LINGER {on, 0}: close() sends a RST, mid-request.
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        }
        std::thread::sleep(RESET_EVERY);
    }
    done
}

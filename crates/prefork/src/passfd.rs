//! [`crate::PreforkMode::PassFd`] (Stevens' serv05): the parent accepts and hands
//! each connection to an idle worker over a Unix socket.
//!
//! Each worker has a socketpair to the parent, its *channel*. A descriptor is
//! passed with `sendmsg()` carrying an `SCM_RIGHTS` control message: the kernel
//! installs a new descriptor for the same socket in the receiver's table (the
//! number may differ; it is the open file that travels). With it goes one byte
//! of ordinary data, since a stream socket cannot carry control data alone.
//! When a worker is done with its client it writes one byte back: "idle again".
//! The parent hands a client only to an idle worker, and when none is idle it
//! stops watching the listener: new clients wait in the kernel's backlog.

use std::io::{self, IoSlice, IoSliceMut, Read};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, send, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use socklab_server_kit::process::REAP_INTERVAL;
use socklab_server_kit::{accept_next, Client, Context, Next};

use socklab_server_kit::supervisor::Supervisor;

use crate::serve_one;

/// The byte that travels with a passed descriptor, and the "idle again" reply.
const TOKEN: [u8; 1] = [1];

/// The parent's end of one worker's channel.
struct Channel {
    stream: UnixStream,
    idle: bool,
}

/// The parent's loop: accept while some worker is idle, pass, watch the channels.
pub(crate) fn serve(listener: &TcpListener, workers: &mut Supervisor) -> io::Result<()> {
    let cx = workers.cx();
    // Only the parent accepts, and only after poll() says a connection is there.
    listener.set_nonblocking(true)?;
    let slots = workers.counts().0.len();
    let mut channels: Vec<Option<Channel>> = (0..slots).map(|_| None).collect();
    let mut last_reap: Option<std::time::Instant> = None;
    while !cx.shutdown.is_triggered() {
        // One waitpid() per worker: every REAP_INTERVAL, not on every connection,
        // so the cost measured for fd passing is the passing, not the bookkeeping.
        if last_reap.is_none_or(|t| t.elapsed() >= REAP_INTERVAL) {
            workers.reap();
            last_reap = Some(std::time::Instant::now());
        }
        for slot in workers.empty_slots() {
            channels[slot] = None;
            match start(slot, listener, &channels, workers) {
                Ok(channel) => channels[slot] = Some(channel),
                Err(e) => eprintln!("socklab prefork: cannot start worker {slot}: {e}; retrying"),
            }
        }
        let accepting = can_accept(&channels, cx);
        let (listener_ready, ready) = wait(listener, accepting, &channels, cx)?;
        for slot in ready {
            read_idle(&mut channels[slot]);
        }
        if listener_ready {
            accept_and_pass(listener, &mut channels, cx);
        }
    }
    // Closing the channels is the first stop signal: an idle worker's recvmsg()
    // returns 0. The supervisor's SIGTERM follows.
    drop(channels);
    Ok(())
}

/// Forks the worker for `slot` with a fresh channel.
fn start(
    slot: usize,
    listener: &TcpListener,
    channels: &[Option<Channel>],
    workers: &mut Supervisor,
) -> io::Result<Channel> {
    let (parent_end, child_end) = UnixStream::pair()?;
    // What the worker must close: a worker that kept the listener, or another
    // worker's channel, would keep those sockets open after the parent closes
    // them (a socket closes when its *last* descriptor does).
    let inherited: Vec<RawFd> = channels
        .iter()
        .flatten()
        .map(|c| c.stream.as_raw_fd())
        .chain([listener.as_raw_fd(), parent_end.as_raw_fd()])
        .collect();
    workers.start(slot, |cx| {
        for fd in inherited {
            // SAFETY: these are the parent's descriptors; this process never
            // returns to the code that owns them (it `_exit`s), so closing them
            // here cannot cause a double close.
            unsafe { libc::close(fd) };
        }
        receive_and_serve(&child_end, cx)
    })?;
    parent_end.set_nonblocking(true)?;
    Ok(Channel {
        stream: parent_end,
        idle: true,
    })
}

/// Waits for the shutdown descriptor, the listener (if `accepting`) and every
/// channel. Returns whether the listener is ready and which channels are.
fn wait(
    listener: &TcpListener,
    accepting: bool,
    channels: &[Option<Channel>],
    cx: &Context,
) -> io::Result<(bool, Vec<usize>)> {
    let mut fds = vec![PollFd::new(cx.shutdown.wake_fd(), PollFlags::POLLIN)];
    if accepting {
        fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
    }
    let slots: Vec<usize> = (0..channels.len())
        .filter(|&s| channels[s].is_some())
        .collect();
    for channel in channels.iter().flatten() {
        fds.push(PollFd::new(channel.stream.as_fd(), PollFlags::POLLIN));
    }
    match poll(
        &mut fds,
        PollTimeout::from(REAP_INTERVAL.as_millis() as u16),
    ) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Ok((false, Vec::new())),
        Err(e) => return Err(e.into()),
    }
    let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
    let offset = 1 + usize::from(accepting);
    let listener_ready = accepting && ready(&fds[1]);
    let channels_ready = slots
        .iter()
        .zip(&fds[offset..])
        .filter(|(_, fd)| ready(fd))
        .map(|(&slot, _)| slot)
        .collect();
    Ok((listener_ready, channels_ready))
}

/// A worker wrote "idle again", or its channel closed (it died: the supervisor
/// will reap it and start a replacement).
fn read_idle(channel: &mut Option<Channel>) {
    let Some(open) = channel else { return };
    let mut bytes = [0u8; 16];
    match (&open.stream).read(&mut bytes) {
        Ok(0) => *channel = None,
        Ok(_) => open.idle = true,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(_) => *channel = None,
    }
}

/// True if some worker is idle and the connection cap leaves room for a client.
fn can_accept(channels: &[Option<Channel>], cx: &Context) -> bool {
    let busy = channels.iter().flatten().filter(|c| !c.idle).count();
    channels.iter().flatten().any(|c| c.idle) && busy < cx.config.max_conns
}

/// Accepts as long as a worker is idle to take the connection, passing each on.
fn accept_and_pass(listener: &TcpListener, channels: &mut [Option<Channel>], cx: &Context) {
    while can_accept(channels, cx) {
        match accept_next(listener, &cx.shutdown) {
            Next::Connection(stream, _peer) => pass(stream, channels),
            Next::Retry | Next::Shutdown => return,
        }
    }
}

/// Gives `stream` to the first idle worker that takes it. The parent's copy is
/// closed on return; the worker's stays open.
fn pass(stream: TcpStream, channels: &mut [Option<Channel>]) {
    for channel in channels.iter_mut() {
        let Some(open) = channel else { continue };
        if !open.idle {
            continue;
        }
        match send_fd(&open.stream, stream.as_raw_fd()) {
            Ok(()) => {
                open.idle = false;
                return;
            }
            // The worker died since it said it was idle: try the next one.
            Err(_) => *channel = None,
        }
    }
    eprintln!("socklab prefork: no worker could take a client; it is closed");
}

/// `sendmsg()` one byte with `fd` attached as `SCM_RIGHTS`.
fn send_fd(channel: &UnixStream, fd: RawFd) -> io::Result<()> {
    let fds = [fd];
    let rights = [ControlMessage::ScmRights(&fds)];
    let data = [IoSlice::new(&TOKEN)];
    // MSG_NOSIGNAL: a dead worker is EPIPE here, not a SIGPIPE for the parent.
    sendmsg::<()>(
        channel.as_raw_fd(),
        &data,
        &rights,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
}

/// `recvmsg()` one byte and the descriptor attached to it. `Ok(None)`: the parent
/// closed the channel.
fn recv_fd(channel: &UnixStream) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut data = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    // MSG_CMSG_CLOEXEC: the received descriptor is close-on-exec, like every
    // descriptor std and socket2 create.
    let msg = recvmsg::<()>(
        channel.as_raw_fd(),
        &mut data,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    if msg.bytes == 0 {
        return Ok(None);
    }
    let mut received = None;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: the kernel just installed `fd` in our table; we own it.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                received.get_or_insert(owned);
            }
        }
    }
    received
        .map(Some)
        .ok_or_else(|| io::Error::other("a message from the parent carried no descriptor"))
}

/// The worker's loop: receive a client, serve it, say "idle again".
fn receive_and_serve(channel: &UnixStream, cx: &Context) -> io::Result<()> {
    while !cx.shutdown.is_triggered() {
        let fd = match recv_fd(channel) {
            Ok(Some(fd)) => fd,
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let client = Client {
            stream: TcpStream::from(fd),
            open: cx.counters.open(),
        };
        serve_one(client, cx);
        // If the parent has gone away this fails (EPIPE); the next recvmsg() ends.
        let _ = send(channel.as_raw_fd(), &TOKEN, MsgFlags::MSG_NOSIGNAL);
    }
    Ok(())
}

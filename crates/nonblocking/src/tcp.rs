//! One readiness loop serving TCP: accept, read, feed the protocol, write — never
//! waiting on any one socket.
//!
//! Every socket is nonblocking and registered with the loop's epoll instance
//! (mio's `Poll`). The loop sleeps in `epoll_wait()` until some socket is ready
//! or the earliest timer is due, then does, for each ready socket, whatever that
//! socket allows *right now* and goes back to sleep. Where a blocking driver
//! keeps its place in a thread's stack, here each connection's place is kept in a
//! [`Connection`] struct: the state machine the programmer writes by hand.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::Shutdown as Direction;
use std::os::fd::AsRawFd;
use std::time::Instant;

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use socklab_protocol::{Session, Work};
use socklab_server_kit::accept::RESOURCE_BACKOFF;
use socklab_server_kit::{log_client_error, work, Context, OpenConnection};
use socklab_server_kit::{MAX_PENDING_OUTPUT, READ_BUF};

use crate::timers::{wait_until, Timers};
use crate::{EVENTS_PER_WAIT, MODEL, SHUTDOWN};

/// The listening socket's token.
const LISTENER: Token = Token(0);
/// Client tokens count up from here and are never reused, so an event or timer
/// for a connection that has since closed finds nothing and does nothing.
const FIRST_CLIENT: usize = 2;

/// What a timer is for.
#[derive(Debug, Clone, Copy)]
enum Due {
    /// A reply held back by `sleep` work may be sent.
    Reply(Token),
    /// Check whether this client has been silent for the idle timeout.
    Idle(Token),
    /// The accept back-off after EMFILE and the like is over.
    Listen,
}

/// Whether the listener is registered, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listening {
    Yes,
    /// This loop serves its share of `max_conns`: resumes when a client leaves.
    Full,
    /// accept() failed for lack of descriptors or memory: resumes on a timer.
    BackingOff,
    /// Shutting down: the listener is closed.
    Closed,
}

/// Runs one loop until shutdown and the grace period are over. `cap` is this
/// loop's share of `max_conns`.
pub(crate) fn run(listener: std::net::TcpListener, cx: &Context, cap: usize) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut server = Server {
        cx,
        poll: Poll::new()?,
        listener: Some(TcpListener::from_std(listener)),
        listening: Listening::Closed,
        cap,
        conns: HashMap::new(),
        next_token: FIRST_CLIENT,
        timers: Timers::new(),
        read_buf: vec![0; READ_BUF],
        stop_by: None,
    };
    server.start()?;
    server.run()
}

/// One loop's state: everything a blocking model keeps in its threads' stacks.
struct Server<'a> {
    cx: &'a Context,
    poll: Poll,
    listener: Option<TcpListener>,
    listening: Listening,
    cap: usize,
    conns: HashMap<Token, Connection>,
    next_token: usize,
    timers: Timers<Due>,
    /// One read buffer for the whole loop: a connection holds no buffer while it
    /// waits, only the bytes it really has pending.
    read_buf: Vec<u8>,
    /// When the grace period ends, once shutdown has begun.
    stop_by: Option<Instant>,
}

impl Server<'_> {
    /// `epoll_ctl(EPOLL_CTL_ADD)` for the listener and the shutdown descriptor.
    fn start(&mut self) -> io::Result<()> {
        let wake = self.cx.shutdown.wake_fd().as_raw_fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&wake), SHUTDOWN, Interest::READABLE)?;
        self.register_listener()?;
        if self.cx.shutdown.is_triggered() {
            self.begin_shutdown();
        }
        Ok(())
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        loop {
            let now = Instant::now();
            if let Some(stop_by) = self.stop_by {
                if self.conns.is_empty() || now >= stop_by {
                    break;
                }
            }
            let timeout = wait_until(now, [self.timers.next_deadline(), self.stop_by]);
            // The one place this thread waits: epoll_wait().
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    SHUTDOWN => self.begin_shutdown(),
                    token => {
                        if let Some(conn) = self.conns.get_mut(&token) {
                            // Sticky: see Connection::peer_closed.
                            conn.peer_closed |= event.is_read_closed() || event.is_error();
                            self.drive(token);
                        }
                    }
                }
            }
            self.fire_timers(Instant::now());
        }
        // Grace is over (or nobody was left): whoever remains is disconnected
        // (and counted closed, by its guard).
        self.conns.clear();
        Ok(())
    }

    /// Accepts until `WouldBlock`: with edge-triggered epoll, one readiness event
    /// may stand for many queued connections, and no new event comes for those.
    fn accept_all(&mut self) {
        while self.listening == Listening::Yes {
            if self.conns.len() >= self.cap {
                self.stop_accepting(Listening::Full);
                return;
            }
            let Some(listener) = &self.listener else {
                return;
            };
            // accept4(SOCK_NONBLOCK | SOCK_CLOEXEC): the new socket is nonblocking
            // from birth, no fcntl() needed.
            match listener.accept() {
                Ok((stream, _peer)) => self.open(stream),
                // No more connections queued: wait for the next readiness event.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // A client that reset before we accepted it; try the next.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                // EMFILE/ENFILE/ENOMEM, or anything unexpected. The pending connection
                // stays queued, so the listener stays readable: retrying now would spin
                // at 100 % CPU. Stop polling the listener for RESOURCE_BACKOFF instead.
                // (The classic alternative: keep a spare descriptor open, and on EMFILE
                // close it, accept and close the client, reopen it — the client is told
                // instead of left waiting.)
                Err(e) => {
                    eprintln!(
                        "socklab {MODEL}: accept: {e}; pausing accept for {RESOURCE_BACKOFF:?}"
                    );
                    self.stop_accepting(Listening::BackingOff);
                    self.timers
                        .push(Instant::now() + RESOURCE_BACKOFF, Due::Listen);
                    return;
                }
            }
        }
    }

    /// Takes a newly accepted client into the loop.
    fn open(&mut self, mut stream: TcpStream) {
        // The model's share of `prepare_stream`: TCP_NODELAY. Its SO_RCVTIMEO and
        // SO_SNDTIMEO mean nothing to a nonblocking socket (nothing ever blocks);
        // the idle timer below does their job.
        if let Err(e) = stream.set_nodelay(true) {
            log_client_error(MODEL, &e);
            return;
        }
        let token = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            log_client_error(MODEL, &e);
            return;
        }
        let conn = Connection::new(stream, self.cx);
        if let Some(idle) = self.cx.config.idle_timeout {
            self.timers.push(conn.last_active + idle, Due::Idle(token));
        }
        self.conns.insert(token, conn);
    }

    /// Lets a connection do everything its socket allows now, then closes it if it
    /// is finished or updates what the loop waits for on its behalf.
    fn drive(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let progress = conn.make_progress(self.cx, &mut self.read_buf, &mut self.timers, token);
        let result = progress.and_then(|done| {
            if !done {
                conn.update_interest(self.poll.registry(), token)?;
            }
            Ok(done)
        });
        match result {
            Ok(false) => {}
            Ok(true) => self.close(token),
            Err(e) => {
                log_client_error(MODEL, &e);
                self.close(token);
            }
        }
    }

    fn close(&mut self, token: Token) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        // Closing the descriptor would remove it from the epoll set anyway; mio asks
        // for an explicit deregister.
        let _ = self.poll.registry().deregister(&mut conn.stream);
        if conn.session.is_closing() {
            // Bad input, answered: send FIN now, as the blocking driver does.
            let _ = conn.stream.shutdown(Direction::Write);
        }
        drop(conn); // closes the socket; its guard counts it closed
        if self.listening == Listening::Full {
            self.resume_accepting();
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(due) = self.timers.pop_due(now) {
            match due {
                Due::Reply(token) => {
                    if let Some(conn) = self.conns.get_mut(&token) {
                        conn.release_held_reply();
                        // Sends it, and reads what the client sent meanwhile.
                        self.drive(token);
                    }
                }
                Due::Idle(token) => self.check_idle(token, now),
                Due::Listen => {
                    if self.listening == Listening::BackingOff {
                        self.resume_accepting();
                    }
                }
            }
        }
    }

    /// One idle timer per connection, re-armed lazily: rather than move the timer
    /// on every read (a heap operation per request), check when it fires and set a
    /// new one for `last_active + idle` if the client spoke meanwhile.
    fn check_idle(&mut self, token: Token, now: Instant) {
        let (Some(idle), Some(conn)) = (self.cx.config.idle_timeout, self.conns.get(&token)) else {
            return;
        };
        let quiet_until = conn.last_active + idle;
        if conn.held.is_some() {
            // The client is not idle: it is waiting for us (sleep work).
            self.timers.push(now + idle, Due::Idle(token));
        } else if now >= quiet_until {
            self.close(token);
        } else {
            self.timers.push(quiet_until, Due::Idle(token));
        }
    }

    /// Accepts again after a pause, if there is room. Re-registering is
    /// `EPOLL_CTL_ADD`, and epoll reports at once if connections are already
    /// queued, so none is forgotten while we were paused.
    fn resume_accepting(&mut self) {
        if self.stop_by.is_some() || self.conns.len() >= self.cap {
            return;
        }
        if let Err(e) = self.register_listener() {
            eprintln!("socklab {MODEL}: cannot register the listener: {e}; retrying in {RESOURCE_BACKOFF:?}");
            self.listening = Listening::BackingOff;
            self.timers
                .push(Instant::now() + RESOURCE_BACKOFF, Due::Listen);
        }
    }

    fn register_listener(&mut self) -> io::Result<()> {
        if let Some(listener) = &mut self.listener {
            self.poll
                .registry()
                .register(listener, LISTENER, Interest::READABLE)?;
            self.listening = Listening::Yes;
        }
        Ok(())
    }

    /// Deregisters the listener (`EPOLL_CTL_DEL`): new clients wait in the backlog.
    fn stop_accepting(&mut self, why: Listening) {
        if let (Listening::Yes, Some(listener)) = (self.listening, &mut self.listener) {
            let _ = self.poll.registry().deregister(listener);
        }
        self.listening = why;
    }

    /// Stops accepting at once and closes the listener (new clients are refused,
    /// and with SO_REUSEPORT the kernel stops sending them to this loop); the
    /// connections in flight get the grace period.
    fn begin_shutdown(&mut self) {
        if self.stop_by.is_some() {
            return;
        }
        self.stop_by = Some(Instant::now() + self.cx.config.grace);
        self.stop_accepting(Listening::Closed);
        self.listener = None;
        let wake = self.cx.shutdown.wake_fd().as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&wake));
    }
}

/// One client's state between readiness events.
struct Connection {
    stream: TcpStream,
    session: Session,
    /// Reply bytes not yet written: `write()` may take only part of them.
    output: Vec<u8>,
    /// A reply held back until its `sleep` timer fires. While it waits nothing more
    /// is read from this client: replies stay in order and memory stays bounded.
    held: Option<Vec<u8>>,
    /// The client shut its write side (we read EOF).
    eof: bool,
    /// epoll said the peer closed or reset. Sticky, because edge-triggered epoll
    /// says it once: after a short read (see `make_progress`) we read again only if
    /// this is set, since an EOF queued behind the data would bring no new event.
    peer_closed: bool,
    /// Last time bytes moved either way, for the idle timeout.
    last_active: Instant,
    /// What this socket is registered for now, to skip `epoll_ctl` when unchanged.
    interest: Interest,
    /// Counts the connection open until this struct is dropped.
    _open: OpenConnection,
}

impl Connection {
    fn new(stream: TcpStream, cx: &Context) -> Self {
        Connection {
            stream,
            session: cx.config.session(),
            output: Vec::new(),
            held: None,
            eof: false,
            peer_closed: false,
            last_active: Instant::now(),
            interest: Interest::READABLE,
            _open: cx.counters.open(),
        }
    }

    /// Writes what it can, reads what it may, until the socket would block or
    /// this client must wait. Returns true when the connection is finished.
    fn make_progress(
        &mut self,
        cx: &Context,
        buf: &mut [u8],
        timers: &mut Timers<Due>,
        token: Token,
    ) -> io::Result<bool> {
        loop {
            self.flush(cx)?;
            if !self.wants_input() {
                break;
            }
            match self.stream.read(buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.handle_input(&buf[..n], cx, timers, token);
                    // A short read emptied the socket's receive queue: any byte that
                    // arrives later brings a new edge. Skipping the read that would
                    // only say WouldBlock saves a syscall per request.
                    if n < buf.len() && !self.peer_closed {
                        self.flush(cx)?;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(self.is_finished())
    }

    /// Read more only if nothing forbids it: the client's EOF, bad input being
    /// answered, a reply waiting on a timer, or too many unsent reply bytes
    /// (backpressure: the client is not reading, so we stop reading it).
    fn wants_input(&self) -> bool {
        !self.eof
            && !self.session.is_closing()
            && self.held.is_none()
            && self.output.len() < MAX_PENDING_OUTPUT
    }

    fn is_finished(&self) -> bool {
        (self.eof || self.session.is_closing()) && self.held.is_none() && self.output.is_empty()
    }

    fn handle_input(&mut self, input: &[u8], cx: &Context, timers: &mut Timers<Due>, token: Token) {
        cx.config.maybe_crash(input);
        self.last_active = Instant::now();
        let start = self.output.len();
        // Bad input (a line too long, a request dribbled past its timeout) makes
        // the session close: nothing more is read, the replies due go out, and
        // `close` sends FIN.
        let fed = self
            .session
            .feed_at(input, self.last_active, &mut self.output);
        // bytes_out is counted in `flush`, as bytes reach the socket, so
        // bytes_in - bytes_out is what the server holds.
        cx.counters.served(fed.requests, input.len(), 0);
        match cx.config.work.times(fed.requests) {
            Work::None => {}
            // Inline, on the loop's only thread: every other client waits meanwhile.
            // That stall is the lesson of this model.
            Work::Cpu(d) => work::spin_for(d),
            // Never sleep here: hold the reply and let a timer release it.
            Work::Sleep(d) if d.is_zero() => {}
            Work::Sleep(d) => {
                self.held = Some(self.output.split_off(start));
                timers.push(self.last_active + d, Due::Reply(token));
            }
        }
    }

    fn release_held_reply(&mut self) {
        if let Some(reply) = self.held.take() {
            self.output.extend_from_slice(&reply);
        }
    }

    /// Writes pending output until done or the socket buffer is full, keeping the
    /// unsent tail (a partial write is normal on a nonblocking socket).
    fn flush(&mut self, cx: &Context) -> io::Result<()> {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.output.drain(..n);
                    self.last_active = Instant::now();
                    cx.counters.served(0, 0, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Asks for WRITABLE only while output is pending (`epoll_ctl(EPOLL_CTL_MOD)`):
    /// a socket with room in its send buffer is almost always writable, so asking
    /// for it otherwise would wake the loop for nothing.
    ///
    /// READABLE stays on even while this client is paused: with edge-triggered
    /// epoll an ignored edge costs one wake-up, and the loop reads again on its own
    /// (the timer or the drained output calls `make_progress`) when it resumes.
    fn update_interest(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let wanted = if self.output.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if wanted != self.interest {
            registry.reregister(&mut self.stream, token, wanted)?;
            self.interest = wanted;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a waiting client costs this loop besides its socket: a struct of a
    /// hundred-odd bytes (its buffers are empty while it waits), not a stack.
    #[test]
    fn connection_state_is_small() {
        let size = std::mem::size_of::<(Token, Connection)>();
        assert!(size <= 192, "{size} bytes");
    }
}

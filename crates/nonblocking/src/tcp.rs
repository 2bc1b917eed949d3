//! One readiness loop serving TCP: accept, read, feed the protocol, write — never
//! waiting on any one socket.
//!
//! Every socket is nonblocking and registered with the loop's epoll instance
//! (mio's `Poll`). The loop sleeps in `epoll_wait()` until some socket is ready
//! or the earliest timer is due, then does, for each ready socket, whatever that
//! socket allows *right now* and goes back to sleep. Where a blocking driver
//! keeps its place in a thread's stack, here each connection's place is kept in a
//! [`Connection`] struct: the state machine the programmer writes by hand.
//!
//! The connections live in a slab (`socklab_server_kit::slab`, the same table as
//! the completion loop's): a connection's token is its index there, offset past
//! the loop's own tokens, so an event finds its connection by indexing a `Vec`.

use std::io::{self, Read, Write};
use std::net::Shutdown as Direction;
use std::os::fd::AsRawFd;
use std::time::Instant;

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use socklab_protocol::{Session, Work};
use socklab_server_kit::accept::RESOURCE_BACKOFF;
use socklab_server_kit::slab::Slab;
use socklab_server_kit::{log_client_error, work, Context, OpenConnection};
use socklab_server_kit::{MAX_PENDING_OUTPUT, READ_BUF};

use crate::timers::{Alarm, Timers};
use crate::{ALARM, EVENTS_PER_WAIT, MODEL, SHUTDOWN};

/// The listening socket's token.
const LISTENER: Token = Token(0);
/// Client tokens start here: token `FIRST_CLIENT + i` is the connection at index
/// `i` of the slab.
const FIRST_CLIENT: usize = 3;

/// A connection as a timer remembers it: its slab index, and its serial number,
/// because an index is reused once its connection closes. A timer that outlives
/// its connection finds another serial there (or nothing) and does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    index: usize,
    serial: u64,
}

/// What a timer is for.
#[derive(Debug, Clone, Copy)]
enum Due {
    /// A reply held back by `sleep` work may be sent.
    Reply(Key),
    /// Check whether this client has been silent for the idle timeout.
    Idle(Key),
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
    let poll = Poll::new()?;
    let alarm = Alarm::new(poll.registry(), ALARM)?;
    let mut tcp_loop = TcpLoop {
        cx,
        poll,
        alarm,
        listener: Some(TcpListener::from_std(listener)),
        listening: Listening::Closed,
        cap,
        connections: Slab::default(),
        serials: 0,
        timers: Timers::new(),
        read_buf: vec![0; READ_BUF],
        stop_by: None,
    };
    tcp_loop.start()?;
    tcp_loop.run()
}

/// One loop's state: everything a blocking model keeps in its threads' stacks.
struct TcpLoop<'a> {
    cx: &'a Context,
    poll: Poll,
    /// Wakes `epoll_wait` at the earliest timer's deadline.
    alarm: Alarm,
    listener: Option<TcpListener>,
    listening: Listening,
    cap: usize,
    connections: Slab<Connection>,
    /// Connections opened so far: the next one's serial number.
    serials: u64,
    timers: Timers<Due>,
    /// One read buffer for the whole loop: a connection holds no buffer while it
    /// waits, only the bytes it really has pending.
    read_buf: Vec<u8>,
    /// When the grace period ends, once shutdown has begun.
    stop_by: Option<Instant>,
}

impl TcpLoop<'_> {
    /// `epoll_ctl(EPOLL_CTL_ADD)` for the listener and the shutdown descriptor.
    fn start(&mut self) -> io::Result<()> {
        let wake = self.cx.shutdown.wake_fd().as_raw_fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&wake), SHUTDOWN, Interest::READABLE)?;
        self.register_listener()?;
        if self.cx.shutdown.is_triggered() {
            self.begin_shutdown(Instant::now());
        }
        Ok(())
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        loop {
            if self.stop_by.is_some() && self.connections.is_empty() {
                break;
            }
            let next = [self.timers.next_deadline(), self.stop_by];
            // The clock is read here only if something is timed.
            let timeout = match next.iter().flatten().next() {
                None => None,
                Some(_) => {
                    let now = Instant::now();
                    if self.stop_by.is_some_and(|stop_by| now >= stop_by) {
                        break;
                    }
                    self.alarm.wait_until(now, next)?
                }
            };
            // The one place this thread waits: epoll_wait().
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            // One clock read per wake-up, for every event it brought.
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(now),
                    SHUTDOWN => self.begin_shutdown(now),
                    ALARM => self.alarm.rang(),
                    Token(token) => {
                        let index = token - FIRST_CLIENT;
                        if let Some(connection) = self.connections.get_mut(index) {
                            // Sticky: see Connection::peer_closed.
                            connection.peer_closed |= event.is_read_closed() || event.is_error();
                            self.advance(index, now);
                        }
                    }
                }
            }
            self.fire_timers(now);
        }
        // Grace is over (or nobody was left): whoever remains is disconnected
        // (and counted closed, by its guard).
        self.connections.clear();
        Ok(())
    }

    /// Accepts until `WouldBlock`: with edge-triggered epoll, one readiness event
    /// may stand for many queued connections, and no new event comes for those.
    fn accept_all(&mut self, now: Instant) {
        while self.listening == Listening::Yes {
            if self.connections.len() >= self.cap {
                self.stop_accepting(Listening::Full);
                return;
            }
            let Some(listener) = &self.listener else {
                return;
            };
            // accept4(SOCK_NONBLOCK | SOCK_CLOEXEC): the new socket is nonblocking
            // from birth, no fcntl() needed.
            match listener.accept() {
                Ok((stream, _peer)) => self.open(stream, now),
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
                    socklab_server_kit::exhaustion::say_once(
                        MODEL,
                        "accept",
                        &e,
                        &format!("pausing accept for {RESOURCE_BACKOFF:?} and retrying"),
                    );
                    self.stop_accepting(Listening::BackingOff);
                    self.timers.push(now + RESOURCE_BACKOFF, Due::Listen);
                    return;
                }
            }
        }
    }

    /// Takes a newly accepted client into the loop.
    fn open(&mut self, mut stream: TcpStream, now: Instant) {
        // The event loops set only TCP_NODELAY of `prepare_stream`'s options. Its
        // SO_RCVTIMEO and SO_SNDTIMEO time out a *blocked* call, and nothing here
        // ever blocks; the idle timer below does their job.
        if let Err(e) = stream.set_nodelay(true) {
            log_client_error(MODEL, &e);
            return;
        }
        let index = self.connections.vacant_index();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(FIRST_CLIENT + index),
            Interest::READABLE,
        ) {
            log_client_error(MODEL, &e);
            return;
        }
        self.serials += 1;
        let key = Key {
            index,
            serial: self.serials,
        };
        if let Some(idle) = self.cx.config.idle_timeout {
            self.timers.push(now + idle, Due::Idle(key));
        }
        let inserted = self
            .connections
            .insert(Connection::new(stream, key.serial, now, self.cx));
        debug_assert_eq!(inserted, index);
    }

    /// The connection at `key.index`, if it is still the one `key` names.
    fn connection(&mut self, key: Key) -> Option<&mut Connection> {
        self.connections
            .get_mut(key.index)
            .filter(|connection| connection.serial == key.serial)
    }

    /// Lets a connection do everything its socket allows now, then closes it if it
    /// is finished or updates what the loop waits for on its behalf.
    fn advance(&mut self, index: usize, now: Instant) {
        let Some(connection) = self.connections.get_mut(index) else {
            return;
        };
        let key = Key {
            index,
            serial: connection.serial,
        };
        let progress = connection.advance(self.cx, &mut self.read_buf, &mut self.timers, key, now);
        let result = progress.and_then(|done| {
            if !done {
                connection.update_interest(self.poll.registry(), Token(FIRST_CLIENT + index))?;
            }
            Ok(done)
        });
        match result {
            Ok(false) => {}
            Ok(true) => self.close(index),
            Err(e) => {
                log_client_error(MODEL, &e);
                self.close(index);
            }
        }
    }

    fn close(&mut self, index: usize) {
        let Some(mut connection) = self.connections.remove(index) else {
            return;
        };
        // Closing the descriptor would remove it from the epoll set anyway; mio asks
        // for an explicit deregister.
        let _ = self.poll.registry().deregister(&mut connection.stream);
        if connection.session.is_closing() {
            // Bad input, answered: send FIN now, as the blocking driver does.
            let _ = connection.stream.shutdown(Direction::Write);
        }
        drop(connection); // closes the socket; its guard counts it closed
        if self.listening == Listening::Full {
            self.resume_accepting();
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(due) = self.timers.pop_due(now) {
            match due {
                Due::Reply(key) => {
                    if let Some(connection) = self.connection(key) {
                        connection.release_held_reply();
                        // Sends it, and reads what the client sent meanwhile.
                        self.advance(key.index, now);
                    }
                }
                Due::Idle(key) => self.check_idle(key, now),
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
    fn check_idle(&mut self, key: Key, now: Instant) {
        let Some(idle) = self.cx.config.idle_timeout else {
            return;
        };
        let Some(connection) = self.connection(key) else {
            return;
        };
        let quiet_until = connection.last_active + idle;
        if connection.held.is_some() {
            // The client is not idle: it is waiting for us (sleep work).
            self.timers.push(now + idle, Due::Idle(key));
        } else if now >= quiet_until {
            self.close(key.index);
        } else {
            self.timers.push(quiet_until, Due::Idle(key));
        }
    }

    /// Accepts again after a pause, if there is room. Re-registering is
    /// `EPOLL_CTL_ADD`, and epoll reports at once if connections are already
    /// queued, so none is forgotten while we were paused.
    fn resume_accepting(&mut self) {
        if self.stop_by.is_some() || self.connections.len() >= self.cap {
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
    fn begin_shutdown(&mut self, now: Instant) {
        if self.stop_by.is_some() {
            return;
        }
        self.stop_by = Some(now + self.cx.config.grace);
        self.stop_accepting(Listening::Closed);
        self.listener = None;
        let wake = self.cx.shutdown.wake_fd().as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&wake));
    }
}

/// One client's state between readiness events.
struct Connection {
    stream: TcpStream,
    /// Which connection this is, of all this loop has opened (see [`Key`]).
    serial: u64,
    session: Session,
    /// Reply bytes not yet written: `write()` may take only part of them.
    output: Vec<u8>,
    /// A reply held back until its `sleep` timer fires. While it waits nothing more
    /// is read from this client: replies stay in order and memory stays bounded.
    held: Option<Vec<u8>>,
    /// The client shut its write side (we read EOF).
    eof: bool,
    /// epoll said the peer closed or reset. Sticky, because edge-triggered epoll
    /// says it once: after a short read (see `advance`) we read again only if
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
    fn new(stream: TcpStream, serial: u64, now: Instant, cx: &Context) -> Self {
        Connection {
            stream,
            serial,
            session: cx.config.session(),
            output: Vec::new(),
            held: None,
            eof: false,
            peer_closed: false,
            last_active: now,
            interest: Interest::READABLE,
            _open: cx.counters.open(),
        }
    }

    /// Writes what it can, reads what it may, until the socket would block or
    /// this client must wait. Returns true when the connection is finished.
    /// `now` is when the loop woke for this.
    fn advance(
        &mut self,
        cx: &Context,
        buf: &mut [u8],
        timers: &mut Timers<Due>,
        key: Key,
        now: Instant,
    ) -> io::Result<bool> {
        loop {
            self.flush(cx, now)?;
            if !self.wants_input() {
                break;
            }
            match self.stream.read(buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.handle_input(&buf[..n], cx, timers, key, now);
                    // A short read emptied the socket's receive queue: any byte that
                    // arrives later brings a new edge. Skipping the read that would
                    // only say WouldBlock saves a syscall per request.
                    if n < buf.len() && !self.peer_closed {
                        self.flush(cx, now)?;
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

    fn handle_input(
        &mut self,
        input: &[u8],
        cx: &Context,
        timers: &mut Timers<Due>,
        key: Key,
        now: Instant,
    ) {
        cx.config.maybe_crash(input);
        self.last_active = now;
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
                // A fresh clock: the timer is as precise as the alarm that rings it.
                timers.push(Instant::now() + d, Due::Reply(key));
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
    fn flush(&mut self, cx: &Context, now: Instant) -> io::Result<()> {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.output.drain(..n);
                    self.last_active = now;
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
    /// (the timer or the drained output calls `advance`) when it resumes.
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
        let size = std::mem::size_of::<Option<Connection>>();
        assert!(size <= 192, "{size} bytes");
    }
}

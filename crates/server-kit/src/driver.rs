//! The blocking per-connection driver: every blocking model (iterative, fork,
//! prefork, thread, pool) serves each client with exactly this function, so the
//! only thing that differs between them is who calls it, and where.
//!
//! Per request it makes two syscalls: `read()` then `write()`. It blocks in
//! `read()` until the client sends something; that blocked thread or process is
//! what a blocking model spends per idle client.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use crate::{log_client_error, work, Config, Context, Counters, READ_BUF};

/// Socket options every model sets on every accepted connection.
///
/// `TCP_NODELAY`: an echo server writes small replies; with Nagle's algorithm on, a
/// reply could wait for the ACK of the previous one (40 ms with delayed ACKs).
pub fn prepare_stream(stream: &TcpStream, config: &Config) -> io::Result<()> {
    stream.set_nodelay(true)?;
    // SO_RCVTIMEO / SO_SNDTIMEO: a blocked read or write gives up after the idle
    // timeout, so a silent client cannot hold a thread or process forever.
    stream.set_read_timeout(config.idle_timeout)?;
    stream.set_write_timeout(config.idle_timeout)?;
    Ok(())
}

/// [`serve_connection`] for a model: serves one client, and logs how it failed
/// if it did (`model` names the model in the log). A client's error never stops
/// the server.
pub fn serve_client(stream: TcpStream, cx: &Context, model: &str) {
    if let Err(e) = serve_connection(stream, &cx.config, cx.counters) {
        log_client_error(model, &e);
    }
}

/// Serves one client until it closes, errs, sends bad input or idles out.
///
/// Echoes with blocking `read()`/`write()`. A clean end (the client closed its
/// side, or bad input was answered with an error) is `Ok`; the stream is closed
/// when dropped. Whether the connection is open is counted by the caller's
/// [`OpenConnection`](crate::OpenConnection) guard; requests and bytes are
/// counted here.
pub fn serve_connection(
    mut stream: TcpStream,
    config: &Config,
    counters: &Counters,
) -> io::Result<()> {
    prepare_stream(&stream, config)?;
    let mut session = config.session();
    let mut input = vec![0u8; READ_BUF];
    let mut output = Vec::with_capacity(READ_BUF);
    loop {
        let n = match stream.read(&mut input) {
            // EOF: the client shut its write side. Every reply was already written
            // (we write before reading again), so returning closes our side and the
            // client reads EOF after its last reply: half-close works.
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        config.maybe_crash(&input[..n]);
        output.clear();
        let fed = session.feed_at(&input[..n], Instant::now(), &mut output);
        work::perform(config.work.times(fed.requests));
        stream.write_all(&output)?;
        counters.served(fed.requests, n, output.len());
        if fed.closing {
            // Bad input (a line too long, a request dribbled past its timeout):
            // the error line is sent; close without reading the rest.
            let _ = stream.shutdown(std::net::Shutdown::Write);
            return Ok(());
        }
    }
}

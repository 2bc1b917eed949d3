//! `socklab client`: the tutorial's `>>>` client, for TCP or UDP.
//!
//! Each input line is sent and its reply printed. On a terminal it prompts with
//! `>>> ` like the Python client; with piped stdin it prints one reply line per
//! input line and nothing else, so it can be scripted.
//!
//! Over TCP the line is sent with its `\n` and the reply is read up to the next
//! `\n`: that works under both framings (raw echoes the newline too; lines
//! answers with a line), and unlike the tutorial's single `recv(1024)` it never
//! mistakes half a reply for a whole one. Over UDP the line is one datagram
//! (without the newline) and the reply is one datagram, waited for at most
//! [`UDP_REPLY_TIMEOUT`] — a datagram can be lost, and a client must not hang.

use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use socklab_protocol::MAX_UDP_PAYLOAD;

use crate::args;

/// How long the client waits for a UDP reply before saying it was lost.
const UDP_REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the client waits for a TCP reply before giving up on the server.
const TCP_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args)]
#[command(group = clap::ArgGroup::new("target").required(true))]
pub struct ClientArgs {
    /// Talk TCP to this server address.
    #[arg(long, group = "target", value_parser = args::address)]
    tcp: Option<SocketAddr>,
    /// Talk UDP to this server address.
    #[arg(long, group = "target", value_parser = args::address)]
    udp: Option<SocketAddr>,
}

/// Sends one line, returns the reply as text.
type Exchange = dyn FnMut(&str) -> anyhow::Result<String>;

pub fn run(args: ClientArgs) -> anyhow::Result<()> {
    let interactive = io::stdin().is_terminal();
    let mut exchange: Box<Exchange> = match (args.tcp, args.udp) {
        (Some(addr), _) => Box::new(tcp_exchange(addr)?),
        (_, Some(addr)) => Box::new(udp_exchange(addr)?),
        _ => unreachable!("clap requires one of --tcp/--udp"),
    };
    let mut stdout = io::stdout().lock();
    let mut lines = io::stdin().lock().lines();
    loop {
        if interactive {
            write!(stdout, ">>> ")?;
            stdout.flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading standard input")?;
        let reply = exchange(&line)?;
        writeln!(stdout, "{reply}")?;
        stdout.flush()?;
    }
    Ok(())
}

fn tcp_exchange(addr: SocketAddr) -> anyhow::Result<impl FnMut(&str) -> anyhow::Result<String>> {
    let stream = TcpStream::connect_timeout(&addr, TCP_REPLY_TIMEOUT)
        .with_context(|| format!("connecting to TCP {addr}"))?;
    stream.set_read_timeout(Some(TCP_REPLY_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    Ok(move |line: &str| {
        writer
            .write_all(format!("{line}\n").as_bytes())
            .with_context(|| format!("sending to {addr}"))?;
        let mut reply = Vec::new();
        reader
            .read_until(b'\n', &mut reply)
            .with_context(|| format!("reading the reply from {addr}"))?;
        if reply.is_empty() {
            bail!("{addr} closed the connection");
        }
        if reply.last() == Some(&b'\n') {
            reply.pop();
        }
        Ok(String::from_utf8_lossy(&reply).into_owned())
    })
}

fn udp_exchange(addr: SocketAddr) -> anyhow::Result<impl FnMut(&str) -> anyhow::Result<String>> {
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()?;
    let socket = UdpSocket::bind(local).context("binding a UDP socket")?;
    // connect() filters replies to this server's address and turns an ICMP
    // port-unreachable into an error on the next recv, instead of a silent wait.
    socket
        .connect(addr)
        .with_context(|| format!("connecting UDP to {addr}"))?;
    socket.set_read_timeout(Some(UDP_REPLY_TIMEOUT))?;
    let mut buf = vec![0u8; MAX_UDP_PAYLOAD];
    Ok(move |line: &str| {
        socket
            .send(line.as_bytes())
            .with_context(|| format!("sending to {addr}"))?;
        match socket.recv(&mut buf) {
            Ok(n) => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(format!(
                    "(no reply within {UDP_REPLY_TIMEOUT:?}: datagram or reply lost)"
                ))
            }
            Err(e) => Err(e).with_context(|| format!("receiving from {addr}")),
        }
    })
}

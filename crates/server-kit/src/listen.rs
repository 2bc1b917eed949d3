//! Creating listening sockets with socket2.
//!
//! Every model binds the same way, so a difference between models is never a
//! difference in socket options.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// The listen backlog asked for by default; the kernel caps it at
/// `net.core.somaxconn`. With std's default of 128 and a burst of 1,000 connects,
/// the overflow is answered by SYN retransmits one second later: opening 1,000
/// connections took 4 s instead of 0.06 s when measured on this project's machine.
pub const DEFAULT_BACKLOG: i32 = 4096;

/// Options for [`bind_tcp`] and [`bind_udp`].
#[derive(Debug, Clone, Copy)]
pub struct BindOptions {
    pub backlog: i32,
    /// `SO_REUSEPORT`: several sockets bound to one port, the kernel spreading new
    /// connections (or datagrams) between them. Used by the multi-loop models.
    pub reuse_port: bool,
}

impl Default for BindOptions {
    fn default() -> Self {
        BindOptions {
            backlog: DEFAULT_BACKLOG,
            reuse_port: false,
        }
    }
}

/// A TCP listener on `addr` (IPv4 or IPv6; port 0 picks an ephemeral port).
///
/// `SO_REUSEADDR` lets a restarted server bind while old connections sit in
/// TIME_WAIT. socket2 creates the socket with `SOCK_CLOEXEC`, so a server that
/// execs never leaks it; `fork()` still inherits it, which the fork and prefork
/// models rely on. An IPv6 socket is made v6-only, so `[::]` and `0.0.0.0` can be
/// bound side by side.
pub fn bind_tcp(addr: SocketAddr, options: BindOptions) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    configure(&socket, addr, options)?;
    socket.bind(&addr.into())?;
    socket.listen(options.backlog)?;
    Ok(socket.into())
}

/// A UDP socket on `addr`, with the same options as [`bind_tcp`].
pub fn bind_udp(addr: SocketAddr, options: BindOptions) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    configure(&socket, addr, options)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn configure(socket: &Socket, addr: SocketAddr, options: BindOptions) -> io::Result<()> {
    socket.set_reuse_address(true)?;
    if options.reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn binds_ephemeral_ports_on_both_families() {
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let listener = match bind_tcp(addr, BindOptions::default()) {
                Ok(l) => l,
                Err(e) if addr.is_ipv6() => {
                    eprintln!("skipping IPv6: {e}");
                    continue;
                }
                Err(e) => panic!("{e}"),
            };
            let local = listener.local_addr().unwrap();
            assert_ne!(local.port(), 0);
            let mut client = std::net::TcpStream::connect(local).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            client.write_all(b"x").unwrap();
            let mut b = [0u8; 1];
            server.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"x");
            let udp = bind_udp(addr, BindOptions::default()).unwrap();
            assert_ne!(udp.local_addr().unwrap().port(), 0);
        }
    }

    #[test]
    fn reuse_port_lets_two_listeners_share_a_port() {
        let opts = BindOptions {
            reuse_port: true,
            ..BindOptions::default()
        };
        let first = bind_tcp("127.0.0.1:0".parse().unwrap(), opts).unwrap();
        let second = bind_tcp(first.local_addr().unwrap(), opts).unwrap();
        assert_eq!(first.local_addr().unwrap(), second.local_addr().unwrap());
    }
}

//! Socket setup shared by the roles: each bind names its address when it fails.

use crate::config::Buffers;
use crate::error::Error;
use mio::net::UdpSocket;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Largest datagram any role may receive; buffers this size never truncate.
pub(crate) const RECV_BUF: usize = 65_536;

/// Binds a non-blocking UDP socket with large default buffers, naming the address on failure.
pub(crate) fn bind(addr: SocketAddr) -> Result<(UdpSocket, SocketAddr), Error> {
    bind_with(addr, Buffers::default())
}

/// Binds a non-blocking UDP socket asking for `buffers`, naming the address on failure.
pub(crate) fn bind_with(
    addr: SocketAddr,
    buffers: Buffers,
) -> Result<(UdpSocket, SocketAddr), Error> {
    open(addr, buffers, false)
}

/// An IPv6 socket on `[::]` (port 0) that also sends to and receives from IPv4 peers, at their
/// IPv4-mapped addresses (`IPV6_V6ONLY` off, whatever the system's default).
pub(crate) fn bind_both_families(buffers: Buffers) -> Result<(UdpSocket, SocketAddr), Error> {
    let any = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0);
    open_with(any, buffers, false, true)
}

/// Like [`bind_with`], with `SO_REUSEPORT`: several sockets share the address and the kernel
/// spreads peers across them (each peer's datagrams stay on one socket).
pub(crate) fn bind_shared(
    addr: SocketAddr,
    buffers: Buffers,
) -> Result<(UdpSocket, SocketAddr), Error> {
    open(addr, buffers, true)
}

fn open(
    addr: SocketAddr,
    buffers: Buffers,
    reuse_port: bool,
) -> Result<(UdpSocket, SocketAddr), Error> {
    open_with(addr, buffers, reuse_port, false)
}

fn open_with(
    addr: SocketAddr,
    buffers: Buffers,
    reuse_port: bool,
    both_families: bool,
) -> Result<(UdpSocket, SocketAddr), Error> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| Error::io("open a socket for", addr, e))?;
    if both_families {
        socket
            .set_only_v6(false)
            .map_err(|e| Error::io("take IPv4 too (IPV6_V6ONLY off) on", addr, e))?;
    }
    #[cfg(unix)]
    if reuse_port {
        socket
            .set_reuse_port(true)
            .map_err(|e| Error::io("set SO_REUSEPORT for", addr, e))?;
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| Error::io("make non-blocking a socket for", addr, e))?;
    socket
        .bind(&addr.into())
        .map_err(|e| Error::io("bind", addr, e))?;
    let socket = UdpSocket::from_std(socket.into());
    // Best effort: the kernel caps requests silently; what it granted is reported.
    let _ = crate::sys::request_buffers(&socket, buffers.rcv, buffers.snd);
    let local = socket
        .local_addr()
        .map_err(|e| Error::io("read local address of", addr, e))?;
    Ok((socket, local))
}

/// `addr` as it is known: an IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4
/// peer) as the IPv4 one.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// How a socket of family `ipv6` addresses `addr`: IPv4 at its IPv4-mapped address on IPv6.
pub(crate) fn as_seen_by(ipv6: bool, addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if ipv6 => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        _ => addr,
    }
}

/// The wildcard address of `target`'s family, port 0: where a pinger sends from by default.
pub(crate) fn any_for(target: &SocketAddr) -> SocketAddr {
    let ip = match target {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// Errors that mean the peer (or the path to it) is gone rather than that we failed locally.
pub(crate) fn is_unreachable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EHOSTDOWN)
    )
}

/// Errors that mean our own socket or host had no room: the datagram never left.
pub(crate) fn is_local_congestion(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// The datagram is larger than the path lets through with don't-fragment set.
pub(crate) fn is_too_big(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EMSGSIZE)
}

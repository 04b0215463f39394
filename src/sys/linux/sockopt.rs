//! Socket options: buffers, drop counters, receive timestamps, GRO, ICMP errors, TTL, TOS and
//! don't-fragment.

use super::cvt;
use mio::net::UdpSocket;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Asks the kernel to queue ICMP errors on this (unconnected) socket. Without it Linux drops
/// port-unreachable for unconnected UDP sockets, and a stopped server looks like plain loss.
pub(crate) fn enable_icmp_errors(socket: &UdpSocket, ipv6: bool) -> io::Result<()> {
    let (level, name) = per_family(ipv6, libc::IP_RECVERR, libc::IPV6_RECVERR);
    set_int_option(socket, level, name, 1)
}

/// Makes reads on `socket` wait for a datagram, up to `cap` (none: for as long as it takes),
/// unless a call says not to (`MSG_DONTWAIT`, which every other call here passes): the socket
/// becomes blocking, with `cap` as its receive timeout. With a cap, a signal cuts such a wait
/// short even where handlers restart calls (a socket with a receive timeout is never
/// restarted); without, only where the handler does not (`signal_interrupts_calls`).
pub(crate) fn wait_in_reads(socket: &UdpSocket, cap: Option<Duration>) -> io::Result<()> {
    let socket = socket2::SockRef::from(socket);
    socket.set_read_timeout(cap)?;
    socket.set_nonblocking(false)
}

/// The level and name of an IP option in each family: IPv4's `v4`, IPv6's `v6`.
fn per_family(ipv6: bool, v4: libc::c_int, v6: libc::c_int) -> (libc::c_int, libc::c_int) {
    if ipv6 {
        (libc::IPPROTO_IPV6, v6)
    } else {
        (libc::IPPROTO_IP, v4)
    }
}

pub(super) fn set_int_option(
    socket: &UdpSocket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // Safety: the fd is a live socket owned by `socket`; the value is a c_int that outlives
    // the call, and its size is passed alongside.
    cvt(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

fn get_int_option(socket: &UdpSocket, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // Safety: the fd is live; value and len are valid for writes of the sizes given.
    cvt(unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// Asks for receive and send buffers of these sizes; the kernel caps each request at
/// `net.core.rmem_max` / `wmem_max` without failing.
pub(crate) fn request_buffers(socket: &UdpSocket, rcv: usize, snd: usize) -> io::Result<()> {
    let clamp = |b: usize| b.min(libc::c_int::MAX as usize / 2) as libc::c_int;
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_RCVBUF, clamp(rcv))?;
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_SNDBUF, clamp(snd))
}

/// The buffer sizes the kernel granted, (receive, send), as it reports them: Linux doubles
/// a request to account for its bookkeeping, so 4 MiB asked reads back as 8 MiB.
pub(crate) fn granted_buffers(socket: &UdpSocket) -> io::Result<(usize, usize)> {
    Ok((
        get_int_option(socket, libc::SO_RCVBUF)? as usize,
        get_int_option(socket, libc::SO_SNDBUF)? as usize,
    ))
}

/// Datagrams the socket has dropped for want of receive-buffer space, read from the kernel
/// (`SO_MEMINFO`): unlike the `SO_RXQ_OVFL` control message, which rides on the next datagram
/// received, it also counts drops after the last one.
pub(crate) fn socket_drops(socket: &UdpSocket) -> Option<u32> {
    // SK_MEMINFO_VARS is 9 (DROPS is the last); newer kernels may add more.
    let mut info = [0u32; 16];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // Safety: the fd is live; info and len are valid for writes of the sizes given, and the
    // kernel writes at most len bytes.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let drops = libc::SK_MEMINFO_DROPS as usize;
    (ret == 0 && len as usize > drops * 4).then(|| info[drops])
}

/// Turns on kernel receive timestamps if `timestamps`, and the receive-queue drop counter on
/// every datagram (`SO_RXQ_OVFL`) if `drops`; says which the kernel accepted.
pub(crate) fn enable_rx_metadata(
    socket: &UdpSocket,
    timestamps: bool,
    drops: bool,
) -> (bool, bool) {
    (
        timestamps && set_int_option(socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1).is_ok(),
        drops && set_int_option(socket, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1).is_ok(),
    )
}

/// Asks the kernel to stamp each message this socket sends as it enters the device's queue
/// (`SO_TIMESTAMPING`, `TX_SCHED`), numbered from 0 in the order sent (`OPT_ID`: a GSO run is
/// one message), and to queue the time alone on the error queue (`OPT_TSONLY`). Entering the
/// queue rather than leaving the device (`TX_SOFTWARE`) keeps a local qdisc's delay, such as an
/// egress netem's, inside the round trip. Received datagrams are kept free of a second stamp
/// where the kernel allows (`OPT_RX_FILTER`); older kernels add one, which the
/// receive path has room for and ignores.
pub(crate) fn enable_tx_timestamps(socket: &UdpSocket) -> io::Result<()> {
    let flags = libc::SOF_TIMESTAMPING_TX_SCHED
        | libc::SOF_TIMESTAMPING_SOFTWARE
        | libc::SOF_TIMESTAMPING_OPT_ID
        | libc::SOF_TIMESTAMPING_OPT_TSONLY;
    let set = |flags: libc::c_uint| {
        set_int_option(
            socket,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPING,
            flags as libc::c_int,
        )
    };
    set(flags | libc::SOF_TIMESTAMPING_OPT_RX_FILTER).or_else(|_| set(flags))
}

/// Lets the kernel hand over several datagrams of one sender in one buffer (`UDP_GRO`), as
/// a GSO sender sent them or a NIC coalesced them; says whether it accepted.
pub(crate) fn enable_gro(socket: &UdpSocket) -> bool {
    set_int_option(socket, libc::IPPROTO_UDP, libc::UDP_GRO, 1).is_ok()
}

/// Asks the kernel to say with each datagram the TTL (IPv4) or hop limit (IPv6) it arrived with;
/// says whether it accepted.
pub(crate) fn enable_recv_ttl(socket: &UdpSocket, ipv6: bool) -> bool {
    let (level, name) = per_family(ipv6, libc::IP_RECVTTL, libc::IPV6_RECVHOPLIMIT);
    set_int_option(socket, level, name, 1).is_ok()
}

/// Asks the kernel to say with each datagram the TOS byte (IPv4) or traffic class (IPv6) it
/// arrived with: its DSCP and ECN. An IPv6 socket is asked for both, since datagrams of IPv4
/// peers (v4-mapped) come with IPv4's. Says whether it accepted (its own family's).
pub(crate) fn enable_recv_tos(socket: &UdpSocket, ipv6: bool) -> bool {
    if ipv6 {
        let _ = set_int_option(socket, libc::IPPROTO_IP, libc::IP_RECVTOS, 1);
    }
    let (level, name) = per_family(ipv6, libc::IP_RECVTOS, libc::IPV6_RECVTCLASS);
    set_int_option(socket, level, name, 1).is_ok()
}

/// Asks the kernel to say with each datagram the address it was sent to and the interface it
/// came in on (`IP_PKTINFO`, `IPV6_RECVPKTINFO`): a socket bound to a wildcard address can then
/// answer from the address it was asked at. Says whether it accepted.
pub(crate) fn enable_recv_destination(socket: &UdpSocket, ipv6: bool) -> bool {
    let (level, name) = per_family(ipv6, libc::IP_PKTINFO, libc::IPV6_RECVPKTINFO);
    set_int_option(socket, level, name, 1).is_ok()
}

/// Sends every datagram of this socket with `ttl` as its TTL (IPv4) or hop limit (IPv6).
pub(crate) fn set_ttl(socket: &UdpSocket, ipv6: bool, ttl: u8) -> io::Result<()> {
    let (level, name) = per_family(ipv6, libc::IP_TTL, libc::IPV6_UNICAST_HOPS);
    set_int_option(socket, level, name, libc::c_int::from(ttl))
}

/// Ties the socket to one interface (`SO_BINDTODEVICE`): it sends through it and receives only
/// what came in on it, whatever the routing says. A VRF device works the same.
pub(crate) fn bind_to_device(socket: &UdpSocket, interface: &str) -> io::Result<()> {
    let name = std::ffi::CString::new(interface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the name"))?;
    let bytes = name.as_bytes_with_nul();
    // Safety: the fd is a live socket; the name is a NUL-terminated buffer that outlives the
    // call, its length passed alongside.
    cvt(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            bytes.as_ptr().cast(),
            bytes.len() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Sends every datagram of this socket with `tos` as its TOS byte (IPv4) or traffic class
/// (IPv6): DSCP in the top six bits, ECN in the low two. An IPv6 socket gets both, since its
/// datagrams to IPv4 peers (v4-mapped) go with IPv4's.
pub(crate) fn set_tos(socket: &UdpSocket, ipv6: bool, tos: u8) -> io::Result<()> {
    if ipv6 {
        let _ = set_int_option(
            socket,
            libc::IPPROTO_IP,
            libc::IP_TOS,
            libc::c_int::from(tos),
        );
    }
    let (level, name) = per_family(ipv6, libc::IP_TOS, libc::IPV6_TCLASS);
    set_int_option(socket, level, name, libc::c_int::from(tos))
}

/// Sends every datagram of this socket with don't-fragment: IPv4's DF bit (`IP_PMTUDISC_DO`),
/// IPv6's `IPV6_DONTFRAG` (and `IPV6_PMTUDISC_DO`, so that a datagram over the path MTU fails
/// with `EMSGSIZE` and the MTU is queued on the error queue, as for IPv4).
pub(crate) fn set_dont_fragment(socket: &UdpSocket, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        set_int_option(socket, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)?;
        set_int_option(
            socket,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )
    } else {
        set_int_option(
            socket,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )
    }
}

//! The socket error queue (`IP_RECVERR`): ICMP errors for datagrams an unconnected socket sent,
//! and this host's own "too big for the path" for a don't-fragment datagram.

use super::cvt_len;
use super::mmsg::socket_addr;
use crate::sys::IcmpError;
use mio::net::UdpSocket;
use std::io;
use std::os::fd::AsRawFd;

/// Reads every queued error, handing `f` the error and the start of the datagram that caused it
/// (the kernel returns the original payload of an ICMP error; a local one has none). Returns how
/// many were read.
pub(crate) fn drain_error_queue(
    socket: &UdpSocket,
    mut f: impl FnMut(IcmpError, &[u8]),
) -> io::Result<usize> {
    let mut payload = [0u8; 128];
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 64];
    // Safety: all-zero is a valid sockaddr_storage.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut count = 0;
    loop {
        let mut iov = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        };
        // Safety: an all-zero msghdr is a valid "no name, no control" value for recvmsg.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = std::mem::size_of_val(&name) as _;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let received = socket.try_io(|| {
            // Safety: msg points at iov, payload and control, all live and sized as declared
            // for the duration of the call.
            let n = unsafe {
                libc::recvmsg(
                    socket.as_raw_fd(),
                    &mut msg,
                    libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
                )
            };
            cvt_len(n)
        });
        let len = match received {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(count),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        count += 1;
        if let Some(mut error) = extended_error(&msg) {
            error.to = (msg.msg_namelen > 0).then(|| socket_addr(&name)).flatten();
            f(error, &payload[..len.min(payload.len())]);
        }
    }
}

/// Finds the `sock_extended_err` of an error-queue message.
fn extended_error(msg: &libc::msghdr) -> Option<IcmpError> {
    // Safety: msg was filled by a successful recvmsg; the CMSG_* macros walk the control
    // buffer within msg_controllen, and the payload is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let is_ip = c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_RECVERR;
            let is_ip6 = c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_RECVERR;
            if is_ip || is_ip6 {
                let err: libc::sock_extended_err =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                let errno = err.ee_errno as i32;
                let from_icmp = err.ee_origin == libc::SO_EE_ORIGIN_ICMP
                    || err.ee_origin == libc::SO_EE_ORIGIN_ICMP6;
                let too_big = errno == libc::EMSGSIZE;
                let local_too_big = err.ee_origin == libc::SO_EE_ORIGIN_LOCAL && too_big;
                return (from_icmp || local_too_big).then_some(IcmpError {
                    errno,
                    mtu: (too_big && err.ee_info > 0).then_some(err.ee_info),
                    to: None,
                });
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

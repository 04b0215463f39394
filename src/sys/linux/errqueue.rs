//! The socket error queue (`IP_RECVERR`, `SO_TIMESTAMPING`): ICMP errors for datagrams an
//! unconnected socket sent, this host's own "too big for the path" for a don't-fragment
//! datagram, and the kernel's transmit timestamps.

use super::cvt_len;
use super::mmsg::socket_addr;
use crate::sys::{IcmpError, Queued};
use mio::net::UdpSocket;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Messages read per `recvmmsg`: a send batch's worth, one time per datagram without GSO.
const MESSAGES: usize = 32;
/// Bytes kept of the datagram an ICMP error returns (enough for any probe header).
const ORIGINAL: usize = 128;
/// Control space per message: a `sock_extended_err` with the offender's address (IPv6: 64
/// bytes with its header) and a `scm_timestamping` (64); u64 words keep it aligned.
const CONTROL_WORDS: usize = 24;
/// `ee_info` of a transmit timestamp taken as the datagram entered the device's queue.
const SCM_TSTAMP_SCHED: u32 = 1;

/// Buffers for reading the error queue in batches, kept so that a read allocates nothing.
pub(crate) struct ErrorQueue {
    payload: [[u8; ORIGINAL]; MESSAGES],
    control: [[u64; CONTROL_WORDS]; MESSAGES],
    names: [libc::sockaddr_storage; MESSAGES],
    iovecs: [libc::iovec; MESSAGES],
    headers: [libc::mmsghdr; MESSAGES],
}

// Safety: the pointers in iovecs/headers are rebuilt before every call from this struct's own
// buffers; none outlives the call.
unsafe impl Send for ErrorQueue {}

impl Default for ErrorQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl ErrorQueue {
    pub(crate) fn new() -> Self {
        Self {
            payload: [[0; ORIGINAL]; MESSAGES],
            control: [[0; CONTROL_WORDS]; MESSAGES],
            // Safety: all-zero is a valid value for these plain C structs.
            names: unsafe { std::mem::zeroed() },
            iovecs: unsafe { std::mem::zeroed() },
            headers: unsafe { std::mem::zeroed() },
        }
    }

    /// Reads every queued message, handing `f` each ICMP error (with the start of the datagram
    /// that caused it: a local error has none) and each transmit timestamp. Returns how many
    /// messages were read.
    pub(crate) fn drain(
        &mut self,
        socket: &UdpSocket,
        mut f: impl FnMut(Queued<'_>),
    ) -> io::Result<usize> {
        let mut count = 0;
        loop {
            let n = match self.read(socket) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(count),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            count += n;
            for i in 0..n {
                let h = &self.headers[i];
                let len = (h.msg_len as usize).min(ORIGINAL);
                match queued(&h.msg_hdr) {
                    Some(Found::Sent { key, at }) => f(Queued::Sent { key, at }),
                    Some(Found::Icmp(mut error)) => {
                        let named = h.msg_hdr.msg_namelen > 0;
                        error.to = named.then(|| socket_addr(&self.names[i])).flatten();
                        f(Queued::Icmp(error, &self.payload[i][..len]))
                    }
                    None => {}
                }
            }
            if n < MESSAGES {
                return Ok(count);
            }
        }
    }

    /// One `recvmmsg` of the error queue into this struct's buffers.
    fn read(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        for i in 0..MESSAGES {
            self.iovecs[i] = libc::iovec {
                iov_base: self.payload[i].as_mut_ptr().cast(),
                iov_len: ORIGINAL,
            };
            let h = &mut self.headers[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as _;
            h.msg_iov = &mut self.iovecs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.control[i].as_mut_ptr().cast();
            h.msg_controllen = std::mem::size_of::<[u64; CONTROL_WORDS]>() as _;
            h.msg_flags = 0;
        }
        let headers = self.headers.as_mut_ptr();
        socket.try_io(|| {
            // Safety: headers describe MESSAGES messages over this struct's buffers, all live
            // and sized as declared for the duration of the call.
            let n = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    headers,
                    MESSAGES as libc::c_uint,
                    libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            cvt_len(n as isize)
        })
    }
}

/// What one error-queue message was, as far as a pinger cares.
enum Found {
    Icmp(IcmpError),
    Sent { key: u32, at: Duration },
}

/// Reads an error-queue message's `sock_extended_err` and, for a transmit timestamp, its
/// software time.
fn queued(msg: &libc::msghdr) -> Option<Found> {
    let mut error = None;
    let mut stamp = None;
    // Safety: msg was filled by a successful recvmmsg; the CMSG_* macros walk the control
    // buffer within msg_controllen, and payloads are read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            let is_ip = c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_RECVERR;
            let is_ip6 = c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_RECVERR;
            if is_ip || is_ip6 {
                error = Some(std::ptr::read_unaligned::<libc::sock_extended_err>(
                    data.cast(),
                ));
            } else if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_TIMESTAMPING {
                // struct scm_timestamping: the software stamp comes first.
                let ts: libc::timespec = std::ptr::read_unaligned(data.cast());
                stamp = Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    let err = error?;
    if err.ee_origin == libc::SO_EE_ORIGIN_TIMESTAMPING {
        return match (err.ee_info, stamp) {
            (SCM_TSTAMP_SCHED, Some(at)) if at > Duration::ZERO => Some(Found::Sent {
                key: err.ee_data,
                at,
            }),
            _ => None,
        };
    }
    let errno = err.ee_errno as i32;
    let from_icmp =
        err.ee_origin == libc::SO_EE_ORIGIN_ICMP || err.ee_origin == libc::SO_EE_ORIGIN_ICMP6;
    let too_big = errno == libc::EMSGSIZE;
    let local_too_big = err.ee_origin == libc::SO_EE_ORIGIN_LOCAL && too_big;
    (from_icmp || local_too_big).then_some(Found::Icmp(IcmpError {
        errno,
        mtu: (too_big && err.ee_info > 0).then_some(err.ee_info),
        to: None,
    }))
}

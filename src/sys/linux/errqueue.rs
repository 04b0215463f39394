//! The socket error queue (`IP_RECVERR`, `SO_TIMESTAMPING`): ICMP errors for datagrams an
//! unconnected socket sent, this host's own "too big for the path" for a don't-fragment
//! datagram, and the kernel's transmit timestamps.

use super::mmsg::{arm_header, socket_addr};
use super::{call, cvt_len};
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

/// Buffers for reading the error queue in batches, kept so that a read allocates nothing. They
/// live on the heap, so the headers' pointers into them survive the struct being moved.
pub(crate) struct ErrorQueue {
    payload: Box<[[u8; ORIGINAL]]>,
    control: Box<[[u64; CONTROL_WORDS]]>,
    names: Box<[libc::sockaddr_storage]>,
    iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
    /// Messages the last read filled: only their headers need arming again.
    used: usize,
}

// Safety: the raw pointers in iovecs/headers only ever point into this struct's own heap
// buffers.
unsafe impl Send for ErrorQueue {}

impl Default for ErrorQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl ErrorQueue {
    pub(crate) fn new() -> Self {
        let mut queue = Self {
            payload: vec![[0; ORIGINAL]; MESSAGES].into(),
            control: vec![[0; CONTROL_WORDS]; MESSAGES].into(),
            // Safety: all-zero is a valid value for these plain C structs.
            names: vec![unsafe { std::mem::zeroed() }; MESSAGES].into(),
            iovecs: vec![unsafe { std::mem::zeroed() }; MESSAGES].into(),
            headers: vec![unsafe { std::mem::zeroed() }; MESSAGES].into(),
            used: MESSAGES,
        };
        queue.arm();
        queue
    }

    /// Points the headers the last read filled at their buffers again (the others are still as
    /// armed).
    fn arm(&mut self) {
        for i in 0..std::mem::replace(&mut self.used, 0) {
            self.iovecs[i] = libc::iovec {
                iov_base: self.payload[i].as_mut_ptr().cast(),
                iov_len: ORIGINAL,
            };
            arm_header(
                &mut self.headers[i],
                &mut self.names[i],
                &mut self.iovecs[i],
                &mut self.control[i],
            );
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
        self.arm();
        let headers = self.headers.as_mut_ptr();
        socket
            .try_io(|| {
                // Safety: headers describe MESSAGES messages over this struct's heap buffers (armed
                // at creation, and again after each read for those it filled), all live and sized as
                // declared for the duration of the call.
                let n = unsafe {
                    call::recvmmsg(
                        socket.as_raw_fd(),
                        headers,
                        MESSAGES,
                        libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
                    )
                };
                cvt_len(n)
            })
            .inspect(|&n| self.used = n)
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

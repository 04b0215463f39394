//! Sending: `sendmmsg` runs with UDP GSO (`UDP_SEGMENT`), and a lone datagram with `sendto`;
//! replies from a chosen source address (`IP_PKTINFO`, `IPV6_PKTINFO`) and with a chosen TOS.

use super::{call, cvt_len};
use crate::sys::Destination;
use mio::net::UdpSocket;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

/// Control space for one `UDP_SEGMENT` message: a u16 and its header, aligned (32 bytes).
pub(super) const GSO_CONTROL_WORDS: usize = 4;
/// Most datagrams in one GSO send: the kernel's `UDP_MAX_SEGMENTS` (64 before Linux 6.x).
pub(super) const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO send: under the largest UDP payload over IPv4 (65 507).
pub(super) const GSO_MAX_BYTES: usize = 65_000;

/// Errors with which a kernel, device or route refuses segmentation offload (not the
/// datagrams themselves): the send is tried again one datagram at a time.
pub(super) fn refuses_gso(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT | libc::EMSGSIZE)
    )
}

/// Points `header` at `control` and writes one `UDP_SEGMENT` control message of `size`.
pub(super) fn write_segment_size(
    header: &mut libc::msghdr,
    control: &mut [u64; GSO_CONTROL_WORDS],
    size: usize,
) {
    header.msg_control = control.as_mut_ptr().cast();
    // Safety: CMSG_SPACE of a u16 is 24 bytes, within the 32 of `control`; CMSG_FIRSTHDR
    // then points at its start, and the header and data writes stay inside it.
    unsafe {
        header.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(header);
        (*cmsg).cmsg_level = libc::IPPROTO_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size as u16);
    }
}

/// Control space of one reply: a GSO segment size (24 bytes) and the address to answer from
/// (`IPV6_PKTINFO`, 40 bytes; `IP_PKTINFO`, 32).
pub(super) const REPLY_CONTROL_WORDS: usize = 12;

/// What a reply carries beyond its bytes, as control messages: the address it goes from, and
/// the TOS byte (IPv6: traffic class) it goes with.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ReplyControl {
    pub from: Option<Destination>,
    pub tos: Option<u8>,
    /// The peer is IPv4 (or v4-mapped on an IPv6 socket): its TOS goes as `IP_TOS`.
    pub ipv4_peer: bool,
}

impl ReplyControl {
    /// No control message: the socket's defaults.
    pub(super) const NONE: ReplyControl = ReplyControl {
        from: None,
        tos: None,
        ipv4_peer: false,
    };

    fn is_empty(&self) -> bool {
        self.from.is_none() && self.tos.is_none()
    }
}

/// Points `header` at `control` and writes a reply's control messages: `UDP_SEGMENT` of
/// `segment`, the source address `reply.from` (`IP_PKTINFO` / `IPV6_PKTINFO`) and the TOS
/// `reply.tos` (`IP_TOS` / `IPV6_TCLASS`); with none, no control at all.
pub(super) fn write_reply_control(
    header: &mut libc::msghdr,
    control: &mut [u64; REPLY_CONTROL_WORDS],
    segment: Option<usize>,
    reply: &ReplyControl,
) {
    let mut used = 0usize;
    let base: *mut u8 = control.as_mut_ptr().cast();
    // Safety: each message goes at `used` bytes into `control`, which starts 8-byte aligned;
    // the three messages' CMSG_SPACE add up to at most 88 bytes, within its 96 (asserted
    // below), and every write stays inside the message's own space.
    let mut put = |level: libc::c_int, kind: libc::c_int, data: &[u8]| unsafe {
        let space = libc::CMSG_SPACE(data.len() as u32) as usize;
        assert!(used + space <= std::mem::size_of_val(control));
        let cmsg = base.add(used).cast::<libc::cmsghdr>();
        std::ptr::write_bytes(cmsg.cast::<u8>(), 0, space);
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = libc::CMSG_LEN(data.len() as u32) as _;
        std::ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(cmsg), data.len());
        used += space;
    };
    if let Some(size) = segment {
        put(
            libc::IPPROTO_UDP,
            libc::UDP_SEGMENT,
            &(size as u16).to_ne_bytes(),
        );
    }
    match reply.from.map(|d| (d.addr, d.ifindex)) {
        Some((IpAddr::V4(addr), _)) => {
            // The source address, routed as usual (no interface forced).
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(addr).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            put(libc::IPPROTO_IP, libc::IP_PKTINFO, as_bytes(&info));
        }
        Some((IpAddr::V6(addr), ifindex)) => {
            // The interface too: a link-local address means nothing without it.
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: addr.octets(),
                },
                ipi6_ifindex: ifindex,
            };
            put(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, as_bytes(&info));
        }
        None => {}
    }
    if let Some(tos) = reply.tos {
        let tos = libc::c_int::from(tos).to_ne_bytes();
        if reply.ipv4_peer {
            put(libc::IPPROTO_IP, libc::IP_TOS, &tos);
        } else {
            put(libc::IPPROTO_IPV6, libc::IPV6_TCLASS, &tos);
        }
    }
    if used == 0 {
        header.msg_control = std::ptr::null_mut();
        header.msg_controllen = 0;
    } else {
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = used as _;
    }
}

/// The bytes of a plain C struct.
fn as_bytes<T: Copy>(value: &T) -> &[u8] {
    // Safety: T is a plain C struct (no padding is read as anything but bytes to copy), and the
    // slice borrows it for no longer than `value` lives.
    unsafe {
        std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>())
    }
}

/// One `sendmmsg` of `count` prepared headers; how many messages went.
pub(super) fn send_messages(
    socket: &UdpSocket,
    headers: *mut libc::mmsghdr,
    count: usize,
) -> io::Result<usize> {
    socket.try_io(|| {
        // Safety: the caller prepared `count` headers at `headers`, each pointing at buffers
        // that live for the call.
        let n = unsafe { call::sendmmsg(socket.as_raw_fd(), headers, count, libc::MSG_DONTWAIT) };
        cvt_len(n)
    })
}

/// One datagram to `name`, from `from` where given (with `sendmsg` and its control message),
/// else with `sendto`: less work for the kernel than a `sendmmsg` of one.
pub(super) fn send_one(
    socket: &UdpSocket,
    datagram: &[u8],
    name: &libc::sockaddr_storage,
    namelen: libc::socklen_t,
    reply: &ReplyControl,
) -> io::Result<()> {
    if !reply.is_empty() {
        return send_one_from(socket, datagram, name, namelen, reply);
    }
    socket.try_io(|| {
        // Safety: the datagram and the address live for the call, with their lengths passed
        // alongside.
        let n = unsafe {
            call::sendto(
                socket.as_raw_fd(),
                datagram.as_ptr(),
                datagram.len(),
                libc::MSG_DONTWAIT,
                name_or_none(name, namelen),
                namelen,
            )
        };
        cvt_len(n).map(drop)
    })
}

/// One datagram to `name` with the control messages of `reply`, with `sendmsg`.
fn send_one_from(
    socket: &UdpSocket,
    datagram: &[u8],
    name: &libc::sockaddr_storage,
    namelen: libc::socklen_t,
    reply: &ReplyControl,
) -> io::Result<()> {
    let mut control = [0u64; REPLY_CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: datagram.as_ptr() as *mut libc::c_void,
        iov_len: datagram.len(),
    };
    // Safety: all-zero is a valid msghdr; its pointers are set to the locals above.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_name = (name as *const libc::sockaddr_storage) as *mut libc::c_void;
    header.msg_namelen = namelen;
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    write_reply_control(&mut header, &mut control, None, reply);
    socket.try_io(|| {
        // Safety: the header points at the datagram, the address and the control buffer, all
        // alive for the call; the kernel only reads them.
        let n = unsafe { call::sendmsg(socket.as_raw_fd(), &header, libc::MSG_DONTWAIT) };
        cvt_len(n).map(drop)
    })
}

/// The address to send to, or none (a null pointer) when `len` is 0: a connected socket's own.
fn name_or_none(name: &libc::sockaddr_storage, len: libc::socklen_t) -> *const libc::sockaddr {
    if len == 0 {
        std::ptr::null()
    } else {
        (name as *const libc::sockaddr_storage).cast()
    }
}

/// `addr` as the kernel takes it, and its length.
fn storage_of(addr: std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let addr = socket2::SockAddr::from(addr);
    // Safety: all-zero is a valid sockaddr_storage; the copy is bounded by the address's
    // length, which fits it.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    unsafe {
        std::ptr::copy_nonoverlapping(
            addr.as_ptr().cast::<u8>(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
            addr.len() as usize,
        );
    }
    (storage, addr.len())
}

/// Sends slots of a [`SendBatch`](super::SendBatch) to one destination with `sendmmsg`,
/// each run of slots as one GSO message when asked.
pub(crate) struct Sender {
    target: libc::sockaddr_storage,
    target_len: libc::socklen_t,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    control: Vec<[u64; GSO_CONTROL_WORDS]>,
    /// Datagrams in each message of the last send.
    runs: Vec<usize>,
    /// Messages of several datagrams sent so far.
    gso_runs: u64,
    gso: bool,
    gso_refused: Option<io::Error>,
}

// Safety: the pointers in iovecs/headers are rebuilt before every call from the buffer and
// target passed to it; none outlives the call.
unsafe impl Send for Sender {}

impl Sender {
    pub(crate) fn new(capacity: usize, target: std::net::SocketAddr) -> Self {
        let (target, target_len) = storage_of(target);
        Self {
            target,
            target_len,
            // Safety: all-zero is a valid value for these plain C structs.
            iovecs: vec![unsafe { std::mem::zeroed() }; capacity],
            headers: vec![unsafe { std::mem::zeroed() }; capacity],
            control: vec![[0u64; GSO_CONTROL_WORDS]; capacity],
            runs: Vec::with_capacity(capacity),
            gso_runs: 0,
            gso: false,
            gso_refused: None,
        }
    }

    pub(crate) fn set_gso(&mut self, on: bool) {
        self.gso = on && self.gso_refused.is_none();
    }

    /// Sends what follows to `target` (not for a connected socket).
    pub(crate) fn set_target(&mut self, target: std::net::SocketAddr) {
        (self.target, self.target_len) = storage_of(target);
    }

    /// The socket is connected to the target: datagrams go without an address, and the kernel
    /// uses the route the connection cached instead of looking one up per send.
    pub(crate) fn set_connected(&mut self, on: bool) {
        if on {
            self.target_len = 0;
        }
    }

    #[cfg(test)]
    pub(crate) fn gso(&self) -> bool {
        self.gso
    }

    pub(crate) fn gso_refused(&self) -> Option<&io::Error> {
        self.gso_refused.as_ref()
    }

    pub(crate) fn gso_runs(&self) -> u64 {
        self.gso_runs
    }

    /// Datagrams in each message of the last send, those that went.
    pub(crate) fn last_messages(&self) -> &[usize] {
        &self.runs
    }

    /// Sends slots `from..len` of `data` (slots of `size` bytes): how many went, or the
    /// error of the first that could not.
    pub(crate) fn send(
        &mut self,
        socket: &UdpSocket,
        data: &mut [u8],
        size: usize,
        from: usize,
        len: usize,
    ) -> io::Result<usize> {
        if len - from == 1 {
            // One datagram (a window of one, a paced probe), looked for first: a ping-pong's
            // path, between the send's clock read and the send.
            let datagram = &data[from * size..(from + 1) * size];
            send_one(
                socket,
                datagram,
                &self.target,
                self.target_len,
                &ReplyControl::NONE,
            )?;
            self.runs.clear();
            self.runs.push(1);
            return Ok(1);
        }
        let per_run = GSO_MAX_SEGMENTS.min(GSO_MAX_BYTES / size.max(1));
        if self.gso && per_run > 1 {
            match self.send_runs(socket, data, size, from, len, per_run) {
                Err(e) if refuses_gso(&e) => {
                    // Switched off for good; the caller reports it once.
                    self.gso = false;
                    self.gso_refused = Some(e);
                }
                result => return result,
            }
        }
        self.send_runs(socket, data, size, from, len, 1)
    }

    /// Slots `from..len` in one `sendmmsg`, as messages of up to `per_run` datagrams each
    /// (GSO when more than one).
    fn send_runs(
        &mut self,
        socket: &UdpSocket,
        data: &mut [u8],
        size: usize,
        from: usize,
        len: usize,
        per_run: usize,
    ) -> io::Result<usize> {
        self.runs.clear();
        let mut start = from;
        while start < len {
            let m = self.runs.len();
            let count = per_run.min(len - start);
            self.iovecs[m] = libc::iovec {
                iov_base: data[start * size..].as_mut_ptr().cast(),
                iov_len: count * size,
            };
            let h = &mut self.headers[m].msg_hdr;
            h.msg_name = name_or_none(&self.target, self.target_len)
                .cast_mut()
                .cast();
            h.msg_namelen = self.target_len;
            h.msg_iov = &mut self.iovecs[m];
            h.msg_iovlen = 1;
            h.msg_flags = 0;
            if count > 1 {
                write_segment_size(h, &mut self.control[m], size);
            } else {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
            self.runs.push(count);
            start += count;
        }
        // Safety: headers[..runs.len()] were just built over `data` and this struct's
        // target and control buffers.
        let sent = send_messages(socket, self.headers.as_mut_ptr(), self.runs.len())?;
        self.runs.truncate(sent);
        self.gso_runs += self.runs.iter().filter(|&&n| n > 1).count() as u64;
        Ok(self.runs.iter().sum())
    }
}

//! Platform code at the syscall boundary: ICMP errors on unconnected UDP sockets, a precise
//! timer for the poll loop. Linux gets the real thing; elsewhere each piece degrades to a no-op
//! that the callers tolerate (no ICMP-based outage detection, millisecond pacing).

use mio::net::UdpSocket;
use std::io;
use std::time::Duration;

pub use imp::{
    drain_error_queue, enable_gro, enable_icmp_errors, enable_rx_metadata, granted_buffers,
    request_buffers, set_timer_slack, socket_drops, MmsgBatch, PreciseTimer,
};

/// One received datagram and what the kernel said about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    pub len: usize,
    pub from: std::net::SocketAddr,
    /// Kernel receive time (`SO_TIMESTAMPNS`): CLOCK_REALTIME, since the Unix epoch.
    pub kernel_rx: Option<Duration>,
    /// Datagrams the socket has dropped for want of buffer space since the count was enabled
    /// (`SO_RXQ_OVFL`); the kernel only reports it once it is above zero.
    pub drops: Option<u32>,
    /// Several datagrams of one sender coalesced by the kernel (`UDP_GRO`): each is this many
    /// bytes, the last possibly fewer. `None`: one datagram.
    pub segment: Option<usize>,
}

impl RecvMeta {
    /// The bytes of each datagram in `payload` (this meta's receive).
    pub fn datagrams<'p>(&self, payload: &'p [u8]) -> impl Iterator<Item = &'p [u8]> {
        let segment = self.segment.unwrap_or(payload.len()).max(1);
        datagram_ranges(payload.len(), segment).map(move |(start, end)| &payload[start..end])
    }
}

/// The byte ranges of the datagrams in `len` received bytes cut every `segment` bytes (an empty
/// datagram is one empty range).
fn datagram_ranges(len: usize, segment: usize) -> impl Iterator<Item = (usize, usize)> {
    let count = len.div_ceil(segment).max(1);
    (0..count).map(move |k| (k * segment, ((k + 1) * segment).min(len)))
}

/// One ICMP error the kernel reported for a datagram we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    /// The errno it maps to (`ECONNREFUSED` for port unreachable, `EHOSTUNREACH`, ...).
    pub errno: i32,
}

/// Datagrams to one destination, filled slot by slot and sent in one call (`sendmmsg` on
/// Linux, one `send_to` at a time elsewhere). Each slot holds its own bytes.
pub struct SendBatch {
    data: Vec<u8>,
    size: usize,
    len: usize,
    capacity: usize,
    sender: imp::Sender,
}

impl SendBatch {
    /// Room for `capacity` datagrams of `size` bytes to `target`.
    pub fn new(capacity: usize, size: usize, target: std::net::SocketAddr) -> Self {
        Self {
            data: vec![0u8; capacity * size],
            size,
            len: 0,
            capacity,
            sender: imp::Sender::new(capacity, target),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The next slot, to be filled; `None` when the batch is full.
    pub fn push(&mut self) -> Option<&mut [u8]> {
        if self.len == self.capacity {
            return None;
        }
        self.len += 1;
        Some(self.slot_mut(self.len - 1))
    }

    pub fn slot(&self, i: usize) -> &[u8] {
        &self.data[i * self.size..(i + 1) * self.size]
    }

    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.data[i * self.size..(i + 1) * self.size]
    }

    /// Sends slots `from..` (those pushed): how many went, or the error of the first that could
    /// not.
    pub fn send(&mut self, socket: &UdpSocket, from: usize) -> io::Result<usize> {
        self.sender
            .send(socket, &mut self.data, self.size, from, self.len)
    }

    /// Sends runs of slots as one buffer the kernel cuts into datagrams (UDP GSO): one trip
    /// through the stack per run instead of one per datagram. Linux only; a kernel or route that
    /// refuses it turns it off for good, see [`SendBatch::gso_refused`].
    pub fn set_gso(&mut self, on: bool) {
        self.sender.set_gso(on);
    }

    pub fn gso(&self) -> bool {
        self.sender.gso()
    }

    /// Why GSO was switched off at run time, if it was.
    pub fn gso_refused(&self) -> Option<&io::Error> {
        self.sender.gso_refused()
    }

    /// Runs of datagrams sent as one GSO message so far.
    pub fn gso_runs(&self) -> u64 {
        self.sender.gso_runs()
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    use mio::unix::SourceFd;
    use mio::{Interest, Registry, Token};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    /// Asks the kernel to queue ICMP errors on this (unconnected) socket. Without it Linux drops
    /// port-unreachable for unconnected UDP sockets, and a stopped server looks like plain loss.
    pub fn enable_icmp_errors(socket: &UdpSocket, ipv6: bool) -> io::Result<()> {
        let (level, name) = if ipv6 {
            (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
        } else {
            (libc::IPPROTO_IP, libc::IP_RECVERR)
        };
        set_int_option(socket, level, name, 1)
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
    pub fn request_buffers(socket: &UdpSocket, rcv: usize, snd: usize) -> io::Result<()> {
        let clamp = |b: usize| b.min(libc::c_int::MAX as usize / 2) as libc::c_int;
        set_int_option(socket, libc::SOL_SOCKET, libc::SO_RCVBUF, clamp(rcv))?;
        set_int_option(socket, libc::SOL_SOCKET, libc::SO_SNDBUF, clamp(snd))
    }

    /// The buffer sizes the kernel granted, (receive, send), as it reports them: Linux doubles
    /// a request to account for its bookkeeping, so 4 MiB asked reads back as 8 MiB.
    pub fn granted_buffers(socket: &UdpSocket) -> io::Result<(usize, usize)> {
        Ok((
            get_int_option(socket, libc::SO_RCVBUF)? as usize,
            get_int_option(socket, libc::SO_SNDBUF)? as usize,
        ))
    }

    /// Datagrams the socket has dropped for want of receive-buffer space, read from the kernel
    /// (`SO_MEMINFO`): unlike the `SO_RXQ_OVFL` control message, which rides on the next datagram
    /// received, it also counts drops after the last one.
    pub fn socket_drops(socket: &UdpSocket) -> Option<u32> {
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

    /// Turns on the receive-queue drop counter, and kernel receive timestamps if `timestamps`;
    /// says which the kernel accepted.
    pub fn enable_rx_metadata(socket: &UdpSocket, timestamps: bool) -> (bool, bool) {
        (
            timestamps && set_int_option(socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1).is_ok(),
            set_int_option(socket, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1).is_ok(),
        )
    }

    /// Lets the kernel hand over several datagrams of one sender in one buffer (`UDP_GRO`), as
    /// a GSO sender sent them or a NIC coalesced them; says whether it accepted.
    pub fn enable_gro(socket: &UdpSocket) -> bool {
        set_int_option(socket, libc::IPPROTO_UDP, libc::UDP_GRO, 1).is_ok()
    }

    fn socket_addr(storage: &libc::sockaddr_storage) -> Option<std::net::SocketAddr> {
        use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
        match storage.ss_family as libc::c_int {
            libc::AF_INET => {
                // Safety: the family says the storage holds a sockaddr_in, which it is sized for.
                let a: &libc::sockaddr_in = unsafe { &*(storage as *const _ as *const _) };
                Some(
                    SocketAddrV4::new(
                        Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                        u16::from_be(a.sin_port),
                    )
                    .into(),
                )
            }
            libc::AF_INET6 => {
                // Safety: as above, for sockaddr_in6.
                let a: &libc::sockaddr_in6 = unsafe { &*(storage as *const _ as *const _) };
                Some(
                    SocketAddrV6::new(
                        Ipv6Addr::from(a.sin6_addr.s6_addr),
                        u16::from_be(a.sin6_port),
                        a.sin6_flowinfo,
                        a.sin6_scope_id,
                    )
                    .into(),
                )
            }
            _ => None,
        }
    }

    /// What the kernel said about one received message, from its control messages.
    #[derive(Debug, Clone, Copy, Default)]
    struct Control {
        kernel_rx: Option<Duration>,
        drops: Option<u32>,
        segment: Option<usize>,
    }

    /// The receive timestamp, drop count and GRO segment size among a received message's
    /// control messages.
    fn control_messages(msg: &libc::msghdr) -> Control {
        let (mut kernel_rx, mut drops, mut segment) = (None, None, None);
        // Safety: msg was filled by a successful receive; the CMSG_* macros stay within
        // msg_controllen (0 when there is no control buffer), and payloads are read unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(msg);
            while !cmsg.is_null() {
                let c = &*cmsg;
                if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    kernel_rx = Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
                } else if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SO_RXQ_OVFL {
                    drops = Some(std::ptr::read_unaligned(
                        libc::CMSG_DATA(cmsg).cast::<u32>(),
                    ));
                } else if c.cmsg_level == libc::IPPROTO_UDP && c.cmsg_type == libc::UDP_GRO {
                    let size =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                    segment = usize::try_from(size).ok().filter(|&s| s > 0);
                }
                cmsg = libc::CMSG_NXTHDR(msg, cmsg);
            }
        }
        Control {
            kernel_rx,
            drops,
            segment,
        }
    }

    /// Reads every queued ICMP error, handing `f` the error and the start of the datagram that
    /// caused it (the kernel returns the original payload). Returns how many were read.
    pub fn drain_error_queue(
        socket: &UdpSocket,
        mut f: impl FnMut(IcmpError, &[u8]),
    ) -> io::Result<usize> {
        let mut payload = [0u8; 128];
        // u64 elements keep the control buffer aligned for cmsghdr.
        let mut control = [0u64; 64];
        let mut count = 0;
        loop {
            let mut iov = libc::iovec {
                iov_base: payload.as_mut_ptr().cast(),
                iov_len: payload.len(),
            };
            // Safety: an all-zero msghdr is a valid "no name, no control" value for recvmsg.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
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
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            let len = match received {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(count),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            count += 1;
            if let Some(error) = extended_error(&msg) {
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
                let is_ip6 =
                    c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_RECVERR;
                if is_ip || is_ip6 {
                    let err: libc::sock_extended_err =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    let from_icmp = err.ee_origin == libc::SO_EE_ORIGIN_ICMP
                        || err.ee_origin == libc::SO_EE_ORIGIN_ICMP6;
                    return from_icmp.then_some(IcmpError {
                        errno: err.ee_errno as i32,
                    });
                }
                cmsg = libc::CMSG_NXTHDR(msg, cmsg);
            }
        }
        None
    }

    /// Datagrams moved per `recvmmsg`/`sendmmsg` call.
    const BATCH: usize = 32;
    const SLOT: usize = 65_536;
    /// Control space per received slot: a timestamp, a drop counter and a GRO segment size,
    /// with their headers (96 bytes).
    const CONTROL_WORDS: usize = 12;
    /// Control space for one `UDP_SEGMENT` message: a u16 and its header, aligned (32 bytes).
    const GSO_CONTROL_WORDS: usize = 4;
    /// Most datagrams in one GSO send: the kernel's `UDP_MAX_SEGMENTS` (64 before Linux 6.x).
    const GSO_MAX_SEGMENTS: usize = 64;
    /// Most bytes in one GSO send: under the largest UDP payload over IPv4 (65 507).
    const GSO_MAX_BYTES: usize = 65_000;

    /// Errors with which a kernel, device or route refuses segmentation offload (not the
    /// datagrams themselves): the send is tried again one datagram at a time.
    fn refuses_gso(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT | libc::EMSGSIZE)
        )
    }

    /// Points `header` at `control` and writes one `UDP_SEGMENT` control message of `size`.
    fn write_segment_size(
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

    /// One `sendmmsg` of `count` prepared headers; how many messages went.
    fn send_messages(
        socket: &UdpSocket,
        headers: *mut libc::mmsghdr,
        count: usize,
    ) -> io::Result<usize> {
        socket.try_io(|| {
            // Safety: the caller prepared `count` headers at `headers`, each pointing at buffers
            // that live for the call.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    headers,
                    count as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        })
    }

    /// One datagram to `name` with `sendto`: less work for the kernel than a `sendmmsg` of one.
    fn send_one(
        socket: &UdpSocket,
        datagram: &[u8],
        name: &libc::sockaddr_storage,
        namelen: libc::socklen_t,
    ) -> io::Result<()> {
        socket.try_io(|| {
            // Safety: the datagram and the address live for the call, with their lengths passed
            // alongside.
            let n = unsafe {
                libc::sendto(
                    socket.as_raw_fd(),
                    datagram.as_ptr().cast(),
                    datagram.len(),
                    libc::MSG_DONTWAIT,
                    (name as *const libc::sockaddr_storage).cast(),
                    namelen,
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        })
    }

    /// One reply message of an echo batch: `len` bytes at `offset` in slot `slot`, holding
    /// `datagrams` datagrams; with `segment`, all but the last are that long (sent with GSO).
    #[derive(Debug, Clone, Copy)]
    struct Reply {
        slot: usize,
        offset: usize,
        len: usize,
        segment: Option<usize>,
        datagrams: usize,
    }

    /// Datagrams in batches: `recvmmsg` fills up to `BATCH` slots (data, sender, kernel
    /// metadata), and for an echo `sendmmsg` sends each slot's bytes back to its sender from the
    /// same memory, so an echo is never larger than what arrived. Two system calls per batch
    /// instead of two per datagram. A slot the kernel filled with several coalesced datagrams
    /// (`UDP_GRO`) goes back the same way, as one GSO message.
    pub struct MmsgBatch {
        data: Vec<u8>,
        names: Vec<libc::sockaddr_storage>,
        control: Vec<[u64; CONTROL_WORDS]>,
        iovecs: Vec<libc::iovec>,
        headers: Vec<libc::mmsghdr>,
        /// Each received slot's control messages, read once per receive.
        parsed: Vec<Control>,
        /// The replies of a batch, then their headers for `sendmmsg`.
        replies: Vec<Reply>,
        out_iovecs: Vec<libc::iovec>,
        out_control: Vec<[u64; GSO_CONTROL_WORDS]>,
        outgoing: Vec<libc::mmsghdr>,
        /// The kernel refused a GSO reply: coalesced datagrams go back one by one from now on.
        no_gso: bool,
        /// Headers the last receive may have changed (all of them before the first).
        used: usize,
        /// Slots the last receive call asked for, and the next one will (see `set_adaptive`).
        asked: usize,
        next_ask: usize,
        adaptive: bool,
    }

    // Safety: the raw pointers in iovecs/headers only ever point into this struct's own heap
    // buffers, and are rebuilt before every system call.
    unsafe impl Send for MmsgBatch {}

    impl Default for MmsgBatch {
        fn default() -> Self {
            Self::new()
        }
    }

    impl MmsgBatch {
        pub fn new() -> Self {
            Self {
                data: vec![0u8; BATCH * SLOT],
                // Safety: all-zero is a valid value for these plain C structs.
                names: vec![unsafe { std::mem::zeroed() }; BATCH],
                control: vec![[0u64; CONTROL_WORDS]; BATCH],
                iovecs: vec![unsafe { std::mem::zeroed() }; BATCH],
                headers: vec![unsafe { std::mem::zeroed() }; BATCH],
                parsed: vec![Control::default(); BATCH],
                replies: Vec::with_capacity(BATCH),
                out_iovecs: Vec::new(),
                out_control: Vec::new(),
                outgoing: Vec::new(),
                no_gso: false,
                used: BATCH,
                asked: BATCH,
                next_ask: BATCH,
                adaptive: false,
            }
        }

        /// Points the headers at their slots, ready to receive: those the last receive filled
        /// (the others are still as armed).
        fn arm_for_receive(&mut self) {
            let base = self.data.as_mut_ptr();
            for i in 0..std::mem::replace(&mut self.used, 1) {
                self.iovecs[i] = libc::iovec {
                    // Safety: i * SLOT + SLOT <= data.len().
                    iov_base: unsafe { base.add(i * SLOT) }.cast(),
                    iov_len: SLOT,
                };
                let h = &mut self.headers[i].msg_hdr;
                h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_iov = &mut self.iovecs[i];
                h.msg_iovlen = 1;
                h.msg_control = self.control[i].as_mut_ptr().cast();
                h.msg_controllen = std::mem::size_of::<[u64; CONTROL_WORDS]>() as _;
                h.msg_flags = 0;
                self.headers[i].msg_len = 0;
            }
        }

        /// For a caller that spins on receive (busy-poll): ask the kernel for about as many
        /// datagrams as came last time, doubling while calls come back full, so that one
        /// datagram at a time costs one attempt at the queue rather than two.
        pub fn set_adaptive(&mut self, on: bool) {
            self.adaptive = on;
            if !on {
                self.next_ask = BATCH;
            }
        }

        /// Receives up to a batch; returns how many slots were filled (0 when nothing was
        /// waiting). A slot holds one datagram, or several coalesced ones (see [`RecvMeta`]).
        pub fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            self.arm_for_receive();
            let ask = if self.adaptive { self.next_ask } else { BATCH };
            self.asked = ask;
            let headers = self.headers.as_mut_ptr();
            let result = socket.try_io(|| {
                // Safety: headers describe `ask` <= BATCH slots of this struct's buffers, all live
                // for the call; the kernel writes at most SLOT bytes and one sockaddr_storage per
                // slot.
                let n = unsafe {
                    libc::recvmmsg(
                        socket.as_raw_fd(),
                        headers,
                        ask as libc::c_uint,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(n) => {
                    for i in 0..n {
                        self.parsed[i] = control_messages(&self.headers[i].msg_hdr);
                    }
                    self.used = n.max(1);
                    if self.adaptive {
                        self.next_ask = if n == ask {
                            (ask * 2).min(BATCH)
                        } else {
                            n.max(1)
                        };
                    }
                    Ok(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                Err(e) => Err(e),
            }
        }

        /// Slots the last receive call asked for. A call that returned fewer found the queue
        /// empty: with edge-triggered readiness the next datagram raises a new event, so the
        /// caller can go back to waiting without another call to see `EAGAIN`.
        pub fn capacity(&self) -> usize {
            self.asked
        }

        /// The bytes of received slot `i`.
        pub fn payload(&self, i: usize) -> &[u8] {
            &self.data[i * SLOT..i * SLOT + self.headers[i].msg_len as usize]
        }

        /// Length, sender and kernel metadata of received slot `i` (`None` for an address
        /// family we do not know).
        pub fn meta(&self, i: usize) -> Option<RecvMeta> {
            let from = socket_addr(&self.names[i])?;
            let c = self.parsed[i];
            Some(RecvMeta {
                len: self.headers[i].msg_len as usize,
                from,
                kernel_rx: c.kernel_rx,
                drops: c.drops,
                segment: c.segment,
            })
        }

        /// Replies to the datagrams of the first `n` received slots, each to its sender:
        /// `decide(slot, datagram)` is called for every datagram in order (several per slot when
        /// coalesced), may rewrite it in place, and returns how many of its bytes to send back
        /// (capped at what arrived), or `None` for no reply. Coalesced datagrams go back
        /// coalesced. Returns how many replies the kernel refused (each is dropped, never
        /// retried in a loop).
        pub fn reply_with(
            &mut self,
            socket: &UdpSocket,
            n: usize,
            mut decide: impl FnMut(usize, &mut [u8]) -> Option<usize>,
        ) -> usize {
            self.replies.clear();
            for slot in 0..n {
                let arrived = self.headers[slot].msg_len as usize;
                let segment = self.parsed[slot].segment.unwrap_or(arrived).max(1);
                let max_run = if self.no_gso {
                    1
                } else {
                    GSO_MAX_SEGMENTS.min(GSO_MAX_BYTES / segment).max(1)
                };
                let base = slot * SLOT;
                // Replies are packed to the front of the slot, in order. A run of replies goes
                // as one message while all but its last are `segment` long.
                let (mut write, mut run) = (0usize, None::<Reply>);
                for (start, end) in datagram_ranges(arrived, segment) {
                    let Some(len) = decide(slot, &mut self.data[base + start..base + end]) else {
                        continue;
                    };
                    let len = len.min(end - start);
                    // A reflector never sends more than it received: no amplification, in any mode.
                    assert!(len <= end - start);
                    self.data
                        .copy_within(base + start..base + start + len, base + write);
                    let joins = run.as_ref().is_some_and(|r| {
                        r.len == r.datagrams * segment && r.datagrams < max_run && len > 0
                    });
                    match run.as_mut() {
                        Some(r) if joins => {
                            r.len += len;
                            r.datagrams += 1;
                            r.segment = Some(segment);
                        }
                        _ => {
                            self.replies.extend(run.take());
                            run = Some(Reply {
                                slot,
                                offset: write,
                                len,
                                segment: None,
                                datagrams: 1,
                            });
                        }
                    }
                    write += len;
                }
                self.replies.extend(run);
            }
            self.send_replies(socket)
        }

        /// Whether coalesced datagrams still go back coalesced (false once the kernel refused).
        pub fn gso(&self) -> bool {
            !self.no_gso
        }

        /// Sends the batch's replies with `sendmmsg`; how many datagrams the kernel refused.
        fn send_replies(&mut self, socket: &UdpSocket) -> usize {
            if let [r @ Reply { segment: None, .. }] = self.replies[..] {
                // One reply (ping-pong).
                let datagram = &self.data[r.slot * SLOT + r.offset..][..r.len];
                let namelen = self.headers[r.slot].msg_hdr.msg_namelen;
                let sent = send_one(socket, datagram, &self.names[r.slot], namelen);
                return usize::from(sent.is_err());
            }
            let k = self.replies.len();
            // Safety: all-zero is a valid value for these plain C structs.
            self.out_iovecs.resize(k, unsafe { std::mem::zeroed() });
            self.outgoing.resize(k, unsafe { std::mem::zeroed() });
            self.out_control.resize(k, [0u64; GSO_CONTROL_WORDS]);
            for (j, r) in self.replies.iter().enumerate() {
                self.out_iovecs[j] = libc::iovec {
                    iov_base: self.data[r.slot * SLOT + r.offset..].as_mut_ptr().cast(),
                    iov_len: r.len,
                };
                let h = &mut self.outgoing[j].msg_hdr;
                h.msg_name = (&mut self.names[r.slot] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = self.headers[r.slot].msg_hdr.msg_namelen;
                h.msg_iov = &mut self.out_iovecs[j];
                h.msg_iovlen = 1;
                h.msg_flags = 0;
                match r.segment {
                    Some(size) => write_segment_size(h, &mut self.out_control[j], size),
                    None => {
                        h.msg_control = std::ptr::null_mut();
                        h.msg_controllen = 0;
                    }
                }
            }
            let (mut start, mut refused) = (0, 0);
            while start < k {
                // Safety: outgoing[start..k] were just built over this struct's slots, names and
                // control buffers.
                let headers = unsafe { self.outgoing.as_mut_ptr().add(start) };
                match send_messages(socket, headers, k - start) {
                    Ok(sent) if sent > 0 => start += sent,
                    result => {
                        // The message at `start` could not go.
                        let r = self.replies[start];
                        match result {
                            Err(e) if r.segment.is_some() && refuses_gso(&e) => {
                                self.no_gso = true;
                                refused += self.send_one_by_one(socket, r);
                            }
                            _ => refused += r.datagrams,
                        }
                        start += 1;
                    }
                }
            }
            refused
        }

        /// Sends the datagrams of a coalesced reply one by one; how many were refused.
        fn send_one_by_one(&mut self, socket: &UdpSocket, r: Reply) -> usize {
            let segment = r.segment.unwrap_or(r.len).max(1);
            let reply = &self.data[r.slot * SLOT + r.offset..][..r.len];
            let namelen = self.headers[r.slot].msg_hdr.msg_namelen;
            datagram_ranges(r.len, segment)
                .filter(|&(start, end)| {
                    send_one(socket, &reply[start..end], &self.names[r.slot], namelen).is_err()
                })
                .count()
        }
    }

    /// Sends slots of a [`SendBatch`](super::SendBatch) to one destination with `sendmmsg`,
    /// each run of slots as one GSO message when asked.
    pub struct Sender {
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
        pub fn new(capacity: usize, target: std::net::SocketAddr) -> Self {
            let target = socket2::SockAddr::from(target);
            // Safety: all-zero is a valid sockaddr_storage; the copy is bounded by its size.
            let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let target_len = target.len();
            unsafe {
                std::ptr::copy_nonoverlapping(
                    target.as_ptr().cast::<u8>(),
                    (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
                    target_len as usize,
                );
            }
            Self {
                target: storage,
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

        pub fn set_gso(&mut self, on: bool) {
            self.gso = on && self.gso_refused.is_none();
        }

        pub fn gso(&self) -> bool {
            self.gso
        }

        pub fn gso_refused(&self) -> Option<&io::Error> {
            self.gso_refused.as_ref()
        }

        pub fn gso_runs(&self) -> u64 {
            self.gso_runs
        }

        /// Sends slots `from..len` of `data` (slots of `size` bytes): how many went, or the
        /// error of the first that could not.
        pub fn send(
            &mut self,
            socket: &UdpSocket,
            data: &mut [u8],
            size: usize,
            from: usize,
            len: usize,
        ) -> io::Result<usize> {
            let per_run = GSO_MAX_SEGMENTS.min(GSO_MAX_BYTES / size.max(1));
            if self.gso && len - from > 1 && per_run > 1 {
                match self.send_runs(socket, data, size, from, len, per_run) {
                    Err(e) if refuses_gso(&e) => {
                        // Switched off for good; the caller reports it once.
                        self.gso = false;
                        self.gso_refused = Some(e);
                    }
                    result => return result,
                }
            }
            if len - from == 1 {
                // One datagram (a window of one, a paced probe).
                let datagram = &data[from * size..(from + 1) * size];
                return send_one(socket, datagram, &self.target, self.target_len).map(|()| 1);
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
                h.msg_name = (&mut self.target as *mut libc::sockaddr_storage).cast();
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
            let runs = &self.runs[..sent];
            self.gso_runs += runs.iter().filter(|&&n| n > 1).count() as u64;
            Ok(runs.iter().sum())
        }
    }

    /// Lowers this thread's timer slack so that sleeps end when asked (the default slack is
    /// 50 µs, as long as a loopback round trip).
    pub fn set_timer_slack(slack: Duration) {
        // Safety: PR_SET_TIMERSLACK takes one unsigned long and touches only this thread.
        unsafe {
            libc::prctl(
                libc::PR_SET_TIMERSLACK,
                slack.as_nanos() as libc::c_ulong,
                0,
                0,
                0,
            );
        }
    }

    /// A `timerfd` the poll loop sleeps on when it needs to wake up with microsecond precision
    /// (epoll's own timeout counts whole milliseconds).
    pub struct PreciseTimer {
        fd: OwnedFd,
        armed: bool,
    }

    impl PreciseTimer {
        pub fn new() -> io::Result<Self> {
            // Safety: plain syscall; on success we own the returned descriptor.
            let fd = cvt(unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                )
            })?;
            // Safety: fd is a fresh descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            Ok(Self { fd, armed: false })
        }

        pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
            registry.register(
                &mut SourceFd(&self.fd.as_raw_fd()),
                token,
                Interest::READABLE,
            )
        }

        /// Fires once, `after` from now (a zero duration is raised to 1 ns: zero would disarm).
        pub fn arm(&mut self, after: Duration) -> io::Result<()> {
            let after = after.max(Duration::from_nanos(1));
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: after.as_secs() as libc::time_t,
                    tv_nsec: after.subsec_nanos() as libc::c_long,
                },
            };
            // Safety: fd is our timerfd; spec is a valid itimerspec; old value not requested.
            cvt(unsafe {
                libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut())
            })?;
            self.armed = true;
            Ok(())
        }

        /// Consumes an expiry so that the next one raises a fresh edge.
        pub fn acknowledge(&mut self) {
            let mut expirations = 0u64;
            // Safety: reads 8 bytes into a u64 from our non-blocking timerfd; EAGAIN is harmless.
            unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    (&mut expirations as *mut u64).cast(),
                    8,
                );
            }
            self.armed = false;
        }

        pub fn is_armed(&self) -> bool {
            self.armed
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;
    use mio::{Registry, Token};

    pub fn enable_icmp_errors(_: &UdpSocket, _: bool) -> io::Result<()> {
        Ok(())
    }

    pub fn drain_error_queue(_: &UdpSocket, _: impl FnMut(IcmpError, &[u8])) -> io::Result<usize> {
        Ok(0)
    }

    pub fn set_timer_slack(_: Duration) {}

    pub fn request_buffers(_: &UdpSocket, _: usize, _: usize) -> io::Result<()> {
        Ok(())
    }

    pub fn granted_buffers(_: &UdpSocket) -> io::Result<(usize, usize)> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "not on this platform",
        ))
    }

    pub fn enable_rx_metadata(_: &UdpSocket, _: bool) -> (bool, bool) {
        (false, false)
    }

    pub fn socket_drops(_: &UdpSocket) -> Option<u32> {
        None
    }

    pub fn enable_gro(_: &UdpSocket) -> bool {
        false
    }

    /// Without `sendmmsg`: one `send_to` per call.
    pub struct Sender {
        target: std::net::SocketAddr,
    }

    impl Sender {
        pub fn new(_capacity: usize, target: std::net::SocketAddr) -> Self {
            Self { target }
        }

        pub fn set_gso(&mut self, _: bool) {}

        pub fn gso(&self) -> bool {
            false
        }

        pub fn gso_refused(&self) -> Option<&io::Error> {
            None
        }

        pub fn gso_runs(&self) -> u64 {
            0
        }

        pub fn send(
            &mut self,
            socket: &UdpSocket,
            data: &mut [u8],
            size: usize,
            from: usize,
            _len: usize,
        ) -> io::Result<usize> {
            socket
                .send_to(&data[from * size..(from + 1) * size], self.target)
                .map(|_| 1)
        }
    }

    /// Without `recvmmsg`: batches of one datagram.
    pub struct MmsgBatch {
        data: Vec<u8>,
        got: Option<(usize, std::net::SocketAddr)>,
    }

    impl Default for MmsgBatch {
        fn default() -> Self {
            Self::new()
        }
    }

    impl MmsgBatch {
        pub fn new() -> Self {
            Self {
                data: vec![0u8; 65_536],
                got: None,
            }
        }

        pub fn set_adaptive(&mut self, _: bool) {}

        pub fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            match socket.recv_from(&mut self.data) {
                Ok(got) => {
                    self.got = Some(got);
                    Ok(1)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                Err(e) => Err(e),
            }
        }

        pub fn capacity(&self) -> usize {
            1
        }

        pub fn payload(&self, _: usize) -> &[u8] {
            &self.data[..self.got.map_or(0, |g| g.0)]
        }

        pub fn meta(&self, _: usize) -> Option<RecvMeta> {
            self.got.map(|(len, from)| RecvMeta {
                len,
                from,
                kernel_rx: None,
                drops: None,
                segment: None,
            })
        }

        pub fn reply_with(
            &mut self,
            socket: &UdpSocket,
            n: usize,
            mut decide: impl FnMut(usize, &mut [u8]) -> Option<usize>,
        ) -> usize {
            match self.got {
                Some((arrived, from)) if n > 0 => {
                    let Some(len) = decide(0, &mut self.data[..arrived]) else {
                        return 0;
                    };
                    let len = len.min(arrived);
                    assert!(len <= arrived);
                    usize::from(socket.send_to(&self.data[..len], from).is_err())
                }
                _ => 0,
            }
        }
    }

    /// Without timerfd the loop falls back to epoll's millisecond timeout and spinning.
    pub struct PreciseTimer;

    impl PreciseTimer {
        pub fn new() -> io::Result<Self> {
            Err(io::Error::new(io::ErrorKind::Unsupported, "no timerfd"))
        }
        pub fn register(&mut self, _: &Registry, _: Token) -> io::Result<()> {
            Ok(())
        }
        pub fn arm(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
        pub fn acknowledge(&mut self) {}
        pub fn is_armed(&self) -> bool {
            false
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn bound() -> (UdpSocket, SocketAddr) {
        let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        (socket, addr)
    }

    /// Receives on `socket` until `n` datagrams (or a short wait) and returns them.
    fn take(socket: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = [0u8; 65_536];
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while got.len() < n && std::time::Instant::now() < deadline {
            match socket.recv_from(&mut buf) {
                Ok((len, _)) => got.push(buf[..len].to_vec()),
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        got
    }

    /// Sends 10 datagrams of 100 bytes (datagram k filled with byte k) from `client` as one GSO
    /// run, and receives them on `echo` (GRO on): one slot.
    fn coalesced_run(client: &UdpSocket, echo: &UdpSocket) -> MmsgBatch {
        let client_addr = client.local_addr().unwrap();
        assert!(enable_gro(echo), "UDP_GRO refused by this kernel");
        let mut out = SendBatch::new(10, 100, echo.local_addr().unwrap());
        out.set_gso(true);
        for k in 0..10u8 {
            out.push().unwrap().fill(k);
        }
        assert_eq!(out.send(client, 0).unwrap(), 10);
        assert!(out.gso(), "{:?}", out.gso_refused());
        let mut batch = MmsgBatch::new();
        let mut slots = 0;
        for _ in 0..200 {
            slots = batch.receive(echo).unwrap();
            if slots > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(slots, 1, "the run should arrive as one buffer");
        let meta = batch.meta(0).unwrap();
        assert_eq!(
            (meta.len, meta.segment, meta.from),
            (1000, Some(100), client_addr)
        );
        let seen: Vec<u8> = meta.datagrams(batch.payload(0)).map(|d| d[0]).collect();
        assert_eq!(seen, (0..10).collect::<Vec<u8>>());
        batch
    }

    #[test]
    fn a_gso_run_arrives_coalesced_and_goes_back_as_the_datagrams_answered() {
        let (client, _) = bound();
        let (echo, _) = bound();
        let mut batch = coalesced_run(&client, &echo);
        let slots = 1;
        // Refuse 2 and 7, shorten 5 (so a run must end after it): replies 0 1 | 3 4 5' | 6 8 9.
        let mut calls = 0;
        let refused = batch.reply_with(&echo, slots, |slot, datagram| {
            assert_eq!(slot, 0);
            calls += 1;
            match datagram[0] {
                2 | 7 => None,
                5 => Some(40),
                _ => Some(1_000_000), // capped at what arrived
            }
        });
        assert_eq!((refused, calls), (0, 10));
        let replies = take(&client, 8);
        let summary: Vec<(u8, usize)> = replies.iter().map(|r| (r[0], r.len())).collect();
        assert_eq!(
            summary,
            [
                (0, 100),
                (1, 100),
                (3, 100),
                (4, 100),
                (5, 40),
                (6, 100),
                (8, 100),
                (9, 100)
            ]
        );
        for r in &replies {
            assert!(
                r.iter().all(|&b| b == r[0]),
                "a reply mixes datagrams: {r:?}"
            );
        }
    }

    #[test]
    fn an_echo_whose_gso_reply_is_refused_answers_one_by_one() {
        let (client, _) = bound();
        let (echo, _) = bound();
        let mut batch = coalesced_run(&client, &echo);
        // Without UDP checksums (SO_NO_CHECK) the kernel refuses GSO with EINVAL.
        imp::set_int_option(&echo, libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
        assert!(batch.gso());
        assert_eq!(batch.reply_with(&echo, 1, |_, d| Some(d.len())), 0);
        assert!(!batch.gso(), "the GSO reply should have been refused");
        let got: Vec<(u8, usize)> = take(&client, 10).iter().map(|d| (d[0], d.len())).collect();
        assert_eq!(got, (0..10).map(|k| (k, 100)).collect::<Vec<_>>());
    }

    #[test]
    fn a_kernel_refusing_gso_gets_one_datagram_per_message_and_nothing_is_lost() {
        let (client, _) = bound();
        let (echo, echo_addr) = bound();
        // Without UDP checksums (SO_NO_CHECK) the kernel refuses GSO with EINVAL.
        imp::set_int_option(&client, libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
        let mut out = SendBatch::new(8, 64, echo_addr);
        out.set_gso(true);
        for k in 0..8u8 {
            out.push().unwrap().fill(k);
        }
        assert_eq!(out.send(&client, 0).unwrap(), 8);
        assert!(!out.gso());
        assert_eq!(
            out.gso_refused().and_then(io::Error::raw_os_error),
            Some(libc::EINVAL)
        );
        let got: Vec<u8> = take(&echo, 8).iter().map(|d| d[0]).collect();
        assert_eq!(got, (0..8).collect::<Vec<u8>>());
        // Off for good: asking again does not turn it back on.
        out.set_gso(true);
        assert!(!out.gso());
    }

    #[test]
    fn datagrams_of_a_receive_split_at_the_segment_size() {
        let meta = |segment| RecvMeta {
            len: 0,
            from: "127.0.0.1:1".parse().unwrap(),
            kernel_rx: None,
            drops: None,
            segment,
        };
        let data = [0u8; 250];
        let sizes = |m: RecvMeta, d: &[u8]| m.datagrams(d).map(<[u8]>::len).collect::<Vec<_>>();
        assert_eq!(sizes(meta(Some(100)), &data), [100, 100, 50]);
        assert_eq!(sizes(meta(None), &data), [250]);
        // An empty datagram is still a datagram.
        assert_eq!(sizes(meta(None), &[]), [0]);
    }
}

//! Platform code at the syscall boundary: ICMP errors on unconnected UDP sockets, a precise
//! timer for the poll loop. Linux gets the real thing; elsewhere each piece degrades to a no-op
//! that the callers tolerate (no ICMP-based outage detection, millisecond pacing).

use mio::net::UdpSocket;
use std::io;
use std::time::Duration;

pub use imp::{
    drain_error_queue, enable_icmp_errors, enable_rx_metadata, granted_buffers, request_buffers,
    set_timer_slack, socket_drops, MmsgBatch, PreciseTimer,
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

    /// Sends slots `from..` (those pushed): how many left, or the error of the first that could
    /// not.
    pub fn send(&mut self, socket: &UdpSocket, from: usize) -> io::Result<usize> {
        self.sender
            .send(socket, &mut self.data, self.size, from, self.len)
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
        let on: libc::c_int = 1;
        // Safety: as in `set_int_option`.
        cvt(unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                level,
                name,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }

    fn set_int_option(socket: &UdpSocket, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
        // Safety: the fd is a live socket owned by `socket`; the value is a c_int that outlives
        // the call, and its size is passed alongside.
        cvt(unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
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
        set_int_option(socket, libc::SO_RCVBUF, clamp(rcv))?;
        set_int_option(socket, libc::SO_SNDBUF, clamp(snd))
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
            timestamps && set_int_option(socket, libc::SO_TIMESTAMPNS, 1).is_ok(),
            set_int_option(socket, libc::SO_RXQ_OVFL, 1).is_ok(),
        )
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

    /// The receive timestamp and drop count among a received message's control messages.
    fn control_messages(msg: &libc::msghdr) -> (Option<Duration>, Option<u32>) {
        let (mut kernel_rx, mut drops) = (None, None);
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
                }
                cmsg = libc::CMSG_NXTHDR(msg, cmsg);
            }
        }
        (kernel_rx, drops)
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

    /// Datagrams moved per `recvmmsg`/`sendmmsg` call (the echo's verdicts assume <= 64).
    const BATCH: usize = 32;
    const SLOT: usize = 65_536;
    /// Control space per slot: a timestamp and a drop counter, with headers (64 bytes).
    const CONTROL_WORDS: usize = 8;

    /// Datagrams in batches: `recvmmsg` fills up to `BATCH` slots (data, sender, kernel
    /// metadata), and for an echo `sendmmsg` sends each slot's bytes back to its sender from the
    /// same memory, so an echo is never larger than what arrived. Two system calls per batch
    /// instead of two per datagram.
    pub struct MmsgBatch {
        data: Vec<u8>,
        names: Vec<libc::sockaddr_storage>,
        control: Vec<[u64; CONTROL_WORDS]>,
        iovecs: Vec<libc::iovec>,
        headers: Vec<libc::mmsghdr>,
        /// The replies of a batch, compacted for `sendmmsg`.
        outgoing: Vec<libc::mmsghdr>,
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
                outgoing: vec![unsafe { std::mem::zeroed() }; BATCH],
            }
        }

        /// Points every header at its slot, ready to receive.
        fn arm_for_receive(&mut self) {
            let base = self.data.as_mut_ptr();
            for i in 0..BATCH {
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

        /// Receives up to a batch; returns how many datagrams arrived (0 when none were waiting).
        pub fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            self.arm_for_receive();
            let headers = self.headers.as_mut_ptr();
            let result = socket.try_io(|| {
                // Safety: headers describe BATCH slots of this struct's buffers, all live for the
                // call; the kernel writes at most SLOT bytes and one sockaddr_storage per slot.
                let n = unsafe {
                    libc::recvmmsg(
                        socket.as_raw_fd(),
                        headers,
                        BATCH as libc::c_uint,
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
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                Err(e) => Err(e),
            }
        }

        /// Datagrams one receive call can return. A call that returned fewer found the queue
        /// empty: with edge-triggered readiness the next datagram raises a new event, so the
        /// caller can go back to waiting without another call to see `EAGAIN`.
        pub fn capacity(&self) -> usize {
            BATCH
        }

        /// The bytes of received datagram `i`.
        pub fn payload(&self, i: usize) -> &[u8] {
            &self.data[i * SLOT..i * SLOT + self.headers[i].msg_len as usize]
        }

        /// Length, sender and kernel metadata of received datagram `i` (`None` for an address
        /// family we do not know).
        pub fn meta(&self, i: usize) -> Option<RecvMeta> {
            let from = socket_addr(&self.names[i])?;
            let (kernel_rx, drops) = control_messages(&self.headers[i].msg_hdr);
            Some(RecvMeta {
                len: self.headers[i].msg_len as usize,
                from,
                kernel_rx,
                drops,
            })
        }

        /// Replies to the first `n` received datagrams, each to its sender: `decide(i, datagram)`
        /// may rewrite datagram `i` in place and returns how many of its bytes to send back
        /// (capped at what arrived), or `None` for no reply. Returns how many replies the kernel
        /// refused (each is skipped, never retried in a loop).
        pub fn reply_with(
            &mut self,
            socket: &UdpSocket,
            n: usize,
            mut decide: impl FnMut(usize, &mut [u8]) -> Option<usize>,
        ) -> usize {
            let mut k = 0;
            for i in 0..n {
                let arrived = self.headers[i].msg_len as usize;
                let slot = &mut self.data[i * SLOT..i * SLOT + arrived];
                let Some(len) = decide(i, slot) else { continue };
                let len = len.min(arrived);
                // A reflector never sends more than it received: no amplification, in any mode.
                assert!(len <= arrived);
                self.iovecs[i].iov_len = len;
                let mut out = self.headers[i];
                out.msg_hdr.msg_iov = &mut self.iovecs[i];
                out.msg_hdr.msg_control = std::ptr::null_mut();
                out.msg_hdr.msg_controllen = 0;
                self.outgoing[k] = out;
                k += 1;
            }
            let mut start = 0;
            let mut refused = 0;
            while start < k {
                // Safety: outgoing[start..k] describe received slots of this struct's buffers,
                // with lengths no larger than what arrived and the senders' addresses.
                let headers = unsafe { self.outgoing.as_mut_ptr().add(start) };
                let sent = socket.try_io(|| {
                    let r = unsafe {
                        libc::sendmmsg(
                            socket.as_raw_fd(),
                            headers,
                            (k - start) as libc::c_uint,
                            libc::MSG_DONTWAIT,
                        )
                    };
                    if r < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(r as usize)
                    }
                });
                match sent {
                    Ok(0) | Err(_) => {
                        // The datagram at `start` could not go: drop it and carry on.
                        refused += 1;
                        start += 1;
                    }
                    Ok(sent) => start += sent,
                }
            }
            refused
        }
    }

    /// Sends slots of a [`SendBatch`](super::SendBatch) to one destination with `sendmmsg`.
    pub struct Sender {
        target: libc::sockaddr_storage,
        target_len: libc::socklen_t,
        iovecs: Vec<libc::iovec>,
        headers: Vec<libc::mmsghdr>,
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
            }
        }

        /// Sends slots `from..len` of `data` (slots of `size` bytes): how many left, or the
        /// error of the first that could not.
        pub fn send(
            &mut self,
            socket: &UdpSocket,
            data: &mut [u8],
            size: usize,
            from: usize,
            len: usize,
        ) -> io::Result<usize> {
            for i in from..len {
                self.iovecs[i] = libc::iovec {
                    iov_base: data[i * size..(i + 1) * size].as_mut_ptr().cast(),
                    iov_len: size,
                };
                let h = &mut self.headers[i].msg_hdr;
                h.msg_name = (&mut self.target as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = self.target_len;
                h.msg_iov = &mut self.iovecs[i];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
            }
            // Safety: headers[from..len] describe slots of `data` and this struct's target
            // address, all live for the call.
            let headers = unsafe { self.headers.as_mut_ptr().add(from) };
            let count = (len - from) as libc::c_uint;
            socket.try_io(|| {
                let n = unsafe { libc::sendmmsg(socket.as_raw_fd(), headers, count, 0) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            })
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

    /// Without `sendmmsg`: one `send_to` per call.
    pub struct Sender {
        target: std::net::SocketAddr,
    }

    impl Sender {
        pub fn new(_capacity: usize, target: std::net::SocketAddr) -> Self {
            Self { target }
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

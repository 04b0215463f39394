//! Receiving in batches (`recvmmsg`, with each slot's kernel metadata), and an echo's replies
//! sent back from the very slots they arrived in.

use super::send::{
    refuses_gso, send_messages, send_one, write_reply_control, ReplyControl, GSO_MAX_BYTES,
    GSO_MAX_SEGMENTS, REPLY_CONTROL_WORDS,
};
use super::{call, cvt_len};
use crate::sys::{datagram_ranges, Destination, RecvMeta};
use mio::net::UdpSocket;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Datagrams moved per `recvmmsg`/`sendmmsg` call.
const BATCH: usize = 32;
const SLOT: usize = 65_536;
/// Control space per received slot: a timestamp, a drop counter, a GRO segment size, a TTL or
/// hop limit, a TOS or traffic class and the destination address, with their headers (168
/// bytes; 176 kept), and the `scm_timestamping` (64) a kernel without `OPT_RX_FILTER` adds to
/// every datagram of a socket that asks for transmit timestamps.
const CONTROL_WORDS: usize = 30;
/// Adaptive reads of one datagram in a row (a ping-pong's) between tries for two: each try
/// costs the kernel a second look at the queue, and traffic that builds up is read in batches
/// again within this many reads.
pub(super) const SINGLES_BETWEEN_TRIES: u32 = 8;

pub(super) fn socket_addr(storage: &libc::sockaddr_storage) -> Option<std::net::SocketAddr> {
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

/// Points `header` at one message's buffers, ready to receive: room for the sender's address in
/// `name`, the data in `iov`, the control messages in `control`. (The kernel rewrites the
/// lengths and flags of each message it fills, so those are armed again before the next call.)
pub(super) fn arm_header(
    header: &mut libc::mmsghdr,
    name: &mut libc::sockaddr_storage,
    iov: &mut libc::iovec,
    control: &mut [u64],
) {
    let h = &mut header.msg_hdr;
    h.msg_name = (name as *mut libc::sockaddr_storage).cast();
    h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    h.msg_iov = iov;
    h.msg_iovlen = 1;
    h.msg_control = control.as_mut_ptr().cast();
    h.msg_controllen = std::mem::size_of_val(control) as _;
    h.msg_flags = 0;
    header.msg_len = 0;
}

/// What the kernel said about one received message, from its control messages.
#[derive(Debug, Clone, Copy, Default)]
struct Control {
    kernel_rx: Option<Duration>,
    drops: Option<u32>,
    segment: Option<usize>,
    ttl: Option<u8>,
    tos: Option<u8>,
    dst: Option<Destination>,
}

/// The receive timestamp, drop count, GRO segment size, TTL and TOS among a received message's
/// control messages.
fn control_messages(msg: &libc::msghdr) -> Control {
    let mut c = Control::default();
    // Safety: msg was filled by a successful receive; the CMSG_* macros stay within
    // msg_controllen (0 when there is no control buffer), and payloads are read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
            let data = libc::CMSG_DATA(cmsg);
            let int = || std::ptr::read_unaligned(data.cast::<libc::c_int>());
            match (level, kind) {
                (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                    let ts: libc::timespec = std::ptr::read_unaligned(data.cast());
                    c.kernel_rx = Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
                }
                (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                    c.drops = Some(std::ptr::read_unaligned(data.cast::<u32>()));
                }
                (libc::IPPROTO_UDP, libc::UDP_GRO) => {
                    c.segment = usize::try_from(int()).ok().filter(|&s| s > 0);
                }
                (libc::IPPROTO_IP, libc::IP_TTL) | (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                    c.ttl = u8::try_from(int()).ok();
                }
                // IPv4 gives the TOS as one byte, IPv6 the traffic class as an int.
                (libc::IPPROTO_IP, libc::IP_TOS) => c.tos = Some(*data),
                (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => c.tos = u8::try_from(int()).ok(),
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                    c.dst = Some(Destination {
                        addr: Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)).into(),
                        ifindex: info.ipi_ifindex as u32,
                    });
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                    c.dst = Some(Destination {
                        addr: Ipv6Addr::from(info.ipi6_addr.s6_addr).into(),
                        ifindex: info.ipi6_ifindex,
                    });
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    c
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
pub(crate) struct MmsgBatch {
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
    out_control: Vec<[u64; REPLY_CONTROL_WORDS]>,
    outgoing: Vec<libc::mmsghdr>,
    /// Replies go from the address each datagram was sent to (`set_reply_from_destination`).
    reply_from_destination: bool,
    /// Replies go with the DSCP each datagram came with (`set_reply_with_request_dscp`).
    reply_with_request_dscp: bool,
    /// The kernel refused a GSO reply: coalesced datagrams go back one by one from now on.
    no_gso: bool,
    /// Headers the last receive may have changed (all of them before the first).
    used: usize,
    /// Slots the last receive call asked for, and the next one will (see `set_adaptive`).
    asked: usize,
    next_ask: usize,
    adaptive: bool,
    /// Adaptive reads of one datagram that asked for one, since the last try for two.
    singles: u32,
    /// The most a receive asks for (see `set_ask_limit`).
    ask_limit: usize,
    /// Whether the socket may deliver control messages (see `set_control_messages`).
    control_messages: bool,
    /// The clock read right after the last receive that brought datagrams, when asked for
    /// (`set_stamp_reads`).
    stamp_reads: bool,
    read_at: Option<Instant>,
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
    pub(crate) fn new() -> Self {
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
            reply_from_destination: false,
            reply_with_request_dscp: false,
            outgoing: Vec::new(),
            no_gso: false,
            used: BATCH,
            asked: BATCH,
            next_ask: BATCH,
            adaptive: false,
            singles: 0,
            ask_limit: BATCH,
            control_messages: true,
            stamp_reads: false,
            read_at: None,
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
            arm_header(
                &mut self.headers[i],
                &mut self.names[i],
                &mut self.iovecs[i],
                &mut self.control[i],
            );
        }
    }

    /// For a caller that spins on receive (busy-poll) or waits in it: ask the kernel for about
    /// as many datagrams as came last time, doubling while calls come back full (from one, only
    /// now and then: [`SINGLES_BETWEEN_TRIES`]), so that one datagram at a time costs one
    /// attempt at the queue rather than two.
    pub(crate) fn set_adaptive(&mut self, on: bool) {
        self.adaptive = on;
        if !on {
            self.next_ask = BATCH;
        }
    }

    /// A receive asks for at most `n` datagrams: a caller that knows no more can be due (a
    /// pinger with one probe in flight) reads a lone one with one `recvfrom`, rather than try
    /// for a second. (With fewer asked, a call that comes back full no longer says the queue
    /// held no more: for a caller that reads again at once.)
    pub(crate) fn set_ask_limit(&mut self, n: usize) {
        self.ask_limit = n.clamp(1, BATCH);
    }

    /// Says that the socket has no control message to deliver (no receive option is on), so
    /// that a receive of one datagram can be a `recvfrom`: no message header to copy in and
    /// out, about a tenth of the kernel's work in a busy-polling turn.
    pub(crate) fn set_control_messages(&mut self, on: bool) {
        self.control_messages = on;
    }

    /// Reads the clock right after each receive that brings datagrams ([`Self::read_at`]): the
    /// earliest a user-space receive time can be taken, before anything else is done.
    pub(crate) fn set_stamp_reads(&mut self, on: bool) {
        self.stamp_reads = on;
        self.read_at = None;
    }

    /// When the last receive returned, where asked for (`set_stamp_reads`) and datagrams came.
    pub(crate) fn read_at(&self) -> Option<Instant> {
        self.read_at
    }

    /// Receives up to a batch; returns how many slots were filled (0 when nothing was
    /// waiting). A slot holds one datagram, or several coalesced ones (see [`RecvMeta`]). When
    /// `wait`, waits for the first datagram (on a socket set up with [`super::wait_in_reads`])
    /// and takes what else is queued with it: 0 then means the wait timed out, and
    /// `Interrupted` that a signal cut it short.
    pub(crate) fn receive(&mut self, socket: &UdpSocket, wait: bool) -> io::Result<usize> {
        let flags = match wait {
            true => libc::MSG_WAITFORONE,
            false => libc::MSG_DONTWAIT,
        };
        let ask = match self.adaptive {
            true => self.next_ask,
            false => BATCH,
        };
        let ask = ask.min(self.ask_limit);
        if ask == 1 && !self.control_messages {
            // One datagram: a wait for the first is a wait for it.
            return self.receive_one(socket, flags & libc::MSG_DONTWAIT);
        }
        self.arm_for_receive();
        self.asked = ask;
        let headers = self.headers.as_mut_ptr();
        let result = socket.try_io(|| {
            if ask == 1 {
                // One datagram: `recvmsg`, less of the kernel's work than a `recvmmsg` of one.
                // Safety: header 0 describes slot 0 of this struct's buffers, live for the call.
                let n = unsafe {
                    call::recvmsg(
                        socket.as_raw_fd(),
                        &mut (*headers).msg_hdr,
                        flags & libc::MSG_DONTWAIT,
                    )
                };
                // Safety: header 0 is this struct's, and no other reference to it is live.
                return cvt_len(n).map(|len| unsafe {
                    (*headers).msg_len = len as libc::c_uint;
                    1
                });
            }
            // Safety: headers describe `ask` <= BATCH slots of this struct's buffers, all live
            // for the call; the kernel writes at most SLOT bytes and one sockaddr_storage per
            // slot.
            let n = unsafe { call::recvmmsg(socket.as_raw_fd(), headers, ask, flags) };
            cvt_len(n)
        });
        self.read_at = None;
        match result {
            Ok(n) => {
                self.stamp();
                for i in 0..n {
                    self.parsed[i] = control_messages(&self.headers[i].msg_hdr);
                }
                self.used = n.max(1);
                if self.adaptive {
                    self.next_ask = match n == ask {
                        true if ask == 1 => self.after_single(),
                        true => {
                            self.singles = 0;
                            (ask * 2).min(BATCH)
                        }
                        false => n.max(1),
                    };
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing waited: the next datagram is looked for alone, with one attempt at
                // the queue (a call for several tries again for a second after the first).
                self.next_ask = 1;
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Receives one datagram into slot 0 with `recvfrom` (the socket has no control message
    /// to give): 1, or 0 when nothing was waiting.
    fn receive_one(&mut self, socket: &UdpSocket, flags: libc::c_int) -> io::Result<usize> {
        self.asked = 1;
        let data = self.data.as_mut_ptr();
        let name = (&mut self.names[0] as *mut libc::sockaddr_storage).cast();
        let mut namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let result = socket.try_io(|| {
            // Safety: slot 0 is SLOT bytes of this struct's buffer and names[0] a whole
            // sockaddr_storage, both live for the call.
            let n = unsafe {
                call::recvfrom(socket.as_raw_fd(), data, SLOT, flags, name, &mut namelen)
            };
            cvt_len(n)
        });
        self.read_at = None;
        match result {
            Ok(n) => {
                self.stamp();
                // Slot 0 reads as a `recvmmsg` would have left it; its header is armed again
                // before the next `recvmmsg` (`used` is at least 1).
                self.headers[0].msg_len = n as libc::c_uint;
                self.headers[0].msg_hdr.msg_namelen = namelen;
                self.parsed[0] = Control::default();
                self.next_ask = self.after_single();
                Ok(1)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn stamp(&mut self) {
        if self.stamp_reads {
            self.read_at = Some(Instant::now());
        }
    }

    /// What to ask for after a read that asked for one datagram and got it: one again (a
    /// ping-pong's next read), two now and then to see whether more wait.
    fn after_single(&mut self) -> usize {
        self.singles = (self.singles + 1) % SINGLES_BETWEEN_TRIES;
        match self.singles {
            0 => 2,
            _ => 1,
        }
    }

    /// Slots the last receive call asked for. A call that returned fewer found the queue
    /// empty: with edge-triggered readiness the next datagram raises a new event, so the
    /// caller can go back to waiting without another call to see `EAGAIN`.
    pub(crate) fn capacity(&self) -> usize {
        self.asked
    }

    /// Whether the last receive call asked for a whole batch (not a smaller adaptive or
    /// limited ask).
    pub(crate) fn asked_whole_batch(&self) -> bool {
        self.asked >= BATCH
    }

    /// The bytes of received slot `i`.
    pub(crate) fn payload(&self, i: usize) -> &[u8] {
        &self.data[i * SLOT..i * SLOT + self.headers[i].msg_len as usize]
    }

    /// Length, sender and kernel metadata of received slot `i` (`None` for an address
    /// family we do not know).
    pub(crate) fn meta(&self, i: usize) -> Option<RecvMeta> {
        let from = socket_addr(&self.names[i])?;
        let c = self.parsed[i];
        Some(RecvMeta {
            len: self.headers[i].msg_len as usize,
            from,
            kernel_rx: c.kernel_rx,
            drops: c.drops,
            segment: c.segment,
            ttl: c.ttl,
            tos: c.tos,
            dst: c.dst,
        })
    }

    /// Replies to the datagrams of the first `n` received slots, each to its sender:
    /// `decide(slot, datagram)` is called for every datagram in order (several per slot when
    /// coalesced), may rewrite it in place, and returns how many of its bytes to send back
    /// (capped at what arrived), or `None` for no reply. Coalesced datagrams go back
    /// coalesced. `seal` then gets every reply, just before they go (last touches, such as
    /// a send time). Returns how many replies the kernel refused (each is dropped, never
    /// retried in a loop).
    pub(crate) fn reply_with(
        &mut self,
        socket: &UdpSocket,
        n: usize,
        mut decide: impl FnMut(usize, &mut [u8]) -> Option<usize>,
        mut seal: impl FnMut(&mut [u8]),
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
                if write != start {
                    // (Packed behind an earlier datagram left unanswered.)
                    self.data
                        .copy_within(base + start..base + start + len, base + write);
                }
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
        for r in &self.replies {
            let at = r.slot * SLOT + r.offset;
            let segment = r.segment.unwrap_or(r.len).max(1);
            for (start, end) in datagram_ranges(r.len, segment) {
                seal(&mut self.data[at + start..at + end]);
            }
        }
        self.send_replies(socket)
    }

    /// Replies to slot 0 when it holds one datagram (ping-pong's case): as `reply_with` for
    /// one slot, without its per-batch bookkeeping. The reply's length and whether the kernel
    /// refused it; `None` when `decide` says no reply.
    pub(crate) fn reply_single(
        &mut self,
        socket: &UdpSocket,
        decide: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<(usize, bool)> {
        debug_assert!(self.parsed[0].segment.is_none());
        let arrived = self.headers[0].msg_len as usize;
        // A reflector never sends more than it received.
        let len = decide(&mut self.data[..arrived])?.min(arrived);
        let namelen = self.headers[0].msg_hdr.msg_namelen;
        let reply = self.reply_control(0);
        let sent = send_one(socket, &self.data[..len], &self.names[0], namelen, &reply);
        Some((len, sent.is_err()))
    }

    /// Whether coalesced datagrams still go back coalesced (false once the kernel refused).
    #[cfg(test)]
    pub(crate) fn gso(&self) -> bool {
        !self.no_gso
    }

    /// Answers from the address each datagram was sent to, as the kernel said it
    /// (`enable_recv_destination`), rather than from whichever the routing picks: a socket bound
    /// to a wildcard address then answers at every address as it was asked.
    pub(crate) fn set_reply_from_destination(&mut self, on: bool) {
        self.reply_from_destination = on;
    }

    /// Answers with the DSCP each datagram arrived with (ECN not-ECT), as the kernel said it
    /// (`enable_recv_tos`), rather than the socket's.
    pub(crate) fn set_reply_with_request_dscp(&mut self, on: bool) {
        self.reply_with_request_dscp = on;
    }

    /// What the replies to slot `slot` go with: where from (`None`: the routing's choice), and
    /// which TOS (`None`: the socket's).
    fn reply_control(&self, slot: usize) -> ReplyControl {
        let c = &self.parsed[slot];
        let tos = c.tos.filter(|_| self.reply_with_request_dscp);
        ReplyControl {
            from: c.dst.filter(|_| self.reply_from_destination),
            tos: tos.map(|t| t & !0b11),
            ipv4_peer: tos.is_some() && is_ipv4_peer(&self.names[slot]),
        }
    }

    /// Sends the batch's replies with `sendmmsg`; how many datagrams the kernel refused.
    fn send_replies(&mut self, socket: &UdpSocket) -> usize {
        if let [r @ Reply { segment: None, .. }] = self.replies[..] {
            // One reply (ping-pong).
            let datagram = &self.data[r.slot * SLOT + r.offset..][..r.len];
            let namelen = self.headers[r.slot].msg_hdr.msg_namelen;
            let reply = self.reply_control(r.slot);
            let sent = send_one(socket, datagram, &self.names[r.slot], namelen, &reply);
            return usize::from(sent.is_err());
        }
        let k = self.replies.len();
        // Safety: all-zero is a valid value for these plain C structs.
        self.out_iovecs.resize(k, unsafe { std::mem::zeroed() });
        self.outgoing.resize(k, unsafe { std::mem::zeroed() });
        self.out_control.resize(k, [0u64; REPLY_CONTROL_WORDS]);
        for j in 0..k {
            let r = self.replies[j];
            let control = self.reply_control(r.slot);
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
            write_reply_control(h, &mut self.out_control[j], r.segment, &control);
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
        let bytes = &self.data[r.slot * SLOT + r.offset..][..r.len];
        let namelen = self.headers[r.slot].msg_hdr.msg_namelen;
        let control = self.reply_control(r.slot);
        datagram_ranges(r.len, segment)
            .filter(|&(start, end)| {
                send_one(
                    socket,
                    &bytes[start..end],
                    &self.names[r.slot],
                    namelen,
                    &control,
                )
                .is_err()
            })
            .count()
    }
}

/// Whether a peer's address is IPv4, or IPv4 mapped into IPv6 (what an IPv6 socket sees of an
/// IPv4 peer): its packets take IPv4's options.
fn is_ipv4_peer(name: &libc::sockaddr_storage) -> bool {
    match libc::c_int::from(name.ss_family) {
        libc::AF_INET => true,
        libc::AF_INET6 => {
            // Safety: a sockaddr_storage of family AF_INET6 holds a sockaddr_in6.
            let v6 =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr)
                .to_ipv4_mapped()
                .is_some()
        }
        _ => false,
    }
}

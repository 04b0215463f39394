//! Platform code at the syscall boundary, and nothing else: this module knows sockets and
//! clocks, not probes, and depends on nothing else in the crate.
//!
//! The portable types live here ([`RecvMeta`], [`IcmpError`], [`SendBatch`]); one file per
//! platform provides the rest under a single module name, chosen with `#[cfg]` and `#[path]` so
//! that callers never see a `cfg`. Linux (`linux/`) has the real thing; `fallback.rs` serves
//! every other platform with one datagram a call. Each platform must provide:
//!
//! | item | what it does | fallback |
//! |---|---|---|
//! | `request_buffers`, `granted_buffers` | ask for socket buffers, read what was granted | no-op, unknown |
//! | `enable_rx_metadata` | kernel receive timestamps, the receive-queue drop counter | neither |
//! | `socket_drops` | datagrams the socket dropped for want of room | unknown |
//! | `enable_gro` | take coalesced datagrams (`UDP_GRO`) | refused |
//! | `enable_recv_ttl` | each datagram's TTL or hop limit | refused |
//! | `enable_recv_tos`, `set_tos` | each datagram's TOS / traffic class; the one sent with | refused |
//! | `set_ttl`, `bind_to_device` | the TTL sent with; one interface only (`SO_BINDTODEVICE`) | refused |
//! | `set_dont_fragment` | don't-fragment on every datagram (too big: `EMSGSIZE`, MTU queued) | refused |
//! | `enable_recv_destination` | each datagram's destination address (`MmsgBatch` answers from it) | refused |
//! | `MmsgBatch::set_reply_with_request_dscp` | answer with each request's DSCP (a TOS control message) | ignored |
//! | `wall_clock` | CLOCK_REALTIME, cheaply | `SystemTime` |
//! | `clock_quality` | whether the wall clock is synchronised, and its error (`adjtimex`) | unknown |
//! | `enable_icmp_errors`, `ErrorQueue` | ICMP errors of an unconnected socket, the MTU of a datagram found too big, transmit timestamps | none |
//! | `route_interface`, `hardware_stamps` | the interface toward an address; whether it stamps packets in hardware (`ETHTOOL_GET_TS_INFO`) | refused |
//! | `enable_tx_timestamps` | the kernel's time for each message sent, on the error queue (`SO_TIMESTAMPING`) | refused |
//! | `MmsgBatch` | receive in batches with metadata; reply from the same slots | one datagram |
//! | `Sender` | send slots of a [`SendBatch`] (`sendmmsg`, GSO runs) | one `send_to` |
//! | `PreciseTimer`, `set_timer_slack` | microsecond wake-ups | none: the loop spins |
//! | `wait_in_reads`, `MmsgBatch::receive(.., wait)` | a read that waits for the next datagram (up to a cap) | refused |
//! | `threads_in_process`, `signal_interrupts_calls` | whether a signal reaches a loop's blocked read | unknown, refused |

use mio::net::UdpSocket;
use std::io;
use std::time::Duration;

#[cfg(target_os = "linux")]
#[path = "linux/mod.rs"]
mod imp;

#[cfg(not(target_os = "linux"))]
#[path = "fallback.rs"]
mod imp;

pub(crate) use imp::{
    bind_to_device, clock_quality, enable_gro, enable_icmp_errors, enable_recv_destination,
    enable_recv_tos, enable_recv_ttl, enable_rx_metadata, enable_tx_timestamps, granted_buffers,
    hardware_stamps, request_buffers, route_interface, set_dont_fragment, set_timer_slack, set_tos,
    set_ttl, signal_interrupts_calls, socket_drops, steady_malloc, threads_in_process,
    wait_in_reads, wall_clock, ErrorQueue, MmsgBatch, PreciseTimer,
};

/// Whether `socket` has room to send now (a `poll` that does not wait): for a loop that spins
/// on its sockets instead of registering them with epoll.
#[cfg(unix)]
pub(crate) fn writable(socket: &UdpSocket) -> bool {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // Safety: one live pollfd, and a zero timeout.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready > 0 && fd.revents & libc::POLLOUT != 0
}

/// Without `poll`: assume room (a send that finds none is refused and counted as such).
#[cfg(not(unix))]
pub(crate) fn writable(_: &UdpSocket) -> bool {
    true
}

/// One received datagram and what the kernel said about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecvMeta {
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
    /// The TTL (IPv4) or hop limit (IPv6) it arrived with, once asked for (`enable_recv_ttl`).
    pub ttl: Option<u8>,
    /// The TOS byte (IPv4) or traffic class (IPv6) it arrived with, once asked for
    /// (`enable_recv_tos`).
    pub tos: Option<u8>,
    /// The address it was sent to, and the interface it came in on, once asked for
    /// (`enable_recv_destination`): where an answer should come from.
    pub dst: Option<Destination>,
}

/// The local address a datagram was sent to, and the interface it arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Destination {
    pub addr: std::net::IpAddr,
    pub ifindex: u32,
}

impl RecvMeta {
    /// The bytes of each datagram in `payload` (this meta's receive).
    pub(crate) fn datagrams<'p>(&self, payload: &'p [u8]) -> impl Iterator<Item = &'p [u8]> {
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
pub(crate) struct IcmpError {
    /// The errno it maps to (`ECONNREFUSED` for port unreachable, `EHOSTUNREACH`, ...).
    pub errno: i32,
    /// With `EMSGSIZE`: the path MTU it reports, from a router's "fragmentation needed" /
    /// "packet too big" or from this host's own check of a don't-fragment datagram.
    pub mtu: Option<u32>,
    /// Where the datagram was going (the kernel gives the original destination), when known.
    pub to: Option<std::net::SocketAddr>,
}

impl IcmpError {
    /// The datagram did not fit the path with don't-fragment set.
    pub(crate) fn too_big(&self) -> bool {
        self.errno == libc::EMSGSIZE
    }
}

/// What hardware timestamping an interface offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HardwareStamps {
    /// It stamps packets sent.
    pub tx: bool,
    /// It stamps packets received, in its own clock's time.
    pub rx: bool,
    /// Its clock (`/dev/ptpN`), when it has one.
    pub clock: Option<u32>,
}

/// One message of a socket's error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Only Linux has an error queue to read them from.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) enum Queued<'a> {
    /// An ICMP error, with the start of the datagram that caused it (a local error has none).
    Icmp(IcmpError, &'a [u8]),
    /// The kernel's time for message number `key` sent on the socket (counted from 0 when
    /// transmit timestamps were turned on; a GSO run is one message): CLOCK_REALTIME, since the
    /// Unix epoch.
    Sent { key: u32, at: Duration },
}

/// Datagrams to one destination, filled slot by slot and sent in one call (`sendmmsg` on
/// Linux, one `send_to` at a time elsewhere). Each slot holds its own bytes.
pub(crate) struct SendBatch {
    data: Vec<u8>,
    size: usize,
    len: usize,
    capacity: usize,
    sender: imp::Sender,
}

impl SendBatch {
    /// Room for `capacity` datagrams of `size` bytes to `target`.
    pub(crate) fn new(capacity: usize, size: usize, target: std::net::SocketAddr) -> Self {
        Self {
            data: vec![0u8; capacity * size],
            size,
            len: 0,
            capacity,
            sender: imp::Sender::new(capacity, target),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// The next slot, to be filled; `None` when the batch is full.
    pub(crate) fn push(&mut self) -> Option<&mut [u8]> {
        if self.len == self.capacity {
            return None;
        }
        self.len += 1;
        Some(self.slot_mut(self.len - 1))
    }

    pub(crate) fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.data[i * self.size..(i + 1) * self.size]
    }

    /// Sends slots `from..` (those pushed): how many went, or the error of the first that could
    /// not.
    pub(crate) fn send(&mut self, socket: &UdpSocket, from: usize) -> io::Result<usize> {
        self.sender
            .send(socket, &mut self.data, self.size, from, self.len)
    }

    /// Sends slot `i` alone, as [`SendBatch::send`] would (never waiting for room).
    pub(crate) fn send_slot(&mut self, socket: &UdpSocket, i: usize) -> io::Result<()> {
        debug_assert!(i < self.len);
        self.sender
            .send(socket, &mut self.data, self.size, i, i + 1)
            .map(drop)
    }

    /// Sends runs of slots as one buffer the kernel cuts into datagrams (UDP GSO): one trip
    /// through the stack per run instead of one per datagram. Linux only; a kernel or route that
    /// refuses it turns it off for good, see [`SendBatch::gso_refused`].
    pub(crate) fn set_gso(&mut self, on: bool) {
        self.sender.set_gso(on);
    }

    /// Sends the datagrams pushed from now on to `target` (the batch must be empty).
    pub(crate) fn set_target(&mut self, target: std::net::SocketAddr) {
        debug_assert_eq!(self.len, 0);
        self.sender.set_target(target);
    }

    /// The socket is connected to the target: send without an address.
    pub(crate) fn set_connected(&mut self, on: bool) {
        self.sender.set_connected(on);
    }

    #[cfg(test)]
    pub(crate) fn gso(&self) -> bool {
        self.sender.gso()
    }

    /// Why GSO was switched off at run time, if it was.
    pub(crate) fn gso_refused(&self) -> Option<&io::Error> {
        self.sender.gso_refused()
    }

    /// Datagrams in each message of the last [`SendBatch::send`], those that went (the kernel
    /// numbers messages, not datagrams, for transmit timestamps).
    pub(crate) fn last_messages(&self) -> &[usize] {
        self.sender.last_messages()
    }

    /// Runs of datagrams sent as one GSO message so far.
    pub(crate) fn gso_runs(&self) -> u64 {
        self.sender.gso_runs()
    }
}

//! Elsewhere: one datagram a call, no kernel metadata, no error queue, no precise timer. Each
//! piece degrades to what the callers tolerate (no ICMP-based outage detection, millisecond
//! pacing).

use crate::sys::{Queued, RecvMeta};
use mio::net::UdpSocket;
use std::io;
use std::time::Duration;

use mio::{Registry, Token};

pub(crate) fn enable_icmp_errors(_: &UdpSocket, _: bool) -> io::Result<()> {
    Ok(())
}

/// No error queue: nothing is ever queued.
#[derive(Default)]
pub(crate) struct ErrorQueue;

impl ErrorQueue {
    pub(crate) fn new() -> Self {
        Self
    }

    pub(crate) fn drain(&mut self, _: &UdpSocket, _: impl FnMut(Queued<'_>)) -> io::Result<usize> {
        Ok(0)
    }
}

pub(crate) fn route_interface(_: std::net::SocketAddr) -> io::Result<String> {
    Err(io::ErrorKind::Unsupported.into())
}

pub(crate) fn hardware_stamps(_: &str) -> io::Result<crate::sys::HardwareStamps> {
    Err(io::ErrorKind::Unsupported.into())
}

pub(crate) fn enable_tx_timestamps(_: &UdpSocket) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

pub(crate) fn set_timer_slack(_: Duration) {}

/// Not here: the loop waits in its poll, and reads without waiting.
pub(crate) fn wait_in_reads(_: &UdpSocket, _: Option<Duration>) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Not counted here.
pub(crate) fn threads_in_process() -> Option<usize> {
    None
}

/// Not here (no loop waits in a read).
pub(crate) fn signal_interrupts_calls(_: i32) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

pub(crate) fn steady_malloc() {}

pub(crate) fn request_buffers(_: &UdpSocket, _: usize, _: usize) -> io::Result<()> {
    Ok(())
}

pub(crate) fn granted_buffers(_: &UdpSocket) -> io::Result<(usize, usize)> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "not on this platform",
    ))
}

pub(crate) fn enable_rx_metadata(_: &UdpSocket, _: bool, _: bool) -> (bool, bool) {
    (false, false)
}

pub(crate) fn socket_drops(_: &UdpSocket) -> Option<u32> {
    None
}

pub(crate) fn enable_gro(_: &UdpSocket) -> bool {
    false
}

pub(crate) fn enable_recv_ttl(_: &UdpSocket, _: bool) -> bool {
    false
}

pub(crate) fn enable_recv_tos(_: &UdpSocket, _: bool) -> bool {
    false
}

pub(crate) fn enable_recv_destination(_: &UdpSocket, _: bool) -> bool {
    false
}

pub(crate) fn set_ttl(socket: &UdpSocket, ipv6: bool, ttl: u8) -> io::Result<()> {
    if ipv6 {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "setting the hop limit is not supported on this platform",
        ))
    } else {
        socket.set_ttl(u32::from(ttl))
    }
}

pub(crate) fn bind_to_device(_: &UdpSocket, _: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "binding to an interface is not supported on this platform",
    ))
}

pub(crate) fn set_tos(_: &UdpSocket, _: bool, _: u8) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "setting the TOS byte is not supported on this platform",
    ))
}

pub(crate) fn set_dont_fragment(_: &UdpSocket, _: bool) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "setting don't-fragment is not supported on this platform",
    ))
}

pub(crate) fn clock_quality() -> Option<(bool, Duration)> {
    None
}

pub(crate) fn wall_clock() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Without `sendmmsg`: one `send_to` per call.
pub(crate) struct Sender {
    target: std::net::SocketAddr,
    connected: bool,
}

impl Sender {
    pub(crate) fn new(_capacity: usize, target: std::net::SocketAddr) -> Self {
        Self {
            target,
            connected: false,
        }
    }

    pub(crate) fn set_gso(&mut self, _: bool) {}

    pub(crate) fn set_target(&mut self, target: std::net::SocketAddr) {
        self.target = target;
    }

    /// A connected socket sends without an address (BSDs refuse one: `EISCONN`).
    pub(crate) fn set_connected(&mut self, on: bool) {
        self.connected = on;
    }

    pub(crate) fn gso_refused(&self) -> Option<&io::Error> {
        None
    }

    pub(crate) fn gso_runs(&self) -> u64 {
        0
    }

    pub(crate) fn last_messages(&self) -> &[usize] {
        &[1]
    }

    pub(crate) fn send(
        &mut self,
        socket: &UdpSocket,
        data: &mut [u8],
        size: usize,
        from: usize,
        _len: usize,
    ) -> io::Result<usize> {
        let datagram = &data[from * size..(from + 1) * size];
        if self.connected {
            socket.send(datagram).map(|_| 1)
        } else {
            socket.send_to(datagram, self.target).map(|_| 1)
        }
    }
}

/// Without `recvmmsg`: batches of one datagram.
pub(crate) struct MmsgBatch {
    data: Vec<u8>,
    got: Option<(usize, std::net::SocketAddr)>,
}

impl Default for MmsgBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl MmsgBatch {
    pub(crate) fn new() -> Self {
        Self {
            data: vec![0u8; 65_536],
            got: None,
        }
    }

    pub(crate) fn set_adaptive(&mut self, _: bool) {}

    pub(crate) fn set_ask_limit(&mut self, _: usize) {}

    /// One datagram per receive here already.
    pub(crate) fn set_control_messages(&mut self, _: bool) {}

    /// Not here: the caller reads the clock itself.
    pub(crate) fn set_stamp_reads(&mut self, _: bool) {}

    pub(crate) fn read_at(&self) -> Option<std::time::Instant> {
        None
    }

    /// Not on this platform: replies go from the routing's choice of address.
    pub(crate) fn set_reply_from_destination(&mut self, _: bool) {}

    pub(crate) fn set_reply_with_request_dscp(&mut self, _: bool) {}

    /// Never waits here, whatever `wait` says ([`wait_in_reads`] refuses).
    pub(crate) fn receive(&mut self, socket: &UdpSocket, _wait: bool) -> io::Result<usize> {
        match socket.recv_from(&mut self.data) {
            Ok(got) => {
                self.got = Some(got);
                Ok(1)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        1
    }

    pub(crate) fn asked_whole_batch(&self) -> bool {
        true
    }

    pub(crate) fn payload(&self, _: usize) -> &[u8] {
        &self.data[..self.got.map_or(0, |g| g.0)]
    }

    pub(crate) fn meta(&self, _: usize) -> Option<RecvMeta> {
        self.got.map(|(len, from)| RecvMeta {
            len,
            from,
            kernel_rx: None,
            drops: None,
            segment: None,
            ttl: None,
            tos: None,
            dst: None,
        })
    }

    pub(crate) fn reply_single(
        &mut self,
        socket: &UdpSocket,
        decide: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<(usize, bool)> {
        let (arrived, from) = self.got?;
        let len = decide(&mut self.data[..arrived])?.min(arrived);
        Some((len, socket.send_to(&self.data[..len], from).is_err()))
    }

    pub(crate) fn reply_with(
        &mut self,
        socket: &UdpSocket,
        n: usize,
        mut decide: impl FnMut(usize, &mut [u8]) -> Option<usize>,
        mut seal: impl FnMut(&mut [u8]),
    ) -> usize {
        match self.got {
            Some((arrived, from)) if n > 0 => {
                let Some(len) = decide(0, &mut self.data[..arrived]) else {
                    return 0;
                };
                let len = len.min(arrived);
                assert!(len <= arrived);
                seal(&mut self.data[..len]);
                usize::from(socket.send_to(&self.data[..len], from).is_err())
            }
            _ => 0,
        }
    }
}

/// Without timerfd the loop falls back to epoll's millisecond timeout and spinning.
pub(crate) struct PreciseTimer;

impl PreciseTimer {
    pub(crate) fn new() -> io::Result<Self> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "no timerfd"))
    }
    pub(crate) fn register(&mut self, _: &Registry, _: Token) -> io::Result<()> {
        Ok(())
    }
    pub(crate) fn arm(&mut self, _: Duration) -> io::Result<()> {
        Ok(())
    }
    pub(crate) fn acknowledge(&mut self) {}
}

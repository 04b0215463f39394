//! Platform code at the syscall boundary: ICMP errors on unconnected UDP sockets, a precise
//! timer for the poll loop. Linux gets the real thing; elsewhere each piece degrades to a no-op
//! that the callers tolerate (no ICMP-based outage detection, millisecond pacing).

use mio::net::UdpSocket;
use std::io;
use std::time::Duration;

pub use imp::{
    drain_error_queue, enable_icmp_errors, request_buffers, set_timer_slack, PreciseTimer,
};

/// One ICMP error the kernel reported for a datagram we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    /// The errno it maps to (`ECONNREFUSED` for port unreachable, `EHOSTUNREACH`, ...).
    pub errno: i32,
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

    /// Asks for `bytes` of receive and send buffer; the kernel caps the request at
    /// `net.core.rmem_max` / `wmem_max` without failing.
    pub fn request_buffers(socket: &UdpSocket, bytes: usize) -> io::Result<()> {
        let bytes = bytes.min(libc::c_int::MAX as usize) as libc::c_int;
        set_int_option(socket, libc::SO_RCVBUF, bytes)?;
        set_int_option(socket, libc::SO_SNDBUF, bytes)
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

    pub fn request_buffers(_: &UdpSocket, _: usize) -> io::Result<()> {
        Ok(())
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

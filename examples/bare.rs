//! The bare-syscall reference for `scripts/bench-peers.sh`: UDP over loopback with no engine, no
//! timer wheel, no classification — what the machine can do, for sonde to be measured against.
//! (`../shared/tools/udplimit.c` is a C cross-check of the same figures.)
//!
//! ```text
//! bare echo PORT [busy] [single]            recvmmsg/sendmmsg echo, batches of 64, until killed;
//!                                           single: recvfrom/sendto, a datagram a call (cheaper
//!                                           with one in flight)
//! bare ping ADDR SECS WINDOW SIZE [busy]    keep WINDOW datagrams in flight for SECS seconds
//!                                           (WINDOW 1: recv, a datagram a call); prints
//!                                           {"round_trips_per_s", "p50_us", ...} as JSON
//! bare blast ADDR SECS SIZE [nogso]        send SIZE-byte zero datagrams for SECS seconds in
//!                                           runs of 64 (UDP GSO; nogso: sendmmsg), never
//!                                           reading: a load whose replies cost the sender
//!                                           nothing (an all-zero datagram of 44+ bytes is a
//!                                           STAMP test packet)
//! ```
//! Loopback only: `ping` and `blast` refuse any other address.

use hdrhistogram::Histogram;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const BATCH: usize = 64;
const SLOT: usize = 2048;

fn usage() -> ! {
    eprintln!(
        "usage: bare echo PORT [busy] [single] | bare ping ADDR SECS WINDOW SIZE [busy] | \
         bare blast ADDR SECS SIZE [nogso]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let busy = args.iter().any(|a| a == "busy");
    let single = args.iter().any(|a| a == "single");
    match args.first().map(String::as_str) {
        Some("echo") if args.len() >= 2 => {
            let port = args[1].parse().unwrap_or_else(|_| usage());
            if single {
                echo_single(port, busy)
            } else {
                echo(port, busy)
            }
        }
        Some("ping") if args.len() >= 5 => {
            let addr: SocketAddr = args[1].parse().unwrap_or_else(|_| usage());
            if !addr.ip().is_loopback() {
                eprintln!("bare: loopback addresses only");
                std::process::exit(2);
            }
            let secs: f64 = args[2].parse().unwrap_or_else(|_| usage());
            let window: usize = args[3].parse().unwrap_or_else(|_| usage());
            let size: usize = args[4].parse().unwrap_or_else(|_| usage());
            ping(addr, secs, window.max(1), size.clamp(16, SLOT), busy);
        }
        Some("blast") if args.len() >= 4 => {
            let addr: SocketAddr = args[1].parse().unwrap_or_else(|_| usage());
            if !addr.ip().is_loopback() {
                eprintln!("bare: loopback addresses only");
                std::process::exit(2);
            }
            let secs: f64 = args[2].parse().unwrap_or_else(|_| usage());
            let size: usize = args[3].parse().unwrap_or_else(|_| usage());
            let gso = !args.iter().any(|a| a == "nogso");
            blast(addr, secs, size.clamp(1, SLOT), gso);
        }
        _ => usage(),
    }
}

/// Sends zero datagrams of `size` bytes to `addr` for `secs`, BATCH a call: as one GSO buffer,
/// or (`nogso`) as BATCH messages of one `sendmmsg`. Never reads what comes back.
fn blast(addr: SocketAddr, secs: f64, size: usize, gso: bool) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(addr).expect("connect");
    let fd = socket.as_raw_fd();
    let data = vec![0u8; size * BATCH];
    if gso {
        let segment = size as libc::c_int;
        // Safety: a live socket, and a c_int option value that outlives the call.
        let ok = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_UDP,
                libc::UDP_SEGMENT,
                (&segment as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(ok, 0, "UDP_SEGMENT refused");
    }
    let mut iov: Vec<libc::iovec> = data
        .chunks(size)
        .map(|d| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    // Safety: all-zero is a valid mmsghdr (no name: the socket is connected).
    let mut hdr: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    for (h, v) in hdr.iter_mut().zip(iov.iter_mut()) {
        h.msg_hdr.msg_iov = v;
        h.msg_hdr.msg_iovlen = 1;
    }
    let (start, mut sent) = (Instant::now(), 0u64);
    while start.elapsed().as_secs_f64() < secs {
        sent += if gso {
            socket.send(&data).map_or(0, |_| BATCH as u64)
        } else {
            // Safety: hdr holds BATCH headers whose iovecs point into `data`, alive here.
            let n = unsafe { libc::sendmmsg(fd, hdr.as_mut_ptr(), BATCH as u32, 0) };
            n.max(0) as u64
        };
    }
    println!("{{\"sent\": {sent}, \"per_s\": {:.0}}}", sent as f64 / secs);
}

/// One batch of receive slots for recvmmsg, reused for the sendmmsg of the echoes.
struct Slots {
    data: Vec<[u8; SLOT]>,
    names: Vec<libc::sockaddr_storage>,
    iov: Vec<libc::iovec>,
    hdr: Vec<libc::mmsghdr>,
}

impl Slots {
    fn new() -> Self {
        Self {
            data: vec![[0u8; SLOT]; BATCH],
            // Safety: all-zero is a valid value for these plain C structs.
            names: vec![unsafe { std::mem::zeroed() }; BATCH],
            iov: vec![unsafe { std::mem::zeroed() }; BATCH],
            hdr: vec![unsafe { std::mem::zeroed() }; BATCH],
        }
    }

    fn arm(&mut self, receive: bool, lens: Option<usize>) {
        for i in 0..BATCH {
            let len = match lens {
                Some(_) => self.hdr[i].msg_len as usize,
                None => SLOT,
            };
            self.iov[i] = libc::iovec {
                iov_base: self.data[i].as_mut_ptr().cast(),
                iov_len: len,
            };
            let h = &mut self.hdr[i].msg_hdr;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            if receive {
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            }
        }
    }

    fn recv(&mut self, fd: i32, busy: bool) -> usize {
        self.arm(true, None);
        let flags = if busy {
            libc::MSG_DONTWAIT
        } else {
            libc::MSG_WAITFORONE
        };
        // Safety: the headers point into this struct's buffers, live for the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdr.as_mut_ptr(),
                BATCH as u32,
                flags,
                std::ptr::null_mut(),
            )
        };
        n.max(0) as usize
    }

    fn echo(&mut self, fd: i32, n: usize) {
        self.arm(false, Some(n));
        // Safety: as in `recv`, with the lengths and addresses the kernel filled in.
        unsafe { libc::sendmmsg(fd, self.hdr.as_mut_ptr(), n as u32, 0) };
    }
}

fn echo(port: u16, busy: bool) {
    let socket = UdpSocket::bind(("127.0.0.1", port)).expect("bind");
    let fd = socket.as_raw_fd();
    let mut slots = Slots::new();
    loop {
        let n = slots.recv(fd, busy);
        if n > 0 {
            slots.echo(fd, n);
        }
    }
}

/// One datagram a call: what sockperf's server does, and the cheapest with one in flight.
fn echo_single(port: u16, busy: bool) {
    let socket = UdpSocket::bind(("127.0.0.1", port)).expect("bind");
    socket.set_nonblocking(busy).expect("nonblocking");
    let mut buf = [0u8; SLOT];
    loop {
        if let Ok((len, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..len], from);
        }
    }
}

fn ping(addr: SocketAddr, secs: f64, window: usize, size: usize, busy: bool) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(addr).expect("connect");
    socket.set_nonblocking(busy).expect("nonblocking");
    socket
        .set_read_timeout((!busy).then_some(Duration::from_millis(200)))
        .expect("timeout");
    let fd = socket.as_raw_fd();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let mut probe = vec![0u8; size];
    let send = |probe: &mut Vec<u8>| {
        let t = start.elapsed().as_nanos() as u64;
        probe[..8].copy_from_slice(&t.to_ne_bytes());
        let _ = socket.send(probe);
    };
    for _ in 0..window {
        send(&mut probe);
    }
    let mut slots = Slots::new();
    let mut replies = 0u64;
    while Instant::now() < end {
        let n = if window == 1 {
            // One in flight: a plain recv, no batch to set up.
            usize::from(socket.recv(&mut slots.data[0]).is_ok())
        } else {
            slots.recv(fd, busy)
        };
        let now = start.elapsed().as_nanos() as u64;
        for i in 0..n {
            let sent = u64::from_ne_bytes(slots.data[i][..8].try_into().expect("8 bytes"));
            let _ = hist.record(now.saturating_sub(sent).max(1));
            replies += 1;
            send(&mut probe);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let q = |x: f64| hist.value_at_quantile(x) as f64 / 1e3;
    println!(
        "{{\"round_trips_per_s\": {:.0}, \"p50_us\": {:.3}, \"p99_us\": {:.3}, \"p999_us\": {:.3}}}",
        replies as f64 / elapsed,
        q(0.5),
        q(0.99),
        q(0.999)
    );
}

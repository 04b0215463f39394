//! Whether an interface can stamp packets in hardware (`ETHTOOL_GET_TS_INFO`), and which
//! interface the route to an address goes out of.

use super::cvt;
use crate::sys::HardwareStamps;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

const ETHTOOL_GET_TS_INFO: u32 = 0x41;

/// `struct ethtool_ts_info` of linux/ethtool.h.
#[repr(C)]
#[derive(Default)]
struct TsInfo {
    cmd: u32,
    so_timestamping: u32,
    phc_index: i32,
    tx_types: u32,
    tx_reserved: [u32; 3],
    rx_filters: u32,
    rx_reserved: [u32; 3],
}

/// The name of the interface the kernel would send to `target` out of (a connected, unused UDP
/// socket asks the routing table; no datagram is sent).
pub(crate) fn route_interface(target: SocketAddr) -> io::Result<String> {
    let any: SocketAddr = match target {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let probe = UdpSocket::bind(any)?;
    probe.connect(target)?;
    interface_with(probe.local_addr()?.ip())
}

/// The interface that holds `ip`.
fn interface_with(ip: IpAddr) -> io::Result<String> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // Safety: getifaddrs fills `list` with a linked list freed below with freeifaddrs.
    cvt(unsafe { libc::getifaddrs(&mut list) })?;
    let mut found = None;
    let mut entry = list;
    while !entry.is_null() && found.is_none() {
        // Safety: `entry` is a node of the list getifaddrs returned, alive until freeifaddrs;
        // an address is read only as the family it says it is.
        unsafe {
            let e = &*entry;
            let addr = e.ifa_addr;
            let here = match addr.as_ref().map(|a| i32::from(a.sa_family)) {
                Some(libc::AF_INET) => {
                    let a = &*(addr as *const libc::sockaddr_in);
                    Some(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()))
                }
                Some(libc::AF_INET6) => {
                    let a = &*(addr as *const libc::sockaddr_in6);
                    Some(IpAddr::from(a.sin6_addr.s6_addr))
                }
                _ => None,
            };
            if here == Some(ip) {
                found = Some(
                    std::ffi::CStr::from_ptr(e.ifa_name)
                        .to_string_lossy()
                        .into_owned(),
                );
            }
            entry = e.ifa_next;
        }
    }
    // Safety: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface has {ip}")))
}

/// What hardware timestamping `interface` offers.
pub(crate) fn hardware_stamps(interface: &str) -> io::Result<HardwareStamps> {
    let mut info = TsInfo {
        cmd: ETHTOOL_GET_TS_INFO,
        ..TsInfo::default()
    };
    // Safety: all-zero is a valid ifreq.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = interface.as_bytes();
    if name.len() >= req.ifr_name.len() || name.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an interface name",
        ));
    }
    for (to, &from) in req.ifr_name.iter_mut().zip(name) {
        *to = from as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&mut info as *mut TsInfo).cast();
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    // Safety: the fd is a live socket; req names the interface and points at `info`, which
    // outlives the call and is the struct the kernel fills for this command.
    cvt(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL as _, &mut req) })?;
    let has = |flag: libc::c_uint| info.so_timestamping & flag != 0;
    Ok(HardwareStamps {
        tx: has(libc::SOF_TIMESTAMPING_TX_HARDWARE),
        rx: has(libc::SOF_TIMESTAMPING_RX_HARDWARE) && has(libc::SOF_TIMESTAMPING_RAW_HARDWARE),
        clock: u32::try_from(info.phc_index).ok(),
    })
}

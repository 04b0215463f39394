//! Linux: batched receive and send (`recvmmsg`/`sendmmsg`), UDP GSO and GRO, kernel receive
//! and transmit timestamps, drop counters, the error queue, and a `timerfd`.

mod call;
mod errqueue;
mod hwstamp;
mod mmsg;
mod process;
mod send;
mod sockopt;
#[cfg(test)]
mod tests;
mod timer;

pub(crate) use errqueue::ErrorQueue;
pub(crate) use hwstamp::{hardware_stamps, route_interface};
pub(crate) use mmsg::MmsgBatch;
pub(crate) use process::{signal_interrupts_calls, threads_in_process};
pub(super) use send::Sender;
pub(crate) use sockopt::{
    bind_to_device, enable_gro, enable_icmp_errors, enable_recv_destination, enable_recv_tos,
    enable_recv_ttl, enable_rx_metadata, enable_tx_timestamps, granted_buffers, request_buffers,
    set_dont_fragment, set_tos, set_ttl, socket_drops, wait_in_reads,
};
pub(crate) use timer::{clock_quality, set_timer_slack, steady_malloc, wall_clock, PreciseTimer};

use std::io;

/// A libc return value as a result: negative means `errno` says what failed.
/// A length-returning call's result (`recvmsg`, `sendmmsg`, ...): the count, or the errno.
fn cvt_len(ret: isize) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

//! One target of a pinger: its own sequence space, in-flight table, counters, distributions,
//! outages and interval clock. The socket, the batches and the clocks are the pinger's, shared by
//! every target on the loop.

use super::loss_pattern::LossPattern;
use super::outage::OutageTracker;
use super::InFlight;
use crate::model::stats::Compact;
use crate::model::{Counters, IntervalClock, Jitter, PingDistributions, TooBig};
use std::net::SocketAddr;

pub(super) struct Target {
    pub(super) addr: SocketAddr,
    /// Where probes go: `addr`, or its IPv4-mapped address on a socket serving both families.
    pub(super) send_to: SocketAddr,
    pub(super) table: InFlight,
    pub(super) counters: Counters,
    pub(super) dist: PingDistributions,
    pub(super) jitter: Jitter,
    pub(super) outages: OutageTracker,
    pub(super) loss_pattern: LossPattern,
    /// With `--df`: probes too big for the path.
    pub(super) too_big: Option<TooBig>,
    pub(super) peak_in_flight: usize,
    /// When interval reports are asked for: the current period's figures.
    pub(super) intervals: Option<Box<IntervalClock>>,
    /// Timeouts fired so far (an interval's loss count).
    pub(super) timeouts_fired: u64,
    /// Probed; `false` once a reload removed it.
    pub(super) active: bool,
    /// Removed: when, ns since the epoch.
    pub(super) retired_at_ns: u64,
    /// Removed long enough ago that nothing of it is left but the slot (see `reload.rs`).
    pub(super) buried: bool,
}

/// How a pinger sizes and equips each target's state.
pub(super) struct Shape {
    /// The target is one of several: distributions in compact histograms, the round trips'
    /// shaped so.
    pub(super) compact: Option<Compact>,
    pub(super) one_way: bool,
    pub(super) headers: bool,
    pub(super) too_big: bool,
    /// The socket is IPv6 (IPv4 targets are sent to at mapped addresses).
    pub(super) ipv6_socket: bool,
    /// The in-flight table's first and largest sizes.
    pub(super) table: (usize, usize),
}

impl Target {
    pub(super) fn new(addr: SocketAddr, shape: &Shape) -> Self {
        Self {
            addr,
            send_to: crate::roles::socket::as_seen_by(shape.ipv6_socket, addr),
            table: InFlight::new(shape.table.0, shape.table.1),
            counters: Counters::default(),
            dist: PingDistributions::for_target(shape.compact, shape.one_way, shape.headers),
            jitter: Jitter::default(),
            outages: OutageTracker::default(),
            loss_pattern: LossPattern::default(),
            too_big: shape.too_big.then(TooBig::default),
            peak_in_flight: 0,
            intervals: None,
            timeouts_fired: 0,
            active: true,
            retired_at_ns: 0,
            buried: false,
        }
    }

    /// What is left of a buried target: no figures, no table to speak of.
    pub(super) fn tombstone(addr: SocketAddr, shape: &Shape) -> Self {
        let empty = Shape {
            compact: Some(Compact::GROWING),
            one_way: false,
            headers: false,
            too_big: false,
            ipv6_socket: shape.ipv6_socket,
            table: (1, 1),
        };
        Self {
            active: false,
            buried: true,
            ..Self::new(addr, &empty)
        }
    }
}

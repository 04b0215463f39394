//! What happens to each probe, as it happens: the events per-probe lines, CSV exports and plots
//! are made from.

use super::stamp::Split;
use std::net::SocketAddr;

/// What happened to one probe or datagram, as it happens: for per-probe output and exports.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeEvent {
    /// A faithful echo of probe `seq`.
    Reply {
        seq: u64,
        /// When the probe was due and when it left, ns since the run started.
        intended_ns: u64,
        sent_ns: u64,
        rtt_ns: u64,
        len: usize,
        kind: ReplyKind,
        /// STAMP, first answers: the round trip split by the reflector's timestamps.
        split: Option<Split>,
    },
    /// No reply by the timeout. `unreachable`: an ICMP error came back for it.
    Lost {
        seq: u64,
        intended_ns: u64,
        sent_ns: u64,
        unreachable: bool,
    },
    /// The send failed locally.
    NotSent {
        seq: u64,
        intended_ns: u64,
        sent_ns: u64,
        error: String,
    },
    /// From the target, but not an echo of a probe we sent.
    Mismatched {
        seq: Option<u64>,
        len: usize,
        reason: &'static str,
    },
    /// From elsewhere, or another run's session.
    Foreign { from: SocketAddr, len: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Received { reordered: bool },
    Late,
    Duplicate,
}

//! The plain results of a run: what reports (text, JSON) are made from.
//!
//! Field names are part of the JSON interface and stay stable; every duration carries its unit
//! in its name.

use crate::loss_pattern::LossBursts;
use crate::outage::Outage;
use crate::stats::LatencySummary;
use serde::{Deserialize, Serialize};

/// Per-probe and per-datagram counts of a pinger. See the README for what each one means.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Probes that left the socket.
    pub sent: u64,
    /// Probes answered within their timeout, by a faithful echo.
    pub received: u64,
    /// Probes with no answer by their timeout (and none since).
    pub lost: u64,
    /// Probes first answered after their timeout.
    pub late: u64,
    /// Extra answers to probes already answered.
    pub duplicates: u64,
    /// Received probes that arrived after a higher sequence number had.
    pub reordered: u64,
    /// Datagrams from the target that are not a faithful echo of a probe we sent: truncated,
    /// altered, a sequence number never sent, or not a probe at all (a non-echo server).
    pub mismatched: u64,
    /// Datagrams from another address, or carrying another run's session id.
    pub foreign: u64,
    /// Probes whose send failed locally (full buffer, ENOBUFS, refused): not network loss.
    pub not_sent: u64,
    /// Answers to probes older than the sequence table remembers.
    pub stale: u64,
    /// ICMP errors (port or host unreachable) received for our probes.
    pub unreachable: u64,
    /// Probes still outstanding when the run was cut short (second Ctrl-C); 0 otherwise.
    pub in_flight: u64,
    /// Datagrams our own socket dropped for want of receive-buffer space (`SO_RXQ_OVFL`):
    /// replies that reached this host. Probes lost this way are also in `lost`, but the network
    /// did not lose them.
    pub local_drops: u64,
}

impl Counters {
    /// Adds another flow's counts.
    pub fn add(&mut self, o: &Counters) {
        self.sent += o.sent;
        self.received += o.received;
        self.lost += o.lost;
        self.late += o.late;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.mismatched += o.mismatched;
        self.foreign += o.foreign;
        self.not_sent += o.not_sent;
        self.stale += o.stale;
        self.unreachable += o.unreachable;
        self.in_flight += o.in_flight;
        self.local_drops += o.local_drops;
    }

    /// What was counted since `earlier` was taken (each counter only grows, but `lost`, which
    /// a late reply takes back: that one saturates at 0).
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            sent: self.sent - earlier.sent,
            received: self.received - earlier.received,
            lost: self.lost.saturating_sub(earlier.lost),
            late: self.late - earlier.late,
            duplicates: self.duplicates - earlier.duplicates,
            reordered: self.reordered - earlier.reordered,
            mismatched: self.mismatched - earlier.mismatched,
            foreign: self.foreign - earlier.foreign,
            not_sent: self.not_sent - earlier.not_sent,
            stale: self.stale - earlier.stale,
            unreachable: self.unreachable - earlier.unreachable,
            in_flight: self.in_flight.saturating_sub(earlier.in_flight),
            local_drops: self.local_drops.saturating_sub(earlier.local_drops),
        }
    }

    /// Percentage of sent probes not answered within their timeout (lost and late).
    pub fn loss_pct(&self) -> f64 {
        let settled = self.sent.saturating_sub(self.in_flight);
        if settled == 0 {
            0.0
        } else {
            100.0 * (self.lost + self.late) as f64 / settled as f64
        }
    }
}

/// The schedule's lag in fixed-rate mode: how late probes left compared with their slot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LagSummary {
    pub mean_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// What the kernel gave a socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SocketSummary {
    /// Buffer sizes as the kernel reports them (Linux reports twice what it was asked for, its
    /// bookkeeping included; requests are capped at net.core.rmem_max / wmem_max).
    pub rcvbuf_bytes: usize,
    pub sndbuf_bytes: usize,
    /// Where receive times come from: `"kernel"` (SO_TIMESTAMPNS, excluding time spent queued in
    /// the socket) or `"user space"` (read after the receive call returns).
    pub rx_timestamps: &'static str,
    /// How probes were sent: `"gso"` (runs of probes went as one buffer the kernel cuts up, UDP
    /// GSO) or `"sendmmsg"` (a datagram a message, several messages a call).
    pub batching: &'static str,
    /// Why GSO was switched off during the run, when the kernel refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gso_refused: Option<String>,
    /// Replies sent coalesced were taken coalesced (UDP GRO, `--gro on`): `local_drops` then
    /// counts dropped buffers, each of which may have held several replies.
    pub gro: bool,
}

/// Everything a ping run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PingSummary {
    pub target: String,
    pub local: String,
    /// Random id of this run, carried in every probe.
    pub session: String,
    /// `"rate"` (open loop) or `"window"` (closed loop).
    pub mode: &'static str,
    pub rate_pps: Option<f64>,
    pub inflight_max: usize,
    /// The most probes that were outstanding at once.
    pub peak_in_flight: usize,
    pub size_bytes: usize,
    pub timeout_ms: f64,
    /// From the first send to the last verdict.
    pub duration_s: f64,
    /// Stopped by Ctrl-C (or SIGTERM) rather than by its count or duration.
    pub interrupted: bool,
    #[serde(flatten)]
    pub counters: Counters,
    pub loss_pct: f64,
    /// Round-trip times of received probes: from the actual send to the reply.
    pub rtt: Option<LatencySummary>,
    /// RFC 3550 interarrival jitter of the round-trip times.
    pub jitter_us: Option<f64>,
    /// Fixed-rate mode: from each probe's intended send time to its reply (corrects for
    /// coordinated omission, as wrk2 does).
    pub rtt_from_intended: Option<LatencySummary>,
    /// Fixed-rate mode: how late probes left compared with the schedule.
    pub schedule_lag: Option<LagSummary>,
    /// RFC 3357 loss periods and distances.
    pub loss_bursts: LossBursts,
    pub outages: Vec<Outage>,
    pub socket: SocketSummary,
    /// With `--flows N` (N > 1): each flow's own summary; the fields above are their total.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flows: Vec<PingSummary>,
}

/// What one interval of a run measured (all flows together), as interval lines, the JSON
/// stream and plots show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalSummary {
    pub index: u64,
    /// Since the run started.
    pub start_s: f64,
    pub end_s: f64,
    /// Events of the interval: probes sent in it, replies received in it, and so on; `lost`
    /// counts timeouts that fired in it.
    #[serde(flatten)]
    pub counters: Counters,
    /// Share of the probes settled in the interval (received or timed out) that timed out.
    pub loss_pct: f64,
    /// Round-trip times of the replies received in the interval.
    pub rtt: Option<LatencySummary>,
}

impl IntervalSummary {
    pub fn of(report: &crate::interval::IntervalReport) -> Self {
        Self {
            index: report.index,
            start_s: report.start_ns as f64 / 1e9,
            end_s: report.end_ns as f64 / 1e9,
            counters: report.counters.clone(),
            loss_pct: report.loss_pct(),
            rtt: report.rtt.summary(),
        }
    }
}

/// Everything an echo server counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EchoSummary {
    pub bind: String,
    pub duration_ms: u64,
    /// Datagrams received (and echoed, unless counted in `send_failed`).
    pub datagrams: u64,
    pub bytes: u64,
    /// Distinct source addresses seen (counted up to `peers_limit`).
    pub peers: u64,
    pub peers_limit: u64,
    /// Echoes the kernel would not take (full buffer, ENOBUFS, unreachable sender): dropped.
    pub send_failed: u64,
    /// Errors from receive calls (ICMP errors reported on the socket, for instance).
    pub recv_errors: u64,
    /// With `--wire sockperf`: datagrams a sockperf server would not answer (no pong request,
    /// warm-up, not from a client, too short).
    pub not_answered: u64,
    pub rcvbuf_bytes: usize,
    pub sndbuf_bytes: usize,
    /// Bytes sent back: never more than `bytes` (no amplification).
    pub bytes_out: u64,
    /// Datagrams not answered, by reason (loop protection, allow list, rate limits, auth).
    pub refused: crate::guard::Refusals,
    /// The policy in force: `--allow` networks (empty: all), rate limits (datagrams/s; `null`:
    /// none) and whether probes must be signed.
    pub allow: Vec<String>,
    pub per_source_limit_pps: Option<f64>,
    pub total_limit_pps: Option<f64>,
    pub authenticated: bool,
    /// Datagrams a GSO sender sent as one are taken as one and echoed as one (`UDP_GRO`).
    pub gro: bool,
    /// Datagrams that arrived coalesced with others (counted in `datagrams` too).
    pub coalesced: u64,
}

//! The plain results of a run: what reports (text, JSON) are made from.
//!
//! Field names are part of the JSON interface and stay stable; every duration carries its unit
//! in its name.

use super::stamp::{OneWay, StampTlvSummary, TlvCounts};
use super::stats::LatencySummary;
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

impl LagSummary {
    /// The lag of a distribution of lags, or `None` when it is empty.
    pub fn of(lag: &super::stats::Latency) -> Option<Self> {
        lag.summary().map(|l| LagSummary {
            mean_us: l.mean_us,
            p99_us: l.p99_us,
            max_us: l.max_us,
        })
    }
}

/// Where a pinger's receive or send times come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StampSource {
    /// The kernel's: received (`SO_TIMESTAMPNS`), excluding the time a reply spent queued in
    /// the socket; sent (`SO_TIMESTAMPING`), excluding the time from the clock read until the
    /// probe entered the device's queue.
    #[serde(rename = "kernel")]
    Kernel,
    /// Read after the receive call returns, as most tools measure.
    #[serde(rename = "user space")]
    UserSpace,
}

/// How kernel send times went, when asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TxStampCounts {
    /// Round trips timed from the kernel's send time.
    pub round_trips: u64,
    /// Round trips timed from the user-space send time, the kernel's not having come in time.
    pub round_trips_without: u64,
    /// Messages sent whose time never came (a full error queue drops them).
    pub missed: u64,
    /// Times that named no message waiting, or could not be their message's.
    pub unmatched: u64,
}

impl TxStampCounts {
    pub(crate) fn add(&mut self, other: &Self) {
        self.round_trips += other.round_trips;
        self.round_trips_without += other.round_trips_without;
        self.missed += other.missed;
        self.unmatched += other.unmatched;
    }
}

/// How a pinger's probes went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Batching {
    /// Runs of probes as one buffer the kernel cuts up (UDP GSO).
    #[serde(rename = "gso")]
    Gso,
    /// A datagram a message, several messages a call.
    #[serde(rename = "sendmmsg")]
    Sendmmsg,
    /// One datagram a call (platforms without `sendmmsg`).
    #[serde(rename = "send_to")]
    SendTo,
}

/// What the kernel gave a socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SocketSummary {
    /// Buffer sizes as the kernel reports them (Linux reports twice what it was asked for, its
    /// bookkeeping included; requests are capped at net.core.rmem_max / wmem_max).
    pub rcvbuf_bytes: usize,
    pub sndbuf_bytes: usize,
    /// Where receive times come from: `"kernel"` or `"user space"`.
    pub rx_timestamps: StampSource,
    /// Where send times come from: `"kernel"` (each probe's transmit timestamp, where it came)
    /// or `"user space"` (a clock read before the send call).
    pub tx_timestamps: StampSource,
    /// With kernel send times: how the round trips were timed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_stamps: Option<TxStampCounts>,
    /// How probes were sent: `"gso"`, `"sendmmsg"` or `"send_to"`.
    pub batching: Batching,
    /// Why GSO was switched off during the run, when the kernel refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gso_refused: Option<String>,
    /// Replies sent coalesced were taken coalesced (UDP GRO, `--gro on`): `local_drops` then
    /// counts dropped buffers, each of which may have held several replies.
    pub gro: bool,
    /// The socket was connected to the target (`--connect`): the kernel drops datagrams from
    /// anywhere else, so `foreign` cannot count them.
    pub connected: bool,
}

/// Probes that did not fit the path with don't-fragment set (`--df`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TooBig {
    /// Refused by this host before leaving (`EMSGSIZE`): counted in `not_sent` too.
    pub not_sent: u64,
    /// Dropped on the way by a router that said so (ICMP "fragmentation needed" / "packet too
    /// big"): counted as lost.
    pub icmp: u64,
    /// The path MTU the kernel last reported (IP packet bytes), when it did.
    pub path_mtu_bytes: Option<u32>,
    /// The largest `--size` that fits that MTU (UDP payload bytes).
    pub largest_size_bytes: Option<u32>,
}

impl TooBig {
    /// Takes a path MTU the kernel reported for a datagram of this family.
    pub(crate) fn set_mtu(&mut self, mtu: u32, ipv6: bool) {
        let headers = if ipv6 { 40 + 8 } else { 20 + 8 };
        self.path_mtu_bytes = Some(mtu);
        self.largest_size_bytes = Some(mtu.saturating_sub(headers));
    }

    /// Why a probe of `size` bytes did not leave, with the MTU when the kernel said it.
    pub fn reason(&self, size: usize) -> String {
        match (self.path_mtu_bytes, self.largest_size_bytes) {
            (Some(mtu), Some(largest)) => format!(
                "{size} B is too big for the path MTU of {mtu} B with --df: --size {largest} at most"
            ),
            _ => format!("{size} B is too big for the path with --df (EMSGSIZE)"),
        }
    }

    /// Adds another flow's count; the smaller MTU reported is the path's.
    pub(crate) fn merge(&mut self, other: &TooBig) {
        self.not_sent += other.not_sent;
        self.icmp += other.icmp;
        let smaller = |theirs: u32| self.path_mtu_bytes.is_none_or(|ours| theirs < ours);
        if other.path_mtu_bytes.is_some_and(smaller) {
            self.path_mtu_bytes = other.path_mtu_bytes;
            self.largest_size_bytes = other.largest_size_bytes;
        }
    }
}

/// Everything a ping run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PingSummary {
    pub target: String,
    /// The target's `name=` in a targets file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The target's other labels in a targets file.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
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
    /// STAMP: the reflector's dwell time T3 − T2 (already taken off `rtt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reflector_dwell: Option<LatencySummary>,
    /// STAMP: the way out (T2 − T1) and the way back (T4 − T3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward: Option<Box<OneWay>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backward: Option<Box<OneWay>>,
    /// STAMP: whether each side's clock said it was synchronised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_synchronized: Option<super::stamp::ClockSides>,
    /// STAMP, where the reflector's count splits the loss: probes lost after the last one
    /// answered, which no later answer places in either direction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_unattributed: Option<u64>,
    /// STAMP with RFC 8972 TLVs (`--stamp-tlv`, or an HMAC TLV): what they carried back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stamp_tlvs: Option<Box<StampTlvSummary>>,
    /// With `--dscp`, `--ecn` or `--ttl`: the IP headers the replies came back with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_headers: Option<ReplyHeaders>,
    /// With `--df`: probes found too big for the path, and the MTU the kernel reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub too_big: Option<TooBig>,
    /// With `--flows N` (N > 1): each flow's own summary; the fields above are their total.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flows: Vec<PingSummary>,
    /// With several targets: each target's own summary (`target` set); the fields above are
    /// their total.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<PingSummary>,
}

impl PingSummary {
    /// What the target is called in tables and messages (see [`target_label`]).
    pub fn label(&self) -> String {
        target_label(self.name.as_deref(), &self.target)
    }
}

/// A target as people read it: its name with its address, or the address alone.
pub fn target_label(name: Option<&str>, target: &str) -> String {
    match name {
        Some(name) => format!("{name} ({target})"),
        None => target.to_string(),
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
    /// Datagrams the echo's own socket dropped for want of receive-buffer room (the kernel's
    /// count, `SO_MEMINFO`): they reached this host, and were never in `datagrams`. Loss a
    /// pinger sees beyond these happened elsewhere.
    pub local_drops: u64,
    /// With `--wire sockperf`: datagrams a sockperf server would not answer (no pong request,
    /// warm-up, not from a client, too short).
    pub not_answered: u64,
    pub rcvbuf_bytes: usize,
    pub sndbuf_bytes: usize,
    /// Bytes sent back: never more than `bytes` (no amplification).
    pub bytes_out: u64,
    /// Datagrams not answered, by reason (loop protection, allow list, rate limits, auth).
    pub refused: Refusals,
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
    /// A STAMP reflector: the RFC 8972 TLVs it answered, and those it flagged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stamp_tlvs: Option<TlvCounts>,
    /// With `--report-tos` or `--dscp-reply`: the DSCP and ECN the datagrams arrived with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_tos: Option<ReceivedTos>,
    /// With `--dscp-reply`: `"keep"` (each request's DSCP) or the DSCP answered with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dscp_reply: Option<String>,
}

/// The DSCP and ECN an echo's datagrams arrived with, per class.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReceivedTos {
    /// DSCP values, with how many datagrams carried each.
    pub dscp: std::collections::BTreeMap<u8, u64>,
    /// ECN codepoints likewise.
    pub ecn: std::collections::BTreeMap<&'static str, u64>,
    /// Datagrams marked CE (congestion experienced) on the way.
    pub ce: u64,
}

impl ReceivedTos {
    pub fn of(counts: &TosCounts) -> Self {
        Self {
            dscp: counts.dscp_map(),
            ecn: counts.ecn_map(),
            ce: counts.ecn[3],
        }
    }

    /// Adds another thread's counts.
    pub fn add(&mut self, o: &ReceivedTos) {
        for (&d, n) in &o.dscp {
            *self.dscp.entry(d).or_default() += n;
        }
        for (&e, n) in &o.ecn {
            *self.ecn.entry(e).or_default() += n;
        }
        self.ce += o.ce;
    }
}

/// Datagrams refused, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Refusals {
    /// From a broadcast, multicast or unspecified address, from our own address, or from a
    /// port of a service that answers whatever it receives (the guard's `LOOP_PORTS`).
    pub loop_protection: u64,
    /// From a source outside `--allow`.
    pub not_allowed: u64,
    /// Over the source's own rate limit (or no room to track a new source).
    pub source_rate_limited: u64,
    /// Over the total rate limit.
    pub total_rate_limited: u64,
    /// Without a valid authentication tag.
    pub auth_failed: u64,
}

impl Refusals {
    pub fn add(&mut self, o: &Refusals) {
        self.loop_protection += o.loop_protection;
        self.not_allowed += o.not_allowed;
        self.source_rate_limited += o.source_rate_limited;
        self.total_rate_limited += o.total_rate_limited;
        self.auth_failed += o.auth_failed;
    }

    pub fn total(&self) -> u64 {
        self.loop_protection
            + self.not_allowed
            + self.source_rate_limited
            + self.total_rate_limited
            + self.auth_failed
    }
}

/// Counts of one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DirectionStats {
    pub received: u64,
    pub lost: u64,
    pub queue_dropped: u64,
    pub duplicated: u64,
    /// Sent without the delay, overtaking delayed datagrams.
    pub reordered: u64,
    pub delivered: u64,
    /// Sends the kernel refused (full buffer, unreachable): dropped.
    pub send_failed: u64,
    /// Still held when the relay stopped.
    pub held_at_stop: u64,
}

impl DirectionStats {
    pub fn add(&mut self, o: &DirectionStats) {
        self.received += o.received;
        self.lost += o.lost;
        self.queue_dropped += o.queue_dropped;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.delivered += o.delivered;
        self.send_failed += o.send_failed;
        self.held_at_stop += o.held_at_stop;
    }
}

/// One client of a relay: both directions' counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayClient {
    pub client: String,
    pub upstream: DirectionStats,
    pub downstream: DirectionStats,
}

/// What a relay's client table holds and has held.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RelayClients {
    /// Clients in the table now, and its bound (`--max-clients`).
    pub now: u64,
    pub limit: u64,
    /// Clients taken on since the start.
    pub seen: u64,
    /// Removed after `--client-idle` without a datagram (their counts stay in the totals).
    pub swept: u64,
    /// Datagrams from new clients turned away because the table was full.
    pub refused_table_full: u64,
    /// Datagrams from new clients dropped because no upstream socket could be opened for them
    /// (out of file descriptors, say).
    pub upstream_failed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelaySummary {
    pub listen: String,
    pub forward: String,
    pub seed: u64,
    pub upstream_spec: String,
    pub downstream_spec: String,
    pub upstream: DirectionStats,
    pub downstream: DirectionStats,
    /// Datagrams on the server side from anyone but the server: ignored.
    pub foreign: u64,
    /// Errors from receive calls on either side (ICMP errors reported on a socket, for
    /// instance): counted and read past.
    pub recv_errors: u64,
    pub clients: RelayClients,
    /// Datagrams from clients the guard turned away, by reason.
    pub refused: Refusals,
    /// The policy in force, as for the echo.
    pub allow: Vec<String>,
    pub per_source_limit_pps: Option<f64>,
    pub total_limit_pps: Option<f64>,
    /// Each client in the table now; `upstream` and `downstream` above are every client's.
    pub per_client: Vec<RelayClient>,
}

/// TOS bytes (IPv6: traffic classes) seen, counted by DSCP and by ECN codepoint.
#[derive(Debug, Clone)]
pub struct TosCounts {
    pub dscp: [u64; 64],
    pub ecn: [u64; 4],
}

impl Default for TosCounts {
    fn default() -> Self {
        TosCounts {
            dscp: [0; 64],
            ecn: [0; 4],
        }
    }
}

impl TosCounts {
    /// One packet's DSCP and ECN.
    pub fn record(&mut self, dscp: u8, ecn: u8) {
        self.dscp[usize::from(dscp & 63)] += 1;
        self.ecn[usize::from(ecn & 3)] += 1;
    }

    pub fn merge(&mut self, o: &TosCounts) {
        for (a, b) in self.dscp.iter_mut().zip(o.dscp) {
            *a += b;
        }
        for (a, b) in self.ecn.iter_mut().zip(o.ecn) {
            *a += b;
        }
    }

    pub fn total(&self) -> u64 {
        self.dscp.iter().sum()
    }

    /// The DSCP values seen, with how many packets carried each.
    pub fn dscp_map(&self) -> std::collections::BTreeMap<u8, u64> {
        (0u8..64).zip(self.dscp).filter(|&(_, n)| n > 0).collect()
    }

    /// The ECN codepoints seen, by name, with how many packets carried each.
    pub fn ecn_map(&self) -> std::collections::BTreeMap<&'static str, u64> {
        (0u8..4)
            .zip(self.ecn)
            .filter(|&(_, n)| n > 0)
            .map(|(e, n)| (super::stamp::ecn_name(e), n))
            .collect()
    }
}

/// The IP headers replies came back with, tallied: their DSCP and ECN, their TTL (or hop
/// limit).
#[derive(Debug, Clone, Default)]
pub struct HeaderTally {
    pub tos: TosCounts,
    pub ttl: Option<(u8, u8)>,
}

impl HeaderTally {
    /// One reply's TOS byte and TTL, where the kernel said.
    pub fn record(&mut self, tos: Option<u8>, ttl: Option<u8>) {
        if let Some(tos) = tos {
            self.tos.record(tos >> 2, tos & 3);
        }
        if let Some(t) = ttl {
            self.ttl = Some(
                self.ttl
                    .map_or((t, t), |(low, high)| (low.min(t), high.max(t))),
            );
        }
    }

    pub fn merge(&mut self, o: &HeaderTally) {
        self.tos.merge(&o.tos);
        self.ttl = match (self.ttl, o.ttl) {
            (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
            (a, b) => a.or(b),
        };
    }
}

/// What the IP headers of the replies said (`--dscp`, `--ecn` or `--ttl` turn their reading on).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplyHeaders {
    /// The DSCP the probes were sent with (`--dscp`; `null`: the system's default).
    pub dscp_sent: Option<u8>,
    /// DSCP values the replies came back with, with how many carried each.
    pub dscp: std::collections::BTreeMap<u8, u64>,
    /// ECN codepoints likewise (`ce`: congestion experienced on the way).
    pub ecn: std::collections::BTreeMap<&'static str, u64>,
    /// Replies marked CE (congestion experienced).
    pub ce: u64,
    /// Replies whose DSCP is not the one the probes were sent with (`null` when none was
    /// asked): remarked or bleached on the way, or answered with another by the reflector.
    pub dscp_not_as_sent: Option<u64>,
    /// The replies' TTL (hop limit), lowest and highest; `hops` from the nearest usual
    /// initial TTL at or above the highest.
    pub ttl: Option<super::stamp::TtlRange>,
}

impl ReplyHeaders {
    pub fn of(t: &HeaderTally, sent_dscp: Option<u8>) -> Self {
        let tos = &t.tos;
        ReplyHeaders {
            dscp_sent: sent_dscp,
            dscp: tos.dscp_map(),
            ecn: tos.ecn_map(),
            ce: tos.ecn[3],
            dscp_not_as_sent: sent_dscp.map(|d| tos.total() - tos.dscp[usize::from(d & 63)]),
            ttl: t.ttl.map(|(min, max)| super::stamp::TtlRange::of(min, max)),
        }
    }
}

/// One outage, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outage {
    /// Offset from the start of the run.
    pub start_s: f64,
    pub duration_s: f64,
    /// Probes sent into the outage and never answered.
    pub lost: u64,
    /// Probes whose send failed during the outage.
    pub not_sent: u64,
    /// `"unreachable"` when ICMP errors announced it, `"silence"` otherwise.
    pub cause: &'static str,
    /// Still going when the run ended.
    pub ongoing: bool,
    /// In the total of several targets: whose outage it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// What a run's losses looked like.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LossBursts {
    /// Loss periods: maximal runs of consecutive lost probes.
    pub count: u64,
    /// Mean probes per loss period (RFC 3357 loss period length).
    pub mean_length: f64,
    pub max_length: u64,
    /// Mean sequence distance between consecutive lost probes (RFC 3357 loss distance); 0 with
    /// fewer than two losses.
    pub mean_distance: f64,
}

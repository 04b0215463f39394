//! What STAMP adds to a run: the round trip split by the reflector's timestamps T2 (received)
//! and T3 (sent) into a forward delay T2 − T1 and a backward delay T4 − T3 (across two clocks)
//! and the reflector's dwell T3 − T2 (on one); losses and reordering told apart by direction;
//! and what the RFC 8972 TLVs of the replies said.

use super::stats::{Latency, LatencySummary};
use super::summary::TosCounts;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One first answer from a reflector, as the sender's model needs it.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub seq: u64,
    /// T1 and T4 on this host's wall clock, T2 and T3 on the reflector's, since the Unix epoch.
    pub t1: Duration,
    pub t2: Duration,
    pub t3: Duration,
    pub t4: Duration,
    /// The reflector's own sequence number (its count, stateful), or Direct Measurement's
    /// receive counter, and whether it is the latter.
    pub reflector_seq: u32,
    pub direct_received: Option<u32>,
    pub ttl: u8,
    pub reflector_synchronized: bool,
    /// First answers received so far, this one included.
    pub received: u64,
}

/// One answer's round trip, split: forward T2 − T1 and backward T4 − T3 (signed: across two
/// clocks, an offset can make them negative), and the reflector's dwell T3 − T2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub forward_ns: i64,
    pub backward_ns: i64,
    pub dwell_ns: u64,
}

/// Answers remembered for IPDV: a probe whose neighbour's answer came more than this many
/// answers apart is left out of it.
const RECENT: usize = 1024;

/// A remembered answer: its sequence number and one-way delays, ns.
#[derive(Clone, Copy)]
struct Recent {
    seq: u64,
    forward: i128,
    backward: i128,
}

/// Signed nanoseconds from `a` to `b`.
fn signed_ns(a: Duration, b: Duration) -> i128 {
    b.as_nanos() as i128 - a.as_nanos() as i128
}

/// One direction's distributions.
#[derive(Clone, Default)]
pub struct Direction {
    pub delay: Latency,
    /// |D(i) − D(i−1)| of consecutive probes both answered, in whatever order (RFC 5481 IPDV,
    /// as magnitudes): the clocks' offset cancels out, so it holds either way.
    pub ipdv: Latency,
    /// Samples below zero (an offset larger than the delay), left out of `delay`.
    pub below_zero: u64,
    /// Probes that arrived (at the reflector, forward; here, backward) after one sent later.
    pub reordered: u64,
}

impl Direction {
    fn record(&mut self, delay_ns: i128) {
        match u64::try_from(delay_ns) {
            Ok(ns) => self.delay.record(ns),
            Err(_) => self.below_zero += 1,
        }
    }

    fn ipdv(&mut self, change_ns: i128) {
        let magnitude = change_ns.unsigned_abs().min(u128::from(u64::MAX));
        self.ipdv.record(magnitude as u64);
    }

    fn merge(&mut self, o: &Direction) {
        self.delay.merge(&o.delay);
        self.ipdv.merge(&o.ipdv);
        self.below_zero += o.below_zero;
        self.reordered += o.reordered;
    }
}

/// The distributions and counts behind a STAMP run's split, kept so that flows merge.
#[derive(Clone, Default)]
pub struct OneWayDistributions {
    pub forward: Direction,
    pub backward: Direction,
    pub dwell: Latency,
    /// Replies whose reflector said its clock is synchronised, and replies in all.
    pub reflector_synchronized: u64,
    pub replies: u64,
    /// The reflector counts what it receives (a stateful reflector's sequence numbers differ
    /// from ours, or Direct Measurement counters came back): losses split by direction.
    pub reflector_counts: bool,
    /// As of the answered probe with the highest sequence number: probes sent up to it, those
    /// the reflector never counted (forward), and answers it sent that never came back.
    pub sent_to_highest: u64,
    pub forward_lost: u64,
    pub backward_lost: u64,
    /// Lowest and highest TTL (or hop limit) our probes reached the reflector with.
    pub ttl: Option<(u8, u8)>,
    /// The one-way delays of recently answered probes, by sequence number modulo its length
    /// (for IPDV, whatever order answers come in); the highest numbered answer and its T2, and
    /// the latest T3 (for reordering).
    recent: Vec<Recent>,
    highest: Option<(u64, Duration)>,
    /// The latest answer the reflector sent, as (T3, T2): answers of one batch share a T3 and
    /// leave in the order they came (T2).
    latest_sent: (Duration, Duration),
    pub tlvs: TlvTally,
}

impl OneWayDistributions {
    /// Distributions for one of many targets (see [`Latency::compact`]).
    pub fn compact() -> Self {
        let direction = || Direction {
            delay: Latency::compact(),
            ipdv: Latency::compact(),
            ..Direction::default()
        };
        Self {
            forward: direction(),
            backward: direction(),
            dwell: Latency::compact(),
            ..Self::default()
        }
    }

    /// Takes a first answer: records its delays, counts, reordering and TTL; returns its split
    /// (the dwell comes off the round trip).
    pub fn record(&mut self, s: &Sample) -> Split {
        let dwell = s.t3.saturating_sub(s.t2).as_nanos() as u64;
        self.dwell.record(dwell);
        self.replies += 1;
        self.reflector_synchronized += u64::from(s.reflector_synchronized);
        self.ttl = Some(match self.ttl {
            Some((low, high)) => (low.min(s.ttl), high.max(s.ttl)),
            None => (s.ttl, s.ttl),
        });
        let (forward, backward) = (signed_ns(s.t1, s.t2), signed_ns(s.t3, s.t4));
        self.forward.record(forward);
        self.backward.record(backward);
        self.pair_up(Recent {
            seq: s.seq,
            forward,
            backward,
        });
        // Backward: the reflector sent this before one that came in earlier. Forward: a later
        // probe reached the reflector first (as far as the answers so far tell).
        self.backward.reordered += u64::from((s.t3, s.t2) < self.latest_sent);
        self.latest_sent = self.latest_sent.max((s.t3, s.t2));
        self.forward.reordered +=
            u64::from(self.highest.is_some_and(|(h, t2)| h > s.seq && t2 < s.t2));
        self.count(s);
        let clamp = |ns: i128| ns.clamp(i64::MIN.into(), i64::MAX.into()) as i64;
        Split {
            forward_ns: clamp(forward),
            backward_ns: clamp(backward),
            dwell_ns: dwell,
        }
    }

    /// IPDV of `this` answer with its neighbours' (probes seq − 1 and seq + 1) that came before
    /// it: each consecutive pair is taken once, when its second answer arrives.
    fn pair_up(&mut self, this: Recent) {
        if self.recent.is_empty() {
            let empty = Recent {
                seq: u64::MAX,
                forward: 0,
                backward: 0,
            };
            self.recent = vec![empty; RECENT];
        }
        let slot = |seq: u64| (seq % RECENT as u64) as usize;
        for neighbour in [this.seq.checked_sub(1), this.seq.checked_add(1)]
            .into_iter()
            .flatten()
        {
            let other = self.recent[slot(neighbour)];
            if other.seq == neighbour {
                self.forward.ipdv(this.forward - other.forward);
                self.backward.ipdv(this.backward - other.backward);
            }
        }
        self.recent[slot(this.seq)] = this;
    }

    /// Updates the loss split from the reflector's count of what it received.
    fn count(&mut self, s: &Sample) {
        // A reflector that answered received at least this probe, and cannot have received more
        // than were sent: a counter outside that is not believed.
        let direct = s
            .direct_received
            .filter(|&r| r >= 1 && u64::from(r) <= s.seq + 1);
        let counted = match direct {
            Some(received) => u64::from(received),
            None => u64::from(s.reflector_seq) + 1,
        };
        self.reflector_counts |= direct.is_some() || s.reflector_seq != s.seq as u32;
        if self.highest.is_some_and(|(h, _)| h >= s.seq) {
            return;
        }
        self.highest = Some((s.seq, s.t2));
        // The reflector counted `counted` of the seq + 1 probes sent up to this one, and we
        // received `received` of the answers it sent.
        self.sent_to_highest = s.seq + 1;
        self.forward_lost = self.sent_to_highest.saturating_sub(counted);
        self.backward_lost = counted.saturating_sub(s.received);
    }

    /// Forward and backward losses, where they can be told apart: always with no loss at all;
    /// otherwise only from a reflector that counts (a stateless one copies our numbers, and a
    /// counting one that lost nothing forward looks the same).
    pub fn split_loss(&self, lost: u64) -> Option<(u64, u64)> {
        if lost == 0 {
            Some((0, 0))
        } else {
            self.reflector_counts
                .then_some((self.forward_lost, self.backward_lost))
        }
    }

    pub fn merge(&mut self, other: &OneWayDistributions) {
        // Flows are sessions of their own: their splits add up where every one is known.
        self.reflector_counts = match (self.replies, other.replies) {
            (0, _) => other.reflector_counts,
            (_, 0) => self.reflector_counts,
            _ => self.reflector_counts && other.reflector_counts,
        };
        self.forward.merge(&other.forward);
        self.backward.merge(&other.backward);
        self.dwell.merge(&other.dwell);
        self.reflector_synchronized += other.reflector_synchronized;
        self.replies += other.replies;
        self.sent_to_highest += other.sent_to_highest;
        self.forward_lost += other.forward_lost;
        self.backward_lost += other.backward_lost;
        self.ttl = match (self.ttl, other.ttl) {
            (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
            (a, b) => a.or(b),
        };
        self.tlvs.merge(&other.tlvs);
    }
}

/// One direction of a STAMP round trip, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OneWay {
    /// Delays on two clocks: true one-way delays when both are synchronised (see
    /// `clocks_synchronized`); otherwise they also hold the clocks' offset.
    pub delay: Option<LatencySummary>,
    /// RFC 5481 IP packet delay variation between consecutive probes, as magnitudes: free of
    /// the clocks' offset, so valid either way.
    pub ipdv: Option<LatencySummary>,
    /// Samples below zero (an offset larger than the delay), left out of `delay`.
    pub below_zero: u64,
    /// This host's clock and the reflector's both said they were synchronised (the reflector
    /// in every reply).
    pub clocks_synchronized: bool,
    /// Probes lost this way, from the reflector's count (a stateful reflector's sequence
    /// numbers, RFC 8762 §4.3, or Direct Measurement counters, RFC 8972 §4.5), as of the last
    /// probe answered. `null`: the split is not known.
    pub lost: Option<u64>,
    /// `lost` of the probes that went this way (forward: those sent up to the last answered;
    /// backward: the answers the reflector sent).
    pub loss_pct: Option<f64>,
    /// Probes overtaken this way: forward, a later probe reached the reflector first (its T2);
    /// backward, the reflector sent this answer before one that arrived earlier (its T3).
    pub reordered: u64,
    /// Forward only: the TTL (or hop limit) our probes reached the reflector with, lowest and
    /// highest; `hops` from the nearest usual initial TTL above it (64, 128 or 255).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<TtlRange>,
}

/// Whether each side's clock said it was synchronised (the sender's from the kernel's clock
/// discipline, the reflector's from the S bit of every answer): one-way delays are true delays
/// only when both are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClockSides {
    pub sender: bool,
    pub reflector: bool,
}

impl ClockSides {
    pub fn of(d: &OneWayDistributions, sender: bool) -> Self {
        ClockSides {
            sender,
            reflector: d.replies > 0 && d.reflector_synchronized == d.replies,
        }
    }
}

/// TTLs seen by the reflector, and the hop count they suggest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TtlRange {
    pub min: u8,
    pub max: u8,
    /// Hops from the nearest usual initial TTL (64, 128, 255) at or above `max`.
    pub hops: u8,
}

impl TtlRange {
    /// The range `min..=max`, and the hops from the nearest usual initial TTL (64, 128, 255) at
    /// or above `max`.
    pub fn of(min: u8, max: u8) -> Self {
        let initial = [64u8, 128, 255]
            .into_iter()
            .find(|&initial| initial >= max)
            .unwrap_or(255);
        TtlRange {
            min,
            max,
            hops: initial - max,
        }
    }
}

impl OneWay {
    /// Both directions of `d`, given whether this host's clock is synchronised and the run's
    /// losses in all.
    pub fn of(d: &OneWayDistributions, local_synchronized: bool, lost: u64) -> [OneWay; 2] {
        let synchronized =
            local_synchronized && d.replies > 0 && d.reflector_synchronized == d.replies;
        let split = d.split_loss(lost);
        let pct = |lost: u64, of: u64| (of > 0).then(|| 100.0 * lost as f64 / of as f64);
        let way = |w: &Direction, lost: Option<u64>, of: u64| OneWay {
            delay: w.delay.summary(),
            ipdv: w.ipdv.summary(),
            below_zero: w.below_zero,
            clocks_synchronized: synchronized,
            lost,
            loss_pct: lost.and_then(|l| pct(l, of)),
            reordered: w.reordered,
            ttl: None,
        };
        let sent = d.sent_to_highest;
        let mut forward = way(&d.forward, split.map(|s| s.0), sent);
        forward.ttl = d.ttl.map(|(min, max)| TtlRange::of(min, max));
        let reflected = sent.saturating_sub(d.forward_lost);
        let backward = way(&d.backward, split.map(|s| s.1), reflected);
        [forward, backward]
    }

    /// Probes lost in neither direction as far as the reflector's count tells: those after the
    /// last one answered (no later answer says whether the reflector saw them).
    pub fn unattributed(forward: &OneWay, backward: &OneWay, lost: u64) -> Option<u64> {
        Some(lost.saturating_sub(forward.lost? + backward.lost?))
    }
}

/// RFC 8972 TLVs handled, and those flagged: unknown to the reflector (U), malformed (M), or
/// failing their HMAC (I).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TlvCounts {
    pub tlvs: u64,
    pub unrecognized: u64,
    pub malformed: u64,
    pub integrity_failed: u64,
}

impl TlvCounts {
    pub fn add(&mut self, o: &TlvCounts) {
        self.tlvs += o.tlvs;
        self.unrecognized += o.unrecognized;
        self.malformed += o.malformed;
        self.integrity_failed += o.integrity_failed;
    }
}

/// What the TLVs of a sender's replies said, tallied.
#[derive(Clone, Default)]
pub struct TlvTally {
    pub counts: TlvCounts,
    /// Replies with an HMAC TLV that did not verify.
    pub hmac_failed: u64,
    /// Class of Service: the DSCP and ECN our probes reached the reflector with, by value, and
    /// answers whose reflector said it did not send them with the DSCP asked for.
    pub at_reflector: TosCounts,
    pub reply_dscp_not_as_asked: u64,
    /// Direct Measurement counters of the highest answered probe.
    pub direct: Option<(u64, [u32; 3])>,
    /// The reflector's synchronisation source and timestamp method, as it last said.
    pub reflector_clock: Option<(u8, u8)>,
}

impl TlvTally {
    pub fn merge(&mut self, o: &TlvTally) {
        self.counts.add(&o.counts);
        self.hmac_failed += o.hmac_failed;
        self.at_reflector.merge(&o.at_reflector);
        self.reply_dscp_not_as_asked += o.reply_dscp_not_as_asked;
        self.direct = match (self.direct, o.direct) {
            (Some((_, a)), Some((_, b))) => Some((0, [0, 1, 2].map(|i| a[i] + b[i]))),
            (a, b) => a.or(b),
        };
        self.reflector_clock = self.reflector_clock.or(o.reflector_clock);
    }
}

/// The TLVs a STAMP run sent and what came back in them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StampTlvSummary {
    /// The TLVs each test packet carried.
    pub sent: Vec<&'static str>,
    /// TLVs in the replies, and those the reflector flagged (or that came back malformed).
    #[serde(flatten)]
    pub counts: TlvCounts,
    /// Replies whose HMAC TLV did not verify.
    pub hmac_failed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_of_service: Option<ClassOfServiceSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_measurement: Option<DirectSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reflector_clock: Option<ReflectorClock>,
}

/// Class of Service: what the probes were sent with, and what they reached the reflector with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassOfServiceSummary {
    pub dscp_sent: u8,
    pub ecn_sent: &'static str,
    /// DSCP values at the reflector, with how many probes carried each.
    pub dscp_at_reflector: BTreeMap<u8, u64>,
    pub ecn_at_reflector: BTreeMap<&'static str, u64>,
    /// Probes whose DSCP was changed on the way (remarked or bleached).
    pub remarked: u64,
    /// Probes whose ECN field was changed on the way (`ce`: congestion experienced).
    pub ecn_changed: u64,
    /// Answers whose reflector said they did not go back with the DSCP asked for (RP).
    pub reply_dscp_not_as_asked: u64,
}

/// Direct Measurement counters as of the highest answered probe (summed over flows).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DirectSummary {
    pub sender_sent: u64,
    pub reflector_received: u64,
    pub reflector_sent: u64,
}

/// The reflector's clock, from the Timestamp Information TLV.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReflectorClock {
    pub sync_source: &'static str,
    pub timestamp_method: &'static str,
}

/// RFC 3168's names of the ECN codepoints.
pub fn ecn_name(ecn: u8) -> &'static str {
    ["not-ect", "ect1", "ect0", "ce"][usize::from(ecn & 3)]
}

/// The codepoint of an ECN name of [`ecn_name`].
pub fn ecn_code(name: &str) -> u8 {
    (0u8..4).find(|&e| ecn_name(e) == name).unwrap_or(0)
}

/// RFC 8972 §5.3's synchronisation sources.
fn sync_source_name(code: u8) -> &'static str {
    match code {
        0 => "not filled in",
        1 => "ntp",
        2 => "ptp",
        3 => "ssu/bits",
        4 => "gnss",
        5 => "local",
        _ => "unknown",
    }
}

/// RFC 8972 §5.4's timestamping methods.
fn timestamp_method_name(code: u8) -> &'static str {
    match code {
        0 => "not filled in",
        1 => "hardware",
        2 => "software",
        3 => "control plane",
        _ => "unknown",
    }
}

impl StampTlvSummary {
    /// The summary of `t`, for TLVs `sent`, probes sent with DSCP and ECN `tos` (when the
    /// Class of Service TLV was).
    pub fn of(t: &TlvTally, sent: Vec<&'static str>, tos: Option<(u8, u8)>) -> Self {
        let class_of_service = tos.map(|(dscp, ecn)| {
            let seen = &t.at_reflector;
            let total = seen.total();
            ClassOfServiceSummary {
                dscp_sent: dscp,
                ecn_sent: ecn_name(ecn),
                dscp_at_reflector: seen.dscp_map(),
                ecn_at_reflector: seen.ecn_map(),
                remarked: total - seen.dscp[usize::from(dscp & 63)],
                ecn_changed: total - seen.ecn[usize::from(ecn & 3)],
                reply_dscp_not_as_asked: t.reply_dscp_not_as_asked,
            }
        });
        StampTlvSummary {
            sent,
            counts: t.counts,
            hmac_failed: t.hmac_failed,
            class_of_service,
            direct_measurement: t.direct.map(|(_, [s, r, x])| DirectSummary {
                sender_sent: s.into(),
                reflector_received: r.into(),
                reflector_sent: x.into(),
            }),
            reflector_clock: t.reflector_clock.map(|(sync, method)| ReflectorClock {
                sync_source: sync_source_name(sync),
                timestamp_method: timestamp_method_name(method),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64, t1: u64, t2: u64, t3: u64, t4: u64) -> Sample {
        let us = Duration::from_micros;
        Sample {
            seq,
            t1: us(t1),
            t2: us(t2),
            t3: us(t3),
            t4: us(t4),
            reflector_seq: seq as u32,
            direct_received: None,
            ttl: 64,
            reflector_synchronized: false,
            received: seq + 1,
        }
    }

    #[test]
    fn ipdv_is_the_change_of_delay_between_consecutive_probes() {
        let mut d = OneWayDistributions::default();
        // Forward delays 10, 13, (probe 2 not yet answered), 11 us; backward 5, 5, 9 us.
        d.record(&sample(0, 0, 10, 11, 16));
        d.record(&sample(1, 100, 113, 114, 119));
        d.record(&sample(3, 300, 311, 312, 321));
        let ipdv = d.forward.ipdv.summary().unwrap();
        assert_eq!(
            (ipdv.count, ipdv.max_us),
            (1, 3.0),
            "only 0→1 are consecutive"
        );
        assert_eq!(d.backward.ipdv.summary().unwrap().max_us, 0.0);
        assert_eq!(d.dwell.summary().unwrap().max_us, 1.0);
        // Probe 2's answer (forward 6 us, backward 5 us) comes last: it pairs with 1 and 3.
        d.record(&sample(2, 200, 206, 207, 212));
        let ipdv = d.forward.ipdv.summary().unwrap();
        assert_eq!((ipdv.count, ipdv.max_us), (3, 7.0));
        assert_eq!(d.backward.ipdv.summary().unwrap().max_us, 4.0);
    }

    #[test]
    fn reordering_is_told_by_direction() {
        let mut d = OneWayDistributions::default();
        // Probe 1 overtakes 0 on the way out (T2 earlier); answers leave in T2 order.
        d.record(&sample(1, 10, 20, 21, 30));
        d.record(&sample(0, 0, 25, 26, 35));
        assert_eq!((d.forward.reordered, d.backward.reordered), (1, 0));
        // Probe 3's answer overtakes 2's on the way back (2 left the reflector first).
        d.record(&sample(3, 40, 50, 52, 60));
        d.record(&sample(2, 30, 45, 47, 62));
        assert_eq!((d.forward.reordered, d.backward.reordered), (1, 1));
        // Answers of one batch share a T3: the one received first (T2) left first.
        d.record(&sample(5, 60, 71, 80, 90));
        d.record(&sample(4, 50, 70, 80, 91));
        assert_eq!((d.forward.reordered, d.backward.reordered), (1, 2));
    }

    #[test]
    fn direct_measurement_counters_split_the_loss_of_a_stateless_reflector() {
        let mut d = OneWayDistributions::default();
        // 10 probes sent up to seq 9; the reflector received 8, we got 7 of its answers.
        let mut s = sample(9, 0, 1, 2, 3);
        s.direct_received = Some(8);
        s.received = 7;
        d.record(&s);
        assert_eq!(d.split_loss(3), Some((2, 1)));
        let [f, b] = OneWay::of(&d, false, 4);
        assert_eq!((f.loss_pct, b.loss_pct), (Some(20.0), Some(12.5)));
        assert_eq!(OneWay::unattributed(&f, &b, 4), Some(1));
    }
}

//! Receiving: replies read in batches, timed, decoded, checked against what was sent, classified
//! by the in-flight table and recorded; timeouts fired; ICMP errors matched to their probes.

use super::clock::{kernel_arrival, ClockPair, Paired};
use super::inflight::{ProbeState, Verdict};
use super::{Phase, Pinger, TICK_NS};
use crate::config::Pace;
use crate::error::Error;
use crate::model::stamp::{Sample, Split, TlvTally};
use crate::model::{ProbeEvent, ReplyKind};
use crate::roles::socket;
use crate::roles::stamp::add_marks;
use crate::sys::{drain_error_queue, MmsgBatch};
use crate::wire::stamp::tlv::Returned;
use crate::wire::{ProbeHeader, Reflection, Reply};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

impl Pinger<'_> {
    /// An ICMP error was reported; `seq` is the probe it names, when known.
    fn note_unreachable(&mut self, seq: Option<u64>) {
        self.counters.unreachable += 1;
        if let Some(seq) = seq {
            self.table.mark_unreachable(seq);
        }
    }

    /// When a datagram arrived, ns since the epoch: the kernel's receive timestamp where there is
    /// one, so that time spent queued in the socket (or in a batch) is not counted.
    fn arrival_ns(&self, clock: &ClockPair, kernel_rx: Option<Duration>) -> u64 {
        let mono_ns = self.ns(clock.mono);
        match (clock.real, kernel_rx) {
            (Some((before, after)), Some(kernel_rx)) => {
                match kernel_arrival(mono_ns, before, after, kernel_rx) {
                    Paired::Arrival(ns) => ns,
                    Paired::Retry | Paired::Unusable => mono_ns,
                }
            }
            _ => mono_ns,
        }
    }

    /// Reads what has arrived; returns how many buffers that was.
    pub(super) fn receive(&mut self) -> Result<usize, Error> {
        let mut batch = self.batch.take().expect("receive slots present");
        let result = self.receive_batches(&mut batch);
        self.batch = Some(batch);
        result
    }

    fn receive_batches(&mut self, batch: &mut MmsgBatch) -> Result<usize, Error> {
        let mut total = 0;
        loop {
            let n = match batch.receive(&self.socket) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A pending ICMP error reported on receive; the error queue names the probe.
                Err(e) if socket::is_unreachable(&e) => continue,
                Err(e) => return Err(Error::io("receive on", self.local, e)),
            };
            total += n;
            // One clock pairing serves the whole batch: each datagram's own kernel stamp places it.
            let clock = ClockPair::read(self.kernel_stamps);
            for i in 0..n {
                let Some(meta) = batch.meta(i) else { continue };
                if let Some(drops) = meta.drops {
                    // A running total since the socket was opened.
                    self.counters.local_drops = self.counters.local_drops.max(drops.into());
                }
                let at_ns = self.arrival_ns(&clock, meta.kernel_rx);
                for datagram in meta.datagrams(batch.payload(i)) {
                    let received = self.counters.received;
                    self.on_datagram(datagram, meta.from, at_ns);
                    // The IP headers of first answers, where the run reads them.
                    if let Some(h) = self.dist.reply_headers.as_deref_mut() {
                        if self.counters.received > received {
                            h.record(meta.tos, meta.ttl);
                        }
                    }
                }
            }
            if n < batch.capacity() {
                // The queue was empty: a new reply raises a new event (no call to see EAGAIN).
                return Ok(total);
            }
            if self.phase == Phase::Sending {
                // More replies wait: refill the window with what this batch freed first, so the
                // echo works on those while this loop reads the rest.
                self.send_due(Instant::now())?;
            }
        }
    }

    pub(super) fn drain_icmp(&mut self) {
        let session = self.session;
        let mut named = Vec::new();
        let _ = drain_error_queue(&self.socket, |error, original| {
            let seq = ProbeHeader::decode(original)
                .ok()
                .filter(|h| h.session == session)
                .map(|h| h.seq);
            named.push((error, seq));
        });
        let ipv6 = self.cfg.target.is_ipv6();
        for (error, seq) in named {
            if !error.too_big() {
                self.note_unreachable(seq);
                continue;
            }
            // Too big is not unreachable: the path is there for smaller probes.
            if let Some(too_big) = self.too_big.as_mut() {
                if let Some(mtu) = error.mtu {
                    too_big.set_mtu(mtu, ipv6);
                }
                // A router's report names its probe; this host's own check does not.
                too_big.icmp += u64::from(seq.is_some());
            }
        }
    }

    fn on_datagram(&mut self, data: &[u8], from: SocketAddr, now_ns: u64) {
        let len = data.len();
        if from != self.cfg.target {
            self.counters.foreign += 1;
            self.emit(ProbeEvent::Foreign { from, len });
            return;
        }
        // The sequence number, and the send time the reply carries where the format has one.
        let (seq, stamp, reflection) =
            match self
                .cfg
                .wire
                .decode_reply(data, self.session, self.cfg.key.as_ref())
            {
                Reply::Probe {
                    seq,
                    send_ns,
                    reflection,
                } => {
                    let seq = widen(seq, self.cfg.wire.seq_bits(), self.table.next_seq());
                    (seq, send_ns, reflection)
                }
                Reply::OtherSession => {
                    self.counters.foreign += 1;
                    self.emit(ProbeEvent::Foreign { from, len });
                    return;
                }
                Reply::AuthFailed { seq } => {
                    return self.mismatched(Some(seq), len, "authentication failed")
                }
                Reply::NotAReply(reason) => return self.mismatched(None, len, reason),
            };
        let Some(slot) = self.table.get(seq).copied() else {
            return match self.table.on_reply(seq, now_ns, self.timeout_ns) {
                Verdict::Stale => self.counters.stale += 1,
                _ => self.mismatched(Some(seq), len, "sequence number never sent"),
            };
        };
        if slot.state != ProbeState::NotSent {
            let header_len = self.cfg.header_len();
            let faithful = len == self.probe.len()
                && stamp.is_none_or(|sent| sent == slot.sent_ns)
                && (!self.cfg.wire.echoes_padding()
                    || data[header_len..] == self.probe[header_len..]);
            if !faithful {
                let reason = if len < self.probe.len() {
                    "truncated"
                } else {
                    "altered"
                };
                return self.mismatched(Some(seq), len, reason);
            }
        }
        let mut rtt_ns = now_ns.saturating_sub(slot.sent_ns);
        let mut split = None;
        let kind = match self.table.on_reply(seq, now_ns, self.timeout_ns) {
            Verdict::Received { reordered } => {
                self.counters.received += 1;
                if let Some(r) = reflection {
                    split = self.split_round_trip(&r, seq, slot.sent_ns, now_ns);
                    rtt_ns = rtt_ns.saturating_sub(split.map_or(0, |s| s.dwell_ns));
                }
                self.counters.reordered += u64::from(reordered);
                self.dist.rtt.record(rtt_ns);
                self.jitter.record(rtt_ns);
                if let Some((clock, _)) = self.intervals.as_mut() {
                    clock.record_rtt(rtt_ns);
                    if let Some(s) = split {
                        let ns = |v: i64| u64::try_from(v).ok();
                        clock.record_one_way(ns(s.forward_ns), ns(s.backward_ns));
                    }
                }
                if matches!(self.cfg.pace, Pace::Rate(_)) {
                    self.dist
                        .rtt_from_intended
                        .record(now_ns.saturating_sub(slot.intended_ns));
                }
                ReplyKind::Received { reordered }
            }
            Verdict::Late => {
                if slot.state == ProbeState::Lost {
                    self.counters.lost -= 1;
                }
                self.counters.late += 1;
                ReplyKind::Late
            }
            Verdict::Duplicate => {
                self.counters.duplicates += 1;
                ReplyKind::Duplicate
            }
            Verdict::NeverSent => return self.mismatched(Some(seq), len, "probe was never sent"),
            Verdict::Stale => {
                self.counters.stale += 1;
                return;
            }
        };
        self.emit(ProbeEvent::Reply {
            seq,
            intended_ns: slot.intended_ns,
            sent_ns: slot.sent_ns,
            rtt_ns,
            len,
            kind,
            split,
        });
    }

    /// Records what a STAMP reflector's answer to probe `seq` tells of its round trip from
    /// `sent_ns` to `arrived_ns`: the forward and backward delays across the two clocks and the
    /// dwell T3 - T2 (which comes off the round trip), the reflector's count, its TLVs.
    fn split_round_trip(
        &mut self,
        r: &Reflection,
        seq: u64,
        sent_ns: u64,
        arrived_ns: u64,
    ) -> Option<Split> {
        let received = self.counters.received + self.counters.late;
        let d = self.dist.one_way.as_deref_mut()?;
        tally(&mut d.tlvs, seq, &r.tlvs);
        Some(d.record(&Sample {
            seq,
            t1: self.epoch_wall + Duration::from_nanos(sent_ns),
            t2: r.received,
            t3: r.sent,
            t4: self.epoch_wall + Duration::from_nanos(arrived_ns),
            reflector_seq: r.seq,
            direct_received: r.tlvs.direct.map(|c| c.reflector_received),
            ttl: r.ttl,
            reflector_synchronized: r.synchronized,
            received,
        }))
    }

    fn mismatched(&mut self, seq: Option<u64>, len: usize, reason: &'static str) {
        self.counters.mismatched += 1;
        self.emit(ProbeEvent::Mismatched { seq, len, reason });
    }

    /// Fires due timeouts and hands resolved probes, in order, to the outage tracker.
    pub(super) fn expire(&mut self, now_ns: u64) {
        while let Some(seq) = self.timeouts.poll(now_ns / TICK_NS) {
            if let Some(slot) = self.table.on_timeout(seq) {
                self.counters.lost += 1;
                self.timeouts_fired += 1;
                self.emit(ProbeEvent::Lost {
                    seq,
                    intended_ns: slot.intended_ns,
                    sent_ns: slot.sent_ns,
                    unreachable: slot.unreachable,
                });
            }
        }
        while let Some(slot) = self.table.pop_resolved() {
            self.outages.observe(&slot);
            self.loss_pattern.observe(&slot);
        }
    }
}

/// Adds what the TLVs of the answer to probe `seq` said.
fn tally(t: &mut TlvTally, seq: u64, r: &Returned) {
    add_marks(&mut t.counts, &r.marks);
    t.hmac_failed += u64::from(r.hmac_ok == Some(false));
    if let Some(cos) = r.class_of_service {
        t.at_reflector.record(cos.received.dscp, cos.received.ecn);
        t.reply_dscp_not_as_asked += u64::from(cos.reply_not_as_asked);
    }
    if let Some(c) = r.direct {
        if t.direct.is_none_or(|(latest, _)| seq >= latest) {
            let counts = [c.sender_sent, c.reflector_received, c.reflector_sent];
            t.direct = Some((seq, counts));
        }
    }
    t.reflector_clock = r.timestamp_info.or(t.reflector_clock);
}

/// The sequence number whose low `bits` bits are `low`: the latest one before `next` (the next
/// to be sent), as replies answer probes already sent; `low` itself when there is none.
fn widen(low: u64, bits: u32, next: u64) -> u64 {
    if bits >= 64 {
        return low;
    }
    let span = 1u64 << bits;
    let candidate = (next & !(span - 1)) | low;
    if candidate >= next && candidate >= span {
        candidate - span
    } else {
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::widen;

    #[test]
    fn a_32_bit_sequence_number_widens_to_the_latest_probe_sent() {
        assert_eq!(widen(5, 64, 0), 5);
        assert_eq!(widen(5, 32, 10), 5);
        // Past a wrap: low 3 is probe 2^32 + 3, low 2^32 - 1 the probe just before the wrap.
        let next = (1u64 << 32) + 10;
        assert_eq!(widen(3, 32, next), (1 << 32) + 3);
        assert_eq!(widen(u64::from(u32::MAX), 32, next), u64::from(u32::MAX));
        // Never sent yet: left as it is (the table calls it never sent).
        assert_eq!(widen(20, 32, 10), 20);
    }
}

//! Receiving: replies read in batches, timed, decoded, checked against what was sent, classified
//! by the in-flight table and recorded; timeouts fired; ICMP errors matched to their probes.

use super::clock::{to_monotonic, ClockPair, Paired};
use super::inflight::{ProbeState, Slot, Verdict};
use super::target::Target;
use super::{Phase, Pinger, TICK_NS};
use crate::error::Error;
use crate::model::stamp::{Sample, Split, TlvTally};
use crate::model::{ProbeEvent, ReplyKind};
use crate::roles::socket;
use crate::roles::stamp::add_marks;
use crate::sys::{IcmpError, MmsgBatch, Queued};
use crate::wire::stamp::tlv::Returned;
use crate::wire::{ProbeHeader, Reflection, Reply};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How far before the clock read that preceded its send a kernel send time may fall and still
/// be taken as that probe's: the realtime-to-monotonic pairing is good to about a microsecond.
const KERNEL_SENT_SLACK_NS: u64 = 2_000;

impl Pinger<'_> {
    /// The index of the target at `addr` (IPv4-mapped or not), if it is one.
    #[inline]
    fn target_at(&self, addr: SocketAddr) -> Option<usize> {
        let addr = socket::canonical(addr);
        if self.one_target() {
            return (self.targets[0].addr == addr).then_some(0);
        }
        self.by_addr.get(&addr).map(|&t| t as usize)
    }

    /// When a datagram arrived, ns since the epoch: the kernel's receive timestamp where there is
    /// one, so that time spent queued in the socket (or in a batch) is not counted; else the
    /// batch's clock read (`mono_ns`: `clock.mono` since the epoch).
    fn arrival_ns(clock: &ClockPair, mono_ns: u64, kernel_rx: Option<Duration>) -> u64 {
        match (clock.real, kernel_rx) {
            (Some((before, after)), Some(kernel_rx)) => {
                match to_monotonic(mono_ns, before, after, kernel_rx) {
                    Paired::At(ns) => ns,
                    Paired::Retry | Paired::Unusable => mono_ns,
                }
            }
            _ => mono_ns,
        }
    }

    /// Reads what has arrived; returns how many buffers that was. The first read waits for a
    /// datagram when `wait` (on a socket set up to: `Role::wait_in_reads`).
    pub(super) fn receive(&mut self, wait: bool) -> Result<usize, Error> {
        let mut batch = self.batch.take().expect("receive slots present");
        // A loop that waits in its reads or spins reads again at once: it asks for no more
        // replies than probes can be in flight (one probe in flight: one `recvfrom`; strays
        // wait for the next read).
        let reads_again = wait || self.spinning.is_some();
        batch.set_ask_limit(if reads_again {
            self.window()
        } else {
            usize::MAX
        });
        let result = self.receive_batches(&mut batch, wait, reads_again);
        self.batch = Some(batch);
        result
    }

    fn receive_batches(
        &mut self,
        batch: &mut MmsgBatch,
        wait: bool,
        reads_again: bool,
    ) -> Result<usize, Error> {
        let mut total = 0;
        let mut wait = wait;
        loop {
            // Only the first read waits.
            let waited = std::mem::take(&mut wait);
            let n = match batch.receive(&self.socket, waited) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                // A signal cut the wait short: the loop has it to look at.
                Err(e) if e.kind() == io::ErrorKind::Interrupted && waited => return Ok(total),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A pending ICMP error (unreachable, or too big for the path) reported on
                // receive; the error queue, read at the next turn, names the probe.
                Err(e) if socket::is_unreachable(&e) || socket::is_too_big(&e) => {
                    self.error_queue_ready = true;
                    continue;
                }
                Err(e) => return Err(Error::io("receive on", self.local, e)),
            };
            total += n;
            // Send times not read yet are read before the replies they time.
            let unbooked = self.unbooked.is_some();
            let awaiting = self
                .departures
                .as_ref()
                .is_some_and(|d| unbooked || d.awaiting());
            if awaiting {
                self.drain_error_queue();
            }
            // One clock pairing serves the whole batch (and the send times drained before it):
            // each datagram's own kernel stamp places it. Without kernel stamps, the clock read
            // as the receive returned.
            let clock = match batch.read_at() {
                Some(mono) => ClockPair { mono, real: None },
                None => ClockPair::read(self.kernel_stamps),
            };
            // A ping-pong's probe is booked now, out of the round trip, before its reply.
            self.book_sent();
            if awaiting {
                self.place_departures(&clock);
            }
            let mono_ns = self.ns(clock.mono);
            for i in 0..n {
                let Some(meta) = batch.meta(i) else { continue };
                if let Some(drops) = meta.drops {
                    // A running total since the socket was opened.
                    let counters = &mut self.socket_counters;
                    counters.local_drops = counters.local_drops.max(drops.into());
                }
                let at_ns = Self::arrival_ns(&clock, mono_ns, meta.kernel_rx);
                let Some(t) = self.target_at(meta.from) else {
                    let from = socket::canonical(meta.from);
                    for datagram in meta.datagrams(batch.payload(i)) {
                        self.socket_counters.foreign += 1;
                        self.emit(
                            None,
                            ProbeEvent::Foreign {
                                from,
                                len: datagram.len(),
                            },
                        );
                    }
                    continue;
                };
                for datagram in meta.datagrams(batch.payload(i)) {
                    let received = self.targets[t].counters.received;
                    self.on_datagram(t, datagram, at_ns);
                    // The IP headers of first answers, where the run reads them.
                    let target = &mut self.targets[t];
                    if let Some(h) = target.dist.reply_headers.as_deref_mut() {
                        if target.counters.received > received {
                            h.record(meta.tos, meta.ttl);
                        }
                    }
                }
            }
            if n < batch.capacity() || (reads_again && !batch.asked_whole_batch()) {
                // A call that came back short found the queue empty: a new reply raises a new
                // event (no call to see EAGAIN). One that asked for less than a whole batch
                // (the adaptive ask, or no more than can be due) needs no follow-up either in a
                // loop that waits in its reads or spins: it reads again at once.
                return Ok(total);
            }
            if self.phase == Phase::Sending {
                // More replies wait: refill the window with what this batch freed first, so the
                // echo works on those while this loop reads the rest.
                let now = Instant::now();
                self.send_due(now, self.ns(now))?;
            }
        }
    }

    /// Reads the error queue: ICMP errors to their targets and probes, the kernel's send times
    /// to their probes.
    pub(super) fn read_error_queue(&mut self) {
        // The send time of a probe not booked yet would find no probe to time.
        self.book_sent();
        self.drain_error_queue();
        if !self.queued_stamps.is_empty() {
            let clock = ClockPair::read(true);
            self.place_departures(&clock);
        }
    }

    /// Empties the error queue: ICMP errors go to their targets and probes now, the kernel's
    /// send times wait in `queued_stamps` for [`Pinger::place_departures`] and a clock pairing
    /// read after them.
    fn drain_error_queue(&mut self) {
        // This read empties the queue: an error event already seen asks for nothing more.
        self.error_queue_ready = false;
        if let Some(turns) = self.spinning.as_mut() {
            *turns = 0;
        }
        let session = self.session;
        let mut errors = std::mem::take(&mut self.queued_errors);
        let stamps = &mut self.queued_stamps;
        let _ = self.error_queue.drain(&self.socket, |queued| match queued {
            Queued::Icmp(error, original) => {
                let seq = ProbeHeader::decode(original)
                    .ok()
                    .filter(|h| h.session == session)
                    .map(|h| h.seq);
                errors.push((error, seq));
            }
            Queued::Sent { key, at } => stamps.push((key, at)),
        });
        self.place_icmp_errors(&errors);
        errors.clear();
        self.queued_errors = errors;
    }

    /// Gives each kernel send time drained (message `key` left at `at`, CLOCK_REALTIME) to the
    /// probes of its message, placed by its distance from `clock`, a pairing read after them.
    fn place_departures(&mut self, clock: &ClockPair) {
        let mut stamps = std::mem::take(&mut self.queued_stamps);
        let mono_ns = self.ns(clock.mono);
        if let Some(d) = self.departures.as_deref_mut() {
            for &(key, at) in &stamps {
                let Some(message) = d.take(key) else { continue };
                let Some((before, after)) = clock.real else {
                    continue;
                };
                let Paired::At(at_ns) = to_monotonic(mono_ns, before, after, at) else {
                    continue;
                };
                let Some(target) = self.targets.get_mut(message.target as usize) else {
                    continue;
                };
                let first = message.first_seq;
                for seq in first..first + u64::from(message.datagrams) {
                    if !target
                        .table
                        .set_kernel_sent(seq, at_ns, KERNEL_SENT_SLACK_NS)
                    {
                        d.unmatched += 1;
                        break;
                    }
                }
            }
        }
        stamps.clear();
        self.queued_stamps = stamps;
    }

    fn place_icmp_errors(&mut self, errors: &[(IcmpError, Option<u64>)]) {
        for &(error, seq) in errors {
            // The original destination names the target. This host's own too-big check names
            // no port (an unconnected socket's is 0): it concerns the target being sent to.
            let t = match error.to.and_then(|to| self.target_at(to)) {
                Some(t) => t,
                None if error.to.is_none_or(|to| to.port() == 0) => self.batch_target,
                None => continue,
            };
            let target = &mut self.targets[t];
            if !error.too_big() {
                target.counters.unreachable += 1;
                if let Some(seq) = seq {
                    target.table.mark_unreachable(seq);
                }
                continue;
            }
            // Too big is not unreachable: the path is there for smaller probes.
            let ipv6 = target.addr.is_ipv6();
            if let Some(too_big) = target.too_big.as_mut() {
                if let Some(mtu) = error.mtu {
                    too_big.set_mtu(mtu, ipv6);
                }
                // A router's report names its probe; this host's own check does not.
                too_big.icmp += u64::from(seq.is_some());
            }
        }
    }

    fn on_datagram(&mut self, t: usize, data: &[u8], now_ns: u64) {
        let len = data.len();
        let next_seq = self.targets[t].table.next_seq();
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
                    let seq = widen(seq, self.cfg.wire.seq_bits(), next_seq);
                    (seq, send_ns, reflection)
                }
                Reply::OtherSession => {
                    self.socket_counters.foreign += 1;
                    let from = self.targets[t].addr;
                    self.emit(None, ProbeEvent::Foreign { from, len });
                    return;
                }
                Reply::AuthFailed { seq } => {
                    return self.mismatched(t, Some(seq), len, "authentication failed")
                }
                Reply::NotAReply(reason) => return self.mismatched(t, None, len, reason),
            };
        let Some(slot) = self.targets[t].table.get(seq).copied() else {
            let target = &mut self.targets[t];
            return match target.table.on_reply(seq, now_ns, self.timeout_ns) {
                Verdict::Stale => target.counters.stale += 1,
                _ => self.mismatched(t, Some(seq), len, "sequence number never sent"),
            };
        };
        if slot.state != ProbeState::NotSent {
            if let Some(reason) = self.unfaithful(data, stamp, slot.sent_ns) {
                return self.mismatched(t, Some(seq), len, reason);
            }
        }
        // The kernel's send time where it came (never after the reply's arrival).
        let kernel_sent = slot.kernel_sent_ns().filter(|&k| k <= now_ns);
        let sent_ns = kernel_sent.unwrap_or(slot.sent_ns);
        let mut rtt_ns = now_ns.saturating_sub(sent_ns);
        let mut split = None;
        let verdict = self.targets[t].table.on_reply(seq, now_ns, self.timeout_ns);
        if self.targets.len() > 1 {
            // Of many targets, only those with news are settled (a run of one: in `expire`).
            self.targets[t].settle();
        }
        let kind = match verdict {
            Verdict::Received { reordered } => {
                if let Some(d) = self.departures.as_deref_mut() {
                    match kernel_sent {
                        Some(_) => d.round_trips += 1,
                        None => d.round_trips_without += 1,
                    }
                }
                if let Some(r) = reflection {
                    split = self.split_round_trip(t, &r, seq, sent_ns, now_ns);
                    rtt_ns = rtt_ns.saturating_sub(split.map_or(0, |s| s.dwell_ns));
                }
                self.targets[t].record_reply(rtt_ns, reordered, split);
                // At a fixed rate (closed loop sends when due: nothing to correct).
                let from_intended = now_ns.saturating_sub(slot.intended_ns);
                let at_rate = self.at_rate();
                match self.totals.as_deref_mut() {
                    Some(totals) => {
                        totals.rtt.record(rtt_ns);
                        if at_rate {
                            totals.rtt_from_intended.record(from_intended);
                        }
                    }
                    None if at_rate => {
                        let dist = &mut self.targets[t].dist;
                        dist.rtt_from_intended.record(from_intended);
                    }
                    None => {}
                }
                ReplyKind::Received { reordered }
            }
            Verdict::Late => {
                let counters = &mut self.targets[t].counters;
                if slot.state == ProbeState::Lost {
                    counters.lost -= 1;
                }
                counters.late += 1;
                ReplyKind::Late
            }
            Verdict::Duplicate => {
                self.targets[t].counters.duplicates += 1;
                ReplyKind::Duplicate
            }
            Verdict::NeverSent => {
                return self.mismatched(t, Some(seq), len, "probe was never sent")
            }
            Verdict::Stale => {
                self.targets[t].counters.stale += 1;
                return;
            }
        };
        self.emit(
            Some(t),
            ProbeEvent::Reply {
                seq,
                intended_ns: slot.intended_ns,
                sent_ns,
                rtt_ns,
                len,
                kind,
                split,
            },
        );
    }

    /// Why a reply is not the probe as sent (`sent_ns` is when it left), if it is not.
    fn unfaithful(&self, data: &[u8], stamp: Option<u64>, sent_ns: u64) -> Option<&'static str> {
        let header_len = self.cfg.header_len();
        let faithful = data.len() == self.probe.len()
            && stamp.is_none_or(|sent| sent == sent_ns)
            && (!self.cfg.wire.echoes_padding() || data[header_len..] == self.probe[header_len..]);
        match faithful {
            true => None,
            false if data.len() < self.probe.len() => Some("truncated"),
            false => Some("altered"),
        }
    }

    /// Records what a STAMP reflector's answer to probe `seq` tells of its round trip from
    /// `sent_ns` to `arrived_ns`: the forward and backward delays across the two clocks and the
    /// dwell T3 - T2 (which comes off the round trip), the reflector's count, its TLVs.
    fn split_round_trip(
        &mut self,
        t: usize,
        r: &Reflection,
        seq: u64,
        sent_ns: u64,
        arrived_ns: u64,
    ) -> Option<Split> {
        let target = &mut self.targets[t];
        // This answer counted as received.
        let received = target.counters.received + 1 + target.counters.late;
        let d = target.dist.one_way.as_deref_mut()?;
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

    fn mismatched(&mut self, t: usize, seq: Option<u64>, len: usize, reason: &'static str) {
        self.targets[t].counters.mismatched += 1;
        self.emit(Some(t), ProbeEvent::Mismatched { seq, len, reason });
    }

    /// Fires due timeouts and hands resolved probes, in order, to the outage trackers.
    pub(super) fn expire(&mut self, now_ns: u64) {
        if self.one_target() {
            // One target needs no wheel: its oldest probe in flight is the next to time out.
            loop {
                self.targets[0].settle();
                let timed_out = self.targets[0]
                    .table
                    .time_out_oldest(now_ns, self.timeout_ns);
                let Some(slot) = timed_out else { return };
                self.lost(0, slot);
            }
        }
        while let Some((t, seq)) = self.timeouts.poll(now_ns / TICK_NS) {
            let t = t as usize;
            if let Some(slot) = self.targets[t].table.on_timeout(seq) {
                self.lost(t, slot);
            }
            self.targets[t].settle();
        }
    }

    /// Probe `slot` of target `t` timed out.
    fn lost(&mut self, t: usize, slot: Slot) {
        let target = &mut self.targets[t];
        target.counters.lost += 1;
        target.timeouts_fired += 1;
        self.emit(
            Some(t),
            ProbeEvent::Lost {
                seq: slot.seq,
                intended_ns: slot.intended_ns,
                sent_ns: slot.sent_ns,
                unreachable: slot.unreachable,
            },
        );
    }
}

impl Target {
    /// A first answer within the timeout: its round trip into the distribution, jitter and the
    /// period's figures.
    #[inline]
    fn record_reply(&mut self, rtt_ns: u64, reordered: bool, split: Option<Split>) {
        self.counters.received += 1;
        self.counters.reordered += u64::from(reordered);
        self.dist.rtt.record(rtt_ns);
        self.jitter.record(rtt_ns);
        if let Some(clock) = self.intervals.as_mut() {
            clock.record_rtt(rtt_ns);
            if let Some(s) = split {
                let ns = |v: i64| u64::try_from(v).ok();
                clock.record_one_way(ns(s.forward_ns), ns(s.backward_ns));
            }
        }
    }

    /// Hands the probes resolved, in sequence order, to the outage and loss-pattern trackers.
    pub(super) fn settle(&mut self) {
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

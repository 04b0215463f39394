//! Sending: what the schedule says is due, encoded and sent in batches, each outcome booked in
//! sequence order (sent, or not sent and why). A ping-pong's probe is held for the read that
//! waits for its reply, and booked after the reply's clock read.

use super::target::Target;
use super::{Phase, Pinger, TICK_NS};
use crate::config::Pace;
use crate::engine::Wake;
use crate::error::Error;
use crate::model::ProbeEvent;
use crate::roles::socket;
use crate::sys::SendBatch;
use crate::wire::Probe;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Most probes sent in one go before the loop looks at its sockets again.
const MAX_BURST: u32 = 256;
/// Probes per `sendmmsg`.
pub(super) const SEND_BATCH: usize = 32;

/// A probe that left and is not booked yet. A ping-pong books its probe after the reply's
/// clock read: on one CPU, whatever the pinger does between its send and its next read is
/// inside the round trip (the echo waits for the CPU), and booking a probe is most of it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Unbooked {
    target: usize,
    seq: u64,
    sent_ns: u64,
    intended_ns: u64,
}

/// What the schedule says comes next.
enum Next {
    /// Probe of target `target`, due at `intended_ns`.
    Probe { target: usize, intended_ns: u64 },
    /// Nothing now: come back then.
    Wait(Wake),
    /// The slot of a removed target: pass over it (see `reload.rs`).
    Skip,
    /// The count or duration is used up; sending ended at `end_ns`.
    End { end_ns: u64 },
}

impl Pinger<'_> {
    /// At a fixed rate: when probe number `number` (over every target) is due, ns since the
    /// epoch. Number k * n + t is probe k of target t (of n), due at its number over the
    /// total rate (from where the schedule was rebased when a target was added).
    pub(super) fn intended_ns(&self, number: u64) -> u64 {
        let Pace::Rate(rate) = self.cfg.pace else {
            return 0;
        };
        let n = self.targets.len() as f64;
        let (base, base_ns) = self.rate_base;
        base_ns + ((number - base) as f64 * 1e9 / (rate * n)) as u64
    }

    /// The next probe, `pending` probes (collected, not yet sent) past the last one booked, at
    /// `now` (`now_ns` since the epoch).
    fn next_probe(&mut self, pending: usize, now: Instant, now_ns: u64) -> Next {
        let n = self.targets.len() as u64;
        let (target, intended_ns) = match self.cfg.pace {
            Pace::Rate(_) => {
                let number = self.scheduled + pending as u64;
                let intended_ns = self.intended_ns(number);
                if self.cfg.count.is_some_and(|c| number / n >= c)
                    || self.past_duration(intended_ns)
                {
                    return Next::End {
                        end_ns: intended_ns.min(now_ns),
                    };
                }
                if intended_ns > now_ns {
                    return Next::Wait(Wake::exactly(
                        self.epoch + Duration::from_nanos(intended_ns),
                    ));
                }
                let target = (number % n) as usize;
                if !self.targets[target].active {
                    return Next::Skip;
                }
                (target, intended_ns)
            }
            Pace::Window => {
                let used = |t: &Target| !t.active || self.count_used(t, 0);
                let counted = self.cfg.count.is_some() && self.targets.iter().all(used);
                if counted || self.past_duration(now_ns) {
                    return Next::End { end_ns: now_ns };
                }
                match self.target_with_room(pending) {
                    Some(target) => (target, now_ns),
                    // A reply or a timeout frees room; mind the duration too.
                    None => {
                        return Next::Wait(match self.cfg.duration {
                            Some(d) => Wake::around(self.epoch + d),
                            None => Wake::IDLE,
                        })
                    }
                }
            }
        };
        let unwatched = !self.watching_writable && self.spinning.is_none();
        if self.write_blocked && unwatched && crate::sys::writable(&self.socket) {
            // epoll was not asked to say when there is room (the registration failed).
            self.write_blocked = false;
        }
        if self.write_blocked {
            if self.past_duration(now_ns) {
                // A socket that never drains (a link without carrier holds what was queued)
                // does not hold the run past its duration: the probes still due go unsent.
                return Next::End { end_ns: now_ns };
            }
            // WRITABLE will wake us; else this is when to look again.
            return Next::Wait(Wake::around(now + Duration::from_millis(1)));
        }
        if !self.has_room(target, pending) {
            // At a fixed rate the schedule waits for this target (as a run of one does).
            return Next::Wait(Wake::IDLE);
        }
        Next::Probe {
            target,
            intended_ns,
        }
    }

    fn past_duration(&self, ns: u64) -> bool {
        self.cfg.duration.is_some_and(|d| ns >= d.as_nanos() as u64)
    }

    /// Whether `target` has sent its count, with `pending` more collected.
    #[inline]
    fn count_used(&self, target: &Target, pending: usize) -> bool {
        self.cfg
            .count
            .is_some_and(|c| target.table.next_seq() + pending as u64 >= c)
    }

    /// The pending probes (all for the batch's target) that are for `target`.
    #[inline]
    fn pending_for(&self, target: usize, pending: usize) -> usize {
        if target == self.batch_target {
            pending
        } else {
            0
        }
    }

    #[inline]
    fn has_room(&mut self, target: usize, pending: usize) -> bool {
        let pending = self.pending_for(target, pending);
        let t = &mut self.targets[target];
        t.table.in_flight() + pending < self.inflight_max
            && t.table.make_room_for(pending as u64 + 1)
    }

    /// Closed loop: the first target from the one after the last served that has room and
    /// probes left.
    fn target_with_room(&self, pending: usize) -> Option<usize> {
        let n = self.targets.len();
        if n == 1 {
            // (The common case, on the hot path of a closed loop: no search.)
            let target = &self.targets[0];
            let room = target.table.in_flight() + pending < self.inflight_max;
            return (room && !self.count_used(target, pending)).then_some(0);
        }
        (0..n)
            .map(|i| (self.scheduled as usize + i) % n)
            .find(|&t| {
                let p = self.pending_for(t, pending);
                let target = &self.targets[t];
                target.active
                    && !self.count_used(target, p)
                    && target.table.in_flight() + p < self.inflight_max
            })
    }

    /// Sends what the schedule says is due at `now` (`now_ns` since the epoch), in batches of
    /// one `sendmmsg` to one target; returns when to come back.
    pub(super) fn send_due(&mut self, now: Instant, now_ns: u64) -> Result<Wake, Error> {
        let mut batch = self.send_batch.take().expect("send slots present");
        let mut intended = std::mem::take(&mut self.intended);
        let mut wake = Wake::exactly(now);
        let mut result = Ok(());
        for _ in 0..MAX_BURST {
            let (target, intended_ns) = match self.next_probe(intended.len(), now, now_ns) {
                Next::Probe {
                    target,
                    intended_ns,
                } => (target, intended_ns),
                Next::Wait(w) => {
                    wake = w;
                    break;
                }
                Next::Skip => {
                    // The pending probes come before this slot.
                    if !self.flush_and_go_on(&mut batch, &mut intended, &mut result) {
                        break;
                    }
                    self.scheduled += 1;
                    continue;
                }
                Next::End { end_ns } => {
                    self.phase = Phase::Draining;
                    self.send_end_ns = Some(end_ns);
                    wake = Wake::IDLE;
                    break;
                }
            };
            if target != self.batch_target {
                // A batch goes to one address.
                if !self.flush_and_go_on(&mut batch, &mut intended, &mut result) {
                    break;
                }
                self.batch_target = target;
                batch.set_target(self.targets[target].send_to);
            }
            batch
                .push()
                .expect("batch has room")
                .copy_from_slice(&self.probe);
            intended.push(intended_ns);
            if intended.len() == batch.capacity()
                && !self.flush_and_go_on(&mut batch, &mut intended, &mut result)
            {
                break;
            }
        }
        // A ping-pong's probe stays collected, to be sent at the start of the read that waits
        // for its reply (`send_held`): the loop's work between this turn and that read stays
        // out of the round trip.
        if result.is_ok() && !self.holds_for_read(intended.len()) {
            result = self.flush(&mut batch, &mut intended, false);
        }
        self.send_batch = Some(batch);
        self.intended = intended;
        result.map(|()| wake)
    }

    /// Whether the `pending` probes collected are a ping-pong's one, to be held for the read
    /// that waits for its reply: a closed loop of one probe in flight, in a loop that waits in
    /// this pinger's reads.
    fn holds_for_read(&self, pending: usize) -> bool {
        pending == 1
            && self.sends_in_reads
            && matches!(self.cfg.pace, Pace::Window)
            && self.window() == 1
    }

    /// A probe collected and held for the next read to send: outside `send_due`, whatever is
    /// collected and not flushed (every flush empties the collection).
    pub(super) fn held(&self) -> bool {
        !self.intended.is_empty()
    }

    /// Sends the probe held for this read, its booking left for after the reply's clock read
    /// (`book_sent`): whether it left (if not, it is booked as not sent).
    pub(super) fn send_held(&mut self) -> Result<bool, Error> {
        let mut batch = self.send_batch.take().expect("send slots present");
        let mut intended = std::mem::take(&mut self.intended);
        let result = self.flush(&mut batch, &mut intended, true);
        self.send_batch = Some(batch);
        self.intended = intended;
        result.map(|()| self.unbooked.is_some())
    }

    /// A probe held for a read that will not come (a stop): not sent.
    pub(super) fn drop_held(&mut self) {
        if self.held() {
            self.intended.clear();
            if let Some(batch) = self.send_batch.as_mut() {
                batch.clear();
            }
        }
    }

    /// Books the probe that left unbooked (`send_held`), if any.
    pub(super) fn book_sent(&mut self) {
        let Some(u) = self.unbooked.take() else {
            return;
        };
        self.record_sent(u.target, u.seq, u.sent_ns, u.intended_ns);
        if let Some(d) = self.departures.as_deref_mut() {
            d.sent(u.target as u32, u.seq, 1);
        }
        self.show_progress();
    }

    fn show_progress(&self) {
        if let Some(progress) = &self.progress {
            progress.store(self.handled, Ordering::Relaxed);
        }
    }

    /// Flushes the probes collected into `result`; whether the burst may go on (sent, and the
    /// socket not full).
    fn flush_and_go_on(
        &mut self,
        batch: &mut SendBatch,
        intended: &mut Vec<u64>,
        result: &mut Result<(), Error>,
    ) -> bool {
        *result = self.flush(batch, intended, false);
        result.is_ok() && !self.write_blocked
    }

    /// Stamps and sends the collected probes, then books each outcome in sequence order. A probe
    /// refused because of an earlier ICMP error is retried once; a full buffer stops the burst,
    /// and the probes after it are not sent (their sequence numbers are not used up). With
    /// `later`, a lone probe that left is booked by `book_sent`.
    fn flush(
        &mut self,
        batch: &mut SendBatch,
        intended: &mut Vec<u64>,
        later: bool,
    ) -> Result<(), Error> {
        let k = intended.len();
        if k == 0 {
            return Ok(());
        }
        let t = self.batch_target;
        let addr = self.targets[t].addr;
        let first = self.targets[t].table.next_seq();
        let sent_ns = self.ns(Instant::now());
        for j in 0..k {
            self.encode(batch.slot_mut(j), first + j as u64, sent_ns);
        }
        let mut j = 0;
        while j < k {
            let mut refused = false;
            let outcome = match batch.send(&self.socket, j) {
                Ok(1) if later && k == 1 => {
                    self.unbooked = Some(Unbooked {
                        target: t,
                        seq: first,
                        sent_ns,
                        intended_ns: intended[0],
                    });
                    j += 1;
                    continue;
                }
                Ok(n) if n > 0 => {
                    for (i, &intended_ns) in intended.iter().enumerate().skip(j).take(n) {
                        self.record_sent(t, first + i as u64, sent_ns, intended_ns);
                    }
                    if let Some(d) = self.departures.as_deref_mut() {
                        let mut seq = first + j as u64;
                        for &datagrams in batch.last_messages() {
                            d.sent(t as u32, seq, datagrams as u32);
                            seq += datagrams as u64;
                        }
                    }
                    j += n;
                    continue;
                }
                Ok(_) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP error for an earlier probe surfaces on this send; once reported it is
                // cleared, so one retry sends this probe.
                Err(e) if socket::is_unreachable(&e) && self.ever_sent => {
                    refused = true;
                    batch.send_slot(&self.socket, j)
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => {
                    self.record_sent(t, first + j as u64, sent_ns, intended[j]);
                    if let Some(d) = self.departures.as_deref_mut() {
                        d.sent(t as u32, first + j as u64, 1);
                    }
                }
                Err(e)
                    if !self.ever_sent && self.targets.len() == 1 && !self.passing_refusal(&e) =>
                {
                    // The very first probe could not leave: the address or route is wrong.
                    // (Of several targets, one without a route is that target's outage.)
                    intended.clear();
                    batch.clear();
                    return Err(Error::io("send to", addr, e));
                }
                Err(e) => {
                    self.record_failed(t, first + j as u64, sent_ns, intended[j], &e, refused);
                    if self.write_blocked {
                        // The probes after this one were not used up: they go out once the
                        // socket is writable again, even if the schedule just ran out.
                        if j + 1 < k && self.phase == Phase::Draining {
                            self.phase = Phase::Sending;
                            self.send_end_ns = None;
                        }
                        break;
                    }
                }
            }
            j += 1;
        }
        intended.clear();
        batch.clear();
        self.show_progress();
        Ok(())
    }

    /// A send error that concerns this probe only, not the target: our own buffer full, or
    /// (with `--df`) a probe too big for the path.
    fn passing_refusal(&self, e: &io::Error) -> bool {
        socket::is_local_congestion(e) || (self.cfg.dont_fragment && socket::is_too_big(e))
    }

    fn encode(&self, buf: &mut [u8], seq: u64, sent_ns: u64) {
        let probe = Probe {
            session: self.session,
            seq,
            send_ns: sent_ns,
            epoch_wall: self.epoch_wall,
            clock: self.clock,
        };
        self.cfg.wire.encode(buf, &probe, self.cfg.key.as_ref());
    }

    /// Probe `seq` of target `t` is booked: the schedule moves on.
    fn booked(&mut self, t: usize) {
        self.handled += 1;
        self.scheduled = match self.cfg.pace {
            Pace::Rate(_) => self.scheduled + 1,
            // Closed loop: the next target is tried first next time.
            Pace::Window => (t + 1) as u64,
        };
    }

    fn record_sent(&mut self, t: usize, seq: u64, sent_ns: u64, intended_ns: u64) {
        self.booked(t);
        let at_rate = self.at_rate();
        if !self.one_target() {
            // One target's timeouts are read off its table (`expire`).
            let deadline = (sent_ns + self.timeout_ns).div_ceil(TICK_NS);
            self.timeouts.insert(deadline, (t as u32, seq));
        }
        let target = &mut self.targets[t];
        // A refusal met on the way is also on the error queue, which names its probe.
        let pushed = target.table.push(sent_ns, intended_ns, true);
        debug_assert_eq!(pushed, seq);
        target.counters.sent += 1;
        target.peak_in_flight = target.peak_in_flight.max(target.table.in_flight());
        let lag = sent_ns.saturating_sub(intended_ns);
        if at_rate {
            match self.totals.as_deref_mut() {
                Some(totals) => totals.schedule_lag.record(lag),
                None => target.dist.schedule_lag.record(lag),
            }
        }
        self.ever_sent = true;
    }

    fn record_failed(
        &mut self,
        t: usize,
        seq: u64,
        sent_ns: u64,
        intended_ns: u64,
        e: &io::Error,
        refused: bool,
    ) {
        self.booked(t);
        let target = &mut self.targets[t];
        let pushed = target.table.push(sent_ns, intended_ns, false);
        debug_assert_eq!(pushed, seq);
        if refused || socket::is_unreachable(e) {
            target.table.mark_unreachable(seq);
        }
        target.counters.not_sent += 1;
        self.write_blocked = e.kind() == io::ErrorKind::WouldBlock;
        if self.write_blocked {
            self.watch_writable(true);
        }
        let too_big = socket::is_too_big(e) && self.cfg.dont_fragment;
        if too_big {
            // The kernel queued the MTU beside the refusal.
            self.read_error_queue();
        }
        let target_too_big = self.targets[t].too_big.as_mut().filter(|_| too_big);
        if let Some(tb) = target_too_big {
            tb.not_sent += 1;
        }
        if self.observer.is_some() {
            let error = match self.targets[t].too_big.filter(|_| too_big) {
                Some(tb) => tb.reason(self.cfg.size),
                None => e.to_string(),
            };
            self.emit(
                Some(t),
                ProbeEvent::NotSent {
                    seq,
                    intended_ns,
                    sent_ns,
                    error,
                },
            );
        }
    }
}

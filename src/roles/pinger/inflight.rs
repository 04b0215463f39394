//! The table of probes a pinger has sent: a ring indexed by sequence number.
//!
//! Slot `seq & mask` holds probe `seq`. A slot is reused for `seq + capacity` only once `seq` has
//! been resolved (answered, timed out or never sent), so memory depends on how many probes can be
//! outstanding at once, never on the length of the run. Resolved slots stay readable until reused:
//! that history is what tells a late or duplicate reply from one for a probe never sent.
//!
//! The table classifies; it does not time. The caller supplies nanosecond timestamps and tells it
//! when a probe's timeout fires.

/// What a probe ended as, or what it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeState {
    /// Never sent: the local send failed.
    NotSent,
    /// Sent, no verdict yet.
    InFlight,
    /// Answered within its timeout.
    Received,
    /// Timed out with no answer.
    Lost,
    /// Answered after its timeout had fired (was `Lost`; never counted twice).
    Late,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub seq: u64,
    /// When the probe left (or was due to leave, if never sent), ns since the run's start.
    pub sent_ns: u64,
    /// When the schedule meant it to leave, ns since the run's start.
    pub intended_ns: u64,
    /// How long after `sent_ns` the kernel sent it, from its transmit timestamp; `NO_STAMP`
    /// until one came. (Kept as an offset so that the slot stays 32 bytes.)
    kernel_delay_ns: u32,
    pub state: ProbeState,
    /// An ICMP error (port or host unreachable) came back for this probe.
    pub unreachable: bool,
}

const NO_STAMP: u32 = u32::MAX;

const EMPTY: Slot = Slot {
    seq: u64::MAX,
    sent_ns: 0,
    intended_ns: 0,
    kernel_delay_ns: NO_STAMP,
    state: ProbeState::NotSent,
    unreachable: false,
};

impl Slot {
    /// A probe sent (or due) at `sent_ns` as it stands, without a kernel send time.
    #[cfg(test)]
    pub(crate) fn at(seq: u64, sent_ns: u64, state: ProbeState, unreachable: bool) -> Self {
        Self {
            seq,
            sent_ns,
            intended_ns: sent_ns,
            state,
            unreachable,
            ..EMPTY
        }
    }

    /// When the kernel sent the probe, ns since the run's start, if its transmit timestamp came.
    pub(crate) fn kernel_sent_ns(&self) -> Option<u64> {
        (self.kernel_delay_ns != NO_STAMP).then(|| self.sent_ns + u64::from(self.kernel_delay_ns))
    }
}

/// How a reply that matched a probe of ours is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// First answer within the timeout. `reordered`: a higher sequence number was answered first.
    Received { reordered: bool },
    /// First answer, after the timeout.
    Late,
    /// The probe was already answered.
    Duplicate,
    /// A reply carrying a sequence number we never sent (or whose send failed).
    NeverSent,
    /// Older than anything the table still remembers.
    Stale,
}

/// Probes in sequence order, ring-buffered.
pub(crate) struct InFlight {
    slots: Vec<Slot>,
    max_capacity: usize,
    /// Next sequence number to hand out.
    next: u64,
    /// Oldest probe not yet handed to [`InFlight::pop_resolved`].
    tail: u64,
    in_flight: usize,
    highest_received: Option<u64>,
}

impl InFlight {
    /// A table starting at `capacity` slots, growing by doubling up to `max_capacity`
    /// (both rounded up to powers of two).
    pub(crate) fn new(capacity: usize, max_capacity: usize) -> Self {
        let max_capacity = max_capacity.max(1).next_power_of_two();
        let capacity = capacity.clamp(1, max_capacity).next_power_of_two();
        Self {
            slots: vec![EMPTY; capacity],
            max_capacity,
            next: 0,
            tail: 0,
            in_flight: 0,
            highest_received: None,
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.next
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn index(&self, seq: u64) -> usize {
        (seq & (self.slots.len() as u64 - 1)) as usize
    }

    /// Makes room for the next probe, growing the ring if the oldest unresolved probe would be
    /// overwritten. `false` when the table is at its maximum: the caller waits for a verdict.
    pub(crate) fn make_room(&mut self) -> bool {
        self.make_room_for(1)
    }

    /// Makes room for `n` more probes (see [`InFlight::make_room`]).
    pub(crate) fn make_room_for(&mut self, n: u64) -> bool {
        while self.next + n - 1 - self.tail >= self.slots.len() as u64 {
            if !self.grow() {
                return false;
            }
        }
        true
    }

    fn grow(&mut self) -> bool {
        if self.slots.len() >= self.max_capacity {
            return false;
        }
        let mut grown = vec![EMPTY; self.slots.len() * 2];
        let mask = grown.len() as u64 - 1;
        for slot in self.slots.iter().filter(|s| s.seq != EMPTY.seq) {
            grown[(slot.seq & mask) as usize] = *slot;
        }
        self.slots = grown;
        true
    }

    /// Records the next probe as sent (or as failed to send) and returns its sequence number.
    /// Call [`InFlight::make_room`] first.
    pub(crate) fn push(&mut self, sent_ns: u64, intended_ns: u64, sent: bool) -> u64 {
        debug_assert!(self.next - self.tail < self.slots.len() as u64);
        let seq = self.next;
        let index = self.index(seq);
        self.slots[index] = Slot {
            seq,
            sent_ns,
            intended_ns,
            kernel_delay_ns: NO_STAMP,
            state: if sent {
                ProbeState::InFlight
            } else {
                ProbeState::NotSent
            },
            unreachable: false,
        };
        self.next += 1;
        if sent {
            self.in_flight += 1;
        }
        seq
    }

    /// The slot of `seq`, if the table still remembers it.
    pub(crate) fn get(&self, seq: u64) -> Option<&Slot> {
        let slot = &self.slots[self.index(seq)];
        (slot.seq == seq && seq < self.next).then_some(slot)
    }

    /// Classifies a reply to `seq` that arrived at `now_ns`, given the timeout, and updates state.
    pub(crate) fn on_reply(&mut self, seq: u64, now_ns: u64, timeout_ns: u64) -> Verdict {
        if seq >= self.next {
            return Verdict::NeverSent;
        }
        let index = self.index(seq);
        let slot = &mut self.slots[index];
        if slot.seq != seq {
            return Verdict::Stale;
        }
        match slot.state {
            ProbeState::NotSent => Verdict::NeverSent,
            ProbeState::Received | ProbeState::Late => Verdict::Duplicate,
            ProbeState::Lost => {
                slot.state = ProbeState::Late;
                Verdict::Late
            }
            ProbeState::InFlight => {
                self.in_flight -= 1;
                // The timer may not have fired yet; the deadline is what counts.
                if now_ns.saturating_sub(slot.sent_ns) > timeout_ns {
                    slot.state = ProbeState::Late;
                    return Verdict::Late;
                }
                slot.state = ProbeState::Received;
                let reordered = self.highest_received.is_some_and(|h| h > seq);
                self.highest_received = Some(self.highest_received.map_or(seq, |h| h.max(seq)));
                Verdict::Received { reordered }
            }
        }
    }

    /// The timeout of `seq` fired: if it is still in flight it is now lost, and its slot is
    /// returned. Stale timers (probe already answered, or slot reused) return `None`.
    pub(crate) fn on_timeout(&mut self, seq: u64) -> Option<Slot> {
        let index = self.index(seq);
        let slot = &mut self.slots[index];
        if slot.seq != seq || slot.state != ProbeState::InFlight {
            return None;
        }
        slot.state = ProbeState::Lost;
        self.in_flight -= 1;
        Some(*slot)
    }

    /// Notes that an ICMP error came back for `seq`; the probe still waits for its timeout.
    pub(crate) fn mark_unreachable(&mut self, seq: u64) -> bool {
        let index = self.index(seq);
        let slot = &mut self.slots[index];
        if slot.seq == seq && seq < self.next {
            slot.unreachable = true;
            return true;
        }
        false
    }

    /// Notes when the kernel sent `seq` (ns since the run's start, not before the time it was
    /// handed over, within `slack_ns`): `false` if the table no longer holds it as sent or the
    /// time cannot be its.
    pub(crate) fn set_kernel_sent(&mut self, seq: u64, at_ns: u64, slack_ns: u64) -> bool {
        let index = self.index(seq);
        let slot = &mut self.slots[index];
        let sent = slot.seq == seq && seq < self.next && slot.state != ProbeState::NotSent;
        if !sent || at_ns + slack_ns < slot.sent_ns {
            return false;
        }
        match u32::try_from(at_ns.saturating_sub(slot.sent_ns)) {
            Ok(delay) if delay != NO_STAMP => {
                slot.kernel_delay_ns = delay;
                true
            }
            _ => false,
        }
    }

    /// When the oldest probe not yet handed on was sent, if it is still in flight: after
    /// [`InFlight::pop_resolved`] has run dry, the earliest timeout that can still fire.
    pub(crate) fn oldest_in_flight_sent_ns(&self) -> Option<u64> {
        let slot = &self.slots[self.index(self.tail)];
        (self.tail < self.next && slot.state == ProbeState::InFlight).then_some(slot.sent_ns)
    }

    /// Times out the oldest probe not yet handed on if it is still in flight and was sent more
    /// than `timeout_ns` before `now_ns` (at `timeout_ns` exactly, as the timer wheel would
    /// fire): its slot, now lost. Probes are sent in sequence order with one timeout, so the
    /// oldest is the first to time out.
    pub(crate) fn time_out_oldest(&mut self, now_ns: u64, timeout_ns: u64) -> Option<Slot> {
        let sent_ns = self.oldest_in_flight_sent_ns()?;
        if sent_ns + timeout_ns > now_ns {
            return None;
        }
        self.on_timeout(self.tail)
    }

    /// The oldest probe once it has a verdict, in sequence order; `None` while the oldest is
    /// still in flight. Each probe is returned once.
    pub(crate) fn pop_resolved(&mut self) -> Option<Slot> {
        if self.tail == self.next {
            return None;
        }
        let slot = self.slots[self.index(self.tail)];
        debug_assert_eq!(slot.seq, self.tail);
        if slot.state == ProbeState::InFlight {
            return None;
        }
        self.tail += 1;
        Some(slot)
    }

    /// Gives up on every probe still in flight (a hard stop); returns how many there were.
    pub(crate) fn abandon(&mut self) -> usize {
        std::mem::take(&mut self.in_flight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: u64 = 1_000;

    fn table_with(n: u64) -> InFlight {
        let mut t = InFlight::new(16, 1024);
        for i in 0..n {
            assert!(t.make_room());
            assert_eq!(t.push(i * 10, i * 10, true), i);
        }
        t
    }

    #[test]
    fn in_order_replies_are_received_not_reordered() {
        let mut t = table_with(3);
        for seq in 0..3 {
            assert_eq!(
                t.on_reply(seq, seq * 10 + 5, TIMEOUT),
                Verdict::Received { reordered: false }
            );
        }
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn reply_after_a_higher_seq_is_reordered() {
        let mut t = table_with(3);
        assert_eq!(
            t.on_reply(2, 30, TIMEOUT),
            Verdict::Received { reordered: false }
        );
        assert_eq!(
            t.on_reply(0, 31, TIMEOUT),
            Verdict::Received { reordered: true }
        );
        assert_eq!(
            t.on_reply(1, 32, TIMEOUT),
            Verdict::Received { reordered: true }
        );
    }

    #[test]
    fn second_reply_is_duplicate() {
        let mut t = table_with(1);
        assert!(matches!(
            t.on_reply(0, 5, TIMEOUT),
            Verdict::Received { .. }
        ));
        assert_eq!(t.on_reply(0, 6, TIMEOUT), Verdict::Duplicate);
        assert_eq!(t.on_reply(0, 7, TIMEOUT), Verdict::Duplicate);
    }

    #[test]
    fn timeout_then_reply_is_lost_then_late_never_twice() {
        let mut t = table_with(2);
        let lost = t.on_timeout(0).expect("in flight");
        assert_eq!(lost.state, ProbeState::Lost);
        assert_eq!(t.on_timeout(0), None, "fires once");
        assert_eq!(t.on_reply(0, 5_000, TIMEOUT), Verdict::Late);
        assert_eq!(t.on_reply(0, 5_001, TIMEOUT), Verdict::Duplicate);
        assert_eq!(t.get(0).unwrap().state, ProbeState::Late);
        assert_eq!(t.in_flight(), 1);
    }

    #[test]
    fn reply_past_deadline_before_timer_fires_is_late() {
        let mut t = table_with(1);
        assert_eq!(t.on_reply(0, TIMEOUT + 1, TIMEOUT), Verdict::Late);
        assert_eq!(t.on_timeout(0), None, "timer finds it resolved");
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn timeout_after_answer_is_ignored() {
        let mut t = table_with(1);
        t.on_reply(0, 5, TIMEOUT);
        assert!(t.on_timeout(0).is_none());
    }

    #[test]
    fn replies_for_unsent_probes_are_never_sent() {
        let mut t = table_with(2);
        assert_eq!(t.on_reply(2, 5, TIMEOUT), Verdict::NeverSent);
        assert_eq!(t.on_reply(u64::MAX, 5, TIMEOUT), Verdict::NeverSent);
        assert!(t.make_room());
        let seq = t.push(30, 30, false);
        assert_eq!(t.on_reply(seq, 35, TIMEOUT), Verdict::NeverSent);
    }

    #[test]
    fn the_oldest_in_flight_times_out_at_its_deadline_and_not_before() {
        // Sent at 0, 10 and 20.
        let mut t = table_with(3);
        assert_eq!(t.time_out_oldest(TIMEOUT - 1, TIMEOUT), None);
        assert_eq!(t.time_out_oldest(TIMEOUT, TIMEOUT).unwrap().seq, 0);
        // The next is not the oldest until the lost one is handed on.
        assert_eq!(t.time_out_oldest(TIMEOUT + 20, TIMEOUT), None);
        assert_eq!(t.pop_resolved().unwrap().state, ProbeState::Lost);
        // Answered: nothing to time out until the next one in flight is the oldest.
        t.on_reply(1, 15, TIMEOUT);
        assert_eq!(t.time_out_oldest(TIMEOUT + 20, TIMEOUT), None);
        assert_eq!(t.pop_resolved().unwrap().seq, 1);
        assert_eq!(t.time_out_oldest(TIMEOUT + 19, TIMEOUT), None);
        assert_eq!(t.time_out_oldest(TIMEOUT + 20, TIMEOUT).unwrap().seq, 2);
        assert_eq!(t.in_flight(), 0);
        assert_eq!(t.time_out_oldest(u64::MAX / 2, TIMEOUT), None);
    }

    #[test]
    fn resolved_probes_pop_in_sequence_order() {
        let mut t = table_with(3);
        t.on_reply(1, 15, TIMEOUT);
        assert!(t.pop_resolved().is_none(), "0 still in flight");
        t.on_timeout(0);
        assert_eq!(t.pop_resolved().unwrap().seq, 0);
        assert_eq!(t.pop_resolved().unwrap().seq, 1);
        assert!(t.pop_resolved().is_none());
        t.on_reply(2, 25, TIMEOUT);
        assert_eq!(t.pop_resolved().unwrap().state, ProbeState::Received);
    }

    #[test]
    fn ring_grows_to_its_maximum_then_refuses() {
        let mut t = InFlight::new(4, 8);
        for _ in 0..8 {
            assert!(t.make_room());
            t.push(0, 0, true);
        }
        assert_eq!(t.capacity(), 8);
        assert!(!t.make_room(), "oldest unresolved would be overwritten");
        // Resolving and popping the oldest frees its slot.
        t.on_reply(0, 1, TIMEOUT);
        t.pop_resolved();
        assert!(t.make_room());
        let seq = t.push(0, 0, true);
        assert_eq!(seq, 8);
        // Growth kept every slot addressable.
        for seq in 1..=8 {
            assert_eq!(t.get(seq).unwrap().seq, seq);
        }
    }

    #[test]
    fn room_for_several_counts_them_all() {
        let mut t = InFlight::new(4, 8);
        assert!(t.make_room_for(8));
        for _ in 0..6 {
            t.push(0, 0, true);
        }
        assert!(t.make_room_for(2));
        assert!(!t.make_room_for(3), "only 8 slots in all");
    }

    #[test]
    fn overwritten_history_is_stale() {
        let mut t = InFlight::new(4, 4);
        for i in 0..4 {
            t.make_room();
            t.push(i, i, true);
            t.on_reply(i, i + 1, TIMEOUT);
            t.pop_resolved();
        }
        t.make_room();
        t.push(9, 9, true); // seq 4 reuses the slot of seq 0
        assert_eq!(t.on_reply(0, 10, TIMEOUT), Verdict::Stale);
    }

    #[test]
    fn memory_stays_bounded_over_a_long_run() {
        let mut t = InFlight::new(16, 64);
        for i in 0..100_000u64 {
            assert!(t.make_room());
            let seq = t.push(i, i, true);
            if seq % 3 == 0 {
                t.on_timeout(seq);
            } else {
                t.on_reply(seq, i + 1, TIMEOUT);
            }
            while t.pop_resolved().is_some() {}
        }
        assert!(t.capacity() <= 64);
    }
}

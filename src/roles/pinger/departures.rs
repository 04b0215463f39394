//! Kernel transmit timestamps: the kernel numbers each message the socket sends (from 0, a GSO
//! run being one message) and queues its send time on the error queue under that number. This
//! keeps which probes each number covers until their time comes.

use std::collections::VecDeque;

/// Most messages kept waiting for their time: past this the oldest are given up (their probes
/// keep the user-space send time), so a kernel that stops stamping costs bounded memory.
const MAX_WAITING: usize = 4096;

/// The probes one message carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Message {
    pub(super) target: u32,
    pub(super) first_seq: u64,
    pub(super) datagrams: u32,
}

/// Messages sent and waiting for their kernel time, with what became of the times.
#[derive(Debug, Default)]
pub(super) struct Departures {
    /// The number the kernel gives the next message sent.
    next_key: u32,
    /// Oldest first; keys are consecutive from `front_key`.
    waiting: VecDeque<Message>,
    front_key: u32,
    /// Messages whose time never came (or came after they were given up).
    pub(super) missed: u64,
    /// Times that named no message waiting, or could not be their message's.
    pub(super) unmatched: u64,
    /// First answers timed from the kernel's send time, and from the user-space one where the
    /// kernel's had not come.
    pub(super) round_trips: u64,
    pub(super) round_trips_without: u64,
}

impl Departures {
    /// A message of `datagrams` probes of `target` from `first_seq` went.
    pub(super) fn sent(&mut self, target: u32, first_seq: u64, datagrams: u32) {
        if self.waiting.is_empty() {
            self.front_key = self.next_key;
        }
        self.waiting.push_back(Message {
            target,
            first_seq,
            datagrams,
        });
        self.next_key = self.next_key.wrapping_add(1);
        if self.waiting.len() > MAX_WAITING {
            self.give_up_oldest();
        }
    }

    /// Whether any message still waits for its time.
    pub(super) fn awaiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// The message the kernel numbered `key`. Messages before it whose times did not come are
    /// given up (the kernel queues times in order); a key before every waiting one, or after
    /// the last sent, names nothing.
    pub(super) fn take(&mut self, key: u32) -> Option<Message> {
        let ahead = key.wrapping_sub(self.front_key) as usize;
        if ahead >= self.waiting.len() {
            self.unmatched += 1;
            return None;
        }
        for _ in 0..ahead {
            self.give_up_oldest();
        }
        self.front_key = self.front_key.wrapping_add(1);
        self.waiting.pop_front()
    }

    fn give_up_oldest(&mut self) {
        if self.waiting.pop_front().is_some() {
            self.front_key = self.front_key.wrapping_add(1);
            self.missed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(d: &mut Departures, seqs: &[(u64, u32)]) {
        for &(first_seq, datagrams) in seqs {
            d.sent(0, first_seq, datagrams);
        }
    }

    #[test]
    fn each_key_names_the_message_sent_in_that_place() {
        let mut d = Departures::default();
        // A run of 32 (one GSO message), then two single probes.
        sent(&mut d, &[(0, 32), (32, 1), (33, 1)]);
        assert_eq!(d.take(0).map(|m| (m.first_seq, m.datagrams)), Some((0, 32)));
        assert_eq!(d.take(1).map(|m| m.first_seq), Some(32));
        assert_eq!(d.take(2).map(|m| m.first_seq), Some(33));
        assert!(!d.awaiting());
        assert_eq!((d.missed, d.unmatched), (0, 0));
    }

    #[test]
    fn a_time_that_never_came_gives_up_its_message_only() {
        let mut d = Departures::default();
        sent(&mut d, &[(0, 1), (1, 1), (2, 1)]);
        // Key 1's time was dropped: key 2 still names probe 2.
        assert_eq!(d.take(0).map(|m| m.first_seq), Some(0));
        assert_eq!(d.take(2).map(|m| m.first_seq), Some(2));
        assert_eq!(d.missed, 1);
        // A late time for the given-up message, or one for a message never sent, names nothing.
        assert_eq!(d.take(1), None);
        assert_eq!(d.take(7), None);
        assert_eq!(d.unmatched, 2);
    }

    #[test]
    fn keys_go_on_across_the_wrap_and_while_nothing_waits() {
        let mut d = Departures {
            next_key: u32::MAX,
            ..Default::default()
        };
        sent(&mut d, &[(10, 1)]);
        assert_eq!(d.take(u32::MAX).map(|m| m.first_seq), Some(10));
        sent(&mut d, &[(11, 1), (12, 1)]);
        assert_eq!(d.take(1).map(|m| m.first_seq), Some(12));
        assert_eq!(d.missed, 1);
    }

    #[test]
    fn a_kernel_that_stops_stamping_costs_bounded_memory() {
        let mut d = Departures::default();
        for seq in 0..(MAX_WAITING as u64 + 10) {
            d.sent(0, seq, 1);
        }
        assert_eq!(d.waiting.len(), MAX_WAITING);
        assert_eq!(d.missed, 10);
        let newest = MAX_WAITING as u32 + 9;
        assert_eq!(d.take(newest).map(|m| m.first_seq), Some(newest as u64));
    }
}

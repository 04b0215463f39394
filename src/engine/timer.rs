//! A hierarchical hashed timing wheel, after tokio-util's `time::wheel`.
//!
//! Time is counted in integer *ticks*; the caller picks what a tick is worth. Inserting and
//! expiring a timer costs O(1) (amortised: an entry moves down at most once per level). The wheel
//! is generic and knows nothing of probes: cancellation is left to the caller, who checks on expiry
//! whether the timer still matters (cheaper than removing entries eagerly).
//!
//! | level | slot width (ticks) | level range (ticks) | with 100 µs ticks |
//! |------:|-------------------:|--------------------:|------------------:|
//! |     0 |                  1 |                  64 |           6.4 ms  |
//! |     1 |                 64 |               4 096 |           410 ms  |
//! |     2 |              4 096 |             262 144 |            26 s   |
//! |     3 |            262 144 |          16 777 216 |            28 min |
//! |     4 |         16 777 216 |       1 073 741 824 |            30 h   |
//! |     5 |      1 073 741 824 |      68 719 476 736 |            80 d   |
//!
//! An entry lives on the level of the highest bit in which its deadline differs from the current
//! tick; when its slot comes due it moves one level down, and on level 0 it fires.

use std::collections::VecDeque;

const LEVEL_BITS: u32 = 6;
const SLOTS: usize = 1 << LEVEL_BITS;
const NUM_LEVELS: usize = 6;

/// Entries' worth of capacity an emptied slot keeps for reuse. A slot of a higher level can hold
/// a great many entries once (a level-2 slot spans 4096 ticks); were each to keep that capacity,
/// memory would grow as the clock sweeps over all 64 slots of the level.
const SLOT_KEEP: usize = 256;

/// Deadlines further than this many ticks ahead are clamped to it.
pub(crate) const MAX_TICKS: u64 = 1 << (LEVEL_BITS * NUM_LEVELS as u32);

struct Entry<T> {
    deadline: u64,
    value: T,
}

struct Level<T> {
    /// This level's index: slot widths are `64^level` ticks.
    level: usize,
    /// Bit `s` set when `slots[s]` holds entries.
    occupied: u64,
    slots: Vec<Vec<Entry<T>>>,
}

/// The next slot due, and the tick at which it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expiration {
    level: usize,
    slot: usize,
    deadline: u64,
}

/// A timing wheel holding values of type `T`, each with a deadline in ticks.
pub struct Wheel<T> {
    /// Every deadline up to and including this tick has been handed out by [`Wheel::poll`].
    elapsed: u64,
    levels: Vec<Level<T>>,
    /// Entries that are due, in deadline order, waiting to be returned by [`Wheel::poll`].
    pending: VecDeque<T>,
    /// No slot is due before this tick: a poll before it has nothing to do (the common case
    /// for timeouts, polled far more often than they fall due).
    quiet_until: u64,
    len: usize,
}

impl<T> Default for Wheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Wheel<T> {
    /// An empty wheel whose clock starts at tick 0.
    pub fn new() -> Self {
        let levels = (0..NUM_LEVELS)
            .map(|level| Level {
                level,
                occupied: 0,
                slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            })
            .collect();
        Self {
            elapsed: 0,
            levels,
            pending: VecDeque::new(),
            quiet_until: u64::MAX,
            len: 0,
        }
    }

    /// Number of timers held, due or not.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tick up to which the wheel has been polled.
    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Adds `value`, due at tick `deadline`. A deadline already past is due at the next poll.
    pub fn insert(&mut self, deadline: u64, value: T) {
        self.len += 1;
        if deadline <= self.elapsed {
            self.pending.push_back(value);
            return;
        }
        let deadline = deadline.min(self.elapsed + MAX_TICKS - 1);
        let level = level_for(self.elapsed, deadline);
        // Its slot falls due at the deadline rounded down to the level's slot width.
        let due = deadline & !(slot_width(level) - 1);
        self.quiet_until = self.quiet_until.min(due);
        self.levels[level].push(Entry { deadline, value });
    }

    /// The earliest tick at which [`Wheel::poll`] may have something to return, or `None` when
    /// empty. It may be earlier than the earliest deadline (a slot of a higher level is due
    /// and its entries move down), never later.
    pub fn next_expiration(&self) -> Option<u64> {
        if !self.pending.is_empty() {
            return Some(self.elapsed);
        }
        self.next_slot().map(|e| e.deadline)
    }

    /// Returns one value whose deadline is at or before `now`, advancing the wheel's clock to
    /// `now`. Call until it returns `None`. `now` earlier than the wheel's clock is taken as
    /// the clock.
    pub fn poll(&mut self, now: u64) -> Option<T> {
        if now < self.quiet_until && self.pending.is_empty() {
            self.elapsed = self.elapsed.max(now);
            return None;
        }
        loop {
            if let Some(value) = self.pending.pop_front() {
                self.len -= 1;
                return Some(value);
            }
            match self.next_slot() {
                Some(exp) if exp.deadline <= now => {
                    debug_assert!(exp.deadline >= self.elapsed);
                    self.elapsed = exp.deadline;
                    self.cascade(exp);
                }
                next => {
                    self.elapsed = self.elapsed.max(now);
                    self.quiet_until = next.map_or(u64::MAX, |e| e.deadline);
                    return None;
                }
            }
        }
    }

    fn next_slot(&self) -> Option<Expiration> {
        // Entries on a lower level are always due before those on a higher one.
        self.levels
            .iter()
            .find_map(|level| level.next_expiration(self.elapsed))
    }

    /// Empties a due slot: level-0 entries become pending, others move one level down.
    fn cascade(&mut self, exp: Expiration) {
        let mut entries = std::mem::take(&mut self.levels[exp.level].slots[exp.slot]);
        self.levels[exp.level].occupied &= !(1 << exp.slot);
        for entry in entries.drain(..) {
            if exp.level == 0 {
                debug_assert_eq!(entry.deadline, exp.deadline);
                self.pending.push_back(entry.value);
            } else {
                debug_assert!(entry.deadline >= exp.deadline);
                self.levels[exp.level - 1].push(entry);
            }
        }
        // Hand the emptied vector back so its capacity is reused, within bounds.
        entries.shrink_to(SLOT_KEEP);
        self.levels[exp.level].slots[exp.slot] = entries;
    }
}

impl<T> Level<T> {
    fn push(&mut self, entry: Entry<T>) {
        let slot = slot_for(entry.deadline, self.level);
        self.slots[slot].push(entry);
        self.occupied |= 1 << slot;
    }

    fn next_expiration(&self, now: u64) -> Option<Expiration> {
        if self.occupied == 0 {
            return None;
        }
        let level = self.level;
        let slot_width = slot_width(level);
        let range = level_range(level);
        let now_slot = (now / slot_width) % SLOTS as u64;
        let rotated = self.occupied.rotate_right(now_slot as u32);
        let slot = ((rotated.trailing_zeros() as u64 + now_slot) % SLOTS as u64) as usize;
        let level_start = now & !(range - 1);
        let mut deadline = level_start + slot as u64 * slot_width;
        if deadline < now {
            // Only the top level wraps: its slots form a ring, and a slot "behind" the current one
            // is a full rotation ahead.
            debug_assert_eq!(level, NUM_LEVELS - 1);
            deadline += range;
        }
        Some(Expiration {
            level,
            slot,
            deadline,
        })
    }
}

/// Ticks covered by one slot of `level`.
fn slot_width(level: usize) -> u64 {
    1 << (LEVEL_BITS * level as u32)
}

/// Ticks covered by all slots of `level`.
fn level_range(level: usize) -> u64 {
    1 << (LEVEL_BITS * (level as u32 + 1))
}

/// The level for a deadline: that of the highest bit in which it differs from `elapsed`.
fn level_for(elapsed: u64, deadline: u64) -> usize {
    let slot_mask = (1 << LEVEL_BITS) - 1;
    let mut masked = (elapsed ^ deadline) | slot_mask;
    if masked >= MAX_TICKS {
        masked = MAX_TICKS - 1;
    }
    let significant = 63 - masked.leading_zeros();
    (significant / LEVEL_BITS) as usize
}

/// The slot of `deadline` on `level`.
fn slot_for(deadline: u64, level: usize) -> usize {
    ((deadline >> (LEVEL_BITS * level as u32)) % SLOTS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_for_picks_highest_differing_six_bit_group() {
        assert_eq!(level_for(0, 1), 0);
        assert_eq!(level_for(0, 63), 0);
        assert_eq!(level_for(0, 64), 1);
        assert_eq!(level_for(0, 4095), 1);
        assert_eq!(level_for(0, 4096), 2);
        assert_eq!(level_for(63, 64), 1, "crossing a level-0 block boundary");
        assert_eq!(level_for(64, 127), 0);
        assert_eq!(level_for(0, MAX_TICKS - 1), NUM_LEVELS - 1);
        assert_eq!(level_for(0, u64::MAX), NUM_LEVELS - 1, "clamped to the top");
        for level in 0..NUM_LEVELS {
            let start = slot_width(level);
            assert_eq!(level_for(0, start), level, "first tick of level {level}");
            assert_eq!(level_for(0, level_range(level) - 1), level);
        }
    }

    #[test]
    fn slot_for_reads_the_level_bits() {
        assert_eq!(slot_for(0, 0), 0);
        assert_eq!(slot_for(63, 0), 63);
        assert_eq!(slot_for(64, 0), 0);
        assert_eq!(slot_for(64, 1), 1);
        assert_eq!(slot_for(4095, 1), 63);
        assert_eq!(slot_for(4096, 1), 0);
        assert_eq!(slot_for(4096, 2), 1);
        for level in 0..NUM_LEVELS {
            for slot in 0..SLOTS {
                assert_eq!(slot_for(slot as u64 * slot_width(level), level), slot);
            }
        }
    }

    /// Capacity held by the slots, in entries.
    fn retained(wheel: &Wheel<u64>) -> usize {
        wheel
            .levels
            .iter()
            .flat_map(|l| l.slots.iter())
            .map(Vec::capacity)
            .sum()
    }

    #[test]
    fn memory_does_not_grow_with_elapsed_time() {
        // A pinger's pattern: 20 timers a tick, each due 10 000 ticks later, for a long time.
        let mut wheel = Wheel::new();
        let mut high_water = 0;
        for tick in 0..400_000u64 {
            for i in 0..20 {
                wheel.insert(tick + 10_000, tick * 20 + i);
            }
            while wheel.poll(tick).is_some() {}
            if tick == 100_000 {
                high_water = retained(&wheel);
            }
        }
        assert!(wheel.len() <= 20 * 10_001);
        // Only what is pending, plus a bounded reserve per slot: no growth after warm-up.
        assert!(
            retained(&wheel) <= high_water + 64 * 6 * SLOT_KEEP,
            "{} vs {high_water}",
            retained(&wheel)
        );
        assert!(retained(&wheel) <= 3 * 20 * 10_000 + 64 * 6 * SLOT_KEEP);
    }

    fn drain(wheel: &mut Wheel<u64>, now: u64) -> Vec<u64> {
        std::iter::from_fn(|| wheel.poll(now)).collect()
    }

    #[test]
    fn fires_exactly_at_deadline_not_before() {
        for deadline in [1, 5, 63, 64, 65, 4095, 4096, 4097, 300_000, 20_000_000] {
            let mut wheel = Wheel::new();
            wheel.insert(deadline, deadline);
            assert!(
                drain(&mut wheel, deadline - 1).is_empty(),
                "{deadline} early"
            );
            assert_eq!(drain(&mut wheel, deadline), vec![deadline]);
            assert!(wheel.is_empty());
        }
    }

    #[test]
    fn past_deadlines_fire_on_next_poll() {
        let mut wheel = Wheel::new();
        assert_eq!(drain(&mut wheel, 100), Vec::<u64>::new());
        wheel.insert(50, 1);
        wheel.insert(100, 2);
        assert_eq!(wheel.next_expiration(), Some(100));
        assert_eq!(drain(&mut wheel, 100), vec![1, 2]);
    }

    #[test]
    fn same_tick_fires_in_insertion_order() {
        let mut wheel = Wheel::new();
        for v in 0..10 {
            wheel.insert(5000, v);
        }
        assert_eq!(drain(&mut wheel, 5000), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn next_expiration_never_later_than_earliest_deadline() {
        let mut wheel = Wheel::new();
        assert_eq!(wheel.next_expiration(), None);
        wheel.insert(10_000, 1);
        let next = wheel.next_expiration().unwrap();
        assert!(next <= 10_000);
        // Polling at each reported expiration walks down to the exact deadline.
        let mut guard = 0;
        let mut fired = Vec::new();
        while let Some(next) = wheel.next_expiration() {
            fired.extend(drain(&mut wheel, next));
            guard += 1;
            assert!(guard < 20, "too many wake-ups");
        }
        assert_eq!(fired, vec![1]);
        assert_eq!(wheel.elapsed(), 10_000);
    }

    #[test]
    fn far_deadlines_are_clamped_not_lost() {
        let mut wheel = Wheel::new();
        wheel.insert(u64::MAX, 7);
        assert!(drain(&mut wheel, MAX_TICKS - 2).is_empty());
        assert_eq!(drain(&mut wheel, MAX_TICKS - 1), vec![7]);
    }

    /// Against a sorted-list model: random inserts and polls, with the clock running well past
    /// the top level's range so its slots wrap.
    #[test]
    fn matches_a_sorted_model_under_random_load() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut wheel = Wheel::new();
        let mut model: Vec<(u64, u64)> = Vec::new();
        let mut now = 0u64;
        for id in 0..20_000u64 {
            let span = match next() % 4 {
                0 => 64,
                1 => 5_000,
                2 => 1 << 20,
                _ => 1 << 33,
            };
            let deadline = now + next() % span;
            wheel.insert(deadline, id);
            model.push((deadline.max(now), id));
            if id % 7 == 0 {
                now += next() % (span / 2 + 1);
                let mut fired = drain(&mut wheel, now);
                let mut due: Vec<u64> = model
                    .iter()
                    .filter(|(d, _)| *d <= now)
                    .map(|&(_, id)| id)
                    .collect();
                model.retain(|(d, _)| *d > now);
                fired.sort_unstable();
                due.sort_unstable();
                assert_eq!(fired, due, "at tick {now}");
                assert_eq!(wheel.len(), model.len());
                if let Some(earliest) = model.iter().map(|(d, _)| *d).min() {
                    assert!(wheel.next_expiration().unwrap() <= earliest);
                }
            }
        }
        now += MAX_TICKS;
        assert_eq!(drain(&mut wheel, now).len(), model.len());
        assert!(wheel.is_empty());
    }
}

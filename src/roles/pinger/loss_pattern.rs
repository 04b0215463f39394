//! Loss patterns as RFC 3357 defines them: loss periods (bursts of consecutive lost probes) and
//! loss distances (the sequence gap between one lost probe and the previous one).
//!
//! Fed resolved probes in sequence order, like the outage tracker. A probe that never left
//! (`not_sent`) neither extends nor ends a burst: it says nothing about the network.

use super::inflight::{ProbeState, Slot};
use crate::model::LossBursts;

#[derive(Debug, Clone, Default)]
pub(super) struct LossPattern {
    bursts: u64,
    lost: u64,
    current: u64,
    longest: u64,
    last_lost_seq: Option<u64>,
    distance_sum: u64,
    distances: u64,
}

impl LossPattern {
    pub(super) fn observe(&mut self, probe: &Slot) {
        match probe.state {
            ProbeState::Lost => {
                if self.current == 0 {
                    self.bursts += 1;
                }
                self.current += 1;
                self.lost += 1;
                self.longest = self.longest.max(self.current);
                if let Some(last) = self.last_lost_seq {
                    self.distance_sum += probe.seq - last;
                    self.distances += 1;
                }
                self.last_lost_seq = Some(probe.seq);
            }
            ProbeState::Received | ProbeState::Late => self.current = 0,
            ProbeState::NotSent | ProbeState::InFlight => {}
        }
    }

    pub(super) fn summary(&self) -> LossBursts {
        LossBursts {
            count: self.bursts,
            mean_length: if self.bursts == 0 {
                0.0
            } else {
                self.lost as f64 / self.bursts as f64
            },
            max_length: self.longest,
            mean_distance: if self.distances == 0 {
                0.0
            } else {
                self.distance_sum as f64 / self.distances as f64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pattern: &str) -> LossBursts {
        let mut p = LossPattern::default();
        for (seq, c) in pattern.chars().enumerate() {
            let state = match c {
                'x' => ProbeState::Lost,
                '.' => ProbeState::Received,
                'l' => ProbeState::Late,
                '-' => ProbeState::NotSent,
                _ => unreachable!(),
            };
            p.observe(&Slot::at(seq as u64, 0, state, false));
        }
        p.summary()
    }

    #[test]
    fn counts_periods_lengths_and_distances() {
        let s = run("..xx...x....xxx.");
        assert_eq!(s.count, 3);
        assert_eq!(s.max_length, 3);
        assert!((s.mean_length - 2.0).abs() < 1e-12);
        // Lost at 2,3,7,12,13,14: distances 1,4,5,1,1.
        assert!((s.mean_distance - 12.0 / 5.0).abs() < 1e-12);
    }

    #[test]
    fn no_loss_is_all_zero() {
        let s = run(".....");
        assert_eq!((s.count, s.max_length), (0, 0));
        assert_eq!((s.mean_length, s.mean_distance), (0.0, 0.0));
    }

    #[test]
    fn unsent_probes_do_not_split_a_burst_and_late_ones_end_it() {
        assert_eq!(run(".x-x.").count, 1);
        assert_eq!(run(".x-x.").max_length, 2);
        assert_eq!(run(".xlx.").count, 2);
    }
}

//! What a lossy, slow, jittery link does to one direction of traffic: a userspace netem.
//!
//! Pure and seeded: given the same seed and the same sequence of datagrams it makes the same
//! decisions, so experiments and known-answer tests reproduce. Per datagram, in netem's order of
//! ideas: loss (Bernoulli, or Gilbert–Elliott bursts), then duplication, then a delay with uniform
//! jitter (skipped for the `reorder` share, which therefore overtakes delayed datagrams), then the
//! rate limit, which serialises datagrams on a virtual link and drops beyond a queue limit.

use crate::config::{ImpairSpec, LossModel};

/// SplitMix64: tiny, fast, and good enough for simulation; seeded for reproducibility.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p` (0..=1).
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drop {
    Loss,
    /// Over the queue limit.
    Queue,
}

/// What happens to one datagram: dropped, or sent at one or two departure times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Dropped(Drop),
    Deliver {
        /// Departure times, ns on the caller's clock; the second is a duplicate.
        at: [Option<u64>; 2],
        /// This datagram skipped the delay.
        reordered: bool,
    },
}

/// One direction's impairment state.
#[derive(Debug, Clone)]
pub(crate) struct Impairment {
    spec: ImpairSpec,
    rng: Rng,
    bad_state: bool,
    /// When the virtual link finishes sending what it already holds.
    link_free_ns: u64,
}

impl Impairment {
    pub(crate) fn new(spec: ImpairSpec, seed: u64) -> Self {
        Self {
            spec,
            rng: Rng::new(seed),
            bad_state: false,
            link_free_ns: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn spec(&self) -> &ImpairSpec {
        &self.spec
    }

    fn lost(&mut self) -> bool {
        match self.spec.loss {
            LossModel::None => false,
            LossModel::Bernoulli(p) => self.rng.chance(p),
            LossModel::GilbertElliott {
                p,
                r,
                loss_bad,
                loss_good,
            } => {
                // Move first, then lose according to the state entered (netem's order).
                if self.bad_state {
                    if self.rng.chance(r) {
                        self.bad_state = false;
                    }
                } else if self.rng.chance(p) {
                    self.bad_state = true;
                }
                let loss = if self.bad_state { loss_bad } else { loss_good };
                self.rng.chance(loss)
            }
        }
    }

    fn delay_ns(&mut self) -> (u64, bool) {
        if self.spec.delay_ns == 0 {
            return (0, false);
        }
        if self.rng.chance(self.spec.reorder) {
            return (0, true);
        }
        let jitter = self.spec.jitter_ns as f64;
        let offset = (self.rng.unit() * 2.0 - 1.0) * jitter;
        (
            (self.spec.delay_ns as f64 + offset).max(0.0).round() as u64,
            false,
        )
    }

    /// Decides the fate of a `len`-byte datagram arriving at `now_ns`, with `held` datagrams
    /// of this direction already waiting.
    pub(crate) fn decide(&mut self, now_ns: u64, len: usize, held: usize) -> Fate {
        if self.lost() {
            return Fate::Dropped(Drop::Loss);
        }
        let copies = if self.rng.chance(self.spec.duplicate) {
            2
        } else {
            1
        };
        if held + copies > self.spec.limit {
            return Fate::Dropped(Drop::Queue);
        }
        let mut at = [None, None];
        let mut reordered = false;
        for slot in at.iter_mut().take(copies) {
            let (delay, skipped) = self.delay_ns();
            reordered |= skipped;
            let mut depart = now_ns + delay;
            if let Some(rate) = self.spec.rate_bps {
                let tx_ns = (len as f64 * 8.0 * 1e9 / rate).round() as u64;
                depart = depart.max(self.link_free_ns) + tx_ns;
                self.link_free_ns = depart;
            }
            *slot = Some(depart);
        }
        Fate::Deliver { at, reordered }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ImpairSpec {
        ImpairSpec::default()
    }

    fn deliveries(imp: &mut Impairment, n: usize) -> Vec<Fate> {
        (0..n)
            .map(|i| imp.decide(i as u64 * 1000, 100, 0))
            .collect()
    }

    #[test]
    fn transparent_spec_delivers_everything_at_once() {
        let mut imp = Impairment::new(spec(), 1);
        assert!(imp.spec().is_transparent());
        for (i, fate) in deliveries(&mut imp, 100).into_iter().enumerate() {
            assert_eq!(
                fate,
                Fate::Deliver {
                    at: [Some(i as u64 * 1000), None],
                    reordered: false
                }
            );
        }
    }

    #[test]
    fn same_seed_same_decisions() {
        let s = ImpairSpec {
            loss: LossModel::Bernoulli(0.3),
            delay_ns: 1_000_000,
            jitter_ns: 500_000,
            duplicate: 0.2,
            ..spec()
        };
        let a = deliveries(&mut Impairment::new(s.clone(), 7), 1000);
        let b = deliveries(&mut Impairment::new(s.clone(), 7), 1000);
        let c = deliveries(&mut Impairment::new(s, 8), 1000);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn bernoulli_loss_rate_is_close_to_p() {
        let s = ImpairSpec {
            loss: LossModel::Bernoulli(0.1),
            ..spec()
        };
        let n = 100_000;
        let lost = deliveries(&mut Impairment::new(s, 3), n)
            .iter()
            .filter(|f| matches!(f, Fate::Dropped(Drop::Loss)))
            .count();
        // 99.9% interval: 0.1 ± 3.29 * sqrt(0.09 / n).
        assert!((lost as f64 / n as f64 - 0.1).abs() < 0.0032, "{lost}");
    }

    #[test]
    fn gilbert_elliott_bursts_have_mean_length_one_over_r() {
        let s = ImpairSpec {
            loss: LossModel::GilbertElliott {
                p: 0.01,
                r: 0.25,
                loss_bad: 1.0,
                loss_good: 0.0,
            },
            ..spec()
        };
        let fates = deliveries(&mut Impairment::new(s, 11), 400_000);
        let (mut bursts, mut lost, mut run) = (0, 0, 0);
        for f in fates {
            if matches!(f, Fate::Dropped(_)) {
                lost += 1;
                run += 1;
            } else {
                bursts += usize::from(run > 0);
                run = 0;
            }
        }
        let mean = lost as f64 / bursts as f64;
        assert!((mean - 4.0).abs() < 0.25, "mean burst {mean}");
    }

    #[test]
    fn delay_and_jitter_stay_in_range() {
        let s = ImpairSpec {
            delay_ns: 10_000,
            jitter_ns: 3_000,
            ..spec()
        };
        let mut imp = Impairment::new(s, 5);
        for _ in 0..10_000 {
            match imp.decide(0, 64, 0) {
                Fate::Deliver {
                    at: [Some(t), None],
                    reordered: false,
                } => assert!((7_000..=13_000).contains(&t), "{t}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn reorder_share_skips_the_delay() {
        let s = ImpairSpec {
            delay_ns: 10_000,
            reorder: 0.25,
            ..spec()
        };
        let fates = deliveries(&mut Impairment::new(s, 9), 40_000);
        let skipped = fates
            .iter()
            .filter(|f| {
                matches!(
                    f,
                    Fate::Deliver {
                        reordered: true,
                        ..
                    }
                )
            })
            .count();
        assert!((skipped as f64 / 40_000.0 - 0.25).abs() < 0.01, "{skipped}");
    }

    #[test]
    fn duplicates_get_two_departures() {
        let s = ImpairSpec {
            duplicate: 1.0,
            ..spec()
        };
        let fate = Impairment::new(s, 1).decide(50, 10, 0);
        assert_eq!(
            fate,
            Fate::Deliver {
                at: [Some(50), Some(50)],
                reordered: false
            }
        );
    }

    #[test]
    fn rate_serialises_and_limit_drops() {
        let s = ImpairSpec {
            rate_bps: Some(8_000_000.0), // 1 byte per microsecond
            limit: 2,
            ..spec()
        };
        let mut imp = Impairment::new(s, 1);
        // Three 1000-byte datagrams at t=0: each takes 1 ms on the link.
        assert_eq!(
            imp.decide(0, 1000, 0),
            Fate::Deliver {
                at: [Some(1_000_000), None],
                reordered: false
            }
        );
        assert_eq!(
            imp.decide(0, 1000, 1),
            Fate::Deliver {
                at: [Some(2_000_000), None],
                reordered: false
            }
        );
        assert_eq!(imp.decide(0, 1000, 2), Fate::Dropped(Drop::Queue));
    }
}

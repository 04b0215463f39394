//! Outages: stretches of the run in which the peer answered nothing.
//!
//! Fed resolved probes in sequence order. A run of consecutive unanswered probes becomes an
//! outage when an ICMP error (port or host unreachable, or a send refused) says the peer is gone,
//! or, without one, when at least [`MIN_SILENT_PROBES`] probes over at least [`MIN_SILENT_SPAN`]
//! went unanswered; shorter gaps are ordinary loss. An outage starts at the send time of its first
//! unanswered probe and ends at the send time of the first answered one after it.

use super::inflight::{ProbeState, Slot};
use crate::model::Outage;

/// Unanswered probes needed for an outage that no ICMP error announced.
pub(super) const MIN_SILENT_PROBES: u64 = 3;
/// Time span needed for an outage that no ICMP error announced, in ns (1 s).
pub(super) const MIN_SILENT_SPAN: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
struct Run {
    start_ns: u64,
    lost: u64,
    not_sent: u64,
    unreachable: bool,
}

#[derive(Debug, Default, Clone)]
pub(super) struct OutageTracker {
    current: Option<Run>,
    outages: Vec<Outage>,
}

impl OutageTracker {
    /// Takes the next resolved probe, in sequence order.
    pub(super) fn observe(&mut self, probe: &Slot) {
        match probe.state {
            ProbeState::Received | ProbeState::Late => {
                if let Some(run) = self.current.take() {
                    self.close(run, probe.sent_ns, false);
                }
            }
            ProbeState::Lost => {
                let run = self.current.get_or_insert(Run {
                    start_ns: probe.sent_ns,
                    lost: 0,
                    not_sent: 0,
                    unreachable: false,
                });
                run.lost += 1;
                run.unreachable |= probe.unreachable;
            }
            ProbeState::NotSent => {
                // A local send failure says nothing about the peer, unless it was refused.
                if probe.unreachable && self.current.is_none() {
                    self.current = Some(Run {
                        start_ns: probe.sent_ns,
                        lost: 0,
                        not_sent: 0,
                        unreachable: true,
                    });
                }
                if let Some(run) = self.current.as_mut() {
                    run.not_sent += 1;
                    run.unreachable |= probe.unreachable;
                }
            }
            ProbeState::InFlight => debug_assert!(false, "observe takes resolved probes"),
        }
    }

    /// Closes a run still open at the end (`end_ns`) and returns every outage.
    pub(super) fn finish(mut self, end_ns: u64) -> Vec<Outage> {
        if let Some(run) = self.current.take() {
            self.close(run, end_ns.max(run.start_ns), true);
        }
        self.outages
    }

    fn close(&mut self, run: Run, end_ns: u64, ongoing: bool) {
        let span = end_ns.saturating_sub(run.start_ns);
        let silent_enough = run.lost >= MIN_SILENT_PROBES && span >= MIN_SILENT_SPAN;
        if !(run.unreachable || silent_enough) {
            return;
        }
        self.outages.push(Outage {
            start_s: run.start_ns as f64 / 1e9,
            duration_s: span as f64 / 1e9,
            lost: run.lost,
            not_sent: run.not_sent,
            cause: if run.unreachable {
                "unreachable"
            } else {
                "silence"
            },
            ongoing,
            target: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn probe(seq: u64, at_ms: u64, state: ProbeState, unreachable: bool) -> Slot {
        Slot::at(seq, at_ms * MS, state, unreachable)
    }

    fn feed(states: &[(ProbeState, bool)], every_ms: u64) -> OutageTracker {
        let mut t = OutageTracker::default();
        for (i, &(state, unreachable)) in states.iter().enumerate() {
            t.observe(&probe(i as u64, i as u64 * every_ms, state, unreachable));
        }
        t
    }

    use ProbeState::{Lost, NotSent, Received};

    #[test]
    fn icmp_announced_gap_is_an_outage_even_if_short() {
        let t = feed(
            &[
                (Received, false),
                (Lost, true),
                (NotSent, true),
                (Lost, false),
                (Received, false),
            ],
            10,
        );
        let o = t.finish(1_000 * MS);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].start_s, 0.010);
        assert!((o[0].duration_s - 0.030).abs() < 1e-12);
        assert_eq!((o[0].lost, o[0].not_sent), (2, 1));
        assert_eq!(o[0].cause, "unreachable");
        assert!(!o[0].ongoing);
    }

    #[test]
    fn isolated_losses_are_not_outages() {
        let mut states = vec![(Received, false); 50];
        states[10] = (Lost, false);
        states[11] = (Lost, false);
        states[30] = (Lost, false);
        assert!(feed(&states, 100).finish(10_000 * MS).is_empty());
    }

    #[test]
    fn long_silence_without_icmp_is_an_outage() {
        let mut states = vec![(Received, false)];
        states.extend(std::iter::repeat_n((Lost, false), 20));
        states.push((Received, false));
        let o = feed(&states, 100).finish(10_000 * MS);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].lost, 20);
        assert_eq!(o[0].cause, "silence");
        assert!((o[0].duration_s - 2.0).abs() < 1e-12);
    }

    #[test]
    fn many_losses_in_a_short_span_are_not_an_outage() {
        let mut states = vec![(Received, false)];
        states.extend(std::iter::repeat_n((Lost, false), 50));
        states.push((Received, false));
        // 50 probes 1 ms apart: 50 ms of silence, below the 1 s span.
        assert!(feed(&states, 1).finish(1_000 * MS).is_empty());
    }

    #[test]
    fn local_send_failures_neither_start_nor_break_a_run() {
        let t = feed(
            &[
                (Received, false),
                (NotSent, false),
                (Received, false),
                (Lost, true),
                (NotSent, false),
                (Lost, false),
                (Received, false),
            ],
            10,
        );
        let o = t.finish(1_000 * MS);
        assert_eq!(o.len(), 1);
        assert_eq!((o[0].lost, o[0].not_sent), (2, 1));
    }

    #[test]
    fn outage_open_at_the_end_is_ongoing() {
        let t = feed(&[(Received, false), (Lost, true), (Lost, true)], 10);
        let o = t.finish(500 * MS);
        assert_eq!(o.len(), 1);
        assert!(o[0].ongoing);
        assert!((o[0].duration_s - 0.490).abs() < 1e-12);
    }

    #[test]
    fn two_cuts_make_two_outages() {
        let t = feed(
            &[
                (Received, false),
                (Lost, true),
                (Received, false),
                (Lost, true),
                (Received, false),
            ],
            10,
        );
        assert_eq!(t.finish(1_000 * MS).len(), 2);
    }
}

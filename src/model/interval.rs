//! Interval accounting: what one stretch of a run measured, per flow, and the same stretch over
//! every flow together.
//!
//! A pinger cuts its run into fixed periods from its first send and hands each one over as an
//! [`IntervalReport`]; the [`Combiner`] adds the flows' reports for the same period and releases
//! them in order, once every flow has reported that period or finished.

use super::stats::{Latency, LatencySummary};
use super::summary::Counters;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// One period of one flow (or, once combined, of all flows).
#[derive(Clone)]
pub struct IntervalReport {
    /// 0 for the first period.
    pub index: u64,
    /// Since the run started, ns.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Events of this period: probes sent in it, replies received in it, and so on. `lost` counts
    /// the probes whose timeout fired in it (a later reply makes one late, not un-lost).
    pub counters: Counters,
    /// Round-trip times of the replies received in this period.
    pub rtt: Latency,
    /// STAMP: the forward and backward delays of those replies (below-zero ones left out).
    pub one_way: Option<Box<[Latency; 2]>>,
    /// STAMP, where the reflector's count tells them apart: probes lost forward and backward
    /// since the run began (not in this period alone), as of its end.
    pub lost_split: Option<(u64, u64)>,
    /// The target it is of, when the pinger has several.
    pub target: Option<SocketAddr>,
    /// A total of several targets: each one's own report.
    pub by_target: Vec<IntervalReport>,
}

impl IntervalReport {
    /// Share of the probes settled in this period (received, late or timed out) that were not
    /// answered in time.
    pub fn loss_pct(&self) -> f64 {
        let c = &self.counters;
        let settled = c.received + c.lost;
        if settled == 0 {
            0.0
        } else {
            100.0 * c.lost as f64 / settled as f64
        }
    }

    /// The total of several targets' reports of one period (each one's in `by_target`).
    ///
    /// # Panics
    /// If `parts` is empty.
    pub fn total_of(parts: Vec<IntervalReport>) -> IntervalReport {
        let first = &parts[0];
        let mut total = IntervalReport {
            index: first.index,
            start_ns: first.start_ns,
            end_ns: first.end_ns,
            counters: Counters::default(),
            rtt: Latency::new(),
            one_way: None,
            lost_split: Some((0, 0)),
            target: None,
            by_target: Vec::new(),
        };
        for part in &parts {
            total.add_figures(part);
        }
        total.by_target = parts;
        total
    }

    /// Adds another flow's report of the same period (and its targets').
    fn add(&mut self, other: &IntervalReport) {
        self.add_figures(other);
        self.by_target.extend(other.by_target.iter().cloned());
    }

    fn add_figures(&mut self, other: &IntervalReport) {
        self.start_ns = self.start_ns.min(other.start_ns);
        self.end_ns = self.end_ns.max(other.end_ns);
        self.counters.add(&other.counters);
        self.rtt.merge(&other.rtt);
        // Known in total only where every flow's is.
        self.lost_split = self
            .lost_split
            .zip(other.lost_split)
            .map(|(a, b)| (a.0 + b.0, a.1 + b.1));
        if let Some(theirs) = &other.one_way {
            let ours = self.one_way.get_or_insert_with(Default::default);
            ours[0].merge(&theirs[0]);
            ours[1].merge(&theirs[1]);
        }
    }
}

/// The pinger's side: when the current period ends, and what it has seen so far.
pub struct IntervalClock {
    period_ns: u64,
    index: u64,
    /// Counters and timeouts fired when the current period began.
    at_start: Counters,
    timeouts_at_start: u64,
    rtt: Latency,
    one_way: Option<Box<[Latency; 2]>>,
}

impl IntervalClock {
    /// A clock of `period_ns` periods; `compact`: the periods' round trips in a
    /// [`Latency::compact`] (one of many targets).
    pub fn new(period_ns: u64, compact: bool) -> Self {
        Self {
            period_ns: period_ns.max(1),
            index: 0,
            at_start: Counters::default(),
            timeouts_at_start: 0,
            rtt: if compact {
                Latency::compact()
            } else {
                Latency::new()
            },
            one_way: None,
        }
    }

    /// A clock for a target that joins the run now (one of many: compact): this one's period,
    /// from the current one on, its counts starting at zero.
    pub fn joining(&self) -> Self {
        Self {
            index: self.index,
            ..Self::new(self.period_ns, true)
        }
    }

    /// When the current period began, ns since the run started.
    pub fn start_ns(&self) -> u64 {
        self.index.saturating_mul(self.period_ns)
    }

    /// When the current period ends, ns since the run started.
    pub fn boundary_ns(&self) -> u64 {
        (self.index + 1).saturating_mul(self.period_ns)
    }

    pub fn record_rtt(&mut self, ns: u64) {
        self.rtt.record(ns);
    }

    /// STAMP: one reply's forward and backward delays, ns (`None`: below zero).
    pub fn record_one_way(&mut self, forward_ns: Option<u64>, backward_ns: Option<u64>) {
        // Of the round trips' precision (compact for one of many targets).
        let rtt = &self.rtt;
        let ways = self
            .one_way
            .get_or_insert_with(|| Box::new([rtt.empty_like(), rtt.empty_like()]));
        for (way, ns) in ways.iter_mut().zip([forward_ns, backward_ns]) {
            if let Some(ns) = ns {
                way.record(ns);
            }
        }
    }

    /// Closes the current period at `end_ns` (its boundary, or the end of the run), given the
    /// run's counters and timeouts fired so far.
    pub fn close(&mut self, end_ns: u64, now: &Counters, timeouts: u64) -> IntervalReport {
        let fresh = self.rtt.empty_like();
        let mut counters = now.since(&self.at_start);
        counters.lost = timeouts - self.timeouts_at_start;
        let report = IntervalReport {
            index: self.index,
            start_ns: self.index * self.period_ns,
            end_ns,
            counters,
            rtt: std::mem::replace(&mut self.rtt, fresh),
            one_way: self.one_way.take(),
            lost_split: None,
            target: None,
            by_target: Vec::new(),
        };
        self.index += 1;
        self.at_start = now.clone();
        self.timeouts_at_start = timeouts;
        report
    }
}

/// Adds the flows' reports period by period; see the module docs.
pub struct Combiner {
    /// Per flow: the next period it will report, or `None` once it has finished.
    next: Vec<Option<u64>>,
    pending: BTreeMap<u64, IntervalReport>,
}

impl Combiner {
    pub fn new(flows: usize) -> Self {
        Self {
            next: vec![Some(0); flows],
            pending: BTreeMap::new(),
        }
    }

    /// Takes flow `flow`'s report; returns the periods now complete, in order.
    pub fn add(&mut self, flow: usize, report: IntervalReport) -> Vec<IntervalReport> {
        self.next[flow] = Some(report.index + 1);
        match self.pending.get_mut(&report.index) {
            Some(total) => total.add(&report),
            None => {
                self.pending.insert(report.index, report);
            }
        }
        self.ready()
    }

    /// Flow `flow` will report no more; returns the periods now complete.
    pub fn finish(&mut self, flow: usize) -> Vec<IntervalReport> {
        self.next[flow] = None;
        self.ready()
    }

    pub fn all_finished(&self) -> bool {
        self.next.iter().all(Option::is_none)
    }

    fn ready(&mut self) -> Vec<IntervalReport> {
        let horizon = self.next.iter().flatten().min().copied();
        let mut out = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if horizon.is_some_and(|h| *entry.key() >= h) {
                break;
            }
            out.push(entry.remove());
        }
        out
    }
}

/// What one interval of a run measured (all flows together), as interval lines, the JSON
/// stream and plots show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalSummary {
    pub index: u64,
    /// Since the run started.
    pub start_s: f64,
    pub end_s: f64,
    /// Events of the interval: probes sent in it, replies received in it, and so on; `lost`
    /// counts timeouts that fired in it.
    #[serde(flatten)]
    pub counters: Counters,
    /// Share of the probes settled in the interval (received or timed out) that timed out.
    pub loss_pct: f64,
    /// Round-trip times of the replies received in the interval.
    pub rtt: Option<LatencySummary>,
    /// STAMP: the forward and backward delays of those replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_delay: Option<LatencySummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backward_delay: Option<LatencySummary>,
}

impl IntervalSummary {
    pub fn of(report: &IntervalReport) -> Self {
        Self {
            index: report.index,
            start_s: report.start_ns as f64 / 1e9,
            end_s: report.end_ns as f64 / 1e9,
            counters: report.counters.clone(),
            loss_pct: report.loss_pct(),
            rtt: report.rtt.summary(),
            forward_delay: report.one_way.as_ref().and_then(|w| w[0].summary()),
            backward_delay: report.one_way.as_ref().and_then(|w| w[1].summary()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(index: u64, sent: u64, rtts: &[u64]) -> IntervalReport {
        let mut rtt = Latency::new();
        rtts.iter().for_each(|&v| rtt.record(v));
        IntervalReport {
            index,
            start_ns: index * 1_000,
            end_ns: (index + 1) * 1_000,
            counters: Counters {
                sent,
                received: rtts.len() as u64,
                ..Counters::default()
            },
            rtt,
            one_way: None,
            lost_split: None,
            target: None,
            by_target: Vec::new(),
        }
    }

    #[test]
    fn clock_reports_deltas_and_counts_timeouts_not_net_loss() {
        let mut clock = IntervalClock::new(1_000, false);
        assert_eq!(clock.boundary_ns(), 1_000);
        let mut run = Counters {
            sent: 10,
            received: 7,
            lost: 3,
            ..Counters::default()
        };
        clock.record_rtt(500);
        let first = clock.close(1_000, &run, 3);
        assert_eq!((first.counters.sent, first.counters.lost), (10, 3));
        assert_eq!(first.rtt.count(), 1);
        // One of those three answers late: the run's `lost` drops, the period's timeouts do not.
        run.sent = 15;
        run.lost = 2;
        run.late = 1;
        let second = clock.close(1_500, &run, 3);
        assert_eq!(second.index, 1);
        assert_eq!((second.start_ns, second.end_ns), (1_000, 1_500));
        assert_eq!(
            (
                second.counters.sent,
                second.counters.lost,
                second.counters.late
            ),
            (5, 0, 1)
        );
        assert_eq!(second.rtt.count(), 0);
    }

    #[test]
    fn combiner_waits_for_every_flow_then_releases_in_order() {
        let mut c = Combiner::new(2);
        assert!(c.add(0, report(0, 5, &[100])).is_empty());
        assert!(c.add(0, report(1, 6, &[200])).is_empty());
        let out = c.add(1, report(0, 4, &[300, 400]));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].counters.sent, 9);
        assert_eq!(out[0].rtt.count(), 3);
        // Flow 1 ends early: period 1 is complete with flow 0's report alone.
        let out = c.finish(1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].index, 1);
        assert!(!c.all_finished());
        assert!(c.finish(0).is_empty());
        assert!(c.all_finished());
    }

    #[test]
    fn loss_is_over_settled_probes() {
        let mut r = report(0, 10, &[1, 2, 3]);
        r.counters.lost = 1;
        assert_eq!(r.loss_pct(), 25.0);
        assert_eq!(report(0, 0, &[]).loss_pct(), 0.0);
    }
}

//! Targets that change while the run goes on (`--targets FILE` re-read on SIGHUP or `--reload`).
//!
//! A removed target stops being sent to at once; its probes out are still answered or time out
//! as ever. A timeout later (when no queued timeout names its slot any more) it is buried: its
//! counts join the run's total, its address leaves the table of sources, and its slot, holding
//! nothing, goes to the next target added. The schedule passes over stopped and buried slots.
//! Memory follows the targets there are, not the targets there have been.

use super::target::Target;
use super::{Pinger, TICK_NS};
use crate::config::Pace;
use crate::model::IntervalClock;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::mpsc::Receiver;

impl<'a> Pinger<'a> {
    /// From now on, takes each list received on `lists` as this pinger's whole set of targets:
    /// new ones start, missing ones stop. Each must be of the pinger's address family (unless its
    /// socket serves both); an empty list is ignored.
    pub fn follow_targets(&mut self, lists: Receiver<Vec<SocketAddr>>) {
        self.retarget = Some(lists);
        // Targets will come and go: keep the totals and the table of sources as for many.
        let targets = self.targets.len();
        let compact = super::round_trips_of_many(targets, self.timeout_ns);
        self.shape.compact.get_or_insert(compact);
        if self.totals.is_none() {
            self.totals = Some(Default::default());
        }
        self.by_addr = (0..).zip(&self.targets).map(|(i, t)| (t.addr, i)).collect();
    }

    /// Applies the latest list received, if any, and buries the targets stopped long enough ago.
    pub(super) fn retarget(&mut self, now_ns: u64) {
        self.bury(now_ns);
        let Some(lists) = &self.retarget else {
            return;
        };
        let Some(list) = lists.try_iter().last() else {
            return;
        };
        // Only addresses this socket can reach; none at all leaves the targets as they are.
        let ipv4 = self.targets[0].addr.is_ipv4();
        let both = self.both_families;
        let list: Vec<SocketAddr> = list
            .into_iter()
            .filter(|a| both || a.is_ipv4() == ipv4)
            .collect();
        if list.is_empty() {
            return;
        }
        let wanted: HashSet<SocketAddr> = list.iter().copied().collect();
        // Its periods are everyone's: a new target joins the current one.
        let clock = self.targets.iter().find_map(|t| t.intervals.as_deref());
        let clock = clock.map(IntervalClock::joining);
        for t in 0..self.targets.len() {
            let target = &mut self.targets[t];
            if target.active && !wanted.contains(&target.addr) {
                target.active = false;
                target.retired_at_ns = now_ns;
                target.intervals = None;
                self.stopped.push_back(t);
            }
        }
        for addr in list {
            match self.by_addr.get(&addr) {
                // Stopped but not yet buried: it goes on where it was.
                Some(&t) => {
                    let target = &mut self.targets[t as usize];
                    if !target.active {
                        target.active = true;
                        target.intervals = clock.as_ref().map(|c| Box::new(c.joining()));
                        self.stopped.retain(|&s| s != t as usize);
                    }
                }
                None => self.start(addr, clock.as_ref()),
            }
        }
    }

    /// Buries the targets stopped a timeout (and a tick) ago: by then every probe of theirs has
    /// been answered or timed out, and no queued timeout names their slot. Their counts join
    /// the total; the slot keeps only the time.
    fn bury(&mut self, now_ns: u64) {
        let quiet = self.timeout_ns + 2 * TICK_NS;
        while let Some(&t) = self.stopped.front() {
            let target = &mut self.targets[t];
            if target.retired_at_ns + quiet > now_ns {
                return;
            }
            self.stopped.pop_front();
            target.counters.in_flight += target.table.abandon() as u64;
            self.retired.add(&target.counters);
            self.by_addr.remove(&target.addr);
            self.targets[t] = Target::tombstone(target.addr, &self.shape);
        }
    }

    /// Starts probing `addr`: in a buried target's slot, else a new one.
    fn start(&mut self, addr: SocketAddr, clock: Option<&IntervalClock>) {
        let free = self.targets.iter().position(|t| t.buried);
        let mut target = Target::new(addr, &self.shape);
        target.intervals = clock.map(|c| Box::new(c.joining()));
        let t = match free {
            Some(t) => {
                self.targets[t] = target;
                t
            }
            None => {
                self.rebase_schedule();
                self.targets.push(target);
                self.targets.len() - 1
            }
        };
        self.by_addr.insert(addr, t as u32);
    }

    /// The rate's schedule is about to spread over one more slot: the probes from the next one
    /// on are numbered afresh, due from where the schedule had got to.
    fn rebase_schedule(&mut self) {
        if let Pace::Rate(_) = self.cfg.pace {
            self.rate_base = (self.scheduled, self.intended_ns(self.scheduled));
        }
    }
}

//! What a pinger hands over: interval reports as periods end, and the summary.

use super::target::Target;
use super::{Phase, Pinger};
use crate::config::Pace;
use crate::model::aggregate::combine_targets;
use crate::model::stamp::ClockSides;
use crate::model::IntervalReport;
use crate::model::{
    Batching, LagSummary, OneWay, OneWayDistributions, PingDistributions, PingSummary,
    ReplyHeaders, SocketSummary, StampSource, StampTlvSummary, TxStampCounts,
};
use crate::sys::socket_drops;
use crate::wire::stamp::tlv;
use crate::wire::Wire;
use std::borrow::Cow;
use std::time::Instant;

impl Pinger<'_> {
    pub(super) fn finish(&mut self, now_ns: u64) {
        self.phase = Phase::Done;
        self.end_ns = Some(now_ns);
        self.send_end_ns.get_or_insert(now_ns);
        self.close_intervals(now_ns, true);
    }

    /// Reports every period that has ended by `now_ns`; at the end of the run, the last partial
    /// one too.
    pub(super) fn close_intervals(&mut self, now_ns: u64, end: bool) {
        let Some(mut current) = self.period() else {
            return;
        };
        while current.0 <= now_ns {
            self.report_period(current.0);
            current = self.period().unwrap_or((u64::MAX, 0));
        }
        if end && now_ns > current.1 {
            self.report_period(now_ns);
        }
    }

    /// When the current period ends and began, ns since the epoch, where periods are kept:
    /// every target's end together, any target's clock tells.
    pub(super) fn period(&self) -> Option<(u64, u64)> {
        // (Without reports asked for, no target has a clock: no need to look through them all.)
        self.intervals.as_ref()?;
        let clock = self.targets.iter().find_map(|t| t.intervals.as_ref())?;
        Some((clock.boundary_ns(), clock.start_ns()))
    }

    /// Closes the current period at `end_ns` and hands its report over: the target's, or the
    /// total of the targets' with each one's in `by_target`.
    fn report_period(&mut self, end_ns: u64) {
        let mut parts: Vec<IntervalReport> = self
            .targets
            .iter_mut()
            .filter_map(|t| t.close_period(end_ns))
            .collect();
        let report = match parts.len() {
            0 => return,
            1 if self.totals.is_none() => parts.pop().expect("one report"),
            _ => IntervalReport::total_of(parts),
        };
        if let Some(sink) = self.intervals.as_mut() {
            sink(report);
        }
    }

    /// Everything measured so far (complete once the engine has finished the run): with several
    /// targets, their total, each one's in `targets`.
    pub fn summary(&self) -> PingSummary {
        let end_ns = self.end_ns.unwrap_or_else(|| self.ns(Instant::now()));
        let active: Vec<&Target> = self.targets.iter().filter(|t| t.active).collect();
        let mut summary = match (&active[..], &self.totals) {
            ([one], None) => self.target_summary(one, end_ns),
            (many, _) => combine_targets(
                many.iter()
                    .map(|t| self.target_summary(t, end_ns))
                    .collect(),
                &many.iter().map(|t| &t.dist).collect::<Vec<_>>(),
            ),
        };
        // Targets a reload removed count in the total.
        summary.counters.add(&self.retired);
        for &t in &self.stopped {
            summary.counters.add(&self.targets[t].counters);
        }
        summary.loss_pct = summary.counters.loss_pct();
        if let Some(totals) = self.totals.as_deref() {
            summary.rtt = totals.rtt.summary();
            if summary.rate_pps.is_some() {
                summary.rtt_from_intended = totals.rtt_from_intended.summary();
                summary.schedule_lag = LagSummary::of(&totals.schedule_lag);
            }
        }
        summary.local = self.local.to_string();
        summary.socket = self.socket_summary();
        let counters = &mut summary.counters;
        counters.foreign += self.socket_counters.foreign;
        counters.local_drops = self.socket_counters.local_drops;
        if let Some(drops) = socket_drops(&self.socket) {
            counters.local_drops = counters.local_drops.max(drops.into());
        }
        summary
    }

    /// One target's summary.
    fn target_summary(&self, target: &Target, end_ns: u64) -> PingSummary {
        let rate = match self.cfg.pace {
            Pace::Rate(rate) => Some(rate),
            Pace::Window => None,
        };
        let dist = &target.dist;
        // Of one target among several: the loop keeps these (see `Pinger::totals`).
        let own_schedule = rate.filter(|_| self.totals.is_none());
        let schedule_lag = own_schedule.and(LagSummary::of(&dist.schedule_lag));
        let one_way = dist.one_way.as_deref();
        let counters = target.counters.clone();
        let lost = counters.lost;
        let ways = one_way.map(|d| OneWay::of(d, self.clock.synchronized, lost));
        PingSummary {
            target: target.addr.to_string(),
            name: None,
            labels: Default::default(),
            local: self.local.to_string(),
            session: format!("{:016x}", self.session),
            mode: if rate.is_some() { "rate" } else { "window" },
            rate_pps: rate,
            inflight_max: self.inflight_max,
            peak_in_flight: target.peak_in_flight,
            size_bytes: self.cfg.size,
            timeout_ms: self.cfg.timeout.as_secs_f64() * 1e3,
            duration_s: end_ns as f64 / 1e9,
            interrupted: self.interrupted,
            loss_pct: counters.loss_pct(),
            counters,
            rtt: dist.rtt.summary(),
            jitter_us: target.jitter.us(),
            rtt_from_intended: own_schedule.and(dist.rtt_from_intended.summary()),
            schedule_lag,
            loss_bursts: target.loss_pattern.summary(),
            socket: self.socket_summary(),
            reflector_dwell: one_way.as_ref().and_then(|d| d.dwell.summary()),
            clock_synchronized: one_way.map(|d| ClockSides::of(d, self.clock.synchronized)),
            lost_unattributed: ways
                .as_ref()
                .and_then(|[f, b]| OneWay::unattributed(f, b, lost)),
            forward: ways.clone().map(|[f, _]| Box::new(f)),
            backward: ways.map(|[_, b]| Box::new(b)),
            stamp_tlvs: one_way.and_then(|d| self.stamp_tlvs(d)).map(Box::new),
            reply_headers: dist
                .reply_headers
                .as_deref()
                .map(|h| ReplyHeaders::of(h, self.cfg.tos.map(|t| t.dscp))),
            too_big: target.too_big,
            flows: Vec::new(),
            targets: Vec::new(),
            outages: target
                .outages
                .clone()
                .finish(self.send_end_ns.unwrap_or(end_ns)),
        }
    }

    /// What the RFC 8972 TLVs sent and returned said, when there were any.
    fn stamp_tlvs(&self, d: &OneWayDistributions) -> Option<StampTlvSummary> {
        let Wire::Stamp(stamp) = self.cfg.wire else {
            return None;
        };
        let r = stamp.tlvs;
        if r.is_empty() && d.tlvs.counts.tlvs == 0 {
            return None;
        }
        let keyed = self.cfg.key.is_some();
        let padding = self.cfg.size - self.cfg.header_len() >= tlv::HEADER_LEN;
        let sent = [
            (r.timestamp_info, "timestamp_info"),
            (r.class_of_service.is_some(), "class_of_service"),
            (r.direct_measurement, "direct_measurement"),
            (!r.is_empty() && padding, "extra_padding"),
            (!r.is_empty() && keyed, "hmac"),
        ];
        let sent = sent.into_iter().filter(|s| s.0).map(|s| s.1).collect();
        let tos = r.class_of_service.map(|t| (t.dscp, t.ecn));
        Some(StampTlvSummary::of(&d.tlvs, sent, tos))
    }

    fn socket_summary(&self) -> SocketSummary {
        let batch = self.send_batch.as_deref();
        let info = self.socket_info;
        SocketSummary {
            rcvbuf_bytes: info.rcvbuf_bytes,
            sndbuf_bytes: info.sndbuf_bytes,
            rx_timestamps: info.rx_timestamps,
            tx_timestamps: match self.departures {
                Some(_) => StampSource::Kernel,
                None => StampSource::UserSpace,
            },
            tx_stamps: self.departures.as_deref().map(|d| TxStampCounts {
                round_trips: d.round_trips,
                round_trips_without: d.round_trips_without,
                missed: d.missed,
                unmatched: d.unmatched,
            }),
            batching: match batch {
                Some(b) if b.gso_runs() > 0 => Batching::Gso,
                _ if cfg!(target_os = "linux") => Batching::Sendmmsg,
                _ => Batching::SendTo,
            },
            gso_refused: batch.and_then(|b| b.gso_refused()).map(ToString::to_string),
            gro: info.gro,
            connected: info.connected,
        }
    }

    /// The distributions behind the summary (round trips, from intended send, schedule lag),
    /// for merging flows or export: with several targets, theirs merged.
    pub fn distributions(&self) -> Cow<'_, PingDistributions> {
        // Several targets (or targets that can change) always have totals.
        let Some(totals) = self.totals.as_deref() else {
            return Cow::Borrowed(&self.targets[0].dist);
        };
        // The round trips are the loop's, whole; the targets add what only they have.
        let mut all = totals.clone();
        for target in &self.targets {
            all.merge_beside_round_trips(&target.dist);
        }
        Cow::Owned(all)
    }
}

impl Target {
    /// This target's report of the period ending at `end_ns`, when periods are kept.
    fn close_period(&mut self, end_ns: u64) -> Option<IntervalReport> {
        let clock = self.intervals.as_mut()?;
        let mut report = clock.close(end_ns, &self.counters, self.timeouts_fired);
        report.lost_split = self
            .dist
            .one_way
            .as_deref()
            .and_then(|d| d.split_loss(self.counters.lost));
        report.target = Some(self.addr);
        Some(report)
    }
}

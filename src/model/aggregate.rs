//! Every merge of results in one place: flows of a pinger into one summary, a pinger's targets
//! into one, echo sockets of one address into one, distributions into one. Percentiles of a total always come from merged
//! histograms, never from averaged percentiles.

use super::stamp::{OneWay, StampTlvSummary};
use super::stats::{Latency, PingDistributions};
use super::summary::{Counters, EchoSummary, LagSummary, Outage, PingSummary, ReplyHeaders};

/// Adds up the counters of several echo sockets serving one address (`--threads`). Peers are
/// summed: `SO_REUSEPORT` keeps each peer on one socket.
pub fn merge_echoes(parts: &[EchoSummary]) -> EchoSummary {
    let mut total = parts.first().cloned().unwrap_or_default();
    for p in parts.iter().skip(1) {
        total.duration_ms = total.duration_ms.max(p.duration_ms);
        total.datagrams += p.datagrams;
        total.bytes += p.bytes;
        total.peers += p.peers;
        total.peers_limit += p.peers_limit;
        total.send_failed += p.send_failed;
        total.recv_errors += p.recv_errors;
        total.local_drops += p.local_drops;
        total.not_answered += p.not_answered;
        total.bytes_out += p.bytes_out;
        total.coalesced += p.coalesced;
        total.refused.add(&p.refused);
        if let Some(theirs) = &p.stamp_tlvs {
            total
                .stamp_tlvs
                .get_or_insert_with(Default::default)
                .add(theirs);
        }
        if let Some(theirs) = &p.received_tos {
            total
                .received_tos
                .get_or_insert_with(Default::default)
                .add(theirs);
        }
    }
    total
}

/// Several distributions in one.
pub fn merge_latencies<'a>(parts: impl IntoIterator<Item = &'a Latency>) -> Latency {
    let mut all = Latency::new();
    for part in parts {
        all.merge(part);
    }
    all
}

/// One summary over several flows: counters added, histograms merged (so percentiles are those of
/// all probes together), loss bursts and outages combined; each flow's own summary in `flows`.
///
/// `flows` pairs each flow's summary with the distributions behind it.
///
/// # Panics
/// If `flows` is empty.
pub fn combine_pings(mut flows: Vec<(PingSummary, &PingDistributions)>) -> PingSummary {
    if flows.len() <= 1 {
        // (Moved, not copied: a summary of many targets is large.)
        return flows.pop().expect("at least one flow").0;
    }
    let (mut flows, distributions): (Vec<PingSummary>, Vec<&PingDistributions>) =
        flows.into_iter().unzip();
    let mut total = total_of(&flows, &distributions);
    total.local = format!("{} flows", flows.len());
    // The socket is the first flow's, as the flows' are alike; how their send times were
    // timed is counted over them all.
    for f in &flows[1..] {
        if let (Some(t), Some(other)) = (total.socket.tx_stamps.as_mut(), &f.socket.tx_stamps) {
            t.add(other);
        }
    }
    total.session = flows
        .iter()
        .map(|f| f.session.as_str())
        .collect::<Vec<_>>()
        .join(",");
    // Flows with targets of their own: every target of every flow.
    total.targets = flows.iter_mut().flat_map(|f| f.targets.drain(..)).collect();
    if !total.targets.is_empty() {
        total.target = targets_label(total.targets.len());
    }
    total.flows = flows;
    total
}

/// The summary of a pinger's several targets (each one's in `targets`), given each one's
/// summary and distributions: counted and merged as [`combine_pings`] does flows.
///
/// # Panics
/// If `targets` is empty.
pub fn combine_targets(
    targets: Vec<PingSummary>,
    distributions: &[&PingDistributions],
) -> PingSummary {
    let mut total = total_of(&targets, distributions);
    // Each outage says whose it was.
    total.outages = targets
        .iter()
        .flat_map(|t| {
            t.outages.iter().map(|o| Outage {
                target: Some(t.target.clone()),
                ..o.clone()
            })
        })
        .collect();
    total
        .outages
        .sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    total.target = targets_label(targets.len());
    total.targets = targets;
    total
}

fn targets_label(n: usize) -> String {
    match n {
        1 => "1 target".to_string(),
        n => format!("{n} targets"),
    }
}

/// The parts' total: counters added, histograms merged, bursts and outages combined.
fn total_of(flows: &[PingSummary], distributions: &[&PingDistributions]) -> PingSummary {
    let mut all = PingDistributions::default();
    for d in distributions {
        all.merge(d);
    }
    let mut total = flows[0].clone();
    total.counters = Counters::default();
    let (mut burst_lost, mut distance_weight) = (0.0, 0.0);
    total.loss_bursts.count = 0;
    total.loss_bursts.max_length = 0;
    let mut jitters = Vec::new();
    total.outages.clear();
    for f in &flows[1..] {
        if let (Some(t), Some(other)) = (total.too_big.as_mut(), &f.too_big) {
            t.merge(other);
        }
        total.rate_pps = total.rate_pps.zip(f.rate_pps).map(|(a, b)| a + b);
        total.inflight_max += f.inflight_max;
        total.peak_in_flight += f.peak_in_flight;
        total.duration_s = total.duration_s.max(f.duration_s);
        total.interrupted |= f.interrupted;
    }
    for f in flows {
        total.counters.add(&f.counters);
        let b = &f.loss_bursts;
        total.loss_bursts.count += b.count;
        total.loss_bursts.max_length = total.loss_bursts.max_length.max(b.max_length);
        burst_lost += b.count as f64 * b.mean_length;
        distance_weight += b.count as f64 * b.mean_distance;
        jitters.extend(f.jitter_us);
        total.outages.extend(f.outages.iter().cloned());
    }
    let bursts = total.loss_bursts.count as f64;
    total.loss_bursts.mean_length = if bursts > 0.0 {
        burst_lost / bursts
    } else {
        0.0
    };
    total.loss_bursts.mean_distance = if bursts > 0.0 {
        distance_weight / bursts
    } else {
        0.0
    };
    total
        .outages
        .sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    total.loss_pct = total.counters.loss_pct();
    total.rtt = all.rtt.summary();
    // Jitter is a per-stream quantity: the total reports the mean of the flows'.
    total.jitter_us =
        (!jitters.is_empty()).then(|| jitters.iter().sum::<f64>() / jitters.len() as f64);
    let rate_mode = total.rate_pps.is_some();
    total.rtt_from_intended = if rate_mode {
        all.rtt_from_intended.summary()
    } else {
        None
    };
    total.schedule_lag = if rate_mode {
        LagSummary::of(&all.schedule_lag)
    } else {
        None
    };
    if let Some(headers) = all.reply_headers.as_deref() {
        // Every flow sends with the same DSCP (the first flow's summary is the total's start).
        let sent = total.reply_headers.as_ref().and_then(|r| r.dscp_sent);
        total.reply_headers = Some(ReplyHeaders::of(headers, sent));
    }
    if let Some(one_way) = all.one_way.as_deref() {
        // Synchronised in total only where every flow said so.
        let synchronized = flows
            .iter()
            .all(|f| f.forward.as_ref().is_some_and(|w| w.clocks_synchronized));
        let lost = total.counters.lost;
        let [forward, backward] = OneWay::of(one_way, synchronized, lost);
        total.reflector_dwell = one_way.dwell.summary();
        let sender = flows
            .iter()
            .all(|f| f.clock_synchronized.is_some_and(|c| c.sender));
        total.clock_synchronized = Some(super::stamp::ClockSides::of(one_way, sender));
        total.lost_unattributed = OneWay::unattributed(&forward, &backward, lost);
        total.forward = Some(Box::new(forward));
        total.backward = Some(Box::new(backward));
        total.stamp_tlvs = total.stamp_tlvs.take().map(|first| {
            let tos = first
                .class_of_service
                .as_ref()
                .map(|c| (c.dscp_sent, crate::model::stamp::ecn_code(c.ecn_sent)));
            Box::new(StampTlvSummary::of(&one_way.tlvs, first.sent, tos))
        });
    }
    total
}

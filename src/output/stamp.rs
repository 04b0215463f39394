//! STAMP's part of a ping run's text: the reflector's dwell, each direction's delay, IPDV,
//! losses and reordering, and what the RFC 8972 TLVs carried back.

use super::report::{ms, quartet};
use crate::model::stamp::{OneWay, StampTlvSummary};
use crate::model::PingSummary;
use std::fmt::Write;

/// The STAMP lines of `s`'s summary (none for other formats).
pub(super) fn lines(out: &mut String, s: &PingSummary) {
    if let Some(d) = &s.reflector_dwell {
        let _ = writeln!(
            out,
            "reflector dwell         = {} ms (p50/p90/p99/p99.9, T3 - T2: not in the rtt above)",
            quartet(d)
        );
    }
    for (name, way) in [("forward ", &s.forward), ("backward", &s.backward)] {
        if let Some(way) = way {
            direction(out, name, way);
        }
    }
    if let Some(n) = s.lost_unattributed.filter(|&n| n > 0) {
        let _ = writeln!(
            out,
            "{n} lost after the last probe answered: no later answer tells which way they went"
        );
    }
    if let Some(t) = &s.stamp_tlvs {
        tlvs(out, t);
    }
}

fn direction(out: &mut String, name: &str, way: &OneWay) {
    let delay = way.delay.as_ref().map_or("no samples".into(), quartet);
    let clocks = if way.clocks_synchronized {
        "clocks synchronised"
    } else {
        "clocks not both synchronised: includes their offset"
    };
    let below = match way.below_zero {
        0 => String::new(),
        n => format!(", {n} below zero"),
    };
    let lost = match (way.lost, way.loss_pct) {
        (Some(n), Some(pct)) => format!("lost {n} ({pct:.3}%)"),
        (Some(n), None) => format!("lost {n}"),
        (None, _) => "lost: unknown (the reflector does not count)".into(),
    };
    let ttl = way.ttl.map_or(String::new(), |t| {
        format!(", arrived with TTL {}-{} ({} hops)", t.min, t.max, t.hops)
    });
    let _ = writeln!(
        out,
        "{name} delay          = {delay} ms ({clocks}{below}); {lost}, {} reordered{ttl}",
        way.reordered
    );
    if let Some(ipdv) = &way.ipdv {
        let _ = writeln!(
            out,
            "{name} ipdv           = {} ms (p50/p90/p99/p99.9 of |change| between consecutive probes, max {} ms)",
            quartet(ipdv),
            ms(ipdv.max_us)
        );
    }
}

fn tlvs(out: &mut String, t: &StampTlvSummary) {
    let sent = if t.sent.is_empty() {
        "none".to_string()
    } else {
        t.sent.join(", ")
    };
    let c = &t.counts;
    let _ = writeln!(
        out,
        "TLVs sent: {sent}; {} came back: {} unrecognised, {} malformed, {} failed integrity; {} replies whose HMAC TLV did not verify",
        c.tlvs, c.unrecognized, c.malformed, c.integrity_failed, t.hmac_failed
    );
    if let Some(cos) = &t.class_of_service {
        let seen = |m: String| if m.is_empty() { "nothing".into() } else { m };
        let dscps: Vec<String> = cos
            .dscp_at_reflector
            .iter()
            .map(|(d, n)| format!("{d} ({n})"))
            .collect();
        let ecns: Vec<String> = cos
            .ecn_at_reflector
            .iter()
            .map(|(e, n)| format!("{e} ({n})"))
            .collect();
        let _ = writeln!(
            out,
            "class of service: sent DSCP {}, ECN {}; reached the reflector with DSCP {}, ECN {}: {} remarked, {} ECN changed; {} answers not sent back with the DSCP asked for",
            cos.dscp_sent,
            cos.ecn_sent,
            seen(dscps.join(", ")),
            seen(ecns.join(", ")),
            cos.remarked,
            cos.ecn_changed,
            cos.reply_dscp_not_as_asked
        );
    }
    if let Some(d) = &t.direct_measurement {
        let _ = writeln!(
            out,
            "direct measurement: sent {}, the reflector received {} and sent {} (as of the last probe answered)",
            d.sender_sent, d.reflector_received, d.reflector_sent
        );
    }
    if let Some(clock) = &t.reflector_clock {
        let _ = writeln!(
            out,
            "reflector clock: synchronised by {}, {} timestamps",
            clock.sync_source, clock.timestamp_method
        );
    }
}

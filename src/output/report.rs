//! Text and JSON renderings of the summaries and of per-probe events.
//!
//! Times are printed in milliseconds with three decimals (microsecond resolution), as ping does;
//! the JSON carries microseconds, with the unit in every key.

use crate::model::{
    Batching, DirectionStats, EchoSummary, IntervalSummary, LatencySummary, PingSummary,
    ProbeEvent, RelaySummary, ReplyKind, StampSource,
};
use std::fmt::Write;

pub(super) fn ms(us: f64) -> String {
    format!("{:.3}", us / 1_000.0)
}

fn ns_ms(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e6)
}

/// One line for a probe event, as `-v` prints it.
pub(crate) fn probe_line(event: &ProbeEvent) -> String {
    match event {
        ProbeEvent::Reply {
            seq,
            rtt_ns,
            len,
            kind,
            ..
        } => {
            let rtt = ns_ms(*rtt_ns);
            match kind {
                ReplyKind::Received { reordered: false } => {
                    format!("seq={seq} rtt={rtt} ms len={len}")
                }
                ReplyKind::Received { reordered: true } => {
                    format!("seq={seq} rtt={rtt} ms len={len} (reordered)")
                }
                ReplyKind::Late => format!("seq={seq} LATE rtt={rtt} ms len={len}"),
                ReplyKind::Duplicate => format!("seq={seq} DUP rtt={rtt} ms len={len}"),
            }
        }
        ProbeEvent::Lost {
            seq,
            unreachable: false,
            ..
        } => format!("seq={seq} LOST (no reply by the timeout)"),
        ProbeEvent::Lost {
            seq,
            unreachable: true,
            ..
        } => format!("seq={seq} LOST (destination unreachable)"),
        ProbeEvent::NotSent { seq, error, .. } => format!("seq={seq} NOT SENT ({error})"),
        ProbeEvent::Mismatched { seq, len, reason } => match seq {
            Some(seq) => format!("seq={seq} MISMATCHED len={len} ({reason})"),
            None => format!("MISMATCHED len={len} ({reason})"),
        },
        ProbeEvent::Foreign { from, len } => format!("FOREIGN len={len} from {from}"),
    }
}

pub(super) fn quartet(l: &LatencySummary) -> String {
    format!(
        "{}/{}/{}/{}",
        ms(l.p50_us),
        ms(l.p90_us),
        ms(l.p99_us),
        ms(l.p999_us)
    )
}

/// One line per target (fping's `-q` summary, with percentiles): sent, received, loss and
/// the round trip's min/p50/p99/max.
fn targets_table(out: &mut String, targets: &[PingSummary]) {
    let names: Vec<String> = targets.iter().map(PingSummary::label).collect();
    let w = names.iter().map(String::len).max().unwrap_or(0).max(6);
    let _ = writeln!(
        out,
        "{:<w$} {:>9} {:>9} {:>8}  {:>9} {:>9} {:>9} {:>9}  (ms)",
        "target", "sent", "received", "loss", "min", "p50", "p99", "max"
    );
    for (name, t) in names.iter().zip(targets) {
        let rtt = t
            .rtt
            .as_ref()
            .map_or(["-".to_string(), "-".into(), "-".into(), "-".into()], |r| {
                [ms(r.min_us), ms(r.p50_us), ms(r.p99_us), ms(r.max_us)]
            });
        let [min, p50, p99, max] = rtt;
        let _ = writeln!(
            out,
            "{name:<w$} {:>9} {:>9} {:>7.3}%  {min:>9} {p50:>9} {p99:>9} {max:>9}",
            t.counters.sent, t.counters.received, t.loss_pct
        );
    }
}

/// The closing statistics of a ping run, as text.
pub(crate) fn ping_text(s: &PingSummary) -> String {
    let c = &s.counters;
    let mut out = String::new();
    for (i, f) in s.flows.iter().enumerate() {
        let (p50, p99) = f
            .rtt
            .as_ref()
            .map_or(("-".into(), "-".into()), |r| (ms(r.p50_us), ms(r.p99_us)));
        let _ = writeln!(
            out,
            "flow {i} {} -> {}: {} sent, {} received, {:.3}% loss, rtt p50 {p50} p99 {p99} ms",
            f.local, f.target, f.counters.sent, f.counters.received, f.loss_pct
        );
    }
    if !s.targets.is_empty() {
        targets_table(&mut out, &s.targets);
    }
    let flows = if s.flows.is_empty() {
        String::new()
    } else {
        format!(", {} flows together", s.flows.len())
    };
    let _ = writeln!(out, "--- {} sonde ping statistics{flows} ---", s.target);
    let _ = writeln!(
        out,
        "{} sent, {} received, {:.3}% loss ({} lost, {} late), {:.3} s{}",
        c.sent,
        c.received,
        s.loss_pct,
        c.lost,
        c.late,
        s.duration_s,
        if s.interrupted { ", interrupted" } else { "" }
    );
    let mut others = format!(
        "duplicates {}, reordered {}, mismatched {}, foreign {}, not sent {}",
        c.duplicates, c.reordered, c.mismatched, c.foreign, c.not_sent
    );
    for (name, value) in [
        ("stale", c.stale),
        ("dropped by our receive buffer", c.local_drops),
        ("icmp unreachable", c.unreachable),
        ("abandoned in flight", c.in_flight),
    ] {
        if value > 0 {
            let _ = write!(others, ", {name} {value}");
        }
    }
    let _ = writeln!(out, "{others}");
    match &s.rtt {
        Some(r) => {
            let _ = writeln!(
                out,
                "rtt min/mean/max/stddev = {}/{}/{}/{} ms",
                ms(r.min_us),
                ms(r.mean_us),
                ms(r.max_us),
                ms(r.stddev_us)
            );
            let _ = writeln!(
                out,
                "rtt p50/p90/p99/p99.9   = {} ms, jitter {} ms",
                quartet(r),
                ms(s.jitter_us.unwrap_or(0.0))
            );
        }
        None => {
            let _ = writeln!(out, "rtt: no replies");
        }
    }
    if let Some(r) = &s.rtt_from_intended {
        let _ = writeln!(
            out,
            "from intended send      = {} ms (p50/p90/p99/p99.9, coordinated omission corrected)",
            quartet(r)
        );
    }
    super::stamp::lines(&mut out, s);
    if let Some(h) = &s.reply_headers {
        reply_headers_line(&mut out, h);
    }
    if let Some(t) = s.too_big.filter(|t| t.not_sent + t.icmp > 0) {
        let _ = writeln!(
            out,
            "too big: {} not sent, {} dropped on the way (ICMP): {}",
            t.not_sent,
            t.icmp,
            t.reason(s.size_bytes)
        );
    }
    if let Some(lag) = &s.schedule_lag {
        let _ = writeln!(
            out,
            "schedule lag mean/p99/max = {}/{}/{} ms",
            ms(lag.mean_us),
            ms(lag.p99_us),
            ms(lag.max_us)
        );
    }
    let k = &s.socket;
    let closed_window = s.mode == "window" && s.inflight_max > 1;
    let _ = writeln!(
        out,
        "socket buffers granted: receive {} KiB, send {} KiB; receive times from {}; send times \
         from {}; sent with {}",
        k.rcvbuf_bytes / 1024,
        k.sndbuf_bytes / 1024,
        match k.rx_timestamps {
            StampSource::Kernel => "the kernel (SO_TIMESTAMPNS)",
            StampSource::UserSpace => "user space",
        },
        match k.tx_timestamps {
            StampSource::Kernel => "the kernel (SO_TIMESTAMPING)",
            StampSource::UserSpace if closed_window && k.rx_timestamps == StampSource::Kernel => {
                "user space (a closed loop of several in flight: see --timestamps)"
            }
            StampSource::UserSpace => "user space",
        },
        match k.batching {
            Batching::Gso => "UDP GSO",
            Batching::Sendmmsg => "sendmmsg",
            Batching::SendTo => "send_to",
        }
    );
    if let Some(tx) = k
        .tx_stamps
        .filter(|tx| tx.round_trips_without > 0 || tx.unmatched > 0)
    {
        let _ = writeln!(
            out,
            "notice: {} of {} round trips timed from the user-space send time (the kernel's had \
             not come); {} kernel send times missed, {} unmatched",
            tx.round_trips_without,
            tx.round_trips + tx.round_trips_without,
            tx.missed,
            tx.unmatched
        );
    }
    if k.gro {
        let _ = writeln!(
            out,
            "replies taken coalesced (UDP GRO): local drops count dropped buffers, not replies"
        );
    }
    if k.connected {
        let _ = writeln!(
            out,
            "connected to the target (--connect): datagrams from elsewhere were not seen"
        );
    }
    if let Some(why) = &k.gso_refused {
        let _ = writeln!(
            out,
            "notice: the kernel refused UDP GSO ({why}); switched to one datagram per message"
        );
    }
    let b = &s.loss_bursts;
    if b.count > 0 {
        let _ = writeln!(
            out,
            "loss bursts {}, length mean {:.2} max {}, loss distance mean {:.1} probes",
            b.count, b.mean_length, b.max_length, b.mean_distance
        );
    }
    if s.outages.is_empty() {
        let _ = writeln!(out, "outages: none");
    } else {
        let _ = writeln!(out, "outages: {}", s.outages.len());
        // Of several targets: whose, by name where it has one.
        let whose = |target: &str| {
            let of = s.targets.iter().find(|t| t.target == target);
            format!(
                "{} ",
                of.map_or_else(|| target.to_string(), PingSummary::label)
            )
        };
        for (i, o) in s.outages.iter().enumerate().take(MAX_OUTAGE_LINES) {
            let _ = writeln!(
                out,
                "  {}. {}at {:.3} s for {:.3} s{}: {} lost, {} not sent ({})",
                i + 1,
                o.target.as_deref().map_or(String::new(), whose),
                o.start_s,
                o.duration_s,
                if o.ongoing {
                    " (still down at the end)"
                } else {
                    ""
                },
                o.lost,
                o.not_sent,
                o.cause
            );
        }
        if s.outages.len() > MAX_OUTAGE_LINES {
            let more = s.outages.len() - MAX_OUTAGE_LINES;
            let _ = writeln!(out, "  ... and {more} more (all in --json)");
        }
    }
    out
}

/// Outages listed in the text summary (a network of targets can have many).
const MAX_OUTAGE_LINES: usize = 20;

/// The IP headers the replies came back with.
fn reply_headers_line(out: &mut String, h: &crate::model::ReplyHeaders) {
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "unknown".to_string()
        } else {
            items.join(", ")
        }
    };
    let dscp = list(h.dscp.iter().map(|(d, n)| format!("{d} ({n})")).collect());
    let ecn = list(h.ecn.iter().map(|(e, n)| format!("{e} ({n})")).collect());
    let ttl = h.ttl.map_or("TTL unknown".to_string(), |t| {
        format!("TTL {}-{} ({} hops)", t.min, t.max, t.hops)
    });
    let not_as_sent = match (h.dscp_sent, h.dscp_not_as_sent) {
        (Some(sent), Some(n)) => format!("; {n} not with the DSCP sent ({sent})"),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "replies came back with DSCP {dscp}, ECN {ecn} ({} marked CE), {ttl}{not_as_sent}",
        h.ce
    );
}

/// What `sonde merge` found, as text.
pub(crate) fn merge_text(s: &super::merge::MergeSummary) -> String {
    let mut out = format!(
        "--- sonde merge: {} logs, {} intervals ---\n",
        s.logs.len(),
        s.intervals
    );
    match &s.rtt {
        Some(r) => {
            let _ = writeln!(
                out,
                "{} round trips\nrtt min/mean/max/stddev = {}/{}/{}/{} ms\nrtt p50/p90/p99/p99.9   = {} ms\n(from the histograms: 3 significant digits)",
                r.count,
                ms(r.min_us),
                ms(r.mean_us),
                ms(r.max_us),
                ms(r.stddev_us),
                quartet(r)
            );
        }
        None => out.push_str("no round trips in these logs\n"),
    }
    out
}

/// Datagrams an echo server answered.
fn echoed(s: &EchoSummary) -> u64 {
    s.datagrams
        .saturating_sub(s.send_failed + s.not_answered + s.refused.total())
}

fn refusals(r: &crate::model::Refusals) -> String {
    format!(
        "refused: loop protection {}, not allowed {}, over the source limit {}, over the total limit {}, bad or missing signature {}",
        r.loop_protection, r.not_allowed, r.source_rate_limited, r.total_rate_limited, r.auth_failed
    )
}

/// The counters of an echo server, as text.
pub(crate) fn echo_text(s: &EchoSummary) -> String {
    let peers = if s.peers >= s.peers_limit {
        format!("at least {}", s.peers)
    } else {
        s.peers.to_string()
    };
    let coalesced = if s.coalesced > 0 {
        format!(
            "{} of them came in runs a sender sent as one (UDP GRO), answered as runs\n",
            s.coalesced
        )
    } else {
        String::new()
    };
    let tlvs = s.stamp_tlvs.map_or(String::new(), |t| {
        format!(
            "STAMP TLVs answered: {} ({} unrecognised, {} malformed, {} failed integrity)\n",
            t.tlvs, t.unrecognized, t.malformed, t.integrity_failed
        )
    });
    let tos = s.received_tos.as_ref().map_or(String::new(), |t| {
        format!("{}\n", received_tos(t, s.dscp_reply.as_deref()))
    });
    format!(
        "--- sonde echo on {} ---\n{} of {} datagrams echoed ({} of {} bytes) to {} peers in {:.3} s; {} echoes dropped by the kernel, {} receive errors\n{coalesced}{} dropped on arrival, the receive buffer full (never read: not in the counts above)\n{tlvs}{tos}{}\n",
        s.bind,
        echoed(s),
        s.datagrams,
        s.bytes_out,
        s.bytes,
        peers,
        s.duration_ms as f64 / 1e3,
        s.send_failed,
        s.recv_errors,
        s.local_drops,
        refusals(&s.refused)
    )
}

/// The DSCP and ECN an echo's datagrams arrived with, and what it answered with.
fn received_tos(t: &crate::model::ReceivedTos, reply: Option<&str>) -> String {
    let list = |items: Vec<String>| items.join(", ");
    let answered = match reply {
        Some("keep") => "; answered with each one's DSCP".to_string(),
        Some(dscp) => format!("; answered with DSCP {dscp}"),
        None => String::new(),
    };
    format!(
        "arrived with DSCP {}, ECN {} ({} marked CE){answered}",
        list(t.dscp.iter().map(|(d, n)| format!("{d} ({n})")).collect()),
        list(t.ecn.iter().map(|(e, n)| format!("{e} ({n})")).collect()),
        t.ce
    )
}

/// An echo server's counters so far, as one `--stats-interval` line.
pub(crate) fn echo_stats_line(s: &EchoSummary) -> String {
    let tos = s
        .received_tos
        .as_ref()
        .map_or(String::new(), |t| format!("; {}", received_tos(t, None)));
    format!(
        "[{:9.3} s] {} of {} datagrams echoed, {} dropped on arrival; {}{tos}",
        s.duration_ms as f64 / 1e3,
        echoed(s),
        s.datagrams,
        s.local_drops,
        refusals(&s.refused)
    )
}

/// The counters of an impairment relay, as text.
pub(crate) fn relay_text(s: &RelaySummary) -> String {
    let line = |name: &str, spec: &str, d: &DirectionStats| {
        format!(
            "{name} ({spec}): {} received, {} delivered, {} lost, {} over the limit, {} duplicated, {} reordered, {} send failures, {} held at stop\n",
            d.received, d.delivered, d.lost, d.queue_dropped, d.duplicated, d.reordered, d.send_failed, d.held_at_stop
        )
    };
    let c = &s.clients;
    format!(
        "--- sonde impair {} -> {} (seed {}) ---\n{}{}foreign {}\nclients: {} now of at most {}, {} in all, {} forgotten idle; turned away: {} with the table full, {} without a socket\n{}\n",
        s.listen,
        s.forward,
        s.seed,
        line("up", &s.upstream_spec, &s.upstream),
        line("down", &s.downstream_spec, &s.downstream),
        s.foreign,
        c.now,
        c.limit,
        c.seen,
        c.swept,
        c.refused_table_full,
        c.upstream_failed,
        refusals(&s.refused)
    )
}

/// One interval as a line, like iperf's: its span, counts, loss and RTTs.
pub(crate) fn interval_line(i: &IntervalSummary) -> String {
    let c = &i.counters;
    let rtt = match &i.rtt {
        Some(r) => format!(
            "rtt p50 {} p99 {} max {} ms",
            ms(r.p50_us),
            ms(r.p99_us),
            ms(r.max_us)
        ),
        None => "rtt -".to_string(),
    };
    let mut extra = String::new();
    for (name, value) in [
        ("late", c.late),
        ("dup", c.duplicates),
        ("not sent", c.not_sent),
    ] {
        if value > 0 {
            let _ = write!(extra, ", {value} {name}");
        }
    }
    let mut ways = String::new();
    if let (Some(f), Some(b)) = (&i.forward_delay, &i.backward_delay) {
        ways = format!(
            "  forward p50 {} backward p50 {} ms",
            ms(f.p50_us),
            ms(b.p50_us)
        );
    }
    format!(
        "[{:7.2}-{:7.2} s] {:>9} sent {:>9} received {:>7.3}% loss ({} lost{extra})  {rtt}{ways}",
        i.start_s, i.end_s, c.sent, c.received, i.loss_pct, c.lost
    )
}

/// One object of the JSON stream: `{"event": ..., "data": ...}`, as iperf3's `--json-stream`.
pub(crate) fn json_event<T: serde::Serialize>(event: &str, data: &T) -> String {
    #[derive(serde::Serialize)]
    struct Event<'a, T> {
        event: &'a str,
        data: &'a T,
    }
    json(&Event { event, data })
}

/// A summary as one line of JSON.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("summaries serialize")
}

/// Snapshots of every rendering, from fixed data: a change to what users read is a reviewed
/// change (`INSTA_UPDATE=always cargo test`, then read the diff of `src/snapshots/`).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Counters, IntervalReport, LagSummary, Latency, LossBursts, Outage, SocketSummary,
        TxStampCounts,
    };

    /// Scripted round trips: 1000 replies from 20 us to about 1.2 ms.
    fn scripted_rtt() -> Latency {
        let mut rtt = Latency::new();
        for i in 0..1000u64 {
            rtt.record(20_000 + i * i);
        }
        rtt
    }

    fn summary() -> PingSummary {
        let rtt = scripted_rtt();
        let counters = Counters {
            sent: 1010,
            received: 1000,
            lost: 8,
            late: 2,
            duplicates: 3,
            reordered: 5,
            ..Counters::default()
        };
        PingSummary {
            name: None,
            labels: Default::default(),
            target: "127.0.0.1:9999".into(),
            local: "0.0.0.0:40000".into(),
            session: "00000000000000ff".into(),
            mode: "rate",
            rate_pps: Some(1000.0),
            inflight_max: 1064,
            peak_in_flight: 3,
            size_bytes: 64,
            timeout_ms: 1000.0,
            duration_s: 1.011,
            interrupted: false,
            loss_pct: counters.loss_pct(),
            counters,
            rtt: rtt.summary(),
            jitter_us: Some(12.5),
            rtt_from_intended: rtt.summary(),
            schedule_lag: Some(LagSummary {
                mean_us: 3.0,
                p99_us: 40.0,
                max_us: 120.0,
            }),
            loss_bursts: LossBursts {
                count: 2,
                mean_length: 5.0,
                max_length: 8,
                mean_distance: 1.5,
            },
            outages: vec![Outage {
                start_s: 0.5,
                duration_s: 0.008,
                lost: 8,
                not_sent: 0,
                cause: "silence",
                ongoing: false,
                target: None,
            }],
            socket: SocketSummary {
                rcvbuf_bytes: 8 << 20,
                sndbuf_bytes: 8 << 20,
                rx_timestamps: StampSource::Kernel,
                tx_timestamps: StampSource::Kernel,
                tx_stamps: Some(TxStampCounts {
                    round_trips: 992,
                    ..Default::default()
                }),
                batching: Batching::Gso,
                gso_refused: None,
                gro: false,
                connected: false,
            },
            reflector_dwell: None,
            forward: None,
            backward: None,
            clock_synchronized: None,
            lost_unattributed: None,
            stamp_tlvs: None,
            reply_headers: None,
            too_big: None,
            flows: Vec::new(),
            targets: Vec::new(),
        }
    }

    fn interval() -> IntervalSummary {
        IntervalSummary::of(&IntervalReport {
            index: 1,
            start_ns: 1_000_000_000,
            end_ns: 2_000_000_000,
            counters: Counters {
                sent: 1000,
                received: 990,
                lost: 10,
                late: 1,
                ..Counters::default()
            },
            rtt: scripted_rtt(),
            one_way: None,
            lost_split: None,
            target: None,
            by_target: Vec::new(),
        })
    }

    #[test]
    fn ping_summary_text() {
        insta::assert_snapshot!(ping_text(&summary()));
    }

    #[test]
    fn an_outage_of_one_of_several_targets_names_it() {
        let mut total = summary();
        let mut db = summary();
        (db.target, db.name) = ("127.0.0.3:9999".into(), Some("db1".into()));
        let mut web = summary();
        web.target = "127.0.0.1:9999".into();
        total.targets = vec![web, db];
        total.outages[0].target = Some("127.0.0.3:9999".into());
        let text = ping_text(&total);
        assert!(
            text.contains("\n  1. db1 (127.0.0.3:9999) at 0.500 s"),
            "{text}"
        );
        total.outages[0].target = Some("127.0.0.1:9999".into());
        let text = ping_text(&total);
        assert!(text.contains("\n  1. 127.0.0.1:9999 at 0.500 s"), "{text}");
    }

    #[test]
    fn echo_text_says_how_many_came_coalesced_only_when_some_did() {
        let mut s = EchoSummary {
            bind: "127.0.0.1:9999".into(),
            datagrams: 640,
            bytes: 40_960,
            bytes_out: 40_960,
            peers: 1,
            peers_limit: 65_536,
            ..EchoSummary::default()
        };
        assert!(!echo_text(&s).contains("UDP GRO"), "{}", echo_text(&s));
        s.coalesced = 576;
        let text = echo_text(&s);
        assert!(
            text.contains("\n576 of them came in runs a sender sent as one (UDP GRO)"),
            "{text}"
        );
        assert!(
            text.ends_with(&format!("{}\n", refusals(&s.refused))),
            "{text}"
        );
    }

    #[test]
    fn ping_summary_json() {
        insta::assert_snapshot!(serde_json::to_string_pretty(&summary()).unwrap());
    }

    #[test]
    fn interval_line_and_event() {
        let i = interval();
        insta::assert_snapshot!(format!(
            "{}\n{}",
            interval_line(&i),
            json_event("interval", &i)
        ));
    }

    #[test]
    fn probe_lines() {
        let events = [
            ProbeEvent::Reply {
                seq: 7,
                intended_ns: 7_000_000,
                sent_ns: 7_000_100,
                rtt_ns: 31_234,
                len: 64,
                kind: ReplyKind::Received { reordered: true },
                split: None,
            },
            ProbeEvent::Lost {
                seq: 8,
                intended_ns: 8_000_000,
                sent_ns: 8_000_050,
                unreachable: true,
            },
            ProbeEvent::Mismatched {
                seq: Some(9),
                len: 40,
                reason: "truncated",
            },
        ];
        let lines: Vec<String> = events.iter().map(probe_line).collect();
        insta::assert_snapshot!(lines.join("\n"));
    }

    #[test]
    fn hgrm_of_scripted_rtts() {
        insta::assert_snapshot!(crate::output::export::hgrm::render(
            &scripted_rtt().histogram()
        ));
    }
}

//! Entry points for the fuzz targets in `fuzz/` and the property tests: each takes arbitrary
//! bytes, feeds them to a decoder or to the reply classifier, and panics if an invariant breaks.
//! Not part of the supported API.

use crate::roles::pinger::{InFlight, ProbeState, Verdict};
use crate::wire::{sockperf, text, ProbeHeader, HEADER_LEN};
use std::collections::HashMap;

/// Every wire decoder on arbitrary bytes (sonde's, its text form, sockperf's): never panics, and
/// what decodes re-encodes to the same bytes; sockperf's server reply is never longer than what arrived.
pub fn wire(data: &[u8]) {
    if let Ok(header) = ProbeHeader::decode(data) {
        let mut again = vec![0u8; HEADER_LEN];
        header.encode(&mut again);
        // Everything but the reserved bytes (flags and padding, 5..8), which decoding ignores.
        assert_eq!(
            &again[..5],
            &data[..5],
            "sonde header round trip: magic, version"
        );
        assert_eq!(
            &again[8..],
            &data[8..HEADER_LEN],
            "sonde header round trip: fields"
        );
    }
    if let Some(header) = sockperf::Header::decode(data) {
        let mut again = data.to_vec();
        header.encode(&mut again);
        assert_eq!(
            sockperf::Header::decode(&again),
            Some(header),
            "sockperf header round trip"
        );
    }
    if let Some(header) = text::decode(data) {
        // The text header is canonical (lowercase hex, fixed widths): it re-encodes byte for byte.
        let mut again = vec![0u8; text::HEADER_LEN];
        text::encode(&header, &mut again);
        assert_eq!(
            &again[..],
            &data[..text::HEADER_LEN],
            "text header round trip"
        );
    }
    let mut reply = data.to_vec();
    if let Some(len) = sockperf::server_reply(&mut reply) {
        assert!(len <= data.len(), "a reply longer than the request");
    }
    let key = crate::wire::auth::Key::new(b"fuzzing key, 16+ bytes".to_vec()).expect("a valid key");
    if key.verify(data) {
        // Forging a tag by chance is a 2^-128 event: treat it as a finding.
        panic!("an unsigned datagram verified");
    }
}

/// STAMP packets of both modes on arbitrary bytes: what decodes re-encodes to the same fields,
/// nothing unsigned passes for authenticated, and a sender reads any reply without a panic.
pub fn stamp(data: &[u8]) {
    use crate::wire::stamp::{Mode, Reflected, TestPacket};
    if let Ok(packet) = TestPacket::decode(data, Mode::Open, None) {
        let mut again = vec![0u8; Mode::Open.base_len()];
        packet.encode(&mut again, Mode::Open, None);
        assert_eq!(TestPacket::decode(&again, Mode::Open, None), Ok(packet));
    }
    if let Ok(reflected) = Reflected::decode(data, Mode::Open, None) {
        let mut again = vec![0u8; Mode::Open.base_len()];
        reflected.encode(&mut again, Mode::Open, None);
        assert_eq!(Reflected::decode(&again, Mode::Open, None), Ok(reflected));
    }
    let key = crate::wire::auth::Key::new(b"fuzzing key, 16+ bytes".to_vec()).expect("a valid key");
    assert!(
        TestPacket::decode(data, Mode::Authenticated, Some(&key)).is_err()
            && Reflected::decode(data, Mode::Authenticated, Some(&key)).is_err(),
        "an unsigned STAMP packet verified"
    );
    let _ = crate::wire::Wire::Stamp(Default::default()).decode_reply(data, 1, None);
    stamp_tlvs(data, &key);
}

/// RFC 8972 TLVs on arbitrary bytes: a reflector rewrites them in place (never longer, never
/// more TLVs than fit), a sender reads them without a panic, and nothing unsigned verifies.
fn stamp_tlvs(data: &[u8], key: &crate::wire::auth::Key) {
    use crate::wire::stamp::tlv::{self, ReflectorInfo, HEADER_LEN};
    let read = tlv::read(data, 7, Some(key));
    assert_ne!(read.hmac_ok, Some(true), "an unsigned HMAC TLV verified");
    let info = ReflectorInfo {
        received_tos: Some(0xb8),
        received: 3,
        sent: 3,
        ..ReflectorInfo::default()
    };
    let mut area = data.to_vec();
    let marks = tlv::reflect(&mut area, 7, 8, &info, None);
    assert_eq!(area.len(), data.len());
    assert!(marks.tlvs as usize <= data.len() / HEADER_LEN);
    // What the reflector answered reads back as the same TLVs.
    assert_eq!(tlv::read(&area, 8, None).marks.tlvs, marks.tlvs);
}

/// The readers of sonde's own files (CSV rows, `.hgrm`, interval logs) on arbitrary bytes:
/// errors, never panics.
pub fn files(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let _ = crate::output::export::csv::parse_row(line);
    }
    let _ = crate::output::export::hgrm::parse(&text);
    let _ = crate::output::export::hlog::read("LOG", "fuzz", data);
}

/// Drives the sequence table with operations decoded from `data` (push, reply, timeout,
/// collect) and checks it against a plain model:
/// - every probe sent ends in exactly one of received, lost, late or in flight, and
///   `sent = received + lost + late + in flight` at every step;
/// - a reply is classified as the model says (never received twice, never received after its
///   deadline, never for a probe not sent), and an outstanding probe is never forgotten;
/// - resolved probes come out once each, in sequence order, never while in flight.
pub fn classifier(data: &[u8]) {
    const TIMEOUT: u64 = 1_000;
    let mut table = InFlight::new(4, 64);
    let mut model: HashMap<u64, (ProbeState, u64)> = HashMap::new();
    let (mut sent, mut received, mut lost, mut late) = (0u64, 0u64, 0u64, 0u64);
    let mut now = 0u64;
    let mut next_resolved = 0u64;
    for op in data.chunks(2) {
        let (kind, arg) = (op[0] % 5, u64::from(*op.get(1).unwrap_or(&0)));
        now += arg * 7;
        match kind {
            0 | 1 => {
                if table.make_room() {
                    let was_sent = kind == 0;
                    let seq = table.push(now, now, was_sent);
                    let state = if was_sent {
                        sent += 1;
                        ProbeState::InFlight
                    } else {
                        ProbeState::NotSent
                    };
                    model.insert(seq, (state, now));
                }
            }
            2 => {
                // Replies around the newest probes, some past them (never sent).
                let seq = (table.next_seq() + 8).saturating_sub(arg % 80);
                let verdict = table.on_reply(seq, now, TIMEOUT);
                let Some((state, sent_at)) = model.get(&seq).copied() else {
                    assert_eq!(verdict, Verdict::NeverSent, "seq {seq} was never pushed");
                    continue;
                };
                match (state, verdict) {
                    (ProbeState::InFlight, Verdict::Received { .. }) => {
                        assert!(now - sent_at <= TIMEOUT, "received after its deadline");
                        received += 1;
                        model.insert(seq, (ProbeState::Received, sent_at));
                    }
                    (ProbeState::InFlight, Verdict::Late) => {
                        assert!(now - sent_at > TIMEOUT, "late before its deadline");
                        late += 1;
                        model.insert(seq, (ProbeState::Late, sent_at));
                    }
                    (ProbeState::Lost, Verdict::Late) => {
                        lost -= 1;
                        late += 1;
                        model.insert(seq, (ProbeState::Late, sent_at));
                    }
                    (ProbeState::Received | ProbeState::Late, Verdict::Duplicate)
                    | (ProbeState::NotSent, Verdict::NeverSent)
                    | (
                        ProbeState::NotSent
                        | ProbeState::Lost
                        | ProbeState::Received
                        | ProbeState::Late,
                        Verdict::Stale,
                    ) => {}
                    (state, verdict) => panic!("seq {seq} in state {state:?} got {verdict:?}"),
                }
            }
            3 => {
                let seq = table.next_seq().saturating_sub(1 + arg % 64);
                let fired = table.on_timeout(seq);
                match model.get(&seq).copied() {
                    Some((ProbeState::InFlight, sent_at)) => {
                        assert!(fired.is_some(), "an outstanding probe was forgotten");
                        lost += 1;
                        model.insert(seq, (ProbeState::Lost, sent_at));
                    }
                    _ => assert!(fired.is_none(), "seq {seq} timed out twice or unsent"),
                }
            }
            _ => {
                while let Some(slot) = table.pop_resolved() {
                    assert_eq!(slot.seq, next_resolved, "out of order");
                    assert_ne!(model[&slot.seq].0, ProbeState::InFlight);
                    next_resolved += 1;
                }
            }
        }
        let outstanding = model
            .values()
            .filter(|(s, _)| *s == ProbeState::InFlight)
            .count();
        assert_eq!(table.in_flight(), outstanding, "in-flight count");
        assert_eq!(
            sent,
            received + lost + late + outstanding as u64,
            "sent = received + lost + late + in flight"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn classifier_invariants_hold(ops in proptest::collection::vec(any::<u8>(), 0..600)) {
            classifier(&ops);
        }

        #[test]
        fn wire_decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            wire(&data);
        }

        #[test]
        fn valid_headers_survive_decoding(session: u64, seq: u64, send_ns: u64, pad in 0usize..64) {
            let mut buf = vec![0u8; HEADER_LEN + pad];
            ProbeHeader { session, seq, send_ns }.encode(&mut buf);
            let back = ProbeHeader::decode(&buf).unwrap();
            prop_assert_eq!((back.session, back.seq, back.send_ns), (session, seq, send_ns));
            wire(&buf);
        }

        #[test]
        fn stamp_tlv_lists_survive_a_reflector(
            tlvs in proptest::collection::vec((any::<u8>(), 0u8..10, 0usize..20), 0..8),
            cut in 0usize..8,
        ) {
            // Well-formed-looking TLV lists (types around the known ones, lengths that fit or
            // are a few bytes off), cut short by up to `cut` bytes.
            let mut data = Vec::new();
            for (flags, kind, len) in tlvs {
                data.extend_from_slice(&[flags, kind, 0, len as u8]);
                data.extend(std::iter::repeat_n(kind, len));
            }
            data.truncate(data.len().saturating_sub(cut));
            let key = crate::wire::auth::Key::new(b"fuzzing key, 16+ bytes".to_vec()).unwrap();
            stamp_tlvs(&data, &key);
        }

        #[test]
        fn stamp_decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            stamp(&data);
        }

        #[test]
        fn file_readers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            files(&data);
        }
    }

    #[test]
    fn a_long_mixed_run_keeps_the_books() {
        // A deterministic stretch with every kind of operation, many times over.
        let ops: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        classifier(&ops);
    }
}

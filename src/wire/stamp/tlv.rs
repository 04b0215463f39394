//! RFC 8972 TLVs: what follows a STAMP base packet (at offset 44 open, 112 authenticated; both
//! directions put them at the same place, so a reflector rewrites them in place).
//!
//! Each TLV is Flags (1 byte), Type (1), Length (2, of the value), Value. The sender sends every
//! TLV with U set; the reflector clears U on the types it processes and keeps it on the others,
//! and sets M (malformed: a known type of the wrong length, or a length running past the packet;
//! nothing after it is read) and I (the HMAC TLV did not verify: every TLV gets it and none is
//! processed). The HMAC TLV, last, carries
//! HMAC-SHA-256 truncated to 16 bytes of the packet's sequence number and every TLV before it.
//!
//! | type | value (bytes) | sender writes | reflector fills |
//! |---|---|---|---|
//! | 1 Extra Padding | any | padding | – |
//! | 3 Timestamp Information | 4 | its sync source, its timestamp method | bytes 2, 3: its own |
//! | 4 Class of Service | 4 | DSCP1 (6 bits): asked for the reply | DSCP2 (6) and ECN (2) as received, RP (2) |
//! | 5 Direct Measurement | 12 | S_TxC: packets sent so far | R_RxC, R_TxC: the session's counts |
//! | 8 HMAC | 16 | the tag | its tag of its own sequence number and TLVs |
//!
//! Any other type (Location, Access Report, Follow-Up Telemetry, unknown ones) is returned with
//! U set: sonde does not process them.

use crate::wire::auth::{Key, TAG_LEN};

/// Flags, Type and Length.
pub const HEADER_LEN: usize = 4;

/// Flag bits, set by a reflector.
pub const UNRECOGNIZED: u8 = 0x80;
pub const MALFORMED: u8 = 0x40;
pub const INTEGRITY_FAILED: u8 = 0x20;

/// Types (IANA "STAMP TLV Types").
pub const EXTRA_PADDING: u8 = 1;
pub const TIMESTAMP_INFO: u8 = 3;
pub const CLASS_OF_SERVICE: u8 = 4;
pub const DIRECT_MEASUREMENT: u8 = 5;
pub const HMAC: u8 = 8;

const TIMESTAMP_INFO_LEN: usize = 4;
const CLASS_OF_SERVICE_LEN: usize = 4;
const DIRECT_MEASUREMENT_LEN: usize = 12;

/// Synchronisation sources (Timestamp Information TLV; RFC 8972 §5.3: 1 NTP, 2 PTP,
/// 3 SSU/BITS, 4 GNSS, 5 local).
pub const SYNC_NTP: u8 = 1;
pub const SYNC_LOCAL: u8 = 5;
/// Timestamp methods (Timestamp Information TLV): sonde's are the kernel's software stamps.
pub const METHOD_SW_LOCAL: u8 = 2;

/// The DSCP (6 bits) and ECN (2 bits) of an IP header's TOS / traffic class byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tos {
    pub dscp: u8,
    pub ecn: u8,
}

impl Tos {
    pub fn from_byte(byte: u8) -> Self {
        Tos {
            dscp: byte >> 2,
            ecn: byte & 3,
        }
    }

    pub fn byte(self) -> u8 {
        (self.dscp & 0x3f) << 2 | (self.ecn & 3)
    }
}

/// The TLVs a Session-Sender puts in each test packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Request {
    pub timestamp_info: bool,
    /// Class of Service: the DSCP asked for the reply; the DSCP and ECN sent with.
    pub class_of_service: Option<Tos>,
    pub direct_measurement: bool,
    /// Padding goes as an Extra Padding TLV (it always does once another TLV is asked for:
    /// zeros after a TLV would read as TLVs of type 0).
    pub padding: bool,
}

/// What the sender says of itself in its TLVs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// Probes sent so far, this one included (Direct Measurement's S_TxC).
    pub sent: u32,
    /// Its clock's synchronisation source and its timestamp method (Timestamp Information).
    pub sync: u8,
    pub method: u8,
}

impl Request {
    /// No TLV at all: the packet is padded with zeros, as RFC 8762 alone has it.
    pub fn is_empty(&self) -> bool {
        !self.timestamp_info
            && self.class_of_service.is_none()
            && !self.direct_measurement
            && !self.padding
    }

    /// Bytes of every TLV but the padding, with an HMAC TLV when keyed.
    pub fn fixed_len(&self, keyed: bool) -> usize {
        if self.is_empty() {
            return 0;
        }
        let tlv = |on: bool, value: usize| if on { HEADER_LEN + value } else { 0 };
        tlv(self.timestamp_info, TIMESTAMP_INFO_LEN)
            + tlv(self.class_of_service.is_some(), CLASS_OF_SERVICE_LEN)
            + tlv(self.direct_measurement, DIRECT_MEASUREMENT_LEN)
            + tlv(keyed, TAG_LEN)
    }

    /// Whether `room` bytes after the base packet fit these TLVs exactly: the fixed ones, then
    /// nothing or an Extra Padding TLV (its header needs 4 of them). `Err` says why not.
    pub fn fits(&self, room: usize, keyed: bool) -> Result<(), String> {
        let fixed = self.fixed_len(keyed);
        if room < fixed {
            return Err(format!(
                "the TLVs asked for need {fixed} bytes after the base packet; {room} left"
            ));
        }
        let rest = room - fixed;
        if !self.is_empty() && (1..HEADER_LEN).contains(&rest) {
            return Err(format!(
                "{rest} bytes would be left after the TLVs, too few for an Extra Padding TLV \
                 (4 at least): ask for {} or {} bytes or more",
                room - rest,
                room - rest + HEADER_LEN
            ));
        }
        Ok(())
    }

    /// Writes the TLVs in `area`, everything after the base packet, which [`Request::fits`].
    /// `seq` is the packet's sequence number, which the HMAC TLV covers with the TLVs.
    pub fn write(&self, area: &mut [u8], info: &SenderInfo, seq: u32, key: Option<&Key>) {
        if self.is_empty() {
            return;
        }
        let mut at = 0;
        if self.timestamp_info {
            at = put(area, at, TIMESTAMP_INFO, &[info.sync, info.method, 0, 0]);
        }
        if let Some(tos) = self.class_of_service {
            at = put(area, at, CLASS_OF_SERVICE, &[tos.dscp << 2, 0, 0, 0]);
        }
        if self.direct_measurement {
            let mut value = [0u8; DIRECT_MEASUREMENT_LEN];
            value[..4].copy_from_slice(&info.sent.to_be_bytes());
            at = put(area, at, DIRECT_MEASUREMENT, &value);
        }
        let hmac_len = if key.is_some() {
            HEADER_LEN + TAG_LEN
        } else {
            0
        };
        let padding = area.len() - at - hmac_len;
        if padding >= HEADER_LEN {
            at = put_header(area, at, EXTRA_PADDING, padding - HEADER_LEN);
            area[at..at + padding - HEADER_LEN].fill(0);
            at += padding - HEADER_LEN;
        }
        if let Some(key) = key {
            let tag = key.tag_of(&[&seq.to_be_bytes(), &area[..at]]);
            put(area, at, HMAC, &tag);
        }
    }
}

fn put_header(area: &mut [u8], at: usize, kind: u8, len: usize) -> usize {
    // U set: the reflector clears it if it knows the type.
    area[at] = UNRECOGNIZED;
    area[at + 1] = kind;
    area[at + 2..at + 4].copy_from_slice(&(len as u16).to_be_bytes());
    at + HEADER_LEN
}

fn put(area: &mut [u8], at: usize, kind: u8, value: &[u8]) -> usize {
    let at = put_header(area, at, kind, value.len());
    area[at..at + value.len()].copy_from_slice(value);
    at + value.len()
}

/// Whether `bytes` are all zero: RFC 8762's plain padding, which holds no TLV. Eight bytes at a
/// time (a reflector asks this of every test packet).
pub fn is_blank(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let zero_words = words
        .by_ref()
        .all(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")) == 0);
    zero_words && words.remainder().iter().all(|&b| b == 0)
}

/// One TLV as found: where it starts, its type, and its value's range (cut at the end of the
/// packet when its length runs past it: then it is malformed).
#[derive(Debug, Clone, Copy)]
struct Found {
    at: usize,
    kind: u8,
    value: (usize, usize),
    complete: bool,
}

/// The TLVs in `area`. It stops at fewer than 4 bytes left (no room for a TLV), at a run of
/// zeros to the end (plain padding, as RFC 8762 pads), and after a TLV that runs past the end.
fn walk(area: &[u8]) -> impl Iterator<Item = Found> + '_ {
    let mut at = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done || area.len() - at < HEADER_LEN {
            return None;
        }
        if is_blank(&area[at..]) {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([area[at + 2], area[at + 3]]));
        let start = at + HEADER_LEN;
        let end = start + len;
        let found = Found {
            at,
            kind: area[at + 1],
            value: (start, end.min(area.len())),
            complete: end <= area.len(),
        };
        done = !found.complete;
        at = end;
        Some(found)
    })
}

/// Whether `area` holds a TLV of type `kind`.
pub fn carries(area: &[u8], kind: u8) -> bool {
    walk(area).any(|t| t.kind == kind)
}

/// The fixed value length of the types sonde processes; `None` for the others.
fn known_len(kind: u8) -> Option<Option<usize>> {
    match kind {
        EXTRA_PADDING => Some(None),
        TIMESTAMP_INFO => Some(Some(TIMESTAMP_INFO_LEN)),
        CLASS_OF_SERVICE => Some(Some(CLASS_OF_SERVICE_LEN)),
        DIRECT_MEASUREMENT => Some(Some(DIRECT_MEASUREMENT_LEN)),
        HMAC => Some(Some(TAG_LEN)),
        _ => None,
    }
}

/// Whether a found TLV is malformed: cut short, or a known type of the wrong length.
fn malformed(t: &Found) -> bool {
    !t.complete
        || known_len(t.kind)
            .flatten()
            .is_some_and(|len| len != t.value.1 - t.value.0)
}

/// TLVs flagged, counted: by a reflector as it answers, or by a sender in a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Marks {
    pub tlvs: u32,
    pub unrecognized: u32,
    pub malformed: u32,
    pub integrity_failed: u32,
}

impl Marks {
    fn count(&mut self, flags: u8) {
        self.tlvs += 1;
        self.unrecognized += u32::from(flags & UNRECOGNIZED != 0);
        self.malformed += u32::from(flags & MALFORMED != 0);
        self.integrity_failed += u32::from(flags & INTEGRITY_FAILED != 0);
    }

    pub fn add(&mut self, o: &Marks) {
        self.tlvs += o.tlvs;
        self.unrecognized += o.unrecognized;
        self.malformed += o.malformed;
        self.integrity_failed += o.integrity_failed;
    }
}

/// What a reflector puts in the TLVs it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReflectorInfo {
    /// The TOS / traffic class the test packet arrived with, where the kernel said (without it a
    /// Class of Service TLV is returned unprocessed, U set).
    pub received_tos: Option<u8>,
    /// The session's test packets received and answers sent, this one included (0: not
    /// counted, so Direct Measurement is returned unprocessed, U set).
    pub received: u32,
    pub sent: u32,
    pub sync: u8,
    pub method: u8,
}

/// Verifies the HMAC TLV of `area` (the last TLV, when it is one) over `seq` and the TLVs
/// before it: `None` without one, else where it is and whether it verified.
fn hmac_check(area: &[u8], seq: [u8; 4], key: Option<&Key>) -> Option<(Found, bool)> {
    let last = walk(area).last()?;
    if last.kind != HMAC || malformed(&last) {
        return None;
    }
    let ok = key.is_some_and(|k| {
        k.verify_parts(&[&seq, &area[..last.at]], &area[last.value.0..last.value.1])
    });
    Some((last, ok))
}

/// Turns the TLVs of a test packet (`area`, everything after its base packet) into the
/// reflector's, in place: fills what sonde knows, flags the rest, and seals the HMAC TLV anew
/// over `reply_seq`. `request_seq` is the sequence number the sender's HMAC TLV covers.
pub fn reflect(
    area: &mut [u8],
    request_seq: u32,
    reply_seq: u32,
    info: &ReflectorInfo,
    key: Option<&Key>,
) -> Marks {
    let mut marks = Marks::default();
    let hmac = hmac_check(area, request_seq.to_be_bytes(), key);
    let trusted = hmac.is_none_or(|(_, ok)| ok);
    // Walked afresh from each TLV's end, since the walk borrows what is being rewritten.
    let mut at = 0;
    loop {
        let Some(t) = walk(&area[at..]).next() else {
            break;
        };
        let t = Found {
            at: at + t.at,
            value: (at + t.value.0, at + t.value.1),
            ..t
        };
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        let flags = flag(known_len(t.kind).is_none(), UNRECOGNIZED)
            | flag(malformed(&t), MALFORMED)
            | flag(!trusted, INTEGRITY_FAILED);
        let flags = if flags == 0 {
            fill(area, &t, info)
        } else {
            flags
        };
        area[t.at] = (area[t.at] & !UNRECOGNIZED) | flags;
        marks.count(area[t.at]);
        if !t.complete {
            break;
        }
        at = t.value.1;
    }
    if let (Some((t, true)), Some(key)) = (hmac, key) {
        let tag = key.tag_of(&[&reply_seq.to_be_bytes(), &area[..t.at]]);
        area[t.value.0..t.value.1].copy_from_slice(&tag);
    }
    marks
}

/// Fills the reflector fields of a well-formed TLV of a known type.
/// Returns U for a TLV it cannot fill in after all (a Class of Service without the TOS the packet
/// arrived with, a Direct Measurement without the session's counts).
fn fill(area: &mut [u8], t: &Found, info: &ReflectorInfo) -> u8 {
    let value = &mut area[t.value.0..t.value.1];
    match t.kind {
        EXTRA_PADDING | HMAC => {}
        TIMESTAMP_INFO => {
            value[2] = info.sync;
            value[3] = info.method;
        }
        CLASS_OF_SERVICE => {
            // DSCP1 (6 bits) | DSCP2 (6) | ECN (2) | RP (2) | reserved (16). RP = 1: the reply
            // does not carry the DSCP1 asked for; it goes with the socket's.
            let Some(tos) = info.received_tos else {
                return UNRECOGNIZED;
            };
            let got = Tos::from_byte(tos);
            value[0] = (value[0] & 0xfc) | got.dscp >> 4;
            value[1] = (got.dscp & 0x0f) << 4 | got.ecn << 2 | 1;
        }
        DIRECT_MEASUREMENT => {
            if info.received == 0 {
                return UNRECOGNIZED;
            }
            value[4..8].copy_from_slice(&info.received.to_be_bytes());
            value[8..12].copy_from_slice(&info.sent.to_be_bytes());
        }
        _ => {}
    }
    0
}

/// The Class of Service TLV as a reflector returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassOfService {
    /// DSCP1: what the sender asked for the reply.
    pub asked_dscp: u8,
    /// DSCP2 and ECN: what the test packet arrived at the reflector with.
    pub received: Tos,
    /// RP: the reflector did not (or would not) answer with the DSCP asked for.
    pub reply_not_as_asked: bool,
}

/// Direct Measurement counters as a reflector returned them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectCounts {
    pub sender_sent: u32,
    pub reflector_received: u32,
    pub reflector_sent: u32,
}

/// What the TLVs of a reply say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Returned {
    pub marks: Marks,
    pub class_of_service: Option<ClassOfService>,
    pub direct: Option<DirectCounts>,
    /// The reflector's synchronisation source and timestamp method (0: not filled in).
    pub timestamp_info: Option<(u8, u8)>,
    /// An HMAC TLV came back: whether it verified (over the reply's sequence number).
    pub hmac_ok: Option<bool>,
}

/// Reads the TLVs of a reply (`area`, everything after its base packet; `seq` its sequence
/// number). Flags the reflector set and TLVs malformed as they arrived are counted; with a key,
/// nothing is read unless an HMAC TLV vouches for them.
pub fn read(area: &[u8], seq: u32, key: Option<&Key>) -> Returned {
    let mut hmac_ok = hmac_check(area, seq.to_be_bytes(), key).map(|(_, ok)| ok);
    if key.is_some() && hmac_ok.is_none() && walk(area).next().is_some() {
        // Authenticated, TLVs, and no HMAC TLV to vouch for them (RFC 8972 §4.8): stripped.
        hmac_ok = Some(false);
    }
    let mut r = Returned {
        hmac_ok,
        ..Returned::default()
    };
    for t in walk(area) {
        let bad = malformed(&t);
        r.marks.count(area[t.at] | if bad { MALFORMED } else { 0 });
        let flagged = area[t.at] & (UNRECOGNIZED | MALFORMED | INTEGRITY_FAILED) != 0;
        // Nothing is read from a TLV that is flagged, malformed, or not vouched for.
        if bad || flagged || hmac_ok == Some(false) {
            continue;
        }
        let v = &area[t.value.0..t.value.1];
        let u32_at = |i: usize| u32::from_be_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
        match t.kind {
            TIMESTAMP_INFO => r.timestamp_info = Some((v[2], v[3])),
            CLASS_OF_SERVICE => {
                r.class_of_service = Some(ClassOfService {
                    asked_dscp: v[0] >> 2,
                    received: Tos {
                        dscp: (v[0] & 3) << 4 | v[1] >> 4,
                        ecn: (v[1] >> 2) & 3,
                    },
                    reply_not_as_asked: v[1] & 3 != 0,
                })
            }
            DIRECT_MEASUREMENT => {
                r.direct = Some(DirectCounts {
                    sender_sent: u32_at(0),
                    reflector_received: u32_at(4),
                    reflector_sent: u32_at(8),
                })
            }
            _ => {}
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new(b"a STAMP TLV key!!".to_vec()).unwrap()
    }

    fn all() -> Request {
        Request {
            timestamp_info: true,
            class_of_service: Some(Tos { dscp: 46, ecn: 2 }),
            direct_measurement: true,
            padding: true,
        }
    }

    const SENDER: SenderInfo = SenderInfo {
        sent: 7,
        sync: SYNC_LOCAL,
        method: METHOD_SW_LOCAL,
    };

    const REFLECTOR: ReflectorInfo = ReflectorInfo {
        received_tos: Some(10 << 2 | 1), // DSCP 10, ECN 1
        received: 5,
        sent: 5,
        sync: SYNC_NTP,
        method: METHOD_SW_LOCAL,
    };

    #[test]
    fn the_sender_writes_each_tlv_at_its_place_and_pads_with_a_tlv() {
        let mut area = vec![0xffu8; 40];
        all().write(&mut area, &SENDER, 9, None);
        let u = UNRECOGNIZED;
        assert_eq!(
            &area[0..8],
            &[u, 3, 0, 4, 5, 2, 0, 0],
            "timestamp information"
        );
        assert_eq!(
            &area[8..16],
            &[u, 4, 0, 4, 46 << 2, 0, 0, 0],
            "class of service"
        );
        assert_eq!(&area[16..20], &[u, 5, 0, 12], "direct measurement");
        assert_eq!(&area[20..24], &7u32.to_be_bytes());
        assert_eq!(&area[24..32], &[0; 8], "reflector counters left zero");
        assert_eq!(
            &area[32..36],
            &[u, 1, 0, 4],
            "extra padding of the 4 bytes left"
        );
        assert_eq!(&area[36..], &[0; 4]);
    }

    #[test]
    fn sizes_that_leave_no_room_for_a_padding_tlv_are_refused() {
        let r = all();
        let fixed = r.fixed_len(false);
        assert_eq!(fixed, 8 + 8 + 16);
        assert!(r.fits(fixed, false).is_ok());
        assert!(r.fits(fixed + 4, false).is_ok());
        for short in [fixed - 1, fixed + 1, fixed + 3] {
            assert!(r.fits(short, false).is_err(), "{short}");
        }
        assert_eq!(r.fixed_len(true), fixed + 20, "an HMAC TLV when keyed");
        assert!(Request::default().fits(3, true).is_ok(), "no TLV: zeros");
    }

    #[test]
    fn a_reflector_fills_what_it_knows_and_the_sender_reads_it() {
        let k = key();
        let mut area = vec![0u8; all().fixed_len(true) + 10];
        all().write(&mut area, &SENDER, 9, Some(&k));
        let marks = reflect(&mut area, 9, 4, &REFLECTOR, Some(&k));
        assert_eq!(
            marks,
            Marks {
                tlvs: 5,
                ..Marks::default()
            }
        );
        let r = read(&area, 4, Some(&k));
        assert_eq!(
            r.hmac_ok,
            Some(true),
            "sealed anew over the reply's sequence"
        );
        assert_eq!(r.timestamp_info, Some((SYNC_NTP, METHOD_SW_LOCAL)));
        let cos = r.class_of_service.unwrap();
        assert_eq!(cos.asked_dscp, 46);
        assert_eq!(cos.received, Tos { dscp: 10, ecn: 1 });
        assert!(cos.reply_not_as_asked);
        let d = r.direct.unwrap();
        assert_eq!(
            (d.sender_sent, d.reflector_received, d.reflector_sent),
            (7, 5, 5)
        );
        assert_eq!(
            read(&area, 5, Some(&k)).hmac_ok,
            Some(false),
            "another sequence"
        );
    }

    #[test]
    fn a_class_of_service_without_its_tos_comes_back_unprocessed() {
        let mut area = vec![0u8; all().fixed_len(false)];
        all().write(&mut area, &SENDER, 9, None);
        let info = ReflectorInfo {
            received_tos: None,
            ..REFLECTOR
        };
        let marks = reflect(&mut area, 9, 9, &info, None);
        assert_eq!((marks.tlvs, marks.unrecognized), (3, 1));
        let r = read(&area, 9, None);
        assert_eq!(r.class_of_service, None, "not read: U set");
        assert!(
            r.direct.is_some() && r.timestamp_info.is_some(),
            "the others are"
        );
    }

    #[test]
    fn a_bad_hmac_flags_every_tlv_and_fills_none() {
        let k = key();
        let mut area = vec![0u8; all().fixed_len(true)];
        all().write(&mut area, &SENDER, 9, Some(&k));
        let marks = reflect(&mut area, 10, 10, &REFLECTOR, Some(&k));
        assert_eq!((marks.tlvs, marks.integrity_failed), (4, 4));
        let r = read(&area, 10, None);
        assert_eq!(r.marks.integrity_failed, 4);
        assert_eq!(r.direct, None, "flagged TLVs are not read");
        // No key at the reflector: it cannot verify, so it flags too.
        let mut area = vec![0u8; all().fixed_len(true)];
        all().write(&mut area, &SENDER, 9, Some(&k));
        assert_eq!(
            reflect(&mut area, 9, 9, &REFLECTOR, None).integrity_failed,
            4
        );
    }

    #[test]
    fn unknown_types_get_u_and_malformed_ones_m_and_end_the_walk() {
        // Location (2), then a Class of Service of 3 bytes, then one running past the end.
        let mut area = vec![
            0, 2, 0, 4, 1, 2, 3, 4, 0, 4, 0, 3, 9, 9, 9, 0, 5, 0, 40, 1, 2,
        ];
        let marks = reflect(&mut area, 1, 1, &REFLECTOR, None);
        assert_eq!(area[0], UNRECOGNIZED);
        assert_eq!(area[8], MALFORMED);
        assert_eq!(area[15], MALFORMED);
        assert_eq!(
            marks,
            Marks {
                tlvs: 3,
                unrecognized: 1,
                malformed: 2,
                integrity_failed: 0
            }
        );
        assert_eq!(&area[4..8], &[1, 2, 3, 4], "values of unknown TLVs copied");
        assert_eq!(read(&area, 1, None).marks, marks);
    }

    #[test]
    fn zero_padding_and_short_tails_are_no_tlvs() {
        let mut zeros = vec![0u8; 100];
        assert_eq!(
            reflect(&mut zeros, 1, 1, &REFLECTOR, None),
            Marks::default()
        );
        assert!(zeros.iter().all(|&b| b == 0));
        assert_eq!(read(&[0, 1, 0], 1, None), Returned::default());
    }
}

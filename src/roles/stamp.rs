//! The STAMP Session-Reflector (RFC 8762 §4.3): each test packet is answered in place, as long
//! as it came (never longer), with its receive time T2, its send time T3 and the TTL it arrived
//! with. T3 (and, authenticated, the HMAC over it) is sealed in by a [`Sealer`] just before a
//! batch of answers goes out, with one clock read for the batch. Stateless, it copies the sender's sequence number; stateful, it counts the packets of
//! each session (sender address and port, and SSID) in a bounded table whose idle entries are
//! swept, so a flood of spoofed sessions cannot grow memory.

use crate::model::TlvCounts;
use crate::sys::wall_clock;
use crate::wire::auth::Key;
use crate::wire::stamp::tlv::{self, Marks, ReflectorInfo};
use crate::wire::stamp::{
    self, ErrorEstimate, Mode, Reflected, Refused, TestPacket, TimeFormat, Timestamp,
};
use crate::wire::ClockQuality;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Most sessions a stateful reflector tracks; when full, idle ones are swept and a new session
/// that still finds no room is answered statelessly (its sequence number copied).
const MAX_SESSIONS: usize = 65_536;
/// A session heard from less recently than this may be swept.
const SESSION_IDLE: Duration = Duration::from_secs(60);

/// What the reflector does with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Send back this many bytes (the datagram's own length).
    Reply(usize),
    /// Not a STAMP test packet of the configured mode: no answer.
    NotStamp,
    /// Authenticated mode, and the HMAC does not check out: no answer.
    AuthFailed,
}

/// This host's clock as the kernel's discipline says (`adjtimex`); unknown reads as an
/// unsynchronised clock of no stated error.
pub(crate) fn host_clock() -> ClockQuality {
    crate::sys::clock_quality()
        .map(|(synchronized, error)| ClockQuality {
            synchronized,
            error,
        })
        .unwrap_or_default()
}

/// Where a test packet came from, and what the kernel said of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival {
    pub(crate) from: SocketAddr,
    /// T2: the kernel's receive time, since the Unix epoch, where there is one.
    pub(crate) kernel_rx: Option<Duration>,
    /// The TTL or hop limit, and the TOS or traffic class, it arrived with.
    pub(crate) ttl: Option<u8>,
    pub(crate) tos: Option<u8>,
}

impl Arrival {
    pub(crate) fn of(meta: crate::sys::RecvMeta) -> Self {
        Arrival {
            from: meta.from,
            kernel_rx: meta.kernel_rx,
            ttl: meta.ttl,
            tos: meta.tos,
        }
    }
}

struct Session {
    /// Test packets received in the session so far.
    received: u32,
    last_seen: Instant,
}

pub(crate) struct StampReflector {
    mode: Mode,
    key: Option<Key>,
    stateful: bool,
    /// This host's Error Estimate in each timestamp format (NTP, PTP): computed once.
    errors: [ErrorEstimate; 2],
    sessions: HashMap<(SocketAddr, u16), Session>,
    /// The session answered last, and its count: test packets come in runs from one sender,
    /// so the table is hashed only when the sender changes.
    last: Option<((SocketAddr, u16), u32)>,
    /// TLVs answered, and those flagged (unknown, malformed, failing their HMAC).
    pub(crate) tlv_counts: TlvCounts,
    /// This host's clock for the Timestamp Information TLV: its sync source.
    sync: u8,
    /// Whether the socket says what TOS each packet arrived with (for Class of Service TLVs).
    tos: TosReports,
}

/// The kernel's reports of each packet's TOS cost a control message on every receive, so they
/// are turned on at the first Class of Service TLV (which is returned unprocessed, U set: its
/// TOS was not reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TosReports {
    Off,
    Wanted,
    On,
    /// The socket refused them: Class of Service TLVs stay unprocessed.
    Refused,
}

impl StampReflector {
    /// Authenticated when given a key (and only signed test packets are answered).
    pub(crate) fn new(key: Option<Key>, stateful: bool, clock: ClockQuality) -> Self {
        Self {
            mode: if key.is_some() {
                Mode::Authenticated
            } else {
                Mode::Open
            },
            key,
            stateful,
            errors: [TimeFormat::Ntp, TimeFormat::Ptp]
                .map(|format| ErrorEstimate::new(clock.synchronized, format, clock.error)),
            sessions: HashMap::new(),
            last: None,
            tlv_counts: TlvCounts::default(),
            tos: TosReports::Off,
            sync: if clock.synchronized {
                tlv::SYNC_NTP
            } else {
                tlv::SYNC_LOCAL
            },
        }
    }

    /// Whether the socket should now report each packet's TOS (a Class of Service TLV came).
    pub(crate) fn wants_tos(&self) -> bool {
        self.tos == TosReports::Wanted
    }

    /// The socket was asked to report TOS: `on` says whether it does.
    pub(crate) fn tos_reports(&mut self, on: bool) {
        self.tos = if on {
            TosReports::On
        } else {
            TosReports::Refused
        };
    }

    /// What seals this reflector's answers.
    pub(crate) fn sealer(&self) -> Sealer {
        Sealer {
            mode: self.mode,
            key: self.key.clone(),
            t3: None,
        }
    }

    /// Answers `datagram` in place, as it arrived (`a`): all but T3 and the HMAC, which the
    /// [`Sealer`] writes as it goes.
    pub(crate) fn answer(&mut self, datagram: &mut [u8], a: &Arrival, now: Instant) -> Answer {
        let request = match TestPacket::decode(datagram, self.mode, self.key.as_ref()) {
            Ok(request) => request,
            Err(Refused::TooShort) => return Answer::NotStamp,
            Err(Refused::BadHmac) => return Answer::AuthFailed,
        };
        let base = self.mode.base_len();
        // Plain RFC 8762 padding (zeros) holds no TLV: the common case costs one scan.
        let has_tlvs = !tlv::is_blank(&datagram[base..]);
        let (seq, received) = self.sequence(&request, a.from, has_tlvs, now);
        if has_tlvs {
            let info = ReflectorInfo {
                received_tos: a.tos,
                received,
                sent: received,
                sync: self.sync,
                method: tlv::METHOD_SW_LOCAL,
            };
            let area = &mut datagram[base..];
            if a.tos.is_none()
                && self.tos == TosReports::Off
                && tlv::carries(area, tlv::CLASS_OF_SERVICE)
            {
                self.tos = TosReports::Wanted;
            }
            let marks = tlv::reflect(area, request.seq, seq, &info, self.key.as_ref());
            add_marks(&mut self.tlv_counts, &marks);
        }
        // Answer in the sender's own timestamp format (its Error Estimate's Z bit).
        let format = request.error.format();
        let t2 = a.kernel_rx.unwrap_or_else(wall_clock);
        Reflected {
            seq,
            // T3: sealed in just before the send.
            timestamp: Timestamp::default(),
            error: self.errors[usize::from(format == TimeFormat::Ptp)],
            ssid: request.ssid,
            receive: Timestamp::new(t2, format),
            sender_seq: request.seq,
            sender_timestamp: request.timestamp,
            sender_error: request.error,
            sender_ttl: a.ttl.unwrap_or(0),
        }
        .encode(datagram, self.mode, None);
        Answer::Reply(datagram.len())
    }

    /// The reflector's sequence number for this answer, and the test packets its session has
    /// received, this one included (0 when not counted: stateless with no TLV to need it, or
    /// no room for the session).
    fn sequence(
        &mut self,
        request: &TestPacket,
        from: SocketAddr,
        counted: bool,
        now: Instant,
    ) -> (u32, u32) {
        if !self.stateful && !counted {
            return (request.seq, 0);
        }
        let Some(before) = self.count((from, request.ssid), now) else {
            // No room for the session: answered statelessly.
            return (request.seq, 0);
        };
        let seq = if self.stateful { before } else { request.seq };
        (seq, before.wrapping_add(1))
    }

    /// Counts a test packet of session `id`: how many it had received before.
    fn count(&mut self, id: (SocketAddr, u16), now: Instant) -> Option<u32> {
        if let Some((last, received)) = self.last.as_mut() {
            if *last == id {
                let before = *received;
                *received = before.wrapping_add(1);
                return Some(before);
            }
        }
        self.park_last(now);
        if !self.sessions.contains_key(&id) && self.sessions.len() >= MAX_SESSIONS {
            self.sessions
                .retain(|_, s| now.saturating_duration_since(s.last_seen) < SESSION_IDLE);
            if self.sessions.len() >= MAX_SESSIONS {
                return None;
            }
        }
        let session = self.sessions.entry(id).or_insert(Session {
            received: 0,
            last_seen: now,
        });
        session.last_seen = now;
        let before = session.received;
        self.last = Some((id, before.wrapping_add(1)));
        Some(before)
    }

    /// Writes the cached session's count back into the table.
    fn park_last(&mut self, now: Instant) {
        if let Some((id, received)) = self.last.take() {
            if let Some(session) = self.sessions.get_mut(&id) {
                session.received = received;
                session.last_seen = now;
            }
        }
    }

    /// Sessions tracked now (stateful mode).
    #[cfg(test)]
    fn sessions(&self) -> usize {
        self.sessions.len()
    }
}

/// Writes T3 and, authenticated, the HMAC into answers as they leave: one clock read per batch,
/// taken when its first answer is sealed, right before the batch is sent (later than a read
/// per answer as each is prepared, and cheaper).
pub(crate) struct Sealer {
    mode: Mode,
    key: Option<Key>,
    /// The batch's T3 in each format (NTP, PTP), once read.
    t3: Option<[Timestamp; 2]>,
}

impl Sealer {
    /// A new batch: the next seal reads the clock.
    pub(crate) fn next_batch(&mut self) {
        self.t3 = None;
    }

    pub(crate) fn seal(&mut self, answer: &mut [u8]) {
        let t3 = *self.t3.get_or_insert_with(|| {
            let now = wall_clock();
            [TimeFormat::Ntp, TimeFormat::Ptp].map(|format| Timestamp::new(now, format))
        });
        let in_format = |format| t3[usize::from(format == TimeFormat::Ptp)];
        stamp::seal(answer, self.mode, in_format, self.key.as_ref());
    }
}

/// Adds one packet's flagged TLVs to a running count.
pub(crate) fn add_marks(counts: &mut TlvCounts, m: &Marks) {
    counts.tlvs += u64::from(m.tlvs);
    counts.unrecognized += u64::from(m.unrecognized);
    counts.malformed += u64::from(m.malformed);
    counts.integrity_failed += u64::from(m.integrity_failed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::stamp::OPEN_LEN;

    fn test_packet(seq: u32, ssid: u16, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        TestPacket {
            seq,
            timestamp: Timestamp(42),
            error: ErrorEstimate::new(false, TimeFormat::Ntp, Duration::from_micros(1)),
            ssid,
        }
        .encode(&mut buf, Mode::Open, None);
        buf
    }

    /// Answers and seals, as the echo does.
    fn answer(r: &mut StampReflector, datagram: &mut [u8], a: &Arrival) -> Answer {
        let answer = r.answer(datagram, a, Instant::now());
        if let Answer::Reply(n) = answer {
            r.sealer().seal(&mut datagram[..n]);
        }
        answer
    }

    fn from(port: u16) -> Arrival {
        Arrival {
            from: SocketAddr::from(([127, 0, 0, 1], port)),
            kernel_rx: None,
            ttl: None,
            tos: None,
        }
    }

    #[test]
    fn stateless_copies_the_sequence_and_answers_as_long_as_asked() {
        let mut r = StampReflector::new(None, false, ClockQuality::default());
        let mut p = test_packet(7, 3, 100);
        let t2 = Duration::from_secs(1_700_000_000);
        assert_eq!(
            answer(
                &mut r,
                &mut p,
                &Arrival {
                    kernel_rx: Some(t2),
                    ttl: Some(64),
                    ..from(1)
                }
            ),
            Answer::Reply(100)
        );
        let got = Reflected::decode(&p, Mode::Open, None).unwrap();
        assert_eq!(
            (got.seq, got.sender_seq, got.ssid, got.sender_ttl),
            (7, 7, 3, 64)
        );
        assert_eq!(got.sender_timestamp, Timestamp(42));
        assert_eq!(got.receive, Timestamp::new(t2, TimeFormat::Ntp));
        assert!(got.timestamp.0 >= got.receive.0, "T3 after T2");
        assert_eq!(
            answer(&mut r, &mut [0u8; OPEN_LEN - 1], &from(1)),
            Answer::NotStamp
        );
    }

    #[test]
    fn stateful_counts_each_session_on_its_own() {
        let mut r = StampReflector::new(None, true, ClockQuality::default());
        let mut seqs = Vec::new();
        for (sender_seq, port, ssid) in [(10, 1, 0), (11, 1, 0), (10, 2, 0), (13, 1, 0), (0, 1, 9)]
        {
            let mut p = test_packet(sender_seq, ssid, OPEN_LEN);
            answer(&mut r, &mut p, &from(port));
            seqs.push(Reflected::decode(&p, Mode::Open, None).unwrap().seq);
        }
        // Session (port 1, SSID 0) saw three packets: its count says so, whatever was lost.
        assert_eq!(seqs, [0, 1, 0, 2, 0]);
        assert_eq!(r.sessions(), 3);
    }

    #[test]
    fn authenticated_answers_only_signed_packets() {
        let key = Key::new(b"sixteen byte key!".to_vec()).unwrap();
        let mut r = StampReflector::new(Some(key.clone()), false, ClockQuality::default());
        let mut open = test_packet(1, 0, 112);
        assert_eq!(answer(&mut r, &mut open, &from(1)), Answer::AuthFailed);
        let mut signed = vec![0u8; 112];
        TestPacket {
            seq: 5,
            timestamp: Timestamp(1),
            error: ErrorEstimate(1),
            ssid: 0,
        }
        .encode(&mut signed, Mode::Authenticated, Some(&key));
        assert_eq!(answer(&mut r, &mut signed, &from(1)), Answer::Reply(112));
        let got = Reflected::decode(&signed, Mode::Authenticated, Some(&key)).unwrap();
        assert_eq!(got.sender_seq, 5);
    }
}

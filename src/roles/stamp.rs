//! The STAMP Session-Reflector (RFC 8762 §4.3): each test packet is answered in place, as long
//! as it came (never longer), with its receive time T2, its send time T3 and the TTL it arrived
//! with. Stateless, it copies the sender's sequence number; stateful, it counts the packets of
//! each session (sender address and port, and SSID) in a bounded table whose idle entries are
//! swept, so a flood of spoofed sessions cannot grow memory.

use crate::sys::wall_clock;
use crate::wire::auth::Key;
use crate::wire::stamp::{
    ErrorEstimate, Mode, Reflected, Refused, TestPacket, TimeFormat, Timestamp,
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

struct Session {
    next_seq: u32,
    last_seen: Instant,
}

pub(crate) struct StampReflector {
    mode: Mode,
    key: Option<Key>,
    stateful: bool,
    /// This host's Error Estimate in each timestamp format (NTP, PTP): computed once.
    errors: [ErrorEstimate; 2],
    sessions: HashMap<(SocketAddr, u16), Session>,
    /// The session answered last, and its next sequence number: test packets come in runs
    /// from one sender, so the table is hashed only when the sender changes.
    last: Option<((SocketAddr, u16), u32)>,
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
        }
    }

    /// Answers `datagram` in place. `received` is T2 (the kernel's receive time, since the Unix
    /// epoch, where there is one); `ttl` the TTL or hop limit it arrived with.
    pub(crate) fn answer(
        &mut self,
        datagram: &mut [u8],
        from: SocketAddr,
        received: Option<Duration>,
        ttl: Option<u8>,
        now: Instant,
    ) -> Answer {
        let request = match TestPacket::decode(datagram, self.mode, self.key.as_ref()) {
            Ok(request) => request,
            Err(Refused::TooShort) => return Answer::NotStamp,
            Err(Refused::BadHmac) => return Answer::AuthFailed,
        };
        let seq = self.sequence(&request, from, now);
        // Answer in the sender's own timestamp format (its Error Estimate's Z bit).
        let format = request.error.format();
        let t2 = received.unwrap_or_else(wall_clock);
        let mut reflected = Reflected {
            seq,
            timestamp: Timestamp::default(),
            error: self.errors[usize::from(format == TimeFormat::Ptp)],
            ssid: request.ssid,
            receive: Timestamp::new(t2, format),
            sender_seq: request.seq,
            sender_timestamp: request.timestamp,
            sender_error: request.error,
            sender_ttl: ttl.unwrap_or(0),
        };
        // T3 as late as the answer allows: taken last, just before the packet is sealed.
        reflected.timestamp = Timestamp::new(wall_clock(), format);
        reflected.encode(datagram, self.mode, self.key.as_ref());
        Answer::Reply(datagram.len())
    }

    /// The reflector's sequence number for this answer.
    fn sequence(&mut self, request: &TestPacket, from: SocketAddr, now: Instant) -> u32 {
        if !self.stateful {
            return request.seq;
        }
        let id = (from, request.ssid);
        if let Some((last, next)) = self.last.as_mut() {
            if *last == id {
                let seq = *next;
                *next = seq.wrapping_add(1);
                return seq;
            }
        }
        self.park_last(now);
        if !self.sessions.contains_key(&id) && self.sessions.len() >= MAX_SESSIONS {
            self.sessions
                .retain(|_, s| now.saturating_duration_since(s.last_seen) < SESSION_IDLE);
            if self.sessions.len() >= MAX_SESSIONS {
                return request.seq;
            }
        }
        let session = self.sessions.entry(id).or_insert(Session {
            next_seq: 0,
            last_seen: now,
        });
        session.last_seen = now;
        let seq = session.next_seq;
        self.last = Some((id, seq.wrapping_add(1)));
        seq
    }

    /// Writes the cached session's count back into the table.
    fn park_last(&mut self, now: Instant) {
        if let Some((id, next_seq)) = self.last.take() {
            if let Some(session) = self.sessions.get_mut(&id) {
                session.next_seq = next_seq;
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

    fn from(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn stateless_copies_the_sequence_and_answers_as_long_as_asked() {
        let mut r = StampReflector::new(None, false, ClockQuality::default());
        let mut p = test_packet(7, 3, 100);
        let t2 = Duration::from_secs(1_700_000_000);
        let now = Instant::now();
        assert_eq!(
            r.answer(&mut p, from(1), Some(t2), Some(64), now),
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
            r.answer(&mut [0u8; OPEN_LEN - 1], from(1), None, None, now),
            Answer::NotStamp
        );
    }

    #[test]
    fn stateful_counts_each_session_on_its_own() {
        let mut r = StampReflector::new(None, true, ClockQuality::default());
        let now = Instant::now();
        let mut seqs = Vec::new();
        for (sender_seq, port, ssid) in [(10, 1, 0), (11, 1, 0), (10, 2, 0), (13, 1, 0), (0, 1, 9)]
        {
            let mut p = test_packet(sender_seq, ssid, OPEN_LEN);
            r.answer(&mut p, from(port), None, None, now);
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
        let now = Instant::now();
        let mut open = test_packet(1, 0, 112);
        assert_eq!(
            r.answer(&mut open, from(1), None, None, now),
            Answer::AuthFailed
        );
        let mut signed = vec![0u8; 112];
        TestPacket {
            seq: 5,
            timestamp: Timestamp(1),
            error: ErrorEstimate(1),
            ssid: 0,
        }
        .encode(&mut signed, Mode::Authenticated, Some(&key));
        assert_eq!(
            r.answer(&mut signed, from(1), None, None, now),
            Answer::Reply(112)
        );
        let got = Reflected::decode(&signed, Mode::Authenticated, Some(&key)).unwrap();
        assert_eq!(got.sender_seq, 5);
    }
}

//! Probe formats: bytes in, typed header out. Nothing here knows sockets or clocks.
//!
//! Every format says, through [`Wire`]:
//! - how long its header is ([`Wire::header_len`]): the smallest probe;
//! - how a pinger writes a probe into a datagram ([`Wire::encode`]);
//! - what a reply says about the probe it answers ([`Wire::decode_reply`]);
//! - how a reflector answers a datagram ([`Wire::reflect`]): how many of its bytes go back, never
//!   more than arrived.
//!
//! The formats: [`sonde`] (sonde's own header, optionally signed with [`auth`]), [`text`] (the
//! same fields as printable ASCII, for servers that read text), [`sockperf`]
//! (sockperf's message header, to measure or serve sockperf's peer) and [`stamp`] (RFC 8762 test
//! packets, to measure or serve standard network gear; its reflector keeps per-session state, so
//! it answers through `roles::stamp` rather than [`Wire::reflect`]).

pub mod auth;
pub mod sockperf;
pub mod sonde;
pub mod stamp;
pub mod text;

use auth::{Key, TAG_LEN};
pub use sonde::{fill_padding, fill_padding_after, DecodeError, ProbeHeader, HEADER_LEN};
use stamp::{tlv, ErrorEstimate, Mode, Reflected, TestPacket, TimeFormat, Timestamp};
use std::time::Duration;

/// Which probe format a pinger sends and an echo understands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Wire {
    /// sonde's own header ([`ProbeHeader`]); the echo returns every datagram untouched.
    #[default]
    Sonde,
    /// sonde's header fields as printable ASCII ([`text`]), for servers that read text.
    Text,
    /// sockperf's message header ([`sockperf`]), so that sonde and sockperf can be measured
    /// against the same peer.
    Sockperf,
    /// STAMP test packets ([`stamp`]); authenticated with a key.
    Stamp(StampOptions),
}

/// What a STAMP sender puts in its test packets beyond the base packet's fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StampOptions {
    /// The timestamps' format (NTP or PTP).
    pub format: TimeFormat,
    /// The RFC 8972 TLVs of each test packet.
    pub tlvs: tlv::Request,
}

/// How the sender's clock stands, for the formats that carry wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockQuality {
    /// Synchronised to UTC by an external source (NTP, PTP).
    pub synchronized: bool,
    /// The clock's estimated error.
    pub error: Duration,
}

/// What a STAMP reflector's answer says beyond the probe it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reflection {
    /// The reflector's sequence number: a copy of ours (stateless) or its own count (stateful).
    pub seq: u32,
    /// T2 and T3, on the reflector's clock, since the Unix epoch.
    pub received: Duration,
    pub sent: Duration,
    /// The TTL or hop limit our probe arrived with.
    pub ttl: u8,
    /// Whether the reflector says its clock is synchronised.
    pub synchronized: bool,
    /// What the reply's RFC 8972 TLVs say.
    pub tlvs: tlv::Returned,
}

/// What a pinger writes at the front of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Random per run: replies to other runs are foreign.
    pub session: u64,
    pub seq: u64,
    /// Send time, ns since the run started.
    pub send_ns: u64,
    /// The run's start on the wall clock, since the Unix epoch: with `send_ns`, STAMP's T1.
    pub epoch_wall: Duration,
    pub clock: ClockQuality,
}

/// What a reply from the target says about the probe it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A reply to probe `seq` (its low [`Wire::seq_bits`] bits); `send_ns` is the send time it
    /// carries, where the format has one; `reflection` what a STAMP reflector added.
    Probe {
        seq: u64,
        send_ns: Option<u64>,
        reflection: Option<Reflection>,
    },
    /// A probe of this format, but of another run.
    OtherSession,
    /// Probe `seq` of this run, whose authentication tag does not check out.
    AuthFailed { seq: u64 },
    /// Not a reply of this format at all (the reason, for per-probe output).
    NotAReply(&'static str),
}

impl Wire {
    /// Bytes of header this format needs, signed or not: the smallest probe.
    pub fn header_len(self, signed: bool) -> usize {
        match self {
            Wire::Sonde if signed => HEADER_LEN + TAG_LEN,
            Wire::Sonde => HEADER_LEN,
            Wire::Text => text::HEADER_LEN,
            Wire::Sockperf => sockperf::HEADER_LEN,
            Wire::Stamp(o) => Self::stamp_mode(signed).base_len() + o.tlvs.fixed_len(signed),
        }
    }

    /// Whether probes of this format can be signed with a key.
    pub fn can_sign(self) -> bool {
        !matches!(self, Wire::Sockperf | Wire::Text)
    }

    /// How many low bits of the sequence number a reply carries.
    pub fn seq_bits(self) -> u32 {
        match self {
            Wire::Stamp(_) => 32,
            Wire::Sonde | Wire::Text | Wire::Sockperf => 64,
        }
    }

    /// Whether replies carry the probe's padding back untouched (a STAMP reflector's padding
    /// is its own: RFC 8762 asks only that the answer be as long).
    pub fn echoes_padding(self) -> bool {
        !matches!(self, Wire::Stamp(_))
    }

    /// Fills a probe after its header with padding the pinger checks its echo against
    /// (formats that echo padding only).
    pub fn fill_padding_after(self, buf: &mut [u8], session: u64) {
        let header_len = self.header_len(false);
        match self {
            Wire::Text => text::fill_padding_after(buf, header_len, session),
            _ => fill_padding_after(buf, header_len, session),
        }
    }

    fn stamp_mode(signed: bool) -> Mode {
        if signed {
            Mode::Authenticated
        } else {
            Mode::Open
        }
    }

    /// The STAMP SSID (RFC 8972) of a run: from its session id, never 0 (which a reflector
    /// without SSID support answers with).
    fn ssid(session: u64) -> u16 {
        (session as u16) | 1
    }

    /// Writes `probe`'s header at the front of `buf` (the whole datagram), signed with `key`
    /// where the format allows it.
    #[inline]
    pub fn encode(self, buf: &mut [u8], probe: &Probe, key: Option<&Key>) {
        match self {
            Wire::Sonde => {
                ProbeHeader {
                    session: probe.session,
                    seq: probe.seq,
                    send_ns: probe.send_ns,
                }
                .encode(buf);
                if let Some(key) = key {
                    key.sign(buf);
                }
            }
            Wire::Text => text::encode(
                &ProbeHeader {
                    session: probe.session,
                    seq: probe.seq,
                    send_ns: probe.send_ns,
                },
                buf,
            ),
            Wire::Sockperf => sockperf::Header {
                seq: probe.seq,
                flags: sockperf::FLAG_CLIENT | sockperf::FLAG_PONG_REQUEST,
                length: buf.len() as u32,
            }
            .encode(buf),
            Wire::Stamp(options) => Self::encode_stamp(buf, probe, options, key),
        }
    }

    fn encode_stamp(buf: &mut [u8], probe: &Probe, options: StampOptions, key: Option<&Key>) {
        let (mode, format, seq) = (Self::stamp_mode(key.is_some()), options.format, probe.seq);
        TestPacket {
            seq: seq as u32,
            timestamp: Timestamp::new(
                probe.epoch_wall + Duration::from_nanos(probe.send_ns),
                format,
            ),
            error: ErrorEstimate::new(probe.clock.synchronized, format, probe.clock.error),
            ssid: Self::ssid(probe.session),
        }
        .encode(buf, mode, key);
        let info = tlv::SenderInfo {
            sent: (seq as u32).wrapping_add(1),
            sync: if probe.clock.synchronized {
                tlv::SYNC_NTP
            } else {
                tlv::SYNC_LOCAL
            },
            method: tlv::METHOD_SW_LOCAL,
        };
        let area = &mut buf[mode.base_len()..];
        options.tlvs.write(area, &info, seq as u32, key);
    }

    /// Reads a reply to one of run `session`'s probes; with `key`, only signed replies count.
    #[inline]
    pub fn decode_reply(self, data: &[u8], session: u64, key: Option<&Key>) -> Reply {
        match self {
            Wire::Sonde => {
                let Ok(header) = ProbeHeader::decode(data) else {
                    return Reply::NotAReply("not a sonde probe");
                };
                if header.session != session {
                    return Reply::OtherSession;
                }
                if key.is_some_and(|key| !key.verify(data)) {
                    return Reply::AuthFailed { seq: header.seq };
                }
                Reply::Probe {
                    seq: header.seq,
                    send_ns: Some(header.send_ns),
                    reflection: None,
                }
            }
            Wire::Text => match text::decode(data) {
                Some(h) if h.session != session => Reply::OtherSession,
                Some(h) => Reply::Probe {
                    seq: h.seq,
                    send_ns: Some(h.send_ns),
                    reflection: None,
                },
                None => Reply::NotAReply("not a sonde text probe"),
            },
            Wire::Sockperf => match sockperf::Header::decode(data) {
                Some(h)
                    if h.flags & sockperf::FLAG_CLIENT == 0
                        && h.flags & sockperf::FLAG_PONG_REQUEST != 0 =>
                {
                    Reply::Probe {
                        seq: h.seq,
                        send_ns: None,
                        reflection: None,
                    }
                }
                _ => Reply::NotAReply("not a sockperf reply"),
            },
            Wire::Stamp(_) => Self::decode_stamp(data, session, key),
        }
    }

    fn decode_stamp(data: &[u8], session: u64, key: Option<&Key>) -> Reply {
        let mode = Self::stamp_mode(key.is_some());
        let r = match Reflected::decode(data, mode, key) {
            Ok(r) => r,
            Err(stamp::Refused::TooShort) => return Reply::NotAReply("not a STAMP reply"),
            Err(stamp::Refused::BadHmac) => return Reply::NotAReply("authentication failed"),
        };
        if r.ssid != 0 && r.ssid != Self::ssid(session) {
            return Reply::OtherSession;
        }
        // The reflector stamps in the format it says (its Z bit); a time that is none is 0.
        let format = r.error.format();
        let time = |t: Timestamp| t.since_unix(format).unwrap_or_default();
        let area = &data[mode.base_len()..];
        // Plain RFC 8762 padding (zeros, or nothing) holds no TLV: one scan, not a walk.
        let tlvs = if tlv::is_blank(area) {
            tlv::Returned::default()
        } else {
            tlv::read(area, r.seq, key)
        };
        Reply::Probe {
            seq: u64::from(r.sender_seq),
            send_ns: None,
            reflection: Some(Reflection {
                seq: r.seq,
                received: time(r.receive),
                sent: time(r.timestamp),
                ttl: r.sender_ttl,
                synchronized: r.error.synchronized(),
                tlvs,
            }),
        }
    }

    /// How a stateless reflector answers `datagram`: `Some(n)` sends back its first `n` bytes
    /// (after any rewrite in place), `None` stays silent. Never more than arrived. (STAMP's
    /// reflector needs times and session state: `None` here.)
    pub fn reflect(self, datagram: &mut [u8]) -> Option<usize> {
        match self {
            Wire::Sonde | Wire::Text => Some(datagram.len()),
            Wire::Sockperf => sockperf::server_reply(datagram),
            Wire::Stamp(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_decodes_what_it_encodes() {
        let probe = Probe {
            session: 42,
            seq: 7,
            send_ns: 1_000,
            epoch_wall: Duration::ZERO,
            clock: ClockQuality::default(),
        };
        for wire in [Wire::Sonde, Wire::Text, Wire::Sockperf] {
            let mut buf = vec![0u8; 64];
            wire.encode(&mut buf, &probe, None);
            // What a reflector of the same format sends back is what the pinger reads.
            let n = wire.reflect(&mut buf).expect("a probe is answered");
            let got = wire.decode_reply(&buf[..n], 42, None);
            let send_ns = (wire != Wire::Sockperf).then_some(1_000);
            let want = Reply::Probe {
                seq: 7,
                send_ns,
                reflection: None,
            };
            assert_eq!(got, want, "{wire:?}");
        }
    }

    #[test]
    fn replies_of_other_runs_and_other_formats_are_told_apart() {
        let mut buf = vec![0u8; 64];
        let probe = Probe {
            session: 1,
            seq: 0,
            send_ns: 0,
            epoch_wall: Duration::ZERO,
            clock: ClockQuality::default(),
        };
        Wire::Sonde.encode(&mut buf, &probe, None);
        assert_eq!(Wire::Sonde.decode_reply(&buf, 2, None), Reply::OtherSession);
        assert!(matches!(
            Wire::Sonde.decode_reply(b"hello", 1, None),
            Reply::NotAReply(_)
        ));
        // A sockperf probe (client flag still set) is not a sockperf reply.
        Wire::Sockperf.encode(&mut buf, &probe, None);
        assert!(matches!(
            Wire::Sockperf.decode_reply(&buf, 1, None),
            Reply::NotAReply(_)
        ));
    }

    #[test]
    fn a_signed_format_refuses_an_unsigned_reply() {
        let key = Key::new(b"a key of sixteen bytes".to_vec()).unwrap();
        let probe = Probe {
            session: 1,
            seq: 3,
            send_ns: 0,
            epoch_wall: Duration::ZERO,
            clock: ClockQuality::default(),
        };
        let mut buf = vec![0u8; 64];
        Wire::Sonde.encode(&mut buf, &probe, Some(&key));
        assert!(matches!(
            Wire::Sonde.decode_reply(&buf, 1, Some(&key)),
            Reply::Probe { seq: 3, .. }
        ));
        let mut unsigned = vec![0u8; 64];
        Wire::Sonde.encode(&mut unsigned, &probe, None);
        assert_eq!(
            Wire::Sonde.decode_reply(&unsigned, 1, Some(&key)),
            Reply::AuthFailed { seq: 3 }
        );
    }
}

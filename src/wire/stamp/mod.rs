//! STAMP test packets (RFC 8762, with RFC 8972's Session-Sender Identifier): what a
//! Session-Sender sends and what a Session-Reflector answers, unauthenticated (44 bytes at least)
//! or authenticated (112 bytes, HMAC-SHA-256 truncated to 16 bytes over the first 96).
//!
//! All fields are big-endian. Each mode puts the same fields at other offsets:
//!
//! | field | sender, open | reflector, open | sender, auth | reflector, auth |
//! |---|---:|---:|---:|---:|
//! | sequence number (4) | 0 | 0 | 0 | 0 |
//! | timestamp: T1 / T3 (8) | 4 | 4 | 16 | 16 |
//! | error estimate (2) | 12 | 12 | 24 | 24 |
//! | SSID (2) | 14 | 14 | 26 | 26 |
//! | receive timestamp T2 (8) | – | 16 | – | 32 |
//! | sender's sequence number (4) | – | 24 | – | 48 |
//! | sender's timestamp T1 (8) | – | 28 | – | 64 |
//! | sender's error estimate (2) | – | 36 | – | 72 |
//! | sender's TTL (1) | – | 40 | – | 80 |
//! | HMAC (16) | – | – | 96 | 96 |
//!
//! Every other byte of the base packet is MBZ (must be zero). What follows the base packet is
//! padding or RFC 8972 TLVs ([`tlv`]).

pub mod tlv;

use super::auth::{Key, TAG_LEN};
use std::time::Duration;

/// The port a STAMP reflector listens on unless told otherwise.
pub const PORT: u16 = 862;
/// The base packet of each mode, in bytes: the smallest test packet.
pub const OPEN_LEN: usize = 44;
pub const AUTH_LEN: usize = 112;
/// Where the HMAC sits in an authenticated packet; it covers every byte before it.
pub const HMAC_AT: usize = 96;
/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Unauthenticated or authenticated test packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Open,
    Authenticated,
}

/// Field offsets of one mode (see the module's table).
struct Layout {
    len: usize,
    timestamp: usize,
    error: usize,
    ssid: usize,
    receive: usize,
    sender_seq: usize,
    sender_timestamp: usize,
    sender_error: usize,
    sender_ttl: usize,
}

const OPEN: Layout = Layout {
    len: OPEN_LEN,
    timestamp: 4,
    error: 12,
    ssid: 14,
    receive: 16,
    sender_seq: 24,
    sender_timestamp: 28,
    sender_error: 36,
    sender_ttl: 40,
};

const AUTH: Layout = Layout {
    len: AUTH_LEN,
    timestamp: 16,
    error: 24,
    ssid: 26,
    receive: 32,
    sender_seq: 48,
    sender_timestamp: 64,
    sender_error: 72,
    sender_ttl: 80,
};

impl Mode {
    /// The base packet's length: the smallest test packet of this mode.
    pub fn base_len(self) -> usize {
        self.layout().len
    }

    fn layout(self) -> &'static Layout {
        match self {
            Mode::Open => &OPEN,
            Mode::Authenticated => &AUTH,
        }
    }
}

/// How timestamps are written: NTP's 64-bit format (the default) or PTPv2's truncated one (the
/// error estimate's Z bit says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeFormat {
    #[default]
    Ntp,
    Ptp,
}

/// A timestamp as the wire carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// `since_unix` (wall-clock time since the Unix epoch) in `format`. PTP counts TAI seconds;
    /// the host clock's UTC is written as it is (the 37 s offset is the reader's to know).
    pub fn new(since_unix: Duration, format: TimeFormat) -> Self {
        let secs = since_unix.as_secs();
        let nanos = u64::from(since_unix.subsec_nanos());
        match format {
            TimeFormat::Ntp => {
                let fraction = (nanos << 32) / 1_000_000_000;
                let seconds = (secs + NTP_UNIX_OFFSET) & 0xffff_ffff;
                Timestamp(seconds << 32 | fraction)
            }
            TimeFormat::Ptp => Timestamp((secs & 0xffff_ffff) << 32 | nanos),
        }
    }

    /// Time since the Unix epoch, or `None` for a value that is not a time in `format` (a PTP
    /// nanosecond field of a second or more; an NTP time before 1970, era 0).
    pub fn since_unix(self, format: TimeFormat) -> Option<Duration> {
        let (seconds, low) = (self.0 >> 32, self.0 & 0xffff_ffff);
        match format {
            TimeFormat::Ntp => {
                let nanos = (low * 1_000_000_000 + (1 << 31)) >> 32;
                let secs = seconds.checked_sub(NTP_UNIX_OFFSET)?;
                Some(Duration::new(secs, 0) + Duration::from_nanos(nanos))
            }
            TimeFormat::Ptp if low < 1_000_000_000 => Some(Duration::new(seconds, low as u32)),
            TimeFormat::Ptp => None,
        }
    }
}

/// The Error Estimate (RFC 4656 §4.1.2): S (the clock is synchronised to UTC), Z (PTP format),
/// and the error as Multiplier × 2^(Scale − 32) seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorEstimate(pub u16);

impl ErrorEstimate {
    const S: u16 = 1 << 15;
    const Z: u16 = 1 << 14;

    /// An estimate of at least `error` (rounded up to the format's precision; Multiplier is
    /// never 0).
    pub fn new(synchronized: bool, format: TimeFormat, error: Duration) -> Self {
        // error = m × 2^(scale − 32) s, m in 1..=255: the smallest scale that fits.
        let units = (error.as_secs_f64() * 2f64.powi(32)).max(1.0);
        let mut scale = 0u16;
        while scale < 63 && units / 2f64.powi(i32::from(scale)) > 255.0 {
            scale += 1;
        }
        let multiplier = (units / 2f64.powi(i32::from(scale)))
            .ceil()
            .clamp(1.0, 255.0) as u16;
        let mut bits = scale << 8 | multiplier;
        if synchronized {
            bits |= Self::S;
        }
        if format == TimeFormat::Ptp {
            bits |= Self::Z;
        }
        ErrorEstimate(bits)
    }

    pub fn synchronized(self) -> bool {
        self.0 & Self::S != 0
    }

    pub fn format(self) -> TimeFormat {
        if self.0 & Self::Z != 0 {
            TimeFormat::Ptp
        } else {
            TimeFormat::Ntp
        }
    }

    /// The error it states (`None` with a Multiplier of 0, which RFC 4656 forbids).
    pub fn error(self) -> Option<Duration> {
        let scale = i32::from((self.0 >> 8) & 0x3f);
        let multiplier = f64::from(self.0 & 0xff);
        (multiplier > 0.0).then(|| Duration::from_secs_f64(multiplier * 2f64.powi(scale - 32)))
    }
}

/// What a Session-Sender puts in a test packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestPacket {
    pub seq: u32,
    /// T1: when it was sent.
    pub timestamp: Timestamp,
    pub error: ErrorEstimate,
    /// Session-Sender Identifier (RFC 8972); 0 where unused.
    pub ssid: u16,
}

/// What a Session-Reflector puts in its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reflected {
    /// A stateless reflector's copy of the sender's sequence number, or a stateful one's own
    /// count of the packets it received in the session.
    pub seq: u32,
    /// T3: when the answer was sent.
    pub timestamp: Timestamp,
    pub error: ErrorEstimate,
    pub ssid: u16,
    /// T2: when the test packet was received.
    pub receive: Timestamp,
    pub sender_seq: u32,
    /// T1, as the test packet carried it.
    pub sender_timestamp: Timestamp,
    pub sender_error: ErrorEstimate,
    /// The TTL (IPv4) or hop limit (IPv6) the test packet arrived with.
    pub sender_ttl: u8,
}

/// Why a datagram is not a STAMP packet of the expected mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Shorter than the mode's base packet.
    TooShort,
    /// Authenticated, and the HMAC does not check out (or no key to check it with).
    BadHmac,
}

/// Writes `bytes` at `at` of a base packet.
fn put(base: &mut [u8], at: usize, bytes: &[u8]) {
    base[at..at + bytes.len()].copy_from_slice(bytes);
}

fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// Checks the length and, authenticated, the HMAC of the base packet at the front of `buf`.
fn check(buf: &[u8], mode: Mode, key: Option<&Key>) -> Result<&'static Layout, Refused> {
    let layout = mode.layout();
    if buf.len() < layout.len {
        return Err(Refused::TooShort);
    }
    if mode == Mode::Authenticated && !key.is_some_and(|k| k.verify_first(buf, HMAC_AT)) {
        return Err(Refused::BadHmac);
    }
    Ok(layout)
}

/// Writes a base packet at the front of `buf` (what follows, padding or TLVs, untouched): every
/// byte up to the HMAC zeroed (MBZ), then the four fields both directions carry, then `rest`'s;
/// authenticated and with a key, sealed. The base's length is a constant of each mode, so the
/// zeroing and the field writes compile to plain stores.
fn write_base(
    buf: &mut [u8],
    mode: Mode,
    key: Option<&Key>,
    head: (u32, Timestamp, ErrorEstimate, u16),
    rest: impl FnOnce(&mut [u8], &Layout),
) {
    fn fill<const N: usize>(buf: &mut [u8]) -> &mut [u8] {
        let base: &mut [u8; N] = (&mut buf[..N]).try_into().expect("N bytes");
        *base = [0; N];
        base
    }
    let (base, l) = match mode {
        Mode::Open => (fill::<OPEN_LEN>(buf), &OPEN),
        Mode::Authenticated => (fill::<HMAC_AT>(buf), &AUTH),
    };
    let (seq, timestamp, error, ssid) = head;
    put(base, 0, &seq.to_be_bytes());
    put(base, l.timestamp, &timestamp.0.to_be_bytes());
    put(base, l.error, &error.0.to_be_bytes());
    put(base, l.ssid, &ssid.to_be_bytes());
    rest(base, l);
    if let (Mode::Authenticated, Some(key)) = (mode, key) {
        key.sign_first(buf, HMAC_AT);
    }
}

impl TestPacket {
    /// Writes the base packet at the front of `buf` (its MBZ bytes zeroed; the rest of `buf`,
    /// padding or TLVs, untouched), sealed with `key` in authenticated mode.
    ///
    /// # Panics
    /// If `buf` is shorter than the mode's base packet; callers size it from a checked config.
    pub fn encode(&self, buf: &mut [u8], mode: Mode, key: Option<&Key>) {
        let head = (self.seq, self.timestamp, self.error, self.ssid);
        write_base(buf, mode, key, head, |_, _| {});
    }

    /// Reads the test packet at the front of `buf`; authenticated, only with a valid HMAC.
    pub fn decode(buf: &[u8], mode: Mode, key: Option<&Key>) -> Result<Self, Refused> {
        let l = check(buf, mode, key)?;
        Ok(TestPacket {
            seq: read_u32(buf, 0),
            timestamp: Timestamp(read_u64(buf, l.timestamp)),
            error: ErrorEstimate(read_u16(buf, l.error)),
            ssid: read_u16(buf, l.ssid),
        })
    }
}

impl Reflected {
    /// Writes the base packet at the front of `buf` (MBZ zeroed, what follows untouched), sealed
    /// with `key` in authenticated mode. A reflector answers in place: decode the test packet,
    /// then write this over it.
    ///
    /// # Panics
    /// If `buf` is shorter than the mode's base packet.
    pub fn encode(&self, buf: &mut [u8], mode: Mode, key: Option<&Key>) {
        let head = (self.seq, self.timestamp, self.error, self.ssid);
        write_base(buf, mode, key, head, |base, l| {
            put(base, l.receive, &self.receive.0.to_be_bytes());
            put(base, l.sender_seq, &self.sender_seq.to_be_bytes());
            put(
                base,
                l.sender_timestamp,
                &self.sender_timestamp.0.to_be_bytes(),
            );
            put(base, l.sender_error, &self.sender_error.0.to_be_bytes());
            base[l.sender_ttl] = self.sender_ttl;
        });
    }

    /// Reads the reflected packet at the front of `buf`; authenticated, only with a valid HMAC.
    pub fn decode(buf: &[u8], mode: Mode, key: Option<&Key>) -> Result<Self, Refused> {
        let l = check(buf, mode, key)?;
        Ok(Reflected {
            seq: read_u32(buf, 0),
            timestamp: Timestamp(read_u64(buf, l.timestamp)),
            error: ErrorEstimate(read_u16(buf, l.error)),
            ssid: read_u16(buf, l.ssid),
            receive: Timestamp(read_u64(buf, l.receive)),
            sender_seq: read_u32(buf, l.sender_seq),
            sender_timestamp: Timestamp(read_u64(buf, l.sender_timestamp)),
            sender_error: ErrorEstimate(read_u16(buf, l.sender_error)),
            sender_ttl: buf[l.sender_ttl],
        })
    }
}

/// The last touches of a reflected packet, just before it is sent: T3 (`t3` in the format its
/// Error Estimate's Z bit names) and, authenticated, the HMAC over it all. Everything else was
/// written by [`Reflected::encode`] (without a key: the HMAC must cover T3).
pub fn seal(buf: &mut [u8], mode: Mode, t3: impl Fn(TimeFormat) -> Timestamp, key: Option<&Key>) {
    let l = mode.layout();
    let t3 = t3(ErrorEstimate(read_u16(buf, l.error)).format());
    buf[l.timestamp..l.timestamp + 8].copy_from_slice(&t3.0.to_be_bytes());
    if let (Mode::Authenticated, Some(key)) = (mode, key) {
        key.sign_first(buf, HMAC_AT);
    }
}

const _: () = assert!(HMAC_AT + TAG_LEN == AUTH_LEN);

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new(b"a shared STAMP key".to_vec()).unwrap()
    }

    const T: Duration = Duration::new(1_700_000_000, 123_456_789);

    fn reflected() -> Reflected {
        Reflected {
            seq: 9,
            timestamp: Timestamp(0x1111_2222_3333_4444),
            error: ErrorEstimate(0x8001),
            ssid: 0xabcd,
            receive: Timestamp(0x5555_6666_7777_8888),
            sender_seq: 0x0102_0304,
            sender_timestamp: Timestamp(0x99aa_bbcc_ddee_ff00),
            sender_error: ErrorEstimate(0x0203),
            sender_ttl: 63,
        }
    }

    #[test]
    fn open_reflected_fields_sit_at_the_rfc_offsets() {
        let mut buf = vec![0xffu8; 60];
        reflected().encode(&mut buf, Mode::Open, None);
        assert_eq!(&buf[0..4], &9u32.to_be_bytes());
        assert_eq!(&buf[4..12], &0x1111_2222_3333_4444u64.to_be_bytes());
        assert_eq!(&buf[12..14], &[0x80, 0x01]);
        assert_eq!(&buf[14..16], &[0xab, 0xcd]);
        assert_eq!(&buf[16..24], &0x5555_6666_7777_8888u64.to_be_bytes());
        assert_eq!(&buf[24..28], &[1, 2, 3, 4]);
        assert_eq!(&buf[28..36], &0x99aa_bbcc_ddee_ff00u64.to_be_bytes());
        assert_eq!(&buf[36..38], &[2, 3]);
        assert_eq!(&buf[38..40], &[0, 0], "MBZ");
        assert_eq!(buf[40], 63);
        assert_eq!(&buf[41..44], &[0, 0, 0], "MBZ");
        assert!(
            buf[44..].iter().all(|&b| b == 0xff),
            "padding is left alone"
        );
        assert_eq!(Reflected::decode(&buf, Mode::Open, None), Ok(reflected()));
    }

    #[test]
    fn authenticated_fields_sit_at_the_rfc_offsets_and_are_sealed() {
        let k = key();
        let mut buf = vec![0xffu8; AUTH_LEN];
        reflected().encode(&mut buf, Mode::Authenticated, Some(&k));
        assert_eq!(&buf[4..16], &[0; 12], "MBZ");
        assert_eq!(&buf[16..24], &0x1111_2222_3333_4444u64.to_be_bytes());
        assert_eq!(&buf[26..28], &[0xab, 0xcd]);
        assert_eq!(&buf[32..40], &0x5555_6666_7777_8888u64.to_be_bytes());
        assert_eq!(&buf[48..52], &[1, 2, 3, 4]);
        assert_eq!(&buf[64..72], &0x99aa_bbcc_ddee_ff00u64.to_be_bytes());
        assert_eq!(&buf[72..74], &[2, 3]);
        assert_eq!(buf[80], 63);
        assert!(k.verify_first(&buf, HMAC_AT));
        assert_eq!(
            Reflected::decode(&buf, Mode::Authenticated, Some(&k)),
            Ok(reflected())
        );
        buf[20] ^= 1;
        assert_eq!(
            Reflected::decode(&buf, Mode::Authenticated, Some(&k)),
            Err(Refused::BadHmac)
        );
        assert_eq!(
            Reflected::decode(&buf, Mode::Authenticated, None),
            Err(Refused::BadHmac),
            "no key, no trust"
        );
    }

    #[test]
    fn test_packets_round_trip_in_both_modes_and_short_ones_are_refused() {
        let p = TestPacket {
            seq: u32::MAX,
            timestamp: Timestamp::new(T, TimeFormat::Ntp),
            error: ErrorEstimate::new(false, TimeFormat::Ntp, Duration::from_micros(1)),
            ssid: 7,
        };
        let k = key();
        for (mode, key) in [(Mode::Open, None), (Mode::Authenticated, Some(&k))] {
            let mut buf = vec![0u8; mode.base_len()];
            p.encode(&mut buf, mode, key);
            assert_eq!(TestPacket::decode(&buf, mode, key), Ok(p));
            assert_eq!(
                TestPacket::decode(&buf[..mode.base_len() - 1], mode, key),
                Err(Refused::TooShort)
            );
        }
        let mut open = vec![0u8; OPEN_LEN];
        p.encode(&mut open, Mode::Open, None);
        assert_eq!(&open[0..4], &[0xff; 4]);
        assert_eq!(&open[14..16], &[0, 7]);
        assert!(open[16..].iter().all(|&b| b == 0), "MBZ");
    }

    #[test]
    fn ntp_and_ptp_timestamps_round_trip_to_the_nanosecond() {
        let ntp = Timestamp::new(T, TimeFormat::Ntp);
        assert_eq!(ntp.0 >> 32, 1_700_000_000 + 2_208_988_800);
        let back = ntp.since_unix(TimeFormat::Ntp).unwrap();
        assert!(back.abs_diff(T) <= Duration::from_nanos(1), "{back:?}");
        let ptp = Timestamp::new(T, TimeFormat::Ptp);
        assert_eq!(ptp.0, 1_700_000_000u64 << 32 | 123_456_789);
        assert_eq!(ptp.since_unix(TimeFormat::Ptp), Some(T));
        assert_eq!(Timestamp(u64::MAX).since_unix(TimeFormat::Ptp), None);
        assert_eq!(Timestamp(0).since_unix(TimeFormat::Ntp), None);
    }

    #[test]
    fn error_estimates_carry_s_z_and_an_error_no_smaller_than_asked() {
        for asked in [
            Duration::from_nanos(1),
            Duration::from_micros(3),
            Duration::from_secs(2),
        ] {
            let e = ErrorEstimate::new(true, TimeFormat::Ptp, asked);
            assert!(e.synchronized());
            assert_eq!(e.format(), TimeFormat::Ptp);
            let error = e.error().unwrap();
            assert!(
                error >= asked && error <= asked * 2 + Duration::from_nanos(1),
                "{error:?}"
            );
        }
        let e = ErrorEstimate::new(false, TimeFormat::Ntp, Duration::from_millis(1));
        assert!(!e.synchronized());
        assert_eq!(e.format(), TimeFormat::Ntp);
        assert_eq!(
            ErrorEstimate(0).error(),
            None,
            "a multiplier of 0 is no estimate"
        );
    }
}

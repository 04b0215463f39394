//! sonde's own probe header: what a pinger writes at the front of every datagram.
//!
//! The codec knows bytes, not sockets. All fields are big-endian:
//!
//! | offset | size | field     | meaning                                              |
//! |-------:|-----:|-----------|------------------------------------------------------|
//! |      0 |    4 | magic     | `b"SNDE"`: tells sonde probes from anything else      |
//! |      4 |    1 | version   | [`VERSION`]; bumped on any layout change              |
//! |      5 |    1 | flags     | reserved, sent as 0                                  |
//! |      6 |    2 | reserved  | sent as 0                                            |
//! |      8 |    8 | session   | random per run: replies to other runs are foreign    |
//! |     16 |    8 | seq       | probe sequence number, from 0                        |
//! |     24 |    8 | send_ns   | send time, ns since the run's start (monotonic)      |
//!
//! The rest of the datagram, up to `--size`, is padding whose bytes follow a per-session
//! pattern ([`fill_padding`]), so an altered reply is caught without keeping a copy of each probe.

use thiserror::Error;

/// First four bytes of every probe.
pub const MAGIC: [u8; 4] = *b"SNDE";
/// Layout version carried in byte 4.
pub const VERSION: u8 = 1;
/// Bytes taken by the header; the smallest probe.
pub const HEADER_LEN: usize = 32;

const MAGIC_AT: usize = 0;
const VERSION_AT: usize = 4;
const SESSION_AT: usize = 8;
const SEQ_AT: usize = 16;
const SEND_NS_AT: usize = 24;

/// The decoded header of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeHeader {
    pub session: u64,
    pub seq: u64,
    pub send_ns: u64,
}

/// Why a datagram is not a sonde probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("{0} bytes is shorter than the {HEADER_LEN}-byte probe header")]
    TooShort(usize),
    #[error("wrong magic")]
    BadMagic,
    #[error("unsupported probe version {0}")]
    BadVersion(u8),
}

impl ProbeHeader {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`HEADER_LEN`]; callers size their buffers from validated config.
    pub fn encode(&self, buf: &mut [u8]) {
        let buf = &mut buf[..HEADER_LEN];
        buf[MAGIC_AT..MAGIC_AT + 4].copy_from_slice(&MAGIC);
        buf[VERSION_AT] = VERSION;
        buf[VERSION_AT + 1..SESSION_AT].fill(0);
        buf[SESSION_AT..SEQ_AT].copy_from_slice(&self.session.to_be_bytes());
        buf[SEQ_AT..SEND_NS_AT].copy_from_slice(&self.seq.to_be_bytes());
        buf[SEND_NS_AT..HEADER_LEN].copy_from_slice(&self.send_ns.to_be_bytes());
    }

    /// Reads a header from the front of `buf`, checking magic and version.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::TooShort(buf.len()));
        }
        if buf[MAGIC_AT..MAGIC_AT + 4] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if buf[VERSION_AT] != VERSION {
            return Err(DecodeError::BadVersion(buf[VERSION_AT]));
        }
        Ok(Self {
            session: read_u64(buf, SESSION_AT),
            seq: read_u64(buf, SEQ_AT),
            send_ns: read_u64(buf, SEND_NS_AT),
        })
    }
}

fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(bytes)
}

/// Fills the padding after the header with a pattern derived from `session`.
///
/// A pinger fills one template buffer once, then rewrites only the header per probe; a reply's
/// padding is compared against the same template.
pub fn fill_padding(buf: &mut [u8], session: u64) {
    fill_padding_after(buf, HEADER_LEN, session);
}

/// [`fill_padding`] after a header of `header_len` bytes (another wire format's).
pub fn fill_padding_after(buf: &mut [u8], header_len: usize, session: u64) {
    // xorshift64*: cheap, deterministic, and never all zeros, so a zero-filled or truncated and
    // re-padded reply does not pass for an echo.
    let mut state = session | 1;
    let start = header_len.min(buf.len());
    for chunk in buf[start..].chunks_mut(8) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_be_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(len: usize, header: ProbeHeader) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        fill_padding(&mut buf, header.session);
        header.encode(&mut buf);
        buf
    }

    const H: ProbeHeader = ProbeHeader {
        session: 0x0123_4567_89ab_cdef,
        seq: u64::MAX - 1,
        send_ns: 987_654_321,
    };

    #[test]
    fn round_trip_keeps_every_field() {
        for len in [HEADER_LEN, 64, 1400, 65_507] {
            let buf = probe(len, H);
            assert_eq!(ProbeHeader::decode(&buf), Ok(H));
        }
    }

    #[test]
    fn layout_is_big_endian_at_documented_offsets() {
        let buf = probe(HEADER_LEN, H);
        assert_eq!(&buf[0..4], b"SNDE");
        assert_eq!(buf[4], VERSION);
        assert_eq!(&buf[5..8], &[0, 0, 0]);
        assert_eq!(&buf[8..16], &H.session.to_be_bytes());
        assert_eq!(&buf[16..24], &H.seq.to_be_bytes());
        assert_eq!(&buf[24..32], &H.send_ns.to_be_bytes());
    }

    #[test]
    fn rejects_short_datagrams() {
        let buf = probe(HEADER_LEN, H);
        for len in 0..HEADER_LEN {
            assert_eq!(
                ProbeHeader::decode(&buf[..len]),
                Err(DecodeError::TooShort(len))
            );
        }
    }

    #[test]
    fn rejects_wrong_magic_and_version() {
        let mut buf = probe(64, H);
        buf[0] = b'X';
        assert_eq!(ProbeHeader::decode(&buf), Err(DecodeError::BadMagic));
        let mut buf = probe(64, H);
        buf[4] = VERSION + 1;
        assert_eq!(
            ProbeHeader::decode(&buf),
            Err(DecodeError::BadVersion(VERSION + 1))
        );
    }

    #[test]
    fn padding_depends_on_session_and_is_not_constant() {
        let mut a = vec![0u8; 256];
        let mut b = vec![0u8; 256];
        fill_padding(&mut a, 1);
        fill_padding(&mut b, 2);
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
        assert!(a[HEADER_LEN..].iter().any(|&x| x != a[HEADER_LEN]));
        // Filling leaves the header area alone.
        assert!(a[..HEADER_LEN].iter().all(|&x| x == 0));
    }

    #[test]
    fn padding_handles_lengths_not_multiple_of_eight() {
        let mut buf = vec![0u8; HEADER_LEN + 5];
        fill_padding(&mut buf, 7);
        let mut longer = vec![0u8; HEADER_LEN + 16];
        fill_padding(&mut longer, 7);
        assert_eq!(buf[HEADER_LEN..], longer[HEADER_LEN..HEADER_LEN + 5]);
        let mut tiny = vec![0u8; 3];
        fill_padding(&mut tiny, 7); // shorter than a header: nothing to pad, no panic
    }
}

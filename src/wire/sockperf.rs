//! sockperf's UDP message header, as its `MsgHeader` lays it out: 14 bytes in network order,
//! a 64-bit sequence number, 16 bits of flags, and the 32-bit length of the whole message.
//!
//! A sockperf server ignores messages without the client flag and warm-up messages, and answers
//! a pong request with the same message, client flag cleared.
pub const HEADER_LEN: usize = 14;
pub const FLAG_CLIENT: u16 = 1;
pub const FLAG_PONG_REQUEST: u16 = 2;
pub const FLAG_WARMUP: u16 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    pub flags: u16,
    pub length: u32,
}

impl Header {
    pub fn encode(&self, buf: &mut [u8]) {
        buf[0..8].copy_from_slice(&self.seq.to_be_bytes());
        buf[8..10].copy_from_slice(&self.flags.to_be_bytes());
        buf[10..14].copy_from_slice(&self.length.to_be_bytes());
    }

    pub fn decode(buf: &[u8]) -> Option<Header> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        Some(Header {
            seq: u64::from_be_bytes(buf[0..8].try_into().ok()?),
            flags: u16::from_be_bytes(buf[8..10].try_into().ok()?),
            length: u32::from_be_bytes(buf[10..14].try_into().ok()?),
        })
    }
}

/// What a sockperf server does with `datagram`: `Some(n)` to send back its first `n`
/// bytes (after clearing the client flag in place), `None` to stay silent. Never more than
/// arrived.
pub fn server_reply(datagram: &mut [u8]) -> Option<usize> {
    let mut h = Header::decode(datagram)?;
    let wanted = h.flags & FLAG_CLIENT != 0
        && h.flags & FLAG_WARMUP == 0
        && h.flags & FLAG_PONG_REQUEST != 0;
    if !wanted {
        return None;
    }
    h.flags &= !FLAG_CLIENT;
    h.encode(datagram);
    Some((h.length as usize).clamp(HEADER_LEN, datagram.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(flags: u16, len: usize) -> Vec<u8> {
        let mut m = vec![0xAB; len];
        Header {
            seq: 7,
            flags,
            length: len as u32,
        }
        .encode(&mut m);
        m
    }

    #[test]
    fn layout_matches_sockperf() {
        let m = message(FLAG_CLIENT | FLAG_PONG_REQUEST, 64);
        assert_eq!(&m[..14], &[0, 0, 0, 0, 0, 0, 0, 7, 0, 3, 0, 0, 0, 64]);
    }

    #[test]
    fn server_answers_pong_requests_only() {
        let mut m = message(FLAG_CLIENT | FLAG_PONG_REQUEST, 64);
        assert_eq!(server_reply(&mut m), Some(64));
        assert_eq!(Header::decode(&m).unwrap().flags, FLAG_PONG_REQUEST);
        assert_eq!(server_reply(&mut message(FLAG_CLIENT, 64)), None);
        assert_eq!(
            server_reply(&mut message(FLAG_PONG_REQUEST, 64)),
            None,
            "not a client"
        );
        let warm = FLAG_CLIENT | FLAG_PONG_REQUEST | FLAG_WARMUP;
        assert_eq!(server_reply(&mut message(warm, 64)), None);
        assert_eq!(server_reply(&mut [1, 2, 3]), None);
    }

    #[test]
    fn reply_never_exceeds_what_arrived() {
        let mut m = message(FLAG_CLIENT | FLAG_PONG_REQUEST, 64);
        m[10..14].copy_from_slice(&100_000u32.to_be_bytes());
        assert_eq!(server_reply(&mut m), Some(64));
    }
}

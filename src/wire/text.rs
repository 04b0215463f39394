//! A probe of printable ASCII only (`--wire text`), for servers that treat datagrams as text:
//! the classic exercise's server decodes each datagram as UTF-8, and binary probes crash it.
//!
//! The header is one line, `sonde SESSION SEQ SEND_NS\n`, each number 16 lowercase hex digits
//! (57 bytes); the padding after it is letters drawn from the session, so that an altered echo is
//! told from a faithful one as with sonde's own format.

use super::ProbeHeader;

/// `sonde ` and three 16-digit numbers, space-separated, ending in a newline.
pub const HEADER_LEN: usize = MAGIC.len() + 3 * 17;
const MAGIC: &[u8] = b"sonde ";

/// Writes `h` as text at the front of `buf` (at least [`HEADER_LEN`] bytes).
pub fn encode(h: &ProbeHeader, buf: &mut [u8]) {
    buf[..MAGIC.len()].copy_from_slice(MAGIC);
    let fields = [h.session, h.seq, h.send_ns];
    for (i, value) in fields.into_iter().enumerate() {
        let start = MAGIC.len() + i * 17;
        write_hex(value, &mut buf[start..start + 16]);
        buf[start + 16] = if i == 2 { b'\n' } else { b' ' };
    }
}

/// Reads a text header; `None` for anything else (a server's own answer, say).
pub fn decode(buf: &[u8]) -> Option<ProbeHeader> {
    let header = buf.get(..HEADER_LEN)?;
    if !header.starts_with(MAGIC) {
        return None;
    }
    let mut fields = [0u64; 3];
    for (i, field) in fields.iter_mut().enumerate() {
        let start = MAGIC.len() + i * 17;
        let end = if i == 2 { b'\n' } else { b' ' };
        if header[start + 16] != end {
            return None;
        }
        *field = read_hex(&header[start..start + 16])?;
    }
    let [session, seq, send_ns] = fields;
    Some(ProbeHeader {
        session,
        seq,
        send_ns,
    })
}

/// Fills `buf` after `header_len` with lowercase letters drawn from `session`.
pub fn fill_padding_after(buf: &mut [u8], header_len: usize, session: u64) {
    let mut state = session | 1;
    for byte in buf.iter_mut().skip(header_len) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = b'a' + (state % 26) as u8;
    }
}

fn write_hex(value: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = DIGITS[((value >> ((15 - i) * 4)) & 0xf) as usize];
    }
}

fn read_hex(text: &[u8]) -> Option<u64> {
    text.iter().try_fold(0u64, |acc, &c| {
        let digit = (c as char)
            .to_digit(16)
            .filter(|_| !c.is_ascii_uppercase())?;
        Some(acc << 4 | u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_probe_is_printable_ascii_and_reads_back() {
        let h = ProbeHeader {
            session: 0x0123_4567_89ab_cdef,
            seq: 42,
            send_ns: u64::MAX,
        };
        let mut buf = vec![0u8; 100];
        fill_padding_after(&mut buf, HEADER_LEN, h.session);
        encode(&h, &mut buf);
        assert!(std::str::from_utf8(&buf).is_ok());
        assert!(buf
            .iter()
            .all(|&b| b == b'\n' || (b' '..=b'~').contains(&b)));
        assert!(buf.starts_with(b"sonde 0123456789abcdef 000000000000002a ffffffffffffffff\n"));
        assert_eq!(decode(&buf), Some(h));
    }

    #[test]
    fn anything_else_is_not_a_text_probe() {
        for other in [
            &b"Hello from the server"[..],
            b"sonde 0123456789abcdeg 000000000000002a ffffffffffffffff\n",
            b"sonde 0123456789ABCDEF 000000000000002a ffffffffffffffff\n",
            b"sonde 0123456789abcdef 000000000000002a ffffffffffffffff ",
            b"sonde 0123456789abcdef",
        ] {
            assert_eq!(decode(other), None, "{}", String::from_utf8_lossy(other));
        }
    }
}

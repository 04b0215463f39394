//! Optional probe authentication (`--key-file`): a probe carries an HMAC-SHA256 of its header,
//! truncated to [`TAG_LEN`] bytes, right after the header. The reflector answers only probes
//! whose tag checks out; the pinger accepts only replies whose tag does. The key never appears
//! in output: [`Key`]'s `Debug` says only that there is one.

use super::HEADER_LEN;
use crate::error::{Error, FileOp};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of the truncated HMAC carried by each probe (128 bits, as RFC 2104 §5 allows).
pub const TAG_LEN: usize = 16;
/// Shortest key accepted: half of SHA-256's output, as RFC 2104 §3 recommends at least.
pub const MIN_KEY_LEN: usize = 16;

/// A secret shared by the pinger and the reflector.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(redacted)")
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Key {
    /// A key from raw bytes (at least [`MIN_KEY_LEN`]).
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.is_empty() {
            return Err("is empty".into());
        }
        if bytes.len() < MIN_KEY_LEN {
            return Err(format!(
                "holds {} bytes; a key needs at least {MIN_KEY_LEN}",
                bytes.len()
            ));
        }
        Ok(Key(bytes))
    }

    /// Reads a key file: its bytes, less one trailing newline (so `echo secret > key` works).
    /// A file group or others can read or write is refused, as ssh refuses such a private key,
    /// unless `insecure` (`--insecure-key-file`). Errors name the flag and the path, never the
    /// content.
    pub fn load(path: &str, insecure: bool) -> Result<Self, Error> {
        let flag = "--key-file";
        let mut bytes =
            std::fs::read(path).map_err(|e| Error::file(flag, FileOp::Read, path, e))?;
        if !insecure {
            check_private(path)?;
        }
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        Key::new(bytes).map_err(|reason| Error::config(flag, format!("{path} {reason}")))
    }

    fn mac(&self, header: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(header);
        mac
    }

    /// Writes the tag of `probe`'s header after it. `probe` must hold the header and the tag.
    pub fn sign(&self, probe: &mut [u8]) {
        self.sign_first(probe, HEADER_LEN);
    }

    /// Whether `datagram` carries a valid tag of its header (compared in constant time).
    pub fn verify(&self, datagram: &[u8]) -> bool {
        self.verify_first(datagram, HEADER_LEN)
    }

    /// Writes the tag of `buf`'s first `covered` bytes right after them (another format's
    /// layout: STAMP covers 96 bytes). `buf` must hold them and the tag.
    pub fn sign_first(&self, buf: &mut [u8], covered: usize) {
        let tag = self.mac(&buf[..covered]).finalize().into_bytes();
        buf[covered..covered + TAG_LEN].copy_from_slice(&tag[..TAG_LEN]);
    }

    /// The tag of `parts` taken one after another (a format whose covered bytes are not
    /// contiguous: STAMP's HMAC TLV covers the sequence number and the TLVs before it).
    pub fn tag_of(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        let mut mac = self.mac(&[]);
        for part in parts {
            mac.update(part);
        }
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// Whether `tag` is the tag of `parts` (constant time).
    pub fn verify_parts(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut mac = self.mac(&[]);
        for part in parts {
            mac.update(part);
        }
        tag.len() == TAG_LEN && mac.verify_truncated_left(tag).is_ok()
    }

    /// Whether the tag after `datagram`'s first `covered` bytes is theirs (constant time).
    pub fn verify_first(&self, datagram: &[u8], covered: usize) -> bool {
        datagram.len() >= covered + TAG_LEN
            && self
                .mac(&datagram[..covered])
                .verify_truncated_left(&datagram[covered..covered + TAG_LEN])
                .is_ok()
    }
}

/// Refuses a key file whose mode lets group or others at it.
fn check_private(path: &str) -> Result<(), Error> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| Error::file("--key-file", FileOp::Read, path, e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::config(
                "--key-file",
                format!(
                    "{path} can be read or written by group or others (mode {:04o}): make it \
                     private (chmod 600 {path}), or accept that with --insecure-key-file",
                    mode & 0o7777
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::new(s.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn signed_probes_verify_and_any_change_fails() {
        let k = key("0123456789abcdef-secret");
        let mut probe = vec![7u8; 64];
        k.sign(&mut probe);
        assert!(k.verify(&probe));
        for i in 0..HEADER_LEN + TAG_LEN {
            let mut forged = probe.clone();
            forged[i] ^= 1;
            assert!(!k.verify(&forged), "a flip at byte {i} went unnoticed");
        }
        assert!(!key("another key of 16+ bytes").verify(&probe));
        assert!(!k.verify(&probe[..HEADER_LEN + TAG_LEN - 1]));
    }

    #[test]
    fn short_and_empty_keys_are_refused_and_never_printed() {
        assert_eq!(Key::new(Vec::new()).unwrap_err(), "is empty");
        assert!(Key::new(b"short".to_vec())
            .unwrap_err()
            .contains("at least 16"));
        assert_eq!(format!("{:?}", key("0123456789abcdef")), "Key(redacted)");
    }
}

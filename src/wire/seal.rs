//! Sealed datagrams: every datagram encrypted and authenticated with the mesh key.
//!
//! ```text
//!  0       2       3       4           8                              32           n-16   n
//!  +-------+-------+-------+-----------+------------------------------+-------------+------+
//!  | magic |version| 0x80  |  key id   | nonce: sender id | incarnation | counter | ciphertext  | tag  |
//!  +-------+-------+-------+-----------+------------------------------+-------------+------+
//! ```
//!
//! The ciphertext is a whole plain datagram (see [`crate::wire`]); bytes 0..32 are
//! authenticated as associated data. XChaCha20-Poly1305's 24-byte nonce is built from the
//! sender's identity, its incarnation and a per-process counter, so no two datagrams of the
//! mesh ever share a nonce under one key.

use crate::wire::keyring::Keyring;
use crate::wire::{MAGIC, VERSION};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Tag, XNonce};
use std::fmt;

/// The kind byte of a sealed datagram.
pub const SEALED_KIND: u8 = 0x80;
/// Bytes before the ciphertext.
pub const SEAL_HEADER_LEN: usize = 32;
/// Bytes of the authentication tag after it.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a datagram.
pub const SEAL_OVERHEAD: usize = SEAL_HEADER_LEN + TAG_LEN;

/// Why a sealed datagram was not opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Shorter than an empty sealed datagram.
    Truncated,
    /// No key of the keyring has this id.
    UnknownKey([u8; 4]),
    /// The tag does not verify: forged, corrupted, or sealed with another key.
    BadTag,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Truncated => write!(f, "sealed datagram too short"),
            OpenError::UnknownKey(id) => write!(
                f,
                "sealed with key {:02x}{:02x}{:02x}{:02x}, not in this keyring",
                id[0], id[1], id[2], id[3]
            ),
            OpenError::BadTag => write!(f, "authentication failed"),
        }
    }
}

/// Whether `bytes` look like a sealed datagram (magic, version, kind); says nothing of
/// whether it is authentic.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.len() >= 4
        && bytes[0..2] == MAGIC.to_be_bytes()
        && bytes[2] == VERSION
        && bytes[3] == SEALED_KIND
}

/// Seals in place: `buf[SEAL_HEADER_LEN..SEAL_HEADER_LEN + len]` holds the plain
/// datagram; on return `buf[..len + SEAL_OVERHEAD]` is the sealed one. `buf` must have
/// room for the tag. Returns the sealed length.
pub fn seal(
    keyring: &Keyring,
    sender: u64,
    incarnation: u64,
    counter: u64,
    buf: &mut [u8],
    len: usize,
) -> Option<usize> {
    let total = SEAL_OVERHEAD + len;
    if buf.len() < total {
        return None;
    }
    let key = keyring.primary();
    buf[0..2].copy_from_slice(&MAGIC.to_be_bytes());
    buf[2] = VERSION;
    buf[3] = SEALED_KIND;
    buf[4..8].copy_from_slice(&key.id());
    buf[8..16].copy_from_slice(&sender.to_be_bytes());
    buf[16..24].copy_from_slice(&incarnation.to_be_bytes());
    buf[24..32].copy_from_slice(&counter.to_be_bytes());
    let (head, rest) = buf.split_at_mut(SEAL_HEADER_LEN);
    let nonce = XNonce::from_slice(&head[8..32]);
    let tag = key
        .cipher()
        .encrypt_in_place_detached(nonce, head, &mut rest[..len])
        .ok()?;
    rest[len..len + TAG_LEN].copy_from_slice(&tag);
    Some(total)
}

/// What an opened datagram's clear header said about its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sealer {
    /// The sender's identity, from the nonce.
    pub sender: u64,
    /// The sender's incarnation, from the nonce.
    pub incarnation: u64,
}

/// Opens a sealed datagram into `scratch` and returns the plain datagram inside, with the
/// sender named by the (authenticated) nonce.
pub fn open<'s>(
    keyring: &Keyring,
    bytes: &[u8],
    scratch: &'s mut [u8],
) -> Result<(&'s [u8], Sealer), OpenError> {
    if bytes.len() < SEAL_OVERHEAD {
        return Err(OpenError::Truncated);
    }
    let id = [bytes[4], bytes[5], bytes[6], bytes[7]];
    let key = keyring.find(id).ok_or(OpenError::UnknownKey(id))?;
    let len = bytes.len() - SEAL_OVERHEAD;
    if scratch.len() < len {
        return Err(OpenError::Truncated);
    }
    let (head, rest) = bytes.split_at(SEAL_HEADER_LEN);
    let plain = &mut scratch[..len];
    plain.copy_from_slice(&rest[..len]);
    let tag = Tag::from_slice(&rest[len..]);
    key.cipher()
        .decrypt_in_place_detached(XNonce::from_slice(&head[8..32]), head, plain, tag)
        .map_err(|_| OpenError::BadTag)?;
    let word = |at: usize| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&head[at..at + 8]);
        u64::from_be_bytes(raw)
    };
    let sealer = Sealer {
        sender: word(8),
        incarnation: word(16),
    };
    Ok((&scratch[..len], sealer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::keyring::Key;

    fn ring(byte: u8) -> Keyring {
        Keyring::new(vec![Key::new(&[byte; 32])]).unwrap()
    }

    #[test]
    fn sealed_datagrams_open_only_with_the_key_and_unaltered() {
        let keys = ring(1);
        let mut buf = [0u8; 128];
        buf[SEAL_HEADER_LEN..SEAL_HEADER_LEN + 5].copy_from_slice(b"hello");
        let n = seal(&keys, 7, 9, 1, &mut buf, 5).unwrap();
        assert_eq!(n, 5 + SEAL_OVERHEAD);
        assert!(is_sealed(&buf[..n]));
        assert!(!buf[..n].windows(5).any(|w| w == b"hello"), "encrypted");
        let mut scratch = [0u8; 128];
        let (plain, sealer) = open(&keys, &buf[..n], &mut scratch).unwrap();
        assert_eq!(plain, b"hello");
        assert_eq!(
            sealer,
            Sealer {
                sender: 7,
                incarnation: 9
            }
        );
        // Any flipped bit, in the clear header, the ciphertext or the tag, is caught.
        for i in 0..n {
            let mut bad = buf;
            bad[i] ^= 0x01;
            let result = open(&keys, &bad[..n], &mut scratch);
            assert!(result.is_err(), "bit flip at {i} accepted");
        }
        // Another key: its id is not in the ring.
        let other = ring(2);
        assert!(matches!(
            open(&other, &buf[..n], &mut scratch),
            Err(OpenError::UnknownKey(_))
        ));
        assert_eq!(
            open(&keys, &buf[..20], &mut scratch),
            Err(OpenError::Truncated)
        );
    }

    #[test]
    fn a_second_key_opens_and_the_first_seals() {
        let old = Key::new(&[1; 32]);
        let new = Key::new(&[2; 32]);
        let both = Keyring::new(vec![new.clone(), old.clone()]).unwrap();
        let only_old = Keyring::new(vec![old]).unwrap();
        let mut buf = [0u8; 64];
        let n = seal(&only_old, 1, 1, 1, &mut buf, 0).unwrap();
        let mut scratch = [0u8; 64];
        assert!(open(&both, &buf[..n], &mut scratch).is_ok());
        seal(&both, 1, 1, 2, &mut buf, 0).unwrap();
        assert_eq!(buf[4..8], new.id());
    }
}

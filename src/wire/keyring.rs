//! The mesh keyring: the shared keys datagrams are sealed with, parsed from a key file's text.
//!
//! A key file holds one key per line, 64 hex digits (32 bytes); blank lines and lines
//! starting with `#` are ignored. Every key opens datagrams; the **first** seals what this
//! node sends. Keys rotate with no downtime, as with Serf's keyring: add the new key on
//! every node (second line), then make it first everywhere, then remove the old one, with
//! a `SIGHUP` (reload) after each step.
//!
//! This module only parses text ([`Keyring::parse`]). Reading the file (a regular file of at
//! most [`MAX_KEY_FILE_BYTES`], not readable by group or others) is the caller's: the crate
//! does it in the layer that reads the files an operator names, not here in the wire format.

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use std::fmt;
use std::path::{Path, PathBuf};

/// Bytes in a key.
pub const KEY_LEN: usize = 32;
/// Keys a keyring may hold (a rotation needs two; a few more is plenty).
pub const MAX_KEYS: usize = 8;
/// The largest key file read, in bytes (64 KiB): eight keys take 520, the rest is room for
/// comments. A larger file is refused unread (by whoever reads it).
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// One mesh key, ready to seal and open.
#[derive(Clone)]
pub struct Key {
    id: [u8; 4],
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material: only the public key id.
        write!(f, "Key({})", self.id_hex())
    }
}

impl Key {
    /// A key from its 32 bytes.
    pub fn new(bytes: &[u8; KEY_LEN]) -> Key {
        let cipher = XChaCha20Poly1305::new(bytes.into());
        // The key id on the wire is a PRF of the key (the tag of an empty message under a
        // fixed nonce), so it names the key without revealing anything about it.
        let mut empty = [0u8; 0];
        let id = cipher
            .encrypt_in_place_detached(
                XNonce::from_slice(&[0xff; 24]),
                b"peermesh key id v1",
                &mut empty,
            )
            .map(|tag| [tag[0], tag[1], tag[2], tag[3]])
            .unwrap_or([0; 4]);
        Key { id, cipher }
    }

    /// The 4-byte key id sent in clear with every sealed datagram.
    pub fn id(&self) -> [u8; 4] {
        self.id
    }

    /// The key id in hex, for logs.
    pub fn id_hex(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn cipher(&self) -> &XChaCha20Poly1305 {
        &self.cipher
    }
}

/// The keys of a node: the first seals, all open.
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Vec<Key>,
}

/// Why the text of a key file is not a keyring ([`Keyring::parse`]). Nothing is changed
/// when it is not. Each names the file as the caller labelled it; reading the file can fail
/// in other ways, which the reader of the file reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyringError {
    /// A line is not 64 hex digits.
    BadKey {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A line is the all-zero key: a placeholder, never a secret.
    ZeroKey {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// No key in the file.
    Empty(PathBuf),
    /// More than [`MAX_KEYS`] keys.
    TooMany(PathBuf),
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyringError::BadKey { file, line } => write!(
                f,
                "{}:{line}: not a key: want 64 hex digits (make one with `peermesh keygen`)",
                file.display()
            ),
            KeyringError::ZeroKey { file, line } => write!(
                f,
                "{}:{line}: the all-zero key is a placeholder, not a secret \
                 (make a key with `peermesh keygen`)",
                file.display()
            ),
            KeyringError::Empty(p) => write!(
                f,
                "keyring {}: no key in it (make one with `peermesh keygen`)",
                p.display()
            ),
            KeyringError::TooMany(p) => {
                write!(f, "keyring {}: more than {MAX_KEYS} keys", p.display())
            }
        }
    }
}

/// A parse error has no underlying cause: its message is the whole story.
impl std::error::Error for KeyringError {}

/// 64 hex digits (`[0-9a-fA-F]` only: no sign, no prefix) as 32 bytes.
fn parse_hex_key(text: &str) -> Option<[u8; KEY_LEN]> {
    let digits = text.trim().as_bytes();
    if digits.len() != KEY_LEN * 2 {
        return None;
    }
    let mut key = [0u8; KEY_LEN];
    // `char::to_digit(16)` takes `[0-9a-fA-F]` and nothing else.
    let digit = |d: u8| char::from(d).to_digit(16);
    for (byte, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = u8::try_from((digit(pair[0])? << 4) | digit(pair[1])?).ok()?;
    }
    Some(key)
}

impl Keyring {
    /// A keyring of these keys (the first seals). `None` when empty.
    pub fn new(keys: Vec<Key>) -> Option<Keyring> {
        (!keys.is_empty()).then_some(Keyring { keys })
    }

    /// Parses the text of a key file; `file` only names it in errors (nothing is read). Pure.
    pub fn parse(text: &str, file: &Path) -> Result<Keyring, KeyringError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = parse_hex_key(line).ok_or_else(|| KeyringError::BadKey {
                file: file.to_owned(),
                line: i + 1,
            })?;
            if bytes == [0; KEY_LEN] {
                return Err(KeyringError::ZeroKey {
                    file: file.to_owned(),
                    line: i + 1,
                });
            }
            if keys.len() == MAX_KEYS {
                return Err(KeyringError::TooMany(file.to_owned()));
            }
            keys.push(Key::new(&bytes));
        }
        Keyring::new(keys).ok_or_else(|| KeyringError::Empty(file.to_owned()))
    }

    /// The key that seals.
    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// The key with this id, if the keyring has it.
    pub fn find(&self, id: [u8; 4]) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// All keys, primary first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }
}

/// A new random key as 64 hex digits, from the OS's random source.
pub fn generate_hex() -> Result<String, getrandom::Error> {
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key)?;
    Ok(key.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    #[test]
    fn key_files_parse_with_comments_and_the_first_key_seals() {
        let text = format!("# mesh keys\n\n{B}\n  {A}  \n");
        let ring = Keyring::parse(&text, Path::new("k")).unwrap();
        assert_eq!(ring.keys().len(), 2);
        let b = Key::new(&parse_hex_key(B).unwrap());
        assert_eq!(ring.primary().id(), b.id());
        assert!(ring.find(b.id()).is_some());
        assert_ne!(ring.keys()[0].id(), ring.keys()[1].id());
        assert!(!format!("{ring:?}").contains(A), "never prints keys");
    }

    #[test]
    fn bad_key_files_are_refused_with_the_line() {
        let err = Keyring::parse(&format!("{A}\nnot-a-key\n"), Path::new("k")).unwrap_err();
        assert_eq!(
            err.to_string().split(':').take(2).collect::<Vec<_>>(),
            ["k", "2"]
        );
        assert!(matches!(
            Keyring::parse("# only\n", Path::new("k")),
            Err(KeyringError::Empty(_))
        ));
        let short = &A[..62];
        assert!(Keyring::parse(short, Path::new("k")).is_err());
        let many = format!("{A}\n").repeat(MAX_KEYS + 1);
        assert!(matches!(
            Keyring::parse(&many, Path::new("k")),
            Err(KeyringError::TooMany(_))
        ));
    }

    #[test]
    fn only_hex_digits_make_a_key_and_the_zero_key_is_refused() {
        // `u8::from_str_radix` would take "+0" as a digit pair.
        let plus = format!("+{}", &A[1..]);
        assert!(parse_hex_key(&plus).is_none());
        assert!(parse_hex_key(&format!("{}-1", &A[..62])).is_none());
        assert!(parse_hex_key(&A.to_uppercase()).is_some());
        assert!(matches!(
            Keyring::parse(&plus, Path::new("k")),
            Err(KeyringError::BadKey { line: 1, .. })
        ));
        let zero = "0".repeat(64);
        let err = Keyring::parse(&format!("{A}\n{zero}\n"), Path::new("k")).unwrap_err();
        assert!(
            matches!(err, KeyringError::ZeroKey { line: 2, .. }),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("k:2: the all-zero key"),
            "{err}"
        );
    }

    #[test]
    fn generated_keys_are_valid_and_differ() {
        let a = generate_hex().unwrap();
        let b = generate_hex().unwrap();
        assert_ne!(a, b);
        assert!(parse_hex_key(&a).is_some());
    }
}

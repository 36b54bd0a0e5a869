//! Reading the key file a config names: the file checks here, the parsing in
//! [`crate::wire::keyring`].
//!
//! The key file must be a regular file (a FIFO or a device is refused without blocking on
//! it), of at most [`MAX_KEY_FILE_BYTES`], that group and others may not read. Mode and type
//! are checked with `fstat` on the opened file, so they are those of what is read.

use crate::config::files::{open_regular, read_limited, ReadError};
use crate::wire::keyring::{Keyring, KeyringError, MAX_KEY_FILE_BYTES};
use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why a key file was refused. Nothing is changed when it is: a running node keeps the keys
/// it has.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be opened or read (missing, no permission, ...).
    Io {
        /// The key file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The path names something other than a regular file (a FIFO, a device, a
    /// directory). Refused without reading it.
    NotRegularFile {
        /// The key file.
        path: PathBuf,
        /// What it is instead, e.g. `"a FIFO"`.
        what: &'static str,
    },
    /// Larger than [`MAX_KEY_FILE_BYTES`].
    TooLarge {
        /// The key file.
        path: PathBuf,
        /// Its size, or `None` when it only proved too large while read.
        bytes: Option<u64>,
    },
    /// Group or others may read it.
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It is not UTF-8 text.
    NotText {
        /// The key file.
        path: PathBuf,
    },
    /// Read, but its text is not a keyring (a bad line, no key, too many keys).
    Parse(KeyringError),
}

impl KeyFileError {
    /// The key file this error is about.
    pub fn path(&self) -> &Path {
        match self {
            KeyFileError::Io { path, .. }
            | KeyFileError::NotRegularFile { path, .. }
            | KeyFileError::TooLarge { path, .. }
            | KeyFileError::Permissions { path, .. }
            | KeyFileError::NotText { path } => path,
            KeyFileError::Parse(
                KeyringError::BadKey { file, .. }
                | KeyringError::ZeroKey { file, .. }
                | KeyringError::Empty(file)
                | KeyringError::TooMany(file),
            ) => file,
        }
    }
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileError::Io { path, source } => {
                write!(f, "keyring {}: {source}", path.display())
            }
            KeyFileError::NotRegularFile { path, what } => {
                write!(f, "keyring {}: not a regular file ({what})", path.display())
            }
            KeyFileError::TooLarge {
                path,
                bytes: Some(bytes),
            } => write!(
                f,
                "keyring {}: {bytes} bytes, more than the {MAX_KEY_FILE_BYTES} a key file may have",
                path.display()
            ),
            KeyFileError::TooLarge { path, bytes: None } => write!(
                f,
                "keyring {}: more than the {MAX_KEY_FILE_BYTES} bytes a key file may have",
                path.display()
            ),
            KeyFileError::Permissions { path, mode } => write!(
                f,
                "keyring {}: mode {mode:o} lets others read the mesh key; run chmod 600 {}",
                path.display(),
                path.display()
            ),
            KeyFileError::NotText { path } => {
                write!(f, "keyring {}: not UTF-8 text", path.display())
            }
            KeyFileError::Parse(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for KeyFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyFileError::Io { source, .. } => Some(source),
            // Shown with the parse error's own message: its source is this one's.
            KeyFileError::Parse(e) => e.source(),
            _ => None,
        }
    }
}

impl From<KeyringError> for KeyFileError {
    fn from(e: KeyringError) -> KeyFileError {
        KeyFileError::Parse(e)
    }
}

/// Reads and parses the key file at `path`, refusing one that group or others may read,
/// anything but a regular file (without blocking on a FIFO), a file over
/// [`MAX_KEY_FILE_BYTES`], and text that is not a keyring. Errors name the file as `path`
/// shows it.
pub fn load_keyring(path: &Path) -> Result<Keyring, KeyFileError> {
    let refused = |e| match e {
        ReadError::Io(source) => KeyFileError::Io {
            path: path.to_owned(),
            source,
        },
        ReadError::NotRegular(what) => KeyFileError::NotRegularFile {
            path: path.to_owned(),
            what,
        },
        ReadError::TooLarge(bytes) => KeyFileError::TooLarge {
            path: path.to_owned(),
            bytes,
        },
    };
    let (file, meta) = open_regular(path).map_err(refused)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let bytes = read_limited(file, &meta, MAX_KEY_FILE_BYTES).map_err(refused)?;
    let text = String::from_utf8(bytes).map_err(|_| KeyFileError::NotText {
        path: path.to_owned(),
    })?;
    Ok(Keyring::parse(&text, path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn scratch(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("peermesh-keyfile-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_private_key_file_loads_and_every_refusal_names_the_file() {
        let dir = scratch("refusals");
        let keys = dir.join("keys");
        write(&keys, &format!("# mesh key\n{KEY}\n"), 0o600);
        assert_eq!(load_keyring(&keys).expect("loads").keys().len(), 1);

        write(&keys, &format!("{KEY}\n"), 0o640);
        let err = load_keyring(&keys).unwrap_err();
        assert!(matches!(err, KeyFileError::Permissions { mode: 0o640, .. }));
        assert!(err.to_string().contains("run chmod 600"), "{err}");
        assert!(err.source().is_none());

        write(&keys, "not a key\n", 0o600);
        let err = load_keyring(&keys).unwrap_err();
        assert!(matches!(
            err,
            KeyFileError::Parse(KeyringError::BadKey { line: 1, .. })
        ));
        assert!(
            err.source().is_none(),
            "the parse error's message is the whole story"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{}:1: not a key: want 64 hex digits (make one with `peermesh keygen`)",
                keys.display()
            )
        );

        std::fs::write(&keys, [0xff, 0xfe]).expect("write");
        assert!(matches!(
            load_keyring(&keys),
            Err(KeyFileError::NotText { .. })
        ));

        let missing = dir.join("missing");
        let err = load_keyring(&missing).unwrap_err();
        assert_eq!(err.path(), missing);
        assert!(err
            .to_string()
            .starts_with(&format!("keyring {}: ", missing.display())));
        assert!(err.source().is_some(), "the I/O error is the source");

        let err = load_keyring(&dir).unwrap_err();
        assert!(matches!(
            err,
            KeyFileError::NotRegularFile {
                what: "a directory",
                ..
            }
        ));
        for err in [err, load_keyring(&keys).unwrap_err()] {
            assert!(
                err.to_string().contains(&dir.display().to_string()),
                "{err}"
            );
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}

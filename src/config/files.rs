//! Reading the files an operator names: the config and the key file.
//!
//! Both are opened with `O_NONBLOCK` (a FIFO or a device must not hang the node in `open`)
//! and `O_NOCTTY`, then checked with `fstat` on the opened handle, so what is checked is what
//! is read (no race with a rename between a `stat` and an `open`). Anything but a regular
//! file is refused, and at most a fixed number of bytes is read, whatever the file claims.

use nix::fcntl::OFlag;
use std::fs::{File, FileType, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a file could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The OS refused (missing, no permission, ...).
    Io(io::Error),
    /// Opened, but it is not a regular file: what it is instead (`"a FIFO"`).
    NotRegular(&'static str),
    /// Longer than the limit: its size when `fstat` told, `None` when it grew while read.
    TooLarge(Option<u64>),
}

/// What a file of this type is, for messages: `"a FIFO"`, `"a directory"`, ...
pub(crate) fn describe(file_type: FileType) -> &'static str {
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
}

/// Opens `path` for reading without blocking and returns it with its `fstat`, if it is a
/// regular file.
pub(crate) fn open_regular(path: &Path) -> Result<(File, Metadata), ReadError> {
    let flags = OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
        .map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular(describe(meta.file_type())));
    }
    Ok((file, meta))
}

/// Reads a file from [`open_regular`], refusing more than `limit` bytes: by its size first,
/// then by reading at most `limit + 1` bytes (a file may grow, or lie about its size).
pub(crate) fn read_limited(file: File, meta: &Metadata, limit: u64) -> Result<Vec<u8>, ReadError> {
    if meta.len() > limit {
        return Err(ReadError::TooLarge(Some(meta.len())));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge(None));
    }
    Ok(bytes)
}

/// [`open_regular`] and [`read_limited`] in one.
pub(crate) fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let (file, meta) = open_regular(path)?;
    read_limited(file, &meta, limit)
}

/// Cuts `text` to its first `max` characters, with `…` when something was cut: for echoing
/// a value someone else wrote into a message a person reads.
pub(crate) fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => text.into(),
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text_on_a_character() {
        assert_eq!(clip("alpha", 5), "alpha");
        assert_eq!(clip("alphabet", 5), "alpha…");
        assert_eq!(clip("ééééé", 2), "éé…");
        assert_eq!(clip("", 0), "");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking_and_a_device_is_not_read() {
        let dir = std::env::temp_dir().join(format!("peermesh-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(
            read_regular(&fifo, 10),
            Err(ReadError::NotRegular("a FIFO"))
        ));
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 10),
            Err(ReadError::NotRegular("a character device"))
        ));
        assert!(matches!(
            read_regular(&dir, 10),
            Err(ReadError::NotRegular("a directory"))
        ));
        let file = dir.join("f");
        std::fs::write(&file, b"0123456789ab").unwrap();
        assert!(matches!(
            read_regular(&file, 10),
            Err(ReadError::TooLarge(Some(12)))
        ));
        assert_eq!(read_regular(&file, 12).unwrap(), b"0123456789ab");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

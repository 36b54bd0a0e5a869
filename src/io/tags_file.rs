//! `peermesh run --tags-file PATH`: this node's tags kept across restarts.
//!
//! The file is one JSON object of strings (`{"role":"db","zone":"eu-1"}`). It is read once
//! at start, where it overrides the config's `tags:` for this node, and rewritten after
//! each run-time change: written to `PATH.tmp` next to it, then renamed over `PATH`, so a
//! crash leaves the old file or the new one, never half of one. The file is small (the
//! core keeps at most 16 KiB of tags), so writing it does not hold the loop up. Without
//! `--tags-file`, run-time changes are lost when the node restarts.

use crate::config::files::{read_regular, ReadError};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

/// The largest tags file read: far more than the core's tag limit, far less than memory.
pub const MAX_TAGS_FILE: u64 = 256 * 1024;

/// Why the tags file could not be read or written.
#[derive(Debug)]
pub enum TagsFileError {
    /// It could not be read (not a regular file, too large, no permission, ...): what.
    Read(PathBuf, String),
    /// It is not a JSON object of strings (the parser's message).
    Parse(PathBuf, String),
    /// It could not be written.
    Write(PathBuf, io::Error),
}

impl fmt::Display for TagsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagsFileError::Read(p, why) => write!(f, "tags file {}: {why}", p.display()),
            TagsFileError::Parse(p, why) => write!(
                f,
                "tags file {}: not a JSON object of strings ({why}); fix or remove it",
                p.display()
            ),
            TagsFileError::Write(p, e) => write!(f, "tags file {}: cannot write: {e}", p.display()),
        }
    }
}

impl std::error::Error for TagsFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TagsFileError::Write(_, e) => Some(e),
            _ => None,
        }
    }
}

/// The tags in the file at `path`; `None` when there is no file yet.
pub fn load(path: &Path) -> Result<Option<BTreeMap<String, String>>, TagsFileError> {
    let bytes = match read_regular(path, MAX_TAGS_FILE) {
        Ok(bytes) => bytes,
        Err(ReadError::Io(e)) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(ReadError::Io(e)) => return Err(TagsFileError::Read(path.to_owned(), e.to_string())),
        Err(ReadError::NotRegular(what)) => {
            return Err(TagsFileError::Read(
                path.to_owned(),
                format!("{what}, not a regular file"),
            ))
        }
        Err(ReadError::TooLarge(_)) => {
            return Err(TagsFileError::Read(
                path.to_owned(),
                format!("more than the {MAX_TAGS_FILE} bytes a tags file may have"),
            ))
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| TagsFileError::Parse(path.to_owned(), e.to_string()))
}

/// Writes `tags` to `path` atomically (a temporary file beside it, then a rename), mode
/// 0600.
pub fn save(path: &Path, tags: &BTreeMap<String, String>) -> Result<(), TagsFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    let err = |e| TagsFileError::Write(path.to_owned(), e);
    let mut json = serde_json::to_vec(tags).map_err(|e| err(io::Error::other(e)))?;
    json.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(err)?;
    file.write_all(&json).map_err(err)?;
    file.sync_data().map_err(err)?;
    drop(file);
    std::fs::rename(&temp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_kept_across_a_save_and_a_load() {
        let dir = std::env::temp_dir().join(format!("peermesh-tags-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tags.json");
        assert!(load(&path).unwrap().is_none(), "no file yet");
        let tags: BTreeMap<String, String> = [("role".into(), "db".into())].into();
        save(&path, &tags).unwrap();
        assert_eq!(load(&path).unwrap(), Some(tags));
        assert!(!dir.join("tags.json.tmp").exists());
        std::fs::write(&path, b"[1,2]").unwrap();
        assert!(matches!(load(&path), Err(TagsFileError::Parse(..))));
        assert!(matches!(load(&dir), Err(TagsFileError::Read(..))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

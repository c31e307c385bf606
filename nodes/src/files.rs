//! Reading files a flow names (workspace files, scripted replies, cassettes) safely: only
//! regular files, never blocking at open, and bounded in size.

use std::path::Path;

/// The most a node reads of one file.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Why a file was not read.
#[derive(Debug, Clone, PartialEq)]
pub enum Unread {
    /// Not a regular file (a FIFO, socket, device or symlink), with what it is.
    Special(&'static str),
    /// Larger than the limit, with its size.
    TooLarge(u64),
}

impl std::fmt::Display for Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unread::Special(what) => f.write_str(what),
            Unread::TooLarge(size) => write!(f, "it is {size} bytes, more than this node reads"),
        }
    }
}

/// Reads a regular file of at most `max` bytes. Opened without following a symlink and
/// without blocking (a FIFO or a device swapped in after a directory listing is refused
/// at `fstat`, not waited on); at most `max + 1` bytes are read even if the file grows.
pub fn read_regular(path: &Path, max: u64) -> std::io::Result<Result<Vec<u8>, Unread>> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Err(Unread::Special("a symlink")))
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        return Ok(Err(Unread::Special(if kind.is_fifo() {
            "not a regular file (a FIFO)"
        } else if kind.is_char_device() || kind.is_block_device() {
            "not a regular file (a device)"
        } else if kind.is_socket() {
            "not a regular file (a socket)"
        } else {
            "not a regular file"
        })));
    }
    if meta.len() > max {
        return Ok(Err(Unread::TooLarge(meta.len())));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Ok(Err(Unread::TooLarge(bytes.len() as u64)));
    }
    Ok(Ok(bytes))
}

/// A file as text, through [`read_regular`]; the error says why not.
pub fn read_text(path: &Path) -> Result<String, String> {
    match read_regular(path, MAX_FILE_BYTES) {
        Ok(Ok(bytes)) => String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string()),
        Ok(Err(unread)) => Err(unread.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// `path` with `.` and `..` folded away by the letters alone (no symlink is followed, the
/// disk is not touched).
pub fn lexical(path: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

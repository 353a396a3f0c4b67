//! Local files a batch reads: the batch file itself, its prompts file, a video or images
//! sent inline. Each is a regular file (a FIFO or a device is refused without being
//! opened, so nothing blocks or reads forever), opened once, read at most one byte past
//! its cap whatever its metadata says, and, when its path was written in a batch file,
//! inside that file's directory once every symlink is resolved.

use std::fs::{FileType, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where a path came from, and so where its file may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Place {
    /// Given on the command line: any file the producer can read.
    CommandLine,
    /// Written in a batch file: inside this directory (canonical) or below it.
    Within(PathBuf),
}

/// A size cap and the setting that sets it (named in the error).
#[derive(Debug, Clone, Copy)]
pub(super) struct Cap {
    pub bytes: u64,
    pub setting: &'static str,
}

/// Why a local file was not read.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    #[error("cannot read {path:?}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path:?} is not a regular file: it is {kind}")]
    NotRegular { path: String, kind: &'static str },
    #[error(
        "{path:?} resolves to {resolved:?}, outside the batch file's directory {dir:?}; a \
         batch file may name only files in its own directory or below (give others on the \
         command line)"
    )]
    Outside {
        path: String,
        resolved: PathBuf,
        dir: PathBuf,
    },
    #[error("{path:?} is {}, over the limit of {} bytes ({})", size_text(*.size, .cap), .cap.bytes, .cap.setting)]
    TooLarge {
        path: String,
        /// The size the metadata gave, or `None` when the file grew past the cap as read.
        size: Option<u64>,
        cap: Cap,
    },
}

fn size_text(size: Option<u64>, cap: &Cap) -> String {
    match size {
        Some(n) => format!("{n} bytes"),
        None => format!("more than {} bytes", cap.bytes),
    }
}

/// The canonical directory of a batch file, which its relative paths must stay inside.
pub(super) fn batch_dir(batch_file: &Path) -> Result<PathBuf, ReadError> {
    let dir = batch_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::canonicalize(dir).map_err(|source| ReadError::Open {
        path: dir.display().to_string(),
        source,
    })
}

/// Reads the regular file at `path`, at most `cap.bytes`, refusing one outside `place`.
pub(super) fn read(path: &Path, place: &Place, cap: Cap) -> Result<Vec<u8>, ReadError> {
    let shown = path.display().to_string();
    let open_err = |source| ReadError::Open {
        path: shown.clone(),
        source,
    };
    // Looked at before opening: opening a FIFO blocks until a writer comes, and opening
    // a device can act on it.
    let meta = std::fs::metadata(path).map_err(open_err)?;
    regular(meta.file_type(), &shown)?;
    let resolved = std::fs::canonicalize(path).map_err(open_err)?;
    if let Place::Within(dir) = place {
        if !resolved.starts_with(dir) {
            return Err(ReadError::Outside {
                path: shown,
                resolved,
                dir: dir.clone(),
            });
        }
    }
    // The resolved path, opened once: O_NOFOLLOW refuses a symlink swapped in since, and
    // O_NONBLOCK keeps a FIFO swapped in from blocking the open; the handle is checked
    // again, and it is what is read.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(&resolved)
        .map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    regular(meta.file_type(), &shown)?;
    if meta.len() > cap.bytes {
        return Err(ReadError::TooLarge {
            path: shown,
            size: Some(meta.len()),
            cap,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap.bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(open_err)?;
    if bytes.len() as u64 > cap.bytes {
        return Err(ReadError::TooLarge {
            path: shown,
            size: None,
            cap,
        });
    }
    Ok(bytes)
}

fn regular(kind: FileType, shown: &str) -> Result<(), ReadError> {
    if kind.is_file() {
        return Ok(());
    }
    let kind = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(ReadError::NotRegular {
        path: shown.to_owned(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Cap = Cap {
        bytes: 8,
        setting: "limits.test",
    };

    #[test]
    fn reads_within_the_cap_and_names_the_setting_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345678").unwrap();
        assert_eq!(read(&path, &Place::CommandLine, CAP).unwrap(), b"12345678");
        std::fs::write(&path, b"123456789").unwrap();
        let e = read(&path, &Place::CommandLine, CAP).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("is 9 bytes, over the limit of 8 bytes (limits.test)"),
            "{e}"
        );
    }

    #[test]
    fn devices_and_directories_are_refused_unopened() {
        let dir = tempfile::tempdir().unwrap();
        for (path, kind) in [
            (Path::new("/dev/zero"), "a character device"),
            (dir.path(), "a directory"),
        ] {
            let e = read(path, &Place::CommandLine, CAP).unwrap_err();
            assert!(
                matches!(&e, ReadError::NotRegular { kind: k, .. } if *k == kind),
                "{e}"
            );
        }
    }

    #[test]
    fn a_batch_file_names_only_files_in_its_directory() {
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("batch");
        std::fs::create_dir_all(inside.join("sub")).unwrap();
        std::fs::write(inside.join("sub/ok"), b"x").unwrap();
        std::fs::write(root.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink("../secret", inside.join("link")).unwrap();
        std::os::unix::fs::symlink("sub/ok", inside.join("good-link")).unwrap();
        let place = Place::Within(batch_dir(&inside.join("b.toml")).unwrap());
        for ok in ["sub/ok", "good-link", "sub/../sub/ok"] {
            read(&inside.join(ok), &place, CAP).unwrap();
        }
        for bad in ["link", "../secret"] {
            let e = read(&inside.join(bad), &place, CAP).unwrap_err();
            assert!(matches!(e, ReadError::Outside { .. }), "{bad}: {e}");
        }
        // The same files given on the command line are read.
        read(&inside.join("link"), &Place::CommandLine, CAP).unwrap();
    }
}

//! Where `finalize` writes the dataset, and how it gets there without harming what stands at the
//! path.
//!
//! What stands at `--out` decides how the dataset is written ([`plan`] decides, `write_file`
//! looks and acts):
//! - nothing, or a regular file: the dataset goes to a temporary file in the same folder, which is
//!   synced and renamed over the path, so a reader sees the old or the new dataset, never half of
//!   one. A replaced file's permissions are kept;
//! - a symbolic link (or a chain of them) is followed: its final target is replaced that way, with
//!   the temporary file in the target's folder (a rename only replaces within one file system), and
//!   the link stays a link;
//! - a FIFO or a character device is written into directly: a rename would replace the node
//!   itself (a FIFO's reader would get nothing, `/dev/null` would become a file). Opening a FIFO
//!   waits for a reader, as any writer to a FIFO does;
//! - the store being read (the same device and inode, whatever the spelling: a symbolic link, a
//!   hard link, `./store.redb`), a directory, a block device or a socket is refused before anything
//!   is written.
//!
//! Temporary files are named `.<name>.digestmap-tmp-<pid>` after the file they become and the
//! process that writes them. Every error removes the one it made. One left by a finalize that was
//! killed is removed by the next finalize of the same name, once its process is gone (where
//! `/proc` tells) or it has not been written to for [`STALE_AFTER`] (a pid can be reused); other
//! files, and temporary files of other names, are never touched.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, ErrorKind};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{DatasetError, WalkError};
use crate::store::Store;

/// What stands at an output path, once symbolic links are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing: the file is created.
    Nothing,
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A named pipe.
    Fifo,
    /// A character device, such as `/dev/null`.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A Unix socket.
    Socket,
}

/// How `finalize` writes to an output path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Write a temporary file beside the path, sync it and rename it over the path.
    Replace,
    /// Open the path and write into it: no temporary file, no rename.
    Direct,
}

/// Why `finalize` will not write to a path. Nothing has been written when it says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The path is the store being read (maybe through a link or another spelling).
    #[error("it is the store being read ({}); give another path", .store.display())]
    Store {
        /// The store's path as given.
        store: PathBuf,
    },
    /// The path is a directory.
    #[error("it is a directory; give a file name")]
    Directory,
    /// The path is a block device or a socket.
    #[error("it is a {0}; finalize writes a file, a FIFO or a character device")]
    Unwritable(&'static str),
}

/// Decides how to write to a path where `found` stands; `is_store` says it is the store itself.
pub fn plan(found: Found, is_store: bool, store: &Path) -> Result<Plan, Refusal> {
    if is_store {
        return Err(Refusal::Store {
            store: store.to_owned(),
        });
    }
    match found {
        Found::Nothing | Found::Regular => Ok(Plan::Replace),
        Found::Fifo | Found::CharDevice => Ok(Plan::Direct),
        Found::Directory => Err(Refusal::Directory),
        Found::BlockDevice => Err(Refusal::Unwritable("block device")),
        Found::Socket => Err(Refusal::Unwritable("socket")),
    }
}

/// A temporary file not written to for this long is stale even when a process with its pid
/// exists: a finalize writes continuously, so that process is another one with a reused pid.
pub const STALE_AFTER: Duration = Duration::from_secs(3600);

/// Most symbolic links followed from `--out` to the file, as the kernel's own limit (ELOOP).
const MAX_LINKS: usize = 40;

/// What marks a temporary file as a finalize's: `.<name>` + this + the pid.
const TEMP_MARK: &str = ".digestmap-tmp-";

/// The temporary file's name for the output file `name`, written by process `pid`.
pub fn temp_name(name: &OsStr, pid: u32) -> OsString {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(TEMP_MARK);
    tmp.push(pid.to_string());
    tmp
}

/// The pid in `entry` when it is a temporary file of the output file `name` (exactly
/// [`temp_name`]`(name, pid)`), else `None`.
pub fn temp_owner(entry: &OsStr, name: &OsStr) -> Option<u32> {
    let rest = entry.as_encoded_bytes().strip_prefix(b".")?;
    let rest = rest.strip_prefix(name.as_encoded_bytes())?;
    let digits = rest.strip_prefix(TEMP_MARK.as_bytes())?;
    // `u32::from_str` would also take a leading `+`: only the digits `temp_name` writes count.
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether a temporary file of ours may be removed: its process is known to be gone
/// (`owner_alive` is `None` where that cannot be told), or it has not been written to for
/// [`STALE_AFTER`].
pub fn is_stale(owner_alive: Option<bool>, unwritten_for: Option<Duration>) -> bool {
    owner_alive == Some(false) || unwritten_for.is_some_and(|d| d >= STALE_AFTER)
}

/// Writes to the file at `path` with `write`, as [`plan`] decides from what stands there.
/// Returns what `write` returned and how many stale temporary files were removed.
pub(super) fn write_file<T>(
    store: &Store,
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<T, WalkError>,
) -> Result<(T, u64), DatasetError> {
    let shown = path.display().to_string();
    let io_err = |source: io::Error| DatasetError::Write {
        path: shown.clone(),
        source,
    };
    let target = follow_links(path).map_err(io_err)?;
    let (found, meta) = look(&target).map_err(io_err)?;
    let is_store = meta.is_some() && same_file(&target, store.path());
    let plan = plan(found, is_store, store.path()).map_err(|reason| DatasetError::Refused {
        path: shown.clone(),
        reason,
    })?;
    match plan {
        Plan::Direct => {
            let file = OpenOptions::new()
                .write(true)
                .open(&target)
                .map_err(io_err)?;
            let mut out = BufWriter::with_capacity(1 << 16, file);
            let written = write(&mut out).map_err(|e| e.attach(store, &shown))?;
            out.into_inner().map_err(|e| io_err(e.into_error()))?;
            Ok((written, 0))
        }
        Plan::Replace => {
            let (dir, name) = split(&target).map_err(io_err)?;
            let removed = remove_stale_temps(&dir, name);
            let tmp = dir.join(temp_name(name, std::process::id()));
            let written = replace(&tmp, &target, &dir, meta.as_ref(), write).map_err(|e| {
                let _ = fs::remove_file(&tmp);
                e.attach(store, &shown)
            })?;
            Ok((written, removed))
        }
    }
}

/// Writes `tmp`, syncs it and renames it over `target`. The caller removes `tmp` on error.
fn replace<T>(
    tmp: &Path,
    target: &Path,
    dir: &Path,
    old: Option<&fs::Metadata>,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<T, WalkError>,
) -> Result<T, WalkError> {
    // A leftover of an earlier process with this pid is ours by name; removing it first means
    // `create_new` never follows a link planted at the temporary name.
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let file = OpenOptions::new().write(true).create_new(true).open(tmp)?;
    if let Some(old) = old {
        file.set_permissions(old.permissions())?;
    }
    let mut out = BufWriter::with_capacity(1 << 16, file);
    let written = write(&mut out)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, target)?;
    // Make the rename itself durable; a folder that cannot be opened or synced leaves the
    // dataset written, only its rename less certain to survive a power cut.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(written)
}

/// Follows symbolic links from `path` to what they finally name (which may not exist yet).
fn follow_links(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_owned();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = fs::read_link(&current)?;
                // A relative link is relative to the folder holding it.
                current = match current.parent() {
                    Some(dir) => dir.join(link),
                    None => link,
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "more than {MAX_LINKS} symbolic links to follow"
    )))
}

/// What stands at `path` (links already followed), with its metadata when something does.
fn look(path: &Path) -> io::Result<(Found, Option<fs::Metadata>)> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok((Found::Nothing, None)),
        Err(e) => return Err(e),
    };
    Ok((found(&meta.file_type()), Some(meta)))
}

#[cfg(unix)]
fn found(kind: &fs::FileType) -> Found {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        Found::Directory
    } else if kind.is_fifo() {
        Found::Fifo
    } else if kind.is_char_device() {
        Found::CharDevice
    } else if kind.is_block_device() {
        Found::BlockDevice
    } else if kind.is_socket() {
        Found::Socket
    } else {
        Found::Regular
    }
}

#[cfg(not(unix))]
fn found(kind: &fs::FileType) -> Found {
    if kind.is_dir() {
        Found::Directory
    } else {
        Found::Regular
    }
}

/// Whether `a` and `b` are the same file: the same device and inode, so another spelling, a
/// symbolic link or a hard link of the store is still the store.
#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The folder and file name of `path`.
fn split(path: &Path) -> io::Result<(PathBuf, &OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("the path names no file"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// Whether process `pid` exists, where `/proc` can tell.
fn process_alive(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    proc.join("self")
        .exists()
        .then(|| proc.join(pid.to_string()).exists())
}

/// Removes the stale temporary files of the output file `name` in `dir`; returns how many.
/// Failing to list or remove them is not an error: they only take space.
fn remove_stale_temps(dir: &Path, name: &OsStr) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(pid) = temp_owner(&entry.file_name(), name) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let unwritten_for = meta
            .modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok());
        if is_stale(process_alive(pid), unwritten_for) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_by_what_stands_at_the_path() {
        let store = Path::new("s.redb");
        let table = [
            (Found::Nothing, false, Ok(Plan::Replace)),
            (Found::Regular, false, Ok(Plan::Replace)),
            (Found::Fifo, false, Ok(Plan::Direct)),
            (Found::CharDevice, false, Ok(Plan::Direct)),
            (Found::Directory, false, Err(Refusal::Directory)),
            (
                Found::BlockDevice,
                false,
                Err(Refusal::Unwritable("block device")),
            ),
            (Found::Socket, false, Err(Refusal::Unwritable("socket"))),
        ];
        for (found, is_store, want) in table {
            assert_eq!(plan(found, is_store, store), want, "{found:?}");
        }
        // The store is refused whatever it looks like.
        for found in [Found::Regular, Found::Fifo, Found::CharDevice] {
            assert_eq!(
                plan(found, true, store),
                Err(Refusal::Store {
                    store: store.to_owned()
                })
            );
        }
    }

    #[test]
    fn temp_names_are_recognised_only_for_their_file() {
        let name = OsStr::new("digests.ndjson");
        assert_eq!(
            temp_name(name, 4242),
            OsString::from(".digests.ndjson.digestmap-tmp-4242")
        );
        assert_eq!(temp_owner(&temp_name(name, 4242), name), Some(4242));
        let table = [
            (".digests.ndjson.digestmap-tmp-1", Some(1)),
            (".digests.ndjson.digestmap-tmp-4294967295", Some(u32::MAX)),
            (".digests.ndjson.digestmap-tmp-4294967296", None),
            (".digests.ndjson.digestmap-tmp-", None),
            (".digests.ndjson.digestmap-tmp-+1", None),
            (".digests.ndjson.digestmap-tmp-12a", None),
            (".digests.ndjson.tmp-12", None),
            ("digests.ndjson.digestmap-tmp-12", None),
            (".other.ndjson.digestmap-tmp-12", None),
            (".digests.ndjson.old.digestmap-tmp-12", None),
            ("digests.ndjson", None),
        ];
        for (entry, want) in table {
            assert_eq!(temp_owner(OsStr::new(entry), name), want, "{entry}");
        }
    }

    #[test]
    fn stale_when_the_process_is_gone_or_long_unwritten() {
        let fresh = Some(Duration::from_secs(5));
        let old = Some(STALE_AFTER);
        let table = [
            (Some(false), fresh, true),
            (Some(false), None, true),
            (Some(true), fresh, false),
            (Some(true), old, true),
            (None, fresh, false),
            (None, None, false),
            (None, old, true),
        ];
        for (alive, age, want) in table {
            assert_eq!(is_stale(alive, age), want, "{alive:?} {age:?}");
        }
    }
}

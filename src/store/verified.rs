//! Reading a store without writing to it, after redb has verified every page, and learning whether
//! a crawl is writing to it, also without writing.
//!
//! redb verifies page checksums only in its integrity check (`Builder::set_check_integrity_on_open`,
//! `Database::check_integrity`); a plain open trusts the file, so a damaged page can panic inside
//! redb or, worse, be read as valid but wrong data. The check needs a writable handle and commits
//! (it rebuilds the allocator state and writes it), so run on the store file it would change the
//! file's bytes, fail on a read-only file, and write into a damaged store. [`Overlay`] gives redb a
//! writable view of the file whose writes stay in memory: redb's check runs in full, and the file is
//! only ever read. A store that fails the check is reported, never repaired.
//!
//! Whether a crawl is writing: in `SingleWriter` mode redb's writer holds an exclusive byte-range
//! lock (an open file description lock) on the byte at offset 2^62 for as long as the store is open
//! ("held exclusively by the writing process in single-writer mode", `WRITER_BYTE` in redb 4's
//! `db.rs`). [`writer_running`] asks the kernel whether that lock is held (`F_OFD_GETLK`, through
//! redb's own `FileBackend::query_lock_range`): nothing is acquired, so it can never make a crawl
//! starting at the same moment fail with "in use".

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use redb::StorageBackend;
use redb::backends::FileBackend;

/// The byte redb's single writer holds an exclusive lock on (redb 4, `db.rs`, `WRITER_BYTE`).
const WRITER_BYTE: u64 = 1 << 62;

/// Size of the blocks the overlay keeps; redb writes whole 4 KiB pages and header slots.
const BLOCK: u64 = 4096;

/// Whether a digestmap crawl (a redb writer) has the store open right now. Acquires no lock.
pub fn writer_running(path: &Path) -> io::Result<bool> {
    let backend = FileBackend::new(File::open(path)?).map_err(io::Error::other)?;
    let held = backend
        .query_lock_range(
            Bound::Included(WRITER_BYTE),
            Bound::Excluded(WRITER_BYTE + 1),
        )
        .map_err(io::Error::other)?;
    Ok(held)
}

/// The store file, read-only, with redb's writes kept in memory.
///
/// Blocks written stay in `written`; a block never written is read from the file, and bytes past
/// `base_len` (the file's length, or less once redb shrank the view) read as zeros.
#[derive(Debug)]
pub struct Overlay {
    file: File,
    state: Mutex<OverlayState>,
}

#[derive(Debug)]
struct OverlayState {
    len: u64,
    base_len: u64,
    written: HashMap<u64, Vec<u8>>,
}

impl Overlay {
    /// An overlay over `file`, opened for reading.
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self {
            file,
            state: Mutex::new(OverlayState {
                len,
                base_len: len,
                written: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OverlayState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Block `index` as the file has it (zeros past `base_len`).
    fn base_block(&self, base_len: u64, index: u64) -> io::Result<Vec<u8>> {
        let mut block = vec![0u8; BLOCK as usize];
        let start = index * BLOCK;
        if start < base_len {
            let n = (base_len - start).min(BLOCK) as usize;
            self.file.read_exact_at(&mut block[..n], start)?;
        }
        Ok(block)
    }
}

fn past_end(offset: u64, len: usize, end: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("read of {len} bytes at offset {offset} past the end of the file ({end} bytes)"),
    )
}

impl StorageBackend for Overlay {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.lock().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let state = self.lock();
        let end = offset
            .checked_add(out.len() as u64)
            .filter(|end| *end <= state.len)
            .ok_or_else(|| past_end(offset, out.len(), state.len))?;
        let mut at = offset;
        while at < end {
            let index = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let n = ((BLOCK as usize) - within).min((end - at) as usize);
            let dst = &mut out[(at - offset) as usize..][..n];
            match state.written.get(&index) {
                Some(block) => dst.copy_from_slice(&block[within..within + n]),
                None if at + n as u64 <= state.base_len => self.file.read_exact_at(dst, at)?,
                None => {
                    dst.copy_from_slice(&self.base_block(state.base_len, index)?[within..][..n])
                }
            }
            at += n as u64;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut state = self.lock();
        if len < state.len {
            // Bytes cut off read as zeros if the view grows again.
            state.base_len = state.base_len.min(len);
            let first_gone = len.div_ceil(BLOCK);
            state.written.retain(|index, _| *index < first_gone);
            if !len.is_multiple_of(BLOCK)
                && let Some(block) = state.written.get_mut(&(len / BLOCK))
            {
                block[(len % BLOCK) as usize..].fill(0);
            }
        }
        state.len = len;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut state = self.lock();
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::other("write past the largest offset"))?;
        let mut at = offset;
        while at < end {
            let index = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let n = ((BLOCK as usize) - within).min((end - at) as usize);
            if !state.written.contains_key(&index) {
                let block = self.base_block(state.base_len, index)?;
                state.written.insert(index, block);
            }
            if let Some(block) = state.written.get_mut(&index) {
                block[within..within + n].copy_from_slice(&data[(at - offset) as usize..][..n]);
            }
            at += n as u64;
        }
        state.len = state.len.max(end);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay_over(bytes: &[u8]) -> (Overlay, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "digestmap-overlay-{}-{}",
            std::process::id(),
            bytes.len()
        ));
        std::fs::write(&path, bytes).unwrap();
        (Overlay::new(File::open(&path).unwrap()).unwrap(), path)
    }

    #[test]
    fn writes_stay_in_memory_and_reads_see_them() {
        let base: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let (overlay, path) = overlay_over(&base);
        overlay.write(4090, &[0xee; 12]).unwrap();
        let mut out = vec![0u8; 20];
        overlay.read(4085, &mut out).unwrap();
        assert_eq!(&out[..5], &base[4085..4090]);
        assert_eq!(&out[5..17], &[0xee; 12]);
        assert_eq!(&out[17..], &base[4102..4105]);
        assert_eq!(std::fs::read(&path).unwrap(), base, "the file changed");

        // Growing past the end reads zeros; shrinking forgets; reading past the end fails.
        overlay.set_len(12_000).unwrap();
        overlay.read(9_998, &mut out[..4]).unwrap();
        assert_eq!(&out[..4], &[base[9998], base[9999], 0, 0]);
        overlay.set_len(4092).unwrap();
        overlay.set_len(8192).unwrap();
        overlay.read(4088, &mut out[..8]).unwrap();
        assert_eq!(&out[..8], &[base[4088], base[4089], 0xee, 0xee, 0, 0, 0, 0]);
        let err = overlay.read(8190, &mut out[..4]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let _ = std::fs::remove_file(path);
    }
}

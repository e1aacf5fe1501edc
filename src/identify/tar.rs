//! A tar reader that reads headers and chosen members only, and never writes anything.
//!
//! Facts relied on (POSIX ustar, GNU and pax extensions, as Go's `archive/tar` writes them for
//! `docker save`, and as `tar` writes them for OCI archives):
//! - an archive is 512-byte blocks: a header, then the member's data padded to a whole block;
//!   it ends with two zero blocks (one is accepted);
//! - a header's `chksum` is the sum of its bytes with the checksum field read as spaces (some old
//!   writers summed signed bytes, accepted too); an archive whose first block fails it is not tar;
//! - the size is octal text, or base-256 when the first byte has its high bit set (GNU, for
//!   members of 8 GiB and more);
//! - ustar names are `prefix/name`; a GNU `L` member holds the next member's long name; a pax `x`
//!   member holds `path=` and `size=` records for the next member; `g` (global pax) and `K` (long
//!   link name) are read and dropped.
//!
//! Everything read is bounded: metadata members have size caps, names a length cap, and the number
//! of members a cap, so no archive can make the reader hold more than a few MiB beside the members
//! the caller keeps. Member data is passed over with [`Source::skip`], which seeks in a file and
//! reads through (without keeping) on a pipe.

use std::io::{self, BufReader, Read, Seek};

/// Longest member name accepted (Linux's PATH_MAX).
const MAX_NAME: u64 = 4096;
/// Largest pax header member read.
const MAX_PAX: u64 = 1 << 20;
/// Largest member size believed: a claim beyond a tebibyte is damage or hostility, not an image.
pub const MAX_MEMBER: u64 = 1 << 40;
/// Most members read: a saved image has a few per layer.
pub const MAX_MEMBERS: usize = 200_000;

/// What a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic or hard link: never followed.
    Link,
    /// A device, FIFO or another type: never read.
    Other,
}

/// A member's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name, without a leading `./` or trailing `/`; checked to stay inside the archive.
    pub name: String,
    /// Its data size in bytes.
    pub size: u64,
    /// Its type.
    pub kind: MemberKind,
}

/// Why an archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The first block is not a tar header.
    #[error("not a tar archive (no tar header at its start)")]
    NotTar,
    /// The archive ends before it should.
    #[error("the tar archive is cut off {0}")]
    Truncated(String),
    /// A header that does not check out.
    #[error("damaged tar header at byte {offset}: {reason}")]
    Header {
        /// Where the header starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A name that would leave the archive's folder, or that is not text.
    #[error("member {name:?} has an unsafe name: {reason}")]
    UnsafeName {
        /// The name, shortened.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Too many members.
    #[error("more than {MAX_MEMBERS} members: not a saved image")]
    TooManyMembers,
}

/// What members are read from: a file (which seeks over data) or a stream (which reads through).
pub trait Source: Read {
    /// Passes over `n` bytes. Errors with `UnexpectedEof` when fewer remain.
    fn skip(&mut self, n: u64) -> io::Result<()>;
}

/// A file, seeked over; knows its length so that a member claiming more than the file holds is
/// caught at its header.
pub struct FileSource<R> {
    inner: BufReader<R>,
    position: u64,
    len: u64,
}

impl<R: Read + Seek> FileSource<R> {
    /// Wraps a file of `len` bytes, read from its start.
    pub fn new(inner: R, len: u64) -> Self {
        Self {
            // Headers are read 512 bytes at a time; small skips (padding, small members) stay
            // within the buffer.
            inner: BufReader::with_capacity(1 << 16, inner),
            position: 0,
            len,
        }
    }
}

impl<R: Read> Read for FileSource<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Source for FileSource<R> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let target = self.position.saturating_add(n);
        if target > self.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "member data beyond the end of the file",
            ));
        }
        let offset = i64::try_from(n).map_err(|_| io::Error::other("a skip beyond 2^63"))?;
        self.inner.seek_relative(offset)?;
        self.position = target;
        Ok(())
    }
}

/// A stream (a pipe, a decompressor): skipped data is read through a small buffer and dropped.
pub struct StreamSource<R>(pub R);

impl<R: Read> Read for StreamSource<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Source for StreamSource<R> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.0).take(n), &mut io::sink())?;
        if copied < n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// Reads an archive member by member. After [`TarReader::next_member`] gives a member, the caller
/// may read up to its size with [`TarReader::read_data`]; whatever is left is passed over.
pub struct TarReader<S> {
    source: S,
    /// Bytes of the archive consumed so far (headers, data, padding).
    offset: u64,
    /// Data of the current member not read yet, then its padding.
    unread: u64,
    padding: u64,
    members: usize,
    ended: bool,
}

impl<S: Source> TarReader<S> {
    /// A reader at the start of `source`.
    pub fn new(source: S) -> Self {
        Self {
            source,
            offset: 0,
            unread: 0,
            padding: 0,
            members: 0,
            ended: false,
        }
    }

    /// The next member, or `None` at the end of the archive.
    pub fn next_member(&mut self) -> Result<Option<Member>, TarError> {
        if self.ended {
            return Ok(None);
        }
        self.pass_rest()?;
        let mut long_name: Option<String> = None;
        let mut pax_path: Option<String> = None;
        let mut pax_size: Option<u64> = None;
        loop {
            let at = self.offset;
            let mut block = [0u8; 512];
            let got = read_full(&mut self.source, &mut block)?;
            self.offset += got as u64;
            if got == 0 {
                if at == 0 {
                    return Err(TarError::NotTar);
                }
                return Err(TarError::Truncated(format!(
                    "at byte {at}: it ends without the blocks that close a tar archive"
                )));
            }
            if got < 512 {
                if at == 0 {
                    return Err(TarError::NotTar);
                }
                return Err(TarError::Truncated(format!(
                    "inside the header at byte {at}"
                )));
            }
            if block.iter().all(|&b| b == 0) {
                if at == 0 {
                    return Err(TarError::NotTar);
                }
                self.ended = true;
                return Ok(None);
            }
            if !checksum_ok(&block) {
                if at == 0 {
                    return Err(TarError::NotTar);
                }
                return Err(TarError::Header {
                    offset: at,
                    reason: "its checksum does not match".into(),
                });
            }
            self.members += 1;
            if self.members > MAX_MEMBERS {
                return Err(TarError::TooManyMembers);
            }
            let header_size = parse_size(&block[124..136])
                .map_err(|reason| TarError::Header { offset: at, reason })?;
            let typeflag = block[156];
            let size = match typeflag {
                b'x' | b'L' => header_size,
                _ => pax_size.take().unwrap_or(header_size),
            };
            if size > MAX_MEMBER {
                return Err(TarError::Header {
                    offset: at,
                    reason: format!("it claims {size} bytes of data, more than any image holds"),
                });
            }
            self.unread = size;
            self.padding = size.next_multiple_of(512) - size;
            match typeflag {
                b'L' => {
                    if size > MAX_NAME {
                        return Err(TarError::Header {
                            offset: at,
                            reason: format!("a long name of {size} bytes"),
                        });
                    }
                    let data = self.read_all_data()?;
                    self.pass_rest()?;
                    let text = String::from_utf8_lossy(&data);
                    long_name = Some(text.trim_end_matches('\0').to_owned());
                    continue;
                }
                b'x' => {
                    if size > MAX_PAX {
                        return Err(TarError::Header {
                            offset: at,
                            reason: format!("a pax header of {size} bytes"),
                        });
                    }
                    let data = self.read_all_data()?;
                    self.pass_rest()?;
                    let (path, pax) = parse_pax(&data)
                        .map_err(|reason| TarError::Header { offset: at, reason })?;
                    pax_path = path.or(pax_path);
                    pax_size = pax.or(pax_size);
                    continue;
                }
                b'g' | b'K' => {
                    if size > MAX_PAX {
                        return Err(TarError::Header {
                            offset: at,
                            reason: format!("an extension header of {size} bytes"),
                        });
                    }
                    self.pass_rest()?;
                    continue;
                }
                _ => {}
            }
            let raw_name = match long_name.take().or(pax_path.take()) {
                Some(name) => name,
                None => header_name(&block),
            };
            let kind = match typeflag {
                b'0' | b'\0' | b'7' => MemberKind::File,
                b'5' => MemberKind::Directory,
                b'1' | b'2' => MemberKind::Link,
                _ => MemberKind::Other,
            };
            if matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6') {
                // Header-only types, as Go's archive/tar reads them: no data follows, whatever
                // their size field says.
                self.unread = 0;
                self.padding = 0;
            }
            let name = safe_name(&raw_name)?;
            return Ok(Some(Member { name, size, kind }));
        }
    }

    /// Reads the current member's next bytes into `buf` (up to what is left of it); 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let want = buf
            .len()
            .min(usize::try_from(self.unread).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.source.read(&mut buf[..want])?;
        if n == 0 {
            return Err(TarError::Truncated(format!(
                "inside a member's data at byte {}",
                self.offset
            )));
        }
        self.offset += n as u64;
        self.unread -= n as u64;
        Ok(n)
    }

    /// Reads the rest of the current member (the caller bounds its size first).
    pub fn read_all_data(&mut self) -> Result<Vec<u8>, TarError> {
        let mut out = vec![0u8; usize::try_from(self.unread).unwrap_or(usize::MAX)];
        let mut filled = 0;
        while filled < out.len() {
            filled += self.read_data(&mut out[filled..])?;
        }
        Ok(out)
    }

    /// Passes over what is left of the current member and its padding.
    fn pass_rest(&mut self) -> Result<(), TarError> {
        let rest = self.unread + self.padding;
        if rest > 0 {
            self.source.skip(rest).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    TarError::Truncated(format!(
                        "inside a member's data: {rest} bytes from byte {} are missing",
                        self.offset
                    ))
                } else {
                    TarError::Io(e)
                }
            })?;
            self.offset += rest;
        }
        self.unread = 0;
        self.padding = 0;
        Ok(())
    }
}

/// Fills `buf` as far as the source goes; the count read (less than its length only at the end).
fn read_full(source: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn checksum_ok(block: &[u8; 512]) -> bool {
    let Ok(stored) = parse_octal(&block[148..156]) else {
        return false;
    };
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

fn parse_octal(field: &[u8]) -> Result<u64, String> {
    let text = field
        .iter()
        .copied()
        .take_while(|&b| b != 0)
        .collect::<Vec<u8>>();
    let text = text.trim_ascii();
    if text.is_empty() {
        return Ok(0);
    }
    let mut value: u64 = 0;
    for &b in text {
        if !(b'0'..=b'7').contains(&b) {
            return Err("a number field is not octal".into());
        }
        value = value
            .checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or("a number field overflows")?;
    }
    Ok(value)
}

fn parse_size(field: &[u8]) -> Result<u64, String> {
    if field[0] & 0x80 != 0 {
        // Base-256: the remaining bits, big-endian; a negative size (0xff) is refused.
        if field[0] == 0xff {
            return Err("a negative size".into());
        }
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or("a size beyond 2^64")?;
        }
        return Ok(value);
    }
    parse_octal(field)
}

fn header_name(block: &[u8; 512]) -> String {
    let field = |range: std::ops::Range<usize>| {
        let bytes = &block[range];
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    let name = field(0..100);
    if &block[257..262] == b"ustar" {
        let prefix = field(345..500);
        if !prefix.is_empty() {
            return format!("{prefix}/{name}");
        }
    }
    name
}

/// The `path` and `size` records of a pax header (`<len> <key>=<value>\n` each).
fn parse_pax(data: &[u8]) -> Result<(Option<String>, Option<u64>), String> {
    let mut rest = data;
    let mut path = None;
    let mut size = None;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("a pax record without its length")?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|t| t.parse().ok())
            .filter(|&l| l > space && l <= rest.len())
            .ok_or("a pax record with a wrong length")?;
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(value) = record.strip_prefix(b"path=") {
            path = Some(String::from_utf8_lossy(value).into_owned());
        } else if let Some(value) = record.strip_prefix(b"size=") {
            size = Some(
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or("a pax size that is not a number")?,
            );
        }
        rest = &rest[len..];
    }
    Ok((path, size))
}

/// The name with `./` and trailing `/` removed, refused when it could leave the archive's folder.
fn safe_name(raw: &str) -> Result<String, TarError> {
    let shown = || raw.chars().take(200).collect::<String>();
    if raw.len() as u64 > MAX_NAME {
        return Err(TarError::UnsafeName {
            name: shown(),
            reason: "longer than 4096 bytes",
        });
    }
    if raw.contains('\0') || raw.contains('\u{fffd}') {
        return Err(TarError::UnsafeName {
            name: shown(),
            reason: "not text",
        });
    }
    if raw.starts_with('/') {
        return Err(TarError::UnsafeName {
            name: shown(),
            reason: "an absolute path",
        });
    }
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(TarError::UnsafeName {
            name: shown(),
            reason: "it climbs out of the archive with `..`",
        });
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: u64, typeflag: u8) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        if size < 8u64.pow(11) {
            h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        } else {
            // Base-256, as GNU tar writes sizes of 8 GiB and more.
            h[124] = 0x80;
            h[128..136].copy_from_slice(&size.to_be_bytes());
        }
        h[156] = typeflag;
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    fn archive(members: &[(&str, &[u8], u8)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data, flag) in members {
            out.extend_from_slice(&header(name, data.len() as u64, *flag));
            out.extend_from_slice(data);
            out.resize(out.len().next_multiple_of(512), 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn names(bytes: &[u8]) -> Result<Vec<(String, u64, MemberKind)>, TarError> {
        let len = bytes.len() as u64;
        let mut reader = TarReader::new(FileSource::new(io::Cursor::new(bytes), len));
        let mut out = Vec::new();
        while let Some(m) = reader.next_member()? {
            out.push((m.name, m.size, m.kind));
        }
        Ok(out)
    }

    #[test]
    fn members_and_names() {
        let bytes = archive(&[
            ("./manifest.json", b"[]", b'0'),
            ("abc/", b"", b'5'),
            ("abc/layer.tar", b"", b'2'),
        ]);
        assert_eq!(
            names(&bytes).unwrap(),
            vec![
                ("manifest.json".into(), 2, MemberKind::File),
                ("abc".into(), 0, MemberKind::Directory),
                ("abc/layer.tar".into(), 0, MemberKind::Link),
            ]
        );
    }

    #[test]
    fn data_is_read_or_passed_over_on_a_stream() {
        let bytes = archive(&[("a", b"hello", b'0'), ("b", b"world!", b'0')]);
        let mut reader = TarReader::new(StreamSource(&bytes[..]));
        reader.next_member().unwrap().unwrap();
        let b = reader.next_member().unwrap().unwrap();
        assert_eq!(b.name, "b");
        assert_eq!(reader.read_all_data().unwrap(), b"world!");
        assert!(reader.next_member().unwrap().is_none());
    }

    #[test]
    fn long_names_and_pax() {
        let long = "d/".repeat(80) + "file";
        let record = format!(" path={long}\n");
        let pax = format!("{}{record}", record.len() + 3);
        assert_eq!(pax.len(), record.len() + 3);
        let bytes = archive(&[
            ("././@LongLink", format!("{long}\0").as_bytes(), b'L'),
            ("short", b"1", b'0'),
            ("PaxHeader", pax.as_bytes(), b'x'),
            ("other", b"22", b'0'),
        ]);
        let got = names(&bytes).unwrap();
        assert_eq!(got[0].0, long);
        assert_eq!(got[1], (long.clone(), 2, MemberKind::File));
    }

    #[test]
    fn hostile_archives() {
        let table: Vec<(Vec<u8>, &str)> = vec![
            (b"just some text, not a tar".to_vec(), "not a tar archive"),
            (vec![0u8; 2048], "not a tar archive"),
            (Vec::new(), "not a tar archive"),
            (archive(&[("../etc/passwd", b"x", b'0')]), "climbs out"),
            (archive(&[("/etc/passwd", b"x", b'0')]), "absolute"),
            (
                archive(&[("a", &[7u8; 700], b'0')])[..900].to_vec(),
                "cut off",
            ),
            (archive(&[("a", b"x", b'0')])[..1024].to_vec(), "cut off"),
            (header("a", 1 << 41, b'0').to_vec(), "more than any image"),
        ];
        for (bytes, want) in table {
            let err = names(&bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        let mut damaged = archive(&[("a", b"x", b'0'), ("b", b"y", b'0')]);
        damaged[1024] ^= 1;
        assert!(
            names(&damaged)
                .unwrap_err()
                .to_string()
                .contains("checksum")
        );
    }
}

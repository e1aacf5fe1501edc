//! What an `identify` argument is, and reading it into [`SavedImage`]s.
//!
//! - `-`: a tarball on standard input, plain or gzip-compressed, read in one pass;
//! - an existing folder: an OCI image layout;
//! - an existing file: by its first bytes, gzip (`1f 8b`: a compressed tarball), JSON (`{` or
//!   `[`: `docker image inspect` output), else a tarball (`docker save` in any layout, or an
//!   `oci-archive`);
//! - anything else that reads as a digest (`sha256:<hex>`, or at least 12 hex characters): a bare
//!   image ID or manifest digest, resolved by the index.
//!
//! A gzip stream is decompressed as it is read, never kept; a stream that expands more than
//! [`MAX_RATIO`] times beyond its first [`RATIO_FLOOR`] bytes is refused as a gzip bomb (a real
//! saved image expands 1 to 5 times: its layers are already compressed, or are tars of files).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde_json::Value;

use super::SavedImage;
use super::saved::{self, SavedError};
use super::tar::{FileSource, StreamSource};
use crate::dataset::lookup::Query;
use crate::model::Digest;

/// Largest `docker image inspect` file read (one image's is a few KB).
pub const MAX_INSPECT: u64 = 64 << 20;
/// Most a gzip stream may expand, as a multiple of the compressed bytes read.
pub const MAX_RATIO: u64 = 100;
/// Decompressed bytes allowed before the ratio is enforced.
pub const RATIO_FLOOR: u64 = 64 << 20;

/// One `identify` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// `-`: a tarball on standard input.
    Stdin,
    /// A file or folder.
    Path(PathBuf),
    /// A bare digest or prefix.
    Digest(Query),
}

impl Input {
    /// Classifies an argument: an existing path wins over a digest-shaped name.
    pub fn parse(text: &str) -> Self {
        if text == "-" {
            return Self::Stdin;
        }
        let path = Path::new(text);
        if path.symlink_metadata().is_err()
            && let Ok(query) = Query::parse(text)
        {
            return Self::Digest(query);
        }
        Self::Path(path.to_owned())
    }

    /// How messages name it.
    pub fn shown(&self) -> String {
        match self {
            Self::Stdin => "standard input".to_owned(),
            Self::Path(path) => path.display().to_string(),
            Self::Digest(query) => query.text.clone(),
        }
    }
}

/// Why an input could not be read: the message names what is wrong; the caller names the input.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Opening or reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The content is not a readable image.
    #[error(transparent)]
    Saved(#[from] SavedError),
    /// `docker image inspect` output that is not.
    #[error("{0}")]
    Inspect(String),
}

/// Reads a file or folder.
pub fn read_path(path: &Path) -> Result<Vec<SavedImage>, InputError> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Ok(saved::read_layout_dir(path)?);
    }
    if !meta.is_file() {
        // A FIFO or a device: read once, as a stream.
        return read_stream(File::open(path)?);
    }
    let mut file = File::open(path)?;
    let mut head = [0u8; 512];
    let n = read_some(&mut file, &mut head)?;
    let head = &head[..n];
    if head.starts_with(&[0x1f, 0x8b]) {
        let file = File::open(path)?;
        return read_gzip(BufReader::with_capacity(1 << 16, file));
    }
    if is_json(head) {
        return read_inspect(File::open(path)?);
    }
    let file = File::open(path)?;
    let source = FileSource::new(file, meta.len());
    Ok(saved::read_tar(source)?)
}

/// Reads a tarball, plain or gzip-compressed, or `docker image inspect` JSON, from a stream in
/// one pass.
pub fn read_stream(reader: impl Read) -> Result<Vec<SavedImage>, InputError> {
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        return read_gzip(reader);
    }
    if is_json(head) {
        return read_inspect(reader);
    }
    Ok(saved::read_tar(StreamSource(reader))?)
}

/// Whether a file starting with `head` is JSON rather than a tarball: a tar header starts with a
/// member name, never with blanks then `{` or `[`.
fn is_json(head: &[u8]) -> bool {
    matches!(head.trim_ascii_start().first(), Some(b'{' | b'['))
}

fn read_inspect(reader: impl Read) -> Result<Vec<SavedImage>, InputError> {
    let mut bytes = Vec::new();
    reader.take(MAX_INSPECT + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_INSPECT {
        return Err(InputError::Inspect(format!(
            "a JSON file of more than {} MiB: not docker image inspect output",
            MAX_INSPECT >> 20
        )));
    }
    inspect(&bytes)
}

fn read_gzip(reader: impl BufRead) -> Result<Vec<SavedImage>, InputError> {
    let counted = Counted {
        inner: reader,
        count: 0,
    };
    let decoder = BombGuard {
        inner: MultiGzDecoder::new(counted),
        out: 0,
    };
    Ok(saved::read_tar(StreamSource(BufReader::with_capacity(
        1 << 16,
        decoder,
    )))?)
}

fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Counts the compressed bytes a decoder takes.
struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amount: usize) {
        self.count += amount as u64;
        self.inner.consume(amount);
    }
}

/// Stops a decoder whose output outgrows its input beyond [`MAX_RATIO`].
struct BombGuard<R: BufRead> {
    inner: MultiGzDecoder<Counted<R>>,
    out: u64,
}

impl<R: BufRead> Read for BombGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        let input = self.inner.get_ref().count;
        if self.out > RATIO_FLOOR && self.out / input.max(1) > MAX_RATIO {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the gzip stream expands more than {MAX_RATIO} times ({input} bytes to {}): a gzip bomb, not a saved image",
                    self.out
                ),
            ));
        }
        Ok(n)
    }
}

/// Reads `docker image inspect` output: one object, or an array of them.
pub fn inspect(bytes: &[u8]) -> Result<Vec<SavedImage>, InputError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| InputError::Inspect(format!("not JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => return Err(InputError::Inspect("not a JSON object or array".into())),
    };
    if items.is_empty() {
        return Err(InputError::Inspect("an empty array: no image".into()));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            inspect_one(item).map_err(|e| InputError::Inspect(format!("entry {}: {e}", i + 1)))
        })
        .collect()
}

fn inspect_one(item: &Value) -> Result<SavedImage, String> {
    let digest = |text: &str, what: &str| Digest::parse(text).map_err(|e| format!("{what}: {e}"));
    let id = item
        .get("Id")
        .and_then(Value::as_str)
        .ok_or("no \"Id\" string: not docker image inspect output")?;
    let image_id = digest(id, "Id")?;
    let rootfs = item.get("RootFS").ok_or(
        "no \"RootFS\": not an image's inspect output (a container's? use docker image inspect)",
    )?;
    let layers = match rootfs.get("Layers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(layers)) => layers.clone(),
        Some(_) => return Err("RootFS.Layers is not a list".into()),
    };
    let diff_ids = layers
        .iter()
        .enumerate()
        .map(|(i, layer)| {
            layer
                .as_str()
                .ok_or_else(|| format!("RootFS.Layers[{i}] is not a string"))
                .and_then(|text| digest(text, &format!("RootFS.Layers[{i}]")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let strings = |key: &str| -> Vec<String> {
        item.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    // `RepoDigests` are `name@sha256:…`: the manifest (or index) digests it was pulled by.
    let digests = strings("RepoDigests")
        .iter()
        .filter_map(|d| d.rsplit_once('@'))
        .filter_map(|(_, d)| Digest::parse(d).ok())
        .collect();
    let text = |key: &str| {
        item.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let platform = match (text("Os"), text("Architecture")) {
        (Some(os), Some(arch)) => Some(match text("Variant") {
            Some(variant) => format!("{os}/{arch}/{variant}"),
            None => format!("{os}/{arch}"),
        }),
        _ => None,
    };
    Ok(SavedImage {
        label: format!("image {image_id}"),
        image_id: Some(image_id),
        digests,
        diff_ids: Some(diff_ids),
        platform,
        repo_tags: strings("RepoTags"),
    })
}

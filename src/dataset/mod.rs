//! The dataset: `digests.ndjson`, one line per digest, sorted by digest.
//!
//! Each line, keys in this order (later releases add keys, never change these):
//! `digest`, `kind`, `platform` (null for indexes), `os_version` (only when Hub gave one), `tags`,
//! `indexes` (manifests only), `first_seen`, `last_seen`. Lines are written by hand rather than
//! through a serde struct so that key order and number format are fixed: the same store always
//! gives the same bytes.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::clock;
use crate::model::ObjectKind;
use crate::store::{DigestEntry, ReadBatch, Store, StoreError, TxError};

/// Why the dataset could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing failed.
    #[error("cannot write the dataset to {path}: {source}")]
    Write {
        /// Where.
        path: String,
        /// Why.
        source: io::Error,
    },
}

/// Errors while walking the store and writing, before paths are attached.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The store failed.
    #[error(transparent)]
    Tx(#[from] TxError),
    /// The output failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl WalkError {
    fn attach(self, store: &Store, path: &str) -> DatasetError {
        match self {
            Self::Tx(e) => DatasetError::Store(store.error(e)),
            Self::Io(source) => DatasetError::Write {
                path: path.to_owned(),
                source,
            },
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatasetSummary {
    /// Lines (digests) written.
    pub digests: u64,
    /// Index digests.
    pub indexes: u64,
    /// Manifest digests.
    pub manifests: u64,
    /// Config digests.
    pub configs: u64,
    /// (digest, repo:tag) pairs written.
    pub pairs: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// Where `finalize` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Standard output.
    Stdout,
    /// A file, replaced atomically.
    File(PathBuf),
}

impl Output {
    /// `-` is standard output.
    pub fn parse(text: &str) -> Self {
        if text == "-" {
            Self::Stdout
        } else {
            Self::File(PathBuf::from(text))
        }
    }
}

/// Writes the dataset of `store` to `output`. A file is written to a temporary file in the same
/// folder, synced, then renamed over the target, so readers see the old or the new dataset, never
/// half of one.
pub fn finalize(store: &Store, output: &Output) -> Result<DatasetSummary, DatasetError> {
    let snapshot = store.snapshot()?;
    match output {
        Output::Stdout => {
            let stdout = io::stdout();
            let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
            let summary = write_dataset(&snapshot, &mut out)
                .and_then(|s| out.flush().map(|()| s).map_err(WalkError::from))
                .map_err(|e| e.attach(store, "standard output"))?;
            Ok(summary)
        }
        Output::File(path) => write_atomically(store, &snapshot, path),
    }
}

fn write_atomically(
    store: &Store,
    snapshot: &ReadBatch,
    path: &Path,
) -> Result<DatasetSummary, DatasetError> {
    let shown = path.display().to_string();
    let io_err = |source: io::Error| DatasetError::Write {
        path: shown.clone(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io_err(io::Error::other("the path names no file")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);

    let result = (|| {
        let file = File::create(&tmp).map_err(WalkError::Io)?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        let summary = write_dataset(snapshot, &mut out)?;
        let file = out
            .into_inner()
            .map_err(|e| WalkError::Io(e.into_error()))?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok::<_, WalkError>(summary)
    })();
    match result {
        Ok(summary) => Ok(summary),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e.attach(store, &shown))
        }
    }
}

/// Writes every line of the dataset to `out`.
pub fn write_dataset(
    snapshot: &ReadBatch,
    out: &mut impl Write,
) -> Result<DatasetSummary, WalkError> {
    let mut summary = DatasetSummary::default();
    let mut line = Vec::with_capacity(1024);
    snapshot.visit_digests(|entry| {
        line.clear();
        write_line(&mut line, entry);
        match entry.record.kind {
            ObjectKind::Index => summary.indexes += 1,
            ObjectKind::Manifest => summary.manifests += 1,
            ObjectKind::Config => summary.configs += 1,
        }
        summary.digests += 1;
        summary.pairs += entry.tags.len() as u64;
        summary.bytes += line.len() as u64;
        out.write_all(&line).map_err(WalkError::Io)
    })?;
    Ok(summary)
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes control characters and quotes; writing to a Vec cannot fail.
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec");
}

/// One dataset line, newline included.
pub fn write_line(out: &mut Vec<u8>, entry: &DigestEntry<'_>) {
    let mut hex = [0u8; 64];
    out.extend_from_slice(b"{\"digest\":\"sha256:");
    entry.digest.write_hex(&mut hex);
    out.extend_from_slice(&hex);
    out.extend_from_slice(b"\",\"kind\":\"");
    out.extend_from_slice(entry.record.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"platform\":");
    match (&entry.record.platform, entry.record.kind) {
        (Some(p), ObjectKind::Manifest | ObjectKind::Config) => json_str(out, &p.to_string()),
        _ => out.extend_from_slice(b"null"),
    }
    if let Some(v) = &entry.record.os_version {
        out.extend_from_slice(b",\"os_version\":");
        json_str(out, v);
    }
    out.extend_from_slice(b",\"tags\":[");
    for (i, tag) in entry.tags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, tag);
    }
    out.push(b']');
    if entry.record.kind == ObjectKind::Manifest {
        out.extend_from_slice(b",\"indexes\":[");
        for (i, index) in entry.indexes.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"\"sha256:");
            index.write_hex(&mut hex);
            out.extend_from_slice(&hex);
            out.push(b'"');
        }
        out.push(b']');
    }
    out.extend_from_slice(b",\"first_seen\":\"");
    out.extend_from_slice(clock::rfc3339(entry.record.first_seen).as_bytes());
    out.extend_from_slice(b"\",\"last_seen\":\"");
    out.extend_from_slice(clock::rfc3339(entry.record.last_seen).as_bytes());
    out.extend_from_slice(b"\"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Digest, Platform};
    use crate::store::DigestRecord;

    #[test]
    fn line_format() {
        let d = Digest::parse(
            "sha256:0199853f6d6b20b0424f3c5694a72a62764f01e6a771b1eb48a4197848986c7e",
        )
        .unwrap();
        let i = Digest::parse(
            "sha256:3b06811b2afd352be909dd088a004166d665dc76d38b13eada33522a9d915c6f",
        )
        .unwrap();
        let record = DigestRecord {
            kind: ObjectKind::Manifest,
            platform: Some(Platform::new("linux", "amd64", None)),
            os_version: None,
            first_seen: 1_795_791_845,
            last_seen: 1_795_791_845,
        };
        let tags = vec!["ubuntu:22.04".to_owned(), "ubuntu:jammy".to_owned()];
        let mut out = Vec::new();
        write_line(
            &mut out,
            &DigestEntry {
                digest: d,
                record: &record,
                tags: &tags,
                tag_seen: &[(1, 1), (1, 1)],
                indexes: &[i],
            },
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"digest\":\"sha256:0199853f6d6b20b0424f3c5694a72a62764f01e6a771b1eb48a4197848986c7e\",\"kind\":\"manifest\",\"platform\":\"linux/amd64\",\"tags\":[\"ubuntu:22.04\",\"ubuntu:jammy\"],\"indexes\":[\"sha256:3b06811b2afd352be909dd088a004166d665dc76d38b13eada33522a9d915c6f\"],\"first_seen\":\"2026-11-27T15:04:05Z\",\"last_seen\":\"2026-11-27T15:04:05Z\"}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["tags"][1], "ubuntu:jammy");
    }
}

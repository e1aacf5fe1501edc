//! The dataset: `digests.ndjson`, one line per digest, sorted by digest.
//!
//! Each line, keys in this order (later releases add keys, never change these):
//! `digest`, `kind`, `platform` (null for indexes), `os_version` (only when Hub gave one), `tags`,
//! `current`, `indexes` (manifests only), `first_seen`, `last_seen`. Lines are written by hand
//! rather than through a serde struct so that key order and number format are fixed: the same
//! store always gives the same bytes.
//!
//! What `enrich` learned adds keys at the end of a line, never changing the others:
//! - a manifest whose image manifest is learned gains `image_id` (its config digest) and
//!   `layers` (its layer count);
//! - every learned image ID gets a line of its own, kind `config` (or its Hub `config` line gains
//!   the keys): `platform` and `os_version` from the config, `tags` and `current` the union of
//!   those of the manifests that carry it (for the platform manifests of an index met where Hub
//!   listed a manifest, that manifest's), `first_seen`/`last_seen` the span of those manifests,
//!   then `manifests` (the manifest digests that carry it), `diff_ids` (bottom first) and
//!   `chain_id` (the ChainID of the whole stack; null for an image without layers).
//!
//! `current` holds the tags that pointed at the digest at the latest crawl: the pair
//! (digest, `repo:tag`) is current when the tag's [`TagState::is_current_pair`] says so (the tag
//! is not deleted and its latest sighting showed the digest). The tags table is loaded once into
//! a hash map ([`CurrentTags`]) before the digests are walked, so each pair costs one hash lookup
//! and a scan of the tag's few digests rather than a store read.
//!
//! [`output`] decides how the dataset reaches `--out` (a file replaced atomically, a FIFO or
//! device written directly, the store refused). [`lookup`] answers what the store, or a dataset
//! file, knows of given digests. [`images`] reads a dataset's config lines (image IDs, layer
//! chains) as the index `identify` matches saved images against.

pub mod images;
pub mod lookup;
pub mod output;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use crate::clock;
use crate::model::{Digest, ObjectKind};
use crate::store::{
    ConfigRecord, DigestEntry, DigestRecord, ManifestFact, ReadBatch, Store, StoreError, TagState,
    TxError,
};

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
    /// The output path is refused (the store itself, a directory...); nothing was written.
    #[error("refusing to write the dataset to {path}: {reason}")]
    Refused {
        /// Where.
        path: String,
        /// Why.
        reason: output::Refusal,
    },
    /// Standard output was closed before the whole dataset was written (`finalize --out - |
    /// head`): the reader wants no more, which is no error of the dataset.
    #[error("standard output was closed")]
    StdoutClosed,
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
    /// Of those, the pairs that are current (listed in `current`).
    pub current_pairs: u64,
    /// Digests in the store that no tag points at any more, whether written (with an empty
    /// `current`) or, under [`FinalizeOptions::current_only`], left out.
    pub not_current: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Temporary files left by an earlier, killed finalize of the same output file, removed.
    pub stale_temps_removed: u64,
}

/// How `finalize` chooses what to write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FinalizeOptions {
    /// Only digests that some tag points at now; digests whose every tag has moved on are left
    /// out.
    pub current_only: bool,
}

/// Where `finalize` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Standard output.
    Stdout,
    /// A path: a file replaced atomically, or a FIFO or device written into (see [`output`]).
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

/// Writes the whole dataset of `store` to `output`; see [`finalize_with`].
pub fn finalize(store: &Store, output: &Output) -> Result<DatasetSummary, DatasetError> {
    finalize_with(store, output, FinalizeOptions::default())
}

/// Writes the dataset of `store` to `output`. A file is written to a temporary file in the same
/// folder, synced, then renamed over the target, so readers see the old or the new dataset, never
/// half of one; [`output`] says what else may stand at the path and what is refused.
pub fn finalize_with(
    store: &Store,
    output: &Output,
    options: FinalizeOptions,
) -> Result<DatasetSummary, DatasetError> {
    let snapshot = store.snapshot()?;
    match output {
        Output::Stdout => {
            let stdout = io::stdout();
            let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
            write_dataset(&snapshot, options, &mut out)
                .and_then(|s| out.flush().map(|()| s).map_err(WalkError::from))
                .map_err(|e| match e {
                    WalkError::Io(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                        DatasetError::StdoutClosed
                    }
                    e => e.attach(store, "standard output"),
                })
        }
        Output::File(path) => {
            let (summary, removed) =
                output::write_file(store, path, |out| write_dataset(&snapshot, options, out))?;
            Ok(DatasetSummary {
                stale_temps_removed: removed,
                ..summary
            })
        }
    }
}

/// The dataset's `repo:tag` for a tags-table key: official images (`library/…`) are written
/// without their namespace, as [`crate::model::RepoName::display_name`] does.
pub fn display_repo_tag(repo_key: &str, tag: &str) -> String {
    let repo = repo_key.strip_prefix("library/").unwrap_or(repo_key);
    let mut out = String::with_capacity(repo.len() + 1 + tag.len());
    out.push_str(repo);
    out.push(':');
    out.push_str(tag);
    out
}

/// What decides whether a tag's pairs are current, kept small: the map holds every tag. A
/// deleted tag has no current digest, so it keeps none.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TagNow {
    digests: Box<[Digest]>,
}

impl TagNow {
    fn of(state: &TagState) -> Self {
        let digests = if state.deleted_at.is_some() {
            Box::default()
        } else {
            state.digests.clone().into_boxed_slice()
        };
        Self { digests }
    }

    /// The same rule as [`TagState::is_current_pair`]; the test `tag_now_agrees_with_tag_state`
    /// holds the two together.
    fn is_current_pair(&self, digest: &Digest) -> bool {
        self.digests.contains(digest)
    }
}

/// Every tag of the store with what decides whether its pairs are current, keyed by the
/// dataset's `repo:tag`. Loaded once per snapshot so that `finalize` spends one hash lookup per
/// pair instead of one store read.
#[derive(Debug, Default)]
pub struct CurrentTags {
    tags: HashMap<Box<str>, TagNow>,
}

impl CurrentTags {
    /// Reads the whole tags table of `snapshot`.
    pub fn load(snapshot: &ReadBatch) -> Result<Self, TxError> {
        let mut tags =
            HashMap::with_capacity(usize::try_from(snapshot.counts()?.tags).unwrap_or(0));
        snapshot.visit_tags(|repo, tag, state| {
            tags.insert(
                display_repo_tag(repo, tag).into_boxed_str(),
                TagNow::of(state),
            );
            Ok::<(), TxError>(())
        })?;
        Ok(Self { tags })
    }

    /// Whether the pair (`repo_tag`, `digest`) is current: the tag is known, not deleted, and
    /// its latest sighting showed the digest.
    pub fn is_current(&self, repo_tag: &str, digest: &Digest) -> bool {
        self.tags
            .get(repo_tag)
            .is_some_and(|t| t.is_current_pair(digest))
    }

    /// Tags loaded.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// Whether no tag was loaded.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }
}

/// Writes every line of the dataset to `out` (under `current_only`, only the lines of digests
/// some tag points at now).
pub fn write_dataset(
    snapshot: &ReadBatch,
    options: FinalizeOptions,
    out: &mut impl Write,
) -> Result<DatasetSummary, WalkError> {
    let now = CurrentTags::load(snapshot)?;
    let enrichment = Enrichment::load(snapshot)?;
    let mut configs = enrichment.configs.iter().peekable();
    let mut summary = DatasetSummary::default();
    let mut line = Vec::with_capacity(1024);
    let mut times = TimeText::default();
    let mut current: Vec<bool> = Vec::new();
    let write_config = |digest: &Digest,
                        config: &ConfigLine,
                        own: Option<&DigestEntry<'_>>,
                        summary: &mut DatasetSummary,
                        out: &mut dyn Write|
     -> Result<(), WalkError> {
        let (record, tags, current) = config_tags(snapshot, &now, digest, config, own)?;
        let current_pairs = current.iter().filter(|c| **c).count() as u64;
        if current_pairs == 0 {
            summary.not_current += 1;
            if options.current_only {
                return Ok(());
            }
        }
        let entry = DigestEntry {
            digest: *digest,
            record: &record,
            tags: &tags,
            tag_seen: &[],
            indexes: &[],
        };
        let mut line = Vec::with_capacity(1024);
        write_config_line(&mut line, &entry, &current, config);
        summary.configs += 1;
        summary.digests += 1;
        summary.pairs += tags.len() as u64;
        summary.current_pairs += current_pairs;
        summary.bytes += line.len() as u64;
        out.write_all(&line).map_err(WalkError::Io)
    };
    snapshot.visit_digests(|entry| {
        // Image IDs the store knows only from `enrich` sort in among the digests.
        while let Some((digest, config)) = configs.next_if(|(d, _)| **d < entry.digest) {
            write_config(digest, config, None, &mut summary, out)?;
        }
        if let Some((digest, config)) = configs.next_if(|(d, _)| **d == entry.digest) {
            return write_config(digest, config, Some(entry), &mut summary, out);
        }
        current.clear();
        current.extend(
            entry
                .tags
                .iter()
                .map(|tag| now.is_current(tag, &entry.digest)),
        );
        let current_pairs = current.iter().filter(|c| **c).count() as u64;
        if current_pairs == 0 {
            summary.not_current += 1;
            if options.current_only {
                return Ok(());
            }
        }
        line.clear();
        let image = enrichment.images.get(&entry.digest);
        format_line_with(&mut line, entry, &current, &mut times, |out| {
            if let (ObjectKind::Manifest, Some((config, layers))) = (entry.record.kind, image) {
                image_keys(out, config, *layers);
            }
        });
        match entry.record.kind {
            ObjectKind::Index => summary.indexes += 1,
            ObjectKind::Manifest => summary.manifests += 1,
            ObjectKind::Config => summary.configs += 1,
        }
        summary.digests += 1;
        summary.pairs += entry.tags.len() as u64;
        summary.current_pairs += current_pairs;
        summary.bytes += line.len() as u64;
        out.write_all(&line).map_err(WalkError::Io)
    })?;
    for (digest, config) in configs {
        write_config(digest, config, None, &mut summary, out)?;
    }
    Ok(summary)
}

/// What `enrich` learned, arranged for the dataset.
#[derive(Debug, Default)]
pub struct Enrichment {
    /// Image manifest digest → (image ID, layer count).
    pub images: HashMap<Digest, (Digest, usize)>,
    /// Image ID → its line.
    pub configs: BTreeMap<Digest, ConfigLine>,
}

/// One learned image ID, as its dataset line needs it.
#[derive(Debug, Clone)]
pub struct ConfigLine {
    /// The config.
    pub record: ConfigRecord,
    /// The image manifests that carry it.
    pub manifests: BTreeSet<Digest>,
    /// The store digests whose tags it carries: each manifest, or the digest Hub listed in its
    /// place.
    pub carriers: BTreeSet<Digest>,
}

impl Enrichment {
    /// Reads the `manifests` and `configs` tables (a few hundred bytes per image).
    pub fn load(snapshot: &ReadBatch) -> Result<Self, TxError> {
        let mut configs: BTreeMap<Digest, ConfigLine> = snapshot
            .configs()?
            .into_iter()
            .map(|(d, record)| {
                let line = ConfigLine {
                    record,
                    manifests: BTreeSet::new(),
                    carriers: BTreeSet::new(),
                };
                (d, line)
            })
            .collect();
        // Two passes, one record in memory at a time: the images first, then the indexes.
        let mut images = HashMap::new();
        snapshot.visit_manifests(|digest, manifest| {
            if let ManifestFact::Image { config, layers } = &manifest.fact {
                images.insert(digest, (*config, layers.len()));
                if let Some(line) = configs.get_mut(config) {
                    line.manifests.insert(digest);
                    line.carriers.insert(manifest.via.unwrap_or(digest));
                }
            }
            Ok(())
        })?;
        // An index met where Hub listed a manifest lends its tags to every platform image in it,
        // also to one learned before through another tag (whose record names no `via`).
        snapshot.visit_manifests(|digest, manifest| {
            if let ManifestFact::Index {
                manifests: children,
            } = &manifest.fact
            {
                for child in children {
                    if let Some((config, _)) = images.get(child)
                        && let Some(line) = configs.get_mut(config)
                    {
                        line.carriers.insert(manifest.via.unwrap_or(digest));
                    }
                }
            }
            Ok(())
        })?;
        Ok(Self { images, configs })
    }
}

/// The record, tags and current flags of an image ID's line: its own (when Hub listed it as a
/// `config`) and those of every carrier, merged.
pub fn config_tags(
    snapshot: &ReadBatch,
    now: &CurrentTags,
    digest: &Digest,
    config: &ConfigLine,
    own: Option<&DigestEntry<'_>>,
) -> Result<(DigestRecord, Vec<String>, Vec<bool>), TxError> {
    let mut tags: BTreeMap<String, bool> = BTreeMap::new();
    let mut span: Option<(u64, u64)> = None;
    let mut widen = |first: u64, last: u64| {
        span = Some(span.map_or((first, last), |(f, l)| (f.min(first), l.max(last))));
    };
    if let Some(own) = own {
        for tag in own.tags {
            *tags.entry(tag.clone()).or_default() |= now.is_current(tag, digest);
        }
        widen(own.record.first_seen, own.record.last_seen);
    }
    for carrier in &config.carriers {
        if let Some(info) = snapshot.digest_info(carrier)? {
            for (tag, _) in &info.tags {
                *tags.entry(tag.clone()).or_default() |= now.is_current(tag, carrier);
            }
            widen(info.record.first_seen, info.record.last_seen);
        }
    }
    let (first_seen, last_seen) =
        span.unwrap_or((config.record.learned_at, config.record.learned_at));
    let record = DigestRecord {
        kind: ObjectKind::Config,
        platform: config.record.platform.clone(),
        os_version: config.record.os_version.clone(),
        first_seen,
        last_seen,
    };
    let (names, current) = tags.into_iter().unzip();
    Ok((record, names, current))
}

fn digest_str(out: &mut Vec<u8>, digest: &Digest) {
    let mut hex = [0u8; 64];
    digest.write_hex(&mut hex);
    out.extend_from_slice(b"\"sha256:");
    out.extend_from_slice(&hex);
    out.push(b'"');
}

/// `,"image_id":…,"layers":N` of a learned manifest.
pub fn image_keys(out: &mut Vec<u8>, config: &Digest, layers: usize) {
    out.extend_from_slice(b",\"image_id\":");
    digest_str(out, config);
    out.extend_from_slice(format!(",\"layers\":{layers}").as_bytes());
}

/// `,"manifests":[…],"diff_ids":[…],"chain_id":…` of an image ID's line.
pub fn config_keys(out: &mut Vec<u8>, config: &ConfigLine) {
    let list = |out: &mut Vec<u8>, key: &[u8], digests: &mut dyn Iterator<Item = &Digest>| {
        out.extend_from_slice(key);
        for (i, d) in digests.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            digest_str(out, d);
        }
        out.push(b']');
    };
    list(out, b",\"manifests\":[", &mut config.manifests.iter());
    list(out, b",\"diff_ids\":[", &mut config.record.diff_ids.iter());
    out.extend_from_slice(b",\"chain_id\":");
    match &config.record.chain_id {
        Some(chain) => digest_str(out, chain),
        None => out.extend_from_slice(b"null"),
    }
}

/// Writes `s` as the inside of a JSON string. Names from Hub are validated and never need
/// escaping, so they are copied as they are; anything else goes through serde_json.
fn json_escaped(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.extend_from_slice(s.as_bytes());
    } else {
        // Writing to a Vec cannot fail; serde_json adds the quotes, which are dropped again.
        let quoted = serde_json::to_vec(s).expect("writing to a Vec");
        out.extend_from_slice(&quoted[1..quoted.len() - 1]);
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    json_escaped(out, s);
    out.push(b'"');
}

/// Days remembered by [`TimeText`]; a dataset's times span a few crawls, far fewer days.
const DAY_SLOTS: usize = 1024;

/// RFC 3339 text of unix seconds, without an allocation per time: two times a line made
/// `clock::rfc3339` a good part of finalize's cost. The date comes from `clock::rfc3339` once per
/// day (kept in a small direct-mapped table); the time of day is written digit by digit.
struct TimeText {
    days: Vec<(u64, [u8; 10])>,
}

impl Default for TimeText {
    fn default() -> Self {
        Self {
            days: vec![(u64::MAX, [0; 10]); DAY_SLOTS],
        }
    }
}

impl TimeText {
    fn write(&mut self, out: &mut Vec<u8>, secs: u64) {
        let day = secs / 86_400;
        let slot = &mut self.days[(day % DAY_SLOTS as u64) as usize];
        if slot.0 != day {
            let text = clock::rfc3339(day * 86_400);
            // Past the year 9999 the date is longer: such a time is written whole, uncached.
            if text.len() != 20 {
                out.extend_from_slice(clock::rfc3339(secs).as_bytes());
                return;
            }
            slot.1.copy_from_slice(&text.as_bytes()[..10]);
            slot.0 = day;
        }
        out.extend_from_slice(&slot.1);
        let rem = secs % 86_400;
        let two = |n: u64| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
        let (h, m, s) = (two(rem / 3600), two(rem % 3600 / 60), two(rem % 60));
        out.extend_from_slice(&[b'T', h[0], h[1], b':', m[0], m[1], b':', s[0], s[1], b'Z']);
    }
}

/// The dataset line of an image ID, newline included: `entry` as [`config_tags`] makes it.
pub fn write_config_line(
    out: &mut Vec<u8>,
    entry: &DigestEntry<'_>,
    current: &[bool],
    config: &ConfigLine,
) {
    format_line_with(out, entry, current, &mut TimeText::default(), |out| {
        config_keys(out, config);
    });
}

/// One dataset line, newline included. `current[i]` says whether `entry.tags[i]` points at the
/// digest now; a missing flag counts as not current.
pub fn write_line(out: &mut Vec<u8>, entry: &DigestEntry<'_>, current: &[bool]) {
    format_line(out, entry, current, &mut TimeText::default());
}

fn format_line(out: &mut Vec<u8>, entry: &DigestEntry<'_>, current: &[bool], times: &mut TimeText) {
    format_line_with(out, entry, current, times, |_| {});
}

/// [`format_line`], with `extra` writing keys after the last one.
fn format_line_with(
    out: &mut Vec<u8>,
    entry: &DigestEntry<'_>,
    current: &[bool],
    times: &mut TimeText,
    extra: impl FnOnce(&mut Vec<u8>),
) {
    let mut hex = [0u8; 64];
    out.extend_from_slice(b"{\"digest\":\"sha256:");
    entry.digest.write_hex(&mut hex);
    out.extend_from_slice(&hex);
    out.extend_from_slice(b"\",\"kind\":\"");
    out.extend_from_slice(entry.record.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"platform\":");
    match (&entry.record.platform, entry.record.kind) {
        // The `Platform` display form, written in place.
        (Some(p), ObjectKind::Manifest | ObjectKind::Config) => {
            out.push(b'"');
            json_escaped(out, &p.os);
            out.push(b'/');
            json_escaped(out, &p.architecture);
            if let Some(variant) = &p.variant {
                out.push(b'/');
                json_escaped(out, variant);
            }
            out.push(b'"');
        }
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
    out.extend_from_slice(b"],\"current\":[");
    let mut first = true;
    for (tag, _) in entry
        .tags
        .iter()
        .zip(current)
        .filter(|(_, current)| **current)
    {
        if !first {
            out.push(b',');
        }
        first = false;
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
    times.write(out, entry.record.first_seen);
    out.extend_from_slice(b"\",\"last_seen\":\"");
    times.write(out, entry.record.last_seen);
    out.push(b'"');
    extra(out);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::hub::{DigestFact, TagObservation};
    use crate::model::{Digest, Platform, RepoName};
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
            &[false, true],
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"digest\":\"sha256:0199853f6d6b20b0424f3c5694a72a62764f01e6a771b1eb48a4197848986c7e\",\"kind\":\"manifest\",\"platform\":\"linux/amd64\",\"tags\":[\"ubuntu:22.04\",\"ubuntu:jammy\"],\"current\":[\"ubuntu:jammy\"],\"indexes\":[\"sha256:3b06811b2afd352be909dd088a004166d665dc76d38b13eada33522a9d915c6f\"],\"first_seen\":\"2026-11-27T15:04:05Z\",\"last_seen\":\"2026-11-27T15:04:05Z\"}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["tags"][1], "ubuntu:jammy");
        assert_eq!(parsed["current"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn line_format_of_an_index_nobody_points_at() {
        let d = Digest::parse(
            "sha256:3b06811b2afd352be909dd088a004166d665dc76d38b13eada33522a9d915c6f",
        )
        .unwrap();
        let record = DigestRecord {
            kind: ObjectKind::Index,
            platform: None,
            os_version: None,
            first_seen: 0,
            last_seen: 1_795_791_845,
        };
        let tags = vec!["arm64v8/ubuntu:rolling".to_owned()];
        let mut out = Vec::new();
        write_line(
            &mut out,
            &DigestEntry {
                digest: d,
                record: &record,
                tags: &tags,
                tag_seen: &[(0, 0)],
                indexes: &[],
            },
            &[false],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"digest\":\"sha256:3b06811b2afd352be909dd088a004166d665dc76d38b13eada33522a9d915c6f\",\"kind\":\"index\",\"platform\":null,\"tags\":[\"arm64v8/ubuntu:rolling\"],\"current\":[],\"first_seen\":\"1970-01-01T00:00:00Z\",\"last_seen\":\"2026-11-27T15:04:05Z\"}\n"
        );
    }

    #[test]
    fn time_text_equals_clock() {
        let mut times = TimeText::default();
        let mut secs = vec![
            0,
            59,
            86_399,
            86_400,
            951_782_400,
            1_795_791_845,
            253_402_300_799,
        ];
        // Far past the year 9999, where the date grows a digit.
        secs.push(253_402_300_800);
        secs.push(u64::MAX / 1_000_000);
        // Pseudo-random times over a century, and the same day again after its slot was reused.
        let mut x = 12_345u64;
        for _ in 0..20_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            secs.push((x >> 20) % 3_200_000_000);
        }
        secs.push(1_795_791_845 + DAY_SLOTS as u64 * 86_400);
        secs.push(1_795_791_845);
        for s in secs {
            let mut out = Vec::new();
            times.write(&mut out, s);
            assert_eq!(String::from_utf8(out).unwrap(), clock::rfc3339(s), "{s}");
        }
    }

    #[test]
    fn json_escaping_equals_serde_json() {
        for s in [
            "",
            "linux",
            "a\"b",
            "back\\slash",
            "tab\there",
            "\u{1}\u{1f}",
            "é😀",
            "\u{7f}",
        ] {
            let mut out = Vec::new();
            json_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
        let platform = Platform::new("windows", "arm\"64", Some("v\n8"));
        let record = DigestRecord {
            kind: ObjectKind::Config,
            platform: Some(platform.clone()),
            os_version: None,
            first_seen: 0,
            last_seen: 0,
        };
        let mut out = Vec::new();
        write_line(
            &mut out,
            &DigestEntry {
                digest: Digest::from_bytes([1; 32]),
                record: &record,
                tags: &[],
                tag_seen: &[],
                indexes: &[],
            },
            &[],
        );
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["platform"], platform.to_string());
    }

    #[test]
    fn display_repo_tag_drops_only_library() {
        assert_eq!(display_repo_tag("library/ubuntu", "22.04"), "ubuntu:22.04");
        assert_eq!(
            display_repo_tag("arm64v8/ubuntu", "jammy"),
            "arm64v8/ubuntu:jammy"
        );
        assert_eq!(
            display_repo_tag("librarian/x", "1"),
            "librarian/x:1",
            "only the whole `library/` namespace is dropped"
        );
    }

    #[test]
    fn tag_now_agrees_with_tag_state() {
        for deleted_at in [None, Some(7)] {
            for digests in [vec![], vec![digest(1)], vec![digest(1), digest(2)]] {
                let state = TagState {
                    digest: None,
                    digests,
                    pushed: None,
                    updated: None,
                    first_seen: 1,
                    last_seen: 5,
                    run: 1,
                    deleted_at,
                };
                for d in [digest(1), digest(2), digest(3)] {
                    assert_eq!(
                        TagNow::of(&state).is_current_pair(&d),
                        state.is_current_pair(&d),
                        "{state:?} on {d}"
                    );
                }
            }
        }
    }

    #[test]
    fn image_ids_get_their_lines_in_order_with_the_tags_of_every_carrier() {
        use crate::store::{ConfigRecord, LayerRef, ManifestFact, ManifestRecord};
        let temp = TempStore::new("enriched");
        // x:a lists manifest 2 under index 1; x:b lists 4 as a manifest (under index 3), which
        // the registry says is an index holding manifest 2.
        temp.tag("library/x", "a", digest(1), digest(2), 100);
        temp.tag("library/x", "b", digest(3), digest(4), 200);
        let layer = LayerRef {
            digest: digest(7),
            size: 5,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        };
        let manifest = |fact| ManifestRecord {
            fact,
            media_type: "m".into(),
            via: None,
            learned_at: 300,
        };
        temp.store
            .write(|w| {
                w.put_manifest(
                    &digest(2),
                    &manifest(ManifestFact::Image {
                        config: digest(9),
                        layers: vec![layer],
                    }),
                )?;
                w.put_manifest(
                    &digest(4),
                    &manifest(ManifestFact::Index {
                        manifests: vec![digest(2)],
                    }),
                )?;
                w.put_config(
                    &digest(9),
                    &ConfigRecord {
                        platform: Some(Platform::new("linux", "amd64", None)),
                        os_version: None,
                        diff_ids: vec![digest(8)],
                        chain_id: Some(digest(8)),
                        created: None,
                        learned_at: 300,
                    },
                )
            })
            .unwrap();
        let (summary, values) = lines(&temp.store, FinalizeOptions::default());
        let digests: Vec<&str> = values
            .iter()
            .map(|v| v["digest"].as_str().unwrap())
            .collect();
        let want: Vec<String> = [1, 2, 3, 4, 9].map(|f| digest(f).to_string()).to_vec();
        assert_eq!(digests, want);
        assert_eq!(summary.configs, 1);
        assert_eq!(
            values[1]["image_id"],
            serde_json::json!(digest(9).to_string())
        );
        assert_eq!(values[1]["layers"], 1);
        assert!(
            values[3].get("image_id").is_none(),
            "an index has no image ID"
        );
        let config = &values[4];
        assert_eq!(
            config,
            &serde_json::json!({
                "digest": digest(9).to_string(), "kind": "config", "platform": "linux/amd64",
                "tags": ["x:a", "x:b"], "current": ["x:a", "x:b"],
                "first_seen": "1970-01-01T00:01:40Z", "last_seen": "1970-01-01T00:03:20Z",
                "manifests": [digest(2).to_string()], "diff_ids": [digest(8).to_string()],
                "chain_id": digest(8).to_string(),
            })
        );
        // The keys come in the documented order, the new ones last.
        let text = {
            let mut out = Vec::new();
            write_dataset(
                &temp.store.snapshot().unwrap(),
                FinalizeOptions::default(),
                &mut out,
            )
            .unwrap();
            String::from_utf8(out).unwrap()
        };
        let line = text.lines().last().unwrap();
        let order = [
            "\"digest\"",
            "\"kind\"",
            "\"platform\"",
            "\"tags\"",
            "\"current\"",
            "\"first_seen\"",
            "\"last_seen\"",
            "\"manifests\"",
            "\"diff_ids\"",
            "\"chain_id\"",
        ];
        let at: Vec<usize> = order.iter().map(|k| line.find(k).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{line}");
    }

    /// A scratch store, removed on drop.
    pub(super) struct TempStore {
        pub(super) store: Store,
        dir: PathBuf,
    }

    impl TempStore {
        pub(super) fn new(name: &str) -> Self {
            static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "digestmap-unit-{name}-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            let store = Store::open(&dir.join("store.redb")).unwrap();
            Self { store, dir }
        }

        pub(super) fn path(&self, name: &str) -> PathBuf {
            self.dir.join(name)
        }

        /// Records `repo:tag` pointing at `index` with one amd64 manifest under it, at `now`.
        pub(super) fn tag(&self, repo: &str, tag: &str, index: Digest, manifest: Digest, now: u64) {
            let (ns, name) = repo.split_once('/').unwrap();
            let repo = RepoName::new(ns, name).unwrap();
            let obs = TagObservation {
                tag: tag.to_owned(),
                digest: Some(index),
                pushed: None,
                updated: None,
                facts: vec![
                    DigestFact {
                        digest: index,
                        kind: ObjectKind::Index,
                        platform: None,
                        os_version: None,
                        index: None,
                    },
                    DigestFact {
                        digest: manifest,
                        kind: ObjectKind::Manifest,
                        platform: Some(Platform::new("linux", "amd64", None)),
                        os_version: None,
                        index: Some(index),
                    },
                ],
            };
            self.store
                .write(|w| w.record_tag(&repo, &obs, now, 1))
                .unwrap();
        }
    }

    impl Drop for TempStore {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    pub(super) fn digest(fill: u8) -> Digest {
        Digest::from_bytes([fill; 32])
    }

    fn lines(store: &Store, options: FinalizeOptions) -> (DatasetSummary, Vec<serde_json::Value>) {
        let mut out = Vec::new();
        let snapshot = store.snapshot().unwrap();
        let summary = write_dataset(&snapshot, options, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let values = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (summary, values)
    }

    #[test]
    fn moved_tags_leave_current_and_current_only_drops_the_old_digests() {
        let t = TempStore::new("current");
        // Crawl 1: `latest` and `1.0` on build A; crawl 2: `latest` moved to build B.
        t.tag("library/app", "1.0", digest(0xa0), digest(0xa1), 100);
        t.tag("library/app", "latest", digest(0xa0), digest(0xa1), 100);
        t.tag("arm64v8/app", "latest", digest(0xc0), digest(0xc1), 100);
        t.tag("library/app", "1.0", digest(0xa0), digest(0xa1), 200);
        t.tag("library/app", "latest", digest(0xb0), digest(0xb1), 200);
        // arm64v8/app:latest was not listed again, yet nothing marked it deleted: still current.

        let (summary, all) = lines(&t.store, FinalizeOptions::default());
        let by_digest = |d: Digest| {
            all.iter()
                .find(|v| v["digest"] == d.to_string())
                .unwrap_or_else(|| panic!("{d} missing"))
                .clone()
        };
        let a = by_digest(digest(0xa0));
        assert_eq!(a["tags"], serde_json::json!(["app:1.0", "app:latest"]));
        assert_eq!(a["current"], serde_json::json!(["app:1.0"]));
        let b1 = by_digest(digest(0xb1));
        assert_eq!(b1["tags"], serde_json::json!(["app:latest"]));
        assert_eq!(b1["current"], serde_json::json!(["app:latest"]));
        let c = by_digest(digest(0xc0));
        assert_eq!(c["current"], serde_json::json!(["arm64v8/app:latest"]));
        assert_eq!(summary.digests, 6);
        assert_eq!(summary.pairs, 8);
        assert_eq!(summary.current_pairs, 6);
        assert_eq!(summary.not_current, 0);

        // Everything of build A moves on: A's digests are no longer current anywhere.
        t.tag("library/app", "1.0", digest(0xb0), digest(0xb1), 300);
        t.tag("library/app", "latest", digest(0xb0), digest(0xb1), 300);
        let (summary, all) = lines(&t.store, FinalizeOptions::default());
        assert_eq!(summary.digests, 6);
        assert_eq!(summary.not_current, 2);
        for v in &all {
            let tags = v["tags"].as_array().unwrap();
            let current = v["current"].as_array().unwrap();
            assert!(current.iter().all(|c| tags.contains(c)), "{v}");
        }
        let (summary, current_only) = lines(&t.store, FinalizeOptions { current_only: true });
        assert_eq!(summary.digests, 4);
        assert_eq!(summary.not_current, 2);
        let kept: Vec<&str> = current_only
            .iter()
            .map(|v| v["digest"].as_str().unwrap())
            .collect();
        assert!(!kept.contains(&digest(0xa0).to_string().as_str()));
        assert!(!kept.contains(&digest(0xa1).to_string().as_str()));
        assert!(
            current_only
                .iter()
                .all(|v| !v["current"].as_array().unwrap().is_empty())
        );
    }

    #[test]
    fn finalize_is_deterministic_with_current() {
        let t = TempStore::new("determinism");
        for (i, tag) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
            let i = i as u8;
            t.tag("library/x", tag, digest(i), digest(0x80 + i % 3), 10);
            t.tag(
                "library/x",
                tag,
                digest(i + 10),
                digest(0x80 + i % 2),
                20 + u64::from(i % 2),
            );
        }
        let first = t.path("a.ndjson");
        let second = t.path("b.ndjson");
        let options = FinalizeOptions::default();
        finalize_with(&t.store, &Output::File(first.clone()), options).unwrap();
        finalize_with(&t.store, &Output::File(second.clone()), options).unwrap();
        assert_eq!(fs::read(&first).unwrap(), fs::read(&second).unwrap());
        let current_only = FinalizeOptions { current_only: true };
        finalize_with(&t.store, &Output::File(first.clone()), current_only).unwrap();
        finalize_with(&t.store, &Output::File(second.clone()), current_only).unwrap();
        assert_eq!(fs::read(&first).unwrap(), fs::read(&second).unwrap());
    }
}

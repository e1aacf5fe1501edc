//! The exact dataset a perfect crawl of the double must produce, computed from the model.
//!
//! It works on the model's typed facts (an image *is* an attestation, a digest *is* invalid)
//! instead of parsing the rendered pages, so a JSON-handling bug in the crawler cannot be
//! mirrored here. The rules are the crawler's output schema minus its time fields:
//! every valid digest a tag object lists, with its kind, platform, tags and (for platform
//! manifests) the indexes that list it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::model::{Build, Dataset, DigestKind, DigestSlot, ImageRole, Platform};

/// The expected dataset and what a crawler must leave out of it.
#[derive(Clone, Debug, Default)]
pub(super) struct Truth {
    /// One object per digest, keyed by digest.
    pub(super) entries: BTreeMap<String, Value>,
    /// Attestation entries seen, per tag object.
    pub(super) skipped_attestations: u64,
    /// Null digests seen, per tag object.
    pub(super) skipped_null_digests: u64,
    /// Invalid digests seen, per tag object.
    pub(super) skipped_invalid_digests: u64,
    /// Tags in the namespace.
    pub(super) total_tags: usize,
}

/// What is known of one digest while the truth is collected.
struct Entry {
    kind: DigestKind,
    platform: Option<Platform>,
    tags: BTreeSet<String>,
    indexes: BTreeSet<String>,
}

/// Computes the truth of a dataset.
///
/// Panics when the model gives one digest two kinds or two platforms: that is a generator bug,
/// and the truth would be ambiguous.
pub(super) fn compute(dataset: &Dataset) -> Truth {
    let mut truth = Truth::default();
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    for repo in &dataset.repos {
        let name = dataset.display_name(repo);
        for tag in &repo.tags {
            truth.total_tags += 1;
            let repo_tag = format!("{name}:{}", tag.name);
            collect_tag(repo.build_of(tag), &repo_tag, &mut entries, &mut truth);
        }
    }
    truth.entries = entries
        .into_iter()
        .map(|(digest, entry)| {
            let value = entry_json(&digest, entry);
            (digest, value)
        })
        .collect();
    truth
}

fn collect_tag(
    build: &Build,
    repo_tag: &str,
    entries: &mut BTreeMap<String, Entry>,
    truth: &mut Truth,
) {
    let kind = build.media_type.kind();
    let top = match &build.digest {
        None => None,
        Some(slot) => count_skipped(slot, truth),
    };
    // Single-platform and config tags name their one image with the top-level digest; the
    // matching images[] entry is that same object, not a second one.
    let mut index = None;
    if let Some(digest) = top {
        let platform = match kind {
            DigestKind::Index => None,
            DigestKind::Manifest | DigestKind::Config => {
                build
                    .images
                    .iter()
                    .find_map(|i| match (&i.role, i.digest.valid()) {
                        (ImageRole::Platform(p), Some(d)) if d == digest => Some(p.clone()),
                        _ => None,
                    })
            }
        };
        add(entries, digest, kind, platform, repo_tag);
        if kind == DigestKind::Index {
            index = Some(digest);
        }
    }
    for image in &build.images {
        let ImageRole::Platform(platform) = &image.role else {
            truth.skipped_attestations += 1;
            continue;
        };
        let Some(digest) = count_skipped(&image.digest, truth) else {
            continue;
        };
        if kind != DigestKind::Index && top == Some(digest) {
            continue;
        }
        let entry = add(
            entries,
            digest,
            DigestKind::Manifest,
            Some(platform.clone()),
            repo_tag,
        );
        if let Some(index) = index {
            entry.indexes.insert(index.to_owned());
        }
    }
}

/// The valid digest of a slot; counts the slot as skipped when it is not one.
fn count_skipped<'a>(slot: &'a DigestSlot, truth: &mut Truth) -> Option<&'a str> {
    match slot {
        DigestSlot::Valid(d) => Some(d),
        DigestSlot::Invalid(_) => {
            truth.skipped_invalid_digests += 1;
            None
        }
        DigestSlot::Null => {
            truth.skipped_null_digests += 1;
            None
        }
    }
}

fn add<'e>(
    entries: &'e mut BTreeMap<String, Entry>,
    digest: &str,
    kind: DigestKind,
    platform: Option<Platform>,
    repo_tag: &str,
) -> &'e mut Entry {
    let entry = entries.entry(digest.to_owned()).or_insert_with(|| Entry {
        kind,
        platform: platform.clone(),
        tags: BTreeSet::new(),
        indexes: BTreeSet::new(),
    });
    assert!(
        entry.kind == kind && entry.platform == platform,
        "generator bug: {digest} is both {:?} {:?} and {kind:?} {platform:?} (at {repo_tag})",
        entry.kind,
        entry.platform,
    );
    entry.tags.insert(repo_tag.to_owned());
    entry
}

fn entry_json(digest: &str, entry: Entry) -> Value {
    let mut map = Map::new();
    map.insert("digest".into(), Value::from(digest));
    map.insert("kind".into(), Value::from(entry.kind.as_str()));
    map.insert(
        "platform".into(),
        entry
            .platform
            .as_ref()
            .map_or(Value::Null, |p| Value::from(p.label())),
    );
    if let Some(version) = entry
        .platform
        .as_ref()
        .and_then(|p| p.os_version.as_deref())
        .filter(|v| !v.is_empty())
    {
        map.insert("os_version".into(), Value::from(version));
    }
    map.insert(
        "tags".into(),
        entry.tags.into_iter().map(Value::from).collect(),
    );
    if entry.kind == DigestKind::Manifest {
        map.insert(
            "indexes".into(),
            entry.indexes.into_iter().map(Value::from).collect(),
        );
    }
    Value::Object(map)
}

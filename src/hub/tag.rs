//! From a Hub tag object to digest facts.
//!
//! The rules, from what Docker Hub's tag objects hold in practice:
//! - the tag's own `digest` names an index for multi-platform media types, a platform manifest for
//!   single-platform ones (it then equals `images[0].digest`), and an image config for the legacy
//!   `application/vnd.docker.container.image.v1+json` type;
//! - every `images[].digest` is a platform manifest, listed under the tag's index when there is one;
//! - tags pushed before ~2021 have no top-level digest but do have image digests;
//! - attestation entries (`unknown/unknown`), null digests and malformed digests are left out and
//!   counted, so the summary can say what was skipped and why;
//! - a platform, `os_version` or push time that breaks its rule ([`Platform::parse`],
//!   [`validate_os_version`], [`validate_push_time`]) is left out and counted, and the digest is
//!   kept without it: the digest is the fact that matters, and a hostile field must never reach the
//!   store, the dataset or a terminal.
//!
//! Each skipped record except attestations and null digests (which real pages hold by the
//! thousand) is logged as a warning whose target is `digestmap::skipped::<kind>`, the kind as in
//! [`Skips`]; the binary shows a few of each kind and counts the rest.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::page::{ImageEntry, TagEntry};
use crate::model::{
    Digest, ObjectKind, Platform, validate_os_version, validate_push_time, validate_tag,
};

/// What a crawl skipped, by reason. Counted per occurrence in a tag object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skips {
    /// `unknown/unknown` attestation manifests.
    pub attestations: u64,
    /// Image entries whose digest is null or missing.
    pub null_digests: u64,
    /// Digests that are not `sha256:` + 64 lowercase hex.
    pub invalid_digests: u64,
    /// Tag objects without a usable name.
    pub invalid_tags: u64,
    /// Repository entries without a usable name.
    pub invalid_repos: u64,
    /// Tag objects of the wrong shape (say an `images` that is not a list of objects): the
    /// tag is left out, the rest of its page is kept.
    pub malformed_tags: u64,
    /// Platforms (os, architecture, variant) that break their rule; the digest was kept.
    pub invalid_platforms: u64,
    /// `os_version`s that break their rule; the digest was kept.
    pub invalid_os_versions: u64,
    /// Push times that are not RFC 3339; the tag was kept.
    pub invalid_push_times: u64,
}

impl Skips {
    /// Adds another count into this one.
    pub fn add(&mut self, other: &Skips) {
        self.attestations += other.attestations;
        self.null_digests += other.null_digests;
        self.invalid_digests += other.invalid_digests;
        self.invalid_tags += other.invalid_tags;
        self.invalid_repos += other.invalid_repos;
        self.malformed_tags += other.malformed_tags;
        self.invalid_platforms += other.invalid_platforms;
        self.invalid_os_versions += other.invalid_os_versions;
        self.invalid_push_times += other.invalid_push_times;
    }

    /// The total of all reasons.
    pub fn total(&self) -> u64 {
        self.attestations
            + self.null_digests
            + self.invalid_digests
            + self.invalid_tags
            + self.invalid_repos
            + self.malformed_tags
            + self.invalid_platforms
            + self.invalid_os_versions
            + self.invalid_push_times
    }
}

/// One digest as a tag object shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestFact {
    /// The digest.
    pub digest: Digest,
    /// What it names.
    pub kind: ObjectKind,
    /// The platform, for manifests and configs when Hub gives one.
    pub platform: Option<Platform>,
    /// Windows build number, when Hub gives a non-empty one.
    pub os_version: Option<String>,
    /// The index this manifest was listed under, if the tag has one.
    pub index: Option<Digest>,
}

/// A validated tag object: its name, what it pointed at, and every digest fact it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagObservation {
    /// The tag name (validated).
    pub tag: String,
    /// The tag's own digest, when present and valid.
    pub digest: Option<Digest>,
    /// Hub's push time of the tag, as Hub wrote it.
    pub pushed: Option<String>,
    /// Hub's `last_updated` of the tag (else its push time), as Hub wrote it: what Hub sorts tag
    /// listings by.
    pub updated: Option<String>,
    /// Every digest the tag shows, the tag's own first, without duplicates.
    pub facts: Vec<DigestFact>,
}

const CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";

/// Classifies what the tag's own digest names, from its media type, or from the shape of
/// `images` when the media type is missing.
fn top_level_kind(entry: &TagEntry, digest: &Digest, images: &[Image]) -> ObjectKind {
    match entry.media_type.as_deref().map(str::to_ascii_lowercase) {
        Some(m) if m.contains("manifest.list") || m.contains("image.index") => ObjectKind::Index,
        Some(m) if m == CONFIG_MEDIA_TYPE => ObjectKind::Config,
        Some(m) if m.contains("manifest") => ObjectKind::Manifest,
        _ => {
            // No (known) media type: an index lists platform manifests other than itself.
            if images.iter().all(|(d, _, _)| d == digest) {
                ObjectKind::Manifest
            } else {
                ObjectKind::Index
            }
        }
    }
}

fn parse_digest(text: &str, skips: &mut Skips, context: &dyn Fn() -> String) -> Option<Digest> {
    match Digest::parse(text) {
        Ok(d) => Some(d),
        Err(err) => {
            skips.invalid_digests += 1;
            tracing::warn!(
                target: "digestmap::skipped::invalid_digests",
                "skipped an invalid digest in {}: {err}",
                context()
            );
            None
        }
    }
}

/// A platform image entry: its digest, its platform and `os_version` when valid.
type Image = (Digest, Option<Platform>, Option<String>);

/// The platform of a kept manifest: `None` when Hub gave none, or (counted and logged) when a
/// part breaks the rule of [`Platform::parse`].
fn kept_platform(
    image: &ImageEntry,
    skips: &mut Skips,
    context: &dyn Fn() -> String,
) -> Option<Platform> {
    match Platform::parse(
        image.os.as_deref().unwrap_or(""),
        image.architecture.as_deref().unwrap_or(""),
        image.variant.as_deref(),
    ) {
        Ok(p) => Some(p).filter(|p| !p.os.is_empty() || !p.architecture.is_empty()),
        Err(err) => {
            skips.invalid_platforms += 1;
            tracing::warn!(
                target: "digestmap::skipped::invalid_platforms",
                "left out an invalid platform in {}: {err}",
                context()
            );
            None
        }
    }
}

/// The entry's non-blank `os_version`, or `None` (counted and logged when it breaks the rule).
fn parse_os_version(
    image: &ImageEntry,
    skips: &mut Skips,
    context: &dyn Fn() -> String,
) -> Option<String> {
    let text = image
        .os_version
        .as_deref()
        .filter(|v| !v.trim().is_empty())?;
    match validate_os_version(text) {
        Ok(()) => Some(text.to_owned()),
        Err(err) => {
            skips.invalid_os_versions += 1;
            tracing::warn!(
                target: "digestmap::skipped::invalid_os_versions",
                "left out an invalid os_version in {}: {err}",
                context()
            );
            None
        }
    }
}

/// The tag's `tag_last_pushed` and `last_updated`, each passed over (counted and logged) when
/// present but not RFC 3339.
fn push_times(
    entry: &TagEntry,
    skips: &mut Skips,
    context: &dyn Fn() -> String,
) -> (Option<String>, Option<String>) {
    let mut valid = |field: &Option<String>| {
        field
            .as_ref()
            .filter(|text| match validate_push_time(text) {
                Ok(()) => true,
                Err(err) => {
                    skips.invalid_push_times += 1;
                    tracing::warn!(
                        target: "digestmap::skipped::invalid_push_times",
                        "left out an invalid push time of {}: {err}",
                        context()
                    );
                    false
                }
            })
            .cloned()
    };
    (valid(&entry.tag_last_pushed), valid(&entry.last_updated))
}

/// Turns one tag object into an observation, counting what it leaves out in `skips`.
/// Returns `None` when the tag has no usable name.
pub fn observe_tag(entry: &TagEntry, repo: &str, skips: &mut Skips) -> Option<TagObservation> {
    let Some(name) = entry.name.as_deref() else {
        skips.invalid_tags += 1;
        tracing::warn!(
            target: "digestmap::skipped::invalid_tag_names",
            "skipped a tag object without a name in {repo}"
        );
        return None;
    };
    if let Err(err) = validate_tag(name) {
        skips.invalid_tags += 1;
        tracing::warn!(
            target: "digestmap::skipped::invalid_tag_names",
            "skipped a tag of {repo}: {err}"
        );
        return None;
    }
    if entry.malformed {
        skips.malformed_tags += 1;
        tracing::warn!("skipped the tag {repo}:{name}: its `images` is not a list of objects");
        return None;
    }
    let context = || format!("{repo}:{name}");

    // Platform images, attestations and broken entries removed.
    let mut images: Vec<Image> = Vec::with_capacity(entry.images.len());
    for image in &entry.images {
        // By `os` and `architecture` alone, whatever else the entry holds: an attestation with
        // a broken variant is still not an image.
        let is_attestation = image.os.as_deref() == Some("unknown")
            && image.architecture.as_deref() == Some("unknown");
        if is_attestation {
            skips.attestations += 1;
            continue;
        }
        let Some(text) = image.digest.as_deref() else {
            skips.null_digests += 1;
            continue;
        };
        let Some(digest) = parse_digest(text, skips, &context) else {
            continue;
        };
        let platform = kept_platform(image, skips, &context);
        let os_version = parse_os_version(image, skips, &context);
        images.push((digest, platform, os_version));
    }

    let top = entry
        .digest
        .as_deref()
        .and_then(|text| parse_digest(text, skips, &context));

    let mut facts = Vec::with_capacity(images.len() + 1);
    let mut index = None;
    if let Some(digest) = top {
        let kind = top_level_kind(entry, &digest, &images);
        let (platform, os_version) = match kind {
            ObjectKind::Index => {
                index = Some(digest);
                (None, None)
            }
            // A platform manifest or config: its platform is that of the image entry with the same
            // digest, or of the only entry there is.
            ObjectKind::Manifest | ObjectKind::Config => images
                .iter()
                .find(|(d, _, _)| *d == digest)
                .or(if images.len() == 1 {
                    images.first()
                } else {
                    None
                })
                .map(|(_, p, v)| (p.clone(), v.clone()))
                .unwrap_or((None, None)),
        };
        facts.push(DigestFact {
            digest,
            kind,
            platform,
            os_version,
            index: None,
        });
    }
    // A set, not a scan of `facts`: a hostile 16 MiB page fits one tag with ~200,000 images, and
    // scanning made that quadratic (minutes of CPU for one page, tests/quirks.rs).
    let mut seen: HashSet<Digest> = facts.iter().map(|f| f.digest).collect();
    for (digest, platform, os_version) in images {
        if !seen.insert(digest) {
            continue;
        }
        facts.push(DigestFact {
            digest,
            kind: ObjectKind::Manifest,
            platform,
            os_version,
            index,
        });
    }

    // Each time stands in for the other when only one is valid, as Hub sorts by `last_updated`
    // and the push time is what tags are grouped by.
    let (pushed, updated) = push_times(entry, skips, &context);
    Some(TagObservation {
        tag: name.to_owned(),
        digest: top,
        pushed: pushed.clone().or_else(|| updated.clone()),
        updated: updated.or(pushed),
        facts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::page::TagEntry;

    fn tag(json: &str) -> TagEntry {
        serde_json::from_str(json).unwrap()
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    #[test]
    fn sample_without_top_level_digest() {
        let entry = tag(include_str!("../../tests/data/hub-tag-without-digest.json"));
        let mut skips = Skips::default();
        let obs = observe_tag(&entry, "rust", &mut skips).unwrap();
        assert_eq!(obs.digest, None);
        assert_eq!(obs.facts.len(), 4);
        assert!(
            obs.facts
                .iter()
                .all(|f| f.kind == ObjectKind::Manifest && f.index.is_none())
        );
        let platforms: Vec<String> = obs
            .facts
            .iter()
            .map(|f| f.platform.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(
            platforms,
            ["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/386"]
        );
        assert_eq!(skips, Skips::default());
    }

    #[test]
    fn index_with_attestations_and_windows() {
        let json = format!(
            r#"{{"name":"ltsc","digest":"{D1}","media_type":"application/vnd.oci.image.index.v1+json",
            "images":[{{"digest":"{D2}","os":"windows","architecture":"amd64","os_version":"10.0.20348.2849"}},
                      {{"digest":"{D3}","os":"unknown","architecture":"unknown"}},
                      {{"digest":null,"os":"linux","architecture":"arm64","variant":"v8"}},
                      {{"digest":"sha256:ABC","os":"linux","architecture":"s390x"}}]}}"#
        );
        let mut skips = Skips::default();
        let obs = observe_tag(&tag(&json), "x", &mut skips).unwrap();
        assert_eq!(obs.facts.len(), 2);
        assert_eq!(obs.facts[0].kind, ObjectKind::Index);
        assert_eq!(obs.facts[0].platform, None);
        assert_eq!(obs.facts[1].kind, ObjectKind::Manifest);
        assert_eq!(obs.facts[1].index, Some(Digest::parse(D1).unwrap()));
        assert_eq!(obs.facts[1].os_version.as_deref(), Some("10.0.20348.2849"));
        assert_eq!(skips.attestations, 1);
        assert_eq!(skips.null_digests, 1);
        assert_eq!(skips.invalid_digests, 1);
    }

    #[test]
    fn single_platform_and_config_tags() {
        let single = format!(
            r#"{{"name":"old","digest":"{D1}","media_type":"application/vnd.docker.distribution.manifest.v1+prettyjws",
            "last_updated":null,"images":[{{"digest":"{D1}","os":"linux","architecture":"amd64","last_pushed":null}}]}}"#
        );
        let obs = observe_tag(&tag(&single), "x", &mut Skips::default()).unwrap();
        assert_eq!(obs.facts.len(), 1);
        assert_eq!(obs.facts[0].kind, ObjectKind::Manifest);
        assert_eq!(
            obs.facts[0].platform.as_ref().unwrap().to_string(),
            "linux/amd64"
        );

        let config = format!(
            r#"{{"name":"c","digest":"{D2}","media_type":"application/vnd.docker.container.image.v1+json",
            "images":[{{"digest":"{D2}","os":"linux","architecture":"amd64"}}]}}"#
        );
        let obs = observe_tag(&tag(&config), "x", &mut Skips::default()).unwrap();
        assert_eq!(obs.facts.len(), 1);
        assert_eq!(obs.facts[0].kind, ObjectKind::Config);

        let empty = format!(
            r#"{{"name":"e","digest":"{D3}","media_type":"application/vnd.docker.distribution.manifest.list.v2+json","images":[]}}"#
        );
        let obs = observe_tag(&tag(&empty), "x", &mut Skips::default()).unwrap();
        assert_eq!(obs.facts.len(), 1);
        assert_eq!(obs.facts[0].kind, ObjectKind::Index);
    }

    #[test]
    fn bad_tag_names_are_skipped() {
        let mut skips = Skips::default();
        for name in ["\"../x\"", "\"a b\"", "null", "\"a\\u0000b\"", "\"x/y\""] {
            let json = format!(r#"{{"name":{name},"digest":"{D1}"}}"#);
            assert!(observe_tag(&tag(&json), "x", &mut skips).is_none());
        }
        assert_eq!(skips.invalid_tags, 5);
    }
}

//! Deciding what a saved image is, from an index of the official images (pure: no I/O beyond
//! the [`ImageIndex`] it is given).
//!
//! - **Exact**: the image ID, or a manifest digest the input gives, is an official image's.
//! - **Base**: else the longest prefix of the image's layer chain whose ChainID is an official
//!   image's *whole* chain: that image is the base, with the layers it covers of the total and
//!   the user's layers above it. A chain equal to an official image's whole chain but with
//!   another image ID (a rebuild that changed only metadata, `ENV` say) is a base with no layer
//!   on top.
//! - **Ancestry**: every shorter prefix that is an official image's whole chain, longest first
//!   (`python:3.12-bookworm` → `debian:bookworm`).
//! - Several official images with one chain (the same layers released under two repositories, or
//!   two image IDs with equal layers) are all listed: never one picked silently.
//! - **An index digest** (a manifest list or OCI index: a multi-platform tag's digest, what
//!   `RepoDigests` hold, and what `docker image inspect` gives as `Id` with Docker's containerd
//!   image store) is no image: when nothing else the input gives is an official image, the index's
//!   platform images are. An input that names its platform (inspect's `Os`/`Architecture`/
//!   `Variant`) is that platform's image; a bare digest is every platform image of the index, in
//!   one answer listing them (platform order), since a bare digest cannot say which one is meant.
//! - Tags of a found image are sorted most specific version first (`3.12.1-bookworm` before
//!   `3.12-bookworm`, `3.12`, `3`, `bookworm`, `latest`); those not current any more are "moved",
//!   with the image the tag points at now (same platform) when the index knows it.

use std::cmp::Reverse;
use std::fmt;

use crate::model::Digest;
use crate::registry::config::chain_ids;

/// An official image as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfficialImage {
    /// The image ID; `None` for a platform manifest not enriched yet.
    pub image_id: Option<Digest>,
    /// `os/architecture[/variant]`.
    pub platform: Option<String>,
    /// Windows build, when known.
    pub os_version: Option<String>,
    /// Every `repo:tag` seen on it.
    pub tags: Vec<String>,
    /// The tags pointing at it now.
    pub current: Vec<String>,
    /// Its platform manifests' digests.
    pub manifests: Vec<Digest>,
    /// Its layers' diff_ids, bottom first; `None` when not enriched yet.
    pub diff_ids: Option<Vec<Digest>>,
    /// First and last seen (RFC 3339).
    pub first_seen: String,
    /// Last seen (RFC 3339).
    pub last_seen: String,
}

/// What a prefix of a digest names in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixMatch {
    /// No image ID or manifest digest starts with it.
    None,
    /// Exactly one.
    One(Digest),
    /// Several: two of them.
    Ambiguous(Digest, Digest),
}

/// The official images' identities and layer chains, as a store or a dataset file holds them.
///
/// A store implements it with its `configs` table (image ID → config record with platform,
/// tags, current tags, manifests, diff_ids, first/last seen), its manifest records (manifest
/// digest → image ID, or none yet), a `chains` table keyed by ChainID (of every prefix; this
/// trait asks only for images whose *whole* chain it is), and its tags table (a tag's current
/// digests).
pub trait ImageIndex {
    /// Why the index could not answer.
    type Error: fmt::Display;

    /// The official image whose image ID, or one of whose platform manifests, is `digest`.
    fn by_digest(&self, digest: &Digest) -> Result<Option<OfficialImage>, Self::Error>;
    /// The official images whose whole layer chain has ChainID `chain_id`.
    fn by_chain(&self, chain_id: &Digest) -> Result<Vec<OfficialImage>, Self::Error>;
    /// The image ID `repo_tag` points at now on `platform`, when known.
    fn current_image(
        &self,
        repo_tag: &str,
        platform: Option<&str>,
    ) -> Result<Option<Digest>, Self::Error>;
    /// The platform images of the index `digest` (a manifest list or OCI index), each as
    /// [`ImageIndex::by_digest`] answers its platform manifest; empty when `digest` is no index
    /// the index knows, or none of its platform manifests is answered.
    fn index_images(&self, digest: &Digest) -> Result<Vec<OfficialImage>, Self::Error>;
    /// Which image ID, manifest digest or index digest starts with `hex` (at least 12 lowercase
    /// hex characters).
    fn resolve_prefix(&self, hex: &str) -> Result<PrefixMatch, Self::Error>;
    /// How many official platform images the index holds without their image ID or layers (not
    /// enriched yet): a base among them cannot be found.
    fn unenriched(&self) -> Result<u64, Self::Error>;
}

/// A tag of a found image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagMatch {
    /// `repo:tag`.
    pub repo_tag: String,
    /// Whether it points at the image now.
    pub current: bool,
    /// For a tag that moved: the image ID it points at now (same platform), when known.
    pub now: Option<Digest>,
}

/// An official image found, with its tags ordered and their state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The image.
    pub image: OfficialImage,
    /// Its tags, most specific version first.
    pub tags: Vec<TagMatch>,
}

/// One step of the ancestry: the official images whose whole chain is the image's first
/// `layers` layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// Layers matched.
    pub layers: usize,
    /// The images (more than one: ambiguous).
    pub images: Vec<Found>,
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The image is an official image.
    Exact,
    /// The image is built on an official image.
    Base,
    /// No official image is known in it.
    NotFound,
}

impl Verdict {
    /// Its name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Base => "base",
            Self::NotFound => "none",
        }
    }
}

/// What an image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identification {
    /// The verdict.
    pub verdict: Verdict,
    /// Exact: the official image(s) with its ID or manifest digest.
    pub exact: Vec<Found>,
    /// Every official image whose whole chain is a prefix of the image's, longest first; for a
    /// base, the first level is the base. An exact match's own chain is left out.
    pub ancestry: Vec<Level>,
    /// The index digests the exact images were found through (an index digest given: its
    /// platform images), else empty.
    pub indexes: Vec<Digest>,
    /// The image's layer count, when known.
    pub total_layers: Option<usize>,
    /// Things the reader must know: partial enrichment, a bare digest without layers.
    pub notes: Vec<String>,
}

/// Identifies `image` against `index`.
pub fn identify<I: ImageIndex>(
    image: &super::SavedImage,
    index: &I,
) -> Result<Identification, I::Error> {
    let mut exact: Vec<Found> = Vec::new();
    let mut notes = Vec::new();
    for digest in image.image_id.iter().chain(&image.digests) {
        if let Some(found) = index.by_digest(digest)?
            && !exact.iter().any(|f| same_image(&f.image, &found))
        {
            exact.push(found_with_tags(found, index)?);
        }
    }
    let mut indexes = Vec::new();
    if exact.is_empty() {
        for digest in image.image_id.iter().chain(&image.digests) {
            let images = platform_images(index.index_images(digest)?, image.platform.as_deref());
            match images {
                Ok(images) => {
                    for found in images {
                        if !exact.iter().any(|f| same_image(&f.image, &found)) {
                            exact.push(found_with_tags(found, index)?);
                        }
                    }
                    if !indexes.contains(digest) {
                        notes.push(index_note(digest, image, exact.len()));
                        indexes.push(*digest);
                    }
                }
                Err(Some(platforms)) => notes.push(format!(
                    "{digest} is an index (a multi-platform image) with no {} image: its platform images are {platforms}",
                    image.platform.as_deref().unwrap_or_default()
                )),
                Err(None) => {}
            }
        }
    }
    let mut ancestry: Vec<Level> = Vec::new();
    if let Some(diff_ids) = &image.diff_ids {
        let chains = chain_ids(diff_ids);
        for (i, chain) in chains.iter().enumerate().rev() {
            let mut images = Vec::new();
            for official in index.by_chain(chain)? {
                if exact.iter().any(|f| same_image(&f.image, &official)) {
                    continue;
                }
                images.push(found_with_tags(official, index)?);
            }
            if !images.is_empty() {
                images.sort_by_key(first_tag);
                ancestry.push(Level {
                    layers: i + 1,
                    images,
                });
            }
        }
    } else {
        notes.push("no layers known (a bare digest): only an exact match can be found".into());
    }
    if exact.iter().any(|f| f.image.diff_ids.is_none()) {
        notes.push(
            "this official image's image ID and layers are not in the index yet (not enriched): run `digestmap enrich`, then `digestmap finalize`".into(),
        );
    }
    let verdict = if !exact.is_empty() {
        Verdict::Exact
    } else if !ancestry.is_empty() {
        Verdict::Base
    } else {
        Verdict::NotFound
    };
    if verdict != Verdict::Exact {
        let missing = index.unenriched()?;
        if missing > 0 {
            notes.push(format!(
                "{missing} official platform images have no image ID or layers in the index yet (partly enriched): a longer base may be among them; run `digestmap enrich`, then `digestmap finalize`"
            ));
        }
    }
    Ok(Identification {
        verdict,
        exact,
        ancestry,
        indexes,
        total_layers: image.diff_ids.as_ref().map(Vec::len),
        notes,
    })
}

/// The platform images of an index that answer an image on `platform` (all of them when the
/// input names none), in platform order; `Err(None)` when the index has none (it is no index),
/// `Err(Some(platforms))` when none is on `platform`, naming those it has.
fn platform_images(
    mut images: Vec<OfficialImage>,
    platform: Option<&str>,
) -> Result<Vec<OfficialImage>, Option<String>> {
    if images.is_empty() {
        return Err(None);
    }
    images.sort_by(|a, b| {
        (&a.platform, a.image_id, &a.manifests).cmp(&(&b.platform, b.image_id, &b.manifests))
    });
    let Some(platform) = platform else {
        return Ok(images);
    };
    let (on, off): (Vec<_>, Vec<_>) = images
        .into_iter()
        .partition(|i| i.platform.as_deref() == Some(platform));
    if on.is_empty() {
        let names: Vec<&str> = off
            .iter()
            .map(|i| i.platform.as_deref().unwrap_or("unknown"))
            .collect();
        return Err(Some(names.join(", ")));
    }
    Ok(on)
}

/// Says that `digest`, which the input gave, is an index answered by its platform images.
fn index_note(digest: &Digest, image: &super::SavedImage, found: usize) -> String {
    let what = if image.image_id == Some(*digest) {
        "the image ID given is the digest of an index (a multi-platform image), as Docker's containerd image store shows it"
    } else {
        "the digest given is that of an index (a multi-platform image)"
    };
    match &image.platform {
        Some(platform) => format!("{what}: {digest}; answered with its {platform} image"),
        None if found == 1 => format!("{what}: {digest}; answered with its one platform image"),
        None => format!("{what}: {digest}; answered with its {found} platform images"),
    }
}

fn same_image(a: &OfficialImage, b: &OfficialImage) -> bool {
    match (a.image_id, b.image_id) {
        (Some(x), Some(y)) => x == y,
        _ => a.manifests == b.manifests,
    }
}

fn first_tag(found: &Found) -> String {
    found
        .tags
        .first()
        .map(|t| t.repo_tag.clone())
        .unwrap_or_default()
}

fn found_with_tags<I: ImageIndex>(image: OfficialImage, index: &I) -> Result<Found, I::Error> {
    let mut names = image.tags.clone();
    sort_tags(&mut names);
    let mut tags = Vec::with_capacity(names.len());
    for repo_tag in names {
        let current = image.current.contains(&repo_tag);
        let now = if current {
            None
        } else {
            index
                .current_image(&repo_tag, image.platform.as_deref())?
                .filter(|now| Some(*now) != image.image_id)
        };
        tags.push(TagMatch {
            repo_tag,
            current,
            now,
        });
    }
    Ok(Found { image, tags })
}

/// Sorts `repo:tag`s most specific version first: by repository, then more numeric version
/// components first (`3.12.1` before `3.12` before `3`), then more `-` parts (a variant names more:
/// `3.12-bookworm` before `3.12`), then by text.
pub fn sort_tags(tags: &mut [String]) {
    tags.sort_by_cached_key(|repo_tag| {
        let (repo, tag) = repo_tag.rsplit_once(':').unwrap_or((repo_tag, ""));
        let version = tag.split('-').next().unwrap_or("");
        let components = version
            .split('.')
            .take_while(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            .count();
        let parts = tag.split('-').count();
        (
            repo.to_owned(),
            Reverse(components),
            Reverse(parts),
            tag.to_owned(),
        )
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::identify::SavedImage;

    fn d(n: u8) -> Digest {
        Digest::from_bytes([n; 32])
    }

    /// An index held in maps: the shape the dataset and the store both give.
    #[derive(Default)]
    struct MapIndex {
        images: Vec<OfficialImage>,
        /// Index digest → its platform manifests.
        indexes: BTreeMap<Digest, Vec<Digest>>,
        current: BTreeMap<String, Digest>,
        unenriched: u64,
    }

    impl ImageIndex for MapIndex {
        type Error = String;
        fn by_digest(&self, digest: &Digest) -> Result<Option<OfficialImage>, String> {
            Ok(self
                .images
                .iter()
                .find(|i| i.image_id == Some(*digest) || i.manifests.contains(digest))
                .cloned())
        }
        fn by_chain(&self, chain_id: &Digest) -> Result<Vec<OfficialImage>, String> {
            Ok(self
                .images
                .iter()
                .filter(|i| {
                    i.diff_ids
                        .as_ref()
                        .and_then(|ids| chain_ids(ids).pop())
                        .is_some_and(|c| c == *chain_id)
                })
                .cloned()
                .collect())
        }
        fn index_images(&self, digest: &Digest) -> Result<Vec<OfficialImage>, String> {
            let children = self.indexes.get(digest).cloned().unwrap_or_default();
            Ok(children
                .iter()
                .filter_map(|c| self.by_digest(c).unwrap())
                .collect())
        }
        fn current_image(&self, tag: &str, _: Option<&str>) -> Result<Option<Digest>, String> {
            Ok(self.current.get(tag).copied())
        }
        fn resolve_prefix(&self, _: &str) -> Result<PrefixMatch, String> {
            Ok(PrefixMatch::None)
        }
        fn unenriched(&self) -> Result<u64, String> {
            Ok(self.unenriched)
        }
    }

    fn official(id: u8, layers: &[u8], tags: &[&str], current: &[&str]) -> OfficialImage {
        OfficialImage {
            image_id: Some(d(id)),
            platform: Some("linux/amd64".into()),
            os_version: None,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            current: current.iter().map(|t| (*t).to_owned()).collect(),
            manifests: vec![d(id + 100)],
            diff_ids: Some(layers.iter().map(|&l| d(l)).collect()),
            first_seen: "2026-01-01T00:00:00Z".into(),
            last_seen: "2026-02-01T00:00:00Z".into(),
        }
    }

    fn saved(id: u8, layers: &[u8]) -> SavedImage {
        SavedImage {
            label: "test".into(),
            image_id: Some(d(id)),
            digests: Vec::new(),
            diff_ids: Some(layers.iter().map(|&l| d(l)).collect()),
            platform: None,
            repo_tags: Vec::new(),
        }
    }

    /// The verdict, the exact images' first tags, and per ancestry level its layers and first tags.
    type Summary = (Verdict, Vec<String>, Vec<(usize, Vec<String>)>);

    fn summary(id: &Identification) -> Summary {
        let name = |f: &Found| {
            f.tags
                .first()
                .map(|t| t.repo_tag.clone())
                .unwrap_or_default()
        };
        (
            id.verdict,
            id.exact.iter().map(name).collect(),
            id.ancestry
                .iter()
                .map(|l| (l.layers, l.images.iter().map(name).collect()))
                .collect(),
        )
    }

    #[test]
    fn verdicts() {
        let index = MapIndex {
            images: vec![
                official(1, &[10], &["debian:bookworm"], &["debian:bookworm"]),
                official(2, &[10, 11, 12], &["python:3.12"], &["python:3.12"]),
                official(3, &[20], &["alpine:3.20"], &["alpine:3.20"]),
                official(4, &[20], &["other:1"], &["other:1"]),
            ],
            ..MapIndex::default()
        };
        let s = |v: &[&str]| v.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
        let table = [
            // The official image itself: exact, with its ancestry below it.
            (
                saved(2, &[10, 11, 12]),
                (
                    Verdict::Exact,
                    s(&["python:3.12"]),
                    vec![(1, s(&["debian:bookworm"]))],
                ),
            ),
            // Two user layers on python: base python (3 of 5), then debian.
            (
                saved(9, &[10, 11, 12, 13, 14]),
                (
                    Verdict::Base,
                    vec![],
                    vec![(3, s(&["python:3.12"])), (1, s(&["debian:bookworm"]))],
                ),
            ),
            // Same layers as python, another config: base with nothing on top.
            (
                saved(9, &[10, 11, 12]),
                (
                    Verdict::Base,
                    vec![],
                    vec![(3, s(&["python:3.12"])), (1, s(&["debian:bookworm"]))],
                ),
            ),
            // Diverges after debian's layer: debian only.
            (
                saved(9, &[10, 99, 12]),
                (Verdict::Base, vec![], vec![(1, s(&["debian:bookworm"]))]),
            ),
            // Two official images share one chain: both listed.
            (
                saved(9, &[20, 21]),
                (
                    Verdict::Base,
                    vec![],
                    vec![(1, s(&["alpine:3.20", "other:1"]))],
                ),
            ),
            // Nothing official: none. Scratch (no layers): none.
            (saved(9, &[50, 51]), (Verdict::NotFound, vec![], vec![])),
            (saved(9, &[]), (Verdict::NotFound, vec![], vec![])),
        ];
        for (image, want) in table {
            let got = identify(&image, &index).unwrap();
            assert_eq!(summary(&got), want, "{:?}", image.diff_ids);
            assert!(got.notes.is_empty());
        }
    }

    #[test]
    fn moved_tags_and_partial_enrichment() {
        let mut old = official(
            1,
            &[10],
            &[
                "debian:bookworm",
                "debian:12",
                "debian:12.5",
                "debian:latest",
            ],
            &["debian:12.5"],
        );
        old.manifests = vec![d(101)];
        let index = MapIndex {
            images: vec![old],
            current: [
                ("debian:bookworm".to_owned(), d(7)),
                ("debian:12".to_owned(), d(7)),
            ]
            .into_iter()
            .collect(),
            unenriched: 5,
            ..MapIndex::default()
        };
        let got = identify(&saved(9, &[10, 11]), &index).unwrap();
        let tags: Vec<_> = got.ancestry[0].images[0]
            .tags
            .iter()
            .map(|t| (t.repo_tag.as_str(), t.current, t.now))
            .collect();
        assert_eq!(
            tags,
            vec![
                ("debian:12.5", true, None),
                ("debian:12", false, Some(d(7))),
                ("debian:bookworm", false, Some(d(7))),
                ("debian:latest", false, None),
            ]
        );
        assert!(
            got.notes[0].contains("5 official platform images"),
            "{:?}",
            got.notes
        );

        // A manifest digest given bare: exact, without layers.
        let bare = SavedImage {
            image_id: None,
            digests: vec![d(101)],
            diff_ids: None,
            ..saved(0, &[])
        };
        let got = identify(&bare, &index).unwrap();
        assert_eq!(got.verdict, Verdict::Exact);
        assert_eq!(got.total_layers, None);
    }

    #[test]
    fn an_index_digest_answers_with_its_platform_images() {
        let mut arm = official(2, &[10, 12], &["python:3.12"], &["python:3.12"]);
        arm.platform = Some("linux/arm64/v8".into());
        let index = MapIndex {
            images: vec![
                official(3, &[10], &["debian:12"], &["debian:12"]),
                arm,
                official(1, &[10, 11], &["python:3.12"], &["python:3.12"]),
            ],
            indexes: [(d(60), vec![d(102), d(101)])].into_iter().collect(),
            ..MapIndex::default()
        };
        let input =
            |id: Option<u8>, digests: &[u8], platform: Option<&str>, layers: &[u8]| SavedImage {
                image_id: id.map(d),
                digests: digests.iter().map(|&n| d(n)).collect(),
                diff_ids: (!layers.is_empty()).then(|| layers.iter().map(|&l| d(l)).collect()),
                platform: platform.map(str::to_owned),
                ..saved(0, &[])
            };
        let ids = |got: &Identification| -> Vec<Option<Digest>> {
            got.exact.iter().map(|f| f.image.image_id).collect()
        };
        // (input, verdict, exact image IDs, indexes, ancestry layers, a note contains)
        let table = [
            // A bare index digest: every platform image, in platform order.
            (
                input(None, &[60], None, &[]),
                Verdict::Exact,
                vec![Some(d(1)), Some(d(2))],
                vec![d(60)],
                vec![],
                "its 2 platform images",
            ),
            // inspect with the containerd store: Id is the index, the platform picks one image.
            (
                input(Some(60), &[60], Some("linux/arm64/v8"), &[10, 12]),
                Verdict::Exact,
                vec![Some(d(2))],
                vec![d(60)],
                vec![1],
                "its linux/arm64/v8 image",
            ),
            // A platform the index lacks: no exact, the layers still name the base.
            (
                input(Some(60), &[], Some("linux/s390x"), &[10, 13]),
                Verdict::Base,
                vec![],
                vec![],
                vec![1],
                "no linux/s390x image: its platform images are linux/amd64, linux/arm64/v8",
            ),
            // The image ID answers: the index in RepoDigests adds nothing.
            (
                input(Some(1), &[60], None, &[10, 11]),
                Verdict::Exact,
                vec![Some(d(1))],
                vec![],
                vec![1],
                "",
            ),
            // A digest that is neither image nor index.
            (
                input(None, &[61], None, &[]),
                Verdict::NotFound,
                vec![],
                vec![],
                vec![],
                "a bare digest",
            ),
        ];
        for (image, verdict, exact, indexes, ancestry, note) in table {
            let got = identify(&image, &index).unwrap();
            let what = format!("{:?} {:?}", image.image_id, image.platform);
            assert_eq!(got.verdict, verdict, "{what}");
            assert_eq!(ids(&got), exact, "{what}");
            assert_eq!(got.indexes, indexes, "{what}");
            let levels: Vec<usize> = got.ancestry.iter().map(|l| l.layers).collect();
            assert_eq!(levels, ancestry, "{what}");
            assert!(
                if note.is_empty() {
                    got.notes.is_empty()
                } else {
                    got.notes.iter().any(|n| n.contains(note))
                },
                "{what}: {:?}",
                got.notes
            );
        }
    }

    #[test]
    fn tag_order() {
        let mut tags: Vec<String> = [
            "python:latest",
            "python:3",
            "python:3.12-bookworm",
            "python:bookworm",
            "python:3.12.1",
            "python:3.12",
            "python:3.12.1-bookworm",
            "pypy:3",
        ]
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
        sort_tags(&mut tags);
        assert_eq!(
            tags,
            [
                "pypy:3",
                "python:3.12.1-bookworm",
                "python:3.12.1",
                "python:3.12-bookworm",
                "python:3.12",
                "python:3",
                "python:bookworm",
                "python:latest",
            ]
        );
    }
}

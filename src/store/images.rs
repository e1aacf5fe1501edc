//! The official images of a store, as an [`ImageIndex`] for `identify` (read side only).
//!
//! It answers what the dataset's config lines answer ([`crate::dataset::images`]), the same way,
//! from one read snapshot:
//! - an image ID's record: its `configs` record (platform, `os_version`, diff_ids), the tags of
//!   every store digest that carries it (each platform manifest, or the digest Hub listed in its
//!   place: the manifest record's `via`, or an index met where Hub listed a manifest) and of its
//!   own Hub `config` line, merged; current as `finalize` decides it
//!   ([`TagState::is_current_pair`]); first and last seen the span of those digests;
//! - a manifest digest: the record of its image ID; a Hub manifest with no image learned yet (not
//!   enriched, an index met in its place, a legacy type) a record without image ID or layers;
//! - a ChainID: the images whose *whole* chain it is (the `chains` table holds every prefix, with
//!   its length, so one range read and one config read per image);
//! - a tag's image now: the tag's latest sighting, its digests' manifest records, the config of
//!   the one on the platform asked;
//! - an index digest's platform images (a digest listed as an index, by Hub or a `--catalog`
//!   crawl): the manifests the `parents` table lists under it and those of its own `manifests`
//!   record (a catalog crawl fetches its indexes), each answered as its manifest digest is;
//! - a prefix: image IDs (`configs`, Hub `config` digests), manifest and index digests.
//!
//! Cost. Every answer above is a bounded number of B-tree reads, except two things the store has
//! no key for, each read in one pass and at most once per [`StoreImages`]:
//! - which manifests carry an image ID: `manifests` is keyed by manifest digest, and nothing
//!   maps an image ID back to its manifests. [`StoreImages::load`] walks `manifests` once and
//!   keeps the carriers of the image IDs the questions can reach (those of the digests, chains and
//!   prefixes asked), so memory grows with the answers, not the store; a later question about
//!   another image ID walks it once more for that image;
//! - which manifests an index holds: `parents` is keyed by manifest digest first, so the children
//!   of the indexes asked for are collected in one pass over it (only when an index is asked);
//! - how many platform images are not enriched yet (a count over `digests`), only when an answer
//!   is not exact and so needs it.
//!
//! Both are single reads of a table, cheaper than the integrity check every command that opens a
//! store already runs over the whole file.

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use redb::ReadableTable;

use super::{
    CHAINS, CONFIGS, DIGESTS, MANIFESTS, PARENTS, ReadBatch, TxError, decode, guarded,
    optional_table,
};
use crate::clock::rfc3339;
use crate::dataset::images::Wanted;
use crate::identify::matching::{ImageIndex, OfficialImage, PrefixMatch};
use crate::model::{Digest, ObjectKind};
use crate::store::{ConfigRecord, DigestRecord, ManifestFact, TagState};

/// The digests that lend their tags to an image ID.
#[derive(Debug, Clone, Default)]
struct Carried {
    /// The image manifests whose config it is.
    manifests: BTreeSet<Digest>,
    /// The store digests whose tags it carries.
    carriers: BTreeSet<Digest>,
}

/// A store snapshot read as the official images' index.
pub struct StoreImages<'s> {
    snapshot: &'s ReadBatch,
    carried: RefCell<HashMap<Digest, Carried>>,
    tags: RefCell<HashMap<String, Option<TagState>>>,
    /// Index digest → its platform manifests, for the indexes asked.
    children: RefCell<HashMap<Digest, BTreeSet<Digest>>>,
    unenriched: OnceCell<u64>,
}

impl std::fmt::Debug for StoreImages<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreImages").finish_non_exhaustive()
    }
}

impl<'s> StoreImages<'s> {
    /// Prepares answers to `wanted` from `snapshot`: finds the image IDs its digests, chains and
    /// prefixes reach (point and range reads) and walks `manifests` once for their carriers.
    pub fn load(snapshot: &'s ReadBatch, wanted: &Wanted) -> Result<Self, TxError> {
        let index = Self {
            snapshot,
            carried: RefCell::default(),
            tags: RefCell::default(),
            children: RefCell::default(),
            unenriched: OnceCell::new(),
        };
        let mut reached = BTreeSet::new();
        let mut digests: Vec<Digest> = wanted.digests.iter().copied().collect();
        for prefix in &wanted.prefixes {
            digests.extend(index.prefix_candidates(prefix)?);
        }
        index.find_children(&digests)?;
        let children: Vec<Digest> = index
            .children
            .borrow()
            .values()
            .flatten()
            .copied()
            .collect();
        for digest in digests.iter().chain(&children) {
            if index.config(digest)?.is_some() {
                reached.insert(*digest);
            } else if let Some(ManifestFact::Image { config, .. }) = index.manifest_fact(digest)? {
                reached.insert(config);
            }
        }
        for chain in &wanted.chains {
            for (id, _) in index.whole_chain(chain)? {
                reached.insert(id);
            }
        }
        index.carry(&reached)?;
        Ok(index)
    }

    /// Whether `enrich` learned any image ID yet.
    pub fn has_enrichment(snapshot: &ReadBatch) -> Result<bool, TxError> {
        Ok(snapshot.enrich_counts()?.1 > 0)
    }

    fn config(&self, digest: &Digest) -> Result<Option<ConfigRecord>, TxError> {
        self.snapshot.config(digest)
    }

    fn manifest_fact(&self, digest: &Digest) -> Result<Option<ManifestFact>, TxError> {
        Ok(self.snapshot.manifest(digest)?.map(|m| m.fact))
    }

    fn digest_record(&self, digest: &Digest) -> Result<Option<DigestRecord>, TxError> {
        match self
            .snapshot
            .txn
            .open_table(DIGESTS)?
            .get(*digest.as_bytes())?
        {
            Some(guard) => Ok(Some(decode(guard.value())?)),
            None => Ok(None),
        }
    }

    /// The image IDs whose whole chain is `chain`, with their configs, by image ID.
    fn whole_chain(&self, chain: &Digest) -> Result<Vec<(Digest, ConfigRecord)>, TxError> {
        let Some(table) = optional_table(self.snapshot.txn.open_table(CHAINS))? else {
            return Ok(Vec::new());
        };
        let key = *chain.as_bytes();
        let mut out = Vec::new();
        for item in table.range((key, [0u8; 32])..=(key, [0xffu8; 32]))? {
            let (k, length) = item?;
            let id = Digest::from_bytes(k.value().1);
            if let Some(record) = self.config(&id)?
                && usize::try_from(length.value()).ok() == Some(record.diff_ids.len())
            {
                out.push((id, record));
            }
        }
        Ok(out)
    }

    /// Walks `manifests` once, recording the carriers of every image ID in `ids` not known yet;
    /// the rules of [`crate::dataset::Enrichment::load`].
    fn carry(&self, ids: &BTreeSet<Digest>) -> Result<(), TxError> {
        let mut carried = self.carried.borrow_mut();
        let ids: HashSet<Digest> = ids
            .iter()
            .filter(|id| !carried.contains_key(*id))
            .copied()
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        for id in &ids {
            carried.insert(*id, Carried::default());
        }
        let mut indexes: Vec<(Digest, Vec<Digest>)> = Vec::new();
        self.snapshot.visit_manifests(|digest, manifest| {
            match manifest.fact {
                ManifestFact::Image { config, .. } if ids.contains(&config) => {
                    let entry = carried.entry(config).or_default();
                    entry.manifests.insert(digest);
                    entry.carriers.insert(manifest.via.unwrap_or(digest));
                }
                // Indexes met where Hub listed a manifest are few: their children are read after.
                ManifestFact::Index { manifests } => {
                    indexes.push((manifest.via.unwrap_or(digest), manifests));
                }
                _ => {}
            }
            Ok(())
        })?;
        for (carrier, children) in indexes {
            for child in children {
                if let Some(ManifestFact::Image { config, .. }) = self.manifest_fact(&child)?
                    && ids.contains(&config)
                {
                    carried.entry(config).or_default().carriers.insert(carrier);
                }
            }
        }
        Ok(())
    }

    /// Finds the platform manifests of every listed index among `digests` not looked at yet:
    /// those of its `manifests` record, and those `parents` lists under it (one pass over
    /// `parents`, only when some digest is such an index).
    fn find_children(&self, digests: &[Digest]) -> Result<(), TxError> {
        let mut listed = HashSet::new();
        let mut found: HashMap<Digest, BTreeSet<Digest>> = HashMap::new();
        for digest in digests {
            if self.children.borrow().contains_key(digest) || found.contains_key(digest) {
                continue;
            }
            // Only a digest the store holds as an index: one Hub listed as a manifest
            // (`images: []`) is one once `enrich` found it to be an index
            // (`WriteBatch::link_index`); in a store an older release enriched, until a crawl
            // sees its tag again, it still answers as that manifest, as its dataset line does.
            if self
                .digest_record(digest)?
                .is_none_or(|r| r.kind != ObjectKind::Index)
            {
                continue;
            }
            let mut own = BTreeSet::new();
            if let Some(ManifestFact::Index { manifests }) = self.manifest_fact(digest)? {
                own.extend(manifests);
            }
            listed.insert(*digest);
            found.insert(*digest, own);
        }
        if !listed.is_empty() {
            let parents = self.snapshot.txn.open_table(PARENTS)?;
            for item in parents.iter()? {
                let (key, _) = item?;
                let (manifest, index) = key.value();
                let index = Digest::from_bytes(index);
                if listed.contains(&index) {
                    found
                        .entry(index)
                        .or_default()
                        .insert(Digest::from_bytes(manifest));
                }
            }
        }
        self.children.borrow_mut().extend(found);
        Ok(())
    }

    /// The tag's state by the dataset's `repo:tag` (`library/` left out), read once.
    fn tag(&self, repo_tag: &str) -> Result<Option<TagState>, TxError> {
        if let Some(state) = self.tags.borrow().get(repo_tag) {
            return Ok(state.clone());
        }
        let state = match repo_tag.rsplit_once(':') {
            Some((repo, tag)) => {
                let key = if repo.contains('/') {
                    repo.to_owned()
                } else {
                    format!("library/{repo}")
                };
                self.snapshot.tag_state(&key, tag)?
            }
            None => None,
        };
        self.tags
            .borrow_mut()
            .insert(repo_tag.to_owned(), state.clone());
        Ok(state)
    }

    fn is_current(&self, repo_tag: &str, digest: &Digest) -> Result<bool, TxError> {
        Ok(self
            .tag(repo_tag)?
            .is_some_and(|state| state.is_current_pair(digest)))
    }

    /// An image ID's record, as its dataset line gives it ([`crate::dataset::config_tags`]).
    fn config_image(&self, id: &Digest, record: ConfigRecord) -> Result<OfficialImage, TxError> {
        self.carry(&BTreeSet::from([*id]))?;
        let carried = self.carried.borrow().get(id).cloned().unwrap_or_default();
        let mut tags: BTreeMap<String, bool> = BTreeMap::new();
        let mut span: Option<(u64, u64)> = None;
        for digest in std::iter::once(id).chain(&carried.carriers) {
            if let Some(info) = self.snapshot.digest_info(digest)? {
                for (tag, _) in &info.tags {
                    let current = self.is_current(tag, digest)?;
                    *tags.entry(tag.clone()).or_default() |= current;
                }
                let (first, last) = (info.record.first_seen, info.record.last_seen);
                span = Some(span.map_or((first, last), |(f, l)| (f.min(first), l.max(last))));
            }
        }
        let (first_seen, last_seen) = span.unwrap_or((record.learned_at, record.learned_at));
        Ok(OfficialImage {
            image_id: Some(*id),
            platform: record.platform.map(|p| p.to_string()),
            os_version: record.os_version,
            current: tags
                .iter()
                .filter(|(_, c)| **c)
                .map(|(t, _)| t.clone())
                .collect(),
            tags: tags.into_keys().collect(),
            manifests: carried.manifests.into_iter().collect(),
            diff_ids: Some(record.diff_ids),
            first_seen: rfc3339(first_seen),
            last_seen: rfc3339(last_seen),
        })
    }

    /// A Hub digest's own record without image ID or layers: a `config` Hub listed that `enrich`
    /// has not learned (it is its own image ID), or a manifest not enriched.
    fn listed_image(&self, digest: &Digest, kind: ObjectKind) -> Result<OfficialImage, TxError> {
        let info = self.snapshot.digest_info(digest)?;
        let (record, tags) = match info {
            Some(info) => (Some(info.record), info.tags),
            None => (None, Vec::new()),
        };
        let mut current = Vec::new();
        for (tag, _) in &tags {
            if self.is_current(tag, digest)? {
                current.push(tag.clone());
            }
        }
        let config = kind == ObjectKind::Config;
        Ok(OfficialImage {
            image_id: config.then_some(*digest),
            platform: record
                .as_ref()
                .and_then(|r| r.platform.as_ref())
                .map(ToString::to_string),
            os_version: record.as_ref().and_then(|r| r.os_version.clone()),
            tags: tags.into_iter().map(|(t, _)| t).collect(),
            current,
            manifests: if config { Vec::new() } else { vec![*digest] },
            diff_ids: None,
            first_seen: rfc3339(record.as_ref().map_or(0, |r| r.first_seen)),
            last_seen: rfc3339(record.as_ref().map_or(0, |r| r.last_seen)),
        })
    }

    /// Image IDs, manifest and index digests starting with `hex`, in order, at most two.
    fn prefix_candidates(&self, hex: &str) -> Result<Vec<Digest>, TxError> {
        let mut found: BTreeSet<Digest> = self
            .snapshot
            .configs_with_prefix(hex, 2)?
            .into_iter()
            .collect();
        found.extend(self.snapshot.digests_with_prefix(hex, 2)?);
        Ok(found.into_iter().take(2).collect())
    }

    /// Counts the Hub manifests without a learned image and the Hub `config` digests without a
    /// learned config: one pass over `digests`, one point read each.
    fn count_unenriched(&self) -> Result<u64, TxError> {
        let digests = self.snapshot.txn.open_table(DIGESTS)?;
        let manifests = optional_table(self.snapshot.txn.open_table(MANIFESTS))?;
        let configs = optional_table(self.snapshot.txn.open_table(CONFIGS))?;
        let mut count = 0;
        for item in digests.iter()? {
            let (key, value) = item?;
            let record: DigestRecord = decode(value.value())?;
            let missing = match record.kind {
                ObjectKind::Index => false,
                ObjectKind::Manifest => match &manifests {
                    Some(table) => match table.get(key.value())? {
                        // As in the dataset, where such a line has no `image_id`: a legacy
                        // answer or a manifest the registry no longer has counts too.
                        Some(guard) => !matches!(
                            decode::<super::ManifestRecord>(guard.value())?.fact,
                            ManifestFact::Image { .. }
                        ),
                        None => true,
                    },
                    None => true,
                },
                ObjectKind::Config => match &configs {
                    Some(table) => table.get(key.value())?.is_none(),
                    None => true,
                },
            };
            count += u64::from(missing);
        }
        Ok(count)
    }
}

impl ImageIndex for StoreImages<'_> {
    type Error = TxError;

    fn by_digest(&self, digest: &Digest) -> Result<Option<OfficialImage>, TxError> {
        guarded(|| {
            if let Some(record) = self.config(digest)? {
                return self.config_image(digest, record).map(Some);
            }
            let listed = self.digest_record(digest)?.map(|r| r.kind);
            if listed == Some(ObjectKind::Config) {
                return self.listed_image(digest, ObjectKind::Config).map(Some);
            }
            match self.manifest_fact(digest)? {
                // A manifest whose config is not learned yet answers nothing, as in the dataset.
                Some(ManifestFact::Image { config, .. }) => match self.config(&config)? {
                    Some(record) => self.config_image(&config, record).map(Some),
                    None => Ok(None),
                },
                _ if listed == Some(ObjectKind::Manifest) => {
                    self.listed_image(digest, ObjectKind::Manifest).map(Some)
                }
                _ => Ok(None),
            }
        })
    }

    fn index_images(&self, digest: &Digest) -> Result<Vec<OfficialImage>, TxError> {
        guarded(|| {
            self.find_children(std::slice::from_ref(digest))?;
            let children = self
                .children
                .borrow()
                .get(digest)
                .cloned()
                .unwrap_or_default();
            let mut images: Vec<OfficialImage> = Vec::new();
            for child in &children {
                if let Some(image) = self.by_digest(child)?
                    && !images.contains(&image)
                {
                    images.push(image);
                }
            }
            Ok(images)
        })
    }

    fn by_chain(&self, chain_id: &Digest) -> Result<Vec<OfficialImage>, TxError> {
        guarded(|| {
            self.whole_chain(chain_id)?
                .into_iter()
                .map(|(id, record)| self.config_image(&id, record))
                .collect()
        })
    }

    fn current_image(
        &self,
        repo_tag: &str,
        platform: Option<&str>,
    ) -> Result<Option<Digest>, TxError> {
        guarded(|| {
            let Some(state) = self.tag(repo_tag)? else {
                return Ok(None);
            };
            if state.deleted_at.is_some() {
                return Ok(None);
            }
            let on_platform = |p: Option<String>| p.as_deref() == platform;
            let mut found: Option<Digest> = None;
            let mut consider = |id: Digest, p: Option<String>| {
                if on_platform(p) {
                    found = found.max(Some(id));
                }
            };
            for digest in &state.digests {
                let images = match self.manifest_fact(digest)? {
                    Some(ManifestFact::Image { config, .. }) => vec![config],
                    Some(ManifestFact::Index { manifests }) => {
                        let mut ids = Vec::new();
                        for child in manifests {
                            if let Some(ManifestFact::Image { config, .. }) =
                                self.manifest_fact(&child)?
                            {
                                ids.push(config);
                            }
                        }
                        ids
                    }
                    Some(ManifestFact::Legacy { .. } | ManifestFact::Gone { .. }) | None => {
                        Vec::new()
                    }
                };
                for id in images {
                    if let Some(record) = self.config(&id)? {
                        consider(id, record.platform.map(|p| p.to_string()));
                    }
                }
                // A Hub `config` digest is its own image ID.
                if let Some(record) = self.digest_record(digest)?
                    && record.kind == ObjectKind::Config
                {
                    let p = match self.config(digest)? {
                        Some(config) => config.platform,
                        None => record.platform,
                    };
                    consider(*digest, p.map(|p| p.to_string()));
                }
            }
            Ok(found)
        })
    }

    fn resolve_prefix(&self, hex: &str) -> Result<PrefixMatch, TxError> {
        guarded(|| {
            Ok(match self.prefix_candidates(hex)?.as_slice() {
                [] => PrefixMatch::None,
                [one] => PrefixMatch::One(*one),
                [a, b, ..] => PrefixMatch::Ambiguous(*a, *b),
            })
        })
    }

    fn unenriched(&self) -> Result<u64, TxError> {
        if let Some(count) = self.unenriched.get() {
            return Ok(*count);
        }
        let count = guarded(|| self.count_unenriched())?;
        Ok(*self.unenriched.get_or_init(|| count))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::dataset::images::DatasetImages;
    use crate::dataset::{FinalizeOptions, write_dataset};
    use crate::hub::{DigestFact, TagObservation};
    use crate::model::{Platform, RepoName};
    use crate::registry::chain_ids;
    use crate::store::{LayerRef, ManifestRecord, Store};

    fn d(fill: u8) -> Digest {
        Digest::from_bytes([fill; 32])
    }

    /// A scratch store, removed on drop.
    struct Scratch {
        store: Option<Store>,
        dir: PathBuf,
    }

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("digestmap-images-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let store = Some(Store::open(&dir.join("s.redb")).unwrap());
            Self { store, dir }
        }

        fn store(&self) -> &Store {
            self.store.as_ref().unwrap()
        }

        /// `repo:tag` seen pointing at `index` holding `manifest` (on `platform`), or at a bare
        /// digest of `kind` when `index` is `None`.
        fn tag(&self, tag: &str, index: Option<u8>, digest: u8, kind: ObjectKind, now: u64) {
            let repo = RepoName::new("library", "x").unwrap();
            let platform = Some(Platform::new("linux", "amd64", None));
            let mut facts = Vec::new();
            if let Some(index) = index {
                facts.push(DigestFact {
                    digest: d(index),
                    kind: ObjectKind::Index,
                    platform: None,
                    os_version: None,
                    index: None,
                });
            }
            facts.push(DigestFact {
                digest: d(digest),
                kind,
                platform,
                os_version: None,
                index: index.map(d),
            });
            let obs = TagObservation {
                tag: tag.to_owned(),
                digest: Some(d(index.unwrap_or(digest))),
                pushed: None,
                updated: None,
                facts,
            };
            self.store()
                .write(|w| w.record_tag(&repo, &obs, now, 1))
                .unwrap();
        }

        fn image(&self, manifest: u8, config: u8, diff_ids: &[u8]) {
            let diff_ids: Vec<Digest> = diff_ids.iter().map(|f| d(*f)).collect();
            self.store()
                .write(|w| {
                    w.put_manifest(&d(manifest), &record(image_fact(config)))?;
                    w.put_config(
                        &d(config),
                        &ConfigRecord {
                            platform: Some(Platform::new("linux", "amd64", None)),
                            os_version: None,
                            chain_id: chain_ids(&diff_ids).last().copied(),
                            diff_ids,
                            created: None,
                            learned_at: 500,
                        },
                    )
                })
                .unwrap();
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            drop(self.store.take());
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn image_fact(config: u8) -> ManifestFact {
        ManifestFact::Image {
            config: d(config),
            layers: vec![LayerRef {
                digest: d(200),
                size: 1,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            }],
        }
    }

    fn record(fact: ManifestFact) -> ManifestRecord {
        ManifestRecord {
            fact,
            media_type: "m".into(),
            via: None,
            learned_at: 500,
        }
    }

    /// The store and the dataset `finalize` writes of it answer every question alike.
    #[test]
    fn the_store_answers_as_its_dataset() {
        let scratch = Scratch::new("same");
        // x:a on manifest 2 (image 50: layers 80), then moved to manifest 4 (image 51: 80, 81);
        // x:b lists 6 as a manifest, which is an index holding manifest 7 (image 52: 80, 81,
        // 82); x:c on manifest 8, not enriched; x:d on Hub config 9, not enriched; x:e on
        // manifest 10 whose config 53 has the same layers as image 50.
        scratch.tag("a", Some(1), 2, ObjectKind::Manifest, 100);
        scratch.tag("latest", Some(1), 2, ObjectKind::Manifest, 100);
        scratch.tag("a", Some(3), 4, ObjectKind::Manifest, 200);
        scratch.tag("b", Some(5), 6, ObjectKind::Manifest, 200);
        scratch.tag("c", Some(11), 8, ObjectKind::Manifest, 200);
        scratch.tag("d", None, 9, ObjectKind::Config, 200);
        scratch.tag("e", Some(12), 10, ObjectKind::Manifest, 300);
        scratch.image(2, 50, &[80]);
        scratch.image(4, 51, &[80, 81]);
        scratch.image(7, 52, &[80, 81, 82]);
        scratch.image(10, 53, &[80]);
        scratch
            .store()
            .write(|w| {
                w.put_manifest(
                    &d(6),
                    &record(ManifestFact::Index {
                        manifests: vec![d(7)],
                    }),
                )
            })
            .unwrap();

        let snapshot = scratch.store().snapshot().unwrap();
        let mut text = Vec::new();
        write_dataset(&snapshot, FinalizeOptions::default(), &mut text).unwrap();
        let all: Vec<Digest> = [1, 2, 3, 4, 6, 7, 8, 9, 10, 50, 51, 52, 53, 99]
            .map(d)
            .to_vec();
        let wanted = Wanted {
            digests: all.iter().copied().collect(),
            chains: chain_ids(&[d(80), d(81), d(82), d(83)])
                .into_iter()
                .collect(),
            prefixes: vec![
                "323232323232".into(), // image 50's
                "060606060606".into(), // the index met in place of a manifest: a manifest line
                "010101010101".into(), // an index: its platform images
            ],
        };
        let file = DatasetImages::load(text.as_slice(), &wanted).unwrap();
        let store = StoreImages::load(&snapshot, &wanted).unwrap();
        for digest in &all {
            let Ok(want) = file.by_digest(digest);
            assert_eq!(store.by_digest(digest).unwrap(), want, "by_digest {digest}");
        }
        for chain in &wanted.chains {
            let Ok(want) = file.by_chain(chain);
            assert_eq!(store.by_chain(chain).unwrap(), want, "by_chain {chain}");
        }
        for digest in &all {
            let Ok(want) = file.index_images(digest);
            assert_eq!(store.index_images(digest).unwrap(), want, "index {digest}");
        }
        for prefix in &wanted.prefixes {
            let Ok(want) = file.resolve_prefix(prefix);
            assert_eq!(store.resolve_prefix(prefix).unwrap(), want, "{prefix}");
        }
        for tag in ["x:a", "x:b", "x:c", "x:d", "x:e", "x:latest", "x:none"] {
            for platform in [Some("linux/amd64"), Some("linux/arm64"), None] {
                let Ok(want) = file.current_image(tag, platform);
                let got = store.current_image(tag, platform).unwrap();
                assert_eq!(got, want, "current_image {tag} {platform:?}");
            }
        }
        let Ok(want) = file.unenriched();
        assert_eq!(store.unenriched().unwrap(), want);

        // What the table says, beyond agreeing with the dataset.
        let old = store.by_digest(&d(2)).unwrap().unwrap();
        assert_eq!(old.image_id, Some(d(50)));
        assert_eq!(old.tags, ["x:a", "x:latest"]);
        assert_eq!(old.current, ["x:latest"]);
        assert_eq!(
            store.current_image("x:a", Some("linux/amd64")).unwrap(),
            Some(d(51))
        );
        let whole: Vec<_> = store
            .by_chain(&chain_ids(&[d(80)])[0])
            .unwrap()
            .into_iter()
            .map(|i| i.image_id)
            .collect();
        assert_eq!(whole, [Some(d(50)), Some(d(53))]);
        let via_index = store.by_digest(&d(7)).unwrap().unwrap();
        assert_eq!(
            (via_index.image_id, via_index.tags),
            (Some(d(52)), vec!["x:b".to_owned()])
        );
        let unenriched = store.by_digest(&d(8)).unwrap().unwrap();
        assert_eq!((unenriched.image_id, unenriched.diff_ids), (None, None));
        assert_eq!(store.unenriched().unwrap(), 3); // manifests 6 and 8, config 9
        // An index digest resolves like any digest (`docker images` shows one with the containerd
        // image store), and answers with its platform images.
        assert_eq!(
            store.resolve_prefix("010101010101").unwrap(),
            PrefixMatch::One(d(1))
        );
        let platform_images: Vec<_> = [1, 3, 11, 12, 2]
            .map(|n| {
                store
                    .index_images(&d(n))
                    .unwrap()
                    .into_iter()
                    .map(|i| (i.image_id, i.manifests))
                    .collect::<Vec<_>>()
            })
            .to_vec();
        assert_eq!(
            platform_images,
            [
                vec![(Some(d(50)), vec![d(2)])],
                vec![(Some(d(51)), vec![d(4)])],
                vec![(None, vec![d(8)])], // not enriched: the manifest itself
                vec![(Some(d(53)), vec![d(10)])],
                vec![], // a manifest is no index
            ]
        );
        assert!(store.by_digest(&d(99)).unwrap().is_none());
    }

    /// A question outside what `load` prepared still gets the full answer (one more pass).
    #[test]
    fn an_image_not_prepared_for_is_still_answered_whole() {
        let scratch = Scratch::new("lazy");
        scratch.tag("a", Some(1), 2, ObjectKind::Manifest, 100);
        scratch.image(2, 50, &[80]);
        let snapshot = scratch.store().snapshot().unwrap();
        let store = StoreImages::load(&snapshot, &Wanted::default()).unwrap();
        let image = store.by_digest(&d(50)).unwrap().unwrap();
        assert_eq!(image.manifests, [d(2)]);
        assert_eq!(image.tags, ["x:a"]);
        assert!(StoreImages::has_enrichment(&snapshot).unwrap());
    }
}

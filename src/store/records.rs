//! The values kept in the store's tables.
//!
//! Each is encoded with postcard behind a one-byte format version (see [`Record`]), so that a later
//! release can recognise and convert an older store instead of misreading it. postcard is not
//! self-describing: a record whose fields change gets a new version, and [`Record::upgrade`]
//! decodes the older versions into the new type (the `V1` types below are the version 1
//! layouts, kept only for that). Records are written in the newest version only.
//!
//! Version 2 of [`TagState`] adds `updated`, of [`RepoState`] the coverage fields `full_read`
//! and `skipped_names`, of [`RunStats`] the `malformed_tags` skip reason, and of [`CrawlRun`] the
//! run state [`RunState::Incomplete`] (its version 1 layout is otherwise unchanged). Version 3 of
//! [`CrawlRun`] adds `registry`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::hub::Skips;
use crate::model::{Digest, ObjectKind, Platform, RepoName};

/// A value type stored in a table, with its format version.
pub trait Record: Serialize + DeserializeOwned {
    /// Bumped whenever the encoding of the type changes.
    const VERSION: u8;
    /// What the record is, for error messages.
    const WHAT: &'static str;

    /// Decodes `bytes` written in an older format `version`; `None` when this release does not
    /// know that version.
    fn upgrade(version: u8, bytes: &[u8]) -> Option<Result<Self, postcard::Error>> {
        let _ = (version, bytes);
        None
    }
}

/// Whether a crawl run is under way or finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    /// Started and not finished: jobs or failed jobs remain, or the process stopped.
    Running,
    /// Every job done, none failed.
    Finished,
    /// Every job done, none failed, but the result is known to be incomplete: some repository's
    /// stored tags do not reach Hub's count, or the repository list could not be read whole.
    /// `crawl --resume` plans the gaps again; a plain `crawl` starts a refresh.
    Incomplete,
}

impl RunState {
    /// The state a run ends in when its process stops (a Hub crawl's and a catalog crawl's
    /// alike): `None`, still running, when it was interrupted or jobs remain or failed (a resume
    /// finishes it); else finished, or incomplete when it knows of `gaps`.
    pub fn at_end(
        interrupted: bool,
        jobs_left: u64,
        failed: usize,
        gaps: usize,
    ) -> Option<RunState> {
        if interrupted || jobs_left > 0 || failed > 0 {
            None
        } else if gaps == 0 {
            Some(RunState::Finished)
        } else {
            Some(RunState::Incomplete)
        }
    }
}

/// How a run lists repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunMode {
    /// Every page of every listing; tags not found any more are marked deleted.
    Full,
    /// Newest first, stopping at the first page whose tags are all unchanged since the last run.
    Refresh,
}

/// One crawl of a namespace, from its first job to its last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlRun {
    /// Increases with every new run of the store.
    pub id: u64,
    /// Running or finished.
    pub state: RunState,
    /// When the run started (unix seconds).
    pub started: u64,
    /// When the run finished.
    pub finished: Option<u64>,
    /// The Hub origin crawled.
    pub hub_url: String,
    /// The namespace crawled.
    pub namespace: String,
    /// Only these repositories, when `--repo` was given.
    pub repos: Vec<String>,
    /// Full crawl or refresh.
    pub mode: RunMode,
    /// The registry (an origin) whose `tags/list` plans the anonymous cover: `--registry`, else
    /// Docker Hub's registry when crawling Docker Hub. `None`: no registry, or a run recorded
    /// by a release that did not store it (version 2 and older), which takes one on resume.
    pub registry: Option<String>,
}

impl Record for CrawlRun {
    const VERSION: u8 = 3;
    const WHAT: &'static str = "crawl run";

    fn upgrade(version: u8, bytes: &[u8]) -> Option<Result<Self, postcard::Error>> {
        // Version 1 knew two of the run states; postcard writes a variant as its index, so its
        // bytes read as version 2's.
        matches!(version, 1 | 2)
            .then(|| postcard::from_bytes::<CrawlRunV2>(bytes).map(CrawlRun::from))
    }
}

/// Version 2 of [`CrawlRun`]: without the registry.
#[derive(Deserialize)]
struct CrawlRunV2 {
    id: u64,
    state: RunState,
    started: u64,
    finished: Option<u64>,
    hub_url: String,
    namespace: String,
    repos: Vec<String>,
    mode: RunMode,
}

impl From<CrawlRunV2> for CrawlRun {
    fn from(v: CrawlRunV2) -> Self {
        CrawlRun {
            id: v.id,
            state: v.state,
            started: v.started,
            finished: v.finished,
            hub_url: v.hub_url,
            namespace: v.namespace,
            repos: v.repos,
            mode: v.mode,
            registry: None,
        }
    }
}

/// Counters of a run, summed over every process that worked on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStats {
    /// Repository-list pages stored.
    pub repo_pages: u64,
    /// Tag-list pages stored.
    pub tag_pages: u64,
    /// Tag objects stored.
    pub tags: u64,
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Retried requests.
    pub retries: u64,
    /// 429 answers received.
    pub rate_limited: u64,
    /// Job attempts that failed and were put back.
    pub job_retries: u64,
    /// Records left out, by reason.
    pub skips: Skips,
    /// Hub's count of repositories in the namespace, from the repository list.
    pub repo_count: Option<u64>,
    /// Whether the repository list hit the anonymous paging cap.
    pub repo_list_capped: bool,
}

impl Record for RunStats {
    const VERSION: u8 = 2;
    const WHAT: &'static str = "run statistics";

    fn upgrade(version: u8, bytes: &[u8]) -> Option<Result<Self, postcard::Error>> {
        (version == 1).then(|| postcard::from_bytes::<RunStatsV1>(bytes).map(RunStats::from))
    }
}

/// [`Skips`] as version 1 of [`RunStats`] wrote it.
#[derive(Deserialize)]
struct SkipsV1 {
    attestations: u64,
    null_digests: u64,
    invalid_digests: u64,
    invalid_tags: u64,
    invalid_repos: u64,
}

/// Version 1 of [`RunStats`].
#[derive(Deserialize)]
struct RunStatsV1 {
    repo_pages: u64,
    tag_pages: u64,
    tags: u64,
    requests: u64,
    retries: u64,
    rate_limited: u64,
    job_retries: u64,
    skips: SkipsV1,
    repo_count: Option<u64>,
    repo_list_capped: bool,
}

impl From<RunStatsV1> for RunStats {
    fn from(v: RunStatsV1) -> Self {
        Self {
            repo_pages: v.repo_pages,
            tag_pages: v.tag_pages,
            tags: v.tags,
            requests: v.requests,
            retries: v.retries,
            rate_limited: v.rate_limited,
            job_retries: v.job_retries,
            skips: Skips {
                attestations: v.skips.attestations,
                null_digests: v.skips.null_digests,
                invalid_digests: v.skips.invalid_digests,
                invalid_tags: v.skips.invalid_tags,
                invalid_repos: v.skips.invalid_repos,
                ..Skips::default()
            },
            repo_count: v.repo_count,
            repo_list_capped: v.repo_list_capped,
        }
    }
}

/// Which view of a repository's tag list a job reads.
///
/// Anonymous listings stop at offset 1000 (Hub answers 403 `pagination offset too large` there),
/// so a repository with more tags is read through several views, each again capped at 1000: the
/// plain listing (newest first), the oldest-first listing, and `name`-filtered listings in both
/// orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListingWindow {
    /// The plain listing, newest first.
    Plain,
    /// The whole listing, oldest first (`ordering=-last_updated`).
    Oldest,
    /// Tags whose name contains `name`.
    Filter {
        /// The substring.
        name: String,
        /// Oldest first instead of newest first.
        oldest: bool,
    },
    /// One page of a `name`-filtered view chosen by the cover plan (`crawl::plan`), read alone:
    /// its `next` is not followed.
    Planned {
        /// The substring.
        name: String,
        /// Oldest first instead of newest first.
        oldest: bool,
    },
    /// One tag by name (`.../tags/<name>`): the cover plan's last resort for a tag no view
    /// below the cap reaches.
    Single {
        /// The tag name.
        name: String,
    },
}

/// What a job asks for: one page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    /// A page of a namespace's repository list.
    Repos {
        /// The namespace listed.
        namespace: String,
        /// The page URL.
        url: String,
        /// The descending-name view, read when the ascending one is capped.
        descending: bool,
    },
    /// A page of a repository's tag list.
    Tags {
        /// The repository listed.
        repo: RepoName,
        /// The page URL.
        url: String,
        /// Which view of the listing.
        window: ListingWindow,
    },
    /// A page of a repository's tag names from the registry (`GET /v2/<name>/tags/list`),
    /// read to plan the cover of a capped repository.
    TagNames {
        /// The repository whose names are listed.
        repo: RepoName,
        /// The registry page URL.
        url: String,
    },
}

impl JobKind {
    /// The page URL.
    pub fn url(&self) -> &str {
        match self {
            Self::Repos { url, .. } | Self::Tags { url, .. } | Self::TagNames { url, .. } => url,
        }
    }

    /// The same kind of job for another page URL of the same listing.
    pub fn with_url(&self, url: String) -> Self {
        match self {
            Self::Repos {
                namespace,
                descending,
                ..
            } => Self::Repos {
                namespace: namespace.clone(),
                url,
                descending: *descending,
            },
            Self::Tags { repo, window, .. } => Self::Tags {
                repo: repo.clone(),
                url,
                window: window.clone(),
            },
            Self::TagNames { repo, .. } => Self::TagNames {
                repo: repo.clone(),
                url,
            },
        }
    }
}

/// A unit of work in the `jobs` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The page to fetch.
    pub kind: JobKind,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not to be tried before this time (unix milliseconds).
    pub not_before_ms: u64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl Job {
    /// A fresh job for `kind`.
    pub fn new(kind: JobKind) -> Self {
        Self {
            kind,
            attempts: 0,
            not_before_ms: 0,
            last_error: None,
        }
    }
}

impl Record for Job {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "job";
}

/// A job that exhausted its attempts, in the `failed` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedJob {
    /// The job as it was last tried.
    pub job: Job,
    /// Why it failed.
    pub reason: String,
    /// When (unix seconds).
    pub failed_at: u64,
}

impl Record for FailedJob {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "failed job";
}

/// How far the current run got with a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoState {
    /// The run that last listed it.
    pub run: u64,
    /// When that run first saw it.
    pub listed_at: u64,
    /// Tag pages stored in that run.
    pub pages: u32,
    /// Tag objects stored in that run (a tag read twice counts twice).
    pub tags_seen: u64,
    /// Hub's `count` of tags, from the latest unfiltered page.
    pub count: Option<u64>,
    /// When the run finished with it, if it did.
    pub done_at: Option<u64>,
    /// Distinct tags this run stored, when it finished with it.
    pub distinct: u64,
    /// Whether every tag Hub counts was seen: `None` while listing.
    pub complete: Option<bool>,
    /// HTTP requests spent on it in this run, retries included.
    pub requests: u64,
    /// Whether the plain listing hit the anonymous paging cap.
    pub capped: bool,
    /// Distinct tags and requests when the cap was hit, to measure the cover's cost.
    pub at_cap: (u64, u64),
    /// `name` filters already listed by the cover.
    pub filters: Vec<String>,
    /// Times the plain listing was read again because it changed while being read.
    pub relists: u32,
    /// When a complete repository list no longer had it.
    pub vanished_at: Option<u64>,
    /// This run reads the whole listing, never stopping early at an unchanged tag: the run that
    /// listed it before did not finish it complete (or a refresh found stored tags short of
    /// Hub's count).
    pub full_read: bool,
    /// Tags Hub listed whose names are invalid, or whose objects are malformed: never stored,
    /// but Hub counts them, so they count as seen for coverage. Each is a hash of the name
    /// ([`name_hash`]), sorted, without duplicates.
    pub skipped_names: Vec<u64>,
}

impl RepoState {
    /// A repository just listed by `run`.
    pub fn new(run: u64, now: u64) -> Self {
        Self {
            run,
            listed_at: now,
            pages: 0,
            tags_seen: 0,
            count: None,
            done_at: None,
            distinct: 0,
            complete: None,
            requests: 0,
            capped: false,
            at_cap: (0, 0),
            filters: Vec::new(),
            relists: 0,
            vanished_at: None,
            full_read: false,
            skipped_names: Vec::new(),
        }
    }

    /// Counts a skipped tag name (hash) as seen; true if it was new.
    pub fn add_skipped_name(&mut self, hash: u64) -> bool {
        match self.skipped_names.binary_search(&hash) {
            Ok(_) => false,
            Err(at) => {
                self.skipped_names.insert(at, hash);
                true
            }
        }
    }
}

/// A stable 64-bit hash of a tag name (FNV-1a), to count skipped names without storing them: a
/// repository skips a handful, so a collision (one name too few counted) is out of reach.
pub fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Record for RepoState {
    const VERSION: u8 = 2;
    const WHAT: &'static str = "repository state";

    fn upgrade(version: u8, bytes: &[u8]) -> Option<Result<Self, postcard::Error>> {
        (version == 1).then(|| postcard::from_bytes::<RepoStateV1>(bytes).map(RepoState::from))
    }
}

/// Version 1 of [`RepoState`].
#[derive(Deserialize)]
struct RepoStateV1 {
    run: u64,
    listed_at: u64,
    pages: u32,
    tags_seen: u64,
    count: Option<u64>,
    done_at: Option<u64>,
    distinct: u64,
    complete: Option<bool>,
    requests: u64,
    capped: bool,
    at_cap: (u64, u64),
    filters: Vec<String>,
    relists: u32,
    vanished_at: Option<u64>,
}

impl From<RepoStateV1> for RepoState {
    fn from(v: RepoStateV1) -> Self {
        Self {
            run: v.run,
            listed_at: v.listed_at,
            pages: v.pages,
            tags_seen: v.tags_seen,
            count: v.count,
            done_at: v.done_at,
            distinct: v.distinct,
            complete: v.complete,
            requests: v.requests,
            capped: v.capped,
            at_cap: v.at_cap,
            filters: v.filters,
            relists: v.relists,
            vanished_at: v.vanished_at,
            full_read: false,
            skipped_names: Vec::new(),
        }
    }
}

/// What a tag pointed at when last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagState {
    /// The tag's own digest, if Hub gave a valid one.
    pub digest: Option<Digest>,
    /// Every digest the tag showed (its own and its platform images).
    pub digests: Vec<Digest>,
    /// Hub's push time, as Hub wrote it.
    pub pushed: Option<String>,
    /// Hub's `last_updated`, as Hub wrote it: the time Hub sorts tag listings by.
    pub updated: Option<String>,
    /// First time seen (unix seconds).
    pub first_seen: u64,
    /// Last time seen.
    pub last_seen: u64,
    /// The run that last saw it.
    pub run: u64,
    /// When a full re-listing found the tag gone from Hub (it is then no longer current).
    pub deleted_at: Option<u64>,
}

impl TagState {
    /// Whether the pair (this tag, `digest`) is current: the tag was not found deleted and its
    /// latest sighting showed `digest` (`digests` holds exactly what that sighting showed). The
    /// one rule behind `current` in the dataset, in `lookup` and in `finalize`'s counts.
    pub fn is_current_pair(&self, digest: &Digest) -> bool {
        self.deleted_at.is_none() && self.digests.contains(digest)
    }
}

impl Record for TagState {
    const VERSION: u8 = 2;
    const WHAT: &'static str = "tag";

    fn upgrade(version: u8, bytes: &[u8]) -> Option<Result<Self, postcard::Error>> {
        (version == 1).then(|| postcard::from_bytes::<TagStateV1>(bytes).map(TagState::from))
    }
}

/// Version 1 of [`TagState`]: no `updated`. Its `digests` already held the latest sighting, so
/// `current` reads an old store right; a refresh, missing `updated`, re-reads such a tag's page
/// once instead of stopping at it.
#[derive(Serialize, Deserialize)]
struct TagStateV1 {
    digest: Option<Digest>,
    digests: Vec<Digest>,
    pushed: Option<String>,
    first_seen: u64,
    last_seen: u64,
    run: u64,
    deleted_at: Option<u64>,
}

impl From<TagStateV1> for TagState {
    fn from(v: TagStateV1) -> Self {
        Self {
            digest: v.digest,
            digests: v.digests,
            pushed: v.pushed,
            updated: None,
            first_seen: v.first_seen,
            last_seen: v.last_seen,
            run: v.run,
            deleted_at: v.deleted_at,
        }
    }
}

/// Every tag name the registry lists for a capped repository, and the state of the cover
/// planned from them (`crawl::plan`), kept in `meta` under [`tag_names_key`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagNames {
    /// The run that asked.
    pub run: u64,
    /// The names read so far, in the registry's order.
    pub names: Vec<String>,
    /// Whether the last page is read.
    pub done: bool,
    /// Why the registry could not be asked; the cover then falls back to `name` filters.
    pub unavailable: Option<String>,
    /// Planned pages of the current cover round not yet committed.
    pub pending: u32,
    /// Cover rounds planned so far.
    pub rounds: u32,
}

impl Record for TagNames {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "registry tag names";
}

/// Prefix of the `meta` keys holding [`TagNames`].
pub const TAG_NAMES_PREFIX: &str = "tag_names:";

/// The `meta` key of `repo`'s [`TagNames`].
pub fn tag_names_key(repo: &RepoName) -> String {
    format!("{TAG_NAMES_PREFIX}{repo}")
}

/// The anonymous paging caps a Hub origin is known to enforce, kept in `meta` under
/// [`paging_caps_key`] (keyed by the origin, so a store crawled at several origins keeps what it
/// learned of each apart). Learned from the origin's first 403 `pagination offset too large` of
/// each kind; a crawl of an origin that capped before asks for no page past a known cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PagingCaps {
    /// Anonymous tag listings stop at offset 1000.
    pub tags: bool,
    /// The anonymous repository list stops at offset 100.
    pub repos: bool,
}

impl Record for PagingCaps {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "paging caps";
}

/// Prefix of the `meta` keys holding [`PagingCaps`].
pub const PAGING_CAPS_PREFIX: &str = "paging_caps:";

/// The `meta` key of the [`PagingCaps`] of the Hub origin `origin` (`https://hub.docker.com`).
pub fn paging_caps_key(origin: &str) -> String {
    format!("{PAGING_CAPS_PREFIX}{origin}")
}

/// What a digest names, and when it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestRecord {
    /// Index, manifest or config.
    pub kind: ObjectKind,
    /// Platform, for manifests and configs.
    pub platform: Option<Platform>,
    /// Windows build number.
    pub os_version: Option<String>,
    /// First time seen (unix seconds).
    pub first_seen: u64,
    /// Last time seen.
    pub last_seen: u64,
}

impl Record for DigestRecord {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "digest";
}

/// A repository Hub answered 404 for on the first page of its tag listing: it is not on Hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingRepo {
    /// `namespace/name`.
    pub repo: String,
    /// The page that answered 404.
    pub url: String,
    /// When (unix seconds).
    pub at: u64,
    /// Tags the store held for it (a repository known before has vanished; none: never on Hub).
    pub known_tags: u64,
    /// Of those, the tags that were current until now and no longer are.
    pub retired_tags: u64,
}

/// What a run left out on purpose, so that the summary and `status` can say the result may be
/// incomplete: repositories Hub does not have, and failed jobs dropped by `--skip-failed`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunGaps {
    /// The run these belong to; a new run starts with none.
    pub run: u64,
    /// Repositories not on Hub.
    pub missing: Vec<MissingRepo>,
    /// Failed jobs given up by `crawl --resume --skip-failed`.
    pub skipped: Vec<FailedJob>,
}

impl Record for RunGaps {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "run gaps";
}

/// What `enrich` fetches for a job: a manifest by digest, or a config blob (an image ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EnrichTarget {
    /// A platform manifest (or an index met in its place).
    Manifest,
    /// A config blob.
    Config,
}

/// A job of `digestmap enrich`, in the `jobs` table among the crawl's but in its own id range
/// (see the store's module docs), so that neither command ever takes the other's jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichJob {
    /// Manifest or config.
    pub target: EnrichTarget,
    /// The digest fetched.
    pub digest: Digest,
    /// The repository it is fetched from (`library/python`), before any `--registry-prefix`.
    pub repo: String,
    /// The digest of the store (a Hub listing's) this one was found from, when it is not that
    /// digest itself: the platform manifests of an index met where a manifest was expected.
    pub via: Option<Digest>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not to be tried before this time (unix milliseconds).
    pub not_before_ms: u64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl EnrichJob {
    /// A fresh job.
    pub fn new(target: EnrichTarget, digest: Digest, repo: String, via: Option<Digest>) -> Self {
        Self {
            target,
            digest,
            repo,
            via,
            attempts: 0,
            not_before_ms: 0,
            last_error: None,
        }
    }

    /// `manifest library/python@sha256:…`, for messages.
    pub fn describe(&self) -> String {
        let what = match self.target {
            EnrichTarget::Manifest => "manifest",
            EnrichTarget::Config => "config",
        };
        format!("{what} {}@{}", self.repo, self.digest)
    }
}

impl Record for EnrichJob {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "enrich job";
}

/// An enrich job that failed for good, in the `failed` table (enrich id range).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedEnrich {
    /// The job as it was last tried.
    pub job: EnrichJob,
    /// Why it failed.
    pub reason: String,
    /// When (unix seconds).
    pub failed_at: u64,
}

impl Record for FailedEnrich {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "failed enrich job";
}

/// One layer of an image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// The blob's digest (of the compressed bytes, not the diff_id).
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

/// What the registry answered for a manifest digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManifestFact {
    /// An image manifest.
    Image {
        /// The config digest: the image ID.
        config: Digest,
        /// Its layers, bottom first.
        layers: Vec<LayerRef>,
    },
    /// An index where a platform manifest was expected: its platform manifests (attestations
    /// left out) are fetched as jobs of their own.
    Index {
        /// The platform manifests.
        manifests: Vec<Digest>,
    },
    /// A type not read (Docker schema 1, an unknown type), with the reason; not a failure.
    Legacy {
        /// Why it is not read.
        reason: String,
    },
    /// The registry answered 404: it no longer has this manifest in the repository asked (old
    /// history); an answer, not a failure, so it is not fetched again. Last, so that records
    /// written before it decode unchanged.
    Gone {
        /// The answer, with the URL.
        reason: String,
    },
}

/// A manifest learned by `enrich`, in the `manifests` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    /// What it is.
    pub fact: ManifestFact,
    /// The media type it came as.
    pub media_type: String,
    /// The store digest (a Hub listing's) whose tags it carries, when not itself.
    pub via: Option<Digest>,
    /// When it was learned (unix seconds).
    pub learned_at: u64,
}

impl Record for ManifestRecord {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "manifest";
}

/// A config blob learned by `enrich`, in the `configs` table (keyed by the image ID).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRecord {
    /// The image's platform.
    pub platform: Option<Platform>,
    /// Windows build number.
    pub os_version: Option<String>,
    /// `rootfs.diff_ids`, bottom first.
    pub diff_ids: Vec<Digest>,
    /// The ChainID of the whole stack (`None` for an image without layers).
    pub chain_id: Option<Digest>,
    /// The config's `created`, as written.
    pub created: Option<String>,
    /// When it was learned (unix seconds).
    pub learned_at: u64,
}

impl Record for ConfigRecord {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "config";
}

/// The registry's pull budget as the last `enrich` knew it, in `meta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBudget {
    /// Pulls per window, when the registry said.
    pub limit: Option<u64>,
    /// Pulls left.
    pub remaining: u64,
    /// When a spent budget frees (unix seconds).
    pub frees_at: u64,
}

impl Record for StoredBudget {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "pull budget";
}

/// Counters of `enrich`, summed over every run on the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichStats {
    /// Manifest GETs sent (pulls spent).
    pub pulls: u64,
    /// Blob GETs sent.
    pub blobs: u64,
    /// Manifests learned.
    pub manifests: u64,
    /// Configs learned.
    pub configs: u64,
    /// Manifest answers that were 429.
    pub rate_limited: u64,
    /// Attempts that failed and were put back.
    pub retries: u64,
}

impl Record for EnrichStats {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "enrich statistics";
}

/// How far one paged listing (a registry's catalog, or a repository's `tags/list`) got in a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// Pages stored.
    pub pages: u32,
    /// [`name_hash`] of every page URL asked for, so that a `Link` back to one of them (a `last`
    /// that loops) ends the listing instead of going round forever.
    pub seen_pages: Vec<u64>,
    /// [`name_hash`] of every page's names (joined by newlines), so that a page served twice
    /// (under another `last`) ends the listing.
    pub seen_content: Vec<u64>,
    /// The last page is stored.
    pub done: bool,
    /// Why the listing ended before its last page (a refused `Link`, a page that repeats); the
    /// run then ends incomplete.
    pub error: Option<String>,
}

/// A registry crawled through its catalog (`crawl --catalog`): one source of the store beside
/// Docker Hub's, with a run of its own, in `meta` under [`catalog_run_key`] (one per host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogRun {
    /// Increases with every run of this source.
    pub id: u64,
    /// Running, finished, or finished incomplete (a listing ended early).
    pub state: RunState,
    /// When the run started (unix seconds).
    pub started: u64,
    /// When it finished.
    pub finished: Option<u64>,
    /// The registry origin (`https://mcr.microsoft.com`).
    pub registry: String,
    /// Its host, as repositories are qualified with it (`mcr.microsoft.com`, `127.0.0.1:5000`).
    pub host: String,
    /// Only these repositories (paths on the registry), when `--repo` was given: the catalog is
    /// not read.
    pub repos: Vec<String>,
    /// Only the catalog's repositories starting with this (`--repo-prefix`).
    pub prefix: Option<String>,
    /// How the catalog listing went.
    pub catalog: Listing,
}

impl Record for CatalogRun {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "catalog run";
}

/// Counters of a catalog source's run, summed over every process that worked on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogStats {
    /// Catalog pages stored.
    pub catalog_pages: u64,
    /// Tag-list pages stored.
    pub tag_pages: u64,
    /// Manifest HEADs answered (one per listed tag).
    pub heads: u64,
    /// Manifest GETs answered (digests not in the store yet, and platform manifests of new
    /// indexes).
    pub manifests: u64,
    /// Config blob GETs answered.
    pub configs: u64,
    /// HTTP requests sent, retries and tokens included.
    pub requests: u64,
    /// Job attempts that failed and were put back.
    pub job_retries: u64,
    /// Tags seen for the first time.
    pub new_tags: u64,
    /// Tags that point at another digest than when last seen.
    pub moved_tags: u64,
    /// Tags that point at the digest they pointed at when last seen.
    pub unchanged_tags: u64,
    /// Tags the registry no longer lists (or answers 404 for), marked deleted.
    pub deleted_tags: u64,
    /// Catalog names refused by Docker's reference grammar.
    pub invalid_repos: u64,
    /// Tag names refused by Docker's tag grammar.
    pub invalid_tags: u64,
    /// Platforms or `os.version`s refused (the digest is kept without them).
    pub invalid_platforms: u64,
}

impl Record for CatalogStats {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "catalog statistics";
}

/// Prefix of the `meta` keys holding a source's [`CatalogRun`].
pub const CATALOG_RUN_PREFIX: &str = "catalog_run:";
/// Prefix of the `meta` keys holding a source's [`CatalogStats`].
pub const CATALOG_STATS_PREFIX: &str = "catalog_stats:";

/// Prefix of the `meta` keys holding a source's pacing pause (unix seconds): a registry's
/// `Retry-After`, kept so that a resumed crawl of that registry does not start by hammering it.
pub const CATALOG_PAUSE_PREFIX: &str = "catalog_pause:";

/// The `meta` key of the pacing pause of the registry at `host`.
pub fn catalog_pause_key(host: &str) -> String {
    format!("{CATALOG_PAUSE_PREFIX}{host}")
}

/// Prefix of the `meta` keys holding `enrich`'s pacing pause per registry (unix seconds): the
/// `Retry-After` of a 429 from a registry that declares no pull budget, kept so that a resumed
/// `enrich` does not start by hammering it.
pub const ENRICH_PAUSE_PREFIX: &str = "enrich_pause:";

/// The `meta` key of `enrich`'s pacing pause for the registry at `host` (`127.0.0.1:5000`).
pub fn enrich_pause_key(host: &str) -> String {
    format!("{ENRICH_PAUSE_PREFIX}{host}")
}

/// The `meta` key of the [`CatalogRun`] of the registry at `host`.
pub fn catalog_run_key(host: &str) -> String {
    format!("{CATALOG_RUN_PREFIX}{host}")
}

/// The `meta` key of the [`CatalogStats`] of the registry at `host`.
pub fn catalog_stats_key(host: &str) -> String {
    format!("{CATALOG_STATS_PREFIX}{host}")
}

/// How far a catalog source's run got with one repository, in the `catalog_repos` table under
/// its host-qualified name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogRepo {
    /// The run that last listed it.
    pub run: u64,
    /// When that run first saw it.
    pub listed_at: u64,
    /// The tag names its listing gave in that run, in the registry's order, each once.
    pub names: Vec<String>,
    /// How its tag listing went.
    pub listing: Listing,
    /// When the listing ended (done or not).
    pub done_at: Option<u64>,
    /// When the registry stopped having it (a complete catalog without it, or a 404 for its
    /// tag list); its tags were then marked deleted.
    pub vanished_at: Option<u64>,
}

impl CatalogRepo {
    /// A repository just listed by `run`.
    pub fn new(run: u64, now: u64) -> Self {
        Self {
            run,
            listed_at: now,
            names: Vec::new(),
            listing: Listing::default(),
            done_at: None,
            vanished_at: None,
        }
    }
}

impl Record for CatalogRepo {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "catalog repository";
}

/// What a catalog job asks of the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogTask {
    /// A page of `/v2/_catalog`.
    Catalog {
        /// The page URL.
        url: String,
    },
    /// A page of a repository's `tags/list`.
    Tags {
        /// The repository's path on the registry.
        repo: String,
        /// The page URL.
        url: String,
    },
    /// A manifest HEAD of one tag: its digest and media type.
    Head {
        /// The repository's path on the registry.
        repo: String,
        /// The tag.
        tag: String,
    },
    /// A manifest GET of a digest the store has not learned: a tag's (then `waiting` holds the
    /// tags that pointed at it), or a platform manifest of a new index.
    Manifest {
        /// The repository's path to fetch it from.
        repo: String,
        /// The digest.
        digest: Digest,
        /// What the HEAD's media type said it is (used when the registry no longer has it).
        kind: ObjectKind,
        /// The tags (repository path, tag) whose HEAD gave this digest, stored once it is known.
        waiting: Vec<(String, String)>,
    },
    /// A config blob GET (the image ID) of a platform manifest.
    Config {
        /// The repository's path to fetch it from.
        repo: String,
        /// The config digest.
        digest: Digest,
        /// The manifest whose config it is (its platform comes from the config when no index
        /// gave it).
        manifest: Digest,
    },
}

/// A job of a catalog crawl, in the `jobs` table in an id range of its own (see the store's
/// module docs), so that neither the Hub crawl nor `enrich` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogJob {
    /// The source's host: a run takes only its own source's jobs.
    pub source: String,
    /// What to ask.
    pub task: CatalogTask,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not to be tried before this time (unix milliseconds).
    pub not_before_ms: u64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl CatalogJob {
    /// A fresh job of the source at `source`.
    pub fn new(source: &str, task: CatalogTask) -> Self {
        Self {
            source: source.to_owned(),
            task,
            attempts: 0,
            not_before_ms: 0,
            last_error: None,
        }
    }

    /// What it asks, for messages: `HEAD 127.0.0.1:5000/app:1`, a page URL, a digest.
    pub fn describe(&self) -> String {
        let host = &self.source;
        match &self.task {
            CatalogTask::Catalog { url } | CatalogTask::Tags { url, .. } => url.clone(),
            CatalogTask::Head { repo, tag } => format!("HEAD {host}/{repo}:{tag}"),
            CatalogTask::Manifest { repo, digest, .. } => {
                format!("manifest {host}/{repo}@{digest}")
            }
            CatalogTask::Config { repo, digest, .. } => format!("config {host}/{repo}@{digest}"),
        }
    }
}

impl Record for CatalogJob {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "catalog job";
}

/// A catalog job that failed for good, in the `failed` table (catalog id range).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedCatalogJob {
    /// The job as it was last tried.
    pub job: CatalogJob,
    /// Why it failed.
    pub reason: String,
    /// When (unix seconds).
    pub failed_at: u64,
}

impl Record for FailedCatalogJob {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "failed catalog job";
}

impl Record for u64 {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "counter";
}

/// Encodes a record: version byte, then postcard.
pub fn encode<T: Record>(value: &T) -> Vec<u8> {
    let mut out = vec![T::VERSION];
    // postcard cannot fail on these types: no maps with non-string keys, no unsized sequences.
    out.extend(postcard::to_stdvec(value).expect("postcard encodes plain data"));
    out
}

/// Why a stored value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Written by a newer (or unknown) format.
    #[error("a {what} record has format version {found}; this digestmap reads version {supported}")]
    Version {
        /// Record type.
        what: &'static str,
        /// Version found.
        found: u8,
        /// Version supported.
        supported: u8,
    },
    /// Bytes that do not decode.
    #[error("a {what} record is damaged: {source}")]
    Damaged {
        /// Record type.
        what: &'static str,
        /// The decoder's complaint.
        source: postcard::Error,
    },
}

/// Decodes a record written by [`encode`], by this release or an older one.
pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, DecodeError> {
    let damaged = |source| DecodeError::Damaged {
        what: T::WHAT,
        source,
    };
    match bytes.split_first() {
        Some((&v, rest)) if v == T::VERSION => postcard::from_bytes(rest).map_err(damaged),
        Some((&v, rest))
            if v < T::VERSION
                && let Some(old) = T::upgrade(v, rest) =>
        {
            old.map_err(damaged)
        }
        Some((&v, rest)) => match T::upgrade(v, rest) {
            Some(upgraded) => upgraded.map_err(|source| DecodeError::Damaged {
                what: T::WHAT,
                source,
            }),
            None => Err(DecodeError::Version {
                what: T::WHAT,
                found: v,
                supported: T::VERSION,
            }),
        },
        None => Err(DecodeError::Damaged {
            what: T::WHAT,
            source: postcard::Error::DeserializeUnexpectedEnd,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_ends_only_with_no_job_left_and_none_failed() {
        // (interrupted, jobs left, failed, gaps) -> state at the end
        let table = [
            ((false, 0, 0, 0), Some(RunState::Finished)),
            ((false, 0, 0, 2), Some(RunState::Incomplete)),
            ((true, 0, 0, 0), None),
            ((false, 1, 0, 0), None),
            ((false, 0, 1, 0), None),
            ((false, 0, 1, 3), None),
        ];
        for ((interrupted, jobs, failed, gaps), want) in table {
            assert_eq!(
                RunState::at_end(interrupted, jobs, failed, gaps),
                want,
                "{interrupted} {jobs} {failed} {gaps}"
            );
        }
    }

    #[test]
    fn run_statistics_of_format_version_1_are_read() {
        // Version 1 as its fields in order; the skips were five counters.
        let fields = (
            1u64,
            2u64,
            3u64,
            4u64,
            5u64,
            6u64,
            7u64,
            (8u64, 9u64, 10u64, 11u64, 12u64),
        );
        let mut bytes = vec![1];
        bytes.extend(postcard::to_stdvec(&(fields, Some(13u64), true)).unwrap());
        let stats: RunStats = decode(&bytes).unwrap();
        assert_eq!(
            stats,
            RunStats {
                repo_pages: 1,
                tag_pages: 2,
                tags: 3,
                requests: 4,
                retries: 5,
                rate_limited: 6,
                job_retries: 7,
                skips: Skips {
                    attestations: 8,
                    null_digests: 9,
                    invalid_digests: 10,
                    invalid_tags: 11,
                    invalid_repos: 12,
                    ..Skips::default()
                },
                repo_count: Some(13),
                repo_list_capped: true,
            }
        );
        // Written again, it is version 2, and reads back the same.
        assert_eq!(encode(&stats)[0], 2);
        assert_eq!(decode::<RunStats>(&encode(&stats)).unwrap(), stats);
        // A version 1 record cut short is damaged; an unknown version is refused.
        assert!(matches!(
            decode::<RunStats>(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Damaged { .. })
        ));
        bytes[0] = 3;
        assert!(matches!(
            decode::<RunStats>(&bytes),
            Err(DecodeError::Version { found: 3, .. })
        ));
    }
}

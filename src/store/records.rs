//! The values kept in the store's tables.
//!
//! Each is encoded with postcard behind a one-byte format version (see [`Record`]), so that a later
//! release can recognise and convert an older store instead of misreading it.

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
}

/// Whether a crawl run is under way or finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    /// Started and not finished: jobs or failed jobs remain, or the process stopped.
    Running,
    /// Every job done, none failed.
    Finished,
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
}

impl Record for CrawlRun {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "crawl run";
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
    const VERSION: u8 = 1;
    const WHAT: &'static str = "run statistics";
}

/// Which view of a repository's tag list a job reads.
///
/// Anonymous listings stop at offset 1000 (HUB-FACTS.md), so a repository with more tags is read
/// through several views, each again capped at 1000: the plain listing (newest first), the
/// oldest-first listing, and `name`-filtered listings in both orders.
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
}

impl JobKind {
    /// The page URL.
    pub fn url(&self) -> &str {
        match self {
            Self::Repos { url, .. } | Self::Tags { url, .. } => url,
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
        }
    }
}

impl Record for RepoState {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "repository state";
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
    /// Whether the pair (this tag, a digest last seen at `pair_last_seen`) is current: the tag
    /// still exists and pointed at the digest when the tag was last seen. `record_tag` writes a
    /// tag and all of its pairs with the same time, so equal times mean "seen together".
    pub fn is_current_pair(&self, pair_last_seen: u64) -> bool {
        self.deleted_at.is_none() && pair_last_seen == self.last_seen
    }
}

impl Record for TagState {
    const VERSION: u8 = 1;
    const WHAT: &'static str = "tag";
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

/// Decodes a record written by [`encode`].
pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, DecodeError> {
    match bytes.split_first() {
        Some((&v, rest)) if v == T::VERSION => {
            postcard::from_bytes(rest).map_err(|source| DecodeError::Damaged {
                what: T::WHAT,
                source,
            })
        }
        Some((&v, _)) => Err(DecodeError::Version {
            what: T::WHAT,
            found: v,
            supported: T::VERSION,
        }),
        None => Err(DecodeError::Damaged {
            what: T::WHAT,
            source: postcard::Error::DeserializeUnexpectedEnd,
        }),
    }
}

//! The embedded on-disk store (redb): its tables, its schema version, and the only code in the
//! crate that opens transactions.
//!
//! Tables (keys sort so that the dataset can be written by walking them in order):
//! - `meta`: schema version, the crawl run, run statistics, the next job id, the pacing pause;
//! - `jobs` / `failed`: job id (u64, sorts numerically) → job; a job leaves `jobs` only in the
//!   transaction that stores its results and adds the jobs it spawns, so a crash at any instant
//!   leaves every unfinished job in place;
//! - `repos`: `ns/name` → how far the current run got with it;
//! - `tags`: (`ns/name`, tag) → what the tag pointed at when last seen;
//! - `digests`: raw digest → kind, platform, first and last seen;
//! - `pairs`: (raw digest, `repo:tag`) → first and last seen. Pairs are never deleted, so a moved
//!   tag's old digests keep their history;
//! - `parents`: (manifest digest, index digest) → first and last seen;
//! - `manifests`: manifest digest → what `enrich` learned of it (config digest and layers, the
//!   platform manifests of an index met in its place, a legacy type with the reason, or gone:
//!   the registry's 404);
//! - `configs`: config digest (image ID) → platform, `os_version`, diff_ids, ChainID, created;
//! - `chains`: (ChainID, image ID) → the number of layers of that prefix, for the ChainID of every
//!   prefix of every image's diff_ids, so the longest known prefix of an unknown image's chain
//!   takes one range lookup per layer;
//! - `catalog_repos`: host-qualified repository (`mcr.microsoft.com/windows/servercore`) → how far
//!   its registry's catalog crawl got with it (kept apart from `repos`, whose run ids are the Hub
//!   crawl's).
//!
//! Sources: one store holds Docker Hub's namespace (its run in `meta` `run`, its repositories in
//! `repos`) and any number of registries crawled through their catalog (`crawl --catalog`), each
//! with its run, counters and pacing pause in `meta` under its host ([`catalog_run_key`],
//! [`catalog_stats_key`], [`catalog_pause_key`]). Their tags, digests, pairs and index links share the tables above:
//! a registry's repositories are host-qualified ([`RepoName::qualified`]), so their keys never
//! meet Docker Hub's.
//!
//! [`images`] reads those tables as the official images' index `identify` matches against.
//!
//! Job ids split the `jobs` and `failed` tables in three families: the Hub crawl's ids count up
//! from 1, the catalog crawls' from [`CATALOG_JOB_BASE`] (2^62), `enrich`'s from
//! [`ENRICH_JOB_BASE`] (2^63), each holding its own record type. Every reader of one family reads
//! only its id range, so no command ever takes (or waits for) another's job; a store written
//! before a family existed simply has no ids in its range.
//! `meta` also keeps the registry's pull budget, `enrich`'s counters, `enrich`'s pacing pause per
//! registry host ([`enrich_pause_key`]), and the anonymous paging caps
//! learned of each Hub origin ([`paging_caps_key`]).
//!
//! The database is opened in redb's single-writer mode: one digestmap process writes (a second
//! one is refused), while `status`, `finalize` and `lookup` may read a consistent snapshot beside
//! it.
//!
//! Damage. redb trusts the file it opens: a page changed outside redb (a bad disk, a bad copy, a
//! truncated download) can make redb panic or read wrong data without an error. So no command
//! trusts a store it has not verified:
//! - reading ([`Store::open_read`]: `status`, `finalize`, `lookup`) runs redb's integrity check
//!   (every page's checksum) through [`verified::Overlay`], which keeps redb's writes in memory: the
//!   file is only read, so a read-only file works and a damaged one is never "repaired";
//! - a crawl ([`Store::open`]) runs the same check before it opens the store for writing, so it
//!   never writes into a store it found damaged;
//! - beside a running crawl the check cannot run (the writer changes the file under it), so a
//!   reader then reads the writer's snapshots unverified, as redb offers;
//! - whatever still goes wrong inside redb on damaged data (a panic) is caught at this module's
//!   boundary and reported as [`StoreError::Damaged`]; a record that does not decode is an error,
//!   never skipped.
//!
//! A damaged or truncated store gets one error naming the file and the damage, and what to do:
//! restore a copy, or start a new store. `digestmap check` ([`check`]) lists every problem.
//!
//! Cost: the check reads the whole file once per command (1 s wall, 0.3 s CPU for a 159 MB store).

pub mod check;
pub mod images;
pub mod records;
pub mod verified;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use redb::{
    Database, DatabaseError, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};

pub use records::{
    CATALOG_PAUSE_PREFIX, CATALOG_RUN_PREFIX, CATALOG_STATS_PREFIX, CatalogJob, CatalogRepo,
    CatalogRun, CatalogStats, CatalogTask, FailedCatalogJob, Listing, catalog_pause_key,
    catalog_run_key, catalog_stats_key,
};
pub use records::{
    ConfigRecord, CrawlRun, DigestRecord, EnrichJob, EnrichStats, EnrichTarget, FailedEnrich,
    FailedJob, Job, JobKind, LayerRef, ListingWindow, ManifestFact, ManifestRecord, MissingRepo,
    PAGING_CAPS_PREFIX, PagingCaps, Record, RepoState, RunGaps, RunMode, RunState, RunStats,
    StoredBudget, TAG_NAMES_PREFIX, TagNames, TagState, name_hash, paging_caps_key, tag_names_key,
};
use records::{DecodeError, decode, encode};
pub use records::{ENRICH_PAUSE_PREFIX, enrich_pause_key};

use crate::hub::TagObservation;
use crate::model::{Digest, RepoName, RepoTag};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
const FAILED: TableDefinition<u64, &[u8]> = TableDefinition::new("failed");
const REPOS: TableDefinition<&str, &[u8]> = TableDefinition::new("repos");
const TAGS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("tags");
const DIGESTS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("digests");
const PAIRS: TableDefinition<([u8; 32], &str), (u64, u64)> = TableDefinition::new("pairs");
const PARENTS: TableDefinition<([u8; 32], [u8; 32]), (u64, u64)> = TableDefinition::new("parents");
const MANIFESTS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("manifests");
const CONFIGS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("configs");
const CHAINS: TableDefinition<([u8; 32], [u8; 32]), u32> = TableDefinition::new("chains");
const CATALOG_REPOS: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog_repos");

/// The first id of the catalog crawls' jobs; the Hub crawl's are below it, `enrich`'s above.
pub const CATALOG_JOB_BASE: u64 = 1 << 62;

/// The first id of `enrich`'s jobs; the crawl's are below it.
pub const ENRICH_JOB_BASE: u64 = 1 << 63;

/// Version of the table layout. Bumped when tables or keys change.
pub const SCHEMA_VERSION: u64 = 1;

const META_SCHEMA: &str = "schema";
const META_RUN: &str = "run";
const META_STATS: &str = "stats";
const META_NEXT_JOB: &str = "next_job_id";
const META_PAUSE: &str = "pause_until";
const META_GAPS: &str = "gaps";
const META_NEXT_ENRICH_JOB: &str = "next_enrich_job_id";
const META_BUDGET: &str = "pull_budget";
const META_ENRICH_STATS: &str = "enrich_stats";
const META_NEXT_CATALOG_JOB: &str = "next_catalog_job_id";

/// redb's page cache; bounded so that memory use does not grow with the store.
///
/// It is most of what a process that opens a large store holds: its reads fill the cache to the
/// limit (plus redb's bookkeeping per page), while a crawl that wrote the store itself keeps much
/// of it free. So this, not the jobs table (a few hundred jobs), the repair after a `kill -9`
/// (`status` on a killed and on a cleanly closed store peaks the same) or the pacer, is what made a
/// resumed crawl peak higher than an uninterrupted one. Measured on the double at full size
/// (100,353 tags, anonymous): with 64 MiB, 95 MB uninterrupted and 162 MB for the final `--resume`
/// after three `kill -9`; with 16 MiB, 45 MB and 61 MB, for no more CPU (misses are reads from
/// the OS's page cache); `finalize` needs half the memory in the same time.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Identifies a job in the `jobs` and `failed` tables.
pub type JobId = u64;

/// Errors of the store, each naming the store file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has the store open for writing.
    #[error(
        "the store {path} is in use by another digestmap process; wait for it to finish or stop it first"
    )]
    Busy {
        /// The store file.
        path: PathBuf,
    },
    /// No store at the path.
    #[error("there is no store at {path}; run `digestmap crawl` first (or pass --db)")]
    Missing {
        /// The store file.
        path: PathBuf,
    },
    /// The file is not a store of this digestmap.
    #[error("{path} is not a digestmap store of a version this digestmap can read: {reason}")]
    Incompatible {
        /// The store file.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// redb failed (I/O, a full disk).
    #[error("store {path}: {source}")]
    Database {
        /// The store file.
        path: PathBuf,
        /// redb's error.
        source: redb::Error,
    },
    /// The file is damaged: a page fails its checksum, redb finds its structures corrupt, or
    /// reading it failed inside redb.
    #[error(
        "the store {path} is damaged ({detail}); restore it from a copy, or start a new store with `digestmap crawl --db NEW.redb` (`digestmap check --db {path}` lists the damage)"
    )]
    Damaged {
        /// The store file.
        path: PathBuf,
        /// What is damaged.
        detail: String,
    },
    /// The file is shorter than the store it holds.
    #[error(
        "the store {path} is truncated ({detail}); restore it from a complete copy, or start a new store with `digestmap crawl --db NEW.redb`"
    )]
    Truncated {
        /// The store file.
        path: PathBuf,
        /// What is missing.
        detail: String,
    },
    /// A record does not decode.
    #[error(
        "the store {path} is damaged ({source}); restore it from a copy, or start a new store with `digestmap crawl --db NEW.redb`"
    )]
    Decode {
        /// The store file.
        path: PathBuf,
        /// The decoder's error.
        source: DecodeError,
    },
    /// A write was attempted on a store opened for reading.
    #[error("store {path} was opened read-only")]
    ReadOnly {
        /// The store file.
        path: PathBuf,
    },
}

/// Errors inside a transaction, before the store path is attached.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// redb failed.
    #[error(transparent)]
    Db(#[from] redb::Error),
    /// A record does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// redb panicked reading the store (damaged data it trusted).
    #[error("reading it failed: {0}")]
    Panicked(String),
}

macro_rules! redb_into_tx {
    ($($t:ty),*) => {$(
        impl From<$t> for TxError {
            fn from(e: $t) -> Self {
                TxError::Db(e.into())
            }
        }
    )*};
}
redb_into_tx!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError
);

enum Db {
    /// Open for writing (a crawl).
    Write(Database),
    /// Read beside a running crawl: redb's read-only handle, following the writer's commits.
    Read(ReadOnlyDatabase),
    /// Verified by redb's integrity check, read through an overlay that never writes the file.
    Verified(Database),
}

/// An open store.
pub struct Store {
    db: Db,
    path: PathBuf,
    /// For a verified store: a read transaction of redb's own read-only handle on the file, held
    /// while the store is open. The overlay takes no locks, so a crawl starting while this
    /// process reads would not know about it; redb's handle registers its snapshot, the one just
    /// verified, so that such a crawl does not reuse its pages.
    _pin: Option<ReadTransaction>,
}

thread_local! {
    /// How many [`guarded`] calls are under way on this thread.
    static GUARDED: Cell<u32> = const { Cell::new(0) };
}

/// Whether a panic on this thread now would be caught by the store and reported as damage, so a
/// process-wide panic hook should stay quiet about it.
pub fn panic_is_guarded() -> bool {
    GUARDED.with(Cell::get) > 0
}

/// Runs `f`, turning a panic (redb trusting damaged data) into [`TxError::Panicked`].
fn guarded<T, E: From<TxError>>(f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    caught(f).unwrap_or_else(|text| Err(E::from(TxError::Panicked(text))))
}

/// Runs `f`, returning a panic's message as an error.
fn caught<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    GUARDED.with(|g| g.set(g.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get().saturating_sub(1)));
    result.map_err(|payload| format!("redb failed reading it: {}", panic_text(&*payload)))
}

/// The message of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "an unknown failure".to_owned())
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

pub(crate) fn builder() -> redb::Builder {
    let mut builder = Database::builder();
    builder
        .set_cache_size(CACHE_BYTES)
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter);
    builder
}

impl Store {
    /// Opens (creating if needed) the store for writing. Fails with [`StoreError::Busy`] when
    /// another process writes to it, and with [`StoreError::Damaged`] or
    /// [`StoreError::Truncated`] when an existing store fails redb's integrity check, which runs
    /// first and writes nothing: a crawl never writes into a damaged store.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if file_len(path)?.is_some_and(|len| len > 0) {
            if writer_running(path)? {
                return Err(StoreError::Busy {
                    path: path.to_owned(),
                });
            }
            drop(open_verified(path)?);
        }
        let db = caught(|| builder().create(path))
            .map_err(|detail| damaged(path, detail))?
            .map_err(|e| open_error(path, e))?;
        let store = Self {
            db: Db::Write(db),
            path: path.to_owned(),
            _pin: None,
        };
        store.init()?;
        Ok(store)
    }

    /// Opens an existing store for writing (see [`Store::open`]); never creates one.
    pub fn open_existing(path: &Path) -> Result<Self, StoreError> {
        match file_len(path)? {
            Some(len) if len > 0 => Self::open(path),
            _ => Err(StoreError::Missing {
                path: path.to_owned(),
            }),
        }
    }

    /// Opens an existing store for reading, never writing to the file (so a read-only file
    /// works). With no crawl running, the store is verified first (see the module docs); beside
    /// a running crawl it reads the writer's committed snapshots.
    pub fn open_read(path: &Path) -> Result<Self, StoreError> {
        require_existing(path)?;
        let (db, pin) = if writer_running(path)? {
            let db = caught(|| builder().open_read_only(path))
                .map_err(|detail| damaged(path, detail))?
                .map_err(|e| open_error(path, e))?;
            (Db::Read(db), None)
        } else {
            // Pinned first, verified second: the pin then holds the snapshot the check verifies.
            // A store redb will not open read-only (left by a killed crawl) goes unpinned.
            let pin = caught(|| builder().open_read_only(path).ok()?.begin_read().ok())
                .ok()
                .flatten();
            (Db::Verified(open_verified(path)?), pin)
        };
        let store = Self {
            db,
            path: path.to_owned(),
            _pin: pin,
        };
        store.check_schema()?;
        Ok(store)
    }

    /// Whether this handle reads beside a crawl that is writing to the store.
    pub fn beside_writer(&self) -> bool {
        matches!(self.db, Db::Read(_))
    }

    /// Whether this handle may write.
    pub fn is_writable(&self) -> bool {
        matches!(self.db, Db::Write(_))
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn init(&self) -> Result<(), StoreError> {
        self.write(|w| {
            // Creating every table up front lets readers assume they exist.
            w.txn.open_table(TAGS)?;
            w.txn.open_table(DIGESTS)?;
            w.txn.open_table(PAIRS)?;
            w.txn.open_table(PARENTS)?;
            w.txn.open_table(MANIFESTS)?;
            w.txn.open_table(CONFIGS)?;
            w.txn.open_table(CHAINS)?;
            w.txn.open_table(CATALOG_REPOS)?;
            match w.meta::<u64>(META_SCHEMA)? {
                None => w.set_meta(META_SCHEMA, &SCHEMA_VERSION),
                Some(_) => Ok(()),
            }
        })?;
        self.check_schema()
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let found = self.read(|r| r.meta::<u64>(META_SCHEMA))?;
        match found {
            Some(SCHEMA_VERSION) => Ok(()),
            Some(other) => Err(StoreError::Incompatible {
                path: self.path.clone(),
                reason: format!(
                    "its schema version is {other}, this digestmap reads version {SCHEMA_VERSION}"
                ),
            }),
            None => Err(StoreError::Incompatible {
                path: self.path.clone(),
                reason: "it has no schema version".into(),
            }),
        }
    }

    fn wrap(&self, e: TxError) -> StoreError {
        match e {
            TxError::Db(redb::Error::TableDoesNotExist(table)) => StoreError::Incompatible {
                path: self.path.clone(),
                reason: format!("table {table} is missing"),
            },
            TxError::Db(source) => redb_error(&self.path, source),
            TxError::Decode(source) => StoreError::Decode {
                path: self.path.clone(),
                source,
            },
            TxError::Panicked(detail) => damaged(&self.path, detail),
        }
    }

    /// Runs `f` in one write transaction and commits it durably; nothing of it is kept if `f`
    /// fails or the commit fails (a full disk, say).
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut WriteBatch<'_>) -> Result<T, TxError>,
    ) -> Result<T, StoreError> {
        let Db::Write(db) = &self.db else {
            return Err(StoreError::ReadOnly {
                path: self.path.clone(),
            });
        };
        // A panic inside redb drops the transaction uncommitted: nothing of it is kept.
        let run = || -> Result<T, TxError> {
            let txn = db.begin_write()?;
            let out = {
                let mut batch = WriteBatch::open(&txn)?;
                f(&mut batch)?
            };
            txn.commit()?;
            Ok(out)
        };
        guarded(run).map_err(|e| self.wrap(e))
    }

    /// A consistent read snapshot.
    pub fn snapshot(&self) -> Result<ReadBatch, StoreError> {
        guarded(|| {
            let txn = match &self.db {
                Db::Write(db) | Db::Verified(db) => db.begin_read(),
                Db::Read(db) => db.begin_read(),
            };
            Ok(ReadBatch { txn: txn? })
        })
        .map_err(|e| self.wrap(e))
    }

    /// Runs `f` on a consistent snapshot.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&ReadBatch) -> Result<T, TxError>,
    ) -> Result<T, StoreError> {
        let snapshot = self.snapshot()?;
        guarded(|| f(&snapshot)).map_err(|e| self.wrap(e))
    }

    /// Attaches the store path to an error raised inside a transaction.
    pub fn error(&self, e: TxError) -> StoreError {
        self.wrap(e)
    }

    /// The crawl run recorded in the store, if any.
    pub fn run(&self) -> Result<Option<CrawlRun>, StoreError> {
        self.read(|r| r.meta(META_RUN))
    }

    /// The current run's counters.
    pub fn stats(&self) -> Result<RunStats, StoreError> {
        self.read(|r| Ok(r.meta(META_STATS)?.unwrap_or_default()))
    }

    /// The stored pacing pause (unix seconds), if any.
    pub fn pause_until(&self) -> Result<Option<u64>, StoreError> {
        self.read(|r| r.meta(META_PAUSE))
    }
}

fn open_error(path: &Path, e: DatabaseError) -> StoreError {
    match e {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            StoreError::Busy {
                path: path.to_owned(),
            }
        }
        other => redb_error(path, other.into()),
    }
}

/// Sorts redb's errors into damage, truncation, a file that is not a store, and the rest.
fn redb_error(path: &Path, e: redb::Error) -> StoreError {
    let storage = match &e {
        // redb reports a file shorter than its header's layout as corruption; its message is the
        // only place that tells the two apart ("File truncated below stored layout: …").
        redb::Error::Corrupted(detail) if detail.to_lowercase().contains("truncated") => {
            return StoreError::Truncated {
                path: path.to_owned(),
                detail: format!("redb: {detail}"),
            };
        }
        redb::Error::Corrupted(detail) => {
            return damaged(path, format!("redb's integrity check failed: {detail}"));
        }
        redb::Error::Io(io) => Some(io),
        _ => None,
    };
    if let Some(io) = storage {
        match io.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                return StoreError::Truncated {
                    path: path.to_owned(),
                    detail: format!("the file ends before the data redb expects: {io}"),
                };
            }
            std::io::ErrorKind::InvalidData => {
                return StoreError::Incompatible {
                    path: path.to_owned(),
                    reason: format!("it does not hold a redb database ({io})"),
                };
            }
            _ => {}
        }
    }
    StoreError::Database {
        path: path.to_owned(),
        source: e,
    }
}

fn damaged(path: &Path, detail: String) -> StoreError {
    StoreError::Damaged {
        path: path.to_owned(),
        detail,
    }
}

/// The file's length, `None` when there is no file.
/// Fails unless a non-empty file stands at `path`: a missing one is [`StoreError::Missing`], an
/// empty one no store at all. For the commands that read an existing store and must not create
/// one.
fn require_existing(path: &Path) -> Result<(), StoreError> {
    match file_len(path)? {
        None => Err(StoreError::Missing {
            path: path.to_owned(),
        }),
        Some(0) => Err(StoreError::Incompatible {
            path: path.to_owned(),
            reason: "the file is empty".into(),
        }),
        Some(_) => Ok(()),
    }
}

fn file_len(path: &Path) -> Result<Option<u64>, StoreError> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Database {
            path: path.to_owned(),
            source: e.into(),
        }),
    }
}

/// Whether a crawl has the store open for writing (see [`verified::writer_running`]).
fn writer_running(path: &Path) -> Result<bool, StoreError> {
    verified::writer_running(path).map_err(|e| StoreError::Database {
        path: path.to_owned(),
        source: e.into(),
    })
}

/// Runs redb's integrity check on the store through an [`verified::Overlay`] (the file is only
/// read) and returns the verified database, or the damage found.
fn open_verified(path: &Path) -> Result<Database, StoreError> {
    let io = |e: std::io::Error| StoreError::Database {
        path: path.to_owned(),
        source: e.into(),
    };
    let overlay = verified::Overlay::new(std::fs::File::open(path).map_err(io)?).map_err(io)?;
    let mut builder = Database::builder();
    // The overlay takes no file locks, so only the exclusive mode applies; other processes are
    // kept out by the caller's check that no writer runs.
    builder
        .set_cache_size(CACHE_BYTES)
        .set_check_integrity_on_open(true);
    caught(|| builder.create_with_backend(overlay))
        .map_err(|detail| damaged(path, detail))?
        .map_err(|e| open_error(path, e))
}

/// Up to `limit` keys of a digest-keyed table whose hex form starts with `hex_prefix`
/// (lowercase hex, any length up to 64), in order.
fn keys_with_prefix(
    table: &impl ReadableTable<[u8; 32], &'static [u8]>,
    hex_prefix: &str,
    limit: usize,
) -> Result<Vec<Digest>, TxError> {
    let mut low = [0u8; 32];
    let mut high = [0xffu8; 32];
    for (i, c) in hex_prefix.bytes().take(64).enumerate() {
        let nibble = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return Ok(Vec::new()),
        };
        let shift = if i % 2 == 0 { 4 } else { 0 };
        low[i / 2] = (low[i / 2] & !(0x0f << shift)) | (nibble << shift);
        high[i / 2] = (high[i / 2] & !(0x0f << shift)) | (nibble << shift);
    }
    let mut out = Vec::new();
    for item in table.range(low..=high)? {
        let (key, _) = item?;
        out.push(Digest::from_bytes(key.value()));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// Decodes the records of `table` whose ids lie in `range`, by id.
fn decode_range<T: Record>(
    table: &impl ReadableTable<u64, &'static [u8]>,
    range: impl std::ops::RangeBounds<u64>,
) -> Result<Vec<(JobId, T)>, TxError> {
    let mut out = Vec::new();
    for item in table.range(range)? {
        let (id, value) = item?;
        out.push((id.value(), decode(value.value())?));
    }
    Ok(out)
}

/// Decodes every record of a digest-keyed table, in digest order.
fn decode_all<T: Record>(
    table: &impl ReadableTable<[u8; 32], &'static [u8]>,
) -> Result<Vec<(Digest, T)>, TxError> {
    let mut out = Vec::new();
    for item in table.iter()? {
        let (key, value) = item?;
        out.push((Digest::from_bytes(key.value()), decode(value.value())?));
    }
    Ok(out)
}

/// One record of a digest-keyed table.
fn get_record<T: Record>(
    table: &impl ReadableTable<[u8; 32], &'static [u8]>,
    digest: &Digest,
) -> Result<Option<T>, TxError> {
    match table.get(*digest.as_bytes())? {
        Some(guard) => Ok(Some(decode(guard.value())?)),
        None => Ok(None),
    }
}

/// A table that a store written before `enrich` existed does not have (it is created by the
/// first command that opens the store for writing): absent reads as empty.
fn optional_table<T>(opened: Result<T, redb::TableError>) -> Result<Option<T>, TxError> {
    match opened {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// One record of a string-keyed table (`meta`, `catalog_repos`).
fn get_keyed<T: Record>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, TxError> {
    match table.get(key)? {
        Some(guard) => Ok(Some(decode(guard.value())?)),
        None => Ok(None),
    }
}

/// The `catalog_repos` records of the source at `host`: its keys are `host/path`.
fn catalog_repos_of(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    host: &str,
) -> Result<Vec<(String, CatalogRepo)>, TxError> {
    let prefix = format!("{host}/");
    let mut out = Vec::new();
    for item in table.range(prefix.as_str()..)? {
        let (key, value) = item?;
        if !key.value().starts_with(&prefix) {
            break;
        }
        out.push((key.value().to_owned(), decode(value.value())?));
    }
    Ok(out)
}

/// The tags of one repository, by tag name.
fn tags_of(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    repo: &RepoName,
) -> Result<Vec<(String, TagState)>, TxError> {
    let key = repo.to_string();
    let mut out = Vec::new();
    for item in table.range((key.as_str(), "")..)? {
        let (k, value) = item?;
        let (r, tag) = k.value();
        if r != key {
            break;
        }
        out.push((tag.to_owned(), decode(value.value())?));
    }
    Ok(out)
}

/// The tables of one write transaction.
pub struct WriteBatch<'t> {
    txn: &'t WriteTransaction,
    meta: Table<'t, &'static str, &'static [u8]>,
    jobs: Table<'t, u64, &'static [u8]>,
    failed: Table<'t, u64, &'static [u8]>,
    repos: Table<'t, &'static str, &'static [u8]>,
}

impl<'t> WriteBatch<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, TxError> {
        Ok(Self {
            txn,
            meta: txn.open_table(META)?,
            jobs: txn.open_table(JOBS)?,
            failed: txn.open_table(FAILED)?,
            repos: txn.open_table(REPOS)?,
        })
    }

    /// Reads a `meta` record.
    pub fn meta<T: Record>(&self, key: &str) -> Result<Option<T>, TxError> {
        get_keyed(&self.meta, key)
    }

    /// Writes a `meta` record.
    pub fn set_meta<T: Record>(&mut self, key: &str, value: &T) -> Result<(), TxError> {
        self.meta.insert(key, encode(value).as_slice())?;
        Ok(())
    }

    /// The crawl run.
    pub fn run(&self) -> Result<Option<CrawlRun>, TxError> {
        self.meta(META_RUN)
    }

    /// Replaces the crawl run.
    pub fn set_run(&mut self, run: &CrawlRun) -> Result<(), TxError> {
        self.set_meta(META_RUN, run)
    }

    /// The run's counters.
    pub fn stats(&self) -> Result<RunStats, TxError> {
        Ok(self.meta(META_STATS)?.unwrap_or_default())
    }

    /// Replaces the run's counters.
    pub fn set_stats(&mut self, stats: &RunStats) -> Result<(), TxError> {
        self.set_meta(META_STATS, stats)
    }

    /// Stores the pacing pause (unix seconds), or clears it.
    pub fn set_pause_until(&mut self, until: Option<u64>) -> Result<(), TxError> {
        match until {
            Some(t) => self.set_meta(META_PAUSE, &t),
            None => {
                self.meta.remove(META_PAUSE)?;
                Ok(())
            }
        }
    }

    /// Adds a job under a fresh id.
    pub fn add_job(&mut self, job: &Job) -> Result<JobId, TxError> {
        let id: u64 = self.meta(META_NEXT_JOB)?.unwrap_or(1);
        self.set_meta(META_NEXT_JOB, &(id + 1))?;
        self.put_job(id, job)?;
        Ok(id)
    }

    /// Writes a job under its id.
    pub fn put_job(&mut self, id: JobId, job: &Job) -> Result<(), TxError> {
        self.jobs.insert(id, encode(job).as_slice())?;
        Ok(())
    }

    /// Removes a finished job; false if it was not there.
    pub fn remove_job(&mut self, id: JobId) -> Result<bool, TxError> {
        Ok(self.jobs.remove(id)?.is_some())
    }

    /// Moves a job to `failed`.
    pub fn fail_job(&mut self, id: JobId, failed: &FailedJob) -> Result<(), TxError> {
        self.jobs.remove(id)?;
        self.failed.insert(id, encode(failed).as_slice())?;
        Ok(())
    }

    /// Moves every failed crawl job back to `jobs` with fresh attempts; returns how many.
    pub fn retry_failed(&mut self) -> Result<u64, TxError> {
        let mut moved = 0;
        for (id, failed) in self.take_failed()? {
            let job = Job {
                attempts: 0,
                not_before_ms: 0,
                ..failed.job
            };
            self.jobs.insert(id, encode(&job).as_slice())?;
            moved += 1;
        }
        Ok(moved)
    }

    /// Removes every failed crawl job and returns them (`crawl --resume --skip-failed`).
    pub fn take_failed(&mut self) -> Result<Vec<(JobId, FailedJob)>, TxError> {
        let out: Vec<(JobId, FailedJob)> = decode_range(&self.failed, ..CATALOG_JOB_BASE)?;
        for (id, _) in &out {
            self.failed.remove(*id)?;
        }
        Ok(out)
    }

    /// Adds an enrich job under a fresh id of the enrich range.
    pub fn add_enrich_job(&mut self, job: &EnrichJob) -> Result<JobId, TxError> {
        let id: u64 = self
            .meta(META_NEXT_ENRICH_JOB)?
            .unwrap_or(ENRICH_JOB_BASE)
            .max(ENRICH_JOB_BASE);
        self.set_meta(META_NEXT_ENRICH_JOB, &(id + 1))?;
        self.put_enrich_job(id, job)?;
        Ok(id)
    }

    /// Writes an enrich job under its id.
    pub fn put_enrich_job(&mut self, id: JobId, job: &EnrichJob) -> Result<(), TxError> {
        debug_assert!(id >= ENRICH_JOB_BASE);
        self.jobs.insert(id, encode(job).as_slice())?;
        Ok(())
    }

    /// Moves an enrich job to `failed`.
    pub fn fail_enrich_job(&mut self, id: JobId, failed: &FailedEnrich) -> Result<(), TxError> {
        self.jobs.remove(id)?;
        self.failed.insert(id, encode(failed).as_slice())?;
        Ok(())
    }

    /// Moves every failed enrich job back to `jobs` with fresh attempts; returns how many.
    pub fn retry_failed_enrich(&mut self) -> Result<u64, TxError> {
        let failed: Vec<(JobId, FailedEnrich)> = decode_range(&self.failed, ENRICH_JOB_BASE..)?;
        for (id, f) in &failed {
            self.failed.remove(*id)?;
            let job = EnrichJob {
                attempts: 0,
                not_before_ms: 0,
                ..f.job.clone()
            };
            self.jobs.insert(*id, encode(&job).as_slice())?;
        }
        Ok(failed.len() as u64)
    }

    /// What `enrich` learned of a manifest digest, if anything.
    pub fn manifest(&self, digest: &Digest) -> Result<Option<ManifestRecord>, TxError> {
        get_record(&self.txn.open_table(MANIFESTS)?, digest)
    }

    /// A pending catalog job, as this transaction sees it.
    pub fn catalog_job(&self, id: JobId) -> Result<Option<CatalogJob>, TxError> {
        match self.jobs.get(id)? {
            Some(guard) if (CATALOG_JOB_BASE..ENRICH_JOB_BASE).contains(&id) => {
                Ok(Some(decode(guard.value())?))
            }
            _ => Ok(None),
        }
    }

    /// A learned config, if any.
    pub fn config(&self, digest: &Digest) -> Result<Option<ConfigRecord>, TxError> {
        get_record(&self.txn.open_table(CONFIGS)?, digest)
    }

    /// Adds a catalog job under a fresh id of the catalog range.
    pub fn add_catalog_job(&mut self, job: &CatalogJob) -> Result<JobId, TxError> {
        let id: u64 = self
            .meta(META_NEXT_CATALOG_JOB)?
            .unwrap_or(CATALOG_JOB_BASE)
            .max(CATALOG_JOB_BASE);
        self.set_meta(META_NEXT_CATALOG_JOB, &(id + 1))?;
        self.put_catalog_job(id, job)?;
        Ok(id)
    }

    /// Writes a catalog job under its id.
    pub fn put_catalog_job(&mut self, id: JobId, job: &CatalogJob) -> Result<(), TxError> {
        debug_assert!((CATALOG_JOB_BASE..ENRICH_JOB_BASE).contains(&id));
        self.jobs.insert(id, encode(job).as_slice())?;
        Ok(())
    }

    /// Moves a catalog job to `failed`.
    pub fn fail_catalog_job(
        &mut self,
        id: JobId,
        failed: &FailedCatalogJob,
    ) -> Result<(), TxError> {
        self.jobs.remove(id)?;
        self.failed.insert(id, encode(failed).as_slice())?;
        Ok(())
    }

    /// Moves every failed catalog job of the source at `host` back to `jobs` with fresh
    /// attempts; returns how many.
    pub fn retry_failed_catalog(&mut self, host: &str) -> Result<u64, TxError> {
        let failed: Vec<(JobId, FailedCatalogJob)> =
            decode_range(&self.failed, CATALOG_JOB_BASE..ENRICH_JOB_BASE)?;
        let mut moved = 0;
        for (id, f) in failed.into_iter().filter(|(_, f)| f.job.source == host) {
            self.failed.remove(id)?;
            let job = CatalogJob {
                attempts: 0,
                not_before_ms: 0,
                ..f.job
            };
            self.jobs.insert(id, encode(&job).as_slice())?;
            moved += 1;
        }
        Ok(moved)
    }

    /// Removes every failed catalog job of the source at `host` and returns them (`crawl
    /// --catalog URL --resume --skip-failed` gives them up).
    pub fn take_failed_catalog(
        &mut self,
        host: &str,
    ) -> Result<Vec<(JobId, FailedCatalogJob)>, TxError> {
        let failed: Vec<(JobId, FailedCatalogJob)> =
            decode_range(&self.failed, CATALOG_JOB_BASE..ENRICH_JOB_BASE)?;
        let mine: Vec<(JobId, FailedCatalogJob)> = failed
            .into_iter()
            .filter(|(_, f)| f.job.source == host)
            .collect();
        for (id, _) in &mine {
            self.failed.remove(*id)?;
        }
        Ok(mine)
    }

    /// The run of the catalog source at `host`.
    pub fn catalog_run(&self, host: &str) -> Result<Option<CatalogRun>, TxError> {
        self.meta(&catalog_run_key(host))
    }

    /// Replaces the run of its catalog source.
    pub fn set_catalog_run(&mut self, run: &CatalogRun) -> Result<(), TxError> {
        self.set_meta(&catalog_run_key(&run.host), run)
    }

    /// The counters of the catalog source at `host`.
    pub fn catalog_stats(&self, host: &str) -> Result<CatalogStats, TxError> {
        Ok(self.meta(&catalog_stats_key(host))?.unwrap_or_default())
    }

    /// Replaces the counters of the catalog source at `host`.
    pub fn set_catalog_stats(&mut self, host: &str, stats: &CatalogStats) -> Result<(), TxError> {
        self.set_meta(&catalog_stats_key(host), stats)
    }

    /// Stores the pacing pause of the catalog source at `host` (unix seconds), or clears it.
    pub fn set_catalog_pause(&mut self, host: &str, until: Option<u64>) -> Result<(), TxError> {
        let key = catalog_pause_key(host);
        match until {
            Some(t) => self.set_meta(&key, &t),
            None => {
                self.meta.remove(key.as_str())?;
                Ok(())
            }
        }
    }

    /// Stores `enrich`'s pacing pause for the registry at `host` (unix seconds), or clears it.
    pub fn set_enrich_pause(&mut self, host: &str, until: Option<u64>) -> Result<(), TxError> {
        let key = enrich_pause_key(host);
        match until {
            Some(t) => self.set_meta(&key, &t),
            None => {
                self.meta.remove(key.as_str())?;
                Ok(())
            }
        }
    }

    /// How far its source's run got with a host-qualified repository.
    pub fn catalog_repo(&self, repo: &RepoName) -> Result<Option<CatalogRepo>, TxError> {
        get_keyed(&self.txn.open_table(CATALOG_REPOS)?, &repo.to_string())
    }

    /// Replaces a host-qualified repository's state.
    pub fn put_catalog_repo(
        &mut self,
        repo: &RepoName,
        state: &CatalogRepo,
    ) -> Result<(), TxError> {
        self.txn
            .open_table(CATALOG_REPOS)?
            .insert(repo.to_string().as_str(), encode(state).as_slice())?;
        Ok(())
    }

    /// The repositories of the catalog source at `host`, by host-qualified name.
    pub fn catalog_repos(&self, host: &str) -> Result<Vec<(String, CatalogRepo)>, TxError> {
        catalog_repos_of(&self.txn.open_table(CATALOG_REPOS)?, host)
    }

    /// A digest's record, if the store knows it.
    pub fn digest(&self, digest: &Digest) -> Result<Option<DigestRecord>, TxError> {
        get_record(&self.txn.open_table(DIGESTS)?, digest)
    }

    /// Gives a known digest the platform (and `os_version`) it was stored without: a single
    /// platform manifest's come from its config, which is read after the tag is stored. A
    /// platform already known is kept.
    pub fn learn_platform(
        &mut self,
        digest: &Digest,
        platform: Option<crate::model::Platform>,
        os_version: Option<String>,
    ) -> Result<(), TxError> {
        let mut table = self.txn.open_table(DIGESTS)?;
        let Some(old) = table.get(*digest.as_bytes())?.map(|g| g.value().to_vec()) else {
            return Ok(());
        };
        let mut record: DigestRecord = decode(&old)?;
        if record.platform.is_some() || platform.is_none() {
            return Ok(());
        }
        record.platform = platform;
        record.os_version = record.os_version.or(os_version);
        table.insert(*digest.as_bytes(), encode(&record).as_slice())?;
        Ok(())
    }

    /// Records what `enrich` found a digest Hub listed as a platform manifest (a tag with
    /// `images: []`) to be: an index holding `children` (each with the platform and
    /// `os_version` its entry gives). The store then holds it as the crawl holds an index Hub
    /// lists: its kind is `index`; each child is a `manifest` digest with that platform, linked
    /// to it in `parents`, with its tags (each pair seen when the index's was); and each tag
    /// whose latest sighting showed the index shows its children too, so they are current as
    /// long as it is (a later crawl keeps them so: [`WriteBatch::record_tags`]). Idempotent;
    /// nothing when the store does not hold the digest.
    pub fn link_index(
        &mut self,
        index: &Digest,
        children: &[(Digest, Option<crate::model::Platform>, Option<String>)],
    ) -> Result<(), TxError> {
        let mut digests = self.txn.open_table(DIGESTS)?;
        let key = *index.as_bytes();
        let Some(old) = digests.get(key)?.map(|g| g.value().to_vec()) else {
            return Ok(());
        };
        let mut record: DigestRecord = decode(&old)?;
        let span = (record.first_seen, record.last_seen);
        if record.kind != crate::model::ObjectKind::Index {
            record.kind = crate::model::ObjectKind::Index;
            // An index has no platform of its own: its children do.
            record.platform = None;
            record.os_version = None;
            digests.insert(key, encode(&record).as_slice())?;
        }
        let widen = |old: Option<(u64, u64)>| match old {
            Some((first, last)) => (first.min(span.0), last.max(span.1)),
            None => span,
        };
        for (child, platform, os_version) in children {
            let child_key = *child.as_bytes();
            let record = match digests.get(child_key)? {
                Some(old) => {
                    let old: DigestRecord = decode(old.value())?;
                    let (first_seen, last_seen) = widen(Some((old.first_seen, old.last_seen)));
                    DigestRecord {
                        first_seen,
                        last_seen,
                        platform: old.platform.or_else(|| platform.clone()),
                        os_version: old.os_version.or_else(|| os_version.clone()),
                        kind: old.kind,
                    }
                }
                None => DigestRecord {
                    kind: crate::model::ObjectKind::Manifest,
                    platform: platform.clone(),
                    os_version: os_version.clone(),
                    first_seen: span.0,
                    last_seen: span.1,
                },
            };
            digests.insert(child_key, encode(&record).as_slice())?;
        }
        let mut parents = self.txn.open_table(PARENTS)?;
        for (child, _, _) in children {
            let parent_key = (*child.as_bytes(), key);
            let old = parents.get(parent_key)?.map(|g| g.value());
            parents.insert(parent_key, widen(old))?;
        }
        let mut pairs = self.txn.open_table(PAIRS)?;
        let mut tagged: Vec<(String, (u64, u64))> = Vec::new();
        for item in pairs.range((key, "")..)? {
            let (k, v) = item?;
            let (d, tag) = k.value();
            if d != key {
                break;
            }
            tagged.push((tag.to_owned(), v.value()));
        }
        for (child, _, _) in children {
            for (tag, seen) in &tagged {
                let pair_key = (*child.as_bytes(), tag.as_str());
                let merged = match pairs.get(pair_key)?.map(|g| g.value()) {
                    Some((first, last)) => (first.min(seen.0), last.max(seen.1)),
                    None => *seen,
                };
                pairs.insert(pair_key, merged)?;
            }
        }
        let mut tags = self.txn.open_table(TAGS)?;
        for (repo_tag, _) in &tagged {
            let Some((repo, tag)) = repo_tag.rsplit_once(':') else {
                continue;
            };
            let repo = if repo.contains('/') {
                repo.to_owned()
            } else {
                format!("library/{repo}")
            };
            let Some(old) = tags.get((repo.as_str(), tag))?.map(|g| g.value().to_vec()) else {
                continue;
            };
            let mut state: TagState = decode(&old)?;
            if !state.digests.contains(index) {
                continue;
            }
            let before = state.digests.len();
            for (child, _, _) in children {
                if !state.digests.contains(child) {
                    state.digests.push(*child);
                }
            }
            if state.digests.len() != before {
                tags.insert((repo.as_str(), tag), encode(&state).as_slice())?;
            }
        }
        Ok(())
    }

    /// Stores what a manifest digest is.
    pub fn put_manifest(
        &mut self,
        digest: &Digest,
        record: &ManifestRecord,
    ) -> Result<(), TxError> {
        self.txn
            .open_table(MANIFESTS)?
            .insert(*digest.as_bytes(), encode(record).as_slice())?;
        Ok(())
    }

    /// Whether the config `digest` is learned.
    pub fn has_config(&self, digest: &Digest) -> Result<bool, TxError> {
        Ok(self
            .txn
            .open_table(CONFIGS)?
            .get(*digest.as_bytes())?
            .is_some())
    }

    /// Stores a config and the ChainID of every prefix of its diff_ids.
    pub fn put_config(&mut self, digest: &Digest, record: &ConfigRecord) -> Result<(), TxError> {
        self.txn
            .open_table(CONFIGS)?
            .insert(*digest.as_bytes(), encode(record).as_slice())?;
        let mut chains = self.txn.open_table(CHAINS)?;
        for (depth, chain) in crate::registry::chain_ids(&record.diff_ids)
            .iter()
            .enumerate()
        {
            let depth = u32::try_from(depth + 1).unwrap_or(u32::MAX);
            chains.insert((*chain.as_bytes(), *digest.as_bytes()), depth)?;
        }
        Ok(())
    }

    /// The stored pull budget.
    pub fn budget(&self) -> Result<Option<StoredBudget>, TxError> {
        self.meta(META_BUDGET)
    }

    /// Replaces the stored pull budget.
    pub fn set_budget(&mut self, budget: &StoredBudget) -> Result<(), TxError> {
        self.set_meta(META_BUDGET, budget)
    }

    /// `enrich`'s counters.
    pub fn enrich_stats(&self) -> Result<EnrichStats, TxError> {
        Ok(self.meta(META_ENRICH_STATS)?.unwrap_or_default())
    }

    /// Replaces `enrich`'s counters.
    pub fn set_enrich_stats(&mut self, stats: &EnrichStats) -> Result<(), TxError> {
        self.set_meta(META_ENRICH_STATS, stats)
    }

    /// What run `run` left out so far (nothing when the stored gaps are an earlier run's).
    pub fn gaps(&self, run: u64) -> Result<RunGaps, TxError> {
        Ok(self
            .meta::<RunGaps>(META_GAPS)?
            .filter(|g| g.run == run)
            .unwrap_or(RunGaps {
                run,
                ..RunGaps::default()
            }))
    }

    /// Replaces what the run left out.
    pub fn set_gaps(&mut self, gaps: &RunGaps) -> Result<(), TxError> {
        self.set_meta(META_GAPS, gaps)
    }

    /// The anonymous paging caps learned of the Hub origin `origin` (none known: default).
    pub fn paging_caps(&self, origin: &str) -> Result<PagingCaps, TxError> {
        Ok(self.meta(&paging_caps_key(origin))?.unwrap_or_default())
    }

    /// Records the anonymous paging caps learned of the Hub origin `origin`.
    pub fn set_paging_caps(&mut self, origin: &str, caps: &PagingCaps) -> Result<(), TxError> {
        self.set_meta(&paging_caps_key(origin), caps)
    }

    /// The registry's tag names of `repo` as run `run` read them (none for another run's).
    pub fn tag_names(&self, repo: &RepoName, run: u64) -> Result<Option<TagNames>, TxError> {
        Ok(self
            .meta::<TagNames>(&tag_names_key(repo))?
            .filter(|n| n.run == run))
    }

    /// Replaces the registry's tag names of `repo`.
    pub fn set_tag_names(&mut self, repo: &RepoName, names: &TagNames) -> Result<(), TxError> {
        self.set_meta(&tag_names_key(repo), names)
    }

    /// How far the current run got with a repository.
    pub fn repo(&self, repo: &RepoName) -> Result<Option<RepoState>, TxError> {
        match self.repos.get(repo.to_string().as_str())? {
            Some(guard) => Ok(Some(decode(guard.value())?)),
            None => Ok(None),
        }
    }

    /// The tags of one repository, by tag name, as this transaction sees them.
    pub fn repo_tags(&self, repo: &RepoName) -> Result<Vec<(String, TagState)>, TxError> {
        tags_of(&self.txn.open_table(TAGS)?, repo)
    }

    /// One tag's state, if it was ever seen.
    pub fn tag_state(&self, repo: &RepoName, tag: &str) -> Result<Option<TagState>, TxError> {
        let key = repo.to_string();
        match self.txn.open_table(TAGS)?.get((key.as_str(), tag))? {
            Some(guard) => Ok(Some(decode(guard.value())?)),
            None => Ok(None),
        }
    }

    /// Marks tags of `repo` as deleted from Hub at `now` (they stop being current).
    pub fn mark_deleted(
        &mut self,
        repo: &RepoName,
        tags: &[String],
        now: u64,
    ) -> Result<(), TxError> {
        let key = repo.to_string();
        let mut table = self.txn.open_table(TAGS)?;
        for tag in tags {
            let state = match table.get((key.as_str(), tag.as_str()))? {
                Some(guard) => decode::<TagState>(guard.value())?,
                None => continue,
            };
            let state = TagState {
                deleted_at: Some(now),
                ..state
            };
            table.insert((key.as_str(), tag.as_str()), encode(&state).as_slice())?;
        }
        Ok(())
    }

    /// Every repository with its state, by name.
    pub fn repos(&self) -> Result<Vec<(String, RepoState)>, TxError> {
        let mut out = Vec::new();
        for item in self.repos.iter()? {
            let (name, value) = item?;
            out.push((name.value().to_owned(), decode(value.value())?));
        }
        Ok(out)
    }

    /// Replaces a repository's state.
    pub fn put_repo(&mut self, repo: &RepoName, state: &RepoState) -> Result<(), TxError> {
        self.repos
            .insert(repo.to_string().as_str(), encode(state).as_slice())?;
        Ok(())
    }

    /// Stores one observed tag: see [`WriteBatch::record_tags`].
    pub fn record_tag(
        &mut self,
        repo: &RepoName,
        obs: &TagObservation,
        now: u64,
        run: u64,
    ) -> Result<(), TxError> {
        self.record_tags(repo, std::slice::from_ref(obs), now, run)
    }

    /// Stores the observed tags of one page: each tag's state, every digest they showed, the
    /// `repo:tag` pair of each, and each manifest's index. Idempotent: storing the same
    /// observations twice changes only the last-seen times.
    ///
    /// Aliases share digests, so a page holds each digest several times: digests and index links
    /// are merged first and written once each, and every table is written in key order, which
    /// keeps the B-tree pages a commit touches few.
    pub fn record_tags(
        &mut self,
        repo: &RepoName,
        observations: &[TagObservation],
        now: u64,
        run: u64,
    ) -> Result<(), TxError> {
        let repo_key = repo.to_string();
        let mut tags = self.txn.open_table(TAGS)?;
        let mut digests = self.txn.open_table(DIGESTS)?;
        let mut pairs = self.txn.open_table(PAIRS)?;
        let mut parents = self.txn.open_table(PARENTS)?;
        let manifests = self.txn.open_table(MANIFESTS)?;

        // What the page says of each digest, merged over its sightings: the first decides the
        // kind (as when tags come one by one), and a known platform or `os_version` beats an
        // unknown one (an alias with `images: []` knows nothing of its digest's platform).
        let mut facts: BTreeMap<[u8; 32], PageFact> = BTreeMap::new();
        let mut pair_keys: Vec<([u8; 32], String)> = Vec::new();
        let mut parent_keys: Vec<([u8; 32], [u8; 32])> = Vec::new();
        // Digests Hub lists as a plain manifest that `enrich` found to be indexes.
        let mut learned_indexes: Vec<[u8; 32]> = Vec::new();
        let mut learned_children: Vec<[u8; 32]> = Vec::new();
        for obs in observations {
            let learned = learned_index(&manifests, obs)?;
            if let Some((index, children)) = &learned {
                learned_indexes.push(*index.as_bytes());
                learned_children.extend(children.iter().map(|c| *c.as_bytes()));
            }
            let extended;
            let obs_facts: &[crate::hub::DigestFact] = match learned {
                Some((index, children)) => {
                    extended = index_facts(&obs.facts, index, &children);
                    &extended
                }
                None => &obs.facts,
            };
            let digests: Vec<Digest> = obs_facts.iter().map(|f| f.digest).collect();
            let first_seen = match tags.get((repo_key.as_str(), obs.tag.as_str()))? {
                Some(old) => decode::<TagState>(old.value())?.first_seen.min(now),
                None => now,
            };
            let state = TagState {
                digest: obs.digest,
                digests,
                pushed: obs.pushed.clone(),
                updated: obs.updated.clone(),
                first_seen,
                last_seen: now,
                run,
                deleted_at: None,
            };
            tags.insert(
                (repo_key.as_str(), obs.tag.as_str()),
                encode(&state).as_slice(),
            )?;
            let repo_tag = RepoTag {
                repo: repo.clone(),
                tag: obs.tag.clone(),
            }
            .to_string();
            for fact in obs_facts {
                let key = *fact.digest.as_bytes();
                facts
                    .entry(key)
                    .and_modify(|known| known.learn(fact))
                    .or_insert_with(|| PageFact::of(fact));
                pair_keys.push((key, repo_tag.clone()));
                if let Some(index) = fact.index {
                    parent_keys.push((key, *index.as_bytes()));
                }
            }
        }

        for (key, fact) in facts {
            let learned = learned_indexes.contains(&key);
            let record = match digests.get(key)? {
                Some(old) => {
                    let old: DigestRecord = decode(old.value())?;
                    DigestRecord {
                        first_seen: old.first_seen.min(now),
                        last_seen: old.last_seen.max(now),
                        platform: old.platform.or(fact.platform).filter(|_| !learned),
                        os_version: old.os_version.or(fact.os_version).filter(|_| !learned),
                        kind: if learned {
                            crate::model::ObjectKind::Index
                        } else {
                            old.kind
                        },
                    }
                }
                None => {
                    // A platform manifest of an index `enrich` learned before it recorded the
                    // platforms of an index's entries (an older release): its config's.
                    let (platform, os_version) =
                        if fact.platform.is_none() && learned_children.contains(&key) {
                            config_platform(self.txn, &manifests, key)?
                        } else {
                            (fact.platform, fact.os_version)
                        };
                    DigestRecord {
                        kind: fact.kind,
                        platform,
                        os_version,
                        first_seen: now,
                        last_seen: now,
                    }
                }
            };
            digests.insert(key, encode(&record).as_slice())?;
        }
        let seen = |old: Option<(u64, u64)>, now: u64| match old {
            Some((first, last)) => (first.min(now), last.max(now)),
            None => (now, now),
        };
        pair_keys.sort_unstable();
        pair_keys.dedup();
        for (key, repo_tag) in &pair_keys {
            let pair_key = (*key, repo_tag.as_str());
            let old = pairs.get(pair_key)?.map(|g| g.value());
            pairs.insert(pair_key, seen(old, now))?;
        }
        parent_keys.sort_unstable();
        parent_keys.dedup();
        for parent_key in parent_keys {
            let old = parents.get(parent_key)?.map(|g| g.value());
            parents.insert(parent_key, seen(old, now))?;
        }
        Ok(())
    }
}

/// The index `enrich` found a tag's digest to be, with its platform manifests, when Hub listed
/// the tag as a plain manifest (no platform images): `None` for every other sighting. One
/// `manifests` read per such tag.
fn learned_index(
    manifests: &Table<'_, [u8; 32], &'static [u8]>,
    obs: &TagObservation,
) -> Result<Option<(Digest, Vec<Digest>)>, TxError> {
    let Some(digest) = obs.digest else {
        return Ok(None);
    };
    if obs.facts.len() != 1 || obs.facts[0].digest != digest {
        return Ok(None);
    }
    let Some(record) = manifests.get(*digest.as_bytes())? else {
        return Ok(None);
    };
    let record: ManifestRecord = decode(record.value())?;
    Ok(match record.fact {
        ManifestFact::Index { manifests } if record.via.is_none() && !manifests.is_empty() => {
            Some((digest, manifests))
        }
        _ => None,
    })
}

/// The platform and `os_version` of a platform manifest's config, when `enrich` learned both.
fn config_platform(
    txn: &WriteTransaction,
    manifests: &Table<'_, [u8; 32], &'static [u8]>,
    key: [u8; 32],
) -> Result<(Option<crate::model::Platform>, Option<String>), TxError> {
    let Some(record) = manifests.get(key)? else {
        return Ok((None, None));
    };
    let record: ManifestRecord = decode(record.value())?;
    let ManifestFact::Image { config, .. } = record.fact else {
        return Ok((None, None));
    };
    let config: Option<ConfigRecord> = get_record(&txn.open_table(CONFIGS)?, &config)?;
    Ok(config.map_or((None, None), |c| (c.platform, c.os_version)))
}

/// A tag's facts with the platform manifests of the index its digest turned out to be, as Hub
/// lists an index's: each a manifest under the index (its platform is the store's, which
/// `enrich` recorded from the index's entries).
fn index_facts(
    facts: &[crate::hub::DigestFact],
    index: Digest,
    children: &[Digest],
) -> Vec<crate::hub::DigestFact> {
    let mut out: Vec<crate::hub::DigestFact> = facts
        .iter()
        .map(|f| crate::hub::DigestFact {
            kind: crate::model::ObjectKind::Index,
            platform: None,
            os_version: None,
            ..f.clone()
        })
        .collect();
    for child in children {
        if *child != index && !out.iter().any(|f| f.digest == *child) {
            out.push(crate::hub::DigestFact {
                digest: *child,
                kind: crate::model::ObjectKind::Manifest,
                platform: None,
                os_version: None,
                index: Some(index),
            });
        }
    }
    out
}

/// One digest's facts as the tags of one page show them, merged.
struct PageFact {
    kind: crate::model::ObjectKind,
    platform: Option<crate::model::Platform>,
    os_version: Option<String>,
}

impl PageFact {
    fn of(fact: &crate::hub::DigestFact) -> Self {
        Self {
            kind: fact.kind,
            platform: fact.platform.clone(),
            os_version: fact.os_version.clone(),
        }
    }

    /// Adds what another sighting knows and this one does not.
    fn learn(&mut self, fact: &crate::hub::DigestFact) {
        if self.platform.is_none() {
            self.platform.clone_from(&fact.platform);
        }
        if self.os_version.is_none() {
            self.os_version.clone_from(&fact.os_version);
        }
    }
}

/// One digest with everything the dataset says of it, as [`ReadBatch::visit_digests`] yields it.
#[derive(Debug)]
pub struct DigestEntry<'a> {
    /// The digest.
    pub digest: Digest,
    /// Its record.
    pub record: &'a DigestRecord,
    /// Every `repo:tag` seen pointing at it, sorted.
    pub tags: &'a [String],
    /// For each of `tags`, when that pair was first and last seen (unix seconds).
    pub tag_seen: &'a [(u64, u64)],
    /// The indexes it was listed under, sorted.
    pub indexes: &'a [Digest],
}

/// One digest as [`ReadBatch::digest_info`] returns it.
#[derive(Debug, Clone)]
pub struct DigestInfo {
    /// Its record.
    pub record: DigestRecord,
    /// Every `repo:tag` seen pointing at it, sorted, with (first, last) seen times.
    pub tags: Vec<(String, (u64, u64))>,
    /// The indexes it was listed under.
    pub indexes: Vec<Digest>,
}

/// Sizes of the tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Repositories known.
    pub repos: u64,
    /// Tags known.
    pub tags: u64,
    /// Digests known.
    pub digests: u64,
    /// (digest, repo:tag) pairs known.
    pub pairs: u64,
    /// Crawl jobs pending.
    pub jobs: u64,
    /// Crawl jobs failed.
    pub failed: u64,
}

/// A read snapshot.
pub struct ReadBatch {
    txn: ReadTransaction,
}

impl ReadBatch {
    /// Reads a `meta` record.
    pub fn meta<T: Record>(&self, key: &str) -> Result<Option<T>, TxError> {
        get_keyed(&self.txn.open_table(META)?, key)
    }

    /// What run `run` left out (nothing when the stored gaps are an earlier run's).
    pub fn gaps(&self, run: u64) -> Result<RunGaps, TxError> {
        Ok(self
            .meta::<RunGaps>(META_GAPS)?
            .filter(|g| g.run == run)
            .unwrap_or(RunGaps {
                run,
                ..RunGaps::default()
            }))
    }

    /// Every pending crawl job, by id.
    pub fn jobs(&self) -> Result<Vec<(JobId, Job)>, TxError> {
        decode_range(&self.txn.open_table(JOBS)?, ..CATALOG_JOB_BASE)
    }

    /// Every failed crawl job, by id.
    pub fn failed(&self) -> Result<Vec<(JobId, FailedJob)>, TxError> {
        decode_range(&self.txn.open_table(FAILED)?, ..CATALOG_JOB_BASE)
    }

    /// Every pending catalog job of the source at `host`, by id.
    pub fn catalog_jobs(&self, host: &str) -> Result<Vec<(JobId, CatalogJob)>, TxError> {
        let all: Vec<(JobId, CatalogJob)> = decode_range(
            &self.txn.open_table(JOBS)?,
            CATALOG_JOB_BASE..ENRICH_JOB_BASE,
        )?;
        Ok(all.into_iter().filter(|(_, j)| j.source == host).collect())
    }

    /// Every failed catalog job of the source at `host`, by id.
    pub fn catalog_failed(&self, host: &str) -> Result<Vec<(JobId, FailedCatalogJob)>, TxError> {
        let all: Vec<(JobId, FailedCatalogJob)> = decode_range(
            &self.txn.open_table(FAILED)?,
            CATALOG_JOB_BASE..ENRICH_JOB_BASE,
        )?;
        Ok(all
            .into_iter()
            .filter(|(_, f)| f.job.source == host)
            .collect())
    }

    /// Every catalog source's run, by host.
    pub fn catalog_runs(&self) -> Result<Vec<CatalogRun>, TxError> {
        let table = self.txn.open_table(META)?;
        let mut out = Vec::new();
        for item in table.range(CATALOG_RUN_PREFIX..)? {
            let (key, value) = item?;
            if !key.value().starts_with(CATALOG_RUN_PREFIX) {
                break;
            }
            out.push(decode(value.value())?);
        }
        Ok(out)
    }

    /// The run of the catalog source at `host`, if it was ever crawled.
    pub fn catalog_run(&self, host: &str) -> Result<Option<CatalogRun>, TxError> {
        self.meta(&catalog_run_key(host))
    }

    /// The counters of the catalog source at `host`.
    pub fn catalog_stats(&self, host: &str) -> Result<CatalogStats, TxError> {
        Ok(self.meta(&catalog_stats_key(host))?.unwrap_or_default())
    }

    /// The stored pacing pause of the catalog source at `host` (unix seconds), if any.
    pub fn catalog_pause(&self, host: &str) -> Result<Option<u64>, TxError> {
        self.meta(&catalog_pause_key(host))
    }

    /// `enrich`'s stored pacing pause for the registry at `host` (unix seconds), if any.
    pub fn enrich_pause(&self, host: &str) -> Result<Option<u64>, TxError> {
        self.meta(&enrich_pause_key(host))
    }

    /// Every stored `enrich` pacing pause: (registry host, unix seconds), by host.
    pub fn enrich_pauses(&self) -> Result<Vec<(String, u64)>, TxError> {
        let table = self.txn.open_table(META)?;
        let mut out = Vec::new();
        for item in table.range(ENRICH_PAUSE_PREFIX..)? {
            let (key, value) = item?;
            let Some(host) = key.value().strip_prefix(ENRICH_PAUSE_PREFIX) else {
                break;
            };
            out.push((host.to_owned(), decode(value.value())?));
        }
        Ok(out)
    }

    /// The repositories of the catalog source at `host`, by host-qualified name.
    pub fn catalog_repos(&self, host: &str) -> Result<Vec<(String, CatalogRepo)>, TxError> {
        match optional_table(self.txn.open_table(CATALOG_REPOS))? {
            Some(table) => catalog_repos_of(&table, host),
            None => Ok(Vec::new()),
        }
    }

    /// Every pending enrich job, by id (the order `enrich` takes them in).
    pub fn enrich_jobs(&self) -> Result<Vec<(JobId, EnrichJob)>, TxError> {
        decode_range(&self.txn.open_table(JOBS)?, ENRICH_JOB_BASE..)
    }

    /// Every failed enrich job, by id.
    pub fn enrich_failed(&self) -> Result<Vec<(JobId, FailedEnrich)>, TxError> {
        decode_range(&self.txn.open_table(FAILED)?, ENRICH_JOB_BASE..)
    }

    /// What `enrich` learned of a manifest digest, if anything.
    pub fn manifest(&self, digest: &Digest) -> Result<Option<ManifestRecord>, TxError> {
        match optional_table(self.txn.open_table(MANIFESTS))? {
            Some(table) => get_record(&table, digest),
            None => Ok(None),
        }
    }

    /// A learned config, if any.
    pub fn config(&self, digest: &Digest) -> Result<Option<ConfigRecord>, TxError> {
        match optional_table(self.txn.open_table(CONFIGS))? {
            Some(table) => get_record(&table, digest),
            None => Ok(None),
        }
    }

    /// Calls `f` for every learned manifest, in digest order, one record in memory at a time.
    pub fn visit_manifests(
        &self,
        mut f: impl FnMut(Digest, ManifestRecord) -> Result<(), TxError>,
    ) -> Result<(), TxError> {
        let Some(table) = optional_table(self.txn.open_table(MANIFESTS))? else {
            return Ok(());
        };
        guarded(|| {
            for item in table.iter()? {
                let (key, value) = item?;
                f(Digest::from_bytes(key.value()), decode(value.value())?)?;
            }
            Ok(())
        })
    }

    /// How many manifests and configs `enrich` learned.
    pub fn enrich_counts(&self) -> Result<(u64, u64), TxError> {
        let len =
            |t: Option<redb::ReadOnlyTable<[u8; 32], &'static [u8]>>| -> Result<u64, TxError> {
                Ok(match t {
                    Some(t) => t.len()?,
                    None => 0,
                })
            };
        Ok((
            len(optional_table(self.txn.open_table(MANIFESTS))?)?,
            len(optional_table(self.txn.open_table(CONFIGS))?)?,
        ))
    }

    /// Every learned config, in digest order.
    pub fn configs(&self) -> Result<Vec<(Digest, ConfigRecord)>, TxError> {
        match optional_table(self.txn.open_table(CONFIGS))? {
            Some(table) => decode_all(&table),
            None => Ok(Vec::new()),
        }
    }

    /// The image IDs whose diff_ids start with the prefix whose ChainID is `chain`, with that
    /// prefix's length.
    pub fn images_with_chain(&self, chain: &Digest) -> Result<Vec<(Digest, u32)>, TxError> {
        let Some(table) = optional_table(self.txn.open_table(CHAINS))? else {
            return Ok(Vec::new());
        };
        let key = *chain.as_bytes();
        let mut out = Vec::new();
        for item in table.range((key, [0u8; 32])..=(key, [0xffu8; 32]))? {
            let (k, v) = item?;
            out.push((Digest::from_bytes(k.value().1), v.value()));
        }
        Ok(out)
    }

    /// The stored pull budget.
    pub fn budget(&self) -> Result<Option<StoredBudget>, TxError> {
        self.meta(META_BUDGET)
    }

    /// `enrich`'s counters.
    pub fn enrich_stats(&self) -> Result<EnrichStats, TxError> {
        Ok(self.meta(META_ENRICH_STATS)?.unwrap_or_default())
    }

    /// Every repository with its state, by name.
    pub fn repos(&self) -> Result<Vec<(String, RepoState)>, TxError> {
        let table = self.txn.open_table(REPOS)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (name, value) = item?;
            out.push((name.value().to_owned(), decode(value.value())?));
        }
        Ok(out)
    }

    /// Calls `f` for every tag with its repository key (`ns/name`), in key order.
    pub fn visit_tags<E: From<TxError>>(
        &self,
        mut f: impl FnMut(&str, &str, &TagState) -> Result<(), E>,
    ) -> Result<(), E> {
        guarded(|| self.visit_tags_unguarded(&mut f))
    }

    fn visit_tags_unguarded<E: From<TxError>>(
        &self,
        f: &mut impl FnMut(&str, &str, &TagState) -> Result<(), E>,
    ) -> Result<(), E> {
        let table = self.txn.open_table(TAGS).map_err(TxError::from)?;
        for item in table.iter().map_err(TxError::from)? {
            let (key, value) = item.map_err(TxError::from)?;
            let (repo, tag) = key.value();
            let state: TagState = decode(value.value()).map_err(TxError::from)?;
            f(repo, tag, &state)?;
        }
        Ok(())
    }

    /// The tags of one repository, by tag name.
    pub fn repo_tags(&self, repo: &RepoName) -> Result<Vec<(String, TagState)>, TxError> {
        tags_of(&self.txn.open_table(TAGS)?, repo)
    }

    /// One tag's state, by repository key (`ns/name`) and tag name; `None` if never seen.
    pub fn tag_state(&self, repo_key: &str, tag: &str) -> Result<Option<TagState>, TxError> {
        match self.txn.open_table(TAGS)?.get((repo_key, tag))? {
            Some(guard) => Ok(Some(decode(guard.value())?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` digests whose hex form starts with `hex_prefix` (lowercase hex, any length
    /// up to 64), in order.
    pub fn digests_with_prefix(
        &self,
        hex_prefix: &str,
        limit: usize,
    ) -> Result<Vec<Digest>, TxError> {
        keys_with_prefix(&self.txn.open_table(DIGESTS)?, hex_prefix, limit)
    }

    /// Up to `limit` image IDs learned by `enrich` whose hex form starts with `hex_prefix`, in
    /// order.
    pub fn configs_with_prefix(
        &self,
        hex_prefix: &str,
        limit: usize,
    ) -> Result<Vec<Digest>, TxError> {
        match optional_table(self.txn.open_table(CONFIGS))? {
            Some(table) => keys_with_prefix(&table, hex_prefix, limit),
            None => Ok(Vec::new()),
        }
    }

    /// One digest's record, its `repo:tag` pairs with their first and last seen times, and its
    /// indexes; `None` if the store does not know it.
    pub fn digest_info(&self, digest: &Digest) -> Result<Option<DigestInfo>, TxError> {
        let key = *digest.as_bytes();
        let Some(record) = self.txn.open_table(DIGESTS)?.get(key)? else {
            return Ok(None);
        };
        let record: DigestRecord = decode(record.value())?;
        let mut tags = Vec::new();
        for item in self.txn.open_table(PAIRS)?.range((key, "")..)? {
            let (k, v) = item?;
            let (d, tag) = k.value();
            if d != key {
                break;
            }
            tags.push((tag.to_owned(), v.value()));
        }
        let mut indexes = Vec::new();
        for item in self
            .txn
            .open_table(PARENTS)?
            .range((key, [0u8; 32])..=(key, [0xffu8; 32]))?
        {
            let (k, _) = item?;
            indexes.push(Digest::from_bytes(k.value().1));
        }
        Ok(Some(DigestInfo {
            record,
            tags,
            indexes,
        }))
    }

    /// Sizes of the tables.
    pub fn counts(&self) -> Result<Counts, TxError> {
        Ok(Counts {
            repos: self.txn.open_table(REPOS)?.len()?,
            tags: self.txn.open_table(TAGS)?.len()?,
            digests: self.txn.open_table(DIGESTS)?.len()?,
            pairs: self.txn.open_table(PAIRS)?.len()?,
            jobs: self
                .txn
                .open_table(JOBS)?
                .range(..CATALOG_JOB_BASE)?
                .count() as u64,
            failed: self
                .txn
                .open_table(FAILED)?
                .range(..CATALOG_JOB_BASE)?
                .count() as u64,
        })
    }

    /// Calls `f` for every digest in digest order, with its tags and indexes. Walks `digests`,
    /// `pairs` and `parents` side by side (all three are keyed by digest first), so the cost is
    /// one pass over each table and memory holds one digest's entry at a time.
    pub fn visit_digests<E: From<TxError>>(
        &self,
        mut f: impl FnMut(&DigestEntry<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        guarded(|| self.visit_digests_unguarded(&mut f))
    }

    fn visit_digests_unguarded<E: From<TxError>>(
        &self,
        f: &mut impl FnMut(&DigestEntry<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let digests = self.txn.open_table(DIGESTS).map_err(TxError::from)?;
        let pairs = self.txn.open_table(PAIRS).map_err(TxError::from)?;
        let parents = self.txn.open_table(PARENTS).map_err(TxError::from)?;
        let mut pair_iter = pairs.iter().map_err(TxError::from)?;
        let mut parent_iter = parents.iter().map_err(TxError::from)?;
        let mut next_pair = pair_iter.next().transpose().map_err(TxError::from)?;
        let mut next_parent = parent_iter.next().transpose().map_err(TxError::from)?;
        let mut tags: Vec<String> = Vec::new();
        let mut tag_seen: Vec<(u64, u64)> = Vec::new();
        let mut indexes: Vec<Digest> = Vec::new();

        for item in digests.iter().map_err(TxError::from)? {
            let (key, value) = item.map_err(TxError::from)?;
            let digest = key.value();
            let record: DigestRecord = decode(value.value()).map_err(TxError::from)?;

            tags.clear();
            tag_seen.clear();
            while let Some((k, v)) = &next_pair {
                let (d, tag) = k.value();
                if d > digest {
                    break;
                }
                if d == digest {
                    tags.push(tag.to_owned());
                    tag_seen.push(v.value());
                }
                next_pair = pair_iter.next().transpose().map_err(TxError::from)?;
            }
            indexes.clear();
            while let Some((k, _)) = &next_parent {
                let (d, index) = k.value();
                if d > digest {
                    break;
                }
                if d == digest {
                    indexes.push(Digest::from_bytes(index));
                }
                next_parent = parent_iter.next().transpose().map_err(TxError::from)?;
            }
            f(&DigestEntry {
                digest: Digest::from_bytes(digest),
                record: &record,
                tags: &tags,
                tag_seen: &tag_seen,
                indexes: &indexes,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::DigestFact;
    use crate::model::{ObjectKind, Platform};

    fn sighting(tag: &str, digest: u8) -> TagObservation {
        let digest = Digest::from_bytes([digest; 32]);
        TagObservation {
            tag: tag.to_owned(),
            digest: Some(digest),
            pushed: None,
            updated: None,
            facts: vec![DigestFact {
                digest,
                kind: ObjectKind::Manifest,
                platform: None,
                os_version: None,
                index: None,
            }],
        }
    }

    /// A scratch store, removed on drop.
    struct Scratch {
        store: Option<Store>,
        dir: PathBuf,
    }

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("digestmap-store-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let store = Some(Store::open(&dir.join("s.redb")).unwrap());
            Self { store, dir }
        }

        fn store(&self) -> &Store {
            self.store.as_ref().unwrap()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            drop(self.store.take());
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// An index Hub listed as a plain manifest (`images: []`) that `enrich` learned before it
    /// linked such indexes (an older release: a `manifests` record only): the next sighting of
    /// its tag links it as `enrich` now does, its platform manifest's platform from the config.
    #[test]
    fn a_crawl_links_an_index_an_older_enrich_learned_in_a_manifest_s_place() {
        let scratch = Scratch::new("old-index");
        let store = scratch.store();
        let repo = RepoName::new("library", "x").unwrap();
        let (index, child, config) = (
            Digest::from_bytes([1; 32]),
            Digest::from_bytes([2; 32]),
            Digest::from_bytes([3; 32]),
        );
        let learned = |fact| ManifestRecord {
            fact,
            media_type: String::new(),
            via: None,
            learned_at: 5,
        };
        store
            .write(|w| {
                w.record_tags(&repo, &[sighting("t", 1)], 10, 1)?;
                w.put_manifest(
                    &index,
                    &learned(ManifestFact::Index {
                        manifests: vec![child],
                    }),
                )?;
                w.put_manifest(
                    &child,
                    &ManifestRecord {
                        via: Some(index),
                        ..learned(ManifestFact::Image {
                            config,
                            layers: Vec::new(),
                        })
                    },
                )?;
                w.put_config(
                    &config,
                    &ConfigRecord {
                        chain_id: None,
                        platform: Some(Platform::new("linux", "s390x", None)),
                        os_version: None,
                        diff_ids: Vec::new(),
                        created: None,
                        learned_at: 5,
                    },
                )
            })
            .unwrap();
        // Before: a manifest, nothing under it.
        let before = store.read(|r| r.digest_info(&index)).unwrap().unwrap();
        assert_eq!(before.record.kind, ObjectKind::Manifest);
        assert!(!current(store, 2));

        store
            .write(|w| w.record_tags(&repo, &[sighting("t", 1)], 20, 2))
            .unwrap();
        let (index_info, child_info) = store
            .read(|r| {
                Ok((
                    r.digest_info(&index)?.unwrap(),
                    r.digest_info(&child)?.unwrap(),
                ))
            })
            .unwrap();
        assert_eq!(index_info.record.kind, ObjectKind::Index);
        assert_eq!(child_info.record.kind, ObjectKind::Manifest);
        assert_eq!(
            child_info.record.platform,
            Some(Platform::new("linux", "s390x", None))
        );
        assert_eq!(child_info.indexes, vec![index]);
        assert_eq!(
            child_info
                .tags
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>(),
            ["x:t"]
        );
        assert!(current(store, 1) && current(store, 2));
    }

    /// Whether `library/x:t` is current on the digest filled with `fill`.
    fn current(store: &Store, fill: u8) -> bool {
        store
            .read(|r| {
                let state = r.tag_state("library/x", "t")?.unwrap();
                Ok(state.is_current_pair(&Digest::from_bytes([fill; 32])))
            })
            .unwrap()
    }

    #[test]
    fn the_latest_sighting_decides_current_whatever_the_clock_says() {
        let scratch = Scratch::new("current");
        let store = scratch.store();
        let repo = RepoName::new("library", "x").unwrap();
        // A at t, then B at t, then B again at t: B is current, A is not.
        for digest in [1, 2, 2] {
            store
                .write(|w| w.record_tag(&repo, &sighting("t", digest), 100, 1))
                .unwrap();
        }
        assert!(current(store, 2), "the tag's digest now is not current");
        assert!(!current(store, 1), "the old digest still looks current");
        // Back to A within the same second, then a deletion.
        store
            .write(|w| w.record_tag(&repo, &sighting("t", 1), 100, 1))
            .unwrap();
        assert!(current(store, 1) && !current(store, 2));
        store
            .write(|w| w.mark_deleted(&repo, &["t".to_owned()], 101))
            .unwrap();
        assert!(!current(store, 1) && !current(store, 2));
    }

    #[test]
    fn a_known_platform_beats_an_unknown_one_within_a_page() {
        let scratch = Scratch::new("platform");
        let store = scratch.store();
        let repo = RepoName::new("library", "x").unwrap();
        let known = |tag: &str| {
            let mut obs = sighting(tag, 7);
            obs.facts[0].platform = Some(Platform::new("windows", "amd64", None));
            obs.facts[0].os_version = Some("10.0.20348.2849".to_owned());
            obs
        };
        // Two aliases of one single-platform digest on one page: the first with `images: []`.
        store
            .write(|w| w.record_tags(&repo, &[sighting("a", 7), known("b")], 100, 1))
            .unwrap();
        // And across pages, an unknown sighting later does not forget it.
        store
            .write(|w| w.record_tags(&repo, &[sighting("c", 7)], 101, 1))
            .unwrap();
        let info = store
            .read(|r| r.digest_info(&Digest::from_bytes([7; 32])))
            .unwrap()
            .unwrap();
        assert_eq!(
            info.record.platform.map(|p| p.to_string()).as_deref(),
            Some("windows/amd64")
        );
        assert_eq!(info.record.os_version.as_deref(), Some("10.0.20348.2849"));
        assert_eq!(info.tags.len(), 3);
    }

    #[test]
    fn job_families_never_see_each_other() {
        let scratch = Scratch::new("families");
        let store = scratch.store();
        let digest = Digest::from_bytes([9; 32]);
        let enrich_job = EnrichJob::new(EnrichTarget::Manifest, digest, "library/x".into(), None);
        let crawl_job = Job::new(JobKind::Repos {
            namespace: "library".into(),
            url: "https://hub.docker.com/v2/x".into(),
            descending: false,
        });
        let (crawl_id, enrich_id) = store
            .write(|w| {
                let e = w.add_enrich_job(&enrich_job)?;
                let c = w.add_job(&crawl_job)?;
                let e2 = w.add_enrich_job(&enrich_job)?;
                w.fail_enrich_job(
                    e2,
                    &FailedEnrich {
                        job: enrich_job.clone(),
                        reason: "r".into(),
                        failed_at: 1,
                    },
                )?;
                Ok((c, e))
            })
            .unwrap();
        assert!(crawl_id < CATALOG_JOB_BASE && enrich_id >= ENRICH_JOB_BASE);
        // A catalog job of each of two sources, one failed: seen by its own source only.
        let catalog_job = |host: &str| {
            CatalogJob::new(
                host,
                CatalogTask::Head {
                    repo: "a".into(),
                    tag: "1".into(),
                },
            )
        };
        let (mcr, local) = store
            .write(|w| {
                let mcr = w.add_catalog_job(&catalog_job("mcr.microsoft.com"))?;
                let local = w.add_catalog_job(&catalog_job("127.0.0.1:5000"))?;
                let failed = w.add_catalog_job(&catalog_job("127.0.0.1:5000"))?;
                w.fail_catalog_job(
                    failed,
                    &FailedCatalogJob {
                        job: catalog_job("127.0.0.1:5000"),
                        reason: "r".into(),
                        failed_at: 1,
                    },
                )?;
                Ok((mcr, local))
            })
            .unwrap();
        assert!((CATALOG_JOB_BASE..ENRICH_JOB_BASE).contains(&mcr) && local == mcr + 1);
        store
            .read(|r| {
                assert_eq!(r.catalog_jobs("mcr.microsoft.com")?.len(), 1);
                assert_eq!(
                    r.catalog_jobs("127.0.0.1:5000")?,
                    vec![(local, catalog_job("127.0.0.1:5000"))]
                );
                assert_eq!(r.catalog_failed("127.0.0.1:5000")?.len(), 1);
                assert!(r.catalog_failed("mcr.microsoft.com")?.is_empty());
                Ok(())
            })
            .unwrap();
        store
            .write(|w| {
                assert_eq!(w.retry_failed_catalog("mcr.microsoft.com")?, 0);
                assert_eq!(w.retry_failed_catalog("127.0.0.1:5000")?, 1);
                Ok(())
            })
            .unwrap();
        store
            .read(|r| {
                assert_eq!(r.jobs()?, vec![(crawl_id, crawl_job.clone())]);
                assert!(r.failed()?.is_empty());
                assert_eq!(r.enrich_jobs()?, vec![(enrich_id, enrich_job.clone())]);
                assert_eq!(r.enrich_failed()?.len(), 1);
                let counts = r.counts()?;
                assert_eq!((counts.jobs, counts.failed), (1, 0));
                Ok(())
            })
            .unwrap();
        // A crawl's --resume and --skip-failed leave enrich's failed jobs alone, and the reverse.
        store
            .write(|w| {
                assert_eq!(w.retry_failed()?, 0);
                assert!(w.take_failed()?.is_empty());
                assert_eq!(w.retry_failed_enrich()?, 1);
                Ok(())
            })
            .unwrap();
        store
            .read(|r| {
                assert_eq!(r.enrich_jobs()?.len(), 2);
                assert_eq!(r.jobs()?.len(), 1);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn chains_hold_every_prefix_of_every_image() {
        let scratch = Scratch::new("chains");
        let store = scratch.store();
        let (a, b, c) = (
            Digest::from_bytes([1; 32]),
            Digest::from_bytes([2; 32]),
            Digest::from_bytes([3; 32]),
        );
        let config = |diff_ids: Vec<Digest>| ConfigRecord {
            platform: None,
            os_version: None,
            chain_id: crate::registry::chain_ids(&diff_ids).last().copied(),
            diff_ids,
            created: None,
            learned_at: 1,
        };
        let (base, derived) = (Digest::from_bytes([10; 32]), Digest::from_bytes([11; 32]));
        store
            .write(|w| {
                w.put_config(&base, &config(vec![a, b]))?;
                w.put_config(&derived, &config(vec![a, b, c]))
            })
            .unwrap();
        let chains = crate::registry::chain_ids(&[a, b, c]);
        store
            .read(|r| {
                assert_eq!(
                    r.images_with_chain(&chains[0])?,
                    vec![(base, 1), (derived, 1)]
                );
                assert_eq!(
                    r.images_with_chain(&chains[1])?,
                    vec![(base, 2), (derived, 2)]
                );
                assert_eq!(r.images_with_chain(&chains[2])?, vec![(derived, 3)]);
                assert!(r.images_with_chain(&c)?.is_empty());
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn version_1_records_still_read() {
        #[derive(serde::Serialize)]
        struct TagV1 {
            digest: Option<Digest>,
            digests: Vec<Digest>,
            pushed: Option<String>,
            first_seen: u64,
            last_seen: u64,
            run: u64,
            deleted_at: Option<u64>,
        }
        let d = Digest::from_bytes([3; 32]);
        let mut bytes = vec![1u8];
        bytes.extend(
            postcard::to_stdvec(&TagV1 {
                digest: Some(d),
                digests: vec![d],
                pushed: Some("2026-01-01T00:00:00Z".into()),
                first_seen: 5,
                last_seen: 9,
                run: 2,
                deleted_at: None,
            })
            .unwrap(),
        );
        let tag: TagState = decode(&bytes).unwrap();
        assert_eq!((tag.first_seen, tag.last_seen, tag.run), (5, 9, 2));
        assert_eq!(tag.updated, None);
        assert!(tag.is_current_pair(&d));

        // A version 1 run, stats and repository state: the same fields without the new ones.
        let mut run = vec![1u8];
        run.extend(postcard::to_stdvec(&(7u64, 1u8)).unwrap());
        run.extend(postcard::to_stdvec(&(1u64, Some(2u64), "h", "library")).unwrap());
        run.extend(postcard::to_stdvec(&(Vec::<String>::new(), 0u8)).unwrap());
        let v2 = run[1..].to_vec();
        let run: CrawlRun = decode(&run).unwrap();
        assert_eq!(
            (run.id, run.state, run.finished),
            (7, RunState::Finished, Some(2))
        );
        assert_eq!(run.registry, None);
        // Version 2 (the same layout, more run states): no registry, given again on resume.
        let run: CrawlRun = decode(&[&[2u8][..], &v2].concat()).unwrap();
        assert_eq!((run.id, run.registry), (7, None));

        let mut stats = vec![1u8];
        stats.extend(postcard::to_stdvec(&(1u64, 2u64, 3u64, 4u64, 5u64, 6u64, 7u64)).unwrap());
        stats.extend(postcard::to_stdvec(&(8u64, 9u64, 10u64, 11u64, 12u64)).unwrap());
        stats.extend(postcard::to_stdvec(&(Some(13u64), true)).unwrap());
        let stats: RunStats = decode(&stats).unwrap();
        assert_eq!(stats.skips.invalid_repos, 12);
        assert_eq!(stats.skips.malformed_tags, 0);
        assert_eq!(stats.repo_count, Some(13));

        let mut repo = vec![1u8];
        repo.extend(postcard::to_stdvec(&(3u64, 4u64, 5u32, 6u64, Some(7u64))).unwrap());
        repo.extend(postcard::to_stdvec(&(Some(8u64), 9u64, Some(false), 10u64, true)).unwrap());
        repo.extend(postcard::to_stdvec(&((1u64, 2u64), vec!["slim"], 1u32, None::<u64>)).unwrap());
        let repo: RepoState = decode(&repo).unwrap();
        assert_eq!(repo.complete, Some(false));
        assert_eq!(repo.filters, ["slim"]);
        assert!(!repo.full_read && repo.skipped_names.is_empty());

        // A version from the future is refused by name.
        let err = decode::<TagState>(&[9, 0]).unwrap_err();
        assert!(err.to_string().contains("format version 9"), "{err}");
    }
}

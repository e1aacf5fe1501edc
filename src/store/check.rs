//! `digestmap check`: a full integrity check of a store, which never writes to it.
//!
//! Two parts:
//! 1. redb's own check ([`redb::Builder::set_check_integrity_on_open`]): every page of the
//!    committed trees against its checksum, and the allocator state rebuilt. redb's check writes
//!    (it commits the rebuilt state, and repairs what it can), so it runs through
//!    [`super::verified::Overlay`], which keeps those writes in memory: the store's bytes stay as
//!    they were, sound or damaged. It needs the file to itself: with a crawl writing, `check`
//!    refuses ([`StoreError::Busy`]).
//! 2. Every record of every table decoded (and the times of pairs and index links in order),
//!    each problem named by table and key. When redb's check fails, the tables are still walked
//!    through a plain read-only open where redb allows one, so the problems found are listed; a
//!    walk that fails part way names the last key it read.

use std::fmt;
use std::path::{Path, PathBuf};

use redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use super::records::{
    CATALOG_PAUSE_PREFIX, CATALOG_RUN_PREFIX, CATALOG_STATS_PREFIX, CatalogJob, CatalogRepo,
    CatalogRun, CatalogStats, ConfigRecord, CrawlRun, DigestRecord, ENRICH_PAUSE_PREFIX, EnrichJob,
    EnrichStats, FailedCatalogJob, FailedEnrich, FailedJob, Job, ManifestRecord,
    PAGING_CAPS_PREFIX, PagingCaps, Record, RepoState, RunGaps, RunStats, StoredBudget,
    TAG_NAMES_PREFIX, TagNames, TagState,
};
use super::{
    CATALOG_JOB_BASE, CATALOG_REPOS, CHAINS, CONFIGS, DIGESTS, ENRICH_JOB_BASE, FAILED, JOBS,
    MANIFESTS, META, META_BUDGET, META_ENRICH_STATS, META_GAPS, META_NEXT_CATALOG_JOB,
    META_NEXT_ENRICH_JOB, META_NEXT_JOB, META_PAUSE, META_RUN, META_SCHEMA, META_STATS, PAIRS,
    PARENTS, REPOS, SCHEMA_VERSION, StoreError, TAGS, builder, caught, decode, open_verified,
    require_existing, writer_running,
};
use crate::model::Digest;

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The table (`file` for damage redb finds in the file as a whole).
    pub table: String,
    /// The record's key, when one record is at fault.
    pub key: Option<String>,
    /// What is wrong.
    pub what: String,
}

/// What `check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// The store file.
    pub path: PathBuf,
    /// Whether redb's integrity check passed.
    pub integrity_ok: bool,
    /// Records read per table, in table order; a table that could not be walked has none.
    pub tables: Vec<(String, u64)>,
    /// Every problem.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// Whether the store is sound: redb's check passed and every record decodes.
    pub fn sound(&self) -> bool {
        self.integrity_ok && self.problems.is_empty()
    }
}

/// Checks the store at `path` without writing to it. Errors are for a store that cannot be
/// checked at all (missing, empty, in use, unreadable); damage is reported in the report.
pub fn check(path: &Path) -> Result<CheckReport, StoreError> {
    require_existing(path)?;
    if writer_running(path)? {
        return Err(StoreError::Busy {
            path: path.to_owned(),
        });
    }
    let mut report = CheckReport {
        path: path.to_owned(),
        integrity_ok: true,
        tables: Vec::new(),
        problems: Vec::new(),
    };
    // The handle must outlive the transaction read from it.
    let verified = match open_verified(path) {
        Ok(db) => Some(db),
        Err(
            StoreError::Damaged { detail, .. }
            | StoreError::Truncated { detail, .. }
            | StoreError::Incompatible { reason: detail, .. },
        ) => {
            report.integrity_ok = false;
            report.problems.push(Problem {
                table: "file".into(),
                key: None,
                what: detail,
            });
            None
        }
        Err(e) => return Err(e),
    };
    // With the check failed, walk what redb will still show, to name the records at fault.
    let fallback = match verified {
        Some(_) => None,
        None => caught(|| builder().open_read_only(path))
            .ok()
            .and_then(Result::ok),
    };
    let txn = match (&verified, &fallback) {
        (Some(db), _) => Some(begin_read(db)),
        (None, Some(db)) => Some(begin_read(db)),
        (None, None) => None,
    };
    match txn {
        Some(Ok(txn)) => walk_all(&txn, &mut report),
        Some(Err(what)) => report.problems.push(Problem {
            table: "file".into(),
            key: None,
            what,
        }),
        None => {}
    }
    Ok(report)
}

fn begin_read(db: &impl ReadableDatabase) -> Result<ReadTransaction, String> {
    match caught(|| db.begin_read()) {
        Ok(Ok(txn)) => Ok(txn),
        Ok(Err(e)) => Err(format!("cannot begin reading: {e}")),
        Err(panic) => Err(panic),
    }
}

/// The problem of a value that does not decode as `T`, if any.
fn undecodable<T: Record>(bytes: &[u8]) -> Option<String> {
    decode::<T>(bytes).err().map(|e| e.to_string())
}

fn times_problem((first, last): (u64, u64)) -> Option<String> {
    (first > last).then(|| format!("first seen {first} is after last seen {last}"))
}

fn meta_problem(key: &str, value: &[u8]) -> Option<String> {
    match key {
        META_SCHEMA => match decode::<u64>(value) {
            Ok(SCHEMA_VERSION) => None,
            Ok(other) => Some(format!(
                "schema version {other}; this digestmap reads {SCHEMA_VERSION}"
            )),
            Err(e) => Some(e.to_string()),
        },
        META_NEXT_JOB | META_PAUSE | META_NEXT_ENRICH_JOB | META_NEXT_CATALOG_JOB => {
            undecodable::<u64>(value)
        }
        META_BUDGET => undecodable::<StoredBudget>(value),
        META_ENRICH_STATS => undecodable::<EnrichStats>(value),
        META_RUN => undecodable::<CrawlRun>(value),
        META_GAPS => undecodable::<RunGaps>(value),
        META_STATS => undecodable::<RunStats>(value),
        key if key.starts_with(TAG_NAMES_PREFIX) => undecodable::<TagNames>(value),
        key if key.starts_with(PAGING_CAPS_PREFIX) => undecodable::<PagingCaps>(value),
        key if key.starts_with(CATALOG_RUN_PREFIX) => undecodable::<CatalogRun>(value),
        key if key.starts_with(CATALOG_STATS_PREFIX) => undecodable::<CatalogStats>(value),
        key if key.starts_with(CATALOG_PAUSE_PREFIX) => undecodable::<u64>(value),
        key if key.starts_with(ENRICH_PAUSE_PREFIX) => undecodable::<u64>(value),
        other => Some(format!("unknown meta key {other:?}")),
    }
}

/// Walks one table: `$each` maps a (key, value) to (key text, problem).
macro_rules! walk {
    ($txn:expr, $report:expr, $def:expr, |$k:ident, $v:ident| $each:expr) => {{
        let name = redb::TableHandle::name(&$def).to_owned();
        let mut records = 0u64;
        let mut last: Option<String> = None;
        let mut found: Vec<Problem> = Vec::new();
        let outcome = caught(|| -> Result<(), redb::Error> {
            let table = $txn.open_table($def)?;
            for item in table.iter()? {
                let (key, value) = item?;
                let ($k, $v) = (key.value(), value.value());
                let (key_text, problem): (String, Option<String>) = $each;
                records += 1;
                if let Some(what) = problem {
                    found.push(Problem {
                        table: name.clone(),
                        key: Some(key_text.clone()),
                        what,
                    });
                }
                last = Some(key_text);
            }
            Ok(())
        });
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(panic) => Some(panic),
        };
        if let Some(what) = failure {
            found.push(Problem {
                table: name.clone(),
                key: None,
                what: match &last {
                    Some(key) => format!("the table cannot be read past key {key}: {what}"),
                    None => format!("the table cannot be read: {what}"),
                },
            });
        }
        $report.tables.push((name, records));
        $report.problems.extend(found);
    }};
}

fn walk_all(txn: &ReadTransaction, report: &mut CheckReport) {
    walk!(txn, report, META, |k, v| (k.to_owned(), meta_problem(k, v)));
    // The Hub crawl's, the catalog crawls' and enrich's jobs share the tables, each family in
    // its own id range.
    walk!(txn, report, JOBS, |k, v| (
        format!("#{k}"),
        if k < CATALOG_JOB_BASE {
            undecodable::<Job>(v)
        } else if k < ENRICH_JOB_BASE {
            undecodable::<CatalogJob>(v)
        } else {
            undecodable::<EnrichJob>(v)
        }
    ));
    walk!(txn, report, FAILED, |k, v| (
        format!("#{k}"),
        if k < CATALOG_JOB_BASE {
            undecodable::<FailedJob>(v)
        } else if k < ENRICH_JOB_BASE {
            undecodable::<FailedCatalogJob>(v)
        } else {
            undecodable::<FailedEnrich>(v)
        }
    ));
    walk!(txn, report, REPOS, |k, v| (
        k.to_owned(),
        undecodable::<RepoState>(v)
    ));
    walk!(txn, report, TAGS, |k, v| (
        format!("{}:{}", k.0, k.1),
        undecodable::<TagState>(v)
    ));
    walk!(txn, report, DIGESTS, |k, v| (
        Digest::from_bytes(k).to_string(),
        undecodable::<DigestRecord>(v)
    ));
    walk!(txn, report, PAIRS, |k, v| (
        format!("{} {}", Digest::from_bytes(k.0), k.1),
        times_problem(v)
    ));
    walk!(txn, report, PARENTS, |k, v| (
        format!("{} in {}", Digest::from_bytes(k.0), Digest::from_bytes(k.1)),
        times_problem(v)
    ));
    // A store no release with `enrich` has written to lacks these three tables: nothing to check.
    if txn.open_table(MANIFESTS).is_ok() {
        walk!(txn, report, MANIFESTS, |k, v| (
            Digest::from_bytes(k).to_string(),
            undecodable::<ManifestRecord>(v)
        ));
        walk!(txn, report, CONFIGS, |k, v| (
            Digest::from_bytes(k).to_string(),
            undecodable::<ConfigRecord>(v)
        ));
        walk!(txn, report, CHAINS, |k, v| (
            format!("{} of {}", Digest::from_bytes(k.0), Digest::from_bytes(k.1)),
            (v == 0).then(|| "a chain prefix of 0 layers".to_owned())
        ));
    }
    // Nor this one, before `crawl --catalog` existed.
    if txn.open_table(CATALOG_REPOS).is_ok() {
        walk!(txn, report, CATALOG_REPOS, |k, v| (
            k.to_owned(),
            undecodable::<CatalogRepo>(v)
        ));
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "store: {}", self.path.display())?;
        writeln!(
            f,
            "redb integrity check (every page's checksum): {}",
            if self.integrity_ok {
                "passed"
            } else {
                "FAILED"
            }
        )?;
        let tables: Vec<String> = self
            .tables
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        writeln!(f, "records decoded: {}", tables.join(", "))?;
        writeln!(f, "problems: {}", self.problems.len())?;
        for p in &self.problems {
            match &p.key {
                Some(key) => writeln!(f, "  {} {key}: {}", p.table, p.what)?,
                None => writeln!(f, "  {}: {}", p.table, p.what)?,
            }
        }
        if self.sound() {
            writeln!(f, "the store is sound")
        } else {
            writeln!(
                f,
                "the store is damaged: restore it from a copy, or start a new store with `digestmap crawl --db NEW.redb`"
            )
        }
    }
}

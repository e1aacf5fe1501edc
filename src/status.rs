//! `digestmap status`: what a store holds, read from a snapshot (safe beside a running crawl).

use std::fmt;

use crate::clock;
use crate::model::Digest;
use crate::store::{
    CatalogRepo, CatalogRun, CatalogStats, Counts, CrawlRun, EnrichStats, EnrichTarget,
    FailedCatalogJob, FailedEnrich, FailedJob, Job, JobId, ManifestFact, ReadBatch, RepoState,
    RunGaps, RunMode, RunState, RunStats, Store, StoreError, StoredBudget, TxError,
};

/// What `status` (and the crawl's summary) says of one registry crawled through its catalog.
#[derive(Debug, Clone)]
pub struct CatalogStatus {
    /// Its latest run.
    pub run: CatalogRun,
    /// That run's counters.
    pub stats: CatalogStats,
    /// The repositories that run listed.
    pub repos: Vec<(String, CatalogRepo)>,
    /// Repositories of the source marked vanished (by any run).
    pub vanished: u64,
    /// Repositories of the source the store knows (every run's).
    pub known: u64,
    /// Pending jobs.
    pub jobs: u64,
    /// Failed jobs with their reasons.
    pub failed: Vec<(JobId, FailedCatalogJob)>,
    /// The pause the registry asked for (429 `Retry-After`), stored for the next run, while it
    /// lasts (unix seconds).
    pub pause: Option<u64>,
}

impl CatalogStatus {
    /// Reads the status of the source at `host`.
    pub fn read(r: &ReadBatch, run: CatalogRun) -> Result<Self, TxError> {
        let all = r.catalog_repos(&run.host)?;
        let vanished = all.iter().filter(|(_, s)| s.vanished_at.is_some()).count() as u64;
        let known = all.len() as u64;
        Ok(Self {
            stats: r.catalog_stats(&run.host)?,
            jobs: r.catalog_jobs(&run.host)?.len() as u64,
            failed: r.catalog_failed(&run.host)?,
            pause: r
                .catalog_pause(&run.host)?
                .filter(|until| *until > clock::now_unix()),
            repos: all.into_iter().filter(|(_, s)| s.run == run.id).collect(),
            vanished,
            known,
            run,
        })
    }

    /// The section's lines; `running` says whether a digestmap process holds the store.
    pub fn lines(&self, running: bool) -> Vec<String> {
        let run = &self.run;
        let again = format!("digestmap crawl --catalog {} --resume", run.registry);
        let state = match (run.state, running) {
            (RunState::Finished, _) => "finished".to_owned(),
            (RunState::Incomplete, _) => format!(
                "finished INCOMPLETE (read the listings that ended early again with `{again}`)"
            ),
            (RunState::Running, true) => "running (a digestmap process holds the store)".into(),
            (RunState::Running, false) => {
                format!("unfinished (no process is crawling; continue with `{again}`)")
            }
        };
        let mut out = vec![format!(
            "registry {} ({}), crawl #{}: {state}",
            run.host, run.registry, run.id
        )];
        let mut times = format!("  started: {}", clock::rfc3339(run.started));
        if let Some(t) = run.finished {
            times.push_str(&format!("  finished: {}", clock::rfc3339(t)));
        }
        out.push(times);
        if !run.repos.is_empty() {
            out.push(format!("  only repositories: {}", run.repos.join(", ")));
        }
        if let Some(prefix) = &run.prefix {
            out.push(format!("  only repositories starting with: {prefix}"));
        }
        let done = self
            .repos
            .iter()
            .filter(|(_, r)| r.done_at.is_some())
            .count();
        out.push(format!(
            "  repositories: {} listed, {done} done; {} vanished from the registry so far",
            self.repos.len(),
            self.vanished
        ));
        let s = &self.stats;
        let listed: u64 = self.repos.iter().map(|(_, r)| r.names.len() as u64).sum();
        out.push(format!(
            "  requests: {} ({} catalog pages, {} tag-list pages, {} manifest HEADs, {} manifest GETs, {} config GETs; job retries {})",
            s.requests, s.catalog_pages, s.tag_pages, s.heads, s.manifests, s.configs, s.job_retries
        ));
        if let Some(until) = self.pause {
            out.push(format!(
                "  paused: the registry answered 429; no request to it before {}",
                clock::rfc3339(until)
            ));
        }
        if listed > 0 {
            out.push(format!(
                "  tags: {listed} listed; {} new, {} moved, {} unchanged; {} marked deleted; {:.2} requests per listed tag",
                s.new_tags,
                s.moved_tags,
                s.unchanged_tags,
                s.deleted_tags,
                s.requests as f64 / listed as f64
            ));
        }
        let skipped = [
            ("invalid repository names", s.invalid_repos),
            ("invalid tag names", s.invalid_tags),
            ("invalid platforms", s.invalid_platforms),
        ];
        let skipped: Vec<String> = skipped
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(why, n)| format!("{why} {n}"))
            .collect();
        if !skipped.is_empty() {
            out.push(format!("  skipped: {}", skipped.join(", ")));
        }
        out.push(format!(
            "  jobs: {} pending, {} failed",
            self.jobs,
            self.failed.len()
        ));
        for (id, f) in &self.failed {
            out.push(format!(
                "    failed #{id} {}: {}",
                f.job.describe(),
                f.reason
            ));
        }
        let gaps = crate::catalog::gaps(run, &self.repos);
        if !gaps.is_empty() {
            out.push(format!(
                "  incomplete: {} listing(s) ended early",
                gaps.len()
            ));
            out.extend(gaps.iter().map(|g| format!("    {g}")));
        }
        out
    }
}

/// How far `enrich` got.
#[derive(Debug, Clone, Default)]
pub struct EnrichStatus {
    /// Counters over every run.
    pub stats: EnrichStats,
    /// Manifests learned.
    pub manifests: u64,
    /// Image IDs (configs) learned.
    pub configs: u64,
    /// Pending jobs: manifests, configs.
    pub left: (u64, u64),
    /// Failed jobs with their reasons.
    pub failed: Vec<(JobId, FailedEnrich)>,
    /// Manifests the registry no longer has (counted in `manifests`), with its answer.
    pub gone: Vec<(Digest, String)>,
    /// The stored pull budget.
    pub budget: Option<StoredBudget>,
    /// The pauses registries asked for (429 `Retry-After`), stored for the next run, while they
    /// last: (registry host, unix seconds).
    pub pauses: Vec<(String, u64)>,
}

impl fmt::Display for EnrichStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "enrich: {} manifests and {} image IDs learned; {} digests left ({} manifests, {} configs); {} failed",
            self.manifests - self.gone.len() as u64,
            self.configs,
            self.left.0 + self.left.1,
            self.left.0,
            self.left.1,
            self.failed.len()
        )?;
        writeln!(
            f,
            "  requests: {} manifest GETs (pulls), {} blob GETs, 429 answers {}, retries {}",
            s.pulls, s.blobs, s.rate_limited, s.retries
        )?;
        if let Some(b) = self.budget {
            let limit = b.limit.map(|l| format!(" of {l}")).unwrap_or_default();
            if b.remaining == 0 && b.frees_at > clock::now_unix() {
                writeln!(
                    f,
                    "  pull budget: spent ({}{limit} left) until {}; `digestmap enrich` can go on then",
                    b.remaining,
                    clock::rfc3339(b.frees_at)
                )?;
            } else {
                writeln!(f, "  pull budget: {}{limit} left", b.remaining)?;
            }
        }
        for (host, until) in &self.pauses {
            writeln!(
                f,
                "  paused: {host} answered 429; no request to it before {}",
                clock::rfc3339(*until)
            )?;
        }
        for (id, failed) in &self.failed {
            writeln!(
                f,
                "  failed #{id} {}: {}",
                failed.job.describe(),
                crate::text::printable(&failed.reason)
            )?;
        }
        if !self.gone.is_empty() {
            writeln!(
                f,
                "  gone: {} manifests the registry no longer has (not fetched again)",
                self.gone.len()
            )?;
        }
        for (digest, reason) in self.gone.iter().take(GONE_SHOWN) {
            writeln!(f, "    {digest}: {}", crate::text::printable(reason))?;
        }
        if self.gone.len() > GONE_SHOWN {
            writeln!(f, "    and {} more", self.gone.len() - GONE_SHOWN)?;
        }
        Ok(())
    }
}

/// Gone manifests listed by `status`; old history can hold thousands.
const GONE_SHOWN: usize = 20;

/// Something a run knows it missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gap {
    /// A repository whose stored tags (and skipped names) do not reach Hub's count.
    Tags {
        /// `ns/name`.
        repo: String,
        /// Distinct tags seen.
        seen: u64,
        /// Hub's count; `None` when no page of the listing was read (its job was given up).
        count: Option<u64>,
    },
    /// The repository list gave fewer repositories than Hub counts (the anonymous cap).
    Repos {
        /// Repositories listed.
        listed: u64,
        /// Hub's count.
        count: u64,
    },
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tags {
                repo,
                seen,
                count: Some(count),
            } => write!(
                f,
                "{repo}: {seen} of the {count} tags Hub counts were seen; {} missing",
                count.saturating_sub(*seen)
            ),
            Self::Tags {
                repo,
                seen,
                count: None,
            } => write!(
                f,
                "{repo}: its listing was not read to the end ({seen} tags seen; Hub's count unknown)"
            ),
            Self::Repos { listed, count } => write!(
                f,
                "the repository list gave {listed} of the {count} repositories Hub counts; {} missing",
                count.saturating_sub(*listed)
            ),
        }
    }
}

/// What a run knows it missed, given its counters and its repositories (those of the run only):
/// every repository finished incomplete, and a repository list shorter than Hub's count. The one
/// rule behind exit code 4, the run state [`RunState::Incomplete`] and the lists of `crawl` and
/// `status`.
pub fn gaps(stats: &RunStats, repos: &[(String, RepoState)]) -> Vec<Gap> {
    let mut out = Vec::new();
    if let Some(count) = stats.repo_count
        && (repos.len() as u64) < count
    {
        out.push(Gap::Repos {
            listed: repos.len() as u64,
            count,
        });
    }
    for (name, state) in repos {
        if state.complete == Some(false) {
            out.push(Gap::Tags {
                repo: name.clone(),
                seen: state.distinct,
                count: state.count,
            });
        }
    }
    out
}

/// Lines describing how completely each repository of a run was listed and what it cost:
/// one summary line, then one line per repository that was capped, re-read or is incomplete.
pub fn coverage_lines(repos: &[(String, RepoState)]) -> Vec<String> {
    // A repository of the run with `vanished_at` set is one the run found missing (404).
    let (gone, repos): (Vec<_>, Vec<_>) = repos.iter().partition(|(_, s)| s.vanished_at.is_some());
    let done: Vec<_> = repos.iter().filter(|(_, s)| s.complete.is_some()).collect();
    let complete = done
        .iter()
        .filter(|(_, s)| s.complete == Some(true))
        .count();
    let requests: u64 = repos.iter().chain(&gone).map(|(_, s)| s.requests).sum();
    let not_on_hub = if gone.is_empty() {
        String::new()
    } else {
        format!(", {} not on Hub", gone.len())
    };
    let mut lines = vec![format!(
        "coverage: {complete} of {} repositories complete, {} incomplete, {} still listing{not_on_hub}; {requests} tag-list requests",
        repos.len(),
        done.len() - complete,
        repos.len() - done.len()
    )];
    for (name, s) in repos {
        let seen = if s.complete.is_some() {
            s.distinct
        } else {
            s.tags_seen
        };
        let count = s.count.map_or("?".to_owned(), |c| c.to_string());
        let state = match s.complete {
            Some(true) => "complete",
            Some(false) => "INCOMPLETE",
            None => "listing",
        };
        if s.capped {
            let (tags_at_cap, requests_at_cap) = s.at_cap;
            let beyond = seen.saturating_sub(tags_at_cap);
            let spent = s.requests.saturating_sub(requests_at_cap);
            let per_1000 = if beyond > 0 {
                format!("{:.1}", spent as f64 * 1000.0 / beyond as f64)
            } else {
                "-".to_owned()
            };
            lines.push(format!(
                "  {name}: {state}, {seen} of {count} tags, {} requests; capped at {tags_at_cap} tags, then {spent} requests for {beyond} more ({per_1000} per 1000) through {} filters",
                s.requests,
                s.filters.len()
            ));
        } else if s.complete == Some(false) || s.relists > 0 {
            lines.push(format!(
                "  {name}: {state}, {seen} of {count} tags, {} requests, read {} times",
                s.requests,
                s.relists + 1
            ));
        }
    }
    lines
}

/// Lines naming what a run left out: repositories Hub answered 404 for, and failed jobs given up
/// with `--skip-failed` (then the result may be incomplete). None when nothing was left out.
pub fn gap_lines(gaps: &RunGaps) -> Vec<String> {
    let mut lines = Vec::new();
    if !gaps.missing.is_empty() {
        lines.push(format!(
            "not on Hub: {} repositories (their first tag page answered 404)",
            gaps.missing.len()
        ));
    }
    for m in &gaps.missing {
        lines.push(if m.known_tags == 0 {
            format!("  {}: never seen on Hub; nothing stored for it", m.repo)
        } else {
            format!(
                "  {}: vanished at {}; {} stored tags, of which {} were current and no longer are",
                m.repo,
                clock::rfc3339(m.at),
                m.known_tags,
                m.retired_tags
            )
        });
    }
    if !gaps.skipped.is_empty() {
        lines.push(format!(
            "skipped: {} failed jobs given up with --skip-failed; the result may be incomplete",
            gaps.skipped.len()
        ));
    }
    for f in &gaps.skipped {
        lines.push(format!("  {}: {}", f.job.kind.url(), f.reason));
    }
    lines
}

/// Everything `status` shows.
#[derive(Debug)]
pub struct StatusReport {
    /// The store file.
    pub path: String,
    /// Whether another process is writing to the store right now.
    pub crawl_running: bool,
    /// The crawl run, if any.
    pub run: Option<CrawlRun>,
    /// Its counters.
    pub stats: RunStats,
    /// Table sizes.
    pub counts: Counts,
    /// Repositories of the current run, and how many are done.
    pub repos_in_run: (u64, u64),
    /// Pending jobs (in flight ones included while a crawl runs).
    pub jobs: Vec<(JobId, Job)>,
    /// Failed jobs.
    pub failed: Vec<(JobId, FailedJob)>,
    /// The repositories of the current run with their coverage.
    pub repos: Vec<(String, RepoState)>,
    /// What the current run left out on purpose or found absent (repositories not on Hub,
    /// failed jobs skipped).
    pub left_out: RunGaps,
    /// How far `enrich` got.
    pub enrich: EnrichStatus,
    /// Every registry crawled through its catalog, by host.
    pub catalogs: Vec<CatalogStatus>,
}

/// Reads the status of `store`. `crawl_running` says whether a writer holds it.
pub fn report(store: &Store, crawl_running: bool) -> Result<StatusReport, StoreError> {
    store.read(|r| {
        let run: Option<CrawlRun> = r.meta("run")?;
        let repos = r.repos()?;
        let run_id = run.as_ref().map_or(0, |r| r.id);
        let in_run: Vec<(String, RepoState)> =
            repos.into_iter().filter(|(_, s)| s.run == run_id).collect();
        let done = in_run.iter().filter(|(_, s)| s.done_at.is_some()).count() as u64;
        Ok(StatusReport {
            path: store.path().display().to_string(),
            crawl_running,
            stats: r.meta("stats")?.unwrap_or_default(),
            counts: r.counts()?,
            repos_in_run: (in_run.len() as u64, done),
            jobs: r.jobs()?,
            failed: r.failed()?,
            repos: in_run,
            left_out: r.gaps(run_id)?,
            run,
            catalogs: r
                .catalog_runs()?
                .into_iter()
                .map(|run| CatalogStatus::read(r, run))
                .collect::<Result<_, _>>()?,
            enrich: {
                let jobs = r.enrich_jobs()?;
                let manifests_left = jobs
                    .iter()
                    .filter(|(_, j)| j.target == EnrichTarget::Manifest)
                    .count() as u64;
                let (manifests, configs) = r.enrich_counts()?;
                EnrichStatus {
                    stats: r.enrich_stats()?,
                    manifests,
                    configs,
                    left: (manifests_left, jobs.len() as u64 - manifests_left),
                    failed: r.enrich_failed()?,
                    gone: {
                        let mut gone = Vec::new();
                        r.visit_manifests(|digest, record| {
                            if let ManifestFact::Gone { reason } = record.fact {
                                gone.push((digest, reason));
                            }
                            Ok(())
                        })?;
                        gone
                    },
                    budget: r.budget()?,
                    pauses: {
                        let now = clock::now_unix();
                        let mut pauses = r.enrich_pauses()?;
                        pauses.retain(|(_, until)| *until > now);
                        pauses
                    },
                }
            },
        })
    })
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "store: {}", self.path)?;
        match &self.run {
            None if self.catalogs.is_empty() => writeln!(f, "crawl: none yet")?,
            None => writeln!(f, "Docker Hub crawl: none yet")?,
            Some(run) => {
                let state = match (run.state, self.crawl_running) {
                    (RunState::Finished, _) => "finished",
                    (RunState::Incomplete, _) => {
                        "finished INCOMPLETE (try the gaps again with `digestmap crawl --resume`, signed in if the anonymous cap stopped it)"
                    }
                    (RunState::Running, true) => "running (a digestmap process is crawling now)",
                    (RunState::Running, false) => {
                        "unfinished (no process is crawling; continue with `digestmap crawl --resume`)"
                    }
                };
                let mode = match run.mode {
                    RunMode::Full => "full crawl",
                    RunMode::Refresh => "refresh",
                };
                writeln!(f, "crawl #{} ({mode}): {state}", run.id)?;
                writeln!(f, "  hub: {}  namespace: {}", run.hub_url, run.namespace)?;
                if !run.repos.is_empty() {
                    writeln!(f, "  only repositories: {}", run.repos.join(", "))?;
                }
                writeln!(f, "  started: {}", clock::rfc3339(run.started))?;
                if let Some(t) = run.finished {
                    writeln!(f, "  finished: {}", clock::rfc3339(t))?;
                }
                writeln!(
                    f,
                    "  repositories: {} listed, {} done{}",
                    self.repos_in_run.0,
                    self.repos_in_run.1,
                    match (self.stats.repo_count, self.stats.repo_list_capped) {
                        (Some(c), true) => format!(" (Hub counts {c}; the list was capped)"),
                        (Some(c), false) => format!(" (Hub counts {c})"),
                        (None, _) => String::new(),
                    }
                )?;
                let s = &self.stats;
                writeln!(
                    f,
                    "  pages: {} repository, {} tag; tags stored: {}",
                    s.repo_pages, s.tag_pages, s.tags
                )?;
                writeln!(
                    f,
                    "  requests: {} (retries {}, 429 answers {}, job retries {})",
                    s.requests, s.retries, s.rate_limited, s.job_retries
                )?;
                let skipped: Vec<String> = crate::crawl::skip_reasons(&s.skips)
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(why, n)| format!("{why} {n}"))
                    .collect();
                if !skipped.is_empty() {
                    writeln!(f, "  skipped: {}", skipped.join(", "))?;
                }
            }
        }
        let in_flight = if self.crawl_running {
            " (some may be in flight now)"
        } else {
            ", none in flight"
        };
        writeln!(
            f,
            "jobs: {} pending{in_flight}, {} failed",
            self.jobs.len(),
            self.failed.len()
        )?;
        for (id, job) in self.jobs.iter().filter(|(_, j)| j.attempts > 0).take(20) {
            writeln!(
                f,
                "  #{id} {} (attempt {} failed: {})",
                job.kind.url(),
                job.attempts,
                job.last_error.as_deref().unwrap_or("?")
            )?;
        }
        for (id, failed) in &self.failed {
            writeln!(
                f,
                "  failed #{id} {}: {}",
                failed.job.kind.url(),
                failed.reason
            )?;
        }
        if self.run.is_some() {
            for line in coverage_lines(&self.repos) {
                writeln!(f, "{line}")?;
            }
            let gaps = gaps(&self.stats, &self.repos);
            if !gaps.is_empty()
                && self
                    .run
                    .as_ref()
                    .is_some_and(|r| r.state != RunState::Running)
            {
                writeln!(f, "incomplete: {} gap(s)", gaps.len())?;
                for gap in &gaps {
                    writeln!(f, "  {gap}")?;
                }
            }
            for line in gap_lines(&self.left_out) {
                writeln!(f, "{line}")?;
            }
        }
        for catalog in &self.catalogs {
            for line in catalog.lines(self.crawl_running) {
                writeln!(f, "{line}")?;
            }
        }
        let c = &self.counts;
        let repos = c.repos + self.catalogs.iter().map(|s| s.known).sum::<u64>();
        writeln!(
            f,
            "store holds: {repos} repositories, {} tags, {} digests, {} digest-tag pairs",
            c.tags, c.digests, c.pairs
        )?;
        let e = &self.enrich;
        if e.stats.pulls + e.stats.blobs + e.left.0 + e.left.1 > 0
            || !e.failed.is_empty()
            || !e.pauses.is_empty()
        {
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

//! `digestmap status`: what a store holds, read from a snapshot (safe beside a running crawl).

use std::fmt;

use crate::clock;
use crate::store::{
    Counts, CrawlRun, FailedJob, Job, JobId, RunState, RunStats, Store, StoreError,
};

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
    /// Repositories whose finished listing disagrees with Hub's count: (name, count, seen).
    pub count_mismatches: Vec<(String, u64, u64)>,
}

/// Reads the status of `store`. `crawl_running` says whether a writer holds it.
pub fn report(store: &Store, crawl_running: bool) -> Result<StatusReport, StoreError> {
    store.read(|r| {
        let run: Option<CrawlRun> = r.meta("run")?;
        let repos = r.repos()?;
        let run_id = run.as_ref().map_or(0, |r| r.id);
        let in_run: Vec<_> = repos.iter().filter(|(_, s)| s.run == run_id).collect();
        let done = in_run.iter().filter(|(_, s)| s.done_at.is_some()).count() as u64;
        let count_mismatches = in_run
            .iter()
            .filter(|(_, s)| s.done_at.is_some())
            .filter_map(|(name, s)| {
                s.count
                    .filter(|c| *c != s.tags_seen)
                    .map(|c| (name.clone(), c, s.tags_seen))
            })
            .collect();
        Ok(StatusReport {
            path: store.path().display().to_string(),
            crawl_running,
            stats: r.meta("stats")?.unwrap_or_default(),
            counts: r.counts()?,
            repos_in_run: (in_run.len() as u64, done),
            jobs: r.jobs()?,
            failed: r.failed()?,
            count_mismatches,
            run,
        })
    })
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "store: {}", self.path)?;
        match &self.run {
            None => writeln!(f, "crawl: none yet")?,
            Some(run) => {
                let state = match (run.state, self.crawl_running) {
                    (RunState::Finished, _) => "finished",
                    (RunState::Running, true) => "running (a digestmap process is crawling now)",
                    (RunState::Running, false) => {
                        "unfinished (no process is crawling; continue with `digestmap crawl --resume`)"
                    }
                };
                writeln!(f, "crawl #{}: {state}", run.id)?;
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
                    "  repositories: {} listed, {} done",
                    self.repos_in_run.0, self.repos_in_run.1
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
        for (name, count, seen) in &self.count_mismatches {
            writeln!(
                f,
                "  {name}: Hub counts {count} tags, the listing gave {seen}"
            )?;
        }
        let c = &self.counts;
        writeln!(
            f,
            "store holds: {} repositories, {} tags, {} digests, {} digest-tag pairs",
            c.repos, c.tags, c.digests, c.pairs
        )
    }
}

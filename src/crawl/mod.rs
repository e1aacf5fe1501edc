//! The crawl scheduler: workers take jobs from the queue, run them, and hand each outcome to the
//! one store writer, which commits it (results, completion and spawned jobs in one transaction)
//! before the jobs it spawned become ready.
//!
//! A repository-list page spawns the next repository page and one tag-list job per repository new
//! to this run; a tag-list page stores its tags and spawns the next tag page. A transient failure
//! puts the job back with a growing delay; after [`MAX_ATTEMPTS`] it moves to `failed`, where
//! `crawl --resume` finds it again. A 429 puts the job back without counting an attempt.
//!
//! Nothing here knows about the terminal: progress is a set of counters ([`Progress`]) that the
//! binary may draw.

mod handler;
mod queue;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::hub::{HubApi, Skips};
use crate::model::RepoName;
use crate::net::{HttpClient, NetConfig, NetStats, Pacer};
use crate::store::{
    Counts, CrawlRun, FailedJob, Job, JobId, JobKind, RepoState, RunState, RunStats, Store,
    StoreError, TxError, WriteBatch,
};
pub use handler::{Listing, Outcome, PageData};
use queue::JobQueue;

/// Attempts of a job (each with its own transport retries) before it is marked failed.
pub const MAX_ATTEMPTS: u32 = 5;
/// Delay before a failed job's second attempt; doubled for each further one.
pub const JOB_RETRY_BASE: Duration = Duration::from_secs(1);
/// Ceiling of that delay.
pub const JOB_RETRY_MAX: Duration = Duration::from_secs(60);
/// Most outcomes committed in one transaction: amortises the fsync without delaying progress.
const MAX_BATCH: usize = 64;

/// Default Hub origin.
pub const DEFAULT_HUB_URL: &str = "https://hub.docker.com";
/// Default namespace: the official images.
pub const DEFAULT_NAMESPACE: &str = "library";
/// Default number of workers.
pub const DEFAULT_WORKERS: usize = 4;
/// Default request rate: Hub allows about 180 requests a minute (3/s) per client; 2/s leaves room
/// for other tools on the same address.
pub const DEFAULT_RPS: f64 = 2.0;

/// What to crawl and how.
#[derive(Debug, Clone)]
pub struct CrawlOptions {
    /// `--hub-url`; `None` means the default, or on resume the stored one.
    pub hub_url: Option<String>,
    /// `--namespace`; `None` as above.
    pub namespace: Option<String>,
    /// `--repo`: only these repositories (empty: all).
    pub repos: Vec<String>,
    /// Number of concurrent workers.
    pub workers: usize,
    /// Request starts per second.
    pub rps: f64,
    /// Continue the unfinished run instead of starting one.
    pub resume: bool,
    /// Client limits.
    pub net: NetConfig,
    /// Delay before a failed job's second attempt; doubled for each further one.
    pub job_retry_base: Duration,
}

impl CrawlOptions {
    /// Checks the options that need no store, so that bad flags fail before a store is created.
    pub fn validate(&self) -> Result<(), CrawlError> {
        if self.workers == 0 || self.workers > 256 {
            return Err(CrawlError::Usage(format!(
                "--workers must be between 1 and 256, got {}",
                self.workers
            )));
        }
        Pacer::new(self.rps).map_err(|e| CrawlError::Usage(e.to_string()))?;
        if let Some(url) = &self.hub_url {
            HubApi::new(url).map_err(|e| CrawlError::Usage(e.to_string()))?;
        }
        let namespace = self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
        if RepoName::new(namespace, "x").is_err() {
            return Err(CrawlError::Usage(format!(
                "--namespace {namespace:?} is not a valid Docker Hub namespace"
            )));
        }
        for name in &self.repos {
            RepoName::new(namespace, name)
                .map_err(|e| CrawlError::Usage(format!("--repo: {e}")))?;
        }
        Ok(())
    }
}

impl Default for CrawlOptions {
    fn default() -> Self {
        Self {
            hub_url: None,
            namespace: None,
            repos: Vec::new(),
            workers: DEFAULT_WORKERS,
            rps: DEFAULT_RPS,
            resume: false,
            net: NetConfig::default(),
            job_retry_base: JOB_RETRY_BASE,
        }
    }
}

/// Live counters for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    /// Repositories known to this run.
    pub repos_total: AtomicU64,
    /// Repositories whose last tag page is stored.
    pub repos_done: AtomicU64,
    /// Pages stored by this run.
    pub pages: AtomicU64,
    /// Tags stored by this run.
    pub tags: AtomicU64,
    /// Jobs failed.
    pub failed: AtomicU64,
    /// Requests sent by this process.
    pub requests: AtomicU64,
}

/// How a crawl ended.
#[derive(Debug)]
pub struct CrawlReport {
    /// The run as stored at the end.
    pub run: CrawlRun,
    /// Counters of the whole run (every process that worked on it).
    pub stats: RunStats,
    /// Table sizes at the end.
    pub counts: Counts,
    /// Jobs that failed, with reasons.
    pub failed: Vec<(JobId, FailedJob)>,
    /// Repositories whose listing ended with fewer or more tags than Hub's count.
    pub count_mismatches: Vec<(String, u64, u64)>,
    /// Time this process spent.
    pub elapsed: Duration,
    /// Whether Ctrl-C stopped it.
    pub interrupted: bool,
}

/// Why a crawl could not run.
#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    /// Bad options.
    #[error("{0}")]
    Usage(String),
    /// The store is in a state that does not allow this crawl.
    #[error("{0}")]
    StoreState(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Crawls into `store` until every job is done or failed, or `cancel` fires.
pub async fn crawl(
    store: Arc<Store>,
    options: CrawlOptions,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> Result<CrawlReport, CrawlError> {
    let started = Instant::now();
    options.validate()?;
    let pacer = Arc::new(Pacer::new(options.rps).map_err(|e| CrawlError::Usage(e.to_string()))?);
    let run = prepare_run(&store, &options)?;
    let api = HubApi::new(&run.hub_url).map_err(|e| CrawlError::Usage(e.to_string()))?;
    if let Some(until) = store.pause_until()? {
        pacer.restore_pause(until);
        if let Some(wait) = pacer.pause_remaining() {
            tracing::warn!(
                "Hub asked the last run to pause; waiting {:.0}s before the first request",
                wait.as_secs_f64()
            );
        }
    }
    let client = HttpClient::new(&api, pacer.clone(), &options.net)?;

    let (jobs, repos) = store.read(|r| Ok((r.jobs()?, r.repos()?)))?;
    let this_run: Vec<&RepoState> = repos
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.run == run.id)
        .collect();
    progress
        .repos_total
        .store(this_run.len() as u64, Ordering::Relaxed);
    progress.repos_done.store(
        this_run.iter().filter(|s| s.done_at.is_some()).count() as u64,
        Ordering::Relaxed,
    );
    let queue = Arc::new(JobQueue::new(jobs));

    let (tx, rx) = mpsc::channel::<Completion>(options.workers * 2);
    let writer = {
        let ctx = WriterCtx {
            store: store.clone(),
            api: api.clone(),
            run: run.clone(),
            queue: queue.clone(),
            progress: progress.clone(),
            pacer: pacer.clone(),
            net: client.stats().clone(),
            synced: NetSnapshot::default(),
            count_mismatches: Vec::new(),
            job_retry_base: options.job_retry_base,
        };
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || ctx.run(rx))
            .map_err(|e| {
                CrawlError::StoreState(format!("cannot start the store writer thread: {e}"))
            })?
    };

    let mut workers = Vec::with_capacity(options.workers);
    for _ in 0..options.workers {
        let (queue, client, api, tx, cancel) = (
            queue.clone(),
            client.clone(),
            api.clone(),
            tx.clone(),
            cancel.clone(),
        );
        let progress = progress.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = cancel.cancelled() => None,
                    job = queue.take() => job,
                };
                let Some((id, job)) = next else { break };
                let outcome = tokio::select! {
                    () = cancel.cancelled() => break,
                    outcome = handler::run(&client, &api, &job.kind) => outcome,
                };
                progress.requests.store(
                    client.stats().requests.load(Ordering::Relaxed),
                    Ordering::Relaxed,
                );
                // Wait for the commit before taking another job: a worker then holds at most one
                // uncommitted page, which bounds what a crash can make us fetch again.
                let (ack, committed) = oneshot::channel();
                let completion = Completion {
                    id,
                    job,
                    outcome,
                    ack,
                };
                if tx.send(completion).await.is_err() || committed.await.is_err() {
                    break; // the writer stopped on a store error
                }
            }
        }));
    }
    drop(tx);
    let cancel_watch = {
        let (queue, cancel) = (queue.clone(), cancel.clone());
        tokio::spawn(async move {
            cancel.cancelled().await;
            queue.close();
        })
    };
    for worker in workers {
        // A worker only ends by returning; a panic is a bug worth surfacing.
        if let Err(err) = worker.await {
            std::panic::resume_unwind(err.into_panic());
        }
    }
    cancel_watch.abort();
    let writer_result = tokio::task::spawn_blocking(move || writer.join())
        .await
        .expect("joining the writer thread does not panic");
    let count_mismatches = match writer_result {
        Ok(result) => result?,
        Err(panic) => std::panic::resume_unwind(panic),
    };

    let interrupted = cancel.is_cancelled();
    let (failed, counts, jobs_left) =
        store.read(|r| Ok((r.failed()?, r.counts()?, r.counts()?.jobs)))?;
    let mut run = store.run()?.unwrap_or(run);
    if !interrupted && jobs_left == 0 && failed.is_empty() {
        run.state = RunState::Finished;
        run.finished = Some(clock::now_unix());
        store.write(|w| w.set_run(&run))?;
    }
    Ok(CrawlReport {
        run,
        stats: store.stats()?,
        counts,
        failed,
        count_mismatches,
        elapsed: started.elapsed(),
        interrupted,
    })
}

/// Checks the store's state against the options and starts or resumes a run.
fn prepare_run(store: &Store, options: &CrawlOptions) -> Result<CrawlRun, CrawlError> {
    let existing = store.run()?;
    let db = store.path().display().to_string();
    if options.resume {
        let Some(run) = existing.filter(|r| r.state == RunState::Running) else {
            return Err(CrawlError::StoreState(format!(
                "the store {db} holds no unfinished crawl to resume; run `digestmap crawl --db {db}` to start one"
            )));
        };
        let conflicts = [
            (
                "--hub-url",
                options.hub_url.as_deref(),
                run.hub_url.as_str(),
            ),
            (
                "--namespace",
                options.namespace.as_deref(),
                run.namespace.as_str(),
            ),
        ];
        for (flag, given, stored) in conflicts {
            if let Some(given) = given
                && given.trim_end_matches('/') != stored.trim_end_matches('/')
            {
                return Err(CrawlError::Usage(format!(
                    "{flag} {given} differs from the unfinished crawl's {stored}; resume without it, or finish that crawl first"
                )));
            }
        }
        if !options.repos.is_empty() && options.repos != run.repos {
            return Err(CrawlError::Usage(format!(
                "--repo differs from the unfinished crawl's repositories ({}); resume without it",
                if run.repos.is_empty() {
                    "all".to_owned()
                } else {
                    run.repos.join(", ")
                }
            )));
        }
        let moved = store.write(|w| w.retry_failed())?;
        if moved > 0 {
            tracing::info!("{moved} failed job(s) are queued again");
        }
        return Ok(run);
    }
    if let Some(run) = existing.as_ref().filter(|r| r.state == RunState::Running) {
        return Err(CrawlError::StoreState(format!(
            "the store {db} holds an unfinished crawl of {} (started {}); continue it with `digestmap crawl --resume --db {db}`",
            run.namespace,
            clock::rfc3339(run.started)
        )));
    }

    let hub_url = options
        .hub_url
        .clone()
        .unwrap_or_else(|| DEFAULT_HUB_URL.to_owned());
    let api = HubApi::new(&hub_url).map_err(|e| CrawlError::Usage(e.to_string()))?;
    let namespace = options
        .namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let repos = options
        .repos
        .iter()
        .map(|name| RepoName::new(&namespace, name))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CrawlError::Usage(format!("--repo: {e}")))?;
    let run = CrawlRun {
        id: existing.map_or(1, |r| r.id + 1),
        state: RunState::Running,
        started: clock::now_unix(),
        finished: None,
        hub_url: api.origin(),
        namespace: namespace.clone(),
        repos: repos.iter().map(|r| r.name.clone()).collect(),
    };
    store.write(|w| {
        w.set_run(&run)?;
        w.set_stats(&RunStats::default())?;
        if repos.is_empty() {
            w.add_job(&Job::new(JobKind::Repos {
                namespace: namespace.clone(),
                url: api.repositories_url(&namespace).to_string(),
            }))?;
        } else {
            for repo in &repos {
                start_repo(w, &api, &run, repo)?;
            }
        }
        Ok(())
    })?;
    Ok(run)
}

/// Marks a repository as listed by `run` and queues its first tag page, unless this run already
/// did (a repository can appear on two repository pages when the listing shifts).
fn start_repo(
    w: &mut WriteBatch<'_>,
    api: &HubApi,
    run: &CrawlRun,
    repo: &RepoName,
) -> Result<Option<(JobId, Job)>, TxError> {
    if w.repo(repo)?.is_some_and(|s| s.run == run.id) {
        return Ok(None);
    }
    w.put_repo(
        repo,
        &RepoState {
            run: run.id,
            listed_at: clock::now_unix(),
            pages: 0,
            tags_seen: 0,
            count: None,
            done_at: None,
        },
    )?;
    let job = Job::new(JobKind::Tags {
        repo: repo.clone(),
        url: api.tags_url(repo).to_string(),
    });
    let id = w.add_job(&job)?;
    Ok(Some((id, job)))
}

/// A job attempt's outcome on its way to the writer.
struct Completion {
    id: JobId,
    job: Job,
    outcome: Outcome,
    ack: oneshot::Sender<()>,
}

#[derive(Debug, Default, Clone, Copy)]
struct NetSnapshot {
    requests: u64,
    fetches: u64,
    rate_limited: u64,
}

/// The store writer: the one place a crawl commits.
struct WriterCtx {
    store: Arc<Store>,
    api: HubApi,
    run: CrawlRun,
    queue: Arc<JobQueue>,
    progress: Arc<Progress>,
    pacer: Arc<Pacer>,
    net: Arc<NetStats>,
    synced: NetSnapshot,
    count_mismatches: Vec<(String, u64, u64)>,
    job_retry_base: Duration,
}

/// What committing one completion changes in memory afterwards.
#[derive(Default)]
struct Applied {
    ready: Vec<(JobId, Job)>,
    new_repos: u64,
    repos_done: u64,
    pages: u64,
    tags: u64,
    failed: u64,
}

impl WriterCtx {
    fn run(
        mut self,
        mut rx: mpsc::Receiver<Completion>,
    ) -> Result<Vec<(String, u64, u64)>, StoreError> {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(more) => batch.push(more),
                    Err(_) => break,
                }
            }
            if let Err(err) = self.commit(&batch) {
                // Nothing of the batch was kept: its jobs are still in the store. Stop the crawl.
                self.queue.close();
                return Err(err);
            }
            for completion in batch {
                // A worker that is gone (Ctrl-C) no longer waits; nothing to tell it.
                let _ = completion.ack.send(());
            }
        }
        Ok(self.count_mismatches)
    }

    fn commit(&mut self, batch: &[Completion]) -> Result<(), StoreError> {
        let snapshot = NetSnapshot {
            requests: self.net.requests.load(Ordering::Relaxed),
            fetches: self.net.fetches.load(Ordering::Relaxed),
            rate_limited: self.pacer.rate_limited(),
        };
        let mut mismatches = Vec::new();
        let applied = self.store.write(|w| {
            let mut stats = w.stats()?;
            stats.requests += snapshot.requests - self.synced.requests;
            let retries_now = snapshot.requests.saturating_sub(snapshot.fetches);
            let retries_before = self.synced.requests.saturating_sub(self.synced.fetches);
            stats.retries += retries_now.saturating_sub(retries_before);
            stats.rate_limited += snapshot.rate_limited - self.synced.rate_limited;
            let mut all = Vec::with_capacity(batch.len());
            for completion in batch {
                all.push(self.apply(w, completion, &mut stats, &mut mismatches)?);
            }
            w.set_stats(&stats)?;
            w.set_pause_until(self.pacer.paused_until_unix())?;
            Ok(all)
        })?;
        self.synced = snapshot;
        self.count_mismatches.extend(mismatches);
        for a in applied {
            let p = &self.progress;
            p.repos_total.fetch_add(a.new_repos, Ordering::Relaxed);
            p.repos_done.fetch_add(a.repos_done, Ordering::Relaxed);
            p.pages.fetch_add(a.pages, Ordering::Relaxed);
            p.tags.fetch_add(a.tags, Ordering::Relaxed);
            p.failed.fetch_add(a.failed, Ordering::Relaxed);
            self.queue.complete(a.ready);
        }
        Ok(())
    }

    fn apply(
        &self,
        w: &mut WriteBatch<'_>,
        completion: &Completion,
        stats: &mut RunStats,
        mismatches: &mut Vec<(String, u64, u64)>,
    ) -> Result<Applied, TxError> {
        let Completion {
            id, job, outcome, ..
        } = completion;
        let mut applied = Applied::default();
        let page = match outcome {
            Outcome::Page(page) => page,
            Outcome::RateLimited => {
                // Not an attempt: the job waits for the pause and goes again.
                let mut job = job.clone();
                job.not_before_ms = self
                    .pacer
                    .paused_until_unix()
                    .map_or(0, |t| t.saturating_mul(1000));
                applied.ready.push((*id, job));
                return Ok(applied);
            }
            Outcome::Failed { error, transient } => {
                let attempts = job.attempts + 1;
                if *transient && attempts < MAX_ATTEMPTS {
                    let delay = self
                        .job_retry_base
                        .saturating_mul(1 << (attempts - 1).min(16))
                        .min(JOB_RETRY_MAX);
                    tracing::warn!(
                        "{error} (attempt {attempts} of {MAX_ATTEMPTS}; trying again in {}s)",
                        delay.as_secs()
                    );
                    let job = Job {
                        attempts,
                        not_before_ms: clock::now_unix_millis() + delay.as_millis() as u64,
                        last_error: Some(error.clone()),
                        kind: job.kind.clone(),
                    };
                    w.put_job(*id, &job)?;
                    stats.job_retries += 1;
                    applied.ready.push((*id, job));
                } else {
                    tracing::error!("job failed: {error}");
                    let job = Job {
                        attempts,
                        last_error: Some(error.clone()),
                        ..job.clone()
                    };
                    w.fail_job(
                        *id,
                        &FailedJob {
                            job,
                            reason: error.clone(),
                            failed_at: clock::now_unix(),
                        },
                    )?;
                    applied.failed += 1;
                }
                return Ok(applied);
            }
        };

        let now = page.fetched_at;
        stats.skips.add(&page.skips);
        applied.pages = 1;
        // The next page is queued before the spawned tag lists, so a repository list is read to
        // its end early and the progress display knows the total soon.
        if let Ok(Some(next)) = &page.next {
            let kind = match &job.kind {
                JobKind::Repos { namespace, .. } => JobKind::Repos {
                    namespace: namespace.clone(),
                    url: next.to_string(),
                },
                JobKind::Tags { repo, .. } => JobKind::Tags {
                    repo: repo.clone(),
                    url: next.to_string(),
                },
            };
            let next_job = Job::new(kind);
            let next_id = w.add_job(&next_job)?;
            applied.ready.push((next_id, next_job));
        }
        match (&job.kind, &page.listing) {
            (JobKind::Repos { .. }, Listing::Repos(repos)) => {
                stats.repo_pages += 1;
                for repo in repos {
                    if let Some(spawned) = start_repo(w, &self.api, &self.run, repo)? {
                        applied.ready.push(spawned);
                        applied.new_repos += 1;
                    }
                }
            }
            (JobKind::Tags { repo, .. }, Listing::Tags(tags)) => {
                stats.tag_pages += 1;
                stats.tags += tags.len() as u64;
                applied.tags = tags.len() as u64;
                for tag in tags {
                    w.record_tag(repo, tag, now, self.run.id)?;
                }
                let mut state = w.repo(repo)?.unwrap_or(RepoState {
                    run: self.run.id,
                    listed_at: now,
                    pages: 0,
                    tags_seen: 0,
                    count: None,
                    done_at: None,
                });
                state.pages += 1;
                state.tags_seen += tags.len() as u64;
                state.count = page.count.or(state.count);
                if matches!(page.next, Ok(None)) {
                    state.done_at = Some(now);
                    applied.repos_done = 1;
                    if let Some(count) = state.count
                        && count != state.tags_seen
                    {
                        tracing::warn!(
                            "{repo}: Hub counts {count} tags but the listing gave {} (it changed while it was read)",
                            state.tags_seen
                        );
                        mismatches.push((repo.to_string(), count, state.tags_seen));
                    }
                }
                w.put_repo(repo, &state)?;
            }
            _ => unreachable!("a job's listing matches its kind"),
        }
        match &page.next {
            Err(reason) => {
                tracing::error!("job failed: {reason}");
                w.fail_job(
                    *id,
                    &FailedJob {
                        job: job.clone(),
                        reason: reason.clone(),
                        failed_at: now,
                    },
                )?;
                applied.failed += 1;
            }
            Ok(_) => {
                w.remove_job(*id)?;
            }
        }
        Ok(applied)
    }
}

/// Path of the default store.
pub fn default_db_path() -> PathBuf {
    PathBuf::from("digestmap.redb")
}

/// The skip counters as `reason: n` pairs, for summaries.
pub fn skip_reasons(skips: &Skips) -> Vec<(&'static str, u64)> {
    vec![
        ("attestation manifests", skips.attestations),
        ("null digests", skips.null_digests),
        ("invalid digests", skips.invalid_digests),
        ("invalid tag names", skips.invalid_tags),
        ("invalid repository names", skips.invalid_repos),
    ]
}

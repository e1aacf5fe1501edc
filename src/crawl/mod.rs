//! The crawl scheduler: workers take jobs from the queue, run them, and hand each outcome to the
//! one store writer, which commits it (results, completion and spawned jobs in one transaction)
//! before the jobs it spawned become ready.
//!
//! A repository-list page spawns the next repository page and one tag-list job per repository new
//! to this run; a tag-list page stores its tags and spawns what [`policy`] (pure) decides it leads
//! to: the next page of its view, another view, the cover's next round, or the repository done.
//! A transient failure
//! puts the job back with a growing delay; after [`MAX_ATTEMPTS`] it moves to `failed`, where
//! `crawl --resume` finds it again (or, with `--skip-failed`, gives it up and records it as
//! skipped, so the run can finish, incomplete). A 429 puts the job back without counting an
//! attempt. A 404 is an answer (a pure function, `handler::not_found`, decides what it means): a
//! repository Hub does not have is recorded as missing, and a page past the end of a listing that
//! shrank ends that view. When Hub refuses the credentials mid-crawl (see `net::auth`), no job can
//! succeed: every worker stops, the jobs in flight stay in the store, and the crawl ends in
//! [`CrawlError::Auth`].
//!
//! Nothing here knows about the terminal: progress is a set of counters ([`Progress`]) that the
//! binary may draw.

mod handler;
pub mod plan;
pub mod policy;
mod queue;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::hub::{HubApi, Skips};
use crate::model::RepoName;
use crate::net::auth::{Credentials, SignInError};
use crate::net::{HttpClient, NetConfig, Pacer};
use crate::store::{
    Counts, CrawlRun, FailedJob, Job, JobId, JobKind, PagingCaps, RepoState, RunGaps, RunMode,
    RunState, RunStats, Store, StoreError, TxError, WriteBatch, paging_caps_key,
};
pub use handler::{Listing, Outcome, PageData};
pub use policy::{MAX_FILTERS, MAX_RELISTS, next_filter};
use queue::JobQueue;
use writer::{Completion, WriterCtx, replan_gaps, start_repo};

/// Attempts of a job (each with its own transport retries) before it is marked failed.
pub const MAX_ATTEMPTS: u32 = 5;
/// Delay before a failed job's second attempt; doubled for each further one.
pub const JOB_RETRY_BASE: Duration = Duration::from_secs(1);
/// Ceiling of that delay.
pub const JOB_RETRY_MAX: Duration = Duration::from_secs(60);

/// Default Hub origin.
pub const DEFAULT_HUB_URL: &str = "https://hub.docker.com";
/// Default namespace: the official images.
pub const DEFAULT_NAMESPACE: &str = "library";
/// Default number of workers.
pub const DEFAULT_WORKERS: usize = 4;
/// Default request rate: Hub allows about 180 requests a minute (3/s) per client; 2/s leaves room
/// for other tools on the same address.
pub const DEFAULT_RPS: f64 = 2.0;

/// Most workers a crawl (either kind) or an enrich run takes.
pub const MAX_WORKERS: usize = 256;

/// `--workers` checked against 1 ..= [`MAX_WORKERS`]; the error says what was given.
pub fn check_workers(workers: usize) -> Result<(), String> {
    if (1..=MAX_WORKERS).contains(&workers) {
        Ok(())
    } else {
        Err(format!(
            "--workers must be between 1 and {MAX_WORKERS}, got {workers}"
        ))
    }
}

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
    /// Re-list everything even when the store holds a finished crawl (else that is a refresh).
    pub full: bool,
    /// With `resume`: give up the failed jobs instead of trying them again, so the run can
    /// finish; they are recorded as skipped ([`RunGaps`]).
    pub skip_failed: bool,
    /// Client limits.
    pub net: NetConfig,
    /// Delay before a failed job's second attempt; doubled for each further one.
    pub job_retry_base: Duration,
    /// Docker Hub credentials to sign in with; `None` crawls anonymously. Never stored, so a
    /// resumed crawl is given them again.
    pub credentials: Option<Credentials>,
    /// `--registry`: the registry whose `tags/list` plans the cover of a capped repository
    /// (anonymous crawls only). `None`: the stored run's on resume; for a new run, the last
    /// run's when it crawled the same Hub origin, else Docker Hub's registry when crawling
    /// Docker Hub's own origin, else none (the cover then uses `name` filters alone).
    pub registry: Option<String>,
}

impl CrawlOptions {
    /// Checks the options that need no store, so that bad flags fail before a store is created.
    pub fn validate(&self) -> Result<(), CrawlError> {
        check_workers(self.workers).map_err(CrawlError::Usage)?;
        Pacer::new(self.rps).map_err(|e| CrawlError::Usage(e.to_string()))?;
        if self.skip_failed && !self.resume {
            return Err(CrawlError::Usage(
                "--skip-failed gives up the failed jobs of an unfinished crawl and needs --resume"
                    .into(),
            ));
        }
        if self.full && self.resume {
            return Err(CrawlError::Usage(
                "--full starts a new crawl and cannot be combined with --resume".into(),
            ));
        }
        if let Some(url) = &self.hub_url {
            HubApi::new(url).map_err(|e| CrawlError::Usage(e.to_string()))?;
        }
        if let Some(url) = &self.registry {
            registry_url(url)?;
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
            full: false,
            skip_failed: false,
            net: NetConfig::default(),
            job_retry_base: JOB_RETRY_BASE,
            credentials: None,
            registry: None,
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

impl Progress {
    /// Starts the repository counters from the store: `done` of the run's `total` repositories
    /// are finished already (a resumed run).
    pub fn set_repos(&self, total: u64, done: u64) {
        self.repos_total.store(total, Ordering::Relaxed);
        self.repos_done.store(done, Ordering::Relaxed);
    }
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
    /// The repositories of this run with their coverage.
    pub repos: Vec<(String, RepoState)>,
    /// What the run knows it missed (see [`crate::status::gaps`]); the run then ends
    /// [`RunState::Incomplete`].
    pub gaps: Vec<crate::status::Gap>,
    /// What the run left out on purpose or found absent: repositories Hub does not have, failed
    /// jobs skipped.
    pub left_out: RunGaps,
    /// Time this process spent.
    pub elapsed: Duration,
    /// Whether Ctrl-C stopped it.
    pub interrupted: bool,
    /// The server that answered nothing but 429 for longer than the bound, which stopped it.
    pub refused: Option<crate::net::Refusal>,
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
    /// Hub refused the credentials at sign-in (nothing was crawled), or mid-crawl (the run
    /// stays resumable).
    #[error("{0}")]
    Auth(String),
    /// Hub could not be reached to sign in, after the retries: nothing was crawled.
    #[error("{0}")]
    SignInUnavailable(String),
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
    // Stops the workers like Ctrl-C does, but without counting as an interruption: fired when
    // Hub refuses the credentials mid-crawl, which no other job can get past, or when the pacer
    // gives up on a server that refuses everything.
    let halt = cancel.child_token();
    let pacer = Arc::new(
        Pacer::new(options.rps)
            .map_err(|e| CrawlError::Usage(e.to_string()))?
            .with_max_pause(options.net.max_pause)
            .with_refusal_bound(options.net.max_refusal, halt.clone()),
    );
    let plan = prepare_run(&store, &options)?;
    let api = HubApi::new(&plan.run().hub_url).map_err(|e| CrawlError::Usage(e.to_string()))?;
    pacer.restore_pause(store.pause_until()?, "Hub");
    let client = HttpClient::new(
        &api,
        pacer.clone(),
        &options.net,
        options.credentials.clone(),
    )?;
    // Sign in before any worker starts, so wrong credentials stop the crawl before it lists
    // anything. Ctrl-C meanwhile leaves it to the workers, which then stop at once.
    tokio::select! {
        () = halt.cancelled() => {}
        signed = client.sign_in() => signed.map_err(|e| match e {
            SignInError::Rejected { .. } | SignInError::Refused(_) => CrawlError::Auth(e.to_string()),
            SignInError::Unreachable { .. } => CrawlError::SignInUnavailable(e.to_string()),
        })?,
    }
    // Only now, signed in (or anonymous), is the run written.
    let run = start_run(&store, plan, options.skip_failed)?;
    let registry = cover_registry(&options, &run, &pacer)?.map(Arc::new);

    let (jobs, repos) = store.read(|r| Ok((r.jobs()?, r.repos()?)))?;
    let this_run: Vec<&RepoState> = repos
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.run == run.id)
        .collect();
    progress.set_repos(
        this_run.len() as u64,
        this_run.iter().filter(|s| s.done_at.is_some()).count() as u64,
    );
    let queue = Arc::new(JobQueue::new(jobs));
    // Docker Hub's anonymous caps are known from the start; another origin's once the store
    // met them there (kept per origin: another origin's caps say nothing of this one).
    let learned = store.read(|r| r.meta::<PagingCaps>(&paging_caps_key(&api.origin())))?;
    let caps = policy::expected_caps(
        &api.origin(),
        options.credentials.is_none(),
        learned.unwrap_or_default(),
    );

    let (tx, rx) = mpsc::channel::<Completion>(options.workers * 2);
    let writer = {
        let ctx = WriterCtx::new(
            store.clone(),
            api.clone(),
            run.clone(),
            queue.clone(),
            progress.clone(),
            pacer.clone(),
            client.stats().clone(),
            options.job_retry_base,
            registry.clone(),
            options.credentials.is_none(),
            caps,
        );
        let close = CloseOnPanic(queue.clone());
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                let _close_on_panic = close;
                ctx.run(rx)
            })
            .map_err(|e| {
                CrawlError::StoreState(format!("cannot start the store writer thread: {e}"))
            })?
    };

    let mut workers = Vec::with_capacity(options.workers);
    for _ in 0..options.workers {
        let (queue, client, api, tx, cancel, registry) = (
            queue.clone(),
            client.clone(),
            api.clone(),
            tx.clone(),
            halt.clone(),
            registry.clone(),
        );
        let progress = progress.clone();
        workers.push(tokio::spawn(async move {
            let _close_on_panic = CloseOnPanic(queue.clone());
            loop {
                let next = tokio::select! {
                    () = cancel.cancelled() => None,
                    job = queue.take() => job,
                };
                let Some((id, job)) = next else { break };
                injected_panic("worker");
                let (outcome, requests) = tokio::select! {
                    () = cancel.cancelled() => break,
                    done = handler::run(&client, registry.as_deref(), &api, &job.kind) => done,
                };
                progress.requests.store(
                    client.stats().requests.load(Ordering::Relaxed),
                    Ordering::Relaxed,
                );
                if matches!(outcome, Outcome::Failed { .. }) && client.sign_in_refused().is_some() {
                    // Signed out for good: the job stays in the store for `--resume`.
                    cancel.cancel();
                    break;
                }
                // Wait for the commit before taking another job: a worker then holds at most one
                // uncommitted page, which bounds what a crash can make us fetch again.
                let (ack, committed) = oneshot::channel();
                let completion = Completion {
                    id,
                    job,
                    outcome,
                    requests,
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
        let (queue, cancel) = (queue.clone(), halt.clone());
        tokio::spawn(async move {
            cancel.cancelled().await;
            queue.close();
        })
    };
    // A worker only ends by returning; a panic is a bug worth surfacing. Its guard closed the
    // queue, so the other workers stop instead of waiting for its job forever.
    let mut panicked = None;
    for worker in workers {
        if let Err(err) = worker.await
            && err.is_panic()
        {
            panicked.get_or_insert(err.into_panic());
        }
    }
    if let Some(panic) = panicked {
        std::panic::resume_unwind(panic);
    }
    cancel_watch.abort();
    let writer_result = tokio::task::spawn_blocking(move || writer.join())
        .await
        .expect("joining the writer thread does not panic");
    match writer_result {
        Ok(result) => result?,
        Err(panic) => std::panic::resume_unwind(panic),
    }
    if let Some(why) = client.sign_in_refused() {
        // Everything fetched is committed; the unfinished jobs wait for `--resume`.
        return Err(CrawlError::Auth(why));
    }

    let refused = pacer.refusal();
    // Stopped by a refusing server, the run waits for `--resume` as after Ctrl-C.
    let interrupted = cancel.is_cancelled() || refused.is_some();
    let (failed, counts, repos, left_out) =
        store.read(|r| Ok((r.failed()?, r.counts()?, r.repos()?, r.gaps(run.id)?)))?;
    let jobs_left = counts.jobs;
    let mut run = store.run()?.unwrap_or(run);
    let repos: Vec<(String, RepoState)> =
        repos.into_iter().filter(|(_, s)| s.run == run.id).collect();
    let stats = store.stats()?;
    let gaps = crate::status::gaps(&stats, &repos);
    if let Some(state) = RunState::at_end(interrupted, jobs_left, failed.len(), gaps.len()) {
        run.state = state;
        run.finished = Some(clock::now_unix());
        store.write(|w| w.set_run(&run))?;
    }
    Ok(CrawlReport {
        run,
        stats,
        counts,
        failed,
        repos,
        gaps,
        left_out,
        elapsed: started.elapsed(),
        interrupted: cancel.is_cancelled(),
        refused,
    })
}

/// Parses a `--registry` URL as the registry client will take it.
fn registry_url(url: &str) -> Result<url::Url, CrawlError> {
    let parsed = url::Url::parse(url)
        .ok()
        .filter(crate::registry::origin::secure_or_loopback)
        .filter(|u| matches!(u.path(), "" | "/") && u.query().is_none())
        .filter(|u| u.username().is_empty() && u.password().is_none());
    parsed.ok_or_else(|| {
        CrawlError::Usage(format!(
            "--registry {:?} must be an https origin (plain http only on a loopback host) with no path or user name",
            crate::hub::redact_userinfo(url)
        ))
    })
}

/// The registry origin `url` names (`--registry` checked, then stored in this form).
fn registry_origin(url: &str) -> Result<String, CrawlError> {
    Ok(registry_url(url)?.origin().ascii_serialization())
}

/// The registry a new run's cover asks for tag names: `--registry`, else the last run's when it
/// crawled the same Hub origin, else Docker Hub's registry when crawling Docker Hub itself, else
/// none.
fn run_registry(
    options: &CrawlOptions,
    hub_origin: &str,
    last: Option<&CrawlRun>,
) -> Result<Option<String>, CrawlError> {
    if let Some(url) = &options.registry {
        return registry_origin(url).map(Some);
    }
    if let Some(last) = last.filter(|r| r.hub_url == hub_origin && r.registry.is_some()) {
        return Ok(last.registry.clone());
    }
    if hub_origin.trim_end_matches('/') == DEFAULT_HUB_URL {
        return registry_origin(crate::registry::DOCKER_HUB_REGISTRY).map(Some);
    }
    Ok(None)
}

/// The client of the run's registry ([`CrawlRun::registry`]), which the cover asks for tag
/// names: only anonymous crawls need it (signed in, Hub does not cap listings). Builds it on the
/// crawl's pacer, so its requests are paced with Hub's.
fn cover_registry(
    options: &CrawlOptions,
    run: &CrawlRun,
    pacer: &Arc<Pacer>,
) -> Result<Option<crate::registry::RegistryClient>, CrawlError> {
    if options.credentials.is_some() {
        return Ok(None);
    }
    let Some(url) = &run.registry else {
        tracing::info!(
            "no --registry for {}: a capped repository is covered through name filters alone",
            run.hub_url
        );
        return Ok(None);
    };
    let config = crate::registry::RegistryConfig::new(registry_url(url)?);
    crate::registry::RegistryClient::new(config, pacer.clone(), &options.net)
        .map(Some)
        .map_err(|e| CrawlError::Usage(format!("--registry: {e}")))
}

/// Closes the job queue when dropped during a panic, so that a panicking worker or writer does
/// not leave the other workers waiting for a job that will never complete.
struct CloseOnPanic(Arc<JobQueue>);

impl Drop for CloseOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.close();
        }
    }
}

/// Test-only hook: with `DIGESTMAP_TEST_PANIC=worker` (or `writer`) in the environment, a worker
/// panics on taking a job (the store writer on committing one), so that tests can show a panic
/// ends the process instead of hanging it. Nothing sets it outside tests.
pub(crate) fn injected_panic(site: &str) {
    if std::env::var_os("DIGESTMAP_TEST_PANIC").is_some_and(|v| v == site) {
        panic!("injected {site} panic (DIGESTMAP_TEST_PANIC, a test-only hook)");
    }
}

/// The Hub origin [`crawl`] will talk to with these options (on resume, the stored run's), as
/// it will decide it; writes nothing. Which credentials apply depends on it.
pub fn planned_hub_url(store: &Store, options: &CrawlOptions) -> Result<String, CrawlError> {
    Ok(prepare_run(store, options)?.run().hub_url.clone())
}

/// What `crawl` is about to do, decided before anything is written.
enum Plan {
    /// Continue the stored unfinished run.
    Resume(CrawlRun),
    /// Start this run, listing these repositories only (all when empty).
    Start(CrawlRun, Vec<RepoName>),
}

impl Plan {
    fn run(&self) -> &CrawlRun {
        match self {
            Self::Resume(run) | Self::Start(run, _) => run,
        }
    }
}

/// Checks the store's state against the options and decides whether to resume or start a run.
/// Writes nothing: a crawl that cannot sign in leaves the store as it was.
fn prepare_run(store: &Store, options: &CrawlOptions) -> Result<Plan, CrawlError> {
    let existing = store.run()?;
    let db = store.path().display().to_string();
    if options.resume {
        let Some(run) = existing.filter(|r| r.state != RunState::Finished) else {
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
        let mut run = run;
        match (&run.registry, &options.registry) {
            (Some(stored), Some(given)) => {
                let given = registry_origin(given)?;
                if *stored != given {
                    return Err(CrawlError::Usage(format!(
                        "--registry {given} differs from the unfinished crawl's {stored}; resume without it, or finish that crawl first"
                    )));
                }
            }
            (Some(_), None) => {}
            // Begun without one (or by a release that did not store it): one given now, or
            // Docker Hub's when crawling Docker Hub, is taken from here on.
            (None, _) => run.registry = run_registry(options, &run.hub_url, None)?,
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
        return Ok(Plan::Resume(run));
    }
    if let Some(run) = existing.as_ref().filter(|r| r.state == RunState::Running) {
        return Err(CrawlError::StoreState(format!(
            "the store {db} holds an unfinished crawl of {} (started {}); continue it with `digestmap crawl --resume --db {db}`",
            run.namespace,
            clock::rfc3339(run.started)
        )));
    }

    // A store keeps crawling what it crawled before, unless told otherwise.
    let hub_url = options
        .hub_url
        .clone()
        .or_else(|| existing.as_ref().map(|r| r.hub_url.clone()))
        .unwrap_or_else(|| DEFAULT_HUB_URL.to_owned());
    let api = HubApi::new(&hub_url).map_err(|e| CrawlError::Usage(e.to_string()))?;
    let namespace = options
        .namespace
        .clone()
        .or_else(|| existing.as_ref().map(|r| r.namespace.clone()))
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let repos = options
        .repos
        .iter()
        .map(|name| RepoName::new(&namespace, name))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CrawlError::Usage(format!("--repo: {e}")))?;
    // A store that holds a finished crawl is refreshed, unless --full asks for everything.
    let mode = if existing.is_some() && !options.full {
        RunMode::Refresh
    } else {
        RunMode::Full
    };
    let registry = run_registry(options, &api.origin(), existing.as_ref())?;
    let run = CrawlRun {
        id: existing.map_or(1, |r| r.id + 1),
        state: RunState::Running,
        mode,
        started: clock::now_unix(),
        finished: None,
        hub_url: api.origin(),
        namespace: namespace.clone(),
        repos: repos.iter().map(|r| r.name.clone()).collect(),
        registry,
    };
    Ok(Plan::Start(run, repos))
}

/// Writes the planned run: a new run with its first jobs, or failed jobs queued again (or,
/// with `skip_failed`, given up).
fn start_run(store: &Store, plan: Plan, skip_failed: bool) -> Result<CrawlRun, CrawlError> {
    match plan {
        Plan::Resume(mut run) => {
            let api = HubApi::new(&run.hub_url).map_err(|e| CrawlError::Usage(e.to_string()))?;
            let (moved, skipped, replanned) = store.write(|w| {
                let (moved, skipped) = if skip_failed {
                    (0, skip_failed_jobs(w, &run)?)
                } else {
                    (w.retry_failed()?, 0)
                };
                // A run that ended incomplete is running again, for its gaps.
                let replanned = if run.state == RunState::Incomplete {
                    run.state = RunState::Running;
                    run.finished = None;
                    replan_gaps(w, &api, &run)?
                } else {
                    0
                };
                // Its state, and a registry given to a run that had none.
                w.set_run(&run)?;
                Ok((moved, skipped, replanned))
            })?;
            if skipped > 0 {
                tracing::warn!(
                    "{skipped} failed job(s) skipped: the result may be incomplete (the summary and `digestmap status` list them)"
                );
            }
            if moved > 0 {
                tracing::info!("{moved} failed job(s) are queued again");
            }
            if replanned > 0 {
                tracing::info!("the crawl ended incomplete; {replanned} gap(s) are planned again");
            }
            Ok(run)
        }
        Plan::Start(run, repos) => {
            let api = HubApi::new(&run.hub_url).map_err(|e| CrawlError::Usage(e.to_string()))?;
            let namespace = run.namespace.clone();
            store.write(|w| {
                w.set_run(&run)?;
                w.set_stats(&RunStats::default())?;
                if repos.is_empty() {
                    w.add_job(&Job::new(JobKind::Repos {
                        url: api.repositories_url(&namespace, false).to_string(),
                        namespace: namespace.clone(),
                        descending: false,
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
    }
}

/// Gives up every failed job of `run` and records them as skipped. A repository whose tag
/// listing was skipped cannot be read to its end in this run: it is done, and incomplete.
fn skip_failed_jobs(w: &mut WriteBatch<'_>, run: &CrawlRun) -> Result<usize, TxError> {
    let failed = w.take_failed()?;
    let now = clock::now_unix();
    for (id, f) in &failed {
        tracing::warn!(
            "skipping failed job #{id} {}: {}",
            f.job.kind.url(),
            f.reason
        );
        if let JobKind::Tags { repo, .. } = &f.job.kind
            && let Some(mut state) = w
                .repo(repo)?
                .filter(|s| s.run == run.id && s.done_at.is_none())
        {
            state.distinct = w
                .repo_tags(repo)?
                .iter()
                .filter(|(_, t)| t.run == run.id)
                .count() as u64;
            state.done_at = Some(now);
            state.complete = Some(false);
            w.put_repo(repo, &state)?;
        }
    }
    let mut gaps = w.gaps(run.id)?;
    let skipped = failed.len();
    gaps.skipped.extend(failed.into_iter().map(|(_, f)| f));
    w.set_gaps(&gaps)?;
    Ok(skipped)
}

/// The skip counters as `reason: n` pairs, for summaries.
pub fn skip_reasons(skips: &Skips) -> Vec<(&'static str, u64)> {
    vec![
        ("attestation manifests", skips.attestations),
        ("null digests", skips.null_digests),
        ("invalid digests", skips.invalid_digests),
        ("invalid tag names", skips.invalid_tags),
        ("invalid repository names", skips.invalid_repos),
        ("malformed tag objects", skips.malformed_tags),
        ("invalid platforms", skips.invalid_platforms),
        ("invalid os versions", skips.invalid_os_versions),
        ("invalid push times", skips.invalid_push_times),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_checked_from_one_to_the_most() {
        for (workers, ok) in [(0, false), (1, true), (4, true), (256, true), (257, false)] {
            assert_eq!(check_workers(workers).is_ok(), ok, "{workers}");
        }
        assert_eq!(
            check_workers(0).unwrap_err(),
            "--workers must be between 1 and 256, got 0"
        );
    }
}

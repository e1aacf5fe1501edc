//! `digestmap crawl --catalog URL`: crawl any OCI registry that lists its repositories
//! (Microsoft's `mcr.microsoft.com`, a local `docker-registry`) into the same store as Docker
//! Hub's namespace, as a source of its own.
//!
//! Facts relied on (OCI distribution spec; the CNCF distribution registry; Microsoft's registry):
//! - `GET /v2/_catalog` lists repository names and `GET /v2/<name>/tags/list` a repository's tag
//!   names, both paged with `n`/`last` and `Link: <…>; rel="next"` (see
//!   [`crate::registry::paging`]); neither gives digests;
//! - `HEAD /v2/<name>/manifests/<tag>` answers the tag's digest (`Docker-Content-Digest`) and
//!   media type without a body; on Docker Hub it spends no pull, and registries without a pull
//!   limit (Microsoft's) do not count it either. The distribution spec lets a registry leave the
//!   header out: then the tag's manifest is fetched by tag in the same job
//!   ([`RegistryClient::resolve_tag`], its digest the hash of its bytes) and learned at once;
//! - a manifest's digest is the sha256 of its bytes, so a digest the store has learned never
//!   needs to be fetched again.
//!
//! Jobs, each a record in the store's `jobs` table in the catalog id range
//! ([`crate::store::CATALOG_JOB_BASE`]), tagged with the source's host so that a run takes only
//! its own registry's jobs (and neither the Hub crawl nor `enrich` ever takes one):
//! catalog page → tag-list page → one manifest HEAD per tag → a manifest GET only for a digest
//! the store has not learned (an index: its platform manifests, with the platforms of its
//! entries, become the tag's platform digests and are fetched in turn) → each platform
//! manifest's config blob. What a manifest or config is, is decided by `enrich`'s own code
//! ([`crate::enrich::learn`], [`crate::enrich::config_record`]). Each job's results, its removal
//! and the jobs it spawns are committed in one transaction, so `kill -9` at any instant loses
//! nothing, and `crawl --catalog URL --resume` asks again at most the jobs that were in flight.
//!
//! A tag whose HEAD gives a digest the store knows (unchanged, or moved to a known one) is
//! stored at once from the store's records: a refresh costs the listings plus one HEAD per tag.
//! Tags of one new digest wait on one GET (the job keeps the list), however many aliases meet it.
//!
//! Every run reads every listing whole (a registry listing has no cap and no cheaper view), so
//! every run marks what the registry no longer has: a tag its repository's complete listing no
//! longer names is marked deleted (no longer current; its pairs stay, as history); a repository
//! a complete catalog no longer lists (within `--repo-prefix`), or whose tag list answers 404, is
//! marked vanished and its tags deleted. A HEAD has no body, so its 404 cannot say why: it is
//! confirmed by a GET of the manifest by tag (one pull, only then), whose error code decides
//! ([`plan::failure`]): `MANIFEST_UNKNOWN` marks the tag deleted, `NAME_UNKNOWN` the repository
//! vanished, anything else (a proxy's 404, a 5xx) is a failure of the job, retried like any; a
//! manifest the GET does give is the tag's after all. A listing that ends
//! early (a `Link` to another host, a `last` that loops, a page that repeats: see
//! [`plan::page_step`]) marks nothing and ends the run incomplete, with the reason; the names of
//! a page whose `Link` is refused are kept (the registry answered them for the page asked).
//!
//! A 429 (Microsoft documents 429s with a backoff expected, and sends no `ratelimit-*` headers)
//! on any request, a manifest GET included, puts the job back for when the pacer's pause ends
//! (`Retry-After`, or the backoff of a bare 429), without counting as an attempt; the pause is
//! stored per registry with every commit ([`crate::store::catalog_pause_key`]) and restored by
//! the next run, so a resumed crawl does not start by hammering a registry that said stop. Only a
//! registry that declares a pull budget (`ratelimit-*` headers, as Docker Hub's) has its
//! manifest GETs held back for the budget's window ([`crate::registry::budget`]): once it is
//! spent (the client refuses, or the registry answers 429), no manifest GET is sent for the rest
//! of the run, as in `enrich`; listings, HEADs and config blobs (no pulls) go on, the manifest
//! jobs stay in the store without an attempt counted, and the run ends unfinished with the time
//! the window frees ([`CatalogReport::budget_frees_at`]; `crawl --catalog URL --resume` then).
//!
//! Names are checked at the edge: repositories by Docker's reference grammar
//! ([`crate::model::RepoName::qualified`]: they are stored host-qualified), tags by Docker's tag
//! grammar, platforms and `os.version`s by the Hub crawl's rules; what breaks them is left out
//! and counted.

pub mod plan;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::clock;
use crate::crawl::{JOB_RETRY_MAX, Progress};
use crate::hub::TagObservation;
use crate::model::{Digest, ObjectKind, RepoName, validate_tag};
use crate::net::{NetConfig, Pacer};
use crate::registry::{
    FetchedConfig, FetchedManifest, ListPage, Manifest, RegistryClient, RegistryConfig,
    RegistryError, TagTarget,
};
use crate::store::{
    CatalogJob, CatalogRepo, CatalogRun, CatalogStats, CatalogTask, FailedCatalogJob, JobId,
    Listing, ManifestFact, ManifestRecord, RunState, Store, StoreError, TxError, WriteBatch,
};
use plan::{Change, Child, Failure, PageStep, Start, StartError};

/// Names asked for per listing page (`n`); registries may answer fewer, or ignore it.
pub const DEFAULT_PAGE_SIZE: u32 = 1000;

/// What to crawl and how.
#[derive(Debug, Clone)]
pub struct CatalogOptions {
    /// The registry origin (checked by [`plan::registry_origin`]).
    pub registry: Url,
    /// `--repo`: only these repositories (paths on the registry); the catalog is not read.
    pub repos: Vec<String>,
    /// `--repo-prefix`: only the catalog's repositories starting with this.
    pub prefix: Option<String>,
    /// Requests in flight.
    pub workers: usize,
    /// Most request starts per second.
    pub rps: f64,
    /// Continue the source's unfinished run.
    pub resume: bool,
    /// With `resume`: give up the failed jobs instead of trying them again; the listings they
    /// belonged to are gaps ([`plan::given_up`]), so the run can finish, incomplete.
    pub skip_failed: bool,
    /// `n` asked for on listing pages.
    pub page_size: u32,
    /// Timeouts and retries.
    pub net: NetConfig,
    /// Delay before a failed job's second attempt; doubled for each further one.
    pub job_retry_base: Duration,
}

impl CatalogOptions {
    /// Options for `registry` with the crawl's defaults.
    pub fn new(registry: Url) -> Self {
        Self {
            registry,
            repos: Vec::new(),
            prefix: None,
            workers: crate::crawl::DEFAULT_WORKERS,
            rps: crate::crawl::DEFAULT_RPS,
            resume: false,
            skip_failed: false,
            page_size: DEFAULT_PAGE_SIZE,
            net: NetConfig::default(),
            job_retry_base: crate::crawl::JOB_RETRY_BASE,
        }
    }

    /// The source's host.
    pub fn host(&self) -> String {
        plan::source_host(&self.registry)
    }

    /// Checks what needs no store, so that bad flags fail before a store is created.
    pub fn validate(&self) -> Result<(), CatalogError> {
        plan::registry_origin(self.registry.as_str()).map_err(CatalogError::Usage)?;
        crate::crawl::check_workers(self.workers).map_err(CatalogError::Usage)?;
        Pacer::new(self.rps).map_err(|e| CatalogError::Usage(format!("--rps: {e}")))?;
        if self.page_size == 0 {
            return Err(CatalogError::Usage("--page-size must be at least 1".into()));
        }
        let host = self.host();
        for path in &self.repos {
            RepoName::qualified(&host, path)
                .map_err(|e| CatalogError::Usage(format!("--repo: {e}")))?;
        }
        if self.prefix.as_deref().is_some_and(str::is_empty) {
            return Err(CatalogError::Usage(
                "--repo-prefix must not be empty".into(),
            ));
        }
        if self.prefix.is_some() && !self.repos.is_empty() {
            return Err(CatalogError::Usage(
                "--repo-prefix narrows the catalog, which --repo does not read; give one of them"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Why a catalog crawl could not run.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Bad options.
    #[error("{0}")]
    Usage(String),
    /// The store is in a state that does not allow this crawl.
    #[error("{0}")]
    StoreState(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a catalog crawl ended.
#[derive(Debug)]
pub struct CatalogReport {
    /// The run as stored at the end.
    pub run: CatalogRun,
    /// Its counters (every process that worked on it).
    pub stats: CatalogStats,
    /// The repositories this run listed, by host-qualified name.
    pub repos: Vec<(String, CatalogRepo)>,
    /// Jobs left in the store (Ctrl-C).
    pub jobs_left: u64,
    /// Failed jobs of the source, with reasons.
    pub failed: Vec<(JobId, FailedCatalogJob)>,
    /// Listings that ended early, with why: the run is then incomplete.
    pub gaps: Vec<String>,
    /// Time this process spent.
    pub elapsed: Duration,
    /// Whether Ctrl-C stopped it.
    pub interrupted: bool,
    /// When the registry's declared pull budget, spent, frees (unix seconds): the run stopped
    /// sending manifest GETs and left their jobs in the store for `--resume`.
    pub budget_frees_at: Option<u64>,
    /// The registry that answered nothing but 429 for longer than the bound, which stopped it.
    pub refused: Option<crate::net::Refusal>,
}

/// The listings of `run` that ended before their last page, each with why.
pub fn gaps(run: &CatalogRun, repos: &[(String, CatalogRepo)]) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(why) = &run.catalog.error {
        out.push(format!("the catalog of {}: {why}", run.host));
    }
    for (name, state) in repos.iter().filter(|(_, s)| s.run == run.id) {
        if let Some(why) = &state.listing.error {
            out.push(format!("{name}: {why}"));
        }
    }
    out
}

/// What a job's request gave, with what its task said.
enum Got {
    Catalog(Url, ListPage),
    Tags(String, Url, ListPage),
    Head(String, String, TagTarget),
    Manifest(Box<FetchedManifest>),
    Config(Digest, FetchedConfig),
}

/// Sends a job's request.
async fn ask(client: &RegistryClient, task: &CatalogTask) -> Result<Got, RegistryError> {
    Ok(match task {
        CatalogTask::Catalog { url } => {
            let page = client.stored_page(None, url)?;
            let listed = client.catalog_page(&page).await?;
            Got::Catalog(page.url().clone(), listed)
        }
        CatalogTask::Tags { repo, url } => {
            let page = client.stored_page(Some(repo), url)?;
            let listed = client.tags_page(repo, &page).await?;
            Got::Tags(repo.clone(), page.url().clone(), listed)
        }
        CatalogTask::Head { repo, tag } => {
            let target = match client.resolve_tag(repo, tag).await {
                // The GET's answer says why (`plan::failure`); a manifest it gives is the tag's.
                Err(err) if plan::confirm_head(&err) => {
                    TagTarget::Fetched(Box::new(client.manifest_by_tag(repo, tag).await?))
                }
                other => other?,
            };
            Got::Head(repo.clone(), tag.clone(), target)
        }
        CatalogTask::Manifest { repo, digest, .. } => {
            Got::Manifest(Box::new(client.manifest(repo, digest).await?))
        }
        CatalogTask::Config {
            repo,
            digest,
            manifest,
        } => Got::Config(*manifest, client.config(repo, digest).await?),
    })
}

/// Runs a catalog crawl on `store` until every job is done or failed, or `cancel` fires.
pub async fn crawl(
    store: Arc<Store>,
    options: CatalogOptions,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> Result<CatalogReport, CatalogError> {
    let started = Instant::now();
    options.validate()?;
    let host = options.host();
    // Ctrl-C (`interrupt`) or the pacer giving up on a registry that refuses everything stops
    // the run alike; only the first counts as an interruption.
    let interrupt = cancel;
    let cancel = interrupt.child_token();
    let pacer = Arc::new(
        Pacer::new(options.rps)
            .map_err(|e| CatalogError::Usage(format!("--rps: {e}")))?
            .with_max_pause(options.net.max_pause)
            .with_refusal_bound(options.net.max_refusal, cancel.clone()),
    );
    // A pause the registry asked of an earlier run (`Retry-After`) still holds.
    pacer.restore_pause(store.read(|r| r.catalog_pause(&host))?, &host);
    let mut config = RegistryConfig::new(options.registry.clone());
    config.page_size = Some(options.page_size);
    let client = RegistryClient::new(config, pacer.clone(), &options.net)
        .map_err(|e| CatalogError::Usage(format!("--catalog: {e}")))?;
    let client = Arc::new(client);

    let db = store.path().display().to_string();
    let existing = store.read(|r| r.catalog_run(&host))?;
    let start = plan::prepare(
        existing.as_ref(),
        &options.registry,
        &options.repos,
        options.prefix.as_deref(),
        options.resume,
        clock::now_unix(),
        &db,
    )
    .map_err(|e| match e {
        StartError::Usage(m) => CatalogError::Usage(m),
        StartError::State(m) => CatalogError::StoreState(m),
    })?;
    let run = store.write(|w| begin(w, &client, start, options.skip_failed))?;

    let mut crawl = Crawl {
        host: host.clone(),
        run,
        client: client.clone(),
        pacer,
        ready: BTreeMap::new(),
        pending: HashMap::new(),
        base: options.job_retry_base,
        progress: progress.clone(),
        requests: 0,
        budget_frees_at: None,
    };
    let (jobs, repos) = store.read(|r| Ok((r.catalog_jobs(&host)?, r.catalog_repos(&host)?)))?;
    let this_run = repos.iter().filter(|(_, s)| s.run == crawl.run.id);
    progress.set_repos(
        this_run.clone().count() as u64,
        this_run.filter(|(_, s)| s.done_at.is_some()).count() as u64,
    );
    for (id, job) in jobs {
        crawl.queue(id, job);
    }

    let mut tasks: JoinSet<(JobId, CatalogJob, Result<Got, RegistryError>)> = JoinSet::new();
    loop {
        while tasks.len() < options.workers && !cancel.is_cancelled() {
            let Some((id, job)) = crawl.take_due(clock::now_unix_millis()) else {
                break;
            };
            let client = client.clone();
            tasks.spawn(async move {
                let got = ask(&client, &job.task).await;
                (id, job, got)
            });
        }
        if tasks.is_empty() {
            let due = crawl.ready.keys().next().map(|(at, _)| *at);
            if crate::jobs::idle_until(due, &cancel).await {
                continue;
            }
            break;
        }
        let Some(joined) = crate::jobs::next_finished(&mut tasks, &cancel).await else {
            break;
        };
        let mut done = Vec::new();
        for joined in
            std::iter::once(joined).chain(std::iter::from_fn(|| tasks.try_join_next().map(Some)))
        {
            match joined {
                Some(Ok(answer)) => done.push(answer),
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                _ => {}
            }
        }
        if done.is_empty() {
            continue;
        }
        // Every answer at hand is committed in one transaction: fewer syncs, same atomicity.
        let store = store.clone();
        tokio::task::block_in_place(|| store.write(|w| crawl.commit(w, done)))?;
        progress.requests.store(
            client.net_stats().requests.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }
    drop(tasks);
    store.write(|w| crawl.count_requests(w))?;

    let interrupted = cancel.is_cancelled();
    let refused = crawl.pacer.refusal();
    let (jobs_left, failed, repos, stats) = store.read(|r| {
        Ok((
            r.catalog_jobs(&host)?.len() as u64,
            r.catalog_failed(&host)?,
            r.catalog_repos(&host)?,
            r.catalog_stats(&host)?,
        ))
    })?;
    let mut run = crawl.run.clone();
    let repos: Vec<(String, CatalogRepo)> =
        repos.into_iter().filter(|(_, s)| s.run == run.id).collect();
    let gaps = gaps(&run, &repos);
    if let Some(state) = RunState::at_end(interrupted, jobs_left, failed.len(), gaps.len()) {
        run.state = state;
        run.finished = Some(clock::now_unix());
        store.write(|w| w.set_catalog_run(&run))?;
    }
    Ok(CatalogReport {
        run,
        stats,
        repos,
        jobs_left,
        failed,
        gaps,
        elapsed: started.elapsed(),
        interrupted: interrupt.is_cancelled(),
        budget_frees_at: crawl.budget_frees_at,
        refused,
    })
}

/// Writes the run that starts or resumes, with its first jobs: the catalog's first page (or the
/// `--repo` listings); on resume, failed jobs queued again (or, with `skip_failed`, given up,
/// their listings left as gaps), and an incomplete run's unfinished listings read again from
/// their first page.
fn begin(
    w: &mut WriteBatch<'_>,
    client: &RegistryClient,
    start: Start,
    skip_failed: bool,
) -> Result<CatalogRun, TxError> {
    let now = clock::now_unix();
    match start {
        Start::New(run) => {
            w.set_catalog_stats(&run.host, &CatalogStats::default())?;
            if run.repos.is_empty() {
                add(w, &run.host, catalog_first(client))?;
            } else {
                for path in &run.repos {
                    let Ok(repo) = RepoName::qualified(&run.host, path) else {
                        continue;
                    };
                    w.put_catalog_repo(&repo, &CatalogRepo::new(run.id, now))?;
                    add(w, &run.host, tags_first(client, path))?;
                }
            }
            w.set_catalog_run(&run)?;
            Ok(run)
        }
        Start::Resume(mut run) => {
            if skip_failed {
                let skipped = skip_failed_jobs(w, &mut run, now)?;
                if skipped > 0 {
                    tracing::warn!(
                        "{skipped} failed job(s) of {} skipped: the result may be incomplete (the summary and `digestmap status` list the listings they leave incomplete)",
                        run.host
                    );
                }
            }
            let moved = w.retry_failed_catalog(&run.host)?;
            if moved > 0 {
                tracing::info!("{moved} failed job(s) of {} are queued again", run.host);
            }
            if run.state == RunState::Incomplete {
                run.state = RunState::Running;
                run.finished = None;
                if run.catalog.error.is_some() {
                    run.catalog = Listing::default();
                    add(w, &run.host, catalog_first(client))?;
                }
                for (key, mut state) in w.catalog_repos(&run.host)? {
                    if state.run != run.id || state.listing.error.is_none() {
                        continue;
                    }
                    let path = key[run.host.len() + 1..].to_owned();
                    let Ok(repo) = RepoName::qualified(&run.host, &path) else {
                        continue;
                    };
                    state.listing = Listing::default();
                    state.done_at = None;
                    w.put_catalog_repo(&repo, &state)?;
                    add(w, &run.host, tags_first(client, &path))?;
                }
            }
            w.set_catalog_run(&run)?;
            Ok(run)
        }
    }
}

/// Gives up every failed job of the run's source: each leaves the listing it belonged to
/// incomplete, with why ([`plan::given_up`]); a listing already incomplete keeps its first
/// reason. Returns how many were given up.
fn skip_failed_jobs(
    w: &mut WriteBatch<'_>,
    run: &mut CatalogRun,
    now: u64,
) -> Result<usize, TxError> {
    let failed = w.take_failed_catalog(&run.host)?;
    for (id, f) in &failed {
        let reason = f.job.last_error.as_deref().unwrap_or(&f.reason);
        let (gap, why) = plan::given_up(&f.job.task, reason);
        tracing::warn!(
            "skipping failed job #{id} {}: {why}",
            crate::text::printable(&f.job.describe())
        );
        match gap {
            plan::GapOf::Catalog => {
                run.catalog.error.get_or_insert(why);
            }
            plan::GapOf::Repos(paths) => {
                for path in paths {
                    let Ok(repo) = RepoName::qualified(&run.host, &path) else {
                        continue;
                    };
                    let mut state = w
                        .catalog_repo(&repo)?
                        .unwrap_or_else(|| CatalogRepo::new(run.id, now));
                    state.run = run.id;
                    state.listing.error.get_or_insert_with(|| why.clone());
                    state.done_at.get_or_insert(now);
                    w.put_catalog_repo(&repo, &state)?;
                }
            }
        }
    }
    Ok(failed.len())
}

fn catalog_first(client: &RegistryClient) -> CatalogTask {
    CatalogTask::Catalog {
        url: client.catalog_first_page().url().to_string(),
    }
}

fn tags_first(client: &RegistryClient, path: &str) -> CatalogTask {
    CatalogTask::Tags {
        repo: path.to_owned(),
        url: client.tags_first_page(path).url().to_string(),
    }
}

fn add(w: &mut WriteBatch<'_>, host: &str, task: CatalogTask) -> Result<JobId, TxError> {
    w.add_catalog_job(&CatalogJob::new(host, task))
}

/// The run's queue and what it decides between commits.
struct Crawl {
    host: String,
    run: CatalogRun,
    client: Arc<RegistryClient>,
    /// The client's pacer: its pause (a 429's `Retry-After`) is stored with every commit.
    pacer: Arc<Pacer>,
    /// Jobs not in flight, by (not before, id).
    ready: BTreeMap<(u64, JobId), CatalogJob>,
    /// Manifest and config jobs by digest, so that a digest is fetched once however many tags
    /// or manifests lead to it. The job records in the store are the truth (a HEAD adds its tag
    /// to the stored job); this only finds them.
    pending: HashMap<Digest, JobId>,
    base: Duration,
    progress: Arc<Progress>,
    /// Requests of this process already added to the stored counters.
    requests: u64,
    /// Set once the registry's declared pull budget is spent: when it frees (unix seconds).
    /// From then on no manifest job is sent: they stay in the store (not in `ready`) for
    /// `--resume`.
    budget_frees_at: Option<u64>,
}

impl Crawl {
    fn queue(&mut self, id: JobId, job: CatalogJob) {
        match &job.task {
            CatalogTask::Manifest { digest, .. } | CatalogTask::Config { digest, .. } => {
                self.pending.entry(*digest).or_insert(id);
            }
            _ => {}
        }
        if self.budget_frees_at.is_some() && matches!(job.task, CatalogTask::Manifest { .. }) {
            return;
        }
        self.ready.insert((job.not_before_ms, id), job);
    }

    /// The registry's pull budget is spent until `frees_at`: no manifest job is sent any more
    /// (HEADs, listings and config blobs spend no pull and go on).
    fn stop_manifests(&mut self, frees_at: u64) {
        if self.budget_frees_at.is_none() {
            tracing::warn!(
                "the pull budget of {} is spent: no manifest request until {}",
                self.host,
                clock::rfc3339(frees_at)
            );
        }
        self.budget_frees_at = Some(frees_at);
        let manifests: Vec<(u64, JobId)> = self
            .ready
            .iter()
            .filter(|(_, job)| matches!(job.task, CatalogTask::Manifest { .. }))
            .map(|(key, _)| *key)
            .collect();
        for key in manifests {
            self.ready.remove(&key);
        }
    }

    fn take_due(&mut self, now_ms: u64) -> Option<(JobId, CatalogJob)> {
        let key = *self.ready.keys().next().filter(|(at, _)| *at <= now_ms)?;
        self.ready.remove(&key).map(|job| (key.1, job))
    }

    fn spawn(&mut self, w: &mut WriteBatch<'_>, task: CatalogTask) -> Result<(), TxError> {
        let job = CatalogJob::new(&self.host, task);
        let id = w.add_catalog_job(&job)?;
        self.queue(id, job);
        Ok(())
    }

    fn repo(&self, path: &str) -> Option<RepoName> {
        RepoName::qualified(&self.host, path).ok()
    }

    /// Adds the requests sent since the last commit to the stored counters, and stores the
    /// pause in force.
    fn count_requests(&mut self, w: &mut WriteBatch<'_>) -> Result<(), TxError> {
        w.set_catalog_pause(&self.host, self.pacer.paused_until_unix())?;
        let now = self.client.net_stats().requests.load(Ordering::Relaxed);
        let mut stats = w.catalog_stats(&self.host)?;
        stats.requests += now.saturating_sub(self.requests);
        self.requests = now;
        w.set_catalog_stats(&self.host, &stats)
    }

    /// Commits the answers of finished jobs: each one's records, its removal (or retry, or
    /// failure) and the jobs it spawns.
    fn commit(
        &mut self,
        w: &mut WriteBatch<'_>,
        done: Vec<(JobId, CatalogJob, Result<Got, RegistryError>)>,
    ) -> Result<(), TxError> {
        self.count_requests(w)?;
        let mut stats = w.catalog_stats(&self.host)?;
        let now = clock::now_unix();
        for (id, job, got) in done {
            match got {
                Ok(got) => {
                    self.answered(w, &mut stats, id, got, now)?;
                    w.remove_job(id)?;
                }
                Err(err) => self.failed(w, &mut stats, id, job, &err, now)?,
            }
        }
        w.set_catalog_run(&self.run)?;
        w.set_catalog_stats(&self.host, &stats)
    }

    fn answered(
        &mut self,
        w: &mut WriteBatch<'_>,
        stats: &mut CatalogStats,
        id: JobId,
        got: Got,
        now: u64,
    ) -> Result<(), TxError> {
        match got {
            Got::Catalog(url, page) => self.catalog_page(w, stats, &url, &page, now),
            Got::Tags(path, url, page) => self.tags_page(w, stats, &path, &url, &page, now),
            Got::Head(path, tag, target) => self.head(w, stats, &path, &tag, target, now),
            Got::Manifest(fetched) => self.manifest(w, stats, id, &fetched, now),
            Got::Config(manifest, fetched) => self.config(w, stats, id, manifest, fetched, now),
        }
    }

    fn catalog_page(
        &mut self,
        w: &mut WriteBatch<'_>,
        stats: &mut CatalogStats,
        url: &Url,
        page: &ListPage,
        now: u64,
    ) -> Result<(), TxError> {
        stats.catalog_pages += 1;
        self.progress.pages.fetch_add(1, Ordering::Relaxed);
        let step = plan::page_step(&mut self.run.catalog, url, &page.names, next_of(url, page));
        if let PageStep::Repeat(why) = step {
            tracing::warn!(
                "the catalog of {}: {}",
                self.host,
                crate::text::printable(&why)
            );
            self.run.catalog.error = Some(why);
            return Ok(());
        }
        for name in &page.names {
            let Some(repo) = self.repo(name) else {
                stats.invalid_repos += 1;
                tracing::warn!(
                    "the catalog of {} lists {:?}, not a repository name by Docker's grammar; skipped",
                    self.host,
                    crate::text::printable(name)
                );
                continue;
            };
            if !plan::in_prefix(name, self.run.prefix.as_deref()) {
                continue;
            }
            if w.catalog_repo(&repo)?.is_some_and(|s| s.run == self.run.id) {
                continue;
            }
            w.put_catalog_repo(&repo, &CatalogRepo::new(self.run.id, now))?;
            self.progress.repos_total.fetch_add(1, Ordering::Relaxed);
            self.spawn(w, tags_first(&self.client, name))?;
        }
        match step {
            PageStep::Next(next) => self.spawn(
                w,
                CatalogTask::Catalog {
                    url: next.to_string(),
                },
            ),
            PageStep::Done => {
                self.run.catalog.done = true;
                self.vanish_unlisted(w, stats, now)
            }
            PageStep::End(why) | PageStep::Repeat(why) => {
                tracing::warn!(
                    "the catalog of {}: {}",
                    self.host,
                    crate::text::printable(&why)
                );
                self.run.catalog.error = Some(why);
                Ok(())
            }
        }
    }

    /// The whole catalog is read: a repository of the source (within the prefix) it no longer
    /// lists has vanished, and its tags are no longer current.
    fn vanish_unlisted(
        &mut self,
        w: &mut WriteBatch<'_>,
        stats: &mut CatalogStats,
        now: u64,
    ) -> Result<(), TxError> {
        for (key, mut state) in w.catalog_repos(&self.host)? {
            if state.run == self.run.id || state.vanished_at.is_some() {
                continue;
            }
            let path = &key[self.host.len() + 1..];
            let Some(repo) = self.repo(path) else {
                continue;
            };
            if !plan::in_prefix(path, self.run.prefix.as_deref()) {
                continue;
            }
            tracing::info!("{repo} is no longer in the catalog; marked vanished");
            state.vanished_at = Some(now);
            w.put_catalog_repo(&repo, &state)?;
            stats.deleted_tags += retire(w, &repo, &HashSet::new(), now)?;
        }
        Ok(())
    }

    fn tags_page(
        &mut self,
        w: &mut WriteBatch<'_>,
        stats: &mut CatalogStats,
        path: &str,
        url: &Url,
        page: &ListPage,
        now: u64,
    ) -> Result<(), TxError> {
        stats.tag_pages += 1;
        self.progress.pages.fetch_add(1, Ordering::Relaxed);
        let Some(repo) = self.repo(path) else {
            return Ok(());
        };
        let mut state = w
            .catalog_repo(&repo)?
            .filter(|s| s.run == self.run.id)
            .unwrap_or_else(|| CatalogRepo::new(self.run.id, now));
        let step = plan::page_step(&mut state.listing, url, &page.names, next_of(url, page));
        if !matches!(step, PageStep::Repeat(_)) {
            let mut known: HashSet<String> = state.names.iter().cloned().collect();
            for tag in &page.names {
                if validate_tag(tag).is_err() {
                    stats.invalid_tags += 1;
                    tracing::warn!(
                        "{repo} lists the tag {:?}, not a tag name by Docker's grammar; skipped",
                        crate::text::printable(tag)
                    );
                    continue;
                }
                if known.insert(tag.clone()) {
                    state.names.push(tag.clone());
                    self.spawn(
                        w,
                        CatalogTask::Head {
                            repo: path.to_owned(),
                            tag: tag.clone(),
                        },
                    )?;
                }
            }
        }
        match step {
            PageStep::Next(next) => self.spawn(
                w,
                CatalogTask::Tags {
                    repo: path.to_owned(),
                    url: next.to_string(),
                },
            )?,
            PageStep::Done => {
                state.listing.done = true;
                state.done_at = Some(now);
                self.progress.repos_done.fetch_add(1, Ordering::Relaxed);
                let listed: HashSet<&str> = state.names.iter().map(String::as_str).collect();
                stats.deleted_tags += retire(w, &repo, &listed, now)?;
            }
            PageStep::End(why) | PageStep::Repeat(why) => {
                tracing::warn!("{repo}: {}", crate::text::printable(&why));
                state.listing.error = Some(why);
                state.done_at = Some(now);
                self.progress.repos_done.fetch_add(1, Ordering::Relaxed);
            }
        }
        w.put_catalog_repo(&repo, &state)
    }

    fn head(
        &mut self,
        w: &mut WriteBatch<'_>,
        stats: &mut CatalogStats,
        path: &str,
        tag: &str,
        target: TagTarget,
        now: u64,
    ) -> Result<(), TxError> {
        stats.heads += 1;
        let Some(repo) = self.repo(path) else {
            return Ok(());
        };
        let (digest, kind, fetched) = match target {
            TagTarget::Head(head) => (head.digest, plan::kind_of(head.media_type.as_deref()), None),
            // The HEAD named no digest, so the manifest came whole by tag.
            TagTarget::Fetched(fetched) => (fetched.digest, ObjectKind::Manifest, Some(fetched)),
        };
        if let Some(obs) = known_sighting(w, tag, &digest)? {
            self.record(w, stats, &repo, &obs, now)?;
            // A digest another source learned may still lack what this one needs.
            return self.complete(w, path, &digest);
        }
        let waiting = (path.to_owned(), tag.to_owned());
        if let Some(&id) = self.pending.get(&digest)
            && let Some(mut job) = w.catalog_job(id)?
            && let CatalogTask::Manifest { waiting: tags, .. } = &mut job.task
        {
            if !tags.contains(&waiting) {
                tags.push(waiting);
            }
            return w.put_catalog_job(id, &job);
        }
        if let Some(fetched) = fetched {
            stats.manifests += 1;
            return self.learned(w, stats, path, &fetched, &[waiting], now);
        }
        self.spawn(
            w,
            CatalogTask::Manifest {
                repo: path.to_owned(),
                digest,
                kind,
                waiting: vec![waiting],
            },
        )
    }

    /// Stores a tag's sighting and counts how it changed.
    fn record(
        &mut self,
        w: &mut WriteBatch<'_>,
        stats: &mut CatalogStats,
        repo: &RepoName,
        obs: &TagObservation,
        now: u64,
    ) -> Result<(), TxError> {
        let old = w.tag_state(repo, &obs.tag)?;
        if let Some(digest) = obs.digest {
            match plan::change(old.as_ref(), &digest) {
                Change::New => stats.new_tags += 1,
                Change::Moved => stats.moved_tags += 1,
                Change::Unchanged => stats.unchanged_tags += 1,
            }
        }
        self.progress.tags.fetch_add(1, Ordering::Relaxed);
        w.record_tag(repo, obs, now, self.run.id)
    }

    /// Queues what a learned manifest still needs: an image's config, an index's platform
    /// manifests.
    fn complete(
        &mut self,
        w: &mut WriteBatch<'_>,
        path: &str,
        digest: &Digest,
    ) -> Result<(), TxError> {
        match w.manifest(digest)?.map(|m| m.fact) {
            Some(ManifestFact::Image { config, .. }) => self.need_config(w, path, config, *digest),
            Some(ManifestFact::Index { manifests }) => {
                for child in manifests {
                    self.need_manifest(w, path, child)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn need_config(
        &mut self,
        w: &mut WriteBatch<'_>,
        path: &str,
        config: Digest,
        manifest: Digest,
    ) -> Result<(), TxError> {
        if self.pending.contains_key(&config) {
            return Ok(());
        }
        if let Some(known) = w.config(&config)? {
            return w.learn_platform(&manifest, known.platform, known.os_version);
        }
        self.spawn(
            w,
            CatalogTask::Config {
                repo: path.to_owned(),
                digest: config,
                manifest,
            },
        )
    }

    fn need_manifest(
        &mut self,
        w: &mut WriteBatch<'_>,
        path: &str,
        digest: Digest,
    ) -> Result<(), TxError> {
        if self.pending.contains_key(&digest) {
            return Ok(());
        }
        match w.manifest(&digest)?.map(|m| m.fact) {
            Some(ManifestFact::Image { config, .. }) => self.need_config(w, path, config, digest),
            Some(ManifestFact::Index { .. } | ManifestFact::Legacy { .. }) => Ok(()),
            None | Some(ManifestFact::Gone { .. }) => self.spawn(
                w,
                CatalogTask::Manifest {
                    repo: path.to_owned(),
                    digest,
                    kind: ObjectKind::Manifest,
                    waiting: Vec::new(),
                },
            ),
        }
    }

    fn manifest(
        &mut self,
        w: &mut WriteBatch<'_>,
        stats: &mut CatalogStats,
        id: JobId,
        fetched: &FetchedManifest,
        now: u64,
    ) -> Result<(), TxError> {
        stats.manifests += 1;
        // The stored job holds every tag that met this digest, those added while it was out.
        let Some(job) = w.catalog_job(id)? else {
            return Ok(());
        };
        let CatalogTask::Manifest {
            repo: path,
            digest,
            waiting,
            ..
        } = job.task
        else {
            return Ok(());
        };
        if self.pending.get(&digest) == Some(&id) {
            self.pending.remove(&digest);
        }
        self.learned(w, stats, &path, fetched, &waiting, now)
    }

    /// Stores a fetched manifest, the sightings of the tags `waiting` on it, and queues what it
    /// leads to (its config, an index's platform manifests), fetched through `path`.
    fn learned(
        &mut self,
        w: &mut WriteBatch<'_>,
        stats: &mut CatalogStats,
        path: &str,
        fetched: &FetchedManifest,
        waiting: &[(String, String)],
        now: u64,
    ) -> Result<(), TxError> {
        let digest = fetched.digest;
        let learned = crate::enrich::learn(&fetched.manifest);
        let (kind, children) = match &fetched.manifest {
            Manifest::Index(index) => {
                let children = index
                    .images()
                    .map(|entry| {
                        let (platform, os_version, invalid) = match &entry.platform {
                            Some(p) => crate::enrich::checked_platform(p),
                            None => (None, None, false),
                        };
                        stats.invalid_platforms += u64::from(invalid);
                        Child {
                            digest: entry.digest,
                            platform,
                            os_version,
                        }
                    })
                    .collect();
                (ObjectKind::Index, children)
            }
            _ => (ObjectKind::Manifest, Vec::new()),
        };
        w.put_manifest(
            &digest,
            &ManifestRecord {
                fact: learned.fact,
                media_type: learned.media_type,
                via: None,
                learned_at: now,
            },
        )?;
        for (tags_path, tag) in waiting {
            if let Some(repo) = self.repo(tags_path) {
                let obs = plan::observation(tag, digest, kind, &children);
                self.record(w, stats, &repo, &obs, now)?;
            }
        }
        if let Some(config) = learned.config {
            self.need_config(w, path, config, digest)?;
        }
        for child in learned.children {
            self.need_manifest(w, path, child)?;
        }
        Ok(())
    }

    fn config(
        &mut self,
        w: &mut WriteBatch<'_>,
        stats: &mut CatalogStats,
        id: JobId,
        manifest: Digest,
        fetched: FetchedConfig,
        now: u64,
    ) -> Result<(), TxError> {
        stats.configs += 1;
        if self.pending.get(&fetched.digest) == Some(&id) {
            self.pending.remove(&fetched.digest);
        }
        let digest = fetched.digest;
        let (record, invalid) = crate::enrich::config_record(fetched.config, now);
        stats.invalid_platforms += u64::from(invalid);
        w.put_config(&digest, &record)?;
        w.learn_platform(&manifest, record.platform, record.os_version)
    }

    /// A failed request: retried, failed, or an answer (a listing that ends early, something
    /// the registry does not have).
    fn failed(
        &mut self,
        w: &mut WriteBatch<'_>,
        stats: &mut CatalogStats,
        id: JobId,
        job: CatalogJob,
        err: &RegistryError,
        now: u64,
    ) -> Result<(), TxError> {
        let reason = err.to_string();
        let attempts = job.attempts + 1;
        match plan::failure(&job.task, err, attempts) {
            Failure::Retry => {
                stats.job_retries += 1;
                let delay = self
                    .base
                    .saturating_mul(1 << (attempts - 1).min(10))
                    .min(JOB_RETRY_MAX);
                let not_before_ms =
                    clock::now_unix_millis() + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                self.requeue(w, id, CatalogJob { attempts, ..job }, not_before_ms, reason)
            }
            Failure::Pause => {
                let not_before_ms = self
                    .pacer
                    .paused_until_unix()
                    .map_or(0, |t| t.saturating_mul(1000));
                self.requeue(w, id, job, not_before_ms, reason)
            }
            Failure::Fail => {
                tracing::warn!(
                    "{} failed: {}",
                    crate::text::printable(&job.describe()),
                    crate::text::printable(&reason)
                );
                self.forget(id, &job.task);
                self.progress.failed.fetch_add(1, Ordering::Relaxed);
                let task = w.catalog_job(id)?.map_or(job.task, |stored| stored.task);
                let failed = FailedCatalogJob {
                    job: CatalogJob {
                        attempts,
                        last_error: Some(reason.clone()),
                        task,
                        ..job
                    },
                    reason,
                    failed_at: now,
                };
                w.fail_catalog_job(id, &failed)
            }
            Failure::EndListing => {
                self.end_listing(w, &job.task, reason, now)?;
                w.remove_job(id).map(|_| ())
            }
            Failure::NotFound => {
                self.not_found(w, stats, id, &job.task, reason, now)?;
                w.remove_job(id).map(|_| ())
            }
            Failure::Vanished => {
                if let CatalogTask::Head { repo: path, .. } = &job.task {
                    self.vanish(w, stats, path, now)?;
                }
                w.remove_job(id).map(|_| ())
            }
            Failure::Budget => {
                let known = self.client.pull_budget().map(|b| clock::unix(b.frees_at));
                let frees_at = plan::budget_frees_at(err, known, now).unwrap_or(now);
                self.stop_manifests(frees_at);
                // Not an attempt: the job stays in the store, as it was, for `--resume`.
                let job = CatalogJob {
                    last_error: Some(reason),
                    task: w.catalog_job(id)?.map_or(job.task, |stored| stored.task),
                    ..job
                };
                w.put_catalog_job(id, &job)
            }
        }
    }

    /// A repository the registry says it does not have (`NAME_UNKNOWN`): marked vanished, its
    /// tags deleted.
    fn vanish(
        &mut self,
        w: &mut WriteBatch<'_>,
        stats: &mut CatalogStats,
        path: &str,
        now: u64,
    ) -> Result<(), TxError> {
        let Some(repo) = self.repo(path) else {
            return Ok(());
        };
        let mut state = w
            .catalog_repo(&repo)?
            .unwrap_or_else(|| CatalogRepo::new(self.run.id, now));
        if state.vanished_at.is_none() {
            tracing::info!(
                "{repo}: the registry no longer knows it (NAME_UNKNOWN); marked vanished"
            );
        }
        state.vanished_at = Some(now);
        if state.done_at.is_none() {
            state.done_at = Some(now);
            self.progress.repos_done.fetch_add(1, Ordering::Relaxed);
        }
        state.listing.done = true;
        w.put_catalog_repo(&repo, &state)?;
        stats.deleted_tags += retire(w, &repo, &HashSet::new(), now)?;
        Ok(())
    }

    /// Puts a job back in the store and the queue, due at `not_before_ms`.
    fn requeue(
        &mut self,
        w: &mut WriteBatch<'_>,
        id: JobId,
        job: CatalogJob,
        not_before_ms: u64,
        reason: String,
    ) -> Result<(), TxError> {
        let job = CatalogJob {
            not_before_ms,
            last_error: Some(reason),
            // A HEAD may have added tags to the stored manifest job meanwhile.
            task: w.catalog_job(id)?.map_or(job.task, |stored| stored.task),
            ..job
        };
        w.put_catalog_job(id, &job)?;
        self.ready.insert((job.not_before_ms, id), job);
        Ok(())
    }

    fn forget(&mut self, id: JobId, task: &CatalogTask) {
        if let CatalogTask::Manifest { digest, .. } | CatalogTask::Config { digest, .. } = task
            && self.pending.get(digest) == Some(&id)
        {
            self.pending.remove(digest);
        }
    }

    /// A listing whose `Link` is refused ends here, incomplete.
    fn end_listing(
        &mut self,
        w: &mut WriteBatch<'_>,
        task: &CatalogTask,
        why: String,
        now: u64,
    ) -> Result<(), TxError> {
        tracing::warn!("{}", crate::text::printable(&why));
        match task {
            CatalogTask::Catalog { .. } => {
                self.run.catalog.error = Some(why);
                Ok(())
            }
            CatalogTask::Tags { repo: path, .. } => {
                let Some(repo) = self.repo(path) else {
                    return Ok(());
                };
                let mut state = w
                    .catalog_repo(&repo)?
                    .unwrap_or_else(|| CatalogRepo::new(self.run.id, now));
                state.listing.error = Some(why);
                state.done_at = Some(now);
                self.progress.repos_done.fetch_add(1, Ordering::Relaxed);
                w.put_catalog_repo(&repo, &state)
            }
            _ => Ok(()),
        }
    }

    /// The registry does not have it: a repository is gone (its tags are retired), a tag is
    /// gone (retired), a manifest is gone (recorded as `enrich` records it; its waiting tags
    /// still point at it).
    fn not_found(
        &mut self,
        w: &mut WriteBatch<'_>,
        stats: &mut CatalogStats,
        id: JobId,
        task: &CatalogTask,
        why: String,
        now: u64,
    ) -> Result<(), TxError> {
        match task {
            CatalogTask::Tags { repo: path, .. } => {
                let Some(repo) = self.repo(path) else {
                    return Ok(());
                };
                tracing::info!("{repo}: its tag list answered 404; marked vanished");
                let mut state = w
                    .catalog_repo(&repo)?
                    .unwrap_or_else(|| CatalogRepo::new(self.run.id, now));
                state.vanished_at = Some(now);
                state.done_at = Some(now);
                state.listing.done = true;
                self.progress.repos_done.fetch_add(1, Ordering::Relaxed);
                w.put_catalog_repo(&repo, &state)?;
                stats.deleted_tags += retire(w, &repo, &HashSet::new(), now)?;
                Ok(())
            }
            CatalogTask::Head { repo: path, tag } => {
                let Some(repo) = self.repo(path) else {
                    return Ok(());
                };
                if w.tag_state(&repo, tag)?
                    .is_some_and(|t| t.deleted_at.is_none())
                {
                    stats.deleted_tags += 1;
                    w.mark_deleted(&repo, std::slice::from_ref(tag), now)?;
                }
                Ok(())
            }
            CatalogTask::Manifest { .. } => {
                let Some(CatalogJob {
                    task:
                        CatalogTask::Manifest {
                            digest,
                            kind,
                            waiting,
                            ..
                        },
                    ..
                }) = w.catalog_job(id)?
                else {
                    return Ok(());
                };
                self.forget(id, task);
                tracing::warn!("{digest} is gone: {}", crate::text::printable(&why));
                w.put_manifest(
                    &digest,
                    &ManifestRecord {
                        fact: ManifestFact::Gone { reason: why },
                        media_type: String::new(),
                        via: None,
                        learned_at: now,
                    },
                )?;
                for (path, tag) in &waiting {
                    if let Some(repo) = self.repo(path) {
                        let obs = plan::observation(tag, digest, kind, &[]);
                        self.record(w, stats, &repo, &obs, now)?;
                    }
                }
                Ok(())
            }
            CatalogTask::Catalog { .. } | CatalogTask::Config { .. } => Ok(()),
        }
    }
}

/// Where a listing page leads: the next page, or the `Link` the client refused, named as the
/// client's error names it.
fn next_of<'a>(url: &Url, page: &'a ListPage) -> Result<Option<&'a Url>, String> {
    match &page.refused {
        Some(source) => Err(format!("{url}: {source}")),
        None => Ok(page.next.as_ref().map(|p| p.url())),
    }
}

/// A tag's sighting built from what the store learned of `digest`, when it did: a refresh (or
/// an alias of a known digest) then costs nothing beyond the HEAD.
fn known_sighting(
    w: &WriteBatch<'_>,
    tag: &str,
    digest: &Digest,
) -> Result<Option<TagObservation>, TxError> {
    let Some(record) = w.manifest(digest)? else {
        return Ok(None);
    };
    Ok(match record.fact {
        ManifestFact::Image { .. } | ManifestFact::Legacy { .. } => {
            Some(plan::observation(tag, *digest, ObjectKind::Manifest, &[]))
        }
        ManifestFact::Index { manifests } => {
            let mut children = Vec::with_capacity(manifests.len());
            for child in manifests {
                let known = w.digest(&child)?;
                children.push(Child {
                    digest: child,
                    platform: known.as_ref().and_then(|r| r.platform.clone()),
                    os_version: known.and_then(|r| r.os_version),
                });
            }
            Some(plan::observation(
                tag,
                *digest,
                ObjectKind::Index,
                &children,
            ))
        }
        ManifestFact::Gone { .. } => None,
    })
}

/// Marks the tags of `repo` that are not in `keep` and not deleted yet as deleted; returns how
/// many.
fn retire(
    w: &mut WriteBatch<'_>,
    repo: &RepoName,
    keep: &HashSet<&str>,
    now: u64,
) -> Result<u64, TxError> {
    let gone: Vec<String> = w
        .repo_tags(repo)?
        .into_iter()
        .filter(|(tag, state)| state.deleted_at.is_none() && !keep.contains(tag.as_str()))
        .map(|(tag, _)| tag)
        .collect();
    for tag in &gone {
        tracing::info!("{repo}:{tag} is no longer in the registry; marked deleted");
    }
    w.mark_deleted(repo, &gone, now)?;
    Ok(gone.len() as u64)
}

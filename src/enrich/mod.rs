//! `digestmap enrich`: the image ID and layer chain of every platform manifest the store holds,
//! learned from the registry.
//!
//! For each platform manifest digest not learned yet, the manifest is fetched by digest, then
//! its config blob; for a Hub `config`-kind digest (an image ID tag), only the config blob. Each
//! is a job in the store's `jobs` table (enrich's id range, see [`crate::store`]); a job leaves
//! the table only in the transaction that stores what it fetched and adds the jobs it leads to,
//! so a `kill -9` at any instant loses nothing, and the next `enrich` re-fetches at most the jobs
//! that were in flight.
//!
//! Content-addressed: a digest learned is never fetched again, and planning skips digests that
//! already have a job, so a second `enrich` on an unchanged store sends no request at all.
//!
//! What is fetched is verified by the registry client against the digest asked for (sha256 of
//! the bytes as received): a mismatch fails that job at once, and nothing of it is stored.
//!
//! An index met where a platform manifest was expected (a Hub tag with `images: []` whose digest
//! is an index after all) is recorded as such, and each of its platform manifests (attestations
//! left out) becomes a job of its own, carrying the tags of the digest Hub listed. The store then
//! holds the digest as the crawl holds an index Hub lists ([`WriteBatch::link_index`]): kind
//! `index`, its platform manifests under it in `parents` with the platforms of its entries and
//! its tags, so the dataset, `lookup` and `identify` answer it like any index; a later crawl
//! that sees the tag listed the same way keeps them so. Docker schema 1
//! and other types the client does not read are recorded as legacy with the reason: they are
//! answers, not failures.
//!
//! Pull budget (Docker Hub counts every manifest GET as a pull; blob GETs do not count): the
//! client's budget, as the registry's `ratelimit-*` headers last said, is stored in `meta` after
//! every manifest answer and restored by the next run, so no run sends a manifest GET the stored
//! budget does not cover. When it is spent (or a manifest GET is answered 429 by a registry that
//! declares a budget, see [`crate::registry::budget`]), no manifest GET is sent for the rest of
//! the window; config jobs go on;
//! the run then ends with [`Stop::Budget`] and the time the window frees. `--max-pulls` caps
//! one run's manifest GETs the same way ([`Stop::MaxPulls`]).
//!
//! A 429 from a registry that declares no pull budget (a mirror's or Microsoft's request limit),
//! or from the CDN, is no window of hours: the pacer pauses every worker until its `Retry-After`
//! (or the backoff of a bare 429), and the job goes back for then without counting as an attempt
//! ([`Disposition::Pause`]), as the crawls do. As for the catalog crawl, the pause is stored per
//! registry host with every commit ([`crate::store::enrich_pause_key`]) and restored by the next
//! run ([`Pacer::restore_pause`]), so a killed and resumed `enrich` sends nothing to that registry
//! before it ends.
//!
//! Failures ([`disposition`]): transient ones (network, 5xx) put the job back with a backoff (1 s,
//! 2 s, 4 s, 8 s), and after 5 attempts it moves to `failed` with its reason; others (a digest
//! mismatch, a 404 for a config blob, a refused redirect, a body that does not parse) fail it at
//! once. `enrich --resume` tries failed jobs again. A 404 for a manifest is an answer: the
//! registry no longer has it there (Hub's old history), so it is recorded as gone, with the
//! answer, and never fetched again (`status` lists it).

pub mod plan;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::clock;
use crate::model::{Digest, Platform, validate_os_version};
use crate::net::auth::Credentials;
use crate::net::{NetConfig, Pacer};
use crate::registry::{
    BudgetSnapshot, HostCredentials, ImagePlatform, Manifest, RegistryClient, RegistryConfig,
    RegistryError,
};
use crate::store::{
    ConfigRecord, EnrichJob, EnrichStats, EnrichTarget, FailedEnrich, JobId, LayerRef,
    ManifestFact, ManifestRecord, Store, StoreError, StoredBudget, TxError, WriteBatch,
};
pub use plan::{Candidate, Filter};

/// Attempts before a job moves to `failed`.
pub const MAX_ATTEMPTS: u32 = 5;
/// Default request rate against Docker Hub's registry and registries not known here.
pub const DEFAULT_RPS: f64 = 5.0;

/// The default `--rps` for a registry: the documented rate of the mirrors known to cut off
/// faster clients (Amazon's public mirror: about 1 request/s anonymous; Google's pull-through
/// cache: about 50 a minute), else [`DEFAULT_RPS`].
pub fn default_rps(registry: &Url) -> f64 {
    match registry.host_str() {
        Some("public.ecr.aws") => 1.0,
        Some("mirror.gcr.io") => 50.0 / 60.0,
        _ => DEFAULT_RPS,
    }
}
/// Default number of requests in flight.
pub const DEFAULT_WORKERS: usize = 4;

/// Docker Hub's registry host, the one Docker Hub credentials belong to.
pub const DOCKER_HUB_REGISTRY_HOST: &str = "registry-1.docker.io";

/// The registry credentials to use: the Docker Hub credentials found (see
/// [`crate::net::auth::discover`]) belong to Docker Hub's registry only, over https; any other
/// registry (a mirror, a local one) is read anonymously, so they never leave for another host.
pub fn registry_credentials(registry: &Url, found: Option<Credentials>) -> Option<HostCredentials> {
    let hub = registry.scheme() == "https"
        && registry.host_str() == Some(DOCKER_HUB_REGISTRY_HOST)
        && registry.port().is_none();
    let found = found.filter(|_| hub)?;
    Some(HostCredentials {
        host: DOCKER_HUB_REGISTRY_HOST.to_owned(),
        username: found.username,
        secret: found.secret,
    })
}

/// What to enrich and how.
#[derive(Debug, Clone)]
pub struct EnrichOptions {
    /// The registry origin.
    pub registry: Url,
    /// Credentials for the registry's token realm (Basic); `None`: anonymous.
    pub credentials: Option<HostCredentials>,
    /// Path before every repository on a mirror (`docker` for `docker/library/python`).
    pub prefix: Option<String>,
    /// Which digests to plan.
    pub filter: Filter,
    /// Most manifest GETs this run may send.
    pub max_pulls: Option<u64>,
    /// Most request starts per second.
    pub rps: f64,
    /// Requests in flight.
    pub workers: usize,
    /// Only continue what is queued (failed jobs included); plan nothing new.
    pub resume: bool,
    /// Timeouts and retries.
    pub net: NetConfig,
    /// Base of the backoff between a job's attempts.
    pub job_retry_base: Duration,
}

impl EnrichOptions {
    /// Options for `registry` with the defaults.
    pub fn new(registry: Url) -> Self {
        Self {
            rps: default_rps(&registry),
            registry,
            credentials: None,
            prefix: None,
            filter: Filter::default(),
            max_pulls: None,
            workers: DEFAULT_WORKERS,
            resume: false,
            net: NetConfig::default(),
            job_retry_base: Duration::from_secs(1),
        }
    }

    /// The registry path of a store repository (`library/python`), with the prefix.
    pub fn path_of(&self, repo: &str) -> String {
        match self.prefix.as_deref().map(|p| p.trim_matches('/')) {
            Some(prefix) if !prefix.is_empty() => format!("{prefix}/{repo}"),
            _ => repo.to_owned(),
        }
    }
}

/// Why the run stopped before every job was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The registry's pull budget is spent until this time (unix seconds).
    Budget {
        /// When the window frees.
        frees_at: u64,
    },
    /// `--max-pulls` was reached.
    MaxPulls,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct EnrichReport {
    /// Jobs planned by this run.
    pub planned: u64,
    /// Jobs queued by an earlier run (failed ones `--resume` queued again included) that this
    /// run took up, within its filter.
    pub continued: u64,
    /// Manifests learned by this run.
    pub manifests: u64,
    /// Configs learned by this run.
    pub configs: u64,
    /// Manifest GETs this run sent (pulls spent).
    pub pulls: u64,
    /// Blob GETs this run sent.
    pub blobs: u64,
    /// Enrich jobs left in the store (all, whatever the filter).
    pub left: u64,
    /// Failed enrich jobs in the store.
    pub failed: Vec<(JobId, FailedEnrich)>,
    /// Why manifest GETs stopped early, when they did and manifests are left.
    pub stop: Option<Stop>,
    /// Ctrl-C.
    pub interrupted: bool,
    /// The registry that answered nothing but 429 for longer than the bound, which stopped it.
    pub refused: Option<crate::net::Refusal>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Live counters of a run for a progress display (nothing here knows about the terminal):
/// manifest and config jobs done (learned, gone or failed) of those planned (queued at the start,
/// and spawned since: an image's config, an index's platform manifests), pulls spent, and the
/// manifest GETs the budget still allows.
#[derive(Debug)]
pub struct EnrichProgress {
    manifests_done: AtomicU64,
    manifests_planned: AtomicU64,
    configs_done: AtomicU64,
    configs_planned: AtomicU64,
    pulls: AtomicU64,
    /// [`UNKNOWN`] until a budget is known.
    budget_left: AtomicU64,
}

/// `budget_left` before anything told it.
const UNKNOWN: u64 = u64::MAX;

impl Default for EnrichProgress {
    fn default() -> Self {
        Self {
            manifests_done: AtomicU64::new(0),
            manifests_planned: AtomicU64::new(0),
            configs_done: AtomicU64::new(0),
            configs_planned: AtomicU64::new(0),
            pulls: AtomicU64::new(0),
            budget_left: AtomicU64::new(UNKNOWN),
        }
    }
}

/// What [`EnrichProgress`] holds at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgressCounts {
    /// Manifest jobs done (learned, gone or failed).
    pub manifests_done: u64,
    /// Manifest jobs planned.
    pub manifests_planned: u64,
    /// Config jobs done.
    pub configs_done: u64,
    /// Config jobs planned.
    pub configs_planned: u64,
    /// Manifest GETs sent (pulls spent).
    pub pulls: u64,
    /// Manifest GETs the registry's budget and `--max-pulls` still allow, when either is known.
    pub budget_left: Option<u64>,
}

impl EnrichProgress {
    /// The counters now.
    pub fn snapshot(&self) -> ProgressCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let left = get(&self.budget_left);
        ProgressCounts {
            manifests_done: get(&self.manifests_done),
            manifests_planned: get(&self.manifests_planned),
            configs_done: get(&self.configs_done),
            configs_planned: get(&self.configs_planned),
            pulls: get(&self.pulls),
            budget_left: (left != UNKNOWN).then_some(left),
        }
    }

    fn planned(&self, target: EnrichTarget) {
        match target {
            EnrichTarget::Manifest => &self.manifests_planned,
            EnrichTarget::Config => &self.configs_planned,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn done(&self, target: EnrichTarget) {
        match target {
            EnrichTarget::Manifest => &self.manifests_done,
            EnrichTarget::Config => &self.configs_done,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn spent(&self, pulls: u64, budget_left: Option<u64>) {
        self.pulls.store(pulls, Ordering::Relaxed);
        self.budget_left
            .store(budget_left.unwrap_or(UNKNOWN), Ordering::Relaxed);
    }
}

/// The manifest GETs still allowed: the fewer of what the registry's budget says is left and
/// what `--max-pulls` leaves after `started` GETs; `None` when neither is known.
pub fn budget_left(registry: Option<u64>, max_pulls: Option<u64>, started: u64) -> Option<u64> {
    let capped = max_pulls.map(|max| max.saturating_sub(started));
    match (registry, capped) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Why `enrich` could not run.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    /// Bad options.
    #[error("{0}")]
    Usage(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What becomes of a job whose fetch failed (a budget stop or a manifest 429 aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Put back, to be tried again after a backoff.
    Retry,
    /// A 429 answered as a status (a registry that declares no pull budget, the CDN): the
    /// registry saying stop, not a failure of the request. The pacer already pauses every worker
    /// until its `Retry-After` (or the backoff of a bare 429); the job goes back for then without
    /// counting as an attempt, as the crawls do.
    Pause,
    /// The registry no longer has the manifest: recorded as gone, not fetched again.
    Gone,
    /// Moved to `failed` with its reason (`enrich --resume` tries it again).
    Fail,
}

/// Decides a failed fetch: `attempts` counts this one. A manifest is gone only when the registry
/// says so in its own words (404 with the distribution spec's `MANIFEST_UNKNOWN`): a 404 without
/// it (a wrong `--registry-prefix`, a proxy's page) or `NAME_UNKNOWN` (no such repository) may be
/// a mistake of ours, so it stays a failure that `--resume` tries again. A config blob's 404 also
/// stays a failure: a registry that serves a manifest keeps its config. A 429 that reaches
/// here (a registry without a pull budget, the CDN) is a pause, whatever the attempts.
pub fn disposition(target: EnrichTarget, err: &RegistryError, attempts: u32) -> Disposition {
    if matches!(err, RegistryError::Status { status, .. }
            if *status == http::StatusCode::TOO_MANY_REQUESTS)
    {
        return Disposition::Pause;
    }
    let transient = err.is_transient();
    let unknown = matches!(err, RegistryError::Status { detail: Some(d), .. }
        if d.starts_with("MANIFEST_UNKNOWN"));
    if target == EnrichTarget::Manifest && err.is_not_found() && unknown {
        Disposition::Gone
    } else if transient && attempts < MAX_ATTEMPTS {
        Disposition::Retry
    } else {
        Disposition::Fail
    }
}

/// What a fetched manifest is, and what it leads to: the decision `enrich` and the catalog crawl
/// (`crate::catalog`) share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    /// What to record.
    pub fact: ManifestFact,
    /// The media type it came as.
    pub media_type: String,
    /// An image's config blob, to fetch next.
    pub config: Option<Digest>,
    /// An index's platform manifests (attestations left out), to fetch next.
    pub children: Vec<Digest>,
}

/// Reads a fetched manifest: an image gives its config and layers, an index its platform
/// manifests; an attestation manifest, Docker schema 1 and unknown types are legacy, with the
/// reason.
pub fn learn(manifest: &Manifest) -> Learned {
    let legacy = |reason: String, media_type: &str| Learned {
        fact: ManifestFact::Legacy { reason },
        media_type: media_type.to_owned(),
        config: None,
        children: Vec::new(),
    };
    match manifest {
        Manifest::Image(image) if image.is_attestation() => legacy(
            "an attestation manifest, not an image".into(),
            &image.media_type,
        ),
        Manifest::Image(image) => Learned {
            fact: ManifestFact::Image {
                config: image.config.digest,
                layers: image
                    .layers
                    .iter()
                    .map(|l| LayerRef {
                        digest: l.digest,
                        size: l.size,
                        media_type: l.media_type.clone(),
                    })
                    .collect(),
            },
            media_type: image.media_type.clone(),
            config: Some(image.config.digest),
            children: Vec::new(),
        },
        Manifest::Index(index) => {
            let children: Vec<Digest> = index.images().map(|d| d.digest).collect();
            Learned {
                fact: ManifestFact::Index {
                    manifests: children.clone(),
                },
                media_type: index.media_type.clone(),
                config: None,
                children,
            }
        }
        Manifest::Legacy { media_type, reason } => legacy(reason.clone(), media_type),
    }
}

/// A registry's platform (a config's, an index entry's), validated by the rules of [`Platform::parse`] and
/// [`validate_os_version`]; a part that breaks them is left out. The flag says whether one was.
pub fn checked_platform(p: &ImagePlatform) -> (Option<Platform>, Option<String>, bool) {
    let platform = Platform::parse(
        &p.platform.os,
        &p.platform.architecture,
        p.platform.variant.as_deref(),
    )
    .ok()
    .filter(|p| !p.os.is_empty() && !p.architecture.is_empty());
    let os_version = p
        .os_version
        .as_deref()
        .filter(|v| validate_os_version(v).is_ok())
        .map(str::to_owned);
    let invalid = platform.is_none() || os_version.is_none() != p.os_version.is_none();
    (platform, os_version, invalid)
}

/// The record of a fetched config blob, and whether a part of its platform was left out. The
/// platform and `os.version` are a registry's text on their way to the dataset, `lookup` and
/// `identify`: they pass only by the Hub crawl's rules ([`checked_platform`]), so control
/// characters or megabytes of text never reach them.
pub fn config_record(config: crate::registry::ImageConfig, now: u64) -> (ConfigRecord, bool) {
    let (platform, os_version, invalid) = checked_platform(&config.platform);
    let record = ConfigRecord {
        chain_id: config.chain_id(),
        platform,
        os_version,
        diff_ids: config.diff_ids,
        created: config.created,
        learned_at: now,
    };
    (record, invalid)
}

/// What one fetch gave.
enum Fetched {
    Manifest(Result<crate::registry::FetchedManifest, RegistryError>),
    Config(Result<crate::registry::FetchedConfig, RegistryError>),
}

/// When a job that did not succeed may go again.
#[derive(Debug, Clone, Copy)]
struct Delays {
    /// Base of the backoff between a job's attempts.
    base: Duration,
    /// The end of the pacer's pause (a 429's), unix milliseconds, if one is in force.
    paused_until_ms: Option<u64>,
}

/// The run's queues and counters.
struct Run {
    manifests: VecDeque<(JobId, EnrichJob)>,
    configs: VecDeque<(JobId, EnrichJob)>,
    waiting: Vec<(JobId, EnrichJob)>,
    queued: HashSet<Digest>,
    stop: Option<Stop>,
    manifest_starts: u64,
    manifests_in_flight: u64,
    /// A manifest answer came (its `ratelimit-*` headers, or their absence, told the budget).
    manifest_answered: bool,
    learned: (u64, u64),
    progress: Arc<EnrichProgress>,
}

/// Runs `enrich` on `store` until every job of the filter is done, the budget stops manifest
/// GETs, or `cancel` fires; `progress` follows it live.
pub async fn enrich(
    store: Arc<Store>,
    options: EnrichOptions,
    progress: Arc<EnrichProgress>,
    cancel: CancellationToken,
) -> Result<EnrichReport, EnrichError> {
    let started = Instant::now();
    crate::crawl::check_workers(options.workers).map_err(EnrichError::Usage)?;
    // Ctrl-C (`interrupt`) or the pacer giving up on a registry that refuses everything stops
    // the run alike; only the first counts as an interruption.
    let interrupt = cancel;
    let cancel = interrupt.child_token();
    let pacer = Arc::new(
        Pacer::new(options.rps)
            .map_err(|e| EnrichError::Usage(format!("--rps: {e}")))?
            .with_max_pause(options.net.max_pause)
            .with_refusal_bound(options.net.max_refusal, cancel.clone()),
    );
    let host = crate::catalog::plan::source_host(&options.registry);
    // A pause the registry asked of an earlier run (`Retry-After`) still holds.
    pacer.restore_pause(store.read(|r| r.enrich_pause(&host))?, &host);
    let mut config = RegistryConfig::new(options.registry.clone());
    config.credentials = options.credentials.clone();
    let client = RegistryClient::new(config, pacer.clone(), &options.net)
        .map_err(|e| EnrichError::Usage(format!("--registry: {e}")))?;
    let client = Arc::new(client);

    let (stored_budget, jobs, failed) =
        store.read(|r| Ok((r.budget()?, r.enrich_jobs()?, r.enrich_failed()?)))?;
    if let Some(b) = stored_budget {
        client.restore_pull_budget(BudgetSnapshot {
            limit: b.limit,
            remaining: b.remaining,
            frees_at: UNIX_EPOCH + Duration::from_secs(b.frees_at),
        });
    }
    let mut queued: HashSet<Digest> = jobs.iter().map(|(_, j)| j.digest).collect();
    queued.extend(failed.iter().map(|(_, f)| f.job.digest));

    let planned = if options.resume {
        let moved = store.write(|w| w.retry_failed_enrich())?;
        if moved > 0 {
            tracing::info!("{moved} failed enrich job(s) are queued again");
        }
        0
    } else {
        let candidates = store.read(|r| plan::candidates(r, &options.filter, &queued))?;
        store.write(|w| {
            for c in &candidates {
                w.add_enrich_job(&EnrichJob::new(c.target, c.digest, c.repo.clone(), None))?;
            }
            Ok(())
        })?;
        queued.extend(candidates.iter().map(|c| c.digest));
        candidates.len() as u64
    };

    let mut run = Run {
        manifests: VecDeque::new(),
        configs: VecDeque::new(),
        waiting: Vec::new(),
        queued,
        stop: None,
        manifest_starts: 0,
        manifests_in_flight: 0,
        manifest_answered: false,
        learned: (0, 0),
        progress: progress.clone(),
    };
    let mut taken = 0u64;
    for (id, job) in store.read(|r| r.enrich_jobs())? {
        if options.filter.takes_repo(&job.repo) {
            progress.planned(job.target);
            run.push(id, job);
            taken += 1;
        }
    }
    // Every job this run planned passes its filter, so the rest were queued before.
    let continued = taken.saturating_sub(planned);
    let max_pulls = options.max_pulls;
    let spent = |client: &RegistryClient, run: &Run| {
        progress.spent(
            client.stats().manifest_gets.load(Ordering::Relaxed),
            budget_left(
                client.pull_budget().map(|b| b.remaining),
                max_pulls,
                run.manifest_starts,
            ),
        );
    };
    spent(&client, &run);

    let mut tasks: JoinSet<(JobId, EnrichJob, Fetched)> = JoinSet::new();
    let options = Arc::new(options);
    loop {
        run.wake(clock::now_unix_millis());
        while tasks.len() < options.workers && !cancel.is_cancelled() {
            let budget_known = run.manifest_answered || client.pull_budget().is_some();
            let Some((id, job)) = run.next(&options, budget_known) else {
                break;
            };
            let client = client.clone();
            let options = options.clone();
            tasks.spawn(async move {
                let path = options.path_of(&job.repo);
                let fetched = match job.target {
                    EnrichTarget::Manifest => {
                        Fetched::Manifest(client.manifest(&path, &job.digest).await)
                    }
                    EnrichTarget::Config => {
                        Fetched::Config(client.config(&path, &job.digest).await)
                    }
                };
                (id, job, fetched)
            });
        }
        if tasks.is_empty() {
            let due = run.waiting.iter().map(|(_, j)| j.not_before_ms).min();
            if crate::jobs::idle_until(due, &cancel).await {
                continue;
            }
            break;
        }
        let Some(joined) = crate::jobs::next_finished(&mut tasks, &cancel).await else {
            break;
        };
        let Some(joined) = joined else { continue };
        let (id, job, fetched) = match joined {
            Ok(done) => done,
            Err(e) if e.is_cancelled() => continue,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let budget = client.pull_budget();
        let store = store.clone();
        let delays = Delays {
            base: options.job_retry_base,
            paused_until_ms: pacer.paused_until_unix().map(|t| t.saturating_mul(1000)),
        };
        tokio::task::block_in_place(|| {
            store.write(|w| {
                w.set_enrich_pause(&host, pacer.paused_until_unix())?;
                run.apply(w, id, job, fetched, budget, delays)
            })
        })?;
        spent(&client, &run);
    }

    let (left, failed) = store.read(|r| Ok((r.enrich_jobs()?.len() as u64, r.enrich_failed()?)))?;
    let manifests_left = !run.manifests.is_empty()
        || run
            .waiting
            .iter()
            .any(|(_, j)| j.target == EnrichTarget::Manifest);
    Ok(EnrichReport {
        planned,
        continued,
        manifests: run.learned.0,
        configs: run.learned.1,
        pulls: client.stats().manifest_gets.load(Ordering::Relaxed),
        blobs: client.stats().blob_gets.load(Ordering::Relaxed),
        left,
        failed,
        stop: run.stop.filter(|_| manifests_left),
        interrupted: interrupt.is_cancelled(),
        refused: pacer.refusal(),
        elapsed: started.elapsed(),
    })
}

impl Run {
    fn push(&mut self, id: JobId, job: EnrichJob) {
        if job.not_before_ms > clock::now_unix_millis() {
            self.waiting.push((id, job));
        } else {
            match job.target {
                EnrichTarget::Manifest => self.manifests.push_back((id, job)),
                EnrichTarget::Config => self.configs.push_back((id, job)),
            }
        }
    }

    /// Moves the waiting jobs that are due into their queues.
    fn wake(&mut self, now_ms: u64) {
        let (due, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(_, j)| j.not_before_ms <= now_ms);
        self.waiting = wait;
        for (id, job) in due {
            self.push(id, job);
        }
    }

    /// The next job to start: configs first (they spend no pulls and finish images), then
    /// manifests while the budget and `--max-pulls` allow. Until an answer has told the budget
    /// (`budget_known`), one manifest GET at a time: several sent blind could overrun a budget
    /// of fewer pulls than workers.
    fn next(&mut self, options: &EnrichOptions, budget_known: bool) -> Option<(JobId, EnrichJob)> {
        if let Some(job) = self.configs.pop_front() {
            return Some(job);
        }
        if self.stop.is_some() || (!budget_known && self.manifests_in_flight > 0) {
            return None;
        }
        if options
            .max_pulls
            .is_some_and(|max| self.manifest_starts >= max)
        {
            if !self.manifests.is_empty() {
                self.stop = Some(Stop::MaxPulls);
            }
            return None;
        }
        let job = self.manifests.pop_front()?;
        self.manifest_starts += 1;
        self.manifests_in_flight += 1;
        Some(job)
    }

    /// Commits what one fetch gave: its records, its job's removal and the jobs it leads to, or
    /// the job back in its queue, or failed.
    fn apply(
        &mut self,
        w: &mut WriteBatch<'_>,
        id: JobId,
        job: EnrichJob,
        fetched: Fetched,
        budget: Option<BudgetSnapshot>,
        delays: Delays,
    ) -> Result<(), TxError> {
        let now = clock::now_unix();
        let mut stats = w.enrich_stats()?;
        let outcome = match fetched {
            Fetched::Manifest(result) => {
                self.manifests_in_flight = self.manifests_in_flight.saturating_sub(1);
                self.manifest_answered |= !matches!(
                    result,
                    Err(RegistryError::BudgetSpent { .. } | RegistryError::Fetch(_))
                );
                if let Some(b) = budget {
                    w.set_budget(&StoredBudget {
                        limit: b.limit,
                        remaining: b.remaining,
                        frees_at: clock::unix(b.frees_at),
                    })?;
                }
                if !matches!(result, Err(RegistryError::BudgetSpent { .. })) {
                    stats.pulls += 1;
                }
                result.map(|m| self.learn_manifest(w, &job, m, now, &mut stats))
            }
            Fetched::Config(result) => {
                stats.blobs += 1;
                result.map(|c| {
                    let (record, invalid) = config_record(c.config, now);
                    if invalid {
                        tracing::warn!(
                            "{}: the config's platform breaks the crawl's rules (at most 32 ASCII letters, digits, '.', '_' or '-' per part; an os.version at most 64 of those or '+'); left out",
                            job.describe()
                        );
                    }
                    stats.configs += 1;
                    self.learned.1 += 1;
                    w.put_config(&job.digest, &record)
                })
            }
        };
        let target = job.target;
        match outcome {
            Ok(done) => {
                done?;
                w.remove_job(id)?;
                self.progress.done(target);
            }
            Err(RegistryError::BudgetSpent { spent, .. }) => {
                self.stop = Some(Stop::Budget {
                    frees_at: clock::unix(spent.frees_at),
                });
                self.manifests.push_front((id, job));
            }
            Err(RegistryError::RateLimited { url }) => {
                stats.rate_limited += 1;
                let frees_at = budget.map_or_else(
                    || clock::unix(SystemTime::now() + crate::registry::budget::DEFAULT_WINDOW),
                    |b| clock::unix(b.frees_at),
                );
                tracing::warn!(
                    "{url} answered 429: no manifest request until {}",
                    clock::rfc3339(frees_at)
                );
                self.stop = Some(Stop::Budget { frees_at });
                self.manifests.push_front((id, job));
            }
            Err(err) => {
                let reason = err.to_string();
                let attempts = job.attempts + 1;
                let disposition = disposition(job.target, &err, attempts);
                if disposition == Disposition::Gone {
                    tracing::warn!(
                        "{} is gone: {}",
                        job.describe(),
                        crate::text::printable(&reason)
                    );
                    w.put_manifest(
                        &job.digest,
                        &ManifestRecord {
                            fact: ManifestFact::Gone { reason },
                            media_type: String::new(),
                            via: job.via,
                            learned_at: now,
                        },
                    )?;
                    w.remove_job(id)?;
                    self.progress.done(target);
                } else if disposition == Disposition::Pause {
                    // Not an attempt: the job goes again when the pause ends.
                    stats.rate_limited += 1;
                    let job = EnrichJob {
                        not_before_ms: delays.paused_until_ms.unwrap_or(0),
                        last_error: Some(reason),
                        ..job
                    };
                    w.put_enrich_job(id, &job)?;
                    self.waiting.push((id, job));
                } else if disposition == Disposition::Retry {
                    stats.retries += 1;
                    let delay = delays.base.saturating_mul(1 << (attempts - 1).min(10));
                    let job = EnrichJob {
                        attempts,
                        not_before_ms: clock::now_unix_millis()
                            + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        last_error: Some(reason),
                        ..job
                    };
                    w.put_enrich_job(id, &job)?;
                    self.waiting.push((id, job));
                } else {
                    tracing::warn!(
                        "{} failed: {}",
                        job.describe(),
                        crate::text::printable(&reason)
                    );
                    let failed = FailedEnrich {
                        job: EnrichJob {
                            attempts,
                            last_error: Some(reason.clone()),
                            ..job
                        },
                        reason,
                        failed_at: now,
                    };
                    w.fail_enrich_job(id, &failed)?;
                    self.progress.done(target);
                }
            }
        }
        w.set_enrich_stats(&stats)
    }

    /// Stores a manifest and plans what it leads to: its config, or an index's platform
    /// manifests.
    fn learn_manifest(
        &mut self,
        w: &mut WriteBatch<'_>,
        job: &EnrichJob,
        fetched: crate::registry::FetchedManifest,
        now: u64,
        stats: &mut EnrichStats,
    ) -> Result<(), TxError> {
        let carrier = job.via.unwrap_or(job.digest);
        let learned = learn(&fetched.manifest);
        if let Some(config) = learned.config
            && !w.has_config(&config)?
            && self.queued.insert(config)
        {
            let spawned = EnrichJob::new(EnrichTarget::Config, config, job.repo.clone(), job.via);
            let id = w.add_enrich_job(&spawned)?;
            self.progress.planned(EnrichTarget::Config);
            self.configs.push_back((id, spawned));
        }
        for child in &learned.children {
            if w.manifest(child)?.is_none() && self.queued.insert(*child) {
                let spawned = EnrichJob::new(
                    EnrichTarget::Manifest,
                    *child,
                    job.repo.clone(),
                    Some(carrier),
                );
                let id = w.add_enrich_job(&spawned)?;
                self.progress.planned(EnrichTarget::Manifest);
                self.manifests.push_back((id, spawned));
            }
        }
        // A digest Hub listed as a platform manifest that is an index after all: the store holds
        // it from now on as the crawl holds an index Hub lists (its kind, its platform manifests
        // under it in `parents`, with its tags), so `finalize`, `lookup` and `identify` answer it
        // like any index.
        if job.via.is_none()
            && let Manifest::Index(index) = &fetched.manifest
        {
            let children: Vec<_> = index
                .images()
                .map(|entry| {
                    let (platform, os_version) =
                        entry.platform.as_ref().map_or((None, None), |p| {
                            let (platform, os_version, _) = checked_platform(p);
                            (platform, os_version)
                        });
                    (entry.digest, platform, os_version)
                })
                .collect();
            w.link_index(&job.digest, &children)?;
        }
        stats.manifests += 1;
        self.learned.0 += 1;
        w.put_manifest(
            &job.digest,
            &ManifestRecord {
                fact: learned.fact,
                media_type: learned.media_type,
                via: job.via,
                learned_at: now,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_left_is_the_fewer_of_the_registry_s_and_max_pulls() {
        // (registry says left, --max-pulls, GETs started) → left
        let table = [
            (None, None, 0, None),
            (Some(100), None, 7, Some(100)),
            (None, Some(10), 7, Some(3)),
            (None, Some(10), 12, Some(0)),
            (Some(2), Some(10), 7, Some(2)),
            (Some(50), Some(10), 7, Some(3)),
        ];
        for (registry, max, started, want) in table {
            assert_eq!(
                budget_left(registry, max, started),
                want,
                "{registry:?} {max:?} {started}"
            );
        }
        let progress = EnrichProgress::default();
        assert_eq!(progress.snapshot().budget_left, None);
        progress.planned(EnrichTarget::Manifest);
        progress.planned(EnrichTarget::Config);
        progress.done(EnrichTarget::Config);
        progress.spent(4, Some(96));
        assert_eq!(
            progress.snapshot(),
            ProgressCounts {
                manifests_done: 0,
                manifests_planned: 1,
                configs_done: 1,
                configs_planned: 1,
                pulls: 4,
                budget_left: Some(96),
            }
        );
    }

    #[test]
    fn platforms_are_checked() {
        let ok = ImagePlatform::new("windows", "amd64", None, Some("10.0.20348.2849"));
        assert_eq!(
            checked_platform(&ok),
            (
                Some(Platform::new("windows", "amd64", None)),
                Some("10.0.20348.2849".into()),
                false
            )
        );
        let bad_version = ImagePlatform::new("windows", "amd64", None, Some("10\u{1b}[2J"));
        assert_eq!(checked_platform(&bad_version).1, None);
        assert!(checked_platform(&bad_version).2);
        let bad = ImagePlatform::new("linux\n", "amd64", None, None);
        assert_eq!(checked_platform(&bad), (None, None, true));
        let empty = ImagePlatform::new("", "", None, None);
        assert_eq!(checked_platform(&empty).0, None);
    }

    #[test]
    fn a_config_record_keeps_no_platform_text_that_breaks_the_rules() {
        let config = |os: &str, arch: &str, variant: Option<&str>, version: Option<&str>| {
            crate::registry::ImageConfig {
                platform: ImagePlatform::new(os, arch, variant, version),
                diff_ids: vec![Digest::from_bytes([1; 32])],
                created: None,
            }
        };
        let long = "x".repeat(33);
        type Row<'a> = (
            (&'a str, &'a str, Option<&'a str>, Option<&'a str>),
            Option<&'a str>,
            Option<&'a str>,
            bool,
        );
        let table: Vec<Row<'_>> = vec![
            (
                ("windows", "amd64", None, Some("10.0.20348.2849")),
                Some("windows/amd64"),
                Some("10.0.20348.2849"),
                false,
            ),
            (
                ("linux", "arm64", Some("v8"), None),
                Some("linux/arm64/v8"),
                None,
                false,
            ),
            (
                ("windows", "amd64", None, Some("10.0\u{1b}]0;pwned\u{7}")),
                Some("windows/amd64"),
                None,
                true,
            ),
            (("linux\n", "amd64", None, None), None, None, true),
            (("linux", "amd64", Some("v8\r"), None), None, None, true),
            (("linux", &long, None, None), None, None, true),
            (("", "", None, None), None, None, true),
        ];
        for ((os, arch, variant, version), platform, os_version, invalid) in table {
            let (record, left_out) = config_record(config(os, arch, variant, version), 7);
            assert_eq!(
                record.platform.map(|p| p.to_string()).as_deref(),
                platform,
                "{os:?} {arch:?} {variant:?}"
            );
            assert_eq!(record.os_version.as_deref(), os_version, "{version:?}");
            assert_eq!(left_out, invalid, "{os:?} {arch:?} {variant:?} {version:?}");
            assert_eq!(record.diff_ids.len(), 1, "the layers are kept");
        }
    }

    #[test]
    fn a_manifest_the_registry_says_it_does_not_have_is_gone_and_nothing_else_is() {
        use EnrichTarget::{Config, Manifest};
        let status = |code: u16, detail: Option<&str>| RegistryError::Status {
            url: "https://r.example/v2/library/x/manifests/sha256:aa".into(),
            status: http::StatusCode::from_u16(code).unwrap(),
            detail: detail.map(str::to_owned),
        };
        let unknown = Some("MANIFEST_UNKNOWN: manifest unknown");
        let table = [
            (Manifest, status(404, unknown), 1, Disposition::Gone),
            (
                Manifest,
                status(404, unknown),
                MAX_ATTEMPTS,
                Disposition::Gone,
            ),
            (
                Manifest,
                status(404, Some("MANIFEST_UNKNOWN")),
                1,
                Disposition::Gone,
            ),
            // No repository there, or a 404 that is not the registry's word: maybe our mistake.
            (
                Manifest,
                status(404, Some("NAME_UNKNOWN: repository name not known")),
                1,
                Disposition::Fail,
            ),
            (Manifest, status(404, None), 1, Disposition::Fail),
            (
                Manifest,
                status(404, Some("not found")),
                1,
                Disposition::Fail,
            ),
            // A config blob's 404 stays a failure.
            (
                Config,
                status(404, Some("BLOB_UNKNOWN: blob unknown to registry")),
                1,
                Disposition::Fail,
            ),
            (Config, status(404, unknown), 1, Disposition::Fail),
            (Manifest, status(503, None), 1, Disposition::Retry),
            (
                Manifest,
                status(503, None),
                MAX_ATTEMPTS - 1,
                Disposition::Retry,
            ),
            (Manifest, status(503, None), MAX_ATTEMPTS, Disposition::Fail),
            (Config, status(429, None), 2, Disposition::Pause),
            (Manifest, status(429, None), 1, Disposition::Pause),
            (
                Manifest,
                status(429, Some("TOOMANYREQUESTS")),
                MAX_ATTEMPTS,
                Disposition::Pause,
            ),
            (Manifest, status(400, unknown), 1, Disposition::Fail),
            (Manifest, status(401, None), 1, Disposition::Fail),
        ];
        for (target, err, attempts, want) in table {
            assert_eq!(
                disposition(target, &err, attempts),
                want,
                "{target:?} {err} after {attempts} attempts"
            );
        }
    }

    #[test]
    fn hub_credentials_go_to_hub_s_registry_only() {
        use crate::net::auth::{CredentialSource, Secret};
        let found = || {
            Some(Credentials {
                username: "me".into(),
                secret: Secret::new("dckr_pat_x"),
                source: CredentialSource::Environment,
            })
        };
        let table = [
            ("https://registry-1.docker.io", true),
            ("https://registry-1.docker.io:443", true),
            ("https://registry-1.docker.io:8443", false),
            ("http://registry-1.docker.io", false),
            ("https://public.ecr.aws", false),
            ("http://127.0.0.1:5000", false),
        ];
        for (url, sent) in table {
            let got = registry_credentials(&url.parse().unwrap(), found());
            assert_eq!(got.is_some(), sent, "{url}");
            if let Some(c) = got {
                assert_eq!(
                    (c.host.as_str(), c.username.as_str()),
                    (DOCKER_HUB_REGISTRY_HOST, "me")
                );
                assert!(c.belong_to(&url.parse().unwrap()));
            }
        }
        assert!(
            registry_credentials(&"https://registry-1.docker.io".parse().unwrap(), None).is_none()
        );
    }

    #[test]
    fn mirrors_get_their_documented_rate() {
        let table = [
            ("https://registry-1.docker.io", DEFAULT_RPS),
            ("https://public.ecr.aws", 1.0),
            ("https://mirror.gcr.io", 50.0 / 60.0),
            ("http://127.0.0.1:5000", DEFAULT_RPS),
        ];
        for (url, rps) in table {
            assert!(
                (default_rps(&url.parse().unwrap()) - rps).abs() < 1e-9,
                "{url}"
            );
        }
    }

    #[test]
    fn a_prefix_goes_before_the_repository() {
        let mut options = EnrichOptions::new("https://public.ecr.aws".parse().unwrap());
        assert_eq!(options.path_of("library/python"), "library/python");
        for prefix in ["docker", "/docker/", "docker/"] {
            options.prefix = Some(prefix.into());
            assert_eq!(options.path_of("library/python"), "docker/library/python");
        }
        options.prefix = Some("/".into());
        assert_eq!(options.path_of("library/python"), "library/python");
    }
}

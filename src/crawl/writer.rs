//! The store writer: the one place a crawl commits. It reads what a decision needs in its
//! transaction, asks [`super::policy`] (pure) what a committed page leads to, and commits the
//! answer: the page's results, the job's completion and the jobs it spawns, in one transaction.
//!
//! A repository-list page spawns one tag listing per repository new to this run and what
//! [`policy::after_repo_page`] decides: the next page, or at the cap the list by descending name.
//! A 404 on page 1 of a tag listing commits what [`policy::repo_gone`] decides; a failed attempt
//! is put back after [`policy::retry_delay`], or moved to `failed`. An anonymous 403 `pagination
//! offset too large` met where no cap was expected is kept per Hub origin ([`policy::cap_met`]),
//! so this run and later ones of that origin ask for no page past it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::plan;
use super::policy::{
    self, CapOf, CoverStep, ListEnd, MAX_PLAUSIBLE_COUNT, NamesState, NextLink, PageStep,
    RepoListStep, RunFacts, Tally, ViewStep,
};
use super::queue::JobQueue;
use super::{Listing, MAX_ATTEMPTS, Outcome, PageData, Progress};
use crate::clock;
use crate::hub::HubApi;
use crate::model::RepoName;
use crate::net::{NetStats, Pacer};
use crate::registry::RegistryClient;
use crate::store::{
    CrawlRun, FailedJob, Job, JobId, JobKind, ListingWindow, PagingCaps, RepoState, RunMode,
    RunStats, Store, StoreError, TagNames, TagState, TxError, WriteBatch,
};

/// Most outcomes committed in one transaction: amortises the fsync without delaying progress.
const MAX_BATCH: usize = 64;

/// A job attempt's outcome on its way to the writer.
pub(super) struct Completion {
    pub id: JobId,
    pub job: Job,
    pub outcome: Outcome,
    /// Requests the attempt took, retries included.
    pub requests: u64,
    /// Told once the outcome is committed.
    pub ack: oneshot::Sender<()>,
}

#[derive(Debug, Default, Clone, Copy)]
struct NetSnapshot {
    requests: u64,
    registry: u64,
    fetches: u64,
    rate_limited: u64,
}

/// The writer's state.
pub(super) struct WriterCtx {
    pub store: Arc<Store>,
    pub api: HubApi,
    pub run: CrawlRun,
    pub queue: Arc<JobQueue>,
    pub progress: Arc<Progress>,
    pub pacer: Arc<Pacer>,
    pub net: Arc<NetStats>,
    pub job_retry_base: Duration,
    /// The registry asked for tag names, when the cover may use one.
    pub registry: Option<Arc<RegistryClient>>,
    /// What the decisions need to know of the run; a cap becomes expected once met.
    facts: std::cell::Cell<RunFacts>,
    /// Not signed in.
    anonymous: bool,
    synced: NetSnapshot,
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

impl Applied {
    fn spawn(&mut self, w: &mut WriteBatch<'_>, kind: JobKind) -> Result<(), TxError> {
        let job = Job::new(kind);
        let id = w.add_job(&job)?;
        self.ready.push((id, job));
        Ok(())
    }
}

impl WriterCtx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        api: HubApi,
        run: CrawlRun,
        queue: Arc<JobQueue>,
        progress: Arc<Progress>,
        pacer: Arc<Pacer>,
        net: Arc<NetStats>,
        job_retry_base: Duration,
        registry: Option<Arc<RegistryClient>>,
        anonymous: bool,
        caps: PagingCaps,
    ) -> Self {
        let facts = std::cell::Cell::new(RunFacts {
            mode: run.mode,
            caps,
            registry: registry.is_some(),
        });
        Self {
            store,
            api,
            run,
            queue,
            progress,
            pacer,
            net,
            job_retry_base,
            registry,
            facts,
            anonymous,
            synced: NetSnapshot::default(),
        }
    }

    /// Commits completions until every worker has gone.
    pub fn run(mut self, mut rx: mpsc::Receiver<Completion>) -> Result<(), StoreError> {
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
        Ok(())
    }

    fn commit(&mut self, batch: &[Completion]) -> Result<(), StoreError> {
        super::injected_panic("writer");
        let snapshot = NetSnapshot {
            requests: self.net.requests.load(Ordering::Relaxed),
            registry: self
                .registry
                .as_ref()
                .map_or(0, |r| r.net_stats().requests.load(Ordering::Relaxed)),
            fetches: self.net.fetches.load(Ordering::Relaxed),
            rate_limited: self.pacer.rate_limited(),
        };
        let applied = self.store.write(|w| {
            let mut stats = w.stats()?;
            stats.requests += snapshot.requests - self.synced.requests;
            // The registry's requests (tag names, tokens) count with Hub's.
            stats.requests += snapshot.registry - self.synced.registry;
            let retries_now = snapshot.requests.saturating_sub(snapshot.fetches);
            let retries_before = self.synced.requests.saturating_sub(self.synced.fetches);
            stats.retries += retries_now.saturating_sub(retries_before);
            stats.rate_limited += snapshot.rate_limited - self.synced.rate_limited;
            let mut all = Vec::with_capacity(batch.len());
            for completion in batch {
                all.push(self.apply(w, completion, &mut stats)?);
            }
            w.set_stats(&stats)?;
            w.set_pause_until(self.pacer.paused_until_unix())?;
            Ok(all)
        })?;
        self.synced = snapshot;
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
    ) -> Result<Applied, TxError> {
        let Completion {
            id,
            job,
            outcome,
            requests,
            ..
        } = completion;
        let mut applied = Applied::default();
        if let JobKind::Tags { repo, .. } | JobKind::TagNames { repo, .. } = &job.kind {
            // Every attempt's requests count toward the repository's cost, failed ones too.
            let mut state = self.repo_state(w, repo)?;
            state.requests += requests;
            w.put_repo(repo, &state)?;
        }
        match outcome {
            Outcome::RateLimited => {
                // Not an attempt: the job waits for the pause and goes again.
                let mut job = job.clone();
                job.not_before_ms = self
                    .pacer
                    .paused_until_unix()
                    .map_or(0, |t| t.saturating_mul(1000));
                applied.ready.push((*id, job));
            }
            Outcome::Failed { error, transient } => {
                self.failed_attempt(w, *id, job, error, *transient, stats, &mut applied)?;
            }
            Outcome::Page(page) => {
                stats.skips.add(&page.skips);
                applied.pages = 1;
                match (&job.kind, &page.listing) {
                    (JobKind::Repos { .. }, Listing::Repos(repos)) => {
                        stats.repo_pages += 1;
                        if let Some(count) = page.count.filter(|c| *c <= MAX_PLAUSIBLE_COUNT) {
                            stats.repo_count = Some(count);
                        }
                        let JobKind::Repos { descending, .. } = &job.kind else {
                            unreachable!("matched above")
                        };
                        let step = policy::after_repo_page(
                            &self.facts.get(),
                            *descending,
                            next_link(page),
                        );
                        match step {
                            RepoListStep::Follow | RepoListStep::Refused => {
                                self.follow_next(w, *id, job, page, &mut applied)?;
                            }
                            RepoListStep::Descend | RepoListStep::Done => {
                                w.remove_job(*id)?;
                            }
                        }
                        for repo in repos {
                            if let Some(spawned) = start_repo(w, &self.api, &self.run, repo)? {
                                applied.ready.push(spawned);
                                applied.new_repos += 1;
                            }
                        }
                        // After the page's repositories are started: the end of the list counts
                        // them.
                        self.repo_list_step(w, job, step, stats, &mut applied)?;
                    }
                    (JobKind::Tags { repo, window, .. }, Listing::Tags(tags)) => {
                        stats.tag_pages += 1;
                        stats.tags += tags.len() as u64;
                        applied.tags = tags.len() as u64;
                        self.tags_page(w, *id, job, repo, window, page, tags.len(), &mut applied)?;
                    }
                    (JobKind::TagNames { repo, .. }, Listing::Names(names)) => {
                        self.names_page(w, *id, job, repo, names, page, &mut applied)?;
                    }
                    _ => unreachable!("a job's listing matches its kind"),
                }
            }
            Outcome::Gone => match &job.kind {
                JobKind::Tags { repo, .. } => self.repo_gone(w, *id, job, repo, &mut applied)?,
                // The handler only says "gone" of a tag listing; anything else fails as it was.
                JobKind::Repos { .. } | JobKind::TagNames { .. } => {
                    let error = format!("{} answered 404 Not Found", job.kind.url());
                    self.failed_attempt(w, *id, job, &error, false, stats, &mut applied)?;
                }
            },
            Outcome::NoRegistry(error) => {
                w.remove_job(*id)?;
                if let JobKind::TagNames { repo, .. } = &job.kind {
                    self.no_registry(w, repo, error, &mut applied)?;
                }
            }
            Outcome::EndOfView => {
                w.remove_job(*id)?;
                if let JobKind::Tags {
                    window: ListingWindow::Single { name },
                    repo,
                    ..
                } = &job.kind
                {
                    tracing::info!(
                        "{repo}: Hub answered 404 for the tag {}: deleted since the registry listed it",
                        crate::text::printable(name)
                    );
                } else {
                    tracing::info!(
                        "{} answered 404: the listing shrank while it was read; this view ends here",
                        job.kind.url()
                    );
                }
                match &job.kind {
                    JobKind::Repos { .. } => self.repo_list_done(w, stats)?,
                    // The handler says this of Hub's listings only.
                    JobKind::TagNames { .. } => {}
                    JobKind::Tags {
                        repo,
                        window: ListingWindow::Planned { .. },
                        ..
                    } => self.planned_page_done(w, repo, &mut applied)?,
                    // The tag is gone: the registry listed it, Hub no longer has it.
                    JobKind::Tags {
                        repo,
                        window: ListingWindow::Single { name },
                        ..
                    } => {
                        if let Some(mut names) = w.tag_names(repo, self.run.id)? {
                            policy::tag_gone(&mut names, name);
                            w.set_tag_names(repo, &names)?;
                        }
                        self.planned_page_done(w, repo, &mut applied)?;
                    }
                    JobKind::Tags { repo, window, .. } => {
                        let mut state = self.repo_state(w, repo)?;
                        let now = clock::now_unix();
                        self.view_ended(w, repo, window, false, &mut state, now, &mut applied)?;
                        w.put_repo(repo, &state)?;
                    }
                }
            }
            Outcome::Capped => {
                w.remove_job(*id)?;
                match &job.kind {
                    JobKind::Repos { descending, .. } => {
                        // The first 403 of an origin not known to cap its repository list.
                        self.learn_cap(w, CapOf::Repos)?;
                        let step = policy::at_repo_cap(*descending);
                        self.repo_list_step(w, job, step, stats, &mut applied)?;
                    }
                    JobKind::TagNames { .. } => {}
                    // A plan that met the cap (a tie moved its range): planned again at the end
                    // of the round.
                    JobKind::Tags {
                        repo,
                        window: ListingWindow::Planned { .. } | ListingWindow::Single { .. },
                        ..
                    } => self.planned_page_done(w, repo, &mut applied)?,
                    // The first 403 of an origin not known to cap, or a lower cap than expected:
                    // from now on no view of this run asks past the cap.
                    JobKind::Tags { repo, window, .. } => {
                        self.learn_cap(w, CapOf::Tags)?;
                        let mut state = self.repo_state(w, repo)?;
                        let now = clock::now_unix();
                        self.view_ended(w, repo, window, true, &mut state, now, &mut applied)?;
                        w.put_repo(repo, &state)?;
                    }
                }
            }
        }
        Ok(applied)
    }

    #[allow(clippy::too_many_arguments)]
    fn failed_attempt(
        &self,
        w: &mut WriteBatch<'_>,
        id: JobId,
        job: &Job,
        error: &str,
        transient: bool,
        stats: &mut RunStats,
        applied: &mut Applied,
    ) -> Result<(), TxError> {
        let attempts = job.attempts + 1;
        if let Some(delay) = policy::retry_delay(attempts, transient, self.job_retry_base) {
            tracing::warn!(
                "{error} (attempt {attempts} of {MAX_ATTEMPTS}; trying again in {:.1}s)",
                delay.as_secs_f64()
            );
            let job = Job {
                attempts,
                not_before_ms: clock::now_unix_millis() + delay.as_millis() as u64,
                last_error: Some(error.to_owned()),
                kind: job.kind.clone(),
            };
            w.put_job(id, &job)?;
            stats.job_retries += 1;
            applied.ready.push((id, job));
        } else {
            tracing::error!("job failed: {error}");
            let job = Job {
                attempts,
                last_error: Some(error.to_owned()),
                ..job.clone()
            };
            w.fail_job(
                id,
                &FailedJob {
                    job,
                    reason: error.to_owned(),
                    failed_at: clock::now_unix(),
                },
            )?;
            applied.failed += 1;
        }
        Ok(())
    }

    /// Records that Hub has no repository `repo` (page 1 of a tag listing answered 404): the job
    /// is done, the repository is done and marked vanished, and the tags the store held for it
    /// are no longer current. The run goes on; the summary and `status` name the repository.
    fn repo_gone(
        &self,
        w: &mut WriteBatch<'_>,
        id: JobId,
        job: &Job,
        repo: &RepoName,
        applied: &mut Applied,
    ) -> Result<(), TxError> {
        w.remove_job(id)?;
        let now = clock::now_unix();
        let tags = w.repo_tags(repo)?;
        let mut state = self.repo_state(w, repo)?;
        let mut gaps = w.gaps(self.run.id)?;
        let gone = policy::repo_gone(&mut state, &mut gaps, repo, job.kind.url(), &tags, now);
        w.mark_deleted(repo, &gone.retired, now)?;
        if tags.is_empty() {
            tracing::warn!(
                "{repo} is not on Hub ({} answered 404); nothing was stored for it",
                job.kind.url()
            );
        } else {
            tracing::warn!(
                "{repo} is no longer on Hub ({} answered 404); marked vanished, {} of its tags are no longer current",
                job.kind.url(),
                gone.retired.len()
            );
        }
        if gone.newly_done {
            applied.repos_done = 1;
        }
        w.put_repo(repo, &state)?;
        w.set_gaps(&gaps)
    }

    /// Commits where the repository list goes at its end or its cap (see
    /// [`policy::after_repo_page`]); `job` is the list's job, already done.
    fn repo_list_step(
        &self,
        w: &mut WriteBatch<'_>,
        job: &Job,
        step: RepoListStep,
        stats: &mut RunStats,
        applied: &mut Applied,
    ) -> Result<(), TxError> {
        match (step, &job.kind) {
            (RepoListStep::Descend, JobKind::Repos { namespace, .. }) => {
                tracing::info!(
                    "the repository list of {namespace} is capped at 100 for anonymous clients; reading it by descending name too"
                );
                stats.repo_list_capped = true;
                applied.spawn(
                    w,
                    JobKind::Repos {
                        namespace: namespace.clone(),
                        url: self.api.repositories_url(namespace, true).to_string(),
                        descending: true,
                    },
                )
            }
            (RepoListStep::Done, _) => self.repo_list_done(w, stats),
            // Following a page is `follow_next`'s.
            _ => Ok(()),
        }
    }

    /// A 403 `pagination offset too large` on `of` where no cap was expected: from now on this
    /// run asks for no page past it, and, anonymous, the store keeps it for the Hub origin.
    fn learn_cap(&self, w: &mut WriteBatch<'_>, of: CapOf) -> Result<(), TxError> {
        let mut facts = self.facts.get();
        policy::cap_met(&mut facts.caps, self.anonymous, of);
        self.facts.set(facts);
        let origin = self.api.origin();
        let mut learned = w.paging_caps(&origin)?;
        if policy::cap_met(&mut learned, self.anonymous, of) {
            w.set_paging_caps(&origin, &learned)?;
        }
        Ok(())
    }

    /// Queues the next page of the same view, or marks the job failed when its `next` link was
    /// refused; otherwise the job is done.
    fn follow_next(
        &self,
        w: &mut WriteBatch<'_>,
        id: JobId,
        job: &Job,
        page: &PageData,
        applied: &mut Applied,
    ) -> Result<(), TxError> {
        match &page.next {
            Err(reason) => {
                tracing::error!("job failed: {reason}");
                w.fail_job(
                    id,
                    &FailedJob {
                        job: job.clone(),
                        reason: reason.clone(),
                        failed_at: page.fetched_at,
                    },
                )?;
                applied.failed += 1;
            }
            Ok(next) => {
                w.remove_job(id)?;
                if let Some(next) = next {
                    applied.spawn(w, job.kind.with_url(next.to_string()))?;
                }
            }
        }
        Ok(())
    }

    fn repo_list_done(&self, w: &mut WriteBatch<'_>, stats: &RunStats) -> Result<(), TxError> {
        match policy::repo_list_done(&self.run, stats.repo_count, &w.repos()?) {
            ListEnd::Short { seen, count } => tracing::warn!(
                "the repository list of {} gave {seen} of the {count} repositories Hub counts; name the others with --repo, or sign in",
                self.run.namespace
            ),
            ListEnd::Whole { vanished } => {
                let now = clock::now_unix();
                for (repo, mut state) in vanished {
                    tracing::info!("{repo} is no longer listed on Hub; marked vanished");
                    state.vanished_at = Some(now);
                    w.put_repo(&repo, &state)?;
                    let tags: Vec<String> =
                        w.repo_tags(&repo)?.into_iter().map(|(t, _)| t).collect();
                    w.mark_deleted(&repo, &tags, now)?;
                }
            }
        }
        Ok(())
    }

    fn repo_state(&self, w: &WriteBatch<'_>, repo: &RepoName) -> Result<RepoState, TxError> {
        Ok(w.repo(repo)?
            .filter(|s| s.run == self.run.id)
            .unwrap_or_else(|| RepoState::new(self.run.id, clock::now_unix())))
    }

    fn seen(
        &self,
        w: &WriteBatch<'_>,
        repo: &RepoName,
    ) -> Result<Vec<(String, TagState)>, TxError> {
        known_tags(w, &self.run, repo)
    }

    #[allow(clippy::too_many_arguments)]
    fn tags_page(
        &self,
        w: &mut WriteBatch<'_>,
        id: JobId,
        job: &Job,
        repo: &RepoName,
        window: &ListingWindow,
        page: &PageData,
        stored: usize,
        applied: &mut Applied,
    ) -> Result<(), TxError> {
        let Listing::Tags(tags) = &page.listing else {
            unreachable!("a tags job's listing holds tags")
        };
        let now = page.fetched_at;
        // Read before the page is stored, which makes its tags this run's.
        let unchanged = self.run.mode == RunMode::Refresh
            && *window == ListingWindow::Plain
            && tags
                .last()
                .map(|last| self.unchanged(w, repo, last))
                .transpose()?
                .unwrap_or(false);
        w.record_tags(repo, tags, now, self.run.id)?;
        let mut state = self.repo_state(w, repo)?;
        for hash in &page.skipped_names {
            state.add_skipped_name(*hash);
        }
        state.pages += 1;
        state.tags_seen += stored as u64;
        let whole_listing = matches!(window, ListingWindow::Plain | ListingWindow::Oldest);
        if whole_listing && let Some(count) = page.count {
            if count <= MAX_PLAUSIBLE_COUNT {
                state.count = Some(count);
            } else {
                tracing::warn!("{repo}: ignoring Hub's implausible tag count {count}");
            }
        }
        let next = next_link(page);
        let read_whole = state.full_read;
        let step = policy::after_tag_page(
            &self.facts.get(),
            &mut state,
            window,
            page.count,
            next,
            unchanged,
            &mut StoredTally::new(w, &self.run, repo),
        )?;
        if state.full_read && !read_whole {
            tracing::info!(
                "{repo}: the tags known fall short of the {} Hub counts; reading the whole listing",
                state.count.unwrap_or(0)
            );
        }
        match step {
            PageStep::RoundPage => {
                w.remove_job(id)?;
                w.put_repo(repo, &state)?;
                return self.planned_page_done(w, repo, applied);
            }
            PageStep::RefreshStop { known } => {
                w.remove_job(id)?;
                self.finish_repo(w, repo, &mut state, known, true, now, applied)?;
            }
            PageStep::Follow | PageStep::Refused => {
                self.follow_next(w, id, job, page, applied)?;
            }
            PageStep::ViewEnds { capped } => {
                w.remove_job(id)?;
                self.view_ended(w, repo, window, capped, &mut state, now, applied)?;
            }
        }
        w.put_repo(repo, &state)
    }

    /// Whether a tag is as an earlier run last saw it (see [`policy::unchanged_since`]).
    fn unchanged(
        &self,
        w: &WriteBatch<'_>,
        repo: &RepoName,
        tag: &crate::hub::TagObservation,
    ) -> Result<bool, TxError> {
        Ok(w.tag_state(repo, &tag.tag)?
            .is_some_and(|prev| policy::unchanged_since(&prev, tag, self.run.id)))
    }

    /// A view of `repo` ended (`capped`: at the anonymous cap): commits what
    /// [`policy::after_view`] decides follows.
    #[allow(clippy::too_many_arguments)]
    fn view_ended(
        &self,
        w: &mut WriteBatch<'_>,
        repo: &RepoName,
        window: &ListingWindow,
        capped: bool,
        state: &mut RepoState,
        now: u64,
        applied: &mut Applied,
    ) -> Result<(), TxError> {
        let seen = self.seen(w, repo)?;
        let names = NamesState::of(w.tag_names(repo, self.run.id)?.as_ref());
        let was_capped = state.capped;
        let step = policy::after_view(&self.facts.get(), state, window, capped, &seen, names);
        if state.capped && !was_capped {
            tracing::info!(
                "{repo}: anonymous paging stops at 1000 tags; covering the rest through other views"
            );
        }
        match step {
            ViewStep::Finish { complete, distinct } => {
                self.finish_repo(w, repo, state, distinct, complete, now, applied)
            }
            ViewStep::AskNames => {
                // `facts.registry` says there is one; without it the policy never asks.
                let Some(registry) = self.registry.as_ref() else {
                    return Ok(());
                };
                w.set_tag_names(
                    repo,
                    &TagNames {
                        run: self.run.id,
                        ..TagNames::default()
                    },
                )?;
                let url = registry.tags_first_page(&repo.to_string());
                applied.spawn(
                    w,
                    JobKind::TagNames {
                        repo: repo.clone(),
                        url: url.url().to_string(),
                    },
                )
            }
            ViewStep::CoverRound => self.cover_round(w, repo, state, now, applied),
            ViewStep::Wait => Ok(()),
            ViewStep::Read(next) => {
                if next == ListingWindow::Plain {
                    tracing::warn!(
                        "{repo}: the listing changed while it was read ({} of {} tags seen); reading it again",
                        seen.len() + state.skipped_names.len(),
                        state.count.unwrap_or(0)
                    );
                }
                applied.spawn(w, policy::view_job(&self.api, repo, next))
            }
        }
    }

    /// Stores a page of the registry's tag names of `repo`; the last one plans the cover.
    #[allow(clippy::too_many_arguments)]
    fn names_page(
        &self,
        w: &mut WriteBatch<'_>,
        id: JobId,
        job: &Job,
        repo: &RepoName,
        names: &[String],
        page: &PageData,
        applied: &mut Applied,
    ) -> Result<(), TxError> {
        let mut stored = w.tag_names(repo, self.run.id)?.unwrap_or(TagNames {
            run: self.run.id,
            ..TagNames::default()
        });
        let last = matches!(page.next, Ok(None));
        policy::gather_names(&mut stored, names, last);
        self.follow_next(w, id, job, page, applied)?;
        if last {
            tracing::info!(
                "{repo}: the registry lists {} tag names; planning the cover",
                stored.names.len()
            );
            w.set_tag_names(repo, &stored)?;
            let mut state = self.repo_state(w, repo)?;
            self.cover_round(w, repo, &mut state, page.fetched_at, applied)?;
            return w.put_repo(repo, &state);
        }
        w.set_tag_names(repo, &stored)
    }

    /// The registry could not be asked for `repo`'s names: say so, and cover it with `name`
    /// filters as without a registry.
    fn no_registry(
        &self,
        w: &mut WriteBatch<'_>,
        repo: &RepoName,
        error: &str,
        applied: &mut Applied,
    ) -> Result<(), TxError> {
        tracing::warn!(
            "{repo}: the registry could not be asked for the tag names ({error}); covering the rest through name filters instead"
        );
        let mut names = w.tag_names(repo, self.run.id)?.unwrap_or_default();
        names.run = self.run.id;
        names.unavailable = Some(error.to_owned());
        w.set_tag_names(repo, &names)?;
        let mut state = self.repo_state(w, repo)?;
        let now = clock::now_unix();
        self.view_ended(
            w,
            repo,
            &ListingWindow::Oldest,
            true,
            &mut state,
            now,
            applied,
        )?;
        w.put_repo(repo, &state)
    }

    /// A planned page of `repo` is committed (or ended without one): the last of its round plans
    /// the next.
    fn planned_page_done(
        &self,
        w: &mut WriteBatch<'_>,
        repo: &RepoName,
        applied: &mut Applied,
    ) -> Result<(), TxError> {
        let Some(mut names) = w.tag_names(repo, self.run.id)? else {
            return Ok(());
        };
        let round_done = policy::round_page_done(&mut names);
        w.set_tag_names(repo, &names)?;
        if !round_done {
            return Ok(());
        }
        let mut state = self.repo_state(w, repo)?;
        self.cover_round(w, repo, &mut state, clock::now_unix(), applied)?;
        w.put_repo(repo, &state)
    }

    /// Plans (again) the pages that reach `repo`'s names not yet stored ([`policy::cover_round`]),
    /// and queues them, or finishes the repository.
    fn cover_round(
        &self,
        w: &mut WriteBatch<'_>,
        repo: &RepoName,
        state: &mut RepoState,
        now: u64,
        applied: &mut Applied,
    ) -> Result<(), TxError> {
        let Some(mut names) = w.tag_names(repo, self.run.id)? else {
            return Ok(());
        };
        let seen = self.seen(w, repo)?;
        let cover = match policy::cover_round(&mut names, state, &seen) {
            CoverStep::Complete { distinct } => {
                return self.finish_repo(w, repo, state, distinct, true, now, applied);
            }
            CoverStep::GiveUp { distinct, missing } => {
                tracing::warn!(
                    "{repo}: {missing} tag names the registry lists were not found in any view below the cap"
                );
                return self.finish_repo(w, repo, state, distinct, false, now, applied);
            }
            CoverStep::Round(cover) => cover,
        };
        tracing::info!(
            "{repo}: cover round {}: {} missing tags, {} pages of {} views",
            names.rounds,
            cover.missing,
            cover.pages.len(),
            plan::views(&cover)
        );
        if !cover.unreachable.is_empty() {
            tracing::info!(
                "{repo}: {} missing tags lie beyond the cap of every view; asking for each by name",
                cover.unreachable.len()
            );
        }
        w.set_tag_names(repo, &names)?;
        for page in &cover.pages {
            tracing::debug!(
                "{repo}: planned {} page {} of {} (oldest first: {})",
                page.filter,
                page.page,
                page.size,
                page.oldest
            );
            applied.spawn(w, policy::planned_job(&self.api, repo, page))?;
        }
        for name in &cover.unreachable {
            applied.spawn(w, policy::single_job(&self.api, repo, name))?;
        }
        Ok(())
    }

    /// Records that the run is done with `repo` ([`policy::finish`]), and marks the tags a full,
    /// complete listing did not show as deleted ([`policy::deleted_tags`]).
    #[allow(clippy::too_many_arguments)]
    fn finish_repo(
        &self,
        w: &mut WriteBatch<'_>,
        repo: &RepoName,
        state: &mut RepoState,
        distinct: u64,
        complete: bool,
        now: u64,
        applied: &mut Applied,
    ) -> Result<(), TxError> {
        if !complete {
            tracing::warn!(
                "{repo}: coverage incomplete: {distinct} of the {} tags Hub counts were seen",
                state.count.unwrap_or(0)
            );
        }
        if policy::finish(state, distinct, complete, now) {
            applied.repos_done = 1;
        }
        if policy::marks_deletions(&self.run, complete) {
            let gone = policy::deleted_tags(&self.run, complete, &w.repo_tags(repo)?);
            if !gone.is_empty() {
                tracing::info!(
                    "{repo}: {} tags no longer on Hub are marked deleted",
                    gone.len()
                );
                w.mark_deleted(repo, &gone, now)?;
            }
        }
        Ok(())
    }
}

/// What a committed page says of the page after it.
fn next_link(page: &PageData) -> NextLink<'_> {
    match &page.next {
        Err(_) => NextLink::Refused,
        Ok(None) => NextLink::Last,
        Ok(Some(url)) => NextLink::Following(url),
    }
}

/// The store's counts of a repository's tags for [`policy::after_tag_page`], read at most once
/// per page and only when asked.
struct StoredTally<'a, 'w> {
    w: &'a WriteBatch<'w>,
    run: &'a CrawlRun,
    repo: &'a RepoName,
    seen: Option<Vec<(String, TagState)>>,
}

impl<'a, 'w> StoredTally<'a, 'w> {
    fn new(w: &'a WriteBatch<'w>, run: &'a CrawlRun, repo: &'a RepoName) -> Self {
        Self {
            w,
            run,
            repo,
            seen: None,
        }
    }

    fn seen(&mut self) -> Result<&[(String, TagState)], TxError> {
        Ok(match &mut self.seen {
            Some(seen) => seen,
            slot @ None => slot.insert(known_tags(self.w, self.run, self.repo)?),
        })
    }
}

impl Tally for StoredTally<'_, '_> {
    type Error = TxError;

    fn stored(&mut self) -> Result<u64, TxError> {
        Ok(self.seen()?.len() as u64)
    }

    fn matching(&mut self, filter: &str) -> Result<u64, TxError> {
        Ok(self
            .seen()?
            .iter()
            .filter(|(tag, _)| tag.contains(filter))
            .count() as u64)
    }
}

/// Marks a repository as listed by `run` and queues its first tag page, unless this run already
/// did ([`policy::listed_again`]).
pub(super) fn start_repo(
    w: &mut WriteBatch<'_>,
    api: &HubApi,
    run: &CrawlRun,
    repo: &RepoName,
) -> Result<Option<(JobId, Job)>, TxError> {
    let old = w.repo(repo)?;
    let Some(state) = policy::listed_again(old.as_ref(), run, clock::now_unix()) else {
        return Ok(None);
    };
    w.put_repo(repo, &state)?;
    let job = Job::new(policy::view_job(api, repo, ListingWindow::Plain));
    let id = w.add_job(&job)?;
    Ok(Some((id, job)))
}

/// The tags of `repo` known to be on Hub: those `run` stored, and in a refresh also those
/// earlier runs stored and none has found deleted (a refresh does not re-read unchanged tags).
fn known_tags(
    w: &WriteBatch<'_>,
    run: &CrawlRun,
    repo: &RepoName,
) -> Result<Vec<(String, TagState)>, TxError> {
    let refresh = run.mode == RunMode::Refresh;
    let mut tags = w.repo_tags(repo)?;
    tags.retain(|(_, t)| t.run == run.id || (refresh && t.deleted_at.is_none()));
    Ok(tags)
}

/// Plans the gaps of a run that ended incomplete again, for `crawl --resume`: every repository
/// of `run` whose tags did not reach Hub's count is listed again ([`policy::replan`]), and a
/// repository list that gave fewer repositories than Hub counts is read again. Returns the
/// number of jobs queued.
pub(super) fn replan_gaps(
    w: &mut WriteBatch<'_>,
    api: &HubApi,
    run: &CrawlRun,
) -> Result<u64, TxError> {
    let mut queued = 0;
    let repos = w.repos()?;
    let listed = repos.iter().filter(|(_, s)| s.run == run.id).count() as u64;
    for (name, mut state) in repos {
        if state.run != run.id || state.complete != Some(false) {
            continue;
        }
        let Some(repo) = name
            .split_once('/')
            .and_then(|(ns, n)| RepoName::new(ns, n).ok())
        else {
            continue;
        };
        let mut names = w.tag_names(&repo, run.id)?;
        let window = policy::replan(&mut state, &mut names, &known_tags(w, run, &repo)?);
        if let Some(names) = &names {
            w.set_tag_names(&repo, names)?;
        }
        w.put_repo(&repo, &state)?;
        w.add_job(&Job::new(policy::view_job(api, &repo, window)))?;
        queued += 1;
    }
    let stats = w.stats()?;
    if run.repos.is_empty() && stats.repo_count.is_some_and(|count| listed < count) {
        w.add_job(&Job::new(JobKind::Repos {
            namespace: run.namespace.clone(),
            url: api.repositories_url(&run.namespace, false).to_string(),
            descending: false,
        }))?;
        queued += 1;
    }
    Ok(queued)
}

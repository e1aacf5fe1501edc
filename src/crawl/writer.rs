//! The store writer: the one place a crawl commits, and the place that decides what a committed
//! page leads to.
//!
//! A repository-list page spawns one tag listing per repository new to this run and the next
//! page. A tag page stores its tags and spawns the next page of the same view. When a view of a
//! repository ends, [`WriterCtx::plan`] compares the distinct tags stored by this run with Hub's
//! `count` and decides what comes next:
//! - all seen: the repository is complete. Tags Hub lists but the crawl skips (invalid names,
//!   malformed objects) count as seen ([`RepoState::skipped_names`]), since Hub counts them;
//! - in a refresh, a page that ends with a tag unchanged since an earlier run (same digests, same
//!   `last_updated`, the key Hub sorts tag listings by): nothing below it changed, so the
//!   repository is done, provided the tags known then reach Hub's count. If they do not (an
//!   earlier run left a gap), or the repository's last listing did not end complete, the refresh
//!   reads its whole listing instead ([`RepoState::full_read`]): a refresh never turns an
//!   incomplete repository complete without reading the gap;
//! - the plain listing ended short without being capped: the listing changed while it was read
//!   (a tag pushed or moved shifts later pages), so it is read again, at most [`MAX_RELISTS`] times;
//! - the plain listing hit the anonymous paging cap (offset 1000): the oldest-first view gives
//!   another 1000; after that, `name`-filtered views (each newest-first, then oldest-first if it
//!   is capped too) chosen by [`next_filter`] cover the middle, until `count` is reached or no
//!   filter is left (the repository is then marked incomplete).
//!   When a registry is configured (anonymous crawls only: signed in there is no cap), the
//!   oldest-first view is followed instead by the registry's list of every tag name
//!   ([`JobKind::TagNames`], its pages stored in [`TagNames`]), and the cover is planned from the
//!   names ([`super::plan`]): the planned pages ([`ListingWindow::Planned`]) are read at once, and
//!   when the last of a round is committed the plan is made again from what is stored, until
//!   every name is stored or [`MAX_COVER_ROUNDS`] rounds are spent. When the registry cannot be
//!   asked, the `name` filters above take over.
//!
//! A repository list capped at offset 100 is read again by descending name, for another 100.
//!
//! A 404 on page 1 of a tag listing means the repository is not on Hub: it is done, marked
//! vanished, its stored tags stop being current, and the run's gaps name it. A 404 on a later page
//! ends that view, planned like any other end of a view.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::plan::{self, MAX_COVER_ROUNDS, StoredTag, VIEW_DEPTH, words};
use super::queue::JobQueue;
use super::{JOB_RETRY_MAX, Listing, MAX_ATTEMPTS, Outcome, PageData, Progress};
use crate::clock;
use crate::hub::{HubApi, PAGE_SIZE};
use crate::model::RepoName;
use crate::net::{NetStats, Pacer};
use crate::registry::RegistryClient;
use crate::store::{
    CrawlRun, FailedJob, Job, JobId, JobKind, ListingWindow, MissingRepo, RepoState, RunMode,
    RunStats, Store, StoreError, TagNames, TagState, TxError, WriteBatch, name_hash,
};

/// Most outcomes committed in one transaction: amortises the fsync without delaying progress.
const MAX_BATCH: usize = 64;
/// Re-readings of a plain listing that changed while it was read, before giving up on it.
pub const MAX_RELISTS: u32 = 2;
/// Most `name` filters the cover tries for one repository.
pub const MAX_FILTERS: usize = 64;
/// A `count` above this is not believed (Hub's largest repositories hold thousands of tags).
pub const MAX_PLAUSIBLE_COUNT: u64 = 1_000_000;
/// A filter matching more known tags than this would mostly re-read them; tried last.
const BROAD_FILTER: usize = 900;

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
    ) -> Self {
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
                        self.follow_next(w, *id, job, page, &mut applied)?;
                        for repo in repos {
                            if let Some(spawned) = start_repo(w, &self.api, &self.run, repo)? {
                                applied.ready.push(spawned);
                                applied.new_repos += 1;
                            }
                        }
                        if matches!(page.next, Ok(None)) {
                            self.repo_list_done(w, stats)?;
                        }
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
                            names.names.retain(|n| n != name);
                            w.set_tag_names(repo, &names)?;
                        }
                        self.planned_page_done(w, repo, &mut applied)?;
                    }
                    JobKind::Tags { repo, window, .. } => {
                        let mut state = self.repo_state(w, repo)?;
                        let now = clock::now_unix();
                        self.plan(w, repo, window, false, &mut state, now, &mut applied)?;
                        w.put_repo(repo, &state)?;
                    }
                }
            }
            Outcome::Capped => {
                w.remove_job(*id)?;
                match &job.kind {
                    JobKind::Repos {
                        namespace,
                        descending: false,
                        ..
                    } => {
                        tracing::info!(
                            "the repository list of {namespace} is capped for anonymous clients; reading it by descending name too"
                        );
                        stats.repo_list_capped = true;
                        applied.spawn(
                            w,
                            JobKind::Repos {
                                namespace: namespace.clone(),
                                url: self.api.repositories_url(namespace, true).to_string(),
                                descending: true,
                            },
                        )?;
                    }
                    JobKind::Repos { .. } => self.repo_list_done(w, stats)?,
                    JobKind::TagNames { .. } => {}
                    // A plan that met the cap (a tie moved its range): planned again at the end
                    // of the round.
                    JobKind::Tags {
                        repo,
                        window: ListingWindow::Planned { .. } | ListingWindow::Single { .. },
                        ..
                    } => self.planned_page_done(w, repo, &mut applied)?,
                    JobKind::Tags { repo, window, .. } => {
                        let mut state = self.repo_state(w, repo)?;
                        let now = clock::now_unix();
                        if *window == ListingWindow::Plain && !state.capped {
                            let distinct = self.seen(w, repo)?.len() as u64;
                            tracing::info!(
                                "{repo}: anonymous paging stops at 1000 tags; covering the rest through other views"
                            );
                            state.capped = true;
                            state.at_cap = (distinct, state.requests);
                        }
                        self.plan(w, repo, window, true, &mut state, now, &mut applied)?;
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
        if transient && attempts < MAX_ATTEMPTS {
            let delay = self
                .job_retry_base
                .saturating_mul(1 << (attempts - 1).min(16))
                .min(JOB_RETRY_MAX);
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
        let current: Vec<String> = tags
            .iter()
            .filter(|(_, t)| t.deleted_at.is_none())
            .map(|(tag, _)| tag.clone())
            .collect();
        w.mark_deleted(repo, &current, now)?;
        if tags.is_empty() {
            tracing::warn!(
                "{repo} is not on Hub ({} answered 404); nothing was stored for it",
                job.kind.url()
            );
        } else {
            tracing::warn!(
                "{repo} is no longer on Hub ({} answered 404); marked vanished, {} of its tags are no longer current",
                job.kind.url(),
                current.len()
            );
        }
        let mut state = self.repo_state(w, repo)?;
        if state.done_at.is_none() {
            applied.repos_done = 1;
        }
        state.done_at = Some(now);
        state.vanished_at = Some(now);
        // Hub has nothing of it, and the store now says so: nothing is missing from coverage.
        state.count = Some(0);
        state.distinct = 0;
        state.complete = Some(true);
        w.put_repo(repo, &state)?;
        let mut gaps = w.gaps(self.run.id)?;
        gaps.missing.retain(|m| m.repo != repo.to_string());
        gaps.missing.push(MissingRepo {
            repo: repo.to_string(),
            url: job.kind.url().to_owned(),
            at: now,
            known_tags: tags.len() as u64,
            retired_tags: current.len() as u64,
        });
        w.set_gaps(&gaps)
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
        let repos = w.repos()?;
        let seen = repos.iter().filter(|(_, s)| s.run == self.run.id).count() as u64;
        match stats.repo_count {
            Some(count) if seen < count => tracing::warn!(
                "the repository list of {} gave {seen} of the {count} repositories Hub counts; name the others with --repo, or sign in",
                self.run.namespace
            ),
            _ => {
                // The whole list was read: a repository it no longer holds has vanished from Hub,
                // and its tags are no longer current.
                let now = clock::now_unix();
                for (name, mut state) in repos {
                    if state.run == self.run.id || state.vanished_at.is_some() {
                        continue;
                    }
                    let Some(repo) = name
                        .split_once('/')
                        .and_then(|(ns, n)| RepoName::new(ns, n).ok())
                        .filter(|r| r.namespace == self.run.namespace)
                    else {
                        continue;
                    };
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
        // A refresh reads newest first and stops at the first page that ends with a tag unchanged
        // since an earlier run: a tag changed since then was pushed since then, so it sorts above
        // that one, and every tag below it is unchanged too.
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
        if let ListingWindow::Planned { .. } | ListingWindow::Single { .. } = window {
            // A planned page is read alone; its round is planned again once all are in.
            w.remove_job(id)?;
            w.put_repo(repo, &state)?;
            return self.planned_page_done(w, repo, applied);
        }
        let whole_listing = matches!(window, ListingWindow::Plain | ListingWindow::Oldest);
        if whole_listing && let Some(count) = page.count {
            if count <= MAX_PLAUSIBLE_COUNT {
                state.count = Some(count);
            } else {
                tracing::warn!("{repo}: ignoring Hub's implausible tag count {count}");
            }
        }
        let mut window_done = matches!(page.next, Ok(None));
        if unchanged && !state.full_read {
            let known = self.seen(w, repo)?.len() as u64 + state.skipped_names.len() as u64;
            match state.count {
                Some(count) if known < count => {
                    tracing::info!(
                        "{repo}: {known} tags known of the {count} Hub counts; reading the whole listing"
                    );
                    state.full_read = true;
                }
                _ => {
                    w.remove_job(id)?;
                    self.finish_repo(w, repo, &mut state, known, true, now, applied)?;
                    return w.put_repo(repo, &state);
                }
            }
        }
        if let Ok(Some(_)) = &page.next
            && self.view_exhausted(w, repo, window, &state, page.count)?
        {
            // Every tag this view can show is stored already: no need to read on.
            w.remove_job(id)?;
            window_done = true;
        } else {
            self.follow_next(w, id, job, page, applied)?;
        }
        if window_done {
            self.plan(w, repo, window, false, &mut state, now, applied)?;
        }
        w.put_repo(repo, &state)
    }

    /// Whether a tag is as an earlier run last saw it (see [`unchanged_since`]).
    fn unchanged(
        &self,
        w: &WriteBatch<'_>,
        repo: &RepoName,
        tag: &crate::hub::TagObservation,
    ) -> Result<bool, TxError> {
        Ok(w.tag_state(repo, &tag.tag)?
            .is_some_and(|prev| unchanged_since(&prev, tag, self.run.id)))
    }

    /// Whether a cover view has nothing new left to show.
    fn view_exhausted(
        &self,
        w: &WriteBatch<'_>,
        repo: &RepoName,
        window: &ListingWindow,
        state: &RepoState,
        view_count: Option<u64>,
    ) -> Result<bool, TxError> {
        Ok(match window {
            ListingWindow::Plain | ListingWindow::Planned { .. } | ListingWindow::Single { .. } => {
                false
            }
            ListingWindow::Oldest => state.count.is_some_and(|c| {
                self.seen(w, repo).map_or(0, |s| s.len() as u64) + state.skipped_names.len() as u64
                    >= c
            }),
            ListingWindow::Filter { name, .. } => match view_count {
                Some(count) => {
                    let matching = self
                        .seen(w, repo)?
                        .iter()
                        .filter(|(tag, _)| tag.contains(name.as_str()))
                        .count() as u64;
                    matching >= count
                }
                None => false,
            },
        })
    }

    /// Decides what follows a finished view of `repo` (see the module doc).
    #[allow(clippy::too_many_arguments)]
    fn plan(
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
        let distinct = seen.len() as u64 + state.skipped_names.len() as u64;
        let complete = match state.count {
            Some(count) => distinct >= count,
            // Without a count, a plain listing read to its end is all there is.
            None => *window == ListingWindow::Plain && !capped,
        };
        if complete {
            return self.finish_repo(w, repo, state, distinct, true, now, applied);
        }
        // A capped repository whose oldest-first view is read: ask the registry for every name
        // and plan the rest, unless it could not be asked (then `name` filters, below).
        if let Some(registry) = self.registry.as_ref().filter(|_| state.capped)
            && *window != ListingWindow::Plain
        {
            match w.tag_names(repo, self.run.id)? {
                None => {
                    w.set_tag_names(
                        repo,
                        &TagNames {
                            run: self.run.id,
                            ..TagNames::default()
                        },
                    )?;
                    let url = registry.tags_first_page(&repo.to_string());
                    return applied.spawn(
                        w,
                        JobKind::TagNames {
                            repo: repo.clone(),
                            url: url.url().to_string(),
                        },
                    );
                }
                Some(names) if names.unavailable.is_none() && names.done => {
                    return self.cover_round(w, repo, state, now, applied);
                }
                // Its names are being read; the last page plans the cover.
                Some(names) if names.unavailable.is_none() => return Ok(()),
                Some(_) => {}
            }
        }
        let tags_url = |ordering: Option<&str>, name: Option<&str>| {
            self.api.tags_url_with(repo, ordering, name).to_string()
        };
        let next = match window {
            ListingWindow::Plain if !capped => {
                if state.relists >= MAX_RELISTS {
                    None
                } else {
                    state.relists += 1;
                    tracing::warn!(
                        "{repo}: the listing changed while it was read ({distinct} of {} tags seen); reading it again",
                        state.count.unwrap_or(0)
                    );
                    Some(JobKind::Tags {
                        repo: repo.clone(),
                        url: tags_url(None, None),
                        window: ListingWindow::Plain,
                    })
                }
            }
            ListingWindow::Plain => Some(JobKind::Tags {
                repo: repo.clone(),
                url: tags_url(Some("-last_updated"), None),
                window: ListingWindow::Oldest,
            }),
            ListingWindow::Filter {
                name,
                oldest: false,
            } if capped => Some(JobKind::Tags {
                repo: repo.clone(),
                url: tags_url(Some("-last_updated"), Some(name)),
                window: ListingWindow::Filter {
                    name: name.clone(),
                    oldest: true,
                },
            }),
            _ if state.filters.len() >= MAX_FILTERS => None,
            _ => next_filter(&seen, &state.filters).map(|name| {
                state.filters.push(name.clone());
                JobKind::Tags {
                    repo: repo.clone(),
                    url: tags_url(Some("last_updated"), Some(&name)),
                    window: ListingWindow::Filter {
                        name,
                        oldest: false,
                    },
                }
            }),
        };
        match next {
            Some(kind) => applied.spawn(w, kind),
            None => self.finish_repo(w, repo, state, distinct, false, now, applied),
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
        // Names come from the network: only those Docker's grammar allows can be tags at all
        // (Hub's listing of any other is skipped, and counted as seen, as always).
        let valid = names
            .iter()
            .filter(|n| crate::model::validate_tag(n).is_ok());
        stored.names.extend(valid.cloned());
        self.follow_next(w, id, job, page, applied)?;
        if matches!(page.next, Ok(None)) {
            stored.done = true;
            stored.names.sort_unstable();
            stored.names.dedup();
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
        self.plan(
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
        names.pending = names.pending.saturating_sub(1);
        w.set_tag_names(repo, &names)?;
        if names.pending > 0 {
            return Ok(());
        }
        let mut state = self.repo_state(w, repo)?;
        self.cover_round(w, repo, &mut state, clock::now_unix(), applied)?;
        w.put_repo(repo, &state)
    }

    /// Plans (again) the pages that reach `repo`'s names not yet stored, and queues them; with
    /// none missing the repository is complete, and after [`MAX_COVER_ROUNDS`] it is incomplete.
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
        let distinct = seen.len() as u64 + state.skipped_names.len() as u64;
        let stored: Vec<StoredTag> = seen
            .into_iter()
            .map(|(name, t)| StoredTag {
                name,
                updated: t.updated,
            })
            .collect();
        let skipped = |name: &str| state.skipped_names.binary_search(&name_hash(name)).is_ok();
        let cover = plan::plan_cover(
            &names.names,
            &stored,
            &skipped,
            VIEW_DEPTH,
            PAGE_SIZE as usize,
        );
        if cover.missing == 0 {
            return self.finish_repo(w, repo, state, distinct, true, now, applied);
        }
        if names.rounds >= MAX_COVER_ROUNDS
            || (cover.pages.is_empty() && cover.unreachable.is_empty())
        {
            tracing::warn!(
                "{repo}: {} tag names the registry lists were not found in any view below the cap",
                cover.missing
            );
            return self.finish_repo(w, repo, state, distinct, false, now, applied);
        }
        names.rounds += 1;
        names.pending = (cover.pages.len() + cover.unreachable.len()) as u32;
        for page in &cover.pages {
            if !state.filters.contains(&page.filter) {
                state.filters.push(page.filter.clone());
            }
        }
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
        }
        for page in cover.pages {
            let ordering = if page.oldest {
                "-last_updated"
            } else {
                "last_updated"
            };
            let mut url = self
                .api
                .tags_url_with(repo, Some(ordering), Some(&page.filter));
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = match k.as_ref() {
                        "page" => page.page.to_string(),
                        "page_size" => page.size.to_string(),
                        _ => v.into_owned(),
                    };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
            applied.spawn(
                w,
                JobKind::Tags {
                    repo: repo.clone(),
                    url: url.to_string(),
                    window: ListingWindow::Planned {
                        name: page.filter,
                        oldest: page.oldest,
                    },
                },
            )?;
        }
        for name in cover.unreachable {
            let mut url = self.api.tags_url(repo);
            url.set_query(None);
            url.path_segments_mut()
                .expect("validated as a hierarchical URL")
                .push(&name);
            applied.spawn(
                w,
                JobKind::Tags {
                    repo: repo.clone(),
                    url: url.to_string(),
                    window: ListingWindow::Single { name },
                },
            )?;
        }
        Ok(())
    }

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
        if state.done_at.is_none() {
            applied.repos_done = 1;
        }
        state.done_at = Some(now);
        state.distinct = distinct;
        state.complete = Some(complete);
        // A full, complete listing that did not show a tag means Hub no longer has it.
        if complete && self.run.mode == RunMode::Full {
            let gone: Vec<String> = w
                .repo_tags(repo)?
                .into_iter()
                .filter(|(_, t)| t.run != self.run.id && t.deleted_at.is_none())
                .map(|(tag, _)| tag)
                .collect();
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

/// Marks a repository as listed by `run` and queues its first tag page, unless this run already
/// did (a repository can appear on two repository pages when the listing shifts). A repository
/// whose last listing did not end complete is read whole ([`RepoState::full_read`]); a refresh
/// keeps counting the names earlier runs skipped, as it keeps counting their tags.
pub(super) fn start_repo(
    w: &mut WriteBatch<'_>,
    api: &HubApi,
    run: &CrawlRun,
    repo: &RepoName,
) -> Result<Option<(JobId, Job)>, TxError> {
    let old = w.repo(repo)?;
    if old.as_ref().is_some_and(|s| s.run == run.id) {
        return Ok(None);
    }
    let mut state = RepoState::new(run.id, clock::now_unix());
    if let Some(old) = old {
        state.full_read = old.complete != Some(true);
        if run.mode == RunMode::Refresh {
            state.skipped_names = old.skipped_names;
        }
    }
    w.put_repo(repo, &state)?;
    let job = Job::new(JobKind::Tags {
        repo: repo.clone(),
        url: api.tags_url(repo).to_string(),
        window: ListingWindow::Plain,
    });
    let id = w.add_job(&job)?;
    Ok(Some((id, job)))
}

/// Whether `tag`, listed by run `run`, is as an earlier run last saw it (`prev`): not found
/// deleted since, the same digests, and the same `last_updated`, the time Hub sorts tag listings
/// by. The push time is not enough: a tag whose `last_updated` moved sorts higher even if it was
/// not pushed again, and a stop there would skip changed tags below it. A tag stored without
/// `last_updated` (before digestmap kept it) never counts as unchanged.
fn unchanged_since(prev: &TagState, tag: &crate::hub::TagObservation, run: u64) -> bool {
    prev.run != run
        && prev.deleted_at.is_none()
        && prev.digest == tag.digest
        && prev.updated.is_some()
        && prev.updated == tag.updated
        && prev.digests.len() == tag.facts.len()
        && prev
            .digests
            .iter()
            .zip(&tag.facts)
            .all(|(d, f)| *d == f.digest)
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
/// of `run` whose tags did not reach Hub's count is listed again (a capped one from the cover's
/// first filter, its filters forgotten, since they did not reach the rest; another from its
/// plain listing, read whole), and a repository list that gave fewer repositories than Hub
/// counts is read again. Returns the number of jobs queued.
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
        state.complete = None;
        state.done_at = None;
        state.full_read = true;
        state.relists = 0;
        state.filters.clear();
        // The registry's names are kept and the cover is planned afresh from them; names never
        // read whole (the registry was down) are asked for again.
        if let Some(mut names) = w.tag_names(&repo, run.id)? {
            if names.done && names.unavailable.is_none() {
                names.rounds = 0;
                names.pending = 0;
            } else {
                names = TagNames::default();
            }
            w.set_tag_names(&repo, &names)?;
        }
        let (url, window) = match next_filter(&known_tags(w, run, &repo)?, &[]) {
            Some(name) if state.capped => {
                state.filters.push(name.clone());
                (
                    api.tags_url_with(&repo, Some("last_updated"), Some(&name)),
                    ListingWindow::Filter {
                        name,
                        oldest: false,
                    },
                )
            }
            _ => (api.tags_url(&repo), ListingWindow::Plain),
        };
        w.put_repo(&repo, &state)?;
        w.add_job(&Job::new(JobKind::Tags {
            repo,
            url: url.to_string(),
            window,
        }))?;
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

/// Chooses the next `name` filter for a capped repository.
///
/// The tags still missing are the middle of the listing by push time: the newest 1000 and the
/// oldest 1000 are stored. Tags pushed together share words (a version line, a variant), so the
/// words of the stored tags nearest that middle are the filters most likely to reach the missing
/// ones. A word matching very many stored tags would mostly re-read them, so such words come last;
/// single characters are the last resort.
pub fn next_filter(seen: &[(String, TagState)], tried: &[String]) -> Option<String> {
    let mut by_time: Vec<(&str, &str)> = seen
        .iter()
        .map(|(tag, state)| (state.pushed.as_deref().unwrap_or(""), tag.as_str()))
        .collect();
    by_time.sort_unstable();
    let middle = by_time.len() / 2;
    let near = &by_time[middle.saturating_sub(100)..(middle + 100).min(by_time.len())];

    let mut frequency: HashMap<&str, usize> = HashMap::new();
    for (tag, _) in seen {
        let mut words = words(tag);
        words.sort_unstable();
        words.dedup();
        for word in words {
            *frequency.entry(word).or_default() += 1;
        }
    }
    let mut score: HashMap<&str, usize> = HashMap::new();
    for (_, tag) in near {
        for word in words(tag) {
            *score.entry(word).or_default() += 1;
        }
    }
    let untried = |w: &&str| !tried.iter().any(|t| t == w);
    let best = score
        .iter()
        .filter(|(w, _)| untried(w))
        .filter(|(w, _)| frequency.get(*w).copied().unwrap_or(0) <= BROAD_FILTER)
        // Most frequent near the middle first; then rarer overall (fewer known tags to re-read);
        // then by name, so the choice is deterministic.
        .max_by(|a, b| {
            a.1.cmp(b.1)
                .then_with(|| frequency[b.0].cmp(&frequency[a.0]))
                .then_with(|| b.0.cmp(a.0))
        })
        .map(|(w, _)| (*w).to_owned());
    best.or_else(|| {
        let mut rest: Vec<&str> = frequency.keys().copied().filter(untried).collect();
        rest.sort_unstable_by_key(|w| (frequency[w], *w));
        rest.first().map(|w| (*w).to_owned())
    })
    .or_else(|| {
        "abcdefghijklmnopqrstuvwxyz0123456789"
            .chars()
            .map(String::from)
            .find(|c| untried(&c.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(pushed: &str) -> TagState {
        TagState {
            digest: None,
            digests: Vec::new(),
            pushed: Some(pushed.to_owned()),
            updated: Some(pushed.to_owned()),
            first_seen: 0,
            last_seen: 0,
            run: 1,
            deleted_at: None,
        }
    }

    #[test]
    fn a_refresh_stops_only_at_a_tag_unchanged_in_the_order_hub_sorts_by() {
        use crate::hub::{DigestFact, TagObservation};
        use crate::model::{Digest, ObjectKind};
        let d = |n: u8| Digest::from_bytes([n; 32]);
        let seen = |updated: Option<&str>, digests: &[u8]| TagObservation {
            tag: "t".into(),
            digest: Some(d(digests[0])),
            pushed: Some("2026-01-01T00:00:00Z".into()),
            updated: updated.map(str::to_owned),
            facts: digests
                .iter()
                .map(|n| DigestFact {
                    digest: d(*n),
                    kind: ObjectKind::Manifest,
                    platform: None,
                    os_version: None,
                    index: None,
                })
                .collect(),
        };
        let prev = |updated: Option<&str>, run: u64, deleted: bool| TagState {
            digest: Some(d(1)),
            digests: vec![d(1), d(2)],
            pushed: Some("2026-01-01T00:00:00Z".into()),
            updated: updated.map(str::to_owned),
            first_seen: 0,
            last_seen: 0,
            run,
            deleted_at: deleted.then_some(5),
        };
        let old = Some("2026-01-02T00:00:00Z");
        let new = Some("2026-03-01T00:00:00Z");
        // (stored, listed now, unchanged?)
        let table = [
            (prev(old, 1, false), seen(old, &[1, 2]), true),
            // Same push time, same digests, but updated since: it sorts higher now.
            (prev(old, 1, false), seen(new, &[1, 2]), false),
            (prev(old, 1, false), seen(old, &[1, 3]), false),
            (prev(old, 1, false), seen(old, &[1]), false),
            (prev(old, 1, true), seen(old, &[1, 2]), false),
            // Stored by this run: nothing to compare with.
            (prev(old, 2, false), seen(old, &[1, 2]), false),
            // Stored before digestmap kept `last_updated`.
            (prev(None, 1, false), seen(None, &[1, 2]), false),
        ];
        for (i, (stored, listed, want)) in table.iter().enumerate() {
            assert_eq!(unchanged_since(stored, listed, 2), *want, "row {i}");
        }
    }

    #[test]
    fn filters_aim_at_the_middle_and_are_not_repeated() {
        let seen: Vec<(String, TagState)> = [
            ("3.13.1", "2026-01"),
            ("3.13.0", "2025-12"),
            ("3.9.2", "2021-02"),
            ("3.9.1", "2021-01"),
            ("3.11.4-slim", "2023-06"),
            ("3.11.3-slim", "2023-05"),
        ]
        .into_iter()
        .map(|(t, p)| (t.to_owned(), state(p)))
        .collect();
        let first = next_filter(&seen, &[]).unwrap();
        let second = next_filter(&seen, std::slice::from_ref(&first)).unwrap();
        assert_ne!(first, second);
        let mut tried = Vec::new();
        while let Some(f) = next_filter(&seen, &tried) {
            assert!(!tried.contains(&f));
            tried.push(f);
        }
        assert!(
            tried.len() > 36,
            "words, then every single character: {tried:?}"
        );
    }
}

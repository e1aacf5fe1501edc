//! What a committed page leads to, decided from what the store holds. Pure: the store writer
//! (`crawl::writer`) reads the inputs in its transaction, calls these functions, and commits what
//! they return (jobs to queue, a repository done, tags marked deleted); nothing here reads or
//! writes the store, the network or the clock.
//!
//! The decisions, in the order a repository meets them:
//! - a repository new to the run is read from its plain listing; one whose last listing did not
//!   end complete is read whole ([`RepoState::full_read`]), and a refresh keeps counting the names
//!   earlier runs skipped ([`listed_again`]);
//! - after each page of a paged view ([`after_tag_page`]):
//!   - in a refresh, a plain page that ends with a tag unchanged since an earlier run (same
//!     digests, same `last_updated`, the key Hub sorts tag listings by, [`unchanged_since`]) means
//!     nothing below it changed: the repository is done, provided the tags known then reach Hub's
//!     count. If they do not (an earlier run left a gap), or the repository's last listing did not
//!     end complete, the refresh reads its whole listing instead: a refresh never turns an
//!     incomplete repository complete without reading the gap;
//!   - a view whose tags are all stored already (the oldest-first view once every tag Hub counts
//!     is known, a `name` view once its `count` of tags is stored) ends without reading on;
//!   - an anonymous view whose next page starts at or past offset [`VIEW_DEPTH`] (1000) ends at
//!     the cap when the cap is expected ([`RunFacts::cap_expected`]): Hub would answer that page
//!     403, so it is not asked for. A 403 that comes anyway (the first on another origin, or a
//!     cap lower than expected) ends the view the same way;
//!   - otherwise the next page is read;
//! - when a view ends ([`after_view`]), the distinct tags stored (plus the names Hub lists that
//!   the crawl skips, [`RepoState::skipped_names`], since Hub counts them) are compared with Hub's
//!   `count`:
//!   - all seen: the repository is complete. A full run (`--full`) then marks every tag of the
//!     repository it did not see as deleted ([`deleted_tags`]); a refresh, which does not re-read
//!     unchanged tags, and an incomplete listing never do;
//!   - the plain listing ended short without being capped: the listing changed while it was read
//!     (a tag pushed or moved shifts later pages), so it is read again, at most [`MAX_RELISTS`]
//!     times, then the repository is incomplete;
//!   - the plain listing ended at the cap: the oldest-first view gives another 1000;
//!   - after that, with a registry (anonymous crawls only), its list of every tag name is read and
//!     the cover is planned from the names ([`cover_round`], [`super::plan`]): the planned pages
//!     are read at once, and when the last of a round is in ([`round_page_done`]) the plan is made
//!     again from what is stored (a tie in push time or a push during the crawl shifts a tag by a
//!     position, and the next round reads the neighbouring page), until every name is stored or
//!     [`MAX_COVER_ROUNDS`] rounds are spent;
//!   - without a registry, or when it cannot be asked, `name`-filtered views (each newest-first,
//!     then oldest-first if it is capped too) chosen by [`next_filter`] cover the middle, until
//!     `count` is reached or [`MAX_FILTERS`] were tried (the repository is then incomplete);
//! - a 404 on page 1 of a repository's tag listing (the repository is not on Hub): it is done,
//!   vanished and complete, its current tags stop being current, and the run's gaps name it
//!   ([`repo_gone`]); a tag asked for by name that answers 404 was deleted since the registry
//!   listed it, and leaves the names to reach ([`tag_gone`]);
//! - a run that ended incomplete and is resumed plans each gap again ([`replan`]);
//! - the repository list is read by ascending name; where its next page would start at offset
//!   [`REPO_LIST_DEPTH`] (100) with the cap expected, or Hub answered 403 there, it is read again
//!   by descending name, for another 100 ([`after_repo_page`], [`at_repo_cap`]);
//! - a repository list read whole marks the repositories it no longer holds as vanished; one
//!   shorter than Hub's count (capped) concludes nothing ([`repo_list_done`]).
//!
//! And around them:
//! - which caps a run expects ([`expected_caps`]): anonymous on Docker Hub's own origin
//!   (`https://hub.docker.com`), both (tags at 1000, repositories at 100) from the start, so
//!   neither costs a 403; anonymous elsewhere, those the store learned of that very origin from
//!   its first 403 of each kind ([`cap_met`]; kept per origin, so a store crawled at another
//!   origin does not presume that one caps); signed in, none;
//! - a failed job's retry schedule ([`retry_delay`]): 1 s, 2 s, 4 s, 8 s, then failed;
//! - the registry's tag-name pages gathered into the names the cover reaches for
//!   ([`gather_names`]).

use std::collections::HashMap;
use std::time::Duration;

use url::Url;

use super::plan::{self, CoverPlan, MAX_COVER_ROUNDS, PlannedPage, StoredTag, VIEW_DEPTH, words};
use super::{JOB_RETRY_MAX, MAX_ATTEMPTS};
use crate::hub::{HubApi, PAGE_SIZE, TagObservation};
use crate::model::RepoName;
use crate::net::auth::DOCKER_HUB_ORIGIN;
use crate::store::{
    CrawlRun, JobKind, ListingWindow, MissingRepo, PagingCaps, RepoState, RunGaps, RunMode,
    TagNames, TagState, name_hash,
};

/// Re-readings of a plain listing that changed while it was read, before giving up on it.
pub const MAX_RELISTS: u32 = 2;
/// Most `name` filters the cover tries for one repository.
pub const MAX_FILTERS: usize = 64;
/// A `count` above this is not believed (Hub's largest repositories hold thousands of tags).
pub const MAX_PLAUSIBLE_COUNT: u64 = 1_000_000;
/// A filter matching more known tags than this would mostly re-read them; tried last.
const BROAD_FILTER: usize = 900;

/// Where Hub's anonymous repository list stops: a page starting at this offset is answered 403.
pub const REPO_LIST_DEPTH: u64 = 100;

/// What the run is, as far as the decisions care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunFacts {
    /// A full crawl or a refresh.
    pub mode: RunMode,
    /// The anonymous paging caps the run expects ([`expected_caps`]): tag listings at offset
    /// [`VIEW_DEPTH`], the repository list at [`REPO_LIST_DEPTH`]. A page past an expected cap
    /// is not asked for.
    pub caps: PagingCaps,
    /// A registry can be asked for a repository's tag names.
    pub registry: bool,
}

/// What a committed page says of the page after it.
#[derive(Debug, Clone, Copy)]
pub enum NextLink<'a> {
    /// This was the last page of the view.
    Last,
    /// This page follows.
    Following(&'a Url),
    /// The page's `next` link was refused: the job fails, naming it.
    Refused,
}

/// Counts of the stored tags, read only when a decision needs one: counting every stored tag of
/// a large repository on each of its pages would cost more than storing the page.
pub trait Tally {
    /// Why the store could not be read.
    type Error;
    /// Distinct tags of the repository known to be on Hub (see `known_tags` in the writer).
    fn stored(&mut self) -> Result<u64, Self::Error>;
    /// Those of them whose name contains `filter`.
    fn matching(&mut self, filter: &str) -> Result<u64, Self::Error>;
}

/// Where a view goes after one of its pages is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStep {
    /// A page the cover planned (or one tag by name) is in: it counts toward its round.
    RoundPage,
    /// A refresh stop: nothing below this page changed since an earlier run, and the tags known
    /// (`known`, skipped names included) reach Hub's count. The repository is done, complete.
    RefreshStop {
        /// Tags known, skipped names included.
        known: u64,
    },
    /// Queue the following page of the view.
    Follow,
    /// The `next` link was refused: the job fails.
    Refused,
    /// The view ends here; what follows is [`after_view`]'s to decide.
    ViewEnds {
        /// It ended at the anonymous cap (the page after it would start at offset 1000).
        capped: bool,
    },
}

/// Decides what follows a committed page of `window` (see the module doc). `unchanged`: in a
/// refresh, the page is of the plain view and its last tag is as an earlier run saw it. `state`
/// is the repository's, with this page's count and skipped names recorded; a refresh that finds
/// its known tags short of the count sets [`RepoState::full_read`].
pub fn after_tag_page<T: Tally>(
    run: &RunFacts,
    state: &mut RepoState,
    window: &ListingWindow,
    view_count: Option<u64>,
    next: NextLink<'_>,
    unchanged: bool,
    tally: &mut T,
) -> Result<PageStep, T::Error> {
    if let ListingWindow::Planned { .. } | ListingWindow::Single { .. } = window {
        // A planned page is read alone; its round is planned again once all are in.
        return Ok(PageStep::RoundPage);
    }
    if unchanged && !state.full_read {
        let known = tally.stored()? + state.skipped_names.len() as u64;
        match state.count {
            Some(count) if known < count => state.full_read = true,
            _ => return Ok(PageStep::RefreshStop { known }),
        }
    }
    let url = match next {
        NextLink::Refused => return Ok(PageStep::Refused),
        NextLink::Last => return Ok(PageStep::ViewEnds { capped: false }),
        NextLink::Following(url) => url,
    };
    // Every tag this view can show is stored already: no need to read on.
    let exhausted = match window {
        ListingWindow::Oldest => match state.count {
            Some(count) => tally.stored()? + state.skipped_names.len() as u64 >= count,
            None => false,
        },
        ListingWindow::Filter { name, .. } => match view_count {
            Some(count) => tally.matching(name)? >= count,
            None => false,
        },
        _ => false,
    };
    Ok(if exhausted {
        PageStep::ViewEnds { capped: false }
    } else if run.caps.tags && beyond_cap(url) {
        PageStep::ViewEnds { capped: true }
    } else {
        PageStep::Follow
    })
}

/// Whether an anonymous client asking for the tag page `url` gets Hub's 403: the page starts at
/// or past offset [`VIEW_DEPTH`].
pub fn beyond_cap(url: &Url) -> bool {
    starts_past(url, VIEW_DEPTH as u64)
}

/// Whether the page `url` starts at or past offset `depth`. A URL without a readable `page` or
/// `page_size` is not presumed capped (a 403 would tell).
fn starts_past(url: &Url, depth: u64) -> bool {
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<u64>().ok())
    };
    match (param("page").unwrap_or(1), param("page_size")) {
        (page, Some(size)) => page.saturating_sub(1).saturating_mul(size) >= depth,
        _ => false,
    }
}

/// The anonymous paging caps a run of the Hub origin `origin` expects. Signed in, none (Hub does
/// not cap signed-in listings). Anonymous on Docker Hub's own origin ([`DOCKER_HUB_ORIGIN`]),
/// both, from the start: its caps are documented and stable, so not even the first page past
/// them is asked for. Anonymous elsewhere (a mirror, a double), those the store `learned` of
/// that origin ([`cap_met`]), so another origin is never presumed to cap like Docker Hub.
pub fn expected_caps(origin: &str, anonymous: bool, learned: PagingCaps) -> PagingCaps {
    match (anonymous, origin.trim_end_matches('/') == DOCKER_HUB_ORIGIN) {
        (false, _) => PagingCaps::default(),
        (true, true) => PagingCaps {
            tags: true,
            repos: true,
        },
        (true, false) => learned,
    }
}

/// The listing a 403 `pagination offset too large` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapOf {
    /// A tag listing (a view read from its first page; a planned page that met the cap only
    /// says its plan was off, not that the origin caps).
    Tags,
    /// The repository list.
    Repos,
}

/// Records in `caps` what a 403 `pagination offset too large` on `of` teaches: from now on, an
/// anonymous run asks for no page past that cap. True when it is news (so the store keeps it
/// for the origin); a signed-in run learns nothing (it is not capped the way anonymous ones
/// are).
pub fn cap_met(caps: &mut PagingCaps, anonymous: bool, of: CapOf) -> bool {
    let known = match of {
        CapOf::Tags => &mut caps.tags,
        CapOf::Repos => &mut caps.repos,
    };
    let news = anonymous && !*known;
    *known |= anonymous;
    news
}

/// Where the repository list goes after one of its pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoListStep {
    /// Queue the following page.
    Follow,
    /// The `next` link was refused: the job fails.
    Refused,
    /// The name-ascending list ended at the cap: read the list by descending name
    /// (`ordering=-name`), which gives the last 100 names, and note the list as capped.
    Descend,
    /// The list is read: what its end means is [`repo_list_done`]'s to decide.
    Done,
}

/// Decides what follows a committed page of the repository list (`descending`: the
/// `ordering=-name` one). With the repository cap expected, a list whose next page starts at or
/// past offset [`REPO_LIST_DEPTH`] ends there, as if Hub had answered that page 403
/// ([`at_repo_cap`]).
pub fn after_repo_page(run: &RunFacts, descending: bool, next: NextLink<'_>) -> RepoListStep {
    match next {
        NextLink::Refused => RepoListStep::Refused,
        NextLink::Last => RepoListStep::Done,
        NextLink::Following(url) if run.caps.repos && starts_past(url, REPO_LIST_DEPTH) => {
            at_repo_cap(descending)
        }
        NextLink::Following(_) => RepoListStep::Follow,
    }
}

/// What follows the end of the repository list at the anonymous cap (met, or expected): the
/// ascending list is read again by descending name; the descending one is done.
pub fn at_repo_cap(descending: bool) -> RepoListStep {
    if descending {
        RepoListStep::Done
    } else {
        RepoListStep::Descend
    }
}

/// The delay before a failed job's next attempt, `attempts` (this one included) made so far:
/// `base` doubled for each attempt after the first, at most [`JOB_RETRY_MAX`]. `None`: the job
/// fails for good, because the failure is not `transient` (an answer that would not change) or
/// the [`MAX_ATTEMPTS`] are spent.
pub fn retry_delay(attempts: u32, transient: bool, base: Duration) -> Option<Duration> {
    (transient && attempts < MAX_ATTEMPTS).then(|| {
        base.saturating_mul(1 << attempts.saturating_sub(1).min(16))
            .min(JOB_RETRY_MAX)
    })
}

/// Adds a page of the registry's tag names to `stored`: only the names Docker's grammar allows
/// can be tags at all (Hub's listing of any other is skipped, and counted as seen, as always).
/// After the `last` page the names are sorted and deduplicated (a registry that pages may repeat
/// a name across pages) and marked read.
pub fn gather_names(stored: &mut TagNames, page: &[String], last: bool) {
    let valid = page
        .iter()
        .filter(|n| crate::model::validate_tag(n).is_ok());
    stored.names.extend(valid.cloned());
    if last {
        stored.done = true;
        stored.names.sort_unstable();
        stored.names.dedup();
    }
}

/// A tag the registry listed that Hub answers 404 for by name was deleted meanwhile: it is no
/// longer a name the cover has to reach.
pub fn tag_gone(stored: &mut TagNames, name: &str) {
    stored.names.retain(|n| n != name);
}

/// What a repository Hub does not have leaves to commit ([`repo_gone`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoGone {
    /// The stored tags that were current: they are to be marked deleted (no longer current).
    pub retired: Vec<String>,
    /// Whether the repository was not done before (it then counts toward the progress of done
    /// repositories).
    pub newly_done: bool,
}

/// Decides what a 404 on page 1 of a repository's tag listing means for the store (that it
/// means the repository is not on Hub is `handler::not_found`'s decision). `tags` are every tag
/// stored for it; `url` the page that answered 404. The repository is done, marked vanished, and
/// complete: Hub has nothing of it and the store now says so, so nothing is missing from
/// coverage. `gaps` (the run's) then names it once, however often it was asked.
pub fn repo_gone(
    state: &mut RepoState,
    gaps: &mut RunGaps,
    repo: &RepoName,
    url: &str,
    tags: &[(String, TagState)],
    now: u64,
) -> RepoGone {
    let retired: Vec<String> = tags
        .iter()
        .filter(|(_, t)| t.deleted_at.is_none())
        .map(|(tag, _)| tag.clone())
        .collect();
    let newly_done = state.done_at.is_none();
    state.done_at = Some(now);
    state.vanished_at = Some(now);
    state.count = Some(0);
    state.distinct = 0;
    state.complete = Some(true);
    let name = repo.to_string();
    gaps.missing.retain(|m| m.repo != name);
    gaps.missing.push(MissingRepo {
        repo: name,
        url: url.to_owned(),
        at: now,
        known_tags: tags.len() as u64,
        retired_tags: retired.len() as u64,
    });
    RepoGone {
        retired,
        newly_done,
    }
}

/// Whether the registry has been asked for a repository's tag names, and how that went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamesState {
    /// Not asked in this run.
    NotAsked,
    /// Its pages are being read.
    Reading,
    /// Every page is read.
    Read,
    /// It could not be asked: the cover uses `name` filters.
    Unavailable,
}

impl NamesState {
    /// The state of `names`, the stored [`TagNames`] of this run.
    pub fn of(names: Option<&TagNames>) -> Self {
        match names {
            None => Self::NotAsked,
            Some(n) if n.unavailable.is_some() => Self::Unavailable,
            Some(n) if n.done => Self::Read,
            Some(_) => Self::Reading,
        }
    }
}

/// What follows the end of a view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewStep {
    /// The repository is done: every tag Hub counts is known (`complete`), or there is nothing
    /// left to try.
    Finish {
        /// Whether every tag Hub counts was seen.
        complete: bool,
        /// Distinct tags seen, skipped names included.
        distinct: u64,
    },
    /// Ask the registry for every tag name; its last page plans the cover.
    AskNames,
    /// Plan a cover round from the names ([`cover_round`]).
    CoverRound,
    /// The names are being read: their last page plans the cover.
    Wait,
    /// Read this view from its first page ([`view_job`]).
    Read(ListingWindow),
}

/// Decides what follows the end of `window` of a repository (see the module doc). `capped`: the
/// view ended at the anonymous cap; `seen` are the tags known to be on Hub; `names` the state of
/// the registry's names. Records in `state` that the plain listing was capped (with the tags and
/// requests at that point), a re-reading, or a filter tried.
pub fn after_view(
    run: &RunFacts,
    state: &mut RepoState,
    window: &ListingWindow,
    capped: bool,
    seen: &[(String, TagState)],
    names: NamesState,
) -> ViewStep {
    if capped && *window == ListingWindow::Plain && !state.capped {
        state.capped = true;
        state.at_cap = (seen.len() as u64, state.requests);
    }
    let distinct = seen.len() as u64 + state.skipped_names.len() as u64;
    let complete = match state.count {
        Some(count) => distinct >= count,
        // Without a count, a plain listing read to its end is all there is.
        None => *window == ListingWindow::Plain && !capped,
    };
    if complete {
        return ViewStep::Finish {
            complete: true,
            distinct,
        };
    }
    // A capped repository whose oldest-first view is read: ask the registry for every name and
    // plan the rest, unless it could not be asked (then `name` filters, below).
    if run.registry && state.capped && *window != ListingWindow::Plain {
        match names {
            NamesState::NotAsked => return ViewStep::AskNames,
            NamesState::Read => return ViewStep::CoverRound,
            NamesState::Reading => return ViewStep::Wait,
            NamesState::Unavailable => {}
        }
    }
    let next = match window {
        ListingWindow::Plain if !capped => (state.relists < MAX_RELISTS).then(|| {
            state.relists += 1;
            ListingWindow::Plain
        }),
        ListingWindow::Plain => Some(ListingWindow::Oldest),
        ListingWindow::Filter {
            name,
            oldest: false,
        } if capped => Some(ListingWindow::Filter {
            name: name.clone(),
            oldest: true,
        }),
        _ if state.filters.len() >= MAX_FILTERS => None,
        _ => next_filter(seen, &state.filters).map(|name| {
            state.filters.push(name.clone());
            ListingWindow::Filter {
                name,
                oldest: false,
            }
        }),
    };
    match next {
        Some(window) => ViewStep::Read(window),
        None => ViewStep::Finish {
            complete: false,
            distinct,
        },
    }
}

/// What a cover round decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoverStep {
    /// Every listed name is stored (or skipped): the repository is complete.
    Complete {
        /// Distinct tags seen, skipped names included.
        distinct: u64,
    },
    /// Names are still missing, and the rounds are spent or no view reaches them: incomplete.
    GiveUp {
        /// Distinct tags seen, skipped names included.
        distinct: u64,
        /// Names the registry lists that were not found.
        missing: usize,
    },
    /// Read these pages (and tags by name): the next round.
    Round(CoverPlan),
}

/// Plans (again) the pages that reach the names of `names` not yet stored (`seen` are the tags
/// known to be on Hub). A new round is counted in `names` (with its pages pending) and its
/// filters in `state`.
pub fn cover_round(
    names: &mut TagNames,
    state: &mut RepoState,
    seen: &[(String, TagState)],
) -> CoverStep {
    let distinct = seen.len() as u64 + state.skipped_names.len() as u64;
    let stored: Vec<StoredTag> = seen
        .iter()
        .map(|(name, t)| StoredTag {
            name: name.clone(),
            updated: t.updated.clone(),
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
        return CoverStep::Complete { distinct };
    }
    if names.rounds >= MAX_COVER_ROUNDS || (cover.pages.is_empty() && cover.unreachable.is_empty())
    {
        return CoverStep::GiveUp {
            distinct,
            missing: cover.missing,
        };
    }
    names.rounds += 1;
    names.pending = (cover.pages.len() + cover.unreachable.len()) as u32;
    for page in &cover.pages {
        if !state.filters.contains(&page.filter) {
            state.filters.push(page.filter.clone());
        }
    }
    CoverStep::Round(cover)
}

/// Counts one page of the current round as in (read, or ended without one); true when it was
/// the last, so the next round is to be planned.
pub fn round_page_done(names: &mut TagNames) -> bool {
    names.pending = names.pending.saturating_sub(1);
    names.pending == 0
}

/// Records in `state` that the run is done with the repository; true when it was not done before
/// (it then counts toward the progress of done repositories).
pub fn finish(state: &mut RepoState, distinct: u64, complete: bool, now: u64) -> bool {
    let newly = state.done_at.is_none();
    state.done_at = Some(now);
    state.distinct = distinct;
    state.complete = Some(complete);
    newly
}

/// Whether finishing a repository (`complete` or not) in `run` may mark tags deleted: only a
/// full run's complete listing shows every tag Hub has.
pub fn marks_deletions(run: &CrawlRun, complete: bool) -> bool {
    complete && run.mode == RunMode::Full
}

/// The tags of a repository that `run` finished with (`complete` or not) to mark deleted: those
/// current ones (`tags` are every tag stored for the repository) a full, complete listing did not
/// show, since Hub no longer has them ([`marks_deletions`]).
pub fn deleted_tags(run: &CrawlRun, complete: bool, tags: &[(String, TagState)]) -> Vec<String> {
    if !marks_deletions(run, complete) {
        return Vec::new();
    }
    tags.iter()
        .filter(|(_, t)| t.run != run.id && t.deleted_at.is_none())
        .map(|(tag, _)| tag.clone())
        .collect()
}

/// What the end of the namespace's repository list means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListEnd {
    /// The list gave fewer repositories than Hub counts (it was capped): nothing can be
    /// concluded of the repositories it did not give.
    Short {
        /// Repositories this run listed.
        seen: u64,
        /// Hub's count.
        count: u64,
    },
    /// The whole list was read: the repositories of the namespace it no longer holds have
    /// vanished from Hub (their tags are no longer current); those are to be marked.
    Whole {
        /// The repositories to mark vanished, with their stored state.
        vanished: Vec<(RepoName, RepoState)>,
    },
}

/// Decides what the end of `run`'s repository list means, from Hub's `count` and every
/// repository stored (`repos`, keyed `namespace/name`).
pub fn repo_list_done(
    run: &CrawlRun,
    count: Option<u64>,
    repos: &[(String, RepoState)],
) -> ListEnd {
    let seen = repos.iter().filter(|(_, s)| s.run == run.id).count() as u64;
    if let Some(count) = count.filter(|c| seen < *c) {
        return ListEnd::Short { seen, count };
    }
    let vanished = repos
        .iter()
        .filter(|(_, s)| s.run != run.id && s.vanished_at.is_none())
        .filter_map(|(name, s)| {
            let (ns, n) = name.split_once('/')?;
            let repo = RepoName::new(ns, n).ok()?;
            (repo.namespace == run.namespace).then(|| (repo, s.clone()))
        })
        .collect();
    ListEnd::Whole { vanished }
}

/// The state of a repository `run` lists, given the state an earlier run left (`old`); `None`
/// when this run listed it already (a repository can appear on two repository pages when the
/// listing shifts). A repository whose last listing did not end complete is read whole; a
/// refresh keeps counting the names earlier runs skipped, as it keeps counting their tags.
pub fn listed_again(old: Option<&RepoState>, run: &CrawlRun, now: u64) -> Option<RepoState> {
    if old.is_some_and(|s| s.run == run.id) {
        return None;
    }
    let mut state = RepoState::new(run.id, now);
    if let Some(old) = old {
        state.full_read = old.complete != Some(true);
        if run.mode == RunMode::Refresh {
            state.skipped_names.clone_from(&old.skipped_names);
        }
    }
    Some(state)
}

/// Plans a gap again, for `crawl --resume` of a run that ended incomplete: returns the view to
/// read, with `state` and `names` (the stored registry names, if any) reset for it. A capped
/// repository restarts its cover: with the registry's names read whole, the cover is planned
/// afresh from them (the rounds start again); names never read whole (the registry was down)
/// are asked for again; without names it starts from the first `name` filter, its earlier
/// filters forgotten, since they did not reach the rest. Another repository reads its plain
/// listing whole.
pub fn replan(
    state: &mut RepoState,
    names: &mut Option<TagNames>,
    seen: &[(String, TagState)],
) -> ListingWindow {
    state.complete = None;
    state.done_at = None;
    state.full_read = true;
    state.relists = 0;
    state.filters.clear();
    if let Some(stored) = names {
        if stored.done && stored.unavailable.is_none() {
            stored.rounds = 0;
            stored.pending = 0;
        } else {
            *stored = TagNames::default();
        }
    }
    match next_filter(seen, &[]) {
        Some(name) if state.capped => {
            state.filters.push(name.clone());
            ListingWindow::Filter {
                name,
                oldest: false,
            }
        }
        _ => ListingWindow::Plain,
    }
}

/// The job reading `window` of `repo` from its first page (a planned page or a single tag is
/// made by [`planned_job`] and [`single_job`]).
pub fn view_job(api: &HubApi, repo: &RepoName, window: ListingWindow) -> JobKind {
    let url = match &window {
        ListingWindow::Oldest => api.tags_url_with(repo, Some("-last_updated"), None),
        ListingWindow::Filter { name, oldest } => {
            let ordering = if *oldest {
                "-last_updated"
            } else {
                "last_updated"
            };
            api.tags_url_with(repo, Some(ordering), Some(name))
        }
        ListingWindow::Plain | ListingWindow::Planned { .. } | ListingWindow::Single { .. } => {
            api.tags_url(repo)
        }
    };
    JobKind::Tags {
        repo: repo.clone(),
        url: url.to_string(),
        window,
    }
}

/// The job reading one page the cover planned.
pub fn planned_job(api: &HubApi, repo: &RepoName, page: &PlannedPage) -> JobKind {
    let ordering = if page.oldest {
        "-last_updated"
    } else {
        "last_updated"
    };
    let mut url = api.tags_url_with(repo, Some(ordering), Some(&page.filter));
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
    JobKind::Tags {
        repo: repo.clone(),
        url: url.to_string(),
        window: ListingWindow::Planned {
            name: page.filter.clone(),
            oldest: page.oldest,
        },
    }
}

/// The job asking for one tag by name (`.../tags/<name>`).
pub fn single_job(api: &HubApi, repo: &RepoName, name: &str) -> JobKind {
    let mut url = api.tags_url(repo);
    url.set_query(None);
    url.path_segments_mut()
        .expect("validated as a hierarchical URL")
        .push(name);
    JobKind::Tags {
        repo: repo.clone(),
        url: url.to_string(),
        window: ListingWindow::Single {
            name: name.to_owned(),
        },
    }
}

/// Whether `tag`, listed by run `run`, is as an earlier run last saw it (`prev`): not found
/// deleted since, the same digests, and the same `last_updated`, the time Hub sorts tag listings
/// by. The push time is not enough: a tag whose `last_updated` moved sorts higher even if it was
/// not pushed again, and a stop there would skip changed tags below it. A tag stored without
/// `last_updated` (before digestmap kept it) never counts as unchanged.
pub fn unchanged_since(prev: &TagState, tag: &TagObservation, run: u64) -> bool {
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
    use crate::store::RunState;

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

    /// `n` distinct stored tags of run 1.
    fn seen(n: usize) -> Vec<(String, TagState)> {
        (0..n)
            .map(|i| {
                (
                    format!("t{i}"),
                    state(&format!("2026-01-01T00:00:{:02}Z", i % 60)),
                )
            })
            .collect()
    }

    fn repo_state(count: Option<u64>) -> RepoState {
        RepoState {
            count,
            ..RepoState::new(1, 0)
        }
    }

    const BOTH_CAPS: PagingCaps = PagingCaps {
        tags: true,
        repos: true,
    };
    const NO_CAPS: PagingCaps = PagingCaps {
        tags: false,
        repos: false,
    };
    const ANONYMOUS: RunFacts = RunFacts {
        mode: RunMode::Full,
        caps: BOTH_CAPS,
        registry: false,
    };
    /// Signed in, or on an origin whose cap is not known yet.
    const UNCAPPED: RunFacts = RunFacts {
        caps: NO_CAPS,
        ..ANONYMOUS
    };
    const REFRESH: RunFacts = RunFacts {
        mode: RunMode::Refresh,
        ..ANONYMOUS
    };
    const WITH_REGISTRY: RunFacts = RunFacts {
        registry: true,
        ..ANONYMOUS
    };

    /// A tally that counts how often it is asked.
    struct Counts {
        stored: u64,
        matching: u64,
        asked: u32,
    }

    impl Tally for Counts {
        type Error = std::convert::Infallible;
        fn stored(&mut self) -> Result<u64, Self::Error> {
            self.asked += 1;
            Ok(self.stored)
        }
        fn matching(&mut self, _: &str) -> Result<u64, Self::Error> {
            self.asked += 1;
            Ok(self.matching)
        }
    }

    fn page_url(page: u32, size: Option<u32>) -> Url {
        let mut url = Url::parse("https://hub.docker.com/v2/namespaces/library/repositories/python/tags?ordering=last_updated").unwrap();
        url.query_pairs_mut().append_pair("page", &page.to_string());
        if let Some(size) = size {
            url.query_pairs_mut()
                .append_pair("page_size", &size.to_string());
        }
        url
    }

    fn filter(name: &str, oldest: bool) -> ListingWindow {
        ListingWindow::Filter {
            name: name.to_owned(),
            oldest,
        }
    }

    /// (what, run, window, count, skipped names, full_read, view count, next, unchanged,
    /// (stored, matching), step, full_read after, tally asked)
    type PageRow<'a> = (
        &'a str,
        RunFacts,
        ListingWindow,
        Option<u64>,
        usize,
        bool,
        Option<u64>,
        NextLink<'a>,
        bool,
        (u64, u64),
        PageStep,
        bool,
        bool,
    );

    /// (what, run, window, capped, count, tags seen, skipped names, relists, filters tried,
    /// capped before, names, step)
    type ViewRow<'a> = (
        &'a str,
        RunFacts,
        ListingWindow,
        bool,
        Option<u64>,
        usize,
        usize,
        u32,
        usize,
        bool,
        NamesState,
        ViewStep,
    );

    #[test]
    fn what_a_committed_page_leads_to() {
        let p11 = page_url(11, Some(100)); // offset 1000: Hub answers 403 to anonymous clients
        let p10 = page_url(10, Some(100)); // offset 900
        let p21 = page_url(21, Some(50)); // offset 1000 in pages of 50
        let p99 = page_url(99, None); // no page size: nothing presumed
        let planned = ListingWindow::Planned {
            name: "3.12".into(),
            oldest: false,
        };
        let single = ListingWindow::Single {
            name: "3.12.1".into(),
        };
        use ListingWindow::{Oldest, Plain};
        use NextLink::{Following, Last, Refused};
        use PageStep::*;
        let ends = |capped| ViewEnds { capped };
        #[rustfmt::skip]
        let table: Vec<PageRow> = vec![
            ("plain, more to read", ANONYMOUS, Plain, Some(2500), 0, false, None, Following(&p10), false, (900, 0), Follow, false, false),
            ("anonymous cap: page 11 is not asked for", ANONYMOUS, Plain, Some(2500), 0, false, None, Following(&p11), false, (1000, 0), ends(true), false, false),
            ("signed in (or a cap not met yet): page 11", UNCAPPED, Plain, Some(2500), 0, false, None, Following(&p11), false, (1000, 0), Follow, false, false),
            ("the cap in pages of 50", ANONYMOUS, Plain, Some(2500), 0, false, None, Following(&p21), false, (1000, 0), ends(true), false, false),
            ("no page size: follow, a 403 tells", ANONYMOUS, Plain, Some(2500), 0, false, None, Following(&p99), false, (0, 0), Follow, false, false),
            ("oldest-first view: the same cap", ANONYMOUS, Oldest, Some(2500), 0, false, None, Following(&p11), false, (1900, 0), ends(true), false, true),
            ("oldest-first view: every tag known", ANONYMOUS, Oldest, Some(2500), 0, false, None, Following(&p10), false, (2500, 0), ends(false), false, true),
            ("oldest-first view: skipped names count", ANONYMOUS, Oldest, Some(2500), 3, false, None, Following(&p10), false, (2497, 0), ends(false), false, true),
            ("exhausted before capped", ANONYMOUS, Oldest, Some(2500), 0, false, None, Following(&p11), false, (2500, 0), ends(false), false, true),
            ("filter view: all its tags stored", ANONYMOUS, filter("3.12", false), Some(2500), 0, false, Some(40), Following(&p10), false, (0, 40), ends(false), false, true),
            ("filter view: more to read", ANONYMOUS, filter("3.12", false), Some(2500), 0, false, Some(40), Following(&p10), false, (0, 39), Follow, false, true),
            ("filter view: the cap", ANONYMOUS, filter("3", true), Some(2500), 0, false, Some(1500), Following(&p11), false, (0, 900), ends(true), false, true),
            ("last page", ANONYMOUS, Plain, Some(40), 0, false, None, Last, false, (0, 0), ends(false), false, false),
            ("refused next link", ANONYMOUS, Plain, Some(2500), 0, false, None, Refused, false, (0, 0), PageStep::Refused, false, false),
            ("a planned page", ANONYMOUS, planned, Some(2500), 0, false, Some(40), Last, false, (0, 0), RoundPage, false, false),
            ("a tag by name", ANONYMOUS, single, Some(2500), 0, false, None, Last, false, (0, 0), RoundPage, false, false),
            ("refresh stop: nothing below changed", REFRESH, Plain, Some(300), 0, false, None, Following(&p10), true, (300, 0), RefreshStop { known: 300 }, false, true),
            ("refresh stop: skipped names count", REFRESH, Plain, Some(300), 2, false, None, Following(&p10), true, (298, 0), RefreshStop { known: 300 }, false, true),
            ("refresh stop on the last page", REFRESH, Plain, Some(300), 0, false, None, Last, true, (300, 0), RefreshStop { known: 300 }, false, true),
            ("refresh: a gap left earlier is read whole", REFRESH, Plain, Some(300), 0, false, None, Following(&p10), true, (290, 0), Follow, true, true),
            ("refresh: read whole already", REFRESH, Plain, Some(300), 0, true, None, Following(&p10), true, (300, 0), Follow, true, false),
            ("refresh: a changed tag ends the page", REFRESH, Plain, Some(300), 0, false, None, Following(&p10), false, (300, 0), Follow, false, false),
            ("refresh: read whole, capped", REFRESH, Plain, Some(3000), 0, false, None, Following(&p11), true, (1000, 0), ends(true), true, true),
        ];
        for (
            what,
            run,
            window,
            count,
            skipped,
            full_read,
            view_count,
            next,
            unchanged,
            (stored, matching),
            want,
            want_full,
            want_asked,
        ) in table
        {
            let mut state = repo_state(count);
            state.full_read = full_read;
            for h in 0..skipped as u64 {
                state.add_skipped_name(h);
            }
            let mut tally = Counts {
                stored,
                matching,
                asked: 0,
            };
            let got = after_tag_page(
                &run, &mut state, &window, view_count, next, unchanged, &mut tally,
            )
            .unwrap();
            assert_eq!(got, want, "{what}");
            assert_eq!(state.full_read, want_full, "{what}: full_read");
            // Counting the stored tags reads every one of them: only when a decision needs it.
            assert_eq!(
                tally.asked > 0,
                want_asked,
                "{what}: tally asked {} times",
                tally.asked
            );
        }
    }

    #[test]
    fn pages_past_the_anonymous_cap() {
        for (page, size, want) in [
            (1, Some(100), false),
            (10, Some(100), false),
            (11, Some(100), true),
            (12, Some(100), true),
            (20, Some(50), false),
            (21, Some(50), true),
            (1001, Some(1), true),
            (u32::MAX, Some(100), true),
            (50, None, false),
        ] {
            assert_eq!(
                beyond_cap(&page_url(page, size)),
                want,
                "page {page} of {size:?}"
            );
        }
        let no_page = Url::parse("https://h/x?page_size=100").unwrap();
        assert!(!beyond_cap(&no_page));
        let garbled = Url::parse("https://h/x?page=two&page_size=100").unwrap();
        assert!(!beyond_cap(&garbled), "page 1 assumed, as Hub does");
    }

    #[test]
    fn the_caps_a_run_expects() {
        let tags_only = PagingCaps {
            tags: true,
            repos: false,
        };
        #[rustfmt::skip]
        let rows = [
            // (case, origin, anonymous, learned of that origin, expected)
            ("Docker Hub, anonymous: both from the start", "https://hub.docker.com", true, NO_CAPS, BOTH_CAPS),
            ("Docker Hub, a trailing slash", "https://hub.docker.com/", true, NO_CAPS, BOTH_CAPS),
            ("Docker Hub, signed in: none", "https://hub.docker.com", false, BOTH_CAPS, NO_CAPS),
            ("another origin, nothing learned: none", "http://127.0.0.1:8080", true, NO_CAPS, NO_CAPS),
            ("another origin: what was learned there", "http://127.0.0.1:8080", true, tags_only, tags_only),
            ("another origin, signed in: none", "http://127.0.0.1:8080", false, BOTH_CAPS, NO_CAPS),
            ("plain http is not Docker Hub", "http://hub.docker.com", true, NO_CAPS, NO_CAPS),
            ("a look-alike host is not Docker Hub", "https://hub.docker.com.example", true, NO_CAPS, NO_CAPS),
        ];
        for (case, origin, anonymous, learned, want) in rows {
            assert_eq!(expected_caps(origin, anonymous, learned), want, "{case}");
        }
    }

    #[test]
    fn a_cap_met_is_learned_once_and_only_anonymously() {
        #[rustfmt::skip]
        let rows = [
            // (case, known before, anonymous, met on, news, known after)
            ("first tag cap", NO_CAPS, true, CapOf::Tags, true, PagingCaps { tags: true, repos: false }),
            ("first repository cap", NO_CAPS, true, CapOf::Repos, true, PagingCaps { tags: false, repos: true }),
            ("the tag cap again", PagingCaps { tags: true, repos: false }, true, CapOf::Tags, false, PagingCaps { tags: true, repos: false }),
            ("the other cap", PagingCaps { tags: true, repos: false }, true, CapOf::Repos, true, BOTH_CAPS),
            ("signed in: nothing learned", NO_CAPS, false, CapOf::Tags, false, NO_CAPS),
        ];
        for (case, before, anonymous, of, news, after) in rows {
            let mut caps = before;
            assert_eq!(cap_met(&mut caps, anonymous, of), news, "{case}");
            assert_eq!(caps, after, "{case}");
        }
    }

    #[test]
    fn the_repository_list_and_its_cap() {
        let repos = |page: u32| {
            Url::parse(&format!(
                "http://h/v2/namespaces/library/repositories?page={page}&page_size=100&ordering=name"
            ))
            .unwrap()
        };
        let tag_cap_only = RunFacts {
            caps: PagingCaps {
                tags: true,
                repos: false,
            },
            ..ANONYMOUS
        };
        let (p2, p3) = (repos(2), repos(3));
        let small = Url::parse("http://h/x?page=5&page_size=20").unwrap();
        let past_small = Url::parse("http://h/x?page=6&page_size=20").unwrap();
        use NextLink::{Following, Last, Refused};
        use RepoListStep::{Descend, Done, Follow};
        #[rustfmt::skip]
        let rows = [
            // (case, run, descending, next, step)
            ("cap expected: page 2 is not asked for, by name descending instead", ANONYMOUS, false, Following(&p2), Descend),
            ("cap expected: the descending list ends at 100", ANONYMOUS, true, Following(&p2), Done),
            ("cap not known: page 2 is asked for (a 403 tells)", UNCAPPED, false, Following(&p2), Follow),
            ("the tag cap says nothing of the repository list", tag_cap_only, false, Following(&p2), Follow),
            ("signed in: every page", UNCAPPED, false, Following(&p3), Follow),
            ("pages of 20: page 5 is below offset 100", ANONYMOUS, false, Following(&small), Follow),
            ("pages of 20: page 6 starts at 100", ANONYMOUS, false, Following(&past_small), Descend),
            ("the last page", ANONYMOUS, false, Last, Done),
            ("the descending list's last page", ANONYMOUS, true, Last, Done),
            ("a refused next link fails the job, capped or not", ANONYMOUS, false, Refused, RepoListStep::Refused),
        ];
        for (case, run, descending, next, want) in rows {
            assert_eq!(after_repo_page(&run, descending, next), want, "{case}");
        }
        // Hub's 403 itself, where the cap was not expected.
        assert_eq!(at_repo_cap(false), Descend);
        assert_eq!(at_repo_cap(true), Done);
    }

    #[test]
    fn a_failed_job_is_tried_again_later_then_failed() {
        let base = Duration::from_secs(1);
        #[rustfmt::skip]
        let rows = [
            // (case, attempts made, transient, base, delay)
            ("first failure: 1 s", 1, true, base, Some(1)),
            ("second: 2 s", 2, true, base, Some(2)),
            ("third: 4 s", 3, true, base, Some(4)),
            ("fourth: 8 s", 4, true, base, Some(8)),
            ("attempts spent: failed", MAX_ATTEMPTS, true, base, None),
            ("past them: failed", MAX_ATTEMPTS + 3, true, base, None),
            ("not transient: failed at once", 1, false, base, None),
            ("a long base stops at the ceiling", 4, true, Duration::from_secs(30), Some(JOB_RETRY_MAX.as_secs())),
        ];
        for (case, attempts, transient, base, want) in rows {
            assert_eq!(
                retry_delay(attempts, transient, base),
                want.map(Duration::from_secs),
                "{case}"
            );
        }
        // No overflow, however many attempts a hand-edited store claims.
        assert!(retry_delay(MAX_ATTEMPTS - 1, true, Duration::MAX).is_some());
    }

    #[test]
    fn the_registry_names_are_gathered() {
        let page = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let mut stored = TagNames::default();
        gather_names(
            &mut stored,
            &page(&["3.12", "bad name", "latest", "-x"]),
            false,
        );
        assert_eq!(stored.names, ["3.12", "latest"], "only valid tag names");
        assert!(!stored.done, "more pages follow");
        gather_names(&mut stored, &page(&["2.7", "latest", "3.12"]), true);
        assert_eq!(
            stored.names,
            ["2.7", "3.12", "latest"],
            "sorted, each once, across pages"
        );
        assert!(stored.done);
        tag_gone(&mut stored, "3.12");
        assert_eq!(stored.names, ["2.7", "latest"], "a tag deleted meanwhile");
        tag_gone(&mut stored, "never-listed");
        assert_eq!(stored.names, ["2.7", "latest"]);
    }

    #[test]
    fn a_repository_not_on_hub() {
        let repo = RepoName::new("library", "gone").unwrap();
        let url = "http://h/v2/namespaces/library/repositories/gone/tags?page=1&page_size=100";
        let deleted = TagState {
            deleted_at: Some(5),
            ..state("2026-01-01T00:00:00Z")
        };
        let known = vec![
            ("a".to_owned(), state("2026-01-01T00:00:00Z")),
            ("b".to_owned(), deleted),
            ("c".to_owned(), state("2026-01-01T00:00:01Z")),
        ];
        type Row<'a> = (
            &'a str,
            &'a [(String, TagState)],
            Option<u64>,
            &'a [&'a str],
            bool,
        );
        #[rustfmt::skip]
        let rows: [Row<'_>; 3] = [
            // (case, stored tags, done before, retired, newly done)
            ("never stored: nothing retired", &[], None, &[], true),
            ("known: its current tags retired, the deleted one left", &known, None, &["a", "c"], true),
            ("asked again (a resumed run): done once", &known, Some(3), &["a", "c"], false),
        ];
        for (case, tags, done_before, retired, newly) in rows {
            let mut state = RepoState {
                count: Some(40),
                distinct: 12,
                complete: Some(false),
                done_at: done_before,
                ..RepoState::new(1, 0)
            };
            // An earlier entry for it (an earlier attempt of this run) is replaced, not repeated.
            let mut gaps = RunGaps {
                run: 1,
                missing: vec![MissingRepo {
                    repo: "library/gone".into(),
                    url: "old".into(),
                    at: 1,
                    known_tags: 9,
                    retired_tags: 9,
                }],
                skipped: Vec::new(),
            };
            let gone = repo_gone(&mut state, &mut gaps, &repo, url, tags, 10);
            assert_eq!(gone.retired, retired, "{case}");
            assert_eq!(gone.newly_done, newly, "{case}");
            assert_eq!(
                (
                    state.done_at,
                    state.vanished_at,
                    state.count,
                    state.distinct,
                    state.complete
                ),
                (Some(10), Some(10), Some(0), 0, Some(true)),
                "{case}: done, vanished, nothing missing"
            );
            assert_eq!(
                gaps.missing,
                [MissingRepo {
                    repo: "library/gone".into(),
                    url: url.into(),
                    at: 10,
                    known_tags: tags.len() as u64,
                    retired_tags: retired.len() as u64,
                }],
                "{case}"
            );
        }
    }

    #[test]
    fn what_the_end_of_a_view_leads_to() {
        use ListingWindow::{Oldest, Plain};
        use NamesState::*;
        let finish = |complete, distinct| ViewStep::Finish { complete, distinct };
        // The filter `next_filter` picks first from `seen(n)`.
        let first = next_filter(&seen(2000), &[]).unwrap();
        #[rustfmt::skip]
        let table: Vec<ViewRow> = vec![
            ("all seen", ANONYMOUS, Plain, false, Some(40), 40, 0, 0, 0, false, NotAsked, finish(true, 40)),
            // Two aliases of one digest on two pages, one of them listed twice as the listing
            // shifted: counted by name, once each.
            ("aliases split across pages", ANONYMOUS, Plain, false, Some(3), 3, 0, 0, 0, false, NotAsked, finish(true, 3)),
            ("skipped names count as seen", ANONYMOUS, Plain, false, Some(40), 38, 2, 0, 0, false, NotAsked, finish(true, 40)),
            ("no count: the plain listing is all", ANONYMOUS, Plain, false, None, 7, 0, 0, 0, false, NotAsked, finish(true, 7)),
            ("retag mid-listing: read again", ANONYMOUS, Plain, false, Some(40), 39, 0, 0, 0, false, NotAsked, ViewStep::Read(Plain)),
            ("retag mid-listing: read again, twice", ANONYMOUS, Plain, false, Some(40), 39, 0, 1, 0, false, NotAsked, ViewStep::Read(Plain)),
            ("retag mid-listing: then incomplete", ANONYMOUS, Plain, false, Some(40), 39, 0, MAX_RELISTS, 0, false, NotAsked, finish(false, 39)),
            ("plain view capped: oldest first", ANONYMOUS, Plain, true, Some(2500), 1000, 0, 0, 0, false, NotAsked, ViewStep::Read(Oldest)),
            ("no count and capped: oldest first", ANONYMOUS, Plain, true, None, 1000, 0, 0, 0, false, NotAsked, ViewStep::Read(Oldest)),
            ("oldest view: every tag known", ANONYMOUS, Oldest, false, Some(1800), 1800, 0, 0, 0, true, NotAsked, finish(true, 1800)),
            ("oldest view: ask the registry", WITH_REGISTRY, Oldest, true, Some(2500), 2000, 0, 0, 0, true, NotAsked, ViewStep::AskNames),
            ("names being read: wait", WITH_REGISTRY, Oldest, true, Some(2500), 2000, 0, 0, 0, true, Reading, ViewStep::Wait),
            ("names read: plan a round", WITH_REGISTRY, Oldest, true, Some(2500), 2000, 0, 0, 0, true, Read, ViewStep::CoverRound),
            ("registry down: name filters", WITH_REGISTRY, Oldest, true, Some(2500), 2000, 0, 0, 0, true, Unavailable, ViewStep::Read(filter(&first, false))),
            ("no registry: name filters", ANONYMOUS, Oldest, true, Some(2500), 2000, 0, 0, 0, true, NotAsked, ViewStep::Read(filter(&first, false))),
            ("filter capped: its oldest first", ANONYMOUS, filter("3", false), true, Some(2500), 2000, 0, 0, 1, true, NotAsked, ViewStep::Read(filter("3", true))),
            ("filter read: the next filter", ANONYMOUS, filter("3", true), true, Some(2500), 2000, 0, 0, 1, true, NotAsked, ViewStep::Read(filter(&first, false))),
            ("filters spent: incomplete", ANONYMOUS, filter("x", false), false, Some(2500), 2000, 0, 0, MAX_FILTERS, true, NotAsked, finish(false, 2000)),
            ("a registry, not capped: relist", WITH_REGISTRY, Plain, false, Some(40), 39, 0, 0, 0, false, NotAsked, ViewStep::Read(Plain)),
        ];
        for (
            what,
            run,
            window,
            capped,
            count,
            n,
            skipped,
            relists,
            tried,
            was_capped,
            names,
            want,
        ) in table
        {
            let mut state = repo_state(count);
            state.relists = relists;
            state.capped = was_capped;
            state.requests = 17;
            state.filters = (0..tried).map(|i| format!("tried{i}")).collect();
            if tried == 1 {
                state.filters = vec!["3".into()];
            }
            for h in 0..skipped as u64 {
                state.add_skipped_name(h);
            }
            let before = state.clone();
            let got = after_view(&run, &mut state, &window, capped, &seen(n), names);
            assert_eq!(got, want, "{what}");
            // What the state records of the step.
            match &got {
                ViewStep::Read(Plain) => assert_eq!(state.relists, relists + 1, "{what}"),
                ViewStep::Read(ListingWindow::Filter {
                    name,
                    oldest: false,
                }) => {
                    assert_eq!(state.filters.last(), Some(name), "{what}")
                }
                _ => assert_eq!(state.filters, before.filters, "{what}"),
            }
            if capped && window == Plain && !was_capped {
                assert!(state.capped, "{what}");
                assert_eq!(
                    state.at_cap,
                    (n as u64, 17),
                    "{what}: tags and requests at the cap"
                );
            } else {
                assert_eq!(
                    (state.capped, state.at_cap),
                    (before.capped, before.at_cap),
                    "{what}"
                );
            }
        }
    }

    /// Names `1.<line>.<patch>` pushed one a minute, oldest first, `n` of them: every version
    /// line of 100 tags is a filter. `tie` gives the tags from `tie.0` to `tie.1` one push time.
    fn history(n: usize, tie: (usize, usize)) -> Vec<(String, TagState)> {
        (0..n)
            .map(|i| {
                let t = if (tie.0..tie.1).contains(&i) {
                    tie.0
                } else {
                    i
                };
                let time = format!("2020-01-01T00:00:00Z+{t:06}");
                (format!("1.{}.{}", i / 100, i % 100), state(&time))
            })
            .collect()
    }

    fn names_of(tags: &[(String, TagState)]) -> TagNames {
        let mut names: Vec<String> = tags.iter().map(|(n, _)| n.clone()).collect();
        names.sort_unstable();
        TagNames {
            run: 1,
            names,
            done: true,
            ..TagNames::default()
        }
    }

    #[test]
    fn cover_rounds_plan_again_until_every_name_is_stored() {
        // 2400 tags, a run of 40 of them pushed in the same second across the boundary between
        // the newest view and the middle; the middle (positions 1000 to 1399 newest first) is
        // missing after both plain views.
        let all = history(2400, (1380, 1420));
        let mut names = names_of(&all);
        let mut state = repo_state(Some(2400));
        state.capped = true;
        let plain_views: Vec<(String, TagState)> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| !(1000..1400).contains(i))
            .map(|(_, t)| t.clone())
            .collect();
        let CoverStep::Round(first) = cover_round(&mut names, &mut state, &plain_views) else {
            panic!("a round is planned")
        };
        assert_eq!(first.missing, 400);
        assert_eq!(
            (names.rounds, names.pending),
            (1, (first.pages.len() + first.unreachable.len()) as u32)
        );
        for page in &first.pages {
            assert!(
                state.filters.contains(&page.filter),
                "{page:?} recorded as tried"
            );
        }
        // The round's pages came back, but Hub broke the tie otherwise than by name: one tag of
        // the tie slid onto a neighbouring page that was not read.
        for _ in 1..names.pending {
            assert!(!round_page_done(&mut names));
        }
        assert!(round_page_done(&mut names), "the last page of the round");
        let slid = "1.13.95";
        let stored: Vec<(String, TagState)> =
            all.iter().filter(|(n, _)| n != slid).cloned().collect();
        let CoverStep::Round(second) = cover_round(&mut names, &mut state, &stored) else {
            panic!("a second round reads the page the first one missed")
        };
        assert_eq!(second.missing, 1);
        assert_eq!(names.rounds, 2);
        assert!(
            second
                .pages
                .iter()
                .any(|p| slid.contains(p.filter.as_str()))
                || second.unreachable.iter().any(|n| n == slid),
            "{second:?}"
        );
        // Read: complete, counting every tag seen.
        assert_eq!(
            cover_round(&mut names, &mut state, &all),
            CoverStep::Complete { distinct: 2400 }
        );
        // A name a skipped tag carries is not missing.
        state.add_skipped_name(name_hash(slid));
        assert_eq!(
            cover_round(&mut names, &mut state, &stored),
            CoverStep::Complete { distinct: 2400 }
        );
        // The rounds spent with a name still missing: incomplete.
        let mut state = repo_state(Some(2400));
        names.rounds = MAX_COVER_ROUNDS;
        assert_eq!(
            cover_round(&mut names, &mut state, &stored),
            CoverStep::GiveUp {
                distinct: 2399,
                missing: 1
            }
        );
        assert_eq!(names.rounds, MAX_COVER_ROUNDS, "no round beyond the last");
    }

    fn run(id: u64, mode: RunMode) -> CrawlRun {
        CrawlRun {
            id,
            state: RunState::Running,
            started: 0,
            finished: None,
            hub_url: "https://hub.docker.com".into(),
            namespace: "library".into(),
            repos: Vec::new(),
            mode,
            registry: None,
        }
    }

    #[test]
    fn deletions_only_from_a_full_complete_listing() {
        let tag = |name: &str, run: u64, deleted: bool| {
            let mut t = state("2026-01-01T00:00:00Z");
            t.run = run;
            t.deleted_at = deleted.then_some(3);
            (name.to_owned(), t)
        };
        let tags = vec![
            tag("seen-now", 2, false),
            tag("gone", 1, false),
            tag("gone-before", 1, true),
            tag("also-gone", 1, false),
        ];
        let full = run(2, RunMode::Full);
        let refresh = run(2, RunMode::Refresh);
        for (what, run, complete, want) in [
            ("full, complete", &full, true, vec!["gone", "also-gone"]),
            (
                "full, incomplete: a gap is no deletion",
                &full,
                false,
                vec![],
            ),
            (
                "refresh: unchanged tags are not re-read",
                &refresh,
                true,
                vec![],
            ),
            ("refresh, incomplete", &refresh, false, vec![]),
        ] {
            assert_eq!(deleted_tags(run, complete, &tags), want, "{what}");
            assert_eq!(marks_deletions(run, complete), !want.is_empty(), "{what}");
        }
    }

    #[test]
    fn the_end_of_the_repository_list() {
        let run = run(2, RunMode::Refresh);
        let listed = |name: &str, by: u64, vanished: bool| {
            let mut s = RepoState::new(by, 0);
            s.vanished_at = vanished.then_some(1);
            (name.to_owned(), s)
        };
        let repos = vec![
            listed("library/python", 2, false),
            listed("library/gone", 1, false),
            listed("library/gone-before", 1, true),
            listed("other/kept", 1, false),
            listed("library/debian", 2, false),
        ];
        let vanished = |end: ListEnd| match end {
            ListEnd::Whole { vanished } => vanished
                .into_iter()
                .map(|(r, _)| r.to_string())
                .collect::<Vec<_>>(),
            short => panic!("{short:?}"),
        };
        // Read whole (or no count given): only this namespace's repositories it did not list.
        for count in [Some(2), Some(1), None] {
            assert_eq!(
                vanished(repo_list_done(&run, count, &repos)),
                ["library/gone"]
            );
        }
        // Capped: nothing concluded.
        assert_eq!(
            repo_list_done(&run, Some(3), &repos),
            ListEnd::Short { seen: 2, count: 3 }
        );
    }

    #[test]
    fn finishing_counts_a_repository_once() {
        let mut state = repo_state(Some(10));
        assert!(finish(&mut state, 9, false, 5));
        assert_eq!(
            (state.done_at, state.distinct, state.complete),
            (Some(5), 9, Some(false))
        );
        // Finished again (a resumed gap): not counted twice, the newer result kept.
        assert!(!finish(&mut state, 10, true, 6));
        assert_eq!(
            (state.done_at, state.distinct, state.complete),
            (Some(6), 10, Some(true))
        );
    }

    #[test]
    fn a_repository_listed_again() {
        let mut old = repo_state(Some(10));
        old.add_skipped_name(7);
        let done = |complete| RepoState {
            complete,
            ..old.clone()
        };
        let full = run(2, RunMode::Full);
        let refresh = run(2, RunMode::Refresh);
        // (what, old state, run, listed?, full_read, skipped names kept)
        let table = [
            ("new", None, &refresh, true, false, false),
            (
                "complete before",
                Some(done(Some(true))),
                &refresh,
                true,
                false,
                true,
            ),
            (
                "incomplete before",
                Some(done(Some(false))),
                &refresh,
                true,
                true,
                true,
            ),
            (
                "never finished before",
                Some(done(None)),
                &refresh,
                true,
                true,
                true,
            ),
            (
                "full run: skipped names counted afresh",
                Some(done(Some(true))),
                &full,
                true,
                false,
                false,
            ),
        ];
        for (what, old, run, listed, full_read, kept) in table {
            let got = listed_again(old.as_ref(), run, 9);
            assert_eq!(got.is_some(), listed, "{what}");
            let got = got.unwrap();
            assert_eq!((got.run, got.listed_at), (2, 9), "{what}");
            assert_eq!(got.full_read, full_read, "{what}");
            assert_eq!(!got.skipped_names.is_empty(), kept, "{what}");
        }
        // Listed twice by one run (the repository list shifted): once.
        let mine = RepoState::new(2, 1);
        assert_eq!(listed_again(Some(&mine), &refresh, 9), None);
    }

    #[test]
    fn a_gap_planned_again() {
        let tags = seen(2000);
        let first = next_filter(&tags, &[]).unwrap();
        let incomplete = |capped| RepoState {
            capped,
            complete: Some(false),
            done_at: Some(4),
            relists: 2,
            filters: vec!["old".into()],
            ..repo_state(Some(2500))
        };
        let read = TagNames {
            run: 1,
            names: vec!["a".into()],
            done: true,
            pending: 3,
            rounds: 4,
            unavailable: None,
        };
        let down = TagNames {
            unavailable: Some("refused".into()),
            ..read.clone()
        };
        let half = TagNames {
            done: false,
            ..read.clone()
        };
        let rounds_reset = TagNames {
            pending: 0,
            rounds: 0,
            ..read.clone()
        };
        // (what, capped, names, window, names after)
        let table = [
            (
                "short plain listing: read whole",
                false,
                None,
                ListingWindow::Plain,
                None,
            ),
            (
                "capped, names read: rounds afresh",
                true,
                Some(read),
                filter(&first, false),
                Some(rounds_reset),
            ),
            (
                "capped, registry was down: asked again",
                true,
                Some(down),
                filter(&first, false),
                Some(TagNames::default()),
            ),
            (
                "capped, names half read: asked again",
                true,
                Some(half),
                filter(&first, false),
                Some(TagNames::default()),
            ),
        ];
        for (what, capped, names, want, names_after) in table {
            let mut state = incomplete(capped);
            let mut names = names;
            assert_eq!(replan(&mut state, &mut names, &tags), want, "{what}");
            assert_eq!(names, names_after, "{what}");
            assert_eq!(
                (state.complete, state.done_at, state.relists),
                (None, None, 0),
                "{what}"
            );
            assert!(state.full_read, "{what}");
            let filters: Vec<String> = match &want {
                ListingWindow::Filter { name, .. } => vec![name.clone()],
                _ => Vec::new(),
            };
            assert_eq!(state.filters, filters, "{what}: earlier filters forgotten");
        }
    }

    #[test]
    fn jobs_for_views_planned_pages_and_single_tags() {
        let api = HubApi::new("https://hub.docker.com").unwrap();
        let repo = RepoName::new("library", "python").unwrap();
        let url = |kind: JobKind| kind.url().to_owned();
        let base = "https://hub.docker.com/v2/namespaces/library/repositories/python/tags";
        assert_eq!(
            url(view_job(&api, &repo, ListingWindow::Plain)),
            api.tags_url(&repo).to_string()
        );
        assert!(
            url(view_job(&api, &repo, ListingWindow::Oldest)).contains("ordering=-last_updated")
        );
        let f = url(view_job(&api, &repo, filter("3.12", true)));
        assert!(
            f.contains("ordering=-last_updated") && f.contains("name=3.12"),
            "{f}"
        );
        let planned = PlannedPage {
            filter: "slim".into(),
            oldest: false,
            page: 7,
            size: 90,
        };
        let p = url(planned_job(&api, &repo, &planned));
        assert!(
            p.starts_with(base) && p.contains("page=7&page_size=90") && p.contains("name=slim"),
            "{p}"
        );
        assert_eq!(
            url(single_job(&api, &repo, "3.12.1-slim")),
            format!("{base}/3.12.1-slim")
        );
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

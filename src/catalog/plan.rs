//! The catalog crawl's decisions, pure and tested table by table: which run to start or resume,
//! where a paged listing goes next, what a failed request means, and what a tag's sighting is.

use url::Url;

use crate::hub::{DigestFact, TagObservation};
use crate::model::{Digest, ObjectKind, Platform};
use crate::registry::RegistryError;
use crate::store::{CatalogRun, CatalogTask, EnrichTarget, Listing, RunState, TagState, name_hash};

/// Pages one listing may have: a registry paging one name at a time through millions of names
/// is broken, not big. Each page's URL and content are remembered (to refuse loops), so this
/// also bounds that memory.
pub const MAX_LISTING_PAGES: u32 = 10_000;

/// Checks a `--catalog` URL: an https origin (plain http only on a loopback host), no path, query
/// or user name; returns it with the path `/`.
pub fn registry_origin(text: &str) -> Result<Url, String> {
    let parsed = Url::parse(text)
        .ok()
        .filter(crate::registry::origin::secure_or_loopback)
        .filter(|u| matches!(u.path(), "" | "/") && u.query().is_none() && u.fragment().is_none())
        .filter(|u| u.username().is_empty() && u.password().is_none())
        .filter(|u| u.host_str().is_some());
    parsed.ok_or_else(|| {
        format!(
            "--catalog {:?} must be a registry origin: https (plain http only on a loopback host), no path, query or user name",
            crate::hub::redact_userinfo(text)
        )
    })
}

/// The host that qualifies a registry's repositories: `mcr.microsoft.com`, `127.0.0.1:5000` (a
/// port only when the URL names one).
pub fn source_host(registry: &Url) -> String {
    let host = registry.host_str().unwrap_or_default();
    match registry.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// Whether a catalog repository is within `--repo-prefix` (none: every one).
pub fn in_prefix(path: &str, prefix: Option<&str>) -> bool {
    prefix.is_none_or(|p| path.starts_with(p))
}

/// What `crawl --catalog` does with the source's stored run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Continue the unfinished run (an incomplete one reads its unfinished listings again).
    Resume(CatalogRun),
    /// Start this run.
    New(CatalogRun),
}

/// Why the stored run does not allow what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// Flags that contradict the stored run.
    Usage(String),
    /// The store's state: nothing to resume, or an unfinished run not resumed.
    State(String),
}

/// Decides, from the source's stored run (if any) and the flags, whether to resume or start a
/// run. `db` names the store in the messages.
pub fn prepare(
    existing: Option<&CatalogRun>,
    registry: &Url,
    repos: &[String],
    prefix: Option<&str>,
    resume: bool,
    now: u64,
    db: &str,
) -> Result<Start, StartError> {
    let host = source_host(registry);
    let again = format!(
        "digestmap crawl --catalog {} --resume --db {db}",
        registry.as_str().trim_end_matches('/')
    );
    if resume {
        let Some(run) = existing.filter(|r| r.state != RunState::Finished) else {
            return Err(StartError::State(format!(
                "the store {db} holds no unfinished crawl of {host} to resume"
            )));
        };
        let given: Vec<String> = repos.to_vec();
        if (!given.is_empty() && given != run.repos)
            || (prefix.is_some() && prefix != run.prefix.as_deref())
        {
            return Err(StartError::Usage(format!(
                "--repo and --repo-prefix must be those of the unfinished crawl of {host}; resume without them"
            )));
        }
        return Ok(Start::Resume(run.clone()));
    }
    if let Some(run) = existing.filter(|r| r.state == RunState::Running) {
        return Err(StartError::State(format!(
            "the store {db} holds an unfinished crawl of {host} (started {}); continue it with `{again}`",
            crate::clock::rfc3339(run.started)
        )));
    }
    Ok(Start::New(CatalogRun {
        id: existing.map_or(1, |r| r.id + 1),
        state: RunState::Running,
        started: now,
        finished: None,
        registry: registry.as_str().trim_end_matches('/').to_owned(),
        host,
        repos: repos.to_vec(),
        prefix: prefix.map(str::to_owned),
        catalog: Listing::default(),
    }))
}

/// Where a listing goes after a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageStep {
    /// Store the page's names and ask for this page next.
    Next(Url),
    /// Store the page's names; the listing is complete.
    Done,
    /// Store the page's names; the listing ends here, incomplete, for this reason.
    End(String),
    /// The page repeats an earlier one of the listing: store nothing of it; the listing ends
    /// here, incomplete, for this reason.
    Repeat(String),
}

/// The hash of a page's names, to recognise a page served twice.
fn content_hash(names: &[String]) -> u64 {
    name_hash(&names.join("\n"))
}

/// Decides where the listing goes after the page at `url` gave `names` and announced `next` (or
/// a `Link` the client refused, with why), and records the page in `listing`: a page whose
/// names repeat an earlier page's, a refused `Link`, a `next` already asked for (a `last` that
/// loops), or more than [`MAX_LISTING_PAGES`] pages end it. A refused `Link` keeps the page's
/// names: the registry answered them for the page asked.
pub fn page_step(
    listing: &mut Listing,
    url: &Url,
    names: &[String],
    next: Result<Option<&Url>, String>,
) -> PageStep {
    let here = name_hash(url.as_str());
    if !listing.seen_pages.contains(&here) {
        listing.seen_pages.push(here);
    }
    if !names.is_empty() {
        let content = content_hash(names);
        if listing.seen_content.contains(&content) {
            return PageStep::Repeat(format!(
                "{url} repeats the names of an earlier page ({} of them, from {:?}); the listing stops here",
                names.len(),
                crate::text::printable(&names[0])
            ));
        }
        listing.seen_content.push(content);
    }
    listing.pages += 1;
    let next = match next {
        Ok(next) => next,
        Err(why) => return PageStep::End(format!("{why}; the listing stops here")),
    };
    match next {
        None => PageStep::Done,
        Some(next) if listing.seen_pages.contains(&name_hash(next.as_str())) => {
            PageStep::End(format!(
                "{url} links back to {next}, a page already read (a `last` that loops); the listing stops here"
            ))
        }
        Some(next) if listing.pages >= MAX_LISTING_PAGES => PageStep::End(format!(
            "{url} links to {next}, beyond {MAX_LISTING_PAGES} pages; the listing stops here"
        )),
        Some(next) => PageStep::Next(next.clone()),
    }
}

/// What a failed request means for its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Put back, to be tried again after a backoff.
    Retry,
    /// Moved to `failed` with its reason (`crawl --catalog URL --resume` tries it again).
    Fail,
    /// A 429 answered as a status, on any request (on a manifest GET that is where the registry
    /// declares no pull budget: see [`crate::registry::budget`]): not a failure of the request
    /// but the registry saying stop. The pacer already
    /// pauses every worker until its `Retry-After` (or a backoff for a bare 429); the job goes
    /// back to the queue for then, without counting as an attempt (as the Hub crawl does).
    Pause,
    /// A listing's `Link` that is not followed (another host, no progress): the listing ends
    /// here, incomplete, with the reason.
    EndListing,
    /// The registry says it does not have it: a repository's tag list (the repository is gone),
    /// a tag's manifest (the tag is gone: its HEAD's 404 confirmed by a GET answering
    /// `MANIFEST_UNKNOWN`), a manifest by digest (`MANIFEST_UNKNOWN`: recorded as gone, as
    /// `enrich` does).
    NotFound,
    /// A tag's HEAD answered 404 and the GET that confirms it `NAME_UNKNOWN`: the repository is
    /// gone; it is marked vanished and its tags deleted.
    Vanished,
    /// The registry's declared pull budget is spent ([`RegistryError::BudgetSpent`], or a
    /// manifest GET answered 429 by a registry that sends `ratelimit-*` headers): no attempt
    /// counted; the job stays in the store and the run sends no more manifest GETs, ending when
    /// nothing else is left, resumable once the window frees.
    Budget,
}

/// The registry's error code of a failed answer (`MANIFEST_UNKNOWN`, `NAME_UNKNOWN`, ...), from
/// its body's `CODE: message`.
fn registry_code(err: &RegistryError) -> Option<&str> {
    match err {
        RegistryError::Status {
            detail: Some(detail),
            ..
        } => Some(detail.split(':').next().unwrap_or(detail).trim()),
        _ => None,
    }
}

/// Whether a tag's HEAD failure must be confirmed by a GET of the manifest by tag: a HEAD has no
/// body, so its 404 cannot tell `MANIFEST_UNKNOWN` (the tag is gone) from `NAME_UNKNOWN` (the
/// repository is) or from a 404 that is not the registry's (a proxy's, a wrong path).
pub fn confirm_head(err: &RegistryError) -> bool {
    err.is_not_found()
}

/// When a spent pull budget frees (unix seconds): the time the client's refusal names, else (a
/// 429 answered) the window the client last heard of (`known_frees_at`), else a default window
/// from `now`. `None` for an error that is no budget stop.
pub fn budget_frees_at(err: &RegistryError, known_frees_at: Option<u64>, now: u64) -> Option<u64> {
    match err {
        RegistryError::BudgetSpent { spent, .. } => Some(crate::clock::unix(spent.frees_at)),
        RegistryError::RateLimited { .. } => Some(known_frees_at.unwrap_or_else(|| {
            now.saturating_add(crate::registry::budget::DEFAULT_WINDOW.as_secs())
        })),
        _ => None,
    }
}

/// Decides a failed request; `attempts` counts this one. For a tag's HEAD that answered 404,
/// `err` is the answer of the GET that confirmed it ([`confirm_head`]): `MANIFEST_UNKNOWN` is a
/// deletion, `NAME_UNKNOWN` a vanished repository, anything else a failure like any.
pub fn failure(task: &CatalogTask, err: &RegistryError, attempts: u32) -> Failure {
    let retry_or_fail = |transient: bool| {
        if transient && attempts < crate::enrich::MAX_ATTEMPTS {
            Failure::Retry
        } else {
            Failure::Fail
        }
    };
    match task {
        CatalogTask::Catalog { .. } | CatalogTask::Tags { .. }
            if matches!(err, RegistryError::Link { .. }) =>
        {
            Failure::EndListing
        }
        _ if matches!(
            err,
            RegistryError::BudgetSpent { .. } | RegistryError::RateLimited { .. }
        ) =>
        {
            Failure::Budget
        }
        CatalogTask::Tags { .. } if err.is_not_found() => Failure::NotFound,
        CatalogTask::Head { .. } if err.is_not_found() => match registry_code(err) {
            Some("MANIFEST_UNKNOWN") => Failure::NotFound,
            Some("NAME_UNKNOWN") => Failure::Vanished,
            // Not the registry's word (a proxy's page, a wrong path): tried again.
            _ => retry_or_fail(true),
        },
        _ if matches!(err, RegistryError::Status { status, .. }
                if *status == http::StatusCode::TOO_MANY_REQUESTS) =>
        {
            Failure::Pause
        }
        CatalogTask::Manifest { .. } => {
            match crate::enrich::disposition(EnrichTarget::Manifest, err, attempts) {
                crate::enrich::Disposition::Gone => Failure::NotFound,
                crate::enrich::Disposition::Retry => Failure::Retry,
                crate::enrich::Disposition::Pause => Failure::Pause,
                crate::enrich::Disposition::Fail => Failure::Fail,
            }
        }
        CatalogTask::Config { .. } => {
            match crate::enrich::disposition(EnrichTarget::Config, err, attempts) {
                crate::enrich::Disposition::Retry => Failure::Retry,
                crate::enrich::Disposition::Pause => Failure::Pause,
                _ => Failure::Fail,
            }
        }
        _ => retry_or_fail(err.is_transient()),
    }
}

/// The listing a failed job given up by `--skip-failed` belonged to, which it leaves incomplete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GapOf {
    /// The catalog (a catalog page).
    Catalog,
    /// These repositories' listings (paths on the registry): the repository a tag-list page,
    /// HEAD or config was of, and for a manifest, every repository whose tags waited on it.
    Repos(Vec<String>),
}

/// Decides what giving up a failed job means: the listing it belonged to is a gap, with why
/// (named in the summary and `status`; `--resume` reads that listing again). `reason` is the
/// job's last error, a registry's text: shown escaped.
pub fn given_up(task: &CatalogTask, reason: &str) -> (GapOf, String) {
    let reason = crate::text::printable(reason);
    let why = |what: String| format!("{what} failed ({reason}) and was given up (--skip-failed)");
    match task {
        CatalogTask::Catalog { url } => (GapOf::Catalog, why(format!("the catalog page {url}"))),
        CatalogTask::Tags { repo, url } => (
            GapOf::Repos(vec![repo.clone()]),
            why(format!("the tag list page {url}")),
        ),
        CatalogTask::Head { repo, tag } => (
            GapOf::Repos(vec![repo.clone()]),
            why(format!(
                "the manifest HEAD of the tag {}",
                crate::text::printable(tag)
            )),
        ),
        CatalogTask::Manifest {
            repo,
            digest,
            waiting,
            ..
        } => {
            let mut repos = vec![repo.clone()];
            for (path, _) in waiting {
                if !repos.contains(path) {
                    repos.push(path.clone());
                }
            }
            (
                GapOf::Repos(repos),
                why(format!("the manifest GET of {digest}")),
            )
        }
        CatalogTask::Config {
            repo,
            digest,
            manifest,
        } => (
            GapOf::Repos(vec![repo.clone()]),
            why(format!("the config blob {digest} of {manifest}")),
        ),
    }
}

/// How a tag's sighting compares with what the store knew of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Never seen (or seen deleted).
    New,
    /// It pointed at another digest.
    Moved,
    /// It points at the digest it pointed at.
    Unchanged,
}

/// Compares a tag's new digest with its stored state.
pub fn change(old: Option<&TagState>, digest: &Digest) -> Change {
    match old {
        None => Change::New,
        Some(old) if old.deleted_at.is_some() => Change::New,
        Some(old) if old.digest == Some(*digest) => Change::Unchanged,
        Some(_) => Change::Moved,
    }
}

/// A platform manifest of an index, as the tag's sighting records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// Its digest.
    pub digest: Digest,
    /// Its platform, when known and valid.
    pub platform: Option<Platform>,
    /// Its `os.version`, when known and valid.
    pub os_version: Option<String>,
}

/// A tag's sighting: its digest (an index, a manifest, or legacy taken as a manifest) and, for
/// an index, its platform manifests. The registry gives no push time.
pub fn observation(
    tag: &str,
    digest: Digest,
    kind: ObjectKind,
    children: &[Child],
) -> TagObservation {
    let mut facts = vec![DigestFact {
        digest,
        kind,
        platform: None,
        os_version: None,
        index: None,
    }];
    for child in children.iter().filter(|c| c.digest != digest) {
        if facts.iter().any(|f| f.digest == child.digest) {
            continue;
        }
        facts.push(DigestFact {
            digest: child.digest,
            kind: ObjectKind::Manifest,
            platform: child.platform.clone(),
            os_version: child.os_version.clone(),
            index: Some(digest),
        });
    }
    TagObservation {
        tag: tag.to_owned(),
        digest: Some(digest),
        pushed: None,
        updated: None,
        facts,
    }
}

/// The kind a HEAD's media type names: an index (OCI index, Docker manifest list), else a
/// manifest.
pub fn kind_of(media_type: Option<&str>) -> ObjectKind {
    match media_type.map(str::to_ascii_lowercase) {
        Some(m) if m.contains("manifest.list") || m.contains("image.index") => ObjectKind::Index,
        _ => ObjectKind::Manifest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::paging::LinkError;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    fn d(fill: u8) -> Digest {
        Digest::from_bytes([fill; 32])
    }

    #[test]
    fn catalog_origins_and_their_hosts() {
        let table = [
            ("https://mcr.microsoft.com", Some("mcr.microsoft.com")),
            ("https://mcr.microsoft.com/", Some("mcr.microsoft.com")),
            (
                "https://mcr.microsoft.com:8443",
                Some("mcr.microsoft.com:8443"),
            ),
            ("http://127.0.0.1:5000", Some("127.0.0.1:5000")),
            ("http://[::1]:5000/", Some("[::1]:5000")),
            ("http://mcr.microsoft.com", None),
            ("https://mcr.microsoft.com/v2", None),
            ("https://mcr.microsoft.com/?x=1", None),
            ("https://me:pw@mcr.microsoft.com", None),
            ("mcr.microsoft.com", None),
        ];
        for (text, host) in table {
            let got = registry_origin(text).map(|u| source_host(&u));
            assert_eq!(got.as_deref().ok(), host, "{text}: {got:?}");
            if let Err(e) = got {
                assert!(!e.contains("pw"), "{e}");
            }
        }
    }

    fn run(state: RunState) -> CatalogRun {
        match prepare(
            None,
            &url("https://r.example"),
            &[],
            None,
            false,
            5,
            "s.redb",
        ) {
            Ok(Start::New(run)) => CatalogRun { state, ..run },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_run_starts_resumes_or_is_refused_by_the_stored_one() {
        let registry = url("https://r.example");
        let go = |existing: Option<&CatalogRun>, repos: &[String], resume: bool| {
            prepare(existing, &registry, repos, None, resume, 9, "s.redb")
        };
        let fresh = run(RunState::Running);
        assert_eq!((fresh.id, fresh.host.as_str()), (1, "r.example"));
        assert_eq!(fresh.registry, "https://r.example");
        let finished = run(RunState::Finished);
        let incomplete = run(RunState::Incomplete);
        let repos = vec!["a/b".to_owned()];
        assert!(matches!(go(Some(&finished), &[], false), Ok(Start::New(r)) if r.id == 2));
        assert!(matches!(go(Some(&incomplete), &[], false), Ok(Start::New(r)) if r.id == 2));
        assert!(matches!(go(Some(&fresh), &[], true), Ok(Start::Resume(r)) if r.id == 1));
        assert!(matches!(
            go(Some(&incomplete), &[], true),
            Ok(Start::Resume(_))
        ));
        assert!(
            matches!(go(Some(&fresh), &[], false), Err(StartError::State(m)) if m.contains("--resume"))
        );
        assert!(matches!(
            go(Some(&finished), &[], true),
            Err(StartError::State(_))
        ));
        assert!(matches!(go(None, &[], true), Err(StartError::State(_))));
        assert!(matches!(
            go(Some(&fresh), &repos, true),
            Err(StartError::Usage(_))
        ));
    }

    #[test]
    fn listings_end_on_loops_and_repeats() {
        let p1 = url("https://r.example/v2/_catalog?n=2");
        let p2 = url("https://r.example/v2/_catalog?last=b&n=2");
        let p3 = url("https://r.example/v2/_catalog?last=d&n=2");
        let names = |a: &str, b: &str| vec![a.to_owned(), b.to_owned()];
        let mut listing = Listing::default();
        assert_eq!(
            page_step(&mut listing, &p1, &names("a", "b"), Ok(Some(&p2))),
            PageStep::Next(p2.clone())
        );
        assert_eq!(
            page_step(&mut listing, &p2, &names("c", "d"), Ok(Some(&p3))),
            PageStep::Next(p3.clone())
        );
        // Back to the first page: a loop.
        assert!(
            matches!(page_step(&mut listing.clone(), &p3, &names("e", "f"), Ok(Some(&p1))), PageStep::End(m) if m.contains("loops"))
        );
        // The same names again, under a new `last`: a repeat, nothing of it is stored.
        assert!(matches!(
            page_step(&mut listing.clone(), &p3, &names("c", "d"), Ok(None)),
            PageStep::Repeat(_)
        ));
        // Empty pages are no repeat of each other.
        assert_eq!(
            page_step(&mut listing.clone(), &p3, &[], Ok(None)),
            PageStep::Done
        );
        assert_eq!(
            page_step(&mut listing, &p3, &names("e", "f"), Ok(None)),
            PageStep::Done
        );
        assert_eq!(listing.pages, 3);
        // A refused `Link`: the page counts, its names are kept, the listing ends with why.
        let mut refused = Listing::default();
        assert_eq!(
            page_step(
                &mut refused,
                &p1,
                &names("a", "b"),
                Err("Link x leaves the registry's origin".into())
            ),
            PageStep::End("Link x leaves the registry's origin; the listing stops here".into())
        );
        assert_eq!(refused.pages, 1);
        assert!(matches!(
            page_step(&mut refused, &p2, &names("a", "b"), Ok(None)),
            PageStep::Repeat(_)
        ));
        let mut long = Listing {
            pages: MAX_LISTING_PAGES - 1,
            ..Listing::default()
        };
        assert!(
            matches!(page_step(&mut long, &p1, &[], Ok(Some(&p2))), PageStep::End(m) if m.contains("beyond"))
        );
    }

    #[test]
    fn failures_by_task() {
        let status = |code: u16, detail: Option<&str>| RegistryError::Status {
            url: "https://r.example/v2/x".into(),
            status: http::StatusCode::from_u16(code).unwrap(),
            detail: detail.map(str::to_owned),
        };
        let link = || RegistryError::Link {
            url: "https://r.example/v2/_catalog".into(),
            source: LinkError::OffHost("https://evil.example/v2/_catalog".into()),
        };
        // A 429 where the registry declares a pull budget.
        let rate_limited = || RegistryError::RateLimited {
            url: "https://r.example/v2/a/manifests/sha256:1".into(),
        };
        let budget_spent = || RegistryError::BudgetSpent {
            url: "https://r.example/v2/a/manifests/sha256:1".into(),
            spent: crate::registry::budget::Spent {
                frees_at: std::time::UNIX_EPOCH + std::time::Duration::from_secs(100),
            },
        };
        let catalog = CatalogTask::Catalog { url: "u".into() };
        let tags = CatalogTask::Tags {
            repo: "a".into(),
            url: "u".into(),
        };
        let head = CatalogTask::Head {
            repo: "a".into(),
            tag: "1".into(),
        };
        let manifest = CatalogTask::Manifest {
            repo: "a".into(),
            digest: d(1),
            kind: ObjectKind::Index,
            waiting: Vec::new(),
        };
        let config = CatalogTask::Config {
            repo: "a".into(),
            digest: d(2),
            manifest: d(1),
        };
        let unknown = Some("MANIFEST_UNKNOWN: manifest unknown");
        let table = [
            (&catalog, link(), 1, Failure::EndListing),
            (&tags, link(), 1, Failure::EndListing),
            (&catalog, status(404, None), 1, Failure::Fail),
            (&catalog, status(503, None), 1, Failure::Retry),
            (&catalog, status(503, None), 5, Failure::Fail),
            (
                &tags,
                status(404, Some("NAME_UNKNOWN")),
                1,
                Failure::NotFound,
            ),
            (&tags, status(401, None), 1, Failure::Fail),
            // A HEAD's 404, confirmed by the GET by tag: the registry's code decides.
            (&head, status(404, unknown), 1, Failure::NotFound),
            (
                &head,
                status(
                    404,
                    Some("NAME_UNKNOWN: repository name not known to registry"),
                ),
                1,
                Failure::Vanished,
            ),
            (&head, status(404, None), 1, Failure::Retry),
            (
                &head,
                status(404, Some("<html>not found")),
                4,
                Failure::Retry,
            ),
            (&head, status(404, None), 5, Failure::Fail),
            (&head, budget_spent(), 1, Failure::Budget),
            (&head, status(500, None), 2, Failure::Retry),
            (&head, link(), 1, Failure::Fail),
            (&manifest, status(404, unknown), 1, Failure::NotFound),
            (&manifest, status(404, None), 1, Failure::Fail),
            (&manifest, status(502, None), 1, Failure::Retry),
            (&config, status(404, unknown), 1, Failure::Fail),
            (&config, status(429, None), 1, Failure::Pause),
            (&manifest, status(429, None), 7, Failure::Pause),
            // A declared pull budget spent: a stop, however many attempts.
            (&manifest, rate_limited(), 1, Failure::Budget),
            (&manifest, rate_limited(), 5, Failure::Budget),
            (&manifest, budget_spent(), 9, Failure::Budget),
            (&catalog, status(429, None), 1, Failure::Pause),
            (&tags, status(429, None), 5, Failure::Pause),
            (&head, status(429, None), 9, Failure::Pause),
        ];
        for (task, err, attempts, want) in table {
            assert_eq!(failure(task, &err, attempts), want, "{task:?} {err}");
        }
    }

    #[test]
    fn a_spent_budget_frees_when_the_registry_said() {
        let spent = RegistryError::BudgetSpent {
            url: "u".into(),
            spent: crate::registry::budget::Spent {
                frees_at: std::time::UNIX_EPOCH + std::time::Duration::from_secs(500),
            },
        };
        let limited = RegistryError::RateLimited { url: "u".into() };
        let other = RegistryError::Status {
            url: "u".into(),
            status: http::StatusCode::TOO_MANY_REQUESTS,
            detail: None,
        };
        let window = crate::registry::budget::DEFAULT_WINDOW.as_secs();
        // (error, the window the client last heard of, when it frees)
        let table = [
            (&spent, None, Some(500)),
            (&spent, Some(700), Some(500)),
            (&limited, Some(700), Some(700)),
            (&limited, None, Some(10 + window)),
            (&other, Some(700), None),
        ];
        for (err, known, want) in table {
            assert_eq!(budget_frees_at(err, known, 10), want, "{err} {known:?}");
        }
        assert!(confirm_head(&RegistryError::Status {
            url: "u".into(),
            status: http::StatusCode::NOT_FOUND,
            detail: None,
        }));
        assert!(!confirm_head(&other));
    }

    #[test]
    fn a_job_given_up_leaves_its_listing_a_gap() {
        let waiting = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(r, t)| ((*r).to_owned(), (*t).to_owned()))
                .collect()
        };
        let repos = |names: &[&str]| GapOf::Repos(names.iter().map(|n| (*n).to_owned()).collect());
        // (task, the listing it leaves incomplete, what the reason names)
        let table = [
            (
                CatalogTask::Catalog {
                    url: "http://r/v2/_catalog?n=2".into(),
                },
                GapOf::Catalog,
                "the catalog page http://r/v2/_catalog?n=2 failed",
            ),
            (
                CatalogTask::Tags {
                    repo: "a/b".into(),
                    url: "http://r/v2/a/b/tags/list".into(),
                },
                repos(&["a/b"]),
                "the tag list page http://r/v2/a/b/tags/list failed",
            ),
            (
                CatalogTask::Head {
                    repo: "a/b".into(),
                    tag: "1".into(),
                },
                repos(&["a/b"]),
                "the manifest HEAD of the tag 1 failed",
            ),
            (
                CatalogTask::Manifest {
                    repo: "a/b".into(),
                    digest: d(1),
                    kind: ObjectKind::Index,
                    waiting: waiting(&[("a/b", "1"), ("c", "2"), ("a/b", "3"), ("c", "4")]),
                },
                repos(&["a/b", "c"]),
                "the manifest GET of sha256:0101",
            ),
            (
                CatalogTask::Config {
                    repo: "c".into(),
                    digest: d(2),
                    manifest: d(1),
                },
                repos(&["c"]),
                "the config blob sha256:0202",
            ),
        ];
        for (task, gap, names) in table {
            let (got, why) = given_up(&task, "HTTP 500 \u{1b}[2J");
            assert_eq!(got, gap, "{task:?}");
            assert!(why.starts_with(names), "{why}");
            assert!(
                why.ends_with("and was given up (--skip-failed)") && !why.contains('\u{1b}'),
                "{why}"
            );
        }
    }

    #[test]
    fn sightings_and_changes() {
        let child = |fill: u8, os: &str| Child {
            digest: d(fill),
            platform: Some(Platform::new(os, "amd64", None)),
            os_version: None,
        };
        let obs = observation(
            "1",
            d(9),
            ObjectKind::Index,
            &[child(1, "linux"), child(2, "windows"), child(1, "linux")],
        );
        assert_eq!(obs.digest, Some(d(9)));
        let facts: Vec<(Digest, ObjectKind, Option<Digest>)> = obs
            .facts
            .iter()
            .map(|f| (f.digest, f.kind, f.index))
            .collect();
        assert_eq!(
            facts,
            [
                (d(9), ObjectKind::Index, None),
                (d(1), ObjectKind::Manifest, Some(d(9))),
                (d(2), ObjectKind::Manifest, Some(d(9))),
            ]
        );
        let single = observation("1", d(9), ObjectKind::Manifest, &[]);
        assert_eq!(single.facts.len(), 1);

        let state = |digest: u8, deleted: bool| TagState {
            digest: Some(d(digest)),
            digests: vec![d(digest)],
            pushed: None,
            updated: None,
            first_seen: 1,
            last_seen: 1,
            run: 1,
            deleted_at: deleted.then_some(2),
        };
        assert_eq!(change(None, &d(1)), Change::New);
        assert_eq!(change(Some(&state(1, false)), &d(1)), Change::Unchanged);
        assert_eq!(change(Some(&state(2, false)), &d(1)), Change::Moved);
        assert_eq!(change(Some(&state(1, true)), &d(1)), Change::New);
    }

    #[test]
    fn kinds_read_and_prefixes() {
        assert_eq!(
            kind_of(Some("application/vnd.oci.image.index.v1+json")),
            ObjectKind::Index
        );
        assert_eq!(
            kind_of(Some(
                "application/vnd.docker.distribution.manifest.list.v2+json"
            )),
            ObjectKind::Index
        );
        assert_eq!(
            kind_of(Some("application/vnd.oci.image.manifest.v1+json")),
            ObjectKind::Manifest
        );
        assert_eq!(kind_of(None), ObjectKind::Manifest);
        assert!(in_prefix("windows/servercore", Some("windows/")));
        assert!(!in_prefix("dotnet/runtime", Some("windows/")));
        assert!(in_prefix("dotnet/runtime", None));
    }
}

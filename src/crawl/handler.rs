//! What a worker does with one job: fetch the page, parse it, validate what it holds, and decide
//! where its `next` link may lead. Nothing here touches the store; the outcome goes to the writer.
//!
//! A `next` link is only a hint that a following page exists: Hub's is this page's URL with
//! `page` one higher, and nothing else is accepted. A link that leaves the `--hub-url` origin is
//! never followed; the following page is read from the origin instead (this URL, `page` + 1), so
//! a hostile or misconfigured link loses nothing. Such a link is named in a warning once per
//! process, not on every page, retry and resume.
//!
//! A tag-name job asks the registry (`GET /v2/<name>/tags/list`, through
//! [`crate::registry::RegistryClient`] and its own retries) instead of Hub; when the registry
//! cannot answer, the outcome says so ([`Outcome::NoRegistry`]) and the writer falls back to the
//! `name`-filter cover.

use std::sync::atomic::{AtomicBool, Ordering};

use url::Url;

use crate::clock;
use crate::hub::{self, HubApi, RepoEntry, Skips, TagEntry, TagObservation};
use crate::model::RepoName;
use crate::net::{FetchError, HttpClient, RequestCounter};
use crate::registry::{RegistryClient, RegistryError};
use crate::store::{JobKind, ListingWindow};

/// What a fetched page holds, validated.
#[derive(Debug)]
pub enum Listing {
    /// Repositories of the namespace.
    Repos(Vec<RepoName>),
    /// Tags of a repository.
    Tags(Vec<TagObservation>),
    /// Tag names of a repository, from the registry.
    Names(Vec<String>),
}

/// A page fetched and parsed.
#[derive(Debug)]
pub struct PageData {
    /// When the page was fetched (unix seconds): the time its facts were seen.
    pub fetched_at: u64,
    /// Its entries.
    pub listing: Listing,
    /// Hub's `count` for the whole listing.
    pub count: Option<u64>,
    /// The next page, `Ok(None)` on the last page, `Err` when the link was refused.
    pub next: Result<Option<Url>, String>,
    /// What was left out.
    pub skips: Skips,
    /// Tags left out whose names Hub listed (invalid names, malformed objects), as
    /// [`crate::store::name_hash`]es: Hub counts them, so coverage counts them as seen.
    pub skipped_names: Vec<u64>,
}

/// How a job attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// The page was fetched and parsed.
    Page(Box<PageData>),
    /// Hub said 429: the job goes back without counting an attempt.
    RateLimited,
    /// Hub refused to page this far without signing in (the anonymous paging cap).
    Capped,
    /// Hub answered 404 on page 1 of a tag listing: the repository is not on Hub.
    Gone,
    /// Hub answered 404 on a later page: the listing shrank while it was read, and this view
    /// ends here.
    EndOfView,
    /// The registry could not be asked for a repository's tag names (after its retries), or
    /// none is configured: the cover falls back to `name` filters.
    NoRegistry(String),
    /// The attempt failed.
    Failed {
        /// Why, naming the URL.
        error: String,
        /// Whether a later attempt may succeed.
        transient: bool,
    },
}

/// Runs one job attempt; also returns the requests it took, retries included.
pub async fn run(
    client: &HttpClient,
    registry: Option<&RegistryClient>,
    api: &HubApi,
    kind: &JobKind,
) -> (Outcome, u64) {
    if let JobKind::TagNames { repo, url } = kind {
        return tag_names(registry, repo, url).await;
    }
    let counter = RequestCounter::default();
    let outcome = attempt(client, api, kind, &counter).await;
    (outcome, counter.get())
}

/// Reads one page of the registry's tag names of `repo`. The requests it took are the
/// registry client's count before and after (its token requests included); with several such
/// jobs at once a repository may be charged another's, the run's total stays exact.
async fn tag_names(
    registry: Option<&RegistryClient>,
    repo: &RepoName,
    url: &str,
) -> (Outcome, u64) {
    let Some(registry) = registry else {
        return (
            Outcome::NoRegistry(format!(
                "no registry is configured to list the tag names of {repo}"
            )),
            0,
        );
    };
    let before = registry.net_stats().requests.load(Ordering::Relaxed);
    let name = repo.to_string();
    let result = match registry.stored_page(Some(&name), url) {
        // A page whose `Link` is refused would end the names short: the cover needs them all.
        Ok(page) => {
            registry
                .tags_page(&name, &page)
                .await
                .and_then(|listed| match listed.refused {
                    Some(source) => Err(RegistryError::Link {
                        url: page.url().to_string(),
                        source,
                    }),
                    None => Ok(listed),
                })
        }
        Err(err) => Err(err),
    };
    let requests = registry
        .net_stats()
        .requests
        .load(Ordering::Relaxed)
        .saturating_sub(before);
    let outcome = match result {
        Ok(page) => Outcome::Page(Box::new(PageData {
            fetched_at: clock::now_unix(),
            listing: Listing::Names(page.names),
            count: None,
            next: Ok(page.next.map(|next| next.url().clone())),
            skips: Skips::default(),
            skipped_names: Vec::new(),
        })),
        Err(err) => Outcome::NoRegistry(err.to_string()),
    };
    (outcome, requests)
}

/// Whether an error answer is Hub's anonymous paging cap: a 403 whose message speaks of the
/// offset or of signing in (samples/hub-anonymous-cap-403.json).
fn is_paging_cap(err: &FetchError) -> bool {
    match err {
        FetchError::Status {
            status, message, ..
        } if *status == http::StatusCode::FORBIDDEN => message.as_deref().is_some_and(|m| {
            let m = m.to_ascii_lowercase();
            m.contains("offset") || m.contains("sign in")
        }),
        _ => false,
    }
}

async fn attempt(
    client: &HttpClient,
    api: &HubApi,
    kind: &JobKind,
    counter: &RequestCounter,
) -> Outcome {
    let url = match api.same_origin(kind.url()) {
        Ok(url) => url,
        // Stored jobs only hold checked URLs; a store edited by hand should not change that.
        Err(err) => {
            return Outcome::Failed {
                error: err.to_string(),
                transient: false,
            };
        }
    };
    let body = match client.get(&url, counter).await {
        Ok(body) => body,
        Err(FetchError::RateLimited { .. }) => return Outcome::RateLimited,
        Err(err) if is_paging_cap(&err) => return Outcome::Capped,
        Err(err @ FetchError::Status { status, .. }) if status == http::StatusCode::NOT_FOUND => {
            return match not_found(kind, page_number(&url)) {
                NotFound::RepoGone => Outcome::Gone,
                NotFound::EndOfView => Outcome::EndOfView,
                NotFound::Fail => Outcome::Failed {
                    error: err.to_string(),
                    transient: false,
                },
            };
        }
        Err(err) => {
            return Outcome::Failed {
                transient: err.is_transient(),
                error: err.to_string(),
            };
        }
    };
    let fetched_at = clock::now_unix();
    let parsed = match kind {
        JobKind::Repos { namespace, .. } => parse_repos(&body, namespace),
        JobKind::Tags {
            repo,
            window: ListingWindow::Single { .. },
            ..
        } => parse_single(&body, repo),
        JobKind::Tags { repo, .. } => parse_tags(&body, repo),
        // `run` sends these to the registry; a Hub page cannot answer one.
        JobKind::TagNames { .. } => {
            return Outcome::Failed {
                error: format!("{url}: a registry tag-name job was sent to Hub"),
                transient: false,
            };
        }
    };
    let (listing, count, next, skips, skipped_names) = match parsed {
        Ok(parts) => parts,
        Err(err) => {
            return Outcome::Failed {
                // A broken body may be a truncated or garbled answer: worth another attempt.
                error: format!("{url}: {err}"),
                transient: true,
            };
        }
    };
    let empty = match &listing {
        Listing::Repos(r) => r.is_empty(),
        Listing::Tags(t) => t.is_empty(),
        Listing::Names(n) => n.is_empty(),
    };
    let next = match next {
        None => Ok(None),
        Some(_) if empty => Err(format!(
            "{url}: the page holds no entries yet links a next page"
        )),
        Some(link) => match api.same_origin(&link) {
            Err(err) => match following_page(&url) {
                Some(next) => {
                    if OFF_HOST_NAMED.swap(true, Ordering::Relaxed) {
                        tracing::debug!("{url}: {err}; reading {next} instead");
                    } else {
                        tracing::warn!(
                            "{url}: {err}; reading the following pages from {} instead (further such links are logged with -vv)",
                            api.origin()
                        );
                    }
                    Ok(Some(next))
                }
                None => Err(format!("{url}: {err}")),
            },
            // Hub's next link is this page's URL with `page` one higher. Anything else (a link
            // back to an earlier page, a jump far ahead) could make the crawl go round forever.
            Ok(next) if page_number(&next) != page_number(&url).map(|p| p + 1) => Err(format!(
                "{url}: refused the next link {next}: it does not lead to the following page"
            )),
            Ok(next) => Ok(Some(next)),
        },
    };
    Outcome::Page(Box::new(PageData {
        fetched_at,
        listing,
        count,
        next,
        skips,
        skipped_names,
    }))
}

/// Whether an off-host `next` link was named in a warning already.
static OFF_HOST_NAMED: AtomicBool = AtomicBool::new(false);

/// `url` with its `page` one higher (the rest of the query as it was): the page Hub's own `next`
/// link names. `None` when the page number is not one.
fn following_page(url: &Url) -> Option<Url> {
    let page = page_number(url)?.checked_add(1)?.to_string();
    let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    match pairs.iter_mut().find(|(k, _)| k == "page") {
        Some((_, v)) => *v = page,
        None => pairs.push(("page".to_owned(), page)),
    }
    let mut next = url.clone();
    next.query_pairs_mut().clear().extend_pairs(pairs);
    Some(next)
}

/// What a 404 answer to a job means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFound {
    /// The repository is not on Hub: it never was (a typo in `--repo`), or it was removed.
    RepoGone,
    /// The view ends here: Hub answers 404 for a page past the end, so the listing shrank
    /// between reading the previous page and this one.
    EndOfView,
    /// Nothing to conclude: the job fails (with its URL and Hub's message).
    Fail,
}

/// Decides what a 404 means for a job reading page `page` of its listing (`None`: the URL's
/// page number does not parse).
///
/// Page 1 of a listing exists even when it is empty (`count: 0`), so a 404 there means the
/// thing listed is not on Hub. For a repository's tags that is a fact worth recording (the
/// repository is gone, its tags are no longer current), and not a reason to keep the run
/// unfinished. For the namespace's repository list, it means the namespace is missing: that
/// says nothing about which repositories exist, so the job fails and the user decides (fix
/// `--namespace`, or `--resume --skip-failed`). A later page is simply past the end.
pub fn not_found(kind: &JobKind, page: Option<u64>) -> NotFound {
    match (kind, page) {
        // One tag asked for by name: that tag is gone (deleted since the registry listed it).
        (
            JobKind::Tags {
                window: ListingWindow::Single { .. },
                ..
            },
            _,
        ) => NotFound::EndOfView,
        (JobKind::Tags { .. }, Some(1)) => NotFound::RepoGone,
        (JobKind::Repos { .. }, Some(1)) => NotFound::Fail,
        (_, Some(p)) if p > 1 => NotFound::EndOfView,
        _ => NotFound::Fail,
    }
}

/// The `page` query parameter of a listing URL (1 when absent, as Hub assumes).
fn page_number(url: &Url) -> Option<u64> {
    match url.query_pairs().find(|(k, _)| k == "page") {
        Some((_, v)) => v.parse().ok(),
        None => Some(1),
    }
}

type Parsed = (Listing, Option<u64>, Option<String>, Skips, Vec<u64>);

fn parse_repos(body: &[u8], namespace: &str) -> Result<Parsed, hub::PageError> {
    let page = hub::parse_page::<RepoEntry>(body)?;
    let mut skips = Skips::default();
    let mut repos = Vec::with_capacity(page.results.len());
    for entry in page.results {
        match entry.name.as_deref().map(|n| RepoName::new(namespace, n)) {
            Some(Ok(repo)) => repos.push(repo),
            Some(Err(err)) => {
                skips.invalid_repos += 1;
                tracing::warn!(
                    target: "digestmap::skipped::invalid_repository_names",
                    "skipped a repository of {namespace}: {err}"
                );
            }
            None => {
                skips.invalid_repos += 1;
                tracing::warn!(
                    target: "digestmap::skipped::invalid_repository_names",
                    "skipped a repository entry of {namespace} without a name"
                );
            }
        }
    }
    Ok((
        Listing::Repos(repos),
        page.count,
        page.next,
        skips,
        Vec::new(),
    ))
}

/// One tag object (`.../tags/<name>`), read as the one entry of a page.
fn parse_single(body: &[u8], repo: &RepoName) -> Result<Parsed, hub::PageError> {
    let mut page = br#"{"count":1,"next":null,"results":["#.to_vec();
    page.extend_from_slice(body);
    page.extend_from_slice(b"]}");
    let (listing, _, _, skips, skipped_names) = parse_tags(&page, repo)?;
    Ok((listing, None, None, skips, skipped_names))
}

fn parse_tags(body: &[u8], repo: &RepoName) -> Result<Parsed, hub::PageError> {
    let page = hub::parse_page::<TagEntry>(body)?;
    let mut skips = Skips::default();
    let name = repo.to_string();
    let mut tags = Vec::with_capacity(page.results.len());
    let mut skipped_names = Vec::new();
    for entry in &page.results {
        match hub::observe_tag(entry, &name, &mut skips) {
            Some(obs) => tags.push(obs),
            None => skipped_names.extend(entry.name.as_deref().map(crate::store::name_hash)),
        }
    }
    Ok((
        Listing::Tags(tags),
        page.count,
        page.next,
        skips,
        skipped_names,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ListingWindow;

    #[test]
    fn the_following_page_keeps_the_rest_of_the_query() {
        for (url, want) in [
            (
                "https://hub.docker.com/v2/namespaces/library/repositories/python/tags?page=1&page_size=100&ordering=-last_updated&name=3.1+x%26y",
                Some(
                    "https://hub.docker.com/v2/namespaces/library/repositories/python/tags?page=2&page_size=100&ordering=-last_updated&name=3.1+x%26y",
                ),
            ),
            (
                "http://127.0.0.1:1/v2/x?page_size=100",
                Some("http://127.0.0.1:1/v2/x?page_size=100&page=2"),
            ),
            (
                "http://127.0.0.1:1/v2/x?page=41",
                Some("http://127.0.0.1:1/v2/x?page=42"),
            ),
            ("http://127.0.0.1:1/v2/x?page=18446744073709551615", None),
            ("http://127.0.0.1:1/v2/x?page=two", None),
        ] {
            let got = following_page(&Url::parse(url).unwrap());
            assert_eq!(got.as_ref().map(Url::as_str), want, "{url}");
            if let Some(next) = got {
                assert_eq!(
                    page_number(&next),
                    page_number(&Url::parse(url).unwrap()).map(|p| p + 1)
                );
            }
        }
    }

    #[test]
    fn what_a_404_means() {
        let repo = RepoName::new("library", "ubuntu").unwrap();
        let tags = |window: ListingWindow| JobKind::Tags {
            repo: repo.clone(),
            url: String::new(),
            window,
        };
        let repos = |descending| JobKind::Repos {
            namespace: "library".into(),
            url: String::new(),
            descending,
        };
        let filter = ListingWindow::Filter {
            name: "3.12".into(),
            oldest: true,
        };
        let single = ListingWindow::Single {
            name: "3.12".into(),
        };
        let planned = ListingWindow::Planned {
            name: "3.12".into(),
            oldest: false,
        };
        let table = [
            (tags(ListingWindow::Plain), Some(1), NotFound::RepoGone),
            (tags(ListingWindow::Oldest), Some(1), NotFound::RepoGone),
            (tags(filter.clone()), Some(1), NotFound::RepoGone),
            (tags(ListingWindow::Plain), Some(2), NotFound::EndOfView),
            (tags(ListingWindow::Oldest), Some(7), NotFound::EndOfView),
            (tags(filter), Some(3), NotFound::EndOfView),
            (tags(ListingWindow::Plain), Some(0), NotFound::Fail),
            (tags(ListingWindow::Plain), None, NotFound::Fail),
            (repos(false), Some(1), NotFound::Fail),
            (repos(true), Some(1), NotFound::Fail),
            (repos(false), Some(2), NotFound::EndOfView),
            (repos(true), Some(2), NotFound::EndOfView),
            (repos(false), None, NotFound::Fail),
            // One tag by name: a 404 says the tag went, never the repository.
            (tags(single.clone()), Some(1), NotFound::EndOfView),
            (tags(single), None, NotFound::EndOfView),
            (tags(planned), Some(1), NotFound::RepoGone),
        ];
        for (kind, page, want) in table {
            assert_eq!(not_found(&kind, page), want, "{kind:?} page {page:?}");
        }
    }

    #[test]
    fn page_numbers() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            page_number(&url("https://h/x?page=3&page_size=100")),
            Some(3)
        );
        assert_eq!(page_number(&url("https://h/x?page_size=100")), Some(1));
        assert_eq!(page_number(&url("https://h/x?page=two")), None);
    }
}

//! Paged listings: `GET /v2/<name>/tags/list` and `GET /v2/_catalog`.
//!
//! Facts relied on (OCI distribution spec, "Listing Tags" and the catalog API of the
//! distribution registry):
//! - the first page is asked for with an optional `n` (page size); the answer is
//!   `{"name": ..., "tags": [...]}` (`tags` may be `null`) or `{"repositories": [...]}`;
//! - a further page is announced by `Link: <URL>; rel="next"`, the URL usually relative to the
//!   registry (`</v2/_catalog?last=x&n=100>`), sometimes absolute; the next page is whatever that
//!   URL names (`last` = the last name of this page). Without such a header the listing is done;
//! - names come in the registry's order, and a registry may ignore `n` (`docker-registry` 2.8
//!   answers every tag at once, unsorted): callers must assume neither sorting nor paging.
//!
//! A `Link` comes from the network, so it is checked before anyone follows it: it must stay on
//! the registry's origin and on the same endpoint (a registry sending us to another host would
//! receive our token), and it must advance (a `Link` to the same page, or with the same `last`,
//! would loop forever). A refused `Link` refuses only itself: the page that carried it was asked
//! of the registry and answered by it, so its names are returned ([`ListPage::refused`]). A whole-listing loop also refuses any page URL met twice, and a page
//! that lists a name an earlier page listed: with `last` paging a registry that honours `last`
//! never does, so one that does has skipped the names it should have served (a page repeating
//! the one before, its `Link` going on), and the listing would be short without saying so.

use std::collections::HashSet;

use url::Url;

/// A page of a listing, ready to ask for; its URL can be stored and restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    url: Url,
}

impl PageRequest {
    /// The page's URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Wraps a URL already checked to be on the registry (a stored one goes through
    /// [`check_page_url`]).
    pub(crate) fn new(url: Url) -> Self {
        Self { url }
    }
}

/// One page of names and where the next one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Tag names, or repository names for the catalog, in the registry's order.
    pub names: Vec<String>,
    /// The next page, when the registry announced one that may be followed.
    pub next: Option<PageRequest>,
    /// The `Link` the page announced but that is not followed (another host, no progress):
    /// the page's names are still good, the listing stops after them.
    pub refused: Option<LinkError>,
}

/// Why a `Link` (or a stored page URL) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a URL, even relative to the page.
    #[error("Link {0:?} is not a URL")]
    Malformed(String),
    /// Another scheme, host or port than the registry's.
    #[error("Link {0} leaves the registry's origin; not following it")]
    OffHost(String),
    /// Another endpoint than the page's.
    #[error("Link {0} names another endpoint than the listing's")]
    OtherEndpoint(String),
    /// The same page again, or the same `last`.
    #[error("Link {0} does not advance the listing; refusing to loop")]
    NoProgress(String),
    /// A page lists a name (this one) an earlier page of the same listing listed.
    #[error(
        "the page lists {0:?}, which an earlier page listed: the registry does not page \
         forward, so names may be missing; refusing the listing"
    )]
    Repeated(String),
}

/// The first of `names` (one page) that an earlier page of the same listing listed (`listed`).
/// A name twice within one page is not counted: nothing was skipped for it.
pub fn repeated<'a>(listed: &HashSet<String>, names: &'a [String]) -> Option<&'a str> {
    names
        .iter()
        .find(|name| listed.contains(*name))
        .map(String::as_str)
}

/// The first page of `/v2/<repository>/tags/list`, `n` names at a time when given.
pub fn tags_url(registry: &Url, repository: &str, n: Option<u32>) -> Url {
    first_page(registry, &format!("/v2/{repository}/tags/list"), n)
}

/// The first page of `/v2/_catalog`, `n` names at a time when given.
pub fn catalog_url(registry: &Url, n: Option<u32>) -> Url {
    first_page(registry, "/v2/_catalog", n)
}

fn first_page(registry: &Url, path: &str, n: Option<u32>) -> Url {
    let mut url = registry.clone();
    url.set_path(path);
    url.set_query(None);
    if let Some(n) = n {
        url.query_pairs_mut().append_pair("n", &n.to_string());
    }
    url
}

/// The `rel="next"` target among `Link` header values, checked against the page it came with.
pub fn next_page<'a>(
    current: &Url,
    links: impl IntoIterator<Item = &'a str>,
) -> Result<Option<PageRequest>, LinkError> {
    let Some(target) = links
        .into_iter()
        .flat_map(split_links)
        .find_map(|(target, params)| {
            params
                .iter()
                .any(|p| is_rel_next(p))
                .then(|| target.to_owned())
        })
    else {
        return Ok(None);
    };
    let next = current
        .join(&target)
        .map_err(|_| LinkError::Malformed(target.chars().take(200).collect()))?;
    check_page_url(current, &next)?;
    if next == *current || (last_of(&next).is_some() && last_of(&next) == last_of(current)) {
        return Err(LinkError::NoProgress(next.to_string()));
    }
    Ok(Some(PageRequest::new(next)))
}

/// Checks that `url` is a page of the same listing as `reference`: same origin, same path.
pub fn check_page_url(reference: &Url, url: &Url) -> Result<(), LinkError> {
    if url.origin() != reference.origin() {
        return Err(LinkError::OffHost(url.to_string()));
    }
    if url.path() != reference.path() {
        return Err(LinkError::OtherEndpoint(url.to_string()));
    }
    Ok(())
}

fn last_of(url: &Url) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == "last")
        .map(|(_, v)| v.into_owned())
}

fn is_rel_next(param: &str) -> bool {
    let Some((name, value)) = param.split_once('=') else {
        return false;
    };
    name.trim().eq_ignore_ascii_case("rel")
        && value
            .trim()
            .trim_matches('"')
            .split_ascii_whitespace()
            .any(|rel| rel.eq_ignore_ascii_case("next"))
}

/// `<a>; rel="next", <b>; rel="prev"` → `[(a, [rel="next"]), (b, [rel="prev"])]`. Commas inside
/// `<...>` belong to the URL.
fn split_links(header: &str) -> Vec<(&str, Vec<&str>)> {
    let mut out = Vec::new();
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            break;
        };
        let target = &after[..close];
        let tail = &after[close + 1..];
        let end = tail.find('<').unwrap_or(tail.len());
        let params = tail[..end]
            .split([';', ','])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        out.push((target, params));
        rest = &tail[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn first_pages() {
        let registry = url("https://mcr.example/");
        assert_eq!(
            tags_url(&registry, "windows/servercore", Some(50)).as_str(),
            "https://mcr.example/v2/windows/servercore/tags/list?n=50"
        );
        assert_eq!(
            catalog_url(&registry, None).as_str(),
            "https://mcr.example/v2/_catalog"
        );
    }

    #[test]
    fn link_table() {
        let current = url("https://r.example/v2/_catalog?n=2");
        let page2 = url("https://r.example/v2/_catalog?last=b&n=2");
        let ok = |u: &Url| Ok(Some(PageRequest::new(u.clone())));
        type Row = (Vec<&'static str>, Result<Option<PageRequest>, LinkError>);
        let table: Vec<Row> = vec![
            (vec![], Ok(None)),
            (vec![r#"</v2/_catalog?last=b&n=2>; rel="next""#], ok(&page2)),
            (vec!["</v2/_catalog?last=b&n=2>;rel=next"], ok(&page2)),
            (
                vec![r#"<https://r.example/v2/_catalog?last=b&n=2>; rel="next""#],
                ok(&page2),
            ),
            (
                vec![r#"</v2/_catalog?last=a>; rel="prev", </v2/_catalog?last=b&n=2>; REL="next""#],
                ok(&page2),
            ),
            (vec![r#"</v2/_catalog?last=a>; rel="prev""#], Ok(None)),
            (
                vec![r#"<https://evil.example/v2/_catalog?last=b>; rel="next""#],
                Err(LinkError::OffHost(
                    "https://evil.example/v2/_catalog?last=b".into(),
                )),
            ),
            (
                vec![r#"<http://r.example/v2/_catalog?last=b>; rel="next""#],
                Err(LinkError::OffHost(
                    "http://r.example/v2/_catalog?last=b".into(),
                )),
            ),
            (
                vec![r#"<//evil.example/v2/_catalog?last=b>; rel="next""#],
                Err(LinkError::OffHost(
                    "https://evil.example/v2/_catalog?last=b".into(),
                )),
            ),
            (
                vec![r#"</v2/other/tags/list?last=b>; rel="next""#],
                Err(LinkError::OtherEndpoint(
                    "https://r.example/v2/other/tags/list?last=b".into(),
                )),
            ),
            (
                vec![r#"</v2/_catalog?n=2>; rel="next""#],
                Err(LinkError::NoProgress(
                    "https://r.example/v2/_catalog?n=2".into(),
                )),
            ),
            (
                vec!["<http://[::1>; rel=next"],
                Err(LinkError::Malformed("http://[::1".into())),
            ),
            (vec!["garbage; rel=next", "<unterminated"], Ok(None)),
        ];
        for (links, want) in table {
            assert_eq!(next_page(&current, links.clone()), want, "{links:?}");
        }
        // The same `last` again, in another spelling of the URL.
        let at_b = url("https://r.example/v2/_catalog?last=b&n=2");
        assert!(matches!(
            next_page(&at_b, [r#"</v2/_catalog?n=2&last=b>; rel="next""#]),
            Err(LinkError::NoProgress(_))
        ));
    }

    #[test]
    fn repeated_names() {
        let listed: HashSet<String> = ["a", "b"].map(String::from).into();
        let page = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let table: Vec<(Vec<String>, Option<&str>)> = vec![
            (page(&[]), None),
            (page(&["c", "d"]), None),
            (page(&["c", "c"]), None),
            (page(&["a", "b"]), Some("a")),
            (page(&["c", "b"]), Some("b")),
        ];
        for (names, want) in table {
            assert_eq!(repeated(&listed, &names), want, "{names:?}");
        }
        assert_eq!(repeated(&HashSet::new(), &page(&["a"])), None);
    }
}

//! URLs of the Hub API and the origin guard.
//!
//! Every URL digestmap requests is either built here from `--hub-url` or is a `next` link from a
//! page, and a `next` link is only followed after [`HubApi::same_origin`] has checked that it stays
//! on the scheme, host and port of `--hub-url`: a page must never be able to send the crawler (and,
//! later, its credentials) to another host.
//!
//! A URL's userinfo (`user:password@`) is a secret: `--hub-url` refuses it without repeating it,
//! and every URL these errors quote passes through [`redact_userinfo`] first.

use std::net::IpAddr;

use url::Url;

use super::PAGE_SIZE;
use crate::model::RepoName;

/// The base of the Hub API and the URLs built from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubApi {
    base: Url,
}

/// Why `--hub-url` was refused. Every variant quotes the URL with its userinfo replaced by
/// `***`.
#[derive(Debug, thiserror::Error)]
pub enum HubUrlError {
    /// A user name or password in the URL: credentials never go in a flag's value (others can
    /// read it in `ps`), and the message must not repeat them.
    #[error(
        "--hub-url {0:?} holds a user name or password, which digestmap never sends; give the bare origin, and sign in with --token-stdin"
    )]
    Userinfo(String),
    /// Not a URL at all.
    #[error("--hub-url {url:?} is not a valid URL: {source}")]
    Parse {
        /// The text given.
        url: String,
        /// The parser's complaint.
        source: url::ParseError,
    },
    /// A scheme other than https, or http to a host that is not loopback.
    #[error(
        "--hub-url {0:?} must use https (plain http is accepted only for loopback hosts such as 127.0.0.1)"
    )]
    Insecure(String),
    /// URLs with credentials, queries or fragments have no place as an API base.
    #[error("--hub-url {0:?} must be a bare origin such as https://hub.docker.com")]
    NotAnOrigin(String),
}

/// A link that leaves the Hub origin.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "refused to follow {link:?}: it leaves {origin} (only links on the --hub-url origin are followed)"
)]
pub struct OffHostError {
    /// The link as the page gave it (shortened).
    pub link: String,
    /// The origin that links must stay on.
    pub origin: String,
}

impl HubApi {
    /// Validates the API base: https anywhere, plain http only on loopback (for local doubles).
    pub fn new(base: &str) -> Result<Self, HubUrlError> {
        let shown = redact_userinfo(base);
        let url = Url::parse(base).map_err(|source| HubUrlError::Parse {
            url: shown.clone(),
            source,
        })?;
        if !url.username().is_empty() || url.password().is_some() || shown != base {
            return Err(HubUrlError::Userinfo(shown));
        }
        if url.query().is_some()
            || url.fragment().is_some()
            || url.host_str().is_none()
            || !matches!(url.path(), "" | "/")
        {
            return Err(HubUrlError::NotAnOrigin(shown));
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            _ => return Err(HubUrlError::Insecure(shown)),
        }
        Ok(Self { base: url })
    }

    /// The origin as text, e.g. `https://hub.docker.com`.
    pub fn origin(&self) -> String {
        self.base.origin().ascii_serialization()
    }

    /// First page of a namespace's repository list (the documented `namespaces` endpoint), by
    /// name ascending, or descending: under the anonymous cap the two orders are two windows.
    pub fn repositories_url(&self, namespace: &str, descending: bool) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("validated as a hierarchical URL")
            .clear()
            .extend(["v2", "namespaces", namespace, "repositories"]);
        url.query_pairs_mut()
            .append_pair("page", "1")
            .append_pair("page_size", &PAGE_SIZE.to_string())
            .append_pair("ordering", if descending { "-name" } else { "name" });
        url
    }

    /// First page of a repository's plain tag list (Hub's default order, newest first).
    pub fn tags_url(&self, repo: &RepoName) -> Url {
        self.tags_url_with(repo, None, None)
    }

    /// First page of a view of a repository's tag list: `ordering` (`last_updated` newest first,
    /// `-last_updated` oldest first) and a `name` substring filter.
    pub fn tags_url_with(
        &self,
        repo: &RepoName,
        ordering: Option<&str>,
        name: Option<&str>,
    ) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("validated as a hierarchical URL")
            .clear()
            .extend([
                "v2",
                "namespaces",
                &repo.namespace,
                "repositories",
                &repo.name,
                "tags",
            ]);
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("page", "1")
                .append_pair("page_size", &PAGE_SIZE.to_string());
            if let Some(ordering) = ordering {
                query.append_pair("ordering", ordering);
            }
            if let Some(name) = name {
                query.append_pair("name", name);
            }
        }
        url
    }

    /// Parses a `next` link and checks it stays on the Hub origin (scheme, host and port).
    pub fn same_origin(&self, link: &str) -> Result<Url, OffHostError> {
        let refuse = || OffHostError {
            link: shorten(link),
            origin: self.origin(),
        };
        let url = Url::parse(link).map_err(|_| refuse())?;
        let same = url.scheme() == self.base.scheme()
            && url.host() == self.base.host()
            && url.port_or_known_default() == self.base.port_or_known_default()
            && url.username().is_empty()
            && url.password().is_none();
        if same { Ok(url) } else { Err(refuse()) }
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// A link as an error may quote it: without userinfo, at most 200 characters.
fn shorten(text: &str) -> String {
    redact_userinfo(text).chars().take(200).collect()
}

/// `text` with the userinfo of the URL it holds (`user:password@` before the host) replaced by
/// `***`, so no message repeats it. Works on text that does not parse as a URL too, since a
/// parse error must not echo the secret either.
pub fn redact_userinfo(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let rest = &text[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &rest[at..]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_must_be_safe() {
        assert!(HubApi::new("https://hub.docker.com").is_ok());
        assert!(HubApi::new("http://127.0.0.1:8080").is_ok());
        assert!(HubApi::new("http://[::1]:8080/").is_ok());
        assert!(HubApi::new("http://localhost:1").is_ok());
        assert!(matches!(
            HubApi::new("http://hub.docker.com"),
            Err(HubUrlError::Insecure(_))
        ));
        assert!(matches!(
            HubApi::new("ftp://127.0.0.1"),
            Err(HubUrlError::Insecure(_))
        ));
        assert!(matches!(
            HubApi::new("https://u:p@hub.docker.com"),
            Err(HubUrlError::Userinfo(_))
        ));
        assert!(HubApi::new("not a url").is_err());
    }

    #[test]
    fn userinfo_is_refused_and_never_repeated() {
        for (given, shown) in [
            (
                "http://user:s3cret@127.0.0.1:8080",
                "http://***@127.0.0.1:8080",
            ),
            ("https://tok@hub.docker.com/", "https://***@hub.docker.com/"),
            (
                "https://:s3cret@hub.docker.com",
                "https://***@hub.docker.com",
            ),
            (
                "https://a@b:c@hub.docker.com/x@y",
                "https://***@hub.docker.com/x@y",
            ),
            // Unparsable (a port too large), yet the secret must not be echoed.
            (
                "http://user:s3cret@127.0.0.1:99999",
                "http://***@127.0.0.1:99999",
            ),
            ("user:s3cret@host", "***@host"),
        ] {
            assert_eq!(redact_userinfo(given), shown);
            let err = HubApi::new(given).unwrap_err().to_string();
            assert!(
                !["s3cret", "user:", "tok@", "a@b"]
                    .iter()
                    .any(|s| err.contains(s)),
                "{err}"
            );
            assert!(err.contains(shown), "{err}");
        }
        assert!(matches!(
            HubApi::new("http://user:s3cret@127.0.0.1:8080"),
            Err(HubUrlError::Userinfo(_))
        ));
        for plain in ["https://hub.docker.com/v2/x?a=b@c", "no url at all", ""] {
            assert_eq!(redact_userinfo(plain), plain);
        }
        let api = HubApi::new("http://127.0.0.1:8080").unwrap();
        let err = api
            .same_origin("http://me:s3cret@127.0.0.1:8080/v2/x?page=2")
            .unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn urls() {
        let api = HubApi::new("https://hub.docker.com").unwrap();
        assert_eq!(
            api.repositories_url("library", false).as_str(),
            "https://hub.docker.com/v2/namespaces/library/repositories?page=1&page_size=100&ordering=name"
        );
        let repo = RepoName::new("library", "ubuntu").unwrap();
        assert_eq!(
            api.tags_url(&repo).as_str(),
            "https://hub.docker.com/v2/namespaces/library/repositories/ubuntu/tags?page=1&page_size=100"
        );
    }

    #[test]
    fn tag_views() {
        let api = HubApi::new("https://hub.docker.com").unwrap();
        let repo = RepoName::new("library", "python").unwrap();
        assert_eq!(
            api.tags_url_with(&repo, Some("-last_updated"), Some("3.1 x&y"))
                .as_str(),
            "https://hub.docker.com/v2/namespaces/library/repositories/python/tags?page=1&page_size=100&ordering=-last_updated&name=3.1+x%26y"
        );
    }

    #[test]
    fn next_links_stay_on_origin() {
        let api = HubApi::new("http://127.0.0.1:8080").unwrap();
        assert!(api.same_origin("http://127.0.0.1:8080/v2/x?page=2").is_ok());
        for bad in [
            "http://127.0.0.1:8081/v2/x?page=2",
            "https://127.0.0.1:8080/v2/x?page=2",
            "http://evil.example/v2/x",
            "http://user@127.0.0.1:8080/v2/x",
            "/v2/x?page=2",
            "javascript:alert(1)",
        ] {
            assert!(api.same_origin(bad).is_err(), "{bad} accepted");
        }
    }
}

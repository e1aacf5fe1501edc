//! Where the client may send requests, and what may go with them.
//!
//! Rules (the same as for `--hub-url`, applied to every host the registry names):
//! - the registry, its token realm and any redirect target must be https, or plain http on a
//!   loopback host (local doubles and test registries): a registry cannot send us in clear text
//!   across the network;
//! - a token or credential goes only to the origin it is for: the registry's token to the
//!   registry origin, Basic credentials to that registry's realm (or the registry itself when it
//!   asks for Basic). A redirect to any other origin (the blob CDN) is followed with no
//!   `Authorization` at all;
//! - a redirect is followed at most [`MAX_REDIRECTS`] times.

use std::net::IpAddr;

use url::Url;

/// Redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;

/// https anywhere, or plain http on a loopback host.
pub fn secure_or_loopback(url: &Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => is_loopback(url),
        _ => false,
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Where a redirect leads and whether the request may keep its `Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The absolute target.
    pub url: Url,
    /// Only a target on the registry's own origin gets the registry's token.
    pub with_authorization: bool,
}

/// Why a redirect was not followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    /// No usable `Location`.
    #[error("redirect without a usable Location ({0:?})")]
    Location(String),
    /// A target in clear text off this machine, or another scheme.
    #[error("redirect to {0} refused: only https (or http on a loopback host) is followed")]
    Insecure(String),
}

/// Decides a redirect from `current` to `location` for a client of `registry`.
pub fn redirect(registry: &Url, current: &Url, location: &str) -> Result<Redirect, RedirectError> {
    let url = current
        .join(location.trim())
        .map_err(|_| RedirectError::Location(location.chars().take(200).collect()))?;
    if !secure_or_loopback(&url) {
        return Err(RedirectError::Insecure(url.to_string()));
    }
    Ok(Redirect {
        with_authorization: url.origin() == registry.origin(),
        url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_hosts() {
        let table = [
            ("https://registry-1.docker.io/", true),
            ("http://127.0.0.1:5000/", true),
            ("http://127.8.9.1/", true),
            ("http://[::1]:80/", true),
            ("http://localhost:8080/", true),
            ("http://registry.example/", false),
            ("http://10.0.0.1/", false),
            ("ftp://127.0.0.1/", false),
            ("file:///etc/passwd", false),
        ];
        for (text, want) in table {
            assert_eq!(
                secure_or_loopback(&Url::parse(text).unwrap()),
                want,
                "{text}"
            );
        }
    }

    #[test]
    fn redirects() {
        let registry = Url::parse("https://registry-1.docker.io/").unwrap();
        let blob = registry.join("/v2/library/x/blobs/sha256:00").unwrap();
        type Row = (&'static str, Result<(&'static str, bool), ()>);
        let table: [Row; 6] = [
            (
                "https://production.cloudflare.docker.com/registry-v2/x?sig=1",
                Ok((
                    "https://production.cloudflare.docker.com/registry-v2/x?sig=1",
                    false,
                )),
            ),
            (
                "/v2/library/x/blobs/uploads/elsewhere",
                Ok((
                    "https://registry-1.docker.io/v2/library/x/blobs/uploads/elsewhere",
                    true,
                )),
            ),
            (
                "https://registry-1.docker.io:8443/x",
                Ok(("https://registry-1.docker.io:8443/x", false)),
            ),
            ("http://cdn.example/x", Err(())),
            ("http://[bad", Err(())),
            ("javascript:alert(1)", Err(())),
        ];
        for (location, want) in table {
            let got = redirect(&registry, &blob, location)
                .map(|r| (r.url.to_string(), r.with_authorization))
                .map_err(|_| ());
            assert_eq!(got, want.map(|(u, a)| (u.to_owned(), a)), "{location}");
        }
    }
}

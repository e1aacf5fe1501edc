//! Bearer tokens from the registry's token service, one per (realm, service, scope).
//!
//! Facts relied on (distribution token spec, Docker Hub):
//! - `GET <realm>?service=<service>&scope=<scope>` (one `scope` parameter per scope), anonymous
//!   or with HTTP Basic credentials, answers `{"token": ..., "access_token": ..., "expires_in":
//!   <seconds>, "issued_at": ...}`; either token field may be the one present;
//! - `expires_in` defaults to 60 seconds when absent; Hub gives 300;
//! - scopes look like `repository:library/ubuntu:pull` and, for the catalog,
//!   `registry:catalog:*`.
//!
//! A token is renewed before it expires: a fifth of its lifetime early (at most a minute), so a
//! request never leaves with a token about to lapse in flight; and at once when the registry
//! answers `401 invalid_token`. Expiry is counted from when the answer arrived, which is never
//! later than the service's own clock says. Tokens live in sensitive header values only.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::HeaderValue;
use serde::Deserialize;
use url::Url;

/// Lifetime of a token whose answer gives no `expires_in`.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// Longest early renewal.
pub const MAX_RENEW_EARLY: Duration = Duration::from_secs(60);

/// The scope of pulling from a repository.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// The scope of listing the catalog.
pub const CATALOG_SCOPE: &str = "registry:catalog:*";

/// What a token is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    /// The token service.
    pub realm: Url,
    /// The `service` named by the challenge.
    pub service: Option<String>,
    /// Space-separated scopes.
    pub scope: String,
}

impl TokenKey {
    /// The token service URL to ask.
    pub fn url(&self) -> Url {
        let mut url = self.realm.clone();
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &self.service {
                query.append_pair("service", service);
            }
            for scope in self.scope.split_ascii_whitespace() {
                query.append_pair("scope", scope);
            }
        }
        url
    }
}

/// A token and when to renew it.
#[derive(Clone)]
pub struct Token {
    /// `Bearer <token>`, marked sensitive.
    pub header: HeaderValue,
    /// When to get a new one.
    pub renew_at: Instant,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("renew_at", &self.renew_at)
            .finish_non_exhaustive()
    }
}

/// Why a token answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not JSON of the token shape.
    #[error("the token answer is not a token object: {0}")]
    Json(String),
    /// Neither `token` nor `access_token`.
    #[error("the token answer holds no token")]
    Missing,
    /// Characters that cannot go in a header.
    #[error("the token holds characters that cannot be sent in a header")]
    Unprintable,
}

#[derive(Deserialize)]
struct Answer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<i64>,
}

/// Reads a token service answer received at `now`.
pub fn parse_token(bytes: &[u8], now: Instant) -> Result<Token, TokenError> {
    let answer: Answer =
        serde_json::from_slice(bytes).map_err(|err| TokenError::Json(err.to_string()))?;
    let token = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token.filter(|t| !t.is_empty()))
        .ok_or(TokenError::Missing)?;
    let mut header =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| TokenError::Unprintable)?;
    header.set_sensitive(true);
    let lifetime = match answer.expires_in {
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds.unsigned_abs()),
        _ => DEFAULT_LIFETIME,
    };
    Ok(Token {
        header,
        renew_at: now + lifetime - (lifetime / 5).min(MAX_RENEW_EARLY),
    })
}

/// Tokens by what they are for.
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: HashMap<TokenKey, Token>,
}

impl TokenCache {
    /// A token for `key` that is not due for renewal at `now`.
    pub fn get(&self, key: &TokenKey, now: Instant) -> Option<&Token> {
        self.tokens.get(key).filter(|t| now < t.renew_at)
    }

    /// Keeps a new token.
    pub fn insert(&mut self, key: TokenKey, token: Token) {
        self.tokens.insert(key, token);
    }

    /// Forgets the token for `key` (the registry called it invalid).
    pub fn invalidate(&mut self, key: &TokenKey, sent: &HeaderValue) {
        // Only the token that was refused: concurrent requests that went out before any token was
        // known come back with 401s too, and must not throw away the one fetched meanwhile.
        if self.tokens.get(key).is_some_and(|t| t.header == *sent) {
            self.tokens.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_urls() {
        let key = TokenKey {
            realm: Url::parse("https://auth.docker.io/token").unwrap(),
            service: Some("registry.docker.io".into()),
            scope: "repository:library/ubuntu:pull repository:library/debian:pull".into(),
        };
        assert_eq!(
            key.url().as_str(),
            "https://auth.docker.io/token?service=registry.docker.io\
             &scope=repository%3Alibrary%2Fubuntu%3Apull&scope=repository%3Alibrary%2Fdebian%3Apull"
        );
        let ecr = TokenKey {
            realm: Url::parse("https://public.ecr.aws/token/?x=1").unwrap(),
            service: None,
            scope: CATALOG_SCOPE.into(),
        };
        assert_eq!(
            ecr.url().as_str(),
            "https://public.ecr.aws/token/?x=1&scope=registry%3Acatalog%3A*"
        );
    }

    #[test]
    fn answers() {
        let now = Instant::now();
        let table: [(&str, Result<Duration, TokenError>); 8] = [
            (
                r#"{"token":"abc","access_token":"abc","expires_in":300,"issued_at":"2026-01-01T00:00:00Z"}"#,
                Ok(Duration::from_secs(240)),
            ),
            (r#"{"access_token":"abc"}"#, Ok(Duration::from_secs(48))),
            (
                r#"{"token":"abc","expires_in":0}"#,
                Ok(Duration::from_secs(48)),
            ),
            (
                r#"{"token":"abc","expires_in":-5}"#,
                Ok(Duration::from_secs(48)),
            ),
            (
                r#"{"token":"abc","expires_in":3600}"#,
                Ok(Duration::from_secs(3540)),
            ),
            (r#"{"token":""}"#, Err(TokenError::Missing)),
            (r#"{"token":"a\nb"}"#, Err(TokenError::Unprintable)),
            ("[1]", Err(TokenError::Json(String::new()))),
        ];
        for (body, want) in table {
            let got = parse_token(body.as_bytes(), now).map(|t| t.renew_at - now);
            match (&got, &want) {
                (Err(TokenError::Json(_)), Err(TokenError::Json(_))) => {}
                _ => assert_eq!(got, want, "{body}"),
            }
        }
        let token = parse_token(br#"{"token":"s3cret"}"#, now).unwrap();
        assert!(token.header.is_sensitive());
        assert!(!format!("{token:?}").contains("s3cret"));
    }

    #[test]
    fn cache_renews_before_expiry() {
        let now = Instant::now();
        let key = TokenKey {
            realm: Url::parse("https://a.example/t").unwrap(),
            service: None,
            scope: pull_scope("x"),
        };
        let mut cache = TokenCache::default();
        cache.insert(
            key.clone(),
            parse_token(br#"{"token":"t","expires_in":100}"#, now).unwrap(),
        );
        assert!(cache.get(&key, now + Duration::from_secs(79)).is_some());
        assert!(cache.get(&key, now + Duration::from_secs(80)).is_none());
        // Another token than the cached one was refused: the cached one stays.
        cache.invalidate(&key, &HeaderValue::from_static("Bearer other"));
        assert!(cache.get(&key, now).is_some());
        let sent = cache.get(&key, now).unwrap().header.clone();
        cache.invalidate(&key, &sent);
        assert!(cache.get(&key, now).is_none());
    }
}

//! The authentication flow of one registry client: what the last `401` taught, which
//! `Authorization` a request gets, and the token service round trip. The realm and service a
//! challenge names are kept for every later request of the client (a crawl's or an enrichment's
//! one client), so the registry challenges once per run, not once per repository: until its
//! first answer, requests go one at a time.
//!
//! Facts relied on are in [`super::challenge`] and [`super::token`]. The flow: a request first
//! goes with what is known (nothing, until a `401` says; an open registry never does). A `401`
//! with a `Bearer` challenge sets the realm and service (the realm must be https or loopback),
//! drops the token that was refused, and on `insufficient_scope` remembers the scope the
//! registry named for this request's scope; a `Basic` challenge sends the credentials to the
//! registry itself, when they belong to it. A request is tried at most three times (as it was,
//! then with up to two new authorizations) before [`RegistryError::Unauthorized`].
//! Basic credentials go to the token realm only when they belong to the registry's host, and
//! a token only to the registry origin (redirects elsewhere go without: see
//! [`super::origin`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, Method, StatusCode};
use reqwest::Response;
use url::Url;

use super::challenge::{Challenge, TokenProblem, challenges};
use super::client::RegistryClient;
use super::error::{RegistryError, registry_detail};
use super::origin;
use super::token::{Token, TokenCache, TokenError, TokenKey, parse_token};
use crate::net::auth::Secret;
use crate::net::read_body;

/// Largest token service answer read.
const MAX_TOKEN_BODY: usize = 64 * 1024;

/// Credentials for one registry host; never sent anywhere else. Docker Hub sign-in credentials
/// (user and personal access token, as [`crate::net::auth::discover`] finds them) belong to
/// `registry-1.docker.io`, whose realm accepts them as Basic.
#[derive(Debug, Clone)]
pub struct HostCredentials {
    /// The host they belong to, as in the registry URL (`registry-1.docker.io`, `host:port`).
    pub host: String,
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub secret: Secret,
}

impl HostCredentials {
    /// Whether these credentials are for `registry`.
    pub fn belong_to(&self, registry: &Url) -> bool {
        let Some(host) = registry.host_str() else {
            return false;
        };
        let with_port = match registry.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        self.host.eq_ignore_ascii_case(&with_port)
    }
}

/// How the registry wants to be authenticated to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scheme {
    Bearer { realm: Url, service: Option<String> },
    Basic,
}

/// What the client has learned about authenticating to its registry.
#[derive(Debug, Default)]
pub(super) struct AuthState {
    /// `None` until a 401 says: an open registry never says.
    scheme: Option<Scheme>,
    tokens: TokenCache,
    /// Scopes a registry asked for instead of the one we computed (`insufficient_scope`).
    rescoped: HashMap<String, String>,
    /// Whether the registry has answered a request: from then on `scheme` says how it
    /// authenticates (`None`: it is open).
    answered: bool,
}

/// What goes in `Authorization`.
pub(super) enum Auth<'a> {
    /// `Bearer <token>`, sensitive.
    Token(HeaderValue),
    /// The registry's own credentials.
    Basic(&'a HostCredentials),
}

fn token_key(state: &AuthState, scheme: &Scheme, scope: &str) -> Option<TokenKey> {
    let Scheme::Bearer { realm, service } = scheme else {
        return None;
    };
    Some(TokenKey {
        realm: realm.clone(),
        service: service.clone(),
        scope: state
            .rescoped
            .get(scope)
            .cloned()
            .unwrap_or_else(|| scope.to_owned()),
    })
}

impl RegistryClient {
    /// One request to the registry origin with what authorization it needs.
    pub(super) async fn send_authorized(
        &self,
        method: &Method,
        url: &Url,
        scope: &str,
        accept: Option<&str>,
    ) -> Result<Response, RegistryError> {
        // Until the registry has answered once, requests go one at a time: sent together, each
        // would meet the same challenge (a 401 each, where one teaches the realm to all).
        let _first = if self.auth.lock().await.answered {
            None
        } else {
            Some(self.first.lock().await)
        };
        // First try with what we know; then up to two new authorizations learned from 401s.
        let mut last_reason = String::new();
        for _ in 0..3 {
            let authorization = self.authorization(url, scope).await?;
            let sent_token = authorization.is_some();
            let sent_bearer = match &authorization {
                Some(Auth::Token(header)) => Some(header.clone()),
                _ => None,
            };
            let response = self.send(method, url, accept, authorization).await?;
            self.auth.lock().await.answered = true;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let found = challenges(
                response
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
            last_reason = match registry_detail(response).await {
                Some(detail) => format!("401 Unauthorized: {detail}"),
                None => "401 Unauthorized".into(),
            };
            self.learn(url, scope, &found, sent_token, sent_bearer.as_ref())
                .await?;
        }
        Err(RegistryError::Unauthorized {
            url: url.to_string(),
            reason: format!("still refused after renewing the authorization ({last_reason})"),
        })
    }

    /// What a 401 teaches: the scheme, and that the token sent is no good.
    async fn learn(
        &self,
        url: &Url,
        scope: &str,
        found: &[Challenge],
        sent_token: bool,
        sent_bearer: Option<&HeaderValue>,
    ) -> Result<(), RegistryError> {
        let unauthorized = |reason: String| RegistryError::Unauthorized {
            url: url.to_string(),
            reason,
        };
        let bearer = found.iter().find_map(|c| match c {
            Challenge::Bearer(b) => Some(b),
            Challenge::Basic { .. } => None,
        });
        let mut state = self.auth.lock().await;
        if let Some(bearer) = bearer {
            let realm = Url::parse(&bearer.realm)
                .ok()
                .filter(origin::secure_or_loopback)
                .ok_or_else(|| {
                    unauthorized(format!(
                        "the token realm {:?} is not an https URL (or http on a loopback host)",
                        bearer.realm.chars().take(200).collect::<String>()
                    ))
                })?;
            let scheme = Scheme::Bearer {
                realm,
                service: bearer.service.clone(),
            };
            if let (Some(key), Some(sent)) = (token_key(&state, &scheme, scope), sent_bearer) {
                state.tokens.invalidate(&key, sent);
            }
            match (&bearer.error, &bearer.scope) {
                (Some(TokenProblem::InsufficientScope), Some(wanted)) => {
                    state.rescoped.insert(scope.to_owned(), wanted.clone());
                }
                (Some(TokenProblem::Other(code)), _) => {
                    return Err(unauthorized(format!(
                        "the registry refused the token: {code}"
                    )));
                }
                _ => {}
            }
            state.scheme = Some(scheme);
            return Ok(());
        }
        if found.iter().any(|c| matches!(c, Challenge::Basic { .. })) {
            if !self.basic_allowed() {
                return Err(unauthorized(
                    "the registry asks for HTTP Basic credentials and none are configured for its host"
                        .into(),
                ));
            }
            if sent_token && state.scheme == Some(Scheme::Basic) {
                return Err(unauthorized("the registry refused the credentials".into()));
            }
            state.scheme = Some(Scheme::Basic);
            return Ok(());
        }
        Err(unauthorized(
            "the registry answered 401 without a challenge (WWW-Authenticate) this client can answer"
                .into(),
        ))
    }

    fn basic_allowed(&self) -> bool {
        self.config
            .credentials
            .as_ref()
            .is_some_and(|c| c.belong_to(&self.config.registry))
    }

    /// The credentials, when they belong to this registry.
    pub(super) fn basic(&self) -> Option<Auth<'_>> {
        self.config
            .credentials
            .as_ref()
            .filter(|c| c.belong_to(&self.config.registry))
            .map(Auth::Basic)
    }

    /// The `Authorization` for a request to `url` (always on the registry origin) in `scope`.
    async fn authorization(
        &self,
        url: &Url,
        scope: &str,
    ) -> Result<Option<Auth<'_>>, RegistryError> {
        let mut state = self.auth.lock().await;
        let Some(scheme) = state.scheme.clone() else {
            return Ok(None);
        };
        if scheme == Scheme::Basic {
            return Ok(self.basic());
        }
        let Some(key) = token_key(&state, &scheme, scope) else {
            return Ok(None);
        };
        if let Some(token) = state.tokens.get(&key, Instant::now()) {
            return Ok(Some(Auth::Token(token.header.clone())));
        }
        // The lock is held while fetching, so concurrent requests wait for one token.
        let token = self.fetch_token(url, &key).await?;
        let header = token.header.clone();
        state.tokens.insert(key, token);
        Ok(Some(Auth::Token(header)))
    }

    async fn fetch_token(&self, for_url: &Url, key: &TokenKey) -> Result<Token, RegistryError> {
        self.stats.token_requests.fetch_add(1, Ordering::Relaxed);
        let url = key.url();
        // Basic credentials go to the realm only when they belong to the registry that named it.
        let response = self
            .send(&Method::GET, &url, Some("application/json"), self.basic())
            .await?;
        let status = response.status();
        if !status.is_success() {
            let detail = registry_detail(response).await;
            return Err(RegistryError::Unauthorized {
                url: for_url.to_string(),
                reason: format!(
                    "the token service {} answered {status}{}",
                    key.realm,
                    detail.map(|d| format!(": {d}")).unwrap_or_default()
                ),
            });
        }
        let body = read_body(response, &url, MAX_TOKEN_BODY).await?;
        parse_token(&body, Instant::now()).map_err(|err: TokenError| RegistryError::Unauthorized {
            url: for_url.to_string(),
            reason: format!("the token service {}: {err}", key.realm),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::client::DOCKER_HUB_REGISTRY;
    use super::*;

    #[test]
    fn credentials_belong_to_one_host() {
        let credentials = HostCredentials {
            host: "registry-1.docker.io".into(),
            username: "u".into(),
            secret: Secret::new("s"),
        };
        let table = [
            ("https://registry-1.docker.io/", true),
            ("https://REGISTRY-1.docker.io/", true),
            ("https://registry-1.docker.io:444/", false),
            ("https://public.ecr.aws/", false),
            ("https://registry-1.docker.io.evil.example/", false),
        ];
        for (url, want) in table {
            assert_eq!(
                credentials.belong_to(&Url::parse(url).unwrap()),
                want,
                "{url}"
            );
        }
        assert!(credentials.belong_to(&Url::parse(DOCKER_HUB_REGISTRY).unwrap()));
        let local = HostCredentials {
            host: "127.0.0.1:5000".into(),
            ..credentials
        };
        assert!(local.belong_to(&Url::parse("http://127.0.0.1:5000/").unwrap()));
        assert!(!local.belong_to(&Url::parse("http://127.0.0.1:5001/").unwrap()));
    }
}

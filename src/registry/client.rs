//! The registry client: the effects, on the crate's HTTP stack; every decision it takes is made
//! by the pure functions of the sibling modules.
//!
//! Each request goes through reqwest-retry (transient failures: connect errors, resets, 5xx,
//! 408; the same classification as Hub requests, except that a 401 is handled here, by a new
//! token, instead of by retrying), then the shared [`Pacer`], then reqwest with timeouts and no
//! automatic redirects: redirects are decided by [`origin::redirect`] so that the registry's
//! token never follows a blob to its CDN.
//!
//! Authentication is learned from the first `401` (no `/v2/` ping is spent on open registries):
//! - `Bearer`: a token per (realm, service, scope) from [`TokenCache`], fetched anonymously or
//!   with HTTP Basic when the client's credentials belong to this registry's host; on
//!   `invalid_token` the token is dropped and fetched again, on `insufficient_scope` one is
//!   fetched for the scope the registry named; at most two new tokens per request;
//! - `Basic`: the credentials go to the registry itself, if they belong to it;
//! - no challenge at all: an open registry (Microsoft's, a plain `docker-registry`).
//!
//! Manifest GETs spend the pull budget ([`BudgetGate`]) before they are sent; a `429` on one is
//! [`RegistryError::RateLimited`] and stops manifest GETs until the window passes, while HEADs and
//! blobs go on. (The shared pacer also pauses briefly after any bare 429, as for Hub.)

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use http::{HeaderValue, Method, StatusCode};
use reqwest::Response;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::{RetryTransientMiddleware, Retryable, RetryableStrategy};
use serde::Deserialize;
use url::Url;

use super::budget::{BudgetGate, BudgetSnapshot, PullBudget, Spent, parse_budget};
use super::challenge::{Challenge, TokenProblem, challenges};
use super::config::{ConfigError, ImageConfig, parse_config};
use super::content::{Mismatch, verify};
use super::manifest::{MANIFEST_ACCEPT, Manifest, ManifestError, parse_manifest};
use super::origin::{self, MAX_REDIRECTS, RedirectError};
use super::paging::{self, LinkError, ListPage, PageRequest};
use super::token::{
    CATALOG_SCOPE, Token, TokenCache, TokenError, TokenKey, parse_token, pull_scope,
};
use crate::model::Digest;
use crate::net::auth::Secret;
use crate::net::{
    FetchError, NetConfig, NetStats, Pacer, PacingMiddleware, error_chain, read_body, retry,
};

/// Largest token service answer read.
const MAX_TOKEN_BODY: usize = 64 * 1024;
/// Largest error body read for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Pages one whole-listing call reads before giving up (a registry paging one name at a time
/// through a million names is broken, not big).
pub const MAX_PAGES: usize = 100_000;

/// Docker Hub's registry, whose token realm is `https://auth.docker.io/token`.
pub const DOCKER_HUB_REGISTRY: &str = "https://registry-1.docker.io";

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

/// What the client talks to and how much it reads.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The registry origin, e.g. `https://registry-1.docker.io`.
    pub registry: Url,
    /// Credentials for that registry's host, if any.
    pub credentials: Option<HostCredentials>,
    /// Largest manifest or index read (Hub's largest indexes are tens of KiB).
    pub max_manifest: usize,
    /// Largest blob (config) read.
    pub max_blob: usize,
    /// Largest listing page read.
    pub max_listing: usize,
    /// `n` asked for on listing pages (`None`: the registry's default).
    pub page_size: Option<u32>,
}

impl RegistryConfig {
    /// Defaults for `registry`: 4 MiB manifests, 8 MiB configs, 16 MiB listing pages.
    pub fn new(registry: Url) -> Self {
        Self {
            registry,
            credentials: None,
            max_manifest: 4 * 1024 * 1024,
            max_blob: 8 * 1024 * 1024,
            max_listing: 16 * 1024 * 1024,
            page_size: None,
        }
    }
}

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The network failed after the retries, or a body exceeded its cap.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The registry (or the CDN) answered an error status.
    #[error("{url} answered {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        /// The URL requested.
        url: String,
        /// The status.
        status: StatusCode,
        /// The registry's error code and message, when its body had them.
        detail: Option<String>,
    },
    /// A manifest GET answered 429: the pull budget is spent for this window.
    #[error("{url} answered 429 Too Many Requests: the registry's pull budget is spent")]
    RateLimited {
        /// The URL requested.
        url: String,
    },
    /// Not sent: the pull budget known from earlier answers is spent.
    #[error("not asking {url}: {spent}")]
    BudgetSpent {
        /// The URL not requested.
        url: String,
        /// Until when.
        spent: Spent,
    },
    /// The body is not the content of the digest asked for; nothing of it is returned.
    #[error("{url}: {mismatch}")]
    DigestMismatch {
        /// The URL requested.
        url: String,
        /// The digests.
        mismatch: Mismatch,
    },
    /// No usable authorization.
    #[error("{url}: {reason}")]
    Unauthorized {
        /// The URL requested.
        url: String,
        /// Why.
        reason: String,
    },
    /// A redirect that is not followed.
    #[error("{url}: {source}")]
    Redirect {
        /// The URL that redirected.
        url: String,
        /// Why not followed.
        source: RedirectError,
    },
    /// A listing's `Link` that is not followed.
    #[error("{url}: {source}")]
    Link {
        /// The page that carried it.
        url: String,
        /// Why not followed.
        source: LinkError,
    },
    /// An answer that cannot be read.
    #[error("{url}: {reason}")]
    Malformed {
        /// The URL requested.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

impl RegistryError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Fetch(err) => err.is_transient(),
            Self::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::REQUEST_TIMEOUT
            }
            Self::RateLimited { .. } | Self::BudgetSpent { .. } => true,
            _ => false,
        }
    }

    /// Whether the registry said the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { status, .. } if *status == StatusCode::NOT_FOUND)
    }
}

/// A manifest fetched by digest and verified.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The digest asked for, which the bytes hash to.
    pub digest: Digest,
    /// The bytes as received.
    pub bytes: Vec<u8>,
    /// What they say.
    pub manifest: Manifest,
    /// What the answer said about the pull budget.
    pub budget: Option<PullBudget>,
}

/// What a manifest HEAD says (no pull spent, no body to verify).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`.
    pub digest: Digest,
    /// `Content-Type`, without parameters.
    pub media_type: Option<String>,
    /// `Content-Length`.
    pub size: Option<u64>,
    /// What the answer said about the pull budget.
    pub budget: Option<PullBudget>,
}

/// A config blob fetched by digest (the image ID) and verified.
#[derive(Debug, Clone)]
pub struct FetchedConfig {
    /// The image ID.
    pub digest: Digest,
    /// The bytes as received.
    pub bytes: Vec<u8>,
    /// What they say.
    pub config: ImageConfig,
}

/// Counters by kind of call (each counts calls, not the retries or auth round trips inside).
#[derive(Debug, Default)]
pub struct RegistryStats {
    /// Manifest GETs sent (each may be a pull).
    pub manifest_gets: AtomicU64,
    /// Manifest HEADs sent.
    pub manifest_heads: AtomicU64,
    /// Blob GETs sent.
    pub blob_gets: AtomicU64,
    /// Listing pages asked for.
    pub listing_pages: AtomicU64,
    /// Tokens asked of the token service.
    pub token_requests: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Scheme {
    Bearer { realm: Url, service: Option<String> },
    Basic,
}

#[derive(Debug, Default)]
struct AuthState {
    /// `None` until a 401 says: an open registry never says.
    scheme: Option<Scheme>,
    tokens: TokenCache,
    /// Scopes a registry asked for instead of the one we computed (`insufficient_scope`).
    rescoped: HashMap<String, String>,
}

/// A client of one OCI registry.
pub struct RegistryClient {
    config: RegistryConfig,
    http: ClientWithMiddleware,
    net: Arc<NetStats>,
    stats: RegistryStats,
    auth: tokio::sync::Mutex<AuthState>,
    budget: BudgetGate,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("registry", &self.config.registry.as_str())
            .finish_non_exhaustive()
    }
}

/// Retry classification for registry requests: Hub's, except that a 401 goes back to the
/// client (which gets a token) instead of being sent again as it was.
#[derive(Debug, Clone, Copy, Default)]
struct RegistryRetryStrategy;

impl RetryableStrategy for RegistryRetryStrategy {
    fn handle(&self, res: &Result<Response, reqwest_middleware::Error>) -> Option<Retryable> {
        match res {
            Ok(response) if response.status() == StatusCode::UNAUTHORIZED => Some(Retryable::Fatal),
            other => retry::HubRetryStrategy.handle(other),
        }
    }
}

/// Why the registry URL was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Not https (or http on loopback), or not a bare origin.
    #[error("registry URL {0:?} must be https (plain http only on a loopback host) with no path")]
    Url(String),
    /// reqwest could not build its client.
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

impl RegistryClient {
    /// A client of `config.registry`, paced by `pacer`, with `net`'s timeouts and retries.
    pub fn new(
        config: RegistryConfig,
        pacer: Arc<Pacer>,
        net: &NetConfig,
    ) -> Result<Self, ClientError> {
        let registry = &config.registry;
        if !origin::secure_or_loopback(registry)
            || !matches!(registry.path(), "" | "/")
            || registry.query().is_some()
        {
            return Err(ClientError::Url(registry.to_string()));
        }
        let inner = reqwest::Client::builder()
            .user_agent(concat!(
                "digestmap/",
                env!("CARGO_PKG_VERSION"),
                " (registry client)"
            ))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(net.connect_timeout)
            .timeout(net.request_timeout)
            .build()
            .map_err(|err| ClientError::Build(error_chain(&err)))?;
        let policy = ExponentialBackoff::builder()
            .retry_bounds(net.backoff.0, net.backoff.1)
            .build_with_max_retries(net.max_retries);
        let stats = Arc::new(NetStats::default());
        let http = ClientBuilder::new(inner)
            .with(RetryTransientMiddleware::new_with_policy_and_strategy(
                policy,
                RegistryRetryStrategy,
            ))
            .with(PacingMiddleware::new(pacer, stats.clone()))
            .build();
        Ok(Self {
            config,
            http,
            net: stats,
            stats: RegistryStats::default(),
            auth: tokio::sync::Mutex::new(AuthState::default()),
            budget: BudgetGate::default(),
        })
    }

    /// The registry origin.
    pub fn registry(&self) -> &Url {
        &self.config.registry
    }

    /// Every request sent (retries, tokens and redirects included).
    pub fn net_stats(&self) -> &NetStats {
        &self.net
    }

    /// Calls by kind.
    pub fn stats(&self) -> &RegistryStats {
        &self.stats
    }

    /// The pull budget as far as the client knows, for storing.
    pub fn pull_budget(&self) -> Option<BudgetSnapshot> {
        self.budget.snapshot()
    }

    /// Restores a stored pull budget (a spent one keeps manifest GETs back until it frees).
    pub fn restore_pull_budget(&self, snapshot: BudgetSnapshot) {
        self.budget.restore(snapshot, SystemTime::now());
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.config.registry.clone();
        url.set_path(path);
        url
    }

    /// GETs the manifest (or index) `digest` of `repository`, verifies it and parses it. Spends
    /// one pull of the budget; refused without a request when the budget is known to be spent.
    pub async fn manifest(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = self.url(&format!("/v2/{repository}/manifests/{digest}"));
        self.budget
            .reserve(SystemTime::now())
            .map_err(|spent| RegistryError::BudgetSpent {
                url: url.to_string(),
                spent,
            })?;
        self.stats.manifest_gets.fetch_add(1, Ordering::Relaxed);
        let response = match self
            .request(
                Method::GET,
                url.clone(),
                &pull_scope(repository),
                Some(MANIFEST_ACCEPT),
            )
            .await
        {
            Ok(response) => response,
            Err(err) => {
                self.budget.release();
                return Err(err);
            }
        };
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            self.budget.rate_limited(SystemTime::now());
            return Err(RegistryError::RateLimited {
                url: url.to_string(),
            });
        }
        let budget = parse_budget(response.headers());
        self.budget.observe(budget, SystemTime::now());
        let content_type = media_type(&response);
        let bytes = self.body(response, &url, self.config.max_manifest).await?;
        verify(digest, &bytes).map_err(|mismatch| RegistryError::DigestMismatch {
            url: url.to_string(),
            mismatch,
        })?;
        let manifest =
            parse_manifest(content_type.as_deref(), &bytes).map_err(|err: ManifestError| {
                RegistryError::Malformed {
                    url: url.to_string(),
                    reason: err.to_string(),
                }
            })?;
        Ok(FetchedManifest {
            digest: *digest,
            bytes,
            manifest,
            budget,
        })
    }

    /// HEADs the manifest `reference` (a tag or a digest) of `repository`: its digest and type,
    /// without spending a pull.
    pub async fn head_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<ManifestHead, RegistryError> {
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
        self.stats.manifest_heads.fetch_add(1, Ordering::Relaxed);
        let response = self
            .request(
                Method::HEAD,
                url.clone(),
                &pull_scope(repository),
                Some(MANIFEST_ACCEPT),
            )
            .await?;
        let budget = parse_budget(response.headers());
        if let Some(budget) = budget {
            self.budget.heard(budget, SystemTime::now());
        }
        let status = response.status();
        if !status.is_success() {
            return Err(RegistryError::Status {
                url: url.to_string(),
                status,
                detail: None,
            });
        }
        let digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Malformed {
                url: url.to_string(),
                reason: "the answer has no Docker-Content-Digest".into(),
            })
            .and_then(|text| {
                Digest::parse(text.trim()).map_err(|err| RegistryError::Malformed {
                    url: url.to_string(),
                    reason: format!("Docker-Content-Digest: {err}"),
                })
            })?;
        let size = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        Ok(ManifestHead {
            digest,
            media_type: media_type(&response),
            size,
            budget,
        })
    }

    /// GETs the blob `digest` of `repository` (following a CDN redirect without
    /// `Authorization`), capped at `max_blob` bytes, and verifies it.
    pub async fn blob(&self, repository: &str, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        self.stats.blob_gets.fetch_add(1, Ordering::Relaxed);
        let response = self
            .request(Method::GET, url.clone(), &pull_scope(repository), None)
            .await?;
        let bytes = self.body(response, &url, self.config.max_blob).await?;
        verify(digest, &bytes).map_err(|mismatch| RegistryError::DigestMismatch {
            url: url.to_string(),
            mismatch,
        })?;
        Ok(bytes)
    }

    /// GETs and reads the config blob `digest` (an image ID) of `repository`.
    pub async fn config(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<FetchedConfig, RegistryError> {
        let bytes = self.blob(repository, digest).await?;
        let config = parse_config(&bytes).map_err(|err: ConfigError| RegistryError::Malformed {
            url: self
                .url(&format!("/v2/{repository}/blobs/{digest}"))
                .to_string(),
            reason: err.to_string(),
        })?;
        Ok(FetchedConfig {
            digest: *digest,
            bytes,
            config,
        })
    }

    /// The first page of `repository`'s tag list.
    pub fn tags_first_page(&self, repository: &str) -> PageRequest {
        PageRequest::new(paging::tags_url(
            &self.config.registry,
            repository,
            self.config.page_size,
        ))
    }

    /// The first page of the catalog.
    pub fn catalog_first_page(&self) -> PageRequest {
        PageRequest::new(paging::catalog_url(
            &self.config.registry,
            self.config.page_size,
        ))
    }

    /// A stored page URL of `repository`'s tag list (`None`: of the catalog), checked to be on
    /// this registry and that endpoint.
    pub fn stored_page(
        &self,
        repository: Option<&str>,
        stored: &str,
    ) -> Result<PageRequest, RegistryError> {
        let first = match repository {
            Some(name) => self.tags_first_page(name),
            None => self.catalog_first_page(),
        };
        let link = |source| RegistryError::Link {
            url: stored.chars().take(200).collect(),
            source,
        };
        let url = Url::parse(stored).map_err(|_| link(LinkError::Malformed(stored.into())))?;
        paging::check_page_url(first.url(), &url).map_err(link)?;
        Ok(PageRequest::new(url))
    }

    /// One page of `repository`'s tag names.
    pub async fn tags_page(
        &self,
        repository: &str,
        page: &PageRequest,
    ) -> Result<ListPage, RegistryError> {
        #[derive(Deserialize)]
        struct Tags {
            tags: Option<Vec<String>>,
        }
        let first = self.tags_first_page(repository);
        self.check_page(first.url(), page)?;
        let (body, next) = self.list_page(page, &pull_scope(repository)).await?;
        let tags: Tags = json(page.url(), &body)?;
        Ok(ListPage {
            names: tags.tags.unwrap_or_default(),
            next,
        })
    }

    /// One page of the catalog's repository names.
    pub async fn catalog_page(&self, page: &PageRequest) -> Result<ListPage, RegistryError> {
        #[derive(Deserialize)]
        struct Catalog {
            repositories: Option<Vec<String>>,
        }
        let first = self.catalog_first_page();
        self.check_page(first.url(), page)?;
        let (body, next) = self.list_page(page, CATALOG_SCOPE).await?;
        let catalog: Catalog = json(page.url(), &body)?;
        Ok(ListPage {
            names: catalog.repositories.unwrap_or_default(),
            next,
        })
    }

    /// Every tag name of `repository`, page after page.
    pub async fn all_tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        self.all_pages(Some(repository)).await
    }

    /// Every repository name of the catalog, page after page.
    pub async fn all_repositories(&self) -> Result<Vec<String>, RegistryError> {
        self.all_pages(None).await
    }

    /// Reads a whole listing, refusing a page URL met twice (a loop through several pages).
    async fn all_pages(&self, repository: Option<&str>) -> Result<Vec<String>, RegistryError> {
        let mut page = Some(match repository {
            Some(name) => self.tags_first_page(name),
            None => self.catalog_first_page(),
        });
        let mut names = Vec::new();
        let mut seen = HashSet::new();
        while let Some(current) = page.take() {
            if !seen.insert(current.url().clone()) || seen.len() > MAX_PAGES {
                return Err(RegistryError::Link {
                    url: current.url().to_string(),
                    source: LinkError::NoProgress(current.url().to_string()),
                });
            }
            let result = match repository {
                Some(name) => self.tags_page(name, &current).await?,
                None => self.catalog_page(&current).await?,
            };
            names.extend(result.names);
            page = result.next;
        }
        Ok(names)
    }

    fn check_page(&self, first: &Url, page: &PageRequest) -> Result<(), RegistryError> {
        paging::check_page_url(first, page.url()).map_err(|source| RegistryError::Link {
            url: page.url().to_string(),
            source,
        })
    }

    async fn list_page(
        &self,
        page: &PageRequest,
        scope: &str,
    ) -> Result<(Vec<u8>, Option<PageRequest>), RegistryError> {
        self.stats.listing_pages.fetch_add(1, Ordering::Relaxed);
        let url = page.url();
        let response = self
            .request(Method::GET, url.clone(), scope, Some("application/json"))
            .await?;
        let links: Vec<String> = response
            .headers()
            .get_all(http::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let body = self.body(response, url, self.config.max_listing).await?;
        let next = paging::next_page(url, links.iter().map(String::as_str)).map_err(|source| {
            RegistryError::Link {
                url: url.to_string(),
                source,
            }
        })?;
        Ok((body, next))
    }

    /// Sends `method url` for `scope`, answering authentication challenges and following
    /// redirects; returns the final answer, whatever its status.
    async fn request(
        &self,
        method: Method,
        url: Url,
        scope: &str,
        accept: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let mut current = url;
        let mut authorized = current.origin() == self.config.registry.origin();
        for _ in 0..=MAX_REDIRECTS {
            let response = if authorized {
                self.send_authorized(&method, &current, scope, accept)
                    .await?
            } else {
                self.send(&method, &current, accept, None).await?
            };
            if !is_redirect(response.status()) {
                return Ok(response);
            }
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let next =
                origin::redirect(&self.config.registry, &current, location).map_err(|source| {
                    RegistryError::Redirect {
                        url: current.to_string(),
                        source,
                    }
                })?;
            current = next.url;
            authorized = next.with_authorization;
        }
        Err(RegistryError::Redirect {
            url: current.to_string(),
            source: RedirectError::Location(format!("more than {MAX_REDIRECTS} redirects")),
        })
    }

    /// One request to the registry origin with what authorization it needs.
    async fn send_authorized(
        &self,
        method: &Method,
        url: &Url,
        scope: &str,
        accept: Option<&str>,
    ) -> Result<Response, RegistryError> {
        // First try with what we know; then up to two new authorizations learned from 401s.
        let mut last_reason = String::new();
        for _ in 0..3 {
            let authorization = self.authorization(url, scope).await?;
            let sent_token = authorization.is_some();
            let response = self.send(method, url, accept, authorization).await?;
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
            self.learn(url, scope, &found, sent_token).await?;
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
            if let Some(key) = token_key(&state, &scheme, scope) {
                state.tokens.invalidate(&key);
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
    fn basic(&self) -> Option<Auth<'_>> {
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

    /// One request, through retries and pacing.
    async fn send(
        &self,
        method: &Method,
        url: &Url,
        accept: Option<&str>,
        authorization: Option<Auth<'_>>,
    ) -> Result<Response, RegistryError> {
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        request = match authorization {
            Some(Auth::Token(header)) => request.header(AUTHORIZATION, header),
            // reqwest marks the encoded header sensitive.
            Some(Auth::Basic(c)) => request.basic_auth(&c.username, Some(c.secret.expose())),
            None => request,
        };
        request.send().await.map_err(|err| {
            let transient = match &err {
                reqwest_middleware::Error::Reqwest(inner) => {
                    retry::classify_error(inner) == Retryable::Transient
                }
                // Retries exhausted: the chain says why; the next run may do better.
                reqwest_middleware::Error::Middleware(_) => true,
            };
            RegistryError::Fetch(FetchError::Transport {
                url: url.to_string(),
                message: error_chain(&err),
                transient,
            })
        })
    }

    /// A success's body, capped; an error status with the registry's message.
    async fn body(
        &self,
        response: Response,
        url: &Url,
        max: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        let status = response.status();
        if !status.is_success() {
            return Err(RegistryError::Status {
                url: url.to_string(),
                status,
                detail: registry_detail(response).await,
            });
        }
        Ok(read_body(response, url, max).await?)
    }
}

/// What goes in `Authorization`.
enum Auth<'a> {
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

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn media_type(response: &Response) -> Option<String> {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|t| t.split(';').next().unwrap_or("").trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn json<T: serde::de::DeserializeOwned>(url: &Url, body: &[u8]) -> Result<T, RegistryError> {
    serde_json::from_slice(body).map_err(|err| RegistryError::Malformed {
        url: url.to_string(),
        reason: format!("not a listing: {err}"),
    })
}

/// `CODE: message` of the registry's `{"errors":[...]}` body, when it has one.
async fn registry_detail(response: Response) -> Option<String> {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    let url = response.url().clone();
    let body = read_body(response, &url, MAX_ERROR_BODY).await.ok()?;
    let parsed: Errors = serde_json::from_slice(&body).ok()?;
    let first = parsed.errors.into_iter().next()?;
    let text = match (first.code, first.message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(text), None) | (None, Some(text)) => text,
        (None, None) => return None,
    };
    Some(text.chars().take(300).collect())
}

#[cfg(test)]
mod tests {
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

//! The registry client: the effects, on the crate's HTTP stack; every decision it takes is made
//! by the pure functions of the sibling modules.
//!
//! Each request goes through reqwest-retry (transient failures: connect errors, resets, 5xx,
//! 408; the same classification as Hub requests, except that a 401 is handled here, by a new
//! token, instead of by retrying), then the shared [`Pacer`], then reqwest with timeouts and no
//! automatic redirects: redirects are decided by [`origin::redirect`] so that the registry's
//! token never follows a blob to its CDN.
//!
//! Authentication is learned from the first `401` (no `/v2/` ping is spent on open registries)
//! and answered by [`super::session`]: a token per (realm, service, scope), Basic credentials
//! only for their own host, nothing at all for an open registry.
//!
//! Manifest GETs spend the pull budget ([`BudgetGate`]) before they are sent. Where the registry
//! declares a budget (`ratelimit-*` headers, or a restored one), a `429` on a manifest GET is
//! [`RegistryError::RateLimited`] and stops manifest GETs until the window passes, while HEADs
//! and blobs go on; where it never did, the 429 is a [`RegistryError::Status`] like any other.
//! Either way the shared pacer pauses every request after it (`Retry-After`, or a backoff for a
//! bare 429), as for Hub.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{Method, StatusCode};
use reqwest::Response;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::{RetryTransientMiddleware, Retryable, RetryableStrategy};
use serde::Deserialize;
use url::Url;

use super::budget::{BudgetGate, BudgetSnapshot, PullBudget, parse_budget};
use super::config::{ConfigError, ImageConfig, parse_config};
use super::content::{sha256, verify};
use super::error::{ClientError, RegistryError, registry_detail};
use super::manifest::{MANIFEST_ACCEPT, Manifest, ManifestError, parse_manifest};
use super::origin::{self, MAX_REDIRECTS, RedirectError};
use super::paging::{self, LinkError, ListPage, PageRequest};
use super::session::{Auth, AuthState, HostCredentials};
use super::token::{CATALOG_SCOPE, pull_scope};
use crate::model::Digest;
use crate::net::{
    FetchError, NetConfig, NetStats, Pacer, PacingMiddleware, error_chain, read_body, retry,
};

/// Pages one whole-listing call reads before giving up (a registry paging one name at a time
/// through a million names is broken, not big).
pub const MAX_PAGES: usize = 100_000;

/// Docker Hub's registry, whose token realm is `https://auth.docker.io/token`.
pub const DOCKER_HUB_REGISTRY: &str = "https://registry-1.docker.io";

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

/// What a tag names ([`RegistryClient::resolve_tag`]).
#[derive(Debug, Clone)]
pub enum TagTarget {
    /// The HEAD gave the digest.
    Head(ManifestHead),
    /// The HEAD gave none: the manifest, fetched by tag, its digest the hash of its bytes.
    Fetched(Box<FetchedManifest>),
}

/// What a successful manifest HEAD said.
struct HeadAnswer {
    digest: Option<Digest>,
    media_type: Option<String>,
    size: Option<u64>,
    budget: Option<PullBudget>,
}

impl HeadAnswer {
    fn with_digest(self, digest: Digest) -> ManifestHead {
        ManifestHead {
            digest,
            media_type: self.media_type,
            size: self.size,
            budget: self.budget,
        }
    }
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

/// A client of one OCI registry.
pub struct RegistryClient {
    pub(super) config: RegistryConfig,
    http: ClientWithMiddleware,
    net: Arc<NetStats>,
    pub(super) stats: RegistryStats,
    pub(super) auth: tokio::sync::Mutex<AuthState>,
    /// Held by the request that learns how the registry authenticates (see
    /// [`RegistryClient::send_authorized`]).
    pub(super) first: tokio::sync::Mutex<()>,
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
            first: tokio::sync::Mutex::new(()),
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
        self.fetch_manifest(repository, &digest.to_string(), Some(digest))
            .await
    }

    /// GETs the manifest `reference` of `repository`: by digest (`expected`), the bytes must
    /// hash to it; by tag, their hash is the digest, and a `Docker-Content-Digest` that names
    /// another one is refused.
    async fn fetch_manifest(
        &self,
        repository: &str,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
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
        let budget = parse_budget(response.headers());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let detail = registry_detail(response).await;
            // Docker Hub's 429 at the pull limit says so in its body, and need not carry the
            // `ratelimit-*` headers: that body declares the budget as well as they would.
            let budget = budget.or_else(|| {
                detail
                    .as_deref()
                    .filter(|d| super::budget::is_pull_limit(d))
                    .map(|_| PullBudget {
                        limit: None,
                        remaining: 0,
                        window: None,
                    })
            });
            if self.budget.rate_limited(budget, SystemTime::now()) {
                return Err(RegistryError::RateLimited {
                    url: url.to_string(),
                });
            }
            // No budget declared: an ordinary 429, which the pacer has already paused every
            // request on.
            return Err(RegistryError::Status {
                url: url.to_string(),
                status: StatusCode::TOO_MANY_REQUESTS,
                detail,
            });
        }
        self.budget.observe(budget, SystemTime::now());
        let content_type = media_type(&response);
        // By digest the bytes speak for themselves; by tag the header, when sent, is checked.
        let named = match expected {
            Some(_) => None,
            None => content_digest(&response, &url)?,
        };
        let bytes = self.body(response, &url, self.config.max_manifest).await?;
        let digest = match expected.or(named.as_ref()) {
            Some(expected) => {
                verify(expected, &bytes).map_err(|mismatch| RegistryError::DigestMismatch {
                    url: url.to_string(),
                    mismatch,
                })?;
                *expected
            }
            None => sha256(&bytes),
        };
        let manifest =
            parse_manifest(content_type.as_deref(), &bytes).map_err(|err: ManifestError| {
                RegistryError::Malformed {
                    url: url.to_string(),
                    reason: err.to_string(),
                }
            })?;
        Ok(FetchedManifest {
            digest,
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
        let (url, head) = self.head(repository, reference).await?;
        let digest = head.digest.ok_or_else(|| RegistryError::Malformed {
            url: url.to_string(),
            reason: "the answer has no Docker-Content-Digest".into(),
        })?;
        Ok(head.with_digest(digest))
    }

    /// What `tag` of `repository` names: a HEAD's digest and type (no pull spent); when the
    /// registry answers the HEAD without `Docker-Content-Digest` (the header is optional for
    /// it), the manifest itself, GET by tag, its digest the sha256 of its bytes (one pull).
    pub async fn resolve_tag(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<TagTarget, RegistryError> {
        let (_, head) = self.head(repository, tag).await?;
        Ok(match head.digest {
            Some(digest) => TagTarget::Head(head.with_digest(digest)),
            None => TagTarget::Fetched(Box::new(self.fetch_manifest(repository, tag, None).await?)),
        })
    }

    /// `tag`'s manifest, GET by tag (one pull), its digest the sha256 of its bytes: what
    /// confirms a HEAD's 404, which has no body to say why.
    pub async fn manifest_by_tag(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        self.fetch_manifest(repository, tag, None).await
    }

    /// A manifest HEAD: its URL and what a successful answer said (a `Docker-Content-Digest`
    /// that is not a digest is an error; none at all is `None`).
    async fn head(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(Url, HeadAnswer), RegistryError> {
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
        let digest = content_digest(&response, &url)?;
        let size = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let answer = HeadAnswer {
            digest,
            media_type: media_type(&response),
            size,
            budget,
        };
        Ok((url, answer))
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
        let (next, refused) = split_next(next);
        Ok(ListPage {
            names: tags.tags.unwrap_or_default(),
            next,
            refused,
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
        let (next, refused) = split_next(next);
        Ok(ListPage {
            names: catalog.repositories.unwrap_or_default(),
            next,
            refused,
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

    /// Reads a whole listing, refusing a page URL met twice (a loop through several pages), a
    /// page listing names an earlier page listed (names skipped), and a refused `Link` (the
    /// listing would be short without saying so).
    async fn all_pages(&self, repository: Option<&str>) -> Result<Vec<String>, RegistryError> {
        let mut page = Some(match repository {
            Some(name) => self.tags_first_page(name),
            None => self.catalog_first_page(),
        });
        let mut names = Vec::new();
        let mut listed = HashSet::new();
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
            if let Some(name) = paging::repeated(&listed, &result.names) {
                return Err(RegistryError::Link {
                    url: current.url().to_string(),
                    source: LinkError::Repeated(name.to_owned()),
                });
            }
            if let Some(source) = result.refused {
                return Err(RegistryError::Link {
                    url: current.url().to_string(),
                    source,
                });
            }
            listed.extend(result.names.iter().cloned());
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

    /// One listing page's body and its checked `Link` (a refused one does not refuse the body).
    async fn list_page(
        &self,
        page: &PageRequest,
        scope: &str,
    ) -> Result<(Vec<u8>, Result<Option<PageRequest>, LinkError>), RegistryError> {
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
        Ok((
            body,
            paging::next_page(url, links.iter().map(String::as_str)),
        ))
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

    /// One request, through retries and pacing.
    pub(super) async fn send(
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

/// A checked `Link` as [`ListPage`] holds it: the page to follow, or the refusal.
fn split_next(
    next: Result<Option<PageRequest>, LinkError>,
) -> (Option<PageRequest>, Option<LinkError>) {
    match next {
        Ok(next) => (next, None),
        Err(refused) => (None, Some(refused)),
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The answer's `Docker-Content-Digest`, when it sent one; one that is not a digest is refused.
fn content_digest(response: &Response, url: &Url) -> Result<Option<Digest>, RegistryError> {
    let Some(value) = response.headers().get("docker-content-digest") else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| RegistryError::Malformed {
        url: url.to_string(),
        reason: "Docker-Content-Digest is not text".into(),
    })?;
    Digest::parse(text.trim())
        .map(Some)
        .map_err(|err| RegistryError::Malformed {
            url: url.to_string(),
            reason: format!("Docker-Content-Digest: {err}"),
        })
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

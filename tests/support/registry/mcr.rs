//! A front that speaks like `mcr.microsoft.com` before the real registry: plain access (no
//! token, no challenge), `_catalog` and `tags/list` paged by the front, blobs redirected to a
//! data origin (as Microsoft's `*.data.mcr.microsoft.com`), and hostile knobs for the listings.
//!
//! Two loopback origins:
//! - the **registry** ([`McrFront::url`]): `/v2/`, manifests (GET and HEAD) and blob HEADs are
//!   forwarded to the backend as they are; blob GETs answer `307` to the data origin (or are
//!   forwarded, with [`McrConfig::blob_redirect`] off). `/v2/_catalog` and
//!   `/v2/<name>/tags/list` are answered by the front from the backend's whole listing: names
//!   sorted, those after `last`, `n` of them (the request's `n`, else
//!   [`McrConfig::page_size`]; `None` answers everything at once, as Microsoft's catalog does
//!   today), and `Link: <...?last=<final name>&n=<n>>; rel="next"` when more follow;
//! - the **data** origin ([`McrFront::data_url`]): serves the blobs the redirects name. An
//!   off-host `Link` ([`LinkStyle::OffHost`]) points here too, so a test sees anything sent
//!   there.
//!
//! Pages are numbered from 1 (`k` = position of the page's first name / `n` + 1). The hostile
//! knobs, all off by default and changeable mid-test ([`McrFront::update`]):
//! - [`McrConfig::links`]: relative, absolute, or off-host `Link`s;
//! - [`McrConfig::loop_back`]: page `from`'s `Link` names page `to` again (`to` < `from`: its
//!   `last` is that of the page before `to`, none for page 1), so a naive client loops forever;
//! - [`McrConfig::repeat_page`]: page `k` answers the names of page `k - 1` again, with page
//!   `k`'s own `Link` (page `k`'s names are never served);
//! - [`McrConfig::throttle`]: the registry requests numbered `nth ..` (`times` of them,
//!   counted from 1 since the start, see [`McrFront::served`]; with [`Throttle::kind`], only the
//!   requests of that kind are counted and throttled, see [`McrFront::served_of`]) answer
//!   `429 TOOMANYREQUESTS`, with `Retry-After` when given and never `ratelimit-*` headers (as
//!   Microsoft's egress limit), and never reach the backend;
//! - [`McrConfig::head_without_digest`]: manifest HEADs answer without `Docker-Content-Digest`
//!   (the header is optional for a registry), so a client must GET the manifest to know it;
//! - [`McrConfig::broken_tags`]: the tag list of this repository answers `500` every time (as
//!   some repositories Microsoft's catalog lists do).
//!
//! Every request is logged with its arrival time, origin, [`Kind`], method, path, decoded query
//! and status
//! ([`McrFront::requests`], [`McrFront::count`]).
//!
//! ```ignore
//! let registry = RegistryProcess::start().await;
//! let mcr = McrFront::start(registry.url(), McrConfig { page_size: Some(2), ..McrConfig::default() }).await;
//! WindowsChain::new("10.0.20348.2227", Foreign::Yes).push_base(&Pusher::new(registry.url())).await;
//! // digestmap crawl --catalog <mcr.url()> ...
//! assert_eq!(mcr.count(Kind::ManifestHead), 1);
//! mcr.update(|c| c.loop_back = Some(LoopBack { from: 3, to: 2 }));
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use url::Url;

use super::front::{backend_client, forward_to, strings};
use super::http::{Request, Response, Servers, bind_loopback, serve_origins};

/// The page size the front asks the backend's catalog for, and how many backend pages it reads
/// at most (so a misbehaving backend cannot keep the front busy).
const BACKEND_PAGE: usize = 1000;
const BACKEND_PAGES: usize = 1000;

/// How the front writes a `Link`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStyle {
    /// `</v2/_catalog?last=b&n=2>` (what `docker-registry` writes).
    Relative,
    /// `<http://127.0.0.1:port/v2/_catalog?last=b&n=2>` on the front's own origin.
    Absolute,
    /// The same path on the data origin: another host (port).
    OffHost,
}

/// Page `from`'s `Link` names page `to` again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopBack {
    /// The page whose `Link` loops (1-based).
    pub from: usize,
    /// The page it names (1-based, below `from`).
    pub to: usize,
}

/// `429` answers for a run of registry requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    /// The first request answered 429 (1-based, counted since the front started).
    pub nth: u64,
    /// How many requests in a row are answered 429.
    pub times: u64,
    /// The `Retry-After` value sent, if any (seconds or an HTTP date).
    pub retry_after: Option<String>,
    /// Only requests of this kind are counted (`nth`, `times`) and answered 429; `None`: every
    /// registry request.
    pub kind: Option<Kind>,
}

/// The front's behaviour.
#[derive(Debug, Clone)]
pub struct McrConfig {
    /// Names per listing page when the request gives no `n`; `None`: all at once.
    pub page_size: Option<usize>,
    /// How `Link`s are written.
    pub links: LinkStyle,
    /// A `Link` that loops back.
    pub loop_back: Option<LoopBack>,
    /// The page (2 or more) that repeats the names of the page before it.
    pub repeat_page: Option<usize>,
    /// 429s for some requests.
    pub throttle: Option<Throttle>,
    /// Blob GETs answer `307` to the data origin (else they are served by the registry).
    pub blob_redirect: bool,
    /// Manifest HEADs answer without `Docker-Content-Digest`.
    pub head_without_digest: bool,
    /// The repository (its path) whose tag list answers `500` every time.
    pub broken_tags: Option<String>,
    /// Tags (repository path, tag) listed although the backend does not have them, as a tag
    /// deleted (or a repository removed) between its listing and its HEAD: added to their
    /// repository's tag list (a repository the backend does not know lists them alone, and is
    /// added to the catalog); their HEADs and GETs reach the backend, which answers 404 (with
    /// `MANIFEST_UNKNOWN` on a GET: `docker-registry` does not tell an unknown repository
    /// there).
    pub ghost_tags: Vec<(String, String)>,
    /// A repository (its path) whose manifest HEADs and GETs answer `404 NAME_UNKNOWN`, as a
    /// registry that checks the repository first does once it is removed (list it with
    /// `ghost_tags`).
    pub removed_repo: Option<String>,
    /// A manifest path (`/v2/<name>/manifests/<tag>`) whose HEAD and GET answer a 404 that is
    /// not the registry's (no error body: a proxy's page).
    pub lost_manifest: Option<String>,
}

impl Default for McrConfig {
    fn default() -> Self {
        McrConfig {
            page_size: None,
            links: LinkStyle::Relative,
            loop_back: None,
            repeat_page: None,
            throttle: None,
            blob_redirect: true,
            head_without_digest: false,
            broken_tags: None,
            ghost_tags: Vec::new(),
            removed_repo: None,
            lost_manifest: None,
        }
    }
}

/// Which origin saw a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McrOrigin {
    /// The registry.
    Registry,
    /// The data origin (blobs, and where off-host `Link`s point).
    Data,
}

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `/v2/`.
    Ping,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    TagsList,
    /// `HEAD /v2/<name>/manifests/<reference>`.
    ManifestHead,
    /// `GET /v2/<name>/manifests/<reference>`.
    ManifestGet,
    /// `HEAD /v2/<name>/blobs/<digest>`.
    BlobHead,
    /// `GET /v2/<name>/blobs/<digest>` (on the registry: the redirect; on the data origin: the
    /// bytes).
    BlobGet,
    /// Anything else.
    Other,
}

impl Kind {
    /// The kind of a request by method and path (either origin).
    pub fn of(method: &str, path: &str) -> Kind {
        let head = method == "HEAD";
        if path == "/v2/" || path == "/v2" {
            Kind::Ping
        } else if path == "/v2/_catalog" {
            Kind::Catalog
        } else if path.ends_with("/tags/list") {
            Kind::TagsList
        } else if path.contains("/manifests/") {
            if head {
                Kind::ManifestHead
            } else {
                Kind::ManifestGet
            }
        } else if path.contains("/blobs/") {
            if head { Kind::BlobHead } else { Kind::BlobGet }
        } else {
            Kind::Other
        }
    }
}

/// One request as the front saw it.
#[derive(Debug, Clone)]
pub struct McrRecord {
    /// When it arrived (wall clock, as a stored pause is).
    pub at: SystemTime,
    /// Where it arrived.
    pub origin: McrOrigin,
    /// What it asked for.
    pub kind: Kind,
    /// The method.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// The status answered.
    pub status: u16,
}

impl McrRecord {
    /// The first value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

struct State {
    config: McrConfig,
    served: u64,
    served_by_kind: HashMap<Kind, u64>,
    log: Vec<McrRecord>,
}

struct Shared {
    backend: Url,
    registry: Url,
    data: Url,
    client: reqwest::Client,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running front; its servers stop on drop.
pub struct McrFront {
    shared: Arc<Shared>,
    _servers: Servers,
}

impl McrFront {
    /// Starts the registry and data origins in front of `backend` (an open registry).
    pub async fn start(backend: &Url, config: McrConfig) -> McrFront {
        let (registry_listener, registry) = bind_loopback().await;
        let (data_listener, data) = bind_loopback().await;
        let shared = Arc::new(Shared {
            backend: backend.clone(),
            registry,
            data,
            client: backend_client(),
            state: Mutex::new(State {
                config,
                served: 0,
                served_by_kind: HashMap::new(),
                log: Vec::new(),
            }),
        });
        let servers = serve_origins(
            &shared,
            [
                (registry_listener, McrOrigin::Registry),
                (data_listener, McrOrigin::Data),
            ],
            |shared, origin, request| async move { answer(&shared, origin, request).await },
        );
        McrFront {
            shared,
            _servers: servers,
        }
    }

    /// The registry's origin (what `--catalog` is given).
    pub fn url(&self) -> &Url {
        &self.shared.registry
    }

    /// The data origin's URL.
    pub fn data_url(&self) -> &Url {
        &self.shared.data
    }

    /// Changes the behaviour from now on.
    pub fn update(&self, change: impl FnOnce(&mut McrConfig)) {
        change(&mut self.shared.state().config);
    }

    /// Every request so far (since the last [`McrFront::clear_requests`]).
    pub fn requests(&self) -> Vec<McrRecord> {
        self.shared.state().log.clone()
    }

    /// How many logged requests were of `kind`, on either origin.
    pub fn count(&self, kind: Kind) -> usize {
        self.shared
            .state()
            .log
            .iter()
            .filter(|r| r.kind == kind)
            .count()
    }

    /// Forgets the request log (not [`McrFront::served`]).
    pub fn clear_requests(&self) {
        self.shared.state().log.clear();
    }

    /// Registry requests answered since the start (the numbering [`Throttle::nth`] uses).
    pub fn served(&self) -> u64 {
        self.shared.state().served
    }

    /// Registry requests of `kind` answered since the start (the numbering [`Throttle::nth`]
    /// uses with [`Throttle::kind`]).
    pub fn served_of(&self, kind: Kind) -> u64 {
        self.shared
            .state()
            .served_by_kind
            .get(&kind)
            .copied()
            .unwrap_or(0)
    }
}

/// Answers one request on `origin` and logs it.
async fn answer(shared: &Shared, origin: McrOrigin, request: Request) -> Response {
    let at = SystemTime::now();
    let response = match origin {
        McrOrigin::Registry => registry(shared, &request).await,
        McrOrigin::Data => data(shared, &request).await,
    };
    shared.state().log.push(McrRecord {
        at,
        origin,
        kind: Kind::of(&request.method, request.path()),
        path: request.path().to_owned(),
        query: request.query(),
        method: request.method,
        status: response.status,
    });
    response
}

async fn registry(shared: &Shared, request: &Request) -> Response {
    let config = {
        let mut state = shared.state();
        state.served += 1;
        let kind = Kind::of(&request.method, request.path());
        let of_kind = {
            let count = state.served_by_kind.entry(kind).or_insert(0);
            *count += 1;
            *count
        };
        let number = match state.config.throttle.as_ref().and_then(|t| t.kind) {
            Some(throttled) if throttled != kind => None,
            Some(_) => Some(of_kind),
            None => Some(state.served),
        };
        if let Some(throttle) = &state.config.throttle
            && let Some(number) = number
            && (throttle.nth..throttle.nth.saturating_add(throttle.times)).contains(&number)
        {
            let mut answer = Response::registry_error(
                429,
                "TOOMANYREQUESTS",
                "Too many requests, please retry later.",
            );
            if let Some(after) = &throttle.retry_after {
                answer = answer.header("Retry-After", after.clone());
            }
            return answer;
        }
        state.config.clone()
    };
    let path = request.path().to_owned();
    match Kind::of(&request.method, &path) {
        Kind::Catalog => catalog(shared, request, &config).await,
        Kind::TagsList
            if config
                .broken_tags
                .as_deref()
                .is_some_and(|repo| path == format!("/v2/{repo}/tags/list")) =>
        {
            Response::registry_error(500, "UNKNOWN", "unknown error")
        }
        Kind::TagsList => tags(shared, request, &config).await,
        Kind::ManifestHead | Kind::ManifestGet
            if config.lost_manifest.as_deref() == Some(path.as_str()) =>
        {
            Response::new(404, "not found")
        }
        Kind::ManifestHead | Kind::ManifestGet
            if config
                .removed_repo
                .as_deref()
                .is_some_and(|repo| path.starts_with(&format!("/v2/{repo}/manifests/"))) =>
        {
            Response::registry_error(404, "NAME_UNKNOWN", "repository name not known to registry")
        }
        Kind::BlobGet if config.blob_redirect => {
            let rest = path.strip_prefix("/v2/").unwrap_or("");
            Response::new(307, Vec::new()).header("Location", format!("{}{rest}", shared.data))
        }
        Kind::ManifestHead if config.head_without_digest => {
            let mut answer =
                forward_to(&shared.client, &shared.backend, request, &request.target).await;
            answer
                .headers
                .retain(|(name, _)| !name.eq_ignore_ascii_case("docker-content-digest"));
            answer
        }
        _ => forward_to(&shared.client, &shared.backend, request, &request.target).await,
    }
}

/// The data origin serves blob GETs by path (`/<name>/blobs/<digest>`), nothing else.
async fn data(shared: &Shared, request: &Request) -> Response {
    let path = request.path();
    if request.method != "GET" || !path.contains("/blobs/") {
        return Response::new(404, "not found");
    }
    forward_to(
        &shared.client,
        &shared.backend,
        request,
        &format!("/v2{path}"),
    )
    .await
}

/// `/v2/_catalog`: every repository from the backend (following its own `Link`s), paged.
async fn catalog(shared: &Shared, request: &Request, config: &McrConfig) -> Response {
    let mut names = Vec::new();
    let mut target = format!("/v2/_catalog?n={BACKEND_PAGE}");
    for _ in 0..BACKEND_PAGES {
        let answer = forward_to(&shared.client, &shared.backend, request, &target).await;
        if answer.status != 200 {
            return answer;
        }
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&answer.body) else {
            return Response::new(502, "backend catalog is not JSON");
        };
        names.extend(strings(&body["repositories"]));
        let next = answer
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("link"))
            .and_then(|(_, v)| v.split_once('<'))
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(url, _)| url.to_owned());
        match next {
            Some(next) => target = next,
            None => break,
        }
    }
    for (repo, _) in &config.ghost_tags {
        if !names.contains(repo) {
            names.push(repo.clone());
        }
    }
    names.sort();
    let page = page_for(&names, request, config);
    let body = serde_json::json!({ "repositories": page.names });
    listing_answer(shared, request, config, page, body)
}

/// `/v2/<name>/tags/list`: the backend's whole list (it does not page tags), paged. A repository
/// the backend does not know keeps its `404 NAME_UNKNOWN`.
async fn tags(shared: &Shared, request: &Request, config: &McrConfig) -> Response {
    let answer = forward_to(&shared.client, &shared.backend, request, request.path()).await;
    let repo = request
        .path()
        .strip_prefix("/v2/")
        .and_then(|p| p.strip_suffix("/tags/list"))
        .unwrap_or_default();
    let ghosts: Vec<String> = config
        .ghost_tags
        .iter()
        .filter(|(r, _)| r == repo)
        .map(|(_, tag)| tag.clone())
        .collect();
    let body = match answer.status {
        200 => match serde_json::from_slice::<serde_json::Value>(&answer.body) {
            Ok(body) => body,
            Err(_) => return Response::new(502, "backend tag list is not JSON"),
        },
        404 if !ghosts.is_empty() => serde_json::json!({ "name": repo, "tags": [] }),
        _ => return answer,
    };
    let mut names = strings(&body["tags"]);
    names.extend(ghosts);
    names.sort();
    names.dedup();
    let page = page_for(&names, request, config);
    let body = serde_json::json!({ "name": body["name"], "tags": page.names });
    listing_answer(shared, request, config, page, body)
}

/// What one listing page holds and where its `Link` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The names served.
    pub names: Vec<String>,
    /// The `Link`'s `last` (`None`: no `last`, the first page) and `n`; `None`: no `Link`.
    pub next: Option<(Option<String>, usize)>,
}

/// The page of `all` (any order, duplicates allowed) after `last`, `n` names at a time (the
/// request's `n`, else `config.page_size`), hostile knobs applied. Pure, so
/// `tests/registry_support.rs` checks it table by table.
pub fn page(all: &[String], last: Option<&str>, n: Option<usize>, config: &McrConfig) -> Page {
    let mut sorted = all.to_vec();
    sorted.sort();
    sorted.dedup();
    let start = last.map_or(0, |last| {
        sorted.partition_point(|name| name.as_str() <= last)
    });
    let Some(n) = n.or(config.page_size) else {
        return Page {
            names: sorted[start..].to_vec(),
            next: None,
        };
    };
    if n == 0 {
        return Page {
            names: Vec::new(),
            next: None,
        };
    }
    let end = (start + n).min(sorted.len());
    let number = start / n + 1;
    let mut names = sorted[start..end].to_vec();
    if config.repeat_page == Some(number) && start >= n {
        names = sorted[start - n..start].to_vec();
    }
    let mut next = (end < sorted.len()).then(|| (Some(sorted[end - 1].clone()), n));
    if let Some(LoopBack { from, to }) = config.loop_back
        && from == number
        && (1..from).contains(&to)
    {
        next = Some(((to >= 2).then(|| sorted[(to - 1) * n - 1].clone()), n));
    }
    Page { names, next }
}

/// [`page`] for a request's `last` and `n` (an `n` that is not a number counts as none).
fn page_for(all: &[String], request: &Request, config: &McrConfig) -> Page {
    let n = request.param("n").and_then(|n| n.parse::<usize>().ok());
    page(all, request.param("last").as_deref(), n, config)
}

fn listing_answer(
    shared: &Shared,
    request: &Request,
    config: &McrConfig,
    page: Page,
    body: serde_json::Value,
) -> Response {
    let mut response = Response::new(200, body.to_string().into_bytes())
        .header("Content-Type", "application/json; charset=utf-8");
    if let Some((last, n)) = page.next {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(last) = &last {
            query.append_pair("last", last);
        }
        query.append_pair("n", &n.to_string());
        let target = format!("{}?{}", request.path(), query.finish());
        let origin = |base: &Url| format!("{}{target}", base.as_str().trim_end_matches('/'));
        let url = match config.links {
            LinkStyle::Relative => target,
            LinkStyle::Absolute => origin(&shared.registry),
            LinkStyle::OffHost => origin(&shared.data),
        };
        response = response.header("Link", format!("<{url}>; rel=\"next\""));
    }
    response
}

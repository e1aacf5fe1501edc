//! A Docker-Hub-like front for the real registry: what `registry-1.docker.io`, `auth.docker.io`
//! and the blob CDN do that a plain `docker-registry` does not.
//!
//! Three loopback origins:
//! - the **registry** front: every `/v2/` request needs `Authorization: Bearer <token>` valid
//!   for its scope (`repository:<name>:pull`, `registry:catalog:*`); otherwise `401` with a
//!   Bearer challenge naming the realm, the service, the scope, and `error="invalid_token"` or
//!   `error="insufficient_scope"` when a token was sent. Manifest GETs spend the pull budget and
//!   carry `ratelimit-limit` / `ratelimit-remaining` (`N;w=21600`); HEADs carry them too but
//!   spend nothing; a spent budget answers `429 TOOMANYREQUESTS` without `Retry-After` (and does
//!   not reach the backend). Blob GETs answer `307` to the CDN. The rest is forwarded to the
//!   backend registry, `Link` headers included (optionally rewritten: absolute, off-host, stuck);
//!   tag lists are paged by the front (`n`, `last`, `Link`), which `docker-registry` 2.8 does not;
//! - the **token** service (`/token?service=&scope=`): grants pull scopes, optionally only to a
//!   Basic user, tokens that expire after `token_lifetime` (and on [`Front::expire_tokens`]);
//! - the **CDN**: serves blobs from the backend; any request carrying `Authorization` is
//!   recorded and refused with 403.
//!
//! Knobs live in [`FrontConfig`] and can change mid-test ([`Front::update`]); every request is
//! logged ([`Front::requests`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use url::Url;

use super::http::{Request, Response, Servers, bind_loopback, serve_origins};

/// The `service` the challenges name.
pub const SERVICE: &str = "registry.test";
/// The window the `ratelimit-*` headers give.
pub const WINDOW_SECS: u64 = 21600;

/// How a `Link` header from the backend is passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRewrite {
    /// As the registry wrote it (relative).
    Keep,
    /// Made absolute on the front's origin.
    Absolute,
    /// Pointed at the CDN's origin (another host).
    OffHost,
    /// Pointed at the page just served.
    Stuck,
}

/// The front's behaviour.
#[derive(Debug, Clone)]
pub struct FrontConfig {
    /// `expires_in` of issued tokens, and when the front stops accepting them.
    pub token_lifetime: Duration,
    /// Pulls allowed in the window; `None`: no `ratelimit-*` headers, no limit.
    pub pull_limit: Option<u64>,
    /// Serve manifest bodies with one byte changed.
    pub tamper_manifests: bool,
    /// Serve blob bodies (from the CDN) with one byte changed.
    pub tamper_blobs: bool,
    /// What happens to `Link` headers.
    pub links: LinkRewrite,
    /// A scope every repository request needs besides its own pull scope.
    pub extra_scope: Option<String>,
    /// When set, the token service grants nothing without these Basic credentials.
    pub basic_user: Option<(String, String)>,
    /// The window the `ratelimit-*` headers give (`w=`), in seconds.
    pub window_secs: u64,
}

impl Default for FrontConfig {
    fn default() -> Self {
        FrontConfig {
            token_lifetime: Duration::from_secs(300),
            pull_limit: None,
            tamper_manifests: false,
            tamper_blobs: false,
            links: LinkRewrite::Keep,
            extra_scope: None,
            basic_user: None,
            window_secs: WINDOW_SECS,
        }
    }
}

/// Which origin saw a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The registry front.
    Registry,
    /// The token service.
    Token,
    /// The CDN.
    Cdn,
}

/// One request as the front saw it, and its answer's status.
#[derive(Debug, Clone)]
pub struct Record {
    /// Where it arrived.
    pub origin: Origin,
    /// The method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The status answered.
    pub status: u16,
    /// The `WWW-Authenticate` answered, if any.
    pub challenge: Option<String>,
}

struct Grant {
    scopes: Vec<String>,
    expires: Instant,
}

struct State {
    config: FrontConfig,
    tokens: HashMap<String, Grant>,
    issued: u64,
    pulls: u64,
    log: Vec<Record>,
}

struct Shared {
    backend: Url,
    registry: Url,
    token: Url,
    cdn: Url,
    client: reqwest::Client,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running front; its servers stop on drop.
pub struct Front {
    shared: Arc<Shared>,
    _servers: Servers,
}

impl Front {
    /// Starts the three origins in front of `backend`.
    pub async fn start(backend: &Url, config: FrontConfig) -> Front {
        let (registry_listener, registry) = bind_loopback().await;
        let (token_listener, token) = bind_loopback().await;
        let (cdn_listener, cdn) = bind_loopback().await;
        let shared = Arc::new(Shared {
            backend: backend.clone(),
            registry,
            token,
            cdn,
            client: backend_client(),
            state: Mutex::new(State {
                config,
                tokens: HashMap::new(),
                issued: 0,
                pulls: 0,
                log: Vec::new(),
            }),
        });
        let servers = serve_origins(
            &shared,
            [
                (registry_listener, Origin::Registry),
                (token_listener, Origin::Token),
                (cdn_listener, Origin::Cdn),
            ],
            |shared, origin, request| async move { answer(&shared, origin, request).await },
        );
        Front {
            shared,
            _servers: servers,
        }
    }

    /// The registry front's origin.
    pub fn url(&self) -> &Url {
        &self.shared.registry
    }

    /// The token service's origin.
    pub fn token_url(&self) -> &Url {
        &self.shared.token
    }

    /// The CDN's origin.
    pub fn cdn_url(&self) -> &Url {
        &self.shared.cdn
    }

    /// Changes the behaviour from now on.
    pub fn update(&self, change: impl FnOnce(&mut FrontConfig)) {
        change(&mut self.shared.state().config);
    }

    /// Makes every token issued so far invalid (as if it had expired).
    pub fn expire_tokens(&self) {
        self.shared.state().tokens.clear();
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Record> {
        self.shared.state().log.clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.shared.state().log.clear();
    }

    /// Manifest GETs that reached the backend (each a pull).
    pub fn pulls(&self) -> u64 {
        self.shared.state().pulls
    }

    /// A new pull window: the budget is whole again (the pulls counted so far are forgotten).
    pub fn reset_pulls(&self) {
        self.shared.state().pulls = 0;
    }
}

/// Answers one request on `origin` and logs it.
async fn answer(shared: &Shared, origin: Origin, request: Request) -> Response {
    let response = match origin {
        Origin::Registry => registry(shared, &request).await,
        Origin::Token => token(shared, &request),
        Origin::Cdn => cdn(shared, &request).await,
    };
    let challenge = response
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.clone());
    shared.state().log.push(Record {
        origin,
        authorization: request.header("authorization").map(str::to_owned),
        method: request.method,
        target: request.target,
        status: response.status,
        challenge,
    });
    response
}

/// The scope a registry path needs.
fn scope_of(path: &str) -> Option<String> {
    if path == "/v2/" || path == "/v2" {
        return None;
    }
    if path == "/v2/_catalog" {
        return Some("registry:catalog:*".into());
    }
    let rest = path.strip_prefix("/v2/")?;
    let name = ["/manifests/", "/blobs/", "/tags/list"]
        .iter()
        .find_map(|marker| rest.find(marker).map(|i| &rest[..i]))?;
    Some(format!("repository:{name}:pull"))
}

async fn registry(shared: &Shared, request: &Request) -> Response {
    let path = request.path().to_owned();
    let needed = scope_of(&path);
    let (extra, pull_limit, tamper, links, window) = {
        let state = shared.state();
        let c = &state.config;
        (
            c.extra_scope.clone(),
            c.pull_limit,
            c.tamper_manifests,
            c.links,
            c.window_secs,
        )
    };
    let mut needed_scopes: Vec<String> = needed.iter().cloned().collect();
    if let (Some(extra), Some(scope)) = (&extra, &needed)
        && scope.starts_with("repository:")
    {
        needed_scopes.push(extra.clone());
    }
    // Authorization.
    let challenge = |error: Option<&str>| {
        let mut value = format!(
            "Bearer realm=\"{}token\",service=\"{SERVICE}\"",
            shared.token
        );
        if !needed_scopes.is_empty() {
            value.push_str(&format!(",scope=\"{}\"", needed_scopes.join(" ")));
        }
        if let Some(error) = error {
            value.push_str(&format!(",error=\"{error}\""));
        }
        Response::registry_error(401, "UNAUTHORIZED", "authentication required")
            .header("WWW-Authenticate", value)
    };
    let token = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return challenge(None);
    };
    {
        let mut state = shared.state();
        let now = Instant::now();
        state.tokens.retain(|_, grant| grant.expires > now);
        let Some(grant) = state.tokens.get(token) else {
            drop(state);
            return challenge(Some("invalid_token"));
        };
        if !needed_scopes.iter().all(|s| grant.scopes.contains(s)) {
            drop(state);
            return challenge(Some("insufficient_scope"));
        }
    }
    let is_manifest = path.contains("/manifests/");
    let budget_headers = |response: Response, remaining: u64, limit: u64| {
        response
            .header("ratelimit-limit", format!("{limit};w={window}"))
            .header("ratelimit-remaining", format!("{remaining};w={window}"))
    };
    if is_manifest
        && request.method == "GET"
        && let Some(limit) = pull_limit
        && shared.state().pulls >= limit
    {
        // Hub's 429: no Retry-After.
        return budget_headers(
            Response::registry_error(
                429,
                "TOOMANYREQUESTS",
                "You have reached your pull rate limit.",
            ),
            0,
            limit,
        );
    }
    if path.contains("/blobs/") && request.method == "GET" {
        let rest = path.strip_prefix("/v2/").unwrap_or("");
        let location = format!("{}cdn/{rest}?expires=300&signature=abc", shared.cdn);
        return Response::new(307, Vec::new()).header("Location", location);
    }
    let mut response = forward(shared, request, &request.target).await;
    if path.ends_with("/tags/list") && response.status == 200 {
        page_tags(&mut response, request);
    }
    if is_manifest && response.status == 200 {
        if request.method == "GET" {
            let mut state = shared.state();
            state.pulls += 1;
            if tamper && !response.body.is_empty() {
                // Still valid JSON, another digest.
                response.body.push(b' ');
                response
                    .headers
                    .retain(|(n, _)| !n.eq_ignore_ascii_case("content-length"));
            }
        }
        if let Some(limit) = pull_limit {
            let remaining = limit.saturating_sub(shared.state().pulls);
            response = budget_headers(response, remaining, limit);
        }
    }
    for (name, value) in &mut response.headers {
        if name.eq_ignore_ascii_case("link") {
            *value = rewrite_link(shared, value, &request.target, links);
        }
    }
    response
}

/// `docker-registry` 2.8 ignores `n` on tag lists (its catalog pages); the front pages them
/// itself as newer registries do: names sorted, those after `last`, `n` of them, and a relative
/// `Link` to the next page.
fn page_tags(response: &mut Response, request: &Request) {
    let Some(n) = request.param("n").and_then(|n| n.parse::<usize>().ok()) else {
        return;
    };
    let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(&response.body) else {
        return;
    };
    let mut tags = strings(&body["tags"]);
    tags.sort();
    let last = request.param("last");
    let rest: Vec<String> = tags
        .into_iter()
        .filter(|t| last.as_ref().is_none_or(|l| t > l))
        .collect();
    let page: Vec<String> = rest.iter().take(n).cloned().collect();
    if rest.len() > n
        && let Some(final_name) = page.last()
    {
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        next.append_pair("last", final_name)
            .append_pair("n", &n.to_string());
        response.headers.push((
            "link".into(),
            format!("<{}?{}>; rel=\"next\"", request.path(), next.finish()),
        ));
    }
    body["tags"] = serde_json::json!(page);
    response.body = body.to_string().into_bytes();
}

/// The strings of a JSON array (none for anything else). Shared with `mcr.rs`.
pub(super) fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn rewrite_link(shared: &Shared, value: &str, target: &str, mode: LinkRewrite) -> String {
    let Some(inner) = value
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(url, _)| url)
    else {
        return value.to_owned();
    };
    let absolute =
        |base: &Url, path: &str| format!("{}{}", base.as_str().trim_end_matches('/'), path);
    match mode {
        LinkRewrite::Keep => value.to_owned(),
        LinkRewrite::Absolute => format!("<{}>; rel=\"next\"", absolute(&shared.registry, inner)),
        LinkRewrite::OffHost => format!("<{}>; rel=\"next\"", absolute(&shared.cdn, inner)),
        LinkRewrite::Stuck => format!("<{target}>; rel=\"next\""),
    }
}

/// The client a front forwards with: redirects are passed on to the caller, not followed.
/// Shared with the Microsoft-like front (`mcr.rs`).
pub(super) fn backend_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Sends the request on to the backend registry (no auth there) and copies the answer.
async fn forward(shared: &Shared, request: &Request, target: &str) -> Response {
    forward_to(&shared.client, &shared.backend, request, target).await
}

/// Sends `request` to `target` on `backend` (with its `Accept`) and copies status, body and the
/// headers a registry client reads (`Content-Type`, `Docker-Content-Digest`, `Link`,
/// `Location`; `Content-Length` for HEAD). Shared with the Microsoft-like front (`mcr.rs`).
pub(super) async fn forward_to(
    client: &reqwest::Client,
    backend: &Url,
    request: &Request,
    target: &str,
) -> Response {
    let url = match backend.join(target) {
        Ok(url) => url,
        Err(_) => return Response::new(400, "bad target"),
    };
    let method =
        reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut outgoing = client.request(method, url);
    if let Some(accept) = request.header("accept") {
        outgoing = outgoing.header("Accept", accept);
    }
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(err) => return Response::new(502, format!("backend: {err}")),
    };
    let mut response = Response::new(answer.status().as_u16(), Vec::new());
    for name in ["content-type", "docker-content-digest", "link", "location"] {
        for value in answer.headers().get_all(name) {
            if let Ok(value) = value.to_str() {
                response.headers.push((name.to_owned(), value.to_owned()));
            }
        }
    }
    if request.method == "HEAD" {
        if let Some(length) = answer
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
        {
            response
                .headers
                .push(("content-length".into(), length.to_owned()));
        }
    } else {
        response.body = answer.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    }
    response
}

fn token(shared: &Shared, request: &Request) -> Response {
    if request.path() != "/token" {
        return Response::new(404, "not found");
    }
    let query = request.query();
    let service_ok = query.iter().any(|(k, v)| k == "service" && v == SERVICE);
    if !service_ok {
        return Response::new(400, r#"{"details":"unknown service"}"#);
    }
    let mut state = shared.state();
    if let Some((user, password)) = &state.config.basic_user {
        let expected = format!("Basic {}", basic(user, password));
        if request.header("authorization") != Some(expected.as_str()) {
            return Response::new(401, r#"{"details":"incorrect username or password"}"#);
        }
    }
    // Grant every pull scope asked for (and the catalog); nothing else.
    let scopes: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .filter(|s| s.ends_with(":pull") || s == "registry:catalog:*")
        .collect();
    state.issued += 1;
    let token = format!("tok-{}", state.issued);
    let lifetime = state.config.token_lifetime;
    state.tokens.insert(
        token.clone(),
        Grant {
            scopes,
            expires: Instant::now() + lifetime,
        },
    );
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": lifetime.as_secs(),
        "issued_at": "2026-01-01T00:00:00Z",
    });
    Response::new(200, body.to_string()).header("Content-Type", "application/json")
}

async fn cdn(shared: &Shared, request: &Request) -> Response {
    if request.header("authorization").is_some() {
        return Response::new(
            403,
            "<Error><Code>AccessDenied</Code><Message>Authorization header not allowed</Message></Error>",
        );
    }
    let Some(rest) = request.path().strip_prefix("/cdn/") else {
        return Response::new(404, "not found");
    };
    let mut response = forward(shared, request, &format!("/v2/{rest}")).await;
    if response.status == 200 && shared.state().config.tamper_blobs && !response.body.is_empty() {
        response.body[0] ^= 1;
    }
    response
}

/// HTTP Basic encoding (RFC 7617) of a user and password.
pub fn basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

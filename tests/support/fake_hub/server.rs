//! The double's server: connections, routing, paging, rate window and injected faults.
//!
//! Every API request gets a sequence number in arrival order; faults are decided from the seed
//! and that number alone, so a run is reproducible and a retried request (a new number) can
//! succeed. The order of checks is: forced 429, rate window, revoked credentials and refused
//! tokens, expired token, per-path faults, random faults, then the real answer; header overrides
//! apply to whatever was answered.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::content::{self, Content};
use super::generate::{DataSpec, generate};
use super::http::{self, Framing, ReadError, Request, Response};
use super::model::{Dataset, Repo};
use super::prng::Prng;
use super::render::{Page, repo_json, tag_json};
use super::truth::{self, Truth};
use super::{FakeHubConfig, FaultKind, RequestRecord};

/// Hub's 429 body.
const RATE_LIMITED_BODY: &str = r#"{"detail":"Rate limit exceeded","error":false}"#;
/// Hub's body for anonymous paging past the cap.
const CAPPED_BODY: &str = r#"{"message":"pagination offset too large for anonymous requests; sign in to page further","errinfo":{}}"#;
/// The limit advertised when no rate window is configured: generous enough never to matter.
const GENEROUS_LIMIT: u32 = 1_000_000;
/// Hub's largest page.
const MAX_PAGE_SIZE: u64 = 100;
/// Hub's page size when none is given.
const DEFAULT_PAGE_SIZE: u64 = 10;
/// Anonymous tag listings stop at this offset.
const TAGS_CAP: u64 = 1000;
/// Anonymous repository listings stop at this offset.
const REPOS_CAP: u64 = 100;
/// How much a huge answer sends before it ends (if the client keeps reading).
const HUGE_BODY_BYTES: usize = 512 * 1024 * 1024;

/// The generated data and what a crawl of it must find.
pub(super) struct Loaded {
    pub(super) spec: DataSpec,
    pub(super) dataset: Dataset,
    pub(super) truth: Truth,
    pub(super) content: Content,
}

impl Loaded {
    /// Generates the dataset of a spec and its truth.
    pub(super) fn new(spec: DataSpec) -> Self {
        let mut dataset = generate(&spec);
        let content = content::realize(&mut dataset);
        let truth = truth::compute(&dataset);
        Loaded {
            spec,
            dataset,
            truth,
            content,
        }
    }
}

/// A fixed rate window: `count` requests since `start`.
struct Window {
    start: Instant,
    count: u32,
}

/// The rate window as one request sees it.
struct RateState {
    limit: u32,
    remaining: u32,
    reset_unix: u64,
    retry_after: u64,
    exceeded: bool,
}

impl RateState {
    fn headers(&self, remaining: u32) -> [(&'static str, String); 3] {
        [
            ("X-RateLimit-Limit", self.limit.to_string()),
            ("X-RateLimit-Remaining", remaining.to_string()),
            ("X-RateLimit-Reset", self.reset_unix.to_string()),
        ]
    }
}

/// State shared by the connections and the [`super::FakeHub`] handle.
pub(super) struct Shared {
    pub(super) config: Mutex<FakeHubConfig>,
    pub(super) data: RwLock<Arc<Loaded>>,
    pub(super) log: Mutex<Vec<RequestRecord>>,
    pub(super) base_url: String,
    seq: AtomicU64,
    /// Tokens issued by the sign-in endpoints, with when (for `token_ttl`).
    tokens: Mutex<HashMap<String, Instant>>,
    window: Mutex<Window>,
    started: Instant,
    started_wall: SystemTime,
}

impl Shared {
    /// Generates the data of `config` for a server at `base_url`.
    pub(super) fn new(config: FakeHubConfig, base_url: String) -> Self {
        let loaded = Loaded::new(config.data_spec());
        // Windows start on a whole unix second, as Hub's do: `X-RateLimit-Reset` (whole seconds)
        // is then the exact end of a window whose length is whole seconds.
        let wall = SystemTime::now();
        let subsec = wall
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let now = Instant::now()
            .checked_sub(Duration::from_nanos(u64::from(subsec)))
            .unwrap_or_else(Instant::now);
        let wall = wall - Duration::from_nanos(u64::from(subsec));
        Shared {
            config: Mutex::new(config),
            data: RwLock::new(Arc::new(loaded)),
            log: Mutex::new(Vec::new()),
            base_url,
            seq: AtomicU64::new(0),
            tokens: Mutex::new(HashMap::new()),
            window: Mutex::new(Window {
                start: now,
                count: 0,
            }),
            started: now,
            started_wall: wall,
        }
    }

    /// The current data.
    pub(super) fn loaded(&self) -> Arc<Loaded> {
        self.data.read().expect("data lock").clone()
    }

    /// Counts a request in the rate window that `at` falls in.
    fn tick(&self, config: &FakeHubConfig, at: Instant) -> RateState {
        let (limit, length) = config
            .rate_limit
            .unwrap_or((GENEROUS_LIMIT, Duration::from_secs(60)));
        let length = length.max(Duration::from_millis(1));
        let mut window = self.window.lock().expect("window lock");
        let elapsed = at.saturating_duration_since(window.start);
        if elapsed >= length {
            // Windows follow each other from the first one, like a fixed-window limiter.
            let passed = elapsed.as_nanos() / length.as_nanos();
            window.start += Duration::from_nanos((length.as_nanos() * passed) as u64);
            window.count = 0;
        }
        window.count = window.count.saturating_add(1);
        let end = window.start + length;
        let end_wall = self.started_wall + end.duration_since(self.started);
        let end_unix = end_wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        RateState {
            limit,
            remaining: limit.saturating_sub(window.count),
            reset_unix: end_unix.as_secs() + u64::from(end_unix.subsec_nanos() > 0),
            retry_after: ceil_secs(end.saturating_duration_since(at)).max(1),
            exceeded: config.rate_limit.is_some() && window.count > limit,
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Accepts connections until `stop` fires or its sender is dropped.
pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(shared.clone(), stream));
                }
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

/// What to do with a connection after a request.
enum Action {
    /// Write the response; keep the connection if the client wants to.
    Respond(Response),
    /// Close with a TCP reset, answering nothing.
    Reset,
    /// Announce the whole body's length, send half of it, close.
    Truncate(Response),
    /// Stream an endless-looking chunked body until the client gives up.
    Huge(Response),
    /// Send the headers, then one byte every interval until the client gives up (slow loris).
    Trickle(Response, Duration),
}

/// Serves the requests of one connection, one after another (keep-alive).
async fn connection(shared: Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut conn = BufReader::new(stream);
    loop {
        let request = match http::read_request(&mut conn).await {
            Ok(request) => request,
            Err(ReadError::Closed) => return,
            Err(ReadError::Malformed(why)) => {
                let response = Response::json(400, error_body(why, json!({})));
                let _ = http::write_response(conn.get_mut(), &response, false).await;
                return;
            }
        };
        let keep_alive = request.keep_alive;
        match handle(&shared, &request).await {
            Action::Respond(response) => {
                let written = http::write_response(conn.get_mut(), &response, keep_alive).await;
                if written.is_err() || !keep_alive {
                    return;
                }
            }
            Action::Reset => {
                // SO_LINGER 0 makes the close below send RST instead of FIN.
                let _ = conn.get_ref().set_zero_linger();
                return;
            }
            Action::Truncate(response) => {
                let mut bytes =
                    http::head(&response, Framing::Length(response.body.len()), keep_alive);
                bytes.extend_from_slice(&response.body[..response.body.len() / 2]);
                let out = conn.get_mut();
                let _ = out.write_all(&bytes).await;
                let _ = out.shutdown().await;
                return;
            }
            Action::Huge(response) => {
                let _ = stream_huge(conn.get_mut(), &response).await;
                return;
            }
            Action::Trickle(response, interval) => {
                let _ = trickle(conn.get_mut(), &response, interval).await;
                return;
            }
        }
    }
}

/// Answers one request and logs it (except the double's own `/_fake/` endpoints).
async fn handle(shared: &Shared, request: &Request) -> Action {
    if request.path().starts_with("/_fake/") {
        return Action::Respond(fake_endpoint(shared, request));
    }
    let seq = shared.seq.fetch_add(1, Ordering::SeqCst);
    let config = shared.config.lock().expect("config lock").clone();
    let authorization = request.header("authorization").map(str::to_owned);
    let authorized = authorization
        .as_deref()
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
    let rate = shared.tick(&config, request.arrived);
    let (mut action, fault) = decide(shared, &config, request, seq, &rate, authorized).await;
    if let Action::Respond(r) | Action::Truncate(r) | Action::Huge(r) | Action::Trickle(r, _) =
        &mut action
    {
        for (name, value) in &config.header_overrides {
            r.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            r.headers.push((*name, value.clone()));
        }
    }
    let status = match &action {
        Action::Respond(r) | Action::Truncate(r) | Action::Huge(r) | Action::Trickle(r, _) => {
            r.status
        }
        Action::Reset => 0,
    };
    shared.log.lock().expect("log lock").push(RequestRecord {
        seq,
        at: request.arrived,
        method: request.method.clone(),
        path_and_query: request.target.clone(),
        status,
        fault: fault.map(str::to_owned),
        authorized,
        authorization,
    });
    if let Some((needle, _)) = &config.touch_after
        && request.target.contains(needle.as_str())
    {
        // The answer above was decided from the state before the push.
        let mut live = shared.config.lock().expect("config lock");
        if let Some((_, pairs)) = live.touch_after.take() {
            live.touched = pairs;
        }
    }
    action
}

async fn decide(
    shared: &Shared,
    config: &FakeHubConfig,
    request: &Request,
    seq: u64,
    rate: &RateState,
    authorized: bool,
) -> (Action, Option<&'static str>) {
    if config.force_429.contains(&seq) {
        let response = if config.force_429_bare {
            // The abuse limiter's answer: no hints at all.
            Response {
                status: 429,
                headers: Vec::new(),
                body: Vec::new(),
            }
        } else {
            let mut r = Response::json(429, RATE_LIMITED_BODY);
            r.headers
                .push(("Retry-After", config.force_429_retry_after.to_string()));
            r.headers.extend(rate.headers(0));
            r
        };
        return (Action::Respond(response), Some("force_429"));
    }
    if rate.exceeded {
        let mut r = Response::json(429, RATE_LIMITED_BODY);
        r.headers
            .push(("Retry-After", rate.retry_after.to_string()));
        r.headers.extend(rate.headers(0));
        return (Action::Respond(r), Some("rate_limit"));
    }
    let sign_in = matches!(endpoint(request.path()), Some(Endpoint::SignIn { .. }));
    let from = |at: Option<u64>| at.is_some_and(|at| seq >= at);
    if sign_in && from(config.revoke_from) {
        let body = json!({"detail": "Incorrect authentication credentials", "message": "incorrect username or password"});
        let mut r = Response::json(401, body.to_string());
        r.headers.extend(rate.headers(rate.remaining));
        return (Action::Respond(r), Some("revoked"));
    }
    if authorized && !sign_in && (from(config.revoke_from) || from(config.refuse_tokens_from)) {
        let mut r = Response::json(401, r#"{"detail":"token revoked"}"#);
        r.headers.extend(rate.headers(rate.remaining));
        return (Action::Respond(r), Some("token_refused"));
    }
    if authorized && token_expired(shared, config, request) {
        let mut r = Response::json(401, r#"{"detail":"token expired"}"#);
        r.headers.extend(rate.headers(rate.remaining));
        return (Action::Respond(r), Some("token_expired"));
    }
    let target = request.target.as_str();
    if config
        .broken_paths
        .iter()
        .any(|p| target.contains(p.as_str()))
    {
        let mut r = route(shared, config, request, authorized);
        r.status = 200;
        r.body = malformed(&r.body);
        r.headers.extend(rate.headers(rate.remaining));
        return (Action::Respond(r), Some("broken_path"));
    }
    if config
        .huge_paths
        .iter()
        .any(|p| target.contains(p.as_str()))
    {
        let mut r = Response::json(200, Vec::new());
        r.headers.extend(rate.headers(rate.remaining));
        return (Action::Huge(r), Some("huge_path"));
    }
    if let Some((_, status, body)) = config
        .override_paths
        .iter()
        .find(|(p, _, _)| target.contains(p.as_str()))
    {
        let mut r = Response::json(*status, body.clone());
        r.headers.extend(rate.headers(rate.remaining));
        return (Action::Respond(r), Some("override_path"));
    }
    if let Some((_, location)) = config
        .redirect_paths
        .iter()
        .find(|(p, _)| target.contains(p.as_str()))
    {
        let mut r = Response::json(302, Vec::new());
        r.headers.push(("Location", location.clone()));
        r.headers.extend(rate.headers(rate.remaining));
        return (Action::Respond(r), Some("redirect_path"));
    }
    if config
        .trickle_paths
        .iter()
        .any(|p| target.contains(p.as_str()))
    {
        let mut r = Response::json(200, Vec::new());
        r.headers.extend(rate.headers(rate.remaining));
        return (
            Action::Trickle(r, config.trickle_interval),
            Some("trickle_path"),
        );
    }
    let fault = random_fault(config, seq);
    let error = |status: u16, message: &str| {
        let mut r = Response::json(status, error_body(message, json!({})));
        r.headers.extend(rate.headers(rate.remaining));
        r
    };
    let fault_name = fault.map(FaultKind::name);
    match fault {
        Some(FaultKind::Status500) => {
            return (
                Action::Respond(error(500, "internal server error")),
                fault_name,
            );
        }
        Some(FaultKind::Status502) => {
            return (Action::Respond(error(502, "bad gateway")), fault_name);
        }
        Some(FaultKind::Status503) => {
            return (
                Action::Respond(error(503, "service unavailable")),
                fault_name,
            );
        }
        Some(FaultKind::Reset) => return (Action::Reset, fault_name),
        Some(FaultKind::Slow) => tokio::time::sleep(config.slow_delay).await,
        Some(FaultKind::Truncated | FaultKind::MalformedJson) | None => {}
    }
    let mut response = route(shared, config, request, authorized);
    response.headers.extend(rate.headers(rate.remaining));
    let action = match fault {
        Some(FaultKind::Truncated) => Action::Truncate(response),
        Some(FaultKind::MalformedJson) => {
            response.body = malformed(&response.body);
            Action::Respond(response)
        }
        _ => Action::Respond(response),
    };
    (action, fault_name)
}

/// Whether the request carries a token this double issued more than `token_ttl` ago (sign-in
/// requests never count as carrying one).
fn token_expired(shared: &Shared, config: &FakeHubConfig, request: &Request) -> bool {
    let Some(ttl) = config.token_ttl else {
        return false;
    };
    if matches!(endpoint(request.path()), Some(Endpoint::SignIn { .. })) {
        return false;
    }
    let token = request
        .header("authorization")
        .map_or("", |v| v.get(7..).unwrap_or(""));
    let tokens = shared.tokens.lock().expect("tokens lock");
    tokens
        .get(token)
        .is_some_and(|issued| request.arrived.saturating_duration_since(*issued) > ttl)
}

/// The random fault of request `seq`, if it gets one.
fn random_fault(config: &FakeHubConfig, seq: u64) -> Option<FaultKind> {
    if config.fault_kinds.is_empty() || config.fault_rate <= 0.0 {
        return None;
    }
    let mut rng = Prng::derive(config.seed ^ 0xFA17_5EED, seq);
    rng.chance(config.fault_rate)
        .then(|| *rng.pick(&config.fault_kinds))
}

/// Half the body and a stray `,}`: JSON no parser accepts, behind a well-formed HTTP answer.
fn malformed(body: &[u8]) -> Vec<u8> {
    let mut out = body[..body.len() / 2].to_vec();
    out.extend_from_slice(b",}");
    out
}

async fn stream_huge<W: AsyncWrite + Unpin>(
    out: &mut W,
    response: &Response,
) -> std::io::Result<()> {
    out.write_all(&http::head(response, Framing::Chunked, false))
        .await?;
    let opening = br#"{"count":1,"next":null,"previous":null,"results":["#;
    out.write_all(&chunk(opening)).await?;
    let entry = br#"{"name":"padding","images":[],"full_size":0,"media_type":"application/vnd.oci.image.index.v1+json"},"#;
    let payload = entry.repeat(64 * 1024 / entry.len());
    let framed = chunk(&payload);
    let mut sent = opening.len();
    while sent < HUGE_BODY_BYTES {
        out.write_all(&framed).await?;
        sent += payload.len();
    }
    out.write_all(&chunk(b"{}]}")).await?;
    out.write_all(b"0\r\n\r\n").await?;
    out.flush().await
}

/// How much body a trickle answer announces: at one byte per interval it never arrives.
const TRICKLE_BODY_BYTES: usize = 1024 * 1024;

/// The headers at once, then one space (valid leading JSON whitespace, so only a timeout can
/// end it) per `interval`, until the client hangs up or the announced length is sent.
async fn trickle<W: AsyncWrite + Unpin>(
    out: &mut W,
    response: &Response,
    interval: Duration,
) -> std::io::Result<()> {
    out.write_all(&http::head(
        response,
        Framing::Length(TRICKLE_BODY_BYTES),
        false,
    ))
    .await?;
    out.flush().await?;
    for _ in 0..TRICKLE_BODY_BYTES {
        tokio::time::sleep(interval).await;
        out.write_all(b" ").await?;
        out.flush().await?;
    }
    Ok(())
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The error shape of Hub's API: message first, then details.
fn error_body(message: &str, errinfo: Value) -> Vec<u8> {
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        message: &'a str,
        errinfo: Value,
    }
    serde_json::to_vec(&ErrorBody { message, errinfo }).expect("error body serializes")
}

/// The endpoints Hub serves here.
enum Endpoint {
    Repos {
        ns: String,
    },
    Tags {
        ns: String,
        repo: String,
    },
    Tag {
        ns: String,
        repo: String,
        tag: String,
    },
    SignIn {
        user: &'static str,
        secret: &'static str,
        token: &'static str,
    },
    /// The registry's `GET /v2/<ns>/<repo>/tags/list`.
    RegistryTags {
        ns: String,
        repo: String,
    },
    /// The registry's token service, `GET /token?service=...&scope=...`.
    RegistryToken,
}

fn endpoint(path: &str) -> Option<Endpoint> {
    // A trailing slash is optional everywhere, as on Hub.
    let path = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<String> = path.split('/').skip(1).map(percent_decode).collect();
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let owned = |x: &str| x.to_owned();
    Some(match s.as_slice() {
        ["v2", "namespaces", ns, "repositories"] | ["v2", "repositories", ns] => {
            Endpoint::Repos { ns: owned(ns) }
        }
        ["v2", "namespaces", ns, "repositories", repo, "tags"]
        | ["v2", "repositories", ns, repo, "tags"] => Endpoint::Tags {
            ns: owned(ns),
            repo: owned(repo),
        },
        ["v2", "namespaces", ns, "repositories", repo, "tags", tag]
        | ["v2", "repositories", ns, repo, "tags", tag] => Endpoint::Tag {
            ns: owned(ns),
            repo: owned(repo),
            tag: owned(tag),
        },
        ["v2", "auth", "token"] => Endpoint::SignIn {
            user: "identifier",
            secret: "secret",
            token: "access_token",
        },
        ["v2", "users", "login"] => Endpoint::SignIn {
            user: "username",
            secret: "password",
            token: "token",
        },
        ["v2", ns, repo, "tags", "list"] => Endpoint::RegistryTags {
            ns: owned(ns),
            repo: owned(repo),
        },
        ["token"] => Endpoint::RegistryToken,
        _ => return None,
    })
}

/// The real answer to an API request.
fn route(shared: &Shared, config: &FakeHubConfig, request: &Request, authorized: bool) -> Response {
    let loaded = shared.loaded();
    if let Some(answer) = content::route(&loaded.dataset, &loaded.content, request) {
        return answer;
    }
    let Some(endpoint) = endpoint(request.path()) else {
        return Response::json(404, error_body("httperror 404: page not found", json!({})));
    };
    let wanted = if matches!(endpoint, Endpoint::SignIn { .. }) {
        "POST"
    } else {
        "GET"
    };
    if request.method != wanted {
        return Response::json(405, error_body("method not allowed", json!({})));
    }
    if config.no_auth_token_endpoint
        && matches!(endpoint, Endpoint::SignIn { token, .. } if token == "access_token")
    {
        return Response::json(404, error_body("httperror 404: page not found", json!({})));
    }
    let dataset = &loaded.dataset;
    let listing = Listing {
        base: &shared.base_url,
        path: request.path(),
        query: request.query(),
        authorized,
        anonymous_cap: config.anonymous_cap,
    };
    let repo_of = |ns: &str, name: &str| -> Result<&Repo, Response> {
        dataset
            .repo(name)
            .filter(|_| ns == dataset.namespace)
            .ok_or_else(|| {
                let info = json!({"namespace": ns, "repository": name});
                Response::json(404, error_body("httperror 404: object not found", info))
            })
    };
    let answer = match endpoint {
        Endpoint::Repos { ns } => list_repos(dataset, &ns, &listing),
        Endpoint::Tags { ns, repo } => {
            repo_of(&ns, &repo).and_then(|repo| list_tags(dataset, repo, config, &listing))
        }
        Endpoint::Tag { ns, repo, tag } => repo_of(&ns, &repo).and_then(|repo| {
            let found = repo.tags.iter().find(|t| t.name == tag);
            let found = found.ok_or_else(|| {
                let info = json!({"namespace": ns, "repository": repo.name, "tag": tag});
                let message = format!("httperror 404: tag '{tag}' not found");
                Response::json(404, error_body(&message, info))
            })?;
            Ok(json_response(&tag_json(repo, found)))
        }),
        Endpoint::SignIn {
            user,
            secret,
            token,
        } => Ok(sign_in(shared, config, request, (user, secret, token))),
        Endpoint::RegistryToken => Ok(registry_token(request)),
        Endpoint::RegistryTags { ns, repo } => {
            registry_tags(&shared.base_url, config, request, repo_of(&ns, &repo))
        }
    };
    answer.unwrap_or_else(|error| error)
}

/// The registry token for pulling `ns/repo` (the scope, readable; this double checks it equals
/// what it would issue).
fn registry_token_for(scope: &str) -> String {
    format!("registry-token-{}", scope.replace([':', '/'], "."))
}

/// Answers the registry's token service: any `scope` asked for is granted, anonymously, as
/// `auth.docker.io` grants pulls of public repositories.
fn registry_token(request: &Request) -> Response {
    let scope = query_pairs(request.query())
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v)
        .unwrap_or_default();
    json_response(&json!({
        "token": registry_token_for(&scope),
        "access_token": registry_token_for(&scope),
        "expires_in": 300,
    }))
}

/// Answers `GET /v2/<ns>/<repo>/tags/list` as a registry does: without the right token, 401 and
/// the challenge naming this double's token service; with it, every current tag name (sorted,
/// as the distribution registry keeps them), `n` at a time after `last` when asked, or at most
/// [`FakeHubConfig::registry_page`] at a time, with a `Link` to the next page.
fn registry_tags(
    base: &str,
    config: &FakeHubConfig,
    request: &Request,
    repo: Result<&Repo, Response>,
) -> Result<Response, Response> {
    let path = request.path();
    let name = path
        .trim_start_matches("/v2/")
        .trim_end_matches('/')
        .trim_end_matches("/tags/list")
        .to_owned();
    let scope = format!("repository:{name}:pull");
    let expected = format!("Bearer {}", registry_token_for(&scope));
    if request.header("authorization") != Some(expected.as_str()) {
        let mut r = Response::json(
            401,
            json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
                .to_string(),
        );
        r.headers.push((
            "WWW-Authenticate",
            format!(r#"Bearer realm="{base}/token",service="registry.docker.io",scope="{scope}""#),
        ));
        return Ok(r);
    }
    let repo = repo.map_err(|_| {
        Response::json(
            404,
            json!({"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known to registry"}]})
                .to_string(),
        )
    })?;
    let mut names: Vec<&str> = repo.tags.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    let (mut n, mut last) = (None, None);
    for (key, value) in query_pairs(request.query()) {
        match key.as_str() {
            "n" => n = value.parse::<usize>().ok(),
            "last" => last = Some(value),
            _ => {}
        }
    }
    let size = match (n, config.registry_page) {
        (Some(n), Some(page)) => Some(n.min(page)),
        (a, b) => a.or(b),
    };
    let start = last.map_or(0, |l| names.partition_point(|x| *x <= l.as_str()));
    let end = size.map_or(names.len(), |n| (start + n.max(1)).min(names.len()));
    let page = &names[start..end];
    let mut r = json_response(&json!({"name": name, "tags": page}));
    if end < names.len() {
        r.headers.push((
            "Link",
            format!(
                r#"</v2/{name}/tags/list?n={}&last={}>; rel="next""#,
                end - start,
                page.last().copied().unwrap_or_default()
            ),
        ));
    }
    Ok(r)
}

fn json_response<T: Serialize>(value: &T) -> Response {
    Response::json(200, serde_json::to_vec(value).expect("page serializes"))
}

/// Answers `POST /v2/auth/token` and `POST /v2/users/login` with a token that carries nothing
/// of the secret.
fn sign_in(
    shared: &Shared,
    config: &FakeHubConfig,
    request: &Request,
    (user_key, secret_key, token_key): (&str, &str, &str),
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return Response::json(400, error_body("invalid JSON body", json!({})));
    };
    let user = body[user_key].as_str().unwrap_or("");
    let secret = body[secret_key].as_str().unwrap_or("");
    let accepted = match &config.credentials {
        Some((u, s)) => user == u && secret == s,
        None => !user.is_empty() && !secret.is_empty(),
    };
    if !accepted {
        let body = json!({"detail": "Incorrect authentication credentials", "message": "incorrect username or password"});
        return Response::json(401, body.to_string());
    }
    // Deterministic per user, so runs are reproducible; derived from the name, never the secret.
    let user_hash = user.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    });
    // Each sign-in gets a new token (numbered in issue order), so a renewed token differs from
    // the expired one.
    let mut tokens = shared.tokens.lock().expect("tokens lock");
    let issued = tokens.len() as u64;
    let mut rng = Prng::derive(config.seed ^ 0x70_4E45, user_hash.wrapping_add(issued));
    let token = format!("eyJhbGciOiJIUzI1NiJ9.{}.{}", rng.hex(48), rng.hex(43));
    tokens.insert(token.clone(), request.arrived);
    json_response(&json!({ token_key: token }))
}

/// A listing request's context.
struct Listing<'a> {
    base: &'a str,
    path: &'a str,
    query: &'a str,
    authorized: bool,
    anonymous_cap: bool,
}

/// The paging parameters of a listing.
struct ListQuery {
    page: u64,
    page_size: u64,
    ordering: Option<String>,
    name: Option<String>,
}

impl Listing<'_> {
    fn params(&self) -> Result<ListQuery, Response> {
        let mut q = ListQuery {
            page: 1,
            page_size: DEFAULT_PAGE_SIZE,
            ordering: None,
            name: None,
        };
        for (key, value) in query_pairs(self.query) {
            match key.as_str() {
                "page" => q.page = positive("page", &value)?,
                // Hub clamps silently rather than refusing.
                "page_size" => q.page_size = positive("page_size", &value)?.min(MAX_PAGE_SIZE),
                "ordering" => q.ordering = Some(value).filter(|v| !v.is_empty()),
                "name" => q.name = Some(value.to_lowercase()).filter(|v| !v.is_empty()),
                _ => {}
            }
        }
        Ok(q)
    }

    /// Cuts one page out of `items` and renders the envelope.
    fn page<T, R: Serialize>(
        &self,
        q: &ListQuery,
        cap: u64,
        items: &[T],
        render: impl Fn(&T) -> R,
        first_next: Option<&str>,
    ) -> Result<Response, Response> {
        if self.anonymous_cap && !self.authorized && (q.page - 1).saturating_mul(q.page_size) >= cap
        {
            return Err(Response::json(403, CAPPED_BODY));
        }
        let count = items.len();
        let pages = (count as u64).div_ceil(q.page_size).max(1);
        if q.page > pages {
            return Err(Response::json(
                404,
                error_body("httperror 404: page not found", json!({})),
            ));
        }
        let start = ((q.page - 1) * q.page_size) as usize;
        let end = (start + q.page_size as usize).min(count);
        let next = match first_next {
            Some(url) if q.page == 1 => Some(url.to_owned()),
            _ => (q.page < pages).then(|| self.url(q.page + 1)),
        };
        Ok(json_response(&Page {
            count,
            next,
            previous: (q.page > 1).then(|| self.url(q.page - 1)),
            results: items[start..end].iter().map(render).collect(),
        }))
    }

    /// This listing's absolute URL at another page, the rest of the query unchanged.
    fn url(&self, page: u64) -> String {
        let mut replaced = false;
        let mut parts: Vec<String> = self
            .query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                if p == "page" || p.starts_with("page=") {
                    replaced = true;
                    format!("page={page}")
                } else {
                    p.to_owned()
                }
            })
            .collect();
        if !replaced {
            parts.push(format!("page={page}"));
        }
        format!("{}{}?{}", self.base, self.path, parts.join("&"))
    }
}

fn positive(name: &str, value: &str) -> Result<u64, Response> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Response::json(
            400,
            error_body(
                &format!("httperror 400: {name} must be a positive integer"),
                json!({ name: value }),
            ),
        )),
    }
}

fn bad_ordering(ordering: &str) -> Response {
    Response::json(
        400,
        error_body(
            &format!("httperror 400: invalid ordering '{ordering}'"),
            json!({}),
        ),
    )
}

/// Repositories: `name` (the default) and `-name`, `last_updated` and `-last_updated`,
/// `pull_count` and `-pull_count`, where `-` means descending.
fn list_repos(dataset: &Dataset, ns: &str, listing: &Listing) -> Result<Response, Response> {
    if ns != dataset.namespace {
        let info = json!({"namespace": ns});
        return Err(Response::json(
            404,
            error_body("httperror 404: object not found", info),
        ));
    }
    let q = listing.params()?;
    let mut repos: Vec<&Repo> = dataset
        .repos
        .iter()
        .filter(|r| {
            q.name
                .as_ref()
                .is_none_or(|n| r.name.to_lowercase().contains(n))
        })
        .collect();
    match q.ordering.as_deref() {
        None | Some("name") => repos.sort_by(|a, b| a.name.cmp(&b.name)),
        Some("-name") => repos.sort_by(|a, b| b.name.cmp(&a.name)),
        Some("last_updated") => repos.sort_by_key(|r| (r.last_updated(), r.name.clone())),
        Some("-last_updated") => repos.sort_by_key(|r| (Reverse(r.last_updated()), r.name.clone())),
        Some("pull_count") => repos.sort_by_key(|r| (r.pull_count, r.name.clone())),
        Some("-pull_count") => repos.sort_by_key(|r| (Reverse(r.pull_count), r.name.clone())),
        Some(other) => return Err(bad_ordering(other)),
    }
    listing.page(&q, REPOS_CAP, &repos, |r| repo_json(dataset, r), None)
}

/// Tags: `last_updated` (the default) is newest first and `-last_updated` oldest first, as on
/// Hub; `name` and `-name` sort by name. Ties break by name, null times sort as oldest.
fn list_tags(
    dataset: &Dataset,
    repo: &Repo,
    config: &FakeHubConfig,
    listing: &Listing,
) -> Result<Response, Response> {
    let q = listing.params()?;
    let mut tags: Vec<_> = repo
        .tags
        .iter()
        .filter(|t| {
            q.name
                .as_ref()
                .is_none_or(|n| t.name.to_lowercase().contains(n))
        })
        .collect();
    // A touched tag was re-pushed just now: newest of all.
    let touched = |name: &str| {
        config
            .touched
            .iter()
            .any(|(r, t)| *r == repo.name && t == name)
    };
    match q.ordering.as_deref() {
        None | Some("last_updated") => {
            tags.sort_by(|a, b| {
                (Reverse((touched(&a.name), a.last_updated)), &a.name)
                    .cmp(&(Reverse((touched(&b.name), b.last_updated)), &b.name))
            });
        }
        Some("-last_updated") => {
            tags.sort_by(|a, b| {
                ((touched(&a.name), a.last_updated), &a.name)
                    .cmp(&((touched(&b.name), b.last_updated), &b.name))
            });
        }
        Some("name") => tags.sort_by(|a, b| a.name.cmp(&b.name)),
        Some("-name") => tags.sort_by(|a, b| b.name.cmp(&a.name)),
        Some(other) => return Err(bad_ordering(other)),
    }
    let off_host = config
        .off_host_next
        .as_ref()
        .filter(|(name, _)| {
            *name == repo.name || *name == format!("{}/{}", dataset.namespace, repo.name)
        })
        .map(|(_, url)| url.as_str());
    listing.page(&q, TAGS_CAP, &tags, |t| tag_json(repo, t), off_host)
}

/// The double's own endpoints for scripts: `/_fake/truth` and `/_fake/requests`.
fn fake_endpoint(shared: &Shared, request: &Request) -> Response {
    match request.path() {
        "/_fake/truth" => {
            let mut response = Response::json(200, truth_ndjson(&shared.loaded().truth));
            response.headers = vec![("Content-Type", "application/x-ndjson".to_owned())];
            response
        }
        "/_fake/requests" => {
            let log = shared.log.lock().expect("log lock");
            let mut records: Vec<&RequestRecord> = log.iter().collect();
            records.sort_by_key(|r| r.seq);
            let entries: Vec<Value> = records
                .into_iter()
                .map(|r| {
                    json!({
                        "seq": r.seq,
                        "at_ms": r.at.saturating_duration_since(shared.started).as_secs_f64() * 1000.0,
                        "method": r.method,
                        "path_and_query": r.path_and_query,
                        "status": r.status,
                        "fault": r.fault,
                        "authorized": r.authorized,
                        "authorization": r.authorization,
                    })
                })
                .collect();
            Response::json(200, Value::from(entries).to_string())
        }
        _ => Response::json(404, error_body("no such fake endpoint", json!({}))),
    }
}

/// The truth as NDJSON, one digest per line, sorted by digest.
fn truth_ndjson(truth: &Truth) -> String {
    let mut out = String::new();
    for value in truth.entries.values() {
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
}

/// `key=value` pairs of a query string, percent-decoded.
fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (
            percent_decode(&key.replace('+', " ")),
            percent_decode(&value.replace('+', " ")),
        )
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|&b| hex(b)),
            bytes.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

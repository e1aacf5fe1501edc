//! A local double of the Docker Hub API, for digestmap's tests and scripts.
//!
//! It is a real HTTP/1.1 server on raw tokio sockets rather than hyper, so every fault a crawler
//! must survive is under the test's control: resets, truncated bodies, slow and malformed
//! answers, endless bodies, trickled (slow-loris) bodies, rate limiting, off-host `next` links,
//! redirects, and raw answers overriding a page (hostile content). Its repositories and tags are
//! generated from a seed as a typed model (`generate.rs`, `model.rs`); pages are rendered from
//! that model (`render.rs`), and the dataset a perfect crawl must produce (`truth.rs`) is
//! computed from the same model, never by parsing the rendered JSON, so a parsing bug cannot hide
//! on both sides. Its platform manifests, configs and indexes are real content whose digests are
//! the sha256 of their bytes (`content.rs`), served by registry routes (`/v2/<ns>/<repo>/manifests/
//! <digest>`, `/blobs/<digest>`), so `digestmap enrich` runs against the double alone.
//!
//! It also serves a registry facade for the anonymous cover: `GET /v2/<ns>/<repo>/tags/list`
//! answers `401` with a `WWW-Authenticate: Bearer realm="<base>/token",...` challenge until asked
//! with the token its `GET /token?scope=...` issues, then every current tag name (sorted, paged
//! with `n`/`last` and `Link` when [`FakeHubConfig::registry_page`] says so).
//!
//! The server runs on its own thread and runtime: a test may block its own thread (waiting for a
//! `digestmap` subprocess, say) without starving the double.
//!
//! ```ignore
//! let hub = FakeHub::start(FakeHubConfig::default()).await;
//! // run `digestmap` against hub.url(), then compare its dataset with hub.truth()
//! ```

mod content;
mod generate;
mod http;
mod model;
mod prng;
mod render;
mod server;
mod time;
mod truth;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

pub use content::Served;
pub use generate::Churn;
use generate::DataSpec;
use server::{Loaded, Shared};

/// What the double serves and how it misbehaves.
///
/// The data fields (`seed`, `namespace`, `repos`, `max_tags`, `big_repo_tags`, `rebuilds`)
/// regenerate the dataset when [`FakeHub::update`] changes them; the rest take effect with the
/// next request. `port` is read once, at start.
#[derive(Clone, Debug)]
pub struct FakeHubConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Seed of the data and of the random faults.
    pub seed: u64,
    /// The namespace served (`library` for official images).
    pub namespace: String,
    /// Number of repositories: real names first (ubuntu, python, node, ...), then generated ones.
    pub repos: usize,
    /// Most tags of an ordinary repository; counts vary from a few up to this. The first
    /// repository other than the big one gets exactly this many, the last one a few (ubuntu and
    /// debian stop early if their release history runs out).
    pub max_tags: usize,
    /// Tags of the big repository (`python`, or the first one when there is no `python`).
    pub big_repo_tags: usize,
    /// Changes since "yesterday": tags retagged, added and deleted (see [`Churn`]).
    pub churn: Option<Churn>,
    /// `(repository, tag)` pairs re-pushed just now: they sort as the newest tags of their
    /// repository (their rendered times are left as they were), which shifts every tag listed
    /// after their old place by one, as a push during a crawl does on Hub.
    pub touched: Vec<(String, String)>,
    /// Rounds of "tags move": each round pushes every repository's newest build again, moving
    /// its floating aliases to new digests (the most specific name stays on the old build).
    pub rebuilds: u32,
    /// Refuse anonymous listings past offset 1000 (tags) and 100 (repositories) with Hub's 403;
    /// requests with `Authorization: Bearer` are not capped.
    pub anonymous_cap: bool,
    /// A fixed rate window `(limit, length)`; over the limit, 429 with `Retry-After`. `None`
    /// never refuses but still sends `X-RateLimit-*` headers (with a generous limit).
    pub rate_limit: Option<(u32, Duration)>,
    /// Request sequence numbers (0-based, arrival order) answered 429 whatever the window says.
    pub force_429: BTreeSet<u64>,
    /// The `Retry-After` seconds of a forced 429.
    pub force_429_retry_after: u64,
    /// Forced 429s carry no headers and no body, like Hub's abuse limiter.
    pub force_429_bare: bool,
    /// Probability that a request gets one of `fault_kinds`, decided from `seed` and its
    /// sequence number.
    pub fault_rate: f64,
    /// The faults random picks come from.
    pub fault_kinds: Vec<FaultKind>,
    /// How long a [`FaultKind::Slow`] answer waits.
    pub slow_delay: Duration,
    /// Requests whose path and query contain one of these get a 200 with malformed JSON.
    pub broken_paths: Vec<String>,
    /// Requests whose path and query contain one of these get a 200 whose chunked body goes on
    /// for 512 MiB, or until the client hangs up.
    pub huge_paths: Vec<String>,
    /// `(repository, url)`: the first tags page of that repository (`python` or
    /// `library/python`) carries `url` as its `next`.
    pub off_host_next: Option<(String, String)>,
    /// `(path substring, location)`: requests whose path and query contain the substring get
    /// `302 Found` with that `Location` (another host, another scheme, or a page of this one).
    pub redirect_paths: Vec<(String, String)>,
    /// `(path substring, status, body)`: requests whose path and query contain the substring
    /// get that status and those raw bytes as a JSON answer, instead of the real page; for
    /// content the generator never makes (hostile names, absurd counts, invalid UTF-8, ...).
    pub override_paths: Vec<(String, u16, Vec<u8>)>,
    /// Requests whose path and query contain one of these get a slow-loris answer: the
    /// headers of a 200 announcing a 1 MiB body, then one space every `trickle_interval`,
    /// until the client hangs up.
    pub trickle_paths: Vec<String>,
    /// The pause between two bytes of a trickle answer.
    pub trickle_interval: Duration,
    /// Accepted `(user, secret)` for `POST /v2/auth/token` and `/v2/users/login`; `None`
    /// accepts any non-empty pair.
    pub credentials: Option<(String, String)>,
    /// `POST /v2/auth/token` answers 404, like a Hub that only has `/v2/users/login`.
    pub no_auth_token_endpoint: bool,
    /// Tokens this double issued stop working this long after they were issued: a request
    /// carrying one then gets `401 {"detail":"token expired"}`. `None`: they never expire.
    pub token_ttl: Option<Duration>,
    /// From this request sequence number on, the credentials are revoked: sign-in answers 401,
    /// and every token this double issued gets `401 {"detail":"token revoked"}`.
    pub revoke_from: Option<u64>,
    /// From this request sequence number on, every token gets `401`, even one issued after it;
    /// sign-in still works (a Hub that accepts the credentials but none of its tokens).
    pub refuse_tokens_from: Option<u64>,
    /// `(name, value)`: set on every answer, replacing the double's own header of that name;
    /// for hostile headers (`Retry-After`, `X-RateLimit-Reset`) no real Hub sends.
    pub header_overrides: Vec<(&'static str, String)>,
    /// The registry facade (`GET /v2/<ns>/<repo>/tags/list`, its token service at `/token`)
    /// answers at most this many names a page, with a `Link` to the next; `None`: all at once.
    pub registry_page: Option<usize>,
    /// `(path substring, pairs)`: once a request whose path and query contain the substring is
    /// answered (as before), the pairs become [`FakeHubConfig::touched`]: a push at a chosen
    /// point of a crawl, whatever its timing (the hook then clears itself).
    pub touch_after: Option<(String, Vec<(String, String)>)>,
}

impl Default for FakeHubConfig {
    fn default() -> Self {
        FakeHubConfig {
            port: 0,
            seed: 1,
            namespace: "library".to_owned(),
            repos: 12,
            max_tags: 300,
            big_repo_tags: 2500,
            rebuilds: 0,
            touched: Vec::new(),
            churn: None,
            anonymous_cap: false,
            rate_limit: None,
            force_429: BTreeSet::new(),
            force_429_retry_after: 1,
            force_429_bare: false,
            fault_rate: 0.0,
            fault_kinds: FaultKind::ALL.to_vec(),
            slow_delay: Duration::from_secs(2),
            broken_paths: Vec::new(),
            huge_paths: Vec::new(),
            off_host_next: None,
            redirect_paths: Vec::new(),
            override_paths: Vec::new(),
            trickle_paths: Vec::new(),
            trickle_interval: Duration::from_millis(100),
            credentials: None,
            no_auth_token_endpoint: false,
            token_ttl: None,
            revoke_from: None,
            refuse_tokens_from: None,
            header_overrides: Vec::new(),
            registry_page: None,
            touch_after: None,
        }
    }
}

impl FakeHubConfig {
    fn data_spec(&self) -> DataSpec {
        DataSpec {
            seed: self.seed,
            namespace: self.namespace.clone(),
            repos: self.repos,
            max_tags: self.max_tags,
            big_repo_tags: self.big_repo_tags,
            rebuilds: self.rebuilds,
            churn: self.churn,
        }
    }
}

/// A fault the double can inject into an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// `500` with a JSON message.
    Status500,
    /// `502` with a JSON message.
    Status502,
    /// `503` with a JSON message.
    Status503,
    /// The connection is reset (RST) after the request is read; nothing is answered.
    Reset,
    /// The real answer, after [`FakeHubConfig::slow_delay`].
    Slow,
    /// The real answer's headers and half its body, then the connection closes.
    Truncated,
    /// A 200 whose body is not valid JSON.
    MalformedJson,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Status500,
        FaultKind::Status502,
        FaultKind::Status503,
        FaultKind::Reset,
        FaultKind::Slow,
        FaultKind::Truncated,
        FaultKind::MalformedJson,
    ];

    /// The name used in [`RequestRecord::fault`] and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Status500 => "500",
            FaultKind::Status502 => "502",
            FaultKind::Status503 => "503",
            FaultKind::Reset => "reset",
            FaultKind::Slow => "slow",
            FaultKind::Truncated => "truncated",
            FaultKind::MalformedJson => "malformed",
        }
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault '{s}' (one of {})", names.join(", "))
            })
    }
}

/// One API request as the double saw it (its `/_fake/` endpoints are not logged).
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// Sequence number, 0-based in arrival order (what [`FakeHubConfig::force_429`] names).
    pub seq: u64,
    /// When the request line arrived.
    pub at: Instant,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target as sent.
    pub path_and_query: String,
    /// The status answered; 0 when the connection was reset instead.
    pub status: u16,
    /// The injected misbehaviour, if any: a [`FaultKind::name`], or `force_429`, `rate_limit`,
    /// `broken_path`, `huge_path`, `override_path`, `redirect_path`, `trickle_path`.
    pub fault: Option<String>,
    /// The request carried `Authorization: Bearer ...`.
    pub authorized: bool,
    /// The `Authorization` header as sent, if any.
    pub authorization: Option<String>,
}

/// A running double. Dropping it stops the server.
pub struct FakeHub {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeHub {
    /// Starts a double, panicking if it cannot (tests want the failure, not a `Result`).
    pub async fn start(config: FakeHubConfig) -> FakeHub {
        FakeHub::bind(config).expect("start the fake Docker Hub")
    }

    /// Starts a double on its own thread and runtime.
    pub fn bind(config: FakeHubConfig) -> std::io::Result<FakeHub> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", config.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config, format!("http://{addr}")));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-hub")
            .enable_all()
            .build()?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (stop, stopped) = oneshot::channel();
        let server = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-hub".to_owned())
            .spawn(move || runtime.block_on(server::serve(listener, server, stopped)))?;
        Ok(FakeHub {
            shared,
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The address the double listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A copy of the current configuration.
    pub fn config(&self) -> FakeHubConfig {
        self.shared.config.lock().expect("config lock").clone()
    }

    /// Changes the configuration while the double runs (e.g. faults mid-crawl). Changing a data
    /// field regenerates the dataset before this returns.
    pub fn update(&self, change: impl FnOnce(&mut FakeHubConfig)) {
        let mut config = self.shared.config.lock().expect("config lock");
        change(&mut config);
        let spec = config.data_spec();
        if spec != self.shared.loaded().spec {
            *self.shared.data.write().expect("data lock") = Arc::new(Loaded::new(spec));
        }
    }

    /// The dataset a perfect crawl must produce: one object per digest, keyed by digest.
    pub fn truth(&self) -> BTreeMap<String, serde_json::Value> {
        self.shared.loaded().truth.entries.clone()
    }

    /// What the double's registry serves under `digest` (a platform manifest and its image ID,
    /// a config and its diff_ids, an index), or `None` when it serves nothing there.
    pub fn served(&self, digest: &str) -> Option<Served> {
        let loaded = self.shared.loaded();
        loaded.content.served(&loaded.dataset, digest)
    }

    /// Attestation entries a crawler must leave out, counted per tag object.
    pub fn skipped_attestations(&self) -> u64 {
        self.shared.loaded().truth.skipped_attestations
    }

    /// Null digests a crawler must leave out, counted per tag object.
    pub fn skipped_null_digests(&self) -> u64 {
        self.shared.loaded().truth.skipped_null_digests
    }

    /// Invalid digests a crawler must leave out, counted per tag object.
    pub fn skipped_invalid_digests(&self) -> u64 {
        self.shared.loaded().truth.skipped_invalid_digests
    }

    /// Tags in the namespace.
    pub fn total_tags(&self) -> usize {
        self.shared.loaded().truth.total_tags
    }

    /// Repositories in the namespace.
    pub fn total_repos(&self) -> usize {
        self.shared.loaded().dataset.repos.len()
    }

    /// Names of the repositories, in generation order.
    pub fn repo_names(&self) -> Vec<String> {
        let loaded = self.shared.loaded();
        loaded
            .dataset
            .repos
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    /// The API requests so far, by sequence number.
    pub fn requests(&self) -> Vec<RequestRecord> {
        let mut log = self.shared.log.lock().expect("log lock").clone();
        log.sort_by_key(|r| r.seq);
        log
    }

    /// Forgets the logged requests (sequence numbers keep counting).
    pub fn clear_requests(&self) {
        self.shared.log.lock().expect("log lock").clear();
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

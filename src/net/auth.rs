//! Docker Hub sign-in: where credentials come from, how a token is obtained and kept fresh, and
//! the middleware that puts it on every Hub request.
//!
//! Signed-in listings are not capped the way anonymous ones are (see the crate README), so a crawl
//! that can sign in should. Credentials are found the way docker and other registry tools find
//! them ([`explicit`], [`discover`]): a token piped to `--token-stdin`, then
//! `DOCKERHUB_USERNAME` and `DOCKERHUB_TOKEN`, then the user's docker `config.json` (its
//! credential helpers, then its inline `auth`). Never from a flag value, which any user could read in `ps`. docker keys stored
//! credentials by host, so the found ones (environment, `config.json`) go to Docker Hub's own
//! origin only ([`DOCKER_HUB_ORIGIN`]); any other `--hub-url` gets only the explicit
//! `--token-stdin`, so a mirror or a typo'd host never receives the user's token.
//!
//! [`HubAuth`] exchanges them for a short-lived token (`POST /v2/auth/token`, or the older
//! `/v2/users/login` where that endpoint is missing), renews it a minute before it expires (or
//! when Hub answers 401 to it), and [`AuthMiddleware`] adds `Authorization: Bearer` to every
//! request for the Hub origin, and only for it. Hub's refusal of the credentials is final: a
//! sign-in answered 401/403 is not retried (repeated wrong sign-ins can lock an account), and once
//! Hub refused the credentials or a token it had just issued after a 401, no request is sent and
//! no sign-in tried again ([`HubAuth::refused`]); the crawl stops on it. The middleware sits between the retry and the
//! pacing middleware, so each retry attempt carries the current token and every attempt, the
//! sign-in requests included, is paced.
//!
//! The secret and the token live in [`Secret`] and in sensitive header values, whose `Debug` and
//! `Display` never show them: no log line, error, store record or dataset line can contain them.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Extensions, HeaderValue, StatusCode};
use reqwest::{Request, Response};
use reqwest_middleware::{ClientWithMiddleware, Middleware, Next};
use url::{Origin, Url};

use super::{NetStats, error_chain};
use crate::hub::HubApi;

/// Lifetime assumed for a token whose expiry cannot be read (Hub documents about 10 minutes).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(600);
/// How long before its expiry a token is renewed.
pub const RENEW_EARLY: Duration = Duration::from_secs(60);
/// After a failed renewal, how long the old (still valid) token is used before trying again.
const RENEW_BACKOFF: Duration = Duration::from_secs(15);
/// 429 answers to one sign-in before giving up; each waits for the pause Hub asked for.
const MAX_SIGN_IN_429S: u32 = 8;
/// Largest sign-in answer read: a token is a few hundred bytes.
const MAX_SIGN_IN_BODY: usize = 64 * 1024;
/// Largest token accepted on standard input.
const MAX_STDIN_TOKEN: u64 = 64 * 1024;
/// Time a credential helper may take (one that waits for a desktop prompt must not hang us).
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// The `auths` / `credHelpers` keys docker uses for Docker Hub, preferred first. The first is
/// the server URL docker itself hands to credential helpers.
const HUB_KEYS: [&str; 4] = [
    "https://index.docker.io/v1/",
    "index.docker.io",
    "docker.io",
    "registry-1.docker.io",
];

/// A secret string (a personal access token, a password or a Hub token): `Debug` and `Display`
/// print `[redacted]`, so it cannot reach a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where credentials were found, for the log line that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `--token-stdin`.
    TokenStdin,
    /// `DOCKERHUB_USERNAME` and `DOCKERHUB_TOKEN`.
    Environment,
    /// An `auths` entry of this docker `config.json`.
    DockerConfig(PathBuf),
    /// `docker-credential-<helper> get`, configured in this `config.json`.
    CredentialHelper {
        /// The helper's name (the part after `docker-credential-`).
        helper: String,
        /// The `config.json` naming it.
        config: PathBuf,
    },
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TokenStdin => f.write_str("--token-stdin"),
            Self::Environment => f.write_str("DOCKERHUB_USERNAME and DOCKERHUB_TOKEN"),
            Self::DockerConfig(path) => write!(f, "{}", path.display()),
            Self::CredentialHelper { helper, config } => write!(
                f,
                "docker-credential-{helper} (configured in {})",
                config.display()
            ),
        }
    }
}

/// A Docker Hub user name and its personal access token (or password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The Docker Hub user name.
    pub username: String,
    /// The personal access token or password.
    pub secret: Secret,
    /// Where they were found.
    pub source: CredentialSource,
}

/// Why credentials could not be taken from what the user gave.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// `--token-stdin` without a user name.
    #[error("--token-stdin needs a user name: give --username NAME or set DOCKERHUB_USERNAME")]
    MissingUsername,
    /// `DOCKERHUB_TOKEN` without `DOCKERHUB_USERNAME`.
    #[error("DOCKERHUB_TOKEN is set but DOCKERHUB_USERNAME is not; set both, or neither")]
    TokenWithoutUsername,
    /// Standard input held no token.
    #[error("--token-stdin: standard input holds no token")]
    EmptyToken,
    /// Standard input could not be read.
    #[error("--token-stdin: cannot read standard input: {0}")]
    Stdin(std::io::Error),
}

/// Reads a token from `input` (standard input for `--token-stdin`), without the line end.
pub fn read_token(input: impl Read) -> Result<Secret, CredentialError> {
    let mut text = String::new();
    input
        .take(MAX_STDIN_TOKEN)
        .read_to_string(&mut text)
        .map_err(CredentialError::Stdin)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(CredentialError::EmptyToken);
    }
    Ok(Secret::new(token))
}

/// Docker Hub's own API origin: the only one that found credentials (the environment's, docker's
/// `config.json`) are sent to, since docker keys them by host.
pub const DOCKER_HUB_ORIGIN: &str = "https://hub.docker.com";

/// Whether credentials found in the environment or docker's `config.json` may go to `origin`:
/// only to Docker Hub's own. A mirror, a double or a typo'd host gets only an explicit
/// `--token-stdin`.
pub fn found_credentials_apply(origin: &str) -> bool {
    match (Url::parse(origin), Url::parse(DOCKER_HUB_ORIGIN)) {
        (Ok(origin), Ok(hub)) => origin.origin() == hub.origin(),
        _ => false,
    }
}

/// The credentials given explicitly: the token read for `--token-stdin`, with its user name from
/// `username` (`--username`) or `DOCKERHUB_USERNAME`. Checked before anything else happens, so
/// a half-given sign-in is a usage error that touches nothing.
pub fn explicit(
    stdin_token: Option<Secret>,
    username: Option<String>,
) -> Result<Option<Credentials>, CredentialError> {
    explicit_in(&|name| std::env::var_os(name), stdin_token, username)
}

/// [`explicit`] with the environment given as a lookup function.
fn explicit_in(
    env: &dyn Fn(&str) -> Option<OsString>,
    stdin_token: Option<Secret>,
    username: Option<String>,
) -> Result<Option<Credentials>, CredentialError> {
    let Some(secret) = stdin_token else {
        return Ok(None);
    };
    let username = username
        .filter(|u| !u.trim().is_empty())
        .or_else(|| env_var(env, "DOCKERHUB_USERNAME"))
        .ok_or(CredentialError::MissingUsername)?;
    Ok(Some(Credentials {
        username: username.trim().to_owned(),
        secret,
        source: CredentialSource::TokenStdin,
    }))
}

/// A set, non-blank environment variable, trimmed.
fn env_var(env: &dyn Fn(&str) -> Option<OsString>, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.to_string_lossy().trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The credentials to sign in to `origin` with: the `explicit` ones (see [`explicit`]) if
/// given, else, for Docker Hub's own origin only ([`found_credentials_apply`]),
/// `DOCKERHUB_USERNAME` + `DOCKERHUB_TOKEN`, then docker's `config.json` (in `$DOCKER_CONFIG`,
/// else `~/.docker`). `None` means anonymous. Logs at info which source it used, or which found
/// credentials it leaves unused; never the secret.
pub fn discover(
    explicit: Option<Credentials>,
    origin: &str,
) -> Result<Option<Credentials>, CredentialError> {
    discover_in(&|name| std::env::var_os(name), explicit, origin)
}

/// [`discover`] with the environment given as a lookup function.
fn discover_in(
    env: &dyn Fn(&str) -> Option<OsString>,
    explicit: Option<Credentials>,
    origin: &str,
) -> Result<Option<Credentials>, CredentialError> {
    let var = |name: &str| env_var(env, name);
    let found = if explicit.is_some() {
        explicit
    } else if !found_credentials_apply(origin) {
        // Nothing is read from a helper or decoded: these are not for this host.
        let mut unused = Vec::new();
        if var("DOCKERHUB_TOKEN").is_some() {
            unused.push("DOCKERHUB_USERNAME/DOCKERHUB_TOKEN".to_owned());
        }
        if let Some(path) = docker_config_dir(env)
            .map(|dir| dir.join("config.json"))
            .filter(|path| mentions_hub(path))
        {
            unused.push(path.display().to_string());
        }
        if !unused.is_empty() {
            tracing::info!(
                "not signing in to {origin} with the credentials in {}: they are for Docker Hub ({DOCKER_HUB_ORIGIN}) only; pipe a token to --token-stdin to sign in to {origin}",
                unused.join(" and ")
            );
        }
        None
    } else if let Some(token) = var("DOCKERHUB_TOKEN") {
        let username = var("DOCKERHUB_USERNAME").ok_or(CredentialError::TokenWithoutUsername)?;
        Some(Credentials {
            username,
            secret: Secret::new(token),
            source: CredentialSource::Environment,
        })
    } else {
        docker_config_dir(env).and_then(|dir| from_docker_config(&dir))
    };
    match &found {
        Some(c) => tracing::info!(
            "signing in to {origin} as {} with credentials from {}",
            c.username,
            c.source
        ),
        None if found_credentials_apply(origin) => tracing::info!(
            "no Docker Hub credentials found (--token-stdin, DOCKERHUB_USERNAME/DOCKERHUB_TOKEN, docker config.json); crawling anonymously"
        ),
        None => tracing::info!("crawling {origin} anonymously (only --token-stdin signs in to it)"),
    }
    Ok(found)
}

/// Whether the docker `config.json` at `path` holds (or names a helper for) Docker Hub
/// credentials; read without running any helper, for the log line that says they are unused.
fn mentions_hub(path: &Path) -> bool {
    let Ok(text) = std::fs::read(path) else {
        return false;
    };
    let Ok(config) = serde_json::from_slice::<DockerConfig>(&text) else {
        return false;
    };
    hub_entries(&config).next().is_some()
        || config.cred_helpers.keys().any(|k| hub_key(k).is_some())
}

/// docker's configuration folder: `$DOCKER_CONFIG`, else `~/.docker`.
fn docker_config_dir(env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    set("DOCKER_CONFIG").or_else(|| {
        set("HOME")
            .or_else(|| set("USERPROFILE"))
            .map(|home| home.join(".docker"))
    })
}

/// The parts of docker's `config.json` that hold credentials.
#[derive(Debug, Default, serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(rename = "credsStore", default)]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: BTreeMap<String, String>,
}

/// One `auths` entry: `auth` is base64 of `user:secret`; old files split it in two fields.
#[derive(Debug, Default, serde::Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// What a credential helper prints for `get`.
#[derive(serde::Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Docker Hub credentials from `dir/config.json`, the way docker resolves them: a credential
/// helper for Hub (`credHelpers`) or the default store (`credsStore`) first, then the inline
/// `auths` entry. A missing file means none; a broken file or a failing helper is warned about
/// and skipped, since an anonymous crawl still works.
pub fn from_docker_config(dir: &Path) -> Option<Credentials> {
    let path = dir.join("config.json");
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            tracing::warn!("cannot read {}: {err}; not using it", path.display());
            return None;
        }
    };
    let config: DockerConfig = match serde_json::from_slice(&text) {
        Ok(config) => config,
        Err(err) => {
            // serde_json's message names a position, never the content.
            tracing::warn!("{} is not valid JSON ({err}); not using it", path.display());
            return None;
        }
    };
    let helper = HUB_KEYS
        .iter()
        .find_map(|key| {
            config
                .cred_helpers
                .iter()
                .find(|(k, _)| hub_key(k) == Some(key))
                .map(|(k, helper)| (helper.clone(), vec![k.clone()]))
        })
        .or_else(|| {
            // A store keeps an empty `auths` entry for each server signed in to; ask for those.
            let store = config.creds_store.clone().filter(|s| !s.is_empty())?;
            let mut servers: Vec<String> = hub_entries(&config).map(|(k, _)| k.clone()).collect();
            if servers.is_empty() {
                servers.push(HUB_KEYS[0].to_owned());
            }
            Some((store, servers))
        });
    if let Some((helper, servers)) = helper {
        for server in &servers {
            match run_helper(&helper, server) {
                Ok(Some((username, secret))) => {
                    return Some(Credentials {
                        username,
                        secret,
                        source: CredentialSource::CredentialHelper {
                            helper,
                            config: path,
                        },
                    });
                }
                Ok(None) => {}
                Err(why) => {
                    tracing::warn!(
                        "docker-credential-{helper} (from {}): {why}",
                        path.display()
                    );
                    break;
                }
            }
        }
    }
    hub_entries(&config).find_map(|(key, entry)| {
        let (username, secret) = match (&entry.auth, &entry.username, &entry.password) {
            (Some(auth), _, _) if !auth.trim().is_empty() => {
                let decoded = base64_decode(auth.trim())
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .and_then(|text| {
                        let (user, secret) = text.split_once(':')?;
                        Some((user.to_owned(), Secret::new(secret)))
                    });
                match decoded {
                    Some(pair) => pair,
                    None => {
                        tracing::warn!(
                            "{}: the `auth` of {key} is not base64 of user:secret; not using it",
                            path.display()
                        );
                        return None;
                    }
                }
            }
            (_, Some(user), Some(password)) => (user.clone(), Secret::new(password.clone())),
            _ => return None,
        };
        (!username.is_empty() && !secret.expose().is_empty()).then(|| Credentials {
            username,
            secret,
            source: CredentialSource::DockerConfig(path.clone()),
        })
    })
}

/// The `auths` entries for Docker Hub, preferred key first.
fn hub_entries(config: &DockerConfig) -> impl Iterator<Item = (&String, &AuthEntry)> {
    HUB_KEYS.iter().flat_map(|want| {
        config
            .auths
            .iter()
            .filter(move |(key, _)| hub_key(key) == Some(want))
    })
}

/// Which of [`HUB_KEYS`] a config key means: docker writes them with or without scheme, `/v1/`
/// and trailing slash.
fn hub_key(key: &str) -> Option<&'static &'static str> {
    let host = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" => Some(&HUB_KEYS[0]),
        "docker.io" => Some(&HUB_KEYS[2]),
        "registry-1.docker.io" => Some(&HUB_KEYS[3]),
        _ => None,
    }
}

/// Runs `docker-credential-<helper> get` with `server` on standard input. `Ok(None)` when the
/// helper has no credentials for it.
fn run_helper(helper: &str, server: &str) -> Result<Option<(String, Secret)>, String> {
    // The name comes from a file; it must not be able to name a path.
    if helper.is_empty()
        || !helper
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(format!("{helper:?} is not a credential helper name"));
    }
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run {program}: {err}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its exit status below.
        let _ = stdin.write_all(server.as_bytes());
    }
    // Read the pipes on threads so a chatty helper cannot block on a full pipe while we wait.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(MAX_SIGN_IN_BODY as u64).read_to_end(&mut out);
            }
            out
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + HELPER_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} did not answer within {}s",
                    HELPER_TIMEOUT.as_secs()
                ));
            }
            Err(err) => return Err(format!("waiting for {program}: {err}")),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        // Helpers say "credentials not found in native keychain" (on stdout) when they have none.
        let said = String::from_utf8_lossy(if stdout.is_empty() { &stderr } else { &stdout })
            .trim()
            .chars()
            .take(200)
            .collect::<String>();
        if said.to_ascii_lowercase().contains("credentials not found") {
            tracing::debug!("{program} has no credentials for {server}");
            return Ok(None);
        }
        return Err(format!("{program} get failed ({status}): {said}"));
    }
    let answer: HelperAnswer = serde_json::from_slice(&stdout)
        .map_err(|_| format!("{program} get printed no {{\"Username\",\"Secret\"}} object"))?;
    if answer.username == "<token>" {
        // An identity token is for the registry's OAuth flow; Hub's API does not take it.
        tracing::warn!(
            "{program} holds an identity token for {server}, which Docker Hub's API does not accept; not using it"
        );
        return Ok(None);
    }
    if answer.username.is_empty() || answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some((answer.username, Secret::new(answer.secret))))
}

/// Decodes base64, standard or URL-safe alphabet, padding optional (JWTs leave it out).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in text.trim_end_matches('=').as_bytes() {
        let value = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Six bits left over means one dangling character: no encoder writes that.
    (bits < 6).then_some(out)
}

/// How long a token lives, from the `exp` claim of its JWT payload, if it has one that lies ahead.
fn jwt_lifetime(token: &str, now: SystemTime) -> Option<Duration> {
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<f64>,
    }
    let payload = token.split('.').nth(1)?;
    let claims: Claims = serde_json::from_slice(&base64_decode(payload)?).ok()?;
    let exp = claims.exp.filter(|e| e.is_finite() && *e > 0.0)?;
    let expires = SystemTime::UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(exp).ok()?)?;
    expires.duration_since(now).ok().filter(|d| !d.is_zero())
}

/// When to renew a token that lives `lifetime`: [`RENEW_EARLY`] before it expires, or halfway
/// through for one that lives less than twice that (renewing at once would sign in for every
/// request).
fn renew_after(lifetime: Duration) -> Duration {
    lifetime - RENEW_EARLY.min(lifetime / 2)
}

/// Why signing in failed. Both print `sign-in to <hub> as <user> failed: <why>`.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Hub refused the credentials (or answered the sign-in with another client error).
    #[error("sign-in to {hub} as {user} failed: {message}")]
    Rejected {
        /// The Hub origin.
        hub: String,
        /// The user name.
        user: String,
        /// Hub's message, or the status.
        message: String,
    },
    /// Hub refused the credentials or a token earlier in this process; nothing was sent.
    #[error("{0}")]
    Refused(String),
    /// Hub could not be reached, or kept failing, after the retries.
    #[error("sign-in to {hub} as {user} failed: {message}")]
    Unreachable {
        /// The Hub origin.
        hub: String,
        /// The user name.
        user: String,
        /// What failed.
        message: String,
    },
}

/// The token in use and when it must be renewed.
struct Token {
    /// `Bearer <token>`, marked sensitive.
    header: HeaderValue,
    /// Renew from this instant on.
    renew_at: Instant,
    /// Hub stops accepting it at about this instant.
    expires_at: Instant,
}

#[derive(Default)]
struct TokenState {
    token: Option<Token>,
    /// `/v2/auth/token` answered 404 or 405: use `/v2/users/login` from now on.
    legacy_login: bool,
}

/// The sign-in state of one Hub origin: its credentials (if any) and the current token.
pub struct HubAuth {
    origin: Origin,
    api: HubApi,
    credentials: Option<Credentials>,
    /// The same retrying, paced stack as the crawl's, without this module's middleware.
    client: ClientWithMiddleware,
    stats: Arc<NetStats>,
    /// Held while a token is fetched, so concurrent requests wait for one sign-in, not start many.
    state: tokio::sync::Mutex<TokenState>,
    signed_in: AtomicBool,
    /// Set once Hub refused the credentials or a freshly renewed token: why the crawl stops.
    /// From then on no request is sent and no sign-in is tried.
    refused: OnceLock<String>,
    /// The token signed in for after Hub answered 401 to the one before, until Hub accepts it
    /// once. A 401 to it means a renewal does not help: the crawl stops instead of signing in
    /// again (a token that expires after working is renewed as usual).
    probation: std::sync::Mutex<Option<HeaderValue>>,
}

impl fmt::Debug for HubAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubAuth")
            .field("hub", &self.api.origin())
            .field("user", &self.credentials.as_ref().map(|c| &c.username))
            .field("signed_in", &self.signed_in())
            .finish_non_exhaustive()
    }
}

/// What a sign-in answered.
enum Answer {
    Token(Secret),
    /// 404 or 405: the endpoint does not exist here.
    Missing,
}

impl HubAuth {
    /// The sign-in state for `api`'s origin; `client` sends the sign-in requests.
    pub(super) fn new(
        api: &HubApi,
        credentials: Option<Credentials>,
        client: ClientWithMiddleware,
        stats: Arc<NetStats>,
    ) -> Self {
        let origin = Url::parse(&api.origin())
            .expect("a validated Hub origin parses")
            .origin();
        Self {
            origin,
            api: api.clone(),
            credentials,
            client,
            stats,
            state: tokio::sync::Mutex::new(TokenState::default()),
            signed_in: AtomicBool::new(false),
            refused: OnceLock::new(),
            probation: std::sync::Mutex::new(None),
        }
    }

    /// Whether a sign-in succeeded, so requests carry a token.
    pub fn signed_in(&self) -> bool {
        self.signed_in.load(Ordering::Relaxed)
    }

    /// Signs in now, if there are credentials; without them there is nothing to do.
    pub async fn sign_in(&self) -> Result<(), SignInError> {
        let Some(credentials) = &self.credentials else {
            return Ok(());
        };
        let mut state = self.state.lock().await;
        self.renew(credentials, &mut state).await?;
        Ok(())
    }

    /// Why signing in is over for this process (Hub refused the credentials, or a token it had
    /// just issued after a 401), if it is.
    pub fn refused(&self) -> Option<String> {
        self.refused.get().cloned()
    }

    /// Records that Hub refused what we signed in with; the first reason given stays.
    fn refuse(&self, why: String) -> String {
        self.refused.get_or_init(|| why).clone()
    }

    /// Whether `url` is on the Hub origin: the only place a token may go.
    pub fn applies_to(&self, url: &Url) -> bool {
        url.origin() == self.origin
    }

    /// The `Authorization` value for a request to `url`, renewing the token when it is due;
    /// `None` for anonymous clients and for any other origin.
    async fn header_for(&self, url: &Url) -> Result<Option<HeaderValue>, SignInError> {
        let Some(credentials) = &self.credentials else {
            return Ok(None);
        };
        if !self.applies_to(url) {
            return Ok(None);
        }
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if let Some(token) = &state.token
            && now < token.renew_at
        {
            return Ok(Some(token.header.clone()));
        }
        match self.renew(credentials, &mut state).await {
            Ok(header) => Ok(Some(header)),
            // Refused credentials are final: no token, old or new, is worth sending.
            Err(err @ SignInError::Rejected { .. }) => Err(err),
            Err(err) => match state.token.as_mut() {
                // Renewal is early on purpose: the old token still works for a while.
                Some(token) if now < token.expires_at => {
                    tracing::warn!("{err}; using the current token a little longer");
                    token.renew_at = now + RENEW_BACKOFF;
                    Ok(Some(token.header.clone()))
                }
                _ => Err(err),
            },
        }
    }

    /// After Hub answered 401 to `rejected`: the token another request got meanwhile, if there
    /// is one (`false`), else a new one (`true`).
    async fn renew_rejected(
        &self,
        rejected: &HeaderValue,
    ) -> Result<(HeaderValue, bool), SignInError> {
        let credentials = self
            .credentials
            .as_ref()
            .expect("only requests that carried a token are renewed");
        let mut state = self.state.lock().await;
        if let Some(why) = self.refused() {
            return Err(SignInError::Refused(why));
        }
        if let Some(token) = &state.token
            && token.header != *rejected
        {
            return Ok((token.header.clone(), false));
        }
        if self.probation().as_ref() == Some(rejected) {
            return Err(SignInError::Refused(self.refuse(format!(
                "{} answered 401 to a token it had just issued to {}, after a 401 to the one before: it no longer accepts this user's tokens",
                self.api.origin(),
                credentials.username
            ))));
        }
        tracing::info!("Docker Hub no longer accepts the token (expired early?); signing in again");
        let header = self.renew(credentials, &mut state).await?;
        *self.probation() = Some(header.clone());
        Ok((header, true))
    }

    /// Hub answered `header` with something other than 401: it is not on probation any more.
    fn accepted(&self, header: &HeaderValue) {
        let mut probation = self.probation();
        if probation.as_ref() == Some(header) {
            *probation = None;
        }
    }

    fn probation(&self) -> std::sync::MutexGuard<'_, Option<HeaderValue>> {
        // Plain data: a panic elsewhere cannot leave it half-written.
        self.probation.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signs in and stores the new token; the caller holds the state lock. Hub's refusal is
    /// final: it is recorded ([`HubAuth::refused`]) and no sign-in is tried after it.
    async fn renew(
        &self,
        credentials: &Credentials,
        state: &mut TokenState,
    ) -> Result<HeaderValue, SignInError> {
        if let Some(why) = self.refused() {
            return Err(SignInError::Refused(why));
        }
        let result = self.sign_in_once(credentials, state).await;
        if let Err(err @ SignInError::Rejected { .. }) = &result {
            self.refuse(err.to_string());
        }
        result
    }

    /// One sign-in (the legacy endpoint after a 404/405 of the modern one).
    async fn sign_in_once(
        &self,
        credentials: &Credentials,
        state: &mut TokenState,
    ) -> Result<HeaderValue, SignInError> {
        let hub = self.api.origin();
        let user = credentials.username.clone();
        let rejected = |message: String| SignInError::Rejected {
            hub: hub.clone(),
            user: user.clone(),
            message,
        };
        let modern = self.url(&["v2", "auth", "token"]);
        let legacy = self.url(&["v2", "users", "login"]);
        let body = |user_key: &str, secret_key: &str| {
            serde_json::json!({ user_key: credentials.username, secret_key: credentials.secret.expose() })
                .to_string()
        };
        let mut answer = Answer::Missing;
        if !state.legacy_login {
            answer = self
                .post(&modern, body("identifier", "secret"), "access_token")
                .await?;
            if matches!(answer, Answer::Missing) {
                tracing::info!(
                    "{hub} has no /v2/auth/token; signing in with /v2/users/login instead"
                );
                state.legacy_login = true;
            }
        }
        if state.legacy_login {
            answer = self
                .post(&legacy, body("username", "password"), "token")
                .await?;
        }
        let token = match answer {
            Answer::Token(token) => token,
            Answer::Missing => {
                return Err(rejected(format!(
                    "{hub} offers neither /v2/auth/token nor /v2/users/login (is --hub-url a Docker Hub API?)"
                )));
            }
        };
        let mut header = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| rejected("Hub's token is not a valid header value".to_owned()))?;
        header.set_sensitive(true);
        let now = Instant::now();
        let lifetime = jwt_lifetime(token.expose(), SystemTime::now()).unwrap_or_else(|| {
            tracing::debug!(
                "the token's expiry is unreadable; assuming {}s",
                DEFAULT_TOKEN_LIFETIME.as_secs()
            );
            DEFAULT_TOKEN_LIFETIME
        });
        state.token = Some(Token {
            header: header.clone(),
            renew_at: now + renew_after(lifetime),
            expires_at: now + lifetime,
        });
        if !self.signed_in.swap(true, Ordering::Relaxed) {
            tracing::info!("signed in to {hub} as {user}");
        } else {
            tracing::debug!("renewed the Docker Hub token of {user}");
        }
        Ok(header)
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = Url::parse(&self.api.origin()).expect("a validated Hub origin parses");
        url.path_segments_mut()
            .expect("an http(s) origin has a path")
            .clear()
            .extend(segments);
        url
    }

    /// POSTs one sign-in request and reads the token from `token_key` of the answer.
    async fn post(&self, url: &Url, body: String, token_key: &str) -> Result<Answer, SignInError> {
        let credentials = self.credentials.as_ref().expect("signing in needs them");
        let hub = self.api.origin();
        let fail = |transient: bool, message: String| {
            // Nothing Hub or the network says may carry the secret on to a log.
            let message = message.replace(credentials.secret.expose(), "[redacted]");
            let (hub, user) = (hub.clone(), credentials.username.clone());
            if transient {
                SignInError::Unreachable { hub, user, message }
            } else {
                SignInError::Rejected { hub, user, message }
            }
        };
        let mut rate_limited = 0;
        loop {
            self.stats.fetches.fetch_add(1, Ordering::Relaxed);
            let response = self
                .client
                .post(url.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(http::header::ACCEPT, "application/json")
                .body(body.clone())
                .send()
                .await
                .map_err(|err| fail(true, error_chain(&err)))?;
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS && rate_limited < MAX_SIGN_IN_429S {
                // The pacer has paused everyone; the next attempt waits for that pause.
                rate_limited += 1;
                continue;
            }
            if matches!(
                status,
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            ) {
                return Ok(Answer::Missing);
            }
            let body = read_capped(response)
                .await
                .map_err(|err| fail(true, error_chain(&err)))?;
            if !status.is_success() {
                let message = super::hub_message(&body).unwrap_or_else(|| status.to_string());
                let transient = status.is_server_error()
                    || status == StatusCode::REQUEST_TIMEOUT
                    || status == StatusCode::TOO_MANY_REQUESTS;
                return Err(fail(transient, message));
            }
            let token = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get(token_key)?.as_str().map(Secret::new))
                .filter(|t| !t.expose().is_empty());
            return match token {
                Some(token) => Ok(Answer::Token(token)),
                None => Err(fail(
                    false,
                    format!("{url} answered {status} without a {token_key:?}"),
                )),
            };
        }
    }
}

/// Reads a sign-in answer, refusing one larger than any token answer could be.
async fn read_capped(mut response: Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_SIGN_IN_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room < chunk.len() {
            break;
        }
    }
    Ok(body)
}

/// Adds `Authorization: Bearer` to each request for the Hub origin. When Hub answers 401 to the
/// token (it expired early, or while the request waited for the pacer), the request goes again
/// with a renewed token: one sign-in at most per refused token, shared with concurrent requests.
/// A sign-in Hub refuses, or a 401 to the renewed token before Hub accepted it once, is final:
/// the request fails, and so does every later one, without another sign-in
/// ([`HubAuth::refused`] says why).
pub struct AuthMiddleware {
    auth: Arc<HubAuth>,
}

impl AuthMiddleware {
    /// The middleware for `auth`'s origin.
    pub fn new(auth: Arc<HubAuth>) -> Self {
        Self { auth }
    }

    async fn send<'a>(
        &'a self,
        mut req: Request,
        extensions: &'a mut Extensions,
        next: Next<'a>,
    ) -> reqwest_middleware::Result<Response> {
        if let Some(why) = self.auth.refused()
            && self.auth.applies_to(req.url())
        {
            return Err(reqwest_middleware::Error::Middleware(anyhow::anyhow!(why)));
        }
        let header = match self.auth.header_for(req.url()).await {
            Ok(Some(header)) => header,
            Ok(None) => return next.run(req, extensions).await,
            Err(err) => return Err(reqwest_middleware::Error::Middleware(err.into())),
        };
        req.headers_mut().insert(AUTHORIZATION, header.clone());
        let response = next.run(req, extensions).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            self.auth.accepted(&header);
            return Ok(response);
        }
        // Renew the token (or take the one another request got meanwhile); the retry
        // middleware classifies the 401 as transient and sends the request again, through the
        // pacer and this middleware, with the new token.
        tracing::debug!("{} answered 401 to the Docker Hub token", response.url());
        match self.auth.renew_rejected(&header).await {
            Ok(_) => Ok(response),
            Err(err @ (SignInError::Rejected { .. } | SignInError::Refused(_))) => {
                Err(reqwest_middleware::Error::Middleware(err.into()))
            }
            Err(err) => {
                // Hub could not be reached for it: the retries may find it back.
                tracing::warn!("{err}");
                Ok(response)
            }
        }
    }
}

#[async_trait::async_trait]
impl Middleware for AuthMiddleware {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.send(req, extensions, next).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let map: BTreeMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("digestmap-auth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("dckr_pat_topsecret");
        assert_eq!(format!("{secret} {secret:?}"), "[redacted] [redacted]");
        let credentials = Credentials {
            username: "me".into(),
            secret,
            source: CredentialSource::Environment,
        };
        assert!(!format!("{credentials:?}").contains("topsecret"));
    }

    #[test]
    fn base64_both_alphabets() {
        assert_eq!(base64_decode("bWU6czNjcmV0").unwrap(), b"me:s3cret");
        assert_eq!(base64_decode("bWU6czNjcmV0YQ==").unwrap(), b"me:s3creta");
        assert_eq!(base64_decode("bWU6czNjcmV0YQ").unwrap(), b"me:s3creta");
        assert_eq!(
            base64_decode("-_-_").unwrap(),
            base64_decode("+/+/").unwrap()
        );
        assert!(base64_decode("bWU6c").is_none());
        assert!(base64_decode("bW U6").is_none());
    }

    #[test]
    fn token_lifetime_from_jwt() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        // {"exp":1000300}, unpadded base64url, as JWTs have it.
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjEwMDAzMDB9.sig";
        assert_eq!(jwt_lifetime(token, now), Some(Duration::from_secs(300)));
        // {"exp":999000}: already past by our clock.
        assert_eq!(jwt_lifetime("h.eyJleHAiOjk5OTAwMH0.s", now), None);
        assert_eq!(jwt_lifetime("opaque-token", now), None);
        assert_eq!(jwt_lifetime("a.0123456789abcdef.b", now), None);
    }

    #[test]
    fn renewal_is_a_minute_early_or_halfway() {
        assert_eq!(
            renew_after(DEFAULT_TOKEN_LIFETIME),
            Duration::from_secs(540)
        );
        assert_eq!(
            renew_after(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn precedence_stdin_then_env_then_config() {
        let dir = temp_dir("precedence");
        std::fs::write(
            dir.join("config.json"),
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"ZmlsZXVzZXI6ZmlsZXNlY3JldA=="}}}"#,
        )
        .unwrap();
        let dir_text = dir.to_str().unwrap();
        let env = env_of(&[
            ("DOCKERHUB_USERNAME", "envuser"),
            ("DOCKERHUB_TOKEN", "envtoken"),
            ("DOCKER_CONFIG", dir_text),
        ]);
        let stdin = find(&env, Some(Secret::new("piped")), None, HUB)
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                stdin.username.as_str(),
                stdin.secret.expose(),
                &stdin.source
            ),
            ("envuser", "piped", &CredentialSource::TokenStdin)
        );
        let flag = find(
            &env,
            Some(Secret::new("piped")),
            Some("flaguser".into()),
            HUB,
        )
        .unwrap()
        .unwrap();
        assert_eq!(flag.username, "flaguser");
        let from_env = find(&env, None, None, HUB).unwrap().unwrap();
        assert_eq!(
            (from_env.username.as_str(), from_env.secret.expose()),
            ("envuser", "envtoken")
        );
        let file_only = env_of(&[("DOCKER_CONFIG", dir_text)]);
        let from_file = find(&file_only, None, None, HUB).unwrap().unwrap();
        assert_eq!(
            (from_file.username.as_str(), from_file.secret.expose()),
            ("fileuser", "filesecret")
        );
        assert_eq!(
            from_file.source,
            CredentialSource::DockerConfig(dir.join("config.json"))
        );
        let home = env_of(&[("HOME", "/nonexistent-digestmap-home")]);
        assert!(find(&home, None, None, HUB).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    const HUB: &str = DOCKER_HUB_ORIGIN;

    /// [`explicit_in`] then [`discover_in`], as `crawl` calls them.
    fn find(
        env: &dyn Fn(&str) -> Option<OsString>,
        stdin_token: Option<Secret>,
        username: Option<String>,
        origin: &str,
    ) -> Result<Option<Credentials>, CredentialError> {
        let explicit = explicit_in(env, stdin_token, username)?;
        discover_in(env, explicit, origin)
    }

    #[test]
    fn found_credentials_are_for_docker_hub_only() {
        for (origin, applies) in [
            ("https://hub.docker.com", true),
            ("https://hub.docker.com:443", true),
            ("https://HUB.Docker.com/", true),
            ("http://hub.docker.com", false),
            ("https://hub.docker.com:8443", false),
            ("https://hub.docker.com.evil.example", false),
            ("https://mirror.example", false),
            ("http://127.0.0.1:8080", false),
            ("not a url", false),
        ] {
            assert_eq!(found_credentials_apply(origin), applies, "{origin}");
        }
        assert_eq!(DOCKER_HUB_ORIGIN, crate::crawl::DEFAULT_HUB_URL);

        let dir = temp_dir("elsewhere");
        std::fs::write(
            dir.join("config.json"),
            r#"{"auths":{"docker.io":{"auth":"ZmlsZXVzZXI6ZmlsZXNlY3JldA=="}}}"#,
        )
        .unwrap();
        assert!(mentions_hub(&dir.join("config.json")));
        let env = env_of(&[
            ("DOCKERHUB_USERNAME", "envuser"),
            ("DOCKERHUB_TOKEN", "envtoken"),
            ("DOCKER_CONFIG", dir.to_str().unwrap()),
        ]);
        let mirror = "https://mirror.example";
        assert!(find(&env, None, None, mirror).unwrap().is_none());
        assert!(find(&env, None, None, HUB).unwrap().is_some());
        // Half-given environment credentials do not matter where they are not used.
        let token_only = env_of(&[("DOCKERHUB_TOKEN", "t")]);
        assert!(find(&token_only, None, None, mirror).unwrap().is_none());
        // An explicit token signs in anywhere.
        let piped = find(&env, Some(Secret::new("piped")), None, mirror)
            .unwrap()
            .unwrap();
        assert_eq!(piped.source, CredentialSource::TokenStdin);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn half_given_credentials_are_usage_errors() {
        let none = env_of(&[("HOME", "/nonexistent-digestmap-home")]);
        assert!(matches!(
            find(&none, Some(Secret::new("t")), None, HUB),
            Err(CredentialError::MissingUsername)
        ));
        let token_only = env_of(&[("DOCKERHUB_TOKEN", "t")]);
        assert!(matches!(
            find(&token_only, None, None, HUB),
            Err(CredentialError::TokenWithoutUsername)
        ));
        assert!(matches!(
            read_token(&b" \n"[..]),
            Err(CredentialError::EmptyToken)
        ));
        assert_eq!(read_token(&b"tok\r\n"[..]).unwrap().expose(), "tok");
    }

    #[test]
    fn config_keys_and_entry_forms() {
        let dir = temp_dir("keys");
        let write = |text: &str| std::fs::write(dir.join("config.json"), text).unwrap();
        // Other registries are ignored; a split username/password entry is read.
        write(
            r#"{"auths":{"ghcr.io":{"auth":"eDp5"},"docker.io":{"username":"u","password":"p"}}}"#,
        );
        let found = from_docker_config(&dir).unwrap();
        assert_eq!((found.username.as_str(), found.secret.expose()), ("u", "p"));
        // The documented key wins over the others; its secret may hold colons.
        write(
            r#"{"auths":{"registry-1.docker.io":{"auth":"YTpi"},"https://index.docker.io/v1":{"auth":"bWU6czo6Mw=="}}}"#,
        );
        let found = from_docker_config(&dir).unwrap();
        assert_eq!(
            (found.username.as_str(), found.secret.expose()),
            ("me", "s::3")
        );
        for text in [
            r#"{"auths":{"ghcr.io":{"auth":"eDp5"}}}"#,
            r#"{"auths":{"docker.io":{}}}"#,
            r#"{"auths":{"docker.io":{"auth":"not base64!"}}}"#,
            "not json",
        ] {
            write(text);
            assert!(from_docker_config(&dir).is_none(), "{text}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn helper_names_cannot_be_paths() {
        for name in ["../../bin/sh", "", "a b", "x/y"] {
            assert!(run_helper(name, HUB_KEYS[0]).is_err(), "{name}");
        }
    }

    #[test]
    fn tokens_go_to_the_hub_origin_only() {
        let api = HubApi::new("https://hub.docker.com").unwrap();
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build();
        let auth = HubAuth::new(&api, None, client, Arc::default());
        let yes = |u: &str| auth.applies_to(&Url::parse(u).unwrap());
        assert!(yes(
            "https://hub.docker.com/v2/namespaces/library/repositories"
        ));
        assert!(yes("https://hub.docker.com:443/v2/x"));
        for other in [
            "http://hub.docker.com/v2/x",
            "https://hub.docker.com:8443/v2/x",
            "https://hub.docker.com.evil.example/v2/x",
            "https://registry-1.docker.io/v2/",
        ] {
            assert!(!yes(other), "{other}");
        }
        assert!(!auth.signed_in());
    }
}

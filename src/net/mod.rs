//! The HTTP client stack every Hub request goes through.
//!
//! From the outside in: reqwest-retry's middleware (bounded exponential backoff for transient
//! failures, classified in [`retry`]), then the sign-in middleware ([`auth`]: the current token
//! on each attempt to the Hub origin, a new one after a 401), then the pacing middleware (one
//! [`Pacer::ready`] before each attempt, one [`Pacer::observe`] after), then reqwest itself with
//! timeouts and a redirect policy that refuses to leave the Hub origin. Retries sit outside pacing
//! so that every attempt, sign-in requests included, is paced.
//! Bodies are read here with a size cap, so no answer can make the crawler hold more than
//! [`NetConfig::max_body`] bytes.

pub mod auth;
pub mod pace;
pub mod retry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response, StatusCode};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use url::Url;

use crate::hub::HubApi;
pub use pace::{Pacer, Refusal};

/// Limits and timeouts of the client.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Largest body accepted; a bigger one fails its job.
    pub max_body: usize,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one whole request, body included: bounds slow-loris answers.
    pub request_timeout: Duration,
    /// Retries of a transient failure before the job itself fails.
    pub max_retries: u32,
    /// Shortest and longest backoff between retries.
    pub backoff: (Duration, Duration),
    /// Longest pause a rate-limit header or a stored pause may impose; at most (and by default)
    /// [`pace::MAX_PAUSE`].
    pub max_pause: Duration,
    /// Longest stretch of nothing but 429 answers before the run stops; at most (and by default)
    /// [`pace::MAX_REFUSAL`].
    pub max_refusal: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            // A page of 100 multi-platform tags is well under 1 MiB.
            max_body: 16 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_retries: 4,
            backoff: (Duration::from_millis(250), Duration::from_secs(20)),
            max_pause: pace::MAX_PAUSE,
            max_refusal: pace::MAX_REFUSAL,
        }
    }
}

/// Counters of the network layer.
#[derive(Debug, Default)]
pub struct NetStats {
    /// Requests sent (every attempt).
    pub requests: AtomicU64,
    /// Fetches asked for (one per job attempt or sign-in); `requests - fetches` are retries.
    pub fetches: AtomicU64,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The network failed, after the retries.
    #[error("request to {url} failed: {message}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What failed, with its causes.
        message: String,
        /// Whether trying the job again later may help.
        transient: bool,
    },
    /// Hub answered with an error status.
    #[error("{url} answered {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        /// The URL requested.
        url: String,
        /// The status.
        status: StatusCode,
        /// Hub's `message` or `detail`, if the body had one.
        message: Option<String>,
    },
    /// Hub answered 429: the pacer has paused everyone.
    #[error("{url} answered 429 Too Many Requests")]
    RateLimited {
        /// The URL requested.
        url: String,
    },
    /// The body exceeded the cap.
    #[error("the answer of {url} exceeds {limit} bytes; refusing to read more")]
    TooLarge {
        /// The URL requested.
        url: String,
        /// The cap.
        limit: usize,
    },
}

impl FetchError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { transient, .. } => *transient,
            Self::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::REQUEST_TIMEOUT
            }
            Self::RateLimited { .. } => true,
            Self::TooLarge { .. } => false,
        }
    }
}

/// Counts the requests (retries included) made for one fetch, so a job can say what it cost.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(pub Arc<AtomicU64>);

impl RequestCounter {
    /// Requests counted so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The paced, retrying HTTP client for one Hub origin.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: ClientWithMiddleware,
    stats: Arc<NetStats>,
    max_body: usize,
    auth: Arc<auth::HubAuth>,
}

/// One [`Pacer::ready`] before each attempt and one [`Pacer::observe`] after, counting every
/// request in [`NetStats`] (and in the request's [`RequestCounter`], if it has one).
pub struct PacingMiddleware {
    pacer: Arc<Pacer>,
    stats: Arc<NetStats>,
}

impl PacingMiddleware {
    /// Paces through `pacer`, counts into `stats`.
    pub fn new(pacer: Arc<Pacer>, stats: Arc<NetStats>) -> Self {
        Self { pacer, stats }
    }
}

#[async_trait::async_trait]
impl Middleware for PacingMiddleware {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.pacer.ready().await;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(counter) = extensions.get::<RequestCounter>() {
            counter.0.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!("{} {}", req.method(), req.url());
        let result = next.run(req, extensions).await;
        match &result {
            // An origin is a parsed URL's ASCII form: safe to log as it is.
            Ok(response) => self.pacer.observe(
                response.status(),
                response.headers(),
                &response.url().origin().ascii_serialization(),
            ),
            Err(_) => self.pacer.abandon(),
        }
        result
    }
}

impl HttpClient {
    /// Builds the stack for `api`'s origin; with `credentials` it signs in (at
    /// [`HttpClient::sign_in`], or at the first request) and sends a token to that origin.
    pub fn new(
        api: &HubApi,
        pacer: Arc<Pacer>,
        config: &NetConfig,
        credentials: Option<auth::Credentials>,
    ) -> Result<Self, reqwest::Error> {
        let guard = api.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                attempt.error("too many redirects")
            } else if let Err(err) = guard.same_origin(attempt.url().as_str()) {
                attempt.error(err)
            } else {
                attempt.follow()
            }
        });
        let inner = reqwest::Client::builder()
            .user_agent(concat!(
                "digestmap/",
                env!("CARGO_PKG_VERSION"),
                " (Docker Hub digest crawler)"
            ))
            .redirect(redirects)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .build()?;
        let policy = ExponentialBackoff::builder()
            .retry_bounds(config.backoff.0, config.backoff.1)
            .build_with_max_retries(config.max_retries);
        let stats = Arc::new(NetStats::default());
        let pacing = || PacingMiddleware::new(pacer.clone(), stats.clone());
        // Sign-in requests take the same pacer and retries, except that a 401 is final there,
        // and not the token middleware.
        let sign_in_client = ClientBuilder::new(inner.clone())
            .with(RetryTransientMiddleware::new_with_policy_and_strategy(
                policy,
                retry::SignInRetryStrategy,
            ))
            .with(pacing())
            .build();
        let auth = Arc::new(auth::HubAuth::new(
            api,
            credentials,
            sign_in_client,
            stats.clone(),
        ));
        // The token is attached after the pacer's wait, so a long pause (a 429's Retry-After)
        // cannot make it stale in flight; after a 401 the token middleware renews it and the
        // retry middleware sends the request again, paced like any other.
        let client = ClientBuilder::new(inner)
            .with(RetryTransientMiddleware::new_with_policy_and_strategy(
                policy,
                retry::HubRetryStrategy,
            ))
            .with(pacing())
            .with(auth::AuthMiddleware::new(auth.clone()))
            .build();
        Ok(Self {
            client,
            stats,
            max_body: config.max_body,
            auth,
        })
    }

    /// Signs in now when the client has credentials, so wrong ones fail before any crawling;
    /// without credentials it does nothing.
    pub async fn sign_in(&self) -> Result<(), auth::SignInError> {
        self.auth.sign_in().await
    }

    /// Why the crawl must stop signed out, once Hub has refused the credentials (at a renewal)
    /// or a token just renewed: every later request fails at once, without signing in again.
    pub fn sign_in_refused(&self) -> Option<String> {
        self.auth.refused()
    }

    /// The client's counters.
    pub fn stats(&self) -> &Arc<NetStats> {
        &self.stats
    }

    /// GETs `url` and returns its body, read up to the size cap. Every request sent for it,
    /// retries included, is added to `counter`.
    pub async fn get(&self, url: &Url, counter: &RequestCounter) -> Result<Vec<u8>, FetchError> {
        self.stats.fetches.fetch_add(1, Ordering::Relaxed);
        let transport = |err: &dyn std::error::Error, transient: bool| FetchError::Transport {
            url: url.to_string(),
            message: error_chain(err),
            transient,
        };
        let response = match self
            .client
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .with_extension(counter.clone())
            .send()
            .await
        {
            Ok(response) => response,
            Err(reqwest_middleware::Error::Reqwest(err)) => {
                let transient = retry::classify_error(&err) == reqwest_retry::Retryable::Transient;
                return Err(transport(&err, transient));
            }
            Err(err @ reqwest_middleware::Error::Middleware(_)) => {
                // Retries exhausted (or a middleware refused): the chain says why.
                let transient = !error_chain(&err).contains("refused to follow");
                return Err(transport(&err, transient));
            }
        };
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(FetchError::RateLimited {
                url: url.to_string(),
            });
        }
        let body = read_body(response, url, self.max_body).await?;
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status,
                message: hub_message(&body),
            });
        }
        Ok(body)
    }
}

/// Reads `response`'s body, refusing (before reading, when `Content-Length` says so, else as
/// soon as it passes) any body over `max` bytes.
pub async fn read_body(
    mut response: Response,
    url: &Url,
    max: usize,
) -> Result<Vec<u8>, FetchError> {
    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
        limit: max,
    };
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(
        response
            .content_length()
            .map_or(64 * 1024, |n| n as usize)
            .min(max),
    );
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(err) => {
                return Err(FetchError::Transport {
                    url: url.to_string(),
                    message: error_chain(&err),
                    transient: true,
                });
            }
        }
    }
}

/// Hub's error bodies carry `message` (API errors) or `detail` (rate limits).
fn hub_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        message: Option<String>,
        detail: Option<String>,
    }
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    parsed
        .message
        .or(parsed.detail)
        .map(|m| m.chars().take(300).collect())
}

/// `error: cause: cause`, the way the user needs to read it.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

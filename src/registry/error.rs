//! Why a registry request failed, and the registry's own error bodies.
//!
//! Registries answer errors as `{"errors":[{"code":"MANIFEST_UNKNOWN"|"TOOMANYREQUESTS"|
//! "UNAUTHORIZED"|...,"message":...,"detail":...}]}`; the first code and message go into the
//! error, cut to 300 characters. Every error names the URL it is about.

use http::StatusCode;
use reqwest::Response;
use serde::Deserialize;

use super::budget::Spent;
use super::content::Mismatch;
use super::origin::RedirectError;
use super::paging::LinkError;
use crate::net::{FetchError, read_body};

/// Largest error body read for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

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
    /// A manifest GET answered 429 by a registry that declares a pull budget: it is spent for
    /// this window. (A registry that declares none answers a plain [`RegistryError::Status`].)
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

/// `CODE: message` of the registry's `{"errors":[...]}` body, when it has one.
pub(super) async fn registry_detail(response: Response) -> Option<String> {
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

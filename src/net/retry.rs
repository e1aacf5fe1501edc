//! Which failures the retry middleware retries, and why.
//!
//! Retried (transient): connect failures, timeouts, connections reset or closed mid-answer, and
//! 5xx and 408 answers, which say nothing about the request and often pass within seconds; and
//! 401, after which the token middleware has just renewed the token the request carried.
//! Not retried here:
//! - 429: not a failure of the request but a signal to slow down. The pacer has already paused
//!   every worker; the crawl puts the job back instead of spending retries on it.
//! - other 4xx: the request itself is wrong (a page past the end, a removed repository); asking
//!   again gives the same answer.
//! - redirect refusals and request-building errors: they come from our own rules.
//!
//! Sign-in requests ([`SignInRetryStrategy`]) differ in one point: a 401 (like a 403) is Hub's
//! answer to the credentials, final. Sending a refused token again cannot change it and can lock
//! the account, so only 5xx, 408 and network failures are retried there.

use std::error::Error as StdError;

use http::StatusCode;
use reqwest_middleware::Error;
use reqwest_retry::{Retryable, RetryableStrategy};

/// The retry classification used for every Hub request.
#[derive(Debug, Clone, Copy, Default)]
pub struct HubRetryStrategy;

impl RetryableStrategy for HubRetryStrategy {
    fn handle(&self, res: &Result<reqwest::Response, Error>) -> Option<Retryable> {
        match res {
            Ok(response) => classify_status(response.status()),
            Err(Error::Reqwest(err)) => Some(classify_error(err)),
            Err(Error::Middleware(_)) => Some(Retryable::Fatal),
        }
    }
}

/// The retry classification of sign-in requests: a 401 is final (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct SignInRetryStrategy;

impl RetryableStrategy for SignInRetryStrategy {
    fn handle(&self, res: &Result<reqwest::Response, Error>) -> Option<Retryable> {
        match res {
            Ok(response) => classify_sign_in_status(response.status()),
            other => HubRetryStrategy.handle(other),
        }
    }
}

/// [`classify_status`] for a sign-in answer: 401 is the credentials' refusal, not retried.
pub fn classify_sign_in_status(status: StatusCode) -> Option<Retryable> {
    if status == StatusCode::UNAUTHORIZED {
        Some(Retryable::Fatal)
    } else {
        classify_status(status)
    }
}

/// `None` for answers that need no retry decision (success), else the class.
pub fn classify_status(status: StatusCode) -> Option<Retryable> {
    if status.is_success() {
        None
    } else if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        // The token middleware has renewed an expired token: the next attempt carries the new one.
        || status == StatusCode::UNAUTHORIZED
    {
        Some(Retryable::Transient)
    } else {
        Some(Retryable::Fatal)
    }
}

/// Classifies a transport error by walking its source chain, since reqwest wraps hyper which wraps
/// the I/O error that says what really happened.
pub fn classify_error(err: &reqwest::Error) -> Retryable {
    if err.is_redirect() || err.is_builder() {
        return Retryable::Fatal;
    }
    if err.is_timeout() || err.is_connect() {
        return Retryable::Transient;
    }
    let mut source: Option<&(dyn StdError + 'static)> = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return match io.kind() {
                ConnectionReset | ConnectionAborted | ConnectionRefused | BrokenPipe
                | UnexpectedEof | TimedOut | Interrupted => Retryable::Transient,
                _ => Retryable::Fatal,
            };
        }
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>()
            && (hyper.is_incomplete_message() || hyper.is_canceled() || hyper.is_closed())
        {
            // The server closed the connection before or while answering.
            return Retryable::Transient;
        }
        source = cause.source();
    }
    // A request that failed in transit for a reason we cannot name: one more try is cheap.
    if err.is_request() || err.is_body() {
        Retryable::Transient
    } else {
        Retryable::Fatal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        // (status, listing, sign-in)
        let table = [
            (200, None, None),
            (401, Some(Retryable::Transient), Some(Retryable::Fatal)),
            (403, Some(Retryable::Fatal), Some(Retryable::Fatal)),
            (404, Some(Retryable::Fatal), Some(Retryable::Fatal)),
            (429, Some(Retryable::Fatal), Some(Retryable::Fatal)),
            (500, Some(Retryable::Transient), Some(Retryable::Transient)),
            (503, Some(Retryable::Transient), Some(Retryable::Transient)),
        ];
        for (code, listing, sign_in) in table {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(classify_status(status) == listing, "listing {code}");
            assert!(classify_sign_in_status(status) == sign_in, "sign-in {code}");
        }
        let table = [
            (200, None),
            (404, Some(Retryable::Fatal)),
            (401, Some(Retryable::Transient)),
            (403, Some(Retryable::Fatal)),
            (429, Some(Retryable::Fatal)),
            (408, Some(Retryable::Transient)),
            (500, Some(Retryable::Transient)),
            (502, Some(Retryable::Transient)),
            (503, Some(Retryable::Transient)),
        ];
        for (code, want) in table {
            assert!(
                classify_status(StatusCode::from_u16(code).unwrap()) == want,
                "status {code}"
            );
        }
    }
}

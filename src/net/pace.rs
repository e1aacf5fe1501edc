//! Pacing: how fast requests may start, and when they must not start at all.
//!
//! One [`Pacer`] is shared by every worker. Before each request (retries included) a worker calls
//! [`Pacer::ready`]; after each answer the pacing middleware calls [`Pacer::observe`]. Three things
//! gate a request:
//! - a governor limiter with a burst of one, so request starts are spaced by at least `1/--rps`;
//! - a shared pause set by a 429 (`Retry-After`, in seconds or as an HTTP date; a bare 429 without it
//!   doubles a backoff), so after Hub says stop no worker sends anything before the time it named;
//! - the `X-RateLimit-*` window: the pacer keeps a budget of the requests the window still allows
//!   (the latest `Remaining`, less the requests already in flight when that answer came), spends
//!   one per request, and when it is spent everyone waits for `Reset` instead of sending into a
//!   429. This is what lets `--rps` be higher than the window allows without getting 429s.
//!
//! The pause is wall-clock time so it can be stored and honoured by a resumed crawl.
//!
//! Header values are untrusted: a `Retry-After` of a billion seconds, or an `X-RateLimit-Reset`
//! past what `SystemTime` can hold, must neither panic (`SystemTime + Duration` overflows) nor
//! stop the crawl for decades. Every pause a header asks for is capped at [`MAX_PAUSE`] (the
//! window wait at [`MAX_WINDOW_WAIT`]), logged once with the header's value escaped, and all
//! arithmetic on header values is checked or saturating. A stored pause further ahead than the cap
//! cannot have come from a capped run (a changed clock, a damaged or older store): a resumed crawl
//! ignores it instead of waiting.
//!
//! Each pause is bounded, and a 429 does not count as a job attempt, so a server that refuses
//! everything would be asked again forever. The pacer therefore also bounds the whole refusal: it
//! keeps since when every answer has been a 429 (any other answer ends the stretch), and at the
//! 429 after which the stretch would outlast [`MAX_REFUSAL`] (or the shorter bound a test sets)
//! it gives up instead of pausing again: it cancels the run's stop token, which stops the run the
//! way Ctrl-C does, and keeps who refused and for how long ([`Pacer::refusal`]) for the message.
//! It decides before waiting, so no run waits past the bound: [`gives_up`].

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{HeaderMap, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::clock;

/// First backoff after a bare 429 (no `Retry-After`); doubled on each further one.
pub const BARE_429_BACKOFF: Duration = Duration::from_secs(2);
/// Ceiling of the bare-429 backoff.
pub const MAX_BARE_429_BACKOFF: Duration = Duration::from_secs(300);
/// A window reset further away than this is taken as a clock problem and capped.
pub const MAX_WINDOW_WAIT: Duration = Duration::from_secs(900);
/// Longest pause any answer can impose (a `Retry-After`, a stored pause): Hub's own limits
/// reset within minutes, so more than this is a broken or hostile header.
pub const MAX_PAUSE: Duration = Duration::from_secs(3600);
/// Longest stretch of nothing but 429 answers a run sits through before it stops: the longest
/// single pause, so one full `Retry-After` is always honoured, but not a second.
pub const MAX_REFUSAL: Duration = MAX_PAUSE;
/// Longest header value quoted in a log line.
const MAX_QUOTED: usize = 80;
/// Waiting this much past a window's reset keeps a request from landing in the old window when
/// the two clocks differ by a little.
pub const RESET_MARGIN: Duration = Duration::from_millis(50);

/// Shared pacing state of all workers.
#[derive(Debug)]
pub struct Pacer {
    limiter: DefaultDirectRateLimiter,
    state: Mutex<PauseState>,
    rate_limited: AtomicU64,
    window_waits: AtomicU64,
    /// Longest pause a header may impose.
    max_pause: Duration,
    /// Whether a capped `Retry-After` / `X-RateLimit-Reset` was logged: once each is enough.
    capped_logged: [AtomicBool; 2],
    /// Longest stretch of nothing but 429s before the pacer gives up.
    max_refusal: Duration,
    /// Cancelled when the pacer gives up, so the run stops as on Ctrl-C.
    stop: CancellationToken,
}

/// Who refused every request, and for how long, when the pacer gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The origin whose 429 ended it (`https://hub.docker.com`, a registry's).
    pub origin: String,
    /// How long every answer had been a 429 by then.
    pub lasted: Duration,
}

#[derive(Debug, Default)]
struct PauseState {
    until: Option<SystemTime>,
    bare_429s: u32,
    /// Requests started and not yet answered.
    in_flight: u32,
    /// What the current rate-limit window still allows, as far as we know.
    window: Option<Budget>,
    /// Since when every answer has been a 429.
    refused_since: Option<SystemTime>,
    /// Set once the refusal outlasted the bound.
    gave_up: Option<Refusal>,
}

#[derive(Debug, Clone, Copy)]
struct Budget {
    remaining: i64,
    reset: SystemTime,
}

/// Why `--rps` was refused.
#[derive(Debug, thiserror::Error)]
#[error("--rps must be a number greater than 0 and at most 10000, got {0}")]
pub struct RateError(pub f64);

impl Pacer {
    /// A pacer allowing `rps` request starts per second, never in bursts.
    pub fn new(rps: f64) -> Result<Self, RateError> {
        if !(rps.is_finite() && rps > 0.0 && rps <= 10_000.0) {
            return Err(RateError(rps));
        }
        let period = Duration::from_secs_f64(1.0 / rps);
        let quota = Quota::with_period(period)
            .ok_or(RateError(rps))?
            .allow_burst(NonZeroU32::MIN);
        Ok(Self {
            limiter: RateLimiter::direct(quota),
            state: Mutex::new(PauseState::default()),
            rate_limited: AtomicU64::new(0),
            window_waits: AtomicU64::new(0),
            max_pause: MAX_PAUSE,
            capped_logged: [AtomicBool::new(false), AtomicBool::new(false)],
            max_refusal: MAX_REFUSAL,
            stop: CancellationToken::new(),
        })
    }

    /// The same pacer cancelling `stop` once every answer has been a 429 for longer than
    /// `max_refusal` (at most [`MAX_REFUSAL`]; tests set less): the run watches `stop` as it
    /// watches Ctrl-C.
    pub fn with_refusal_bound(mut self, max_refusal: Duration, stop: CancellationToken) -> Self {
        self.max_refusal = max_refusal.min(MAX_REFUSAL);
        self.stop = stop;
        self
    }

    /// Who refused everything, and for how long, if the pacer gave up on that.
    pub fn refusal(&self) -> Option<Refusal> {
        self.lock().gave_up.clone()
    }

    /// The same pacer with a shorter cap on pauses (tests use one; the default and the most is
    /// [`MAX_PAUSE`], which also keeps every `SystemTime` sum below far from overflowing).
    pub fn with_max_pause(mut self, max_pause: Duration) -> Self {
        self.max_pause = max_pause.min(MAX_PAUSE);
        self
    }

    /// Restores the pause (unix seconds) that a previous run stored after `who` (Hub, a
    /// registry's host) answered 429, if it still lies ahead and within the cap, and logs what
    /// it decided: a wait, or a stored pause too long to have come from a capped run, ignored.
    /// The Hub crawl and the catalog crawl both start this way.
    pub fn restore_pause(&self, stored: Option<u64>, who: &str) -> StoredPause {
        let Some(until_unix) = stored else {
            return StoredPause::Over;
        };
        let now = SystemTime::now();
        let decision = stored_pause(until_unix, now, self.max_pause);
        match decision {
            StoredPause::Over => {}
            StoredPause::Wait(wait) => {
                tracing::warn!(
                    "{who} asked the last run to pause; waiting {:.0}s before the first request",
                    wait.as_secs_f64()
                );
                self.pause_until(now + wait);
            }
            StoredPause::Absurd(secs) => tracing::warn!(
                "the store asks to pause {secs}s before asking {who}, longer than any pause digestmap keeps ({}s); ignoring it",
                self.max_pause.as_secs()
            ),
        }
        decision
    }

    /// The pause in force, as unix seconds (rounded up), for storing.
    pub fn paused_until_unix(&self) -> Option<u64> {
        let until = self.lock().until?;
        (until > SystemTime::now()).then(|| clock::unix(until + Duration::from_millis(999)))
    }

    /// How long from now the pause lasts, if one is in force.
    pub fn pause_remaining(&self) -> Option<Duration> {
        let until = self.lock().until?;
        until.duration_since(SystemTime::now()).ok()
    }

    /// Number of 429 answers seen.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    /// Number of times a spent window made everyone wait.
    pub fn window_waits(&self) -> u64 {
        self.window_waits.load(Ordering::Relaxed)
    }

    /// Waits until a request may start: no pause in force, a limiter slot free, and budget left
    /// in the rate-limit window. Every call must be followed by one [`Pacer::observe`] or
    /// [`Pacer::abandon`].
    pub async fn ready(&self) {
        loop {
            while let Some(wait) = self.pause_remaining() {
                tokio::time::sleep(wait).await;
            }
            self.limiter.until_ready().await;
            let mut state = self.lock();
            let now = SystemTime::now();
            // A 429 may have arrived while this worker waited for its slot.
            if state.until.is_some_and(|t| t > now) {
                continue;
            }
            match &mut state.window {
                Some(w) if w.reset + RESET_MARGIN <= now => state.window = None,
                Some(w) if w.remaining <= 0 => {
                    let until = w.reset + RESET_MARGIN;
                    self.window_waits.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("rate-limit window spent: waiting for its reset");
                    state.until = Some(state.until.map_or(until, |t| t.max(until)));
                    continue;
                }
                Some(w) => w.remaining -= 1,
                None => {}
            }
            state.in_flight += 1;
            return;
        }
    }

    /// A request started by [`Pacer::ready`] ended without an answer.
    pub fn abandon(&self) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
    }

    /// Learns from an answer's status and headers; `origin` (`https://hub.docker.com`, a
    /// registry's) names who answered in the log lines, since one pacer may serve several.
    pub fn observe(&self, status: StatusCode, headers: &HeaderMap, origin: &str) {
        let now = SystemTime::now();
        {
            let mut state = self.lock();
            state.in_flight = state.in_flight.saturating_sub(1);
            // A 429's Retry-After is the explicit instruction; its window headers may describe
            // another limit (Hub's abuse limiter), so they do not set the budget.
            let explicit = status == StatusCode::TOO_MANY_REQUESTS
                && headers.contains_key(http::header::RETRY_AFTER);
            if let Some((remaining, reset)) = window(headers).filter(|_| !explicit) {
                // Requests still in flight were sent after this answer was counted: they will
                // spend the window too.
                let estimate = i64::from(remaining) - i64::from(state.in_flight);
                let cap = MAX_WINDOW_WAIT.min(self.max_pause);
                let reset = match window_end(reset, now, cap) {
                    (end, false) => end,
                    (end, true) => {
                        self.log_capped(1, headers, "x-ratelimit-reset", cap, origin);
                        end
                    }
                };
                state.window = match state.window {
                    // Answers arrive out of order: within one window, trust the lowest count.
                    Some(w) if w.reset == reset => Some(Budget {
                        remaining: w.remaining.min(estimate),
                        reset,
                    }),
                    Some(w) if w.reset > reset => Some(w),
                    _ => Some(Budget {
                        remaining: estimate,
                        reset,
                    }),
                };
            }
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
            let wait = match retry_after(headers, now) {
                Some(wait) => {
                    self.lock().bare_429s = 0;
                    if wait > self.max_pause {
                        self.log_capped(0, headers, "retry-after", self.max_pause, origin);
                    }
                    wait.min(self.max_pause)
                }
                None => {
                    let mut state = self.lock();
                    let exp = state.bare_429s.min(16);
                    state.bare_429s += 1;
                    BARE_429_BACKOFF
                        .saturating_mul(1 << exp)
                        .min(MAX_BARE_429_BACKOFF)
                        .min(self.max_pause)
                }
            };
            // The pause is kept even when giving up: it is stored, so a resumed run honours it.
            self.pause_until(now + wait);
            let since = *self.lock().refused_since.get_or_insert(now);
            if gives_up(since, now, wait, self.max_refusal) {
                self.give_up(origin, now.duration_since(since).unwrap_or_default());
                return;
            }
            tracing::warn!(
                "{} answered 429 Too Many Requests: all workers pause for {:.1}s",
                origin,
                wait.as_secs_f64()
            );
            return;
        }
        let mut state = self.lock();
        state.bare_429s = 0;
        state.refused_since = None;
    }

    /// Stops the run: `origin` has answered nothing but 429 for `lasted`.
    fn give_up(&self, origin: &str, lasted: Duration) {
        {
            let mut state = self.lock();
            if state.gave_up.is_some() {
                return;
            }
            state.gave_up = Some(Refusal {
                origin: origin.to_owned(),
                lasted,
            });
        }
        tracing::debug!(
            "{origin} answered only 429 for {:.1}s, past the bound of {:.1}s: stopping",
            lasted.as_secs_f64(),
            self.max_refusal.as_secs_f64()
        );
        self.stop.cancel();
    }

    /// Logs, the first time only, that header `name` of `origin`'s answer asked for more than
    /// `cap`.
    fn log_capped(
        &self,
        which: usize,
        headers: &HeaderMap,
        name: &str,
        cap: Duration,
        origin: &str,
    ) {
        if self.capped_logged[which].swap(true, Ordering::Relaxed) {
            return;
        }
        let value = headers
            .get(name)
            .map_or(String::new(), |v| quote(v.as_bytes()));
        tracing::warn!(
            "{}'s {name} {value} asks for a pause longer than {:.1}s; pausing {:.1}s at most",
            origin,
            cap.as_secs_f64(),
            cap.as_secs_f64()
        );
    }

    fn pause_until(&self, until: SystemTime) {
        let mut state = self.lock();
        if state.until.is_none_or(|t| t < until) {
            state.until = Some(until);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PauseState> {
        // The state is plain data; a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a resumed crawl does with the pause the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredPause {
    /// It lies in the past: nothing to wait for.
    Over,
    /// Wait this long before the first request.
    Wait(Duration),
    /// It lies further ahead than any capped pause could (this many seconds): ignored.
    Absurd(u64),
}

/// Decides what to do with a stored pause ending at `until_unix` (unix seconds), `now`, and the
/// cap in force. A capped run stores at most the cap, rounded up to the next second.
pub fn stored_pause(until_unix: u64, now: SystemTime, max_pause: Duration) -> StoredPause {
    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let ahead = Duration::from_secs(until_unix).saturating_sub(now_secs);
    if ahead.is_zero() {
        StoredPause::Over
    } else if ahead > max_pause.saturating_add(Duration::from_secs(1)) {
        StoredPause::Absurd(ahead.as_secs())
    } else {
        StoredPause::Wait(ahead.min(max_pause))
    }
}

/// Whether a run refused since `since` gives up at a 429 answered at `now` that asks for a pause
/// of `wait`: when waiting it out would make the refusal outlast `bound`. Deciding before the
/// wait means no run waits past the bound; a clock set back counts as no time refused.
pub fn gives_up(since: SystemTime, now: SystemTime, wait: Duration, bound: Duration) -> bool {
    now.duration_since(since)
        .unwrap_or_default()
        .saturating_add(wait)
        > bound
}

/// `Retry-After` as a duration from `now`: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
/// Numbers too large for a `u64` saturate; the caller caps the result.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

/// `X-RateLimit-Remaining` and `X-RateLimit-Reset` (unix seconds, unchecked: see [`window_end`]).
fn window(headers: &HeaderMap) -> Option<(u32, u64)> {
    let number =
        |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    let remaining = u32::try_from(number("x-ratelimit-remaining")?).unwrap_or(u32::MAX);
    let reset = number("x-ratelimit-reset")?;
    Some((remaining, reset))
}

/// The end of a rate-limit window resetting at `reset_unix`, at most `cap` from `now`; `true`
/// when it had to be capped (a reset beyond what `SystemTime` holds is capped, not a panic).
fn window_end(reset_unix: u64, now: SystemTime, cap: Duration) -> (SystemTime, bool) {
    let latest = now + cap;
    match SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(reset_unix)) {
        Some(reset) if reset <= latest => (reset, false),
        _ => (latest, true),
    }
}

/// A header value for a log line: escaped, quoted and shortened, so hostile bytes cannot reach
/// the terminal.
fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut quoted: String = text.chars().take(MAX_QUOTED).collect();
    if text.chars().count() > MAX_QUOTED {
        quoted.push('…');
    }
    format!("{quoted:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert("retry-after", HeaderValue::from_str(&date).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn a_429_pauses_everyone() {
        let pacer = Pacer::new(100.0).unwrap();
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        pacer.observe(StatusCode::TOO_MANY_REQUESTS, &h, "http://127.0.0.1:1");
        let left = pacer.pause_remaining().unwrap();
        assert!(left > Duration::from_millis(1500) && left <= Duration::from_secs(2));
        assert_eq!(pacer.rate_limited(), 1);
    }

    #[test]
    fn bare_429s_back_off_exponentially() {
        let pacer = Pacer::new(100.0).unwrap();
        pacer.observe(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            "http://127.0.0.1:1",
        );
        let first = pacer.pause_remaining().unwrap();
        pacer.observe(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            "http://127.0.0.1:1",
        );
        let second = pacer.pause_remaining().unwrap();
        assert!(first <= BARE_429_BACKOFF && second > BARE_429_BACKOFF);
    }

    #[tokio::test]
    async fn a_spent_window_budget_waits_for_reset() {
        let pacer = Pacer::new(1000.0).unwrap();
        let reset = clock::now_unix() + 2;
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("2"));
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&reset.to_string()).unwrap(),
        );
        // Two requests in flight when the answer saying "2 left" arrives: no budget remains.
        pacer.ready().await;
        pacer.ready().await;
        pacer.ready().await;
        pacer.observe(StatusCode::OK, &h, "http://127.0.0.1:1");
        assert!(pacer.pause_remaining().is_none());
        let waiting = tokio::time::timeout(Duration::from_millis(300), pacer.ready()).await;
        assert!(
            waiting.is_err(),
            "a request started although the window was spent"
        );
        assert!(pacer.pause_remaining().unwrap() > Duration::from_millis(500));
        assert_eq!(pacer.window_waits(), 1);
    }

    #[test]
    fn retry_after_never_overflows() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let mut h = HeaderMap::new();
        for (value, want) in [
            ("1000000000", Some(Duration::from_secs(1_000_000_000))),
            ("18446744073709551615", Some(Duration::from_secs(u64::MAX))),
            (
                "99999999999999999999999999",
                Some(Duration::from_secs(u64::MAX)),
            ),
            ("Fri, 31 Dec 9999 23:59:59 GMT", None),
            ("-5", None),
            ("", None),
        ] {
            h.insert("retry-after", HeaderValue::from_str(value).unwrap());
            let got = retry_after(&h, now);
            match want {
                Some(want) => assert_eq!(got, Some(want), "{value}"),
                // An HTTP date far ahead is a long (finite) wait; garbage is no answer.
                None if value.starts_with("Fri") => {
                    assert!(got.unwrap() > Duration::from_secs(200_000_000_000));
                }
                None => assert_eq!(got, None, "{value}"),
            }
        }
    }

    #[test]
    fn window_ends_are_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let cap = Duration::from_secs(900);
        for (reset, want, capped) in [
            (1_000_000_010, now + Duration::from_secs(10), false),
            (1_000_000_900, now + cap, false),
            (1_000_000_901, now + cap, true),
            (i64::MAX as u64, now + cap, true),
            (i64::MAX as u64 + 1, now + cap, true),
            (u64::MAX, now + cap, true),
            (5, SystemTime::UNIX_EPOCH + Duration::from_secs(5), false),
        ] {
            assert_eq!(window_end(reset, now, cap), (want, capped), "{reset}");
        }
    }

    #[test]
    fn stored_pauses() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000_000_500);
        let hour = MAX_PAUSE;
        for (until, want) in [
            (0, StoredPause::Over),
            (1_000_000_000, StoredPause::Over),
            (
                1_000_000_030,
                StoredPause::Wait(Duration::from_millis(29_500)),
            ),
            // What a capped run stores: the cap rounded up to the next second.
            (1_000_003_601, StoredPause::Wait(hour)),
            (1_000_003_602, StoredPause::Absurd(3601)),
            (2_000_000_000, StoredPause::Absurd(999_999_999)),
            (u64::MAX, StoredPause::Absurd(u64::MAX - 1_000_000_001)),
        ] {
            assert_eq!(stored_pause(until, now, hour), want, "{until}");
        }
    }

    #[test]
    fn hostile_headers_pause_at_most_the_cap() {
        let pacer = Pacer::new(100.0)
            .unwrap()
            .with_max_pause(Duration::from_secs(5));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("18446744073709551615"),
        );
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from_static("18446744073709551615"),
        );
        pacer.observe(StatusCode::TOO_MANY_REQUESTS, &h, "http://127.0.0.1:1");
        assert!(pacer.pause_remaining().unwrap() <= Duration::from_secs(5));
        assert!(pacer.paused_until_unix().unwrap() <= clock::now_unix() + 6);
        pacer.observe(StatusCode::OK, &h, "http://127.0.0.1:1");
        let window = pacer.lock().window.unwrap();
        assert!(window.reset <= SystemTime::now() + Duration::from_secs(5));
        assert!(matches!(
            pacer.restore_pause(Some(u64::MAX), "Hub"),
            StoredPause::Absurd(_)
        ));
    }

    #[test]
    fn refusal_stretches() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let s = Duration::from_secs;
        for (since, now, wait, bound, want) in [
            // One full Retry-After of the bound is honoured...
            (t0, t0, s(3600), MAX_REFUSAL, false),
            // ...a second is not.
            (t0, t0 + s(3600), s(1), MAX_REFUSAL, true),
            (t0, t0 + s(3000), s(600), MAX_REFUSAL, false),
            (t0, t0 + s(3000), s(601), MAX_REFUSAL, true),
            // Bare 429s: the doubling backoff adds up until the bound.
            (t0, t0 + s(510), s(300), MAX_REFUSAL, false),
            (t0, t0 + s(3510), s(300), MAX_REFUSAL, true),
            // A clock set back counts as no time refused.
            (t0 + s(60), t0, s(10), s(30), false),
            (t0 + s(60), t0, s(31), s(30), true),
            (t0, t0, Duration::MAX, MAX_REFUSAL, true),
        ] {
            assert_eq!(gives_up(since, now, wait, bound), want, "{now:?} {wait:?}");
        }
    }

    #[test]
    fn only_429s_for_longer_than_the_bound_stop_the_run() {
        let stop = CancellationToken::new();
        let pacer = Pacer::new(100.0)
            .unwrap()
            .with_max_pause(Duration::from_secs(2))
            .with_refusal_bound(Duration::from_secs(3), stop.clone());
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        let origin = "http://127.0.0.1:1";
        pacer.observe(StatusCode::TOO_MANY_REQUESTS, &h, origin);
        // Any other answer ends the stretch: the next 429 starts a new one.
        pacer.observe(StatusCode::NOT_FOUND, &HeaderMap::new(), origin);
        pacer.lock().refused_since = Some(SystemTime::now() - Duration::from_secs(2));
        pacer.observe(StatusCode::OK, &HeaderMap::new(), origin);
        pacer.observe(StatusCode::TOO_MANY_REQUESTS, &h, origin);
        assert!(!stop.is_cancelled() && pacer.refusal().is_none());
        // Two seconds into the stretch, another two-second pause would pass the bound.
        pacer.lock().refused_since = Some(SystemTime::now() - Duration::from_secs(2));
        pacer.observe(StatusCode::TOO_MANY_REQUESTS, &h, origin);
        assert!(stop.is_cancelled());
        let refusal = pacer.refusal().unwrap();
        assert_eq!(refusal.origin, origin);
        assert!(refusal.lasted >= Duration::from_secs(2));
        // The pause stays, to be stored for the resumed run.
        assert!(pacer.pause_remaining().is_some());
    }

    #[test]
    fn rejects_bad_rates() {
        for r in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            assert!(Pacer::new(r).is_err());
        }
    }
}

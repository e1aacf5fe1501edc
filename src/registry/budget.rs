//! The pull budget: how many manifest GETs the registry still allows.
//!
//! Facts relied on (Docker Hub's registry): every manifest GET counts as a pull; HEAD requests
//! and blob GETs do not. Manifest answers carry `ratelimit-limit: 100;w=21600` and
//! `ratelimit-remaining: 76;w=21600`: the count, then the window in seconds. When the budget is
//! spent Hub answers `429` with `TOOMANYREQUESTS` and no `Retry-After`. Anonymous clients get 100
//! pulls per 6 hours per IP, free accounts 200; registries without limits send no such headers.
//!
//! [`PullBudget`] is what one answer said; [`BudgetGate`] is the client's running view: it spends
//! one pull per manifest GET before sending it and refuses the GET when nothing is left, until
//! the window has passed. The window's end is not sent, so it is counted from the answer that
//! said the budget was spent (or from the 429): conservative, never early. The caller can store
//! [`BudgetGate::snapshot`] and give it back with [`BudgetGate::restore`] in a later run.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// Window assumed when a 429 comes before any `ratelimit-*` header: Docker Hub's 6 hours.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(6 * 3600);

/// What one answer said about the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullBudget {
    /// Pulls allowed per window (`ratelimit-limit`), when sent.
    pub limit: Option<u64>,
    /// Pulls left in the window (`ratelimit-remaining`).
    pub remaining: u64,
    /// The window's length (`w=`), when sent.
    pub window: Option<Duration>,
}

/// Reads the `ratelimit-*` headers; `None` when `ratelimit-remaining` is absent or unreadable.
pub fn parse_budget(headers: &HeaderMap) -> Option<PullBudget> {
    let field = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_field)
    };
    let (remaining, remaining_window) = field("ratelimit-remaining")?;
    let limit = field("ratelimit-limit");
    Some(PullBudget {
        limit: limit.map(|(n, _)| n),
        remaining,
        window: remaining_window
            .or(limit.and_then(|(_, w)| w))
            .map(Duration::from_secs),
    })
}

/// `N` or `N;w=SECONDS` (other parameters ignored).
fn parse_field(text: &str) -> Option<(u64, Option<u64>)> {
    let mut parts = text.split(';');
    let count = parts.next()?.trim().parse().ok()?;
    let window = parts
        .filter_map(|p| p.trim().strip_prefix("w="))
        .find_map(|w| w.trim().parse::<u64>().ok())
        .filter(|&w| w > 0);
    Some((count, window))
}

/// The client's view of the budget, kept for storing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSnapshot {
    /// Pulls allowed per window, when known.
    pub limit: Option<u64>,
    /// Pulls left, as far as we know.
    pub remaining: u64,
    /// When a spent budget may be assumed free again (meaningful when `remaining` is 0).
    pub frees_at: SystemTime,
}

/// Refusal to send a manifest GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pull budget is spent until {}", httpdate::fmt_http_date(*frees_at))]
pub struct Spent {
    /// When the window frees.
    pub frees_at: SystemTime,
}

#[derive(Debug, Default)]
struct State {
    known: Option<Known>,
    /// Manifest GETs sent and not yet answered.
    in_flight: u64,
    /// The window length last heard of; outlives a window that has passed.
    window: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct Known {
    limit: Option<u64>,
    remaining: u64,
    /// When the window of the answer that set `remaining` ends, at the latest.
    frees_at: SystemTime,
}

/// The running budget shared by every request of one client.
#[derive(Debug, Default)]
pub struct BudgetGate {
    state: Mutex<State>,
}

impl BudgetGate {
    /// Spends one pull for a manifest GET about to be sent, or says why not. Every `Ok` must be
    /// followed by one [`BudgetGate::observe`], [`BudgetGate::rate_limited`] or
    /// [`BudgetGate::release`].
    pub fn reserve(&self, now: SystemTime) -> Result<(), Spent> {
        let mut state = self.lock();
        if let Some(known) = &mut state.known {
            if known.remaining == 0 {
                if now < known.frees_at {
                    return Err(Spent {
                        frees_at: known.frees_at,
                    });
                }
                // The window has passed: unknown again until the next answer says.
                state.known = None;
            } else {
                known.remaining -= 1;
            }
        }
        state.in_flight += 1;
        Ok(())
    }

    /// Takes in what an answer to a reserved GET said (`None`: no headers).
    pub fn observe(&self, budget: Option<PullBudget>, now: SystemTime) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if let Some(budget) = budget {
            let window = budget.window.or(state.window).unwrap_or(DEFAULT_WINDOW);
            state.window = Some(window);
            // Requests still in flight were counted before this answer was: spend them too.
            state.known = Some(Known {
                limit: budget.limit,
                remaining: budget.remaining.saturating_sub(state.in_flight),
                frees_at: now + window,
            });
        }
    }

    /// Takes in what an answer that spent no pull said (a HEAD).
    pub fn heard(&self, budget: PullBudget, now: SystemTime) {
        let mut state = self.lock();
        state.in_flight += 1;
        drop(state);
        self.observe(Some(budget), now);
    }

    /// A reserved GET was answered 429: nothing is left for the rest of the window.
    pub fn rate_limited(&self, now: SystemTime) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        let window = state.window.unwrap_or(DEFAULT_WINDOW);
        state.known = Some(Known {
            limit: state.known.and_then(|k| k.limit),
            remaining: 0,
            frees_at: now + window,
        });
    }

    /// A reserved GET got no answer (transport failure): give its pull back.
    pub fn release(&self) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if let Some(known) = &mut state.known {
            known.remaining += 1;
        }
    }

    /// What the client knows, for storing; `None` before any answer said.
    pub fn snapshot(&self) -> Option<BudgetSnapshot> {
        self.lock().known.map(|k| BudgetSnapshot {
            limit: k.limit,
            remaining: k.remaining,
            frees_at: k.frees_at,
        })
    }

    /// Restores a stored snapshot (a spent budget stays spent until `frees_at`).
    pub fn restore(&self, snapshot: BudgetSnapshot, now: SystemTime) {
        let window = snapshot
            .frees_at
            .duration_since(now)
            .unwrap_or(Duration::ZERO);
        let mut state = self.lock();
        state
            .window
            .get_or_insert(window.max(Duration::from_secs(1)));
        state.known = Some(Known {
            limit: snapshot.limit,
            remaining: snapshot.remaining,
            frees_at: snapshot.frees_at,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is one assignment.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn header_table() {
        let six_hours = Some(Duration::from_secs(21600));
        type Row = (Vec<(&'static str, &'static str)>, Option<PullBudget>);
        let table: Vec<Row> = vec![
            (
                vec![
                    ("ratelimit-limit", "100;w=21600"),
                    ("ratelimit-remaining", "76;w=21600"),
                ],
                Some(PullBudget {
                    limit: Some(100),
                    remaining: 76,
                    window: six_hours,
                }),
            ),
            (
                vec![("ratelimit-remaining", "0;w=21600")],
                Some(PullBudget {
                    limit: None,
                    remaining: 0,
                    window: six_hours,
                }),
            ),
            (
                vec![
                    ("RateLimit-Limit", "200;w=21600"),
                    ("RateLimit-Remaining", " 5 "),
                ],
                Some(PullBudget {
                    limit: Some(200),
                    remaining: 5,
                    window: six_hours,
                }),
            ),
            (
                vec![("ratelimit-remaining", "7;comment=\"x\";w=60")],
                Some(PullBudget {
                    limit: None,
                    remaining: 7,
                    window: Some(Duration::from_secs(60)),
                }),
            ),
            (vec![], None),
            (vec![("ratelimit-limit", "100;w=21600")], None),
            (vec![("ratelimit-remaining", "-1;w=21600")], None),
            (vec![("ratelimit-remaining", "lots")], None),
            (
                vec![("ratelimit-remaining", "3;w=0")],
                Some(PullBudget {
                    limit: None,
                    remaining: 3,
                    window: None,
                }),
            ),
        ];
        for (pairs, want) in table {
            assert_eq!(parse_budget(&headers(&pairs)), want, "{pairs:?}");
        }
    }

    #[test]
    fn gate_spends_and_refuses() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let gate = BudgetGate::default();
        // Unknown budget: GETs go.
        gate.reserve(t0).unwrap();
        gate.observe(
            Some(PullBudget {
                limit: Some(3),
                remaining: 2,
                window: Some(Duration::from_secs(100)),
            }),
            t0,
        );
        gate.reserve(t0).unwrap();
        gate.reserve(t0).unwrap();
        // Two in flight spent the two left.
        assert_eq!(
            gate.reserve(t0),
            Err(Spent {
                frees_at: t0 + Duration::from_secs(100)
            })
        );
        // One fails in transit: its pull comes back.
        gate.release();
        gate.reserve(t0).unwrap();
        // The answers say 0 left.
        let zero = Some(PullBudget {
            limit: Some(3),
            remaining: 0,
            window: Some(Duration::from_secs(100)),
        });
        gate.observe(zero, t0 + Duration::from_secs(1));
        gate.observe(zero, t0 + Duration::from_secs(2));
        let frees = t0 + Duration::from_secs(102);
        assert_eq!(gate.snapshot().unwrap().frees_at, frees);
        assert!(gate.reserve(frees - Duration::from_secs(1)).is_err());
        // After the window: unknown again, GETs go.
        gate.reserve(frees).unwrap();
        gate.rate_limited(frees);
        assert_eq!(gate.snapshot().unwrap().remaining, 0);
        // The window length outlives the window: the 429's pause is 100 s, not the default.
        assert!(gate.reserve(frees + Duration::from_secs(99)).is_err());
        assert!(gate.reserve(frees + Duration::from_secs(100)).is_ok());
    }

    #[test]
    fn rate_limited_without_headers_uses_the_default_window_and_restores() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(5_000_000);
        let gate = BudgetGate::default();
        gate.reserve(t0).unwrap();
        gate.rate_limited(t0);
        let snapshot = gate.snapshot().unwrap();
        assert_eq!(snapshot.frees_at, t0 + DEFAULT_WINDOW);
        let later = BudgetGate::default();
        later.restore(snapshot, t0 + Duration::from_secs(10));
        assert!(later.reserve(t0 + Duration::from_secs(10)).is_err());
        assert!(later.reserve(t0 + DEFAULT_WINDOW).is_ok());
    }
}

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
//!
//! The budget applies only where the registry declares one: `ratelimit-*` headers on some
//! answer (the 429 itself included), or a restored snapshot. A registry that never sent them
//! (Microsoft's: its egress limit answers 429, with or without `Retry-After`, and expects a
//! backoff of seconds) has no pull budget to spend, so its 429 on a manifest GET is an ordinary
//! 429 ([`BudgetGate::rate_limited`] says so), for the pacer to pause on, not a window of
//! hours.

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

/// Whether a 429's error detail (`code: message`, as the client reads it) is Docker Hub's answer
/// at the pull limit (`TOOMANYREQUESTS: You have reached your pull rate limit...`, documented on
/// docs.docker.com's "Docker Hub pull usage and limits"). Another registry's `TOOMANYREQUESTS`
/// (the distribution spec's code for any 429) is not: only the pull-limit wording is.
pub fn is_pull_limit(detail: &str) -> bool {
    detail.to_ascii_lowercase().contains("pull rate limit")
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
    /// Whether the GETs in flight began when none was: the next answer then sets the count as
    /// it says; later answers of the same stretch can only lower it (see [`BudgetGate::observe`]).
    fresh: bool,
    /// The window length last heard of; outlives a window that has passed. Set once the
    /// registry declared a budget (headers, or a restored snapshot), and only then.
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
        if state.in_flight == 0 {
            state.fresh = true;
        }
        state.in_flight += 1;
        Ok(())
    }

    /// Takes in what an answer to a reserved GET said (`None`: no headers).
    ///
    /// Answers to concurrent GETs arrive in any order, and an answer to an earlier GET says more
    /// pulls are left than a later one already did. So while GETs overlap, the count only goes
    /// down: the first answer after a moment with none in flight sets it, the others of that
    /// stretch can only lower it. (A rolling window that frees pulls meanwhile is heard at the
    /// next such moment; until then the count errs low, never high.)
    pub fn observe(&self, budget: Option<PullBudget>, now: SystemTime) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if let Some(budget) = budget {
            let window = budget.window.or(state.window).unwrap_or(DEFAULT_WINDOW);
            state.window = Some(window);
            // Requests still in flight were counted before this answer was: spend them too.
            let told = budget.remaining.saturating_sub(state.in_flight);
            let remaining = match state.known {
                Some(known) if !state.fresh => known.remaining.min(told),
                _ => told,
            };
            state.fresh = false;
            state.known = Some(Known {
                limit: budget.limit,
                remaining,
                frees_at: now + window,
            });
        }
    }

    /// Takes in what an answer that spent no pull said (a HEAD).
    pub fn heard(&self, budget: PullBudget, now: SystemTime) {
        let mut state = self.lock();
        if state.in_flight == 0 {
            state.fresh = true;
        }
        state.in_flight += 1;
        drop(state);
        self.observe(Some(budget), now);
    }

    /// A reserved GET was answered 429, whose `ratelimit-*` headers said `budget` (`None`:
    /// none). Where the registry declares a budget (in this answer, an earlier one, or a
    /// restored snapshot), nothing is left for the rest of the window: returns `true`. Where it
    /// never did, the 429 is not about pulls (an egress limit): nothing is spent, and `false`
    /// tells the caller to treat it as any 429.
    pub fn rate_limited(&self, budget: Option<PullBudget>, now: SystemTime) -> bool {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if budget.is_none() && state.window.is_none() {
            return false;
        }
        let window = budget
            .and_then(|b| b.window)
            .or(state.window)
            .unwrap_or(DEFAULT_WINDOW);
        state.window = Some(window);
        state.known = Some(Known {
            limit: budget
                .and_then(|b| b.limit)
                .or(state.known.and_then(|k| k.limit)),
            remaining: 0,
            frees_at: now + window,
        });
        true
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

    #[test]
    fn answers_out_of_order_never_raise_the_count() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let told = |remaining| {
            Some(PullBudget {
                limit: Some(4),
                remaining,
                window: Some(Duration::from_secs(60)),
            })
        };
        let left = |gate: &BudgetGate| gate.snapshot().map(|s| s.remaining);
        // One GET alone: its answer sets the count.
        let gate = BudgetGate::default();
        gate.reserve(t0).unwrap();
        gate.observe(told(3), t0);
        assert_eq!(left(&gate), Some(3));
        // Three at once, answered last-sent first: the older answers (2 and 1 left when they
        // were made) arrive after the newest said 0.
        for _ in 0..3 {
            gate.reserve(t0).unwrap();
        }
        for (remaining, expected) in [(0, 0), (2, 0), (1, 0)] {
            gate.observe(told(remaining), t0);
            assert_eq!(
                left(&gate),
                Some(expected),
                "after an answer saying {remaining}"
            );
        }
        // A later GET that starts alone hears the count as it is now, higher or lower.
        let gate = BudgetGate::default();
        gate.reserve(t0).unwrap();
        gate.observe(told(1), t0);
        gate.reserve(t0).unwrap();
        gate.observe(told(3), t0);
        assert_eq!(left(&gate), Some(3), "a window that freed pulls is heard");
        // A HEAD heard between overlapping GETs lowers, never raises.
        let gate = BudgetGate::default();
        gate.reserve(t0).unwrap();
        gate.observe(told(3), t0);
        gate.reserve(t0).unwrap();
        gate.reserve(t0).unwrap();
        gate.observe(told(1), t0);
        gate.heard(
            PullBudget {
                limit: Some(4),
                remaining: 3,
                window: Some(Duration::from_secs(60)),
            },
            t0,
        );
        assert_eq!(left(&gate), Some(0), "one GET still in flight");
    }

    #[test]
    fn docker_hub_s_pull_limit_body_is_told_from_other_429s() {
        for (detail, pull_limit) in [
            (
                "TOOMANYREQUESTS: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit",
                true,
            ),
            (
                "toomanyrequests: You have reached your unauthenticated pull rate limit.",
                true,
            ),
            ("TOOMANYREQUESTS: too many requests", false),
            ("egress limit reached, back off", false),
            ("", false),
        ] {
            assert_eq!(is_pull_limit(detail), pull_limit, "{detail}");
        }
    }
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
        assert!(gate.rate_limited(None, frees));
        assert_eq!(gate.snapshot().unwrap().remaining, 0);
        // The window length outlives the window: the 429's pause is 100 s, not the default.
        assert!(gate.reserve(frees + Duration::from_secs(99)).is_err());
        assert!(gate.reserve(frees + Duration::from_secs(100)).is_ok());
    }

    #[test]
    fn a_429_spends_the_budget_only_where_one_is_declared() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(5_000_000);
        let hour = Duration::from_secs(3600);
        let header = |window: Option<Duration>| PullBudget {
            limit: Some(100),
            remaining: 0,
            window,
        };
        // (what the registry declared before, what the 429 carried, spent until)
        type Row = (
            &'static str,
            fn(&BudgetGate, SystemTime),
            Option<PullBudget>,
            Option<SystemTime>,
        );
        let table: Vec<Row> = vec![
            ("never declared, bare 429", |_, _| {}, None, None),
            (
                "never declared, the 429 declares with a window",
                |_, _| {},
                Some(header(Some(hour))),
                Some(t0 + hour),
            ),
            (
                "never declared, the 429 declares without a window",
                |_, _| {},
                Some(header(None)),
                Some(t0 + DEFAULT_WINDOW),
            ),
            (
                "declared by an earlier answer, bare 429",
                |g, t| {
                    g.reserve(t).unwrap();
                    let budget = PullBudget {
                        limit: Some(100),
                        remaining: 9,
                        window: Some(Duration::from_secs(60)),
                    };
                    g.observe(Some(budget), t);
                },
                None,
                Some(t0 + Duration::from_secs(60)),
            ),
            (
                "an earlier answer without headers declares nothing",
                |g, t| {
                    g.reserve(t).unwrap();
                    g.observe(None, t);
                },
                None,
                None,
            ),
            (
                "declared by a restored snapshot, bare 429",
                |g, t| {
                    let stored = BudgetSnapshot {
                        limit: Some(100),
                        remaining: 5,
                        frees_at: t + Duration::from_secs(3600),
                    };
                    g.restore(stored, t);
                },
                None,
                Some(t0 + hour),
            ),
        ];
        for (what, before, carried, spent_until) in table {
            let gate = BudgetGate::default();
            before(&gate, t0);
            gate.reserve(t0).unwrap();
            assert_eq!(
                gate.rate_limited(carried, t0),
                spent_until.is_some(),
                "{what}"
            );
            match spent_until {
                Some(until) => {
                    let snapshot = gate.snapshot().unwrap();
                    assert_eq!(
                        (snapshot.remaining, snapshot.frees_at),
                        (0, until),
                        "{what}"
                    );
                    assert!(
                        gate.reserve(until - Duration::from_secs(1)).is_err(),
                        "{what}"
                    );
                    assert!(gate.reserve(until).is_ok(), "{what}");
                }
                None => {
                    // Nothing spent, nothing known: the next GET goes at once.
                    assert_eq!(gate.snapshot(), None, "{what}");
                    assert!(gate.reserve(t0).is_ok(), "{what}");
                }
            }
        }
    }

    #[test]
    fn a_spent_budget_restores() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(5_000_000);
        let gate = BudgetGate::default();
        gate.reserve(t0).unwrap();
        let hub = PullBudget {
            limit: Some(100),
            remaining: 0,
            window: None,
        };
        assert!(gate.rate_limited(Some(hub), t0));
        let snapshot = gate.snapshot().unwrap();
        assert_eq!(snapshot.frees_at, t0 + DEFAULT_WINDOW);
        let later = BudgetGate::default();
        later.restore(snapshot, t0 + Duration::from_secs(10));
        assert!(later.reserve(t0 + Duration::from_secs(10)).is_err());
        assert!(later.reserve(t0 + DEFAULT_WINDOW).is_ok());
    }
}

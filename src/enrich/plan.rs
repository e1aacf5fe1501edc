//! What `enrich` fetches, and in which order: pure decisions over what the store holds.
//!
//! Order: digests that some tag points at now come first, the newest push first, so that a
//! partial enrichment already serves the images people use most; then the rest, last seen first.
//! Ties go by digest, so the same store always plans the same order.
//!
//! Only Docker Hub's repositories are planned: a registry crawled through its catalog
//! (`crawl --catalog`, host-qualified repositories) learns its manifests and configs itself, from
//! its own registry, which `enrich --registry` is not.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

use crate::model::{Digest, ObjectKind, repo_key_host};
use crate::store::{EnrichTarget, ReadBatch, TxError};

/// A digest `enrich` has not learned yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Fetch the manifest, or (a Hub `config`-kind digest) only the config blob.
    pub target: EnrichTarget,
    /// The digest.
    pub digest: Digest,
    /// The repository to fetch it from (`library/python`).
    pub repo: String,
    /// Whether some tag points at it now.
    pub current: bool,
    /// The newest push time (unix seconds) of the tags that point at it now.
    pub pushed: Option<u64>,
    /// When the store last saw it (unix seconds).
    pub last_seen: u64,
}

/// Which digests a run plans: `--repo` and `--since`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only digests some tag of these repositories (`library/python`) points or pointed at.
    pub repos: Vec<String>,
    /// Only digests last seen at or after this time (unix seconds).
    pub since: Option<u64>,
}

impl Filter {
    /// Whether a job of `repo` is in this run.
    pub fn takes_repo(&self, repo: &str) -> bool {
        self.repos.is_empty() || self.repos.iter().any(|r| r == repo)
    }
}

/// Sorts candidates into the order they are fetched in.
pub fn order(candidates: &mut [Candidate]) {
    candidates.sort_by_key(|c| {
        (
            !c.current,
            Reverse(if c.current { c.pushed } else { None }),
            Reverse(c.last_seen),
            c.digest,
        )
    });
}

/// `python:3.12` (a dataset pair) → `library/python`; `user/app:1` → `user/app`;
/// `127.0.0.1:5000/app:1` → `127.0.0.1:5000/app` (a tag holds no `:`, a registry host may).
pub fn repo_of_pair(repo_tag: &str) -> Option<String> {
    let (repo, _) = repo_tag.rsplit_once(':')?;
    Some(if repo.contains('/') {
        repo.to_owned()
    } else {
        format!("library/{repo}")
    })
}

/// `python` → `library/python`; a name with a namespace stays as it is.
pub fn repo_key(name: &str) -> String {
    if name.contains('/') {
        name.to_owned()
    } else {
        format!("library/{name}")
    }
}

/// Unix seconds of an RFC 3339 time (`2020-06-09T20:45:50.400981Z`; fractions and the zone
/// past `Z` are ignored) or of a date (`2020-06-09`, midnight UTC); `None` when it is neither.
pub fn parse_time(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    let secs = if b.len() == 10 {
        0
    } else {
        if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if h > 23 || mi > 59 || s > 60 {
            return None;
        }
        h * 3600 + mi * 60 + s
    };
    Some(days_from_civil(y, m, d) * 86_400 + secs)
}

/// Days since 1970-01-01 of a Gregorian date (Howard Hinnant's algorithm, years >= 1970).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What the tags that point at a digest now say of it.
#[derive(Default)]
struct Now {
    pushed: Option<u64>,
    repo: Option<String>,
}

/// Every digest of the store that `enrich` has not learned and has no job for (`queued`: the
/// digests of pending and failed enrich jobs), within `filter`, in fetch order.
pub fn candidates(
    r: &ReadBatch,
    filter: &Filter,
    queued: &HashSet<Digest>,
) -> Result<Vec<Candidate>, TxError> {
    let mut now: HashMap<Digest, Now> = HashMap::new();
    r.visit_tags(|repo, _tag, state| -> Result<(), TxError> {
        if repo_key_host(repo).is_some() {
            return Ok(());
        }
        let pushed = state.pushed.as_deref().and_then(parse_time);
        for digest in &state.digests {
            if !state.is_current_pair(digest) {
                continue;
            }
            let entry = now.entry(*digest).or_default();
            if entry.repo.is_none() || pushed > entry.pushed {
                entry.repo = Some(repo.to_owned());
                entry.pushed = entry.pushed.max(pushed);
            }
        }
        Ok(())
    })?;
    let mut out = Vec::new();
    r.visit_digests(|entry| -> Result<(), TxError> {
        let target = match entry.record.kind {
            ObjectKind::Manifest => EnrichTarget::Manifest,
            ObjectKind::Config => EnrichTarget::Config,
            ObjectKind::Index => return Ok(()),
        };
        if queued.contains(&entry.digest)
            || filter.since.is_some_and(|t| entry.record.last_seen < t)
        {
            return Ok(());
        }
        let pair_repos: Vec<String> = entry
            .tags
            .iter()
            .filter_map(|t| repo_of_pair(t))
            .filter(|r| repo_key_host(r).is_none())
            .collect();
        if !filter.repos.is_empty() && !pair_repos.iter().any(|r| filter.takes_repo(r)) {
            return Ok(());
        }
        let learned = match target {
            EnrichTarget::Manifest => r.manifest(&entry.digest)?.is_some(),
            EnrichTarget::Config => r.config(&entry.digest)?.is_some(),
        };
        if learned {
            return Ok(());
        }
        let current = now.get(&entry.digest);
        // A filtered run fetches from a repository of the filter; otherwise the newest current
        // tag's repository, or any that ever pointed at it.
        let repo = pair_repos
            .iter()
            .find(|r| !filter.repos.is_empty() && filter.takes_repo(r))
            .cloned()
            .or_else(|| current.and_then(|n| n.repo.clone()))
            .or_else(|| pair_repos.first().cloned());
        let Some(repo) = repo else {
            return Ok(());
        };
        out.push(Candidate {
            target,
            digest: entry.digest,
            repo,
            current: current.is_some(),
            pushed: current.and_then(|n| n.pushed),
            last_seen: entry.record.last_seen,
        });
        Ok(())
    })?;
    order(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(fill: u8, current: bool, pushed: Option<u64>, last_seen: u64) -> Candidate {
        Candidate {
            target: EnrichTarget::Manifest,
            digest: Digest::from_bytes([fill; 32]),
            repo: "library/x".into(),
            current,
            pushed,
            last_seen,
        }
    }

    #[test]
    fn order_is_current_newest_push_first_then_last_seen() {
        // (candidate, expected position)
        let table = [
            (c(1, false, None, 50), 4),
            (c(2, true, Some(10), 1), 1),
            (c(3, true, Some(20), 1), 0),
            (c(4, false, Some(99), 70), 3),
            (c(5, true, None, 99), 2),
            (c(6, false, None, 50), 5),
        ];
        let mut got: Vec<Candidate> = table.iter().map(|(c, _)| c.clone()).collect();
        order(&mut got);
        for (candidate, at) in &table {
            assert_eq!(&got[*at], candidate, "position {at}");
        }
    }

    #[test]
    fn times_and_dates_parse() {
        let table: [(&str, Option<u64>); 8] = [
            ("1970-01-01", Some(0)),
            ("2020-06-09T20:45:50.400981Z", Some(1_591_735_550)),
            ("2020-06-09T20:45:50Z", Some(1_591_735_550)),
            ("2024-02-29", Some(1_709_164_800)),
            ("2020-13-01", None),
            ("yesterday", None),
            ("2020-06-09T20", None),
            ("2020-06-09X20:45:50Z", None),
        ];
        for (text, want) in table {
            assert_eq!(parse_time(text), want, "{text}");
        }
    }

    #[test]
    fn repositories_of_pairs_and_names() {
        assert_eq!(
            repo_of_pair("python:3.12").as_deref(),
            Some("library/python")
        );
        assert_eq!(repo_of_pair("user/app:1").as_deref(), Some("user/app"));
        assert_eq!(repo_of_pair("nocolon"), None);
        assert_eq!(
            repo_of_pair("127.0.0.1:5000/app:1").as_deref(),
            Some("127.0.0.1:5000/app")
        );
        assert_eq!(repo_key("python"), "library/python");
        assert_eq!(repo_key("user/app"), "user/app");
        let filter = Filter {
            repos: vec!["library/python".into()],
            since: None,
        };
        assert!(filter.takes_repo("library/python") && !filter.takes_repo("library/node"));
        assert!(Filter::default().takes_repo("anything"));
    }
}

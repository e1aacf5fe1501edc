//! Refresh and history through the real binary: a second `crawl` on a finished store reads only
//! what changed, keeps every digest it ever saw, and `current` follows Hub; `--full` finds
//! deletions.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Output, Stdio};

use serde_json::Value;
use support::fake_hub::{Churn, FakeHub, FakeHubConfig};
use support::sandbox::Sandbox;

impl Sandbox {
    fn run(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().unwrap();
        assert!(
            output.status.success(),
            "digestmap {args:?} failed with {:?}:\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// The dataset (finalize with extra flags), keyed by digest.
    fn dataset(&self, extra: &[&str]) -> BTreeMap<String, Value> {
        let mut args = vec!["finalize", "--out", "-"];
        args.extend_from_slice(extra);
        let output = self.run(&args);
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                (v["digest"].as_str().unwrap().to_owned(), v)
            })
            .collect()
    }
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

/// Every (digest, repo:tag) pair of a truth.
fn pairs(truth: &BTreeMap<String, Value>) -> BTreeSet<(String, String)> {
    truth
        .iter()
        .flat_map(|(d, v)| strings(&v["tags"]).into_iter().map(move |t| (d.clone(), t)))
        .collect()
}

#[test]
fn refresh_reads_only_what_changed_and_keeps_history() {
    let hub = FakeHub::bind(FakeHubConfig::default()).unwrap();
    let sb = Sandbox::new("churn");
    let url = hub.url();
    let crawl = [
        "crawl",
        "--hub-url",
        url.as_str(),
        "--rps",
        "500",
        "--workers",
        "4",
    ];
    sb.run(&crawl);
    let full_requests = hub.requests().len();
    let before = hub.truth();
    let repos = hub.total_repos();

    // A day on Hub: 5% of tags pushed again, 20 new tags, 1% deleted.
    hub.update(|c| {
        c.churn = Some(Churn {
            retag_permille: 50,
            added: 20,
            deleted_permille: 10,
            seed: 1,
        })
    });
    let after = hub.truth();
    let old_pairs = pairs(&before);
    let new_pairs = pairs(&after);
    let changed_tags: BTreeSet<&String> =
        new_pairs.difference(&old_pairs).map(|(_, t)| t).collect();
    assert!(
        changed_tags.len() > 150,
        "the churn changed too little: {}",
        changed_tags.len()
    );

    hub.clear_requests();
    let output = sb.run(&crawl);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("(refresh)"), "{err}");
    let refresh_requests = hub.requests().len();
    // About one request per repository plus the changed pages: each repository reads its
    // changed tags (newest first, 100 a page) and stops at the page that ends with an unchanged
    // one; plus the repository list.
    let bound = 1 + repos + changed_tags.len().div_ceil(100);
    eprintln!(
        "full crawl {full_requests} requests; refresh {refresh_requests} (bound {bound}) for {} changed tags",
        changed_tags.len()
    );
    assert!(
        refresh_requests <= bound,
        "{refresh_requests} requests, bound {bound}"
    );

    let refreshed = sb.dataset(&[]);
    // History: every digest ever seen is kept.
    for digest in before.keys() {
        assert!(refreshed.contains_key(digest), "{digest} was lost");
    }
    let deleted: BTreeSet<String> = old_pairs
        .iter()
        .map(|(_, t)| t.clone())
        .filter(|t| !new_pairs.iter().any(|(_, n)| n == t))
        .collect();
    for (digest, line) in &refreshed {
        let current = strings(&line["current"]);
        assert!(current.is_subset(&strings(&line["tags"])));
        for tag in &current {
            // Current is what Hub shows now; a deleted tag is only found by --full.
            assert!(
                new_pairs.contains(&(digest.clone(), tag.clone())) || deleted.contains(tag),
                "{tag} is current for {digest}, but Hub points it elsewhere"
            );
        }
    }
    for (digest, tag) in &new_pairs {
        let line = &refreshed[digest];
        assert!(
            strings(&line["current"]).contains(tag),
            "{tag} not current for {digest}"
        );
    }

    // --full re-reads everything and marks the deleted tags.
    sb.run(&["crawl", "--full", "--rps", "500", "--workers", "4"]);
    let full = sb.dataset(&[]);
    for (digest, line) in &full {
        let want = after
            .get(digest)
            .map(|v| strings(&v["tags"]))
            .unwrap_or_default();
        assert_eq!(strings(&line["current"]), want, "current of {digest}");
    }
    let current_only = sb.dataset(&["--current-only"]);
    assert_eq!(
        current_only.keys().collect::<BTreeSet<_>>(),
        after.keys().collect::<BTreeSet<_>>()
    );
}

#[test]
fn an_interrupted_refresh_resumes() {
    let hub = FakeHub::bind(FakeHubConfig {
        repos: 6,
        max_tags: 250,
        big_repo_tags: 400,
        ..FakeHubConfig::default()
    })
    .unwrap();
    let sb = Sandbox::new("resume");
    let url = hub.url();
    sb.run(&["crawl", "--hub-url", url.as_str(), "--rps", "500"]);
    hub.update(|c| {
        c.churn = Some(Churn {
            retag_permille: 300,
            added: 10,
            deleted_permille: 0,
            seed: 2,
        })
    });
    // A slow refresh, stopped with Ctrl-C after its first requests.
    hub.clear_requests();
    let child = sb
        .command(&["crawl", "--rps", "4", "--workers", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stop it once the refresh is under way: its signal handler is then in place.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while hub.requests().len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = sb.run(&["crawl", "--resume", "--rps", "500"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("(refresh)"));
    let data = sb.dataset(&[]);
    for (digest, v) in hub.truth() {
        let line = &data[&digest];
        assert!(
            strings(&v["tags"]).is_subset(&strings(&line["current"])),
            "{digest}: current {} lacks some of {}",
            line["current"],
            v["tags"]
        );
    }
}

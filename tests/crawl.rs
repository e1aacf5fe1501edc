//! End-to-end tests of `digestmap crawl`, `finalize` and `status`: the real binary against the
//! project's Docker Hub double (tests/support/fake_hub), never the internet.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fake_hub::{FakeHub, FakeHubConfig};
use support::pty::run_on_terminal;
use support::sandbox::{Sandbox, assert_code, assert_success, stderr};

impl Sandbox {
    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run digestmap")
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start digestmap")
    }

    /// Crawls `hub` with fast pacing; extra flags go after.
    fn crawl(&self, hub: &FakeHub, extra: &[&str]) -> Output {
        self.fast_crawl(&hub.url(), extra)
            .output()
            .expect("run digestmap")
    }

    /// `crawl --resume` to the end, then the dataset must equal the double's truth.
    fn resume_to_truth(&self, hub: &FakeHub) {
        let output = self.run(&["crawl", "--resume", "--rps", "500", "--retry-base-ms", "20"]);
        assert_success(&output, "crawl --resume");
        let out = self.finalize("resumed.ndjson");
        assert_same_dataset(&dataset(&out), &hub.truth());
    }

    fn finalize(&self, name: &str) -> PathBuf {
        let out = self.path(name);
        let output = self.run(&["finalize", "--out", out.to_str().unwrap()]);
        assert_success(&output, "finalize");
        out
    }
}

/// The dataset keyed by digest, with the time fields checked and removed.
fn dataset(path: &Path) -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeMap::new();
    let mut previous = String::new();
    for line in text.lines() {
        let mut value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let obj = value.as_object_mut().unwrap();
        let first = obj.remove("first_seen").unwrap();
        let last = obj.remove("last_seen").unwrap();
        let (first, last) = (first.as_str().unwrap(), last.as_str().unwrap());
        assert_eq!(first.len(), 20, "RFC 3339 UTC time: {first}");
        assert!(first.ends_with('Z') && first <= last, "{first} .. {last}");
        // `current` is checked here (a subset of `tags`) and left out of comparisons with the
        // double's truth, which only knows the tags.
        if let Some(current) = obj.remove("current") {
            let tags = obj["tags"].as_array().unwrap();
            for tag in current.as_array().unwrap() {
                assert!(tags.contains(tag), "current {tag} not among tags: {line}");
            }
        }
        let digest = obj["digest"].as_str().unwrap().to_owned();
        assert!(digest > previous, "lines sorted by digest");
        previous = digest.clone();
        out.insert(digest, value);
    }
    out
}

/// Asserts two datasets are equal, showing the first differences readably.
fn assert_same_dataset(got: &BTreeMap<String, Value>, want: &BTreeMap<String, Value>) {
    if got == want {
        return;
    }
    let mut report = Vec::new();
    for (digest, w) in want {
        match got.get(digest) {
            None => report.push(format!("missing {w}")),
            Some(g) if g != w => report.push(format!("differs:\n  got  {g}\n  want {w}")),
            _ => {}
        }
    }
    for (digest, g) in got {
        if !want.contains_key(digest) {
            report.push(format!("unexpected {g}"));
        }
    }
    let shown: Vec<_> = report.iter().take(8).cloned().collect();
    panic!(
        "dataset differs from the double's truth in {} digests (got {}, want {}):\n{}",
        report.len(),
        got.len(),
        want.len(),
        shown.join("\n")
    );
}

/// Waits until the double has answered `n` requests: the crawl is then under way (it holds the
/// store and its signal handler is in place), however slowly the machine started it.
fn wait_for_requests(hub: &FakeHub, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while hub.requests().len() < n {
        assert!(
            Instant::now() < deadline,
            "the crawl never made {n} requests"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The seed of a test's random choices: `DIGESTMAP_TEST_SEED` when set (to replay a failure),
/// else a fresh one. Printed either way, so that a failed run names the seed that replays it.
fn test_seed() -> u32 {
    let seed = match std::env::var("DIGESTMAP_TEST_SEED") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("DIGESTMAP_TEST_SEED={text:?} is not a u32")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
    };
    eprintln!("seeded with {seed}; replay with DIGESTMAP_TEST_SEED={seed}");
    seed
}

fn small_hub(config: FakeHubConfig) -> FakeHub {
    FakeHub::bind(config).unwrap()
}

fn small() -> FakeHubConfig {
    FakeHubConfig {
        repos: 5,
        max_tags: 120,
        big_repo_tags: 350,
        ..FakeHubConfig::default()
    }
}

/// `crawl`'s progress line: none when stderr is a pipe (the summary alone), and on a terminal a
/// line of repositories done of those the run knows, pages, tags and rate, cleared before the
/// summary.
#[test]
fn a_terminal_shows_the_crawl_progress_line_and_a_pipe_does_not() {
    let hub = small_hub(small());
    let repos = hub.total_repos() as u64;
    let piped = Sandbox::new("progress-pipe");
    let out = piped.crawl(&hub, &["--workers", "2"]);
    assert_success(&out, "crawl into a pipe");
    let err = stderr(&out);
    assert!(err.contains("finished"), "{err}");
    for word in ["repositories  pages", "req/s", "ETA"] {
        assert!(!err.contains(word), "{word}: {err}");
    }

    // At 8 requests a second the crawl's dozen pages last more than a second (the pacer spaces
    // every start): the display, redrawn every 200 ms, is drawn several times.
    let sandbox = Sandbox::new("progress-terminal");
    let url = hub.url();
    let (out, shown) = run_on_terminal(sandbox.command(&[
        "crawl",
        "--hub-url",
        &url,
        "--rps",
        "8",
        "--workers",
        "2",
    ]));
    assert_success(&out, "crawl on a terminal");
    assert_same_dataset(&dataset(&sandbox.finalize("terminal.ndjson")), &hub.truth());
    // `done/total repositories  pages P  tags T  R req/s` (indicatif redraws after `ESC [2K`).
    let counts: Vec<(u64, u64)> = shown
        .split("\u{1b}[2K")
        .filter_map(|draw| {
            draw.split_once(" repositories  pages ")?
                .0
                .rsplit(' ')
                .next()
        })
        .map(|fraction| {
            let (done, total) = fraction.split_once('/').expect("done/total");
            (done.parse().unwrap(), total.parse().unwrap())
        })
        .collect();
    assert!(
        counts.iter().any(|&(_, total)| total == repos),
        "{counts:?}"
    );
    assert!(counts.iter().any(|&(done, _)| done > 0), "{counts:?}");
    assert!(
        counts
            .iter()
            .all(|&(done, total)| done <= total && total <= repos),
        "{counts:?}"
    );
    assert!(
        counts.windows(2).all(|w| w[0].0 <= w[1].0),
        "done goes back: {counts:?}"
    );
    for draw in shown
        .split("\u{1b}[2K")
        .filter(|d| d.contains(" repositories  pages "))
    {
        assert!(draw.contains(" req/s"), "{draw:?}");
    }
    // Cleared before the summary, which follows.
    let (_, summary) = shown
        .rsplit_once("req/s")
        .expect("a progress line was drawn");
    assert!(summary.contains("finished"), "{summary}");
}

#[test]
fn full_crawl_equals_truth_and_finalize_is_deterministic() {
    let hub = small_hub(FakeHubConfig::default());
    let sb = Sandbox::new("full");
    let output = sb.crawl(&hub, &["--workers", "4"]);
    assert_success(&output, "crawl");
    let err = stderr(&output);
    assert!(err.contains("finished"), "summary: {err}");
    assert!(
        err.contains(&format!(
            "attestation manifests {}",
            hub.skipped_attestations()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("null digests {}", hub.skipped_null_digests())),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "invalid digests {}",
            hub.skipped_invalid_digests()
        )),
        "{err}"
    );
    assert!(err.contains(&format!("{} tags", hub.total_tags())), "{err}");

    let first = sb.finalize("a.ndjson");
    assert_same_dataset(&dataset(&first), &hub.truth());
    let second = sb.finalize("b.ndjson");
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap()
    );
    let stdout = sb.run(&["finalize", "--out", "-"]);
    assert_success(&stdout, "finalize to stdout");
    assert_eq!(stdout.stdout, std::fs::read(&first).unwrap());
    // No temporary files are left beside the dataset.
    let leftovers: Vec<_> = std::fs::read_dir(&sb.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Every request stayed on the double, and each page was fetched once.
    let pages: Vec<String> = hub
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.path_and_query.clone())
        .collect();
    let unique: BTreeSet<_> = pages.iter().collect();
    assert_eq!(pages.len(), unique.len(), "pages fetched twice");

    let status = sb.run(&["status"]);
    assert_success(&status, "status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("finished"), "{text}");
    assert!(text.contains("0 pending"), "{text}");
    assert!(
        text.contains(&format!("{} digests", hub.truth().len())),
        "{text}"
    );
}

#[test]
fn crawl_with_injected_faults_still_equals_truth() {
    let hub = small_hub(FakeHubConfig {
        fault_rate: 0.05,
        slow_delay: Duration::from_millis(300),
        // Enough pages (about 150) that 5% gives a handful of faults of several kinds.
        repos: 16,
        max_tags: 500,
        big_repo_tags: 4000,
        ..FakeHubConfig::default()
    });
    let sb = Sandbox::new("faults");
    let output = sb.crawl(&hub, &["--workers", "4"]);
    assert_success(&output, "crawl");
    let faults: Vec<String> = hub
        .requests()
        .iter()
        .filter_map(|r| r.fault.clone())
        .collect();
    eprintln!(
        "{} requests, faults injected: {faults:?}",
        hub.requests().len()
    );
    let kinds: BTreeSet<&String> = faults.iter().collect();
    assert!(
        faults.len() >= 4 && kinds.len() >= 3,
        "too few faults to prove anything: {faults:?}"
    );
    let out = sb.finalize("d.ndjson");
    assert_same_dataset(&dataset(&out), &hub.truth());
}

#[test]
fn kill_9_then_resume_equals_truth_with_bounded_refetching() {
    // About 70 pages at 40 a second: kills between 0.15 s and 1 s land mid-crawl.
    let hub = small_hub(FakeHubConfig::default());
    let sb = Sandbox::new("kill");
    let url = hub.url();
    let seed = test_seed();
    let workers = 3;
    let mut kills = 0;
    let mut state = seed;
    for round in 0..4 {
        let resume = round > 0 && sb.db().exists();
        let mut args = vec![
            "crawl",
            "--rps",
            "40",
            "--workers",
            "3",
            "--retry-base-ms",
            "20",
        ];
        if resume {
            args.push("--resume");
        } else {
            args.extend(["--hub-url", url.as_str()]);
        }
        let before = hub.requests().len();
        let mut child = sb.spawn(&args);
        if round == 0 {
            // The first crawl must have written its run before it is killed.
            wait_for_requests(&hub, before + 1);
        }
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let wait = Duration::from_millis(150 + u64::from(state >> 8) % 850);
        std::thread::sleep(wait);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let status = child.wait().unwrap();
        if status.success() {
            break;
        }
    }
    assert!(
        kills > 0,
        "no crawl was killed, so nothing was shown (replay with DIGESTMAP_TEST_SEED={seed})"
    );
    // Finish whatever is left.
    let output = sb.run(&["crawl", "--resume", "--rps", "500", "--retry-base-ms", "20"]);
    if output.status.code() == Some(2) && stderr(&output).contains("no unfinished crawl") {
        // A round already finished the crawl.
    } else {
        assert_success(&output, "final resume");
    }
    let out = sb.finalize("k.ndjson");
    assert_same_dataset(&dataset(&out), &hub.truth());

    let pages: Vec<String> = hub
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.path_and_query.clone())
        .collect();
    let unique: BTreeSet<_> = pages.iter().collect();
    let refetched = pages.len() - unique.len();
    eprintln!("{kills} kills, {refetched} pages fetched again");
    assert!(
        refetched <= kills * workers,
        "{refetched} pages fetched again after {kills} kills of {workers} workers"
    );
}

#[test]
fn request_starts_never_exceed_rps() {
    // python with 12 pages: enough requests for several windows of n + 1 starts.
    let hub = small_hub(FakeHubConfig {
        big_repo_tags: 1150,
        ..small()
    });
    let sb = Sandbox::new("rps");
    let url = hub.url();
    let rps = 8.0;
    let repo = "python".to_owned();
    let output = sb.run(&[
        "crawl",
        "--hub-url",
        &url,
        "--rps",
        "8",
        "--workers",
        "6",
        "--repo",
        &repo,
    ]);
    assert_success(&output, "crawl");
    let times: Vec<Instant> = hub.requests().iter().map(|r| r.at).collect();
    let n = rps as usize;
    // Fewer than n + 2 starts would leave the window check below with at most one window.
    assert!(
        times.len() >= n + 4,
        "too few requests to measure: {}",
        times.len()
    );
    // Any n+1 consecutive starts span at least n/rps seconds (5% for scheduling jitter).
    for window in times.windows(n + 1) {
        let span = window[n].duration_since(window[0]);
        assert!(
            span.as_secs_f64() >= (n as f64 / rps) * 0.95,
            "{} requests started within {span:?}",
            n + 1
        );
    }
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(gap.as_secs_f64() >= 0.9 / rps, "two starts {gap:?} apart");
    }
}

#[test]
fn after_a_429_nothing_arrives_before_retry_after() {
    let hub = small_hub(FakeHubConfig {
        force_429: [2, 9].into_iter().collect(),
        force_429_retry_after: 2,
        ..small()
    });
    let sb = Sandbox::new("429");
    let url = hub.url();
    // At 20 requests a second a request starts 50 ms after the one before, long after the 429
    // answer has reached the crawler: any request inside the pause would be a pacing bug.
    let output = sb.run(&["crawl", "--hub-url", &url, "--rps", "20", "--workers", "4"]);
    assert_success(&output, "crawl");
    assert!(
        stderr(&output).contains("429 answers 2"),
        "{}",
        stderr(&output)
    );
    let requests = hub.requests();
    assert_eq!(
        requests.iter().filter(|r| r.status == 429).count(),
        2,
        "the double answered both forced 429s"
    );
    for limited in requests.iter().filter(|r| r.status == 429) {
        let early: Vec<_> = requests
            .iter()
            .filter(|r| r.at > limited.at && r.at < limited.at + Duration::from_millis(1950))
            .map(|r| r.path_and_query.clone())
            .collect();
        assert!(
            early.is_empty(),
            "requests within Retry-After of #{}: {early:?}",
            limited.seq
        );
    }
    let out = sb.finalize("r.ndjson");
    assert_same_dataset(&dataset(&out), &hub.truth());
}

#[test]
fn off_host_next_is_refused_and_the_crawl_pages_on_the_origin() {
    // A second listener stands in for the foreign host, to prove nothing ever reaches it.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let evil = format!(
        "http://{}/v2/namespaces/library/repositories/x/tags?page=2",
        trap.local_addr().unwrap()
    );
    let hub = small_hub(small());
    let repo = hub.repo_names()[0].clone();
    hub.update(|c| c.off_host_next = Some((repo.clone(), evil.clone())));
    let sb = Sandbox::new("offhost");
    let output = sb.crawl(&hub, &["--workers", "2"]);
    // The link is refused and named; the following pages come from the origin, so nothing is
    // lost and nothing is left for --resume.
    assert_code(&output, 0, "crawl with an off-host next link");
    let err = stderr(&output);
    assert!(err.contains("refused to follow"), "{err}");
    assert!(err.contains(&evil), "{err}");
    assert!(
        trap.accept().is_err(),
        "a connection reached the foreign host"
    );
    let out = sb.finalize("r.ndjson");
    assert_same_dataset(&dataset(&out), &hub.truth());
}

#[test]
fn a_malformed_page_fails_its_job_and_the_rest_goes_on() {
    let hub = small_hub(small());
    let repo = hub.repo_names()[2].clone();
    let broken = format!("/repositories/{repo}/tags?page=1");
    hub.update(|c| c.broken_paths = vec![broken.clone()]);
    let sb = Sandbox::new("malformed");
    let output = sb.crawl(&hub, &["--workers", "3"]);
    assert_code(&output, 3, "crawl with a broken page");
    let err = stderr(&output);
    assert!(err.contains("not a valid Hub page"), "{err}");
    assert!(err.contains(&broken), "names the URL: {err}");
    // Every other repository was stored.
    let out = sb.finalize("partial.ndjson");
    let got = dataset(&out);
    let others = hub
        .truth()
        .into_values()
        .filter(|v| {
            v["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| !t.as_str().unwrap().starts_with(&format!("{repo}:")))
        })
        .count();
    assert!(
        got.len() >= others,
        "{} of at least {others} digests stored",
        got.len()
    );

    hub.update(|c| c.broken_paths.clear());
    sb.resume_to_truth(&hub);
}

#[test]
fn an_endless_body_is_cut_off() {
    let hub = small_hub(small());
    let repo = hub.repo_names()[0].clone();
    hub.update(|c| c.huge_paths = vec![format!("/repositories/{repo}/tags")]);
    let sb = Sandbox::new("huge");
    let output = sb.crawl(&hub, &["--workers", "2"]);
    assert_code(&output, 3, "crawl with an endless body");
    assert!(stderr(&output).contains("exceeds"), "{}", stderr(&output));
}

#[test]
fn store_state_errors_exit_2() {
    let hub = small_hub(small());
    let sb = Sandbox::new("state");
    let url = hub.url();

    // Nothing to resume yet, and no store is created for it.
    let output = sb.run(&["crawl", "--resume", "--hub-url", &url]);
    assert_code(&output, 2, "resume without a store");
    assert!(stderr(&output).contains("no store"), "{}", stderr(&output));
    assert!(!sb.db().exists(), "--resume created a store");

    // A crawl in progress holds the store: a second process is refused, and the first is not hurt.
    // About 10 pages at 4 a second; once the double has seen a request, the crawl holds the store.
    let mut first = sb.spawn(&["crawl", "--hub-url", &url, "--rps", "4", "--workers", "2"]);
    wait_for_requests(&hub, 1);
    let second = sb.run(&["crawl", "--resume"]);
    assert_code(&second, 2, "second process");
    assert!(
        stderr(&second).contains("in use by another digestmap process"),
        "{}",
        stderr(&second)
    );
    // status reads beside the running crawl.
    let status = sb.run(&["status"]);
    assert_success(&status, "status beside a crawl");
    assert!(String::from_utf8_lossy(&status.stdout).contains("running"));
    first.kill().unwrap();
    first.wait().unwrap();

    // An unfinished crawl is not silently restarted.
    let output = sb.run(&["crawl", "--hub-url", &url]);
    assert_code(&output, 2, "crawl on an unfinished store");
    assert!(stderr(&output).contains("--resume"), "{}", stderr(&output));
    let output = sb.run(&["crawl", "--resume", "--hub-url", "http://127.0.0.1:1"]);
    assert_code(&output, 2, "resume with another hub");

    // Bad flags.
    let other = Sandbox::new("flags");
    for args in [
        vec!["crawl", "--hub-url", "http://hub.docker.com"],
        vec!["crawl", "--hub-url", url.as_str(), "--rps", "0"],
        vec!["crawl", "--hub-url", url.as_str(), "--workers", "0"],
        vec!["crawl", "--hub-url", url.as_str(), "--repo", "../etc"],
        vec!["crawl", "--no-such-flag"],
    ] {
        let output = other.run(&args);
        assert_code(&output, 2, &format!("{args:?}"));
        assert!(
            stderr(&output).contains("error"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let output = other.run(&["finalize", "--out", "x.ndjson"]);
    assert_code(&output, 2, "finalize without a store");
    assert!(stderr(&output).contains("no store"), "{}", stderr(&output));
}

#[test]
fn ctrl_c_stops_cleanly_and_resume_finishes() {
    let hub = small_hub(small());
    let sb = Sandbox::new("sigint");
    let url = hub.url();
    // About 10 pages at 4 a second: Ctrl-C after the third request lands mid-crawl.
    let child = sb.spawn(&["crawl", "--hub-url", &url, "--rps", "4", "--workers", "2"]);
    wait_for_requests(&hub, 3);
    let pid = child.id() as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let output = child.wait_with_output().unwrap();
    assert_code(&output, 130, "crawl after Ctrl-C");
    assert!(
        stderr(&output).contains("crawl --resume"),
        "{}",
        stderr(&output)
    );
    sb.resume_to_truth(&hub);
}

#[test]
fn only_named_repositories() {
    let hub = small_hub(small());
    let sb = Sandbox::new("repo");
    let names = hub.repo_names();
    let output = sb.crawl(&hub, &["--repo", &names[0], "--repo", &names[3]]);
    assert_success(&output, "crawl");
    let out = sb.finalize("r.ndjson");
    let got = dataset(&out);
    let want: BTreeMap<String, Value> = hub
        .truth()
        .into_iter()
        .filter_map(|(digest, mut v)| {
            let tags: Vec<Value> = v["tags"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| {
                    let t = t.as_str().unwrap();
                    t.starts_with(&format!("{}:", names[0]))
                        || t.starts_with(&format!("{}:", names[3]))
                })
                .cloned()
                .collect();
            (!tags.is_empty()).then(|| {
                v["tags"] = Value::Array(tags);
                (digest, v)
            })
        })
        .collect();
    // Indexes of a manifest may come from repositories not crawled; compare everything else.
    let strip = |m: &BTreeMap<String, Value>| -> BTreeMap<String, Value> {
        m.iter()
            .map(|(k, v)| {
                let mut v = v.clone();
                v.as_object_mut().unwrap().remove("indexes");
                (k.clone(), v)
            })
            .collect()
    };
    assert!(!want.is_empty(), "the named repositories have tags");
    assert_same_dataset(&strip(&got), &strip(&want));
    assert!(hub.requests().iter().all(|r| {
        !r.path_and_query
            .ends_with("/repositories?page=1&page_size=100")
    }));
}

#[test]
fn adaptive_pacing_spends_the_window_without_429s() {
    // A window of 10 requests per 2 s (Hub's 180 per 60 s, scaled down) and --rps 20: the crawler
    // must learn the window from X-RateLimit-* and wait for its reset instead of sending into 429s.
    let (limit, window) = (10u32, Duration::from_secs(2));
    let hub = small_hub(FakeHubConfig {
        rate_limit: Some((limit, window)),
        // Many small repositories, so that the window, not one long repository, sets the pace.
        repos: 24,
        max_tags: 150,
        big_repo_tags: 150,
        ..FakeHubConfig::default()
    });
    let sb = Sandbox::new("window");
    let url = hub.url();
    let output = sb.run(&["crawl", "--hub-url", &url, "--rps", "20", "--workers", "4"]);
    assert_success(&output, "crawl");
    let requests = hub.requests();
    // Only a crawl that needs several windows shows that the window, not luck, set the pace.
    assert!(
        requests.len() > 3 * limit as usize,
        "{} requests do not outlast the first windows",
        requests.len()
    );
    let first = requests[0].at;
    let late_429s: Vec<u64> = requests
        .iter()
        .filter(|r| r.status == 429 && r.at > first + window)
        .map(|r| r.seq)
        .collect();
    assert!(
        late_429s.is_empty(),
        "429s after the first window: {late_429s:?}"
    );
    let allowed_rate = f64::from(limit) / window.as_secs_f64();
    let ideal = requests.len() as f64 / allowed_rate;
    let took = requests
        .last()
        .unwrap()
        .at
        .duration_since(first)
        .as_secs_f64();
    eprintln!(
        "{} requests in {took:.2}s; pages / allowed rate = {ideal:.2}s",
        requests.len()
    );
    assert!(
        took <= ideal * 1.05,
        "{} requests took {took:.2}s, more than 5% over {ideal:.2}s",
        requests.len()
    );
    let out = sb.finalize("w.ndjson");
    assert_same_dataset(&dataset(&out), &hub.truth());
}

#[test]
fn anonymous_paging_cap_is_covered_completely() {
    // python has 2500 tags; anonymous listings stop at offset 1000.
    let hub = small_hub(FakeHubConfig {
        anonymous_cap: true,
        ..FakeHubConfig::default()
    });
    let sb = Sandbox::new("cap");
    let output = sb.crawl(&hub, &["--workers", "4"]);
    assert_success(&output, "crawl under the anonymous cap");
    let err = stderr(&output);
    let line = err
        .lines()
        .find(|l| l.trim_start().starts_with("library/python:"))
        .unwrap_or_else(|| panic!("no coverage line for python: {err}"));
    eprintln!("{line}");
    assert!(line.contains("complete, 2500 of 2500 tags"), "{line}");
    assert!(line.contains("capped at 1000 tags"), "{line}");
    // The cap is met once (this origin is not known to cap); from then on every view stops
    // before it instead of asking for the page Hub refuses.
    assert_eq!(
        hub.requests().iter().filter(|r| r.status == 403).count(),
        1,
        "the cap was met once"
    );
    let out = sb.finalize("cap.ndjson");
    assert_same_dataset(&dataset(&out), &hub.truth());
    let status = sb.run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("library/python: complete"), "{text}");
}

/// The 403s the double answered since its requests were last cleared, by request target.
fn refused(hub: &FakeHub) -> Vec<String> {
    hub.requests()
        .into_iter()
        .filter(|r| r.status == 403)
        .map(|r| r.path_and_query)
        .collect()
}

#[test]
fn a_capped_repository_list_costs_one_403_then_none() {
    // The double is not Docker Hub's origin (where the cap is known from the start, a table test
    // of `policy::expected_caps`), so the first crawl learns the repository list's cap from
    // Hub's 403 on page 2; the descending list then stops at offset 100 without asking, and a
    // later crawl of this origin asks for no page past the cap at all.
    let hub = small_hub(FakeHubConfig {
        anonymous_cap: true,
        repos: 160,
        max_tags: 8,
        big_repo_tags: 8,
        ..FakeHubConfig::default()
    });
    let sb = Sandbox::new("repocap403");
    let output = sb.crawl(&hub, &["--workers", "4"]);
    assert_success(&output, "first crawl");
    let first = refused(&hub);
    assert_eq!(first.len(), 1, "one 403, the cap learned: {first:?}");
    assert!(
        first[0].contains("/repositories?page=2&") && first[0].contains("ordering=name"),
        "the ascending list's page 2: {first:?}"
    );
    // Read from both ends, the capped list is whole.
    assert_capped_list_whole(&sb, &hub, "the first crawl");

    for (what, extra) in [("a refresh", &[][..]), ("a full crawl", &["--full"][..])] {
        hub.clear_requests();
        let output = sb.crawl(&hub, &[&["--workers", "4"], extra].concat());
        assert_success(&output, what);
        assert_eq!(refused(&hub), Vec::<String>::new(), "{what}: no 403");
        let lists: Vec<String> = hub
            .requests()
            .into_iter()
            .map(|r| r.path_and_query)
            .filter(|p| p.contains("/library/repositories?"))
            .collect();
        assert_eq!(lists.len(), 2, "{what}: page 1 each way: {lists:?}");
        assert!(
            lists.iter().any(|p| p.contains("ordering=-name")),
            "{lists:?}"
        );
        assert_capped_list_whole(&sb, &hub, what);
    }
}

/// The dataset equals the double's truth, and `status` says the capped list was read whole.
fn assert_capped_list_whole(sb: &Sandbox, hub: &FakeHub, what: &str) {
    let out = sb.finalize("repos.ndjson");
    assert_same_dataset(&dataset(&out), &hub.truth());
    let status = sb.run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("160 listed, 160 done (Hub counts 160; the list was capped)"),
        "{what}: {text}"
    );
}

#[test]
fn a_cap_learned_at_one_hub_url_is_not_presumed_at_another() {
    let config = FakeHubConfig {
        repos: 2,
        max_tags: 20,
        big_repo_tags: 1500,
        ..FakeHubConfig::default()
    };
    let capped = small_hub(FakeHubConfig {
        anonymous_cap: true,
        ..config.clone()
    });
    let open = small_hub(config);
    let sb = Sandbox::new("caps-per-origin");
    let python_plain = |p: &str| {
        p.contains("/repositories/python/tags?") && !p.contains("ordering=") && !p.contains("name=")
    };

    // The first origin caps: learned from its one 403.
    assert_success(
        &sb.crawl(&capped, &["--workers", "2"]),
        "crawl of the capped origin",
    );
    assert_eq!(refused(&capped).len(), 1, "{:?}", refused(&capped));

    // The second origin does not cap: its plain listing is read to the end (page 15), not
    // stopped at offset 1000 as the first origin's cap would have it.
    let output = sb.crawl(&open, &["--workers", "2", "--full"]);
    assert_success(&output, "full crawl of the other origin");
    let asked: Vec<String> = open
        .requests()
        .into_iter()
        .map(|r| r.path_and_query)
        .collect();
    assert!(
        asked
            .iter()
            .any(|p| python_plain(p) && p.contains("page=15&")),
        "the plain listing was not read past offset 1000: {asked:?}"
    );
    assert!(
        !asked.iter().any(|p| p.contains("ordering=-last_updated")),
        "no second view was needed"
    );
    let out = sb.finalize("open.ndjson");
    assert_same_dataset(&dataset(&out), &open.truth());

    // Back at the first origin, its cap is still known: no page past it is asked for.
    capped.clear_requests();
    let output = sb.crawl(&capped, &["--workers", "2", "--full"]);
    assert_success(&output, "full crawl of the capped origin again");
    assert_eq!(refused(&capped), Vec::<String>::new());
    let out = sb.finalize("capped.ndjson");
    assert_same_dataset(&dataset(&out), &capped.truth());
}

/// A plain HTTP GET of the double's JSON (the tests' own client, no crawler code).
fn get_json(hub: &FakeHub, path: &str) -> Value {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(hub.addr()).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8(response).unwrap();
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    serde_json::from_str(body).unwrap()
}

#[test]
fn tags_moving_during_the_crawl_are_not_missed() {
    let hub = small_hub(FakeHubConfig::default());
    let sb = Sandbox::new("shift");
    let url = hub.url();
    // python: 25 pages at 8 a second. While page 6 is read, three tags of page 20 are re-pushed:
    // they jump to the top, into pages already read, and vanish from the unread ones. Only
    // re-reading the listing finds them.
    let page20 = get_json(
        &hub,
        "/v2/namespaces/library/repositories/python/tags?page=20&page_size=100",
    );
    let moved: Vec<String> = page20["results"].as_array().unwrap()[10..13]
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    let child = sb.spawn(&[
        "crawl",
        "--hub-url",
        &url,
        "--rps",
        "8",
        "--workers",
        "2",
        "--repo",
        "python",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !hub
        .requests()
        .iter()
        .any(|r| r.path_and_query.contains("tags?page=6&"))
    {
        assert!(Instant::now() < deadline, "the crawl never reached page 6");
        std::thread::sleep(Duration::from_millis(20));
    }
    hub.update(|c| {
        c.touched = moved
            .iter()
            .map(|t| ("python".to_owned(), t.clone()))
            .collect();
    });
    let output = child.wait_with_output().unwrap();
    assert_success(&output, "crawl");
    let err = stderr(&output);
    assert!(
        err.contains("the listing changed while it was read"),
        "{err}"
    );
    assert!(err.contains("read 2 times"), "{err}");
    let out = sb.finalize("shift.ndjson");
    let got = dataset(&out);
    let want: BTreeMap<String, Value> = hub
        .truth()
        .into_iter()
        .filter(|(_, v)| v["tags"][0].as_str().unwrap().starts_with("python:"))
        .collect();
    assert_same_dataset(&got, &want);
}

/// A small tmpfs at `dir` (needs root), unmounted on drop.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self {
            dir: dir.to_owned(),
        })
    }

    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn a_full_disk_ends_in_one_clear_error_and_the_crawl_resumes() {
    let hub = small_hub(FakeHubConfig::default());
    let sb = Sandbox::new("disk");
    let mount = sb.path("small");
    // The store lives on a 3 MB disk; the whole crawl needs about 10 MB.
    let Some(disk) = SmallDisk::mount(&mount, "3m") else {
        // A test that silently does nothing would pass without showing anything: skipping must
        // be asked for.
        assert!(
            std::env::var_os("DIGESTMAP_TEST_NO_ROOT").is_some(),
            "mounting a tmpfs needs root; run as root, or set DIGESTMAP_TEST_NO_ROOT=1 to skip this test"
        );
        eprintln!("SKIPPED (DIGESTMAP_TEST_NO_ROOT): mounting a tmpfs needs root");
        return;
    };
    let db = mount.join("store.redb");
    let db_arg = db.to_str().unwrap();
    let url = hub.url();
    let run = |args: &[&str]| sb.command_on(&db, args).output().unwrap();
    let output = run(&["crawl", "--hub-url", &url, "--rps", "500"]);
    assert_code(&output, 1, "crawl onto a full disk");
    let err = stderr(&output);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    assert!(errors[0].contains("No space left on device"), "{err}");
    assert!(errors[0].contains(db_arg), "names the store: {err}");
    assert!(err.contains("crawl --resume"), "{err}");

    disk.grow("200m");
    let output = run(&["crawl", "--resume", "--rps", "500"]);
    assert_success(&output, "resume once there is room");
    let out = sb.path("disk.ndjson");
    let output = run(&["finalize", "--out", out.to_str().unwrap()]);
    assert_success(&output, "finalize");
    assert_same_dataset(&dataset(&out), &hub.truth());
}

/// The `current` tags of every dataset line, as `repo:tag` strings.
fn current_tags(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .flat_map(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            value["current"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every tag of every dataset line, as `repo:tag` strings.
fn all_tags(path: &Path) -> BTreeSet<String> {
    dataset(path)
        .into_values()
        .flat_map(|v| {
            v["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Hub's 404 for a repository it does not have.
fn not_found_body(repo: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "message": "httperror 404: object not found",
        "errinfo": {"namespace": "library", "repository": repo}
    }))
    .unwrap()
}

#[test]
fn a_repository_hub_does_not_have_does_not_lock_the_store() {
    let hub = small_hub(small());
    let sb = Sandbox::new("typo");
    let real = hub.repo_names()[0].clone();
    let typo = "no-such-repo";
    let output = sb.crawl(&hub, &["--repo", &real, "--repo", typo]);
    assert_code(&output, 0, "crawl with a --repo Hub does not have");
    let err = stderr(&output);
    assert!(
        err.contains(&format!("library/{typo} is not on Hub")),
        "{err}"
    );
    assert!(err.contains("not on Hub: 1 repositories"), "{err}");
    assert!(err.contains("failed jobs: 0"), "{err}");
    // One request: a 404 on page 1 is an answer, not a fault to try again.
    let asked = hub
        .requests()
        .iter()
        .filter(|r| r.path_and_query.contains(typo))
        .count();
    assert_eq!(asked, 1, "requests for the missing repository");
    // The real repository was crawled whole.
    let out = sb.finalize("t.ndjson");
    let tags = all_tags(&out);
    assert!(!tags.is_empty());
    assert!(tags.iter().all(|t| t.starts_with(&format!("{real}:"))));

    let status = sb.run(&["status"]);
    assert_success(&status, "status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains(": finished"), "{text}");
    assert!(
        text.contains(&format!("library/{typo}: never seen on Hub")),
        "{text}"
    );
    assert!(text.contains("0 failed"), "{text}");
    // What the run recorded of the missing repository is a sound record.
    assert_success(
        &sb.run(&["check"]),
        "check of a store with a missing repository",
    );

    // The run is finished: nothing to resume, and a new crawl starts (a refresh) and finishes.
    let resume = sb.run(&["crawl", "--resume"]);
    assert_code(&resume, 2, "crawl --resume after a finished run");
    assert!(stderr(&resume).contains("no unfinished crawl"));
    let again = sb.crawl(&hub, &["--repo", &real, "--repo", typo]);
    assert_code(&again, 0, "a second crawl");
}

#[test]
fn a_repository_removed_from_hub_is_marked_vanished() {
    let hub = small_hub(small());
    let sb = Sandbox::new("vanish");
    assert_success(&sb.crawl(&hub, &[]), "first crawl");
    let gone = hub.repo_names()[1].clone();
    let before = sb.finalize("before.ndjson");
    let gone_tags: BTreeSet<String> = current_tags(&before)
        .into_iter()
        .filter(|t| t.starts_with(&format!("{gone}:")))
        .collect();
    assert!(!gone_tags.is_empty(), "{gone} has current tags at first");

    // Hub still lists the repository but no longer has it: removed between the two reads.
    hub.update(|c| {
        c.override_paths = vec![(
            format!("/repositories/{gone}/tags?page=1&"),
            404,
            not_found_body(&gone),
        )]
    });
    let output = sb.crawl(&hub, &[]);
    assert_code(&output, 0, "refresh with a repository removed");
    let err = stderr(&output);
    assert!(
        err.contains(&format!("library/{gone} is no longer on Hub")),
        "{err}"
    );
    assert!(
        err.contains(&format!("library/{gone}: vanished at"))
            && err.contains(&format!(
                "{} stored tags, of which {} were current and no longer are",
                gone_tags.len(),
                gone_tags.len()
            )),
        "{err}"
    );

    let after = sb.finalize("after.ndjson");
    let current = current_tags(&after);
    assert!(
        current.iter().all(|t| !t.starts_with(&format!("{gone}:"))),
        "tags of a vanished repository stay current"
    );
    // Nothing is forgotten: its digests keep their tags, and the other repositories stay current.
    let tags = all_tags(&after);
    assert!(gone_tags.is_subset(&tags));
    let others_before: BTreeSet<String> = current_tags(&before)
        .into_iter()
        .filter(|t| !t.starts_with(&format!("{gone}:")))
        .collect();
    assert_eq!(
        others_before, current,
        "the other repositories' current tags"
    );
    let status = sb.run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!("library/{gone}: vanished at")),
        "{text}"
    );
    assert!(text.contains("1 not on Hub"), "{text}");
}

#[test]
fn a_listing_that_shrinks_while_read_ends_its_view() {
    let hub = small_hub(small());
    let sb = Sandbox::new("shrink");
    // A repository with more than one page of tags.
    let repo = hub
        .repo_names()
        .into_iter()
        .find(|name| {
            let page = get_json(
                &hub,
                &format!("/v2/namespaces/library/repositories/{name}/tags?page=1&page_size=100"),
            );
            page["count"].as_u64().unwrap() > 100
        })
        .expect("the small double has a repository with several pages");
    hub.clear_requests();
    let page_2 = format!("/repositories/{repo}/tags?page=2&");
    hub.update(|c| {
        c.override_paths = vec![(
            page_2.clone(),
            404,
            br#"{"message":"httperror 404: page not found","errinfo":{}}"#.to_vec(),
        )]
    });
    let output = sb.crawl(&hub, &["--repo", &repo]);
    let err = stderr(&output);
    // Known incomplete: its own exit code, with the gap named.
    assert_code(&output, 4, "crawl of a listing that ends early");
    assert!(err.contains("failed jobs: 0"), "{err}");
    assert!(
        err.contains(&format!("library/{repo}: 100 of the ")),
        "the gap is named: {err}"
    );
    assert!(err.contains("the listing shrank"), "{err}");
    // Planned as at the end of a view: the listing came up short, so it was read again (as
    // often as a changed listing is), then the repository is reported incomplete.
    assert!(
        err.contains(&format!("library/{repo}: INCOMPLETE")),
        "{err}"
    );
    let first_pages = hub
        .requests()
        .iter()
        .filter(|r| {
            r.path_and_query
                .contains(&format!("/repositories/{repo}/tags?page=1&"))
        })
        .count();
    assert_eq!(
        first_pages, 3,
        "the plain listing read once and re-read twice"
    );
}

#[test]
fn skip_failed_gives_up_failed_jobs_and_the_run_finishes() {
    let hub = small_hub(small());
    let repo = hub.repo_names()[2].clone();
    let broken = format!("/repositories/{repo}/tags?page=1&");
    hub.update(|c| c.broken_paths = vec![broken.clone()]);
    let sb = Sandbox::new("skip");

    let without_resume = sb.crawl(&hub, &["--skip-failed"]);
    assert_code(&without_resume, 2, "--skip-failed without --resume");
    assert!(!sb.db().exists(), "a usage error creates no store");

    let output = sb.crawl(&hub, &[]);
    assert_code(&output, 3, "crawl with a broken page");
    assert!(
        stderr(&output).contains("--skip-failed"),
        "{}",
        stderr(&output)
    );

    // The page is still broken: --resume alone fails again; --skip-failed gives it up.
    let again = sb.run(&["crawl", "--resume", "--rps", "500", "--retry-base-ms", "20"]);
    assert_code(&again, 3, "crawl --resume of a job that still fails");
    hub.clear_requests();
    let skipped = sb.run(&[
        "crawl",
        "--resume",
        "--skip-failed",
        "--rps",
        "500",
        "--retry-base-ms",
        "20",
    ]);
    // The run finishes, knowing the skipped repository is incomplete (exit 4, gap named).
    assert_code(&skipped, 4, "crawl --resume --skip-failed");
    let err = stderr(&skipped);
    assert!(
        err.contains(
            "skipped: 1 failed jobs given up with --skip-failed; the result may be incomplete"
        ),
        "{err}"
    );
    assert!(err.contains(&broken), "names the skipped page: {err}");
    assert!(
        err.contains(&format!(
            "library/{repo}: its listing was not read to the end"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("library/{repo}: INCOMPLETE")),
        "{err}"
    );
    assert!(
        hub.requests()
            .iter()
            .all(|r| !r.path_and_query.contains(&broken)),
        "a skipped job is not fetched again"
    );

    let status = sb.run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains(": finished"), "{text}");
    assert!(text.contains("skipped: 1 failed jobs"), "{text}");
    assert!(text.contains(&broken), "{text}");
    assert!(text.contains("0 failed"), "{text}");
    assert_success(&sb.run(&["check"]), "check of a store with skipped jobs");

    // The store is not locked: a new crawl starts, and once Hub answers, the gap is filled.
    hub.update(|c| c.broken_paths.clear());
    let full = sb.crawl(&hub, &["--full"]);
    assert_success(&full, "a new full crawl");
    assert!(!stderr(&full).contains("skipped: 1"), "{}", stderr(&full));
    let out = sb.finalize("s.ndjson");
    assert_same_dataset(&dataset(&out), &hub.truth());
}

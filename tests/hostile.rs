//! Hostile and broken answers, end to end: the real `digestmap` binary against the Docker Hub
//! double (tests/support/fake_hub), which serves off-host and scheme-changing redirects and
//! `next` links, endless and trickling bodies, deeply nested JSON, invalid UTF-8, absurd counts
//! and page numbers, and tag names and digests no registry would accept.
//!
//! Every case must end in a bounded, clear outcome: the job that met the hostile answer fails
//! (exit 3, the job listed with its URL), its bad records are skipped and counted, or the crawl
//! routes around it (an off-host `next` link, a rate-limit header asking for decades), as the
//! README documents. Never a crash, a hang, unbounded memory, or a request outside the Hub origin. Each
//! run is measured: a watchdog kills a crawl that outlives [`DEADLINE`] (so a hang fails the test
//! instead of stalling it), and `wait4` reports the process's peak memory, checked against
//! [`MAX_RSS`].

mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::fake_hub::{FakeHub, FakeHubConfig};
use support::measured::run_watched;
use support::sandbox::Sandbox;

/// Longest a crawl of these small doubles may take, failures and retries included.
const DEADLINE: Duration = Duration::from_secs(90);
/// Most memory a crawl may hold at its peak. The endless body is 512 MiB; the body cap is 16 MiB.
const MAX_RSS: u64 = 160 * 1024 * 1024;
/// Request timeout of every run: a hostile answer must not stall a job for the default minute.
const TIMEOUT_MS: &str = "5000";

/// How a `digestmap` run ended.
struct Run {
    /// The exit code; `None` when a signal (the watchdog) ended it.
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
    /// Peak resident memory in bytes.
    max_rss: u64,
}

impl Sandbox {
    /// Runs `digestmap ARGS`, measured and under the watchdog.
    fn run(&self, args: &[&str]) -> Run {
        let run = run_watched(self.command(args), DEADLINE);
        Run {
            code: run.code,
            // Raw bytes from a hostile page must not reach the terminal: stderr is checked to be
            // UTF-8 with no escape characters by `bounded`.
            stderr: String::from_utf8(run.stderr).expect("stderr is UTF-8"),
            elapsed: run.elapsed,
            max_rss: run.max_rss,
        }
    }

    /// Crawls `hub` quickly: high rate, short backoffs, short request timeout.
    fn crawl(&self, hub: &FakeHub, extra: &[&str]) -> Run {
        let url = hub.url();
        let mut args = vec![
            "crawl",
            "--hub-url",
            &url,
            "--rps",
            "500",
            "--retry-base-ms",
            "20",
            "--workers",
            "2",
            "--request-timeout-ms",
            TIMEOUT_MS,
        ];
        args.extend_from_slice(extra);
        bounded(self.run(&args), "crawl")
    }

    /// The finalized dataset, keyed by digest, without its time fields.
    fn dataset(&self) -> BTreeMap<String, Value> {
        let out = self.dir.join("digests.ndjson");
        let run = bounded(
            self.run(&["finalize", "--out", out.to_str().unwrap()]),
            "finalize",
        );
        assert_eq!(run.code, Some(0), "finalize: {}", run.stderr);
        std::fs::read_to_string(out)
            .unwrap()
            .lines()
            .map(|line| {
                let mut v: Value = serde_json::from_str(line).unwrap();
                let obj = v.as_object_mut().unwrap();
                obj.remove("first_seen");
                obj.remove("last_seen");
                // `current` is a subset of `tags` (tests/crawl.rs checks it in full); like the
                // times, the double's truth does not hold it.
                if let Some(current) = obj.remove("current") {
                    let tags = obj["tags"].as_array().unwrap();
                    assert!(current.as_array().unwrap().iter().all(|t| tags.contains(t)));
                }
                (obj["digest"].as_str().unwrap().to_owned(), v)
            })
            .collect()
    }
}

/// Checks what every run must satisfy, whatever it met: it ended by itself, in time, within the
/// memory bound, and wrote nothing a terminal would interpret.
fn bounded(run: Run, what: &str) -> Run {
    assert!(
        run.code.is_some(),
        "{what} was killed after {:?} (a hang)\nstderr:\n{}",
        run.elapsed,
        run.stderr
    );
    assert_ne!(run.code, Some(101), "{what} panicked:\n{}", run.stderr);
    assert!(
        run.max_rss < MAX_RSS,
        "{what} peaked at {} MiB\nstderr:\n{}",
        run.max_rss >> 20,
        run.stderr
    );
    assert!(
        !run.stderr.contains('\u{1b}'),
        "{what} echoed an escape character:\n{:?}",
        run.stderr
    );
    run
}

/// Asserts a crawl ended with failed jobs (exit 3), each given URL listed among them.
fn assert_failed_jobs(run: &Run, urls: &[&str], reason: &str) {
    assert_eq!(run.code, Some(3), "exit code\nstderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("failed jobs: {}", urls.len())),
        "{} failed jobs expected:\n{}",
        urls.len(),
        run.stderr
    );
    for url in urls {
        let listed = run
            .stderr
            .lines()
            .any(|l| l.trim_start().starts_with('#') && l.contains(url) && l.contains(reason));
        assert!(
            listed,
            "no failed job naming {url} with {reason:?}:\n{}",
            run.stderr
        );
    }
}

/// A small double: a few repositories of a few pages each.
fn small_hub() -> FakeHub {
    FakeHub::bind(FakeHubConfig {
        repos: 4,
        max_tags: 60,
        big_repo_tags: 150,
        ..FakeHubConfig::default()
    })
    .unwrap()
}

/// The first tags page of `repo`, as the crawler asks for it (and as a path substring).
fn first_page(repo: &str) -> String {
    format!("/v2/namespaces/library/repositories/{repo}/tags?page=1&")
}

/// How many requests the double saw whose target contains `part`.
fn requests_to(hub: &FakeHub, part: &str) -> Vec<u16> {
    hub.requests()
        .iter()
        .filter(|r| r.path_and_query.contains(part))
        .map(|r| r.status)
        .collect()
}

/// A listener standing in for a foreign host: anything reaching it is a failure.
fn trap() -> (TcpListener, String) {
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let url = format!(
        "http://{}/v2/namespaces/library/repositories/x/tags?page=1&page_size=100",
        trap.local_addr().unwrap()
    );
    (trap, url)
}

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// A valid index tag object pointing at `index`, with one linux/amd64 manifest.
fn good_tag(name: &str, index: &str, manifest: &str) -> Value {
    json!({"name": name, "digest": index,
           "media_type": "application/vnd.oci.image.index.v1+json",
           "tag_last_pushed": "2026-07-31T10:00:00Z",
           "images": [{"digest": manifest, "os": "linux", "architecture": "amd64"}]})
}

fn page(count: Value, next: Value, results: Vec<Value>) -> Vec<u8> {
    json!({"count": count, "next": next, "previous": null, "results": results})
        .to_string()
        .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Leaving the Hub origin

#[test]
fn a_redirect_to_another_host_is_refused_and_never_reached() {
    let (trap, evil) = trap();
    let hub = small_hub();
    let repo = hub.repo_names()[1].clone();
    hub.update(|c| c.redirect_paths = vec![(first_page(&repo), evil.clone())]);
    let sb = Sandbox::new("redirect-host");
    let run = sb.crawl(&hub, &[]);
    assert_failed_jobs(&run, &[&first_page(&repo)], "refused to follow");
    assert!(
        run.stderr.contains(&evil),
        "names the link:\n{}",
        run.stderr
    );
    assert!(
        trap.accept().is_err(),
        "a connection reached the foreign host"
    );
    // Refused at once: our own rule, so not retried.
    assert_eq!(requests_to(&hub, &first_page(&repo)), [302]);
}

#[test]
fn a_redirect_from_http_to_https_is_refused() {
    let hub = small_hub();
    let repo = hub.repo_names()[0].clone();
    // Same host and port, only the scheme changes.
    let https = format!(
        "{}{}page_size=100",
        hub.url().replace("http://", "https://"),
        first_page(&repo)
    );
    hub.update(|c| c.redirect_paths = vec![(first_page(&repo), https.clone())]);
    let sb = Sandbox::new("redirect-scheme");
    let run = sb.crawl(&hub, &[]);
    assert_failed_jobs(&run, &[&first_page(&repo)], "refused to follow");
    assert!(
        run.stderr.contains(&https),
        "names the link:\n{}",
        run.stderr
    );
    assert_eq!(requests_to(&hub, &first_page(&repo)), [302]);
}

#[test]
fn off_host_next_links_are_refused_and_the_crawl_pages_on_the_origin() {
    let (trap, evil) = trap();
    // Another host, another scheme, and the origin with a user name and password in it: none
    // is followed, each is named once (without the password), and the following pages are read
    // from the origin, so the crawl completes.
    for (name, link) in [
        ("host", evil.clone()),
        ("scheme", "https://ORIGIN/v2/namespaces/library/repositories/python/tags?page=2&page_size=100".to_owned()),
        ("userinfo", "http://crawler:s3cr3t-pass@ORIGIN/v2/namespaces/library/repositories/python/tags?page=2&page_size=100".to_owned()),
    ] {
        let hub = small_hub();
        let origin = hub.url().trim_start_matches("http://").to_owned();
        let link = link.replace("ORIGIN", &origin);
        // python, the big repository, has two pages.
        hub.update(|c| c.off_host_next = Some(("python".to_owned(), link.clone())));
        let sb = Sandbox::new(&format!("next-{name}"));
        let run = sb.crawl(&hub, &[]);
        assert_eq!(run.code, Some(0), "{name}: {}", run.stderr);
        let named = link.replace("crawler:s3cr3t-pass@", "***@");
        assert_eq!(
            run.stderr.matches(&named).count(),
            1,
            "{name}: names the link once:\n{}",
            run.stderr
        );
        assert!(run.stderr.contains("refused to follow"), "{}", run.stderr);
        assert!(!run.stderr.contains("s3cr3t"), "{}", run.stderr);
        assert_eq!(
            requests_to(&hub, "/repositories/python/tags?page=2&"),
            [200],
            "{name}: the following page was read from the origin"
        );
        assert!(
            sb.dataset() == hub.truth(),
            "{name}: the crawl equals the double's truth"
        );
        let store = std::fs::read(sb.db()).unwrap();
        assert!(
            !store.windows(6).any(|w| w == b"s3cr3t"),
            "{name}: the store holds the link's password"
        );
    }
    assert!(
        trap.accept().is_err(),
        "a connection reached the foreign host"
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile rate-limit headers

#[test]
fn hostile_rate_limit_headers_neither_panic_nor_stop_the_crawl() {
    let hub = small_hub();
    // A window reset past what SystemTime holds on every answer, and a 429 whose Retry-After is
    // the largest u64: before they were capped, each made `SystemTime + Duration` panic.
    hub.update(|c| {
        c.header_overrides = vec![("X-RateLimit-Reset", u64::MAX.to_string())];
        c.force_429 = [2].into();
        c.force_429_retry_after = u64::MAX;
    });
    let sb = Sandbox::new("hostile-headers");
    // Tests cap pauses at 300 ms instead of an hour, so the capped pause does not stall them.
    let run = sb.crawl(&hub, &["--max-pause-ms", "300"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for header in ["retry-after", "x-ratelimit-reset"] {
        let line = format!(
            "{}'s {header} \"18446744073709551615\" asks for a pause longer than 0.3s",
            hub.url().trim_end_matches('/')
        );
        assert_eq!(
            run.stderr.matches(&line).count(),
            1,
            "{header} capped and logged once:\n{}",
            run.stderr
        );
    }
    assert!(
        sb.dataset() == hub.truth(),
        "the crawl went on to the truth"
    );
}

#[test]
fn a_hub_refusing_everything_stops_the_crawl_with_6_and_resume_completes() {
    let hub = small_hub();
    // From the third request on, every answer is a 429: pauses alone would ask forever. (Far
    // more than the run sends, and small: the test process's memory counts in `bounded`.)
    hub.update(|c| {
        c.force_429 = (2..10_000).collect();
        c.force_429_retry_after = 1;
    });
    let sb = Sandbox::new("refused-crawl");
    let timing = ["--max-pause-ms", "200", "--max-refusal-ms", "700"];
    let run = sb.crawl(&hub, &timing);
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    let origin = hub.url().trim_end_matches('/').to_owned();
    let message = format!("{origin} answered every request with 429 Too Many Requests for ");
    assert_eq!(run.stderr.matches(&message).count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "continue later with `digestmap crawl --resume --db {}`",
            sb.db().display()
        )),
        "{}",
        run.stderr
    );
    // It asked again after a pause, and stopped within the bound: each round of asking follows
    // a pause of at least 200 ms, so a slower machine only makes fewer rounds; at most 4 fit
    // within 700 ms (the 4th would take the stretch past it), each with at most one 429 per
    // worker.
    let answered_429 = hub.requests().iter().filter(|r| r.status == 429).count();
    assert!(
        (2..=8).contains(&answered_429),
        "{answered_429} 429s\n{}",
        run.stderr
    );
    hub.update(|c| c.force_429.clear());
    let run = sb.crawl(&hub, &["--resume", "--max-pause-ms", "200"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(sb.dataset() == hub.truth());
}

#[test]
fn a_stored_absurd_pause_does_not_make_resume_wait() {
    let hub = small_hub();
    let repo = hub.repo_names()[1].clone();
    hub.update(|c| c.broken_paths = vec![first_page(&repo)]);
    let sb = Sandbox::new("stored-pause");
    let run = sb.crawl(&hub, &[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    // What `Retry-After: 1000000000` left in the store before pauses were capped.
    let until = digestmap::clock::now_unix() + 1_000_000_000;
    {
        let store = digestmap::store::Store::open(&sb.db()).unwrap();
        store.write(|w| w.set_pause_until(Some(until))).unwrap();
    }
    hub.update(|c| c.broken_paths.clear());
    // Waiting would be killed by the watchdog (a hang) and fail `bounded`.
    let run = sb.crawl(&hub, &["--resume"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("the store asks to pause") && run.stderr.contains("ignoring it"),
        "{}",
        run.stderr
    );
    assert!(sb.dataset() == hub.truth());
}

#[test]
fn a_redirect_within_the_hub_is_followed() {
    // The guard refuses only what leaves the origin: a redirect to the legacy endpoint of the
    // same listing is followed, and the crawl still equals the double's truth.
    let hub = small_hub();
    let repo = hub.repo_names()[2].clone();
    let legacy = format!(
        "{}/v2/repositories/library/{repo}/tags?page=1&page_size=100",
        hub.url()
    );
    hub.update(|c| c.redirect_paths = vec![(first_page(&repo), legacy)]);
    let sb = Sandbox::new("redirect-same");
    let run = sb.crawl(&hub, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(sb.dataset(), hub.truth());
    assert!(hub.requests().iter().any(|r| {
        r.path_and_query
            .starts_with(&format!("/v2/repositories/library/{repo}/tags"))
    }));
}

// ---------------------------------------------------------------------------------------------
// Bodies that never end, or end too slowly

#[test]
fn an_endless_body_is_cut_off_within_bounded_memory() {
    let hub = small_hub();
    let repo = hub.repo_names()[0].clone();
    hub.update(|c| c.huge_paths = vec![first_page(&repo)]);
    let sb = Sandbox::new("endless");
    let run = sb.crawl(&hub, &[]);
    // 512 MiB offered; the job fails at the 16 MiB cap, holding far less than the body.
    assert_failed_jobs(&run, &[&first_page(&repo)], "exceeds");
    assert_eq!(requests_to(&hub, &first_page(&repo)), [200], "not retried");
}

#[test]
fn a_slow_loris_answer_times_out() {
    let hub = small_hub();
    let repo = hub.repo_names()[1].clone();
    hub.update(|c| {
        c.trickle_paths = vec![first_page(&repo)];
        c.trickle_interval = Duration::from_millis(50);
    });
    let sb = Sandbox::new("trickle");
    let url = hub.url();
    let started = Instant::now();
    let run = bounded(
        sb.run(&[
            "crawl",
            "--hub-url",
            &url,
            "--rps",
            "500",
            "--retry-base-ms",
            "20",
            "--request-timeout-ms",
            "400",
        ]),
        "crawl",
    );
    assert_failed_jobs(&run, &[&first_page(&repo)], "timed out");
    // Each attempt ends at the timeout although bytes keep coming; the attempts are bounded.
    let attempts = requests_to(&hub, &first_page(&repo)).len();
    assert!((1..=5).contains(&attempts), "{attempts} attempts");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Bodies that are not what Hub sends

#[test]
fn deeply_nested_json_fails_its_job_or_is_skipped_unread() {
    let hub = small_hub();
    let names = hub.repo_names();
    let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
    // A million levels as a tag object: not a page. A million levels under a key nobody reads:
    // skipped without recursion, and the page's tag is stored.
    let mut nested_results = br#"{"count":1,"next":null,"results":["#.to_vec();
    nested_results.extend_from_slice(deep.as_bytes());
    nested_results.extend_from_slice(b"]}");
    let mut nested_extra = br#"{"count":1,"next":null,"extra":"#.to_vec();
    nested_extra.extend_from_slice(deep.as_bytes());
    nested_extra.extend_from_slice(b",\"results\":");
    nested_extra.extend_from_slice(
        &serde_json::to_vec(&[good_tag("ok", &digest('3'), &digest('4'))]).unwrap(),
    );
    nested_extra.push(b'}');
    hub.update(|c| {
        c.override_paths = vec![
            (first_page(&names[0]), 200, nested_results),
            (first_page(&names[1]), 200, nested_extra),
        ];
    });
    let sb = Sandbox::new("nested");
    let run = sb.crawl(&hub, &[]);
    assert_failed_jobs(&run, &[&first_page(&names[0])], "not a valid Hub page");
    let data = sb.dataset();
    assert_eq!(
        data[&digest('3')]["tags"],
        json!([format!("{}:ok", names[1])])
    );
}

#[test]
fn invalid_utf8_fails_its_job_without_echoing_it() {
    let hub = small_hub();
    let repo = hub.repo_names()[2].clone();
    // Bytes that are not UTF-8 (a lone continuation byte, an invalid lead byte, a cut-off
    // three-byte sequence) inside a string the parser reads. No control characters: serde_json
    // would refuse those first, and this must be the UTF-8 check.
    let mut body = br#"{"count":1,"next":null,"results":[{"name":"lat"#.to_vec();
    body.extend_from_slice(b"\x80\xff\xe2\x82");
    body.extend_from_slice(format!(r#"est","digest":"{}"}}]}}"#, digest('5')).as_bytes());
    hub.update(|c| c.override_paths = vec![(first_page(&repo), 200, body)]);
    let sb = Sandbox::new("utf8");
    let run = sb.crawl(&hub, &[]);
    // `Sandbox::run` has checked stderr is UTF-8: the bytes were not echoed.
    assert_failed_jobs(&run, &[&first_page(&repo)], "invalid unicode code point");
    assert!(!sb.dataset().contains_key(&digest('5')));
}

#[test]
fn invalid_digests_and_hostile_tag_names_are_skipped_counted_and_never_requested() {
    // Per the README, a bad record is skipped, logged and counted, and the page's good records
    // are kept: one bad tag name does not cost the other 99 of a page.
    let hub = small_hub();
    let repo = hub.repo_names()[3].clone();
    let long_digest = format!("sha256:{}", "a".repeat(100_000));
    let hostile_names = [
        "a/b",
        "../../../etc/passwd",
        "..",
        "a b",
        "x\u{1}y",
        "\u{1b}]0;pwned\u{7}",
        "%2e%2e%2f",
        &"n".repeat(300),
    ];
    let mut results: Vec<Value> = hostile_names
        .iter()
        .map(|n| good_tag(n, &digest('6'), &digest('7')))
        .collect();
    results.push(good_tag("good", &digest('8'), &digest('9')));
    results.push(json!({"name": "bad-digests", "digest": "sha256:ABC",
        "media_type": "application/vnd.oci.image.index.v1+json",
        "images": [
            {"digest": "md5:0123456789abcdef0123456789abcdef", "os": "linux", "architecture": "amd64"},
            {"digest": digest('A'), "os": "linux", "architecture": "arm64"},
            {"digest": long_digest, "os": "linux", "architecture": "s390x"},
            {"digest": format!("sha256:{}\u{1b}[2J", "b".repeat(60)), "os": "linux", "architecture": "386"},
            {"digest": digest('c'), "os": "linux", "architecture": "ppc64le"},
        ]}));
    // No `count`: the listing is then complete when read to its end, so the page is fetched
    // once and each skip counted once (a count above the valid tags would have it re-listed).
    hub.update(|c| {
        c.override_paths = vec![(
            first_page(&repo),
            200,
            page(Value::Null, Value::Null, results),
        )]
    });
    let sb = Sandbox::new("names");
    let run = sb.crawl(&hub, &["--repo", &repo]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("invalid tag names {}", hostile_names.len())),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("invalid digests 5"), "{}", run.stderr);

    let data = sb.dataset();
    let keys: Vec<&String> = data.keys().collect();
    assert_eq!(keys, [&digest('8'), &digest('9'), &digest('c')]);
    assert_eq!(data[&digest('8')]["tags"], json!([format!("{repo}:good")]));
    assert_eq!(
        data[&digest('c')]["tags"],
        json!([format!("{repo}:bad-digests")])
    );
    // Tag names are never put into a request.
    for r in hub.requests() {
        assert!(
            r.path_and_query
                .starts_with(&format!("/v2/namespaces/library/repositories/{repo}/tags?")),
            "unexpected request {}",
            r.path_and_query
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Numbers no listing has

#[test]
fn absurd_counts_are_not_trusted() {
    let hub = small_hub();
    let names = hub.repo_names();
    let repos: Vec<Value> = names[..2]
        .iter()
        .map(|n| json!({"name": n, "namespace": "library"}))
        .collect();
    let repo_list = "/v2/namespaces/library/repositories?page=1&";
    hub.update(|c| {
        c.override_paths = vec![
            (
                repo_list.to_owned(),
                200,
                page(json!(1_000_000_000_000_000_000u64), Value::Null, repos),
            ),
            (
                first_page(&names[0]),
                200,
                page(
                    json!(1_000_000_000_000_000_000u64),
                    Value::Null,
                    vec![good_tag("a", &digest('1'), &digest('2'))],
                ),
            ),
            (
                first_page(&names[1]),
                200,
                page(
                    json!(1e300),
                    Value::Null,
                    vec![good_tag("b", &digest('3'), &digest('4'))],
                ),
            ),
        ];
    });
    let sb = Sandbox::new("count");
    let run = sb.crawl(&hub, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let data = sb.dataset();
    assert_eq!(data.len(), 4, "{data:?}");
    // Three pages exist; allowing each to be read again by the crawler's re-listing, nothing
    // beyond them was requested: no paging towards 10^18.
    assert!(hub.requests().len() <= 3 * 3, "{:?}", hub.requests());
    let status = bounded(sb.run(&["status"]), "status");
    assert_eq!(status.code, Some(0), "{}", status.stderr);
}

#[test]
fn absurd_paging_links_fail_their_jobs_naming_the_url() {
    let hub = small_hub();
    let names = hub.repo_names();
    let base = hub.url();
    let queries = [
        "page=999999999&page_size=100",
        "page=2&page_size=-1",
        "page=2&page_size=1.5",
        "page=18446744073709551616&page_size=abc",
    ];
    let nexts: Vec<String> = names
        .iter()
        .zip(queries)
        .map(|(n, q)| format!("{base}/v2/namespaces/library/repositories/{n}/tags?{q}"))
        .collect();
    hub.update(|c| {
        c.override_paths = names
            .iter()
            .zip(&nexts)
            .enumerate()
            .map(|(i, (n, next))| {
                let c = char::from(b'1' + i as u8);
                let tag = good_tag("t", &digest(c), &digest('f'));
                (first_page(n), 200, page(json!(2), json!(next), vec![tag]))
            })
            .collect();
    });
    let sb = Sandbox::new("paging");
    let run = sb.crawl(&hub, &[]);
    let listed: Vec<&str> = nexts.iter().map(|n| &n[base.len()..]).collect();
    // Links that do not lead to the following page (page 999999999, or a page number past
    // u64, after page 1) are refused without a request: following such links could also go
    // round in a cycle forever.
    let (refused, followed) = ([listed[0], listed[3]], [listed[1], listed[2]]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.stderr.contains("failed jobs: 4"),
        "4 failed jobs expected:\n{}",
        run.stderr
    );
    for jump in refused {
        assert!(
            run.stderr.lines().any(|l| l.trim_start().starts_with('#')
                && l.contains(jump)
                && l.contains("does not lead to the following page")),
            "{jump}: {}",
            run.stderr
        );
        assert!(requests_to(&hub, jump).is_empty(), "{jump} was requested");
    }
    for next in followed {
        let listed = run.stderr.lines().any(|l| {
            l.trim_start().starts_with('#') && l.contains(next) && l.contains("answered 4")
        });
        assert!(listed, "no failed job naming {next}:\n{}", run.stderr);
        assert_eq!(
            requests_to(&hub, next).len(),
            1,
            "{next}: a 4xx is not retried"
        );
    }
    assert!(run.stderr.contains("400"));
}

#[test]
fn a_next_link_back_to_an_earlier_page_is_refused() {
    let hub = small_hub();
    let name = hub.repo_names()[0].clone();
    let base = hub.url();
    // Page 2 links back to page 1: followed blindly, the crawl would never end.
    let back =
        format!("{base}/v2/namespaces/library/repositories/{name}/tags?page=1&page_size=100");
    let second = format!("/v2/namespaces/library/repositories/{name}/tags?page=2&page_size=100");
    let tag = good_tag("t", &digest('1'), &digest('f'));
    let forward = format!("{base}{second}");
    let other = good_tag("u", &digest('2'), &digest('e'));
    hub.update(|c| {
        c.override_paths = vec![
            (
                second.clone(),
                200,
                page(json!(200), json!(back), vec![tag]),
            ),
            (
                first_page(&name),
                200,
                page(json!(200), json!(forward), vec![other]),
            ),
        ];
    });
    let sb = Sandbox::new("cycle");
    let run = sb.crawl(&hub, &[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.stderr.contains("does not lead to the following page"),
        "{}",
        run.stderr
    );
    assert!(
        hub.requests().len() < 40,
        "{} requests",
        hub.requests().len()
    );
}

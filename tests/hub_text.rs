//! Text Docker Hub sends, end to end through the real binary against the Docker Hub double
//! (tests/support/fake_hub): Hub's messages never reach the terminal raw, fields that break their
//! rules (platforms, `os_version`, push times) are dropped and counted without losing the digest,
//! and the skipped records of a crawl are shown as a few examples a kind, not one line each.

mod support;

use std::process::Output;

use serde_json::{Value, json};
use support::fake_hub::{FakeHub, FakeHubConfig};
use support::sandbox::{Sandbox, assert_code, assert_success, stderr, stdout};

/// Control characters a terminal acts on: none may appear raw in any output.
const RAW: [char; 5] = ['\u{1b}', '\u{7}', '\r', '\u{5}', '\u{9b}'];

fn assert_no_raw_controls(output: &Output, what: &str) {
    for (name, text) in [("stdout", stdout(output)), ("stderr", stderr(output))] {
        assert!(
            !text.contains(RAW),
            "{what}: raw control characters on {name}:\n{text:?}"
        );
    }
}

/// The first tags page of `repo`, as the crawler asks for it (and as a path substring).
fn first_page(repo: &str) -> String {
    format!("/v2/namespaces/library/repositories/{repo}/tags?page=1&")
}

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn small_hub() -> FakeHub {
    FakeHub::bind(FakeHubConfig {
        repos: 3,
        max_tags: 40,
        big_repo_tags: 60,
        ..FakeHubConfig::default()
    })
    .unwrap()
}

#[test]
fn hubs_error_messages_never_reach_the_terminal_raw() {
    let hub = small_hub();
    let repo = hub.repo_names()[0].clone();
    let body = json!({"message": "bad page\u{1b}]0;owned\u{7}\r\u{5}\u{9b}2J"})
        .to_string()
        .into_bytes();
    hub.update(|c| c.override_paths = vec![(first_page(&repo), 400, body)]);
    let sb = Sandbox::new("hub-message");
    let check = |output: &Output, what: &str| {
        assert_code(output, 3, what);
        assert_no_raw_controls(output, what);
        // The message is shown, escaped.
        let err = stderr(output);
        assert!(
            err.contains("bad page\\u{1b}]0;owned\\u{7}\\u{d}\\u{5}\\u{9b}2J"),
            "{what}: {err}"
        );
    };
    check(
        &sb.fast_crawl(&hub.url(), &[]).output().unwrap(),
        "crawl with a failing page",
    );
    // Every log line at -vv, on a resumed run, and `status`, which lists the failed job.
    check(
        &sb.fast_crawl(&hub.url(), &["--resume", "-vv"])
            .output()
            .unwrap(),
        "resumed crawl at -vv",
    );
    let status = sb.command(&["status"]).output().unwrap();
    assert_success(&status, "status");
    assert_no_raw_controls(&status, "status");
    assert!(
        stdout(&status).contains("owned\\u{7}"),
        "{}",
        stdout(&status)
    );
}

#[test]
fn fields_breaking_their_rules_are_dropped_and_counted_and_the_digests_kept() {
    let hub = small_hub();
    let repo = hub.repo_names()[0].clone();
    let tags = json!([
        {"name": "good", "digest": digest('1'), "media_type": "application/vnd.oci.image.index.v1+json",
         "tag_last_pushed": "2026-07-31T10:00:00.000000Z",
         "images": [
            {"digest": digest('2'), "os": "linux\u{1b}[2J", "architecture": "amd64"},
            {"digest": digest('3'), "os": "windows", "architecture": "amd64",
             "os_version": "10.0.20348\u{7}"},
            {"digest": digest('4'), "os": "linux", "architecture": "arm64", "variant": "v8"}]},
        {"name": "old", "digest": digest('5'), "media_type": "application/vnd.oci.image.index.v1+json",
         "tag_last_pushed": "yesterday\u{1b}]0;owned\u{7}", "images": []}
    ]);
    let body = json!({"count": 2, "next": null, "previous": null, "results": tags})
        .to_string()
        .into_bytes();
    hub.update(|c| c.override_paths = vec![(first_page(&repo), 200, body)]);
    let sb = Sandbox::new("bad-fields");
    let output = sb.fast_crawl(&hub.url(), &[]).output().unwrap();
    assert_success(&output, "crawl");
    assert_no_raw_controls(&output, "crawl");
    let err = stderr(&output);
    assert!(
        err.contains("invalid platforms 1, invalid os versions 1, invalid push times 1"),
        "{err}"
    );

    // Every digest is in the dataset, without the field that was wrong.
    let out = sb.path("d.ndjson");
    let output = sb
        .command(&["finalize", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&output, "finalize");
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let line = |c: char| {
        lines
            .iter()
            .find(|l| l["digest"] == digest(c))
            .unwrap_or_else(|| panic!("{} missing", digest(c)))
    };
    assert_eq!(line('2')["platform"], Value::Null);
    assert_eq!(line('3')["platform"], "windows/amd64");
    assert!(line('3').get("os_version").is_none(), "{}", line('3'));
    assert_eq!(line('4')["platform"], "linux/arm64/v8");
    assert!(
        line('5')["tags"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("{repo}:old")))
    );

    // The store keeps the valid push time and none for the invalid one.
    let store = digestmap::store::Store::open_read(&sb.db()).unwrap();
    let key = format!("library/{repo}");
    let state = |tag: &str| store.read(|r| r.tag_state(&key, tag)).unwrap().unwrap();
    assert_eq!(
        state("good").pushed.as_deref(),
        Some("2026-07-31T10:00:00.000000Z")
    );
    assert_eq!(state("old").pushed, None);
}

/// Lines of `stderr` that log one skipped record of the kind `message` names.
fn skip_lines(stderr: &str, message: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(message))
        .count()
}

#[test]
fn a_crawl_shows_a_few_skipped_records_of_each_kind_and_counts_the_rest() {
    let hub = FakeHub::bind(FakeHubConfig {
        repos: 6,
        max_tags: 150,
        big_repo_tags: 300,
        ..FakeHubConfig::default()
    })
    .unwrap();
    // One repository's page holds 7 images with invalid platforms and 6 invalid digests, beside
    // the double's own invalid digests elsewhere.
    let repo = hub.repo_names()[0].clone();
    let images: Vec<Value> = (0..7)
        .map(|i| {
            json!({"digest": format!("sha256:{i:064x}"), "os": format!("linux\u{1b}{i}"),
                        "architecture": "amd64"})
        })
        .chain((0..6).map(|i| {
            json!({"digest": format!("sha256:{i}"), "os": "linux",
                                     "architecture": "amd64"})
        }))
        .collect();
    let tag = json!({"name": "many", "digest": digest('f'),
                     "media_type": "application/vnd.oci.image.index.v1+json", "images": images});
    let body = json!({"count": 1, "next": null, "previous": null, "results": [tag]})
        .to_string()
        .into_bytes();
    hub.update(|c| c.override_paths = vec![(first_page(&repo), 200, body)]);

    let sb = Sandbox::new("skip-lines");
    let output = sb.fast_crawl(&hub.url(), &[]).output().unwrap();
    assert_success(&output, "crawl");
    let err = stderr(&output);
    let digests: usize = err
        .split("invalid digests ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of invalid digests in the summary: {err}"));
    assert!(digests >= 6, "{err}");
    assert_eq!(skip_lines(&err, "skipped an invalid digest"), 3, "{err}");
    assert_eq!(skip_lines(&err, "left out an invalid platform"), 3, "{err}");
    assert!(
        err.contains(&format!(
            "not shown above: {} more invalid digests (-v shows each)",
            digests - 3
        )),
        "{err}"
    );
    assert!(
        err.contains("not shown above: 4 more invalid platforms (-v shows each)"),
        "{err}"
    );
    assert!(
        err.contains("invalid platforms 7"),
        "the summary counts them all: {err}"
    );

    // With -v, every one of them.
    let sb = Sandbox::new("skip-lines-v");
    let output = sb.fast_crawl(&hub.url(), &["-v"]).output().unwrap();
    assert_success(&output, "crawl -v");
    let err = stderr(&output);
    assert_eq!(
        skip_lines(&err, "skipped an invalid digest"),
        digests,
        "{err}"
    );
    assert_eq!(skip_lines(&err, "left out an invalid platform"), 7, "{err}");
    assert!(!err.contains("not shown above"), "{err}");
}

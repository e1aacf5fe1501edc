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

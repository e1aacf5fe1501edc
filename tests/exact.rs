//! Exact data and honest endings, through the real binary against the Docker Hub double: a crawl
//! that knows it missed something exits 4, names what is missing (summary and `status`), and
//! `crawl --resume` or a refresh reads the gap; a malformed tag costs only itself; tags Hub counts
//! but digestmap skips do not make a complete listing look short.

mod support;

use std::collections::BTreeMap;
use std::process::Output;

use serde_json::{Value, json};
use support::fake_hub::{FakeHub, FakeHubConfig};
use support::sandbox::{Sandbox, assert_code, output_with_input, stderr, stdout};

/// Exit code of a crawl that knows its result is incomplete.
const INCOMPLETE: i32 = 4;

impl Sandbox {
    fn crawl(&self, hub: &FakeHub, extra: &[&str]) -> Output {
        self.fast_crawl(&hub.url(), extra).output().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// The dataset keyed by digest, without the time fields and `current`, as the truth has it.
    fn dataset(&self) -> BTreeMap<String, Value> {
        let output = self.run(&["finalize", "--out", "-"]);
        assert_code(&output, 0, "finalize");
        stdout(&output)
            .lines()
            .map(|line| {
                let mut v: Value = serde_json::from_str(line).unwrap();
                let obj = v.as_object_mut().unwrap();
                for key in ["first_seen", "last_seen", "current"] {
                    obj.remove(key);
                }
                (obj["digest"].as_str().unwrap().to_owned(), v)
            })
            .collect()
    }
}

/// Asserts the dataset equals the double's truth, naming how many digests differ.
fn assert_truth(sb: &Sandbox, hub: &FakeHub) {
    let got = sb.dataset();
    let want = hub.truth();
    let missing = want.keys().filter(|d| !got.contains_key(*d)).count();
    let differing = want
        .iter()
        .filter(|(d, w)| got.get(*d).is_some_and(|g| g != *w))
        .count();
    assert!(
        got == want,
        "dataset differs from the truth: {missing} digests missing, {differing} differ, {} got, {} wanted",
        got.len(),
        want.len()
    );
}

fn requests_containing(hub: &FakeHub, part: &str) -> usize {
    hub.requests()
        .iter()
        .filter(|r| r.path_and_query.contains(part))
        .count()
}

#[test]
fn a_capped_repository_list_ends_incomplete_and_resume_reads_the_gap() {
    // 230 repositories; anonymously the list gives 100 from each end: 30 are out of reach.
    let hub = FakeHub::bind(FakeHubConfig {
        anonymous_cap: true,
        repos: 230,
        max_tags: 3,
        big_repo_tags: 3,
        ..FakeHubConfig::default()
    })
    .unwrap();
    let sb = Sandbox::new("exact-repocap");
    let output = sb.crawl(&hub, &["--workers", "4"]);
    assert_code(&output, INCOMPLETE, "crawl with a capped repository list");
    let err = stderr(&output);
    let gap = "the repository list gave 200 of the 230 repositories Hub counts; 30 missing";
    assert!(err.contains(gap), "{err}");
    assert!(err.contains("crawl --resume"), "{err}");

    let status = sb.run(&["status"]);
    assert_code(&status, 0, "status");
    let text = stdout(&status);
    assert!(text.contains("finished INCOMPLETE"), "{text}");
    assert!(text.contains(gap), "{text}");

    // Still capped: resume tries the list again, and ends incomplete again.
    hub.clear_requests();
    let output = sb.run(&["crawl", "--resume", "--rps", "500", "--retry-base-ms", "20"]);
    assert_code(&output, INCOMPLETE, "resume, still capped");
    assert!(
        requests_containing(&hub, "/v2/namespaces/library/repositories?") >= 2,
        "the gap was not tried again"
    );
    // Signed in (the double caps anonymous requests only), resume reads the rest and the crawl
    // is complete: the cap the store learned of this origin is not expected signed in.
    let output = output_with_input(
        &mut sb.command(&[
            "crawl",
            "--resume",
            "--rps",
            "500",
            "--retry-base-ms",
            "20",
            "--token-stdin",
            "--username",
            "me",
        ]),
        "secret-token",
    );
    assert_code(&output, 0, "resume signed in");
    assert!(
        !stderr(&output).contains("INCOMPLETE"),
        "{}",
        stderr(&output)
    );
    assert_truth(&sb, &hub);
    let text = stdout(&sb.run(&["status"]));
    assert!(text.contains(": finished\n"), "{text}");
    assert!(text.contains("230 listed, 230 done"), "{text}");
}

/// Hub's answer past the anonymous cap, given here to every `name`-filtered listing.
fn cap_403() -> Vec<u8> {
    include_bytes!("data/hub-anonymous-cap-403.json").to_vec()
}

#[test]
fn an_uncoverable_repository_ends_incomplete_and_resume_and_refresh_read_the_gap() {
    // python holds 2500 tags: the plain and oldest-first views give 2000, and every filtered
    // view is refused, so 500 are out of reach.
    let hub = FakeHub::bind(FakeHubConfig {
        anonymous_cap: true,
        repos: 3,
        max_tags: 40,
        override_paths: vec![("&name=".to_owned(), 403, cap_403())],
        ..FakeHubConfig::default()
    })
    .unwrap();
    let sb = Sandbox::new("exact-tagcap");
    let output = sb.crawl(&hub, &["--workers", "4"]);
    assert_code(&output, INCOMPLETE, "crawl of an uncoverable repository");
    let err = stderr(&output);
    let gap = "library/python: 2000 of the 2500 tags Hub counts were seen; 500 missing";
    assert!(err.contains(gap), "{err}");
    let text = stdout(&sb.run(&["status"]));
    assert!(
        text.contains("finished INCOMPLETE") && text.contains(gap),
        "{text}"
    );

    // Resume plans the gap again: the cover's filters are tried again, not the 20 pages read.
    hub.clear_requests();
    let output = sb.run(&["crawl", "--resume", "--rps", "500", "--retry-base-ms", "20"]);
    assert_code(&output, INCOMPLETE, "resume, filters still refused");
    assert!(stderr(&output).contains(gap), "{}", stderr(&output));
    let filters = requests_containing(&hub, "&name=");
    assert!(filters > 0, "no filter was tried again");
    assert_eq!(
        hub.requests().len(),
        filters,
        "resume read more than the gap"
    );

    // A refresh (a new run, not a resume) must not take the incomplete repository for done: it
    // reads it whole and covers it now that filters work.
    hub.update(|c| c.override_paths.clear());
    let output = sb.crawl(&hub, &["--workers", "4"]);
    assert_code(&output, 0, "refresh once filters work");
    let err = stderr(&output);
    assert!(err.contains("(refresh)"), "{err}");
    let line = err
        .lines()
        .find(|l| l.trim_start().starts_with("library/python:"))
        .unwrap_or_else(|| panic!("no coverage line for python: {err}"));
    assert!(line.contains("complete, 2500 of 2500 tags"), "{line}");
    assert_truth(&sb, &hub);
}

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn tag(name: &str, index: char, manifest: char) -> Value {
    json!({"name": name, "digest": digest(index),
           "media_type": "application/vnd.oci.image.index.v1+json",
           "last_updated": "2026-07-31T10:00:00Z",
           "tag_last_pushed": "2026-07-31T10:00:00Z",
           "images": [{"digest": digest(manifest), "os": "linux", "architecture": "amd64"}]})
}

#[test]
fn a_malformed_tag_or_an_invalid_name_costs_only_itself_and_counts_for_coverage() {
    let hub = FakeHub::bind(FakeHubConfig {
        repos: 2,
        max_tags: 5,
        big_repo_tags: 5,
        ..FakeHubConfig::default()
    })
    .unwrap();
    let repo = hub.repo_names()[1].clone();
    // Hub counts 5 tags: 2 good ones, one whose `images` is a string, one whose `images` holds
    // a number, and one whose name Docker's grammar forbids.
    let mut broken = tag("broken", '3', '4');
    broken["images"] = json!("linux/amd64");
    let mut mixed = tag("mixed", '5', '6');
    mixed["images"] = json!([7, {"digest": digest('6'), "os": "linux", "architecture": "amd64"}]);
    let results = vec![
        tag("good", '1', '2'),
        broken,
        mixed,
        tag("../escape", '7', '8'),
        tag("fine", '9', 'a'),
    ];
    let body = json!({"count": 5, "next": null, "previous": null, "results": results});
    hub.update(|c| {
        c.override_paths = vec![(
            format!("/v2/namespaces/library/repositories/{repo}/tags?"),
            200,
            body.to_string().into_bytes(),
        )]
    });
    let sb = Sandbox::new("exact-malformed");
    let output = sb.crawl(&hub, &["--repo", &repo]);
    // Before: the page failed as a whole (exit 3); with names skipped not counted, the listing
    // looked short, was read three times and ended incomplete.
    assert_code(&output, 0, "crawl of a page with malformed tags");
    let err = stderr(&output);
    assert!(err.contains("malformed tag objects 2"), "{err}");
    assert!(err.contains("invalid tag names 1"), "{err}");
    assert!(err.contains("1 of 1 repositories complete"), "{err}");
    assert_eq!(hub.requests().len(), 1, "the page was read again: {err}");
    let data = sb.dataset();
    let keys: Vec<&String> = data.keys().collect();
    assert_eq!(
        keys,
        [&digest('1'), &digest('2'), &digest('9'), &digest('a')]
    );
}

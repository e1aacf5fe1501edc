//! The cover's re-plan rounds through the real binary: tags pushed after the first round was
//! planned shift the pages it chose, so that round misses tags; the next round, planned from what
//! was stored, reads them, and the crawl ends complete with every pair. And the cover's registry
//! is stored with the crawl: `--resume` uses it, and refuses another.

mod support;

use std::collections::BTreeSet;
use std::process::Output;

use support::fake_hub::{FakeHub, FakeHubConfig, RequestRecord};
use support::sandbox::{Sandbox, assert_code, assert_success, stderr};

/// Every (digest, repo:tag) pair of a dataset or truth, of `repo` only.
fn pairs_of(
    dataset: &std::collections::BTreeMap<String, serde_json::Value>,
    repo: &str,
) -> BTreeSet<(String, String)> {
    dataset
        .iter()
        .flat_map(|(d, v)| {
            v["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |t| (d.clone(), t.as_str().unwrap().to_owned()))
        })
        .filter(|(_, t)| t.split_once(':').unwrap().0.trim_start_matches("library/") == repo)
        .collect()
}

/// A page the cover planned (`name=` with a page of its own) or one tag asked for by name.
fn planned(r: &RequestRecord) -> bool {
    let path = r.path_and_query.as_str();
    path.contains("/tags?") && path.contains("name=")
        || !path.contains('?') && path.contains("/tags/")
}

/// The pages and single tags the `-v` log says cover round `round` planned.
fn round_size(err: &str, round: u32) -> Option<usize> {
    let mut lines = err
        .lines()
        .skip_while(|l| !l.contains(&format!("cover round {round}:")));
    let line = lines.next()?;
    let pages: usize = line.split(", ").nth(1)?.split(' ').next()?.parse().ok()?;
    // "<n> missing tags lie beyond the cap of every view; asking for each by name" follows the
    // round's line when it asks for single tags.
    let singles = lines
        .next()
        .filter(|l| l.contains("asking for each by name"))
        .and_then(|l| l.split(": ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or(0);
    Some(pages + singles)
}

fn crawl(sb: &Sandbox, hub: &FakeHub) -> Output {
    let url = hub.url();
    let mut cmd = sb.command(&[
        "crawl",
        "--hub-url",
        &url,
        "--registry",
        &url,
        "--repo",
        "python",
        "--workers",
        "1",
        "--rps",
        "500",
        "-v",
    ]);
    cmd.output().expect("run digestmap")
}

#[test]
fn tags_pushed_after_the_first_round_was_planned_are_read_by_the_next_round() {
    let hub = FakeHub::bind(FakeHubConfig {
        anonymous_cap: true,
        repos: 2,
        max_tags: 20,
        big_repo_tags: 3000,
        ..FakeHubConfig::default()
    })
    .unwrap();
    // Tags spread over the whole listing are pushed again (they sort newest now) right after the
    // first planned page is answered: every later page of the views that hold them moves.
    let names: BTreeSet<String> = pairs_of(&hub.truth(), "python")
        .into_iter()
        .map(|(_, t)| t.split_once(':').unwrap().1.to_owned())
        .collect();
    let pushed: Vec<(String, String)> = names
        .iter()
        .step_by(97)
        .take(20)
        .map(|t| ("python".to_owned(), t.clone()))
        .collect();
    hub.update(|c| c.touch_after = Some(("name=".to_owned(), pushed)));

    let sb = Sandbox::new("cover-rounds");
    let output = crawl(&sb, &hub);
    assert_success(&output, "crawl with tags pushed during the first round");
    let err = stderr(&output);
    assert!(hub.config().touch_after.is_none(), "the push happened");

    // Every pair, and the repository complete.
    let got = pairs_of(&sb.finalized(), "python");
    assert_eq!(got, pairs_of(&hub.truth(), "python"), "every pair found");
    let line = err
        .lines()
        .find(|l| l.trim_start().starts_with("library/python:"))
        .unwrap_or_else(|| panic!("no coverage line for python: {err}"));
    assert!(line.contains("complete, 3000 of 3000 tags"), "{line}");

    // More than one round: the double was asked for more planned pages than the first round
    // planned, and the first round alone did not reach every tag.
    let first = round_size(&err, 1).unwrap_or_else(|| panic!("no first round: {err}"));
    let asked = hub.requests().iter().filter(|r| planned(r)).count();
    eprintln!("first round: {first} planned pages; the double answered {asked}");
    assert!(
        asked > first,
        "{asked} planned pages asked for, no more than the first round's {first}: {err}"
    );
    assert!(round_size(&err, 2).is_some(), "no second round: {err}");
    // The plain view met the cap; no view asked past it after that.
    assert_eq!(
        hub.requests().iter().filter(|r| r.status == 403).count(),
        1,
        "the cap was met once"
    );
}

#[test]
fn the_registry_is_stored_with_the_crawl_and_used_by_resume() {
    // The oldest-first view of python fails (a 400 fails its job at once): the crawl ends with
    // a failed job (exit 3) before the cover asks the registry.
    let hub = FakeHub::bind(FakeHubConfig {
        anonymous_cap: true,
        repos: 2,
        max_tags: 20,
        big_repo_tags: 2500,
        override_paths: vec![(
            "ordering=-last_updated".to_owned(),
            400,
            br#"{"message":"bad request"}"#.to_vec(),
        )],
        ..FakeHubConfig::default()
    })
    .unwrap();
    let url = hub.url();
    let sb = Sandbox::new("cover-registry-resume");
    let output = sb
        .fast_crawl(&url, &["--registry", &url, "--repo", "python"])
        .output()
        .unwrap();
    assert_code(&output, 3, "crawl with the oldest-first view failing");
    assert!(
        !hub.requests()
            .iter()
            .any(|r| r.path_and_query.contains("/tags/list")),
        "the registry was asked before the failure"
    );

    // Another registry on resume is refused, as another --hub-url is, and nothing is asked.
    hub.clear_requests();
    let other = "http://127.0.0.1:9";
    let output = sb
        .command(&["crawl", "--resume", "--registry", other])
        .output()
        .unwrap();
    assert_code(&output, 2, "resume with another registry");
    let err = stderr(&output);
    assert!(
        err.contains(other) && err.contains(&url) && err.contains("--registry"),
        "names both: {err}"
    );
    assert!(hub.requests().is_empty(), "nothing was asked");

    // Resumed without it, the stored registry plans the cover.
    hub.update(|c| c.override_paths.clear());
    let output = sb
        .command(&[
            "crawl",
            "--resume",
            "--rps",
            "500",
            "--retry-base-ms",
            "20",
            "-v",
        ])
        .output()
        .unwrap();
    assert_success(&output, "resume");
    let err = stderr(&output);
    assert!(err.contains("planning the cover"), "{err}");
    assert!(!err.contains("no --registry"), "{err}");
    assert!(
        hub.requests()
            .iter()
            .any(|r| r.path_and_query.contains("/tags/list") && r.status == 200),
        "the stored registry was asked"
    );
    assert_eq!(
        pairs_of(&sb.finalized(), "python"),
        pairs_of(&hub.truth(), "python")
    );
}

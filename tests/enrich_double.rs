//! crawl → `enrich` → finalize through the real binary against the bundled Docker Hub double
//! alone (tests/support/fake_hub): its tags point at manifests and configs it serves itself,
//! whose digests are the sha256 of the bytes, so no docker-registry is needed.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use support::fake_hub::{FakeHub, FakeHubConfig, Served};
use support::sandbox::{Sandbox, assert_success, stderr, stdout};

/// A small world with one round of rebuilds (tags moved to new builds sharing bottom layers).
fn hub() -> FakeHub {
    FakeHub::bind(FakeHubConfig {
        repos: 4,
        max_tags: 40,
        big_repo_tags: 80,
        rebuilds: 1,
        ..FakeHubConfig::default()
    })
    .unwrap()
}

fn dataset(sandbox: &Sandbox) -> BTreeMap<String, Value> {
    sandbox.finalized()
}

#[test]
fn enrich_against_the_double_learns_every_image_id_and_the_diff_ids_it_serves() {
    let hub = hub();
    let sandbox = Sandbox::new("enrich-double");
    let out = sandbox.fast_crawl(&hub.url(), &[]).output().unwrap();
    assert_success(&out, "crawl");

    let out = sandbox
        .command(&[
            "enrich",
            "--registry",
            &hub.url(),
            "--rps",
            "1000",
            "--workers",
            "4",
            "--retry-base-ms",
            "20",
        ])
        .output()
        .unwrap();
    assert_success(&out, "enrich against the double");
    let data = dataset(&sandbox);

    let (mut with_id, mut legacy, mut configs, mut indexes) = (0, 0, 0, 0);
    let mut bottoms: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (digest, line) in &data {
        let served = hub
            .served(digest)
            .unwrap_or_else(|| panic!("the double serves nothing under {digest}: {line}"));
        match (line["kind"].as_str().unwrap(), served) {
            ("manifest", Served::Manifest { image_id: Some(id) }) => {
                assert_eq!(line["image_id"], json!(id), "{line}");
                assert!(data.contains_key(&id), "no config line for {id}");
                with_id += 1;
            }
            // Schema 1: recorded as legacy, no image ID.
            ("manifest", Served::Manifest { image_id: None }) => {
                assert!(line.get("image_id").is_none(), "{line}");
                legacy += 1;
            }
            ("config", Served::Config { diff_ids }) => {
                assert_eq!(line["diff_ids"], json!(diff_ids), "{line}");
                let repo = line["tags"][0].as_str().unwrap_or("").split(':').next();
                let key = (repo.unwrap_or("").to_owned(), line["platform"].to_string());
                bottoms.entry(key).or_default().insert(diff_ids[0].clone());
                configs += 1;
            }
            ("index", Served::Index) => indexes += 1,
            (kind, served) => panic!("{digest}: a {kind} line, served as {served:?}"),
        }
    }
    assert!(
        with_id > 50 && configs >= with_id && indexes > 5,
        "{with_id} manifests with an image ID, {legacy} legacy, {configs} configs, {indexes} indexes\n{}",
        stderr(&out)
    );
    // Images of one repository and platform share their bottom layer, as FROM makes them.
    assert!(
        bottoms.values().all(|firsts| firsts.len() == 1),
        "{bottoms:?}"
    );
}

#[test]
fn a_manifest_the_registry_no_longer_has_is_recorded_as_gone_and_not_fetched_again() {
    let hub = hub();
    let (gone, _) = hub
        .truth()
        .into_iter()
        .find(|(d, _)| matches!(hub.served(d), Some(Served::Manifest { image_id: Some(_) })))
        .unwrap();
    let body =
        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":null}]}"#;
    hub.update(|c| {
        c.override_paths = vec![(format!("/manifests/{gone}"), 404, body.to_vec())];
    });
    let sandbox = Sandbox::new("enrich-double-gone");
    let out = sandbox.fast_crawl(&hub.url(), &[]).output().unwrap();
    assert_success(&out, "crawl");
    let url = hub.url();
    let enrich = |extra: &[&str]| {
        let mut args = vec!["enrich", "--registry", &url, "--rps", "1000"];
        args.extend_from_slice(extra);
        sandbox.command(&args).output().unwrap()
    };
    let out = enrich(&[]);
    assert_success(&out, "enrich with one manifest gone");
    let data = dataset(&sandbox);
    assert!(data[&gone].get("image_id").is_none(), "{}", data[&gone]);
    let status = sandbox.command(&["status"]).output().unwrap();
    let text = stdout(&status);
    assert!(
        text.contains("gone: 1 manifests the registry no longer has")
            && text.contains(&format!("{gone}: "))
            && text.contains("MANIFEST_UNKNOWN"),
        "{text}"
    );
    assert!(text.contains("0 failed"), "{text}");

    // Neither a second run nor --resume asks for it again.
    hub.clear_requests();
    assert_success(&enrich(&[]), "second enrich");
    assert_success(&enrich(&["--resume"]), "enrich --resume");
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
}

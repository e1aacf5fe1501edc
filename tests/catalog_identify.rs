//! Identification across registries, end to end through the binary: a Windows user image is
//! named by its official Hub base, then by that base's Microsoft base. Microsoft's base sits in
//! a real `docker-registry` behind the Microsoft-like front, crawled with `crawl --catalog`; the
//! official python-like image in another one behind the Hub-like front, with the Hub double's
//! tag pointing at it, crawled and enriched. With the Windows base layers foreign (as before
//! June 2023) and not.

mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::answers::{identify_both, summary};
use support::archives::{self, Saved};
use support::fake_hub::{FakeHub, FakeHubConfig};
use support::hub_pages::{page, platform, tag};
use support::registry::front::FrontConfig;
use support::registry::image::{
    self, Foreign, Format, ImageSpec, Layer, WINDOWS_BASE, WINDOWS_OFFICIAL, WindowsChain,
};
use support::registry::mcr::McrConfig;
use support::registry::{Harness, McrHarness};
use support::sandbox::{Sandbox, assert_success, stdout};

fn run(sandbox: &Sandbox, args: &[&str]) {
    let out = sandbox.command(args).output().unwrap();
    assert_success(&out, &args.join(" "));
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// `lookup --json digest` from the store and from the dataset, which must agree on the keys a
/// dataset line has; the store's answer.
fn lookup_both(sandbox: &Sandbox, digest: &str) -> Value {
    let answer = |extra: &[&str]| {
        let mut args = vec!["lookup", "--json", digest];
        args.extend_from_slice(extra);
        let out = sandbox.command(&args).output().unwrap();
        assert_success(&out, &format!("lookup {digest} {extra:?}"));
        serde_json::from_str::<Value>(stdout(&out).lines().next().unwrap()).unwrap()
    };
    let store = answer(&[]);
    let dataset = answer(&["--dataset", "d.ndjson"]);
    for key in ["kind", "platform", "os_version", "tags", "current"] {
        assert_eq!(store.get(key), dataset.get(key), "{digest}: {key}");
    }
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_user_image_identifies_its_microsoft_base_through_an_official_hub_image() {
    for (foreign, os_version) in [
        (Foreign::Yes, "10.0.20348.2227"),
        (Foreign::No, "10.0.20348.2340"),
    ] {
        let chain = WindowsChain::new(os_version, foreign);
        let mcr = McrHarness::start(McrConfig::default()).await;
        let hub_registry = Harness::start(FrontConfig::default()).await;
        chain.push_base(&mcr.pusher).await;
        chain.push_official(&hub_registry.pusher).await;
        // An image whose config carries an `os.version` with an escape sequence, listed by Hub
        // with a sane one: enrich must not let the config's text into the dataset.
        let hostile = image::build(ImageSpec::windows(
            "10.0.20348\u{1b}]0;pwned\u{7}",
            vec![Layer::new(&[("Files/hostile.dll", b"x")])],
            Format::Docker,
        ));
        hub_registry
            .pusher
            .image("library/python", "hostile", &hostile)
            .await;
        let mut listed = platform(&hostile);
        listed["os_version"] = json!(os_version);
        let official = &chain.official;
        let hub = FakeHub::start(FakeHubConfig {
            repos: 1,
            max_tags: 3,
            big_repo_tags: 3,
            override_paths: vec![(
                "/repositories/python/tags".to_owned(),
                200,
                page(vec![
                    tag(
                        WINDOWS_OFFICIAL.1,
                        &official.digest,
                        official.media_type,
                        official.images.iter().map(platform).collect(),
                        "2026-01-02T00:00:00.000000Z",
                    ),
                    tag(
                        "hostile",
                        &hostile.digest,
                        hostile.media_type,
                        vec![listed],
                        "2026-01-01T00:00:00.000000Z",
                    ),
                ]),
            )],
            ..FakeHubConfig::default()
        })
        .await;

        let sandbox = Sandbox::new("catalog-identify");
        let out = sandbox
            .fast_crawl(&hub.url(), &["--repo", "python"])
            .output()
            .unwrap();
        assert_success(&out, "crawl of the Hub double");
        let hub_url = hub_registry.front.url().to_string();
        let fast = ["--rps", "500", "--retry-base-ms", "20"];
        run(
            &sandbox,
            &[
                &["enrich", "--registry", hub_url.trim_end_matches('/')][..],
                &fast,
            ]
            .concat(),
        );
        let mcr_url = mcr.front.url().to_string();
        run(
            &sandbox,
            &[
                &["crawl", "--catalog", mcr_url.trim_end_matches('/')][..],
                &fast,
            ]
            .concat(),
        );
        run(&sandbox, &["finalize", "--out", "d.ndjson"]);
        let host = format!(
            "{}:{}",
            mcr.front.url().host_str().unwrap(),
            mcr.front.url().port().unwrap()
        );
        let base_tag = format!("{host}/{}:{}", WINDOWS_BASE.0, WINDOWS_BASE.1);

        // The user image: base python (4 of 5 layers), then Microsoft's base (2 layers),
        // host-qualified; alike from the store and from the dataset.
        std::fs::write(
            sandbox.path("winapp.tar"),
            archives::legacy(&[Saved {
                image: &chain.user,
                repo_tags: vec!["winapp:1".into()],
            }]),
        )
        .unwrap();
        let answers = identify_both(&sandbox, &["winapp.tar"], 0);
        assert_eq!(
            summary(&answers[0]),
            format!(
                "base base 4/5+1 windows/amd64 [python:{}] < 2 windows/amd64 [{base_tag}]",
                WINDOWS_OFFICIAL.1
            ),
            "{foreign:?}"
        );
        let base = &answers[0]["ancestry"][0]["images"][0];
        assert_eq!(base["image_id"], json!(chain.base.images[0].config_digest));
        assert_eq!(base["os_version"], json!(os_version));
        assert_eq!(
            answers[0]["base"]["images"][0]["os_version"],
            json!(os_version)
        );

        // Microsoft's base by its platform manifest's digest and by its image ID: the
        // host-qualified tag and the Windows build.
        let manifest = lookup_both(&sandbox, &chain.base.images[0].digest);
        let id = lookup_both(&sandbox, &chain.base.images[0].config_digest);
        for line in [&manifest, &id] {
            assert_eq!(strings(&line["current"]), [base_tag.clone()].into());
            assert_eq!(line["os_version"], json!(os_version));
            assert_eq!(line["platform"], json!("windows/amd64"));
        }
        assert_eq!(manifest["indexes"], json!([chain.base.digest]));
        assert_eq!(id["kind"], json!("config"));

        // The hostile config: its platform is kept, its os.version left out.
        let data = sandbox.finalized();
        let config = &data[&hostile.config_digest];
        assert_eq!(config["platform"], json!("windows/amd64"));
        assert!(config.get("os_version").is_none(), "{config}");
        let text = std::fs::read_to_string(sandbox.path("d.ndjson")).unwrap();
        assert!(
            !text.contains("\\u001b") && !text.contains("pwned"),
            "the config's text reached the dataset"
        );
    }
}

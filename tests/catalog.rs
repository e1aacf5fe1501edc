//! `digestmap crawl --catalog` end to end through the real binary, against Debian's real
//! `docker-registry` (loopback only): plain, as Microsoft's registry is, and behind the Hub-like
//! front (tokens, a CDN for blobs, every request logged, tag lists paged with `Link`).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use digestmap::model::Digest;
use digestmap::registry::chain_ids;
use serde_json::{Value, json};
use support::fake_hub::{FakeHub, FakeHubConfig};
use support::registry::front::{FrontConfig, LinkRewrite, Origin, Record};
use support::registry::image::{self, BuiltImage, BuiltIndex, Format, ImageSpec, Layer, Pusher};
use support::registry::mcr::{
    Kind, LinkStyle, LoopBack, McrConfig, McrFront, McrOrigin, McrRecord, Throttle,
};
use support::registry::process::RegistryProcess;
use support::registry::{Harness, McrHarness};
use support::sandbox::{Sandbox, assert_code, assert_success, stderr, stdout};

/// What is pushed: two alpine-like images (one tagged twice), a two-platform OCI index with
/// attestations (tagged twice), a Windows-shaped image with a foreign base layer, and an image
/// the refresh deletes.
struct Pushed {
    old: BuiltImage,
    alpine: BuiltImage,
    multi: BuiltIndex,
    windows: BuiltImage,
    gone: BuiltImage,
}

fn build() -> Pushed {
    let layer = |name: &str| Layer::new(&[(name, name.as_bytes())]);
    let base = layer("etc/alpine-release");
    let old = image::build(ImageSpec::linux(
        "amd64",
        None,
        vec![base.clone(), layer("3.18")],
        Format::Docker,
    ));
    let alpine = image::build(ImageSpec::linux(
        "amd64",
        None,
        vec![base, layer("3.19")],
        Format::Oci,
    ));
    let multi = image::index(
        vec![
            image::build(ImageSpec::linux(
                "amd64",
                None,
                vec![layer("app-amd64")],
                Format::Oci,
            )),
            image::build(ImageSpec::linux(
                "arm64",
                Some("v8"),
                vec![layer("app-arm64")],
                Format::Oci,
            )),
        ],
        Format::Oci,
        true,
    );
    let windows = image::build(ImageSpec {
        os: "windows".into(),
        architecture: "amd64".into(),
        variant: None,
        os_version: Some("10.0.20348.2849".into()),
        layers: vec![
            layer("Files/servercore").foreign("https://mcr.microsoft.test/servercore/base"),
            layer("Files/update"),
        ],
        format: Format::Docker,
    });
    let gone = image::build(ImageSpec::linux(
        "amd64",
        None,
        vec![layer("gone")],
        Format::Docker,
    ));
    Pushed {
        old,
        alpine,
        multi,
        windows,
        gone,
    }
}

async fn push(pusher: &Pusher, p: &Pushed) {
    pusher.image("base/alpine", "3.18", &p.old).await;
    pusher.image("base/alpine", "3.19", &p.alpine).await;
    pusher.image("base/alpine", "latest", &p.alpine).await;
    pusher.index("app/multi", "1", &p.multi).await;
    pusher.index("app/multi", "1.0", &p.multi).await;
    pusher
        .image("windows/servercore", "ltsc2022", &p.windows)
        .await;
    pusher.image("old/gone", "1", &p.gone).await;
}

/// Every `repo:tag` pushed, host-qualified, with the digest it points at.
fn pairs(host: &str, p: &Pushed) -> BTreeMap<String, String> {
    [
        ("base/alpine:3.18", &p.old.digest),
        ("base/alpine:3.19", &p.alpine.digest),
        ("base/alpine:latest", &p.alpine.digest),
        ("app/multi:1", &p.multi.digest),
        ("app/multi:1.0", &p.multi.digest),
        ("windows/servercore:ltsc2022", &p.windows.digest),
        ("old/gone:1", &p.gone.digest),
    ]
    .into_iter()
    .map(|(tag, digest)| (format!("{host}/{tag}"), digest.clone()))
    .collect()
}

fn platform(image: &BuiltImage) -> String {
    let mut p = format!("{}/{}", image.spec.os, image.spec.architecture);
    if let Some(v) = &image.spec.variant {
        p.push('/');
        p.push_str(v);
    }
    p
}

fn chain_id(diff_ids: &[String]) -> String {
    let ids: Vec<Digest> = diff_ids.iter().map(|d| Digest::parse(d).unwrap()).collect();
    chain_ids(&ids).last().unwrap().to_string()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The dataset holds exactly what was pushed: every tag on its digest (current), the index with
/// its platform manifests (attestations left out), every platform image with its platform,
/// `os_version`, image ID, and a config line with its diff_ids and ChainID; `extra` lines for the
/// images pushed besides.
fn assert_dataset(data: &BTreeMap<String, Value>, host: &str, p: &Pushed, extra: usize) {
    let pairs = pairs(host, p);
    for (tag, digest) in &pairs {
        let line = data
            .get(digest)
            .unwrap_or_else(|| panic!("no line for {tag} ({digest})"));
        assert!(
            strings(&line["tags"]).contains(tag),
            "{tag} not on {digest}"
        );
        assert!(
            strings(&line["current"]).contains(tag),
            "{tag} not current on {digest}"
        );
    }
    let multi_tags: BTreeSet<String> = [
        format!("{host}/app/multi:1"),
        format!("{host}/app/multi:1.0"),
    ]
    .into();
    assert_eq!(data[&p.multi.digest]["kind"], "index");
    assert_eq!(data[&p.multi.digest]["platform"], Value::Null);
    let mut images = vec![
        (&p.old, None),
        (&p.alpine, None),
        (&p.windows, None),
        (&p.gone, None),
    ];
    images.extend(p.multi.images.iter().map(|i| (i, Some(&p.multi.digest))));
    let mut expected: BTreeSet<String> = [p.multi.digest.clone()].into();
    for (image, index) in images {
        expected.insert(image.digest.clone());
        expected.insert(image.config_digest.clone());
        let line = &data[&image.digest];
        assert_eq!(line["kind"], "manifest", "{}", image.digest);
        assert_eq!(line["platform"], json!(platform(image)), "{}", image.digest);
        assert_eq!(
            line["image_id"],
            json!(image.config_digest),
            "{}",
            image.digest
        );
        assert_eq!(line["layers"], json!(image.spec.layers.len()));
        if let Some(index) = index {
            assert_eq!(line["indexes"], json!([index]));
            assert_eq!(
                strings(&line["tags"]),
                multi_tags,
                "a platform image carries its index's tags"
            );
        }
        let config = &data[&image.config_digest];
        assert_eq!(config["kind"], "config");
        assert_eq!(config["platform"], json!(platform(image)));
        assert_eq!(config["diff_ids"], json!(image.diff_ids()));
        assert_eq!(config["chain_id"], json!(chain_id(&image.diff_ids())));
        assert_eq!(config["manifests"], json!([image.digest]));
        match &image.spec.os_version {
            Some(v) => {
                assert_eq!(line["os_version"], json!(v));
                assert_eq!(config["os_version"], json!(v));
            }
            None => assert!(line.get("os_version").is_none()),
        }
    }
    let got: BTreeSet<String> = data.keys().cloned().collect();
    assert!(got.is_superset(&expected));
    assert_eq!(
        got.len(),
        expected.len() + extra,
        "the dataset holds exactly what was pushed (no attestation)"
    );
}

/// `crawl --catalog URL` of the store, fast (short backoffs, no pacing to speak of).
fn catalog_crawl(sandbox: &Sandbox, registry: &str, extra: &[&str]) -> std::process::Command {
    let mut args = vec![
        "crawl",
        "--catalog",
        registry,
        "--rps",
        "500",
        "--retry-base-ms",
        "20",
    ];
    args.extend_from_slice(extra);
    sandbox.command(&args)
}

fn host_of(url: &url::Url) -> String {
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
}

/// A registry's origin as the tests give and read it: its URL without the trailing slash, and
/// its host.
fn origin_of(url: &url::Url) -> (String, String) {
    (url.as_str().trim_end_matches('/').to_owned(), host_of(url))
}

/// What the front saw, by kind.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    listings: u64,
    heads: u64,
    manifest_gets: u64,
    blobs: u64,
    /// Challenges (401), token requests and CDN requests: the price of tokens and redirects.
    other: u64,
    total: u64,
}

fn seen(log: &[Record]) -> Seen {
    let mut s = Seen::default();
    for r in log {
        s.total += 1;
        let path = r.target.split('?').next().unwrap_or("");
        match (r.origin, r.method.as_str(), r.status) {
            (Origin::Registry, "GET", 200)
                if path == "/v2/_catalog" || path.ends_with("/tags/list") =>
            {
                s.listings += 1;
            }
            (Origin::Registry, "HEAD", 200) if path.contains("/manifests/") => s.heads += 1,
            (Origin::Registry, "GET", 200) if path.contains("/manifests/") => s.manifest_gets += 1,
            (Origin::Registry, "GET", 307) if path.contains("/blobs/") => s.blobs += 1,
            _ => s.other += 1,
        }
    }
    s
}

/// The status lines of the source.
fn status(sandbox: &Sandbox) -> String {
    let out = sandbox.command(&["status"]).output().unwrap();
    assert_success(&out, "status");
    stdout(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_equals_what_was_pushed_and_a_refresh_costs_listings_and_heads() {
    let harness = Harness::start(FrontConfig::default()).await;
    let pushed = build();
    push(&harness.pusher, &pushed).await;
    let (url, host) = origin_of(harness.front.url());
    let sandbox = Sandbox::new("catalog-crawl");

    // Two names a page, so both listings page with `Link`.
    let out = catalog_crawl(&sandbox, &url, &["--page-size", "2"])
        .output()
        .unwrap();
    assert_success(&out, "crawl --catalog");
    let first = seen(&harness.front.requests());
    let data = sandbox.finalized();
    assert_dataset(&data, &host, &pushed, 0);
    let tags = pairs(&host, &pushed).len() as u64;
    // One HEAD per tag, one GET per new manifest (3 single images and the index's 2, the index,
    // and each tag's digest once: aliases wait on one GET), one config blob per image.
    assert_eq!(first.heads, tags, "{first:?}");
    assert_eq!(first.manifest_gets, 4 + 1 + 2, "{first:?}");
    assert_eq!(first.blobs, 6, "{first:?}");
    assert!(
        first.listings >= 4 + 3,
        "the catalog and every tag list paged: {first:?}"
    );
    let text = status(&sandbox);
    assert!(
        text.contains(&format!("registry {host} ({url}), crawl #1: finished")),
        "{text}"
    );
    assert!(
        text.contains("7 new, 0 moved, 0 unchanged; 0 marked deleted"),
        "{text}"
    );

    // Retag `latest` to the older image, delete old/gone's only image.
    harness
        .pusher
        .manifest(
            "base/alpine",
            "latest",
            pushed.old.media_type,
            &pushed.old.manifest,
        )
        .await;
    let deleted = reqwest::Client::new()
        .delete(
            harness
                .registry
                .url()
                .join(&format!("/v2/old/gone/manifests/{}", pushed.gone.digest))
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 202, "delete old/gone's manifest");
    harness.front.clear_requests();

    let out = catalog_crawl(&sandbox, &url, &["--page-size", "2"])
        .output()
        .unwrap();
    assert_success(&out, "refresh");
    let refresh = seen(&harness.front.requests());
    // The listings and one HEAD per tag left: no manifest, no blob.
    assert_eq!(refresh.heads, tags - 1, "{refresh:?}");
    assert_eq!(
        (refresh.manifest_gets, refresh.blobs),
        (0, 0),
        "{refresh:?}"
    );
    let text = status(&sandbox);
    assert!(text.contains("crawl #2: finished"), "{text}");
    assert!(
        text.contains("0 new, 1 moved, 5 unchanged; 1 marked deleted"),
        "{text}"
    );
    println!(
        "requests per tag: first crawl {:.2} ({} requests for {tags} tags: {} listing pages, {} HEADs, {} manifest GETs, {} blob GETs, {} challenges, tokens and CDN answers); refresh {:.2} ({} requests for {} tags: {} listing pages, {} HEADs, {} other)",
        first.total as f64 / tags as f64,
        first.total,
        first.listings,
        first.heads,
        first.manifest_gets,
        first.blobs,
        first.other,
        refresh.total as f64 / (tags - 1) as f64,
        refresh.total,
        tags - 1,
        refresh.listings,
        refresh.heads,
        refresh.other,
    );

    // `--full`, as for Hub, reads every listing whole: what every catalog run does already, so it
    // is accepted and costs what a refresh costs.
    harness.front.clear_requests();
    let out = catalog_crawl(&sandbox, &url, &["--page-size", "2", "--full"])
        .output()
        .unwrap();
    assert_success(&out, "--full");
    let full = seen(&harness.front.requests());
    assert_eq!(
        (full.listings, full.heads, full.manifest_gets, full.blobs),
        (refresh.listings, refresh.heads, 0, 0),
        "{full:?}"
    );
    assert!(status(&sandbox).contains("crawl #3: finished"));

    let data = sandbox.finalized();
    let latest = format!("{host}/base/alpine:latest");
    let old_line = &data[&pushed.old.digest];
    assert!(
        strings(&old_line["current"]).contains(&latest),
        "latest moved to the old image"
    );
    let alpine_line = &data[&pushed.alpine.digest];
    assert!(
        strings(&alpine_line["tags"]).contains(&latest),
        "the old pair is kept"
    );
    assert!(
        !strings(&alpine_line["current"]).contains(&latest),
        "but not current"
    );
    let gone_line = &data[&pushed.gone.digest];
    assert_eq!(
        strings(&gone_line["tags"]),
        [format!("{host}/old/gone:1")].into()
    );
    assert!(
        strings(&gone_line["current"]).is_empty(),
        "a deleted tag is not current"
    );

    // lookup answers a registry digest with its host-qualified tags, and identify names an
    // image by its image ID from the store.
    let out = sandbox
        .command(&["lookup", "--json", &pushed.windows.digest])
        .output()
        .unwrap();
    assert_success(&out, "lookup");
    let line: Value = serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(
        strings(&line["current"]),
        [format!("{host}/windows/servercore:ltsc2022")].into()
    );
    assert_eq!(line["os_version"], "10.0.20348.2849");
    let out = sandbox
        .command(&["identify", "--json", &pushed.windows.config_digest])
        .output()
        .unwrap();
    assert_success(&out, "identify");
    let answer: Value = serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(answer["result"], "exact", "{answer}");
    let tags: Vec<&str> = answer["exact"][0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, [format!("{host}/windows/servercore:ltsc2022")]);
    assert_eq!(answer["exact"][0]["os_version"], "10.0.20348.2849");

    // The store is sound: `check` knows every new record.
    let out = sandbox.command(&["check"]).output().unwrap();
    assert_success(&out, "check");
}

/// A plain registry (no token, as Microsoft's) with `count` more repositories of one tag each,
/// so that a slowly paced crawl takes a while.
async fn plain_registry(pushed: &Pushed, count: usize) -> RegistryProcess {
    let registry = RegistryProcess::start().await;
    let pusher = Pusher::new(registry.url());
    push(&pusher, pushed).await;
    for i in 0..count {
        let image = image::build(ImageSpec::linux(
            "amd64",
            None,
            vec![Layer::new(&[("n", format!("{i}").as_bytes())])],
            Format::Docker,
        ));
        pusher.image(&format!("many/r{i:02}"), "1", &image).await;
    }
    registry
}

/// The dataset without its times, which differ between two crawls.
fn timeless(data: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    data.iter()
        .map(|(k, v)| {
            let mut v = v.clone();
            let o = v.as_object_mut().unwrap();
            o.remove("first_seen");
            o.remove("last_seen");
            (k.clone(), v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_resume_equals_an_uninterrupted_crawl() {
    let pushed = build();
    let registry = plain_registry(&pushed, 12).await;
    let (url, _) = origin_of(registry.url());

    let whole = Sandbox::new("catalog-whole");
    let out = catalog_crawl(&whole, &url, &["--page-size", "3"])
        .output()
        .unwrap();
    assert_success(&out, "uninterrupted crawl");
    let expected = timeless(&whole.finalized());
    // Each of the 12 more repositories: a manifest line and a config line.
    assert_dataset(&whole.finalized(), &host_of(registry.url()), &pushed, 24);

    // Paced at 4 requests a second, the crawl needs over 10 s for its ~60 requests: a kill
    // after a second lands in the middle of it, whatever the machine's load.
    let killed = Sandbox::new("catalog-killed");
    let mut kills = 0;
    for round in 0..3 {
        let mut child = killed
            .command(&[
                "crawl",
                "--catalog",
                &url,
                "--page-size",
                "3",
                "--rps",
                "4",
                "--workers",
                "2",
                "--retry-base-ms",
                "20",
            ])
            .args(if round == 0 {
                &[][..]
            } else {
                &["--resume"][..]
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1000 + 300 * round));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills > 0, "no crawl was killed mid-way");
    let text = status(&killed);
    assert!(
        text.contains(
            "unfinished (no process is crawling; continue with `digestmap crawl --catalog"
        ),
        "{text}"
    );
    // Without --resume, an unfinished crawl is not restarted.
    let out = catalog_crawl(&killed, &url, &[]).output().unwrap();
    assert_code(&out, 2, "crawl over an unfinished one");
    assert!(stderr(&out).contains("--resume"), "{}", stderr(&out));

    let out = catalog_crawl(&killed, &url, &["--page-size", "3", "--resume"])
        .output()
        .unwrap();
    assert_success(&out, "resume");
    assert_eq!(
        timeless(&killed.finalized()),
        expected,
        "kill -9 + resume equals one crawl"
    );
    let text = status(&killed);
    assert!(text.contains("crawl #1: finished"), "{text}");
    assert!(text.contains("jobs: 0 pending, 0 failed"), "{text}");

    // Nothing left to resume.
    let out = catalog_crawl(&killed, &url, &["--resume"])
        .output()
        .unwrap();
    assert_code(&out, 2, "resume of a finished crawl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_share_one_store_and_one_finalize_and_a_second_process_is_refused() {
    let pushed = build();
    let registry = plain_registry(&pushed, 0).await;
    let (url, host) = origin_of(registry.url());
    let hub = FakeHub::start(FakeHubConfig {
        repos: 2,
        max_tags: 3,
        big_repo_tags: 3,
        ..FakeHubConfig::default()
    })
    .await;
    let sandbox = Sandbox::new("catalog-two-sources");
    let out = sandbox.fast_crawl(&hub.url(), &[]).output().unwrap();
    assert_success(&out, "crawl of the Hub double");
    let out = catalog_crawl(&sandbox, &url, &[]).output().unwrap();
    assert_success(&out, "crawl --catalog");

    // One finalize writes both: the Hub's truth, line for line, beside the registry's tags.
    let data = sandbox.finalized();
    for (digest, truth) in hub.truth() {
        let line = data
            .get(&digest)
            .unwrap_or_else(|| panic!("no line for Hub's {digest}"));
        assert_eq!(line["tags"], truth["tags"], "{digest}");
    }
    for (tag, digest) in pairs(&host, &pushed) {
        assert!(strings(&data[&digest]["current"]).contains(&tag), "{tag}");
    }
    let text = status(&sandbox);
    assert!(text.contains("crawl #1 (full crawl): finished"), "{text}");
    assert!(
        text.contains(&format!("registry {host} ({url}), crawl #1: finished")),
        "{text}"
    );

    // A refresh of the Hub leaves the registry's tags current, and the reverse.
    let out = sandbox.fast_crawl(&hub.url(), &[]).output().unwrap();
    assert_success(&out, "refresh of the Hub double");
    let out = catalog_crawl(&sandbox, &url, &[]).output().unwrap();
    assert_success(&out, "refresh of the registry");
    let again = sandbox.finalized();
    assert_eq!(
        timeless(&again),
        timeless(&data),
        "two refreshes change nothing"
    );

    // A second process on the store is refused while a (slow) crawl holds it, and the first
    // goes on undisturbed.
    let slow = sandbox
        .command(&["crawl", "--catalog", &url, "--rps", "1", "--workers", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !status(&sandbox).contains("running (a digestmap process holds the store)") {
        assert!(Instant::now() < deadline, "the slow crawl never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    for second in [
        catalog_crawl(&sandbox, &url, &[]),
        sandbox.fast_crawl(&hub.url(), &[]),
    ] {
        let out = { second }.output().unwrap();
        assert_code(&out, 2, "a second process");
        assert!(
            stderr(&out).contains("is in use by another digestmap process"),
            "{}",
            stderr(&out)
        );
    }
    let out = slow.wait_with_output().unwrap();
    assert_success(&out, "the first crawl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_off_host_or_back_to_its_page_ends_the_listing_incomplete_and_resume_reads_it_again()
{
    let harness = Harness::start(FrontConfig::default()).await;
    let pushed = build();
    push(&harness.pusher, &pushed).await;
    let (url, host) = origin_of(harness.front.url());
    for (links, says) in [
        (
            LinkRewrite::OffHost,
            "leaves the registry's origin; not following it",
        ),
        (
            LinkRewrite::Stuck,
            "does not advance the listing; refusing to loop",
        ),
    ] {
        harness.front.update(|c| c.links = links);
        harness.front.clear_requests();
        let sandbox = Sandbox::new("catalog-hostile-links");
        let out = catalog_crawl(&sandbox, &url, &["--page-size", "2"])
            .output()
            .unwrap();
        assert_code(&out, 4, &format!("{links:?}"));
        let err = stderr(&out);
        assert!(err.contains(says), "{links:?}: {err}");
        assert!(err.contains(&format!("the catalog of {host}:")), "{err}");
        // The names kept lead to blobs on the CDN, as they should; no listing goes there.
        assert!(
            harness
                .front
                .requests()
                .iter()
                .all(|r| r.origin != Origin::Cdn
                    || !(r.target.contains("/tags/list") || r.target.contains("/_catalog"))),
            "{links:?}: a listing's Link was followed off the registry"
        );
        let text = status(&sandbox);
        assert!(text.contains("finished INCOMPLETE"), "{text}");
        assert!(text.contains("listing(s) ended early"), "{text}");
        // Only the refused Link is refused: the first catalog page's names were read, and
        // app/multi (on it) is crawled whole.
        let data = sandbox.finalized();
        let multi = strings(&data[&pushed.multi.digest]["current"]);
        assert_eq!(
            multi,
            [
                format!("{host}/app/multi:1"),
                format!("{host}/app/multi:1.0")
            ]
            .into(),
            "{links:?}"
        );

        // With the registry sane again, --resume reads the listings that ended early.
        harness.front.update(|c| c.links = LinkRewrite::Keep);
        let out = catalog_crawl(&sandbox, &url, &["--page-size", "2", "--resume"])
            .output()
            .unwrap();
        assert_success(&out, "resume of an incomplete crawl");
        assert_dataset(&sandbox.finalized(), &host, &pushed, 0);
        assert!(status(&sandbox).contains("crawl #1: finished"));
    }

    // A tag list that ends early marks none of its repository's stored tags deleted.
    let sandbox = Sandbox::new("catalog-hostile-tags");
    let alpine = ["--page-size", "2", "--repo", "base/alpine"];
    let out = catalog_crawl(&sandbox, &url, &alpine).output().unwrap();
    assert_success(&out, "crawl of base/alpine");
    let before = timeless(&sandbox.finalized());
    harness.front.update(|c| c.links = LinkRewrite::Stuck);
    let out = catalog_crawl(&sandbox, &url, &alpine).output().unwrap();
    assert_code(&out, 4, "a stuck tag list");
    assert!(
        stderr(&out).contains(&format!("{host}/base/alpine: ")),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        timeless(&sandbox.finalized()),
        before,
        "nothing marked deleted"
    );
}

#[test]
fn bad_catalog_flags_exit_2_before_any_store_is_made() {
    let sandbox = Sandbox::new("catalog-flags");
    for (args, says) in [
        (vec!["--catalog", "http://mcr.example.com"], "--catalog"),
        (vec!["--catalog", "https://mcr.example.com/v2"], "--catalog"),
        (
            vec!["--catalog", "https://me:secret@mcr.example.com"],
            "--catalog",
        ),
        (
            vec![
                "--catalog",
                "https://mcr.example.com",
                "--repo",
                "Windows/x",
            ],
            "--repo",
        ),
        (
            vec![
                "--catalog",
                "https://mcr.example.com",
                "--repo",
                "a",
                "--repo-prefix",
                "b",
            ],
            "--repo-prefix",
        ),
        (vec!["--repo-prefix", "windows/"], "--catalog"),
        (
            vec![
                "--catalog",
                "https://mcr.example.com",
                "--hub-url",
                "https://hub.docker.com",
            ],
            "--hub-url",
        ),
    ] {
        let mut full = vec!["crawl"];
        full.extend(args.iter().copied());
        let out = sandbox.command(&full).output().unwrap();
        assert_code(&out, 2, &format!("{args:?}"));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("secret"), "{}", stderr(&out));
        assert!(!sandbox.db().exists(), "{args:?} made a store");
    }
}

/// The Microsoft-like front before a registry holding what [`build`] pushes: its URL (no
/// trailing slash) and host.
async fn mcr(config: McrConfig) -> (McrHarness, Pushed, String, String) {
    let harness = McrHarness::start(config).await;
    let pushed = build();
    push(&harness.pusher, &pushed).await;
    let (url, host) = origin_of(harness.front.url());
    (harness, pushed, url, host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcr_front_pages_with_relative_and_absolute_links_and_the_crawl_equals_what_was_pushed()
{
    let (harness, pushed, url, host) = mcr(McrConfig::default()).await;
    for links in [LinkStyle::Relative, LinkStyle::Absolute] {
        harness.front.update(|c| c.links = links);
        harness.front.clear_requests();
        let sandbox = Sandbox::new("catalog-mcr-paged");
        let out = catalog_crawl(&sandbox, &url, &["--page-size", "2"])
            .output()
            .unwrap();
        assert_success(&out, &format!("{links:?}"));
        assert_dataset(&sandbox.finalized(), &host, &pushed, 0);
        let log = harness.front.requests();
        // 4 repositories, 2 a page: 2 catalog pages; base/alpine's 3 tags: 2 tag-list pages.
        assert_eq!(harness.front.count(Kind::Catalog), 2, "{links:?}");
        assert_eq!(harness.front.count(Kind::TagsList), 5, "{links:?}");
        assert!(
            log.iter()
                .filter(|r| r.kind == Kind::Catalog)
                .any(|r| r.param("last") == Some("base/alpine")),
            "{links:?}: the second catalog page was asked through the Link"
        );
        assert!(
            log.iter().all(|r| r.origin == McrOrigin::Registry
                || (r.kind == Kind::BlobGet && r.method == "GET")),
            "{links:?}: only blob GETs reach the data origin"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_or_a_repeated_page_on_the_mcr_front_ends_incomplete_and_resume_completes() {
    let (harness, pushed, url, host) = mcr(McrConfig::default()).await;
    type Knob = fn(&mut McrConfig);
    let knobs: [(&str, Knob, &str); 2] = [
        (
            "loop",
            |c| c.loop_back = Some(LoopBack { from: 2, to: 1 }),
            "a page already read (a `last` that loops)",
        ),
        (
            "repeat",
            |c| c.repeat_page = Some(2),
            "repeats the names of an earlier page",
        ),
    ];
    for (what, knob, says) in knobs {
        harness.front.update(knob);
        let sandbox = Sandbox::new("catalog-mcr-hostile");
        let out = catalog_crawl(&sandbox, &url, &["--page-size", "2"])
            .output()
            .unwrap();
        assert_code(&out, 4, what);
        let err = stderr(&out);
        assert!(err.contains(says), "{what}: {err}");
        // Both the catalog and base/alpine's tag list page, so both end early, each named.
        assert!(
            err.contains(&format!("the catalog of {host}:")),
            "{what}: {err}"
        );
        assert!(
            err.contains(&format!("{host}/base/alpine: ")),
            "{what}: {err}"
        );
        let text = status(&sandbox);
        assert!(text.contains("finished INCOMPLETE"), "{what}: {text}");
        assert!(text.contains("2 listing(s) ended early"), "{what}: {text}");
        // Nothing the run read short is taken for deleted.
        assert!(text.contains("0 marked deleted"), "{what}: {text}");

        harness.front.update(|c| {
            c.loop_back = None;
            c.repeat_page = None;
        });
        let out = catalog_crawl(&sandbox, &url, &["--page-size", "2", "--resume"])
            .output()
            .unwrap();
        assert_success(&out, &format!("{what}: resume"));
        assert_dataset(&sandbox.finalized(), &host, &pushed, 0);
        assert!(status(&sandbox).contains("crawl #1: finished"), "{what}");
    }
}

/// Whole seconds since the epoch.
fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The requests that reached either origin less than `quiet` after a 429 arrived.
fn sent_during_pauses(log: &[McrRecord], quiet: Duration) -> Vec<(Kind, String)> {
    let pauses: Vec<SystemTime> = log
        .iter()
        .filter(|r| r.status == 429)
        .map(|r| r.at)
        .collect();
    log.iter()
        .filter(|r| pauses.iter().any(|&at| r.at > at && r.at < at + quiet))
        .map(|r| (r.kind, r.path.clone()))
        .collect()
}

/// From the `nth` next registry request on (counting only those of `kind`, when given), `times`
/// in a row are answered 429, with `retry_after` when given.
fn throttle(front: &McrFront, kind: Option<Kind>, nth: u64, times: u64, retry_after: Option<&str>) {
    let served = kind.map_or_else(|| front.served(), |kind| front.served_of(kind));
    let retry_after = retry_after.map(str::to_owned);
    front.update(|c| {
        c.throttle = Some(Throttle {
            nth: served + nth,
            times,
            retry_after,
            kind,
        });
    });
}

/// A registry answering every request 429 stops `crawl --catalog` with exit 6 once the refusal
/// would outlast the bound (`--max-refusal-ms`), naming the registry and the resume command;
/// `--resume` completes once it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_refusing_everything_stops_the_catalog_crawl_with_6_and_resume_completes() {
    let (harness, pushed, url, host) = mcr(McrConfig::default()).await;
    let sandbox = Sandbox::new("catalog-mcr-refused");
    let plain = ["--page-size", "2", "--max-pause-ms", "200"];
    let out = catalog_crawl(&sandbox, &url, &plain).output().unwrap();
    assert_success(&out, "the first crawl");
    // A second crawl (a refresh), refused from its first request on.
    throttle(&harness.front, None, 1, 1_000_000, Some("1"));
    let mut refused = plain.to_vec();
    refused.extend(["--max-refusal-ms", "700"]);
    let out = catalog_crawl(&sandbox, &url, &refused).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(6), "{err}");
    let said = format!("{url} answered every request with 429 Too Many Requests for ");
    assert_eq!(err.matches(&said).count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "continue later with `digestmap crawl --catalog {url} --resume --db {}`",
            sandbox.db().display()
        )),
        "{err}"
    );
    assert!(
        harness
            .front
            .requests()
            .iter()
            .filter(|r| r.status == 429)
            .count()
            >= 2
    );
    harness.front.update(|c| c.throttle = None);
    let mut resume = plain.to_vec();
    resume.push("--resume");
    let out = catalog_crawl(&sandbox, &url, &resume).output().unwrap();
    assert_success(&out, "the resumed crawl");
    assert_dataset(&sandbox.finalized(), &host, &pushed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_on_a_listing_or_a_manifest_get_pauses_the_crawl_which_completes_and_a_resumed_run_keeps_the_pause()
 {
    let (harness, pushed, url, host) = mcr(McrConfig::default()).await;
    let one = ["--page-size", "2", "--workers", "1"];

    // 429s in a crawl, with or without Retry-After, and never `ratelimit-*` headers (Microsoft's
    // registry declares no pull budget: a 429 on a manifest GET is its egress limit, a pause of
    // seconds, not a pull-budget window of hours). Each pause is waited out (one worker, so no
    // request was already on its way), then the crawl completes. The last row: the one manifest
    // GET of a one-tag crawl answered 429 six times in a row, more than the 5 attempts a
    // failing job has, so each 429 puts the job back without an attempt.
    // (kind counted and answered 429, how many in a row, Retry-After, --repo, quiet after each)
    let rows = [
        (Kind::TagsList, 1, Some("2"), None, 1950),
        (Kind::ManifestGet, 1, None, None, 1950),
        (
            Kind::ManifestGet,
            6,
            Some("1"),
            Some("windows/servercore"),
            950,
        ),
    ];
    for (kind, times, retry_after, repo, quiet_ms) in rows {
        let what = format!("{times} 429(s) on {kind:?}, Retry-After {retry_after:?}");
        throttle(&harness.front, Some(kind), 1, times, retry_after);
        harness.front.clear_requests();
        let sandbox = Sandbox::new("catalog-mcr-429");
        let mut args = one.to_vec();
        args.extend(repo.iter().flat_map(|repo| ["--repo", repo]));
        let out = catalog_crawl(&sandbox, &url, &args).output().unwrap();
        assert_success(&out, &what);
        assert!(!stderr(&out).contains("pull budget"), "{}", stderr(&out));
        let log = harness.front.requests();
        let within = sent_during_pauses(&log, Duration::from_millis(quiet_ms));
        assert!(
            within.is_empty(),
            "{what}: requests during a pause: {within:?}"
        );
        let limited: Vec<_> = log.iter().filter(|r| r.status == 429).collect();
        assert_eq!(limited.len(), times as usize, "{what}: {log:?}");
        assert!(limited.iter().all(|r| r.kind == kind), "{what}: {log:?}");
        let data = sandbox.finalized();
        if repo.is_none() {
            assert_dataset(&data, &host, &pushed, 0);
            continue;
        }
        let manifest = format!("/v2/windows/servercore/manifests/{}", pushed.windows.digest);
        assert!(limited.iter().all(|r| r.path == manifest), "{limited:?}");
        let line = &data[&pushed.windows.digest];
        assert_eq!(line["image_id"], json!(pushed.windows.config_digest));
        assert!(
            strings(&line["current"]).contains(&format!("{host}/windows/servercore:ltsc2022")),
            "{line}"
        );
    }

    // Every request from the second on answers 429, Retry-After 10 s: the pause is stored with
    // the run's commits (`status` shows it), and a crawl killed during it and resumed sends
    // nothing before it ends.
    throttle(&harness.front, None, 2, 1_000_000, Some("10"));
    let sandbox = Sandbox::new("catalog-mcr-429-stored");
    let mut child = catalog_crawl(&sandbox, &url, &one)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Until the crawl has made its store, `status` finds none.
    while !stdout(&sandbox.command(&["status"]).output().unwrap())
        .contains("paused: the registry answered 429")
    {
        assert!(Instant::now() < deadline, "no pause was ever stored");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let until = {
        let store = digestmap::store::Store::open(&sandbox.db()).unwrap();
        store.read(|r| r.catalog_pause(&host)).unwrap()
    }
    .expect("the pause is stored");
    harness.front.update(|c| c.throttle = None);
    harness.front.clear_requests();
    let started = SystemTime::now();
    let out = catalog_crawl(&sandbox, &url, &[&one[..], &["--resume"]].concat())
        .output()
        .unwrap();
    assert_success(&out, "resume after the pause");
    assert_dataset(&sandbox.finalized(), &host, &pushed, 0);
    if unix(started) < until {
        assert!(
            stderr(&out).contains(&format!("{host} asked the last run to pause")),
            "{}",
            stderr(&out)
        );
    }
    let early: Vec<_> = harness
        .front
        .requests()
        .into_iter()
        .filter(|r| unix(r.at) < until)
        .map(|r| r.path)
        .collect();
    assert!(
        early.is_empty(),
        "requests before the stored pause ended: {early:?}"
    );
    assert!(
        !status(&sandbox).contains("paused:"),
        "the pause is over and cleared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_without_docker_content_digest_falls_back_to_a_get_by_tag() {
    let (harness, pushed, url, host) = mcr(McrConfig {
        head_without_digest: true,
        ..McrConfig::default()
    })
    .await;
    let sandbox = Sandbox::new("catalog-mcr-no-digest");
    let out = catalog_crawl(&sandbox, &url, &[]).output().unwrap();
    assert_success(&out, "a crawl whose HEADs name no digest");
    assert_dataset(&sandbox.finalized(), &host, &pushed, 0);
    let log = harness.front.requests();
    let by_tag = log
        .iter()
        .filter(|r| r.kind == Kind::ManifestGet && !r.path.contains("/manifests/sha256:"))
        .count();
    // Each tag once by tag (its HEAD said nothing); by digest only the index's platform images.
    let tags = pairs(&host, &pushed).len();
    assert_eq!(by_tag, tags, "{log:?}");
    assert_eq!(harness.front.count(Kind::ManifestHead), tags);
    assert_eq!(harness.front.count(Kind::ManifestGet), tags + 2, "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_list_that_always_fails_is_given_up_by_skip_failed_and_read_again_by_resume() {
    // Microsoft's catalog lists repositories whose tag list always fails: without
    // `--skip-failed` the crawl would end at exit 3 forever.
    let (harness, pushed, url, host) = mcr(McrConfig {
        broken_tags: Some("base/alpine".into()),
        ..McrConfig::default()
    })
    .await;
    let sandbox = Sandbox::new("catalog-skip-failed");
    let out = catalog_crawl(&sandbox, &url, &[]).output().unwrap();
    assert_code(
        &out,
        3,
        "a crawl whose tag list of base/alpine always fails",
    );
    let out = catalog_crawl(&sandbox, &url, &["--resume"])
        .output()
        .unwrap();
    assert_code(&out, 3, "--resume tries it again, and it fails again");

    let out = catalog_crawl(&sandbox, &url, &["--resume", "--skip-failed"])
        .output()
        .unwrap();
    assert_code(&out, 4, "--resume --skip-failed: finished, incomplete");
    let err = stderr(&out);
    assert!(err.contains("1 failed job(s) of"), "{err}");
    assert!(err.contains("the result may be incomplete"), "{err}");
    let gap = format!("{host}/base/alpine: the tag list page ");
    assert!(err.contains(&gap), "the summary names the gap: {err}");
    assert!(err.contains("was given up (--skip-failed)"), "{err}");
    let text = status(&sandbox);
    assert!(text.contains("finished INCOMPLETE"), "{text}");
    assert!(text.contains(&gap), "{text}");
    assert!(text.contains("1 listing(s) ended early"), "{text}");
    assert!(
        !text.contains("failed job"),
        "no failed job is left: {text}"
    );
    // Every other repository is in the dataset; base/alpine's tags are not, and nothing of the
    // repository was taken for deleted.
    let data = sandbox.finalized();
    let tags: BTreeSet<String> = data
        .values()
        .flat_map(|line| strings(&line["tags"]))
        .collect();
    for (tag, digest) in pairs(&host, &pushed) {
        let alpine = tag.starts_with(&format!("{host}/base/alpine:"));
        assert_eq!(tags.contains(&tag), !alpine, "{tag} ({digest})");
    }
    assert!(text.contains("0 marked deleted"), "{text}");

    // The registry serves it again: `--resume` reads the listing that was given up.
    harness.front.update(|c| c.broken_tags = None);
    let out = catalog_crawl(&sandbox, &url, &["--resume"])
        .output()
        .unwrap();
    assert_success(&out, "--resume once the tag list works");
    assert_dataset(&sandbox.finalized(), &host, &pushed, 0);
    assert!(status(&sandbox).contains("crawl #1: finished"));
}

/// `dataset-generation/generate.sh --offline` with `CATALOG`: the Hub double crawled and
/// enriched, then the repositories `CATALOG_REPOS` names crawled through the registry's catalog,
/// all in one dataset, the registry's tags host-qualified and nothing else of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_sh_adds_the_repositories_of_a_catalog_to_the_dataset() {
    let (_harness, pushed, url, host) = mcr(McrConfig::default()).await;
    let hub = FakeHub::bind(FakeHubConfig {
        repos: 2,
        max_tags: 10,
        big_repo_tags: 10,
        ..FakeHubConfig::default()
    })
    .unwrap();
    let sandbox = Sandbox::new("catalog-generate");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dataset-generation/generate.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("--offline")
        .current_dir(&sandbox.dir)
        .env("DB", sandbox.db())
        .env("OUT", sandbox.path("out.ndjson"))
        .env("DIGESTMAP_BIN", env!("CARGO_BIN_EXE_digestmap"))
        .env("HOME", sandbox.home())
        .env("FAKE_HUB_URL", hub.url())
        .env("CATALOG", &url)
        .env("CATALOG_REPOS", "windows/servercore base/alpine")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_success(&out, "generate.sh --offline with CATALOG");
    let text = std::fs::read_to_string(sandbox.path("out.ndjson")).unwrap();
    let data: BTreeMap<String, Value> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["digest"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    for digest in hub.truth().keys() {
        assert!(
            data.contains_key(digest),
            "the Hub double's {digest} is missing"
        );
    }
    let registry_tags: BTreeSet<String> = data
        .values()
        .flat_map(|v| strings(&v["tags"]))
        .filter(|t| t.starts_with(&format!("{host}/")))
        .collect();
    let expected: BTreeSet<String> = pairs(&host, &pushed)
        .into_keys()
        .filter(|t| t.contains("/windows/servercore:") || t.contains("/base/alpine:"))
        .collect();
    assert_eq!(registry_tags, expected);
    let windows = &data[&pushed.windows.digest];
    assert_eq!(windows["os_version"], "10.0.20348.2849", "{windows}");
    assert!(windows["image_id"].is_string(), "{windows}");
    let text = status(&sandbox);
    assert!(
        text.contains(&format!("registry {host} (")) && text.contains("crawl #1: finished"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_404_is_confirmed_by_a_get_whose_code_says_a_deleted_tag_a_vanished_repository_or_a_failure()
 {
    let (harness, pushed, url, host) = mcr(McrConfig::default()).await;
    let sandbox = Sandbox::new("catalog-head-404");
    let out = catalog_crawl(&sandbox, &url, &[]).output().unwrap();
    assert_success(&out, "the first crawl");

    // Between the listings and their HEADs: base/alpine:edge is deleted (the registry's GET
    // answers MANIFEST_UNKNOWN), the repository ghost/gone is removed (NAME_UNKNOWN), and
    // base/alpine:latest answers a 404 that is not the registry's (no error body).
    harness.front.update(|c| {
        c.ghost_tags = vec![
            ("base/alpine".into(), "edge".into()),
            ("ghost/gone".into(), "1".into()),
        ];
        c.removed_repo = Some("ghost/gone".into());
        c.lost_manifest = Some("/v2/base/alpine/manifests/latest".into());
    });
    harness.front.clear_requests();
    let out = catalog_crawl(&sandbox, &url, &[]).output().unwrap();
    assert_code(&out, 3, "a HEAD 404 the registry's GET does not explain");
    let err = stderr(&out);
    assert!(
        err.contains("/v2/base/alpine/manifests/latest answered 404"),
        "{err}"
    );
    let log = harness.front.requests();
    let gets = |path: &str| {
        log.iter()
            .filter(|r| r.kind == Kind::ManifestGet && r.path == path)
            .count()
    };
    // Each HEAD 404 is confirmed by one GET by tag; the unexplained one is tried 5 times.
    assert_eq!(gets("/v2/base/alpine/manifests/edge"), 1, "{log:?}");
    assert_eq!(gets("/v2/ghost/gone/manifests/1"), 1, "{log:?}");
    assert_eq!(gets("/v2/base/alpine/manifests/latest"), 5, "{log:?}");
    let text = status(&sandbox);
    assert!(
        text.contains("1 vanished from the registry so far"),
        "{text}"
    );
    assert!(text.contains("0 marked deleted"), "{text}");
    assert!(text.contains("jobs: 0 pending, 1 failed"), "{text}");
    // base/alpine:latest is not taken for deleted: it is still current.
    let latest = format!("{host}/base/alpine:latest");
    let data = sandbox.finalized();
    assert!(strings(&data[&pushed.alpine.digest]["current"]).contains(&latest));
    assert!(
        !data
            .values()
            .any(|line| strings(&line["tags"]).contains(&format!("{host}/base/alpine:edge"))),
        "a tag whose manifest is unknown is not in the dataset"
    );

    // The manifest answers again: --resume asks the failed HEAD again and the run finishes.
    harness.front.update(|c| c.lost_manifest = None);
    let out = catalog_crawl(&sandbox, &url, &["--resume"])
        .output()
        .unwrap();
    assert_success(&out, "--resume once base/alpine:latest answers");
    let text = status(&sandbox);
    assert!(text.contains("crawl #2: finished"), "{text}");
    assert!(text.contains("0 marked deleted"), "{text}");
    assert_dataset(&sandbox.finalized(), &host, &pushed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_pull_budget_ends_a_catalog_crawl_with_exit_6_and_resume_completes_it() {
    // 4 pulls a window; the first crawl needs 7 manifest GETs.
    let harness = Harness::start(FrontConfig {
        pull_limit: Some(4),
        ..FrontConfig::default()
    })
    .await;
    let pushed = build();
    push(&harness.pusher, &pushed).await;
    let (url, host) = origin_of(harness.front.url());
    let sandbox = Sandbox::new("catalog-budget");
    let out = catalog_crawl(&sandbox, &url, &[]).output().unwrap();
    assert_code(&out, 6, "a crawl that meets the spent budget");
    let err = stderr(&out);
    assert!(
        err.contains("stopped: the registry's pull budget is spent until"),
        "{err}"
    );
    assert!(err.contains("--resume"), "{err}");
    assert!(
        err.contains("0 failed") && !err.contains("job(s) failed"),
        "{err}"
    );
    let first = seen(&harness.front.requests());
    assert_eq!(first.manifest_gets, 4, "{first:?}");
    let refused = harness
        .front
        .requests()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    // The budget is known from the answers: at most the GETs in flight when it ran out are
    // refused, none is sent again and again.
    assert!(refused <= 4, "{refused} answers 429");
    let text = status(&sandbox);
    assert!(!text.contains("crawl #1: finished"), "{text}");
    assert!(!text.contains("failed job"), "{text}");

    // A new window: --resume sends the manifest GETs that were kept, each once.
    harness.front.reset_pulls();
    harness.front.clear_requests();
    let out = catalog_crawl(&sandbox, &url, &["--resume"])
        .output()
        .unwrap();
    assert_success(&out, "--resume in a new window");
    let second = seen(&harness.front.requests());
    assert_eq!(first.manifest_gets + second.manifest_gets, 7, "{second:?}");
    assert!(status(&sandbox).contains("crawl #1: finished"));
    assert_dataset(&sandbox.finalized(), &host, &pushed, 0);
}

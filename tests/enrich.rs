//! `digestmap enrich` end to end through the real binary: a Hub double whose tags point at the
//! digests pushed into Debian's real `docker-registry` (behind the Hub-like front with token
//! service, pull budget and CDN), then crawl → enrich → finalize, all on loopback.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use digestmap::model::Digest;
use digestmap::registry::chain_ids;
use serde_json::{Value, json};
use support::fake_hub::{FakeHub, FakeHubConfig};
use support::pty::run_on_terminal;
use support::registry::front::{FrontConfig, Origin};
use support::registry::image::{self, BuiltImage, BuiltIndex, Format, ImageSpec, Layer, Pusher};
use support::registry::mcr::{Kind, McrConfig, Throttle};
use support::registry::{Harness, McrHarness};
use support::sandbox::{Sandbox, assert_code, assert_success, stderr, stdout};

/// What is pushed: a Docker single-platform image, an OCI index with attestations, an index that
/// Hub lists as a plain manifest (`images: []`), and a base image with one built FROM it.
struct Pushed {
    single: BuiltImage,
    multi: BuiltIndex,
    lone: BuiltIndex,
    base: BuiltImage,
    derived: BuiltImage,
}

impl Pushed {
    /// Every platform image: (its manifest, the store digest whose tags it carries).
    fn images(&self) -> Vec<(&BuiltImage, &str)> {
        let mut out = vec![(&self.single, self.single.digest.as_str())];
        out.extend(self.multi.images.iter().map(|i| (i, i.digest.as_str())));
        out.extend(
            self.lone
                .images
                .iter()
                .map(|i| (i, self.lone.digest.as_str())),
        );
        out.push((&self.base, self.base.digest.as_str()));
        out.push((&self.derived, self.derived.digest.as_str()));
        out
    }

    /// Manifest GETs a complete enrichment needs: one per platform manifest the store holds,
    /// plus the index met in place of one.
    fn manifests(&self) -> u64 {
        1 + self.multi.images.len() as u64 + 1 + self.lone.images.len() as u64 + 2
    }
}

fn build() -> Pushed {
    let single = image::build(ImageSpec::linux(
        "amd64",
        None,
        vec![Layer::new(&[("etc/os-release", b"ID=single\n")])],
        Format::Docker,
    ));
    let shared = Layer::new(&[("bin/sh", b"#!shared\n")]);
    let multi = image::index(
        vec![
            image::build(ImageSpec::linux(
                "amd64",
                None,
                vec![shared.clone(), Layer::new(&[("app", b"amd64")])],
                Format::Oci,
            )),
            image::build(ImageSpec::linux(
                "arm64",
                Some("v8"),
                vec![shared, Layer::new(&[("app", b"arm64")])],
                Format::Oci,
            )),
        ],
        Format::Oci,
        true,
    );
    let lone = image::index(
        vec![image::build(ImageSpec::linux(
            "s390x",
            None,
            vec![Layer::new(&[("lone", b"lone")])],
            Format::Docker,
        ))],
        Format::Docker,
        false,
    );
    let bottom = vec![
        Layer::new(&[("etc/base", b"base 1")]),
        Layer::new(&[("etc/base2", b"base 2")]),
    ];
    let base = image::build(ImageSpec::linux(
        "amd64",
        None,
        bottom.clone(),
        Format::Docker,
    ));
    let mut layers = bottom;
    layers.push(Layer::new(&[("app/derived", b"derived")]));
    let derived = image::build(ImageSpec::linux("amd64", None, layers, Format::Oci));
    Pushed {
        single,
        multi,
        lone,
        base,
        derived,
    }
}

/// Pushes everything under `prefix` (`""`, or `docker/` for a mirror's layout).
async fn push(p: &Pusher, pushed: &Pushed, prefix: &str) {
    p.image(&format!("{prefix}library/single"), "1.0", &pushed.single)
        .await;
    p.index(&format!("{prefix}library/multi"), "2", &pushed.multi)
        .await;
    p.index(&format!("{prefix}library/lone"), "1", &pushed.lone)
        .await;
    p.image(&format!("{prefix}library/base"), "1", &pushed.base)
        .await;
    p.image(
        &format!("{prefix}library/derived"),
        "latest",
        &pushed.derived,
    )
    .await;
}

fn platform(image: &BuiltImage) -> Value {
    let mut p = json!({"os": image.spec.os, "architecture": image.spec.architecture});
    if let Some(v) = &image.spec.variant {
        p["variant"] = json!(v);
    }
    p
}

/// One Hub tag-list page holding `tags`.
fn page(tags: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"count": tags.len(), "next": null, "previous": null, "results": tags}),
    )
    .unwrap()
}

fn tag(
    name: &str,
    digest: &str,
    media_type: Option<&str>,
    images: Vec<Value>,
    pushed: &str,
) -> Value {
    let mut t = json!({"name": name, "digest": digest, "images": images,
        "last_updated": pushed, "tag_last_pushed": pushed});
    if let Some(m) = media_type {
        t["media_type"] = json!(m);
    }
    t
}

fn entry(image: &BuiltImage) -> Value {
    entry_as(image, &image.digest)
}

fn entry_as(image: &BuiltImage, digest: &str) -> Value {
    let mut e = platform(image);
    e["digest"] = json!(digest);
    e
}

const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";

/// A Hub double whose five repositories list the pushed digests, as Hub's API shows them.
async fn hub(pushed: &Pushed) -> FakeHub {
    let single = &pushed.single;
    let pages = vec![
        (
            "single",
            vec![tag(
                "1.0",
                &single.digest,
                Some(single.media_type),
                vec![entry(single)],
                "2026-01-05T00:00:00.000000Z",
            )],
        ),
        (
            "multi",
            vec![tag(
                "2",
                &pushed.multi.digest,
                Some(pushed.multi.media_type),
                pushed.multi.images.iter().map(entry).collect(),
                "2026-01-04T00:00:00.000000Z",
            )],
        ),
        // Listed with no media type and no images: taken for a manifest, an index in truth.
        (
            "lone",
            vec![tag(
                "1",
                &pushed.lone.digest,
                None,
                vec![],
                "2026-01-03T00:00:00.000000Z",
            )],
        ),
        (
            "base",
            vec![
                tag(
                    "1",
                    &pushed.base.digest,
                    Some(pushed.base.media_type),
                    vec![entry(&pushed.base)],
                    "2026-01-02T00:00:00.000000Z",
                ),
                // A legacy image-ID tag: its digest is the config blob itself.
                tag(
                    "id",
                    &pushed.base.config_digest,
                    Some(CONFIG_TYPE),
                    vec![entry_as(&pushed.base, &pushed.base.config_digest)],
                    "2026-01-02T00:00:00.000000Z",
                ),
            ],
        ),
        (
            "derived",
            vec![tag(
                "latest",
                &pushed.derived.digest,
                Some(pushed.derived.media_type),
                vec![entry(&pushed.derived)],
                "2026-01-01T00:00:00.000000Z",
            )],
        ),
    ];
    FakeHub::start(FakeHubConfig {
        repos: 1,
        max_tags: 3,
        big_repo_tags: 3,
        override_paths: pages
            .into_iter()
            .map(|(repo, tags)| (format!("/repositories/{repo}/tags"), 200, page(tags)))
            .collect(),
        ..FakeHubConfig::default()
    })
    .await
}

/// The usual start: the test images pushed to `pusher`, a Hub double listing them, and a store
/// crawled from it as `name` (the double is returned to keep it serving).
async fn crawled_images(pusher: &Pusher, name: &str) -> (Pushed, FakeHub, Sandbox) {
    let pushed = build();
    push(pusher, &pushed, "").await;
    let hub = hub(&pushed).await;
    let sandbox = crawled(name, &hub);
    (pushed, hub, sandbox)
}

/// A Microsoft-like registry (no token, no pull budget) holding [`build`]'s images, a store
/// crawled from a Hub double listing them, and then `throttle` turned on: the harness, what was
/// pushed, the store, and the registry's origin (no trailing slash) for `--registry`.
async fn throttled_registry(
    name: &str,
    throttle: Throttle,
) -> (McrHarness, Pushed, Sandbox, String) {
    let harness = McrHarness::start(McrConfig::default()).await;
    let (pushed, _hub, sandbox) = crawled_images(&harness.pusher, name).await;
    harness.front.update(|c| c.throttle = Some(throttle));
    let url = harness
        .front
        .url()
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    (harness, pushed, sandbox, url)
}

const REPOS: [&str; 5] = ["single", "multi", "lone", "base", "derived"];

/// A store crawled from `hub`.
fn crawled(name: &str, hub: &FakeHub) -> Sandbox {
    let sandbox = Sandbox::new(name);
    let mut args = Vec::new();
    for repo in REPOS {
        args.extend(["--repo", repo]);
    }
    let out = sandbox.fast_crawl(&hub.url(), &args).output().unwrap();
    assert_success(&out, "crawl");
    sandbox
}

/// `enrich` of the harness's registry at `rps` requests per second, then `extra`.
fn enrich_command(sandbox: &Sandbox, harness: &Harness, rps: &str, extra: &[&str]) -> Command {
    let url = harness.front.url().to_string();
    let mut args = vec![
        "enrich",
        "--registry",
        url.trim_end_matches('/'),
        "--rps",
        rps,
        "--retry-base-ms",
        "20",
    ];
    args.extend_from_slice(extra);
    sandbox.command(&args)
}

fn enrich(sandbox: &Sandbox, harness: &Harness, extra: &[&str]) -> Output {
    enrich_command(sandbox, harness, "500", extra)
        .output()
        .unwrap()
}

/// The dataset, keyed by digest.
fn dataset(sandbox: &Sandbox) -> BTreeMap<String, Value> {
    sandbox.finalized()
}

fn chain_id(diff_ids: &[String]) -> String {
    let ids: Vec<Digest> = diff_ids.iter().map(|d| Digest::parse(d).unwrap()).collect();
    chain_ids(&ids).last().unwrap().to_string()
}

/// The dataset says of every pushed image what was pushed: its image ID on its manifest line,
/// and a config line with its platform, diff_ids, ChainID, manifests and tags.
fn assert_dataset_matches(data: &BTreeMap<String, Value>, pushed: &Pushed) {
    for (image, carrier) in pushed.images() {
        let carrier_line = &data[carrier];
        if carrier == image.digest {
            assert_eq!(
                carrier_line["image_id"],
                json!(image.config_digest),
                "{carrier}"
            );
            assert_eq!(carrier_line["layers"], json!(image.spec.layers.len()));
        } else {
            // An index Hub listed as a plain manifest: once enriched, a line like any index's,
            // and its platform manifests lines of their own under it, with its tags.
            assert!(
                carrier_line.get("image_id").is_none(),
                "an index has no image ID"
            );
            assert_eq!(carrier_line["kind"], "index", "{carrier_line}");
            assert_eq!(carrier_line["platform"], Value::Null, "{carrier_line}");
            let line = data
                .get(&image.digest)
                .unwrap_or_else(|| panic!("no line for {} in {carrier}", image.digest));
            assert_eq!(line["kind"], "manifest", "{line}");
            let mut want = format!("{}/{}", image.spec.os, image.spec.architecture);
            if let Some(v) = &image.spec.variant {
                want = want + "/" + v;
            }
            assert_eq!(line["platform"], json!(want), "{line}");
            assert_eq!(line["indexes"], json!([carrier]), "{line}");
            assert_eq!(line["image_id"], json!(image.config_digest), "{line}");
            assert_eq!(line["tags"], carrier_line["tags"], "{line}");
            assert_eq!(line["current"], carrier_line["tags"], "{line}");
        }
        let line = data
            .get(&image.config_digest)
            .unwrap_or_else(|| panic!("no line for image ID {}", image.config_digest));
        assert_eq!(line["kind"], "config");
        assert_eq!(
            line["diff_ids"],
            json!(image.diff_ids()),
            "{}",
            image.config_digest
        );
        assert_eq!(line["chain_id"], json!(chain_id(&image.diff_ids())));
        assert_eq!(line["manifests"], json!([image.digest]));
        // Base's image ID is also a tag's own digest (a legacy image-ID tag): one line, both tags.
        let mut tags: Vec<Value> = carrier_line["tags"].as_array().unwrap().clone();
        if image.config_digest == pushed.base.config_digest {
            tags.push(json!("base:id"));
        }
        assert_eq!(line["tags"], json!(tags));
        assert_eq!(line["current"], json!(tags));
        let mut want = image.spec.os.clone() + "/" + &image.spec.architecture;
        if let Some(v) = &image.spec.variant {
            want = want + "/" + v;
        }
        assert_eq!(line["platform"], json!(want));
    }
    // The image built FROM base shares its chain's first two links.
    let base = pushed.base.diff_ids();
    let derived = pushed.derived.diff_ids();
    assert_eq!(derived[..2], base[..]);
    // Attestation manifests were never fetched as images: no config line beyond the images'.
    let configs = data.values().filter(|v| v["kind"] == "config").count();
    assert_eq!(configs, pushed.images().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_ids_and_diff_ids_equal_what_was_pushed_and_a_second_run_spends_nothing() {
    let harness = Harness::start(FrontConfig {
        pull_limit: Some(100),
        ..FrontConfig::default()
    })
    .await;
    let (pushed, hub, sandbox) = crawled_images(&harness.pusher, "enrich-whole").await;

    let out = enrich(&sandbox, &harness, &[]);
    assert_success(&out, "enrich");
    // Exactly one pull per manifest: nothing fetched twice.
    assert_eq!(
        harness.front.pulls(),
        pushed.manifests(),
        "{}",
        stderr(&out)
    );
    let data = dataset(&sandbox);
    assert_dataset_matches(&data, &pushed);

    // No Authorization ever reached the CDN, which served every config.
    let requests = harness.front.requests();
    let cdn: Vec<_> = requests
        .iter()
        .filter(|r| r.origin == Origin::Cdn)
        .collect();
    assert_eq!(cdn.len(), pushed.images().len());
    assert!(
        cdn.iter()
            .all(|r| r.authorization.is_none() && r.status == 200)
    );

    // `lookup` answers an image ID like any digest, from the store and from the dataset.
    let id = &pushed.derived.config_digest;
    let out = sandbox.command(&["lookup", "--json", id]).output().unwrap();
    assert_success(&out, "lookup of an image ID");
    let answer: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(answer, data[id.as_str()]);
    let prefix = &id["sha256:".len()..][..12];
    let out = sandbox
        .command(&["lookup", "--json", prefix])
        .output()
        .unwrap();
    assert_success(&out, "lookup of an image ID by prefix");
    let by_prefix: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(by_prefix, answer);
    sandbox
        .command(&["finalize", "--out", "d.ndjson"])
        .output()
        .unwrap();
    let out = sandbox
        .command(&["lookup", "--dataset", "d.ndjson", id])
        .output()
        .unwrap();
    assert_success(&out, "lookup of an image ID in the dataset");
    assert!(stdout(&out).contains("derived:latest"), "{}", stdout(&out));

    // A second run on the unchanged store sends nothing at all.
    harness.front.clear_requests();
    let out = enrich(&sandbox, &harness, &[]);
    assert_success(&out, "second enrich");
    assert_eq!(harness.front.pulls(), pushed.manifests());
    assert!(
        harness.front.requests().is_empty(),
        "{:?}",
        harness.front.requests()
    );
    assert_eq!(dataset(&sandbox), data);
    let status = sandbox.command(&["status"]).output().unwrap();
    assert_success(&status, "status");
    let text = stdout(&status);
    assert!(
        text.contains("enrich: 7 manifests and 6 image IDs learned; 0 digests left"),
        "{text}"
    );

    // A later crawl sees the index listed as a plain manifest again: its platform manifests
    // stay under it and current, with nothing left to enrich.
    let mut args = Vec::new();
    for repo in REPOS {
        args.extend(["--repo", repo]);
    }
    let out = sandbox.fast_crawl(&hub.url(), &args).output().unwrap();
    assert_success(&out, "a crawl after enrich");
    assert_dataset_matches(&dataset(&sandbox), &pushed);
    let out = enrich(&sandbox, &harness, &[]);
    assert_success(&out, "enrich after the crawl");
    assert!(
        stderr(&out).contains("nothing new to learn"),
        "{}",
        stderr(&out)
    );
    assert_eq!(harness.front.pulls(), pushed.manifests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_ends_the_run_cleanly_and_enrich_goes_on_after_the_window() {
    // The window is short so that the test can outlast it, and long enough that the checks
    // right after the first run fall inside it on a loaded machine.
    let window = 8;
    let harness = Harness::start(FrontConfig {
        pull_limit: Some(4),
        window_secs: window,
        ..FrontConfig::default()
    })
    .await;
    let (pushed, hub, sandbox) = crawled_images(&harness.pusher, "enrich-budget").await;

    let out = enrich(&sandbox, &harness, &["--workers", "4"]);
    assert_code(&out, 6, "enrich on a spent budget");
    assert!(
        stderr(&out).contains("pull budget is spent until"),
        "{}",
        stderr(&out)
    );
    // Never a GET the budget did not cover: no 429 was needed.
    assert_eq!(harness.front.pulls(), 4);
    let refused = |h: &Harness| {
        h.front
            .requests()
            .iter()
            .filter(|r| r.status == 429)
            .count()
    };
    assert_eq!(refused(&harness), 0);
    let status = sandbox.command(&["status"]).output().unwrap();
    let text = stdout(&status);
    assert!(text.contains("4 manifests and"), "{text}");
    assert!(text.contains("digests left"), "{text}");
    assert!(text.contains("`digestmap enrich` can go on then"), "{text}");

    // A crawl (a refresh) beside the pending enrich jobs finishes, and leaves them pending.
    let mut args = Vec::new();
    for repo in REPOS {
        args.extend(["--repo", repo]);
    }
    let out = sandbox.fast_crawl(&hub.url(), &args).output().unwrap();
    assert_success(&out, "a crawl with enrich jobs pending");
    let text = stdout(&sandbox.command(&["status"]).output().unwrap());
    assert!(text.contains("crawl #2 (refresh): finished"), "{text}");
    assert!(text.contains("4 manifests and"), "{text}");
    assert!(!text.contains("; 0 digests left"), "{text}");

    // After the window: goes on and finishes, without ever a 429 or a pull spent twice.
    let mut runs = 0;
    loop {
        std::thread::sleep(Duration::from_millis(window * 1000 + 500));
        harness.front.reset_pulls();
        runs += 1;
        let out = enrich(&sandbox, &harness, &[]);
        match out.status.code() {
            Some(0) => break,
            Some(6) if runs < 5 => {}
            _ => panic!(
                "enrich after the window: {:?}\n{}",
                out.status,
                stderr(&out)
            ),
        }
    }
    assert_eq!(refused(&harness), 0);
    let manifest_gets = harness
        .front
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.target.contains("/manifests/") && r.status == 200)
        .count() as u64;
    assert_eq!(manifest_gets, pushed.manifests());
    assert_dataset_matches(&dataset(&sandbox), &pushed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pulls_caps_one_run() {
    let harness = Harness::start(FrontConfig::default()).await;
    let (pushed, _hub, sandbox) = crawled_images(&harness.pusher, "enrich-max-pulls").await;
    let out = enrich(&sandbox, &harness, &["--max-pulls", "2"]);
    assert_code(&out, 6, "enrich --max-pulls 2");
    assert_eq!(harness.front.pulls(), 2);
    let out = enrich(&sandbox, &harness, &[]);
    assert_success(&out, "enrich after --max-pulls");
    assert_eq!(harness.front.pulls(), pushed.manifests());
    assert_dataset_matches(&dataset(&sandbox), &pushed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_not_matching_the_digest_are_caught_and_nothing_of_them_is_stored() {
    let harness = Harness::start(FrontConfig {
        tamper_manifests: true,
        ..FrontConfig::default()
    })
    .await;
    let (pushed, _hub, sandbox) = crawled_images(&harness.pusher, "enrich-tamper").await;
    let out = enrich(&sandbox, &harness, &[]);
    assert_code(&out, 3, "enrich against a lying registry");
    let err = stderr(&out);
    assert!(err.contains("failed jobs: 6"), "{err}");
    assert!(err.contains(&pushed.single.digest), "{err}");
    let data = dataset(&sandbox);
    assert!(data.values().all(|v| v.get("image_id").is_none()));
    // Only the legacy image-ID tag's config, a blob served intact, was learned.
    let learned = |data: &BTreeMap<String, Value>| -> Vec<String> {
        data.values()
            .filter(|v| v.get("diff_ids").is_some())
            .map(|v| v["digest"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        learned(&data),
        std::slice::from_ref(&pushed.base.config_digest)
    );

    // Config blobs too: the manifests are learned, the images are not.
    harness.front.update(|c| {
        c.tamper_manifests = false;
        c.tamper_blobs = true;
    });
    let out = enrich(&sandbox, &harness, &["--resume"]);
    assert_code(&out, 3, "enrich against a lying CDN");
    let data = dataset(&sandbox);
    assert_eq!(
        learned(&data),
        std::slice::from_ref(&pushed.base.config_digest)
    );
    assert_eq!(
        data[&pushed.single.digest]["image_id"],
        json!(pushed.single.config_digest)
    );

    // Once the registry tells the truth, `--resume` finishes the job.
    harness.front.update(|c| c.tamper_blobs = false);
    let out = enrich(&sandbox, &harness, &["--resume"]);
    assert_success(&out, "enrich --resume");
    assert_dataset_matches(&dataset(&sandbox), &pushed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_with_a_path_prefix_gives_the_same_answers() {
    let harness = Harness::start(FrontConfig::default()).await;
    let pushed = build();
    push(&harness.pusher, &pushed, "").await;
    push(&harness.pusher, &pushed, "docker/").await;
    let hub = hub(&pushed).await;
    let direct = crawled("enrich-direct", &hub);
    assert_success(&enrich(&direct, &harness, &[]), "enrich");
    let mirrored = crawled("enrich-mirror", &hub);
    harness.front.clear_requests();
    let out = enrich(&mirrored, &harness, &["--registry-prefix", "docker"]);
    assert_success(&out, "enrich from the mirror");
    let requests = harness.front.requests();
    let repository_requests: Vec<_> = requests
        .iter()
        .filter(|r| r.origin == Origin::Registry)
        .collect();
    assert!(!repository_requests.is_empty());
    assert!(
        repository_requests
            .iter()
            .all(|r| r.target.starts_with("/v2/docker/library/")),
        "{repository_requests:?}"
    );
    let strip = |mut d: BTreeMap<String, Value>| {
        for v in d.values_mut() {
            v.as_object_mut().unwrap().remove("first_seen");
            v.as_object_mut().unwrap().remove("last_seen");
        }
        d
    };
    assert_eq!(strip(dataset(&mirrored)), strip(dataset(&direct)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_enrich_loses_nothing_and_refetches_at_most_what_was_in_flight() {
    let harness = Harness::start(FrontConfig::default()).await;
    let (pushed, _hub, sandbox) = crawled_images(&harness.pusher, "enrich-kill").await;
    let workers = 2;
    // Slow enough to be killed midway (whatever the machine's speed, the checks below hold).
    let mut child = enrich_command(&sandbox, &harness, "3", &["--workers", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while harness.front.pulls() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        harness.front.pulls() >= 3,
        "the first run did not get going"
    );
    child.kill().unwrap();
    let killed = child.wait().unwrap();
    // Killed midway (no exit code), or, on a fast machine, finished before the kill.
    assert!(matches!(killed.code(), None | Some(0)), "{killed:?}");
    let before = harness.front.pulls();
    let out = enrich(&sandbox, &harness, &["--resume"]);
    assert_success(&out, "enrich --resume after kill -9");
    let out = enrich(&sandbox, &harness, &[]);
    assert_success(&out, "enrich after kill -9");
    assert!(
        harness.front.pulls() <= pushed.manifests() + workers,
        "{} pulls after {before} before the kill",
        harness.front.pulls()
    );
    assert_dataset_matches(&dataset(&sandbox), &pushed);
    let check = sandbox.command(&["check"]).output().unwrap();
    assert_success(&check, "check after kill -9 and resume");
}

/// Many images at once, with no limit: every one learned with exactly one pull, and a repeated
/// run spends none. It also prints the benchmark figure of the README, manifests and configs
/// learned per second (`DIGESTMAP_BENCH_IMAGES=200 cargo test --test enrich throughput --
/// --nocapture`; 40 images by default, to keep the suite quick). Only the counts are asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_with_no_limit() {
    let n: usize = std::env::var("DIGESTMAP_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let harness = Harness::start(FrontConfig {
        pull_limit: Some(100_000),
        ..FrontConfig::default()
    })
    .await;
    let mut overrides = Vec::new();
    let mut args = Vec::new();
    let names: Vec<String> = (0..n).map(|i| format!("bench{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let built = image::build(ImageSpec::linux(
            "amd64",
            None,
            vec![Layer::new(&[("n", i.to_string().as_bytes())])],
            Format::Docker,
        ));
        harness
            .pusher
            .image(&format!("library/{name}"), "1", &built)
            .await;
        let t = tag(
            "1",
            &built.digest,
            Some(built.media_type),
            vec![entry(&built)],
            "2026-01-01T00:00:00Z",
        );
        overrides.push((format!("/repositories/{name}/tags"), 200, page(vec![t])));
    }
    for name in &names {
        args.extend(["--repo", name.as_str()]);
    }
    let hub = FakeHub::start(FakeHubConfig {
        repos: 1,
        max_tags: 3,
        big_repo_tags: 3,
        override_paths: overrides,
        ..FakeHubConfig::default()
    })
    .await;
    let sandbox = Sandbox::new("enrich-bench");
    assert_success(
        &sandbox.fast_crawl(&hub.url(), &args).output().unwrap(),
        "crawl",
    );
    let started = Instant::now();
    let out = enrich_command(&sandbox, &harness, "10000", &["--workers", "8"])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert_success(&out, "enrich");
    assert_eq!(harness.front.pulls(), n as u64);
    println!(
        "{n} manifests + {n} configs in {:.2}s: {:.0} learned/s; pulls per image: {}",
        elapsed.as_secs_f64(),
        (2 * n) as f64 / elapsed.as_secs_f64(),
        harness.front.pulls() as f64 / n as f64
    );
    let started = Instant::now();
    assert_success(&enrich(&sandbox, &harness, &[]), "second enrich");
    assert_eq!(
        harness.front.pulls(),
        n as u64,
        "a repeated run spends no pull"
    );
    println!(
        "repeated run: {} pulls in {:.2}s",
        harness.front.pulls() - n as u64,
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_stops_manifest_requests_for_the_window_while_blobs_go_on() {
    // Another client on the same address spent the budget: the first manifest GET meets a 429.
    let harness = Harness::start(FrontConfig {
        pull_limit: Some(0),
        ..FrontConfig::default()
    })
    .await;
    let (pushed, _hub, sandbox) = crawled_images(&harness.pusher, "enrich-429").await;
    let out = enrich(&sandbox, &harness, &["--workers", "4"]);
    assert_code(&out, 6, "enrich after a 429");
    let requests = harness.front.requests();
    // (A 401 challenge answered before any token is sent spends nothing.)
    let manifest_gets = requests
        .iter()
        .filter(|r| r.method == "GET" && r.target.contains("/manifests/") && r.status != 401)
        .count();
    let refused = requests.iter().filter(|r| r.status == 429).count();
    assert_eq!((manifest_gets, refused), (1, 1), "{requests:?}");
    // The legacy image-ID tag needs only its blob: learned all the same.
    let data = dataset(&sandbox);
    assert_eq!(
        data[&pushed.base.config_digest]["diff_ids"],
        json!(pushed.base.diff_ids())
    );
    // A new run in the window sends no manifest request.
    harness.front.clear_requests();
    let out = enrich(&sandbox, &harness, &[]);
    assert_code(&out, 6, "enrich within the window");
    assert!(harness.front.requests().is_empty());
    // It planned nothing, and says what it continued.
    assert!(
        stderr(&out).contains("enrich: 6 job(s) queued by an earlier run continued,"),
        "{}",
        stderr(&out)
    );
    let text = stdout(&sandbox.command(&["status"]).output().unwrap());
    assert!(text.contains("429 answers 1"), "{text}");
    assert!(
        text.contains("6 digests left (6 manifests, 0 configs)"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_from_a_registry_without_a_pull_budget_pauses_every_worker_and_the_run_completes() {
    // Microsoft's registry (or a mirror) declares no pull budget: its 429 is a request limit, a
    // pause of seconds. Six in a row on manifest GETs, more than the 5 attempts a failing job
    // has: each puts its job back for when the pause ends, without counting as an attempt.
    let (harness, pushed, sandbox, url) = throttled_registry(
        "enrich-mcr-429",
        Throttle {
            nth: 1,
            times: 6,
            retry_after: Some("1".into()),
            kind: Some(Kind::ManifestGet),
        },
    )
    .await;
    let url = url.as_str();
    let out = sandbox
        .command(&[
            "enrich",
            "--registry",
            url,
            "--rps",
            "500",
            "--retry-base-ms",
            "20",
            "--workers",
            "1",
        ])
        .output()
        .unwrap();
    assert_success(&out, "enrich through six 429s");
    let err = stderr(&out);
    assert!(!err.contains("pull budget"), "{err}");
    assert!(
        err.contains(&format!(
            "{url} answered 429 Too Many Requests: all workers pause for 1.0s"
        )),
        "the pacer names the origin that answered: {err}"
    );
    let log = harness.front.requests();
    let limited: Vec<_> = log.iter().filter(|r| r.status == 429).collect();
    assert_eq!(limited.len(), 6, "{log:?}");
    // One worker: nothing was on its way when a 429 came, so nothing is sent during a pause.
    for pause in &limited {
        let early: Vec<_> = log
            .iter()
            .filter(|r| r.at > pause.at && r.at < pause.at + Duration::from_millis(950))
            .map(|r| (r.kind, r.path.clone()))
            .collect();
        assert!(early.is_empty(), "requests during a pause: {early:?}");
    }
    assert_dataset_matches(&dataset(&sandbox), &pushed);
    let text = stdout(&sandbox.command(&["status"]).output().unwrap());
    assert!(text.contains("429 answers 6"), "{text}");
    assert!(text.contains("; 0 failed"), "{text}");
}

/// A registry answering every request 429 stops `enrich` with exit 6 once the refusal would
/// outlast the bound (`--max-refusal-ms`), naming the registry and the resume command; the jobs
/// stay queued, and the run given once the registry answers again completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_refusing_everything_stops_enrich_with_6_and_the_next_run_completes() {
    let (harness, pushed, sandbox, url) = throttled_registry(
        "enrich-mcr-refused",
        Throttle {
            nth: 1,
            times: 1_000_000,
            retry_after: Some("1".into()),
            kind: None,
        },
    )
    .await;
    let url = url.as_str();
    let args = [
        "enrich",
        "--registry",
        url,
        "--rps",
        "500",
        "--retry-base-ms",
        "20",
        "--workers",
        "2",
    ];
    let mut refused_args = args.to_vec();
    refused_args.extend(["--max-refusal-ms", "1500"]);
    let out = sandbox.command(&refused_args).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert_eq!(
        err.matches(&format!(
            "{url} answered every request with 429 Too Many Requests for "
        ))
        .count(),
        1,
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "continue later with `digestmap enrich --db {}`",
            sandbox.db().display()
        )),
        "{err}"
    );
    // One pause of a second is honoured, a second one is not.
    let limited = harness
        .front
        .requests()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    assert!(limited >= 2, "it asked again after the first pause");
    let text = stdout(&sandbox.command(&["status"]).output().unwrap());
    let queued = text
        .split(" digests left")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        queued.is_some_and(|n| n > 0),
        "the jobs stay queued: {text}"
    );

    harness.front.update(|c| c.throttle = None);
    let out = sandbox.command(&args).output().unwrap();
    assert_success(&out, "enrich once the registry answers again");
    assert_dataset_matches(&dataset(&sandbox), &pushed);
}

/// Unix seconds, truncated, as the store keeps a pause.
fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A registry without a pull budget answers every request 429, `Retry-After` 10 s: the pause is
/// stored with the run's commits (`status` shows it), and an `enrich` killed during it and run
/// again sends nothing to that registry before the stored time, then completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pause_is_stored_and_a_killed_enrich_run_again_waits_for_it() {
    let (harness, pushed, sandbox, url) = throttled_registry(
        "enrich-mcr-429-stored",
        Throttle {
            nth: 1,
            times: 1_000_000,
            retry_after: Some("10".into()),
            kind: None,
        },
    )
    .await;
    let url = url.as_str();
    let host = url.trim_start_matches("http://");
    let args = [
        "enrich",
        "--registry",
        url,
        "--rps",
        "500",
        "--retry-base-ms",
        "20",
        "--workers",
        "1",
    ];
    let mut child = sandbox
        .command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let shown = format!("paused: {host} answered 429; no request to it before ");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stdout(&sandbox.command(&["status"]).output().unwrap()).contains(&shown) {
        assert!(Instant::now() < deadline, "no pause was ever shown");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let until = {
        let store = digestmap::store::Store::open(&sandbox.db()).unwrap();
        store.read(|r| r.enrich_pause(host)).unwrap()
    }
    .expect("the pause is stored");
    let check = sandbox.command(&["check"]).output().unwrap();
    assert_success(&check, "check knows the stored pause");

    harness.front.update(|c| c.throttle = None);
    harness.front.clear_requests();
    let started = SystemTime::now();
    let out = sandbox.command(&args).output().unwrap();
    assert_success(&out, "enrich after the pause");
    if unix(started) < until {
        assert!(
            stderr(&out).contains(&format!("{host} asked the last run to pause")),
            "{}",
            stderr(&out)
        );
    }
    let log = harness.front.requests();
    assert!(!log.is_empty());
    let early: Vec<_> = log
        .iter()
        .filter(|r| unix(r.at) < until)
        .map(|r| r.path.clone())
        .collect();
    assert!(
        early.is_empty(),
        "requests before the stored pause ended: {early:?}"
    );
    assert_dataset_matches(&dataset(&sandbox), &pushed);
    let text = stdout(&sandbox.command(&["status"]).output().unwrap());
    assert!(
        !text.contains("paused:"),
        "the pause is over and cleared: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_cleanly_and_enrich_continues() {
    let harness = Harness::start(FrontConfig::default()).await;
    let (pushed, _hub, sandbox) = crawled_images(&harness.pusher, "enrich-sigint").await;
    let child = enrich_command(&sandbox, &harness, "3", &["--workers", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while harness.front.pulls() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    // Interrupted (130), or, on a fast machine, finished before the signal.
    match out.status.code() {
        Some(130) => assert!(
            stderr(&out).contains("continue with `digestmap enrich"),
            "{}",
            stderr(&out)
        ),
        Some(0) => {}
        other => panic!("enrich after Ctrl-C: {other:?}\n{}", stderr(&out)),
    }
    assert_success(&enrich(&sandbox, &harness, &[]), "enrich after Ctrl-C");
    assert!(harness.front.pulls() <= pushed.manifests() + 2);
    assert_dataset_matches(&dataset(&sandbox), &pushed);
}

/// The progress lines drawn on a terminal, each split into words: `manifests a/b configs c/d
/// pulls P (L left) R jobs/s ETA x` (indicatif redraws the line after `ESC [2K`).
fn progress_lines(shown: &str) -> Vec<Vec<String>> {
    shown
        .split("\u{1b}[2K")
        .filter_map(|draw| draw.split_once("manifests "))
        .map(|(_, rest)| {
            std::iter::once("manifests")
                .chain(rest.split_whitespace())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// `enrich`'s progress line: none when stderr is a pipe (the summary alone), and on a terminal
/// a line of manifests and configs done of planned, pulls and the budget left, rate and ETA,
/// cleared before the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_shows_the_progress_line_and_a_pipe_does_not() {
    let harness = Harness::start(FrontConfig {
        pull_limit: Some(100),
        ..FrontConfig::default()
    })
    .await;
    let (pushed, _hub, sandbox) = crawled_images(&harness.pusher, "enrich-progress").await;

    let out = enrich_command(&sandbox, &harness, "20", &["--max-pulls", "2"])
        .output()
        .unwrap();
    assert_code(&out, 6, "enrich --max-pulls 2 into a pipe");
    assert!(stderr(&out).contains("enrich: "), "{}", stderr(&out));
    for word in ["jobs/s", "ETA", "manifests 0/"] {
        assert!(!stderr(&out).contains(word), "{word}: {}", stderr(&out));
    }

    // At 10 requests a second the run lasts a second or more (the pacer spaces every start):
    // the display, redrawn every 200 ms, is drawn several times.
    let (out, shown) = run_on_terminal(enrich_command(&sandbox, &harness, "10", &[]));
    assert_success(&out, "enrich on a terminal");
    assert_eq!(harness.front.pulls(), pushed.manifests());

    let lines = progress_lines(&shown);
    let number = |word: &str| word.trim_matches(['(', ')']).parse::<u64>().ok();
    let fraction = |word: &str| {
        let (done, planned) = word.split_once('/')?;
        Some((done.parse::<u64>().ok()?, planned.parse::<u64>().ok()?))
    };
    let mut budgets = Vec::new();
    for words in &lines {
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        assert!(
            matches!(
                w.as_slice(),
                ["manifests", m, "configs", c, "pulls", p, ..]
                    if fraction(m).is_some() && fraction(c).is_some() && number(p).is_some()
            ),
            "{w:?}"
        );
        assert!(w.contains(&"jobs/s"), "{w:?}");
        assert!(w.contains(&"ETA") || w.contains(&"stops"), "{w:?}");
        // The budget the front's `ratelimit-*` headers told (stored by the first run).
        if let [_, _, _, _, _, _, left, "left)", ..] = w.as_slice() {
            budgets.push(number(left).unwrap());
        }
    }
    // Planned: the manifests the first run left, then the platform manifests of the index Hub
    // listed as a manifest, and a config per image.
    let most = |at: usize| {
        lines
            .iter()
            .filter_map(|w| fraction(&w[at]))
            .map(|(_, planned)| planned)
            .max()
    };
    assert!(most(1).is_some_and(|m| m >= 1), "{lines:?}");
    assert!(!budgets.is_empty(), "no budget shown: {lines:?}");
    assert!(budgets.iter().all(|b| *b <= 98), "{budgets:?}");
    // Cleared before the summary, which follows.
    let (_, summary) = shown.split_once("enrich: ").expect("the summary follows");
    assert!(!summary.contains("jobs/s"), "{summary}");
}

//! `digestmap identify` answered from the store, end to end through the binary: official-like
//! images pushed into Debian's real `docker-registry` (behind the Hub-like front), a Hub double
//! whose tags point at them, crawl → enrich, then saved images (a user image built FROM one of
//! them, and the official image itself) identified from the store and from the finalized
//! dataset, which must answer alike; then a rebuild that moves a tag, a second crawl + enrich,
//! and the moved tag shown with where it points now.

mod support;

use serde_json::json;
use support::answers::{identify_both, short, summary};
use support::archives::{self, Saved};
use support::fake_hub::{FakeHub, FakeHubConfig};
use support::hub_pages::{page, platform, tag};
use support::registry::Harness;
use support::registry::front::FrontConfig;
use support::registry::image::{self, BuiltImage, BuiltIndex, Format, ImageSpec, Layer, Pusher};
use support::sandbox::{Sandbox, assert_code, assert_success, stderr};

fn layer(name: &str) -> Layer {
    Layer::new(&[(name, name.as_bytes())])
}

fn amd64(layers: &[&Layer], format: Format) -> BuiltImage {
    image::build(ImageSpec::linux(
        "amd64",
        None,
        layers.iter().map(|l| (*l).clone()).collect(),
        format,
    ))
}

/// python for amd64 and arm64 on the given top layer, over debian's layer.
fn python(deb: &Layer, top: &str) -> BuiltIndex {
    let arm = image::build(ImageSpec::linux(
        "arm64",
        Some("v8"),
        vec![deb.clone(), layer(&format!("{top}-arm64"))],
        Format::Oci,
    ));
    image::index(
        vec![amd64(&[deb, &layer(top)], Format::Oci), arm],
        Format::Oci,
        true,
    )
}

/// How the double lists python's indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    /// As Hub lists an index: its media type and platform images.
    AsIndex,
    /// As a plain manifest: no media type, `images: []` (an index `enrich` finds out).
    AsManifest,
}

/// The double's pages: debian:12 on `debian`; python:3.12 on `moving` and python:3.12.1 on
/// `python` (newest first), listed as `listed` says.
fn pages(
    debian: &BuiltImage,
    python: &BuiltIndex,
    moving: &BuiltIndex,
    moved_at: &str,
    listed: Listed,
) -> Vec<(String, u16, Vec<u8>)> {
    let index_tag = |name: &str, index: &BuiltIndex, at: &str| match listed {
        Listed::AsIndex => tag(
            name,
            &index.digest,
            index.media_type,
            index.images.iter().map(platform).collect(),
            at,
        ),
        Listed::AsManifest => tag(name, &index.digest, "", Vec::new(), at),
    };
    vec![
        (
            "/repositories/debian/tags".to_owned(),
            200,
            page(vec![tag(
                "12",
                &debian.digest,
                debian.media_type,
                vec![platform(debian)],
                "2026-01-01T00:00:00.000000Z",
            )]),
        ),
        (
            "/repositories/python/tags".to_owned(),
            200,
            page(vec![
                index_tag("3.12", moving, moved_at),
                index_tag("3.12.1", python, "2026-01-02T00:00:00.000000Z"),
            ]),
        ),
    ]
}

/// The first release: debian:12, and `python` as python:3.12.1 and python:3.12, pushed with `p`
/// and served by a Hub double whose pages list them as `listed` says.
async fn first_release(
    p: &Pusher,
    debian: &BuiltImage,
    python: &BuiltIndex,
    listed: Listed,
) -> FakeHub {
    p.image("library/debian", "12", debian).await;
    p.index("library/python", "3.12.1", python).await;
    p.index("library/python", "3.12", python).await;
    FakeHub::start(FakeHubConfig {
        repos: 1,
        max_tags: 3,
        big_repo_tags: 3,
        override_paths: pages(
            debian,
            python,
            python,
            "2026-01-02T00:00:00.000000Z",
            listed,
        ),
        ..FakeHubConfig::default()
    })
    .await
}

fn crawl_and_enrich(sandbox: &Sandbox, hub: &FakeHub, harness: &Harness) {
    let out = sandbox
        .fast_crawl(&hub.url(), &["--repo", "debian", "--repo", "python"])
        .output()
        .unwrap();
    assert_success(&out, "crawl");
    let registry = harness.front.url().to_string();
    let out = sandbox
        .command(&[
            "enrich",
            "--registry",
            registry.trim_end_matches('/'),
            "--rps",
            "500",
            "--retry-base-ms",
            "20",
        ])
        .output()
        .unwrap();
    assert_success(&out, "enrich");
    let out = sandbox
        .command(&["finalize", "--out", "d.ndjson"])
        .output()
        .unwrap();
    assert_success(&out, "finalize");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_from_the_store_after_enrich_and_after_a_rebuild_that_moves_a_tag() {
    let harness = Harness::start(FrontConfig::default()).await;
    let deb = layer("etc/debian_version");
    let debian = amd64(&[&deb], Format::Docker);
    let python1 = python(&deb, "usr/local/bin/python3.12.1");
    let py_amd64 = python1.images[0].clone();
    let app = amd64(
        &[
            &deb,
            &layer("usr/local/bin/python3.12.1"),
            &layer("app/main.py"),
        ],
        Format::Docker,
    );
    assert_eq!(app.diff_ids()[..2], py_amd64.diff_ids()[..]);
    let p = &harness.pusher;
    let hub = first_release(p, &debian, &python1, Listed::AsIndex).await;
    let sandbox = Sandbox::new("identify-store");

    // Crawled, not enriched: the store cannot answer yet, and says how to fix it.
    let out = sandbox
        .fast_crawl(&hub.url(), &["--repo", "debian", "--repo", "python"])
        .output()
        .unwrap();
    assert_success(&out, "crawl");
    std::fs::write(
        sandbox.path("app.tar"),
        archives::legacy(&[Saved {
            image: &app,
            repo_tags: vec!["myapp:1".into()],
        }]),
    )
    .unwrap();
    let out = sandbox.command(&["identify", "app.tar"]).output().unwrap();
    assert_code(&out, 2, "identify before enrich");
    assert!(
        stderr(&out).contains("no image IDs or layer chains yet: run `digestmap enrich`"),
        "{}",
        stderr(&out)
    );

    crawl_and_enrich(&sandbox, &hub, &harness);
    std::fs::write(
        sandbox.path("python.tar"),
        archives::docker25(&[Saved {
            image: &py_amd64,
            repo_tags: vec!["python:3.12".into()],
        }]),
    )
    .unwrap();
    const PY: &str = "linux/amd64 [python:3.12.1 python:3.12]";
    const DEB: &str = "linux/amd64 [debian:12]";
    let answers = identify_both(&sandbox, &["app.tar", "python.tar"], 0);
    let got: Vec<String> = answers.iter().map(summary).collect();
    assert_eq!(
        got,
        [
            format!("base base 2/3+1 {PY} < 1 {DEB}"),
            format!("exact = {PY} < 1 {DEB}"),
        ]
    );
    assert_eq!(
        answers[0]["base"]["images"][0]["image_id"],
        json!(py_amd64.config_digest)
    );
    assert_eq!(
        answers[0]["base"]["images"][0]["manifests"],
        json!([py_amd64.digest])
    );
    assert_eq!(answers[1]["notes"], json!([]));
    // A bare image ID, its unique prefix and a manifest digest answer from the store too.
    let prefix = &py_amd64.config_digest[7..21];
    let answers = identify_both(&sandbox, &[prefix, &py_amd64.digest], 0);
    let got: Vec<String> = answers.iter().map(summary).collect();
    assert_eq!(got, [format!("exact = {PY}"), format!("exact = {PY}")]);

    // A rebuild moves python:3.12 to new layers; the second crawl + enrich learns it.
    let python2 = python(&deb, "usr/local/bin/python3.12.2");
    p.index("library/python", "3.12", &python2).await;
    hub.update(|c| {
        c.override_paths = pages(
            &debian,
            &python1,
            &python2,
            "2026-02-01T00:00:00.000000Z",
            Listed::AsIndex,
        );
    });
    crawl_and_enrich(&sandbox, &hub, &harness);
    let moved = format!(
        "linux/amd64 [python:3.12.1 python:3.12>{}]",
        short(&python2.images[0].config_digest)
    );
    let answers = identify_both(&sandbox, &["app.tar", "python.tar"], 0);
    let got: Vec<String> = answers.iter().map(summary).collect();
    assert_eq!(
        got,
        [
            format!("base base 2/3+1 {moved} < 1 {DEB}"),
            format!("exact = {moved} < 1 {DEB}"),
        ]
    );
    // The rebuilt python saved as is: exact, its tag current.
    std::fs::write(
        sandbox.path("python2.tar"),
        archives::legacy(&[Saved {
            image: &python2.images[0],
            repo_tags: vec!["python:3.12".into()],
        }]),
    )
    .unwrap();
    let answers = identify_both(&sandbox, &["python2.tar"], 0);
    assert_eq!(
        summary(&answers[0]),
        format!("exact = linux/amd64 [python:3.12] < 1 {DEB}")
    );
    // An image on nothing official: exit 7 from both.
    let custom = amd64(&[&layer("opt/custom-os")], Format::Docker);
    std::fs::write(
        sandbox.path("custom.tar"),
        archives::legacy(&[Saved {
            image: &custom,
            repo_tags: vec![],
        }]),
    )
    .unwrap();
    let answers = identify_both(&sandbox, &["custom.tar"], 7);
    assert_eq!(summary(&answers[0]), "none");
}

/// An index digest (a multi-platform tag's: what `RepoDigests` hold, and `docker image
/// inspect`'s `Id` with Docker's containerd image store) answers with its platform images, from
/// the store and from the dataset alike: every one for a bare digest or its prefix, the platform
/// inspect names for inspect JSON; `lookup` of it still answers as an index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_digest_answers_with_its_platform_images() {
    index_digest_answers(Listed::AsIndex).await;
}

/// The same for an index Hub lists as a plain manifest (`images: []`): once `enrich` has found
/// it to be an index, the store and the dataset answer it like any index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_hub_listed_as_a_manifest_answers_like_any_index_after_enrich() {
    index_digest_answers(Listed::AsManifest).await;
}

async fn index_digest_answers(listed: Listed) {
    let harness = Harness::start(FrontConfig::default()).await;
    let deb = layer("etc/debian_version");
    let debian = amd64(&[&deb], Format::Docker);
    let python1 = python(&deb, "usr/local/bin/python3.12.1");
    let p = &harness.pusher;
    let hub = first_release(p, &debian, &python1, listed).await;
    let sandbox = Sandbox::new(&format!("identify-index-{listed:?}"));
    crawl_and_enrich(&sandbox, &hub, &harness);

    const PY: &str = "linux/amd64 [python:3.12.1 python:3.12]";
    const PY_ARM: &str = "linux/arm64/v8 [python:3.12.1 python:3.12]";
    const DEB: &str = "linux/amd64 [debian:12]";
    let index = python1.digest.as_str();
    // A bare index digest, and its 12-character prefix (`docker images` shows that as the image
    // ID with the containerd image store): one answer listing both platform images.
    let answers = identify_both(&sandbox, &[index, &index[7..19]], 0);
    for answer in &answers {
        assert_eq!(summary(answer), format!("exact = {PY} = {PY_ARM}"));
        assert_eq!(answer["indexes"], json!([index]));
        let ids: Vec<&str> = answer["exact"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["image_id"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = python1
            .images
            .iter()
            .map(|i| i.config_digest.as_str())
            .collect();
        assert_eq!(ids, want);
        assert!(
            answer["notes"][0]
                .as_str()
                .unwrap()
                .contains("index (a multi-platform image)"),
            "{}",
            answer["notes"]
        );
    }

    // inspect JSON from the containerd image store: its Id and RepoDigests are the index; Os and
    // Architecture pick the platform image, and its layers the ancestry.
    let py_amd64 = &python1.images[0];
    let inspect = |arch: &str| {
        json!([{
            "Id": index,
            "RepoTags": ["python:3.12"],
            "RepoDigests": [format!("python@{index}")],
            "Os": "linux",
            "Architecture": arch,
            "RootFS": {"Type": "layers", "Layers": py_amd64.diff_ids()},
        }])
        .to_string()
    };
    std::fs::write(sandbox.path("inspect.json"), inspect("amd64")).unwrap();
    std::fs::write(sandbox.path("s390x.json"), inspect("s390x")).unwrap();
    let answers = identify_both(&sandbox, &["inspect.json", "s390x.json"], 0);
    let got: Vec<String> = answers.iter().map(summary).collect();
    assert_eq!(
        got,
        [
            format!("exact = {PY} < 1 {DEB}"),
            // A platform the index lacks: no exact answer; the layers still name python.
            format!("base base 2/2+0 {PY} < 1 {DEB}"),
        ]
    );
    assert_eq!(
        answers[0]["exact"][0]["image_id"],
        json!(py_amd64.config_digest)
    );
    assert!(
        answers[1]["notes"][0].as_str().unwrap().contains(
            "with no linux/s390x image: its platform images are linux/amd64, linux/arm64/v8"
        ),
        "{}",
        answers[1]["notes"]
    );

    // lookup of the index digest answers as before, from the store and the dataset.
    for dataset in [None, Some("d.ndjson")] {
        let mut args = vec!["lookup", "--json", index];
        if let Some(d) = dataset {
            args.extend(["--dataset", d]);
        }
        let out = sandbox.command(&args).output().unwrap();
        assert_success(&out, "lookup of the index");
        let line: serde_json::Value =
            serde_json::from_str(support::sandbox::stdout(&out).trim()).unwrap();
        assert_eq!(line["kind"], "index");
        assert_eq!(line["tags"], json!(["python:3.12", "python:3.12.1"]));
    }
}

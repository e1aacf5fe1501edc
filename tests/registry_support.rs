//! Self-tests of the registry test support that other registries need (issue 11): the
//! Windows-shaped images (`tests/support/registry/image.rs`) push into Debian's real
//! `docker-registry` and read back as built; the Microsoft-like front
//! (`tests/support/registry/mcr.rs`) pages `_catalog` and `tags/list` as configured, hostile
//! knobs included; and the crate's registry client pages it correctly and refuses each hostile
//! listing (an off-host `Link`, a `Link` that loops back, a page repeating names).

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use digestmap::model::Digest;
use digestmap::net::{NetConfig, Pacer};
use digestmap::registry::{Manifest, RegistryClient, RegistryConfig, RegistryError};
use serde_json::{Value, json};
use support::registry::McrHarness;
use support::registry::image::{
    self, BuiltImage, Foreign, Format, ImageSpec, Layer, WINDOWS_BASE, WINDOWS_OFFICIAL,
    WINDOWS_USER, WindowsChain,
};
use support::registry::mcr::{
    self, Kind, LinkStyle, LoopBack, McrConfig, McrOrigin, Page, Throttle,
};
use url::Url;

const OS_VERSION: &str = "10.0.20348.2227";
const FOREIGN_DOCKER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

fn client_with(url: &Url, page_size: Option<u32>, pacer: Arc<Pacer>) -> RegistryClient {
    let mut config = RegistryConfig::new(url.clone());
    config.page_size = page_size;
    let net = NetConfig {
        max_retries: 1,
        backoff: (Duration::from_millis(10), Duration::from_millis(50)),
        ..NetConfig::default()
    };
    RegistryClient::new(config, pacer, &net).unwrap()
}

fn client(url: &Url, page_size: Option<u32>) -> RegistryClient {
    client_with(url, page_size, Arc::new(Pacer::new(1000.0).unwrap()))
}

fn digest(text: &str) -> Digest {
    Digest::parse(text).unwrap()
}

fn digests(texts: &[String]) -> Vec<Digest> {
    texts.iter().map(|t| digest(t)).collect()
}

fn names(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| (*t).to_owned()).collect()
}

/// An image whose manifest's one layer descriptor is replaced by `layer` (its blob is never
/// pushed; the config is).
fn with_layer_descriptor(layer: Value, format: Format) -> (BuiltImage, Vec<u8>) {
    let built = image::build(ImageSpec::windows(
        OS_VERSION,
        vec![Layer::new(&[("Files/base", b"foreign")])],
        format,
    ));
    let mut manifest: Value = serde_json::from_slice(&built.manifest).unwrap();
    let digest = built.spec.layers[0].digest.clone();
    let size = built.spec.layers[0].blob.len();
    let mut layer = layer;
    layer["digest"] = json!(digest);
    layer["size"] = json!(size);
    manifest["layers"] = json!([layer]);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    (built, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_layer_urls_the_registry_accepts() {
    // `docker-registry` 2.8 as `process.rs` configures it (URLs allowed: `^https?://`). A
    // foreign layer's blob is never pushed; what decides is the layer's media type and URLs.
    // A foreign layer without URLs, or with one that is not http(s) or has a fragment, is
    // refused with `500 UNKNOWN` (2.8 does not map these errors to a 400); a layer whose blob
    // is missing and that has no URL is `400 MANIFEST_BLOB_UNKNOWN`. Any layer with URLs,
    // foreign or not, is accepted without its blob.
    let harness = McrHarness::start(McrConfig::default()).await;
    let oci_foreign = Format::Oci.foreign_layer();
    let mcr_url = "https://mcr.microsoft.com/v2/windows/servercore/blobs/sha256:0";
    let table: Vec<(&str, Format, Value, u16)> = vec![
        (
            "docker foreign, https",
            Format::Docker,
            json!({"mediaType": FOREIGN_DOCKER, "urls": [mcr_url]}),
            201,
        ),
        (
            "docker foreign, plain http",
            Format::Docker,
            json!({"mediaType": FOREIGN_DOCKER, "urls": ["http://go.microsoft.com/fwlink/?linkid=837858"]}),
            201,
        ),
        (
            "docker foreign, two URLs",
            Format::Docker,
            json!({"mediaType": FOREIGN_DOCKER, "urls": [mcr_url, "https://mirror.example/x"]}),
            201,
        ),
        (
            "docker foreign, ftp",
            Format::Docker,
            json!({"mediaType": FOREIGN_DOCKER, "urls": ["ftp://mcr.microsoft.com/x"]}),
            500,
        ),
        (
            "docker foreign, a fragment",
            Format::Docker,
            json!({"mediaType": FOREIGN_DOCKER, "urls": [format!("{mcr_url}#part")]}),
            500,
        ),
        (
            "docker foreign, no scheme",
            Format::Docker,
            json!({"mediaType": FOREIGN_DOCKER, "urls": ["mcr.microsoft.com/x"]}),
            500,
        ),
        (
            "docker foreign, no URLs",
            Format::Docker,
            json!({"mediaType": FOREIGN_DOCKER}),
            500,
        ),
        (
            "docker plain layer with a URL, blob absent",
            Format::Docker,
            json!({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "urls": [mcr_url]}),
            201,
        ),
        (
            "docker plain layer, blob absent",
            Format::Docker,
            json!({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"}),
            400,
        ),
        (
            "oci non-distributable, https",
            Format::Oci,
            json!({"mediaType": oci_foreign, "urls": [mcr_url]}),
            201,
        ),
        (
            "oci non-distributable, ftp",
            Format::Oci,
            json!({"mediaType": oci_foreign, "urls": ["ftp://mcr.microsoft.com/x"]}),
            500,
        ),
        (
            "oci non-distributable, no URLs, blob absent",
            Format::Oci,
            json!({"mediaType": oci_foreign}),
            400,
        ),
    ];
    let mut wrong = Vec::new();
    for (i, (case, format, layer, want)) in table.into_iter().enumerate() {
        let (built, bytes) = with_layer_descriptor(layer, format);
        let repository = format!("foreign/case{i}");
        harness.pusher.blob(&repository, &built.config).await;
        let (status, body) = harness
            .pusher
            .try_manifest(&repository, "1", built.media_type, &bytes)
            .await;
        if status != want {
            wrong.push(format!("{case}: {status} (want {want}) {body}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_chain_reads_back_through_the_open_front() {
    let harness = McrHarness::start(McrConfig::default()).await;
    let chain = WindowsChain::new(OS_VERSION, Foreign::Yes);
    chain.push_base(&harness.pusher).await;
    chain.push_official(&harness.pusher).await;
    chain.push_user(&harness.pusher).await;
    let client = client(harness.front.url(), None);

    assert_eq!(
        client.all_repositories().await.unwrap(),
        [WINDOWS_OFFICIAL.0, WINDOWS_USER.0, WINDOWS_BASE.0]
    );
    assert_eq!(
        client.all_tags(WINDOWS_BASE.0).await.unwrap(),
        [WINDOWS_BASE.1]
    );

    // The tag's HEAD names the base's manifest list; the list names one windows/amd64 image
    // with its os.version.
    let head = client
        .head_manifest(WINDOWS_BASE.0, WINDOWS_BASE.1)
        .await
        .unwrap();
    assert_eq!(head.digest, digest(&chain.base.digest));
    assert_eq!(head.media_type.as_deref(), Some(chain.base.media_type));
    let Manifest::Index(list) = client
        .manifest(WINDOWS_BASE.0, &head.digest)
        .await
        .unwrap()
        .manifest
    else {
        panic!("the base's tag is not a manifest list");
    };
    let entries: Vec<_> = list.images().collect();
    assert_eq!(entries.len(), 1);
    let platform = entries[0].platform.as_ref().unwrap();
    assert_eq!(platform.os_version.as_deref(), Some(OS_VERSION));
    assert_eq!(platform.platform.to_string(), "windows/amd64");

    // The image: two foreign layers with their URLs on Microsoft's registry, config as built.
    let base = &chain.base.images[0];
    let Manifest::Image(manifest) = client
        .manifest(WINDOWS_BASE.0, &entries[0].digest)
        .await
        .unwrap()
        .manifest
    else {
        panic!("the list's entry is not an image");
    };
    assert_eq!(manifest.layers.len(), 2);
    for (descriptor, layer) in manifest.layers.iter().zip(&base.spec.layers) {
        assert_eq!(descriptor.media_type, FOREIGN_DOCKER);
        assert_eq!(
            descriptor.urls,
            [format!(
                "https://mcr.microsoft.com/v2/windows/servercore/blobs/{}",
                layer.digest
            )]
        );
    }
    let config = client
        .config(WINDOWS_BASE.0, &manifest.config.digest)
        .await
        .unwrap()
        .config;
    assert_eq!(manifest.config.digest, digest(&base.config_digest));
    assert_eq!(config.platform.os_version.as_deref(), Some(OS_VERSION));
    assert_eq!(config.platform.platform.to_string(), "windows/amd64");
    assert_eq!(config.diff_ids, digests(&base.diff_ids()));

    // Each image is its parent's layers plus its own, foreign layers kept foreign.
    let official = &chain.official.images[0];
    let official_config = client
        .config(WINDOWS_OFFICIAL.0, &digest(&official.config_digest))
        .await
        .unwrap()
        .config;
    assert_eq!(official_config.diff_ids, digests(&official.diff_ids()));
    assert_eq!(official.diff_ids()[..2], base.diff_ids()[..]);
    assert_eq!(official.diff_ids().len(), 4);
    let Manifest::Image(official_manifest) = client
        .manifest(WINDOWS_OFFICIAL.0, &digest(&official.digest))
        .await
        .unwrap()
        .manifest
    else {
        panic!("python's entry is not an image");
    };
    let foreign: Vec<bool> = official_manifest
        .layers
        .iter()
        .map(|l| l.media_type == FOREIGN_DOCKER && !l.urls.is_empty())
        .collect();
    assert_eq!(foreign, [true, true, false, false]);
    assert_eq!(chain.user.diff_ids()[..4], official.diff_ids()[..]);
    assert_eq!(chain.user.diff_ids().len(), 5);
    let user_head = client
        .head_manifest(WINDOWS_USER.0, WINDOWS_USER.1)
        .await
        .unwrap();
    assert_eq!(user_head.digest, digest(&chain.user.digest));

    // Foreign blobs were never pushed; the others were, and come through the data origin.
    let foreign_blob = &base.spec.layers[0].digest;
    let err = client
        .blob(WINDOWS_BASE.0, &digest(foreign_blob))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    let own = &official.spec.layers[2];
    assert_eq!(
        client
            .blob(WINDOWS_OFFICIAL.0, &digest(&own.digest))
            .await
            .unwrap(),
        own.blob
    );

    // Plain access: no token asked for, nothing but 2xx, 3xx and the one 404; each kind
    // counted where it arrived.
    assert_eq!(client.stats().token_requests.load(Ordering::Relaxed), 0);
    let log = harness.front.requests();
    assert!(log.iter().all(|r| r.status < 400 || r.status == 404));
    assert_eq!(harness.front.count(Kind::Catalog), 1);
    assert_eq!(harness.front.count(Kind::TagsList), 1);
    assert_eq!(harness.front.count(Kind::ManifestHead), 2);
    assert_eq!(harness.front.count(Kind::ManifestGet), 3);
    let blob_gets = |origin| {
        log.iter()
            .filter(|r| r.kind == Kind::BlobGet && r.origin == origin)
            .map(|r| r.status)
            .collect::<Vec<_>>()
    };
    // Configs and the two layers: each a 307 from the registry, then the data origin's answer.
    assert_eq!(blob_gets(McrOrigin::Registry), [307, 307, 307, 307]);
    assert_eq!(blob_gets(McrOrigin::Data), [200, 200, 404, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_chain_without_foreign_layers_pushes_every_blob() {
    // Microsoft's Windows images since June 2023: the same chain with ordinary base layers.
    let harness = McrHarness::start(McrConfig {
        blob_redirect: false,
        ..McrConfig::default()
    })
    .await;
    let chain = WindowsChain::new("10.0.20348.2340", Foreign::No);
    let foreign = WindowsChain::new("10.0.20348.2340", Foreign::Yes);
    // The layers' bytes are the same; only their descriptors differ, so the images differ.
    assert_eq!(chain.user.diff_ids(), foreign.user.diff_ids());
    assert_ne!(chain.base.digest, foreign.base.digest);
    assert_ne!(
        chain.base.digest,
        WindowsChain::new(OS_VERSION, Foreign::No).base.digest
    );
    chain.push_base(&harness.pusher).await;
    let client = client(harness.front.url(), None);
    let base = &chain.base.images[0];
    let Manifest::Image(manifest) = client
        .manifest(WINDOWS_BASE.0, &digest(&base.digest))
        .await
        .unwrap()
        .manifest
    else {
        panic!("not an image");
    };
    assert!(manifest.layers.iter().all(|l| l.urls.is_empty()
        && l.media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"));
    for layer in &base.spec.layers {
        assert_eq!(
            client
                .blob(WINDOWS_BASE.0, &digest(&layer.digest))
                .await
                .unwrap(),
            layer.blob
        );
    }
    // Blobs straight from the registry: no data origin involved.
    assert!(
        harness
            .front
            .requests()
            .iter()
            .all(|r| r.origin == McrOrigin::Registry && r.status == 200)
    );
}

#[test]
fn the_front_pages_as_configured() {
    let all = names(&["e", "a", "d", "c", "b", "g", "f", "c"]);
    let plain = McrConfig::default();
    let paged = McrConfig {
        page_size: Some(2),
        ..McrConfig::default()
    };
    let looping = McrConfig {
        loop_back: Some(LoopBack { from: 3, to: 2 }),
        ..paged.clone()
    };
    let to_first = McrConfig {
        loop_back: Some(LoopBack { from: 2, to: 1 }),
        ..paged.clone()
    };
    let repeating = McrConfig {
        repeat_page: Some(2),
        ..paged.clone()
    };
    let page = |names: &[&str], next: Option<(Option<&str>, usize)>| Page {
        names: self::names(names),
        next: next.map(|(last, n)| (last.map(str::to_owned), n)),
    };
    type Row<'a> = (&'a str, Option<&'a str>, Option<usize>, &'a McrConfig, Page);
    let table: Vec<Row> = vec![
        // Everything at once, sorted and distinct, unless `n` asks for pages.
        (
            "whole",
            None,
            None,
            &plain,
            page(&["a", "b", "c", "d", "e", "f", "g"], None),
        ),
        (
            "after last",
            Some("d"),
            None,
            &plain,
            page(&["e", "f", "g"], None),
        ),
        (
            "n asked",
            None,
            Some(3),
            &plain,
            page(&["a", "b", "c"], Some((Some("c"), 3))),
        ),
        ("n zero", None, Some(0), &plain, page(&[], None)),
        // The front's own page size when the request gives no `n`; the request's `n` wins.
        (
            "page 1",
            None,
            None,
            &paged,
            page(&["a", "b"], Some((Some("b"), 2))),
        ),
        (
            "page 2",
            Some("b"),
            None,
            &paged,
            page(&["c", "d"], Some((Some("d"), 2))),
        ),
        ("last page", Some("f"), None, &paged, page(&["g"], None)),
        (
            "full last page",
            Some("e"),
            Some(2),
            &paged,
            page(&["f", "g"], None),
        ),
        (
            "last between names",
            Some("bb"),
            None,
            &paged,
            page(&["c", "d"], Some((Some("d"), 2))),
        ),
        ("last after all", Some("z"), None, &paged, page(&[], None)),
        // Page 3 links back to page 2 (whose `last` is b); page 2 is unchanged.
        (
            "loop",
            Some("d"),
            None,
            &looping,
            page(&["e", "f"], Some((Some("b"), 2))),
        ),
        (
            "loop target",
            Some("b"),
            None,
            &looping,
            page(&["c", "d"], Some((Some("d"), 2))),
        ),
        (
            "loop to page 1",
            Some("b"),
            None,
            &to_first,
            page(&["c", "d"], Some((None, 2))),
        ),
        // Page 2 repeats page 1's names with its own Link: c and d are never served.
        (
            "repeat",
            Some("b"),
            None,
            &repeating,
            page(&["a", "b"], Some((Some("d"), 2))),
        ),
        (
            "repeat leaves page 1",
            None,
            None,
            &repeating,
            page(&["a", "b"], Some((Some("b"), 2))),
        ),
    ];
    for (case, last, n, config, want) in table {
        assert_eq!(mcr::page(&all, last, n, config), want, "{case}");
    }
}

/// Seven tags in one repository and five repositories.
async fn push_listing(harness: &McrHarness) -> (Vec<String>, Vec<String>) {
    let image = image::build(ImageSpec::linux(
        "amd64",
        None,
        vec![Layer::new(&[("x", b"listing")])],
        Format::Docker,
    ));
    let tags: Vec<String> = (0..7).map(|i| format!("1.{i}")).collect();
    for tag in &tags {
        harness.pusher.image("windows/many", tag, &image).await;
    }
    let mut repositories = vec!["windows/many".to_owned()];
    for name in [
        "dotnet/runtime",
        "dotnet/sdk",
        "powershell",
        "windows/nanoserver",
    ] {
        harness.pusher.image(name, "latest", &image).await;
        repositories.push(name.to_owned());
    }
    repositories.sort();
    (tags, repositories)
}

/// `(kind, last, n)` of each listing request, in order.
fn listing_requests(harness: &McrHarness) -> Vec<(Kind, Option<String>, Option<String>)> {
    harness
        .front
        .requests()
        .iter()
        .filter(|r| matches!(r.kind, Kind::Catalog | Kind::TagsList))
        .map(|r| {
            (
                r.kind,
                r.param("last").map(str::to_owned),
                r.param("n").map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_pages_the_open_front_and_refuses_hostile_listings() {
    let harness = McrHarness::start(McrConfig::default()).await;
    let (tags, repositories) = push_listing(&harness).await;
    let some = |s: &str| Some(s.to_owned());

    // As Microsoft's registry answers today: everything in one page, whatever the client asks.
    let unpaged = client(harness.front.url(), None);
    assert_eq!(unpaged.all_repositories().await.unwrap(), repositories);
    assert_eq!(unpaged.all_tags("windows/many").await.unwrap(), tags);
    assert_eq!(
        listing_requests(&harness),
        [(Kind::Catalog, None, None), (Kind::TagsList, None, None)]
    );

    // Paged by the front (the client asks for 2), with relative and absolute Links alike.
    let paged = client(harness.front.url(), Some(2));
    for style in [LinkStyle::Relative, LinkStyle::Absolute] {
        harness.front.update(|c| c.links = style);
        harness.front.clear_requests();
        assert_eq!(
            paged.all_tags("windows/many").await.unwrap(),
            tags,
            "{style:?}"
        );
        assert_eq!(
            paged.all_repositories().await.unwrap(),
            repositories,
            "{style:?}"
        );
        let n = some("2");
        assert_eq!(
            listing_requests(&harness),
            [
                (Kind::TagsList, None, n.clone()),
                (Kind::TagsList, some("1.1"), n.clone()),
                (Kind::TagsList, some("1.3"), n.clone()),
                (Kind::TagsList, some("1.5"), n.clone()),
                (Kind::Catalog, None, n.clone()),
                (Kind::Catalog, some("dotnet/sdk"), n.clone()),
                (Kind::Catalog, some("windows/many"), n.clone()),
            ],
            "{style:?}"
        );
    }

    // The front's own page size pages a client that asks for none.
    harness.front.update(|c| {
        c.links = LinkStyle::Relative;
        c.page_size = Some(3);
    });
    harness.front.clear_requests();
    assert_eq!(unpaged.all_tags("windows/many").await.unwrap(), tags);
    assert_eq!(harness.front.count(Kind::TagsList), 3);

    // A Link to another host: refused, and nothing is sent there.
    harness.front.update(|c| c.links = LinkStyle::OffHost);
    harness.front.clear_requests();
    let err = paged.all_repositories().await.unwrap_err();
    assert!(
        err.to_string().contains("leaves the registry's origin"),
        "{err}"
    );
    let log = harness.front.requests();
    assert!(log.iter().all(|r| r.origin == McrOrigin::Registry));
    assert_eq!(log.len(), 1);

    // A Link back to an earlier page: the listing stops, within a bounded number of requests,
    // whether the client asks for pages (`n`) or the front pages by itself.
    for (from, to) in [(3, 2), (3, 1), (2, 1)] {
        harness.front.update(|c| {
            c.links = LinkStyle::Relative;
            c.page_size = None;
            c.loop_back = Some(LoopBack { from, to });
        });
        harness.front.clear_requests();
        let err = paged.all_tags("windows/many").await.unwrap_err();
        assert!(
            matches!(err, RegistryError::Link { .. }) && err.to_string().contains("loop"),
            "{from} → {to}: {err}"
        );
        assert_eq!(harness.front.count(Kind::TagsList), from, "{from} → {to}");
        harness.front.update(|c| c.page_size = Some(2));
        harness.front.clear_requests();
        let err = unpaged.all_tags("windows/many").await.unwrap_err();
        // Its first page has no `n`, so a Link to page 1 (`?n=2`) is another URL: page 1 is read
        // once more, and refused for repeating names.
        let why = if to == 1 {
            "an earlier page listed"
        } else {
            "loop"
        };
        assert!(err.to_string().contains(why), "{from} → {to}: {err}");
        let extra = usize::from(to == 1);
        assert_eq!(
            harness.front.count(Kind::TagsList),
            from + extra,
            "{from} → {to}"
        );
    }

    // A page repeating the names of the page before it, while its Link goes on: the names of
    // the page it stands for were never served, so the listing is refused, not returned short.
    harness.front.update(|c| {
        c.loop_back = None;
        c.page_size = None;
        c.repeat_page = Some(2);
    });
    for listing in ["tags", "catalog"] {
        let result = match listing {
            "tags" => paged.all_tags("windows/many").await,
            _ => paged.all_repositories().await,
        };
        let err = result.unwrap_err();
        assert!(
            err.to_string().contains("an earlier page listed"),
            "{listing}: {err}"
        );
    }
    // The same page read alone is served as the front was told.
    let first = paged
        .tags_page("windows/many", &paged.tags_first_page("windows/many"))
        .await
        .unwrap();
    let second = paged
        .tags_page("windows/many", first.next.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(first.names, second.names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_pauses_the_client_and_spares_the_backend() {
    let harness = McrHarness::start(McrConfig::default()).await;
    let (tags, repositories) = push_listing(&harness).await;
    let pacer = Arc::new(Pacer::new(1000.0).unwrap());
    let client = client_with(harness.front.url(), None, pacer.clone());
    let next = harness.front.served() + 1;
    harness.front.update(|c| {
        c.throttle = Some(Throttle {
            nth: next,
            times: 1,
            retry_after: Some("1".into()),
            kind: None,
        })
    });
    let err = client.all_repositories().await.unwrap_err();
    assert!(err.to_string().contains("429"), "{err}");
    assert_eq!(pacer.rate_limited(), 1);
    assert!(pacer.paused_until_unix().is_some());
    // The next request waits out the pause, and is answered.
    assert_eq!(client.all_repositories().await.unwrap(), repositories);
    assert_eq!(client.all_tags("windows/many").await.unwrap(), tags);
    let statuses: Vec<(Kind, u16)> = harness
        .front
        .requests()
        .iter()
        .map(|r| (r.kind, r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            (Kind::Catalog, 429),
            (Kind::Catalog, 200),
            (Kind::TagsList, 200)
        ]
    );
    assert_eq!(harness.front.served(), next + 2);
}

//! The registry client against Debian's real `docker-registry`, behind a Docker-Hub-like front
//! (token service, pull budget, CDN): what is pushed is what is read, tokens stay on the
//! registry, the budget is never overrun, tampering is caught, listings page safely.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use digestmap::model::Digest;
use digestmap::net::auth::Secret;
use digestmap::net::{NetConfig, Pacer};
use digestmap::registry::{
    HostCredentials, Manifest, RegistryClient, RegistryConfig, RegistryError, chain_ids,
};
use support::registry::Harness;
use support::registry::front::{FrontConfig, LinkRewrite, Origin};
use support::registry::image::{
    self, Attestation, BuiltImage, BuiltIndex, Format, ImageSpec, Layer,
};
use url::Url;

fn client_for(url: &Url, change: impl FnOnce(&mut RegistryConfig)) -> RegistryClient {
    let mut config = RegistryConfig::new(url.clone());
    change(&mut config);
    let net = NetConfig {
        max_retries: 1,
        backoff: (Duration::from_millis(10), Duration::from_millis(50)),
        ..NetConfig::default()
    };
    RegistryClient::new(config, Arc::new(Pacer::new(1000.0).unwrap()), &net).unwrap()
}

fn client(harness: &Harness) -> RegistryClient {
    client_for(harness.front.url(), |_| {})
}

fn digest(text: &str) -> Digest {
    Digest::parse(text).unwrap()
}

fn digests(texts: &[String]) -> Vec<Digest> {
    texts.iter().map(|t| digest(t)).collect()
}

/// What the tests push: a Docker single-platform image, an OCI multi-platform index with
/// attestations, a Docker list with a Windows entry (foreign base layer), and a base image with
/// an image built FROM it.
struct Pushed {
    single: BuiltImage,
    multi: BuiltIndex,
    windows: BuiltIndex,
    base: BuiltImage,
    derived: BuiltImage,
}

async fn push_all(harness: &Harness) -> Pushed {
    let p = &harness.pusher;
    let single = image::build(ImageSpec::linux(
        "amd64",
        None,
        vec![Layer::new(&[("etc/os-release", b"ID=single\n")])],
        Format::Docker,
    ));
    p.image("library/single", "1.0", &single).await;

    let shared = Layer::new(&[("bin/sh", b"#!shared\n")]);
    let amd64 = image::build(ImageSpec::linux(
        "amd64",
        None,
        vec![shared.clone(), Layer::new(&[("app", b"amd64")])],
        Format::Oci,
    ));
    let arm64 = image::build(ImageSpec::linux(
        "arm64",
        Some("v8"),
        vec![shared, Layer::new(&[("app", b"arm64")])],
        Format::Oci,
    ));
    let multi = image::index(vec![amd64, arm64], Format::Oci, true);
    p.index("library/multi", "2", &multi).await;

    let windows_image = image::build(ImageSpec {
        os: "windows".into(),
        architecture: "amd64".into(),
        variant: None,
        os_version: Some("10.0.20348.2340".into()),
        layers: vec![
            Layer::new(&[("Files/base", b"servercore")])
                .foreign("https://mcr.microsoft.com/v2/windows/servercore/blobs/x"),
            Layer::new(&[("Files/app", b"app")]),
        ],
        format: Format::Docker,
    });
    let windows = image::index(vec![windows_image], Format::Docker, false);
    p.index("library/win", "ltsc2022", &windows).await;

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
    p.image("library/base", "1", &base).await;
    let mut layers = bottom;
    layers.push(Layer::new(&[("app/derived", b"derived")]));
    let derived = image::build(ImageSpec::linux("amd64", None, layers, Format::Oci));
    p.image("user/derived", "latest", &derived).await;
    Pushed {
        single,
        multi,
        windows,
        base,
        derived,
    }
}

/// Reads `image` back by digest and checks manifest bytes, config, platform and diff_ids.
async fn check_image(client: &RegistryClient, repository: &str, image: &BuiltImage) -> Vec<Digest> {
    let fetched = client
        .manifest(repository, &digest(&image.digest))
        .await
        .unwrap();
    assert_eq!(fetched.bytes, image.manifest, "{repository} manifest bytes");
    let Manifest::Image(manifest) = fetched.manifest else {
        panic!("{repository}: not an image manifest")
    };
    assert_eq!(manifest.media_type, image.media_type);
    assert_eq!(manifest.config.digest, digest(&image.config_digest));
    let layer_digests: Vec<String> = image.spec.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(
        manifest.layers.iter().map(|l| l.digest).collect::<Vec<_>>(),
        digests(&layer_digests)
    );
    let config = client
        .config(repository, &manifest.config.digest)
        .await
        .unwrap();
    assert_eq!(config.bytes, image.config, "{repository} config bytes");
    assert_eq!(config.config.diff_ids, digests(&image.diff_ids()));
    assert_eq!(config.config.platform.platform.os, image.spec.os);
    assert_eq!(
        config.config.platform.platform.architecture,
        image.spec.architecture
    );
    assert_eq!(config.config.platform.platform.variant, image.spec.variant);
    assert_eq!(config.config.platform.os_version, image.spec.os_version);
    config.config.chain_ids()
}

async fn check_index(client: &RegistryClient, repository: &str, index: &BuiltIndex) {
    let fetched = client
        .manifest(repository, &digest(&index.digest))
        .await
        .unwrap();
    assert_eq!(fetched.bytes, index.bytes);
    let Manifest::Index(parsed) = fetched.manifest else {
        panic!("{repository}: not an index")
    };
    assert_eq!(parsed.media_type, index.media_type);
    let images: Vec<Digest> = parsed.images().map(|d| d.digest).collect();
    let pushed: Vec<String> = index.images.iter().map(|i| i.digest.clone()).collect();
    assert_eq!(images, digests(&pushed));
    let attests: Vec<(Digest, Option<Digest>)> = parsed
        .attestations()
        .map(|d| (d.digest, d.attests()))
        .collect();
    let pushed_attests: Vec<(Digest, Option<Digest>)> = index
        .attestations
        .iter()
        .map(|a: &Attestation| (digest(&a.digest), Some(digest(&a.attests))))
        .collect();
    assert_eq!(attests, pushed_attests);
    for (entry, image) in parsed.images().zip(&index.images) {
        let platform = entry.platform.as_ref().unwrap();
        assert_eq!(platform.platform.architecture, image.spec.architecture);
        assert_eq!(platform.os_version, image.spec.os_version);
        check_image(client, repository, image).await;
    }
    for attestation in &index.attestations {
        let fetched = client
            .manifest(repository, &digest(&attestation.digest))
            .await
            .unwrap();
        let Manifest::Image(m) = fetched.manifest else {
            panic!("attestation is not a manifest")
        };
        assert!(m.is_attestation());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_pushed_reads_back_and_tokens_never_reach_the_cdn() {
    let harness = Harness::start(FrontConfig::default()).await;
    let pushed = push_all(&harness).await;
    let client = client(&harness);

    check_image(&client, "library/single", &pushed.single).await;
    check_index(&client, "library/multi", &pushed.multi).await;
    check_index(&client, "library/win", &pushed.windows).await;
    let Manifest::Image(win) = client
        .manifest("library/win", &digest(&pushed.windows.images[0].digest))
        .await
        .unwrap()
        .manifest
    else {
        panic!()
    };
    assert_eq!(
        win.layers[0].urls,
        ["https://mcr.microsoft.com/v2/windows/servercore/blobs/x"]
    );

    // FROM: the derived image's chain starts with the base's whole chain.
    let base_chain = check_image(&client, "library/base", &pushed.base).await;
    let derived_chain = check_image(&client, "user/derived", &pushed.derived).await;
    assert_eq!(derived_chain.len(), 3);
    assert_eq!(&derived_chain[..2], &base_chain[..]);
    assert_eq!(
        chain_ids(&digests(&pushed.base.diff_ids())).last(),
        base_chain.last()
    );

    // HEAD by tag: the digest and type, no pull.
    let pulls = harness.front.pulls();
    let head = client.head_manifest("library/multi", "2").await.unwrap();
    assert_eq!(head.digest, digest(&pushed.multi.digest));
    assert_eq!(
        head.media_type.as_deref(),
        Some("application/vnd.oci.image.index.v1+json")
    );
    assert_eq!(head.size, Some(pushed.multi.bytes.len() as u64));
    assert_eq!(harness.front.pulls(), pulls);

    // Tokens: one per repository scope, none to the CDN; blobs did go through the CDN.
    let requests = harness.front.requests();
    let cdn: Vec<_> = requests
        .iter()
        .filter(|r| r.origin == Origin::Cdn)
        .collect();
    assert_eq!(cdn.len(), 6, "every config came from the CDN: {cdn:?}");
    assert!(
        cdn.iter()
            .all(|r| r.authorization.is_none() && r.status == 200),
        "{cdn:?}"
    );
    let blob_redirects = requests
        .iter()
        .filter(|r| r.origin == Origin::Registry && r.target.contains("/blobs/") && r.status == 307)
        .count();
    assert_eq!(blob_redirects, cdn.len());
    assert!(
        requests
            .iter()
            .filter(|r| r.origin == Origin::Registry && r.status != 401)
            .all(|r| r
                .authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Bearer tok-")))
    );
    let token_requests = requests
        .iter()
        .filter(|r| r.origin == Origin::Token)
        .count();
    assert_eq!(token_requests, 5, "one token per repository");
    assert_eq!(client.stats().token_requests.load(Ordering::Relaxed), 5);
    assert!(
        requests
            .iter()
            .filter(|r| r.origin == Origin::Token)
            .all(|r| r.authorization.is_none())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cdn_double_refuses_authorization() {
    // What the test above relies on: a request with Authorization to the CDN fails.
    let harness = Harness::start(FrontConfig::default()).await;
    let layer = Layer::new(&[("x", b"x")]);
    harness.pusher.blob("library/x", &layer.blob).await;
    let url = harness
        .front
        .cdn_url()
        .join(&format!("/cdn/library/x/blobs/{}", layer.digest))
        .unwrap();
    let http = reqwest::Client::new();
    let with = http
        .get(url.clone())
        .header("Authorization", "Bearer tok-1")
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 403);
    let without = http.get(url).send().await.unwrap();
    assert_eq!(without.status(), 200);
    assert_eq!(without.bytes().await.unwrap().to_vec(), layer.blob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_not_matching_the_digest_are_refused() {
    let harness = Harness::start(FrontConfig::default()).await;
    let pushed = push_all(&harness).await;
    let client = client(&harness);
    harness.front.update(|c| c.tamper_manifests = true);
    let err = client
        .manifest("library/single", &digest(&pushed.single.digest))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&pushed.single.digest) && message.contains("/manifests/"),
        "{message}"
    );

    harness.front.update(|c| {
        c.tamper_manifests = false;
        c.tamper_blobs = true;
    });
    let err = client
        .config("library/single", &digest(&pushed.single.config_digest))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    // Untampered, the same requests succeed.
    harness.front.update(|c| c.tamper_blobs = false);
    client
        .config("library/single", &digest(&pushed.single.config_digest))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_stops_manifest_gets() {
    let harness = Harness::start(FrontConfig {
        pull_limit: Some(3),
        ..FrontConfig::default()
    })
    .await;
    let pushed = push_all(&harness).await;
    let client = client(&harness);
    let images = [
        ("library/multi", &pushed.multi.images[0]),
        ("library/multi", &pushed.multi.images[1]),
        ("library/single", &pushed.single),
    ];
    let mut seen = Vec::new();
    for (repository, image) in images {
        let fetched = client
            .manifest(repository, &digest(&image.digest))
            .await
            .unwrap();
        seen.push(fetched.budget.unwrap().remaining);
    }
    assert_eq!(seen, [2, 1, 0]);
    let budget = client.pull_budget().unwrap();
    assert_eq!((budget.limit, budget.remaining), (Some(3), 0));

    // The client knows the budget is spent: no request at all.
    let before = harness.front.requests().len();
    let err = client
        .manifest("library/base", &digest(&pushed.base.digest))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::BudgetSpent { .. }), "{err}");
    assert_eq!(harness.front.requests().len(), before);
    assert_eq!(harness.front.pulls(), 3);

    // Blobs and HEADs go on.
    client
        .config("library/single", &digest(&pushed.single.config_digest))
        .await
        .unwrap();
    let head = client.head_manifest("library/base", "1").await.unwrap();
    assert_eq!(head.digest, digest(&pushed.base.digest));
    assert_eq!(head.budget.unwrap().remaining, 0);

    // A client that knew nothing meets the 429 (no Retry-After), then sends no more.
    let fresh = self::client(&harness);
    let err = fresh
        .manifest("library/base", &digest(&pushed.base.digest))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::RateLimited { .. }), "{err}");
    let answered_429 = harness
        .front
        .requests()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    assert_eq!(answered_429, 1);
    let err = fresh
        .manifest("library/base", &digest(&pushed.base.digest))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::BudgetSpent { .. }), "{err}");
    assert_eq!(
        harness
            .front
            .requests()
            .iter()
            .filter(|r| r.status == 429)
            .count(),
        1
    );
    assert_eq!(harness.front.pulls(), 3);

    // A stored budget carries over to a new client.
    let restored = self::client(&harness);
    restored.restore_pull_budget(client.pull_budget().unwrap());
    let before = harness.front.requests().len();
    assert!(matches!(
        restored
            .manifest("library/base", &digest(&pushed.base.digest))
            .await,
        Err(RegistryError::BudgetSpent { .. })
    ));
    assert_eq!(harness.front.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_renewed() {
    let harness = Harness::start(FrontConfig::default()).await;
    let pushed = push_all(&harness).await;
    let client = client(&harness);
    let single = digest(&pushed.single.digest);
    client.manifest("library/single", &single).await.unwrap();
    let tokens = |h: &Harness| {
        h.front
            .requests()
            .iter()
            .filter(|r| r.origin == Origin::Token)
            .count()
    };
    assert_eq!(tokens(&harness), 1);

    // The registry no longer accepts the token: 401 invalid_token, a new token, success.
    harness.front.expire_tokens();
    client.manifest("library/single", &single).await.unwrap();
    assert_eq!(tokens(&harness), 2);
    let invalid = harness
        .front
        .requests()
        .iter()
        .filter(|r| {
            r.challenge
                .as_deref()
                .is_some_and(|c| c.contains("invalid_token"))
        })
        .count();
    assert_eq!(invalid, 1);

    // Short-lived tokens are renewed before they expire: no request meets an expired one.
    harness
        .front
        .update(|c| c.token_lifetime = Duration::from_secs(1));
    harness.front.expire_tokens();
    harness.front.clear_requests();
    client.manifest("library/single", &single).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.manifest("library/single", &single).await.unwrap();
    let requests = harness.front.requests();
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.origin == Origin::Token)
            .count(),
        2
    );
    let invalid_after = requests
        .iter()
        .filter(|r| {
            r.challenge
                .as_deref()
                .is_some_and(|c| c.contains("invalid_token"))
        })
        .count();
    assert_eq!(
        invalid_after, 1,
        "only the token expired on purpose above: {requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_scope_gets_a_token_for_the_scope_asked() {
    let harness = Harness::start(FrontConfig {
        extra_scope: Some("repository:library/mirror:pull".into()),
        ..FrontConfig::default()
    })
    .await;
    let pushed = push_all(&harness).await;
    let client = client(&harness);
    client
        .manifest("library/single", &digest(&pushed.single.digest))
        .await
        .unwrap();
    let requests = harness.front.requests();
    let token_targets: Vec<&str> = requests
        .iter()
        .filter(|r| r.origin == Origin::Token)
        .map(|r| r.target.as_str())
        .collect();
    assert_eq!(token_targets.len(), 2, "{token_targets:?}");
    assert!(
        token_targets[1].contains("library%2Fmirror"),
        "{token_targets:?}"
    );
    // The next request uses the re-scoped token at once.
    client
        .config("library/single", &digest(&pushed.single.config_digest))
        .await
        .unwrap();
    assert_eq!(
        harness
            .front
            .requests()
            .iter()
            .filter(|r| r.origin == Origin::Token)
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_go_to_the_realm_of_their_registry_only() {
    let harness = Harness::start(FrontConfig {
        basic_user: Some(("alice".into(), "pw".into())),
        ..FrontConfig::default()
    })
    .await;
    let pushed = push_all(&harness).await;
    let front = harness.front.url();
    let host = format!("{}:{}", front.host_str().unwrap(), front.port().unwrap());
    let credentials = |host: String| HostCredentials {
        host,
        username: "alice".into(),
        secret: Secret::new("pw"),
    };
    let own = client_for(front, |c| c.credentials = Some(credentials(host.clone())));
    own.manifest("library/single", &digest(&pushed.single.digest))
        .await
        .unwrap();
    let expected = format!("Basic {}", support::registry::front::basic("alice", "pw"));
    let requests = harness.front.requests();
    assert!(
        requests
            .iter()
            .filter(|r| r.origin == Origin::Token)
            .all(|r| r.authorization.as_deref() == Some(expected.as_str()))
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.origin != Origin::Token)
            .all(|r| r.authorization.as_deref() != Some(expected.as_str()))
    );

    // Credentials of another host are never sent: the token service refuses, the error says so.
    harness.front.clear_requests();
    let other = client_for(front, |c| {
        c.credentials = Some(credentials("registry-1.docker.io".into()))
    });
    let err = other
        .manifest("library/single", &digest(&pushed.single.digest))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("token service"), "{err}");
    assert!(!err.to_string().contains("pw"));
    assert!(
        harness
            .front
            .requests()
            .iter()
            .all(|r| r.authorization.is_none())
    );
}

async fn push_listing(harness: &Harness) -> (Vec<String>, Vec<String>) {
    let image = image::build(ImageSpec::linux(
        "amd64",
        None,
        vec![Layer::new(&[("x", b"listing")])],
        Format::Docker,
    ));
    let mut tags: Vec<String> = (0..7).map(|i| format!("1.{i}")).collect();
    for tag in &tags {
        harness.pusher.image("library/many", tag, &image).await;
    }
    let mut repositories = vec!["library/many".to_owned()];
    for name in ["a/one", "b/two", "c/three", "d/four"] {
        harness.pusher.image(name, "latest", &image).await;
        repositories.push(name.to_owned());
    }
    tags.sort();
    repositories.sort();
    (tags, repositories)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_through_link_headers_and_refuse_bad_ones() {
    let harness = Harness::start(FrontConfig::default()).await;
    let (tags, repositories) = push_listing(&harness).await;
    let client = client_for(harness.front.url(), |c| c.page_size = Some(2));

    for mode in [LinkRewrite::Keep, LinkRewrite::Absolute] {
        harness.front.update(|c| c.links = mode);
        harness.front.clear_requests();
        // The registry's order (distribution does not sort tags); every name exactly once.
        let mut got = client.all_tags("library/many").await.unwrap();
        got.sort();
        assert_eq!(got, tags, "{mode:?}");
        let pages = harness
            .front
            .requests()
            .iter()
            .filter(|r| r.target.contains("/tags/list") && r.status == 200)
            .count();
        assert_eq!(pages, 4, "7 tags, 2 a page ({mode:?})");
        assert_eq!(
            client.all_repositories().await.unwrap(),
            repositories,
            "{mode:?}"
        );
    }

    // One page at a time, resumable from a stored URL.
    let first = client
        .tags_page("library/many", &client.tags_first_page("library/many"))
        .await
        .unwrap();
    assert_eq!(first.names.len(), 2);
    let stored = first.next.unwrap().url().to_string();
    let resumed = client.stored_page(Some("library/many"), &stored).unwrap();
    let second = client.tags_page("library/many", &resumed).await.unwrap();
    assert_eq!(second.names.len(), 2);
    assert!(second.names.iter().all(|n| !first.names.contains(n)));
    assert!(client.stored_page(Some("library/other"), &stored).is_err());
    assert!(
        client
            .stored_page(None, "http://127.0.0.2:1/v2/_catalog?last=a")
            .is_err()
    );

    // A Link to another host is refused, and nothing is sent there.
    harness.front.update(|c| c.links = LinkRewrite::OffHost);
    harness.front.clear_requests();
    let err = client.all_repositories().await.unwrap_err();
    assert!(
        err.to_string().contains("leaves the registry's origin"),
        "{err}"
    );
    assert!(
        harness
            .front
            .requests()
            .iter()
            .all(|r| r.origin != Origin::Cdn)
    );
    assert_eq!(
        harness
            .front
            .requests()
            .iter()
            .filter(|r| r.status == 200)
            .count(),
        1
    );

    // A Link that does not advance is refused.
    harness.front.update(|c| c.links = LinkRewrite::Stuck);
    let err = client.all_tags("library/many").await.unwrap_err();
    assert!(err.to_string().contains("does not advance"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_registry_needs_no_token() {
    // The plain registry, as Microsoft's: no challenge, catalog open.
    let harness = Harness::start(FrontConfig::default()).await;
    let pushed = push_all(&harness).await;
    let client = client_for(harness.registry.url(), |c| c.page_size = Some(1));
    check_index(&client, "library/multi", &pushed.multi).await;
    let repositories = client.all_repositories().await.unwrap();
    assert_eq!(
        repositories,
        [
            "library/base",
            "library/multi",
            "library/single",
            "library/win",
            "user/derived"
        ]
    );
    assert_eq!(client.stats().token_requests.load(Ordering::Relaxed), 0);
    assert!(client.pull_budget().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_token_per_scope() {
    let harness = Harness::start(FrontConfig::default()).await;
    let pushed = push_all(&harness).await;
    let client = Arc::new(client(&harness));
    let mut tasks = Vec::new();
    for image in pushed.multi.images.iter().chain(pushed.multi.images.iter()) {
        let client = client.clone();
        let manifest = digest(&image.digest);
        let config = digest(&image.config_digest);
        // Spawned: the client and its futures are Send + Sync, as a worker pool needs.
        tasks.push(tokio::spawn(async move {
            client.manifest("library/multi", &manifest).await.unwrap();
            client
                .config("library/multi", &config)
                .await
                .unwrap()
                .config
        }));
    }
    for (task, image) in tasks.into_iter().zip(pushed.multi.images.iter().cycle()) {
        assert_eq!(task.await.unwrap().diff_ids, digests(&image.diff_ids()));
    }
    let tokens = harness
        .front
        .requests()
        .iter()
        .filter(|r| r.origin == Origin::Token)
        .count();
    assert_eq!(tokens, 1);
    assert_eq!(client.stats().manifest_gets.load(Ordering::Relaxed), 4);
}

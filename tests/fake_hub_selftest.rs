//! Tests of the fake Docker Hub itself, so the crawler's tests can trust it.
//!
//! They talk HTTP to the double like a crawler would and check Hub's behaviours one by one:
//! paging on both endpoint forms, clamping, 404 past the end, orderings and filters, the
//! anonymous cap, rate windows, forced and random faults, the registry facade (challenge, token,
//! `tags/list` paged by `Link`). The truth is re-derived here from the
//! rendered pages with independent code and compared with the double's own, which is computed
//! from its model.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::fake_hub::{FakeHub, FakeHubConfig, FaultKind};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_V1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
const CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// A small dataset for the tests that do not need the default one.
fn small() -> FakeHubConfig {
    FakeHubConfig {
        repos: 4,
        max_tags: 40,
        big_repo_tags: 150,
        ..FakeHubConfig::default()
    }
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn get(client: &reqwest::Client, url: &str) -> Answer {
    send(client.get(url)).await
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// Follows `next` from `url`; returns the `count` and every result, checking that `count` is
/// the same on every page.
async fn walk(client: &reqwest::Client, url: &str) -> (u64, Vec<Value>) {
    let mut results = Vec::new();
    let mut count = None;
    let mut next = Some(url.to_owned());
    while let Some(url) = next {
        let answer = get(client, &url).await;
        assert_eq!(answer.status, 200, "{url}");
        let page = answer.json();
        let page_count = page["count"].as_u64().expect("count");
        assert_eq!(
            *count.get_or_insert(page_count),
            page_count,
            "count moved at {url}"
        );
        results.extend(page["results"].as_array().expect("results").iter().cloned());
        next = page["next"].as_str().map(str::to_owned);
    }
    (count.unwrap_or(0), results)
}

fn names(results: &[Value]) -> Vec<String> {
    results
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_owned())
        .collect()
}

/// Every tag object of the namespace as `(repo, tag)`, through both endpoint forms.
async fn all_tags(hub: &FakeHub, client: &reqwest::Client) -> Vec<(String, Value)> {
    let base = hub.url();
    let (_, repos) = walk(
        client,
        &format!("{base}/v2/namespaces/library/repositories?page_size=100"),
    )
    .await;
    let mut tags = Vec::new();
    for (i, repo) in names(&repos).into_iter().enumerate() {
        let url = if i % 2 == 0 {
            format!("{base}/v2/namespaces/library/repositories/{repo}/tags?page_size=100")
        } else {
            format!("{base}/v2/repositories/library/{repo}/tags?page_size=100")
        };
        let (count, results) = walk(client, &url).await;
        assert_eq!(count as usize, results.len(), "{repo}");
        tags.extend(results.into_iter().map(|t| (repo.clone(), t)));
    }
    tags
}

fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn platform_of(image: &Value) -> String {
    let os = image["os"].as_str().expect("os");
    let arch = image["architecture"].as_str().expect("architecture");
    match image["variant"].as_str() {
        Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
        _ => format!("{os}/{arch}"),
    }
}

/// The rules of the output schema, applied to rendered tag objects.
#[derive(Default)]
struct Derived {
    entries: BTreeMap<String, Map<String, Value>>,
    attestations: u64,
    nulls: u64,
    invalids: u64,
}

impl Derived {
    fn add(&mut self, digest: &str, kind: &str, image: Option<&Value>, repo_tag: &str) {
        let mut fresh = Map::new();
        fresh.insert("digest".into(), json!(digest));
        fresh.insert("kind".into(), json!(kind));
        fresh.insert(
            "platform".into(),
            image.map_or(Value::Null, |i| json!(platform_of(i))),
        );
        if let Some(v) = image
            .and_then(|i| i["os_version"].as_str())
            .filter(|v| !v.is_empty())
        {
            fresh.insert("os_version".into(), json!(v));
        }
        fresh.insert("tags".into(), json!([]));
        if kind == "manifest" {
            fresh.insert("indexes".into(), json!([]));
        }
        let entry = self
            .entries
            .entry(digest.to_owned())
            .or_insert_with(|| fresh.clone());
        for key in ["kind", "platform", "os_version"] {
            assert_eq!(
                entry.get(key),
                fresh.get(key),
                "{digest} disagrees on {key}"
            );
        }
        push_sorted(entry, "tags", repo_tag);
    }

    /// A slot's digest if valid; counts it as skipped otherwise.
    fn check<'a>(&mut self, slot: &'a Value) -> Option<&'a str> {
        match slot.as_str() {
            None => {
                self.nulls += 1;
                None
            }
            Some(d) if valid_digest(d) => Some(d),
            Some(_) => {
                self.invalids += 1;
                None
            }
        }
    }

    fn tag(&mut self, repo_tag: &str, tag: &Value) {
        let media = tag["media_type"].as_str().expect("media_type");
        let is_index = media == OCI_INDEX || media == DOCKER_LIST;
        let images = tag["images"].as_array().expect("images");
        let top = match tag.get("digest") {
            Some(slot) => self.check(slot),
            None => None,
        };
        if let Some(d) = top {
            if is_index {
                self.add(d, "index", None, repo_tag);
            } else {
                let image = images.iter().find(|i| i["digest"].as_str() == Some(d));
                let kind = if media == CONFIG {
                    "config"
                } else {
                    "manifest"
                };
                self.add(d, kind, image, repo_tag);
            }
        }
        for image in images {
            if image["os"] == "unknown" && image["architecture"] == "unknown" {
                self.attestations += 1;
                continue;
            }
            let Some(d) = self.check(&image["digest"]) else {
                continue;
            };
            if !is_index && top == Some(d) {
                continue;
            }
            self.add(d, "manifest", Some(image), repo_tag);
            if let Some(index) = top.filter(|_| is_index) {
                push_sorted(self.entries.get_mut(d).expect("added"), "indexes", index);
            }
        }
    }
}

fn push_sorted(entry: &mut Map<String, Value>, key: &str, item: &str) {
    let list = entry[key].as_array_mut().expect("list");
    if !list.iter().any(|v| v == item) {
        list.push(json!(item));
        list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
}

#[tokio::test]
async fn paging_agrees_with_count_on_both_endpoint_forms() {
    let hub = FakeHub::start(FakeHubConfig::default()).await;
    let client = reqwest::Client::new();
    let base = hub.url();

    let expected: BTreeSet<String> = hub.repo_names().into_iter().collect();
    for url in [
        format!("{base}/v2/namespaces/library/repositories?page_size=100"),
        format!("{base}/v2/repositories/library/?page_size=5"),
        format!("{base}/v2/repositories/library"),
    ] {
        let (count, repos) = walk(&client, &url).await;
        let listed = names(&repos);
        assert_eq!(count as usize, listed.len(), "{url}");
        assert_eq!(
            listed.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "{url}"
        );
        assert_eq!(
            listed.len(),
            expected.len(),
            "a repository listed twice: {url}"
        );
    }

    for url in [
        format!("{base}/v2/namespaces/library/repositories/python/tags?page_size=100"),
        format!("{base}/v2/repositories/library/python/tags?page_size=100"),
        format!("{base}/v2/repositories/library/python/tags/?page_size=100&ordering=-last_updated"),
    ] {
        let (count, tags) = walk(&client, &url).await;
        let listed = names(&tags);
        let unique: BTreeSet<&String> = listed.iter().collect();
        assert_eq!(count, 2500, "{url}");
        assert_eq!(listed.len(), 2500, "{url}");
        assert_eq!(unique.len(), 2500, "a tag listed twice: {url}");
    }
    assert_eq!(hub.total_repos(), 12);
}

#[tokio::test]
async fn page_size_clamps_and_past_the_end_is_404() {
    let hub = FakeHub::start(small()).await;
    let client = reqwest::Client::new();
    let base = hub.url();
    let tags = format!("{base}/v2/namespaces/library/repositories/python/tags");

    let page = get(&client, &format!("{tags}?page_size=1000&name=3"))
        .await
        .json();
    assert_eq!(page["results"].as_array().unwrap().len(), 100);
    assert_eq!(
        page["next"],
        json!(format!("{tags}?page_size=1000&name=3&page=2")),
        "next is absolute and keeps the query"
    );
    assert_eq!(page["previous"], Value::Null);
    let second = get(&client, page["next"].as_str().unwrap()).await.json();
    assert_eq!(
        second["previous"],
        json!(format!("{tags}?page_size=1000&name=3&page=1"))
    );

    let default = get(&client, &tags).await.json();
    assert_eq!(
        default["results"].as_array().unwrap().len(),
        10,
        "Hub's default page size"
    );
    assert_eq!(default["next"], json!(format!("{tags}?page=2")));

    let past = get(&client, &format!("{tags}?page=99&page_size=100")).await;
    assert_eq!(past.status, 404);
    assert_eq!(
        past.json(),
        json!({"message": "httperror 404: page not found", "errinfo": {}})
    );
    assert_eq!(
        get(
            &client,
            &format!("{base}/v2/repositories/library/?page=3&page_size=100")
        )
        .await
        .status,
        404
    );

    for bad in [
        "page=0",
        "page=x",
        "page_size=0",
        "page_size=-3",
        "ordering=size",
    ] {
        let answer = get(&client, &format!("{tags}?{bad}")).await;
        assert_eq!(answer.status, 400, "{bad}");
        assert!(answer.json()["message"].is_string(), "{bad}");
    }
    let empty = get(&client, &format!("{tags}?name=no-such-tag"))
        .await
        .json();
    assert_eq!(
        empty,
        json!({"count": 0, "next": null, "previous": null, "results": []})
    );
}

#[tokio::test]
async fn single_tags_unknown_paths_and_headers() {
    let hub = FakeHub::start(small()).await;
    let client = reqwest::Client::new();
    let base = hub.url();
    let page = get(
        &client,
        &format!("{base}/v2/repositories/library/python/tags?page_size=3"),
    )
    .await;
    assert_eq!(page.header("content-type"), Some("application/json"));
    for header in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        let value = page
            .header(header)
            .unwrap_or_else(|| panic!("{header} missing"));
        value
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{header}: {value}"));
    }
    let listed = page.json()["results"][1].clone();
    let name = listed["name"].as_str().unwrap();
    for url in [
        format!("{base}/v2/repositories/library/python/tags/{name}"),
        format!("{base}/v2/namespaces/library/repositories/python/tags/{name}/"),
    ] {
        let answer = get(&client, &url).await;
        assert_eq!(answer.status, 200, "{url}");
        assert_eq!(answer.json(), listed, "{url}");
    }

    let missing = get(
        &client,
        &format!("{base}/v2/repositories/library/python/tags/9.99.0-slim"),
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json(),
        json!({"message": "httperror 404: tag '9.99.0-slim' not found",
               "errinfo": {"namespace": "library", "repository": "python", "tag": "9.99.0-slim"}})
    );
    for path in [
        "/v2/nothing",
        "/v2/repositories/library/nope/tags",
        "/v2/namespaces/other/repositories",
    ] {
        let answer = get(&client, &format!("{base}{path}")).await;
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "{path}"
        );
        assert!(answer.json()["message"].is_string(), "{path}");
    }
}

#[tokio::test]
async fn truth_agrees_with_the_rendered_pages_and_every_quirk_appears() {
    let hub = FakeHub::start(FakeHubConfig::default()).await;
    let client = reqwest::Client::new();
    let tags = all_tags(&hub, &client).await;
    assert_eq!(tags.len(), hub.total_tags());

    let mut derived = Derived::default();
    let mut quirks: BTreeMap<&str, usize> = BTreeMap::new();
    let mut platforms = BTreeSet::new();
    let mut note = |quirk: &'static str, seen: bool| {
        *quirks.entry(quirk).or_default() += usize::from(seen);
    };
    for (repo, tag) in &tags {
        derived.tag(&format!("{repo}:{}", tag["name"].as_str().unwrap()), tag);
        let media = tag["media_type"].as_str().unwrap();
        let images = tag["images"].as_array().unwrap();
        let digest = tag.get("digest").and_then(Value::as_str);
        let first = images.first().and_then(|i| i["digest"].as_str());
        for image in images {
            platforms.insert(platform_of(image));
        }
        note(
            "no digest key, full_size 0",
            tag.get("digest").is_none() && tag["full_size"] == 0,
        );
        note(
            "images [] with a digest",
            images.is_empty() && digest.is_some(),
        );
        note(
            "null image digest",
            images.iter().any(|i| i["digest"].is_null()),
        );
        note(
            "v1 prettyjws with null timestamps",
            media == DOCKER_V1
                && tag["last_updated"].is_null()
                && tag["tag_last_pushed"].is_null()
                && images[0]["last_pushed"].is_null()
                && digest == first,
        );
        note("OCI index", media == OCI_INDEX);
        note("Docker manifest list", media == DOCKER_LIST);
        note(
            "OCI manifest, digest = images[0]",
            media == OCI_MANIFEST && digest.is_some() && digest == first,
        );
        note(
            "Docker v2 manifest, digest = images[0]",
            media == DOCKER_V2 && digest.is_some() && digest == first,
        );
        note(
            "config digest tag",
            media == CONFIG && digest.is_some() && digest == first && images.len() == 1,
        );
        note(
            "attestation entries",
            images
                .iter()
                .any(|i| i["os"] == "unknown" && i["architecture"] == "unknown"),
        );
        note(
            "windows with os_version",
            images.iter().any(|i| {
                i["os"] == "windows"
                    && i["os_version"]
                        .as_str()
                        .is_some_and(|v| v.starts_with("10.0."))
            }),
        );
        note(
            "invalid image digest",
            images
                .iter()
                .any(|i| i["digest"].as_str().is_some_and(|d| !valid_digest(d))),
        );
        note(
            "invalid tag digest",
            digest.is_some_and(|d| !valid_digest(d)),
        );
    }

    let truth = hub.truth();
    for (digest, entry) in &truth {
        let ours = derived
            .entries
            .get(digest)
            .map(|m| Value::Object(m.clone()));
        assert_eq!(ours.as_ref(), Some(entry), "{digest}");
    }
    assert_eq!(
        derived.entries.len(),
        truth.len(),
        "digests the double's truth lacks"
    );
    assert_eq!(derived.attestations, hub.skipped_attestations());
    assert_eq!(derived.nulls, hub.skipped_null_digests());
    assert_eq!(derived.invalids, hub.skipped_invalid_digests());
    let list_len = |e: &Value, key: &str| e.get(key).and_then(Value::as_array).map_or(0, Vec::len);
    quirks.insert(
        "digests: manifest under two indexes",
        truth
            .values()
            .filter(|e| list_len(e, "indexes") > 1)
            .count(),
    );
    quirks.insert(
        "digests: linux manifest under two indexes (rebuilt index)",
        truth
            .values()
            .filter(|e| {
                list_len(e, "indexes") > 1
                    && e["platform"]
                        .as_str()
                        .is_some_and(|p| p.starts_with("linux/"))
            })
            .count(),
    );
    quirks.insert(
        "digests: several tags",
        truth.values().filter(|e| list_len(e, "tags") > 1).count(),
    );

    let kinds: BTreeSet<&str> = truth
        .values()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, BTreeSet::from(["config", "index", "manifest"]));
    for platform in [
        "linux/amd64",
        "linux/arm64/v8",
        "linux/arm/v7",
        "linux/arm/v6",
        "linux/386",
        "linux/ppc64le",
        "linux/s390x",
        "linux/riscv64",
        "linux/mips64le",
        "windows/amd64",
        "unknown/unknown",
    ] {
        assert!(platforms.contains(platform), "no {platform} image");
    }
    eprintln!(
        "default dataset: {} repos, {} tags, {} digests ({} index, {} manifest, {} config); \
         skipped per tag object: {} attestations, {} null, {} invalid",
        hub.total_repos(),
        hub.total_tags(),
        truth.len(),
        truth.values().filter(|e| e["kind"] == "index").count(),
        truth.values().filter(|e| e["kind"] == "manifest").count(),
        truth.values().filter(|e| e["kind"] == "config").count(),
        hub.skipped_attestations(),
        hub.skipped_null_digests(),
        hub.skipped_invalid_digests(),
    );
    for (quirk, seen) in &quirks {
        eprintln!("  {quirk}: {seen}");
        assert!(*seen > 0, "no tag shows the quirk: {quirk}");
    }
}

#[tokio::test]
async fn truth_endpoint_matches_truth() {
    let hub = FakeHub::start(small()).await;
    let client = reqwest::Client::new();
    let answer = get(&client, &format!("{}/_fake/truth", hub.url())).await;
    let lines: Vec<Value> = String::from_utf8(answer.body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let truth: Vec<Value> = hub.truth().into_values().collect();
    assert_eq!(lines, truth);
    assert!(
        hub.requests().is_empty(),
        "the double's own endpoints are not logged"
    );
}

#[tokio::test]
async fn orderings_and_name_filter() {
    let hub = FakeHub::start(small()).await;
    let client = reqwest::Client::new();
    let base = hub.url();
    let tags = format!("{base}/v2/repositories/library/python/tags?page_size=100");
    let key = |t: &Value| {
        (
            t["last_updated"].as_str().map(str::to_owned),
            t["name"].as_str().unwrap().to_owned(),
        )
    };

    let (_, newest) = walk(&client, &tags).await;
    let (_, oldest) = walk(&client, &format!("{tags}&ordering=-last_updated")).await;
    let (_, default) = walk(&client, &format!("{tags}&ordering=last_updated")).await;
    assert_eq!(newest, default);
    for pair in newest.windows(2) {
        let (a, b) = (key(&pair[0]), key(&pair[1]));
        assert!(
            a.0 > b.0 || (a.0 == b.0 && a.1 < b.1),
            "newest first: {a:?} then {b:?}"
        );
    }
    for pair in oldest.windows(2) {
        let (a, b) = (key(&pair[0]), key(&pair[1]));
        assert!(
            a.0 < b.0 || (a.0 == b.0 && a.1 < b.1),
            "oldest first: {a:?} then {b:?}"
        );
    }
    let mut by_name = names(&newest);
    by_name.sort();
    assert_eq!(
        names(&walk(&client, &format!("{tags}&ordering=name")).await.1),
        by_name
    );

    let (count, filtered) = walk(&client, &format!("{tags}&name=slim")).await;
    let expected = names(&newest)
        .into_iter()
        .filter(|n| n.contains("slim"))
        .count();
    assert!(expected > 0);
    assert_eq!((count as usize, filtered.len()), (expected, expected));

    let repos = format!("{base}/v2/namespaces/library/repositories?page_size=2");
    let mut ascending = names(&walk(&client, &format!("{repos}&ordering=name")).await.1);
    let descending = names(&walk(&client, &format!("{repos}&ordering=-name")).await.1);
    assert!(ascending.windows(2).all(|p| p[0] < p[1]));
    ascending.reverse();
    assert_eq!(ascending, descending);
}

#[tokio::test]
async fn anonymous_cap_spares_signed_in_requests() {
    let hub = FakeHub::start(FakeHubConfig {
        anonymous_cap: true,
        ..small()
    })
    .await;
    let client = reqwest::Client::new();
    let base = hub.url();
    let capped = json!({"message": "pagination offset too large for anonymous requests; sign in to page further", "errinfo": {}});

    let tags = format!("{base}/v2/repositories/library/python/tags");
    assert_eq!(
        get(&client, &format!("{tags}?page=10&page_size=100"))
            .await
            .status,
        404
    );
    let far = format!("{tags}?page=11&page_size=100");
    let answer = get(&client, &far).await;
    assert_eq!((answer.status, answer.json()), (403, capped.clone()));
    assert_eq!(
        get(&client, &format!("{tags}?page=2&page_size=100"))
            .await
            .status,
        200
    );

    let repos = format!("{base}/v2/namespaces/library/repositories?page_size=10&page=11");
    let answer = get(&client, &repos).await;
    assert_eq!((answer.status, answer.json()), (403, capped));

    let token = get_token(&client, &base).await;
    let signed_in = send(client.get(&repos).bearer_auth(&token)).await;
    assert_eq!(signed_in.status, 404, "past the end, but not capped");
    let records = hub.requests();
    assert!(records.last().unwrap().authorized);
    assert!(!records[0].authorized);
}

async fn get_token(client: &reqwest::Client, base: &str) -> String {
    let answer = send(
        client
            .post(format!("{base}/v2/auth/token"))
            .header("content-type", "application/json")
            .body(r#"{"identifier":"someone","secret":"dckr_pat_x"}"#),
    )
    .await;
    assert_eq!(answer.status, 200);
    let token = answer.json()["access_token"].as_str().unwrap().to_owned();
    assert!(!token.contains("dckr_pat_x"));
    token
}

#[tokio::test]
async fn sign_in_checks_configured_credentials() {
    let hub = FakeHub::start(FakeHubConfig {
        credentials: Some(("me".into(), "s3cret".into())),
        ..small()
    })
    .await;
    let client = reqwest::Client::new();
    let login = format!("{}/v2/users/login", hub.url());
    let wrong = send(
        client
            .post(&login)
            .body(r#"{"username":"me","password":"nope"}"#),
    )
    .await;
    assert_eq!(wrong.status, 401);
    let right = send(
        client
            .post(&login)
            .body(r#"{"username":"me","password":"s3cret"}"#),
    )
    .await;
    assert_eq!(right.status, 200);
    assert!(right.json()["token"].is_string());
    assert_eq!(get(&client, &login).await.status, 405);
}

#[tokio::test]
async fn rate_window_answers_429_with_retry_after() {
    let hub = FakeHub::start(FakeHubConfig {
        rate_limit: Some((5, Duration::from_secs(10))),
        ..small()
    })
    .await;
    let client = reqwest::Client::new();
    let url = format!("{}/v2/repositories/library/?page_size=1", hub.url());
    for remaining in (0..5).rev() {
        let answer = get(&client, &url).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(
            answer.header("x-ratelimit-remaining"),
            Some(remaining.to_string().as_str())
        );
    }
    let refused = get(&client, &url).await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.json(),
        json!({"detail": "Rate limit exceeded", "error": false})
    );
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry), "Retry-After {retry}");
    let reset: u64 = refused
        .header("x-ratelimit-reset")
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now..=now + 11).contains(&reset),
        "reset {reset}, now {now}"
    );
    assert_eq!(
        hub.requests().last().unwrap().fault.as_deref(),
        Some("rate_limit")
    );
}

#[tokio::test]
async fn forced_429s_hit_the_numbered_requests() {
    let hub = FakeHub::start(FakeHubConfig {
        force_429: BTreeSet::from([1, 3]),
        force_429_retry_after: 7,
        ..small()
    })
    .await;
    let client = reqwest::Client::new();
    let url = format!("{}/v2/repositories/library/?page_size=1", hub.url());
    let statuses = [
        get(&client, &url).await,
        get(&client, &url).await,
        get(&client, &url).await,
    ];
    assert_eq!(
        statuses.iter().map(|a| a.status).collect::<Vec<_>>(),
        [200, 429, 200]
    );
    assert_eq!(statuses[1].header("retry-after"), Some("7"));
    assert_eq!(statuses[1].header("x-ratelimit-remaining"), Some("0"));

    hub.update(|c| c.force_429_bare = true);
    let bare = get(&client, &url).await;
    assert_eq!(bare.status, 429);
    assert!(bare.header("retry-after").is_none() && bare.header("x-ratelimit-limit").is_none());
    assert!(bare.body.is_empty());

    let log = hub.requests();
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 429, 200, 429]
    );
    assert_eq!(log[3].fault.as_deref(), Some("force_429"));
    hub.clear_requests();
    assert!(hub.requests().is_empty());
}

#[tokio::test]
async fn random_faults_follow_rate_and_seed() {
    let config = FakeHubConfig {
        fault_rate: 0.2,
        fault_kinds: vec![
            FaultKind::Status500,
            FaultKind::Status502,
            FaultKind::Status503,
        ],
        ..small()
    };
    let sequence =
        |hub: &FakeHub| -> Vec<u16> { hub.requests().iter().map(|r| r.status).collect() };
    let client = reqwest::Client::new();
    let mut runs = Vec::new();
    for seed in [1, 1, 2] {
        let hub = FakeHub::start(FakeHubConfig {
            seed,
            ..config.clone()
        })
        .await;
        let url = format!("{}/v2/repositories/library/?page_size=1", hub.url());
        for _ in 0..300 {
            let status = get(&client, &url).await.status;
            assert!([200, 500, 502, 503].contains(&status), "{status}");
        }
        runs.push(sequence(&hub));
    }
    let faults = runs[0].iter().filter(|&&s| s != 200).count();
    assert!(
        (35..=85).contains(&faults),
        "{faults} faults in 300 requests at rate 0.2"
    );
    for status in [500, 502, 503] {
        assert!(runs[0].contains(&status), "no {status}");
    }
    assert_eq!(runs[0], runs[1], "same seed, same faults");
    assert_ne!(runs[0], runs[2], "another seed, other faults");
}

#[tokio::test]
async fn each_fault_kind_misbehaves_as_named() {
    let hub = FakeHub::start(FakeHubConfig {
        fault_rate: 1.0,
        slow_delay: Duration::from_millis(300),
        ..small()
    })
    .await;
    let client = reqwest::Client::new();
    let url = format!(
        "{}/v2/repositories/library/python/tags?page_size=50",
        hub.url()
    );
    let only = |kind: FaultKind| hub.update(|c| c.fault_kinds = vec![kind]);

    only(FaultKind::Reset);
    assert!(
        client.get(&url).send().await.is_err(),
        "reset must fail the request"
    );
    let record = hub.requests().pop().unwrap();
    assert_eq!((record.status, record.fault.as_deref()), (0, Some("reset")));

    only(FaultKind::Truncated);
    let truncated = match client.get(&url).send().await {
        Ok(response) => response.bytes().await.is_err(),
        Err(_) => true,
    };
    assert!(truncated, "a truncated body must fail");

    only(FaultKind::MalformedJson);
    let malformed = get(&client, &url).await;
    assert_eq!(malformed.status, 200);
    assert!(serde_json::from_slice::<Value>(&malformed.body).is_err());

    only(FaultKind::Slow);
    let started = Instant::now();
    let slow = get(&client, &url).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(slow.json()["results"].as_array().unwrap().len(), 50);

    only(FaultKind::Status503);
    assert_eq!(get(&client, &url).await.status, 503);

    hub.update(|c| c.fault_rate = 0.0);
    assert_eq!(get(&client, &url).await.status, 200, "the double recovers");
}

#[tokio::test]
async fn broken_huge_and_off_host_paths() {
    let evil = "http://evil.invalid:9/v2/repositories/library/python/tags?page=2";
    let hub = FakeHub::start(FakeHubConfig {
        broken_paths: vec!["/library/node/".into()],
        huge_paths: vec!["/library/alpine/".into()],
        off_host_next: Some(("library/python".into(), evil.into())),
        ..small()
    })
    .await;
    let client = reqwest::Client::new();
    let base = hub.url();

    for _ in 0..2 {
        let broken = get(
            &client,
            &format!("{base}/v2/repositories/library/node/tags"),
        )
        .await;
        assert_eq!(broken.status, 200);
        assert!(serde_json::from_slice::<Value>(&broken.body).is_err());
    }

    let mut huge = client
        .get(format!("{base}/v2/repositories/library/alpine/tags"))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 200);
    assert!(
        huge.content_length().is_none(),
        "chunked, no length to check up front"
    );
    let mut read = 0;
    while read < 8 << 20 {
        read += huge.chunk().await.unwrap().expect("the body goes on").len();
    }
    drop(huge);

    let first = get(
        &client,
        &format!("{base}/v2/repositories/library/python/tags?page_size=100"),
    )
    .await;
    assert_eq!(first.json()["next"], json!(evil));
    let second = get(
        &client,
        &format!("{base}/v2/repositories/library/python/tags?page_size=100&page=2"),
    )
    .await;
    let second = second.json();
    assert!(second["previous"].as_str().unwrap().starts_with(&base));
    assert_eq!(
        second["next"],
        Value::Null,
        "only the first page is poisoned"
    );
    let faults: Vec<Option<String>> = hub.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(
        faults[..3],
        [
            Some("broken_path".into()),
            Some("broken_path".into()),
            Some("huge_path".into())
        ]
    );
}

/// One response read off a raw connection: status, headers, body.
async fn read_raw(
    stream: &mut tokio::net::TcpStream,
    pending: &mut Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let mut buf = [0u8; 8192];
    let end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed early");
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(pending[..end].to_vec()).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    while pending.len() < end + 4 + length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed early");
        pending.extend_from_slice(&buf[..n]);
    }
    let body = pending[end + 4..end + 4 + length].to_vec();
    pending.drain(..end + 4 + length);
    let status = head[9..12].parse().unwrap();
    (status, head, body)
}

#[tokio::test]
async fn keep_alive_pipelining_and_post_bodies() {
    let hub = FakeHub::start(small()).await;
    let mut stream = tokio::net::TcpStream::connect(hub.addr()).await.unwrap();
    let body = r#"{"identifier":"me","secret":"pat"}"#;
    let requests = format!(
        "GET /v2/repositories/library/?page_size=1 HTTP/1.1\r\nHost: hub\r\n\r\n\
         POST /v2/auth/token HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}\
         POST /v2/auth/token HTTP/1.1\r\nHost: hub\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{{\"ide\r\n{:x}\r\n{}\r\n0\r\n\r\n\
         GET /v2/repositories/library/python/tags/latest HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n",
        body.len(),
        body.len() - 5,
        &body[5..],
    );
    stream.write_all(requests.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let (status, head, _) = read_raw(&mut stream, &mut pending).await;
    assert_eq!(status, 200);
    assert!(head.contains("Connection: keep-alive"));
    for _ in 0..2 {
        let (status, _, token) = read_raw(&mut stream, &mut pending).await;
        assert_eq!(status, 200);
        let token: Value = serde_json::from_slice(&token).unwrap();
        assert!(token["access_token"].is_string());
    }
    let (status, head, tag) = read_raw(&mut stream, &mut pending).await;
    assert_eq!(status, 200);
    assert!(head.contains("Connection: close"));
    assert_eq!(
        serde_json::from_slice::<Value>(&tag).unwrap()["name"],
        "latest"
    );
    assert_eq!(
        stream.read(&mut [0u8; 16]).await.unwrap(),
        0,
        "closed after Connection: close"
    );

    let mut garbage = tokio::net::TcpStream::connect(hub.addr()).await.unwrap();
    garbage.write_all(b"NONSENSE\r\n\r\n").await.unwrap();
    let (status, _, _) = read_raw(&mut garbage, &mut Vec::new()).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn same_seed_same_data_and_rebuilds_move_tags() {
    let hub = FakeHub::start(small()).await;
    let again = FakeHub::start(small()).await;
    let before = hub.truth();
    assert_eq!(before, again.truth(), "same seed, same data");
    drop(again);
    let other = FakeHub::start(FakeHubConfig { seed: 2, ..small() }).await;
    assert_ne!(before, other.truth());
    drop(other);

    let client = reqwest::Client::new();
    let url = format!("{}/v2/repositories/library/python/tags/latest", hub.url());
    let old_latest = get(&client, &url).await.json()["digest"].clone();
    let tags = hub.total_tags();
    hub.update(|c| c.rebuilds = 1);
    let after = hub.truth();
    assert_eq!(hub.total_tags(), tags, "rebuilds move tags, they add none");
    let new_latest = get(&client, &url).await.json()["digest"].clone();
    assert_ne!(old_latest, new_latest, "latest moved");
    assert!(
        !after[new_latest.as_str().unwrap()]["tags"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(!before.contains_key(new_latest.as_str().unwrap()));
    let gone = before.keys().filter(|d| !after.contains_key(*d)).count();
    let kept = after
        .values()
        .filter(|e| {
            e["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "python:latest")
        })
        .count();
    assert!(kept > 0 && gone < before.len());
}

#[tokio::test]
async fn registry_facade_challenges_then_lists_every_name_paged_by_link() {
    let hub = FakeHub::start(FakeHubConfig {
        registry_page: Some(40),
        ..small()
    })
    .await;
    let client = reqwest::Client::new();
    let base = hub.url();
    let list = format!("{base}/v2/library/python/tags/list");

    // Without a token: 401 and a challenge naming this double's token service and the scope.
    let refused = get(&client, &list).await;
    assert_eq!(refused.status, 401);
    let challenge = refused.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        challenge,
        format!(
            r#"Bearer realm="{base}/token",service="registry.docker.io",scope="repository:library/python:pull""#
        )
    );
    // Another repository's token is refused too.
    let token_for = |scope: &str| {
        let client = client.clone();
        let url = format!("{base}/token?service=registry.docker.io&scope={scope}");
        async move {
            get(&client, &url).await.json()["token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let other = token_for("repository:library/ubuntu:pull").await;
    assert_eq!(
        send(client.get(&list).bearer_auth(&other)).await.status,
        401
    );

    // With the right one: every name, sorted, 40 a page, each page linking the next.
    let token = token_for("repository:library/python:pull").await;
    let mut names = Vec::new();
    let mut url = list.clone();
    let mut pages = 0;
    loop {
        let page = send(client.get(&url).bearer_auth(&token)).await;
        assert_eq!(page.status, 200);
        let body = page.json();
        assert_eq!(body["name"], "library/python");
        let tags = body["tags"].as_array().unwrap();
        assert!(tags.len() <= 40);
        names.extend(tags.iter().map(|t| t.as_str().unwrap().to_owned()));
        pages += 1;
        let Some(link) = page.headers.get("link") else {
            break;
        };
        let link = link.to_str().unwrap();
        let path = link
            .strip_prefix('<')
            .and_then(|l| l.split_once(">; rel=\"next\""))
            .unwrap()
            .0;
        url = format!("{base}{path}");
    }
    let truth: BTreeSet<String> = all_tags(&hub, &client)
        .await
        .into_iter()
        .filter(|(repo, _)| repo == "python")
        .map(|(_, tag)| tag["name"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "names come sorted");
    assert_eq!(names.iter().cloned().collect::<BTreeSet<_>>(), truth);
    assert_eq!(names.len(), truth.len(), "each name once");
    assert_eq!(pages, truth.len().div_ceil(40));

    // A repository the double does not have: the registry's NAME_UNKNOWN.
    let missing = format!("{base}/v2/library/nope/tags/list");
    let token = token_for("repository:library/nope:pull").await;
    let answer = send(client.get(&missing).bearer_auth(&token)).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["errors"][0]["code"], "NAME_UNKNOWN");
}

fn sha256_of(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// `os/arch[/variant]` of a registry platform object (an index entry's, or a config's).
fn registry_platform(p: &Value) -> String {
    let mut label = format!(
        "{}/{}",
        p["os"].as_str().unwrap(),
        p["architecture"].as_str().unwrap()
    );
    if let Some(v) = p["variant"].as_str() {
        label = label + "/" + v;
    }
    label
}

#[tokio::test]
async fn registry_routes_serve_content_whose_digest_is_its_sha256() {
    let hub = FakeHub::start(FakeHubConfig {
        rebuilds: 1,
        ..small()
    })
    .await;
    let client = reqwest::Client::new();
    let base = hub.url();
    let ping = get(&client, &format!("{base}/v2/")).await;
    assert_eq!(ping.status, 200);
    let truth = hub.truth();
    let (mut images, mut indexes, mut legacy) = (0, 0, 0);
    for (digest, entry) in &truth {
        let tag = entry["tags"][0].as_str().unwrap();
        let repo = tag.split(':').next().unwrap();
        let kind = entry["kind"].as_str().unwrap();
        let path = if kind == "config" {
            "blobs"
        } else {
            "manifests"
        };
        let url = format!("{base}/v2/library/{repo}/{path}/{digest}");
        let answer = get(&client, &url).await;
        assert_eq!(answer.status, 200, "{url}");
        assert_eq!(&sha256_of(&answer.body), digest, "{url}");
        assert_eq!(
            answer.header("docker-content-digest"),
            Some(digest.as_str())
        );
        let media_type = answer.header("content-type").unwrap().to_owned();
        let body = answer.json();
        match kind {
            "index" => {
                assert_eq!(body["mediaType"], json!(media_type));
                assert!([OCI_INDEX, DOCKER_LIST].contains(&media_type.as_str()));
                for m in body["manifests"].as_array().unwrap() {
                    let listed = m["digest"].as_str().unwrap();
                    if m["platform"]["os"] == "unknown" {
                        assert!(!truth.contains_key(listed), "attestations are left out");
                        continue;
                    }
                    let line = &truth[listed];
                    assert_eq!(line["platform"], json!(registry_platform(&m["platform"])));
                    assert!(line["indexes"].as_array().unwrap().contains(&json!(digest)));
                }
                indexes += 1;
            }
            "manifest" if media_type == DOCKER_V1 => {
                assert_eq!(body["schemaVersion"], 1);
                legacy += 1;
            }
            _ => {
                let config = if kind == "config" {
                    body.clone()
                } else {
                    assert!([OCI_MANIFEST, DOCKER_V2].contains(&media_type.as_str()));
                    assert_eq!(body["mediaType"], json!(media_type));
                    let id = body["config"]["digest"].as_str().unwrap();
                    assert_eq!(
                        hub.served(digest),
                        Some(support::fake_hub::Served::Manifest {
                            image_id: Some(id.to_owned())
                        })
                    );
                    let blob = get(&client, &format!("{base}/v2/library/{repo}/blobs/{id}")).await;
                    assert_eq!(sha256_of(&blob.body), id);
                    let layers = body["layers"].as_array().unwrap().len();
                    let config = blob.json();
                    assert_eq!(
                        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
                        layers
                    );
                    config
                };
                assert_eq!(entry["platform"], json!(registry_platform(&config)));
                images += 1;
            }
        }
    }
    assert!(
        images > 100 && indexes > 10,
        "{images} images, {indexes} indexes, {legacy} legacy"
    );

    // What a registry answers otherwise: HEAD, another repository, unknown digests, methods.
    let (digest, entry) = truth.iter().find(|(_, e)| e["kind"] == "manifest").unwrap();
    let repo = entry["tags"][0]
        .as_str()
        .unwrap()
        .split(':')
        .next()
        .unwrap();
    let head = send(client.head(format!("{base}/v2/library/{repo}/manifests/{digest}"))).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("docker-content-digest"), Some(digest.as_str()));
    let other = hub.repo_names().into_iter().find(|r| r != repo).unwrap();
    let elsewhere = get(
        &client,
        &format!("{base}/v2/library/{other}/manifests/{digest}"),
    )
    .await;
    assert_eq!(elsewhere.status, 404);
    assert_eq!(elsewhere.json()["errors"][0]["code"], "MANIFEST_UNKNOWN");
    let unknown = format!("sha256:{}", "0".repeat(64));
    let blob = get(
        &client,
        &format!("{base}/v2/library/{repo}/blobs/{unknown}"),
    )
    .await;
    assert_eq!(blob.json()["errors"][0]["code"], "BLOB_UNKNOWN");
    let nobody = get(
        &client,
        &format!("{base}/v2/library/nobody/manifests/{digest}"),
    )
    .await;
    assert_eq!(nobody.json()["errors"][0]["code"], "NAME_UNKNOWN");
    let post = send(client.post(format!("{base}/v2/library/{repo}/manifests/{digest}"))).await;
    assert_eq!(post.status, 405);
}

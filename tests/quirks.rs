//! Every item of HUB-FACTS.md's "Tag objects and their quirks", checked through the public page
//! parser and tag rules (`digestmap::hub`) with the real samples in tests/data/, plus the
//! page-level rules a hostile body meets: absurd counts, deep nesting, invalid UTF-8, arrays
//! posing as objects, and tags with very many images.
//!
//! These are integration tests on purpose: they see only what the crawler sees (bytes in, facts
//! out), so they keep holding whatever the internals become.

use std::time::{Duration, Instant};

use digestmap::hub::{Page, RepoEntry, Skips, TagEntry, TagObservation, observe_tag, parse_page};
use digestmap::model::{Digest, ObjectKind};
use serde_json::{Value, json};

const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const LIST_TYPE: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const PRETTYJWS_TYPE: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";

/// A valid digest made of one repeated hex character (distinct per `c`).
fn d(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// A valid digest numbered `n` (for tags with many images).
fn numbered(n: usize) -> String {
    format!("sha256:{n:064x}")
}

fn digest(text: &str) -> Digest {
    Digest::parse(text).unwrap()
}

/// Parses one tag object the way a page entry is parsed.
fn entry(value: &Value) -> TagEntry {
    let page = parse_page::<TagEntry>(
        json!({"count": 1, "results": [value]})
            .to_string()
            .as_bytes(),
    )
    .expect("a page with one tag object parses");
    page.results.into_iter().next().unwrap()
}

/// Observes one tag object of `library/x`, returning the observation and the skips it counted.
fn observe(value: &Value) -> (Option<TagObservation>, Skips) {
    let mut skips = Skips::default();
    let obs = observe_tag(&entry(value), "library/x", &mut skips);
    (obs, skips)
}

fn platforms(obs: &TagObservation) -> Vec<Option<String>> {
    obs.facts
        .iter()
        .map(|f| f.platform.as_ref().map(ToString::to_string))
        .collect()
}

fn image(digest: Value, os: &str, arch: &str, variant: Option<&str>) -> Value {
    json!({"digest": digest, "os": os, "architecture": arch, "variant": variant,
           "os_version": null, "size": 1000, "status": "active", "last_pushed": "2026-07-31T10:00:00Z"})
}

// ---------------------------------------------------------------------------------------------
// ubuntu:22.04 from tests/data/ubuntu-22.04.txt

/// One line of the sample: platform, manifest digest, image ID (config digest, or `-`).
struct SampleLine {
    platform: String,
    manifest: String,
    image_id: String,
}

fn ubuntu_sample() -> Vec<SampleLine> {
    include_str!("data/ubuntu-22.04.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cols.len(), 3, "sample line {l:?}");
            SampleLine {
                platform: cols[0].to_owned(),
                manifest: cols[1].to_owned(),
                image_id: cols[2].to_owned(),
            }
        })
        .collect()
}

/// The Hub tag object of ubuntu:22.04 (named `name`) as Hub serves it: the OCI index digest on
/// top, every platform manifest and attestation manifest in `images[]`, in the sample's order.
/// The image-id column is the config digest, which Hub's tag objects do not carry: left out.
fn ubuntu_tag(name: &str) -> Value {
    let sample = ubuntu_sample();
    let index = sample.iter().find(|l| l.platform == "index").unwrap();
    let images: Vec<Value> = sample
        .iter()
        .filter(|l| l.platform != "index")
        .map(|l| {
            let mut parts = l.platform.split('/');
            let os = parts.next().unwrap();
            let arch = parts.next().unwrap();
            image(json!(l.manifest), os, arch, parts.next())
        })
        .collect();
    json!({
        "creator": 7, "id": 2_000_000, "images": images, "last_updated": "2026-07-31T10:05:00.123Z",
        "last_updater": 7, "last_updater_username": "doijanky", "name": name, "repository": 130,
        "full_size": 29_000_000, "v2": true, "tag_status": "active",
        "tag_last_pulled": "2026-11-27T10:00:00Z", "tag_last_pushed": "2026-07-31T10:05:00.123Z",
        "media_type": INDEX_TYPE, "content_type": "image", "digest": index.manifest,
    })
}

#[test]
fn ubuntu_22_04_is_an_index_over_six_platforms_and_its_attestations_are_skipped() {
    let sample = ubuntu_sample();
    let index = digest(&sample[0].manifest);
    assert_eq!(sample[0].platform, "index");
    let (obs, skips) = observe(&ubuntu_tag("22.04"));
    let obs = obs.expect("a valid tag");

    assert_eq!(obs.tag, "22.04");
    assert_eq!(obs.digest, Some(index));
    assert_eq!(obs.pushed.as_deref(), Some("2026-07-31T10:05:00.123Z"));
    assert_eq!(obs.facts.len(), 7, "the index and 6 platform manifests");
    let top = &obs.facts[0];
    assert_eq!(
        (top.digest, top.kind, &top.platform, top.index),
        (index, ObjectKind::Index, &None, None)
    );

    let want: Vec<(&str, &str)> = sample
        .iter()
        .filter(|l| l.platform != "index" && l.platform != "unknown/unknown")
        .map(|l| (l.platform.as_str(), l.manifest.as_str()))
        .collect();
    assert_eq!(
        want.iter().map(|w| w.0).collect::<Vec<_>>(),
        [
            "linux/amd64",
            "linux/arm/v7",
            "linux/arm64/v8",
            "linux/ppc64le",
            "linux/riscv64",
            "linux/s390x"
        ]
    );
    for (fact, (platform, manifest)) in obs.facts[1..].iter().zip(&want) {
        assert_eq!(fact.digest, digest(manifest));
        assert_eq!(fact.kind, ObjectKind::Manifest);
        assert_eq!(fact.platform.as_ref().unwrap().to_string(), *platform);
        assert_eq!(
            fact.index,
            Some(index),
            "{platform} is listed under the index"
        );
        assert_eq!(fact.os_version, None);
    }

    assert_eq!(
        skips,
        Skips {
            attestations: 6,
            ..Skips::default()
        }
    );
    // Neither the attestation manifests nor any image ID became a fact.
    for line in &sample {
        let is_fact = |text: &str| obs.facts.iter().any(|f| f.digest.to_string() == text);
        if line.platform == "unknown/unknown" {
            assert!(!is_fact(&line.manifest), "attestation {}", line.manifest);
        }
        if line.image_id != "-" {
            assert!(!is_fact(&line.image_id), "image id {}", line.image_id);
        }
    }
}

#[test]
fn aliases_are_all_kept_with_the_same_facts() {
    // ubuntu:22.04 and ubuntu:jammy on one page, as Hub lists them: one observation each.
    let body = json!({"count": 2, "next": null, "previous": null,
                      "results": [ubuntu_tag("22.04"), ubuntu_tag("jammy")]});
    let page = parse_page::<TagEntry>(body.to_string().as_bytes()).unwrap();
    let mut skips = Skips::default();
    let seen: Vec<TagObservation> = page
        .results
        .iter()
        .filter_map(|e| observe_tag(e, "library/ubuntu", &mut skips))
        .collect();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].tag, "22.04");
    assert_eq!(seen[1].tag, "jammy");
    assert_eq!(seen[0].facts, seen[1].facts);
    assert_eq!(skips.attestations, 12, "counted per tag object");

    // python's `3`, `3.12`, `3.12.7`, `latest`: one single-platform digest, four names.
    let names = ["3", "3.12", "3.12.7", "latest"];
    let results: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({"name": n, "digest": d('a'), "media_type": DOCKER_MANIFEST_TYPE,
                   "images": [image(json!(d('a')), "linux", "amd64", None)]})
        })
        .collect();
    let body = json!({"count": 4, "next": null, "results": results});
    let page = parse_page::<TagEntry>(body.to_string().as_bytes()).unwrap();
    let seen: Vec<TagObservation> = page
        .results
        .iter()
        .filter_map(|e| observe_tag(e, "library/python", &mut Skips::default()))
        .collect();
    assert_eq!(
        seen.iter().map(|o| o.tag.as_str()).collect::<Vec<_>>(),
        names
    );
    assert!(seen.windows(2).all(|w| w[0].facts == w[1].facts));

    // The same manifests pushed under `arm64v8/`: the same facts, for the caller to key by repo.
    let mut other = Skips::default();
    let arm = observe_tag(&entry(&ubuntu_tag("22.04")), "arm64v8/ubuntu", &mut other).unwrap();
    let (lib, _) = observe(&ubuntu_tag("22.04"));
    assert_eq!(arm.facts, lib.unwrap().facts);
}

// ---------------------------------------------------------------------------------------------
// The other quirks, one by one

#[test]
fn old_tags_without_a_top_level_digest_keep_their_platform_manifests() {
    // The real rust:1.44.0-slim object: no `digest` key, `full_size: 0`, digests in images[].
    let sample: Value =
        serde_json::from_str(include_str!("data/hub-tag-without-digest.json")).unwrap();
    assert!(sample.get("digest").is_none() && sample["full_size"] == 0);
    let (obs, skips) = observe(&sample);
    let obs = obs.unwrap();
    assert_eq!(obs.tag, "1.44.0-slim");
    assert_eq!(obs.digest, None);
    assert_eq!(obs.pushed.as_deref(), Some("2020-06-09T20:45:50.400981Z"));
    assert_eq!(
        platforms(&obs),
        ["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/386"].map(|p| Some(p.to_owned()))
    );
    for (fact, image) in obs.facts.iter().zip(sample["images"].as_array().unwrap()) {
        assert_eq!(fact.digest.to_string(), image["digest"].as_str().unwrap());
        assert_eq!(fact.kind, ObjectKind::Manifest);
        assert_eq!(fact.index, None, "no index to list it under");
    }
    assert_eq!(skips, Skips::default());
}

#[test]
fn empty_or_missing_images_leave_just_the_tag_digest() {
    // `images: []`, `images: null`, and no `images` key at all.
    for images in [Some(json!([])), Some(Value::Null), None] {
        let mut tag = json!({"name": "x", "digest": d('1'), "media_type": LIST_TYPE});
        if let Some(images) = &images {
            tag["images"] = images.clone();
        }
        let (obs, skips) = observe(&tag);
        let obs = obs.unwrap();
        assert_eq!(obs.facts.len(), 1, "images {images:?}");
        assert_eq!(obs.facts[0].kind, ObjectKind::Index);
        assert_eq!(obs.facts[0].platform, None);
        assert_eq!(skips, Skips::default());
    }
    // Without a media type the shape decides: nothing listed under it, so not an index.
    let (obs, _) = observe(&json!({"name": "x", "digest": d('1'), "images": []}));
    assert_eq!(obs.unwrap().facts[0].kind, ObjectKind::Manifest);
}

#[test]
fn null_digests_and_null_timestamps() {
    let tag = json!({"name": "old", "digest": d('1'), "media_type": LIST_TYPE,
    "tag_last_pushed": null, "last_updated": null,
    "images": [
        image(json!(d('2')), "linux", "amd64", None),
        image(Value::Null, "linux", "arm", Some("v7")),
        {"os": "linux", "architecture": "386"},
        image(json!(12), "linux", "ppc64le", None),
        image(json!({"sha256": "x"}), "linux", "s390x", None),
    ]});
    let (obs, skips) = observe(&tag);
    let obs = obs.unwrap();
    assert_eq!(obs.pushed, None, "null timestamps read as absent");
    assert_eq!(obs.facts.len(), 2);
    assert_eq!(obs.facts[1].digest, digest(&d('2')));
    assert_eq!(
        skips,
        Skips {
            null_digests: 4,
            ..Skips::default()
        },
        "null, missing and non-string digests are all 'no digest'"
    );

    // A null push time falls back to last_updated; the tag's null digest leaves no tag fact.
    let tag = json!({"name": "old", "digest": null, "tag_last_pushed": null,
                     "last_updated": "2019-01-01T00:00:00Z",
                     "images": [image(json!(d('3')), "linux", "amd64", None)]});
    let (obs, skips) = observe(&tag);
    let obs = obs.unwrap();
    assert_eq!(obs.pushed.as_deref(), Some("2019-01-01T00:00:00Z"));
    assert_eq!(obs.digest, None);
    assert_eq!(obs.facts.len(), 1);
    assert_eq!(skips, Skips::default());
}

#[test]
fn legacy_media_types() {
    // Schema 1 (prettyjws), single platform: the tag digest is the platform manifest.
    let tag = json!({"name": "1.0", "digest": d('1'), "media_type": PRETTYJWS_TYPE,
        "last_updated": null, "tag_last_pushed": null,
        "images": [image(json!(d('1')), "linux", "amd64", None)]});
    let (obs, _) = observe(&tag);
    let obs = obs.unwrap();
    assert_eq!(obs.facts.len(), 1);
    assert_eq!(obs.facts[0].kind, ObjectKind::Manifest);
    assert_eq!(platforms(&obs), [Some("linux/amd64".to_owned())]);

    // Schema 1 with no images at all: still a manifest, platform unknown.
    let (obs, _) = observe(&json!({"name": "1.0", "digest": d('1'), "media_type": PRETTYJWS_TYPE}));
    let obs = obs.unwrap();
    assert_eq!(obs.facts.len(), 1);
    assert_eq!(obs.facts[0].kind, ObjectKind::Manifest);
    assert_eq!(obs.facts[0].platform, None);

    // A container.image.v1+json tag carries the image ID: a config, with the image's platform.
    for media_type in [CONFIG_TYPE, &CONFIG_TYPE.to_uppercase()] {
        let tag = json!({"name": "c", "digest": d('2'), "media_type": media_type,
            "images": [image(json!(d('2')), "linux", "amd64", None)]});
        let (obs, _) = observe(&tag);
        let obs = obs.unwrap();
        assert_eq!(obs.facts.len(), 1, "{media_type}");
        assert_eq!(obs.facts[0].kind, ObjectKind::Config);
        assert_eq!(platforms(&obs), [Some("linux/amd64".to_owned())]);
    }

    // Should its one image entry name another digest (the manifest), both are kept, and the
    // manifest is not listed under the config as if it were an index.
    let tag = json!({"name": "c", "digest": d('2'), "media_type": CONFIG_TYPE,
        "images": [image(json!(d('3')), "linux", "amd64", None)]});
    let (obs, _) = observe(&tag);
    let obs = obs.unwrap();
    let kinds: Vec<_> = obs.facts.iter().map(|f| (f.kind, f.index)).collect();
    assert_eq!(
        kinds,
        [(ObjectKind::Config, None), (ObjectKind::Manifest, None)]
    );
}

#[test]
fn single_platform_tags_are_one_manifest() {
    for media_type in [Some(DOCKER_MANIFEST_TYPE), Some(OCI_MANIFEST_TYPE), None] {
        let mut tag = json!({"name": "s", "digest": d('4'),
            "images": [image(json!(d('4')), "linux", "arm64", Some("v8"))]});
        if let Some(m) = media_type {
            tag["media_type"] = json!(m);
        }
        let (obs, skips) = observe(&tag);
        let obs = obs.unwrap();
        assert_eq!(obs.digest, Some(digest(&d('4'))));
        assert_eq!(
            obs.facts.len(),
            1,
            "{media_type:?}: the tag digest is images[0].digest"
        );
        assert_eq!(obs.facts[0].kind, ObjectKind::Manifest);
        assert_eq!(obs.facts[0].index, None);
        assert_eq!(platforms(&obs), [Some("linux/arm64/v8".to_owned())]);
        assert_eq!(skips, Skips::default());
    }
}

#[test]
fn attestations_are_left_out_and_only_unknown_unknown_is_one() {
    let tag = json!({"name": "i", "digest": d('1'), "media_type": INDEX_TYPE, "images": [
        image(json!(d('2')), "linux", "amd64", None),
        image(json!(d('3')), "unknown", "unknown", None),
        image(json!(d('4')), "unknown", "unknown", Some("v8")),
        image(Value::Null, "unknown", "unknown", None),
        image(json!("sha256:nothex"), "unknown", "unknown", None),
        // Not an attestation: only one of the two is unknown.
        image(json!(d('5')), "unknown", "amd64", None),
    ]});
    let (obs, skips) = observe(&tag);
    let obs = obs.unwrap();
    assert_eq!(skips.attestations, 4, "whatever their digest looks like");
    assert_eq!(skips.null_digests + skips.invalid_digests, 0);
    let digests: Vec<String> = obs.facts.iter().map(|f| f.digest.to_string()).collect();
    assert_eq!(digests, [d('1'), d('2'), d('5')]);
    assert!(
        obs.facts
            .iter()
            .filter_map(|f| f.platform.as_ref())
            .all(|p| !p.is_attestation())
    );
}

#[test]
fn windows_os_version_is_kept() {
    let tag = json!({"name": "ltsc2022", "digest": d('1'), "media_type": LIST_TYPE, "images": [
        {"digest": d('2'), "os": "windows", "architecture": "amd64", "os_version": "10.0.20348.2849"},
        {"digest": d('3'), "os": "windows", "architecture": "amd64", "os_version": "10.0.17763.6532"},
        {"digest": d('4'), "os": "windows", "architecture": "amd64", "os_version": ""},
        {"digest": d('5'), "os": "windows", "architecture": "amd64", "os_version": 10},
    ]});
    let (obs, _) = observe(&tag);
    let versions: Vec<Option<String>> = obs
        .unwrap()
        .facts
        .iter()
        .map(|f| f.os_version.clone())
        .collect();
    assert_eq!(
        versions,
        [
            None,
            Some("10.0.20348.2849".to_owned()),
            Some("10.0.17763.6532".to_owned()),
            None,
            None
        ]
    );

    // A single-platform Windows tag: the tag's own fact carries it.
    let tag = json!({"name": "w", "digest": d('6'), "media_type": DOCKER_MANIFEST_TYPE, "images": [
        {"digest": d('6'), "os": "windows", "architecture": "amd64", "os_version": "10.0.20348.2849"}]});
    let (obs, _) = observe(&tag);
    let obs = obs.unwrap();
    assert_eq!(obs.facts[0].os_version.as_deref(), Some("10.0.20348.2849"));
    assert_eq!(platforms(&obs), [Some("windows/amd64".to_owned())]);
}

#[test]
fn invalid_digests_are_skipped_and_counted() {
    let long = format!("sha256:{}", "a".repeat(1_000_000));
    let bad = [
        "sha256:ABC",
        "sha256:0199853F6D6B20B0424F3C5694A72A62764F01E6A771B1EB48A4197848986C7E",
        "sha512:0199853f6d6b20b0424f3c5694a72a62764f01e6a771b1eb48a4197848986c7e",
        "0199853f6d6b20b0424f3c5694a72a62764f01e6a771b1eb48a4197848986c7e",
        "sha256:0199853f6d6b20b0424f3c5694a72a62764f01e6a771b1eb48a4197848986c7é",
        "sha256:0199853f6d6b20b0424f3c5694a72a62764f01e6a771b1eb48a4197848986c\u{0}7",
        " sha256:0199853f6d6b20b0424f3c5694a72a62764f01e6a771b1eb48a4197848986c7e",
        "",
        &long,
    ];
    for text in bad {
        let tag = json!({"name": "t", "digest": text, "media_type": LIST_TYPE,
            "images": [image(json!(text), "linux", "amd64", None),
                       image(json!(d('7')), "linux", "arm64", Some("v8"))]});
        let (obs, skips) = observe(&tag);
        let obs = obs.unwrap();
        assert_eq!(skips.invalid_digests, 2, "{:.80}", text);
        assert_eq!(obs.digest, None);
        assert_eq!(obs.facts.len(), 1);
        assert_eq!(obs.facts[0].digest, digest(&d('7')));
    }
}

#[test]
fn hostile_tag_names_are_skipped_and_counted() {
    let bad = [
        "a/b",
        "../../etc/passwd",
        "..",
        ".hidden",
        "-rm",
        "a b",
        " latest",
        "latest\n",
        "x\u{0}y",
        "\u{1b}[2J",
        "naïve",
        "",
        &"a".repeat(129),
    ];
    let mut skips = Skips::default();
    for name in bad {
        let tag = json!({"name": name, "digest": d('1'), "images": []});
        assert!(
            observe_tag(&entry(&tag), "library/x", &mut skips).is_none(),
            "{name:?} accepted"
        );
    }
    for name in [json!(null), json!(5), json!(["latest"])] {
        let tag = json!({"name": name, "digest": d('1')});
        assert!(observe_tag(&entry(&tag), "library/x", &mut skips).is_none());
    }
    assert_eq!(
        skips,
        Skips {
            invalid_tags: bad.len() as u64 + 3,
            ..Skips::default()
        }
    );
    for name in ["_x", "A.b-C_1", &"a".repeat(128), "3.12.7-slim-bookworm"] {
        let (obs, _) = observe(&json!({"name": name, "digest": d('1')}));
        assert_eq!(obs.unwrap().tag, name);
    }
}

#[test]
fn invalid_platforms_os_versions_and_push_times_are_left_out_and_counted() {
    let long = "a".repeat(33);
    let tag = json!({"name": "t", "digest": d('1'), "media_type": INDEX_TYPE,
    "tag_last_pushed": "2026-07-31T10:05:00Z\u{1b}[2J",
    "last_updated": "2026-07-31T10:00:00.5+02:00",
    "images": [
        image(json!(d('2')), "linux\u{1b}[2J", "amd64", None),
        image(json!(d('3')), "linux", &long, None),
        image(json!(d('4')), "linux", "arm", Some("v7/x")),
        {"digest": d('5'), "os": "windows", "architecture": "amd64",
         "os_version": "10.0.20348\u{7}"},
        {"digest": d('6'), "os": "windows", "architecture": "amd64",
         "os_version": "10.0.20348.2849"},
    ]});
    let (obs, skips) = observe(&tag);
    let obs = obs.unwrap();
    assert_eq!(
        skips,
        Skips {
            invalid_platforms: 3,
            invalid_os_versions: 1,
            invalid_push_times: 1,
            ..Skips::default()
        }
    );
    // Every digest is kept, without what was wrong with it.
    assert_eq!(obs.facts.len(), 6);
    assert_eq!(
        platforms(&obs),
        [
            None,
            None,
            None,
            None,
            Some("windows/amd64".to_owned()),
            Some("windows/amd64".to_owned())
        ]
    );
    assert_eq!(obs.facts[4].os_version, None);
    assert_eq!(obs.facts[5].os_version.as_deref(), Some("10.0.20348.2849"));
    // The refused `tag_last_pushed` gives way to a valid `last_updated`.
    assert_eq!(obs.pushed.as_deref(), Some("2026-07-31T10:00:00.5+02:00"));

    let (obs, skips) = observe(&json!({"name": "u", "digest": d('1'),
        "tag_last_pushed": "yesterday", "last_updated": "2026-07-31"}));
    assert_eq!(obs.unwrap().pushed, None);
    assert_eq!(skips.invalid_push_times, 2);
}

// ---------------------------------------------------------------------------------------------
// Page-level rules

#[test]
fn counts_are_numbers_or_absent_and_never_trusted_for_sizes() {
    let cases = [
        ("1000000000000000000", Some(1_000_000_000_000_000_000)),
        ("18446744073709551615", Some(u64::MAX)),
        ("18446744073709551616", None),
        ("1e30", None),
        ("-1", None),
        ("1.5", None),
        ("\"10\"", None),
        ("null", None),
        ("[1]", None),
    ];
    for (count, want) in cases {
        let body = format!(r#"{{"count":{count},"next":null,"results":[]}}"#);
        let page: Page<TagEntry> = parse_page(body.as_bytes()).unwrap();
        assert_eq!(page.count, want, "count {count}");
        assert!(page.results.is_empty());
    }
}

#[test]
fn arrays_posing_as_objects_are_broken_pages() {
    // serde's derived structs also accept a JSON array (fields by position); Hub never sends
    // one, so such a page is not what Hub sends.
    for body in [r#"[7,null,[]]"#, r#"{"results":[["latest","sha256:x"]]}"#] {
        assert!(parse_page::<TagEntry>(body.as_bytes()).is_err(), "{body}");
    }
    // An array posing as an image is never read by position either: that one tag is malformed
    // (skipped and counted by `observe_tag`), its page stands.
    let body = r#"{"results":[{"name":"a","images":[["sha256:x","linux"]]}]}"#;
    let page = parse_page::<TagEntry>(body.as_bytes()).unwrap();
    assert!(page.results[0].malformed && page.results[0].images.is_empty());
    assert!(parse_page::<RepoEntry>(br#"{"results":[["ubuntu","library"]]}"#).is_err());
    assert!(parse_page::<RepoEntry>(br#"{"results":[{"name":"ubuntu"}]}"#).is_ok());
}

#[test]
fn deep_nesting_is_refused_or_skipped_without_recursion() {
    let deep = || format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
    // As the body, the results or a result: not an object where one belongs, a clear error
    // (before the fix in page.rs, `[[[…]]]` as a result passed for one empty tag object).
    for body in [
        deep(),
        format!(r#"{{"results":{}}}"#, deep()),
        format!(r#"{{"results":[{}]}}"#, deep()),
    ] {
        let err = parse_page::<TagEntry>(body.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("expected a JSON object"), "{err}");
    }
    // As an image: that tag is malformed, its page stands.
    let body = format!(r#"{{"results":[{{"name":"a","images":[{}]}}]}}"#, deep());
    let page = parse_page::<TagEntry>(body.as_bytes()).unwrap();
    assert!(page.results[0].malformed);
    // In a key nobody reads, or a field read leniently (a string field holding an array): the
    // value is skipped without recursion, so the page stands.
    for body in [
        format!(r#"{{"extra":{},"results":[]}}"#, deep()),
        format!(r#"{{"results":[{{"name":{}}}]}}"#, deep()),
        format!(
            r#"{{"results":[{{"name":"a","images":[{{"os":{}}}]}}]}}"#,
            deep()
        ),
    ] {
        assert!(parse_page::<TagEntry>(body.as_bytes()).is_ok());
    }
}

#[test]
fn invalid_utf8_in_a_read_string_breaks_the_page() {
    let mut body = br#"{"results":[{"name":"la"#.to_vec();
    body.extend_from_slice(b"\xff\xfe");
    body.extend_from_slice(br#"test","digest":null}]}"#);
    let err = parse_page::<TagEntry>(&body).unwrap_err();
    assert!(err.to_string().contains("not a valid Hub page"), "{err}");
    // Bytes outside strings are not JSON either.
    assert!(parse_page::<TagEntry>(b"{\"results\":[]}\xff").is_err());
}

#[test]
fn a_tag_with_a_huge_image_list_is_observed_in_linear_time() {
    // A 16 MiB page (the body cap) fits about 200,000 minimal image entries. Deduplicating them
    // by scanning the facts found so far took quadratic time: minutes of CPU per such page.
    let n = 200_000;
    let images: Vec<Value> = (0..n).map(|i| json!({"digest": numbered(i)})).collect();
    let tag = json!({"name": "many", "digest": d('f'), "media_type": INDEX_TYPE, "images": images});
    let parsed = entry(&tag);
    let started = Instant::now();
    let mut skips = Skips::default();
    let obs = observe_tag(&parsed, "library/x", &mut skips).unwrap();
    let took = started.elapsed();
    assert_eq!(obs.facts.len(), n + 1);
    // Linear work takes well under a second even unoptimised; quadratic took minutes.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    eprintln!("observed {n} images in {took:?}");
}

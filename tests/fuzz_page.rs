//! Fuzzing of the Hub page parser and the tag rules (`digestmap::hub::parse_page`, `observe_tag`)
//! with proptest, bounded for CI: a fixed number of cases per property, no failure files.
//!
//! Three kinds of input: arbitrary bytes; real pages with random byte damage; and structured
//! JSON shaped like Hub pages, with random types in every field, random nesting, strings full of
//! control characters, and digests that are valid, malformed or shared between entries. For every
//! input the parser and the rules must not panic. For structured input an independent oracle,
//! written from HUB-FACTS.md rather than from the code, says whether the page must parse and
//! which facts and skips each tag object must give:
//! - every fact's digest re-parses to itself, and came from the tag object;
//! - no fact for an attestation (`unknown/unknown`) entry;
//! - skips and facts account for every image entry.
//!
//! A failure prints the smallest input proptest found; `PROPTEST_RNG_SEED` replays a run.

use std::collections::{BTreeMap, BTreeSet};

use digestmap::hub::{RepoEntry, Skips, TagEntry, TagObservation, observe_tag, parse_page};
use digestmap::model::{Digest, ObjectKind};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

/// Cases per property: enough to reach every branch of the rules many times over, few enough
/// that the whole file runs in a few seconds unoptimised.
const CASES: u32 = 2000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        // CI must not leave `proptest-regressions/` files behind; failures print their input.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle: Hub's rules restated independently of src/

/// `sha256:` and 64 lowercase hex: the only digests Hub gives.
fn valid_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Docker's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A platform part: empty (absent), or at most 32 of ASCII letters, digits, `.`, `_`, `-`.
fn valid_platform_part(part: &str) -> bool {
    part.len() <= 32
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
}

/// An `os_version`: at most 64 of ASCII letters, digits, `.`, `_`, `-`, `+`.
fn valid_os_version(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_+".contains(c))
}

/// A push time: RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`), restated with a
/// hand-rolled matcher of its own: split at the fixed separators, then check each number's range.
fn valid_push_time(text: &str) -> bool {
    let digits = |s: &str, n: usize, max: u32, min: u32| {
        s.len() == n
            && s.chars().all(|c| c.is_ascii_digit())
            && s.parse::<u32>().is_ok_and(|v| (min..=max).contains(&v))
    };
    if text.len() > 35 || !text.is_ascii() || text.len() < 20 {
        return false;
    }
    let (date, rest) = text.split_at(10);
    let parts: Vec<&str> = date.split('-').collect();
    let date_ok = parts.len() == 3
        && digits(parts[0], 4, 9999, 0)
        && digits(parts[1], 2, 12, 1)
        && digits(parts[2], 2, 31, 1);
    let Some(rest) = rest.strip_prefix(['T', 't']) else {
        return false;
    };
    let (clock, zone) = rest.split_at(8);
    let hms: Vec<&str> = clock.split(':').collect();
    let clock_ok = hms.len() == 3
        && digits(hms[0], 2, 23, 0)
        && digits(hms[1], 2, 59, 0)
        && digits(hms[2], 2, 60, 0);
    let zone = match zone.strip_prefix('.') {
        Some(fraction) => {
            let n = fraction.chars().take_while(char::is_ascii_digit).count();
            if !(1..=9).contains(&n) {
                return false;
            }
            &fraction[n..]
        }
        None => zone,
    };
    let zone_ok = zone == "Z"
        || zone == "z"
        || (zone.len() == 6
            && zone.starts_with(['+', '-'])
            && digits(&zone[1..3], 2, 23, 0)
            && &zone[3..4] == ":"
            && digits(&zone[4..6], 2, 59, 0));
    date_ok && clock_ok && zone_ok
}

/// Whether a body of this shape is a page: an object whose `results` is a list of objects.
/// Every field is read leniently; a tag whose `images` is malformed ([`images_malformed`]) is
/// kept in the page, marked.
fn is_tag_page(page: &Value) -> bool {
    let Some(results) = page.get("results").and_then(Value::as_array) else {
        return false;
    };
    results.iter().all(Value::is_object)
}

/// Whether a tag object's `images` is neither absent, null nor a list of objects: the tag is
/// then skipped (counted as malformed), not its page.
fn images_malformed(tag: &Value) -> bool {
    match tag.get("images") {
        None | Some(Value::Null) => false,
        Some(Value::Array(images)) => !images.iter().all(Value::is_object),
        Some(_) => true,
    }
}

fn is_repo_page(page: &Value) -> bool {
    page.get("results")
        .and_then(Value::as_array)
        .is_some_and(|results| results.iter().all(Value::is_object))
}

/// A string field as the lenient parser must read it: strings only.
fn text(object: &Value, key: &str) -> Option<String> {
    object.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Checks what the parser read from one tag object of a structured page against the JSON.
fn check_lenient_fields(json: &Value, entry: &TagEntry) {
    assert_eq!(entry.name, text(json, "name"));
    assert_eq!(entry.digest, text(json, "digest"));
    assert_eq!(entry.media_type, text(json, "media_type"));
    assert_eq!(entry.tag_last_pushed, text(json, "tag_last_pushed"));
    assert_eq!(entry.last_updated, text(json, "last_updated"));
    assert_eq!(entry.malformed, images_malformed(json));
    let images = json
        .get("images")
        .and_then(Value::as_array)
        .filter(|_| !entry.malformed)
        .map_or(&[][..], Vec::as_slice);
    assert_eq!(entry.images.len(), images.len());
    for (image, json) in entry.images.iter().zip(images) {
        assert_eq!(image.digest, text(json, "digest"));
        assert_eq!(image.os, text(json, "os"));
        assert_eq!(image.architecture, text(json, "architecture"));
        assert_eq!(image.variant, text(json, "variant"));
        assert_eq!(image.os_version, text(json, "os_version"));
    }
}

/// Observes one parsed tag object and checks the result against the rules.
fn check_tag(entry: &TagEntry) {
    let mut skips = Skips::default();
    let obs = observe_tag(entry, "library/fuzz", &mut skips);
    let name_ok = entry.name.as_deref().is_some_and(valid_tag);
    let Some(obs) = obs else {
        // The name is checked first; a well-named tag is refused only for malformed `images`.
        let want = if name_ok {
            assert!(entry.malformed, "a tag named {:?} was refused", entry.name);
            Skips {
                malformed_tags: 1,
                ..Skips::default()
            }
        } else {
            Skips {
                invalid_tags: 1,
                ..Skips::default()
            }
        };
        assert_eq!(skips, want);
        return;
    };
    assert!(
        !entry.malformed,
        "a malformed tag {:?} was kept",
        entry.name
    );
    assert!(name_ok, "a tag named {:?} was accepted", entry.name);
    assert_eq!(Some(&obs.tag), entry.name.as_ref());
    // The push times: each of `tag_last_pushed` and `last_updated` that is present but not
    // RFC 3339 counts and is left out; each valid one stands in for the other when that one is
    // missing or refused.
    let mut want = Skips::default();
    let mut valid = |time: &Option<String>| match time {
        Some(t) if valid_push_time(t) => Some(t.clone()),
        Some(_) => {
            want.invalid_push_times += 1;
            None
        }
        None => None,
    };
    let (pushed, updated) = (valid(&entry.tag_last_pushed), valid(&entry.last_updated));
    assert_eq!(obs.pushed, pushed.clone().or_else(|| updated.clone()));
    assert_eq!(obs.updated, updated.or(pushed));

    // Every image entry is an attestation, a null digest, an invalid digest, or a platform
    // manifest (whose first entry gives its platform, when valid); nothing else. An invalid
    // platform or os_version is counted and left out, the manifest kept.
    let mut manifests: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for image in &entry.images {
        let os = image.os.as_deref().unwrap_or("");
        let arch = image.architecture.as_deref().unwrap_or("");
        if os == "unknown" && arch == "unknown" {
            want.attestations += 1;
            continue;
        }
        match image.digest.as_deref() {
            None => want.null_digests += 1,
            Some(d) if !valid_digest(d) => want.invalid_digests += 1,
            Some(d) => {
                let variant = image.variant.as_deref().unwrap_or("");
                let platform_ok = [os, arch, variant].into_iter().all(valid_platform_part);
                if !platform_ok {
                    want.invalid_platforms += 1;
                }
                let version = image.os_version.clone().filter(|v| !v.trim().is_empty());
                let version_ok = version.as_deref().is_none_or(valid_os_version);
                if !version_ok {
                    want.invalid_os_versions += 1;
                }
                if !manifests.contains_key(d) {
                    let mut platform = format!("{os}/{arch}");
                    if !variant.is_empty() {
                        platform = format!("{platform}/{variant}");
                    }
                    let platform = if !platform_ok || (os.is_empty() && arch.is_empty()) {
                        String::new()
                    } else {
                        platform
                    };
                    let version = version.filter(|_| version_ok);
                    manifests.insert(d.to_owned(), (platform, version));
                    order.push(d.to_owned());
                }
            }
        }
    }
    let top = match entry.digest.as_deref() {
        Some(d) if valid_digest(d) => Some(d.to_owned()),
        Some(_) => {
            want.invalid_digests += 1;
            None
        }
        None => None,
    };
    assert_eq!(skips, want, "skips of {entry:?}");

    // The facts: the tag's own digest first, then each platform manifest once, in order.
    let got: Vec<String> = obs.facts.iter().map(|f| f.digest.to_string()).collect();

    // Accounting, from the output alone: each image entry was either counted as skipped or its
    // digest is a fact (several entries may share one).
    let top_skipped = u64::from(entry.digest.is_some() && top.is_none());
    let as_facts = entry
        .images
        .iter()
        .filter(|i| {
            !(i.os.as_deref() == Some("unknown") && i.architecture.as_deref() == Some("unknown"))
        })
        .filter(|i| i.digest.as_ref().is_some_and(|d| got.contains(d)))
        .count() as u64;
    // Whatever was left out of a kept manifest or tag is never stored: every kept platform and
    // os_version obeys its rule.
    for fact in &obs.facts {
        if let Some(p) = &fact.platform {
            let variant = p.variant.as_deref().unwrap_or("");
            assert!(
                [&p.os[..], &p.architecture[..], variant]
                    .into_iter()
                    .all(valid_platform_part),
                "{fact:?}"
            );
        }
        assert!(
            fact.os_version.as_deref().is_none_or(valid_os_version),
            "{fact:?}"
        );
    }
    assert_eq!(
        skips.attestations + skips.null_digests + skips.invalid_digests - top_skipped + as_facts,
        entry.images.len() as u64,
        "image entries unaccounted for in {entry:?}"
    );
    let mut expected: Vec<String> = top.iter().cloned().collect();
    expected.extend(order.iter().filter(|d| Some(*d) != top.as_ref()).cloned());
    assert_eq!(got, expected, "facts of {entry:?}");
    assert_eq!(obs.digest.map(|d| d.to_string()), top);
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "a digest twice");

    for (i, fact) in obs.facts.iter().enumerate() {
        assert_eq!(Digest::parse(&fact.digest.to_string()), Ok(fact.digest));
        assert!(
            fact.platform.as_ref().is_none_or(|p| !p.is_attestation()),
            "a fact for an attestation: {fact:?}"
        );
        if i == 0 && top.is_some() {
            assert_eq!(fact.index, None);
            if fact.kind == ObjectKind::Index {
                assert_eq!(fact.platform, None);
            }
            continue;
        }
        let text = fact.digest.to_string();
        assert_eq!(fact.kind, ObjectKind::Manifest);
        let (platform, version) = &manifests[&text];
        assert_eq!(
            fact.platform
                .as_ref()
                .map_or(String::new(), ToString::to_string),
            *platform
        );
        assert_eq!(&fact.os_version, version);
        let listed_under = obs
            .facts
            .first()
            .filter(|f| f.kind == ObjectKind::Index && top.is_some())
            .map(|f| f.digest);
        assert_eq!(fact.index, listed_under);
    }
}

/// Parses `body` both ways and checks whatever parses; the result says whether tags parsed.
fn parse_and_check(body: &[u8]) -> bool {
    let tags = parse_page::<TagEntry>(body);
    if let Ok(page) = &tags {
        for entry in &page.results {
            check_tag(entry);
        }
    }
    let _ = parse_page::<RepoEntry>(body);
    tags.is_ok()
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// Five digests shared by all entries of a case, so aliases, single-platform tags (tag digest =
/// image digest) and duplicate image entries happen often.
const SHARED: [&str; 5] = [
    "sha256:3b06811b2afd352be909dd088a004166d665dc76d38b13eada33522a9d915c6f",
    "sha256:0199853f6d6b20b0424f3c5694a72a62764f01e6a771b1eb48a4197848986c7e",
    "sha256:fd46207b81d937050e88113e1f7798e8bfaf0a2bd4b44993787aee1f74bc287e",
    "sha256:cc310f0f0ac7cebeef5ea6ea12e1262e291e4fd7eec74d407f5de7711062cd6e",
    "sha256:a8cdd2158a73d7e5c02aa351fe269f48f57cf710a241db86e9ede371fc150149",
];

/// Strings a hostile page may hold: control characters, separators, quotes, non-ASCII.
fn nasty_string() -> impl Strategy<Value = String> {
    let chars = select(vec![
        'a', 'Z', '0', '9', '.', '-', '_', '/', ' ', ':', '"', '\\', '\0', '\n', '\r', '\t',
        '\u{1b}', '\u{7f}', '\u{85}', 'é', '\u{202e}', '\u{fffd}', '😀',
    ]);
    prop_oneof![
        prop::collection::vec(chars, 0..24).prop_map(|c| c.into_iter().collect()),
        prop::collection::vec(any::<char>(), 0..12).prop_map(|c| c.into_iter().collect()),
        any::<String>(),
    ]
}

/// Any JSON scalar.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        nasty_string().prop_map(Value::from),
    ]
}

/// Any JSON value: small random trees. (Deep nesting is added once per case by [`bury`]:
/// each level is rebuilt whenever proptest reads a value, so deep values everywhere cost
/// seconds.)
fn any_json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(nasty_string(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Where to bury one deeply nested value in a page, and how deep (110 to 160 levels, around
/// serde_json's limit of 128; a million levels are in tests/quirks.rs and tests/hostile.rs).
/// One case in ten gets one: a buried value costs about as much as the rest of the case
/// twenty times over.
#[derive(Clone, Debug)]
struct Burial {
    depth: usize,
    arrays: bool,
    place: u8,
    tag: prop::sample::Index,
    image: prop::sample::Index,
}

fn burial() -> impl Strategy<Value = Option<Burial>> {
    let b = (
        110usize..160,
        any::<bool>(),
        0u8..6,
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(depth, arrays, place, tag, image)| Burial {
            depth,
            arrays,
            place,
            tag,
            image,
        });
    prop::option::weighted(0.1, b)
}

/// Puts the burial's value into `page`: as an unknown key of the envelope, as the results, as a
/// tag's name, as a tag's images, as an image, or as an image's `os`.
fn bury(mut page: Value, burial: Option<Burial>) -> Value {
    let Some(b) = burial else { return page };
    let mut deep = Value::Null;
    for _ in 0..b.depth {
        deep = if b.arrays {
            json!([deep])
        } else {
            json!({ "k": deep })
        };
    }
    let pick = |list: &mut Vec<Value>, index: &prop::sample::Index| -> Option<usize> {
        (!list.is_empty()).then(|| index.index(list.len()))
    };
    let Some(envelope) = page.as_object_mut() else {
        return page;
    };
    match b.place {
        0 => {
            envelope.insert("extra".to_owned(), deep);
        }
        1 => {
            envelope.insert("results".to_owned(), deep);
        }
        place => {
            let Some(Value::Array(tags)) = envelope.get_mut("results") else {
                return page;
            };
            let Some(t) = pick(tags, &b.tag) else {
                return page;
            };
            let Some(tag) = tags[t].as_object_mut() else {
                return page;
            };
            if place == 2 {
                tag.insert("name".to_owned(), deep);
            } else if place == 3 {
                tag.insert("images".to_owned(), deep);
            } else if let Some(Value::Array(images)) = tag.get_mut("images")
                && let Some(i) = pick(images, &b.image)
            {
                match images[i].as_object_mut() {
                    Some(image) if place == 4 => {
                        image.insert("os".to_owned(), deep);
                    }
                    _ => images[i] = deep,
                }
            }
        }
    }
    page
}

/// A digest field: mostly shared valid digests, then fresh ones, damaged ones and junk.
fn digest_value() -> impl Strategy<Value = Value> {
    let fresh = prop::array::uniform32(any::<u8>()).prop_map(|b| {
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!("sha256:{hex}")
    });
    let damaged = (select(SHARED.to_vec()), 0usize..71, nasty_string(), 0u8..5).prop_map(
        |(d, at, junk, how)| {
            let mut d = d.to_owned();
            match how {
                0 => d.to_uppercase(),
                1 => d[..at].to_owned(),
                2 => d.replacen("sha256", "sha512", 1),
                3 => {
                    d.insert_str(at, &junk);
                    d
                }
                _ => format!("{d}0"),
            }
        },
    );
    prop_oneof![
        6 => select(SHARED.to_vec()).prop_map(Value::from),
        2 => fresh.prop_map(Value::from),
        2 => damaged.prop_map(Value::from),
        1 => Just(Value::Null),
        1 => any_json(),
    ]
}

/// A field that is mostly one of `usual`, sometimes any string, sometimes any JSON at all.
fn field(usual: &[&'static str]) -> impl Strategy<Value = Value> + use<> {
    prop_oneof![
        6 => select(usual.to_vec()).prop_map(Value::from),
        1 => nasty_string().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => any_json(),
    ]
}

/// An object with each of `fields` present or not, plus a few unknown keys of any JSON.
fn object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> impl Strategy<Value = Value> {
    let present = fields
        .into_iter()
        .map(|(k, s)| prop::option::weighted(0.85, s).prop_map(move |v| (k, v)))
        .collect::<Vec<_>>();
    let extra = prop::option::weighted(0.2, (nasty_string(), any_json()));
    (present, extra).prop_map(|(fields, extra)| {
        let mut map = Map::new();
        if let Some((k, v)) = extra {
            map.insert(k, v);
        }
        for (k, v) in fields {
            if let Some(v) = v {
                map.insert(k.to_owned(), v);
            }
        }
        Value::Object(map)
    })
}

fn image() -> impl Strategy<Value = Value> {
    let entry = object(vec![
        ("digest", digest_value().boxed()),
        (
            "os",
            field(&["linux", "windows", "unknown", "", "linux\u{1b}[2J"]).boxed(),
        ),
        (
            "architecture",
            field(&["amd64", "arm64", "arm", "unknown", "s390x", "", "amd 64"]).boxed(),
        ),
        ("variant", field(&["v7", "v8", "", "v8/x"]).boxed()),
        (
            "os_version",
            field(&["10.0.20348.2849", "", " ", "10.0\u{7}", "6.3+b_1-x"]).boxed(),
        ),
        ("last_pushed", field(&["2026-07-31T10:00:00Z"]).boxed()),
        ("size", field(&["0", "207268936"]).boxed()),
    ]);
    // Now and then not an object at all: the page must then be refused.
    prop_oneof![30 => entry, 1 => any_json()]
}

fn tag() -> impl Strategy<Value = Value> {
    let images = prop_oneof![
        20 => prop::collection::vec(image(), 0..7).prop_map(Value::Array),
        1 => Just(Value::Null),
        1 => any_json(),
    ];
    let entry = object(vec![
        (
            "name",
            field(&["latest", "22.04", "3.12.7-slim", "_x", "a/b", "..", "a b"]).boxed(),
        ),
        ("digest", digest_value().boxed()),
        (
            "media_type",
            field(&[
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                "application/vnd.docker.container.image.v1+json",
                "APPLICATION/VND.DOCKER.CONTAINER.IMAGE.V1+JSON",
            ])
            .boxed(),
        ),
        ("images", images.boxed()),
        (
            "tag_last_pushed",
            field(&[
                "2026-07-31T10:05:00Z",
                "2026-07-31T10:05:00.123456789+02:00",
                "2026-07-31 10:05:00Z",
                "2026-13-31T10:05:00Z",
                "yesterday\u{1b}[2J",
            ])
            .boxed(),
        ),
        (
            "last_updated",
            field(&["2020-06-09T20:45:50.400981Z", "2020-06-09T20:45:50.Z"]).boxed(),
        ),
        ("full_size", field(&["0", "29000000"]).boxed()),
    ]);
    prop_oneof![30 => entry, 1 => any_json()]
}

fn page() -> impl Strategy<Value = Value> {
    let results = prop_oneof![
        20 => prop::collection::vec(tag(), 0..5).prop_map(Value::Array),
        1 => any_json(),
    ];
    let count = prop_oneof![
        Just(json!(1_000_000_000_000_000_000u64)),
        Just(json!(-1)),
        Just(json!(1e30)),
        any_json(),
    ];
    let next = prop_oneof![
        Just(json!(
            "https://hub.docker.com/v2/namespaces/library/repositories/x/tags?page=999999999&page_size=100"
        )),
        Just(json!("https://evil.example/?page=2")),
        Just(Value::Null),
        any_json(),
    ];
    let envelope = object(vec![
        ("count", count.boxed()),
        ("next", next.boxed()),
        ("previous", any_json().boxed()),
        ("results", results.boxed()),
    ]);
    let page = prop_oneof![30 => envelope, 1 => any_json()];
    (page, burial()).prop_map(|(page, burial)| bury(page, burial))
}

/// A realistic page to damage: ubuntu:22.04's index (from the sample), an old tag without a top
/// digest (the real sample), and a Windows tag.
fn real_page() -> Vec<u8> {
    let sample = include_str!("data/ubuntu-22.04.txt");
    let mut images = Vec::new();
    let mut index = String::new();
    for line in sample.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols[0] == "index" {
            index = cols[1].to_owned();
            continue;
        }
        let parts: Vec<&str> = cols[0].split('/').collect();
        images.push(
            json!({"digest": cols[1], "os": parts[0], "architecture": parts[1],
                           "variant": parts.get(2), "os_version": null}),
        );
    }
    let ubuntu = json!({"name": "22.04", "digest": index, "images": images,
                        "media_type": "application/vnd.oci.image.index.v1+json",
                        "tag_last_pushed": "2026-07-31T10:05:00Z"});
    let old: Value =
        serde_json::from_str(include_str!("data/hub-tag-without-digest.json")).unwrap();
    let windows = json!({"name": "ltsc2022", "digest": SHARED[3],
        "media_type": "application/vnd.docker.distribution.manifest.v2+json",
        "images": [{"digest": SHARED[3], "os": "windows", "architecture": "amd64",
                    "os_version": "10.0.20348.2849"}]});
    json!({"count": 3, "next": null, "previous": null, "results": [ubuntu, old, windows]})
        .to_string()
        .into_bytes()
}

/// One byte-level damage: overwrite, insert, delete or truncate at a position.
fn damage() -> impl Strategy<Value = (usize, u8, u8)> {
    (any::<usize>(), any::<u8>(), 0u8..4)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_and_check(&body);
    }

    #[test]
    fn damaged_real_pages_never_panic_and_what_parses_obeys_the_rules(
        damages in prop::collection::vec(damage(), 1..6)
    ) {
        let mut body = real_page();
        for (at, byte, how) in damages {
            let at = at % (body.len() + 1);
            match how {
                0 if at < body.len() => body[at] = byte,
                1 => body.insert(at, byte),
                2 if at < body.len() => { body.remove(at); }
                _ => body.truncate(at),
            }
        }
        parse_and_check(&body);
    }

    #[test]
    fn hub_shaped_pages_parse_exactly_when_well_formed_and_obey_the_rules(page in page()) {
        let body = serde_json::to_vec(&page).unwrap();
        let parsed = parse_page::<TagEntry>(&body);
        prop_assert_eq!(parsed.is_ok(), is_tag_page(&page), "{}", page);
        if let Ok(parsed) = parsed {
            let results = page["results"].as_array().unwrap();
            prop_assert_eq!(parsed.results.len(), results.len());
            prop_assert_eq!(parsed.count, page.get("count").and_then(Value::as_u64));
            prop_assert_eq!(parsed.next, text(&page, "next"));
            for (entry, json) in parsed.results.iter().zip(results) {
                check_lenient_fields(json, entry);
                check_tag(entry);
            }
        }
        let repos = parse_page::<RepoEntry>(&body);
        prop_assert_eq!(repos.is_ok(), is_repo_page(&page));
        if let Ok(repos) = repos {
            for (entry, json) in repos.results.iter().zip(page["results"].as_array().unwrap()) {
                prop_assert_eq!(&entry.name, &text(json, "name"));
                prop_assert_eq!(&entry.namespace, &text(json, "namespace"));
            }
        }
    }

    #[test]
    fn single_tag_objects_obey_the_rules(tag in tag(), burial in burial()) {
        // The tag rules alone, on many more tag objects than pages give.
        let page = bury(json!({"results": [tag]}), burial.filter(|b| b.place >= 2));
        let parsed = parse_page::<TagEntry>(page.to_string().as_bytes());
        prop_assert_eq!(parsed.is_ok(), is_tag_page(&page));
        if let Ok(parsed) = parsed {
            check_lenient_fields(&page["results"][0], &parsed.results[0]);
            check_tag(&parsed.results[0]);
        }
    }
}

/// The oracle itself must agree with the samples, or the properties above prove nothing.
#[test]
fn the_oracle_accepts_the_real_page() {
    assert!(parse_and_check(&real_page()));
    let page: Value = serde_json::from_slice(&real_page()).unwrap();
    assert!(is_tag_page(&page));
    let parsed = parse_page::<TagEntry>(&real_page()).unwrap();
    let mut skips = Skips::default();
    let facts: usize = parsed
        .results
        .iter()
        .filter_map(|e| observe_tag(e, "library/x", &mut skips))
        .map(|o: TagObservation| o.facts.len())
        .sum();
    assert_eq!(facts, 7 + 4 + 1);
    assert_eq!(skips.attestations, 6);
}

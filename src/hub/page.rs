//! Tolerant serde types of Hub's paginated answers.
//!
//! Real tag data is full of holes (tags pushed before about 2021 have no `digest` key, `images`
//! may be `[]`, an image's `digest` or a timestamp may be null), so every scalar field is optional and a value of the wrong JSON type reads as absent instead of
//! failing the whole page. Only the envelope's structure is required: a body that is not JSON, or
//! whose `results` is not a list of objects, is a broken page. A tag object whose `images` is not
//! a list of objects (nor null) is read with no images and marked [`TagEntry::malformed`], so that
//! one bad tag costs that tag, not its page.
//!
//! "Object" is meant strictly: serde's derived structs also accept a JSON array and read it by
//! field position, so without [`Object`] `[7,null,[]]` passed for a page and `[["latest"]]` for a
//! list of tags. Hub never sends either; such a body is refused like any other broken page.

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// The paging envelope: `{"count", "next", "previous", "results"}`.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Page<T> {
    /// Total number of entries in the listing, as Hub claims it.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub count: Option<u64>,
    /// Absolute URL of the next page; absent on the last page.
    #[serde(default, deserialize_with = "lenient_string")]
    pub next: Option<String>,
    /// The entries of this page.
    #[serde(deserialize_with = "object_list")]
    pub results: Vec<T>,
}

/// One repository of a namespace listing.
#[derive(Debug, Deserialize)]
pub struct RepoEntry {
    /// Repository name without namespace.
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    /// The namespace Hub reports for it.
    #[serde(default, deserialize_with = "lenient_string")]
    pub namespace: Option<String>,
}

/// One tag object.
#[derive(Debug)]
pub struct TagEntry {
    /// Tag name.
    pub name: Option<String>,
    /// The tag's own digest; missing on tags pushed before ~2021.
    pub digest: Option<String>,
    /// Media type of what `digest` names.
    pub media_type: Option<String>,
    /// Per-platform images (and attestation manifests); empty when `images` is malformed.
    pub images: Vec<ImageEntry>,
    /// When the tag was last pushed.
    pub tag_last_pushed: Option<String>,
    /// When the tag was last updated; older tags have only this.
    pub last_updated: Option<String>,
    /// `images` was neither null nor a list of objects: the tag's digests cannot be trusted.
    pub malformed: bool,
}

/// The fields of a tag object as read; [`TagEntry`] is this with `images` unpacked.
#[derive(Deserialize)]
struct RawTagEntry {
    #[serde(default, deserialize_with = "lenient_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    digest: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    media_type: Option<String>,
    #[serde(default)]
    images: Images,
    #[serde(default, deserialize_with = "lenient_string")]
    tag_last_pushed: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    last_updated: Option<String>,
}

impl<'de> Deserialize<'de> for TagEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawTagEntry::deserialize(d)?;
        Ok(Self {
            name: raw.name,
            digest: raw.digest,
            media_type: raw.media_type,
            images: raw.images.list,
            tag_last_pushed: raw.tag_last_pushed,
            last_updated: raw.last_updated,
            malformed: raw.images.malformed,
        })
    }
}

/// A tag's `images`: a list of objects, or empty for null; anything else is read to its end and
/// marked malformed instead of failing the page.
#[derive(Default)]
struct Images {
    list: Vec<ImageEntry>,
    malformed: bool,
}

impl<'de> Deserialize<'de> for Images {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Images;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Images, E> {
                Ok(Images::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Images, E> {
                Ok(Images::default())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Images, A::Error> {
                let mut images = Images::default();
                while let Some(item) = seq.next_element::<MaybeObject<ImageEntry>>()? {
                    match item {
                        MaybeObject::Object(image) => images.list.push(image),
                        MaybeObject::Other => images.malformed = true,
                    }
                }
                if images.malformed {
                    images.list.clear();
                }
                Ok(images)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Images, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Images::malformed())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Images, E> {
                Ok(Images::malformed())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Images, E> {
                Ok(Images::malformed())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Images, E> {
                Ok(Images::malformed())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Images, E> {
                Ok(Images::malformed())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Images, E> {
                Ok(Images::malformed())
            }
        }
        d.deserialize_any(V)
    }
}

impl Images {
    fn malformed() -> Self {
        Self {
            list: Vec::new(),
            malformed: true,
        }
    }
}

/// A JSON object read as `T`, or any other value skipped.
enum MaybeObject<T> {
    Object(T),
    Other,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MaybeObject<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = MaybeObject<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(MaybeObject::Object)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeObject::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeObject::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeObject::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeObject::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeObject::Other)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(MaybeObject::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MaybeObject::Other)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// One entry of a tag's `images[]`.
#[derive(Debug, Deserialize)]
pub struct ImageEntry {
    /// Platform manifest digest; may be null.
    #[serde(default, deserialize_with = "lenient_string")]
    pub digest: Option<String>,
    /// CPU architecture (`unknown` for attestations).
    #[serde(default, deserialize_with = "lenient_string")]
    pub architecture: Option<String>,
    /// Operating system (`unknown` for attestations).
    #[serde(default, deserialize_with = "lenient_string")]
    pub os: Option<String>,
    /// Architecture variant.
    #[serde(default, deserialize_with = "lenient_string")]
    pub variant: Option<String>,
    /// Windows build number, e.g. `10.0.20348.2849`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub os_version: Option<String>,
}

/// A body that is not a page.
#[derive(Debug, thiserror::Error)]
#[error("not a valid Hub page: {0}")]
pub struct PageError(#[from] serde_json::Error);

/// Parses a page body. A hostile body ends here as an error rather than a crash: serde_json
/// rejects invalid UTF-8 in every string it reads and bounds the nesting of what it reads (128);
/// what it skips (unknown keys, values of the wrong type) it walks without recursion, whatever
/// the depth, and the body cap bounds its length.
pub fn parse_page<T: DeserializeOwned>(body: &[u8]) -> Result<Page<T>, PageError> {
    Ok(serde_json::from_slice::<Object<Page<T>>>(body)?.0)
}

/// A `T` read from a JSON object only, never from an array (see the module documentation).
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(PhantomData)).map(Object)
    }
}

/// A list of objects; anything else is an error.
fn object_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let list = Vec::<Object<T>>::deserialize(d)?;
    Ok(list.into_iter().map(|o| o.0).collect())
}

/// A string, or nothing for null and for values of any other type.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// A non-negative integer, or nothing for anything else.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(u64::try_from(v).ok())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_tag_without_digest_parses() {
        let body = include_str!("../../tests/data/hub-tag-without-digest.json");
        let tag: TagEntry = serde_json::from_str(body).unwrap();
        assert_eq!(tag.name.as_deref(), Some("1.44.0-slim"));
        assert!(tag.digest.is_none());
        assert_eq!(tag.images.len(), 4);
        assert!(tag.images.iter().all(|i| i.digest.is_some()));
    }

    #[test]
    fn wrong_types_read_as_absent() {
        let body = br#"{"count":"many","next":7,"results":[{"name":"a","digest":null,"images":null,"media_type":{"x":[1,2]}}]}"#;
        let page: Page<TagEntry> = parse_page(body).unwrap();
        assert_eq!(page.count, None);
        assert_eq!(page.next, None);
        assert_eq!(page.results[0].name.as_deref(), Some("a"));
        assert!(page.results[0].images.is_empty());
        assert!(!page.results[0].malformed);
        assert!(page.results[0].media_type.is_none());
    }

    #[test]
    fn a_malformed_tag_costs_that_tag_not_its_page() {
        let good = r#"{"name":"ok","images":[{"digest":"sha256:x","os":"linux"}]}"#;
        for images in [
            r#""amd64""#,
            "7",
            "true",
            r#"{"digest":"x"}"#,
            r#"[{"os":"linux"},3]"#,
            "[[]]",
        ] {
            let body = format!(
                r#"{{"count":3,"results":[{good},{{"name":"bad","images":{images}}},{good}]}}"#
            );
            let page: Page<TagEntry> =
                parse_page(body.as_bytes()).unwrap_or_else(|e| panic!("images {images}: {e}"));
            assert_eq!(page.results.len(), 3, "images {images}");
            let bad = &page.results[1];
            assert!(bad.malformed && bad.images.is_empty(), "images {images}");
            assert_eq!(bad.name.as_deref(), Some("bad"));
            for ok in [&page.results[0], &page.results[2]] {
                assert!(!ok.malformed);
                assert_eq!(ok.images.len(), 1);
            }
        }
    }

    #[test]
    fn broken_bodies_are_errors() {
        for body in [
            &b"{\"count\":1,\"results\":[{\"name\":"[..],
            b"<html>",
            b"{\"count\":1}",
            b"\xff\xfe{}",
            b"{\"results\":5}",
        ] {
            assert!(parse_page::<TagEntry>(body).is_err());
        }
        // Hostile nesting: the structure our types accept is at most five levels deep, and deeper
        // values are skipped by serde_json without recursion, so no stack overflow either way.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        for field in ["name", "images", "digest"] {
            let body = format!("{{\"results\":[{{\"{field}\":{deep}}}]}}");
            let _ = parse_page::<TagEntry>(body.as_bytes());
        }
        let body = format!("{{\"results\":[{{\"name\":{deep}}}]}}");
        let page = parse_page::<TagEntry>(body.as_bytes()).unwrap();
        assert!(page.results[0].name.is_none());
    }
}

//! Docker Hub tag listings for the Hub double's `override_paths`, describing images pushed into
//! the real registry, so that a crawl of the double points its tags at them.

use serde_json::{Value, json};

use super::registry::image::BuiltImage;

/// A platform entry of a tag's `images` for a built image: os, architecture, variant and
/// `os_version` when it has them, and its digest.
pub fn platform(image: &BuiltImage) -> Value {
    let mut p = json!({"os": image.spec.os, "architecture": image.spec.architecture,
        "digest": image.digest});
    if let Some(v) = &image.spec.variant {
        p["variant"] = json!(v);
    }
    if let Some(v) = &image.spec.os_version {
        p["os_version"] = json!(v);
    }
    p
}

/// A tag object, pushed (and last updated) at `pushed`.
pub fn tag(name: &str, digest: &str, media_type: &str, images: Vec<Value>, pushed: &str) -> Value {
    json!({"name": name, "digest": digest, "media_type": media_type, "images": images,
        "last_updated": pushed, "tag_last_pushed": pushed})
}

/// One whole page of tags.
pub fn page(tags: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"count": tags.len(), "next": null, "previous": null, "results": tags}),
    )
    .unwrap()
}

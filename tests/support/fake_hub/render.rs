//! Hub's JSON shapes, rendered from the model.
//!
//! Field names and their order follow real Hub answers (see `hub-tag-without-digest.json` in the
//! samples), which is why these are dedicated serde structs rather than `json!` maps (those
//! would sort the keys). Only this file knows how Hub spells things.

use serde::Serialize;

use super::model::{Dataset, Image, ImageRole, MediaType, Repo, Tag, UPDATERS, status_of};
use super::time::{rfc3339_micros, rfc3339_nanos, rfc3339_secs};

/// The paging envelope of every list endpoint.
#[derive(Serialize)]
pub(super) struct Page<T> {
    pub(super) count: usize,
    pub(super) next: Option<String>,
    pub(super) previous: Option<String>,
    pub(super) results: Vec<T>,
}

/// A tag object as Hub serves it.
#[derive(Serialize)]
pub(super) struct TagJson<'a> {
    creator: u64,
    id: u64,
    images: Vec<ImageJson<'a>>,
    last_updated: Option<String>,
    last_updater: u64,
    last_updater_username: &'static str,
    name: &'a str,
    repository: u64,
    full_size: u64,
    v2: bool,
    tag_status: &'static str,
    tag_last_pulled: Option<String>,
    tag_last_pushed: Option<String>,
    media_type: &'static str,
    content_type: &'static str,
    /// Absent, not null, on old tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<Option<&'a str>>,
}

#[derive(Serialize)]
struct ImageJson<'a> {
    architecture: &'a str,
    features: &'static str,
    variant: Option<&'a str>,
    digest: Option<&'a str>,
    os: &'a str,
    os_features: &'static str,
    os_version: Option<&'a str>,
    size: u64,
    status: &'static str,
    last_pulled: Option<String>,
    last_pushed: Option<String>,
}

/// A repository object as the namespace listing serves it.
#[derive(Serialize)]
pub(super) struct RepoJson<'a> {
    name: &'a str,
    namespace: &'a str,
    repository_type: &'static str,
    status: u32,
    status_description: &'static str,
    description: &'a str,
    is_private: bool,
    star_count: u64,
    pull_count: u64,
    last_updated: String,
    last_modified: String,
    date_registered: String,
    affiliation: &'static str,
    media_types: Vec<&'static str>,
    content_types: [&'static str; 1],
    categories: [CategoryJson; 1],
    storage_size: u64,
}

#[derive(Serialize)]
struct CategoryJson {
    name: &'static str,
    slug: &'static str,
}

/// Renders one tag of `repo`.
pub(super) fn tag_json<'a>(repo: &'a Repo, tag: &'a Tag) -> TagJson<'a> {
    let build = repo.build_of(tag);
    let (updater, username) = UPDATERS[build.updater];
    let updated = tag.last_updated.map(rfc3339_micros);
    TagJson {
        creator: updater,
        id: tag.id,
        images: build.images.iter().map(image_json).collect(),
        last_updated: updated.clone(),
        last_updater: updater,
        last_updater_username: username,
        name: &tag.name,
        repository: repo.id,
        full_size: build.full_size,
        v2: true,
        tag_status: status_of(build.pulled),
        tag_last_pulled: build.pulled.map(rfc3339_nanos),
        tag_last_pushed: updated,
        media_type: build.media_type.as_str(),
        content_type: "image",
        digest: build.digest.as_ref().map(|d| d.rendered()),
    }
}

fn image_json(image: &Image) -> ImageJson<'_> {
    let (os, architecture, variant, os_version) = match &image.role {
        ImageRole::Platform(p) => (p.os, p.architecture, p.variant, p.os_version.as_deref()),
        ImageRole::Attestation => ("unknown", "unknown", None, None),
    };
    ImageJson {
        architecture,
        features: "",
        variant,
        digest: image.digest.rendered(),
        os,
        os_features: "",
        os_version,
        size: image.size,
        status: status_of(image.last_pulled),
        last_pulled: image.last_pulled.map(rfc3339_nanos),
        last_pushed: image.last_pushed.map(rfc3339_secs),
    }
}

/// Renders one repository of the namespace.
pub(super) fn repo_json<'a>(dataset: &'a Dataset, repo: &'a Repo) -> RepoJson<'a> {
    let mut media_types: Vec<MediaType> = repo.builds.iter().map(|b| b.media_type).collect();
    media_types.sort();
    media_types.dedup();
    let updated = rfc3339_micros(repo.last_updated());
    RepoJson {
        name: &repo.name,
        namespace: &dataset.namespace,
        repository_type: "image",
        status: 1,
        status_description: "active",
        description: &repo.description,
        is_private: false,
        star_count: repo.star_count,
        pull_count: repo.pull_count,
        last_updated: updated.clone(),
        last_modified: updated,
        date_registered: rfc3339_micros(repo.registered),
        affiliation: "",
        media_types: media_types.into_iter().map(MediaType::as_str).collect(),
        content_types: ["image"],
        categories: [CategoryJson {
            name: repo.category.0,
            slug: repo.category.1,
        }],
        storage_size: repo.builds.iter().map(|b| b.full_size).sum(),
    }
}

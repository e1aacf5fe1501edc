//! The double's data model: repositories, builds and the tags that alias them.
//!
//! Everything the double serves and everything it expects a crawler to find comes from these
//! types. They say what a thing *is* (an attestation, an invalid digest, a missing digest key)
//! rather than how Hub spells it, so [`super::truth`] can compute the expected dataset without
//! reading the rendered JSON, and [`super::render`] alone knows the wire shapes.

use super::time::{DAY, Micros, NOW};

/// The media types Hub reports for tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum MediaType {
    /// An OCI image index (multi-platform, usually with attestations).
    OciIndex,
    /// A Docker manifest list v2 (multi-platform).
    DockerList,
    /// An OCI image manifest (single platform).
    OciManifest,
    /// A Docker image manifest v2 schema 2 (single platform).
    DockerV2,
    /// A signed Docker manifest v2 schema 1 (very old, single platform).
    DockerV1Signed,
    /// A legacy tag whose digest is the image config digest (the image ID).
    ContainerConfig,
}

impl MediaType {
    /// The media type string as Hub writes it.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            MediaType::OciIndex => "application/vnd.oci.image.index.v1+json",
            MediaType::DockerList => "application/vnd.docker.distribution.manifest.list.v2+json",
            MediaType::OciManifest => "application/vnd.oci.image.manifest.v1+json",
            MediaType::DockerV2 => "application/vnd.docker.distribution.manifest.v2+json",
            MediaType::DockerV1Signed => {
                "application/vnd.docker.distribution.manifest.v1+prettyjws"
            }
            MediaType::ContainerConfig => "application/vnd.docker.container.image.v1+json",
        }
    }

    /// What a tag of this media type points at with its top-level digest.
    pub(super) fn kind(self) -> DigestKind {
        match self {
            MediaType::OciIndex | MediaType::DockerList => DigestKind::Index,
            MediaType::OciManifest | MediaType::DockerV2 | MediaType::DockerV1Signed => {
                DigestKind::Manifest
            }
            MediaType::ContainerConfig => DigestKind::Config,
        }
    }
}

/// The kind of object a digest names, as the crawler's output calls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DigestKind {
    /// A multi-platform index or manifest list.
    Index,
    /// A single-platform manifest.
    Manifest,
    /// An image config blob (image ID).
    Config,
}

impl DigestKind {
    /// The output schema's spelling.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            DigestKind::Index => "index",
            DigestKind::Manifest => "manifest",
            DigestKind::Config => "config",
        }
    }
}

/// A digest field's content.
#[derive(Clone, Debug)]
pub(super) enum DigestSlot {
    /// `sha256:` and 64 lowercase hex digits.
    Valid(String),
    /// Something Hub served that is not a valid digest; a crawler must skip it.
    Invalid(String),
    /// JSON `null`.
    Null,
}

impl DigestSlot {
    /// The valid digest, if this is one.
    pub(super) fn valid(&self) -> Option<&str> {
        match self {
            DigestSlot::Valid(d) => Some(d),
            DigestSlot::Invalid(_) | DigestSlot::Null => None,
        }
    }

    /// The string Hub serves (`None` renders as `null`).
    pub(super) fn rendered(&self) -> Option<&str> {
        match self {
            DigestSlot::Valid(d) | DigestSlot::Invalid(d) => Some(d),
            DigestSlot::Null => None,
        }
    }
}

/// An image's platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Platform {
    pub(super) os: &'static str,
    pub(super) architecture: &'static str,
    pub(super) variant: Option<&'static str>,
    /// Only Windows images carry one (`10.0.20348.2849`).
    pub(super) os_version: Option<String>,
}

impl Platform {
    /// `os/arch[/variant]`, the output schema's spelling.
    pub(super) fn label(&self) -> String {
        match self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// What an `images[]` entry describes.
#[derive(Clone, Debug)]
pub(super) enum ImageRole {
    /// A runnable image for a platform.
    Platform(Platform),
    /// A build attestation manifest (`unknown/unknown`): not an image.
    Attestation,
}

/// One `images[]` entry of a tag.
#[derive(Clone, Debug)]
pub(super) struct Image {
    pub(super) role: ImageRole,
    pub(super) digest: DigestSlot,
    pub(super) size: u64,
    /// `None` for very old builds that Hub shows with null timestamps.
    pub(super) last_pushed: Option<Micros>,
    pub(super) last_pulled: Option<Micros>,
}

/// One push of a repository: every alias tag of a build shares its digests.
#[derive(Clone, Debug)]
pub(super) struct Build {
    pub(super) media_type: MediaType,
    /// `None`: the tag object has no `digest` key at all (old tags).
    pub(super) digest: Option<DigestSlot>,
    pub(super) images: Vec<Image>,
    /// `None` for very old builds with null timestamps.
    pub(super) pushed: Option<Micros>,
    pub(super) pulled: Option<Micros>,
    pub(super) full_size: u64,
    /// Index into [`UPDATERS`].
    pub(super) updater: usize,
}

/// The Hub accounts that push official images: `(id, username)`.
pub(super) const UPDATERS: [(u64, &str); 4] = [
    (1_156_886, "doijanky"),
    (2_124_453, "tianon"),
    (1_589_839, "yosifkit"),
    (7, "library"),
];

/// A tag: a name pointing at a build.
#[derive(Clone, Debug)]
pub(super) struct Tag {
    pub(super) name: String,
    pub(super) id: u64,
    /// Index into the repository's builds.
    pub(super) build: usize,
    /// `None` when the build has null timestamps.
    pub(super) last_updated: Option<Micros>,
}

/// One repository of the namespace.
#[derive(Clone, Debug)]
pub(super) struct Repo {
    pub(super) name: String,
    pub(super) id: u64,
    pub(super) description: String,
    pub(super) category: (&'static str, &'static str),
    pub(super) star_count: u64,
    pub(super) pull_count: u64,
    pub(super) registered: Micros,
    pub(super) builds: Vec<Build>,
    pub(super) tags: Vec<Tag>,
}

impl Repo {
    /// The build a tag points at.
    pub(super) fn build_of(&self, tag: &Tag) -> &Build {
        &self.builds[tag.build]
    }

    /// The newest tag update, which Hub reports as the repository's `last_updated`.
    pub(super) fn last_updated(&self) -> Micros {
        self.tags
            .iter()
            .filter_map(|t| t.last_updated)
            .max()
            .unwrap_or(self.registered)
    }
}

/// The whole namespace.
#[derive(Clone, Debug)]
pub(super) struct Dataset {
    pub(super) namespace: String,
    pub(super) repos: Vec<Repo>,
}

impl Dataset {
    /// `repo` for the `library` namespace, `ns/repo` otherwise: how tags are named in the output.
    pub(super) fn display_name(&self, repo: &Repo) -> String {
        if self.namespace == "library" {
            repo.name.clone()
        } else {
            format!("{}/{}", self.namespace, repo.name)
        }
    }

    /// A repository by name.
    pub(super) fn repo(&self, name: &str) -> Option<&Repo> {
        self.repos.iter().find(|r| r.name == name)
    }
}

/// Hub marks tags and images "inactive" when nobody pulled them for a month.
pub(super) fn status_of(last_pulled: Option<Micros>) -> &'static str {
    match last_pulled {
        Some(t) if t >= NOW - 30 * DAY => "active",
        _ => "inactive",
    }
}

//! `identify`: which official image (and version) is a saved image, or was it built FROM?
//!
//! Two halves, kept apart: [`input`] reads what the user has (a `docker save` tarball in any of
//! its layouts, plain or gzip-compressed, an OCI layout folder or `oci-archive`, `docker image
//! inspect` JSON, a bare image ID or digest, or a tarball on standard input) into
//! [`SavedImage`]s, reading only headers and JSON documents, never extracting anything; and
//! [`matching`] decides, from an [`matching::ImageIndex`] of the official images' image IDs and
//! layer chains, what each image is: exact, built on a base (the longest prefix of its layer chain
//! that is an official image's whole chain), or nothing known.
//!
//! A saved image carries its image ID (the sha256 of its config blob) and its layers' diff_ids,
//! never the manifest digests Docker Hub lists (except in OCI layouts, which hold the manifests
//! too, and `docker image inspect`'s `RepoDigests`). ChainIDs of the diff_ids (see
//! [`crate::registry::config`]) are what a derived image shares with its base.

pub mod input;
pub mod matching;
pub mod saved;
pub mod tar;

use crate::model::Digest;

/// One image found in an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedImage {
    /// Which image of the input this is (`image 2 of manifest.json`, `manifest sha256:…`).
    pub label: String,
    /// The image ID (sha256 of the config), when the input holds the config or names it.
    pub image_id: Option<Digest>,
    /// Other digests naming the image: its manifest digest(s), or a bare digest given whose kind
    /// is not known.
    pub digests: Vec<Digest>,
    /// The layers' diff_ids, bottom first; `None` when the input does not have them (a bare ID).
    pub diff_ids: Option<Vec<Digest>>,
    /// `os/architecture[/variant]`, when known.
    pub platform: Option<String>,
    /// The names the input gives it (`RepoTags`).
    pub repo_tags: Vec<String>,
}

//! digestmap maps Docker Hub image digests to every `repo:tag` that pointed at them.
//!
//! It crawls a Docker Hub namespace (all repositories, all tags, every digest) into an embedded
//! on-disk store that survives crashes and restarts, then writes the store out as a dataset,
//! `digests.ndjson`, with one line per digest.
//!
//! Data walks one way: page → job → store → dataset.
//! - [`model`]: validated domain types ([`model::Digest`], [`model::RepoTag`], [`model::Platform`]);
//! - [`hub`]: Docker Hub's URLs, answer shapes and tag rules;
//! - [`net`]: the HTTP stack (retries, pacing, Docker Hub sign-in, body cap, origin guard);
//! - [`registry`]: the OCI registry client (tokens, manifests, configs, tag lists, catalogs);
//! - [`store`]: the redb store, the only code that opens transactions;
//! - [`crawl`]: the scheduler (workers, job queue, the store writer that plans what a page
//!   leads to: next pages, the anonymous-cap cover, re-reads, refresh stops);
//! - [`catalog`]: `crawl --catalog`, any OCI registry that lists its repositories, as a source
//!   of its own beside Docker Hub's namespace;
//! - [`enrich`]: `digestmap enrich`, image IDs and layer chains of the stored manifests, from
//!   the registry;
//! - [`jobs`]: the waits the job loops of `enrich` and `crawl --catalog` share;
//! - [`dataset`]: `finalize`, the NDJSON writer with `current` tags, and `lookup`;
//! - [`identify`]: reading saved images (tarballs, OCI layouts, inspect JSON) and naming the
//!   official image each is or was built FROM;
//! - [`status`]: what a store holds;
//! - [`text`]: control characters escaped in whatever is shown to a person.
//!
//! ```
//! use digestmap::hub::{Skips, TagEntry, observe_tag};
//! use digestmap::model::ObjectKind;
//!
//! let entry: TagEntry = serde_json::from_str(r#"{
//!     "name": "22.04",
//!     "digest": "sha256:3b06811b2afd352be909dd088a004166d665dc76d38b13eada33522a9d915c6f",
//!     "media_type": "application/vnd.oci.image.index.v1+json",
//!     "images": [
//!         {"os": "linux", "architecture": "amd64",
//!          "digest": "sha256:0199853f6d6b20b0424f3c5694a72a62764f01e6a771b1eb48a4197848986c7e"},
//!         {"os": "unknown", "architecture": "unknown",
//!          "digest": "sha256:fd46207b81d937050e88113e1f7798e8bfaf0a2bd4b44993787aee1f74bc287e"}
//!     ]
//! }"#).unwrap();
//! let mut skips = Skips::default();
//! let tag = observe_tag(&entry, "library/ubuntu", &mut skips).unwrap();
//! assert_eq!(tag.facts[0].kind, ObjectKind::Index);
//! assert_eq!(tag.facts[1].platform.as_ref().unwrap().to_string(), "linux/amd64");
//! assert_eq!(skips.attestations, 1); // the unknown/unknown attestation is not an image
//! ```

#![deny(missing_docs)]

pub mod catalog;
pub mod clock;
pub mod crawl;
pub mod dataset;
pub mod enrich;
pub mod hub;
pub mod identify;
pub mod jobs;
pub mod model;
pub mod net;
pub mod registry;
pub mod status;
pub mod store;
pub mod text;

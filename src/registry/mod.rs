//! One client for every OCI registry: Docker Hub's (`registry-1.docker.io`), its mirrors, and
//! registries that list their repositories (Microsoft's `mcr.microsoft.com`).
//!
//! It reads what the Hub API does not give: manifests and indexes by digest, config blobs (the
//! image ID, the platform and the layers' diff_ids), tag lists and catalogs. Every body fetched
//! by digest is verified against that digest, so a mirror or a CDN cannot lie.
//!
//! One concern per module; all but [`client`] are pure and tested table by table:
//! - [`challenge`]: `WWW-Authenticate` parsing;
//! - [`token`]: token requests, answers, the cache and when to renew;
//! - [`origin`]: which hosts may be asked and which may see a token (the CDN never does);
//! - [`budget`]: the pull budget (`ratelimit-*` headers, the 429 window);
//! - [`paging`]: `tags/list` and `_catalog` pages and their `Link` headers;
//! - [`manifest`], [`config`]: typed manifests, indexes, configs, ChainIDs;
//! - [`content`]: sha256 verification of bytes as received;
//! - [`client`]: the requests, on the crate's HTTP stack (retries, pacing, body caps);
//! - [`session`]: the authentication flow (what a `401` teaches, tokens, Basic credentials);
//! - [`error`]: why a request failed, with the registry's own error codes.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use digestmap::net::{NetConfig, Pacer};
//! use digestmap::registry::{Manifest, RegistryClient, RegistryConfig};
//!
//! let config = RegistryConfig::new("https://registry-1.docker.io".parse()?);
//! let client = RegistryClient::new(config, Arc::new(Pacer::new(5.0)?), &NetConfig::default())?;
//! let digest = "sha256:3b06811b2afd352be909dd088a004166d665dc76d38b13eada33522a9d915c6f".parse()?;
//! if let Manifest::Index(index) = client.manifest("library/ubuntu", &digest).await?.manifest {
//!     for entry in index.images() {
//!         if let Manifest::Image(image) = client.manifest("library/ubuntu", &entry.digest).await?.manifest {
//!             let config = client.config("library/ubuntu", &image.config.digest).await?.config;
//!             println!("{} {:?}", image.config.digest, config.chain_id());
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod budget;
pub mod challenge;
pub mod client;
pub mod config;
pub mod content;
pub mod error;
pub mod manifest;
pub mod origin;
pub mod paging;
pub mod session;
pub mod token;

pub use budget::{BudgetSnapshot, PullBudget};
pub use client::{
    DOCKER_HUB_REGISTRY, FetchedConfig, FetchedManifest, ManifestHead, RegistryClient,
    RegistryConfig, TagTarget,
};
pub use config::{ImageConfig, chain_ids};
pub use error::RegistryError;
pub use manifest::{Descriptor, ImageManifest, ImagePlatform, Index, Manifest};
pub use paging::{ListPage, PageRequest};
pub use session::HostCredentials;

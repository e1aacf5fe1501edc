//! A real OCI registry for the registry client's tests: Debian's `docker-registry`
//! ([`process`]), a Docker-Hub-like front with token service and CDN ([`front`]), a front that
//! speaks like `mcr.microsoft.com` (open, paged and hostile listings, blobs on a data origin:
//! [`mcr`]), and an image builder that pushes real images, Windows-shaped ones included
//! ([`image`]). Loopback only.
//!
//! ```ignore
//! let hub = Harness::start(FrontConfig::default()).await;        // Docker Hub's registry
//! let mcr = McrHarness::start(McrConfig::default()).await;       // Microsoft's
//! let chain = WindowsChain::new("10.0.20348.2227", Foreign::Yes);
//! chain.push_base(&mcr.pusher).await;
//! chain.push_official(&hub.pusher).await;
//! ```

pub mod front;
pub mod http;
pub mod image;
pub mod mcr;
pub mod process;

use front::{Front, FrontConfig};
use image::Pusher;
use mcr::{McrConfig, McrFront};
use process::RegistryProcess;

/// The real registry with the Hub-like front before it.
pub struct Harness {
    /// The front (drop order: the front first, then the registry).
    pub front: Front,
    /// The registry behind it.
    pub registry: RegistryProcess,
    /// Pushes straight to the registry.
    pub pusher: Pusher,
}

impl Harness {
    /// Starts the registry and a front configured by `config`.
    pub async fn start(config: FrontConfig) -> Harness {
        let registry = RegistryProcess::start().await;
        let front = Front::start(registry.url(), config).await;
        let pusher = Pusher::new(registry.url());
        Harness {
            front,
            registry,
            pusher,
        }
    }
}

/// The real registry with the Microsoft-like front before it.
pub struct McrHarness {
    /// The front (drop order: the front first, then the registry).
    pub front: McrFront,
    /// The registry behind it.
    pub registry: RegistryProcess,
    /// Pushes straight to the registry.
    pub pusher: Pusher,
}

impl McrHarness {
    /// Starts the registry and a Microsoft-like front configured by `config`.
    pub async fn start(config: McrConfig) -> McrHarness {
        let registry = RegistryProcess::start().await;
        let front = McrFront::start(registry.url(), config).await;
        let pusher = Pusher::new(registry.url());
        McrHarness {
            front,
            registry,
            pusher,
        }
    }
}

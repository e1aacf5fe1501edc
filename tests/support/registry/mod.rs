//! A real OCI registry for the registry client's tests: Debian's `docker-registry`
//! ([`process`]), a Docker-Hub-like front with token service and CDN ([`front`]), and an image
//! builder that pushes real images ([`image`]). Loopback only.

pub mod front;
pub mod http;
pub mod image;
pub mod process;

use front::{Front, FrontConfig};
use image::Pusher;
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

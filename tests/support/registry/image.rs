//! Builds real images and pushes them through the registry API, keeping what was pushed so
//! tests can compare.
//!
//! Layers are real tar archives (ustar headers written here) compressed with gzip; their
//! diff_id is the sha256 of the tar, their digest that of the gzip. Configs are full image
//! configs (`architecture`, `os`, `os.version`, `variant`, `config`, `rootfs.diff_ids`,
//! `history`). Manifests come in Docker schema 2 or OCI form; indexes as a Docker manifest list
//! or an OCI index, the latter optionally with a BuildKit-style attestation manifest per image
//! (platform `unknown/unknown`, `vnd.docker.reference.*` annotations, an in-toto layer). Pushing
//! is the distribution API's two-step blob upload (POST, then PUT with the digest) and a PUT of
//! each manifest. zstd layers are not built (no zstd encoder among the dev-dependencies).
//!
//! Windows-shaped images ([`WindowsChain`]): Microsoft's base (`os: windows`, `os.version`,
//! `architecture: amd64`) whose bottom layers may be foreign (Docker's
//! `...rootfs.foreign.diff.tar.gzip`, OCI's `...nondistributable...`, with `urls`; their blobs
//! are never pushed, as Microsoft kept its Windows base layers on its own servers until June
//! 2023), an official Hub image built FROM it and a user image FROM that, so a test can walk
//! user image → official Hub image → Microsoft base. `docker-registry` 2.8 (configured by
//! `process.rs` to allow `^https?://`) accepts a foreign layer whose blob it does not hold
//! when every URL is http or https without a fragment; `tests/registry_support.rs` shows which
//! URLs pass and which are refused (with a `500`, not a `400`).
//!
//! ```ignore
//! let chain = WindowsChain::new("10.0.20348.2227", Foreign::Yes);
//! chain.push_base(&mcr.pusher).await;       // windows/servercore:ltsc2022 on Microsoft's
//! chain.push_official(&hub.pusher).await;   // library/python:3.12-windowsservercore-ltsc2022
//! // The user image is python's four layers plus one: save it (tests/support/archives) and
//! // identify it; it is pushed only by `chain.push_user`.
//! assert_eq!(chain.user.diff_ids()[..4], chain.official.images[0].diff_ids()[..]);
//! ```

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use url::Url;

/// `sha256:<hex>` of bytes.
pub fn digest_of(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::from("sha256:");
    for byte in hash.iter() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Docker or OCI media types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Docker schema 2 / manifest list.
    Docker,
    /// OCI manifest / index.
    Oci,
}

impl Format {
    fn manifest(self) -> &'static str {
        match self {
            Format::Docker => "application/vnd.docker.distribution.manifest.v2+json",
            Format::Oci => "application/vnd.oci.image.manifest.v1+json",
        }
    }

    fn index(self) -> &'static str {
        match self {
            Format::Docker => "application/vnd.docker.distribution.manifest.list.v2+json",
            Format::Oci => "application/vnd.oci.image.index.v1+json",
        }
    }

    fn config(self) -> &'static str {
        match self {
            Format::Docker => "application/vnd.docker.container.image.v1+json",
            Format::Oci => "application/vnd.oci.image.config.v1+json",
        }
    }

    fn layer(self) -> &'static str {
        match self {
            Format::Docker => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Format::Oci => "application/vnd.oci.image.layer.v1.tar+gzip",
        }
    }

    /// The media type of a foreign (non-distributable) layer in this format.
    pub fn foreign_layer(self) -> &'static str {
        match self {
            Format::Docker => "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            Format::Oci => "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        }
    }
}

/// One layer: the tar, its gzip blob, and their digests.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The uncompressed tar.
    pub tar: Vec<u8>,
    /// The gzip blob pushed.
    pub blob: Vec<u8>,
    /// sha256 of the tar.
    pub diff_id: String,
    /// sha256 of the blob.
    pub digest: String,
    /// Where a foreign (Windows base) layer is said to live; such a layer is not pushed.
    pub urls: Vec<String>,
}

impl Layer {
    /// A layer holding `files` (path, content).
    pub fn new(files: &[(&str, &[u8])]) -> Layer {
        let tar = tar(files);
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(&tar).unwrap();
        let blob = encoder.finish().unwrap();
        Layer {
            diff_id: digest_of(&tar),
            digest: digest_of(&blob),
            tar,
            blob,
            urls: Vec::new(),
        }
    }

    /// The same layer as a foreign one, said to be served from `url`.
    pub fn foreign(mut self, url: &str) -> Layer {
        self.urls = vec![url.to_owned()];
        self
    }
}

/// A ustar archive of regular files.
pub fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, content) in files {
        let mut header = [0u8; 512];
        let put = |header: &mut [u8; 512], at: usize, text: &[u8]| {
            header[at..at + text.len()].copy_from_slice(text);
        };
        assert!(path.len() < 100, "tar path too long");
        put(&mut header, 0, path.as_bytes());
        put(&mut header, 100, b"0000644\0");
        put(&mut header, 108, b"0000000\0");
        put(&mut header, 116, b"0000000\0");
        put(
            &mut header,
            124,
            format!("{:011o}\0", content.len()).as_bytes(),
        );
        put(&mut header, 136, b"14000000000\0");
        put(&mut header, 148, b"        ");
        header[156] = b'0';
        put(&mut header, 257, b"ustar\0");
        put(&mut header, 263, b"00");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        put(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(content);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// What to build.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// `os`.
    pub os: String,
    /// `architecture`.
    pub architecture: String,
    /// `variant`.
    pub variant: Option<String>,
    /// `os.version`.
    pub os_version: Option<String>,
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// Media types.
    pub format: Format,
}

impl ImageSpec {
    /// A Linux image of `architecture` (and `variant`).
    pub fn linux(
        architecture: &str,
        variant: Option<&str>,
        layers: Vec<Layer>,
        format: Format,
    ) -> Self {
        ImageSpec {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
            os_version: None,
            layers,
            format,
        }
    }

    /// A Windows image as Microsoft builds them: `os: windows`, `architecture: amd64`, and
    /// `os.version` (`10.0.20348.2227`) in the config and in its index entry.
    pub fn windows(os_version: &str, layers: Vec<Layer>, format: Format) -> Self {
        ImageSpec {
            os: "windows".into(),
            architecture: "amd64".into(),
            variant: None,
            os_version: Some(os_version.into()),
            layers,
            format,
        }
    }
}

/// An image as pushed.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The spec.
    pub spec: ImageSpec,
    /// Config bytes.
    pub config: Vec<u8>,
    /// The image ID.
    pub config_digest: String,
    /// Manifest bytes.
    pub manifest: Vec<u8>,
    /// Manifest digest.
    pub digest: String,
    /// Manifest media type.
    pub media_type: &'static str,
}

impl BuiltImage {
    /// diff_ids, bottom first.
    pub fn diff_ids(&self) -> Vec<String> {
        self.spec.layers.iter().map(|l| l.diff_id.clone()).collect()
    }
}

/// Builds config and manifest of an image.
pub fn build(spec: ImageSpec) -> BuiltImage {
    let mut config = json!({
        "architecture": spec.architecture,
        "os": spec.os,
        "created": "2026-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": spec.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        "history": spec.layers.iter().map(|_| json!({"created": "2026-01-01T00:00:00Z", "created_by": "test"})).collect::<Vec<_>>(),
    });
    if let Some(variant) = &spec.variant {
        config["variant"] = json!(variant);
    }
    if let Some(version) = &spec.os_version {
        config["os.version"] = json!(version);
    }
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = digest_of(&config);
    let layers: Vec<Value> = spec
        .layers
        .iter()
        .map(|l| {
            let mut d =
                json!({"mediaType": spec.format.layer(), "digest": l.digest, "size": l.blob.len()});
            if !l.urls.is_empty() {
                d["mediaType"] = json!(spec.format.foreign_layer());
                d["urls"] = json!(l.urls);
            }
            d
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": spec.format.manifest(),
        "config": {"mediaType": spec.format.config(), "digest": config_digest, "size": config.len()},
        "layers": layers,
    });
    // Pretty-printed, as BuildKit does: the digest covers these exact bytes.
    let manifest = serde_json::to_vec_pretty(&manifest).unwrap();
    BuiltImage {
        digest: digest_of(&manifest),
        media_type: spec.format.manifest(),
        spec,
        config,
        config_digest,
        manifest,
    }
}

/// A BuildKit-style attestation manifest for `image`.
#[derive(Debug, Clone)]
pub struct Attestation {
    /// The in-toto statement (the one layer).
    pub statement: Vec<u8>,
    /// The (empty-platform) config.
    pub config: Vec<u8>,
    /// Manifest bytes.
    pub manifest: Vec<u8>,
    /// Manifest digest.
    pub digest: String,
    /// The image it describes.
    pub attests: String,
}

fn attestation(image: &BuiltImage) -> Attestation {
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": "pkg:docker/test", "digest": {"sha256": image.digest.trim_start_matches("sha256:")}}],
        "predicate": {"builder": {"id": "test"}},
    }))
    .unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": "unknown", "os": "unknown", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [digest_of(&statement)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": digest_of(&statement), "size": statement.len(),
                    "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}],
    }))
    .unwrap();
    Attestation {
        digest: digest_of(&manifest),
        attests: image.digest.clone(),
        statement,
        config,
        manifest,
    }
}

/// A multi-platform index as pushed.
#[derive(Debug, Clone)]
pub struct BuiltIndex {
    /// The platform images.
    pub images: Vec<BuiltImage>,
    /// One attestation per image (OCI with attestations only).
    pub attestations: Vec<Attestation>,
    /// Index bytes.
    pub bytes: Vec<u8>,
    /// Index digest.
    pub digest: String,
    /// Index media type.
    pub media_type: &'static str,
}

/// Builds an index of `images` (BuildKit-style attestations with an OCI index when asked).
pub fn index(images: Vec<BuiltImage>, format: Format, attest: bool) -> BuiltIndex {
    let attestations: Vec<Attestation> = if attest {
        images.iter().map(attestation).collect()
    } else {
        Vec::new()
    };
    let mut entries: Vec<Value> = images
        .iter()
        .map(|image| {
            let mut platform = json!({"architecture": image.spec.architecture, "os": image.spec.os});
            if let Some(variant) = &image.spec.variant {
                platform["variant"] = json!(variant);
            }
            if let Some(version) = &image.spec.os_version {
                platform["os.version"] = json!(version);
            }
            json!({"mediaType": image.media_type, "digest": image.digest, "size": image.manifest.len(), "platform": platform})
        })
        .collect();
    for a in &attestations {
        entries.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": a.digest, "size": a.manifest.len(),
            "annotations": {"vnd.docker.reference.digest": a.attests, "vnd.docker.reference.type": "attestation-manifest"},
            "platform": {"architecture": "unknown", "os": "unknown"},
        }));
    }
    let bytes = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": format.index(), "manifests": entries,
    }))
    .unwrap();
    BuiltIndex {
        digest: digest_of(&bytes),
        media_type: format.index(),
        images,
        attestations,
        bytes,
    }
}

/// Whether Microsoft's Windows base layers are foreign: they were until June 2023 (older tags
/// still are), plain layers since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// Foreign layers with `urls` on `mcr.microsoft.com`; their blobs are never pushed.
    Yes,
    /// Ordinary layers, pushed like any other.
    No,
}

/// Where [`WindowsChain::push_base`] puts Microsoft's base: repository and tag.
pub const WINDOWS_BASE: (&str, &str) = ("windows/servercore", "ltsc2022");
/// Where [`WindowsChain::push_official`] puts the official image: repository and tag.
pub const WINDOWS_OFFICIAL: (&str, &str) = ("library/python", "3.12-windowsservercore-ltsc2022");
/// Where [`WindowsChain::push_user`] puts the user image: repository and tag.
pub const WINDOWS_USER: (&str, &str) = ("user/winapp", "latest");

/// Three Windows images, each built FROM the one before: Microsoft's base, an official Hub image
/// and a user image. Deterministic: the same `os.version` gives the same digests; another one
/// (Microsoft's monthly update) gives new ones throughout.
#[derive(Debug, Clone)]
pub struct WindowsChain {
    /// `os.version` of every image (`10.0.20348.2227`).
    pub os_version: String,
    /// `windows/servercore`-like: a Docker manifest list with one `windows/amd64` entry
    /// (carrying `os.version`) whose image has two base layers.
    pub base: BuiltIndex,
    /// `python`-like, FROM the base: its two layers (foreign ones stay foreign, as Docker keeps
    /// them) and two of its own; a Docker manifest list with one entry, as Hub's Windows tags.
    pub official: BuiltIndex,
    /// A user image FROM the official one: its four layers and one more; a plain Docker manifest.
    pub user: BuiltImage,
}

impl WindowsChain {
    /// Builds the three images for `os_version`, the base's layers foreign or not.
    pub fn new(os_version: &str, foreign: Foreign) -> WindowsChain {
        let layer = |name: &str| {
            let content = format!("{name} {os_version}\n");
            Layer::new(&[(&format!("Files/Windows/{name}.dll"), content.as_bytes())])
        };
        let base_layers: Vec<Layer> = ["servercore-base", "servercore-update"]
            .into_iter()
            .map(|name| {
                let plain = layer(name);
                match foreign {
                    Foreign::Yes => {
                        let url = format!(
                            "https://mcr.microsoft.com/v2/{}/blobs/{}",
                            WINDOWS_BASE.0, plain.digest
                        );
                        plain.foreign(&url)
                    }
                    Foreign::No => plain,
                }
            })
            .collect();
        let base = index(
            vec![build(ImageSpec::windows(
                os_version,
                base_layers.clone(),
                Format::Docker,
            ))],
            Format::Docker,
            false,
        );
        let mut official_layers = base_layers;
        official_layers.extend([layer("python-install"), layer("python-pip")]);
        let official = index(
            vec![build(ImageSpec::windows(
                os_version,
                official_layers.clone(),
                Format::Docker,
            ))],
            Format::Docker,
            false,
        );
        let mut user_layers = official_layers;
        user_layers.push(layer("user-app"));
        let user = build(ImageSpec::windows(os_version, user_layers, Format::Docker));
        WindowsChain {
            os_version: os_version.to_owned(),
            base,
            official,
            user,
        }
    }

    /// Pushes the base as [`WINDOWS_BASE`] (its foreign blobs are not pushed).
    pub async fn push_base(&self, pusher: &Pusher) {
        pusher
            .index(WINDOWS_BASE.0, WINDOWS_BASE.1, &self.base)
            .await;
    }

    /// Pushes the official image as [`WINDOWS_OFFICIAL`].
    pub async fn push_official(&self, pusher: &Pusher) {
        pusher
            .index(WINDOWS_OFFICIAL.0, WINDOWS_OFFICIAL.1, &self.official)
            .await;
    }

    /// Pushes the user image as [`WINDOWS_USER`].
    pub async fn push_user(&self, pusher: &Pusher) {
        pusher
            .image(WINDOWS_USER.0, WINDOWS_USER.1, &self.user)
            .await;
    }
}

/// Pushes blobs and manifests to a registry (directly, without auth).
pub struct Pusher {
    client: reqwest::Client,
    base: Url,
}

impl Pusher {
    /// A pusher for the registry at `base`.
    pub fn new(base: &Url) -> Pusher {
        Pusher {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.clone(),
        }
    }

    /// Uploads a blob (POST a session, PUT the bytes with their digest).
    pub async fn blob(&self, repository: &str, bytes: &[u8]) {
        let digest = digest_of(bytes);
        let start = self
            .client
            .post(
                self.base
                    .join(&format!("/v2/{repository}/blobs/uploads/"))
                    .unwrap(),
            )
            .send()
            .await
            .expect("start an upload");
        assert_eq!(start.status(), 202, "upload of {digest} to {repository}");
        let location = start.headers()["location"].to_str().unwrap().to_owned();
        let mut url = self.base.join(&location).unwrap();
        url.query_pairs_mut().append_pair("digest", &digest);
        let done = self
            .client
            .put(url)
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("finish an upload");
        assert_eq!(
            done.status(),
            201,
            "upload of {digest} to {repository}: {:?}",
            done.text().await
        );
    }

    /// PUTs a manifest under `reference` (a tag or its digest).
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) {
        let (status, body) = self
            .try_manifest(repository, reference, media_type, bytes)
            .await;
        assert_eq!(status, 201, "manifest {reference} of {repository}: {body}");
    }

    /// PUTs a manifest and returns the registry's status and body, whatever they are (for tests
    /// of what the registry refuses).
    pub async fn try_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> (u16, String) {
        let answer = self
            .client
            .put(
                self.base
                    .join(&format!("/v2/{repository}/manifests/{reference}"))
                    .unwrap(),
            )
            .header("Content-Type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("put a manifest");
        let status = answer.status().as_u16();
        (status, answer.text().await.unwrap_or_default())
    }

    /// Pushes an image's layers, config and manifest, tagged `tag`.
    pub async fn image(&self, repository: &str, tag: &str, image: &BuiltImage) {
        for layer in image.spec.layers.iter().filter(|l| l.urls.is_empty()) {
            self.blob(repository, &layer.blob).await;
        }
        self.blob(repository, &image.config).await;
        self.manifest(repository, tag, image.media_type, &image.manifest)
            .await;
    }

    /// Pushes every image of an index (by digest), its attestations, then the index as `tag`.
    pub async fn index(&self, repository: &str, tag: &str, index: &BuiltIndex) {
        for image in &index.images {
            self.image(repository, &image.digest, image).await;
        }
        for a in &index.attestations {
            self.blob(repository, &a.statement).await;
            self.blob(repository, &a.config).await;
            self.manifest(
                repository,
                &a.digest,
                "application/vnd.oci.image.manifest.v1+json",
                &a.manifest,
            )
            .await;
        }
        self.manifest(repository, tag, index.media_type, &index.bytes)
            .await;
    }
}

//! Real registry content behind the double's digests: image configs, manifests and indexes
//! whose digests are the sha256 of the bytes served, and the registry routes that serve them.
//!
//! The generator hands out random digests; [`realize`] then replaces, in a fixed order, every
//! valid platform image digest (and every legacy config-kind digest) by the digest of content
//! made for it, and every valid index digest by the digest of an index body listing the
//! build's platform manifests and attestation entries. The replacement is a function of the
//! random digest, so an image that two builds share (a rebuilt index keeping a manifest) stays
//! one digest. Everything else the generator decided (null and invalid digests, digestless
//! tags, empty `images`) is left as it was, so every quirk and the truth keep holding.
//!
//! What the content is made of, all seeded, nothing stored but a recipe per digest (bodies are
//! rendered again when served, so a 100k-tag world costs one render and two hashes per image):
//! - a config: `os`, `architecture`, `variant`, `os.version` as Hub lists the image, and
//!   `rootfs.diff_ids`: bottom layers shared by every image of one repository and platform (as
//!   `FROM` makes them), then one or two top layers of the image's own (a rebuild, which gets a
//!   new random digest, changes only these);
//! - a manifest: Docker v2 for Docker-era builds, OCI for OCI ones, with the config descriptor
//!   and one layer descriptor per diff_id; a v1 signed build gets an unsigned schema 1 body
//!   (`fsLayers`, `history`), which clients report as legacy;
//! - an index (OCI index or Docker manifest list, as the build's media type says): one entry per
//!   valid platform manifest, attestation entries (`unknown/unknown`, referencing the image
//!   before them) for OCI builds, and an annotation naming the build, so no two builds share an
//!   index digest. Attestation manifests and layer blobs themselves are not served (404).
//!
//! Routes, served openly (no token): `GET /v2/` (`{}`), `GET`/`HEAD
//! /v2/<ns>/<repo>/manifests/<digest>` (the repository must be one whose build lists it) with
//! `Docker-Content-Digest` and the manifest's own media type as `Content-Type`, and `GET
//! /v2/<ns>/<repo>/blobs/<digest>` for configs. Unknown digests get the registry's 404
//! (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`). Tags are not resolved by these routes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::http::{Request, Response};
use super::model::{Build, Dataset, DigestKind, DigestSlot, ImageRole, MediaType, Platform};
use super::prng::{Prng, mix};
use super::time::{DAY, date, rfc3339_secs};

/// The OCI image config media type.
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The Docker image config media type.
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The OCI gzip layer media type.
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The Docker gzip layer media type.
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// How a platform manifest is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Docker,
    Oci,
    /// Docker schema 1 (unsigned body, served as `+prettyjws`).
    Schema1,
}

impl Format {
    fn media_type(self) -> &'static str {
        match self {
            Format::Docker => MediaType::DockerV2.as_str(),
            Format::Oci => MediaType::OciManifest.as_str(),
            Format::Schema1 => MediaType::DockerV1Signed.as_str(),
        }
    }
}

/// Everything one image's config and manifest are rendered from.
#[derive(Clone, Debug)]
struct Recipe {
    /// Index into the dataset's repositories.
    repo: usize,
    platform: Platform,
    /// From the generator's random digest: what makes this image's top layers its own.
    seed: u64,
    format: Format,
}

/// What a digest of the double's registry names.
#[derive(Clone, Debug)]
enum Object {
    /// A platform manifest; `config` is its config's digest (none for schema 1).
    Manifest {
        recipe: Recipe,
        size: usize,
        config: Option<String>,
    },
    /// An image config blob.
    Config { recipe: Recipe },
    /// An index: rendered from this build of this repository; `nonce` (from the generator's
    /// random digest) tells apart builds that list the same manifests.
    Index {
        repo: usize,
        build: usize,
        nonce: u64,
    },
}

/// Hashes a digest string by a few of its hex digits, which are random already: SipHash over
/// every byte is most of the cost of a 100k-tag world's start in a debug build.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let tail = bytes.len().min(16);
        let mut word = [0u8; 8];
        for (i, b) in bytes[bytes.len() - tail..].iter().enumerate() {
            word[i % 8] ^= *b;
        }
        self.0 = mix(self.0 ^ u64::from_le_bytes(word));
    }
}

/// A map keyed by digest strings.
type ByDigest<V> = HashMap<String, V, BuildHasherDefault<DigestHasher>>;

/// The content of a dataset, by digest.
#[derive(Debug, Default)]
pub(super) struct Content {
    objects: ByDigest<Object>,
}

/// What a digest is, for tests comparing a client's findings with what was served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Served {
    /// A platform manifest and its image ID (config digest); `None` for a schema 1 manifest,
    /// which has no config.
    Manifest {
        /// The config digest.
        image_id: Option<String>,
    },
    /// An image config and its `rootfs.diff_ids`.
    Config {
        /// The layers' uncompressed digests, bottom first.
        diff_ids: Vec<String>,
    },
    /// An index or manifest list.
    Index,
}

/// Replaces the dataset's random digests by digests of real content, and returns that content.
pub(super) fn realize(dataset: &mut Dataset) -> Content {
    let mut content = Content::default();
    // Random digest -> real digest, so that shared images stay shared.
    let mut renamed: ByDigest<String> = ByDigest::default();
    for r in 0..dataset.repos.len() {
        let name = repo_path(dataset, r);
        let repo = &mut dataset.repos[r];
        for b in 0..repo.builds.len() {
            let build = &mut repo.builds[b];
            let format = match build.media_type {
                MediaType::OciIndex | MediaType::OciManifest => Format::Oci,
                MediaType::DockerV1Signed => Format::Schema1,
                MediaType::DockerList | MediaType::DockerV2 | MediaType::ContainerConfig => {
                    Format::Docker
                }
            };
            let config_only = build.media_type == MediaType::ContainerConfig;
            for image in &mut build.images {
                let (ImageRole::Platform(platform), DigestSlot::Valid(old)) =
                    (&image.role, &image.digest)
                else {
                    continue;
                };
                let new = match renamed.get(old) {
                    Some(new) => new.clone(),
                    None => {
                        let recipe = Recipe {
                            repo: r,
                            platform: platform.clone(),
                            seed: seed_of(old),
                            format,
                        };
                        let new = content.add(&name, recipe, config_only);
                        renamed.insert(old.clone(), new.clone());
                        new
                    }
                };
                image.digest = DigestSlot::Valid(new);
            }
            build.digest = match (build.media_type.kind(), build.digest.take()) {
                (DigestKind::Index, Some(DigestSlot::Valid(old))) => {
                    let nonce = seed_of(&old);
                    let body = index_body(build, nonce, &content);
                    let new = sha256(&body);
                    content.objects.insert(
                        new.clone(),
                        Object::Index {
                            repo: r,
                            build: b,
                            nonce,
                        },
                    );
                    Some(DigestSlot::Valid(new))
                }
                // A single-platform tag names its one image.
                (DigestKind::Manifest | DigestKind::Config, Some(DigestSlot::Valid(old))) => {
                    Some(DigestSlot::Valid(renamed.get(&old).cloned().unwrap_or(old)))
                }
                (_, other) => other,
            };
        }
    }
    content
}

impl Content {
    /// Renders one image, records its config and manifest (only the config for a legacy
    /// config-kind tag), and returns the digest Hub lists for it.
    fn add(&mut self, name: &str, recipe: Recipe, config_only: bool) -> String {
        let layers = layers(name, &recipe);
        if recipe.format == Format::Schema1 {
            let body = schema1(name, &recipe, &layers);
            let digest = sha256(&body);
            self.objects.insert(
                digest.clone(),
                Object::Manifest {
                    recipe,
                    size: body.len(),
                    config: None,
                },
            );
            return digest;
        }
        let config = config_body(&recipe, &layers);
        let config_digest = sha256(&config);
        if config_only {
            self.objects
                .insert(config_digest.clone(), Object::Config { recipe });
            return config_digest;
        }
        let body = manifest_body(&recipe, &layers, (&config_digest, config.len()));
        let digest = sha256(&body);
        self.objects.insert(
            config_digest.clone(),
            Object::Config {
                recipe: recipe.clone(),
            },
        );
        self.objects.insert(
            digest.clone(),
            Object::Manifest {
                recipe,
                size: body.len(),
                config: Some(config_digest),
            },
        );
        digest
    }

    /// What `digest` is, for tests.
    pub(super) fn served(&self, dataset: &Dataset, digest: &str) -> Option<Served> {
        Some(match self.objects.get(digest)? {
            Object::Manifest { config, .. } => Served::Manifest {
                image_id: config.clone(),
            },
            Object::Config { recipe } => {
                let name = repo_path(dataset, recipe.repo);
                Served::Config {
                    diff_ids: layers(&name, recipe)
                        .into_iter()
                        .map(|l| l.diff_id)
                        .collect(),
                }
            }
            Object::Index { .. } => Served::Index,
        })
    }

    /// The bytes and media type of a manifest or index, if `repo` has it.
    fn manifest(&self, dataset: &Dataset, repo: usize, digest: &str) -> Option<(Vec<u8>, &str)> {
        match self.objects.get(digest)? {
            Object::Manifest { recipe, .. } if recipe.repo == repo => {
                let name = repo_path(dataset, repo);
                let layers = layers(&name, recipe);
                if recipe.format == Format::Schema1 {
                    return Some((schema1(&name, recipe, &layers), recipe.format.media_type()));
                }
                let config = config_body(recipe, &layers);
                let body = manifest_body(recipe, &layers, (&sha256(&config), config.len()));
                Some((body, recipe.format.media_type()))
            }
            Object::Index {
                repo: r,
                build,
                nonce,
            } if *r == repo => {
                let build = &dataset.repos[repo].builds[*build];
                let body = index_body(build, *nonce, self);
                Some((body, build.media_type.as_str()))
            }
            _ => None,
        }
    }

    /// The bytes of a config blob, if `repo` has it.
    fn blob(&self, dataset: &Dataset, repo: usize, digest: &str) -> Option<Vec<u8>> {
        match self.objects.get(digest)? {
            Object::Config { recipe } if recipe.repo == repo => {
                let name = repo_path(dataset, repo);
                Some(config_body(recipe, &layers(&name, recipe)))
            }
            _ => None,
        }
    }
}

/// One layer: its uncompressed digest (diff_id), compressed digest and size.
struct Layer {
    diff_id: String,
    digest: String,
    size: u64,
}

/// Bottom layers shared by the repository's images of a platform, then the image's own.
fn layers(name: &str, recipe: &Recipe) -> Vec<Layer> {
    let label = recipe.platform.label();
    let mut shared = Prng::new(mix(text_hash(name) ^ text_hash(&label).rotate_left(17)));
    let mut out = Vec::new();
    for _ in 0..shared.range(1, 3) {
        out.push(layer(&mut shared));
    }
    let mut own = Prng::new(recipe.seed);
    for _ in 0..own.range(1, 2) {
        out.push(layer(&mut own));
    }
    out
}

fn layer(rng: &mut Prng) -> Layer {
    Layer {
        diff_id: random_digest(rng),
        digest: random_digest(rng),
        size: rng.range(1_000, 80_000_000),
    }
}

/// A digest-shaped random string (one `format!`, which is fast even in debug builds).
fn random_digest(rng: &mut Prng) -> String {
    let (a, b, c, d) = (
        rng.next_u64(),
        rng.next_u64(),
        rng.next_u64(),
        rng.next_u64(),
    );
    format!("sha256:{a:016x}{b:016x}{c:016x}{d:016x}")
}

/// The platform's JSON members (`"architecture":...,"os":...`), without braces. Every value
/// written by hand here is a digest, a number or a name of the generator's, none of which
/// needs escaping; hand-written JSON keeps a 100k-tag world's start fast in debug builds.
fn platform_fields(platform: &Platform) -> String {
    let mut out = format!(
        r#""architecture":"{}","os":"{}""#,
        platform.architecture, platform.os
    );
    if let Some(v) = &platform.os_version {
        out.push_str(&format!(r#","os.version":"{v}""#));
    }
    if let Some(v) = platform.variant {
        out.push_str(&format!(r#","variant":"{v}""#));
    }
    out
}

/// `"a","b"` from strings.
fn quoted<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items
        .map(|i| format!(r#""{i}""#))
        .collect::<Vec<_>>()
        .join(",")
}

fn config_body(recipe: &Recipe, layers: &[Layer]) -> Vec<u8> {
    let created = date(2015, 1, 1) + (recipe.seed % 3650) as i64 * DAY;
    format!(
        r#"{{{},"config":{{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]}},"created":"{}","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        platform_fields(&recipe.platform),
        rfc3339_secs(created),
        quoted(layers.iter().map(|l| l.diff_id.as_str())),
    )
    .into_bytes()
}

fn manifest_body(recipe: &Recipe, layers: &[Layer], config: (&str, usize)) -> Vec<u8> {
    let (config_type, layer_type) = match recipe.format {
        Format::Oci => (OCI_CONFIG, OCI_LAYER),
        Format::Docker | Format::Schema1 => (DOCKER_CONFIG, DOCKER_LAYER),
    };
    let layers: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                r#"{{"mediaType":"{layer_type}","digest":"{}","size":{}}}"#,
                l.digest, l.size
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{config_type}","digest":"{}","size":{}}},"layers":[{}]}}"#,
        recipe.format.media_type(),
        config.0,
        config.1,
        layers.join(","),
    )
    .into_bytes()
}

/// An unsigned schema 1 manifest: what clients need to recognise it as legacy.
fn schema1(name: &str, recipe: &Recipe, layers: &[Layer]) -> Vec<u8> {
    let fs_layers: Vec<String> = layers
        .iter()
        .rev()
        .map(|l| format!(r#"{{"blobSum":"{}"}}"#, l.digest))
        .collect();
    let history: Vec<String> = layers
        .iter()
        .rev()
        .map(|l| {
            format!(
                r#"{{"v1Compatibility":"{{\"id\":\"{}\"}}"}}"#,
                &l.diff_id[7..]
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":1,"name":"{name}","tag":"build-{:016x}","architecture":"{}","fsLayers":[{}],"history":[{}]}}"#,
        recipe.seed,
        recipe.platform.architecture,
        fs_layers.join(","),
        history.join(","),
    )
    .into_bytes()
}

/// The index of a build whose platform images already carry their real digests.
fn index_body(build: &Build, nonce: u64, content: &Content) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut previous: Option<&str> = None;
    for image in &build.images {
        let Some(digest) = image.digest.valid() else {
            continue;
        };
        match &image.role {
            ImageRole::Platform(platform) => {
                let Some(Object::Manifest { recipe, size, .. }) = content.objects.get(digest)
                else {
                    continue;
                };
                entries.push(format!(
                    r#"{{"mediaType":"{}","digest":"{digest}","size":{size},"platform":{{{}}}}}"#,
                    recipe.format.media_type(),
                    platform_fields(platform),
                ));
                previous = Some(digest);
            }
            ImageRole::Attestation => {
                let annotations = previous.map_or(String::new(), |of| {
                    format!(
                        r#","annotations":{{"vnd.docker.reference.digest":"{of}","vnd.docker.reference.type":"attestation-manifest"}}"#
                    )
                });
                entries.push(format!(
                    r#"{{"mediaType":"{}","digest":"{digest}","size":{},"platform":{{"architecture":"unknown","os":"unknown"}}{annotations}}}"#,
                    MediaType::OciManifest.as_str(),
                    500 + seed_of(digest) % 1000,
                ));
            }
        }
    }
    let created = match (build.media_type, build.pushed) {
        (MediaType::OciIndex, Some(pushed)) => format!(
            r#","org.opencontainers.image.created":"{}""#,
            rfc3339_secs(pushed)
        ),
        _ => String::new(),
    };
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{}],"annotations":{{"io.digestmap.fake.build":"{nonce:016x}"{created}}}}}"#,
        build.media_type.as_str(),
        entries.join(","),
    )
    .into_bytes()
}

/// `ns/repo`, the repository's name on the registry.
fn repo_path(dataset: &Dataset, repo: usize) -> String {
    format!("{}/{}", dataset.namespace, dataset.repos[repo].name)
}

/// The first 16 hex digits of a digest, as a seed.
fn seed_of(digest: &str) -> u64 {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    u64::from_str_radix(hex.get(..16).unwrap_or("0"), 16).unwrap_or_else(|_| text_hash(hex))
}

/// FNV-1a: a stable hash of a name, for seeds.
fn text_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn sha256(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let hash = Sha256::digest(bytes);
    let mut out = Vec::with_capacity(71);
    out.extend_from_slice(b"sha256:");
    for b in hash.iter() {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xF)]);
    }
    String::from_utf8(out).expect("hex is ASCII")
}

/// The registry's answer to `request`, or `None` when it is not a registry content route.
pub(super) fn route(dataset: &Dataset, content: &Content, request: &Request) -> Option<Response> {
    let path = request.path();
    if path == "/v2/" || path == "/v2" {
        let mut response = Response::json(200, "{}");
        response
            .headers
            .push(("Docker-Distribution-API-Version", "registry/2.0".to_owned()));
        return Some(response);
    }
    let rest = path.strip_prefix("/v2/")?;
    let (name, kind, reference) = match rest.rsplitn(3, '/').collect::<Vec<_>>()[..] {
        [reference, kind @ ("manifests" | "blobs"), name] => (name, kind, reference),
        _ => return None,
    };
    let head = request.method == "HEAD";
    if request.method != "GET" && !(head && kind == "manifests") {
        return Some(registry_error(405, "UNSUPPORTED", "method not allowed"));
    }
    let repo = name
        .split_once('/')
        .filter(|(ns, _)| *ns == dataset.namespace)
        .and_then(|(_, repo)| dataset.repos.iter().position(|r| r.name == repo));
    let Some(repo) = repo else {
        return Some(registry_error(
            404,
            "NAME_UNKNOWN",
            "repository name not known to registry",
        ));
    };
    let found = match kind {
        "manifests" => content.manifest(dataset, repo, reference),
        _ => content
            .blob(dataset, repo, reference)
            .map(|b| (b, "application/octet-stream")),
    };
    let Some((body, media_type)) = found else {
        return Some(if kind == "manifests" {
            registry_error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        } else {
            registry_error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        });
    };
    let body = if head { Vec::new() } else { body };
    Some(Response {
        status: 200,
        headers: vec![
            ("Content-Type", media_type.to_owned()),
            ("Docker-Content-Digest", reference.to_owned()),
        ],
        body,
    })
}

/// The distribution spec's error body.
fn registry_error(status: u16, code: &str, message: &str) -> Response {
    let body = json!({"errors": [{"code": code, "message": message, "detail": null}]});
    Response::json(status, body.to_string())
}

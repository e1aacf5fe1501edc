//! Manifests and indexes: their media types and what the client reads from them.
//!
//! Facts relied on (OCI image spec, Docker image manifest v2 schema 2, BuildKit):
//! - four current types: OCI index and Docker manifest list (`manifests[]`, each a descriptor
//!   with an optional `platform`), OCI manifest and Docker schema-2 manifest (`config` and
//!   `layers[]` descriptors); a descriptor has `mediaType`, `digest`, `size`, and may have `urls`
//!   (foreign Windows layers) and `annotations`;
//! - `mediaType` in the body is optional in OCI documents; the answer's `Content-Type` then names
//!   the type, and failing both the shape does (`manifests` makes an index);
//! - Docker schema 1 (`schemaVersion: 1`, `...manifest.v1+json` / `+prettyjws`) is legacy: it has
//!   no config blob and no diff_ids, so it is recognised and reported, not read;
//! - platform entries carry `os`, `architecture`, optional `variant`, `os.version` (Windows) and
//!   `os.features`;
//! - BuildKit attestations are index entries with platform `unknown/unknown` and the annotations
//!   `vnd.docker.reference.type: attestation-manifest` and `vnd.docker.reference.digest: <the
//!   image they describe>`; their layers are `application/vnd.in-toto+json`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::model::{Digest, Platform};

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (schema 2).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 1 manifest (legacy).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1 manifest with its JWS signature (legacy).
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Media type of an attestation manifest's layers.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// The `Accept` header of manifest requests: the four current types, then schema 1 so that a
/// registry holding only that answers with it (and we can say so) instead of 404.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5, \
    application/vnd.docker.distribution.manifest.v1+json;q=0.5";

/// A platform as registries describe it, with the Windows build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePlatform {
    /// OS, architecture, variant.
    pub platform: Platform,
    /// `os.version`, e.g. `10.0.20348.2340` on Windows.
    pub os_version: Option<String>,
}

impl ImagePlatform {
    /// Builds a platform; empty strings count as absent.
    pub fn new(
        os: &str,
        architecture: &str,
        variant: Option<&str>,
        os_version: Option<&str>,
    ) -> Self {
        Self {
            platform: Platform::new(os, architecture, variant),
            os_version: os_version.filter(|v| !v.is_empty()).map(str::to_owned),
        }
    }
}

impl fmt::Display for ImagePlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.platform)?;
        if let Some(version) = &self.os_version {
            write!(f, " ({version})")?;
        }
        Ok(())
    }
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The media type of the content.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Where else it may be fetched from (foreign layers).
    pub urls: Vec<String>,
    /// The platform, in an index entry.
    pub platform: Option<ImagePlatform>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// Whether this index entry is a BuildKit attestation rather than an image.
    pub fn is_attestation(&self) -> bool {
        self.annotations
            .get("vnd.docker.reference.type")
            .is_some_and(|t| t == "attestation-manifest")
            || self
                .platform
                .as_ref()
                .is_some_and(|p| p.platform.is_attestation())
    }

    /// The image an attestation entry describes.
    pub fn attests(&self) -> Option<Digest> {
        self.annotations
            .get("vnd.docker.reference.digest")
            .and_then(|d| Digest::parse(d).ok())
    }
}

/// A multi-platform index (OCI index or Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// Its media type.
    pub media_type: String,
    /// Its entries, attestations included.
    pub manifests: Vec<Descriptor>,
}

impl Index {
    /// The platform images, attestations left out.
    pub fn images(&self) -> impl Iterator<Item = &Descriptor> {
        self.manifests.iter().filter(|d| !d.is_attestation())
    }

    /// The attestation entries.
    pub fn attestations(&self) -> impl Iterator<Item = &Descriptor> {
        self.manifests.iter().filter(|d| d.is_attestation())
    }
}

/// A single-platform image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    /// Its media type.
    pub media_type: String,
    /// The config blob; its digest is the image ID.
    pub config: Descriptor,
    /// The layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
}

impl ImageManifest {
    /// Whether this is a BuildKit attestation manifest (in-toto layers), not an image.
    pub fn is_attestation(&self) -> bool {
        !self.layers.is_empty() && self.layers.iter().all(|l| l.media_type == IN_TOTO)
    }
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// An index of platform manifests.
    Index(Index),
    /// One image (boxed: it is several times the size of the other variants).
    Image(Box<ImageManifest>),
    /// A type the client recognises but does not read (schema 1, or an unknown type).
    Legacy {
        /// The media type it came as.
        media_type: String,
        /// Why it is not read, for the record.
        reason: String,
    },
}

/// Why a manifest body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {media_type} manifest: {reason}")]
pub struct ManifestError {
    /// The type it claimed or was taken for.
    pub media_type: String,
    /// What is wrong.
    pub reason: String,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<Vec<RawDescriptor>>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    urls: Vec<String>,
    platform: Option<RawPlatform>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    variant: Option<String>,
    #[serde(rename = "os.version")]
    os_version: Option<String>,
}

/// Reads a manifest body; `content_type` is the answer's `Content-Type` (parameters allowed).
pub fn parse_manifest(content_type: Option<&str>, bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let header_type = content_type
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|t| !t.is_empty());
    let fail = |media_type: &str, reason: String| ManifestError {
        media_type: media_type.to_owned(),
        reason,
    };
    let claimed = header_type.clone().unwrap_or_else(|| "unknown".into());
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|err| fail(&claimed, err.to_string()))?;
    if raw.schema_version == Some(1) {
        return Ok(Manifest::Legacy {
            media_type: raw
                .media_type
                .or(header_type)
                .unwrap_or_else(|| DOCKER_SCHEMA1.into()),
            reason: "Docker schema 1 manifest: no config blob, no diff_ids".into(),
        });
    }
    // The body is what the digest covers, so its own mediaType wins over the header.
    let media_type = match raw.media_type.clone().or(header_type) {
        Some(t) if t != "application/json" && t != "application/octet-stream" => t,
        _ if raw.manifests.is_some() => OCI_INDEX.into(),
        _ if raw.config.is_some() => OCI_MANIFEST.into(),
        _ => return Err(fail(&claimed, "neither manifests nor config".into())),
    };
    match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => {
            let entries = raw
                .manifests
                .ok_or_else(|| fail(&media_type, "no manifests list".into()))?;
            let manifests = descriptors(entries, &media_type, "manifests")?;
            Ok(Manifest::Index(Index {
                media_type,
                manifests,
            }))
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = raw
                .config
                .ok_or_else(|| fail(&media_type, "no config descriptor".into()))?;
            let config = descriptor(config)
                .map_err(|reason| fail(&media_type, format!("config: {reason}")))?;
            let layers = descriptors(raw.layers.unwrap_or_default(), &media_type, "layers")?;
            Ok(Manifest::Image(Box::new(ImageManifest {
                media_type,
                config,
                layers,
            })))
        }
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Ok(Manifest::Legacy {
            media_type,
            reason: "Docker schema 1 manifest: no config blob, no diff_ids".into(),
        }),
        other => Ok(Manifest::Legacy {
            reason: format!(
                "unsupported manifest media type {:?}",
                other.chars().take(100).collect::<String>()
            ),
            media_type: other.chars().take(100).collect(),
        }),
    }
}

fn descriptors(
    raw: Vec<RawDescriptor>,
    media_type: &str,
    field: &str,
) -> Result<Vec<Descriptor>, ManifestError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, d)| {
            descriptor(d).map_err(|reason| ManifestError {
                media_type: media_type.to_owned(),
                reason: format!("{field}[{i}]: {reason}"),
            })
        })
        .collect()
}

fn descriptor(raw: RawDescriptor) -> Result<Descriptor, String> {
    let digest = Digest::parse(&raw.digest).map_err(|err| err.to_string())?;
    Ok(Descriptor {
        media_type: raw.media_type,
        digest,
        size: raw.size,
        urls: raw.urls,
        platform: raw.platform.map(|p| {
            ImagePlatform::new(
                &p.os,
                &p.architecture,
                p.variant.as_deref(),
                p.os_version.as_deref(),
            )
        }),
        annotations: raw.annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn index_with_attestation_and_windows_entry() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
              {{"mediaType":"{OCI_MANIFEST}","digest":"{a}","size":10,
                "platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
              {{"mediaType":"{DOCKER_MANIFEST}","digest":"{b}","size":11,
                "platform":{{"os":"windows","architecture":"amd64","os.version":"10.0.17763.5458"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{c}","size":12,
                "platform":{{"os":"unknown","architecture":"unknown"}},
                "annotations":{{"vnd.docker.reference.type":"attestation-manifest",
                                "vnd.docker.reference.digest":"{a}"}}}}]}}"#,
            a = hex('a'),
            b = hex('b'),
            c = hex('c'),
        );
        let Manifest::Index(index) = parse_manifest(Some(OCI_INDEX), body.as_bytes()).unwrap()
        else {
            panic!("not an index")
        };
        let images: Vec<_> = index.images().map(|d| d.digest.to_string()).collect();
        assert_eq!(images, [hex('a'), hex('b')]);
        let attestation = index.attestations().next().unwrap();
        assert_eq!(attestation.attests().unwrap().to_string(), hex('a'));
        let windows = index.manifests[1].platform.as_ref().unwrap();
        assert_eq!(windows.to_string(), "windows/amd64 (10.0.17763.5458)");
        assert_eq!(
            index.manifests[0].platform.as_ref().unwrap().to_string(),
            "linux/arm64/v8"
        );
    }

    #[test]
    fn image_manifests_and_type_resolution() {
        let image = |media: &str| {
            format!(
                r#"{{"schemaVersion":2{media},
                   "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{c}","size":5}},
                   "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                               "digest":"{l}","size":7,"urls":["https://mcr.example/l"]}}]}}"#,
                c = hex('c'),
                l = hex('d'),
            )
        };
        // (body mediaType, Content-Type, expected type)
        let table = [
            (
                format!(r#","mediaType":"{DOCKER_MANIFEST}""#),
                None,
                DOCKER_MANIFEST,
            ),
            (
                String::new(),
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
                OCI_MANIFEST,
            ),
            (String::new(), None, OCI_MANIFEST),
            (String::new(), Some("application/json"), OCI_MANIFEST),
            // The body wins over a header that disagrees.
            (
                format!(r#","mediaType":"{DOCKER_MANIFEST}""#),
                Some(OCI_MANIFEST),
                DOCKER_MANIFEST,
            ),
        ];
        for (media, header, want) in table {
            let Manifest::Image(m) = parse_manifest(header, image(&media).as_bytes()).unwrap()
            else {
                panic!("not an image: {media} {header:?}")
            };
            assert_eq!(m.media_type, want, "{media} {header:?}");
            assert_eq!(m.config.digest.to_string(), hex('c'));
            assert_eq!(m.layers[0].urls, ["https://mcr.example/l"]);
            assert!(!m.is_attestation());
        }
    }

    #[test]
    fn attestation_manifest() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
               "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{c}","size":5}},
               "layers":[{{"mediaType":"{IN_TOTO}","digest":"{l}","size":7}}]}}"#,
            c = hex('c'),
            l = hex('d'),
        );
        let Manifest::Image(m) = parse_manifest(None, body.as_bytes()).unwrap() else {
            panic!()
        };
        assert!(m.is_attestation());
    }

    #[test]
    fn legacy_and_malformed() {
        let schema1 = r#"{"schemaVersion":1,"name":"library/x","tag":"1","fsLayers":[]}"#;
        assert!(matches!(
            parse_manifest(Some(DOCKER_SCHEMA1_SIGNED), schema1.as_bytes()).unwrap(),
            Manifest::Legacy { media_type, .. } if media_type == DOCKER_SCHEMA1_SIGNED
        ));
        assert!(matches!(
            parse_manifest(Some("application/vnd.example+json"), br#"{"schemaVersion":2}"#).unwrap(),
            Manifest::Legacy { reason, .. } if reason.contains("unsupported")
        ));
        let table: [(&[u8], &str); 5] = [
            (b"not json", "unknown"),
            (b"{}", "neither manifests nor config"),
            (
                br#"{"mediaType":"application/vnd.oci.image.index.v1+json","config":{"digest":"x"}}"#,
                "no manifests list",
            ),
            (
                br#"{"manifests":[{"digest":"sha256:00"}]}"#,
                "manifests[0]",
            ),
            (
                br#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#,
                "no config",
            ),
        ];
        for (body, want) in table {
            let err = parse_manifest(None, body).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}

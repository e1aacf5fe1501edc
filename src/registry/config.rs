//! Image configs (the blob whose digest is the image ID) and layer chains.
//!
//! Facts relied on (OCI image spec, Docker image spec v1.2):
//! - the image ID is the digest of the config blob, which is the manifest's `config.digest`;
//! - `rootfs.type` is `layers` and `rootfs.diff_ids` lists the digests of the *uncompressed*
//!   layer tars, bottom first (the manifest's layer digests are of the compressed blobs);
//! - the platform is `os`, `architecture`, optional `variant` and, for Windows, `os.version`;
//! - ChainID(L0) = DiffID(L0); ChainID(L0..Ln) = sha256 of the text
//!   `"<ChainID(L0..Ln-1)> <DiffID(Ln)>"` (digests written `sha256:<hex>`). A derived image's
//!   diff_ids start with its base's, so their chains share a prefix.

use serde::Deserialize;

use super::content::sha256;
use super::manifest::ImagePlatform;
use crate::model::Digest;

/// What an image config says about the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    /// The platform the image was built for.
    pub platform: ImagePlatform,
    /// Digests of the uncompressed layers, bottom first.
    pub diff_ids: Vec<Digest>,
    /// The `created` timestamp as written, if any.
    pub created: Option<String>,
}

impl ImageConfig {
    /// ChainIDs of every prefix of the layer stack: `[i]` is the chain of layers `0..=i`.
    pub fn chain_ids(&self) -> Vec<Digest> {
        chain_ids(&self.diff_ids)
    }

    /// The ChainID of the whole stack (`None` for an image without layers).
    pub fn chain_id(&self) -> Option<Digest> {
        self.chain_ids().pop()
    }
}

/// Why a config could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not a JSON object of the config's shape.
    #[error("not an image config: {0}")]
    Json(String),
    /// `rootfs.type` is not `layers`.
    #[error("rootfs.type is {0:?}, not \"layers\"")]
    RootfsType(String),
    /// A `diff_ids` entry is not a sha256 digest.
    #[error("rootfs.diff_ids[{index}]: {reason}")]
    DiffId {
        /// Position in the list.
        index: usize,
        /// Why it was refused.
        reason: String,
    },
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    variant: Option<String>,
    #[serde(rename = "os.version")]
    os_version: Option<String>,
    created: Option<String>,
    rootfs: RawRootfs,
}

#[derive(Deserialize)]
struct RawRootfs {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// Reads a config blob.
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig, ConfigError> {
    let raw: RawConfig =
        serde_json::from_slice(bytes).map_err(|err| ConfigError::Json(err.to_string()))?;
    if raw.rootfs.kind != "layers" {
        return Err(ConfigError::RootfsType(
            raw.rootfs.kind.chars().take(50).collect(),
        ));
    }
    let diff_ids = raw
        .rootfs
        .diff_ids
        .iter()
        .enumerate()
        .map(|(index, text)| {
            Digest::parse(text).map_err(|err| ConfigError::DiffId {
                index,
                reason: err.to_string(),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(ImageConfig {
        platform: ImagePlatform::new(
            &raw.os,
            &raw.architecture,
            raw.variant.as_deref(),
            raw.os_version.as_deref(),
        ),
        diff_ids,
        created: raw.created,
    })
}

/// ChainIDs of every prefix of `diff_ids` (bottom first): `[i]` is the chain of `0..=i`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => *diff_id,
            Some(parent) => sha256(format!("{parent} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(hex_char: char) -> Digest {
        Digest::parse(&format!("sha256:{}", hex_char.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn chains() {
        assert!(chain_ids(&[]).is_empty());
        assert_eq!(chain_ids(&[d('a')]), vec![d('a')]);
        let two = chain_ids(&[d('a'), d('b')]);
        let text = format!("sha256:{} sha256:{}", "a".repeat(64), "b".repeat(64));
        assert_eq!(two, vec![d('a'), sha256(text.as_bytes())]);
        let three = chain_ids(&[d('a'), d('b'), d('c')]);
        assert_eq!(&three[..2], &two[..]);
        assert_eq!(
            three[2],
            sha256(format!("{} {}", two[1], d('c')).as_bytes())
        );
    }

    #[test]
    fn known_chain_id() {
        // Computed independently: printf 'sha256:aaa…a sha256:bbb…b' | sha256sum
        assert_eq!(
            chain_ids(&[d('a'), d('b')])[1].to_string(),
            "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c"
        );
    }

    #[test]
    fn configs() {
        let linux = format!(
            r#"{{"architecture":"arm","variant":"v7","os":"linux","created":"2024-01-01T00:00:00Z",
               "config":{{"Env":["PATH=/bin"]}},
               "rootfs":{{"type":"layers","diff_ids":["sha256:{}","sha256:{}"]}}}}"#,
            "a".repeat(64),
            "b".repeat(64)
        );
        let config = parse_config(linux.as_bytes()).unwrap();
        assert_eq!(config.platform.to_string(), "linux/arm/v7");
        assert_eq!(config.diff_ids, vec![d('a'), d('b')]);
        assert_eq!(config.chain_id(), Some(config.chain_ids()[1]));
        assert_eq!(config.created.as_deref(), Some("2024-01-01T00:00:00Z"));

        let windows = format!(
            r#"{{"architecture":"amd64","os":"windows","os.version":"10.0.20348.2340",
               "rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}}}}"#,
            "c".repeat(64)
        );
        let config = parse_config(windows.as_bytes()).unwrap();
        assert_eq!(
            config.platform.os_version.as_deref(),
            Some("10.0.20348.2340")
        );

        let table = [
            ("[]", "not an image config"),
            ("{}", "not an image config"),
            (
                r#"{"rootfs":{"type":"tarsum","diff_ids":[]}}"#,
                "rootfs.type",
            ),
            (
                r#"{"rootfs":{"type":"layers","diff_ids":["md5:00"]}}"#,
                "rootfs.diff_ids[0]",
            ),
        ];
        for (text, want) in table {
            let err = parse_config(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}

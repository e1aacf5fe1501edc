//! Saved images: what `docker save`, `skopeo copy … oci-archive:` and friends write, read into
//! [`SavedImage`]s without extracting anything.
//!
//! Facts relied on (Docker's `image/tarexport`, the OCI image layout spec):
//! - legacy `docker save` (before Docker 25): `manifest.json` is a JSON array with one entry per
//!   image, `{"Config": "<id>.json", "RepoTags": [...], "Layers": ["<dir>/layer.tar", ...]}`; the
//!   config member's bytes are the config blob, so their sha256 is the image ID. Layers shared
//!   between images may be symbolic links to another `layer.tar`;
//! - Docker 25+ writes an OCI image layout beside it: `oci-layout`, `index.json`,
//!   `blobs/sha256/<hex>`; `manifest.json`'s `Config` and `Layers` then name blobs;
//! - a save from the containerd image store is the same layout with layers kept as pushed
//!   (gzip or zstd), and an index whose platforms may be partly absent (only what was pulled);
//! - an OCI layout (a folder, or a tar of one: `oci-archive`) has only `index.json`, whose
//!   descriptors lead to indexes, manifests and configs in `blobs/<algorithm>/<hex>`;
//! - configs and manifests are JSON objects, so their first byte is `{`; layer tars start with a
//!   member name, gzip with `1f 8b`, zstd with `28 b5 2f fd`.
//!
//! So a tarball is read in one pass, keeping only members whose first byte is `{` or `[` and that
//! fit [`MAX_JSON`] (at most [`MAX_KEPT`] in all), and the names of all (at most [`MAX_NAMES`]);
//! every other member is passed over (seeked in a file, read through on a pipe). A blob named by its digest is checked against it. Links,
//! devices, duplicate names, names leaving the archive, and members too large are errors when
//! they stand where a document is needed; a duplicate name is always an error (which of the two a
//! tool would take is not defined).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::path::Path;

use super::SavedImage;
use super::tar::{MemberKind, Source, TarError, TarReader};
use crate::model::Digest;
use crate::registry::config::parse_config;
use crate::registry::content::sha256;
use crate::registry::manifest::{self, Manifest, parse_manifest};

/// Largest `manifest.json`, `index.json`, manifest or config read (a real config is a few KB,
/// rarely a few hundred with a long history).
pub const MAX_JSON: u64 = 16 << 20;
/// Most bytes of such documents kept from one archive.
pub const MAX_KEPT: u64 = 64 << 20;
/// Most bytes of member names remembered (to find duplicates and the documents named): a saved
/// image's names are under 100 bytes each, a few per layer.
pub const MAX_NAMES: usize = 16 << 20;
/// Deepest nesting of indexes followed from `index.json`.
const MAX_DEPTH: usize = 4;

/// Why a saved image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    /// The archive itself.
    #[error(transparent)]
    Tar(#[from] TarError),
    /// Reading a file of a layout folder.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file, inside the archive or folder.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// What the archive holds is not a saved image, or not a sound one.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(text: impl Into<String>) -> SavedError {
    SavedError::Invalid(text.into())
}

/// A member as the one pass left it.
enum Entry {
    /// A JSON document, kept.
    Kept(Vec<u8>),
    /// A regular file passed over: too large, or not JSON.
    Passed { size: u64, json: bool },
    /// A link, never followed.
    Link,
    /// A device, FIFO or folder.
    NotFile,
}

/// Reads a tarball (plain; the caller decompresses) into its images.
pub fn read_tar(source: impl Source) -> Result<Vec<SavedImage>, SavedError> {
    let mut reader = TarReader::new(source);
    let mut entries: HashMap<String, Entry> = HashMap::new();
    let mut kept: u64 = 0;
    let mut names: usize = 0;
    while let Some(member) = reader.next_member()? {
        names += member.name.len();
        if names > MAX_NAMES {
            return Err(invalid(format!(
                "its member names add up to more than {} MiB: not a saved image",
                MAX_NAMES >> 20
            )));
        }
        let entry = match member.kind {
            MemberKind::Directory => continue,
            MemberKind::Link => Entry::Link,
            MemberKind::Other => Entry::NotFile,
            MemberKind::File => {
                let mut first = [0u8; 1];
                let n = reader.read_data(&mut first)?;
                // Manifests and configs are objects; manifest.json is an array.
                let json = n == 1 && matches!(first[0], b'{' | b'[');
                if json && member.size <= MAX_JSON {
                    kept += member.size;
                    if kept > MAX_KEPT {
                        return Err(invalid(format!(
                            "its JSON members add up to more than {} MiB: not a saved image",
                            MAX_KEPT >> 20
                        )));
                    }
                    let mut data = first[..n].to_vec();
                    data.extend(reader.read_all_data()?);
                    Entry::Kept(data)
                } else {
                    Entry::Passed {
                        size: member.size,
                        json,
                    }
                }
            }
        };
        if entries.insert(member.name.clone(), entry).is_some() {
            return Err(invalid(format!(
                "member {:?} appears twice: which one a tool would take is not defined",
                member.name
            )));
        }
    }
    let mut archive = Archive { entries };
    if archive.entries.contains_key("manifest.json") {
        docker_save(&mut archive)
    } else if archive.entries.contains_key("index.json") {
        oci_layout(&mut archive)
    } else {
        Err(invalid(
            "it holds neither manifest.json (docker save) nor index.json (OCI layout): not a saved image",
        ))
    }
}

/// Reads an OCI image layout folder.
pub fn read_layout_dir(dir: &Path) -> Result<Vec<SavedImage>, SavedError> {
    if !dir.join("index.json").exists() {
        return Err(invalid(
            "a folder without index.json: not an OCI image layout",
        ));
    }
    oci_layout(&mut Folder { dir })
}

/// Where documents come from: the kept members of an archive, or files of a layout folder.
trait Documents {
    /// The document at `path`, at most [`MAX_JSON`] bytes; `None` when there is no such file.
    fn document(&mut self, path: &str) -> Result<Option<Vec<u8>>, SavedError>;
}

struct Archive {
    entries: HashMap<String, Entry>,
}

impl Documents for Archive {
    fn document(&mut self, path: &str) -> Result<Option<Vec<u8>>, SavedError> {
        let path = path.trim_start_matches("./");
        match self.entries.get(path) {
            None => Ok(None),
            Some(Entry::Kept(bytes)) => Ok(Some(bytes.clone())),
            Some(Entry::Passed { size, json: true }) => Err(invalid(format!(
                "{path} is {size} bytes, more than the {} MiB such a document may have",
                MAX_JSON >> 20
            ))),
            Some(Entry::Passed { .. }) => Err(invalid(format!("{path} is not a JSON document"))),
            Some(Entry::Link) => Err(invalid(format!(
                "{path} is a link; links are never followed"
            ))),
            Some(Entry::NotFile) => Err(invalid(format!("{path} is not a regular file"))),
        }
    }
}

struct Folder<'a> {
    dir: &'a Path,
}

impl Documents for Folder<'_> {
    fn document(&mut self, path: &str) -> Result<Option<Vec<u8>>, SavedError> {
        if path.starts_with('/') || path.split('/').any(|p| p == "..") {
            return Err(invalid(format!("{path:?} leaves the layout folder")));
        }
        let full = self.dir.join(path);
        let io = |source| SavedError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = match fs::symlink_metadata(&full) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        if meta.file_type().is_symlink() {
            return Err(invalid(format!(
                "{path} is a symbolic link; links are never followed"
            )));
        }
        if !meta.is_file() {
            return Err(invalid(format!("{path} is not a regular file")));
        }
        if meta.len() > MAX_JSON {
            return Err(invalid(format!(
                "{path} is {} bytes, more than the {} MiB such a document may have",
                meta.len(),
                MAX_JSON >> 20
            )));
        }
        let mut bytes = Vec::new();
        fs::File::open(&full)
            .and_then(|f| f.take(MAX_JSON + 1).read_to_end(&mut bytes))
            .map_err(io)?;
        if bytes.len() as u64 > MAX_JSON {
            return Err(invalid(format!(
                "{path} grew beyond {} MiB",
                MAX_JSON >> 20
            )));
        }
        Ok(Some(bytes))
    }
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// A blob by digest, checked against it.
fn blob(docs: &mut impl Documents, digest: &Digest) -> Result<Option<Vec<u8>>, SavedError> {
    let path = blob_path(digest);
    let Some(bytes) = docs.document(&path)? else {
        return Ok(None);
    };
    let actual = sha256(&bytes);
    if actual != *digest {
        return Err(invalid(format!(
            "{path} is damaged: its content has digest {actual}"
        )));
    }
    Ok(Some(bytes))
}

/// The image a config's bytes describe.
fn image_from_config(
    bytes: &[u8],
    what: &str,
    repo_tags: Vec<String>,
    manifest_digest: Option<Digest>,
) -> Result<SavedImage, SavedError> {
    let config = parse_config(bytes).map_err(|e| invalid(format!("{what}: {e}")))?;
    Ok(SavedImage {
        label: String::new(),
        image_id: Some(sha256(bytes)),
        digests: manifest_digest.into_iter().collect(),
        diff_ids: Some(config.diff_ids),
        platform: Some(config.platform.to_string()),
        repo_tags,
    })
}

#[derive(serde::Deserialize)]
struct SaveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

fn docker_save(archive: &mut Archive) -> Result<Vec<SavedImage>, SavedError> {
    let bytes = archive
        .document("manifest.json")?
        .ok_or_else(|| invalid("manifest.json is missing"))?;
    let entries: Vec<SaveEntry> = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("manifest.json is not a docker save manifest: {e}")))?;
    if entries.is_empty() {
        return Err(invalid("manifest.json lists no image"));
    }
    // Docker 25+ also writes index.json: its manifests give each config's manifest digest.
    let manifests = if archive.entries.contains_key("index.json") {
        manifest_digests(archive)?
    } else {
        BTreeMap::new()
    };
    let mut images = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let what = format!("manifest.json entry {}", i + 1);
        let config = archive.document(&entry.config)?.ok_or_else(|| {
            invalid(format!(
                "{what} names the config {:?}, which the archive does not hold",
                entry.config
            ))
        })?;
        // A config named by its digest (`<hex>.json`, `blobs/sha256/<hex>`) must be that digest.
        let named = entry
            .config
            .rsplit('/')
            .next()
            .map(|name| name.trim_end_matches(".json"))
            .filter(|hex| hex.len() == 64)
            .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok());
        let id = sha256(&config);
        if let Some(named) = named
            && named != id
        {
            return Err(invalid(format!(
                "{} is damaged: its content has digest {id}",
                entry.config
            )));
        }
        let mut image = image_from_config(
            &config,
            &entry.config,
            entry.repo_tags.unwrap_or_default(),
            manifests.get(&id).copied(),
        )?;
        let diff_ids = image.diff_ids.as_ref().map_or(0, Vec::len);
        if entry.layers.len() != diff_ids {
            return Err(invalid(format!(
                "{what} lists {} layers, but its config has {diff_ids} diff_ids",
                entry.layers.len()
            )));
        }
        image.label = format!("image {} of manifest.json", i + 1);
        images.push(image);
    }
    Ok(images)
}

/// Config digest → manifest digest, for every image manifest reachable from `index.json`.
fn manifest_digests(archive: &mut Archive) -> Result<BTreeMap<Digest, Digest>, SavedError> {
    let mut out = BTreeMap::new();
    walk_index(archive, &mut |digest, manifest, _docs| {
        out.insert(manifest.config.digest, digest);
        Ok(())
    })?;
    Ok(out)
}

/// Calls `found` for every image manifest reachable from `index.json` (attestations and
/// manifests absent from a partial save left out).
fn walk_index<D: Documents>(
    docs: &mut D,
    found: &mut dyn FnMut(Digest, &manifest::ImageManifest, &mut D) -> Result<(), SavedError>,
) -> Result<(), SavedError> {
    let bytes = docs
        .document("index.json")?
        .ok_or_else(|| invalid("index.json is missing"))?;
    let top = match parse_manifest(Some(manifest::OCI_INDEX), &bytes)
        .map_err(|e| invalid(format!("index.json: {e}")))?
    {
        Manifest::Index(index) => index,
        _ => return Err(invalid("index.json is not an OCI index")),
    };
    let mut stack: Vec<(manifest::Descriptor, usize)> =
        top.images().cloned().map(|d| (d, 1)).collect();
    stack.reverse();
    let mut seen = std::collections::BTreeSet::new();
    while let Some((descriptor, depth)) = stack.pop() {
        if !seen.insert(descriptor.digest) {
            continue;
        }
        let Some(bytes) = blob(docs, &descriptor.digest)? else {
            // A containerd save holds only the platforms that were pulled.
            continue;
        };
        let what = blob_path(&descriptor.digest);
        match parse_manifest(Some(&descriptor.media_type), &bytes)
            .map_err(|e| invalid(format!("{what}: {e}")))?
        {
            Manifest::Index(index) => {
                if depth >= MAX_DEPTH {
                    return Err(invalid(format!(
                        "{what}: indexes nested more than {MAX_DEPTH} deep"
                    )));
                }
                let mut children: Vec<_> =
                    index.images().cloned().map(|d| (d, depth + 1)).collect();
                children.reverse();
                stack.extend(children);
            }
            Manifest::Image(image) if image.is_attestation() => {}
            Manifest::Image(image) => found(descriptor.digest, &image, docs)?,
            Manifest::Legacy { reason, .. } => {
                return Err(invalid(format!("{what}: {reason}")));
            }
        }
    }
    Ok(())
}

fn oci_layout<D: Documents>(docs: &mut D) -> Result<Vec<SavedImage>, SavedError> {
    let mut images = Vec::new();
    walk_index(docs, &mut |digest, manifest, docs| {
        let config_digest = manifest.config.digest;
        let what = blob_path(&config_digest);
        let config = blob(docs, &config_digest)?.ok_or_else(|| {
            invalid(format!(
                "the manifest {digest} names the config {config_digest}, which is not in it"
            ))
        })?;
        let mut image = image_from_config(&config, &what, Vec::new(), Some(digest))?;
        let diff_ids = image.diff_ids.as_ref().map_or(0, Vec::len);
        if manifest.layers.len() != diff_ids {
            return Err(invalid(format!(
                "the manifest {digest} lists {} layers, but its config has {diff_ids} diff_ids",
                manifest.layers.len()
            )));
        }
        image.label = format!("manifest {digest}");
        images.push(image);
        Ok(())
    })?;
    if images.is_empty() {
        return Err(invalid("index.json leads to no image manifest held here"));
    }
    Ok(images)
}

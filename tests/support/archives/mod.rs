//! Saved images as `docker save`, containerd, skopeo and `docker image inspect` write them, built
//! from the images of [`super::registry::image`] (real tar layers, full configs), for
//! `identify`'s tests; plus a tar writer free enough to write hostile archives.
//!
//! Layouts (see `src/identify/saved.rs` for the facts):
//! - [`legacy`]: `docker save` before Docker 25: `<layer id>/layer.tar` (a layer shared with an
//!   earlier image of the same tarball is a symbolic link to the first, as Docker writes it),
//!   `<config hex>.json`, `manifest.json`, `repositories`;
//! - [`docker25`]: Docker 25+ with the classic store: an OCI layout of uncompressed layer blobs
//!   (their digest is the diff_id), a manifest written for them, `index.json`, `manifest.json`;
//! - [`containerd`]: Docker with the containerd image store: the registry's index, manifests and
//!   gzip layers as pulled, only some platforms present, `index.json` naming the index;
//! - [`oci_layout`] / [`oci_archive`]: what `skopeo copy … oci:` / `oci-archive:` write.

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};

use super::registry::image::{BuiltImage, BuiltIndex, digest_of};

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

/// Writes tar archives member by member, including members no sound tool would write.
#[derive(Default)]
pub struct TarWriter {
    /// The archive so far.
    pub bytes: Vec<u8>,
}

impl TarWriter {
    /// A header for `name` claiming `size` bytes, with `typeflag` and `link` target.
    pub fn header(&mut self, name: &str, size: u64, typeflag: u8, link: &str) {
        let mut h = [0u8; 512];
        let name = name.as_bytes();
        if name.len() > 100 {
            // GNU long name: a `L` member holding it.
            let mut long = name.to_vec();
            long.push(0);
            self.header("././@LongLink", long.len() as u64, b'L', "");
            self.data(&long);
            h[..100].copy_from_slice(&name[..100]);
        } else {
            h[..name.len()].copy_from_slice(name);
        }
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        if size < 8u64.pow(11) {
            h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        } else {
            h[124] = 0x80;
            h[128..136].copy_from_slice(&size.to_be_bytes());
        }
        h[136..148].copy_from_slice(b"14000000000\0");
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.bytes.extend_from_slice(&h);
    }

    /// Member data, padded to a whole block.
    pub fn data(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        self.bytes.resize(self.bytes.len().next_multiple_of(512), 0);
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, data: &[u8]) {
        self.header(name, data.len() as u64, b'0', "");
        self.data(data);
    }

    /// A folder.
    pub fn dir(&mut self, name: &str) {
        self.header(&format!("{name}/"), 0, b'5', "");
    }

    /// A symbolic link.
    pub fn symlink(&mut self, name: &str, target: &str) {
        self.header(name, 0, b'2', target);
    }

    /// The archive with its two closing blocks.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.resize(self.bytes.len() + 1024, 0);
        self.bytes
    }
}

/// An image to save, with the names `docker save` records for it.
pub struct Saved<'a> {
    /// The image.
    pub image: &'a BuiltImage,
    /// `RepoTags`.
    pub repo_tags: Vec<String>,
}

/// `docker save` before Docker 25.
pub fn legacy(images: &[Saved<'_>]) -> Vec<u8> {
    let mut tar = TarWriter::default();
    let mut manifest = Vec::new();
    let mut written: Vec<(String, String)> = Vec::new(); // diff_id → layer path
    for saved in images {
        let mut layers = Vec::new();
        let mut parent = String::new();
        for layer in &saved.image.spec.layers {
            // Docker's v1 layer IDs depend on the parent chain; any stable derivation will do.
            let id = hex(&digest_of(format!("{parent} {}", layer.diff_id).as_bytes())).to_owned();
            let path = format!("{id}/layer.tar");
            if let Some((_, first)) = written.iter().find(|(d, _)| *d == layer.diff_id) {
                if *first != path {
                    tar.dir(&id);
                    tar.symlink(&path, &format!("../{first}"));
                }
            } else {
                tar.dir(&id);
                tar.file(&format!("{id}/VERSION"), b"1.0");
                tar.file(
                    &format!("{id}/json"),
                    format!("{{\"id\":\"{id}\"}}").as_bytes(),
                );
                tar.file(&path, &layer.tar);
                written.push((layer.diff_id.clone(), path.clone()));
            }
            layers.push(path);
            parent = id;
        }
        let config = format!("{}.json", hex(&saved.image.config_digest));
        tar.file(&config, &saved.image.config);
        manifest.push(json!({"Config": config, "RepoTags": saved.repo_tags, "Layers": layers}));
    }
    tar.file("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    tar.file("repositories", b"{}");
    tar.finish()
}

/// Docker 25+ with the classic store: uncompressed layers as blobs, a manifest made for them.
pub fn docker25(images: &[Saved<'_>]) -> Vec<u8> {
    let mut tar = TarWriter::default();
    tar.dir("blobs");
    tar.dir("blobs/sha256");
    let mut blobs: Vec<String> = Vec::new();
    let mut blob = |tar: &mut TarWriter, bytes: &[u8]| -> String {
        let digest = digest_of(bytes);
        let path = format!("blobs/sha256/{}", hex(&digest));
        if !blobs.contains(&path) {
            tar.file(&path, bytes);
            blobs.push(path.clone());
        }
        path
    };
    let mut manifest = Vec::new();
    let mut index = Vec::new();
    for saved in images {
        let layers: Vec<String> = saved
            .image
            .spec
            .layers
            .iter()
            .map(|l| blob(&mut tar, &l.tar))
            .collect();
        let config = blob(&mut tar, &saved.image.config);
        let oci = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": saved.image.config_digest, "size": saved.image.config.len()},
            "layers": saved.image.spec.layers.iter().map(|l| json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": l.diff_id, "size": l.tar.len()})).collect::<Vec<_>>(),
        }))
        .unwrap();
        blob(&mut tar, &oci);
        index.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest_of(&oci), "size": oci.len(),
            "annotations": {"io.containerd.image.name": saved.repo_tags.first()},
        }));
        manifest.push(json!({"Config": config, "RepoTags": saved.repo_tags, "Layers": layers}));
    }
    tar.file(
        "index.json",
        &serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index})).unwrap(),
    );
    tar.file("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    tar.file("repositories", b"{}");
    tar.finish()
}

/// Docker with the containerd image store: the index as pulled, with only the platforms in
/// `present` (positions in the index) held, gzip layers as pushed.
pub fn containerd(index: &BuiltIndex, present: &[usize], repo_tag: &str) -> Vec<u8> {
    let mut tar = TarWriter::default();
    let put = |tar: &mut TarWriter, digest: &str, bytes: &[u8]| {
        tar.file(&format!("blobs/sha256/{}", hex(digest)), bytes);
    };
    let mut manifest = Vec::new();
    for &i in present {
        let image = &index.images[i];
        for layer in &image.spec.layers {
            put(&mut tar, &layer.digest, &layer.blob);
        }
        put(&mut tar, &image.config_digest, &image.config);
        put(&mut tar, &image.digest, &image.manifest);
        manifest.push(json!({
            "Config": format!("blobs/sha256/{}", hex(&image.config_digest)),
            "RepoTags": [repo_tag],
            "Layers": image.spec.layers.iter().map(|l| format!("blobs/sha256/{}", hex(&l.digest))).collect::<Vec<_>>(),
        }));
    }
    for attestation in &index.attestations {
        put(&mut tar, &attestation.digest, &attestation.manifest);
    }
    put(&mut tar, &index.digest, &index.bytes);
    tar.file(
        "index.json",
        &top_index(&index.digest, index.media_type, index.bytes.len(), repo_tag),
    );
    tar.file("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    tar.finish()
}

fn top_index(digest: &str, media_type: &str, size: usize, name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": media_type, "digest": digest, "size": size,
                       "annotations": {"org.opencontainers.image.ref.name": name}}],
    }))
    .unwrap()
}

/// The files of an OCI layout holding `image` (gzip layers, as pushed): (path, bytes).
pub fn oci_files(image: &BuiltImage) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![(
        "oci-layout".to_owned(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    )];
    for layer in &image.spec.layers {
        files.push((
            format!("blobs/sha256/{}", hex(&layer.digest)),
            layer.blob.clone(),
        ));
    }
    files.push((
        format!("blobs/sha256/{}", hex(&image.config_digest)),
        image.config.clone(),
    ));
    files.push((
        format!("blobs/sha256/{}", hex(&image.digest)),
        image.manifest.clone(),
    ));
    files.push((
        "index.json".to_owned(),
        top_index(
            &image.digest,
            image.media_type,
            image.manifest.len(),
            "latest",
        ),
    ));
    files
}

/// An OCI layout folder at `dir`.
pub fn oci_layout(dir: &Path, image: &BuiltImage) {
    for (path, bytes) in oci_files(image) {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// An `oci-archive`: the layout as a tarball.
pub fn oci_archive(image: &BuiltImage) -> Vec<u8> {
    let mut tar = TarWriter::default();
    for (path, bytes) in oci_files(image) {
        tar.file(&path, &bytes);
    }
    tar.finish()
}

/// gzip of `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `docker image inspect` output for `images` (as an array).
pub fn inspect(images: &[Saved<'_>]) -> Vec<u8> {
    let items: Vec<Value> = images
        .iter()
        .map(|s| {
            json!({
                "Id": s.image.config_digest,
                "RepoTags": s.repo_tags,
                "RepoDigests": [],
                "Os": s.image.spec.os,
                "Architecture": s.image.spec.architecture,
                "RootFS": {"Type": "layers", "Layers": s.image.diff_ids()},
            })
        })
        .collect();
    serde_json::to_vec_pretty(&items).unwrap()
}

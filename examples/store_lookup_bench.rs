//! Benchmark of `identify` answering from the store: lookups per second against a store of one
//! million image chains, built through the store API the way `crawl` and `enrich` write it.
//!
//! The synthetic store: 100 base images of one layer, 10,000 images of two layers on them, and
//! the rest (to `--images N`, default 1,000,000) of three layers on those; each with its
//! manifest, its config (diff_ids, so the `chains` table holds every prefix) and a tag pointing
//! at it (1,000 repositories of 1,000 tags). The questions: user images built FROM random
//! official images (their chain plus one layer of their own), identified as the command does
//! (prepare the index for the questions, then `matching::identify` each).
//!
//! `cargo run --release --example store_lookup_bench [-- --images N --queries Q]` prints the
//! time to build the store, its size, the one-time preparation (the pass over `manifests`, the
//! count of images not enriched), then identifications and ChainID lookups per second. The store
//! lives in a temporary folder, removed at the end.

use std::time::Instant;

use digestmap::dataset::images::Wanted;
use digestmap::hub::{DigestFact, TagObservation};
use digestmap::identify::SavedImage;
use digestmap::identify::matching::{self, ImageIndex};
use digestmap::model::{Digest, ObjectKind, Platform, RepoName};
use digestmap::registry::chain_ids;
use digestmap::store::images::StoreImages;
use digestmap::store::{ConfigRecord, LayerRef, ManifestFact, ManifestRecord, Store};
use sha2::{Digest as _, Sha256};

const BASES: usize = 100;
const MIDS: usize = 10_000;
const BATCH: usize = 10_000;

fn digest(kind: &str, n: usize) -> Digest {
    Digest::from_bytes(Sha256::digest(format!("{kind}:{n}")).into())
}

/// Image `i`'s diff_ids, bottom first.
fn layers(i: usize) -> Vec<Digest> {
    if i < BASES {
        vec![digest("os", i)]
    } else if i < BASES + MIDS {
        vec![digest("os", i % BASES), digest("mid", i)]
    } else {
        let mid = BASES + i % MIDS;
        vec![
            digest("os", mid % BASES),
            digest("mid", mid),
            digest("own", i),
        ]
    }
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// A small deterministic generator (xorshift), so that runs ask the same questions.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let images = arg(&args, "--images", 1_000_000).max(BASES + MIDS);
    let queries = arg(&args, "--queries", 10_000);
    let dir = std::env::temp_dir().join(format!("digestmap-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the temporary folder");
    let path = dir.join("store.redb");
    let result = std::panic::catch_unwind(|| run(&path, images, queries));
    std::fs::remove_dir_all(&dir).expect("remove the temporary folder");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn run(path: &std::path::Path, images: usize, queries: usize) {
    let store = Store::open(path).expect("open the store");
    let platform = Platform::new("linux", "amd64", None);
    let started = Instant::now();
    let mut chain_entries = 0u64;
    for start in (0..images).step_by(BATCH) {
        let end = (start + BATCH).min(images);
        store
            .write(|w| {
                for i in start..end {
                    let diff_ids = layers(i);
                    chain_entries += diff_ids.len() as u64;
                    w.put_manifest(
                        &digest("manifest", i),
                        &ManifestRecord {
                            fact: ManifestFact::Image {
                                config: digest("config", i),
                                layers: diff_ids
                                    .iter()
                                    .map(|d| LayerRef {
                                        digest: *d,
                                        size: 1 << 20,
                                        media_type: "application/vnd.oci.image.layer.v1.tar+gzip"
                                            .into(),
                                    })
                                    .collect(),
                            },
                            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                            via: None,
                            learned_at: 1_700_000_000,
                        },
                    )?;
                    w.put_config(
                        &digest("config", i),
                        &ConfigRecord {
                            platform: Some(platform.clone()),
                            os_version: None,
                            chain_id: chain_ids(&diff_ids).last().copied(),
                            diff_ids,
                            created: None,
                            learned_at: 1_700_000_000,
                        },
                    )?;
                }
                // The tags: repository `r{i / 1000}`, tag `t{i}`, on the image's manifest.
                for first in (start..end).step_by(1000) {
                    let repo = RepoName::new("library", &format!("r{}", first / 1000))
                        .expect("a repository name");
                    let tags: Vec<TagObservation> = (first..(first + 1000).min(end))
                        .map(|i| TagObservation {
                            tag: format!("t{i}"),
                            digest: Some(digest("manifest", i)),
                            pushed: None,
                            updated: None,
                            facts: vec![DigestFact {
                                digest: digest("manifest", i),
                                kind: ObjectKind::Manifest,
                                platform: Some(platform.clone()),
                                os_version: None,
                                index: None,
                            }],
                        })
                        .collect();
                    w.record_tags(&repo, &tags, 1_700_000_000, 1)?;
                }
                Ok(())
            })
            .expect("write a batch");
    }
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    println!(
        "built {images} images ({chain_entries} chain entries, every prefix) in {:.1} s; store {:.0} MB",
        started.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );

    // The questions: user images FROM random official images (their layers plus one).
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let asked: Vec<SavedImage> = (0..queries)
        .map(|q| {
            let base = rng.below(images);
            let mut diff_ids = layers(base);
            diff_ids.push(digest("user", q));
            SavedImage {
                label: format!("user image {q}"),
                image_id: Some(digest("user-config", q)),
                digests: Vec::new(),
                diff_ids: Some(diff_ids),
                platform: Some("linux/amd64".into()),
                repo_tags: Vec::new(),
            }
        })
        .collect();
    let whole: Vec<Digest> = (0..queries)
        .map(|_| {
            *chain_ids(&layers(rng.below(images)))
                .last()
                .expect("a chain")
        })
        .collect();
    let mut wanted = Wanted::default();
    wanted.chains.extend(&whole);
    for image in &asked {
        wanted.digests.extend(image.image_id);
        wanted
            .chains
            .extend(chain_ids(image.diff_ids.as_deref().unwrap_or_default()));
    }

    let snapshot = store.snapshot().expect("a snapshot");
    let started = Instant::now();
    let index = StoreImages::load(&snapshot, &wanted).expect("prepare");
    let prepared = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let unenriched = index.unenriched().expect("count");
    println!(
        "prepared for {queries} questions in {prepared:.2} s (one pass over manifests); counted {unenriched} not enriched in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let mut layers_matched = 0usize;
    for image in &asked {
        let found = matching::identify(image, &index).expect("identify");
        assert_eq!(found.verdict, matching::Verdict::Base, "{}", image.label);
        layers_matched += found.ancestry[0].layers;
    }
    let wall = started.elapsed().as_secs_f64();
    let lookups: usize = asked
        .iter()
        .map(|i| i.diff_ids.as_ref().map_or(0, Vec::len))
        .sum();
    println!(
        "identified {queries} user images in {wall:.2} s: {:.0} identifications/s, {:.0} ChainID lookups/s ({lookups} lookups, {layers_matched} base layers matched)",
        queries as f64 / wall,
        lookups as f64 / wall
    );

    // ChainID lookups alone, on whole chains (one image each) and on shared bottom layers.
    let bottoms: Vec<Digest> = (0..BASES).map(|b| chain_ids(&layers(b))[0]).collect();
    for (what, chains) in [("whole chains", &whole), ("shared bottom layers", &bottoms)] {
        let started = Instant::now();
        let mut found = 0usize;
        for chain in chains {
            found += index.by_chain(chain).expect("by_chain").len();
        }
        let wall = started.elapsed().as_secs_f64();
        println!(
            "by_chain on {what}: {} lookups in {wall:.2} s, {:.0} lookups/s ({found} images found; each of the {} images sharing a bottom layer is read to see whether its chain ends there)",
            chains.len(),
            chains.len() as f64 / wall,
            images / BASES
        );
    }
}

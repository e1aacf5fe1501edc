//! The official images of a dataset file, as an [`ImageIndex`] for `identify`.
//!
//! An enriched dataset has one line of kind `config` per image ID, with `platform`,
//! `os_version`, `tags`, `current`, `manifests` (the platform manifests carrying it), `diff_ids`
//! (bottom first), `chain_id` (of the whole stack), `first_seen` and `last_seen`; its manifest
//! lines carry `image_id` and `layers`. A manifest line without `image_id`, or a config line
//! without `diff_ids` (an image ID tag the crawl saw, not enriched yet), is counted as not
//! enriched.
//!
//! The file is read once, line by line (the checks of [`super::lookup`] apply), and only what the
//! questions asked need is kept: the config lines whose image ID, manifests or whole ChainID are
//! asked for, or whose digest starts with an asked prefix; manifest lines asked for but not
//! enriched; and, for every config line, where its current tags point (to say where a moved tag
//! points now). So memory grows with the current tags, not with the file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead;

use serde_json::Value;

use super::lookup::{ReadError, read_lines};
use crate::identify::matching::{ImageIndex, OfficialImage, PrefixMatch};
use crate::model::Digest;
use crate::registry::config::chain_ids;

/// What the questions ask the dataset for.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// Image IDs and manifest digests.
    pub digests: BTreeSet<Digest>,
    /// ChainIDs of every prefix of the images' layer stacks.
    pub chains: BTreeSet<Digest>,
    /// Hex prefixes (lowercase) of bare digests.
    pub prefixes: Vec<String>,
}

/// The part of a dataset the questions need.
#[derive(Debug, Default)]
pub struct DatasetImages {
    images: Vec<OfficialImage>,
    /// Whole ChainID → positions in `images`.
    chains: HashMap<Digest, Vec<usize>>,
    /// Manifest digests asked for whose line has no image ID yet.
    unenriched_manifests: Vec<(Digest, OfficialImage)>,
    /// (`repo:tag`, platform) → the image ID the tag points at now.
    current: HashMap<(String, Option<String>), Digest>,
    /// Per asked prefix, the first two digests (image IDs or manifests) starting with it.
    prefixes: BTreeMap<String, Vec<Digest>>,
    unenriched: u64,
}

impl DatasetImages {
    /// Reads a dataset file once, keeping what `wanted` needs.
    pub fn load(mut reader: impl BufRead, wanted: &Wanted) -> Result<Self, ReadError> {
        let mut out = Self::default();
        read_lines(&mut reader, |number, line| {
            let malformed = |reason: String| ReadError::Malformed {
                line: number,
                reason,
            };
            let value: Value =
                serde_json::from_slice(line).map_err(|e| malformed(e.to_string()))?;
            out.add_line(&value, wanted).map_err(malformed)
        })?;
        Ok(out)
    }

    fn add_line(&mut self, value: &Value, wanted: &Wanted) -> Result<(), String> {
        let digest = Digest::parse(string(value, "digest")?.ok_or("no \"digest\"")?)
            .map_err(|e| e.to_string())?;
        let kind = string(value, "kind")?.ok_or("no \"kind\"")?;
        if kind == "index" {
            return Ok(());
        }
        for prefix in &wanted.prefixes {
            if digest.hex().starts_with(prefix.as_str()) {
                let hits = self.prefixes.entry(prefix.clone()).or_default();
                if hits.len() < 2 && !hits.contains(&digest) {
                    hits.push(digest);
                }
            }
        }
        let platform = string(value, "platform")?.map(str::to_owned);
        let tags = strings(value, "tags")?.unwrap_or_default();
        let current = strings(value, "current")?.unwrap_or_default();
        let image = |image_id, manifests, diff_ids| -> Result<OfficialImage, String> {
            Ok(OfficialImage {
                image_id,
                platform: platform.clone(),
                os_version: string(value, "os_version")?.map(str::to_owned),
                tags: tags.clone(),
                current: current.clone(),
                manifests,
                diff_ids,
                first_seen: string(value, "first_seen")?.unwrap_or_default().to_owned(),
                last_seen: string(value, "last_seen")?.unwrap_or_default().to_owned(),
            })
        };
        match kind {
            "manifest" => {
                if value.get("image_id").is_none_or(Value::is_null) {
                    self.unenriched += 1;
                    if wanted.digests.contains(&digest) {
                        self.unenriched_manifests
                            .push((digest, image(None, vec![digest], None)?));
                    }
                }
                Ok(())
            }
            "config" => {
                let manifests = digests(value, "manifests")?.unwrap_or_default();
                let diff_ids = digests(value, "diff_ids")?;
                let chain = diff_ids.as_deref().and_then(|ids| chain_ids(ids).pop());
                if let Some(stated) = string(value, "chain_id")? {
                    let stated = Digest::parse(stated).map_err(|e| format!("chain_id: {e}"))?;
                    if chain != Some(stated) {
                        return Err(format!(
                            "its chain_id {stated} is not the ChainID of its diff_ids"
                        ));
                    }
                }
                for tag in &current {
                    self.current.insert((tag.clone(), platform.clone()), digest);
                }
                if diff_ids.is_none() {
                    self.unenriched += 1;
                }
                let asked = wanted.digests.contains(&digest)
                    || manifests.iter().any(|m| wanted.digests.contains(m))
                    || chain.is_some_and(|c| wanted.chains.contains(&c))
                    || wanted
                        .prefixes
                        .iter()
                        .any(|p| digest.hex().starts_with(p.as_str()));
                if asked {
                    let position = self.images.len();
                    self.images.push(image(Some(digest), manifests, diff_ids)?);
                    if let Some(chain) = chain {
                        self.chains.entry(chain).or_default().push(position);
                    }
                }
                Ok(())
            }
            // A later release may add kinds: they are not images.
            _ => Ok(()),
        }
    }
}

fn string<'a>(value: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("\"{key}\" is not a string")),
    }
}

fn strings(value: &Value, key: &str) -> Result<Option<Vec<String>>, String> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| format!("\"{key}\" is not a list of strings")),
        Some(_) => Err(format!("\"{key}\" is not a list of strings")),
    }
}

fn digests(value: &Value, key: &str) -> Result<Option<Vec<Digest>>, String> {
    strings(value, key)?
        .map(|items| {
            items
                .iter()
                .enumerate()
                .map(|(i, text)| Digest::parse(text).map_err(|e| format!("{key}[{i}]: {e}")))
                .collect()
        })
        .transpose()
}

impl ImageIndex for DatasetImages {
    type Error = std::convert::Infallible;

    fn by_digest(&self, digest: &Digest) -> Result<Option<OfficialImage>, Self::Error> {
        let image = self
            .images
            .iter()
            .find(|i| i.image_id == Some(*digest))
            .or_else(|| self.images.iter().find(|i| i.manifests.contains(digest)))
            .or_else(|| {
                self.unenriched_manifests
                    .iter()
                    .find(|(d, _)| d == digest)
                    .map(|(_, i)| i)
            });
        Ok(image.cloned())
    }

    fn by_chain(&self, chain_id: &Digest) -> Result<Vec<OfficialImage>, Self::Error> {
        Ok(self
            .chains
            .get(chain_id)
            .map(|positions| positions.iter().map(|&p| self.images[p].clone()).collect())
            .unwrap_or_default())
    }

    fn current_image(
        &self,
        repo_tag: &str,
        platform: Option<&str>,
    ) -> Result<Option<Digest>, Self::Error> {
        Ok(self
            .current
            .get(&(repo_tag.to_owned(), platform.map(str::to_owned)))
            .copied())
    }

    fn resolve_prefix(&self, hex: &str) -> Result<PrefixMatch, Self::Error> {
        Ok(match self.prefixes.get(hex).map(Vec::as_slice) {
            None | Some([]) => PrefixMatch::None,
            Some([one]) => PrefixMatch::One(*one),
            Some([a, b, ..]) => PrefixMatch::Ambiguous(*a.min(b), *a.max(b)),
        })
    }

    fn unenriched(&self) -> Result<u64, Self::Error> {
        Ok(self.unenriched)
    }
}

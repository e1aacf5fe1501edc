//! The official images of a dataset file, as an [`ImageIndex`] for `identify`.
//!
//! An enriched dataset has one line of kind `config` per image ID, with `platform`,
//! `os_version`, `tags`, `current`, `manifests` (the platform manifests carrying it), `diff_ids`
//! (bottom first), `chain_id` (of the whole stack), `first_seen` and `last_seen`; its manifest
//! lines carry `image_id` and `layers`. A manifest line without `image_id`, or a config line
//! without `diff_ids` (an image ID tag the crawl saw, not enriched yet), is counted as not
//! enriched.
//!
//! An index digest has a line of kind `index`; its platform manifests are the manifest lines that
//! list it in `indexes`, and their images the config lines that list those in `manifests`.
//!
//! The file is read once, line by line (the checks of [`super::lookup`] apply), and only what the
//! questions asked need is kept: the config lines whose image ID, manifests or whole ChainID are
//! asked for, or whose digest starts with an asked prefix; manifest lines asked for but not
//! enriched; the manifest lines under an asked index (its platform manifests) and the config
//! lines of those; and, for every config line, where its current tags point (to say where a moved
//! tag points now). So memory grows with the current tags, not with the file.
//!
//! Lines are sorted by digest, so a platform image's config line may come before the manifest
//! line that shows it belongs to an asked index: [`DatasetImages::unresolved`] says when that may
//! have happened, and [`DatasetImages::read_again`] reads the file a second time for those lines
//! only (a file can be; standard input cannot).

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

impl Wanted {
    /// Whether `digest` is asked for, by itself or by a prefix.
    pub fn asks(&self, digest: &Digest) -> bool {
        self.digests.contains(digest)
            || self
                .prefixes
                .iter()
                .any(|p| digest.hex().starts_with(p.as_str()))
    }
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
    /// Per asked prefix, the first two digests (image IDs, manifests or indexes) starting with it.
    prefixes: BTreeMap<String, Vec<Digest>>,
    unenriched: u64,
    /// Asked index digest → the manifest lines listing it (its platform manifests).
    index_children: BTreeMap<Digest, BTreeSet<Digest>>,
    /// The image IDs those manifest lines name.
    child_images: BTreeSet<Digest>,
}

/// Each line of a dataset as JSON, given to `each`; a line that is not JSON, or that `each`
/// refuses (the reason), is malformed at its number.
fn read_values(
    reader: &mut impl BufRead,
    mut each: impl FnMut(&Value) -> Result<(), String>,
) -> Result<(), ReadError> {
    read_lines(reader, |number, line| {
        let malformed = |reason: String| ReadError::Malformed {
            line: number,
            reason,
        };
        let value: Value = serde_json::from_slice(line).map_err(|e| malformed(e.to_string()))?;
        each(&value).map_err(malformed)
    })
}

impl DatasetImages {
    /// Reads a dataset file once, keeping what `wanted` needs.
    pub fn load(mut reader: impl BufRead, wanted: &Wanted) -> Result<Self, ReadError> {
        let mut out = Self::default();
        read_values(&mut reader, |value| out.add_line(value, wanted, None))?;
        Ok(out)
    }

    /// The image IDs of asked indexes' platform manifests whose config lines were not kept: they
    /// came before the manifest lines that named them, or the dataset has none (a config not
    /// fetched by `enrich` yet). Empty when the one pass found everything.
    pub fn unresolved(&self) -> BTreeSet<Digest> {
        let kept: BTreeSet<Digest> = self.images.iter().filter_map(|i| i.image_id).collect();
        self.child_images.difference(&kept).copied().collect()
    }

    /// Reads the dataset a second time for the config lines [`Self::unresolved`] names, and
    /// keeps them; nothing else is read again or counted twice.
    pub fn read_again(&mut self, mut reader: impl BufRead) -> Result<(), ReadError> {
        let ids = self.unresolved();
        let wanted = Wanted::default();
        read_values(&mut reader, |value| {
            self.add_line(value, &wanted, Some(&ids))
        })
    }

    /// Reads one line: for what `wanted` asks, or on a second pass (`again`) only the config
    /// lines of these image IDs.
    fn add_line(
        &mut self,
        value: &Value,
        wanted: &Wanted,
        again: Option<&BTreeSet<Digest>>,
    ) -> Result<(), String> {
        let digest = Digest::parse(string(value, "digest")?.ok_or("no \"digest\"")?)
            .map_err(|e| e.to_string())?;
        let kind = string(value, "kind")?.ok_or("no \"kind\"")?;
        if again.is_some_and(|ids| kind != "config" || !ids.contains(&digest)) {
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
        if kind == "index" {
            return Ok(());
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
                let image_id = string(value, "image_id")?
                    .map(|id| Digest::parse(id).map_err(|e| format!("image_id: {e}")))
                    .transpose()?;
                let asked_indexes: Vec<Digest> = digests(value, "indexes")?
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|i| wanted.asks(i))
                    .collect();
                for index in &asked_indexes {
                    self.index_children
                        .entry(*index)
                        .or_default()
                        .insert(digest);
                }
                match image_id {
                    Some(id) if !asked_indexes.is_empty() => {
                        self.child_images.insert(id);
                    }
                    Some(_) => {}
                    None => {
                        self.unenriched += 1;
                        if wanted.digests.contains(&digest) || !asked_indexes.is_empty() {
                            self.unenriched_manifests
                                .push((digest, image(None, vec![digest], None)?));
                        }
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
                if again.is_none() {
                    for tag in &current {
                        self.current.insert((tag.clone(), platform.clone()), digest);
                    }
                    if diff_ids.is_none() {
                        self.unenriched += 1;
                    }
                }
                let asked = again.is_some()
                    || wanted.digests.contains(&digest)
                    || self.child_images.contains(&digest)
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

    fn index_images(&self, digest: &Digest) -> Result<Vec<OfficialImage>, Self::Error> {
        let mut images: Vec<OfficialImage> = Vec::new();
        for child in self.index_children.get(digest).into_iter().flatten() {
            if let Ok(Some(image)) = self.by_digest(child)
                && !images.contains(&image)
            {
                images.push(image);
            }
        }
        Ok(images)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn config(id: char, diff_ids: &[char], manifest: char, current: &[&str]) -> String {
        let ids: Vec<String> = diff_ids.iter().map(|c| d(*c).to_string()).collect();
        let chain = chain_ids(&diff_ids.iter().map(|c| d(*c)).collect::<Vec<_>>())
            .pop()
            .map(|c| c.to_string());
        serde_json::json!({"digest": d(id).to_string(), "kind": "config", "platform": "linux/amd64",
            "tags": ["a:1", "a:2"], "current": current, "manifests": [d(manifest).to_string()],
            "diff_ids": ids, "chain_id": chain,
            "first_seen": "2026-01-01T00:00:00Z", "last_seen": "2026-01-02T00:00:00Z"})
        .to_string()
    }

    #[test]
    fn keeps_what_is_asked_and_counts_what_is_not_enriched() {
        let lines = [
            config('1', &['a'], 'd', &["a:1"]),
            config('2', &['a', 'b'], 'e', &["a:2"]),
            config('3', &['c'], '4', &[]),
            config('5', &['c', 'c'], '6', &[]),
            // A manifest line without image_id, and a legacy config line without diff_ids.
            r#"{"digest":"sha256:9999999999999999999999999999999999999999999999999999999999999999","kind":"manifest","platform":"linux/amd64","tags":["b:1"],"current":["b:1"],"indexes":[]}"#.to_owned(),
            r#"{"digest":"sha256:8888888888888888888888888888888888888888888888888888888888888888","kind":"config","platform":"linux/amd64","tags":["c:1"],"current":["c:1"]}"#.to_owned(),
            r#"{"digest":"sha256:7777777777777777777777777777777777777777777777777777777777777777","kind":"index","platform":null,"tags":["b:1"],"current":["b:1"]}"#.to_owned(),
        ];
        let text = lines.join("\n") + "\n";
        let wanted = Wanted {
            digests: [d('e'), d('9')].into_iter().collect(),
            chains: chain_ids(&[d('a'), d('b')]).into_iter().collect(),
            prefixes: vec!["333333333333".into(), "777777777777".into()],
        };
        let index = DatasetImages::load(text.as_bytes(), &wanted).unwrap();
        let Ok(by_manifest) = index.by_digest(&d('e'));
        assert_eq!(by_manifest.unwrap().image_id, Some(d('2')));
        let Ok(unenriched) = index.by_digest(&d('9'));
        assert_eq!(unenriched.unwrap().diff_ids, None);
        let Ok(chain) = index.by_chain(&d('a'));
        assert_eq!(chain.len(), 1); // image 1's whole chain is asked (a prefix of a, b)
        let Ok(by_prefix) = index.by_digest(&d('4'));
        assert_eq!(by_prefix.unwrap().image_id, Some(d('3'))); // kept for the prefix
        let Ok(none) = index.by_digest(&d('5'));
        assert_eq!(none, None); // not asked for, not kept
        assert_eq!(
            index.resolve_prefix("333333333333"),
            Ok(PrefixMatch::One(d('3')))
        );
        // An index resolves too (its platform images answer it).
        assert_eq!(
            index.resolve_prefix("777777777777"),
            Ok(PrefixMatch::One(d('7')))
        );
        assert_eq!(
            index.current_image("a:2", Some("linux/amd64")),
            Ok(Some(d('2')))
        );
        assert_eq!(index.current_image("a:2", Some("linux/arm64")), Ok(None));
        assert_eq!(index.unenriched(), Ok(2));
    }

    fn manifest(digest: char, index: char, image_id: Option<char>, platform: &str) -> String {
        let mut line = serde_json::json!({"digest": d(digest).to_string(), "kind": "manifest",
            "platform": platform, "tags": ["a:1"], "current": ["a:1"],
            "indexes": [d(index).to_string()]});
        if let Some(id) = image_id {
            line["image_id"] = serde_json::json!(d(id).to_string());
            line["layers"] = serde_json::json!(1);
        }
        line.to_string()
    }

    /// An index's platform images: the manifest lines under it and their config lines, found in
    /// one pass when each config line follows its manifest line, else in a second pass.
    #[test]
    fn an_index_answers_with_its_platform_images_in_one_pass_or_two() {
        // Index f holds manifests 2 (image 1, whose config line comes first), 4 (image 5, after)
        // and 6 (not enriched).
        let lines = [
            config('1', &['a'], '2', &["a:1"]),
            manifest('2', 'f', Some('1'), "linux/amd64"),
            manifest('4', 'f', Some('5'), "linux/arm64/v8"),
            config('5', &['b'], '4', &["a:1"]),
            manifest('6', 'f', None, "linux/s390x"),
            r#"{"digest":"sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff","kind":"index","platform":null,"tags":["a:1"],"current":["a:1"]}"#.to_owned(),
        ];
        let text = lines.join("\n") + "\n";
        let images = |index: &DatasetImages, digest| -> Vec<Option<Digest>> {
            let Ok(images) = index.index_images(&d(digest));
            images.iter().map(|i| i.image_id).collect()
        };
        for wanted in [
            Wanted {
                digests: [d('f')].into_iter().collect(),
                ..Wanted::default()
            },
            Wanted {
                prefixes: vec!["ffffffffffff".into()],
                ..Wanted::default()
            },
        ] {
            let mut index = DatasetImages::load(text.as_bytes(), &wanted).unwrap();
            assert_eq!(images(&index, 'f'), [Some(d('5')), None]);
            assert_eq!(index.unresolved(), BTreeSet::from([d('1')]));
            index.read_again(text.as_bytes()).unwrap();
            assert!(index.unresolved().is_empty());
            assert_eq!(images(&index, 'f'), [Some(d('1')), Some(d('5')), None]);
            // Nothing is counted twice.
            assert_eq!(index.unenriched(), Ok(1));
            // A manifest is no index.
            assert!(images(&index, '2').is_empty());
        }
    }

    #[test]
    fn damaged_lines_are_named() {
        let mut wrong_chain: Value =
            serde_json::from_str(&config('1', &['a', 'b'], 'd', &[])).unwrap();
        wrong_chain["chain_id"] = serde_json::json!(d('f').to_string());
        let table = [
            (wrong_chain.to_string(), "line 1 is not a dataset line: its chain_id"),
            (r#"{"digest":"sha256:1","kind":"config"}"#.to_owned(), "line 1 is not a dataset line: digest"),
            (r#"{"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","kind":"config","diff_ids":["md5:1"]}"#.to_owned(), "diff_ids[0]"),
            (r#"{"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","kind":"config","tags":"x"}"#.to_owned(), "\"tags\" is not a list of strings"),
        ];
        for (line, want) in table {
            let err = DatasetImages::load(format!("{line}\n").as_bytes(), &Wanted::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        let cut = DatasetImages::load(&b"{\"digest\""[..], &Wanted::default()).unwrap_err();
        assert!(cut.to_string().contains("cut off"), "{cut}");
    }
}

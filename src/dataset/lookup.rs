//! `digestmap lookup`: what the store, or a dataset file, knows of given digests.
//!
//! A query is a digest with or without `sha256:`, or a prefix of at least 12 hex characters that
//! must match one digest only. The store answers with per-tag times (from the `pairs` table) and
//! whether each tag points at the digest now ([`TagState::is_current_pair`]); a dataset file
//! knows only the digest's own times and its `current` list, and is streamed once for all
//! queries, so its size does not matter.
//!
//! A dataset file is untrusted input (it may be damaged, cut off, or not a dataset at all, such as
//! `/dev/zero`), so it is read with bounded memory and checked whole: a line longer than
//! [`MAX_LINE`], a last line without the newline `finalize` ends every line with (a file cut off
//! mid-write), and a line that is not a JSON object with a `digest` are each an error naming the
//! line, whether or not a query matched it.
//!
//! [`TagState::is_current_pair`]: crate::store::TagState::is_current_pair

use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufRead, Read};

use serde::de::IgnoredAny;
use serde_json::Value;

use super::{CurrentTags, Enrichment, config_tags, image_keys, write_config_line, write_line};
use crate::clock;
use crate::model::{Digest, ObjectKind};
use crate::store::{DigestEntry, DigestInfo, ReadBatch, TxError};
use crate::text::printable;

/// Longest dataset line read, newline included. A line is a few hundred bytes, a few KB for a
/// digest under many tags (about 40 bytes a `repo:tag`, 73 an index); 1 MiB holds some 15,000
/// tags, far more than any digest of Docker Hub has, and bounds the memory a file that is not a
/// dataset can take.
pub const MAX_LINE: usize = 1 << 20;

/// Fewest hex characters a prefix query may have: shorter ones match too often to be useful and
/// make "ambiguous" the usual answer.
pub const MIN_PREFIX: usize = 12;

/// Why a query is not a digest or a usable prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Another algorithm than sha256.
    #[error("{0:?}: only sha256 digests are looked up (`sha256:` followed by hex characters)")]
    Algorithm(String),
    /// Characters that are not hex.
    #[error(
        "{0:?} is not a digest: expected `sha256:` and hex characters, or the hex characters alone"
    )]
    NotHex(String),
    /// Too few hex characters.
    #[error(
        "{query:?} is too short: give at least {MIN_PREFIX} hex characters of the digest (it has {len})"
    )]
    TooShort {
        /// The query as given.
        query: String,
        /// Its hex characters.
        len: usize,
    },
    /// More hex characters than a sha256 digest has.
    #[error("{query:?} is too long: a sha256 digest has 64 hex characters, it has {len}")]
    TooLong {
        /// The query as given.
        query: String,
        /// Its hex characters.
        len: usize,
    },
}

/// One digest asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// As given on the command line.
    pub text: String,
    /// Its hex characters, lowercase: 64 for a whole digest, fewer for a prefix.
    pub hex: String,
}

impl Query {
    /// Parses `sha256:<hex>` or `<hex>`: 64 hex characters, or a prefix of at least
    /// [`MIN_PREFIX`]. Uppercase hex is folded, since a query is typed, not read from Hub.
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        let trimmed = text.trim();
        let hex = match trimmed.split_once(':') {
            Some((algorithm, hex)) if algorithm.eq_ignore_ascii_case("sha256") => hex,
            Some(_) => return Err(QueryError::Algorithm(text.to_owned())),
            None => trimmed,
        };
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(QueryError::NotHex(text.to_owned()));
        }
        let len = hex.len();
        if len < MIN_PREFIX {
            return Err(QueryError::TooShort {
                query: text.to_owned(),
                len,
            });
        }
        if len > 64 {
            return Err(QueryError::TooLong {
                query: text.to_owned(),
                len,
            });
        }
        Ok(Self {
            text: text.to_owned(),
            hex: hex.to_ascii_lowercase(),
        })
    }

    /// The digest, when the query is a whole one.
    pub fn digest(&self) -> Option<Digest> {
        Digest::parse(&format!("sha256:{}", self.hex)).ok()
    }

    fn matches(&self, hex: &[u8]) -> bool {
        hex.starts_with(self.hex.as_bytes())
    }
}

/// What a query found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// One digest.
    Found(Box<Answer>),
    /// No digest.
    NotFound,
    /// A prefix that matches more than one digest: the first two.
    Ambiguous(Digest, Digest),
}

/// One `repo:tag` of a found digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagAnswer {
    /// `repo:tag` as the dataset writes it.
    pub repo_tag: String,
    /// Whether the tag points at the digest now; `None` when the source does not say (a dataset
    /// written before `current` existed).
    pub current: Option<bool>,
    /// When the pair was first and last seen (unix seconds); only the store keeps these.
    pub seen: Option<(u64, u64)>,
}

/// Everything known of one digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The digest.
    pub digest: Digest,
    /// `index`, `manifest` or `config` (a dataset written by a later release may hold others).
    pub kind: String,
    /// `os/architecture[/variant]`; `None` for indexes.
    pub platform: Option<String>,
    /// Windows build number, when Hub gave one.
    pub os_version: Option<String>,
    /// Every `repo:tag` seen pointing at it, sorted.
    pub tags: Vec<TagAnswer>,
    /// Manifests only: the indexes it was listed under.
    pub indexes: Option<Vec<String>>,
    /// When the digest was first seen (RFC 3339).
    pub first_seen: String,
    /// When the digest was last seen (RFC 3339).
    pub last_seen: String,
    /// The answer as one JSON object: the dataset line's keys in its order, plus, from the store,
    /// `tag_seen` (`repo:tag` → first and last seen). No trailing newline.
    pub json: String,
}

/// Answers `queries` from a store snapshot, one resolution per query, in order.
pub fn lookup_store(snapshot: &ReadBatch, queries: &[Query]) -> Result<Vec<Resolution>, TxError> {
    queries
        .iter()
        .map(|query| {
            let digest = match query.digest() {
                Some(d) => d,
                None => {
                    // Digests Hub listed and image IDs `enrich` learned (some are both).
                    let mut found = snapshot.digests_with_prefix(&query.hex, 2)?;
                    found.extend(snapshot.configs_with_prefix(&query.hex, 2)?);
                    found.sort_unstable();
                    found.dedup();
                    match found.as_slice() {
                        [] => return Ok(Resolution::NotFound),
                        [d] => *d,
                        [a, b, ..] => return Ok(Resolution::Ambiguous(*a, *b)),
                    }
                }
            };
            if let Some(answer) = config_answer(snapshot, digest)? {
                return Ok(Resolution::Found(Box::new(answer)));
            }
            Ok(match snapshot.digest_info(&digest)? {
                Some(info) => Resolution::Found(Box::new(store_answer(snapshot, digest, info)?)),
                None => Resolution::NotFound,
            })
        })
        .collect()
}

/// The tags-table key (`ns/name`, tag) of a dataset `repo:tag`: the inverse of
/// [`super::display_repo_tag`]. Names never hold `:`, and only official images lack a `/`.
fn tag_key(repo_tag: &str) -> Option<(String, &str)> {
    let (repo, tag) = repo_tag.rsplit_once(':')?;
    let key = if repo.contains('/') {
        repo.to_owned()
    } else {
        format!("library/{repo}")
    };
    Some((key, tag))
}

fn store_answer(snapshot: &ReadBatch, digest: Digest, info: DigestInfo) -> Result<Answer, TxError> {
    let mut tags = Vec::with_capacity(info.tags.len());
    let mut current = Vec::with_capacity(info.tags.len());
    for (repo_tag, _) in &info.tags {
        let state = match tag_key(repo_tag) {
            Some((repo, tag)) => snapshot.tag_state(&repo, tag)?,
            None => None,
        };
        current.push(state.is_some_and(|s| s.is_current_pair(&digest)));
    }
    for ((repo_tag, seen), current) in info.tags.iter().zip(&current) {
        tags.push(TagAnswer {
            repo_tag: repo_tag.clone(),
            current: Some(*current),
            seen: Some(*seen),
        });
    }

    // The JSON is the dataset line itself, so the two can never disagree, with the per-tag
    // times added before its closing brace.
    let names: Vec<String> = info.tags.iter().map(|(t, _)| t.clone()).collect();
    let seen: Vec<(u64, u64)> = info.tags.iter().map(|(_, s)| *s).collect();
    let mut line = Vec::with_capacity(512);
    write_line(
        &mut line,
        &DigestEntry {
            digest,
            record: &info.record,
            tags: &names,
            tag_seen: &seen,
            indexes: &info.indexes,
        },
        &current,
    );
    line.truncate(line.len() - "}\n".len());
    if info.record.kind == ObjectKind::Manifest
        && let Some(crate::store::ManifestRecord {
            fact: crate::store::ManifestFact::Image { config, layers },
            ..
        }) = snapshot.manifest(&digest)?
    {
        image_keys(&mut line, &config, layers.len());
    }
    line.extend_from_slice(b",\"tag_seen\":{");
    for (i, (repo_tag, (first, last))) in info.tags.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        serde_json::to_writer(&mut line, repo_tag).expect("writing to a Vec");
        line.extend_from_slice(b":{\"first_seen\":\"");
        line.extend_from_slice(clock::rfc3339(*first).as_bytes());
        line.extend_from_slice(b"\",\"last_seen\":\"");
        line.extend_from_slice(clock::rfc3339(*last).as_bytes());
        line.extend_from_slice(b"\"}");
    }
    line.extend_from_slice(b"}}");
    let json = String::from_utf8(line).expect("the dataset line is UTF-8");

    let record = info.record;
    Ok(Answer {
        digest,
        kind: record.kind.as_str().to_owned(),
        platform: match record.kind {
            ObjectKind::Index => None,
            ObjectKind::Manifest | ObjectKind::Config => {
                record.platform.as_ref().map(ToString::to_string)
            }
        },
        os_version: record.os_version,
        tags,
        indexes: (record.kind == ObjectKind::Manifest)
            .then(|| info.indexes.iter().map(ToString::to_string).collect()),
        first_seen: clock::rfc3339(record.first_seen),
        last_seen: clock::rfc3339(record.last_seen),
        json,
    })
}

/// The answer for an image ID `enrich` learned: its dataset line (tags are those of the
/// manifests that carry it, so no per-tag times); `None` when it is not a learned image ID. It
/// reads the `manifests` table whole to find the manifests that carry it.
fn config_answer(snapshot: &ReadBatch, digest: Digest) -> Result<Option<Answer>, TxError> {
    if snapshot.config(&digest)?.is_none() {
        return Ok(None);
    }
    let enrichment = Enrichment::load(snapshot)?;
    let Some(config) = enrichment.configs.get(&digest) else {
        return Ok(None);
    };
    let now = CurrentTags::load(snapshot)?;
    let own = snapshot.digest_info(&digest)?;
    let own_names: Vec<String> = own
        .iter()
        .flat_map(|i| i.tags.iter().map(|(t, _)| t.clone()))
        .collect();
    let own_entry = own.as_ref().map(|info| DigestEntry {
        digest,
        record: &info.record,
        tags: &own_names,
        tag_seen: &[],
        indexes: &info.indexes,
    });
    let (record, names, current) =
        config_tags(snapshot, &now, &digest, config, own_entry.as_ref())?;
    let mut line = Vec::with_capacity(1024);
    write_config_line(
        &mut line,
        &DigestEntry {
            digest,
            record: &record,
            tags: &names,
            tag_seen: &[],
            indexes: &[],
        },
        &current,
        config,
    );
    line.pop();
    Ok(Some(Answer {
        digest,
        kind: ObjectKind::Config.as_str().to_owned(),
        platform: record.platform.as_ref().map(ToString::to_string),
        os_version: record.os_version.clone(),
        tags: names
            .iter()
            .zip(&current)
            .map(|(t, c)| TagAnswer {
                repo_tag: t.clone(),
                current: Some(*c),
                seen: None,
            })
            .collect(),
        indexes: None,
        first_seen: clock::rfc3339(record.first_seen),
        last_seen: clock::rfc3339(record.last_seen),
        json: String::from_utf8(line).expect("the dataset line is UTF-8"),
    }))
}

/// Why a dataset file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A line that is not a dataset line.
    #[error("line {line} is not a dataset line: {reason}")]
    Malformed {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A line longer than [`MAX_LINE`]: not a dataset file, or a damaged one.
    #[error(
        "line {line} is longer than {} MiB without a newline: this is not a dataset file, or it is damaged",
        MAX_LINE >> 20
    )]
    TooLong {
        /// 1-based line number.
        line: u64,
    },
    /// A last line without its newline: the file was cut off.
    #[error(
        "line {line}, the last, has no newline at its end: the file is cut off (finalize ends every line with one); write it again"
    )]
    CutOff {
        /// 1-based line number.
        line: u64,
    },
}

/// What the scan found for one query: the first matching line, and a second matching digest
/// if there is one (which makes the query ambiguous).
#[derive(Default)]
struct Matches {
    first: Option<(Digest, u64, String)>,
    second: Option<Digest>,
}

/// Answers `queries` from a dataset file (NDJSON as `finalize` writes it), read once line by line:
/// memory holds one line and the matching lines, never the file.
pub fn lookup_dataset(
    mut reader: impl BufRead,
    queries: &[Query],
) -> Result<Vec<Resolution>, ReadError> {
    let mut found: Vec<Matches> = queries.iter().map(|_| Matches::default()).collect();
    read_lines(&mut reader, |number, line| {
        let hex = line_hex(line).map_err(|reason| ReadError::Malformed {
            line: number,
            reason,
        })?;
        for (query, matches) in queries.iter().zip(&mut found) {
            if !query.matches(&hex) {
                continue;
            }
            let digest = Digest::parse(&format!("sha256:{}", String::from_utf8_lossy(&hex)))
                .map_err(|e| ReadError::Malformed {
                    line: number,
                    reason: e.to_string(),
                })?;
            match &matches.first {
                None => {
                    let text =
                        String::from_utf8(line.to_vec()).map_err(|e| ReadError::Malformed {
                            line: number,
                            reason: e.to_string(),
                        })?;
                    matches.first = Some((digest, number, text));
                }
                // The same digest twice (a concatenated file, say) is not ambiguity.
                Some((first, _, _)) if *first != digest && matches.second.is_none() => {
                    matches.second = Some(digest);
                }
                Some(_) => {}
            }
        }
        Ok(())
    })?;
    found
        .into_iter()
        .map(|m| match (m.first, m.second) {
            (None, _) => Ok(Resolution::NotFound),
            (Some((a, _, _)), Some(b)) => Ok(Resolution::Ambiguous(a.min(b), a.max(b))),
            (Some((_, number, line)), None) => dataset_answer(&line).map_or_else(
                |reason| {
                    Err(ReadError::Malformed {
                        line: number,
                        reason,
                    })
                },
                |answer| Ok(Resolution::Found(Box::new(answer))),
            ),
        })
        .collect()
}

/// Calls `each` with every non-empty line of a dataset (1-based number, the line without its
/// newline and surrounding blanks), holding one line in memory: a line longer than [`MAX_LINE`]
/// and a last line without its newline are errors.
pub(crate) fn read_lines(
    reader: &mut impl BufRead,
    mut each: impl FnMut(u64, &[u8]) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut number = 0u64;
    // At most MAX_LINE bytes a line, newline included: a line that fills them without ending is
    // too long, and the buffer never grows past them.
    let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX);
    loop {
        buf.clear();
        if (&mut *reader).take(limit).read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        number += 1;
        if buf.last() != Some(&b'\n') {
            return Err(if buf.len() >= MAX_LINE {
                ReadError::TooLong { line: number }
            } else {
                ReadError::CutOff { line: number }
            });
        }
        let line = buf.trim_ascii();
        if !line.is_empty() {
            each(number, line)?;
        }
    }
}

/// The 64 hex characters of a line's digest, checking that the line is a JSON object with one.
/// `finalize` writes the digest first, so that is read without building the line's values (only
/// its syntax is checked); any other line is parsed to find it.
fn line_hex(line: &[u8]) -> Result<[u8; 64], String> {
    let mut hex = [0u8; 64];
    let fast = line
        .strip_prefix(b"{\"digest\":\"sha256:")
        .filter(|rest| rest.len() > 64 && rest[64] == b'"')
        .map(|rest| &rest[..64]);
    match fast {
        Some(h) => {
            if !h
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            {
                return Err("its digest is not 64 lowercase hex characters".into());
            }
            serde_json::from_slice::<IgnoredAny>(line).map_err(|e| e.to_string())?;
            hex.copy_from_slice(h);
        }
        None => {
            let value: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
            let text = value
                .get("digest")
                .and_then(Value::as_str)
                .ok_or("it has no \"digest\" string")?;
            let digest = Digest::parse(text).map_err(|e| e.to_string())?;
            digest.write_hex(&mut hex);
        }
    }
    Ok(hex)
}

fn dataset_answer(line: &str) -> Result<Answer, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let field = |key: &str| value.get(key).filter(|v| !v.is_null());
    let string = |key: &str| -> Result<String, String> {
        field(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("\"{key}\" is not a string"))
    };
    let strings = |key: &str| -> Result<Option<Vec<String>>, String> {
        field(key)
            .map(|v| {
                v.as_array()
                    .and_then(|items| {
                        items
                            .iter()
                            .map(|i| i.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| format!("\"{key}\" is not a list of strings"))
            })
            .transpose()
    };
    let digest = Digest::parse(&string("digest")?).map_err(|e| e.to_string())?;
    let current = strings("current")?;
    let tags = strings("tags")?
        .ok_or("it has no \"tags\"")?
        .into_iter()
        .map(|repo_tag| TagAnswer {
            current: current.as_ref().map(|c| c.contains(&repo_tag)),
            repo_tag,
            seen: None,
        })
        .collect();
    Ok(Answer {
        digest,
        kind: string("kind")?,
        platform: field("platform").map(|_| string("platform")).transpose()?,
        os_version: field("os_version")
            .map(|_| string("os_version"))
            .transpose()?,
        tags,
        indexes: strings("indexes")?,
        first_seen: string("first_seen")?,
        last_seen: string("last_seen")?,
        json: line.to_owned(),
    })
}

/// The human answer: the digest, then one field a line, tags current first. Every string from the
/// store or the dataset is shown through [`printable`], so no control character reaches the
/// terminal raw.
impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.digest)?;
        writeln!(f, "  kind        {}", printable(&self.kind))?;
        writeln!(
            f,
            "  platform    {}",
            printable(self.platform.as_deref().unwrap_or("none"))
        )?;
        if let Some(v) = &self.os_version {
            writeln!(f, "  os_version  {}", printable(v))?;
        }
        writeln!(f, "  first seen  {}", printable(&self.first_seen))?;
        writeln!(f, "  last seen   {}", printable(&self.last_seen))?;
        let now = self.tags.iter().filter(|t| t.current == Some(true)).count();
        let known = self.tags.iter().any(|t| t.current.is_some());
        if known {
            writeln!(f, "  tags        {} ({now} current)", self.tags.len())?;
        } else {
            writeln!(
                f,
                "  tags        {} (this dataset does not say which are current)",
                self.tags.len()
            )?;
        }
        let names: Vec<Cow<'_, str>> = self.tags.iter().map(|t| printable(&t.repo_tag)).collect();
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        // Current tags first: they answer "which image is this" today.
        let ordered = self
            .tags
            .iter()
            .zip(&names)
            .filter(|(t, _)| t.current == Some(true))
            .chain(
                self.tags
                    .iter()
                    .zip(&names)
                    .filter(|(t, _)| t.current != Some(true)),
            );
        for (tag, name) in ordered {
            let label = match tag.current {
                Some(true) => "current",
                Some(false) => "past",
                None => "tag",
            };
            match tag.seen {
                Some((first, last)) => writeln!(
                    f,
                    "    {label:<7}  {name:<width$}  first seen {}, last seen {}",
                    clock::rfc3339(first),
                    clock::rfc3339(last)
                )?,
                None => writeln!(f, "    {label:<7}  {name}")?,
            }
        }
        if let Some(indexes) = &self.indexes {
            writeln!(f, "  indexes     {}", indexes.len())?;
            for index in indexes {
                writeln!(f, "    {}", printable(index))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{TempStore, digest};
    use super::*;

    #[test]
    fn queries() {
        let full = "sha256:0199853f6d6b20b0424f3c5694a72a62764f01e6a771b1eb48a4197848986c7e";
        let q = Query::parse(full).unwrap();
        assert_eq!(q.digest().unwrap().to_string(), full);
        let bare = Query::parse(&full[7..]).unwrap();
        assert_eq!(bare.digest(), q.digest());
        let upper = Query::parse(&full.to_ascii_uppercase()).unwrap();
        assert_eq!(upper.digest(), q.digest());
        let prefix = Query::parse("0199853f6d6b").unwrap();
        assert_eq!(prefix.hex, "0199853f6d6b");
        assert_eq!(prefix.digest(), None);
        assert!(Query::parse("sha256:0199853f6d6b").is_ok());

        assert!(matches!(
            Query::parse("0199853f6d6"),
            Err(QueryError::TooShort { len: 11, .. })
        ));
        assert!(matches!(
            Query::parse("sha256:0199853f6d6bzz"),
            Err(QueryError::NotHex(_))
        ));
        assert!(matches!(Query::parse(""), Err(QueryError::NotHex(_))));
        assert!(matches!(
            Query::parse("sha256:"),
            Err(QueryError::NotHex(_))
        ));
        assert!(matches!(
            Query::parse("md5:0199853f6d6b20b0424f3c5694a72a62"),
            Err(QueryError::Algorithm(_))
        ));
        assert!(matches!(
            Query::parse(&format!("{full}0")),
            Err(QueryError::TooLong { len: 65, .. })
        ));
        let message = Query::parse("abc").unwrap_err().to_string();
        assert!(message.contains("at least 12"), "{message}");
    }

    fn hex_of(fill: u8) -> String {
        digest(fill).hex()
    }

    #[test]
    fn store_answers_with_times_and_current() {
        let t = TempStore::new("lookup");
        t.tag("library/app", "1.0", digest(0xa0), digest(0xa1), 100);
        t.tag("library/app", "latest", digest(0xa0), digest(0xa1), 100);
        t.tag("library/app", "latest", digest(0xb0), digest(0xa1), 200);
        // Two digests sharing their first 31 bytes: any prefix of up to 62 characters is ambiguous.
        let mut near = [0xa0u8; 32];
        near[31] = 0xa1;
        t.tag(
            "arm64v8/app",
            "x",
            Digest::from_bytes(near),
            digest(0xc1),
            100,
        );

        let queries: Vec<Query> = [
            hex_of(0xa1),
            format!("sha256:{}", &hex_of(0xb0)[..12]),
            hex_of(0xee),
            hex_of(0xa0)[..20].to_owned(),
            hex_of(0xee)[..12].to_owned(),
        ]
        .iter()
        .map(|q| Query::parse(q).unwrap())
        .collect();
        let snapshot = t.store.snapshot().unwrap();
        let answers = lookup_store(&snapshot, &queries).unwrap();

        let Resolution::Found(manifest) = &answers[0] else {
            panic!("{:?}", answers[0]);
        };
        assert_eq!(manifest.kind, "manifest");
        assert_eq!(manifest.platform.as_deref(), Some("linux/amd64"));
        assert_eq!(
            manifest.indexes.as_ref().unwrap(),
            &[digest(0xa0).to_string(), digest(0xb0).to_string()]
        );
        // The manifest stayed under app:latest when it moved to a new index.
        let tag = |repo_tag: &str, seen| TagAnswer {
            repo_tag: repo_tag.to_owned(),
            current: Some(true),
            seen: Some(seen),
        };
        assert_eq!(
            manifest.tags,
            [tag("app:1.0", (100, 100)), tag("app:latest", (100, 200))]
        );
        let json: Value = serde_json::from_str(&manifest.json).unwrap();
        assert_eq!(
            json["current"],
            serde_json::json!(["app:1.0", "app:latest"])
        );
        assert_eq!(
            json["tag_seen"]["app:latest"]["first_seen"],
            "1970-01-01T00:01:40Z"
        );
        assert!(manifest.json.starts_with("{\"digest\":\"sha256:"));
        assert!(manifest.json.find("\"current\"") < manifest.json.find("\"indexes\""));

        let Resolution::Found(index) = &answers[1] else {
            panic!("{:?}", answers[1]);
        };
        assert_eq!(index.digest, digest(0xb0));
        assert_eq!(index.platform, None);
        assert_eq!(index.indexes, None);
        assert_eq!(answers[2], Resolution::NotFound);
        assert_eq!(
            answers[3],
            Resolution::Ambiguous(digest(0xa0), Digest::from_bytes(near))
        );
        assert_eq!(answers[4], Resolution::NotFound);

        // The old index of app:latest: 1.0 is still on it, latest has moved on.
        let old = lookup_store(&snapshot, &[Query::parse(&hex_of(0xa0)).unwrap()]).unwrap();
        let Resolution::Found(old) = &old[0] else {
            panic!("{old:?}");
        };
        let text = old.to_string();
        assert!(text.contains("tags        2 (1 current)"), "{text}");
        let current = text.find("current  app:1.0").expect(&text);
        let past = text.find("past     app:latest").expect(&text);
        assert!(current < past, "{text}");
    }

    #[test]
    fn dataset_answers_and_ambiguity() {
        let a = format!("sha256:{}", hex_of(0x11));
        let mut near = [0x11u8; 32];
        near[31] = 0x12;
        let b = Digest::from_bytes(near).to_string();
        let c = format!("sha256:{}", hex_of(0x22));
        let file = format!(
            "{{\"digest\":\"{a}\",\"kind\":\"index\",\"platform\":null,\"tags\":[\"x:1\",\"x:2\"],\"current\":[\"x:2\"],\"first_seen\":\"2026-01-01T00:00:00Z\",\"last_seen\":\"2026-01-02T00:00:00Z\"}}\n\
             {{\"digest\":\"{b}\",\"kind\":\"manifest\",\"platform\":\"windows/amd64\",\"os_version\":\"10.0.1\",\"tags\":[\"x:1\"],\"indexes\":[\"{a}\"],\"first_seen\":\"2026-01-01T00:00:00Z\",\"last_seen\":\"2026-01-01T00:00:00Z\"}}\n\
             \n\
             {{\"kind\":\"config\",\"digest\":\"{c}\",\"platform\":\"linux/386\",\"tags\":[],\"current\":[],\"first_seen\":\"2026-01-01T00:00:00Z\",\"last_seen\":\"2026-01-01T00:00:00Z\"}}\n"
        );
        let queries: Vec<Query> = [
            a.clone(),
            b[7..].to_owned(),
            hex_of(0x11)[..40].to_owned(),
            c[..19].to_owned(),
            hex_of(0x33),
        ]
        .iter()
        .map(|q| Query::parse(q).unwrap())
        .collect();
        let answers = lookup_dataset(file.as_bytes(), &queries).unwrap();

        let Resolution::Found(index) = &answers[0] else {
            panic!("{:?}", answers[0]);
        };
        assert_eq!(index.kind, "index");
        assert_eq!(index.platform, None);
        assert_eq!(index.json, file.lines().next().unwrap());
        let tags: Vec<(&str, Option<bool>)> = index
            .tags
            .iter()
            .map(|t| (t.repo_tag.as_str(), t.current))
            .collect();
        assert_eq!(tags, [("x:1", Some(false)), ("x:2", Some(true))]);

        // A line without `current` (a dataset from before it existed) says nothing either way.
        let Resolution::Found(manifest) = &answers[1] else {
            panic!("{:?}", answers[1]);
        };
        assert_eq!(manifest.os_version.as_deref(), Some("10.0.1"));
        assert_eq!(manifest.tags[0].current, None);
        assert_eq!(manifest.indexes.as_deref(), Some(&[a.clone()][..]));
        let text = manifest.to_string();
        assert!(text.contains("does not say which are current"), "{text}");
        assert!(text.contains("    tag      x:1\n"), "{text}");
        assert!(text.contains("  os_version  10.0.1\n"), "{text}");

        assert!(matches!(&answers[2], Resolution::Ambiguous(x, y)
            if x.to_string() == a && y.to_string() == b));
        // Found through the slow path: the digest is not the line's first key.
        let Resolution::Found(config) = &answers[3] else {
            panic!("{:?}", answers[3]);
        };
        assert_eq!(config.kind, "config");
        assert!(config.tags.is_empty());
        assert_eq!(answers[4], Resolution::NotFound);
    }

    #[test]
    fn a_malformed_dataset_line_is_named() {
        let queries = [Query::parse(&hex_of(0x11)).unwrap()];
        let bad = "{\"digest\":\"sha256:1\"}\nnot json\n";
        match lookup_dataset(bad.as_bytes(), &queries) {
            Err(ReadError::Malformed { line: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
        let missing_tags = format!(
            "{{\"digest\":\"sha256:{}\",\"kind\":\"index\",\"first_seen\":\"x\",\"last_seen\":\"y\"}}\n",
            hex_of(0x11)
        );
        match lookup_dataset(missing_tags.as_bytes(), &queries) {
            Err(ReadError::Malformed { line: 1, reason }) => {
                assert!(reason.contains("tags"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_line_is_checked_whether_asked_for_or_not() {
        let queries = [Query::parse(&hex_of(0x11)).unwrap()];
        let good = |b: u8| {
            format!(
                "{{\"digest\":\"sha256:{}\",\"kind\":\"index\",\"platform\":null,\"tags\":[],\"first_seen\":\"x\",\"last_seen\":\"y\"}}\n",
                hex_of(b)
            )
        };
        let (a, b) = (good(0x11), good(0x22));
        let huge = format!("{a}{}", "x".repeat(MAX_LINE + 10));
        let just_fits = format!(
            "{a}{{\"digest\":\"sha256:{}\"{}}}\n",
            hex_of(0x22),
            " ".repeat(MAX_LINE - 85)
        );
        assert_eq!(just_fits.len() - a.len(), MAX_LINE);
        let cases: [(String, Option<&str>); 7] = [
            (format!("{a}{b}"), None),
            (just_fits, None),
            (
                format!("{a}{}", &b[..b.len() - 1]),
                Some("line 2, the last, has no newline"),
            ),
            (format!("{a}{}", &b[..40]), Some("line 2, the last")),
            (huge, Some("line 2 is longer than 1 MiB")),
            (
                format!("{a}{}", b.replace("\"tags\"", "\"tags")),
                Some("line 2 is not a dataset line"),
            ),
            (
                format!("{a}{}", b.replace(&hex_of(0x22)[..2], "ZZ")),
                Some("line 2 is not a dataset line: its digest"),
            ),
        ];
        for (file, want) in cases {
            let got = lookup_dataset(file.as_bytes(), &queries);
            match (want, got) {
                (None, Ok(answers)) => assert!(matches!(answers[0], Resolution::Found(_))),
                (Some(want), Err(e)) => assert!(e.to_string().starts_with(want), "{e}"),
                (want, got) => panic!("{want:?}: {got:?}"),
            }
        }
    }
}

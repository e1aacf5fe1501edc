//! Domain types, validated once at the edge.
//!
//! Everything that comes from Docker Hub is text; these types are what the rest of the crate works
//! with after validation. A [`Digest`] is kept as its 32 raw bytes: that halves its size in the
//! store and in memory, and byte order equals the order of the lowercase hex form, so sorting by
//! bytes sorts the dataset by digest text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A `sha256:` content digest (of an index, a manifest or an image config).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Digest([u8; 32]);

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The algorithm prefix is missing or is not `sha256:`.
    #[error("digest {0:?} does not start with \"sha256:\"")]
    Algorithm(String),
    /// The hex part is not exactly 64 lowercase hex characters.
    #[error("digest {0:?} is not \"sha256:\" followed by 64 lowercase hex characters")]
    Hex(String),
}

impl Digest {
    /// Wraps raw sha256 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw sha256 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses `sha256:<64 lowercase hex>`, the only form Docker Hub gives for real digests.
    ///
    /// Uppercase hex is refused rather than folded: Hub never sends it, so it marks a damaged record.
    pub fn parse(text: &str) -> Result<Self, DigestError> {
        let Some(hex) = text.strip_prefix("sha256:") else {
            return Err(DigestError::Algorithm(shorten(text)));
        };
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return Err(DigestError::Hex(shorten(text)));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let (Some(hi), Some(lo)) = (hex_value(pair[0]), hex_value(pair[1])) else {
                return Err(DigestError::Hex(shorten(text)));
            };
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }

    /// Writes the 64 hex characters (without the `sha256:` prefix) into `out`.
    pub fn write_hex(&self, out: &mut [u8; 64]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, byte) in self.0.iter().enumerate() {
            out[2 * i] = HEX[usize::from(byte >> 4)];
            out[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
        }
    }

    /// The 64 hex characters without prefix.
    pub fn hex(&self) -> String {
        let mut buf = [0u8; 64];
        self.write_hex(&mut buf);
        // Only ASCII hex digits were written.
        String::from_utf8_lossy(&buf).into_owned()
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Keeps error messages readable when a hostile page sends a megabyte where a digest should be.
fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// What a digest names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ObjectKind {
    /// An OCI image index or Docker manifest list: the digest of a multi-platform tag.
    Index,
    /// A platform image manifest.
    Manifest,
    /// An image config blob: its digest is the image ID.
    Config,
}

impl ObjectKind {
    /// The name used in the dataset.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Index => "index",
            Self::Manifest => "manifest",
            Self::Config => "config",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An image platform: `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system, e.g. `linux`, `windows`.
    pub os: String,
    /// CPU architecture, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// Architecture variant, e.g. `v8`; absent for most.
    pub variant: Option<String>,
}

/// Longest `os`, `architecture` or `variant` accepted: real ones are a few characters (`linux`,
/// `ppc64le`, `v8`).
pub const MAX_PLATFORM_PART: usize = 32;
/// Longest `os_version` accepted: Windows build numbers such as `10.0.20348.2849`.
pub const MAX_OS_VERSION: usize = 64;
/// Longest push time accepted: `2020-06-09T20:45:50.400981Z` with nanoseconds and an offset.
pub const MAX_TIME: usize = 35;

/// Why a field Hub sent beside a digest (a platform, an `os_version`, a push time) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} {rule}")]
pub struct FieldError {
    what: &'static str,
    value: String,
    rule: &'static str,
}

impl FieldError {
    fn new(what: &'static str, value: &str, rule: &'static str) -> Self {
        Self {
            what,
            value: shorten(value),
            rule,
        }
    }
}

/// A platform part: ASCII letters, digits, `.`, `_`, `-`, at most [`MAX_PLATFORM_PART`]; empty
/// means absent.
fn platform_part_ok(part: &str) -> bool {
    part.len() <= MAX_PLATFORM_PART
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Platform {
    /// Builds a platform from Hub's fields; empty strings count as absent.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Self {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_owned),
        }
    }

    /// Validates Hub's fields and builds the platform: each part ASCII letters, digits, `.`, `_`
    /// and `-`, at most [`MAX_PLATFORM_PART`] long, or empty (absent). Anything else (control
    /// characters, separators, a megabyte) is refused, so it never reaches the store, the dataset
    /// or a terminal.
    pub fn parse(os: &str, architecture: &str, variant: Option<&str>) -> Result<Self, FieldError> {
        let variant = variant.unwrap_or("");
        if [os, architecture, variant]
            .iter()
            .all(|p| platform_part_ok(p))
        {
            return Ok(Self::new(os, architecture, Some(variant)));
        }
        let shown = format!("{os}/{architecture}/{variant}");
        Err(FieldError::new(
            "platform",
            &shown,
            "is not os/architecture/variant of ASCII letters, digits, '.', '_' and '-' (at most 32 each)",
        ))
    }

    /// Attestation manifests are listed by Hub as images of platform `unknown/unknown`; they are
    /// provenance records, not images.
    pub fn is_attestation(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// A repository of a Docker Hub namespace, e.g. `library/ubuntu`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RepoName {
    /// The namespace (`library` for official images).
    pub namespace: String,
    /// The repository name within the namespace.
    pub name: String,
}

/// Why a repository or tag name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not a valid Docker Hub name")]
pub struct NameError {
    what: &'static str,
    value: String,
}

impl RepoName {
    /// Validates a namespace and repository name: lowercase letters, digits and the separators
    /// `.`, `_`, `-` (Docker's rules), so that a name can go into a URL path and a store key safely.
    pub fn new(namespace: &str, name: &str) -> Result<Self, NameError> {
        validate_component("namespace", namespace)?;
        validate_component("repository", name)?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// A repository of a registry other than Docker Hub, host-qualified as Docker's reference
    /// grammar writes it: `mcr.microsoft.com/windows/servercore`, `127.0.0.1:5000/alpine`.
    /// `host` is a domain or IPv4 address (or a bracketed IPv6 one) with an optional port; `path`
    /// is one or more components of lowercase letters and digits joined by `.`, `_`, `__` or
    /// runs of `-`, separated by `/`; the whole name is at most 255 characters. The host and
    /// every component but the last are kept as the namespace, the last as the name, so that
    /// [`RepoName`]'s text (the store's key and the dataset's repository) is the qualified name.
    pub fn qualified(host: &str, path: &str) -> Result<Self, NameError> {
        if !is_registry_host(host) || !host_ok(host) {
            return Err(NameError {
                what: "registry host",
                value: shorten(host),
            });
        }
        let path_ok = path.split('/').all(path_component_ok);
        if !path_ok || host.len() + 1 + path.len() > 255 {
            return Err(NameError {
                what: "repository",
                value: shorten(path),
            });
        }
        let (namespace, name) = match path.rsplit_once('/') {
            Some((dirs, name)) => (format!("{host}/{dirs}"), name),
            None => (host.to_owned(), path),
        };
        Ok(Self {
            namespace,
            name: name.to_owned(),
        })
    }

    /// The registry host of a host-qualified repository (see [`RepoName::qualified`]); `None`
    /// for a Docker Hub repository.
    pub fn host(&self) -> Option<&str> {
        let first = self.namespace.split('/').next()?;
        is_registry_host(first).then_some(first)
    }

    /// The repository's path on its registry: `windows/servercore` for
    /// `mcr.microsoft.com/windows/servercore`, `library/python` for a Docker Hub repository.
    pub fn path(&self) -> String {
        let full = self.to_string();
        match self.host() {
            Some(host) => full[host.len() + 1..].to_owned(),
            None => full,
        }
    }

    /// How the dataset writes the repository: without `library/` for official images.
    pub fn display_name(&self) -> String {
        if self.namespace == "library" {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

fn validate_component(what: &'static str, value: &str) -> Result<(), NameError> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && value
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && value != "."
        && value != "..";
    if ok {
        Ok(())
    } else {
        Err(NameError {
            what,
            value: shorten(value),
        })
    }
}

/// Whether the first component of a reference names a registry host, by Docker's rule: it holds
/// a `.` or a `:`, is `localhost`, or is a bracketed IPv6 address. Docker Hub namespaces never do.
pub fn is_registry_host(component: &str) -> bool {
    component.contains(['.', ':']) || component == "localhost" || component.starts_with('[')
}

/// The registry host a store repository key (`library/python`, `mcr.microsoft.com/windows/
/// servercore`, a dataset's `repo:tag` too) starts with, when it is host-qualified.
pub fn repo_key_host(key: &str) -> Option<&str> {
    let first = key.split('/').next()?;
    (key.contains('/') && is_registry_host(first)).then_some(first)
}

/// A host by Docker's reference grammar: domain components (ASCII letters and digits, `-`
/// inside) joined by `.`, or a bracketed IPv6 address, then an optional `:port`.
fn host_ok(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        let ipv6 = !inside.is_empty()
            && inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        if !ipv6 {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty()
            && b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.last().is_some_and(u8::is_ascii_alphanumeric)
            && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host.len() <= 255 && name.split('.').all(component_ok) && port_ok
}

/// A path component by Docker's reference grammar: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn path_component_ok(component: &str) -> bool {
    let b = component.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !b.first().is_some_and(alnum) || !b.last().is_some_and(alnum) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(&b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(&b[i]) {
            i += 1;
        }
        let separator = &b[start..i];
        let ok = matches!(separator, b"." | b"_" | b"__") || separator.iter().all(|c| *c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// Validates a tag name by Docker's grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), NameError> {
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(NameError {
            what: "tag",
            value: shorten(tag),
        })
    }
}

/// Validates a non-empty `os_version`: ASCII letters, digits, `.`, `_`, `-` and `+`, at most
/// [`MAX_OS_VERSION`] long.
pub fn validate_os_version(text: &str) -> Result<(), FieldError> {
    let ok = !text.is_empty()
        && text.len() <= MAX_OS_VERSION
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "os_version",
            text,
            "is not ASCII letters, digits, '.', '_', '-' and '+' (at most 64)",
        ))
    }
}

/// Validates a push time as Hub writes them, RFC 3339: `YYYY-MM-DDTHH:MM:SS`, an optional
/// fraction of 1 to 9 digits, then `Z` or `±HH:MM`; at most [`MAX_TIME`] long. Push times are
/// compared and sorted as text (refresh stops, the anonymous-cap cover), so only this one shape
/// is let in.
pub fn validate_push_time(text: &str) -> Result<(), FieldError> {
    if rfc3339_ok(text.as_bytes()) {
        Ok(())
    } else {
        Err(FieldError::new(
            "push time",
            text,
            "is not an RFC 3339 time such as 2020-06-09T20:45:50.400981Z",
        ))
    }
}

fn rfc3339_ok(b: &[u8]) -> bool {
    let number = |range: std::ops::Range<usize>, low: u32, high: u32| {
        b.get(range).is_some_and(|digits| {
            digits.iter().all(u8::is_ascii_digit)
                && (low..=high).contains(
                    &digits
                        .iter()
                        .fold(0u32, |n, d| n * 10 + u32::from(d - b'0')),
                )
        })
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let date_time = b.len() <= MAX_TIME
        && number(0..4, 0, 9999)
        && at(4, b'-')
        && number(5..7, 1, 12)
        && at(7, b'-')
        && number(8..10, 1, 31)
        && (at(10, b'T') || at(10, b't'))
        && number(11..13, 0, 23)
        && at(13, b':')
        && number(14..16, 0, 59)
        && at(16, b':')
        && number(17..19, 0, 60);
    if !date_time {
        return false;
    }
    let mut i = 19;
    if at(i, b'.') {
        let digits = b[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return false;
        }
        i += 1 + digits;
    }
    match b.get(i) {
        Some(b'Z' | b'z') => b.len() == i + 1,
        Some(b'+' | b'-') => {
            b.len() == i + 6
                && number(i + 1..i + 3, 0, 23)
                && at(i + 3, b':')
                && number(i + 4..i + 6, 0, 59)
        }
        _ => false,
    }
}

/// A `repo:tag` reference as the dataset writes it (`ubuntu:22.04`, `arm64v8/ubuntu:22.04`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RepoTag {
    /// The repository.
    pub repo: RepoName,
    /// The tag name, validated by [`validate_tag`].
    pub tag: String,
}

impl RepoTag {
    /// Validates the tag and pairs it with its repository.
    pub fn new(repo: RepoName, tag: &str) -> Result<Self, NameError> {
        validate_tag(tag)?;
        Ok(Self {
            repo,
            tag: tag.to_owned(),
        })
    }
}

impl fmt::Display for RepoTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repo.display_name(), self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trip_and_order() {
        let a = "sha256:0199853f6d6b20b0424f3c5694a72a62764f01e6a771b1eb48a4197848986c7e";
        let b = "sha256:3b06811b2afd352be909dd088a004166d665dc76d38b13eada33522a9d915c6f";
        let da = Digest::parse(a).unwrap();
        let db = Digest::parse(b).unwrap();
        assert_eq!(da.to_string(), a);
        assert!(da < db, "byte order must follow text order");
    }

    #[test]
    fn digest_rejects_bad_forms() {
        for bad in [
            "",
            "sha256:",
            "md5:0199853f6d6b20b0424f3c5694a72a62",
            "sha256:0199853F6D6B20B0424F3C5694A72A62764F01E6A771B1EB48A4197848986C7E",
            "sha256:0199853f6d6b20b0424f3c5694a72a62764f01e6a771b1eb48a4197848986c7",
            "sha256:0199853f6d6b20b0424f3c5694a72a62764f01e6a771b1eb48a4197848986c7ee",
            "sha256:zz99853f6d6b20b0424f3c5694a72a62764f01e6a771b1eb48a4197848986c7e",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names() {
        let repo = RepoName::new("library", "ubuntu").unwrap();
        assert_eq!(
            RepoTag::new(repo.clone(), "22.04").unwrap().to_string(),
            "ubuntu:22.04"
        );
        let arm = RepoName::new("arm64v8", "ubuntu").unwrap();
        assert_eq!(
            RepoTag::new(arm, "jammy").unwrap().to_string(),
            "arm64v8/ubuntu:jammy"
        );
        for bad in ["", "a/b", "..", "a b", "a\nb", ".x", "-x"] {
            assert!(RepoTag::new(repo.clone(), bad).is_err(), "{bad:?} accepted");
        }
        assert!(RepoName::new("library", "../etc").is_err());
        assert!(RepoName::new("library", "Ubuntu").is_err());
    }

    #[test]
    fn qualified_names_follow_docker_s_reference_grammar() {
        let table = [
            ("mcr.microsoft.com", "windows/servercore", true),
            ("mcr.microsoft.com", "dotnet/runtime-deps", true),
            ("127.0.0.1:5000", "alpine", true),
            ("localhost:5000", "a/b/c", true),
            ("localhost", "a__b", true),
            ("[::1]:5000", "x", true),
            ("[::1]", "x", true),
            ("registry.example", "a.b_c--d", true),
            ("Registry.Example", "x", true),
            // Not a host by Docker's rule: a Docker Hub namespace.
            ("library", "python", false),
            ("mcr.microsoft.com", "Windows/servercore", false),
            ("mcr.microsoft.com", "windows//servercore", false),
            ("mcr.microsoft.com", "/windows", false),
            ("mcr.microsoft.com", "windows/", false),
            ("mcr.microsoft.com", "a___b", false),
            ("mcr.microsoft.com", "a.-b", false),
            ("mcr.microsoft.com", "-a", false),
            ("mcr.microsoft.com", "../etc", false),
            ("mcr.microsoft.com", "a b", false),
            ("mcr.microsoft.com", "a\u{1b}b", false),
            ("mcr..microsoft.com", "x", false),
            ("-mcr.com", "x", false),
            ("mcr.com:", "x", false),
            ("mcr.com:12a", "x", false),
            ("[zz]:1", "x", false),
            ("a.b/c", "x", false),
        ];
        for (host, path, ok) in table {
            let got = RepoName::qualified(host, path);
            assert_eq!(got.is_ok(), ok, "{host} {path}: {got:?}");
            if let Ok(repo) = got {
                assert_eq!(repo.to_string(), format!("{host}/{path}"));
                assert_eq!(repo.display_name(), format!("{host}/{path}"));
                assert_eq!(repo.host(), Some(host));
                assert_eq!(repo.path(), path);
            }
        }
        let long = "a".repeat(250);
        assert!(RepoName::qualified("mcr.microsoft.com", &long).is_err());
        let hub = RepoName::new("library", "python").unwrap();
        assert_eq!((hub.host(), hub.path().as_str()), (None, "library/python"));
        let tag = RepoTag::new(
            RepoName::qualified("mcr.microsoft.com", "windows/servercore").unwrap(),
            "ltsc2022",
        )
        .unwrap();
        assert_eq!(
            tag.to_string(),
            "mcr.microsoft.com/windows/servercore:ltsc2022"
        );
        for (key, host) in [
            ("library/python", None),
            ("python:3", None),
            ("127.0.0.1:5000/x:1", Some("127.0.0.1:5000")),
            (
                "mcr.microsoft.com/windows/servercore",
                Some("mcr.microsoft.com"),
            ),
            ("mcr.microsoft.com", None),
        ] {
            assert_eq!(repo_key_host(key), host, "{key}");
        }
    }

    #[test]
    fn platform_display() {
        assert_eq!(
            Platform::new("linux", "arm64", Some("v8")).to_string(),
            "linux/arm64/v8"
        );
        assert_eq!(
            Platform::new("linux", "amd64", Some("")).to_string(),
            "linux/amd64"
        );
        assert!(Platform::new("unknown", "unknown", None).is_attestation());
    }

    #[test]
    fn platform_rules() {
        let part = "a".repeat(MAX_PLATFORM_PART);
        for (os, arch, variant) in [
            ("linux", "amd64", None),
            ("linux", "arm64", Some("v8")),
            ("windows", "amd64", Some("")),
            ("", "", None),
            ("unknown", "unknown", None),
            ("Linux", "ppc64le", Some("v1.2_3-x")),
            (part.as_str(), part.as_str(), Some(part.as_str())),
        ] {
            let p = Platform::parse(os, arch, variant).unwrap();
            assert_eq!(p, Platform::new(os, arch, variant));
        }
        let long = "a".repeat(MAX_PLATFORM_PART + 1);
        for (os, arch, variant) in [
            ("linux\u{1b}[2J", "amd64", None),
            ("linux", "amd 64", None),
            ("linux", "amd64", Some("v8/x")),
            ("linux", "amd64", Some("\u{7}")),
            ("linux", long.as_str(), None),
            ("naïve", "amd64", None),
            ("linux\n", "amd64", None),
        ] {
            let err = Platform::parse(os, arch, variant).unwrap_err();
            assert!(
                !err.to_string().contains(['\u{1b}', '\u{7}', '\n']),
                "{err}"
            );
        }
    }

    #[test]
    fn os_version_rules() {
        for ok in [
            "10.0.20348.2849",
            "1",
            "6.3+build_7-x",
            &"9".repeat(MAX_OS_VERSION),
        ] {
            assert_eq!(validate_os_version(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "",
            " 10.0",
            "10.0\u{1b}",
            "10/0",
            &"9".repeat(MAX_OS_VERSION + 1),
        ] {
            assert!(validate_os_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn push_time_rules() {
        for ok in [
            "2020-06-09T20:45:50.400981Z",
            "2020-06-09T20:22:13Z",
            "2026-07-31T10:05:00.123456789Z",
            "2016-12-31T23:59:60z",
            "2020-06-09T20:45:50+02:00",
            "2020-06-09t20:45:50.1-11:30",
        ] {
            assert_eq!(validate_push_time(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "",
            "2020-06-09",
            "2020-06-09 20:45:50Z",
            "2020-13-09T20:45:50Z",
            "2020-06-00T20:45:50Z",
            "2020-06-09T24:45:50Z",
            "2020-06-09T20:45:50",
            "2020-06-09T20:45:50.Z",
            "2020-06-09T20:45:50.1234567890Z",
            "2020-06-09T20:45:50Zjunk",
            "2020-06-09T20:45:50+0200",
            "2020-06-09T20:45:50Z\u{1b}[2J",
            "+020-06-09T20:45:50Z",
            "２020-06-09T20:45:50Z",
            "yesterday",
        ] {
            assert!(validate_push_time(bad).is_err(), "{bad:?}");
        }
    }
}

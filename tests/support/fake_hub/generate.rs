//! Generates a realistic namespace from a seed.
//!
//! Repositories are walked from the newest release backwards in time, so floating aliases
//! (`3.12`, `3`, `latest`, `jammy`) land on the newest build that can carry them, and what Hub
//! shows changes with the era a build was pushed in: v1 signed manifests with null timestamps
//! before 2016, tags without a top-level digest before 2021, Docker manifest lists, then OCI
//! indexes with attestation manifests from mid-2023. Rarer quirks (empty `images`, null and
//! invalid digests, manifests kept by a rebuilt index, single-platform builds, legacy config
//! digests) are mixed in at small rates. Windows variants contribute their images to the shared
//! tag's index too, as on the real Hub. Everything draws from one [`Prng`] in a fixed order.

use std::collections::{HashMap, HashSet};

use super::model::{
    Build, Dataset, DigestKind, DigestSlot, Image, ImageRole, MediaType, Platform, Repo, Tag,
    UPDATERS,
};
use super::prng::Prng;
use super::time::{DAY, HOUR, MINUTE, Micros, NOW, SECOND, compact_date, date};

/// What to generate. Changing any of it regenerates the dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct DataSpec {
    pub(super) seed: u64,
    pub(super) namespace: String,
    pub(super) repos: usize,
    pub(super) max_tags: usize,
    pub(super) big_repo_tags: usize,
    pub(super) rebuilds: u32,
    pub(super) churn: Option<Churn>,
}

/// Changes between two crawls, applied after the rebuilds: what a day on Hub does to a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Churn {
    /// Per mille of tags pushed again to new digests.
    pub retag_permille: u32,
    /// New tags, spread over the repositories (`churn-N`), each on a new build.
    pub added: usize,
    /// Per mille of tags deleted (never one of the retagged ones).
    pub deleted_permille: u32,
    /// Seed of the choice, so that successive churns differ.
    pub seed: u64,
}

/// Before this, builds may be v1 signed manifests with null timestamps.
fn v1_era_end() -> Micros {
    date(2016, 3, 1)
}
/// Before this, most tags have no top-level digest and `full_size: 0`.
fn digestless_era_end() -> Micros {
    date(2021, 1, 1)
}
/// From this, multi-platform builds are mostly OCI indexes with attestations.
fn oci_era_start() -> Micros {
    date(2023, 6, 1)
}

/// A platform and the span in which official images were built for it.
struct PlatformSpec {
    architecture: &'static str,
    variant: Option<&'static str>,
    from: (i64, u32),
    until: Option<(i64, u32)>,
}

const PLATFORMS: [PlatformSpec; 9] = [
    PlatformSpec {
        architecture: "amd64",
        variant: None,
        from: (2010, 1),
        until: None,
    },
    PlatformSpec {
        architecture: "arm",
        variant: Some("v6"),
        from: (2015, 6),
        until: None,
    },
    PlatformSpec {
        architecture: "arm",
        variant: Some("v7"),
        from: (2015, 6),
        until: None,
    },
    PlatformSpec {
        architecture: "arm64",
        variant: Some("v8"),
        from: (2017, 1),
        until: None,
    },
    PlatformSpec {
        architecture: "386",
        variant: None,
        from: (2015, 6),
        until: None,
    },
    PlatformSpec {
        architecture: "ppc64le",
        variant: None,
        from: (2017, 1),
        until: None,
    },
    PlatformSpec {
        architecture: "s390x",
        variant: None,
        from: (2017, 1),
        until: None,
    },
    PlatformSpec {
        architecture: "riscv64",
        variant: None,
        from: (2023, 1),
        until: None,
    },
    PlatformSpec {
        architecture: "mips64le",
        variant: None,
        from: (2019, 1),
        until: Some((2024, 6)),
    },
];

/// A tag suffix (`-slim-bookworm`) and when it was published.
struct Variant {
    suffix: &'static str,
    from: (i64, u32),
    until: Option<(i64, u32)>,
    /// The Windows build prefix of `os_version`, for Windows variants.
    windows: Option<&'static str>,
}

const fn variant(suffix: &'static str, from: (i64, u32), until: Option<(i64, u32)>) -> Variant {
    Variant {
        suffix,
        from,
        until,
        windows: None,
    }
}

const fn windows(suffix: &'static str, from: (i64, u32), build: &'static str) -> Variant {
    Variant {
        suffix,
        from,
        until: None,
        windows: Some(build),
    }
}

const LTSC2022: &str = "10.0.20348";
const LTSC2019: &str = "10.0.17763";

const PYTHON_VARIANTS: &[Variant] = &[
    windows("-windowsservercore-1809", (2018, 11), LTSC2019),
    windows("-windowsservercore-ltsc2022", (2021, 9), LTSC2022),
    windows("-nanoserver-ltsc2022", (2021, 9), LTSC2022),
    variant("", (2010, 1), None),
    variant("-slim", (2016, 6), None),
    variant("-alpine", (2016, 3), None),
    variant("-jessie", (2015, 5), Some((2018, 7))),
    variant("-stretch", (2017, 6), Some((2020, 8))),
    variant("-slim-stretch", (2017, 6), Some((2020, 8))),
    variant("-buster", (2019, 7), Some((2024, 6))),
    variant("-slim-buster", (2019, 7), Some((2024, 6))),
    variant("-bullseye", (2021, 8), None),
    variant("-slim-bullseye", (2021, 8), None),
    variant("-bookworm", (2023, 6), None),
    variant("-slim-bookworm", (2023, 6), None),
    variant("-alpine3.20", (2024, 5), None),
];

const GOLANG_VARIANTS: &[Variant] = &[
    windows("-windowsservercore-1809", (2018, 11), LTSC2019),
    windows("-nanoserver-1809", (2018, 11), LTSC2019),
    windows("-windowsservercore-ltsc2022", (2021, 9), LTSC2022),
    windows("-nanoserver-ltsc2022", (2021, 9), LTSC2022),
    variant("", (2010, 1), None),
    variant("-alpine", (2016, 3), None),
    variant("-bullseye", (2021, 8), None),
    variant("-bookworm", (2023, 6), None),
    variant("-alpine3.20", (2024, 5), None),
];

const NODE_VARIANTS: &[Variant] = &[
    variant("", (2010, 1), None),
    variant("-alpine", (2016, 3), None),
    variant("-slim", (2016, 6), None),
    variant("-bullseye", (2021, 8), None),
    variant("-bullseye-slim", (2021, 8), None),
    variant("-bookworm", (2023, 6), None),
    variant("-bookworm-slim", (2023, 6), None),
    variant("-alpine3.20", (2024, 5), None),
];

const NGINX_VARIANTS: &[Variant] = &[
    variant("", (2010, 1), None),
    variant("-alpine", (2016, 3), None),
    variant("-perl", (2017, 3), None),
    variant("-alpine-perl", (2017, 3), None),
    variant("-alpine-slim", (2023, 2), None),
    variant("-otel", (2024, 1), None),
];

const SERVER_VARIANTS: &[Variant] = &[
    variant("", (2010, 1), None),
    variant("-alpine", (2016, 3), None),
    variant("-bullseye", (2021, 8), None),
    variant("-bookworm", (2023, 6), None),
    variant("-alpine3.20", (2024, 5), None),
];

const ALPINE_VARIANTS: &[Variant] = &[variant("", (2010, 1), None)];

const GENERIC_VARIANTS: &[Variant] = &[
    variant("", (2010, 1), None),
    variant("-alpine", (2016, 3), None),
    variant("-slim", (2017, 1), None),
    variant("-perl", (2019, 1), None),
    variant("-bullseye", (2021, 8), None),
    variant("-bookworm", (2023, 6), None),
    variant("-alpine3.20", (2024, 5), None),
    variant("-otel", (2024, 1), None),
];

const GENERIC_WINDOWS_VARIANTS: &[Variant] = &[
    windows("-windowsservercore-ltsc2022", (2021, 9), LTSC2022),
    windows("-nanoserver-ltsc2022", (2021, 9), LTSC2022),
    variant("", (2010, 1), None),
    variant("-alpine", (2016, 3), None),
    variant("-bookworm", (2023, 6), None),
];

const UBUNTU_VARIANTS: &[Variant] = &[variant("", (2010, 1), None)];
const DEBIAN_VARIANTS: &[Variant] = &[
    variant("", (2010, 1), None),
    variant("-slim", (2017, 6), None),
];

/// A distribution release, which gets dated builds while it is supported.
struct Release {
    number: &'static str,
    codename: &'static str,
    from: (i64, u32),
    until: (i64, u32),
    /// Eligible for `latest` (Ubuntu: LTS releases only).
    latest: bool,
}

const fn release(
    number: &'static str,
    codename: &'static str,
    from: (i64, u32),
    until: (i64, u32),
    latest: bool,
) -> Release {
    Release {
        number,
        codename,
        from,
        until,
        latest,
    }
}

const UBUNTU_RELEASES: &[Release] = &[
    release("26.04", "resolute", (2026, 4), (2031, 4), true),
    release("25.10", "questing", (2025, 10), (2026, 7), false),
    release("25.04", "plucky", (2025, 4), (2026, 1), false),
    release("24.10", "oracular", (2024, 10), (2025, 7), false),
    release("24.04", "noble", (2024, 4), (2029, 5), true),
    release("23.10", "mantic", (2023, 10), (2024, 7), false),
    release("23.04", "lunar", (2023, 4), (2024, 1), false),
    release("22.10", "kinetic", (2022, 10), (2023, 7), false),
    release("22.04", "jammy", (2022, 4), (2027, 6), true),
    release("21.10", "impish", (2021, 10), (2022, 7), false),
    release("21.04", "hirsute", (2021, 4), (2022, 1), false),
    release("20.10", "groovy", (2020, 10), (2021, 7), false),
    release("20.04", "focal", (2020, 4), (2025, 5), true),
    release("18.04", "bionic", (2018, 4), (2023, 5), true),
    release("16.04", "xenial", (2016, 4), (2021, 4), true),
    release("14.04", "trusty", (2014, 4), (2019, 4), true),
    release("12.04", "precise", (2012, 4), (2017, 4), true),
];

const DEBIAN_RELEASES: &[Release] = &[
    release("13", "trixie", (2025, 8), (2030, 6), true),
    release("12", "bookworm", (2023, 6), (2028, 6), true),
    release("11", "bullseye", (2021, 8), (2026, 8), true),
    release("10", "buster", (2019, 7), (2024, 6), true),
    release("9", "stretch", (2017, 6), (2022, 6), true),
    release("8", "jessie", (2015, 4), (2020, 6), true),
    release("7", "wheezy", (2013, 5), (2018, 5), true),
];

/// How a repository names its releases.
enum Style {
    /// `X.Y.Z{suffix}` with floating `X.Y`, `X` and `latest`, newest version `top`.
    Semver {
        top: (u32, u32),
        variants: &'static [Variant],
    },
    /// Dated builds of supported releases: `jammy-20240101`, `22.04`, `jammy`, `latest`.
    Distro {
        releases: &'static [Release],
        variants: &'static [Variant],
        rolling: bool,
    },
}

/// A repository Hub really has, and how to fake it.
struct Profile {
    name: &'static str,
    style: Style,
    description: &'static str,
    category: (&'static str, &'static str),
    /// `None`: a random set; otherwise indexes into [`PLATFORMS`].
    platforms: Option<&'static [usize]>,
}

const LANGUAGES: (&str, &str) = ("Languages & frameworks", "languages-and-frameworks");
const OPERATING_SYSTEMS: (&str, &str) = ("Operating systems", "operating-systems");
const WEB_SERVERS: (&str, &str) = ("Web servers", "web-servers");
const DATABASES: (&str, &str) = ("Databases & storage", "databases-and-storage");
const TOOLS: (&str, &str) = ("Developer tools", "developer-tools");

const PROFILES: &[Profile] = &[
    Profile {
        name: "ubuntu",
        style: Style::Distro {
            releases: UBUNTU_RELEASES,
            variants: UBUNTU_VARIANTS,
            rolling: true,
        },
        description: "Ubuntu is a Debian-based Linux operating system based on free software.",
        category: OPERATING_SYSTEMS,
        platforms: Some(&[0, 2, 3, 5, 7, 6]),
    },
    Profile {
        name: "python",
        style: Style::Semver {
            top: (3, 14),
            variants: PYTHON_VARIANTS,
        },
        description: "Python is an interpreted, interactive, object-oriented, open-source programming language.",
        category: LANGUAGES,
        platforms: Some(&[0, 1, 2, 3, 4, 5, 6, 7, 8]),
    },
    Profile {
        name: "node",
        style: Style::Semver {
            top: (23, 3),
            variants: NODE_VARIANTS,
        },
        description: "Node.js is a JavaScript-based platform for server-side and networking applications.",
        category: LANGUAGES,
        platforms: None,
    },
    Profile {
        name: "alpine",
        style: Style::Semver {
            top: (3, 21),
            variants: ALPINE_VARIANTS,
        },
        description: "A minimal Docker image based on Alpine Linux with a complete package index and only 5 MB in size!",
        category: OPERATING_SYSTEMS,
        platforms: Some(&[0, 1, 2, 3, 4, 5, 6, 7]),
    },
    Profile {
        name: "debian",
        style: Style::Distro {
            releases: DEBIAN_RELEASES,
            variants: DEBIAN_VARIANTS,
            rolling: false,
        },
        description: "Debian is a Linux distribution that's composed entirely of free and open-source software.",
        category: OPERATING_SYSTEMS,
        platforms: Some(&[0, 2, 3, 4, 5, 6, 8]),
    },
    Profile {
        name: "golang",
        style: Style::Semver {
            top: (1, 23),
            variants: GOLANG_VARIANTS,
        },
        description: "Go (golang) is a general purpose, higher-level, imperative programming language.",
        category: LANGUAGES,
        platforms: None,
    },
    Profile {
        name: "nginx",
        style: Style::Semver {
            top: (1, 27),
            variants: NGINX_VARIANTS,
        },
        description: "Official build of Nginx.",
        category: WEB_SERVERS,
        platforms: None,
    },
    Profile {
        name: "redis",
        style: Style::Semver {
            top: (7, 4),
            variants: SERVER_VARIANTS,
        },
        description: "Redis is the world's fastest data platform for caching, vector search, and NoSQL databases.",
        category: DATABASES,
        platforms: None,
    },
    Profile {
        name: "postgres",
        style: Style::Semver {
            top: (17, 2),
            variants: SERVER_VARIANTS,
        },
        description: "The PostgreSQL object-relational database system provides reliability and data integrity.",
        category: DATABASES,
        platforms: None,
    },
];

const NAME_STEMS: &[&str] = &[
    "kestrel", "quill", "marlin", "tundra", "basalt", "cinder", "fjord", "lumen", "nimbus",
    "orchid", "pylon", "quartz", "sable", "thistle", "umber", "vesper", "wren", "zephyr",
];
const NAME_ENDINGS: &[&str] = &[
    "db",
    "mq",
    "proxy",
    "cache",
    "server",
    "ctl",
    "",
    "-exporter",
    "-agent",
];

/// Generates the dataset of a spec.
pub(super) fn generate(spec: &DataSpec) -> Dataset {
    let mut g = Generator {
        rng: Prng::new(spec.seed),
        seen: HashSet::new(),
        next_tag_id: 100_000_000,
    };
    let names = repo_names(&mut g.rng, spec.repos);
    let big = names.iter().position(|n| n == "python").unwrap_or(0);
    let counts = tag_counts(&mut g.rng, names.len(), big, spec);
    let mut repos = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let profile = PROFILES.iter().find(|p| p.name == name);
        // The first generated repository is single-platform, so the default dataset has one.
        let amd64_only = profile.is_none() && i == PROFILES.len();
        repos.push(g.repo(name, profile, counts[i], amd64_only, i as u64));
    }
    let mut dataset = Dataset {
        namespace: spec.namespace.clone(),
        repos,
    };
    for round in 1..=spec.rebuilds {
        for repo in &mut dataset.repos {
            g.rebuild_newest(repo, NOW + i64::from(round) * DAY);
        }
    }
    if let Some(churn) = spec.churn {
        g.churn(
            &mut dataset,
            churn,
            NOW + i64::from(spec.rebuilds + 1) * DAY,
        );
    }
    dataset
}

fn repo_names(rng: &mut Prng, count: usize) -> Vec<String> {
    let mut names: Vec<String> = PROFILES
        .iter()
        .take(count)
        .map(|p| p.name.to_owned())
        .collect();
    let mut attempt = 0u64;
    while names.len() < count {
        let stem = rng.pick(NAME_STEMS);
        let ending = rng.pick(NAME_ENDINGS);
        attempt += 1;
        // Past a few hundred names the stems run out; numbering keeps names unique.
        let name = if attempt > 400 {
            format!("{stem}{ending}-{attempt}")
        } else {
            format!("{stem}{ending}")
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Tag counts: `big_repo_tags` for the big one, the others spread uniformly from a few to
/// `max_tags`, with the first at `max_tags` and the last at a few so both ends are present.
fn tag_counts(rng: &mut Prng, count: usize, big: usize, spec: &DataSpec) -> Vec<usize> {
    let high = spec.max_tags.max(1);
    let low = high.min(5);
    let mut counts: Vec<usize> = (0..count)
        .map(|_| rng.range(low as u64, high as u64) as usize)
        .collect();
    let others: Vec<usize> = (0..count).filter(|&i| i != big).collect();
    if let Some(&first) = others.first() {
        counts[first] = high;
    }
    if others.len() > 1 {
        counts[others[others.len() - 1]] = low;
    }
    if big < count {
        counts[big] = spec.big_repo_tags;
    }
    counts
}

struct Generator {
    rng: Prng,
    /// Every digest handed out, so each is unique.
    seen: HashSet<String>,
    next_tag_id: u64,
}

/// Per-repository state while its builds are generated.
struct RepoBuilder {
    builds: Vec<Build>,
    tags: Vec<Tag>,
    used: HashSet<String>,
    target: usize,
    platforms: Vec<usize>,
    base_size: u64,
    updater: usize,
    /// How often a build keeps platform manifests of the series' newer build.
    reuse_rate: f64,
    /// The platform images of the newest multi-platform build per series and variant.
    series_images: HashMap<String, Vec<Image>>,
}

impl RepoBuilder {
    fn full(&self) -> bool {
        self.tags.len() >= self.target
    }
}

impl Generator {
    fn fresh_digest(&mut self) -> String {
        loop {
            let digest = format!("sha256:{}", self.rng.hex(64));
            if self.seen.insert(digest.clone()) {
                return digest;
            }
        }
    }

    /// The malformed digests seen in the wild: uppercase hex, truncated, another algorithm.
    fn invalid_digest(&mut self) -> String {
        match self.rng.below(3) {
            0 => format!("sha256:{}", self.rng.hex(64).to_uppercase()),
            1 => format!("sha256:{}", self.rng.hex(40)),
            _ => format!("md5:{}", self.rng.hex(32)),
        }
    }

    fn repo(
        &mut self,
        name: &str,
        profile: Option<&Profile>,
        target: usize,
        amd64_only: bool,
        index: u64,
    ) -> Repo {
        let platforms = match profile.and_then(|p| p.platforms) {
            Some(fixed) => fixed.to_vec(),
            None if amd64_only => vec![0],
            None => self.random_platforms(profile.is_some()),
        };
        let mut builder = RepoBuilder {
            builds: Vec::new(),
            tags: Vec::new(),
            used: HashSet::new(),
            target,
            platforms,
            base_size: self.rng.range(20, 400) * 1_000_000,
            updater: self.rng.below(UPDATERS.len() as u64) as usize,
            reuse_rate: 0.015,
            series_images: HashMap::new(),
        };
        let (description, category) = match profile {
            Some(p) => (p.description.to_owned(), p.category),
            None => (
                format!("{name}: a generated image for digestmap's tests."),
                TOOLS,
            ),
        };
        match profile.map(|p| &p.style) {
            Some(Style::Semver { top, variants }) => self.semver(&mut builder, *top, variants),
            Some(Style::Distro {
                releases,
                variants,
                rolling,
            }) => {
                builder.reuse_rate = 0.05;
                self.distro(&mut builder, releases, variants, *rolling);
            }
            None => {
                let top = (self.rng.range(1, 9) as u32, self.rng.range(0, 12) as u32);
                let variants = self.random_variants(amd64_only);
                self.semver(&mut builder, top, variants);
            }
        }
        let oldest = builder
            .tags
            .iter()
            .filter_map(|t| t.last_updated)
            .min()
            .unwrap_or(NOW);
        Repo {
            name: name.to_owned(),
            id: 1_000_000 + index * 7919 + self.rng.below(7919),
            description,
            category,
            star_count: self.rng.range(10, 12_000),
            pull_count: self.rng.range(1_000_000, 9_000_000_000),
            registered: date(2014, 6, 5).min(oldest - 30 * DAY),
            builds: builder.builds,
            tags: builder.tags,
        }
    }

    fn random_platforms(&mut self, known: bool) -> Vec<usize> {
        let mut chosen = vec![0, 3];
        for (i, p) in [
            (1, 0.5),
            (2, 0.8),
            (4, 0.6),
            (5, 0.8),
            (6, 0.8),
            (7, 0.4),
            (8, 0.3),
        ] {
            if self.rng.chance(if known { p } else { p * 0.7 }) {
                chosen.push(i);
            }
        }
        chosen.sort_unstable();
        chosen
    }

    /// A generated repository's variants; Windows ones only for some of them.
    fn random_variants(&mut self, amd64_only: bool) -> &'static [Variant] {
        if !amd64_only && self.rng.chance(0.2) {
            return GENERIC_WINDOWS_VARIANTS;
        }
        let end = self.rng.range(1, GENERIC_VARIANTS.len() as u64) as usize;
        &GENERIC_VARIANTS[..end]
    }

    /// Walks versions newest first, one release per version, all variants of the release's era.
    fn semver(&mut self, b: &mut RepoBuilder, top: (u32, u32), variants: &'static [Variant]) {
        // Spread the releases so a few hundred tags reach back years, thousands to 2014.
        let span = (365 + b.target as i64 * 10).min(12 * 365) * DAY;
        let per_tag = span / b.target.max(1) as i64;
        let mut t = NOW - self.rng.range(1, 120) as i64 * HOUR;
        let (mut major, mut minor) = top;
        let mut patch = self.rng.range(0, 12) as u32;
        // Thousands of tags need more patch releases per minor than real projects make.
        let most_patches = (b.target as u64 / 125).max(24);
        while !b.full() {
            let version = format!("{major}.{minor}.{patch}");
            let series = format!("{major}.{minor}");
            let before = b.tags.len();
            let mut windows_images = Vec::new();
            for v in variants.iter().filter(|v| active(v.from, v.until, t)) {
                let s = v.suffix;
                let top_alias = if s.is_empty() {
                    "latest".to_owned()
                } else {
                    s[1..].to_owned()
                };
                let aliases = [
                    format!("{version}{s}"),
                    format!("{series}{s}"),
                    format!("{major}{s}"),
                    top_alias,
                ];
                self.emit(b, t, v, &series, &aliases, &mut windows_images);
            }
            let emitted = (b.tags.len() - before).max(1) as i64;
            t -= per_tag * emitted * self.rng.range(50, 150) as i64 / 100;
            // The previous version: lower patch, else the previous minor's last patch, else the
            // previous major's; a repository that runs out of versions (below 0.0.0) stops short.
            if patch > 0 {
                patch -= 1;
            } else if minor > 0 {
                minor -= 1;
                patch = self.rng.range(0, most_patches) as u32;
            } else if major > 0 {
                major -= 1;
                minor = self.rng.range(2, 14) as u32;
                patch = self.rng.range(0, most_patches) as u32;
            } else {
                break;
            }
        }
    }

    /// Walks time backwards in steps of weeks; each supported release gets a dated build.
    fn distro(
        &mut self,
        b: &mut RepoBuilder,
        releases: &'static [Release],
        variants: &'static [Variant],
        rolling: bool,
    ) {
        let earliest = releases
            .iter()
            .map(|r| date(r.from.0, r.from.1, 1))
            .min()
            .unwrap_or(NOW);
        let mut t = NOW - self.rng.range(1, 120) as i64 * HOUR;
        while !b.full() && t >= earliest {
            let mut windows_images = Vec::new();
            for r in releases.iter().filter(|r| active(r.from, Some(r.until), t)) {
                for v in variants.iter().filter(|v| active(v.from, v.until, t)) {
                    let s = v.suffix;
                    let mut aliases = vec![
                        format!("{}-{}{s}", r.codename, compact_date(t)),
                        format!("{}{s}", r.codename),
                        format!("{}{s}", r.number),
                    ];
                    if r.latest && s.is_empty() {
                        aliases.push("latest".to_owned());
                    }
                    if rolling && s.is_empty() {
                        aliases.push("rolling".to_owned());
                    }
                    self.emit(b, t, v, r.codename, &aliases, &mut windows_images);
                }
            }
            t -= self.rng.range(10, 35) as i64 * DAY + self.rng.range(0, 23) as i64 * HOUR;
        }
    }

    /// Adds one build carrying the still-unused names among `aliases` (the first, most
    /// specific one is always unused), and its tags, up to the repository's target.
    fn emit(
        &mut self,
        b: &mut RepoBuilder,
        t: Micros,
        v: &Variant,
        series: &str,
        aliases: &[String],
        windows_images: &mut Vec<Image>,
    ) {
        let names: Vec<&String> = aliases
            .iter()
            .filter(|a| !b.used.contains(a.as_str()))
            .take(b.target.saturating_sub(b.tags.len()))
            .collect();
        if names.is_empty() {
            return;
        }
        let build = match v.windows {
            Some(prefix) => {
                let build = self.windows_build(b, t, prefix);
                windows_images.extend(build.images.iter().cloned());
                build
            }
            None => {
                // The shared tag's index lists the Windows variants' images too.
                let windows: &[Image] = if v.suffix.is_empty() {
                    windows_images
                } else {
                    &[]
                };
                self.build(b, t, &format!("{series}{}", v.suffix), windows)
            }
        };
        let index = b.builds.len();
        let pushed = build.pushed;
        b.builds.push(build);
        for (i, name) in names.into_iter().enumerate() {
            b.used.insert(name.clone());
            self.next_tag_id += self.rng.range(1, 5000);
            b.tags.push(Tag {
                name: name.clone(),
                id: self.next_tag_id,
                build: index,
                last_updated: pushed.map(|p| p + i as i64 * self.rng.range(1, 4_000_000) as i64),
            });
        }
    }

    fn platform(&self, index: usize) -> Platform {
        let spec = &PLATFORMS[index];
        Platform {
            os: "linux",
            architecture: spec.architecture,
            variant: spec.variant,
            os_version: None,
        }
    }

    /// Pull times: recent for most builds, long ago or never for old ones.
    fn pulled(&mut self, pushed: Option<Micros>) -> Option<Micros> {
        let recent = match pushed {
            Some(p) if p >= digestless_era_end() => self.rng.chance(0.9),
            Some(_) => self.rng.chance(0.4),
            None => self.rng.chance(0.2),
        };
        if recent {
            Some(NOW - self.rng.range(0, 20 * DAY as u64) as i64)
        } else if self.rng.chance(0.8) {
            let from = pushed.unwrap_or(date(2016, 1, 1));
            Some(from + self.rng.below((NOW - 40 * DAY - from).max(1) as u64) as i64)
        } else {
            None
        }
    }

    fn image(
        &mut self,
        b: &RepoBuilder,
        role: ImageRole,
        digest: DigestSlot,
        build: (Option<Micros>, Option<Micros>),
    ) -> Image {
        let (pushed, pulled) = build;
        let size = match role {
            ImageRole::Attestation => self.rng.range(8_000, 40_000),
            ImageRole::Platform(_) => b.base_size / 2 + self.rng.below(b.base_size),
        };
        Image {
            role,
            digest,
            size,
            last_pushed: pushed.map(|p| {
                p - self.rng.range(0, 90) as i64 * MINUTE - self.rng.below(60) as i64 * SECOND
            }),
            last_pulled: pulled.map(|p| p - self.rng.range(0, 3_000_000) as i64),
        }
    }

    /// A Windows variant: a Docker manifest list with one windows/amd64 image.
    fn windows_build(&mut self, b: &RepoBuilder, t: Micros, prefix: &str) -> Build {
        let pulled = self.pulled(Some(t));
        let platform = Platform {
            os: "windows",
            architecture: "amd64",
            variant: None,
            os_version: Some(format!("{prefix}.{}", self.rng.range(1000, 6999))),
        };
        let digest = DigestSlot::Valid(self.fresh_digest());
        let mut image = self.image(b, ImageRole::Platform(platform), digest, (Some(t), pulled));
        // Windows images are big: the base layers alone are gigabytes.
        image.size += 1_500_000_000;
        let index = DigestSlot::Valid(self.fresh_digest());
        Build {
            media_type: MediaType::DockerList,
            digest: Some(index),
            full_size: image.size,
            images: vec![image],
            pushed: Some(t),
            pulled,
            updater: b.updater,
        }
    }

    /// A Linux build pushed at `t`, shaped by its era.
    fn build(
        &mut self,
        b: &mut RepoBuilder,
        t: Micros,
        key: &str,
        windows_images: &[Image],
    ) -> Build {
        let platforms: Vec<usize> = b
            .platforms
            .iter()
            .copied()
            .filter(|&i| {
                let p = &PLATFORMS[i];
                active(p.from, p.until, t)
            })
            .collect();
        if t < v1_era_end() && self.rng.chance(0.6) {
            return self.single(b, MediaType::DockerV1Signed, None);
        }
        let pushed = Some(t);
        if t < digestless_era_end() && t >= date(2015, 6, 1) && self.rng.chance(0.04) {
            return self.single(b, MediaType::ContainerConfig, pushed);
        }
        let modern = t >= digestless_era_end();
        if platforms.len() <= 1 || (modern && self.rng.chance(0.03)) {
            let media = if !modern {
                MediaType::DockerV2
            } else if t >= oci_era_start() && self.rng.chance(0.7) {
                MediaType::OciManifest
            } else {
                MediaType::DockerV2
            };
            let mut build = self.single(b, media, pushed);
            if !modern && self.rng.chance(0.9) {
                build.digest = None;
                build.full_size = 0;
            }
            return build;
        }
        let oci = t >= oci_era_start() && self.rng.chance(0.85);
        let pulled = self.pulled(pushed);
        let newer = b.series_images.get(key).cloned().unwrap_or_default();
        let reuse = !newer.is_empty() && self.rng.chance(b.reuse_rate);
        let mut images = Vec::new();
        let mut kept = Vec::new();
        for &p in &platforms {
            let platform = self.platform(p);
            let same = newer
                .iter()
                .find(|i| matches!(&i.role, ImageRole::Platform(q) if *q == platform));
            let image = match same {
                Some(image) if reuse && self.rng.chance(0.5) => {
                    let mut image = image.clone();
                    image.last_pushed = Some(t - self.rng.range(1, 48) as i64 * HOUR);
                    image
                }
                _ => {
                    let digest = if self.rng.chance(0.002) {
                        DigestSlot::Null
                    } else if self.rng.chance(0.001) {
                        DigestSlot::Invalid(self.invalid_digest())
                    } else {
                        DigestSlot::Valid(self.fresh_digest())
                    };
                    self.image(b, ImageRole::Platform(platform), digest, (pushed, pulled))
                }
            };
            // Only sound manifests are worth keeping in a rebuilt index.
            if image.digest.valid().is_some() {
                kept.push(image.clone());
            }
            images.push(image);
            if oci {
                let digest = DigestSlot::Valid(self.fresh_digest());
                let attestation = self.image(b, ImageRole::Attestation, digest, (pushed, pulled));
                images.push(attestation);
            }
        }
        images.extend(windows_images.iter().cloned());
        b.series_images.insert(key.to_owned(), kept);
        let mut full_size = images.first().map_or(0, |i| i.size);
        let digest = if !modern && self.rng.chance(0.9) {
            full_size = 0;
            None
        } else if self.rng.chance(0.004) {
            Some(DigestSlot::Invalid(self.invalid_digest()))
        } else {
            Some(DigestSlot::Valid(self.fresh_digest()))
        };
        if modern && self.rng.chance(0.012) {
            images.clear();
        }
        Build {
            media_type: if oci {
                MediaType::OciIndex
            } else {
                MediaType::DockerList
            },
            digest,
            images,
            pushed,
            pulled,
            full_size,
            updater: b.updater,
        }
    }

    /// A single-platform linux/amd64 build whose tag digest names its one image (for
    /// `ContainerConfig`, the image config).
    fn single(&mut self, b: &RepoBuilder, media: MediaType, pushed: Option<Micros>) -> Build {
        let pulled = self.pulled(pushed);
        let digest = self.fresh_digest();
        let image = self.image(
            b,
            ImageRole::Platform(self.platform(0)),
            DigestSlot::Valid(digest.clone()),
            (pushed, pulled),
        );
        Build {
            media_type: media,
            digest: Some(DigestSlot::Valid(digest)),
            full_size: image.size,
            images: vec![image],
            pushed,
            pulled,
            updater: b.updater,
        }
    }

    /// Tags move: the builds of the newest release are pushed again at `t`. Each build's most
    /// specific name stays on the old build; its floating names (`3.12`, `latest`, ...) move to
    /// the new one, which keeps some of the old platform manifests.
    fn rebuild_newest(&mut self, repo: &mut Repo, t: Micros) {
        let carried = |i: usize| repo.tags.iter().any(|tag| tag.build == i);
        let newest = (0..repo.builds.len())
            .filter(|&i| carried(i))
            .map(|i| repo.builds[i].pushed)
            .max();
        let Some(newest) = newest else {
            return;
        };
        let olds: Vec<usize> = (0..repo.builds.len())
            .filter(|&i| carried(i) && repo.builds[i].pushed == newest)
            .collect();
        for old in olds {
            let new = repo.builds.len();
            let build = self.rebuilt(&repo.builds[old], t);
            repo.builds.push(build);
            let aliases: Vec<usize> = (0..repo.tags.len())
                .filter(|&i| repo.tags[i].build == old)
                .collect();
            let movers = if aliases.len() > 1 {
                &aliases[1..]
            } else {
                &aliases[..]
            };
            for (n, &i) in movers.iter().enumerate() {
                let tag = &mut repo.tags[i];
                tag.build = new;
                tag.last_updated = Some(t + n as i64 * SECOND);
            }
        }
    }

    /// Retags, adds and deletes tags as `churn` says, all pushed at `t` (newest of all).
    fn churn(&mut self, dataset: &mut Dataset, churn: Churn, t: Micros) {
        let mut rng = Prng::new(churn.seed ^ 0xC4_0A2C);
        let mut added = 0;
        let repos = dataset.repos.len().max(1);
        for (r, repo) in dataset.repos.iter_mut().enumerate() {
            let mut pushed = 0i64;
            let mut retagged = vec![false; repo.tags.len()];
            for (i, flag) in retagged.iter_mut().enumerate() {
                if rng.chance(f64::from(churn.retag_permille) / 1000.0) {
                    let old = repo.tags[i].build;
                    let build = self.rebuilt(&repo.builds[old], t);
                    repo.builds.push(build);
                    repo.tags[i].build = repo.builds.len() - 1;
                    repo.tags[i].last_updated = Some(t + pushed * SECOND);
                    pushed += 1;
                    *flag = true;
                }
            }
            let mut keep = retagged
                .iter()
                .map(|&moved| moved || !rng.chance(f64::from(churn.deleted_permille) / 1000.0));
            repo.tags.retain(|_| keep.next().unwrap_or(true));
            // This repository's share of the new tags.
            let share = churn.added / repos + usize::from(r < churn.added % repos);
            for _ in 0..share {
                let Some(template) = repo.tags.first().map(|t| t.build) else {
                    break;
                };
                let build = self.rebuilt(&repo.builds[template], t);
                repo.builds.push(build);
                self.next_tag_id += 1;
                repo.tags.push(Tag {
                    name: format!("churn-{}-{added}", churn.seed),
                    id: self.next_tag_id,
                    build: repo.builds.len() - 1,
                    last_updated: Some(t + pushed * SECOND),
                });
                pushed += 1;
                added += 1;
            }
        }
    }

    /// `old` pushed again at `t`: new index and attestations; an index keeps some platform
    /// manifests, a single-platform build gets a new one.
    fn rebuilt(&mut self, old: &Build, t: Micros) -> Build {
        let mut build = old.clone();
        let kind = build.media_type.kind();
        for image in &mut build.images {
            let renew = match (&image.role, image.digest.valid()) {
                (ImageRole::Attestation, _) => true,
                (ImageRole::Platform(_), Some(_)) => {
                    kind != DigestKind::Index || self.rng.chance(0.6)
                }
                // Null and invalid digests stay as broken as they were.
                (ImageRole::Platform(_), None) => false,
            };
            if renew {
                image.digest = DigestSlot::Valid(self.fresh_digest());
            }
            image.last_pushed = Some(t - self.rng.range(1, 60) as i64 * MINUTE);
            image.last_pulled = Some(t);
        }
        build.digest = match kind {
            DigestKind::Index => Some(DigestSlot::Valid(self.fresh_digest())),
            // A single-platform tag names its one image.
            DigestKind::Manifest | DigestKind::Config => {
                build.images.first().map(|i| i.digest.clone())
            }
        };
        build.pushed = Some(t);
        build.pulled = Some(t);
        build
    }
}

/// Whether a span given in (year, month) covers `t`.
fn active(from: (i64, u32), until: Option<(i64, u32)>, t: Micros) -> bool {
    date(from.0, from.1, 1) <= t && until.is_none_or(|(y, m)| t < date(y, m, 1))
}

//! Measures digestmap against the performance targets: a crawl costs under 1 ms of CPU per page of
//! 100 tags, `finalize` writes at least 500,000 digests per second, and peak memory stays under
//! 300 MB at 1 million digests.
//!
//! ```text
//! cargo run --release --example bench                      # both parts
//! cargo run --release --example bench -- crawl            # only the crawl
//! cargo run --release --example bench -- finalize         # only finalize
//! cargo run --release --example bench -- cover            # only the anonymous cover
//! cargo run --release --example bench -- --digests 200000 --tags 20000
//! ```
//!
//! Crawl (`--tags`, default 40,000, about 450 pages): the fake Docker Hub (tests/support/fake_hub)
//! runs inside this process with no rate limit, and the crawler runs in a child process (this
//! executable again, with a hidden subcommand) through `digestmap::crawl::crawl`, so the child's
//! CPU time (from `wait4`) and peak RSS (its own `VmHWM`) are the crawler's alone, the double's
//! excluded. The same tag pages are then fetched once more and replayed in this process to split
//! that CPU time into parsing (`parse_page` + `observe_tag`) and storing (`record_tag`, commit).
//!
//! Finalize (`--digests`, default 1,000,000): one child builds a store of synthetic digests
//! through `Store::write`, a second child runs `digestmap::dataset::finalize` on it and times
//! itself, then walks the store once more into `io::sink` to separate the output's I/O. The store
//! was just written, so it is read from a warm OS page cache.
//!
//! Cover (`cover`, not part of the default run): the double serves repositories the size of
//! Docker Hub's largest (`--cover-tags` for the biggest, default 18,193 like `openjdk`; the next
//! ones 9,000 and fewer) with the anonymous paging cap, and its registry facade. A signed-in
//! crawl and an anonymous one (`--registry` at the double) run in this process; the figure is
//! the anonymous crawl's requests (Hub API, registry, tokens) over the signed-in one's (Hub API
//! and the sign-in), both counted by the double, against the goal of 1.3x, with every
//! (digest, repo:tag) pair of the double's truth found; the anonymous requests are broken down by
//! what they were for (plain views, 403s, registry, planned pages, tags by name).
//!
//! Wall-clock figures (pages per second, digests per second) assume an otherwise idle machine;
//! CPU times are less sensitive to other load. Everything is written under a fresh folder in the
//! temporary directory, removed at the end.

#[allow(dead_code)]
#[path = "../tests/support/fake_hub/mod.rs"]
mod fake_hub;

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use digestmap::crawl::{self, CrawlOptions, Progress};
use digestmap::dataset::{self, Output};
use digestmap::hub::{
    DigestFact, HubApi, Skips, TagEntry, TagObservation, observe_tag, parse_page,
};
use digestmap::model::{Digest, ObjectKind, Platform, RepoName, RepoTag};
use digestmap::net::auth::{CredentialSource, Credentials, Secret};
use digestmap::store::Store;

use fake_hub::{FakeHub, FakeHubConfig};

const TARGET_CPU_PER_PAGE: Duration = Duration::from_millis(1);
const TARGET_DIGESTS_PER_SEC: f64 = 500_000.0;
const TARGET_PEAK_MB: f64 = 300.0;
/// Workers of the benchmarked crawl: the crawler's default.
const WORKERS: usize = 4;
/// The pacer's ceiling; far above what the double can serve, so pacing never waits.
const RPS: f64 = 10_000.0;
/// Tag objects per write transaction while the synthetic store is built.
const TAGS_PER_TXN: usize = 1000;
/// Timed passes over the fetched pages; the fastest is reported, as the least disturbed.
const SPLIT_PASSES: usize = 3;
/// The anonymous cover's goal: requests at most this many times a signed-in crawl's.
const TARGET_COVER_RATIO: f64 = 1.3;

/// Benchmark digestmap's crawl and finalize against their targets.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    part: Option<Part>,
    /// Digests in the synthetic store that finalize reads.
    #[arg(long, global = true, default_value_t = 1_000_000)]
    digests: u64,
    /// Tags the fake Hub serves to the crawl (approximate: the double's generator decides).
    #[arg(long, global = true, default_value_t = 40_000)]
    tags: usize,
    /// Tags of the largest repository in the cover benchmark.
    #[arg(long, global = true, default_value_t = 18_193)]
    cover_tags: usize,
}

#[derive(Subcommand)]
enum Part {
    /// Only the crawl.
    Crawl,
    /// Only finalize.
    Finalize,
    /// Only the anonymous cover against a signed-in crawl.
    Cover,
    /// Child: crawls the fake Hub at `--hub-url` into `--db`.
    #[command(name = "__crawl-child", hide = true)]
    CrawlChild {
        #[arg(long)]
        hub_url: String,
        #[arg(long)]
        db: PathBuf,
    },
    /// Child: writes a synthetic store of `--digests` digests to `--db`.
    #[command(name = "__build-store", hide = true)]
    BuildStore {
        #[arg(long)]
        db: PathBuf,
    },
    /// Child: runs finalize from `--db` to `--out` and reports its own time.
    #[command(name = "__finalize-child", hide = true)]
    FinalizeChild {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.part {
        Some(Part::CrawlChild { hub_url, db }) => crawl_child(hub_url, &db),
        Some(Part::BuildStore { db }) => build_store(&db, cli.digests),
        Some(Part::FinalizeChild { db, out }) => finalize_child(&db, &out),
        Some(Part::Cover) => {
            let dir = TempDir::new()?;
            bench_cover(&dir.0, cli.cover_tags)
        }
        part => {
            let dir = TempDir::new()?;
            // Other work on the machine slows the wall-clock figures; the load shows how much.
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            println!(
                "digestmap bench: release={}, {} CPUs, load average {}, temporary files in {}",
                !cfg!(debug_assertions),
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                load.split_whitespace().next().unwrap_or("unknown"),
                dir.0.display()
            );
            if !matches!(part, Some(Part::Finalize)) {
                bench_crawl(&dir.0, cli.tags)?;
            }
            if !matches!(part, Some(Part::Crawl)) {
                bench_finalize(&dir.0, cli.digests)?;
            }
            Ok(())
        }
    }
}

/// A fresh folder under the temporary directory, removed (with everything in it) on drop, so
/// that a failed run leaves nothing behind either.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("digestmap-bench-{}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Crawl

fn bench_crawl(dir: &Path, tags: usize) -> anyhow::Result<()> {
    // The double's ordinary repositories hold between 5 and `max_tags` tags (about half of it on
    // average) and the big one `big_repo_tags`; these proportions resemble the official images.
    let max_tags = 1000;
    let big_repo_tags = (tags / 5).max(1);
    let repos = 1 + tags
        .saturating_sub(big_repo_tags)
        .div_ceil(max_tags / 2)
        .max(1);
    let generated = Instant::now();
    let hub = FakeHub::bind(FakeHubConfig {
        repos,
        max_tags,
        big_repo_tags,
        ..FakeHubConfig::default()
    })?;
    // The named repositories (ubuntu, debian, ...) run out of releases early and the others draw
    // their tag counts at random, so the repository count is searched for: secant steps on
    // (repositories, tags) from the two tries closest to the wish, until one is within 5%.
    let mut tried = vec![(hub.total_repos(), hub.total_tags())];
    for _ in 0..5 {
        tried.sort_by_key(|&(_, total)| total.abs_diff(tags));
        let (r1, t1) = tried[0];
        if t1.abs_diff(tags) * 20 <= tags {
            break;
        }
        let wanted = match tried.get(1) {
            Some(&(r2, t2)) if t2 != t1 => {
                r1 as f64
                    + (tags as f64 - t1 as f64) * (r2 as f64 - r1 as f64) / (t2 as f64 - t1 as f64)
            }
            _ => {
                let per_repo = t1.saturating_sub(big_repo_tags).max(1) as f64 / r1.max(2) as f64;
                1.0 + tags.saturating_sub(big_repo_tags) as f64 / per_repo
            }
        };
        let wanted = (wanted.round() as usize).max(2);
        if tried.iter().any(|&(r, _)| r == wanted) {
            break;
        }
        hub.update(|c| c.repos = wanted);
        tried.push((wanted, hub.total_tags()));
    }
    let closest = tried
        .iter()
        .min_by_key(|&&(_, total)| total.abs_diff(tags))
        .map_or(repos, |&(r, _)| r);
    if hub.total_repos() != closest {
        hub.update(|c| c.repos = closest);
    }
    let generated = generated.elapsed();
    let total_tags = hub.total_tags();
    let truth_digests = hub.truth().len();
    println!();
    println!(
        "== crawl: fake Hub with {} repositories, {} tags, {} digests (generated in {:.1} s)",
        hub.total_repos(),
        group(total_tags as u64),
        group(truth_digests as u64),
        generated.as_secs_f64()
    );
    println!("   crawler in a child process: {WORKERS} workers, --rps {RPS}, no rate limit");

    let db = dir.join("crawl.redb");
    let mut args: Vec<OsString> = vec!["__crawl-child".into(), "--hub-url".into()];
    args.push(hub.url().into());
    args.push("--db".into());
    args.push(db.clone().into());
    let child = run_child(&args)?;
    let report = &child.report;
    let field = |name: &str| report[name].as_u64().unwrap_or(0);
    let (repo_pages, tag_pages, stored_tags) =
        (field("repo_pages"), field("tag_pages"), field("tags"));
    let pages = repo_pages + tag_pages;
    let elapsed = report["secs"].as_f64().unwrap_or(f64::NAN);
    ensure!(
        field("failed") == 0,
        "the crawl left {} failed jobs",
        field("failed")
    );
    ensure!(
        stored_tags == total_tags as u64,
        "the crawl stored {stored_tags} tags of the double's {total_tags}"
    );
    ensure!(pages > 0, "the crawl fetched no page");
    if field("digests") != truth_digests as u64 {
        println!(
            "   WARNING: the crawl stored {} digests, a perfect crawl {truth_digests}",
            field("digests")
        );
    }
    let per_page = child.cpu / pages as u32;
    // Pages hold 100 tags except the last of each repository; this normalises to full pages.
    let per_100_tags = child.cpu.mul_f64(100.0 / stored_tags as f64);

    let mut t = Table::default();
    t.row(
        "pages fetched",
        format!("{pages} ({repo_pages} repository + {tag_pages} tag)"),
        "",
    );
    t.row(
        "tags / digests / pairs stored",
        format!(
            "{} / {} / {}",
            group(stored_tags),
            group(field("digests")),
            group(field("pairs"))
        ),
        "",
    );
    t.row(
        "store size on disk",
        format!("{:.1} MB", field("store_bytes") as f64 / 1e6),
        "",
    );
    t.row(
        "crawl() wall time",
        format!("{elapsed:.2} s (child process {:.2} s)", secs(child.wall)),
        "",
    );
    t.row(
        "pages per second",
        format!("{:.0}", pages as f64 / elapsed),
        "",
    );
    t.row(
        "crawler CPU (user + system)",
        format!(
            "{:.2} s ({:.2} user + {:.2} system)",
            secs(child.cpu),
            secs(child.user),
            secs(child.system)
        ),
        "",
    );
    t.row("CPU per page fetched", ms(per_page), "");
    t.verdict(
        "CPU per 100 tags (a full page)",
        ms(per_100_tags),
        format!("< {}", ms(TARGET_CPU_PER_PAGE)),
        per_100_tags < TARGET_CPU_PER_PAGE,
    );
    t.verdict(
        "crawler peak RSS",
        format!("{:.1} MB", child.peak_mb),
        format!(
            "< {TARGET_PEAK_MB:.0} MB at 1M digests (here {})",
            group(field("digests"))
        ),
        child.peak_mb < TARGET_PEAK_MB,
    );
    t.print();

    split_crawl_cost(dir, &hub, tag_pages)?;
    bench_refresh(&hub, &args, pages, elapsed, total_tags)?;
    Ok(())
}

/// A refresh after 1% of the tags moved, against the full crawl just made into the same store.
fn bench_refresh(
    hub: &FakeHub,
    args: &[OsString],
    full_pages: u64,
    full_secs: f64,
    tags: usize,
) -> anyhow::Result<()> {
    hub.update(|c| {
        c.churn = Some(fake_hub::Churn {
            retag_permille: 10,
            added: 0,
            deleted_permille: 0,
            seed: 1,
        })
    });
    hub.clear_requests();
    let child = run_child(args)?;
    let requests = hub.requests().len() as u64;
    let secs = child.report["secs"].as_f64().unwrap_or(f64::NAN);
    println!();
    println!(
        "== refresh after 1% of {} tags moved (same store, `crawl` on a finished crawl)",
        group(tags as u64)
    );
    let mut t = Table::default();
    t.row(
        "full crawl",
        format!("{full_pages} requests, {full_secs:.2} s"),
        "",
    );
    t.row(
        "refresh",
        format!("{requests} requests, {secs:.2} s"),
        &format!(
            "{:.1}% of the requests, {} repositories",
            requests as f64 * 100.0 / full_pages as f64,
            hub.total_repos()
        ),
    );
    t.print();
    Ok(())
}

/// The crawler in its own process, as `digestmap crawl` runs it (a multi-threaded runtime), so
/// that its CPU time and memory are measured apart from the double's.
fn crawl_child(hub_url: String, db: &Path) -> anyhow::Result<()> {
    let store = Arc::new(Store::open(db)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let options = CrawlOptions {
        hub_url: Some(hub_url),
        workers: WORKERS,
        rps: RPS,
        ..CrawlOptions::default()
    };
    let started = Instant::now();
    let report = runtime.block_on(crawl::crawl(
        store,
        options,
        Arc::new(Progress::default()),
        CancellationToken::new(),
    ))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "secs": secs,
            "repo_pages": report.stats.repo_pages,
            "tag_pages": report.stats.tag_pages,
            "tags": report.stats.tags,
            "requests": report.stats.requests,
            "digests": report.counts.digests,
            "pairs": report.counts.pairs,
            "failed": report.failed.len(),
            "store_bytes": std::fs::metadata(db)?.len(),
            "peak_kb": peak_rss_kb()?,
        })
    );
    Ok(())
}

/// Replays the crawl's tag pages in this process, each step timed on its own, to tell how much of
/// the crawler's CPU goes to parsing and how much to the store; the rest is HTTP, scheduling and
/// the crawler's bookkeeping.
fn split_crawl_cost(dir: &Path, hub: &FakeHub, tag_pages: u64) -> anyhow::Result<()> {
    let pages = fetch_tag_pages(hub)?;
    let count = pages.len();
    ensure!(count > 0, "the double served no tag page");
    if count as u64 != tag_pages {
        println!("   (the replay fetched {count} tag pages, the crawl {tag_pages})");
    }
    let bytes: usize = pages.iter().map(|(_, body)| body.len()).sum();

    let parse = |(repo, body): &(RepoName, Vec<u8>)| -> anyhow::Result<Vec<TagObservation>> {
        // What the crawler's worker does with a tag page body (crawl/handler.rs, parse_tags).
        let page = parse_page::<TagEntry>(body)?;
        let mut skips = Skips::default();
        let name = repo.to_string();
        Ok(page
            .results
            .iter()
            .filter_map(|entry| observe_tag(entry, &name, &mut skips))
            .collect())
    };
    let mut parse_cpu = Duration::MAX;
    for _ in 0..SPLIT_PASSES {
        let started = thread_cpu();
        for page in &pages {
            std::hint::black_box(parse(page)?);
        }
        parse_cpu = parse_cpu.min(thread_cpu() - started);
    }
    let observed: Vec<(RepoName, Vec<TagObservation>)> = pages
        .iter()
        .map(|page| Ok((page.0.clone(), parse(page)?)))
        .collect::<anyhow::Result<_>>()?;
    drop(pages);

    // One durable transaction per page: the crawler's writer commits 1 to `WORKERS` pages at a
    // time (each worker waits for its commit), so this is the store's cost at its least batched.
    // A single pass: it takes as long as the crawl, and its cost depends on the store's size.
    let path = dir.join("replay.redb");
    let store = Store::open(&path)?;
    let now = digestmap::clock::now_unix();
    let (cpu, wall) = (thread_cpu(), Instant::now());
    let mut record_cpu = Duration::ZERO;
    for (repo, tags) in &observed {
        store.write(|w| {
            let started = thread_cpu();
            for tag in tags {
                w.record_tag(repo, tag, now, 1)?;
            }
            record_cpu += thread_cpu() - started;
            Ok(())
        })?;
    }
    let (store_cpu, store_wall) = (thread_cpu() - cpu, wall.elapsed());
    drop(store);
    std::fs::remove_file(&path)?;

    println!(
        "   split, in this process over the same {count} tag pages ({:.0} KB a page; parsing best of {SPLIT_PASSES}):",
        bytes as f64 / count as f64 / 1024.0
    );
    let mut t = Table::default();
    t.row(
        "parse_page + observe_tag, CPU per page",
        us(parse_cpu / count as u32),
        "",
    );
    t.row(
        "record_tag, CPU per page",
        us(record_cpu / count as u32),
        "",
    );
    t.row(
        "record_tag + commit (1 txn/page), CPU per page",
        us(store_cpu / count as u32),
        "",
    );
    t.row(
        "record_tag + commit (1 txn/page), wall per page",
        us(store_wall / count as u32),
        "fsync included",
    );
    t.print();
    Ok(())
}

/// Every tag page of the double, in listing order, fetched once with a plain client.
fn fetch_tag_pages(hub: &FakeHub) -> anyhow::Result<Vec<(RepoName, Vec<u8>)>> {
    let api = HubApi::new(&hub.url())?;
    let namespace = hub.config().namespace;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut pages = Vec::new();
        for name in hub.repo_names() {
            let repo = RepoName::new(&namespace, &name)?;
            let mut url = Some(api.tags_url(&repo).to_string());
            while let Some(current) = url.take() {
                let response = client.get(&current).send().await?.error_for_status()?;
                let body = response.bytes().await?.to_vec();
                url = parse_page::<TagEntry>(&body)?.next;
                pages.push((repo.clone(), body));
            }
        }
        Ok::<_, anyhow::Error>(pages)
    })
}

// ---------------------------------------------------------------------------------------------
// Finalize

fn bench_finalize(dir: &Path, digests: u64) -> anyhow::Result<()> {
    let db = dir.join("finalize.redb");
    let out = dir.join("digests.ndjson");
    println!();
    println!(
        "== finalize: synthetic store of {} digests (each build an index + 8 platform manifests, 1-4 tags)",
        group(digests)
    );

    let build = run_child(&[
        "__build-store".into(),
        "--db".into(),
        db.clone().into(),
        "--digests".into(),
        digests.to_string().into(),
    ])?;
    let store_bytes = std::fs::metadata(&db)?.len();
    let built = &build.report;

    let run = run_child(&[
        "__finalize-child".into(),
        "--db".into(),
        db.into(),
        "--out".into(),
        out.clone().into(),
    ])?;
    let report = &run.report;
    let field = |name: &str| report[name].as_u64().unwrap_or(0);
    let seconds = |name: &str| report[name].as_f64().unwrap_or(f64::NAN);
    let (elapsed, cpu) = (seconds("secs"), seconds("cpu_secs"));
    let (sink_elapsed, sink_cpu) = (seconds("sink_secs"), seconds("sink_cpu_secs"));
    let (written, bytes) = (field("digests"), field("bytes"));
    ensure!(
        written == built["digests"].as_u64().unwrap_or(0),
        "finalize wrote {written} digests of the store's {}",
        built["digests"]
    );
    ensure!(
        std::fs::metadata(&out)?.len() == bytes,
        "the dataset file's size differs from what finalize reported"
    );
    let rate = written as f64 / elapsed;
    let mb = bytes as f64 / 1e6;

    let mut t = Table::default();
    t.row(
        "store build (child)",
        format!(
            "{:.1} s, {} tags, {} pairs, {:.1} MB peak RSS",
            secs(build.wall),
            group(built["tags"].as_u64().unwrap_or(0)),
            group(built["pairs"].as_u64().unwrap_or(0)),
            build.peak_mb
        ),
        "",
    );
    t.row(
        "store size on disk",
        format!("{:.1} MB", store_bytes as f64 / 1e6),
        "",
    );
    t.row(
        "dataset written",
        format!(
            "{} lines, {} pairs, {mb:.1} MB",
            group(written),
            group(field("pairs"))
        ),
        "",
    );
    t.row(
        "finalize() time",
        format!("{elapsed:.2} s wall, {cpu:.2} s CPU"),
        "output fsync included",
    );
    t.verdict(
        "finalize digests per second",
        group(rate as u64),
        format!(">= {}", group(TARGET_DIGESTS_PER_SEC as u64)),
        rate >= TARGET_DIGESTS_PER_SEC,
    );
    t.row(
        "finalize output throughput",
        format!("{:.1} MB/s", mb / elapsed),
        "",
    );
    t.row(
        "same walk into io::sink",
        format!(
            "{sink_elapsed:.2} s wall, {sink_cpu:.2} s CPU: {} digests/s, {:.1} MB/s",
            group((written as f64 / sink_elapsed) as u64),
            mb / sink_elapsed
        ),
        "store read + formatting, no output I/O",
    );
    t.verdict(
        "finalize child peak RSS",
        format!("{:.1} MB", run.peak_mb),
        format!("< {TARGET_PEAK_MB:.0} MB at 1M digests"),
        run.peak_mb < TARGET_PEAK_MB,
    );
    t.print();
    Ok(())
}

/// Platforms of a multi-platform official image build.
const PLATFORMS: [(&str, Option<&str>); 8] = [
    ("amd64", None),
    ("arm", Some("v6")),
    ("arm", Some("v7")),
    ("arm64", Some("v8")),
    ("386", None),
    ("ppc64le", None),
    ("s390x", None),
    ("riscv64", None),
];
const VARIANTS: [&str; 8] = [
    "",
    "-slim",
    "-alpine",
    "-bookworm",
    "-slim-bookworm",
    "-alpine3.20",
    "-bullseye",
    "-slim-bullseye",
];
const REPO_STEMS: [&str; 25] = [
    "alpine",
    "ubuntu",
    "debian",
    "python",
    "node",
    "golang",
    "rust",
    "redis",
    "postgres",
    "nginx",
    "httpd",
    "mysql",
    "mariadb",
    "eclipse-temurin",
    "ruby",
    "php",
    "perl",
    "busybox",
    "memcached",
    "mongo",
    "rabbitmq",
    "haproxy",
    "traefik",
    "elasticsearch",
    "wordpress",
];
/// About the number of official images.
const REPOS: usize = 150;

/// Writes `digests` digests the way a crawl would store them: builds of an index and 8 platform
/// manifests with random (sha256-like) digests, each build tagged with its exact version and up
/// to three floating aliases that later builds take over, so pairs keep the aliases' history as
/// on the real Hub. Random digests scatter the inserts over the B-trees as real ones do.
fn build_store(db: &Path, digests: u64) -> anyhow::Result<()> {
    let store = Store::open(db)?;
    let repos: Vec<RepoName> = (0..REPOS)
        .map(|i| {
            let stem = REPO_STEMS[i % REPO_STEMS.len()];
            let name = match i / REPO_STEMS.len() {
                0 => stem.to_owned(),
                n => format!("{stem}-{n}"),
            };
            RepoName::new("library", &name)
        })
        .collect::<Result<_, _>>()?;
    let per_build = 1 + PLATFORMS.len() as u64;
    let builds = digests.div_ceil(per_build);
    let mut rng = SplitMix(0x5eed);
    let mut pending: Vec<(usize, TagObservation, u64)> = Vec::with_capacity(TAGS_PER_TXN + 4);
    let mut tags = 0u64;
    let flush = |pending: &mut Vec<(usize, TagObservation, u64)>| -> anyhow::Result<()> {
        store.write(|w| {
            for (repo, obs, now) in pending.iter() {
                w.record_tag(&repos[*repo], obs, *now, 1)?;
            }
            Ok(())
        })?;
        pending.clear();
        Ok(())
    };
    for b in 0..builds {
        let repo = (b % REPOS as u64) as usize;
        let k = b / REPOS as u64;
        let variant = VARIANTS[(k % VARIANTS.len() as u64) as usize];
        let v = k / VARIANTS.len() as u64;
        let (major, minor, patch) = (1 + v / 300, (v / 20) % 15, v % 20);
        // Ten minutes between builds, from September 2020.
        let now = 1_600_000_000 + b * 600;
        let index = rng.digest();
        // The last build is cut short so the store holds exactly `digests` digests.
        let manifests = (digests - b * per_build).min(per_build) - 1;
        let mut facts = vec![DigestFact {
            digest: index,
            kind: ObjectKind::Index,
            platform: None,
            os_version: None,
            index: None,
        }];
        for &(arch, arm) in PLATFORMS.iter().take(manifests as usize) {
            facts.push(DigestFact {
                digest: rng.digest(),
                kind: ObjectKind::Manifest,
                platform: Some(Platform::new("linux", arch, arm)),
                os_version: None,
                index: Some(index),
            });
        }
        let mut names = vec![format!("{major}.{minor}.{patch}{variant}")];
        let aliases = [
            format!("{major}.{minor}{variant}"),
            format!("{major}{variant}"),
            match variant.strip_prefix('-') {
                Some(bare) => bare.to_owned(),
                None => "latest".to_owned(),
            },
        ];
        names.extend(aliases.into_iter().take((rng.next() % 4) as usize));
        for name in names {
            debug_assert!(RepoTag::new(repos[repo].clone(), &name).is_ok());
            tags += 1;
            pending.push((
                repo,
                TagObservation {
                    tag: name,
                    digest: Some(index),
                    pushed: Some(digestmap::clock::rfc3339(now)),
                    updated: Some(digestmap::clock::rfc3339(now)),
                    facts: facts.clone(),
                },
                now,
            ));
        }
        if pending.len() >= TAGS_PER_TXN {
            flush(&mut pending)?;
        }
    }
    flush(&mut pending)?;
    let counts = store.read(|r| r.counts())?;
    ensure!(
        counts.digests == digests,
        "the store holds {} digests, {digests} were written",
        counts.digests
    );
    println!(
        "{}",
        json!({
            "digests": counts.digests,
            "pairs": counts.pairs,
            "tags": tags,
            "peak_kb": peak_rss_kb()?,
        })
    );
    Ok(())
}

/// finalize as `digestmap finalize --out FILE` runs it; the time excludes process start and
/// opening the store. A second pass writes the same dataset into `io::sink`: the walk and the
/// formatting alone, without the output file's writes and fsync.
fn finalize_child(db: &Path, out: &Path) -> anyhow::Result<()> {
    let store = Store::open_read(db)?;
    let (cpu, started) = (process_cpu(), Instant::now());
    let summary = dataset::finalize(&store, &Output::File(out.to_owned()))?;
    let (secs, cpu) = (started.elapsed(), process_cpu() - cpu);

    let (sink_cpu, sink_started) = (process_cpu(), Instant::now());
    let sunk = dataset::write_dataset(
        &store.snapshot()?,
        dataset::FinalizeOptions::default(),
        &mut std::io::sink(),
    )?;
    let (sink_secs, sink_cpu) = (sink_started.elapsed(), process_cpu() - sink_cpu);
    ensure!(sunk == summary, "the second pass wrote a different dataset");
    println!(
        "{}",
        json!({
            "secs": secs.as_secs_f64(),
            "cpu_secs": cpu.as_secs_f64(),
            "sink_secs": sink_secs.as_secs_f64(),
            "sink_cpu_secs": sink_cpu.as_secs_f64(),
            "digests": summary.digests,
            "pairs": summary.pairs,
            "bytes": summary.bytes,
            "peak_kb": peak_rss_kb()?,
        })
    );
    Ok(())
}

/// splitmix64: enough randomness for unique digests and alias counts, and reproducible.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn digest(&mut self) -> Digest {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        Digest::from_bytes(bytes)
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes and measurement

/// A finished child: its one-line JSON report and its own resource usage.
struct ChildRun {
    report: Value,
    wall: Duration,
    user: Duration,
    system: Duration,
    cpu: Duration,
    peak_mb: f64,
}

/// Runs this executable with `args` and reaps it with `wait4`, which gives that child's CPU time
/// alone (RUSAGE_CHILDREN would sum every child waited for so far). Its peak memory comes from its
/// report instead of `ru_maxrss`: Linux seeds a child's `ru_maxrss` with the high-water mark of
/// the memory it had before `exec`, which after `vfork` (how std spawns) is this process's, the
/// double's hundreds of MB included.
fn run_child(args: &[OsString]) -> anyhow::Result<ChildRun> {
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let mut child = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let mut stdout = String::new();
    // Read before reaping: the child may block on a full pipe otherwise.
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_string(&mut stdout)?;
    let pid = libc::pid_t::try_from(child.id())?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our child and not reaped yet (std's `Child` is never waited on);
        // `status` and `usage` are valid for writes.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("wait4");
        }
    }
    let wall = started.elapsed();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!(
            "{} {:?} failed (wait status {status:#x})",
            exe.display(),
            args
        );
    }
    let report: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("reading the child's report {stdout:?}"))?;
    let peak_kb = report["peak_kb"]
        .as_u64()
        .with_context(|| format!("the child's report {stdout:?} has no peak_kb"))?;
    let (user, system) = (timeval(usage.ru_utime), timeval(usage.ru_stime));
    Ok(ChildRun {
        report,
        wall,
        user,
        system,
        cpu: user + system,
        peak_mb: peak_kb as f64 * 1024.0 / 1e6,
    })
}

/// The peak resident memory of this process, in KiB: `VmHWM`, which `exec` reset.
fn peak_rss_kb() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}

/// CPU time (user + system) of this whole process so far.
fn process_cpu() -> Duration {
    // SAFETY: rusage is plain old data, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid for writes.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_SELF) failed");
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// CPU time of the calling thread, so the double's idle threads do not blur in-process timings.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writes.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

// ---------------------------------------------------------------------------------------------
// Cover

fn bench_cover(dir: &Path, biggest: usize) -> anyhow::Result<()> {
    let hub = FakeHub::bind(FakeHubConfig {
        anonymous_cap: true,
        repos: 6,
        max_tags: biggest / 2,
        big_repo_tags: biggest,
        ..FakeHubConfig::default()
    })?;
    let truth: usize = hub
        .truth()
        .values()
        .map(|v| v["tags"].as_array().map_or(0, Vec::len))
        .sum();
    println!(
        "cover: {} repositories, {} tags, {} pairs; anonymous cap at offset 1000",
        hub.total_repos(),
        group(hub.total_tags() as u64),
        group(truth as u64)
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    type Counted = (usize, u64, usize, Vec<(&'static str, usize)>);
    let crawl = |name: &str, signed_in: bool| -> anyhow::Result<Counted> {
        hub.clear_requests();
        let store = Arc::new(Store::open(&dir.join(format!("{name}.redb")))?);
        let options = CrawlOptions {
            hub_url: Some(hub.url()),
            workers: WORKERS,
            rps: RPS,
            registry: (!signed_in).then(|| hub.url()),
            credentials: signed_in.then(|| Credentials {
                username: "bench".into(),
                secret: Secret::new("bench-token"),
                source: CredentialSource::TokenStdin,
            }),
            ..CrawlOptions::default()
        };
        let report = runtime.block_on(crawl::crawl(
            store,
            options,
            Arc::new(Progress::default()),
            CancellationToken::new(),
        ))?;
        ensure!(report.failed.is_empty(), "{name} crawl: failed jobs");
        let requests = hub.requests();
        Ok((
            requests.len(),
            report.counts.pairs,
            report.gaps.len(),
            breakdown(&requests),
        ))
    };
    let (signed, signed_pairs, _, _) = crawl("signed-in", true)?;
    let (anonymous, anonymous_pairs, gaps, parts) = crawl("anonymous", false)?;
    let ratio = anonymous as f64 / signed as f64;
    let mut table = Table::default();
    table.row(
        "signed-in crawl",
        format!("{signed} requests"),
        "Hub API and the sign-in",
    );
    table.row(
        "anonymous crawl",
        format!("{anonymous} requests"),
        "Hub API, registry and its tokens",
    );
    for (part, n) in parts {
        table.row(&format!("  {part}"), format!("{n}"), "");
    }
    table.verdict(
        "every pair found",
        format!("{anonymous_pairs} of {truth} (signed in {signed_pairs}), {gaps} gaps"),
        "all".into(),
        anonymous_pairs as usize == truth && gaps == 0,
    );
    table.verdict(
        "anonymous / signed in",
        format!("{ratio:.2}x"),
        format!("at most {TARGET_COVER_RATIO}x"),
        ratio <= TARGET_COVER_RATIO,
    );
    table.print();
    Ok(())
}

/// The anonymous crawl's requests by what they were for, in a fixed order.
fn breakdown(requests: &[fake_hub::RequestRecord]) -> Vec<(&'static str, usize)> {
    let kind = |r: &fake_hub::RequestRecord| {
        let q = r.path_and_query.as_str();
        if q.starts_with("/token?") {
            "registry tokens"
        } else if q.contains("/tags/list") && r.status == 401 {
            "registry challenges (401)"
        } else if q.contains("/tags/list") {
            "registry tag lists"
        } else if r.status == 403 {
            "403s at the cap"
        } else if q.contains("name=") {
            "planned pages of name filters"
        } else if q.contains("/tags/") {
            "tags asked for by name"
        } else if q.contains("/tags?") {
            "plain and oldest-first pages"
        } else {
            "repository list"
        }
    };
    let order = [
        "repository list",
        "plain and oldest-first pages",
        "403s at the cap",
        "registry challenges (401)",
        "registry tokens",
        "registry tag lists",
        "planned pages of name filters",
        "tags asked for by name",
    ];
    order
        .into_iter()
        .map(|part| (part, requests.iter().filter(|r| kind(r) == part).count()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Output

/// Rows of figure, measured value, and target with its verdict.
#[derive(Default)]
struct Table(Vec<[String; 3]>);

impl Table {
    fn row(&mut self, figure: &str, measured: String, note: &str) {
        self.0.push([figure.to_owned(), measured, note.to_owned()]);
    }

    fn verdict(&mut self, figure: &str, measured: String, target: String, met: bool) {
        let verdict = if met { "met" } else { "MISSED" };
        self.0
            .push([figure.to_owned(), measured, format!("{target}: {verdict}")]);
    }

    fn print(&self) {
        let width = |i: usize| {
            self.0
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        };
        let (w0, w1) = (width(0), width(1));
        for [figure, measured, note] in &self.0 {
            let line = format!("   {figure:<w0$}  {measured:<w1$}  {note}");
            println!("{}", line.trim_end());
        }
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// 1234567 as `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

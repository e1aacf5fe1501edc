//! Command-line types (clap derive) and nothing else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Map Docker Hub image digests to every repo:tag that pointed at them.
#[derive(Debug, Parser)]
#[command(name = "digestmap", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v: info for all crates and debug for digestmap; -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr (no progress display, no summary).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// The store file.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "digestmap.redb"
    )]
    pub db: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Crawl a Docker Hub namespace, or any registry by its catalog (--catalog), into the store
    /// (resumable).
    Crawl(CrawlArgs),
    /// Write the store's digest dataset as NDJSON.
    Finalize(FinalizeArgs),
    /// Show what the store holds and how far the crawl got (reads only).
    Status,
    /// Check the store's integrity: redb's page checksums and every record (reads only; exit 5
    /// when damaged).
    Check,
    /// Show what the store (or a dataset file) knows of digests: kind, platform, tags (current
    /// and past), indexes, times.
    Lookup(LookupArgs),
    /// Learn the image ID and layer chain of every platform manifest in the store from the
    /// registry (resumable; exit 6 when the pull budget stops it).
    Enrich(EnrichArgs),
    /// Name the official image (and version) a saved image is, or was built FROM: docker save
    /// tarballs, OCI layouts and archives, docker image inspect JSON, image IDs.
    Identify(IdentifyArgs),
}

/// `digestmap crawl`.
#[derive(Debug, Args)]
pub struct CrawlArgs {
    /// Docker Hub API origin (https; plain http only for loopback) [default: https://hub.docker.com]
    #[arg(long, value_name = "URL")]
    pub hub_url: Option<String>,
    /// Registry whose tag lists plan the cover of capped repositories in anonymous crawls
    /// (https; plain http only for loopback) [default: https://registry-1.docker.io when
    /// crawling Docker Hub]
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,
    /// Namespace to crawl [default: library]
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Only this repository (repeatable); skips the repository list.
    #[arg(long = "repo", value_name = "NAME")]
    pub repos: Vec<String>,
    /// Concurrent workers.
    #[arg(long, value_name = "N", default_value_t = digestmap::crawl::DEFAULT_WORKERS)]
    pub workers: usize,
    /// Most request starts per second, for all workers together.
    #[arg(long, value_name = "R", default_value_t = digestmap::crawl::DEFAULT_RPS)]
    pub rps: f64,
    /// Continue the store's unfinished crawl (failed jobs are tried again).
    #[arg(long)]
    pub resume: bool,
    /// With --resume: give up the failed jobs instead of trying them again, so the crawl can
    /// finish (they are listed as skipped; the result may be incomplete).
    #[arg(long, requires = "resume")]
    pub skip_failed: bool,
    /// Re-list every page even though the store holds a finished crawl (which is otherwise
    /// refreshed); tags Hub no longer has are marked deleted.
    #[arg(long, conflicts_with = "resume")]
    pub full: bool,
    /// Sign in to Docker Hub with a personal access token read from standard input (the user
    /// name comes from --username or DOCKERHUB_USERNAME).
    #[arg(long)]
    pub token_stdin: bool,
    /// Docker Hub user name for --token-stdin.
    #[arg(long, value_name = "NAME", requires = "token_stdin")]
    pub username: Option<String>,
    /// Crawl this OCI registry through its catalog (`/v2/_catalog`) instead of Docker Hub (https;
    /// plain http only for loopback); its repositories are stored host-qualified.
    #[arg(long, value_name = "URL", conflicts_with_all = ["hub_url", "namespace", "registry", "token_stdin"])]
    pub catalog: Option<String>,
    /// With --catalog: only the catalog's repositories whose name starts with this (`windows/`).
    #[arg(long, value_name = "P", requires = "catalog")]
    pub repo_prefix: Option<String>,
    /// With --catalog: names asked for per listing page (`n`) [default: 1000].
    #[arg(long, hide = true, value_name = "N", requires = "catalog")]
    pub page_size: Option<u32>,
    /// Base of the retry backoffs in milliseconds (for tests against a local double).
    #[arg(long, hide = true, value_name = "MS")]
    pub retry_base_ms: Option<u64>,
    /// Time allowed for one whole request, body included, in milliseconds (for tests of slow
    /// answers against a local double; the default is a minute).
    #[arg(long, hide = true, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: Option<u64>,
    /// Longest pause a rate-limit header may impose, in milliseconds (for tests of hostile
    /// headers against a local double; the default is an hour).
    #[arg(long, hide = true, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pause_ms: Option<u64>,
    /// Longest stretch of nothing but 429 answers before the run stops, in milliseconds (for
    /// tests of a server refusing everything; the default is an hour).
    #[arg(long, hide = true, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_refusal_ms: Option<u64>,
}

/// `digestmap enrich`.
#[derive(Debug, Args)]
pub struct EnrichArgs {
    /// The registry origin (https; plain http only for loopback).
    #[arg(long, value_name = "URL", default_value = digestmap::registry::DOCKER_HUB_REGISTRY)]
    pub registry: String,
    /// Path before every repository on a mirror: `docker` reads `library/python` as
    /// `docker/library/python`.
    #[arg(long, value_name = "PATH")]
    pub registry_prefix: Option<String>,
    /// Only digests some tag of this repository points or pointed at (repeatable; `python` is
    /// `library/python`).
    #[arg(long = "repo", value_name = "NAME")]
    pub repos: Vec<String>,
    /// Only digests last seen on or after this date (`2026-01-31` or RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Most manifest requests (pulls) this run may send.
    #[arg(long, value_name = "N")]
    pub max_pulls: Option<u64>,
    /// Most request starts per second [default: 5; a known mirror's documented rate:
    /// public.ecr.aws 1, mirror.gcr.io 0.83]
    #[arg(long, value_name = "R")]
    pub rps: Option<f64>,
    /// Requests in flight.
    #[arg(long, value_name = "N", default_value_t = digestmap::enrich::DEFAULT_WORKERS)]
    pub workers: usize,
    /// Only continue the queued jobs, failed ones included; plan nothing new.
    #[arg(long)]
    pub resume: bool,
    /// Base of the retry backoffs in milliseconds (for tests against a local registry).
    #[arg(long, hide = true, value_name = "MS")]
    pub retry_base_ms: Option<u64>,
    /// Longest stretch of nothing but 429 answers before the run stops, in milliseconds (for
    /// tests of a server refusing everything; the default is an hour).
    #[arg(long, hide = true, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_refusal_ms: Option<u64>,
}

/// `digestmap finalize`.
#[derive(Debug, Args)]
pub struct FinalizeArgs {
    /// Output file, replaced atomically (through a symbolic link, its target); a FIFO or device
    /// is written directly; the store and directories are refused; `-` for standard output.
    #[arg(long, value_name = "FILE")]
    pub out: String,
    /// Only digests that some tag points at now (at the latest crawl).
    #[arg(long)]
    pub current_only: bool,
}

/// `digestmap lookup`.
#[derive(Debug, Args)]
pub struct LookupArgs {
    /// Digests: `sha256:` and 64 hex characters, the hex alone, or a unique prefix of at least
    /// 12 hex characters.
    #[arg(value_name = "DIGEST", required = true)]
    pub digests: Vec<String>,
    /// Read this dataset (NDJSON written by `finalize`; `-` for standard input) instead of the
    /// store.
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<PathBuf>,
    /// One JSON object per digest found, on standard output: the dataset line's keys, plus
    /// `tag_seen` (per-tag first and last seen) from the store.
    #[arg(long)]
    pub json: bool,
}

/// `digestmap identify`.
#[derive(Debug, Args)]
pub struct IdentifyArgs {
    /// Saved images: a `docker save` tarball (plain or gzip), an OCI layout folder or
    /// `oci-archive`, `docker image inspect` JSON, an image ID or manifest digest (or a unique
    /// prefix of at least 12 hex characters), or `-` for a tarball on standard input.
    #[arg(value_name = "INPUT", required = true)]
    pub inputs: Vec<String>,
    /// Answer from this dataset (NDJSON written by `finalize`, with the image IDs and layer
    /// chains of `enrich`; `-` for standard input when no INPUT is `-`) instead of the store.
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<PathBuf>,
    /// One JSON object per image on standard output.
    #[arg(long)]
    pub json: bool,
}

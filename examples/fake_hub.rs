//! The fake Docker Hub as a standalone server, for scripts and manual runs of `digestmap`.
//!
//! `cargo run --example fake_hub -- --port 8080 [--seed N] [--repos N] [--tags N]
//! [--rate-limit LIMIT/SECONDS] [--fault-rate 0.05]` prints `listening on http://127.0.0.1:PORT`
//! and serves until Ctrl-C. Besides Hub's API it answers `GET /_fake/truth` (the dataset a
//! perfect crawl produces, as NDJSON) and `GET /_fake/requests` (the request log, as JSON), and
//! serves as a registry the manifests and configs behind its digests (`GET /v2/library/<repo>/
//! manifests/<digest>`, `.../blobs/<digest>`), for `digestmap enrich --registry`.
//! Options left out keep [`fake_hub::FakeHubConfig`]'s defaults.

#[allow(dead_code)]
#[path = "../tests/support/fake_hub/mod.rs"]
mod fake_hub;

use std::time::Duration;

use clap::Parser;

use fake_hub::{FakeHub, FakeHubConfig, FaultKind};

/// Serve a deterministic fake Docker Hub on 127.0.0.1.
#[derive(Parser)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Seed of the generated data and of the random faults.
    #[arg(long)]
    seed: Option<u64>,
    /// Namespace to serve.
    #[arg(long)]
    namespace: Option<String>,
    /// Number of repositories.
    #[arg(long)]
    repos: Option<usize>,
    /// Most tags of an ordinary repository.
    #[arg(long)]
    tags: Option<usize>,
    /// Tags of the big repository (python).
    #[arg(long)]
    big_repo_tags: Option<usize>,
    /// Rounds of rebuilds that move floating tags to new digests.
    #[arg(long)]
    rebuilds: Option<u32>,
    /// Cap anonymous paging like Hub (tags at offset 1000, repositories at 100).
    #[arg(long)]
    anonymous_cap: bool,
    /// Rate window as LIMIT/SECONDS, e.g. 180/60.
    #[arg(long, value_parser = parse_rate)]
    rate_limit: Option<(u32, Duration)>,
    /// Probability of a random fault per request.
    #[arg(long)]
    fault_rate: Option<f64>,
    /// Comma-separated faults to pick from: 500,502,503,reset,slow,truncated,malformed.
    #[arg(long, value_delimiter = ',')]
    fault_kinds: Option<Vec<FaultKind>>,
    /// Delay of a slow answer, in milliseconds.
    #[arg(long)]
    slow_ms: Option<u64>,
}

fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
    let (limit, seconds) = text
        .split_once('/')
        .ok_or_else(|| format!("expected LIMIT/SECONDS, got '{text}'"))?;
    let limit = limit
        .parse()
        .map_err(|e| format!("bad limit '{limit}': {e}"))?;
    let seconds: u64 = seconds
        .parse()
        .map_err(|e| format!("bad seconds '{seconds}': {e}"))?;
    Ok((limit, Duration::from_secs(seconds)))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut config = FakeHubConfig {
        port: args.port,
        anonymous_cap: args.anonymous_cap,
        rate_limit: args.rate_limit,
        ..FakeHubConfig::default()
    };
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(namespace) = args.namespace {
        config.namespace = namespace;
    }
    if let Some(repos) = args.repos {
        config.repos = repos;
    }
    if let Some(tags) = args.tags {
        config.max_tags = tags;
    }
    if let Some(tags) = args.big_repo_tags {
        config.big_repo_tags = tags;
    }
    if let Some(rounds) = args.rebuilds {
        config.rebuilds = rounds;
    }
    if let Some(rate) = args.fault_rate {
        config.fault_rate = rate;
    }
    if let Some(kinds) = args.fault_kinds {
        config.fault_kinds = kinds;
    }
    if let Some(ms) = args.slow_ms {
        config.slow_delay = Duration::from_millis(ms);
    }
    let hub = FakeHub::bind(config)?;
    eprintln!(
        "{} repositories, {} tags, {} digests",
        hub.total_repos(),
        hub.total_tags(),
        hub.truth().len()
    );
    // Scripts wait for this exact line on stdout.
    println!("listening on {}", hub.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}

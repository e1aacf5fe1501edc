//! `digestmap enrich`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use digestmap::clock;
use digestmap::enrich::{
    self, EnrichError, EnrichOptions, EnrichProgress, EnrichReport, Filter, Stop, plan,
};
use digestmap::net::auth;
use digestmap::store::Store;
use digestmap::text::printable;

use crate::cli::{Cli, EnrichArgs};
use crate::ui::Ui;

pub fn run(cli: &Cli, args: &EnrichArgs, ui: &Ui) -> u8 {
    let registry = match args.registry.parse() {
        Ok(url) => url,
        Err(e) => {
            ui.error(&format!("--registry {:?}: {e}", printable(&args.registry)));
            return super::USAGE;
        }
    };
    let since = match args.since.as_deref().map(|s| (s, plan::parse_time(s))) {
        None => None,
        Some((_, Some(t))) => Some(t),
        Some((text, None)) => {
            ui.error(&format!(
                "--since {:?} is not a date (2026-01-31) or an RFC 3339 time",
                printable(text)
            ));
            return super::USAGE;
        }
    };
    let mut options = EnrichOptions::new(registry);
    options.prefix = args.registry_prefix.clone();
    options.filter = Filter {
        repos: args.repos.iter().map(|r| plan::repo_key(r)).collect(),
        since,
    };
    options.max_pulls = args.max_pulls;
    if let Some(rps) = args.rps {
        options.rps = rps;
    }
    options.workers = args.workers;
    options.resume = args.resume;
    super::apply_retry_base(
        args.retry_base_ms,
        &mut options.net,
        &mut options.job_retry_base,
    );
    super::apply_max_refusal(args.max_refusal_ms, &mut options.net);
    // Docker Hub credentials (environment, docker's config.json) go to Docker Hub's registry
    // only; they are looked up on every run, never stored.
    let found = if options.registry.host_str() == Some(enrich::DOCKER_HUB_REGISTRY_HOST) {
        auth::explicit(None, None)
            .and_then(|explicit| auth::discover(explicit, digestmap::crawl::DEFAULT_HUB_URL))
    } else {
        Ok(None)
    };
    let found = match found {
        Ok(found) => found,
        Err(e) => {
            ui.error(&e.to_string());
            return super::USAGE;
        }
    };
    if let Some(c) = &found {
        ui.info(&format!(
            "asking the registry's token service as {} (credentials from {})",
            printable(&c.username),
            c.source
        ));
    }
    options.credentials = enrich::registry_credentials(&options.registry, found);
    // enrich reads what a crawl stored: it never creates a store.
    let store = match Store::open_existing(&cli.db) {
        Ok(store) => Arc::new(store),
        Err(e) => {
            ui.error(&e.to_string());
            return super::store_error_code(&e);
        }
    };
    let Some(runtime) = super::runtime(ui) else {
        return super::ERROR;
    };
    let cancel = CancellationToken::new();
    let progress = Arc::new(EnrichProgress::default());
    let result = runtime.block_on(async {
        let interrupt = super::cancel_on_ctrl_c(cancel.clone());
        let guard = ui.start_enrich_progress(progress.clone());
        let result = enrich::enrich(store.clone(), options, progress, cancel.clone()).await;
        drop(guard);
        interrupt.abort();
        result
    });
    let db = cli.db.display();
    match result {
        Ok(report) => {
            summarize(ui, &report);
            if report.interrupted {
                ui.info(&format!(
                    "interrupted: the store is consistent; continue with `digestmap enrich --db {db}`"
                ));
                super::INTERRUPTED
            } else if let Some(refusal) = &report.refused {
                super::refused_end(ui, refusal, &format!("digestmap enrich --db {db}"))
            } else if let Some(stop) = report.stop {
                let why = match stop {
                    Stop::Budget { frees_at } => format!(
                        "the registry's pull budget is spent until {}",
                        clock::rfc3339(frees_at)
                    ),
                    Stop::MaxPulls => "--max-pulls is reached".to_owned(),
                };
                ui.info(&format!(
                    "stopped: {why}; {} job(s) left; continue with `digestmap enrich --db {db}`{}",
                    report.left,
                    if matches!(stop, Stop::Budget { .. }) {
                        " after that"
                    } else {
                        ""
                    }
                ));
                super::BUDGET
            } else if !report.failed.is_empty() {
                ui.error(&format!(
                    "{} enrich job(s) failed; try them again with `digestmap enrich --resume --db {db}`",
                    report.failed.len()
                ));
                super::FAILED_JOBS
            } else {
                ui.info(&format!(
                    "next: digestmap finalize --db {db} --out digests.ndjson"
                ));
                super::OK
            }
        }
        Err(EnrichError::Usage(e)) => {
            ui.error(&e);
            super::USAGE
        }
        Err(EnrichError::Store(e)) => {
            ui.error(&e.to_string());
            super::store_error_code(&e)
        }
    }
}

/// What a run set out to do: the jobs it planned and those earlier runs queued that it took up
/// (a run that only continues plans nothing, and says so).
fn jobs_taken(planned: u64, continued: u64) -> String {
    match (planned, continued) {
        (0, 0) => "nothing new to learn".to_owned(),
        (p, 0) => format!("{p} job(s) planned"),
        (0, c) => format!("{c} job(s) queued by an earlier run continued"),
        (p, c) => format!("{p} job(s) planned and {c} queued by an earlier run continued"),
    }
}

fn summarize(ui: &Ui, r: &EnrichReport) {
    ui.info(&format!(
        "enrich: {}, {} manifest(s) and {} config(s) learned in {:.1}s",
        jobs_taken(r.planned, r.continued),
        r.manifests,
        r.configs,
        r.elapsed.as_secs_f64()
    ));
    ui.info(&format!(
        "  requests: {} manifest GETs (pulls), {} blob GETs",
        r.pulls, r.blobs
    ));
    ui.info(&format!("  jobs left: {}", r.left));
    ui.info(&format!("  failed jobs: {}", r.failed.len()));
    for (id, f) in &r.failed {
        ui.info(&format!(
            "    #{id} {}: {}",
            f.job.describe(),
            printable(&f.reason)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_what_was_planned_and_what_continued() {
        let table = [
            (0, 0, "nothing new to learn"),
            (7, 0, "7 job(s) planned"),
            (0, 6, "6 job(s) queued by an earlier run continued"),
            (
                2,
                3,
                "2 job(s) planned and 3 queued by an earlier run continued",
            ),
        ];
        for (planned, continued, want) in table {
            assert_eq!(
                jobs_taken(planned, continued),
                want,
                "{planned} {continued}"
            );
        }
    }
}

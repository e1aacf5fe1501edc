//! `digestmap crawl`.

use std::sync::Arc;

use digestmap::crawl::{self, CrawlError, CrawlOptions, CrawlReport, Progress};
use digestmap::net::auth;

use crate::cli::{Cli, CrawlArgs};
use crate::ui::Ui;

pub fn run(cli: &Cli, args: &CrawlArgs, ui: &Ui) -> u8 {
    if let Some(registry) = &args.catalog {
        return super::catalog::run(cli, args, registry, ui);
    }
    let mut options = CrawlOptions {
        hub_url: args.hub_url.clone(),
        namespace: args.namespace.clone(),
        repos: args.repos.clone(),
        workers: args.workers,
        rps: args.rps,
        resume: args.resume,
        full: args.full,
        skip_failed: args.skip_failed,
        registry: args.registry.clone(),
        ..CrawlOptions::default()
    };
    super::apply_timing(args, &mut options.net, &mut options.job_retry_base);
    if let Err(e) = options.validate() {
        ui.error(&e.to_string());
        return super::USAGE;
    }
    // Credentials are looked up on every run, `--resume` included: they are never stored.
    let stdin_token = match args
        .token_stdin
        .then(|| auth::read_token(std::io::stdin().lock()))
    {
        None => None,
        Some(Ok(token)) => Some(token),
        Some(Err(e)) => {
            ui.error(&e.to_string());
            return super::USAGE;
        }
    };
    let explicit = match auth::explicit(stdin_token, args.username.clone()) {
        Ok(explicit) => explicit,
        Err(e) => {
            ui.error(&e.to_string());
            return super::USAGE;
        }
    };
    let store = match super::open_for_crawl(ui, &cli.db, args.resume) {
        Ok(store) => store,
        Err(code) => return code,
    };
    // Found credentials are for Docker Hub's own origin only, so the origin comes first. When it
    // cannot be planned, the crawl below fails for that reason before any request.
    if let Ok(origin) = crawl::planned_hub_url(&store, &options) {
        options.credentials = match auth::discover(explicit, &origin) {
            Ok(credentials) => credentials,
            Err(e) => {
                ui.error(&e.to_string());
                return super::USAGE;
            }
        };
    }
    let progress = Arc::new(Progress::default());
    let Some(result) = super::run_crawl(ui, progress.clone(), |cancel| {
        crawl::crawl(store.clone(), options, progress, cancel)
    }) else {
        return super::ERROR;
    };
    let db = cli.db.display();
    match result {
        Ok(report) => {
            summarize(ui, &report);
            let again = format!("digestmap crawl --resume --db {db}");
            if let Some(refusal) = report.refused.as_ref().filter(|_| !report.interrupted) {
                return super::refused_end(ui, refusal, &again);
            }
            super::run_end(
                ui,
                &cli.db,
                report.interrupted,
                &again,
                (!report.failed.is_empty()).then(|| format!(
                    "{} job(s) failed; try them again with `{again}`, or give them up with `digestmap crawl --resume --skip-failed --db {db}`",
                    report.failed.len()
                )),
                (!report.gaps.is_empty()).then(|| format!(
                    "the crawl is incomplete ({} gap(s), listed above); the dataset lacks them. Try them again with `{again}` (signed in, the anonymous paging cap does not apply)",
                    report.gaps.len()
                )),
            )
        }
        Err(e) => {
            ui.error(&e.to_string());
            match &e {
                CrawlError::Usage(_) | CrawlError::StoreState(_) => super::USAGE,
                CrawlError::Store(s) => {
                    let code = super::store_error_code(s);
                    if code == super::ERROR {
                        ui.info(&format!(
                            "nothing committed was lost; once the cause is fixed, continue with `digestmap crawl --resume --db {db}`"
                        ));
                    }
                    code
                }
                CrawlError::Client(_) => super::ERROR,
                CrawlError::Auth(_) | CrawlError::SignInUnavailable(_) => {
                    // The run is in the store by now; nothing was fetched for it yet.
                    ui.info(&format!(
                        "once sign-in works, continue with `digestmap crawl --resume --db {db}`"
                    ));
                    if matches!(e, CrawlError::Auth(_)) {
                        super::USAGE
                    } else {
                        super::ERROR
                    }
                }
            }
        }
    }
}

fn mode_name(mode: digestmap::store::RunMode) -> &'static str {
    match mode {
        digestmap::store::RunMode::Full => "full",
        digestmap::store::RunMode::Refresh => "refresh",
    }
}

fn summarize(ui: &Ui, report: &CrawlReport) {
    let s = &report.stats;
    let c = &report.counts;
    let state = if report.interrupted || report.refused.is_some() {
        "stopped"
    } else if !report.failed.is_empty() {
        "finished with failed jobs"
    } else if !report.gaps.is_empty() {
        "finished INCOMPLETE"
    } else {
        "finished"
    };
    ui.info(&format!(
        "crawl #{} ({}) of {} {state} after {:.1}s",
        report.run.id,
        mode_name(report.run.mode),
        report.run.namespace,
        report.elapsed.as_secs_f64()
    ));
    ui.info(&format!(
        "  this run: {} repository pages, {} tag pages, {} tags",
        s.repo_pages, s.tag_pages, s.tags
    ));
    ui.info(&format!(
        "  requests: {} (retries {}, 429 answers {}, job attempts repeated {})",
        s.requests, s.retries, s.rate_limited, s.job_retries
    ));
    let skipped: Vec<String> = crawl::skip_reasons(&s.skips)
        .into_iter()
        .map(|(why, n)| format!("{why} {n}"))
        .collect();
    ui.info(&format!("  skipped: {}", skipped.join(", ")));
    for (kind, n) in ui.unshown_skips() {
        ui.info(&format!(
            "  not shown above: {n} more {kind} (-v shows each)"
        ));
    }
    ui.info(&format!(
        "  store: {} repositories, {} tags, {} digests, {} digest-tag pairs",
        c.repos, c.tags, c.digests, c.pairs
    ));
    for line in digestmap::status::coverage_lines(&report.repos) {
        ui.info(&format!("  {line}"));
    }

    if !report.gaps.is_empty() {
        ui.info(&format!("  incomplete: {} gap(s)", report.gaps.len()));
        for gap in &report.gaps {
            ui.info(&format!("    {gap}"));
        }
    }
    for line in digestmap::status::gap_lines(&report.left_out) {
        ui.info(&format!("  {line}"));
    }
    ui.info(&format!("  failed jobs: {}", report.failed.len()));
    for (id, failed) in &report.failed {
        ui.info(&format!(
            "    #{id} {}: {}",
            failed.job.kind.url(),
            failed.reason
        ));
    }
}

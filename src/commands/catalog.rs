//! `digestmap crawl --catalog URL`: a registry crawled through its catalog.

use std::sync::Arc;

use digestmap::catalog::{self, CatalogError, CatalogOptions, CatalogReport};
use digestmap::crawl::Progress;
use digestmap::status::CatalogStatus;
use digestmap::store::Store;

use crate::cli::{Cli, CrawlArgs};
use crate::ui::Ui;

pub fn run(cli: &Cli, args: &CrawlArgs, registry: &str, ui: &Ui) -> u8 {
    let registry = match catalog::plan::registry_origin(registry) {
        Ok(url) => url,
        Err(e) => {
            ui.error(&e);
            return super::USAGE;
        }
    };
    let mut options = CatalogOptions::new(registry);
    options.repos.clone_from(&args.repos);
    options.prefix.clone_from(&args.repo_prefix);
    options.workers = args.workers;
    options.rps = args.rps;
    options.resume = args.resume;
    options.skip_failed = args.skip_failed;
    if let Some(n) = args.page_size {
        options.page_size = n;
    }
    super::apply_timing(args, &mut options.net, &mut options.job_retry_base);
    if let Err(e) = options.validate() {
        ui.error(&e.to_string());
        return super::USAGE;
    }
    let store = match super::open_for_crawl(ui, &cli.db, args.resume) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let progress = Arc::new(Progress::default());
    let Some(result) = super::run_crawl(ui, progress.clone(), |cancel| {
        catalog::crawl(store.clone(), options, progress, cancel)
    }) else {
        return super::ERROR;
    };
    let db = cli.db.display();
    match result {
        Ok(report) => {
            let again = format!(
                "digestmap crawl --catalog {} --resume --db {db}",
                report.run.registry
            );
            summarize(ui, &store, &report);
            if let Some(refusal) = report.refused.as_ref().filter(|_| !report.interrupted) {
                return super::refused_end(ui, refusal, &again);
            }
            if let Some(frees_at) = report.budget_frees_at.filter(|_| !report.interrupted) {
                ui.info(&format!(
                    "stopped: the registry's pull budget is spent until {}; {} job(s) left; continue with `{again}` after that",
                    digestmap::clock::rfc3339(frees_at),
                    report.jobs_left
                ));
                return super::BUDGET;
            }
            super::run_end(
                ui,
                &cli.db,
                report.interrupted,
                &again,
                (!report.failed.is_empty()).then(|| format!(
                    "{} job(s) failed; try them again with `{again}`, or give them up with `{again} --skip-failed`",
                    report.failed.len()
                )),
                (!report.gaps.is_empty()).then(|| format!(
                    "the crawl of {} is incomplete ({} listing(s) ended early, listed above); the dataset lacks what they did not list. Read them again with `{again}`",
                    report.run.host,
                    report.gaps.len()
                )),
            )
        }
        Err(e) => {
            ui.error(&e.to_string());
            match &e {
                CatalogError::Usage(_) | CatalogError::StoreState(_) => super::USAGE,
                CatalogError::Store(s) => super::store_error_code(s),
            }
        }
    }
}

fn summarize(ui: &Ui, store: &Store, report: &CatalogReport) {
    let state = if report.interrupted || report.refused.is_some() {
        "stopped"
    } else if report.budget_frees_at.is_some() {
        "stopped by the pull budget"
    } else if !report.failed.is_empty() {
        "finished with failed jobs"
    } else if !report.gaps.is_empty() {
        "finished INCOMPLETE"
    } else {
        "finished"
    };
    ui.info(&format!(
        "crawl #{} of {} {state} after {:.1}s",
        report.run.id,
        report.run.registry,
        report.elapsed.as_secs_f64()
    ));
    // What the store says now: the run's counters and every repository's state.
    let section = store
        .read(|r| CatalogStatus::read(r, report.run.clone()))
        .unwrap_or_else(|_| CatalogStatus {
            run: report.run.clone(),
            stats: report.stats,
            repos: report.repos.clone(),
            vanished: 0,
            known: 0,
            jobs: report.jobs_left,
            failed: report.failed.clone(),
            pause: None,
        });
    // Its first line repeats the state said above.
    for line in section.lines(false).into_iter().skip(1) {
        ui.info(&line);
    }
}

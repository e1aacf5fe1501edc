//! `digestmap finalize --out FILE`.

use digestmap::dataset::{self, DatasetError, FinalizeOptions, Output};
use digestmap::store::{RunState, Store};

use crate::cli::{Cli, FinalizeArgs};
use crate::ui::Ui;

pub fn run(cli: &Cli, args: &FinalizeArgs, ui: &Ui) -> u8 {
    let store = match Store::open_read(&cli.db) {
        Ok(store) => store,
        Err(e) => {
            ui.error(&e.to_string());
            return super::store_error_code(&e);
        }
    };
    // Every source of the store is written: Docker Hub's crawl and each registry's.
    let catalogs = store.read(|r| r.catalog_runs()).unwrap_or_default();
    for run in catalogs.iter().filter(|r| r.state == RunState::Running) {
        ui.warn(&format!(
            "the crawl of {} in {} is unfinished: the dataset holds what was stored so far",
            run.host,
            cli.db.display()
        ));
    }
    match store.run() {
        Ok(Some(run)) if run.state == RunState::Running => ui.warn(&format!(
            "the crawl in {} is unfinished: the dataset holds what was stored so far",
            cli.db.display()
        )),
        Ok(None) if catalogs.is_empty() => ui.warn(&format!(
            "{} holds no crawl yet: the dataset is empty",
            cli.db.display()
        )),
        _ => {}
    }
    let output = Output::parse(&args.out);
    let started = std::time::Instant::now();
    let options = FinalizeOptions {
        current_only: args.current_only,
    };
    match dataset::finalize_with(&store, &output, options) {
        Ok(summary) => {
            let secs = started.elapsed().as_secs_f64();
            let target = match &output {
                Output::Stdout => "standard output".to_owned(),
                Output::File(p) => p.display().to_string(),
            };
            ui.info(&format!(
                "wrote {} digests ({} indexes, {} manifests, {} configs; {} digest-tag pairs, {} current; {} bytes) to {target} in {secs:.2}s",
                summary.digests,
                summary.indexes,
                summary.manifests,
                summary.configs,
                summary.pairs,
                summary.current_pairs,
                summary.bytes
            ));
            if summary.stale_temps_removed > 0 {
                ui.info(&format!(
                    "removed {} temporary files left by an earlier finalize that did not finish",
                    summary.stale_temps_removed
                ));
            }
            if summary.not_current > 0 {
                let fate = if args.current_only {
                    "left out (--current-only)"
                } else {
                    "written with an empty `current`"
                };
                ui.info(&format!(
                    "{} digests no tag points at any more: {fate}",
                    summary.not_current
                ));
            }
            super::OK
        }
        // `finalize --out - | head`: the reader has what it wanted.
        Err(DatasetError::StdoutClosed) => super::CLOSED_STDOUT,
        Err(e) => {
            ui.error(&e.to_string());
            match e {
                DatasetError::Store(s) => super::store_error_code(&s),
                DatasetError::Refused { .. } => super::USAGE,
                DatasetError::Write { .. } | DatasetError::StdoutClosed => super::ERROR,
            }
        }
    }
}

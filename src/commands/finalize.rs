//! `digestmap finalize --out FILE`.

use digestmap::dataset::{self, DatasetError, Output};
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
    match store.run() {
        Ok(Some(run)) if run.state == RunState::Running => ui.warn(&format!(
            "the crawl in {} is unfinished: the dataset holds what was stored so far",
            cli.db.display()
        )),
        Ok(None) => ui.warn(&format!(
            "{} holds no crawl yet: the dataset is empty",
            cli.db.display()
        )),
        _ => {}
    }
    let output = Output::parse(&args.out);
    let started = std::time::Instant::now();
    match dataset::finalize(&store, &output) {
        Ok(summary) => {
            let secs = started.elapsed().as_secs_f64();
            let target = match &output {
                Output::Stdout => "standard output".to_owned(),
                Output::File(p) => p.display().to_string(),
            };
            ui.info(&format!(
                "wrote {} digests ({} indexes, {} manifests, {} configs; {} digest-tag pairs; {} bytes) to {target} in {secs:.2}s",
                summary.digests,
                summary.indexes,
                summary.manifests,
                summary.configs,
                summary.pairs,
                summary.bytes
            ));
            super::OK
        }
        Err(e) => {
            ui.error(&e.to_string());
            match e {
                DatasetError::Store(s) => super::store_error_code(&s),
                DatasetError::Write { .. } => super::ERROR,
            }
        }
    }
}

//! `digestmap status`.

use digestmap::store::{Store, StoreError};

use crate::cli::Cli;
use crate::ui::Ui;

pub fn run(cli: &Cli, ui: &Ui) -> u8 {
    // Opening for writing tells whether a crawl holds the store; when one does, read beside it.
    let (store, running) = match Store::open_existing(&cli.db) {
        Ok(store) => (Ok(store), false),
        Err(StoreError::Busy { .. }) => (Store::open_read(&cli.db), true),
        Err(e) => (Err(e), false),
    };
    let store = match store {
        Ok(store) => store,
        Err(e) => {
            ui.error(&e.to_string());
            return super::store_error_code(&e);
        }
    };
    match digestmap::status::report(&store, running) {
        Ok(report) => {
            // Failed jobs' reasons hold Hub's messages: no control character reaches the terminal.
            print!("{}", digestmap::text::printable_lines(&report.to_string()));
            super::OK
        }
        Err(e) => {
            ui.error(&e.to_string());
            super::store_error_code(&e)
        }
    }
}

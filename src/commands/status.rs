//! `digestmap status`.

use digestmap::store::Store;

use crate::cli::Cli;
use crate::ui::Ui;

pub fn run(cli: &Cli, ui: &Ui) -> u8 {
    // Reading only: a crawl holding the store is seen by probing its lock, never by taking it.
    let store = match Store::open_read(&cli.db) {
        Ok(store) => store,
        Err(e) => {
            ui.error(&e.to_string());
            return super::store_error_code(&e);
        }
    };
    match digestmap::status::report(&store, store.beside_writer()) {
        // Failed jobs' reasons hold Hub's messages: no control character reaches the terminal.
        Ok(report) => super::print_out(ui, &digestmap::text::printable_lines(&report.to_string())),
        Err(e) => {
            ui.error(&e.to_string());
            super::store_error_code(&e)
        }
    }
}

//! `digestmap check`.

use digestmap::store::check;

use crate::cli::Cli;
use crate::ui::Ui;

pub fn run(cli: &Cli, ui: &Ui) -> u8 {
    match check::check(&cli.db) {
        Ok(report) => {
            print!("{report}");
            if report.sound() {
                super::OK
            } else {
                super::DAMAGED
            }
        }
        Err(e) => {
            ui.error(&e.to_string());
            super::store_error_code(&e)
        }
    }
}

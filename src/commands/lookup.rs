//! `digestmap lookup DIGEST...`: prints what the store (or `--dataset FILE`) knows of each digest.
//!
//! The answers are the command's output, so they go to stdout; "not found" and "ambiguous" go to
//! stderr. Exit 0 when every query was answered, 1 when one was not found, 2 for a query that is
//! not a digest (nothing is looked up then), an ambiguous prefix, or no store.

use std::fs::File;
use std::io::{self, BufReader, Write};

use digestmap::dataset::lookup::{self, Query, ReadError, Resolution};
use digestmap::store::Store;

use crate::cli::{Cli, LookupArgs};
use crate::ui::Ui;

pub fn run(cli: &Cli, args: &LookupArgs, ui: &Ui) -> u8 {
    let mut queries = Vec::with_capacity(args.digests.len());
    let mut bad = false;
    for text in &args.digests {
        match Query::parse(text) {
            Ok(query) => queries.push(query),
            Err(e) => {
                ui.error(&e.to_string());
                bad = true;
            }
        }
    }
    if bad {
        return super::USAGE;
    }

    let (resolutions, source) = match &args.dataset {
        Some(path) => {
            let stdin = path.as_os_str() == "-";
            let shown = if stdin {
                "on standard input".to_owned()
            } else {
                path.display().to_string()
            };
            let result = if stdin {
                lookup::lookup_dataset(io::stdin().lock(), &queries)
            } else {
                let file = match File::open(path) {
                    Ok(file) => file,
                    Err(e) => {
                        ui.error(&format!("cannot read the dataset {shown}: {e}"));
                        // A wrong path is a usage error, like a missing store.
                        return if e.kind() == io::ErrorKind::NotFound {
                            super::USAGE
                        } else {
                            super::ERROR
                        };
                    }
                };
                lookup::lookup_dataset(BufReader::with_capacity(1 << 16, file), &queries)
            };
            match result {
                Ok(r) => (r, format!("the dataset {shown}")),
                Err(e) => {
                    let what = match e {
                        ReadError::Io(_) => "cannot read the dataset",
                        ReadError::Malformed { .. }
                        | ReadError::TooLong { .. }
                        | ReadError::CutOff { .. } => "the dataset",
                    };
                    ui.error(&format!("{what} {shown}: {e}"));
                    return super::ERROR;
                }
            }
        }
        None => {
            let store = match Store::open_read(&cli.db) {
                Ok(store) => store,
                Err(e) => {
                    ui.error(&e.to_string());
                    return super::store_error_code(&e);
                }
            };
            match store.read(|r| lookup::lookup_store(r, &queries)) {
                Ok(r) => (r, format!("the store {}", cli.db.display())),
                Err(e) => {
                    ui.error(&e.to_string());
                    return super::store_error_code(&e);
                }
            }
        }
    };

    let mut stdout = io::stdout().lock();
    let mut code = super::OK;
    let mut printed = false;
    for (query, resolution) in queries.iter().zip(resolutions) {
        let written = match resolution {
            Resolution::Found(answer) if args.json => writeln!(stdout, "{}", answer.json),
            Resolution::Found(answer) => {
                let gap = if printed { "\n" } else { "" };
                printed = true;
                write!(stdout, "{gap}{answer}")
            }
            Resolution::NotFound => {
                // Keep stderr in step with the answers printed before it.
                let _ = stdout.flush();
                ui.error(&format!("{}: not found in {source}", query.text));
                code = code.max(super::ERROR);
                Ok(())
            }
            Resolution::Ambiguous(a, b) => {
                let _ = stdout.flush();
                ui.error(&format!(
                    "{}: ambiguous: matches {a} and {b}; give more of the digest",
                    query.text
                ));
                code = code.max(super::USAGE);
                Ok(())
            }
        };
        if let Err(e) = written.and_then(|()| stdout.flush()) {
            // A closed pipe (`| head`) ends the output quietly.
            return super::stdout_error(ui, &e);
        }
    }
    code
}

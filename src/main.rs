//! The `digestmap` binary: parse the command line, run one command, map the outcome to an exit
//! code. Exit codes: 0 done; 1 error; 2 usage or store-state error; 3 crawl finished with failed
//! jobs; 4 crawl finished incomplete; 5 `check` found damage; 6 `enrich` stopped by the pull
//! budget; 7 `identify` found no official base image for some image; 130 interrupted; 141
//! standard output closed (the commands stop quietly: Rust ignores SIGPIPE, so every write to
//! stdout checks for `BrokenPipe` instead of panicking in `print!`).

mod cli;
mod commands;
mod ui;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    commands::install_panic_hook();
    let cli = Cli::parse();
    let ui = ui::Ui::new(cli.verbose, cli.quiet);
    let code = match &cli.command {
        Command::Crawl(args) => commands::crawl::run(&cli, args, &ui),
        Command::Finalize(args) => commands::finalize::run(&cli, args, &ui),
        Command::Status => commands::status::run(&cli, &ui),
        Command::Check => commands::check::run(&cli, &ui),
        Command::Lookup(args) => commands::lookup::run(&cli, args, &ui),
        Command::Enrich(args) => commands::enrich::run(&cli, args, &ui),
        Command::Identify(args) => commands::identify::run(&cli, args, &ui),
    };
    ExitCode::from(code)
}

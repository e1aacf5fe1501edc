//! One file per subcommand: each opens what it needs, calls the library, and reports.

pub mod crawl;
pub mod finalize;
pub mod lookup;
pub mod status;

/// Exit code of a finished command.
pub const OK: u8 = 0;
/// Exit code of an error.
pub const ERROR: u8 = 1;
/// Exit code of a usage or store-state error.
pub const USAGE: u8 = 2;
/// Exit code of a crawl that finished with failed jobs.
pub const FAILED_JOBS: u8 = 3;
/// Exit code of a crawl that finished knowing its result is incomplete (gaps it could not read).
pub const INCOMPLETE: u8 = 4;
/// Exit code after Ctrl-C.
pub const INTERRUPTED: u8 = 130;
/// Exit code when standard output was closed under a command (`digestmap status | head -1`): the
/// code a shell reports for a tool ended by SIGPIPE (128 + 13), as `cat` or `yes` end there. Rust
/// ignores SIGPIPE, so a write to a closed pipe fails with `BrokenPipe` instead, and the command
/// stops quietly with this code.
pub const CLOSED_STDOUT: u8 = 141;

/// Writes `text` to standard output. A closed pipe ends the command quietly
/// ([`CLOSED_STDOUT`]); another failure is reported.
pub fn print_out(ui: &crate::ui::Ui, text: &str) -> u8 {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => OK,
        Err(e) => stdout_error(ui, &e),
    }
}

/// The exit code of a failed write to standard output, reporting it unless the pipe was closed.
pub fn stdout_error(ui: &crate::ui::Ui, e: &std::io::Error) -> u8 {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CLOSED_STDOUT
    } else {
        ui.error(&format!("cannot write to standard output: {e}"));
        ERROR
    }
}

/// Exit code for a store error: a busy or missing store is a state problem, the rest errors.
pub fn store_error_code(e: &digestmap::store::StoreError) -> u8 {
    use digestmap::store::StoreError;
    match e {
        StoreError::Busy { .. } | StoreError::Missing { .. } | StoreError::Incompatible { .. } => {
            USAGE
        }
        _ => ERROR,
    }
}

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

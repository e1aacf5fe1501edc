//! One file per subcommand: each opens what it needs, calls the library, and reports.

pub mod catalog;
pub mod check;
pub mod crawl;
pub mod enrich;
pub mod finalize;
pub mod identify;
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
/// Exit code of `check` on a damaged store.
pub const DAMAGED: u8 = 5;
/// Exit code of `enrich` (or `crawl --catalog`) stopped by the pull budget (the registry's, or
/// `--max-pulls`) with manifests left: run it again once the window frees (`status` says when).
pub const BUDGET: u8 = 6;
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

/// Makes any panic that the store does not turn into an error end the process at once, with one
/// clear line and exit 1 (not Rust's 101), whichever thread it happens on: a crawl's workers wait
/// for the writer, so a panic in either must not leave the rest waiting forever. Every commit is
/// atomic, so the store keeps its last commit and `crawl --resume` continues from it.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        if digestmap::store::panic_is_guarded() {
            return; // reported as a damaged store by the caller
        }
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown failure".to_owned());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: digestmap stopped on an internal error ({what}{at}); the store keeps everything committed: a crawl continues with `digestmap crawl --resume`"
        );
        std::process::exit(i32::from(ERROR));
    }));
}

/// The async runtime of a long-running command; `None` (after saying why) when it cannot start.
pub fn runtime(ui: &crate::ui::Ui) -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            ui.error(&format!("cannot start the async runtime: {e}"));
            None
        }
    }
}

/// `--retry-base-ms` (hidden, for tests against a local double): jobs are retried after the base
/// and requests back off from it to 20 times it.
pub fn apply_retry_base(
    ms: Option<u64>,
    net: &mut digestmap::net::NetConfig,
    job_retry_base: &mut std::time::Duration,
) {
    if let Some(ms) = ms {
        let base = std::time::Duration::from_millis(ms);
        *job_retry_base = base;
        net.backoff = (base, base.saturating_mul(20));
    }
}

/// The hidden timing flags of `crawl` (either kind): retry base, request timeout, longest pause.
pub fn apply_timing(
    args: &crate::cli::CrawlArgs,
    net: &mut digestmap::net::NetConfig,
    job_retry_base: &mut std::time::Duration,
) {
    apply_retry_base(args.retry_base_ms, net, job_retry_base);
    if let Some(ms) = args.request_timeout_ms {
        net.request_timeout = std::time::Duration::from_millis(ms);
    }
    if let Some(ms) = args.max_pause_ms {
        net.max_pause = std::time::Duration::from_millis(ms);
    }
    apply_max_refusal(args.max_refusal_ms, net);
}

/// `--max-refusal-ms` (hidden, for tests against a local double): how long a server may answer
/// nothing but 429 before the run stops.
pub fn apply_max_refusal(ms: Option<u64>, net: &mut digestmap::net::NetConfig) {
    if let Some(ms) = ms {
        net.max_refusal = std::time::Duration::from_millis(ms);
    }
}

/// Says that `refusal` stopped the run, and how to continue once the server answers again;
/// returns [`BUDGET`], the exit code of a run stopped by a rate limit.
pub fn refused_end(ui: &crate::ui::Ui, refusal: &digestmap::net::Refusal, resume: &str) -> u8 {
    ui.error(&format!(
        "stopped: {} answered every request with 429 Too Many Requests for {:.1}s; what was done is committed; continue later with `{resume}`",
        refusal.origin,
        refusal.lasted.as_secs_f64()
    ));
    BUDGET
}

/// Opens the store a crawl writes into: with `resume`, only an existing one (a store is never
/// created just to find nothing to resume), else one created when missing. `Err` is the exit
/// code, the reason already said.
pub fn open_for_crawl(
    ui: &crate::ui::Ui,
    db: &std::path::Path,
    resume: bool,
) -> Result<std::sync::Arc<digestmap::store::Store>, u8> {
    let opened = if resume {
        digestmap::store::Store::open_existing(db)
    } else {
        digestmap::store::Store::open(db)
    };
    opened.map(std::sync::Arc::new).map_err(|e| {
        ui.error(&e.to_string());
        store_error_code(&e)
    })
}

/// Runs a crawl's future on a fresh runtime, with Ctrl-C cancelling the token it is given and the
/// progress line drawn from `progress` meanwhile. `None` when the runtime cannot start (said).
pub fn run_crawl<T, Fut>(
    ui: &crate::ui::Ui,
    progress: std::sync::Arc<digestmap::crawl::Progress>,
    work: impl FnOnce(tokio_util::sync::CancellationToken) -> Fut,
) -> Option<T>
where
    Fut: std::future::Future<Output = T>,
{
    let runtime = runtime(ui)?;
    let cancel = tokio_util::sync::CancellationToken::new();
    Some(runtime.block_on(async {
        let interrupt = cancel_on_ctrl_c(cancel.clone());
        let guard = ui.start_progress(progress);
        let result = work(cancel).await;
        drop(guard);
        interrupt.abort();
        result
    }))
}

/// How a resumable run that returned ended, told in one line, and its exit code: interrupted
/// (130, with the resume command), failed jobs (3, `failed` says how many and what to do), gaps
/// (4, `incomplete` says which), else done (0, with the next step).
pub fn run_end(
    ui: &crate::ui::Ui,
    db: &std::path::Path,
    interrupted: bool,
    resume: &str,
    failed: Option<String>,
    incomplete: Option<String>,
) -> u8 {
    if interrupted {
        ui.info(&format!(
            "interrupted: the store is consistent; continue with `{resume}`"
        ));
        INTERRUPTED
    } else if let Some(failed) = failed {
        ui.error(&failed);
        FAILED_JOBS
    } else if let Some(incomplete) = incomplete {
        ui.error(&incomplete);
        INCOMPLETE
    } else {
        ui.info(&format!(
            "next: digestmap finalize --db {} --out digests.ndjson",
            db.display()
        ));
        OK
    }
}

/// Cancels `cancel` on the first Ctrl-C, so the command stops taking work and commits what is
/// done; a second Ctrl-C exits at once with [`INTERRUPTED`], which is safe because the store is
/// consistent after every commit. Abort the returned task once the command is done.
pub fn cancel_on_ctrl_c(
    cancel: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(i32::from(INTERRUPTED));
            }
        }
    })
}

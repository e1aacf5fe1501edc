//! What the job loops of `enrich` and `crawl --catalog` share: a bounded wait for the next job
//! that becomes due, and the next finished request, both ended at once by cancellation (Ctrl-C,
//! or the pacer giving up on a registry that refuses everything).
//!
//! The loops keep their own queues and commits; these are only the two waits, so that neither
//! can wait past a cancellation or for longer than a minute without looking again.

use std::time::Duration;

use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::clock;

/// The longest a loop with nothing in flight sleeps before it looks at its queue again.
const IDLE_MAX: Duration = Duration::from_secs(60);

/// With nothing in flight: waits for the earliest job `due` (unix milliseconds; at most
/// [`IDLE_MAX`]) unless `cancel` fires first. `false` when the loop should end: nothing is due,
/// or it was cancelled.
pub async fn idle_until(due: Option<u64>, cancel: &CancellationToken) -> bool {
    let Some(due) = due else { return false };
    if cancel.is_cancelled() {
        return false;
    }
    let wait = Duration::from_millis(due.saturating_sub(clock::now_unix_millis())).min(IDLE_MAX);
    tokio::select! {
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(wait) => {}
    }
    true
}

/// The next request that finished (`Some(None)` when none is in flight), or `None` when
/// `cancel` fired first: the requests in flight are then abandoned, and their jobs stay in the
/// store for the next run.
pub async fn next_finished<T: 'static>(
    tasks: &mut JoinSet<T>,
    cancel: &CancellationToken,
) -> Option<Option<Result<T, JoinError>>> {
    tokio::select! {
        () = cancel.cancelled() => {
            tasks.abort_all();
            None
        }
        joined = tasks.join_next() => Some(joined),
    }
}
